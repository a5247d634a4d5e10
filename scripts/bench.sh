#!/usr/bin/env bash
# scripts/bench.sh: measure dbagent side by side with the tools SREs use instead. Raw results go
# to target/bench/ (*.md, *.json) and are summarised in BENCHMARKS.md by hand.
#
#   scripts/bench.sh            all benchmarks (check, monitor, backup, wal-push, restore, s3,
#                               incremental)
#   scripts/bench.sh check      `dbagent check` vs check_postgres, on the quickstart sandbox cluster
#   scripts/bench.sh monitor    `dbagent run` /metrics vs prometheus-postgres-exporter (default
#                               collectors, and with per-table queries), 1,000 and 10,000 tables:
#                               scrape time, RSS, scrape size, promtool, database time per poll;
#                               own cluster on 127.0.0.1:54340 in /var/tmp/dbagent-bench-monitor
#                               (see scripts/bench/monitor.sh for MONITOR_* settings)
#   scripts/bench.sh backup     `dbagent backup` vs `pgbackrest backup --type=full` (both zstd)
#                               vs plain `pg_basebackup -Ft -X fetch`, on the benchmark cluster
#   scripts/bench.sh wal-push   64 real WAL segments pushed one process per segment:
#                               `dbagent wal-push` vs `pgbackrest archive-push` (both zstd)
#   scripts/bench.sh restore    extraction of the full backup: `dbagent restore --target immediate`
#                               vs `pgbackrest restore` (both zstd, from the repositories of
#                               `backup`, taken first when missing); and 64 segments fetched one
#                               process per segment as restore_command runs them: `dbagent
#                               wal-get` (prefetch 8, and 0) vs `pgbackrest archive-get` (from the
#                               repositories of `wal-push`, filled first when missing)
#   scripts/bench.sh incremental
#                               PostgreSQL 18, pgbench scale 100: `dbagent backup --type
#                               full|incremental` (3 rounds of ~2% changed pages) and restores of
#                               the full, the chain and `restore --delta`, vs pgBackRest block
#                               incremental (repo1-bundle/block) and `restore --delta`; own
#                               cluster on 127.0.0.1:54341 (see scripts/bench/incremental.sh)
#   scripts/bench.sh s3         the same against one S3 server (moto behind TLS, in memory):
#                               backup, wal-push, restore, wal-get vs pgBackRest with
#                               repo1-type=s3, and the listing cost at 100,000 archived segments
#                               (`dbagent check`, `wal verify` vs `pgbackrest info`); see
#                               scripts/bench/s3.sh for S3_PORT, S3_LIST_SEGMENTS
#
# backup and wal-push use a dedicated PostgreSQL 15 cluster on 127.0.0.1:54339 filled with
# `pgbench -i -s 100` (about 1.5 GB), created in /var/tmp/dbagent-bench on the first run and
# reused after that; it is stopped when this script exits (see scripts/bench/lib.sh for
# BENCH_DIR, BENCH_PORT, BENCH_SCALE). dbagent commands that this build does not have yet are
# skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

what=${1:-all}
case "$what" in
  all | check | monitor | backup | wal-push | restore | s3 | incremental) ;;
  *) sed -n '2,39p' "$0"; exit 2 ;;
esac
out=target/bench
mkdir -p "$out"
wants() { [ "$what" = all ] || [ "$what" = "$1" ]; }

if wants check; then
  apt_install hyperfine check-postgres
  bash scripts/quickstart.sh >/dev/null || true
  sandbox=${SANDBOX_DIR:-$(pwd)/sandbox}
  port=${SANDBOX_PORT:-54329}
  conf=$sandbox/dbagent.yml
  dbagent=$sandbox/bin/dbagent

  echo "==> dbagent check (every check, one process) vs check_postgres (the same ground, one action per run)"
  # check_postgres needs one invocation per action; these cover connection, version,
  # archiving backlog, WAL files, settings and wraparound, which is less than dbagent check does.
  export PGPASSFILE=$sandbox/pgpass
  cp_args="--host=127.0.0.1 --port=$port --dbuser=dbagent --dbname=postgres"
  check_postgres_set="check_postgres --action=connection $cp_args >/dev/null; \
check_postgres --action=version --warning=13 $cp_args >/dev/null; \
check_postgres --action=archive_ready $cp_args >/dev/null; \
check_postgres --action=wal_files $cp_args >/dev/null; \
check_postgres --action=settings_checksum --critical=0 $cp_args >/dev/null; \
check_postgres --action=txn_wraparound $cp_args >/dev/null; true"
  hyperfine --warmup 3 --runs 30 --export-markdown "$out/check.md" \
    -n "dbagent check" "$dbagent --config $conf check >/dev/null" \
    -n "check_postgres x6 actions" "$check_postgres_set"
  cat "$out/check.md"
  echo "==> peak memory of one dbagent check"
  /usr/bin/time -f "max RSS %M KiB, %e s" "$dbagent" --config "$conf" check >/dev/null
  unset PGPASSFILE
