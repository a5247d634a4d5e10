//! Running the dbagent binary under test: a scratch directory with a `dbagent.yml`, a clean
//! environment (no PG* variables or ~/.pgpass of the machine leak in), and the captured output.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch directory holding a dbagent configuration file.
pub struct Agent {
    dir: tempfile::TempDir,
    config: PathBuf,
    env: Vec<(String, String)>,
}

/// What one run of dbagent printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout and stderr together, for "appears nowhere" assertions.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The `--json` output.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The line of `check` output for one check, e.g. `line("archive_mode")`.
    pub fn check_line(&self, name: &str) -> String {
        self.stdout
            .lines()
            .skip(1)
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no `{name}` line in:\n{}", self.stdout))
            .to_string()
    }
}

impl Agent {
    /// A config with this conninfo and a repository inside the scratch dir.
    pub fn new(conninfo: &str) -> Agent {
        Agent::with_yaml(&format!(
            "postgres:\n  conninfo: \"{}\"\n  connect_timeout: 3s\nrepository:\n  path: REPO\n",
            conninfo.replace('"', "\\\"")
        ))
    }

    /// A config with this text; `REPO` is replaced by the scratch repository path.
    pub fn with_yaml(yaml: &str) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("dbagent-agent-")
            .tempdir_in("/tmp")
            .expect("create scratch dir for dbagent");
        let config = dir.path().join("dbagent.yml");
        let repo = dir.path().join("repo");
        std::fs::write(&config, yaml.replace("REPO", &repo.display().to_string()))
            .expect("write dbagent.yml");
        Agent {
            dir,
            config,
            env: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Sets an environment variable for the runs of this agent.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Agent {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs `dbagent --config <this config> ARGS...`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut full = vec!["--config", self.config.to_str().expect("utf-8 path")];
        full.extend_from_slice(args);
        run_in(self.dir.path(), &full, &self.env)
    }
}

/// Runs dbagent with exactly these arguments, HOME set to `home`, PG* variables removed.
pub fn run_in(home: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbagent"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") || key == "DBAGENT_CONFIG" || key == "DBAGENT_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", home).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the dbagent binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
