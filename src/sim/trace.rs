//! Load traces: a CSV of `time,load` rows read into a piecewise-constant demand curve.
//!
//! Column 1 is a time in one of three spellings (RFC 3339, `YYYY-MM-DD HH:MM:SS` read as UTC,
//! or seconds from the trace's start), column 2 the load. Each row's load holds from its time
//! until the next row's; the last row holds for as long as the step before it, so a trace of
//! per-minute counts ends one minute after its last timestamp. Every problem names the CSV
//! line it was found on.
//!
//! A trace is a file someone hands the CLI, so what it can make this process hold is bounded:
//! at most [`MAX_ROWS`] rows (16 bytes each in memory) of at most [`MAX_LINE_BYTES`] each.

use std::fmt;
use std::io::Read;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

use crate::decide::format_number;
use crate::observe::Timestamp;

/// Most rows a trace may have: a year and a quarter at one row per second.
pub const MAX_ROWS: usize = 40_000_000;
/// Longest span a trace may cover: a replay takes a controller tick per sampling interval of
/// it whatever its rows, so three rows a century apart would run for days. A year and a
/// quarter, as [`MAX_ROWS`] at one row per second.
pub const MAX_SPAN: Millis = 456 * MILLIS_PER_DAY;
const MILLIS_PER_DAY: Millis = 86_400_000;
/// Longest line a trace may have: a time and a load take a few dozen bytes, and a line is
/// read whole before it is parsed, so one without an end must not grow without one.
pub const MAX_LINE_BYTES: usize = 1_024;

/// Simulation time: milliseconds since the Unix epoch. Integer so that event times compare
/// exactly and integrals over them are sums of whole steps; sub-millisecond detail is rounded.
pub type Millis = i64;

/// One row: `load` from `at` until the next row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub at: Millis,
    pub load: f64,
}

/// How a trace spells its times. Slice bounds must be spelled the same way, since seconds
/// from the start and calendar dates cannot be compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeKind {
    /// RFC 3339 or `YYYY-MM-DD HH:MM:SS` (UTC).
    Calendar,
    /// Seconds from the trace's start; placed on the Unix epoch so cron floors still resolve.
    Seconds,
}

/// A validated trace: at least one row, times strictly increasing, loads finite and >= 0,
/// every time (and the end) representable as a [`Timestamp`].
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    name: String,
    kind: TimeKind,
    rows: Vec<Row>,
    end: Millis,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {source}")]
    Csv {
        file: String,
        line: u64,
        #[source]
        source: csv::Error,
    },
    #[error(
        "{file}:1: the first line looks like data (`{first}`); a trace starts with a header line such as `time,load`"
    )]
    MissingHeader { file: String, first: String },
    #[error("{file}:{line}: expected two columns, time and load; found {found}")]
    MissingColumn { file: String, line: u64, found: usize },
    #[error(
        "{file}:{line}: time `{value}` is neither RFC 3339, `YYYY-MM-DD HH:MM:SS` nor seconds from the start"
    )]
    BadTime { file: String, line: u64, value: String },
    #[error("{file}:{line}: time `{value}` is {found} but the trace's first row is {expected}")]
    MixedTimes { file: String, line: u64, value: String, found: TimeKind, expected: TimeKind },
    #[error("{file}:{line}: load `{value}` is not a finite number >= 0")]
    BadLoad { file: String, line: u64, value: String },
    #[error("{file}:{line}: time `{value}` is not after the previous row's; times must increase")]
    NotIncreasing { file: String, line: u64, value: String },
    #[error("{file}: no data rows after the header")]
    Empty { file: String },
    #[error("{file}:{line}: more than {} rows; a trace may hold no more", format_number(*max as f64))]
    TooManyRows { file: String, line: u64, max: usize },
    #[error(
        "{file}:{line}: the line is longer than {MAX_LINE_BYTES} bytes; a row is a time and a load"
    )]
    LongLine { file: String, line: u64 },
    #[error("{file}: row {index} (counting from 0) does not come after the row before it")]
    UnorderedRows { file: String, index: usize },
    #[error("{file}: row {index} (counting from 0) has a load that is not a finite number >= 0")]
    InvalidRowLoad { file: String, index: usize },
    #[error("{file}: the trace's times lie outside the representable calendar")]
    OutOfRange { file: String },
    #[error("{file}: a single row has no step to tell how long it lasts; give at least two rows")]
    SingleRow { file: String },
    #[error("{file}: the trace spans {days} days; at most {} are replayed", MAX_SPAN / MILLIS_PER_DAY)]
    TooLong { file: String, days: i64 },
    #[error("{file}: slice bound `{value}` is {found} but the trace's times are {expected}")]
    SliceKind { file: String, value: String, found: TimeKind, expected: TimeKind },
    #[error("slice bound `{value}` is neither RFC 3339, `YYYY-MM-DD HH:MM:SS` nor seconds")]
    BadSliceBound { value: String },
    #[error("{file}: the slice {from} .. {to} holds no part of the trace ({start} .. {end})")]
    EmptySlice { file: String, from: String, to: String, start: String, end: String },
}

