//! What kube-apiserver v1.34 does to a custom resource before it stores it, in its order:
//!
//! 1. **Pruning** (`schema/pruning/algorithm.go`): a field that the structural schema does not
//!    name, outside `x-kubernetes-preserve-unknown-fields` and `additionalProperties`, is
//!    dropped; with strict field validation (`kubectl apply`'s default) the request is refused
//!    instead. At the resource root and in embedded resources `apiVersion`, `kind` and
//!    `metadata` are kept (ObjectMeta has rules of its own).
//! 2. **Defaulting** (`schema/defaulting`): `default` fills absent fields of present objects.
//! 3. **Value validation** (`validation.NewSchemaValidator`, go-openapi's validator as vendored in
//!    kube-openapi): `type` (an integral float passes `integer`, an integer passes `number`),
//!    `nullable`, `enum`, `pattern` (unanchored, as Go's `MatchString`), the supported `format`s,
//!    `minimum`/`maximum` (and exclusive), `multipleOf`, lengths in characters, item and property
//!    counts, `uniqueItems`, `required`, `properties`, `additionalProperties`, `items`, and the
//!    junctors `allOf`, `anyOf`, `oneOf`, `not`. A failed `anyOf`/`oneOf` reports its own error
//!    and the errors of the alternative that came closest, as kube-openapi merges them ("closest":
//!    fewest errors here, its match count there).
//! 4. **List types** (`schema/listtype`): `x-kubernetes-list-type: set` items and `map` keys
//!    must be unique.
//!
//! Not done: CEL rules (`x-kubernetes-validations`; the pinned CRDs have one transition rule,
//! `self == oldSelf`, which does not apply on create, and one on Flagger's Gateway API
//! `backendRef`, a mesh-only field), and ratcheting (updates only).

use serde_json::{Map, Value};

use super::schema::Schema;
use crate::spec::error::KeyPath;
use crate::spec::shape::describe;

/// One thing the API server would refuse.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub path: KeyPath,
    pub message: String,
    pub hint: Option<String>,
    /// Pruned, not invalid: the API server drops it (or, strict, refuses the request).
    pub unknown: bool,
}

impl Finding {
    fn new(path: &KeyPath, message: impl Into<String>) -> Finding {
        Finding {
            path: path.clone(),
            message: message.into(),
            hint: None,
            unknown: false,
        }
    }

    fn hint(mut self, hint: Option<String>) -> Finding {
        self.hint = hint;
        self
    }
}

// ---- 1. Pruning ------------------------------------------------------------------------------

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Removes the fields the API server would prune from `v`, reporting each. `root` is the
/// resource root (treated as an embedded resource, as `PruneWithOptions` does).
pub fn prune(
    v: &mut Value,
    s: Option<&Schema>,
    path: &KeyPath,
    root: bool,
    out: &mut Vec<Finding>,
) {
    if let Some(s) = s
        && s.preserve_unknown_fields
    {
        skip_prune(v, s, path, root, out);
        return;
    }
    match v {
        Value::Object(map) => {
            let Some(s) = s else {
                for k in map.keys() {
                    out.push(unknown(path, k, None));
                }
                map.clear();
                return;
            };
            let embedded = root || s.embedded_resource;
            let mut dropped = Vec::new();
            for (k, child) in map.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(p) = s.properties.get(k) {
                    prune(child, Some(p), &path.key(k), false, out);
                } else if s.keeps_additional() {
                    prune_additional(child, s, &path.key(k), out);
                } else {
                    out.push(unknown(path, k, Some(s)));
                    dropped.push(k.clone());
                }
            }
            for k in dropped {
                map.remove(&k);
            }
        }
        Value::Array(items) => {
            let item = s.and_then(|s| s.items.as_deref());
            for (i, child) in items.iter_mut().enumerate() {
                prune(child, item, &path.index(i), false, out);
            }
        }
        _ => {}
    }
}

