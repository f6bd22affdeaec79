#!/usr/bin/env bash
# Run the llm2vec encoder tests in their own environment.
#
# llm2vec 0.2.3 needs transformers 4.43.1-4.44.2, which cannot share an
# environment with the main one (transformers 5), so the tests get a venv of
# their own at <repo>/.venv-llm2vec, made on first use and reused after.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv-llm2vec"
ready="from llm2vec import LLM2Vec; import hypothesis, padcore; assert padcore.__file__.startswith('$root/')"
if [ ! -x "$venv/bin/pytest" ] || ! (cd / && "$venv/bin/python" -c "$ready") 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.13.0
  "$venv/bin/pip" install -q -e "$root[llm2vec]" "pytest>=8" "hypothesis>=6.100"  # tests/conftest.py needs both
fi
cd "$root"
exec "$venv/bin/python" -m pytest tests/llm2vec -q "$@"
