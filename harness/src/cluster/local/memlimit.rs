//! Memory limits for pods, enforced the way a container's are where the machine allows it.
//!
//! A memory cgroup makes the kernel OOM-kill the pod at its limit, exactly as a container runtime
//! would (cgroup v1 `memory.limit_in_bytes`, or v2 `memory.max` where the v2 hierarchy delegates
//! the memory controller to us). Where neither is writable, an RSS watchdog in the pod supervisor
//! kills the pod with SIGKILL once its resident memory passes the limit, and records the same
//! `OOMKilled` reason (see docs/fidelity.md). The cgroups of one stack live under one scope folder
//! nested in gauntlet's own cgroup, so the accounting stays inside whatever contains gauntlet.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Which mechanism enforces pod memory limits on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    CgroupV1,
    CgroupV2,
    RssWatchdog,
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mechanism::CgroupV1 => "cgroup v1 (memory.limit_in_bytes)",
            Mechanism::CgroupV2 => "cgroup v2 (memory.max)",
            Mechanism::RssWatchdog => "RSS watchdog",
        })
    }
}

/// The folder holding one stack's pod cgroups; removed on drop.
#[derive(Debug)]
pub struct CgroupScope {
    path: PathBuf,
    mechanism: Mechanism,
}

static SCOPES: AtomicU64 = AtomicU64::new(0);

impl CgroupScope {
    /// Creates a scope under gauntlet's own memory cgroup, or returns `None` when no writable
    /// memory controller exists (then pods fall back to the RSS watchdog).
    pub fn create() -> Option<CgroupScope> {
        if std::env::var_os("GAUNTLET_NO_CGROUP").is_some() {
            return None;
        }
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let name = format!(
            "gauntlet-{}-{}",
            std::process::id(),
            SCOPES.fetch_add(1, Ordering::Relaxed)
        );
        let candidates = candidate_bases(&own);
        for (base, mechanism) in candidates {
            let path = base.join(&name);
            if fs::create_dir(&path).is_err() {
                continue;
            }
            let limit_file = match mechanism {
                Mechanism::CgroupV1 => "memory.limit_in_bytes",
                _ => "memory.max",
            };
            if mechanism == Mechanism::CgroupV2 {
                // Children get memory.max only if the scope delegates the controller.
                let _ = fs::write(path.join("cgroup.subtree_control"), "+memory");
            }
            let probe = path.join("probe");
            let usable = fs::create_dir(&probe).is_ok() && probe.join(limit_file).exists();
            let _ = fs::remove_dir(&probe);
            if usable {
                return Some(CgroupScope { path, mechanism });
            }
            let _ = fs::remove_dir(&path);
        }
        None
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates (or reuses, across restarts) the cgroup of one pod with its limit.
    pub fn pod(&self, pod: &str, limit: u64) -> std::io::Result<PodCgroup> {
        let cg = self.unlimited(pod)?;
        let file = match self.mechanism {
            Mechanism::CgroupV1 => "memory.limit_in_bytes",
            _ => "memory.max",
        };
        fs::write(cg.path.join(file), limit.to_string())?;
        Ok(cg)
    }

    /// Creates (or reuses) a cgroup without a limit of its own: for a cluster's system
    /// processes, so that they are counted and found (and killed by `gauntlet down`) with it.
    pub fn unlimited(&self, name: &str) -> std::io::Result<PodCgroup> {
        let path = self.path.join(name);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(PodCgroup {
            path,
            mechanism: self.mechanism,
        })
    }
}

impl CgroupScope {
    /// Removes every pod cgroup and the scope; their processes must be gone. Idempotent.
    pub fn remove(&self) {
        if let Ok(entries) = fs::read_dir(&self.path) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    remove_cgroup(&e.path());
                }
            }
        }
        remove_cgroup(&self.path);
    }
}

impl Drop for CgroupScope {
    fn drop(&mut self) {
        self.remove();
    }
}

/// rmdir of a cgroup fails while the kernel still counts an exiting task in it; retry briefly.
fn remove_cgroup(path: &Path) {
    for _ in 0..200 {
        match fs::remove_dir(path) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
    tracing::warn!(path = %path.display(), "could not remove cgroup");
}

fn candidate_bases(proc_self_cgroup: &str) -> Vec<(PathBuf, Mechanism)> {
    let mut out = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            out.push((
                Path::new("/sys/fs/cgroup/memory").join(rel),
                Mechanism::CgroupV1,
            ));
        } else if controllers.is_empty() {
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                let root = Path::new(root);
                if root.join("cgroup.controllers").exists() {
                    out.push((root.join(rel), Mechanism::CgroupV2));
                }
            }
        }
    }
    out
}

