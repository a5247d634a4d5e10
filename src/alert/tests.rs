//! The alert engine's behaviour with a clock under the test's control: pending and firing with
//! `for:`, flapping, `keep_firing_for:`, grouping (500 instances → one notification), group
//! interval, repeat interval, resolve, silences, inhibition, and a restart through the saved
//! state.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::engine::{Engine, EngineState, State};
use super::rules::{AlertsFile, Matcher};
use super::silence::Silence;
use crate::metrics::Family;
use crate::notify::Status;

const FILE: &str = "\
rules:
  - name: High
    expr: m_value > 10
    for: 30s
    labels: { severity: warning }
    annotations: { summary: \"{{ $labels.db }} is {{ $value }}\" }
  - name: Sticky
    expr: s_value > 0
    keep_firing_for: 60s
  - name: Crit
    expr: c_value > 0
    labels: { severity: critical }
  - name: Warn
    expr: c_value > 0
    labels: { severity: warning }
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 10s
  group_interval: 60s
  repeat_interval: 1h
inhibit_rules:
  - source_matchers: ['severity=\"critical\"']
    target_matchers: ['severity=\"warning\"']
    equal: [db]
receivers:
  - name: hook
    webhook: { url: \"http://127.0.0.1:1/\" }
";

fn file() -> AlertsFile {
    AlertsFile::parse(FILE, Path::new("test.yml")).unwrap()
}

fn t0() -> Timestamp {
    "2026-11-21T10:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

fn fam(name: &'static str, values: &[(&str, f64)]) -> Family {
    let mut f = Family::gauge(name, "test");
    for (db, v) in values {
        f.push(&[("db", db)], *v);
    }
    f
}

fn no_baseline(_: &str, _: Timestamp) -> Option<crate::baseline::Baseline> {
    None
}

struct Run {
    file: AlertsFile,
    state: EngineState,
    silences: Vec<Silence>,
}

impl Run {
    fn new() -> Run {
        Run {
            file: file(),
            state: EngineState::default(),
            silences: Vec::new(),
        }
    }
    /// One poll at `secs`: evaluate then flush; the notifications.
    fn tick(&mut self, secs: i64, families: &[Family]) -> Vec<crate::notify::Notification> {
        let engine = Engine {
            file: &self.file,
            external_url: "http://127.0.0.1:9188",
        };
        engine.evaluate(&mut self.state, at(secs), families, &no_baseline);
        engine.flush(&mut self.state, at(secs), &self.silences)
    }
}

#[test]
fn an_alert_is_pending_for_its_for_duration_then_fires_after_group_wait() {
    let mut r = Run::new();
    let high = [fam("m_value", &[("app", 20.0)])];
    assert!(r.tick(0, &high).is_empty());
    let inst = r.state.instances.values().next().unwrap();
    assert_eq!(inst.state, State::Pending);
    assert!(r.tick(15, &high).is_empty());
    assert!(
        r.tick(30, &high).is_empty(),
        "fires at 30 s, then group_wait 10 s"
    );
    assert_eq!(
        r.state.instances.values().next().unwrap().state,
        State::Firing
    );
    let n = r.tick(40, &high);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].status, Status::Firing);
    assert_eq!(n[0].alerts[0].annotations["summary"], "app is 20");
    assert_eq!(n[0].alerts[0].labels["alertname"], "High");
    assert_eq!(n[0].group_labels["alertname"], "High");
    // Nothing new until the repeat interval.
    for s in (50..3600).step_by(60) {
        assert!(r.tick(s, &high).is_empty(), "at {s}");
    }
    let n = r.tick(3640, &high);
    assert_eq!(n.len(), 1, "repeat after 1h");
    // Resolve: after group_interval since the last notification.
    let n = r.tick(3650, &[fam("m_value", &[("app", 1.0)])]);
    assert!(n.is_empty(), "resolve waits for group_interval");
    let n = r.tick(3700, &[]);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].status, Status::Resolved);
    assert_eq!(n[0].alerts[0].status, Status::Resolved);
    assert!(r.state.instances.is_empty() && r.state.groups.is_empty());
}

