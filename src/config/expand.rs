//! `${VAR}` expansion inside configuration values, so that secrets (passwords, webhook URLs,
//! routing keys) live in the environment and not in files.
//!
//! Forms: `${NAME}` (error when NAME is unset), `${NAME:-default}` (default when unset or
//! empty), `${NAME-default}` (default when unset) and `$$` for a literal `$`. A `$` followed by
//! anything else is kept as it is. Errors name the variable, never a value.

use std::fmt;

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// `${NAME}` without a default and NAME is not set.
    Unset(String),
    /// `${` without a closing `}` or with a name that is not `[A-Za-z_][A-Za-z0-9_]*`.
    Malformed(String),
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Unset(name) => write!(
                f,
                "environment variable {name} is not set; export it or write ${{{name}:-default}}"
            ),
            ExpandError::Malformed(what) => write!(
                f,
                "malformed variable reference `{what}`; write ${{NAME}}, ${{NAME:-default}} or $$ for a literal $"
            ),
        }
    }
}

impl std::error::Error for ExpandError {}

/// Expands `${...}` references in `input` using `lookup` (normally `std::env::var`).
pub fn expand_with(
    input: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body_start) = after.strip_prefix('{') {
            let end = body_start
                .find('}')
                .ok_or_else(|| ExpandError::Malformed(truncate(&rest[pos..])))?;
            let body = &body_start[..end];
            out.push_str(&resolve(body, &lookup)?);
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands with the process environment.
pub fn expand(input: &str) -> Result<String, ExpandError> {
    expand_with(input, |name| std::env::var(name).ok())
}

fn resolve(body: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let name_len = body
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    let name = &body[..name_len];
    let op = &body[name_len..];
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_name {
        return Err(ExpandError::Malformed(format!("${{{body}}}")));
    }
    let value = lookup(name);
    if op.is_empty() {
        return value.ok_or_else(|| ExpandError::Unset(name.to_string()));
    }
    if let Some(default) = op.strip_prefix(":-") {
        return Ok(value
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string()));
    }
    if let Some(default) = op.strip_prefix('-') {
        return Ok(value.unwrap_or_else(|| default.to_string()));
    }
    Err(ExpandError::Malformed(format!("${{{body}}}")))
}

fn truncate(s: &str) -> String {
    s.chars().take(24).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        assert_eq!(expand_with("a ${SECRET} b", env).unwrap(), "a s3cr3t b");
        assert_eq!(expand_with("${MISSING:-x}", env).unwrap(), "x");
        assert_eq!(expand_with("${EMPTY:-x}", env).unwrap(), "x");
        assert_eq!(expand_with("${EMPTY-x}", env).unwrap(), "");
        assert_eq!(expand_with("${MISSING-}", env).unwrap(), "");
        assert_eq!(
            expand_with("cost $$5 and $HOME", env).unwrap(),
            "cost $5 and $HOME"
        );
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let err = expand_with("password=${DB_PASS}", env).unwrap_err();
        assert_eq!(err, ExpandError::Unset("DB_PASS".into()));
        assert!(err.to_string().contains("DB_PASS"));
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(matches!(
            expand_with("${OPEN", env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand_with("${1X}", env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand_with("${A?x}", env),
            Err(ExpandError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn text_without_dollar_is_unchanged(s in "[^$]*") {
            prop_assert_eq!(expand_with(&s, env).unwrap(), s);
        }

        #[test]
        fn escaped_dollars_round_trip(s in "[a-z ]*") {
            let escaped = s.replace('$', "$$");
            prop_assert_eq!(expand_with(&format!("$${escaped}"), env).unwrap(), format!("${s}"));
        }
    }
}
