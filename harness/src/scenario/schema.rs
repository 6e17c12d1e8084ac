//! The scenario file's JSON Schema, derived from the parser's own types ([`super::file`]) so
//! that editors complete and check exactly what `gauntlet validate` accepts. Draft-07, the
//! newest draft every YAML language server reads.

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::Value;

/// Where the committed copy lives, relative to the project root; suite files name it in their
/// `# yaml-language-server: $schema=` line.
pub const COMMITTED: &str = "docs/scenario.schema.json";

/// The schema as JSON.
pub fn json() -> Value {
    let generator = SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<super::file::File>();
    serde_json::to_value(schema).unwrap_or(Value::Null)
}

/// The schema as the committed file holds it: pretty JSON and a final newline.
pub fn text() -> String {
    let mut s = serde_json::to_string_pretty(&json()).unwrap_or_default();
    s.push('\n');
    s
}

/// Every key path a scenario file may hold (`expect.clientErrors.max`, `actions[].at`), read
/// from the schema: what docs/scenarios.md must document.
pub fn key_paths() -> Vec<String> {
    let root = json();
    let mut out = Vec::new();
    walk(&root, &root, "", &mut out);
    out.sort();
    out.dedup();
    out
}

fn walk(root: &Value, node: &Value, prefix: &str, out: &mut Vec<String>) {
    let node = resolve(root, node);
    if let Some(Value::Object(props)) = node.get("properties") {
        for (key, sub) in props {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            out.push(path.clone());
            walk(root, sub, &path, out);
        }
    }
    if let Some(items) = node.get("items") {
        walk(root, items, &format!("{prefix}[]"), out);
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alts)) = node.get(combinator) {
            for alt in alts {
                walk(root, alt, prefix, out);
            }
        }
    }
}

/// The page of the format.
pub const REFERENCE: &str = "docs/scenarios.md";

/// The entry of `key` on the reference page (`docs/scenarios.md#expect-within`), for keys of the
/// format; an index (`actions[2].at`) names the entry of every element. `None` for other keys
/// (a manifest's field paths).
pub fn doc_link(key: &str) -> Option<String> {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    let keys = KEYS.get_or_init(key_paths);
    let general = element_key(key);
    keys.contains(&general)
        .then(|| format!("{REFERENCE}#{}", anchor(&general)))
}

/// `actions[2].at` → `actions[].at`.
fn element_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

/// The id of a key's entry on the reference page: lowercase, `.` as `-`, no `[]`.
pub fn anchor(key: &str) -> String {
    key.replace("[]", "").replace('.', "-").to_ascii_lowercase()
}

/// Follows a local `$ref` (`#/definitions/Name`).
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix('#')
            .and_then(|p| root.pointer(p))
            .unwrap_or(node),
        None => node,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_format_is_in_the_schema() {
        let keys = key_paths();
        for k in [
            "name",
            "target",
            "timeScale",
            "release.faults.memoryLeak.rate",
            "release.faults.unready",
            "expect.clientErrors.max",
            "expect.weights",
            "actions[].at",
            "actions[].action",
        ] {
            assert!(keys.contains(&k.to_string()), "{k} missing from {keys:?}");
        }
        let root = json();
        assert_eq!(root["additionalProperties"], false);
        assert_eq!(
            doc_link("actions[3].at").as_deref(),
            Some("docs/scenarios.md#actions-at")
        );
        assert_eq!(
            doc_link("release.faults.memoryLeak.rate").as_deref(),
            Some("docs/scenarios.md#release-faults-memoryleak-rate")
        );
        assert_eq!(doc_link("spec.analysis.interval"), None);
        assert_eq!(doc_link(""), None);
        assert_eq!(root["$schema"], "http://json-schema.org/draft-07/schema#");
    }
}
