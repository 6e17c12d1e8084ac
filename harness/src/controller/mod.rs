//! Local emulation of the progressive-delivery controllers, free of I/O where it can be, so the
//! decisions can be tested under a paused clock.

pub mod analysis;
pub mod argo;
pub mod expr;
pub mod timescale;
