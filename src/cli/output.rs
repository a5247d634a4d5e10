//! Command output on stdout that reports a failed write instead of panicking.
//!
//! Rust ignores SIGPIPE, so `println!` into a closed pipe (`dbagent backups list | head -1`)
//! panics. Every command prints through [`out!`] and [`outln!`], which return a
//! [`StdoutError`] to pass on with `?`; `cli::main` ends the command quietly with status 0
//! when the reader went away (a closed pipe is a success: the reader had what it wanted).
//!
//! Layer: the command line (binary); uses only the standard library.

use std::fmt;
use std::io::{self, Write};

/// A write to stdout failed. The I/O error is not a `source`: the message already says it.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to stdout: {0}")]
pub(crate) struct StdoutError(io::Error);

impl StdoutError {
    /// The reader of stdout went away (a closed pipe): the command ends quietly.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

/// Writes formatted text to stdout (what `print!` does, without the panic).
pub(crate) fn write(args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
    io::stdout().lock().write_fmt(args).map_err(StdoutError)
}

/// Writes formatted text and a newline to stdout (what `println!` does, without the panic).
pub(crate) fn line(args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(StdoutError)
}

/// Writes bytes to stdout as they are.
pub(crate) fn bytes(data: &[u8]) -> Result<(), StdoutError> {
    io::stdout().lock().write_all(data).map_err(StdoutError)
}

/// Flushes what is buffered (a last line without its newline), so that its failure is seen.
pub(crate) fn flush() -> Result<(), StdoutError> {
    io::stdout().lock().flush().map_err(StdoutError)
}

/// For commands whose exit code is their verdict (`check`, `wal verify`): a closed stdout
/// does not change it, any other write error is still one.
pub(crate) fn unless_closed(written: Result<(), StdoutError>) -> Result<(), StdoutError> {
    match written {
        Err(e) if e.is_closed() => Ok(()),
        other => other,
    }
}

/// `print!` that returns a [`StdoutError`] instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*))
    };
}

/// `println!` that returns a [`StdoutError`] instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))
    };
}
