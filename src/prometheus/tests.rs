//! The writer's escaping and structure.

use super::*;

#[test]
fn label_values_escape_backslash_quote_and_newline() {
    let mut page = Exposition::new();
    page.family("m", MetricType::Gauge, "h")
        .unwrap()
        .sample(&[("path", "a\\b\"c\nd")], 1u64)
        .unwrap();
    let text = page.finish();
    assert!(
        text.contains("m{path=\"a\\\\b\\\"c\\nd\"} 1\n"),
        "got {text:?}"
    );
    // One sample line: the newline did not split it.
    assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 1);
}

#[test]
fn help_escapes_backslash_and_newline_but_not_quotes() {
    let mut page = Exposition::new();
    page.family("m", MetricType::Gauge, "say \"hi\"\\\nbye")
        .unwrap();
    assert_eq!(
        page.finish(),
        "# HELP m say \"hi\"\\\\\\nbye\n# TYPE m gauge\n"
    );
}

#[test]
fn counters_get_total_once() {
    let mut page = Exposition::new();
    page.family("a", MetricType::Counter, "A.")
        .unwrap()
        .sample(&[], 1u64)
        .unwrap();
    page.family("b_total", MetricType::Counter, "B.")
        .unwrap()
        .sample(&[], 2u64)
        .unwrap();
    let text = page.finish();
    assert!(
        text.contains("# TYPE a_total counter\na_total 1\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE b_total counter\nb_total 2\n"),
        "{text}"
    );
    assert!(!text.contains("_total_total"));
}

#[test]
fn a_family_is_written_once() {
    let mut page = Exposition::new();
    page.family("x", MetricType::Counter, "").unwrap();
    assert_eq!(
        page.family("x_total", MetricType::Counter, "").unwrap_err(),
        PrometheusError::DuplicateFamily("x_total".into())
    );
    page.family("s", MetricType::Summary, "").unwrap();
    // A summary's _sum and _count belong to it.
    assert!(matches!(
        page.family("s_sum", MetricType::Gauge, ""),
        Err(PrometheusError::DuplicateFamily(_))
    ));
    assert!(matches!(
        page.family("s_count", MetricType::Gauge, ""),
        Err(PrometheusError::DuplicateFamily(_))
    ));
}

#[test]
fn names_outside_the_alphabet_are_refused() {
    let mut page = Exposition::new();
    for bad in ["", "1abc", "a-b", "a b", "é"] {
        assert_eq!(
            page.family(bad, MetricType::Gauge, "").unwrap_err(),
            PrometheusError::MetricName(bad.into())
        );
    }
    assert!(valid_metric_name("a:b_c9"));
    let mut f = page.family("ok", MetricType::Gauge, "").unwrap();
    for bad in ["", "9", "a:b", "__x", "a-b"] {
        assert_eq!(
            f.sample(&[(bad, "v")], 1u64).unwrap_err(),
            PrometheusError::LabelName(bad.into())
        );
    }
    assert!(matches!(
        f.sample(&[("a", "1"), ("a", "2")], 1u64),
        Err(PrometheusError::DuplicateLabel(_))
    ));
    // Nothing refused reached the page.
    let text = page.finish();
    assert_eq!(text, "# HELP ok \n# TYPE ok gauge\n");
}

#[test]
fn the_same_series_twice_is_refused() {
    let mut page = Exposition::new();
    let mut f = page.family("g", MetricType::Gauge, "").unwrap();
    f.sample(&[("r", "0")], 1u64).unwrap();
    f.sample(&[("r", "1")], 1u64).unwrap();
    assert!(matches!(
        f.sample(&[("r", "0")], 2u64),
        Err(PrometheusError::DuplicateLabel(_))
    ));
}

