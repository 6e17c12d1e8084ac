//! The control plane's build cache, driven through its public API: prebuilt folders, the errors
//! a user meets without Go, and the build orchestration with a fake `go` first on PATH (a shell
//! script that answers what the build asks and records each call). Then the upstream manifests
//! read from the real Go module cache, and one real build (`--ignored`).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gauntlet::cluster::local::controlplane::build::{
    BIN_ENV, Binary, BuildConfig, BuildError, BuildProgress, ControlPlaneBinaries, ensure_async,
    ensure_with,
};
use gauntlet::cluster::local::controlplane::modules::{
    self, ARGO_ROLLOUTS, FLAGGER, workspace_module_folder,
};
use serde_json::Value;

/// The fake: answers `version`, `env`, `list -deps tool` and `build … -v -o DIR/ tool` like go
/// does, steered by files beside it (`version`, `fail-list`, `fail-build`, `hold-build`).
const FAKE_GO: &str = r##"#!/bin/sh
here=$(cd "$(dirname "$0")" && pwd)
mod=$(basename "$PWD")
echo "$mod $*" >> "$here/calls.log"
case "$1" in
version)
  if [ -f "$here/version" ]; then cat "$here/version"; else echo "go version go1.26.8 linux/amd64"; fi ;;
env)
  shift
  for v in "$@"; do
    case "$v" in
      GOOS) echo linux ;; GOARCH) echo amd64 ;; CGO_ENABLED) echo 0 ;;
      GOPROXY) echo https://proxy.invalid ;; *) echo ;;
    esac
  done ;;
list)
  if [ -f "$here/fail-list" ]; then
    echo 'go: k8s.io/api@v0.34.1: Get "https://proxy.invalid/k8s.io/api/@v/v0.34.1.mod": dial tcp: lookup proxy.invalid: no such host' >&2
    exit 1
  fi
  case "$mod" in flagger) n=3 ;; prometheus) n=2 ;; *) n=6 ;; esac
  i=0; while [ $i -lt $n ]; do echo "example.com/$mod/p$i"; i=$((i+1)); done ;;
build)
  out=; prev=
  for a in "$@"; do [ "$prev" = -o ] && out=$a; prev=$a; done
  mkdir -p "$out"
  case "$mod" in
    flagger) names="flagger loadtester"; n=2 ;;
    prometheus) names="prometheus"; n=1 ;;
    *) names="kube-apiserver kube-controller-manager kube-scheduler kube-proxy server rollouts-controller kubectl-argo-rollouts"; n=5 ;;
  esac
  i=0; while [ $i -lt $n ]; do echo "example.com/$mod/p$i" >&2; i=$((i+1)); done
  if [ -f "$here/hold-build" ]; then
    touch "$here/building"
    t=0; while [ ! -f "$here/release" ] && [ $t -lt 600 ]; do sleep 0.05; t=$((t+1)); done
  fi
  if [ -f "$here/fail-build" ]; then
    printf '#!/bin/sh\n' > "${out}kube-apiserver"; chmod +x "${out}kube-apiserver"
    echo "# example.com/$mod/p1" >&2
    echo "p1/a.go:3:9: undefined: frobnicate" >&2
    exit 1
  fi
  for b in $names; do printf '#!/bin/sh\n' > "$out$b"; chmod +x "$out$b"; done ;;
*)
  echo "fake go: unexpected $*" >&2; exit 2 ;;
esac
"##;

/// A copy of the real modules' go.mod/go.sum, a fake `go`, and a cache root, all temporary.
struct Sandbox {
    _tmp: tempfile::TempDir,
    modules: PathBuf,
    fake: PathBuf,
    cache: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let modules = tmp.path().join("controlplane");
        let src = workspace_module_folder();
        for sub in ["", "flagger", "prometheus"] {
            std::fs::create_dir_all(modules.join(sub)).unwrap();
            for name in ["go.mod", "go.sum"] {
                std::fs::copy(src.join(sub).join(name), modules.join(sub).join(name)).unwrap();
            }
        }
        let fake = tmp.path().join("fakebin");
        std::fs::create_dir_all(&fake).unwrap();
        let go = fake.join("go");
        std::fs::write(&go, FAKE_GO).unwrap();
        std::fs::set_permissions(&go, std::fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox {
            cache: tmp.path().join("cache"),
            modules,
            fake,
            _tmp: tmp,
        }
    }

