//! Version stamps: what each upstream project's own build writes into its binaries with
//! `-ldflags -X`, taken from the versions the module pins. Without them kube-apiserver reports
//! `v0.0.0-master`, which Flagger refuses ("Error parsing kubernetes version"), and
//! Prometheus and the Argo Rollouts plugin report no version at all.

use std::path::Path;

use super::BuildError;
use super::go::GoModule;

/// The `-ldflags` value for `module` in `folder`: `-s -w` and its version stamps.
pub(super) fn ldflags(module: GoModule, folder: &Path) -> Result<String, BuildError> {
    let path = folder.join("go.mod");
    let text = std::fs::read_to_string(&path).map_err(BuildError::io(format!(
        "reading {} (the pin of the control plane's Go modules)",
        path.display()
    )))?;
    let mut flags = vec!["-s".to_string(), "-w".to_string()];
    let mut x = |var: &str, value: &str| flags.push(format!("-X {var}={value}"));
    match module {
        GoModule::ControlPlane => {
            if let Some(v) = required(&text, "k8s.io/kubernetes") {
                // hack/lib/version.sh of Kubernetes.
                let (major, minor) = major_minor(&v);
                for pkg in [
                    "k8s.io/component-base/version",
                    "k8s.io/client-go/pkg/version",
                ] {
                    x(&format!("{pkg}.gitVersion"), &v);
                    x(&format!("{pkg}.gitMajor"), &major);
                    x(&format!("{pkg}.gitMinor"), &minor);
                    x(&format!("{pkg}.gitTreeState"), "clean");
                }
            }
            if let Some(v) = required(&text, "github.com/argoproj/argo-rollouts") {
                // Argo Rollouts' Makefile (utils/version).
                let pkg = "github.com/argoproj/argo-rollouts/utils/version";
                x(&format!("{pkg}.version"), &v);
                x(&format!("{pkg}.gitTag"), &v);
                x(&format!("{pkg}.gitCommit"), "module");
                x(&format!("{pkg}.gitTreeState"), "clean");
            }
        }
        // Flagger's version is a constant of its source.
        GoModule::Flagger => {}
        GoModule::Prometheus => {
            if let Some(v) = required(&text, "github.com/prometheus/prometheus") {
                // The module's v0.MINOR.PATCH is Prometheus 2.MINOR.PATCH (3.x from v0.300).
                let release = release_of_module(&v);
                x("github.com/prometheus/common/version.Version", &release);
                x("github.com/prometheus/common/version.Branch", "module");
            }
        }
    }
    Ok(flags.join(" "))
}

/// The version `go.mod` requires of `module`.
fn required(go_mod: &str, module: &str) -> Option<String> {
    go_mod.lines().find_map(|l| {
        let l = l.trim().trim_start_matches("require").trim();
        let mut it = l.split_whitespace();
        (it.next()? == module).then(|| it.next().map(String::from))?
    })
}

fn major_minor(v: &str) -> (String, String) {
    let mut it = v.trim_start_matches('v').split('.');
    (
        it.next().unwrap_or("0").to_string(),
        it.next().unwrap_or("0").to_string(),
    )
}

fn release_of_module(v: &str) -> String {
    let parts: Vec<&str> = v.trim_start_matches('v').split('.').collect();
    match parts.as_slice() {
        ["0", minor, patch] => match minor.parse::<u32>() {
            Ok(m) if m >= 300 => format!("3.{}.{patch}", m - 300),
            Ok(m) => format!("2.{m}.{patch}"),
            Err(_) => v.to_string(),
        },
        _ => v.trim_start_matches('v').to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_come_from_the_pins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("go.mod"),
            "module x\n\nrequire (\n\tgithub.com/argoproj/argo-rollouts v1.9.1\n\tk8s.io/kubernetes v1.34.1 // indirect\n)\n",
        )
        .unwrap();
        let f = ldflags(GoModule::ControlPlane, dir.path()).unwrap();
        assert!(f.starts_with("-s -w "), "{f}");
        assert!(
            f.contains("-X k8s.io/component-base/version.gitVersion=v1.34.1"),
            "{f}"
        );
        assert!(
            f.contains("-X k8s.io/component-base/version.gitMinor=34"),
            "{f}"
        );
        assert!(
            f.contains("-X github.com/argoproj/argo-rollouts/utils/version.version=v1.9.1"),
            "{f}"
        );
        std::fs::write(
            dir.path().join("go.mod"),
            "module y\nrequire github.com/prometheus/prometheus v0.55.1\n",
        )
        .unwrap();
        let f = ldflags(GoModule::Prometheus, dir.path()).unwrap();
        assert!(f.contains("version.Version=2.55.1"), "{f}");
        assert_eq!(release_of_module("v0.316.0"), "3.16.0");
    }

    #[test]
    fn the_projects_pins_are_found() {
        let folder = super::super::workspace().join("fixtures/controlplane");
        let f = ldflags(GoModule::ControlPlane, &folder).unwrap();
        assert!(f.contains("gitVersion=v1.34"), "{f}");
        assert!(f.contains("version.version=v1.9.1"), "{f}");
    }
}