/// One pod's memory cgroup.
#[derive(Debug, Clone)]
pub struct PodCgroup {
    path: PathBuf,
    mechanism: Mechanism,
}

impl PodCgroup {
    /// Opens `cgroup.procs` for the child to join itself between fork and exec, so that not one
    /// allocation escapes the limit.
    pub fn procs_file(&self) -> std::io::Result<OwnedFd> {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(self.path.join("cgroup.procs"))?;
        Ok(f.into())
    }

    /// The kernel's count of OOM kills in this cgroup so far.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match self.mechanism {
            Mechanism::CgroupV1 => ("memory.oom_control", "oom_kill"),
            _ => ("memory.events", "oom_kill"),
        };
        read_key(&self.path.join(file), key).unwrap_or(0)
    }

    /// cAdvisor's working set: usage minus inactive file pages.
    pub fn working_set(&self) -> Option<u64> {
        let (usage, stat, inactive) = match self.mechanism {
            Mechanism::CgroupV1 => (
                "memory.usage_in_bytes",
                "memory.stat",
                "total_inactive_file",
            ),
            _ => ("memory.current", "memory.stat", "inactive_file"),
        };
        let usage: u64 = fs::read_to_string(self.path.join(usage))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let inactive = read_key(&self.path.join(stat), inactive).unwrap_or(0);
        Some(usage.saturating_sub(inactive))
    }
}

fn read_key(file: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

/// Writes "0" (the writer itself) into an open `cgroup.procs`; for use between fork and exec.
///
/// # Safety
/// Only async-signal-safe calls are made (a single `write`).
pub fn join_in_child(fd: &OwnedFd) -> std::io::Result<()> {
    let n = unsafe { nix::libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) };
    if n == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Resident memory of a process in bytes, from /proc/PID/statm.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// CPU time (user + system) of a process in seconds, from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields we need follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    match unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    match unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) } {
        n if n > 0 => n as f64,
        _ => 100.0,
    }
}

/// Parses a Kubernetes memory quantity (`64Mi`, `1G`, `128974848`, `129e6`, `500k`).
pub fn parse_quantity(q: &str) -> Result<u64, String> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '+'))
        .unwrap_or(q.len());
    // `e`/`E` are exponents only when digits follow; `1E` would be exa.
    let (num, suffix) = q.split_at(split);
    let (num, suffix) = if let Some(stripped) = num.strip_suffix(['e', 'E']) {
        (stripped, &q[stripped.len()..])
    } else {
        (num, suffix)
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{q}` is not a quantity (e.g. 64Mi, 1Gi, 128M)"))?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "E" => 1e18,
        "m" => 1e-3,
        _ => {
            return Err(format!(
                "`{q}` has an unknown unit `{suffix}` (use Ki, Mi, Gi, k, M or G)"
            ));
        }
    };
    let bytes = (value * mult).ceil();
    if !bytes.is_finite() || bytes < 0.0 {
        return Err(format!("`{q}` is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_does() {
        assert_eq!(parse_quantity("64Mi").unwrap(), 64 << 20);
        assert_eq!(parse_quantity("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_quantity("128M").unwrap(), 128_000_000);
        assert_eq!(parse_quantity("129e6").unwrap(), 129_000_000);
        assert_eq!(parse_quantity("1000").unwrap(), 1000);
        assert_eq!(parse_quantity("0.5Gi").unwrap(), 1 << 29);
        assert!(parse_quantity("64MB").is_err());
        assert!(parse_quantity("lots").is_err());
    }

    #[test]
    fn v1_and_v2_lines_give_candidate_bases() {
        let text = "4:memory:/process_api/abc\n0::/user.slice\n";
        let c = candidate_bases(text);
        assert_eq!(
            c[0],
            (
                PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"),
                Mechanism::CgroupV1
            )
        );
    }

    #[test]
    fn own_process_stats_are_readable() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 1 << 20);
        assert!(cpu_seconds(pid).is_some());
    }
}
