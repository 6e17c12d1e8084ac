//! The noise model of the synthetic traffic: what the load and the sample app would have done
//! in one second, drawn from a generator keyed by (seed, rollout, second).
//!
//! - Requests: offered at the scenario's rate, Poisson per second (an open-loop load: slow
//!   answers do not lower the rate, unlike the load generator's fixed connections).
//! - The split: each request goes to the canary with the ingress' canary weight, when the
//!   canary has a ready pod; otherwise to the stable side.
//! - Errors: each request to a faulty revision fails with the revision's error share
//!   (Binomial), with its status (500 unless `FAULT_ERROR_STATUS` says otherwise).
//! - Latency: the app's own time is log-normal (median and spread measured on the local
//!   stack, see docs/power.md) plus the revision's added delay; nginx adds a small constant on
//!   top for the upstream and request times.
//!
//! Keying the generator by second makes a second's draws independent of what happened before:
//! the same weight at the same second gives the same requests, whatever the earlier rounds did.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The faults a revision's pod template asks the sample app for (its `FAULT_*` variables).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Share of requests answered with `error_status`.
    pub error_share: f64,
    pub error_status: u16,
    /// Added to every answer.
    pub delay: Duration,
    /// A further delay, uniform in [0, jitter).
    pub jitter: Duration,
}

impl Faults {
    /// Reads the sample app's variables from a pod template's environment; values the app
    /// would refuse count as no fault (the target's validation refuses them before).
    pub fn from_env(env: &[(String, String)]) -> Faults {
        let get = |k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim())
        };
        Faults {
            error_share: get("FAULT_ERROR_RATE").and_then(share).unwrap_or(0.0),
            error_status: get("FAULT_ERROR_STATUS")
                .and_then(|s| s.parse().ok())
                .filter(|s| (200..=599).contains(s))
                .unwrap_or(500),
            delay: get("FAULT_LATENCY")
                .and_then(|d| humantime::parse_duration(d).ok())
                .unwrap_or_default(),
            jitter: get("FAULT_LATENCY_JITTER")
                .and_then(|d| humantime::parse_duration(d).ok())
                .unwrap_or_default(),
        }
    }
}

fn share(s: &str) -> Option<f64> {
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
        None => s.parse::<f64>().ok()?,
    };
    (v.is_finite() && (0.0..=1.0).contains(&v)).then_some(v)
}

/// The sample app's answer times without faults, and what nginx adds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyModel {
    /// Median of the app's own time, seconds.
    pub median_s: f64,
    /// Log-normal spread (σ of the log).
    pub sigma: f64,
    /// nginx's upstream time minus the app's own.
    pub upstream_overhead_s: f64,
    /// nginx's request time minus its upstream time.
    pub request_overhead_s: f64,
}

impl Default for LatencyModel {
    /// Fitted to the local stack (docs/power.md): through nginx the load generator saw the
    /// sample app answer `/` in 1.4 ms (median), 2.2 ms (p95), 5 ms (p99); the app's own share
    /// is the median less nginx's, the spread between the p95's and the p99's.
    fn default() -> Self {
        LatencyModel {
            median_s: 0.000_8,
            sigma: 0.45,
            upstream_overhead_s: 0.0004,
            request_overhead_s: 0.0002,
        }
    }
}

/// One request as the app and nginx would record it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    pub status: u16,
    /// The app's own time (its histogram).
    pub app_s: f64,
    /// nginx's `upstream_response_time`.
    pub upstream_s: f64,
    /// nginx's `request_time`.
    pub request_s: f64,
}

impl LatencyModel {
    /// A request served by a revision with `faults`.
    pub fn request(&self, rng: &mut StdRng, faults: &Faults) -> Request {
        let failed = faults.error_share > 0.0 && rng.random::<f64>() < faults.error_share;
        let mut app = self.median_s * (self.sigma * standard_normal(rng)).exp();
        app += faults.delay.as_secs_f64();
        if !faults.jitter.is_zero() {
            app += rng.random::<f64>() * faults.jitter.as_secs_f64();
        }
        let upstream = app + self.upstream_overhead_s;
        Request {
            status: if failed { faults.error_status } else { 200 },
            app_s: app,
            upstream_s: upstream,
            request_s: upstream + self.request_overhead_s,
        }
    }
}

