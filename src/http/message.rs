//! The pieces of a message: [`Method`], [`Version`], [`Headers`], [`Status`]
//! reason phrases.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use bytes::Bytes;

/// A request method. The common ones are variants; any other token is kept.
///
/// ```
/// use torsion::http::Method;
///
/// assert_eq!(Method::from_token("GET"), Method::Get);
/// assert_eq!(Method::from_token("PURGE"), Method::Other("PURGE".into()));
/// assert_eq!(Method::Delete.as_str(), "DELETE");
/// assert!(Method::Put.is_idempotent() && !Method::Post.is_idempotent());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`: answered like `GET`, without the body.
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// `PATCH`
    Patch,
    /// `CONNECT`
    Connect,
    /// `TRACE`
    Trace,
    /// Any other method token.
    Other(String),
}

impl Method {
    /// The method for a token (case-sensitive, as RFC 9110 says).
    #[inline]
    pub fn from_token(token: &str) -> Method {
        Method::from_ascii(token.as_bytes())
    }

    /// [`from_token`](Self::from_token) for a token's bytes (ASCII: a
    /// token's characters are).
    #[inline]
    pub(crate) fn from_ascii(t: &[u8]) -> Method {
        // The length picks the one name worth comparing: most requests
        // are GET, one comparison of three bytes and no call.
        let known = match t.len() {
            3 if t == b"GET" => Some(Method::Get),
            3 if t == b"PUT" => Some(Method::Put),
            4 if t == b"HEAD" => Some(Method::Head),
            4 if t == b"POST" => Some(Method::Post),
            5 if t == b"PATCH" => Some(Method::Patch),
            5 if t == b"TRACE" => Some(Method::Trace),
            6 if t == b"DELETE" => Some(Method::Delete),
            7 if t == b"OPTIONS" => Some(Method::Options),
            7 if t == b"CONNECT" => Some(Method::Connect),
            _ => None,
        };
        match known {
            Some(m) => m,
            None => Method::other(t),
        }
    }

    /// A method that is not one of the variants (out of line: rare).
    #[cold]
    #[inline(never)]
    fn other(token: &[u8]) -> Method {
        Method::Other(String::from_utf8_lossy(token).into_owned())
    }

    /// The token on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
            Method::Other(s) => s,
        }
    }

    /// Whether repeating the request is harmless (RFC 9110 §9.2.2): a client
    /// may retry it on a fresh connection when a reused one closed first.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocol version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// HTTP/1.0: no chunked encoding, close after each response unless
    /// `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: persistent connections by default.
    Http11,
}

