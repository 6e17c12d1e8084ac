//! What the local backend takes from a target folder to stand up its baseline: the workload,
//! its pod template, replica count, Services and Ingress, named as the user's manifests name them
//! so that their PromQL (`ingress="..."`, `namespace="..."`) matches the local series.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{EnvVar, PodTemplateSpec};

use crate::cluster::local::StackOptions;
use crate::cluster::local::template::from_k8s;
use crate::cluster::{PodTemplate, RevisionHash};
use crate::spec::{ControllerKind, Manifests, SpecErrors};

/// A target the local backend cannot stand up, with where and why.
#[derive(Debug)]
pub enum TargetError {
    /// The manifests do not load or validate.
    Spec(SpecErrors),
    /// A readable target that is not usable; `file` and `path` locate the field.
    Unusable {
        file: PathBuf,
        path: String,
        reason: String,
    },
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Spec(e) => write!(f, "{e}"),
            TargetError::Unusable { file, path, reason } => {
                write!(f, "{}: {path}: {reason}", file.display())
            }
        }
    }
}

impl std::error::Error for TargetError {}

/// The Rollout's workload, as the local stack runs it.
#[derive(Debug, Clone)]
pub struct Workload {
    pub manifests: Manifests,
    pub file: PathBuf,
    pub namespace: String,
    pub name: String,
    pub replicas: u32,
    pub min_ready: Duration,
    /// The template as written; releases are patches of it.
    pub spec: PodTemplateSpec,
    pub stable_service: String,
    pub canary_service: String,
    pub ingress: String,
    pub service_port: u16,
}

/// Loads a target folder that holds an Argo Rollout.
pub fn load_argo(dir: &Path) -> Result<Workload, TargetError> {
    let manifests = crate::spec::load_target(dir).map_err(TargetError::Spec)?;
    argo_workload(dir, manifests)
}

/// The Argo workload of a target's already loaded and validated `manifests`.
pub fn argo_workload(dir: &Path, manifests: Manifests) -> Result<Workload, TargetError> {
    let unusable = |file: &Path, path: &str, reason: String| TargetError::Unusable {
        file: file.to_path_buf(),
        path: path.into(),
        reason,
    };
    match manifests.controller() {
        Ok(ControllerKind::Argo) => {}
        Ok(ControllerKind::Flagger) => {
            return Err(unusable(
                dir,
                "kind",
                "the target holds a Flagger Canary; load it with `controller::flagger::target::load_flagger`".into(),
            ));
        }
        Err(e) => return Err(unusable(dir, "kind", e)),
    }
    let Some(rollout) = manifests.rollouts.first() else {
        return Err(unusable(
            dir,
            "kind",
            "no Rollout in the target folder".into(),
        ));
    };
    if manifests.rollouts.len() > 1 {
        return Err(unusable(
            &manifests.rollouts[1].origin.file,
            "metadata.name",
            format!(
                "a target holds one Rollout; found {} (`{}` and `{}`)",
                manifests.rollouts.len(),
                rollout.object.name(),
                manifests.rollouts[1].object.name()
            ),
        ));
    }
    let file = rollout.origin.file.clone();
    let r = &rollout.object;
    let canary = r.canary().ok_or_else(|| {
        unusable(
            &file,
            "spec.strategy.canary",
            "only the canary strategy is emulated".into(),
        )
    })?;
    let ingress = canary
        .nginx()
        .and_then(|n| n.stable_ingresses().first().map(|s| s.to_string()))
        .ok_or_else(|| {
            unusable(
                &file,
                "spec.strategy.canary.trafficRouting.nginx.stableIngress",
                "the local backend routes traffic with nginx; set trafficRouting.nginx".into(),
            )
        })?;
    let service_port = manifests
        .services
        .iter()
        .find(|s| s.object.metadata.name.as_deref() == Some(canary.stable_service.as_str()))
        .and_then(|s| {
            s.object
                .spec
                .as_ref()?
                .ports
                .as_ref()?
                .first()
                .map(|p| p.port)
        })
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(80);
    let w = Workload {
        file,
        namespace: r.namespace().to_string(),
        name: r.name().to_string(),
        replicas: r.replicas(),
        min_ready: r.min_ready(),
        spec: r.spec.template.clone(),
        stable_service: canary.stable_service.clone(),
        canary_service: canary.canary_service.clone(),
        ingress,
        service_port,
        manifests: manifests.clone(),
    };
    // Refuse a template the local pods cannot run now, not at release time.
    w.pod_template(&w.spec)?;
    Ok(w)
}

