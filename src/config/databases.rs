//! `monitor.databases`: which databases of the cluster the per-database collectors (tables,
//! vacuum, bloat, pgstattuple, the advisor) read. Shell-style patterns (`*` any run of
//! characters, `?` one character) matched against the whole database name; a database is
//! watched when it accepts connections, is not a template, matches an `include` pattern and no
//! `exclude` pattern. A plain list is shorthand for `include`.
//!
//! Patterns are checked when the file is loaded, so a bad one is reported at its line.

use serde::{Deserialize, Deserializer, Serialize, de::Error as _};

use super::expand::expand;

/// One validated shell-style pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Glob(String);

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("empty database pattern: write a name, or `*` for every database")]
    Empty,
    #[error(
        "database pattern `{0}`: only `*` (any characters) and `?` (one character) are special; character classes `[...]` are not supported"
    )]
    Class(String),
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if pattern.contains(['[', ']']) {
            return Err(GlobError::Class(pattern.to_string()));
        }
        Ok(Glob(pattern.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let s: Vec<char> = name.chars().collect();
        // Iterative matching with backtracking to the last `*` (linear in practice).
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, si));
                    pi += 1;
                }
                Some('?') => {
                    pi += 1;
                    si += 1;
                }
                Some(c) if *c == s[si] => {
                    pi += 1;
                    si += 1;
                }
                _ => match star {
                    Some((sp, ss)) => {
                        pi = sp + 1;
                        si = ss + 1;
                        star = Some((sp, ss + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Glob, D::Error> {
        let raw = String::deserialize(d)?;
        let s = expand(&raw).map_err(D::Error::custom)?;
        Glob::new(&s).map_err(D::Error::custom)
    }
}

/// `monitor.databases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabasesConfig {
    /// Databases matching any of these are watched (default `*`: every database).
    pub include: Vec<Glob>,
    /// ... unless they match one of these.
    pub exclude: Vec<Glob>,
}

impl Default for DatabasesConfig {
    fn default() -> Self {
        DatabasesConfig {
            include: vec![Glob("*".into())],
            exclude: Vec::new(),
        }
    }
}

impl DatabasesConfig {
    /// Whether the database `name` is selected (the caller has left out templates and
    /// databases that do not accept connections).
    pub fn selects(&self, name: &str) -> bool {
        self.include.iter().any(|g| g.matches(name))
            && !self.exclude.iter().any(|g| g.matches(name))
    }
}

impl<'de> Deserialize<'de> for DatabasesConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DatabasesConfig, D::Error> {
        // An untagged enum would hide the pattern's own error behind "did not match any
        // variant": read the value once, then decide.
        let value = serde_json::Value::deserialize(d)?;
        let parse = |v: &serde_json::Value| -> Result<Vec<Glob>, String> {
            let list = v
                .as_array()
                .ok_or_else(|| "expected a list of database name patterns".to_string())?;
            list.iter()
                .map(|p| {
                    let s = p.as_str().ok_or_else(|| {
                        format!("database pattern {p}: expected a string such as \"app_*\"")
                    })?;
                    let s = expand(s).map_err(|e| e.to_string())?;
                    Glob::new(&s).map_err(|e| e.to_string())
                })
                .collect()
        };
        match &value {
            serde_json::Value::Array(_) => Ok(DatabasesConfig {
                include: parse(&value).map_err(D::Error::custom)?,
                exclude: Vec::new(),
            }),
            serde_json::Value::Object(map) => {
                let mut out = DatabasesConfig::default();
                for (k, v) in map {
                    match k.as_str() {
                        "include" => out.include = parse(v).map_err(D::Error::custom)?,
                        "exclude" => out.exclude = parse(v).map_err(D::Error::custom)?,
                        other => {
                            return Err(D::Error::custom(format!(
                                "unknown key `{other}` in monitor.databases: expected `include` or `exclude` (or a plain list of patterns)"
                            )));
                        }
                    }
                }
                Ok(out)
            }
            _ => Err(D::Error::custom(
                "monitor.databases: expected a list of patterns or { include: [...], exclude: [...] }",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn globs_match_the_whole_name() {
        assert!(g("*").matches("anything"));
        assert!(g("*").matches(""));
        assert!(g("app").matches("app"));
        assert!(!g("app").matches("app2"));
        assert!(g("app_*").matches("app_eu"));
        assert!(!g("app_*").matches("myapp_eu"));
        assert!(g("*_test").matches("orders_test"));
        assert!(!g("*_test").matches("orders_test2"));
        assert!(g("db?").matches("db1"));
        assert!(!g("db?").matches("db12"));
        assert!(g("a*b*c").matches("aXXbYYc"));
        assert!(g("a*b*c").matches("abbbc"));
        assert!(!g("a*b*c").matches("aXXbYY"));
        assert!(g("*.*").matches("a.b"));
        assert!(g("é?").matches("éü"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(Glob::new(""), Err(GlobError::Empty));
        assert!(matches!(Glob::new("db[12]"), Err(GlobError::Class(_))));
    }

    #[test]
    fn exclude_wins_over_include() {
        let c = DatabasesConfig {
            include: vec![g("app*"), g("billing")],
            exclude: vec![g("*_scratch")],
        };
        assert!(c.selects("app"));
        assert!(c.selects("billing"));
        assert!(!c.selects("app_scratch"));
        assert!(!c.selects("postgres"));
        assert!(DatabasesConfig::default().selects("postgres"));
    }
}
