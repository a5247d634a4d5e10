# dbagent image: a static-ish release build on Debian slim, next to the PostgreSQL client
# tools it drives (pg_basebackup, pg_verifybackup).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/dbagent

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/dbagent --create-home dbagent
COPY --from=build /src/target/release/dbagent /usr/local/bin/dbagent
USER dbagent
ENTRYPOINT ["/usr/local/bin/dbagent"]
EXPOSE 9188
CMD ["run"]
