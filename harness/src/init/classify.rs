//! What a metric's query measures, read from its PromQL text: the class decides which fault can
//! cross it, the unit how its threshold reads.
//!
//! This is a heuristic over names, so it answers only when the text leaves little doubt; every
//! other query is [`Class::Unknown`], and init writes no scenario that relies on it rather than
//! guess. The threshold itself is never read from the text: it is found by judging values with
//! the controller's own rules ([`super::threshold`]).

use std::sync::LazyLock;

use regex::Regex;

/// What a query measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A share of 5xx answers, or of non-5xx ones (`success`), as a ratio or in percent.
    ErrorShare { success: bool, percent: bool },
    /// Response time, in seconds or milliseconds.
    Latency { millis: bool },
    /// Bytes of memory.
    Memory,
    /// Container restarts.
    Restarts,
    /// None of the above with confidence; the reason says what was missing.
    Unknown(&'static str),
}

/// A matcher on an HTTP status label against a 5xx pattern: `status!~"5.."`, `code=~"5xx"`.
static STATUS_5XX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(status|code|status_code|response_code|http_status)\s*(=~|!~|!=|=)\s*["'`]5"#,
    )
    .expect("a valid regex")
});
static TIMES_100: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\*\s*100(\.0*)?\b|\b100(\.0*)?\s*\*").expect("a valid regex"));
static TIMES_1000: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\*\s*1000(\.0*)?\b|\b1000(\.0*)?\s*\*").expect("a valid regex"));
static LATENCY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)duration|latency|response_time|request_time|histogram_quantile")
        .expect("a valid regex")
});

/// The class of a PromQL query.
pub fn classify(query: &str) -> Class {
    let q = query.to_ascii_lowercase();
    if q.contains("restart") {
        return Class::Restarts;
    }
    if q.contains("memory") {
        if q.contains('/') {
            // `/ 1024 / 1024` or a ratio to the limit: the unit is no longer bytes.
            return Class::Unknown("a memory query that divides, so its unit may not be bytes");
        }
        return Class::Memory;
    }
    if LATENCY.is_match(&q) {
        if TIMES_1000.is_match(&q) || q.contains("_milliseconds") {
            return Class::Latency { millis: true };
        }
        if q.contains("_seconds") {
            return Class::Latency { millis: false };
        }
        return Class::Unknown("a latency query whose unit (seconds or milliseconds) is unclear");
    }
    let mut negated = false;
    let mut positive = false;
    for m in STATUS_5XX.captures_iter(&q) {
        if m[2].starts_with('!') {
            negated = true;
        } else {
            positive = true;
        }
    }
    if negated != positive {
        return Class::ErrorShare {
            success: negated,
            percent: TIMES_100.is_match(&q),
        };
    }
    if negated && positive {
        return Class::Unknown("a query that selects 5xx answers both in and out");
    }
    Class::Unknown("not an error share (no 5xx status matcher), latency, memory or restarts query")
}

/// Whether a release without errors gives the query no data at all: a share of 5xx answers
/// whose numerator selects only 5xx has no series until the first one, and `a / b` of an empty
/// `a` is empty, unless the query supplies a default (`or vector(0)`).
pub fn empty_when_healthy(class: Class, query: &str) -> bool {
    let q: String = query.split_whitespace().collect();
    matches!(class, Class::ErrorShare { success: false, .. })
        && !q.contains("orvector(")
        && !q.contains(")or")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixtures_queries_are_classified() {
        let success = r#"sum(rate(nginx_ingress_controller_requests{canary!="",status!~"5.."}[30s])) / sum(rate(nginx_ingress_controller_requests{canary!=""}[30s]))"#;
        assert_eq!(
            classify(success),
            Class::ErrorShare {
                success: true,
                percent: false
            }
        );
        let errors = r#"sum(rate(x{status=~"5.."}[1m])) / sum(rate(x[1m])) * 100"#;
        assert_eq!(
            classify(errors),
            Class::ErrorShare {
                success: false,
                percent: true
            }
        );
        let p95 = r#"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{pod=~"x-.*"}[30s])))"#;
        assert_eq!(classify(p95), Class::Latency { millis: false });
        let mean_ms = "sum(rate(nginx_ingress_controller_response_duration_seconds_sum[1m])) / sum(rate(nginx_ingress_controller_response_duration_seconds_count[1m])) * 1000";
        assert_eq!(classify(mean_ms), Class::Latency { millis: true });
        assert_eq!(
            classify("max(container_memory_working_set_bytes{pod=~\"x\"})"),
            Class::Memory
        );
        assert_eq!(
            classify("max(kube_pod_container_status_restarts_total{pod=~\"x\"})"),
            Class::Restarts
        );
    }

    #[test]
    fn an_error_ratio_without_a_default_is_empty_for_a_healthy_release() {
        let q = r#"sum(rate(x{status=~"5.."}[1m])) / sum(rate(x[1m]))"#;
        assert!(empty_when_healthy(classify(q), q));
        let q = r#"(sum(rate(x{status=~"5.."}[1m])) or vector(0)) / sum(rate(x[1m]))"#;
        assert!(!empty_when_healthy(classify(q), q));
        let q = r#"sum(rate(x{status!~"5.."}[1m])) / sum(rate(x[1m]))"#;
        assert!(!empty_when_healthy(classify(q), q));
    }

    #[test]
    fn what_is_unclear_is_unknown() {
        assert!(matches!(
            classify("sum(rate(container_cpu_usage_seconds_total[1m]))"),
            Class::Unknown(_)
        ));
        assert!(matches!(
            classify("max(container_memory_working_set_bytes) / 1024 / 1024"),
            Class::Unknown(_)
        ));
        assert!(matches!(
            classify("avg(request_latency)"),
            Class::Unknown(_)
        ));
        // 1000 is not 100.
        assert_eq!(
            classify(r#"sum(rate(x{code=~"5.*"}[1m])) * 1000"#),
            Class::ErrorShare {
                success: false,
                percent: false
            }
        );
    }
}