/// A reader that fails at the first record longer than [`MAX_LINE_BYTES`], remembering the
/// line it began on: the CSV reader holds a record whole, so a file without line ends, or with
/// a quote never closed (a quoted field goes on across line ends), would otherwise be read into
/// memory entire.
struct LineLimited<R> {
    inner: R,
    /// Bytes since the record being read began.
    open: usize,
    /// Line ends seen, quoted or not.
    lines: u64,
    /// The line the record being read began on.
    record_line: u64,
    /// Inside a quoted field: a line end there does not end the record.
    quoted: bool,
    /// The line the record that was too long began on, once one was.
    long_line: Option<u64>,
}

impl<R> LineLimited<R> {
    fn new(inner: R) -> Self {
        Self { inner, open: 0, lines: 0, record_line: 1, quoted: false, long_line: None }
    }
}

impl<R: Read> Read for LineLimited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        let mut start = 0;
        for at in memchr::memchr2_iter(b'\n', b'"', &buf[..read]) {
            if buf[at] == b'"' {
                // An escaped quote (`""`) toggles twice: the state comes out right.
                self.quoted = !self.quoted;
                continue;
            }
            self.lines += 1;
            if self.quoted {
                continue;
            }
            if self.open + (at - start) > MAX_LINE_BYTES {
                break;
            }
            self.open = 0;
            self.record_line = self.lines + 1;
            start = at + 1;
        }
        self.open += read - start;
        if self.open > MAX_LINE_BYTES {
            let line = self.record_line;
            self.long_line = Some(line);
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {line} is longer than {MAX_LINE_BYTES} bytes"),
            ));
        }
        Ok(read)
    }
}

impl fmt::Display for TimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeKind::Calendar => "a calendar time",
            TimeKind::Seconds => "seconds from the start",
        })
    }
}

/// The wall-clock instant of a simulation time. Traces check on load that all their times
/// are representable, so the saturating fallback is never reached for times inside a trace.
pub fn timestamp(at: Millis) -> Timestamp {
    DateTime::from_timestamp_millis(at).unwrap_or(if at < 0 {
        Timestamp::MIN_UTC
    } else {
        Timestamp::MAX_UTC
    })
}

/// [`timestamp`] for times that move by less than a day at a time, as a replay's ticks do: the
/// calendar date (most of what a conversion costs) is worked out once per day instead of at
/// every tick.
#[derive(Debug, Default)]
pub struct Clock {
    /// The last day converted, counted from the epoch, with its date.
    day: Option<(i64, NaiveDate)>,
}

impl Clock {
    /// Exactly what [`timestamp`] returns for `at`.
    pub fn timestamp(&mut self, at: Millis) -> Timestamp {
        let day = at.div_euclid(MILLIS_PER_DAY);
        let of_day = at.rem_euclid(MILLIS_PER_DAY);
        if let Some((known, date)) = self.day
            && known == day
        {
            // Both below their bounds: `of_day` is under a day.
            let (seconds, nanos) = ((of_day / 1000) as u32, (of_day % 1000 * 1_000_000) as u32);
            if let Some(time) = NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos) {
                return date.and_time(time).and_utc();
            }
        }
        let Some(converted) = DateTime::from_timestamp_millis(at) else { return timestamp(at) };
        self.day = Some((day, converted.date_naive()));
        converted
    }
}

