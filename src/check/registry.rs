//! Every check `dbagent check` can report, by name, in the order a report lists them. The names
//! are stable (`--json` prints them, monitoring keys on them); docs/commands.md documents each
//! one and a test holds the two together, and a report only ever names checks of this list.

/// The check names, in report order. `settings` stands in for the server checks when the
/// server's settings cannot be read; `standby_replay` is reported on standbys only.
pub const NAMES: &[&str] = &[
    "connection",
    "server_version",
    "settings",
    "role_pg_monitor",
    "role_replication",
    "role_functions",
    "stats_visibility",
    "wal_level",
    "archive_mode",
    "archive_command",
    "archiving",
    "archive_lag",
    "archive_timeout",
    "standby_replay",
    "pg_stat_statements",
    "data_checksums",
    "checkpoints",
    "databases",
    "repository",
    "repository_binding",
    "last_backup",
    "archive_continuity",
    "last_drill",
    "wal_verify",
    "rpo",
    "rto",
];

/// Whether `name` is a registered check.
pub fn is_check(name: &str) -> bool {
    NAMES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::NAMES;

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
        assert_eq!(documented, NAMES, "docs/commands.md, table of checks");
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
                        NAMES.len(),
                        "{file} says \"{} {} {}\"; the registry has {} checks",
                        w[0],
                        w[1],
                        w[2],
                        NAMES.len()
                    );
                }
            }
        }
        assert!(stated > 0, "no file states the number of checks");
    }
}
