#!/usr/bin/env bash
# The main job on the embedded default: two throw-away "pods" get eth0, net1 and net2 through
# the real `multus` executable, without Kubernetes. Needs root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pymultus.cli.demo "$@"
