//! The scenario file (docs/scenarios.md): YAML in, [`Scenario`] out, or every problem with
//! file, key and reason. Unknown keys are errors: a misspelt `expect.whithin` must not silently fall back
//! to a default budget.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    Action, DEFAULT_CLIENT_ERROR_MAX, DEFAULT_CONNECTIONS, Fault, Outcome, Scenario, ScenarioError,
    Scheduled,
};
use crate::judge::Finding;

/// A gauntlet scenario: a release of the target, the load it gets, and what the controller
/// must decide within what time. Reference: docs/scenarios.md.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "gauntlet scenario")]
pub(super) struct File {
    /// The scenario's name: 1-100 of `A-Z a-z 0-9 . _ -`; it names the test and its artifacts.
    #[schemars(length(min = 1, max = 100), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    name: String,
    /// One line on what the scenario shows.
    #[serde(default)]
    description: String,
    /// The folder of the manifests under test (a Rollout with its AnalysisTemplates, or a
    /// Deployment with its Canary and MetricTemplates), relative to this file.
    target: String,
    baseline: Baseline,
    release: Release,
    load: Load,
    expect: Expect,
    /// Runs the policy's clock this much faster or slower on the local backend (0.25: four
    /// times faster); `within` and `actions[].at` are stated at this scale. Default 1.
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1000))]
    time_scale: Option<f64>,
    /// Labels for `--tag`; `nightly` keeps the scenario out of a plain `cargo test`.
    #[serde(default)]
    tags: Vec<String>,
    /// What a person (or a pipeline) does to the rollout, and when.
    #[serde(default)]
    actions: Vec<ActionEntry>,
}

/// `{ at: 10s, action: open-gate }`: done that long after the release.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ActionEntry {
    /// How long after the release (`10s`, `1m30s`), at the scenario's `timeScale`.
    at: String,
    /// The operation: `promote`, `promote-full`, `abort`, `retry` (Argo); `open-gate`,
    /// `close-gate`, `rollback` (Flagger).
    #[schemars(schema_with = "action_names")]
    action: String,
}

/// The version the target runs before the release.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Baseline {
    /// The sample app's `APP_VERSION` (a label in its metrics and answers).
    version: String,
}

/// The new version and what is wrong with it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Release {
    /// The release's `APP_VERSION`; it may equal the baseline's only when there are faults.
    version: String,
    #[serde(default)]
    faults: Faults,
}

/// What the release does wrong; all optional, any combination.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Faults {
    errors: Option<Errors>,
    latency: Option<Latency>,
    memory_leak: Option<MemoryLeak>,
    crash: Option<Crash>,
    /// The release's pods never become ready (`/readyz` never answers 200).
    #[serde(default)]
    unready: bool,
}

// Numbers and ranges arrive as YAML scalars of either kind; they are parsed by hand so the
// error can say which key and what was expected.
/// A number, or text with a unit or a range (see the key).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
enum Scalar {
    Number(f64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Number(n) => n.to_string(),
            Scalar::Text(s) => s.trim().to_string(),
        }
    }
}

/// A share of the release's requests answered with an error status.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Errors {
    /// A share: `0.3` or `30%`, or a range `0.3..0.6` drawn from the seed.
    rate: Scalar,
    /// The HTTP status of those answers. Default 500.
    #[schemars(range(min = 200, max = 599))]
    status: Option<u16>,
}

/// Time added to each of the release's answers.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Latency {
    /// A duration (`800ms`), or a range `500ms..1500ms` drawn from the seed.
    delay: String,
    /// A further delay drawn per request, uniform from 0 up to this. Default 0.
    jitter: Option<String>,
}

/// Memory the release allocates and never frees.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MemoryLeak {
    /// Bytes per second: `8MiB/s`, `512KiB/s`, or a number of bytes.
    rate: String,
}

/// The release's process exits with an error.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Crash {
    /// This long after each start (`20s`), or a range drawn from the seed.
    after: String,
}

/// The traffic sent through the ingress, from before the release to the decision.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Load {
    /// Requests per second: `50/s`, `3000/m` or `50`.
    rate: Scalar,
    /// Concurrent connections. Default 8.
    #[schemars(range(min = 1, max = 1000))]
    connections: Option<u32>,
}

