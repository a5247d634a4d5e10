#!/usr/bin/env bash
# scripts/bench/push-each.sh SEGDIR CMD [ARGS...]: runs `CMD ARGS... SEGMENT` once per file in
# SEGDIR, in name order, one process per segment as PostgreSQL's archive_command would, and
# stops at the first failure. With PUSH_TIME_FILE set, each push runs under /usr/bin/time and
# appends "elapsed_s max_rss_kib" to that file. Used by `scripts/bench.sh wal-push` (which
# copies it next to the dbagent binary, where the postgres OS user can read it).
set -euo pipefail
segdir=$1
shift
for f in "$segdir"/*; do
  if [ -n "${PUSH_TIME_FILE:-}" ]; then
    /usr/bin/time -f '%e %M' -a -o "$PUSH_TIME_FILE" "$@" "$f" || { echo "push of $f failed" >&2; exit 1; }
  else
    "$@" "$f" || { echo "push of $f failed" >&2; exit 1; }
  fi
done
