//! `gauntlet power --html FILE`: the operating characteristic as one self-contained page.
//!
//! A reader wants the curve first (how fast P(rolled back) rises with the fault, where it
//! crosses 0.95), then the numbers behind it. One panel per fault kind, since a share of
//! errors and an added delay have no common axis; the grid points sit evenly spaced on it, as
//! the grid itself is roughly geometric and a linear axis would crowd its small magnitudes
//! into one corner. Independent of `report::html` (the scenario pages): only the conventions
//! are shared, an inline SVG per plot, inline styles, Okabe–Ito colours that also differ in
//! marker shape, and no request of any kind when the page is opened.

use std::path::Path;

use minijinja::Environment;
use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde::Serialize;

use super::grid::FaultKind;
use super::report::{CAUGHT, Point, PowerReport, Quantiles};

const TEMPLATE: &str = include_str!("page.html");
const WIDTH: u32 = 960;
const HEIGHT: u32 = 300;
const FONT: &str = "sans-serif";

/// The errors curve: Okabe–Ito vermillion, circles.
pub const ERRORS_COLOUR: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
/// The latency curve: Okabe–Ito blue, triangles.
pub const LATENCY_COLOUR: RGBColor = RGBColor(0x00, 0x72, 0xB2);
/// The 0.95 line: Okabe–Ito bluish green, dashed.
pub const CAUGHT_COLOUR: RGBColor = RGBColor(0x00, 0x9E, 0x73);
const GRID_LIGHT: RGBColor = RGBColor(0xee, 0xee, 0xee);
const GRID_BOLD: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);

/// `#rrggbb`, as plotters writes a colour into the SVG.
pub fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

#[derive(Serialize)]
struct Panel {
    kind: &'static str,
    title: String,
    colour: String,
    marker: &'static str,
    caught: Option<String>,
    svg: String,
}

#[derive(Serialize)]
struct Row {
    fault: String,
    label: String,
    rolled_back: String,
    interval: String,
    promoted: String,
    paused: String,
    undecided: String,
    median: String,
    p95: String,
    caught: bool,
}

#[derive(Serialize)]
struct Page {
    title: String,
    version: &'static str,
    setup: Vec<(String, String)>,
    summary: Vec<(String, String)>,
    cost: String,
    panels: Vec<Panel>,
    rows: Vec<Row>,
    caught_pct: String,
}

fn pct(p: f64) -> String {
    format!("{:.1} %", p * 100.0)
}

fn secs(q: Option<Quantiles>) -> (String, String) {
    match q {
        Some(q) => (format!("{:.1} s", q.median), format!("{:.1} s", q.p95)),
        None => ("–".into(), "–".into()),
    }
}

fn magnitude(kind: FaultKind, v: f64) -> String {
    match kind {
        FaultKind::Errors => format!("{} % errors", v * 100.0),
        FaultKind::Latency => format!("+{v} ms"),
    }
}

