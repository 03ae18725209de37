//! Tables for people, the one way every command prints them: aligned columns, one line per
//! row whatever a cell holds (a peer's error can span lines: it is folded onto one), and
//! sizes in binary units. JSON output keeps exact numbers and full texts; only tables fold.

use std::fmt;

/// Columns with a header, each left- or right-aligned, two spaces apart.
pub(super) struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers, every column left-aligned.
    pub(super) fn new(header: &[&'static str]) -> Self {
        Self { header: header.to_vec(), right: vec![false; header.len()], rows: Vec::new() }
    }

    /// Right-aligns the named columns (numbers and sizes).
    pub(super) fn right_aligned(mut self, columns: &[&str]) -> Self {
        for (right, name) in self.right.iter_mut().zip(&self.header) {
            *right = columns.contains(name);
        }
        self
    }

    /// Adds a row; each cell is folded onto one line ([`one_line`]).
    pub(super) fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().map(|cell| one_line(&cell)).collect());
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for (i, row) in std::iter::once(&header).chain(&self.rows).enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .zip(&self.right)
                .map(
                    |((cell, &w), &right)| {
                        if right { format!("{cell:>w$}") } else { format!("{cell:<w$}") }
                    },
                )
                .collect();
            f.write_str(cells.join("  ").trim_end())?;
        }
        Ok(())
    }
}

/// `text` on one line: every run of blanks that holds more than plain spaces (a line break, a
/// tab, an escape sequence's ESC or another control character) becomes one space, and blanks
/// at either end go, so a cell can neither break its row nor drive the terminal. Runs of
/// plain spaces stay as they are.
pub(super) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // The run of blanks (whitespace or control characters) not yet written, and whether it
    // held anything but plain spaces.
    let mut run = String::new();
    let mut folded = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            run.push(c);
            folded |= c != ' ';
            continue;
        }
        // Blanks before the first character and after the last are dropped.
        if !out.is_empty() {
            if folded {
                out.push(' ');
            } else {
                out.push_str(&run);
            }
        }
        run.clear();
        folded = false;
        out.push(c);
    }
    out
}

/// A size in binary units, one decimal: `1536` -> `1.5 KiB`; under 1 KiB in bytes (`512 B`).
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_line_cell_stays_on_its_row() {
        let mut table = Table::new(&["INSTANCE", "OUTCOME", "OPS/S"]).right_aligned(&["OPS/S"]);
        table.row([
            "10.0.0.1:6379".to_owned(),
            "protocol error: Parse error at 1\nUnexpected `84`\r\nUnexpected `72`\n".to_owned(),
            "-".to_owned(),
        ]);
        table.row(["10.0.0.2:6379".to_owned(), "ok".to_owned(), "1,200".to_owned()]);
        let text = table.to_string();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "INSTANCE       OUTCOME                                                           OPS/S",
                "10.0.0.1:6379  protocol error: Parse error at 1 Unexpected `84` Unexpected `72`      -",
                "10.0.0.2:6379  ok                                                                1,200",
            ]
        );
    }

    #[test]
    fn one_line_folds_breaks_and_control_characters_only() {
        assert_eq!(one_line("a\n  b\r\n\tc"), "a b c");
        assert_eq!(one_line("\u{1b}[31mred"), "[31mred");
        assert_eq!(one_line("x\u{1b}[31mred"), "x [31mred");
        assert_eq!(one_line("keeps  two spaces"), "keeps  two spaces");
        assert_eq!(one_line("\ntrailing\n"), "trailing");
    }

    #[test]
    fn sizes_are_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(88_892), "86.8 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