fi

if wants monitor; then
  # A process of its own: its cluster, trap and variables are not the backup benchmark's.
  bash scripts/bench/monitor.sh
fi

if wants incremental; then
  # Its own PostgreSQL 18 cluster and pgBackRest build: a process of its own too.
  bash scripts/bench/incremental.sh
fi

wants backup || wants wal-push || wants restore || wants s3 || exit 0

# ---------------------------------------------------------------------------------------------
# backup and wal-push: the benchmark cluster
# ---------------------------------------------------------------------------------------------
apt_install postgresql-15 postgresql-client-15 pgbackrest hyperfine time jq
source scripts/bench/lib.sh
trap bench_cleanup EXIT
bench_cluster_ready
bench_dbagent_setup
as_pg mkdir -p "$BENCH_DIR/pgbackrest-log" "$BENCH_DIR/pgbackrest-lock" "$BENCH_DIR/pgbackrest-spool"
bench_write_pgbackrest_conf "$BENCH_DIR/pgbackrest.conf" "$BENCH_DIR/pgbackrest-repo"
bench_write_pgbackrest_conf "$BENCH_DIR/pgbackrest-walpush.conf" "$BENCH_DIR/pgbackrest-walpush-repo"
pgbr() { as_pg pgbackrest --config="$BENCH_DIR/pgbackrest.conf" --stanza=bench "$@"; }
machine="$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME")"
pgbackrest_version=$(pgbackrest version | awk '{ print $2 }')
dbagent_version=$([ -n "$bench_dbagent" ] && "$bench_dbagent" --version | awk '{ print $2 }' || echo "not built")

