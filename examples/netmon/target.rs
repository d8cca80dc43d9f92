//! What to watch and how: targets with their probe settings, from the command
//! line or a TOML file with per-target settings.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// The kind of check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// TCP connect, then optionally send and expect.
    Tcp,
    /// TCP and a TLS handshake (certificate checked, days left reported), then
    /// optionally send and expect inside TLS.
    Tls,
    /// A datagram sent, a reply expected.
    Udp,
    /// An HTTP GET of the target's URL: 2xx, and the body contains `expect`.
    Http,
}

impl Kind {
    /// The name on the command line, in the file and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Tls => "tls",
            Kind::Udp => "udp",
            Kind::Http => "http",
        }
    }
}

/// TLS settings of a tls probe.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The name the certificate must be for (SNI too).
    pub server_name: torsion::tls::ServerName<'static>,
    /// Roots and verification.
    pub config: Arc<torsion::tls::ClientConfig>,
}

/// How one target is checked.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The kind of check.
    pub kind: Kind,
    /// Sent once connected (and, in persistent mode, every interval).
    pub send: Option<Vec<u8>>,
    /// The reply must start with this.
    pub expect: Option<Vec<u8>>,
    /// For each step: connect, handshake, reply.
    pub timeout: Duration,
    /// Warn when the certificate expires in fewer days than this (tls).
    pub cert_warn_days: Option<f64>,
    /// TLS settings (tls; https).
    pub tls: Option<TlsSettings>,
    /// The URL (http).
    pub url: Option<String>,
}

impl Spec {
    /// A plain TCP connect check.
    pub fn tcp(timeout: Duration) -> Spec {
        Spec {
            kind: Kind::Tcp,
            send: None,
            expect: None,
            timeout,
            cert_warn_days: None,
            tls: None,
            url: None,
        }
    }
}

/// One thing to watch.
#[derive(Debug, Clone)]
pub struct Target {
    /// As given (shown in reports).
    pub name: String,
    /// Where it resolved to.
    pub addr: SocketAddr,
    /// Time between checks.
    pub interval: Duration,
    /// How it is checked.
    pub spec: Spec,
}

/// Resolves `name` (`host:port`, `[v6]:port`).
///
/// # Errors
/// A message when the name does not resolve.
pub fn resolve(name: &str) -> Result<SocketAddr, String> {
    let name = name.trim();
    name.to_socket_addrs()
        .map_err(|e| format!("{name}: {e}"))?
        .next()
        .ok_or_else(|| format!("{name}: resolves to no address"))
}

impl Target {
    /// A target checked by `spec` every `interval`.
    ///
    /// # Errors
    /// A message when the name does not resolve.
    pub fn new(name: &str, interval: Duration, spec: Spec) -> Result<Target, String> {
        Ok(Target {
            name: name.trim().to_string(),
            addr: resolve(name)?,
            interval,
            spec,
        })
    }
}

/// Reads targets from a plain list: one per line; blank lines and `#` comments
/// are skipped.
pub fn parse_targets(text: &str) -> Vec<&str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Settings common to the command line and the file, each optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Probe kind.
    pub probe: Option<Kind>,
    /// Seconds between checks.
    pub interval: Option<f64>,
    /// Seconds for each step.
    pub timeout: Option<f64>,
    /// Sent after connecting; escapes as on the command line.
    pub send: Option<String>,
    /// Expected reply prefix; same escapes.
    pub expect: Option<String>,
    /// tls: warn below this many days.
    pub cert_warn: Option<f64>,
    /// tls: the certificate's name (default: the host of the address).
    pub server_name: Option<String>,
    /// tls: trust only this CA (PEM file) instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// tls: accept any certificate (still reports its expiry).
    pub insecure: Option<bool>,
}

impl Settings {
    /// `self`, with what it leaves open taken from `base`.
    pub fn over(&self, base: &Settings) -> Settings {
        Settings {
            probe: self.probe.or(base.probe),
            interval: self.interval.or(base.interval),
            timeout: self.timeout.or(base.timeout),
            send: self.send.clone().or_else(|| base.send.clone()),
            expect: self.expect.clone().or_else(|| base.expect.clone()),
            cert_warn: self.cert_warn.or(base.cert_warn),
            server_name: self
                .server_name
                .clone()
                .or_else(|| base.server_name.clone()),
            ca: self.ca.clone().or_else(|| base.ca.clone()),
            insecure: self.insecure.or(base.insecure),
        }
    }

