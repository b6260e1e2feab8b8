//! [`Table`]: text columns aligned with spaces, for the human output, with cells coloured
//! when the stream is (see [`Paint`]).

use anstyle::Style;

use crate::colour::{HEADER, Paint};

/// Rows under a header, printed with each column as wide as its widest cell.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<Cell>,
    rows: Vec<Vec<Cell>>,
}

/// One cell: its text and the style it is shown in when colour is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cell {
    text: String,
    style: Style,
}

impl Cell {
    /// `text` shown in `style` when colour is on.
    pub(crate) fn styled(text: impl Into<String>, style: Style) -> Self {
        Cell {
            text: text.into(),
            style,
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell::styled(text, Style::new())
    }
}

impl Table {
    pub(crate) fn new<const N: usize>(header: [&str; N]) -> Self {
        Table {
            header: header.iter().map(|h| Cell::styled(*h, HEADER)).collect(),
            rows: Vec::new(),
        }
    }

    /// A row of plain cells.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(Cell::from).collect());
    }

    /// A row whose cells may be styled.
    pub(crate) fn styled_row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, coloured if `paint` is on. Columns are aligned on the text alone,
    /// so escape codes never shift them.
    pub(crate) fn render(&self, paint: Paint) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.text.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(cell.text.chars().count());
                }
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.header).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                let last = i + 1 == line.len();
                let shown = if last {
                    cell.text.trim_end().to_owned()
                } else {
                    let pad = widths.get(i).copied().unwrap_or(0);
                    format!("{:<pad$}", cell.text)
                };
                // Pad first, then paint: the padding stays outside the escape codes' count.
                let (body, trailing) = shown.split_at(shown.trim_end().len());
                text.push_str(&paint.paint(body, cell.style));
                text.push_str(trailing);
                if !last {
                    text.push_str("  ");
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

impl std::fmt::Display for Table {
    /// The table without colour.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(Paint::OFF))
    }
}

/// A duration as milliseconds with at most one decimal: `12.5ms`.
pub(crate) fn ms(value: f64) -> String {
    if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}ms")
    } else {
        format!("{value:.1}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_to_the_widest_cell() {
        let mut table = Table::new(["NAME", "N"]);
        table.row(vec!["health".into(), "12".into()]);
        table.row(vec!["x".into(), "3".into()]);
        assert_eq!(table.to_string(), "NAME    N\nhealth  12\nx       3\n");
    }

    #[test]
    fn colour_does_not_shift_columns_and_piped_output_has_none() {
        let mut table = Table::new(["CHECK", "STATUS", "AGE"]);
        table.styled_row(vec![
            Cell::from("db".to_owned()),
            Cell::styled("UNHEALTHY", crate::colour::BAD),
            Cell::from("4s".to_owned()),
        ]);
        table.styled_row(vec![
            Cell::from("connection".to_owned()),
            Cell::styled("healthy", crate::colour::GOOD),
            Cell::from("1s".to_owned()),
        ]);
        let piped = crate::colour::Paint::decide(Default::default(), false, false, false);
        let plain = table.render(piped);
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert_eq!(plain, table.to_string());
        let terminal = crate::colour::Paint::decide(Default::default(), false, true, false);
        let coloured = table.render(terminal);
        assert!(coloured.contains('\x1b'));
        assert_eq!(strip_escapes(&coloured), plain);
    }

    /// The text with every `ESC [ ... m` sequence removed.
    fn strip_escapes(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
