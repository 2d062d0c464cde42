#!/usr/bin/env bash
# Run the benchmarks as root: set-up first, then every bench/*_bench.py (or the ones named).
#   bash scripts/bench.sh              # all of them, each with its default sample count
#   bash scripts/bench.sh cni thick    # only bench/cni_bench.py and bench/thick_bench.py
# Each benchmark prints a Markdown table and writes it to bench/results/<name>.md.
# A new benchmark is one more bench/<name>_bench.py runnable as a script.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "bench: needs root (network namespaces)" >&2
  exit 1
fi
bash scripts/setup.sh
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for path in bench/*_bench.py; do
    name=$(basename "$path" _bench.py)
    names+=("$name")
  done
fi
status=0
for name in "${names[@]}"; do
  echo "== bench: $name"
  .venv/bin/python "bench/${name}_bench.py" || status=1
done
exit $status
