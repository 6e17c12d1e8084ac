//! What gauntlet sends to a cluster, as pure functions of the target's manifests: the scenario's
//! namespace, every object of the target moved into it (server-side apply bodies, in apply
//! order), and the workload with a release's pod template. Golden-tested in
//! `tests/kube_api.rs`; nothing here talks to a cluster.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::spec::{ControllerKind, Manifests, Origin};

/// The field manager of every server-side apply and patch gauntlet sends.
pub const FIELD_MANAGER: &str = "gauntlet";
/// The label every object gauntlet applies carries, so leftovers can be found.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "gauntlet");
/// The annotation on a scenario's namespace naming the scenario (names may be longer than a
/// label value allows).
pub const SCENARIO_ANNOTATION: &str = "gauntlet.dev/scenario";

/// Kinds that are cluster-scoped: everything else a target holds is moved into the scenario's
/// namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterAnalysisTemplate",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "PriorityClass",
    "StorageClass",
    "PersistentVolume",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "APIService",
    "RuntimeClass",
];

/// Whether objects of `kind` live outside namespaces.
pub fn is_cluster_scoped(kind: &str) -> bool {
    CLUSTER_SCOPED.contains(&kind)
}

/// How every scenario namespace's name begins.
pub const SCENARIO_PREFIX: &str = "gauntlet-";

/// A DNS-1123 label (≤ 63 characters) for one run of a scenario: `gauntlet-<name>-<salt>`. The
/// salt (e.g. the seed, or the time) keeps a rerun clear of a namespace still terminating.
pub fn scenario_namespace(scenario: &str, salt: u64) -> String {
    let mut name = String::new();
    for c in scenario.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let suffix = format!("{:06x}", salt & 0xff_ffff);
    // "gauntlet-" + name + "-" + 6 hex digits <= 63.
    let room = 63 - "gauntlet-".len() - 1 - suffix.len();
    let name: String = name.chars().take(room).collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        format!("gauntlet-{suffix}")
    } else {
        format!("gauntlet-{name}-{suffix}")
    }
}

/// The host the scenario's Ingress rules answer to. Rules without a host get it, so that
/// scenarios running side by side do not define the same host and path twice (ingress-nginx's
/// admission webhook refuses that); the load generator must send it as `Host:`.
pub fn ingress_host(namespace: &str) -> String {
    format!("{namespace}.gauntlet.test")
}

/// The scenario's namespace object.
pub fn namespace_manifest(namespace: &str, scenario: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": { MANAGED_BY.0: MANAGED_BY.1 },
            "annotations": { SCENARIO_ANNOTATION: scenario },
        },
    })
}

/// How the target is placed in the cluster.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    pub namespace: String,
    /// Set on Ingress rules that have no host (see [`ingress_host`]).
    pub ingress_host: Option<String>,
    /// Replaces the image of the workload's first container (e.g. a registry copy of the
    /// sample app for an existing cluster); `None` keeps the manifest's.
    pub image: Option<String>,
}

/// Which object the controller runs, and which object a release patches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub controller: ControllerKind,
    /// The Rollout (Argo) or the Canary (Flagger): what gauntlet watches.
    pub watched: ObjectRef,
    /// The object holding the pod template: the Rollout itself, or the Canary's target
    /// Deployment.
    pub template_owner: ObjectRef,
}

/// `apiVersion`, `kind` and `name` of an object in the scenario's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

/// The target, ready to apply into one namespace.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub workload: Workload,
    /// Every object, in apply order (templates and Services before the workloads that use
    /// them, the Rollout or Canary last), moved into the namespace and stripped of what the
    /// server owns.
    pub objects: Vec<Value>,
    /// Index of [`Workload::template_owner`] in `objects`.
    owner: usize,
}

impl Prepared {
    /// The object a release patches (as prepared, without release env).
    pub fn template_owner(&self) -> &Value {
        &self.objects[self.owner]
    }

    /// Every object for the baseline: the template owner carries `env` (the baseline's version).
    pub fn baseline(&self, env: &[(String, String)]) -> Vec<Value> {
        let mut objects = self.objects.clone();
        set_env(&mut objects[self.owner], env);
        objects
    }

