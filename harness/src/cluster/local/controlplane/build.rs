//! The control plane's binaries, built from the project's pinned Go modules and cached by pin.
//!
//! The binaries are not committed and not downloaded: the pins are `fixtures/controlplane/go.mod`
//! and `fixtures/controlplane/flagger/go.mod` with their go.sum, and `go build` turns them into
//! etcd, the Kubernetes components, Argo Rollouts and Flagger. A cold build takes minutes, so the
//! result is kept under `target/controlplane/<key>/bin`, where the key hashes everything that
//! changes the bytes built (both go.mod and go.sum, the Go version, GOOS/GOARCH/CGO_ENABLED/GOFLAGS
//! and the build flags): a changed pin or Go builds anew, an unchanged one builds nothing.
//!
//! A cache folder counts only once its marker is written, last and atomically, so a build killed
//! half way is rebuilt rather than trusted. A lock file serialises gauntlets that start at once:
//! the second waits for the first and uses its result. Folders of older keys are left in place
//! (about 650 MB each); remove `target/controlplane` to reclaim them.
//!
//! `GAUNTLET_CONTROLPLANE_BIN=DIR` skips all of this and takes prebuilt binaries from DIR.

mod cache;
mod go;
mod key;
mod progress;
mod stamp;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use self::cache::Entry;
use self::go::{Go, GoModule};
pub use self::progress::ProgressRenderer;

/// A folder of prebuilt binaries to use instead of building (`make controlplane` prints one).
pub const BIN_ENV: &str = "GAUNTLET_CONTROLPLANE_BIN";
/// The folder of the first go.mod, when the binary runs outside the workspace it was built in.
pub const MODULE_ENV: &str = "GAUNTLET_CONTROLPLANE_MODULE";
/// Where the cache lives, when `<workspace>/target/controlplane` is not wanted.
pub const CACHE_ENV: &str = "GAUNTLET_CONTROLPLANE_CACHE";

/// The flags every binary is built with; part of the cache key. `-trimpath` keeps the build
/// independent of where the workspace is; `-ldflags` (see [`stamp`]) drops debug data (a third
/// of the size) and writes each project's version from its pin.
const BUILD_FLAGS: [&str; 2] = ["-trimpath", "-ldflags=-s -w +version stamps"];

/// One binary of the control plane, by the name it has in the cache and in a prebuilt folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Binary {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    KubeProxy,
    RolloutsController,
    KubectlArgoRollouts,
    Flagger,
    Loadtester,
    Prometheus,
}

impl Binary {
    pub const ALL: [Binary; 10] = [
        Binary::Etcd,
        Binary::KubeApiserver,
        Binary::KubeControllerManager,
        Binary::KubeScheduler,
        Binary::KubeProxy,
        Binary::RolloutsController,
        Binary::KubectlArgoRollouts,
        Binary::Flagger,
        Binary::Loadtester,
        Binary::Prometheus,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Binary::Etcd => "etcd",
            Binary::KubeApiserver => "kube-apiserver",
            Binary::KubeControllerManager => "kube-controller-manager",
            Binary::KubeScheduler => "kube-scheduler",
            Binary::KubeProxy => "kube-proxy",
            Binary::RolloutsController => "rollouts-controller",
            Binary::KubectlArgoRollouts => "kubectl-argo-rollouts",
            Binary::Flagger => "flagger",
            Binary::Loadtester => "loadtester",
            Binary::Prometheus => "prometheus",
        }
    }

    /// The name `go build -o DIR/` gives it: the package path's last element, skipping a
    /// major-version suffix, which makes etcd's main package (`go.etcd.io/etcd/server/v3`)
    /// `server`.
    fn built_as(self) -> &'static str {
        match self {
            Binary::Etcd => "server",
            other => other.file_name(),
        }
    }

    fn module(self) -> GoModule {
        match self {
            Binary::Flagger | Binary::Loadtester => GoModule::Flagger,
            Binary::Prometheus => GoModule::Prometheus,
            _ => GoModule::ControlPlane,
        }
    }
}

