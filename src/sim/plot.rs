//! The `--plot` chart: demand against each controller's capacity (top) and the replicas each
//! requested (bottom), over the trace's time, as SVG. Long traces are reduced to each time
//! bucket's lowest and highest value, so a few thousand points still show every peak.
//!
//! The periods each controller was under-provisioned are shaded in its colour behind the top
//! chart ([`under_provisioned_periods`], the same test the replay counts minutes with), each at
//! least two pixels wide so a few seconds short on a month-long trace still show. The HPA's lines
//! are dashed and drawn over the policy's, so both stay visible where they coincide. The x
//! axis is labelled with its clock: UTC for calendar traces, hours from the start otherwise.

use std::error::Error;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::Simulation;
use super::replay::{Change, Run};
use super::report::minutes;
use super::trace::{Millis, TimeKind, Trace, timestamp};
use crate::decide::format_number;

/// Time buckets per series; each keeps at most two points.
const BUCKETS: usize = 1500;
const SIZE: (u32, u32) = (1400, 860);
const DEMAND: RGBColor = RGBColor(110, 110, 110);
const POLICY: RGBColor = RGBColor(31, 119, 180);
const HPA: RGBColor = RGBColor(230, 110, 0);
/// The HPA's stroke as the SVG spells it, and the dash pattern added to it (see [`dash_hpa`]).
const HPA_STROKE: &str = "stroke=\"#E66E00\"";
const HPA_DASHES: &str = "stroke-dasharray=\"9 5\"";
/// Opacity of the under-provisioned shading: overlapping shades still read as both colours.
const SHADE: f64 = 0.25;
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
    Ok(dash_hpa(&svg))
}

/// Dashes every stroke in the HPA's colour (its lines and their legend keys; shading is a
/// fill, so it is left alone). plotters 0.3 has no dashed stroke style: its dashed series
/// writes every dash as an element of its own, tens of thousands on a long noisy trace,
/// where one SVG attribute per line does the same.
fn dash_hpa(svg: &str) -> String {
    svg.replace(HPA_STROKE, &format!("{HPA_STROKE} {HPA_DASHES}"))
}

/// The spans `[from, to)` during which `run`'s ready instances could not serve the trace's
/// demand (demand > ready x `capacity_per_replica`), adjacent spans joined. Their total is the
/// run's `under_provisioned_minutes`.
pub fn under_provisioned_periods(
    trace: &Trace,
    run: &Run,
    capacity_per_replica: f64,
) -> Vec<(Millis, Millis)> {
    let (rows, timeline) = (trace.rows(), run.timeline.as_slice());
    let mut periods: Vec<(Millis, Millis)> = Vec::new();
    let (mut row, mut change) = (0, 0);
    let mut now = trace.start();
    while now < trace.end() {
        while rows.get(row + 1).is_some_and(|r| r.at <= now) {
            row += 1;
        }
        while timeline.get(change + 1).is_some_and(|c| c.at <= now) {
            change += 1;
        }
        let next_row = rows.get(row + 1).map_or(trace.end(), |r| r.at);
        let next_change = timeline.get(change + 1).map_or(trace.end(), |c| c.at);
        let next = next_row.min(next_change).min(trace.end());
        let ready = timeline.get(change).map_or(0, |c| c.ready);
        if rows[row].load > capacity_per_replica * f64::from(ready) {
            match periods.last_mut() {
                Some(last) if last.1 == now => last.1 = next,
                _ => periods.push((now, next)),
            }
        }
        now = next;
    }
    periods
}

