//! How a configuration is written back when serialized (`config validate --json`): durations
//! as a number of seconds (JSON keeps machine units; the output says so with
//! `"durations": "seconds"`), secrets only as whether they are set.

use std::time::Duration;

/// Whole seconds as an integer (`300`), anything finer as a fraction (`0.25`).
pub fn duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    if d.subsec_nanos() == 0 {
        s.serialize_u64(d.as_secs())
    } else {
        s.serialize_f64(d.as_secs_f64())
    }
}

pub fn opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, s),
        None => s.serialize_none(),
    }
}

/// A secret is never written back: only whether it is set.
pub fn secret<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("(set)"),
        None => s.serialize_none(),
    }
}
