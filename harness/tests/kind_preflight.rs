//! The kind backend on a machine without Docker (this one): the preflight names what is missing
//! and how to get it, `up` stops there before touching anything, and the download lock refuses
//! what is not pinned. Downloads are exercised against a server on 127.0.0.1.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gauntlet::cluster::kind::lock::{self, Fetch, Lock, LockedFile, UNPINNED, sha256_hex};
use gauntlet::cluster::kind::{self, UpOptions};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn preflight_names_docker_when_it_is_unusable() {
    match kind::preflight() {
        Err(e) => {
            let msg = e.to_string();
            eprintln!("preflight here: {msg}");
            assert!(msg.contains("Docker"), "{msg}");
            assert!(msg.contains("docs.docker.com"), "says how to get it: {msg}");
            assert_eq!(kind::unavailable(), Some(msg));
        }
        // A machine with a working Docker and kind: nothing to check here.
        Ok(tools) => eprintln!("docker and kind are usable here: {tools:?}"),
    }
}

#[test]
fn preflight_without_docker_on_path_says_so() {
    let empty = tempfile::tempdir().unwrap();
    let e = kind::preflight_on(Some(empty.path().as_os_str()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`docker` is not on PATH"), "{e}");
    assert!(e.contains("install Docker Engine"), "{e}");
}

#[test]
fn preflight_with_docker_but_no_kind_names_kind() {
    // A fake `docker` whose daemon answers, and no kind.
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("docker");
    std::fs::write(&docker, "#!/bin/sh\necho 28.2.2\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = kind::preflight_on(Some(dir.path().as_os_str()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`kind` is not on PATH"), "{e}");
    assert!(e.contains("kind.sigs.k8s.io"), "{e}");
}

#[tokio::test]
async fn up_stops_at_the_preflight_before_touching_anything() {
    if kind::preflight().is_ok() {
        eprintln!("docker and kind are usable here: not running `up` from a test");
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let mut opts = UpOptions::new(root());
    opts.cache_dir = cache.path().to_path_buf();
    let mut said = Vec::new();
    let e = kind::up(&opts, &mut |l| said.push(l.to_string()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Docker"), "{e}");
    assert!(said.is_empty(), "{said:?}");
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

/// A file server on 127.0.0.1 that counts its requests.
async fn serve(body: &'static str) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/{file}",
        axum::routing::get(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                body
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

const MANIFEST: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n";

fn lock_text(url: &str, sha: &str) -> String {
    format!(
        "# comment kept\nnodeImage: kindest/node:v1.33.1\ncomponents:\n  - name: x\n    version: v1\n    namespace: x\n    files:\n      - url: {url}\n        sha256: {sha}\n"
    )
}

#[tokio::test]
async fn unpinned_downloads_are_refused_unless_opted_in_and_then_pinned() {
    let (base, hits) = serve(MANIFEST).await;
    let url = format!("{base}/install.yaml");
    let dir = tempfile::tempdir().unwrap();
    let lock_path = dir.path().join("manifests.lock");
    std::fs::write(&lock_path, lock_text(&url, UNPINNED)).unwrap();
    let mut f = Fetch {
        lock_path: lock_path.clone(),
        cache_dir: dir.path().join("cache"),
        pin_unpinned: false,
        timeout: Duration::from_secs(10),
    };
    let file = Lock::read(&lock_path).unwrap().components[0].files[0].clone();

    let e = lock::fetch(&f, &file).await.unwrap_err().to_string();
    assert!(e.contains(lock::PIN_ENV), "{e}");
    assert!(e.contains("UNPINNED"), "{e}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing downloaded");

    f.pin_unpinned = true;
    let bytes = lock::fetch(&f, &file).await.unwrap();
    assert_eq!(bytes, MANIFEST.as_bytes());
    let sha = sha256_hex(MANIFEST.as_bytes());
    assert_eq!(
        std::fs::read_to_string(&lock_path).unwrap(),
        lock_text(&url, &sha),
        "the observed hash replaced UNPINNED, comments kept"
    );

    // Pinned now: the cached copy is used, without the opt-in, without a download.
    f.pin_unpinned = false;
    let pinned = Lock::read(&lock_path).unwrap().components[0].files[0].clone();
    assert_eq!(pinned.pin(), Some(sha.as_str()));
    assert_eq!(lock::fetch(&f, &pinned).await.unwrap(), MANIFEST.as_bytes());
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // A damaged cache is never used: downloaded again and checked.
    let cached = f.cache_dir.join(lock::cache_name(&url));
    std::fs::write(&cached, "tampered").unwrap();
    assert_eq!(lock::fetch(&f, &pinned).await.unwrap(), MANIFEST.as_bytes());
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(std::fs::read(&cached).unwrap(), MANIFEST.as_bytes());
}

#[tokio::test]
async fn a_download_that_does_not_match_its_pin_is_refused_and_not_cached() {
    let (base, _) = serve("something else\n").await;
    let dir = tempfile::tempdir().unwrap();
    let f = Fetch {
        lock_path: dir.path().join("manifests.lock"),
        cache_dir: dir.path().join("cache"),
        pin_unpinned: true,
        timeout: Duration::from_secs(10),
    };
    let file = LockedFile {
        url: format!("{base}/install.yaml"),
        sha256: sha256_hex(MANIFEST.as_bytes()),
    };
    let e = lock::fetch(&f, &file).await.unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(!f.cache_dir.join(lock::cache_name(&file.url)).exists());
}

#[test]
fn the_repository_lock_says_plainly_what_is_unpinned() {
    let lock = Lock::read(&root().join(kind::LOCK)).unwrap();
    let text = std::fs::read_to_string(root().join(kind::LOCK)).unwrap();
    // Every entry is either a real hash or the explicit marker, and the file explains the
    // marker and the opt-in.
    for f in lock.components.iter().flat_map(|c| &c.files) {
        assert!(f.pin().is_some() || f.sha256 == UNPINNED, "{f:?}");
    }
    assert!(text.contains(lock::PIN_ENV));
    assert!(
        lock.components
            .iter()
            .any(|c| c.name == "argo-rollouts" && c.files[0].url.ends_with("/v1.9.1/install.yaml"))
    );
}
