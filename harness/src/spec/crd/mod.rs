//! What the API server refuses, found before anything runs: the target's Argo Rollouts and
//! Flagger objects checked against the `openAPIV3Schema` of the real CRDs.
//!
//! The CRDs are never copied into the project. They are read from the pinned Go module
//! downloads of the control plane (`cluster::local::controlplane::modules`: `go mod download
//! -json`, verified by `go.sum`), so the version that runs on the real tier and the schema that
//! judges the manifests come from one pin. Every kind those CRDs define is checked (Rollout,
//! AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun, Experiment; Canary, MetricTemplate,
//! AlertProvider), at the version the document names, as kube-apiserver v1.34 handles a create
//! ([`validate`]: pruning, defaulting, value validation, list types). A field the API server
//! would prune is refused by name: `kubectl apply` refuses it too (strict field validation is its
//! default), and an ignored field is a policy that silently differs from what was written.
//!
//! Without Go or the module cache the schemas cannot be read: validation is then partial (the
//! hand-written rules of [`super::argo`] and [`super::flagger`] still run), and
//! [`partial_notice`] says so once per process.

pub mod format;
pub mod schema;
pub mod validate;

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use self::schema::Schema;
use self::validate::Finding;
use super::error::{KeyPath, SpecError, SpecErrorKind};
use super::manifests::{Manifests, Origin, doc_error};
use crate::cluster::local::controlplane::modules::{self, ModuleError};

/// The API groups whose CRDs are read from the pinned modules; documents of these groups are
/// kept raw by the loader for [`validate_manifests`].
pub const GROUPS: [&str; 2] = ["argoproj.io", "flagger.app"];

/// One served version of one kind, compiled.
#[derive(Debug, Clone)]
pub struct KindSchema {
    pub group: String,
    pub kind: String,
    /// The CRD's name, `canaries.flagger.app`.
    pub crd: String,
    pub version: String,
    /// Where the CRD came from: `Flagger v1.44.0`.
    pub source: String,
    /// `subresources.status`: the API server drops `status` on create, so it is not checked.
    pub status_subresource: bool,
    pub schema: Schema,
}

/// The schemas of every served version of every CRD read.
#[derive(Debug, Clone, Default)]
pub struct CrdSchemas {
    pub kinds: Vec<KindSchema>,
}

/// A document of a CRD group, as the loader found it.
#[derive(Debug, Clone, PartialEq)]
pub struct CrdDocument {
    pub origin: Origin,
    /// `Kind/name`, for messages.
    pub label: String,
    pub api_version: String,
    pub kind: String,
    pub value: Value,
}

