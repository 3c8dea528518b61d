# vod-purge container image.
#
#   docker build -t vod-purge:0.1.0 .
#
# Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe) -> builder (cached
# dependency layer, then the crate) -> runtime (distroless, no shell, non-root).
# The dependency layer is rebuilt only when Cargo.toml / Cargo.lock change.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
WORKDIR /src
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"

# Reduce the manifests to a recipe; its content changes only when dependencies change.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json --bin vod-purge

FROM chef AS builder
# If sqlx::query! macros are used, they read the checked-in .sqlx/ data, never a live database.
ENV SQLX_OFFLINE=true
COPY --from=planner /src/recipe.json recipe.json
# Cached layer: every dependency, compiled against a skeleton of the crate.
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin vod-purge
COPY . .
# The binary links only libc/libm/libgcc_s (rustls, bundled SQLite), so distroless/cc runs it.
# /out/data becomes the writable /data of the runtime image (SQLite default location).
RUN cargo build --release --locked --bin vod-purge \
 && install -D -m 0755 target/release/vod-purge /out/usr/local/bin/vod-purge \
 && install -d -m 0750 /out/data

# Same Debian release as the builder (glibc 2.36). The nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="vod-purge" \
      org.opencontainers.image.description="CMS webhooks in, batched and rate-limited Alibaba Cloud VOD purges out" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/usr/local/bin/vod-purge /usr/local/bin/vod-purge
COPY --from=builder --chown=65532:65532 /out/data /data
COPY docker/config.toml /etc/vod-purge/config.toml
# JSON logs in containers; every other setting can be overridden the same way
# (VOD_PURGE_<SECTION>__<KEY>, e.g. VOD_PURGE_VOD__MAX_REQUESTS_PER_SECOND=20).
ENV VOD_PURGE_SERVER__LOG_FORMAT=json
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# No shell or curl in the image: the binary probes its own /healthz (http://127.0.0.1:8080).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/vod-purge", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/vod-purge"]
CMD ["serve", "--config", "/etc/vod-purge/config.toml"]
