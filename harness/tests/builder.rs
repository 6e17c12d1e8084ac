//! The Rust form of a scenario: the same model and run as a YAML file.

use std::path::Path;
use std::time::Duration;

use gauntlet::runner::Status;
use gauntlet::scenario::{Fault, Outcome, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_built_in_rust_runs_like_a_file() {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps/argo");
    let finished = Scenario::target(&target)
        .named("builder-500s")
        .release("2.0.0")
        .fault(Fault::errors(0.3, 500))
        .expect(Outcome::RolledBack)
        .within(Duration::from_secs(30))
        .client_errors(0.10)
        .time_scale(0.25)
        .rate(40.0)
        .run_local(1)
        .await
        .expect("the scenario validates");
    let r = &finished.report;
    assert_eq!(finished.status, Status::Passed, "{:?}", r.failure);
    assert_eq!(r.outcome.as_deref(), Some("rolled-back"));

    // A budget the policy cannot meet is refused before anything starts.
    let e = Scenario::target(&target)
        .expect(Outcome::Promoted)
        .within(Duration::from_secs(5))
        .run_local(1)
        .await
        .err()
        .expect("refused");
    assert_eq!(e[0].key, "expect.within");
}
