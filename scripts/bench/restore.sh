# scripts/bench/restore.sh: `scripts/bench.sh restore`, sourced by scripts/bench.sh after the
# benchmark cluster, dbagent and the pgBackRest configurations are set up (it uses their
# variables and helpers: out, pgbr, bench_timed, bench_dbagent, ...).
#
# 1. Extraction of the newest full backup into an empty directory, page cache warm with the
#    repository, `sync` before each run: `dbagent restore --target immediate` against
#    `pgbackrest restore --type=immediate` (both zstd, process-max = cores). dbagent writes the
#    files without fsync (PostgreSQL syncs the data directory when it starts from a backup);
#    pgBackRest fsyncs every file. So both are also measured with a `sync` after them: the
#    time until the restored files are on disk.
# 2. 64 WAL segments fetched in order, one process per segment, as restore_command runs them:
#    `dbagent wal-get` with repository.prefetch 8 and 0 against `pgbackrest archive-get`
#    (archive-async off, its default).
# The restored directories are removed at the end.

restore_results=$BENCH_DIR/tmp/restore-results.tsv
: >"$restore_results"
# rrecord KIND TOOL COMMAND STATUS WALL_S WALL_WITH_SYNC_S RSS_KIB NOTE
rrecord() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$restore_results"; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
rdir_dbagent=$BENCH_DIR/restore-dbagent
rdir_pgbr=$BENCH_DIR/restore-pgbackrest
walget_dir=$BENCH_DIR/walget
restore_cleanup() { rm -rf "$rdir_dbagent" "$rdir_pgbr" "$walget_dir"; }
restore_cleanup

# The backups: reuse those of `scripts/bench.sh backup`, take them when missing.
if dbagent_has restore; then
  if ! ls "$BENCH_DIR"/dbagent-repo/backups/*/manifest.json >/dev/null 2>&1; then
    echo "==> no dbagent backup yet: taking one"
    bench_set_archive_command "$bench_dbagent --config $BENCH_DIR/dbagent.yml wal-push %p"
    as_pg "$bench_dbagent" --config "$BENCH_DIR/dbagent.yml" backup --no-progress >/dev/null
  fi
fi
if [ "$(pgbr info --output=json 2>/dev/null | jq '.[0].backup | length' 2>/dev/null || echo 0)" = 0 ]; then
  echo "==> no pgBackRest backup yet: taking one"
  pgbr stanza-create >/dev/null 2>&1 || true
  pgbr --type=full backup
fi
dbagent_backup=$(ls -1 "$BENCH_DIR"/dbagent-repo/backups/ 2>/dev/null | tail -n1)
pgbr_backup=$(pgbr info --output=json | jq -r '.[0].backup[-1].label')
cat "$BENCH_DIR"/dbagent-repo/backups/*/* "$BENCH_DIR"/pgbackrest-repo/backup/bench/*/*/* >/dev/null 2>&1 || true
cat "$BENCH_DIR"/pgbackrest-repo/backup/bench/*/pg_data/*/* >/dev/null 2>&1 || true

echo "==> restore: dbagent restore (backup $dbagent_backup) vs pgbackrest restore (backup $pgbr_backup)"
if dbagent_has restore; then
  cmd="dbagent restore --to DIR --target immediate"
  sync
  if bench_timed "$bench_dbagent" --config "$BENCH_DIR/dbagent.yml" restore --to "$rdir_dbagent" \
    --target immediate --json >"$out/dbagent-restore.json"; then
    w=$t_wall r=$t_rss
    s0=$(date +%s.%N); sync; s1=$(date +%s.%N)
    rrecord extract dbagent "$cmd" ok "$w" "$(echo "$w + $s1 - $s0" | bc -l | xargs printf '%.2f')" "$r" \
      "zstd, SHA-256 of every stored file checked while extracting"
  else
    echo "    dbagent restore FAILED; see $out/dbagent-restore.json" >&2
    rrecord extract dbagent "$cmd" failed "$t_wall" "" "$t_rss" "failed"
  fi
else
  rrecord extract dbagent "dbagent restore" skipped "" "" "" "not available yet"
fi
cmd="pgbackrest restore --type=immediate (zst, process-max=$(nproc))"
as_pg mkdir -m 0700 "$rdir_pgbr"
sync
if bench_timed pgbackrest --config="$BENCH_DIR/pgbackrest.conf" --stanza=bench --pg1-path="$rdir_pgbr" \
  --type=immediate --target-action=promote restore; then
  w=$t_wall r=$t_rss
  s0=$(date +%s.%N); sync; s1=$(date +%s.%N)
  rrecord extract pgBackRest "$cmd" ok "$w" "$(echo "$w + $s1 - $s0" | bc -l | xargs printf '%.2f')" "$r" \
    "pgBackRest $pgbackrest_version; fsyncs each file; checks each file's SHA-1"
