#!/usr/bin/env bash
# The web page UI test: starts `arcforge serve` with the real models and a bearer token on a free
# loopback port, runs ui_test.js (headless Chromium through puppeteer-core) against it, stops the
# server with SIGTERM and checks that it exits cleanly.
#
#   tests/serve/web/run_ui_test.sh ARCFORGE_CLI SCREENSHOT.png
#
# Exits 77 (ctest: skipped) when ../shared (or ARCFORGE_SHARED_DIR), chromium, node or this folder's
# node_modules (scripts/setup-deploy-deps.sh installs it) is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(cd "$here/../../.." && pwd)
[ $# -eq 2 ] || { echo "usage: $0 ARCFORGE_CLI SCREENSHOT.png" >&2; exit 2; }
cli=$1
screenshot=$2
shared=${ARCFORGE_SHARED_DIR:-$source_dir/../shared}

skip() { echo "SKIPPED serve_web_ui: $*" >&2; exit 77; }
[ -f "$shared/faces/deepface/identities.csv" ] || skip "no $shared/faces/deepface (set ARCFORGE_SHARED_DIR)"
for model in scrfd_500m_bnkps.onnx paddle_mobilefacenet128.onnx; do
  [ -f "$shared/models/$model" ] || skip "no $shared/models/$model"
done
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$chromium" ] || skip "no chromium on PATH (scripts/setup-deploy-deps.sh installs it)"
command -v node > /dev/null || skip "no node on PATH (scripts/setup-deploy-deps.sh installs it)"
[ -d "$here/node_modules/puppeteer-core" ] || skip "no $here/node_modules (run scripts/setup-deploy-deps.sh)"

scratch=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2> /dev/null && wait "$server" 2> /dev/null
  rm -rf "$scratch"
}
trap cleanup EXIT
fail() {
  echo "FAILED serve_web_ui: $*" >&2
  echo "--- server log" >&2
  cat "$scratch/server.log" >&2 || true
  exit 1
}

# paddle MobileFaceNet takes BGR, (x-127.5)/128 (shared/models/MANIFEST.md); it has no sidecar.
od -An -tx1 -N16 /dev/urandom | tr -d ' \n' > "$scratch/token"
"$cli" serve --db "$scratch/faces.db" \
  --detector "$shared/models/scrfd_500m_bnkps.onnx" --recognizer "$shared/models/paddle_mobilefacenet128.onnx" \
  --recognizer-spec "bgr,mean=127.5,std=128" \
  --port 0 --port-file "$scratch/port" --token-file "$scratch/token" > "$scratch/server.log" 2>&1 &
server=$!
for _ in $(seq 600); do
  [ -s "$scratch/port" ] && break
  kill -0 "$server" 2> /dev/null || { wait "$server" || true; server=""; fail "the server exited before listening"; }
  sleep 0.1
done
[ -s "$scratch/port" ] || fail "no port file after 60 s"
url="http://127.0.0.1:$(tr -d ' \n' < "$scratch/port")"
echo "server at $url (pid $server)"

node "$here/ui_test.js" --url "$url" --token "$(cat "$scratch/token")" --photos "$shared/faces/deepface" \
  --screenshot "$screenshot" --chromium "$chromium" --scratch "$scratch" || fail "ui_test.js"

kill -TERM "$server"
status=0
wait "$server" || status=$?
server=""
[ "$status" -eq 0 ] || fail "the server exited with $status after SIGTERM (expected 0)"
echo "screenshot: $screenshot"
