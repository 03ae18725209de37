//! The `--plot` chart: demand against each controller's capacity (top) and the replicas each
//! requested (bottom), over the trace's time, as SVG. Long traces are reduced to each time
//! bucket's lowest and highest value, so a few thousand points still show every peak.

use std::error::Error;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::Simulation;
use super::replay::Change;
use super::trace::{Millis, TimeKind, Trace, timestamp};
use crate::decide::format_number;

/// Time buckets per series; each keeps at most two points.
const BUCKETS: usize = 1500;
const SIZE: (u32, u32) = (1400, 860);
const DEMAND: RGBColor = RGBColor(110, 110, 110);
const POLICY: RGBColor = RGBColor(31, 119, 180);
const HPA: RGBColor = RGBColor(230, 110, 0);
const FONT: &str = "sans-serif";

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot draw the chart: {message}")]
    Draw { message: String },
    #[error("{file}: cannot write: {source}")]
    Write {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// Renders the chart and writes it to `path`.
pub fn write_svg(
    path: &Path,
    title: &str,
    trace: &Trace,
    simulation: &Simulation,
    capacity_per_replica: f64,
) -> Result<(), PlotError> {
    let svg = render_svg(title, trace, simulation, capacity_per_replica)?;
    std::fs::write(path, svg)
        .map_err(|source| PlotError::Write { file: path.display().to_string(), source })
}

/// The chart as SVG text.
pub fn render_svg(
    title: &str,
    trace: &Trace,
    simulation: &Simulation,
    capacity_per_replica: f64,
) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let drawn = draw(&root, title, trace, simulation, capacity_per_replica)
            .and_then(|()| root.present().map_err(Into::into));
        drawn.map_err(|e| PlotError::Draw { message: e.to_string() })?;
    }
    Ok(svg)
}

fn draw(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    trace: &Trace,
    simulation: &Simulation,
    capacity_per_replica: f64,
) -> Result<(), Box<dyn Error>> {
    let start = trace.start();
    let hours = |at: Millis| (at - start) as f64 / 3_600_000.0;
    let span = hours(trace.end());

    let demand = downsample(&steps(trace.rows().iter().map(|r| (hours(r.at), r.load)), span));
    let capacity = |timeline: &[Change]| {
        downsample(&steps(
            timeline.iter().map(|c| (hours(c.at), f64::from(c.ready) * capacity_per_replica)),
            span,
        ))
    };
    let replicas = |timeline: &[Change]| {
        downsample(&steps(timeline.iter().map(|c| (hours(c.at), f64::from(c.requested))), span))
    };
    let (policy_capacity, hpa_capacity) =
        (capacity(&simulation.policy.timeline), capacity(&simulation.hpa.timeline));
    let (policy_replicas, hpa_replicas) =
        (replicas(&simulation.policy.timeline), replicas(&simulation.hpa.timeline));

    let highest = |series: &[&[(f64, f64)]]| {
        series.iter().flat_map(|s| s.iter().map(|p| p.1)).fold(1.0, f64::max)
    };
    let ops_top = highest(&[&demand, &policy_capacity, &hpa_capacity]) * 1.08;
    let replicas_top = highest(&[&policy_replicas, &hpa_replicas]).ceil() + 1.0;

    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 22))?;
    let (upper, lower) = root.split_vertically(SIZE.1 * 3 / 5);
    let time_label = |h: &f64| label_time(trace, start + (h * 3_600_000.0) as Millis);

    let mut ops = ChartBuilder::on(&upper)
        .caption("Demand and capacity (ops/s)", (FONT, 17))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..span, 0.0..ops_top)?;
    ops.configure_mesh()
        .x_labels(10)
        .y_labels(8)
        .x_label_formatter(&time_label)
        .y_label_formatter(&|v| format_number(*v))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    ops.draw_series(LineSeries::new(demand, DEMAND.stroke_width(1)))?
        .label("demand")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], DEMAND.stroke_width(2)));
    // The HPA goes first, wide and pale, so the policy's line stays visible where they agree.
    ops.draw_series(LineSeries::new(hpa_capacity, HPA.mix(0.5).stroke_width(5)))?
        .label("HPA capacity")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], HPA.stroke_width(4)));
    ops.draw_series(LineSeries::new(policy_capacity, POLICY.stroke_width(2)))?
        .label("policy capacity (ready x per-replica)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], POLICY.stroke_width(2)));
    ops.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()?;

    let mut count = ChartBuilder::on(&lower)
        .caption("Replicas requested (ready or warming)", (FONT, 17))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..span, 0.0..replicas_top)?;
    count
        .configure_mesh()
        .x_labels(10)
        .y_labels(replicas_top.min(12.0) as usize)
        .x_label_formatter(&time_label)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    count
        .draw_series(LineSeries::new(hpa_replicas, HPA.mix(0.5).stroke_width(5)))?
        .label("HPA")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], HPA.stroke_width(4)));
    count
        .draw_series(LineSeries::new(policy_replicas, POLICY.stroke_width(2)))?
        .label("policy")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], POLICY.stroke_width(2)));
    count
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

