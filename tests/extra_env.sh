#!/usr/bin/env bash
# Run tests/<extra> in a venv of its own, <repo>/.venv-<extra>, with the project's [<extra>] extra:
# made on first use, reused while `import <modules>` works there and padcore is this checkout's.
#   bash tests/extra_env.sh EXTRA "MODULES" [pytest args]   (tests/<extra>/run.sh call it)
set -euo pipefail
extra="$1" modules="$2"
shift 2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-$extra"
ready="import $modules, hypothesis, padcore; assert padcore.__file__.startswith('$root/')"
if [ ! -x "$venv/bin/pytest" ] || ! (cd / && "$venv/bin/python" -c "$ready") 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.13.0
  "$venv/bin/pip" install -q -e "$root[$extra]" "pytest>=8" "hypothesis>=6.100"  # tests/conftest.py needs both
fi
cd "$root"
exec "$venv/bin/python" -m pytest "tests/$extra" -q "$@"
