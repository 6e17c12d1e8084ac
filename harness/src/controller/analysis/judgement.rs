//! Judging: one provider answer against a metric's conditions (`EvaluateResult`), and a
//! metric's counters against its limits (`assessMetricStatus`).

use super::measurement::MetricResult;
use super::phase::AnalysisPhase;
use super::policy::MetricPolicy;
use crate::controller::expr::MetricValue;

/// The judgement of one provider answer (`EvaluateResult`, evaluate.go).
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub phase: AnalysisPhase,
    pub value: Option<String>,
    pub message: String,
}

/// Judges one provider answer against the metric's conditions.
///
/// A missing condition is the negation of the other one; with neither, every answer that
/// evaluates is Successful (the code, not the docs, which say Inconclusive). The success
/// condition is evaluated first and its error wins; an evaluation error is an Error measurement
/// without a value, as is a provider error.
pub fn judge(policy: &MetricPolicy, outcome: Result<MetricValue, String>) -> Judgement {
    let value = match outcome {
        Ok(v) => v,
        Err(message) => return error_judgement(message),
    };
    let succ = match &policy.success {
        Some(c) => match c.evaluate(&value) {
            Ok(b) => Some(b),
            Err(e) => return error_judgement(e.to_string()),
        },
        None => None,
    };
    let fail = match &policy.failure {
        Some(c) => match c.evaluate(&value) {
            Ok(b) => Some(b),
            Err(e) => return error_judgement(e.to_string()),
        },
        None => None,
    };
    let phase = match (succ, fail) {
        (None, None) => AnalysisPhase::Successful,
        (Some(true), None) | (None, Some(false)) => AnalysisPhase::Successful,
        (Some(false), None) | (None, Some(true)) => AnalysisPhase::Failed,
        (Some(_), Some(true)) => AnalysisPhase::Failed,
        (Some(true), Some(false)) => AnalysisPhase::Successful,
        (Some(false), Some(false)) => AnalysisPhase::Inconclusive,
    };
    Judgement {
        phase,
        value: Some(format_value(&value)),
        message: String::new(),
    }
}

fn error_judgement(message: String) -> Judgement {
    Judgement {
        phase: AnalysisPhase::Error,
        value: None,
        message,
    }
}

/// Prints a result as Argo stores it in `measurement.value`: Go's shortest `'f'` formatting per
/// sample, vectors in brackets without spaces.
pub fn format_value(value: &MetricValue) -> String {
    match value {
        MetricValue::Scalar(v) => format_float(*v),
        MetricValue::Vector(vs) => {
            let parts: Vec<String> = vs.iter().map(|v| format_float(*v)).collect();
            format!("[{}]", parts.join(","))
        }
    }
}

fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's Display, like Go's FormatFloat(v, 'f', -1, 64), prints the shortest digits
        // that round-trip and never switches to exponent notation.
        format!("{v}")
    }
}

/// The limit a metric has broken, checked failed → inconclusive → consecutive errors with a later
/// match overriding an earlier one (`assessMetricFailureInconclusiveOrError`), and the reason as
/// Argo words it.
pub(super) fn limit_breach(
    policy: &MetricPolicy,
    result: &MetricResult,
) -> Option<(AnalysisPhase, String)> {
    let mut breach = None;
    if policy.failure_limit_active() && i64::from(result.failed) > i64::from(policy.failure_limit) {
        breach = Some((
            AnalysisPhase::Failed,
            format!(
                "failed ({}) > failureLimit ({})",
                result.failed, policy.failure_limit
            ),
        ));
    }
    if result.inconclusive > policy.inconclusive_limit {
        breach = Some((
            AnalysisPhase::Inconclusive,
            format!(
                "inconclusive ({}) > inconclusiveLimit ({})",
                result.inconclusive, policy.inconclusive_limit
            ),
        ));
    }
    if result.consecutive_error > policy.consecutive_error_limit {
        breach = Some((
            AnalysisPhase::Error,
            format!(
                "consecutiveErrors ({}) > consecutiveErrorLimit ({})",
                result.consecutive_error, policy.consecutive_error_limit
            ),
        ));
    }
    breach
}

/// `assessMetricStatus` for a metric that has at least one measurement.
pub(super) fn assess_metric(
    policy: &MetricPolicy,
    result: &MetricResult,
    terminating: bool,
) -> AnalysisPhase {
    if result.phase.is_completed() {
        return result.phase;
    }
    if result.measurements.is_empty() {
        return if terminating {
            AnalysisPhase::Successful
        } else {
            AnalysisPhase::Pending
        };
    }
    if let Some((phase, _)) = limit_breach(policy, result) {
        return phase;
    }
    let csl = policy.consecutive_success_limit;
    if csl > 0 && result.consecutive_success >= csl {
        return AnalysisPhase::Successful;
    }
    if policy.count_reached(result.count) {
        // With a consecutive-success limit, running out of measurements without reaching it is
        // not a success: Inconclusive while the failure limit still guards, Failed otherwise.
        return match (policy.failure_limit_active(), csl > 0) {
            (true, true) => AnalysisPhase::Inconclusive,
            (false, true) => AnalysisPhase::Failed,
            _ => AnalysisPhase::Successful,
        };
    }
    if terminating {
        AnalysisPhase::Successful
    } else {
        AnalysisPhase::Running
    }
}
