//! netmon's engine against listeners in the same process that stop and start
//! again, send good or bad banners, stay silent or hang up: the status changes
//! come in order, with the right reasons.

mod util;

#[allow(dead_code)]
#[path = "../examples/netmon/mod.rs"]
mod netmon;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use netmon::monitor::{Config, Monitor};
use netmon::status::{Event, Reason};
use netmon::target::{Kind, Spec, Target};
use torsion::Address;
use torsion::{ConnectionHandle, Context, Factory, Protocol, Reactor};
use util::*;

type Events = Rc<RefCell<Vec<Event>>>;

fn target(addr: SocketAddr) -> Target {
    target_with(addr, spec())
}

fn target_with(addr: SocketAddr, spec: Spec) -> Target {
    Target {
        name: addr.to_string(),
        addr,
        interval: Duration::from_millis(200),
        spec,
    }
}

fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn monitor(targets: Vec<SocketAddr>, spec: Spec, persistent: bool) -> (Monitor, Events) {
    let events = Events::default();
    let e = events.clone();
    let config = Config {
        targets: targets
            .into_iter()
            .map(|a| target_with(a, spec.clone()))
            .collect(),
        persistent,
        count: None,
    };
    (
        Monitor::new(config, move |ev| e.borrow_mut().push(ev.clone())),
        events,
    )
}

fn spec() -> Spec {
    Spec::tcp(Duration::from_secs(5))
}

fn spec_with(send: Option<&[u8]>, expect: Option<&[u8]>, timeout: Duration) -> Spec {
    Spec {
        kind: Kind::Tcp,
        send: send.map(<[u8]>::to_vec),
        expect: expect.map(<[u8]>::to_vec),
        ..Spec::tcp(timeout)
    }
}

/// The (up, reason) sequence seen for `name`.
fn history(events: &Events, name: &str) -> Vec<Result<(), Reason>> {
    events
        .borrow()
        .iter()
        .filter(|e| e.target == name)
        .map(|e| e.status.clone().map(drop))
        .collect()
}

fn round(r: &mut Reactor, m: &Monitor) {
    let before = m.rounds_done();
    m.check_all(r);
    run_until(r, || m.rounds_done() > before);
}

#[test]
fn a_listener_that_stops_and_starts_again_goes_down_and_up_in_order() {
    let mut r = Reactor::new().unwrap();
    let port = r.listen_tcp(localhost(), EchoFactory).unwrap();
    let a = port.local_addr();
    let b = closed_port();
    let (m, events) = monitor(vec![a, b], spec(), false);

    round(&mut r, &m);
    port.stop_listening(&mut r);
    round(&mut r, &m);
    round(&mut r, &m); // still down: no new event
    let _port = r.listen_tcp(a, EchoFactory).unwrap();
    round(&mut r, &m);

    assert_eq!(
        history(&events, &a.to_string()),
        [Ok(()), Err(Reason::Refused), Ok(())]
    );
    assert_eq!(history(&events, &b.to_string()), [Err(Reason::Refused)]);

    let ev = events.borrow();
    let lines: Vec<String> = ev
        .iter()
        .filter(|e| e.target == a.to_string())
        .map(|e| e.to_string())
        .collect();
    assert!(
        lines[0].contains(&format!("{a} up (latency ")),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(&format!("{a} down (refused) after ")),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(" up (latency ") && lines[2].ends_with(" down"),
        "{}",
        lines[2]
    );
    let down_again = ev
        .iter()
        .filter(|e| e.target == a.to_string())
        .nth(1)
        .unwrap();
    assert_eq!(down_again.failures, 1);

    m.with_record(0, |rec| {
        assert_eq!(
            (rec.checks, rec.ups, rec.failures, rec.total_failures),
            (4, 2, 0, 2)
        );
        assert_eq!(rec.check_uptime(), Some(50.0));
        assert!(rec.latency_ms(99.0).is_some());
    });
    m.with_record(1, |rec| assert_eq!((rec.failures, rec.ups), (4, 0)));
    let summary = m.summary();
    // The summary repeats the down event's words.
    assert!(summary.contains("refused"), "{summary}");
}

/// Sends a fixed banner on connect (or nothing), and maybe hangs up at once.
struct Banner {
    text: &'static [u8],
    hang_up: bool,
}

