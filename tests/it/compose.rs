//! docker-compose.replica.yml without a Docker engine: its shape (primary, replica, a sidecar
//! for each built from this repository's Dockerfile, Prometheus scraping both, WAL archived
//! with dbagent wal-push on both servers) and that every dbagent configuration in it loads.

use std::path::Path;

fn compose() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docker-compose.replica.yml"
    ))
    .expect("read docker-compose.replica.yml");
    serde_saphyr::from_str(&text).expect("docker-compose.replica.yml is YAML")
}

#[test]
fn compose_file_has_the_replica_topology_and_its_configs_load() {
    let c = compose();
    let services = c["services"].as_object().expect("services");
    for name in [
        "primary",
        "replica",
        "dbagent-primary",
        "dbagent-replica",
        "prometheus",
    ] {
        assert!(services.contains_key(name), "no service {name}");
    }
    for sidecar in ["dbagent-primary", "dbagent-replica"] {
        let s = &services[sidecar];
        assert_eq!(
            s["build"], ".",
            "{sidecar} is built from this repository: {s}"
        );
        let cmd: Vec<&str> = s["command"]
            .as_array()
            .expect("command")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(cmd.last(), Some(&"run"), "{sidecar}: {cmd:?}");
    }
    for server in ["primary", "replica"] {
        let s = &services[server];
        assert_eq!(s["build"]["target"], "postgres-dbagent", "{server}: {s}");
        assert!(
            s.to_string()
                .contains("archive_command=dbagent --config /etc/dbagent/dbagent.yml wal-push %p"),
            "{server} archives with dbagent: {s}"
        );
    }
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("AS postgres-dbagent"),
        "the Dockerfile has the target"
    );

    // Prometheus scrapes both sidecars.
    let prom = c["configs"]["prometheus"]["content"]
        .as_str()
        .expect("prometheus config");
    let prom: serde_json::Value = serde_saphyr::from_str(prom).unwrap();
    let targets = prom["scrape_configs"][0]["static_configs"][0]["targets"].to_string();
    assert!(
        targets.contains("dbagent-primary:9188") && targets.contains("dbagent-replica:9188"),
        "{targets}"
    );

    // Every dbagent configuration loads ($$ is Compose's escape for a literal $).
    // SAFETY (test-only): no other test reads this variable.
    unsafe { std::env::set_var("DBAGENT_PASSWORD", "x") };
    for name in ["dbagent-archive", "dbagent-primary", "dbagent-replica"] {
        let text = c["configs"][name]["content"]
            .as_str()
            .unwrap_or_else(|| panic!("config {name}"))
            .replace("$$", "$");
        let config = dbagent::config::Config::parse(&text, Path::new(name))
            .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
        if name != "dbagent-archive" {
            assert!(config.schedule.backup.is_some(), "{name} schedules backups");
        }
    }
}

/// docker-compose.s3.yml, the override that moves the shared repository into MinIO: a MinIO
/// service that creates the bucket, and every dbagent configuration loads as an S3 repository
/// on it.
#[test]
fn the_s3_override_points_every_agent_at_one_bucket() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docker-compose.s3.yml"
    ))
    .expect("read docker-compose.s3.yml");
    let c: serde_json::Value =
        serde_saphyr::from_str(&text).expect("docker-compose.s3.yml is YAML");
    assert!(
        c["services"]["minio"]["image"]
            .as_str()
            .is_some_and(|i| i.contains("minio"))
    );
    // SAFETY (test-only): no other test reads these variables.
    unsafe {
        std::env::set_var("DBAGENT_S3_KEY", "k");
        std::env::set_var("DBAGENT_S3_SECRET", "s");
        std::env::set_var("DBAGENT_PASSWORD", "x");
    }
    for name in ["dbagent-archive", "dbagent-primary", "dbagent-replica"] {
        let text = c["configs"][name]["content"]
            .as_str()
            .unwrap_or_else(|| panic!("config {name}"))
            .replace("$$", "$");
        let config = dbagent::config::Config::parse(&text, Path::new(name))
            .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
        assert_eq!(
            config.repository.kind,
            dbagent::config::RepositoryType::S3,
            "{name}"
        );
        assert_eq!(config.repository.location(), "s3://dbagent/replica-demo");
        assert_eq!(
            config.repository.endpoint.as_deref(),
            Some("http://minio:9000")
        );
        config.repo().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
