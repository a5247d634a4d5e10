//! The files an SRE installs: the man page and shell completions generated from the CLI
//! definition, and the systemd unit shipped in deploy/.

use crate::support::dbagent::run_in;

fn generate(what: &str) -> String {
    let home = tempfile::tempdir().unwrap();
    let run = run_in(home.path(), &["generate", what], &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    run.stdout
}

#[test]
fn generate_writes_a_man_page_and_completions_for_every_command() {
    let man = generate("man").replace("\\-", "-");
    assert!(
        man.contains(".TH dbagent"),
        "{}",
        &man[..man.len().min(300)]
    );
    for cmd in [
        "run", "backup", "restore", "drill", "wal-push", "wal-get", "alerts", "check",
    ] {
        assert!(man.contains(cmd), "man page lacks {cmd}");
    }
    let bash = generate("bash");
    assert!(
        bash.contains("_dbagent()") && bash.contains("wal-push"),
        "bash"
    );
    assert!(generate("zsh").starts_with("#compdef dbagent"));
    assert!(generate("fish").contains("complete -c dbagent"));
}

#[test]
fn the_systemd_unit_runs_the_sidecar_hardened() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/dbagent.service"
    ))
    .unwrap();
    let keys: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |k: &str| keys.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    assert!(get("ExecStart").unwrap().ends_with(" run"));
    assert_eq!(get("ExecReload"), Some("/bin/kill -HUP $MAINPID"));
    for k in [
        "NoNewPrivileges",
        "ProtectSystem",
        "PrivateTmp",
        "ProtectHome",
        "RestrictNamespaces",
    ] {
        assert!(get(k).is_some(), "missing {k}");
    }
    assert_eq!(get("User"), Some("postgres"));
}
