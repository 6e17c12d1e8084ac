//! What a run on an existing cluster needs and gauntlet does not install there, checked before
//! anything starts. A shared staging cluster belongs to others: gauntlet creates only its
//! scenarios' namespaces, so a missing controller, CRD or Prometheus is reported, with what to
//! install, instead of being installed cluster-wide.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};
use serde_json::Value;

use super::render::{RenderOptions, prepare};
use crate::cluster::local::real::controllers::identity_of;
use crate::cluster::local::real::publish::{addresses, service_of};
use crate::spec::{ControllerKind, Manifests};

/// The repository of the sample app's image as the fixtures name it. No registry serves it:
/// `gauntlet up --backend kind` loads it into the kind node, and the local control plane's
/// node runs it as a process; any other cluster needs a copy it can pull (`--image`).
pub const SAMPLE_APP_REPOSITORY: &str = "gauntlet/sample-app";

/// The image of a target's workload (its first container), as written.
pub fn workload_image(m: &Manifests) -> Option<String> {
    let prepared = prepare(m, &RenderOptions::default()).ok()?;
    prepared
        .template_owner()
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Whether `image` names the sample app under the name only gauntlet's own clusters have.
pub fn is_unpublished_sample_app(image: &str) -> bool {
    image
        .split_once(':')
        .map_or(image, |(repo, _)| repo)
        .eq(SAMPLE_APP_REPOSITORY)
}

/// The CRD each controller's objects need.
fn crd_of(kind: ControllerKind) -> (&'static str, &'static str) {
    match kind {
        ControllerKind::Argo => (
            "rollouts.argoproj.io",
            "install Argo Rollouts v1.9.1 (its install.yaml, into namespace argo-rollouts)",
        ),
        ControllerKind::Flagger => (
            "canaries.flagger.app",
            "install Flagger v1.44.0 with the nginx provider (its kustomize/nginx, or the Helm \
             chart with meshProvider=nginx)",
        ),
    }
}

/// What the cluster lacks for `targets`, one line each with what to install; empty when
/// nothing is missing. Checks each controller's CRD, and each Service that an analysis
/// queries or a Canary's webhook calls (as the controller resolves it from its namespace).
///
/// # Errors
/// The API server refused to answer (not a missing object): the message is the server's.
pub async fn missing(client: &Client, targets: &[Manifests]) -> Result<Vec<String>, kube::Error> {
    let mut out = Vec::new();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut kinds = Vec::new();
    for m in targets {
        if let Ok(k) = m.controller()
            && !kinds.contains(&k)
        {
            kinds.push(k);
        }
    }
    for k in &kinds {
        let (crd, how) = crd_of(*k);
        if crds.get_opt(crd).await?.is_none() {
            out.push(format!("the CustomResourceDefinition {crd}: {how}"));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for m in targets {
        let Ok(kind) = m.controller() else { continue };
        let controller_ns = identity_of(kind).0;
        let a = addresses(m);
        let wanted = a
            .prometheus
            .iter()
            .map(|u| (u, "Prometheus, which the analysis queries"))
            .chain(
                a.webhooks
                    .iter()
                    .map(|u| (u, "the webhook's service (Flagger's loadtester)")),
            );
        for (url, what) in wanted {
            let Some((name, ns, _)) = service_of(url, controller_ns) else {
                continue;
            };
            if !seen.insert((ns.clone(), name.clone())) {
                continue;
            }
            let services: Api<Service> = Api::namespaced(client.clone(), &ns);
            if services.get_opt(&name).await?.is_none() {
                out.push(format!(
                    "the Service {ns}/{name} ({url}): {what}; deploy it there, or point the \
                     target at the cluster's own"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_unpublished_name_of_the_sample_app_needs_an_image() {
        assert!(is_unpublished_sample_app("gauntlet/sample-app:latest"));
        assert!(is_unpublished_sample_app("gauntlet/sample-app"));
        assert!(!is_unpublished_sample_app(
            "registry.example.com/gauntlet/sample-app:1.0"
        ));
        assert!(!is_unpublished_sample_app(
            "ghcr.io/stefanprodan/podinfo:6.7.1"
        ));
    }
}
