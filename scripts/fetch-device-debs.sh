#!/usr/bin/env bash
# Downloads the header-only Debian packages that scripts/device-check.sh unpacks on the GPU machine
# (which has no network) into .debs/ (git-ignored; carried to the machine with the working tree).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .debs
cd .debs
# The image codecs (runtime library and headers) for the core's decoding.
apt-get download nlohmann-json3-dev libcli11-dev libtomlplusplus-dev \
  libturbojpeg0 libturbojpeg0-dev libspng0 libspng-dev libgloo-dev libgloo0
