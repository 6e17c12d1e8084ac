//! The numbers of a starter suite, each from the policy and each with its reason.
//!
//! The rules, in the order a reader of the generated files meets them:
//! - `timeScale` ([`time_scale`]): the slowest decision the suite expects runs in about
//!   [`TARGET_DECISION`], but no duration of the policy shrinks below [`SHORTEST_SCALED`];
//!   a round factor.
//! - `load.rate` ([`load_rate`]): the canary gets [`CANARY_REQUESTS`] per second at its smallest
//!   weight, and the load is never below [`LEAST_RATE`].
//! - Faults cross the policy's own thresholds with a wide margin ([`ERROR_MARGIN`] times the
//!   allowed error share, [`LATENCY_MARGIN`] times the latency bound, a leak that stays above
//!   the memory bound for every failure the metric needs), so that a run is not a coin toss.
//! - `within` ([`budget`]): the policy's fastest decision for that outcome (the fault's own
//!   metric alone for a rollback), plus what the fault needs to show, plus slack: half again,
//!   at least [`LEAST_SLACK`], rounded up to 5 s.
//!
//! What the policy cannot catch becomes a gap: a sentence in the suite, not a scenario.

use std::time::Duration;

use super::facts::{MetricFacts, PolicyFacts, Sourced, Threshold};
use super::words::{bytes, pct, secs, time};
use crate::scenario::{Action, Fault, Outcome};

/// The slowest decision of the suite should take about this long at its time scale.
pub const TARGET_DECISION: Duration = Duration::from_secs(20);
/// No pause or interval of the policy runs shorter than this: Prometheus scrapes every second
/// and a rate() needs a few scrapes per window.
pub const SHORTEST_SCALED: Duration = Duration::from_millis(1500);
/// The round time scales init chooses from, largest first.
const ROUND_SCALES: [f64; 13] = [
    1.0, 0.5, 0.25, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.003, 0.002, 0.001,
];
/// Requests per second the canary should get at its smallest weight.
pub const CANARY_REQUESTS: f64 = 3.0;
pub const LEAST_RATE: f64 = 40.0;
/// More than this is more than a 2-core machine sends and serves next to a controller.
pub const MOST_RATE: f64 = 1000.0;
/// What a request takes through the local stack, for sizing connections.
const BASE_LATENCY: Duration = Duration::from_millis(25);
pub const ERROR_MARGIN: f64 = 3.0;
/// The error share of the 500s fault, at least.
pub const LEAST_ERROR_SHARE: f64 = 0.3;
pub const LATENCY_MARGIN: f64 = 3.0;
/// The load's request timeout is 10 s; a delay above this risks timeouts, which are errors.
pub const LONGEST_DELAY: Duration = Duration::from_secs(6);
/// A leak that would pass more than this before the metric fails is not written.
pub const MOST_LEAK_BYTES: u64 = 1 << 30;
pub const LEAST_SLACK: Duration = Duration::from_secs(30);
/// When a crash comes: at once, so the pods never become ready.
pub const CRASH_AFTER: Duration = Duration::from_millis(100);

/// One scenario to write.
#[derive(Debug, Clone)]
pub struct Planned {
    /// File stem and name suffix: `errors-rolled-back`.
    pub slug: &'static str,
    pub description: String,
    pub fault: Option<Sourced<Fault>>,
    pub connections: Sourced<u32>,
    /// Done at these times after the release (Flagger's loadtester gates).
    pub actions: Vec<Sourced<(Duration, Action)>>,
    pub outcome: Outcome,
    pub within: Sourced<Duration>,
    pub client_errors: Sourced<f64>,
    pub weights: Option<Sourced<Vec<u32>>>,
}

/// The suite: shared numbers, the scenarios, and what is not covered.
#[derive(Debug, Clone)]
pub struct SuitePlan {
    pub time_scale: Sourced<f64>,
    pub rate: Sourced<f64>,
    pub scenarios: Vec<Planned>,
    /// What the policy cannot catch, one sentence each.
    pub gaps: Vec<String>,
}

