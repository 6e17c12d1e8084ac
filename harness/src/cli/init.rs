//! `gauntlet init`: prints what was written and what the policy cannot catch, or why nothing
//! was written.

use std::path::PathBuf;

use crate::exit::Exit;
use crate::init::{InitRequest, init as write_suite};

/// `gauntlet init --target DIR [--out DIR] [--force]`.
pub fn init(target: PathBuf, out: Option<PathBuf>, force: bool) -> Exit {
    match write_suite(&InitRequest { target, out, force }) {
        Ok(w) => {
            println!(
                "wrote {} scenario(s) for the {} to {} (timeScale {}):",
                w.files.len(),
                w.object,
                w.dir.display(),
                w.time_scale
            );
            for f in &w.files {
                println!("  {}", f.display());
            }
            if !w.gaps.is_empty() {
                println!("not covered (a comment in the first file says why):");
                for g in &w.gaps {
                    println!("  - {g}");
                }
            }
            println!(
                "next: gauntlet validate {0} && gauntlet run {0} --parallel 2",
                w.dir.display()
            );
            Exit::Passed
        }
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            eprintln!("nothing was written.");
            e.exit()
        }
    }
}
