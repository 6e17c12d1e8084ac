//! The plots of one scenario, drawn by plotters as SVG text for the page to inline.
//!
//! Every panel shares one time axis (the same x range, margins and label widths), so a
//! moment lines up from the weight down to the last metric. Colours are the Okabe–Ito set,
//! which stays distinguishable with the common colour-vision deficiencies, and every colour
//! also differs in line style or marker shape, so a grey print still tells them apart.

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

use crate::report::model::{MarkerKind, MeasurementPoint, ScenarioReport, Series};
use crate::report::series::versions;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 170;
const Y_LABELS: u32 = 70;
const X_LABELS: u32 = 34;
const FONT: &str = "sans-serif";
/// The time axis never reaches past a day either side of the release.
const LIMIT_S: f64 = 86_400.0;
/// Nor a value axis past ±1e12.
const LIMIT_Y: f64 = 1e12;
/// Windows shorter than this (the one cut at the release, the last one) make a rate jump.
const SHORTEST_WINDOW_S: f64 = 0.25;

const BLACK_: RGBColor = RGBColor(0, 0, 0);
const ORANGE: RGBColor = RGBColor(0xE6, 0x9F, 0x00);
const SKY: RGBColor = RGBColor(0x56, 0xB4, 0xE9);
const GREEN: RGBColor = RGBColor(0x00, 0x9E, 0x73);
const BLUE: RGBColor = RGBColor(0x00, 0x72, 0xB2);
const VERMILLION: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
const PURPLE: RGBColor = RGBColor(0xCC, 0x79, 0xA7);
const GREY: RGBColor = RGBColor(0x77, 0x77, 0x77);

/// How a series is drawn, for the page's legend as much as for the plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stroke {
    Solid,
    Dashed,
    Dotted,
    /// A marker shape, not a line.
    Circle,
    Cross,
    Triangle,
}

/// One series of a panel, named as the page's legend and its tests name it.
#[derive(Debug, Clone, Serialize)]
pub struct Legend {
    /// Stable within a panel, e.g. `requests-1.0.0`, `threshold-max`.
    pub id: String,
    pub label: String,
    /// `#rrggbb`.
    pub colour: String,
    pub stroke: Stroke,
}

/// One plot.
#[derive(Debug, Clone, Serialize)]
pub struct Panel {
    /// `weight`, `requests`, `errors`, `latency`, or `metric-<n>` for the n-th metric.
    pub id: String,
    pub title: String,
    pub legend: Vec<Legend>,
    pub svg: String,
}

