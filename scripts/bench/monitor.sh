#!/usr/bin/env bash
# scripts/bench/monitor.sh: `scripts/bench.sh monitor`. `dbagent run`'s /metrics side by side
# with Debian's prometheus-postgres-exporter, on one PostgreSQL 15 cluster, for each schema size
# in MONITOR_SIZES (default "1000 10000 10x1000": tables, each with a primary key and 5 rows,
# ANALYZEd; `DxN` is D databases of N tables each, bench_1 .. bench_D, which dbagent watches all
# of by default while the exporters read the first).
# Run by scripts/bench.sh as a process of its own, so that its cluster, trap and variables never
# mix with those of the backup benchmark.
#
# Three targets per size, started afresh, scraping the same database (`bench`):
#   dbagent            `dbagent run`, monitor.interval 15s, role dbagent (pg_monitor, pg_read_all_data)
#   exporter           prometheus-postgres-exporter, default collectors, role exporter (pg_monitor)
#   exporter+tables    the same with --extend.query-path scripts/bench/exporter-queries.yaml (per
#                      table pg_stat_user_tables and pg_statio_user_tables), role exporter_tables
# Measured: scrape time (hyperfine of curl, MONITOR_RUNS runs after 3 warm-ups), VmRSS and VmHWM
# after that, one scrape's size and series, `promtool check metrics`, and the database time per
# poll (dbagent, monitor.interval 2s, MONITOR_POLLS polls) or per scrape (the exporters,
# MONITOR_POLLS scrapes): the sum of pg_stat_statements.total_exec_time of the target's role
# (planning time not included), divided by the polls or scrapes.
#
# The cluster lives in MONITOR_DIR (default /var/tmp/dbagent-bench-monitor) on 127.0.0.1:
# MONITOR_PORT (default 54340), is kept for the next run (tables are added or dropped to reach
# each size) and is stopped at exit, like every process this script starts (by PID). Results:
# target/bench/monitor.md and monitor.json, scrapes in target/bench/monitor/.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/deps.sh

BENCH_DIR=${MONITOR_DIR:-/var/tmp/dbagent-bench-monitor}
BENCH_PORT=${MONITOR_PORT:-54340}
SIZES=${MONITOR_SIZES:-"1000 10000 10x1000"}
RUNS=${MONITOR_RUNS:-20}
POLLS=${MONITOR_POLLS:-10}
out=$(pwd)/target/bench
scrapes=$out/monitor
queries=$(pwd)/scripts/bench/exporter-queries.yaml

apt_install postgresql-15 postgresql-client-15 prometheus-postgres-exporter prometheus hyperfine jq curl
source scripts/bench/lib.sh
exporter_bin=$(command -v prometheus-postgres-exporter)
tmp=$BENCH_DIR/tmp

