#!/usr/bin/env bash
# scripts/package-deb.sh: build the dbagent Debian package (target/debian/dbagent_*.deb).
#
#   scripts/package-deb.sh              release build, man pages, completions, cargo deb
#   scripts/package-deb.sh --no-build   reuse target/release/dbagent as it is (release checks)
#
# The package (Cargo.toml [package.metadata.deb]): /usr/bin/dbagent, man pages (dbagent(1) and
# one per subcommand), bash/zsh/fish completions, the systemd unit, example configuration under
# /etc/dbagent (conffiles) and maintainer scripts (deploy/debian/) that create the repository
# and state directories for the postgres OS user. cargo-deb is installed under /opt/dbagent if
# missing. Install the result with: apt-get install ./target/debian/dbagent_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/deps.sh

build=1
case "${1:-}" in
  --no-build) build=0 ;;
  "") ;;
  *) sed -n '2,11p' "$0"; exit 2 ;;
esac

install_cargo_deb
apt_install dpkg-dev

if [ "$build" = 1 ]; then
  echo "==> cargo build --release --locked (the first release build takes several minutes)"
  cargo build --release --locked
fi
bin=target/release/dbagent
if [ ! -x "$bin" ]; then
  echo "package-deb: $bin is missing; run without --no-build" >&2
  exit 1
fi

# Generated from the binary being packaged, so they describe exactly its flags.
echo "==> man pages and completions from $bin"
rm -rf target/release/dbagent-man target/release/dbagent-completions
"$bin" generate man --dir target/release/dbagent-man >/dev/null
gzip -9n target/release/dbagent-man/*.1
"$bin" generate completions --dir target/release/dbagent-completions >/dev/null

echo "==> cargo deb --no-build"
# Line tables stay in the binary (Cargo.toml [profile.release]): a panic names file and line.
PATH="$(dirname "$CARGO_DEB"):$PATH" cargo deb --no-build --no-strip
ls -l target/debian/dbagent_*.deb
