//! The page of a fixed report: both curves with their intervals, the 0.95 line, the smallest
//! caught, the table, and nothing fetched when it opens.

use super::*;
use crate::power::report::{Caught, Cost, Setup};

fn point(fault: FaultKind, magnitude: f64, label: &str, rolled_back: f64, ci: [f64; 2]) -> Point {
    Point {
        fault,
        magnitude,
        label: label.into(),
        runs: 200,
        rolled_back,
        promoted: 1.0 - rolled_back,
        paused: 0.0,
        undecided: 0.0,
        rolled_back_ci95: ci,
        decision_s: Some(Quantiles {
            median: 21.2,
            p95: 62.0,
        }),
    }
}

fn report() -> PowerReport {
    use FaultKind::{Errors, Latency};
    PowerReport {
        setup: Setup {
            target: "fixtures/apps/argo".into(),
            controller: "argo".into(),
            rate: 40.0,
            time_scale: 1.0,
            runs: 200,
            seed: 1,
            scrape_interval_s: 1.0,
            within_s: 3600.0,
        },
        points: vec![
            point(Errors, 0.0, "0%", 0.0, [0.0, 0.019]),
            point(Errors, 0.02, "2%", 0.03, [0.014, 0.064]),
            point(Errors, 0.05, "5%", 0.68, [0.612, 0.741]),
            point(Errors, 0.1, "10%", 1.0, [0.981, 1.0]),
            point(Latency, 0.0, "+0ms", 0.0, [0.0, 0.019]),
            point(Latency, 200.0, "+200ms", 0.0, [0.0, 0.019]),
            point(Latency, 500.0, "+500ms", 1.0, [0.981, 1.0]),
        ],
        smallest_caught: Caught {
            errors: Some(0.1),
            latency: Some(500.0),
        },
        false_rollback: Some(0.0),
        false_rollback_ci95: Some([0.0, 0.019]),
        cost: Cost {
            wall_s: 42.5,
            writes: 12_702,
            queries: 50_808,
            samples: 6_726_444,
        },
    }
}

/// The inline SVG of the panel of `kind`.
fn panel<'a>(page: &'a str, kind: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"plot-{kind}\""))
        .unwrap_or_else(|| panic!("no {kind} panel"));
    let rest = &page[start..];
    let from = rest.find("<svg").expect("an inline svg");
    let to = rest.find("</svg>").expect("a closed svg");
    &rest[from..to]
}

/// The elements `<tag ...>` of `svg` whose attributes contain `attr`.
fn count(svg: &str, tag: &str, attr: &str) -> usize {
    svg.split(&format!("<{tag} "))
        .skip(1)
        .filter(|e| e.split('>').next().is_some_and(|a| a.contains(attr)))
        .count()
}

#[test]
fn each_curve_has_its_points_error_bars_and_the_caught_line() {
    let page = render(&report()).unwrap();
    let errors = panel(&page, "errors");
    let latency = panel(&page, "latency");
    let fill = |c| format!("fill=\"{}\"", hex(c));
    let stroke = |c| format!("stroke=\"{}\"", hex(c));
    // One marker per grid point: circles for errors, triangles for latency.
    assert_eq!(count(errors, "circle", &fill(ERRORS_COLOUR)), 4, "{errors}");
    assert_eq!(
        count(latency, "polygon", &fill(LATENCY_COLOUR)),
        3,
        "{latency}"
    );
    assert_eq!(count(errors, "polygon", &fill(LATENCY_COLOUR)), 0);
    // Per point a bar and two caps, plus the curve itself, all in the curve's colour.
    assert!(count(errors, "polyline", &stroke(ERRORS_COLOUR)) > 4 * 3);
    assert!(count(latency, "polyline", &stroke(LATENCY_COLOUR)) > 3 * 3);
    // The dashed 0.95 line in both panels, labelled.
    for svg in [errors, latency] {
        assert!(
            svg.contains(&stroke(CAUGHT_COLOUR)),
            "no 0.95 line in {svg}"
        );
        assert!(svg.contains("caught: 0.95"));
        // The smallest caught point is ringed.
        assert!(svg.contains("smallest caught"));
    }
    assert!(page.contains("smallest caught: 10 % errors"), "{page}");
    assert!(page.contains("smallest caught: +500 ms"), "{page}");
}

#[test]
fn the_table_has_a_row_per_point_and_the_setup() {
    let page = render(&report()).unwrap();
    assert_eq!(page.matches("<tr class=\"errors").count(), 4);
    assert_eq!(page.matches("<tr class=\"latency").count(), 3);
    assert_eq!(
        page.matches(" caught\">").count(),
        2,
        "the two smallest caught"
    );
    for cell in [
        "68.0 %",
        "61.2 % – 74.1 %",
        "32.0 %",
        "21.2 s",
        "62.0 s",
        "+500ms",
        // minijinja escapes `/` in HTML.
        "fixtures&#x2f;apps&#x2f;argo",
        "40 requests&#x2f;s",
        "50808 queries",
        "6726444 samples",
        "0.0 % (95 % interval 0.0 % – 1.9 %)",
    ] {
        assert!(page.contains(cell), "no {cell:?} in the page");
    }
}

#[test]
fn the_page_fetches_nothing() {
    let page = render(&report()).unwrap();
    assert!(!page.contains("http"), "a URL in the page");
    assert!(!page.contains("src="), "a fetched resource in the page");
    assert!(!page.contains("<link"), "a linked resource in the page");
}

#[test]
fn a_grid_of_one_kind_draws_one_panel() {
    let mut r = report();
    r.points.retain(|p| p.fault == FaultKind::Errors);
    r.smallest_caught.latency = None;
    let page = render(&r).unwrap();
    assert!(page.contains("id=\"plot-errors\""));
    assert!(!page.contains("id=\"plot-latency\""));
}

#[test]
fn an_unwritable_path_is_named_with_its_flag() {
    let e = check_writable("--html", Path::new("/nonexistent/dir/power.html")).unwrap_err();
    assert!(e.starts_with("--html: "), "{e}");
    assert!(e.contains("/nonexistent/dir/power.html"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    assert!(check_writable("--html", &dir.path().join("p.html")).is_ok());
    assert!(
        check_writable("--html", dir.path()).is_err(),
        "a folder is no file"
    );
    // Nothing is left behind by the check.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
