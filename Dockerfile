# Lockana's container image.
#
#   docker build -t lockana .
#   docker run -d --name lockana --read-only -p 8200:8200 -v lockana-data:/var/lib/lockana lockana
#
# Build stage: the official Rust image compiles the server. Runtime stage: FROM scratch
# with only what the binary needs (itself, the four glibc files `ldd` names, /etc/passwd
# for the fixed non-root user, a default config): no shell, no package manager, no curl.
# dist/container/rootfs.sh assembles that tree; tests/container/ runs the same script on
# a host-built binary and builds the runtime stage from it (`--build-arg ROOTFS=...`), so
# the stage that ships is the stage that is tested. Podman needs `--format docker` for
# HEALTHCHECK (the OCI image format has no health check).

# The stage that provides /rootfs to the runtime stage: the build below, or an image
# made from a binary built elsewhere (the tests do that; see the top of this file).
ARG ROOTFS=build

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Stripped: the symbols are 4/5 of an unstripped release binary; a panic's message and
# location stay, only the backtrace's function names go.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked -p lockana-server --bin lockana \
 && sh dist/container/rootfs.sh target/release/lockana /rootfs

FROM ${ROOTFS} AS rootfs

FROM scratch AS runtime
COPY --from=rootfs /rootfs/ /
# COPY sets owner 0:0 unless told: /var/lib/lockana (mode 0700) goes to the server's
# user, so a new named volume mounted there starts with that owner (a bind mount must
# be chowned to 10001 by hand).
COPY --from=rootfs --chown=10001:10001 /rootfs/var/lib/ /var/lib/
USER 10001:10001
# `lockana health` and `docker exec lockana lockana operator ...` talk to the local
# listener. With TLS in lockana.hcl, set VAULT_ADDR=https://127.0.0.1:8200 and
# VAULT_CACERT (or VAULT_SKIP_VERIFY for a self-signed test certificate).
ENV VAULT_ADDR=http://127.0.0.1:8200
VOLUME ["/var/lib/lockana"]
EXPOSE 8200
# SIGTERM: stop accepting, finish in-flight requests (up to 30 s: give `docker stop`
# a --time above that), seal, close the storage, exit 0.
STOPSIGNAL SIGTERM
# Healthy while the server answers, sealed or not: a sealed server is waiting for its
# operators, not broken. `lockana health --unsealed` is the stricter check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/lockana", "health"]
ENTRYPOINT ["/usr/local/bin/lockana"]
CMD ["server", "--config", "/etc/lockana/lockana.hcl"]
