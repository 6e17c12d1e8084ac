//! `fixtures/kind/manifests.lock`: what the kind backend downloads, pinned by sha256, and the
//! download cache. The lock's own comments say the policy; in short: a pinned file is used only
//! when its bytes hash to the pin (cached or freshly downloaded); an `UNPINNED` file is refused
//! before any download unless the user opts in (`GAUNTLET_PIN_DOWNLOADS=1`), which records the
//! observed hash in the lock in place of `UNPINNED`. A pin is never overwritten.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cluster::InfraError;

/// The opt-in that lets an unpinned download through and records its hash.
pub const PIN_ENV: &str = "GAUNTLET_PIN_DOWNLOADS";
/// The value of `sha256` for a file nobody has hashed yet.
pub const UNPINNED: &str = "UNPINNED";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lock {
    /// `kind create cluster --image`.
    pub node_image: String,
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub name: String,
    pub version: String,
    /// Where objects without a namespace go.
    pub namespace: String,
    pub files: Vec<LockedFile>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedFile {
    pub url: String,
    /// Lowercase hex, or [`UNPINNED`].
    pub sha256: String,
}

impl LockedFile {
    /// The pinned hash, if any.
    pub fn pin(&self) -> Option<&str> {
        (self.sha256 != UNPINNED).then_some(self.sha256.as_str())
    }
}

impl Lock {
    /// Reads and checks the lock file.
    ///
    /// # Errors
    /// Unreadable, not the lock's shape, or a hash that is neither 64 hex digits nor
    /// `UNPINNED`.
    pub fn read(path: &Path) -> Result<Lock, InfraError> {
        let text = std::fs::read_to_string(path)
            .map_err(InfraError::io(format!("reading {}", path.display())))?;
        Lock::parse(&text).map_err(|e| InfraError::Other(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Lock, String> {
        let lock: Lock = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        for c in &lock.components {
            for f in &c.files {
                if f.pin().is_some() && !is_sha256(&f.sha256) {
                    return Err(format!(
                        "component {}: sha256 of {} must be 64 lowercase hex digits or {UNPINNED}, got `{}`",
                        c.name, f.url, f.sha256
                    ));
                }
            }
        }
        Ok(lock)
    }

    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The lock text with `sha256: UNPINNED` of the entry `url` replaced by `sha256`, everything
/// else (comments, order) untouched.
///
/// # Errors
/// The entry is missing, or already pinned (a pin is never overwritten).
pub fn pin_in_text(text: &str, url: &str, sha256: &str) -> Result<String, String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().trim_start_matches("- ").trim() == format!("url: {url}"))
        .ok_or_else(|| format!("no entry for {url}"))?;
    let sha = lines[at + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with("sha256:"))
        .map(|i| at + 1 + i)
        .ok_or_else(|| format!("no sha256 line for {url}"))?;
    let line = &lines[sha];
    let value = line.trim_start().trim_start_matches("sha256:").trim();
    if value != UNPINNED {
        return Err(format!(
            "{url} is already pinned to {value}; remove the pin by hand to change it"
        ));
    }
    let indent = &line[..line.len() - line.trim_start().len()];
    lines[sha] = format!("{indent}sha256: {sha256}");
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Where downloads are kept: `$XDG_CACHE_HOME/gauntlet/kind`, else `~/.cache/gauntlet/kind`.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("gauntlet").join("kind")
}

/// The cache file of a URL: a short hash of the URL (tags differ, file names do not) and the
/// file name.
pub fn cache_name(url: &str) -> String {
    let base = url.rsplit('/').next().unwrap_or("file");
    format!("{}-{base}", &sha256_hex(url.as_bytes())[..16])
}

/// Whether the user opted in to recording hashes of unpinned downloads.
pub fn pin_opt_in() -> bool {
    std::env::var(PIN_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// How [`fetch`] may use the network and the lock.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub lock_path: PathBuf,
    pub cache_dir: PathBuf,
    /// [`PIN_ENV`] was given.
    pub pin_unpinned: bool,
    pub timeout: Duration,
}

/// The verified bytes of one locked file: from the cache when its hash matches the pin, else
/// downloaded and checked (see the module doc).
///
/// # Errors
/// Unpinned without the opt-in (nothing is downloaded), a download that fails, a hash that does
/// not match the pin, or a cache or lock that cannot be written (all exit 3).
pub async fn fetch(f: &Fetch, file: &LockedFile) -> Result<Vec<u8>, InfraError> {
    let Some(pin) = file.pin() else {
        if !f.pin_unpinned {
            return Err(InfraError::Other(format!(
                "{} has no sha256 in {} (it says {UNPINNED}); gauntlet installs nothing \
                 unverified. Run once with {PIN_ENV}=1 to download it, record its sha256 in the \
                 lock, and commit that change after reviewing it",
                file.url,
                f.lock_path.display()
            )));
        }
        let bytes = download(&file.url, f.timeout).await?;
        let observed = sha256_hex(&bytes);
        let text = std::fs::read_to_string(&f.lock_path)
            .map_err(InfraError::io(format!("reading {}", f.lock_path.display())))?;
        let pinned = pin_in_text(&text, &file.url, &observed)
            .map_err(|e| InfraError::Other(format!("{}: {e}", f.lock_path.display())))?;
        std::fs::write(&f.lock_path, pinned)
            .map_err(InfraError::io(format!("writing {}", f.lock_path.display())))?;
        tracing::warn!(
            "{PIN_ENV}: pinned {} to sha256 {observed} in {}",
            file.url,
            f.lock_path.display()
        );
        store(&f.cache_dir, &file.url, &bytes)?;
        return Ok(bytes);
    };
    let cached = f.cache_dir.join(cache_name(&file.url));
    if let Ok(bytes) = std::fs::read(&cached) {
        if sha256_hex(&bytes) == pin {
            return Ok(bytes);
        }
        // A partial or tampered copy: never used, downloaded again.
        let _ = std::fs::remove_file(&cached);
    }
    let bytes = download(&file.url, f.timeout).await?;
    let observed = sha256_hex(&bytes);
    if observed != pin {
        return Err(InfraError::Other(format!(
            "checksum mismatch for {}: the lock {} pins sha256 {pin}, the download has {observed}; \
             nothing was installed",
            file.url,
            f.lock_path.display()
        )));
    }
    store(&f.cache_dir, &file.url, &bytes)?;
    Ok(bytes)
}

fn store(dir: &Path, url: &str, bytes: &[u8]) -> Result<(), InfraError> {
    std::fs::create_dir_all(dir).map_err(InfraError::io(format!("creating {}", dir.display())))?;
    let path = dir.join(cache_name(url));
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).map_err(InfraError::io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(InfraError::io(format!("writing {}", path.display())))
}

async fn download(url: &str, timeout: Duration) -> Result<Vec<u8>, InfraError> {
    let fail = |reason: String| InfraError::StartFailed {
        what: format!("download of {url}"),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(format!("{e}; is the network reachable?")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("HTTP {status}")));
    }
    let bytes = response.bytes().await.map_err(|e| fail(e.to_string()))?;
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_in_the_repository_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/kind/manifests.lock");
        let lock = Lock::read(&path).unwrap();
        assert!(lock.node_image.starts_with("kindest/node:v1.33"));
        let names: Vec<&str> = lock.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ingress-nginx",
                "argo-rollouts",
                "flagger",
                "flagger-loadtester"
            ]
        );
        assert_eq!(lock.component("argo-rollouts").unwrap().version, "v1.9.1");
        assert_eq!(lock.component("flagger").unwrap().version, "v1.44.0");
        assert!(
            lock.components
                .iter()
                .flat_map(|c| &c.files)
                .all(|f| f.url.starts_with("https://"))
        );
    }

    #[test]
    fn pinning_replaces_only_that_entry_and_never_a_pin() {
        let text = "components:\n  - name: a\n    files:\n      - url: https://x/a.yaml\n        sha256: UNPINNED\n      - url: https://x/b.yaml\n        sha256: UNPINNED\n";
        let h = "ab".repeat(32);
        let out = pin_in_text(text, "https://x/b.yaml", &h).unwrap();
        assert_eq!(
            out,
            text.replacen(
                "b.yaml\n        sha256: UNPINNED",
                &format!("b.yaml\n        sha256: {h}"),
                1
            )
        );
        assert!(
            pin_in_text(&out, "https://x/b.yaml", &h)
                .unwrap_err()
                .contains("already pinned")
        );
        assert!(pin_in_text(text, "https://x/c.yaml", &h).is_err());
    }

    #[test]
    fn bad_hashes_are_refused() {
        let e = Lock::parse(
            "nodeImage: n\ncomponents:\n- {name: a, version: v, namespace: n, files: [{url: u, sha256: nope}]}\n",
        )
        .unwrap_err();
        assert!(e.contains("64 lowercase hex"), "{e}");
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