# ---------------------------------------------------------------------------------------------
# processes started here, stopped at exit by PID
# ---------------------------------------------------------------------------------------------
mon_pids=()
mon_stop() { # PID
  local pid=$1
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
mon_cleanup() {
  local pid
  for pid in "${mon_pids[@]}"; do mon_stop "$pid"; done
  bench_cleanup
}
trap mon_cleanup EXIT

# mon_start NAME CMD...: starts CMD in the background (log in $tmp/NAME.log); sets mon_pid.
mon_start() {
  local name=$1
  shift
  "$@" >"$tmp/$name.log" 2>&1 &
  mon_pid=$!
  mon_pids+=("$mon_pid")
}

# A TCP port nobody listens on, from $1 up.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# metric URL NAME: the value of the first sample whose name{labels} is exactly NAME.
metric() { curl -s "$1/metrics" | awk -v n="$2" '$1 == n && !found { print $2; found = 1 }'; }

# wait_until SECONDS DESCRIPTION CMD...: polls CMD every 0.2 s.
wait_until() {
  local limit=$1 what=$2 t0=$SECONDS
  shift 2
  until "$@"; do
    [ $((SECONDS - t0)) -gt "$limit" ] && bench_die "timed out after ${limit}s waiting for $what"
    sleep 0.2
  done
}
answers() { curl -sf -o /dev/null "$1/metrics"; }
polls_at_least() { local v; v=$(metric "$1" dbagent_polls_total); [ -n "$v" ] && [ "${v%.*}" -ge "$2" ]; }

mon_sql() { # DB SQL
  as_pg env PGOPTIONS="-c client_min_messages=warning" "$bench_pgbin/psql" -X -q -A -t -h "$BENCH_DIR" -p "$BENCH_PORT" -U postgres -d "$1" \
    -v ON_ERROR_STOP=1 -c "$2"
}

# ---------------------------------------------------------------------------------------------
# the cluster
# ---------------------------------------------------------------------------------------------
mon_cluster_ready() {
  mkdir -p "$BENCH_DIR"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$BENCH_DIR"
    runuser -u postgres -- test -x "$BENCH_DIR" \
      || bench_die "the postgres OS user cannot reach $BENCH_DIR; set MONITOR_DIR to a path under /var/tmp"
  fi
  as_pg mkdir -p "$BENCH_DIR/bin" "$tmp"
  if [ ! -f "$bench_data/PG_VERSION" ]; then
    echo "==> creating the monitoring benchmark cluster (PostgreSQL 15) in $bench_data"
    as_pg "$bench_pgbin/initdb" -D "$bench_data" -U postgres --auth-local=trust --auth-host=trust \
      -E UTF8 --no-locale --no-instructions >/dev/null
    cat >>"$bench_data/postgresql.conf" <<CONF

# --- dbagent monitoring benchmark cluster (scripts/bench.sh monitor) ---
listen_addresses = '127.0.0.1'
port = $BENCH_PORT
unix_socket_directories = '$BENCH_DIR'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = top
track_io_timing = off
# CREATE TABLE in batches of 500 per transaction
max_locks_per_transaction = 256
CONF
  fi
  bench_start
  if [ -z "$(mon_sql postgres "SELECT 1 FROM pg_database WHERE datname = 'bench'")" ]; then
    mon_sql postgres "CREATE DATABASE bench" >/dev/null
  fi
  local db
  for db in postgres bench; do
    mon_sql "$db" "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
  done
  mon_sql bench "CREATE SCHEMA IF NOT EXISTS bench" >/dev/null
  mon_sql postgres "DO \$\$ DECLARE r text; BEGIN
    FOREACH r IN ARRAY ARRAY['dbagent', 'exporter', 'exporter_tables'] LOOP
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
        EXECUTE format('CREATE ROLE %I LOGIN', r);
      END IF;
      EXECUTE format('GRANT pg_monitor TO %I', r);
    END LOOP;
  END \$\$" >/dev/null
  mon_sql postgres "GRANT pg_read_all_data TO dbagent" >/dev/null
  bench_pg_version=$(mon_sql postgres "SHOW server_version")
}

# grow_tables N: bench.t00001 .. bench.tN (id int primary key, v text, 5 rows), ANALYZEd; tables
# past N (from a run with a larger size) are dropped.
grow_tables() {
  local want=$1 db=${2:-bench} have t0=$SECONDS
  if [ -z "$(mon_sql postgres "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    mon_sql postgres "CREATE DATABASE $db" >/dev/null
  fi
  mon_sql "$db" "CREATE SCHEMA IF NOT EXISTS bench" >/dev/null
  have=$(mon_sql "$db" "SELECT count(*) FROM pg_tables WHERE schemaname = 'bench'")
  [ "$have" = "$want" ] && return 0
  if [ "$have" -gt "$want" ]; then
    echo "==> dropping tables $((want + 1)) .. $have"
    mon_sql "$db" "DO \$\$ BEGIN
      FOR i IN $((want + 1)) .. $have LOOP
        EXECUTE format('DROP TABLE bench.%I', 't' || lpad(i::text, 5, '0'));
        IF i % 500 = 0 THEN COMMIT; END IF;
      END LOOP;
    END \$\$" >/dev/null
    mon_sql postgres "CHECKPOINT" >/dev/null
    return 0
  fi
  echo "==> creating tables $((have + 1)) .. $want (COMMIT every 500), then ANALYZE"
  mon_sql "$db" "DO \$\$ BEGIN
    FOR i IN $((have + 1)) .. $want LOOP
      EXECUTE format('CREATE TABLE bench.%I (id int PRIMARY KEY, v text)', 't' || lpad(i::text, 5, '0'));
      EXECUTE format('INSERT INTO bench.%I SELECT g, md5(g::text) FROM generate_series(1, 5) g',
                     't' || lpad(i::text, 5, '0'));
      IF i % 500 = 0 THEN COMMIT; END IF;
    END LOOP;
  END \$\$" >/dev/null
  mon_sql "$db" "ANALYZE" >/dev/null
  mon_sql postgres "CHECKPOINT" >/dev/null
  echo "    $want tables in $db in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------------------------------------
# the targets
# ---------------------------------------------------------------------------------------------
write_dbagent_yml() { # FILE PORT INTERVAL
  cat >"$1" <<YML
# written by scripts/bench/monitor.sh
postgres:
  conninfo: "host=127.0.0.1 port=$BENCH_PORT user=dbagent dbname=$bench_db"
repository:
  path: $BENCH_DIR/dbagent-repo
state_dir: $BENCH_DIR/dbagent-state
http:
  listen: 127.0.0.1:$2
monitor:
  interval: $3
$bench_databases
YML
  "$bench_dbagent" --config "$1" config validate >/dev/null
}

start_dbagent() { # NAME PORT INTERVAL -> mon_pid, url
  write_dbagent_yml "$tmp/$1.yml" "$2" "$3"
  mon_start "$1" "$bench_dbagent" --config "$tmp/$1.yml" run
  url=http://127.0.0.1:$2
}

start_exporter() { # NAME PORT ROLE [ARGS...] -> mon_pid, url
  local name=$1 port=$2 role=$3
  shift 3
  mon_start "$name" env DATA_SOURCE_NAME="host=127.0.0.1 port=$BENCH_PORT user=$role dbname=$bench_db sslmode=disable" \
    "$exporter_bin" --web.listen-address="127.0.0.1:$port" "$@"
  url=http://127.0.0.1:$port
}

reset_statements() { mon_sql postgres "SELECT pg_stat_statements_reset()" >/dev/null; }
# db_time ROLE: "total_exec_time_ms calls" of ROLE's statements since the last reset.
db_time() {
  mon_sql postgres "SELECT round(coalesce(sum(total_exec_time), 0)::numeric, 3) || ' ' || coalesce(sum(calls), 0)
    FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = '$1'"
}

# top_statements ROLE DIVISOR: ROLE's 3 costliest statements since the last reset, as JSON.
top_statements() {
  mon_sql postgres "SELECT coalesce(json_agg(t), '[]') FROM (
      SELECT round((total_exec_time / $2)::numeric, 2) AS ms_per_unit, calls,
             left(regexp_replace(query, '\s+', ' ', 'g'), 100) AS query
      FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = '$1'
      ORDER BY total_exec_time DESC LIMIT 3) t"
}

# Describe one scrape in JSON: size, series, per-table series, promtool.
scrape_json() { # FILE
  local f=$1 lint rc=0
  lint=$(promtool check metrics <"$f" 2>&1) || rc=$?
  printf '%s\n' "$lint" >"$f.promtool.txt"
  jq -n --argjson bytes "$(wc -c <"$f")" \
    --argjson series "$(grep -cv -e '^#' -e '^$' "$f" || true)" \
    --argjson families "$(grep -c '^# TYPE ' "$f" || true)" \
    --argjson table_series "$(grep -v '^#' "$f" | grep -c 'relname="' || true)" \
    --argjson tables "$(grep -v '^#' "$f" | grep -o 'relname="[^"]*"' | sort -u | wc -l)" \
    --argjson rc "$rc" --argjson complaints "$(printf '%s' "$lint" | grep -c . || true)" \
    --arg first "$(printf '%s\n' "$lint" | head -n 3)" '
    { bytes: $bytes, series: $series, families: $families, per_table_series: $table_series,
      relnames: $tables, promtool: { exit_status: $rc, complaints: $complaints, first: $first } }'
}

proc_json() { # PID
  jq -n --argjson rss "$(awk '/^VmRSS/ { print $2 }' "/proc/$1/status")" \
    --argjson hwm "$(awk '/^VmHWM/ { print $2 }' "/proc/$1/status")" '{ vmrss_kib: $rss, vmhwm_kib: $hwm }'
}

# The agent's own view of its last poll, from a scrape.
dbagent_poll_json() { # FILE
  awk '$1 == "dbagent_poll_duration_seconds" { printf "{\"poll_duration_s\": %s, \"collectors\": {", $2 }' "$1"
  awk -F'[{}"]' '/^dbagent_collector_duration_seconds\{/ { split($0, v, " "); printf "%s\"%s\": %s", sep, $3, v[2]; sep = ", " }' "$1"
  echo "}}"
}

run_size() { # N | DxN
  local n=$1 load_before load_after names=(dbagent exporter exporter+tables) pids=() urls=() i
  if [[ $n == *x* ]]; then
    local dbs=${n%x*} per=${n#*x} d
    for d in $(seq "$dbs"); do grow_tables "$per" "bench_$d"; done
    bench_db=bench_1
    # Every bench_N and postgres; not the single-database size's `bench`.
    bench_databases="  databases: { exclude: [bench] }"
    echo "==> $dbs databases of $per tables: dbagent run (every database) vs prometheus-postgres-exporter (bench_1)"
  else
    # One database of tables: the DxN size's databases go (dbagent watches every database).
    local extra
    for extra in $(mon_sql postgres "SELECT datname FROM pg_database WHERE datname ~ '^bench_[0-9]+$'"); do
      mon_sql postgres "DROP DATABASE $extra" >/dev/null
    done
    grow_tables "$n"
    bench_db=bench bench_databases=""
    echo "==> $n tables: dbagent run vs prometheus-postgres-exporter (default, and with per-table queries)"
  fi
  local p_agent p_exp p_tab
  p_agent=$(free_port 19188)
  p_exp=$(free_port 19287)
  p_tab=$(free_port 19387)
  start_dbagent dbagent "$p_agent" 15s
  pids+=("$mon_pid") urls+=("$url")
  start_exporter exporter "$p_exp" exporter
  pids+=("$mon_pid") urls+=("$url")
  start_exporter exporter-tables "$p_tab" exporter_tables --extend.query-path="$queries"
  pids+=("$mon_pid") urls+=("$url")
  # Two polls: the statements collector reports deltas from its second poll on.
  wait_until 120 "dbagent's second poll" polls_at_least "${urls[0]}" 2
  wait_until 60 "the exporter" answers "${urls[1]}"
  wait_until 120 "the exporter with per-table queries" answers "${urls[2]}"
  sleep 1
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)

  echo "    scrape time: hyperfine, 3 warm-ups, $RUNS runs"
  local hf=$tmp/hyperfine-$n.json
  hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$hf" --export-markdown "$tmp/hyperfine-$n.md" \
    -n dbagent "curl -s -o /dev/null ${urls[0]}/metrics" \
    -n exporter "curl -s -o /dev/null ${urls[1]}/metrics" \
    -n exporter+tables "curl -s -o /dev/null ${urls[2]}/metrics" \
    -n "curl baseline" "curl -s -o /dev/null ${urls[0]}/healthz" >/dev/null
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)

  local res=$tmp/monitor-$n.json
  echo '{}' >"$res"
  for i in 0 1 2; do
    local f=$scrapes/$n-${names[$i]}.prom proc scrape
    proc=$(proc_json "${pids[$i]}")
    curl -s -o "$f" "${urls[$i]}/metrics"
    scrape=$(scrape_json "$f")
    jq --arg k "${names[$i]}" --argjson p "$proc" --argjson s "$scrape" --slurpfile hf "$hf" '
      .[$k] = ({ scrape_time: ($hf[0].results[] | select(.command == $k)
                 | { mean_s: .mean, stddev_s: .stddev, min_s: .min, max_s: .max, runs: (.times | length) }) }
               + $p + $s)' "$res" >"$res.new" && mv "$res.new" "$res"
  done
  local poll
  poll=$(dbagent_poll_json "$scrapes/$n-dbagent.prom")
  jq --argjson p "$poll" --slurpfile hf "$hf" '.dbagent.last_poll_15s = $p
    | .curl_baseline = ($hf[0].results[] | select(.command == "curl baseline")
        | { what: "curl of dbagent /healthz: process start and connection", mean_s: .mean,
            stddev_s: .stddev, min_s: .min })' "$res" >"$res.new" && mv "$res.new" "$res"
  for i in 0 1 2; do mon_stop "${pids[$i]}"; done

  # Database time. dbagent: a fresh agent polling every 2 s; its first poll (connection, every
  # collector including the 5-minute ones such as bloat), then POLLS polls, each window
  # starting right after a poll was published.
  echo "    database time: dbagent (first poll, then $POLLS polls at 2 s)"
  reset_statements
  start_dbagent dbagent-2s "$p_agent" 2s
  local pid2=$mon_pid url2=$url first p0 steady first_scrape=$tmp/first-poll-$n.prom
  wait_until 120 "dbagent's first poll" polls_at_least "$url2" 1
  read -r first_ms first_calls < <(db_time dbagent)
  curl -s -o "$first_scrape" "$url2/metrics"
  reset_statements
  p0=$(metric "$url2" dbagent_polls_total)
  p0=${p0%.*}
  wait_until $((POLLS * 4 + 60)) "$POLLS polls" polls_at_least "$url2" $((p0 + POLLS))
  local p1
  p1=$(metric "$url2" dbagent_polls_total)
  p1=${p1%.*}
  read -r steady_ms steady_calls < <(db_time dbagent)
  local top
  top=$(top_statements dbagent $((p1 - p0)))
  curl -s -o "$tmp/steady-poll-$n.prom" "$url2/metrics"
  mon_stop "$pid2"
  jq --argjson fms "$first_ms" --argjson fcalls "$first_calls" --argjson ms "$steady_ms" \
    --argjson calls "$steady_calls" --argjson polls "$((p1 - p0))" --argjson fp "$(dbagent_poll_json "$first_scrape")" \
    --argjson sp "$(dbagent_poll_json "$tmp/steady-poll-$n.prom")" --argjson top "$top" '
    .dbagent.steady_poll = $sp | .dbagent.db_top_statements = $top
    | .dbagent.db = { unit: "poll", first_poll_ms: $fms, first_poll_calls: $fcalls, first_poll: $fp,
                    polls: $polls, total_ms: $ms, calls: $calls,
                    ms_per_unit: ($ms / $polls), calls_per_unit: ($calls / $polls) }' "$res" >"$res.new" \
    && mv "$res.new" "$res"

  # The exporters: POLLS scrapes each, one exporter at a time.
  local name role port args k
  for k in exporter exporter+tables; do
    if [ "$k" = exporter ]; then
      role=exporter port=$p_exp args=()
    else
      role=exporter_tables port=$p_tab args=(--extend.query-path="$queries")
    fi
    echo "    database time: $k ($POLLS scrapes)"
    name=${k/+/-}-db
    start_exporter "$name" "$port" "$role" "${args[@]}"
    local epid=$mon_pid eurl=$url
    wait_until 120 "$k" answers "$eurl"   # the first scrape (connection, version checks) is not counted
    reset_statements
    for _ in $(seq "$POLLS"); do curl -s -o /dev/null "$eurl/metrics"; done
    read -r ms calls < <(db_time "$role")
    top=$(top_statements "$role" "$POLLS")
    mon_stop "$epid"
    jq --arg k "$k" --argjson ms "$ms" --argjson calls "$calls" --argjson n "$POLLS" --argjson top "$top" '
      .[$k].db = { unit: "scrape", scrapes: $n, total_ms: $ms, calls: $calls,
                   ms_per_unit: ($ms / $n), calls_per_unit: ($calls / $n) }
      | .[$k].db_top_statements = $top' "$res" >"$res.new" \
      && mv "$res.new" "$res"
  done
  jq --arg n "$n" --arg lb "$load_before" --arg la "$load_after" \
    '{ tables: $n, load_average_before: $lb, load_average_after: $la, curl_baseline: .curl_baseline,
       targets: del(.curl_baseline) }' "$res" >"$res.new" \
    && mv "$res.new" "$res"
}

