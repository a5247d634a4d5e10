//! `seq_scan_hotspot`: a table read mostly by sequential scans, many times its size in the
//! window, with the top statements that name it and, when there is one, the missing-index
//! hint for it as the action.

use serde_json::json;

use super::naming::{bytes, hours, mentions, qualified, row_estimate};
use crate::advise::explain;
use crate::advise::model::{Finding, Impact, Inputs, Kind, Options};

/// A hot spot needs at least this share of the table's rows read by sequential scans.
const HOTSPOT_SEQ_SHARE: f64 = 0.5;

/// Statements listed with a hot spot.
const HOTSPOT_STATEMENTS: usize = 5;

pub(super) fn hotspots(inputs: &Inputs, opts: &Options, hints: &[Finding]) -> Vec<Finding> {
    let Some(current) = inputs.window.last() else {
        return Vec::new();
    };
    let usage = &inputs.window.tables;
    let mut out = Vec::new();
    for t in &current.tables {
        let Some(u) = usage.get(&t.relid) else {
            continue;
        };
        if t.size_bytes < opts.min_table_size as f64 || u.steps == 0 {
            continue;
        }
        let rows = row_estimate(t);
        let full_scans = u.seq_tup_read / rows;
        let read = u.seq_tup_read + u.idx_tup_fetch;
        let share = if read > 0.0 {
            u.seq_tup_read / read
        } else {
            0.0
        };
        if full_scans < opts.hotspot_min_scans || share < HOTSPOT_SEQ_SHARE {
            continue;
        }
        let bytes_per_row = t.size_bytes / rows;
        let per_hour = u.seq_tup_read * bytes_per_row / hours(u.observed_seconds);
        let statements: Vec<&explain::Statement> = inputs
            .statements
            .iter()
            .filter(|s| mentions(&s.query, &t.name))
            .take(HOTSPOT_STATEMENTS)
            .collect();
        let object = qualified(&t.schema, &t.name);
        let hint = hints.iter().find(|h| h.object == object);
        let action = match (hint, statements.first()) {
            (Some(h), _) => h.action.clone(),
            (None, Some(s)) => format!(
                "-- review the plan of the costliest statement on {object}:\nEXPLAIN {}",
                s.query.trim()
            ),
            (None, None) => format!(
                "-- find the statements reading {object} (pg_stat_statements), then EXPLAIN them:\n\
                 SELECT queryid, calls, mean_exec_time, query FROM pg_stat_statements WHERE query ~* '\\m{}\\M' ORDER BY total_exec_time DESC LIMIT 10;",
                t.name.replace('\'', "''")
            ),
        };
        out.push(Finding {
            kind: Kind::SeqScanHotspot,
            summary: format!(
                "{object} ({}, {:.0} rows) was read {:.0} times in full by {:.0} sequential scans ({:.0}% of the rows read from it)",
                bytes(t.size_bytes),
                rows,
                full_scans,
                u.seq_scan,
                share * 100.0
            ),
            object,
            impact: Impact {
                bytes: per_hour,
                text: format!("{}/h read sequentially", bytes(per_hour)),
            },
            evidence: json!({
                "size_bytes": t.size_bytes,
                "live_rows": t.n_live_tup,
                "seq_scans": u.seq_scan,
                "seq_tuples_read": u.seq_tup_read,
                "idx_scans": u.idx_scan,
                "idx_tuples_fetched": u.idx_tup_fetch,
                "full_table_reads": full_scans,
                "seq_share": share,
                "observed_seconds": u.observed_seconds,
                "statements": statements,
            }),
            action,
            note: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use crate::advise::model::Kind;

    #[test]
    fn advise_hotspot_needs_full_reads_and_a_seq_majority_and_ends_with_an_index_change() {
        let t = table(1, "claims");
        let pk = index(10, 1, "claims_pkey", Some("primary key"));
        let s = vec![
            sample(0, vec![scanned(t.clone(), 0.0, 0.0)], vec![pk.clone()]),
            sample(3600, vec![scanned(t.clone(), 40.0, 5.0)], vec![pk.clone()]),
        ];
        let f = run(&s, &[], &[]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].kind, Kind::SeqScanHotspot);
        assert_eq!(f[0].object, "public.claims");
        assert_eq!(f[0].evidence["full_table_reads"], 40.0);
        // 40 reads of 100 MB in one hour.
        assert!(
            (f[0].impact.bytes - 4e9).abs() < 1.0,
            "{}",
            f[0].impact.bytes
        );

        // Few full reads: not hot.
        let few = vec![
            s[0].clone(),
            sample(3600, vec![scanned(t.clone(), 5.0, 0.0)], vec![pk.clone()]),
        ];
        assert!(run(&few, &[], &[]).is_empty());

        // An index appears, then the table is read by it: the hot spot is gone, although the
        // window still holds the sequential scans made before the index existed.
        let mut idx = index(11, 1, "claims_county", None);
        idx.idx_scan = 500.0;
        let mut s2 = s.clone();
        s2.push(sample(
            7200,
            vec![scanned(t.clone(), 41.0, 200.0)],
            vec![pk.clone(), idx.clone()],
        ));
        s2.push(sample(10800, vec![scanned(t, 41.0, 700.0)], vec![pk, idx]));
        let f = run(&s2, &[], &[]);
        assert!(f.iter().all(|f| f.kind != Kind::SeqScanHotspot), "{f:#?}");
    }
}