#[test]
fn a_flapping_condition_does_not_page_on_every_flip() {
    let mut r = Run::new();
    let on = [fam("m_value", &[("app", 20.0)])];
    let off = [fam("m_value", &[("app", 0.0)])];
    let mut pages = 0;
    for i in 0..200 {
        let fams: &[Family] = if i % 2 == 0 { &on } else { &off };
        pages += r.tick(i * 15, fams).len();
    }
    assert_eq!(pages, 0, "on/off every poll never holds for 30 s");
    // keep_firing_for: one page, not one per flip.
    let mut r = Run::new();
    let on = [fam("s_value", &[("app", 1.0)])];
    let off = [fam("s_value", &[("app", 0.0)])];
    let mut notes = Vec::new();
    for i in 0..40 {
        let fams: &[Family] = if i % 2 == 0 { &on } else { &off };
        notes.extend(r.tick(i * 15, fams));
    }
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert_eq!(notes[0].status, Status::Firing);
}

#[test]
fn five_hundred_instances_make_one_notification_per_group() {
    let mut r = Run::new();
    let dbs: Vec<String> = (0..500).map(|i| format!("db{i}")).collect();
    let values: Vec<(&str, f64)> = dbs.iter().map(|d| (d.as_str(), 99.0)).collect();
    let fams = [fam("m_value", &values)];
    let mut notes = Vec::new();
    for s in (0..=300).step_by(5) {
        notes.extend(r.tick(s, &fams));
    }
    assert_eq!(
        notes.len(),
        1,
        "one group, one notification per group_interval"
    );
    assert_eq!(notes[0].alerts.len(), 500);
    // One more instance: one more notification after group_interval, with all 501.
    let mut values = values.clone();
    values.push(("late", 50.0));
    let fams = [fam("m_value", &values)];
    let mut later = Vec::new();
    for s in (305..=500).step_by(5) {
        later.extend(r.tick(s, &fams));
    }
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].alerts.len(), 501);
}

#[test]
fn a_silence_mutes_matching_alerts_only_and_expires_on_time() {
    let mut r = Run::new();
    r.silences.push(Silence {
        id: "s1".into(),
        matchers: vec![Matcher::parse("db=\"quiet\"").unwrap()],
        starts_at: at(0),
        ends_at: at(600),
        created_by: "test".into(),
        comment: "maintenance".into(),
        expired: false,
    });
    let fams = [fam("m_value", &[("quiet", 20.0), ("loud", 20.0)])];
    let mut notes = Vec::new();
    for s in (0..=120).step_by(5) {
        notes.extend(r.tick(s, &fams));
    }
    assert_eq!(notes.len(), 1);
    let dbs: Vec<&str> = notes[0]
        .alerts
        .iter()
        .map(|a| a.labels["db"].as_str())
        .collect();
    assert_eq!(dbs, vec!["loud"]);
    // After the silence ends, the quiet one joins at the next group interval.
    let mut later = Vec::new();
    for s in (125..=700).step_by(5) {
        later.extend(r.tick(s, &fams));
    }
    assert_eq!(later.len(), 1, "{later:#?}");
    assert_eq!(later[0].alerts.len(), 2);
}

#[test]
fn a_critical_alert_inhibits_the_matching_warning() {
    let mut r = Run::new();
    let fams = [fam("c_value", &[("app", 1.0)])];
    let mut notes = Vec::new();
    for s in (0..=60).step_by(5) {
        notes.extend(r.tick(s, &fams));
    }
    let names: Vec<&str> = notes
        .iter()
        .map(|n| n.group_labels["alertname"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["Crit"],
        "the warning with the same db is inhibited"
    );
}

#[test]
fn a_restart_through_the_saved_state_neither_repages_nor_forgets_to_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Run::new();
    let high = [fam("m_value", &[("app", 20.0)])];
    let mut notes = Vec::new();
    for s in (0..=60).step_by(5) {
        notes.extend(r.tick(s, &high));
    }
    assert_eq!(notes.len(), 1);
    {
        let mut db = crate::state::StateDb::open(dir.path()).unwrap();
        super::store::save(&mut db, &r.state).unwrap();
    }
    // "Restarted": a fresh engine state loaded from disk.
    let db = crate::state::StateDb::open(dir.path()).unwrap();
    let loaded = super::store::load(&db).unwrap();
    assert_eq!(loaded, r.state);
    let mut r2 = Run::new();
    r2.state = loaded;
    for s in (65..=600).step_by(5) {
        assert!(r2.tick(s, &high).is_empty(), "re-paged at {s}");
    }
    let mut resolved = Vec::new();
    for s in (605..=700).step_by(5) {
        resolved.extend(r2.tick(s, &[]));
    }
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].status, Status::Resolved);
}