/// Periods as chart bands: each at least `min_width` wide, and bands closer than that
/// joined, so a long trace draws at most about one band per pixel.
fn bands(periods: &[(Millis, Millis)], min_width: Millis) -> Vec<(Millis, Millis)> {
    let mut bands: Vec<(Millis, Millis)> = Vec::new();
    for &(from, to) in periods {
        let to = to.max(from + min_width);
        match bands.last_mut() {
            Some(last) if from - last.1 < min_width => last.1 = last.1.max(to),
            _ => bands.push((from, to)),
        }
    }
    bands
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

    let x_desc = match trace.kind() {
        TimeKind::Calendar => "time (UTC)",
        TimeKind::Seconds => "hours from the trace's start",
    };

    let mut ops = ChartBuilder::on(&upper)
        .caption("Demand and capacity (ops/s)", (FONT, 17))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..span, 0.0..ops_top)?;
    ops.configure_mesh()
        .x_labels(10)
        .y_labels(8)
        .x_label_formatter(&time_label)
        .y_label_formatter(&|v| format_number(*v))
        .x_desc(x_desc)
        .y_desc("ops/s")
        .axis_desc_style((FONT, 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    // Shading first, so every line is drawn over it. A band is at least two pixels wide.
    let pixels = ops.plotting_area().get_pixel_range().0.len().max(1) as f64;
    let min_width = (2.0 * (trace.end() - start) as f64 / pixels).ceil().max(1.0) as Millis;
    for (run, colour, who) in
        [(&simulation.policy, POLICY, "policy"), (&simulation.hpa, HPA, "HPA")]
    {
        let periods = under_provisioned_periods(trace, run, capacity_per_replica);
        if periods.is_empty() {
            continue;
        }
        let style = colour.mix(SHADE).filled();
        let shaded = bands(&periods, min_width).into_iter().map(move |(from, to)| {
            Rectangle::new([(hours(from), 0.0), (hours(to), ops_top)], style)
        });
        ops.draw_series(shaded)?
            .label(format!(
                "{who} under-provisioned ({} min)",
                minutes(run.summary.under_provisioned_minutes)
            ))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], style));
    }
    ops.draw_series(LineSeries::new(demand, DEMAND.stroke_width(1)))?
        .label("demand")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], DEMAND.stroke_width(2)));
    // The policy's solid line first, the HPA's dashed over it: where they coincide, both show.
    ops.draw_series(LineSeries::new(policy_capacity, POLICY.stroke_width(3)))?
        .label("policy capacity (ready x per-replica)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], POLICY.stroke_width(3)));
    ops.draw_series(LineSeries::new(hpa_capacity, HPA.stroke_width(2)))?
        .label("HPA capacity (dashed)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], HPA.stroke_width(2)));
    ops.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()?;

    let mut count = ChartBuilder::on(&lower)
        .caption("Replicas requested (ready or warming)", (FONT, 17))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..span, 0.0..replicas_top)?;
    count
        .configure_mesh()
        .x_labels(10)
        .y_labels(replicas_top.min(12.0) as usize)
        .x_label_formatter(&time_label)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_desc(x_desc)
        .y_desc("replicas")
        .axis_desc_style((FONT, 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    count
        .draw_series(LineSeries::new(policy_replicas, POLICY.stroke_width(3)))?
        .label("policy")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], POLICY.stroke_width(3)));
    count
        .draw_series(LineSeries::new(hpa_replicas, HPA.stroke_width(2)))?
        .label("HPA (dashed)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], HPA.stroke_width(2)));
    count
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

/// An axis label: weekday, month-day and time (UTC) for calendar traces, hours for second
/// offsets.
fn label_time(trace: &Trace, at: Millis) -> String {
    match trace.kind() {
        TimeKind::Calendar => timestamp(at).format("%a %m-%d %H:%M").to_string(),
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
    use std::time::Duration;

    use super::*;
    use crate::sim::fixtures::{policy, redis_metric};
    use crate::sim::report::Summary;
    use crate::sim::trace::Row;
    use crate::sim::{Settings, simulate};

    /// 50 ops/s, then 250, 50, 250, 50, a minute each, on replicas of 100 ops/s.
    fn two_bursts(kind: TimeKind, start: Millis) -> Trace {
        let rows = [50.0, 250.0, 50.0, 250.0, 50.0]
            .iter()
            .enumerate()
            .map(|(minute, &load)| Row { at: start + minute as Millis * 60_000, load })
            .collect();
        Trace::from_rows("bursts.csv", kind, rows).expect("valid")
    }

    fn run(timeline: &[(Millis, u16)], under_provisioned_minutes: f64) -> Run {
        let timeline =
            timeline.iter().map(|&(at, ready)| Change { at, requested: ready, ready }).collect();
        let summary = Summary {
            under_provisioned_minutes,
            replica_minutes: 0.0,
            scale_events: 0,
            peak_replicas: 3,
        };
        Run { summary, timeline, switchovers: 0, master: None }
    }

    /// The policy stays at one replica (short in both bursts); the HPA has three ready from
    /// 2.5 minutes (short in the first only).
    fn crafted(trace: &Trace) -> Simulation {
        let start = trace.start();
        Simulation {
            policy: run(&[(start, 1)], 2.0),
            hpa: run(&[(start, 1), (start + 150_000, 3)], 1.0),
            gaps: vec![],
        }
    }

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    #[test]
    fn under_provisioned_periods_are_where_demand_exceeds_ready_capacity() {
        let trace = two_bursts(TimeKind::Seconds, 0);
        let simulation = crafted(&trace);
        assert_eq!(
            under_provisioned_periods(&trace, &simulation.policy, 100.0),
            vec![(60_000, 120_000), (180_000, 240_000)]
        );
        assert_eq!(
            under_provisioned_periods(&trace, &simulation.hpa, 100.0),
            vec![(60_000, 120_000)]
        );
        assert_eq!(under_provisioned_periods(&trace, &simulation.hpa, 300.0), vec![]);
    }

    #[test]
    fn under_provisioned_periods_add_up_to_the_minutes_the_replay_reports() {
        let policy = policy().metric(redis_metric("instantaneous_ops_per_sec", 80.0)).build();
        let trace = two_bursts(TimeKind::Seconds, 0);
        let settings = Settings {
            capacity_per_replica: 100.0,
            warmup: Duration::from_secs(30),
            initial_replicas: 1,
        };
        let simulation = simulate(&policy, &trace, &settings).expect("simulates");
        for run in [&simulation.policy, &simulation.hpa] {
            let periods = under_provisioned_periods(&trace, run, 100.0);
            assert!(!periods.is_empty(), "a burst on one replica is short until warm-up ends");
            let total: Millis = periods.iter().map(|(from, to)| to - from).sum();
            assert_eq!(total as f64 / 60_000.0, run.summary.under_provisioned_minutes);
        }
    }

    #[test]
    fn the_svg_shades_each_period_and_dashes_the_hpa() {
        let trace = two_bursts(TimeKind::Seconds, 0);
        let svg = render_svg("t", &trace, &crafted(&trace), 100.0).expect("renders");
        // A filled rectangle per period in the controller's colour, and one as its legend key.
        assert_eq!(count(&svg, "opacity=\"0.25\" fill=\"#1F77B4\""), 2 + 1, "policy bands");
        assert_eq!(count(&svg, "opacity=\"0.25\" fill=\"#E66E00\""), 1 + 1, "HPA bands");
        assert!(svg.contains("policy under-provisioned (2 min)"));
        // Every HPA line (capacity, replicas, their legend keys) is dashed; no policy line is.
        let lines: Vec<&str> = svg.lines().filter(|l| l.contains("<polyline")).collect();
        let hpa: Vec<&&str> = lines.iter().filter(|l| l.contains(HPA_STROKE)).collect();
        assert_eq!(hpa.len(), 4, "{hpa:?}");
        assert!(hpa.iter().all(|l| l.contains(HPA_DASHES)), "{hpa:?}");
        let policy = lines.iter().filter(|l| l.contains("stroke=\"#1F77B4\""));
        assert!(policy.clone().count() >= 2 && policy.clone().all(|l| !l.contains("dasharray")));
    }

    #[test]
    fn the_time_axis_names_its_clock() {
        let seconds = two_bursts(TimeKind::Seconds, 0);
        let svg = render_svg("t", &seconds, &crafted(&seconds), 100.0).expect("renders");
        assert_eq!(count(&svg, "hours from the trace&apos;s start"), 2, "both charts");
        assert!(!svg.contains("UTC"));
        // 2026-01-05 is a Monday.
        let calendar = two_bursts(TimeKind::Calendar, 1_767_571_200_000);
        let svg = render_svg("t", &calendar, &crafted(&calendar), 100.0).expect("renders");
        assert_eq!(count(&svg, "time (UTC)"), 2, "both charts");
        assert!(svg.contains("Mon 01-05 00:00"), "weekday and date on the ticks");
    }

    #[test]
    fn bands_are_at_least_the_minimum_wide_and_near_ones_join() {
        let periods = [(0, 1), (5, 6), (30, 31), (100, 200)];
        assert_eq!(bands(&periods, 10), vec![(0, 15), (30, 40), (100, 200)]);
        assert_eq!(bands(&periods, 1), periods.to_vec());
    }

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
