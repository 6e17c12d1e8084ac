//! The controllers' upstream manifests (CRDs, RBAC), read from the pinned module downloads in
//! the Go module cache.
//!
//! They are never copied into the project: the version that runs and the manifests that go with
//! it come from the same pin (go.mod, checked by go.sum), so bumping a controller cannot leave
//! stale CRDs behind. `go mod download -json <module>`, run in the pinning module's folder,
//! fetches the module if needed, verifies it against go.sum and prints where it is unpacked.
//!
//! The files taken, as upstream installs the controller (cluster-wide):
//! - Argo Rollouts: the five CRDs of `manifests/crds/`; RBAC as `manifests/cluster-install`
//!   assembles it: the ServiceAccount of `manifests/base`, the ClusterRole of `manifests/role`,
//!   the ClusterRoleBinding of `manifests/cluster-install` (it binds namespace `argo-rollouts`).
//!   The aggregate-to-admin/edit/view roles of `manifests/base` are for users and not taken.
//! - Flagger: `artifacts/flagger/crd.yaml` (the same bytes as `kustomize/base/flagger/crd.yaml`);
//!   RBAC from `kustomize/base/flagger` (namespace `flagger-system`), not the older
//!   `artifacts/flagger/account.yaml`, which lacks the rules for keptn and Knative; the
//!   loadtester's Deployment and Service from `kustomize/tester` (no namespace in the files; the
//!   kustomization puts them in `test`).
//!
//! Objects come back exactly as upstream wrote them: namespaces that kustomize would set are not
//! filled in.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::build::MODULE_ENV;

/// The Argo Rollouts module; pinned in the first go.mod.
pub const ARGO_ROLLOUTS: &str = "github.com/argoproj/argo-rollouts";
/// The Flagger module; pinned in `flagger/go.mod`.
pub const FLAGGER: &str = "github.com/fluxcd/flagger";

pub const ARGO_ROLLOUTS_CRDS: &[&str] = &[
    "manifests/crds/rollout-crd.yaml",
    "manifests/crds/experiment-crd.yaml",
    "manifests/crds/analysis-run-crd.yaml",
    "manifests/crds/analysis-template-crd.yaml",
    "manifests/crds/cluster-analysis-template-crd.yaml",
];
pub const ARGO_ROLLOUTS_RBAC: &[&str] = &[
    "manifests/base/argo-rollouts-sa.yaml",
    "manifests/role/argo-rollouts-clusterrole.yaml",
    "manifests/cluster-install/argo-rollouts-clusterrolebinding.yaml",
];
pub const FLAGGER_CRDS: &[&str] = &["artifacts/flagger/crd.yaml"];
pub const FLAGGER_RBAC: &[&str] = &[
    "kustomize/base/flagger/account.yaml",
    "kustomize/base/flagger/rbac.yaml",
];
pub const FLAGGER_LOADTESTER: &[&str] = &[
    "kustomize/tester/deployment.yaml",
    "kustomize/tester/service.yaml",
];

/// Why upstream manifests could not be read; each names the module, the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error(
        "reading {module}'s manifests needs `go` (Go ≥ 1.26) on PATH to locate the pinned module download; install it (https://go.dev/dl/)"
    )]
    NoGo { module: String },
    #[error(
        "`go mod download -json {module}` in {folder} failed: {detail}; it needs network access to the Go module proxy (GOPROXY, default https://proxy.golang.org) or a module cache that has it, and go.sum entries that match (GOFLAGS=-mod=mod lets go add missing ones)",
        folder = folder.display()
    )]
    Download {
        module: String,
        folder: PathBuf,
        detail: String,
    },
    #[error(
        "{module} (downloaded to {dir}) has no {file}; the pin in {folder}/go.mod may name a version that moved it, so update the file list in controlplane/modules.rs",
        dir = dir.display(),
        folder = folder.display()
    )]
    MissingFile {
        module: String,
        folder: PathBuf,
        dir: PathBuf,
        file: String,
    },
    #[error("{file} of {module} is not YAML of Kubernetes objects: {detail}", file = file.display())]
    Parse {
        module: String,
        file: PathBuf,
        detail: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<ModuleError> for crate::cluster::InfraError {
    fn from(e: ModuleError) -> Self {
        crate::cluster::InfraError::Other(e.to_string())
    }
}

/// The folder of the first go.mod: `GAUNTLET_CONTROLPLANE_MODULE`, else the workspace's
/// `fixtures/controlplane`.
pub fn default_module_folder() -> PathBuf {
    std::env::var_os(MODULE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(workspace_module_folder)
}

/// `fixtures/controlplane` of the workspace this library was compiled in.
pub fn workspace_module_folder() -> PathBuf {
    super::build::workspace()
        .join("fixtures")
        .join("controlplane")
}

/// Where `module_path`, at the version `module_folder/go.mod` pins, is unpacked; downloads and
/// verifies it first if needed.
pub fn module_dir(module_folder: &Path, module_path: &str) -> Result<PathBuf, ModuleError> {
    download(module_folder, module_path, None)
}

/// [`module_dir`] with `go` looked up in `path` rather than the process's PATH (tests).
fn download(
    module_folder: &Path,
    module_path: &str,
    path: Option<&OsString>,
) -> Result<PathBuf, ModuleError> {
    let mut cmd = Command::new("go");
    cmd.args(["mod", "download", "-json", module_path])
        .current_dir(module_folder)
        .stdin(Stdio::null());
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let failed = |detail: String| ModuleError::Download {
        module: module_path.to_string(),
        folder: module_folder.to_path_buf(),
        detail,
    };
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // `current_dir` missing also reports NotFound; tell the two apart.
            if !module_folder.is_dir() {
                return Err(failed(format!(
                    "the folder does not exist (set {MODULE_ENV} to the folder of fixtures/controlplane/go.mod)"
                )));
            }
            return Err(ModuleError::NoGo {
                module: module_path.to_string(),
            });
        }
        Err(e) => {
            return Err(ModuleError::Io {
                context: format!("running go mod download in {}", module_folder.display()),
                source: e,
            });
        }
    };
    // go prints the JSON (with an `Error` field on failure) even when it exits non-zero.
    let info: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    let field = |name: &str| {
        info.as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if let Some(error) = field("Error") {
        return Err(failed(error));
    }
    match field("Dir") {
        Some(dir) if out.status.success() => Ok(PathBuf::from(dir)),
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(failed(format!(
                "go exited with {} and printed no module folder: {}",
                out.status,
                stderr.trim()
            )))
        }
    }
}

