//! Where a child process runs: inside a network namespace of gauntlet's, with its own view of
//! `/etc/resolv.conf` and `/etc/hosts`.
//!
//! The namespace and the files are entered between fork and exec, so the host's interfaces and
//! `/etc` are never touched: the bind mounts live in a private mount namespace that dies with the
//! process.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// A network namespace to enter and files to see in place of `/etc/resolv.conf` and
/// `/etc/hosts`; see the module doc.
#[derive(Debug, Clone)]
pub struct Placement {
    netns: Arc<OwnedFd>,
    resolv_conf: Option<CString>,
    hosts: Option<CString>,
    /// An open `cgroup.procs` the process joins, so that a cluster's processes are found
    /// (and killed) through its cgroup.
    cgroup: Option<Arc<OwnedFd>>,
}

impl Placement {
    /// Runs in the network namespace `netns` (an open `/proc/PID/ns/net`), with the host's files.
    pub fn new(netns: Arc<OwnedFd>) -> Placement {
        Placement {
            netns,
            resolv_conf: None,
            hosts: None,
            cgroup: None,
        }
    }

    /// Makes the process join the cgroup whose `cgroup.procs` is open as `procs`.
    pub fn with_cgroup(mut self, procs: Option<Arc<OwnedFd>>) -> Placement {
        self.cgroup = procs;
        self
    }

    /// Shows `file` as `/etc/resolv.conf` to the process.
    pub fn with_resolv_conf(mut self, file: &Path) -> Placement {
        self.resolv_conf = Some(c_path(file));
        self
    }

    /// Shows `file` as `/etc/hosts` to the process.
    pub fn with_hosts(mut self, file: &Path) -> Placement {
        self.hosts = Some(c_path(file));
        self
    }

    /// The namespace, for callers that enter it themselves.
    pub fn netns(&self) -> &Arc<OwnedFd> {
        &self.netns
    }

    /// Makes `cmd`'s child enter the namespace (and mount the files) before it execs.
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        let this = self.clone();
        // SAFETY: the closure runs between fork and exec in the single-threaded child and makes
        // only system calls (setns, unshare, mount) on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || this.enter());
        }
    }

    fn enter(&self) -> std::io::Result<()> {
        use nix::libc;
        let check = |rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        if let Some(procs) = &self.cgroup {
            crate::cluster::local::memlimit::join_in_child(procs)?;
        }
        // SAFETY: plain system calls on valid file descriptors and NUL-terminated paths.
        unsafe {
            check(libc::setns(self.netns.as_raw_fd(), libc::CLONE_NEWNET))?;
            if self.resolv_conf.is_none() && self.hosts.is_none() {
                return Ok(());
            }
            check(libc::unshare(libc::CLONE_NEWNS))?;
            // Private from here on: nothing mounted below reaches the host's mount namespace.
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for (file, target) in [
                (&self.resolv_conf, c"/etc/resolv.conf"),
                (&self.hosts, c"/etc/hosts"),
            ] {
                if let Some(file) = file {
                    check(libc::mount(
                        file.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ))?;
                }
            }
        }
        Ok(())
    }
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_else(|_| c"/nonexistent".to_owned())
}
