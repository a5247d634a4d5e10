//! Archiving and WAL fetching that never wedge a server (issue 21), on PostgreSQL 15 and 18:
//! a promoted standby archives into an empty repository at once (wal-push binds it from the
//! control file, whatever the first file is), and a standby fed from the archive survives a
//! repository or configuration outage (wal-get asks PostgreSQL to retry in standby mode),
//! while a restore still aborts (safety invariants 1 and 2). Also: wal-push removes the temp
//! files of a killed push, and `check` and the collectors notice a standby that stopped
//! following the archive and an archiver stuck on one file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dbagent::collect::archiver::Archiver;
use dbagent::collect::standby::Standby;

use crate::backup::{archived_cluster, wait_until_promoted};
use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions, PgVersion};
use crate::support::collect::{Poller, value};
use crate::support::dbagent::{Agent, Run, chown_to_postgres};
use crate::wal::{complete_segment, set_mode, stored_files};

/// The system identifier of a running cluster.
fn sysid(pg: &Cluster) -> String {
    pg.psql("SELECT system_identifier FROM pg_control_system()")
}

/// The repository's repo.json.
fn repo_json(repo: &Path) -> serde_json::Value {
    let text = std::fs::read(repo.join("repo.json"))
        .unwrap_or_else(|e| panic!("{} has no repo.json: {e}", repo.display()));
    serde_json::from_slice(&text).expect("repo.json is JSON")
}

/// The names of the files stored in a repository's WAL archive.
fn stored_names(repo: &Path) -> Vec<String> {
    stored_files(repo)
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .collect()
}

