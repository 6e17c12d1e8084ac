//! Flagger's webhooks (reference §1.6, `pkg/controller/webhook.go`): a JSON POST with the
//! canary's name, namespace, phase and checksum plus the hook's metadata; success iff the status
//! is at most 202; go-retryablehttp's retries (connection errors, 5xx except 501, 429) with its
//! back-off; the response body as the error text.
//!
//! The loadtester (`ghcr.io/fluxcd/flagger-loadtester`, reference §1.6) is emulated in process:
//! [`Loadtester`] answers its gate endpoints (`/gate/check|open|close|approve|halt`,
//! `/rollback/check|open|close`) and accepts `cmd` tasks, and [`GateServer`] serves it over HTTP
//! on 127.0.0.1, so hooks really travel as HTTP POSTs. A Canary's webhook whose host is the
//! loadtester Service (`flagger-loadtester`, `flagger-loadtester.<namespace>`, ...) is sent to
//! that server with the same path: the URL a user writes for a cluster works unchanged here.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::InfraError;
use crate::timeline::{Source, Timeline};

/// `CanaryWebhookPayload`. Missing fields read as empty, as Go's decoder leaves them (a
/// `curl -d '{"name":...,"namespace":...}'` to `/gate/open` works).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub checksum: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One HTTP POST: the status and body, or the transport error's text.
pub trait Transport: Send + Sync {
    fn post<'a>(
        &'a self,
        url: &'a str,
        payload: &'a Payload,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(u16, String), String>>;
}

/// Real HTTP with reqwest.
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl Default for HttpTransport {
    fn default() -> Self {
        HttpTransport {
            client: reqwest::Client::builder()
                .build()
                .expect("a plain HTTP client builds"),
        }
    }
}

impl Transport for HttpTransport {
    fn post<'a>(
        &'a self,
        url: &'a str,
        payload: &'a Payload,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(u16, String), String>> {
        Box::pin(async move {
            let sent = self
                .client
                .post(url)
                .timeout(timeout)
                .json(payload)
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) if e.is_timeout() => {
                    return Err(format!(
                        "Post \"{url}\": context deadline exceeded (Client.Timeout exceeded \
                         while awaiting headers)"
                    ));
                }
                Err(e) => return Err(format!("Post \"{url}\": {e}")),
            };
            let status = resp.status().as_u16();
            let body = resp
                .text()
                .await
                .map_err(|e| format!("error reading body: {e}"))?;
            Ok((status, body))
        })
    }
}

/// `callWebhook`: the POST with go-retryablehttp's `RetryMax = retries`; `Ok` iff the final
/// status is at most 202.
///
/// # Errors
/// The response body for a status above 202, or go-retryablehttp's "giving up" text.
pub async fn call(
    transport: &dyn Transport,
    url: &str,
    payload: &Payload,
    timeout: Duration,
    retries: u32,
) -> Result<(), String> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let outcome = transport.post(url, payload, timeout).await;
        let (retry, transport_error) = match &outcome {
            Ok((status, _)) => (*status == 429 || (*status >= 500 && *status != 501), None),
            Err(e) => (true, Some(e.clone())),
        };
        if !retry {
            let (status, body) = outcome.unwrap_or_default();
            return if status > 202 { Err(body) } else { Ok(()) };
        }
        if attempt > retries {
            return Err(match transport_error {
                Some(e) => format!("POST {url} giving up after {attempt} attempt(s): {e}"),
                None => format!("POST {url} giving up after {attempt} attempt(s)"),
            });
        }
        // DefaultBackoff: 1 s doubled per attempt, at most 30 s.
        let wait = Duration::from_secs(1u64 << (attempt - 1).min(5)).min(Duration::from_secs(30));
        tokio::time::sleep(wait).await;
    }
}

// ---- The loadtester ---------------------------------------------------------------------

/// The loadtester's state: opened gates (`<canary>.<namespace>`, `rollback.<canary>.<namespace>`)
/// and the `cmd` tasks already reported as not run.
#[derive(Clone)]
pub struct Loadtester {
    gates: Arc<Mutex<BTreeSet<String>>>,
    noted: Arc<Mutex<BTreeSet<String>>>,
    timeline: Timeline,
}