else
  echo "    pgbackrest restore FAILED; see $BENCH_DIR/pgbackrest-log" >&2
  rrecord extract pgBackRest "$cmd" failed "$t_wall" "" "$t_rss" "failed"
fi
restored_bytes=$(du -sb --exclude=pg_wal "$rdir_pgbr" 2>/dev/null | cut -f1 || echo "$bench_data_bytes")
rm -rf "$rdir_dbagent" "$rdir_pgbr"

# WAL: the segments both wal-push repositories hold (scripts/bench.sh wal-push fills them).
names=$BENCH_DIR/tmp/walget-names.txt
list_walpush() {
  find "$BENCH_DIR/dbagent-walpush-repo/wal" -mindepth 2 -name '*.zst' -printf '%f\n' 2>/dev/null \
    | sed 's/\.zst$//' | grep -E '^[0-9A-F]{24}$' | sort >"$names.a" || true
  find "$BENCH_DIR/pgbackrest-walpush-repo/archive" -name '*.zst' -printf '%f\n' 2>/dev/null \
    | cut -c1-24 | sort >"$names.b" || true
  comm -12 "$names.a" "$names.b" >"$names"
}
list_walpush
if [ "$(wc -l <"$names")" -lt 64 ]; then
  echo "==> the wal-push repositories do not hold 64 common segments: filling them"
  segs=$(pwd)/$out/wal-segments
  bench_wal_segments "$segs"
  rm -rf "$BENCH_DIR/dbagent-walpush-repo" "$BENCH_DIR/pgbackrest-walpush-repo"
  pgbackrest --config="$BENCH_DIR/pgbackrest-walpush.conf" --stanza=bench stanza-create >/dev/null
  as_pg "$BENCH_DIR/bin/push-each.sh" "$segs" "$bench_dbagent" --config "$BENCH_DIR/dbagent-walpush.yml" wal-push
  as_pg "$BENCH_DIR/bin/push-each.sh" "$segs" pgbackrest --config="$BENCH_DIR/pgbackrest-walpush.conf" --stanza=bench archive-push
  list_walpush
fi
nseg=$(wc -l <"$names")
as_pg mkdir -p "$walget_dir/pg_wal"
for p in 8 0; do
  { grep -v '^state_dir' "$BENCH_DIR/dbagent-walpush.yml" | sed '/^repository:/a\  prefetch: '"$p"
    echo "state_dir: $BENCH_DIR/dbagent-walpush-state"; } >"$BENCH_DIR/dbagent-walget-$p.yml"
  [ "$(id -u)" = 0 ] && chown postgres: "$BENCH_DIR/dbagent-walget-$p.yml"
