//! Goose installs a Ctrl-C handler (the `ctrlc` crate) on its first attack in a process, which
//! replaces the SIGINT handler tokio's `signal()` relies on. `Load` puts it back. Its own test
//! binary: the proof needs a process whose first goose attack is this test's, and it raises
//! SIGINT at the whole process.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use gauntlet::load::{Load, LoadSpec};
use gauntlet::timeline::Timeline;
use nix::sys::signal::{Signal, raise};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, timeout};

async fn server() -> String {
    let app = Router::new().route("/", get(|| async { ([("x-app-version", "1.0.0")], "ok") }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn requests(load: &Load) -> u64 {
    load.snapshot()
        .total_between(f64::NEG_INFINITY, f64::INFINITY)
        .requests
}

async fn grows(load: &Load, from: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while requests(load) <= from + 5 {
        assert!(Instant::now() < deadline, "the load stopped sending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_still_reaches_tokio_after_loads_ran() {
    // The CLI's order: the SIGINT listener exists before any load starts.
    let mut sigint = signal(SignalKind::interrupt()).unwrap();
    let url = server().await;
    let spec = LoadSpec {
        rate: 50.0,
        connections: 2,
        seed: 0,
        host: None,
    };

    for round in 0..2 {
        let load = Load::start(&url, spec.clone(), Timeline::new())
            .await
            .unwrap();
        grows(&load, 0).await;
        raise(Signal::SIGINT).unwrap();
        timeout(Duration::from_secs(5), sigint.recv())
            .await
            .unwrap_or_else(|_| panic!("round {round}: SIGINT did not reach tokio"))
            .unwrap();
        // goose's handler did not see it: no killswitch, the load goes on.
        assert!(!goose::is_killswitch_triggered(), "round {round}");
        let n = requests(&load);
        grows(&load, n).await;
        let stats = load.stop().await;
        let all = stats.total_between(f64::NEG_INFINITY, f64::INFINITY);
        assert!(
            all.requests > 10 && all.errors == 0,
            "round {round}: {all:?}"
        );
    }
}
