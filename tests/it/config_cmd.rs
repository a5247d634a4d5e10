//! `dbagent config validate|example` and how every command reports a bad configuration: the
//! key, the file and the line, never a secret.

use crate::support::dbagent::{Agent, run_in};

#[test]
fn misspelled_key_names_the_key_the_file_and_the_line() {
    let agent = Agent::with_yaml(
        "postgres:\n  conninfo: \"host=/tmp\"\nrepository:\n  path: REPO\nhttp:\n  lisen: 127.0.0.1:9188\n",
    );
    let run = agent.run(&["config", "validate"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let expected = format!(
        "{}:6:3: unknown key `lisen`; did you mean `listen`?",
        agent.config_path().display()
    );
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert!(
        run.stderr.contains("valid keys here: listen"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "one line:\n{}", run.stderr);
}

#[test]
fn example_config_validates_and_prints_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let example = run_in(dir.path(), &["config", "example"], &[]);
    assert_eq!(example.code, 0);
    for key in [
        "postgres:",
        "conninfo:",
        "repository:",
        "state_dir:",
        "http:",
        "alerts_file:",
        "check:",
    ] {
        assert!(example.stdout.contains(key), "missing {key}");
    }
    let path = dir.path().join("dbagent.yml");
    std::fs::write(&path, &example.stdout).unwrap();
    let run = run_in(
        dir.path(),
        &[
            "--config",
            path.to_str().unwrap(),
            "config",
            "validate",
            "--json",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    let j: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(j["valid"], true);
    assert_eq!(j["config"]["http"]["listen"], "127.0.0.1:9188");
    // Durations in seconds, and the output says so.
    assert_eq!(j["durations"], "seconds");
    assert_eq!(j["config"]["postgres"]["connect_timeout"], 5);
    assert_eq!(j["config"]["check"]["backup_age_critical"], 50 * 3600);
    assert_eq!(j["config"]["monitor"]["advisor_window"], 7 * 86400);
    assert_eq!(j["config"]["monitor"]["metric_names"], "postgres_exporter");
    let run = run_in(
        dir.path(),
        &["--config", path.to_str().unwrap(), "config", "validate"],
        &[],
    );
    assert!(
        run.stdout
            .contains("metric names:      postgres_exporter (monitor.metric_names)"),
        "{}",
        run.all()
    );
}

#[test]
fn env_references_expand_and_secrets_stay_masked() {
    let mut agent = Agent::with_yaml(
        "postgres:\n  conninfo: \"host=db1 user=app password=${DB_PASS}\"\nrepository:\n  path: \"${DATA_ROOT}/repo\"\n",
    );
    agent
        .env("DB_PASS", "s3cret-value-42")
        .env("DATA_ROOT", "/srv/dbagent");
    let run = agent.run(&["config", "validate", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let j: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(j["config"]["repository"]["path"], "/srv/dbagent/repo");
    assert!(
        j["config"]["postgres"]["conninfo"]
            .as_str()
            .unwrap()
            .contains("password=********")
    );
    assert!(!run.all().contains("s3cret-value-42"));
    let run = agent.run(&["config", "validate"]);
    assert!(!run.all().contains("s3cret-value-42"), "{}", run.all());
}

#[test]
fn unset_variable_is_named_with_its_line() {
    let agent = Agent::with_yaml(
        "postgres:\n  conninfo: \"host=db1 password=${NOT_SET_ANYWHERE}\"\nrepository:\n  path: REPO\n",
    );
    let run = agent.run(&["config", "validate"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(":2:") && run.stderr.contains("NOT_SET_ANYWHERE is not set"),
        "{}",
        run.stderr
    );
}

#[test]
fn malformed_yaml_and_missing_sections_are_one_clear_line() {
    for (yaml, expect) in [
        ("postgres: [\n", ":1:"),
        (
            "postgres:\n  conninfo: host=x\n",
            "missing key `repository`",
        ),
        (
            "postgres:\n  conninfo: host=x sslmode=sometimes\nrepository:\n  path: /r\n",
            "sslmode",
        ),
        (
            "postgres:\n  conninfo: host=x\nrepository:\n  path: /r\nhttp:\n  listen: everywhere\n",
            "IP:PORT",
        ),
        ("", "empty"),
    ] {
        let run = Agent::with_yaml(yaml).run(&["config", "validate"]);
        assert_eq!(run.code, 1, "{yaml}: {}", run.all());
        assert!(run.stderr.contains(expect), "{yaml}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{yaml}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"));
    }
}

#[test]
fn missing_config_file_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yml");
    let run = run_in(
        dir.path(),
        &["--config", missing.to_str().unwrap(), "config", "validate"],
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("not found") && run.stderr.contains("dbagent config example"),
        "{}",
        run.stderr
    );
    // DBAGENT_CONFIG is honoured when --config is absent.
    let env = [("DBAGENT_CONFIG".to_string(), missing.display().to_string())];
    let run = run_in(dir.path(), &["config", "validate"], &env);
    assert!(
        run.stderr.contains(&missing.display().to_string()),
        "{}",
        run.stderr
    );
}

#[test]
fn help_documents_commands_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(dir.path(), &["--help"], &[]);
    assert_eq!(run.code, 0);
    for text in ["check", "config", "Exit codes", "3 UNKNOWN", "--config"] {
        assert!(
            run.stdout.contains(text),
            "--help lacks {text}:\n{}",
            run.stdout
        );
    }
    let run = run_in(dir.path(), &["check", "--help"], &[]);
    assert!(
        run.stdout.contains("Nagios") && run.stdout.contains("--json"),
        "{}",
        run.stdout
    );
    // Every check, from the list `check` runs (a unit test ties it to the sources).
    let checks: Vec<&str> = dbagent::check::registry::names().collect();
    assert!(
        run.stdout.contains(&format!("Checks ({}):", checks.len())),
        "{}",
        run.stdout
    );
    for name in &checks {
        assert!(
            run.stdout.contains(&format!("\n  {name} ")),
            "check --help lacks {name}:\n{}",
            run.stdout
        );
    }
    let flat = run.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("[env: DBAGENT_CONFIG]") && !flat.contains("DBAGENT_CONFIG="),
        "{}",
        run.stdout
    );
    let run = run_in(dir.path(), &["no-such-command"], &[]);
    assert_eq!(run.code, 2);
}
