//! `duplicate_index`: an index with the same definition as another, or whose btree key
//! columns are a prefix of another's; the one enforcing a constraint is kept.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::naming::{bytes, qualified};
use crate::advise::model::{Finding, Impact, Inputs, Kind};
use crate::advise::sample::{IndexDef, IndexStat};

pub(super) fn duplicates(inputs: &Inputs) -> Vec<Finding> {
    let Some(current) = inputs.window.last() else {
        return Vec::new();
    };
    let stats: HashMap<i64, &IndexStat> =
        current.indexes.iter().map(|i| (i.indexrelid, i)).collect();
    let mut defs: Vec<&IndexDef> = inputs.defs.iter().filter(|d| d.valid).collect();
    defs.sort_by_key(|d| d.indexrelid);
    let mut reported: HashSet<i64> = HashSet::new();
    let mut out = Vec::new();
    for (n, a) in defs.iter().enumerate() {
        for b in &defs[n + 1..] {
            if a.relid != b.relid || a.method != b.method {
                continue;
            }
            let (Some(sa), Some(sb)) = (stats.get(&a.indexrelid), stats.get(&b.indexrelid)) else {
                continue;
            };
            let same = a.keys == b.keys
                && a.opclasses == b.opclasses
                && a.collations == b.collations
                && a.exprs == b.exprs
                && a.predicate == b.predicate
                && {
                    let mut x = a.include.clone();
                    let mut y = b.include.clone();
                    x.sort();
                    y.sort();
                    x == y
                };
            // (redundant, kept)
            // (redundant, kept): defs are sorted by oid, so `b` is the newer one.
            let pair = if same {
                match (sa.enforces.is_some(), sb.enforces.is_some()) {
                    (true, true) => None,
                    (false, true) => Some((*sa, *sb)),
                    (true, false) | (false, false) => Some((*sb, *sa)),
                }
            } else {
                prefix_pair(a, b, sa, sb)
            };
            let Some((redundant, kept)) = pair else {
                continue;
            };
            if !reported.insert(redundant.indexrelid) {
                continue;
            }
            let object = qualified(&redundant.schema, &redundant.name);
            let kept_name = qualified(&kept.schema, &kept.name);
            let kept_def = defs
                .iter()
                .find(|d| d.indexrelid == kept.indexrelid)
                .map(|d| d.definition.clone())
                .unwrap_or_default();
            let red_def = defs
                .iter()
                .find(|d| d.indexrelid == redundant.indexrelid)
                .map(|d| d.definition.clone())
                .unwrap_or_default();
            let how = if same { "duplicates" } else { "is a prefix of" };
            out.push(Finding {
                kind: Kind::DuplicateIndex,
                summary: format!(
                    "index {object} ({}) {how} {kept_name}: {kept_name} serves the same lookups",
                    bytes(redundant.size_bytes)
                ),
                object,
                impact: Impact {
                    bytes: redundant.size_bytes,
                    text: format!("{} on disk, maintained on every write", bytes(redundant.size_bytes)),
                },
                evidence: json!({
                    "relation": if same { "duplicate" } else { "prefix" },
                    "duplicate_of": kept_name,
                    "definition": red_def,
                    "duplicate_of_definition": kept_def,
                    "size_bytes": redundant.size_bytes,
                    "idx_scan_total": redundant.idx_scan,
                }),
                action: format!(
                    "DROP INDEX CONCURRENTLY {};",
                    qualified(&redundant.schema, &redundant.name)
                ),
                note: (!same).then(|| {
                    "The longer index serves lookups on the shorter one's columns, a little more slowly; keep the shorter one if those lookups are critical and the longer one is rarely used."
                        .to_string()
                }),
            });
        }
    }
    out
}

/// `(shorter, longer)` when one btree index's plain key columns are a strict prefix of the
/// other's, with the same operator classes and collations, no predicate, no INCLUDE on the
/// shorter one, and the shorter one enforcing nothing.
fn prefix_pair<'s>(
    a: &IndexDef,
    b: &IndexDef,
    sa: &'s IndexStat,
    sb: &'s IndexStat,
) -> Option<(&'s IndexStat, &'s IndexStat)> {
    if a.method != "btree" || a.exprs.is_some() || b.exprs.is_some() {
        return None;
    }
    if a.predicate.is_some() || b.predicate.is_some() {
        return None;
    }
    let is_prefix = |s: &IndexDef, l: &IndexDef| {
        s.keys.len() < l.keys.len()
            && s.include.is_empty()
            && s.keys.iter().all(Option::is_some)
            && l.keys[..s.keys.len()] == s.keys[..]
            && l.opclasses.get(..s.keys.len()) == s.opclasses.get(..s.keys.len())
            && l.collations.get(..s.keys.len()) == s.collations.get(..s.keys.len())
    };
    if is_prefix(a, b) && sa.enforces.is_none() {
        Some((sa, sb))
    } else if is_prefix(b, a) && sb.enforces.is_none() {
        Some((sb, sa))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;

    #[test]
    fn advise_duplicates_keep_the_constraint_and_skip_unique_prefixes() {
        let t = table(1, "t");
        let stats = vec![
            index(2, 1, "t_code_key", Some("unique constraint")),
            index(3, 1, "t_code_idx", None),
            index(4, 1, "t_a_key", Some("unique index")),
            index(5, 1, "t_a_b", None),
            index(6, 1, "t_x", None),
            index(7, 1, "t_x_y", None),
        ];
        let defs = vec![
            def(2, 1, &["code"]),
            def(3, 1, &["code"]),
            def(4, 1, &["a"]),
            def(5, 1, &["a", "b"]),
            def(6, 1, &["x"]),
            def(7, 1, &["x", "y"]),
        ];
        let s = vec![sample(0, vec![t], stats)];
        let f = run(&s, &defs, &[]);
        let dup: Vec<(&str, &str)> = f
            .iter()
            .map(|f| {
                (
                    f.object.as_str(),
                    f.evidence["duplicate_of"].as_str().unwrap(),
                )
            })
            .collect();
        // The plain copy of the unique constraint goes; the unique t_a_key is no redundant prefix.
        assert_eq!(
            dup,
            vec![
                ("public.t_x", "public.t_x_y"),
                ("public.t_code_idx", "public.t_code_key"),
            ]
        );
    }
}
