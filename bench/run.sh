#!/usr/bin/env bash
# One command for the comparison bench: installs Orthanc if missing, then runs both servers on
# the same generated data. Arguments are passed on, e.g. `bench/run.sh --scale small`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v Orthanc >/dev/null 2>&1; then
    bash scripts/install-orthanc.sh
fi
exec .venv/bin/python -m bench "$@"