    fn config_with_path(&self, path: OsString) -> BuildConfig {
        BuildConfig::Build {
            module_folder: self.modules.clone(),
            cache_root: self.cache.clone(),
            path: Some(path),
        }
    }

    fn config(&self) -> BuildConfig {
        let mut path = self.fake.as_os_str().to_os_string();
        path.push(":/usr/bin:/bin");
        self.config_with_path(path)
    }

    fn control(&self, name: &str, content: &str) {
        std::fs::write(self.fake.join(name), content).unwrap();
    }

    fn uncontrol(&self, name: &str) {
        std::fs::remove_file(self.fake.join(name)).unwrap();
    }

    /// The calls the fake recorded, as `<module folder name> <args>`.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.fake.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn builds(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.split_whitespace().nth(1) == Some("build"))
            .count()
    }

    fn ensure(&self) -> (Result<ControlPlaneBinaries, BuildError>, Vec<BuildProgress>) {
        let mut events = Vec::new();
        let result = ensure_with(&self.config(), &mut |p| events.push(p));
        (result, events)
    }
}

fn make_executable(path: &Path) {
    std::fs::write(path, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Polls `condition` until it holds; panics with `what` at the deadline.
fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn prebuilt_binaries_are_used_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    for b in Binary::ALL {
        make_executable(&dir.path().join(b.file_name()));
    }
    let config = BuildConfig::from_vars(|name| match name {
        BIN_ENV => Some(dir.path().into()),
        // No go anywhere: a prebuilt folder must never need it.
        "PATH" => Some("/nonexistent".into()),
        _ => None,
    });
    let bins = ensure_with(&config, &mut |p| panic!("no progress expected: {p:?}")).unwrap();
    assert_eq!(bins.dir, dir.path());
    assert_eq!(bins.etcd, dir.path().join("etcd"));
    assert_eq!(bins.path(Binary::Loadtester), dir.path().join("loadtester"));
}

#[test]
fn a_prebuilt_folder_missing_binaries_names_them_and_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    for b in Binary::ALL {
        if !matches!(b, Binary::Etcd | Binary::KubeProxy) {
            make_executable(&dir.path().join(b.file_name()));
        }
    }
    // What `go build -o DIR/` leaves: etcd as `server`.
    make_executable(&dir.path().join("server"));
    // Present but not executable counts as missing.
    std::fs::write(dir.path().join("kube-proxy"), "").unwrap();
    let config = BuildConfig::Prebuilt {
        dir: dir.path().into(),
    };
    let err = ensure_with(&config, &mut |_| {}).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BuildError::MissingPrebuilt { .. }), "{text}");
    assert!(text.contains("lacks etcd, kube-proxy"), "{text}");
    assert!(
        text.contains(&dir.path().join("kube-proxy").display().to_string()),
        "{text}"
    );
    assert!(text.contains("rename it to `etcd`"), "{text}");
    assert!(text.contains(BIN_ENV), "{text}");
}

#[test]
fn without_go_on_path_the_error_says_what_to_install_or_set() {
    let sandbox = Sandbox::new();
    let empty = tempfile::tempdir().unwrap();
    let config = sandbox.config_with_path(empty.path().as_os_str().to_os_string());
    let err = ensure_with(&config, &mut |_| {}).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BuildError::NoGo { .. }), "{text}");
    assert!(text.contains("Go ≥ 1.26.0 is needed"), "{text}");
    assert!(text.contains("not found on PATH"), "{text}");
    assert!(
        text.contains("GAUNTLET_CONTROLPLANE_BIN to a folder with etcd, kube-apiserver"),
        "{text}"
    );
    assert!(!sandbox.cache.exists(), "nothing is created without go");
}

#[test]
fn a_missing_module_folder_is_named_with_the_variable_that_moves_it() {
    let sandbox = Sandbox::new();
    std::fs::remove_dir_all(sandbox.modules.join("flagger")).unwrap();
    let err = sandbox.ensure().0.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BuildError::ModuleNotFound { .. }), "{text}");
    assert!(text.contains("flagger/go.mod does not exist"), "{text}");
    assert!(text.contains("GAUNTLET_CONTROLPLANE_MODULE"), "{text}");
}

