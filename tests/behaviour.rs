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

/// The same scripted conversations over a TCP socket, the pump, TLS over the
/// pump and TLS over TCP give identical callback sequences, bytes and
/// reasons: every stream transport runs on the one engine.
#[cfg(feature = "tls")]
mod one_engine {
    use crate::suite::parity::*;
    use torsion::DisconnectReason;

    #[test]
    fn echo_is_the_same_everywhere() {
        same_everywhere(
            echo,
            &["made", "data", "lost:Done"],
            &["made", "data", "lost:Done"],
        );
    }

    #[test]
    fn a_close_after_writing_delivers_everything_everywhere() {
        same_everywhere(
            greet_and_close,
            &["made", "lost:Done"],
            &["made", "data", "lost:Done"],
        );
    }

    #[test]
    fn half_close_is_the_same_everywhere() {
        same_everywhere(
            half_close,
            &["made", "data", "read_lost", "lost:Done"],
            &["made", "write_lost", "data", "lost:Done"],
        );
    }

    #[test]
    fn an_abort_is_a_reset_for_the_peer_everywhere() {
        same_everywhere(
            abort_after_greeting,
            &["made", "lost:Reset"],
            &["made", "data", "lost:Aborted"],
        );
    }

    #[test]
    fn a_stream_source_is_sent_whole_everywhere() {
        same_everywhere(
            stream_then_close,
            &["made", "streamed", "lost:Done"],
            &["made", "data", "lost:Done"],
        );
    }

    #[test]
    fn a_graceful_close_keeps_its_reason_everywhere() {
        let lost = format!(
            "lost:{:?}",
            DisconnectReason::protocol("expected a greeting")
        );
        same_everywhere(
            close_with_a_reason,
            &["made", "data", &lost],
            &["made", "lost:Done"],
        );
    }
}
