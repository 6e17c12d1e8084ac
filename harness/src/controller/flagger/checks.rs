//! One metric check as Flagger judges it (`scheduler_metrics.go` `runBuiltinMetricChecks`,
//! `runMetricChecks`): the provider's reading ([`super::provider`]) against `thresholdRange`
//! (strict: a value equal to a bound passes) or the deprecated `threshold`, with Flagger's event
//! texts, Go's number formatting included.

use super::policy::{Check, CheckKind};
use super::provider::{NO_VALUES, Reading};

/// How a check ended; `Err` carries the event Flagger records (every failure is a Warning).
pub fn judge(
    check: &Check,
    reading: &Reading,
    canary: &str,
    namespace: &str,
    target: &str,
) -> Result<(), String> {
    let who = format!("{canary}.{namespace}");
    let value = match reading {
        Reading::Value(v) => *v,
        Reading::NoValues => {
            return Err(match &check.kind {
                CheckKind::SuccessRate => format!(
                    "Halt advancement no values found for nginx metric {} probably \
                     {target}.{namespace} is not receiving traffic: running query failed: \
                     {NO_VALUES}",
                    check.metric
                ),
                CheckKind::RequestDuration => format!(
                    "Halt advancement no values found for nginx metric {} probably \
                     {target}.{namespace} is not receiving traffic",
                    check.metric
                ),
                CheckKind::Inline => {
                    format!(
                        "Halt advancement no values found for metric: {}",
                        check.metric
                    )
                }
                CheckKind::Template(_) => format!(
                    "Halt advancement no values found for custom metric: {}: {NO_VALUES}",
                    check.metric
                ),
            });
        }
        Reading::Error(e) => {
            return Err(match &check.kind {
                CheckKind::SuccessRate | CheckKind::RequestDuration => {
                    format!("Prometheus query failed: running query failed: {e}")
                }
                CheckKind::Inline => format!("Prometheus query failed for {}: {e}", check.metric),
                CheckKind::Template(_) => format!("Metric query failed for {}: {e}", check.metric),
            });
        }
    };
    match &check.kind {
        CheckKind::SuccessRate => {
            let pct = |b: f64| format!("{}%", go_v(b));
            if check.has_range {
                if let Some(min) = check.min
                    && value < min
                {
                    return Err(format!(
                        "Halt {who} advancement success rate {}% < {}",
                        go_f2(value),
                        pct(min)
                    ));
                }
                if let Some(max) = check.max
                    && value > max
                {
                    return Err(format!(
                        "Halt {who} advancement success rate {}% > {}",
                        go_f2(value),
                        pct(max)
                    ));
                }
            } else {
                let t = check.threshold.unwrap_or(0.0);
                if t > value {
                    return Err(format!(
                        "Halt {who} advancement success rate {}% < {}",
                        go_f2(value),
                        pct(t)
                    ));
                }
            }
        }
        CheckKind::RequestDuration => {
            // `time.Duration(int64(value)) * time.Millisecond`: the fraction is truncated.
            let ms = value.trunc();
            let ms_i = if ms.is_finite() {
                ms as i64
            } else if ms > 0.0 {
                i64::MAX / 1_000_000
            } else {
                i64::MIN / 1_000_000
            };
            let bound_ms = |b: f64| b.trunc() as i64;
            if check.has_range {
                if let Some(min) = check.min
                    && (ms_i as f64) < bound_ms(min) as f64
                {
                    return Err(format!(
                        "Halt {who} advancement request duration {} < {}",
                        go_duration_ms(ms_i),
                        go_duration_ms(bound_ms(min))
                    ));
                }
                if let Some(max) = check.max
                    && (ms_i as f64) > bound_ms(max) as f64
                {
                    return Err(format!(
                        "Halt {who} advancement request duration {} > {}",
                        go_duration_ms(ms_i),
                        go_duration_ms(bound_ms(max))
                    ));
                }
            } else {
                let t = bound_ms(check.threshold.unwrap_or(0.0));
                if ms_i > t {
                    return Err(format!(
                        "Halt {who} advancement request duration {} > {}",
                        go_duration_ms(ms_i),
                        go_duration_ms(t)
                    ));
                }
            }
        }
        CheckKind::Inline | CheckKind::Template(_) => {
            let name = &check.metric;
            if check.has_range {
                if let Some(min) = check.min
                    && value < min
                {
                    return Err(format!(
                        "Halt {who} advancement {name} {} < {}",
                        go_f2(value),
                        go_v(min)
                    ));
                }
                if let Some(max) = check.max
                    && value > max
                {
                    return Err(format!(
                        "Halt {who} advancement {name} {} > {}",
                        go_f2(value),
                        go_v(max)
                    ));
                }
            } else {
                let t = check.threshold.unwrap_or(0.0);
                if value > t {
                    return Err(format!(
                        "Halt {who} advancement {name} {} > {}",
                        go_f2(value),
                        go_v(t)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Go's `%.2f`.
pub fn go_f2(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v:.2}")
    }
}

/// Go's `%v` for a float64 (`strconv` `'g'`, shortest): the shortest digits, in exponent form
/// when the exponent is below -4 or at least 6 (`1e+06`, `1e-05`), plain otherwise.
pub fn go_v(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    // Rust's `{:e}` is the shortest round-tripping digits: `1.2345e3`.
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{v}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// Go's `time.Duration.String()` for a whole number of milliseconds: `812ms`, `1.2s`, `1m30s`.
pub fn go_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let neg = ms < 0;
    let ms = ms.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if ms < 1000 {
        out.push_str(&format!("{ms}ms"));
        return out;
    }
    let h = ms / 3_600_000;
    let m = (ms / 60_000) % 60;
    let s = (ms / 1000) % 60;
    let frac = ms % 1000;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s.to_string());
    if frac > 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: CheckKind, min: Option<f64>, max: Option<f64>) -> Check {
        Check {
            metric: match &kind {
                CheckKind::SuccessRate => "request-success-rate".into(),
                CheckKind::RequestDuration => "request-duration".into(),
                _ => "latency".into(),
            },
            kind,
            query: String::new(),
            min,
            max,
            threshold: None,
            has_range: true,
        }
    }

    fn judged(c: &Check, r: Reading) -> Result<(), String> {
        judge(c, &r, "podinfo", "test", "podinfo")
    }

    #[test]
    fn no_values_found_reads_as_flagger_words_it_per_metric_kind() {
        let sr = check(CheckKind::SuccessRate, Some(99.0), None);
        assert_eq!(
            judged(&sr, Reading::NoValues).unwrap_err(),
            "Halt advancement no values found for nginx metric request-success-rate probably \
             podinfo.test is not receiving traffic: running query failed: no values found"
        );
        let t = check(CheckKind::Template("latency.test".into()), None, Some(0.5));
        assert_eq!(
            judged(&t, Reading::NoValues).unwrap_err(),
            "Halt advancement no values found for custom metric: latency: no values found"
        );
    }

    #[test]
    fn ranges_are_strict_and_messages_are_flaggers() {
        let sr = check(CheckKind::SuccessRate, Some(99.0), None);
        assert!(judged(&sr, Reading::Value(99.0)).is_ok());
        assert_eq!(
            judged(&sr, Reading::Value(61.3856)).unwrap_err(),
            "Halt podinfo.test advancement success rate 61.39% < 99%"
        );
        let rd = check(CheckKind::RequestDuration, None, Some(500.0));
        assert!(
            judged(&rd, Reading::Value(500.9)).is_ok(),
            "truncated to 500 ms"
        );
        assert_eq!(
            judged(&rd, Reading::Value(1200.7)).unwrap_err(),
            "Halt podinfo.test advancement request duration 1.2s > 500ms"
        );
        let t = check(CheckKind::Template("latency.test".into()), None, Some(0.5));
        assert_eq!(
            judged(&t, Reading::Value(1.2)).unwrap_err(),
            "Halt podinfo.test advancement latency 1.20 > 0.5"
        );
        // +Inf passes a min check, as in Flagger.
        let min = check(CheckKind::Template("x.test".into()), Some(1.0), None);
        assert!(judged(&min, Reading::Value(f64::INFINITY)).is_ok());
        // The deprecated threshold: success rate fails below it, others above it.
        let mut old = check(CheckKind::SuccessRate, None, None);
        old.has_range = false;
        old.threshold = Some(95.0);
        assert!(judged(&old, Reading::Value(94.0)).is_err());
        assert_eq!(
            judged(&rd, Reading::Error("boom".into())).unwrap_err(),
            "Prometheus query failed: running query failed: boom"
        );
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_v(99.0), "99");
        assert_eq!(go_v(99.5), "99.5");
        assert_eq!(go_v(0.0001), "0.0001");
        assert_eq!(go_v(0.00001), "1e-05");
        assert_eq!(go_v(100000.0), "100000");
        assert_eq!(go_v(1e6), "1e+06");
        assert_eq!(go_v(123456789.0), "1.23456789e+08");
        assert_eq!(go_duration_ms(812), "812ms");
        assert_eq!(go_duration_ms(1200), "1.2s");
        assert_eq!(go_duration_ms(90_500), "1m30.5s");
        assert_eq!(go_duration_ms(3_600_000), "1h0m0s");
        assert_eq!(go_f2(f64::INFINITY), "+Inf");
    }
}
