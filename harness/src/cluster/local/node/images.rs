//! Which images the node can run, and as what: no container runtime exists here, so an image
//! is a local binary plus the environment its image would set.

use std::path::PathBuf;

/// What an image runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub binary: PathBuf,
    /// The image's own `ENV`, under the container's `env`.
    pub env: Vec<(String, String)>,
    /// Names the image's entrypoint goes by: a container `command` whose first word ends in
    /// one of them runs the binary (with the rest as arguments); any other command cannot run.
    pub entrypoints: Vec<&'static str>,
}

/// The images of this node.
#[derive(Debug, Clone)]
pub struct ImageMap {
    entries: Vec<(&'static str, Image)>,
}

impl ImageMap {
    /// The sample app (`gauntlet/sample-app`, any tag or digest; its Dockerfile's `ENV`) and,
    /// when given, Flagger's loadtester (`ghcr.io/fluxcd/flagger-loadtester`).
    pub fn new(sample_app: PathBuf, loadtester: Option<PathBuf>) -> ImageMap {
        let mut entries = vec![(
            "docker.io/gauntlet/sample-app",
            Image {
                binary: sample_app,
                // fixtures/sample-app/Dockerfile: ENV APP_VERSION=${APP_VERSION} (0.0.0 by
                // default), LISTEN=0.0.0.0:8080.
                env: vec![
                    ("APP_VERSION".into(), "0.0.0".into()),
                    ("LISTEN".into(), "0.0.0.0:8080".into()),
                ],
                entrypoints: vec!["sample-app"],
            },
        )];
        if let Some(lt) = loadtester {
            entries.push((
                "ghcr.io/fluxcd/flagger-loadtester",
                Image {
                    binary: lt,
                    env: Vec::new(),
                    entrypoints: vec!["loadtester"],
                },
            ));
        }
        ImageMap { entries }
    }

    /// The image `reference` (`name[:tag][@digest]`), or why the node cannot run it.
    pub fn resolve(&self, reference: &str) -> Result<&Image, String> {
        let repo = repository(reference);
        self.entries
            .iter()
            .find(|(r, _)| *r == repo)
            .map(|(_, i)| i)
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .entries
                    .iter()
                    .map(|(r, _)| r.trim_start_matches("docker.io/"))
                    .collect();
                format!(
                    "image \"{reference}\" cannot run on gauntlet's local node: it has no \
                     container runtime and runs only {} (any tag) as local binaries",
                    known.join(", ")
                )
            })
    }
}

/// The repository of an image reference, normalized as Docker does (`docker.io/` for names
/// without a registry, `library/` for single-component names), without tag or digest.
pub fn repository(reference: &str) -> String {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    // A tag is after the last ':' that follows the last '/' (a registry may have a port).
    let slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    let name = match no_digest[slash..].find(':') {
        Some(i) => &no_digest[..slash + i],
        None => no_digest,
    };
    let first = name.split('/').next().unwrap_or("");
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_as_docker_does() {
        assert_eq!(
            repository("gauntlet/sample-app:latest"),
            "docker.io/gauntlet/sample-app"
        );
        assert_eq!(
            repository("docker.io/gauntlet/sample-app@sha256:abc"),
            "docker.io/gauntlet/sample-app"
        );
        assert_eq!(repository("nginx"), "docker.io/library/nginx");
        assert_eq!(repository("localhost:5000/app:1"), "localhost:5000/app");
        assert_eq!(
            repository("ghcr.io/fluxcd/flagger-loadtester:0.36.0"),
            "ghcr.io/fluxcd/flagger-loadtester"
        );
    }

    #[test]
    fn an_unknown_image_is_named_in_the_reason() {
        let m = ImageMap::new("/bin/sample-app".into(), None);
        assert!(m.resolve("gauntlet/sample-app:2.0.0").is_ok());
        let e = m.resolve("nginx:1.27").unwrap_err();
        assert!(e.contains("\"nginx:1.27\""), "{e}");
        assert!(e.contains("gauntlet/sample-app"), "{e}");
    }
}
