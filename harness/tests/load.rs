//! The load generator against tiny local servers: throttling, per-version accounting, windows on
//! the timeline, transport errors, bounded stop, and several loads in one process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use gauntlet::load::{Load, LoadSpec, LoadStats, NO_VERSION};
use gauntlet::timeline::{Source, Timeline};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Answers `X-App-Version: 1.0.0` and `2.0.0` alternately, and 500 to every 10th request.
/// Returns the base URL and the number of requests served.
async fn alternating_server() -> (String, Arc<AtomicU64>) {
    async fn answer(
        State(n): State<Arc<AtomicU64>>,
    ) -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
        let i = n.fetch_add(1, Ordering::SeqCst);
        let version = if i % 2 == 0 { "1.0.0" } else { "2.0.0" };
        let status = if i % 10 == 9 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        (status, [("x-app-version", version)], "{\"ok\":true}")
    }
    let served = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/", get(answer))
        .with_state(served.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, served)
}

/// Accepts connections, reads the request, and closes without answering (or, with `hang`,
/// keeps the connection open without ever answering).
async fn silent_server(hang: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                if hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                drop(s);
            });
        }
    });
    url
}

async fn dead_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn spec(rate: f64, connections: u32) -> LoadSpec {
    LoadSpec {
        rate,
        connections,
        seed: 7,
        host: None,
    }
}

fn total_requests(stats: &LoadStats) -> u64 {
    stats
        .total_between(f64::NEG_INFINITY, f64::INFINITY)
        .requests
}