/// Parses one time in any of the three spellings.
pub fn parse_time(text: &str) -> Option<(TimeKind, Millis)> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some((TimeKind::Calendar, at.timestamp_millis()));
    }
    if let Ok(at) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Some((TimeKind::Calendar, at.and_utc().timestamp_millis()));
    }
    let seconds: f64 = text.parse().ok()?;
    let millis = (seconds * 1000.0).round();
    // Bounded so the conversion cannot saturate silently and the instant stays in chrono's
    // range (about +-262,000 years).
    (seconds.is_finite() && millis.abs() < 8.0e15).then_some((TimeKind::Seconds, millis as Millis))
}

/// Whether `at` is an instant [`timestamp`] can give: compared as a number, since building
/// the date for every row of a weeks-long per-second trace costs more than reading the row.
fn representable(at: Millis) -> bool {
    static RANGE: LazyLock<RangeInclusive<Millis>> = LazyLock::new(|| {
        Timestamp::MIN_UTC.timestamp_millis()..=Timestamp::MAX_UTC.timestamp_millis()
    });
    RANGE.contains(&at)
}

impl Trace {
    /// Reads and validates a trace file. `file` names it in errors.
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        Self::load_at_most(path, MAX_ROWS)
    }

    /// [`Trace::load`] holding at most `max_rows` rows: what is left of [`MAX_ROWS`] when
    /// several traces are held at once.
    pub fn load_at_most(path: &Path, max_rows: usize) -> Result<Self, TraceError> {
        let file = path.display().to_string();
        let reader = std::fs::File::open(path)
            .map_err(|source| TraceError::Read { file: file.clone(), source })?;
        Self::parse_at_most(&file, reader, max_rows)
    }

    /// Reads and validates CSV text; `file` names it in errors.
    pub fn parse(file: &str, input: impl Read) -> Result<Self, TraceError> {
        Self::parse_at_most(file, input, MAX_ROWS)
    }

    /// [`Trace::parse`] holding at most `max_rows` rows.
    fn parse_at_most(file: &str, input: impl Read, max_rows: usize) -> Result<Self, TraceError> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(LineLimited::new(input));
        let csv_error =
            |csv: &csv::Reader<LineLimited<_>>, source: csv::Error| match csv.get_ref().long_line {
                Some(line) => TraceError::LongLine { file: file.to_owned(), line },
                None => TraceError::Csv {
                    file: file.to_owned(),
                    line: source.position().map_or(0, csv::Position::line),
                    source,
                },
            };
        let header = match csv.headers() {
            Ok(header) => header.clone(),
            Err(source) => return Err(csv_error(&csv, source)),
        };
        let looks_like_data = header.len() >= 2
            && parse_time(&header[0]).is_some()
            && header[1].trim().parse::<f64>().is_ok();
        if looks_like_data {
            return Err(TraceError::MissingHeader {
                file: file.to_owned(),
                first: header.iter().map(str::trim).collect::<Vec<_>>().join(","),
            });
        }

        let mut rows: Vec<Row> = Vec::new();
        let mut kind = None;
        let mut record = csv::StringRecord::new();
        // Fields are trimmed here, not by the reader: its trimming builds a new record for
        // every row, nearly half the time a weeks-long per-second trace took to load.
        loop {
            match csv.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(source) => return Err(csv_error(&csv, source)),
            }
            let line = record.position().map_or(0, csv::Position::line);
            if rows.len() == max_rows {
                return Err(TraceError::TooManyRows { file: file.to_owned(), line, max: max_rows });
            }
            if record.len() < 2 {
                // A blank line inside the file reads as one empty field: skip it.
                if record.len() == 1 && record[0].trim().is_empty() {
                    continue;
                }
                return Err(TraceError::MissingColumn {
                    file: file.to_owned(),
                    line,
                    found: record.len(),
                });
            }
            let (time_text, load_text) = (record[0].trim(), record[1].trim());
            let bad_time =
                || TraceError::BadTime { file: file.to_owned(), line, value: time_text.to_owned() };
            let (row_kind, at) = parse_time(time_text).ok_or_else(bad_time)?;
            if !representable(at) {
                return Err(bad_time());
            }
            let expected = *kind.get_or_insert(row_kind);
            if row_kind != expected {
                return Err(TraceError::MixedTimes {
                    file: file.to_owned(),
                    line,
                    value: time_text.to_owned(),
                    found: row_kind,
                    expected,
                });
            }
            let load = load_text.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
            let Some(load) = load else {
                return Err(TraceError::BadLoad {
                    file: file.to_owned(),
                    line,
                    value: load_text.to_owned(),
                });
            };
            if rows.last().is_some_and(|previous| previous.at >= at) {
                return Err(TraceError::NotIncreasing {
                    file: file.to_owned(),
                    line,
                    value: time_text.to_owned(),
                });
            }
            rows.push(Row { at, load });
        }
        let kind = kind.ok_or_else(|| TraceError::Empty { file: file.to_owned() })?;
        Self::from_rows(file, kind, rows)
    }

    /// A trace from rows already in memory (benchmarks, tests). Times must strictly increase.
    pub fn from_rows(name: &str, kind: TimeKind, rows: Vec<Row>) -> Result<Self, TraceError> {
        let file = name.to_owned();
        let [.., before_last, last] = rows.as_slice() else {
            return Err(if rows.is_empty() {
                TraceError::Empty { file }
            } else {
                TraceError::SingleRow { file }
            });
        };
        if let Some(bad) = rows.windows(2).position(|pair| pair[0].at >= pair[1].at) {
            return Err(TraceError::UnorderedRows { file, index: bad + 1 });
        }
        if let Some(bad) = rows.iter().position(|r| !(r.load.is_finite() && r.load >= 0.0)) {
            return Err(TraceError::InvalidRowLoad { file, index: bad });
        }
        let end = last.at.saturating_add(last.at.saturating_sub(before_last.at));
        if !representable(end) || !representable(rows[0].at) {
            return Err(TraceError::OutOfRange { file });
        }
        let span = end.saturating_sub(rows[0].at);
        if span > MAX_SPAN {
            return Err(TraceError::TooLong { file, days: span / MILLIS_PER_DAY });
        }
        Ok(Self { name: file, kind, rows, end })
    }

    /// Keeps the part of the trace in `[from, to)`; a row cut by `from` starts at `from`.
    pub fn slice(self, from: Option<&str>, to: Option<&str>) -> Result<Self, TraceError> {
        let bound = |text: &str| -> Result<Millis, TraceError> {
            let (kind, at) = parse_time(text)
                .ok_or_else(|| TraceError::BadSliceBound { value: text.to_owned() })?;
            if kind != self.kind {
                return Err(TraceError::SliceKind {
                    file: self.name.clone(),
                    value: text.to_owned(),
                    found: kind,
                    expected: self.kind,
                });
            }
            Ok(at)
        };
        let from_at = from.map(bound).transpose()?.unwrap_or(self.start()).max(self.start());
        let to_at = to.map(bound).transpose()?.unwrap_or(self.end).min(self.end);
        if from_at >= to_at {
            return Err(TraceError::EmptySlice {
                file: self.name.clone(),
                from: from.unwrap_or("start").to_owned(),
                to: to.unwrap_or("end").to_owned(),
                start: self.format_time(self.start()),
                end: self.format_time(self.end),
            });
        }
        // The row covering `from_at` is the last one starting at or before it.
        let first = self.rows.partition_point(|r| r.at <= from_at).saturating_sub(1);
        let past_last = self.rows.partition_point(|r| r.at < to_at);
        let mut rows = self.rows[first..past_last].to_vec();
        if let Some(head) = rows.first_mut() {
            head.at = from_at;
        }
        Ok(Self { name: self.name, kind: self.kind, rows, end: to_at })
    }

    /// Multiplies every load by `factor`, turning the trace's unit into demanded ops/s.
    pub fn scale(&mut self, factor: f64) {
        for row in &mut self.rows {
            row.load *= factor;
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> TimeKind {
        self.kind
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn start(&self) -> Millis {
        self.rows[0].at
    }

    /// Where the last row stops.
    pub fn end(&self) -> Millis {
        self.end
    }

    /// The largest load of any row.
    /// The load in force at `at`: the last row at or before it (the first row before the start).
    pub fn load_at(&self, at: Millis) -> f64 {
        let next = self.rows.partition_point(|row| row.at <= at);
        self.rows[next.saturating_sub(1)].load
    }

    pub fn peak(&self) -> f64 {
        self.rows.iter().map(|r| r.load).fold(0.0, f64::max)
    }

    /// The trace's own step: the most common gap between rows (gaps in a recording are rare).
    pub fn step(&self) -> Millis {
        let mut gaps: Vec<Millis> = self.rows.windows(2).map(|p| p[1].at - p[0].at).collect();
        gaps.push(self.end - self.rows[self.rows.len() - 1].at);
        gaps.sort_unstable();
        gaps.chunk_by(|a, b| a == b).max_by_key(|run| run.len()).map_or(0, |run| run[0])
    }

    /// A time the way the trace spells it.
    pub fn format_time(&self, at: Millis) -> String {
        match self.kind {
            TimeKind::Calendar => timestamp(at).format("%Y-%m-%d %H:%M:%S").to_string(),
            TimeKind::Seconds => format!("{}s", at as f64 / 1000.0),
        }
    }
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        /// Forwards, backwards, across days and at the ends of what chrono holds.
        #[test]
        fn the_clock_reads_as_timestamp_does(
            start in proptest::prop_oneof![
                -9_000_000_000_000_000i64..9_000_000_000_000_000,
                -86_400_000i64..86_400_000,
                8_210_266_876_799_000i64..8_210_266_876_800_000,
            ],
            steps in proptest::collection::vec(-200_000_000i64..200_000_000, 1..50),
        ) {
            let mut clock = Clock::default();
            let mut at = start;
            for step in steps {
                proptest::prop_assert_eq!(clock.timestamp(at), timestamp(at), "at {}", at);
                at = at.saturating_add(step);
            }
        }
    }

    use super::*;

    fn parse(text: &str) -> Result<Trace, TraceError> {
        Trace::parse("t.csv", text.as_bytes())
    }

    fn times(trace: &Trace) -> Vec<Millis> {
        trace.rows().iter().map(|r| r.at).collect()
    }

    #[test]
    fn reads_seconds_from_the_start() {
        let trace = parse("t,load\n0,10\n60,20\n120,5\n").expect("valid");
        assert_eq!(trace.kind(), TimeKind::Seconds);
        assert_eq!(times(&trace), vec![0, 60_000, 120_000]);
        assert_eq!(trace.rows()[1].load, 20.0);
        // The last row lasts as long as the step before it.
        assert_eq!(trace.end(), 180_000);
        assert_eq!(trace.step(), 60_000);
    }

    #[test]
    fn reads_plain_dates_as_utc() {
        let trace =
            parse("period,count\n1998-06-26 00:00:00,2\n1998-06-26 00:01:00,11\n").expect("valid");
        assert_eq!(trace.kind(), TimeKind::Calendar);
        let expected =
            DateTime::parse_from_rfc3339("1998-06-26T00:00:00Z").expect("valid").timestamp_millis();
        assert_eq!(times(&trace), vec![expected, expected + 60_000]);
        assert_eq!(trace.format_time(trace.start()), "1998-06-26 00:00:00");
    }

    #[test]
    fn reads_rfc3339_with_offsets() {
        let trace = parse("time,ops\n2026-01-05T10:00:00+02:00,1\n2026-01-05T08:00:30Z,2\n")
            .expect("valid");
        assert_eq!(trace.rows()[1].at - trace.rows()[0].at, 30_000);
    }

    #[test]
    fn spaces_around_fields_and_blank_lines_are_ignored() {
        let trace = parse(" t , load \n 0 , 10\n   \n60,\t20 \n").expect("valid");
        assert_eq!(times(&trace), vec![0, 60_000]);
        assert_eq!(trace.rows()[1].load, 20.0);
        let err = parse("t,l\n0,1\n 60 , x \n").expect_err("bad load");
        assert_eq!(err.to_string(), parse("t,l\n0,1\n60,x\n").expect_err("bad").to_string());
        let err = parse(" 0 , 1 \n60,2\n").expect_err("no header");
        assert!(
            matches!(&err, TraceError::MissingHeader { first, .. } if first == "0,1"),
            "{err:?}"
        );
    }

    #[test]
    fn representable_is_exactly_what_a_timestamp_can_hold() {
        for edge in [Timestamp::MIN_UTC.timestamp_millis(), Timestamp::MAX_UTC.timestamp_millis()] {
            for at in [edge - 1, edge, edge + 1, 0, i64::MIN, i64::MAX] {
                let holds = DateTime::from_timestamp_millis(at).is_some();
                assert_eq!(representable(at), holds, "{at}");
            }
        }
    }

    #[test]
    fn fractional_seconds_keep_millisecond_precision() {
        let trace = parse("t,l\n0.5,1\n1.25,1\n").expect("valid");
        assert_eq!(times(&trace), vec![500, 1250]);
    }

    #[test]
    fn names_the_line_of_a_time_that_does_not_increase() {
        let err = parse("t,l\n0,1\n60,1\n60,1\n").expect_err("repeated time");
        assert!(matches!(err, TraceError::NotIncreasing { line: 4, .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "t.csv:4: time `60` is not after the previous row's; times must increase"
        );
        let err = parse("t,l\n0,1\n60,1\n30,1\n").expect_err("going back");
        assert!(matches!(err, TraceError::NotIncreasing { line: 4, .. }), "{err:?}");
    }

    #[test]
    fn names_the_line_of_bad_values() {
        let err = parse("t,l\n0,1\nnoon,1\n").expect_err("bad time");
        assert!(matches!(err, TraceError::BadTime { line: 3, .. }), "{err:?}");
        let err = parse("t,l\n0,1\n60,-4\n").expect_err("negative load");
        assert!(matches!(err, TraceError::BadLoad { line: 3, .. }), "{err:?}");
        let err = parse("t,l\n0,1\n60,NaN\n").expect_err("NaN load");
        assert!(matches!(err, TraceError::BadLoad { line: 3, .. }), "{err:?}");
        let err = parse("t,l\n0,1\n60\n").expect_err("one column");
        assert!(matches!(err, TraceError::MissingColumn { line: 3, found: 1, .. }), "{err:?}");
        let err = parse("t,l\n0,1\n1998-06-26 00:00:00,1\n").expect_err("mixed");
        assert!(matches!(err, TraceError::MixedTimes { line: 3, .. }), "{err:?}");
    }

    /// A file without line ends, or with one huge line, is refused at that line rather than
    /// read whole; a line of exactly the limit is a row like any other.
    #[test]
    fn names_the_line_that_is_too_long() {
        let row_of = |bytes: usize| format!("60,1{}", " ".repeat(bytes - 4));
        let text = format!("time,load\n0,1\n{}\n", row_of(MAX_LINE_BYTES));
        assert_eq!(Trace::parse("t.csv", text.as_bytes()).expect("valid").rows().len(), 2);

        let text = format!("time,load\n0,1\n{}\n120,1\n", row_of(MAX_LINE_BYTES + 1));
        let error = Trace::parse("t.csv", text.as_bytes()).expect_err("too long");
        assert_eq!(
            error.to_string(),
            "t.csv:3: the line is longer than 1024 bytes; a row is a time and a load"
        );
        // No line end at all, as from a binary file: refused within the first line.
        let endless = std::io::repeat(b'x');
        let error = Trace::parse("t.csv", endless).expect_err("no line ends");
        assert!(matches!(error, TraceError::LongLine { line: 1, .. }), "{error}");
        // Many short lines across reads of any size count lines right.
        let many: String = (0..5_000).map(|i| format!("{i},1\n")).collect();
        let text = format!("time,load\n{many}{}\n", row_of(2_000));
        let error = Trace::parse("t.csv", text.as_bytes()).expect_err("too long");
        assert!(matches!(error, TraceError::LongLine { line: 5_002, .. }), "{error}");
        // A quote never closed: the field goes on across short lines, and the record is
        // refused where it began, not read to the end of the file.
        let open_field = format!("time,load\n0,1\n\"60{}", "\n".repeat(5_000));
        let error = Trace::parse("t.csv", open_field.as_bytes()).expect_err("an open quote");
        assert!(matches!(error, TraceError::LongLine { line: 3, .. }), "{error}");
        // Quoted fields that close are rows like any other.
        let quoted = "time,load\n\"0\",\"1\"\n\"60\",\"2\"\n";
        assert_eq!(Trace::parse("t.csv", quoted.as_bytes()).expect("valid").rows().len(), 2);
    }

    #[test]
    fn refuses_more_rows_than_it_may_hold() {
        let text = "time,load\n0,1\n1,1\n2,1\n3,1\n";
        assert!(Trace::parse_at_most("t.csv", text.as_bytes(), 4).is_ok());
        let error = Trace::parse_at_most("t.csv", text.as_bytes(), 3).expect_err("too many");
        assert_eq!(error.to_string(), "t.csv:5: more than 3 rows; a trace may hold no more");
    }

    #[test]
    fn refuses_a_missing_header_empty_and_single_row_traces() {
        assert!(matches!(parse("0,1\n60,2\n"), Err(TraceError::MissingHeader { .. })));
        assert!(matches!(parse("t,l\n"), Err(TraceError::Empty { .. })));
        assert!(matches!(parse("t,l\n0,1\n"), Err(TraceError::SingleRow { .. })));
        // Three rows a century apart: refused, not replayed for days.
        let century = parse("t,l\n0,1\n3155760000,1\n3155760060,1\n").unwrap_err();
        assert_eq!(
            century.to_string(),
            "t.csv: the trace spans 36525 days; at most 456 are replayed"
        );
    }

    #[test]
    fn slices_cut_rows_at_the_bounds() {
        let trace = parse("t,l\n0,1\n60,2\n120,3\n180,4\n").expect("valid");
        let sliced = trace.clone().slice(Some("90"), Some("150")).expect("inside");
        assert_eq!(sliced.rows(), &[Row { at: 90_000, load: 2.0 }, Row { at: 120_000, load: 3.0 }]);
        assert_eq!(sliced.end(), 150_000);
        let whole = trace.clone().slice(None, None).expect("whole");
        assert_eq!(whole, trace);
        let err = trace.clone().slice(Some("1998-06-26 00:00:00"), None).expect_err("kind");
        assert!(matches!(err, TraceError::SliceKind { .. }), "{err:?}");
        let err = trace.slice(Some("500"), None).expect_err("past the end");
        assert!(matches!(err, TraceError::EmptySlice { .. }), "{err:?}");
    }

    #[test]
    fn rows_in_memory_are_checked_like_a_file() {
        let row = |at, load| Row { at, load };
        let err = Trace::from_rows("m", TimeKind::Seconds, vec![row(0, 1.0), row(0, 1.0)])
            .expect_err("repeated time");
        assert!(matches!(err, TraceError::UnorderedRows { index: 1, .. }), "{err:?}");
        let err = Trace::from_rows("m", TimeKind::Seconds, vec![row(0, 1.0), row(5, f64::NAN)])
            .expect_err("NaN load");
        assert!(matches!(err, TraceError::InvalidRowLoad { index: 1, .. }), "{err:?}");
        let err = Trace::from_rows("m", TimeKind::Seconds, vec![row(0, 1.0), row(i64::MAX, 1.0)])
            .expect_err("beyond the calendar");
        assert!(matches!(err, TraceError::OutOfRange { .. }), "{err:?}");
    }

    #[test]
    fn scaling_multiplies_loads() {
        let mut trace = parse("t,l\n0,1\n60,2\n").expect("valid");
        trace.scale(2.5);
        assert_eq!(trace.peak(), 5.0);
    }

    #[test]
    fn the_load_in_force_is_the_last_row_at_or_before() {
        let trace = parse("t,l\n0,1\n60,2\n120,3\n").expect("valid");
        let at = |s: i64| trace.start() + s * 1000;
        assert_eq!(trace.load_at(at(-5)), 1.0);
        assert_eq!(trace.load_at(at(0)), 1.0);
        assert_eq!(trace.load_at(at(59)), 1.0);
        assert_eq!(trace.load_at(at(60)), 2.0);
        assert_eq!(trace.load_at(at(500)), 3.0);
    }
}
