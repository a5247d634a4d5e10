# scripts/bench/s3.sh: `scripts/bench.sh s3`, sourced by scripts/bench.sh after the benchmark
# cluster, dbagent and the helpers of scripts/bench/lib.sh are set up (it uses out, machine,
# pgbackrest_version, dbagent_version, bench_timed, as_pg, ...).
#
# dbagent and pgBackRest side by side against one S3 server: moto (scripts/bench/s3-server.py,
# moto's server application with TLS) on https://localhost:$S3_PORT, with a CA and server
# certificate made for the run. pgBackRest only speaks HTTPS to S3, so both verify TLS against
# that CA (dbagent: repository.ca_file, pgBackRest: repo1-storage-ca-file) and pay for it.
# Each tool has its own prefix in the bucket `bench`; moto keeps everything in memory and
# forgets it when this script ends.
#
# 1. backup: `dbagent backup` (archive_command: dbagent wal-push into its S3 repository) vs
#    `pgbackrest backup --type=full`: wall time, peak RSS, stored size (both zstd 3).
# 2. wal-push: the 64 segments of `scripts/bench.sh wal-push`, one process per segment as
#    archive_command runs them: `dbagent wal-push` vs `pgbackrest archive-push`, hyperfine.
# 3. restore: extraction of the backups of 1 (`dbagent restore --target immediate` vs
#    `pgbackrest restore --type=immediate`, with and without a `sync` after), and the segments
#    of 2 fetched one process per segment as restore_command runs them (`dbagent wal-get`,
#    prefetch 8 and 0, vs `pgbackrest archive-get`).
# 4. listing: a bucket seeded with $S3_LIST_SEGMENTS (100,000) small objects named as WAL
#    segments in each tool's layout; `dbagent check` and `dbagent wal verify` against a copy
#    of the repository of 1 whose backup starts at the last seeded segment (so they list the
#    whole archive and read almost nothing; check with and without its listing index), `pgbackrest info` against a copy of pgBackRest's
#    stanza, and a bare ListObjectsV2 loop over the same keys as the floor (what the server
#    takes; scripts/bench/s3-server.py makes moto's listing fast enough for this to mean
#    something).
#
# Environment: S3_PORT (default 54341), S3_LIST_SEGMENTS (default 100000; 0 skips 4).
# The dbagent half is skipped, with a message, when this build's `config validate` does not
# accept the S3 configuration (scripts/bench/dbagent-s3.yml.in).

S3_PORT=${S3_PORT:-54341}
S3_LIST_SEGMENTS=${S3_LIST_SEGMENTS:-100000}
s3_dir=$BENCH_DIR/s3
s3_url=https://localhost:$S3_PORT
s3_ca=$s3_dir/ca.pem
s3_bucket=bench
s3_list_bucket=bench-listing
s3_pid=
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN

s3_cleanup() {
  if [ -n "$s3_pid" ] && kill -0 "$s3_pid" 2>/dev/null; then
    kill "$s3_pid" 2>/dev/null || true
    wait "$s3_pid" 2>/dev/null || true
  fi
  s3_pid=
  rm -rf "$BENCH_DIR/s3-restore-dbagent" "$BENCH_DIR/s3-restore-pgbackrest" "$BENCH_DIR/s3-walget"
}
trap 's3_cleanup; bench_cleanup' EXIT

s3() { aws --endpoint-url "$s3_url" --ca-bundle "$s3_ca" "$@"; }
# s3_bytes BUCKET PREFIX: the stored size of every object under PREFIX/
s3_bytes() {
  s3 s3 ls "s3://$1/$2/" --recursive --summarize | awk '/Total Size:/ { print $3 }'
}
s3_clear() { s3 s3 rm "s3://$1/$2/" --recursive --quiet; }

# The server: moto with TLS, and a CA of its own.
if ! python3 -c 'import moto, flask, werkzeug; assert moto.__version__ == "5.2.6"' 2>/dev/null; then
  echo "==> pip install 'moto[server]==5.2.6' awscli"
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]==5.2.6'
fi
command -v aws >/dev/null || python3 -m pip install --quiet --disable-pip-version-check awscli
rm -rf "$s3_dir"
as_pg mkdir -p "$s3_dir" "$BENCH_DIR/pgbackrest-log" "$BENCH_DIR/pgbackrest-lock" "$BENCH_DIR/pgbackrest-spool"
(
  cd "$s3_dir"
  cat >openssl.cnf <<'CNF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
[srv]
basicConstraints = CA:false
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
CNF
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
    -subj /CN=dbagent-bench-ca -config openssl.cnf -extensions ca 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost \
    -config openssl.cnf 2>/dev/null
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
    -days 2 -extfile openssl.cnf -extensions srv 2>/dev/null
  rm -f ca.key server.csr ca.srl
  chmod 0644 ca.pem
)
echo "==> S3 server: moto $(python3 -c 'import moto; print(moto.__version__)') with TLS on $s3_url" \
  "(seeding $S3_LIST_SEGMENTS segment names per tool into s3://$s3_list_bucket first)"
