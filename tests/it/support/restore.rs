//! Restoring a dbagent backup by hand (decompress, untar, relocate tablespaces, recovery
//! settings), so tests can prove a backup restores before `dbagent restore` exists, and
//! independently of it.

use std::path::Path;

use dbagent::repo::{Compression, compress};

/// Extracts backup `id` of the repository at `repo` into `root/data`, tablespaces into
/// `root/ts/<oid>`, and configures recovery through `restore_command` up to consistency.
pub fn extract_for_recovery(repo: &Path, id: &str, root: &Path, restore_command: &str) {
    let dir = repo.join("backups").join(id);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("manifest.json")).expect("read manifest.json"),
    )
    .expect("parse manifest.json");
    let compression: Compression =
        serde_json::from_value(manifest["compression"].clone()).expect("compression in manifest");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut relocated = Vec::new();
    for file in manifest["files"].as_array().expect("files") {
        let name = file["name"].as_str().unwrap();
        if name == "backup_manifest" {
            continue;
        }
        let target = if file["tablespace"].is_null() {
            data.clone()
        } else {
            let oid = file["tablespace"]["oid"].as_u64().unwrap();
            let t = root.join("ts").join(oid.to_string());
            relocated.push((oid, t.clone()));
            t
        };
        std::fs::create_dir_all(&target).unwrap();
        let input = std::io::BufReader::new(std::fs::File::open(dir.join(name)).unwrap());
        let mut archive = tar::Archive::new(compress::decoder(compression, input).unwrap());
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        archive
            .unpack(&target)
            .unwrap_or_else(|e| panic!("untar {name}: {e}"));
    }
    // tar-format backups list tablespaces in tablespace_map ("<oid> <path>"): point them at
    // their new locations.
    let map = data.join("tablespace_map");
    if let Ok(text) = std::fs::read_to_string(&map) {
        let mut out = String::new();
        for line in text.lines() {
            let oid: u64 = line
                .split(' ')
                .next()
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            match relocated.iter().find(|(o, _)| *o == oid) {
                Some((_, path)) => out.push_str(&format!("{oid} {}\n", path.display())),
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        std::fs::write(&map, out).unwrap();
    }
    std::fs::write(data.join("recovery.signal"), b"").unwrap();
    let mut auto = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap_or_default();
    auto.push_str(&format!(
        "\nrestore_command = '{}'\nrecovery_target = 'immediate'\nrecovery_target_action = 'promote'\narchive_mode = off\n",
        restore_command.replace('\'', "''")
    ));
    std::fs::write(data.join("postgresql.auto.conf"), auto).unwrap();
}

/// A copy of the cluster restored elsewhere from backup `id` and promoted (to a new timeline),
/// which archives into the same repository through `archive_command`: what a test copy set up
/// by hand does to a shared archive. The restored data directory carries no restore marker,
/// so its timeline is recorded as a promotion.
pub fn promoted_copy_archiving(
    v: crate::support::cluster::PgVersion,
    repo: &Path,
    id: &str,
    restore_command: &str,
    archive_command: &str,
) -> crate::support::cluster::Cluster {
    use crate::support::cluster::{Cluster, ClusterOptions};
    let copy = Cluster::start_prepared(
        v,
        ClusterOptions {
            archive_mode: true,
            archive_command: Some(archive_command.to_string()),
            ..ClusterOptions::default()
        },
        |root| {
            extract_for_recovery(repo, id, root, restore_command);
            // extract_for_recovery turns archiving off for the copy; this one archives.
            let auto = root.join("data").join("postgresql.auto.conf");
            let mut text = std::fs::read_to_string(&auto).expect("read postgresql.auto.conf");
            text.push_str("archive_mode = on\n");
            std::fs::write(&auto, text).expect("write postgresql.auto.conf");
        },
    );
    for _ in 0..600 {
        if copy.try_psql("SELECT pg_is_in_recovery()").as_deref() == Ok("f") {
            return copy;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "the restored copy did not finish recovery; log: {}",
        copy.log_path().display()
    );
}
