//! Argo Rollouts' two duration formats (v1.9.1's `v1alpha1.DurationString` and
//! `intstrutil`-typed pause durations), which are not the same:
//!
//! - A metric's `interval` and `initialDelay` are Go `time.ParseDuration` strings: a unit is
//!   required (`"30"` is an error at run time, not 30 seconds), fractions and compound values
//!   work (`"1.5h"`, `"1h30m"`), and the units are `ns us µs ms s m h`. No days.
//! - A canary step's `pause.duration` is an int-or-string: an integer, or a string of digits,
//!   means seconds; anything else goes through `time.ParseDuration` and is then truncated to whole
//!   seconds (`"1500ms"` pauses 1 s, `"500ms"` not at all).
//!
//! humantime is deliberately not used: it accepts `"30"`-less forms and units (`days`, `min`)
//! that Argo refuses, so a policy would validate here and fail in a cluster.

use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Why a duration string was refused. The texts of the Go variants are Go's own, so that they
/// read like the AnalysisRun message a cluster would show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("time: unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
    /// Go accepts a leading `-`; Argo then measures back to back (interval) or refuses the step
    /// (pause), so gauntlet refuses it everywhere.
    #[error("negative duration {0:?}")]
    Negative(String),
    /// Larger than Argo can hold (Go's `int64` nanoseconds, or `int32` seconds for a pause).
    #[error("duration {0:?} is too large")]
    TooLarge(String),
}

const NANOS_PER_UNIT: [(&str, u128); 9] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // µ (micro sign)
    ("\u{3bc}s", 1_000), // μ (Greek mu)
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("", 0),
];

