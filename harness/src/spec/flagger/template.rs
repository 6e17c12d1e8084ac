//! Rendering a MetricTemplate query (or an inline `query`) the way Flagger does: Go
//! `text/template` with the functions of `MetricTemplateModel` (`name`, `namespace`, `target`,
//! `service`, `ingress`, `route`, `interval`, `variables`) and `missingkey=error`
//! (`pkg/metrics/observers/render.go`).
//!
//! Only the forms Flagger's model makes useful are rendered: `{{ fn }}` for each function and
//! `{{ variables.KEY }}`, with `{{- -}}` trim markers and `{{/* comments */}}`. Other Go
//! template syntax (pipelines, `printf`, `if`) is refused as unsupported rather than rendered
//! approximately; an unknown function or a missing variable is the error Flagger reports.

use std::collections::BTreeMap;
use std::fmt;

use super::{Canary, CanaryMetric};

/// The values a query sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// `{{ name }}`: the Canary's name.
    pub name: String,
    pub namespace: String,
    /// `{{ target }}`: `targetRef.name`.
    pub target: String,
    /// `{{ service }}`: `service.name`, else the target.
    pub service: String,
    /// `{{ ingress }}`: `ingressRef.name`, else the target.
    pub ingress: String,
    /// `{{ route }}`: Gateway API only; with nginx there is no route, so the target's name.
    pub route: String,
    /// `{{ interval }}`: the metric's `interval`, as written (builtins default to `1m`).
    pub interval: String,
    /// `{{ variables.KEY }}`: the metric's `templateVariables`.
    pub variables: BTreeMap<String, String>,
}

impl Model {
    /// The model of `metric` of `canary`, with `interval` as the metric's window.
    pub fn new(canary: &Canary, metric: &CanaryMetric, interval: &str) -> Model {
        Model {
            name: canary.name().to_string(),
            namespace: canary.namespace().to_string(),
            target: canary.spec.target_ref.name.clone(),
            service: canary.apex().to_string(),
            ingress: canary.ingress().to_string(),
            route: canary.spec.target_ref.name.clone(),
            interval: interval.to_string(),
            variables: metric.template_variables.clone(),
        }
    }

    fn function(&self, name: &str) -> Option<&str> {
        Some(match name {
            "name" => &self.name,
            "namespace" => &self.namespace,
            "target" => &self.target,
            "service" => &self.service,
            "ingress" => &self.ingress,
            "route" => &self.route,
            "interval" => &self.interval,
            _ => return None,
        })
    }
}

/// Why a query did not render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// Go's parser refuses it (`function "x" not defined`, `unclosed action`).
    Parse(String),
    /// Go's execution fails (`map has no entry for key "x"`).
    Exec(String),
    /// Valid Go template syntax that the emulation does not render.
    Unsupported(String),
}

impl fmt::Display for RenderError {
    /// Flagger's own wording (`template excution failed` is spelt as Flagger spells it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::Parse(e) => write!(f, "template parsing failed: template: tmpl:{e}"),
            RenderError::Exec(e) => write!(f, "template excution failed: template: tmpl:{e}"),
            RenderError::Unsupported(e) => f.write_str(e),
        }
    }
}

/// Go's predefined template functions: valid in Flagger, not rendered here.
const GO_BUILTINS: [&str; 20] = [
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne", "block",
];
const GO_KEYWORDS: [&str; 9] = [
    "if", "else", "end", "range", "with", "define", "template", "break", "continue",
];

/// Renders `query` with `model`.
///
/// # Errors
/// The parse or execution error Flagger would report, or unsupported syntax.
pub fn render(query: &str, model: &Model) -> Result<String, RenderError> {
    render_inner(query, model, false)
}

/// Checks the syntax of `query` alone, as a MetricTemplate is checked before any Canary uses
/// it: every variable counts as present.
///
/// # Errors
/// A parse error, or syntax the emulation does not render.
pub fn check_syntax(query: &str) -> Result<(), RenderError> {
    let model = Model {
        name: String::new(),
        namespace: String::new(),
        target: String::new(),
        service: String::new(),
        ingress: String::new(),
        route: String::new(),
        interval: String::new(),
        variables: BTreeMap::new(),
    };
    render_inner(query, &model, true).map(drop)
}

