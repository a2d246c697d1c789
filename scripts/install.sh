#!/usr/bin/env bash
# Install dicomvault into .venv/ from the lock file (uv.lock).
#   scripts/install.sh            Python parts only (enough for `dicomvault serve`)
#   scripts/install.sh --system   also the Debian packages the test suite starts (PostgreSQL, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--system" ]]; then
  scripts/install-system.sh
fi

if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "uv>=0.5"
fi
UV="uv"
command -v uv >/dev/null 2>&1 || UV="python3 -m uv"
$UV sync --frozen --python python3.11
