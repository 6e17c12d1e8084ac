//! Terminal output. stdout is reserved for machine-readable output, so everything here goes to
//! stderr. A person at a terminal gets one live spinner per running scenario; a CI log gets
//! plain lines, few enough to stay readable when scenarios run for minutes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::model::RunReport;
use crate::judge::Finding;
use crate::timeline::Event;

/// In plain mode an unchanged status is repeated at most this often: often enough to show the
/// run is alive, rarely enough that a 10-minute scenario is a screenful, not thousands of lines.
const PLAIN_REPEAT: Duration = Duration::from_secs(5);

/// What a running scenario is doing now, as the runner learns it from the timeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveStatus {
    pub phase: String,
    pub step: Option<String>,
    pub weight: Option<u32>,
    /// A share, 0..=1.
    pub error_share: Option<f64>,
    pub elapsed_s: f64,
}

/// The live display of a run; clone it freely to hand to parallel scenarios.
#[derive(Clone)]
pub struct Progress {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    Tty(MultiProgress),
    Plain(Sink),
}

/// Where plain lines go; tests capture them.
#[derive(Clone)]
enum Sink {
    Stderr,
    #[cfg(test)]
    Buffer(std::sync::Arc<Mutex<Vec<String>>>),
}

impl Sink {
    fn line(&self, line: &str) {
        match self {
            Sink::Stderr => eprintln!("{line}"),
            #[cfg(test)]
            Sink::Buffer(b) => b.lock().unwrap().push(line.to_string()),
        }
    }
}

impl Progress {
    /// `is_tty` picks spinners (true) or rate-limited plain lines (false). Spinners are drawn
    /// only when stderr really is a terminal; otherwise indicatif hides them, so prefer
    /// [`Progress::auto`] unless a flag forces the choice.
    pub fn new(is_tty: bool) -> Self {
        let mode = if is_tty {
            Mode::Tty(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Mode::Plain(Sink::Stderr)
        };
        Progress { mode }
    }

    /// Spinners on an interactive stderr, plain lines in CI (`CI` set) and when redirected:
    /// CI log viewers render cursor movements as garbage.
    pub fn auto() -> Self {
        use std::io::IsTerminal;
        Self::new(std::io::stderr().is_terminal() && std::env::var_os("CI").is_none())
    }

    /// Adds a line for a scenario that starts now.
    pub fn start(&self, name: &str) -> ScenarioLine {
        let kind = match &self.mode {
            Mode::Tty(multi) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {msg}")
                        .expect("a constant template parses"),
                );
                bar.set_prefix(name.to_string());
                bar.set_message("starting");
                bar.enable_steady_tick(Duration::from_millis(120));
                LineKind::Bar(bar)
            }
            Mode::Plain(sink) => {
                sink.line(&format!("[{name}] started"));
                LineKind::Plain {
                    sink: sink.clone(),
                    last: Mutex::new(None),
                }
            }
        };
        ScenarioLine {
            name: name.to_string(),
            kind,
        }
    }

    /// Prints a line above the spinners; writing to stderr directly while they draw would be
    /// overwritten or tear them.
    pub fn println(&self, line: &str) {
        match &self.mode {
            Mode::Tty(multi) => {
                let _ = multi.println(line);
            }
            Mode::Plain(sink) => sink.line(line),
        }
    }

    /// Runs `f` with the spinners hidden, for output that cannot go through [`Progress::println`]
    /// (a log subscriber, a child process inheriting stderr).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.mode {
            Mode::Tty(multi) => multi.suspend(f),
            Mode::Plain(_) => f(),
        }
    }

    #[cfg(test)]
    fn capture() -> (Self, std::sync::Arc<Mutex<Vec<String>>>) {
        let buf = std::sync::Arc::new(Mutex::new(Vec::new()));
        let p = Progress {
            mode: Mode::Plain(Sink::Buffer(buf.clone())),
        };
        (p, buf)
    }
}

/// One scenario's live line.
pub struct ScenarioLine {
    name: String,
    kind: LineKind,
}

/// What the last plain line said, to tell a change from a repeat.
type PlainKey = (String, Option<String>, Option<u32>);

enum LineKind {
    Bar(ProgressBar),
    Plain {
        sink: Sink,
        last: Mutex<Option<(PlainKey, Instant)>>,
    },
}

impl ScenarioLine {
    pub fn update(&self, status: &LiveStatus) {
        self.update_at(status, Instant::now());
    }

    fn update_at(&self, status: &LiveStatus, now: Instant) {
        match &self.kind {
            LineKind::Bar(bar) => bar.set_message(describe(status)),
            LineKind::Plain { sink, last } => {
                let key = (status.phase.clone(), status.step.clone(), status.weight);
                let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                let due = match &*last {
                    Some((k, at)) => *k != key || now.duration_since(*at) >= PLAIN_REPEAT,
                    None => true,
                };
                if due {
                    sink.line(&format!("[{}] {}", self.name, describe(status)));
                    *last = Some((key, now));
                }
            }
        }
    }

