#!/usr/bin/env bash
# Run the KServe predictor tests in their own environment.
#
# kserve 0.21 needs pandas < 3, which cannot share an environment with the main
# one (pandas 3), so the tests get a venv of their own at <repo>/.venv-serve,
# made on first use and reused after.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv-serve"
ready="import kserve, hypothesis, padcore; assert padcore.__file__.startswith('$root/')"
if [ ! -x "$venv/bin/pytest" ] || ! (cd / && "$venv/bin/python" -c "$ready") 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.13.0
  "$venv/bin/pip" install -q -e "$root[serve]" "pytest>=8" "hypothesis>=6.100"  # tests/conftest.py needs both
fi
cd "$root"
exec "$venv/bin/python" -m pytest tests/serve -q "$@"
