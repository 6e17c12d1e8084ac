//! One error type for everything wrong with a target's manifests, located precisely enough that
//! the user can go to the line: file, document, object and key path.

use std::fmt;
use std::path::PathBuf;

/// One problem in one manifest. A policy with any of them is refused before anything runs
/// (exit 2): finding it up front is worth more than emulating it.
#[derive(Debug, thiserror::Error)]
pub struct SpecError {
    /// The manifest file, as found in the target folder.
    pub file: PathBuf,
    /// 1-based position of the YAML document in the file, counting non-empty documents (an
    /// empty document before a leading `---` does not count); `None` for the whole file.
    pub document: Option<usize>,
    /// `Kind/name` (`Rollout/sample-app`); `None` when the document could not be identified.
    pub object: Option<String>,
    /// Where in the object, in the `kubectl explain` spelling:
    /// `spec.strategy.canary.steps[2].setWeight`. Empty for the whole object.
    pub path: String,
    #[source]
    pub kind: SpecErrorKind,
}

/// What is wrong, by the step that found it. Causes stay in `#[source]`, so a report that
/// prints the chain does not say them twice.
#[derive(Debug, thiserror::Error)]
pub enum SpecErrorKind {
    #[error("cannot read the file")]
    Read(#[source] std::io::Error),
    #[error("not valid YAML")]
    Yaml(#[source] serde_saphyr::Error),
    /// A Kubernetes part (metadata, pod template, Service, Ingress) that k8s-openapi refuses.
    #[error("does not match the Kubernetes schema")]
    Schema(#[source] serde_json::Error),
    /// The CRD, the API server or the controller would refuse it, now or at run time.
    #[error("{reason}")]
    Invalid {
        reason: String,
        hint: Option<String>,
    },
    /// Argo would run it, but the local emulation cannot honour it. A backend with the real
    /// controller (kind, kube) may drop these; see [`SpecErrors::without_unsupported`].
    #[error("{reason} (not supported by the local emulation)")]
    Unsupported {
        reason: String,
        hint: Option<String>,
    },
}

impl SpecErrorKind {
    pub fn invalid(reason: impl Into<String>) -> Self {
        SpecErrorKind::Invalid {
            reason: reason.into(),
            hint: None,
        }
    }

    pub fn invalid_hint(reason: impl Into<String>, hint: impl Into<String>) -> Self {
        SpecErrorKind::Invalid {
            reason: reason.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn unsupported(reason: impl Into<String>, hint: Option<&str>) -> Self {
        SpecErrorKind::Unsupported {
            reason: reason.into(),
            hint: hint.map(str::to_string),
        }
    }

    /// The fix, where one is obvious.
    pub fn hint(&self) -> Option<&str> {
        match self {
            SpecErrorKind::Invalid { hint, .. } | SpecErrorKind::Unsupported { hint, .. } => {
                hint.as_deref()
            }
            _ => None,
        }
    }

    /// The reason alone, for tests and for messages that place it themselves.
    pub fn reason(&self) -> String {
        match self {
            SpecErrorKind::Invalid { reason, .. } | SpecErrorKind::Unsupported { reason, .. } => {
                reason.clone()
            }
            other => other.to_string(),
        }
    }
}

impl SpecError {
    /// Whether only the local emulation refuses this (the real controller would run it).
    pub fn is_unsupported(&self) -> bool {
        matches!(self.kind, SpecErrorKind::Unsupported { .. })
    }
}

impl fmt::Display for SpecError {
    /// ``invalid manifest `t/rollout.yaml` (document 1), Rollout/sample-app, at
    /// `spec.strategy.canary.steps[0].setWeight` ``; the reason is the source.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid manifest `{}`", self.file.display())?;
        if let Some(d) = self.document {
            write!(f, " (document {d})")?;
        }
        if let Some(o) = &self.object {
            write!(f, ", {o}")?;
        }
        if !self.path.is_empty() {
            write!(f, ", at `{}`", self.path)?;
        }
        Ok(())
    }
}

/// Every problem of a target, in file order; never only the first.
#[derive(Debug, Default)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, SpecError> {
        self.0.iter()
    }

    /// What remains when a real controller runs the objects (kind, kube backends).
    pub fn without_unsupported(self) -> SpecErrors {
        SpecErrors(self.0.into_iter().filter(|e| !e.is_unsupported()).collect())
    }

    /// `Ok` when there is nothing to report.
    pub fn into_result<T>(self, value: T) -> Result<T, SpecErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for SpecErrors {
    /// One line per problem, location then reason (with its causes) then the fix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}: {}", e.kind)?;
            let mut source = std::error::Error::source(&e.kind);
            while let Some(s) = source {
                write!(f, ": {s}")?;
                source = s.source();
            }
            if let Some(h) = e.kind.hint() {
                write!(f, "; hint: {h}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl IntoIterator for SpecErrors {
    type Item = SpecError;
    type IntoIter = std::vec::IntoIter<SpecError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A key path under construction, spelled as `kubectl explain` and Argo's field errors spell
/// it: `a.b[2].c`, and `a['x.y']` for map keys that are not plain names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(String);

impl KeyPath {
    pub fn root() -> KeyPath {
        KeyPath(String::new())
    }

    pub fn key(&self, key: &str) -> KeyPath {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let mut s = self.0.clone();
        if plain {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(key);
        } else {
            s.push_str(&format!("[{key:?}]"));
        }
        KeyPath(s)
    }

    pub fn index(&self, i: usize) -> KeyPath {
        KeyPath(format!("{}[{i}]", self.0))
    }

    /// `self` followed by a path relative to it.
    pub fn join(&self, rel: &KeyPath) -> KeyPath {
        if self.0.is_empty() || rel.0.is_empty() || rel.0.starts_with('[') {
            KeyPath(format!("{}{}", self.0, rel.0))
        } else {
            KeyPath(format!("{}.{}", self.0, rel.0))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for KeyPath {
    fn from(s: &str) -> KeyPath {
        KeyPath(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_travel_through_anyhow() {
        fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<SpecError>();
        assert_error::<SpecErrors>();
    }

    #[test]
    fn paths_are_spelled_like_kubectl_explain() {
        let p = KeyPath::root()
            .key("spec")
            .key("steps")
            .index(2)
            .key("setWeight");
        assert_eq!(p.as_str(), "spec.steps[2].setWeight");
        let a = KeyPath::root().key("annotations").key("prometheus.io/port");
        assert_eq!(a.as_str(), r#"annotations["prometheus.io/port"]"#);
    }

    #[test]
    fn errors_print_location_reason_and_hint_on_one_line() {
        let errors = SpecErrors(vec![SpecError {
            file: "t/rollout.yaml".into(),
            document: Some(1),
            object: Some("Rollout/app".into()),
            path: "spec.replicas".into(),
            kind: SpecErrorKind::invalid_hint("must be >= 0", "use 1"),
        }]);
        assert_eq!(
            errors.to_string(),
            "invalid manifest `t/rollout.yaml` (document 1), Rollout/app, at `spec.replicas`: \
             must be >= 0; hint: use 1"
        );
    }
}
