//! Reaching a Service of the cluster from the harness: `kubectl port-forward` as a child
//! process (kube-rs' own port-forward needs its websocket feature, which would add a TLS
//! websocket stack to the build for two connections). Used on the kube backend for Prometheus
//! (range dumps) and the ingress controller (load); on kind both are host ports of
//! `kind-config.yaml` instead.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cluster::InfraError;

/// A running `kubectl port-forward`; stopped when dropped.
pub struct PortForward {
    _child: Child,
    local: u16,
}

impl PortForward {
    /// Forwards a free port on 127.0.0.1 to `resource` (e.g. `svc/prometheus`) port `remote`
    /// in `namespace`, and waits (at most `within`) until kubectl reports it is listening.
    ///
    /// # Errors
    /// kubectl is missing, exits, or does not report the forward in time.
    pub async fn start(
        context: Option<&str>,
        namespace: &str,
        resource: &str,
        remote: u16,
        within: Duration,
    ) -> Result<PortForward, InfraError> {
        let what = format!("port-forward to {namespace}/{resource}:{remote}");
        let mut cmd = Command::new("kubectl");
        if let Some(c) = context {
            cmd.args(["--context", c]);
        }
        cmd.args(["-n", namespace, "port-forward", "--address", "127.0.0.1"])
            .arg(resource)
            .arg(format!(":{remote}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| InfraError::StartFailed {
            what: what.clone(),
            reason: format!("cannot run kubectl ({e}); install kubectl and put it on PATH"),
        })?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(within, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(port) = parse_forwarding(&line) {
                    return Some(port);
                }
            }
            None
        })
        .await;
        let local = match found {
            Ok(Some(p)) => p,
            other => {
                let _ = child.start_kill();
                let mut err = String::new();
                let mut r = BufReader::new(stderr).lines();
                while let Ok(Ok(Some(l))) =
                    tokio::time::timeout(Duration::from_millis(200), r.next_line()).await
                {
                    err.push_str(&l);
                    err.push(' ');
                }
                return Err(InfraError::NotReady {
                    what,
                    within,
                    detail: if other.is_err() {
                        format!("kubectl reported no forward: {err}")
                    } else {
                        format!("kubectl exited: {err}")
                    },
                });
            }
        };
        // kubectl prints a line per connection: keep draining so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        tokio::spawn(async move {
            let mut r = BufReader::new(stderr).lines();
            while let Ok(Some(l)) = r.next_line().await {
                tracing::debug!("kubectl port-forward: {l}");
            }
        });
        Ok(PortForward {
            _child: child,
            local,
        })
    }

    pub fn port(&self) -> u16 {
        self.local
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.local)
    }
}

/// The local port of kubectl's `Forwarding from 127.0.0.1:PORT -> REMOTE`.
pub fn parse_forwarding(line: &str) -> Option<u16> {
    let rest = line.trim().strip_prefix("Forwarding from 127.0.0.1:")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_kubectls_forwarding_line() {
        assert_eq!(
            super::parse_forwarding("Forwarding from 127.0.0.1:38123 -> 9090"),
            Some(38123)
        );
        assert_eq!(
            super::parse_forwarding("Forwarding from [::1]:38123 -> 9090"),
            None
        );
    }
}