    /// Ends the line with the verdict; it stays on screen (TTY) or in the log (plain).
    pub fn finish(&self, passed: bool, summary: &str) {
        let verdict = if passed { "PASS" } else { "FAIL" };
        match &self.kind {
            LineKind::Bar(bar) => {
                let template = if passed {
                    "{prefix:.bold} {msg:.green}"
                } else {
                    "{prefix:.bold} {msg:.red}"
                };
                bar.set_style(
                    ProgressStyle::with_template(template).expect("a constant template parses"),
                );
                bar.finish_with_message(format!("{verdict} {summary}"));
            }
            LineKind::Plain { sink, .. } => {
                sink.line(&format!("[{}] {verdict} {summary}", self.name));
            }
        }
    }
}

fn describe(s: &LiveStatus) -> String {
    let mut parts = vec![if s.phase.is_empty() {
        "running".to_string()
    } else {
        s.phase.clone()
    }];
    if let Some(step) = &s.step {
        parts.push(format!("step {step}"));
    }
    if let Some(w) = s.weight {
        parts.push(format!("weight {w}%"));
    }
    if let Some(e) = s.error_share {
        parts.push(format!("errors {}", pct(e)));
    }
    parts.push(format!("{:.0}s", s.elapsed_s));
    parts.join(", ")
}

/// One timeline event as one line, `t_s source kind: message`; shared with the JUnit bodies so
/// that a CI page and a terminal read the same.
pub fn event_line(e: &Event) -> String {
    format!(
        "{:>8.1}s {} {}: {}",
        e.t_s,
        e.source,
        e.kind,
        e.message.replace('\n', " ")
    )
}

