//! Finding scenario files: the paths given on the command line, folders walked for `*.yaml`
//! that are not Kubernetes manifests (a target's manifests may live beside its scenarios).

use std::path::{Path, PathBuf};

use super::ScenarioError;
use super::file::is_manifest;

/// Every scenario file under `paths`, sorted within each folder. A path that does not exist
/// is an error; a folder without scenarios is not.
pub fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<ScenarioError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out, &mut errors);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            errors.push(ScenarioError::new(p, "", "no such file or folder"));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<ScenarioError>) {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            errors.push(ScenarioError::new(
                dir,
                "",
                format!("cannot read the folder: {e}"),
            ));
            return;
        }
    };
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out, errors);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            match std::fs::read_to_string(&p) {
                Ok(text) if is_manifest(&text) => {}
                Ok(_) => out.push(p),
                Err(e) => errors.push(ScenarioError::new(&p, "", format!("cannot read: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_yield_scenarios_and_skip_manifests() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("b.yaml"), "name: b\n").unwrap();
        std::fs::write(d.path().join("sub/a.yml"), "name: a\n").unwrap();
        std::fs::write(d.path().join("svc.yaml"), "apiVersion: v1\nkind: Service\n").unwrap();
        std::fs::write(d.path().join("notes.txt"), "x").unwrap();
        let found = scenario_files(&[d.path().to_path_buf()]).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(d.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["b.yaml", "sub/a.yml"]);
        let e = scenario_files(&[d.path().join("missing")]).unwrap_err();
        assert!(e[0].to_string().contains("no such file"));
    }
}
