//! Turning results into text: the progress line, the final table, the JSON
//! object.

use std::fmt::Write;

use super::config::Mode;
use super::run::{Progress, Report};

fn us(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

/// One progress line, for one interval of the run.
pub fn progress_line(p: &Progress) -> String {
    let phase = if p.warmup { "warm-up" } else { "measure" };
    let (p50, p99) = if p.latency.is_empty() {
        (0.0, 0.0)
    } else {
        (
            us(p.latency.value_at_percentile(50.0)),
            us(p.latency.value_at_percentile(99.0)),
        )
    };
    let secs = p.length.as_secs_f64().max(1e-9);
    let mut line = format!(
        "[{:>6.1}s] {phase:<7}  {:>10.0} msgs/s  {:>9.2} MiB/s  p50 {:>9.1} us  p99 {:>9.1} us  conns {:>5}  cpu {:>5.1}%  errors {}",
        p.at.as_secs_f64(),
        p.messages as f64 / secs,
        p.bytes as f64 / (1024.0 * 1024.0) / secs,
        p50,
        p99,
        p.open,
        p.cpu_percent,
        p.errors,
    );
    if p.lost > 0 {
        let _ = write!(line, "  lost {}", p.lost);
    }
    if p.stalls > 0 {
        let _ = write!(line, "  STALLS {}", p.stalls);
    }
    line
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The final report as a table.
pub fn table(r: &Report) -> String {
    let c = &r.config;
    let mut out = String::new();
    let depth = match c.mode {
        Mode::Pipeline => format!(", depth {}", c.window()),
        Mode::Bulk if !(c.reverse || c.bidir) => format!(", depth {}", c.window()),
        _ => String::new(),
    };
    let direction = if c.mode == Mode::Bulk {
        format!(", {}", c.direction())
    } else {
        String::new()
    };
    let rate = c
        .send_interval()
        .filter(|_| c.rate.is_some() || c.mode == Mode::UdpStream)
        .map_or(String::new(), |i| {
            format!(
                ", target rate {:.0} msgs/s",
                c.connections as f64 / i.as_secs_f64()
            )
        });
    let unit = if c.mode.is_udp() {
        "flow"
    } else {
        "connection"
    };
    let _ = writeln!(
        out,
        "netperf {}: {} mode{direction}{depth}, {} {unit}{} on {} thread{}, {} byte messages{rate}",
        c.addr,
        c.mode,
        c.connections,
        plural(c.connections),
        r.threads,
        plural(r.threads),
        c.size
    );
    let stall = c
        .stall
        .map_or("off".into(), |s| format!("{} ms", s.as_millis()));
    let _ = writeln!(
        out,
        "measured {:.2} s after a {:.2} s warm-up; stall threshold {stall}; peer: {}",
        r.measured.as_secs_f64(),
        c.warmup.as_secs_f64(),
        r.remote_kind
    );
    let _ = writeln!(out);
    let what = match c.mode {
        Mode::Crr => "transactions",
        Mode::Udp | Mode::UdpStream => "datagrams",
        _ => "messages",
    };
    let mut rows: Vec<(&str, String)> = Vec::new();
    if !(c.mode == Mode::Bulk && (c.reverse || c.bidir)) {
        rows.push((what, r.messages.to_string()));
        rows.push(("msgs/s", format!("{:.1}", r.msgs_per_sec())));
    }
    let rx_label = if c.reverse || c.bidir {
        "received MiB/s"
    } else {
        "MiB/s"
    };
    rows.push((rx_label, format!("{:.2}", r.mib_per_sec())));
    if c.bidir {
        rows.push(("sent MiB/s", format!("{:.2}", r.tx_mib_per_sec())));
    }
    if !r.latency.is_empty() {
        rows.push(("latency p50", format!("{:.1} us", r.latency_us(50.0))));
        rows.push(("latency p90", format!("{:.1} us", r.latency_us(90.0))));
        rows.push(("latency p99", format!("{:.1} us", r.latency_us(99.0))));
        rows.push(("latency p99.9", format!("{:.1} us", r.latency_us(99.9))));
        rows.push(("latency max", format!("{:.1} us", r.max_us())));
    }
    if c.mode.is_udp() {
        let u = &r.udp;
        rows.push((
            "loss",
            format!("{}/{} ({:.2}%)", u.lost, u.sent, u.loss_percent()),
        ));
        rows.push((
            "out of order",
            format!(
                "{} reordered, {} duplicates, {} late",
                u.reordered, u.duplicates, u.late
            ),
        ));
        rows.push(("jitter", format!("{:.3} ms", u.jitter_ms())));
    }
    rows.push((
        "cpu client",
        format!(
            "{:.1}% (user {:.2} s, system {:.2} s)",
            r.cpu.percent(),
            r.cpu.user_s,
            r.cpu.system_s
        ),
    ));
    if let Some(s) = &r.remote {
        rows.push((
            "cpu server",
            format!(
                "{:.1}% (user {:.2} s, system {:.2} s)",
                s.cpu_percent(),
                s.cpu_user_s,
                s.cpu_system_s
            ),
        ));
        if c.bidir {
            let mib = s.rx_bytes as f64 / (1024.0 * 1024.0);
            rows.push((
                "server got",
                format!("{mib:.2} MiB over {:.2} s (warm-up included)", s.wall_s),
            ));
        }
    }
    rows.push((
        "connections",
        format!("{} of {} connected", r.connected, c.connections),
    ));
    rows.push((
        "stalls",
        if r.stalls == 0 {
            "0".into()
        } else {
            format!(
                "{} (longest {:.2} s without progress)",
                r.stalls,
                r.longest_stall.as_secs_f64()
            )
        },
    ));
    rows.push((
        "errors",
        format!(
            "{} (verification {}, lost connections {}, failed connects {}, stalls {})",
            r.errors(),
            r.verify_errors,
            r.lost,
            r.connect_failed,
            r.stalls
        ),
    ));
    rows.push((
        "result",
        if r.errors() == 0 {
            "ok".into()
        } else {
            "FAILED".into()
        },
    ));
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<14} {v}");
    }
    if let Some(rate) = c.rate {
        if r.msgs_per_sec() < rate * 0.95 && !c.mode.is_udp() {
            let _ = writeln!(
                out,
                "  note: the target rate was not reached ({:.0} of {rate:.0} msgs/s): the server is saturated and latencies include the queueing",
                r.msgs_per_sec()
            );
        }
    }
    for (reason, n) in &r.connect_reasons {
        let _ = writeln!(out, "  connect failed: {reason} (x{n})");
    }
    for d in &r.details {
        let _ = writeln!(out, "  error: {d}");
    }
    out
}

