//! The `dbagent` binary: the command line and the terminal. Everything else lives in the
//! library (`src/lib.rs`); the library cannot reach this layer.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
