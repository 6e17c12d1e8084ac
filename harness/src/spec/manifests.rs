//! Reading a target folder: every `*.yaml` / `*.yml` in it (not below it), sorted by name, split
//! into documents and sorted by `apiVersion`/`kind`.
//!
//! Scenario files may live beside the manifests (`target: .`), so a document without
//! `apiVersion` is not a manifest and is skipped here; the scenario loader owns it. Everything
//! with an `apiVersion` is kept: the objects the emulation interprets come out typed, the rest
//! raw, so nothing in the folder silently disappears.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::argo::{self, AnalysisTemplate, ClusterAnalysisTemplate, Rollout};
use super::crd::{self, CrdDocument};
use super::error::{KeyPath, SpecError, SpecErrorKind, SpecErrors};
use super::shape::{self, Problem, Shape};

/// The namespace of an object whose manifest names none, as `kubectl apply` without `-n` and
/// the local backend both use.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Where a document came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file, as found in the target folder (folder joined with the file name).
    pub file: PathBuf,
    /// 1-based among the file's non-empty YAML documents.
    pub document: usize,
}

/// A typed object and where it came from. `raw` is the document as written (nulls dropped), for
/// what Argo reads by path (`valueFrom.fieldRef`) and for backends that apply it unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest<T> {
    pub origin: Origin,
    pub object: T,
    pub raw: Value,
}

/// A document with `apiVersion` and `kind` that the emulation does not interpret itself
/// (Deployments, Flagger's Canary and MetricTemplate, ConfigMaps, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct RawManifest {
    pub origin: Origin,
    pub api_version: String,
    pub kind: String,
    /// `metadata.name`, empty when missing.
    pub name: String,
    /// `metadata.namespace`, or [`DEFAULT_NAMESPACE`] when missing (cluster-scoped kinds too).
    pub namespace: String,
    pub value: Value,
}

/// Which controller a target is written for, from the objects it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControllerKind {
    Argo,
    Flagger,
}

/// The manifests of one target folder.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    /// The folder (or single file) that was read.
    pub dir: PathBuf,
    pub rollouts: Vec<Manifest<Rollout>>,
    pub analysis_templates: Vec<Manifest<AnalysisTemplate>>,
    pub cluster_analysis_templates: Vec<Manifest<ClusterAnalysisTemplate>>,
    pub services: Vec<Manifest<Service>>,
    pub ingresses: Vec<Manifest<Ingress>>,
    /// Everything else with an `apiVersion`, in file order.
    pub others: Vec<RawManifest>,
    /// `(kind, namespace, name)` of objects that failed to decode: references to them are not
    /// reported again as missing.
    broken: BTreeSet<(String, String, String)>,
    /// Every document of a CRD group ([`crd::GROUPS`]) as written, decoded or not, for the
    /// validation against the CRDs.
    crd_documents: Vec<CrdDocument>,
}

impl Manifests {
    /// No manifests yet, for `dir`.
    pub(crate) fn new(dir: &Path) -> Manifests {
        Manifests {
            dir: dir.to_path_buf(),
            ..Manifests::default()
        }
    }

    /// Reads and decodes every manifest of `dir` (a folder, or one file).
    ///
    /// # Errors
    /// Every file that cannot be read or parsed and every object that does not decode, all of
    /// them; cross-object validation is [`super::load_target`]'s.
    pub fn load(dir: &Path) -> Result<Manifests, SpecErrors> {
        let (manifests, errors) = Manifests::load_partial(dir);
        SpecErrors(errors).into_result(manifests)
    }

