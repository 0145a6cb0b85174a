//! The phase chart of the HTML report: a timeline (Gantt chart) of the
//! drill's phases, drawn with plotters' SVG backend into a string that is
//! inlined in the page. Phases counted in the RTO are blue, the others
//! grey, a failed phase red; a dashed line marks the first byte written
//! and a red line the RTO objective when it falls within the chart.

use plotters::prelude::*;

use super::DrillReport;

const WIDTH: u32 = 760;
const RTO_COLOR: RGBColor = RGBColor(59, 110, 180);
const OTHER_COLOR: RGBColor = RGBColor(165, 165, 165);
const FAILED_COLOR: RGBColor = RGBColor(200, 50, 50);
const FIRST_BYTE_COLOR: RGBColor = RGBColor(40, 150, 80);

/// The chart as an `<svg>` element; `None` when there is nothing to draw
/// or drawing failed.
pub fn phase_chart(r: &DrillReport) -> Option<String> {
    if r.phases.is_empty() {
        return None;
    }
    let mut svg = String::new();
    draw(r, &mut svg).ok()?;
    // The backend writes an XML declaration-free <svg> element.
    Some(svg)
}

fn draw<'a>(r: &DrillReport, svg: &'a mut String) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let phases = &r.phases;
    let n = phases.len();
    let end = phases.iter().map(|p| p.start_s + p.duration_s).fold(0.0_f64, f64::max);
    let objective = r.rto.objective_s.filter(|o| *o <= end * 1.5);
    let x_max = end.max(objective.unwrap_or(0.0)).max(1e-3) * 1.04;
    let first_byte = r.first_byte_s.and_then(|fb| phases.iter().find(|p| p.name == "plan").map(|p| p.start_s + fb));
    let height = 70 + 30 * n as u32;
    let root = SVGBackend::with_string(svg, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(84)
        .build_cartesian_2d(0.0..x_max, (0..n).into_segmented())?;
    // Row i (from the bottom) shows phase n-1-i, so the first phase is on top.
    let name_of = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < n => phases[n - 1 - *i].name.clone(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&name_of)
        .x_desc("seconds since the drill started")
        .x_label_formatter(&|x| format!("{x:.2}"))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 13))
        .draw()?;
    chart.draw_series(phases.iter().enumerate().map(|(k, p)| {
        let row = n - 1 - k;
        let color = if p.error.is_some() {
            FAILED_COLOR
        } else if p.in_rto {
            RTO_COLOR
        } else {
            OTHER_COLOR
        };
        // At least a sliver, so that very short phases stay visible.
        let width = p.duration_s.max(x_max / 400.0);
        let mut bar = Rectangle::new(
            [(p.start_s, SegmentValue::Exact(row)), (p.start_s + width, SegmentValue::Exact(row + 1))],
            color.filled(),
        );
        bar.set_margin(5, 5, 0, 0);
        bar
    }))?;
    if let Some(t) = first_byte {
        chart
            .draw_series(DashedLineSeries::new(
                [(t, SegmentValue::Exact(0)), (t, SegmentValue::Last)],
                4,
                3,
                FIRST_BYTE_COLOR.stroke_width(2),
            ))?
            .label("first byte")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], FIRST_BYTE_COLOR.stroke_width(2)));
    }
    if let Some(o) = objective {
        chart
            .draw_series(LineSeries::new(
                [(o, SegmentValue::Exact(0)), (o, SegmentValue::Last)],
                FAILED_COLOR.stroke_width(2),
            ))?
            .label("RTO objective")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], FAILED_COLOR.stroke_width(2)));
    }
    if first_byte.is_some() || objective.is_some() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