/// Parses a Go `time.ParseDuration` string, as Argo does for `interval` and `initialDelay`.
///
/// # Errors
/// The reasons Go gives, plus [`DurationError::Negative`] for a value below zero.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(input.to_string());
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        // The number: digits, optionally a fraction; at least one digit on either side.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after) = rest.split_at(int_len);
        let (frac_digits, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid());
        }
        // The unit: everything up to the next number.
        let unit_len = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let Some(&(_, scale)) = NANOS_PER_UNIT.iter().find(|(u, _)| *u == unit) else {
            return Err(DurationError::UnknownUnit {
                unit: unit.to_string(),
                input: input.to_string(),
            });
        };
        let too_large = || DurationError::TooLarge(input.to_string());
        let int: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| too_large())?
        };
        // Digits past 18 cannot change the nanoseconds of any unit up to an hour.
        let frac_digits = &frac_digits[..frac_digits.len().min(18)];
        let frac: u128 = if frac_digits.is_empty() {
            0
        } else {
            frac_digits.parse().map_err(|_| invalid())?
        };
        let frac_nanos = frac * scale / 10u128.pow(frac_digits.len() as u32);
        total = int
            .checked_mul(scale)
            .and_then(|v| v.checked_add(frac_nanos))
            .and_then(|v| v.checked_add(total))
            .ok_or_else(too_large)?;
        if total > i64::MAX as u128 {
            return Err(too_large());
        }
        rest = next;
    }
    if negative && total > 0 {
        return Err(DurationError::Negative(input.to_string()));
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Parses a canary step's `pause.duration` as Argo's `RolloutPause.DurationSeconds` does.
///
/// # Errors
/// A negative value, a string that is neither digits nor a Go duration, or more seconds than an
/// `int32` holds. Argo reports all of them as `Duration needs to be greater than 0`.
pub fn parse_pause_duration(value: &IntOrString) -> Result<Duration, DurationError> {
    match value {
        IntOrString::Int(i) if *i < 0 => Err(DurationError::Negative(i.to_string())),
        IntOrString::Int(i) => Ok(Duration::from_secs(u64::from(i.unsigned_abs()))),
        IntOrString::String(s) => {
            if let Ok(i) = s.parse::<i32>() {
                return parse_pause_duration(&IntOrString::Int(i));
            }
            if !s.is_empty()
                && s.trim_start_matches(['+', '-'])
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            {
                // Digits that do not fit an int32 fall through to ParseDuration in Go, which
                // then misses a unit.
                return Err(DurationError::TooLarge(s.clone()));
            }
            let d = parse_go_duration(s)?;
            // Go: int32(d.Seconds()), truncated toward zero.
            if d.as_secs() > i32::MAX as u64 {
                return Err(DurationError::TooLarge(s.clone()));
            }
            Ok(Duration::from_secs(d.as_secs()))
        }
    }
}

/// A pause duration as written, with its meaning; kept together so the controller never parses
/// and a manifest written back keeps the user's spelling.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "IntOrString", into = "IntOrString")]
pub struct PauseDuration {
    raw: IntOrString,
    value: Duration,
}

impl PauseDuration {
    /// Whole seconds, as Argo waits.
    pub fn duration(&self) -> Duration {
        self.value
    }

    /// The value as the manifest spells it (`30`, `"30s"`).
    pub fn raw(&self) -> &IntOrString {
        &self.raw
    }
}

impl TryFrom<IntOrString> for PauseDuration {
    type Error = DurationError;

    fn try_from(raw: IntOrString) -> Result<Self, Self::Error> {
        let value = parse_pause_duration(&raw)?;
        Ok(PauseDuration { raw, value })
    }
}

impl From<PauseDuration> for IntOrString {
    fn from(p: PauseDuration) -> IntOrString {
        p.raw
    }
}

impl fmt::Display for PauseDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.raw {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(s: &str) -> Result<Duration, DurationError> {
        parse_go_duration(s)
    }

    #[test]
    fn go_durations_parse_like_time_parse_duration() {
        assert_eq!(go("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(go("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(go("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(go("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(go(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(go("1m0.25s"), Ok(Duration::from_millis(60_250)));
        assert_eq!(go("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(go("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(go("10μs"), Ok(Duration::from_micros(10)));
        assert_eq!(go("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(go("0"), Ok(Duration::ZERO));
        assert_eq!(go("+5s"), Ok(Duration::from_secs(5)));
        assert_eq!(go("-0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn go_duration_errors_read_like_go() {
        assert_eq!(
            go("30").unwrap_err().to_string(),
            r#"time: missing unit in duration "30""#
        );
        assert_eq!(
            go("60s-typo").unwrap_err().to_string(),
            r#"time: unknown unit "s-typo" in duration "60s-typo""#
        );
        assert_eq!(
            go("1d").unwrap_err().to_string(),
            r#"time: unknown unit "d" in duration "1d""#
        );
        assert_eq!(
            go("").unwrap_err().to_string(),
            r#"time: invalid duration """#
        );
        assert_eq!(go("abc"), Err(DurationError::Invalid("abc".into())));
        assert_eq!(go("."), Err(DurationError::Invalid(".".into())));
        assert_eq!(go("-5s"), Err(DurationError::Negative("-5s".into())));
        assert_eq!(
            go("9999999999h"),
            Err(DurationError::TooLarge("9999999999h".into()))
        );
    }

    #[test]
    fn pause_durations_take_seconds_or_go_strings() {
        let p = |v: IntOrString| parse_pause_duration(&v);
        assert_eq!(p(IntOrString::Int(30)), Ok(Duration::from_secs(30)));
        assert_eq!(
            p(IntOrString::String("30".into())),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            p(IntOrString::String("1m30s".into())),
            Ok(Duration::from_secs(90))
        );
        // Truncated to whole seconds, as Go's int32(d.Seconds()).
        assert_eq!(
            p(IntOrString::String("1500ms".into())),
            Ok(Duration::from_secs(1))
        );
        assert_eq!(p(IntOrString::String("500ms".into())), Ok(Duration::ZERO));
        assert!(p(IntOrString::Int(-1)).is_err());
        assert!(p(IntOrString::String("-10".into())).is_err());
        assert!(p(IntOrString::String("soon".into())).is_err());
        assert!(p(IntOrString::String("99999999999".into())).is_err());
    }

    #[test]
    fn pause_duration_keeps_the_spelling() {
        let p: PauseDuration = serde_json::from_value(serde_json::json!("1m")).unwrap();
        assert_eq!(p.duration(), Duration::from_secs(60));
        assert_eq!(p.to_string(), "1m");
        assert_eq!(serde_json::to_value(&p).unwrap(), serde_json::json!("1m"));
        assert!(serde_json::from_value::<PauseDuration>(serde_json::json!("x")).is_err());
    }
}
