# The pymultus image: the `pymultus` command (installer, thick daemon, health check) in a
# virtualenv, plus the self-contained `multus` / `multus-shim` executables that the installer
# copies onto each node (they run on the host, which may have no Python at all).
#
#   docker build -t pymultus:0.1.0 .
#
# One command, with any builder (BuildKit or the classic one; no `# syntax=` line, so BuildKit
# needs no frontend image). Behind a TLS-intercepting proxy, give pip the proxy's CA (one or
# more PEM certificates; trusted in the build stages only, never in the final image):
#   docker build --build-arg EXTRA_CA_CERTS="$(cat proxy-ca.pem)" -t pymultus:0.1.0 .
#
# Nothing is downloaded except through the package registries' own clients (apt, pip).
# tests/deploy/test_dockerfile.py checks this file's structure; tests/image builds it
# (scripts/image.sh, with EXTRA_CA_CERTS) from a Debian 12 base made locally with mmdebstrap.

# Debian's own python3 (3.11 on bookworm): the same CPython a Debian 12 node has, and the one
# the self-contained bundle is made from. Any Debian 12 based image works; one that already has
# python3, python3-venv and python3-pip (like the test suite's) skips the apt step.
ARG BASE_IMAGE=debian:bookworm-slim

# ---- python: Debian's python3 with venv and pip, plus any extra CA certificates for the build ---
FROM ${BASE_IMAGE} AS python
ARG EXTRA_CA_CERTS=""
RUN if ! python -c 'import ensurepip, pip, venv' 2>/dev/null; then \
        apt-get update \
     && apt-get install -y --no-install-recommends \
            python3 python3-venv python3-pip python-is-python3 ca-certificates \
     && rm -rf /var/lib/apt/lists/*; \
    fi \
 && if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" >/tmp/extra-ca.pem \
     && csplit --quiet --elide-empty-files --prefix /usr/local/share/ca-certificates/pymultus-build- \
            --suffix-format '%02d.crt' /tmp/extra-ca.pem '/-----BEGIN CERTIFICATE-----/' '{*}' \
     && rm /tmp/extra-ca.pem \
     && update-ca-certificates; \
    fi

# ---- builder: a wheel of the source tree, installed with its dependencies into a venv ---------
FROM python AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# .dockerignore keeps the venv, caches, tests and docs out of the context.
COPY . .
# Build a wheel first (not `pip install .`): the image then holds exactly what a release
# installs, and a file missing from the package data shows up here, not on a node.
# Every dependency has binary wheels for amd64 and arm64, so no compiler is needed.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/pymultus/venv \
 && /opt/pymultus/venv/bin/python -m pip install /wheels/pymultus-*.whl \
 && /opt/pymultus/venv/bin/pymultus --help >/dev/null

# ---- bundle: the self-contained host executables ---------------------------------------------
# HOOK (owned by the installer): build the `multus` / `multus-shim` executables and the runtime
# they need (no Python required on the host) into /opt/pymultus/bundle, from the venv above.
# `pymultus install` (the DaemonSet entry point) copies them from there to the host CNI bin dir.
# patchelf (a Debian package) sets the bundled binaries' RPATH so they need no LD_LIBRARY_PATH.
FROM builder AS bundle
RUN apt-get update \
 && apt-get install -y --no-install-recommends patchelf \
 && rm -rf /var/lib/apt/lists/*
RUN /opt/pymultus/venv/bin/pymultus install --build-bundle /opt/pymultus/bundle

# ---- final image ------------------------------------------------------------------------------
# From the base, not from `python`: the build-only CA certificates and pip stay out of it.
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="pymultus" \
      org.opencontainers.image.description="A Multus-compatible meta CNI plugin, in Python" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/pymultus/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYMULTUS_BUNDLE_DIR=/opt/pymultus/bundle
# Debian's python3 for the venv (/usr/bin/python3.11, the builder's interpreter: same release).
# Non-root by default, so that running the image by hand (`pymultus --help`, `pymultus cnitool`)
# has no privileges. The DaemonSets opt in to root explicitly (runAsUser: 0): the installer must
# write into root-owned host directories, and the thick daemon enters network namespaces,
# chroots into the host root and runs CNI plugins that need CAP_NET_ADMIN/CAP_SYS_ADMIN, which
# no unprivileged user can do. Both before the COPYs, so a source change rebuilds neither.
RUN if ! command -v python3 >/dev/null; then \
        apt-get update \
     && apt-get install -y --no-install-recommends python3 \
     && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 65532 pymultus \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin pymultus
# The thick daemon runs delegates through the base image's /usr/sbin/chroot (coreutils) into the
# host root; no CNI plugins are installed here: delegates are always the host's own.
COPY --from=builder /opt/pymultus/venv /opt/pymultus/venv
COPY --from=bundle /opt/pymultus/bundle /opt/pymultus/bundle
USER 65532:65532
ENTRYPOINT ["pymultus"]
CMD ["--help"]
