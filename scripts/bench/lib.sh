# scripts/bench/lib.sh: the benchmark cluster and the helpers of `scripts/bench.sh backup` and
# `scripts/bench.sh wal-push`. Sourced by scripts/bench.sh, after scripts/lib/deps.sh; also by
# scripts/bench/monitor.sh, which sets BENCH_DIR and BENCH_PORT to its own cluster first and
# uses as_pg, bench_start, bench_cleanup and bench_dbagent_setup.
#
# The benchmark cluster: PostgreSQL 15 in $BENCH_DIR/data (default /var/tmp/dbagent-bench, outside
# the work tree so that `cargo clean` does not take 1.5 GB of pgbench data with it, and where the
# postgres OS user can reach it), listening on 127.0.0.1:$BENCH_PORT (default 54339) only, with
# data checksums on, filled once with `pgbench -i -s $BENCH_SCALE` (default 100, about 1.5 GB,
# a few minutes) and reused by later runs. bench.sh stops it when it exits; remove $BENCH_DIR to
# start over. Authentication is `trust` for the local socket and 127.0.0.1: a throwaway cluster
# that only the bench talks to.
#
# Environment: BENCH_DIR, BENCH_PORT, BENCH_SCALE.

BENCH_DIR=${BENCH_DIR:-/var/tmp/dbagent-bench}
BENCH_PORT=${BENCH_PORT:-54339}
BENCH_SCALE=${BENCH_SCALE:-100}
bench_data=$BENCH_DIR/data
bench_pgbin=${BENCH_PGBIN:-$PG15_BIN}   # scripts/bench/incremental.sh sets PostgreSQL 18's
bench_receivewal_pid=
bench_dbagent=        # the dbagent binary the postgres user runs; empty when it cannot be built
bench_dbagent_done=0
SEG_BYTES=16777216

# PostgreSQL refuses to run as root: as root, run commands as the postgres OS user.
if [ "$(id -u)" = 0 ]; then
  as_pg() { runuser -u postgres -- env -C "$BENCH_DIR" HOME="$BENCH_DIR" "$@"; }
  as_pg_prefix="runuser -u postgres -- env -C $BENCH_DIR HOME=$BENCH_DIR"
else
  as_pg() { "$@"; }
  as_pg_prefix=
fi

bench_die() { echo "bench: $*" >&2; exit 1; }

bench_sql() {
  as_pg "$bench_pgbin/psql" -X -q -A -t -h "$BENCH_DIR" -p "$BENCH_PORT" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -c "$1"
}

bench_running() { [ -f "$bench_data/postmaster.pid" ] && as_pg "$bench_pgbin/pg_ctl" -D "$bench_data" status >/dev/null 2>&1; }

bench_start() {
  bench_running && return 0
  echo "==> starting the benchmark cluster on 127.0.0.1:$BENCH_PORT ($bench_data)"
  as_pg "$bench_pgbin/pg_ctl" -D "$bench_data" -l "$BENCH_DIR/postgresql.log" -w -t 300 start >/dev/null \
    || bench_die "the benchmark cluster did not start; see $BENCH_DIR/postgresql.log"
}

# Stops only this cluster (pg_ctl on its own data directory), and the pg_receivewal this script
# started, if any. Installed as the EXIT trap by bench.sh.
bench_cleanup() {
  if [ -n "$bench_receivewal_pid" ] && kill -0 "$bench_receivewal_pid" 2>/dev/null; then
    kill "$bench_receivewal_pid" 2>/dev/null || true
    wait "$bench_receivewal_pid" 2>/dev/null || true
  fi
  if [ -f "$bench_data/postmaster.pid" ] && bench_running; then
    echo "==> stopping the benchmark cluster (data kept in $bench_data for the next run)"
    as_pg "$bench_pgbin/pg_ctl" -D "$bench_data" -m fast -w -t 120 stop >/dev/null || true
  fi
}

