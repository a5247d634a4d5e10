#!/usr/bin/env bash
# scripts/bench/get-each.sh NAMES_FILE PG_WAL CMD [ARGS...]: runs `CMD ARGS... NAME PG_WAL/RECOVERYXLOG`
# once per WAL file name in NAMES_FILE, in order, one process per segment as PostgreSQL's
# restore_command would, and removes RECOVERYXLOG after each (the server would replay it and
# move on). Stops at the first failure. With PUSH_TIME_FILE set, each call runs under
# /usr/bin/time and appends "elapsed_s max_rss_kib" to that file. Used by `scripts/bench.sh restore`.
set -euo pipefail
names=$1
pg_wal=$2
shift 2
while read -r name; do
  if [ -n "${PUSH_TIME_FILE:-}" ]; then
    /usr/bin/time -f '%e %M' -a -o "$PUSH_TIME_FILE" "$@" "$name" "$pg_wal/RECOVERYXLOG" \
      || { echo "get of $name failed" >&2; exit 1; }
  else
    "$@" "$name" "$pg_wal/RECOVERYXLOG" || { echo "get of $name failed" >&2; exit 1; }
  fi
  [ "$(stat -c %s "$pg_wal/RECOVERYXLOG")" = 16777216 ] || { echo "$name: wrong size" >&2; exit 1; }
  rm -f "$pg_wal/RECOVERYXLOG"
done <"$names"
