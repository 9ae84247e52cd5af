#!/usr/bin/env bash
# Explores settings for `make demo` (configs/synth_mbf_demo.toml) quickly on a GPU: each variant
# trains mbf on synth and evaluates held-out pairs every 100 steps; prints one line per variant with
# the accuracy trajectory. Usage: bench/synth_demo_sweep.sh CLI OUTDIR
set -uo pipefail
CLI=$1
OUT=$2
mkdir -p "$OUT"
run() {  # name, overrides...
  local name=$1; shift
  timeout 300 "$CLI" train --config configs/synth_mbf_demo.toml --out "$OUT/$name" --set eval.every=100 \
    --set log.every=100 "$@" > /dev/null 2> "$OUT/$name.log"
  python3 - "$name" "$OUT/$name/metrics.jsonl" <<'PY'
import json, sys
accs = [f'{json.loads(l)["step"]}:{json.loads(l)["eval"]["accuracy"]:.3f}' for l in open(sys.argv[2]) if '"eval"' in l]
print(sys.argv[1], " ".join(accs), flush=True)
PY
}
run arcface_base
run cos32_m25 --set head.margin=cosface --set head.scale=32 --set head.m3=0.25
run cos64_m35 --set head.margin=cosface --set head.scale=64 --set head.m3=0.35
run soft16 --set head.margin=softmax --set head.scale=16
run arc32_m3 --set head.scale=32 --set head.m2=0.3
run cos32_ids1000 --set head.margin=cosface --set head.scale=32 --set head.m3=0.25 --set data.num_identities=1000
run cos32_ids50 --set head.margin=cosface --set head.scale=32 --set head.m3=0.25 --set data.num_identities=50
run cos32_lr02 --set head.margin=cosface --set head.scale=32 --set head.m3=0.25 --set optimizer.lr=0.2
run cos32_adamw --set head.margin=cosface --set head.scale=32 --set head.m3=0.25 --set optimizer.name=adamw --set optimizer.lr=0.002 --set optimizer.weight_decay=0.05
run cos32_emb512 --set head.margin=cosface --set head.scale=32 --set head.m3=0.25 --set model.embedding_size=512
run cos32_b64_s200 --set head.margin=cosface --set head.scale=32 --set head.m3=0.25 --set train.batch_size=64 --set train.steps=200
run cos32_cosine --set head.margin=cosface --set head.scale=32 --set head.m3=0.25 --set schedule.name=cosine
run cos32_2000 --set head.margin=cosface --set head.scale=32 --set head.m3=0.25 --set train.steps=2000 --set eval.every=500
run arcface_2000 --set train.steps=2000 --set eval.every=500