#[test]
fn fingerprints_are_stable_and_label_order_free() {
    let mut a = BTreeMap::new();
    a.insert("b".to_string(), "2".to_string());
    a.insert("a".to_string(), "1".to_string());
    let fp = super::engine::fingerprint("R", &a);
    assert_eq!(fp, super::engine::fingerprint("R", &a.clone()));
    assert_ne!(fp, super::engine::fingerprint("S", &a));
    assert_eq!(fp.len(), 16);
    let _ = Duration::ZERO;
}

#[test]
fn a_metric_on_the_right_matches_identical_labels_or_one_unlabelled_series() {
    let file = AlertsFile::parse(
        "\
rules:
  - name: OverTarget
    expr: m_age > m_target
    annotations: { summary: \"{{ $value }} over {{ $threshold }}\" }
  - name: OverLimit
    expr: m_used > 0.5 x m_limit
route:
  receiver: hook
  group_wait: 0s
receivers:
  - name: hook
    webhook: { url: \"http://127.0.0.1:1/\" }
",
        Path::new("test.yml"),
    )
    .unwrap();
    let engine = Engine {
        file: &file,
        external_url: "",
    };
    let mut state = EngineState::default();
    let mut target = Family::gauge("m_target", "test");
    target.push(&[], 300.0);
    let families = [
        fam("m_age", &[("a", 100.0), ("b", 400.0)]),
        target,
        // One-to-one on labels: a is over half its limit, b is not, c has no limit.
        fam("m_used", &[("a", 6.0), ("b", 4.0), ("c", 100.0)]),
        fam("m_limit", &[("a", 10.0), ("b", 10.0)]),
    ];
    engine.evaluate(&mut state, at(0), &families, &no_baseline);
    let firing: Vec<(String, String)> = state
        .instances
        .values()
        .map(|i| (i.rule.clone(), i.labels["db"].clone()))
        .collect();
    assert_eq!(firing.len(), 2, "{firing:?}");
    assert!(
        firing.contains(&("OverTarget".into(), "b".into())),
        "{firing:?}"
    );
    assert!(
        firing.contains(&("OverLimit".into(), "a".into())),
        "{firing:?}"
    );
    let over = state
        .instances
        .values()
        .find(|i| i.rule == "OverTarget")
        .unwrap();
    assert_eq!(over.annotations["summary"], "400 over 300");

    // Without the target series nothing is compared and the instance resolves.
    engine.evaluate(
        &mut state,
        at(10),
        &[fam("m_age", &[("b", 400.0)])],
        &no_baseline,
    );
    let over = state
        .instances
        .values()
        .find(|i| i.rule == "OverTarget")
        .unwrap();
    assert_eq!(over.state, State::Resolved);
    // The right side with several unlabelled-looking series is matched by labels, so a
    // labelled target does not apply to an unlabelled left side.
    let mut state = EngineState::default();
    let mut age = Family::gauge("m_age", "test");
    age.push(&[], 1000.0);
    engine.evaluate(
        &mut state,
        at(0),
        &[age, fam("m_target", &[("a", 1.0), ("b", 1.0)])],
        &no_baseline,
    );
    assert!(state.instances.is_empty(), "{:?}", state.instances);
}

#[test]
fn the_shipped_slow_query_rule_needs_the_floor_and_the_deviation() {
    let shipped = AlertsFile::parse(super::rules::EXAMPLE, Path::new("alerts.yml")).unwrap();
    let mut file = shipped.clone();
    file.rules.retain(|r| r.name == "SlowQueryVsBaseline");
    assert_eq!(file.rules.len(), 1);
    let engine = Engine {
        file: &file,
        external_url: "",
    };
    // Every statement usually takes 10 ms, except "slow" which usually takes 100 ms.
    let usual = |series: &str, _: Timestamp| {
        Some(crate::baseline::Baseline {
            mean: if series.contains("\"slow\"") {
                0.1
            } else {
                0.01
            },
            stddev: 0.001,
            samples: 100,
            needed: 40,
            ready: true,
            season: crate::baseline::Season::Overall,
            last_value: 0.0,
            updated: t0(),
        })
    };
    let mut mean = Family::gauge("dbagent_statement_mean_seconds", "test");
    // 5x its usual but under 100 ms: not slow. 300 ms, 30x its usual: slow. 300 ms but only
    // 3x its usual 100 ms: not above 3x. 500 ms, 50x its usual: slow.
    mean.push(&[("queryid", "tiny")], 0.05);
    mean.push(&[("queryid", "sleepy")], 0.3);
    mean.push(&[("queryid", "slow")], 0.3);
    mean.push(&[("queryid", "slower")], 0.5);
    let mut state = EngineState::default();
    engine.evaluate(&mut state, at(0), &[mean], &usual);
    let mut active: Vec<String> = state
        .instances
        .values()
        .map(|i| i.labels["queryid"].clone())
        .collect();
    active.sort();
    assert_eq!(active, ["sleepy", "slower"]);
}

/// A rule may name a signal by postgres_exporter's name or dbagent's, whatever
/// `monitor.metric_names` serves: the exporter's name reads dbagent's family in the
/// exporter's unit (milliseconds here).
#[test]
fn rules_read_either_name_set() {
    use crate::metrics::catalogue;
    let file = AlertsFile::parse(
        "\
rules:
  - name: Exporter
    expr: pg_stat_database_blk_read_time > 1000
  - name: Dbagent
    expr: pg_stat_database_blk_read_time_seconds_total > 1
route:
  receiver: hook
receivers:
  - name: hook
    webhook: { url: \"http://127.0.0.1:1/\" }
",
        Path::new("test.yml"),
    )
    .unwrap();
    let engine = Engine {
        file: &file,
        external_url: "",
    };
    let mut state = EngineState::default();
    let families = [
        Family::of(&catalogue::PG_STAT_DATABASE_BLK_READ_TIME_SECONDS_TOTAL)
            .with(&[("datname", "app")], 1.5)
            .with(&[("datname", "idle")], 0.5),
    ];
    engine.evaluate(&mut state, at(0), &families, &no_baseline);
    let mut firing: Vec<(String, String, f64)> = state
        .instances
        .values()
        .map(|i| (i.rule.clone(), i.labels["datname"].clone(), i.value))
        .collect();
    firing.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        firing,
        [
            ("Dbagent".to_string(), "app".to_string(), 1.5),
            ("Exporter".to_string(), "app".to_string(), 1500.0),
        ]
    );
}

#[test]
fn templates_format_durations_bytes_and_ratios_in_dbagent_units() {
    use super::engine::expand;
    let labels = BTreeMap::from([("job".to_string(), "drill".to_string())]);
    let e = |t: &str, v: f64| expand(t, &labels, v, Some(93600.0), Some(300.0));
    assert_eq!(
        e("{{ $value | humanizeDuration }} old", 1186.0),
        "19m 46s old"
    );
    assert_eq!(e("took {{$value|humanizeDuration}}", 0.5), "took 0.5s");
    assert_eq!(e("{{ $baseline | humanizeDuration }}", 0.0), "1d 2h");
    assert_eq!(e("{{ $threshold | humanizeDuration }}", 0.0), "5m");
    assert_eq!(
        e("{{ $value | humanize1024 }}", 1.5 * 1073741824.0),
        "1.5 GiB"
    );
    assert_eq!(e("{{ $value | humanize1024 }}", -0.0), "0 B");
    assert_eq!(e("{{ $value | humanizePercentage }}", 0.713), "71.3%");
    assert_eq!(e("{{ $value | humanizePercentage }}", 0.5), "50%");
    // Without a function: the number as before; an unknown function is left as written.
    assert_eq!(e("{{ $value }}s", 1186.0), "1186s");
    assert_eq!(e("{{ $value | nope }}", 1.0), "{{ $value | nope }}");
    assert_eq!(e("{{ $labels.job }}", 1.0), "drill");
}
