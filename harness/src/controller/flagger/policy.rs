//! The Canary as the emulation runs it: the user's objects with Flagger's defaults and clamps
//! applied in the policy's own time, then every duration multiplied by `--time-scale`, and every
//! query rendered, its windows scaled. Built from the parsed spec by [`super::from_spec`]; tests
//! build it directly.

use std::collections::BTreeMap;
use std::time::Duration;

/// When a webhook is called, by its `type` (`pkg/controller/scheduler_hooks.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookType {
    ConfirmRollout,
    PreRollout,
    Rollout,
    ConfirmTrafficIncrease,
    ConfirmPromotion,
    PostRollout,
    Rollback,
    Event,
}

impl HookType {
    /// The CRD's spelling; `""` is `rollout`.
    pub fn parse(s: &str) -> Option<HookType> {
        Some(match s {
            "" | "rollout" => HookType::Rollout,
            "confirm-rollout" => HookType::ConfirmRollout,
            "pre-rollout" => HookType::PreRollout,
            "confirm-traffic-increase" => HookType::ConfirmTrafficIncrease,
            "confirm-promotion" => HookType::ConfirmPromotion,
            "post-rollout" => HookType::PostRollout,
            "rollback" => HookType::Rollback,
            "event" => HookType::Event,
            _ => return None,
        })
    }
}

/// Where a webhook's POST goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookTarget {
    /// The loadtester (`http://flagger-loadtester.<ns>/...`): the controller's own loadtester
    /// emulation on 127.0.0.1 answers, at this path (and query).
    Loadtester(String),
    /// Any other URL, as written.
    Url(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub name: String,
    pub kind: HookType,
    /// The URL as written in the Canary.
    pub url: String,
    pub target: HookTarget,
    /// Scaled by `--time-scale`.
    pub timeout: Duration,
    pub retries: u32,
    pub metadata: BTreeMap<String, String>,
}

/// What a check measures and how its value is judged and reported.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// The builtin `request-success-rate` (percent, 0–100).
    SuccessRate,
    /// The builtin `request-duration` (mean, in ms).
    RequestDuration,
    /// A deprecated inline `query`.
    Inline,
    /// A MetricTemplate (`name.namespace`).
    Template(String),
}

/// One query run at every analysis tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The metric's `name`.
    pub metric: String,
    pub kind: CheckKind,
    /// Rendered, windows scaled, whitespace runs collapsed: exactly what is sent.
    pub query: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The deprecated `threshold`, used only when neither `min` nor `max` came from a
    /// `thresholdRange`.
    pub threshold: Option<f64>,
    /// Whether a `thresholdRange` was given (then `threshold` is not used).
    pub has_range: bool,
}

impl Check {
    /// The lowest and highest values that pass, as [`super::checks::judge`] applies them: a
    /// `thresholdRange`, else the deprecated `threshold` (a floor for the success rate, a
    /// ceiling for everything else).
    pub fn bounds(&self) -> (Option<f64>, Option<f64>) {
        if self.has_range {
            return (self.min, self.max);
        }
        let t = self.threshold.unwrap_or(0.0);
        match self.kind {
            CheckKind::SuccessRate => (Some(t), None),
            _ => (None, Some(t)),
        }
    }

