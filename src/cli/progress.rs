//! Progress bars on a terminal (`backup`, `wal verify`): one style, in the units of the rest of
//! the operator output (`units::human_bytes`, `units::human_duration`), and a line that fits
//! an 80-column terminal whatever the values: the bar itself (`{wide_bar}`) takes what the
//! other fields leave, and a test renders every template with its widest values.
//!
//! Layer: the top (binary). Uses: units.

use indicatif::{ProgressState, ProgressStyle};

use super::{human_bytes, human_duration};

/// `backup`: phase, bar, bytes streamed of the estimate, rate, time left.
pub(crate) const BACKUP: &str = "{msg:>15!} [{wide_bar}] {done}/{total} {rate} ETA {left}";

/// `wal verify`: bar, segments read of those needed, time left.
pub(crate) const WAL_VERIFY: &str = "reading WAL [{wide_bar}] {pos}/{len} segments, ETA {left}";

/// The style of a bar drawn with `template`, whose own keys are `{done}` and `{total}`
/// (bytes), `{rate}` (bytes per second) and `{left}` (the estimated time left).
pub(crate) fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("done", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&human_bytes(s.pos()));
        })
        .with_key("total", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&human_bytes(s.len().unwrap_or(0)));
        })
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}/s", human_bytes(s.per_sec() as u64));
        })
        .with_key("left", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&human_duration(s.eta().as_secs_f64()));
        })
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The widest text each placeholder can print (a bar reaches at least 10 columns).
    fn widest(key: &str) -> String {
        let bytes = human_bytes(1023 << 40).len().max("1023.9 TiB".len());
        // The widest durations: under a day `23h 59m`, beyond it `99d 23h`.
        let duration = ["23h 59m", "99d 23h", "9m 59s"]
            .iter()
            .map(|d| d.len())
            .max()
            .unwrap_or(0);
        match key {
            "wide_bar" => "=".repeat(10),
            "msg:>15!" => "m".repeat(15),
            "done" | "total" => "9".repeat(bytes),
            "rate" => "9".repeat(bytes + "/s".len()),
            "left" => "9".repeat(duration),
            // Segment counts: 16 MiB segments of a 100 TiB archive.
            "pos" | "len" => "9".repeat(7),
            other => panic!("no widest value for {{{other}}}"),
        }
    }

    fn render(template: &str) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').expect("closing brace") + open;
            out.push_str(&widest(&rest[open + 1..close]));
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn every_bar_fits_80_columns_with_its_widest_values() {
        for template in [BACKUP, WAL_VERIFY] {
            let line = render(template);
            assert!(line.len() <= 80, "{} columns: {line}", line.len());
        }
        // The units are the rest of the output's (binary, `MiB/s`).
        assert!(human_bytes(3 << 20).ends_with("MiB"));
    }

    /// indicatif draws the real bar with these keys (a template it cannot parse would fall
    /// back to its default bar without them).
    #[test]
    fn templates_parse() {
        for template in [BACKUP, WAL_VERIFY] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }
}
