//! One planned scenario as a scenario file: YAML written by hand, because every number carries
//! a comment saying where it came from. The text is parsed back by the scenario loader before
//! anything is written ([`super::verify`]).

use super::facts::Sourced;
use super::sizing::{Planned, SuitePlan};
use super::words::{byte_rate_value, duration_value, rate_value, share_value};
use crate::scenario::Fault;

/// Comment lines are wrapped to this width, indentation included.
const WIDTH: usize = 100;

/// What every file of the suite shares.
pub struct Frame<'a> {
    /// The scenario's `name`.
    pub name: &'a str,
    /// `target:`, relative to the file's folder.
    pub target: &'a str,
    /// The opening comment: where the suite came from.
    pub header: &'a [String],
    /// What the policy cannot catch; written in the first file only.
    pub gaps: &'a [String],
    pub suite: &'a SuitePlan,
}

/// The scenario file's text.
pub fn render(p: &Planned, frame: &Frame) -> String {
    let mut out = String::new();
    for line in frame.header {
        comment(&mut out, 0, line);
    }
    if !frame.gaps.is_empty() {
        comment(&mut out, 0, "");
        comment(
            &mut out,
            0,
            "What this suite leaves out, and why (no scenario is written for it):",
        );
        for g in frame.gaps {
            bullet(&mut out, g);
        }
    }
    line(&mut out, 0, &format!("name: {}", scalar(frame.name)));
    line(
        &mut out,
        0,
        &format!("description: {}", scalar(&p.description)),
    );
    line(&mut out, 0, &format!("target: {}", scalar(frame.target)));
    line(&mut out, 0, "baseline: { version: \"1.0.0\" }");
    match &p.fault {
        None => line(&mut out, 0, "release: { version: \"2.0.0\" }"),
        Some(f) => {
            line(&mut out, 0, "release:");
            line(&mut out, 2, "version: \"2.0.0\"");
            line(&mut out, 2, "faults:");
            comment(&mut out, 4, &f.why);
            line(&mut out, 4, &fault(&f.value));
        }
    }
    comment(&mut out, 0, &frame.suite.rate.why);
    comment(&mut out, 0, &p.connections.why);
    line(
        &mut out,
        0,
        &format!(
            "load: {{ rate: {}, connections: {} }}",
            rate_value(frame.suite.rate.value),
            p.connections.value
        ),
    );
    comment(&mut out, 0, &frame.suite.time_scale.why);
    line(
        &mut out,
        0,
        &format!("timeScale: {}", frame.suite.time_scale.value),
    );
    if !p.actions.is_empty() {
        line(&mut out, 0, "actions:");
        for a in &p.actions {
            let (at, action) = a.value;
            comment(&mut out, 2, &a.why);
            line(
                &mut out,
                2,
                &format!(
                    "- {{ at: {}, action: {} }}",
                    duration_value(at),
                    action.name()
                ),
            );
        }
    }
    line(&mut out, 0, "expect:");
    line(&mut out, 2, &format!("outcome: {}", p.outcome));
    comment(&mut out, 2, &p.within.why);
    line(
        &mut out,
        2,
        &format!("within: {}", duration_value(p.within.value)),
    );
    comment(&mut out, 2, &p.client_errors.why);
    line(
        &mut out,
        2,
        &format!(
            "clientErrors: {{ max: {} }}",
            share_value(p.client_errors.value)
        ),
    );
    if let Some(Sourced { value, why }) = &p.weights {
        comment(&mut out, 2, why);
        let list: Vec<String> = value.iter().map(u32::to_string).collect();
        line(&mut out, 2, &format!("weights: [{}]", list.join(", ")));
    }
    out
}

fn fault(f: &Fault) -> String {
    match f {
        Fault::Errors { rate, status } => {
            format!(
                "errors: {{ rate: {}, status: {status} }}",
                share_value(*rate)
            )
        }
        Fault::Latency { delay, .. } => {
            format!("latency: {{ delay: {} }}", duration_value(*delay))
        }
        Fault::MemoryLeak { bytes_per_sec } => {
            format!(
                "memoryLeak: {{ rate: {} }}",
                byte_rate_value(*bytes_per_sec)
            )
        }
        Fault::Crash { after } => format!("crash: {{ after: {} }}", duration_value(*after)),
        Fault::Unready => "unready: true".into(),
    }
}