#[test]
fn summaries_write_quantiles_sum_and_count() {
    let mut page = Exposition::new();
    let mut f = page.family("d_seconds", MetricType::Summary, "D.").unwrap();
    f.summary(&[("reactor", "0")], &[(0.5, 0.25), (0.99, 1.5)], 10.0, 7)
        .unwrap();
    f.summary(&[], &[(1.0, 2.0)], 3u64, 1).unwrap();
    assert_eq!(
        f.sample(&[], 1u64).unwrap_err(),
        PrometheusError::WrongKind {
            sample: "plain",
            kind: "summary"
        }
    );
    assert!(matches!(
        f.summary(&[("quantile", "x")], &[], 0u64, 0),
        Err(PrometheusError::ReservedLabel { .. })
    ));
    assert!(matches!(
        f.summary(&[("r", "2")], &[(1.5, 0.0)], 0u64, 0),
        Err(PrometheusError::Quantile(_))
    ));
    assert_eq!(
        page.finish(),
        "# HELP d_seconds D.\n# TYPE d_seconds summary\n\
         d_seconds{reactor=\"0\",quantile=\"0.5\"} 0.25\n\
         d_seconds{reactor=\"0\",quantile=\"0.99\"} 1.5\n\
         d_seconds_sum{reactor=\"0\"} 10\n\
         d_seconds_count{reactor=\"0\"} 7\n\
         d_seconds{quantile=\"1\"} 2\n\
         d_seconds_sum 3\n\
         d_seconds_count 1\n"
    );
}

#[test]
fn summaries_only_in_summary_families() {
    let mut page = Exposition::new();
    let mut f = page.family("c", MetricType::Counter, "").unwrap();
    assert_eq!(
        f.summary(&[], &[], 0u64, 0).unwrap_err(),
        PrometheusError::WrongKind {
            sample: "summary",
            kind: "counter"
        }
    );
}

#[test]
fn values_in_the_formats_spelling() {
    assert_eq!(Value::from(u64::MAX).to_string(), "18446744073709551615");
    assert_eq!(Value::from(-3).to_string(), "-3");
    assert_eq!(Value::from(i64::MIN).to_string(), "-9223372036854775808");
    assert_eq!(Value::from(f64::INFINITY).to_string(), "+Inf");
    assert_eq!(Value::from(f64::NEG_INFINITY).to_string(), "-Inf");
    assert_eq!(Value::from(f64::NAN).to_string(), "NaN");
    assert_eq!(Value::from(0.001).to_string(), "0.001");
    assert_eq!(Value::from(1e-9).to_string(), "0.000000001");
}

#[test]
fn a_snapshot_page_has_each_family_once_and_a_missing_reactor_only_as_down() {
    use crate::Reactor;
    let mut snapshot = Reactor::new().unwrap().snapshot();
    snapshot.counters.accepted = 5;
    snapshot.counters.closed.reset = 2;
    let page = render_snapshots(&[Some(snapshot.clone()), None, Some(snapshot)]);
    let mut types = Vec::new();
    let mut seen_samples = std::collections::BTreeSet::new();
    let mut current = String::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = rest.split(' ').next().unwrap().to_owned();
            assert!(!types.contains(&current), "{current} twice");
            types.push(current.clone());
        } else if !line.starts_with('#') {
            // Each sample sits in its own family's block.
            assert!(line.starts_with(&current), "{line} outside {current}");
            assert!(
                seen_samples.insert(line.split(' ').next().unwrap().to_owned()),
                "{line}"
            );
            assert!(
                !line.contains("reactor=\"1\"") || line.starts_with("torsion_reactor_up"),
                "{line}"
            );
        }
    }
    assert!(page.contains("torsion_reactor_up{reactor=\"1\"} 0\n"));
    assert!(page.contains("torsion_reactor_up{reactor=\"2\"} 1\n"));
    assert!(page.contains("torsion_connections_accepted_total{reactor=\"2\"} 5\n"));
    assert!(page.contains("torsion_connections_closed_total{reactor=\"0\",reason=\"reset\"} 2\n"));
    assert!(page.contains("# TYPE torsion_callback_duration_seconds summary\n"));
    assert!(page.contains("torsion_callback_duration_seconds_count{reactor=\"0\"} "));
    assert!(page.starts_with("# HELP torsion_reactor_up "));
}
