//! The repository on a local (posix) directory: the layout in [`super`], and every
//! durability rule of writing it (see [`super::durable`]): a hidden temp name in the target
//! directory, fsync, link to the final name (create-if-absent) or rename (replace), directory
//! fsync, the owner of the directory when running as root, and the cleanup of what killed
//! writers left.
//!
//! May use: `std`, `nix`, [`super::durable`], [`super::lock`], [`super::storage`].

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::RepoError;
use super::durable;
use super::lock::RepoLock;
use super::storage::{
    Access, BackupWriter, Created, Key, Kind, Leftover, LockKind, Meta, ObjectWriter, Storage,
    StorageLock,
};

/// A backup directory being written (`backups/.partial-<ID>`) and one being removed
/// (`backups/.expired-<ID>`): renamed into place or away, so a backup appears and disappears
/// at once.
pub const PARTIAL_PREFIX: &str = ".partial-";
pub const EXPIRED_PREFIX: &str = ".expired-";

/// A repository in a local directory (which may not exist yet).
#[derive(Debug, Clone)]
pub struct PosixStorage {
    root: PathBuf,
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> RepoError + 'a {
    move |source| RepoError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Whether a stored WAL file name lives in a segment directory (`wal/<TLI+LOG>/`): every
/// name that starts with a 24-digit segment name; history files live at the top.
pub(crate) fn wal_subdir(name: &str) -> Option<&str> {
    let head = name.get(..24)?;
    head.bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then(|| &name[..16])
}

impl PosixStorage {
    pub fn new(root: impl Into<PathBuf>) -> PosixStorage {
        PosixStorage { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn kind_dir(&self, kind: Kind) -> PathBuf {
        match kind {
            Kind::RepoInfo => self.root.clone(),
            Kind::Backup => self.root.join("backups"),
            Kind::Wal => self.root.join("wal"),
            Kind::Timeline => self.root.join("timelines"),
            Kind::RestorePoint => self.root.join("restore-points"),
        }
    }

    /// The file that holds `key`.
    pub fn path(&self, key: &Key) -> PathBuf {
        match key.kind {
            Kind::RepoInfo => self.root.join("repo.json"),
            Kind::Wal => match wal_subdir(&key.name) {
                Some(dir) => self.kind_dir(Kind::Wal).join(dir).join(&key.name),
                None => self.kind_dir(Kind::Wal).join(&key.name),
            },
            kind => self.kind_dir(kind).join(&key.name),
        }
    }

    /// Refuses a key whose name would leave its place in the layout (a `..`, an empty or
    /// hidden component: a damaged manifest naming `../../etc/passwd`).
    fn check_key(&self, key: &Key) -> Result<(), RepoError> {
        let parts = if key.kind == Kind::Backup { 2 } else { 1 };
        let ok = match key.kind {
            Kind::RepoInfo => true,
            _ => {
                let components: Vec<&str> = key.name.split('/').collect();
                components.len() == parts
                    && components
                        .iter()
                        .all(|c| !c.is_empty() && !c.starts_with('.'))
            }
        };
        if ok {
            Ok(())
        } else {
            Err(RepoError::Corrupt {
                path: self.path(key),
                detail: format!("`{}` is not the name of a repository object", key.name),
            })
        }
    }

    /// The directory holding `key` and its file name there.
    fn split(&self, key: &Key) -> (PathBuf, String) {
        let path = self.path(key);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = path
            .parent()
            .map_or_else(|| self.root.clone(), Path::to_path_buf);
        (dir, name)
    }

    fn meta(&self, key: Key, path: &Path) -> Result<Option<Meta>, RepoError> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {
                use std::os::unix::fs::MetadataExt;
                Ok(Some(Meta {
                    key,
                    size: m.len(),
                    modified: m.modified().map_err(io_err(path, "stat"))?,
                    version: format!(
                        "{}.{}.{}",
                        m.ino(),
                        m.len(),
                        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
                    ),
                }))
            }
            Ok(_) => Err(RepoError::Io {
                path: path.to_path_buf(),
                action: "read",
                source: io::Error::other("not a file"),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path, "stat")(e)),
        }
    }

    /// The visible entries of `dir` (names not starting with `.`), with whether each is a
    /// directory; none when `dir` does not exist.
    fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, RepoError> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(dir, "list")(e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(io_err(dir, "list"))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let is_dir = entry
                .file_type()
                .map_err(io_err(&entry.path(), "stat"))?
                .is_dir();
            out.push((name.to_string(), entry.path(), is_dir));
        }
        Ok(out)
    }