/// The end-of-run table: one row per scenario, then the failure text of each failed one, since
/// the numbers alone rarely say which expectation broke, then the judge's reasons where it
/// disagrees with the controller (a false rollback or a missed regression is news even when
/// the scenario passed).
pub fn summary_table(report: &RunReport) -> String {
    let header = [
        "SCENARIO",
        "OUTCOME (expected → got)",
        "DECISION / BUDGET",
        "CLIENT ERRORS / MAX",
        "JUDGE",
        "RESULT",
    ];
    let rows: Vec<[String; 6]> = report
        .scenarios
        .iter()
        .map(|s| {
            let decision = s.decision_s.map_or_else(|| "-".to_string(), secs);
            let errors = if s.client.requests == 0 {
                "-".to_string()
            } else {
                pct(s.client.error_rate)
            };
            [
                s.name.clone(),
                format!(
                    "{} → {}",
                    s.expected.outcome,
                    s.outcome.as_deref().unwrap_or("none")
                ),
                format!("{decision} / {}", secs(s.expected.within_s)),
                format!("{errors} / {}", pct(s.expected.client_error_max)),
                s.judge
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |j| j.finding.to_string()),
                if s.passed { "PASS" } else { "FAIL" }.to_string(),
            ]
        })
        .collect();

    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 3;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    };
    push_row(&header);
    for row in &rows {
        push_row(&row.each_ref().map(String::as_str));
    }

    let failed: Vec<_> = report.scenarios.iter().filter(|s| !s.passed).collect();
    out.push_str(&format!(
        "\n{} scenarios: {} passed, {} failed\n",
        report.scenarios.len(),
        report.scenarios.len() - failed.len(),
        failed.len()
    ));
    for s in failed {
        out.push_str(&format!("\nFAIL {} ({})\n", s.name, s.file));
        let text = s.failure.as_deref().unwrap_or("no failure text recorded");
        for line in text.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    let disputed = report.scenarios.iter().filter_map(|s| {
        let j = s.judge.as_ref()?;
        matches!(
            j.finding,
            Finding::FalseRollback | Finding::MissedRegression
        )
        .then_some((s, j))
    });
    for (s, j) in disputed {
        out.push_str(&format!("\nJUDGE {} ({})\n", s.name, s.file));
        for line in j.lines() {
            out.push_str("  ");
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// `90s`, `41.2s`: whole seconds without a decimal so budgets read as written in the file.
fn secs(s: f64) -> String {
    if !s.is_finite() {
        "-".into()
    } else if (s - s.round()).abs() < 0.05 {
        format!("{:.0}s", s)
    } else {
        format!("{s:.1}s")
    }
}

/// `5%`, `2.1%`, `0.25%`: a share as a percentage with at most two decimals.
fn pct(share: f64) -> String {
    if !share.is_finite() {
        return "-".into();
    }
    let s = format!("{:.2}", share * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;
    use crate::timeline::Source;

    #[test]
    fn summary_table_aligns_rows_and_lists_failures() {
        let table = summary_table(&fixture::run());
        let expected = "\
SCENARIO                OUTCOME (expected → got)    DECISION / BUDGET   CLIENT ERRORS / MAX   JUDGE   RESULT
argo-rollback-on-500s   rolled-back → rolled-back   41.2s / 90s         2.1% / 5%             -       PASS
flagger-promote-slow    promoted → none             - / 120s            0.4% / 1%             -       FAIL

2 scenarios: 1 passed, 1 failed

FAIL flagger-promote-slow (suites/flagger/promote.yaml)
  expected promoted within 120s, no decision came
  client errors 0.4% within 1%
";
        assert_eq!(table, expected, "\n{table}");
    }

    /// A false rollback is news even when the scenario passed: its row says so, and the judge's
    /// reasons follow the table.
    #[test]
    fn the_judges_finding_is_a_column_and_a_dispute_is_explained() {
        let mut run = fixture::run();
        run.scenarios.push(fixture::false_rollback());
        let table = summary_table(&run);
        let row = table
            .lines()
            .find(|l| l.starts_with("argo-overtight-p95-false-rollback"))
            .unwrap();
        assert!(row.ends_with("false-rollback   PASS"), "{table}");
        let judge = &table[table.find("\nJUDGE ").expect("a judge section")..];
        let lines: Vec<&str> = judge.trim().lines().collect();
        assert_eq!(
            lines[0],
            "JUDGE argo-overtight-p95-false-rollback (suites/judge/overtight.yaml)"
        );
        assert_eq!(
            lines[1],
            "  judge: false-rollback (rolled back, but no metric worse)"
        );
        assert!(lines[2].starts_with("  error rate"), "{judge}");
        assert!(lines[3].starts_with("  latency"), "{judge}");
        assert!(lines[4].starts_with("  pod health"), "{judge}");
        assert!(lines[5].starts_with("  exposure "), "{judge}");
        assert_eq!(lines.len(), 6, "{judge}");
    }

    #[test]
    fn summary_of_an_all_green_run_has_no_failure_section() {
        let mut run = fixture::run();
        run.scenarios.truncate(1);
        let table = summary_table(&run);
        assert!(
            table.ends_with("1 scenarios: 1 passed, 0 failed\n"),
            "{table}"
        );
        assert!(!table.contains("FAIL"));
    }

    #[test]
    fn numbers_read_as_written() {
        assert_eq!(secs(90.0), "90s");
        assert_eq!(secs(41.25), "41.2s");
        assert_eq!(pct(0.05), "5%");
        assert_eq!(pct(0.0025), "0.25%");
        assert_eq!(pct(0.0), "0%");
        assert_eq!(pct(f64::NAN), "-");
    }

    #[test]
    fn event_lines_are_single_lines() {
        let e = fixture::event(-1.25, Source::Pod, "oom-killed", "pod x\nkilled");
        assert_eq!(event_line(&e), "    -1.2s pod oom-killed: pod x killed");
    }

    #[test]
    fn plain_lines_are_rate_limited_but_show_every_change() {
        let (progress, buf) = Progress::capture();
        let line = progress.start("s1");
        let t0 = Instant::now();
        let mut st = LiveStatus {
            phase: "Progressing".into(),
            step: Some("1/4".into()),
            weight: Some(10),
            error_share: Some(0.004),
            elapsed_s: 3.0,
        };
        line.update_at(&st, t0);
        st.error_share = Some(0.01);
        line.update_at(&st, t0 + Duration::from_secs(1)); // same phase/step/weight: dropped
        line.update_at(&st, t0 + Duration::from_secs(4)); // still within 5 s: dropped
        st.elapsed_s = 8.0;
        line.update_at(&st, t0 + Duration::from_secs(5)); // 5 s passed: printed
        st.weight = Some(20);
        line.update_at(&st, t0 + Duration::from_secs(6)); // weight changed: printed
        line.finish(false, "expected promoted, got rolled-back");

        let lines = buf.lock().unwrap().clone();
        assert_eq!(
            lines,
            vec![
                "[s1] started",
                "[s1] Progressing, step 1/4, weight 10%, errors 0.4%, 3s",
                "[s1] Progressing, step 1/4, weight 10%, errors 1%, 8s",
                "[s1] Progressing, step 1/4, weight 20%, errors 1%, 8s",
                "[s1] FAIL expected promoted, got rolled-back",
            ]
        );
    }

    #[test]
    fn tty_lines_do_not_panic_without_a_terminal() {
        let progress = Progress::new(true);
        let line = progress.start("s2");
        line.update(&LiveStatus {
            phase: "Progressing".into(),
            ..LiveStatus::default()
        });
        progress.println("a log line");
        line.finish(true, "promoted in 40s");
    }
}
