//! Error rates: Fisher's exact test, the Newcombe interval of the difference, and how many
//! requests a comparison needs.
//!
//! Fisher's exact test because the counts are small exactly where it matters: a canary at 20 %
//! of 40 requests/s for eight seconds gets ~65 requests, and a healthy stable has no error at
//! all, which is where the usual normal-approximation tests are least trustworthy.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Discrete, Hypergeometric, Normal};

use super::settings::Settings;
use super::verdict::{Class, Shortfall};

/// Supports larger than this (both sides with hundreds of thousands of errors) use the pooled
/// z-test, which is then indistinguishable from the exact test and far cheaper.
const EXACT_SUPPORT_MAX: u64 = 200_000;

/// Two-sided p-value of Fisher's exact test for `x1` of `n1` against `x2` of `n2`: the
/// probability, with all margins fixed, of a table no more likely than the one observed
/// (the usual definition, as R's `fisher.test` and SciPy's `fisher_exact`; a relative
/// tolerance of 1e-7 keeps tables equally likely up to rounding in the tail).
///
/// Counts are clamped to `x <= n`; an empty group gives 1.
pub fn fisher_exact(x1: u64, n1: u64, x2: u64, n2: u64) -> f64 {
    let (x1, x2) = (x1.min(n1), x2.min(n2));
    let Some(population) = n1.checked_add(n2) else {
        return pooled_z_test(x1, n1, x2, n2);
    };
    let successes = x1 + x2;
    let lo = successes.saturating_sub(n2);
    let hi = successes.min(n1);
    if hi <= lo {
        return 1.0;
    }
    if hi - lo > EXACT_SUPPORT_MAX {
        return pooled_z_test(x1, n1, x2, n2);
    }
    let Ok(h) = Hypergeometric::new(population, successes, n1) else {
        return pooled_z_test(x1, n1, x2, n2);
    };
    let observed = h.ln_pmf(x1);
    let cutoff = observed + 1e-7;
    let p: f64 = (lo..=hi)
        .map(|k| h.ln_pmf(k))
        .filter(|&l| l <= cutoff)
        .map(f64::exp)
        .sum();
    p.clamp(0.0, 1.0)
}

/// Two-sided p-value of the pooled two-proportion z-test (no continuity correction); 1 when
/// it is undefined (an empty group, or no errors or only errors on both sides).
pub fn pooled_z_test(x1: u64, n1: u64, x2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let (p1, p2) = (x1.min(n1) as f64 / n1f, x2.min(n2) as f64 / n2f);
    let pooled = (p1 * n1f + p2 * n2f) / (n1f + n2f);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return 1.0;
    }
    let z = (p1 - p2) / se;
    (2.0 * Normal::standard().sf(z.abs())).clamp(0.0, 1.0)
}

/// Wilson's score interval for `x` of `n` at normal quantile `z`; `None` when `n` is 0.
pub fn wilson(x: u64, n: u64, z: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let nf = n as f64;
    let p = x.min(n) as f64 / nf;
    let z2 = z * z;
    let center = (p + z2 / (2.0 * nf)) / (1.0 + z2 / nf);
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / (1.0 + z2 / nf);
    Some(((center - half).max(0.0), (center + half).min(1.0)))
}

/// Newcombe's hybrid score interval (his method 10) for `x1/n1 - x2/n2`: it combines the two
/// Wilson intervals, keeps to [-1, 1] and behaves at 0 errors, where the textbook Wald
/// interval collapses to a point. `None` when a group is empty.
pub fn newcombe(x1: u64, n1: u64, x2: u64, n2: u64, z: f64) -> Option<(f64, f64)> {
    let (l1, u1) = wilson(x1, n1, z)?;
    let (l2, u2) = wilson(x2, n2, z)?;
    let p1 = x1.min(n1) as f64 / n1 as f64;
    let p2 = x2.min(n2) as f64 / n2 as f64;
    let d = p1 - p2;
    let lower = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let upper = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    Some((lower, upper))
}