/// What the controller must do, and what users may see meanwhile.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Expect {
    outcome: Outcome,
    /// The budget from the release to the controller's decision (`90s`, `1m30s`), at the
    /// scenario's `timeScale`.
    within: String,
    client_errors: Option<ClientErrors>,
    /// The canary weights the router applies in order (each distinct value once), e.g.
    /// `[20, 50, 100]`.
    weights: Option<Vec<u32>>,
    /// What the statistical judge must find about the decision, from the canary's and the
    /// stable's requests: `justified`, `false-rollback`, `missed-regression` or
    /// `inconclusive`. Default: reported, not checked.
    judge: Option<Finding>,
}

/// The failed share of all requests users sent, from the release to the decision.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ClientErrors {
    /// At most this share: `0.05` or `5%`. Default 5%.
    max: Scalar,
}

/// The schema of `actions[].action`: one of [`Action::ALL`]'s names.
fn action_names(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = Action::ALL.iter().map(|(n, _)| *n).collect();
    schemars::json_schema!({ "type": "string", "enum": names })
}

/// Whether a YAML text is a Kubernetes manifest rather than a scenario: it has `apiVersion`.
pub fn is_manifest(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("apiVersion:"))
}

/// Reads and validates one scenario file. `seed` draws the values of ranges (`0.3..0.6`), so a
/// chaos scenario is reproducible with `--seed`.
pub fn load(path: &Path, seed: u64) -> Result<Scenario, Vec<ScenarioError>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![ScenarioError::new(path, "", format!("cannot read: {e}"))])?;
    parse(path, &text, seed)
}

/// Parses `text` as the scenario file `path`.
pub fn parse(path: &Path, text: &str, seed: u64) -> Result<Scenario, Vec<ScenarioError>> {
    if is_manifest(text) {
        return Err(vec![ScenarioError::new(
            path,
            "apiVersion",
            "this is a Kubernetes manifest, not a scenario",
        )]);
    }
    let f: File = serde_saphyr::from_str(text).map_err(|e| {
        vec![ScenarioError::new(
            path,
            "",
            format!("{e} (the format: {})", super::schema::REFERENCE),
        )]
    })?;
    let mut errors = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ name_hash(&f.name));
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut err = |key: &str, reason: String| errors.push(ScenarioError::new(path, key, reason));

    let mut faults = Vec::new();
    if let Some(e) = &f.release.faults.errors {
        match share(&e.rate, &mut rng) {
            Ok(rate) => faults.push(Fault::Errors {
                rate,
                status: e.status.unwrap_or(500),
            }),
            Err(r) => err("release.faults.errors.rate", r),
        }
    }
    if let Some(l) = &f.release.faults.latency {
        let delay =
            duration(&l.delay, &mut rng).map_err(|r| err("release.faults.latency.delay", r));
        let jitter = match &l.jitter {
            Some(j) => duration(j, &mut rng)
                .map_err(|r| err("release.faults.latency.jitter", r))
                .ok(),
            None => Some(Duration::ZERO),
        };
        if let (Ok(delay), Some(jitter)) = (delay, jitter) {
            faults.push(Fault::Latency { delay, jitter });
        }
    }
    if let Some(m) = &f.release.faults.memory_leak {
        match byte_rate(&m.rate) {
            Ok(bytes_per_sec) => faults.push(Fault::MemoryLeak { bytes_per_sec }),
            Err(r) => err("release.faults.memoryLeak.rate", r),
        }
    }
    if let Some(c) = &f.release.faults.crash {
        match duration(&c.after, &mut rng) {
            Ok(after) => faults.push(Fault::Crash { after }),
            Err(r) => err("release.faults.crash.after", r),
        }
    }
    if f.release.faults.unready {
        faults.push(Fault::Unready);
    }
    let mut actions = Vec::new();
    for (i, a) in f.actions.iter().enumerate() {
        let at = humantime::parse_duration(a.at.trim()).map_err(|e| {
            err(
                &format!("actions[{i}].at"),
                format!("{:?}: {e} (write e.g. 10s)", a.at),
            )
        });
        let action = Action::ALL
            .iter()
            .find(|(n, _)| *n == a.action.trim())
            .map(|(_, act)| *act)
            .ok_or_else(|| {
                let names: Vec<&str> = Action::ALL.iter().map(|(n, _)| *n).collect();
                err(
                    &format!("actions[{i}].action"),
                    format!("{:?} is not one of {}", a.action, names.join(", ")),
                )
            });
        if let (Ok(at), Ok(action)) = (at, action) {
            actions.push(Scheduled { at, action });
        }
    }
    actions.sort_by_key(|a| a.at);
    let rate = per_second(&f.load.rate)
        .map_err(|r| err("load.rate", r))
        .unwrap_or(1.0);
    let within = humantime::parse_duration(&f.expect.within)
        .map_err(|e| {
            err(
                "expect.within",
                format!("{:?}: {e} (write e.g. 90s or 1m30s)", f.expect.within),
            )
        })
        .unwrap_or(Duration::from_secs(1));
    let client_error_max = match &f.expect.client_errors {
        Some(c) => share(&c.max, &mut rng)
            .map_err(|r| err("expect.clientErrors.max", r))
            .unwrap_or(0.0),
        None => DEFAULT_CLIENT_ERROR_MAX,
    };
    let target = dir.join(&f.target);
    if !target.exists() {
        err(
            "target",
            format!(
                "{} does not exist (relative to the scenario file's folder)",
                target.display()
            ),
        );
    }
    let scenario = Scenario {
        name: f.name,
        description: f.description,
        file: path.to_path_buf(),
        target: normalize(&target),
        baseline_version: f.baseline.version,
        release_version: f.release.version,
        faults,
        rate,
        connections: f.load.connections.unwrap_or(DEFAULT_CONNECTIONS),
        outcome: f.expect.outcome,
        within,
        client_error_max,
        time_scale: f.time_scale,
        written_at: None,
        tags: f.tags,
        actions,
        weights: f.expect.weights,
        judge: f.expect.judge,
    };
    if let Err(e) = scenario.check() {
        errors.extend(e);
    }
    if errors.is_empty() {
        Ok(scenario)
    } else {
        Err(errors)
    }
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// `a/./b/../c` → `a/c`, without touching the file system (the path is shown to people).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if out.file_name().is_some() && !out.ends_with("..") =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `0.3`, `30%`, or a range `0.3..0.6` drawn from the seed.
fn share(s: &Scalar, rng: &mut rand::rngs::StdRng) -> Result<f64, String> {
    let text = s.text();
    let one = |t: &str| -> Result<f64, String> {
        let t = t.trim();
        let v = match t.strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
            None => t.parse::<f64>(),
        }
        .map_err(|_| format!("{t:?} is not a share (write 0.3 or 30%)"))?;
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(format!("{t:?} is not a share between 0 and 100%"))
        }
    };
    match text.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(format!("{text:?}: the range is empty"));
            }
            Ok(if a == b { a } else { rng.random_range(a..=b) })
        }
        None => one(&text),
    }
}

