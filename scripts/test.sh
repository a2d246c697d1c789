#!/usr/bin/env bash
# Install everything (Python and Debian packages) and run the whole test suite with the checks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --system
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/pytest "$@"