/// Names of every binary, for messages that tell what a prebuilt folder must hold.
fn all_names() -> String {
    Binary::ALL.map(Binary::file_name).join(", ")
}

/// Where each binary is; every path exists and is executable when handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneBinaries {
    /// The folder holding all of them (what `gauntlet controlplane build` prints).
    pub dir: PathBuf,
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kube_proxy: PathBuf,
    pub rollouts_controller: PathBuf,
    pub kubectl_argo_rollouts: PathBuf,
    pub flagger: PathBuf,
    pub loadtester: PathBuf,
    /// Prometheus with `kubernetes_sd_configs` (Debian's package has none).
    pub prometheus: PathBuf,
}

impl ControlPlaneBinaries {
    fn in_dir(dir: &Path) -> Self {
        let at = |b: Binary| dir.join(b.file_name());
        ControlPlaneBinaries {
            dir: dir.to_path_buf(),
            etcd: at(Binary::Etcd),
            kube_apiserver: at(Binary::KubeApiserver),
            kube_controller_manager: at(Binary::KubeControllerManager),
            kube_scheduler: at(Binary::KubeScheduler),
            kube_proxy: at(Binary::KubeProxy),
            rollouts_controller: at(Binary::RolloutsController),
            kubectl_argo_rollouts: at(Binary::KubectlArgoRollouts),
            flagger: at(Binary::Flagger),
            loadtester: at(Binary::Loadtester),
            prometheus: at(Binary::Prometheus),
        }
    }

    pub fn path(&self, binary: Binary) -> &Path {
        match binary {
            Binary::Etcd => &self.etcd,
            Binary::KubeApiserver => &self.kube_apiserver,
            Binary::KubeControllerManager => &self.kube_controller_manager,
            Binary::KubeScheduler => &self.kube_scheduler,
            Binary::KubeProxy => &self.kube_proxy,
            Binary::RolloutsController => &self.rollouts_controller,
            Binary::KubectlArgoRollouts => &self.kubectl_argo_rollouts,
            Binary::Flagger => &self.flagger,
            Binary::Loadtester => &self.loadtester,
            Binary::Prometheus => &self.prometheus,
        }
    }
}

/// The binaries missing from `dir` (absent, not a file, or not executable).
fn missing_in(dir: &Path) -> Vec<Binary> {
    Binary::ALL
        .into_iter()
        .filter(|b| !is_executable(&dir.join(b.file_name())))
        .collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where the binaries come from; [`BuildConfig::from_env`] reads it from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildConfig {
    /// `GAUNTLET_CONTROLPLANE_BIN`: use these, never build.
    Prebuilt { dir: PathBuf },
    /// Build from the modules into the cache.
    Build {
        /// The folder of the first go.mod; the Flagger module is its `flagger` subfolder.
        module_folder: PathBuf,
        /// Holds one folder per key.
        cache_root: PathBuf,
        /// The PATH that `go` is looked up in and run with; `None`: the process's own.
        path: Option<OsString>,
    },
}

impl BuildConfig {
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// [`BuildConfig::from_env`] over any source of variables (tests pass their own PATH). An
    /// empty variable counts as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        if let Some(dir) = var(BIN_ENV) {
            return BuildConfig::Prebuilt {
                dir: PathBuf::from(dir),
            };
        }
        BuildConfig::Build {
            module_folder: var(MODULE_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(super::modules::workspace_module_folder),
            cache_root: var(CACHE_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace().join("target").join("controlplane")),
            path: var("PATH"),
        }
    }
}

/// The workspace the library was compiled in (harness/ is one of its members).
pub(super) fn workspace() -> PathBuf {
    let harness = Path::new(env!("CARGO_MANIFEST_DIR"));
    harness.parent().unwrap_or(harness).to_path_buf()
}