/// humantime (`800ms`, `1m30s`), or a range `500ms..1500ms` drawn from the seed (whole ms).
fn duration(text: &str, rng: &mut rand::rngs::StdRng) -> Result<Duration, String> {
    let one = |t: &str| {
        humantime::parse_duration(t.trim())
            .map_err(|e| format!("{:?}: {e} (write e.g. 800ms or 1m30s)", t.trim()))
    };
    match text.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(format!("{text:?}: the range is empty"));
            }
            let ms = rng.random_range(a.as_millis() as u64..=b.as_millis() as u64);
            Ok(Duration::from_millis(ms))
        }
        None => one(text),
    }
}

/// `8MiB/s`, `512KiB/s`, `1048576` (bytes per second).
fn byte_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t).trim();
    let t = t.strip_suffix('B').unwrap_or(t);
    crate::cluster::local::memlimit::parse_quantity(t)
        .map_err(|_| format!("{text:?} is not a byte rate (write e.g. 8MiB/s)"))
}

/// `50/s`, `50`, `3000/m`.
fn per_second(s: &Scalar) -> Result<f64, String> {
    let text = s.text();
    let (n, per) = match text.split_once('/') {
        Some((n, "s")) => (n, 1.0),
        Some((n, "m")) => (n, 60.0),
        Some(_) => return Err(format!("{text:?}: write a rate as 50/s or 3000/m")),
        None => (text.as_str(), 1.0),
    };
    n.trim()
        .parse::<f64>()
        .map(|v| v / per)
        .map_err(|_| format!("{text:?}: write a rate as 50/s or 3000/m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name: argo-rollback-on-500s
description: a release that fails 30% of requests is rolled back
target: .
baseline: { version: "1.0.0" }
release:
  version: "2.0.0"
  faults:
    errors: { rate: 30%, status: 503 }
    latency: { delay: 800ms, jitter: 200ms }
    memoryLeak: { rate: 8MiB/s }
    crash: { after: 20s }
load: { rate: 50/s, connections: 4 }
expect:
  outcome: rolled-back
  within: 1m30s
  clientErrors: { max: 5% }
timeScale: 0.5
tags: [nightly]
"#;

    fn parse_ok(text: &str) -> Scenario {
        parse(Path::new("s.yaml"), text, 1).unwrap()
    }

    fn parse_err(text: &str) -> Vec<ScenarioError> {
        parse(Path::new("s.yaml"), text, 1).unwrap_err()
    }

    #[test]
    fn the_design_example_reads_into_one_model() {
        let s = parse_ok(GOOD);
        assert_eq!(s.name, "argo-rollback-on-500s");
        assert_eq!(s.outcome, Outcome::RolledBack);
        assert_eq!(s.within, Duration::from_secs(90));
        assert_eq!(s.rate, 50.0);
        assert_eq!(s.connections, 4);
        assert!((s.client_error_max - 0.05).abs() < 1e-12);
        assert_eq!(s.time_scale, Some(0.5));
        assert!(s.is_nightly());
        assert_eq!(
            s.faults,
            vec![
                Fault::Errors {
                    rate: 0.3,
                    status: 503
                },
                Fault::Latency {
                    delay: Duration::from_millis(800),
                    jitter: Duration::from_millis(200)
                },
                Fault::MemoryLeak {
                    bytes_per_sec: 8 << 20
                },
                Fault::Crash {
                    after: Duration::from_secs(20)
                },
            ]
        );
    }

    #[test]
    fn an_unknown_key_is_named() {
        let e = parse_err(&GOOD.replace("within: 1m30s", "whithin: 1m30s"));
        assert_eq!(e.len(), 1);
        let text = e[0].to_string();
        assert!(text.contains("whithin"), "{text}");
        assert!(text.starts_with("s.yaml"), "{text}");
    }

    #[test]
    fn bad_values_name_their_keys() {
        let e = parse_err(
            &GOOD
                .replace("rate: 30%", "rate: 130%")
                .replace("within: 1m30s", "within: soon")
                .replace("rate: 50/s", "rate: fast"),
        );
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["release.faults.errors.rate", "load.rate", "expect.within"]
        );
    }

    #[test]
    fn the_judges_finding_is_read_and_checked() {
        let with = |finding: &str| {
            GOOD.replace(
                "  clientErrors",
                &format!("  judge: {finding}\n  clientErrors"),
            )
        };
        assert_eq!(parse_ok(GOOD).judge, None);
        assert_eq!(
            parse_ok(&with("false-rollback")).judge,
            Some(Finding::FalseRollback)
        );
        let e = parse_err(&with("right"));
        assert!(
            e[0].reason.contains("unknown variant `right`") && e[0].reason.contains("justified"),
            "{e:?}"
        );
        // The judge tells the versions apart by name.
        let same = with("justified").replace("version: \"2.0.0\"", "version: \"1.0.0\"");
        let e = parse_err(&same);
        assert_eq!(e[0].key, "expect.judge");
        assert!(e[0].reason.contains("both 1.0.0"), "{e:?}");
    }

    #[test]
    fn ranges_are_drawn_from_the_seed_reproducibly() {
        let text = GOOD
            .replace("rate: 30%", "rate: 0.3..0.6")
            .replace("delay: 800ms", "delay: 500ms..1500ms");
        let a = parse(Path::new("s.yaml"), &text, 7).unwrap();
        let b = parse(Path::new("s.yaml"), &text, 7).unwrap();
        assert_eq!(a.faults, b.faults);
        let Fault::Errors { rate, .. } = a.faults[0] else {
            panic!()
        };
        assert!((0.3..=0.6).contains(&rate));
        let differs =
            (0..20).any(|seed| parse(Path::new("s.yaml"), &text, seed).unwrap().faults != a.faults);
        assert!(differs, "the seed changes the draw");
    }

    #[test]
    fn a_manifest_is_not_a_scenario() {
        let e = parse_err("apiVersion: v1\nkind: Service\n");
        assert_eq!(e[0].key, "apiVersion");
    }

    #[test]
    fn a_missing_target_is_reported() {
        let e = parse_err(&GOOD.replace("target: .", "target: ./nowhere"));
        assert_eq!(e[0].key, "target");
    }
}