/// An axis label: month-day and time for calendar traces, hours for second offsets.
fn label_time(trace: &Trace, at: Millis) -> String {
    match trace.kind() {
        TimeKind::Calendar => timestamp(at).format("%m-%d %H:%M").to_string(),
        TimeKind::Seconds => format!("{:.1}h", (at - trace.start()) as f64 / 3_600_000.0),
    }
}

/// A step function (value held from each point's x to the next) as a polyline ending at `end`.
fn steps(points: impl Iterator<Item = (f64, f64)>, end: f64) -> Vec<(f64, f64)> {
    let mut line: Vec<(f64, f64)> = Vec::new();
    for (x, y) in points {
        if let Some(&(_, previous)) = line.last() {
            line.push((x, previous));
        }
        line.push((x, y));
    }
    if let Some(&(_, last)) = line.last() {
        line.push((end, last));
    }
    line
}

/// Keeps each bucket's lowest and highest point (in time order) once a line has more points
/// than the chart has room for.
fn downsample(line: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if line.len() <= 2 * BUCKETS {
        return line.to_vec();
    }
    let (first, last) = (line[0].0, line[line.len() - 1].0);
    let width = (last - first) / BUCKETS as f64;
    let mut out = Vec::with_capacity(2 * BUCKETS + 2);
    let mut bucket_start = 0;
    while bucket_start < line.len() {
        let bucket = ((line[bucket_start].0 - first) / width).floor();
        let bucket_end = bucket_start
            + line[bucket_start..]
                .iter()
                .position(|p| ((p.0 - first) / width).floor() != bucket)
                .unwrap_or(line.len() - bucket_start);
        let points = &line[bucket_start..bucket_end];
        let (mut low, mut high) = (0, 0);
        for (i, point) in points.iter().enumerate() {
            if point.1 < points[low].1 {
                low = i;
            }
            if point.1 > points[high].1 {
                high = i;
            }
        }
        let (earlier, later) = (low.min(high), low.max(high));
        out.push(points[earlier]);
        if later != earlier {
            out.push(points[later]);
        }
        bucket_start = bucket_end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_hold_each_value_until_the_next_point() {
        let line = steps([(0.0, 1.0), (2.0, 3.0)].into_iter(), 5.0);
        assert_eq!(line, vec![(0.0, 1.0), (2.0, 1.0), (2.0, 3.0), (5.0, 3.0)]);
    }

    #[test]
    fn downsampling_keeps_peaks_and_bounds_the_size() {
        let mut line: Vec<(f64, f64)> = (0..100_000).map(|i| (i as f64, 1.0)).collect();
        line[54_321].1 = 99.0;
        line[7].1 = -5.0;
        let small = downsample(&line);
        assert!(small.len() <= 2 * BUCKETS + 2, "{}", small.len());
        assert!(small.contains(&(54_321.0, 99.0)));
        assert!(small.contains(&(7.0, -5.0)));
        assert!(small.windows(2).all(|w| w[0].0 <= w[1].0), "time order kept");
    }
}