/// The time axis every panel of a scenario shares.
#[derive(Debug, Clone, Copy)]
struct Axis {
    from: f64,
    to: f64,
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Every panel of `report`: weight, requests/s, error rate, p95 latency, then one per metric.
pub fn panels(report: &ScenarioReport, series: &Series) -> Result<Vec<Panel>, String> {
    let axis = axis(report, series);
    let versions = versions(series);
    let mut out = vec![
        weight_panel(series, axis)?,
        traffic_panel(series, axis, &versions, TrafficKind::Requests)?,
        traffic_panel(series, axis, &versions, TrafficKind::Errors)?,
        traffic_panel(series, axis, &versions, TrafficKind::Latency)?,
    ];
    let mut metrics: Vec<&str> = Vec::new();
    for m in &series.measurements {
        if !metrics.contains(&m.metric.as_str()) {
            metrics.push(&m.metric);
        }
    }
    for (i, name) in metrics.into_iter().enumerate() {
        let points: Vec<&MeasurementPoint> = series
            .measurements
            .iter()
            .filter(|m| m.metric == name)
            .collect();
        out.push(metric_panel(i, name, &points, series, axis)?);
    }
    Ok(out)
}

/// From the warm-up's first window to the budget's end or the last thing seen, whichever is
/// later; so a decision that came late and a budget that ran out are both on the plot.
fn axis(report: &ScenarioReport, series: &Series) -> Axis {
    let first = series.traffic.first().map_or(0.0, |p| p.t_s).min(0.0);
    let mut last = series
        .traffic
        .last()
        .map_or(1.0, |p| p.t_s + p.dur_s)
        .max(report.expected.within_s)
        .max(report.decision_s.unwrap_or(0.0));
    for m in &series.measurements {
        last = last.max(m.t_s);
    }
    for w in &series.weight {
        last = last.max(w.t_s);
    }
    // Times far outside any run (a report edited by hand) would make the axis' ticks loop on
    // steps that no longer change a float: the axis stops at a day either side.
    let (first, last) = (first.clamp(-LIMIT_S, 0.0), last.clamp(1.0, LIMIT_S));
    let pad = ((last - first) * 0.02).max(0.5);
    Axis {
        from: first - pad,
        to: last + pad,
    }
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// Baseline blue and solid, the release vermillion and dashed, anything else after them.
fn version_style(i: usize, is_release: bool) -> (RGBColor, Stroke) {
    if is_release {
        return (VERMILLION, Stroke::Dashed);
    }
    match i {
        0 => (BLUE, Stroke::Solid),
        1 => (GREEN, Stroke::Dotted),
        2 => (PURPLE, Stroke::Solid),
        _ => (GREY, Stroke::Dotted),
    }
}

/// An SVG of the panel's size with axes over `axis` × `y`; `draw` adds the series. The
/// namespace attribute goes: inline SVG needs none, and the page names no address at all.
fn plot(
    axis: Axis,
    y: (f64, f64),
    y_desc: &str,
    y_fmt: &dyn Fn(&f64) -> String,
    markers: &Series,
    draw: &mut dyn FnMut(&mut Chart) -> Result<(), String>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root: DrawingArea<SVGBackend, Shift> =
            SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin_top(14)
            .margin_right(16)
            .margin_left(6)
            .x_label_area_size(X_LABELS)
            .y_label_area_size(Y_LABELS)
            .build_cartesian_2d(axis.from..axis.to, y.0..y.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the release")
            .y_desc(y_desc)
            .y_label_formatter(y_fmt)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_labels(12)
            .y_labels(5)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 13))
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
            .draw()
            .map_err(err)?;
        draw_markers(&mut chart, markers, y)?;
        draw(&mut chart)?;
        root.present().map_err(err)?;
    }
    Ok(svg.replace(" xmlns=\"http://www.w3.org/2000/svg\"", ""))
}

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing a plot: {e}")
}

/// `p` moved onto the plot's edge if it lies beyond: far-off coordinates overflow the pixel
/// arithmetic.
fn inside(chart: &Chart, (x, y): (f64, f64)) -> (f64, f64) {
    let (xs, ys) = (chart.x_range(), chart.y_range());
    (x.clamp(xs.start, xs.end), y.clamp(ys.start, ys.end))
}

/// Draws `points` as a line in `colour` and `stroke`.
fn line(
    chart: &mut Chart,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    stroke: Stroke,
    width: u32,
) -> Result<(), String> {
    if points.is_empty() {
        return Ok(());
    }
    // Clipped to the plot: a dashed line running far outside it would be drawn dash by dash.
    let points: Vec<(f64, f64)> = points.into_iter().map(|p| inside(chart, p)).collect();
    let style = colour.stroke_width(width);
    match stroke {
        Stroke::Dashed => chart
            .draw_series(DashedLineSeries::new(points, 7, 4, style))
            .map(drop),
        Stroke::Dotted => chart
            .draw_series(DashedLineSeries::new(points, 2, 3, style))
            .map(drop),
        _ => chart.draw_series(LineSeries::new(points, style)).map(drop),
    }
    .map_err(err)
}

