//! netmon's engine, shared by the example binary and its tests: targets and
//! their settings, records, the probes (tcp, tls, udp), the monitor and its
//! summary, and the `--on-change` command.

pub mod hook;
pub mod http;
pub mod json;
pub mod monitor;
pub mod probe;
pub mod status;
pub mod target;
pub mod udp;
pub mod x509;

/// Turns `\r`, `\n`, `\t`, `\0`, `\\` and `\xHH` escapes into bytes, so probes
/// like `PING\r\n` can be given on a command line.
///
/// # Errors
/// A message for an unknown or incomplete escape.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = [bytes.next(), bytes.next()];
                let text: Option<String> = hex.iter().map(|b| b.map(char::from)).collect();
                let v = text
                    .as_deref()
                    .and_then(|t| u8::from_str_radix(t, 16).ok())
                    .ok_or_else(|| format!("bad \\x escape in {s:?}: two hex digits expected"))?;
                out.push(v);
            }
            Some(c) => return Err(format!("unknown escape \\{} in {s:?}", char::from(c))),
            None => return Err(format!("{s:?} ends with a lone backslash")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"PING\r\n").unwrap(), b"PING\r\n");
        assert_eq!(unescape(r"a\x41\\\t\0").unwrap(), b"aA\\\t\0");
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\x4").is_err());
        assert!(unescape(r"\xzz").is_err());
        assert!(unescape("end\\").is_err());
    }
}
