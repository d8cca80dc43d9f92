//! An emulated network for the tools' tests: a network namespace joined to this
//! one by a veth pair, with unique names and addresses, torn down on drop.
//! Faults: the link cut (the namespace's end of the pair set down) and a
//! blackhole (an nftables rule in the namespace dropping everything).
//!
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip`, and `nft` for the
//! blackhole; [`Net::new`] says why not when they are missing, and the tests
//! print a SKIP line.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One namespace and its link.
#[derive(Debug)]
pub struct Net {
    /// The namespace's name.
    pub ns: String,
    host_if: String,
    ns_if: String,
    /// This side's address.
    pub host_ip: Ipv4Addr,
    /// The namespace's address.
    pub ns_ip: Ipv4Addr,
    children: Vec<Child>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// Makes the namespace and the link, or says why it cannot.
    pub fn new() -> Result<Net, String> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{}{}", pid % 100_000, n);
        let net = Net {
            ns: format!("ttool{tag}"),
            host_if: format!("tth{tag}"),
            ns_if: format!("ttn{tag}"),
            host_ip: Ipv4Addr::new(10, 180 + (pid % 60) as u8, (n % 250) as u8, 1),
            ns_ip: Ipv4Addr::new(10, 180 + (pid % 60) as u8, (n % 250) as u8, 2),
            children: Vec::new(),
        };
        run(&["ip", "netns", "add", &net.ns])?;
        // From here on, drop cleans up.
        let host = format!("{}/24", net.host_ip);
        let inner = format!("{}/24", net.ns_ip);
        let steps: [&[&str]; 7] = [
            &[
                "ip",
                "link",
                "add",
                &net.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &net.ns_if,
            ],
            &["ip", "link", "set", &net.ns_if, "netns", &net.ns],
            &["ip", "addr", "add", &host, "dev", &net.host_if],
            &["ip", "link", "set", &net.host_if, "up"],
            &[
                "ip", "netns", "exec", &net.ns, "ip", "addr", "add", &inner, "dev", &net.ns_if,
            ],
            &[
                "ip", "netns", "exec", &net.ns, "ip", "link", "set", &net.ns_if, "up",
            ],
            &[
                "ip", "netns", "exec", &net.ns, "ip", "link", "set", "lo", "up",
            ],
        ];
        for s in steps {
            run(s)?;
        }
        Ok(net)
    }

    /// Whether `nft` is there for [`blackhole`](Self::blackhole).
    pub fn has_nft() -> bool {
        Command::new("nft")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts `program args` inside the namespace; killed on drop.
    pub fn spawn_inside(&mut self, program: &std::path::Path, args: &[&str]) -> &mut Child {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn in the namespace");
        self.children.push(child);
        self.children.last_mut().expect("just pushed")
    }

    /// Cuts the link (the namespace's end goes down): packets are lost
    /// silently, no reset, no ICMP.
    pub fn link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        run(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            "ip",
            "link",
            "set",
            &self.ns_if,
            state,
        ])
        .expect("set the link");
    }

    /// Drops every packet in and out of the namespace (or stops dropping).
    pub fn blackhole(&self, on: bool) {
        let ns = &self.ns;
        if on {
            let nft = |rule: &str| {
                run(&["ip", "netns", "exec", ns, "nft", rule]).expect("add the drop rule")
            };
            nft("add table inet blackhole");
            for hook in ["input", "output"] {
                nft(&format!(
                    "add chain inet blackhole {hook} {{ type filter hook {hook} priority 0; policy drop; }}"
                ));
            }
        } else {
            run(&[
                "ip",
                "netns",
                "exec",
                ns,
                "nft",
                "delete",
                "table",
                "inet",
                "blackhole",
            ])
            .expect("remove the drop rule");
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting the namespace deletes its end of the pair, and so the pair,
        // and its nftables rules.
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

/// The namespace, or a SKIP line and `None`.
pub fn net_or_skip(test: &str) -> Option<Net> {
    match Net::new() {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("SKIP {test}: cannot make a network namespace ({e})");
            None
        }
    }
}

/// Lines of a child's stdout, read on a thread, each with when it was read.
pub fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line that satisfies `want` (keeping every line read in `seen`).
pub fn wait_line(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    deadline: Duration,
    mut want: impl FnMut(&str) -> bool,
) -> Option<String> {
    let end = Instant::now() + deadline;
    loop {
        let left = end.checked_duration_since(Instant::now())?;
        let line = rx.recv_timeout(left).ok()?;
        seen.push(line.clone());
        if want(&line) {
            return Some(line);
        }
    }
}

/// Parses `2026-12-01T23:02:47.798Z`.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<u64>().ok()?,
        t.next()?.parse::<u64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy.rem_euclid(400);
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe - 719_468) as u64;
    Some(
        UNIX_EPOCH
            + Duration::from_secs(days * 86_400 + h * 3600 + min * 60)
            + Duration::from_secs_f64(sec),
    )
}

/// Seconds between two wall-clock times, signed.
pub fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}
