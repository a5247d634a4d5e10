//! `dbagent generate man|bash|zsh|fish`: the man page and shell completions, generated from the
//! same clap definition that parses the command line, so they cannot drift from it.

use std::process::ExitCode;

use clap::CommandFactory;

use super::{Cli, CmdResult, output};

#[derive(Debug, clap::Subcommand)]
pub enum GenerateCommand {
    /// The man page (roff) on stdout: `dbagent generate man > /usr/share/man/man1/dbagent.1`
    Man,
    /// bash completions: `dbagent generate bash > /etc/bash_completion.d/dbagent`
    Bash,
    /// zsh completions: `dbagent generate zsh > /usr/share/zsh/vendor-completions/_dbagent`
    Zsh,
    /// fish completions: `dbagent generate fish > ~/.config/fish/completions/dbagent.fish`
    Fish,
}

pub fn run(cmd: &GenerateCommand) -> CmdResult {
    let mut command = Cli::command();
    let mut out = Vec::new();
    let result = match cmd {
        GenerateCommand::Man => clap_mangen::Man::new(command).render(&mut out),
        GenerateCommand::Bash => {
            clap_complete::generate(
                clap_complete::Shell::Bash,
                &mut command,
                "dbagent",
                &mut out,
            );
            Ok(())
        }
        GenerateCommand::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut command, "dbagent", &mut out);
            Ok(())
        }
        GenerateCommand::Fish => {
            clap_complete::generate(
                clap_complete::Shell::Fish,
                &mut command,
                "dbagent",
                &mut out,
            );
            Ok(())
        }
    };
    result.map_err(|e| anyhow::anyhow!("cannot render the man page: {e}"))?;
    output::bytes(&out)?;
    Ok(ExitCode::SUCCESS)
}