impl Version {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header fields in the order received or added. Names compare
/// case-insensitively; values are bytes (usually ASCII). Static names and
/// values (`"Content-Type"`, `"text/plain"`) are kept without a copy, and
/// the fields of a received head are ranges of that head's bytes (shared
/// with the connection's read buffer): parsing a request allocates no
/// string per field.
///
/// ```
/// use torsion::http::Headers;
///
/// let mut headers = Headers::new();
/// headers.set("Content-Type", "text/plain");
/// headers.append("Vary", "Accept");
/// headers.append("Vary", "Accept-Encoding");
/// assert_eq!(headers.get("content-type"), Some("text/plain"));
/// assert_eq!(headers.get_all("vary").count(), 2);
/// assert!(headers.has_token("Vary", "accept-encoding"));
/// ```
///
/// The first field is kept inline, so a message with one field (a request
/// with only `Host`, a text response's `Content-Type`) needs no list; a
/// dropped list's storage is kept for the next one on the same thread (a
/// few small lists at most), so a server that parses a request and builds a
/// response per request does not allocate for their fields.
#[derive(Clone, Default)]
pub struct Headers {
    /// The bytes received fields point into (`None` when there are none: a
    /// handle not dropped with every response's headers).
    block: Option<Bytes>,
    /// The first field (`None` only when there are none).
    first: Option<Field>,
    /// The fields after `first`.
    list: Vec<Field>,
}

/// Where a field's bytes are.
#[derive(Clone)]
enum Field {
    /// Name and value ranges in [`Headers::block`] (name: start, length;
    /// value: start, length). Names are httparse tokens, so ASCII.
    Received { name: (u32, u32), value: (u32, u32) },
    /// Added by hand.
    Owned(Cow<'static, str>, Bytes),
    /// Added by the library from constants it checked (a valid name that
    /// is not a framing field, a valid value): written without checking
    /// them again on every response.
    Known(&'static KnownField),
}

/// A field the library adds from constants (see
/// [`Headers::known`]), with its whole line made at compile time by
/// [`known_field!`]: written with one copy.
#[derive(Debug)]
pub(crate) struct KnownField {
    pub(crate) name: &'static str,
    pub(crate) value: &'static str,
    /// `name: value\r\n`.
    pub(crate) line: &'static str,
}

/// A [`KnownField`] for a name and a value (string literals).
macro_rules! known_field {
    ($name:literal, $value:literal) => {
        $crate::http::message::KnownField {
            name: $name,
            value: $value,
            line: concat!($name, ": ", $value, "\r\n"),
        }
    };
}
pub(crate) use known_field;

/// Spare field lists kept per thread, and the largest capacity kept.
const SPARE_LISTS: usize = 16;
const SPARE_CAPACITY: usize = 16;

thread_local! {
    /// Emptied field lists of dropped [`Headers`], for the next ones.
    static SPARE: RefCell<Vec<Vec<Field>>> = const { RefCell::new(Vec::new()) };
}

/// An empty field list with room for `n` (at least a few): a spare one when
/// there is one.
fn new_list(n: usize) -> Vec<Field> {
    let n = n.max(4);
    if n <= SPARE_CAPACITY {
        let spare = SPARE
            .try_with(|s| s.try_borrow_mut().ok()?.pop())
            .ok()
            .flatten();
        if let Some(mut list) = spare {
            list.reserve(n);
            return list;
        }
    }
    Vec::with_capacity(n)
}

impl Drop for Headers {
    fn drop(&mut self) {
        // Most have no list (one field or none): no work, and no frame for
        // the work of keeping one.
        if self.list.capacity() != 0 {
            self.keep_list();
        }
    }
}

impl Headers {
    /// Keeps the list's storage for the next [`Headers`] (see [`SPARE`]).
    #[inline(never)]
    fn keep_list(&mut self) {
        if self.list.capacity() > SPARE_CAPACITY {
            return;
        }
        let mut list = std::mem::take(&mut self.list);
        list.clear();
        // At thread exit or re-entered: the list is simply freed.
        let _ = SPARE.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                if s.len() < SPARE_LISTS {
                    s.push(list);
                }
            }
        });
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(n, v)| (n, String::from_utf8_lossy(v))))
            .finish()
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

fn range(block: &Option<Bytes>, (start, len): (u32, u32)) -> &[u8] {
    let (start, len) = (start as usize, len as usize);
    let block: &[u8] = block.as_deref().unwrap_or_default();
    block.get(start..start + len).unwrap_or_default()
}

impl Headers {
    /// No fields.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// No fields, with room for `n`.
    #[inline]
    pub fn with_capacity(n: usize) -> Headers {
        Headers {
            block: None,
            first: None,
            // The first one is inline.
            list: if n <= 1 { Vec::new() } else { new_list(n - 1) },
        }
    }

    /// Adds `field` after the others.
    #[inline]
    fn push(&mut self, field: Field) {
        if self.first.is_none() {
            self.first = Some(field);
        } else {
            self.push_to_list(field);
        }
    }

    /// Adds `field` after the first.
    #[inline(never)]
    fn push_to_list(&mut self, field: Field) {
        if self.list.capacity() == 0 {
            // Room for a few at once (a spare list, or what the first push
            // would grow to, without going through the growth path).
            self.list = new_list(4);
        }
        self.list.push(field);
    }

    /// Every field, in order.
    fn fields(&self) -> impl Iterator<Item = &Field> {
        self.first.iter().chain(self.list.iter())
    }

    /// Adds a received field: its name and value as (start, length) in the
    /// block given with [`set_block`](Self::set_block).
    pub(crate) fn push_received(&mut self, name: (u32, u32), value: (u32, u32)) {
        self.push(Field::Received { name, value });
    }