/// Requests the canary needs so that a two-sided test at `z_alpha` detects a canary error rate
/// of `p_canary` against a stable one of `p_stable` with the power of `z_beta`, when the stable
/// gets `ratio` requests for each canary request. The normal-approximation formula without
/// continuity correction (Fleiss, Tytun & Ury 1980, Biometrics 36:343; Fleiss, Levin & Paik,
/// *Statistical Methods for Rates and Proportions*, 3rd ed., §4.2):
///
/// ```text
/// n = [ z_a·sqrt(p̄q̄(1 + 1/r)) + z_b·sqrt(p_c q_c + p_s q_s / r) ]² / (p_c − p_s)²,
/// p̄ = (p_c + r·p_s) / (1 + r)
/// ```
///
/// `None` when the rates are equal or the arguments are not usable.
pub fn requests_needed(
    p_canary: f64,
    p_stable: f64,
    ratio: f64,
    z_alpha: f64,
    z_beta: f64,
) -> Option<f64> {
    let delta = p_canary - p_stable;
    let usable = delta.abs() > 0.0 && ratio > 0.0 && ratio.is_finite();
    if !usable {
        return None;
    }
    let pbar = (p_canary + ratio * p_stable) / (1.0 + ratio);
    let null = (pbar * (1.0 - pbar) * (1.0 + 1.0 / ratio)).sqrt();
    let alt = (p_canary * (1.0 - p_canary) + p_stable * (1.0 - p_stable) / ratio).sqrt();
    let n = (z_alpha * null + z_beta * alt).powi(2) / (delta * delta);
    n.is_finite().then_some(n)
}

/// `errors` of `requests`, and their share.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub errors: u64,
    pub requests: u64,
    /// `errors / requests`; `None` without requests.
    pub rate: Option<f64>,
}

impl Rate {
    pub fn new(errors: u64, requests: u64) -> Self {
        let errors = errors.min(requests);
        Rate {
            errors,
            requests,
            rate: (requests > 0).then(|| errors as f64 / requests as f64),
        }
    }
}

/// The error-rate comparison of one exposure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRate {
    #[serde(flatten)]
    pub class: Class,
    pub canary: Rate,
    pub stable: Rate,
    /// Canary rate minus stable rate (0.25 = 25 percentage points more errors).
    pub difference: Option<f64>,
    /// Newcombe's interval of the difference at the confidence level.
    pub difference_interval: Option<[f64; 2]>,
    /// Canary rate over stable rate; `None` when the stable had no error.
    pub ratio: Option<f64>,
    /// Fisher's exact test, two-sided.
    pub p_value: Option<f64>,
    /// One line for people.
    pub summary: String,
}

/// Compares the error rates: `worse` when Fisher's test is significant at the confidence level
/// and the canary's rate exceeds the stable's by at least the margin; `better` likewise the
/// other way; otherwise `no-difference` if the exposure had the requests to detect a rise of
/// the margin with the configured power, else `not-enough-data` with the requests that would.
/// `canary_rate`: the canary's requests per second, to turn requests into seconds.
pub fn compare(
    canary: Rate,
    stable: Rate,
    canary_rate: Option<f64>,
    settings: &Settings,
) -> ErrorRate {
    let margin = settings.error_margin();
    let mut out = ErrorRate {
        class: Class::NoDifference,
        canary,
        stable,
        difference: None,
        difference_interval: None,
        ratio: None,
        p_value: None,
        summary: String::new(),
    };
    let (Some(pc), Some(ps)) = (canary.rate, stable.rate) else {
        let who = if canary.requests == 0 {
            "canary"
        } else {
            "stable version"
        };
        out.class = Class::NotEnoughData(Shortfall::unknown(
            canary.requests,
            format!("no {who} request in the exposure"),
        ));
        out.summary = format!("error rate: not enough data (no {who} request)");
        return out;
    };
    let z = settings.confidence().z();
    let d = pc - ps;
    let p = fisher_exact(
        canary.errors,
        canary.requests,
        stable.errors,
        stable.requests,
    );
    out.difference = Some(d);
    out.difference_interval = newcombe(
        canary.errors,
        canary.requests,
        stable.errors,
        stable.requests,
        z,
    )
    .map(|(l, u)| [l, u]);
    out.ratio = (ps > 0.0).then(|| pc / ps);
    out.p_value = Some(p);
    let significant = p < settings.confidence().alpha();
    out.class = if significant && d >= margin {
        Class::Worse
    } else if significant && d <= -margin {
        Class::Better
    } else if significant {
        Class::NoDifference
    } else {
        let target = (ps + margin).min(1.0);
        let ratio = stable.requests as f64 / canary.requests as f64;
        match requests_needed(target, ps, ratio, z, settings.power().z()) {
            Some(n) if n.ceil() > canary.requests as f64 => Class::NotEnoughData(Shortfall::new(
                n.ceil() as u64,
                canary.requests,
                canary_rate,
                format!(
                    "to see a rise of {} points over the stable's {:.2} % at {} % confidence and {} % power",
                    pct(margin),
                    ps * 100.0,
                    pct(settings.confidence().level()),
                    pct(settings.power().level())
                ),
            )),
            _ => Class::NoDifference,
        }
    };
    let interval = out
        .difference_interval
        .map(|[l, u]| {
            format!(
                " ({} % interval {:+.1} to {:+.1} points)",
                pct(settings.confidence().level()),
                l * 100.0,
                u * 100.0
            )
        })
        .unwrap_or_default();
    out.summary = format!(
        "error rate: {}: canary {:.2} % ({} of {}), stable {:.2} % ({} of {}), {:+.1} points{interval}, Fisher p = {}",
        out.class,
        pc * 100.0,
        canary.errors,
        canary.requests,
        ps * 100.0,
        stable.errors,
        stable.requests,
        d * 100.0,
        p_text(p),
    );
    if let Class::NotEnoughData(s) = &out.class {
        out.summary.push_str(&format!("; {}", s.text()));
    }
    out
}

