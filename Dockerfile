# syntax=docker/dockerfile:1.7
#
# One image, three entry points: `sluice` (CLI and pipeline driver),
# `sluice-scheduler` and `sluice-executor` (Ballista 55 with Sluice's session
# setup). Build from the repository root:
#
#   docker build -t <acr>.azurecr.io/sluice:0.1.0 .
#   az acr build -r <acr> -t sluice:0.1.0 .        # builds in Azure, no local engine
#
# This machine has no Docker engine, so the image is not built by the test
# suite; tests/deploy/test_dockerfile.py checks this file's structure.

# Base images are pinned by digest (reproducible, tamper-evident builds).
# Bump both together: docker buildx imagetools inspect rust:1.95-slim-bookworm
# (and debian:bookworm-slim), then replace the sha256 below.
ARG RUST_IMAGE=rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082
ARG RUNTIME_IMAGE=debian:bookworm-slim@sha256:7b140f374b289a7c2befc338f42ebe6441b7ea838a042bbd5acbfca6ec875818
# The cargo profile of the image: release + stripped symbols (Cargo.toml).
ARG PROFILE=dist

############################ chef stage ############################
# cargo-chef splits the build in two layers: the dependencies (DataFusion,
# Ballista, Arrow: the 30-minute part) are compiled from a recipe that only
# changes with Cargo.toml/Cargo.lock, so a source change rebuilds Sluice's
# own crates only.
FROM ${RUST_IMAGE} AS chef
# C toolchain for the -sys crates (zstd, lz4, ring); nothing here reaches the
# runtime stage. Versions: the digest-pinned base's bookworm snapshot.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config gcc g++ make \
    && rm -rf /var/lib/apt/lists/* \
    && cargo install cargo-chef --locked --version 0.1.73 \
    && rm -rf /usr/local/cargo/registry
WORKDIR /src

############################ planner stage ############################
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

############################ build stage ############################
FROM chef AS build
ARG PROFILE
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: cached as long as recipe.json (the manifests and the
# lock file) is unchanged.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo chef cook --profile ${PROFILE} --locked --recipe-path recipe.json \
        -p sluice -p sluice-scheduler -p sluice-executor
# Then Sluice itself; the binaries leave the target dir by copy so that the
# layer keeps only them.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --profile ${PROFILE} --locked \
        -p sluice -p sluice-scheduler -p sluice-executor \
    && mkdir -p /out \
    && cp target/${PROFILE}/sluice target/${PROFILE}/sluice-scheduler \
          target/${PROFILE}/sluice-executor /out/

############################ runtime stage ############################
FROM ${RUNTIME_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sluice" \
      org.opencontainers.image.description="Sluice batch ML pipelines: sluice CLI, Ballista scheduler and executor" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/sluice-ml/sluice" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Sluice"

# CA certificates for TLS to ADLS / Entra ID, tzdata for the features' time
# zone (Europe/Berlin by default). No compilers, no package caches. The
# package versions come from the digest-pinned base's bookworm snapshot.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid sluice --home-dir /home/sluice \
        --create-home --shell /usr/sbin/nologin sluice

COPY --from=build --chown=root:root --chmod=0755 /out/ /usr/local/bin/

# Kubernetes mounts the pipeline config at /etc/sluice and gives /tmp and
# /work as emptyDirs (the root filesystem is read-only there).
ENV RUST_LOG=info \
    SLUICE_HEALTH_PORT=50050
WORKDIR /home/sluice
USER 10001:10001

# Scheduler: 50050 (gRPC + /healthz, /readyz). Executor: 50051 (Flight),
# 50052 (gRPC), 50053 (/healthz, /readyz).
EXPOSE 50050 50051 50052 50053

# A TCP probe of the health port: 50050 for the scheduler (the default); run
# executors with SLUICE_HEALTH_PORT=50053. Kubernetes uses the chart's own
# HTTP probes instead; a one-shot `sluice run` container does not need it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SLUICE_HEALTH_PORT}"]

ENTRYPOINT []
CMD ["sluice", "--help"]