if wants backup; then
  echo "==> backup: dbagent backup vs pgbackrest backup --type=full vs pg_basebackup, cluster $(mb "$bench_data_bytes") MB"
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  results=$BENCH_DIR/tmp/backup-results.tsv
  : >"$results"
  # record TOOL COMMAND STATUS WALL_S RSS_KIB REPO_BYTES NOTE
  record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"; }

  # A dbagent backup waits for its WAL to be archived by dbagent, so archive_command is
  # dbagent's wal-push into the backup's repository. Until that command exists the WAL is
  # thrown away (/bin/true) rather than piling up in pg_wal behind a failing archive_command.
  if dbagent_has wal-push; then
    bench_set_archive_command "$bench_dbagent --config $BENCH_DIR/dbagent.yml wal-push %p"
  else
    echo "    dbagent wal-push not available yet: archive_command = /bin/true for now"
    bench_set_archive_command /bin/true
  fi
  echo "    warming the page cache with the cluster's files, so that every tool reads from memory"
  bench_warm_cache

  # a. dbagent backup (zstd, its default): compressed on the server when it can (the default,
  # backup.compress_on: auto), then compressed by dbagent itself (compress_on: dbagent).
  { cat "$BENCH_DIR/dbagent.yml"; printf 'backup:\n  compress_on: dbagent\n'; } >"$BENCH_DIR/dbagent-inproc.yml"
  for variant in auto dbagent; do
    yml=$BENCH_DIR/dbagent.yml
    [ "$variant" = dbagent ] && yml=$BENCH_DIR/dbagent-inproc.yml
    cmd="dbagent --config $(basename "$yml") backup --json --no-progress (compress_on: $variant)"
    if dbagent_has backup; then
      echo "==> $cmd"
      rm -rf "$BENCH_DIR/dbagent-repo" "$BENCH_DIR/dbagent-state"
      bench_quiesce
      if bench_timed "$bench_dbagent" --config "$yml" backup --json --no-progress \
        >"$out/dbagent-backup-$variant.json"; then
        record dbagent "$cmd" ok "$t_wall" "$t_rss" "$(bytes_of "$BENCH_DIR/dbagent-repo")" \
          "repository incl. the WAL archived during the backup; compressed by $(sed -n 's/.*"compressed_by": "\(.*\)".*/\1/p' "$out/dbagent-backup-$variant.json")"
      else
        echo "    dbagent backup FAILED (exit status $?); see above and $out/dbagent-backup-$variant.json" >&2
        record dbagent "$cmd" failed "$t_wall" "$t_rss" "" "failed"
      fi
    else
      echo "    dbagent backup not available yet, skipped"
      record dbagent "$cmd" skipped "" "" "" "not available yet"
    fi
  done

  # b. pgBackRest, zst at its default level, process-max = cores; archive-check=n (see
  # scripts/bench/pgbackrest.conf.in: its archive is not the cluster's archive_command).
  cmd="pgbackrest backup --type=full (zst, process-max=$(nproc))"
  echo "==> $cmd"
  rm -rf "$BENCH_DIR/pgbackrest-repo"
  pgbr stanza-create >/dev/null
  bench_quiesce
  if bench_timed pgbackrest --config="$BENCH_DIR/pgbackrest.conf" --stanza=bench --type=full backup; then
    record pgBackRest "$cmd" ok "$t_wall" "$t_rss" "$(bytes_of "$BENCH_DIR/pgbackrest-repo")" \
      "pgBackRest $pgbackrest_version; repository: backup + stanza files, no WAL"
    pgbr info --output=json >"$out/pgbackrest-info.json"
  else
    echo "    pgbackrest backup FAILED; see $BENCH_DIR/pgbackrest-log/bench-backup.log" >&2
    record pgBackRest "$cmd" failed "$t_wall" "$t_rss" "" "failed"
  fi

  # c. pg_basebackup, tar format, no compression: the baseline
  cmd="pg_basebackup -Ft -X fetch -c fast"
  echo "==> $cmd"
  rm -rf "$BENCH_DIR/basebackup"
  bench_quiesce
  if bench_timed "$bench_pgbin/pg_basebackup" -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -w \
    -Ft -D "$BENCH_DIR/basebackup" -X fetch -c fast; then
    record pg_basebackup "$cmd" ok "$t_wall" "$t_rss" "$(bytes_of "$BENCH_DIR/basebackup")" \
      "PostgreSQL $bench_pg_version; base.tar + pg_wal.tar + manifest, uncompressed"
  else
    echo "    pg_basebackup FAILED" >&2
    record pg_basebackup "$cmd" failed "$t_wall" "$t_rss" "" "failed"
  fi

  # The raw results, then the table.
  jq -R -s --arg date "$(date -u +%FT%TZ)" --arg machine "$machine" \
    --argjson data_bytes "$bench_data_bytes" --argjson db_bytes "$bench_db_bytes" \
    --arg pg "$bench_pg_version" --arg load "$load_before" --argjson scale "$BENCH_SCALE" --arg dbagent "$dbagent_version" '
    def num: if . == "" then null else tonumber end;
    { date: $date, machine: $machine, load_average_before: $load, postgres: $pg, dbagent: $dbagent,
      cluster: { pgbench_scale: $scale, data_dir_bytes_without_pg_wal: $data_bytes,
                 sum_pg_database_size_bytes: $db_bytes },
      results: [ split("\n")[] | select(length > 0) | split("\t") as $f |
        { tool: $f[0], command: $f[1], status: $f[2], wall_s: ($f[3] | num),
          max_rss_kib: ($f[4] | num), repo_bytes: ($f[5] | num), note: $f[6],
          mb_per_s: (if $f[3] == "" or $f[2] != "ok" then null
                     else ($data_bytes / 1e6 / ($f[3] | tonumber) * 10 | round / 10) end) } ] }' \
    "$results" >"$out/backup.json"
  {
    echo "# Backup: dbagent vs pgBackRest vs pg_basebackup"
    echo
    echo "$(date -u +%F), $machine; PostgreSQL $bench_pg_version, pgbench scale $BENCH_SCALE:" \
      "data directory $(mb "$bench_data_bytes") MB without pg_wal (sum of pg_database_size" \
      "$(mb "$bench_db_bytes") MB), data checksums on. One run each, warm page cache, backups" \
      "written to the same disk. MB/s = data directory size / wall time (1 MB = 10^6 bytes)." \
      "Peak RSS: the largest single process (/usr/bin/time %M). Load average before the run:" \
      "$load_before (other work on the machine makes these numbers noisy)."
    echo
    echo "| Tool | Command | Wall time | Throughput | Repository size | vs cluster | Peak RSS | Notes |"
    echo "|:---|:---|---:|---:|---:|---:|---:|:---|"
    jq -r '.cluster.data_dir_bytes_without_pg_wal as $c | .results[] |
      if .status == "ok" then
        "| \(.tool) | `\(.command)` | \(.wall_s) s | \(.mb_per_s) MB/s | \(.repo_bytes / 1e6 | round) MB | \(.repo_bytes * 1000 / $c | round / 10) % | \(.max_rss_kib / 1024 | round) MiB | \(.note) |"
      else
        "| \(.tool) | `\(.command)` | \(.status) | | | | | \(.note) |"
      end' "$out/backup.json"
  } >"$out/backup.md"
