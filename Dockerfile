# syntax=docker/dockerfile:1
#
# cnpg-autoresize container image.
#
#   docker build -t cnpg-autoresize:dev .
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t ... .
#
# Runtime choice: gcr.io/distroless/cc-debian12:nonroot rather than static
# musl + scratch. The binary uses rustls (no OpenSSL) and ring, so it only
# needs glibc and libgcc_s, which the distroless "cc" image provides together
# with CA certificates, tzdata and a nonroot user (65532) — no shell, no
# package manager. A musl build would need a C cross toolchain for ring and
# musl's allocator is markedly slower under tokio; it saves ~20 MB at most.
#
# The builder is pinned to Debian bookworm to match the runtime: a binary
# linked on a newer Debian (rust:1 defaults to the latest release) can ask
# for glibc symbols bookworm does not have and fail to start.

ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# The whole workspace is needed: Cargo resolves every member (crates/*) even
# when only the main binary is built. .dockerignore keeps target/ and .git out.
COPY . .
# Cache mounts keep the registry and build artifacts between builds; the
# binary is copied out of the cache mount in the same step.
# --no-default-features: the manager and the CNPG-I plugin (run, plan,
# validate, status, plugin); the test bed behind `demo` and `sandbox` (an API
# server, a PostgreSQL launcher) does not ship beside the database.
# hack/check-lean.sh proves it in CI.
# Symbols are stripped here only (benchmarks and profiles keep them).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --no-default-features --bin cnpg-autoresize \
    && install -D -m 0755 target/release/cnpg-autoresize /out/cnpg-autoresize

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cnpg-autoresize" \
      org.opencontainers.image.description="PVC auto-resizer for PostgreSQL (CloudNativePG) on Kubernetes; runs beside PostgreSQL in every instance pod" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/cnpg-autoresize/cnpg-autoresize" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=builder /out/cnpg-autoresize /cnpg-autoresize
# 65532 = "nonroot" in distroless. In CNPG instance pods the pod-level
# securityContext (postgres, UID 26) takes precedence, which is what reading
# pg_wal/archive_status needs. The process writes nothing to the filesystem,
# so readOnlyRootFilesystem: true works without any writable mount.
USER 65532:65532
# /metrics, /healthz, /readyz, /v1/status (container port name "autoresize").
EXPOSE 9188
ENTRYPOINT ["/cnpg-autoresize"]
CMD ["run"]