/// The vertical lines every panel carries. Pod readiness is in the JSON and the timeline but
/// not drawn: a rollout starts many pods, and their lines would hide the ones that matter.
fn draw_markers(chart: &mut Chart, series: &Series, y: (f64, f64)) -> Result<(), String> {
    for m in &series.markers {
        let Some((colour, stroke, width)) = marker_style(m.kind) else {
            continue;
        };
        line(
            chart,
            vec![(m.t_s, y.0), (m.t_s, y.1)],
            colour,
            stroke,
            width,
        )?;
    }
    Ok(())
}

/// Colour, line style and width of a marker; `None` for the kinds not drawn.
pub fn marker_style(kind: MarkerKind) -> Option<(RGBColor, Stroke, u32)> {
    Some(match kind {
        MarkerKind::Release => (BLACK_, Stroke::Solid, 2),
        MarkerKind::Step => (GREY, Stroke::Dotted, 1),
        MarkerKind::Action => (PURPLE, Stroke::Solid, 2),
        MarkerKind::PodReady => return None,
        MarkerKind::PodRestart => (ORANGE, Stroke::Dashed, 2),
        MarkerKind::OomKilled => (PURPLE, Stroke::Dashed, 3),
        MarkerKind::Decision => (GREEN, Stroke::Solid, 3),
        MarkerKind::BudgetEnd => (VERMILLION, Stroke::Dashed, 3),
        MarkerKind::Fastest => (SKY, Stroke::Dotted, 2),
    })
}

/// The legend entry of a marker kind (the page lists each kind present once).
pub fn marker_legend(kind: MarkerKind) -> Option<Legend> {
    let (colour, stroke, _) = marker_style(kind)?;
    let label = match kind {
        MarkerKind::Release => "release",
        MarkerKind::Step => "step",
        MarkerKind::Action => "action",
        MarkerKind::PodReady => "pod ready",
        MarkerKind::PodRestart => "pod restart",
        MarkerKind::OomKilled => "OOM kill",
        MarkerKind::Decision => "decision",
        MarkerKind::BudgetEnd => "budget ends",
        MarkerKind::Fastest => "fastest possible decision",
    };
    let id = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Some(Legend {
        id,
        label: label.into(),
        colour: hex(colour),
        stroke,
    })
}

fn weight_panel(series: &Series, axis: Axis) -> Result<Panel, String> {
    let mut points = vec![(axis.from, 0.0)];
    let mut last = 0.0;
    for w in &series.weight {
        points.push((w.t_s, last));
        points.push((w.t_s, w.weight));
        last = w.weight;
    }
    points.push((axis.to, last));
    let svg = plot(
        axis,
        (0.0, 105.0),
        "canary weight %",
        &|y| format!("{y:.0}"),
        series,
        &mut |chart| line(chart, points.clone(), GREEN, Stroke::Solid, 2),
    )?;
    Ok(Panel {
        id: "weight".into(),
        title: "Canary weight applied by the router".into(),
        legend: vec![Legend {
            id: "weight".into(),
            label: "canary weight %".into(),
            colour: hex(GREEN),
            stroke: Stroke::Solid,
        }],
        svg,
    })
}

/// Consecutive points of one version, drawn as one line.
type Run = Vec<(f64, f64)>;

#[derive(Clone, Copy)]
enum TrafficKind {
    Requests,
    Errors,
    Latency,
}

