//! `gauntlet up --backend local`: the real binary, its stack, and its cleanup on a signal.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn gauntlet() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gauntlet"));
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    cmd
}

/// Processes whose command line mentions `needle` (nginx and Prometheus name their folder).
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let c = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            c.contains(needle).then(|| format!("{pid}: {c}"))
        })
        .collect()
}

/// Direct children of `parent` (nginx's master, Prometheus, the pods).
fn children_of(parent: u32) -> Vec<u32> {
    gauntlet::cluster::local::process::children_of(parent)
}

/// Memory cgroups gauntlet process `pid` created (named `gauntlet-<pid>-<n>`), anywhere.
fn cgroups_of(pid: u32) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, prefix: &str, depth: u32, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(p.clone());
            }
            if depth > 0 {
                walk(&p, prefix, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        Path::new("/sys/fs/cgroup"),
        &format!("gauntlet-{pid}-"),
        4,
        &mut out,
    );
    out
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "gauntlet did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn refused(url: &str) -> bool {
    let addr = url.trim_start_matches("http://");
    std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1)).is_err()
}

#[tokio::test]
async fn up_serves_the_baseline_and_sigint_removes_everything() {
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = gauntlet()
            .args(["up", "--backend", "local", "--target", "fixtures/apps/argo"])
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ingress = lines.next().unwrap().unwrap();
        let prometheus = lines.next().unwrap().unwrap();
        let ingress = ingress
            .strip_prefix("ingress: ")
            .expect(&ingress)
            .to_string();
        let prometheus = prometheus
            .strip_prefix("prometheus: ")
            .expect(&prometheus)
            .to_string();
        assert!(ingress.starts_with("http://127.0.0.1:"));
        assert!(prometheus.starts_with("http://127.0.0.1:"));

        let body = get(&format!("{ingress}/")).await;
        assert!(body.contains(r#""version":"1.0.0""#), "{body}");
        let ready = get(&format!("{prometheus}/-/ready")).await;
        assert!(ready.contains("Ready"), "{ready}");
        let dir = tmp.path().display().to_string();
        assert!(
            !processes_mentioning(&dir).is_empty(),
            "nginx and Prometheus run"
        );

        let children = children_of(child.id());
        assert!(
            children.len() >= 4,
            "nginx, Prometheus, 2 pods: {children:?}"
        );
        if Path::new("/sys/fs/cgroup/memory").exists()
            && std::env::var_os("GAUNTLET_NO_CGROUP").is_none()
        {
            assert!(
                !cgroups_of(child.id()).is_empty(),
                "pods run in a memory cgroup"
            );
        }
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(30));
        assert_eq!(status.code(), Some(0), "{signal}");
        assert_eq!(processes_mentioning(&dir), Vec::<String>::new(), "{signal}");
        let alive: Vec<_> = children
            .iter()
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .collect();
        assert!(
            alive.is_empty(),
            "{signal}: children still alive: {alive:?}"
        );
        let cgroups = cgroups_of(child.id());
        assert!(cgroups.is_empty(), "{signal}: cgroups left: {cgroups:?}");
        assert!(
            refused(&ingress) && refused(&prometheus),
            "{signal}: ports released"
        );
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(left.is_empty(), "{signal}: temp folder left: {left:?}");
    }
}

#[test]
fn a_missing_nginx_is_an_infrastructure_error_naming_the_package() {
    let out = gauntlet()
        .args(["up", "--target", "fixtures/apps/argo"])
        .env("GAUNTLET_NGINX", "/nonexistent/nginx")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apt-get install -y nginx"), "{err}");
    assert!(err.contains("GAUNTLET_NGINX"), "{err}");
}

#[test]
fn a_target_without_a_rollout_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("x.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .unwrap();
    let out = gauntlet()
        .args(["up", "--target"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
}

async fn get(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[test]
fn up_on_kind_without_docker_exits_3_naming_what_is_missing() {
    let Some(missing) = gauntlet::cluster::kind::unavailable() else {
        eprintln!("skipped: Docker and kind are usable here");
        return;
    };
    let out = gauntlet()
        .args(["up", "--backend", "kind"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    // The preflight's own message (tests/kind_preflight.rs: it names Docker when Docker is
    // what is missing, with where to get it).
    assert!(err.contains(&missing), "{err}");
    if std::process::Command::new("docker")
        .arg("info")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        assert!(err.contains("Docker"), "{err}");
    }
}

#[test]
fn up_and_down_on_an_existing_cluster_say_what_to_do_instead() {
    let out = gauntlet()
        .args(["up", "--backend", "kube"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gauntlet run --backend kube --context NAME"),
        "{err}"
    );
    assert!(err.contains("fixtures/kind/README.md"), "{err}");
    // `down --backend kube` removes a killed run's namespaces; with no cluster configured it
    // says how to name one (its work is tested against a real API server in real_local.rs).
    let empty = tempfile::tempdir().unwrap();
    let out = gauntlet()
        .args(["down", "--backend", "kube"])
        .env("KUBECONFIG", empty.path().join("none"))
        .env("HOME", empty.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("--context or set KUBECONFIG"), "{err}");
}

#[tokio::test]
async fn up_serves_a_flagger_baseline_through_the_primary() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = gauntlet()
        .args(["up", "--target", "fixtures/apps/flagger"])
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ingress = lines.next().unwrap().unwrap();
    let ingress = ingress
        .strip_prefix("ingress: ")
        .expect(&ingress)
        .to_string();
    let body = get(&format!("{ingress}/")).await;
    assert!(body.contains(r#""version":"1.0.0""#), "{body}");
    assert!(
        body.contains("sample-app-primary-"),
        "served by the primary: {body}"
    );
    let children = children_of(child.id());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(30)).code(),
        Some(0)
    );
    let alive: Vec<_> = children
        .iter()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(alive.is_empty(), "children still alive: {alive:?}");
}