fn prune_additional(v: &mut Value, s: &Schema, path: &KeyPath, out: &mut Vec<Finding>) {
    // `additionalProperties: true` keeps the value as it is.
    if let Some(a) = s.additional_schema() {
        prune(v, Some(a), path, false, out);
    }
}

/// Under `x-kubernetes-preserve-unknown-fields`: unknown fields stay, known ones are pruned by
/// their own schema.
fn skip_prune(v: &mut Value, s: &Schema, path: &KeyPath, root: bool, out: &mut Vec<Finding>) {
    match v {
        Value::Object(map) => {
            let embedded = root || s.embedded_resource;
            for (k, child) in map.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(p) = s.properties.get(k) {
                    prune(child, Some(p), &path.key(k), false, out);
                } else if s.keeps_additional() {
                    prune_additional(child, s, &path.key(k), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = s.items.as_deref() {
                for (i, child) in items.iter_mut().enumerate() {
                    skip_prune(child, item, &path.index(i), false, out);
                }
            }
        }
        _ => {}
    }
}

fn unknown(parent: &KeyPath, key: &str, s: Option<&Schema>) -> Finding {
    let hint = s.and_then(|s| {
        let lower = key.to_ascii_lowercase();
        s.properties
            .keys()
            .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), k))
            .filter(|(d, _)| *d <= 2)
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k)
            .or_else(|| {
                // `canaryAnalysis` for `analysis`: a known name inside the unknown one.
                s.properties
                    .keys()
                    .filter(|k| k.len() >= 4 && lower.contains(&k.to_ascii_lowercase()))
                    .max_by_key(|k| k.len())
            })
            .map(|k| format!("did you mean `{k}`?"))
            .or_else(|| {
                (!s.properties.is_empty()).then(|| {
                    let known: Vec<&str> = s.properties.keys().map(String::as_str).collect();
                    format!("the schema knows: {}", known.join(", "))
                })
            })
    });
    Finding {
        path: parent.key(key),
        message: format!("unknown field {key:?}"),
        hint,
        unknown: true,
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---- 2. Defaulting ---------------------------------------------------------------------------

/// Fills absent fields that have a `default`, in objects that are present.
pub fn apply_defaults(v: &mut Value, s: &Schema) {
    match v {
        Value::Object(map) => {
            for (k, p) in &s.properties {
                match map.get_mut(k) {
                    Some(child) => apply_defaults(child, p),
                    None => {
                        if let Some(d) = &p.default {
                            map.insert(k.clone(), d.clone());
                        }
                    }
                }
            }
            if let Some(a) = s.additional_schema() {
                for (k, child) in map.iter_mut() {
                    if !s.properties.contains_key(k) {
                        apply_defaults(child, a);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = s.items.as_deref() {
                items.iter_mut().for_each(|i| apply_defaults(i, item));
            }
        }
        _ => {}
    }
}

// ---- 3. Value validation ---------------------------------------------------------------------

/// Validates `v` against `s` as go-openapi's `SchemaValidator` does, appending every finding.
pub fn check(v: &Value, s: &Schema, path: &KeyPath, out: &mut Vec<Finding>) {
    if !type_ok(v, s) {
        out.push(type_error(v, s, path));
        return;
    }
    if v.is_null() {
        return;
    }
    if let Some(allowed) = &s.enumeration
        && !allowed.iter().any(|a| json_eq(a, v))
    {
        let list: Vec<String> = allowed.iter().map(quoted).collect();
        out.push(Finding::new(
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                quoted(v),
                list.join(", ")
            ),
        ));
    }
    match v {
        Value::String(text) => check_string(text, s, path, out),
        Value::Number(n) => check_number(n.as_f64().unwrap_or(f64::NAN), s, path, out),
        Value::Array(items) => check_array(items, s, path, out),
        Value::Object(map) => check_object(map, s, path, out),
        _ => {}
    }
    check_junctors(v, s, path, out);
}

fn type_ok(v: &Value, s: &Schema) -> bool {
    if s.types.is_empty() {
        return true;
    }
    let is = |t: &str| s.types.iter().any(|x| x == t);
    match v {
        Value::Null => s.nullable || is("null"),
        Value::Bool(_) => is("boolean"),
        Value::String(_) => is("string"),
        Value::Array(_) => is("array"),
        Value::Object(_) => is("object"),
        Value::Number(n) => {
            is("number")
                || (is("integer")
                    && (n.is_i64()
                        || n.is_u64()
                        || n.as_f64()
                            .is_some_and(|f| f.fract() == 0.0 && f.is_finite())))
        }
    }
}

fn type_error(v: &Value, s: &Schema, path: &KeyPath) -> Finding {
    let want = s.types.join(" or ");
    let hint = match v {
        Value::String(t) if s.types.iter().any(|x| x == "integer" || x == "number") => t
            .trim()
            .parse::<f64>()
            .is_ok()
            .then(|| format!("drop the quotes: {t}")),
        Value::Number(_) | Value::Bool(_) if s.types.iter().any(|x| x == "string") => {
            Some(match &s.pattern {
                Some(p) => format!("a string that matches '{}'", p.source),
                None => format!("quote it: \"{v}\""),
            })
        }
        _ => None,
    };
    Finding::new(path, format!("must be of type {want}, got {}", describe(v))).hint(hint)
}

fn check_string(text: &str, s: &Schema, path: &KeyPath, out: &mut Vec<Finding>) {
    let len = text.chars().count() as i64;
    if let Some(max) = s.max_length
        && len > max
    {
        out.push(Finding::new(
            path,
            format!("Too long: may not be more than {max} characters"),
        ));
    }
    if let Some(min) = s.min_length
        && len < min
    {
        out.push(Finding::new(
            path,
            format!("Invalid value: {text:?}: should be at least {min} chars long"),
        ));
    }
    if let Some(p) = &s.pattern
        && let Some(re) = &p.regex
        && !re.is_match(text)
    {
        out.push(Finding::new(
            path,
            format!("Invalid value: {text:?}: should match '{}'", p.source),
        ));
    }
    if let Some(f) = s.format
        && !f.accepts(text)
    {
        out.push(Finding::new(
            path,
            format!("Invalid value: {text:?}: must be of format {}", f.name()),
        ));
    }
}

fn check_number(x: f64, s: &Schema, path: &KeyPath, out: &mut Vec<Finding>) {
    let shown = trim_float(x);
    if let Some(max) = s.maximum {
        if s.exclusive_maximum && x >= max {
            out.push(Finding::new(
                path,
                format!(
                    "Invalid value: {shown}: should be less than {}",
                    trim_float(max)
                ),
            ));
        } else if x > max {
            out.push(Finding::new(
                path,
                format!(
                    "Invalid value: {shown}: should be less than or equal to {}",
                    trim_float(max)
                ),
            ));
        }
    }
    if let Some(min) = s.minimum {
        if s.exclusive_minimum && x <= min {
            out.push(Finding::new(
                path,
                format!(
                    "Invalid value: {shown}: should be greater than {}",
                    trim_float(min)
                ),
            ));
        } else if x < min {
            out.push(Finding::new(
                path,
                format!(
                    "Invalid value: {shown}: should be greater than or equal to {}",
                    trim_float(min)
                ),
            ));
        }
    }
    if let Some(m) = s.multiple_of
        && m > 0.0
        && (x / m).fract() != 0.0
    {
        out.push(Finding::new(
            path,
            format!(
                "Invalid value: {shown}: should be a multiple of {}",
                trim_float(m)
            ),
        ));
    }
}

fn check_array(items: &[Value], s: &Schema, path: &KeyPath, out: &mut Vec<Finding>) {
    let n = items.len() as i64;
    if let Some(max) = s.max_items
        && n > max
    {
        out.push(Finding::new(
            path,
            format!("Too many: {n}: must have at most {max} items"),
        ));
    }
    if let Some(min) = s.min_items
        && n < min
    {
        out.push(Finding::new(
            path,
            format!("Invalid value: {n}: should have at least {min} items"),
        ));
    }
    if s.unique_items {
        for (i, a) in items.iter().enumerate() {
            if items[..i].iter().any(|b| json_eq(a, b)) {
                out.push(Finding::new(path, "shouldn't contain duplicates"));
                break;
            }
        }
    }
    if let Some(item) = s.items.as_deref() {
        for (i, child) in items.iter().enumerate() {
            check(child, item, &path.index(i), out);
        }
    }
}

fn check_object(map: &Map<String, Value>, s: &Schema, path: &KeyPath, out: &mut Vec<Finding>) {
    let n = map.len() as i64;
    if let Some(max) = s.max_properties
        && n > max
    {
        out.push(Finding::new(
            path,
            format!("Too many: {n}: must have at most {max} properties"),
        ));
    }
    if let Some(min) = s.min_properties
        && n < min
    {
        out.push(Finding::new(
            path,
            format!("Invalid value: {n}: should have at least {min} properties"),
        ));
    }
    for r in &s.required {
        if !map.contains_key(r) {
            out.push(Finding::new(&path.key(r), "Required value"));
        }
    }
    for (k, child) in map {
        if let Some(p) = s.properties.get(k) {
            check(child, p, &path.key(k), out);
        } else if let Some(a) = s.additional_schema() {
            check(child, a, &path.key(k), out);
        }
    }
}

fn check_junctors(v: &Value, s: &Schema, path: &KeyPath, out: &mut Vec<Finding>) {
    let run = |branch: &Schema| {
        let mut found = Vec::new();
        check(v, branch, path, &mut found);
        found
    };
    if !s.all_of.is_empty() {
        let mut failed = 0;
        for b in &s.all_of {
            let found = run(b);
            failed += usize::from(!found.is_empty());
            out.extend(found);
        }
        if failed > 0 {
            out.push(Finding::new(path, "must validate all the schemas (allOf)"));
        }
    }
    if !s.any_of.is_empty() {
        let results: Vec<Vec<Finding>> = s.any_of.iter().map(run).collect();
        if results.iter().all(|r| !r.is_empty()) {
            out.push(Finding::new(
                path,
                "must validate at least one schema (anyOf)",
            ));
            out.extend(closest(results));
        }
    }
    if !s.one_of.is_empty() {
        let results: Vec<Vec<Finding>> = s.one_of.iter().map(run).collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid != 1 {
            let which = if valid == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {valid} valid alternatives")
            };
            let hint = s.one_of.iter().all(Schema::only_requires).then(|| {
                let alts: Vec<String> = s
                    .one_of
                    .iter()
                    .map(|b| format!("[{}]", b.required.join(", ")))
                    .collect();
                format!("set the fields of exactly one of: {}", alts.join(", "))
            });
            out.push(
                Finding::new(
                    path,
                    format!("must validate one and only one schema (oneOf). {which}"),
                )
                .hint(hint),
            );
            if valid == 0 {
                out.extend(closest(results));
            }
        }
    }
    if let Some(not) = &s.not
        && run(not).is_empty()
    {
        out.push(Finding::new(path, "must not validate the schema (not)"));
    }
}

/// The findings of the alternative that came closest to passing.
fn closest(results: Vec<Vec<Finding>>) -> Vec<Finding> {
    results.into_iter().min_by_key(Vec::len).unwrap_or_default()
}

// ---- 4. List types ---------------------------------------------------------------------------

/// `x-kubernetes-list-type: set | map`: duplicates are refused (`listtype.ValidateListSetsAndMaps`).
pub fn list_types(v: &Value, s: &Schema, path: &KeyPath, out: &mut Vec<Finding>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if let Some(p) = s.properties.get(k) {
                    list_types(child, p, &path.key(k), out);
                } else if let Some(a) = s.additional_schema() {
                    list_types(child, a, &path.key(k), out);
                }
            }
        }
        Value::Array(items) => {
            match s.list_type.as_deref() {
                Some("set") => {
                    for i in first_duplicates(items) {
                        out.push(Finding::new(
                            &path.index(i),
                            format!("Duplicate value: {}", quoted(&items[i])),
                        ));
                    }
                }
                Some("map") => {
                    let keys: Vec<Value> = items
                        .iter()
                        .map(|item| {
                            let mut key = Map::new();
                            for k in &s.list_map_keys {
                                if let Some(x) = item.get(k) {
                                    key.insert(k.clone(), x.clone());
                                }
                            }
                            Value::Object(key)
                        })
                        .collect();
                    for i in first_duplicates(&keys) {
                        out.push(Finding::new(
                            &path.index(i),
                            format!("Duplicate value: {}", keys[i]),
                        ));
                    }
                }
                _ => {}
            }
            if let Some(item) = s.items.as_deref() {
                for (i, child) in items.iter().enumerate() {
                    list_types(child, item, &path.index(i), out);
                }
            }
        }
        _ => {}
    }
}

