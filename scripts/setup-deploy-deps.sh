#!/usr/bin/env bash
# Installs what the deployment side (the oneDNN runtime) builds and tests with: oneDNN, libonnx and
# protobuf from Debian, and ONNX Runtime from npm (the parity and speed reference). Idempotent:
# when everything is present it touches neither apt nor npm.
set -euo pipefail
cd "$(dirname "$0")/.."

# OpenCV (core, imgproc) is a test-only reference for warpAffine and resize.
# FAISS, SQLite and cpp-httplib (with the TLS, zlib and brotli headers its build needs): the gallery and
# the service. wrk and chromium: the service's load test and its web page test.
packages=(libdnnl-dev libonnx-dev libprotobuf-dev protobuf-compiler libopencv-core-dev libopencv-imgproc-dev
          libfaiss-dev libsqlite3-dev libcpp-httplib-dev libssl-dev zlib1g-dev libbrotli-dev wrk chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere than Debian (e.g. NodeSource's nodejs bundles npm): only the
# commands matter.
command -v node > /dev/null || missing+=(nodejs)
command -v npm > /dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-deploy-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ONNX Runtime for node. --ignore-scripts: its install script would download GPU binaries; the
# CPU library ships inside the package.
node_dir=tests/runtime/node
if [ ! -d "$node_dir/node_modules/onnxruntime-node" ]; then
  echo "setup-deploy-deps: npm install onnxruntime-node in $node_dir"
  (cd "$node_dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

# puppeteer-core for the web page test (tests/serve/web): it drives the system chromium;
# --ignore-scripts: nothing to download. `npm ci` follows the committed lock file.
web_dir=tests/serve/web
if [ ! -d "$web_dir/node_modules/puppeteer-core" ]; then
  echo "setup-deploy-deps: npm ci puppeteer-core in $web_dir"
  (cd "$web_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