# The seeded segments: timeline 1, segment numbers 1 .. S3_LIST_SEGMENTS.
python3 scripts/bench/s3-server.py --host 127.0.0.1 --port "$S3_PORT" \
  --cert "$s3_dir/server.pem" --key "$s3_dir/server.key" \
  --seed-bucket "$s3_list_bucket" --seed-count "$S3_LIST_SEGMENTS" --seed-first-segno 1 \
  --seed-dbagent-prefix dbagent --seed-pgbackrest-prefix pgbackrest \
  >"$s3_dir/server.out" 2>"$s3_dir/server.log" &
s3_pid=$!
t0=$SECONDS
until grep -q ready "$s3_dir/server.out" 2>/dev/null; do
  kill -0 "$s3_pid" 2>/dev/null || bench_die "the S3 server did not start; see $s3_dir/server.log"
  [ $((SECONDS - t0)) -gt 600 ] && bench_die "the S3 server was not ready after 600 s"
  sleep 1
done
echo "    ready after $((SECONDS - t0)) s"
s3 s3 mb "s3://$s3_bucket" >/dev/null
moto_version=$(python3 -c 'import moto; print(moto.__version__)')

# Configurations: one repository per tool and purpose, each a prefix of the bucket.
s3_pgbr_conf() { # FILE BUCKET PREFIX
  sed -e "s|@PORT@|$BENCH_PORT|g" -e "s|@DATA@|$bench_data|g" -e "s|@DIR@|$BENCH_DIR|g" \
    -e "s|@BUCKET@|$2|g" -e "s|@PREFIX@|$3|g" -e "s|@S3_PORT@|$S3_PORT|g" -e "s|@CA@|$s3_ca|g" \
    -e "s|@KEY@|$AWS_ACCESS_KEY_ID|g" -e "s|@SECRET@|$AWS_SECRET_ACCESS_KEY|g" \
    -e "s|@PROCESS_MAX@|$(nproc)|g" scripts/bench/pgbackrest-s3.conf.in >"$1"
  [ "$(id -u)" = 0 ] && chown postgres: "$1"
  return 0
}
s3_dbagent_yml() { # FILE BUCKET PREFIX STATE [EXTRA_REPOSITORY_LINE]
  sed -e "s|@PORT@|$BENCH_PORT|g" -e "s|@DATA@|$bench_data|g" -e "s|@PG_BIN@|$bench_pgbin|g" \
    -e "s|@BUCKET@|$2|g" -e "s|@PREFIX@|$3|g" -e "s|@S3_PORT@|$S3_PORT|g" -e "s|@CA@|$s3_ca|g" \
    -e "s|@KEY@|$AWS_ACCESS_KEY_ID|g" -e "s|@SECRET@|$AWS_SECRET_ACCESS_KEY|g" \
    -e "s|@STATE@|$4|g" scripts/bench/dbagent-s3.yml.in >"$1"
  if [ -n "${5:-}" ]; then sed -i "/^repository:/a\\  $5" "$1"; fi
  [ "$(id -u)" = 0 ] && chown postgres: "$1"
  return 0
}
s3_pgbr_conf "$s3_dir/pgbackrest.conf" "$s3_bucket" pgbackrest
s3_pgbr_conf "$s3_dir/pgbackrest-walpush.conf" "$s3_bucket" pgbackrest-walpush
s3_dbagent_yml "$s3_dir/dbagent.yml" "$s3_bucket" dbagent "$s3_dir/dbagent-state"
s3_dbagent_yml "$s3_dir/dbagent-walpush.yml" "$s3_bucket" dbagent-walpush "$s3_dir/dbagent-walpush-state"
s3_dbagent=
if [ -n "$bench_dbagent" ]; then
  if msg=$(as_pg "$bench_dbagent" --config "$s3_dir/dbagent.yml" config validate 2>&1); then
    s3_dbagent=$bench_dbagent
  else
    echo "    this dbagent does not accept the S3 configuration yet: the dbagent half is skipped" >&2
    echo "    ($msg)" >&2
  fi
