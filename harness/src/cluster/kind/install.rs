//! Installing a component into the kind cluster: the verified manifest text is split into
//! objects, placed in the component's namespace, adjusted where gauntlet needs it (pure,
//! golden-tested functions), applied server-side, and waited for by watching (CRDs
//! `Established`, Jobs finished, the Secrets a component's controller mounts, Deployments
//! available), each wait with a deadline.

use std::time::Duration;

use ::kube::Api;
use ::kube::runtime::wait::{Condition, await_condition, conditions};
use ::kube::runtime::watcher::watch_object;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use crate::cluster::InfraError;
use crate::cluster::kube::render::{MANAGED_BY, is_cluster_scoped, kind_of, name_of};
use crate::cluster::kube::resources::Resolver;

/// Flagger's image and arguments in our overlay of its kustomize base.
pub const FLAGGER_IMAGE: &str = "ghcr.io/fluxcd/flagger:1.44.0";
pub const FLAGGER_ARGS: &[&str] = &[
    "-log-level=info",
    "-mesh-provider=nginx",
    "-metrics-server=http://prometheus.monitoring:9090",
    "-include-label-prefix=app.kubernetes.io",
];

/// The loadtester's image (Flagger v1.44.0's release of it).
pub const LOADTESTER_IMAGE: &str = "ghcr.io/fluxcd/flagger-loadtester:0.38.0";

/// The objects of a (multi-document) manifest; empty documents dropped.
///
/// # Errors
/// YAML that does not parse.
pub fn parse_docs(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    Ok(docs
        .into_iter()
        .filter(|d| d.get("kind").is_some())
        .collect())
}

/// Puts namespaced objects without a namespace into `namespace` (as `kubectl apply -n` does),
/// and marks every object as installed by gauntlet.
pub fn place(docs: &mut [Value], namespace: &str) {
    for d in docs {
        let kind = kind_of(d).to_string();
        let Some(Value::Object(meta)) = d.get_mut("metadata") else {
            continue;
        };
        if !is_cluster_scoped(&kind) && !meta.contains_key("namespace") {
            meta.insert("namespace".into(), Value::String(namespace.to_string()));
        }
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Value::Object(l) = labels {
            l.entry(MANAGED_BY.0)
                .or_insert_with(|| Value::String(MANAGED_BY.1.into()));
        }
    }
}

/// CRDs and Namespaces first (what the rest needs), then the rest in file order.
pub fn apply_order(docs: &mut [Value]) {
    docs.sort_by_key(|d| match kind_of(d) {
        "CustomResourceDefinition" => 0,
        "Namespace" => 1,
        _ => 2,
    });
}

fn containers_of<'a>(
    docs: &'a mut [Value],
    deployment: &'a str,
) -> impl Iterator<Item = &'a mut Value> + 'a {
    docs.iter_mut()
        .filter(move |d| kind_of(d) == "Deployment" && name_of(d) == deployment)
        .filter_map(|d| d.pointer_mut("/spec/template/spec/containers"))
        .filter_map(Value::as_array_mut)
        .flatten()
}

/// ingress-nginx's kind manifest with metrics on: the controller gets `--enable-metrics=true`
/// (the static manifests are rendered with metrics disabled) and its metrics port 10254, which
/// our Prometheus scrapes (job `ingress-nginx`).
pub fn ingress_nginx_with_metrics(docs: &mut [Value]) {
    for c in containers_of(docs, "ingress-nginx-controller") {
        if let Some(Value::Array(args)) = c.get_mut("args") {
            args.retain(|a| {
                a.as_str()
                    .is_none_or(|s| !s.starts_with("--enable-metrics"))
            });
            args.push(json!("--enable-metrics=true"));
        }
        let ports = c
            .as_object_mut()
            .map(|c| c.entry("ports").or_insert_with(|| json!([])));
        if let Some(Value::Array(ports)) = ports
            && !ports
                .iter()
                .any(|p| p.get("containerPort").and_then(Value::as_u64) == Some(10254))
        {
            ports.push(json!({"name": "metrics", "containerPort": 10254, "protocol": "TCP"}));
        }
    }
}

/// Flagger's kustomize base with the overlay `kustomize build` would apply for us: namespace
/// (also in the ClusterRoleBinding's subjects), the `app: flagger` common label, the pinned
/// image, and the nginx provider with our Prometheus.
pub fn flagger_overlay(docs: &mut [Value], namespace: &str) {
    place(docs, namespace);
    for d in docs.iter_mut() {
        if let Some(Value::Object(labels)) = d.pointer_mut("/metadata/labels") {
            labels.insert("app".into(), json!("flagger"));
        }
        if kind_of(d) == "ClusterRoleBinding"
            && let Some(Value::Array(subjects)) = d.pointer_mut("/subjects")
        {
            for s in subjects {
                if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                    && let Value::Object(s) = s
                {
                    s.insert("namespace".into(), json!(namespace));
                }
            }
        }
    }
    for c in containers_of(docs, "flagger") {
        if c.get("name").and_then(Value::as_str) != Some("flagger") {
            continue;
        }
        if let Value::Object(c) = c {
            c.insert("image".into(), json!(FLAGGER_IMAGE));
            c.insert("args".into(), json!(FLAGGER_ARGS));
        }
    }
}