/// The page for `report`.
///
/// # Errors
/// A plot or the template failed (a bug, not an input problem).
pub fn render(report: &PowerReport) -> Result<String, String> {
    let s = &report.setup;
    let kinds = [
        (FaultKind::Errors, report.smallest_caught.errors),
        (FaultKind::Latency, report.smallest_caught.latency),
    ];
    let mut panels = Vec::new();
    for (kind, caught) in kinds {
        let points: Vec<&Point> = report.points.iter().filter(|p| p.fault == kind).collect();
        if points.is_empty() {
            continue;
        }
        let (colour, marker, title) = match kind {
            FaultKind::Errors => (ERRORS_COLOUR, "●", "Errors: share of failed requests"),
            FaultKind::Latency => (LATENCY_COLOUR, "▲", "Latency: delay added to each request"),
        };
        panels.push(Panel {
            kind: match kind {
                FaultKind::Errors => "errors",
                FaultKind::Latency => "latency",
            },
            title: title.into(),
            colour: hex(colour),
            marker,
            caught: caught.map(|v| magnitude(kind, v)),
            svg: plot(kind, &points, caught, colour)?,
        });
    }
    let rows = report
        .points
        .iter()
        .map(|p| {
            let (median, p95) = secs(p.decision_s);
            let caught = match p.fault {
                FaultKind::Errors => report.smallest_caught.errors,
                FaultKind::Latency => report.smallest_caught.latency,
            };
            Row {
                fault: p.fault.to_string(),
                label: p.label.clone(),
                rolled_back: pct(p.rolled_back),
                interval: format!(
                    "{} – {}",
                    pct(p.rolled_back_ci95[0]),
                    pct(p.rolled_back_ci95[1])
                ),
                promoted: pct(p.promoted),
                paused: pct(p.paused),
                undecided: pct(p.undecided),
                median,
                p95,
                caught: caught == Some(p.magnitude),
            }
        })
        .collect();
    let none = || "none of the grid".to_string();
    let mut summary = vec![
        (
            "smallest caught, errors".to_string(),
            report
                .smallest_caught
                .errors
                .map_or_else(none, |v| magnitude(FaultKind::Errors, v)),
        ),
        (
            "smallest caught, latency".to_string(),
            report
                .smallest_caught
                .latency
                .map_or_else(none, |v| magnitude(FaultKind::Latency, v)),
        ),
    ];
    if let (Some(p), Some([lo, hi])) = (report.false_rollback, report.false_rollback_ci95) {
        summary.push((
            "false rollbacks (no fault)".to_string(),
            format!("{} (95 % interval {} – {})", pct(p), pct(lo), pct(hi)),
        ));
    }
    let setup = vec![
        ("target".to_string(), s.target.clone()),
        ("controller".to_string(), s.controller.clone()),
        ("rate".to_string(), format!("{} requests/s", s.rate)),
        ("runs per point".to_string(), s.runs.to_string()),
        ("seed".to_string(), s.seed.to_string()),
        ("time scale".to_string(), s.time_scale.to_string()),
        (
            "horizon".to_string(),
            format!("{} s after the release", s.within_s),
        ),
        (
            "scrape interval".to_string(),
            format!("{} s", s.scrape_interval_s),
        ),
    ];
    let c = &report.cost;
    let page = Page {
        title: format!("gauntlet power: {}", s.target),
        version: env!("CARGO_PKG_VERSION"),
        setup,
        summary,
        cost: format!(
            "{} simulated rollouts in {:.1} s: {} writes, {} queries, {} samples",
            report.points.iter().map(|p| p.runs).sum::<usize>(),
            c.wall_s,
            c.writes,
            c.queries,
            c.samples
        ),
        panels,
        rows,
        caught_pct: format!("{}", CAUGHT),
    };
    let mut env = Environment::new();
    env.add_template("page.html", TEMPLATE)
        .map_err(|e| format!("the page template: {e}"))?;
    env.get_template("page.html")
        .and_then(|t| t.render(minijinja::value::Serde(&page)))
        .map_err(|e| format!("rendering the page: {e}"))
}

/// Writes the page for `report` to `path`, via a temporary file beside it, so a reader never
/// sees half a page.
///
/// # Errors
/// The page could not be drawn, or the file written.
pub fn write(path: &Path, report: &PowerReport) -> Result<(), String> {
    let page = render(report)?;
    let tmp = path.with_extension("html.tmp");
    std::fs::write(&tmp, page)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("--html: cannot write {}: {e}", path.display())
        })
}

/// Whether `path` can be written, checked before a long run rather than after it: a file
/// beside it is created and removed.
///
/// # Errors
/// Why not, naming `flag` and the path.
pub fn check_writable(flag: &str, path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.is_dir() {
        return Err(format!("{flag}: {} is a folder", path.display()));
    }
    tempfile::Builder::new()
        .prefix(".gauntlet-power-")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| format!("{flag}: cannot write {}: {e}", path.display()))
}

