//! The `tune --plot` chart: every candidate as a dot at its training-slice replica-minutes
//! (x) and under-provisioned minutes (y), the Pareto frontier as a line through its points,
//! the HPA's point and the chosen candidate marked, in `simulate`'s colours (the policy blue,
//! the HPA orange). Tuned on several traces, the axes are what the frontier ranks by: each
//! figure over the HPA's, on the trace where it is worst (the HPA at 1).

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;

use super::Outcome;
use super::frontier::Scored;
use crate::decide::format_number;
use crate::sim::plot::PlotError;

const SIZE: (u32, u32) = (1100, 760);
const CANDIDATE: RGBColor = RGBColor(150, 150, 150);
const FRONTIER: RGBColor = RGBColor(31, 119, 180);
const HPA: RGBColor = RGBColor(230, 110, 0);
const CHOSEN: RGBColor = RGBColor(200, 30, 60);
const FONT: &str = "sans-serif";

/// Renders the chart and writes it to `path`.
pub fn write_svg(path: &Path, title: &str, outcome: &Outcome) -> Result<(), PlotError> {
    let svg = render_svg(title, outcome)?;
    std::fs::write(path, svg)
        .map_err(|source| PlotError::Write { file: path.display().to_string(), source })
}

/// The chart as SVG text.
pub fn render_svg(title: &str, outcome: &Outcome) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let drawn = draw(&root, title, outcome).and_then(|()| root.present().map_err(Into::into));
        drawn.map_err(|e| PlotError::Draw { message: e.to_string() })?;
    }
    Ok(svg)
}

fn draw(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    outcome: &Outcome,
) -> Result<(), Box<dyn Error>> {
    let several = outcome.traces.len() > 1;
    // One trace: its own figures; several: the worst ratios the frontier ranks by.
    let point = |s: &Scored| {
        if several {
            (s.vs_hpa.replica_minutes, s.vs_hpa.under_provisioned_minutes)
        } else {
            (s.summary.replica_minutes, s.summary.under_provisioned_minutes)
        }
    };
    let candidates: Vec<(f64, f64)> = outcome.scored.iter().map(point).collect();
    let frontier: Vec<(f64, f64)> = outcome.frontier.iter().map(point).collect();
    let hpa = if several {
        let own = outcome.hpa_vs_hpa();
        (own.replica_minutes, own.under_provisioned_minutes)
    } else {
        let own = &outcome.traces[0].hpa.training;
        (own.replica_minutes, own.under_provisioned_minutes)
    };
    let chosen = point(&outcome.choice.scored());
    let (x_desc, y_desc, x_floor) = if several {
        (
            "replica-minutes over the HPA's, worst trace (training slices)",
            "under-provisioned minutes over the HPA's, worst trace (training slices)",
            0.01,
        )
    } else {
        ("replica-minutes (training slice)", "under-provisioned minutes (training slice)", 1.0)
    };

    let all = || candidates.iter().chain([&hpa]);
    let (x_low, x_high) =
        all().fold((f64::MAX, f64::MIN), |(low, high), p| (low.min(p.0), high.max(p.0)));
    let y_high = all().map(|p| p.1).fold(0.0, f64::max);
    let x_pad = ((x_high - x_low) * 0.05).max(x_floor);
    let x_range = (x_low - x_pad).max(0.0)..x_high + x_pad;
    let y_range = 0.0..(y_high * 1.08).max(1.0);

    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 20))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(84)
        .build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        .x_labels(10)
        .y_labels(10)
        .x_label_formatter(&|v| if several { format!("{v:.3}") } else { format_number(*v) })
        .y_label_formatter(&|v| format!("{v:.1}"))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style((FONT, 15))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    let dots = candidates.iter().map(|p| Circle::new(*p, 3, CANDIDATE.filled()));
    chart
        .draw_series(dots)?
        .label(format!("candidates ({})", candidates.len()))
        .legend(|(x, y)| Circle::new((x + 10, y), 3, CANDIDATE.filled()));
    chart
        .draw_series(LineSeries::new(frontier.clone(), FRONTIER.stroke_width(2)))?
        .label("Pareto frontier")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], FRONTIER.stroke_width(2)));
    chart.draw_series(frontier.iter().map(|p| Circle::new(*p, 4, FRONTIER.filled())))?;
    chart
        .draw_series([TriangleMarker::new(hpa, 9, HPA.filled())])?
        .label("HPA")
        .legend(|(x, y)| TriangleMarker::new((x + 10, y), 7, HPA.filled()));
    chart
        .draw_series([Circle::new(chosen, 9, CHOSEN.stroke_width(3))])?
        .label(format!("chosen (candidate {})", outcome.choice.scored().index))
        .legend(|(x, y)| Circle::new((x + 10, y), 6, CHOSEN.stroke_width(3)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}