fn traffic_panel(
    series: &Series,
    axis: Axis,
    versions: &[String],
    kind: TrafficKind,
) -> Result<Panel, String> {
    let (id, title, y_desc, unit) = match kind {
        TrafficKind::Requests => (
            "requests",
            "Requests per second, by version",
            "requests/s",
            "requests/s",
        ),
        TrafficKind::Errors => (
            "errors",
            "Error rate (5xx and no answer), by version",
            "errors %",
            "errors %",
        ),
        TrafficKind::Latency => ("latency", "p95 latency, by version", "p95 ms", "p95 ms"),
    };
    // One line per version, broken where the version got no request.
    let mut lines: Vec<(usize, Vec<Run>)> = Vec::new();
    let mut top: f64 = 0.0;
    for (i, v) in versions.iter().enumerate() {
        let mut runs: Vec<Run> = vec![Vec::new()];
        for p in &series.traffic {
            let value = p
                .by_version
                .get(v)
                .filter(|c| c.requests > 0)
                .and_then(|c| {
                    if p.dur_s < SHORTEST_WINDOW_S {
                        return None;
                    }
                    match kind {
                        TrafficKind::Requests => Some(c.requests as f64 / p.dur_s),
                        TrafficKind::Errors => Some(c.errors as f64 * 100.0 / c.requests as f64),
                        TrafficKind::Latency => c.p95_ms,
                    }
                });
            match value {
                Some(y) if y.is_finite() => {
                    top = top.max(y);
                    runs.last_mut()
                        .expect("one run")
                        .push((p.t_s + p.dur_s / 2.0, y));
                }
                _ if runs.last().is_some_and(|r| !r.is_empty()) => runs.push(Vec::new()),
                _ => {}
            }
        }
        lines.push((i, runs));
    }
    let floor_top = match kind {
        TrafficKind::Errors => 5.0,
        _ => 1.0,
    };
    let y_top = (top * 1.1).max(floor_top);
    let y_top = y_top.min(LIMIT_Y);
    let release = series.release_version.as_deref();
    let mut legend = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let (colour, stroke) = version_style(i, Some(v.as_str()) == release);
        let role = if Some(v.as_str()) == release {
            " (release)"
        } else {
            ""
        };
        legend.push(Legend {
            id: format!("{id}-{v}"),
            label: format!("{v}{role} {unit}"),
            colour: hex(colour),
            stroke,
        });
    }
    let fmt = |y: &f64| {
        if y_top < 10.0 {
            format!("{y:.1}")
        } else {
            format!("{y:.0}")
        }
    };
    let svg = plot(axis, (0.0, y_top), y_desc, &fmt, series, &mut |chart| {
        for (i, runs) in &lines {
            let v = &versions[*i];
            let (colour, stroke) = version_style(*i, Some(v.as_str()) == release);
            for run in runs {
                if run.len() == 1 {
                    chart
                        .draw_series(std::iter::once(Circle::new(
                            inside(chart, run[0]),
                            2,
                            colour.filled(),
                        )))
                        .map_err(err)?;
                } else {
                    line(chart, run.clone(), colour, stroke, 2)?;
                }
            }
        }
        Ok(())
    })?;
    Ok(Panel {
        id: id.into(),
        title: title.into(),
        legend,
        svg,
    })
}

