//! Keeping SIGINT for the harness when goose runs in-process.
//!
//! Goose 0.19 calls `ctrlc::set_handler` when an attack initializes (`initialize_attack`, on
//! every `execute()`; there is no option to skip it). ctrlc 3.5 then `sigaction`s its own SIGINT
//! handler over whatever was installed, unconditionally, once per process (later calls fail with
//! `MultipleHandlers` and touch nothing). Its handler only triggers goose's *process-global*
//! killswitch (stopping every attack in the process), and a second SIGINT calls `exit(1)`.
//!
//! tokio's `signal(SignalKind::interrupt())` goes through signal-hook-registry, which installs its
//! handler once per signal and chains to the handler it found. So:
//! - a tokio listener registered *before* the first attack stops receiving SIGINT at all
//!   (ctrlc's handler replaced signal-hook's and does not chain);
//! - one registered *after* receives it, but chains into ctrlc's: the killswitch stops every
//!   load, and the second Ctrl-C exits the process behind the harness' back.
//!
//! The fix: before the first attack in the process, save the SIGINT disposition; once goose has
//! initialized (its first transaction runs), put the saved disposition back if it changed. ctrlc
//! never touches `sigaction` again, so from then on SIGINT behaves as if goose were not there
//! (its idle "ctrl-c" thread just waits forever).
//!
//! Limitation: a tokio SIGINT listener registered for the *first* time during the few
//! milliseconds between the first attack's start and its first transaction would be undone by
//! the restore. Register signal listeners before starting a load (the CLI does so at start-up).

use std::sync::atomic::{AtomicBool, Ordering};

use nix::libc;
use tokio::sync::{Mutex, MutexGuard};

/// Set once goose's Ctrl-C handler is known to be installed and undone.
static DONE: AtomicBool = AtomicBool::new(false);
/// Serializes the first attacks until one of them has been through the dance.
static LOCK: Mutex<()> = Mutex::const_new(());

/// The SIGINT disposition saved before the first goose attack.
pub(crate) struct Guard {
    saved: libc::sigaction,
    _lock: MutexGuard<'static, ()>,
}

/// Call before starting a goose attack. `None` when goose's handler was already dealt with.
pub(crate) async fn before_goose() -> Option<Guard> {
    if DONE.load(Ordering::Acquire) {
        return None;
    }
    let lock = LOCK.lock().await;
    if DONE.load(Ordering::Acquire) {
        return None;
    }
    let saved = current()?;
    Some(Guard { saved, _lock: lock })
}

impl Guard {
    /// Call once the attack has initialized (`goose_initialized`: its first transaction ran) or
    /// has ended. Restores the saved SIGINT disposition if something replaced it.
    pub(crate) fn after_goose(self, goose_initialized: bool) {
        let Some(now) = current() else { return };
        if now.sa_sigaction != self.saved.sa_sigaction || now.sa_flags != self.saved.sa_flags {
            // SAFETY: `self.saved` is a disposition the kernel returned for SIGINT, so it is a
            // valid one to install; a null old-action pointer is allowed.
            let rc = unsafe { libc::sigaction(libc::SIGINT, &self.saved, std::ptr::null_mut()) };
            if rc == 0 {
                tracing::debug!("restored the SIGINT handler that goose's ctrlc replaced");
                DONE.store(true, Ordering::Release);
            } else {
                tracing::warn!(
                    "could not restore the SIGINT handler goose replaced: {}",
                    std::io::Error::last_os_error()
                );
            }
        } else if goose_initialized {
            // ctrlc was already initialized elsewhere in the process; goose changed nothing.
            DONE.store(true, Ordering::Release);
        }
    }
}

/// The current SIGINT disposition.
fn current() -> Option<libc::sigaction> {
    // SAFETY: a zeroed `sigaction` is a valid out-parameter; a null new-action pointer only
    // queries.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        (libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old) == 0).then_some(old)
    }
}
