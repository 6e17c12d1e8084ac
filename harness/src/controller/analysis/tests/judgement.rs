//! `EvaluateResult` and `assessMetricStatus`: one answer, one metric.

use super::*;

#[tokio::test(start_paused = true)]
async fn without_conditions_every_answer_is_successful() {
    let mut run = start(vec![metric("m")]);
    let script = Script::new().answer("m", vec![vec1(0.5)]);
    let events = run.run_until_complete(&script).await;
    assert_eq!(run.phase(), AnalysisPhase::Successful);
    assert_eq!(run.message(), "");
    assert_eq!(
        reasons(&events),
        ["MetricSuccessful", "AnalysisRunSuccessful"]
    );
    let m = &run.results()[0];
    assert_eq!(m.measurements[0].value.as_deref(), Some("[0.5]"));
    assert_eq!((m.count, m.successful), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn with_only_a_success_condition_a_false_success_is_a_failure() {
    let mut run = start(vec![success_rate("m")]);
    let script = Script::new().answer("m", vec![vec1(0.5)]);
    let events = run.run_until_complete(&script).await;
    assert_eq!(run.phase(), AnalysisPhase::Failed);
    assert_eq!(
        run.message(),
        r#"Metric "m" assessed Failed due to failed (1) > failureLimit (0)"#
    );
    assert_eq!(reasons(&events), ["MetricFailed", "AnalysisRunFailed"]);
    assert_eq!(events[0].message(), "Metric 'm' Completed. Result: Failed");
    assert_eq!(events[1].message(), "Analysis Completed. Result: Failed");
    assert!(events.iter().all(AnalysisEvent::is_warning));
}

#[tokio::test(start_paused = true)]
async fn with_only_a_failure_condition_a_false_failure_is_a_success() {
    let failing = |name: &str| MetricPolicy {
        failure: cond("result[0] >= 10"),
        ..metric(name)
    };
    let mut run = start(vec![failing("low"), failing("high")]);
    let script = Script::new()
        .answer("low", vec![vec1(1.0)])
        .answer("high", vec![vec1(20.0)]);
    run.run_until_complete(&script).await;
    assert_eq!(run.results()[0].phase, AnalysisPhase::Successful);
    assert_eq!(run.results()[1].phase, AnalysisPhase::Failed);
    assert_eq!(run.phase(), AnalysisPhase::Failed);
}

#[tokio::test(start_paused = true)]
async fn nan_with_only_a_success_condition_fails() {
    let mut run = start(vec![success_rate("m")]);
    let script = Script::new().answer("m", vec![vec1(f64::NAN)]);
    run.run_until_complete(&script).await;
    assert_eq!(run.phase(), AnalysisPhase::Failed);
    let last = run.results()[0].last_measurement().expect("measured");
    assert_eq!(last.phase, AnalysisPhase::Failed);
    assert_eq!(last.value.as_deref(), Some("[NaN]"));
}

#[tokio::test(start_paused = true)]
async fn nan_with_both_conditions_is_inconclusive() {
    let mut run = start(vec![two_sided("m")]);
    let script = Script::new().answer("m", vec![vec1(f64::NAN)]);
    let events = run.run_until_complete(&script).await;
    assert_eq!(run.phase(), AnalysisPhase::Inconclusive);
    assert_eq!(
        run.message(),
        r#"Metric "m" assessed Inconclusive due to inconclusive (1) > inconclusiveLimit (0)"#
    );
    assert_eq!(
        reasons(&events),
        ["MetricInconclusive", "AnalysisRunInconclusive"]
    );
    assert!(!events[1].is_warning());
}

#[test]
fn a_later_limit_overrides_an_earlier_one() {
    let policy = metric("m");
    let mut result = MetricResult::new(&policy);
    result.failed = 1;
    result.inconclusive = 1;
    assert_eq!(
        limit_breach(&policy, &result),
        Some((
            AnalysisPhase::Inconclusive,
            "inconclusive (1) > inconclusiveLimit (0)".to_string()
        ))
    );
    result.consecutive_error = 5;
    assert_eq!(
        limit_breach(&policy, &result).map(|b| b.0),
        Some(AnalysisPhase::Error)
    );
    result.inconclusive = 0;
    result.consecutive_error = 0;
    assert_eq!(
        limit_breach(&policy, &result).map(|b| b.0),
        Some(AnalysisPhase::Failed)
    );
}

#[test]
fn phases_order_from_best_to_worst() {
    use AnalysisPhase::*;
    let order = [Successful, Running, Pending, Inconclusive, Error, Failed];
    for w in order.windows(2) {
        assert!(w[0].is_worse(w[1]), "{} < {}", w[0], w[1]);
        assert!(!w[1].is_worse(w[0]));
    }
}

#[test]
fn values_are_printed_as_argo_stores_them() {
    let v = |xs: &[f64]| format_value(&MetricValue::Vector(xs.to_vec()));
    assert_eq!(v(&[0.99]), "[0.99]");
    assert_eq!(v(&[f64::NAN]), "[NaN]");
    assert_eq!(v(&[]), "[]");
    assert_eq!(
        v(&[1.0, 2.5, f64::INFINITY, f64::NEG_INFINITY]),
        "[1,2.5,+Inf,-Inf]"
    );
    assert_eq!(format_value(&MetricValue::Scalar(0.99)), "0.99");
    assert_eq!(format_value(&MetricValue::Scalar(1e-7)), "0.0000001");
    assert_eq!(
        format_value(&MetricValue::Scalar(0.1 + 0.2)),
        "0.30000000000000004"
    );
}
