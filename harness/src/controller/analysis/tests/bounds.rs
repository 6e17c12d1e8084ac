//! The lower bounds budgets are checked against.

use super::*;

#[test]
fn decision_bounds_of_the_canonical_template() {
    let policy = RunPolicy {
        name: "ar".into(),
        metrics: vec![MetricPolicy {
            interval: Some(secs(60)),
            count: Some(5),
            failure_limit: 1,
            ..success_rate("success-rate")
        }],
    };
    let b = decision_bounds(&policy);
    assert_eq!(b.failed, Some(secs(60)));
    assert_eq!(b.errored, Some(secs(40)));
    assert_eq!(b.inconclusive, None);
    assert_eq!(b.successful, Some(secs(240)));
    assert_eq!(b.earliest_abort(), Some(secs(40)));
}

#[test]
fn decision_bounds_add_the_initial_delay_and_wait_for_the_slowest_metric() {
    let policy = RunPolicy {
        name: "ar".into(),
        metrics: vec![
            MetricPolicy {
                initial_delay: secs(30),
                interval: Some(secs(10)),
                count: Some(3),
                failure_limit: 5,
                inconclusive_limit: 1,
                ..two_sided("a")
            },
            MetricPolicy {
                interval: Some(secs(20)),
                count: Some(4),
                consecutive_error_limit: 0,
                ..success_rate("b")
            },
        ],
    };
    let b = decision_bounds(&policy);
    // a: 6 failures do not fit in 3 measurements; b fails at its first.
    assert_eq!(b.failed, Some(secs(0)));
    assert_eq!(b.errored, Some(secs(0)));
    assert_eq!(b.inconclusive, Some(secs(40)));
    assert_eq!(b.successful, Some(secs(60)));
}

#[test]
fn decision_bounds_of_unbounded_and_consecutive_success_metrics() {
    let unbounded = RunPolicy {
        name: "ar".into(),
        metrics: vec![MetricPolicy {
            interval: Some(secs(60)),
            count: None,
            ..success_rate("m")
        }],
    };
    assert_eq!(decision_bounds(&unbounded).successful, None);
    assert_eq!(decision_bounds(&unbounded).failed, Some(secs(0)));

    let csl = RunPolicy {
        name: "ar".into(),
        metrics: vec![MetricPolicy {
            interval: Some(secs(10)),
            count: Some(6),
            failure_limit: -1,
            consecutive_success_limit: 3,
            ..success_rate("m")
        }],
    };
    let b = decision_bounds(&csl);
    assert_eq!(b.successful, Some(secs(20)));
    assert_eq!(b.failed, Some(secs(50)));
    assert_eq!(b.inconclusive, None);

    let no_conditions = RunPolicy {
        name: "ar".into(),
        metrics: vec![metric("m")],
    };
    assert_eq!(decision_bounds(&no_conditions).failed, None);
    assert_eq!(decision_bounds(&no_conditions).successful, Some(secs(0)));
    let empty = RunPolicy {
        name: "ar".into(),
        metrics: vec![],
    };
    assert_eq!(decision_bounds(&empty), DecisionBounds::default());
}
