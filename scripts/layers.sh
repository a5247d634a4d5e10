#!/usr/bin/env bash
# scripts/layers.sh: check the library's architecture (tests/it/layers.rs): no file-level
# import cycle, no import from a lower layer to a higher one (the table LAYERS in the test),
# each top-level module's doc comment says its layer and what it uses, and nothing of the
# binary's command line is reachable from the library. Needs no PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo nextest run --test it -E 'test(/^layers::/)' "$@"
