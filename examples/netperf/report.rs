//! Turning results into text: the progress line, the final table, the JSON
//! object.

use std::fmt::Write;

use super::run::{Progress, Report};

fn us(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

/// One progress line, for one second of the run.
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
    format!(
        "[{:>4}s] {phase:<7}  {:>10.0} msgs/s  {:>9.2} MiB/s  p50 {:>9.1} us  p99 {:>9.1} us  conns {:>5}  errors {}",
        p.second,
        p.messages as f64,
        p.bytes as f64 / (1024.0 * 1024.0),
        p50,
        p99,
        p.open,
        p.errors,
    )
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
        super::config::Mode::PingPong => String::new(),
        _ => format!(", depth {}", c.window()),
    };
    let rate = c
        .rate
        .map_or(String::new(), |r| format!(", target rate {r:.0} msgs/s"));
    let _ = writeln!(
        out,
        "netperf {}: {} mode{depth}, {} connection{} on {} thread{}, {} byte messages{rate}",
        c.addr,
        c.mode,
        c.connections,
        plural(c.connections),
        r.threads,
        plural(r.threads),
        c.size
    );
    let _ = writeln!(
        out,
        "measured {:.2} s after a {:.2} s warm-up",
        r.measured.as_secs_f64(),
        c.warmup.as_secs_f64()
    );
    let _ = writeln!(out);
    let rows: [(&str, String); 11] = [
        ("messages", r.messages.to_string()),
        ("msgs/s", format!("{:.1}", r.msgs_per_sec())),
        ("MiB/s", format!("{:.2}", r.mib_per_sec())),
        ("latency p50", format!("{:.1} us", r.latency_us(50.0))),
        ("latency p90", format!("{:.1} us", r.latency_us(90.0))),
        ("latency p99", format!("{:.1} us", r.latency_us(99.0))),
        ("latency p99.9", format!("{:.1} us", r.latency_us(99.9))),
        ("latency max", format!("{:.1} us", r.max_us())),
        (
            "connections",
            format!("{} of {} connected", r.connected, c.connections),
        ),
        (
            "errors",
            format!(
                "{} (verification {}, lost connections {}, failed connects {})",
                r.errors(),
                r.verify_errors,
                r.lost,
                r.connect_failed
            ),
        ),
        (
            "result",
            if r.errors() == 0 {
                "ok".into()
            } else {
                "FAILED".into()
            },
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<14} {v}");
    }
    if let Some(rate) = c.rate {
        if r.msgs_per_sec() < rate * 0.95 {
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

/// The final report as one JSON object on one line.
pub fn json(r: &Report) -> String {
    let c = &r.config;
    let details: Vec<String> = r.details.iter().map(|d| json_str(d)).collect();
    let reasons: Vec<String> = r
        .connect_reasons
        .iter()
        .map(|(reason, n)| format!("{{\"reason\":{},\"count\":{n}}}", json_str(reason)))
        .collect();
    format!(
        concat!(
            "{{\"address\":{},\"mode\":{},\"connections\":{},\"connected\":{},\"threads\":{},",
            "\"size\":{},\"depth\":{},\"rate\":{},\"warmup_s\":{},\"duration_s\":{},",
            "\"messages\":{},\"bytes\":{},\"msgs_per_sec\":{},\"mib_per_sec\":{},",
            "\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},",
            "\"errors\":{},\"verify_errors\":{},\"lost_connections\":{},\"connect_errors\":{},",
            "\"connect_failures\":[{}],\"error_details\":[{}]}}"
        ),
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
        num(r.msgs_per_sec()),
        num(r.mib_per_sec()),
        num(r.latency_us(50.0)),
        num(r.latency_us(90.0)),
        num(r.latency_us(99.0)),
        num(r.latency_us(99.9)),
        num(r.max_us()),
        r.errors(),
        r.verify_errors,
        r.lost,
        r.connect_failed,
        reasons.join(","),
        details.join(","),
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
