#!/usr/bin/env bash
# The fault soak: >= 1,000 ADD/DEL cycles per mode through the real multus / multus-shim + daemon
# with faults injected at random (seeded; the seed is printed). Needs root and scripts/setup.sh.
#   bash scripts/soak.sh [--cycles N] [--mode thin|thick|both] [--seed S] [--faults a,b] [--exclude a,b]
# Exit status 1 when any invariant was violated. See RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m tests.soak "$@"
