//! The real controllers on the local control plane: their CRDs and RBAC read from the pinned Go
//! modules' downloads, and the processes built from the same modules, each with the identity
//! of the ServiceAccount its upstream install binds that RBAC to.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::runtime::wait::{await_condition, conditions};
use serde_json::Value;

use crate::cluster::InfraError;
use crate::cluster::kube::resources::Resolver;
use crate::cluster::local::controlplane::build::ControlPlaneBinaries;
use crate::cluster::local::controlplane::component::{Component, Launch};
use crate::cluster::local::controlplane::{ControlPlane, modules};
use crate::cluster::local::net::ClusterNet;
use crate::cluster::local::process::ProcessRegistry;
use crate::spec::ControllerKind;

/// Prometheus on the node, as the controllers' `prometheus.monitoring` reaches it.
pub const PROMETHEUS_PORT: u16 = 9090;

/// The namespace and ServiceAccount each controller runs as (upstream's install).
pub fn identity_of(kind: ControllerKind) -> (&'static str, &'static str) {
    match kind {
        ControllerKind::Argo => ("argo-rollouts", "argo-rollouts"),
        ControllerKind::Flagger => ("flagger-system", "flagger"),
    }
}

/// What the controllers need to start.
pub struct Env<'a> {
    pub cp: &'a ControlPlane,
    pub bins: &'a ControlPlaneBinaries,
    pub net: &'a ClusterNet,
    pub dir: &'a Path,
    pub registry: &'a ProcessRegistry,
}

/// Applies `kind`'s CRDs and RBAC from its pinned module, waits until the CRDs are served, and
/// starts the controller.
///
/// # Errors
/// The module's manifests could not be read, the API server refused them, or a process did not
/// start.
pub async fn start(kind: ControllerKind, e: &Env<'_>) -> Result<Vec<Component>, InfraError> {
    let read = |what: &str, r: Result<Vec<Value>, modules::ModuleError>| {
        r.map_err(|err| InfraError::Other(format!("{what}: {err}")))
    };
    let folder = modules::default_module_folder();
    let (crds, rbac) = match kind {
        ControllerKind::Argo => (
            read("Argo Rollouts' CRDs", modules::argo_rollouts_crds(&folder))?,
            read("Argo Rollouts' RBAC", modules::argo_rollouts_rbac(&folder))?,
        ),
        ControllerKind::Flagger => (
            read("Flagger's CRDs", modules::flagger_crds(&folder))?,
            read("Flagger's RBAC", modules::flagger_rbac(&folder))?,
        ),
    };
    let (ns, sa) = identity_of(kind);
    let mut resolver = Resolver::new(e.cp.client());
    resolver
        .apply(
            &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    for crd in &crds {
        resolver.apply(crd).await?;
    }
    let api: Api<CustomResourceDefinition> = Api::all(e.cp.client());
    for crd in &crds {
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), name, conditions::is_crd_established()),
        )
        .await
        .map_err(|_| InfraError::NotReady {
            what: format!("CRD {name}"),
            within: Duration::from_secs(30),
            detail: "not Established".into(),
        })?
        .map_err(|err| InfraError::Other(format!("waiting for CRD {name}: {err}")))?;
    }
    for o in &rbac {
        let mut o = o.clone();
        // Namespaced RBAC objects upstream leaves without a namespace go to the controller's.
        let kind_of = o
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if matches!(kind_of.as_str(), "ServiceAccount" | "Role" | "RoleBinding")
            && o.pointer("/metadata/namespace").is_none()
        {
            o["metadata"]["namespace"] = ns.into();
        }
        resolver.apply(&o).await?;
    }

    let who = e.cp.identity(
        sa,
        &format!("system:serviceaccount:{ns}:{sa}"),
        &[
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{ns}"),
        ],
    )?;
    let resolv = e.dir.join(format!("{ns}.resolv.conf"));
    std::fs::write(&resolv, ClusterNet::resolv_conf(ns))
        .map_err(InfraError::io(format!("writing {}", resolv.display())))?;
    let placement = e.net.placement().with_resolv_conf(&resolv);
    let logs = e.cp.logs();
    let home = e.dir.join("home");
    let _ = std::fs::create_dir_all(&home);
    let env = vec![("POD_NAMESPACE".to_string(), ns.to_string())];
    let spawn = |name: &str, binary: &Path, args: Vec<String>| {
        Component::spawn(Launch {
            name,
            binary,
            args,
            env: env.clone(),
            placement: &placement,
            logs: &logs,
            home: &home,
            registry: e.registry,
        })
    };
    let kubeconfig = who.inside.display().to_string();
    let out = match kind {
        ControllerKind::Argo => vec![spawn(
            "rollouts-controller",
            &e.bins.rollouts_controller,
            vec![
                format!("--kubeconfig={kubeconfig}"),
                "--loglevel=info".into(),
                "--leader-elect=false".into(),
            ],
        )?],
        ControllerKind::Flagger => vec![spawn(
            "flagger",
            &e.bins.flagger,
            vec![
                format!("-kubeconfig={kubeconfig}"),
                "-mesh-provider=nginx".into(),
                format!("-metrics-server=http://prometheus.monitoring:{PROMETHEUS_PORT}"),
                "-log-level=info".into(),
                "-enable-leader-election=false".into(),
                // Argo Rollouts' healthz has 8080 on the same node.
                "-port=8089".into(),
            ],
        )?],
    };
    Ok(out)
}
