//! `--html FILE`, `report.html` in the artifacts and `gauntlet report`: one self-contained page
//! per run: a summary table, then per scenario its plots on one time axis and its timeline.
//!
//! The page is always drawn from the JSON report, read back from its own bytes, so the page a
//! run writes and the one `gauntlet report` draws later from the kept JSON are the same bytes.
//! It asks for nothing when opened: styles are inline, plots are inline SVG (see
//! [`charts`]), and the one script only unfolds the timelines for printing.

pub mod charts;

use std::io;
use std::path::Path;

use minijinja::Environment;
use serde::Serialize;

use super::atomic::write_atomic;
use super::model::{MarkerKind, RunReport, SCHEMA_VERSION, ScenarioReport};
use super::series;
use crate::judge::{Finding, Judgement};
use charts::{Legend, Panel};

const TEMPLATE: &str = include_str!("page.html");

/// Why a page could not be drawn from a JSON report.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path} is not a gauntlet JSON report: {source}")]
    Malformed {
        path: String,
        source: serde_json::Error,
    },
    #[error(
        "{path} has report schema version {found}; this gauntlet reads versions up to {SCHEMA_VERSION}: draw it with a newer gauntlet"
    )]
    TooNew { path: String, found: u32 },
}

/// Reads a report written by `--json` (any schema version up to [`SCHEMA_VERSION`]).
pub fn read_report(path: &Path) -> Result<RunReport, ReadError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ReadError::Io {
        path: shown.clone(),
        source,
    })?;
    parse_report(&bytes).map_err(|e| match e {
        Parse::Malformed(source) => ReadError::Malformed {
            path: shown.clone(),
            source,
        },
        Parse::TooNew(found) => ReadError::TooNew {
            path: shown.clone(),
            found,
        },
    })
}

enum Parse {
    Malformed(serde_json::Error),
    TooNew(u32),
}

fn parse_report(bytes: &[u8]) -> Result<RunReport, Parse> {
    // The version first: a newer report may not parse as this one at all.
    #[derive(serde::Deserialize)]
    struct Version {
        #[serde(default)]
        schema_version: Option<u32>,
    }
    if let Ok(Version {
        schema_version: Some(v),
    }) = serde_json::from_slice::<Version>(bytes)
        && v > SCHEMA_VERSION
    {
        return Err(Parse::TooNew(v));
    }
    serde_json::from_slice(bytes).map_err(Parse::Malformed)
}

/// Writes the page of `report` to `path`, atomically, drawn from the report's JSON form so
/// that `gauntlet report` on the kept JSON gives the same bytes.
pub fn write_html(path: &Path, report: &RunReport) -> io::Result<()> {
    let page = render_via_json(report)?;
    write_atomic(path, page.as_bytes())
}

/// The page of `report` as `gauntlet report` would draw it from its JSON.
pub fn render_via_json(report: &RunReport) -> io::Result<String> {
    let bytes = serde_json::to_vec(report).map_err(io::Error::other)?;
    let reread = parse_report(&bytes).map_err(|e| match e {
        Parse::Malformed(e) => io::Error::other(e),
        Parse::TooNew(v) => io::Error::other(format!("schema version {v}")),
    })?;
    render(&reread).map_err(io::Error::other)
}

/// The page of `report`.
pub fn render(report: &RunReport) -> Result<String, String> {
    let mut env = Environment::new();
    env.add_template("page.html", TEMPLATE)
        .map_err(|e| format!("the page template: {e}"))?;
    let scenarios = report
        .scenarios
        .iter()
        .enumerate()
        .map(|(i, s)| scenario(i, s))
        .collect::<Result<Vec<_>, _>>()?;
    let failed = report.scenarios.iter().filter(|s| !s.passed).count();
    let page = PageContext {
        title: format!(
            "gauntlet: {} scenario(s), {} failed",
            report.scenarios.len(),
            failed
        ),
        version: report.version.clone(),
        backend: report.backend.clone(),
        started_at: report.started_at.clone(),
        schema_version: report.schema_version,
        passed: report.scenarios.len() - failed,
        failed,
        scenarios,
    };
    env.get_template("page.html")
        .and_then(|t| t.render(minijinja::value::Serde(&page)))
        .map_err(|e| format!("rendering the page: {e}"))
}

#[derive(Serialize)]
struct PageContext {
    title: String,
    version: String,
    backend: String,
    started_at: String,
    schema_version: u32,
    passed: usize,
    failed: usize,
    scenarios: Vec<ScenarioContext>,
}

#[derive(Serialize)]
struct ScenarioContext {
    /// The HTML id of the scenario's section; the summary row links to it.
    anchor: String,
    name: String,
    file: String,
    controller: String,
    passed: bool,
    failure: Vec<String>,
    expected: String,
    got: String,
    decision: String,
    /// `ok`, `late` or `none`: how the decision stands against the budget.
    decision_class: &'static str,
    vs_fastest: String,
    client_errors: String,
    client_errors_ok: bool,
    judge: Option<JudgeContext>,
    markers: Vec<MarkerContext>,
    marker_legend: Vec<Legend>,
    panels: Vec<Panel>,
    events: Vec<EventContext>,
    windows_left_out: usize,
}

