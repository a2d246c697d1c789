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
# Bytecode compiled once here: a process started with PYTHONDONTWRITEBYTECODE (as CI and these
# machines do) would otherwise compile every imported module from source at each start (~3 s).
$UV sync --frozen --python python3.11 --compile-bytecode
.venv/bin/python -m compileall -q -j 0 src >/dev/null

# The prebuilt OHIF Viewer served at /viewer (npm @ohif/app, pinned with its sha512 integrity in
# scripts/ohif-viewer.json) into .venv/share/ohif/<version>/; skipped when already there.
# DICOMVAULT_SKIP_VIEWER=1 leaves it out (the server then answers /viewer with a 503 page).
if [[ "${DICOMVAULT_SKIP_VIEWER:-}" != "1" ]]; then
  .venv/bin/python scripts/fetch_viewer.py
fi
