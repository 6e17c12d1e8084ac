//! What the local backend takes from a Flagger target folder: the Deployment the Canary targets
//! becomes the [`Workload`] (its pod template, replicas, `minReadySeconds`), named the way Flagger
//! names what it generates, so that the user's PromQL matches the local series:
//! - the Ingress is the Canary's `ingressRef` (the `ingress` label of the ingress series);
//! - the stable Service is the apex Service `<service>` the Ingress routes to (Flagger points its
//!   selector at the primary pods; ingress-nginx labels requests with the Ingress backend's
//!   Service, so that is the `service` label);
//! - the canary Service is `<service>-canary`, so canary requests carry
//!   `canary="<namespace>-<service>-canary-<port>"`, the label the builtin queries select with
//!   `canary!=""`;
//! - the port is `spec.service.port`.

use std::path::Path;

use super::from_spec::{Emulated, from_spec};
use crate::controller::timescale::TimeScale;
use crate::spec::ControllerKind;
use crate::spec::flagger::DeploymentExt;
use crate::target::{TargetError, Workload};

/// Loads a target folder that holds a Flagger Canary, its Deployment and Ingress, with the
/// policy at time scale `scale`.
///
/// # Errors
/// The manifests do not load or validate, or the target is not a Flagger one the local backend
/// can run.
pub fn load_flagger(dir: &Path, scale: TimeScale) -> Result<(Workload, Emulated), TargetError> {
    let manifests = crate::spec::load_target(dir).map_err(TargetError::Spec)?;
    let unusable = |file: &Path, path: &str, reason: String| TargetError::Unusable {
        file: file.to_path_buf(),
        path: path.into(),
        reason,
    };
    match manifests.controller() {
        Ok(ControllerKind::Flagger) => {}
        Ok(ControllerKind::Argo) => {
            return Err(unusable(
                dir,
                "kind",
                "the target holds an Argo Rollout, not a Flagger Canary".into(),
            ));
        }
        Err(e) => return Err(unusable(dir, "kind", e)),
    }
    let emulated = from_spec(&manifests, scale).map_err(|e| unusable(dir, "kind", e))?;
    let canary = &emulated.canary.object;
    let deployment = &emulated.deployment;
    let spec = deployment
        .object
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .ok_or_else(|| {
            unusable(
                &deployment.origin.file,
                "spec.template",
                "the Deployment has no pod template".into(),
            )
        })?;
    let service_port = u16::try_from(canary.spec.service.port).map_err(|_| {
        unusable(
            &emulated.canary.origin.file,
            "spec.service.port",
            format!("{} is not a port", canary.spec.service.port),
        )
    })?;
    let w = Workload {
        manifests: manifests.clone(),
        file: deployment.origin.file.clone(),
        namespace: canary.namespace().to_string(),
        name: canary.spec.target_ref.name.clone(),
        replicas: deployment.object.replicas(),
        min_ready: deployment.object.min_ready(),
        spec,
        stable_service: canary.apex().to_string(),
        canary_service: canary.canary_service(),
        ingress: canary.ingress().to_string(),
        service_port,
    };
    // Refuse a template the local pods cannot run now, not at release time.
    w.pod_template(&w.spec)?;
    Ok((w, emulated))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/apps")
            .join(name)
    }

    #[test]
    fn the_flagger_fixture_names_its_stack_after_flaggers_objects() {
        let (w, e) = load_flagger(&fixture("flagger"), TimeScale::default()).unwrap();
        assert_eq!(w.name, "sample-app");
        assert_eq!(w.ingress, "sample-app");
        assert_eq!(w.stable_service, "sample-app");
        assert_eq!(w.canary_service, "sample-app-canary");
        assert_eq!(w.service_port, 80);
        assert_eq!(w.replicas, 2);
        assert!(w.file.ends_with("deployment.yaml"), "{}", w.file.display());
        assert_eq!(e.policy.replicas, 2);
        let opts = w.stack_options(3);
        assert_eq!(opts.canary_service, "sample-app-canary");
    }

    #[test]
    fn an_argo_target_is_refused() {
        let e = load_flagger(&fixture("argo"), TimeScale::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("Argo Rollout"), "{e}");
    }
}