    fn list_files(
        &self,
        out: &mut Vec<Meta>,
        kind: Kind,
        dir: &Path,
        name_prefix: &str,
        prefix: &str,
    ) -> Result<(), RepoError> {
        for (name, path, is_dir) in Self::entries(dir)? {
            let full = format!("{name_prefix}{name}");
            if is_dir || !full.starts_with(prefix) {
                continue;
            }
            let key = Key { kind, name: full };
            // A file removed meanwhile (expire) is simply not listed.
            if let Some(m) = self.meta(key, &path)? {
                out.push(m);
            }
        }
        Ok(())
    }
}

/// Writes into a file that is still open (`Some`); after its commit (`None`) writing fails.
fn write_open<W: Write>(file: &mut Option<W>, buf: &[u8]) -> io::Result<usize> {
    match file {
        Some(f) => f.write(buf),
        None => Err(io::Error::other("write after commit")),
    }
}

/// Flushes a file that is still open; after its commit there is nothing to flush.
fn flush_open<W: Write>(file: &mut Option<W>) -> io::Result<()> {
    file.as_mut().map_or(Ok(()), Write::flush)
}

/// A posix object being written: a hidden temp file beside its final name.
struct PosixWriter {
    file: Option<File>,
    tmp: PathBuf,
    dir: PathBuf,
    name: String,
}

impl Write for PosixWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_open(&mut self.file, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        flush_open(&mut self.file)
    }
}

impl ObjectWriter for PosixWriter {
    fn commit(mut self: Box<Self>) -> Result<Created, RepoError> {
        let final_path = self.dir.join(&self.name);
        let file = self.file.take();
        let result = (|| {
            let mut file = file.ok_or_else(|| io::Error::other("committed twice"))?;
            file.flush()?;
            file.sync_all()?;
            drop(file);
            durable::inherit_owner(&self.tmp, &self.dir)?;
            match std::fs::hard_link(&self.tmp, &final_path) {
                Ok(()) => Ok(Created::Created),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Created::AlreadyExists),
                Err(e) => Err(e),
            }
        })();
        let _ = std::fs::remove_file(&self.tmp);
        let created = result.map_err(io_err(&final_path, "write"))?;
        durable::sync_dir(&self.dir).map_err(io_err(&final_path, "write"))?;
        Ok(created)
    }
}

impl Drop for PosixWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A backup being written into `backups/.partial-<ID>`, renamed to `backups/<ID>` when it is
/// published (then manifest.json is written, last).
struct PosixBackup {
    backups: PathBuf,
    id: String,
    work: PathBuf,
    published: std::sync::atomic::AtomicBool,
}

/// One file of a backup being written: written in place in the work directory (which is
/// invisible as a whole), fsynced on commit.
struct PosixBackupFile {
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
}

impl Write for PosixBackupFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_open(&mut self.file, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        flush_open(&mut self.file)
    }
}

impl ObjectWriter for PosixBackupFile {
    fn commit(mut self: Box<Self>) -> Result<Created, RepoError> {
        let Some(file) = self.file.take() else {
            return Ok(Created::AlreadyExists);
        };
        let result = file
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
            .and_then(|f| f.sync_all());
        if let Err(e) = result {
            let _ = std::fs::remove_file(&self.path);
            return Err(io_err(&self.path, "write")(e));
        }
        Ok(Created::Created)
    }
}

impl Drop for PosixBackupFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl BackupWriter for PosixBackup {
    fn location(&self) -> PathBuf {
        self.work.clone()
    }

    fn scratch(&self) -> &Path {
        &self.work
    }