# archive_command lives in an include file of its own, so that the bench can switch it.
bench_set_archive_command() {
  local cmd=$1
  printf "# written by scripts/bench.sh\narchive_command = '%s'\n" "$cmd" >"$bench_data/bench-archive.conf"
  [ "$(id -u)" = 0 ] && chown postgres: "$bench_data/bench-archive.conf"
  if bench_running; then
    bench_sql "SELECT pg_reload_conf()" >/dev/null
    sleep 1
  fi
}

# Creates (once), starts and fills (once) the benchmark cluster.
bench_cluster_ready() {
  mkdir -p "$BENCH_DIR"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$BENCH_DIR"
    runuser -u postgres -- test -x "$BENCH_DIR" \
      || bench_die "the postgres OS user cannot reach $BENCH_DIR; set BENCH_DIR to a path under /var/tmp"
  fi
  as_pg mkdir -p "$BENCH_DIR/bin" "$BENCH_DIR/tmp"
  if [ ! -f "$bench_data/PG_VERSION" ]; then
    echo "==> creating the benchmark cluster ($("$bench_pgbin/postgres" --version)) in $bench_data"
    rm -f "$BENCH_DIR/.pgbench-loaded"
    as_pg "$bench_pgbin/initdb" -D "$bench_data" -U postgres --auth-local=trust --auth-host=trust \
      -E UTF8 --no-locale --data-checksums --no-instructions >/dev/null
    cat >>"$bench_data/postgresql.conf" <<CONF

# --- dbagent benchmark cluster (scripts/bench.sh) ---
listen_addresses = '127.0.0.1'
port = $BENCH_PORT
unix_socket_directories = '$BENCH_DIR'
wal_level = replica
archive_mode = on
max_wal_senders = 5
max_wal_size = 2GB
# pg_basebackup -X fetch needs the backup's WAL still in pg_wal at its end
wal_keep_size = 1GB
include_if_exists = 'bench-archive.conf'
CONF
    bench_set_archive_command /bin/true
  fi
  bench_start
  local want="scale=$BENCH_SCALE"
  if [ "$(cat "$BENCH_DIR/.pgbench-loaded" 2>/dev/null)" != "$want" ]; then
    # WAL of the load is not worth archiving anywhere.
    bench_set_archive_command /bin/true
    echo "==> filling the benchmark cluster: pgbench -i -s $BENCH_SCALE (once; takes a few minutes)"
    local t0=$SECONDS
    as_pg "$bench_pgbin/pgbench" -i -s "$BENCH_SCALE" -I dtGvp -q -h 127.0.0.1 -p "$BENCH_PORT" -U postgres postgres \
      >"$BENCH_DIR/pgbench-init.log" 2>&1 || bench_die "pgbench -i failed; see $BENCH_DIR/pgbench-init.log"
    bench_sql "CHECKPOINT" >/dev/null
    echo "$want" >"$BENCH_DIR/.pgbench-loaded"
    echo "    loaded in $((SECONDS - t0)) s"
  fi
  # What a physical backup has to copy: the data directory without pg_wal.
  bench_data_bytes=$(du -sb --exclude=pg_wal "$bench_data" | cut -f1)
  bench_db_bytes=$(bench_sql "SELECT sum(pg_database_size(oid)) FROM pg_database")
  bench_pg_version=$(bench_sql "SHOW server_version")
  echo "    cluster: $(mb "$bench_data_bytes") MB data directory without pg_wal, $(mb "$bench_db_bytes") MB in databases (sum of pg_database_size)"
}