struct BannerProto(&'static [u8], bool);

impl Protocol for BannerProto {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        ctx.write(self.0);
        if self.1 {
            ctx.lose_connection();
        }
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

impl Factory for Banner {
    type Protocol = BannerProto;
    fn build_protocol(&mut self, _peer: &Address) -> Option<BannerProto> {
        Some(BannerProto(self.text, self.hang_up))
    }
}

fn banner_server(r: &mut Reactor, text: &'static [u8], hang_up: bool) -> SocketAddr {
    r.listen_tcp(localhost(), Banner { text, hang_up })
        .unwrap()
        .local_addr()
}

#[test]
fn banner_checks_tell_wrong_silent_and_closing_servers_apart() {
    let mut r = Reactor::new().unwrap();
    let good = banner_server(&mut r, b"SSH-2.0-OpenSSH_9.6\r\n", false);
    let wrong = banner_server(&mut r, b"HTTP/1.1 400 Bad Request\r\n", false);
    let silent = banner_server(&mut r, b"", false);
    let closing = banner_server(&mut r, b"SS", true);
    let split = banner_server(&mut r, b"SS", false); // a prefix, then nothing
    let targets = [good, wrong, silent, closing, split].to_vec();
    let spec = spec_with(None, Some(b"SSH-"), Duration::from_millis(300));
    let (m, events) = monitor(targets, spec, false);
    round(&mut r, &m);
    assert_eq!(history(&events, &good.to_string()), [Ok(())]);
    assert_eq!(
        history(&events, &wrong.to_string()),
        [Err(Reason::WrongBanner(
            "HTTP/1.1 400 Bad Request\r\n".into()
        ))]
    );
    assert_eq!(
        history(&events, &silent.to_string()),
        [Err(Reason::TimedOut)]
    );
    assert_eq!(
        history(&events, &closing.to_string()),
        [Err(Reason::Closed)]
    );
    assert_eq!(
        history(&events, &split.to_string()),
        [Err(Reason::TimedOut)]
    );
    let line = events
        .borrow()
        .iter()
        .find(|e| e.target == wrong.to_string())
        .unwrap()
        .to_string();
    assert!(
        line.contains("down (wrong banner: got \"HTTP/1.1"),
        "{line}"
    );
}

#[test]
fn a_probe_is_sent_and_the_reply_checked() {
    let mut r = Reactor::new().unwrap();
    let echo = r.listen_tcp(localhost(), EchoFactory).unwrap().local_addr();
    let spec = spec_with(Some(b"PING\r\n"), Some(b"PING"), Duration::from_secs(5));
    let (m, events) = monitor(vec![echo], spec, false);
    round(&mut r, &m);
    assert_eq!(history(&events, &echo.to_string()), [Ok(())]);
    let spec = spec_with(Some(b"PING\r\n"), Some(b"PONG"), Duration::from_secs(5));
    let (m, events) = monitor(vec![echo], spec, false);
    round(&mut r, &m);
    assert_eq!(
        history(&events, &echo.to_string()),
        [Err(Reason::WrongBanner("PING\r\n".into()))]
    );
}

/// A server that remembers its connections so the test can hang up on them.
#[derive(Clone, Default)]
struct Tracked(Rc<RefCell<Vec<ConnectionHandle>>>);
struct TrackedProto(Tracked);

impl Protocol for TrackedProto {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        (self.0).0.borrow_mut().push(ctx.handle());
    }
    fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
}

impl Factory for Tracked {
    type Protocol = TrackedProto;
    fn build_protocol(&mut self, _peer: &Address) -> Option<TrackedProto> {
        Some(TrackedProto(self.clone()))
    }
}

#[test]
fn persistent_mode_reports_a_disconnect_at_once_and_the_reconnect() {
    let mut r = Reactor::new().unwrap();
    let conns = Tracked::default();
    let port = r.listen_tcp(localhost(), conns.clone()).unwrap();
    let addr = port.local_addr();
    let (m, events) = monitor(vec![addr], spec(), true);
    m.start(&mut r);
    run_until(&mut r, || events.borrow().len() == 1);
    assert!(events.borrow()[0].is_up());

    // The service goes away: its connection is closed and it refuses new ones.
    port.stop_listening(&mut r);
    let h = conns.0.borrow()[0];
    r.connection(h).lose_connection();
    run_until(&mut r, || events.borrow().len() == 2);
    // Reported as the connection closed, before any reconnect attempt.
    assert_eq!(events.borrow()[1].status, Err(Reason::Closed));
    assert_eq!(m.with_record(0, |rec| rec.checks), 2);

    // Reconnects are refused (counted, no new line while still down)...
    run_until(&mut r, || m.with_record(0, |rec| rec.failures >= 3));
    assert_eq!(
        m.with_record(0, |rec| rec.last_reason.clone()),
        Some(Reason::Refused)
    );
    assert_eq!(events.borrow().len(), 2);

    // ...until the service is back.
    let _port = r.listen_tcp(addr, conns.clone()).unwrap();
    run_until(&mut r, || events.borrow().len() == 3);
    assert!(events.borrow()[2].is_up());
    assert_eq!(m.with_record(0, |rec| rec.failures), 0);
    let uptime = m.with_record(0, |rec| rec.time_uptime(std::time::Instant::now()));
    assert!(uptime.is_some_and(|u| u > 0.0 && u < 100.0), "{uptime:?}");
    m.stop(&mut r);
}

#[test]
fn count_stops_the_reactor_after_that_many_rounds() {
    let mut r = Reactor::new().unwrap();
    let echo = r.listen_tcp(localhost(), EchoFactory).unwrap().local_addr();
    let events = Events::default();
    let e = events.clone();
    let mut targets = vec![target(echo), target(closed_port())];
    for t in &mut targets {
        t.interval = Duration::from_millis(50);
    }
    let config = Config {
        targets,
        persistent: false,
        count: Some(3),
    };
    let m = Monitor::new(config, move |ev| e.borrow_mut().push(ev.clone()));
    m.start(&mut r);
    // Only a guard against a hang: run() must return through the count.
    let guard = r.call_later(DEADLINE, |core| core.stop().unwrap());
    r.run().unwrap();
    assert!(
        guard.active(&r),
        "run() ended by the guard, not by the count"
    );
    assert!(m.finished());
    assert_eq!(m.rounds_done(), 3);
    assert_eq!(m.with_record(0, |rec| rec.checks), 3);
    assert_eq!(m.with_record(1, |rec| rec.checks), 3);
    assert!(!m.all_up());
    assert_eq!(events.borrow().len(), 2);
}

#[test]
fn target_files_skip_comments_and_blank_lines() {
    let text = "# hosts\n127.0.0.1:80\n\n  [::1]:443  # v6\n#done\n";
    assert_eq!(
        netmon::target::parse_targets(text),
        ["127.0.0.1:80", "[::1]:443"]
    );
    let t = netmon::target::resolve(" [::1]:443 ").unwrap();
    assert_eq!(t, "[::1]:443".parse().unwrap());
    assert!(netmon::target::resolve("no-port").is_err());
}

// ---- On an emulated network: a namespace behind a veth pair ----

#[path = "netns/mod.rs"]
mod netns;

use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

/// A child process killed (SIGTERM, then SIGKILL) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One event line of netmon's output.
#[derive(Debug)]
struct Line {
    at: SystemTime,
    word: String,
    reason: String,
    /// "after X down" on up lines.
    after_down: Option<f64>,
    /// "down since T" on down lines.
    since: Option<SystemTime>,
}

fn parse_human(s: &str) -> Option<f64> {
    if let Some(ms) = s.strip_suffix(" ms") {
        return ms.trim().parse::<f64>().ok().map(|v| v / 1000.0);
    }
    if let Some((m, rest)) = s.split_once(" min ") {
        let secs = rest.strip_suffix(" s")?.trim().parse::<f64>().ok()?;
        return Some(m.trim().parse::<f64>().ok()? * 60.0 + secs);
    }
    s.strip_suffix(" s")?.trim().parse().ok()
}

fn parse_line(l: &str, target: &str) -> Option<Line> {
    let (ts, rest) = l.split_once(' ')?;
    let at = netns::parse_timestamp(ts)?;
    let rest = rest.strip_prefix(target)?.trim_start();
    let (word, rest) = rest.split_once(" (")?;
    let (reason, rest) = rest.split_once(')')?;
    let after_down = rest
        .strip_prefix(" after ")
        .and_then(|r| r.split(" down").next())
        .filter(|_| word != "down")
        .and_then(parse_human);
    let since = rest
        .split_once("; down since ")
        .and_then(|(_, t)| netns::parse_timestamp(t.trim()));
    Some(Line {
        at,
        word: word.to_string(),
        reason: reason.to_string(),
        after_down,
        since,
    })
}

fn netmon_child(target: &str, extra: &[&str]) -> Proc {
    let bin = example_binary("netmon");
    let child = Command::new(bin)
        .arg(target)
        .args(["--interval", "0.5", "--timeout", "1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn netmon");
    Proc(child)
}

#[test]
fn netns_a_link_cut_and_a_blackhole_are_reported_by_both_modes_with_their_timing() {
    let name = "netns_a_link_cut_and_a_blackhole_are_reported_by_both_modes_with_their_timing";
    let Some(mut net) = netns::net_or_skip(name) else {
        return;
    };
    if !netns::Net::has_nft() {
        eprintln!("SKIP {name}: nft is not installed (apt-get install nftables)");
        return;
    }
    const INTERVAL: f64 = 0.5;
    const TIMEOUT: f64 = 1.0;
    let t0 = std::time::Instant::now();
    let server_addr = format!("{}:5201", net.ns_ip);
    let server_bin = example_binary("netperf");
    let server = net.spawn_inside(&server_bin, &["--server", &server_addr]);
    let ready = netns::lines(server);
    let mut seen = Vec::new();
    netns::wait_line(&ready, &mut seen, DEADLINE, |l| l.contains("listening on"))
        .expect("the server starts");
    eprintln!("server up after {:?}", t0.elapsed());

    let probe = ["--send", "PING\\n", "--expect", "PING"];
    let mut interval_mode = netmon_child(&server_addr, &probe);
    let mut persistent = netmon_child(&server_addr, &[&probe[..], &["--persistent"]].concat());
    // Persistent without a probe: only TCP keepalive can tell.
    let mut keepalive = netmon_child(&server_addr, &["--persistent"]);
    let modes = [
        ("interval", netns::lines(&mut interval_mode.0)),
        ("persistent", netns::lines(&mut persistent.0)),
        ("keepalive", netns::lines(&mut keepalive.0)),
    ];
    let mut out: Vec<Vec<String>> = vec![Vec::new(), Vec::new(), Vec::new()];
    let up = |l: &str| l.contains(&format!("{server_addr} up ("));
    for (i, (_, rx)) in modes.iter().enumerate() {
        netns::wait_line(rx, &mut out[i], DEADLINE, up).expect("up at first");
    }
    eprintln!("monitors up after {:?}", t0.elapsed());

    // Outage 1: the link is cut for 5 s. Outage 2: a blackhole for 8 s.
    let mut outages = Vec::new();
    for (kind, secs) in [("link cut", 5.0), ("blackhole", 8.0)] {
        let start = SystemTime::now();
        match kind {
            "link cut" => net.link(false),
            _ => net.blackhole(true),
        }
        std::thread::sleep(Duration::from_secs_f64(secs)); // the fault itself
        let end = SystemTime::now();
        match kind {
            "link cut" => net.link(true),
            _ => net.blackhole(false),
        }
        for (i, (_, rx)) in modes.iter().enumerate() {
            netns::wait_line(rx, &mut out[i], DEADLINE, |l| {
                up(l)
                    && netns::parse_timestamp(l.split(' ').next().unwrap_or(""))
                        .is_some_and(|t| t > end)
            })
            .unwrap_or_else(|| panic!("{kind}: no up line after the fault: {:?}", out[i]));
        }
        outages.push((kind, start, end, secs));
        eprintln!(
            "{kind}: recovered {:.1} s after",
            netns::secs_between(end, SystemTime::now())
        );
    }
    for p in [&mut interval_mode, &mut persistent, &mut keepalive] {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(p.0.id() as i32, libc::SIGTERM) };
    }
    for (i, (_, rx)) in modes.iter().enumerate() {
        netns::wait_line(rx, &mut out[i], DEADLINE, |l| l.contains("last outage"));
        netns::wait_line(rx, &mut out[i], DEADLINE, |l| l.starts_with(&server_addr));
    }

    // Tolerances from the settings: an outage is seen within one interval plus
    // the timeout; its start and its end are each placed within one interval.
    // One more interval covers a loaded machine's late timers.
    for (i, (mode, _)) in modes.iter().enumerate() {
        eprintln!("{mode}:\n{}", out[i].join("\n"));
        // Keepalive counts whole seconds: its steps are the interval rounded up.
        let step = if *mode == "keepalive" {
            INTERVAL.ceil()
        } else {
            INTERVAL
        };
        let slack = INTERVAL;
        let lines: Vec<Line> = out[i]
            .iter()
            .filter_map(|l| parse_line(l, &server_addr))
            .collect();
        let downs: Vec<&Line> = lines.iter().filter(|l| l.word == "down").collect();
        let ups: Vec<&Line> = lines.iter().filter(|l| l.after_down.is_some()).collect();
        assert_eq!(
            downs.len(),
            2,
            "{mode}: one down line per outage: {:#?}",
            out[i]
        );
        assert_eq!(
            ups.len(),
            2,
            "{mode}: one up line per outage: {:#?}",
            out[i]
        );
        for (k, (kind, start, end, secs)) in outages.iter().enumerate() {
            let (d, u) = (downs[k], ups[k]);
            let seen_after = netns::secs_between(*start, d.at);
            assert!(
                (0.0..=step + TIMEOUT + slack).contains(&seen_after),
                "{mode} {kind}: down reported {seen_after:.3} s after the fault began: {:#?}",
                out[i]
            );
            let since = netns::secs_between(*start, d.since.expect("down since"));
            assert!(
                (-step - slack..=step + slack).contains(&since),
                "{mode} {kind}: down since {since:.3} s from the fault's start"
            );
            let back_after = netns::secs_between(*end, u.at);
            assert!(
                (0.0..=INTERVAL + TIMEOUT + slack).contains(&back_after),
                "{mode} {kind}: up reported {back_after:.3} s after the fault ended"
            );
            let downtime = u.after_down.expect("after X down");
            assert!(
                (downtime - secs).abs() <= step + slack,
                "{mode} {kind}: reported {downtime:.1} s down for a {secs} s outage: {:#?}",
                out[i]
            );
        }
        // The summary uses the words of the last down line.
        let summary = out[i]
            .iter()
            .find(|l| l.starts_with(&server_addr))
            .expect("summary row");
        assert!(
            summary.contains(&downs[1].reason) && summary.contains(" up "),
            "{mode}: summary {summary:?} vs event reason {:?}",
            downs[1].reason
        );
        assert!(
            summary.split_whitespace().any(|w| w == "2"),
            "{mode}: two outages in the summary: {summary:?}"
        );
    }
}

// ---- tls and udp probes, exit codes ----

use std::sync::Arc;
use torsion::{DatagramContext, DatagramProtocol};

/// Days since 1970-01-01 to (year, month, day).
fn civil(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    ((yoe + era * 400 + i64::from(m <= 2)) as i32, m, d)
}

/// A CA, and a certificate for localhost it signed that ends `days` from today
/// (at midnight UTC), as (CA PEM, server config).
fn tls_server_config(days: i64) -> (String, Arc<torsion::tls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let today = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 86_400;
    let (y, m, d) = civil(today + days);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let config =
        torsion::tls::server_config_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .unwrap();
    (ca.pem(), Arc::new(config))
}

fn tls_target(addr: SocketAddr, ca_pem: &str, warn: f64) -> Target {
    let config = torsion::tls::client_config_with_ca(ca_pem.as_bytes()).unwrap();
    let mut spec = spec();
    spec.kind = Kind::Tls;
    spec.cert_warn_days = Some(warn);
    spec.tls = Some(netmon::target::TlsSettings {
        server_name: torsion::tls::server_name("localhost").unwrap(),
        config: Arc::new(config),
    });
    target_with(addr, spec)
}

#[test]
fn tls_probes_report_certificate_days_and_warn_below_the_threshold() {
    let mut r = Reactor::new().unwrap();
    let (ca_near, near) = tls_server_config(5);
    let (ca_far, far) = tls_server_config(400);
    let near_addr = r
        .listen_tls(localhost(), near, EchoFactory)
        .unwrap()
        .local_addr();
    let far_addr = r
        .listen_tls(localhost(), far, EchoFactory)
        .unwrap()
        .local_addr();
    let targets = vec![
        tls_target(near_addr, &ca_near, 14.0),
        tls_target(far_addr, &ca_far, 14.0),
        // The far server's certificate, checked against the wrong CA.
        tls_target(far_addr, &ca_near, 14.0),
    ];
    let events = Events::default();
    let e = events.clone();
    let config = Config {
        targets,
        persistent: false,
        count: None,
    };
    let m = Monitor::new(config, move |ev| e.borrow_mut().push(ev.clone()));
    round(&mut r, &m);
    let health: Vec<_> = (0..3).map(|i| m.with_record(i, |rec| rec.health)).collect();
    use netmon::status::Health;
    assert_eq!(
        health,
        [Some(Health::Warning), Some(Health::Up), Some(Health::Down)]
    );
    let days = |i| m.with_record(i, |rec| rec.last_up.as_ref().and_then(|u| u.cert_days));
    let near_days = days(0).expect("days left");
    assert!((4.0..=6.0).contains(&near_days), "{near_days}");
    assert!(days(1).is_some_and(|d| (399.0..=401.0).contains(&d)));
    let reason = m.with_record(2, |rec| rec.down_reason.clone());
    assert!(matches!(reason, Some(Reason::Tls(_))), "{reason:?}");
    let line = events.borrow()[0].to_string();
    assert!(
        line.contains("warning (") && line.contains("below 14"),
        "{line}"
    );
    assert_eq!(m.worst(), Health::Down);
    let metrics = m.metrics();
    let near_name = near_addr.to_string();
    assert!(
        metrics.contains(&format!(
            "probe_ssl_earliest_cert_expiry{{target=\"{near_name}\"}} 1"
        )) && metrics.contains(&format!("probe_success{{target=\"{near_name}\"}} 1")),
        "{metrics}"
    );
}

#[test]
fn http_probes_check_the_status_and_the_body_and_feed_the_metrics() {
    use torsion::http::{HttpServer, Request, Response, Router};
    let mut r = Reactor::new().unwrap();
    let server = HttpServer::new(Router::new().get("/", |_: &mut torsion::Core, _: Request| {
        Response::ok("hello world")
    }));
    let addr = server.listen_tcp(&mut r, localhost()).unwrap().local_addr();
    let base = netmon::target::Settings {
        probe: Some(Kind::Http),
        timeout: Some(5.0),
        ..Default::default()
    };
    let with = |url: String, expect: Option<&str>| {
        let s = netmon::target::Settings {
            expect: expect.map(String::from),
            ..base.clone()
        };
        s.target(None, &url).unwrap()
    };
    let targets = vec![
        with(format!("http://{addr}/"), Some("hello")),
        with(format!("http://{addr}/"), Some("goodbye")),
        with(format!("http://{addr}/missing"), None),
        with(format!("http://{}/", closed_port()), None),
    ];
    let config = Config {
        targets,
        persistent: false,
        count: None,
    };
    let events = Events::default();
    let e = events.clone();
    let m = Monitor::new(config, move |ev| e.borrow_mut().push(ev.clone()));
    round(&mut r, &m);
    let reasons: Vec<_> = (0..4)
        .map(|i| m.with_record(i, |rec| rec.down_reason.clone()))
        .collect();
    assert!(m.with_record(0, |rec| rec.is_up()), "{reasons:?}");
    assert!(
        matches!(&reasons[1], Some(Reason::Http(t)) if t.contains("goodbye")),
        "{reasons:?}"
    );
    assert!(
        matches!(&reasons[2], Some(Reason::Http(t)) if t.contains("404")),
        "{reasons:?}"
    );
    assert_eq!(reasons[3], Some(Reason::Refused));
    let metrics = m.metrics();
    assert!(
        metrics.contains(&format!("probe_success{{target=\"http://{addr}/\"}} 1"))
            && metrics.contains(&format!(
                "probe_success{{target=\"http://{addr}/missing\"}} 0"
            ))
            && metrics.contains("probe_duration_seconds{target="),
        "{metrics}"
    );
    // The up check's phases: in the record, the event line, its JSON and the
    // metrics (blackbox_exporter's phase names).
    let phases = m
        .with_record(0, |rec| rec.last_up.as_ref().and_then(|u| u.phases))
        .expect("an http check has phases");
    assert!(phases.connect > Duration::ZERO, "{phases:?}");
    assert!(phases.processing > Duration::ZERO, "{phases:?}");
    assert_eq!(phases.tls, None, "no TLS for http://");
    let up_event = events
        .borrow()
        .iter()
        .find(|e| e.target == format!("http://{addr}/") && e.is_up())
        .cloned()
        .expect("an up event");
    let line = up_event.to_string();
    assert!(
        line.contains("resolve ")
            && line.contains(", connect ")
            && line.contains(", tls -, processing ")
            && line.contains(", transfer "),
        "{line}"
    );
    let json = up_event.to_json();
    assert!(
        json.starts_with('{')
            && json.ends_with('}')
            && json.contains(&format!("\"target\":\"http://{addr}/\""))
            && json.contains("\"state\":\"up\"")
            && json.contains("\"phases_ms\":{\"resolve\":")
            && json.contains("\"tls\":null"),
        "{json}"
    );
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        let name =
            format!("probe_http_duration_seconds{{target=\"http://{addr}/\",phase=\"{phase}\"}} ");
        assert!(metrics.contains(&name), "{name} in {metrics}");
    }
    let connect_line = metrics
        .lines()
        .find(|l| l.contains("phase=\"connect\"") && l.contains(&format!("http://{addr}/\"")))
        .unwrap();
    let secs: f64 = connect_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(secs > 0.0, "{connect_line}");
    // A target never up has no phases to show.
    assert!(
        !metrics.contains(&format!("target=\"http://{addr}/missing\",phase")),
        "{metrics}"
    );
}