/// The time scale for a policy read at scale 1.
pub fn time_scale(at_one: &PolicyFacts) -> Sourced<f64> {
    let mut slowest: Option<(Duration, String)> = None;
    let mut consider = |d: Option<Duration>, what: String| {
        if let Some(d) = d
            && slowest.as_ref().is_none_or(|(s, _)| d > *s)
        {
            slowest = Some((d, what));
        }
    };
    match &at_one.waits_for_a_person {
        None => consider(at_one.fastest.promoted, "promotion".into()),
        Some(_) => consider(at_one.fastest.paused, "the wait for a person".into()),
    }
    if let Ok(d) = &at_one.deadline {
        consider(
            Some(d.value),
            "the rollback at the progress deadline".into(),
        );
    }
    let shortest = at_one.clock.iter().min_by_key(|c| c.value);
    let by_target = slowest
        .as_ref()
        .filter(|(d, _)| !d.is_zero())
        .map_or(1.0, |(d, _)| {
            TARGET_DECISION.as_secs_f64() / d.as_secs_f64()
        });
    let floor = shortest.filter(|c| !c.value.is_zero()).map_or(0.0, |c| {
        SHORTEST_SCALED.as_secs_f64() / c.value.as_secs_f64()
    });
    let wanted = by_target.max(floor).min(1.0);
    let factor = ROUND_SCALES
        .iter()
        .copied()
        .find(|f| *f <= wanted + 1e-12)
        .filter(|f| *f >= floor - 1e-12)
        .or_else(|| ROUND_SCALES.iter().rev().copied().find(|f| *f >= floor))
        .unwrap_or(1.0);
    let scaled = |d: Duration| d.mul_f64(factor);
    let mut why = format!("timeScale {factor}:");
    if let Some((d, what)) = &slowest {
        why.push_str(&format!(
            " the slowest decision this suite expects, {what} at {} at the policy's own clock, \
             takes {} here;",
            secs(*d),
            secs(scaled(*d))
        ));
    }
    if let Some(c) = shortest {
        why.push_str(&format!(
            " the policy's shortest duration, {} ({}), becomes {}, not below {} so that \
             Prometheus' 1 s scrapes still tell its windows apart.",
            c.why,
            secs(c.value),
            secs(scaled(c.value)),
            secs(SHORTEST_SCALED)
        ));
    }
    why.push_str(&format!(
        " Every time in this file is stated at this scale; on a cluster it stretches by \
         1/{factor}, slack included."
    ));
    Sourced::new(factor, why)
}

/// The suite for a policy read at its chosen time scale.
pub fn plan(f: &PolicyFacts, time_scale: Sourced<f64>) -> SuitePlan {
    let rate = load_rate(f);
    let mut gaps = Vec::new();
    let actions = gate_actions(f);
    let mut scenarios = Vec::new();
    let mut add = |p: Option<Planned>| scenarios.extend(p);
    add(healthy(f, rate.value, &actions, &mut gaps));
    add(errors(f, rate.value, &actions, &mut gaps));
    add(latency(f, rate.value, &actions, &mut gaps));
    add(memory_leak(f, rate.value, &actions, &mut gaps));
    add(crash(f, rate.value, &actions, &mut gaps));
    for m in &f.metrics {
        if let Err(why) = &m.reading {
            gaps.push(format!(
                "Metric {} ({}) is not used to size a fault: {why}. Write a scenario for it by \
                 hand if it guards something else.",
                m.name, m.source
            ));
        }
    }
    SuitePlan {
        time_scale,
        rate,
        scenarios,
        gaps,
    }
}

