//! Extracting a backup: each stored tar archive is decompressed and unpacked in one pass while
//! its SHA-256 and size are checked against manifest.json. Every member is checked before it
//! is written: absolute paths, `..` components, links pointing outside the destination and
//! special files are refused (safety invariant 4), and the tar crate's own check that a
//! member's parent directory resolves inside the destination stops writes through symlinks.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::backup::manifest::BackupFile;
use crate::repo::{Compression, compress};

/// Why extraction stopped. The caller removes what was written.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(
        "backup file {file} has a member `{member}` that would land outside {dest} ({why}); refusing the whole backup: it was not made by pg_basebackup, or it was tampered with"
    )]
    Outside {
        file: String,
        member: String,
        dest: PathBuf,
        why: String,
    },
    #[error(
        "backup file {file} is damaged: {detail}; verify it with `dbagent backups verify`, and restore another backup with --backup"
    )]
    Damaged { file: String, detail: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
}

/// Hashes and counts every byte read through it.
struct HashingReader<R> {
    inner: R,
    state: Arc<Mutex<(Sha256, u64)>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut s) = self.state.lock() {
            s.0.update(&buf[..n]);
            s.1 += n as u64;
        }
        Ok(n)
    }
}

/// Checks that `path` (a member path or hard link target) stays inside its destination.
pub(crate) fn check_relative(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("empty path".into());
    }
    for c in path.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("it contains `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("it is absolute".into()),
        }
    }
    Ok(())
}

/// Checks that a symlink at `member` pointing to `target` resolves inside the destination
/// (lexically; the link's own directory is the base).
fn check_symlink(member: &Path, target: &Path) -> Result<(), String> {
    if target.is_absolute() {
        return Err(format!(
            "a symlink to the absolute path {}",
            target.display()
        ));
    }
    let mut depth: i64 = member.parent().map_or(0, |p| {
        p.components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count() as i64
    });
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("a symlink to an absolute path".into());
            }
        }
        if depth < 0 {
            return Err(format!("a symlink to {} escapes it", target.display()));
        }
    }
    Ok(())
}

/// Whether `read` bytes hashing to `hasher` are stored file `file` as manifest.json records
/// it; the error says how they differ.
pub(crate) fn check_stored(file: &BackupFile, read: u64, hasher: Sha256) -> Result<(), String> {
    let sha = hex::encode(hasher.finalize());
    if read != file.stored_size {
        return Err(format!(
            "{read} bytes read, manifest.json says {}",
            file.stored_size
        ));
    }
    if sha != file.sha256 {
        return Err(format!(
            "SHA-256 {sha} differs from manifest.json's {}",
            file.sha256
        ));
    }
    Ok(())
}

/// Remembers the first error reading the archive (a frame that does not decompress, a failed
/// checksum), so that a failure surfacing while a member is written is reported as the
/// damaged archive it is, not as a write error on the member.
pub(crate) struct Watched<R> {
    pub(crate) inner: R,
    pub(crate) failed: std::rc::Rc<std::cell::RefCell<Option<String>>>,
}

impl<R> Watched<R> {
    fn note<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r
            && let Ok(mut failed) = self.failed.try_borrow_mut()
            && failed.is_none()
        {
            *failed = Some(e.to_string());
        }
        r
    }
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        self.note(r)
    }
}

impl<R: io::Seek> io::Seek for Watched<R> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let r = self.inner.seek(to);
        self.note(r)
    }
}

/// The first read error `failed` remembers, as the detail of a damaged archive.
pub(crate) fn read_failure(
    failed: &std::rc::Rc<std::cell::RefCell<Option<String>>>,
) -> Option<String> {
    failed
        .try_borrow()
        .ok()
        .and_then(|f| f.clone())
        .map(|e| format!("it does not decompress: {e}"))
}

/// What one archive extraction did.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub file: String,
    pub members: u64,
    pub stored_bytes: u64,
}

