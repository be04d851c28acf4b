//! Column-aligned tables for terminals.

/// Renders rows under a header, columns padded to the widest cell.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

/// A JSON value as a table cell: strings without their quotes.
pub(super) fn display_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_are_aligned_to_the_widest_cell() {
        let t = super::render(
            &["NODE", "ROLE"],
            &[
                vec!["masters-1".into(), "master".into()],
                vec!["a-1".into(), "agent".into()],
            ],
        );
        assert_eq!(t, "NODE       ROLE\nmasters-1  master\na-1        agent\n");
    }
}
