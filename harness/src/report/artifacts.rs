//! `--artifacts DIR`: everything needed to understand a scenario after the stack is gone. A
//! failing scenario is exactly when these matter, so every artifact is best effort: one that
//! cannot be collected is noted in the folder's README and the others are still written.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::model::ScenarioReport;
use crate::prom::PromClient;

/// A Prometheus that hangs must not hold up the report of the run.
const PROM_TIMEOUT: Duration = Duration::from_secs(5);

/// Prometheus refuses range queries of more than 11 000 points per series.
const MAX_POINTS: f64 = 11_000.0;

/// What the backend can offer for one scenario; absent sources are skipped.
pub struct ArtifactSources {
    /// The ingress access log.
    pub access_log: Option<PathBuf>,
    /// (pod name, log file).
    pub pod_logs: Vec<(String, PathBuf)>,
    pub prometheus: Option<PromClient>,
    /// (file name, e.g. a metric name; PromQL), dumped as range queries over `from..to`.
    pub queries: Vec<(String, String)>,
    pub from: SystemTime,
    pub to: SystemTime,
}

/// What the README says about one artifact.
struct Entry {
    path: String,
    what: String,
    error: Option<String>,
}

/// Writes `dir/<scenario name>/` and returns that folder. Fails only when the folder or its
/// README cannot be written; any other artifact's error is listed in the README.
pub async fn write_artifacts(
    dir: &Path,
    scenario: &ScenarioReport,
    sources: &ArtifactSources,
) -> io::Result<PathBuf> {
    write_with_timeout(dir, scenario, sources, PROM_TIMEOUT).await
}

async fn write_with_timeout(
    dir: &Path,
    scenario: &ScenarioReport,
    sources: &ArtifactSources,
    prom_timeout: Duration,
) -> io::Result<PathBuf> {
    let folder = dir.join(file_name(&scenario.name));
    tokio::fs::create_dir_all(&folder).await?;
    let mut entries = Vec::new();
    let mut absent = Vec::new();

    // Written before the scenario is closed: the series is drawn here from the timeline.
    let mut scenario = scenario.clone();
    if scenario.series.is_none() {
        scenario.series = Some(super::series::build(&scenario));
    }
    let scenario = &scenario;
    let timeline = async {
        let bytes = serde_json::to_vec_pretty(scenario).map_err(io::Error::other)?;
        tokio::fs::write(folder.join("timeline.json"), bytes).await
    };
    entries.push(entry(
        "timeline.json",
        "the scenario's report with its whole timeline, in the schema of `--json`".into(),
        timeline.await.map_err(|e| e.to_string()),
    ));
    entries.push(entry(
        "report.html",
        "the scenario as a page with plots (open it in a browser; it fetches nothing)".into(),
        page(scenario, &folder.join("report.html")),
    ));

    match &sources.access_log {
        Some(src) => entries.push(entry(
            "access.log",
            format!("the ingress access log, from {}", src.display()),
            copy(src, &folder.join("access.log")).await,
        )),
        None => absent.push("access.log: the backend has no ingress access log"),
    }

    if sources.pod_logs.is_empty() {
        absent.push("pods/: the backend gave no pod logs");
    } else if let Err(e) = tokio::fs::create_dir_all(folder.join("pods")).await {
        entries.push(entry("pods/", "pod logs".into(), Err(e.to_string())));
    } else {
        for (pod, src) in &sources.pod_logs {
            let rel = format!("pods/{}.log", file_name(pod));
            let result = copy(src, &folder.join(&rel)).await;
            entries.push(entry(
                &rel,
                format!("log of pod {pod}, from {}", src.display()),
                result,
            ));
        }
    }

    match (&sources.prometheus, sources.queries.is_empty()) {
        (_, true) => absent.push("prometheus/: no queries to dump"),
        (None, false) => absent.push("prometheus/: the backend has no Prometheus"),
        (Some(client), false) => {
            entries.extend(dump_prometheus(client, sources, &folder, prom_timeout).await);
        }
    }

    let readme = readme(scenario, sources, &entries, &absent);
    tokio::fs::write(folder.join("README.txt"), readme).await?;
    Ok(folder)
}

