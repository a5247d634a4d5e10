//! The text of `dbagent advise`: what window was observed, then one block per finding, by
//! estimated impact: summary, impact, evidence in a few words, the SQL to review, the caveat.

use std::fmt::Write as _;

use super::{Advice, Finding, Kind, human_seconds};

fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::SeqScanHotspot => "SEQ SCAN HOT SPOT",
        Kind::MissingIndex => "MISSING INDEX (hint)",
        Kind::UnusedIndex => "UNUSED INDEX",
        Kind::DuplicateIndex => "DUPLICATE INDEX",
        Kind::Autovacuum => "AUTOVACUUM",
        Kind::PlanChange => "PLAN CHANGE",
    }
}

pub fn render(a: &Advice) -> String {
    let mut out = String::new();
    let w = &a.window;
    let _ = writeln!(
        out,
        "dbagent advise: database {} on the {} ({} sample{} over the last {}; {} observed{}{})",
        a.dbname,
        a.server_role,
        w.coverage.samples,
        if w.coverage.samples == 1 { "" } else { "s" },
        human_seconds(w.requested_seconds),
        human_seconds(w.coverage.observed_seconds),
        if w.coverage.stats_resets > 0 {
            format!(", {} statistics reset(s)", w.coverage.stats_resets)
        } else {
            String::new()
        },
        if w.coverage.server_changes > 0 {
            format!(", {} server change(s)", w.coverage.server_changes)
        } else {
            String::new()
        },
    );
    if let (Some(first), Some(last)) = (w.coverage.first_sample, w.coverage.last_sample) {
        let _ = writeln!(
            out,
            "window: {} to {} UTC",
            first.strftime("%Y-%m-%d %H:%M:%S"),
            last.strftime("%Y-%m-%d %H:%M:%S")
        );
    }
    for n in &a.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let counts: Vec<String> = a
        .counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    if a.findings.is_empty() {
        let _ = writeln!(out, "\nNo findings.");
    } else {
        let _ = writeln!(
            out,
            "\n{} finding{} ({}), largest estimated impact first:",
            a.findings.len(),
            if a.findings.len() == 1 { "" } else { "s" },
            counts.join(", ")
        );
    }
    for (n, f) in a.findings.iter().enumerate() {
        out.push('\n');
        finding(&mut out, n + 1, f);
    }
    if !a.explain_skipped.is_empty() {
        let _ = writeln!(
            out,
            "\n{} statement(s) could not be explained: normalized text PostgreSQL cannot plan again (`interval $1`), or tables the role may not read (see --json, explain_skipped)",
            a.explain_skipped.len()
        );
    }
    out
}

fn finding(out: &mut String, n: usize, f: &Finding) {
    let _ = writeln!(out, "{n}. {}: {}", label(f.kind), f.summary);
    let _ = writeln!(out, "   impact: {}", f.impact.text);
    if let Some(statements) = f.evidence.get("statements").and_then(|s| s.as_array()) {
        for s in statements {
            let query = s["query"].as_str().unwrap_or("");
            let one_line: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
            let clipped: String = one_line.chars().take(160).collect();
            let _ = writeln!(
                out,
                "   statement {}: {} calls, mean {}: {}{}",
                s["queryid"].as_str().unwrap_or("?"),
                s["calls"].as_f64().unwrap_or(0.0),
                crate::units::human_latency(s["mean_seconds"].as_f64().unwrap_or(0.0)),
                clipped,
                if one_line.chars().count() > 160 {
                    "…"
                } else {
                    ""
                }
            );
        }
    }
    if let Some(of) = f
        .evidence
        .get("duplicate_of_definition")
        .and_then(|s| s.as_str())
    {
        let _ = writeln!(
            out,
            "   definition: {}",
            f.evidence["definition"].as_str().unwrap_or("")
        );
        let _ = writeln!(out, "   same as:    {of}");
    }
    let _ = writeln!(out, "   SQL to review (dbagent never runs it):");
    for line in f.action.lines() {
        let _ = writeln!(out, "     {line}");
    }
    if let Some(note) = &f.note {
        let _ = writeln!(out, "   note: {note}");
    }
}