fn metric_panel(
    index: usize,
    name: &str,
    points: &[&MeasurementPoint],
    series: &Series,
    axis: Axis,
) -> Result<Panel, String> {
    let mins: Vec<f64> = dedup(points.iter().filter_map(|m| m.min));
    let maxs: Vec<f64> = dedup(points.iter().filter_map(|m| m.max));
    let values: Vec<f64> = points.iter().filter_map(|m| m.value).collect();
    let all: Vec<f64> = values.iter().chain(&mins).chain(&maxs).copied().collect();
    let (lo, hi) = match (
        all.iter().copied().reduce(f64::min),
        all.iter().copied().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) if hi > lo => {
            let pad = (hi - lo) * 0.12;
            (
                if lo >= 0.0 {
                    (lo - pad).max(0.0)
                } else {
                    lo - pad
                },
                hi + pad,
            )
        }
        (Some(v), Some(_)) => (v - v.abs().max(1.0) * 0.5, v + v.abs().max(1.0) * 0.5),
        _ => (0.0, 1.0),
    };
    // A report edited by hand may hold values at the ends of f64: such a range, or one too
    // narrow for its magnitude, would make the ticks loop; the plot shows ±1e12 at most.
    let (lo, hi) = (lo.clamp(-LIMIT_Y, LIMIT_Y), hi.clamp(-LIMIT_Y, LIMIT_Y));
    let (lo, hi) = if hi - lo > hi.abs().max(lo.abs()) * 1e-9 {
        (lo, hi)
    } else {
        (lo - 1.0, hi + 1.0)
    };
    // A measurement without a number still happened: drawn on the floor of the plot.
    let floor = lo + (hi - lo) * 0.04;
    let phase_group = |m: &MeasurementPoint| match m.phase.as_str() {
        "Successful" => 0,
        "Failed" => 1,
        _ => 2,
    };
    let mut legend = Vec::new();
    let groups = [
        ("passed", "measurement passed", BLUE, Stroke::Circle),
        ("failed", "measurement failed", VERMILLION, Stroke::Cross),
        (
            "other",
            "inconclusive, error or no value",
            ORANGE,
            Stroke::Triangle,
        ),
    ];
    for (g, (gid, label, colour, stroke)) in groups.iter().enumerate() {
        if points.iter().any(|m| phase_group(m) == g) {
            legend.push(Legend {
                id: (*gid).into(),
                label: (*label).into(),
                colour: hex(*colour),
                stroke: *stroke,
            });
        }
    }
    if !mins.is_empty() {
        legend.push(Legend {
            id: "threshold-min".into(),
            label: "lowest value allowed".into(),
            colour: hex(BLACK_),
            stroke: Stroke::Dashed,
        });
    }
    if !maxs.is_empty() {
        legend.push(Legend {
            id: "threshold-max".into(),
            label: "highest value allowed".into(),
            colour: hex(BLACK_),
            stroke: Stroke::Dashed,
        });
    }
    let fmt = |y: &f64| short_number(*y);
    let svg = plot(axis, (lo, hi), "value", &fmt, series, &mut |chart| {
        for b in mins.iter().chain(&maxs) {
            line(
                chart,
                vec![(axis.from, *b), (axis.to, *b)],
                BLACK_,
                Stroke::Dashed,
                2,
            )?;
        }
        let trail: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|m| m.value.map(|v| (m.t_s, v)))
            .collect();
        line(chart, trail, RGBColor(0xbb, 0xbb, 0xbb), Stroke::Solid, 1)?;
        for m in points {
            let at = inside(chart, (m.t_s, m.value.unwrap_or(floor)));
            let drawn = match phase_group(m) {
                0 => chart
                    .draw_series(std::iter::once(Circle::new(at, 5, BLUE.filled())))
                    .map(drop),
                1 => chart
                    .draw_series(std::iter::once(Cross::new(
                        at,
                        7,
                        VERMILLION.stroke_width(3),
                    )))
                    .map(drop),
                _ => chart
                    .draw_series(std::iter::once(TriangleMarker::new(at, 7, ORANGE.filled())))
                    .map(drop),
            };
            drawn.map_err(err)?;
        }
        Ok(())
    })?;
    let runs: Vec<&str> = dedup_str(points.iter().filter_map(|m| m.run.as_deref()));
    let title = if runs.is_empty() {
        format!("Analysis: {name}")
    } else {
        format!("Analysis: {name} ({})", runs.join(", "))
    };
    Ok(Panel {
        id: format!("metric-{index}"),
        title,
        legend,
        svg,
    })
}

fn dedup(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for v in values {
        if !out
            .iter()
            .any(|o| (o - v).abs() <= f64::EPSILON * v.abs().max(1.0))
        {
            out.push(v);
        }
    }
    out
}

fn dedup_str<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Axis labels short enough for the label area: 0.95, 612, 0.00475, 5.03e7; and a 0 that a
/// float's rounding made `-5.55e-17` reads 0.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    if a < 1e-9 {
        "0".into()
    } else if !(0.0001..100_000.0).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.5}")
    }
}
