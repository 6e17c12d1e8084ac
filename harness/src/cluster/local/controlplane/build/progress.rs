//! Draws [`BuildProgress`] on stderr: a bar for a person at a terminal, and for CI logs a line
//! per phase plus one every [`PLAIN_EVERY`], so a six-minute cold build shows it is alive in
//! about forty lines instead of thousands (one per package) or none.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::BuildProgress;

/// How often plain mode repeats a phase that is still running.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

pub struct ProgressRenderer {
    mode: Mode,
}

enum Mode {
    Bar(Option<ProgressBar>),
    Plain {
        sink: Sink,
        /// When the last line was printed, and for which phase.
        last: Option<(Instant, String)>,
        /// The first event's time: lines say how long the build has been running.
        since: Option<Instant>,
    },
}

enum Sink {
    Stderr,
    #[cfg(test)]
    Buffer(Vec<String>),
}

impl Sink {
    fn line(&mut self, line: String) {
        match self {
            Sink::Stderr => eprintln!("{line}"),
            #[cfg(test)]
            Sink::Buffer(lines) => lines.push(line),
        }
    }
}

impl ProgressRenderer {
    /// A bar when stderr is a terminal outside CI (`CI` unset), plain lines otherwise: CI log
    /// viewers show a bar's cursor movements as garbage.
    pub fn auto() -> Self {
        use std::io::IsTerminal;
        Self::new(std::io::stderr().is_terminal() && std::env::var_os("CI").is_none())
    }

    pub fn new(bar: bool) -> Self {
        let mode = if bar {
            Mode::Bar(None)
        } else {
            Mode::Plain {
                sink: Sink::Stderr,
                last: None,
                since: None,
            }
        };
        ProgressRenderer { mode }
    }

    pub fn update(&mut self, progress: &BuildProgress) {
        self.update_at(progress, Instant::now());
    }

    fn update_at(&mut self, progress: &BuildProgress, now: Instant) {
        match &mut self.mode {
            Mode::Bar(bar) => draw_bar(bar, progress),
            Mode::Plain { sink, last, since } => {
                let elapsed = now.duration_since(*since.get_or_insert(now));
                let phase = phase_of(progress);
                let due = match last {
                    Some((at, was)) => *was != phase || now.duration_since(*at) >= PLAIN_EVERY,
                    None => true,
                };
                if let Some(line) = line_for(progress).filter(|_| due) {
                    let line = match progress {
                        BuildProgress::Compiling { .. } => {
                            format!("{line} after {}s", elapsed.as_secs())
                        }
                        _ => line,
                    };
                    sink.line(line);
                    *last = Some((now, phase));
                }
            }
        }
    }
}

/// Changing phase prints at once; the same phase waits its turn.
fn phase_of(progress: &BuildProgress) -> String {
    match progress {
        BuildProgress::WaitingForLock { .. } => "waiting".to_string(),
        BuildProgress::Listing { module } => format!("listing {module}"),
        BuildProgress::Compiling { module, .. } => format!("compiling {module}"),
        BuildProgress::Done { .. } => "done".to_string(),
    }
}

/// The plain line for an event; `None` for what needs no line (a cache hit says nothing).
fn line_for(progress: &BuildProgress) -> Option<String> {
    Some(match progress {
        BuildProgress::WaitingForLock { lock } => format!(
            "control plane: another gauntlet is building it; waiting for {}",
            lock.display()
        ),
        BuildProgress::Listing { module } => {
            format!("control plane: listing the packages of {module} (downloads missing modules)")
        }
        BuildProgress::Compiling {
            module,
            done,
            total,
            package,
        } => format!(
            "control plane: building {module}: {done}/{total} packages{}",
            if package.is_empty() {
                String::new()
            } else {
                format!(" ({package})")
            }
        ),
        BuildProgress::Done {
            dir,
            built: true,
            elapsed,
        } => format!(
            "control plane: built in {}s into {}",
            elapsed.as_secs(),
            dir.display()
        ),
        BuildProgress::Done { built: false, .. } => return None,
    })
}

fn draw_bar(slot: &mut Option<ProgressBar>, progress: &BuildProgress) {
    if let BuildProgress::Done { built, .. } = progress {
        if let Some(bar) = slot.take() {
            bar.finish_and_clear();
        }
        if *built {
            eprintln!("{}", line_for(progress).unwrap_or_default());
        }
        return;
    }
    let bar = slot.get_or_insert_with(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} control plane: {msg} ({elapsed})")
                .expect("a constant template parses"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    match progress {
        BuildProgress::Compiling {
            module,
            done,
            total,
            package,
        } => {
            if bar.length().is_none() {
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner:.cyan} control plane [{bar:30.cyan/blue}] {pos}/{len} {msg} ({elapsed})",
                    )
                    .expect("a constant template parses")
                    .progress_chars("=> "),
                );
            }
            bar.set_length(*total);
            bar.set_position(*done);
            bar.set_message(format!("{module} {package}"));
        }
        other => bar.set_message(
            line_for(other)
                .unwrap_or_default()
                .trim_start_matches("control plane: ")
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> ProgressRenderer {
        ProgressRenderer {
            mode: Mode::Plain {
                sink: Sink::Buffer(Vec::new()),
                last: None,
                since: None,
            },
        }
    }

    fn lines(r: &ProgressRenderer) -> &[String] {
        match &r.mode {
            Mode::Plain {
                sink: Sink::Buffer(lines),
                ..
            } => lines,
            _ => unreachable!(),
        }
    }

    fn compiling(done: u64) -> BuildProgress {
        BuildProgress::Compiling {
            module: "m",
            done,
            total: 100,
            package: format!("p{done}"),
        }
    }

    #[test]
    fn plain_mode_prints_each_phase_and_then_every_ten_seconds() {
        let mut r = plain();
        let t0 = Instant::now();
        r.update_at(&BuildProgress::Listing { module: "m" }, t0);
        for (i, s) in [0u64, 1, 2, 9, 10, 11, 19, 20].into_iter().enumerate() {
            r.update_at(&compiling(i as u64 + 1), t0 + Duration::from_secs(s));
        }
        r.update_at(
            &BuildProgress::Done {
                dir: "/c/bin".into(),
                built: true,
                elapsed: Duration::from_secs(21),
            },
            t0 + Duration::from_secs(21),
        );
        assert_eq!(
            lines(&r),
            [
                "control plane: listing the packages of m (downloads missing modules)",
                "control plane: building m: 1/100 packages (p1) after 0s",
                "control plane: building m: 5/100 packages (p5) after 10s",
                "control plane: building m: 8/100 packages (p8) after 20s",
                "control plane: built in 21s into /c/bin",
            ]
        );
    }

    #[test]
    fn a_cache_hit_prints_nothing() {
        let mut r = plain();
        r.update(&BuildProgress::Done {
            dir: "/c/bin".into(),
            built: false,
            elapsed: Duration::ZERO,
        });
        assert!(lines(&r).is_empty());
    }
}
