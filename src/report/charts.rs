//! The HTML page's charts, drawn with plotters' SVG backend into a string
//! and inlined in the page (no external assets, no JavaScript). The x axis
//! is the evaluated period in UTC; the y axis unit (seconds, minutes,
//! hours, days) follows the largest value or objective shown. Colours match
//! the page: blue for measurements, red for the objective and for breaches,
//! green and red points for passed and failed drills.

use chrono::{DateTime, Utc};
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

type ChartResult = Result<Option<String>, String>;

fn x_of(since: DateTime<Utc>, t: DateTime<Utc>) -> f64 {
    super::secs(t - since)
}

fn time_label(since: DateTime<Utc>, span_s: f64) -> impl Fn(&f64) -> String {
    move |x: &f64| {
        let t = since + chrono::Duration::milliseconds((x * 1000.0) as i64);
        if span_s > 3.0 * 86400.0 {
            t.format("%b %d").to_string()
        } else {
            t.format("%m-%d %H:%M").to_string()
        }
    }
}

/// The recovery point's age over the period against the RPO, breaches
/// shaded. `None` when there is neither a recovery point nor an objective.
pub fn rpo_chart(p: &PolicyReport, period: &ReportPeriod) -> ChartResult {
    let r = &p.rpo;
    let span = period.seconds();
    if span <= 0.0 || (r.samples.is_empty() && r.objective_s.is_none()) {
        return Ok(None);
    }
    let max = r.samples.iter().map(|s| s.age_s).chain(r.objective_s).fold(1.0, f64::max);
    let unit = unit_for(max);
    let y_max = max * 1.15 / unit.seconds;
    let since = period.since;
    let label = time_label(since, span);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
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
            .x_label_formatter(&label)
            .x_desc("time (UTC)")
            .y_desc(format!("age of the newest recovery point ({})", unit.name))
            .label_style((FONT, 12).into_font().color(&AXIS))
            .axis_desc_style((FONT, 13).into_font().color(&AXIS))
            .light_line_style(GRID)
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(r.breaches.iter().map(|b| {
                Rectangle::new([(x_of(since, b.start), 0.0), (x_of(since, b.end), y_max)], BREACH.mix(0.16).filled())
            }))
            .map_err(|e| e.to_string())?
            .label("RPO breached")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], BREACH.mix(0.3).filled()));
        chart
            .draw_series(LineSeries::new(
                r.samples.iter().map(|s| (x_of(since, s.at), s.age_s / unit.seconds)),
                BLUE.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("recovery point age")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
        if let Some(obj) = r.objective_s {
            let y = obj / unit.seconds;
            chart
                .draw_series(DashedLineSeries::new(vec![(0.0, y), (span, y)], 8, 5, OBJECTIVE.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(format!("RPO objective ({})", super::human_duration(obj)))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], OBJECTIVE.stroke_width(2)));
        }
        legend(&mut chart)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Some(svg))
}

/// Each drill's measured restore time against the RTO, passed drills in
/// green and failed ones in red. `None` without a drill in the period.
pub fn rto_chart(p: &PolicyReport, period: &ReportPeriod) -> ChartResult {
    let d = &p.drills;
    let span = period.seconds();
    let points: Vec<(f64, f64, bool)> = d
        .list
        .iter()
        .filter_map(|x| x.rto_measured_s.map(|m| (x_of(period.since, x.started_at), m, x.verdict == "pass")))
        .collect();
    if span <= 0.0 || points.is_empty() {
        return Ok(None);
    }
    // The objective each drill was judged against, as a step line.
    let mut objective: Vec<(f64, f64)> = Vec::new();
    for x in &d.list {
        if let Some(o) = x.rto_objective_s {
            let at = x_of(period.since, x.started_at);
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
    let label = time_label(period.since, span);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
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
            .x_label_formatter(&label)
            .x_desc("drill start (UTC)")
            .y_desc(format!("measured restore time ({})", unit.name))
            .label_style((FONT, 12).into_font().color(&AXIS))
            .axis_desc_style((FONT, 13).into_font().color(&AXIS))
            .light_line_style(GRID)
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .draw()
            .map_err(|e| e.to_string())?;
        if !objective.is_empty() {
            let o = objective.iter().map(|&(x, y)| (x, y / unit.seconds)).collect::<Vec<_>>();
            chart
                .draw_series(DashedLineSeries::new(o, 8, 5, OBJECTIVE.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label("RTO objective")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], OBJECTIVE.stroke_width(2)));
        }
        chart
            .draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.1 / unit.seconds)), BLUE.mix(0.5)))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                points.iter().filter(|p| p.2).map(|p| Circle::new((p.0, p.1 / unit.seconds), 5, PASS.filled())),
            )
            .map_err(|e| e.to_string())?
            .label("drill passed")
            .legend(|(x, y)| Circle::new((x + 8, y), 5, PASS.filled()));
        if points.iter().any(|p| !p.2) {
            chart
                .draw_series(
                    points.iter().filter(|p| !p.2).map(|p| Circle::new((p.0, p.1 / unit.seconds), 5, FAIL.filled())),
                )
                .map_err(|e| e.to_string())?
                .label("drill failed")
                .legend(|(x, y)| Circle::new((x + 8, y), 5, FAIL.filled()));
        }
        legend(&mut chart)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Some(svg))
}

fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 12).into_font().color(&AXIS))
        .background_style(WHITE.mix(0.9))
        .border_style(GRID)
        .draw()
        .map_err(|e| e.to_string())
}
