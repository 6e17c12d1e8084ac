//! Reports of a run: the live terminal line and summary, `--json`, `--junit`, `--artifacts`.

pub mod artifacts;
mod atomic;
#[cfg(test)]
mod fixture;
pub mod human;
pub mod json;
pub mod junit;
pub mod model;

pub use artifacts::{ArtifactSources, write_artifacts};
pub use human::{LiveStatus, Progress, ScenarioLine, event_line, summary_table};
pub use json::write_json;
pub use junit::write_junit;
