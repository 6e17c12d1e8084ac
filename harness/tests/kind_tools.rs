//! The kind backend's use of `docker` and `kind`, with fake tools that record how they were
//! called (this machine has neither): the image load's fallback for Docker's containerd image
//! store, the health check before reusing a cluster, and what an interrupt of `up` stops.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gauntlet::cluster::kind::{self, KindConfig};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Writes an executable shell script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default()
}

/// What kind v0.29 prints when `docker save` fails under the containerd image store
/// (kind issue #3795).
const CONTAINERD_STORE_ERROR: &str = r#"ERROR: failed to load image: command "docker save -o /tmp/images-tar1234/images.tar gauntlet/sample-app:latest" failed with error: exit status 1
Command Output: Error response from daemon: unable to create manifests file: NotFound: content digest sha256:5c8e3c5e0e7c1b9d4d0f1b6f2c1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f: not found"#;

/// A fake `docker` and `kind` in `dir`: docker's `save -o FILE` writes FILE; kind's
/// `load docker-image` fails as under the containerd store when `direct_fails`, and
/// `load image-archive FILE` records whether FILE is there.
fn fake_tools(dir: &Path, direct_fails: bool) -> (PathBuf, PathBuf) {
    let log = dir.join("calls.log");
    let log = log.display();
    let docker = script(
        dir,
        "docker",
        &format!(
            "echo \"docker $*\" >> {log}\n\
             if [ \"$1\" = save ] && [ \"$2\" = -o ]; then echo image-bytes > \"$3\"; fi\n"
        ),
    );
    let direct = if direct_fails {
        format!("cat >&2 <<'EOF'\n{CONTAINERD_STORE_ERROR}\nEOF\nexit 1")
    } else {
        "exit 0".into()
    };
    let kind = script(
        dir,
        "kind",
        &format!(
            "echo \"kind $*\" >> {log}\n\
             case \"$1 $2\" in\n\
             \"load docker-image\") {direct};;\n\
             \"load image-archive\") if [ -f \"$3\" ]; then echo \"archive there: $(cat \"$3\")\" >> {log}; fi;;\n\
             esac\n"
        ),
    );
    (docker, kind)
}

#[tokio::test]
async fn a_failed_docker_image_load_falls_back_to_an_archive_it_removes() {
    let dir = tempfile::tempdir().unwrap();
    let (docker, kind_bin) = fake_tools(dir.path(), true);
    let mut said = Vec::new();
    kind::load_image(
        &docker,
        &kind_bin,
        "gauntlet/sample-app:latest",
        "gauntlet",
        dir.path(),
        &mut |l| said.push(l.to_string()),
    )
    .await
    .unwrap();
    let log = log_of(dir.path());
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines[0],
        "kind load docker-image gauntlet/sample-app:latest --name gauntlet"
    );
    let archive = lines[1]
        .strip_prefix("docker save -o ")
        .and_then(|r| r.strip_suffix(" gauntlet/sample-app:latest"))
        .unwrap_or_else(|| panic!("docker save of the image to an archive: {log}"));
    assert!(archive.ends_with(".tar"), "{archive}");
    assert_eq!(
        lines[2],
        format!("kind load image-archive {archive} --name gauntlet")
    );
    assert_eq!(
        lines[3], "archive there: image-bytes",
        "kind got the archive docker wrote"
    );
    assert_eq!(lines.len(), 4, "{log}");
    assert!(!Path::new(archive).exists(), "the archive is removed");
    assert!(
        !Path::new(archive).parent().unwrap().exists(),
        "its folder too"
    );
    let said = said.join("\n");
    assert!(said.contains("kind load image-archive"), "{said}");
    assert!(said.contains("#3795"), "{said}");
    assert!(
        said.contains("content digest"),
        "names kind's error: {said}"
    );
}