struct UdpEcho;

impl DatagramProtocol for UdpEcho {
    fn datagram_received(&mut self, ctx: &mut DatagramContext<'_>, data: &[u8], from: &Address) {
        let _ = ctx.send_to(data, from.clone());
    }
}

#[test]
fn udp_probes_tell_an_answer_a_refusal_and_silence_apart() {
    let mut r = Reactor::new().unwrap();
    let echo = r.listen_udp(localhost(), UdpEcho).unwrap().local_addr();
    let silent_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent = silent_socket.local_addr().unwrap();
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let mut spec = spec_with(Some(b"ping"), Some(b"ping"), Duration::from_millis(300));
    spec.kind = Kind::Udp;
    let (m, events) = monitor(vec![echo, closed, silent], spec, false);
    round(&mut r, &m);
    assert_eq!(history(&events, &echo.to_string()), [Ok(())]);
    assert_eq!(
        history(&events, &closed.to_string()),
        [Err(Reason::Refused)]
    );
    assert_eq!(
        history(&events, &silent.to_string()),
        [Err(Reason::TimedOut)]
    );
}

#[test]
fn count_runs_exit_with_nagios_codes() {
    let bin = example_binary("netmon");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap().to_string();
    let down = closed_port().to_string();
    let code = |args: &[&str]| {
        Command::new(&bin)
            .args(args)
            .args(["--count", "2", "--interval", "0.1", "--timeout", "1"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(code(&[&up]), Some(0));
    assert_eq!(code(&[&up, &down]), Some(2));
    // Bad arguments are usage errors.
    assert_eq!(code(&["--probe", "udp", &up]), Some(2), "udp needs --send");
}

#[test]
fn on_change_runs_the_command_with_the_change_in_its_environment() {
    let mut r = Reactor::new().unwrap();
    let dir = std::env::temp_dir().join(format!("netmon-on-change-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("changes");
    let _ = std::fs::remove_file(&log);
    let down = closed_port();
    let (m, events) = monitor(vec![down], spec(), false);
    // A failing command must not stop the monitor: it runs first, then the
    // line is appended; `env` shows the environment holds nothing else.
    m.on_change(format!(
        "echo \"$NETMON_TARGET $NETMON_STATE prev=$NETMON_PREVIOUS \
         reason=$NETMON_REASON since=${{NETMON_SINCE:+set}} home=${{HOME:+set}} \
         n=$(env | grep -c '^NETMON_')\" >> '{}'; exit 3",
        log.display()
    ));
    m.start(&mut r);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    run_until(&mut r, || read().lines().count() >= 1);
    let first = read();
    assert_eq!(
        first.lines().next().unwrap(),
        format!(
            "{down} down prev= reason=refused since=set home={} n=5",
            if std::env::var_os("HOME").is_some() {
                "set"
            } else {
                ""
            }
        ),
        "{first}"
    );
    // The monitor carries on after the command failed: a listener on that
    // port brings the target up, and the command runs again.
    let _l = std::net::TcpListener::bind(down).unwrap();
    run_until(&mut r, || read().lines().count() >= 2);
    let text = read();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].starts_with(&format!("{down} up prev=down reason=latency ")),
        "{text}"
    );
    assert_eq!(
        history(&events, &down.to_string()),
        vec![Err(Reason::Refused), Ok(())]
    );
    m.stop(&mut r);
    let _ = std::fs::remove_dir_all(&dir);
}
