//! What the demo's full-screen view shows, and how it is drawn. [`Screen`] is plain data the
//! terminal loop ([`super::tui`]) fills from the fleet, the trace and the daemon's decisions;
//! [`draw`] turns it into one frame and reads nothing else, so a test can render it into
//! ratatui's test backend and read back what a person would see.

use std::collections::VecDeque;

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table, Wrap,
};

use super::fleet::{Instance, Role};
use crate::decide::format_number;

/// Seconds of history the charts span.
pub const WINDOW_SECS: f64 = 180.0;
/// Decisions the panel keeps.
const DECISIONS_KEPT: usize = 50;

/// One second of the demo: what the trace asked, what the fleet served, how many instances
/// served it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Seconds since the demo started.
    pub t: f64,
    /// Ops/s the load generator was asked for (the trace, times the load factor).
    pub demanded: f64,
    /// Ops/s the instances reported (`instantaneous_ops_per_sec`, summed).
    pub served: f64,
    /// Instances answering: the master and its replicas.
    pub instances: u16,
}

/// One line of the decisions panel: the decision once, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionLine {
    /// Wall-clock time, `HH:MM:SS`.
    pub at: String,
    pub kind: String,
    /// What became of it: `applied`, `dry_run`, `rate_limited`, ...; `-` when nothing was asked.
    pub outcome: String,
    pub reason: String,
    /// How many more times the same decision was made, unperformed, since this line began
    /// (a paused or rate-limited autopilot decides again every round).
    pub repeats: u32,
}

/// Everything one frame shows.
#[derive(Debug, Clone, Default)]
pub struct Screen {
    pub policy: String,
    /// The trace's clock now, as the trace spells it.
    pub trace_time: String,
    pub speed: f64,
    /// Multiplies the trace's load (`+` and `-`).
    pub load_factor: f64,
    /// Ops/s one instance is meant to serve (the policy's first metric's target).
    pub target: f64,
    pub max_instances: u16,
    /// The recorded master and its epoch, from the fleet's durable record.
    pub master: Option<(String, u64)>,
    /// Why the record could not be read this second, if it could not (then `master` is the
    /// last one read).
    pub record_error: Option<String>,
    pub instances: Vec<Instance>,
    /// Oldest first, at most [`WINDOW_SECS`] of it.
    pub history: VecDeque<Point>,
    /// Newest first.
    pub decisions: VecDeque<DecisionLine>,
    /// The autopilot is paused (`p`): it decides and explains, and acts on nothing.
    pub paused: bool,
    /// The last key's effect, or an error, for one line at the bottom.
    pub notice: String,
}

impl Screen {
    /// Adds a second of history, dropping what has left the window.
    pub fn push(&mut self, point: Point) {
        self.history.push_back(point);
        while self.history.front().is_some_and(|p| point.t - p.t > WINDOW_SECS) {
            self.history.pop_front();
        }
    }

    /// Adds a decision at the top of the panel. One not performed (paused, rate-limited,
    /// deferred...) that repeats the kind and outcome of the line on top replaces it, counted,
    /// so a paused autopilot deciding every second shows one line, not a screenful.
    pub fn decided(&mut self, line: DecisionLine) {
        if let Some(top) = self.decisions.front_mut()
            && line.outcome != "applied"
            && (top.kind.as_str(), top.outcome.as_str())
                == (line.kind.as_str(), line.outcome.as_str())
        {
            let repeats = top.repeats + 1;
            *top = DecisionLine { repeats, ..line };
            return;
        }
        self.decisions.push_front(line);
        self.decisions.truncate(DECISIONS_KEPT);
    }
}