# Builds dbagent (once per bench.sh run) and copies it where the postgres user can run it.
bench_dbagent_setup() {
  [ "$bench_dbagent_done" = 1 ] && return 0
  bench_dbagent_done=1
  bench_dbagent=
  echo "==> building dbagent (release)"
  if ! cargo build --release --quiet; then
    echo "bench: cargo build --release failed: the dbagent halves are skipped" >&2
    return 0
  fi
  install -m 0755 "${CARGO_TARGET_DIR:-target}/release/dbagent" "$BENCH_DIR/bin/dbagent"
  install -m 0755 scripts/bench/push-each.sh "$BENCH_DIR/bin/push-each.sh"
  install -m 0755 scripts/bench/get-each.sh "$BENCH_DIR/bin/get-each.sh"
  bench_dbagent=$BENCH_DIR/bin/dbagent
  if ! bench_write_dbagent_yml "$BENCH_DIR/dbagent.yml" "$BENCH_DIR/dbagent-repo" "$BENCH_DIR/dbagent-state" \
    || ! bench_write_dbagent_yml "$BENCH_DIR/dbagent-walpush.yml" "$BENCH_DIR/dbagent-walpush-repo" \
      "$BENCH_DIR/dbagent-walpush-state"; then
    echo "bench: no dbagent configuration that this build accepts: the dbagent halves are skipped" >&2
    bench_dbagent=
  fi
}

# dbagent_has SUBCOMMAND: whether this build of dbagent has it.
dbagent_has() { [ -n "$bench_dbagent" ] && "$bench_dbagent" "$1" --help >/dev/null 2>&1; }

# bench_write_dbagent_yml FILE REPO STATE_DIR: renders scripts/bench/dbagent.yml.in and drops the optional
# keys (bin_dir, compression) that `config validate` of this build rejects as unknown.
bench_write_dbagent_yml() {
  local file=$1 repo=$2 state=$3 drop='^$' msg key
  for _ in 1 2 3; do
    sed -e "s|@PORT@|$BENCH_PORT|g" -e "s|@DATA@|$bench_data|g" -e "s|@PG_BIN@|$bench_pgbin|g" \
      -e "s|@REPO@|$repo|g" -e "s|@STATE@|$state|g" scripts/bench/dbagent.yml.in \
      | grep -Ev "^ *($drop):" >"$file"
    [ "$(id -u)" = 0 ] && chown postgres: "$file"
    if msg=$(as_pg "$bench_dbagent" --config "$file" config validate 2>&1); then
      return 0
    fi
    key=$(printf '%s\n' "$msg" | sed -n 's/.*unknown key `\(bin_dir\|compression\)`.*/\1/p' | head -n1)
    if [ -z "$key" ]; then
      echo "bench: dbagent config validate rejects $file: $msg" >&2
      return 1
    fi
    echo "    (this dbagent does not know \`$key\` yet: dropped from $file)"
    drop="$drop|$key"
  done
  return 1
}

bench_write_pgbackrest_conf() {
  local file=$1 repo=$2
  sed -e "s|@PORT@|$BENCH_PORT|g" -e "s|@DATA@|$bench_data|g" -e "s|@DIR@|$BENCH_DIR|g" \
    -e "s|@REPO@|$repo|g" -e "s|@PROCESS_MAX@|$(nproc)|g" scripts/bench/pgbackrest.conf.in >"$file"
  [ "$(id -u)" = 0 ] && chown postgres: "$file"
  return 0
}

# bench_timed CMD...: runs CMD as the postgres OS user under /usr/bin/time; sets t_wall (s) and
# t_rss (peak RSS in KiB: the largest single process of CMD and its children, not their sum) and
# returns CMD's exit status.
bench_timed() {
  local tf=$BENCH_DIR/tmp/time.txt rc=0
  rm -f "$tf"
  as_pg /usr/bin/time -f '%e %M' -o "$tf" "$@" || rc=$?
  t_wall= t_rss=
  if [ -s "$tf" ]; then read -r t_wall t_rss < <(tail -n1 "$tf"); fi
  return $rc
}

# Before each timed backup: a checkpoint (so that the fast checkpoint at backup start has
# little to do, the same for every tool) and `sync` (so that no tool pays for the previous
# one's writeback).
bench_quiesce() {
  bench_sql "CHECKPOINT" >/dev/null
  sync
}

