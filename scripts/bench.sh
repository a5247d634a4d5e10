#!/usr/bin/env bash
# scripts/bench.sh: measure dbagent side by side with the tools SREs use instead, on the
# quickstart sandbox cluster (started if needed). Results go to target/bench/ and are
# summarised in BENCHMARKS.md by hand.
#
#   scripts/bench.sh            all benchmarks
#   scripts/bench.sh check      only `dbagent check` vs check_postgres
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
apt_install hyperfine check-postgres

what=${1:-all}
out=target/bench
mkdir -p "$out"

bash scripts/quickstart.sh >/dev/null || true
sandbox=${SANDBOX_DIR:-$(pwd)/sandbox}
port=${SANDBOX_PORT:-54329}
conf=$sandbox/dbagent.yml
dbagent=$sandbox/bin/dbagent

if [ "$what" = all ] || [ "$what" = check ]; then
  echo "==> dbagent check (14 checks, one process) vs check_postgres (the same ground, one action per run)"
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
fi