impl Workload {
    /// The stack's naming, so series carry the user's namespace, ingress and services.
    pub fn stack_options(&self, seed: u64) -> StackOptions {
        StackOptions {
            namespace: self.namespace.clone(),
            ingress: self.ingress.clone(),
            stable_service: self.stable_service.clone(),
            canary_service: self.canary_service.clone(),
            service_port: self.service_port,
            seed,
            ..StackOptions::default()
        }
    }

    /// The local pod template of `spec` (the baseline's or a release's).
    pub fn pod_template(&self, spec: &PodTemplateSpec) -> Result<PodTemplate, TargetError> {
        from_k8s(&self.name, spec, self.min_ready).map_err(|e| TargetError::Unusable {
            file: self.file.clone(),
            path: format!("spec.template.{}", e.path),
            reason: e.reason,
        })
    }

    /// The template with `env` set on its first container (replacing same-named variables),
    /// as a release that changes the app's version or faults patches it.
    pub fn with_env(&self, env: &[(String, String)]) -> PodTemplateSpec {
        let mut spec = self.spec.clone();
        if let Some(c) = spec.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            let vars = c.env.get_or_insert_with(Vec::new);
            for (k, v) in env {
                vars.retain(|e| &e.name != k);
                vars.push(EnvVar {
                    name: k.clone(),
                    value: Some(v.clone()),
                    value_from: None,
                });
            }
        }
        spec
    }
}

/// The `pod-template-hash` of a template: FNV-1a (32 bit) over its canonical JSON, encoded with
/// Kubernetes' `SafeEncodeString` alphabet, as `ComputeHash` does. Kubernetes hashes Go's
/// printed struct, so the value differs from a cluster's; it is stable for equal templates,
/// which is all the emulation needs (see docs/fidelity.md).
pub fn pod_template_hash(spec: &PodTemplateSpec) -> RevisionHash {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in json {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let encoded: String = h
        .to_string()
        .bytes()
        .map(|d| ALPHABET[(d as usize) % ALPHABET.len()] as char)
        .collect();
    RevisionHash(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps/argo")
    }

    #[test]
    fn the_argo_fixture_names_its_stack_after_the_manifests() {
        let w = load_argo(&fixture()).unwrap();
        assert_eq!(w.name, "sample-app");
        assert_eq!(w.ingress, "sample-app");
        assert_eq!(w.stable_service, "sample-app-stable");
        assert_eq!(w.canary_service, "sample-app-canary");
        assert_eq!(w.replicas, 2);
        let opts = w.stack_options(7);
        assert_eq!(opts.namespace, "default");
        assert_eq!(opts.seed, 7);
    }

    #[test]
    fn a_release_changes_the_hash_and_equal_templates_share_one() {
        let w = load_argo(&fixture()).unwrap();
        let base = pod_template_hash(&w.spec);
        assert_eq!(base, pod_template_hash(&w.spec.clone()));
        let release = w.with_env(&[("APP_VERSION".into(), "2.0.0".into())]);
        assert_ne!(base, pod_template_hash(&release));
        assert!(
            base.0
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
        let t = w.pod_template(&release).unwrap();
        assert!(
            t.env
                .contains(&("APP_VERSION".to_string(), "2.0.0".to_string()))
        );
    }

    #[test]
    fn a_folder_without_a_rollout_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("svc.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80}]}\n",
        )
        .unwrap();
        let e = load_argo(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
    }
}
