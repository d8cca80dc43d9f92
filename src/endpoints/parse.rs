//! Endpoint string syntax (Twisted's): `kind:positional:name=value:...`, with
//! `\` making the next character literal (`interface=\:\:1`, a `\=` or `\[`
//! in a path); an IPv6 literal may also be written in brackets
//! (`interface=[::1]`). Every part must be used: a value given twice (by
//! name and by position, or under two names for one thing) is an error.

use std::time::Duration;

use super::EndpointError;

/// One parsed string: its kind, positional arguments and `name=value` pairs.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) kind: String,
    positional: Vec<String>,
    /// Which positional arguments a getter took.
    taken: Vec<bool>,
    named: Vec<(String, String)>,
    used: Vec<bool>,
}

/// One field between separating colons: `name=value` or a positional value.
#[derive(Debug, PartialEq, Eq)]
struct Field {
    name: Option<String>,
    value: String,
}

/// Removes surrounding whitespace, except an escaped last character
/// (`unix:/a\ ` ends in a space).
fn trim(s: &str) -> &str {
    let s = s.trim_start();
    let t = s.trim_end();
    let escapes = t.chars().rev().take_while(|c| *c == '\\').count();
    match s[t.len()..].chars().next() {
        Some(ws) if escapes % 2 == 1 => &s[..t.len() + ws.len_utf8()],
        _ => t,
    }
}

/// Splits `s` on unescaped colons outside brackets, and each field on its
/// first unescaped `=` outside brackets. A `\` makes the next character
/// literal (`\:`, `\\`, `\=`, `\[`).
fn split(s: &str) -> Result<Vec<Field>, EndpointError> {
    let mut out = Vec::new();
    let mut name: Option<String> = None;
    let mut cur = String::new();
    let mut chars = s.chars();
    let mut depth = 0u32;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => cur.push(n),
                None => {
                    return Err(EndpointError::syntax(
                        s,
                        "a trailing backslash escapes nothing",
                    ))
                }
            },
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            ':' if depth == 0 => out.push(Field {
                name: name.take(),
                value: std::mem::take(&mut cur),
            }),
            '=' if depth == 0 && name.is_none() => name = Some(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if depth != 0 {
        return Err(EndpointError::syntax(s, "an unclosed '['"));
    }
    out.push(Field { name, value: cur });
    Ok(out)
}

impl Parts {
    pub(crate) fn parse(s: &str) -> Result<Parts, EndpointError> {
        let s = trim(s);
        if s.is_empty() {
            return Err(EndpointError::Empty);
        }
        let mut fields = split(s)?.into_iter();
        let kind = match fields.next() {
            Some(Field { name: None, value }) => value.to_ascii_lowercase(),
            Some(Field {
                name: Some(n),
                value,
            }) => return Err(EndpointError::UnknownType(format!("{n}={value}"))),
            None => String::new(),
        };
        if kind.is_empty() {
            return Err(EndpointError::syntax(
                s,
                "no endpoint type before the first ':'",
            ));
        }
        let mut positional = Vec::new();
        let mut named: Vec<(String, String)> = Vec::new();
        for f in fields {
            match f.name {
                Some(k) => {
                    let k = k.trim().to_ascii_lowercase();
                    if k.is_empty() {
                        return Err(EndpointError::syntax(s, "a parameter without a name"));
                    }
                    if named.iter().any(|(n, _)| *n == k) {
                        return Err(EndpointError::Duplicate { kind, name: k });
                    }
                    named.push((k, f.value));
                }
                None if !named.is_empty() => {
                    return Err(EndpointError::syntax(
                        s,
                        "a positional argument after a name=value one (write a ':' in a value as '\\:', an IPv6 address in brackets)",
                    ))
                }
                None => positional.push(f.value),
            }
        }
        if let Some((k, _)) = named.iter().find(|(_, v)| v.is_empty()) {
            return Err(EndpointError::Invalid {
                name: k.clone(),
                kind,
                value: String::new(),
                reason: "empty".into(),
            });
        }
        Ok(Parts {
            kind,
            taken: vec![false; positional.len()],
            used: vec![false; named.len()],
            positional,
            named,
        })
    }

