//! Against the real CRDs of the pinned modules (read through `go mod download`, as at run time).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;
use crate::spec::SpecErrors;

fn schemas() -> &'static CrdSchemas {
    installed().unwrap_or_else(|e| panic!("these tests need the pinned CRDs (Go ≥ 1.26): {e}"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps")
}

/// A copy of a fixture folder with `file` replaced by `docs`.
fn variant(fixture: &str, file: &str, docs: &[Value]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures().join(fixture)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let text = docs
        .iter()
        .map(|d| serde_json::to_string_pretty(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n");
    std::fs::write(dir.path().join(file), text).unwrap();
    dir
}

fn fixture_docs(fixture: &str, file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join(fixture).join(file)).unwrap();
    serde_saphyr::from_multiple::<Value>(&text).unwrap()
}

/// `(file name, path, reason)` of each error.
fn errors_of(dir: &Path) -> Vec<(String, String, String)> {
    match crate::spec::load_target(dir) {
        Ok(_) => Vec::new(),
        Err(SpecErrors(errors)) => errors
            .into_iter()
            .map(|e| {
                (
                    e.file.file_name().unwrap().to_string_lossy().into_owned(),
                    e.path.clone(),
                    e.kind.reason(),
                )
            })
            .collect(),
    }
}

fn plain(errors: Vec<CrdError>) -> Vec<SpecError> {
    errors.into_iter().map(|e| e.error).collect()
}

fn canary() -> Value {
    fixture_docs("flagger", "canary.yaml").remove(0)
}

#[test]
fn the_pinned_crds_define_the_kinds_gauntlet_reads() {
    let s = schemas();
    for (api, kind) in [
        ("argoproj.io/v1alpha1", "Rollout"),
        ("argoproj.io/v1alpha1", "AnalysisTemplate"),
        ("argoproj.io/v1alpha1", "ClusterAnalysisTemplate"),
        ("flagger.app/v1beta1", "Canary"),
        ("flagger.app/v1beta1", "MetricTemplate"),
    ] {
        let k = s.lookup(api, kind).unwrap().unwrap();
        assert!(k.status_subresource || kind.contains("Template"), "{kind}");
        assert!(k.source.starts_with("Argo Rollouts v") || k.source.starts_with("Flagger v"));
    }
    assert!(s.lookup("v1", "Service").unwrap().is_none());
    let wrong = s.lookup("flagger.app/v1alpha3", "Canary").unwrap_err();
    assert_eq!(wrong.path.as_str(), "apiVersion");
    let typo = s.lookup("flagger.app/v1beta1", "Canery").unwrap_err();
    assert!(
        typo.message.contains("Canary, MetricTemplate"),
        "{}",
        typo.message
    );
}

#[test]
fn every_fixture_passes_the_crds() {
    let s = schemas();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let (m, _) = Manifests::load_partial(&dir);
        let errors = plain(validate_with(&m, s));
        assert!(
            errors.is_empty(),
            "{}: {}",
            dir.display(),
            SpecErrors(errors)
        );
        assert!(
            !m.crd_documents().is_empty(),
            "{} holds no Argo or Flagger object",
            dir.display()
        );
    }
}

#[test]
fn a_canary_without_analysis_is_refused_with_file_and_path() {
    let mut c = canary();
    c["spec"].as_object_mut().unwrap().remove("analysis");
    let dir = variant("flagger", "canary.yaml", &[c]);
    let got = errors_of(dir.path());
    assert_eq!(got[0].0, "canary.yaml");
    assert_eq!(got[0].1, "spec.analysis");
    assert!(
        got[0].2.starts_with(
            "Required value: the API server refuses it (CRD canaries.flagger.app v1beta1, Flagger v"
        ),
        "{got:?}"
    );
}

#[test]
fn canary_analysis_is_an_unknown_field() {
    let mut c = canary();
    c["spec"]["analysis"]["interval"] = json!(1);
    let spec = c["spec"].as_object_mut().unwrap();
    let analysis = spec.remove("analysis").unwrap();
    spec.insert("canaryAnalysis".into(), analysis);
    let dir = variant("flagger", "canary.yaml", &[c]);
    let got = errors_of(dir.path());
    let at = |p: &str| {
        got.iter()
            .find(|e| e.1 == p)
            .unwrap_or_else(|| panic!("{p}: {got:?}"))
    };
    assert!(
        at("spec.canaryAnalysis")
            .2
            .starts_with("unknown field \"canaryAnalysis\": the API server drops it")
    );
    assert!(at("spec.analysis").2.starts_with("Required value"));
    assert!(got.iter().all(|e| e.0 == "canary.yaml"));
    // gauntlet's own findings inside the pruned field are not reported on top.
    assert!(
        !got.iter().any(|e| e.1.starts_with("spec.canaryAnalysis.")),
        "{got:?}"
    );
}

#[test]
fn a_metric_interval_without_a_unit_is_refused() {
    for bad in [json!(1), json!("1")] {
        let mut c = canary();
        c["spec"]["analysis"]["metrics"][2]["interval"] = bad.clone();
        let dir = variant("flagger", "canary.yaml", &[c]);
        let got = errors_of(dir.path());
        let e = got
            .iter()
            .find(|e| e.1 == "spec.analysis.metrics[2].interval")
            .unwrap_or_else(|| panic!("{bad}: {got:?}"));
        assert_eq!(e.0, "canary.yaml");
        if bad.is_string() {
            assert!(
                e.2.starts_with("Invalid value: \"1\": should match '^[0-9]+(m|s)'"),
                "{e:?}"
            );
        } else {
            assert!(
                e.2.starts_with("must be of type string, got number 1"),
                "{e:?}"
            );
        }
    }
}

#[test]
fn the_analysis_needs_exactly_one_strategy() {
    let mut c = canary();
    c["spec"]["analysis"]["stepWeight"] = json!(10);
    let dir = variant("flagger", "canary.yaml", &[c]);
    let got = errors_of(dir.path());
    let e = got
        .iter()
        .find(|e| e.1 == "spec.analysis")
        .unwrap_or_else(|| panic!("{got:?}"));
    assert!(e.2.contains("Found 2 valid alternatives"), "{e:?}");
}

#[test]
fn a_metric_template_without_query_is_refused() {
    let mut docs = fixture_docs("flagger", "metric-templates.yaml");
    docs[0]["spec"].as_object_mut().unwrap().remove("query");
    docs[1]["spec"]["provider"]["type"] = json!("prometheus2");
    let dir = variant("flagger", "metric-templates.yaml", &docs);
    let got = errors_of(dir.path());
    assert!(
        got.iter().any(|e| e.0 == "metric-templates.yaml"
            && e.1 == "spec.query"
            && e.2.starts_with("Required value")),
        "{got:?}"
    );
    assert!(
        got.iter().any(|e| e.1 == "spec.provider.type"
            && e.2.starts_with("Unsupported value: \"prometheus2\"")),
        "{got:?}"
    );
}

#[test]
fn a_rollout_with_a_wrong_type_is_refused() {
    let mut docs = fixture_docs("argo", "rollout.yaml");
    docs[0]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] =
        json!("http");
    docs[0]["spec"]["strategy"]["canary"]["steps"][1]["pause"]["duration"] = json!(true);
    let dir = variant("argo", "rollout.yaml", &docs);
    let got = errors_of(dir.path());
    let at = |p: &str| {
        got.iter()
            .find(|e| e.1 == p)
            .unwrap_or_else(|| panic!("{p}: {got:?}"))
    };
    let port = at("spec.template.spec.containers[0].ports[0].containerPort");
    assert_eq!(port.0, "rollout.yaml");
    assert!(port.2.starts_with("must be of type integer, got string \"http\": the API server refuses it (CRD rollouts.argoproj.io v1alpha1, Argo Rollouts v"), "{port:?}");
    assert!(
        at("spec.strategy.canary.steps[1].pause.duration")
            .2
            .starts_with("must be of type integer or string")
    );
}