    /// The bytes received fields are ranges of (ranges past it read as
    /// empty).
    pub(crate) fn set_block(&mut self, block: Bytes) {
        self.block = Some(block);
    }

    /// No fields (their storage kept), and no block.
    pub(crate) fn clear(&mut self) {
        self.block = None;
        self.first = None;
        self.list.clear();
    }

    /// Makes room for the `n` received fields of a head about to be
    /// parsed into these (empty) headers.
    #[inline(always)]
    pub(crate) fn begin_received(&mut self, n: usize) {
        debug_assert!(self.is_empty() && self.block.is_none());
        if n > 1 {
            self.make_room(n - 1);
        }
    }

    /// Room for `n` fields after the first.
    #[inline(never)]
    fn make_room(&mut self, n: usize) {
        if self.list.capacity() == 0 {
            self.list = new_list(n);
        } else {
            self.list.reserve(n);
        }
    }

    /// A range (start, length) of the block (empty if it lies outside).
    pub(crate) fn received_slice(&self, span: (u32, u32)) -> &[u8] {
        range(&self.block, span)
    }

    /// A range (start, length) of the block as its own handle (empty if it
    /// lies outside).
    pub(crate) fn received(&self, span: (u32, u32)) -> Bytes {
        match &self.block {
            // (The bounds are `received_slice`'s; an empty range is its own
            // empty handle.)
            Some(block) => block.slice_ref(self.received_slice(span)),
            None => Bytes::new(),
        }
    }

    fn name_of<'a>(&'a self, field: &'a Field) -> &'a [u8] {
        match field {
            Field::Received { name, .. } => range(&self.block, *name),
            Field::Owned(n, _) => n.as_bytes(),
            Field::Known(k) => k.name.as_bytes(),
        }
    }

    fn value_of<'a>(&'a self, field: &'a Field) -> &'a [u8] {
        match field {
            Field::Received { value, .. } => range(&self.block, *value),
            Field::Owned(_, v) => v,
            Field::Known(k) => k.value.as_bytes(),
        }
    }

    /// Appends a field (another one with the same name stays). A `&'static
    /// str` or `String` name; a `&'static str`, `String`, `Vec<u8>` or
    /// [`Bytes`] value.
    pub fn append(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Bytes>) {
        self.push(Field::Owned(name.into(), value.into()));
    }

    /// Just `field`, which the library makes from constants: a valid name
    /// that is not a framing field and a valid value (checked in debug
    /// builds and by the tests), which the server writes without checking
    /// them again. Made in place (a `Headers` is a large value to move).
    #[inline]
    pub(crate) fn known(field: &'static KnownField) -> Headers {
        debug_assert!(
            super::write::valid_name(field.name)
                && !super::write::is_framing(field.name)
                && super::write::valid_value(field.value.as_bytes()),
            "{field:?}"
        );
        Headers {
            block: None,
            first: Some(Field::Known(field)),
            list: Vec::new(),
        }
    }

    /// Replaces every field called `name` with one field.
    pub fn set(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Bytes>) {
        let name = name.into();
        self.remove(&name);
        self.append(name, value);
    }

