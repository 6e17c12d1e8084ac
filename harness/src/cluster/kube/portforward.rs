//! Reaching a Service of the cluster from the harness: `kubectl port-forward` as a child
//! process (kube-rs' own port-forward needs its websocket feature, which would add a TLS
//! websocket stack to the build for two connections). Used on the kube backend for Prometheus
//! (range dumps) and, unless `--ingress-url` names a direct address, the ingress controller
//! (load); on kind both are host ports of `kind-config.yaml` instead.
//!
//! kubectl's forward ends when its connection to the API server or the pod breaks (a pod
//! restart, an idle timeout of a load balancer in between). Every request sent meanwhile
//! would count as the release's client error, so a dropped forward is restarted on the same
//! local port and counted: the runner turns a scenario that saw a drop into an infrastructure
//! failure instead of a verdict.

use std::ffi::{OsStr, OsString};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::cluster::InfraError;

/// How long to wait before restarting a dropped forward (kubectl fails at once while the API
/// server or the pod is away).
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// A running `kubectl port-forward`, restarted when it drops; stopped when dropped.
pub struct PortForward {
    local: u16,
    what: String,
    drops: Arc<AtomicU64>,
    supervisor: JoinHandle<()>,
}

impl Drop for PortForward {
    fn drop(&mut self) {
        // The task owns the child, which is killed when the task's future is dropped.
        self.supervisor.abort();
    }
}

/// What to forward, kept for restarts.
#[derive(Clone)]
struct Forward {
    kubectl: OsString,
    context: Option<String>,
    namespace: String,
    resource: String,
    remote: u16,
    what: String,
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
        PortForward::start_with(
            OsStr::new("kubectl"),
            context,
            namespace,
            resource,
            remote,
            within,
        )
        .await
    }

    /// [`PortForward::start`] with another kubectl (tests give a stand-in).
    ///
    /// # Errors
    /// As [`PortForward::start`].
    pub async fn start_with(
        kubectl: &OsStr,
        context: Option<&str>,
        namespace: &str,
        resource: &str,
        remote: u16,
        within: Duration,
    ) -> Result<PortForward, InfraError> {
        let f = Forward {
            kubectl: kubectl.to_os_string(),
            context: context.map(str::to_string),
            namespace: namespace.to_string(),
            resource: resource.to_string(),
            remote,
            what: format!("port-forward to {namespace}/{resource}:{remote}"),
        };
        let (child, local) = f.spawn(None, within).await?;
        let drops = Arc::new(AtomicU64::new(0));
        let supervisor = tokio::spawn(supervise(f.clone(), child, local, drops.clone()));
        Ok(PortForward {
            local,
            what: f.what,
            drops,
            supervisor,
        })
    }

    pub fn port(&self) -> u16 {
        self.local
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.local)
    }

    /// What is forwarded, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// How often the forward has dropped (and been restarted) so far.
    pub fn drops(&self) -> u64 {
        self.drops.load(Ordering::SeqCst)
    }
}

/// Restarts the forward on the same local port whenever kubectl exits, until aborted.
async fn supervise(f: Forward, mut child: Child, local: u16, drops: Arc<AtomicU64>) {
    loop {
        let status = child.wait().await;
        drops.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(
            "{} dropped ({}); restarting it on 127.0.0.1:{local}",
            f.what,
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        );
        loop {
            tokio::time::sleep(RESTART_AFTER).await;
            match f.spawn(Some(local), Duration::from_secs(30)).await {
                Ok((c, _)) => {
                    child = c;
                    break;
                }
                Err(e) => tracing::warn!("restarting {}: {e}", f.what),
            }
        }
    }
}

impl Forward {
    /// Starts kubectl on `local` (a free port when `None`) and waits for its
    /// `Forwarding from` line.
    async fn spawn(
        &self,
        local: Option<u16>,
        within: Duration,
    ) -> Result<(Child, u16), InfraError> {
        let mut cmd = Command::new(&self.kubectl);
        if let Some(c) = &self.context {
            cmd.args(["--context", c]);
        }
        cmd.args([
            "-n",
            &self.namespace,
            "port-forward",
            "--address",
            "127.0.0.1",
        ])
        .arg(&self.resource)
        .arg(match local {
            Some(p) => format!("{p}:{}", self.remote),
            None => format!(":{}", self.remote),
        })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| InfraError::StartFailed {
            what: self.what.clone(),
            reason: format!("cannot run kubectl ({e}); install kubectl and put it on PATH"),
        })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(InfraError::StartFailed {
                what: self.what.clone(),
                reason: "kubectl's output could not be read".into(),
            });
        };
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
        let port = match found {
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
                    what: self.what.clone(),
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
        Ok((child, port))
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
