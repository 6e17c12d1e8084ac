//! What the commands do, apart from parsing them (main.rs).

use std::path::Path;

use crate::exit::Exit;

/// `gauntlet up --backend local`: not wired to the target's manifests yet.
pub async fn up_local(_target: &Path) -> Exit {
    eprintln!("error: `gauntlet up` is not yet implemented");
    Exit::BadInput
}