    /// The request of a release (see [`Release`]): `env` on the first container of the pod
    /// template (same-named variables replaced, new ones appended).
    pub fn release(&self, env: &[(String, String)]) -> Release {
        let owner = &self.objects[self.owner];
        match self.workload.controller {
            ControllerKind::Argo => {
                let mut owner = owner.clone();
                set_env(&mut owner, env);
                Release::Apply(owner)
            }
            ControllerKind::Flagger => {
                let container = owner
                    .pointer("/spec/template/spec/containers/0/name")
                    .cloned()
                    .unwrap_or(Value::Null);
                let vars: Vec<Value> = env
                    .iter()
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .collect();
                Release::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                    {"name": container, "env": vars}
                ]}}}}))
            }
        }
    }
}

/// How a release reaches the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Release {
    /// Argo: the whole Rollout applied server-side again with the new template (CRDs take no
    /// strategic merge patch; Argo writes nothing of the Rollout's spec we apply).
    Apply(Value),
    /// Flagger: a strategic merge patch of the target Deployment's pod template (containers and
    /// env merge by name), as `kubectl set env` does, so the replica count Flagger manages
    /// (it scales the target to 0 between releases) is left alone.
    Strategic(Value),
}

impl Release {
    /// The body sent.
    pub fn body(&self) -> &Value {
        match self {
            Release::Apply(v) | Release::Strategic(v) => v,
        }
    }
}

/// Moves the target's manifests into `opts.namespace` and finds the workload.
///
/// # Errors
/// A target the kube backend cannot run (no Rollout or Canary, a Canary without its
/// Deployment, a Rollout with `workloadRef`), with the reason.
pub fn prepare(manifests: &Manifests, opts: &RenderOptions) -> Result<Prepared, String> {
    let controller = manifests.controller()?;
    let mut docs: Vec<(&Origin, Value)> = Vec::new();
    docs.extend(
        manifests
            .rollouts
            .iter()
            .map(|m| (&m.origin, m.raw.clone())),
    );
    docs.extend(
        manifests
            .analysis_templates
            .iter()
            .map(|m| (&m.origin, m.raw.clone())),
    );
    docs.extend(
        manifests
            .cluster_analysis_templates
            .iter()
            .map(|m| (&m.origin, m.raw.clone())),
    );
    docs.extend(
        manifests
            .services
            .iter()
            .map(|m| (&m.origin, m.raw.clone())),
    );
    docs.extend(
        manifests
            .ingresses
            .iter()
            .map(|m| (&m.origin, m.raw.clone())),
    );
    docs.extend(
        manifests
            .others
            .iter()
            .map(|m| (&m.origin, m.value.clone())),
    );
    // File order first, then by apply rank (stable).
    docs.sort_by(|(a, _), (b, _)| (&a.file, a.document).cmp(&(&b.file, b.document)));
    let mut objects: Vec<Value> = docs.into_iter().map(|(_, v)| v).collect();
    objects.sort_by_key(|o| rank(kind_of(o)));

    let mut original_ns = BTreeMap::new();
    let mut host_given = false;
    for o in &mut objects {
        let kind = kind_of(o).to_string();
        let name = name_of(o).to_string();
        let ns = o
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(crate::spec::DEFAULT_NAMESPACE)
            .to_string();
        original_ns.insert((kind.clone(), name), ns);
        strip_server_fields(o);
        let meta = o
            .as_object_mut()
            .map(|m| m.entry("metadata").or_insert_with(|| json!({})));
        if let Some(Value::Object(meta)) = meta {
            if is_cluster_scoped(&kind) {
                meta.remove("namespace");
            } else {
                meta.insert("namespace".into(), Value::String(opts.namespace.clone()));
            }
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Value::Object(labels) = labels {
                labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
            }
        }
        if kind == "Ingress"
            && let Some(host) = &opts.ingress_host
        {
            host_given |= set_ingress_host(o, host);
        }
    }

    let find = |kind: &str, name: Option<&str>| {
        objects
            .iter()
            .position(|o| kind_of(o) == kind && name.is_none_or(|n| name_of(o) == n))
    };
    let (watched, owner) = match controller {
        ControllerKind::Argo => {
            let i = find("Rollout", None).ok_or("no Rollout in the target")?;
            if objects[i].pointer("/spec/workloadRef").is_some() {
                return Err(format!(
                    "Rollout `{}` uses spec.workloadRef; the kube backend releases by patching \
                     spec.template, so write the template into the Rollout",
                    name_of(&objects[i])
                ));
            }
            (object_ref(&objects[i]), i)
        }
        ControllerKind::Flagger => {
            let c = find("Canary", None).ok_or("no Canary in the target")?;
            let target = objects[c]
                .pointer("/spec/targetRef/name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!(
                        "Canary `{}` has no spec.targetRef.name",
                        name_of(&objects[c])
                    )
                })?
                .to_string();
            let d = find("Deployment", Some(&target)).ok_or_else(|| {
                format!(
                    "Canary `{}` targets Deployment `{target}`, which is not in the target folder",
                    name_of(&objects[c])
                )
            })?;
            // A MetricTemplate referenced in the Canary's own (original) namespace moved with it.
            let canary_ns = original_ns
                .get(&("Canary".to_string(), name_of(&objects[c]).to_string()))
                .cloned()
                .unwrap_or_default();
            if let Some(Value::Array(metrics)) = objects[c].pointer_mut("/spec/analysis/metrics") {
                for m in metrics {
                    if let Some(Value::String(ns)) = m.pointer_mut("/templateRef/namespace")
                        && *ns == canary_ns
                    {
                        *ns = opts.namespace.clone();
                    }
                }
            }
            if host_given && let Some(host) = &opts.ingress_host {
                send_host_in_load_tests(&mut objects[c], host);
            }
            (object_ref(&objects[c]), d)
        }
    };
    if let Some(image) = &opts.image
        && let Some(c) = objects[owner].pointer_mut("/spec/template/spec/containers/0")
        && let Value::Object(c) = c
    {
        c.insert("image".into(), Value::String(image.clone()));
    }
    Ok(Prepared {
        workload: Workload {
            controller,
            template_owner: object_ref(&objects[owner]),
            watched,
        },
        objects,
        owner,
    })
}

