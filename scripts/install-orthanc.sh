#!/usr/bin/env bash
# Install Orthanc and its DICOMweb plugin from Debian's archive, for the comparison benchmark
# (bench/). Idempotent: does nothing when both are already installed. Needs root (or sudo).
set -euo pipefail

packages=(orthanc orthanc-dicomweb)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "orthanc: already installed ($(dpkg-query -W -f='${Version}' orthanc))"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps the install small; policy-rc.d stops the package from starting
# the system-wide Orthanc service: the benchmark starts its own instance with its own config.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    created_policy=1
fi
trap '[ "$created_policy" -eq 1 ] && $SUDO rm -f "$policy"' EXIT
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "orthanc: installed $(dpkg-query -W -f='${Version}' orthanc)"
