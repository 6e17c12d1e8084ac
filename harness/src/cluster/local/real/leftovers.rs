//! What a SIGKILLed gauntlet leaves of a cluster, and its removal (`gauntlet down --backend
//! local`).
//!
//! A killed gauntlet's children die with it (`PR_SET_PDEATHSIG`) and its network namespaces
//! with their last process, but its temp folder and its (empty) cgroups stay, and a grandchild
//! that outlived its parent may still run inside the cgroup. Each cluster's folder holds an owner
//! file naming the gauntlet process (pid and start time, so a reused pid is not mistaken for the
//! owner) and the cluster's cgroup; a folder whose owner is gone is a leftover.

use std::path::{Path, PathBuf};

use crate::cluster::InfraError;
use crate::cluster::local::memlimit::CgroupScope;

const OWNER: &str = "gauntlet-owner";
const CGROUP: &str = "gauntlet-cgroup";
/// The prefix of every temp folder a cluster or a stack makes.
pub const PREFIX: &str = "gauntlet-";

/// Marks `dir` as this process's.
pub fn claim(dir: &Path) -> Result<(), InfraError> {
    let me = std::process::id();
    let start = start_time(me).unwrap_or_default();
    std::fs::write(dir.join(OWNER), format!("{me} {start}\n")).map_err(InfraError::io(format!(
        "writing {}",
        dir.join(OWNER).display()
    )))
}

/// Records the cluster's cgroup folder beside the owner.
pub fn record_cgroup(dir: &Path, scope: Option<&CgroupScope>) -> Result<(), InfraError> {
    let Some(scope) = scope else { return Ok(()) };
    std::fs::write(dir.join(CGROUP), scope.path().display().to_string()).map_err(InfraError::io(
        format!("writing {}", dir.join(CGROUP).display()),
    ))
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the owner recorded in `dir` still runs.
fn owner_alive(dir: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(dir.join(OWNER)).ok()?;
    let mut it = text.split_whitespace();
    let pid: u32 = it.next()?.parse().ok()?;
    let start: u64 = it.next()?.parse().ok()?;
    Some(start_time(pid) == Some(start))
}

/// What a sweep removed.
#[derive(Debug, Default)]
pub struct Swept {
    pub folders: Vec<PathBuf>,
    pub cgroups: Vec<PathBuf>,
    pub processes: usize,
}

/// Removes every leftover under `tmp` (the system's temp folder when `None`): kills what still
/// runs in its cgroup, removes the cgroup and the folder. Folders of running gauntlets are left
/// alone.
pub fn sweep(tmp: Option<&Path>) -> Swept {
    let tmp = tmp.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let mut swept = Swept::default();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return swept;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let named = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(PREFIX));
        if !named || !dir.is_dir() || owner_alive(&dir) != Some(false) {
            continue;
        }
        if let Ok(cg) = std::fs::read_to_string(dir.join(CGROUP)) {
            let cg = PathBuf::from(cg.trim());
            swept.processes += kill_cgroup(&cg);
            if remove_cgroup_tree(&cg) {
                swept.cgroups.push(cg);
            }
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            swept.folders.push(dir);
        }
    }
    swept
}

/// SIGKILLs every process in the cgroup tree at `path`; how many there were.
fn kill_cgroup(path: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        if let Ok(procs) = std::fs::read_to_string(p.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                n += 1;
            }
        }
        if let Ok(children) = std::fs::read_dir(&p) {
            stack.extend(children.flatten().map(|c| c.path()).filter(|c| c.is_dir()));
        }
    }
    n
}

/// Removes a cgroup tree, children first, retrying while the kernel still counts exiting tasks.
fn remove_cgroup_tree(path: &Path) -> bool {
    if let Ok(children) = std::fs::read_dir(path) {
        for c in children.flatten() {
            if c.path().is_dir() {
                remove_cgroup_tree(&c.path());
            }
        }
    }
    for _ in 0..200 {
        match std::fs::remove_dir(path) {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_of_a_dead_owner_is_swept_and_a_live_ones_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("gauntlet-cluster-live");
        let dead = tmp.path().join("gauntlet-cluster-dead");
        let other = tmp.path().join("not-ours");
        for d in [&live, &dead, &other] {
            std::fs::create_dir(d).unwrap();
        }
        claim(&live).unwrap();
        // A pid that exists with another start time stands for a reused pid.
        std::fs::write(dead.join(OWNER), format!("{} 1\n", std::process::id())).unwrap();
        std::fs::write(other.join(OWNER), "1 1\n").unwrap();
        let s = sweep(Some(tmp.path()));
        assert_eq!(s.folders, vec![dead.clone()]);
        assert!(live.exists() && other.exists() && !dead.exists());
    }
}