    fn file(&self, name: &str) -> Result<Box<dyn ObjectWriter>, RepoError> {
        let path = self.work.join(name);
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(RepoError::Corrupt {
                path,
                detail: format!("`{name}` is not the name of a file of a backup"),
            });
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path, "create"))?;
        durable::inherit_owner(&path, &self.work).map_err(io_err(&path, "chown"))?;
        Ok(Box::new(PosixBackupFile {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            path,
        }))
    }

    fn discard_files(&self) -> Result<(), RepoError> {
        for entry in std::fs::read_dir(&self.work).map_err(io_err(&self.work, "list"))? {
            let path = entry.map_err(io_err(&self.work, "list"))?.path();
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }

    fn publish(&self, manifest: &[u8]) -> Result<(), RepoError> {
        use std::sync::atomic::Ordering;
        // Publish: the directory under its real name, then manifest.json last.
        durable::sync_dir(&self.work).map_err(io_err(&self.work, "fsync"))?;
        let final_dir = self.backups.join(&self.id);
        std::fs::rename(&self.work, &final_dir)
            .map_err(io_err(&final_dir, "rename the backup into"))?;
        self.published.store(true, Ordering::SeqCst);
        durable::sync_dir(&self.backups).map_err(io_err(&self.backups, "fsync"))?;
        let result = durable::create_new(&final_dir, "manifest.json", |f| f.write_all(manifest));
        if let Err(e) = result {
            // Without its manifest the directory is not a backup; do not leave it behind.
            let _ = std::fs::remove_dir_all(&final_dir);
            return Err(io_err(&final_dir.join("manifest.json"), "write")(e));
        }
        Ok(())
    }
}

impl Drop for PosixBackup {
    fn drop(&mut self) {
        if !self.published.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }
}

impl Storage for PosixStorage {
    fn backup_writer(&self, id: &str) -> Result<Box<dyn BackupWriter>, RepoError> {
        self.check_key(&Key::backup(id, "manifest.json"))?;
        let backups = self.kind_dir(Kind::Backup);
        durable::create_dir_all_durable(&backups).map_err(io_err(&backups, "create"))?;
        let work = backups.join(format!("{PARTIAL_PREFIX}{id}"));
        let writer = PosixBackup {
            backups,
            id: id.to_string(),
            work,
            published: false.into(),
        };
        std::fs::create_dir(&writer.work).map_err(io_err(&writer.work, "create"))?;
        Ok(Box::new(writer))
    }

    fn backup_id_taken(&self, id: &str) -> Result<bool, RepoError> {
        let backups = self.kind_dir(Kind::Backup);
        Ok(backups.join(id).exists() || backups.join(format!("{PARTIAL_PREFIX}{id}")).exists())
    }