/// One panel: P(rolled back) per grid point with its 95 % interval, the 0.95 line, and a ring
/// around the smallest magnitude caught.
fn plot(
    kind: FaultKind,
    points: &[&Point],
    caught: Option<f64>,
    colour: RGBColor,
) -> Result<String, String> {
    let n = points.len() as i32;
    let labels: Vec<String> = points.iter().map(|p| p.label.clone()).collect();
    let x_desc = match kind {
        FaultKind::Errors => "share of requests failing (grid points, evenly spaced)",
        FaultKind::Latency => "delay added per request (grid points, evenly spaced)",
    };
    let mut svg = String::new();
    {
        let root: DrawingArea<SVGBackend, Shift> =
            SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin_top(14)
            .margin_right(16)
            .margin_left(6)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((0..n - 1).into_segmented(), -0.02f64..1.04f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("P(rolled back)")
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    labels.get(*i as usize).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .y_label_formatter(&|y| format!("{y:.1}"))
            .x_labels(points.len())
            .y_labels(6)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 13))
            .max_light_lines(1)
            .light_line_style(GRID_LIGHT)
            .bold_line_style(GRID_BOLD)
            .draw()
            .map_err(err)?;
        let line = ShapeStyle::from(CAUGHT_COLOUR).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                [
                    (SegmentValue::Exact(0), CAUGHT),
                    (SegmentValue::Last, CAUGHT),
                ],
                8,
                5,
                line,
            ))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("caught: {CAUGHT}"),
                (SegmentValue::Exact(0), CAUGHT - 0.035),
                (FONT, 12).into_font().color(&CAUGHT_COLOUR),
            )))
            .map_err(err)?;
        let at = |i: usize, y: f64| (SegmentValue::CenterOf(i as i32), y);
        let bar = ShapeStyle::from(colour).stroke_width(2);
        // The 95 % interval: a vertical bar with caps.
        for (i, p) in points.iter().enumerate() {
            let [lo, hi] = p.rolled_back_ci95;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![at(i, lo), at(i, hi)],
                    bar,
                )))
                .map_err(err)?;
            for y in [lo, hi] {
                chart
                    .draw_series(std::iter::once(
                        EmptyElement::at(at(i, y)) + PathElement::new(vec![(-6, 0), (6, 0)], bar),
                    ))
                    .map_err(err)?;
            }
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().enumerate().map(|(i, p)| at(i, p.rolled_back)),
                ShapeStyle::from(colour).stroke_width(2),
            ))
            .map_err(err)?;
        let fill = ShapeStyle::from(colour).filled();
        for (i, p) in points.iter().enumerate() {
            let c = at(i, p.rolled_back);
            match kind {
                FaultKind::Errors => chart
                    .draw_series(std::iter::once(Circle::new(c, 5, fill)))
                    .map(drop),
                FaultKind::Latency => chart
                    .draw_series(std::iter::once(TriangleMarker::new(c, 7, fill)))
                    .map(drop),
            }
            .map_err(err)?;
        }
        if let Some((i, p)) = caught.and_then(|m| {
            points
                .iter()
                .enumerate()
                .find(|(_, p)| p.magnitude == m)
                .map(|(i, p)| (i, *p))
        }) {
            let ring = ShapeStyle::from(BLACK).stroke_width(2);
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at(at(i, p.rolled_back))
                        + Circle::new((0, 0), 11, ring)
                        + Text::new(
                            "smallest caught",
                            (-40, 18),
                            (FONT, 12).into_font().color(&BLACK),
                        ),
                ))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    // Inline in HTML the namespace is implied; without it the page holds no URL at all.
    Ok(svg.replace(" xmlns=\"http://www.w3.org/2000/svg\"", ""))
}

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing a plot: {e}")
}

#[cfg(test)]
mod tests;
