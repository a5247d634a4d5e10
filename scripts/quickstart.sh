#!/usr/bin/env bash
# scripts/quickstart.sh: build dbagent and run it against a local sandbox PostgreSQL cluster.
#
#   scripts/quickstart.sh           build, create (or restart) the sandbox cluster, take a
#                                   backup (WAL archived through dbagent wal-push), run check,
#                                   start the sidecar (`dbagent run`) and print its /metrics URL
#   scripts/quickstart.sh --stop    stop the sidecar and the sandbox cluster, remove the sandbox
#
# Environment: SANDBOX_PG=15|18 (default 15), SANDBOX_PORT (default 54329),
#              SANDBOX_HTTP_PORT (default 9188), SANDBOX_DIR (default ./sandbox, git-ignored).
# The cluster listens on 127.0.0.1 only, with archive_command wired to `dbagent wal-push`,
# pg_stat_statements loaded and data checksums on; dbagent connects as a least-privilege role.
# Re-runnable: an existing sandbox is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$(pwd)

source scripts/lib/deps.sh

version=${SANDBOX_PG:-15}
port=${SANDBOX_PORT:-54329}
http_port=${SANDBOX_HTTP_PORT:-9188}
sandbox=${SANDBOX_DIR:-$repo_root/sandbox}
case "$version" in
  15) bindir=$PG15_BIN ;;
  18) bindir=$PG18_BIN ;;
  *) echo "quickstart: SANDBOX_PG must be 15 or 18" >&2; exit 2 ;;
esac
data=$sandbox/data
conf=$sandbox/dbagent.yml

# PostgreSQL refuses to run as root: as root, run it as the postgres OS user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- env -C "$sandbox" HOME="$sandbox" "$@"
  else
    "$@"
  fi
}

# Stops the sandbox's `dbagent run`, by the PID it recorded.
stop_sidecar() {
  if [ -f "$sandbox/run.pid" ]; then
    local pid
    pid=$(cat "$sandbox/run.pid")
    if kill -0 "$pid" 2>/dev/null && grep -q dbagent "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "dbagent run (pid $pid) stopped"
    fi
    rm -f "$sandbox/run.pid"
  fi
}

if [ "${1:-}" = "--stop" ]; then
  stop_sidecar
  if [ -f "$data/postmaster.pid" ]; then
    as_pg "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    echo "sandbox cluster stopped"
  fi
  rm -rf "$sandbox"
  echo "removed $sandbox"
  exit 0
