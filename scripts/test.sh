#!/usr/bin/env bash
# scripts/test.sh: install what the test suite needs on a fresh Debian machine, then run
# the lints and the whole suite (unit + integration tests against real PostgreSQL 15 and 18,
# and 17 for the incremental and standby tests).
#
#   scripts/test.sh            install (if missing), lint, test
#   scripts/test.sh --no-lint  skip cargo fmt / clippy
#   scripts/test.sh -- ARGS    pass ARGS to cargo nextest (e.g. -- -E 'test(check)')
#   scripts/test.sh --release-checks
#                              then the release checks (scripts/ci/release-checks.sh: cargo
#                              install, the .deb installed and run, the quickstart with an alert);
#                              on by default when CI=true
#
# Needs root (or passwordless apt) for the first run: it installs Debian packages and the
# PostgreSQL 18 and 17 wheels under /opt/dbagent. The tests run PostgreSQL as the `postgres`
# OS user.
set -euo pipefail
cd "$(dirname "$0")/.."

lint=1
release_checks=0
[ "${CI:-}" = "true" ] && release_checks=1
nextest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-lint) lint=0 ;;
    --release-checks) release_checks=1 ;;
    --) shift; nextest_args=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "scripts/test.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

source scripts/lib/deps.sh
install_test_deps

if [ "$lint" = 1 ]; then
  echo "==> cargo fmt --check"
  cargo fmt --all -- --check
  echo "==> cargo clippy --all-targets -- -D warnings"
  cargo clippy --all-targets --quiet -- -D warnings
  # The rust-version Cargo.toml declares is a promise: check that it still builds there.
  msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
  echo "==> cargo +$msrv check --all-targets (the declared rust-version)"
  if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$msrv" --profile minimal >/dev/null
  fi
  cargo +"$msrv" check --all-targets --quiet
fi

echo "==> tests"
profile=default
[ "${CI:-}" = "true" ] && profile=ci
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --profile "$profile" --all-targets "${nextest_args[@]}"
else
  echo "cargo-nextest not found; using cargo test" >&2
  cargo test --all-targets "${nextest_args[@]}"
fi

if [ "$release_checks" = 1 ]; then
  echo "==> release checks"
  bash scripts/ci/release-checks.sh
fi
