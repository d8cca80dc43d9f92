//! The Prometheus text exposition format (version 0.0.4): a small writer
//! ([`Exposition`]) for metric families with `# HELP` and `# TYPE`, counters,
//! gauges and summaries, and labels escaped as the format asks; and
//! [`render_snapshots`], which writes the reactors' [`Snapshot`]s
//! (counters, gauges, callback durations) as a `/metrics` page.
//!
//! The writer checks what would make a scraper reject the page: a metric or
//! label name outside the format's alphabet, a family written twice, a label
//! the type reserves (`quantile` on a summary), a counter that does not end
//! in `_total` (the writer adds it), a sample of the wrong kind. Each is a
//! [`PrometheusError`], never a panic, so a page built from user-supplied
//! names cannot be malformed.
//!
//! ```
//! use torsion::prometheus::{Exposition, MetricType};
//!
//! let mut page = Exposition::new();
//! let mut requests = page.family("app_requests", MetricType::Counter, "Requests answered.")?;
//! requests.sample(&[("code", "200")], 41)?;
//! requests.sample(&[("code", "404")], 1)?;
//! page.family("app_queue", MetricType::Gauge, "Jobs waiting.")?.sample(&[], 3)?;
//! let text = page.finish();
//! let want = [
//!     "# HELP app_requests_total Requests answered.",
//!     "# TYPE app_requests_total counter",
//!     "app_requests_total{code=\"200\"} 41",
//!     "app_requests_total{code=\"404\"} 1",
//!     "# HELP app_queue Jobs waiting.",
//!     "# TYPE app_queue gauge",
//!     "app_queue 3",
//! ];
//! assert_eq!(text, want.join("\n") + "\n");
//! # Ok::<(), torsion::prometheus::PrometheusError>(())
//! ```
//!
//! [`Snapshot`]: crate::introspect::Snapshot

mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

pub use snapshot::{render_snapshots, CONTENT_TYPE};

/// A metric family's type, as written on its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricType {
    /// A value that only goes up (restarting at zero with the process). Its
    /// name ends in `_total`; the writer adds the suffix when it is missing.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Quantiles of observations, with their `_sum` and `_count`.
    Summary,
    /// No type given.
    Untyped,
}

impl MetricType {
    /// The word on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        }
    }
}

/// Why the writer refused something: the page stays well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrometheusError {
    /// A metric name outside `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("invalid metric name {0:?}")]
    MetricName(String),
    /// A label name outside `[a-zA-Z_][a-zA-Z0-9_]*`, or one starting with
    /// `__` (reserved for Prometheus itself).
    #[error("invalid label name {0:?}")]
    LabelName(String),
    /// A label the family's type reserves (`quantile` on a summary).
    #[error("label {label:?} is reserved in a {kind} family")]
    ReservedLabel {
        /// The label.
        label: String,
        /// The family's type.
        kind: &'static str,
    },
    /// The same label twice in one sample.
    #[error("label {0:?} given twice")]
    DuplicateLabel(String),
    /// A family of that name was written already (a page has each family
    /// once, its samples together).
    #[error("metric family {0:?} written twice")]
    DuplicateFamily(String),
    /// A plain sample in a summary family, or a summary in another type.
    #[error("a {sample} sample does not belong in a {kind} family")]
    WrongKind {
        /// What was written.
        sample: &'static str,
        /// The family's type.
        kind: &'static str,
    },
    /// A quantile outside 0..=1.
    #[error("quantile {0} is not between 0 and 1")]
    Quantile(String),
}

/// A sample's value: integers are written exactly, floats in the format's
/// spelling (`+Inf`, `-Inf`, `NaN`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// An exact unsigned integer (counters).
    Unsigned(u64),
    /// An exact signed integer (gauges that go below zero).
    Signed(i64),
    /// A float.
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Unsigned(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Unsigned(u64::from(v))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Unsigned(v as u64)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Signed(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Signed(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Unsigned(v) => write!(f, "{v}"),
            Value::Signed(v) => write!(f, "{v}"),
            Value::Float(v) if v.is_nan() => f.write_str("NaN"),
            Value::Float(v) if v == f64::INFINITY => f.write_str("+Inf"),
            Value::Float(v) if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            // Rust's shortest round-trip spelling, which Go's and Python's
            // float parsers read back exactly.
            Value::Float(v) => write!(f, "{v}"),
        }
    }
}

