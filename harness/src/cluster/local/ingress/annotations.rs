//! ingress-nginx's canary annotations, parsed as its `annotations/canary` parser does
//! (controller-v1.13.0, `internal/ingress/annotations/canary/main.go` with the validators of
//! `annotations/parser`): a value that fails validation is a warning and its default, and canary
//! annotations on an Ingress that is not a canary make it no canary at all.

use std::collections::BTreeMap;

use crate::cluster::CanaryRoute;

/// The prefix of ingress-nginx's annotations (its `--annotations-prefix` default).
pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

const CANARY: &str = "canary";
const WEIGHT: &str = "canary-weight";
const WEIGHT_TOTAL: &str = "canary-weight-total";
const BY_HEADER: &str = "canary-by-header";
const BY_HEADER_VALUE: &str = "canary-by-header-value";
const BY_HEADER_PATTERN: &str = "canary-by-header-pattern";
const BY_COOKIE: &str = "canary-by-cookie";

/// The annotations the router honours (the pattern is recognized only to be refused).
const KNOWN: [&str; 7] = [
    CANARY,
    WEIGHT,
    WEIGHT_TOTAL,
    BY_HEADER,
    BY_HEADER_VALUE,
    BY_HEADER_PATTERN,
    BY_COOKIE,
];

/// The canary annotations of one Ingress: `Some` when it is a canary Ingress.
pub fn canary(
    annotations: &BTreeMap<String, String>,
    warn: &mut dyn FnMut(String),
) -> Option<CanaryRoute> {
    let get = |name: &str| {
        annotations
            .get(&format!("{PREFIX}{name}"))
            .map(String::as_str)
    };
    let enabled = match get(CANARY) {
        None | Some("") => false,
        Some(v) => go_parse_bool(v).unwrap_or_else(|| {
            warn(format!(
                "{PREFIX}{CANARY}: {v:?} is not a boolean; taken as false"
            ));
            false
        }),
    };
    let mut int = |name: &str, default: i64| match get(name) {
        None | Some("") => default,
        Some(v) => v.parse::<i64>().unwrap_or_else(|_| {
            warn(format!(
                "{PREFIX}{name}: {v:?} is not an integer; taken as {default}"
            ));
            default
        }),
    };
    let weight = int(WEIGHT, 0);
    let weight_total = int(WEIGHT_TOTAL, 100);
    let mut text = |name: &str, valid: fn(char) -> bool| match get(name) {
        None | Some("") => None,
        Some(v) if v.chars().all(valid) => Some(v.to_string()),
        Some(v) => {
            warn(format!(
                "{PREFIX}{name}: {v:?} has characters ingress-nginx refuses; ignored"
            ));
            None
        }
    };
    let by_header = text(BY_HEADER, basic_char);
    let by_header_value = text(BY_HEADER_VALUE, basic_char);
    let by_header_pattern = text(BY_HEADER_PATTERN, regex_char);
    let by_cookie = text(BY_COOKIE, basic_char);

    if !enabled {
        let configured = weight > 0
            || by_header.is_some()
            || by_header_value.is_some()
            || by_header_pattern.is_some()
            || by_cookie.is_some();
        if configured {
            warn(format!(
                "canary annotations without {PREFIX}{CANARY}: \"true\" are ignored, as ingress-nginx does (\"configured but not enabled\")"
            ));
        }
        return None;
    }
    if by_header.is_some()
        && by_header_value.is_none()
        && let Some(p) = &by_header_pattern
    {
        warn(format!(
            "{PREFIX}{BY_HEADER_PATTERN} ({p:?}) is not emulated: requests whose header matches it are routed by cookie and weight instead"
        ));
    }
    Some(CanaryRoute {
        weight: clamp_u32(weight),
        weight_total: clamp_u32(weight_total),
        by_header,
        by_header_value,
        by_cookie,
    })
}

/// ingress-nginx annotations of an Ingress that the router does not emulate.
pub fn unsupported(annotations: &BTreeMap<String, String>) -> Vec<&str> {
    annotations
        .keys()
        .filter_map(|k| k.strip_prefix(PREFIX).map(|short| (k, short)))
        .filter(|(_, short)| !KNOWN.contains(short))
        .map(|(k, _)| k.as_str())
        .collect()
}

fn clamp_u32(v: i64) -> u32 {
    v.clamp(0, u32::MAX as i64) as u32
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `parser.BasicCharsRegex`: `^[/\-\.\_\~a-zA-Z0-9\/:]*$`.
fn basic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/-._~:".contains(c)
}

/// `parser.IsValidRegex`: the basic characters and `^$[](){}*+?|&=\`.
fn regex_char(c: char) -> bool {
    basic_char(c) || r"^$[](){}*+?|&=\".contains(c)
}
