//! Child processes that cannot outlive the scenario that started them.
//!
//! Every child runs in its own process group (so a terminal's Ctrl-C reaches gauntlet alone,
//! which then tears down in order) with `PR_SET_PDEATHSIG` (so a gauntlet killed with SIGKILL
//! takes its direct children along). Each spawned process group is recorded in a
//! [`ProcessRegistry`], whose [`ProcessRegistry::kill_all`] is the synchronous last resort used
//! from `Drop` on error, panic and interrupt paths.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// The live process groups of one stack, by leader pid.
#[derive(Debug, Default, Clone)]
pub struct ProcessRegistry {
    live: Arc<Mutex<BTreeMap<i32, Entry>>>,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    /// Sent to the leader alone before the group is killed, for a leader that reaps its own
    /// children when asked (nginx's master); otherwise they would end as zombies of init.
    polite: Option<Signal>,
}

impl ProcessRegistry {
    /// Configures `cmd` so that its child leads its own process group and dies with its parent.
    pub fn prepare(cmd: &mut tokio::process::Command) {
        cmd.process_group(0).kill_on_drop(true);
        // SAFETY: the closure runs between fork and exec and only makes the async-signal-safe
        // prctl system call.
        unsafe {
            cmd.pre_exec(|| {
                if nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    pub fn register(&self, pid: u32, name: impl Into<String>) {
        self.lock().insert(
            pid as i32,
            Entry {
                name: name.into(),
                polite: None,
            },
        );
    }

    /// Registers a leader that is first asked to stop with `polite` by [`Self::kill_all`].
    pub fn register_polite(&self, pid: u32, name: impl Into<String>, polite: Signal) {
        self.lock().insert(
            pid as i32,
            Entry {
                name: name.into(),
                polite: Some(polite),
            },
        );
    }

    /// Forgets a process group once its leader has been reaped.
    pub fn unregister(&self, pid: u32) {
        self.lock().remove(&(pid as i32));
    }

    pub fn live(&self) -> Vec<(u32, String)> {
        self.lock()
            .iter()
            .map(|(p, e)| (*p as u32, e.name.clone()))
            .collect()
    }

    /// Kills every recorded process group with SIGKILL and reaps the leaders, waiting at most
    /// `within`. Safe to call more than once.
    pub fn kill_all(&self, within: Duration) {
        let entries: Vec<(i32, Entry)> = self.lock().iter().map(|(p, e)| (*p, e.clone())).collect();
        let polite: Vec<i32> = entries
            .iter()
            .filter_map(|(pid, e)| {
                let sig = e.polite?;
                let _ = nix::sys::signal::kill(Pid::from_raw(*pid), sig);
                Some(*pid)
            })
            .collect();
        reap(polite, Instant::now() + within.min(Duration::from_secs(1)));
        let pids: Vec<i32> = entries.iter().map(|(p, _)| *p).collect();
        for pid in &pids {
            let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        let left = reap(pids, Instant::now() + within);
        let mut live = self.lock();
        for pid in live.keys().copied().collect::<Vec<_>>() {
            if !left.contains(&pid) {
                live.remove(&pid);
            }
        }
        if !left.is_empty() {
            tracing::warn!(?left, "processes did not exit after SIGKILL");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, Entry>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reaps the given children until all are gone or the deadline passes; returns those left.
fn reap(mut left: Vec<i32>, deadline: Instant) -> Vec<i32> {
    while !left.is_empty() {
        left.retain(|pid| {
            match waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)) {
                // Still running: keep waiting.
                Ok(nix::sys::wait::WaitStatus::StillAlive) => true,
                // Reaped now, or already reaped by tokio (ECHILD): gone either way.
                _ => false,
            }
        });
        if left.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    left
}

/// Sends `signal` to a child's whole process group; a group that is already gone is fine.
pub fn signal_group(pid: u32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pid as i32), signal);
}

/// Sends `signal` to one process only (e.g. nginx's master, which forwards it to its workers).
pub fn signal_pid(pid: u32, signal: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
}

/// Whether a process with this pid exists (a zombie counts as existing).
pub fn pid_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Finds a program on `PATH` or in the usual sbin folders (Debian's nginx lives in /usr/sbin,
/// which is not on a normal user's PATH).
/// The pids whose parent is `parent`, read from `/proc`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Field 4 (ppid) follows the parenthesised command name, which may hold spaces.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(Into::into))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kill_all_reaps_whole_groups() {
        let reg = ProcessRegistry::default();
        let mut cmd = tokio::process::Command::new("sh");
        // The shell starts a grandchild in the same group; both must die.
        cmd.args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped());
        ProcessRegistry::prepare(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let pid = child.id().unwrap();
        reg.register(pid, "sh");
        let mut out = child.stdout.take().unwrap();
        let mut line = String::new();
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 32];
        while !line.contains('\n') {
            let n = out.read(&mut buf).await.unwrap();
            assert!(n > 0);
            line.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        let grandchild: u32 = line.trim().parse().unwrap();
        assert!(pid_exists(grandchild));
        reg.kill_all(Duration::from_secs(2));
        assert!(!pid_exists(pid), "leader {pid} still exists");
        assert!(reg.live().is_empty());
        // The grandchild is reparented to init once killed; wait for it to vanish.
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid_exists(grandchild) && Instant::now() < deadline {
            let st =
                std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            if st.split_whitespace().nth(2) == Some("Z") {
                break; // a zombie of init's: dead, only waiting for init to reap it
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let st = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        assert!(
            st.is_empty() || st.split_whitespace().nth(2) == Some("Z"),
            "grandchild alive: {st}"
        );
        drop(child);
    }
}
