#!/usr/bin/env bash
# Run the llm2vec encoder tests in their own environment.
#
# llm2vec 0.2.3 needs transformers 4.43.1-4.44.2, which cannot share an
# environment with the main one (transformers 5), so the tests get a venv of
# their own at <repo>/.venv-llm2vec, made on first use and reused after.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../extra_env.sh" llm2vec llm2vec "$@"
