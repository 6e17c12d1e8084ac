//! The judge's knobs, each validated where it is made so that a [`Settings`] is always usable.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use super::JudgeError;

/// Two-sided confidence level of every test, strictly between 0 and 1. Kayenta's judge uses
/// 98 %, hard-wired; so is our default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Confidence(#[serde(deserialize_with = "confidence_level")] f64);

impl Confidence {
    pub fn new(level: f64) -> Result<Self, JudgeError> {
        if level > 0.0 && level < 1.0 {
            Ok(Confidence(level))
        } else {
            Err(JudgeError::Confidence(level))
        }
    }

    pub fn level(self) -> f64 {
        self.0
    }

    /// The significance level of the two-sided tests, `1 - level`.
    pub fn alpha(self) -> f64 {
        1.0 - self.0
    }

    /// `z` with `P(|Z| > z) = alpha`: 2.326 at 98 %.
    pub fn z(self) -> f64 {
        quantile(1.0 - self.alpha() / 2.0)
    }
}

impl Default for Confidence {
    fn default() -> Self {
        Confidence(0.98)
    }
}

/// The chance (strictly between 0 and 1) that a test detects a difference of the margin's size.
/// The judge uses it only to decide whether a test that found nothing had enough data to find
/// something, and to say how much data would have been enough. Default 80 %, the usual choice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Power(#[serde(deserialize_with = "power_level")] f64);

impl Power {
    pub fn new(power: f64) -> Result<Self, JudgeError> {
        if power > 0.0 && power < 1.0 {
            Ok(Power(power))
        } else {
            Err(JudgeError::Power(power))
        }
    }

    pub fn level(self) -> f64 {
        self.0
    }

    /// `z` with `P(Z < z) = power`: 0.842 at 80 %.
    pub fn z(self) -> f64 {
        quantile(self.0)
    }
}

impl Default for Power {
    fn default() -> Self {
        Power(0.8)
    }
}

/// A level read back from a report, refused outside (0, 1) as [`Confidence::new`] does.
fn confidence_level<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    Confidence::new(v)
        .map(Confidence::level)
        .map_err(serde::de::Error::custom)
}

fn power_level<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    Power::new(v)
        .map(Power::level)
        .map_err(serde::de::Error::custom)
}

/// The standard normal quantile; `p` is strictly inside (0, 1) for every caller here.
fn quantile(p: f64) -> f64 {
    Normal::standard().inverse_cdf(p)
}

/// Confidence, power and the effect-size margins below which a difference does not count.
///
/// A metric is `worse` only if its test is significant at the confidence level *and* the
/// effect reaches the margin (Kayenta likewise gates significance with an effect size): with
/// enough traffic any difference becomes significant, and a canary 0.1 ms slower than a 1 ms
/// stable is not a regression anyone should roll back for. The margins are also the smallest
/// effects the judge insists on being able to see before it says `no-difference`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SettingsFields")]
pub struct Settings {
    confidence: Confidence,
    power: Power,
    error_margin: f64,
    latency_margin: f64,
    latency_floor_ms: f64,
}

/// Default error-rate margin: 5 percentage points (see [`Settings::with_error_margin`]).
pub const ERROR_MARGIN: f64 = 0.05;
/// Default latency margin: the canary's typical request 25 % slower (Kayenta's tolerance band
/// is 25 % of its estimate, too).
pub const LATENCY_MARGIN: f64 = 1.25;
/// Default latency floor: the canary's typical request at least 1 ms slower.
pub const LATENCY_FLOOR_MS: f64 = 1.0;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            confidence: Confidence::default(),
            power: Power::default(),
            error_margin: ERROR_MARGIN,
            latency_margin: LATENCY_MARGIN,
            latency_floor_ms: LATENCY_FLOOR_MS,
        }
    }
}

/// [`Settings`] as a report states them, checked by the same builders on the way in.
#[derive(Deserialize)]
struct SettingsFields {
    confidence: Confidence,
    power: Power,
    error_margin: f64,
    latency_margin: f64,
    latency_floor_ms: f64,
}

impl TryFrom<SettingsFields> for Settings {
    type Error = JudgeError;

    fn try_from(f: SettingsFields) -> Result<Self, Self::Error> {
        Settings::default()
            .with_confidence(f.confidence)
            .with_power(f.power)
            .with_error_margin(f.error_margin)?
            .with_latency_margin(f.latency_margin)?
            .with_latency_floor_ms(f.latency_floor_ms)
    }
}

