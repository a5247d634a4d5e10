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

/// A human duration: `15s`, `5m`, `2h 30m`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| format!("invalid duration `{s}`: write it like 15s, 5m, 2h or 7d"))
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
