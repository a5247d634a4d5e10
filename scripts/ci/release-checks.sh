#!/usr/bin/env bash
# scripts/ci/release-checks.sh: what a new user does on the first day, checked on this machine
# after the test suite (scripts/test.sh runs it when CI=true or with --release-checks).
#
#   scripts/ci/release-checks.sh           all three checks
#   scripts/ci/release-checks.sh NAME...   only these: install, deb, quickstart
#
# One release build is shared by every step:
#   install     `cargo install --locked --path .` reuses that build (same target/) and the
#               installed binary runs;
#   deb         scripts/package-deb.sh builds the .deb, `apt-get install` installs it, and the
#               installed dbagent archives WAL, backs up, drills and checks (all OK) a
#               PostgreSQL cluster started as the postgres OS user on 127.0.0.1 and a free
#               port; then the package is purged and nothing of it is left;
#   quickstart  scripts/quickstart.sh on a scratch SANDBOX_DIR and free ports exits 0, its
#               `check --json` is all OK, /metrics has pg_up 1, --trigger-alert delivers a
#               firing PostgresDown to the sandbox webhook (alerts.log), --stop leaves nothing
#               running.
# Needs root (apt-get, the postgres OS user). Prints how long each step took.
set -euo pipefail
cd "$(dirname "$0")/../.."

source scripts/lib/deps.sh
# Cargo's target directory (CI keeps it outside the clone: .ci/run).
target_dir=${CARGO_TARGET_DIR:-target}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(install deb quickstart)
for s in "${steps[@]}"; do
  case "$s" in
    install|deb|quickstart) ;;
    *) echo "release-checks: unknown check $s (install, deb, quickstart)" >&2; exit 2 ;;
  esac
done

fail() { echo "release-checks: FAILED: $*" >&2; exit 1; }
now() { date +%s; }
# A TCP port nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

