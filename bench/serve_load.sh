#!/usr/bin/env bash
# Load test of `arcforge serve` on loopback with wrk: starts the server with the real models
# (SCRFD-500m + paddle MobileFaceNet-128), enrols the first photo of each of the 13 identities of
# ../shared/faces/deepface plus EXTRA synthetic persons (random unit embeddings), then runs wrk twice
# against POST /v1/collections/default/search with a fixed number of threads and connections for a
# fixed time: once with an embedding (the query photo's, from `arcforge embed`), once with the image.
# Reports requests/s, p50/p90/p99 latency, non-2xx answers (must be 0) and 2xx answers whose matches
# miss the query's identity (must be 0); writes bench/out/serve_load.md.
#
#   bench/serve_load.sh [BUILD_DIR] [DURATION] [CONNECTIONS] [WRK_THREADS] [EXTRA]
#   e.g. bench/serve_load.sh build 20s 8 2 1000
# Builds arcforge_cli in BUILD_DIR (-DARCFORGE_DEPLOY=ON). ARCFORGE_SHARED_DIR overrides ../shared.
# wrk is a closed loop: CONNECTIONS requests are in flight at all times, so the server gets as many
# --http-threads and --max-concurrent (no 503 by design); latency includes the queueing this causes.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
duration=${2:-20s}
connections=${3:-8}
wrk_threads=${4:-2}
extra=${5:-1000}
shared=${ARCFORGE_SHARED_DIR:-$(cd .. && pwd)/shared}
photos=$shared/faces/deepface
detector=$shared/models/scrfd_500m_bnkps.onnx
recognizer=$shared/models/paddle_mobilefacenet128.onnx
spec="bgr,mean=127.5,std=128"  # paddle MobileFaceNet's input (shared/models/MANIFEST.md); it has no sidecar
for need in "$photos/identities.csv" "$detector" "$recognizer"; do
  [ -f "$need" ] || { echo "serve_load: no $need (set ARCFORGE_SHARED_DIR)" >&2; exit 1; }
done
for tool in wrk curl node; do
  command -v "$tool" > /dev/null || { echo "serve_load: no $tool (scripts/setup-deploy-deps.sh)" >&2; exit 1; }
done
cmake --build "$build" --target arcforge_cli -j 1 > /dev/null
cli=$build/bin/arcforge

scratch=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2> /dev/null && wait "$server" 2> /dev/null
  rm -rf "$scratch"
}
trap cleanup EXIT
die() {
  echo "serve_load: $*" >&2
  [ -f "$scratch/server.log" ] && tail -n 20 "$scratch/server.log" >&2
  exit 1
}

server_flags=(--http-threads "$connections" --max-concurrent "$connections")
"$cli" serve --db "$scratch/faces.db" --detector "$detector" --recognizer "$recognizer" --recognizer-spec "$spec" \
  --port 0 --port-file "$scratch/port" "${server_flags[@]}" > "$scratch/server.log" 2>&1 &
server=$!
for _ in $(seq 600); do
  [ -s "$scratch/port" ] && break
  kill -0 "$server" 2> /dev/null || die "the server exited before listening"
  sleep 0.1
done
[ -s "$scratch/port" ] || die "no port file after 60 s"
url="http://127.0.0.1:$(tr -d ' \n' < "$scratch/port")"
search=$url/v1/collections/default/search

# POSTs a JSON body file; prints the status code, keeps the answer in $scratch/answer.json.
post() { curl -s -o "$scratch/answer.json" -w '%{http_code}' -H 'Content-Type: application/json' \
              --data-binary "@$2" "$url$1"; }
image_body() { printf '{"image":"%s"}' "$(base64 -w0 "$1")"; }

# The first photo of each identity enrols that identity; the query is the second photo of the first.
mapfile -t rows < <(tail -n +2 "$photos/identities.csv" | tr -d '\r')
declare -A enrolled=()
query_identity="" query_photo=""
for row in "${rows[@]}"; do
  file=${row%%,*} identity=${row##*,}
  if [ -z "${enrolled[$identity]:-}" ]; then
    enrolled[$identity]=$file
    image_body "$photos/$file" > "$scratch/body.json"
    code=$(post "/v1/collections/default/persons/$identity/faces" "$scratch/body.json")
    [ "$code" = 201 ] || die "enrolling $identity from $file: HTTP $code $(cat "$scratch/answer.json")"
  elif [ -z "$query_photo" ]; then
    query_identity=$identity query_photo=$file
  fi
done

# Synthetic persons: random unit vectors of the collection's dimension, enrolled by one curl
# (keep-alive) from a config of EXTRA requests.
dim=$(curl -sf "$url/v1/collections" | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).collections.find(c=>c.name==="default").dim))')
mkdir -p "$scratch/synthetic"
awk -v n="$extra" -v dim="$dim" -v dir="$scratch/synthetic" -v url="$url" 'BEGIN {
  srand(7)
  for (p = 0; p < n; p++) {
    norm = 0
    for (i = 0; i < dim; i++) { v[i] = rand() - 0.5; norm += v[i] * v[i] }
    body = dir "/" p ".json"
    printf "{\"embedding\":[" > body
    for (i = 0; i < dim; i++) printf "%s%.6f", (i ? "," : ""), v[i] / sqrt(norm) > body
    printf "]}" > body
    close(body)
    printf "url = \"%s/v1/collections/default/persons/synthetic-%05d/faces\"\n", url, p
    printf "header = \"Content-Type: application/json\"\ndata-binary = \"@%s\"\n", body
    printf "output = \"/dev/null\"\nwrite-out = \"%%{http_code}\\n\"\n"
    if (p + 1 < n) print "next"
  }
}' > "$scratch/synthetic.curl"
if [ "$extra" -gt 0 ]; then
  not_created=$(curl -s -K "$scratch/synthetic.curl" | grep -vc '^201$' || true)
  [ "$not_created" = 0 ] || die "$not_created synthetic enrolments did not answer 201"
