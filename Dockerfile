# syntax=docker/dockerfile:1
#
# The pymultus image: the `pymultus` command (installer, thick daemon, health check) in a
# virtualenv, plus the self-contained `multus` / `multus-shim` executables that the installer
# copies onto each node (they run on the host, which may have no Python at all).
#
#   docker build -t pymultus:0.1.0 .
#
# Nothing is downloaded except through the package registries' own clients (pip; apt if a stage
# ever needs a Debian package). tests/deploy/test_dockerfile.py checks this file's structure.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: a wheel of the source tree, installed with its dependencies into a venv ---------
FROM ${PYTHON_IMAGE} AS builder
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
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="pymultus" \
      org.opencontainers.image.description="A Multus-compatible meta CNI plugin, in Python" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/pymultus/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYMULTUS_BUNDLE_DIR=/opt/pymultus/bundle
# The venv refers to the base image's /usr/local/bin/python3.11, which is identical here.
# The thick daemon runs delegates through the base image's /usr/sbin/chroot (coreutils) into the
# host root; no CNI plugins are installed here: delegates are always the host's own.
COPY --from=builder /opt/pymultus/venv /opt/pymultus/venv
COPY --from=bundle /opt/pymultus/bundle /opt/pymultus/bundle
# Non-root by default, so that running the image by hand (`pymultus --help`, `pymultus cnitool`)
# has no privileges. The DaemonSets opt in to root explicitly (runAsUser: 0): the installer must
# write into root-owned host directories, and the thick daemon enters network namespaces,
# chroots into the host root and runs CNI plugins that need CAP_NET_ADMIN/CAP_SYS_ADMIN, which
# no unprivileged user can do.
RUN groupadd --system --gid 65532 pymultus \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin pymultus
USER 65532:65532
ENTRYPOINT ["pymultus"]
CMD ["--help"]
