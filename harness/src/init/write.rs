//! The output folder: created when missing, never overwritten without `--force`, and the
//! target named relative to it, as the project's suites name theirs.

use std::path::{Component, Path, PathBuf};

use super::error::InitError;

/// Creates `out` (and its parents) and returns it canonical, after checking that none of
/// `names` exists in it unless `force`.
///
/// # Errors
/// A file to write exists (without `force`), or the folder cannot be created.
pub fn prepare(out: &Path, names: &[String], force: bool) -> Result<PathBuf, InitError> {
    if out.exists() && !out.is_dir() {
        return Err(InitError::Write {
            path: out.to_path_buf(),
            error: std::io::Error::other("it is a file, not a folder"),
        });
    }
    if !force {
        let existing: Vec<PathBuf> = names
            .iter()
            .map(|n| out.join(n))
            .filter(|p| p.exists())
            .collect();
        if !existing.is_empty() {
            return Err(InitError::Exists(existing));
        }
    }
    std::fs::create_dir_all(out).map_err(|error| InitError::Write {
        path: out.to_path_buf(),
        error,
    })?;
    out.canonicalize().map_err(|error| InitError::Write {
        path: out.to_path_buf(),
        error,
    })
}

/// Writes `text` to `path`, through a temporary file beside it so that a failed write leaves
/// no half a scenario behind.
///
/// # Errors
/// The file cannot be written.
pub fn write(path: &Path, text: &str) -> Result<(), InitError> {
    let err = |error| InitError::Write {
        path: path.to_path_buf(),
        error,
    };
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// `to` relative to the folder `from`; both absolute and canonical (the kernel resolves `..`
/// on the real folders, so symlinked paths must be resolved first).
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_named_from_the_suite_folder() {
        let r = |a: &str, b: &str| relative(Path::new(a), Path::new(b)).display().to_string();
        assert_eq!(
            r("/p/suites/argo", "/p/fixtures/apps/argo"),
            "../../fixtures/apps/argo"
        );
        assert_eq!(r("/p/x", "/p/x"), ".");
        assert_eq!(r("/p/x", "/p/x/manifests"), "manifests");
        assert_eq!(r("/p/x/y", "/p"), "../..");
    }

    #[test]
    fn existing_files_are_not_overwritten_without_force() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.yaml"), "x").unwrap();
        let names = vec!["a.yaml".to_string(), "b.yaml".to_string()];
        let e = prepare(d.path(), &names, false).unwrap_err();
        assert!(matches!(&e, InitError::Exists(f) if f.len() == 1), "{e}");
        assert!(e.to_string().contains("--force"), "{e}");
        assert!(prepare(d.path(), &names, true).is_ok());
        let file = d.path().join("a.yaml");
        assert!(matches!(
            prepare(&file, &names, true),
            Err(InitError::Write { .. })
        ));
    }
}
