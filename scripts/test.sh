#!/usr/bin/env bash
# The whole test job: set-up, lint, type-check, layer contracts, every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check src tests bench
ruff format --check src tests bench
echo "== mypy (strict)"
mypy
echo "== import-linter"
lint-imports
bash scripts/image.sh >/dev/null # the image (cached by content; tests/image reads the archive)
echo "== pytest"
python -m pytest "$@"
