//! Human output: aligned tables, ages, colour (only on a terminal, never
//! with NO_COLOR) and the address map.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::IpAddr;

use host_local::addr;
use host_local::config::Range;

/// ANSI colours, or nothing.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub color: bool,
}

pub const RED: &str = "31";
pub const YELLOW: &str = "33";
pub const GREEN: &str = "32";
pub const BOLD: &str = "1";
pub const DIM: &str = "2";

impl Style {
    /// Colour when stdout is a terminal, NO_COLOR is unset or empty and TERM is not dumb.
    pub fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        Style {
            color: std::io::stdout().is_terminal() && !no_color && !dumb,
        }
    }

    pub fn paint(&self, s: &str, code: &str) -> String {
        if self.color && !code.is_empty() && !s.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// A table cell: text and an optional colour.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    pub text: String,
    pub color: &'static str,
}

impl<T: Into<String>> From<T> for Cell {
    fn from(t: T) -> Cell {
        Cell {
            text: t.into(),
            color: "",
        }
    }
}

pub fn colored(text: impl Into<String>, color: &'static str) -> Cell {
    Cell {
        text: text.into(),
        color,
    }
}

/// An aligned table; numeric columns are right-aligned.
pub struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// Headers ending in '>' are right-aligned (the '>' is dropped).
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.trim_end_matches('>')).collect(),
            right: headers.iter().map(|h| h.ends_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self, style: Style) -> String {
        let n = self.headers.len();
        let mut width: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.text.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<(String, &'static str)>, out: &mut String| {
            let mut s = String::new();
            let last = cells
                .iter()
                .rposition(|(t, _)| !t.is_empty())
                .map_or(0, |i| i + 1);
            for (i, (text, color)) in cells.into_iter().enumerate().take(last) {
                if i > 0 {
                    s.push_str("  ");
                }
                let pad = width[i].saturating_sub(text.chars().count());
                let painted = style.paint(&text, color);
                if self.right[i] {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(&painted);
                } else {
                    s.push_str(&painted);
                    if i + 1 < last {
                        s.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(&s);
            out.push('\n');
        };
        line(
            self.headers.iter().map(|h| (h.to_string(), BOLD)).collect(),
            &mut out,
        );
        for r in &self.rows {
            let mut cells: Vec<(String, &'static str)> =
                r.iter().map(|c| (c.text.clone(), c.color)).collect();
            cells.resize(n, (String::new(), ""));
            line(cells, &mut out);
        }
        out
    }
}

/// A compact age: 42s, 5m, 3h7m, 12d4h.
pub fn age(secs: i64) -> String {
    if secs < 0 {
        return "future".into();
    }
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{secs}s")
    }
}

pub fn percent(f: f64) -> String {
    format!("{:.1}%", f * 100.0)
}

/// One line of a range's map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapLine {
    /// `ROW` addresses from `start`, one char each (' ': outside the range).
    Row { start: IpAddr, cells: String },
    /// Rows left out: every address in them is `what` ("free" or "excluded").
    Gap {
        rows: u128,
        from: IpAddr,
        to: IpAddr,
        what: &'static str,
    },
}

/// Addresses per map row.
pub const ROW: u128 = 64;

/// The map of one range.
#[derive(Clone, Debug)]
pub struct RangeMap {
    pub lines: Vec<MapLine>,
    /// Rows with something in them that were not drawn (over the limit).
    pub rows_not_shown: u128,
}

/// Draws `r`: `marks` maps address values to '#' (reserved) or '!'
/// (reserved with a problem). Rows are aligned on multiples of 64. When
/// the range needs more than `max_rows` rows, only rows holding something
/// (a reservation, the gateway, an exclusion boundary, the range's ends) are
/// drawn, runs of uniform rows between them summarised, and at most
/// `max_rows` rows are drawn.
pub fn map_range(r: &Range, marks: &BTreeMap<u128, char>, max_rows: usize) -> RangeMap {
    let (s, e) = (addr::to_u128(r.start), addr::to_u128(r.end));
    let like = r.start;
    let gw = addr::to_u128(r.gateway);
    let (first_row, last_row) = (s / ROW, e / ROW);
    let total = last_row - first_row + 1;
    let cell = |n: u128| -> char {
        if let Some(c) = marks.get(&n) {
            return if n < s || n > e { '!' } else { *c };
        }
        if n < s || n > e {
            ' '
        } else if n == gw {
            'G'
        } else if r.exclude.iter().any(|&(a, b)| a <= n && n <= b) {
            'x'
        } else {
            '.'
        }
    };
    let draw = |row: u128| -> MapLine {
        let base = row * ROW;
        let mut cells = String::with_capacity(ROW as usize + 4);
        for i in 0..ROW {
            cells.push(cell(base + i));
        }
        MapLine::Row {
            start: addr::from_u128(like, base),
            cells,
        }
    };
    let mut out = RangeMap {
        lines: Vec::new(),
        rows_not_shown: 0,
    };
    if total <= max_rows as u128 {
        for row in first_row..=last_row {
            out.lines.push(draw(row));
        }
        return out;
    }
    let mut interesting: Vec<u128> = vec![first_row, last_row];
    if (s..=e).contains(&gw) {
        interesting.push(gw / ROW);
    }
    for &n in marks.keys() {
        let row = n / ROW;
        if (first_row..=last_row).contains(&row) {
            interesting.push(row);
        }
    }
    for &(a, b) in &r.exclude {
        for n in [a, b] {
            if (s..=e).contains(&n) {
                interesting.push(n / ROW);
            }
        }
        // The row just after an exclusion starts the next uniform run.
        if b < e {
            interesting.push((b + 1) / ROW);
        }
    }
    interesting.sort_unstable();
    interesting.dedup();
    let mut prev: Option<u128> = None;
    for (k, &row) in interesting.iter().enumerate() {
        if k >= max_rows {
            out.rows_not_shown = (interesting.len() - k) as u128;
            break;
        }
        if let Some(p) = prev {
            if row > p + 1 {
                let from = (p + 1) * ROW;
                let to = row * ROW - 1;
                let what = if r.exclude.iter().any(|&(a, b)| a <= from && from <= b) {
                    "excluded"
                } else {
                    "free"
                };
                out.lines.push(MapLine::Gap {
                    rows: row - p - 1,
                    from: addr::from_u128(like, from),
                    to: addr::from_u128(like, to),
                    what,
                });
            }
        }
        out.lines.push(draw(row));
        prev = Some(row);
    }
    out
}

/// Renders a map for humans, colouring problem marks.
pub fn render_map(m: &RangeMap, style: Style) -> String {
    let width = m
        .lines
        .iter()
        .filter_map(|l| match l {
            MapLine::Row { start, .. } => Some(start.to_string().len()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for l in &m.lines {
        match l {
            MapLine::Row { start, cells } => {
                let mut painted = String::new();
                let grouped: String = cells
                    .chars()
                    .enumerate()
                    .flat_map(|(i, c)| (i > 0 && i % 16 == 0).then_some(' ').into_iter().chain([c]))
                    .collect();
                for c in grouped.trim_end().chars() {
                    match c {
                        '!' => painted.push_str(&style.paint("!", RED)),
                        '#' => painted.push_str(&style.paint("#", GREEN)),
                        'G' | 'x' => painted.push_str(&style.paint(&c.to_string(), DIM)),
                        _ => painted.push(c),
                    }
                }
                let _ = writeln!(out, "  {:<width$}  {painted}", start.to_string());
            }
            MapLine::Gap {
                rows,
                from,
                to,
                what,
            } => {
                let _ = writeln!(
                    out,
                    "  {}",
                    style.paint(
                        &format!(
                            "... {rows} row{} all {what} ({from} - {to})",
                            if *rows == 1 { "" } else { "s" }
                        ),
                        DIM
                    )
                );
            }
        }
    }
    if m.rows_not_shown > 0 {
        let _ = writeln!(
            out,
            "  {}",
            style.paint(
                &format!(
                    "({} more row{} with reservations or boundaries not shown; raise --map-rows)",
                    m.rows_not_shown,
                    if m.rows_not_shown == 1 { "" } else { "s" }
                ),
                YELLOW
            )
        );
    }
    out
}

pub const MAP_LEGEND: &str =
    "legend: # reserved  ! reserved with a problem  . free  x excluded  G gateway  (blank) outside the range";

#[cfg(test)]
mod tests {
    use super::*;

    fn range(subnet: &str, start: &str, end: &str, gw: &str) -> Range {
        Range {
            subnet: subnet.parse().unwrap(),
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
            gateway: gw.parse().unwrap(),
            exclude: vec![],
            exclude_text: vec![],
        }
    }

    #[test]
    fn ages() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(125), "2m");
        assert_eq!(age(3 * 3600 + 60), "3h1m");
        assert_eq!(age(2 * 86400 + 7200), "2d2h");
    }

    #[test]
    fn small_range_draws_every_row() {
        let r = range("10.0.0.0/24", "10.0.0.1", "10.0.0.254", "10.0.0.1");
        let mut marks = BTreeMap::new();
        marks.insert(addr::to_u128("10.0.0.2".parse().unwrap()), '#');
        let m = map_range(&r, &marks, 16);
        assert_eq!(m.lines.len(), 4);
        match &m.lines[0] {
            MapLine::Row { start, cells } => {
                assert_eq!(start.to_string(), "10.0.0.0");
                assert!(cells.starts_with(" G#."), "{cells}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn huge_range_is_summarised() {
        let r = range(
            "2001:db8::/64",
            "2001:db8::1",
            "2001:db8::ffff:ffff:ffff:ffff",
            "2001:db8::1",
        );
        let mut marks = BTreeMap::new();
        marks.insert(addr::to_u128("2001:db8::1:5".parse().unwrap()), '#');
        let m = map_range(&r, &marks, 8);
        assert!(m.lines.len() <= 8 + 3);
        assert!(m
            .lines
            .iter()
            .any(|l| matches!(l, MapLine::Gap { what: "free", .. })));
        let m = map_range(&r, &marks, 1);
        assert_eq!(m.rows_not_shown, 2);
    }
}

/// A time (seconds since the epoch) as `2024-05-01 12:00:00 UTC`.
pub fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod utc_tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
