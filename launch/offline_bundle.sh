#!/usr/bin/env bash
# The offline bundle for GPU nodes, which have no package access (../shared/DESIGN.md, "Builds and
# machines"): run it where apt works (a Debian 12 development machine), then copy the source tree
# with its .bundle/ folder to the node. It downloads the .deb files of what coil uses and the nodes
# lack, and unpacks them (dpkg-deb -x, no install, no root needed) into .bundle/; the configure step
# (cmake/CoilOptions.cmake) searches .bundle/usr after the system paths.
#   libcli11-dev                           the `coil` command line (header-only; required)
#   libsentencepiece-dev libsentencepiece0 SentencePiece tokenizers: `coil tokenizer train` and
#                                          .model tokenizers (optional in coil; the library needs
#                                          only libc and libstdc++, so Debian's runs on the nodes)
# OpenMPI, HDF5, yaml-cpp and the GoogleTest sources are on the nodes already; CBLAS is left out on
# purpose: the CPU matmul falls back to its own loops, and training there runs on the GPU.
#   bash launch/offline_bundle.sh            # -> .bundle/ (debs/ keeps the downloaded files)
#   BUNDLE_DIR=/tmp/b bash launch/offline_bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${BUNDLE_DIR:-.bundle}
PKGS=(libcli11-dev libsentencepiece-dev libsentencepiece0)

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
  { echo "offline_bundle: needs apt-get and dpkg-deb (run it on a Debian machine)" >&2; exit 1; }
mkdir -p "$BUNDLE/debs"
BUNDLE=$(cd "$BUNDLE" && pwd)
rm -f "$BUNDLE"/debs/*.deb
# apt-get download writes into the current directory and needs no root.
if ! (cd "$BUNDLE/debs" && apt-get download "${PKGS[@]}"); then
  echo "offline_bundle: apt-get download failed; try 'apt-get update' first" >&2
  exit 1
fi
for deb in "$BUNDLE"/debs/*.deb; do
  dpkg-deb -x "$deb" "$BUNDLE"
done
test -f "$BUNDLE/usr/include/CLI/CLI.hpp" || { echo "offline_bundle: CLI/CLI.hpp missing after unpacking" >&2; exit 1; }
echo "offline_bundle: unpacked ${PKGS[*]} into $BUNDLE ($(du -sh "$BUNDLE" | cut -f1));"
echo "  copy it along with the source tree (it is gitignored), then configure as usual."
