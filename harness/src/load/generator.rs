//! The load generator: goose embedded in-process, `GET /` through the ingress at a fixed rate.
//!
//! Goose runs the users (`connections` of them, hatched at once). Each request itself is ours:
//! the transaction waits for its send slot, takes a goose throttle token, sends with the user's
//! reqwest client through [`client::send`] (the resend rule of real clients), reads the body fully,
//! and counts the outcome per version in [`Recorder`]. Goose's own request metrics are not used.
//!
//! Rate: goose's `ThrottleRequests` alone runs about 1 ms late per token (its leaky bucket sleeps
//! `1/rate` relative to the previous wake-up, and tokio's timer rounds up), measured here at
//! 46.7 requests/s for 50, and later still on a busy machine. So the rate is paced by an absolute
//! schedule of send slots (`start + k/rate`, shared by all users): fractional rates are exact and
//! late wake-ups do not accumulate. Slots missed while every user was busy or the process stalled
//! are made up for at most [`MAX_BACKLOG`] back (a short burst, as far as `connections` and the
//! cap allow); older ones are given up. Goose's `ThrottleRequests` stays on as a hard cap, twice
//! the rate plus 10: the load is never unthrottled, even if the pacing were wrong.
//!
//! Stopping early: goose 0.19 has no per-attack stop (its killswitch is process-global, so it
//! would stop every other load in the process, and each new attack resets it). Instead every user
//! *retires* itself: once `stop()` is called, the transaction cancels its in-flight request or
//! throttle wait and sends the user's index on goose's `shutdown_channel`, the path by which a
//! user that ran out of iterations reports. When all users have reported, goose cancels the attack
//! itself (Exit to every user, `execute()` returns). This takes at most one turn of goose's
//! 500 ms main loop. If goose were still not done 5 s after `stop()`, its task is aborted; the
//! users then stay retired (they send nothing more).
//!
//! Output: goose prints "All N users launched." to stdout only with `NoResetMetrics` (or with
//! metrics printing on), so the defaults are kept: goose resets its metrics after the ramp (they
//! are unused) and prints nothing to stdout. Its log records go through the `log` crate: with a
//! `tracing` subscriber installed first they arrive as `goose::*` targets; otherwise goose installs
//! simplelog at warn level (our configuration logs no warnings).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use goose::config::GooseConfiguration;
use goose::prelude::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client;
use super::sigint;
use super::stats::{LoadStats, NO_VERSION, Outcome, Recorder, timeline_origin};
use crate::timeline::{Source, Timeline};

/// How hard to load the target.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    /// Requests per second, > 0 (fractional rates are paced exactly; goose's integer throttle
    /// is only a cap above it).
    pub rate: f64,
    /// Goose users, >= 1: the most requests in flight at once (each user sends one at a time).
    pub connections: u32,
    /// Kept for the scenario's reproducibility record; the load has no randomness of its own
    /// (every request is `GET /`, goose's scheduling is round-robin and throttled).
    pub seed: u64,
    /// The `Host` header to send, when the ingress routes by host (a cluster's Ingress rules
    /// get one per scenario namespace); `None` sends the URL's host.
    pub host: Option<String>,
}

/// Why a load could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("load rate must be a positive number of requests per second, got {0}")]
    BadRate(f64),
    #[error("load needs at least one connection, got 0")]
    NoConnections,
    #[error("load target {url:?} is not an http(s) base URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("goose refused the load configuration: {0}")]
    Config(String),
    #[error("goose stopped before sending its first request: {0}")]
    Failed(String),
    #[error("goose did not send its first request within {0:?}")]
    StartTimeout(Duration),
}

/// Per-request timeout; a request that takes longer counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `start()` waits for goose's first request.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop()` waits for goose to wind down before aborting it.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How far back missed send slots are made up.
const MAX_BACKLOG: Duration = Duration::from_secs(1);
/// How often windows are closed when no request does it.
const TICK: Duration = Duration::from_millis(100);

/// State shared by the transaction, the ticker and the [`Load`] handle.
struct Shared {
    url: reqwest::Url,
    host: Option<String>,
    pacer: Pacer,
    recorder: Mutex<Recorder>,
    /// `true` once `stop()` (or drop) asked the users to retire.
    stop: watch::Sender<bool>,
    /// `true` once the first transaction ran (goose initialized, users running).
    started: watch::Sender<bool>,
}

