//! One I/O error type that says what was done to which file: `cannot read /etc/x.pem: No such
//! file or directory (os error 2)`. Library modules wrap `std::io::Error`s with
//! [`IoContext::at`] instead of formatting ad hoc strings, so the path, the action and the
//! cause (its kind, for a caller that acts on NotFound) stay in the error.
//!
//! Layer: foundation. Uses: nothing of the crate. Used by: any module.

use std::io;
use std::path::{Path, PathBuf};

/// An I/O error on `path` while doing `action` (`read`, `write`, `create`, `list`, `remove`,
/// or a longer phrase such as `read email.ca_file`).
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct IoError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl IoError {
    pub fn new(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> IoError {
        IoError {
            action,
            path: path.into(),
            source,
        }
    }

    /// The kind of the underlying error (`NotFound`, `PermissionDenied`, ...).
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

/// `std::fs::read(&p).at("read", &p)?`.
pub trait IoContext<T> {
    fn at(self, action: &'static str, path: impl AsRef<Path>) -> Result<T, IoError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &'static str, path: impl AsRef<Path>) -> Result<T, IoError> {
        self.map_err(|source| IoError::new(action, path.as_ref(), source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_names_the_action_the_path_and_the_cause() {
        let e = std::fs::read("/nonexistent/x.pem")
            .at("read email.ca_file", "/nonexistent/x.pem")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(
            e.to_string()
                .starts_with("cannot read email.ca_file /nonexistent/x.pem: No such file"),
            "{e}"
        );
    }
}
