//! [`Url`]: the `http://` and `https://` URLs the client accepts.

use std::fmt;

use super::client::ClientError;

/// An absolute `http` or `https` URL, split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Whether the scheme is `https`.
    pub https: bool,
    /// The host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// The port (80 or 443 unless given).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `http://host[:port][/path][?query]` (or `https://`); a
    /// fragment is dropped, user information is refused.
    ///
    /// # Errors
    /// [`ClientError::BadUrl`] with the reason.
    ///
    /// ```
    /// use torsion::http::Url;
    /// let u = Url::parse("https://[::1]:8443/a?b=c#frag").unwrap();
    /// assert_eq!((u.https, u.host.as_str(), u.port, u.path.as_str()), (true, "::1", 8443, "/a?b=c"));
    /// ```
    pub fn parse(s: &str) -> Result<Url, ClientError> {
        let bad = |why: &str| ClientError::BadUrl(format!("{s:?}: {why}"));
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let https = if scheme.eq_ignore_ascii_case("http") {
            false
        } else if scheme.eq_ignore_ascii_case("https") {
            true
        } else {
            return Err(bad("the scheme is not http or https"));
        };
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(bad("user information is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("junk after the address")),
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad("invalid host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("invalid port"))?,
            None if https => 443,
            None => 80,
        };
        let path = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("spaces or control characters in the path"));
        }
        Ok(Url {
            https,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The `Host` field's value: the host, and the port unless it is the
    /// scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.https { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Resolves a `Location` against this URL: absolute, scheme-relative
    /// (`//host/x`), absolute-path (`/x`) or relative (`x`).
    ///
    /// # Errors
    /// [`ClientError::BadUrl`] if the result is not a valid URL.
    pub fn join(&self, location: &str) -> Result<Url, ClientError> {
        if location.contains("://") {
            return Url::parse(location);
        }
        let base = format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.authority()
        );
        if let Some(rest) = location.strip_prefix("//") {
            let scheme = if self.https { "https" } else { "http" };
            return Url::parse(&format!("{scheme}://{rest}"));
        }
        if location.starts_with('/') {
            return Url::parse(&format!("{base}{location}"));
        }
        let path = self
            .path
            .split_once('?')
            .map_or(self.path.as_str(), |(p, _)| p);
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        Url::parse(&format!("{base}{dir}/{location}"))
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let u = Url::parse("http://example.org").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert_eq!(u.authority(), "example.org");
        let u = Url::parse("http://127.0.0.1:8080?x=1").unwrap();
        assert_eq!((u.port, u.path.as_str()), (8080, "/?x=1"));
        assert_eq!(u.authority(), "127.0.0.1:8080");
        for bad in [
            "ftp://x/",
            "http://",
            "http://a:b/",
            "http://u@h/",
            "nope",
            "http://h/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn joins_locations() {
        let u = Url::parse("http://h:81/a/b?q").unwrap();
        assert_eq!(u.join("/x").unwrap().to_string(), "http://h:81/x");
        assert_eq!(u.join("c").unwrap().to_string(), "http://h:81/a/c");
        assert_eq!(u.join("//o/p").unwrap().to_string(), "http://o/p");
        assert_eq!(u.join("https://s/").unwrap().to_string(), "https://s/");
    }
}
