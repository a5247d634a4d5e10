//! The files an SRE installs: the man page and shell completions generated from the CLI
//! definition, and the systemd unit shipped in deploy/.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

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

/// The page as `man` shows it on an 80-column terminal, without formatting.
fn render_man_page(page: &Path) -> String {
    let out = Command::new("man")
        .args(["-P", "cat", "-l"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("run man (scripts/lib/deps.sh installs man-db and groff-base)");
    assert!(
        out.status.success(),
        "man -l {}: {}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Overstrike bold (x\bx) and underline (_\bx), should a pager setting leave them in.
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The visible subcommand paths of the CLI, from `dbagent help`'s own listing, recursively:
/// ["run", "backups list", ...].
fn visible_subcommands(home: &Path, prefix: &[&str]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = prefix.to_vec();
    args.push("--help");
    let run = run_in(home, &args, &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let mut found = Vec::new();
    let mut in_commands = false;
    for line in run.stdout.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if in_commands {
            if !line.starts_with("  ") {
                break;
            }
            // A command line is indented by two spaces; a wrapped help line by more.
            if line.starts_with("   ") {
                continue;
            }
            let name = line.split_whitespace().next().unwrap_or_default();
            if name == "help" || name.is_empty() {
                continue;
            }
            let mut path: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
            path.push(name.to_string());
            let refs: Vec<&str> = path.iter().map(String::as_str).collect();
            let nested = visible_subcommands(home, &refs);
            found.push(path);
            found.extend(nested);
        }
    }
    found
}

#[test]
fn generate_man_dir_writes_one_page_per_subcommand_with_every_flag() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("man1");
    let run = run_in(
        home.path(),
        &["generate", "man", "--dir", dir.to_str().unwrap()],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.all());

    // dbagent-restore(1), rendered by man at 80 columns, documents --target with its help.
    let restore = render_man_page(&dir.join("dbagent-restore.1"));
    let target = restore
        .lines()
        .position(|l| l.trim_start().starts_with("--target <TARGET>"))
        .unwrap_or_else(|| panic!("no --target option in dbagent-restore(1):\n{restore}"));
    let help: String = restore.lines().skip(target + 1).take(3).collect();
    assert!(
        help.contains("Where") && help.contains("recovery") && help.contains("stops"),
        "--target has no help text in dbagent-restore(1):\n{restore}"
    );
    assert!(restore.contains("--dry-run") && restore.contains("--to <DIR>"));

    // Every visible subcommand, nested ones too, has its page; no page for anything else.
    let pages: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let mut expected: BTreeSet<String> = visible_subcommands(home.path(), &[])
        .iter()
        .map(|path| format!("dbagent-{}.1", path.join("-")))
        .collect();
    assert!(expected.contains("dbagent-backups-list.1"), "{expected:?}");
    assert!(
        !expected.iter().any(|p| p.contains("prefetch")),
        "{expected:?}"
    );
    expected.insert("dbagent.1".to_string());
    assert_eq!(pages, expected);

    // dbagent(1) names them all under SEE ALSO, and is what `generate man` prints on stdout.
    let root = render_man_page(&dir.join("dbagent.1"));
    let see_also = &root[root.find("SEE ALSO").expect("dbagent(1) has SEE ALSO")..];
    let see_also: String = see_also.split_whitespace().collect();
    for page in expected.iter().filter(|p| *p != "dbagent.1") {
        let reference = format!("{}(1)", page.trim_end_matches(".1"));
        assert!(see_also.contains(&reference), "SEE ALSO lacks {reference}");
    }
    assert_eq!(
        generate("man").as_bytes(),
        std::fs::read(dir.join("dbagent.1")).unwrap()
    );
}

#[test]
fn generate_completions_dir_writes_the_files_each_shell_loads() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("completions");
    let run = run_in(
        home.path(),
        &["generate", "completions", "--dir", dir.to_str().unwrap()],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(read("dbagent.bash"), generate("bash"));
    assert_eq!(read("_dbagent"), generate("zsh"));
    assert_eq!(read("dbagent.fish"), generate("fish"));
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

#[test]
fn the_dockerfile_builds_for_postgresql_15_to_18_by_build_arg() {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    // The default is the major bookworm ships; the same argument picks the server image of the
    // postgres-dbagent stage and the package of the sidecar stage.
    assert!(dockerfile.lines().any(|l| l == "ARG PG_MAJOR=15"));
    assert!(dockerfile.contains("FROM postgres:${PG_MAJOR}-bookworm AS postgres-dbagent"));
    assert!(dockerfile.contains("\"postgresql-$PG_MAJOR\""));
    assert!(dockerfile.contains("15|16|17|18)"));
    // 16 to 18 come from PGDG, enabled with the script postgresql-common ships; it is where
    // the Dockerfile says (postgresql-common comes with the PostgreSQL 15 packages here).
    let script = "/usr/share/postgresql-common/pgdg/apt.postgresql.org.sh";
    assert!(dockerfile.contains(&format!("{script} -y")));
    assert!(
        Path::new(script).exists(),
        "{script} is not where postgresql-common installs it"
    );
}

#[test]
fn the_debian_package_ships_files_that_exist_and_executable_maintainer_scripts() {
    use std::os::unix::fs::PermissionsExt;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let deb = &manifest[manifest
        .find("[package.metadata.deb]")
        .expect("Cargo.toml has [package.metadata.deb]")..];
    // Each asset is a line `["SOURCE", "DEST", "MODE"],`; what is under target/release/ is
    // built by scripts/package-deb.sh.
    let sources: Vec<&str> = deb
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[\""))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert!(sources.contains(&"deploy/dbagent.service"), "{sources:?}");
    // The shipped alert rules' runbook_url values point at the packaged docs/runbooks.md.
    assert!(sources.contains(&"docs/*.md"), "{sources:?}");
    assert!(root.join("docs/runbooks.md").is_file());
    for source in sources.iter().filter(|s| !s.starts_with("target/")) {
        if let Some(dir) = source.strip_suffix("/*.md") {
            let any = std::fs::read_dir(root.join(dir))
                .unwrap()
                .any(|e| e.unwrap().path().extension().is_some_and(|x| x == "md"));
            assert!(any, "{source} is packaged but matches no file");
            continue;
        }
        assert!(
            root.join(source).is_file(),
            "{source} is packaged but missing"
        );
    }
    for script in ["postinst", "prerm", "postrm"] {
        let path = root.join("deploy/debian").join(script);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{} is not executable", path.display());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n") && text.contains("set -e"));
    }
    // The package installs the unit where systemd looks for a package's units, and the unit
    // starts the packaged binary.
    assert!(deb.contains("\"usr/lib/systemd/system/dbagent.service\""));
    let unit = std::fs::read_to_string(root.join("deploy/dbagent.service")).unwrap();
    assert!(unit.contains("\nExecStart=/usr/bin/dbagent "));
}
