//! Plain-text tables for the listing commands (`models list`, `runs list`):
//! one header row, columns aligned, no borders, so the output reads in a
//! terminal and pastes into a ticket.

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, Table};

/// A table with the given column headers; columns whose header is listed
/// in `right` are right-aligned (numbers).
pub fn new(headers: &[&str], right: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header(headers.iter().map(|h| h.to_uppercase()));
    for (i, h) in headers.iter().enumerate() {
        if right.contains(h) {
            if let Some(c) = t.column_mut(i) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    t
}

/// Prints a table, trimming the padding comfy-table leaves at line ends.
pub fn print(t: &Table) {
    for line in t.to_string().lines() {
        println!("{}", line.trim_end());
    }
}

/// Prints a value as pretty JSON (the `--json` form of every listing).
pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_columns_without_borders() {
        let mut t = new(&["name", "rows"], &["rows"]);
        t.add_row(vec!["a", "1"]);
        t.add_row(vec!["long-name", "12345"]);
        let s = t.to_string();
        let lines: Vec<&str> = s.lines().map(str::trim_end).collect();
        assert!(
            lines[0].contains("NAME") && lines[0].contains("ROWS"),
            "{s}"
        );
        assert!(lines[1].ends_with(" 1"), "{s}");
        assert!(!s.contains('|') && !s.contains('+'), "{s}");
    }
}
