//! Running `go`: found on a given PATH (so tests can put a fake first, or none at all), its
//! stderr kept in the build log and its failures sorted into download and compile errors, which
//! have different fixes.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::BuildError;

/// How many lines of go's output an error quotes; the rest is in the log.
const TAIL_LINES: usize = 25;
/// How often a silent `go build` still reports progress.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The three Go modules: Flagger and Prometheus need other k8s.io modules than the control
/// plane and have their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GoModule {
    ControlPlane,
    Flagger,
    Prometheus,
}

impl GoModule {
    pub const ALL: [GoModule; 3] = [
        GoModule::ControlPlane,
        GoModule::Flagger,
        GoModule::Prometheus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GoModule::ControlPlane => "gauntlet.local/controlplane",
            GoModule::Flagger => "gauntlet.local/controlplane/flagger",
            GoModule::Prometheus => "gauntlet.local/controlplane/prometheus",
        }
    }

    /// Its folder, given the folder of the first go.mod.
    pub fn folder(self, module_folder: &Path) -> PathBuf {
        match self {
            GoModule::ControlPlane => module_folder.to_path_buf(),
            GoModule::Flagger => module_folder.join("flagger"),
            GoModule::Prometheus => module_folder.join("prometheus"),
        }
    }
}

pub(super) struct Go {
    program: PathBuf,
    path: Option<OsString>,
}

