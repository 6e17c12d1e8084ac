//! One long-running process of a cluster (etcd, kube-apiserver, a controller, the loadtester):
//! started inside the cluster's namespace and cgroup, with its own log file, a clean
//! environment, and the same lifetime rules as every child of gauntlet (own process group,
//! `PR_SET_PDEATHSIG`, registered for the last-resort kill).

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cluster::InfraError;
use crate::cluster::local::net::Placement;
use crate::cluster::local::process::{self, ProcessRegistry};

/// How to start a [`Component`].
pub struct Launch<'a> {
    pub name: &'a str,
    pub binary: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub placement: &'a Placement,
    /// The log goes to `<logs>/<name>.log` (stdout and stderr).
    pub logs: &'a Path,
    /// `HOME` of the process: some tools write caches there.
    pub home: &'a Path,
    pub registry: &'a ProcessRegistry,
}

/// A running process of the cluster.
pub struct Component {
    name: String,
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
    registry: ProcessRegistry,
}

impl Component {
    /// Starts the process; it must stay up (see [`Component::check_alive`]).
    ///
    /// # Errors
    /// The binary could not be executed (exit 3).
    pub fn spawn(l: Launch<'_>) -> Result<Component, InfraError> {
        let log = l.logs.join(format!("{}.log", l.name));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(InfraError::io(format!("creating {}", log.display())))?;
        let err = file
            .try_clone()
            .map_err(InfraError::io(format!("opening {}", log.display())))?;
        let mut cmd = tokio::process::Command::new(l.binary);
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.env("HOME", l.home)
            .envs(l.env.iter().map(|(k, v)| (k, v)))
            .args(&l.args)
            .stdin(std::process::Stdio::null())
            .stdout(file)
            .stderr(err);
        ProcessRegistry::prepare(&mut cmd);
        l.placement.apply(&mut cmd);
        let child = cmd.spawn().map_err(|e| InfraError::StartFailed {
            what: l.name.to_string(),
            reason: format!("{}: {e}", l.binary.display()),
        })?;
        let pid = child.id().unwrap_or(0);
        l.registry.register(pid, l.name);
        Ok(Component {
            name: l.name.to_string(),
            child,
            pid,
            log,
            registry: l.registry.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Fails when the process has exited, with the end of its log.
    pub fn check_alive(&mut self) -> Result<(), InfraError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => {
                self.registry.unregister(self.pid);
                Err(InfraError::Died {
                    what: self.name.clone(),
                    detail: format!("{st}; {}", log_tail(&self.log, 5)),
                })
            }
            Err(e) => Err(InfraError::Died {
                what: self.name.clone(),
                detail: e.to_string(),
            }),
        }
    }

    /// SIGTERM, then SIGKILL to the whole group after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        process::signal_pid(self.pid, Signal::SIGTERM);
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            process::signal_group(self.pid, Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
        process::signal_group(self.pid, Signal::SIGKILL);
        self.registry.unregister(self.pid);
    }
}

/// The last `n` lines of a log, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(n).collect();
    if lines.is_empty() {
        format!("{} is empty", path.display())
    } else {
        format!(
            "{}:\n  {}",
            path.display(),
            lines.into_iter().rev().collect::<Vec<_>>().join("\n  ")
        )
    }
}

/// Polls `ready` every 100 ms until it holds, the component dies, or `within` passes.
///
/// # Errors
/// The component died (with its log), or was not ready in time (with `ready`'s last reason).
pub async fn wait_ready<F, Fut>(
    c: &mut Component,
    within: Duration,
    mut ready: F,
) -> Result<(), InfraError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match ready().await {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        c.check_alive()?;
        if tokio::time::Instant::now() >= deadline {
            return Err(InfraError::NotReady {
                what: c.name.clone(),
                within,
                detail: format!("{last}; {}", log_tail(&c.log, 5)),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
