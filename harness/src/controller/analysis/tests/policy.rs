//! `ValidateMetrics`, `EffectiveCount` and the args substitution.

use super::*;

#[tokio::test(start_paused = true)]
async fn an_invalid_policy_errors_at_once() {
    let run = start(vec![]);
    assert_eq!(run.phase(), AnalysisPhase::Error);
    assert_eq!(run.message(), "Analysis spec invalid: no metrics specified");
    assert_eq!(run.next_due(), None);
    let run = start(vec![metric("a"), metric("a")]);
    assert_eq!(
        run.message(),
        "Analysis spec invalid: metrics[1]: duplicate name 'a'"
    );
    let run = start(vec![MetricPolicy {
        count: Some(3),
        ..metric("a")
    }]);
    assert_eq!(
        run.message(),
        "Analysis spec invalid: metrics[0]: interval must be specified when count > 1"
    );
    let run = AnalysisRun::errored(
        RunPolicy {
            name: "ar".into(),
            metrics: vec![metric("a")],
        },
        "Unable to resolve metric arguments: failed to resolve {{args.x}}",
        Instant::now(),
    );
    assert_eq!(run.phase(), AnalysisPhase::Error);
    assert_eq!(run.due(Instant::now()), Vec::<usize>::new());
}

#[test]
fn effective_count_follows_argo() {
    assert_eq!(effective_count(None, None), Some(1));
    assert_eq!(effective_count(Some(0), None), Some(1));
    assert_eq!(effective_count(None, Some(secs(60))), None);
    assert_eq!(effective_count(Some(0), Some(secs(60))), None);
    assert_eq!(effective_count(Some(5), Some(secs(60))), Some(5));
}

#[test]
fn args_are_substituted_with_or_without_spaces() {
    let args = BTreeMap::from([
        ("service".to_string(), "web".to_string()),
        ("hash".to_string(), "abc123".to_string()),
    ]);
    assert_eq!(
        render_args(
            r#"sum(rate(x{svc="{{args.service}}",h="{{ args.hash }}"}[1m]))"#,
            &args
        )
        .as_deref(),
        Ok(r#"sum(rate(x{svc="web",h="abc123"}[1m]))"#)
    );
    assert_eq!(render_args("no tags", &args).as_deref(), Ok("no tags"));
}

#[test]
fn unresolved_args_name_the_last_tag_as_written() {
    let args = BTreeMap::from([("service".to_string(), "web".to_string())]);
    assert_eq!(
        render_args("{{args.x}}", &args),
        Err("failed to resolve {{args.x}}".to_string())
    );
    assert_eq!(
        render_args("{{args.x}} {{ args.y }} {{args.service}}", &args),
        Err("failed to resolve {{ args.y }}".to_string())
    );
    assert_eq!(
        render_args("{{service}}", &args),
        Err("failed to resolve {{service}}".to_string())
    );
    assert!(render_args("{{args.service", &args).is_err());
}
