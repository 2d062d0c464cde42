#!/usr/bin/env bash
# The long fuzz run: about 10^5 inputs in all across the Hypothesis properties of tests/fuzz
# (profile "deep": random, seeds printed with any failure), then a table of inputs, failures and
# wall time per target, printed and written to bench/results/fuzz.md (RELIABILITY.md quotes it).
#   bash scripts/fuzz.sh [TOTAL_INPUTS]     # default 100000
# The test suite runs the same properties with the bounded "ci" profile (a few hundred each).
# As root: one property fuzzes a real daemon process, which refuses to run otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "fuzz: needs root (the daemon property runs a real pymultus daemon)" >&2
  exit 1
fi
bash scripts/setup.sh
total=${1:-100000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p bench/results

PYMULTUS_FUZZ_COUNT="$work/count" .venv/bin/python -m pytest -q --collect-only tests/fuzz >/dev/null
properties=$(cat "$work/count")
per=$(( (total + properties - 1) / properties ))
echo "== fuzz: $properties properties x $per inputs (2 processes)"

# Two processes for the two cores: the daemon and manifest properties (I/O, a second process)
# beside the in-process parsers.
export PYMULTUS_FUZZ_PROFILE=deep PYMULTUS_FUZZ_EXAMPLES=$per
started=$(date +%s)
status=0
PYMULTUS_FUZZ_REPORT="$work/a.json" .venv/bin/python -m pytest -q -p no:cacheprovider -o timeout=0 \
  tests/fuzz/test_daemon_http.py tests/fuzz/test_manifests.py tests/fuzz/test_wire_body.py \
  tests/fuzz/test_results.py >"$work/a.log" 2>&1 &
first=$!
PYMULTUS_FUZZ_REPORT="$work/b.json" .venv/bin/python -m pytest -q -p no:cacheprovider -o timeout=0 \
  tests/fuzz/test_annotations.py tests/fuzz/test_configs.py tests/fuzz/test_cni_env.py tests/fuzz/test_netstatus.py \
  >"$work/b.log" 2>&1 || status=1
wait "$first" || status=1
elapsed=$(( $(date +%s) - started ))
cat "$work/a.log" "$work/b.log" >bench/results/fuzz.log

.venv/bin/python - "$work/a.json" "$work/b.json" "$elapsed" "$per" <<'PY' | tee bench/results/fuzz.md
import json, sys, time

import hypothesis

tests = {}
for path in sys.argv[1:3]:
    with open(path) as handle:
        tests.update(json.load(handle)["tests"])
rows = [(node, r) for node, r in tests.items() if r["inputs"] or r.get("outcome") != "passed"]
print(f"Fuzz run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: Hypothesis {hypothesis.__version__}, "
      f"profile deep, up to {sys.argv[4]} inputs per property, 2 processes, {sys.argv[3]} s wall time.\n")
print("| target | property | inputs | result | wall s |")
print("|---|---|---:|---|---:|")
for node, r in rows:
    module, _, name = node.partition("::")
    target = module.removeprefix("tests/fuzz/test_").removesuffix(".py")
    print(f"| {target} | {name} | {r['inputs']} | {r.get('outcome', '?')} | {r['seconds']} |")
inputs = sum(r["inputs"] for _, r in rows)
failed = sum(1 for _, r in rows if r.get("outcome") != "passed")
print(f"| **total** | {len(rows)} tests | **{inputs}** | **{failed} failed** | {sys.argv[3]} (wall) |")
PY
echo "fuzz: details (failing inputs, seeds) in bench/results/fuzz.log"
exit $status