/// Extracts the stored archive that `raw` reads (described by `file` in the manifest) into
/// `dest`, verifying its SHA-256 and stored size. `dest` must exist.
pub fn extract_archive(
    raw: impl Read,
    file: &BackupFile,
    compression: Compression,
    dest: &Path,
) -> Result<Extracted, ExtractError> {
    let damaged = |detail: String| ExtractError::Damaged {
        file: file.name.clone(),
        detail,
    };
    let state = Arc::new(Mutex::new((Sha256::new(), 0u64)));
    let hashing = HashingReader {
        inner: raw,
        state: Arc::clone(&state),
    };
    let decoder = compress::decoder(compression, io::BufReader::with_capacity(1 << 20, hashing))
        .map_err(|e| damaged(format!("cannot start decompressing: {e}")))?;
    let failed = std::rc::Rc::new(std::cell::RefCell::new(None));
    let mut archive = tar::Archive::new(Watched {
        inner: decoder,
        failed: std::rc::Rc::clone(&failed),
    });
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(false);
    archive.set_unpack_xattrs(false);
    let outside = |member: &Path, why: String| ExtractError::Outside {
        file: file.name.clone(),
        member: member.display().to_string(),
        dest: dest.to_path_buf(),
        why,
    };
    let mut members = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| damaged(format!("not a readable tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged(format!("cannot read a tar member: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| damaged(format!("bad member name: {e}")))?
            .into_owned();
        check_relative(&path).map_err(|why| outside(&path, why))?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Directory | tar::EntryType::GNUSparse => {}
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| damaged(format!("bad link name: {e}")))?
                    .ok_or_else(|| outside(&path, "a symlink without a target".into()))?
                    .into_owned();
                check_symlink(&path, &target).map_err(|why| outside(&path, why))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| damaged(format!("bad link name: {e}")))?
                    .ok_or_else(|| outside(&path, "a hard link without a target".into()))?
                    .into_owned();
                check_relative(&target)
                    .map_err(|why| outside(&path, format!("a hard link whose target {why}")))?;
            }
            // PAX and GNU long-name headers are consumed by the tar crate itself.
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => continue,
            other => {
                return Err(outside(
                    &path,
                    format!("a special file ({other:?}), which pg_basebackup never writes"),
                ));
            }
        }
        let unpacked = entry.unpack_in(dest).map_err(|e| {
            if let Some(detail) = read_failure(&failed) {
                damaged(detail)
            } else if e.kind() == io::ErrorKind::InvalidData || e.to_string().contains("outside") {
                outside(&path, e.to_string())
            } else {
                ExtractError::Io {
                    path: dest.join(&path),
                    action: "write",
                    source: e,
                }
            }
        })?;
        if !unpacked {
            return Err(outside(&path, "the tar crate refused it".into()));
        }
        members += 1;
    }
    // Read whatever the tar reader left (end-of-archive blocks, the compression trailer), so
    // the checksum covers the whole stored file.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())
        .map_err(|e| damaged(format!("the end of the file does not decompress: {e}")))?;
    drop(rest);
    let (hasher, read) = {
        let mut guard = state
            .lock()
            .map_err(|_| damaged("checksum state poisoned".into()))?;
        let taken = std::mem::take(&mut *guard);
        (taken.0, taken.1)
    };
    check_stored(file, read, hasher).map_err(damaged)?;
    Ok(Extracted {
        file: file.name.clone(),
        members,
        stored_bytes: read,
    })
}

/// Rewrites `tablespace_map` (`<oid> <path>` per line) with the new locations.
pub fn rewrite_tablespace_map(data: &Path, locations: &[(u32, PathBuf)]) -> io::Result<()> {
    let map = data.join("tablespace_map");
    let text = match std::fs::read_to_string(&map) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut out = String::new();
    for line in text.lines() {
        let oid = line.split(' ').next().and_then(|o| o.parse::<u32>().ok());
        match oid.and_then(|o| locations.iter().find(|(x, _)| *x == o)) {
            Some((oid, path)) => out.push_str(&format!("{oid} {}\n", path.display())),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    std::fs::write(&map, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_and_links_must_stay_inside() {
        assert!(check_relative(Path::new("base/1/1234")).is_ok());
        assert!(check_relative(Path::new("./PG_VERSION")).is_ok());
        assert!(check_relative(Path::new("../etc/passwd")).is_err());
        assert!(check_relative(Path::new("a/../../b")).is_err());
        assert!(check_relative(Path::new("/etc/passwd")).is_err());
        assert!(check_symlink(Path::new("a/b/link"), Path::new("../c")).is_ok());
        assert!(check_symlink(Path::new("a/link"), Path::new("../../c")).is_err());
        assert!(check_symlink(Path::new("link"), Path::new("/tmp")).is_err());
        assert!(check_symlink(Path::new("link"), Path::new("..")).is_err());
    }
}
