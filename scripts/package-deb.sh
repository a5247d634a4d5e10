#!/usr/bin/env bash
# scripts/package-deb.sh: build the dbagent Debian package (target/debian/dbagent_*.deb).
#
#   scripts/package-deb.sh              release build, man pages, completions, cargo deb
#   scripts/package-deb.sh --no-build   reuse target/release/dbagent as it is (release checks)
#   scripts/package-deb.sh --fast       lighter compression (CI: seconds instead of a minute)
#
# The package (Cargo.toml [package.metadata.deb]): /usr/bin/dbagent, man pages (dbagent(1) and
# one per subcommand), bash/zsh/fish completions, the systemd unit, example configuration under
# /etc/dbagent (conffiles) and maintainer scripts (deploy/debian/) that create the repository
# and state directories for the postgres OS user. The binary is stripped; its debug info (the
# release profile keeps line tables) goes into dbagent-dbgsym_*.ddeb beside it, as Debian does.
# cargo-deb is installed under /opt/dbagent if missing.
# Install the result with: apt-get install ./target/debian/dbagent_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/deps.sh
# Cargo's target directory (CI keeps it outside the clone: .ci/run).
target_dir=${CARGO_TARGET_DIR:-target}

build=1
deb_args=(--no-build --dbgsym)
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    --fast) deb_args+=(--fast) ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
  esac
done

install_cargo_deb
apt_install dpkg-dev

if [ "$build" = 1 ]; then
  echo "==> cargo build --release --locked (the first release build takes several minutes)"
  cargo build --release --locked
fi
bin=$target_dir/release/dbagent
if [ ! -x "$bin" ]; then
  echo "package-deb: $bin is missing; run without --no-build" >&2
  exit 1
fi

# Generated from the binary being packaged, so they describe exactly its flags.
echo "==> man pages and completions from $bin"
rm -rf $target_dir/release/dbagent-man $target_dir/release/dbagent-completions
"$bin" generate man --dir $target_dir/release/dbagent-man >/dev/null
gzip -9n $target_dir/release/dbagent-man/*.1
"$bin" generate completions --dir $target_dir/release/dbagent-completions >/dev/null

echo "==> cargo deb ${deb_args[*]}"
rm -f $target_dir/debian/dbagent_*.deb $target_dir/debian/dbagent-dbgsym_*.ddeb
PATH="$(dirname "$CARGO_DEB"):$PATH" cargo deb "${deb_args[@]}"
ls -l $target_dir/debian/
