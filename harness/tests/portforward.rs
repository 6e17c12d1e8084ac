//! The kube backend's port-forward to the ingress: when kubectl's forward drops (its
//! connection to the pod or the API server broke), it is restarted on the same local port and
//! the drop is counted, so that the runner can report the gap as infrastructure.
//!
//! kubectl is played by a script that does what `kubectl port-forward` does on the local side:
//! listens on the port it is given (or a free one), prints kubectl's `Forwarding from` line,
//! answers one HTTP request and exits, as a forward whose pod went away does.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use gauntlet::cluster::kube::portforward::PortForward;

const FAKE_KUBECTL: &str = r#"#!/usr/bin/env python3
import socket, sys
spec = sys.argv[-1]
with open(sys.argv[0] + ".calls", "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")
local = spec.split(":")[0]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(local) if local else 0))
s.listen(8)
print("Forwarding from 127.0.0.1:%d -> %s" % (s.getsockname()[1], spec.split(":")[1]), flush=True)
c, _ = s.accept()
c.recv(4096)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
c.close()
sys.exit(1)
"#;

/// One GET through the forward; `None` while nothing answers.
fn get(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.ends_with("ok").then_some(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_forward_is_restarted_on_the_same_port_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let kubectl = dir.path().join("kubectl");
    std::fs::write(&kubectl, FAKE_KUBECTL).unwrap();
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = PortForward::start_with(
        kubectl.as_os_str(),
        Some("staging"),
        "ingress-nginx",
        "svc/ingress-nginx-controller",
        80,
        Duration::from_secs(20),
    )
    .await
    .expect("the forward starts");
    let port = f.port();
    assert_eq!(f.drops(), 0);
    // The first request is answered, then the forward drops.
    let first = tokio::task::spawn_blocking(move || get(port))
        .await
        .unwrap();
    assert!(first.is_some(), "the forward answered nothing");
    // It comes back on the same port, counted as a drop.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if f.drops() >= 1
            && tokio::task::spawn_blocking(move || get(port))
                .await
                .unwrap()
                .is_some()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the forward was not restarted on 127.0.0.1:{port} (drops: {})",
            f.drops()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = std::fs::read_to_string(dir.path().join("kubectl.calls")).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert!(calls.len() >= 2, "{calls:?}");
    assert_eq!(
        calls[0],
        "--context staging -n ingress-nginx port-forward --address 127.0.0.1 svc/ingress-nginx-controller :80"
    );
    assert_eq!(
        calls[1],
        format!(
            "--context staging -n ingress-nginx port-forward --address 127.0.0.1 svc/ingress-nginx-controller {port}:80"
        )
    );
    assert!(
        f.what()
            .contains("ingress-nginx/svc/ingress-nginx-controller:80")
    );
}
