//! `reconcileAnalysisRun`: measuring on time, recording, terminating, the run's phase.

use super::*;

#[tokio::test(start_paused = true)]
async fn an_empty_vector_errors_and_the_metric_errors_at_the_fifth_error_ten_seconds_apart() {
    let mut run = start(vec![MetricPolicy {
        interval: Some(secs(60)),
        count: Some(3),
        ..success_rate("m")
    }]);
    let script = Script::new().answer("m", vec![no_series()]);
    let events = run.run_until_complete(&script).await;
    assert_eq!(
        script.calls("m"),
        [secs(0), secs(10), secs(20), secs(30), secs(40)]
    );
    assert_eq!(run.phase(), AnalysisPhase::Error);
    assert_eq!(took(&run), secs(40));
    assert_eq!(reasons(&events), ["MetricError", "AnalysisRunError"]);
    let m = &run.results()[0];
    assert_eq!((m.count, m.error, m.consecutive_error), (0, 5, 5));
    let last = m.last_measurement().expect("measured");
    assert_eq!(last.phase, AnalysisPhase::Error);
    assert_eq!(last.value, None);
    assert!(!last.message.is_empty());
    assert_eq!(m.message, last.message);
    assert_eq!(
        run.message(),
        format!(
            r#"Metric "m" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4): "Error Message: {}""#,
            last.message
        )
    );
}

#[tokio::test(start_paused = true)]
async fn errors_are_retried_after_ten_seconds_and_do_not_use_up_the_count() {
    let mut run = start(vec![MetricPolicy {
        interval: Some(secs(60)),
        count: Some(2),
        ..success_rate("m")
    }]);
    let script = Script::new().answer(
        "m",
        vec![no_series(), Err("connection refused".into()), vec1(0.99)],
    );
    run.run_until_complete(&script).await;
    assert_eq!(script.calls("m"), [secs(0), secs(10), secs(20), secs(80)]);
    assert_eq!(run.phase(), AnalysisPhase::Successful);
    let m = &run.results()[0];
    assert_eq!((m.count, m.successful, m.error), (2, 2, 2));
    assert_eq!(m.measurements[1].message, "connection refused");
}

#[tokio::test(start_paused = true)]
async fn a_single_shot_error_is_retried_too() {
    let mut run = start(vec![success_rate("m")]);
    let script = Script::new().answer("m", vec![no_series(), vec1(0.99)]);
    run.run_until_complete(&script).await;
    assert_eq!(script.calls("m"), [secs(0), secs(10)]);
    assert_eq!(run.phase(), AnalysisPhase::Successful);
}

#[tokio::test(start_paused = true)]
async fn the_failure_limit_fails_the_run_at_the_second_failure_without_waiting_for_count() {
    let mut run = start(vec![MetricPolicy {
        interval: Some(secs(60)),
        count: Some(5),
        failure_limit: 1,
        ..success_rate("success-rate")
    }]);
    let script = Script::new().answer("success-rate", vec![vec1(0.5)]);
    run.run_until_complete(&script).await;
    assert_eq!(script.calls("success-rate"), [secs(0), secs(60)]);
    assert_eq!(run.phase(), AnalysisPhase::Failed);
    assert_eq!(took(&run), secs(60));
    assert_eq!(
        run.message(),
        r#"Metric "success-rate" assessed Failed due to failed (2) > failureLimit (1)"#
    );
    assert_eq!(run.next_due(), None);
}

