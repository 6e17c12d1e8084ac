//! The HTML report as a person gets it: a real local run of the 500s scenario, its page opened
//! in headless Chromium (Debian's `chromium`, installed by `.ci/deps`), the DOM read back, a
//! screenshot taken and kept under `target/test-artifacts/`. Every request the browser makes goes
//! to a local proxy (nothing leaves the machine), and Chromium's NetLog tells the page's own
//! requests (made for the `file://` origin) from the browser's housekeeping (update checks,
//! made for no origin): the page must make none. `gauntlet report` on the run's JSON must give
//! the same page.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SCENARIO: &str = "suites/argo/errors-rolled-back.yaml";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn gauntlet(tmp: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gauntlet"));
    cmd.current_dir(repo()).env("TMPDIR", tmp).env_remove("CI");
    cmd
}

/// Where test artifacts are kept: `target/test-artifacts/`.
fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chromium() -> PathBuf {
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "chromium is not installed: this test opens the HTML report in Debian's headless \
         Chromium; run `bash .ci/deps` (as root) to install it"
    );
}

/// A local listener every request of the browser is sent to (as its proxy); it must see none
/// from the report. Records the first line of each connection (`CONNECT host:443`, `GET url`).
struct Trap {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Trap {
    fn start() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut line = String::new();
                        let _ = BufReader::new(stream.take(4096)).read_line(&mut line);
                        seen2.lock().unwrap().push(line.trim().to_string());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Trap {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Chromium process group (its zygote and renderers are in it), killed whole when dropped:
/// on a panic or a timeout the browser is still running, and after a normal exit a helper may
/// linger.
struct Browser {
    child: Child,
    pgid: i32,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-self.pgid);
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// What headless Chromium did with a page: its output, and the URLs the page itself asked the
/// network for.
struct Shown {
    output: Output,
    page_requests: Vec<String>,
}

/// Runs headless Chromium on `page` with `mode` (`--dump-dom`, `--screenshot=...`), every
/// request sent to `trap`, a fresh profile, a NetLog, and a deadline.
fn run_chromium(page: &Path, mode: &[String], trap: &Trap) -> Shown {
    let profile = tempfile::tempdir().unwrap();
    let netlog = profile.path().join("netlog.json");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--window-size=1200,3200",
        "--virtual-time-budget=3000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    // Every scheme and host, loopback included, goes to the trap.
    .arg(format!("--proxy-server=http://127.0.0.1:{}", trap.port))
    .arg("--proxy-bypass-list=<-loopback>")
    .arg(format!("--log-net-log={}", netlog.display()))
    .args(mode)
    .arg(format!("file://{}", page.display()))
    .env("HOME", profile.path())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let child = cmd.spawn().expect("chromium starts");
    let pgid = child.id() as i32;
    let mut browser = Browser { child, pgid };
    let child = &mut browser.child;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let readers = (
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = out.read_to_end(&mut b);
            b
        }),
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = err.read_to_end(&mut b);
            b
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not finish within 90s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(browser);
    let output = Output {
        status,
        stdout: readers.0.join().unwrap(),
        stderr: readers.1.join().unwrap(),
    };
    let log = std::fs::read(&netlog)
        .unwrap_or_else(|e| panic!("chromium wrote no NetLog ({e}): {output:?}"));
    Shown {
        output,
        page_requests: page_requests(&log),
    }
}

/// The URLs of the requests the NetLog records as made for a page (any initiator but the
/// browser's own "not an origin"), `file:` and `data:` aside.
fn page_requests(netlog: &[u8]) -> Vec<String> {
    let log: serde_json::Value = serde_json::from_slice(netlog).expect("a complete NetLog");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("the NetLog names URL_REQUEST_START_JOB");
    log["events"]
        .as_array()
        .expect("NetLog events")
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter_map(|e| {
            let url = e["params"]["url"].as_str()?;
            let initiator = e["params"]["initiator"].as_str().unwrap_or("");
            let ours = !url.starts_with("file:") && !url.starts_with("data:");
            (ours && initiator != "not an origin").then(|| url.to_string())
        })
        .collect()
}

/// Share of pixels that are not (nearly) white, and the number of distinct colours.
fn ink(png_path: &Path) -> (f64, usize) {
    let decoder = png::Decoder::new(BufReader::new(std::fs::File::open(png_path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    assert!(channels >= 3, "an RGB screenshot: {:?}", info.color_type);
    let mut colours = std::collections::HashSet::new();
    let mut inked = 0usize;
    let pixels = bytes.len() / channels;
    for px in bytes.chunks(channels) {
        let (r, g, b) = (px[0], px[1], px[2]);
        if r < 240 || g < 240 || b < 240 {
            inked += 1;
        }
        if colours.len() < 10_000 {
            colours.insert((r, g, b));
        }
    }
    (inked as f64 / pixels as f64, colours.len())
}

#[test]
fn the_page_of_a_real_rollback_renders_in_chromium_and_fetches_nothing() {
    let browser = chromium();
    let tmp = tempfile::tempdir().unwrap();
    let (json, html, art) = (
        tmp.path().join("r.json"),
        tmp.path().join("r.html"),
        tmp.path().join("art"),
    );
    let run = gauntlet(tmp.path())
        .args(["run", "--seed", "11", SCENARIO, "--json"])
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .arg("--artifacts")
        .arg(&art)
        .output()
        .unwrap();
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    // A loaded machine may miss the budget (exit 1); the page is what is tested here.
    assert!(
        matches!(run.status.code(), Some(0 | 1)),
        "the run did not complete: {said}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let s = &report["scenarios"][0];
    assert_eq!(s["outcome"], "rolled-back", "{said}");
    let failed_measurements = s["series"]["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["phase"] == "Failed")
        .count();
    assert!(failed_measurements > 0, "no failed measurement: {said}");

    // The same page from the kept JSON, and one in the artifacts folder.
    let again = tmp.path().join("again.html");
    let out = gauntlet(tmp.path())
        .arg("report")
        .arg(&json)
        .arg("--html")
        .arg(&again)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page == std::fs::read_to_string(&again).unwrap(),
        "gauntlet report drew another page from the run's JSON"
    );
    assert!(art.join("report.html").is_file());
    assert!(art.join("argo-500s-rolled-back/report.html").is_file());

    // The check works: a page that does fetch is caught, and its request reached the trap.
    let trap = Trap::start();
    let control = tmp.path().join("fetches.html");
    std::fs::write(
        &control,
        "<!doctype html><img src=\"http://gauntlet-trap.invalid/x.png\">",
    )
    .unwrap();
    let probe = run_chromium(&control, &["--dump-dom".into()], &trap);
    assert!(probe.output.status.success(), "{:?}", probe.output);
    assert_eq!(
        probe.page_requests,
        ["http://gauntlet-trap.invalid/x.png"],
        "the NetLog does not show the request of a page that makes one (chromium at {})",
        browser.display()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !trap
        .seen()
        .iter()
        .any(|l| l.contains("gauntlet-trap.invalid"))
    {
        assert!(
            Instant::now() < deadline,
            "the proxy saw no request from a page that makes one: {:?}",
            trap.seen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The report: its DOM, then its screenshot.
    let dom = run_chromium(&html, &["--dump-dom".into()], &trap);
    assert!(dom.output.status.success(), "{:?}", dom.output);
    assert_eq!(
        dom.page_requests,
        Vec::<String>::new(),
        "the report made network requests"
    );
    let dom = String::from_utf8(dom.output.stdout).unwrap();
    assert!(dom.contains("<table id=\"summary\""), "{dom}");
    assert!(
        dom.contains("data-scenario=\"argo-500s-rolled-back\""),
        "no summary row"
    );
    let anchor = "s1-argo-500s-rolled-back";
    assert!(dom.contains(&format!("<tr id=\"row-{anchor}\"")));
    for (panel, series) in [
        ("weight", vec!["weight"]),
        ("requests", vec!["requests-1.0.0", "requests-2.0.0"]),
        ("errors", vec!["errors-1.0.0", "errors-2.0.0"]),
        ("latency", vec!["latency-1.0.0", "latency-2.0.0"]),
    ] {
        let figure = figure(&dom, &format!("{anchor}-{panel}"));
        assert_eq!(figure.matches("<svg").count(), 1, "{panel}");
        for s in series {
            assert!(
                figure.contains(&format!("data-series=\"{s}\"")),
                "{panel} lacks {s}"
            );
        }
    }
    let success_rate = dom
        .split("<figure ")
        .find(|f| f.contains("Analysis: success-rate"))
        .expect("a panel of the success-rate analysis");
    assert!(success_rate.contains("<svg"));
    assert!(success_rate.contains("data-series=\"failed\""));
    assert!(success_rate.contains("data-series=\"threshold-min\""));
    for marker in ["release", "decision", "budget-end"] {
        assert!(
            dom.contains(&format!("data-marker=\"{marker}\"")),
            "{marker}"
        );
    }
    // The judge's finding beside the decision: the 500s justify the rollback.
    assert!(
        dom.contains("<div class=\"judge agree\" data-finding=\"justified\">"),
        "no judge box"
    );
    assert!(dom.contains(
        "<tr data-metric=\"error-rate\"><td>Error rate</td><td class=\"class-worse\">worse</td>"
    ));

    let shot = artifacts_dir().join("html-report-argo-500s.png");
    let _ = std::fs::remove_file(&shot);
    let taken = run_chromium(&html, &[format!("--screenshot={}", shot.display())], &trap);
    assert!(taken.output.status.success(), "{:?}", taken.output);
    assert_eq!(
        taken.page_requests,
        Vec::<String>::new(),
        "the report made network requests"
    );
    let (inked, colours) = ink(&shot);
    assert!(
        inked > 0.03 && colours > 20,
        "the screenshot looks blank: {:.1}% ink, {colours} colours ({})",
        inked * 100.0,
        shot.display()
    );
    eprintln!("screenshot kept at {}", shot.display());
}

fn figure<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no panel {id}"));
    let end = dom[start..].find("</figure>").unwrap();
    &dom[start..start + end]
}

#[test]
fn gauntlet_report_refuses_a_missing_or_malformed_json_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let html = tmp.path().join("r.html");
    let missing = gauntlet(tmp.path())
        .args(["report", "nowhere.json", "--html"])
        .arg(&html)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot read nowhere.json"), "{stderr}");

    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{\"version\": \"0.1.0\", \"scenarios\": 3}").unwrap();
    let malformed = gauntlet(tmp.path())
        .arg("report")
        .arg(&bad)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert_eq!(malformed.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.json is not a gauntlet JSON report"),
        "{stderr}"
    );
    assert!(!html.exists());
}
