//! Why `gauntlet init` wrote nothing: each problem names the file or field and the fix.

use std::fmt;
use std::path::PathBuf;

use crate::exit::Exit;
use crate::spec::SpecErrors;
use crate::target::TargetError;

#[derive(Debug)]
pub enum InitError {
    /// `--target` does not exist.
    NoTarget(PathBuf),
    /// The manifests do not load or validate.
    Manifests(SpecErrors),
    /// Readable manifests that init cannot work from.
    Unusable {
        file: PathBuf,
        field: String,
        reason: String,
    },
    /// Files init would write exist already.
    Exists(Vec<PathBuf>),
    /// The output folder or a file in it cannot be created or written.
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The policy gives nothing to test: no outcome a scenario could expect.
    Nothing(Vec<String>),
    /// A file init generated does not pass the checks of `gauntlet validate`: a bug in init,
    /// reported rather than written.
    Generated {
        file: PathBuf,
        problems: Vec<String>,
    },
}

impl InitError {
    /// Every init problem is bad input to fix (exit 2): nothing was started.
    pub fn exit(&self) -> Exit {
        Exit::BadInput
    }
}

impl From<TargetError> for InitError {
    fn from(e: TargetError) -> Self {
        match e {
            TargetError::Spec(e) => InitError::Manifests(e),
            TargetError::Unusable { file, path, reason } => InitError::Unusable {
                file,
                field: path,
                reason,
            },
        }
    }
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::NoTarget(p) => write!(
                f,
                "--target {}: no such file or folder; pass the folder of your manifests (a Rollout \
                 and its AnalysisTemplates, or a Canary, its Deployment and MetricTemplates)",
                p.display()
            ),
            InitError::Manifests(e) => write!(
                f,
                "{e}\nfix the manifests above (init reads them as the controller would), then run \
                 init again"
            ),
            InitError::Unusable {
                file,
                field,
                reason,
            } => write!(f, "{}: {field}: {reason}", file.display()),
            InitError::Exists(files) => {
                let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "{} already exist(s): init does not overwrite; pass --force to replace the \
                     files it writes, or choose another --out",
                    names.join(", ")
                )
            }
            InitError::Write { path, error } => write!(
                f,
                "{}: cannot write: {error}; choose an --out folder you can write to",
                path.display()
            ),
            InitError::Nothing(reasons) => write!(
                f,
                "the policy gives no outcome a scenario could expect: {}",
                reasons.join("; ")
            ),
            InitError::Generated { file, problems } => write!(
                f,
                "{}: the scenario init generated does not validate ({}); this is a gauntlet bug, \
                 please report it with your manifests",
                file.display(),
                problems.join("; ")
            ),
        }
    }
}

impl std::error::Error for InitError {}