impl Loadtester {
    pub fn new(timeline: Timeline) -> Loadtester {
        Loadtester {
            gates: Arc::default(),
            noted: Arc::default(),
            timeline,
        }
    }

    pub fn open(&self, name: &str) {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
    }

    pub fn close(&self, name: &str) {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    pub fn is_open(&self, name: &str) -> bool {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// The loadtester's answer to a request at `path` with `body` (`pkg/loadtester/server.go`).
    pub fn handle(&self, path: &str, body: &[u8]) -> (u16, String) {
        match path {
            "/healthz" | "/gate/approve" => return (200, "OK".into()),
            "/gate/halt" => return (403, "Forbidden".into()),
            _ => {}
        }
        let Ok(payload) = serde_json::from_slice::<Payload>(body) else {
            return (400, String::new());
        };
        let canary = format!("{}.{}", payload.name, payload.namespace);
        let rollback = format!("rollback.{canary}");
        let check = |key: &str| {
            if self.is_open(key) {
                (200, "Approved".to_string())
            } else {
                (403, "Forbidden".to_string())
            }
        };
        match path {
            "/gate/check" => check(&canary),
            "/gate/open" => {
                self.open(&canary);
                (202, String::new())
            }
            "/gate/close" => {
                self.close(&canary);
                (202, String::new())
            }
            "/rollback/check" => check(&rollback),
            "/rollback/open" => {
                self.open(&rollback);
                (202, String::new())
            }
            "/rollback/close" => {
                self.close(&rollback);
                (202, String::new())
            }
            // Every other path is the task endpoint (Go's mux routes "/" as a catch-all).
            _ => self.task(&payload, &canary),
        }
    }

    fn task(&self, payload: &Payload, canary: &str) -> (u16, String) {
        if payload.metadata.is_empty() {
            return (400, "metadata not found in payload".into());
        }
        let kind = payload
            .metadata
            .get("type")
            .map(String::as_str)
            .unwrap_or("cmd");
        if kind != "cmd" {
            // Validation refuses these; a Canary built by hand can still send them.
            return (
                500,
                format!("the local loadtester does not run `{kind}` tasks"),
            );
        }
        // `cmd` tasks are asynchronous: accepted at once. Load comes from the scenario.
        let cmd = payload.metadata.get("cmd").cloned().unwrap_or_default();
        let first = self
            .noted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(format!("{canary}/{cmd}"));
        if first {
            self.timeline.emit(
                Source::Harness,
                "loadtester",
                format!(
                    "loadtester task accepted but not run locally (the scenario's load replaces \
                     it): {cmd}"
                ),
                serde_json::json!({"canary": canary, "cmd": cmd}),
            );
        }
        (202, String::new())
    }
}

/// What a scenario holds to open and close the loadtester's gates.
#[derive(Clone)]
pub struct GateHandle {
    base_url: String,
    loadtester: Loadtester,
}

impl GateHandle {
    /// `http://127.0.0.1:<port>`: the loadtester's address; `/gate/open` etc. work over HTTP too.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Opens a gate by its loadtester key: `<canary>.<namespace>` for `/gate/check`
    /// (confirm-rollout, confirm-promotion, ...), `rollback.<canary>.<namespace>` for
    /// `/rollback/check`.
    pub fn open(&self, name: &str) {
        self.loadtester.open(name);
    }

    pub fn close(&self, name: &str) {
        self.loadtester.close(name);
    }

    pub fn is_open(&self, name: &str) -> bool {
        self.loadtester.is_open(name)
    }

    pub fn loadtester(&self) -> &Loadtester {
        &self.loadtester
    }
}

/// The loadtester served on 127.0.0.1; stops when dropped.
pub struct GateServer {
    handle: GateHandle,
    task: tokio::task::JoinHandle<()>,
}

impl GateServer {
    /// Binds 127.0.0.1 on a free port and serves the loadtester there. Needs a tokio runtime.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub fn start(timeline: Timeline) -> Result<GateServer, InfraError> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|_| l))
            .map_err(InfraError::io("binding the loadtester's port"))?;
        let addr = std_listener
            .local_addr()
            .map_err(InfraError::io("the loadtester's address"))?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(InfraError::io("the loadtester's listener"))?;
        let loadtester = Loadtester::new(timeline);
        let served = loadtester.clone();
        let app =
            axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
                let lt = served.clone();
                async move {
                    let (status, text) = lt.handle(uri.path(), &body);
                    (
                        axum::http::StatusCode::from_u16(status)
                            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                        text,
                    )
                }
            });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(GateServer {
            handle: GateHandle {
                base_url: format!("http://{addr}"),
                loadtester,
            },
            task,
        })
    }

    pub fn handle(&self) -> &GateHandle {
        &self.handle
    }
}