impl Shared {
    fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        // Counting cannot panic half-way through an update; a poisoned lock is still usable.
        self.recorder.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running load. Dropping it without `stop()` still winds goose down in the background.
pub struct Load {
    shared: Arc<Shared>,
    timeline: Timeline,
    attack: Option<JoinHandle<Result<(), String>>>,
    ticker: JoinHandle<()>,
}

impl Load {
    /// Starts goose against `base_url` (e.g. `http://127.0.0.1:PORT`), `GET /` repeatedly,
    /// throttled to `spec.rate`. Returns once the first request is under way.
    pub async fn start(
        base_url: &str,
        spec: LoadSpec,
        timeline: Timeline,
    ) -> Result<Load, LoadError> {
        if !(spec.rate.is_finite() && spec.rate > 0.0) {
            return Err(LoadError::BadRate(spec.rate));
        }
        if spec.connections == 0 {
            return Err(LoadError::NoConnections);
        }
        let bad_url = |reason: String| LoadError::BadUrl {
            url: base_url.to_string(),
            reason,
        };
        let base = reqwest::Url::parse(base_url).map_err(|e| bad_url(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(bad_url("needs http:// or https:// and a host".into()));
        }
        let url = base.join("/").map_err(|e| bad_url(e.to_string()))?;
        let host = base.origin().ascii_serialization();
        let throttle = goose_cap(spec.rate);
        let users = spec.connections as usize;

        let (stop, _) = watch::channel(false);
        let (started, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            url,
            host: spec.host.clone(),
            pacer: Pacer::new(spec.rate),
            recorder: Mutex::new(Recorder::new(timeline.clone())),
            stop,
            started,
        });

        let attack = configure(&host, users, throttle, transaction(shared.clone()))
            .map_err(|e| LoadError::Config(e.to_string()))?;

        timeline.emit(
            Source::Load,
            "start",
            format!(
                "load: GET {} at {} requests/s over {users} connection(s)",
                shared.url, spec.rate
            ),
            serde_json::json!({
                "url": shared.url.as_str(),
                "rate": spec.rate,
                "goose_throttle_cap": throttle,
                "connections": spec.connections,
                "seed": spec.seed,
            }),
        );
        // Read back the timeline's time base, for windows closed before the release.
        shared.recorder().set_origin(timeline_origin(&timeline));

        let guard = sigint::before_goose().await;
        let mut started_rx = shared.started.subscribe();
        let mut task = tokio::spawn(run_attack(attack, shared.clone(), timeline.clone()));
        let outcome = tokio::time::timeout(START_TIMEOUT, async {
            tokio::select! {
                biased;
                _ = started_rx.wait_for(|s| *s) => Ok(()),
                ended = &mut task => Err(match ended {
                    Ok(Ok(())) => "the attack ended at once".to_string(),
                    Ok(Err(e)) => e,
                    Err(e) => format!("the attack task failed: {e}"),
                }),
            }
        })
        .await;
        if let Some(guard) = guard {
            guard.after_goose(*shared.started.borrow());
        }
        let fail = |e: LoadError| {
            shared.stop.send_replace(true);
            task.abort();
            Err(e)
        };
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return fail(LoadError::Failed(e)),
            Err(_) => return fail(LoadError::StartTimeout(START_TIMEOUT)),
        }

        let ticker = tokio::spawn(tick(shared.clone()));
        Ok(Load {
            shared,
            timeline,
            attack: Some(task),
            ticker,
        })
    }

    /// Statistics so far; the current window is included as a partial one.
    pub fn snapshot(&self) -> LoadStats {
        self.shared.recorder().stats(Instant::now())
    }

    /// Stops the attack (within about 5 s even if requests hang: in-flight requests are
    /// cancelled and not counted) and returns the final statistics.
    pub async fn stop(mut self) -> LoadStats {
        // The run ends now: what is still in flight is cancelled and not counted.
        let now = Instant::now();
        self.shared.stop.send_replace(true);
        self.shared.recorder().finish(now);
        if let Some(mut task) = self.attack.take() {
            match tokio::time::timeout(STOP_TIMEOUT, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!("goose ended with an error: {e}"),
                Ok(Err(e)) => tracing::warn!("goose's task failed: {e}"),
                Err(_) => {
                    tracing::warn!("goose did not stop within {STOP_TIMEOUT:?}; aborting it");
                    task.abort();
                }
            }
        }
        self.ticker.abort();
        let stats = self.shared.recorder().stats(now);
        let all = stats.total_between(f64::NEG_INFINITY, f64::INFINITY);
        self.timeline.emit(
            Source::Load,
            "stop",
            format!(
                "load stopped: {} requests, {} errors, {:.1} requests/s, {} resent",
                all.requests,
                all.errors,
                stats.measured_rate(),
                stats.resent
            ),
            serde_json::json!({
                "requests": all.requests,
                "errors": all.errors,
                "transport_errors": all.transport_errors,
                "measured_rate": stats.measured_rate(),
                "resent": stats.resent,
            }),
        );
        stats
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // Without stop(): retire the users so goose ends by itself; nothing is awaited here.
        self.shared.stop.send_replace(true);
        self.ticker.abort();
    }
}

