//! One cache folder, `<cache_root>/<key>/`: `bin/` (the binaries), `build.log` (go's output),
//! `lock` (held while building) and `complete` (the marker, written last).
//!
//! The marker is what makes a folder trusted: it is renamed into place only after every binary
//! is there, so a build killed half way leaves a folder without it, which the next start wipes
//! and rebuilds. The lock is an OS file lock (`flock`), released by the kernel when its holder
//! dies, so a lock file left behind by a killed build never blocks anyone.

use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::BuildError;

pub(super) struct Entry {
    dir: PathBuf,
}

impl Entry {
    pub fn new(dir: PathBuf) -> Entry {
        Entry { dir }
    }

    pub fn bin(&self) -> PathBuf {
        self.dir.join("bin")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("build.log")
    }

    fn marker(&self) -> PathBuf {
        self.dir.join("complete")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// The marker is there and so is every binary (one deleted by hand means rebuilding).
    pub fn is_complete(&self) -> bool {
        self.marker().is_file() && super::missing_in(&self.bin()).is_empty()
    }

    /// Takes the build lock, calling `on_wait` first if another process holds it. The lock is
    /// held until the returned file is dropped.
    pub fn lock(&self, on_wait: impl FnOnce(PathBuf)) -> Result<File, BuildError> {
        std::fs::create_dir_all(&self.dir).map_err(BuildError::io(format!(
            "creating the control plane cache folder {}",
            self.dir.display()
        )))?;
        let path = self.lock_path();
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(BuildError::io(format!(
                "opening the lock {}",
                path.display()
            )))?;
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) => on_wait(path.clone()),
            Err(TryLockError::Error(e)) => {
                return Err(BuildError::io(format!("locking {}", path.display()))(e));
            }
        }
        file.lock().map_err(BuildError::io(format!(
            "waiting for the lock {} (another gauntlet is building the control plane)",
            path.display()
        )))?;
        Ok(file)
    }

    /// Clears what a previous, unfinished build left: the marker first (so nothing trusts the
    /// folder meanwhile), the binaries, the log.
    pub fn reset(&self) -> Result<(), BuildError> {
        let remove = |path: &Path, what: &str| -> Result<(), BuildError> {
            let result = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            match result {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BuildError::io(format!(
                    "removing the {what} {}",
                    path.display()
                ))(e)),
                _ => Ok(()),
            }
        };
        remove(&self.marker(), "stale marker")?;
        remove(&self.bin(), "half-built binaries")?;
        remove(&self.log(), "old build log")?;
        std::fs::create_dir_all(self.bin())
            .map_err(BuildError::io(format!("creating {}", self.bin().display())))
    }

    /// Writes the marker atomically (a temp file renamed over it), with what the key hashes.
    pub fn mark_complete(&self, description: &str) -> Result<(), BuildError> {
        let context = || format!("writing the marker {}", self.marker().display());
        let mut tmp =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(BuildError::io(context()))?;
        tmp.write_all(description.as_bytes())
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                let file = tmp.as_file();
                file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
                file.sync_all()
            })
            .map_err(BuildError::io(context()))?;
        tmp.persist(self.marker())
            .map_err(|e| BuildError::io(context())(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete_entry() -> (tempfile::TempDir, Entry) {
        let tmp = tempfile::tempdir().unwrap();
        let entry = Entry::new(tmp.path().join("key"));
        let _lock = entry.lock(|_| panic!("nobody else holds it")).unwrap();
        entry.reset().unwrap();
        for b in super::super::Binary::ALL {
            let path = entry.bin().join(b.file_name());
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        (tmp, entry)
    }

    #[test]
    fn only_a_marked_folder_with_every_binary_is_complete() {
        let (_tmp, entry) = complete_entry();
        assert!(!entry.is_complete(), "binaries without the marker");
        entry.mark_complete("inputs").unwrap();
        assert!(entry.is_complete());
        assert_eq!(std::fs::read_to_string(entry.marker()).unwrap(), "inputs");
        std::fs::remove_file(entry.bin().join("etcd")).unwrap();
        assert!(!entry.is_complete(), "a binary deleted by hand");
    }

    #[test]
    fn reset_wipes_a_half_built_folder() {
        let (_tmp, entry) = complete_entry();
        entry.mark_complete("inputs").unwrap();
        entry.reset().unwrap();
        assert!(!entry.marker().exists());
        assert_eq!(std::fs::read_dir(entry.bin()).unwrap().count(), 0);
    }

    #[test]
    fn a_held_lock_makes_the_next_one_wait_and_a_released_one_does_not() {
        let tmp = tempfile::tempdir().unwrap();
        let entry = Entry::new(tmp.path().join("key"));
        let held = entry.lock(|_| panic!("free at first")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = tmp.path().join("key");
        let waiter = std::thread::spawn(move || {
            let entry = Entry::new(dir);
            let _lock = entry.lock(|path| tx.send(path).unwrap()).unwrap();
        });
        let waited_on = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the second locker reports waiting");
        assert!(waited_on.ends_with("key/lock"));
        drop(held);
        waiter.join().unwrap();
        // The lock file stays behind; it blocks nobody.
        assert!(entry.lock_path().exists());
        drop(
            entry
                .lock(|_| panic!("a leftover lock file is not held"))
                .unwrap(),
        );
    }
}
