# Sourced by the scripts that time one of the runtime's own loops against what oneDNN runs in its
# place (depthwise_loop.sh, stem_conv.sh): the loop's switch variable set to 1 and to 0, alternating
# within each round. Needs `cli`, `threads` and `rounds` set.

# ms per image of one bench-model run: VAR VALUE FILE PRECISION BATCH [HxW]
switch_ms_per_image() {
  local size=()
  [ -n "${6:-}" ] && size=(--input-size "$6")
  env "$1=$2" "$cli" bench-model "$3" --precision "$4" --batch "$5" --threads "$threads" "${size[@]}" --json \
    2>/dev/null | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["ms_per_image"])'
}

# One table row: LABEL VAR FILE PRECISION BATCH [HxW]. Prints the median ms per image with the loop
# and without, and the median of the per-round ratios (without / with: > 1, the loop is faster).
switch_ab_row() {
  local label=$1 var=$2 on=() off=()
  shift 2
  for ((r = 0; r < rounds; r++)); do
    on+=("$(switch_ms_per_image "$var" 1 "$@")")
    off+=("$(switch_ms_per_image "$var" 0 "$@")")
  done
  /usr/bin/python3 - "$label" "$2" "$3" "${on[*]}" "${off[*]}" <<'PY'
import statistics, sys
label, precision, batch, on, off = sys.argv[1:6]
on, off = [float(v) for v in on.split()], [float(v) for v in off.split()]
ratio = statistics.median(o / l for l, o in zip(on, off))
print(f"| {label}{precision} | {batch} | {statistics.median(on):.3f} | {statistics.median(off):.3f} | {ratio:.3f} |")
PY
}
