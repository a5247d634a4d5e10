//! PostgreSQL's `backup_manifest` (format version 2) for a combined chain: what the members'
//! manifests say about their files (read), and the manifest of the combined data directory
//! (written the way `pg_combinebackup`'s write_manifest.c writes it: the newest member's
//! System-Identifier and WAL-Ranges, one entry per file with its size, modification time and
//! CRC32C checksum, and the SHA-256 Manifest-Checksum of everything before it).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// One file's entry in a member's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub size: u64,
    /// `CRC32C`, `SHA256`, ...; None when the manifest has no checksum for it.
    pub algorithm: Option<String>,
    pub checksum: Option<String>,
}

/// What dbagent needs from a member's `backup_manifest`.
#[derive(Debug, Clone, Default)]
pub struct PgManifest {
    pub system_identifier: Option<u64>,
    /// Path inside the data directory → entry.
    pub files: HashMap<PathBuf, FileEntry>,
    /// The WAL-Ranges entries, verbatim.
    pub wal_ranges: Vec<Value>,
}

impl PgManifest {
    /// Parses manifest text (`shown` names it in errors).
    pub fn parse(bytes: &[u8], shown: &str) -> Result<PgManifest, String> {
        let bad = |what: String| format!("{shown} is not a PostgreSQL backup manifest: {what}");
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let system_identifier = v.get("System-Identifier").and_then(Value::as_u64);
        let mut files = HashMap::new();
        for f in v
            .get("Files")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no Files list".into()))?
        {
            let path = if let Some(p) = f.get("Path").and_then(Value::as_str) {
                PathBuf::from(p)
            } else if let Some(h) = f.get("Encoded-Path").and_then(Value::as_str) {
                let raw = hex::decode(h).map_err(|e| bad(format!("Encoded-Path {h}: {e}")))?;
                PathBuf::from(OsStr::from_bytes(&raw))
            } else {
                return Err(bad(format!("a file entry without a path: {f}")));
            };
            let size = f
                .get("Size")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(format!("no Size for {}", path.display())))?;
            let text = |k: &str| f.get(k).and_then(Value::as_str).map(str::to_string);
            files.insert(
                path,
                FileEntry {
                    size,
                    algorithm: text("Checksum-Algorithm"),
                    checksum: text("Checksum"),
                },
            );
        }
        let wal_ranges = v
            .get("WAL-Ranges")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| bad("no WAL-Ranges".into()))?;
        Ok(PgManifest {
            system_identifier,
            files,
            wal_ranges,
        })
    }

    /// The CRC32C checksum (hex, as in the manifest) recorded for `path`, if any.
    pub fn crc32c(&self, path: &Path) -> Option<&str> {
        let e = self.files.get(path)?;
        (e.algorithm.as_deref() == Some("CRC32C"))
            .then_some(e.checksum.as_deref())
            .flatten()
    }
}

/// The manifest's hex form of a CRC32C (PostgreSQL stores the `uint32` in memory order, which
/// is little-endian here).
pub fn crc32c_hex(crc: u32) -> String {
    hex::encode(crc.to_le_bytes())
}

/// One entry of the combined manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutEntry {
    pub path: PathBuf,
    pub size: u64,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// CRC32C hex; None for files PostgreSQL lists without a checksum (under pg_wal).
    pub crc32c: Option<String>,
}

fn path_field(p: &Path) -> String {
    match p.to_str() {
        Some(s) => format!(
            "\"Path\": {}",
            serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
        ),
        None => format!(
            "\"Encoded-Path\": \"{}\"",
            hex::encode(p.as_os_str().as_bytes())
        ),
    }
}

fn modified(mtime: i64) -> String {
    jiff::Timestamp::from_second(mtime)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S GMT").to_string())
        .unwrap_or_else(|_| "1970-01-01 00:00:00 GMT".into())
}

/// The text of the combined manifest.
pub fn render(system_identifier: u64, entries: &[OutEntry], wal_ranges: &[Value]) -> String {
    let mut out = format!(
        "{{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n\"System-Identifier\": {system_identifier},\n\"Files\": ["
    );
    for (i, e) in entries.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str(&format!(
            "{{ {}, \"Size\": {}, \"Last-Modified\": \"{}\"",
            path_field(&e.path),
            e.size,
            modified(e.mtime)
        ));
        if let Some(c) = &e.crc32c {
            out.push_str(&format!(
                ", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"{c}\""
            ));
        }
        out.push_str(" }");
    }
    out.push_str("\n],\n\"WAL-Ranges\": [\n");
    for (i, r) in wal_ranges.iter().enumerate() {
        let s = |k: &str| {
            r.get(k)
                .and_then(Value::as_str)
                .unwrap_or("0/0")
                .to_string()
        };
        out.push_str(&format!(
            "{}{{ \"Timeline\": {}, \"Start-LSN\": \"{}\", \"End-LSN\": \"{}\" }}",
            if i == 0 { "" } else { ",\n" },
            r.get("Timeline").and_then(Value::as_u64).unwrap_or(0),
            s("Start-LSN"),
            s("End-LSN")
        ));
    }
    out.push_str("\n],\n");
    let sum = hex::encode(Sha256::digest(out.as_bytes()));
    out.push_str(&format!("\"Manifest-Checksum\": \"{sum}\"}}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_manifest_parses_back_and_its_checksum_covers_what_precedes_it() {
        let entries = vec![
            OutEntry {
                path: "backup_label".into(),
                size: 10,
                mtime: 1_764_979_200,
                crc32c: Some(crc32c_hex(0x1234_5678)),
            },
            OutEntry {
                path: "pg_wal/x\"y".into(),
                size: 0,
                mtime: 0,
                crc32c: None,
            },
        ];
        let ranges = vec![
            serde_json::json!({"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000120"}),
        ];
        let text = render(7_000_000_000_000_000_001, &entries, &ranges);
        let m = PgManifest::parse(text.as_bytes(), "combined").unwrap();
        assert_eq!(m.system_identifier, Some(7_000_000_000_000_000_001));
        assert_eq!(m.crc32c(Path::new("backup_label")), Some("78563412"));
        assert_eq!(m.files[Path::new("pg_wal/x\"y")].checksum, None);
        assert_eq!(m.wal_ranges, ranges);
        assert!(
            text.contains("\"Last-Modified\": \"2025-12-06 00:00:00 GMT\""),
            "{text}"
        );
        let at = text.find("\"Manifest-Checksum\"").unwrap();
        let sum = hex::encode(Sha256::digest(&text.as_bytes()[..at]));
        assert!(text.ends_with(&format!("\"Manifest-Checksum\": \"{sum}\"}}\n")));
    }
}