/// The load: enough for the canary's smallest share to see a few requests a second.
pub fn load_rate(f: &PolicyFacts) -> Sourced<f64> {
    let smallest = f
        .weights
        .iter()
        .min_by(|a, b| a.value.total_cmp(&b.value))
        .cloned()
        .unwrap_or_else(|| Sourced::new(1.0, "no weight step: all traffic"));
    let wanted = (CANARY_REQUESTS / smallest.value.max(1e-6)).max(LEAST_RATE);
    let step = if wanted < 100.0 {
        10.0
    } else if wanted < 1000.0 {
        50.0
    } else {
        100.0
    };
    let rate = ((wanted / step).ceil() * step).min(MOST_RATE);
    let canary = rate * smallest.value;
    let mut why = format!(
        "{}/s: at the smallest canary weight, {} ({}), the canary gets {:.0} requests/s",
        rate,
        pct(smallest.value),
        smallest.why,
        canary
    );
    if canary + 1e-9 >= CANARY_REQUESTS {
        why.push_str(&format!(
            ", at least {CANARY_REQUESTS:.0}, so that its first checks find its new series \
             within a scrape or two; never below {LEAST_RATE:.0}/s, so every window holds \
             dozens of requests."
        ));
    } else {
        why.push_str(&format!(
            ", fewer than the {CANARY_REQUESTS:.0} that make its first checks reliable: {MOST_RATE:.0}/s \
             is as much as a 2-core machine sends next to the stack. Expect the first checks \
             at that weight to find few or no values."
        ));
    }
    Sourced::new(rate, why)
}

/// Goose users: twice what the load keeps in flight, the canary's part slowed by `delay`.
fn connections(rate: f64, canary_share: f64, delay: Duration) -> Sourced<u32> {
    let in_flight = rate * BASE_LATENCY.as_secs_f64() + rate * canary_share * delay.as_secs_f64();
    let n = ((2.0 * in_flight / 4.0).ceil() * 4.0).clamp(8.0, 1000.0) as u32;
    let why = if delay.is_zero() {
        format!(
            "{n} connections: twice the requests in flight at {rate}/s and about {} each, at \
             least 8.",
            time(BASE_LATENCY)
        )
    } else {
        format!(
            "{n} connections: twice the requests in flight while the canary serves {} of \
             {rate}/s {} slower, so the load keeps its rate at the first weight (at higher ones \
             it may fall short, which slows nothing but the load).",
            pct(canary_share),
            time(delay)
        )
    };
    Sourced::new(n, why)
}

/// `within`: the policy's part, what the fault needs, and slack.
pub fn budget(
    policy_part: Duration,
    policy_why: &str,
    extra: Option<(Duration, String)>,
) -> Sourced<Duration> {
    let base = policy_part + extra.as_ref().map_or(Duration::ZERO, |(d, _)| *d);
    let slack = (base / 2).max(LEAST_SLACK);
    let within = Duration::from_secs(((base + slack).as_secs_f64() / 5.0).ceil() as u64 * 5);
    let mut why = format!("The policy's fastest: {} ({policy_why})", secs(policy_part));
    if let Some((d, what)) = &extra {
        why.push_str(&format!(", plus {} {what}", secs(*d)));
    }
    why.push_str(&format!(
        "; then {} of slack (half again, at least {}) for pod starts, scrapes, nginx reloads \
         and a loaded 2-core machine, rounded up to 5 s.",
        secs(slack),
        secs(LEAST_SLACK)
    ));
    Sourced::new(within, why)
}

fn gate_actions(f: &PolicyFacts) -> Vec<Sourced<(Duration, Action)>> {
    if f.loadtester_gates.is_empty() {
        return Vec::new();
    }
    vec![Sourced::new(
        (Duration::ZERO, Action::OpenGate),
        format!(
            "The Canary waits at its loadtester gate ({}) until someone opens it: opened at the \
             release, as an approving person would. Remove this to check that it waits.",
            f.loadtester_gates.join(", ")
        ),
    )]
}

/// A share rounded up to a whole percent, at most 100 %: what a scenario file writes, exactly
/// (0.3 stays 0.3, although 0.3 × 100 is a hair above 30 in floating point).
fn whole_percent_up(share: f64) -> f64 {
    ((share.min(1.0) * 100.0 - 1e-9).ceil() / 100.0).max(0.0)
}

fn smallest_share(f: &PolicyFacts) -> f64 {
    f.weights.iter().map(|w| w.value).fold(1.0, f64::min)
}

fn largest_share(f: &PolicyFacts) -> Sourced<f64> {
    f.weights
        .iter()
        .max_by(|a, b| a.value.total_cmp(&b.value))
        .cloned()
        .unwrap_or_else(|| Sourced::new(1.0, "no weight step"))
}