/// A page in the text exposition format, written family by family: each
/// [`family`](Self::family) call writes its `# HELP` and `# TYPE` lines and
/// hands back the [`Family`] its samples go through, so a family's samples
/// are always together.
///
/// ```
/// use torsion::prometheus::{Exposition, MetricType};
///
/// let mut page = Exposition::new();
/// page.family("jobs_latency_seconds", MetricType::Summary, "Job latency.")?
///     .summary(&[("queue", "mail")], &[(0.5, 0.02), (0.99, 0.4)], 12.5, 300)?;
/// // A family is written once.
/// assert!(page.family("jobs_latency_seconds", MetricType::Gauge, "").is_err());
/// let text = page.finish();
/// assert!(text.contains("jobs_latency_seconds{queue=\"mail\",quantile=\"0.99\"} 0.4\n"));
/// assert!(text.ends_with("jobs_latency_seconds_count{queue=\"mail\"} 300\n"));
/// # Ok::<(), torsion::prometheus::PrometheusError>(())
/// ```
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    names: BTreeSet<String>,
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family: writes its `# HELP` (escaped) and `# TYPE` lines and
    /// returns the handle its samples are written through. A counter's name
    /// gets `_total` appended unless it ends with it.
    ///
    /// # Errors
    /// [`PrometheusError::MetricName`] for a name the format does not allow,
    /// [`PrometheusError::DuplicateFamily`] for a family written before (or
    /// whose sample names, such as a summary's `_sum`, clash with one).
    pub fn family(
        &mut self,
        name: &str,
        kind: MetricType,
        help: &str,
    ) -> Result<Family<'_>, PrometheusError> {
        if !valid_metric_name(name) {
            return Err(PrometheusError::MetricName(name.to_owned()));
        }
        let name = match kind {
            MetricType::Counter if !name.ends_with("_total") => format!("{name}_total"),
            _ => name.to_owned(),
        };
        let taken: Vec<String> = match kind {
            MetricType::Summary => {
                vec![name.clone(), format!("{name}_sum"), format!("{name}_count")]
            }
            _ => vec![name.clone()],
        };
        if taken.iter().any(|n| self.names.contains(n)) {
            return Err(PrometheusError::DuplicateFamily(name));
        }
        self.names.extend(taken);
        self.out.push_str("# HELP ");
        self.out.push_str(&name);
        self.out.push(' ');
        escape_help(help, &mut self.out);
        self.out.push('\n');
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        Ok(Family {
            page: self,
            name,
            kind,
            label_sets: BTreeSet::new(),
        })
    }

    /// The page so far.
    pub fn as_str(&self) -> &str {
        &self.out
    }

    /// The finished page.
    pub fn finish(self) -> String {
        self.out
    }
}

/// The samples of one family, written right after its `# TYPE` line.
#[derive(Debug)]
pub struct Family<'a> {
    page: &'a mut Exposition,
    name: String,
    kind: MetricType,
    label_sets: BTreeSet<String>,
}

impl Family<'_> {
    /// The family's name (with `_total` for a counter).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes a sample of a counter, gauge or untyped family.
    ///
    /// # Errors
    /// [`PrometheusError::WrongKind`] in a summary family (use
    /// [`summary`](Self::summary)); [`PrometheusError::LabelName`] or
    /// [`PrometheusError::DuplicateLabel`] for a bad label set.
    pub fn sample(
        &mut self,
        labels: &[(&str, &str)],
        value: impl Into<Value>,
    ) -> Result<&mut Self, PrometheusError> {
        if self.kind == MetricType::Summary {
            return Err(PrometheusError::WrongKind {
                sample: "plain",
                kind: self.kind.as_str(),
            });
        }
        let rendered = self.labels(labels, &[])?;
        let _ = writeln!(self.page.out, "{}{rendered} {}", self.name, value.into());
        Ok(self)
    }

    /// Writes one summary: a sample per `(quantile, value)` with the
    /// `quantile` label, then `_sum` and `_count`.
    ///
    /// # Errors
    /// [`PrometheusError::WrongKind`] outside a summary family;
    /// [`PrometheusError::Quantile`] for a quantile outside 0..=1;
    /// [`PrometheusError::ReservedLabel`] if `labels` has `quantile`; the
    /// label errors of [`sample`](Self::sample).
    pub fn summary(
        &mut self,
        labels: &[(&str, &str)],
        quantiles: &[(f64, f64)],
        sum: impl Into<Value>,
        count: u64,
    ) -> Result<&mut Self, PrometheusError> {
        if self.kind != MetricType::Summary {
            return Err(PrometheusError::WrongKind {
                sample: "summary",
                kind: self.kind.as_str(),
            });
        }
        if let Some((q, _)) = quantiles.iter().find(|(q, _)| !(0.0..=1.0).contains(q)) {
            return Err(PrometheusError::Quantile(q.to_string()));
        }
        let rendered = self.labels(labels, &["quantile"])?;
        for &(q, v) in quantiles {
            let q = Value::Float(q).to_string();
            let with_q = if rendered.is_empty() {
                format!("{{quantile=\"{q}\"}}")
            } else {
                format!("{},quantile=\"{q}\"}}", &rendered[..rendered.len() - 1])
            };
            let _ = writeln!(self.page.out, "{}{with_q} {}", self.name, Value::Float(v));
        }
        let _ = writeln!(self.page.out, "{}_sum{rendered} {}", self.name, sum.into());
        let _ = writeln!(self.page.out, "{}_count{rendered} {count}", self.name);
        Ok(self)
    }

    /// `{a="x",b="y"}` (empty without labels), checked and escaped.
    fn labels(
        &mut self,
        labels: &[(&str, &str)],
        reserved: &[&str],
    ) -> Result<String, PrometheusError> {
        let mut out = String::new();
        for (i, (name, value)) in labels.iter().enumerate() {
            if !valid_label_name(name) {
                return Err(PrometheusError::LabelName((*name).to_owned()));
            }
            if reserved.contains(name) {
                return Err(PrometheusError::ReservedLabel {
                    label: (*name).to_owned(),
                    kind: self.kind.as_str(),
                });
            }
            if labels[..i].iter().any(|(n, _)| n == name) {
                return Err(PrometheusError::DuplicateLabel((*name).to_owned()));
            }
            out.push(if i == 0 { '{' } else { ',' });
            out.push_str(name);
            out.push_str("=\"");
            escape_label_value(value, &mut out);
            out.push('"');
        }
        if !out.is_empty() {
            out.push('}');
        }
        // The same label set twice in a family is a duplicate series: a
        // scraper keeps one of them at random. Refuse it.
        if !self.label_sets.insert(out.clone()) {
            return Err(PrometheusError::DuplicateLabel(format!(
                "{}{out} (the whole set)",
                self.name
            )));
        }
        Ok(out)
    }
}

/// Whether `name` is a metric name the format allows.
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a label name the format allows (and not reserved).
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A label value: `\`, `"` and newline escaped.
fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A `# HELP` text: `\` and newline escaped (quotes stay as they are).
fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}