/// Flagger's `kustomize/tester` in `namespace` with the pinned loadtester image (the
/// kustomization's `images:` override, done here).
pub fn loadtester_overlay(docs: &mut [Value], namespace: &str) {
    place(docs, namespace);
    for c in containers_of(docs, "flagger-loadtester") {
        if let Value::Object(c) = c {
            c.insert("image".into(), json!(LOADTESTER_IMAGE));
        }
    }
}

/// The Secrets `component`'s controller needs and that something in `docs` makes at install
/// time, as `(namespace, name)`: ingress-nginx's admission webhook certificate, which its
/// `ingress-nginx-admission-create` Job writes and the controller's pod mounts. Waiting for it
/// names the real problem (the Job did not do its work) instead of a Deployment that never
/// becomes available.
pub fn secrets_needed(component: &str, docs: &[Value]) -> Vec<(String, String)> {
    if component != "ingress-nginx" {
        return Vec::new();
    }
    docs.iter()
        .filter(|d| kind_of(d) == "Deployment" && name_of(d) == "ingress-nginx-controller")
        .filter_map(|d| d.pointer("/metadata/namespace").and_then(Value::as_str))
        .map(|ns| (ns.to_string(), INGRESS_NGINX_ADMISSION_SECRET.to_string()))
        .collect()
}

/// The Secret ingress-nginx's admission Jobs create (its webhook's serving certificate).
pub const INGRESS_NGINX_ADMISSION_SECRET: &str = "ingress-nginx-admission";

/// Applies `docs` (in [`apply_order`]) and waits until they are ready: CRDs established, then
/// every Job finished, the Secrets of [`secrets_needed`] present, and every Deployment
/// available, each within `within`.
///
/// A Job that is gone when (or while) it is waited for counts as finished: only the TTL
/// controller deletes it that soon, after it finished (`ttlSecondsAfterFinished: 0`, as
/// ingress-nginx's admission Jobs have). Whether it did its work is what the waits after it
/// check (the Secret it writes, the Deployment that mounts it).
///
/// # Errors
/// A refused apply, a Job that failed, or something not ready in time, named with what it
/// waited for.
pub async fn apply_and_wait(
    resolver: &mut Resolver,
    component: &str,
    mut docs: Vec<Value>,
    within: Duration,
) -> Result<(), InfraError> {
    apply_order(&mut docs);
    let crds: Vec<Value> = docs
        .iter()
        .filter(|d| kind_of(d) == "CustomResourceDefinition")
        .cloned()
        .collect();
    for d in &crds {
        resolver.apply(d).await?;
    }
    let client = resolver.client().clone();
    for d in &crds {
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        wait(
            api,
            name_of(d),
            conditions::is_crd_established(),
            within,
            &format!("{component}: CRD {} established", name_of(d)),
        )
        .await?;
    }
    // The uid of each Job as applied: a Job of that name with another uid is not ours.
    let mut job_uids = std::collections::BTreeMap::new();
    for d in docs
        .iter()
        .filter(|d| kind_of(d) != "CustomResourceDefinition")
    {
        let answer = resolver.apply(d).await?;
        if kind_of(d) == "Job"
            && let Some(uid) = answer.pointer("/metadata/uid").and_then(Value::as_str)
        {
            job_uids.insert(name_of(d).to_string(), uid.to_string());
        }
    }
    let ns_of = |d: &Value| {
        d.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string()
    };
    for d in docs.iter().filter(|d| kind_of(d) == "Job") {
        let ns = ns_of(d);
        let api: Api<Job> = Api::namespaced(client.clone(), &ns);
        wait_job(
            api,
            name_of(d),
            job_uids.get(name_of(d)).map(String::as_str),
            within,
            &format!("{component}: Job {ns}/{} finished", name_of(d)),
        )
        .await?;
    }
    for (ns, name) in secrets_needed(component, &docs) {
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let exists = |s: Option<&Secret>| s.is_some();
        wait(
            api,
            &name,
            exists,
            within,
            &format!("{component}: Secret {ns}/{name} (made by its admission Jobs)"),
        )
        .await?;
    }
    for d in docs.iter().filter(|d| kind_of(d) == "Deployment") {
        let ns = ns_of(d);
        let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        wait(
            api,
            name_of(d),
            conditions::is_deployment_completed(),
            within,
            &format!("{component}: Deployment {ns}/{} available", name_of(d)),
        )
        .await?;
    }
    Ok(())
}

