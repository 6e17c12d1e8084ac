//! Where a metric's verdict turns from pass to fail, found by asking the controller's own judge.
//!
//! A condition such as `len(result) == 0 || isNaN(result[0]) || result[0] >= 0.95` can be written
//! in many ways (`>`, `<=`, `!(... < x)`, a failureCondition next to it, a `thresholdRange`, a
//! deprecated `threshold`); rather than parse each, the judge that decides at run time is given
//! values between a healthy one and a bad one, and the value where it flips is bisected. A judge
//! that flips more than once over the range (a band, an inverted condition) is not read.

use std::time::Duration;

use super::classify::Class;
use super::facts::Threshold;

/// One value's verdict, reduced to what sizing needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Inconclusive: the analysis would pause, not abort.
    Other,
    /// The condition cannot evaluate the value (an Error measurement).
    Error,
}

/// Memory thresholds below this are taken for another unit than bytes: the sample app alone
/// uses more.
const LEAST_MEMORY_BYTES: f64 = 4.0 * 1024.0 * 1024.0;

/// A metric's threshold, from its class (read from the query) and its judge.
///
/// # Errors
/// The class is unknown, or the judge has no single threshold over the class' range.
pub fn read(class: Class, judge: impl Fn(f64) -> Verdict) -> Result<Threshold, String> {
    match class {
        Class::ErrorShare { success, percent } => {
            let max = if percent { 100.0 } else { 1.0 };
            let (good, bad) = if success { (max, 0.0) } else { (0.0, max) };
            let at = flip(&judge, good, bad)?;
            let share = if success { 1.0 - at / max } else { at / max };
            // The bisection lands a hair past the bound: 0.0100000001 is 1 %.
            Ok(Threshold::ErrorShare(
                ((share * 1e6).round() / 1e6).clamp(0.0, 1.0),
            ))
        }
        Class::Latency { millis } => {
            let unit = if millis { 1000.0 } else { 1.0 };
            let at = flip(&judge, 0.001 * unit, 3600.0 * unit)?;
            Ok(Threshold::Latency(Duration::from_millis(
                (at / unit * 1000.0).round().max(1.0) as u64,
            )))
        }
        Class::Memory => {
            let at = flip(&judge, 0.0, 1024f64.powi(4))?;
            if at < LEAST_MEMORY_BYTES {
                return Err(format!(
                    "it fails above {at:.0}, less than the app uses idle if that is bytes; \
                     is the query in another unit?"
                ));
            }
            Ok(Threshold::Memory(at.round() as u64))
        }
        Class::Restarts => {
            flip(&judge, 0.0, 1000.0)?;
            Ok(Threshold::Restarts)
        }
        Class::Unknown(why) => Err(why.to_string()),
    }
}

/// Samples checked on either side of the flip, to refuse judges that are not monotone.
const SAMPLES: usize = 64;

/// The last passing value between `good` (which must pass) and `bad` (which must fail), to
/// within a millionth of the range: the bound as the user wrote it (`>= 0.95` gives 0.95).
///
/// # Errors
/// Why no single threshold could be read: `good` does not pass, `bad` does not fail, or the
/// verdict flips back somewhere in between.
pub fn flip(judge: impl Fn(f64) -> Verdict, good: f64, bad: f64) -> Result<f64, String> {
    match judge(good) {
        Verdict::Pass => {}
        v => {
            return Err(format!(
                "a healthy value ({good}) is judged {v:?}, not a pass"
            ));
        }
    }
    match judge(bad) {
        Verdict::Fail => {}
        v => {
            return Err(format!(
                "a clearly bad value ({bad}) is judged {v:?}, not a failure"
            ));
        }
    }
    let (mut lo, mut hi) = (good, bad);
    for _ in 0..200 {
        let mid = lo + (hi - lo) / 2.0;
        if mid == lo || mid == hi {
            break;
        }
        if judge(mid) == Verdict::Fail {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let at = lo;
    // Linear and geometric samples, so that thresholds near `good` (a 500 ms latency in an
    // hour-wide range) are checked as densely as those in the middle.
    let span = bad - good;
    let mut samples: Vec<f64> = (0..=SAMPLES)
        .map(|i| good + span * i as f64 / SAMPLES as f64)
        .collect();
    samples.extend((0..=SAMPLES).map(|i| good + span * 2f64.powf(-(i as f64) / 3.0)));
    let tolerance = span.abs() * 1e-6;
    for x in samples {
        let past = (x - at) * span.signum();
        let v = judge(x);
        if past > tolerance && v != Verdict::Fail && (x - hi) * span.signum() > 0.0 {
            return Err(format!(
                "the verdict flips back to {v:?} at {x}, past the threshold {at}"
            ));
        }
        if past < -tolerance && v == Verdict::Fail {
            return Err(format!(
                "{x} already fails, before the threshold {at}: more than one threshold"
            ));
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_least(t: f64) -> impl Fn(f64) -> Verdict {
        move |v| if v >= t { Verdict::Pass } else { Verdict::Fail }
    }

    #[test]
    fn a_minimum_is_found_from_above() {
        let t = flip(at_least(0.95), 1.0, 0.0).unwrap();
        assert!((t - 0.95).abs() < 1e-6, "{t}");
    }

    #[test]
    fn a_maximum_is_found_from_below() {
        let t = flip(
            |v| {
                if v <= 0.5 {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                }
            },
            0.001,
            3600.0,
        )
        .unwrap();
        assert!((t - 0.5).abs() < 1e-3, "{t}");
    }

    #[test]
    fn an_inconclusive_band_ends_at_the_failure_boundary() {
        let judge = |v: f64| {
            if v < 0.01 {
                Verdict::Pass
            } else if v > 0.2 {
                Verdict::Fail
            } else {
                Verdict::Other
            }
        };
        let t = flip(judge, 0.0, 1.0).unwrap();
        assert!((t - 0.2).abs() < 1e-6, "{t}");
    }

    #[test]
    fn judges_without_one_threshold_are_refused() {
        assert!(
            flip(at_least(0.95), 0.0, 1.0)
                .unwrap_err()
                .contains("healthy")
        );
        // Fails in a band and again near the end: two thresholds, none read.
        let band = |v: f64| {
            if (0.3..0.6).contains(&v) || v >= 0.9 {
                Verdict::Fail
            } else {
                Verdict::Pass
            }
        };
        let e = flip(band, 0.0, 1.0).unwrap_err();
        assert!(
            e.contains("flips back") || e.contains("more than one"),
            "{e}"
        );
        let errors = |_: f64| Verdict::Error;
        assert!(flip(errors, 0.0, 1.0).is_err());
    }
}
