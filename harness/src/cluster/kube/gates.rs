//! Flagger's manual gates on a cluster (`pkg/loadtester/server.go`): the loadtester keeps an
//! open/closed flag per canary (`<name>.<namespace>`) that a `confirm-*` webhook pointed at
//! `/gate/check` (or a `rollback` webhook at `/rollback/check`) reads at every tick. A person
//! opens it with `POST /gate/open` (`/gate/close`, `/rollback/open`) and the body
//! `{"name": <canary>, "namespace": <its namespace>}`.
//!
//! gauntlet sends that POST through the API server's service proxy
//! (`/api/v1/namespaces/{ns}/services/{svc}:{port}/proxy/...`), so it needs neither kubectl nor
//! a port-forward. Which Service: the host of the Canary's own webhook of the right type, read as
//! the cluster's DNS would (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`). Everything
//! here is a pure function of the prepared Canary, tested below.

use serde_json::{Value, json};

/// A gate a scenario opens or closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// `/gate/open`: a confirm-promotion (or other confirm-*) hook passes from the next tick.
    Open,
    /// `/gate/close`.
    Close,
    /// `/rollback/open`: the rollback hook rolls the canary back at the next tick.
    Rollback,
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Gate::Open => "open-gate",
            Gate::Close => "close-gate",
            Gate::Rollback => "rollback",
        })
    }
}

impl Gate {
    /// The webhook types whose loadtester holds this gate, the preferred one first.
    pub fn hook_types(self) -> &'static [&'static str] {
        match self {
            Gate::Open | Gate::Close => &[
                "confirm-promotion",
                "confirm-rollout",
                "confirm-traffic-increase",
            ],
            Gate::Rollback => &["rollback"],
        }
    }

    /// The loadtester's endpoint.
    pub fn path(self) -> &'static str {
        match self {
            Gate::Open => "/gate/open",
            Gate::Close => "/gate/close",
            Gate::Rollback => "/rollback/open",
        }
    }

    /// The loadtester's family of endpoints the hook must call for this gate to matter.
    fn family(self) -> &'static str {
        match self {
            Gate::Open | Gate::Close => "/gate/",
            Gate::Rollback => "/rollback/",
        }
    }
}

/// A Service as the API server's proxy names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub port: u16,
    /// The webhook URL is `https://`: the proxy must speak TLS to the Service.
    pub https: bool,
}

impl ServiceRef {
    /// The API server path that proxies `path` (starting with `/`) to this Service.
    pub fn proxy_path(&self, path: &str) -> String {
        let scheme = if self.https { "https:" } else { "" };
        format!(
            "/api/v1/namespaces/{}/services/{scheme}{}:{}/proxy{path}",
            self.namespace, self.name, self.port
        )
    }
}

/// The request that works the gate: where it goes and its JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct GateCall {
    pub gate: Gate,
    /// The webhook it was found through.
    pub hook: String,
    pub service: ServiceRef,
    /// The API server path (see [`ServiceRef::proxy_path`]).
    pub path: String,
    pub body: Value,
}

/// The Service a webhook URL points at, as the cluster's DNS resolves the host: `svc.ns`,
/// `svc.ns.svc`, `svc.ns.svc.<cluster domain>`. The port is the URL's, else 80 (443 for
/// `https`).
///
/// # Errors
/// Not an `http(s)://` URL, a host that is no in-cluster Service name (an IP, an outside name),
/// or a bare `svc`: Flagger calls webhooks from its own pod, so DNS resolves a bare name in
/// Flagger's namespace, which is not knowable on every cluster; guessing would open a gate on
/// a Service Flagger never asks.
pub fn service_of(url: &str) -> Result<ServiceRef, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("`{url}` has no valid port"))?;
            (h, port)
        }
        None => (authority, if https { 443 } else { 80 }),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let dns_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let not_a_service = || {
        format!(
            "the host `{host}` of `{url}` is not a Service of the cluster \
             (svc, svc.namespace, svc.namespace.svc[.cluster.local])"
        )
    };
    if !labels.iter().all(|l| dns_label(l))
        || !labels[0].starts_with(|c: char| c.is_ascii_lowercase())
    {
        return Err(not_a_service());
    }
    let (name, ns) = match labels.as_slice() {
        [svc] => {
            return Err(format!(
                "the host `{svc}` of `{url}` names no namespace: Flagger resolves it in its own \
                 namespace (flagger-system on kind), not the Canary's; write it as \
                 {svc}.<namespace>"
            ));
        }
        [svc, ns] => (*svc, *ns),
        [svc, ns, "svc", ..] => (*svc, *ns),
        _ => return Err(not_a_service()),
    };
    Ok(ServiceRef {
        namespace: ns.to_string(),
        name: name.to_string(),
        port,
        https,
    })
}

