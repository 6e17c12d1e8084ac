//! The scenario format's three descriptions agree: the parser, its JSON Schema (committed as
//! docs/scenario.schema.json) and its reference page (docs/scenarios.md). And nothing the
//! project shows its users points outside the project.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gauntlet::scenario::{file, schema};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn committed_schema() -> Value {
    serde_json::from_str(&read(schema::COMMITTED)).expect("the committed schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&committed_schema()).expect("the committed schema is a schema")
}

fn suite_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("suites"), &mut out);
    out.sort();
    assert!(out.len() > 20, "suites/ holds the scenarios: {out:?}");
    out
}

fn yaml_value(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("YAML")
}

#[test]
fn the_committed_schema_is_what_gauntlet_schema_prints() {
    let printed = assert_cmd::Command::cargo_bin("gauntlet")
        .unwrap()
        .arg("schema")
        .output()
        .unwrap();
    assert!(printed.status.success());
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert_eq!(printed, schema::text());
    assert!(
        read(schema::COMMITTED) == printed,
        "{} is stale: run `gauntlet schema --out {}`",
        schema::COMMITTED,
        schema::COMMITTED
    );
}

#[test]
fn every_suite_file_names_the_schema_and_follows_it() {
    let validator = validator();
    let schema_file = root().join(schema::COMMITTED).canonicalize().unwrap();
    for path in suite_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let named = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{}: first line is {first:?}", path.display()));
        let named = path.parent().unwrap().join(named);
        assert_eq!(
            named.canonicalize().ok().as_ref(),
            Some(&schema_file),
            "{}: $schema={} is not {}",
            path.display(),
            named.display(),
            schema::COMMITTED
        );
        let errors: Vec<String> = validator
            .iter_errors(&yaml_value(&text))
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
}

#[test]
fn an_unknown_key_is_refused_by_the_schema_and_by_the_parser() {
    let path = root().join("suites/argo/errors-rolled-back.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("  within:"));
    let misspelt = text.replacen("  within:", "  whithin:", 1);
    let wrong_level = format!("{text}\nretries: 3\n");
    let validator = validator();
    for bad in [&misspelt, &wrong_level] {
        assert!(
            !validator.is_valid(&yaml_value(bad)),
            "the schema took:\n{bad}"
        );
        let errors = file::parse(&path, bad, 1).expect_err("the parser took it");
        let text = errors[0].to_string();
        assert!(
            text.contains("whithin") || text.contains("retries"),
            "{text}"
        );
    }
    // The unchanged file passes both.
    assert!(validator.is_valid(&yaml_value(&text)));
    file::parse(&path, &text, 1).expect("the suite file parses");
}

/// The keys the page documents: each entry is `<a id="…"></a>` then "### `key`".
fn documented_keys(page: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = page.lines().collect();
    let mut keys = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(key) = line
            .strip_prefix("### `")
            .and_then(|rest| rest.strip_suffix('`'))
        else {
            continue;
        };
        let anchor = format!("<a id=\"{}\"></a>", schema::anchor(key));
        assert_eq!(
            i.checked_sub(1).map(|j| lines[j]),
            Some(anchor.as_str()),
            "docs/scenarios.md: the entry of `{key}` needs the anchor errors link to"
        );
        keys.insert(key.to_string());
    }
    keys
}

#[test]
fn the_reference_page_documents_exactly_the_keys_the_parser_accepts() {
    let page = read(schema::REFERENCE);
    let documented = documented_keys(&page);
    let accepted: BTreeSet<String> = schema::key_paths().into_iter().collect();
    let undocumented: Vec<_> = accepted.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        undocumented.is_empty(),
        "keys the parser accepts but docs/scenarios.md does not document: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "keys docs/scenarios.md documents but the parser refuses: {unknown:?}"
    );
}

/// A file holding every key of the format at once parses, so the schema's key list is the
/// parser's and not only the schema generator's view of it.
#[test]
fn a_file_with_every_key_parses() {
    let target = root().join("fixtures/apps/argo");
    let text = format!(
        r#"
name: every-key
description: all of them
target: {}
baseline: {{ version: "1.0.0" }}
release:
  version: "2.0.0"
  faults:
    errors: {{ rate: 30%, status: 503 }}
    latency: {{ delay: 800ms, jitter: 200ms }}
    memoryLeak: {{ rate: 8MiB/s }}
    crash: {{ after: 20s }}
    unready: false
load: {{ rate: 50/s, connections: 8 }}
timeScale: 0.25
tags: [nightly]
actions:
  - {{ at: 10s, action: abort }}
expect:
  outcome: rolled-back
  within: 1m30s
  clientErrors: {{ max: 5% }}
  weights: [20]
  judge: justified
"#,
        target.display()
    );
    let mut keys = BTreeSet::new();
    collect_keys(&yaml_value(&text), "", &mut keys);
    let accepted: BTreeSet<String> = schema::key_paths().into_iter().collect();
    assert_eq!(keys, accepted);
    assert!(validator().is_valid(&yaml_value(&text)));
    file::parse(&root().join("every-key.yaml"), &text, 1).expect("parses");
}

fn collect_keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, sub) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                collect_keys(sub, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items.iter().filter(|i| i.is_object()) {
                collect_keys(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn an_error_links_to_its_keys_entry() {
    let path = root().join("suites/argo/errors-rolled-back.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let bad = text.replacen("within: ", "within: soon #", 1);
    let errors = file::parse(&path, &bad, 1).unwrap_err();
    let shown = errors[0].to_string();
    assert!(
        shown.contains("expect.within") && shown.ends_with("(docs/scenarios.md#expect-within)"),
        "{shown}"
    );
    assert!(read(schema::REFERENCE).contains("<a id=\"expect-within\"></a>"));
}

/// Users read README.md, docs/, suites/, the fixtures and gauntlet's own messages: none of it
/// may send them to a file that does not ship with the project.
#[test]
fn nothing_points_outside_the_project() {
    let mut files = vec![root().join("README.md"), root().join("Makefile")];
    for dir in [
        "docs",
        "suites",
        "fixtures",
        "harness/src",
        "harness/tests",
        ".ci",
    ] {
        collect_text_files(&root().join(dir), &mut files);
    }
    // The design notes and the reference notes on the controllers live outside the project.
    let outside = [
        "DESIGN.md",
        "DESIGN §",
        "../shared",
        "/work/shared",
        "reference §",
        "argo-rollouts.md",
        "flagger-podinfo",
        "toolchain-notes",
        "style-anchors",
    ];
    let mut found = Vec::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            // This test names what it looks for.
            if f.ends_with("scenario_format.rs") {
                continue;
            }
            if outside.iter().any(|o| line.contains(o)) {
                found.push(format!("{}:{}: {line}", f.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

fn collect_text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("target") {
                collect_text_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| {
            ["md", "rs", "yaml", "yml", "json", "toml", "sh"].contains(&e.to_str().unwrap_or(""))
        }) || path.file_name().is_some_and(|n| n == "run" || n == "deps")
        {
            out.push(path);
        }
    }
}