/// The objects of `files` (paths inside the module), in order; empty documents are skipped.
pub fn read_manifests(
    module_folder: &Path,
    module_path: &str,
    files: &[&str],
) -> Result<Vec<Value>, ModuleError> {
    let dir = module_dir(module_folder, module_path)?;
    let mut objects = Vec::new();
    for file in files {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ModuleError::MissingFile {
                    module: module_path.to_string(),
                    folder: module_folder.to_path_buf(),
                    dir: dir.clone(),
                    file: file.to_string(),
                }
            } else {
                ModuleError::Io {
                    context: format!("reading {}", path.display()),
                    source: e,
                }
            }
        })?;
        objects.extend(parse_objects(&text).map_err(|detail| ModuleError::Parse {
            module: module_path.to_string(),
            file: path.clone(),
            detail,
        })?);
    }
    Ok(objects)
}

/// Multi-document YAML to objects; each must be a mapping with a `kind`.
fn parse_objects(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    let mut objects = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        match doc {
            Value::Null => continue,
            Value::Object(ref map) if map.get("kind").is_some_and(Value::is_string) => {
                objects.push(doc)
            }
            _ => return Err(format!("document {} is not an object with a kind", i + 1)),
        }
    }
    Ok(objects)
}

/// Argo Rollouts' CustomResourceDefinitions ([`ARGO_ROLLOUTS_CRDS`]).
pub fn argo_rollouts_crds(module_folder: &Path) -> Result<Vec<Value>, ModuleError> {
    read_manifests(module_folder, ARGO_ROLLOUTS, ARGO_ROLLOUTS_CRDS)
}

/// The controller's ServiceAccount, ClusterRole and ClusterRoleBinding ([`ARGO_ROLLOUTS_RBAC`]).
pub fn argo_rollouts_rbac(module_folder: &Path) -> Result<Vec<Value>, ModuleError> {
    read_manifests(module_folder, ARGO_ROLLOUTS, ARGO_ROLLOUTS_RBAC)
}

/// Flagger's CustomResourceDefinitions ([`FLAGGER_CRDS`]); `module_folder` is the first
/// module's folder, as everywhere (Flagger's is its `flagger` subfolder).
pub fn flagger_crds(module_folder: &Path) -> Result<Vec<Value>, ModuleError> {
    read_manifests(&module_folder.join("flagger"), FLAGGER, FLAGGER_CRDS)
}

/// Flagger's ServiceAccount, ClusterRole and ClusterRoleBinding ([`FLAGGER_RBAC`]).
pub fn flagger_rbac(module_folder: &Path) -> Result<Vec<Value>, ModuleError> {
    read_manifests(&module_folder.join("flagger"), FLAGGER, FLAGGER_RBAC)
}

/// The loadtester's Deployment and Service as upstream ships them ([`FLAGGER_LOADTESTER`]).
pub fn flagger_loadtester(module_folder: &Path) -> Result<Vec<Value>, ModuleError> {
    read_manifests(&module_folder.join("flagger"), FLAGGER, FLAGGER_LOADTESTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_become_objects_and_empty_ones_vanish() {
        let text = "---\nkind: A\nmetadata: {name: a}\n---\n---\nkind: B\n";
        let objects = parse_objects(text).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1]["kind"], "B");
        assert!(parse_objects("- 1\n- 2\n").is_err());
        assert!(parse_objects("metadata: {}\n").is_err());
    }

    #[test]
    fn without_go_the_error_says_so() {
        let empty = tempfile::tempdir().unwrap();
        let err = download(
            &workspace_module_folder(),
            ARGO_ROLLOUTS,
            Some(&empty.path().as_os_str().to_os_string()),
        )
        .unwrap_err();
        assert!(matches!(err, ModuleError::NoGo { .. }), "{err}");
        assert!(err.to_string().contains("needs `go`"));
    }

    #[test]
    fn a_missing_module_folder_is_named() {
        let err = module_dir(Path::new("/nonexistent/controlplane"), ARGO_ROLLOUTS).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/controlplane"), "{text}");
        assert!(text.contains(MODULE_ENV), "{text}");
    }
}