    /// As [`Manifests::load`], but keeps what did decode next to the errors, so that validation
    /// can still report the rest of the target.
    pub(crate) fn load_partial(dir: &Path) -> (Manifests, Vec<SpecError>) {
        let mut m = Manifests::new(dir);
        let mut errors = Vec::new();
        let files = match manifest_files(dir) {
            Ok(f) => f,
            Err(e) => {
                errors.push(file_error(dir, SpecErrorKind::Read(e)));
                return (m, errors);
            }
        };
        for file in files {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(file_error(&file, SpecErrorKind::Read(e)));
                    continue;
                }
            };
            m.add_text(&file, &text, &mut errors);
        }
        m.check_duplicates(&mut errors);
        (m, errors)
    }

    /// Adds the documents of one file's text; public to the crate so tests can feed literal
    /// YAML without a folder.
    pub(crate) fn add_text(&mut self, file: &Path, text: &str, errors: &mut Vec<SpecError>) {
        let docs = match serde_saphyr::from_multiple::<Value>(text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(file_error(file, SpecErrorKind::Yaml(e)));
                return;
            }
        };
        for (i, mut doc) in docs.into_iter().enumerate() {
            shape::strip_nulls(&mut doc);
            let origin = Origin {
                file: file.to_path_buf(),
                document: i + 1,
            };
            self.add_document(origin, doc, errors);
        }
    }

    fn add_document(&mut self, origin: Origin, doc: Value, errors: &mut Vec<SpecError>) {
        // Not a mapping, or no apiVersion: a scenario file or something else that is not ours.
        let Some(api_version) = doc.get("apiVersion") else {
            return;
        };
        let Some(api_version) = api_version.as_str().map(str::to_string) else {
            errors.push(doc_error(
                &origin,
                None,
                "apiVersion",
                SpecErrorKind::invalid(format!(
                    "expected a string, got {}",
                    shape::describe(&doc["apiVersion"])
                )),
            ));
            return;
        };
        let Some(kind) = doc.get("kind").and_then(Value::as_str).map(str::to_string) else {
            errors.push(doc_error(
                &origin,
                None,
                "kind",
                SpecErrorKind::invalid("a manifest with apiVersion needs a kind"),
            ));
            return;
        };
        if kind == "List" && api_version == "v1" {
            // `kubectl get -o yaml` output: the items are the objects.
            let items = doc.get("items").and_then(Value::as_array).cloned();
            for item in items.unwrap_or_default() {
                self.add_document(origin.clone(), item, errors);
            }
            return;
        }
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let namespace = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string();
        let label = format!("{kind}/{}", if name.is_empty() { "?" } else { &name });
        if name.is_empty() {
            errors.push(doc_error(
                &origin,
                Some(&label),
                "metadata.name",
                SpecErrorKind::invalid("metadata.name is required"),
            ));
        }
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        if crd::GROUPS.contains(&group) {
            self.crd_documents.push(CrdDocument {
                origin: origin.clone(),
                label: label.clone(),
                api_version: api_version.clone(),
                kind: kind.clone(),
                value: doc.clone(),
            });
        }
        let problems = match (api_version.as_str(), kind.as_str()) {
            (argo::API_VERSION, "Rollout") => {
                self.decode_into(&origin, doc, argo::decode_rollout, |m| &mut m.rollouts)
            }
            (argo::API_VERSION, "AnalysisTemplate") => {
                self.decode_into(&origin, doc, argo::decode_analysis_template, |m| {
                    &mut m.analysis_templates
                })
            }
            (argo::API_VERSION, "ClusterAnalysisTemplate") => {
                self.decode_into(&origin, doc, argo::decode_cluster_analysis_template, |m| {
                    &mut m.cluster_analysis_templates
                })
            }
            (v, k) if v.starts_with("argoproj.io/") => argo::refuse_other(v, k),
            ("v1", "Service") => {
                self.decode_into(&origin, doc, decode_k8s::<Service>, |m| &mut m.services)
            }
            ("networking.k8s.io/v1", "Ingress") => {
                self.decode_into(&origin, doc, decode_k8s::<Ingress>, |m| &mut m.ingresses)
            }
            ("extensions/v1beta1" | "networking.k8s.io/v1beta1", "Ingress") => vec![(
                KeyPath::from("apiVersion"),
                SpecErrorKind::invalid_hint(
                    format!("{api_version} Ingress was removed in Kubernetes 1.22"),
                    "use apiVersion: networking.k8s.io/v1 (backend.service.name/port)",
                ),
            )],
            _ => {
                self.others.push(RawManifest {
                    origin: origin.clone(),
                    api_version: api_version.clone(),
                    kind: kind.clone(),
                    name: name.clone(),
                    namespace: namespace.clone(),
                    value: doc,
                });
                Vec::new()
            }
        };
        if !problems.is_empty() {
            self.broken
                .insert((kind.clone(), namespace.clone(), name.clone()));
        }
        for (path, kind) in problems {
            errors.push(doc_error(&origin, Some(&label), path.as_str(), kind));
        }
    }

    /// Decodes `doc` and pushes it to the list `list` selects; returns the problems otherwise.
    fn decode_into<T>(
        &mut self,
        origin: &Origin,
        doc: Value,
        decode: fn(&Value) -> Result<T, Vec<Problem>>,
        list: fn(&mut Manifests) -> &mut Vec<Manifest<T>>,
    ) -> Vec<Problem> {
        match decode(&doc) {
            Ok(object) => {
                list(self).push(Manifest {
                    origin: origin.clone(),
                    object,
                    raw: doc,
                });
                Vec::new()
            }
            Err(problems) => problems,
        }
    }

    /// Two objects of one kind with one name: the later `kubectl apply` would overwrite the
    /// earlier, so which one the user meant is unknowable.
    fn check_duplicates(&self, errors: &mut Vec<SpecError>) {
        let mut all: Vec<(String, &str, &str, &Origin)> = Vec::new();
        fn typed<'a>(
            kind: &str,
            meta: &'a ObjectMeta,
            origin: &'a Origin,
        ) -> (String, &'a str, &'a str, &'a Origin) {
            (kind.to_string(), namespace(meta), name(meta), origin)
        }
        all.extend(
            self.rollouts
                .iter()
                .map(|r| typed("Rollout", &r.object.metadata, &r.origin)),
        );
        all.extend(
            self.analysis_templates
                .iter()
                .map(|t| typed("AnalysisTemplate", &t.object.metadata, &t.origin)),
        );
        // Cluster-scoped: the namespace does not tell two apart.
        all.extend(self.cluster_analysis_templates.iter().map(|t| {
            (
                "ClusterAnalysisTemplate".to_string(),
                "",
                name(&t.object.metadata),
                &t.origin,
            )
        }));
        all.extend(
            self.services
                .iter()
                .map(|s| typed("Service", &s.object.metadata, &s.origin)),
        );
        all.extend(
            self.ingresses
                .iter()
                .map(|i| typed("Ingress", &i.object.metadata, &i.origin)),
        );
        all.extend(self.others.iter().map(|o| {
            (
                format!("{} {}", o.api_version, o.kind),
                o.namespace.as_str(),
                o.name.as_str(),
                &o.origin,
            )
        }));
        for (i, (kind, ns, nm, origin)) in all.iter().enumerate() {
            if nm.is_empty() {
                continue;
            }
            if let Some((.., first)) = all[..i]
                .iter()
                .find(|(k, n, m, _)| k == kind && n == ns && m == nm)
            {
                let short = kind.rsplit(' ').next().unwrap_or(kind);
                errors.push(doc_error(
                    origin,
                    Some(&format!("{short}/{nm}")),
                    "metadata.name",
                    SpecErrorKind::invalid(format!(
                        "{short} `{nm}` is defined twice; the first is in `{}` (document {})",
                        first.file.display(),
                        first.document
                    )),
                ));
            }
        }
    }

    /// The documents of the CRD groups ([`crd::GROUPS`]) as written, whether they decoded or not.
    pub fn crd_documents(&self) -> &[CrdDocument] {
        &self.crd_documents
    }

    /// Whether an object of this kind and name was in the folder but failed to decode (its own
    /// errors are reported; a reference to it is not reported again as missing).
    pub fn is_broken(&self, kind: &str, namespace: &str, name: &str) -> bool {
        self.broken
            .contains(&(kind.to_string(), namespace.to_string(), name.to_string()))
    }

    pub fn analysis_template(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<&Manifest<AnalysisTemplate>> {
        self.analysis_templates.iter().find(|t| {
            self::name(&t.object.metadata) == name
                && self::namespace(&t.object.metadata) == namespace
        })
    }

    pub fn cluster_analysis_template(
        &self,
        name: &str,
    ) -> Option<&Manifest<ClusterAnalysisTemplate>> {
        self.cluster_analysis_templates
            .iter()
            .find(|t| self::name(&t.object.metadata) == name)
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Manifest<Service>> {
        self.services.iter().find(|s| {
            self::name(&s.object.metadata) == name
                && self::namespace(&s.object.metadata) == namespace
        })
    }

    pub fn ingress(&self, namespace: &str, name: &str) -> Option<&Manifest<Ingress>> {
        self.ingresses.iter().find(|i| {
            self::name(&i.object.metadata) == name
                && self::namespace(&i.object.metadata) == namespace
        })
    }

    /// The raw objects of one `apiVersion` group (`flagger.app`) and kind.
    pub fn others_of<'a>(
        &'a self,
        group: &'a str,
        kind: &'a str,
    ) -> impl Iterator<Item = &'a RawManifest> + 'a {
        self.others
            .iter()
            .filter(move |o| o.kind == kind && o.api_version.split('/').next() == Some(group))
    }

    /// The controller the target is written for: Argo with a Rollout, Flagger with a Canary.
    ///
    /// # Errors
    /// Neither or both, with what was found.
    pub fn controller(&self) -> Result<ControllerKind, String> {
        let argo = !self.rollouts.is_empty();
        let flagger = self.others_of("flagger.app", "Canary").next().is_some();
        match (argo, flagger) {
            (true, false) => Ok(ControllerKind::Argo),
            (false, true) => Ok(ControllerKind::Flagger),
            (true, true) => Err(format!(
                "`{}` holds both an Argo Rollout and a Flagger Canary; a target is written for one controller",
                self.dir.display()
            )),
            (false, false) => Err(format!(
                "`{}` holds neither an Argo Rollout (argoproj.io/v1alpha1) nor a Flagger Canary \
                 (flagger.app/v1beta1)",
                self.dir.display()
            )),
        }
    }
}

