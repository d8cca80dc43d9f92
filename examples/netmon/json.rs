//! `--json`: each change of state as one line of JSON, written by hand
//! (netmon needs no JSON library).

use super::status::{ms, timestamp, Event, Health};

impl Event {
    /// The event as one line of JSON (for `--json`): `at`, `since` (RFC 3339
    /// UTC), `target`, `state`, `previous`, `failures`, `after_s` (the
    /// previous period, seconds), and `latency_ms`, `cert_days`, `warning`
    /// and `phases_ms` (http: resolve, connect, tls, processing, transfer)
    /// when up, or `reason` when down. Absent values are `null`.
    pub fn to_json(&self) -> String {
        let mut o = Json::default();
        o.str("at", &timestamp(self.at));
        o.str("since", &timestamp(self.since));
        o.str("target", &self.target);
        o.str("state", self.health().word());
        o.opt_str("previous", self.previous.map(Health::word));
        o.num("failures", f64::from(self.failures));
        o.opt_num("after_s", self.after.map(|d| d.as_secs_f64()));
        match &self.status {
            Ok(u) => {
                o.num("latency_ms", ms(u.latency));
                o.opt_num("cert_days", u.cert_days);
                o.opt_str("warning", u.warning.as_deref());
                match &u.phases {
                    Some(p) => {
                        let mut inner = Json::default();
                        for (name, d) in p.named() {
                            if name == "tls" && p.tls.is_none() {
                                inner.raw(name, "null");
                            } else {
                                inner.num(name, ms(d));
                            }
                        }
                        o.raw("phases_ms", &inner.finish());
                    }
                    None => o.raw("phases_ms", "null"),
                }
            }
            Err(r) => o.str("reason", &r.to_string()),
        }
        o.finish()
    }
}

/// A flat JSON object, written by hand (netmon needs no JSON library).
#[derive(Default)]
struct Json {
    out: String,
}

impl Json {
    fn key(&mut self, k: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        quote(&mut self.out, k);
        self.out.push(':');
    }
    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        quote(&mut self.out, v);
    }
    fn opt_str(&mut self, k: &str, v: Option<&str>) {
        match v {
            Some(v) => self.str(k, v),
            None => self.raw(k, "null"),
        }
    }
    fn num(&mut self, k: &str, v: f64) {
        self.key(k);
        if v.is_finite() {
            self.out += &format!("{}", (v * 1000.0).round() / 1000.0);
        } else {
            self.out += "null";
        }
    }
    fn opt_num(&mut self, k: &str, v: Option<f64>) {
        match v {
            Some(v) => self.num(k, v),
            None => self.raw(k, "null"),
        }
    }
    fn raw(&mut self, k: &str, v: &str) {
        self.key(k);
        self.out += v;
    }
    fn finish(mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        self.out
    }
}

/// Appends `s` as a JSON string.
fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::super::status::{Event, Health, Phases, Reason, Up};

    #[test]
    fn events_as_json_lines() {
        let ms = Duration::from_millis;
        let mut up = Up::new(ms(12));
        up.phases = Some(Phases {
            resolve: ms(1),
            connect: ms(2),
            tls: None,
            processing: ms(8),
            transfer: ms(1),
        });
        let e = Event {
            at: UNIX_EPOCH + Duration::from_secs(60),
            since: UNIX_EPOCH,
            target: "http://h/\"q\"\\".into(),
            status: Ok(up),
            failures: 0,
            after: Some(Duration::from_secs(60)),
            previous: Some(Health::Down),
        };
        assert_eq!(
            e.to_json(),
            r#"{"at":"1970-01-01T00:01:00.000Z","since":"1970-01-01T00:00:00.000Z","target":"http://h/\"q\"\\","state":"up","previous":"down","failures":0,"after_s":60,"latency_ms":12,"cert_days":null,"warning":null,"phases_ms":{"resolve":1,"connect":2,"tls":null,"processing":8,"transfer":1}}"#
        );
        let down = Event {
            status: Err(Reason::Http("status 503\n".into())),
            failures: 3,
            after: None,
            previous: None,
            ..e
        };
        let j = down.to_json();
        assert!(j.contains(r#""reason":"http: status 503\n""#), "{j}");
        assert!(
            j.contains(r#""previous":null"#) && !j.contains("phases_ms"),
            "{j}"
        );
        assert_eq!(j.matches('\n').count(), 0, "one line");
    }
}
