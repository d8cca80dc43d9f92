//! The http probe, over the crate's HTTP client: a GET of the target's URL on
//! a new connection; up when the status is 2xx and (with `--expect`) the body
//! contains the text. Latency is the whole exchange (resolve, connect, TLS,
//! the response); its phases come from the client's timings.

use std::rc::Rc;
use std::time::Instant;

use torsion::http::{ClientConfig, ClientError, HttpClient};
use torsion::Core;

use super::monitor::{Monitor, Origin};
use super::status::{Phases, Reason, Status, Up};
use super::target::Spec;

/// Starts an http check of target `target`.
pub fn start(core: &mut Core, target: usize, monitor: Monitor, spec: Rc<Spec>) {
    let started = Instant::now();
    let config = ClientConfig {
        connect_timeout: spec.timeout,
        response_timeout: spec.timeout,
        follow_redirects: 0,
        tls: spec.tls.as_ref().map(|t| t.config.clone()),
        ..ClientConfig::default()
    };
    let client = HttpClient::with_config(config);
    let url = spec.url.clone().unwrap_or_default();
    let local = core.local();
    let expect = spec.expect.clone();
    // The chain reports by itself; nothing waits on the Deferred.
    drop(client.get(core, &url).add_both(move |r| {
        let _keep = client; // the client lives until its answer
        let status: Status = match r {
            Ok(resp) if !(200..300).contains(&resp.status) => {
                Err(Reason::Http(format!("status {}", resp.status)))
            }
            Ok(resp) => match &expect {
                Some(e) if !contains(resp.body_bytes(), e) => Err(Reason::Http(format!(
                    "body does not contain {:?}",
                    String::from_utf8_lossy(e)
                ))),
                _ => {
                    let mut up = Up::new(started.elapsed());
                    up.phases = resp.timings().map(|t| Phases::of(&t));
                    Ok(up)
                }
            },
            Err(e) => Err(reason(&e)),
        };
        local.call(move |core| monitor.report(core, target, Origin::Check, started, status));
        Ok::<(), ClientError>(())
    }));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn reason(e: &ClientError) -> Reason {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("refused") {
        Reason::Refused
    } else if lower.contains("timed out") || lower.contains("timeout") {
        Reason::TimedOut
    } else if lower.contains("unreachable") {
        Reason::Unreachable
    } else {
        Reason::Http(text)
    }
}