elif [ $# -gt 0 ]; then
  sed -n '2,14p' "$0"
  exit 2
fi

apt_install postgresql-15 postgresql-client-15 curl
[ "$version" = 18 ] && install_pg18

echo "==> building dbagent (release)"
cargo build --release --quiet
mkdir -p "$sandbox/bin"
# archive_command runs as the PostgreSQL OS user: give it a copy of the binary it can reach.
install -m 0755 target/release/dbagent "$sandbox/bin/dbagent"
dbagent=$sandbox/bin/dbagent

if [ "$(id -u)" = 0 ]; then
  chown postgres: "$sandbox"
  if ! runuser -u postgres -- test -x "$sandbox"; then
    echo "quickstart: the postgres OS user cannot reach $sandbox; set SANDBOX_DIR to a path under /var/tmp or /tmp" >&2
    exit 1
  fi
fi

password=$(cat "$sandbox/.dbagent-password" 2>/dev/null || true)
if [ ! -f "$data/PG_VERSION" ]; then
  echo "==> creating the sandbox cluster (PostgreSQL $version) in $data"
  password=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  printf '%s' "$password" > "$sandbox/.dbagent-password"
  chmod 600 "$sandbox/.dbagent-password"
  checksums=--data-checksums
  [ "$version" = 18 ] && checksums=   # on by default in 18
  as_pg "$bindir/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --no-locale --no-instructions $checksums >/dev/null
  cat >> "$data/postgresql.conf" <<CONF

# --- dbagent quickstart sandbox ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sandbox'
wal_level = replica
archive_mode = on
archive_command = '$dbagent --config $conf wal-push %p'
archive_timeout = '60s'
shared_preload_libraries = 'pg_stat_statements'
max_wal_senders = 5
CONF
fi

if ! as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  echo "==> starting the sandbox cluster on 127.0.0.1:$port"
  as_pg "$bindir/pg_ctl" -D "$data" -l "$sandbox/postgresql.log" -w -t 60 start >/dev/null
fi

psql_super() { as_pg "$bindir/psql" -X -q -h "$sandbox" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
# A least-privilege role for dbagent: what `dbagent check` asks for, nothing more.
psql_super <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dbagent') THEN
    CREATE ROLE dbagent LOGIN REPLICATION;
  END IF;
END \$\$;
ALTER ROLE dbagent PASSWORD '$password';
GRANT pg_monitor TO dbagent;
-- Bloat estimates need pg_stats of every table (dbagent check: stats_visibility). This also
-- lets the role read table data; weigh that on a real cluster.
GRANT pg_read_all_data TO dbagent;
GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean), pg_backup_stop(boolean),
  pg_switch_wal(), pg_create_restore_point(text) TO dbagent;
SQL

# The password lives in a pgpass file, as an SRE would keep it, not in dbagent.yml.
printf '127.0.0.1:%s:*:dbagent:%s\n' "$port" "$password" > "$sandbox/pgpass"
chmod 600 "$sandbox/pgpass"
[ "$(id -u)" = 0 ] && chown postgres: "$sandbox/pgpass" "$sandbox/.dbagent-password"
cat > "$conf" <<YML
# dbagent.yml for the quickstart sandbox (see config/dbagent.yml for every key).
postgres:
  conninfo: "host=127.0.0.1 port=$port user=dbagent dbname=postgres passfile=$sandbox/pgpass"
  pgdata: $data
repository:
  path: $sandbox/repo
state_dir: $sandbox/state
http:
  listen: 127.0.0.1:$http_port
# dbagent run takes these by itself (\`dbagent jobs list\` shows the runs).
schedule:
  backup: "0 * * * *"
  expire: "30 * * * *"
  verify: "15 */6 * * *"
YML
mkdir -p "$sandbox/repo" "$sandbox/state"
[ "$(id -u)" = 0 ] && chown -R postgres: "$sandbox/repo" "$sandbox/state" "$conf"

# The first backup (as the postgres OS user, who also runs archive_command and owns the repo).
run_dbagent() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env -C "$sandbox" HOME="$sandbox" "$dbagent" "$@"; else "$dbagent" "$@"; fi
}
echo "==> $dbagent --config $conf backup"
run_dbagent --config "$conf" backup --no-progress

echo "==> $dbagent --config $conf check"
set +e
run_dbagent --config "$conf" check
status=$?
set -e

# The sidecar: polls the cluster, learns baselines, serves /metrics. Restarted on every run so
# that it is the binary just built.
stop_sidecar
echo "==> $dbagent --config $conf run (in the background, log in $sandbox/run.log)"
if [ "$(id -u)" = 0 ]; then
  runuser -u postgres -- env -C "$sandbox" HOME="$sandbox" nohup "$dbagent" --config "$conf" run \
    >"$sandbox/run.log" 2>&1 </dev/null &
else
  nohup "$dbagent" --config "$conf" run >"$sandbox/run.log" 2>&1 </dev/null &
fi
echo $! >"$sandbox/run.pid"
ready=0
for _ in $(seq 100); do
  if curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
if [ "$ready" = 1 ]; then
  echo "dbagent run is ready: metrics at http://127.0.0.1:$http_port/metrics"
else
  echo "quickstart: dbagent run did not become ready; see $sandbox/run.log" >&2
  tail -5 "$sandbox/run.log" >&2 || true
  status=1
fi

cat <<NEXT

The sandbox is up: PostgreSQL $version on 127.0.0.1:$port, data in $data.
The sidecar serves http://127.0.0.1:$http_port/metrics (also /readyz, /api/v1/status).
Try next:
  curl -s http://127.0.0.1:$http_port/metrics | grep -E '^(pg_up|dbagent_connections_exhaustion_ratio) '
  curl -s http://127.0.0.1:$http_port/api/v1/status
  $dbagent --config $conf baselines show
  $dbagent --config $conf backups list
  $dbagent --config $conf jobs list          (hourly backups run by the sidecar; dbagent_leader is 1)
  $dbagent --config $conf backups verify
  $dbagent --config $conf backup --label before-migration
  $dbagent --config $conf check --json
  $dbagent --config $conf config validate
  $dbagent --help
  psql "host=127.0.0.1 port=$port user=dbagent dbname=postgres passfile=$sandbox/pgpass"
Tear it down with: scripts/quickstart.sh --stop
NEXT
exit $status
