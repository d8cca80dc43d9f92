//! Writing heads: status and request lines, header fields (refusing any that
//! would split a message), and the `Date` value.

use std::cell::RefCell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;

use super::message::{list_has_token, reason_phrase, status_line_11, Headers, Method, Version};

/// Where a head is written: a buffer of the caller's, or a connection's
/// write buffer in place (`Context::write_with`: no buffer between, no copy).
/// (Not `bytes::BufMut`, which both implement: its `put_slice` for
/// `BytesMut` is not inlined, 25 instructions more per response, counted
/// with `benches/callgrind_http.sh`; `extend_from_slice` is.)
pub(crate) trait Out {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Out for BytesMut {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Which bytes may appear in an RFC 9110 token.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// Whether `name` is a valid field name (an RFC 9110 token).
pub fn valid_name(name: &str) -> bool {
    // No early exit: names are short and a branch-free loop is cheaper.
    !name.is_empty() && name.bytes().fold(true, |ok, b| ok & TOKEN[b as usize])
}

/// Whether `value` may go on the wire as a field value (no CR, LF or NUL:
/// they would let a value start a new field or a new message).
pub fn valid_value(value: &[u8]) -> bool {
    // Eight bytes at a time: a byte equal to `b` is a zero byte of
    // `word ^ (b * 0x01..01)`, which `(x - 0x01..01) & !x & 0x80..80` finds.
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    fn has_zero(x: u64) -> bool {
        x.wrapping_sub(ONES) & !x & HIGHS != 0
    }
    let mut words = value.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        if has_zero(w)
            | has_zero(w ^ (ONES * u64::from(b'\r')))
            | has_zero(w ^ (ONES * u64::from(b'\n')))
        {
            return false;
        }
    }
    !words
        .remainder()
        .iter()
        .any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

/// Fields managed by the codec, dropped from what a handler or caller set.
pub(crate) fn is_framing(name: &str) -> bool {
    // The length picks the one name worth comparing.
    let framing: &str = match name.len() {
        4 => "date",
        10 => "connection",
        14 => "content-length",
        17 => "transfer-encoding",
        _ => return false,
    };
    name.eq_ignore_ascii_case(framing)
}

/// Appends `headers` (skipping framing fields when `skip_framing`, and any
/// field that is not valid, with a warning). Returns whether a skipped
/// `Connection` field has the `close` token (found in the same pass, so
/// that a server need not look through the fields again).
#[inline]
pub(crate) fn write_fields(out: &mut impl Out, headers: &Headers, skip_framing: bool) -> bool {
    // The usual case (`Response::text` as made): one copy, no loop.
    if let Some(line) = headers.only_known() {
        out.put(line.as_bytes());
        return false;
    }
    write_fields_each(out, headers, skip_framing)
}

/// [`write_fields`] for anything but a single known field.
#[inline(never)]
fn write_fields_each(out: &mut impl Out, headers: &Headers, skip_framing: bool) -> bool {
    let mut close = false;
    for (name, value, known) in headers.iter_wire() {
        match known {
            Some(line) => out.put(line.as_bytes()),
            None => close |= write_field(out, name, value, skip_framing),
        }
    }
    close
}

/// Appends a field that is not known to be valid (see [`write_fields`]);
/// whether it is a skipped `Connection` with `close`. Its own function: its
/// checks and warning would make every call of `write_fields` (often only
/// known fields) save registers for them.
#[inline(never)]
fn write_field(out: &mut impl Out, name: &str, value: &[u8], skip_framing: bool) -> bool {
    if skip_framing && is_framing(name) {
        return name.len() == 10 && list_has_token(value, b"close");
    }
    if !valid_name(name) || !valid_value(value) {
        tracing::warn!(
            name,
            "dropping a header field that is not valid on the wire"
        );
        return false;
    }
    out.put(name.as_bytes());
    out.put(b": ");
    out.put(value);
    out.put(b"\r\n");
    false
}

/// Appends a status line; an empty `reason` is the standard phrase.
#[inline]
pub(crate) fn write_status_line(out: &mut impl Out, version: Version, status: u16, reason: &str) {
    if reason.is_empty() && version == Version::Http11 {
        if let Some(line) = status_line_11(status) {
            out.put(line);
            return;
        }
    }
    write_status_line_made(out, version, status, reason);
}

/// [`write_status_line`] for a line that is not one of the static ones.
#[inline(never)]
fn write_status_line_made(out: &mut impl Out, version: Version, status: u16, reason: &str) {
    let reason = match reason {
        "" => reason_phrase(status),
        r if valid_value(r.as_bytes()) => r,
        _ => "",
    };
    out.put(version.as_str().as_bytes());
    out.put(b" ");
    let code = [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    out.put(&code);
    out.put(b" ");
    out.put(reason.as_bytes());
    out.put(b"\r\n");
}

/// Appends a request line.
pub(crate) fn write_request_line(out: &mut impl Out, method: &Method, target: &str) {
    out.put(method.as_str().as_bytes());
    out.put(b" ");
    out.put(target.as_bytes());
    out.put(b" HTTP/1.1\r\n");
}

/// Appends `Content-Length: <n>\r\n` (one copy of a line made on the stack).
#[inline]
pub(crate) fn write_content_length(out: &mut impl Out, n: u64) {
    // The usual small body: up to four digits in fixed places, no loop.
    if n < 10_000 {
        let n = n as usize;
        let mut line = *b"Content-Length: 0000\r\n";
        let digits = 1 + usize::from(n >= 10) + usize::from(n >= 100) + usize::from(n >= 1000);
        let (hi, lo) = (n / 100, n % 100);
        line[16..18].copy_from_slice(&PAIRS[hi * 2..hi * 2 + 2]);
        line[18..20].copy_from_slice(&PAIRS[lo * 2..lo * 2 + 2]);
        let start = 4 - digits;
        line[start..16 + start].copy_from_slice(b"Content-Length: ");
        return out.put(&line[start..]);
    }
    write_content_length_long(out, n);
}

/// "00" to "99", for writing two digits at a time.
const PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// [`write_content_length`] for five digits or more.
#[inline(never)]
fn write_content_length_long(out: &mut impl Out, mut n: u64) {
    const NAME: &[u8; 16] = b"Content-Length: ";
    // The name, at most 20 digits, CRLF; filled from the end.
    let mut line = [0u8; 16 + 20 + 2];
    let mut i = line.len() - 2;
    line[i..].copy_from_slice(b"\r\n");
    loop {
        i -= 1;
        line[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    i -= NAME.len();
    line[i..i + NAME.len()].copy_from_slice(NAME);
    out.put(&line[i..]);
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the `Date`
/// format of RFC 9110 §5.6.7, for seconds since the Unix epoch.
pub fn http_date(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(month - 1) as usize],
        year,
        h,
        m,
        s
    )
}

/// `Date: `, an IMF-fixdate and CRLF: the line [`write_date`] appends.
const DATE_LINE: usize = 6 + 29 + 2;

/// The status line of `200 OK`, cached with the `Date` line after it (the
/// usual answer's first two lines are one fixed-size copy).
const OK_LINE: &[u8; OK] = b"HTTP/1.1 200 OK\r\n";
const OK: usize = 17;

/// A server's cached `Date` line (one per server, so one per reactor:
/// the wall clock is read once a second and the date formatted then,
/// however many responses).
pub(crate) struct DateCache {
    /// Until when (on the monotonic clock, from a reactor turn's time) the
    /// second the line is for lasts.
    end: Option<Instant>,
    /// That second.
    secs: u64,
    /// [`OK_LINE`], then the line.
    line: [u8; OK + DATE_LINE],
}

impl DateCache {
    pub(crate) const fn new() -> DateCache {
        DateCache {
            end: None,
            secs: u64::MAX,
            line: ok_then_date(),
        }
    }
}

/// [`OK_LINE`] followed by room for the `Date` line.
const fn ok_then_date() -> [u8; OK + DATE_LINE] {
    let mut line = [0; OK + DATE_LINE];
    let mut i = 0;
    while i < OK {
        line[i] = OK_LINE[i];
        i += 1;
    }
    line
}

/// Appends `Date: <now>\r\n` for a response made in the reactor turn that
/// started at `turn`, from `dates`. The wall clock is read again only for a
/// turn past the end of the second last read (found on the turn's
/// monotonic clock, so most turns read no clock at all); always without a
/// turn.
pub(crate) fn write_date(out: &mut impl Out, dates: &RefCell<DateCache>, turn: Option<Instant>) {
    write_date_after(out, dates, turn, false);
}

/// [`write_status_line`] for `200 OK` in HTTP/1.1, then [`write_date`].
#[inline(always)]
pub(crate) fn write_ok_and_date(
    out: &mut impl Out,
    dates: &RefCell<DateCache>,
    turn: Option<Instant>,
) {
    write_date_after(out, dates, turn, true);
}

// Always inline: its fast path is a check and a fixed-size copy.
#[inline(always)]
fn write_date_after(
    out: &mut impl Out,
    dates: &RefCell<DateCache>,
    turn: Option<Instant>,
    ok: bool,
) {
    let Ok(mut cache) = dates.try_borrow_mut() else {
        return write_date_uncached(out, ok);
    };
    let current = matches!((turn, cache.end), (Some(t), Some(end)) if t < end);
    if !current && !refresh_date(&mut cache, turn) {
        return write_date_uncached(out, ok);
    }
    // Fixed-size copies: a few moves, no call.
    if ok {
        out.put(&cache.line[..]);
    } else {
        out.put(&cache.line[OK..]);
    }
}

/// Reads the wall clock into `cache` for a response in the turn at `turn`;
/// false if the date is not of the cached length (written uncached).
#[cold]
#[inline(never)]
fn refresh_date(cache: &mut DateCache, turn: Option<Instant>) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    if secs != cache.secs {
        let date = http_date(secs);
        // IMF-fixdate is 29 bytes for years 1000 to 9999; another length
        // is written as formatted, uncached.
        if date.len() != DATE_LINE - 8 {
            cache.end = None;
            return false;
        }
        let date_line = &mut cache.line[OK..];
        date_line[..6].copy_from_slice(b"Date: ");
        date_line[6..DATE_LINE - 2].copy_from_slice(date.as_bytes());
        date_line[DATE_LINE - 2..].copy_from_slice(b"\r\n");
        cache.secs = secs;
    }
    cache.end = turn.and_then(|t| second_ends(t, now.subsec_nanos()));
    true
}

/// When the second read at `subsec_nanos` into it ends, counted from the
/// turn at `turn` (which began at most a turn's length before the read: a
/// `Date` is as late as the per-turn time it is made in, no later).
fn second_ends(turn: Instant, subsec_nanos: u32) -> Option<Instant> {
    turn.checked_add(Duration::from_nanos(u64::from(
        1_000_000_000 - subsec_nanos.min(999_999_999),
    )))
}

/// The `Date` line (after [`OK_LINE`] if `ok`) formatted now, uncached.
#[cold]
#[inline(never)]
fn write_date_uncached(out: &mut impl Out, ok: bool) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if ok {
        out.put(OK_LINE);
    }
    out.put(b"Date: ");
    out.put(http_date(secs).as_bytes());
    out.put(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn invalid_fields_are_not_written() {
        let mut h = Headers::new();
        h.append("X-Ok", "1");
        h.append("X-Bad", "a\r\nSet-Cookie: evil");
        h.append("Bad Name", "x");
        h.append("Content-Length", "5");
        h.append("DATE", "yesterday");
        h.append("connection", "close");
        h.append("Transfer-Encoding", "chunked");
        h.append("Content-Lengths", "1");
        let mut out = Vec::new();
        write_fields(&mut out, &h, true);
        assert_eq!(out, b"X-Ok: 1\r\nContent-Lengths: 1\r\n");
    }

    #[test]
    fn values_with_cr_lf_or_nul_anywhere_are_invalid() {
        let base = b"text/plain; charset=utf-8, and some more".to_vec();
        assert!(valid_value(&base));
        assert!(valid_value(b""));
        assert!(valid_value("caf\u{e9} \t\x7f\x01".as_bytes()));
        for at in 0..base.len() {
            for bad in [b'\r', b'\n', 0] {
                let mut v = base.clone();
                v[at] = bad;
                assert!(!valid_value(&v), "{bad} at {at}");
                assert!(!valid_value(&v[at..]), "{bad} first of {}", v.len() - at);
            }
        }
    }

    #[test]
    fn the_ok_line_is_cached_with_the_date() {
        let mut ok = Vec::new();
        let dates = RefCell::new(DateCache::new());
        write_ok_and_date(&mut ok, &dates, None);
        let mut both = Vec::new();
        write_status_line(&mut both, Version::Http11, 200, "");
        write_date(&mut both, &dates, None);
        // The same bytes (unless the second turned between the two).
        assert_eq!(ok.len(), both.len());
        assert!(ok.starts_with(b"HTTP/1.1 200 OK\r\nDate: ") && ok.ends_with(b" GMT\r\n"));
        assert_eq!(ok[..OK + 6], both[..OK + 6]);
    }

    #[test]
    fn a_date_read_lasts_to_the_end_of_its_second() {
        let t = Instant::now();
        assert_eq!(second_ends(t, 0), Some(t + Duration::from_secs(1)));
        assert_eq!(
            second_ends(t, 999_999_999),
            Some(t + Duration::from_nanos(1))
        );
        assert_eq!(
            second_ends(t, 400_000_000),
            Some(t + Duration::from_millis(600))
        );
        // Read for a turn, then kept until that second ends.
        let dates = RefCell::new(DateCache::new());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_date(&mut a, &dates, Some(t));
        let end = dates.borrow().end.expect("a turn's date is cached");
        assert!(end > t && end <= t + Duration::from_secs(1));
        write_date(&mut b, &dates, Some(t));
        assert_eq!(a, b);
        // A turn past it reads the clock again.
        let later = t + Duration::from_secs(2);
        let mut c = Vec::new();
        write_date(&mut c, &dates, Some(later));
        assert!(dates.borrow().end.is_some_and(|e| e > later));
        assert!(c.starts_with(b"Date: ") && c.ends_with(b" GMT\r\n") && c.len() == DATE_LINE);
        // Without a turn, always read.
        write_date(&mut Vec::new(), &dates, None);
        assert_eq!(dates.borrow().end, None);
    }

    #[test]
    fn content_lengths() {
        for n in [
            0u64,
            7,
            10,
            13,
            99,
            100,
            999,
            1000,
            4096,
            9999,
            10_000,
            12345,
            u64::MAX,
        ] {
            let mut out = b"x".to_vec();
            write_content_length(&mut out, n);
            assert_eq!(out, format!("xContent-Length: {n}\r\n").as_bytes());
        }
    }

    #[test]
    fn status_lines() {
        let line = |version, status, reason| {
            let mut out = Vec::new();
            write_status_line(&mut out, version, status, reason);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(line(Version::Http11, 200, ""), "HTTP/1.1 200 OK\r\n");
        assert_eq!(line(Version::Http10, 404, ""), "HTTP/1.0 404 Not Found\r\n");
        assert_eq!(line(Version::Http11, 599, ""), "HTTP/1.1 599 \r\n");
        assert_eq!(line(Version::Http11, 200, "Fine"), "HTTP/1.1 200 Fine\r\n");
        assert_eq!(line(Version::Http11, 200, "a\r\nb"), "HTTP/1.1 200 \r\n");
    }

    #[test]
    fn a_skipped_connection_field_tells_close() {
        let mut h = Headers::new();
        h.append("Connection", "keep-alive, Close");
        h.append("X", "1");
        let mut out = Vec::new();
        assert!(write_fields(&mut out, &h, true));
        assert_eq!(out, b"X: 1\r\n");
        h.set("Connection", "keep-alive");
        assert!(!write_fields(&mut Vec::new(), &h, true));
    }
}
