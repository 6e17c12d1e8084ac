//! Classes of a metric, and the finding on the controller's decision.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::JudgeError;
use crate::scenario::Outcome;

/// How the canary compares with the stable version on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "kebab-case")]
pub enum Class {
    /// Significantly worse, by at least the margin.
    Worse,
    /// No difference of the margin's size: the test found none although it had the data to,
    /// or found one smaller than the margin.
    NoDifference,
    /// Significantly better, by at least the margin.
    Better,
    /// The test found nothing, but had too little data to find a difference of the margin's size.
    NotEnoughData(Shortfall),
}

impl Class {
    pub fn name(&self) -> &'static str {
        match self {
            Class::Worse => "worse",
            Class::NoDifference => "no-difference",
            Class::Better => "better",
            Class::NotEnoughData(_) => "not-enough-data",
        }
    }

    /// `no-difference` or `better`: a metric that speaks for the canary.
    fn settled_not_worse(&self) -> bool {
        matches!(self, Class::NoDifference | Class::Better)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How much data a `not-enough-data` metric would have needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shortfall {
    /// Canary requests (answered ones, for latency) needed at the exposure's stable:canary
    /// split; `None` when it cannot be estimated (no canary or no stable data).
    pub canary_needed: Option<u64>,
    pub canary_seen: u64,
    /// `canary_needed` at the canary's observed request rate, in seconds of exposure.
    pub exposure_needed_s: Option<f64>,
    /// What the estimate is for, or why there is none.
    pub why: String,
}

impl Shortfall {
    pub(crate) fn new(needed: u64, seen: u64, rate: Option<f64>, why: String) -> Self {
        Shortfall {
            canary_needed: Some(needed),
            canary_seen: seen,
            exposure_needed_s: rate.filter(|r| *r > 0.0).map(|r| needed as f64 / r),
            why,
        }
    }

    pub(crate) fn unknown(seen: u64, why: String) -> Self {
        Shortfall {
            canary_needed: None,
            canary_seen: seen,
            exposure_needed_s: None,
            why,
        }
    }

    /// One line for people.
    pub fn text(&self) -> String {
        match self.canary_needed {
            None => self.why.clone(),
            Some(n) => {
                let time = self
                    .exposure_needed_s
                    .map(|s| format!(", about {s:.0} s of exposure at the canary's rate"))
                    .unwrap_or_default();
                format!(
                    "needs about {n} canary requests (had {}){time}, {}",
                    self.canary_seen, self.why
                )
            }
        }
    }
}

/// What the controller decided, in the report's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Promoted,
    RolledBack,
    /// Holding the canary for a person (Argo's inconclusive analysis, Flagger's gate).
    Paused,
}

impl From<Outcome> for Decision {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Promoted => Decision::Promoted,
            Outcome::RolledBack => Decision::RolledBack,
            Outcome::Paused => Decision::Paused,
        }
    }
}

impl FromStr for Decision {
    type Err = JudgeError;

    /// `promoted`, `rolled-back` or `paused`, as `ScenarioReport::outcome` spells them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "promoted" => Ok(Decision::Promoted),
            "rolled-back" => Ok(Decision::RolledBack),
            "paused" => Ok(Decision::Paused),
            other => Err(JudgeError::Outcome(other.to_string())),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Promoted => "promoted",
            Decision::RolledBack => "rolled-back",
            Decision::Paused => "paused",
        })
    }
}

/// The judge's finding on the controller's decision. Deserializable so that a scenario file can
/// state the one it expects (`expect.judge: justified`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Finding {
    /// Rolled back with a metric `worse`; or promoted with every metric `no-difference` or
    /// `better`.
    Justified,
    /// Rolled back although every metric is `no-difference` or `better`.
    FalseRollback,
    /// Promoted although a metric is `worse`.
    MissedRegression,
    /// The data cannot tell: no metric is `worse` but one lacks data; or the controller
    /// paused, or decided nothing.
    Inconclusive,
}

impl Finding {
    pub fn name(self) -> &'static str {
        match self {
            Finding::Justified => "justified",
            Finding::FalseRollback => "false-rollback",
            Finding::MissedRegression => "missed-regression",
            Finding::Inconclusive => "inconclusive",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Finding {
    type Err = JudgeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Finding::Justified,
            Finding::FalseRollback,
            Finding::MissedRegression,
            Finding::Inconclusive,
        ]
        .into_iter()
        .find(|f| f.name() == s)
        .ok_or_else(|| JudgeError::Finding(s.to_string()))
    }
}