/// How a Job stands: `Some(Ok)` complete, `Some(Err(why))` failed, `None` still running.
pub fn job_outcome(job: &Job) -> Option<Result<(), String>> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    let is = |kind: &str| conds.iter().find(|c| c.type_ == kind && c.status == "True");
    if is("Complete").is_some() {
        return Some(Ok(()));
    }
    is("Failed").map(|c| {
        Err(format!(
            "{}: {}",
            c.reason.as_deref().unwrap_or("Failed"),
            c.message.as_deref().unwrap_or("")
        ))
    })
}

/// Waits for Job `name` (applied with `uid`, when known) to finish, or to be gone: see
/// [`apply_and_wait`].
///
/// # Errors
/// The Job failed, or did neither within `within`.
pub async fn wait_job(
    api: Api<Job>,
    name: &str,
    uid: Option<&str>,
    within: Duration,
    what: &str,
) -> Result<(), InfraError> {
    let watch = async {
        let mut stream = std::pin::pin!(watch_object(api, name));
        while let Some(event) = stream.next().await {
            match event {
                // Gone: deleted after it finished (by its TTL).
                Ok(None) => return Ok(()),
                // Replaced by a Job of the same name: ours is gone as well.
                Ok(Some(j)) if uid.is_some() && j.metadata.uid.as_deref() != uid => {
                    return Ok(());
                }
                Ok(Some(j)) => match job_outcome(&j) {
                    Some(Ok(())) => return Ok(()),
                    Some(Err(why)) => {
                        return Err(InfraError::NotReady {
                            what: what.to_string(),
                            within,
                            detail: format!(
                                "the Job failed ({why}); look at its pods' logs                                  (`kubectl logs -n {} job/{name}`)",
                                j.metadata.namespace.as_deref().unwrap_or("default")
                            ),
                        });
                    }
                    None => {}
                },
                Err(e) => {
                    return Err(InfraError::NotReady {
                        what: what.to_string(),
                        within,
                        detail: format!("the watch failed: {e}"),
                    });
                }
            }
        }
        Err(InfraError::NotReady {
            what: what.to_string(),
            within,
            detail: "the watch ended".into(),
        })
    };
    match tokio::time::timeout(within, watch).await {
        Ok(r) => r,
        Err(_) => Err(InfraError::NotReady {
            what: what.to_string(),
            within,
            detail: "still not finished; look at `kubectl get jobs,pods -A` and the pods' events"
                .into(),
        }),
    }
}

async fn wait<K>(
    api: Api<K>,
    name: &str,
    cond: impl Condition<K>,
    within: Duration,
    what: &str,
) -> Result<(), InfraError>
where
    K: ::kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    match tokio::time::timeout(within, await_condition(api, name, cond)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(InfraError::NotReady {
            what: what.to_string(),
            within,
            detail: format!("the watch failed: {e}"),
        }),
        Err(_) => Err(InfraError::NotReady {
            what: what.to_string(),
            within,
            detail: "still not ready; look at `kubectl get pods -A` and the pods' events".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_nginx_needs_its_admission_secret_where_its_controller_runs() {
        let mut docs = parse_docs(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ingress-nginx-controller}\n---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: ingress-nginx-admission-create}\n",
        )
        .unwrap();
        place(&mut docs, "ingress-nginx");
        assert_eq!(
            secrets_needed("ingress-nginx", &docs),
            vec![(
                "ingress-nginx".to_string(),
                "ingress-nginx-admission".to_string()
            )]
        );
        assert!(secrets_needed("argo-rollouts", &docs).is_empty());
    }

    #[test]
    fn a_jobs_outcome_reads_its_conditions() {
        let job = |conds: Value| -> Job {
            serde_json::from_value(
                json!({"metadata": {"name": "j"}, "status": {"conditions": conds}}),
            )
            .unwrap()
        };
        assert_eq!(job_outcome(&job(json!([]))), None);
        assert_eq!(
            job_outcome(&job(
                json!([{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}])
            )),
            Some(Ok(()))
        );
        let failed = job_outcome(&job(
            json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]),
        ));
        assert!(
            matches!(&failed, Some(Err(w)) if w.contains("BackoffLimitExceeded")),
            "{failed:?}"
        );
    }

    #[test]
    fn the_loadtester_gets_its_namespace_and_pinned_image() {
        let mut docs = parse_docs(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: flagger-loadtester}\nspec:\n  template:\n    spec:\n      containers: [{name: loadtester, image: ghcr.io/fluxcd/flagger-loadtester:0.29.0}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: flagger-loadtester}\n",
        )
        .unwrap();
        loadtester_overlay(&mut docs, "default");
        assert_eq!(docs[0]["metadata"]["namespace"], "default");
        assert_eq!(docs[1]["metadata"]["namespace"], "default");
        assert_eq!(
            docs[0].pointer("/spec/template/spec/containers/0/image"),
            Some(&json!(LOADTESTER_IMAGE))
        );
    }
}
