//! Flagger's loadtester (`ghcr.io/fluxcd/flagger-loadtester`, `pkg/loadtester/server.go`),
//! emulated in process so that hooks really travel as HTTP POSTs: [`Loadtester`] answers the
//! gate endpoints (`/gate/check|open|close|approve|halt`, `/rollback/check|open|close`) and the
//! task endpoint (every other path), and [`GateServer`] serves it on 127.0.0.1. A Canary's
//! webhook whose host is the loadtester Service (`flagger-loadtester`,
//! `flagger-loadtester.<namespace>`, ...) is sent to that server with the same path: the URL a
//! user writes for a cluster works unchanged here.
//!
//! `cmd` tasks are accepted as the loadtester accepts them and not run: the scenario's load
//! replaces `hey`. Whether a task is accepted is decided as upstream decides it, since a refused
//! task fails the hook, and a failed rollout hook is a failed check.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use super::webhooks::Payload;
use crate::cluster::InfraError;
use crate::timeline::{Source, Timeline};

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

    /// `HandleNewTask`: a task without metadata is refused; the blocking task types run a
    /// command against the cluster (validation refuses them locally); the others go through
    /// the task factory, whose refusal is a 400 with its text (`task_shell.go`: a `cmd` task
    /// without `cmd`), and are accepted with 202.
    fn task(&self, payload: &Payload, canary: &str) -> (u16, String) {
        if payload.metadata.is_empty() {
            return (400, "metadata not found in payload".into());
        }
        let kind = payload
            .metadata
            .get("type")
            .map(String::as_str)
            .unwrap_or("cmd");
        match kind {
            "cmd" => {}
            "bash" | "helm" | "helmv3" | "kubectl" | "concord" | "ngrinder" => {
                return (
                    500,
                    format!("the local loadtester does not run `{kind}` tasks"),
                );
            }
            _ => return (400, format!("unknown task type {kind}")),
        }
        // The key must be there; an empty command is a task like any other.
        let Some(cmd) = payload.metadata.get("cmd") else {
            return (400, "cmd not found in metadata".into());
        };
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

    fn payload(meta: &[(&str, &str)]) -> Vec<u8> {
        serde_json::to_vec(&Payload {
            name: "podinfo".into(),
            namespace: "test".into(),
            phase: "Progressing".into(),
            checksum: String::new(),
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .unwrap()
    }

    #[test]
    fn gates_answer_as_the_loadtester_does() {
        let lt = Loadtester::new(Timeline::new());
        let body = payload(&[]);
        assert_eq!(lt.handle("/gate/check", &body).0, 403);
        assert_eq!(lt.handle("/gate/open", &body).0, 202);
        assert_eq!(lt.handle("/gate/check", &body), (200, "Approved".into()));
        assert!(lt.is_open("podinfo.test"));
        assert_eq!(lt.handle("/rollback/check", &body).0, 403);
        lt.open("rollback.podinfo.test");
        assert_eq!(lt.handle("/rollback/check", &body).0, 200);
        assert_eq!(lt.handle("/gate/halt", b"").0, 403);
        assert_eq!(lt.handle("/gate/approve", b"").0, 200);
    }

    #[test]
    fn handle_new_task_refuses_a_cmd_task_without_cmd() {
        let lt = Loadtester::new(Timeline::new());
        assert_eq!(
            lt.handle("/", &payload(&[])),
            (400, "metadata not found in payload".into())
        );
        assert_eq!(
            lt.handle("/", &payload(&[("cmd", "hey -z 1m http://x/")]))
                .0,
            202
        );
        // `type` defaults to cmd; the task factory wants the `cmd` key itself.
        for meta in [
            &[("command", "hey -z 1m http://x/")][..],
            &[("type", "cmd"), ("logCmdOutput", "true")][..],
        ] {
            assert_eq!(
                lt.handle("/", &payload(meta)),
                (400, "cmd not found in metadata".into()),
                "{meta:?}"
            );
        }
        // Present but empty is a task (`sh -c ""` succeeds).
        assert_eq!(lt.handle("/", &payload(&[("cmd", "")])).0, 202);
        assert_eq!(
            lt.handle("/", &payload(&[("type", "jmeter"), ("cmd", "x")])),
            (400, "unknown task type jmeter".into())
        );
    }
}