#[test]
fn duplicate_list_map_keys_in_the_pod_template_are_refused() {
    let mut docs = fixture_docs("argo", "rollout.yaml");
    docs[0]["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]);
    let (m, _) = {
        let dir = variant("argo", "rollout.yaml", &docs);
        Manifests::load_partial(dir.path())
    };
    let errors = plain(validate_with(&m, schemas()));
    assert_eq!(errors.len(), 1, "{}", SpecErrors(errors));
    assert_eq!(errors[0].path, "spec.template.spec.containers[0].env[1]");
    assert!(
        errors[0]
            .kind
            .reason()
            .starts_with("Duplicate value: {\"name\":\"A\"}")
    );
}

#[test]
fn status_is_not_checked_on_create_and_preserved_fields_pass() {
    let mut docs = fixture_docs("argo", "rollout.yaml");
    docs[0]["status"] = json!({"phase": 3, "anything": true});
    docs[0]["spec"]["strategy"]["canary"]["trafficRouting"]["plugins"] = json!({"x/y": {"a": 1}});
    let dir = variant("argo", "rollout.yaml", &docs);
    let (m, _) = Manifests::load_partial(dir.path());
    let errors = plain(validate_with(&m, schemas()));
    assert!(errors.is_empty(), "{}", SpecErrors(errors));
}

#[test]
fn a_crd_error_stands_for_a_hand_written_one_at_the_same_path() {
    let own = vec![doc_error(
        &Origin {
            file: "t/c.yaml".into(),
            document: 1,
        },
        Some("Canary/a"),
        "spec.analysis.interval",
        SpecErrorKind::invalid_hint("bad interval", "use 1m"),
    )];
    let crd = vec![doc_error(
        &Origin {
            file: "t/c.yaml".into(),
            document: 1,
        },
        Some("Canary/a"),
        "spec.analysis.interval",
        SpecErrorKind::invalid("Invalid value: \"1\": should match"),
    )];
    let crd = crd
        .into_iter()
        .map(|error| CrdError {
            error,
            pruned: false,
        })
        .collect();
    let merged = merge(crd, own);
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].kind.hint(), Some("use 1m"));
    assert!(merged[0].kind.reason().starts_with("Invalid value"));
}
