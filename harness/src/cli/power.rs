//! `gauntlet power TARGET`: the policy's operating characteristic (see `crate::power`), with a
//! progress bar on a terminal, a table on stdout, `--json` for plots and `--html` for a page
//! with the plot.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exit::Exit;
use crate::power::report::{PowerReport, Quantiles};
use crate::power::{Grid, Power, PowerError, PowerRequest, Progress};

/// The options of `gauntlet power`, independent of clap; text values are parsed here so that
/// every mistake gets one clear message and exit 2.
#[derive(Debug, Clone, Default)]
pub struct PowerArgs {
    pub target: PathBuf,
    /// `40`, `40/s`, `2400/m`.
    pub rate: Option<String>,
    pub runs: Option<usize>,
    pub errors: Option<String>,
    pub latency: Option<String>,
    pub seed: Option<u64>,
    pub time_scale: Option<f64>,
    pub within: Option<Duration>,
    pub parallel: Option<usize>,
    pub json: Option<PathBuf>,
    pub html: Option<PathBuf>,
}

/// Parses a rate: a number per second, or with `/s` or `/m`.
///
/// # Errors
/// A text naming the flag.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (num, per) = match s.split_once('/') {
        Some((n, "s")) => (n, 1.0),
        Some((n, "m")) => (n, 60.0),
        Some(_) => return Err(format!("--rate: `{s}` is not a rate like 40/s or 2400/m")),
        None => (s, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("--rate: `{s}` is not a rate like 40/s or 2400/m"))?;
    Ok(v / per)
}

fn request(a: &PowerArgs) -> Result<PowerRequest, String> {
    let mut r = PowerRequest::new(a.target.clone());
    if let Some(rate) = &a.rate {
        r.rate = parse_rate(rate)?;
    }
    if let Some(n) = a.runs {
        r.runs = n;
    }
    let mut grid = Grid::default();
    if let Some(e) = &a.errors {
        grid.errors = crate::power::grid::parse_errors(e)?;
    }
    if let Some(l) = &a.latency {
        grid.latency = crate::power::grid::parse_latency(l)?;
    }
    r.grid = grid;
    if let Some(s) = a.seed {
        r.seed = s;
    }
    if let Some(f) = a.time_scale {
        r.scale = crate::controller::timescale::TimeScale::new(f)
            .map_err(|e| format!("--time-scale: {e}"))?;
    }
    if let Some(w) = a.within {
        r.within = w;
    }
    if let Some(p) = a.parallel {
        r.parallel = p;
    }
    Ok(r)
}

/// Runs `gauntlet power`.
pub async fn power(args: PowerArgs) -> Exit {
    let req = match request(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::BadInput;
        }
    };
    let json = args.json.clone();
    let html = args.html.clone();
    // A path that cannot be written is a bad flag: said now, not after minutes of simulation.
    for (flag, path) in [("--json", &json), ("--html", &html)] {
        if let Some(path) = path
            && let Err(e) = crate::power::html::check_writable(flag, path)
        {
            eprintln!("error: {e}");
            return Exit::BadInput;
        }
    }
    let power = match Power::new(req) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let stopper = power.stopper();
    let bar = progress_bar();
    let b = bar.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own, living as long as the run: the Prometheus it starts dies with it.
    let worker = std::thread::Builder::new()
        .name("power".into())
        .spawn(move || {
            let res = power.run(|p: Progress| {
                b.set_length(p.total as u64);
                b.set_position(p.done as u64);
                b.set_message(format!("{} queries", p.queries));
            });
            let _ = tx.send(res);
        });
    if let Err(e) = worker {
        eprintln!("error: starting the power thread: {e}");
        return Exit::Infra;
    }
    tokio::pin!(rx);
    let res = tokio::select! {
        r = &mut rx => r,
        _ = tokio::signal::ctrl_c() => {
            bar.set_message("stopping");
            stopper.stop();
            rx.await
        }
    };
    bar.finish_and_clear();
    let report = match res {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return fail(&e),
        Err(_) => {
            eprintln!("error: the power run ended without a result");
            return Exit::Infra;
        }
    };
    print!("{}", table(&report));
    if let Some(path) = json
        && let Err(e) = write_json(&path, &report)
    {
        eprintln!("error: {e}");
        return Exit::Infra;
    }
    // Writable a moment ago: a failure now is the machine's (a full disk), not the flag's.
    if let Some(path) = html
        && let Err(e) = crate::power::html::write(&path, &report)
    {
        eprintln!("error: {e}");
        return Exit::Infra;
    }
    Exit::Passed
}