fi
s3_has() { [ -n "$s3_dbagent" ] && dbagent_has "$1"; }
pgbr_s3() { as_pg pgbackrest --config="$s3_dir/pgbackrest.conf" --stanza=bench "$@"; }
s3_results=$BENCH_DIR/tmp/s3-results.tsv
: >"$s3_results"
: >"$BENCH_DIR/tmp/s3-list.tsv"
: >"$BENCH_DIR/tmp/s3-list-floor.txt"
# Nothing of an earlier run may pass for this one's (the restore and listing use the backup's id).
rm -f "$out"/s3-*.json "$out"/s3-*.md "$out"/s3-listing-*
# s3record PART TOOL COMMAND STATUS WALL_S WALL_WITH_SYNC_S RSS_KIB STORED_BYTES NOTE
s3record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$s3_results"; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# 1. backup
# ---------------------------------------------------------------------------------------------
echo "==> s3 backup: dbagent backup vs pgbackrest backup --type=full, cluster $(mb "$bench_data_bytes") MB"
if s3_has wal-push; then
  bench_set_archive_command "$s3_dbagent --config $s3_dir/dbagent.yml wal-push %p"
else
  bench_set_archive_command /bin/true
fi
bench_warm_cache
cmd="dbagent backup --json --no-progress (S3)"
if s3_has backup; then
  echo "==> $cmd"
  bench_quiesce
  if bench_timed "$s3_dbagent" --config "$s3_dir/dbagent.yml" backup --json --no-progress \
    >"$out/s3-dbagent-backup.json"; then
    s3record backup dbagent "$cmd" ok "$t_wall" "" "$t_rss" "$(s3_bytes "$s3_bucket" dbagent)" \
      "zstd 3; repository incl. the WAL archived during the backup; compressed by $(sed -n 's/.*"compressed_by": "\(.*\)".*/\1/p' "$out/s3-dbagent-backup.json")"
  else
    echo "    dbagent backup to S3 FAILED; see above and $out/s3-dbagent-backup.json" >&2
    s3record backup dbagent "$cmd" failed "$t_wall" "" "$t_rss" "" "failed"
  fi
else
  s3record backup dbagent "$cmd" skipped "" "" "" "" "S3 repository not available in this build"
fi
cmd="pgbackrest backup --type=full (S3, zst, process-max=$(nproc))"
echo "==> $cmd"
pgbr_s3 stanza-create >/dev/null
bench_quiesce
if bench_timed pgbackrest --config="$s3_dir/pgbackrest.conf" --stanza=bench --type=full backup; then
  s3record backup pgBackRest "$cmd" ok "$t_wall" "" "$t_rss" "$(s3_bytes "$s3_bucket" pgbackrest)" \
    "pgBackRest $pgbackrest_version; zst 3; backup + stanza files, no WAL"
else
  echo "    pgbackrest backup to S3 FAILED; see $BENCH_DIR/pgbackrest-log/bench-backup.log" >&2
  s3record backup pgBackRest "$cmd" failed "$t_wall" "" "$t_rss" "" "failed"
fi
bench_set_archive_command /bin/true