bytes_of() { du -sb "$1" | cut -f1; }
mb() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1e6 }'; }

# Reads the cluster's files once so that every tool starts with the same (warm) page cache.
bench_warm_cache() {
  find "$bench_data" -path "$bench_data/pg_wal" -prune -o -type f -exec cat {} + >/dev/null 2>&1 || true
}

# bench_wal_segments DEST: 64 real, complete WAL segments of the benchmark cluster in DEST, made
# once (pgbench load streamed by pg_receivewal, which writes only completed segments under their
# final name and the one in progress as .partial) and reused while the cluster's system
# identifier is the same.
bench_wal_segments() {
  local dest=$1 need=64 sysid stream=$BENCH_DIR/wal-stream
  sysid=$(as_pg "$bench_pgbin/pg_controldata" "$bench_data" | awk -F': *' '/Database system identifier/ { print $2 }')
  if [ "$(cat "$dest.sysid" 2>/dev/null)" = "$sysid" ] \
    && [ "$(find "$dest" -maxdepth 1 -type f -size "${SEG_BYTES}c" 2>/dev/null | wc -l)" = "$need" ] \
    && [ "$(find "$dest" -mindepth 1 -maxdepth 1 | wc -l)" = "$need" ]; then
    echo "    reusing the $need WAL segments in $dest"
    return 0
  fi
  echo "==> making $need WAL segments: pgbench load on the benchmark cluster, streamed by pg_receivewal"
  bench_set_archive_command /bin/true
  rm -rf "$stream"
  as_pg mkdir -p "$stream"
  bench_sql "CHECKPOINT" >/dev/null   # full-page images after a checkpoint, as in production
  local endpos
  endpos=$(bench_sql "SELECT pg_current_wal_lsn() + $(((need + 2) * SEG_BYTES))::numeric")
  as_pg "$bench_pgbin/pg_receivewal" -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -w -D "$stream" \
    --endpos="$endpos" --no-loop >"$BENCH_DIR/pg_receivewal.log" 2>&1 &
  bench_receivewal_pid=$!
  local t0=$SECONDS
  while kill -0 "$bench_receivewal_pid" 2>/dev/null; do
    [ $((SECONDS - t0)) -gt 1800 ] && bench_die "WAL generation did not reach $endpos in 30 min"
    as_pg "$bench_pgbin/pgbench" -n -c 2 -j 2 -T 10 -h 127.0.0.1 -p "$BENCH_PORT" -U postgres postgres \
      >>"$BENCH_DIR/pgbench-wal.log" 2>&1 || bench_die "pgbench failed; see $BENCH_DIR/pgbench-wal.log"
    echo "    $(find "$stream" -maxdepth 1 -regextype posix-extended -type f -size "${SEG_BYTES}c" -regex '.*/[0-9A-F]{24}' | wc -l) complete segments so far ($((SECONDS - t0)) s)"
  done
  wait "$bench_receivewal_pid" || bench_die "pg_receivewal failed; see $BENCH_DIR/pg_receivewal.log"
  bench_receivewal_pid=
  local files=()
  mapfile -t files < <(find "$stream" -maxdepth 1 -regextype posix-extended -type f -size "${SEG_BYTES}c" -regex '.*/[0-9A-F]{24}' | sort | head -n "$need")
  [ "${#files[@]}" = "$need" ] || bench_die "pg_receivewal left ${#files[@]} complete segments, not $need"
  rm -rf "$dest" "$dest.tmp"
  mkdir -p "$dest.tmp"
  install -m 0644 "${files[@]}" "$dest.tmp/"
  mv "$dest.tmp" "$dest"
  echo "$sysid" >"$dest.sysid"
  rm -rf "$stream"
  echo "    $need segments ($(basename "${files[0]}") .. $(basename "${files[-1]}")) in $dest"
}