/// Goose's throttle (whole requests per second): a cap well above the paced rate, so that its
/// own lateness (a few ms per tick on a busy machine) never binds.
fn goose_cap(rate: f64) -> usize {
    (rate * 2.0).ceil() as usize + 10
}

/// Send slots on an absolute schedule, `interval` apart, shared by all users.
struct Pacer {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / rate),
            next: Mutex::new(None),
        }
    }

    /// The next free slot, on the schedule; no further back than [`MAX_BACKLOG`] from `now`
    /// (a slot in the past means: send at once).
    fn claim(&self, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let floor = now.checked_sub(MAX_BACKLOG).unwrap_or(now);
        let slot = match *next {
            Some(t) => t.max(floor),
            None => now,
        };
        *next = Some(slot + self.interval);
        slot
    }
}

/// The goose attack: one scenario, one transaction, `users` users hatched at once, throttled,
/// no controllers, no reports, nothing printed, no run time (it runs until the users retire).
fn configure(
    host: &str,
    users: usize,
    throttle: usize,
    transaction: TransactionFunction,
) -> Result<GooseAttack, GooseError> {
    let hatch_rate = (users * 20).max(100).to_string();
    Ok(
        *GooseAttack::initialize_with_config(GooseConfiguration::default())?
            .register_scenario(
                Scenario::new("gauntlet-load")
                    .register_transaction(Transaction::new(transaction).set_name("GET /")),
            )
            .set_default(GooseDefault::Host, host)?
            .set_default(GooseDefault::Users, users)?
            .set_default(GooseDefault::IncreaseRate, hatch_rate.as_str())?
            .set_default(GooseDefault::ThrottleRequests, throttle)?
            .set_default(GooseDefault::NoTelnet, true)?
            .set_default(GooseDefault::NoPrintMetrics, true)?
            .set_default(GooseDefault::NoErrorSummary, true)?
            .set_default(GooseDefault::Quiet, 1)?,
    )
}

/// Runs the attack to its end; tells the timeline if it ended without being asked to.
async fn run_attack(
    attack: GooseAttack,
    shared: Arc<Shared>,
    timeline: Timeline,
) -> Result<(), String> {
    let result = attack
        .execute()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    if !*shared.stop.borrow() && *shared.started.borrow() {
        let why = match &result {
            Ok(()) => "goose ended the attack on its own (killswitch?)".to_string(),
            Err(e) => format!("goose failed: {e}"),
        };
        timeline.emit(Source::Load, "ended", why, serde_json::Value::Null);
    }
    result
}

/// Closes windows on time when no request does.
async fn tick(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        shared.recorder().advance(Instant::now());
    }
}

type TransactionFuture<'r> =
    Pin<Box<dyn std::future::Future<Output = TransactionResult> + Send + 'r>>;

fn transaction(shared: Arc<Shared>) -> TransactionFunction {
    Arc::new(move |user: &mut GooseUser| -> TransactionFuture<'_> {
        let shared = shared.clone();
        Box::pin(async move {
            one_request(user, &shared).await;
            Ok(())
        })
    })
}