    fn remove_interrupted_backups(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.kind_dir(Kind::Backup)) else {
            return removed;
        };
        for e in entries.flatten() {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(PARTIAL_PREFIX))
            {
                let _ = std::fs::remove_dir_all(e.path());
                removed.push(e.path());
            }
        }
        removed
    }

    fn location(&self) -> PathBuf {
        self.root.clone()
    }

    fn identity(&self) -> String {
        std::fs::canonicalize(&self.root)
            .unwrap_or_else(|_| self.root.clone())
            .display()
            .to_string()
    }

    fn locate(&self, key: &Key) -> PathBuf {
        self.path(key)
    }

    fn locate_kind(&self, kind: Kind) -> PathBuf {
        self.kind_dir(kind)
    }

    fn check_reachable(&self) -> Result<(), RepoError> {
        // A root that exists but cannot be listed is unreadable, not empty.
        if let Err(e) = std::fs::metadata(&self.root)
            && e.kind() != io::ErrorKind::NotFound
        {
            return Err(io_err(&self.root, "read the repository")(e));
        }
        if self.root.is_dir()
            && let Err(e) = std::fs::read_dir(&self.root)
        {
            return Err(io_err(&self.root, "read the repository")(e));
        }
        Ok(())
    }

    fn check_present(&self) -> Result<(), String> {
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(format!(
                "repository {} is not a directory",
                self.root.display()
            )),
            Err(e) => Err(format!(
                "cannot read the repository {}: {e}; is it mounted and readable by this user?",
                self.root.display()
            )),
        }
    }

    fn check_access(&self) -> Access {
        let path = &self.root;
        let user = current_user();
        let problem = |detail: String, fix: String| Access::Problem { detail, fix };
        if path.exists() {
            if !path.is_dir() {
                return problem(
                    format!(
                        "repository path {} exists but is not a directory",
                        path.display()
                    ),
                    "point repository.path at a directory".into(),
                );
            }
            return match probe_write(path) {
                Ok(()) => Access::Ok(format!(
                    "repository {} exists and is writable",
                    path.display()
                )),
                Err(e) => problem(
                    format!(
                        "repository {} is not writable by {user}: {e}",
                        path.display()
                    ),
                    format!("chown/chmod it so {user} and the PostgreSQL OS user can write to it"),
                ),
            };
        }
        let Some(ancestor) = path.ancestors().skip(1).find(|p| p.exists()) else {
            return problem(
                format!(
                    "repository path {} has no existing parent directory",
                    path.display()
                ),
                "use an absolute repository.path".into(),
            );
        };
        match probe_write(ancestor) {
            Ok(()) => Access::Ok(format!(
                "repository {} does not exist yet; it will be created by the first backup or wal-push",
                path.display()
            )),
            Err(e) => problem(
                format!(
                    "repository {} does not exist and cannot be created: {} is not writable by {user} ({e})",
                    path.display(),
                    ancestor.display()
                ),
                format!(
                    "mkdir -p {} and chown it to the user dbagent and PostgreSQL run as",
                    path.display()
                ),
            ),
        }
    }

    fn confirm_absent(&self, key: &Key) -> Result<(), String> {
        let (dir, _) = self.split(key);
        match std::fs::read_dir(&dir) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot read {}: {e}", dir.display())),
        }
    }

    fn get(&self, key: &Key) -> Result<Option<Box<dyn Read + Send>>, RepoError> {
        self.check_key(key)?;
        let path = self.path(key);
        match File::open(&path) {
            Ok(f) => Ok(Some(Box::new(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, "read")(e)),
        }
    }

    fn read(&self, key: &Key) -> Result<Option<Vec<u8>>, RepoError> {
        self.check_key(key)?;
        let path = self.path(key);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, "read")(e)),
        }
    }

    fn stat(&self, key: &Key) -> Result<Option<Meta>, RepoError> {
        self.check_key(key)?;
        self.meta(key.clone(), &self.path(key))
    }

    fn writer(&self, key: &Key) -> Result<Box<dyn ObjectWriter>, RepoError> {
        self.check_key(key)?;
        let (dir, name) = self.split(key);
        durable::create_dir_all_durable(&dir).map_err(io_err(&dir, "create"))?;
        let tmp = durable::temp_path(&dir, &name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&self.path(key), "write"))?;
        Ok(Box::new(PosixWriter {
            file: Some(file),
            tmp,
            dir,
            name,
        }))
    }

    fn put(&self, key: &Key, bytes: &[u8]) -> Result<(), RepoError> {
        self.check_key(key)?;
        let (dir, name) = self.split(key);
        durable::create_dir_all_durable(&dir).map_err(io_err(&dir, "create"))?;
        durable::replace(&dir, &name, bytes).map_err(io_err(&self.path(key), "update"))
    }

    fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Meta>, RepoError> {
        let mut out = Vec::new();
        let top = self.kind_dir(kind);
        match kind {
            Kind::RepoInfo => {
                if let Some(m) = self.stat(&Key::repo_info())? {
                    out.push(m);
                }
            }
            Kind::Wal => {
                self.list_files(&mut out, kind, &top, "", prefix)?;
                let head = &prefix[..prefix.len().min(16)];
                for (name, path, is_dir) in Self::entries(&top)? {
                    if is_dir && name.starts_with(head) {
                        self.list_files(&mut out, kind, &path, "", prefix)?;
                    }
                }
            }
            Kind::Backup => {
                let (id_prefix, whole_id) = match prefix.split_once('/') {
                    Some((id, _)) => (id, true),
                    None => (prefix, false),
                };
                for (id, path, is_dir) in Self::entries(&top)? {
                    let wanted = if whole_id {
                        id == id_prefix
                    } else {
                        id.starts_with(id_prefix)
                    };
                    if is_dir && wanted {
                        self.list_files(&mut out, kind, &path, &format!("{id}/"), prefix)?;
                    }
                }
            }
            Kind::Timeline | Kind::RestorePoint => {
                self.list_files(&mut out, kind, &top, "", prefix)?;
            }
        }
        out.sort_by(|a, b| a.key.name.cmp(&b.key.name));
        Ok(out)
    }

    fn delete(&self, keys: &[Key]) -> Result<(), RepoError> {
        let mut dirs = std::collections::BTreeSet::new();
        for key in keys {
            self.check_key(key)?;
            let path = self.path(key);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err(&path, "remove")(e));
                }
                _ => {}
            }
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_path_buf());
            }
        }
        let wal = self.kind_dir(Kind::Wal);
        for dir in dirs {
            // An emptied directory of old segments goes too; one still in use is not empty.
            if dir.parent() == Some(wal.as_path()) && std::fs::remove_dir(&dir).is_ok() {
                durable::sync_dir(&wal).map_err(io_err(&wal, "fsync"))?;
            } else {
                durable::sync_dir(&dir).map_err(io_err(&dir, "fsync"))?;
            }
        }
        Ok(())
    }

    fn delete_backup(&self, id: &str) -> Result<(), RepoError> {
        self.check_key(&Key::backup(id, "manifest.json"))?;
        let backups = self.kind_dir(Kind::Backup);
        let dir = backups.join(id);
        let target = backups.join(format!("{EXPIRED_PREFIX}{id}"));
        remove_tree(&target)?;
        std::fs::rename(&dir, &target).map_err(io_err(&dir, "rename (to expire it)"))?;
        durable::sync_dir(&backups).map_err(io_err(&backups, "fsync"))?;
        remove_tree(&target)
    }

    fn leftovers(&self) -> Result<Vec<Leftover>, RepoError> {
        let mut out = Vec::new();
        // Directories under backups/ that are not complete backups: `.partial-*` (an
        // interrupted backup), `.expired-*` (an interrupted expire) and directories without
        // manifest.json.
        let backups = self.kind_dir(Kind::Backup);
        let mut dirs = Vec::new();
        for entry in list_all(&backups)? {
            if !entry_is_dir(&entry)? {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            let leftover = if name.starts_with('.') {
                name.starts_with(PARTIAL_PREFIX) || name.starts_with(EXPIRED_PREFIX)
            } else {
                !path.join("manifest.json").exists()
            };
            if leftover {
                dirs.push(path);
            }
        }
        dirs.sort();
        out.extend(dirs.into_iter().map(|location| Leftover {
            location,
            written: None,
        }));
        // Temp files (`.NAME.tmp`) of WAL writes in progress or interrupted.
        let mut temps = Vec::new();
        let wal = self.kind_dir(Kind::Wal);
        let mut classify = |entry: &std::fs::DirEntry| {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { return };
            if name.starts_with('.') && name.ends_with(".tmp") {
                temps.push(entry.path());
            }
        };
        for entry in list_all(&wal)? {
            if entry_is_dir(&entry)? {
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                for file in list_all(&entry.path())? {
                    if !entry_is_dir(&file)? {
                        classify(&file);
                    }
                }
            } else {
                classify(&entry);
            }
        }
        for path in temps {
            let modified = match std::fs::metadata(&path).and_then(|m| m.modified()) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path, "stat")(e)),
            };
            out.push(Leftover {
                location: path,
                written: Some(modified),
            });
        }
        Ok(out)
    }

    fn remove_leftover(&self, leftover: &Leftover) -> Result<(), RepoError> {
        let path = &leftover.location;
        if !path.starts_with(&self.root) {
            return Err(RepoError::Corrupt {
                path: path.clone(),
                detail: "not in this repository; nothing was removed".into(),
            });
        }
        let result = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(path, "remove leftover")(e)),
        }
    }

    fn remove_stale_writes(&self, keys: &[Key]) -> Vec<PathBuf> {
        let mut by_dir: std::collections::BTreeMap<PathBuf, Vec<String>> = Default::default();
        for key in keys {
            let (dir, name) = self.split(key);
            by_dir.entry(dir).or_default().push(name);
        }
        let mut removed = Vec::new();
        for (dir, names) in by_dir {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            removed.extend(durable::remove_stale_temps(&dir, &names));
        }
        removed
    }

    fn ensure_durable(&self, key: &Key) -> Result<(), RepoError> {
        let (dir, _) = self.split(key);
        durable::sync_dir(&dir).map_err(io_err(&dir, "fsync"))
    }

    fn lock(&self, kind: LockKind, what: &str, wait: Duration) -> Result<StorageLock, RepoError> {
        let lock = match kind {
            LockKind::Run => {
                durable::create_dir_all_durable(&self.root)
                    .map_err(io_err(&self.root, "create the repository"))?;
                RepoLock::acquire(&self.root.join("lock"), what, wait)?
            }
            LockKind::InUse => RepoLock::acquire_shared(&self.root.join("lock.use"), what, wait)?,
            LockKind::Delete => RepoLock::acquire(&self.root.join("lock.use"), what, wait)?,
        };
        Ok(StorageLock::new(lock))
    }
}