fi

if wants wal-push; then
  segs=$(pwd)/$out/wal-segments
  bench_wal_segments "$segs"
  nseg=$(find "$segs" -mindepth 1 -maxdepth 1 -type f | wc -l)
  seg_bytes=$(find "$segs" -mindepth 1 -maxdepth 1 -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "==> wal-push: $nseg segments, one process per segment: dbagent wal-push vs pgbackrest archive-push"
  dbagent_repo=$BENCH_DIR/dbagent-walpush-repo
  pgbr_repo=$BENCH_DIR/pgbackrest-walpush-repo
  pgbr_conf=$BENCH_DIR/pgbackrest-walpush.conf
  push_each="$as_pg_prefix $BENCH_DIR/bin/push-each.sh $segs"
  dbagent_push="$bench_dbagent --config $BENCH_DIR/dbagent-walpush.yml wal-push"
  pgbr_push="pgbackrest --config=$pgbr_conf --stanza=bench archive-push"
  # Fresh repositories before every timed run: dbagent's is created by its first push (and bound
  # to the cluster of that segment), pgBackRest's needs a stanza (stanza-create reads the running
  # cluster). Only the pushes are timed.
  dbagent_reset="rm -rf $dbagent_repo $BENCH_DIR/dbagent-walpush-state && sync"
  pgbr_reset="rm -rf $pgbr_repo && $as_pg_prefix pgbackrest --config=$pgbr_conf --stanza=bench stanza-create >/dev/null && sync"
  cat "$segs"/* >/dev/null   # every run reads the segments from the page cache
  hf_args=()
  if dbagent_has wal-push; then
    hf_args+=(--prepare "$dbagent_reset" -n "dbagent wal-push" "$push_each $dbagent_push")
  else
    echo "    dbagent wal-push not available yet, skipped"
  fi
  hf_args+=(--prepare "$pgbr_reset" -n "pgbackrest archive-push" "$push_each $pgbr_push")
  hyperfine --runs 3 --export-json "$out/wal-push-hyperfine.json" \
    --export-markdown "$out/wal-push-hyperfine.md" "${hf_args[@]}"

  # Peak RSS of one push: one more pass with every push under /usr/bin/time, into a fresh
  # repository, which also gives the archive's size.
  rss_pass() { # NAME RESET PUSH... -> appends "name max_rss_kib median_rss_kib repo_bytes" to rss.tsv
    local name=$1 reset=$2 repo=$3
    shift 3
    local tf=$BENCH_DIR/tmp/push-times.txt
    rm -f "$tf"
    bash -c "$reset"
    as_pg env PUSH_TIME_FILE="$tf" "$BENCH_DIR/bin/push-each.sh" "$segs" "$@"
    printf '%s\t%s\t%s\t%s\n' "$name" "$(awk '{ print $2 }' "$tf" | sort -n | tail -n1)" \
      "$(awk '{ print $2 }' "$tf" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')" \
      "$(bytes_of "$repo")" >>"$BENCH_DIR/tmp/rss.tsv"
  }
  : >"$BENCH_DIR/tmp/rss.tsv"
  echo "==> peak RSS of one push (one more pass, each push under /usr/bin/time)"
  if dbagent_has wal-push; then
    rss_pass "dbagent wal-push" "$dbagent_reset" "$dbagent_repo" $dbagent_push
  fi
  rss_pass "pgbackrest archive-push" "$pgbr_reset" "$pgbr_repo" $pgbr_push

  jq -R -s --slurpfile hf "$out/wal-push-hyperfine.json" --arg date "$(date -u +%FT%TZ)" \
    --arg machine "$machine" --arg load "$load_before" --argjson n "$nseg" --argjson seg_bytes "$seg_bytes" \
    --arg pgbackrest "pgBackRest $pgbackrest_version" --arg dbagent "$dbagent_version" '
    [ split("\n")[] | select(length > 0) | split("\t") | { key: .[0], value: . } ] | from_entries as $rss |
    { date: $date, machine: $machine, load_average_before: $load, dbagent: $dbagent,
      pgbackrest: $pgbackrest, segments: $n,
      segment_bytes_total: $seg_bytes,
      results: [ $hf[0].results[] | . as $r | ($rss[$r.command] // []) as $m |
        { tool: $r.command, runs: ($r.times | length), mean_s: $r.mean, stddev_s: $r.stddev,
          min_s: $r.min, max_s: $r.max, segments_per_s: ($n / $r.mean),
          ms_per_push: ($r.mean / $n * 1000),
          max_rss_kib_one_push: ($m[1] | tonumber? // null),
          median_rss_kib_one_push: ($m[2] | tonumber? // null),
          archive_bytes: ($m[3] | tonumber? // null) } ] }' \
    "$BENCH_DIR/tmp/rss.tsv" >"$out/wal-push.json"
  {
    echo "# WAL push: dbagent wal-push vs pgbackrest archive-push"
    echo
    echo "$(date -u +%F), $machine; $nseg real 16 MiB WAL segments of the benchmark cluster" \
      "(pgbench TPC-B load, full-page images after a checkpoint), pushed one process per segment" \
      "as archive_command would, into a fresh repository on the same disk, fsync included; both" \
      "zstd at the default level. Wall time: hyperfine, 3 runs. Peak RSS: the largest of the" \
      "$nseg pushes (/usr/bin/time %M) in one more pass. Load average before the run:" \
      "$load_before (other work on the machine makes these numbers noisy)."
    echo
    echo "| Tool | Total wall time ($nseg segments) | Segments/s | Per push | Peak RSS of one push | Archive size | vs WAL |"
    echo "|:---|---:|---:|---:|---:|---:|---:|"
    jq -r '.segment_bytes_total as $w | .results[] |
      "| `\(.tool)` | \(.mean_s * 100 | round / 100) s ± \(.stddev_s * 100 | round / 100) | \(.segments_per_s * 10 | round / 10) | \(.ms_per_push | round) ms | \(if .max_rss_kib_one_push then "\(.max_rss_kib_one_push / 1024 * 10 | round / 10) MiB" else "" end) | \(if .archive_bytes then "\(.archive_bytes / 1e6 | round) MB" else "" end) | \(if .archive_bytes then "\(.archive_bytes * 1000 / $w | round / 10) %" else "" end) |"' \
      "$out/wal-push.json"
    dbagent_has wal-push || { echo; echo "dbagent wal-push: not available yet, skipped."; }
    echo
    echo "hyperfine:"
    echo
    cat "$out/wal-push-hyperfine.md"
  } >"$out/wal-push.md"
fi

if wants restore; then
  source scripts/bench/restore.sh
fi

if wants s3; then
  source scripts/bench/s3.sh
fi

for f in backup wal-push restore s3; do
  if wants "$f" && [ -f "$out/$f.md" ]; then
    echo
    cat "$out/$f.md"
  fi
done
echo
echo "raw results: $(ls "$out"/*.json "$out"/*.md | tr '\n' ' ')"
