#!/usr/bin/env bash
# Run the KServe predictor tests in their own environment.
#
# kserve 0.21 needs pandas < 3, which cannot share an environment with the main
# one (pandas 3), so the tests get a venv of their own at <repo>/.venv-serve,
# made on first use and reused after.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../extra_env.sh" serve kserve "$@"