fn line(out: &mut String, indent: usize, text: &str) {
    out.push_str(&" ".repeat(indent));
    out.push_str(text);
    out.push('\n');
}

/// `# text`, wrapped; control characters from user-written names cannot end the comment.
fn comment(out: &mut String, indent: usize, text: &str) {
    wrapped(out, indent, "# ", "# ", text);
}

fn bullet(out: &mut String, text: &str) {
    wrapped(out, 0, "# - ", "#   ", text);
}

fn wrapped(out: &mut String, indent: usize, first: &str, rest: &str, text: &str) {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut prefix = first;
    let mut current = String::new();
    let flush = |out: &mut String, prefix: &str, current: &str| {
        out.push_str(&" ".repeat(indent));
        out.push_str(prefix.trim_end_matches(' '));
        if !current.is_empty() {
            out.push_str(&prefix[prefix.trim_end_matches(' ').len()..]);
            out.push_str(current);
        }
        out.push('\n');
    };
    for word in glued(&clean) {
        let room = WIDTH.saturating_sub(indent + prefix.chars().count());
        if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > room {
            flush(out, prefix, &current);
            current.clear();
            prefix = rest;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&word);
    }
    flush(out, prefix, &current);
}

/// The words of `text`, a unit kept with its number (`10 s`, `30 %`, `48 MiB`) so that no line
/// starts with a bare unit.
fn glued(text: &str) -> Vec<String> {
    const UNITS: [&str; 8] = ["s", "ms", "%", "MiB", "KiB", "MiB/s", "KiB/s", "requests/s"];
    let mut out: Vec<String> = Vec::new();
    for w in text.split_whitespace() {
        let bare = w.trim_end_matches([',', '.', ';', ':', ')']);
        let after_number = out
            .last()
            .is_some_and(|p| p.trim_start_matches('(').parse::<f64>().is_ok());
        match out.last_mut() {
            Some(prev) if after_number && UNITS.contains(&bare) => {
                prev.push(' ');
                prev.push_str(w);
            }
            _ => out.push(w.to_string()),
        }
    }
    out
}

/// A YAML scalar: plain when that reads back as the same string, else double-quoted (a JSON
/// string is a valid YAML double-quoted scalar).
pub fn scalar(s: &str) -> String {
    let plain_char = |c: char| c.is_alphanumeric() || " ._/-%()→,+".contains(c);
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '.' || c == '/');
    let looks_special = matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~"
    );
    if first_ok
        && !looks_special
        && s.chars().all(plain_char)
        && !s.ends_with(' ')
        && !s.contains("  ")
    {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_wrap_within_the_width() {
        let mut out = String::new();
        let long = "word ".repeat(60);
        comment(&mut out, 2, &long);
        assert!(out.lines().count() > 2);
        for l in out.lines() {
            assert!(l.chars().count() <= WIDTH, "{l:?}");
            assert!(l.starts_with("  # "), "{l:?}");
        }
    }

    #[test]
    fn a_unit_stays_with_its_number() {
        let mut out = String::new();
        let text = format!("{} (10 s), then 30 %.", "x".repeat(91));
        comment(&mut out, 0, &text);
        assert_eq!(out, format!("# {}\n# (10 s), then 30 %.\n", "x".repeat(91)));
    }

    #[test]
    fn a_newline_in_a_name_stays_inside_the_comment() {
        let mut out = String::new();
        comment(&mut out, 0, "metric a\nname: injected");
        assert_eq!(out, "# metric a name: injected\n");
    }

    #[test]
    fn scalars_read_back_as_written() {
        for s in [
            "rollout-sample-app-healthy-promoted",
            "../../fixtures/apps/argo",
            "a release walks 1 % → 2 % and is promoted",
            "metric x: fails",
            "yes",
            "#hash",
            "-dash",
            "with \"quotes\"",
        ] {
            let text = format!("k: {}\n", scalar(s));
            let back: std::collections::BTreeMap<String, String> =
                serde_saphyr::from_str(&text).unwrap();
            assert_eq!(back["k"], s, "{text}");
        }
    }
}
