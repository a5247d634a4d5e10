//! Units and their formatting in operator output: bytes and durations, one way each.
//!
//! Layer: foundation. Uses: nothing of the crate. Used by: advise, check.

/// `512 B`, `3.0 KiB`, `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n >= size {
            return format!("{:.1} {unit}", n as f64 / size as f64);
        }
    }
    format!("{n} B")
}

/// `95` → `1m35s`, `3600` → `1h`; for messages (seconds are rounded).
pub fn human_seconds(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    humantime::format_duration(std::time::Duration::from_secs(secs))
        .to_string()
        .replace(' ', "")
}
