#!/usr/bin/env bash
# Debian packages the test suite starts as real servers (and Chromium for the browser tests).
# Idempotent; installs only what is missing.
set -euo pipefail
packages=(postgresql redis-server dcmtk chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