/// `metadata.name`, empty when unset.
pub fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// `metadata.namespace`, or [`DEFAULT_NAMESPACE`].
pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
}

/// The YAML files directly in `dir`, sorted by name so errors and objects come in a stable
/// order; `dir` itself when it is a file.
fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Decodes a Kubernetes built-in kind with k8s-openapi, which knows its schema.
fn decode_k8s<T: DeserializeOwned>(doc: &Value) -> Result<T, Vec<Problem>> {
    serde_json::from_value(doc.clone())
        .map_err(|e| vec![(KeyPath::root(), SpecErrorKind::Schema(e))])
}

/// Checks that a Kubernetes part of a document (at a JSON pointer) decodes.
pub(crate) type PartCheck = (&'static str, fn(&Value) -> Result<(), serde_json::Error>);

/// Checks `doc` against its shape and the Kubernetes parts inside it, then decodes it; every
/// problem is returned, not only the first.
pub(crate) fn decode_checked<T: DeserializeOwned>(
    doc: &Value,
    shape: &Shape,
    k8s_parts: &[PartCheck],
) -> Result<T, Vec<Problem>> {
    let mut problems = Vec::new();
    shape::check(doc, shape, &KeyPath::root(), &mut problems);
    for (pointer, check) in k8s_parts {
        if let Some(part) = doc.pointer(pointer)
            && let Err(e) = check(part)
        {
            let path = pointer.trim_start_matches('/').replace('/', ".");
            problems.push((KeyPath::from(path.as_str()), SpecErrorKind::Schema(e)));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // The shape admits only what the types accept; a failure here is a bug of ours, reported
    // as a problem of the object rather than a panic.
    serde_json::from_value(doc.clone())
        .map_err(|e| vec![(KeyPath::root(), SpecErrorKind::Schema(e))])
}

fn file_error(file: &Path, kind: SpecErrorKind) -> SpecError {
    SpecError {
        file: file.to_path_buf(),
        document: None,
        object: None,
        path: String::new(),
        kind,
    }
}

/// An error located in one document.
pub(crate) fn doc_error(
    origin: &Origin,
    object: Option<&str>,
    path: &str,
    kind: SpecErrorKind,
) -> SpecError {
    SpecError {
        file: origin.file.clone(),
        document: Some(origin.document),
        object: object.map(str::to_string),
        path: path.to_string(),
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn from_text(text: &str) -> (Manifests, Vec<SpecError>) {
        let mut m = Manifests::new(Path::new("t"));
        let mut errors = Vec::new();
        m.add_text(Path::new("t/all.yaml"), text, &mut errors);
        m.check_duplicates(&mut errors);
        (m, errors)
    }

    const SERVICE_AND_SCENARIO: &str = r#"
---
name: a scenario beside the manifests
target: .
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: prod}
spec: {}
---
- not
- a mapping
"#;

    #[test]
    fn documents_are_split_and_sorted_by_kind() {
        let (m, errors) = from_text(SERVICE_AND_SCENARIO);
        assert!(errors.is_empty(), "{}", SpecErrors(errors));
        assert_eq!(m.services.len(), 1);
        assert_eq!(m.services[0].origin.document, 2);
        assert_eq!(name(&m.services[0].object.metadata), "web");
        assert_eq!(m.others.len(), 1);
        assert_eq!(m.others[0].kind, "Deployment");
        assert_eq!(m.others[0].namespace, "prod");
        assert_eq!(m.others[0].origin.document, 3);
        assert!(m.service(DEFAULT_NAMESPACE, "web").is_some());
        assert!(m.service("prod", "web").is_none());
    }

    #[test]
    fn lists_are_expanded() {
        let (m, errors) = from_text(
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}}\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n",
        );
        assert!(errors.is_empty());
        assert_eq!(m.services.len(), 2);
    }

    #[test]
    fn broken_documents_are_errors_with_their_location() {
        let (_, errors) = from_text(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: eighty}]}\n---\napiVersion: v1\nmetadata: {name: b}\n",
        );
        assert_eq!(errors.len(), 2, "{}", SpecErrors(errors));
        assert_eq!(errors[0].document, Some(1));
        assert_eq!(errors[0].object.as_deref(), Some("Service/a"));
        assert!(matches!(errors[0].kind, SpecErrorKind::Schema(_)));
        assert_eq!(errors[1].document, Some(2));
        assert_eq!(errors[1].path, "kind");
    }

    #[test]
    fn yaml_syntax_errors_name_the_file() {
        let (_, errors) = from_text("apiVersion: v1\nkind: [Service\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].file, Path::new("t/all.yaml"));
        assert!(matches!(errors[0].kind, SpecErrorKind::Yaml(_)));
    }

    #[test]
    fn duplicates_and_nameless_objects_are_refused() {
        let (_, errors) = from_text(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
        );
        let got: Vec<(Option<usize>, &str)> = errors
            .iter()
            .map(|e| (e.document, e.path.as_str()))
            .collect();
        assert_eq!(
            got,
            [(Some(3), "metadata.name"), (Some(2), "metadata.name")]
        );
        assert!(errors[1].kind.reason().contains("defined twice"));
    }

    #[test]
    fn old_ingress_versions_are_refused() {
        let (_, errors) =
            from_text("apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: a}\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "apiVersion");
    }

    #[test]
    fn a_folder_is_read_in_name_order_and_skips_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: b}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("a.yml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "apiVersion: v1\n").unwrap();
        let m = Manifests::load(dir.path()).unwrap();
        let names: Vec<&str> = m
            .services
            .iter()
            .map(|s| name(&s.object.metadata))
            .collect();
        assert_eq!(names, ["a", "b"]);
        let missing = Manifests::load(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing.0[0].kind, SpecErrorKind::Read(_)));
    }
}