fn render_inner(query: &str, model: &Model, lenient: bool) -> Result<String, RenderError> {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    let mut offset = 0usize;
    while let Some(open) = rest.find("{{") {
        let literal = &rest[..open];
        out.push_str(literal);
        let after_open = &rest[open + 2..];
        let line = 1 + query[..offset + open].matches('\n').count();
        let Some(close) = after_open.find("}}") else {
            return Err(RenderError::Parse(format!("{line}: unclosed action")));
        };
        let mut inner = &after_open[..close];
        // `{{- ` trims the whitespace before the action, ` -}}` the whitespace after it.
        if let Some(stripped) = inner.strip_prefix('-')
            && stripped.starts_with(char::is_whitespace)
        {
            inner = stripped;
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
        }
        let mut trim_after = false;
        if let Some(stripped) = inner.strip_suffix('-')
            && stripped.ends_with(char::is_whitespace)
        {
            inner = stripped;
            trim_after = true;
        }
        let action_at = offset + open + 2 + (inner.len() - inner.trim_start().len());
        let line_start = query[..action_at].rfind('\n').map_or(0, |i| i + 1);
        let column = action_at - line_start;
        out.push_str(&action(inner.trim(), model, line, column, lenient)?);
        let consumed = open + 2 + close + 2;
        rest = &rest[consumed..];
        offset += consumed;
        if trim_after {
            let before = rest.len();
            rest = rest.trim_start();
            offset += before - rest.len();
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The text of one action.
fn action(
    src: &str,
    model: &Model,
    line: usize,
    column: usize,
    lenient: bool,
) -> Result<String, RenderError> {
    let unsupported = || {
        RenderError::Unsupported(format!(
            "`{{{{ {src} }}}}` is Go template syntax the local emulation does not render; it \
             renders {{{{ name }}}}, {{{{ namespace }}}}, {{{{ target }}}}, {{{{ service }}}}, \
             {{{{ ingress }}}}, {{{{ route }}}}, {{{{ interval }}}} and {{{{ variables.KEY }}}}"
        ))
    };
    if src.starts_with("/*") && src.ends_with("*/") {
        return Ok(String::new());
    }
    if src.is_empty() {
        return Err(RenderError::Parse(format!(
            "{line}: missing value for command"
        )));
    }
    let simple = src
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !simple || src.starts_with('.') || src.ends_with('.') || src.contains("..") {
        return Err(unsupported());
    }
    let mut parts = src.split('.');
    let head = parts.next().unwrap_or_default();
    let fields: Vec<&str> = parts.collect();
    if head.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(unsupported());
    }
    if head == "variables" {
        return match fields.as_slice() {
            [_] if lenient => Ok(String::new()),
            [key] => model.variables.get(*key).cloned().ok_or_else(|| {
                RenderError::Exec(format!(
                    "{line}:{column}: executing \"tmpl\" at <variables.{key}>: map has no \
                     entry for key \"{key}\""
                ))
            }),
            _ => Err(unsupported()),
        };
    }
    if let Some(value) = model.function(head) {
        return match fields.first() {
            None => Ok(value.to_string()),
            Some(field) => Err(RenderError::Exec(format!(
                "{line}:{column}: executing \"tmpl\" at <{src}>: can't evaluate field {field} in \
                 type string"
            ))),
        };
    }
    if GO_BUILTINS.contains(&head) || GO_KEYWORDS.contains(&head) || head == "nil" {
        return Err(unsupported());
    }
    if head == "true" || head == "false" {
        return Err(unsupported());
    }
    Err(RenderError::Parse(format!(
        "{line}: function \"{head}\" not defined"
    )))
}

/// Whether the query uses `{{ interval }}` (so a templated metric needs `interval`).
pub fn uses_interval(query: &str) -> bool {
    let mut rest = query;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return false;
        };
        let inner = after[..close].trim_matches(|c: char| c == '-' || c.is_whitespace());
        if inner == "interval" {
            return true;
        }
        rest = &after[close + 2..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model {
            name: "app".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            service: "podinfo".into(),
            ingress: "web".into(),
            route: "podinfo".into(),
            interval: "30s".into(),
            variables: BTreeMap::from([("path".to_string(), "root".to_string())]),
        }
    }

    #[test]
    fn functions_and_variables_render() {
        let q = r#"rate(x{ns="{{ namespace }}",pod=~"{{target}}-.*",path="{{ variables.path }}"}[{{ interval }}])"#;
        assert_eq!(
            render(q, &model()).unwrap(),
            r#"rate(x{ns="test",pod=~"podinfo-.*",path="root"}[30s])"#
        );
        assert_eq!(
            render("a {{- name -}}   b {{/* note */}}c", &model()).unwrap(),
            "aappb c"
        );
        assert!(uses_interval("x[{{ interval }}]"));
        assert!(!uses_interval("x[1m]"));
    }

    #[test]
    fn errors_read_like_flaggers() {
        let e = render("x\n{{ variables.nope }}", &model()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "template excution failed: template: tmpl:2:3: executing \"tmpl\" at \
             <variables.nope>: map has no entry for key \"nope\""
        );
        let e = render("{{ pod }}", &model()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "template parsing failed: template: tmpl:1: function \"pod\" not defined"
        );
        assert!(matches!(
            render("{{ name", &model()),
            Err(RenderError::Parse(_))
        ));
        assert!(matches!(
            render("{{ printf \"%s\" name }}", &model()),
            Err(RenderError::Unsupported(_))
        ));
        assert!(matches!(
            render("{{ .Name }}", &model()),
            Err(RenderError::Unsupported(_))
        ));
    }
}