/// The index of each value's second occurrence (the API server reports that one).
fn first_duplicates(items: &[Value]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, a) in items.iter().enumerate() {
        let before = items[..i].iter().filter(|b| json_eq(a, b)).count();
        if before == 1 {
            out.push(i);
        }
    }
    out
}

// ---- Values ----------------------------------------------------------------------------------

/// Equality as Go's `reflect.DeepEqual` sees decoded JSON, with numbers compared by value.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

fn quoted(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn trim_float(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        Schema::compile(&serde_json::from_value::<JSONSchemaProps>(v).unwrap())
    }

    fn run(s: &Schema, doc: Value) -> Vec<(String, String)> {
        let mut doc = doc;
        let mut out = Vec::new();
        prune(&mut doc, Some(s), &KeyPath::root(), true, &mut out);
        apply_defaults(&mut doc, s);
        check(&doc, s, &KeyPath::root(), &mut out);
        list_types(&doc, s, &KeyPath::root(), &mut out);
        out.into_iter()
            .map(|f| (f.path.to_string(), f.message))
            .collect()
    }

    #[test]
    fn unknown_fields_are_pruned_outside_preserved_subtrees() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "a": {"type": "string"},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                }}
            }
        }));
        let got = run(
            &s,
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "zz": 1},
                   "spec": {"a": "x", "b": 1, "free": {"any": [1]}, "labels": {"k": 3}}}),
        );
        assert_eq!(
            got,
            [
                ("spec.b".to_string(), "unknown field \"b\"".to_string()),
                (
                    "spec.labels.k".to_string(),
                    "must be of type string, got number 3".to_string()
                ),
            ]
        );
    }

    #[test]
    fn types_follow_go_openapi() {
        let s = schema(json!({"type": "object", "properties": {
            "i": {"type": "integer"}, "n": {"type": "number"},
            "ios": {"x-kubernetes-int-or-string": true}
        }}));
        assert!(run(&s, json!({"i": 3.0, "n": 2, "ios": "25%"})).is_empty());
        assert!(run(&s, json!({"ios": 4})).is_empty());
        let got = run(&s, json!({"i": 2.5, "ios": true}));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, "i");
        assert_eq!(
            got[1].1,
            "must be of type integer or string, got boolean true"
        );
    }

    #[test]
    fn defaults_satisfy_required_and_list_map_keys() {
        let s = schema(json!({"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["port", "protocol"],
                      "items": {"type": "object", "required": ["port", "protocol"], "properties": {
                          "port": {"type": "integer"},
                          "protocol": {"type": "string", "default": "TCP"}}}}
        }}));
        assert!(
            run(
                &s,
                json!({"ports": [{"port": 80}, {"port": 80, "protocol": "UDP"}]})
            )
            .is_empty()
        );
        let got = run(
            &s,
            json!({"ports": [{"port": 80}, {"port": 80, "protocol": "TCP"}]}),
        );
        assert_eq!(
            got,
            [(
                "ports[1]".to_string(),
                r#"Duplicate value: {"port":80,"protocol":"TCP"}"#.to_string()
            )]
        );
    }

    #[test]
    fn one_of_reports_itself_and_the_closest_alternative() {
        let s = schema(json!({"type": "object", "properties": {"analysis": {
            "type": "object",
            "oneOf": [
                {"required": ["interval", "threshold", "iterations"]},
                {"required": ["interval", "threshold", "stepWeight"]},
                {"required": ["interval", "threshold", "stepWeights"]}
            ],
            "properties": {
                "interval": {"type": "string", "pattern": "^[0-9]+(m|s)"},
                "threshold": {"type": "number"}, "iterations": {"type": "number"},
                "stepWeight": {"type": "number"},
                "stepWeights": {"type": "array", "items": {"type": "number"}}
            }
        }}}));
        assert!(
            run(
                &s,
                json!({"analysis": {"interval": "1m30s", "threshold": 5, "stepWeight": 10}})
            )
            .is_empty()
        );
        let got = run(
            &s,
            json!({"analysis": {"interval": "1m", "stepWeights": [1]}}),
        );
        assert_eq!(
            got,
            [
                (
                    "analysis".to_string(),
                    "must validate one and only one schema (oneOf). Found none valid".to_string()
                ),
                (
                    "analysis.threshold".to_string(),
                    "Required value".to_string()
                ),
            ]
        );
        let two = run(
            &s,
            json!({"analysis": {"interval": "1", "threshold": 1, "stepWeight": 1, "stepWeights": [1]}}),
        );
        assert_eq!(
            two,
            [
                (
                    "analysis.interval".to_string(),
                    "Invalid value: \"1\": should match '^[0-9]+(m|s)'".to_string()
                ),
                (
                    "analysis".to_string(),
                    "must validate one and only one schema (oneOf). Found 2 valid alternatives"
                        .to_string()
                ),
            ]
        );
    }

    #[test]
    fn strings_numbers_arrays_and_enums() {
        let s = schema(json!({"type": "object", "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 3},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "tags": {"type": "array", "maxItems": 1, "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "kind": {"type": "string", "enum": ["A", "B"]}
        }}));
        let got = run(
            &s,
            json!({"name": "long", "port": 0, "tags": ["a", "a"], "kind": "C"}),
        );
        let msgs: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "Unsupported value: \"C\": supported values: \"A\", \"B\"",
                "Too long: may not be more than 3 characters",
                "Invalid value: 0: should be greater than or equal to 1",
                "Too many: 2: must have at most 1 items",
                "Duplicate value: \"a\"",
            ]
        );
    }

    #[test]
    fn misspelt_fields_get_a_suggestion() {
        let s = schema(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"analysis": {"type": "object"}}}}}),
        );
        let mut doc = json!({"spec": {"canaryAnalysis": {}, "analysys": {}}});
        let mut out = Vec::new();
        prune(&mut doc, Some(&s), &KeyPath::root(), true, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].path.as_str(), "spec.analysys");
        assert_eq!(out[0].hint.as_deref(), Some("did you mean `analysis`?"));
        assert_eq!(out[1].hint.as_deref(), Some("did you mean `analysis`?"));
        let mut other = json!({"spec": {"zzz": 1}});
        out.clear();
        prune(&mut other, Some(&s), &KeyPath::root(), true, &mut out);
        assert_eq!(out[0].hint.as_deref(), Some("the schema knows: analysis"));
        assert!(out.iter().all(|f| f.unknown));
    }
}
