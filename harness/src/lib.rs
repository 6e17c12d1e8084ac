//! gauntlet: runs a progressive-delivery setup for real (controller, ingress, Prometheus, a
//! sample app under load) and checks that it promotes good releases and rolls back bad ones
//! within a time budget.
//!
//! The binary in `main.rs` is a thin CLI over this library. The contracts users rely on are in
//! the project's README and docs/ (the scenario file and exit codes: docs/scenarios.md).

pub mod cli;
pub mod cluster;
pub mod compare;
pub mod controller;
pub mod exit;
pub mod init;
pub mod judge;
pub mod load;
pub mod power;
pub mod prom;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod spec;
pub mod target;
pub mod timeline;
pub mod verdict;