    /// Parameter `name`, given by name or as positional argument `pos`.
    ///
    /// # Errors
    /// [`EndpointError::Duplicate`] when it was given both ways.
    pub(crate) fn get(
        &mut self,
        name: &str,
        pos: Option<usize>,
    ) -> Result<Option<String>, EndpointError> {
        self.get_any(&[name], pos)
    }

    /// A parameter with several names (`cert` or `certkey`), given by one of
    /// them or as positional argument `pos`; giving it twice is an error.
    pub(crate) fn get_any(
        &mut self,
        names: &[&str],
        pos: Option<usize>,
    ) -> Result<Option<String>, EndpointError> {
        let mut found: Option<usize> = None;
        for (i, (n, _)) in self.named.iter().enumerate() {
            if names.contains(&n.as_str()) {
                if found.is_some() {
                    return Err(self.duplicate(n));
                }
                found = Some(i);
            }
        }
        let positional = pos.filter(|p| self.positional.get(*p).is_some_and(|v| !v.is_empty()));
        if let Some(p) = positional {
            self.taken[p] = true;
        }
        match (found, positional) {
            (Some(i), Some(_)) => Err(self.duplicate(&self.named[i].0)),
            (Some(i), None) => {
                self.used[i] = true;
                Ok(Some(self.named[i].1.clone()))
            }
            (None, Some(p)) => Ok(Some(self.positional[p].clone())),
            (None, None) => Ok(None),
        }
    }

    /// Whether `name` was given by name.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.named.iter().any(|(n, _)| n == name)
    }

    fn duplicate(&self, name: &str) -> EndpointError {
        EndpointError::Duplicate {
            kind: self.kind.clone(),
            name: name.to_owned(),
        }
    }

    /// A parameter that must be there.
    pub(crate) fn require(
        &mut self,
        name: &'static str,
        pos: Option<usize>,
    ) -> Result<String, EndpointError> {
        self.get(name, pos)?.ok_or_else(|| EndpointError::Missing {
            kind: self.kind.clone(),
            name,
        })
    }

    /// Fails on what no getter took (typos and repeats must not pass
    /// silently). An empty positional argument counts as absent.
    pub(crate) fn finish(self) -> Result<(), EndpointError> {
        let extra = self
            .positional
            .iter()
            .zip(&self.taken)
            .position(|(v, taken)| !taken && !v.is_empty());
        if let Some(i) = extra {
            return Err(EndpointError::Unexpected {
                kind: self.kind,
                what: format!("positional argument {:?}", self.positional[i]),
            });
        }
        if let Some(i) = self.used.iter().position(|u| !u) {
            return Err(EndpointError::Unexpected {
                kind: self.kind,
                what: format!("parameter {:?}", self.named[i].0),
            });
        }
        Ok(())
    }

    pub(crate) fn invalid(&self, name: &str, value: &str, why: impl Into<String>) -> EndpointError {
        EndpointError::Invalid {
            kind: self.kind.clone(),
            name: name.to_owned(),
            value: value.to_owned(),
            reason: why.into(),
        }
    }

    pub(crate) fn port(&mut self, pos: Option<usize>) -> Result<u16, EndpointError> {
        let v = self.require("port", pos)?;
        v.trim()
            .parse::<u16>()
            .map_err(|_| self.invalid("port", &v, "not a port number (0-65535)"))
    }

    /// `timeout=`: seconds as a decimal number (`5`, `0.25`), from a
    /// millisecond to a day. Exact to the nanosecond, so it prints back the
    /// same; anything finer, or an exponent, is refused rather than rounded
    /// (to zero, say).
    pub(crate) fn timeout(&mut self, default: Duration) -> Result<Duration, EndpointError> {
        let Some(v) = self.get("timeout", None)? else {
            return Ok(default);
        };
        match decimal_seconds(v.trim()) {
            Some(d) if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d) => Ok(d),
            _ => Err(self.invalid(
                "timeout",
                &v,
                "not a number of seconds (0.001 <= t <= 86400)",
            )),
        }
    }

    pub(crate) fn backlog(&mut self) -> Result<Option<i32>, EndpointError> {
        let Some(v) = self.get("backlog", None)? else {
            return Ok(None);
        };
        match v.trim().parse::<i32>() {
            Ok(b) if b > 0 => Ok(Some(b)),
            _ => Err(self.invalid("backlog", &v, "not a positive number")),
        }
    }

    pub(crate) fn flag(&mut self, name: &str) -> Result<bool, EndpointError> {
        let Some(v) = self.get(name, None)? else {
            return Ok(false);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(self.invalid(name, &v, "not a boolean (1/0, true/false, yes/no)")),
        }
    }

    /// A comma-separated list of ALPN protocol names.
    pub(crate) fn alpn(&mut self) -> Result<Vec<Vec<u8>>, EndpointError> {
        let Some(v) = self.get("alpn", None)? else {
            return Ok(Vec::new());
        };
        let list: Vec<Vec<u8>> = v.split(',').map(|p| p.trim().as_bytes().to_vec()).collect();
        if list.iter().any(|p| p.is_empty() || p.len() > 255) {
            return Err(self.invalid(
                "alpn",
                &v,
                "protocol names are 1 to 255 bytes, comma-separated",
            ));
        }
        Ok(list)
    }

    /// A client's host: an IP address (IPv6 in brackets, or escaped) or a
    /// DNS name (letters, digits, `-`, `_`, `.`; at most 253 bytes).
    pub(crate) fn host(&mut self, pos: Option<usize>) -> Result<String, EndpointError> {
        let v = self.require("host", pos)?;
        let h = host(&v);
        let name_ok = !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if name_ok || h.parse::<std::net::IpAddr>().is_ok() {
            Ok(h)
        } else {
            Err(self.invalid("host", &v, "not a host name or IP address"))
        }
    }
}