impl Settings {
    pub fn with_confidence(mut self, confidence: Confidence) -> Self {
        self.confidence = confidence;
        self
    }

    pub fn with_power(mut self, power: Power) -> Self {
        self.power = power;
        self
    }

    /// The smallest rise of the canary's error rate over the stable's, in absolute terms
    /// (0.05 = 5 percentage points), that counts as `worse`; strictly between 0 and 1.
    ///
    /// Why 5 points by default: a scenario exposes its canary for seconds, not hours, and 0
    /// errors in 200 canary requests only bound the canary's error rate below about 2.5 % at
    /// 98 %. A smaller margin would leave every healthy short scenario `not-enough-data`; a
    /// team with long exposures can lower it.
    pub fn with_error_margin(mut self, margin: f64) -> Result<Self, JudgeError> {
        if margin > 0.0 && margin < 1.0 {
            self.error_margin = margin;
            Ok(self)
        } else {
            Err(JudgeError::ErrorMargin(margin))
        }
    }

    /// The smallest slow-down, as the ratio of the canary's typical latency to the stable's
    /// (the Hodges-Lehmann estimate, see `mann_whitney`), that counts as `worse`; finite and
    /// above 1. `better` needs the inverse.
    pub fn with_latency_margin(mut self, ratio: f64) -> Result<Self, JudgeError> {
        if ratio > 1.0 && ratio.is_finite() {
            self.latency_margin = ratio;
            Ok(self)
        } else {
            Err(JudgeError::LatencyMargin(ratio))
        }
    }

    /// The smallest slow-down in absolute terms (the Hodges-Lehmann shift, ms) that counts as
    /// `worse`, on top of the ratio; finite and not negative.
    ///
    /// Why: ratios alone make sub-millisecond noise a regression. On the local backend a
    /// request takes ~1 ms, and a freshly started canary process is routinely 20-30 % slower
    /// than a warm stable one (0.9 against 0.7 ms in the suites' runs): real, significant with
    /// thousands of requests, and of no consequence to anyone.
    pub fn with_latency_floor_ms(mut self, ms: f64) -> Result<Self, JudgeError> {
        if ms >= 0.0 && ms.is_finite() {
            self.latency_floor_ms = ms;
            Ok(self)
        } else {
            Err(JudgeError::LatencyFloor(ms))
        }
    }

    pub fn confidence(&self) -> Confidence {
        self.confidence
    }

    pub fn power(&self) -> Power {
        self.power
    }

    pub fn error_margin(&self) -> f64 {
        self.error_margin
    }

    pub fn latency_margin(&self) -> f64 {
        self.latency_margin
    }

    pub fn latency_floor_ms(&self) -> f64 {
        self.latency_floor_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_outside_the_open_unit_interval_are_refused() {
        for bad in [0.0, 1.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
            assert!(Confidence::new(bad).is_err(), "{bad}");
            assert!(Power::new(bad).is_err(), "{bad}");
            assert!(Settings::default().with_error_margin(bad).is_err(), "{bad}");
        }
        for bad in [1.0, 0.5, f64::NAN, f64::INFINITY] {
            assert!(
                Settings::default().with_latency_margin(bad).is_err(),
                "{bad}"
            );
        }
        assert_eq!(Confidence::new(0.95).unwrap().level(), 0.95);
        let s = Settings::default()
            .with_error_margin(0.01)
            .unwrap()
            .with_latency_margin(1.5)
            .unwrap();
        assert_eq!((s.error_margin(), s.latency_margin()), (0.01, 1.5));
    }

    /// statrs' normal quantile against the standard tables (Abramowitz & Stegun, table 26.5):
    /// z(0.99) = 2.326348, z(0.975) = 1.959964, z(0.80) = 0.841621.
    #[test]
    fn normal_quantiles_match_the_tables() {
        let c = Confidence::default();
        assert!((c.alpha() - 0.02).abs() < 1e-12);
        assert!((c.z() - 2.326_348).abs() < 1e-6, "{}", c.z());
        assert!((Confidence::new(0.95).unwrap().z() - 1.959_964).abs() < 1e-6);
        assert!((Power::default().z() - 0.841_621).abs() < 1e-6);
    }
}
