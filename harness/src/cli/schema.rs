//! `gauntlet schema`: the scenario file's JSON Schema, for editors and for checking files in
//! other tools.

use std::path::Path;

use crate::exit::Exit;
use crate::scenario::schema;

/// Prints the schema, or writes it to `out`.
pub fn schema(out: Option<&Path>) -> Exit {
    let text = schema::text();
    match out {
        None => {
            print!("{text}");
            Exit::Passed
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => Exit::Passed,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                Exit::BadInput
            }
        },
    }
}