/// The generator of one rollout's second: independent of every other (rollout, second).
pub fn rng_for(seed: u64, rollout: u64, second: u64) -> StdRng {
    StdRng::seed_from_u64(mix(mix(mix(seed) ^ rollout) ^ second))
}

/// splitmix64's finalizer: spreads nearby keys over the whole seed space.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A standard normal draw (Box–Muller).
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Poisson draw with mean `lambda`: Knuth's product of uniforms for small means, and for
/// large ones the sum of Poisson draws of at most 30 each (Poisson is additive), so the
/// result is exact at any rate this tool accepts.
pub fn poisson(rng: &mut StdRng, lambda: f64) -> u64 {
    if !(lambda.is_finite() && lambda > 0.0) {
        return 0;
    }
    let mut left = lambda;
    let mut total = 0;
    while left > 0.0 {
        let part = left.min(30.0);
        left -= part;
        let limit = (-part).exp();
        let mut product = rng.random::<f64>();
        while product > limit {
            total += 1;
            product *= rng.random::<f64>();
        }
    }
    total
}

/// A Binomial draw: `n` Bernoulli trials of probability `p`.
pub fn binomial(rng: &mut StdRng, n: u64, p: f64) -> u64 {
    if p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    (0..n).filter(|_| rng.random::<f64>() < p).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_come_from_the_sample_apps_variables() {
        let env = vec![
            ("APP_VERSION".to_string(), "2".to_string()),
            ("FAULT_ERROR_RATE".to_string(), "30%".to_string()),
            ("FAULT_LATENCY".to_string(), "200ms".to_string()),
        ];
        let f = Faults::from_env(&env);
        assert_eq!(f.error_share, 0.3);
        assert_eq!(f.error_status, 500);
        assert_eq!(f.delay, Duration::from_millis(200));
        assert_eq!(
            Faults::from_env(&[]),
            Faults {
                error_status: 500,
                ..Faults::default()
            }
        );
    }

    #[test]
    fn draws_are_keyed_by_rollout_and_second() {
        let a: f64 = rng_for(1, 2, 3).random();
        let b: f64 = rng_for(1, 2, 3).random();
        let c: f64 = rng_for(1, 2, 4).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn poisson_and_binomial_have_their_means() {
        let mut rng = rng_for(7, 0, 0);
        let n = 4000;
        for lambda in [0.5, 8.0, 40.0, 300.0] {
            let mean = (0..n).map(|_| poisson(&mut rng, lambda)).sum::<u64>() as f64 / n as f64;
            // 5 standard errors of the mean.
            assert!(
                (mean - lambda).abs() < 5.0 * (lambda / n as f64).sqrt(),
                "λ {lambda}: mean {mean}"
            );
        }
        let hits: u64 = (0..n).map(|_| binomial(&mut rng, 10, 0.3)).sum();
        let mean = hits as f64 / n as f64;
        assert!((mean - 3.0).abs() < 0.15, "{mean}");
        assert_eq!(binomial(&mut rng, 10, 0.0), 0);
        assert_eq!(binomial(&mut rng, 10, 1.0), 10);
    }

    #[test]
    fn a_delay_moves_every_answer() {
        let m = LatencyModel::default();
        let mut rng = rng_for(1, 1, 1);
        let slow = Faults {
            delay: Duration::from_millis(500),
            ..Faults::default()
        };
        for _ in 0..100 {
            let r = m.request(&mut rng, &slow);
            assert!(r.app_s >= 0.5 && r.upstream_s > r.app_s && r.request_s > r.upstream_s);
            assert_eq!(r.status, 200);
        }
    }
}
