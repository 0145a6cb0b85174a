//! The HTML page's charts, drawn with plotters' SVG backend into a string
//! and inlined in the page (no external assets, no JavaScript). The x axis
//! is the policy's recorded life within the evaluated period, in UTC (from
//! `tracked_since` when the state first records the policy inside the
//! period, so a week-old policy fills a 30-day report's chart); the y axis unit (seconds, minutes,
//! hours, days) follows the largest value or objective shown. Colours match
//! the page: blue for measurements, red for the objective and for breaches,
//! green and red points for passed and failed drills.

use chrono::{DateTime, Utc};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{PolicyReport, ReportPeriod};

pub const WIDTH: u32 = 880;
pub const HEIGHT: u32 = 280;

const BLUE: RGBColor = RGBColor(37, 99, 235);
const OBJECTIVE: RGBColor = RGBColor(185, 28, 28);
const BREACH: RGBColor = RGBColor(239, 68, 68);
const PASS: RGBColor = RGBColor(22, 163, 74);
const FAIL: RGBColor = RGBColor(220, 38, 38);
const GRID: RGBColor = RGBColor(229, 231, 235);
const FAINT: RGBColor = RGBColor(243, 244, 246);
const AXIS: RGBColor = RGBColor(75, 85, 99);
const FONT: &str = "sans-serif";

/// A y-axis unit chosen for the largest value shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    pub seconds: f64,
    pub name: &'static str,
}

pub fn unit_for(max_s: f64) -> Unit {
    match max_s {
        m if m <= 180.0 => Unit { seconds: 1.0, name: "seconds" },
        m if m <= 3.0 * 3600.0 => Unit { seconds: 60.0, name: "minutes" },
        m if m <= 4.0 * 86400.0 => Unit { seconds: 3600.0, name: "hours" },
        _ => Unit { seconds: 86400.0, name: "days" },
    }
}

/// A chart: the SVG, and its legend for the page to lay out beside it
/// (a legend drawn inside the plot would hide data).
#[derive(Debug, Clone)]
pub struct Chart {
    pub svg: String,
    pub legend: Vec<(Swatch, String)>,
}