/// Apply order: what others reference first, the controller's own object last.
fn rank(kind: &str) -> u8 {
    match kind {
        "Namespace" | "CustomResourceDefinition" => 0,
        "ServiceAccount"
        | "Role"
        | "RoleBinding"
        | "ClusterRole"
        | "ClusterRoleBinding"
        | "ConfigMap"
        | "Secret"
        | "AnalysisTemplate"
        | "ClusterAnalysisTemplate"
        | "MetricTemplate"
        | "AlertProvider" => 1,
        "Service" => 2,
        "Ingress" => 4,
        "Rollout" | "Canary" => 5,
        _ => 3,
    }
}

pub(crate) fn kind_of(o: &Value) -> &str {
    o.get("kind").and_then(Value::as_str).unwrap_or_default()
}

pub(crate) fn name_of(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn object_ref(o: &Value) -> ObjectRef {
    ObjectRef {
        api_version: o
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        kind: kind_of(o).to_string(),
        name: name_of(o).to_string(),
    }
}

/// Drops what the API server owns (a manifest saved with `kubectl get -o yaml` has them), so an
/// apply body holds only intent.
pub fn strip_server_fields(o: &mut Value) {
    let Value::Object(map) = o else { return };
    map.remove("status");
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.remove(k);
        }
        if let Some(Value::Object(ann)) = meta.get_mut("annotations") {
            ann.remove("kubectl.kubernetes.io/last-applied-configuration");
            if ann.is_empty() {
                meta.remove("annotations");
            }
        }
    }
}

/// Gives the Ingress's host-less rules `host`; whether it gave any.
fn set_ingress_host(o: &mut Value, host: &str) -> bool {
    let mut set = false;
    if let Some(Value::Array(rules)) = o.pointer_mut("/spec/rules") {
        for rule in rules {
            if let Value::Object(r) = rule
                && r.get("host")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                r.insert("host".into(), Value::String(host.to_string()));
                set = true;
            }
        }
    }
    set
}

/// A Canary's load-test webhooks were written for a host-less Ingress rule, which answers any
/// `Host:`; once gauntlet gives the rule the scenario's host, a `hey` sent to the ingress
/// controller without one gets ingress-nginx's 404. Each loadtester `cmd` that runs `hey` and
/// sets no host gets `-host <host>`; other commands are left as written.
fn send_host_in_load_tests(canary: &mut Value, host: &str) {
    let Some(Value::Array(hooks)) = canary.pointer_mut("/spec/analysis/webhooks") else {
        return;
    };
    for hook in hooks {
        if let Some(Value::String(cmd)) = hook.pointer_mut("/metadata/cmd")
            && let Some(with_host) = hey_with_host(cmd, host)
        {
            *cmd = with_host;
        }
    }
}