async fn dump_prometheus(
    client: &PromClient,
    sources: &ArtifactSources,
    folder: &Path,
    timeout: Duration,
) -> Vec<Entry> {
    let (start, end) = (unix(sources.from), unix(sources.to));
    let range = format!("{} .. {}", rfc3339(sources.from), rfc3339(sources.to));
    if let Err(e) = tokio::fs::create_dir_all(folder.join("prometheus")).await {
        return vec![entry(
            "prometheus/",
            "range queries".into(),
            Err(e.to_string()),
        )];
    }
    let step = Duration::from_secs(((end - start) / MAX_POINTS).ceil().max(1.0) as u64);

    // Concurrently, so a dead Prometheus costs one timeout, not one per query.
    let tasks: Vec<_> = sources
        .queries
        .iter()
        .map(|(_, query)| {
            let (client, query) = (client.clone(), query.clone());
            tokio::spawn(async move {
                if end < start {
                    return Err("the range ends before it starts".to_string());
                }
                match tokio::time::timeout(timeout, client.query_range(&query, start, end, step))
                    .await
                {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!(
                        "no answer within {}",
                        humantime::format_duration(timeout)
                    )),
                }
            })
        })
        .collect();

    let mut entries = Vec::new();
    for ((name, query), task) in sources.queries.iter().zip(tasks) {
        let rel = format!("prometheus/{}.json", file_name(name));
        let what = format!(
            "`{query}` over {range}, step {}",
            humantime::format_duration(step)
        );
        let result = match task.await {
            Ok(Ok(value)) => {
                let doc = json!({
                    "name": name,
                    "query": query,
                    "start": rfc3339(sources.from),
                    "end": rfc3339(sources.to),
                    "step_s": step.as_secs(),
                    "result": value,
                });
                match serde_json::to_vec_pretty(&doc) {
                    Ok(bytes) => tokio::fs::write(folder.join(&rel), bytes)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(format!("the query task failed: {e}")),
        };
        entries.push(entry(&rel, what, result));
    }
    entries
}

fn readme(
    scenario: &ScenarioReport,
    sources: &ArtifactSources,
    entries: &[Entry],
    absent: &[&str],
) -> String {
    let mut out = String::new();
    let verdict = if scenario.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(
        out,
        "gauntlet artifacts of scenario {}: {verdict}",
        scenario.name
    );
    let _ = writeln!(
        out,
        "file: {}, controller: {}, window: {} .. {}",
        scenario.file,
        scenario.controller,
        rfc3339(sources.from),
        rfc3339(sources.to)
    );
    if let Some(failure) = &scenario.failure {
        out.push_str("\nfailure:\n");
        for line in failure.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    let width = entries.iter().map(|e| e.path.len()).max().unwrap_or(0);
    let mut section = |title: &str, ok: bool| {
        let picked: Vec<_> = entries.iter().filter(|e| e.error.is_none() == ok).collect();
        if picked.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n{title}:");
        for e in picked {
            let _ = write!(out, "  {:width$}  {}", e.path, e.what);
            match &e.error {
                Some(err) => {
                    let _ = writeln!(out, "\n  {:width$}  error: {err}", "");
                }
                None => out.push('\n'),
            }
        }
    };
    section("Written", true);
    section("Not written", false);
    if !absent.is_empty() {
        out.push_str("\nNot available:\n");
        for a in absent {
            let _ = writeln!(out, "  {a}");
        }
    }
    out
}

/// The page of one scenario, as a run of just that scenario would draw it.
fn page(scenario: &ScenarioReport, path: &Path) -> Result<(), String> {
    let run = super::model::RunReport {
        schema_version: super::model::SCHEMA_VERSION,
        version: env!("CARGO_PKG_VERSION").into(),
        backend: "(one scenario of a run)".into(),
        started_at: String::new(),
        scenarios: vec![scenario.clone()],
    };
    super::html::write_html(path, &run).map_err(|e| e.to_string())
}

fn entry(path: &str, what: String, result: Result<(), String>) -> Entry {
    Entry {
        path: path.to_string(),
        what,
        error: result.err(),
    }
}

async fn copy(src: &Path, dst: &Path) -> Result<(), String> {
    tokio::fs::copy(src, dst)
        .await
        .map(drop)
        .map_err(|e| format!("cannot copy {}: {e}", src.display()))
}

/// Names come from scenario files and the cluster; none may climb out of the artifacts folder.
fn file_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    fn sources() -> ArtifactSources {
        let to = UNIX_EPOCH + Duration::from_secs(1_700_000_060);
        ArtifactSources {
            access_log: None,
            pod_logs: vec![],
            prometheus: None,
            queries: vec![],
            from: to - Duration::from_secs(60),
            to,
        }
    }

    #[tokio::test]
    async fn copies_files_and_notes_what_failed() {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let access = src.path().join("access.log");
        std::fs::write(&access, "GET / 200\n").unwrap();
        let pod = src.path().join("pod-a.log");
        std::fs::write(&pod, "listening\n").unwrap();
        let s = ArtifactSources {
            access_log: Some(access),
            pod_logs: vec![
                ("app-canary-7f9c".into(), pod),
                ("app-gone".into(), src.path().join("missing.log")),
            ],
            queries: vec![("up".into(), "up".into())],
            ..sources()
        };
        let scenario = fixture::failed();
        let folder = write_artifacts(out.path(), &scenario, &s).await.unwrap();

        assert_eq!(folder, out.path().join("flagger-promote-slow"));
        let read = |p: &str| std::fs::read_to_string(folder.join(p)).unwrap();
        assert_eq!(read("access.log"), "GET / 200\n");
        assert_eq!(read("pods/app-canary-7f9c.log"), "listening\n");
        assert!(!folder.join("pods/app-gone.log").exists());
        let tl: serde_json::Value = serde_json::from_str(&read("timeline.json")).unwrap();
        assert_eq!(tl["name"], "flagger-promote-slow");
        assert_eq!(tl["timeline"].as_array().unwrap().len(), 40);
        assert_eq!(tl["timeline"][0]["source"], "analysis");

        let readme = read("README.txt");
        assert!(readme.contains("flagger-promote-slow: FAIL"), "{readme}");
        assert!(readme.contains("\n  expected promoted within 120s, no decision came\n"));
        let written = readme.split("Not written:").next().unwrap();
        assert!(written.contains("pods/app-canary-7f9c.log"), "{readme}");
        assert!(written.contains("timeline.json"), "{readme}");
        let not_written = readme.split("Not written:").nth(1).unwrap();
        assert!(not_written.contains("pods/app-gone.log"), "{readme}");
        assert!(not_written.contains("cannot copy"), "{readme}");
        assert!(readme.contains("the backend has no Prometheus"), "{readme}");
    }

    #[tokio::test]
    async fn names_cannot_escape_the_folder() {
        let out = tempfile::tempdir().unwrap();
        let mut scenario = fixture::passed();
        scenario.name = "..".into();
        let folder = write_artifacts(out.path(), &scenario, &sources())
            .await
            .unwrap();
        assert_eq!(folder, out.path().join("_.."));
        assert_eq!(file_name("a/../b"), "a_.._b");
        assert!(folder.join("README.txt").exists());
    }

    async fn fake_prometheus(steps: Arc<Mutex<Vec<String>>>) -> PromClient {
        use axum::extract::Query;
        use axum::routing::get;
        let app = axum::Router::new().route(
            "/api/v1/query_range",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let steps = steps.clone();
                async move {
                    steps.lock().unwrap().push(q["step"].clone());
                    match q["query"].as_str() {
                        "slow" => {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            axum::Json(json!({}))
                        }
                        "bad(" => axum::Json(json!({
                            "status": "error", "errorType": "bad_data", "error": "parse error"
                        })),
                        _ => axum::Json(json!({
                            "status": "success",
                            "data": {"resultType": "matrix", "result": [
                                {"metric": {"version": "2.0.0"},
                                 "values": [[1700000000.0, "0.5"], [1700000001.0, "NaN"]]}
                            ]}
                        })),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        PromClient::new(format!("http://{addr}"))
    }

    #[tokio::test]
    async fn dumps_range_queries_and_survives_bad_and_slow_ones() {
        let steps = Arc::new(Mutex::new(Vec::new()));
        let client = fake_prometheus(steps.clone()).await;
        let out = tempfile::tempdir().unwrap();
        let s = ArtifactSources {
            prometheus: Some(client),
            queries: vec![
                ("error_share".into(), "sum(rate(errors[30s]))".into()),
                ("broken".into(), "bad(".into()),
                ("hangs".into(), "slow".into()),
            ],
            ..sources()
        };
        let folder = write_with_timeout(
            out.path(),
            &fixture::passed(),
            &s,
            Duration::from_millis(300),
        )
        .await
        .unwrap();

        let dump: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(folder.join("prometheus/error_share.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(dump["query"], "sum(rate(errors[30s]))");
        assert_eq!(dump["step_s"], 1);
        assert_eq!(dump["start"], "2023-11-14T22:13:20Z");
        let series = &dump["result"]["Matrix"][0];
        assert_eq!(series["metric"]["version"], "2.0.0");
        assert_eq!(series["values"][0][1], 0.5);
        assert!(steps.lock().unwrap().iter().all(|s| s == "1000ms"));

        assert!(!folder.join("prometheus/broken.json").exists());
        assert!(!folder.join("prometheus/hangs.json").exists());
        let readme = std::fs::read_to_string(folder.join("README.txt")).unwrap();
        let not_written = readme.split("Not written:").nth(1).expect(&readme);
        assert!(not_written.contains("prometheus/broken.json"), "{readme}");
        assert!(not_written.contains("parse error"), "{readme}");
        assert!(not_written.contains("prometheus/hangs.json"), "{readme}");
        assert!(not_written.contains("no answer within 300ms"), "{readme}");
        assert!(folder.join("timeline.json").exists());
    }
}