#[test]
fn a_go_older_than_the_modules_need_is_refused() {
    let sandbox = Sandbox::new();
    sandbox.control("version", "go version go1.25.4 linux/amd64\n");
    let err = sandbox.ensure().0.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BuildError::GoTooOld { .. }), "{text}");
    assert!(text.contains("Go ≥ 1.26.0"), "{text}");
    assert!(text.contains("go1.25.4"), "{text}");
    assert_eq!(sandbox.builds(), 0);
}

#[test]
fn a_build_fills_the_cache_and_the_next_start_builds_nothing() {
    let sandbox = Sandbox::new();
    let (bins, events) = sandbox.ensure();
    let bins = bins.unwrap();

    assert!(bins.dir.starts_with(&sandbox.cache), "{:?}", bins.dir);
    for b in Binary::ALL {
        let meta = std::fs::metadata(bins.path(b)).unwrap();
        assert!(meta.permissions().mode() & 0o111 != 0, "{b:?}");
    }
    assert!(bins.etcd.ends_with("bin/etcd"));
    assert!(!bins.dir.join("server").exists(), "etcd keeps go's name");
    let flags: Vec<_> = sandbox
        .calls()
        .into_iter()
        .filter(|c| c.contains(" build "))
        .collect();
    assert_eq!(flags.len(), 3, "{flags:?}");
    for call in &flags {
        assert!(
            call.contains("build -trimpath -ldflags=-s -w ") && call.ends_with("/ tool"),
            "{call}"
        );
    }
    // Each project's version, from its pin, as its own build stamps it.
    assert!(
        flags[0].contains("-X k8s.io/component-base/version.gitVersion=v1.34.1"),
        "{}",
        flags[0]
    );
    assert!(
        flags[2].contains("-X github.com/prometheus/common/version.Version=2.55.1"),
        "{}",
        flags[2]
    );

    // Progress: both modules listed, then counts that only grow, up to the listed total.
    let listed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            BuildProgress::Listing { module } => Some(*module),
            _ => None,
        })
        .collect();
    assert_eq!(
        listed,
        [
            "gauntlet.local/controlplane",
            "gauntlet.local/controlplane/flagger",
            "gauntlet.local/controlplane/prometheus"
        ]
    );
    let counts: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            BuildProgress::Compiling { done, total, .. } => Some((*done, *total)),
            _ => None,
        })
        .collect();
    assert!(counts.iter().all(|&(_, total)| total == 11), "{counts:?}");
    assert!(counts.windows(2).all(|w| w[0].0 <= w[1].0), "{counts:?}");
    // One event per package go names (heartbeats may repeat a count).
    for n in 1..=5 {
        assert!(counts.iter().any(|c| c.0 == n), "{n} in {counts:?}");
    }
    assert_eq!(counts.last().map(|c| c.0), Some(11));
    assert!(
        events.iter().any(|e| matches!(e,
            BuildProgress::Compiling { package, .. } if package.ends_with("/p4"))),
        "the current package is reported"
    );
    assert!(matches!(
        events.last(),
        Some(BuildProgress::Done { built: true, .. })
    ));
    let log = bins.dir.parent().unwrap().join("build.log");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("flagger/p1"), "go's output is logged: {log}");

    // Second start: the same folder, no list, no build.
    let calls_before = sandbox.calls().len();
    let (again, events) = sandbox.ensure();
    assert_eq!(again.unwrap(), bins);
    let new_calls = &sandbox.calls()[calls_before..];
    assert!(
        new_calls
            .iter()
            .all(|c| c.contains(" version") || c.contains(" env ")),
        "{new_calls:?}"
    );
    assert!(matches!(
        events.as_slice(),
        [BuildProgress::Done { built: false, .. }]
    ));
}

#[test]
fn a_changed_pin_builds_into_a_new_folder() {
    let sandbox = Sandbox::new();
    let first = sandbox.ensure().0.unwrap();
    let sum = sandbox.modules.join("go.sum");
    let mut bytes = std::fs::read(&sum).unwrap();
    bytes.extend_from_slice(b"example.com/x v1.0.0/go.mod h1:AAAA=\n");
    std::fs::write(&sum, bytes).unwrap();
    let second = sandbox.ensure().0.unwrap();
    assert_ne!(first.dir, second.dir);
    assert_eq!(sandbox.builds(), 6);
    assert!(first.etcd.exists(), "the old key's folder is left alone");
}

