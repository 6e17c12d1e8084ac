//! The grid of fault magnitudes `gauntlet power` simulates: error shares and added latencies,
//! parsed from the command line, and the release each grid point stands for.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// The default error shares (issue 17): 0 %, 0.5 %, 1 %, 2 %, 5 %, 10 %, 20 %.
pub const DEFAULT_ERRORS: [f64; 7] = [0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2];
/// The default added latencies in milliseconds.
pub const DEFAULT_LATENCY_MS: [u64; 5] = [0, 50, 100, 200, 500];

/// What a release does wrong at one grid point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// A share of the canary's requests answered with 500.
    Errors,
    /// A fixed delay added to every canary request.
    Latency,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Errors => "errors",
            FaultKind::Latency => "latency",
        })
    }
}

/// One grid point. The magnitude's type follows the kind, so an error share cannot be read as
/// milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// A share in [0, 1].
    Errors(f64),
    /// Added delay.
    Latency(Duration),
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Errors(_) => FaultKind::Errors,
            Fault::Latency(_) => FaultKind::Latency,
        }
    }

    /// The magnitude as the JSON report gives it: a share, or milliseconds.
    pub fn magnitude(&self) -> f64 {
        match self {
            Fault::Errors(s) => *s,
            Fault::Latency(d) => d.as_secs_f64() * 1000.0,
        }
    }

    /// No fault at all: the release is as good as the baseline.
    pub fn is_none(&self) -> bool {
        self.magnitude() == 0.0
    }

    /// The release's environment, as a scenario's `release.faults` would set it: the sample
    /// app's own variables, so the fault rides on the pod template as on a real run.
    pub fn release_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("APP_VERSION".to_string(), RELEASE_VERSION.to_string())];
        match self {
            Fault::Errors(s) if *s > 0.0 => {
                env.push(("FAULT_ERROR_RATE".into(), format!("{s}")));
            }
            Fault::Latency(d) if !d.is_zero() => {
                env.push(("FAULT_LATENCY".into(), format!("{}ms", d.as_millis())));
            }
            _ => {}
        }
        env
    }

    /// How people read it: `2%`, `+200ms`.
    pub fn label(&self) -> String {
        match self {
            Fault::Errors(s) => format!("{}%", trim(s * 100.0)),
            Fault::Latency(d) => format!("+{}ms", d.as_millis()),
        }
    }
}

/// The baseline's version; the release's is [`RELEASE_VERSION`].
pub const BASELINE_VERSION: &str = "1.0.0";
pub const RELEASE_VERSION: &str = "2.0.0";

fn trim(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The grid: every error share, then every latency, in the order given. Magnitude 0 of both
/// kinds is the same release (no fault); it is simulated once and reported under both.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub errors: Vec<f64>,
    pub latency: Vec<Duration>,
}

impl Default for Grid {
    fn default() -> Self {
        Grid {
            errors: DEFAULT_ERRORS.to_vec(),
            latency: DEFAULT_LATENCY_MS
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
        }
    }
}

impl Grid {
    /// The distinct releases to simulate: one no-fault release if any point is 0, then the
    /// faulty ones.
    pub fn releases(&self) -> Vec<Fault> {
        let mut out = Vec::new();
        let zero = self.errors.contains(&0.0) || self.latency.iter().any(|d| d.is_zero());
        if zero {
            out.push(Fault::Errors(0.0));
        }
        out.extend(
            self.errors
                .iter()
                .filter(|s| **s > 0.0)
                .map(|s| Fault::Errors(*s)),
        );
        out.extend(
            self.latency
                .iter()
                .filter(|d| !d.is_zero())
                .map(|d| Fault::Latency(*d)),
        );
        out
    }

    /// The points to report, in grid order, each with the release that answers it.
    pub fn points(&self) -> Vec<Fault> {
        let mut out: Vec<Fault> = self.errors.iter().map(|s| Fault::Errors(*s)).collect();
        out.extend(self.latency.iter().map(|d| Fault::Latency(*d)));
        out
    }
}

/// Parses `--errors`: comma-separated shares, each a percentage (`2%`, `0.5%`) or a share
/// from 0 to 1 (`0.02`).
///
/// # Errors
/// The entry that is not a share, and why.
pub fn parse_errors(list: &str) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let share = match item.strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<f64>()
                .map(|v| v / 100.0)
                .map_err(|_| format!("--errors: `{item}` is not a percentage like 2%"))?,
            None => item
                .parse::<f64>()
                .map_err(|_| format!("--errors: `{item}` is not a share like 0.02 or 2%"))?,
        };
        if !(share.is_finite() && (0.0..=1.0).contains(&share)) {
            return Err(format!(
                "--errors: `{item}` is outside 0 %..100 % (a bare number is a share from 0 to 1)"
            ));
        }
        if !out.contains(&share) {
            out.push(share);
        }
    }
    if out.is_empty() {
        return Err("--errors: give at least one share, e.g. 0,1%,5%".into());
    }
    Ok(out)
}

/// Parses `--latency`: comma-separated added delays, each a duration (`200ms`, `1s`) or a bare
/// number of milliseconds.
///
/// # Errors
/// The entry that is not a delay, and why.
pub fn parse_latency(list: &str) -> Result<Vec<Duration>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let d = match item.parse::<u64>() {
            Ok(ms) => Duration::from_millis(ms),
            Err(_) => humantime::parse_duration(item)
                .map_err(|_| format!("--latency: `{item}` is not a delay like 200ms or 1s"))?,
        };
        if d > Duration::from_secs(60) {
            return Err(format!("--latency: `{item}` is more than 60 s"));
        }
        if d.subsec_nanos() % 1_000_000 != 0 {
            return Err(format!("--latency: `{item}` is finer than a millisecond"));
        }
        if !out.contains(&d) {
            out.push(d);
        }
    }
    if out.is_empty() {
        return Err("--latency: give at least one delay, e.g. 0,100ms,500ms".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shares_read_percentages_and_shares() {
        assert_eq!(
            parse_errors("0, 0.5%,2%,0.2").unwrap(),
            vec![0.0, 0.005, 0.02, 0.2]
        );
        assert!(parse_errors("150%").is_err());
        assert!(parse_errors("2").is_err(), "a bare 2 is a share above 1");
        assert!(parse_errors("x%").unwrap_err().contains("`x%`"));
        assert!(parse_errors(" , ").is_err());
    }

    #[test]
    fn latencies_read_durations_and_milliseconds() {
        assert_eq!(
            parse_latency("0,50,1s").unwrap(),
            vec![
                Duration::ZERO,
                Duration::from_millis(50),
                Duration::from_secs(1)
            ]
        );
        assert!(parse_latency("fast").is_err());
        assert!(parse_latency("2m").is_err());
    }

    #[test]
    fn the_zero_point_is_one_release_reported_twice() {
        let g = Grid::default();
        let releases = g.releases();
        assert_eq!(releases.len(), 1 + 6 + 4);
        assert!(releases[0].is_none());
        assert_eq!(g.points().len(), 12);
        assert_eq!(
            Fault::Errors(0.02).release_env(),
            vec![
                ("APP_VERSION".to_string(), "2.0.0".to_string()),
                ("FAULT_ERROR_RATE".to_string(), "0.02".to_string())
            ]
        );
        assert_eq!(Fault::Latency(Duration::from_millis(200)).label(), "+200ms");
        assert_eq!(Fault::Errors(0.005).label(), "0.5%");
    }
}
