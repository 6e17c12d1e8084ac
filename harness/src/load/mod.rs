//! Load through the ingress: the HTTP client rules every request of a scenario follows, goose
//! embedded in-process as the generator, and per-version accounting in one-second windows.

pub mod client;
mod generator;
mod sigint;
pub mod stats;

pub use generator::{Load, LoadError, LoadSpec};
pub use stats::{Counts, Histogram, LoadStats, NO_VERSION, Window};