    /// The bounds in the words of the Canary: `min 99`, `max 500`, `min 1 max 5`.
    pub fn condition(&self) -> String {
        let (min, max) = self.bounds();
        let parts: Vec<String> = [("min", min), ("max", max)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k} {v}")))
            .collect();
        parts.join(" ")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlaggerPolicy {
    /// The Canary's name.
    pub name: String,
    pub namespace: String,
    /// `targetRef.name`: the Deployment, whose pods are the canary.
    pub target: String,
    /// The apex Service name.
    pub service: String,
    pub ingress: String,
    /// The Deployment's `spec.replicas`: the canary's when scaled up, and the primary's.
    pub replicas: u32,
    /// The Deployment's `maxUnavailable`, resolved against `replicas`.
    pub max_unavailable: u32,
    /// The primary's pod label: the selector label with `-primary` appended to its value.
    pub selector_label: Option<(String, String)>,
    /// The tick period: default 60 s, at least 10 s, then scaled.
    pub interval: Duration,
    pub threshold: u32,
    /// The weight at or after which promotion starts (`maxWeight()`).
    pub max_weight: u32,
    pub step_weight: u32,
    pub step_weights: Vec<u32>,
    pub step_weight_promotion: u32,
    pub primary_ready_threshold: u32,
    pub canary_ready_threshold: u32,
    /// The Canary's `progressDeadlineSeconds`, scaled.
    pub progress_deadline: Duration,
    /// The Deployment's own `progressDeadlineSeconds`, scaled.
    pub deployment_progress_deadline: Duration,
    pub skip_analysis: bool,
    pub suspend: bool,
    /// Builtin and inline checks, in metric order (`runBuiltinMetricChecks`).
    pub builtin_checks: Vec<Check>,
    /// MetricTemplate checks, in metric order (`runMetricChecks`).
    pub template_checks: Vec<Check>,
    pub webhooks: Vec<Webhook>,
}

impl FlaggerPolicy {
    /// A policy with Flagger's defaults (interval 60 s, threshold 1, maxWeight 100) and no
    /// metrics or webhooks, for tests and builders.
    pub fn new(name: &str, replicas: u32) -> FlaggerPolicy {
        FlaggerPolicy {
            name: name.into(),
            namespace: "default".into(),
            target: name.into(),
            service: name.into(),
            ingress: name.into(),
            replicas,
            max_unavailable: replicas / 4,
            selector_label: Some(("app".into(), name.into())),
            interval: Duration::from_secs(60),
            threshold: 1,
            max_weight: 100,
            step_weight: 10,
            step_weights: Vec::new(),
            step_weight_promotion: 0,
            primary_ready_threshold: 100,
            canary_ready_threshold: 100,
            progress_deadline: Duration::from_secs(600),
            deployment_progress_deadline: Duration::from_secs(600),
            skip_analysis: false,
            suspend: false,
            builtin_checks: Vec::new(),
            template_checks: Vec::new(),
            webhooks: Vec::new(),
        }
    }

    /// `nextStepWeight`: `stepWeight` when set (or without `stepWeights`); else the distance
    /// to the next step weight, capped at 100 - weight (1 at 100, to force promotion).
    pub fn next_step_weight(&self, weight: u32) -> u32 {
        if self.step_weight > 0 || self.step_weights.is_empty() {
            return self.step_weight;
        }
        let max_step = 100u32.saturating_sub(weight);
        if max_step == 0 {
            return 1;
        }
        if weight == 0 {
            return max_step.min(self.step_weights[0]);
        }
        for pair in self.step_weights.windows(2) {
            if pair[0] == weight {
                return max_step.min(pair[1].saturating_sub(weight));
            }
        }
        max_step
    }

    /// The canary weights of a run without failures, one per traffic increase.
    pub fn weight_sequence(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let mut w = 0u32;
        while w < self.max_weight {
            let next = self.next_step_weight(w);
            if next == 0 || out.len() > 200 {
                return out;
            }
            w = (w + next).min(100);
            out.push(w);
        }
        out
    }

    pub fn hooks(&self, kind: HookType) -> impl Iterator<Item = &Webhook> {
        self.webhooks.iter().filter(move |h| h.kind == kind)
    }

    pub fn has_hooks(&self, kind: HookType) -> bool {
        self.hooks(kind).next().is_some()
    }

    /// Whether any tick can count a failed check: metrics, rollout or pre-rollout hooks.
    fn can_fail_checks(&self) -> bool {
        !self.builtin_checks.is_empty()
            || !self.template_checks.is_empty()
            || self.has_hooks(HookType::Rollout)
            || self.has_hooks(HookType::PreRollout)
    }
}

/// The earliest moments after the release at which each outcome can possibly be reached:
/// (promoted, rolled back, paused). Lower bounds from the scheduler's timing:
/// the release is noticed at a tick right away, pods are ready at once, hooks and queries take
/// no time; `None` where the policy can never reach the outcome.
///
/// Ticks after the release: T1 (t = 0) scales the canary up; T2 (t = I) sets the first weight
/// without a check; each further weight takes one tick; the tick after the last weight starts
/// the promotion, which then needs one tick per promotion step (one with
/// `stepWeightPromotion: 0`) and one more to finish.
pub fn fastest(p: &FlaggerPolicy) -> (Option<Duration>, Option<Duration>, Option<Duration>) {
    if p.suspend {
        return (None, None, None);
    }
    let i = p.interval;
    let ticks = |n: u64| i.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
    // A canary that never becomes ready: rolled back at the first tick past the Canary's
    // deadline, counted from the scale-up at T1, when its Deployment's `Available` turns
    // False. The Deployment's own deadline never applies: Kubernetes does not estimate the
    // progress of a Deployment scaled up from zero (`syncRolloutStatus`). With maxUnavailable
    // at the replicas, `Available` never turns False, and the wait never ends.
    let by_deadline = if p.max_unavailable >= p.replicas.max(1) {
        None
    } else if i.is_zero() {
        Some(p.progress_deadline)
    } else {
        Some(ticks(
            (p.progress_deadline.as_nanos() / i.as_nanos()) as u64 + 1,
        ))
    };
    if p.skip_analysis {
        return (Some(ticks(1)), by_deadline, None);
    }
    let weights = p.weight_sequence();
    let promoted = match weights.last() {
        Some(last) if *last >= p.max_weight => {
            let n = weights.len() as u64;
            let shift = if p.step_weight_promotion == 0 {
                1
            } else {
                u64::from(last.div_ceil(p.step_weight_promotion))
            };
            Some(ticks(n + 2 + shift))
        }
        _ => None,
    };
    let earliest = |a: Option<Duration>, b: Duration| Some(a.map_or(b, |a| a.min(b)));
    let mut rolled_back = by_deadline;
    if p.has_hooks(HookType::Rollback) {
        // At T2, the first tick with the canary ready.
        rolled_back = earliest(rolled_back, ticks(1));
    }
    if p.can_fail_checks() {
        // Failures at consecutive ticks from the first checked one (T2 with pre-rollout
        // hooks, T3 otherwise); rollback at the tick after the threshold-th.
        let first = if p.has_hooks(HookType::PreRollout) {
            1
        } else {
            2
        };
        rolled_back = earliest(rolled_back, ticks(first + u64::from(p.threshold)));
    }
    let paused = match (&promoted, p.has_hooks(HookType::ConfirmPromotion)) {
        (Some(_), true) => Some(ticks(weights.len() as u64 + 1)),
        _ => None,
    };
    (promoted, rolled_back, paused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn weight_sequences_follow_next_step_weight() {
        let mut p = FlaggerPolicy::new("app", 2);
        p.step_weight = 30;
        p.max_weight = 50;
        assert_eq!(p.weight_sequence(), [30, 60]);
        p.step_weight = 10;
        assert_eq!(p.weight_sequence(), [10, 20, 30, 40, 50]);
        p.step_weight = 20;
        assert_eq!(p.weight_sequence(), [20, 40, 60], "overshoot, flagger#189");
        p.step_weight = 30;
        p.max_weight = 100;
        assert_eq!(p.weight_sequence(), [30, 60, 90, 100]);
        p.step_weight = 0;
        p.step_weights = vec![1, 2, 10, 80];
        p.max_weight = 80;
        assert_eq!(p.weight_sequence(), [1, 2, 10, 80]);
        // At the last step weight the distance to 100 is returned, forcing promotion.
        assert_eq!(p.next_step_weight(80), 20);
        assert_eq!(p.next_step_weight(100), 1);
        // A weight off the list (e.g. after a manual edit) jumps to 100.
        assert_eq!(p.next_step_weight(5), 95);
    }

    #[test]
    fn fastest_outcomes_follow_the_timing_formulas() {
        let mut p = FlaggerPolicy::new("app", 2);
        p.interval = secs(10);
        p.step_weights = vec![1, 2, 10, 80];
        p.step_weight = 0;
        p.max_weight = 80;
        p.threshold = 5;
        // n = 4: (n + 3) intervals.
        let (promoted, rolled_back, paused) = fastest(&p);
        assert_eq!(promoted, Some(secs(70)));
        // No check can fail: only the progress deadline (600 s) rolls back.
        assert_eq!(rolled_back, Some(secs(610)));
        // The Deployment's own deadline never applies to a canary scaled up from zero.
        p.deployment_progress_deadline = secs(60);
        assert_eq!(fastest(&p).1, Some(secs(610)));
        // Nor does the Canary's when every replica may be unavailable.
        p.max_unavailable = 2;
        assert_eq!(fastest(&p).1, None);
        p.max_unavailable = 0;
        assert_eq!(paused, None);
        p.builtin_checks.push(Check {
            metric: "request-success-rate".into(),
            kind: CheckKind::SuccessRate,
            query: "q".into(),
            min: Some(99.0),
            max: None,
            threshold: None,
            has_range: true,
        });
        // First check at T3 (20 s), five failures, rollback at T8.
        assert_eq!(fastest(&p).1, Some(secs(70)));
        p.webhooks.push(Webhook {
            name: "gate".into(),
            kind: HookType::ConfirmPromotion,
            url: "http://flagger-loadtester.test/gate/check".into(),
            target: HookTarget::Loadtester("/gate/check".into()),
            timeout: secs(10),
            retries: 0,
            metadata: BTreeMap::new(),
        });
        assert_eq!(fastest(&p).2, Some(secs(50)));
        p.step_weight_promotion = 30;
        // ceil(80 / 30) = 3 promotion ticks instead of 1.
        assert_eq!(fastest(&p).0, Some(secs(90)));
        p.skip_analysis = true;
        assert_eq!(fastest(&p).0, Some(secs(10)));
    }
}
