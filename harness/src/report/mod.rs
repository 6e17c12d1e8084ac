//! Reports of a run: the live terminal line and summary, `--json`, `--junit`, `--artifacts`,
//! `--html`.

pub mod artifacts;
mod atomic;
#[cfg(test)]
mod fixture;
pub mod html;
pub mod human;
pub mod json;
pub mod junit;
pub mod model;
pub mod series;

pub use artifacts::{ArtifactSources, write_artifacts};
pub use html::{read_report, write_html};
pub use human::{LiveStatus, Progress, ScenarioLine, event_line, summary_table};
pub use json::write_json;
pub use junit::write_junit;