fn healthy(
    f: &PolicyFacts,
    rate: f64,
    actions: &[Sourced<(Duration, Action)>],
    gaps: &mut Vec<String>,
) -> Option<Planned> {
    let walk: Vec<String> = f
        .weight_walk
        .clone()
        .unwrap_or_else(|| {
            f.weights
                .iter()
                .map(|w| (w.value * 100.0).round() as u32)
                .collect()
        })
        .iter()
        .map(|w| format!("{w} %"))
        .collect();
    if let Some(why) = f.metrics.iter().find_map(|m| m.stops_healthy.as_ref()) {
        gaps.push(format!(
            "A healthy release is not promoted by this policy: {why}. No healthy scenario is \
             written until it is."
        ));
        return None;
    }
    let (slug, outcome, at, what, description) = match &f.waits_for_a_person {
        None => match f.fastest.promoted {
            Some(d) => (
                "healthy-promoted",
                Outcome::Promoted,
                d,
                "every pause and analysis of a healthy release",
                if walk.is_empty() {
                    "a release without faults is promoted".to_string()
                } else {
                    format!(
                        "a release without faults walks {} and is promoted",
                        walk.join(" → ")
                    )
                },
            ),
            None => {
                gaps.push(format!(
                    "A healthy release can never be promoted by this {} alone: an analysis \
                     step never completes. No healthy scenario is written.",
                    f.controller.kind()
                ));
                return None;
            }
        },
        Some(why) => match f.fastest.paused {
            Some(d) => (
                "healthy-paused",
                Outcome::Paused,
                d,
                "the steps before the wait",
                format!("a release without faults reaches the wait for a person ({why})"),
            ),
            None => {
                gaps.push(format!(
                    "A healthy release is neither promoted nor shown waiting: {why}. No healthy \
                     scenario is written."
                ));
                return None;
            }
        },
    };
    let weights = match (&f.weight_walk, outcome) {
        (Some(w), Outcome::Promoted) if !w.is_empty() => Some(Sourced::new(
            w.clone(),
            "The weights a healthy release walks through, from the Canary's steps.",
        )),
        _ => None,
    };
    Some(Planned {
        slug,
        description,
        fault: None,
        connections: connections(rate, 0.0, Duration::ZERO),
        actions: actions.to_vec(),
        outcome,
        within: budget(at, what, None),
        client_errors: Sourced::new(
            0.01,
            "A healthy release fails nothing; 1 % allows for a request cut by a pod replaced \
             during the promotion.",
        ),
        weights,
    })
}

/// The metrics of one class that can roll the release back, or why there are none.
fn deciding<'a>(
    f: &'a PolicyFacts,
    class: fn(&Threshold) -> bool,
    what: &str,
) -> Result<Vec<(&'a MetricFacts, Threshold)>, String> {
    if let Some(off) = &f.metrics_off {
        return Err(format!("{off}, so no {what} can stop the release"));
    }
    let of_class: Vec<(&MetricFacts, Threshold)> = f
        .metrics
        .iter()
        .filter_map(|m| {
            m.reading
                .as_ref()
                .ok()
                .filter(|t| class(t))
                .map(|t| (m, *t))
        })
        .collect();
    if of_class.is_empty() {
        return Err(format!(
            "no metric of the {} {} measures {what}",
            f.controller.kind(),
            f.name
        ));
    }
    let deciding: Vec<(&MetricFacts, Threshold)> = of_class
        .iter()
        .filter(|(m, _)| m.fastest_failure.is_some())
        .cloned()
        .collect();
    if deciding.is_empty() {
        let names: Vec<&str> = of_class.iter().map(|(m, _)| m.name.as_str()).collect();
        return Err(format!(
            "{} can never fail the rollout (it runs only after a wait that never ends, or \
             never counts a failure)",
            names.join(", ")
        ));
    }
    Ok(deciding)
}