# ---------------------------------------------------------------------------------------------
# 2. wal-push
# ---------------------------------------------------------------------------------------------
segs=$(pwd)/$out/wal-segments
bench_wal_segments "$segs"
nseg=$(find "$segs" -mindepth 1 -maxdepth 1 -type f | wc -l)
seg_bytes=$(find "$segs" -mindepth 1 -maxdepth 1 -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
echo "==> s3 wal-push: $nseg segments, one process per segment"
push_each="$as_pg_prefix $BENCH_DIR/bin/push-each.sh $segs"
dbagent_push="$s3_dbagent --config $s3_dir/dbagent-walpush.yml wal-push"
pgbr_push="pgbackrest --config=$s3_dir/pgbackrest-walpush.conf --stanza=bench archive-push"
# Empty repositories before every timed run (only the pushes are timed).
export S3_URL=$s3_url S3_CA=$s3_ca
dbagent_reset="aws --endpoint-url $s3_url --ca-bundle $s3_ca s3 rm s3://$s3_bucket/dbagent-walpush/ --recursive --quiet; rm -rf $s3_dir/dbagent-walpush-state"
pgbr_reset="aws --endpoint-url $s3_url --ca-bundle $s3_ca s3 rm s3://$s3_bucket/pgbackrest-walpush/ --recursive --quiet && $as_pg_prefix pgbackrest --config=$s3_dir/pgbackrest-walpush.conf --stanza=bench stanza-create >/dev/null"
cat "$segs"/* >/dev/null
hf_args=()
if s3_has wal-push; then
  hf_args+=(--prepare "$dbagent_reset" -n "dbagent wal-push" "$push_each $dbagent_push")
fi
hf_args+=(--prepare "$pgbr_reset" -n "pgbackrest archive-push" "$push_each $pgbr_push")
hyperfine --runs 3 --export-json "$out/s3-wal-push-hyperfine.json" \
  --export-markdown "$out/s3-wal-push-hyperfine.md" "${hf_args[@]}"
# Peak RSS of one push, and the archive's size: one more pass, each push under /usr/bin/time.
: >"$BENCH_DIR/tmp/s3-push-rss.tsv"
s3_push_rss() { # NAME RESET PREFIX PUSH...
  local name=$1 reset=$2 prefix=$3 tf=$BENCH_DIR/tmp/s3-push-times.txt
  shift 3
  rm -f "$tf"
  bash -c "$reset"
  as_pg env PUSH_TIME_FILE="$tf" "$BENCH_DIR/bin/push-each.sh" "$segs" "$@"
  printf '%s\t%s\t%s\n' "$name" "$(awk '{ print $2 }' "$tf" | sort -n | tail -n1)" \
    "$(s3_bytes "$s3_bucket" "$prefix")" >>"$BENCH_DIR/tmp/s3-push-rss.tsv"
}
if s3_has wal-push; then
  s3_push_rss "dbagent wal-push" "$dbagent_reset" dbagent-walpush $dbagent_push
fi
s3_push_rss "pgbackrest archive-push" "$pgbr_reset" pgbackrest-walpush $pgbr_push

# ---------------------------------------------------------------------------------------------
# 3. restore and wal-get
# ---------------------------------------------------------------------------------------------
rdir_dbagent=$BENCH_DIR/s3-restore-dbagent
rdir_pgbr=$BENCH_DIR/s3-restore-pgbackrest
echo "==> s3 restore: extraction of the backups of step 1"
cmd="dbagent restore --to DIR --target immediate (S3)"
if s3_has restore && grep -q '"id"' "$out/s3-dbagent-backup.json" 2>/dev/null; then
  sync
  if bench_timed "$s3_dbagent" --config "$s3_dir/dbagent.yml" restore --to "$rdir_dbagent" \
    --target immediate --json >"$out/s3-dbagent-restore.json"; then
    w=$t_wall r=$t_rss
    s0=$(date +%s.%N); sync; s1=$(date +%s.%N)
    s3record restore dbagent "$cmd" ok "$w" "$(echo "$w + $s1 - $s0" | bc -l | xargs printf '%.2f')" "$r" "" \
      "zstd, SHA-256 of every stored file checked while extracting"
  else
    echo "    dbagent restore from S3 FAILED; see $out/s3-dbagent-restore.json" >&2
    s3record restore dbagent "$cmd" failed "$t_wall" "" "$t_rss" "" "failed"
  fi
else
  s3record restore dbagent "$cmd" skipped "" "" "" "" "no dbagent backup in S3"
fi
rm -rf "$rdir_dbagent"
cmd="pgbackrest restore --type=immediate (S3, zst, process-max=$(nproc))"
as_pg mkdir -m 0700 "$rdir_pgbr"
sync
if bench_timed pgbackrest --config="$s3_dir/pgbackrest.conf" --stanza=bench --pg1-path="$rdir_pgbr" \
  --type=immediate --target-action=promote restore; then
  w=$t_wall r=$t_rss
  s0=$(date +%s.%N); sync; s1=$(date +%s.%N)
  s3record restore pgBackRest "$cmd" ok "$w" "$(echo "$w + $s1 - $s0" | bc -l | xargs printf '%.2f')" "$r" "" \
    "pgBackRest $pgbackrest_version; fsyncs each file; checks each file's SHA-1"
else
  echo "    pgbackrest restore from S3 FAILED; see $BENCH_DIR/pgbackrest-log" >&2
  s3record restore pgBackRest "$cmd" failed "$t_wall" "" "$t_rss" "" "failed"
fi
restored_bytes=$(du -sb --exclude=pg_wal "$rdir_pgbr" 2>/dev/null | cut -f1 || true)
rm -rf "$rdir_pgbr"

# wal-get: the segments of step 2, in order, one process per segment.
walget_dir=$BENCH_DIR/s3-walget
names=$BENCH_DIR/tmp/s3-walget-names.txt
find "$segs" -mindepth 1 -maxdepth 1 -type f -printf '%f\n' | sort >"$names"
as_pg mkdir -p "$walget_dir/pg_wal"
for p in 8 0; do
  s3_dbagent_yml "$s3_dir/dbagent-walget-$p.yml" "$s3_bucket" dbagent-walpush \
    "$s3_dir/dbagent-walpush-state" "prefetch: $p"
done
get_each="$as_pg_prefix $BENCH_DIR/bin/get-each.sh $names $walget_dir/pg_wal"
walget_reset="rm -rf $walget_dir/pg_wal/dbagent-prefetch $walget_dir/pg_wal/RECOVERYXLOG && sync"
hf_args=()
if s3_has wal-get; then
  hf_args+=(--prepare "$walget_reset" -n "dbagent wal-get, prefetch 8" "$get_each $s3_dbagent --config $s3_dir/dbagent-walget-8.yml wal-get")
  hf_args+=(--prepare "$walget_reset" -n "dbagent wal-get, prefetch 0" "$get_each $s3_dbagent --config $s3_dir/dbagent-walget-0.yml wal-get")
fi
hf_args+=(--prepare "$walget_reset" -n "pgbackrest archive-get" "$get_each pgbackrest --config=$s3_dir/pgbackrest-walpush.conf --stanza=bench archive-get")
echo "==> s3 wal-get: $nseg segments, one process per segment"
hyperfine --runs 3 --export-json "$out/s3-wal-get-hyperfine.json" \
  --export-markdown "$out/s3-wal-get-hyperfine.md" "${hf_args[@]}"
: >"$BENCH_DIR/tmp/s3-get-rss.tsv"
s3_get_rss() { # NAME CMD...
  local name=$1 tf=$BENCH_DIR/tmp/s3-get-times.txt
  shift
  rm -f "$tf"
  bash -c "$walget_reset"
  as_pg env PUSH_TIME_FILE="$tf" "$BENCH_DIR/bin/get-each.sh" "$names" "$walget_dir/pg_wal" "$@"
  printf '%s\t%s\n' "$name" "$(awk '{ print $2 }' "$tf" | sort -n | tail -n1)" >>"$BENCH_DIR/tmp/s3-get-rss.tsv"
}
if s3_has wal-get; then
  s3_get_rss "dbagent wal-get, prefetch 8" "$s3_dbagent" --config "$s3_dir/dbagent-walget-8.yml" wal-get
  s3_get_rss "dbagent wal-get, prefetch 0" "$s3_dbagent" --config "$s3_dir/dbagent-walget-0.yml" wal-get
fi
s3_get_rss "pgbackrest archive-get" pgbackrest --config="$s3_dir/pgbackrest-walpush.conf" --stanza=bench archive-get
sleep 2 # a prefetch worker may still be finishing
rm -rf "$walget_dir"

# ---------------------------------------------------------------------------------------------
# 4. listing cost at S3_LIST_SEGMENTS archived segments
# ---------------------------------------------------------------------------------------------
if [ "$S3_LIST_SEGMENTS" -gt 0 ]; then
  last_seeded=$(python3 -c "n = $S3_LIST_SEGMENTS; print(f'{1:08X}{n // 256:08X}{n % 256:08X}')")
  echo "==> s3 listing: $S3_LIST_SEGMENTS segment names per tool in s3://$s3_list_bucket (up to $last_seeded)"
  # The floor: ListObjectsV2 of the same keys by the simplest client (one keep-alive HTTPS
  # connection, 1,000 keys per page, no XML parsing beyond the token), best of 3: what the
  # server itself takes to list them.
  python3 - localhost "$S3_PORT" "$s3_ca" "$s3_list_bucket" dbagent/wal/ pgbackrest/archive/ \
    >"$BENCH_DIR/tmp/s3-list-floor.txt" <<'PY'
import http.client, re, ssl, sys, time, urllib.parse
host, port, ca, bucket = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
# moto checks no signature (auth is off); it reads the access key and region from this header
auth = {"Authorization": "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"}
for prefix in sys.argv[5:]:
    best = None
    for _ in range(3):
        conn = http.client.HTTPSConnection(host, port, context=ctx)
        t = time.monotonic(); n = 0; token = None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            conn.request("GET", f"/{bucket}?{urllib.parse.urlencode(q)}", headers=auth)
            body = conn.getresponse().read().decode()
            n += body.count("<Key>")
            m = re.search(r"<NextContinuationToken>([^<]+)<", body)
            if not m:
                break
            token = m.group(1)
        best = min(best or 1e9, time.monotonic() - t)
        conn.close()
    print(prefix, n, round(best, 3))
PY
  cat "$BENCH_DIR/tmp/s3-list-floor.txt"
  hf_args=()
  list_yml=$s3_dir/dbagent-listing.yml
  s3_dbagent_yml "$list_yml" "$s3_list_bucket" dbagent "$s3_dir/dbagent-listing-state"
  if s3_has check && [ -s "$out/s3-dbagent-backup.json" ]; then
    # A copy of the dbagent repository of step 1 (repo.json: this cluster) with its backup's
    # manifest claiming to start at the last seeded segment: check and wal verify list the
    # whole archive and need (read) only that segment.
    id=$(jq -r '.id' "$out/s3-dbagent-backup.json")
    s3 s3 cp "s3://$s3_bucket/dbagent/repo.json" "s3://$s3_list_bucket/dbagent/repo.json" --quiet
    s3 s3 cp "s3://$s3_bucket/dbagent/backups/$id/manifest.json" "$BENCH_DIR/tmp/s3-manifest.json" --quiet
    jq --arg s "$last_seeded" '.wal_start = $s | .wal_stop = $s' "$BENCH_DIR/tmp/s3-manifest.json" \
      | s3 s3 cp - "s3://$s3_list_bucket/dbagent/backups/$id/manifest.json" --quiet
    echo "    dbagent wal verify, first run (reads what it needs, remembers it in state.db):"
    bench_timed "$s3_dbagent" --config "$list_yml" wal verify --no-progress --json >"$out/s3-listing-wal-verify.json" || true
    printf 'dbagent wal verify (first run)\t%s\t%s\n' "$t_wall" "$t_rss" >>"$BENCH_DIR/tmp/s3-list.tsv"
    echo "    $t_wall s, peak RSS $t_rss KiB: $(jq -c '{segments_needed, segments_read, segments_cached, ok}' "$out/s3-listing-wal-verify.json" 2>/dev/null)"
    bench_timed "$s3_dbagent" --config "$list_yml" check >"$out/s3-listing-check.txt" || true
    printf 'dbagent check\t%s\t%s\n' "$t_wall" "$t_rss" >>"$BENCH_DIR/tmp/s3-list.tsv"
    # check keeps an index of the archive's listing in its state directory (s3-wal-index-*.json):
    # without it, it lists the whole archive; with it, the top of wal/ and the newest directories.
    hf_args+=(--prepare "rm -f $s3_dir/dbagent-listing-state/s3-wal-index-*.json"
      -n "dbagent check (no listing index yet)" "$as_pg_prefix $s3_dbagent --config $list_yml check >/dev/null")
    hf_args+=(--prepare true -n "dbagent check" "$as_pg_prefix $s3_dbagent --config $list_yml check >/dev/null")
    hf_args+=(--prepare true -n "dbagent wal verify" "$as_pg_prefix $s3_dbagent --config $list_yml wal verify --no-progress >/dev/null")
  fi
  # pgBackRest: a copy of its stanza files (archive.info, backup.info) of step 1.
  for f in archive/bench/archive.info archive/bench/archive.info.copy backup/bench/backup.info backup/bench/backup.info.copy; do
    s3 s3 cp "s3://$s3_bucket/pgbackrest/$f" "s3://$s3_list_bucket/pgbackrest/$f" --quiet || true
  done
  s3_pgbr_conf "$s3_dir/pgbackrest-listing.conf" "$s3_list_bucket" pgbackrest
  hf_args+=(--prepare true -n "pgbackrest info" "$as_pg_prefix pgbackrest --config=$s3_dir/pgbackrest-listing.conf --stanza=bench info >/dev/null")
  hyperfine --runs 5 -i --export-json "$out/s3-listing-hyperfine.json" \
    --export-markdown "$out/s3-listing-hyperfine.md" "${hf_args[@]}"
  bench_timed pgbackrest --config="$s3_dir/pgbackrest-listing.conf" --stanza=bench info >"$out/s3-listing-pgbackrest-info.txt" || true
  printf 'pgbackrest info\t%s\t%s\n' "$t_wall" "$t_rss" >>"$BENCH_DIR/tmp/s3-list.tsv"
fi
s3_server_rss=$(awk '/VmHWM/ { print $2 }' "/proc/$s3_pid/status" 2>/dev/null || echo "")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
s3_cleanup

# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
jq -n --rawfile rows "$s3_results" --rawfile push_rss "$BENCH_DIR/tmp/s3-push-rss.tsv" \
  --rawfile get_rss "$BENCH_DIR/tmp/s3-get-rss.tsv" --rawfile list "$BENCH_DIR/tmp/s3-list.tsv" \
  --rawfile floor "$BENCH_DIR/tmp/s3-list-floor.txt" \
  --slurpfile push "$out/s3-wal-push-hyperfine.json" --slurpfile get "$out/s3-wal-get-hyperfine.json" \
  --slurpfile listing "$( [ -f "$out/s3-listing-hyperfine.json" ] && echo "$out/s3-listing-hyperfine.json" || echo /dev/null)" \
  --arg date "$(date -u +%FT%TZ)" --arg machine "$machine" --arg load "$load_before" --arg load_after "$load_after" \
  --arg pg "$bench_pg_version" --argjson scale "$BENCH_SCALE" --arg dbagent "$dbagent_version" \
  --arg pgbackrest "pgBackRest $pgbackrest_version" --arg moto "$moto_version" \
  --argjson data_bytes "$bench_data_bytes" --argjson restored_bytes "${restored_bytes:-$bench_data_bytes}" \
  --argjson n "$nseg" --argjson seg_bytes "$seg_bytes" --argjson list_n "$S3_LIST_SEGMENTS" \
  --arg server_rss "$s3_server_rss" '
  def num: if . == null or . == "" then null else tonumber end;
  def tsv: split("\n") | map(select(length > 0) | split("\t"));
  ($push_rss | tsv | map({ key: .[0], value: { rss: (.[1] | num), bytes: (.[2] | num) } }) | from_entries) as $pr |
  ($get_rss | tsv | map({ key: .[0], value: (.[1] | num) }) | from_entries) as $gr |
  { date: $date, machine: $machine, load_average_before: $load, load_average_after: $load_after,
    postgres: $pg, pgbench_scale: $scale, dbagent: $dbagent, pgbackrest: $pgbackrest,
    s3_server: "moto \($moto) (werkzeug, TLS), in memory", s3_server_peak_rss_kib: ($server_rss | num),
    data_dir_bytes_without_pg_wal: $data_bytes, restored_bytes_without_pg_wal: $restored_bytes,
    backup_restore: [ $rows | tsv[] | { part: .[0], tool: .[1], command: .[2], status: .[3],
      wall_s: (.[4] | num), wall_with_sync_s: (.[5] | num), max_rss_kib: (.[6] | num),
      stored_bytes: (.[7] | num), note: .[8],
      mb_per_s: (if .[3] == "ok" then ((if .[0] == "backup" then $data_bytes else $restored_bytes end) / 1e6 / (.[4] | tonumber) * 10 | round / 10) else null end) } ],
    wal_push: { segments: $n, segment_bytes_total: $seg_bytes, results: [ $push[0].results[] |
      { tool: .command, mean_s: .mean, stddev_s: .stddev, segments_per_s: ($n / .mean),
        ms_per_push: (.mean / $n * 1000), max_rss_kib_one_push: $pr[.command].rss,
        archive_bytes: $pr[.command].bytes } ] },
    wal_get: { segments: $n, results: [ $get[0].results[] |
      { tool: .command, mean_s: .mean, stddev_s: .stddev, ms_per_segment: (.mean / $n * 1000),
        mb_per_s: ($n * 16.777216 / .mean), max_rss_kib_one_call: $gr[.command] } ] },
    listing: { segments_per_tool: $list_n,
      list_objects_v2_floor: [ $floor | split("\n")[] | select(length > 0) | split(" ") |
        { prefix: .[0], keys: (.[1] | num), best_of_3_s: (.[2] | num) } ],
      single_runs: [ $list | tsv[] | { command: .[0], wall_s: (.[1] | num), max_rss_kib: (.[2] | num) } ],
      hyperfine: [ ($listing[0].results // [])[] | { command: .command, mean_s: .mean, stddev_s: .stddev,
        min_s: .min, max_s: .max, exit_codes: (.exit_codes | unique) } ] } }' >"$out/s3.json"
{
  echo "# S3 repository: dbagent vs pgBackRest against one S3 server"
  echo
  echo "$(date -u +%F), $machine; PostgreSQL $bench_pg_version, pgbench scale $BENCH_SCALE" \
    "(data directory $(mb "$bench_data_bytes") MB without pg_wal); $(jq -r .s3_server "$out/s3.json")" \
    "on https://localhost:$S3_PORT, both tools verifying TLS against the bench's CA; dbagent" \
    "$dbagent_version, pgBackRest $pgbackrest_version, both zstd 3 (dbagent's WAL: zstd 1)." \
    "Load average before: $load_before, after: $load_after."
  echo
  echo "## Backup and restore (one run each)"
  echo
  echo "| Part | Tool | Command | Wall time | Throughput | Incl. sync after | Peak RSS | Stored | Notes |"
  echo "|:---|:---|:---|---:|---:|---:|---:|---:|:---|"
  jq -r '.backup_restore[] | if .status == "ok" then
      "| \(.part) | \(.tool) | `\(.command)` | \(.wall_s) s | \(.mb_per_s) MB/s | \(if .wall_with_sync_s then "\(.wall_with_sync_s) s" else "" end) | \(.max_rss_kib / 1024 | round) MiB | \(if .stored_bytes then "\(.stored_bytes / 1e6 | round) MB" else "" end) | \(.note) |"
    else "| \(.part) | \(.tool) | `\(.command)` | \(.status) | | | | | \(.note) |" end' "$out/s3.json"
  echo
  echo "## wal-push: $nseg segments of 16 MiB, one process per segment (3 hyperfine runs)"
  echo
  echo "| Tool | Total | Segments/s | Per push | Peak RSS of one push | Archive size |"
  echo "|:---|---:|---:|---:|---:|---:|"
  jq -r '.wal_push.results[] |
    "| `\(.tool)` | \(.mean_s * 100 | round / 100) s ± \(.stddev_s * 100 | round / 100) | \(.segments_per_s * 10 | round / 10) | \(.ms_per_push | round) ms | \(if .max_rss_kib_one_push then "\(.max_rss_kib_one_push / 1024 * 10 | round / 10) MiB" else "" end) | \(if .archive_bytes then "\(.archive_bytes / 1e6 | round) MB" else "" end) |"' "$out/s3.json"
  echo
  echo "## wal-get: the same $nseg segments, one process per segment (3 hyperfine runs)"
  echo
  echo "| Tool | Total | Per segment | Throughput | Peak RSS of one call |"
  echo "|:---|---:|---:|---:|---:|"
  jq -r '.wal_get.results[] |
    "| \(.tool) | \(.mean_s * 100 | round / 100) s ± \(.stddev_s * 100 | round / 100) | \(.ms_per_segment * 10 | round / 10) ms | \(.mb_per_s | round) MB/s | \(if .max_rss_kib_one_call then "\(.max_rss_kib_one_call / 1024 * 10 | round / 10) MiB" else "" end) |"' "$out/s3.json"
  if [ "$S3_LIST_SEGMENTS" -gt 0 ]; then
    echo
    echo "## Listing: $S3_LIST_SEGMENTS archived segments per tool"
    echo
    echo "Floor, ListObjectsV2 of the same keys by a bare HTTPS client (1,000 per page, best of 3):" \
      "$(jq -r '[.listing.list_objects_v2_floor[] | "\(.prefix) \(.keys) keys in \(.best_of_3_s) s"] | join("; ")' "$out/s3.json")."
    echo
    echo "| Command | Mean | Min | Max | Exit codes |"
    echo "|:---|---:|---:|---:|:---|"
    jq -r '.listing.hyperfine[] | "| `\(.command)` | \(.mean_s * 1000 | round) ms ± \(.stddev_s * 1000 | round) | \(.min_s * 1000 | round) ms | \(.max_s * 1000 | round) ms | \(.exit_codes | map(tostring) | join(", ")) |"' "$out/s3.json"
    echo
    echo "Single runs under /usr/bin/time:" \
      "$(jq -r '[.listing.single_runs[] | "\(.command) \(.wall_s) s, peak RSS \(.max_rss_kib / 1024 | round) MiB"] | join("; ")' "$out/s3.json")."
  fi
  echo
  echo "hyperfine, wal-push:"
  echo
  cat "$out/s3-wal-push-hyperfine.md"
  echo
  echo "hyperfine, wal-get:"
  echo
  cat "$out/s3-wal-get-hyperfine.md"
} >"$out/s3.md"
