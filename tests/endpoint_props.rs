//! Property tests of endpoint strings: every endpoint prints as a string that
//! parses back to it, and no accepted string has a part that is ignored.

mod fuzzing;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use torsion::endpoints::{ClientEndpoint, ServerEndpoint};

/// Any non-empty string, with the characters the syntax treats specially
/// (`:`, `\`, `=`, `[`, `]`, `,`, whitespace) well represented.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        r"[a-z/=:\\\[\], .é\t\n-]{1,12}",
        "\\PC{1,8}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

fn path() -> impl Strategy<Value = PathBuf> {
    text().prop_map(PathBuf::from)
}

fn ip(v6: bool) -> BoxedStrategy<IpAddr> {
    if v6 {
        any::<Ipv6Addr>().prop_map(IpAddr::V6).boxed()
    } else {
        any::<Ipv4Addr>().prop_map(IpAddr::V4).boxed()
    }
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    (any::<bool>().prop_flat_map(ip), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

fn backlog() -> impl Strategy<Value = Option<i32>> {
    proptest::option::of(1..=i32::MAX)
}

fn alpn() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        r"[a-z0-9/.=:\\\[\]-]{1,8}".prop_map(String::into_bytes),
        0..4,
    )
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_-][a-z0-9._-]{0,20}",
        any::<Ipv4Addr>().prop_map(|a| a.to_string()),
        any::<Ipv6Addr>().prop_map(|a| a.to_string()),
    ]
}

/// From a millisecond to a day, to the nanosecond.
fn timeout() -> impl Strategy<Value = Duration> {
    (1_000_000u64..=86_400_000_000_000).prop_map(Duration::from_nanos)
}

fn server() -> impl Strategy<Value = ServerEndpoint> {
    prop_oneof![
        (any::<bool>().prop_flat_map(ip), any::<u16>(), backlog()).prop_map(
            |(ip, port, backlog)| {
                ServerEndpoint::Tcp {
                    addr: SocketAddr::new(ip, port),
                    backlog,
                }
            }
        ),
        (
            path(),
            proptest::option::of(0u32..=0o7777),
            any::<bool>(),
            backlog()
        )
            .prop_map(|(path, mode, remove_stale, backlog)| ServerEndpoint::Unix {
                path,
                mode,
                remove_stale,
                backlog,
            }),
        (addr(), backlog(), path(), path(), alpn()).prop_map(|(addr, backlog, cert, key, alpn)| {
            ServerEndpoint::Tls {
                addr,
                backlog,
                cert,
                key,
                alpn,
            }
        }),
    ]
}

fn client() -> impl Strategy<Value = ClientEndpoint> {
    prop_oneof![
        (host(), any::<u16>(), timeout()).prop_map(|(host, port, timeout)| ClientEndpoint::Tcp {
            host,
            port,
            timeout
        }),
        (path(), timeout()).prop_map(|(path, timeout)| ClientEndpoint::Unix { path, timeout }),
        (
            host(),
            any::<u16>(),
            timeout(),
            proptest::option::of(path()),
            proptest::option::of(text()),
            alpn()
        )
            .prop_map(|(host, port, timeout, ca, sni, alpn)| ClientEndpoint::Tls {
                host,
                port,
                timeout,
                ca,
                sni,
                alpn,
            }),
    ]
}

/// Valid parameters of every endpoint type, different from the defaults.
const EXTRA: &[&str] = &[
    "port=1",
    "interface=127.0.0.2",
    r"interface=\:\:2",
    "backlog=7",
    "address=/x",
    "path=/x",
    "mode=600",
    "lockfile=1",
    "cert=/x",
    "certkey=/x",
    "key=/x",
    "privatekey=/x",
    "alpn=x",
    "host=x",
    "timeout=1.5",
    "ca=/x",
    "sni=x",
    "bogus=1",
];

/// Positional arguments that would be valid in some slot.
const POSITIONAL: &[&str] = &["1", "127.0.0.2", "/x", "x"];