    /// The target `address` checked with these settings (defaults: tcp, 5 s
    /// interval, 2 s timeout).
    ///
    /// # Errors
    /// One sentence naming the target and what is wrong.
    pub fn target(&self, name: Option<&str>, address: &str) -> Result<Target, String> {
        let label = name.unwrap_or(address).to_string();
        let err = |e: String| format!("{label}: {e}");
        let secs = |what: &str, v: Option<f64>, default: f64| -> Result<Duration, String> {
            let v = v.unwrap_or(default);
            match Duration::try_from_secs_f64(v) {
                Ok(d) if !d.is_zero() => Ok(d),
                _ => Err(format!(
                    "{what} must be a number of seconds above 0, got {v}"
                )),
            }
        };
        let interval = secs("interval", self.interval, 5.0).map_err(err)?;
        let timeout = secs("timeout", self.timeout, 2.0).map_err(err)?;
        let bytes = |what: &str, v: &Option<String>| {
            v.as_deref()
                .map(super::unescape)
                .transpose()
                .map_err(|e| format!("{label}: {what}: {e}"))
        };
        let send = bytes("send", &self.send)?;
        let expect = bytes("expect", &self.expect)?;
        if expect.as_ref().is_some_and(|e| e.is_empty()) {
            return Err(err("expect must not be empty".into()));
        }
        let kind = self.probe.unwrap_or(Kind::Tcp);
        if kind == Kind::Udp && send.is_none() {
            return Err(err("a udp probe needs something to send (send)".into()));
        }
        if let Some(d) = self.cert_warn {
            if !d.is_finite() || d < 0.0 {
                return Err(err(format!(
                    "cert-warn must be a number of days >= 0, got {d}"
                )));
            }
        }
        let (url, hostport) = if kind == Kind::Http {
            let (https, rest) = match address.strip_prefix("https://") {
                Some(r) => (true, r),
                None => (false, address.strip_prefix("http://").unwrap_or(address)),
            };
            let host = rest.split('/').next().unwrap_or_default();
            let hostport = if host.contains(':') && !host.ends_with(']') {
                host.to_string()
            } else {
                format!("{host}:{}", if https { 443 } else { 80 })
            };
            let url = if address.contains("://") {
                address.to_string()
            } else {
                format!("http://{address}")
            };
            (Some(url), hostport)
        } else {
            (None, address.to_string())
        };
        let tls = if kind == Kind::Tls || url.as_deref().is_some_and(|u| u.starts_with("https://"))
        {
            Some(self.tls_settings(&hostport).map_err(err)?)
        } else {
            None
        };
        let addr = resolve(&hostport)?;
        Ok(Target {
            name: label,
            addr,
            interval,
            spec: Spec {
                kind,
                send,
                expect,
                timeout,
                cert_warn_days: self.cert_warn,
                tls,
                url,
            },
        })
    }

    fn tls_settings(&self, address: &str) -> Result<TlsSettings, String> {
        let host = match &self.server_name {
            Some(n) => n.clone(),
            None => host_of(address),
        };
        let server_name = torsion::tls::server_name(&host).map_err(|e| e.to_string())?;
        let config = if self.insecure.unwrap_or(false) {
            torsion::tls::insecure_client_config()
        } else if let Some(ca) = &self.ca {
            let pem =
                std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
            torsion::tls::client_config_with_ca(&pem)
        } else {
            torsion::tls::client_config()
        }
        .map_err(|e| e.to_string())?;
        Ok(TlsSettings {
            server_name,
            config: Arc::new(config),
        })
    }
}

/// `example.com` of `example.com:443`, `::1` of `[::1]:443`.
fn host_of(address: &str) -> String {
    let a = address.trim();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    a.rsplit_once(':').map_or(a, |(h, _)| h).to_string()
}

/// A target in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTarget {
    address: String,
    name: Option<String>,
    #[serde(flatten)]
    settings: Settings,
}

/// The file: defaults at the top, then `[[target]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(flatten)]
    defaults: Settings,
    #[serde(default)]
    target: Vec<FileTarget>,
}

/// Reads a TOML config: top-level settings are defaults for every target (over
/// `base`, the command line's), each `[[target]]` may override any of them.
///
/// ```toml
/// interval = 5
/// timeout = 2
///
/// [[target]]
/// address = "db.example:5432"
///
/// [[target]]
/// name = "web"
/// address = "example.com:443"
/// probe = "tls"
/// cert_warn = 14
/// ```
///
/// # Errors
/// One sentence: the file, and what is wrong.
pub fn from_toml(text: &str, base: &Settings) -> Result<Vec<Target>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let defaults = file.defaults.over(base);
    file.target
        .iter()
        .map(|t| {
            t.settings
                .over(&defaults)
                .target(t.name.as_deref(), &t.address)
        })
        .collect()
}

/// Reads the TOML config at `path`.
///
/// # Errors
/// As [`from_toml`], with the path.
pub fn load(path: &Path, base: &Settings) -> Result<Vec<Target>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    from_toml(&text, base).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_give_per_target_settings_over_the_defaults() {
        let text = r#"
            interval = 3
            send = "PING\r\n"
            [[target]]
            address = "127.0.0.1:80"
            [[target]]
            name = "dns"
            address = "127.0.0.1:53"
            probe = "udp"
            timeout = 0.5
            expect = "PONG"
        "#;
        let base = Settings {
            timeout: Some(1.0),
            ..Settings::default()
        };
        let t = from_toml(text, &base).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "127.0.0.1:80");
        assert_eq!(t[0].interval, Duration::from_secs(3));
        assert_eq!(t[0].spec.timeout, Duration::from_secs(1));
        assert_eq!(t[0].spec.send.as_deref(), Some(&b"PING\r\n"[..]));
        assert_eq!((t[1].name.as_str(), t[1].spec.kind), ("dns", Kind::Udp));
        assert_eq!(t[1].spec.timeout, Duration::from_millis(500));
        let bad = from_toml("[[target]]\naddress = \"x:1\"\ncolour = 3\n", &base);
        assert!(bad.unwrap_err().contains("colour"));
        assert!(from_toml(
            "[[target]]\naddress = \"127.0.0.1:1\"\ninterval = 0\n",
            &base
        )
        .is_err());
    }

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("example.com:443"), "example.com");
        assert_eq!(host_of("[::1]:443"), "::1");
    }
}