#[test]
fn a_half_built_folder_is_wiped_and_rebuilt() {
    let sandbox = Sandbox::new();
    sandbox.control("fail-build", "");
    let err = sandbox.ensure().0.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BuildError::CompileFailed { .. }), "{text}");
    assert!(text.contains("undefined: frobnicate"), "{text}");
    assert!(text.contains("go build -trimpath"), "{text}");
    let BuildError::CompileFailed { log, .. } = &err else {
        unreachable!()
    };
    assert!(text.contains(&log.display().to_string()), "{text}");
    assert!(
        std::fs::read_to_string(log)
            .unwrap()
            .contains("undefined: frobnicate")
    );
    // What the failed build left: one binary, no marker; plus a leftover lock file.
    let key_dir = log.parent().unwrap().to_path_buf();
    assert!(key_dir.join("bin/kube-apiserver").exists());
    assert!(!key_dir.join("complete").exists());
    assert!(key_dir.join("lock").exists());
    std::fs::write(key_dir.join("bin/stray"), "").unwrap();

    sandbox.uncontrol("fail-build");
    let bins = sandbox.ensure().0.unwrap();
    assert_eq!(bins.dir, key_dir.join("bin"));
    assert!(
        !key_dir.join("bin/stray").exists(),
        "the half-built folder was wiped"
    );
    assert!(key_dir.join("complete").exists());

    // Killed after building, before the marker: rebuilt too.
    std::fs::remove_file(key_dir.join("complete")).unwrap();
    let builds = sandbox.builds();
    sandbox.ensure().0.unwrap();
    assert_eq!(sandbox.builds(), builds + 3);
}

#[test]
fn a_failed_download_names_the_proxy_and_goflags() {
    let sandbox = Sandbox::new();
    sandbox.control("fail-list", "");
    let err = sandbox.ensure().0.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BuildError::DownloadFailed { .. }), "{text}");
    assert!(text.contains("no such host"), "{text}");
    assert!(text.contains("GOPROXY=`https://proxy.invalid`"), "{text}");
    assert!(text.contains("GOFLAGS"), "{text}");
    assert_eq!(sandbox.builds(), 0);
}

#[test]
fn a_second_start_waits_for_the_first_build_and_uses_it() {
    let sandbox = std::sync::Arc::new(Sandbox::new());
    sandbox.control("hold-build", "");
    let first = {
        let sandbox = sandbox.clone();
        std::thread::spawn(move || sandbox.ensure().0)
    };
    wait_for("the first build to start", || {
        sandbox.fake.join("building").exists()
    });

    let (tx, rx) = mpsc::channel();
    let second = {
        let config = sandbox.config();
        std::thread::spawn(move || ensure_with(&config, &mut |p| drop(tx.send(p))))
    };
    // Its first event: it found the lock held.
    match rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the second start reports waiting")
    {
        BuildProgress::WaitingForLock { lock } => assert!(lock.ends_with("lock")),
        other => panic!("the second start must wait, not {other:?}"),
    }
    sandbox.control("release", "");
    let first = first.join().unwrap().unwrap();
    let second = second.join().unwrap().unwrap();
    assert_eq!(first, second);
    assert_eq!(sandbox.builds(), 3, "built once (three modules)");
    let rest: Vec<_> = rx.try_iter().collect();
    assert!(
        matches!(rest.as_slice(), [BuildProgress::Done { built: false, .. }]),
        "{rest:?}"
    );
}

#[test]
fn a_silent_build_still_reports_progress() {
    let sandbox = std::sync::Arc::new(Sandbox::new());
    sandbox.control("hold-build", "");
    let (tx, rx) = mpsc::channel();
    let build = {
        let config = sandbox.config();
        std::thread::spawn(move || ensure_with(&config, &mut |p| drop(tx.send(p))))
    };
    // The fake names its 5 packages, then says nothing until released: the fifth count comes
    // again, as heartbeats.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut repeats = 0;
    while repeats < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = rx.recv_timeout(left).expect("progress while go is silent");
        if let BuildProgress::Compiling {
            done: 5, package, ..
        } = event
        {
            assert!(package.ends_with("/p4"), "{package}");
            repeats += 1;
        }
    }
    sandbox.control("release", "");
    build.join().unwrap().unwrap();
}

