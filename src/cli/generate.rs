//! `dbagent generate man|completions|bash|zsh|fish`: man pages and shell completions, generated
//! from the same clap definition that parses the command line, so they cannot drift from it.
//!
//! `generate man --dir DIR` writes dbagent.1 and one page per visible subcommand, named the way
//! dbagent.1 refers to them (dbagent-restore.1, dbagent-backups-list.1, ...), each with every
//! flag and its help; `generate completions --dir DIR` writes the three completion files under
//! the names their shells look for. Packaging (scripts/package-deb.sh) uses both.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{Roff, bold, roman};

use super::{Cli, CmdResult, output};

#[derive(Debug, clap::Subcommand)]
pub enum GenerateCommand {
    /// Man pages (roff): dbagent(1) on stdout, or with --dir every page, one per subcommand
    Man {
        /// Write dbagent.1 and one page per subcommand (dbagent-restore.1, dbagent-backups-list.1,
        /// ...) into this directory instead of printing dbagent.1 on stdout
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Write the bash, zsh and fish completions into a directory (dbagent.bash, _dbagent,
    /// dbagent.fish)
    Completions {
        /// The directory to write the three files into (created if missing)
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// bash completions: `dbagent generate bash > /etc/bash_completion.d/dbagent`
    Bash,
    /// zsh completions: `dbagent generate zsh > /usr/share/zsh/vendor-completions/_dbagent`
    Zsh,
    /// fish completions: `dbagent generate fish > ~/.config/fish/completions/dbagent.fish`
    Fish,
}

pub fn run(cmd: &GenerateCommand) -> CmdResult {
    match cmd {
        GenerateCommand::Man { dir: None } => {
            let pages = man_pages()?;
            let root = pages
                .first()
                .context("the command line definition has no commands")?;
            output::bytes(&root.1)?;
        }
        GenerateCommand::Man { dir: Some(dir) } => {
            create_dir(dir)?;
            let pages = man_pages()?;
            for (name, text) in &pages {
                let path = dir.join(name);
                fs::write(&path, text)
                    .with_context(|| format!("cannot write the man page {}", path.display()))?;
            }
            outln!("wrote {} man pages into {}", pages.len(), dir.display())?;
        }
        GenerateCommand::Completions { dir } => {
            create_dir(dir)?;
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                let path = clap_complete::generate_to(shell, &mut Cli::command(), "dbagent", dir)
                    .with_context(|| {
                    format!(
                        "cannot write the {shell} completions into {}",
                        dir.display()
                    )
                })?;
                outln!("wrote {}", path.display())?;
            }
        }
        GenerateCommand::Bash => completions(Shell::Bash)?,
        GenerateCommand::Zsh => completions(Shell::Zsh)?,
        GenerateCommand::Fish => completions(Shell::Fish)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create {}; give a directory you can write to with --dir",
            dir.display()
        )
    })
}

fn completions(shell: Shell) -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "dbagent", &mut out);
    output::bytes(&out)?;
    Ok(())
}

/// Every man page as (file name, roff text): dbagent.1 first, then one per visible subcommand
/// in definition order, depth first. Each page ends with a SEE ALSO section: dbagent.1 names
/// every other page, a subcommand's page names dbagent(1), its parent and its own subcommands.
pub(crate) fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut root = Cli::command().disable_help_subcommand(true);
    // Building sets the display names (dbagent-backups-list) the pages are named after.
    root.build();
    let mut commands = Vec::new();
    collect(&root, None, &mut commands);
    let all: Vec<String> = commands.iter().map(|(c, _)| page_name(c)).collect();
    commands
        .iter()
        .map(|(cmd, parent)| {
            let name = page_name(cmd);
            let mut text = Vec::new();
            clap_mangen::Man::new(cmd.clone())
                .render(&mut text)
                .with_context(|| format!("cannot render the man page {name}(1)"))?;
            let see_also: Vec<String> = if parent.is_none() {
                all.iter().skip(1).cloned().collect()
            } else {
                let mut names = vec!["dbagent".to_string()];
                if let Some(p) = parent
                    && p != "dbagent"
                {
                    names.push(p.clone());
                }
                names.extend(
                    cmd.get_subcommands()
                        .filter(|s| !s.is_hide_set())
                        .map(page_name),
                );
                names
            };
            text.extend_from_slice(see_also_section(&see_also).as_bytes());
            Ok((format!("{name}.1"), text))
        })
        .collect()
}

/// The visible commands under `cmd` (itself first), each with its parent's page name.
fn collect(
    cmd: &clap::Command,
    parent: Option<String>,
    out: &mut Vec<(clap::Command, Option<String>)>,
) {
    out.push((cmd.clone(), parent));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        collect(sub, Some(page_name(cmd)), out);
    }
}

fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string()
}

fn see_also_section(names: &[String]) -> String {
    let mut roff = Roff::default();
    roff.control("SH", ["SEE ALSO"]);
    // Page names are not hyphenated at line ends (dbagent-config-exam-ple).
    roff.control("nh", []);
    let mut line = Vec::new();
    for (i, name) in names.iter().enumerate() {
        line.push(bold(name.as_str()));
        let sep = if i + 1 == names.len() { "(1)" } else { "(1), " };
        line.push(roman(sep));
    }
    roff.text(line);
    roff.to_roff()
}