/// One iteration of a user: a throttled `GET /`, counted; or, once stopping, retiring the user.
async fn one_request(user: &mut GooseUser, shared: &Shared) {
    let mut stop = shared.stop.subscribe();
    // Reports the user as done; false when goose's main loop is gone (its task was aborted).
    let retire = |user: &GooseUser| match &user.shutdown_channel {
        // The index is unique per user; goose counts distinct reports.
        Some(channel) => channel.send(user.weighted_users_index + 1).is_ok(),
        None => false,
    };
    if *stop.borrow_and_update() {
        if retire(user) {
            // Goose sends Exit within one turn of its 500 ms loop; don't spin meanwhile.
            tokio::time::sleep(Duration::from_millis(25)).await;
        } else {
            // Nobody will ever send Exit: park this user for good instead of spinning.
            std::future::pending::<()>().await;
        }
        return;
    }
    if shared
        .started
        .send_if_modified(|s| !std::mem::replace(s, true))
    {
        // The first window opens with the first request, answered or not.
        shared.recorder().begin(Instant::now());
    }

    let throttle = if user.is_throttled {
        user.throttle.clone()
    } else {
        None
    };
    let mut request = user.client.get(shared.url.clone()).timeout(REQUEST_TIMEOUT);
    if let Some(h) = &shared.host {
        request = request.header(reqwest::header::HOST, h);
    }
    let slot = shared.pacer.claim(Instant::now());
    let work = async move {
        tokio::time::sleep_until(slot).await;
        // Goose's throttle (the cap): a token into its leaky bucket before each request. Goose
        // gives users the bucket since ThrottleRequests >= 1; an Err means the attack ended.
        if let Some(bucket) = throttle
            && bucket.send_async(true).await.is_err()
        {
            return None;
        }
        let sent_at = Instant::now();
        let (version, outcome, resent) = match client::send(request).await {
            Ok(sent) => {
                let status = sent.response.status().as_u16();
                let version = sent
                    .response
                    .headers()
                    .get("x-app-version")
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .unwrap_or(NO_VERSION)
                    .to_string();
                // Read the body to its end so the connection can be reused.
                let outcome = match sent.response.bytes().await {
                    Ok(_) => Outcome::Answered {
                        status,
                        latency: sent_at.elapsed(),
                    },
                    Err(_) => Outcome::NoAnswer,
                };
                (version, outcome, sent.resent)
            }
            // A closed-before-response error after send() means the resend was made and failed
            // the same way (the rule resends every GET once).
            Err(e) => (
                NO_VERSION.to_string(),
                Outcome::NoAnswer,
                client::closed_before_response(&e),
            ),
        };
        Some((version, outcome, resent))
    };
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => {
            retire(user);
        }
        done = work => {
            if let Some((version, outcome, resent)) = done {
                let mut recorder = shared.recorder();
                if resent {
                    recorder.count_resend();
                }
                recorder.record(Instant::now(), &version, outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goose_caps_above_the_rate() {
        assert_eq!(goose_cap(50.0), 110);
        assert_eq!(goose_cap(0.2), 11);
        assert_eq!(goose_cap(1000.0), 2010);
    }

    #[tokio::test(start_paused = true)]
    async fn slots_keep_an_absolute_schedule_with_a_bounded_backlog() {
        let ms = Duration::from_millis;
        let p = Pacer::new(4.0); // every 250 ms
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(p.claim(t0), t0);
        assert_eq!(p.claim(t0), t0 + ms(250));
        // Users ready early wait for their slot; one woken 3 ms late does not shift the grid.
        assert_eq!(p.claim(t0 + ms(253)), t0 + ms(500));
        assert_eq!(p.claim(t0 + ms(503)), t0 + ms(750));
        // After a 5 s stall only the last second of missed slots is made up (sent at once),
        // then the schedule goes on.
        let late = t0 + Duration::from_secs(5);
        let made_up: Vec<_> = (0..6).map(|_| p.claim(late)).collect();
        assert_eq!(made_up[0], late - ms(1000));
        assert_eq!(made_up[3], late - ms(250));
        assert_eq!(made_up[4], late);
        assert_eq!(made_up[5], late + ms(250));
    }

    #[tokio::test]
    async fn bad_specs_are_refused_with_clear_errors() {
        let spec = LoadSpec {
            rate: 10.0,
            connections: 1,
            seed: 0,
            host: None,
        };
        let tl = Timeline::new();
        let e = Load::start(
            "http://127.0.0.1:1",
            LoadSpec {
                rate: 0.0,
                ..spec.clone()
            },
            tl.clone(),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(e, LoadError::BadRate(_)), "{e}");
        let e = Load::start(
            "http://127.0.0.1:1",
            LoadSpec {
                rate: f64::NAN,
                ..spec.clone()
            },
            tl.clone(),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(e, LoadError::BadRate(_)), "{e}");
        let e = Load::start(
            "http://127.0.0.1:1",
            LoadSpec {
                connections: 0,
                ..spec.clone()
            },
            tl.clone(),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(e, LoadError::NoConnections), "{e}");
        for url in ["127.0.0.1:8080", "ftp://x/", "not a url"] {
            let e = Load::start(url, spec.clone(), tl.clone())
                .await
                .err()
                .unwrap();
            assert!(matches!(e, LoadError::BadUrl { .. }), "{url}: {e}");
            assert!(e.to_string().contains(url), "{e}");
        }
        assert!(
            tl.snapshot().is_empty(),
            "nothing started, nothing recorded"
        );
    }
}