scratch=$(mktemp -d /var/tmp/dbagent-release-checks.XXXXXX)
chmod 0755 "$scratch"
cleanups=()
cleanup() {
  local i
  for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do eval "${cleanups[$i]}" || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT

apt_install postgresql-15 postgresql-client-15 curl man-db

t0=$(now)
echo "==> release-checks: cargo build --release --locked (shared by every check)"
cargo build --release --locked
t_build=$(( $(now) - t0 ))
version=$($target_dir/release/dbagent --version)
timings="build ${t_build}s"

check_install() {
  local t root out
  t=$(now)
  root=$scratch/cargo-install
  # `cargo install --path` builds in the checkout's target directory (or CARGO_TARGET_DIR), so
  # the documented command, as it is, installs the release build made above.
  echo "==> release-checks install: cargo install --locked --path . (reuses target/)"
  out=$(cargo install --locked --path . --root "$root" 2>&1) \
    || { echo "$out" >&2; fail "cargo install --locked --path ."; }
  echo "$out" | tail -3
  # The release build above is the one installed: cargo found nothing to compile.
  if echo "$out" | grep -q "Compiling dbagent"; then
    fail "cargo install rebuilt dbagent instead of reusing $target_dir/release"
  fi
  [ "$("$root/bin/dbagent" --version)" = "$version" ] || fail "the installed dbagent is not $version"
  "$root/bin/dbagent" --help >/dev/null || fail "the installed dbagent --help"
  timings+=", install $(( $(now) - t ))s"
}

check_deb() {
  local t deb port data conf out
  t=$(now)
  echo "==> release-checks deb: scripts/package-deb.sh --no-build --fast"
  bash scripts/package-deb.sh --no-build --fast
  deb=$(ls -t $target_dir/debian/dbagent_*.deb | head -1)
  if dpkg-query -W -f='${Status}' dbagent 2>/dev/null | grep -q "install ok installed"; then
    fail "a dbagent package is installed already; purge it first (apt-get purge dbagent)"
  fi
  # The package's directories must be ours to remove afterwards (purge keeps a non-empty
  # repository, as it should on a real server).
  [ ! -e /var/lib/dbagent ] || fail "/var/lib/dbagent exists already: this check installs the package there; move it away first"
  cleanups+=("rm -rf /var/lib/dbagent")
  echo "==> release-checks deb: apt-get install ./$deb"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
  cleanups+=("DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq dbagent >/dev/null 2>&1")

  [ "$(/usr/bin/dbagent --version)" = "$version" ] || fail "/usr/bin/dbagent --version is not $version"
  man -w dbagent-restore >/dev/null || fail "man dbagent-restore: no page installed"
  man -w dbagent-backups-list >/dev/null || fail "man dbagent-backups-list: no page installed"
  for f in /usr/lib/systemd/system/dbagent.service /usr/share/bash-completion/completions/dbagent \
           /usr/share/zsh/vendor-completions/_dbagent /usr/share/fish/vendor_completions.d/dbagent.fish \
           /usr/share/doc/dbagent/runbooks.md /usr/share/doc/dbagent/install.md; do
    [ -f "$f" ] || fail "$f is not installed"
  done
  grep -q '^ExecStart=/usr/bin/dbagent ' /usr/lib/systemd/system/dbagent.service \
    || fail "dbagent.service does not start /usr/bin/dbagent"
  for f in dbagent.yml alerts.yml dbagent.env; do
    grep -qx "/etc/dbagent/$f" /var/lib/dpkg/info/dbagent.conffiles || fail "/etc/dbagent/$f is not a conffile"
  done
  [ "$(stat -c '%a %U' /etc/dbagent/dbagent.env)" = "600 root" ] || fail "/etc/dbagent/dbagent.env is not 0600 root"
  [ "$(stat -c '%a %U:%G' /etc/dbagent/dbagent.yml)" = "640 root:postgres" ] || fail "/etc/dbagent/dbagent.yml is not 0640 root:postgres"
  [ "$(stat -c '%a %U' /var/lib/dbagent/repo)" = "700 postgres" ] || fail "/var/lib/dbagent/repo is not 0700 postgres"
  runuser -u postgres -- /usr/bin/dbagent --config /etc/dbagent/dbagent.yml config validate >/dev/null \
    || fail "the shipped /etc/dbagent/dbagent.yml does not validate as postgres"

  # A cluster of our own, as an SRE's would be: archive_command is the installed wal-push,
  # the repository and state are the package's directories.
  port=$(free_port)
  install -d -o postgres -g postgres -m 0700 "$scratch/deb"
  data=$scratch/deb/data
  conf=$scratch/deb-dbagent.yml
  cat > "$conf" <<YML
postgres:
  conninfo: "host=127.0.0.1 port=$port user=postgres dbname=postgres"
  pgdata: $data
repository:
  path: /var/lib/dbagent/repo
state_dir: /var/lib/dbagent/state
YML
  chmod 0644 "$conf"
  runuser -u postgres -- "$PG15_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
    --no-locale --no-instructions --data-checksums >/dev/null
  cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
wal_level = replica
archive_mode = on
archive_command = '/usr/bin/dbagent --config $conf wal-push %p'
archive_timeout = '60s'
shared_preload_libraries = 'pg_stat_statements'
CONF
  runuser -u postgres -- "$PG15_BIN/pg_ctl" -D "$data" -l "$scratch/deb/postgresql.log" -w -t 60 start >/dev/null
  cleanups+=("runuser -u postgres -- '$PG15_BIN/pg_ctl' -D '$data' -m immediate -w stop >/dev/null 2>&1")
  runuser -u postgres -- "$PG15_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
    -c 'CREATE EXTENSION pg_stat_statements' >/dev/null
  echo "==> release-checks deb: backup, drill, wal verify and check with /usr/bin/dbagent (PostgreSQL 15 on 127.0.0.1:$port)"
  runuser -u postgres -- env -C /var/lib/dbagent /usr/bin/dbagent --config "$conf" backup --no-progress >/dev/null \
    || fail "backup with the installed dbagent"
  runuser -u postgres -- env -C /var/lib/dbagent /usr/bin/dbagent --config "$conf" drill >/dev/null \
    || fail "drill with the installed dbagent"
  runuser -u postgres -- env -C /var/lib/dbagent /usr/bin/dbagent --config "$conf" wal verify >/dev/null \
    || fail "wal verify with the installed dbagent"
  if ! out=$(runuser -u postgres -- env -C /var/lib/dbagent /usr/bin/dbagent --config "$conf" check); then
    echo "$out" >&2
    fail "dbagent check of the cluster is not OK"
  fi
  echo "$out" | head -1
  runuser -u postgres -- "$PG15_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null

  echo "==> release-checks deb: apt-get purge dbagent"
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq dbagent >/dev/null
  [ ! -e /usr/bin/dbagent ] || fail "/usr/bin/dbagent is left after purge"
  [ ! -e /etc/dbagent ] || fail "/etc/dbagent is left after purge"
  [ ! -e /var/lib/dbagent/state ] || fail "/var/lib/dbagent/state is left after purge"
  # The repository holds backups: purge keeps it (and says so); this one was ours.
  rm -rf /var/lib/dbagent
  timings+=", deb $(( $(now) - t ))s"
}

check_quickstart() {
  local t sandbox qs_env json alerts leftover
  t=$(now)
  sandbox=$scratch/sandbox
  qs_env=(SANDBOX_DIR="$sandbox" SANDBOX_PORT="$(free_port)" SANDBOX_HTTP_PORT="$(free_port)"
          SANDBOX_HOOK_PORT="$(free_port)")
  cleanups+=("env ${qs_env[*]} bash scripts/quickstart.sh --stop >/dev/null 2>&1")
  echo "==> release-checks quickstart: scripts/quickstart.sh (${qs_env[*]})"
  env "${qs_env[@]}" bash scripts/quickstart.sh || fail "scripts/quickstart.sh exited $?"

  json=$(runuser -u postgres -- env -C "$sandbox" "$sandbox/bin/dbagent" --config "$sandbox/dbagent.yml" check --json) \
    || { echo "$json" >&2; fail "the sandbox's check is not OK"; }
  echo "$json" | python3 -c '
import json, sys
j = json.load(sys.stdin)
bad = [c["name"] + " " + c["status"] for c in j["checks"] if c["status"] != "ok"]
assert j["status"] == "ok" and not bad, "checks not OK: %s" % bad
print("check --json: %d checks, all ok" % len(j["checks"]))
' || fail "check --json is not all OK"

  local http_port=${qs_env[2]#SANDBOX_HTTP_PORT=}
  local metrics
  metrics=$(curl -fsS "http://127.0.0.1:$http_port/metrics") || fail "GET /metrics"
  grep -qx 'pg_up 1' <<<"$metrics" || fail "/metrics has no pg_up 1"
  echo "/metrics: pg_up 1"

  echo "==> release-checks quickstart: scripts/quickstart.sh --trigger-alert"
  env "${qs_env[@]}" bash scripts/quickstart.sh --trigger-alert || fail "--trigger-alert"
  alerts=$sandbox/alerts.log
  python3 - "$alerts" <<'PY' || fail "no firing PostgresDown notification in the sandbox's alerts.log"
import json, sys
seen = set()
for line in open(sys.argv[1], encoding="utf-8"):
    n = json.loads(line)
    for a in n["alerts"]:
        seen.add((a["labels"]["alertname"], a["status"]))
assert ("PostgresDown", "firing") in seen, seen
print("alerts.log: %s" % sorted(seen))
PY

  local pids
  pids="$(cat "$sandbox/run.pid") $(cat "$sandbox/webhook.pid")"
  echo "==> release-checks quickstart: scripts/quickstart.sh --stop"
  env "${qs_env[@]}" bash scripts/quickstart.sh --stop
  leftover=""
  for pid in $pids; do kill -0 "$pid" 2>/dev/null && leftover+=" $pid"; done
  [ -z "$leftover" ] || fail "still running after --stop:$leftover"
  if pgrep -f -- "-D $sandbox/data" >/dev/null; then fail "the sandbox cluster still runs after --stop"; fi
  [ ! -e "$sandbox" ] || fail "$sandbox is left after --stop"
  timings+=", quickstart $(( $(now) - t ))s"
}

for s in "${steps[@]}"; do "check_$s"; done
echo "release-checks: OK ($version; $timings; total $(( $(now) - t0 ))s)"