/// Escapes `s` for a JSON string.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A finite number for JSON (which has no NaN or infinity).
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".into()
    }
}

/// The final report as one JSON object on one line: the run's parameters
/// (`params`), the totals at the top level, CPU use of both ends, UDP figures,
/// and every interval.
pub fn json(r: &Report) -> String {
    let c = &r.config;
    let details: Vec<String> = r.details.iter().map(|d| json_str(d)).collect();
    let reasons: Vec<String> = r
        .connect_reasons
        .iter()
        .map(|(reason, n)| format!("{{\"reason\":{},\"count\":{n}}}", json_str(reason)))
        .collect();
    let intervals: Vec<String> = r
        .intervals
        .iter()
        .map(|i| {
            format!(
                concat!(
                    "{{\"end_s\":{},\"seconds\":{},\"warmup\":{},\"messages\":{},",
                    "\"bytes\":{},\"errors\":{},\"stalls\":{},\"lost\":{},",
                    "\"p50_us\":{},\"p99_us\":{},\"cpu_percent\":{}}}"
                ),
                num(i.end_s),
                num(i.seconds),
                i.warmup,
                i.messages,
                i.bytes,
                i.errors,
                i.stalls,
                i.lost,
                num(i.p50_us),
                num(i.p99_us),
                num(i.cpu_percent)
            )
        })
        .collect();
    let opt_ms =
        |d: Option<std::time::Duration>| d.map_or("null".into(), |d| d.as_millis().to_string());
    let params = format!(
        concat!(
            "{{\"address\":{},\"mode\":{},\"direction\":{},\"connections\":{},\"threads\":{},",
            "\"size\":{},\"depth\":{},\"rate\":{},\"warmup_s\":{},\"duration_s\":{},",
            "\"messages\":{},\"stall_ms\":{},\"timeout_ms\":{},\"interval_s\":{},",
            "\"connect_timeout_ms\":{}}}"
        ),
        json_str(&c.addr.to_string()),
        json_str(c.mode.name()),
        json_str(c.direction()),
        c.connections,
        c.threads,
        c.size,
        c.window(),
        c.rate.map_or("null".into(), num),
        num(c.warmup.as_secs_f64()),
        num(c.duration.as_secs_f64()),
        c.messages.map_or("null".into(), |m| m.to_string()),
        opt_ms(c.stall),
        c.timeout.as_millis(),
        num(c.interval.as_secs_f64()),
        c.connect_timeout.as_millis(),
    );
    let remote = match &r.remote {
        Some(s) => format!(
            "{{\"cpu_percent\":{},\"user_s\":{},\"system_s\":{},\"wall_s\":{},\"rx_bytes\":{},\"tx_bytes\":{}}}",
            num(s.cpu_percent()),
            num(s.cpu_user_s),
            num(s.cpu_system_s),
            num(s.wall_s),
            s.rx_bytes,
            s.tx_bytes
        ),
        None => "null".into(),
    };
    let u = &r.udp;
    let udp = if c.mode.is_udp() {
        format!(
            concat!(
                "{{\"sent\":{},\"received\":{},\"lost\":{},\"loss_percent\":{},",
                "\"reordered\":{},\"duplicates\":{},\"late\":{},\"jitter_ms\":{}}}"
            ),
            u.sent,
            u.received,
            u.lost,
            num(u.loss_percent()),
            u.reordered,
            u.duplicates,
            u.late,
            num(u.jitter_ms())
        )
    } else {
        "null".into()
    };
    format!(
        concat!(
            "{{\"params\":{},\"address\":{},\"mode\":{},\"connections\":{},\"connected\":{},",
            "\"threads\":{},\"size\":{},\"depth\":{},\"rate\":{},\"warmup_s\":{},",
            "\"duration_s\":{},\"messages\":{},\"bytes\":{},\"tx_bytes\":{},",
            "\"msgs_per_sec\":{},\"mib_per_sec\":{},\"tx_mib_per_sec\":{},",
            "\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},",
            "\"udp\":{},\"stalls\":{},\"longest_stall_ms\":{},",
            "\"cpu_utilization_percent\":{{\"host_total\":{},\"host_user\":{},\"host_system\":{},\"remote_total\":{}}},",
            "\"remote\":{},\"peer\":{},",
            "\"errors\":{},\"verify_errors\":{},\"lost_connections\":{},\"connect_errors\":{},",
            "\"result\":{},\"connect_failures\":[{}],\"error_details\":[{}],\"intervals\":[{}]}}"
        ),
        params,
        json_str(&c.addr.to_string()),
        json_str(c.mode.name()),
        c.connections,
        r.connected,
        r.threads,
        c.size,
        c.window(),
        c.rate.map_or("null".into(), num),
        num(c.warmup.as_secs_f64()),
        num(r.measured.as_secs_f64()),
        r.messages,
        r.bytes,
        r.tx_bytes,
        num(r.msgs_per_sec()),
        num(r.mib_per_sec()),
        num(r.tx_mib_per_sec()),
        num(r.latency_us(50.0)),
        num(r.latency_us(90.0)),
        num(r.latency_us(99.0)),
        num(r.latency_us(99.9)),
        num(r.max_us()),
        udp,
        r.stalls,
        r.longest_stall.as_millis(),
        num(r.cpu.percent()),
        num(r.cpu.user_s * 100.0 / r.cpu.wall_s.max(1e-9)),
        num(r.cpu.system_s * 100.0 / r.cpu.wall_s.max(1e-9)),
        r.remote.map_or("null".into(), |s| num(s.cpu_percent())),
        remote,
        json_str(&r.remote_kind),
        r.errors(),
        r.verify_errors,
        r.lost,
        r.connect_failed,
        json_str(if r.errors() == 0 { "ok" } else { "FAILED" }),
        reasons.join(","),
        details.join(","),
        intervals.join(","),
    )
}

#[cfg(test)]
mod tests {
    use super::json_str;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