# ---------------------------------------------------------------------------------------------
mkdir -p "$out" "$scrapes"
mon_cluster_ready
bench_dbagent_setup
[ -n "$bench_dbagent" ] || bench_die "no dbagent release build: nothing to compare"
dbagent_has run || bench_die "this dbagent has no \`run\` command"
machine="$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME")"
dbagent_version=$("$bench_dbagent" --version | awk '{ print $2 }')
exporter_version=$("$exporter_bin" --version 2>&1 | awk 'NR == 1 { print $3 }')

for n in $SIZES; do run_size "$n"; done

jq -s --arg date "$(date -u +%FT%TZ)" --arg machine "$machine" --arg pg "$bench_pg_version" \
  --arg dbagent "$dbagent_version" --arg exporter "$exporter_version" --argjson runs "$RUNS" \
  --argjson polls "$POLLS" '
  { date: $date, machine: $machine, postgres: $pg, dbagent: $dbagent,
    postgres_exporter: $exporter, hyperfine_runs: $runs, polls_for_db_time: $polls, sizes: . }' \
  $(for n in $SIZES; do echo "$tmp/monitor-$n.json"; done) >"$out/monitor.json"

{
  echo "# \`dbagent run\` /metrics vs prometheus-postgres-exporter"
  echo
  echo "$(date -u +%F), $machine; PostgreSQL $bench_pg_version, dbagent $dbagent_version (release)," \
    "prometheus-postgres-exporter $exporter_version (Debian). Each target started afresh per size." \
    "Scrape time: hyperfine of \`curl -s -o /dev/null URL/metrics\`, 3 warm-ups, $RUNS runs." \
    "RSS: /proc/PID/status after that. DB time: sum of pg_stat_statements.total_exec_time of" \
    "the target's role (no planning time) per dbagent poll ($POLLS polls at monitor.interval 2s," \
    "after the first) or per exporter scrape ($POLLS scrapes)."
  jq -r '
    def ms: . * 1000 | if . < 10 then (. * 100 | round / 100) else (. * 10 | round / 10) end;
    def mib: . / 1024 | . * 10 | round / 10;
    .sizes[] |
    "\n## \(.tables | if test("x") then (split("x") | "\(.[0]) databases of \(.[1])") else . end) tables\n\nLoad average before / after the scrapes: \(.load_average_before) / \(.load_average_after)\n",
    "| Target | Scrape time (mean ± σ) | Min | VmRSS / VmHWM | Scrape size | Series | Per-table series (tables) | promtool check metrics | DB time per poll or scrape |",
    "|:---|---:|---:|---:|---:|---:|---:|:---|---:|",
    (.targets | to_entries[] | .key as $k | .value |
      "| \($k) | \(.scrape_time.mean_s | ms) ms ± \(.scrape_time.stddev_s | ms) | \(.scrape_time.min_s | ms) ms | \(.vmrss_kib | mib) / \(.vmhwm_kib | mib) MiB | \(.bytes / 1000 | round) kB | \(.series) | \(.per_table_series) (\(.relnames)) | \(if .promtool.exit_status == 0 and .promtool.complaints == 0 then "pass" else "exit \(.promtool.exit_status), \(.promtool.complaints) complaints" end) | \(.db.ms_per_unit * 100 | round / 100) ms (\(.db.calls_per_unit * 10 | round / 10) statements) |"),
    "",
    "Scrape time includes starting curl: \(.curl_baseline.mean_s | ms) ms ± \(.curl_baseline.stddev_s | ms) for a curl of dbagent'"'"'s /healthz.",
    "",
    (.targets.dbagent | "dbagent: a poll at 2 s (after \(.db.polls) more) took \(.steady_poll.poll_duration_s | ms) ms (collectors, concurrent on one connection: \(.steady_poll.collectors | to_entries | map("\(.key) \(.value | ms)") | join(", ")) ms); its first poll (with the 5-minute collectors such as bloat) \(.db.first_poll.poll_duration_s | ms) ms, \(.db.first_poll_ms) ms of database time in \(.db.first_poll_calls) statements (\(.db.first_poll.collectors | to_entries | map("\(.key) \(.value | ms)") | join(", ")) ms).")
  ' "$out/monitor.json"
  echo
  echo "Costliest statements (database time per poll or scrape):"
  echo
  jq -r '.sizes[] | .tables as $n | .targets | to_entries[] |
    "- \($n) tables, \(.key): " + (.value.db_top_statements | map("\(.ms_per_unit) ms `\(.query | .[0:70])...`") | join("; "))' \
    "$out/monitor.json"
  echo
  echo "promtool complaints, first lines (full lists in target/bench/monitor/*.promtool.txt):"
  echo
  jq -r '.sizes[] | .tables as $n | .targets | to_entries[] | select(.value.promtool.complaints > 0) |
    "- \($n) tables, \(.key): \(.value.promtool.first | gsub("\n"; " / "))"' "$out/monitor.json"
} >"$out/monitor.md"
echo
cat "$out/monitor.md"
