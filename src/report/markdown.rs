//! Small markdown helpers for `report.md` and `results.md`.

/// Column alignment in a markdown table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Align {
    /// `---` (renderer default, usually left).
    #[default]
    Left,
    /// `---:`
    Right,
    /// `:---:`
    Center,
}

/// Escapes a cell: `|` becomes `\|` and line breaks become spaces.
fn escape_cell(s: &str) -> String {
    s.replace('|', "\\|")
        .replace("\r\n", " ")
        .replace(['\n', '\r'], " ")
}

/// Renders a markdown table with every column left-aligned. See [`markdown_table_aligned`].
pub fn markdown_table<H: AsRef<str>, C: AsRef<str>>(headers: &[H], rows: &[Vec<C>]) -> String {
    markdown_table_aligned(headers, &[], rows)
}

/// Renders a markdown table (header line, separator line, one line per row, trailing newline).
///
/// Cells are escaped (`|` → `\|`, newlines → spaces) and padded so the source lines up.
/// `aligns[i]` sets column `i` (missing entries are [`Align::Left`]). Rows shorter than the
/// widest row are padded with empty cells; headers likewise.
pub fn markdown_table_aligned<H: AsRef<str>, C: AsRef<str>>(
    headers: &[H],
    aligns: &[Align],
    rows: &[Vec<C>],
) -> String {
    let n_cols = rows
        .iter()
        .map(Vec::len)
        .chain(std::iter::once(headers.len()))
        .max()
        .unwrap_or(0)
        .max(1);
    let cells = |r: &[C]| -> Vec<String> {
        (0..n_cols)
            .map(|i| {
                r.get(i)
                    .map_or_else(String::new, |c| escape_cell(c.as_ref()))
            })
            .collect()
    };
    let head: Vec<String> = (0..n_cols)
        .map(|i| {
            headers
                .get(i)
                .map_or_else(String::new, |h| escape_cell(h.as_ref()))
        })
        .collect();
    let body: Vec<Vec<String>> = rows.iter().map(|r| cells(r)).collect();
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count().max(3)).collect();
    for r in &body {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let align = |i: usize| aligns.get(i).copied().unwrap_or_default();
    let pad = |s: &str, w: usize, a: Align| -> String {
        let fill = w.saturating_sub(s.chars().count());
        match a {
            Align::Right => format!("{}{s}", " ".repeat(fill)),
            Align::Left | Align::Center => format!("{s}{}", " ".repeat(fill)),
        }
    };
    let line = |cells: &[String]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| pad(c, widths[i], align(i)))
            .collect();
        format!("| {} |\n", parts.join(" | "))
    };
    let mut out = line(&head);
    let seps: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, &w)| match align(i) {
            Align::Left => "-".repeat(w),
            Align::Right => format!("{}:", "-".repeat(w - 1)),
            Align::Center => format!(":{}:", "-".repeat(w - 2)),
        })
        .collect();
    out.push_str(&format!("| {} |\n", seps.join(" | ")));
    for r in &body {
        out.push_str(&line(r));
    }
    out
}

/// Formats a duration in seconds as `h:mm:ss` (rounded to the nearest second; hours are not
/// wrapped at 24). Negative or non-finite input gives `0:00:00`.
pub fn format_duration_hms(secs: f64) -> String {
    let total = if secs.is_finite() && secs > 0.0 {
        secs.round() as u64
    } else {
        0
    };
    format!(
        "{}:{:02}:{:02}",
        total / 3600,
        (total / 60) % 60,
        total % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_table() {
        let t = markdown_table(
            &["model", "BACC"],
            &[
                vec!["mobilenet_v3".to_string(), "0.7123".to_string()],
                vec!["tiny".to_string(), "0.5".to_string()],
            ],
        );
        let expected = "\
| model        | BACC   |
| ------------ | ------ |
| mobilenet_v3 | 0.7123 |
| tiny         | 0.5    |
";
        assert_eq!(t, expected);
    }

    #[test]
    fn aligned_escaped_and_ragged() {
        let t = markdown_table_aligned(
            &["a", "b"],
            &[Align::Right, Align::Center],
            &[vec!["x|y", "line\nbreak", "extra"], vec!["1"]],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "|    a | b          |       |");
        assert_eq!(lines[1], "| ---: | :--------: | ----- |");
        assert_eq!(lines[2], "| x\\|y | line break | extra |");
        assert_eq!(lines[3], "|    1 |            |       |");
    }

    #[test]
    fn empty_table() {
        let rows: Vec<Vec<String>> = Vec::new();
        let t = markdown_table(&["only"], &rows);
        assert_eq!(t, "| only |\n| ---- |\n");
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration_hms(0.0), "0:00:00");
        assert_eq!(format_duration_hms(59.4), "0:00:59");
        assert_eq!(format_duration_hms(59.6), "0:01:00");
        assert_eq!(format_duration_hms(3661.0), "1:01:01");
        assert_eq!(format_duration_hms(97_389.0), "27:03:09");
        assert_eq!(format_duration_hms(-5.0), "0:00:00");
        assert_eq!(format_duration_hms(f64::NAN), "0:00:00");
    }
}