/// Adding a parameter, or a positional argument after the positional ones,
/// to what `e` prints is refused or changes the endpoint: nothing is taken
/// and then dropped.
fn nothing_added_is_ignored<E>(e: &E) -> Result<(), TestCaseError>
where
    E: std::str::FromStr + std::fmt::Display + PartialEq + std::fmt::Debug,
{
    let shown = e.to_string();
    let fields = fuzzing::fields(&shown);
    let npos = fields
        .iter()
        .skip(1)
        .take_while(|f| !f.contains('='))
        .count();
    let mut variants: Vec<String> = EXTRA.iter().map(|x| format!("{shown}:{x}")).collect();
    for p in POSITIONAL {
        let mut f: Vec<&str> = fields.clone();
        f.insert(1 + npos, p);
        variants.push(f.join(":"));
    }
    for v in variants {
        if let Ok(x) = v.parse::<E>() {
            prop_assert_ne!(&x, e, "{:?} was accepted with a part ignored", v);
        }
    }
    Ok(())
}

/// Replacing the value of any one part of an accepted string with other
/// valid values gives an error or, for at least one of them, another
/// endpoint: no part's value is ignored.
fn every_part_counts<E>(s: &str, e: &E) -> Result<(), TestCaseError>
where
    E: std::str::FromStr + PartialEq + std::fmt::Debug,
{
    const OTHER: &[&str] = &[
        "1",
        "2",
        "600",
        "/y",
        "y",
        "127.0.0.2",
        r"\:\:2",
        "on",
        "off",
        "h3",
        "0.5",
    ];
    let fields = fuzzing::fields(s);
    for i in 1..fields.len() {
        let (name, value) = match fields[i].split_once('=') {
            Some((n, v)) => (format!("{n}="), v),
            None => (String::new(), fields[i]),
        };
        if value.trim().is_empty() {
            continue;
        }
        let mut some_ok = false;
        let mut some_differs = false;
        for o in OTHER {
            let mut f = fields.clone();
            let part = format!("{name}{o}");
            if part == fields[i] {
                continue; // the same value: no change to see
            }
            f[i] = &part;
            if let Ok(x) = f.join(":").parse::<E>() {
                some_ok = true;
                some_differs |= &x != e;
            }
        }
        prop_assert!(
            !some_ok || some_differs,
            "{:?}: part {} ({:?}) is ignored",
            s,
            i,
            fields[i]
        );
    }
    Ok(())
}

/// Strings made of endpoint-like parts, most of them invalid.
fn endpoint_like() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        Just("tcp"),
        Just("tcp6"),
        Just("unix"),
        Just("tls"),
        Just("ssl"),
        Just("TCP")
    ];
    let part = prop_oneof![
        prop::sample::select(EXTRA).prop_map(str::to_owned),
        prop::sample::select(POSITIONAL).prop_map(str::to_owned),
        Just("80".to_owned()),
        Just("host=example.org".to_owned()),
        Just("timeout=30".to_owned()),
        Just("lockfile=0".to_owned()),
        Just("interface=[::1]".to_owned()),
        Just(String::new()),
        r"[a-z=\\:\[\]/0-9 ]{0,6}",
    ];
    (kind, prop::collection::vec(part, 0..6)).prop_map(|(k, parts)| {
        std::iter::once(k.to_owned())
            .chain(parts)
            .collect::<Vec<_>>()
            .join(":")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn server_endpoints_print_and_parse_back(e in server()) {
        let shown = e.to_string();
        let again: ServerEndpoint = shown.parse().map_err(|err| {
            TestCaseError::fail(format!("{e:?} prints as {shown:?}, which fails: {err}"))
        })?;
        prop_assert_eq!(&again, &e);
        fuzzing::check_endpoint(shown.as_bytes());
        nothing_added_is_ignored(&e)?;
        every_part_counts(&shown, &e)?;
    }

    #[test]
    fn client_endpoints_print_and_parse_back(e in client()) {
        let shown = e.to_string();
        let again: ClientEndpoint = shown.parse().map_err(|err| {
            TestCaseError::fail(format!("{e:?} prints as {shown:?}, which fails: {err}"))
        })?;
        prop_assert_eq!(&again, &e);
        fuzzing::check_endpoint(shown.as_bytes());
        nothing_added_is_ignored(&e)?;
        every_part_counts(&shown, &e)?;
    }

    #[test]
    fn no_accepted_string_has_an_ignored_part(s in endpoint_like()) {
        fuzzing::check_endpoint(s.as_bytes());
        if let Ok(e) = s.parse::<ServerEndpoint>() {
            every_part_counts(&s, &e)?;
        }
        if let Ok(e) = s.parse::<ClientEndpoint>() {
            every_part_counts(&s, &e)?;
        }
    }
}