/// The finding on `decision` from the metrics' classes (named, for the reason), and one line
/// saying why.
///
/// A metric that is `worse` decides alone: one regression is enough to justify a rollback and
/// to condemn a promotion. Calling a rollback false, or a promotion justified, needs every
/// metric settled (`no-difference` or `better`): a metric without enough data might hide the
/// regression the controller saw, so such a decision is `inconclusive`.
///
/// `paused` and no decision are always `inconclusive` (a pause hands the call to a person; with
/// no decision there is nothing to judge), but the reason says which call the data supports,
/// for the person who has to make it.
pub fn finding(decision: Option<Decision>, metrics: &[(&str, &Class)]) -> (Finding, String) {
    let worse: Vec<&str> = names(metrics, |c| matches!(c, Class::Worse));
    let unsettled: Vec<&str> = names(metrics, |c| {
        !c.settled_not_worse() && !matches!(c, Class::Worse)
    });
    let all_settled = !metrics.is_empty() && unsettled.is_empty() && worse.is_empty();
    let data_says = if !worse.is_empty() {
        format!("{} worse", worse.join(" and "))
    } else if all_settled {
        "no metric worse".to_string()
    } else if metrics.is_empty() {
        "no metric compared".to_string()
    } else {
        format!(
            "no metric worse, but {} without enough data",
            unsettled.join(" and ")
        )
    };
    match decision {
        Some(Decision::RolledBack) if !worse.is_empty() => {
            (Finding::Justified, format!("rolled back, and {data_says}"))
        }
        Some(Decision::RolledBack) if all_settled => (
            Finding::FalseRollback,
            format!("rolled back, but {data_says}"),
        ),
        Some(Decision::RolledBack) => (Finding::Inconclusive, format!("rolled back; {data_says}")),
        Some(Decision::Promoted) if !worse.is_empty() => (
            Finding::MissedRegression,
            format!("promoted, but {data_says}"),
        ),
        Some(Decision::Promoted) if all_settled => {
            (Finding::Justified, format!("promoted, and {data_says}"))
        }
        Some(Decision::Promoted) => (Finding::Inconclusive, format!("promoted; {data_says}")),
        Some(Decision::Paused) | None => {
            let what = match decision {
                Some(_) => "paused for a person",
                None => "no decision",
            };
            let hint = if !worse.is_empty() {
                ": the data supports a rollback"
            } else if all_settled {
                ": the data supports a promotion"
            } else {
                ""
            };
            (Finding::Inconclusive, format!("{what}; {data_says}{hint}"))
        }
    }
}

fn names<'a>(metrics: &[(&'a str, &Class)], keep: impl Fn(&Class) -> bool) -> Vec<&'a str> {
    metrics
        .iter()
        .filter(|(_, c)| keep(c))
        .map(|(n, _)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short() -> Class {
        Class::NotEnoughData(Shortfall::new(300, 60, Some(8.0), "to see 5 points".into()))
    }

    #[test]
    fn the_finding_table() {
        use Decision::*;
        use Finding::*;
        let (w, n, b, s) = (Class::Worse, Class::NoDifference, Class::Better, short());
        let cases: Vec<(Option<Decision>, Vec<&Class>, Finding)> = vec![
            (Some(RolledBack), vec![&w, &n], Justified),
            (Some(RolledBack), vec![&s, &w], Justified),
            (Some(RolledBack), vec![&n, &b], FalseRollback),
            (Some(RolledBack), vec![&n, &s], Inconclusive),
            (Some(Promoted), vec![&n, &b], Justified),
            (Some(Promoted), vec![&n, &w], MissedRegression),
            (Some(Promoted), vec![&s, &w], MissedRegression),
            (Some(Promoted), vec![&s, &n], Inconclusive),
            (Some(Promoted), vec![], Inconclusive),
            (Some(RolledBack), vec![], Inconclusive),
            (Some(Paused), vec![&w, &n], Inconclusive),
            (Some(Paused), vec![&n, &n], Inconclusive),
            (None, vec![&w], Inconclusive),
        ];
        for (decision, classes, want) in cases {
            let named: Vec<(&str, &Class)> = ["error rate", "latency"]
                .into_iter()
                .zip(classes.iter().copied())
                .collect();
            let (got, why) = finding(decision, &named);
            assert_eq!(got, want, "{decision:?} {classes:?}: {why}");
        }
        let (_, why) = finding(Some(Paused), &[("latency", &w)]);
        assert_eq!(
            why,
            "paused for a person; latency worse: the data supports a rollback"
        );
        let (_, why) = finding(Some(RolledBack), &[("error rate", &s), ("latency", &n)]);
        assert_eq!(
            why,
            "rolled back; no metric worse, but error rate without enough data"
        );
    }

    #[test]
    fn names_round_trip() {
        for f in [
            Finding::Justified,
            Finding::FalseRollback,
            Finding::MissedRegression,
            Finding::Inconclusive,
        ] {
            assert_eq!(f.to_string().parse::<Finding>().unwrap(), f);
            let json = serde_json::to_value(f).unwrap();
            assert_eq!(json, serde_json::json!(f.name()));
            assert_eq!(serde_json::from_value::<Finding>(json).unwrap(), f);
        }
        assert!("nope".parse::<Finding>().is_err());
        for d in [Decision::Promoted, Decision::RolledBack, Decision::Paused] {
            assert_eq!(d.to_string().parse::<Decision>().unwrap(), d);
            let outcome: Outcome =
                serde_json::from_value(serde_json::json!(d.to_string())).unwrap();
            assert_eq!(Decision::from(outcome), d);
        }
        assert!("aborted".parse::<Decision>().is_err());
        let json = serde_json::to_value(short()).unwrap();
        assert_eq!(json["class"], "not-enough-data");
        assert_eq!(json["canary_needed"], 300);
        assert_eq!(
            serde_json::to_value(Class::NoDifference).unwrap()["class"],
            "no-difference"
        );
        assert!(short().to_string() == "not-enough-data");
        let Class::NotEnoughData(s) = short() else {
            unreachable!()
        };
        assert_eq!(
            s.text(),
            "needs about 300 canary requests (had 60), about 38 s of exposure at the canary's rate, to see 5 points"
        );
    }
}
