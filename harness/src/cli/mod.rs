//! What the commands do, apart from parsing them (main.rs).

pub mod run;
pub mod up;

pub use self::run::{Backend as RunBackend, RunRequest, list, run, validate};
pub use self::up::{down_kind, up_kind, up_local};