impl Go {
    /// `go` on `path` (the process's PATH when `None`): the first executable file of that name.
    pub fn find(path: Option<&OsStr>) -> Option<Go> {
        let search = path
            .map(OsStr::to_os_string)
            .or_else(|| std::env::var_os("PATH"))?;
        let program = std::env::split_paths(&search)
            .map(|dir| dir.join("go"))
            .find(|candidate| super::is_executable(candidate))?;
        Some(Go {
            program,
            path: path.map(OsStr::to_os_string),
        })
    }

    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(args).current_dir(dir).stdin(Stdio::null());
        if let Some(path) = &self.path {
            cmd.env("PATH", path);
        }
        cmd
    }

    /// Runs a short go command and returns its stdout; a failure quotes its stderr.
    pub fn stdout(&self, dir: &Path, args: &[&str]) -> Result<String, BuildError> {
        let out = self.output(dir, args)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(BuildError::Go {
                step: step(args),
                dir: dir.to_path_buf(),
                detail: tail(&String::from_utf8_lossy(&out.stderr)),
            })
        }
    }

    pub fn output(&self, dir: &Path, args: &[&str]) -> Result<Output, BuildError> {
        self.command(dir, args)
            .output()
            .map_err(BuildError::io(format!(
                "running {} {} in {}",
                self.program.display(),
                args.join(" "),
                dir.display()
            )))
    }

    /// The number of packages `go build tool` involves (the progress total). This is also the
    /// step that downloads missing modules, so its failure is reported as a download failure.
    pub fn count_deps(&self, folder: &Path, log: &Path) -> Result<u64, BuildError> {
        let args = ["list", "-deps", "tool"];
        let out = self.output(folder, &args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        append_log(log, folder, &args, &stderr)?;
        if !out.status.success() {
            return Err(self.download_failed(folder, &args, &stderr, log));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count() as u64)
    }

    /// `go build -v -o bin/ tool` in `folder`: `on_progress(done, package)` for each package go
    /// names as it compiles it, and again every [`HEARTBEAT`] while it is silent (linking, or a
    /// warm cache where it names nothing), so a display can show the build is alive. Every line
    /// goes to the log.
    pub fn build_tools(
        &self,
        folder: &Path,
        bin: &Path,
        log: &Path,
        flags: &[&str],
        on_progress: &mut dyn FnMut(u64, &str),
    ) -> Result<(), BuildError> {
        let mut out_dir = bin.as_os_str().to_os_string();
        out_dir.push("/");
        let out_dir = out_dir.to_string_lossy().into_owned();
        let mut args = vec!["build"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["-v", "-o", &out_dir, "tool"]);

        let mut log_file = open_log(log)?;
        let _ = writeln!(
            log_file,
            "$ go {} (in {})",
            args.join(" "),
            folder.display()
        );
        let mut child = self
            .command(folder, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(BuildError::io(format!(
                "starting {} build in {}",
                self.program.display(),
                folder.display()
            )))?;
        // A thread reads, so this one can wake up for heartbeats while go is silent.
        let (tx, lines) = mpsc::channel();
        let reader = child.stderr.take().map(|stderr| {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut raw = Vec::new();
                while reader.read_until(b'\n', &mut raw).unwrap_or(0) > 0 {
                    let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                    raw.clear();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
        });
        let mut messages = Vec::new();
        let mut done = 0;
        let mut current = String::new();
        loop {
            match lines.recv_timeout(HEARTBEAT) {
                Ok(line) => {
                    let _ = writeln!(log_file, "{line}");
                    if is_package_line(&line) {
                        done += 1;
                        current = line;
                        on_progress(done, &current);
                    } else if !line.is_empty() {
                        messages.push(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => on_progress(done, &current),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if let Some(reader) = reader {
            let _ = reader.join();
        }
        let status = child.wait().map_err(BuildError::io(format!(
            "waiting for go build in {}",
            folder.display()
        )))?;
        if status.success() {
            return Ok(());
        }
        let _ = writeln!(log_file, "(go build exited with {status})");
        let text = messages.join("\n");
        if looks_like_download(&text) {
            return Err(self.download_failed(folder, &args, &text, log));
        }
        Err(BuildError::CompileFailed {
            step: step(&args),
            module_folder: folder.to_path_buf(),
            tail: if text.is_empty() {
                format!("(go printed no error; it exited with {status})")
            } else {
                tail(&text)
            },
            log: log.to_path_buf(),
        })
    }

    fn download_failed(&self, folder: &Path, args: &[&str], text: &str, log: &Path) -> BuildError {
        let env = self
            .stdout(folder, &["env", "GOPROXY", "GOFLAGS"])
            .unwrap_or_default();
        let mut env = env.lines();
        let go_env = format!(
            "GOPROXY=`{}`, GOFLAGS=`{}`",
            env.next().unwrap_or_default(),
            env.next().unwrap_or_default()
        );
        BuildError::DownloadFailed {
            step: step(args),
            module_folder: folder.to_path_buf(),
            go_env,
            tail: tail(text),
            log: log.to_path_buf(),
        }
    }
}

/// go's `-v` output names a package per line (an import path: no spaces); everything else is a
/// message (`# pkg` headers, `file.go:1:2: …` errors, `go: …` notes).
fn is_package_line(line: &str) -> bool {
    !line.is_empty()
        && !line.starts_with('#')
        && !line.contains(char::is_whitespace)
        && !line.contains(".go:")
}

/// Failures that more compiling would not fix: the module proxy or the checksums.
fn looks_like_download(text: &str) -> bool {
    [
        "go: downloading",
        "dial tcp",
        "proxy.golang.org",
        "verifying ",
        "checksum mismatch",
        "missing go.sum entry",
        "GOPROXY",
        "GOFLAGS=-mod=mod",
        "unrecognized import path",
        "no such host",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

fn step(args: &[&str]) -> String {
    format!("go {}", args.join(" "))
}

/// The last lines of go's output, each cut to a readable length.
pub(super) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..]
        .iter()
        .map(|l| {
            if l.chars().count() > 300 {
                let cut: String = l.chars().take(300).collect();
                format!("  {cut}…")
            } else {
                format!("  {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn open_log(log: &Path) -> Result<File, BuildError> {
    File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(BuildError::io(format!(
            "opening the build log {}",
            log.display()
        )))
}

fn append_log(log: &Path, folder: &Path, args: &[&str], text: &str) -> Result<(), BuildError> {
    let mut file = open_log(log)?;
    let _ = writeln!(file, "$ go {} (in {})", args.join(" "), folder.display());
    let _ = file.write_all(text.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_lines_are_import_paths_and_nothing_else() {
        assert!(is_package_line("k8s.io/apiserver/pkg/server"));
        assert!(is_package_line("runtime/cgo"));
        assert!(!is_package_line("# k8s.io/apiserver/pkg/server"));
        assert!(!is_package_line("pkg/server/config.go:12:2: undefined: x"));
        assert!(!is_package_line("go: downloading k8s.io/api v0.34.1"));
        assert!(!is_package_line(""));
    }

    #[test]
    fn a_tail_keeps_the_last_lines_and_cuts_long_ones() {
        let text: String = (0..40).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text);
        assert!(t.starts_with("  line 15"), "{t}");
        assert!(t.ends_with("  line 39"));
        let long = "x".repeat(1000);
        assert_eq!(tail(&long).chars().count(), 2 + 300 + 1);
    }

    #[test]
    fn proxy_and_checksum_failures_are_downloads() {
        assert!(looks_like_download(
            "go: k8s.io/api@v0.34.1: Get \"https://proxy.golang.org/...\": dial tcp: lookup proxy.golang.org: no such host"
        ));
        assert!(looks_like_download(
            "verifying github.com/x/y@v1.0.0: checksum mismatch"
        ));
        assert!(!looks_like_download("# k8s.io/x\nx.go:1:2: undefined: y"));
    }
}