fn fastest_of(ms: &[(&MetricFacts, Threshold)]) -> (Duration, String) {
    ms.iter()
        .filter_map(|(m, _)| m.fastest_failure.map(|d| (d, m)))
        .min_by_key(|(d, _)| *d)
        .map(|(d, m)| {
            (
                d,
                format!(
                    "metric {} failing {} time(s), {} apart, as early as the policy lets it",
                    m.name,
                    m.failures_needed,
                    secs(m.interval)
                ),
            )
        })
        .unwrap_or_default()
}

fn errors(
    f: &PolicyFacts,
    rate: f64,
    actions: &[Sourced<(Duration, Action)>],
    gaps: &mut Vec<String>,
) -> Option<Planned> {
    let found = match deciding(
        f,
        |t| matches!(t, Threshold::ErrorShare(_)),
        "the share of 5xx answers",
    ) {
        Ok(m) => m,
        Err(why) => {
            gaps.push(format!(
                "A release answering with errors is not caught: {why}."
            ));
            return None;
        }
    };
    // The canary's own share is what a fault sets; a query over all traffic sees it diluted by
    // the canary's weight, so such metrics are relied on only when there is nothing better.
    let on_canary: Vec<_> = found
        .iter()
        .filter(|(m, _)| m.canary_only)
        .cloned()
        .collect();
    let (used, dilution) = if on_canary.is_empty() {
        (found, smallest_share(f))
    } else {
        (on_canary, 1.0)
    };
    let (metric, allowed) = used
        .iter()
        .filter_map(|(m, t)| match t {
            Threshold::ErrorShare(a) => Some((*m, *a)),
            _ => None,
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    if 2.0 * allowed / dilution > 1.0 {
        gaps.push(format!(
            "A release answering with errors is not sized: metric {} allows {} errors over all \
             traffic, and the canary's {} share cannot show twice that.",
            metric.name,
            pct(allowed),
            pct(dilution)
        ));
        return None;
    }
    let share = whole_percent_up((ERROR_MARGIN * allowed / dilution).max(LEAST_ERROR_SHARE));
    let mut fault_why = format!(
        "{} of requests fail: metric {} ({}) fails above {} errors",
        pct(share),
        metric.name,
        metric.source,
        pct(allowed)
    );
    if dilution < 1.0 {
        fault_why.push_str(&format!(
            " over all traffic, of which the canary serves {} at first; the fault is {ERROR_MARGIN} \
             times what that needs",
            pct(dilution)
        ));
    } else {
        fault_why.push_str(&format!(
            "; {ERROR_MARGIN} times that, at least {}, so noise cannot hide it",
            pct(LEAST_ERROR_SHARE)
        ));
    }
    fault_why.push('.');
    let (d, why) = fastest_of(&used);
    let largest = largest_share(f);
    let client = whole_percent_up(largest.value * share * 1.25 + 0.02);
    Some(Planned {
        slug: "errors-rolled-back",
        description: format!(
            "a release answering {} of requests with 500 is rolled back by metric {}",
            pct(share),
            metric.name
        ),
        fault: Some(Sourced::new(
            Fault::Errors {
                rate: share,
                status: 500,
            },
            fault_why,
        )),
        connections: connections(rate, 0.0, Duration::ZERO),
        actions: actions.to_vec(),
        outcome: Outcome::RolledBack,
        within: budget(d, &why, None),
        client_errors: Sourced::new(
            client,
            format!(
                "Users see the canary's errors only while it serves: at most its largest weight \
                 before promotion, {} ({}), times {}, with a quarter more and 2 points for noise. \
                 A tighter bound states how soon you need the rollback.",
                pct(largest.value),
                largest.why,
                pct(share)
            ),
        ),
        weights: None,
    })
}

fn latency(
    f: &PolicyFacts,
    rate: f64,
    actions: &[Sourced<(Duration, Action)>],
    gaps: &mut Vec<String>,
) -> Option<Planned> {
    let found = match deciding(f, |t| matches!(t, Threshold::Latency(_)), "response time") {
        Ok(m) => m,
        Err(why) => {
            gaps.push(format!("A slow release is not caught: {why}."));
            return None;
        }
    };
    let on_canary: Vec<_> = found
        .iter()
        .filter(|(m, _)| m.canary_only)
        .cloned()
        .collect();
    if on_canary.is_empty() {
        gaps.push(format!(
            "A slow release is not sized: the latency metric(s) {} look at all traffic, not the \
             canary's alone, and how a quantile or mean dilutes cannot be told from the query.",
            found
                .iter()
                .map(|(m, _)| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return None;
    }
    let (metric, bound) = on_canary
        .iter()
        .filter_map(|(m, t)| match t {
            Threshold::Latency(d) => Some((*m, *d)),
            _ => None,
        })
        .max_by_key(|(_, d)| *d)?;
    let wanted = bound.mul_f64(LATENCY_MARGIN);
    let delay = if wanted <= LONGEST_DELAY {
        Duration::from_millis(wanted.as_millis().div_ceil(100) as u64 * 100)
    } else if bound.mul_f64(1.5) <= LONGEST_DELAY {
        LONGEST_DELAY
    } else {
        gaps.push(format!(
            "A slow release is not sized: metric {} allows {}, and a delay well above it would \
             pass the load's 10 s request timeout.",
            metric.name,
            time(bound)
        ));
        return None;
    };
    let (d, why) = fastest_of(&on_canary);
    Some(Planned {
        slug: "latency-rolled-back",
        description: format!(
            "a release adding {} to every request is rolled back by metric {}",
            time(delay),
            metric.name
        ),
        fault: Some(Sourced::new(
            Fault::Latency {
                delay,
                jitter: Duration::ZERO,
            },
            format!(
                "Every request of the release takes {} longer: metric {} ({}) fails above {}, \
                 and a fixed delay moves the mean and every quantile alike; {}.",
                time(delay),
                metric.name,
                metric.source,
                time(bound),
                if delay == LONGEST_DELAY {
                    format!(
                        "kept at {} for the load's 10 s request timeout",
                        time(LONGEST_DELAY)
                    )
                } else {
                    format!("{LATENCY_MARGIN} times the bound, so noise cannot hide it")
                }
            ),
        )),
        connections: connections(rate, smallest_share(f), delay),
        actions: actions.to_vec(),
        outcome: Outcome::RolledBack,
        within: budget(d, &why, None),
        client_errors: Sourced::new(0.01, "Slow is not failed: no request should fail."),
        weights: None,
    })
}

fn memory_leak(
    f: &PolicyFacts,
    rate: f64,
    actions: &[Sourced<(Duration, Action)>],
    gaps: &mut Vec<String>,
) -> Option<Planned> {
    let found = match deciding(f, |t| matches!(t, Threshold::Memory(_)), "memory") {
        Ok(m) => m,
        Err(why) => {
            gaps.push(format!(
                "A memory leak is not caught by a memory metric: {why}."
            ));
            return None;
        }
    };
    let limit = f.memory_limit.as_ref();
    let below_limit: Vec<_> = found
        .iter()
        .filter(|(_, t)| match (t, limit) {
            (Threshold::Memory(b), Some(l)) => *b < l.value,
            (Threshold::Memory(_), None) => true,
            _ => false,
        })
        .cloned()
        .collect();
    let Some((metric, bound)) = below_limit
        .iter()
        .filter_map(|(m, t)| match t {
            Threshold::Memory(b) => Some((*m, *b)),
            _ => None,
        })
        .max_by_key(|(_, b)| *b)
    else {
        gaps.push(format!(
            "A memory leak is not caught by a memory metric: {} fails only at or above {}, \
             which kills the pod first.",
            found
                .iter()
                .map(|(m, _)| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            limit.map_or("the limit".into(), |l| format!(
                "{} ({})",
                bytes(l.value),
                l.why
            ))
        ));
        return None;
    };
    let restarts = f
        .metrics
        .iter()
        .find(|m| matches!(m.reading, Ok(Threshold::Restarts)) && m.fastest_failure.is_some());
    let leak = match leak(f, metric, bound, restarts) {
        Ok(l) => l,
        Err(why) => {
            gaps.push(format!("A memory leak is not sized: {why}."));
            return None;
        }
    };
    let (d, why) = fastest_of(&below_limit);
    let (policy_part, policy_why) = match (&leak.caught_by, restarts) {
        (Catch::Restarts, Some(r)) => (
            r.fastest_failure.unwrap_or_default(),
            format!(
                "metric {} failing {} time(s), {} apart, as early as the policy lets it",
                r.name,
                r.failures_needed,
                secs(r.interval)
            ),
        ),
        _ => (d, why),
    };
    Some(Planned {
        slug: "memory-leak-rolled-back",
        description: format!(
            "a release leaking {}/s is rolled back by metric {}",
            bytes(leak.bytes_per_sec),
            match (&leak.caught_by, restarts) {
                (Catch::Restarts, Some(r)) => format!("{} or {}", metric.name, r.name),
                _ => metric.name.clone(),
            }
        ),
        fault: Some(Sourced::new(
            Fault::MemoryLeak {
                bytes_per_sec: leak.bytes_per_sec,
            },
            format!(
                "The release keeps {}/s. Metric {} ({}) fails above {}; {}",
                bytes(leak.bytes_per_sec),
                metric.name,
                metric.source,
                bytes(bound),
                leak.why
            ),
        )),
        connections: connections(rate, 0.0, Duration::ZERO),
        actions: actions.to_vec(),
        outcome: Outcome::RolledBack,
        within: budget(
            policy_part,
            &policy_why,
            Some((leak.shows_after, leak.shows_why)),
        ),
        client_errors: Sourced::new(
            0.05,
            "Should the kernel kill a canary pod, the requests in flight on it fail, and a few \
             more until the router drops it.",
        ),
        weights: None,
    })
}

/// How a leak is caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Catch {
    /// The memory metric sees it pass its bound, every failure it needs before the limit.
    Memory,
    /// The limit kills the pod, and the restarts metric fails it once it is back.
    Restarts,
}

/// A leak rate, how it is caught, and how long after the pod starts that can begin.
struct Leak {
    bytes_per_sec: u64,
    caught_by: Catch,
    why: String,
    shows_after: Duration,
    shows_why: String,
}

/// Seconds a new canary pod takes to start and be measured, for the leak's head start.
const POD_START: Duration = Duration::from_secs(2);
/// A leak killed by the limit reaches it this soon: during the first step, so that the restart
/// (and the canary's unavailability, which holds the steps) comes long before promotion.
const TIME_TO_LIMIT: Duration = Duration::from_secs(4);

/// The leak rate. Preferred: slow enough that the memory metric counts every failure it needs
/// between its bound and the limit, yet past the bound well before the policy could promote.
/// When a limit close above the bound makes both impossible, the leak is fast instead, the
/// limit kills the pod, and a restarts metric must catch that.
fn leak(
    f: &PolicyFacts,
    metric: &MetricFacts,
    bound: u64,
    restarts: Option<&MetricFacts>,
) -> Result<Leak, String> {
    let round = |per_sec: f64| ((per_sec / 65536.0).floor() as u64).max(1) * 65536;
    // The failures, one interval more, and 2 s for the exporter and the scrape.
    let window = metric.interval * (metric.failures_needed + 1) + Duration::from_secs(2);
    // Half the fastest promotion for the leak to show, less the pod's start and the window.
    let horizon = f.fastest.promoted.map(|p| {
        (p / 2)
            .saturating_sub(POD_START)
            .saturating_sub(metric.interval * metric.failures_needed)
    });
    let Some(limit) = &f.memory_limit else {
        if bound > MOST_LEAK_BYTES {
            return Err(format!(
                "metric {} fails above {}, more than init lets a test allocate",
                metric.name,
                bytes(bound)
            ));
        }
        let cross = horizon.map_or(Duration::from_secs(10), |h| h.min(Duration::from_secs(10)));
        if cross < Duration::from_secs(1) {
            return Err(format!(
                "the policy can promote {} after the release, too soon for a leak to pass {} \
                 and fail metric {} {} time(s)",
                secs(f.fastest.promoted.unwrap_or_default()),
                bytes(bound),
                metric.name,
                metric.failures_needed
            ));
        }
        let bytes_per_sec = round(bound as f64 / cross.as_secs_f64()).max(65536);
        let shows_after = Duration::from_secs_f64(bound as f64 / bytes_per_sec as f64);
        return Ok(Leak {
            bytes_per_sec,
            caught_by: Catch::Memory,
            why: format!(
                "the leak passes that after at most {} (well before the policy could promote), \
                 and without a memory limit nothing kills the pod before the metric sees it.",
                secs(shows_after)
            ),
            shows_after,
            shows_why: format!("for the leak to pass {}", bytes(bound)),
        });
    };
    let slow = round((limit.value - bound) as f64 / window.as_secs_f64());
    let slow_cross = Duration::from_secs_f64(bound as f64 / slow as f64);
    if horizon.is_none_or(|h| slow_cross <= h) {
        return Ok(Leak {
            bytes_per_sec: slow,
            caught_by: Catch::Memory,
            why: format!(
                "the leak passes that after at most {} and then stays below the {} limit ({}) \
                 for {}: the {} failure(s) the metric needs, {} apart, one interval more and 2 s \
                 for the scrape.",
                secs(slow_cross),
                bytes(limit.value),
                limit.why,
                secs(window),
                metric.failures_needed,
                secs(metric.interval)
            ),
            shows_after: slow_cross,
            shows_why: format!("for the leak to pass {}", bytes(bound)),
        });
    }
    let Some(r) = restarts else {
        return Err(format!(
            "a leak slow enough for metric {} to count {} failure(s) between {} and the {} limit \
             ({}) passes {} only after the policy could promote; a restarts metric would catch \
             the kill of a faster one",
            metric.name,
            metric.failures_needed,
            bytes(bound),
            bytes(limit.value),
            limit.why,
            bytes(bound)
        ));
    };
    let fast = round(limit.value as f64 / TIME_TO_LIMIT.as_secs_f64());
    let to_limit = Duration::from_secs_f64(limit.value as f64 / fast as f64);
    let backoff = crate::cluster::local::pods::Backoff::default().initial;
    Ok(Leak {
        bytes_per_sec: fast,
        caught_by: Catch::Restarts,
        why: format!(
            "a leak slow enough for it to count {} failure(s) before the {} limit ({}) would pass \
             it only after the policy could promote. So the leak is fast: it reaches the limit \
             about {} after the pod starts; the memory metric may see it first, and if not, the \
             kernel's kill is a restart, which metric {} fails once the kubelet restarts the pod \
             after its {} back-off (not time-scaled). Until then the canary is unavailable, which \
             holds the steps.",
            metric.failures_needed,
            bytes(limit.value),
            limit.why,
            secs(to_limit),
            r.name,
            secs(backoff)
        ),
        shows_after: to_limit + backoff,
        shows_why: format!(
            "for the leak to reach the limit ({}) and the kubelet's {} back-off",
            secs(to_limit),
            secs(backoff)
        ),
    })
}

fn crash(
    f: &PolicyFacts,
    rate: f64,
    actions: &[Sourced<(Duration, Action)>],
    gaps: &mut Vec<String>,
) -> Option<Planned> {
    let deadline = match &f.deadline {
        Ok(d) => d,
        Err(why) => {
            gaps.push(format!(
                "A release that crashes at start is not caught: {why}."
            ));
            return None;
        }
    };
    Some(Planned {
        slug: "crash-rolled-back",
        description: "a release that crashes at start never becomes available and is rolled \
                      back at the progress deadline"
            .into(),
        fault: Some(Sourced::new(
            Fault::Crash { after: CRASH_AFTER },
            format!(
                "The release exits {} after it starts, before its first readiness probe: its \
                 pods never become available, which only the progress deadline catches.",
                time(CRASH_AFTER)
            ),
        )),
        connections: connections(rate, 0.0, Duration::ZERO),
        actions: actions.to_vec(),
        outcome: Outcome::RolledBack,
        within: budget(deadline.value, &deadline.why, None),
        client_errors: Sourced::new(
            0.01,
            "The canary never receives traffic: the split keeps it at 0 until its pods are \
             available.",
        ),
        weights: None,
    })
}