/// The end of a server log, for failure messages.
fn log_tail(pg: &Cluster) -> String {
    let text = std::fs::read_to_string(pg.log_path()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Waits (a minute at most) until `pg` has archived `wal`. Its `.done` status file says so:
/// `pg_stat_archiver.last_archived_wal` names the file archived last, which after a promotion
/// can be an older timeline's segment that the end-of-recovery checkpoint marked ready later.
fn wait_archived(pg: &Cluster, wal: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let done_file = pg
        .data_dir()
        .join("pg_wal/archive_status")
        .join(format!("{wal}.done"));
    loop {
        if done_file.exists() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{wal} was not archived within a minute: {}\n{}",
            pg.psql("SELECT * FROM pg_stat_archiver"),
            log_tail(pg)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes a little, switches to a new segment and returns the one completed.
fn write_and_switch(pg: &Cluster, table: &str) -> String {
    pg.psql(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (i int); INSERT INTO {table} SELECT generate_series(1, 100)"
    ));
    let seg = pg.psql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())");
    pg.psql("SELECT pg_switch_wal()");
    seg
}

/// A cluster of its own, for files of another cluster; it archives into nowhere, so that
/// its backup history files stay in pg_wal (without archiving they are removed at once).
fn other_cluster(v: PgVersion) -> Cluster {
    Cluster::start(
        v,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some("/bin/true".into()),
            pg_stat_statements: false,
            ..ClusterOptions::default()
        },
    )
}

/// An agent with a repository that does not exist yet, shared with the postgres OS user.
fn empty_repository() -> Agent {
    let agent = Agent::with_yaml(
        "postgres:\n  conninfo: host=127.0.0.1\nrepository:\n  path: REPO\n  prefetch: 0\nstate_dir: STATE\n",
    );
    agent.share_with_postgres();
    agent
}

/// Runs a dbagent command in the background and returns its output once it exits.
fn spawn(agent: &Agent, args: &[&str]) -> std::process::Child {
    agent
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dbagent")
}

pg_test!(
    promoted_standby_archives_into_an_empty_repository_at_once,
    |v| {
        // The old primary archives into its repository; two standbys of it are each given a
        // repository that is still empty (a new host, a new bucket after a disaster).
        let (_old, mut primary) = archived_cluster(v);
        write_and_switch(&primary, "before");
        let history_first = empty_repository();
        let backup_first = empty_repository();
        let mut s1 = primary.start_replica();
        s1.set_conf("archive_command", &history_first.archive_command());
        s1.reload();
        let mut s2 = primary.start_replica();
        s2.set_conf("archive_command", &backup_first.archive_command());
        s2.reload();
        // s2's archive configuration is not there yet: its archiving fails until a backup of the
        // promoted node has created the repository.
        let archive_config = backup_first.yaml();
        std::fs::remove_file(backup_first.config_path()).unwrap();
        primary.stop();

        // Promoted, s1 offers its new timeline's history file first; it is archived at once, and
        // the segments after it too.
        s1.psql("SELECT pg_promote(true, 60)");
        wait_until_promoted(&s1);
        let seg = write_and_switch(&s1, "after");
        assert!(seg.starts_with("00000002"), "{seg}");
        wait_archived(&s1, &seg);
        let repo = history_first.repo();
        let names = stored_names(&repo);
        assert!(
            names.contains(&"00000002.history.zst".to_string()),
            "{names:?}"
        );
        assert!(names.contains(&format!("{seg}.zst")), "{names:?}");
        let info = repo_json(&repo);
        assert_eq!(info["system_identifier"], sysid(&s1));
        assert_eq!(info["pg_major"], v.major());
        assert_eq!(info["wal_segment_size"], 16 << 20);
        assert_eq!(
            s1.psql("SELECT failed_count FROM pg_stat_archiver"),
            "0",
            "{}",
            log_tail(&s1)
        );
        // The first segment of timeline 2 starts as a copy of timeline 1's (its first page
        // says timeline 1): wal-get hands it out all the same.
        let history =
            std::fs::read_to_string(s1.data_dir().join("pg_wal/00000002.history")).unwrap();
        let switch = history.split_whitespace().nth(1).expect("a switch point");
        let first_tl2 = s1.psql(&format!("SELECT pg_walfile_name('{switch}'::pg_lsn + 1)"));
        assert!(first_tl2.starts_with("00000002"), "{first_tl2}");
        let dest = history_first.dir().join("restored");
        let run = history_first.run(&["wal-get", &first_tl2, dest.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert_eq!(std::fs::metadata(&dest).unwrap().len(), 16 << 20);

        // A segment of another cluster is still refused afterwards.
        let other = other_cluster(v);
        let foreign = complete_segment(&other, history_first.dir());
        let run = history_first.run(&["wal-push", foreign.to_str().unwrap()]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr.contains("belongs to another cluster"),
            "{}",
            run.stderr
        );

        // s2: a backup of the promoted node creates the repository first; its archiving (the
        // history file first) then goes into it, and the backup completes.
        s2.psql("SELECT pg_promote(true, 60)");
        wait_until_promoted(&s2);
        let backup = Agent::with_yaml(&format!(
            "postgres:\n  conninfo: \"{}\"\n  bin_dir: {}\nrepository:\n  path: {}\nstate_dir: STATE\nbackup:\n  wal_timeout: 120s\n",
            s2.conninfo(),
            v.bin_dir().display(),
            backup_first.repo().display()
        ));
        let child = spawn(&backup, &["backup", "--json"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !backup_first.repo().join("repo.json").exists() {
            assert!(
                Instant::now() < deadline,
                "the backup did not create the repository"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Only the file is handed over: a walk of the repository now would disturb the
        // backup (it waits for pg_basebackup to have looked at its empty work directory).
        std::fs::write(backup_first.config_path(), archive_config).unwrap();
        chown_to_postgres(backup_first.config_path());
        // Wake the archiver, which sleeps after its failed attempts.
        s2.reload();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "backup: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            log_tail(&s2)
        );
        let seg = write_and_switch(&s2, "after");
        wait_archived(&s2, &seg);
        let repo = backup_first.repo();
        let names = stored_names(&repo);
        assert!(
            names.contains(&"00000002.history.zst".to_string()),
            "{names:?}"
        );
        assert!(names.contains(&format!("{seg}.zst")), "{names:?}");
        assert_eq!(repo_json(&repo)["system_identifier"], sysid(&s2));
    }
);

pg_test!(
    a_backup_history_file_offered_first_binds_an_empty_repository,
    |v| {
        // Archiving on, into nowhere so far; then a backup made with PostgreSQL's own functions,
        // which leaves a backup history file (.backup) in pg_wal.
        let mut x = other_cluster(v);
        let fresh = empty_repository();
        x.psql("SELECT pg_backup_start('first', true); SELECT pg_backup_stop(false);");
        let backup_file = backup_history_file(&x);

        // wal-push it exactly as archive_command does (as postgres, in the data directory,
        // `pg_wal/%f`) into the empty repository: bound from the control file.
        let run = fresh.run_as_postgres_in(
            x.data_dir(),
            &["wal-push", &format!("pg_wal/{backup_file}")],
        );
        assert_eq!(run.code, 0, "{}", run.all());
        let info = repo_json(&fresh.repo());
        assert_eq!(info["system_identifier"], sysid(&x));
        assert_eq!(info["pg_major"], v.major());
        assert_eq!(info["wal_segment_size"], 16 << 20);
        assert!(
            stored_names(&fresh.repo()).contains(&format!("{backup_file}.zst")),
            "{:?}",
            stored_names(&fresh.repo())
        );

        // From now on the server archives into it: its next segments arrive.
        x.set_conf("archive_command", &fresh.archive_command());
        x.reload();
        let seg = write_and_switch(&x, "t");
        wait_archived(&x, &seg);
        assert!(stored_names(&fresh.repo()).contains(&format!("{seg}.zst")));

        // Files of another cluster are refused: a segment, and a backup history file offered
        // from that cluster's own data directory (its control file names it).
        let y = other_cluster(v);
        let foreign = complete_segment(&y, fresh.dir());
        chown_to_postgres(&foreign);
        let run = fresh.run_as_postgres(&["wal-push", foreign.to_str().unwrap()]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr.contains("belongs to another cluster"),
            "{}",
            run.stderr
        );
        y.psql("SELECT pg_backup_start('other', true); SELECT pg_backup_stop(false);");
        let their_backup = backup_history_file(&y);
        let run = fresh.run_as_postgres_in(
            y.data_dir(),
            &["wal-push", &format!("pg_wal/{their_backup}")],
        );
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr.contains("belongs to another cluster") && run.stderr.contains(&sysid(&y)),
            "{}",
            run.stderr
        );

        // A segment whose header disagrees with the control file of the data directory it is
        // archived from is refused, both identifiers named, and the repository stays unbound.
        let empty = empty_repository();
        let seg_x = complete_segment(&x, empty.dir());
        chown_to_postgres(&seg_x);
        let run = empty.run_as_postgres_in(y.data_dir(), &["wal-push", seg_x.to_str().unwrap()]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr.contains(&sysid(&x)) && run.stderr.contains(&sysid(&y)),
            "{}",
            run.stderr
        );
        assert!(!empty.repo().join("repo.json").exists());

        // Without a data directory (run by hand elsewhere, no postgres.pgdata), a history file
        // cannot be attributed to a cluster: refused with what to do.
        let elsewhere = empty_repository();
        let copy = elsewhere.dir().join(&backup_file);
        std::fs::copy(x.data_dir().join("pg_wal").join(&backup_file), &copy).unwrap();
        let run = elsewhere.run(&["wal-push", copy.to_str().unwrap()]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(run.stderr.contains("postgres.pgdata"), "{}", run.stderr);
    }
);

/// The newest backup history file in a cluster's pg_wal.
fn backup_history_file(pg: &Cluster) -> String {
    let mut names: Vec<String> = std::fs::read_dir(pg.data_dir().join("pg_wal"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(".backup"))
        .collect();
    names.sort();
    names.pop().expect("pg_backup_stop left a .backup file")
}

/// Makes `standby` (a streaming replica, stopped) a standby fed from the archive only: no
/// primary_conninfo, restore_command = `agent`'s wal-get, retrying every second.
fn archive_only(standby: &mut Cluster, agent: &Agent) {
    standby.stop();
    let auto = standby.data_dir().join("postgresql.auto.conf");
    let text = std::fs::read_to_string(&auto).unwrap();
    let mut kept: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("primary_conninfo"))
        .map(|l| format!("{l}\n"))
        .collect();
    kept.push_str(&format!(
        "restore_command = '{}'\nwal_retrieve_retry_interval = '1s'\n",
        agent.restore_command()
    ));
    std::fs::write(&auto, kept).unwrap();
    assert!(standby.data_dir().join("standby.signal").exists());
    standby.start_again();
}

/// Waits until `standby` shows as many rows in `table` as `primary` (a minute at most).
fn wait_caught_up(standby: &Cluster, primary: &Cluster, table: &str) {
    let want = primary.psql(&format!("SELECT count(*) FROM {table}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = standby
            .try_psql(&format!("SELECT count(*) FROM {table}"))
            .unwrap_or_default();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not replay what the primary archived ({got} of {want} rows)\n{}",
            log_tail(standby)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Keeps `standby` under watch for `outage`: it must stay up (accepting connections) all along.
fn stays_up_for(standby: &Cluster, outage: Duration) {
    let until = Instant::now() + outage;
    while Instant::now() < until {
        assert!(
            standby.try_psql("SELECT 1").is_ok(),
            "the standby went down during the outage\n{}",
            log_tail(standby)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

pg_test!(
    archive_only_standby_rides_out_repository_and_configuration_outages,
    |v| {
        let (primary_agent, primary) = archived_cluster(v);
        write_and_switch(&primary, "t");
        // The standby reaches the repository through `gate`, a directory that can be closed
        // to the postgres OS user (the standby's restore_command) while the primary archives.
        let sb = Agent::with_yaml(
            "postgres:\n  conninfo: host=127.0.0.1\nrepository:\n  path: GATE/repo\nstate_dir: STATE\n",
        );
        let gate = sb.dir().join("gate");
        std::fs::create_dir(&gate).unwrap();
        std::os::unix::fs::symlink(primary_agent.repo(), gate.join("repo")).unwrap();
        sb.set_yaml(&sb.yaml().replace("GATE", &gate.display().to_string()));
        sb.share_with_postgres();
        let mut standby = primary.start_replica();
        archive_only(&mut standby, &sb);
        // What the standby logs from now on (its streaming days ended with a FATAL line).
        let since = std::fs::metadata(standby.log_path()).unwrap().len() as usize;
        let log_now = || {
            let bytes = std::fs::read(standby.log_path()).unwrap();
            String::from_utf8_lossy(&bytes[since.min(bytes.len())..]).into_owned()
        };
        switch_and_wait(&primary, "t");
        wait_caught_up(&standby, &primary, "t");
        // `check` and the collector on the standby read the repository directly.
        let checker = Agent::with_yaml(&format!(
            "postgres:\n  conninfo: \"{}\"\n  connect_timeout: 3s\nrepository:\n  path: {}\nstate_dir: STATE\ncheck:\n  replay_stall_warning: 1s\n  replay_stall_critical: 1h\n",
            standby.conninfo(),
            primary_agent.repo().display()
        ));
        let line = checker.run(&["check"]).check_line("standby_replay");
        assert!(line.starts_with("OK"), "{line}");

        // The repository unreadable for 30 s: wal-get asks PostgreSQL to retry, the standby
        // stays up and says why in its log; check and the collector see replay stalled.
        set_mode(&gate, 0o000);
        switch_and_wait(&primary, "t");
        let started = Instant::now();
        let line = wait_check(&checker, "standby_replay", "WARNING");
        assert!(line.contains("restore_command"), "{line}");
        let mut poller = Poller::new(&standby);
        poller.repository = Some(dbagent::repo::Repo::at(primary_agent.repo()));
        let out = poller.run(&mut Standby).expect("collect");
        let age = value(&out, "dbagent_standby_unreplayed_archive_age_seconds", &[]).unwrap();
        assert!(age > 0.0, "{age}");
        stays_up_for(
            &standby,
            Duration::from_secs(30).saturating_sub(started.elapsed()),
        );
        let log = log_now();
        let failure = log
            .lines()
            .find(|l| l.contains("dbagent: error: wal-get"))
            .unwrap_or_else(|| panic!("no wal-get error in the standby's log:\n{log}"));
        assert!(
            failure.contains("standby mode, exit 75")
                && failure.contains("Permission denied")
                && failure.contains(&gate.join("repo").display().to_string()),
            "{failure}"
        );
        assert!(!log.contains("FATAL"), "{log}");
        set_mode(&gate, 0o755);
        wait_caught_up(&standby, &primary, "t");
        let out = poller.run(&mut Standby).expect("collect");
        assert_eq!(
            value(&out, "dbagent_standby_unreplayed_archive_age_seconds", &[]),
            Some(0.0)
        );

        // The configuration file missing for 30 s: the same.
        let config = sb.config_path().to_path_buf();
        let away = sb.dir().join("away.yml");
        std::fs::rename(&config, &away).unwrap();
        switch_and_wait(&primary, "t");
        stays_up_for(&standby, Duration::from_secs(30));
        let log = log_now();
        let failure = log
            .lines()
            .find(|l| l.contains("cannot read the configuration"))
            .unwrap_or_else(|| panic!("no configuration error in the standby's log:\n{log}"));
        assert!(failure.contains("standby mode, exit 75"), "{failure}");
        assert!(!log.contains("FATAL"), "{log}");
        std::fs::rename(&away, &config).unwrap();
        wait_caught_up(&standby, &primary, "t");

        // Promoted, the standby has no use for the prefetch spool any more: it goes.
        let spool = standby.data_dir().join("pg_wal").join("dbagent-prefetch");
        standby.psql("SELECT pg_promote(true, 60)");
        wait_until_promoted(&standby);
        wait_gone(&spool);
    }
);

/// Switches WAL on `pg` and waits until the segment is archived.
fn switch_and_wait(pg: &Cluster, table: &str) {
    let seg = write_and_switch(pg, table);
    wait_archived(pg, &seg);
}

/// Runs `check` until the line of `name` has `status` (a minute at most); returns the line.
fn wait_check(agent: &Agent, name: &str, status: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = agent.run(&["check"]).check_line(name);
        if line.starts_with(status) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {status}: {line}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits (a minute at most) until `path` no longer exists.
fn wait_gone(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} is still there: {:?}",
            path.display(),
            std::fs::read_dir(path).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A directory that looks like a data directory to wal-get (the cluster's control file and a
/// pg_wal), in standby mode (`standby.signal`) or restoring (`recovery.signal`).
fn fake_data_dir(pg: &Cluster, parent: &Path, signal: &str) -> PathBuf {
    let dir = parent.join(signal.trim_end_matches(".signal"));
    std::fs::create_dir_all(dir.join("global")).unwrap();
    std::fs::create_dir_all(dir.join("pg_wal")).unwrap();
    std::fs::copy(
        pg.data_dir().join("global/pg_control"),
        dir.join("global/pg_control"),
    )
    .unwrap();
    std::fs::write(dir.join(signal), "").unwrap();
    dir
}

/// What one failure looks like from each mode: standby 75, restore 126, and 126 outside a data
/// directory too (the mode cannot be told). One line on stderr naming the file, nothing at DEST.
struct Modes<'a> {
    agent: &'a Agent,
    standby: PathBuf,
    restore: PathBuf,
    nowhere: PathBuf,
}

impl Modes<'_> {
    fn get(&self, dir: &Path, name: &str) -> Run {
        let _ = std::fs::remove_file(dir.join("pg_wal/RECOVERYXLOG"));
        self.agent
            .run_as_postgres_in(dir, &["wal-get", name, "pg_wal/RECOVERYXLOG"])
    }

    /// Asserts that getting `name` fails with the mode's code; `needle` is in the message.
    fn fails(&self, what: &str, name: &str, needle: &str) {
        for (dir, code, says) in [
            (&self.standby, 75, "standby mode, exit 75"),
            (&self.restore, 126, "restore, exit 126"),
            (&self.nowhere, 126, "exit 126"),
        ] {
            let run = self.get(dir, name);
            assert_eq!(run.code, code, "{what} in {}: {}", dir.display(), run.all());
            let lines: Vec<&str> = run.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{what}: one line on stderr: {}", run.stderr);
            assert!(
                lines[0].contains(name) && lines[0].contains(needle) && lines[0].contains(says),
                "{what} in {}: {}",
                dir.display(),
                lines[0]
            );
            assert!(
                !dir.join("pg_wal/RECOVERYXLOG").exists(),
                "{what}: something was written to DEST"
            );
        }
    }
}

pg_test!(wal_get_failure_exit_codes_depend_on_the_server_mode, |v| {
    let pg = other_cluster(v);
    let agent = empty_repository();
    let seg = complete_segment(&pg, agent.dir());
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(agent.run(&["wal-push", seg.to_str().unwrap()]).code, 0);
    let modes = Modes {
        agent: &agent,
        standby: fake_data_dir(&pg, agent.dir(), "standby.signal"),
        restore: fake_data_dir(&pg, agent.dir(), "recovery.signal"),
        nowhere: agent.dir().join("nowhere"),
    };
    std::fs::create_dir_all(modes.nowhere.join("pg_wal")).unwrap();
    agent.share_with_postgres();
    let repo = agent.repo();
    let repo_shown = repo.display().to_string();

    // Restored in every mode; absent is 1 in every mode, quietly for a history file probe
    // (and in standby mode, where PostgreSQL asks for the next segment until it exists).
    for dir in [&modes.standby, &modes.restore, &modes.nowhere] {
        let run = modes.get(dir, &name);
        assert_eq!(run.code, 0, "{}", run.all());
        assert_eq!(
            std::fs::read(dir.join("pg_wal/RECOVERYXLOG")).unwrap(),
            std::fs::read(&seg).unwrap()
        );
        let run = modes.get(dir, "00000002.history");
        assert_eq!(run.code, 1, "{}", run.all());
        assert_eq!(run.stderr, "", "a history probe is not a problem");
        let run = modes.get(dir, &format!("{}000000F0", &name[..16]));
        assert_eq!(run.code, 1, "{}", run.all());
    }
    let run = modes.get(&modes.standby, &format!("{}000000F0", &name[..16]));
    assert_eq!(
        run.stderr, "",
        "a standby asking for the next segment is normal"
    );

    // The repository unreadable.
    set_mode(&repo, 0o000);
    modes.fails("repository unreadable", &name, &repo_shown);
    set_mode(&repo, 0o755);

    // The stored object's directory unreadable (an I/O error on the object itself).
    let seg_dir = repo.join("wal").join(&name[..16]);
    set_mode(&seg_dir, 0o000);
    modes.fails("object unreadable", &name, "Permission denied");
    set_mode(&seg_dir, 0o755);

    // The configuration missing, then invalid.
    let config = agent.config_path().to_path_buf();
    let yaml = agent.yaml();
    std::fs::remove_file(&config).unwrap();
    modes.fails(
        "configuration missing",
        &name,
        "cannot read the configuration",
    );
    std::fs::write(&config, "postgres: [\n").unwrap();
    modes.fails(
        "configuration invalid",
        &name,
        "cannot read the configuration",
    );
    std::fs::write(&config, &yaml).unwrap();

    // A damaged object: it does not decompress (its checksum fails).
    let stored = stored_files(&repo)
        .into_iter()
        .find(|p| p.to_str().unwrap().contains(&name))
        .unwrap();
    let good = std::fs::read(&stored).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xFF;
    std::fs::write(&stored, &bad).unwrap();
    modes.fails("damaged object", &name, "damaged");
    std::fs::write(&stored, &good).unwrap();

    // A damaged object that decompresses cleanly but is not the segment its name says
    // (stored uncompressed under another segment's name).
    let wrong = format!("{}000000E0", &name[..16]);
    std::fs::write(seg_dir.join(&wrong), std::fs::read(&seg).unwrap()).unwrap();
    chown_to_postgres(&seg_dir.join(&wrong));
    modes.fails("wrong content", &wrong, "damaged");
    std::fs::remove_file(seg_dir.join(&wrong)).unwrap();

    // DEST cannot be written.
    for dir in [&modes.standby, &modes.restore, &modes.nowhere] {
        set_mode(&dir.join("pg_wal"), 0o555);
    }
    modes.fails("destination unwritable", &name, "RECOVERYXLOG");
});

pg_test!(wal_push_removes_the_temp_files_a_killed_push_left, |v| {
    let pg = other_cluster(v);
    let agent = empty_repository();
    let first = complete_segment(&pg, agent.dir());
    assert_eq!(agent.run(&["wal-push", first.to_str().unwrap()]).code, 0);
    let seg = complete_segment(&pg, agent.dir());
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();
    let dir = agent.repo().join("wal").join(&name[..16]);
    // A push SIGKILLed while writing leaves `.NAME.PID.tmp`, PID gone.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let dead = dir.join(format!(".{name}.zst.{dead_pid}.tmp"));
    std::fs::write(&dead, b"half a segment").unwrap();
    // A push still running keeps its temp file.
    let mut running = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let live = dir.join(format!(".{name}.zst.{}.tmp", running.id()));
    std::fs::write(&live, b"being written").unwrap();
    // Another segment's temp file is not this push's business.
    let other = dir.join(format!(
        ".{}.zst.{dead_pid}.tmp",
        first.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::write(&other, b"x").unwrap();

    let run = agent.run(&["wal-push", seg.to_str().unwrap()]);
    let _ = running.kill();
    let _ = running.wait();
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        !dead.exists(),
        "the dead push's temp file is still there: {:?} {}",
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>()),
        run.all()
    );
    assert!(live.exists(), "a running push's temp file was removed");
    assert!(other.exists());
    assert!(stored_names(&agent.repo()).contains(&format!("{name}.zst")));
});

pg_test!(
    check_and_the_collector_name_the_file_archiving_is_stuck_on,
    |v| {
        let (agent, pg) = archived_cluster(v);
        write_and_switch(&pg, "t");
        // Different content is already archived under the next segment's name: PostgreSQL
        // retries that one file for ever.
        let next = pg.psql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())");
        let seg = write_and_switch(&pg, "t");
        assert_eq!(seg, next);
        let dir = agent.repo().join("wal").join(&seg[..16]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{seg}.zst")),
            zstd::encode_all(&b"not it"[..], 1).unwrap(),
        )
        .unwrap();
        chown_to_postgres(&agent.repo());
        let deadline = Instant::now() + Duration::from_secs(60);
        while pg.psql("SELECT coalesce(last_failed_wal, '') FROM pg_stat_archiver") != seg {
            assert!(
                Instant::now() < deadline,
                "the archiver never failed on {seg}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let line = agent.run(&["check"]).check_line("archiving");
        assert!(line.starts_with("CRITICAL"), "{line}");
        assert!(
            line.contains(&seg) && line.contains(&format!("wal-push pg_wal/{seg}")),
            "{line}"
        );
        let out = Poller::new(&pg).run(&mut Archiver).expect("collect");
        assert_eq!(
            value(&out, "dbagent_archiver_failing", &[("wal", seg.as_str())]),
            Some(1.0)
        );
        let log = std::fs::read_to_string(pg.log_path()).unwrap();
        assert!(
            log.contains("refusing to overwrite"),
            "wal-push's reason is in the server log:\n{log}"
        );
    }
);
