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
echo "== fuzz: $properties properties x $per inputs, two test files at a time"

# One pytest process per test file, two at a time (two cores), largest files first.
export PYMULTUS_FUZZ_PROFILE=deep PYMULTUS_FUZZ_EXAMPLES=$per
started=$(date +%s)
status=0
ls -S tests/fuzz/test_*.py | xargs -P 2 -I{} sh -c \
  'name=$(basename {} .py); PYMULTUS_FUZZ_REPORT="$0/$name.json" .venv/bin/python -m pytest -q \
     -p no:cacheprovider -o timeout=0 {} >"$0/$name.log" 2>&1' "$work" || status=1
elapsed=$(( $(date +%s) - started ))
cat "$work"/*.log >bench/results/fuzz.log

.venv/bin/python - "$work" "$elapsed" "$per" <<'PY' | tee bench/results/fuzz.md
import glob, json, os, sys, time

import hypothesis

tests = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    with open(path) as handle:
        tests.update(json.load(handle)["tests"])
elapsed, per = sys.argv[2], sys.argv[3]
rows = [(node, r) for node, r in tests.items() if r["inputs"] or r.get("outcome") != "passed"]
print(f"Fuzz run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: Hypothesis {hypothesis.__version__}, "
      f"profile deep, up to {per} inputs per property, 2 processes, {elapsed} s wall time.\n")
print("| target | property | inputs | result | wall s |")
print("|---|---|---:|---|---:|")
for node, r in rows:
    module, _, name = node.partition("::")
    target = module.removeprefix("tests/fuzz/test_").removesuffix(".py")
    print(f"| {target} | {name} | {r['inputs']} | {r.get('outcome', '?')} | {r['seconds']} |")
inputs = sum(r["inputs"] for _, r in rows)
failed = sum(1 for _, r in rows if r.get("outcome") != "passed")
print(f"| **total** | {len(rows)} tests | **{inputs}** | **{failed} failed** | {elapsed} (wall) |")
PY
echo "fuzz: details (failing inputs, seeds) in bench/results/fuzz.log"
exit $status