impl Drop for GateServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(meta: &[(&str, &str)]) -> Payload {
        Payload {
            name: "podinfo".into(),
            namespace: "test".into(),
            phase: "Progressing".into(),
            checksum: String::new(),
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn gates_answer_as_the_loadtester_does() {
        let lt = Loadtester::new(Timeline::new());
        let body = serde_json::to_vec(&payload(&[])).unwrap();
        assert_eq!(lt.handle("/gate/check", &body).0, 403);
        assert_eq!(lt.handle("/gate/open", &body).0, 202);
        assert_eq!(lt.handle("/gate/check", &body), (200, "Approved".into()));
        assert!(lt.is_open("podinfo.test"));
        assert_eq!(lt.handle("/rollback/check", &body).0, 403);
        lt.open("rollback.podinfo.test");
        assert_eq!(lt.handle("/rollback/check", &body).0, 200);
        assert_eq!(lt.handle("/gate/halt", b"").0, 403);
        assert_eq!(lt.handle("/gate/approve", b"").0, 200);
        assert_eq!(lt.handle("/", &body).0, 400, "no metadata");
        let task = serde_json::to_vec(&payload(&[("cmd", "hey -z 1m http://x/")])).unwrap();
        assert_eq!(lt.handle("/", &task).0, 202);
    }

    #[tokio::test]
    async fn hooks_travel_as_http_posts_and_202_is_the_last_success() {
        let server = GateServer::start(Timeline::new()).unwrap();
        let base = server.handle().base_url().to_string();
        let http = HttpTransport::default();
        let p = payload(&[]);
        let t = Duration::from_secs(5);
        let url = format!("{base}/gate/check");
        assert_eq!(call(&http, &url, &p, t, 0).await.unwrap_err(), "Forbidden");
        server.handle().open("podinfo.test");
        call(&http, &url, &p, t, 0).await.unwrap();
        // 202 from /gate/close is a success too.
        call(&http, &format!("{base}/gate/close"), &p, t, 0)
            .await
            .unwrap();
        assert!(!server.handle().is_open("podinfo.test"));
        // Nothing listens: a transport error after the retries.
        let e = call(&http, "http://127.0.0.1:9/x", &p, t, 0)
            .await
            .unwrap_err();
        assert!(
            e.starts_with("POST http://127.0.0.1:9/x giving up after 1 attempt(s): "),
            "{e}"
        );
    }

    struct Statuses(Mutex<Vec<u16>>);

    impl Transport for Statuses {
        fn post<'a>(
            &'a self,
            _: &'a str,
            _: &'a Payload,
            _: Duration,
        ) -> BoxFuture<'a, Result<(u16, String), String>> {
            let s = self.0.lock().unwrap().remove(0);
            Box::pin(async move { Ok((s, format!("status {s}"))) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_cover_5xx_and_204_is_a_failure() {
        let p = payload(&[]);
        let t = Duration::from_secs(1);
        let s = Statuses(Mutex::new(vec![204]));
        assert_eq!(call(&s, "u", &p, t, 3).await.unwrap_err(), "status 204");
        let s = Statuses(Mutex::new(vec![503, 500, 200]));
        let start = tokio::time::Instant::now();
        call(&s, "u", &p, t, 2).await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(3),
            "1 s then 2 s back-off"
        );
        let s = Statuses(Mutex::new(vec![500]));
        assert_eq!(
            call(&s, "http://h/", &p, t, 0).await.unwrap_err(),
            "POST http://h/ giving up after 1 attempt(s)"
        );
        let s = Statuses(Mutex::new(vec![501]));
        assert_eq!(call(&s, "u", &p, t, 5).await.unwrap_err(), "status 501");
    }
}
