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

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

############################ build stage ############################
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build

# C toolchain for the -sys crates (zstd, lz4, ring); nothing here reaches the
# runtime stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config gcc g++ make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The workspace's single release profile; the binaries leave the cache mount
# by copy so that the layer keeps only them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p sluice-engine -p sluice-scheduler -p sluice-executor \
    && mkdir -p /out \
    && cp target/release/sluice target/release/sluice-scheduler \
          target/release/sluice-executor /out/

############################ runtime stage ############################
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

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
# zone (Europe/Berlin by default). No compilers, no package caches.
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

# Scheduler: 50050 (gRPC + REST /api/state). Executor: 50051 (Flight), 50052 (gRPC).
EXPOSE 50050 50051 50052

# A TCP probe of the service port: 50050 for the scheduler (the default);
# run executors with SLUICE_HEALTH_PORT=50051. Kubernetes uses the chart's
# own probes instead; a one-shot `sluice run` container does not need it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SLUICE_HEALTH_PORT}"]

ENTRYPOINT []
CMD ["sluice", "--help"]
