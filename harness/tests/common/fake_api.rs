//! A small fake Kubernetes API server behind `kube::Client::new`: apply / merge patch / get /
//! list / watch / delete on any collection path, with resourceVersions and replay of missed
//! events on a resumed watch; it records every request, plays a controller through a callback
//! on each apply, and answers the service proxy
//! (`/api/v1/namespaces/{ns}/services/{svc}:{port}/proxy/...`) as the Flagger loadtester's gates
//! do. Shared by `tests/kube_api.rs` and `tests/cluster_runner.rs` (`#[path]`-included).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

pub type Body = BoxBody<Bytes, Infallible>;

/// One request as the API server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: String,
}

impl Recorded {
    pub fn param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
    }
}

#[derive(Default)]
pub struct Collection {
    pub objects: BTreeMap<String, Value>,
    /// (resourceVersion, watch event line)
    pub log: Vec<(u64, String)>,
    pub watchers: Vec<mpsc::UnboundedSender<Bytes>>,
}

pub type Controller = Box<dyn Fn(&str, &mut Value) + Send>;

#[derive(Default)]
pub struct State {
    pub requests: Vec<Recorded>,
    pub collections: BTreeMap<String, Collection>,
    pub rv: u64,
    pub no_status_subresource: bool,
    pub fail_next_watch: BTreeSet<String>,
    /// Plays the controller: called after each apply with the collection and the stored object.
    pub controller: Option<Controller>,
    /// What the service proxy answers (`/api/v1/namespaces/{ns}/services/{svc}/proxy/...`):
    /// `None` is the loadtester's 202 to a gate; `Some((code, message))` an API server error
    /// (e.g. 503 "no endpoints available for service").
    pub proxy_error: Option<(u16, String)>,
}

/// A minimal API server: apply / merge patch / get / list / watch / delete on any collection
/// path, with resourceVersions and replay of missed events on a resumed watch.
#[derive(Clone, Default)]
pub struct Fake {
    state: Arc<Mutex<State>>,
    /// Counts every request and every stored object, so tests can wait on what the fake saw.
    news: Arc<watch::Sender<u64>>,
}

pub const PLURALS: &[&str] = &[
    "namespaces",
    "services",
    "ingresses",
    "rollouts",
    "analysistemplates",
    "analysisruns",
    "events",
    "canaries",
    "metrictemplates",
    "deployments",
    "replicasets",
    "pods",
];

/// `(collection path, name, subresource)` of a request path.
pub fn split(path: &str) -> (String, Option<String>, Option<String>) {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let i = segs
        .iter()
        .rposition(|s| PLURALS.contains(s))
        .unwrap_or(segs.len() - 1);
    (
        format!("/{}", segs[..=i].join("/")),
        segs.get(i + 1).map(|s| s.to_string()),
        segs.get(i + 2).map(|s| s.to_string()),
    )
}

pub fn respond(code: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap()
}

pub fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    respond(
        StatusCode::from_u16(code).unwrap(),
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}

pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl Fake {
    pub fn client(&self) -> kube::Client {
        let fake = self.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let fake = fake.clone();
            async move { Ok::<_, Infallible>(fake.handle(req).await) }
        });
        kube::Client::new(svc, "default")
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Stores `o` as the controller would write it, and tells the watchers.
    pub fn put(&self, coll: &str, mut o: Value) {
        let mut st = self.lock();
        st.rv += 1;
        let rv = st.rv;
        o["metadata"]["resourceVersion"] = json!(rv.to_string());
        let name = o["metadata"]["name"].as_str().unwrap().to_string();
        let c = st.collections.entry(coll.to_string()).or_default();
        let kind = if c.objects.contains_key(&name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        c.objects.insert(name, o.clone());
        let line = format!("{}\n", json!({"type": kind, "object": o}));
        c.log.push((rv, line.clone()));
        c.watchers
            .retain(|w| w.send(Bytes::from(line.clone())).is_ok());
        drop(st);
        self.news.send_modify(|n| *n += 1);
    }

    /// Waits until `cond` holds of the fake (checked on every request and stored object), or
    /// panics naming `what` after `within`.
    pub async fn wait_until(&self, within: Duration, what: &str, cond: impl Fn(&Fake) -> bool) {
        let mut rx = self.news.subscribe();
        let waited = tokio::time::timeout(within, async {
            loop {
                rx.borrow_and_update();
                if cond(self) {
                    return;
                }
                rx.changed().await.expect("the fake lives as long as self");
            }
        })
        .await;
        if waited.is_err() {
            panic!("the fake did not see {what} within {within:?}");
        }
    }

    /// The requests that went through the service proxy.
    pub fn proxied(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains("/proxy/"))
            .collect()
    }

    pub fn get(&self, coll: &str, name: &str) -> Option<Value> {
        self.lock()
            .collections
            .get(coll)
            .and_then(|c| c.objects.get(name).cloned())
    }

    /// Ends every open watch of `coll`, as a lost connection does.
    pub fn drop_watchers(&self, coll: &str) {
        if let Some(c) = self.lock().collections.get_mut(coll) {
            c.watchers.clear();
        }
    }

    async fn handle(&self, req: Request<kube::client::Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let rec = Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        self.lock().requests.push(rec.clone());
        self.news.send_modify(|n| *n += 1);
        if is_service_proxy(&rec.path) {
            return match (rec.method.as_str(), self.lock().proxy_error.clone()) {
                ("POST", None) => Response::builder()
                    .status(StatusCode::ACCEPTED)
                    .body(Full::new(Bytes::new()).boxed())
                    .unwrap(),
                (_, Some((code, message))) => status(code, "ServiceUnavailable", &message),
                _ => status(405, "MethodNotAllowed", "the fake proxies POST only"),
            };
        }
        let (coll, name, sub) = split(&rec.path);
        match (rec.method.as_str(), name, rec.param("watch").is_some()) {
            ("PATCH", Some(name), _) => self.patch(&coll, &name, sub.as_deref(), &rec),
            ("GET", None, true) => self.watch(&coll, &rec),
            ("GET", None, false) => {
                let st = self.lock();
                let items: Vec<Value> = st
                    .collections
                    .get(&coll)
                    .map(|c| c.objects.values().cloned().collect())
                    .unwrap_or_default();
                respond(
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": "List",
                            "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
                )
            }
            ("GET", Some(name), false) => match self.get(&coll, &name) {
                Some(o) => respond(StatusCode::OK, &o),
                None => status(404, "NotFound", &format!("{name} not found")),
            },
            ("DELETE", Some(name), _) => match self.get(&coll, &name) {
                Some(o) => {
                    self.lock()
                        .collections
                        .get_mut(&coll)
                        .map(|c| c.objects.remove(&name));
                    respond(StatusCode::OK, &o)
                }
                None => status(404, "NotFound", &format!("{name} not found")),
            },
            _ => status(405, "MethodNotAllowed", "not in the fake"),
        }
    }

    fn patch(&self, coll: &str, name: &str, sub: Option<&str>, rec: &Recorded) -> Response<Body> {
        let patch: Value = match serde_json::from_str(&rec.body) {
            Ok(v) => v,
            Err(e) => return status(400, "BadRequest", &e.to_string()),
        };
        let ct = rec.content_type.clone().unwrap_or_default();
        if sub == Some("status") && self.lock().no_status_subresource {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
        let existing = self.get(coll, name);
        let stored = if ct == "application/apply-patch+yaml" {
            let mut o = patch;
            let generation = match &existing {
                Some(old) if old.get("spec") != o.get("spec") => {
                    old["metadata"]["generation"].as_i64().unwrap_or(1) + 1
                }
                Some(old) => old["metadata"]["generation"].as_i64().unwrap_or(1),
                None => 1,
            };
            o["metadata"]["generation"] = json!(generation);
            o["metadata"]["uid"] = json!(format!("uid-{name}"));
            if let Some(st) = existing.as_ref().and_then(|e| e.get("status")) {
                o["status"] = st.clone();
            }
            if let Some(c) = &self.lock().controller {
                c(coll, &mut o);
            }
            o
        } else {
            let Some(mut o) = existing else {
                return status(404, "NotFound", &format!("{name} not found"));
            };
            merge(&mut o, &patch);
            o
        };
        self.put(coll, stored);
        respond(StatusCode::OK, &self.get(coll, name).unwrap())
    }

    fn watch(&self, coll: &str, rec: &Recorded) -> Response<Body> {
        let mut st = self.lock();
        if st.fail_next_watch.remove(coll) {
            return status(500, "InternalError", "injected failure of a watch");
        }
        let from: u64 = rec
            .param("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let c = st.collections.entry(coll.to_string()).or_default();
        for (rv, line) in &c.log {
            if *rv > from {
                let _ = tx.send(Bytes::from(line.clone()));
            }
        }
        c.watchers.push(tx);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(hyper::body::Frame::data(b)), rx))
        });
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap()
    }
}

/// Plays Argo Rollouts for the fake: a new generation of the Rollout is observed at once; the
/// first becomes Healthy (initial deploy), later ones start progressing.
pub fn argo_controller(coll: &str, o: &mut Value) {
    if !coll.ends_with("/rollouts") {
        return;
    }
    let g = o["metadata"]["generation"].as_i64().unwrap();
    let status = if g == 1 {
        json!({"observedGeneration": "1", "phase": "Healthy", "stableRS": "aaaa",
               "currentPodHash": "aaaa", "currentStepIndex": 4,
               "canary": {"weights": {"canary": {"weight": 0}, "stable": {"weight": 100}}}})
    } else {
        json!({"observedGeneration": g.to_string(), "phase": "Progressing",
               "message": "more replicas need to be updated", "stableRS": "aaaa",
               "currentPodHash": "bbbb", "currentStepIndex": 0,
               "canary": {"weights": {"canary": {"weight": 0}, "stable": {"weight": 100}}}})
    };
    o["status"] = status;
}

/// Every PATCH (server-side applies and merge patches), in order.
pub fn applies(fake: &Fake) -> Vec<Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect()
}

/// `/api/v1/namespaces/{ns}/services/{svc}/proxy/...`
fn is_service_proxy(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    segs.len() >= 7
        && segs[..3] == ["api", "v1", "namespaces"]
        && segs[4] == "services"
        && segs[6] == "proxy"
}