/// How a legend entry is drawn, with its colour as `#rrggbb`.
#[derive(Debug, Clone, PartialEq)]
pub enum Swatch {
    Line(String),
    Dashed(String),
    Area(String),
    Dot(String),
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

type ChartResult = Result<Option<Chart>, String>;
type Plot<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn x_of(since: DateTime<Utc>, t: DateTime<Utc>) -> f64 {
    super::secs(t - since)
}

/// The x axis of a policy's charts: from the start of the period, or from
/// when the state first records the policy if that is later, to the end of
/// the evaluated period. Returns the start and the span in seconds.
pub fn x_window(p: &PolicyReport, period: &ReportPeriod) -> (DateTime<Utc>, f64) {
    let since = p.tracked_since.map_or(period.since, |t| t.max(period.since));
    (since, super::secs(period.evaluated_until - since))
}

/// Axis numbers without needless decimals: `25`, `2.5`.
fn number(v: &f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// Draws the axes of a chart over the period (x: seconds since `since`,
/// labelled as UTC dates) and `[0, y_max]`, then lets `body` draw on it.
fn svg(
    since: DateTime<Utc>,
    span: f64,
    y_max: f64,
    x_desc: &str,
    y_desc: &str,
    body: impl FnOnce(&mut Plot<'_, '_>) -> Result<(), String>,
) -> Result<String, String> {
    let label = |x: &f64| {
        let t = since + chrono::Duration::milliseconds((x * 1000.0) as i64);
        if span > 3.0 * 86400.0 {
            t.format("%b %d").to_string()
        } else {
            t.format("%m-%d %H:%M").to_string()
        }
    };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..span, 0f64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(6)
            .max_light_lines(1)
            .x_label_formatter(&label)
            .y_label_formatter(&number)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, 12).into_font().color(&AXIS))
            .axis_desc_style((FONT, 13).into_font().color(&AXIS))
            .light_line_style(FAINT)
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .draw()
            .map_err(|e| e.to_string())?;
        body(&mut chart)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The recovery point's age over the period against the RPO, breaches
/// shaded. `None` when there is neither a recovery point nor an objective.
pub fn rpo_chart(p: &PolicyReport, period: &ReportPeriod) -> ChartResult {
    let r = &p.rpo;
    let (since, span) = x_window(p, period);
    if span <= 0.0 || (r.samples.is_empty() && r.objective_s.is_none()) {
        return Ok(None);
    }
    let max = r.samples.iter().map(|s| s.age_s).chain(r.objective_s).fold(1.0, f64::max);
    let unit = unit_for(max);
    let y_max = max * 1.15 / unit.seconds;
    let y_desc = format!("age of the newest recovery point ({})", unit.name);
    let svg = svg(since, span, y_max, "time (UTC)", &y_desc, |chart| {
        let breach = |b: &super::Breach| {
            Rectangle::new([(x_of(since, b.start), 0.0), (x_of(since, b.end), y_max)], BREACH.mix(0.16).filled())
        };
        chart.draw_series(r.breaches.iter().map(breach)).map_err(|e| e.to_string())?;
        let age = r.samples.iter().map(|s| (x_of(since, s.at), s.age_s / unit.seconds));
        chart.draw_series(LineSeries::new(age, BLUE.stroke_width(2))).map_err(|e| e.to_string())?;
        if let Some(obj) = r.objective_s {
            let line = vec![(0.0, obj / unit.seconds), (span, obj / unit.seconds)];
            chart
                .draw_series(DashedLineSeries::new(line, 8, 5, OBJECTIVE.stroke_width(2)))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    let mut legend = Vec::new();
    if !r.samples.is_empty() {
        legend.push((Swatch::Line(hex(BLUE)), "age of the newest recovery point".to_string()));
    }
    if let Some(obj) = r.objective_s {
        legend.push((Swatch::Dashed(hex(OBJECTIVE)), format!("RPO objective ({})", super::human_duration(obj))));
    }
    if !r.breaches.is_empty() {
        legend.push((Swatch::Area(hex(BREACH)), "RPO breached".to_string()));
    }
    Ok(Some(Chart { svg, legend }))
}

/// Each drill's measured restore time against the RTO, passed drills in
/// green and failed ones in red. `None` without a drill in the period.
pub fn rto_chart(p: &PolicyReport, period: &ReportPeriod) -> ChartResult {
    let d = &p.drills;
    let (since, span) = x_window(p, period);
    let points: Vec<(f64, f64, bool)> = d
        .list
        .iter()
        .filter_map(|x| x.rto_measured_s.map(|m| (x_of(since, x.started_at), m, x.verdict == "pass")))
        .collect();
    if span <= 0.0 || points.is_empty() {
        return Ok(None);
    }
    // The objective each drill was judged against, as a step line.
    let mut objective: Vec<(f64, f64)> = Vec::new();
    for x in &d.list {
        if let Some(o) = x.rto_objective_s {
            let at = x_of(since, x.started_at);
            match objective.last() {
                None => objective.push((0.0, o)),
                Some(&(_, prev)) if prev != o => objective.extend([(at, prev), (at, o)]),
                _ => {}
            }
        }
    }
    if let Some(&(_, last)) = objective.last() {
        objective.push((span, last));
    } else if let Some(o) = d.rto_objective_s {
        objective = vec![(0.0, o), (span, o)];
    }
    let max = points.iter().map(|p| p.1).chain(objective.iter().map(|o| o.1)).fold(1.0, f64::max);
    let unit = unit_for(max);
    let y_max = max * 1.2 / unit.seconds;
    let y_desc = format!("measured restore time ({})", unit.name);
    let svg = svg(since, span, y_max, "drill start (UTC)", &y_desc, |chart| {
        if !objective.is_empty() {
            let o: Vec<(f64, f64)> = objective.iter().map(|&(x, y)| (x, y / unit.seconds)).collect();
            chart.draw_series(DashedLineSeries::new(o, 8, 5, OBJECTIVE.stroke_width(2))).map_err(|e| e.to_string())?;
        }
        let line = points.iter().map(|p| (p.0, p.1 / unit.seconds));
        chart.draw_series(LineSeries::new(line, BLUE.mix(0.5))).map_err(|e| e.to_string())?;
        for (passed, colour) in [(true, PASS), (false, FAIL)] {
            let dots = points.iter().filter(|p| p.2 == passed);
            chart
                .draw_series(dots.map(|p| Circle::new((p.0, p.1 / unit.seconds), 5, colour.filled())))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    let mut legend = Vec::new();
    if points.iter().any(|p| p.2) {
        legend.push((Swatch::Dot(hex(PASS)), "drill passed".to_string()));
    }
    if points.iter().any(|p| !p.2) {
        legend.push((Swatch::Dot(hex(FAIL)), "drill failed".to_string()));
    }
    if let Some(&(_, o)) = objective.last() {
        let what = if objective.iter().all(|x| x.1 == o) {
            format!("RTO objective ({})", super::human_duration(o))
        } else {
            "RTO objective (as each drill recorded it)".to_string()
        };
        legend.push((Swatch::Dashed(hex(OBJECTIVE)), what));
    }
    Ok(Some(Chart { svg, legend }))
}
