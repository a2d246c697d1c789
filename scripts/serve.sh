#!/usr/bin/env bash
# Install everything and start the archive on the embedded default (SQLite + local disk) at
# http://127.0.0.1:8080. Extra arguments go to `dicomvault serve` (e.g. --port 9000 --data-dir /srv/dv).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/dicomvault serve "$@"