/// Creates and removes a probe file: the only reliable test of writability (ACLs, read-only
/// mounts, full disks).
fn probe_write(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".dbagent-check-{}", std::process::id()));
    let result = std::fs::write(&probe, b"probe");
    let _ = std::fs::remove_file(&probe);
    result
}

fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {}", nix::unistd::geteuid()))
}

fn list_all(dir: &Path) -> Result<Vec<std::fs::DirEntry>, RepoError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_err(dir, "list")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(dir, "list")(e)),
    }
}

fn entry_is_dir(entry: &std::fs::DirEntry) -> Result<bool, RepoError> {
    entry
        .file_type()
        .map(|t| t.is_dir())
        .map_err(io_err(&entry.path(), "stat"))
}

fn remove_tree(path: &Path) -> Result<(), RepoError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path, "remove")(e)),
        _ => Ok(()),
    }
}

/// When `modified` is old enough at `now` for a temp file to be another writer's no more.
pub fn old_enough(modified: SystemTime, now: SystemTime, min_age: Duration) -> bool {
    now.duration_since(modified).is_ok_and(|age| age >= min_age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::storage::contract;

    #[test]
    fn posix_storage_keeps_the_storage_contract() {
        let dirs = std::sync::Mutex::new(Vec::new());
        contract::all(&|| {
            let d = tempfile::tempdir().unwrap();
            let s = PosixStorage::new(d.path().join("repo"));
            dirs.lock().unwrap().push(d);
            Box::new(s)
        });
    }

    #[test]
    fn posix_layout_is_the_documented_one() {
        let s = PosixStorage::new("/r");
        let p = |k: Key| s.path(&k).display().to_string();
        assert_eq!(p(Key::repo_info()), "/r/repo.json");
        assert_eq!(
            p(Key::backup("B", "manifest.json")),
            "/r/backups/B/manifest.json"
        );
        assert_eq!(
            p(Key::wal("000000010000000A000000FF.partial.zst")),
            "/r/wal/000000010000000A/000000010000000A000000FF.partial.zst"
        );
        assert_eq!(
            p(Key::wal("000000010000000000000002.00000028.backup")),
            "/r/wal/0000000100000000/000000010000000000000002.00000028.backup"
        );
        assert_eq!(
            p(Key::wal("00000002.history.gz")),
            "/r/wal/00000002.history.gz"
        );
        assert_eq!(
            p(Key::timeline("00000002.json")),
            "/r/timelines/00000002.json"
        );
        assert_eq!(p(Key::restore_point("p.json")), "/r/restore-points/p.json");
    }

    #[test]
    fn names_that_leave_the_layout_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let s = PosixStorage::new(d.path().join("repo"));
        for key in [
            Key::backup("B", "../../etc/passwd"),
            Key::backup("..", "x"),
            Key::backup("B", ".hidden"),
            Key::wal("../x"),
            Key::restore_point(""),
        ] {
            let err = s.read(&key).unwrap_err();
            assert!(matches!(err, RepoError::Corrupt { .. }), "{key:?}: {err}");
        }
        assert!(s.delete_backup("../x").is_err());
    }

    #[test]
    fn temp_files_and_hidden_directories_are_not_listed() {
        let d = tempfile::tempdir().unwrap();
        let s = PosixStorage::new(d.path());
        let seg = d.path().join("wal/0000000100000000");
        std::fs::create_dir_all(&seg).unwrap();
        std::fs::write(seg.join(".000000010000000000000001.zst.1.tmp"), b"x").unwrap();
        std::fs::write(seg.join("000000010000000000000002.zst"), b"x").unwrap();
        std::fs::create_dir_all(d.path().join("backups/.partial-B")).unwrap();
        std::fs::write(d.path().join("backups/.partial-B/manifest.json"), b"{}").unwrap();
        let wal: Vec<String> = s
            .list(Kind::Wal, "")
            .unwrap()
            .into_iter()
            .map(|m| m.key.name)
            .collect();
        assert_eq!(wal, ["000000010000000000000002.zst"]);
        assert!(s.list(Kind::Backup, "").unwrap().is_empty());
        let leftovers: Vec<PathBuf> = s
            .leftovers()
            .unwrap()
            .into_iter()
            .map(|l| l.location)
            .collect();
        assert_eq!(
            leftovers,
            [
                d.path().join("backups/.partial-B"),
                seg.join(".000000010000000000000001.zst.1.tmp")
            ]
        );
    }
}