/// What [`ensure`] is doing, for a progress display ([`ProgressRenderer`] draws it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildProgress {
    /// Another gauntlet is building the same key; this one waits for its result.
    WaitingForLock { lock: PathBuf },
    /// `go list -deps tool` in a module: counts its packages, downloading modules it lacks.
    Listing { module: &'static str },
    /// `go build -v`: `done` of `total` packages (both modules) so far; go names only the packages
    /// it compiles, so with a warm Go build cache `done` jumps at the end of each module.
    Compiling {
        module: &'static str,
        done: u64,
        total: u64,
        package: String,
    },
    /// All binaries are in `dir`; `built` says whether this call built them.
    Done {
        dir: PathBuf,
        built: bool,
        elapsed: Duration,
    },
}

/// Why the binaries are not there; every message names the step and the fix. Exit code 3.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "Go ≥ {needed} is needed to build the control plane, but `go` was not found on PATH; install it (https://go.dev/dl/), or set {BIN_ENV} to a folder with {names}",
        names = all_names()
    )]
    NoGo { needed: String },
    #[error(
        "Go ≥ {needed} is needed to build the control plane ({module_folder}/go.mod), but `go version` there says: {found}; install a newer Go (https://go.dev/dl/) or let GOTOOLCHAIN=auto fetch one, or set {BIN_ENV} to a folder with prebuilt binaries",
        module_folder = module_folder.display()
    )]
    GoTooOld {
        module_folder: PathBuf,
        needed: String,
        found: String,
    },
    #[error(
        "the control plane's Go module was not found: {missing} does not exist; set {MODULE_ENV} to the folder of fixtures/controlplane/go.mod (with flagger/go.mod and prometheus/go.mod beside it), or {BIN_ENV} to a folder with prebuilt binaries",
        missing = missing.display()
    )]
    ModuleNotFound { missing: PathBuf },
    #[error(
        "`{step}` in {module_folder} failed to download modules; it needs the Go module proxy or a module cache that has them, and a go.sum that matches: check GOPROXY and GOFLAGS (now {go_env}; GOFLAGS=-mod=mod lets go update go.sum):\n{tail}\nfull log: {log}",
        module_folder = module_folder.display(),
        log = log.display()
    )]
    DownloadFailed {
        step: String,
        module_folder: PathBuf,
        /// GOPROXY and GOFLAGS as go sees them.
        go_env: String,
        tail: String,
        log: PathBuf,
    },
    #[error(
        "`{step}` in {module_folder} failed:\n{tail}\nfull log: {log}; if a pin was changed, check it builds with `go build tool` in that folder, or set {BIN_ENV} to prebuilt binaries",
        module_folder = module_folder.display(),
        log = log.display()
    )]
    CompileFailed {
        step: String,
        module_folder: PathBuf,
        tail: String,
        log: PathBuf,
    },
    #[error(
        "`go build` in {module_folder} finished but did not write {missing} into {dir}; see {log}",
        module_folder = module_folder.display(),
        dir = dir.display(),
        log = log.display()
    )]
    NotProduced {
        module_folder: PathBuf,
        missing: String,
        dir: PathBuf,
        log: PathBuf,
    },
    #[error(
        "{BIN_ENV}={dir} lacks {missing} (looked for {looked}, executable){hint}; put them there (`make controlplane` builds them all), or unset {BIN_ENV} to build them from the pinned modules",
        dir = dir.display()
    )]
    MissingPrebuilt {
        dir: PathBuf,
        missing: String,
        looked: String,
        hint: &'static str,
    },
    #[error("`{step}` in {dir} failed: {detail}", dir = dir.display())]
    Go {
        step: String,
        dir: PathBuf,
        detail: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the control plane build was cancelled (the async runtime shut down)")]
    Cancelled,
}

impl BuildError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
        let context = context.into();
        move |source| BuildError::Io { context, source }
    }
}

impl From<BuildError> for crate::cluster::InfraError {
    fn from(e: BuildError) -> Self {
        crate::cluster::InfraError::Other(e.to_string())
    }
}

/// The binaries as the environment says ([`BuildConfig::from_env`]), building them if needed.
///
/// Blocks: up to minutes when it builds, or while another gauntlet builds the same key. Async
/// code calls [`ensure_async`] (or this inside `spawn_blocking`).
pub fn ensure(progress: &mut dyn FnMut(BuildProgress)) -> Result<ControlPlaneBinaries, BuildError> {
    ensure_with(&BuildConfig::from_env(), progress)
}

