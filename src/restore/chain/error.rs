//! What a chain restore's steps share, below both the run (mod.rs) and the applying
//! (apply.rs): its error, and how it creates directories.

use std::path::{Path, PathBuf};

use crate::restore::extract;

/// Why a chain could not be combined; the caller removes what was written to the target.
#[derive(Debug)]
pub enum ExecError {
    Extract(extract::ExtractError),
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    Failed(String),
}

pub(super) fn io_err<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> ExecError + 'a {
    move |source| ExecError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// A directory only its owner can enter (as the restore's other directories).
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
