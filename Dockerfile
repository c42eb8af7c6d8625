# syntax=docker/dockerfile:1
#
# One image with the pipeline's three binaries:
#   usage-ingest   Kafka -> ClickHouse consumers (`run`), schema migrations
#                  (`migrate`), dead-letter replay (`replay-dlq`)
#   usage-report   the report HTTP service (no subcommand: `usage-report`)
#   usage-loadgen  scenario generator (`publish`, `expected`, `verify`)
#
#   docker build -t usage-pipeline:local .     (or: docker compose build)
#
# Needs BuildKit (the default builder of Docker Engine 23+ and of
# `docker compose`): the build step keeps the crate registry and the compiled
# dependencies (librdkafka included) in cache mounts, so a rebuild after a
# source change recompiles only the workspace crates.
#
# Base images are pinned by tag. A CI that can reach the registry should pin
# them by digest as well (`FROM rust:1.95-bookworm@sha256:...`) and bump them
# deliberately.

############################## build ##########################################
# Toolchain: the one this project's machines and CI use (1.95), on the same
# Debian release as the runtime image (the binaries need its glibc).
# The workspace declares rust-version 1.89 (Cargo.toml): the highest
# `rust-version` of the locked dependencies (clickhouse 0.15.3 and uuid
# 1.29.3 need 1.89, icu_* 1.88); cargo refuses to build them with an older
# rustc. Never go below it.
FROM rust:1.95-bookworm AS builder

# rdkafka (default features + "tokio") builds librdkafka from source with
# rdkafka-sys's bundled build: librdkafka's own ./configure (bash) then
# `make libs`, linked statically. That needs:
#   build-essential  gcc, g++ (the C++ wrapper is built too), make
#   python3          lds-gen.py writes the linker script; configure looks for it
#   pkg-config, zlib1g-dev
#                    libz-sys finds the system zlib (linked dynamically,
#                    libz.so.1 is part of every Debian base image)
# Not needed: cmake (the "cmake-build" feature is off), OpenSSL, SASL, zstd,
# curl (features off). Turning rdkafka's "ssl" feature on would add
# libssl-dev here and libssl3 in the runtime image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential \
        pkg-config \
        python3 \
        zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

# The whole context (.dockerignore keeps target/, .git/ and .local/ out): every
# workspace member's manifest must be present (crates/*, tests/), and a crate
# may embed files from schemas/ at compile time. Dependency caching comes from
# the cache mounts below, not from layer ordering.
WORKDIR /src
COPY . .

# --locked: Cargo.lock is the truth; a stale lock fails the build instead of
# silently resolving new versions.
RUN --mount=type=cache,id=usage-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=usage-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=usage-target,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p usage-ingest -p usage-report -p usage-loadgen \
 && mkdir -p /out \
 && cp target/release/usage-ingest \
       target/release/usage-report \
       target/release/usage-loadgen \
       /out/

############################## runtime ########################################
FROM debian:bookworm-slim AS runtime

# The binaries need glibc, libgcc_s and libz.so.1 (all in the base image);
# librdkafka is inside them. ca-certificates for TLS endpoints, if configured.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# An unprivileged user with a fixed id; /var/lib/usage is its writable state
# directory (docker-compose mounts a volume there for the report service).
RUN groupadd --system --gid 10001 usage \
 && useradd --system --uid 10001 --gid usage --home-dir /var/lib/usage \
        --no-create-home --shell /usr/sbin/nologin usage \
 && mkdir -p /var/lib/usage \
 && chown usage:usage /var/lib/usage

COPY --from=builder /out/ /usr/local/bin/

# `usage-ingest migrate` reads schemas/clickhouse/*.sql at run time; its
# default (--migrations-dir, env USAGE_MIGRATIONS_DIR) is the relative path
# schemas/clickhouse, which resolves from this working directory. The env
# variable says the same thing explicitly.
WORKDIR /app
COPY schemas/ /app/schemas/
ENV USAGE_MIGRATIONS_DIR=/app/schemas/clickhouse

USER 10001:10001

# 8080: usage-report HTTP; 9464: Prometheus metrics of usage-ingest.
EXPOSE 8080 9464

# docker-compose.yml names the binary and subcommand of each service.
CMD ["usage-ingest", "--help"]