/// The shortest timeout an endpoint string takes.
pub(crate) const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// The longest timeout an endpoint string takes.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// `12`, `12.5`, `.5`: seconds, exactly; `None` for anything else (signs,
/// exponents, more than nine decimals that are not zeros).
fn decimal_seconds(s: &str) -> Option<Duration> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int = int.trim_start_matches('0');
    if int.len() > 6 {
        return None;
    }
    let secs: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let (nine, rest) = frac.split_at(frac.len().min(9));
    if rest.bytes().any(|b| b != b'0') {
        return None;
    }
    let nanos = format!("{nine:0<9}").parse::<u32>().ok()?;
    Some(Duration::new(secs, nanos))
}

/// Prints a duration as [`decimal_seconds`] reads it: `30`, `0.5`.
pub(crate) fn seconds_str(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return d.as_secs().to_string();
    }
    let frac = format!("{nanos:09}");
    format!("{}.{}", d.as_secs(), frac.trim_end_matches('0'))
}

/// Escapes a value for an endpoint string: `\`, `:`, `[`, `]` (and `=`,
/// which ends a positional argument's name), and a last character that is
/// whitespace (which would be trimmed).
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.char_indices().last().map(|(i, _)| i);
    for (i, c) in s.char_indices() {
        if matches!(c, '\\' | ':' | '[' | ']' | '=') || (Some(i) == last && c.is_whitespace()) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A host: brackets removed from an IPv6 literal.
pub(crate) fn host(h: &str) -> String {
    let h = h.trim();
    h.strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(s: &str) -> Vec<(Option<String>, String)> {
        split(s)
            .unwrap()
            .into_iter()
            .map(|f| (f.name, f.value))
            .collect()
    }

    fn named(n: &str, v: &str) -> (Option<String>, String) {
        (Some(n.into()), v.into())
    }

    fn pos(v: &str) -> (Option<String>, String) {
        (None, v.into())
    }

    #[test]
    fn splits_on_unescaped_colons_and_equals_outside_brackets() {
        assert_eq!(
            fields(r"tcp:80:interface=\:\:1"),
            [pos("tcp"), pos("80"), named("interface", "::1")]
        );
        assert_eq!(
            fields("tcp:80:interface=[::1]"),
            [pos("tcp"), pos("80"), named("interface", "[::1]")]
        );
        assert_eq!(fields(r"unix:/a\\b"), [pos("unix"), pos(r"/a\b")]);
        assert_eq!(fields(r"unix:/a\=b"), [pos("unix"), pos("/a=b")]);
        assert_eq!(
            fields("unix:path=/a=b"),
            [pos("unix"), named("path", "/a=b")]
        );
        assert_eq!(fields(r"unix:/a\[b"), [pos("unix"), pos("/a[b")]);
        assert!(split("tcp:[::1").is_err());
        assert!(split("tcp:80\\").is_err());
    }

    #[test]
    fn trims_whitespace_unless_escaped() {
        assert_eq!(trim("  tcp:80 \n"), "tcp:80");
        assert_eq!(trim(r"unix:/a\  "), r"unix:/a\ ");
        assert_eq!(trim(r"unix:/a\\ "), r"unix:/a\\");
    }

    #[test]
    fn named_after_positional_only() {
        let mut p = Parts::parse("tcp:8000:interface=127.0.0.1").unwrap();
        assert_eq!(p.kind, "tcp");
        assert_eq!(p.get("port", Some(0)).unwrap().as_deref(), Some("8000"));
        assert_eq!(
            p.get("interface", Some(1)).unwrap().as_deref(),
            Some("127.0.0.1")
        );
        p.finish().unwrap();
        assert!(Parts::parse("tcp:port=1:80").is_err());
        assert!(matches!(
            Parts::parse("tcp:port=1:port=2"),
            Err(EndpointError::Duplicate { .. })
        ));
    }

    #[test]
    fn a_value_given_by_position_and_by_name_is_a_duplicate() {
        let mut p = Parts::parse("tcp:example.org:80:host=other").unwrap();
        assert!(matches!(
            p.get("host", Some(0)),
            Err(EndpointError::Duplicate { name, .. }) if name == "host"
        ));
        let mut p = Parts::parse("unix:address=/a:path=/b").unwrap();
        assert!(matches!(
            p.get_any(&["address", "path"], Some(0)),
            Err(EndpointError::Duplicate { .. })
        ));
    }

    #[test]
    fn leftovers_are_errors() {
        let mut p = Parts::parse("tcp:80:intrface=x").unwrap();
        let _ = p.get("port", Some(0));
        assert!(matches!(p.finish(), Err(EndpointError::Unexpected { .. })));
        let mut p = Parts::parse("unix:/a:/b").unwrap();
        let _ = p.get("address", Some(0));
        assert!(matches!(p.finish(), Err(EndpointError::Unexpected { .. })));
    }

    #[test]
    fn timeouts_are_exact_decimals() {
        assert_eq!(decimal_seconds("5"), Some(Duration::from_secs(5)));
        assert_eq!(decimal_seconds("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(decimal_seconds(".5"), Some(Duration::from_millis(500)));
        assert_eq!(decimal_seconds("1.000000001"), Some(Duration::new(1, 1)));
        assert_eq!(
            decimal_seconds("1.0000000000"),
            Some(Duration::from_secs(1))
        );
        for bad in [
            "",
            ".",
            "1e-10",
            "-1",
            "+1",
            "1.0000000001",
            "inf",
            "NaN",
            "1 2",
        ] {
            assert_eq!(decimal_seconds(bad), None, "{bad}");
        }
        for d in [
            Duration::from_secs(30),
            Duration::from_millis(1),
            Duration::new(86_399, 999_999_999),
        ] {
            assert_eq!(decimal_seconds(&seconds_str(d)), Some(d));
        }
    }

    #[test]
    fn escaping_round_trips_through_split() {
        for v in ["/a=b", r"a\b", "[a", "x]", "a:b", "trailing ", "é:"] {
            let s = format!("unix:{}", esc(v));
            assert_eq!(fields(trim(&s)), [pos("unix"), pos(v)], "{s}");
        }
    }
}