/// `cmd` with `-host <host>` after `hey`, or `None` when it is not a `hey` command or already
/// names a host (`-host`, or a `Host:` header).
fn hey_with_host(cmd: &str, host: &str) -> Option<String> {
    let indent = cmd.len() - cmd.trim_start().len();
    let rest = cmd[indent..].strip_prefix("hey")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let names_host =
        cmd.split_whitespace().any(|w| w == "-host") || cmd.to_ascii_lowercase().contains("host:");
    if names_host {
        return None;
    }
    Some(format!("{}hey -host {host}{rest}", &cmd[..indent]))
}

/// Sets `env` on the first container of `o.spec.template`: a variable of the same name is
/// replaced, a new one appended (the rule of the local backend's `Workload::with_env`).
pub fn set_env(o: &mut Value, env: &[(String, String)]) {
    if env.is_empty() {
        return;
    }
    let Some(Value::Object(c)) = o.pointer_mut("/spec/template/spec/containers/0") else {
        return;
    };
    let vars = c.entry("env").or_insert_with(|| json!([]));
    if !vars.is_array() {
        *vars = json!([]);
    }
    let Value::Array(vars) = vars else { return };
    for (k, v) in env {
        vars.retain(|e| e.get("name").and_then(Value::as_str) != Some(k.as_str()));
        let mut var = Map::new();
        var.insert("name".into(), Value::String(k.clone()));
        var.insert("value".into(), Value::String(v.clone()));
        vars.push(Value::Object(var));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_dns_labels_with_the_salt() {
        assert_eq!(
            scenario_namespace("argo-500s-rolled-back", 0xabc),
            "gauntlet-argo-500s-rolled-back-000abc"
        );
        let long = "A_very.Long name ".repeat(10);
        let ns = scenario_namespace(&long, 1);
        assert!(ns.len() <= 63, "{ns}");
        assert!(
            ns.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert!(!ns.contains("--"), "{ns}");
        assert_eq!(scenario_namespace("___", 2), "gauntlet-000002");
    }

    #[test]
    fn hey_gets_the_host_unless_it_names_one() {
        let h = "ns.gauntlet.test";
        assert_eq!(
            hey_with_host("hey -z 1m -q 10 http://ingress/", h).as_deref(),
            Some("hey -host ns.gauntlet.test -z 1m -q 10 http://ingress/")
        );
        assert_eq!(
            hey_with_host("  hey http://i/", h).as_deref(),
            Some("  hey -host ns.gauntlet.test http://i/")
        );
        assert_eq!(hey_with_host("hey -host app.example http://i/", h), None);
        assert_eq!(
            hey_with_host("hey -H 'Host: app.example' http://i/", h),
            None
        );
        assert_eq!(hey_with_host("curl http://i/", h), None);
        assert_eq!(hey_with_host("heyy http://i/", h), None);
    }

    #[test]
    fn load_tests_get_the_host_only_where_the_canary_has_hooks() {
        let mut canary = json!({"spec": {"analysis": {"webhooks": [
            {"name": "load", "metadata": {"type": "cmd", "cmd": "hey -z 1m http://i/"}},
            {"name": "gate", "url": "http://flagger-loadtester.t/gate/check"},
        ]}}});
        send_host_in_load_tests(&mut canary, "h");
        assert_eq!(
            canary.pointer("/spec/analysis/webhooks/0/metadata/cmd"),
            Some(&json!("hey -host h -z 1m http://i/"))
        );
        assert_eq!(
            canary.pointer("/spec/analysis/webhooks/1"),
            Some(&json!({"name": "gate", "url": "http://flagger-loadtester.t/gate/check"}))
        );
        let mut bare = json!({"spec": {}});
        send_host_in_load_tests(&mut bare, "h");
        assert_eq!(bare, json!({"spec": {}}));
    }

    #[test]
    fn env_replaces_and_appends() {
        let mut o = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "APP_VERSION", "value": "1.0.0"}, {"name": "X", "value": "y"}]}
        ]}}}});
        set_env(
            &mut o,
            &[
                ("APP_VERSION".into(), "2.0.0".into()),
                ("FAULT_ERROR_RATE".into(), "0.3".into()),
            ],
        );
        assert_eq!(
            o.pointer("/spec/template/spec/containers/0/env").unwrap(),
            &json!([{"name": "X", "value": "y"}, {"name": "APP_VERSION", "value": "2.0.0"},
                    {"name": "FAULT_ERROR_RATE", "value": "0.3"}])
        );
    }
}
