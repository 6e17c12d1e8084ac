//! `--time-scale F`: running a production policy faster (or slower) on the local backend.
//!
//! Every duration in the controller objects (pauses, intervals, initial delays, deadlines,
//! scale-down delays, and an Argo Rollout's `minReadySeconds`, which races its progress
//! deadline) is multiplied by F. PromQL range windows inside the user's queries are
//! scaled by the same factor, so a `[5m]` window still spans the same number of measurement
//! intervals — but never below four scrape intervals, because `rate()` needs at least two samples
//! and becomes noisy with fewer than four. The same rule applies to Argo and Flagger queries
//! (including Flagger's `{{ interval }}`, which is rendered before scaling).

use std::time::Duration;

/// A time-scale factor; 1.0 leaves everything as written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeScale {
    factor: f64,
    /// The shortest range window a query may be given after scaling.
    min_window: Duration,
}

impl Default for TimeScale {
    fn default() -> Self {
        TimeScale::new(1.0).expect("1.0 is a valid factor")
    }
}

impl TimeScale {
    /// Validates the factor: positive and finite, at most 1000.
    pub fn new(factor: f64) -> Result<TimeScale, String> {
        if !(factor.is_finite() && factor > 0.0 && factor <= 1000.0) {
            return Err(format!(
                "time scale must be a number above 0 and at most 1000 (got {factor})"
            ));
        }
        Ok(TimeScale {
            factor,
            min_window: 4 * crate::cluster::local::prometheus::SCRAPE_INTERVAL,
        })
    }

    pub fn factor(&self) -> f64 {
        self.factor
    }

    pub fn is_identity(&self) -> bool {
        self.factor == 1.0
    }

    /// Scales a policy duration.
    pub fn duration(&self, d: Duration) -> Duration {
        if self.is_identity() {
            d
        } else {
            d.mul_f64(self.factor)
        }
    }

    /// The policy duration that a scaled duration stands for (for reports: "both clocks").
    pub fn unscale(&self, d: Duration) -> Duration {
        if self.is_identity() {
            d
        } else {
            d.div_f64(self.factor)
        }
    }

    /// Scales every range window (`[5m]`, subquery `[10m:30s]`) and `offset` in a PromQL query.
    /// Text inside string literals is left alone. With factor 1.0 the query is returned as is.
    pub fn promql(&self, query: &str) -> String {
        if self.is_identity() {
            return query.to_string();
        }
        let mut out = String::with_capacity(query.len());
        let mut chars = query.char_indices().peekable();
        let mut quote: Option<char> = None;
        while let Some((i, c)) = chars.next() {
            if let Some(q) = quote {
                out.push(c);
                if c == '\\' {
                    if let Some((_, n)) = chars.next() {
                        out.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '"' | '\'' | '`' => {
                    quote = Some(c);
                    out.push(c);
                }
                '[' => {
                    let Some(end) = query[i..].find(']') else {
                        out.push(c);
                        continue;
                    };
                    let inner = &query[i + 1..i + end];
                    match self.window(inner) {
                        Some(scaled) => {
                            out.push('[');
                            out.push_str(&scaled);
                            out.push(']');
                            for _ in 0..end {
                                chars.next();
                            }
                        }
                        None => out.push(c),
                    }
                }
                _ => out.push(c),
            }
        }
        scale_offsets(&out, self)
    }

    /// `5m` or `10m:30s` (a subquery's range and resolution) or `10m:`.
    fn window(&self, inner: &str) -> Option<String> {
        let (range, step) = match inner.split_once(':') {
            Some((r, s)) => (r, Some(s)),
            None => (inner, None),
        };
        let range = parse_promql_duration(range.trim())?;
        let mut s = format_promql_duration(self.duration(range).max(self.min_window));
        if let Some(step) = step {
            s.push(':');
            if !step.trim().is_empty() {
                let st = parse_promql_duration(step.trim())?;
                s.push_str(&format_promql_duration(
                    self.duration(st).max(Duration::from_secs(1)),
                ));
            }
        }
        Some(s)
    }
}

fn scale_offsets(q: &str, ts: &TimeScale) -> String {
    let mut out = String::with_capacity(q.len());
    let mut rest = q;
    while let Some(pos) = rest.find("offset") {
        let before_ok = rest[..pos]
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        out.push_str(&rest[..pos + 6]);
        rest = &rest[pos + 6..];
        if !before_ok {
            continue;
        }
        let ws = rest.len() - rest.trim_start().len();
        let token_end = rest[ws..]
            .find(|c: char| !(c.is_ascii_alphanumeric()))
            .map(|e| ws + e)
            .unwrap_or(rest.len());
        if let Some(d) = parse_promql_duration(&rest[ws..token_end]) {
            out.push_str(&rest[..ws]);
            out.push_str(&format_promql_duration(ts.duration(d)));
            rest = &rest[token_end..];
        }
    }
    out.push_str(rest);
    out
}

/// Parses PromQL's duration syntax: `1h30m`, `90s`, `500ms`, `2d`, `1w`, `1y`.
pub fn parse_promql_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut total = 0u128;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms: u128 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        total += n * ms;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_millis(u64::try_from(total).ok()?))
}

/// Writes a duration in PromQL syntax, in whole milliseconds, largest units first.
pub fn format_promql_duration(d: Duration) -> String {
    let mut ms = d.as_millis().max(1);
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_leaves_queries_alone() {
        let q = r#"sum(rate(x{a="[5m]"}[5m]))"#;
        assert_eq!(TimeScale::default().promql(q), q);
    }

    #[test]
    fn windows_scale_but_not_below_four_scrapes() {
        let ts = TimeScale::new(0.1).unwrap();
        assert_eq!(ts.promql("rate(x[5m])"), "rate(x[30s])");
        assert_eq!(ts.promql("rate(x[30s])"), "rate(x[4s])");
        assert_eq!(
            ts.promql("max_over_time(x[10m:1m])"),
            "max_over_time(x[1m:6s])"
        );
        assert_eq!(ts.promql("x offset 10m"), "x offset 1m");
        // String literals are the user's text.
        assert_eq!(
            ts.promql(r#"x{path="/a[5m]"}[1m]"#),
            r#"x{path="/a[5m]"}[6s]"#
        );
        // Label matchers in brackets of other kinds are untouched, and so is indexing syntax
        // that is not a duration.
        assert_eq!(ts.promql("x[abc]"), "x[abc]");
        assert_eq!(
            ts.duration(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            ts.unscale(Duration::from_secs(60)),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(
            parse_promql_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_promql_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert!(parse_promql_duration("5x").is_none());
        assert!(parse_promql_duration("m").is_none());
        assert_eq!(
            format_promql_duration(Duration::from_millis(90_500)),
            "1m30s500ms"
        );
    }

    #[test]
    fn bad_factors_are_refused() {
        assert!(TimeScale::new(0.0).is_err());
        assert!(TimeScale::new(-1.0).is_err());
        assert!(TimeScale::new(f64::NAN).is_err());
    }
}
