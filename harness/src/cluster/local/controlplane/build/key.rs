//! The cache key: a short sha256 over everything that changes the bytes `go build` produces, so
//! that changing a pin (go.mod or go.sum of either module), Go itself, the target platform or the
//! flags lands in a new folder. Contents are hashed, never timestamps: a checkout that rewrites
//! the same bytes keeps its cache.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::go::Go;
use super::{BUILD_FLAGS, BuildError};

/// Bumped when the cache layout or what ends up in it changes (e.g. the etcd rename).
const LAYOUT: &str = "gauntlet controlplane cache v2";
/// Hex digits of the hash kept in folder names: 64 bits, ample for a handful of pins.
const KEY_LEN: usize = 16;

/// What one build depends on, readable (it is written into the cache's marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeyInputs {
    modules: Vec<ModuleInputs>,
    /// `go env GOOS GOARCH CGO_ENABLED GOFLAGS`, one a line.
    go_env: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModuleInputs {
    go_mod: Vec<u8>,
    go_sum: Vec<u8>,
    /// `go version` run in the module's folder: what GOTOOLCHAIN picked for it.
    go_version: String,
}

impl KeyInputs {
    /// Reads both modules' files and asks `go` for its version (checking each module's minimum)
    /// and environment.
    pub fn read(go: &Go, folders: &[PathBuf]) -> Result<KeyInputs, BuildError> {
        let mut modules = Vec::new();
        for folder in folders {
            let version = go.stdout(folder, &["version"]).map_err(|e| match e {
                // GOTOOLCHAIN switching to the module's Go failed (offline, or =local).
                BuildError::Go { detail, .. }
                    if detail.contains("go >=") || detail.contains("toolchain") =>
                {
                    BuildError::GoTooOld {
                        module_folder: folder.clone(),
                        needed: go_directive(folder).unwrap_or_default(),
                        found: detail,
                    }
                }
                other => other,
            })?;
            let version = version.trim().to_string();
            check_version(folder, &version)?;
            let (go_mod, go_sum) = module_files(folder)?;
            modules.push(ModuleInputs {
                go_mod,
                go_sum,
                go_version: version,
            });
        }
        let first = folders
            .first()
            .map(PathBuf::as_path)
            .unwrap_or(Path::new("."));
        let go_env = go.stdout(first, &["env", "GOOS", "GOARCH", "CGO_ENABLED", "GOFLAGS"])?;
        Ok(KeyInputs { modules, go_env })
    }

    /// The text the key hashes, one fact a line; module files appear by their own sha256.
    pub fn describe(&self) -> String {
        let mut text = format!("{LAYOUT}\nflags: {}\n", BUILD_FLAGS.join(" "));
        for (i, m) in self.modules.iter().enumerate() {
            text.push_str(&format!(
                "module {i} go.mod sha256 {}\nmodule {i} go.sum sha256 {}\nmodule {i} {}\n",
                hex(&Sha256::digest(&m.go_mod)),
                hex(&Sha256::digest(&m.go_sum)),
                m.go_version
            ));
        }
        let mut env = self.go_env.lines();
        for name in ["GOOS", "GOARCH", "CGO_ENABLED", "GOFLAGS"] {
            text.push_str(&format!("{name}={}\n", env.next().unwrap_or("").trim()));
        }
        text
    }

    pub fn key(&self) -> String {
        let mut key = hex(&Sha256::digest(self.describe().as_bytes()));
        key.truncate(KEY_LEN);
        key
    }
}

fn module_files(folder: &Path) -> Result<(Vec<u8>, Vec<u8>), BuildError> {
    let read = |name: &str| {
        let path = folder.join(name);
        std::fs::read(&path).map_err(BuildError::io(format!(
            "reading {} (the pin of the control plane's Go modules)",
            path.display()
        )))
    };
    Ok((read("go.mod")?, read("go.sum")?))
}

/// The highest `go` directive of the modules: the Go every build needs at least.
pub(super) fn needed_go(folders: &[PathBuf]) -> String {
    let mut needed: Option<String> = None;
    for folder in folders {
        let Some(v) = go_directive(folder) else {
            continue;
        };
        if needed
            .as_deref()
            .is_none_or(|n| parse_version(&v) > parse_version(n))
        {
            needed = Some(v);
        }
    }
    needed.unwrap_or_else(|| "1.26".to_string())
}

/// The `go 1.x.y` line of a go.mod.
fn go_directive(folder: &Path) -> Option<String> {
    let text = std::fs::read_to_string(folder.join("go.mod")).ok()?;
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("go ")?;
        Some(rest.trim().to_string())
    })
}

/// Fails when `go version` reports a Go older than the module's `go` line. A version it cannot
/// parse (a development build) passes: go itself refuses if it really is too old.
fn check_version(folder: &Path, go_version: &str) -> Result<(), BuildError> {
    let Some(needed) = go_directive(folder) else {
        return Ok(());
    };
    let found = go_version.split_whitespace().find_map(|word| {
        word.strip_prefix("go")
            .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
    });
    match found {
        Some(found) if parse_version(found) < parse_version(&needed) => Err(BuildError::GoTooOld {
            module_folder: folder.to_path_buf(),
            needed,
            found: go_version.to_string(),
        }),
        _ => Ok(()),
    }
}