/// The request that works `gate` for `canary` (the Canary as applied, in `namespace`): through
/// the first webhook of one of [`Gate::hook_types`], whose URL must be one of the loadtester's
/// gate endpoints of that family (`/gate/check`, `/rollback/check`, ...).
///
/// # Errors
/// The Canary has no such webhook (the text names the types looked for), or its URL is not a
/// loadtester gate in the cluster.
pub fn gate_call(canary: &Value, namespace: &str, gate: Gate) -> Result<GateCall, String> {
    let name = canary
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let hooks = canary
        .pointer("/spec/analysis/webhooks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let types = gate.hook_types();
    let hook = types.iter().find_map(|t| {
        hooks
            .iter()
            .find(|h| h.get("type").and_then(Value::as_str) == Some(t))
    });
    let Some(hook) = hook else {
        let wanted = match types {
            [one] => format!("a `{one}` webhook"),
            [first, rest @ ..] => format!(
                "a `{first}` webhook (nor {})",
                rest.iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            [] => unreachable!("every gate has a hook type"),
        };
        return Err(format!(
            "`{gate}` needs {wanted} on the Canary {name}, pointed at the Flagger loadtester's \
             `{}check`; spec.analysis.webhooks has none",
            gate.family()
        ));
    };
    let hook_name = hook
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let hook_type = hook.get("type").and_then(Value::as_str).unwrap_or_default();
    let url = hook.get("url").and_then(Value::as_str).unwrap_or_default();
    let path = url
        .split_once("://")
        .map(|(_, r)| r.find('/').map_or("/", |i| &r[i..]))
        .unwrap_or_default();
    if !path.starts_with(gate.family()) {
        return Err(format!(
            "`{gate}` works the Flagger loadtester's `{}` endpoints, but the Canary {name}'s \
             {hook_type} webhook `{hook_name}` calls `{url}`",
            gate.family()
        ));
    }
    let service = service_of(url)
        .map_err(|e| format!("the {hook_type} webhook `{hook_name}` of the Canary {name}: {e}"))?;
    Ok(GateCall {
        gate,
        hook: hook_name,
        path: service.proxy_path(gate.path()),
        service,
        body: json!({"name": name, "namespace": namespace}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str, port: u16) -> ServiceRef {
        ServiceRef {
            namespace: ns.into(),
            name: name.into(),
            port,
            https: false,
        }
    }

    #[test]
    fn hosts_resolve_as_cluster_dns_does() {
        let s = service_of;
        assert_eq!(
            s("http://flagger-loadtester.default/gate/check"),
            Ok(svc("default", "flagger-loadtester", 80))
        );
        let bare = s("http://flagger-loadtester/gate/check").unwrap_err();
        assert!(
            bare.contains("names no namespace") && bare.contains("flagger-loadtester.<namespace>"),
            "{bare}"
        );
        assert_eq!(
            s("http://flagger-loadtester.test.svc:8080/"),
            Ok(svc("test", "flagger-loadtester", 8080))
        );
        assert_eq!(
            s("http://Flagger-Loadtester.test.svc.cluster.local./rollback/check"),
            Ok(svc("test", "flagger-loadtester", 80))
        );
        assert_eq!(
            s("http://lt.test.svc.corp.example:9000"),
            Ok(svc("test", "lt", 9000))
        );
        let https = s("https://gate.ops").unwrap();
        assert_eq!((https.port, https.https), (443, true));
        assert_eq!(
            https.proxy_path("/gate/open"),
            "/api/v1/namespaces/ops/services/https:gate:443/proxy/gate/open"
        );
    }

    #[test]
    fn what_is_no_service_is_refused() {
        for bad in [
            "flagger-loadtester.default/gate/check",
            "ftp://lt.default/",
            "http://10.0.0.7/gate/check",
            "http://gate.example.com/gate/check",
            "http://lt.default:http/",
            "http://lt.default:0/",
            "http:///gate/check",
        ] {
            assert!(service_of(bad).is_err(), "{bad}");
        }
        let e = service_of("http://gate.example.com/gate/check").unwrap_err();
        assert!(e.contains("gate.example.com"), "{e}");
    }

    fn canary(hooks: Value) -> Value {
        json!({"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
               "metadata": {"name": "sample-app", "namespace": "gauntlet-x-000001"},
               "spec": {"analysis": {"interval": "1m", "webhooks": hooks}}})
    }

    #[test]
    fn each_gate_goes_through_its_hook() {
        let c = canary(json!([
            {"name": "load-test", "type": "rollout", "url": "http://flagger-loadtester.default/"},
            {"name": "approve", "type": "confirm-promotion", "url": "http://flagger-loadtester.default/gate/check"},
            {"name": "undo", "type": "rollback", "url": "http://rollbacks.ops:8080/rollback/check"},
        ]));
        let open = gate_call(&c, "gauntlet-x-000001", Gate::Open).unwrap();
        assert_eq!(open.hook, "approve");
        assert_eq!(
            open.path,
            "/api/v1/namespaces/default/services/flagger-loadtester:80/proxy/gate/open"
        );
        assert_eq!(
            open.body,
            json!({"name": "sample-app", "namespace": "gauntlet-x-000001"})
        );
        assert_eq!(
            gate_call(&c, "gauntlet-x-000001", Gate::Close)
                .unwrap()
                .path,
            "/api/v1/namespaces/default/services/flagger-loadtester:80/proxy/gate/close"
        );
        assert_eq!(
            gate_call(&c, "gauntlet-x-000001", Gate::Rollback)
                .unwrap()
                .path,
            "/api/v1/namespaces/ops/services/rollbacks:8080/proxy/rollback/open"
        );
    }

    #[test]
    fn another_confirm_hook_holds_the_gate_too() {
        let c = canary(json!([
            {"name": "approve-start", "type": "confirm-rollout", "url": "http://lt.ops/gate/check"},
        ]));
        let call = gate_call(&c, "ns1", Gate::Open).unwrap();
        assert_eq!(call.hook, "approve-start");
        assert_eq!(call.service, svc("ops", "lt", 80));
    }

    #[test]
    fn a_missing_or_foreign_hook_is_a_clear_error() {
        let c = canary(json!([
            {"name": "load-test", "type": "rollout", "url": "http://flagger-loadtester.default/"},
        ]));
        let e = gate_call(&c, "ns", Gate::Rollback).unwrap_err();
        assert!(e.contains("`rollback` webhook"), "{e}");
        assert!(e.contains("sample-app"), "{e}");
        let e = gate_call(&c, "ns", Gate::Open).unwrap_err();
        assert!(e.contains("`confirm-promotion` webhook"), "{e}");
        let e = gate_call(&canary(Value::Null), "ns", Gate::Open).unwrap_err();
        assert!(e.contains("confirm-promotion"), "{e}");

        let custom = canary(json!([
            {"name": "approve", "type": "confirm-promotion", "url": "http://approvals.ops/approve"},
        ]));
        let e = gate_call(&custom, "ns", Gate::Open).unwrap_err();
        assert!(e.contains("http://approvals.ops/approve"), "{e}");
        let outside = canary(json!([
            {"name": "undo", "type": "rollback", "url": "https://gates.example.com/rollback/check"},
        ]));
        let e = gate_call(&outside, "ns", Gate::Rollback).unwrap_err();
        assert!(e.contains("`undo`") && e.contains("not a Service"), "{e}");
    }
}
