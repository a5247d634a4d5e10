//! Field deserializers for `dbagent.yml`: every string-like value goes through `${VAR}`
//! expansion first, then is parsed into its type, so a bad value is reported at its line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de::Error as _};

use super::expand::expand;
use crate::pg::ConnInfo;

fn expanded<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = String::deserialize(d)?;
    expand(&raw).map_err(D::Error::custom)
}

pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    expanded(d)
}

pub fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let s = expanded(d)?;
    if s.is_empty() {
        return Err(D::Error::custom("empty path"));
    }
    Ok(PathBuf::from(s))
}

pub fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    match raw {
        None => Ok(None),
        Some(raw) => {
            let s = expand(&raw).map_err(D::Error::custom)?;
            Ok((!s.is_empty()).then(|| PathBuf::from(s)))
        }
    }
}

/// A duration or size value that does not read; says how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("invalid duration `{0}`: write it like 15s, 5m, 2h or 7d")]
    Duration(String),
    #[error("invalid size `{0}`: write it like 10MB, 512kB or 1GB")]
    Size(String),
    #[error("size `{0}` is too large")]
    SizeTooLarge(String),
}

/// A human duration: `15s`, `5m`, `2h 30m`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    humantime::parse_duration(s.trim()).map_err(|_| ValueError::Duration(s.to_string()))
}

pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = expanded(d)?;
    parse_duration(&s).map_err(D::Error::custom)
}

pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    match raw {
        None => Ok(None),
        Some(raw) => {
            let s = expand(&raw).map_err(D::Error::custom)?;
            parse_duration(&s).map(Some).map_err(D::Error::custom)
        }
    }
}

pub fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = expanded(d)?;
    s.parse().map_err(|_| {
        D::Error::custom(format!(
            "invalid listen address `{s}`: write IP:PORT such as 127.0.0.1:9188"
        ))
    })
}

/// The conninfo is parsed here so that a bad keyword is reported at its line. Errors never
/// contain the expanded value (it may hold a password).
pub fn conninfo<'de, D: Deserializer<'de>>(d: D) -> Result<ConnInfo, D::Error> {
    let s = expanded(d)?;
    ConnInfo::parse(&s).map_err(D::Error::custom)
}

/// An optional conninfo (empty means unset), parsed here so that a bad keyword is reported at
/// its line.
pub fn opt_conninfo<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ConnInfo>, D::Error> {
    match opt_string(d)? {
        None => Ok(None),
        Some(s) => ConnInfo::parse(&s).map(Some).map_err(D::Error::custom),
    }
}

/// A string with `${VAR}` expanded; empty means unset.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    match raw {
        None => Ok(None),
        Some(raw) => {
            let s = expand(&raw).map_err(D::Error::custom)?;
            Ok((!s.is_empty()).then_some(s))
        }
    }
}

/// A human size: `10MB`, `512kB`, `1GB`, `0` (powers of 1024, as PostgreSQL writes them).
pub fn parse_size(s: &str) -> Result<u64, ValueError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| ValueError::Size(s.to_string()))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" | "kib" => 1 << 10,
        "mb" | "m" | "mib" => 1 << 20,
        "gb" | "g" | "gib" => 1 << 30,
        "tb" | "t" | "tib" => 1 << 40,
        _ => return Err(ValueError::Size(s.to_string())),
    };
    n.checked_mul(mult)
        .ok_or_else(|| ValueError::SizeTooLarge(s.to_string()))
}

pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n),
        Raw::S(s) => {
            let s = expand(&s).map_err(D::Error::custom)?;
            parse_size(&s).map_err(D::Error::custom)
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_like_postgresql_writes_them() {
        assert_eq!(parse_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_size("512kB"), Ok(512 << 10));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }
}