fi

# Query bodies: the query photo's embedding (as `arcforge embed` computes it) and the photo itself.
"$cli" embed --json --detector "$detector" --recognizer "$recognizer" --recognizer-spec "$spec" "$photos/$query_photo" \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>
      process.stdout.write(JSON.stringify({embedding: JSON.parse(s).embeddings[0], k: 5})))' \
  > "$scratch/embedding_search.json"
image_body "$photos/$query_photo" > "$scratch/image_search.json"
for kind in embedding image; do  # one check each before the load: the answer names the identity
  code=$(post /v1/collections/default/search "$scratch/${kind}_search.json")
  [ "$code" = 200 ] || die "$kind search: HTTP $code $(cat "$scratch/answer.json")"
  grep -q "\"person\":\"$query_identity\"" "$scratch/answer.json" \
    || die "$kind search of $query_photo does not find $query_identity: $(cat "$scratch/answer.json")"
done

load_before=$(cut -d" " -f1 /proc/loadavg)
machine="$(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
persons=$(curl -sf "$url/v1/collections" | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).collections.find(c=>c.name==="default").persons))')
query_size=$(post /v1/detect "$scratch/image_search.json" > /dev/null && node -e \
  'const a=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(`${a.width}x${a.height}`)' "$scratch/answer.json")
echo "serve_load: $machine; $persons persons ($dim-d); query $query_photo ($query_identity, $query_size);" \
     "wrk -t$wrk_threads -c$connections -d$duration"

table="| search by | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | wrong answers | socket errors |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
failed=0
for kind in embedding image; do
  line=$(BODY_FILE="$scratch/${kind}_search.json" EXPECT_PERSON="$query_identity" \
         wrk -t"$wrk_threads" -c"$connections" -d"$duration" --timeout 30s -s bench/serve_load.lua "$search" \
         | grep '^RESULT') || die "wrk ($kind) printed no RESULT line"
  declare -A r=()
  for field in ${line#RESULT }; do r[${field%%=*}]=${field#*=}; done
  row=$(awk -v k="$kind" -v n="${r[requests]}" -v d="${r[duration_us]}" -v p50="${r[p50_us]}" -v p90="${r[p90_us]}" \
            -v p99="${r[p99_us]}" -v mx="${r[max_us]}" -v bad="${r[non2xx]}" -v wrong="${r[wrong]}" \
            -v sock="${r[socket_errors]}" 'BEGIN {
    printf "| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %d | %d | %d |", k, n, n / (d / 1e6), p50 / 1e3, p90 / 1e3,
           p99 / 1e3, mx / 1e3, bad, wrong, sock }')
  echo "$row"
  table+=$'\n'"$row"
  [ "${r[non2xx]}" = 0 ] && [ "${r[wrong]}" = 0 ] && [ "${r[socket_errors]}" = 0 ] || failed=1
done
metrics=$(curl -sf "$url/metrics" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const m=JSON.parse(s);
  console.log(`requests_total ${m.requests_total}, errors_total ${m.errors_total}, rejected_busy ${m.rejected_busy}`)})')

mkdir -p bench/out
cat > bench/out/serve_load.md << EOF
# arcforge serve: load on loopback

- Machine: $machine (shared; the load generator runs on the same cores as the server;
  1-min load average $load_before before the runs), $(date -u '+%F %H:%M UTC').
- Server: \`arcforge serve\` with SCRFD-500m + paddle MobileFaceNet-128 (fp32, default threads, \`--recognizer-spec $spec\`),
  \`${server_flags[*]}\`.
- Gallery: collection \`default\`, $persons persons ($dim-d): ${#enrolled[@]} identities of
  shared/faces/deepface enrolled from one photo each, plus $extra synthetic persons (random unit vectors).
- Query: \`$query_photo\` ($query_size, identity $query_identity), k=5; by embedding (${dim} floats, as
  \`arcforge embed\` computes it) and by image (the JPEG, base64: detection + alignment + embedding per request).
- Load: \`wrk -t$wrk_threads -c$connections -d$duration\` (closed loop: $connections requests always in flight);
  latency as wrk measures it, queueing included. "wrong answers": 2xx whose matches do not name $query_identity.

$table

Server counters afterwards (enrolment and checks included): $metrics.
EOF
echo "serve_load: wrote bench/out/serve_load.md; $metrics"
[ "$failed" = 0 ] || die "errors under load (see the table)"
