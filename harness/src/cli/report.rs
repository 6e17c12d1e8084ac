//! `gauntlet report RUN.json --html FILE`: the page of a run drawn from the JSON it wrote, so
//! CI can keep the JSON and people open the page.

use std::path::Path;

use crate::exit::Exit;
use crate::report::{read_report, write_html};

/// Draws the page of the report at `json` into `html`. A file that cannot be read, is not a
/// report, or is of a newer schema is bad input (exit 2); a page that cannot be written is
/// exit 3, as for every other report.
pub fn report_html(json: &Path, html: &Path) -> Exit {
    let report = match read_report(json) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::BadInput;
        }
    };
    match write_html(html, &report) {
        Ok(()) => {
            eprintln!(
                "wrote {} ({} scenario(s))",
                html.display(),
                report.scenarios.len()
            );
            Exit::Passed
        }
        Err(e) => {
            eprintln!("error: writing {}: {e}", html.display());
            Exit::Infra
        }
    }
}
