#!/usr/bin/env bash
# The linters CI runs before the tests: ruff's lint rules and its formatter (settings in pyproject.toml).
# `ruff format .` (or `pre-commit install` once) fixes what the second one finds.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/ruff ] || bash launch/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