fn fail(e: &PowerError) -> Exit {
    eprintln!("error: {e}");
    match e {
        PowerError::Input(_) => Exit::BadInput,
        _ => Exit::Infra,
    }
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} rollouts, {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

/// Writes the report as JSON, via a temporary file so a reader never sees half.
fn write_json(path: &Path, report: &PowerReport) -> Result<(), String> {
    let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n")
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

fn pct(p: f64) -> String {
    format!("{:.1}%", p * 100.0)
}

fn secs(q: Option<Quantiles>) -> (String, String) {
    match q {
        Some(q) => (format!("{:.1}s", q.median), format!("{:.1}s", q.p95)),
        None => ("-".into(), "-".into()),
    }
}

/// The report for people.
pub fn table(r: &PowerReport) -> String {
    let s = &r.setup;
    let mut out = format!(
        "{} ({}), {} req/s, time scale {}, {} runs per point, seed {}\n\n",
        s.target, s.controller, s.rate, s.time_scale, s.runs, s.seed
    );
    out.push_str(&format!(
        "{:<8} {:>9}  {:>11} {:>15}  {:>9} {:>7} {:>9}  {:>9} {:>9}\n",
        "fault",
        "magnitude",
        "rolled back",
        "95% interval",
        "promoted",
        "paused",
        "undecided",
        "median",
        "p95"
    ));
    for p in &r.points {
        let (median, p95) = secs(p.decision_s);
        out.push_str(&format!(
            "{:<8} {:>9}  {:>11} {:>15}  {:>9} {:>7} {:>9}  {:>9} {:>9}\n",
            p.fault.to_string(),
            p.label,
            pct(p.rolled_back),
            format!(
                "{}–{}",
                pct(p.rolled_back_ci95[0]),
                pct(p.rolled_back_ci95[1])
            ),
            pct(p.promoted),
            pct(p.paused),
            pct(p.undecided),
            median,
            p95
        ));
    }
    let caught = |v: Option<f64>, unit: &dyn Fn(f64) -> String| {
        v.map_or_else(|| "none of the grid".to_string(), unit)
    };
    out.push_str(&format!(
        "\nsmallest caught (rolled back in ≥ 95 %): errors {}, latency {}\n",
        caught(r.smallest_caught.errors, &|v| format!("{}%", v * 100.0)),
        caught(r.smallest_caught.latency, &|v| format!("+{v}ms")),
    ));
    if let (Some(p), Some([lo, hi])) = (r.false_rollback, r.false_rollback_ci95) {
        out.push_str(&format!(
            "false rollbacks (no fault): {} (95% interval {}–{})\n",
            pct(p),
            pct(lo),
            pct(hi)
        ));
    }
    out.push_str(&format!(
        "{} simulated rollouts in {:.0}s ({} writes, {} queries, {} samples)\n",
        r.points.iter().map(|p| p.runs).sum::<usize>(),
        r.cost.wall_s,
        r.cost.writes,
        r.cost.queries,
        r.cost.samples
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_per_second_and_per_minute() {
        assert_eq!(parse_rate("40").unwrap(), 40.0);
        assert_eq!(parse_rate("40/s").unwrap(), 40.0);
        assert_eq!(parse_rate("2400/m").unwrap(), 40.0);
        assert!(parse_rate("40/h").is_err());
        assert!(parse_rate("fast").is_err());
    }
}
