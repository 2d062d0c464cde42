#!/usr/bin/env bash
# Set up everything pymultus needs on a Debian 12 machine, as root. Idempotent: a second run
# changes nothing and takes a second.
#   - Debian packages: python3 + venv, iproute2, and the CNI plugins the tests and the demo delegate to
#   - a virtualenv in .venv with pymultus (editable) and its dev tools, from PyPI
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# Debian's python3 needs python3-venv (ensurepip) to create the virtualenv.
if [ -x /usr/bin/python3 ]; then
  /usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
elif ! command -v python3 >/dev/null 2>&1; then
  need_apt+=(python3 python3-venv)
fi
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)  # the demo and tests ping between pods
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)  # the fake API server makes its test CA with it
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v patchelf >/dev/null 2>&1 || need_apt+=(patchelf)  # the installer's self-contained bundle
# The CRI tests run pod sandboxes through a private containerd; the pause image is built with gcc.
command -v containerd >/dev/null 2>&1 || need_apt+=(containerd)
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
dpkg -s libc6-dev >/dev/null 2>&1 || need_apt+=(libc6-dev)  # libc.a: the pause binary is static
command -v iptables-save >/dev/null 2>&1 || need_apt+=(iptables)  # portmap's rules, checked by the tests
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Prefer the distribution's interpreter: it is what a node has, and it is not behind a shim.
py=python3
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  py=/usr/bin/python3
fi
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: pymultus needs Python >= 3.11, $py is $("$py" -V 2>&1)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $py"
  "$py" -m venv .venv
fi
stamp=.venv/.pymultus-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing pymultus and its dev tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