#[tokio::test]
async fn a_working_docker_image_load_is_all_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (docker, kind_bin) = fake_tools(dir.path(), false);
    let mut said = Vec::new();
    kind::load_image(
        &docker,
        &kind_bin,
        "gauntlet/sample-app:latest",
        "gauntlet",
        dir.path(),
        &mut |l| said.push(l.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(
        log_of(dir.path()),
        "kind load docker-image gauntlet/sample-app:latest --name gauntlet\n"
    );
    assert!(said.is_empty(), "{said:?}");
}

#[tokio::test]
async fn when_both_loads_fail_the_error_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let (_, kind_bin) = fake_tools(dir.path(), true);
    let docker = script(
        dir.path(),
        "docker-broken",
        "echo 'no space left' >&2\nexit 1\n",
    );
    let e = kind::load_image(
        &docker,
        &kind_bin,
        "gauntlet/sample-app:latest",
        "gauntlet",
        dir.path(),
        &mut |_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("content digest"), "{e}");
    assert!(e.contains("no space left"), "{e}");
}

/// A kubeconfig whose context `kind-gauntlet` points at `server`.
fn kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: kind-gauntlet\n\
             clusters: [{{name: kind-gauntlet, cluster: {{server: \"{server}\"}}}}]\n\
             users: [{{name: kind-gauntlet, user: {{token: fake}}}}]\n\
             contexts: [{{name: kind-gauntlet, context: {{cluster: kind-gauntlet, user: kind-gauntlet}}}}]\n"
        ),
    )
    .unwrap();
    path
}

/// A fake `kind` whose `get clusters` lists `gauntlet`; every call recorded.
fn kind_listing_gauntlet(dir: &Path) -> PathBuf {
    let log = dir.join("calls.log");
    script(
        dir,
        "kind",
        &format!(
            "echo \"kind $*\" >> {}\n\
             if [ \"$1 $2\" = \"get clusters\" ]; then echo gauntlet; fi\n",
            log.display()
        ),
    )
}

fn config() -> KindConfig {
    KindConfig::read(root()).unwrap()
}

#[tokio::test]
async fn an_existing_cluster_that_does_not_answer_is_deleted_and_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let kind_bin = kind_listing_gauntlet(dir.path());
    // A port nothing listens on: the API server of a half-made cluster.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kc = kubeconfig(dir.path(), &format!("https://127.0.0.1:{closed}"));
    let mut said = Vec::new();
    kind::ensure_cluster(
        &kind_bin,
        &config(),
        "kindest/node:v1.34.0",
        dir.path(),
        Some(&kc),
        &mut |l| said.push(l.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(
        log_of(dir.path()),
        "kind get clusters\n\
         kind delete cluster --name gauntlet\n\
         kind create cluster --name gauntlet --config kind-config.yaml --image kindest/node:v1.34.0 --wait 180s\n"
    );
    let said = said.join("\n");
    assert!(said.contains("exists but is not healthy"), "{said}");
    assert!(said.contains("/readyz"), "says what failed: {said}");
}

#[tokio::test]
async fn an_existing_cluster_without_its_context_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let kind_bin = kind_listing_gauntlet(dir.path());
    let kc = dir.path().join("kubeconfig");
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\n").unwrap();
    let mut said = Vec::new();
    kind::ensure_cluster(
        &kind_bin,
        &config(),
        "kindest/node:v1.34.0",
        dir.path(),
        Some(&kc),
        &mut |l| said.push(l.to_string()),
    )
    .await
    .unwrap();
    let log = log_of(dir.path());
    assert!(
        log.contains("kind delete cluster --name gauntlet\nkind create cluster"),
        "{log}"
    );
    assert!(said.join("\n").contains("kind-gauntlet"), "{said:?}");
}

#[tokio::test]
async fn a_healthy_existing_cluster_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let kind_bin = kind_listing_gauntlet(dir.path());
    // An API server that is ready: `/readyz` answers `ok`.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let body = if request.starts_with("GET /readyz") {
                "ok"
            } else {
                "?"
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let kc = kubeconfig(dir.path(), &format!("http://127.0.0.1:{port}"));
    let mut said = Vec::new();
    kind::ensure_cluster(
        &kind_bin,
        &config(),
        "kindest/node:v1.34.0",
        dir.path(),
        Some(&kc),
        &mut |l| said.push(l.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(log_of(dir.path()), "kind get clusters\n");
    assert!(
        said.join("\n").contains("reusing kind cluster `gauntlet`"),
        "{said:?}"
    );
}

/// `gauntlet up --backend kind` in the repository, with fake tools first on PATH: `docker`
/// answers `info`, `kind` lists no cluster and runs `create_body` for `create cluster` (after
/// writing its pid to `kind.pid`).
fn up_with_fake_tools(dir: &Path, create_body: &str) -> std::process::Child {
    script(dir, "docker", "echo 29.0.0\n");
    script(
        dir,
        "kind",
        &format!(
            "case \"$1 $2\" in\n\
             \"version \") echo 'kind v0.29.0 go1.24 linux/amd64';;\n\
             \"create cluster\") echo $$ > {pid}.tmp; mv {pid}.tmp {pid}\n{create_body};;\n\
             esac\n",
            pid = dir.join("kind.pid").display()
        ),
    );
    let path = format!("{}:/usr/bin:/bin", dir.display());
    Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["up", "--backend", "kind"])
        .current_dir(root())
        .env("PATH", path)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The pid `kind create` recorded, once it has.
fn await_create(dir: &Path, up: &mut std::process::Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(pid) = std::fs::read_to_string(dir.join("kind.pid"))
            && let Ok(pid) = pid.trim().parse()
        {
            return pid;
        }
        if let Some(st) = up.try_wait().unwrap() {
            let mut err = String::new();
            up.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("up ended ({st}) before `kind create cluster` ran: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "`kind create cluster` not run within 30s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn sigint(up: &std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
}

/// `up`'s exit code and stderr, waiting at most `within`.
fn finish(up: &mut std::process::Child, within: Duration) -> (Option<i32>, String) {
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(st) = up.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = up.kill();
            panic!("up did not exit within {within:?} of the interrupt");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    up.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.code(), err)
}

/// Waits (at most 10 s) for process `pid` to be gone.
fn await_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[test]
fn an_interrupted_up_stops_kind_create_and_exits_as_an_interrupted_local_up() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("got-term");
    let mut up = up_with_fake_tools(
        dir.path(),
        &format!(
            "trap 'echo TERM > {}; exit 143' TERM\nsleep 300 &\nwait $!",
            marker.display()
        ),
    );
    let kind_pid = await_create(dir.path(), &mut up);
    sigint(&up);
    let (code, err) = finish(&mut up, Duration::from_secs(20));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("SIGINT"), "{err}");
    assert!(
        marker.exists(),
        "`kind create` was asked to stop (SIGTERM): {err}"
    );
    assert!(await_gone(kind_pid), "`kind create` is gone");
}

#[test]
fn a_second_interrupt_during_the_teardown_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A `kind create` that ignores SIGTERM (and so does its `sleep`).
    let mut up = up_with_fake_tools(dir.path(), "trap '' TERM\nsleep 300 &\nwait $!");
    let kind_pid = await_create(dir.path(), &mut up);
    sigint(&up);
    // The first interrupt is being handled once `up` says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stderr = up.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("again to stop at once") {
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&seen)
        );
        let n = stderr.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "up closed stderr: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    up.stderr = Some(stderr);
    let second = Instant::now();
    sigint(&up);
    let (code, err) = finish(&mut up, Duration::from_secs(10));
    assert!(
        second.elapsed() < Duration::from_secs(10),
        "well before the teardown's grace"
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(await_gone(kind_pid), "`kind create` was killed");
}
