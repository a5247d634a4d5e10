//! The `dbagent` binary: everything lives in the library; this only hands over the exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    dbagent::cli::main()
}