    /// Removes every field called `name`; returns whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.len();
        let block = &self.block;
        let keep = |f: &Field| {
            let n = match f {
                Field::Received { name, .. } => range(block, *name),
                Field::Owned(n, _) => n.as_bytes(),
                Field::Known(k) => k.name.as_bytes(),
            };
            !n.eq_ignore_ascii_case(name.as_bytes())
        };
        self.list.retain(keep);
        if self.first.as_ref().is_some_and(|f| !keep(f)) {
            // The next field, if any, becomes the first.
            self.first = (!self.list.is_empty()).then(|| self.list.remove(0));
        }
        before != self.len()
    }

    /// The first value of `name` as text (`None` if absent or not UTF-8).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `name` as bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|f| self.name_of(f).eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| self.value_of(f))
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields()
            .filter(move |f| self.name_of(f).eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| self.value_of(f))
    }

    /// Whether a field called `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// Whether any comma-separated element of any `name` field equals `token`
    /// (case-insensitively): `Connection: keep-alive, Upgrade` has `upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .any(|v| list_has_token(v, token.as_bytes()))
    }

    /// Every field, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.iter_wire().map(|(name, value, _)| (name, value))
    }

    /// Every field, in order, and for one known to be valid on the wire and
    /// not a framing field (see [`known`](Self::known)) its
    /// whole line.
    pub(crate) fn iter_wire(&self) -> impl Iterator<Item = (&str, &[u8], Option<&'static str>)> {
        self.fields().map(|f| match f {
            // Received names are tokens (checked by httparse): ASCII.
            Field::Received { name, value } => (
                std::str::from_utf8(range(&self.block, *name)).unwrap_or_default(),
                range(&self.block, *value),
                None,
            ),
            Field::Owned(n, v) => (n.as_ref(), &v[..], None),
            Field::Known(k) => (k.name, k.value.as_bytes(), Some(k.line)),
        })
    }

    /// The line of the one field, when there is one and it is known (see
    /// [`known`](Self::known)).
    #[inline]
    pub(crate) fn only_known(&self) -> Option<&'static str> {
        match &self.first {
            Some(Field::Known(k)) if self.list.is_empty() => Some(k.line),
            _ => None,
        }
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.list.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

/// The standard statuses: [`reason_phrase`], and the HTTP/1.1 status lines
/// a server writes for them (one copy, no formatting per response).
macro_rules! statuses {
    ($($code:literal => $reason:literal,)*) => {
        /// The reason phrase for a status code (empty for unknown codes).
        pub fn reason_phrase(status: u16) -> &'static str {
            match status {
                $($code => $reason,)*
                _ => "",
            }
        }

        /// `HTTP/1.1 <status> <reason>\r\n` for a status with a standard
        /// reason phrase.
        pub(crate) fn status_line_11(status: u16) -> Option<&'static [u8]> {
            match status {
                $($code => Some(concat!("HTTP/1.1 ", stringify!($code), " ", $reason, "\r\n").as_bytes()),)*
                _ => None,
            }
        }
    };
}

statuses! {
    100 => "Continue",
    101 => "Switching Protocols",
    200 => "OK",
    201 => "Created",
    202 => "Accepted",
    204 => "No Content",
    206 => "Partial Content",
    301 => "Moved Permanently",
    302 => "Found",
    303 => "See Other",
    304 => "Not Modified",
    307 => "Temporary Redirect",
    308 => "Permanent Redirect",
    400 => "Bad Request",
    401 => "Unauthorized",
    403 => "Forbidden",
    404 => "Not Found",
    405 => "Method Not Allowed",
    408 => "Request Timeout",
    411 => "Length Required",
    413 => "Content Too Large",
    414 => "URI Too Long",
    415 => "Unsupported Media Type",
    417 => "Expectation Failed",
    426 => "Upgrade Required",
    429 => "Too Many Requests",
    431 => "Request Header Fields Too Large",
    500 => "Internal Server Error",
    501 => "Not Implemented",
    502 => "Bad Gateway",
    503 => "Service Unavailable",
    504 => "Gateway Timeout",
    505 => "HTTP Version Not Supported",
}

/// Whether any comma-separated element of a field value equals `token`
/// (case-insensitively).
pub(crate) fn list_has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether a response with this status to this request method has no body
/// whatever its headers say (RFC 9112 §6.3: HEAD, 1xx, 204, 304).
pub fn status_has_no_body(method: &Method, status: u16) -> bool {
    *method == Method::Head || (100..200).contains(&status) || status == 204 || status == 304
}