/// The judge's finding, beside the controller's decision.
#[derive(Serialize)]
struct JudgeContext {
    finding: String,
    /// `agree` (justified), `dispute` (a false rollback or a missed regression) or `unsure`.
    tone: &'static str,
    reason: String,
    confidence: String,
    exposure: String,
    metrics: Vec<JudgeMetric>,
}

#[derive(Serialize)]
struct JudgeMetric {
    id: &'static str,
    name: &'static str,
    class: &'static str,
    summary: String,
}

impl JudgeContext {
    fn of(j: &Judgement) -> Self {
        JudgeContext {
            finding: j.finding.to_string(),
            tone: match j.finding {
                Finding::Justified => "agree",
                Finding::FalseRollback | Finding::MissedRegression => "dispute",
                Finding::Inconclusive => "unsure",
            },
            reason: j.reason.clone(),
            confidence: format!("{} %", j.settings.confidence().level() * 100.0),
            exposure: j.exposure_line(),
            metrics: vec![
                JudgeMetric {
                    id: "error-rate",
                    name: "Error rate",
                    class: j.error_rate.class.name(),
                    summary: j.error_rate.summary.clone(),
                },
                JudgeMetric {
                    id: "latency",
                    name: "Latency",
                    class: j.latency.class.name(),
                    summary: j.latency.summary.clone(),
                },
                JudgeMetric {
                    id: "pods",
                    name: "Pod health",
                    class: j.pods.class.name(),
                    summary: j.pods.summary.clone(),
                },
            ],
        }
    }
}

#[derive(Serialize)]
struct MarkerContext {
    t: String,
    kind: String,
    label: String,
}

#[derive(Serialize)]
struct EventContext {
    t: String,
    source: String,
    kind: String,
    message: String,
}

fn scenario(index: usize, s: &ScenarioReport) -> Result<ScenarioContext, String> {
    let series = series::of(s);
    let panels = charts::panels(s, &series)?;
    let within = s.expected.within_s;
    let (decision, decision_class) = match s.decision_s {
        Some(t) if t <= within => (format!("{t:.1}s of {within:.1}s"), "ok"),
        Some(t) => (format!("{t:.1}s, over {within:.1}s"), "late"),
        None => (format!("none within {within:.1}s"), "none"),
    };
    let vs_fastest = match (s.decision_s, s.expected.fastest_s) {
        (Some(t), Some(f)) => format!("{:+.1}s vs fastest {f:.1}s", t - f),
        (None, Some(f)) => format!("fastest {f:.1}s"),
        (_, None) => "no fastest known".into(),
    };
    let rate = s.client.error_rate;
    let max = s.expected.client_error_max;
    let mut kinds: Vec<MarkerKind> = series.markers.iter().map(|m| m.kind).collect();
    kinds.sort();
    kinds.dedup();
    let events: Vec<EventContext> = s
        .timeline
        .iter()
        .filter(|e| !(e.source == crate::timeline::Source::Load && e.kind == "window"))
        .map(|e| EventContext {
            t: format!("{:.2}", e.t_s),
            source: e.source.to_string(),
            kind: e.kind.clone(),
            message: e.message.clone(),
        })
        .collect();
    Ok(ScenarioContext {
        anchor: anchor(index, &s.name),
        name: s.name.clone(),
        file: s.file.clone(),
        controller: s.controller.clone(),
        passed: s.passed,
        failure: s
            .failure
            .as_deref()
            .map(|f| {
                f.split("; ")
                    .flat_map(str::lines)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        expected: s.expected.outcome.clone(),
        got: s.outcome.clone().unwrap_or_else(|| "no decision".into()),
        decision,
        decision_class,
        vs_fastest,
        client_errors: format!(
            "{} of {} ({:.2}%), max {:.2}%",
            s.client.errors,
            s.client.requests,
            rate * 100.0,
            max * 100.0
        ),
        client_errors_ok: rate <= max,
        judge: s.judge.as_ref().map(JudgeContext::of),
        markers: series
            .markers
            .iter()
            .filter(|m| charts::marker_style(m.kind).is_some())
            .map(|m| MarkerContext {
                t: format!("{:.1}", m.t_s),
                kind: charts::marker_legend(m.kind)
                    .map(|l| l.label)
                    .unwrap_or_default(),
                label: m.label.clone(),
            })
            .collect(),
        marker_legend: kinds
            .into_iter()
            .filter_map(charts::marker_legend)
            .collect(),
        panels,
        windows_left_out: s.timeline.len() - events.len(),
        events,
    })
}

/// A unique, readable HTML id: the position keeps two scenarios of one name apart.
fn anchor(index: usize, name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("s{}-{}", index + 1, slug.trim_matches('-'))
}

#[cfg(test)]
mod tests;