/// Draws `screen` over the whole frame.
pub fn draw(frame: &mut Frame, screen: &Screen) {
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(4),
            Constraint::Min(10),
            Constraint::Length(10),
            Constraint::Length(2),
        ])
        .split(frame.area());
    draw_header(frame, rows[0], screen);
    let middle = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(60), Constraint::Percentage(40)])
        .split(rows[1]);
    let charts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Percentage(65), Constraint::Percentage(35)])
        .split(middle[0]);
    draw_load(frame, charts[0], screen);
    draw_instances_chart(frame, charts[1], screen);
    draw_fleet(frame, middle[1], screen);
    draw_decisions(frame, rows[2], screen);
    draw_keys(frame, rows[3], screen);
}

fn draw_header(frame: &mut Frame, area: Rect, screen: &Screen) {
    let serving = super::fleet::serving(&screen.instances).len();
    let master = match (&screen.master, &screen.record_error) {
        (_, Some(why)) => vec![Span::styled(
            format!("the fleet's record cannot be read: {why}"),
            Style::default().fg(Color::Red),
        )],
        (Some((id, epoch)), None) => vec![
            Span::raw("master "),
            Span::styled(id.clone(), Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!(" at epoch {epoch}")),
        ],
        (None, None) => vec![Span::raw("no master recorded yet")],
    };
    let mut second = master;
    second.push(Span::raw(format!(
        "  ·  {serving} of at most {} instances serving ({})  ·  target {} ops/s per instance",
        screen.max_instances,
        super::fleet::serving_in_words(&screen.instances),
        format_number(screen.target),
    )));
    let mut first = vec![Span::raw(format!(
        "policy {}  ·  trace {} at {}x  ·  load x{:.2}",
        screen.policy, screen.trace_time, screen.speed, screen.load_factor
    ))];
    if screen.paused {
        first.push(Span::styled(
            "  ·  PAUSED: deciding, not acting",
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    let text = vec![Line::from(first), Line::from(second)];
    let block = Block::default().borders(Borders::ALL).title(" redis-autopilot demo ");
    frame.render_widget(Paragraph::new(text).block(block), area);
}

fn draw_load(frame: &mut Frame, area: Rect, screen: &Screen) {
    let demanded: Vec<(f64, f64)> = screen.history.iter().map(|p| (p.t, p.demanded)).collect();
    let served: Vec<(f64, f64)> = screen.history.iter().map(|p| (p.t, p.served)).collect();
    let capacity: Vec<(f64, f64)> =
        screen.history.iter().map(|p| (p.t, f64::from(p.instances) * screen.target)).collect();
    let top = demanded
        .iter()
        .chain(&served)
        .chain(&capacity)
        .map(|(_, y)| *y)
        .fold(screen.target, f64::max)
        * 1.1;
    let datasets = vec![
        line("target x instances", &capacity, Color::Green),
        line("served", &served, Color::Cyan),
        line("asked", &demanded, Color::Yellow),
    ];
    let chart = Chart::new(datasets)
        .block(Block::default().borders(Borders::ALL).title(" load against capacity (ops/s) "))
        // The legend says which line is which: keep it unless the chart is tiny.
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)))
        .x_axis(time_axis(screen))
        .y_axis(Axis::default().bounds([0.0, top]).labels(vec![
            Span::raw("0"),
            Span::raw(format_number(top / 2.0)),
            Span::raw(format_number(top)),
        ]));
    frame.render_widget(chart, area);
}

fn draw_instances_chart(frame: &mut Frame, area: Rect, screen: &Screen) {
    let instances: Vec<(f64, f64)> =
        screen.history.iter().map(|p| (p.t, f64::from(p.instances))).collect();
    let top = f64::from(screen.max_instances.max(1));
    let chart = Chart::new(vec![line("instances", &instances, Color::Magenta)])
        .block(Block::default().borders(Borders::ALL).title(" instances serving "))
        .x_axis(time_axis(screen))
        .y_axis(
            Axis::default()
                .bounds([0.0, top + 0.5])
                .labels(vec![Span::raw("0"), Span::raw(format!("{top}"))]),
        );
    frame.render_widget(chart, area);
}

