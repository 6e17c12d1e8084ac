//! What the commands do, apart from parsing them (main.rs).

pub mod compare;
pub mod down;
pub mod init;
pub mod power;
pub mod report;
pub mod run;
pub mod schema;
pub mod up;
pub mod up_real;

pub use self::compare::{CompareRequest, compare_tiers};
pub use self::down::down_kube;
pub use self::init::init;
pub use self::power::{PowerArgs, power};
pub use self::report::report_html;
pub use self::run::{
    Backend as RunBackend, Controller as RunController, KubeReach, RunRequest, list, run, validate,
};
pub use self::schema::schema;
pub use self::up::{down_kind, up_kind, up_local};
pub use self::up_real::{controlplane_build, down_local, up_real};
