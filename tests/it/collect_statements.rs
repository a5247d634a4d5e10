//! The statements collector against real clusters: slow queries measured between two polls,
//! their text only in the status section, resets that never yield negative or absurd values,
//! and a quiet gauge when pg_stat_statements is missing.

use dbagent::collect::Output;
use dbagent::collect::statements::Statements;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions};
use crate::support::collect::{Poller, family, value};

/// No label of any family carries query text.
fn assert_no_text_in_labels(out: &Output, needle: &str) {
    for f in &out.families {
        for s in &f.samples {
            for (k, v) in &s.labels {
                assert!(
                    !v.to_lowercase().contains(needle),
                    "{}: label {k}={v} holds query text",
                    f.name
                );
            }
        }
    }
}

/// Every per-statement sample is a sane interval figure.
fn assert_sane(out: &Output) {
    for name in [
        "dbagent_statement_calls",
        "dbagent_statement_seconds",
        "dbagent_statement_mean_seconds",
        "dbagent_statement_rows",
    ] {
        if let Some(f) = family(out, name) {
            for s in &f.samples {
                assert!(
                    s.value.is_finite() && s.value >= 0.0,
                    "{name} {:?} = {}",
                    s.labels,
                    s.value
                );
                if name == "dbagent_statement_mean_seconds" {
                    assert!(s.value < 60.0, "{name} {:?} = {}", s.labels, s.value);
                }
            }
        }
    }
}

/// The status entry whose query text contains `needle`.
fn status_query<'a>(out: &'a Output, needle: &str) -> Option<&'a serde_json::Value> {
    out.status.as_ref()?["queries"]
        .as_array()?
        .iter()
        .find(|q| q["query"].as_str().is_some_and(|t| t.contains(needle)))
}

pg_test!(
    slow_query_between_polls_is_measured_with_its_text_in_status_only,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        let poller = Poller::new(&pg);
        let mut c = Statements::new();

        let first = poller.run(&mut c).expect("first poll");
        assert_eq!(
            value(&first, "dbagent_statements_available", &[]),
            Some(1.0)
        );
        assert!(value(&first, "dbagent_statements_tracked", &[]).is_some());
        // The first poll only records counters.
        assert!(family(&first, "dbagent_statement_calls").is_none());

        pg.psql("SELECT pg_sleep(0.3);\nSELECT pg_sleep(0.3);\nSELECT pg_sleep(0.3);");
        let out = poller.run(&mut c).expect("second poll");
        assert_sane(&out);
        let q = status_query(&out, "pg_sleep").unwrap_or_else(|| panic!("{:#?}", out.status));
        assert_eq!(q["calls"], 3.0, "{q}");
        assert!(q["mean_seconds"].as_f64().unwrap() >= 0.3, "{q}");
        assert!(q["total_seconds"].as_f64().unwrap() >= 0.9, "{q}");
        assert_eq!(q["datname"], "postgres");
        assert_eq!(q["toplevel"], true);
        let queryid = q["queryid"].as_str().unwrap().to_string();
        let labels = [
            ("queryid", queryid.as_str()),
            ("datname", "postgres"),
            ("toplevel", "true"),
        ];
        assert_eq!(value(&out, "dbagent_statement_calls", &labels), Some(3.0));
        let mean = value(&out, "dbagent_statement_mean_seconds", &labels).unwrap();
        assert!((0.3..5.0).contains(&mean), "{mean}");
        let total = value(&out, "dbagent_statement_seconds", &labels).unwrap();
        assert!((total - 3.0 * mean).abs() < 1e-6, "{total} vs {mean}");
        assert_eq!(value(&out, "dbagent_statement_rows", &labels), Some(3.0));
        assert!(
            family(&out, "dbagent_statement_mean_seconds")
                .unwrap()
                .baseline
        );
        // The (other) series is always there, and no label holds text.
        assert!(value(&out, "dbagent_statement_calls", &[("queryid", "(other)")]).is_some());
        assert_no_text_in_labels(&out, "pg_sleep");
        assert_no_text_in_labels(&out, "select");

        // Nothing ran the slow query since: it leaves the top list, its text stays cached.
        let out = poller.run(&mut c).expect("third poll");
        assert_sane(&out);
        assert!(status_query(&out, "pg_sleep").is_none());
        assert_eq!(
            value(&out, "dbagent_statement_calls", &[("queryid", &queryid)]),
            None
        );
        pg.psql("SELECT pg_sleep(0.3);");
        let out = poller.run(&mut c).expect("fourth poll");
        let q = status_query(&out, "pg_sleep").unwrap_or_else(|| panic!("{:#?}", out.status));
        assert_eq!(q["calls"], 1.0, "{q}");
    }
);

pg_test!(
    reset_between_polls_gives_no_negative_or_absurd_values,
    |v| {
        let pg = Cluster::start(v, ClusterOptions::default());
        let poller = Poller::new(&pg);
        let mut c = Statements::new();
        pg.psql("SELECT pg_sleep(0.2);\nSELECT pg_sleep(0.2);\nSELECT pg_sleep(0.2);");
        poller.run(&mut c).expect("first poll");

        pg.psql("SELECT pg_stat_statements_reset();");
        pg.psql("SELECT pg_sleep(0.1);");
        let out = poller.run(&mut c).expect("poll after reset");
        assert_sane(&out);
        // 14+ knows the reset from pg_stat_statements_info: the whole interval is discarded.
        assert!(
            family(&out, "dbagent_statement_calls").is_none(),
            "{out:#?}"
        );
        let status = out.status.as_ref().unwrap();
        assert!(
            status["discarded"].as_str().unwrap().contains("reset"),
            "{status}"
        );
        assert_eq!(
            value(&out, "dbagent_statements_dealloc_total", &[]),
            Some(0.0)
        );

        pg.psql("SELECT pg_sleep(0.1);\nSELECT pg_sleep(0.1);");
        let out = poller.run(&mut c).expect("poll after that");
        assert_sane(&out);
        let q = status_query(&out, "pg_sleep").unwrap_or_else(|| panic!("{:#?}", out.status));
        assert_eq!(q["calls"], 2.0, "{q}");
        let mean = q["mean_seconds"].as_f64().unwrap();
        assert!((0.1..1.0).contains(&mean), "{q}");
    }
);

pg_test!(missing_extension_reports_unavailable_without_error, |v| {
    let pg = Cluster::start(
        v,
        ClusterOptions {
            pg_stat_statements: false,
            ..ClusterOptions::default()
        },
    );
    let poller = Poller::new(&pg);
    let mut c = Statements::new();
    for _ in 0..2 {
        let out = poller.run(&mut c).expect("no error without the extension");
        assert_eq!(out.families.len(), 1, "{out:#?}");
        assert_eq!(value(&out, "dbagent_statements_available", &[]), Some(0.0));
    }
    // Created but not preloaded: the view refuses to answer; still no error.
    pg.psql("CREATE EXTENSION pg_stat_statements");
    let out = poller.run(&mut c).expect("no error when not preloaded");
    assert_eq!(value(&out, "dbagent_statements_available", &[]), Some(0.0));
    assert!(
        out.status.as_ref().unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("shared_preload_libraries")
    );
});