/// A share as a percentage without trailing zeros: 0.98 → "98", 0.025 → "2.5".
pub(crate) fn pct(share: f64) -> String {
    let s = format!("{:.2}", share * 100.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A p-value for people: 3 significant digits, tiny ones in scientific notation.
pub(crate) fn p_text(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use statrs::stats_tests::{Alternative, fishers_exact};

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Published two-sided Fisher p-values:
    /// - Wikipedia, "Fisher's exact test", the dieting example: men 1 dieting of 12, women 9 of
    ///   12 → p = 0.002759 (also QI Macros' worked example, "0.00276").
    /// - Fisher's lady tasting tea (R's `fisher.test` documentation, `TeaTasting`): 3 of 4 cups
    ///   right against 1 of 4 → two-sided p = 0.4857 (the documented one-sided 0.2429, doubled
    ///   by symmetry).
    /// - Calcugator's `chi2_fisherexact` example: 4 of 4 against 2 of 7 → two tails 0.060606.
    #[test]
    fn fisher_matches_published_values() {
        assert!(
            close(fisher_exact(1, 12, 9, 12), 0.002759, 5e-7),
            "{}",
            fisher_exact(1, 12, 9, 12)
        );
        assert!(close(fisher_exact(3, 4, 1, 4), 0.4857, 5e-5));
        assert!(close(fisher_exact(4, 4, 2, 7), 0.060606, 5e-7));
        // And statrs' own implementation agrees (table in row-major order).
        for (x1, n1, x2, n2) in [
            (1, 12, 9, 12),
            (16, 65, 0, 295),
            (7, 33, 0, 4167),
            (3, 10, 5, 12),
        ] {
            let theirs = fishers_exact(&[x1, n1 - x1, x2, n2 - x2], Alternative::TwoSided).unwrap();
            let ours = fisher_exact(x1, n1, x2, n2);
            assert!(
                close(ours, theirs, 1e-9 + 1e-6 * theirs),
                "{x1}/{n1} {x2}/{n2}: {ours} vs {theirs}"
            );
        }
    }

    #[test]
    fn fisher_and_z_test_never_break() {
        assert_eq!(fisher_exact(0, 0, 0, 0), 1.0);
        assert_eq!(fisher_exact(0, 100, 0, 100), 1.0);
        assert_eq!(fisher_exact(100, 100, 100, 100), 1.0);
        assert_eq!(fisher_exact(5, 0, 3, 10), 1.0);
        let p = fisher_exact(u64::MAX, u64::MAX, 1, 2);
        assert!((0.0..=1.0).contains(&p));
        assert_eq!(pooled_z_test(0, 0, 1, 1), 1.0);
        assert_eq!(pooled_z_test(0, 10, 0, 10), 1.0);
        // On large tables the z-test is the exact test's close neighbour.
        let exact = fisher_exact(540, 10_000, 460, 10_000);
        let z = pooled_z_test(540, 10_000, 460, 10_000);
        assert!((exact - z).abs() / exact < 0.1, "{exact} {z}");
    }

    /// Newcombe (1998), "Interval estimation for the difference between independent
    /// proportions: comparison of eleven methods", Statistics in Medicine 17:873, table II,
    /// method 10 at 95 %: (a) 56/70 − 48/80 → 0.0524 to 0.3339; (b) 9/10 − 3/10 → 0.1705 to
    /// 0.8090; (d) 5/56 − 0/29 → −0.0381 to 0.1926; (e) 0/10 − 0/20 → −0.1611 to 0.2775.
    #[test]
    fn newcombe_matches_the_paper() {
        let z = 1.959_964;
        for ((x1, n1, x2, n2), (low, high)) in [
            ((56, 70, 48, 80), (0.0524, 0.3339)),
            ((9, 10, 3, 10), (0.1705, 0.8090)),
            ((5, 56, 0, 29), (-0.0381, 0.1926)),
            ((0, 10, 0, 20), (-0.1611, 0.2775)),
        ] {
            let (l, u) = newcombe(x1, n1, x2, n2, z).unwrap();
            assert!(
                close(l, low, 5e-5) && close(u, high, 5e-5),
                "{x1}/{n1} {x2}/{n2}: {l} {u}"
            );
        }
        assert_eq!(newcombe(0, 0, 1, 2, z), None);
        let (l, u) = newcombe(0, 205, 0, 435, 2.326).unwrap();
        assert!(l < 0.0 && u > 0.0 && l >= -1.0 && u <= 1.0);
    }

    /// JMP 13.2 documentation, "Two Sample Proportions": p1 = 0.08, p2 = 0.06, two-sided
    /// α = 0.05, power 0.80 → 2554 per group. And the classic 0.05 against 0.10 → 435 per group
    /// without continuity correction (Fleiss' table A.3 gives 474 with it).
    #[test]
    fn sample_sizes_match_published_values() {
        let (za, zb) = (1.959_964, 0.841_621);
        assert_eq!(
            requests_needed(0.08, 0.06, 1.0, za, zb).unwrap().ceil(),
            2554.0
        );
        assert_eq!(
            requests_needed(0.10, 0.05, 1.0, za, zb).unwrap().ceil(),
            435.0
        );
        // More stable requests per canary request: fewer canary requests needed.
        let more = requests_needed(0.10, 0.05, 4.0, za, zb).unwrap();
        assert!(more < 435.0 && more > 435.0 / 2.0, "{more}");
        assert_eq!(requests_needed(0.1, 0.1, 1.0, za, zb), None);
        assert_eq!(requests_needed(0.2, 0.1, 0.0, za, zb), None);
    }

    #[test]
    fn classifies_by_significance_margin_and_power() {
        let s = Settings::default();
        // The 500s canary: 16 of 65 against none of 295.
        let r = compare(Rate::new(16, 65), Rate::new(0, 295), Some(8.0), &s);
        assert_eq!(r.class, Class::Worse, "{}", r.summary);
        assert!(r.p_value.unwrap() < 1e-9);
        assert_eq!(r.ratio, None);
        // The other way round.
        let r = compare(Rate::new(0, 295), Rate::new(16, 65), None, &s);
        assert_eq!(r.class, Class::Better);
        // Significant but small: 3 % against 1 % over 20 000 requests each.
        let r = compare(Rate::new(600, 20_000), Rate::new(200, 20_000), None, &s);
        assert!(r.p_value.unwrap() < 1e-6);
        assert_eq!(r.class, Class::NoDifference, "{}", r.summary);
        // Nothing seen, and enough requests to have seen 5 points more.
        let r = compare(Rate::new(0, 400), Rate::new(0, 1600), None, &s);
        assert_eq!(r.class, Class::NoDifference, "{}", r.summary);
        // Nothing seen in too few requests: how many would do, and how long that takes.
        let r = compare(Rate::new(0, 20), Rate::new(0, 80), Some(4.0), &s);
        let Class::NotEnoughData(short) = &r.class else {
            panic!("{}", r.summary)
        };
        assert_eq!(short.canary_seen, 20);
        let needed = short.canary_needed.unwrap();
        assert!((60..=90).contains(&needed), "{needed}");
        assert_eq!(short.exposure_needed_s, Some(needed as f64 / 4.0));
        assert!(r.summary.contains("not-enough-data"), "{}", r.summary);
        // No canary at all.
        let r = compare(Rate::new(0, 0), Rate::new(0, 80), None, &s);
        assert!(matches!(&r.class, Class::NotEnoughData(s) if s.canary_needed.is_none()));
        let r = compare(Rate::new(0, 10), Rate::new(0, 0), None, &s);
        assert!(matches!(r.class, Class::NotEnoughData(_)));
    }

    #[test]
    fn percentages_read_well() {
        assert_eq!(pct(0.98), "98");
        assert_eq!(pct(0.025), "2.5");
        assert_eq!(p_text(0.5), "0.5000");
        assert_eq!(p_text(1.2e-9), "1.2e-9");
    }
}
