//! Counting skipped rows by reason, and the number formatting the report tables use.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Line numbers kept per reason, to find the rows in the file.
const LINES_KEPT: usize = 5;
/// Distinct details kept per reason (connection or field names).
const DETAILS_KEPT: usize = 10;

/// One reason's skipped rows.
#[derive(Debug, Default)]
pub struct SkipGroup {
    pub count: u64,
    /// The first few line numbers.
    pub lines: Vec<u64>,
    /// What the rows named (a connection, a field), with counts.
    pub details: BTreeMap<String, u64>,
}

/// Skipped rows by reason.
#[derive(Debug)]
pub struct Skips<R: Ord>(pub BTreeMap<R, SkipGroup>);

impl<R: Ord> Default for Skips<R> {
    fn default() -> Self {
        Skips(BTreeMap::new())
    }
}

impl<R: Ord + Copy> Skips<R> {
    pub fn add(&mut self, reason: R, line: u64, detail: Option<String>) {
        let g = self.0.entry(reason).or_default();
        g.count += 1;
        if g.lines.len() < LINES_KEPT {
            g.lines.push(line);
        }
        if let Some(d) = detail
            && (g.details.len() < DETAILS_KEPT || g.details.contains_key(&d))
        {
            *g.details.entry(d).or_default() += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().map(|g| g.count).sum()
    }

    /// `{code: {count, description, first_lines, details}}`.
    pub fn to_json(&self, name: impl Fn(R) -> (&'static str, &'static str)) -> Value {
        let mut out = serde_json::Map::new();
        for (r, g) in &self.0 {
            let (code, description) = name(*r);
            out.insert(
                code.to_string(),
                json!({"count": g.count, "description": description,
                       "first_lines": g.lines, "details": g.details}),
            );
        }
        Value::Object(out)
    }

    pub fn print_table(&self, indent: &str, name: impl Fn(R) -> (&'static str, &'static str)) {
        for (r, g) in &self.0 {
            let (code, description) = name(*r);
            let lines: Vec<String> = g.lines.iter().map(u64::to_string).collect();
            let more = if g.count > g.lines.len() as u64 {
                ", …"
            } else {
                ""
            };
            println!(
                "{indent}{code:<22}{:>8}  {description} (line {}{more})",
                fmt_count(g.count),
                lines.join(", ")
            );
            if !g.details.is_empty() {
                let d: Vec<String> = g
                    .details
                    .iter()
                    .map(|(k, n)| format!("{k}: {}", fmt_count(*n)))
                    .collect();
                println!("{indent}{:<30}  {}", "", d.join(", "));
            }
        }
    }
}

/// 1234567 → "1,234,567".
pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_well() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1_000), "1,000");
        assert_eq!(fmt_count(100_004), "100,004");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
    }

    #[test]
    fn keeps_the_first_lines_and_a_few_details() {
        let mut s: Skips<u8> = Skips::default();
        for line in 1..=20 {
            s.add(1, line, Some(format!("c{}", line % 12)));
        }
        let g = &s.0[&1];
        assert_eq!(g.count, 20);
        assert_eq!(g.lines, vec![1, 2, 3, 4, 5]);
        assert_eq!(g.details.len(), 10);
        assert_eq!(s.total(), 20);
    }
}
