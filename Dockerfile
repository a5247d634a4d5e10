# dbagent image: a release build on Debian bookworm slim, next to the PostgreSQL programs it
# drives (pg_basebackup, pg_verifybackup; pg_ctl and postgres for `dbagent drill`), which must
# be of the server's major version. Choose it with a build argument (15, 16, 17 or 18):
#   docker build --build-arg PG_MAJOR=17 -t dbagent:pg17 .
#   docker build --build-arg PG_MAJOR=17 --target postgres-dbagent -t postgres-dbagent:17 .
# bookworm itself ships PostgreSQL 15; 16 to 18 come from the PostgreSQL project's apt
# repository (PGDG), enabled with the script of Debian's postgresql-common.
# Not built in CI (no container engine there); see docs/install.md.
ARG PG_MAJOR=15

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/dbagent

# PostgreSQL with dbagent beside it, for archive_command = 'dbagent wal-push %p'
# (docker-compose.replica.yml: `target: postgres-dbagent`). uid 999 is postgres here.
FROM postgres:${PG_MAJOR}-bookworm AS postgres-dbagent
COPY --from=build /src/target/release/dbagent /usr/local/bin/dbagent
RUN mkdir -p /var/lib/dbagent/repo && chown -R postgres:postgres /var/lib/dbagent

# The sidecar image (the default target). The dbagent user has uid 999 like postgres in the
# official image, so both can share the repository volume.
FROM debian:bookworm-slim
ARG PG_MAJOR
RUN set -eux; \
    case "$PG_MAJOR" in 15|16|17|18) ;; *) echo "PG_MAJOR must be 15, 16, 17 or 18" >&2; exit 1 ;; esac; \
    apt-get update; \
    mkdir -p /etc/postgresql-common; \
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf; \
    if [ "$PG_MAJOR" != 15 ]; then \
      apt-get install -y --no-install-recommends postgresql-common ca-certificates; \
      /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
    fi; \
    apt-get install -y --no-install-recommends "postgresql-$PG_MAJOR" ca-certificates tzdata; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 999 dbagent; \
    useradd --system --uid 999 --gid 999 --home /var/lib/dbagent --create-home dbagent; \
    mkdir -p /var/lib/dbagent/repo /var/lib/dbagent/state; \
    chown -R dbagent:dbagent /var/lib/dbagent
COPY --from=build /src/target/release/dbagent /usr/local/bin/dbagent
USER dbagent
ENTRYPOINT ["/usr/local/bin/dbagent"]
EXPOSE 9188
CMD ["run"]
