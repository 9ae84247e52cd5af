#!/usr/bin/env bash
# Installs the Debian packages arcforge builds and tests with. Idempotent: when everything is
# already installed it does nothing (no apt-get update, no network).
set -euo pipefail

packages=(
  cmake ninja-build g++ ccache pkg-config
  libgtest-dev libbenchmark-dev
  # tests only: libFuzzer targets (clang, its runtime and its OpenMP for the runtime's target) and
  # djpeg as a second JPEG decoder
  clang libclang-rt-14-dev libomp-dev libjpeg-turbo-progs
  nlohmann-json3-dev libcli11-dev libtomlplusplus-dev
  libturbojpeg0-dev libspng-dev libwebp-dev
  # training side: libtorch with OpenBLAS (Debian's default reference BLAS is ~50x slower) and tcmalloc
  libtorch-dev libopenblas0-openmp libtcmalloc-minimal4 libgloo-dev
)
if [ "${ARCFORGE_DEPLOY:-ON}" = "ON" ] && [ -f scripts/deploy-packages.txt ]; then
  mapfile -t extra < <(grep -v '^#' scripts/deploy-packages.txt | tr ' ' '\n' | grep -v '^$')
  packages+=("${extra[@]}")
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The deployment side's npm peer (ONNX Runtime, for parity tests and benchmarks), if configured.
if [ "${ARCFORGE_DEPLOY:-ON}" = "ON" ] && [ -x scripts/setup-deploy-deps.sh ]; then
  scripts/setup-deploy-deps.sh
fi