#[tokio::test]
async fn the_async_entry_runs_the_build_off_the_runtime() {
    let sandbox = Sandbox::new();
    let (tx, rx) = mpsc::channel();
    let bins = ensure_async(sandbox.config(), move |p| drop(tx.send(p)))
        .await
        .unwrap();
    assert!(bins.kubectl_argo_rollouts.exists());
    assert!(
        rx.try_iter()
            .any(|p| matches!(p, BuildProgress::Done { built: true, .. }))
    );
}

// --- The upstream manifests, from the real module cache (needs the Go module proxy or a filled
// cache, and `go`).

fn names_of(objects: &[Value], kind: &str) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn module_dir_is_the_pinned_download() {
    let folder = workspace_module_folder();
    let argo = modules::module_dir(&folder, ARGO_ROLLOUTS).unwrap();
    assert!(argo.ends_with("argo-rollouts@v1.9.1"), "{argo:?}");
    let flagger = modules::module_dir(&folder.join("flagger"), FLAGGER).unwrap();
    assert!(flagger.ends_with("flagger@v1.44.0"), "{flagger:?}");
    let err = modules::module_dir(&folder, FLAGGER)
        .unwrap_err()
        .to_string();
    assert!(err.contains(FLAGGER) && err.contains("GOPROXY"), "{err}");
}

#[test]
fn argo_rollouts_manifests_come_from_the_module() {
    let folder = workspace_module_folder();
    let crds = modules::argo_rollouts_crds(&folder).unwrap();
    let names = names_of(&crds, "CustomResourceDefinition");
    assert_eq!(names.len(), crds.len());
    for name in [
        "rollouts.argoproj.io",
        "analysisruns.argoproj.io",
        "analysistemplates.argoproj.io",
        "clusteranalysistemplates.argoproj.io",
        "experiments.argoproj.io",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let rbac = modules::argo_rollouts_rbac(&folder).unwrap();
    assert_eq!(names_of(&rbac, "ClusterRole"), ["argo-rollouts"]);
    assert_eq!(names_of(&rbac, "ClusterRoleBinding"), ["argo-rollouts"]);
    assert_eq!(names_of(&rbac, "ServiceAccount"), ["argo-rollouts"]);
}

#[test]
fn flagger_manifests_come_from_the_module() {
    let folder = workspace_module_folder();
    let crds = modules::flagger_crds(&folder).unwrap();
    let names = names_of(&crds, "CustomResourceDefinition");
    for name in ["canaries.flagger.app", "metrictemplates.flagger.app"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let rbac = modules::flagger_rbac(&folder).unwrap();
    assert_eq!(names_of(&rbac, "ClusterRole"), ["flagger"]);
    assert_eq!(names_of(&rbac, "ClusterRoleBinding"), ["flagger"]);
    assert_eq!(names_of(&rbac, "ServiceAccount"), ["flagger"]);
    let tester = modules::flagger_loadtester(&folder).unwrap();
    assert_eq!(names_of(&tester, "Deployment"), ["flagger-loadtester"]);
    assert_eq!(names_of(&tester, "Service"), ["flagger-loadtester"]);
}

#[test]
fn a_file_missing_from_the_module_is_named() {
    let folder = workspace_module_folder();
    let err = modules::read_manifests(&folder, ARGO_ROLLOUTS, &["manifests/nope.yaml"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("manifests/nope.yaml"), "{err}");
    assert!(err.contains(ARGO_ROLLOUTS), "{err}");
}

/// The real thing: `go build` of both modules into `target/controlplane` (minutes when the Go
/// build cache is cold). `cargo test -p gauntlet --test controlplane_build -- --ignored --nocapture`
#[test]
#[ignore = "runs the real go build of the control plane (minutes)"]
fn real_ensure_builds_runnable_binaries() {
    let started = Instant::now();
    let mut renderer = gauntlet::cluster::local::controlplane::build::ProgressRenderer::new(false);
    let bins = ensure_with(&BuildConfig::from_env(), &mut |p| renderer.update(&p)).unwrap();
    eprintln!(
        "ensure took {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        bins.dir.display()
    );
    for (binary, args) in [
        (Binary::Etcd, &["--version"][..]),
        (Binary::KubeApiserver, &["--version"][..]),
        (Binary::Flagger, &["--version"][..]),
    ] {
        let out = std::process::Command::new(bins.path(binary))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{binary:?}: {out:?}");
    }
    let again = Instant::now();
    ensure_with(&BuildConfig::from_env(), &mut |_| {}).unwrap();
    eprintln!("second ensure took {:.2}s", again.elapsed().as_secs_f64());
}
