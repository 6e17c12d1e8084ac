//! A structural schema for the parts of a controller object the emulation interprets, checked
//! before serde sees the object — the role the CRD's `openAPIV3Schema` plays for the API server.
//!
//! Two reasons it exists next to the serde derives: serde stops at the first problem and does
//! not say where it was, while a user needs every problem of a target with its key path; and a
//! CRD silently prunes fields it does not know, while gauntlet must refuse them (and the fields
//! Argo knows but the emulation cannot honour) by name. Once a value passes its shape, the
//! derived `Deserialize` cannot fail on it; the tests of each module check that they agree.

use serde_json::Value;

use super::error::{KeyPath, SpecErrorKind};

/// What a value must look like.
#[derive(Debug)]
pub enum Shape {
    /// Free-form here; checked by the Kubernetes type that decodes it (metadata, pod template).
    Any,
    Str,
    Bool,
    /// An integer within `i32` (the CRDs' `format: int32`).
    Int32,
    /// An integer within `i64`.
    Int64,
    /// `x-kubernetes-int-or-string`: an `i32` or any string.
    IntOrStr,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A map of strings to strings (labels, annotations).
    StrMap,
    List(&'static Shape),
    Obj(&'static [Field]),
    /// A base shape whose value must also pass a parser (e.g. a duration); the message is the
    /// reason, and the serde type that parses it again then cannot fail.
    Parsed {
        base: &'static Shape,
        check: fn(&Value) -> Result<(), String>,
    },
    /// A field Argo knows that gauntlet refuses, with the reason.
    Refused(&'static Refusal),
}

/// One key of an object.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub shape: Shape,
    /// `Some(reason)`: the key is required and its absence is reported with this reason.
    pub required: Option<&'static str>,
}

/// Why a known field is refused.
#[derive(Debug)]
pub struct Refusal {
    /// `true`: Argo would run it, the local emulation cannot; `false`: Argo itself refuses it.
    pub unsupported: bool,
    pub reason: &'static str,
    pub hint: Option<&'static str>,
}

/// An optional key. Macros rather than `const fn`s: a struct literal in a `static` lets the
/// nested `&[...]` of the schema live for `'static`, a function argument would not.
macro_rules! opt {
    ($name:expr, $shape:expr $(,)?) => {
        $crate::spec::shape::Field {
            name: $name,
            shape: $shape,
            required: None,
        }
    };
}

/// A required key; the third argument is the reason given when it is absent.
macro_rules! req {
    ($name:expr, $shape:expr, $missing:expr $(,)?) => {
        $crate::spec::shape::Field {
            name: $name,
            shape: $shape,
            required: Some($missing),
        }
    };
}

/// A key Argo knows that gauntlet refuses: `unsupported` when only the local emulation
/// cannot honour it, `invalid` when Argo itself refuses it in this configuration.
macro_rules! refused {
    ($name:expr, unsupported, $reason:expr, $hint:expr $(,)?) => {
        $crate::spec::shape::Field {
            name: $name,
            shape: $crate::spec::shape::Shape::Refused(&$crate::spec::shape::Refusal {
                unsupported: true,
                reason: $reason,
                hint: $hint,
            }),
            required: None,
        }
    };
    ($name:expr, invalid, $reason:expr, $hint:expr $(,)?) => {
        $crate::spec::shape::Field {
            name: $name,
            shape: $crate::spec::shape::Shape::Refused(&$crate::spec::shape::Refusal {
                unsupported: false,
                reason: $reason,
                hint: $hint,
            }),
            required: None,
        }
    };
    ($name:expr, $refusal:expr $(,)?) => {
        $crate::spec::shape::Field {
            name: $name,
            shape: $crate::spec::shape::Shape::Refused($refusal),
            required: None,
        }
    };
}

pub(crate) use {opt, refused, req};

/// Where a value broke its shape, relative to the value checked.
pub type Problem = (KeyPath, SpecErrorKind);

/// Checks `value` against `shape`, appending every problem found under `path`.
pub fn check(value: &Value, shape: &Shape, path: &KeyPath, out: &mut Vec<Problem>) {
    match shape {
        Shape::Any => {}
        Shape::Str => {
            if !value.is_string() {
                out.push((path.clone(), expected("a string", value)));
            }
        }
        Shape::Bool => {
            if !value.is_boolean() {
                out.push((path.clone(), expected("true or false", value)));
            }
        }
        Shape::Int32 => {
            if value.as_i64().and_then(|i| i32::try_from(i).ok()).is_none() {
                out.push((path.clone(), expected("an integer (int32)", value)));
            }
        }
        Shape::Int64 => {
            if value.as_i64().is_none() {
                out.push((path.clone(), expected("an integer", value)));
            }
        }
        Shape::IntOrStr => {
            let ok =
                value.is_string() || value.as_i64().and_then(|i| i32::try_from(i).ok()).is_some();
            if !ok {
                out.push((path.clone(), expected("an integer or a string", value)));
            }
        }
        Shape::Enum(allowed) => match value.as_str() {
            Some(s) if allowed.contains(&s) => {}
            _ => out.push((
                path.clone(),
                SpecErrorKind::invalid(format!(
                    "must be one of {}, got {}",
                    allowed.join(", "),
                    describe(value)
                )),
            )),
        },
        Shape::StrMap => match value.as_object() {
            Some(map) => {
                for (k, v) in map {
                    if !v.is_string() {
                        out.push((
                            path.key(k),
                            SpecErrorKind::invalid_hint(
                                format!("expected a string, got {}", describe(v)),
                                format!("quote the value: {k}: \"{}\"", plain(v)),
                            ),
                        ));
                    }
                }
            }
            None => out.push((path.clone(), expected("a map of strings", value))),
        },
        Shape::List(item) => match value.as_array() {
            Some(items) => {
                for (i, v) in items.iter().enumerate() {
                    check(v, item, &path.index(i), out);
                }
            }
            None => out.push((path.clone(), expected("a list", value))),
        },
        Shape::Obj(fields) => check_object(value, fields, path, out),
        Shape::Parsed { base, check: parse } => {
            let before = out.len();
            check(value, base, path, out);
            if out.len() == before
                && let Err(reason) = parse(value)
            {
                out.push((path.clone(), SpecErrorKind::invalid(reason)));
            }
        }
        Shape::Refused(r) => out.push((path.clone(), refusal(r))),
    }
}

fn check_object(value: &Value, fields: &[Field], path: &KeyPath, out: &mut Vec<Problem>) {
    let Some(map) = value.as_object() else {
        out.push((path.clone(), expected("a mapping", value)));
        return;
    };
    for (key, v) in map {
        match fields.iter().find(|f| f.name == key) {
            Some(f) => check(v, &f.shape, &path.key(key), out),
            None => out.push((path.key(key), unknown_field(key, fields))),
        }
    }
    for f in fields {
        if let Some(missing) = f.required
            && !map.contains_key(f.name)
        {
            out.push((path.key(f.name), SpecErrorKind::invalid(missing)));
        }
    }
}

fn refusal(r: &Refusal) -> SpecErrorKind {
    if r.unsupported {
        SpecErrorKind::unsupported(r.reason, r.hint)
    } else {
        SpecErrorKind::Invalid {
            reason: r.reason.to_string(),
            hint: r.hint.map(str::to_string),
        }
    }
}

fn unknown_field(key: &str, fields: &[Field]) -> SpecErrorKind {
    let near = fields
        .iter()
        .map(|f| {
            (
                edit_distance(&key.to_ascii_lowercase(), &f.name.to_ascii_lowercase()),
                f.name,
            )
        })
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    let hint = match near {
        Some((_, name)) => format!("did you mean `{name}`?"),
        None => format!(
            "known fields here: {}",
            fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
        ),
    };
    SpecErrorKind::invalid_hint(
        format!(
            "unknown field `{key}` (the API server would drop it; gauntlet refuses it so that \
             nothing is silently ignored)"
        ),
        hint,
    )
}

fn expected(what: &str, got: &Value) -> SpecErrorKind {
    let hint = match got {
        Value::Number(_) | Value::Bool(_) if what == "a string" => {
            Some(format!("quote it: \"{}\"", plain(got)))
        }
        Value::String(s) if what.starts_with("an integer") && s.parse::<i64>().is_ok() => {
            Some(format!("drop the quotes: {s}"))
        }
        _ => None,
    };
    SpecErrorKind::Invalid {
        reason: format!("expected {what}, got {}", describe(got)),
        hint,
    }
}

/// A value as an error message shows it: its type, and short scalars themselves.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("string {s:?}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Levenshtein distance, for "did you mean" on misspelt keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Drops `null` map entries everywhere, as the API server does for fields that are not
/// nullable: `pause:` with nothing after it is absent, not an indefinite pause.
pub fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static ITEM: Shape = Shape::Obj(&[
        req!("name", Shape::Str, "name is required"),
        opt!("weight", Shape::Int32),
        refused!("mirror", unsupported, "mirroring is not emulated", None),
    ]);
    static ROOT: Shape = Shape::Obj(&[
        opt!("items", Shape::List(&ITEM)),
        opt!("labels", Shape::StrMap),
    ]);

    fn problems(v: Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        check(&v, &ROOT, &KeyPath::root(), &mut out);
        out.into_iter()
            .map(|(p, k)| (p.to_string(), k.to_string()))
            .collect()
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let got = problems(json!({
            "items": [
                {"name": "a", "wieght": 3},
                {"weight": "20", "mirror": {}},
            ],
            "labels": {"x": 1}
        }));
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "items[0].wieght",
                "items[1].mirror",
                "items[1].weight",
                "items[1].name",
                "labels.x"
            ]
        );
        assert!(got[0].1.starts_with("unknown field `wieght`"));
        assert_eq!(got[2].1, r#"expected an integer (int32), got string "20""#);
        assert_eq!(got[3].1, "name is required");
    }

    #[test]
    fn misspelt_keys_get_a_suggestion() {
        let mut out = Vec::new();
        check(
            &json!({"items": [{"name": "a", "wieght": 1}]}),
            &ROOT,
            &KeyPath::root(),
            &mut out,
        );
        assert_eq!(out[0].1.hint(), Some("did you mean `weight`?"));
    }

    #[test]
    fn nulls_are_dropped_like_the_api_server_does() {
        let mut v = json!({"a": null, "b": [{"c": null, "d": 1}]});
        strip_nulls(&mut v);
        assert_eq!(v, json!({"b": [{"d": 1}]}));
    }
}
