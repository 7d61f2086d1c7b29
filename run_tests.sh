#!/usr/bin/env bash
# Run the whole test suite: bootstrap (with test tools), lint (ruff), type check (mypy), the dependency
# rules of the layout (import-linter contracts in pyproject.toml), pytest.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k config
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
scripts/bootstrap.sh --dev
echo "== ruff" && .venv/bin/ruff check .
echo "== mypy" && .venv/bin/mypy
echo "== import-linter" && .venv/bin/lint-imports --no-cache
echo "== pytest" && .venv/bin/python -m pytest "$@"