/// Waits until `cond` holds on the load's live statistics, or panics at the deadline.
async fn wait_for(load: &Load, within: Duration, what: &str, cond: impl Fn(&LoadStats) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if cond(&load.snapshot()) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_load_counts_versions_errors_and_one_second_windows() {
    let (url, served) = alternating_server().await;
    let tl = Timeline::new();
    let load = Load::start(&url, spec(50.0, 4), tl.clone()).await.unwrap();
    wait_for(&load, Duration::from_secs(5), "the first answers", |s| {
        total_requests(s) > 0
    })
    .await;
    // Warm-up before the release, then the release, then the rest of the run (6 s in all).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tl.mark_release();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let live = load.snapshot();
    assert!(live.windows.len() >= 5, "{}", live.windows.len());

    let asked = Instant::now();
    let stats = load.stop().await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(3), "stop took {took:?}");

    // Rate: within 10 % of what was asked, over the whole run.
    let rate = stats.measured_rate();
    eprintln!(
        "measured {rate:.2} requests/s over {:.2} s, {} requests, p95 {:?} ms",
        stats.windows.iter().map(|w| w.dur_s).sum::<f64>(),
        total_requests(&stats),
        stats.p95_ms(f64::NEG_INFINITY, f64::INFINITY)
    );
    assert!((rate - 50.0).abs() <= 5.0, "measured rate {rate}");

    // Versions alternate; every 10th answer is a 500; nothing went unanswered.
    let all = stats.between(f64::NEG_INFINITY, f64::INFINITY);
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        ["1.0.0", "2.0.0"],
        "{all:?}"
    );
    let (a, b) = (all["1.0.0"].requests, all["2.0.0"].requests);
    assert!(a.abs_diff(b) <= 6, "1.0.0: {a}, 2.0.0: {b}");
    let total = stats.total_between(f64::NEG_INFINITY, f64::INFINITY);
    assert_eq!(total.transport_errors, 0);
    assert!(
        (total.error_share() - 0.10).abs() <= 0.03,
        "{}",
        total.error_share()
    );
    assert_eq!(
        total.errors,
        total.by_status.get(&500).copied().unwrap_or(0)
    );
    assert_eq!(total.requests, total.by_status.values().sum::<u64>());
    assert_eq!(stats.resent, 0);
    // The server saw every counted request (plus at most one cancelled per user at stop).
    let served = served.load(Ordering::SeqCst);
    assert!(
        served >= total.requests && served <= total.requests + 4,
        "served {served}, counted {}",
        total.requests
    );

    // Windows: contiguous, one second each but for the cut at the release and the last one;
    // about 50 requests in each full one; one starts exactly at the release.
    let w = &stats.windows;
    assert!(w.len() >= 6, "{}", w.len());
    for pair in w.windows(2) {
        assert!(
            (pair[0].t_s + pair[0].dur_s - pair[1].t_s).abs() < 1e-6,
            "{pair:?}"
        );
    }
    assert!(
        w.iter().any(|w| w.t_s.abs() < 1e-9),
        "a window starts at the release"
    );
    assert!(
        w[0].t_s < -1.0,
        "the warm-up is before the release: {}",
        w[0].t_s
    );
    let full: Vec<_> = w.iter().filter(|w| (w.dur_s - 1.0).abs() < 1e-6).collect();
    assert!(full.len() >= 4, "{}", full.len());
    // Per window the count can wobble when the machine stalls the process (missed slots are
    // made up in the next window), so judge the typical window.
    let mut counts: Vec<u64> = full[1..].iter().map(|w| w.total().requests).collect();
    counts.sort_unstable();
    let median = counts[counts.len() / 2];
    assert!(
        (45..=55).contains(&median),
        "requests per full window: {counts:?}"
    );
    assert!(w.iter().all(|w| w.dur_s <= 1.0 + 1e-6));

    // between() over a sub-range sums exactly the windows starting in it.
    let sub = stats.between(0.0, 3.0);
    let manual: u64 = w
        .iter()
        .filter(|w| w.t_s >= 0.0 && w.t_s < 3.0)
        .map(|w| w.total().requests)
        .sum();
    assert_eq!(sub.values().map(|c| c.requests).sum::<u64>(), manual);
    assert!(
        (120..=180).contains(&manual),
        "{manual} requests in the first 3 s after the release"
    );
    let before: u64 = stats
        .between(f64::NEG_INFINITY, 0.0)
        .values()
        .map(|c| c.requests)
        .sum();
    assert_eq!(
        before
            + stats
                .between(0.0, f64::INFINITY)
                .values()
                .map(|c| c.requests)
                .sum::<u64>(),
        total.requests
    );

    // Latency: local answers, a sane p95.
    let p95 = stats.p95_ms(0.0, f64::INFINITY).unwrap();
    assert!(p95 > 0.0 && p95 < 200.0, "p95 {p95} ms");
    assert!(all["1.0.0"].p95_ms().is_some());
    assert_eq!(stats.p95_ms(1000.0, 2000.0), None);

    // Every window went to the timeline, in order, with the same counts; plus start and stop.
    let events = tl.snapshot();
    let windows: Vec<_> = events
        .iter()
        .filter(|e| e.source == Source::Load && e.kind == "window")
        .collect();
    assert_eq!(windows.len(), w.len());
    for (e, w) in windows.iter().zip(w) {
        let data: &serde_json::Value = &e.data;
        assert_eq!(
            data["by_version"],
            serde_json::to_value(&w.by_version).unwrap(),
            "{}",
            e.message
        );
        assert!(e.message.contains("requests"), "{}", e.message);
    }
    // Events are re-based on the release; a window is emitted when it ends.
    for (e, w) in windows.iter().zip(w) {
        let end = w.t_s + w.dur_s;
        assert!(
            e.t_s >= end - 1e-3 && e.t_s < end + 0.5,
            "{} vs {end}",
            e.t_s
        );
    }
    assert!(
        events
            .iter()
            .any(|e| e.source == Source::Load && e.kind == "start")
    );
    assert!(
        events
            .iter()
            .any(|e| e.source == Source::Load && e.kind == "stop")
    );
    assert!(
        !events.iter().any(|e| e.kind == "ended"),
        "goose did not end on its own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_is_a_transport_error_of_version_none_and_stop_is_bounded() {
    // Three loads at once in one process: a dead port, a server that closes every connection
    // unanswered, and one that never answers.
    let (dead, closing, hanging) = (
        dead_port().await,
        silent_server(false).await,
        silent_server(true).await,
    );
    let tl = Timeline::new();
    let (dead, closing, hanging) = tokio::join!(
        Load::start(&dead, spec(20.0, 2), tl.clone()),
        Load::start(&closing, spec(20.0, 2), tl.clone()),
        Load::start(&hanging, spec(20.0, 2), tl.clone()),
    );
    let (dead, closing, hanging) = (dead.unwrap(), closing.unwrap(), hanging.unwrap());
    for load in [&dead, &closing] {
        wait_for(load, Duration::from_secs(5), "transport errors", |s| {
            s.total_between(f64::NEG_INFINITY, f64::INFINITY)
                .transport_errors
                >= 10
        })
        .await;
    }

    let asked = Instant::now();
    let (dead, closing, hanging) = tokio::join!(dead.stop(), closing.stop(), hanging.stop());
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");

    for (name, stats) in [("dead port", &dead), ("closing server", &closing)] {
        let all = stats.between(f64::NEG_INFINITY, f64::INFINITY);
        assert_eq!(
            all.keys().collect::<Vec<_>>(),
            [NO_VERSION],
            "{name}: {all:?}"
        );
        let none = &all[NO_VERSION];
        assert!(none.requests >= 10, "{name}: {none:?}");
        assert_eq!(none.transport_errors, none.requests, "{name}");
        assert_eq!(none.errors, none.requests, "{name}");
        assert!(none.by_status.is_empty(), "{name}");
        assert_eq!(none.p95_ms(), None, "{name}");
        assert!((none.error_share() - 1.0).abs() < 1e-12);
    }
    // A connection closed before any response is resent once, as real clients do; a refused
    // connection is not.
    assert_eq!(dead.resent, 0);
    let closed = closing
        .total_between(f64::NEG_INFINITY, f64::INFINITY)
        .requests;
    assert!(
        closing.resent >= closed - 2 && closing.resent <= closed,
        "resent {} of {closed}",
        closing.resent
    );
    // Requests that hung were cancelled by stop(), not counted.
    assert_eq!(total_requests(&hanging), 0);
    assert!(!hanging.windows.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_run_one_after_another_in_one_process() {
    let (url, _) = alternating_server().await;
    for round in 0..2 {
        let tl = Timeline::new();
        let load = Load::start(&url, spec(40.0, 2), tl.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let stats = load.stop().await;
        let n = total_requests(&stats);
        let rate = stats.measured_rate();
        assert!((45..=75).contains(&n), "round {round}: {n} requests");
        assert!(
            (rate - 40.0).abs() <= 6.0,
            "round {round}: {rate} requests/s"
        );
        let all = stats.between(f64::NEG_INFINITY, f64::INFINITY);
        assert!(
            all.contains_key("1.0.0") && all.contains_key("2.0.0"),
            "{all:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_header_is_sent_when_the_ingress_routes_by_host() {
    // The server answers with the Host it saw as the version, so the tally shows it.
    async fn echo_host(headers: axum::http::HeaderMap) -> impl axum::response::IntoResponse {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        ([("x-app-version", host)], "ok")
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, Router::new().route("/", get(echo_host)))
            .await
            .unwrap()
    });
    let mut s = spec(20.0, 1);
    s.host = Some("ns-1.gauntlet.test".into());
    let load = Load::start(&url, s, Timeline::new()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while total_requests(&load.snapshot()) < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no answers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = load.stop().await;
    let all = stats.between(f64::NEG_INFINITY, f64::INFINITY);
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        vec!["ns-1.gauntlet.test"],
        "{all:?}"
    );
}
