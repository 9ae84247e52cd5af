#!/usr/bin/env bash
# Cosine to fp32 and verification accuracy of bf16 and int8 on real faces (paddle MobileFaceNet-128,
# 400 LFW View 2 pairs + small_lfw.bin): runs the PrecisionAccuracy test of arcforge_runtime_tests
# and prints its JSON report, one line per mode.
#
#   bench/runtime/precision_accuracy.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
out=$("$build/tests/runtime/arcforge_runtime_tests" --gtest_filter='PrecisionAccuracy.*' 2>&1) || { echo "$out" >&2; exit 1; }
echo "$out" | sed -n 's/^\[accuracy\] //p' | node -e '
let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
  const r = JSON.parse(s);
  console.log(`${r.model}: ${r.lfw_pairs} LFW pairs (${r.lfw_faces} faces), ${r.small_lfw_faces} small_lfw faces, ${r.calibration_faces} calibration faces`);
  console.log("| mode | min cos (LFW) | mean cos (LFW) | min cos (small_lfw) | accuracy | change |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const [k, v] of Object.entries(r)) {
    if (typeof v !== "object") continue;
    console.log(`| ${k} | ${v.lfw_min_cosine_to_fp32.toFixed(5)} | ${v.lfw_mean_cosine_to_fp32.toFixed(5)} | ` +
      `${v.small_lfw_min_cosine_to_fp32.toFixed(5)} | ${(100 * v.accuracy).toFixed(2)} % | ${(100 * v.accuracy_change).toFixed(2)} |`);
  }
});'