done
cat "$BENCH_DIR"/dbagent-walpush-repo/wal/*/* "$BENCH_DIR"/pgbackrest-walpush-repo/archive/bench/*/*/* >/dev/null
get_each="$as_pg_prefix $BENCH_DIR/bin/get-each.sh $names $walget_dir/pg_wal"
walget_reset="rm -rf $walget_dir/pg_wal/dbagent-prefetch $walget_dir/pg_wal/RECOVERYXLOG && sync"
hf_args=()
if dbagent_has wal-get; then
  hf_args+=(--prepare "$walget_reset" -n "dbagent wal-get, prefetch 8" "$get_each $bench_dbagent --config $BENCH_DIR/dbagent-walget-8.yml wal-get")
  hf_args+=(--prepare "$walget_reset" -n "dbagent wal-get, prefetch 0" "$get_each $bench_dbagent --config $BENCH_DIR/dbagent-walget-0.yml wal-get")
fi
hf_args+=(--prepare "$walget_reset" -n "pgbackrest archive-get" "$get_each pgbackrest --config=$BENCH_DIR/pgbackrest-walpush.conf --stanza=bench archive-get")
echo "==> wal-get: $nseg segments, one process per segment"
hyperfine --runs 3 --export-json "$out/wal-get-hyperfine.json" --export-markdown "$out/wal-get-hyperfine.md" "${hf_args[@]}"
# Peak RSS of one call.
: >"$BENCH_DIR/tmp/walget-rss.tsv"
walget_rss() { # NAME CMD...
  local name=$1 tf=$BENCH_DIR/tmp/get-times.txt
  shift
  rm -f "$tf"
  bash -c "$walget_reset"
  as_pg env PUSH_TIME_FILE="$tf" "$BENCH_DIR/bin/get-each.sh" "$names" "$walget_dir/pg_wal" "$@"
  printf '%s\t%s\n' "$name" "$(awk '{ print $2 }' "$tf" | sort -n | tail -n1)" >>"$BENCH_DIR/tmp/walget-rss.tsv"
}
if dbagent_has wal-get; then
  walget_rss "dbagent wal-get, prefetch 8" "$bench_dbagent" --config "$BENCH_DIR/dbagent-walget-8.yml" wal-get
  walget_rss "dbagent wal-get, prefetch 0" "$bench_dbagent" --config "$BENCH_DIR/dbagent-walget-0.yml" wal-get
fi
walget_rss "pgbackrest archive-get" pgbackrest --config="$BENCH_DIR/pgbackrest-walpush.conf" --stanza=bench archive-get
sleep 2   # a prefetch worker may still be finishing
restore_cleanup
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

jq -R -s --slurpfile hf "$out/wal-get-hyperfine.json" --rawfile rss "$BENCH_DIR/tmp/walget-rss.tsv" \
  --arg date "$(date -u +%FT%TZ)" --arg machine "$machine" --arg load "$load_before" --arg load_after "$load_after" \
  --argjson data_bytes "${restored_bytes:-$bench_data_bytes}" --argjson n "$nseg" \
  --arg pgbackrest "pgBackRest $pgbackrest_version" --arg dbagent "$dbagent_version" '
  def num: if . == "" then null else tonumber end;
  ($rss | split("\n") | map(select(length > 0) | split("\t") | { key: .[0], value: (.[1] | tonumber) }) | from_entries) as $r |
  { date: $date, machine: $machine, load_average_before: $load, load_average_after: $load_after,
    dbagent: $dbagent, pgbackrest: $pgbackrest, restored_bytes_without_pg_wal: $data_bytes,
    extract: [ split("\n")[] | select(length > 0) | split("\t") | select(.[0] == "extract") |
      { tool: .[1], command: .[2], status: .[3], wall_s: (.[4] | num), wall_with_sync_s: (.[5] | num),
        max_rss_kib: (.[6] | num), note: .[7],
        mb_per_s: (if .[3] == "ok" then ($data_bytes / 1e6 / (.[4] | tonumber) * 10 | round / 10) else null end),
        mb_per_s_with_sync: (if .[3] == "ok" then ($data_bytes / 1e6 / (.[5] | tonumber) * 10 | round / 10) else null end) } ],
    wal_get: { segments: $n, results: [ $hf[0].results[] |
      { tool: .command, runs: (.times | length), mean_s: .mean, stddev_s: .stddev, min_s: .min, max_s: .max,
        ms_per_segment: (.mean / $n * 1000), mb_per_s: ($n * 16.777216 / .mean),
        max_rss_kib_one_call: $r[.command] } ] } }' "$restore_results" >"$out/restore.json"
{
  echo "# Restore: dbagent vs pgBackRest"
  echo
  echo "$(date -u +%F), $machine; PostgreSQL $bench_pg_version, pgbench scale $BENCH_SCALE. Load average" \
    "before: $load_before, after: $load_after (other work on the machine makes these numbers noisy)." \
    "MB/s = restored data directory size without pg_wal ($(mb "${restored_bytes:-$bench_data_bytes}") MB) / wall time."
  echo
  echo "## Extraction of the full backup (one run each, sync before)"
  echo
  echo "| Tool | Command | Wall time | Throughput | Wall time incl. sync | Throughput incl. sync | Peak RSS | Notes |"
  echo "|:---|:---|---:|---:|---:|---:|---:|:---|"
  jq -r '.extract[] | if .status == "ok" then
      "| \(.tool) | `\(.command)` | \(.wall_s) s | \(.mb_per_s) MB/s | \(.wall_with_sync_s) s | \(.mb_per_s_with_sync) MB/s | \(.max_rss_kib / 1024 | round) MiB | \(.note) |"
    else "| \(.tool) | `\(.command)` | \(.status) | | | | | \(.note) |" end' "$out/restore.json"
  echo
  echo "## WAL: $nseg segments of 16 MiB, one process per segment (3 hyperfine runs)"
  echo
  echo "| Tool | Mean | Stddev | Per segment | Throughput | Peak RSS of one call |"
  echo "|:---|---:|---:|---:|---:|---:|"
  jq -r '.wal_get.results[] |
    "| \(.tool) | \(.mean_s * 100 | round / 100) s | \(.stddev_s * 100 | round / 100) s | \(.ms_per_segment * 10 | round / 10) ms | \(.mb_per_s | round) MB/s | \(if .max_rss_kib_one_call then "\(.max_rss_kib_one_call / 1024 * 10 | round / 10) MiB" else "" end) |"' "$out/restore.json"
  echo
  echo "hyperfine:"
  echo
  cat "$out/wal-get-hyperfine.md"
} >"$out/restore.md"