impl CrdSchemas {
    /// Compiles `crds` (CustomResourceDefinition objects) from `source` (`Flagger v1.44.0`).
    ///
    /// # Errors
    /// A CRD that does not decode as `apiextensions.k8s.io/v1`.
    pub fn from_crds(crds: &[Value], source: &str) -> Result<CrdSchemas, String> {
        let mut kinds = Vec::new();
        for v in crds {
            if v.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
                continue;
            }
            let crd: CustomResourceDefinition = serde_json::from_value(v.clone()).map_err(|e| {
                format!(
                    "CRD {} of {source} does not decode: {e}",
                    v.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                )
            })?;
            let name = crd.metadata.name.clone().unwrap_or_default();
            for ver in crd.spec.versions.iter().filter(|v| v.served) {
                let Some(props) = ver
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                else {
                    continue;
                };
                kinds.push(KindSchema {
                    group: crd.spec.group.clone(),
                    kind: crd.spec.names.kind.clone(),
                    crd: name.clone(),
                    version: ver.name.clone(),
                    source: source.to_string(),
                    status_subresource: ver
                        .subresources
                        .as_ref()
                        .is_some_and(|s| s.status.is_some()),
                    schema: Schema::compile(props),
                });
            }
        }
        Ok(CrdSchemas { kinds })
    }

    /// Reads Argo Rollouts' and Flagger's CRDs from the modules pinned in `module_folder`
    /// (the folder of `fixtures/controlplane/go.mod`).
    ///
    /// # Errors
    /// No `go`, a module that cannot be downloaded or verified, a CRD that does not decode.
    pub fn load(module_folder: &Path) -> Result<CrdSchemas, String> {
        let version = |folder: &Path, module: &str| -> Result<String, ModuleError> {
            let dir = modules::module_dir(folder, module)?;
            Ok(dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.rsplit_once('@'))
                .map(|(_, v)| v.to_string())
                .unwrap_or_default())
        };
        let argo = modules::argo_rollouts_crds(module_folder).map_err(|e| e.to_string())?;
        let argo_version =
            version(module_folder, modules::ARGO_ROLLOUTS).map_err(|e| e.to_string())?;
        let flagger = modules::flagger_crds(module_folder).map_err(|e| e.to_string())?;
        let flagger_version =
            version(&module_folder.join("flagger"), modules::FLAGGER).map_err(|e| e.to_string())?;
        let mut all = CrdSchemas::from_crds(&argo, &format!("Argo Rollouts {argo_version}"))?;
        all.kinds
            .extend(CrdSchemas::from_crds(&flagger, &format!("Flagger {flagger_version}"))?.kinds);
        Ok(all)
    }

    /// The schema for `apiVersion` and `kind`: `Ok(None)` when no CRD read defines the group,
    /// `Err` with the reason when the group is known but the kind or version is not served.
    pub fn lookup(&self, api_version: &str, kind: &str) -> Result<Option<&KindSchema>, Finding> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let of_group: Vec<&KindSchema> = self.kinds.iter().filter(|k| k.group == group).collect();
        if of_group.is_empty() {
            return Ok(None);
        }
        let of_kind: Vec<&KindSchema> = of_group
            .iter()
            .copied()
            .filter(|k| k.kind == kind)
            .collect();
        if of_kind.is_empty() {
            let mut known: Vec<&str> = of_group.iter().map(|k| k.kind.as_str()).collect();
            known.dedup();
            return Err(Finding {
                path: KeyPath::from("kind"),
                message: format!(
                    "no kind {kind:?} is registered for {api_version}: the CRDs of {} define {}",
                    of_group[0].source,
                    known.join(", ")
                ),
                hint: None,
                unknown: false,
            });
        }
        match of_kind.iter().find(|k| k.version == version) {
            Some(k) => Ok(Some(k)),
            None => {
                let served: Vec<String> = of_kind
                    .iter()
                    .map(|k| format!("{}/{}", k.group, k.version))
                    .collect();
                Err(Finding {
                    path: KeyPath::from("apiVersion"),
                    message: format!(
                        "the CRD {} serves {} only, not {api_version}",
                        of_kind[0].crd,
                        served.join(", ")
                    ),
                    hint: Some(format!("apiVersion: {}", served[0])),
                    unknown: false,
                })
            }
        }
    }

    /// Everything the API server would refuse in one document; empty when it would store it (or
    /// when no CRD read defines its group).
    pub fn validate(&self, api_version: &str, kind: &str, doc: &Value) -> Vec<(Finding, String)> {
        let k = match self.lookup(api_version, kind) {
            Ok(Some(k)) => k,
            Ok(None) => return Vec::new(),
            Err(f) => return vec![(f, String::new())],
        };
        let mut value = doc.clone();
        if k.status_subresource
            && let Some(map) = value.as_object_mut()
        {
            map.remove("status");
        }
        let mut found = Vec::new();
        let root = KeyPath::root();
        validate::prune(&mut value, Some(&k.schema), &root, true, &mut found);
        validate::apply_defaults(&mut value, &k.schema);
        validate::check(&value, &k.schema, &root, &mut found);
        validate::list_types(&value, &k.schema, &root, &mut found);
        let crd = format!("CRD {} {}, {}", k.crd, k.version, k.source);
        found.into_iter().map(|f| (f, crd.clone())).collect()
    }
}

static INSTALLED: OnceLock<Result<CrdSchemas, String>> = OnceLock::new();
static NOTICE_TAKEN: AtomicBool = AtomicBool::new(false);