/// Decodes `%XX` escapes in a URL path. `None` when an escape is malformed or
/// decodes to `/`, `\` or NUL (an encoded separator must not change which
/// file a path names), or when the result is not UTF-8.
///
/// ```
/// use torsion::http::percent_decode_path;
/// assert_eq!(percent_decode_path("/a%20b").as_deref(), Some("/a b"));
/// assert_eq!(percent_decode_path("/a%2Fb"), None);
/// ```
pub fn percent_decode_path(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            let b = u8::from_str_radix(hex, 16).ok()?;
            if b == b'/' || b == b'\\' || b == 0 {
                return None;
            }
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive_and_tokenised() {
        let mut h = Headers::new();
        h.append("Connection", "keep-alive, Upgrade");
        h.append("X-A", "1");
        h.append("x-a", "2");
        assert!(h.has_token("connection", "upgrade"));
        assert!(!h.has_token("connection", "close"));
        assert_eq!(h.get("X-a"), Some("1"));
        assert_eq!(h.get_all("X-A").count(), 2);
        h.set("X-A", "3");
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), vec![b"3".as_slice()]);
    }

    #[test]
    fn reused_field_storage_starts_empty() {
        for round in 0..40 {
            let mut h = Headers::with_capacity(3);
            assert!(h.is_empty() && h.iter().next().is_none(), "round {round}");
            assert_eq!(h.get("x-round"), None);
            h.append("X-Round", round.to_string());
            h.append("X-Other", "v");
            assert_eq!(h.len(), 2);
            let kept = h.clone();
            drop(h);
            assert_eq!(kept.get("x-round"), Some(round.to_string().as_str()));
        }
    }

    #[test]
    fn removing_the_first_field_keeps_the_order() {
        let names = |h: &Headers| h.iter().map(|(n, _)| n.to_owned()).collect::<Vec<_>>();
        let mut h = Headers::new();
        assert!(!h.remove("a") && h.is_empty());
        h.append("A", "1");
        assert_eq!((h.len(), names(&h)), (1, vec!["A".to_owned()]));
        h.append("B", "2");
        h.append("a", "3");
        h.append("C", "4");
        assert!(h.remove("a"));
        assert_eq!(names(&h), ["B", "C"]);
        assert_eq!((h.len(), h.get("b"), h.get("c")), (2, Some("2"), Some("4")));
        h.append("D", "5");
        assert!(h.remove("B") && h.remove("C"));
        assert_eq!(names(&h), ["D"]);
        assert!(h.remove("d") && h.is_empty());
        assert_eq!(h.len(), 0);
        h.set("E", "6");
        assert_eq!(names(&h), ["E"]);
        assert_eq!(h, {
            let mut o = Headers::with_capacity(8);
            o.append("E", "6");
            o
        });
    }

    #[test]
    fn known_fields_read_like_appended_ones() {
        let mut known = Headers::known(&known_field!("Content-Type", "text/plain; charset=utf-8"));
        let mut appended = Headers::new();
        appended.append("Content-Type", "text/plain; charset=utf-8");
        assert_eq!(known, appended);
        assert_eq!(known.get("content-type"), Some("text/plain; charset=utf-8"));
        assert!(known.has_token("Content-Type", "TEXT/plain; charset=utf-8"));
        let mut out = Vec::new();
        assert!(!crate::http::write::write_fields(&mut out, &known, true));
        assert_eq!(out, b"Content-Type: text/plain; charset=utf-8\r\n");
        known.set("content-type", "text/html");
        assert_eq!(
            known.get_all("CONTENT-TYPE").collect::<Vec<_>>(),
            vec![b"text/html".as_slice()]
        );
        known.append("X-Other", "1");
        let mut again = Headers::known(&known_field!("X-Known", "1"));
        assert!(again.remove("x-known") && again.is_empty());
    }

    #[test]
    fn status_lines_are_the_reason_phrases() {
        for status in 100..600 {
            let line = status_line_11(status).map(|l| String::from_utf8(l.to_vec()).unwrap());
            let want = (!reason_phrase(status).is_empty())
                .then(|| format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)));
            assert_eq!(line, want);
        }
    }

    #[test]
    fn percent_decoding_refuses_separators() {
        assert_eq!(percent_decode_path("/x%41").as_deref(), Some("/xA"));
        assert_eq!(percent_decode_path("/x%5c"), None);
        assert_eq!(percent_decode_path("/x%00"), None);
        assert_eq!(percent_decode_path("/x%4"), None);
        assert_eq!(percent_decode_path("/x%zz"), None);
    }
}
