//! Every check `dbagent check` can report, by name, in the order a report lists them. The names
//! are stable (`--json` prints them, monitoring keys on them); docs/commands.md documents each
//! one and a test holds the two together, and a report only ever names checks of this list.

/// Every check in report order, with what it looks at in a few words (`check --help` lists
/// them). `settings` stands in for the server checks when the server's settings cannot be read;
/// `standby_replay` is reported on standbys only.
pub const CHECKS: &[(&str, &str)] = &[
    ("connection", "the server accepts dbagent's connection"),
    ("server_version", "a supported PostgreSQL major version"),
    (
        "settings",
        "the server settings can be read (reported only when they cannot)",
    ),
    ("role_pg_monitor", "the role has pg_monitor"),
    ("role_replication", "the role may take base backups"),
    (
        "role_functions",
        "the role may run the WAL and backup functions",
    ),
    (
        "stats_visibility",
        "pg_stats is visible for the advisor's estimates",
    ),
    ("wal_level", "wal_level allows archiving"),
    ("archive_mode", "archive_mode is on"),
    ("archive_command", "archive_command runs dbagent wal-push"),
    ("archiving", "the archiver is not failing"),
    ("archive_lag", "WAL waiting to be archived"),
    (
        "archive_timeout",
        "archive_timeout lets the RPO target be met",
    ),
    (
        "standby_replay",
        "standbys only: replay keeping up with the archive",
    ),
    ("pg_stat_statements", "statement statistics are collected"),
    ("data_checksums", "data checksums are on"),
    ("checkpoints", "checkpoints are mostly timed, not forced"),
    (
        "databases",
        "every database monitor.databases selects can be read",
    ),
    (
        "wal_summaries",
        "PostgreSQL 17+: WAL summarization for incremental backups",
    ),
    ("repository", "the repository exists and is writable"),
    (
        "repository_binding",
        "the repository belongs to this cluster",
    ),
    ("last_backup", "age of the newest backup"),
    (
        "archive_continuity",
        "WAL continuous from the newest backup along the timeline history",
    ),
    ("last_drill", "age and outcome of the last `dbagent drill`"),
    (
        "wal_verify",
        "what the last `dbagent wal verify` found, and its age",
    ),
    ("rpo", "data at risk now against objectives.rpo"),
    (
        "rto",
        "the last drill's restore time against objectives.rto",
    ),
];

/// The check names, in report order.
pub fn names() -> impl Iterator<Item = &'static str> {
    CHECKS.iter().map(|(name, _)| *name)
}

/// Whether `name` is a registered check.
pub fn is_check(name: &str) -> bool {
    names().any(|n| n == name)
}

#[cfg(test)]
mod tests {
    use super::{CHECKS, names};

    fn read(rel: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// docs/commands.md's table of checks names every check of the registry, in report order,
    /// and nothing else.
    #[test]
    fn the_docs_list_of_checks_is_the_registry() {
        let doc = read("docs/commands.md");
        let section = doc
            .split("\n## `dbagent check`\n")
            .nth(1)
            .expect("docs/commands.md has a `## `dbagent check`` section");
        let documented: Vec<&str> = section
            .lines()
            .skip_while(|l| !l.starts_with("| Check |"))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|row| {
                row.trim_start_matches("| `")
                    .split('`')
                    .next()
                    .expect("a row starts with the check's name")
            })
            .collect();
        assert_eq!(
            documented,
            names().collect::<Vec<_>>(),
            "docs/commands.md, table of checks"
        );
    }

    /// Wherever README.md or docs/ say how many checks there are ("26 checks"), the number is
    /// the registry's. Example output ("all 14 checks passed") is one run, not the count.
    #[test]
    fn the_docs_count_of_checks_is_the_registry() {
        let mut files = vec!["README.md".to_string()];
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        for entry in std::fs::read_dir(&docs).expect("list docs/") {
            let name = entry.expect("docs/ entry").file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".md") {
                files.push(format!("docs/{name}"));
            }
        }
        let mut stated = 0;
        for file in &files {
            let text = read(file);
            let words: Vec<&str> = text.split_whitespace().collect();
            for w in words.windows(3) {
                let Ok(n) = w[0].trim_start_matches(['(', '*']).parse::<usize>() else {
                    continue;
                };
                if w[1].trim_end_matches([',', ')', '.', ';', ':']) == "checks"
                    && !w[2].starts_with("passed")
                {
                    stated += 1;
                    assert_eq!(
                        n,
                        CHECKS.len(),
                        "{file} says \"{} {} {}\"; the registry has {} checks",
                        w[0],
                        w[1],
                        w[2],
                        CHECKS.len()
                    );
                }
            }
        }
        assert!(stated > 0, "no file states the number of checks");
    }
}
