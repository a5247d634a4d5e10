//! How the rules name objects and figures in findings: quoted identifiers, bytes, hours,
//! whether a statement mentions a table, a table's row estimate.

use crate::advise::sample::TableStat;

pub(super) fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// Quotes an identifier for SQL when it needs it (as `quote_ident` does).
pub fn quote_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// `1.5 GiB`-style bytes for summaries.
pub(super) fn bytes(n: f64) -> String {
    crate::units::human_bytes(n.max(0.0) as u64)
}

pub(super) fn hours(seconds: f64) -> f64 {
    (seconds / 3600.0).max(1.0)
}

/// Whether `text` names the table `name` (optionally `schema.name`), as a whole word.
pub(super) fn mentions(text: &str, name: &str) -> bool {
    let text = text.to_lowercase();
    let name = name.to_lowercase();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut start = 0;
    while let Some(pos) = text[start..].find(&name) {
        let at = start + pos;
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return true;
        }
        start = at + name.len().max(1);
    }
    false
}

/// The table's rows: the planner's count from the last ANALYZE or VACUUM when there is one
/// (n_live_tup can double-count when ANALYZE runs before the inserting session has flushed its
/// statistics), else the statistics' live count.
pub(super) fn row_estimate(t: &TableStat) -> f64 {
    if t.reltuples > 0.0 {
        t.reltuples
    } else {
        t.n_live_tup.max(1.0)
    }
}

/// A duration in the report's text: [`crate::units::human_duration`].
pub fn human_seconds(s: f64) -> String {
    crate::units::human_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advise_quote_ident_and_mentions() {
        assert_eq!(quote_ident("claims"), "claims");
        assert_eq!(quote_ident("Claims"), "\"Claims\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert!(mentions("SELECT * FROM public.Claims c", "claims"));
        assert!(!mentions("SELECT * FROM claims_archive", "claims"));
        assert!(mentions("select 1 from x join claims on true", "claims"));
    }
}
