//! One behaviour suite over every stream transport: lifecycle order and
//! exactly-once `connection_lost`, echo, a 10 MiB transfer, graceful close,
//! abort, half-close and back-pressure must behave alike on TCP (IPv4, IPv6)
//! and Unix sockets, and TLS over both. A new transport plugs in with an impl of
//! `suite::Transport` and one `behaviour_suite!` line.
mod suite;
mod util;

behaviour_suite!(tcp_v4, crate::suite::TcpV4);
behaviour_suite!(tcp_v6, crate::suite::TcpV6);
behaviour_suite!(unix, crate::suite::Unix);
#[cfg(feature = "tls")]
behaviour_suite!(tls_tcp, crate::suite::tls::TlsTcp);
#[cfg(feature = "tls")]
behaviour_suite!(tls_unix, crate::suite::tls::TlsUnix);
