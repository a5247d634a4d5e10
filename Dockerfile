# dbagent image: a release build on Debian slim, next to the PostgreSQL 15 programs it drives
# (pg_basebackup, pg_verifybackup; pg_ctl and postgres for `dbagent drill`).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/dbagent

# PostgreSQL with dbagent beside it, for archive_command = 'dbagent wal-push %p'
# (docker-compose.replica.yml: `target: postgres-dbagent`). uid 999 is postgres here.
FROM postgres:15 AS postgres-dbagent
COPY --from=build /src/target/release/dbagent /usr/local/bin/dbagent
RUN mkdir -p /var/lib/dbagent/repo && chown -R postgres:postgres /var/lib/dbagent

# The sidecar image (the default target). The dbagent user has uid 999 like postgres in the
# official image, so both can share the repository volume.
FROM debian:bookworm-slim
RUN apt-get update \
 && mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
 && apt-get install -y --no-install-recommends postgresql-15 ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 999 dbagent \
 && useradd --system --uid 999 --gid 999 --home /var/lib/dbagent --create-home dbagent \
 && mkdir -p /var/lib/dbagent/repo /var/lib/dbagent/state \
 && chown -R dbagent:dbagent /var/lib/dbagent
COPY --from=build /src/target/release/dbagent /usr/local/bin/dbagent
USER dbagent
ENTRYPOINT ["/usr/local/bin/dbagent"]
EXPOSE 9188
CMD ["run"]
