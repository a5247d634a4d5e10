//! The library's architecture, checked on its source: no file-level import cycle, no import
//! from a lower layer to a higher one, and nothing of the binary's command line (`cli`).
//! `scripts/layers.sh` runs just these tests.
//!
//! How the file graph is built. Every `src/**/*.rs` of the library (not `src/main.rs`, not
//! `src/cli/`) is read with its comments, strings and `#[cfg(test)]` modules blanked out (a
//! test module may use its parent and its siblings' test helpers). A reference is a `use` tree
//! (`use crate::a::{b, c::d}`, `use super::x`, `use child::y`) or a path in code that starts
//! with `crate::`, `super::`, `self::` or a child module's name. It resolves to the FILE of the
//! longest prefix that is a module (`src/a/b.rs` or `src/a/b/mod.rs`; an item or an inline
//! module maps to the file that holds it). When that file only re-exports the item (`pub use
//! x::Item`), the edge goes on to where the item is defined: a re-export is a path, not a
//! dependency; the `pub use` itself is an edge of the file that writes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may use modules of its own layer or of any layer below
/// it, never one above. Within a layer, file cycles are still refused (test below). A new
/// top-level module must be placed here, and say its layer in its doc comment.
const LAYERS: &[(&str, &[&str])] = &[
    // Vocabulary with no dependency inside the crate: units and formatting, the cron
    // parser, the metric model and catalogue, the snapshot types the HTTP endpoint serves.
    (
        "foundation",
        &["units", "io_error", "cron", "metrics", "snapshot"],
    ),
    // Access to what dbagent works on: PostgreSQL connections and SQL, the repository, the
    // agent's SQLite store.
    ("access", &["pg", "repo", "state"]),
    // The configuration model (dbagent.yml), which names connections and compression.
    ("configuration", &["config"]),
    // Operations on the cluster and the repository, and the analysis on the store: WAL,
    // backups, restores, RPO, drills, the advisor, baselines, leader election.
    (
        "operation",
        &[
            "wal", "backup", "restore", "rpo", "drill", "advise", "baseline", "leader",
        ],
    ),
    // What watches the operations: collectors, `dbagent check`, notification delivery.
    ("observation", &["collect", "check", "info", "notify"]),
    // Alert rules, state machine and silences (hand notifications to notify).
    ("alerting", &["alert"]),
    // The long-running services of the agent: the HTTP endpoint and the scheduler.
    ("service", &["http", "schedule"]),
    // `dbagent run`: wires everything together.
    ("agent", &["agent"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// One library source file: its path relative to the crate root and its code with comments,
/// strings and test modules blanked (newlines and positions kept).
struct SourceFile {
    rel: String,
    code: String,
}

/// Every library file, keyed by its path (`src/a/b.rs`), test-only files left out.
fn library() -> BTreeMap<String, SourceFile> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let root = src();
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    let mut files = BTreeMap::new();
    let mut test_files = BTreeSet::new();
    for p in paths {
        let rel = format!("src/{}", p.strip_prefix(&root).unwrap().to_string_lossy());
        if rel == "src/main.rs" || rel.starts_with("src/cli/") {
            continue;
        }
        let code = strip(&std::fs::read_to_string(&p).unwrap());
        for name in test_module_files(&code) {
            test_files.insert(format!("{}/{name}.rs", module_dir(&rel)));
        }
        let code = blank_test_modules(&code);
        files.insert(rel.clone(), SourceFile { rel, code });
    }
    for t in test_files {
        files.remove(&t);
    }
    files
}

/// The directory that holds the child modules of the file `rel`.
fn module_dir(rel: &str) -> String {
    if rel.ends_with("/mod.rs") || rel == "src/lib.rs" {
        rel.rsplit_once('/').unwrap().0.to_string()
    } else {
        rel.trim_end_matches(".rs").to_string()
    }
}

/// The module path of a file: `src/a/b.rs` and `src/a/b/mod.rs` are `["a", "b"]`.
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel["src/".len()..rel.len() - ".rs".len()]
        .split('/')
        .map(str::to_string)
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// Comments, string and char literals replaced by spaces (newlines kept).
fn strip(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let blank = |out: &mut Vec<u8>, from: &[u8]| {
        out.extend(from.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }))
    };
    let mut i = 0;
    while i < b.len() {
        let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, &b[i..end]);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let (mut j, mut depth) = (i, 0);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &b[i..j]);
            i = j;
        } else if !prev_ident && raw_string_start(&b[i..]).is_some() {
            let (open, hashes) = raw_string_start(&b[i..]).unwrap();
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let body = i + open;
            let end = b[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| body + p + close.len());
            blank(&mut out, &b[i..end]);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            blank(&mut out, &b[i..end]);
            i = end;
        } else if b[i] == b'\'' {
            // A char literal ('a', '\n', '\u{7f}'), not a lifetime ('a).
            let len = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..].iter().position(|&c| c == b'\'').map(|p| p + 3)
            } else {
                let ch = s[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(ch + 2)
            };
            match len {
                Some(n) => {
                    blank(&mut out, &b[i..i + n]);
                    i += n;
                }
                None => {
                    out.push(b[i]);
                    i += 1;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `r"`, `r#"`, `br##"`: the length of the opening and the number of `#`.
fn raw_string_start(b: &[u8]) -> Option<(usize, usize)> {
    let start = usize::from(b.first() == Some(&b'b'));
    if b.get(start) != Some(&b'r') {
        return None;
    }
    let hashes = b[start + 1..].iter().take_while(|&&c| c == b'#').count();
    (b.get(start + 1 + hashes) == Some(&b'"')).then_some((start + 2 + hashes, hashes))
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Positions where the keyword `kw` starts as a whole word.
fn word_positions(code: &str, kw: &str) -> Vec<usize> {
    let b = code.as_bytes();
    code.match_indices(kw)
        .map(|(i, _)| i)
        .filter(|&i| {
            (i == 0 || !is_ident_byte(b[i - 1]))
                && b.get(i + kw.len()).is_none_or(|&c| !is_ident_byte(c))
        })
        .collect()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn ident_at(code: &str, i: usize) -> Option<&str> {
    let b = code.as_bytes();
    let end = (i..b.len())
        .find(|&j| !is_ident_byte(b[j]))
        .unwrap_or(b.len());
    (end > i && !b[i].is_ascii_digit()).then(|| &code[i..end])
}

/// `#[cfg(test)] [pub(..)] mod NAME` at each attribute: (start, the byte after NAME, NAME).
fn cfg_test_modules(code: &str) -> Vec<(usize, usize, String)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for (start, _) in code.match_indices("#[cfg(test)]") {
        let mut i = skip_ws(b, start + "#[cfg(test)]".len());
        if code[i..].starts_with("pub") {
            i += 3;
            if b.get(i) == Some(&b'(') {
                i += code[i..].find(')').unwrap() + 1;
            }
            i = skip_ws(b, i);
        }
        if !code[i..].starts_with("mod") || b.get(i + 3).is_some_and(|&c| is_ident_byte(c)) {
            continue;
        }
        i = skip_ws(b, i + 3);
        if let Some(name) = ident_at(code, i) {
            out.push((start, i + name.len(), name.to_string()));
        }
    }
    out
}

/// The files of `#[cfg(test)] mod NAME;`.
fn test_module_files(code: &str) -> Vec<String> {
    let b = code.as_bytes();
    cfg_test_modules(code)
        .into_iter()
        .filter(|(_, after, _)| b.get(skip_ws(b, *after)) == Some(&b';'))
        .map(|(_, _, name)| name)
        .collect()
}

/// The end of the block whose `{` is at `open`.
fn block_end(b: &[u8], open: usize) -> usize {
    let mut depth = 0;
    for (j, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    b.len()
}

/// `#[cfg(test)] mod NAME { ... }` blanked out.
fn blank_test_modules(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let b = code.as_bytes();
    for (start, after, _) in cfg_test_modules(code) {
        let open = skip_ws(b, after);
        if b.get(open) == Some(&b'{') {
            let end = block_end(b, open);
            for c in &mut out[start..end] {
                if *c != b'\n' {
                    *c = b' ';
                }
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The `(start, end)` of every inline `mod NAME { ... }` (for `super::` inside one).
fn inline_modules(code: &str) -> Vec<(usize, usize)> {
    let b = code.as_bytes();
    word_positions(code, "mod")
        .into_iter()
        .filter_map(|i| {
            let n = skip_ws(b, i + 3);
            let name = ident_at(code, n)?;
            let open = skip_ws(b, n + name.len());
            (b.get(open) == Some(&b'{')).then(|| (i, block_end(b, open)))
        })
        .collect()
}

/// The child modules a file declares (`mod NAME;`).
fn child_modules(code: &str) -> BTreeSet<String> {
    let b = code.as_bytes();
    word_positions(code, "mod")
        .into_iter()
        .filter_map(|i| {
            let n = skip_ws(b, i + 3);
            let name = ident_at(code, n)?;
            (b.get(skip_ws(b, n + name.len())) == Some(&b';')).then(|| name.to_string())
        })
        .collect()
}

/// One leaf of a `use` tree: its path segments and the name it binds.
struct UseLeaf {
    segments: Vec<String>,
    binds: Option<String>,
}

/// `a::b::{c, d::{e as f, self}}` → `a::b::c`, `a::b::d::e` (binds f), `a::b::d`.
fn expand_use(tree: &str) -> Vec<UseLeaf> {
    fn split_top(s: &str) -> Vec<&str> {
        let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        parts
    }
    fn rec(prefix: &[String], tree: &str, out: &mut Vec<UseLeaf>) {
        let tree = tree.trim();
        if tree.is_empty() {
            return;
        }
        if let Some(open) = tree.find('{') {
            let head: Vec<String> = tree[..open]
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let prefix: Vec<String> = prefix.iter().cloned().chain(head).collect();
            let inner = &tree[open + 1..tree.rfind('}').unwrap()];
            for part in split_top(inner) {
                rec(&prefix, part, out);
            }
            return;
        }
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p, Some(a.trim().to_string())),
            None => (tree, None),
        };
        let mut segments: Vec<String> = prefix.to_vec();
        let mut binds = None;
        for s in path.split("::").map(str::trim) {
            match s {
                "" | "*" => binds = None,
                "self" if !segments.is_empty() => binds = segments.last().cloned(),
                _ => {
                    segments.push(s.to_string());
                    binds = Some(s.to_string());
                }
            }
        }
        out.push(UseLeaf {
            segments,
            binds: alias.or(binds).filter(|a| a != "_"),
        });
    }
    let mut out = Vec::new();
    rec(&[], tree, &mut out);
    out
}

/// An intra-crate reference found in a file: the absolute path it names and how it was written.
struct Reference {
    path: Vec<String>,
    written: String,
    /// `pub use`: the name it exports from this file.
    exports: Option<String>,
}

/// Every intra-crate reference of one file, resolved to an absolute module path.
fn references(file: &SourceFile) -> Vec<Reference> {
    let code = &file.code;
    let b = code.as_bytes();
    let here = module_path(&file.rel);
    let children = child_modules(code);
    let inline = inline_modules(code);
    let absolute = |segs: &[String], at: usize| -> Option<Vec<String>> {
        let first = segs.first()?.as_str();
        let depth = inline.iter().filter(|(s, e)| *s <= at && at < *e).count();
        match first {
            "crate" => Some(segs[1..].to_vec()),
            "super" | "self" => {
                // Inside an inline module, `super` first climbs back to this file's module.
                let mut level = here.len() + depth;
                let mut k = 0;
                while k < segs.len() && matches!(segs[k].as_str(), "super" | "self") {
                    if segs[k] == "super" {
                        level = level.checked_sub(1)?;
                    }
                    k += 1;
                }
                let base = here[..level.min(here.len())].to_vec();
                Some(base.into_iter().chain(segs[k..].iter().cloned()).collect())
            }
            _ if depth == 0 && children.contains(first) => {
                Some(here.iter().chain(segs).cloned().collect())
            }
            _ => None,
        }
    };
    let mut out = Vec::new();
    let mut in_use = Vec::new();
    for at in word_positions(code, "use") {
        let Some(len) = code[at..].find(';') else {
            continue;
        };
        in_use.push((at, at + len));
        let before = code[..at].trim_end();
        let public = before.ends_with("pub")
            || (before.ends_with(')') && {
                let open = before.rfind('(').unwrap_or(0);
                before[..open].trim_end().ends_with("pub")
            });
        for leaf in expand_use(&code[at + 3..at + len]) {
            if let Some(path) = absolute(&leaf.segments, at) {
                out.push(Reference {
                    path,
                    written: format!("use {}", leaf.segments.join("::")),
                    exports: if public { leaf.binds } else { None },
                });
            }
        }
    }
    // Paths in code: `a::b::c` runs of identifiers, outside `use` statements.
    let mut i = 0;
    while i < b.len() {
        if !is_ident_byte(b[i]) || (i > 0 && (is_ident_byte(b[i - 1]) || b[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let start = i;
        let mut segs = Vec::new();
        let mut j = i;
        while let Some(id) = ident_at(code, j) {
            segs.push(id.to_string());
            j += id.len();
            if code[j..].starts_with("::") && b.get(j + 2).is_some_and(|&c| is_ident_byte(c)) {
                j += 2;
            } else {
                break;
            }
        }
        i = j.max(i + 1);
        if segs.len() < 2 || in_use.iter().any(|(s, e)| *s <= start && start < *e) {
            continue;
        }
        if let Some(path) = absolute(&segs, start) {
            out.push(Reference {
                path,
                written: segs.join("::"),
                exports: None,
            });
        }
    }
    out
}

/// The library's file graph: for each file, the files it references and how.
struct Graph {
    edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    files: BTreeSet<String>,
}

fn graph() -> Graph {
    let files = library();
    let refs: BTreeMap<&str, Vec<Reference>> = files
        .values()
        .map(|f| (f.rel.as_str(), references(f)))
        .collect();
    // What each file re-exports: name → the absolute path it stands for.
    let reexports: BTreeMap<&str, BTreeMap<&str, &[String]>> = refs
        .iter()
        .map(|(f, rs)| {
            let names = rs
                .iter()
                .filter_map(|r| Some((r.exports.as_deref()?, r.path.as_slice())))
                .collect();
            (*f, names)
        })
        .collect();
    let module_file = |path: &[String]| -> Option<String> {
        if path.is_empty() {
            return Some("src/lib.rs".into());
        }
        let base = format!("src/{}", path.join("/"));
        [format!("{base}.rs"), format!("{base}/mod.rs")]
            .into_iter()
            .find(|f| files.contains_key(f))
    };
    let resolve = |path: &[String]| -> Option<String> {
        let mut path = path.to_vec();
        for _ in 0..16 {
            let k = (0..=path.len())
                .rev()
                .find(|&k| module_file(&path[..k]).is_some())?;
            let file = module_file(&path[..k])?;
            match path
                .get(k)
                .and_then(|name| reexports.get(file.as_str())?.get(name.as_str()))
            {
                Some(target) if k < path.len() => {
                    path = target.iter().chain(&path[k + 1..]).cloned().collect();
                }
                _ => return Some(file),
            }
        }
        None
    };
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, rs) in &refs {
        for r in rs {
            if let Some(to) = resolve(&r.path).filter(|to| to != from) {
                edges
                    .entry(from.to_string())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(r.written.clone());
            }
        }
    }
    Graph {
        edges,
        files: files.into_keys().collect(),
    }
}

/// Tarjan's strongly connected components.
fn components(g: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.g.edges.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    scc.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                scc.sort();
                self.out.push(scc);
            }
        }
    }
    let mut t = Tarjan {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for f in &g.files {
        if !t.index.contains_key(f.as_str()) {
            t.visit(f);
        }
    }
    t.out
}

/// The top-level module of a file (`src/wal/get.rs` → `wal`); `None` for `src/lib.rs`.
fn top_module(file: &str) -> Option<&str> {
    let rest = &file["src/".len()..];
    let top = rest.split('/').next()?.trim_end_matches(".rs");
    (top != "lib").then_some(top)
}

fn layer_of(module: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, ms))| ms.contains(&module))
        .map(|(i, (name, _))| (i, *name))
}

#[test]
fn no_file_of_the_library_is_in_an_import_cycle() {
    let g = graph();
    let mut report = String::new();
    for scc in components(&g).into_iter().filter(|c| c.len() > 1) {
        report.push_str(&format!("cycle of {} files:\n", scc.len()));
        for from in &scc {
            for (to, how) in g.edges.get(from).into_iter().flatten() {
                if scc.contains(to) {
                    let how: Vec<_> = how.iter().take(3).map(String::as_str).collect();
                    report.push_str(&format!("  {from} -> {to}   ({})\n", how.join(", ")));
                }
            }
        }
    }
    assert!(
        report.is_empty(),
        "{report}move what both sides share into a file below both"
    );
}

#[test]
fn no_import_runs_from_a_lower_layer_to_a_higher_one() {
    let g = graph();
    let mut report = String::new();
    for file in &g.files {
        if let Some(m) = top_module(file)
            && layer_of(m).is_none()
        {
            report.push_str(&format!("{file}: module `{m}` has no layer in LAYERS\n"));
        }
    }
    for (from, tos) in &g.edges {
        let Some((lf, nf)) = top_module(from).and_then(layer_of) else {
            continue;
        };
        for (to, how) in tos {
            let Some((lt, nt)) = top_module(to).and_then(layer_of) else {
                continue;
            };
            if lt > lf {
                let how: Vec<_> = how.iter().take(3).map(String::as_str).collect();
                report.push_str(&format!(
                    "{from} ({nf}) -> {to} ({nt}, a higher layer)   ({})\n",
                    how.join(", ")
                ));
            }
        }
    }
    assert!(report.is_empty(), "{report}");
}

#[test]
fn each_top_level_module_says_its_layer_and_what_it_uses() {
    let g = graph();
    let mut uses: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, tos) in &g.edges {
        for to in tos.keys() {
            if let (Some(a), Some(b)) = (top_module(from), top_module(to))
                && a != b
            {
                uses.entry(a).or_default().insert(b);
            }
        }
    }
    let mut report = String::new();
    for (layer, modules) in LAYERS {
        for m in *modules {
            let file = [format!("src/{m}.rs"), format!("src/{m}/mod.rs")]
                .into_iter()
                .find(|f| src().parent().unwrap().join(f).exists());
            let Some(file) = file else {
                report.push_str(&format!("LAYERS names `{m}`, which has no file\n"));
                continue;
            };
            let text = std::fs::read_to_string(src().parent().unwrap().join(&file)).unwrap();
            let doc: String = text
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .map(|l| format!("{} ", l.trim_start_matches("//!").trim()))
                .collect();
            if !doc.contains(&format!("Layer: {layer}")) {
                report.push_str(&format!(
                    "{file}: its doc comment should say `Layer: {layer}`\n"
                ));
            }
            let documented: BTreeSet<&str> = doc
                .split_once("Uses: ")
                .map(|(_, rest)| rest.split('.').next().unwrap_or(""))
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().trim_matches('`'))
                .collect();
            let actual = uses.get(m).cloned().unwrap_or_default();
            let missing: Vec<_> = actual.difference(&documented).copied().collect();
            if !missing.is_empty() {
                report.push_str(&format!(
                    "{file}: uses {} but its doc comment's `Uses:` does not say so\n",
                    missing.join(", ")
                ));
            }
        }
    }
    assert!(report.is_empty(), "{report}");
}

#[test]
fn the_library_knows_nothing_of_the_command_line() {
    let mut report = String::new();
    for f in library().values() {
        let raw = std::fs::read_to_string(src().parent().unwrap().join(&f.rel)).unwrap();
        for needle in ["crate::cli", "dbagent::cli"] {
            if raw.contains(needle) {
                report.push_str(&format!("{}: mentions {needle}\n", f.rel));
            }
        }
    }
    assert!(
        report.is_empty(),
        "{report}the command line is the binary's (src/cli); the library must not reach it"
    );
}

/// The checker itself: it sees what it must see, so an empty report means something.
#[test]
fn the_checker_finds_use_trees_super_paths_and_reexports() {
    let leaves = expand_use("crate::a::{b, c::{d as e, self}, f::*}");
    let got: Vec<_> = leaves
        .iter()
        .map(|l| (l.segments.join("::"), l.binds.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("crate::a::b".to_string(), Some("b".to_string())),
            ("crate::a::c::d".into(), Some("e".into())),
            ("crate::a::c".into(), Some("c".into())),
            ("crate::a::f".into(), None),
        ]
    );
    let code = strip("let s = \"crate::x::y\"; // crate::z\nlet c = '\"'; x::<'a>();");
    assert!(!code.contains("crate::"), "{code}");
    let g = graph();
    // A re-export is followed to where the item is defined: collectors import
    // `super::Collector`, which collect/mod.rs re-exports from collect/collector.rs.
    let from_bloat = &g.edges["src/collect/bloat.rs"];
    assert!(from_bloat.contains_key("src/collect/collector.rs"));
    assert!(!from_bloat.contains_key("src/collect/mod.rs"));
    // A child module named in code is an edge (collect/mod.rs lists every collector).
    assert!(g.edges["src/collect/mod.rs"].contains_key("src/collect/bloat.rs"));
}