/// `1.26.8` → [1, 26, 8]; stops at the first part that is not a number (`1.27rc1` → [1, 27]),
/// padded so `1.26` equals `1.26.0`.
fn parse_version(v: &str) -> [u64; 3] {
    let mut parts = [0; 3];
    for (slot, part) in parts.iter_mut().zip(v.split('.')) {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse() {
            Ok(n) => *slot = n,
            Err(_) => break,
        }
        if digits.len() != part.len() {
            break;
        }
    }
    parts
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies of the project's real go.mod and go.sum of both modules.
    fn copy_modules() -> (tempfile::TempDir, Vec<PathBuf>) {
        let src = super::super::super::modules::workspace_module_folder();
        let tmp = tempfile::tempdir().unwrap();
        let folders = vec![tmp.path().to_path_buf(), tmp.path().join("flagger")];
        for (from, to) in [src.clone(), src.join("flagger")].iter().zip(&folders) {
            std::fs::create_dir_all(to).unwrap();
            for name in ["go.mod", "go.sum"] {
                std::fs::copy(from.join(name), to.join(name)).unwrap();
            }
        }
        (tmp, folders)
    }

    fn inputs(folders: &[PathBuf], go_version: &str) -> KeyInputs {
        KeyInputs {
            modules: folders
                .iter()
                .map(|f| {
                    let (go_mod, go_sum) = module_files(f).unwrap();
                    ModuleInputs {
                        go_mod,
                        go_sum,
                        go_version: go_version.to_string(),
                    }
                })
                .collect(),
            go_env: "linux\namd64\n1\n-buildvcs=false\n".to_string(),
        }
    }

    #[test]
    fn the_key_follows_the_pins_bytes_and_nothing_else() {
        let (_tmp, folders) = copy_modules();
        let go = "go version go1.26.8 linux/amd64";
        let key = inputs(&folders, go).key();
        assert_eq!(key.len(), KEY_LEN);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()));

        // Same bytes rewritten (new mtime), an unrelated file, another location: same key.
        let sum = folders[1].join("go.sum");
        let bytes = std::fs::read(&sum).unwrap();
        std::fs::write(&sum, &bytes).unwrap();
        std::fs::write(folders[0].join("README"), "notes").unwrap();
        assert_eq!(inputs(&folders, go).key(), key);

        // One byte of the Flagger module's go.sum: a new key; restored: the old one.
        let mut changed = bytes.clone();
        let at = changed.len() / 2;
        changed[at] ^= 1;
        std::fs::write(&sum, &changed).unwrap();
        assert_ne!(inputs(&folders, go).key(), key);
        std::fs::write(&sum, &bytes).unwrap();
        assert_eq!(inputs(&folders, go).key(), key);

        // A go.mod byte of the first module, and another Go.
        let go_mod = folders[0].join("go.mod");
        let mod_bytes = std::fs::read(&go_mod).unwrap();
        std::fs::write(&go_mod, [&mod_bytes[..], b"\n"].concat()).unwrap();
        assert_ne!(inputs(&folders, go).key(), key);
        std::fs::write(&go_mod, &mod_bytes).unwrap();
        assert_ne!(
            inputs(&folders, "go version go1.26.9 linux/amd64").key(),
            key
        );
    }

    #[test]
    fn the_key_follows_the_platform() {
        let (_tmp, folders) = copy_modules();
        let a = inputs(&folders, "go version go1.26.8 linux/amd64");
        let mut b = a.clone();
        b.go_env = "linux\narm64\n1\n-buildvcs=false\n".to_string();
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn the_needed_go_is_the_highest_directive() {
        let (_tmp, folders) = copy_modules();
        assert_eq!(needed_go(&folders), "1.26.0");
    }

    #[test]
    fn versions_compare_by_number() {
        assert!(parse_version("1.26.0") > parse_version("1.25.9"));
        assert_eq!(parse_version("1.26"), parse_version("1.26.0"));
        assert!(parse_version("1.26.10") > parse_version("1.26.9"));
        assert_eq!(parse_version("1.27rc1"), [1, 27, 0]);
    }

    #[test]
    fn an_older_go_is_refused_and_a_newer_or_unparsable_one_passes() {
        let (_tmp, folders) = copy_modules();
        let flagger = &folders[1];
        let err = check_version(flagger, "go version go1.25.3 linux/amd64").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Go ≥ 1.26.0"), "{text}");
        assert!(text.contains("go1.25.3"), "{text}");
        check_version(flagger, "go version go1.26.8 linux/amd64").unwrap();
        check_version(flagger, "go version go1.26.0 linux/amd64").unwrap();
        check_version(flagger, "go version devel +abc linux/amd64").unwrap();
    }
}
