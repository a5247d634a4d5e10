//! The manual's links hold: every relative link in README.md and docs/*.md points to a file
//! that exists and, with `#anchor`, to a heading of that file (GitHub's anchor rules). Pages
//! written in other branches (install, tour, info, runbooks) are skipped while absent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Pages that other parts of the work add; a link to one is only checked once it exists.
const PAGES_ADDED_ELSEWHERE: &[&str] = &[
    "docs/install.md",
    "docs/tour.md",
    "docs/info.md",
    "docs/runbooks.md",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, relative to the repository root.
fn manual_pages() -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("list docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| PathBuf::from("docs").join(p.file_name().expect("a file name")))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The lines of a Markdown text outside fenced code blocks.
fn prose_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut fenced = false;
    text.lines().enumerate().filter_map(move |(i, line)| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return None;
        }
        (!fenced).then_some((i + 1, line))
    })
}

/// GitHub's anchor of a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings; a repeated heading gets `-1`, `-2`, ... as on GitHub.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of the inline links `[text](target)` on one line, code spans left out.
fn link_targets(line: &str) -> Vec<String> {
    let mut prose = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            prose.push(c);
        }
    }
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(end) => {
                let target = after[..end].trim();
                if !target.is_empty() && !target.contains(char::is_whitespace) {
                    out.push(target.to_string());
                }
                rest = &after[end..];
            }
            None => break,
        }
    }
    out
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_manual_reaches_a_file_and_heading() {
    let root = root();
    let pages = manual_pages();
    assert!(pages.len() > 5, "{pages:?}");
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(root.join(page)).expect("read a page");
        let dir = page.parent().unwrap_or(Path::new(""));
        for (lineno, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = match target.split_once('#') {
                    Some((f, a)) => (f, Some(a)),
                    None => (target.as_str(), None),
                };
                let rel = if file.is_empty() {
                    page.clone()
                } else {
                    normalize(&dir.join(file))
                };
                let at = format!("{}:{lineno}: ({target})", page.display());
                let abs = root.join(&rel);
                if !abs.exists() {
                    let elsewhere = PAGES_ADDED_ELSEWHERE.iter().any(|p| Path::new(p) == rel);
                    if !elsewhere {
                        problems.push(format!("{at}: no file {}", rel.display()));
                    }
                    continue;
                }
                checked += 1;
                let Some(anchor) = anchor else { continue };
                let target_text = std::fs::read_to_string(&abs).expect("read the linked page");
                if !anchors(&target_text).contains(anchor) {
                    problems.push(format!("{at}: {} has no heading #{anchor}", rel.display()));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} links found");
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn github_anchors_drop_punctuation_and_number_repeats() {
    assert_eq!(
        slug("`dbagent backups list|show|verify|expire`"),
        "dbagent-backups-listshowverifyexpire"
    );
    assert_eq!(slug("Object storage (S3)"), "object-storage-s3");
    assert_eq!(
        slug("`dbagent baselines show [--json] [SERIES_SUBSTRING]`"),
        "dbagent-baselines-show---json-series_substring"
    );
    let a = anchors("# A\n```\n# not a heading\n```\n## A\n### b: c\n");
    assert_eq!(
        a,
        ["a", "a-1", "b-c"].into_iter().map(String::from).collect()
    );
}