/// [`ensure`] on a blocking thread; dropping the future does not stop a build under way (its
/// result stays in the cache for the next start).
pub async fn ensure_async(
    config: BuildConfig,
    mut progress: impl FnMut(BuildProgress) + Send + 'static,
) -> Result<ControlPlaneBinaries, BuildError> {
    match tokio::task::spawn_blocking(move || ensure_with(&config, &mut progress)).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(BuildError::Cancelled),
    }
}

/// What `gauntlet controlplane build` runs: the environment's config, progress on stderr (a bar
/// at a terminal, a line every ~10 s in a log).
pub async fn ensure_with_stderr_progress() -> Result<ControlPlaneBinaries, BuildError> {
    let mut renderer = ProgressRenderer::auto();
    ensure_async(BuildConfig::from_env(), move |p| renderer.update(&p)).await
}

/// [`ensure`] with an explicit config.
pub fn ensure_with(
    config: &BuildConfig,
    progress: &mut dyn FnMut(BuildProgress),
) -> Result<ControlPlaneBinaries, BuildError> {
    match config {
        BuildConfig::Prebuilt { dir } => prebuilt(dir),
        BuildConfig::Build {
            module_folder,
            cache_root,
            path,
        } => cached_or_built(module_folder, cache_root, path.as_deref(), progress),
    }
}

fn prebuilt(dir: &Path) -> Result<ControlPlaneBinaries, BuildError> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let missing = missing_in(&dir);
    if missing.is_empty() {
        return Ok(ControlPlaneBinaries::in_dir(&dir));
    }
    let etcd_as_server =
        missing.contains(&Binary::Etcd) && is_executable(&dir.join(Binary::Etcd.built_as()));
    Err(BuildError::MissingPrebuilt {
        missing: missing
            .iter()
            .map(|b| b.file_name())
            .collect::<Vec<_>>()
            .join(", "),
        looked: missing
            .iter()
            .map(|b| dir.join(b.file_name()).display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        dir,
        hint: if etcd_as_server {
            "; `go build` names etcd `server`: rename it to `etcd`"
        } else {
            ""
        },
    })
}

fn cached_or_built(
    module_folder: &Path,
    cache_root: &Path,
    path: Option<&std::ffi::OsStr>,
    progress: &mut dyn FnMut(BuildProgress),
) -> Result<ControlPlaneBinaries, BuildError> {
    let started = Instant::now();
    let modules = GoModule::ALL.map(|m| m.folder(module_folder));
    for folder in &modules {
        let go_mod = folder.join("go.mod");
        if !go_mod.is_file() {
            return Err(BuildError::ModuleNotFound { missing: go_mod });
        }
    }
    let needed = key::needed_go(&modules);
    let go = Go::find(path).ok_or_else(|| BuildError::NoGo {
        needed: needed.clone(),
    })?;
    let inputs = key::KeyInputs::read(&go, &modules)?;
    let entry = Entry::new(cache_root.join(inputs.key()));

    let done = |built| BuildProgress::Done {
        dir: entry.bin(),
        built,
        elapsed: started.elapsed(),
    };
    if entry.is_complete() {
        progress(done(false));
        return Ok(ControlPlaneBinaries::in_dir(&entry.bin()));
    }
    let _lock = entry.lock(|lock| progress(BuildProgress::WaitingForLock { lock }))?;
    // The holder we waited for may have built it.
    if entry.is_complete() {
        progress(done(false));
        return Ok(ControlPlaneBinaries::in_dir(&entry.bin()));
    }
    entry.reset()?;
    build_all(&go, module_folder, &entry, progress)?;
    entry.mark_complete(&inputs.describe())?;
    progress(done(true));
    Ok(ControlPlaneBinaries::in_dir(&entry.bin()))
}

