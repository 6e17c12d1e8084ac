//! Where an object of a given `apiVersion`/`kind` lives in the API (its plural and scope), and
//! server-side apply of arbitrary objects. Common kinds (Kubernetes', Argo Rollouts', Flagger's)
//! come from a table, so applying a target costs no discovery round trip; any other kind is
//! discovered once per client (`kube::discovery::pinned_kind`).

use std::collections::BTreeMap;

use ::kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use ::kube::{Client, discovery};
use serde_json::Value;

use super::render::{FIELD_MANAGER, is_cluster_scoped, kind_of, name_of};
use crate::cluster::InfraError;

/// `(apiVersion, kind, plural)` of the kinds a target or an install manifest usually holds.
const KNOWN: &[(&str, &str, &str)] = &[
    ("v1", "Namespace", "namespaces"),
    ("v1", "Service", "services"),
    ("v1", "ConfigMap", "configmaps"),
    ("v1", "Secret", "secrets"),
    ("v1", "ServiceAccount", "serviceaccounts"),
    ("v1", "Pod", "pods"),
    ("v1", "Endpoints", "endpoints"),
    ("discovery.k8s.io/v1", "EndpointSlice", "endpointslices"),
    ("v1", "Event", "events"),
    ("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("apps/v1", "Deployment", "deployments"),
    ("apps/v1", "StatefulSet", "statefulsets"),
    ("apps/v1", "DaemonSet", "daemonsets"),
    ("apps/v1", "ReplicaSet", "replicasets"),
    ("batch/v1", "Job", "jobs"),
    ("networking.k8s.io/v1", "Ingress", "ingresses"),
    ("networking.k8s.io/v1", "IngressClass", "ingressclasses"),
    ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    ("rbac.authorization.k8s.io/v1", "Role", "roles"),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "clusterroles",
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
    ),
    (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
    ),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
    ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ("argoproj.io/v1alpha1", "Rollout", "rollouts"),
    (
        "argoproj.io/v1alpha1",
        "AnalysisTemplate",
        "analysistemplates",
    ),
    (
        "argoproj.io/v1alpha1",
        "ClusterAnalysisTemplate",
        "clusteranalysistemplates",
    ),
    ("argoproj.io/v1alpha1", "AnalysisRun", "analysisruns"),
    ("argoproj.io/v1alpha1", "Experiment", "experiments"),
    ("flagger.app/v1beta1", "Canary", "canaries"),
    ("flagger.app/v1beta1", "MetricTemplate", "metrictemplates"),
    ("flagger.app/v1beta1", "AlertProvider", "alertproviders"),
];

/// The `ApiResource` of a known kind, without asking the server.
pub fn known(api_version: &str, kind: &str) -> Option<ApiResource> {
    KNOWN
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(v, k, plural)| ApiResource::from_gvk_with_plural(&gvk(v, k), plural))
}

fn gvk(api_version: &str, kind: &str) -> GroupVersionKind {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

/// Resolves kinds to API paths, asking the server (once) only for kinds not in the table.
#[derive(Clone)]
pub struct Resolver {
    client: Client,
    discovered: BTreeMap<(String, String), (ApiResource, bool)>,
}

impl Resolver {
    pub fn new(client: Client) -> Resolver {
        Resolver {
            client,
            discovered: BTreeMap::new(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `(ApiResource, namespaced)` of a kind.
    ///
    /// # Errors
    /// The API server does not serve the kind: the controller's CRDs are not installed.
    pub async fn resolve(
        &mut self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, bool), InfraError> {
        if let Some(ar) = known(api_version, kind) {
            return Ok((ar, !is_cluster_scoped(kind)));
        }
        let key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self.discovered.get(&key) {
            return Ok(found.clone());
        }
        let (ar, caps) = discovery::pinned_kind(&self.client, &gvk(api_version, kind))
            .await
            .map_err(|e| {
                InfraError::Other(format!(
                    "the cluster does not serve {kind} ({api_version}): {e}; is the CRD installed?"
                ))
            })?;
        let namespaced = caps.scope == discovery::Scope::Namespaced;
        self.discovered.insert(key, (ar.clone(), namespaced));
        Ok((ar, namespaced))
    }

    /// The API of one object's kind, in `namespace` when the kind is namespaced.
    pub async fn api_for(
        &mut self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>, InfraError> {
        let (ar, namespaced) = self.resolve(api_version, kind).await?;
        Ok(match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &ar),
            (true, None) => Api::default_namespaced_with(self.client.clone(), &ar),
            (false, _) => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// Server-side apply of one object (field manager `gauntlet`, `force`), as
    /// `kubectl apply --server-side --force-conflicts` does; returns the object the server
    /// answered with.
    ///
    /// # Errors
    /// The kind is not served, or the server refused the object, with the object named.
    pub async fn apply(&mut self, o: &Value) -> Result<Value, InfraError> {
        let api_version = o
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = kind_of(o);
        let name = name_of(o);
        let ns = o.pointer("/metadata/namespace").and_then(Value::as_str);
        let api = self.api_for(api_version, kind, ns).await?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let answer = api
            .patch(name, &params, &Patch::Apply(o))
            .await
            .map_err(|e| match &e {
                ::kube::Error::Api(s) if s.code == 404 => InfraError::Other(format!(
                    "server-side apply of {kind}/{name}: {e}; is the controller that serves \
                     {api_version} installed (gauntlet up --backend kind installs Argo Rollouts \
                     and Flagger)?"
                )),
                _ => InfraError::Other(format!("server-side apply of {kind}/{name}: {e}")),
            })?;
        serde_json::to_value(answer).map_err(|e| InfraError::Other(e.to_string()))
    }
}