/// The CRDs of the pinned modules (`GAUNTLET_CONTROLPLANE_MODULE`, else the workspace's
/// `fixtures/controlplane`), read once per process.
///
/// # Errors
/// Why they could not be read; validation is then partial.
pub fn installed() -> Result<&'static CrdSchemas, &'static str> {
    INSTALLED
        .get_or_init(|| CrdSchemas::load(&modules::default_module_folder()))
        .as_ref()
        .map_err(String::as_str)
}

/// The one warning line a run prints when the CRDs could not be read, the first time it is
/// asked for (later calls, and runs with the CRDs, get `None`). Asks only once the CRDs were
/// needed: a run that validated no target has nothing to warn about.
pub fn partial_notice() -> Option<String> {
    let Some(Err(reason)) = INSTALLED.get() else {
        return None;
    };
    if NOTICE_TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    Some(notice_text(reason))
}

fn notice_text(reason: &str) -> String {
    format!(
        "validation against the CRDs is partial: {reason}. The Argo Rollouts and Flagger objects \
         were checked by gauntlet's own rules only; what only the CRDs' openAPIV3Schema refuses \
         (a missing required field, a value off its pattern) passes here and fails on a cluster"
    )
}

/// One thing a CRD refuses, located in the target.
#[derive(Debug)]
pub struct CrdError {
    pub error: SpecError,
    /// An unknown field (pruned by the API server): gauntlet's own findings inside it are moot.
    pub pruned: bool,
}

/// The CRD problems of every document of a CRD group in `manifests`, against the installed
/// schemas; none when they could not be read (see [`partial_notice`]).
pub fn validate_manifests(manifests: &Manifests) -> Vec<CrdError> {
    match installed() {
        Ok(schemas) => validate_with(manifests, schemas),
        Err(_) => Vec::new(),
    }
}

/// [`validate_manifests`] against given schemas.
pub fn validate_with(manifests: &Manifests, schemas: &CrdSchemas) -> Vec<CrdError> {
    let mut errors = Vec::new();
    for d in manifests.crd_documents() {
        for (f, crd) in schemas.validate(&d.api_version, &d.kind, &d.value) {
            let path = f.path.to_string();
            let pruned = f.unknown;
            errors.push(CrdError {
                error: doc_error(&d.origin, Some(&d.label), &path, kind_of(f, &crd)),
                pruned,
            });
        }
    }
    errors
}

fn kind_of(f: Finding, crd: &str) -> SpecErrorKind {
    let reason = if f.unknown {
        format!(
            "{}: the API server drops it, and `kubectl apply` (strict field validation by \
             default) refuses it ({crd})",
            f.message
        )
    } else if crd.is_empty() {
        f.message
    } else {
        format!("{}: the API server refuses it ({crd})", f.message)
    };
    SpecErrorKind::Invalid {
        reason,
        hint: f.hint,
    }
}

/// The CRD's errors first, then gauntlet's own. A rule of gauntlet's that found the same problem
/// (same file, document and key path, refused rather than merely unsupported) is not repeated:
/// the CRD's error stands for it and takes its hint when it has none. Inside a field the API
/// server prunes, gauntlet's findings are dropped: the field itself is the error.
pub fn merge(crd: Vec<CrdError>, own: Vec<SpecError>) -> Vec<SpecError> {
    let mut own: Vec<Option<SpecError>> = own.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(crd.len() + own.len());
    for CrdError {
        error: mut c,
        pruned,
    } in crd
    {
        for slot in own.iter_mut() {
            let covered = slot.as_ref().is_some_and(|o| {
                let here = o.file == c.file && o.document == c.document;
                let refused = matches!(
                    o.kind,
                    SpecErrorKind::Invalid { .. } | SpecErrorKind::Schema(_)
                );
                here && ((o.path == c.path && refused) || (pruned && below(&o.path, &c.path)))
            });
            if covered
                && let Some(o) = slot.take()
                && let (SpecErrorKind::Invalid { hint: h @ None, .. }, Some(theirs)) =
                    (&mut c.kind, o.kind.hint())
            {
                *h = Some(theirs.to_string());
            }
        }
        out.push(c);
    }
    out.extend(own.into_iter().flatten());
    out
}

/// Whether key path `p` lies inside `parent`.
fn below(p: &str, parent: &str) -> bool {
    p.strip_prefix(parent)
        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

#[cfg(test)]
mod tests;