/// Lists both modules first so the count covers the whole build, then builds each into the
/// entry's bin folder and gives etcd its name.
fn build_all(
    go: &Go,
    module_folder: &Path,
    entry: &Entry,
    progress: &mut dyn FnMut(BuildProgress),
) -> Result<(), BuildError> {
    let log = entry.log();
    let mut totals = Vec::new();
    for module in GoModule::ALL {
        progress(BuildProgress::Listing {
            module: module.name(),
        });
        totals.push(go.count_deps(&module.folder(module_folder), &log)?);
    }
    let total: u64 = totals.iter().sum();
    let mut before = 0;
    for (module, count) in GoModule::ALL.into_iter().zip(totals) {
        let folder = module.folder(module_folder);
        let ldflags = format!("-ldflags={}", stamp::ldflags(module, &folder)?);
        go.build_tools(
            &folder,
            &entry.bin(),
            &log,
            &[BUILD_FLAGS[0], &ldflags],
            &mut |done, package| {
                progress(BuildProgress::Compiling {
                    module: module.name(),
                    done: (before + done).min(before + count),
                    total,
                    package: package.to_string(),
                })
            },
        )?;
        before += count;
        progress(BuildProgress::Compiling {
            module: module.name(),
            done: before,
            total,
            package: String::new(),
        });
        collect_outputs(module, &folder, &entry.bin(), &log)?;
    }
    Ok(())
}

/// Renames what go named differently and checks each binary of `module` is there.
fn collect_outputs(
    module: GoModule,
    folder: &Path,
    bin: &Path,
    log: &Path,
) -> Result<(), BuildError> {
    let ours = Binary::ALL.into_iter().filter(|b| b.module() == module);
    for binary in ours.clone() {
        if binary.built_as() != binary.file_name() {
            let from = bin.join(binary.built_as());
            if from.is_file() {
                let to = bin.join(binary.file_name());
                std::fs::rename(&from, &to).map_err(BuildError::io(format!(
                    "renaming {} to {}",
                    from.display(),
                    to.display()
                )))?;
            }
        }
    }
    let missing: Vec<_> = ours
        .filter(|b| !is_executable(&bin.join(b.file_name())))
        .map(|b| format!("{} (built as `{}`)", b.file_name(), b.built_as()))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(BuildError::NotProduced {
            module_folder: folder.to_path_buf(),
            missing: missing.join(", "),
            dir: bin.to_path_buf(),
            log: log.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_is_the_only_binary_go_names_differently() {
        let renamed: Vec<_> = Binary::ALL
            .into_iter()
            .filter(|b| b.built_as() != b.file_name())
            .collect();
        assert_eq!(renamed, [Binary::Etcd]);
        assert_eq!(Binary::Etcd.built_as(), "server");
    }

    #[test]
    fn the_bin_variable_wins_and_empty_variables_count_as_unset() {
        let config = BuildConfig::from_vars(|name| match name {
            BIN_ENV => Some("/opt/cp".into()),
            _ => None,
        });
        assert_eq!(
            config,
            BuildConfig::Prebuilt {
                dir: "/opt/cp".into()
            }
        );
        let config = BuildConfig::from_vars(|name| match name {
            BIN_ENV => Some("".into()),
            MODULE_ENV => Some("/m".into()),
            CACHE_ENV => Some("/c".into()),
            "PATH" => Some("/p".into()),
            _ => None,
        });
        assert_eq!(
            config,
            BuildConfig::Build {
                module_folder: "/m".into(),
                cache_root: "/c".into(),
                path: Some("/p".into())
            }
        );
    }

    #[test]
    fn defaults_point_into_the_workspace() {
        let BuildConfig::Build {
            module_folder,
            cache_root,
            ..
        } = BuildConfig::from_vars(|_| None)
        else {
            panic!("no variable set must mean building");
        };
        assert!(module_folder.join("go.mod").is_file(), "{module_folder:?}");
        assert!(module_folder.join("flagger/go.mod").is_file());
        assert!(
            cache_root.ends_with("target/controlplane"),
            "{cache_root:?}"
        );
    }
}