fn line<'a>(name: &'a str, data: &'a [(f64, f64)], color: Color) -> Dataset<'a> {
    Dataset::default()
        .name(name)
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::default().fg(color))
        .data(data)
}

/// The last [`WINDOW_SECS`], labelled in seconds ago.
fn time_axis(screen: &Screen) -> Axis<'static> {
    let now = screen.history.back().map_or(0.0, |p| p.t);
    let start = (now - WINDOW_SECS).max(0.0);
    Axis::default()
        .bounds([start, start + WINDOW_SECS])
        .labels(vec![Span::raw(format!("-{}s", WINDOW_SECS as u32)), Span::raw("now")])
}

fn draw_fleet(frame: &mut Frame, area: Rect, screen: &Screen) {
    let header = Row::new(["instance", "role", "link", "lag", "ops/s"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = screen.instances.iter().map(|i| {
        let (role, color) = match i.role {
            Role::Master => ("master", Color::Green),
            Role::Replica => ("replica", Color::Reset),
            Role::NoAnswer => ("no answer", Color::Red),
        };
        let link = match (i.role, i.link_up) {
            (Role::Replica, Some(true)) => "up",
            (Role::Replica, Some(false)) => "down",
            _ => "",
        };
        let lag = i.lag_bytes.map_or(String::new(), |b| format!("{} B", format_number(b as f64)));
        let ops = i.ops.map_or(String::new(), |o| format_number(o as f64));
        Row::new([
            Cell::from(i.id.clone()),
            Cell::from(role).style(Style::default().fg(color)),
            Cell::from(link),
            Cell::from(lag),
            Cell::from(ops),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(16),
            Constraint::Length(9),
            Constraint::Length(5),
            Constraint::Length(9),
            Constraint::Length(8),
        ],
    )
    .header(header)
    .block(Block::default().borders(Borders::ALL).title(" fleet "));
    frame.render_widget(table, area);
}

fn draw_decisions(frame: &mut Frame, area: Rect, screen: &Screen) {
    let lines: Vec<Line> = screen
        .decisions
        .iter()
        .map(|d| {
            let color = match d.outcome.as_str() {
                "applied" => Color::Green,
                "failed" => Color::Red,
                _ => Color::Yellow,
            };
            let repeated = match d.repeats {
                0 => String::new(),
                n => format!(" (decided {} times)", n + 1),
            };
            Line::from(vec![
                Span::raw(format!("{} ", d.at)),
                Span::styled(
                    format!("{} [{}]{repeated} ", d.kind, d.outcome),
                    Style::default().fg(color),
                ),
                Span::raw(d.reason.clone()),
            ])
        })
        .collect();
    let block = Block::default().borders(Borders::ALL).title(" decisions, newest first ");
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: true }), area);
}

fn draw_keys(frame: &mut Frame, area: Rect, screen: &Screen) {
    let keys =
        "k kill the master  + more load  - less load  s snapshot  p pause  n skip 30 min  q quit";
    // The notice on a line of its own: a key's answer (a snapshot's id, why a pause failed)
    // is what a person just asked for, and must not be cut off by the key list.
    let text = vec![
        Line::from(Span::styled(keys, Style::default().add_modifier(Modifier::DIM))),
        Line::from(screen.notice.clone()),
    ];
    frame.render_widget(Paragraph::new(text), area);
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;

    fn text(terminal: &Terminal<TestBackend>) -> String {
        let buffer = terminal.backend().buffer();
        let width = buffer.area.width as usize;
        let symbols: Vec<&str> = buffer.content.iter().map(|c| c.symbol()).collect();
        symbols.chunks(width).map(|row| row.concat()).collect::<Vec<_>>().join("\n")
    }

    fn instance(port: u16, role: Role, ops: u64) -> Instance {
        Instance {
            id: format!("127.0.0.1:{port}"),
            role,
            link_up: (role == Role::Replica).then_some(true),
            lag_bytes: (role == Role::Replica).then_some(0),
            ops: (role != Role::NoAnswer).then_some(ops),
        }
    }

    /// A fleet partway through a ramp, just after a failover: what a person should read off it.
    fn ramp_after_failover() -> Screen {
        let mut screen = Screen {
            policy: "local-demo".into(),
            trace_time: "1998-06-26 14:31".into(),
            speed: 120.0,
            load_factor: 1.0,
            target: 3000.0,
            max_instances: 6,
            master: Some(("127.0.0.1:7001".into(), 2)),
            instances: vec![
                instance(7000, Role::NoAnswer, 0),
                instance(7001, Role::Master, 4100),
                instance(7002, Role::Replica, 3900),
            ],
            ..Screen::default()
        };
        for t in 0..200 {
            let demanded = 2000.0 + 40.0 * f64::from(t);
            let instances = if t < 100 { 1 } else { 3 };
            screen.push(Point { t: f64::from(t), demanded, served: demanded, instances });
        }
        screen.decided(DecisionLine {
            at: "14:30:02".into(),
            kind: "scale".into(),
            outcome: "applied".into(),
            reason: "p95 of instantaneous_ops_per_sec 5,200 > target 3,000 x 1.1: 1 -> 3".into(),
            repeats: 0,
        });
        screen.decided(DecisionLine {
            at: "14:31:10".into(),
            kind: "failover".into(),
            outcome: "applied".into(),
            reason: "master 127.0.0.1:7000 refuses connections: chose 127.0.0.1:7001".into(),
            repeats: 0,
        });
        screen
    }

    #[test]
    fn the_view_shows_the_master_the_fleet_and_each_decision_once() {
        let screen = ramp_after_failover();
        let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
        terminal.draw(|frame| draw(frame, &screen)).unwrap();
        let text = text(&terminal);
        assert!(text.contains("master 127.0.0.1:7001 at epoch 2"), "{text}");
        assert!(
            text.contains("2 of at most 6 instances serving (the master and 1 replica)"),
            "{text}"
        );
        assert!(text.contains("trace 1998-06-26 14:31 at 120x"), "{text}");
        let squeezed: String =
            text.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        for row in [
            "127.0.0.1:7000 no answer",
            "127.0.0.1:7001 master 4,100",
            "127.0.0.1:7002 replica up 0 B 3,900",
        ] {
            assert!(squeezed.contains(row), "no row {row:?} in\n{text}");
        }
        assert_eq!(text.matches("failover [applied]").count(), 1, "{text}");
        assert_eq!(text.matches("scale [applied]").count(), 1, "{text}");
        // Newest first: the failover above the scale.
        assert!(text.find("failover [applied]") < text.find("scale [applied]"), "{text}");
        assert!(text.contains("load against capacity"), "{text}");
        assert!(text.contains("target x instances"), "{text}");
        assert!(text.contains("k kill the master"), "{text}");
    }

    /// The topmost row holding a plotted (braille) point in columns `x0..x1`, rows `y0..y1`.
    fn highest_point(
        buffer: &ratatui::buffer::Buffer,
        x0: u16,
        x1: u16,
        y0: u16,
        y1: u16,
    ) -> Option<u16> {
        (y0..y1).find(|&y| {
            (x0..x1).any(|x| {
                buffer[(x, y)]
                    .symbol()
                    .chars()
                    .next()
                    .is_some_and(|c| ('\u{2801}'..='\u{28ff}').contains(&c))
            })
        })
    }

    #[test]
    fn the_charts_plot_the_ramp_and_the_instances_that_followed_it() {
        let screen = ramp_after_failover();
        let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
        terminal.draw(|frame| draw(frame, &screen)).unwrap();
        let text = text(&terminal);
        let buffer = terminal.backend().buffer().clone();
        let row_of = |title: &str| text.lines().position(|l| l.contains(title)).unwrap() as u16;
        let (load, instances, decisions) =
            (row_of("┌ load against"), row_of("┌ instances serving"), row_of("┌ decisions,"));
        // Both charts are in the left 60 % of the screen; compare a stretch at each end of the
        // window (the middle holds the step). The ramp rises: its right end reaches higher (a
        // smaller row) than its left end.
        let (left_load, right_load) = (
            highest_point(&buffer, 8, 28, load + 1, instances - 1),
            highest_point(&buffer, 62, 83, load + 1, instances - 1),
        );
        assert!(right_load < left_load, "load {left_load:?} -> {right_load:?}\n{text}");
        // The instances step from 1 to 3 halfway through the window.
        let (left_step, right_step) = (
            highest_point(&buffer, 6, 40, instances + 1, decisions - 1),
            highest_point(&buffer, 46, 83, instances + 1, decisions - 1),
        );
        assert!(right_step < left_step, "instances {left_step:?} -> {right_step:?}\n{text}");
    }

    #[test]
    fn an_unreadable_record_is_shown_as_such_never_as_no_master() {
        let mut screen = ramp_after_failover();
        screen.record_error = Some("state.json: Permission denied".into());
        let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
        terminal.draw(|frame| draw(frame, &screen)).unwrap();
        let text = text(&terminal);
        assert!(
            text.contains("the fleet's record cannot be read: state.json: Permission denied"),
            "{text}"
        );
        assert!(!text.contains("no master recorded"), "{text}");
    }

    #[test]
    fn a_paused_autopilot_says_so_in_the_header_and_its_keys_are_listed() {
        let mut screen = ramp_after_failover();
        let draw_text = |screen: &Screen| {
            let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
            terminal.draw(|frame| draw(frame, screen)).unwrap();
            text(&terminal)
        };
        let running = draw_text(&screen);
        assert!(!running.contains("PAUSED"), "{running}");
        for key in ["s snapshot", "p pause", "k kill the master", "+ more load"] {
            assert!(running.contains(key), "no key {key:?} in\n{running}");
        }
        screen.paused = true;
        screen.notice = "paused: the autopilot decides and explains, and acts on nothing".into();
        let paused = draw_text(&screen);
        let header = paused.lines().take(4).collect::<Vec<_>>().join("\n");
        assert!(header.contains("PAUSED: deciding, not acting"), "{paused}");
        assert!(paused.contains("acts on nothing"), "{paused}");
    }

    #[test]
    fn a_decision_repeated_unperformed_is_one_line_with_its_count() {
        let mut screen = ramp_after_failover();
        let paused = |at: &str, to: u16| DecisionLine {
            at: at.into(),
            kind: "scale".into(),
            outcome: "paused".into(),
            reason: format!("... scale 4 -> {to}"),
            repeats: 0,
        };
        for (second, to) in [(1, 6), (2, 6), (3, 7)] {
            screen.decided(paused(&format!("14:32:0{second}"), to));
        }
        let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
        terminal.draw(|frame| draw(frame, &screen)).unwrap();
        let text = text(&terminal);
        assert_eq!(text.matches("scale [paused]").count(), 1, "{text}");
        assert!(
            text.contains("14:32:03 scale [paused] (decided 3 times) ... scale 4 -> 7"),
            "{text}"
        );
        // Performed decisions are each their own line.
        assert_eq!(text.matches("failover [applied]").count(), 1, "{text}");
        assert_eq!(text.matches("scale [applied]").count(), 1, "{text}");
    }

    #[test]
    fn history_keeps_only_the_window() {
        let mut screen = Screen::default();
        for t in 0..1000 {
            screen.push(Point { t: f64::from(t), demanded: 1.0, served: 1.0, instances: 1 });
        }
        assert_eq!(screen.history.front().map(|p| p.t), Some(999.0 - WINDOW_SECS));
    }
}
