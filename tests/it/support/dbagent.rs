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
    /// A config with this conninfo, and a repository and state_dir inside the scratch dir.
    pub fn new(conninfo: &str) -> Agent {
        Agent::with_yaml(&format!(
            "postgres:\n  conninfo: \"{}\"\n  connect_timeout: 3s\nrepository:\n  path: REPO\nstate_dir: STATE\n",
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
        let state = dir.path().join("state");
        std::fs::write(
            &config,
            yaml.replace("REPO", &repo.display().to_string())
                .replace("STATE", &state.display().to_string()),
        )
        .expect("write dbagent.yml");
        Agent {
            dir,
            config,
            env: Vec::new(),
        }
    }

    /// Rewrites the config file (`REPO` and `STATE` are replaced as in [`Agent::with_yaml`]).
    pub fn set_yaml(&self, yaml: &str) {
        let repo = self.dir.path().join("repo");
        let state = self.dir.path().join("state");
        std::fs::write(
            &self.config,
            yaml.replace("REPO", &repo.display().to_string())
                .replace("STATE", &state.display().to_string()),
        )
        .expect("write dbagent.yml");
    }

    /// The config file's text.
    pub fn yaml(&self) -> String {
        std::fs::read_to_string(&self.config).expect("read dbagent.yml")
    }

    /// The repository path of this agent.
    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// A `dbagent --config <this config> ARGS...` command to spawn and control.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbagent"));
        clean_env(&mut cmd);
        cmd.env("HOME", self.dir.path())
            .arg("--config")
            .arg(&self.config)
            .args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Makes the scratch dir (config, repository) usable by the `postgres` OS user, which runs
    /// archive_command and restore_command when the tests run as root.
    pub fn share_with_postgres(&self) -> &Agent {
        chown_to_postgres(self.dir.path());
        self
    }

    /// `archive_command` calling this agent's wal-push through a binary postgres can run.
    pub fn archive_command(&self) -> String {
        format!(
            "{} --config {} wal-push %p",
            dbagent_for_postgres().display(),
            self.config.display()
        )
    }

    /// `restore_command` calling this agent's wal-get.
    pub fn restore_command(&self) -> String {
        format!(
            "{} --config {} wal-get %f %p",
            dbagent_for_postgres().display(),
            self.config.display()
        )
    }

    /// Runs dbagent as the `postgres` OS user (when root), e.g. to meet permissions root
    /// would bypass.
    pub fn run_as_postgres(&self, args: &[&str]) -> Run {
        self.run_as_postgres_maybe_in(None, args)
    }

    /// Runs dbagent as the `postgres` OS user (when root) with `dir` as the working directory:
    /// PostgreSQL runs archive_command and restore_command in its data directory.
    pub fn run_as_postgres_in(&self, dir: &Path, args: &[&str]) -> Run {
        self.run_as_postgres_maybe_in(Some(dir), args)
    }

    fn run_as_postgres_maybe_in(&self, dir: Option<&Path>, args: &[&str]) -> Run {
        let mut full = vec!["--config", self.config.to_str().expect("utf-8 path")];
        full.extend_from_slice(args);
        let mut cmd = Command::new(dbagent_for_postgres());
        clean_env(&mut cmd);
        cmd.env("HOME", self.dir.path()).args(&full);
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        if nix::unistd::geteuid().is_root() {
            let pg = postgres_user();
            use std::os::unix::process::CommandExt;
            cmd.uid(pg.uid.as_raw()).gid(pg.gid.as_raw());
        }
        output(cmd)
    }

    /// Runs the copy of dbagent that the `postgres` OS user can execute (as the current
    /// user), so that a restore_command it writes (its own path) works for the server.
    pub fn run_copy(&self, args: &[&str]) -> Run {
        output(self.command_copy(args))
    }

    /// A command for the postgres-executable copy of dbagent with this config.
    pub fn command_copy(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(dbagent_for_postgres());
        clean_env(&mut cmd);
        cmd.env("HOME", self.dir.path())
            .arg("--config")
            .arg(&self.config)
            .args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
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
    clean_env(&mut cmd);
    cmd.env("HOME", home).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    output(cmd)
}

fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") || key == "DBAGENT_CONFIG" || key == "DBAGENT_LOG" {
            cmd.env_remove(key);
        }
    }
}

fn output(mut cmd: Command) -> Run {
    let out = cmd.output().expect("run the dbagent binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn postgres_user() -> nix::unistd::User {
    nix::unistd::User::from_name("postgres")
        .expect("look up the postgres OS user")
        .expect("the postgres OS user exists (scripts/test.sh installs postgresql-15)")
}

/// Recursively hands `path` to the postgres OS user (no-op when not root).
pub fn chown_to_postgres(path: &Path) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let pg = postgres_user();
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", pg.uid, pg.gid))
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown -R postgres {}", path.display());
}

/// A copy of the dbagent binary under /tmp that the postgres OS user can execute (the build
/// may live under /root, which it cannot reach). Copied once per build, atomically.
pub fn dbagent_for_postgres() -> PathBuf {
    let src = PathBuf::from(env!("CARGO_BIN_EXE_dbagent"));
    let meta = std::fs::metadata(&src).expect("stat the dbagent binary");
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let dir = PathBuf::from(format!("/tmp/dbagent-it-bin-{mtime:x}-{:x}", meta.len()));
    let dest = dir.join("dbagent");
    if dest.is_file() {
        return dest;
    }
    std::fs::create_dir_all(&dir).expect("create the binary copy dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let tmp = dir.join(format!(".dbagent.{}", std::process::id()));
    std::fs::copy(&src, &tmp).expect("copy the dbagent binary");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod binary");
    std::fs::rename(&tmp, &dest).expect("move the binary copy into place");
    dest
}

/// Creates repository `repo` bound to a (made-up) PostgreSQL 15 cluster: its `repo.json`, as
/// `wal-push` or `backup` would write it, for tests that build a repository by hand.
pub fn bind_repo(repo: &std::path::Path, system_identifier: &str, wal_segment_size: u64) {
    std::fs::create_dir_all(repo).unwrap();
    let info = serde_json::json!({
        "format": 1,
        "system_identifier": system_identifier,
        "pg_major": 15,
        "wal_segment_size": wal_segment_size,
        "created_at": "2026-01-01T00:00:00Z",
    });
    std::fs::write(
        repo.join("repo.json"),
        serde_json::to_vec_pretty(&info).unwrap(),
    )
    .unwrap();
}