#[tokio::test(start_paused = true)]
async fn reaching_the_count_within_the_failure_limit_is_successful() {
    let mut run = start(vec![MetricPolicy {
        interval: Some(secs(60)),
        count: Some(5),
        failure_limit: 1,
        ..success_rate("m")
    }]);
    let script = Script::new().answer("m", vec![vec1(0.5), vec1(0.99)]);
    run.run_until_complete(&script).await;
    assert_eq!(run.phase(), AnalysisPhase::Successful);
    assert_eq!(took(&run), secs(240));
    let m = &run.results()[0];
    assert_eq!((m.count, m.successful, m.failed), (5, 4, 1));
    assert_eq!(run.run_summary().successful, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failure_limit_of_minus_one_never_fails_by_failures() {
    let mut run = start(vec![MetricPolicy {
        interval: Some(secs(10)),
        count: Some(6),
        failure_limit: -1,
        consecutive_success_limit: 2,
        ..success_rate("m")
    }]);
    let script = Script::new().answer(
        "m",
        vec![vec1(0.1), vec1(0.1), vec1(0.1), vec1(0.99), vec1(0.99)],
    );
    run.run_until_complete(&script).await;
    assert_eq!(run.phase(), AnalysisPhase::Successful);
    assert_eq!(took(&run), secs(40));
    assert_eq!(run.results()[0].failed, 3);
}

#[tokio::test(start_paused = true)]
async fn missing_the_consecutive_success_limit_at_count_fails_without_a_failure_limit() {
    let mut run = start(vec![MetricPolicy {
        interval: Some(secs(10)),
        count: Some(4),
        failure_limit: -1,
        consecutive_success_limit: 3,
        ..success_rate("m")
    }]);
    let script = Script::new().answer("m", vec![vec1(0.1), vec1(0.1), vec1(0.99)]);
    run.run_until_complete(&script).await;
    assert_eq!(run.phase(), AnalysisPhase::Failed);
    assert_eq!(took(&run), secs(30));
    // No limit was broken, so Argo gives no reason (and counts it as successful).
    assert_eq!(run.message(), "");
    assert_eq!(run.run_summary().successful, 1);
}

#[tokio::test(start_paused = true)]
async fn missing_the_consecutive_success_limit_at_count_is_inconclusive_with_a_failure_limit() {
    let mut run = start(vec![MetricPolicy {
        interval: Some(secs(10)),
        count: Some(4),
        failure_limit: 2,
        consecutive_success_limit: 3,
        ..success_rate("m")
    }]);
    let script = Script::new().answer("m", vec![vec1(0.99), vec1(0.1), vec1(0.99), vec1(0.99)]);
    run.run_until_complete(&script).await;
    assert_eq!(run.phase(), AnalysisPhase::Inconclusive);
    assert_eq!(took(&run), secs(30));
    assert_eq!(run.results()[0].consecutive_success, 2);
}

#[tokio::test(start_paused = true)]
async fn the_consecutive_success_limit_succeeds_before_the_count() {
    let mut run = start(vec![MetricPolicy {
        interval: Some(secs(10)),
        count: Some(10),
        consecutive_success_limit: 2,
        ..success_rate("m")
    }]);
    let script = Script::new().answer("m", vec![vec1(0.99)]);
    run.run_until_complete(&script).await;
    assert_eq!(run.phase(), AnalysisPhase::Successful);
    assert_eq!(took(&run), secs(10));
}

#[tokio::test(start_paused = true)]
async fn the_inconclusive_limit_allows_that_many_inconclusive_measurements() {
    let mut run = start(vec![MetricPolicy {
        interval: Some(secs(10)),
        count: Some(5),
        inconclusive_limit: 1,
        ..two_sided("m")
    }]);
    let script = Script::new().answer("m", vec![vec1(f64::NAN)]);
    run.run_until_complete(&script).await;
    assert_eq!(run.phase(), AnalysisPhase::Inconclusive);
    assert_eq!(took(&run), secs(10));
    assert_eq!(
        run.message(),
        r#"Metric "m" assessed Inconclusive due to inconclusive (2) > inconclusiveLimit (1)"#
    );
}

#[tokio::test(start_paused = true)]
async fn the_run_takes_the_worst_phase_of_metrics_completing_together() {
    let mut run = start(vec![two_sided("a"), success_rate("b")]);
    let script = Script::new()
        .answer("a", vec![vec1(f64::NAN)])
        .answer("b", vec![vec1(0.5)]);
    let events = run.run_until_complete(&script).await;
    assert_eq!(run.phase(), AnalysisPhase::Failed);
    assert_eq!(
        run.message(),
        r#"Metric "b" assessed Failed due to failed (1) > failureLimit (0)"#
    );
    assert_eq!(
        reasons(&events),
        ["MetricInconclusive", "MetricFailed", "AnalysisRunFailed"]
    );
}

#[tokio::test(start_paused = true)]
async fn dry_run_metrics_never_decide_the_run() {
    let mut run = start(vec![
        MetricPolicy {
            dry_run: true,
            ..success_rate("dry")
        },
        MetricPolicy {
            interval: Some(secs(10)),
            count: Some(2),
            ..success_rate("real")
        },
    ]);
    let script = Script::new()
        .answer("dry", vec![vec1(0.1)])
        .answer("real", vec![vec1(0.99)]);
    let events = run.run_until_complete(&script).await;
    assert_eq!(run.phase(), AnalysisPhase::Successful);
    assert_eq!(took(&run), secs(10));
    assert_eq!(
        reasons(&events),
        ["MetricFailed", "MetricSuccessful", "AnalysisRunSuccessful"]
    );
    let dry = &run.results()[0];
    assert_eq!(dry.phase, AnalysisPhase::Failed);
    assert_eq!(
        dry.message,
        "Metric assessed Failed due to failed (1) > failureLimit (0)"
    );
    assert_eq!(
        run.dry_run_summary(),
        RunSummary {
            count: 1,
            failed: 1,
            ..RunSummary::default()
        }
    );
    assert_eq!(
        run.run_summary(),
        RunSummary {
            count: 1,
            successful: 1,
            ..RunSummary::default()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn an_unbounded_dry_run_metric_keeps_the_run_running() {
    let mut run = start(vec![
        MetricPolicy {
            dry_run: true,
            interval: Some(secs(10)),
            count: None,
            ..success_rate("dry")
        },
        success_rate("real"),
    ]);
    let script = Script::new()
        .answer("dry", vec![vec1(0.99)])
        .answer("real", vec![vec1(0.99)]);
    run.tick(&script).await;
    assert_eq!(run.results()[1].phase, AnalysisPhase::Successful);
    assert_eq!(run.phase(), AnalysisPhase::Running);
    tokio::time::advance(secs(10)).await;
    run.tick(&script).await;
    assert_eq!(run.phase(), AnalysisPhase::Running);
    run.terminate(Instant::now());
    assert_eq!(run.phase(), AnalysisPhase::Successful);
}

#[tokio::test(start_paused = true)]
async fn the_first_failing_metric_terminates_the_run_and_its_siblings() {
    let mut run = start(vec![
        MetricPolicy {
            interval: Some(secs(10)),
            count: None,
            ..success_rate("background")
        },
        MetricPolicy {
            initial_delay: secs(20),
            ..success_rate("late")
        },
    ]);
    let script = Script::new()
        .answer("background", vec![vec1(0.99)])
        .answer("late", vec![vec1(0.5)]);
    let events = run.run_until_complete(&script).await;
    assert_eq!(script.calls("background"), [secs(0), secs(10), secs(20)]);
    assert_eq!(script.calls("late"), [secs(20)]);
    assert_eq!(run.phase(), AnalysisPhase::Failed);
    assert_eq!(took(&run), secs(20));
    assert_eq!(
        reasons(&events),
        ["MetricFailed", "MetricSuccessful", "AnalysisRunFailed"]
    );
    assert_eq!(run.results()[0].phase, AnalysisPhase::Successful);
    assert!(run.is_terminating());
    assert_eq!(run.due(Instant::now() + secs(600)), Vec::<usize>::new());
    assert_eq!(run.next_due(), None);
}

#[tokio::test(start_paused = true)]
async fn termination_ends_the_run_successful_with_run_terminated() {
    let mut run = start(vec![MetricPolicy {
        interval: Some(secs(60)),
        count: None,
        ..success_rate("m")
    }]);
    let script = Script::new().answer("m", vec![vec1(0.99)]);
    run.tick(&script).await;
    tokio::time::advance(secs(30)).await;
    let events = run.terminate(Instant::now());
    assert_eq!(run.phase(), AnalysisPhase::Successful);
    assert_eq!(run.message(), "Run Terminated");
    assert_eq!(took(&run), secs(30));
    assert_eq!(
        reasons(&events),
        ["MetricSuccessful", "AnalysisRunSuccessful"]
    );
    assert!(run.terminate_requested());
}

#[tokio::test(start_paused = true)]
async fn termination_before_any_measurement_is_successful() {
    let mut run = start(vec![MetricPolicy {
        initial_delay: secs(60),
        ..success_rate("m")
    }]);
    let events = run.terminate(Instant::now());
    assert_eq!(run.phase(), AnalysisPhase::Successful);
    assert_eq!(reasons(&events), ["AnalysisRunSuccessful"]);
    assert_eq!(run.next_due(), None);
}

#[tokio::test(start_paused = true)]
async fn termination_keeps_a_failure_and_ignores_a_failed_dry_run() {
    let mut failed = start(vec![success_rate("m")]);
    let script = Script::new()
        .answer("m", vec![vec1(0.1)])
        .answer("dry", vec![vec1(0.1)]);
    failed.tick(&script).await;
    assert_eq!(failed.phase(), AnalysisPhase::Failed);
    assert!(failed.terminate(Instant::now()).is_empty());
    assert_eq!(failed.phase(), AnalysisPhase::Failed);
    assert!(!failed.terminate_requested());

    let mut dry = start(vec![
        MetricPolicy {
            dry_run: true,
            ..success_rate("dry")
        },
        MetricPolicy {
            interval: Some(secs(60)),
            count: None,
            ..metric("m")
        },
    ]);
    dry.tick(&script).await;
    assert_eq!(dry.phase(), AnalysisPhase::Running);
    dry.terminate(Instant::now());
    assert_eq!(dry.phase(), AnalysisPhase::Successful);
    assert_eq!(dry.message(), "Run Terminated");
}

#[tokio::test(start_paused = true)]
async fn an_unbounded_metric_stays_running_and_keeps_the_last_ten_measurements() {
    let mut run = start(vec![MetricPolicy {
        interval: Some(secs(60)),
        count: None,
        ..success_rate("m")
    }]);
    let script = Script::new().answer("m", vec![vec1(0.99)]);
    for _ in 0..12 {
        run.tick(&script).await;
        let next = run
            .next_due()
            .expect("an unbounded metric is always due again");
        tokio::time::sleep_until(next).await;
    }
    assert_eq!(run.phase(), AnalysisPhase::Running);
    let m = &run.results()[0];
    assert_eq!(m.phase, AnalysisPhase::Running);
    assert_eq!(m.count, 12);
    assert_eq!(m.measurements.len(), MEASUREMENT_HISTORY_LIMIT);
    assert_eq!(m.measurements[0].started_at - run.started_at(), secs(120));
    assert_eq!(script.calls("m").len(), 12);
}

#[tokio::test(start_paused = true)]
async fn garbage_collect_measurements_keeps_the_measurement_retention_limit() {
    let mut run = start(vec![
        MetricPolicy {
            interval: Some(secs(10)),
            count: Some(5),
            failure_limit: 3,
            measurement_limit: 2,
            ..success_rate("kept-two")
        },
        MetricPolicy {
            interval: Some(secs(10)),
            count: Some(5),
            ..success_rate("default")
        },
    ]);
    let script = Script::new()
        .answer(
            "kept-two",
            vec![vec1(0.5), vec1(0.5), vec1(0.5), vec1(0.99)],
        )
        .answer("default", vec![vec1(0.99)]);
    run.run_until_complete(&script).await;
    let kept = &run.results()[0];
    assert_eq!(kept.measurements.len(), 2);
    assert_eq!(kept.measurements[0].started_at - run.started_at(), secs(30));
    // The counters still hold all five, so the limits judge the whole run.
    assert_eq!((kept.count, kept.failed), (5, 3));
    assert_eq!(kept.phase, AnalysisPhase::Successful);
    assert_eq!(run.results()[1].measurements.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn the_initial_delay_is_respected() {
    let mut run = start(vec![MetricPolicy {
        initial_delay: secs(30),
        ..success_rate("m")
    }]);
    let t0 = run.started_at();
    assert_eq!(run.due(t0), Vec::<usize>::new());
    assert_eq!(run.next_due(), Some(t0 + secs(30)));
    assert_eq!(run.due(t0 + secs(29)), Vec::<usize>::new());
    assert_eq!(run.due(t0 + secs(30)), [0]);
    let script = Script::new().answer("m", vec![vec1(0.99)]);
    run.run_until_complete(&script).await;
    assert_eq!(script.calls("m"), [secs(30)]);
    assert_eq!(run.results()[0].phase, AnalysisPhase::Successful);
}

#[tokio::test(start_paused = true)]
async fn a_single_shot_metric_measures_once() {
    let mut run = start(vec![success_rate("m")]);
    let script = Script::new().answer("m", vec![vec1(0.99)]);
    run.run_until_complete(&script).await;
    assert_eq!(script.calls("m"), [secs(0)]);
    assert_eq!(run.next_due(), None);
    tokio::time::advance(secs(3600)).await;
    assert!(run.tick(&script).await.is_empty());
    assert_eq!(script.calls("m").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_interval_counts_from_the_end_of_the_previous_measurement() {
    let mut run = start(vec![MetricPolicy {
        interval: Some(secs(60)),
        count: Some(3),
        ..success_rate("m")
    }]);
    let mut script = Script::new().answer("m", vec![vec1(0.99)]);
    script.latency = secs(2);
    run.run_until_complete(&script).await;
    assert_eq!(script.calls("m"), [secs(0), secs(62), secs(124)]);
    assert_eq!(took(&run), secs(126));
    let first = &run.results()[0].measurements[0];
    assert_eq!(first.finished_at - first.started_at, secs(2));
}

#[tokio::test(start_paused = true)]
async fn measurements_of_completed_metrics_and_runs_are_ignored() {
    let mut run = start(vec![success_rate("m")]);
    let now = Instant::now();
    run.record(0, vec1(0.99), now, now);
    assert_eq!(run.phase(), AnalysisPhase::Successful);
    assert!(run.record(0, vec1(0.1), now, now).is_empty());
    assert!(run.record(7, vec1(0.1), now, now).is_empty());
    assert_eq!(run.results()[0].count, 1);
    assert_eq!(run.phase(), AnalysisPhase::Successful);
}
