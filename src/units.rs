//! Units and their formatting in operator output: bytes and durations, one way each.
//!
//! Layer: foundation. Uses: nothing of the crate. Used by: any module.

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

/// A duration in operator output (tables, check and advise messages, alert texts, command
/// summaries): `0.5s`, `42s`, `3m 12s`, `2h 05m`, `2d 4h`. Two units at most, the larger
/// first; a second unit that is zero is left out (`5m`, `1h`, `7d`). Under 10 s one decimal,
/// so that a half-second drill is not `0s` (`3s`, not `3.0s`). JSON output keeps numbers.
pub fn human_duration(secs: f64) -> String {
    let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    let tenths = (secs * 10.0).round() as u64;
    if tenths < 100 {
        return match tenths % 10 {
            0 => format!("{}s", tenths / 10),
            t => format!("{}.{t}s", tenths / 10),
        };
    }
    let s = secs.round() as u64;
    let (big, small, width, units) = match s {
        0..60 => return format!("{s}s"),
        60..3600 => (s / 60, s % 60, 2, ("m", "s")),
        3600..86400 => (s / 3600, s % 3600 / 60, 2, ("h", "m")),
        _ => (s / 86400, s % 86400 / 3600, 1, ("d", "h")),
    };
    match small {
        0 => format!("{big}{}", units.0),
        _ => format!("{big}{} {small:0width$}{}", units.0, units.1),
    }
}

/// A statement's time (latency): `0.42 ms`, `12.5 ms`, `300 ms`, then [`human_duration`]
/// from a second up; `-` for a value that is no time.
pub fn human_latency(secs: f64) -> String {
    let ms = secs * 1000.0;
    if !ms.is_finite() || ms < 0.0 {
        "-".into()
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        human_duration(secs)
    }
}

/// [`human_duration`] of a [`std::time::Duration`].
pub fn human_duration_of(d: std::time::Duration) -> String {
    human_duration(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 10), "3.0 KiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }

    #[test]
    fn latencies_in_milliseconds_below_a_second() {
        assert_eq!(human_latency(0.00042), "0.42 ms");
        assert_eq!(human_latency(0.0125), "12.5 ms");
        assert_eq!(human_latency(0.3), "300 ms");
        assert_eq!(human_latency(1186.0), "19m 46s");
        assert_eq!(human_latency(f64::NAN), "-");
    }

    #[test]
    fn durations_in_one_format() {
        for (secs, text) in [
            (0.0, "0s"),
            (0.5, "0.5s"),
            (0.04, "0s"),
            (3.0, "3s"),
            (9.94, "9.9s"),
            (9.96, "10s"),
            (42.4, "42s"),
            (59.6, "1m"),
            (185.0, "3m 05s"),
            (300.0, "5m"),
            (3600.0, "1h"),
            (3725.0, "1h 02m"),
            (7500.0, "2h 05m"),
            (86400.0, "1d"),
            (187_200.0, "2d 4h"),
            (7.0 * 86400.0, "7d"),
            (-5.0, "0s"),
            (f64::NAN, "0s"),
        ] {
            assert_eq!(human_duration(secs), text, "{secs}");
        }
        assert_eq!(
            human_duration_of(std::time::Duration::from_millis(500)),
            "0.5s"
        );
    }
}
