#!/usr/bin/env bash
# Sets up a fresh machine (launch/setup.sh) and runs the default test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
exec .venv/bin/python -m pytest -q "$@"
