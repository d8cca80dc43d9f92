//! Endpoint string syntax (Twisted's): `kind:positional:name=value:...`, with
//! `\` escaping a colon or a backslash (`interface=\:\:1`); an IPv6 literal may
//! also be written in brackets (`interface=[::1]`).

use std::path::PathBuf;
use std::time::Duration;

use super::EndpointError;

/// One parsed string: its kind, positional arguments and `name=value` pairs.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) kind: String,
    positional: Vec<String>,
    named: Vec<(String, String)>,
    used: Vec<bool>,
}

/// Splits `s` on unescaped colons outside brackets.
fn split(s: &str) -> Result<Vec<String>, EndpointError> {
    let mut out = Vec::new();
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
            ':' if depth == 0 => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if depth != 0 {
        return Err(EndpointError::syntax(s, "an unclosed '['"));
    }
    out.push(cur);
    Ok(out)
}

impl Parts {
    pub(crate) fn parse(s: &str) -> Result<Parts, EndpointError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(EndpointError::Empty);
        }
        let mut fields = split(s)?.into_iter();
        let kind = fields.next().unwrap_or_default().to_ascii_lowercase();
        if kind.is_empty() {
            return Err(EndpointError::syntax(
                s,
                "no endpoint type before the first ':'",
            ));
        }
        let mut positional = Vec::new();
        let mut named: Vec<(String, String)> = Vec::new();
        for f in fields {
            match f.split_once('=') {
                Some((k, v)) => {
                    let k = k.trim().to_ascii_lowercase();
                    if k.is_empty() {
                        return Err(EndpointError::syntax(s, "a parameter without a name"));
                    }
                    if named.iter().any(|(n, _)| *n == k) {
                        return Err(EndpointError::Duplicate { kind, name: k });
                    }
                    named.push((k, v.to_owned()));
                }
                None if !named.is_empty() => {
                    return Err(EndpointError::syntax(
                        s,
                        "a positional argument after a name=value one (write a ':' in a value as '\\:', an IPv6 address in brackets)",
                    ))
                }
                None => positional.push(f),
            }
        }
        let used = vec![false; named.len()];
        Ok(Parts {
            kind,
            positional,
            named,
            used,
        })
    }

    /// Parameter `name`, given by name or as positional argument `pos`.
    pub(crate) fn get(&mut self, name: &str, pos: Option<usize>) -> Option<String> {
        if let Some(i) = self.named.iter().position(|(n, _)| n == name) {
            self.used[i] = true;
            return Some(self.named[i].1.clone());
        }
        pos.and_then(|p| self.positional.get_mut(p).map(std::mem::take))
            .filter(|v| !v.is_empty())
    }

    /// A parameter that must be there.
    pub(crate) fn require(
        &mut self,
        name: &'static str,
        pos: Option<usize>,
    ) -> Result<String, EndpointError> {
        self.get(name, pos).ok_or_else(|| EndpointError::Missing {
            kind: self.kind.clone(),
            name,
        })
    }

    /// Fails on what no getter asked for (typos must not pass silently).
    pub(crate) fn finish(self, max_positional: usize) -> Result<(), EndpointError> {
        if let Some(extra) = self.positional.get(max_positional) {
            return Err(EndpointError::Unexpected {
                kind: self.kind,
                what: format!("positional argument {extra:?}"),
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

    pub(crate) fn timeout(&mut self, default: Duration) -> Result<Duration, EndpointError> {
        let Some(v) = self.get("timeout", None) else {
            return Ok(default);
        };
        match v.trim().parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 => {
                Ok(Duration::from_secs_f64(secs))
            }
            _ => Err(self.invalid("timeout", &v, "not a number of seconds (0 < t <= 86400)")),
        }
    }

    pub(crate) fn backlog(&mut self) -> Result<Option<i32>, EndpointError> {
        let Some(v) = self.get("backlog", None) else {
            return Ok(None);
        };
        match v.trim().parse::<i32>() {
            Ok(b) if b > 0 => Ok(Some(b)),
            _ => Err(self.invalid("backlog", &v, "not a positive number")),
        }
    }

    pub(crate) fn path(
        &mut self,
        name: &'static str,
        pos: Option<usize>,
    ) -> Result<PathBuf, EndpointError> {
        Ok(PathBuf::from(self.require(name, pos)?))
    }

    pub(crate) fn flag(&mut self, name: &str) -> Result<bool, EndpointError> {
        let Some(v) = self.get(name, None) else {
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
        let Some(v) = self.get("alpn", None) else {
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

    #[test]
    fn splits_on_unescaped_colons_outside_brackets() {
        assert_eq!(
            split(r"tcp:80:interface=\:\:1").unwrap(),
            ["tcp", "80", "interface=::1"]
        );
        assert_eq!(
            split("tcp:80:interface=[::1]").unwrap(),
            ["tcp", "80", "interface=[::1]"]
        );
        assert_eq!(split(r"unix:/a\\b").unwrap(), ["unix", r"/a\b"]);
        assert!(split("tcp:[::1").is_err());
        assert!(split("tcp:80\\").is_err());
    }

    #[test]
    fn named_after_positional_only() {
        let mut p = Parts::parse("tcp:8000:interface=127.0.0.1").unwrap();
        assert_eq!(p.kind, "tcp");
        assert_eq!(p.get("port", Some(0)).as_deref(), Some("8000"));
        assert_eq!(p.get("interface", Some(1)).as_deref(), Some("127.0.0.1"));
        p.finish(2).unwrap();
        assert!(Parts::parse("tcp:port=1:80").is_err());
        assert!(matches!(
            Parts::parse("tcp:port=1:port=2"),
            Err(EndpointError::Duplicate { .. })
        ));
    }

    #[test]
    fn leftovers_are_errors() {
        let mut p = Parts::parse("tcp:80:intrface=x").unwrap();
        let _ = p.get("port", Some(0));
        assert!(matches!(p.finish(1), Err(EndpointError::Unexpected { .. })));
    }
}
