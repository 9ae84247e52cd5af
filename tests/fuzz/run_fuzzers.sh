#!/usr/bin/env bash
# Builds every tests/fuzz/fuzz_*.cpp as a libFuzzer target against the core sources (src/common,
# src/cpu, src/data, src/image, src/eval, whatever is there now) and runs each for a short time.
#
#   tests/fuzz/run_fuzzers.sh [seconds-per-target] [build-dir] [target-name ...]
#
# seconds-per-target  default 20
# build-dir           default ${TMPDIR:-/tmp}/arcforge-fuzz; objects are reused between runs
# target-name         e.g. fuzz_recordio; default all
# Environment: CXX_FUZZ (default clang++), FUZZ_JOBS (parallel compiles, default 2).
#
# Seeds: tests/fuzz/corpus/<target>/ (read only, tiny files); a dictionary tests/fuzz/<target>.dict
# is used when present. New inputs go to <build-dir>/corpus/<target>/, crash reproducers to
# <build-dir>/artifacts/. Exit status: non-zero when a build fails or any target finds a crash,
# leak, timeout or sanitizer report.
set -euo pipefail

seconds="${1:-20}"
build="${2:-${TMPDIR:-/tmp}/arcforge-fuzz}"
shift $(( $# > 2 ? 2 : $# ))
only=("$@")

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cxx="${CXX_FUZZ:-clang++}"
jobs="${FUZZ_JOBS:-2}"

command -v "$cxx" >/dev/null || { echo "run_fuzzers: $cxx not found" >&2; exit 2; }
mkdir -p "$build/obj" "$build/bin" "$build/corpus" "$build/artifacts" "$build/logs"

# ---- flags ----------------------------------------------------------------------------------
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all"
# -Wno-psabi: the CPU kernels pass vectors between always-inlined helpers, as in the main build.
cxxflags="-std=c++20 -O1 -g -fno-omit-frame-pointer -Wno-psabi $sanitize -I$repo/include -I$repo/src -I$repo"
libs="-lturbojpeg -lspng"
if echo '#include <webp/decode.h>' | "$cxx" -x c++ -fsyntax-only - 2>/dev/null; then
  cxxflags+=" -DARCFORGE_HAVE_WEBP=1"
  libs+=" -lwebp"
fi
# Objects built with other flags (or another compiler) are thrown away.
stamp="$("$cxx" --version | head -1) $cxxflags"
if [[ "$(cat "$build/flags" 2>/dev/null)" != "$stamp" ]]; then
  rm -f "$build"/obj/*
  echo "$stamp" >"$build/flags"
fi

# ---- core objects: rebuilt when the source or any header it includes changed ----------------
# $1 = source, $2 = object; prints nothing when up to date.
stale() {
  local src="$1" obj="$2" dep="${2%.o}.d"
  [[ -f "$obj" && -f "$dep" ]] || return 0
  [[ "$src" -nt "$obj" ]] && return 0
  local f
  for f in $(sed -e 's/\\$//' -e 's/^[^:]*://' "$dep"); do
    [[ -e "$f" && ! "$f" -nt "$obj" ]] || return 0
  done
  return 1
}
export -f stale

compile() {  # $1 = source, $2 = object, $3 = extra flags
  local src="$1" obj="$2"
  stale "$src" "$obj" || return 0
  echo "  CXX $(realpath --relative-to="$REPO" "$src")"
  # shellcheck disable=SC2086
  "$CXX" $CXXFLAGS $3 -MMD -MF "${obj%.o}.d" -c "$src" -o "$obj.tmp" && mv "$obj.tmp" "$obj"
}
export -f compile
export CXX="$cxx" CXXFLAGS="$cxxflags" REPO="$repo"

shopt -s nullglob
core_sources=("$repo"/src/{common,cpu,data,image,eval}/*.cpp)
objects=()
jobs_list=()
for src in "${core_sources[@]}"; do
  module="$(basename "$(dirname "$src")")"
  obj="$build/obj/${module}_$(basename "${src%.cpp}").o"
  objects+=("$obj")
  jobs_list+=("$src" "$obj" "-fsanitize=fuzzer-no-link")
done
echo "run_fuzzers: compiling ${#core_sources[@]} core sources into $build"
if ((${#jobs_list[@]})); then
  printf '%s\0' "${jobs_list[@]}" | xargs -0 -n 3 -P "$jobs" bash -c 'compile "$0" "$1" "$2"' ||
    { echo "run_fuzzers: FAILED to compile the core sources" >&2; exit 1; }
fi
# Objects of sources that were deleted since the last run must not linger in the archive.
for obj in "$build"/obj/*.o; do
  [[ " ${objects[*]} " == *" $obj "* ]] || rm -f "$obj" "${obj%.o}.d"
done
rm -f "$build/libarcforge_fuzz.a"
ar rcs "$build/libarcforge_fuzz.a" "${objects[@]}"

# ---- targets ----------------------------------------------------------------------------------
targets=()
for src in "$here"/fuzz_*.cpp; do
  name="$(basename "${src%.cpp}")"
  if ((${#only[@]})) && [[ " ${only[*]} " != *" $name "* ]]; then continue; fi
  targets+=("$name")
done
((${#targets[@]})) || { echo "run_fuzzers: no fuzz_*.cpp targets selected" >&2; exit 2; }

# A target may ask for more in comment lines of its source: "// fuzz-cxxflags: ...",
# "// fuzz-libs: ..." (linked after the core archive), "// fuzz-needs-header: h ..." (the target
# is skipped, saying so, where one of these headers is missing) and "// fuzz-sources: dir-or-file ..." (every *.cpp of
# these repository folders, e.g. src/runtime, compiled with the target's flags into an archive of
# its own under <build-dir>/extra/<target>/, cached like the core objects, linked before the core).
marker() { sed -n "s|^// $1: *||p" "$2" | head -1; }

# $1 = target name, $2 = extra compile flags, $3 = folders; prints the archive's path.
extra_archive() {
  local name="$1" flags="$2" dirs="$3" dir="$build/extra/$1" d src obj
  local xstamp="$stamp $flags $dirs"
  [[ "$(cat "$dir/flags" 2>/dev/null)" == "$xstamp" ]] || rm -rf "$dir"
  mkdir -p "$dir"
  echo "$xstamp" >"$dir/flags"
  local objs=() list=()
  for d in $dirs; do
    local sources=("$repo/$d"/*.cpp)
    [[ -f "$repo/$d" ]] && sources=("$repo/$d")  # a single file rather than a folder
    for src in "${sources[@]}"; do
      obj="$dir/${d//\//_}_$(basename "${src%.cpp}").o"
      objs+=("$obj")
      list+=("$src" "$obj" "$flags")
    done
  done
  ((${#objs[@]})) || { echo "run_fuzzers: $name: no sources in $dirs" >&2; return 1; }
  echo "run_fuzzers: $name: compiling ${#objs[@]} sources of $dirs" >&2
  printf '%s\0' "${list[@]}" | xargs -0 -n 3 -P "$jobs" bash -c 'compile "$0" "$1" "$2"' >&2 || return 1
  for obj in "$dir"/*.o; do
    [[ " ${objs[*]} " == *" $obj "* ]] || rm -f "$obj" "${obj%.o}.d"
  done
  rm -f "$dir/lib.a"
  ar rcs "$dir/lib.a" "${objs[@]}"
  echo "$dir/lib.a"
}

failed=()
for name in "${targets[@]}"; do
  bin="$build/bin/$name"
  target_flags="$(marker fuzz-cxxflags "$here/$name.cpp")"
  missing_header=""
  for header in $(marker fuzz-needs-header "$here/$name.cpp"); do
    # shellcheck disable=SC2086
    echo "#include <$header>" | "$cxx" -x c++ -std=c++20 $target_flags -fsyntax-only - 2>/dev/null ||
      missing_header="$header"
  done
  if [[ -n "$missing_header" ]]; then
    echo "run_fuzzers: $name: SKIPPED, <$missing_header> is not installed" >&2
    continue
  fi
  extra_flags="-fsanitize=fuzzer-no-link $target_flags"
  extra_libs="$(marker fuzz-libs "$here/$name.cpp")"
  extra_dirs="$(marker fuzz-sources "$here/$name.cpp")"
  archive=()
  if [[ -n "$extra_dirs" ]]; then
    if ! a="$(extra_archive "$name" "$extra_flags" "$extra_dirs")"; then
      echo "run_fuzzers: $name: FAILED to compile $extra_dirs" >&2
      failed+=("$name (build)")
      continue
    fi
    archive+=("$a")
  fi
  # shellcheck disable=SC2086
  if ! compile "$here/$name.cpp" "$build/obj/target_$name.o" "$extra_flags" ||
     ! $cxx $sanitize -fsanitize=fuzzer "$build/obj/target_$name.o" "${archive[@]}" \
         "$build/libarcforge_fuzz.a" $libs $extra_libs -o "$bin"; then
    echo "run_fuzzers: $name: FAILED to build" >&2
    failed+=("$name (build)")
    continue
  fi
  work="$build/corpus/$name"
  mkdir -p "$work"
  seeds=()
  [[ -d "$here/corpus/$name" ]] && seeds+=("$here/corpus/$name")
  dict=()
  [[ -f "$here/$name.dict" ]] && dict+=("-dict=$here/$name.dict")
  log="$build/logs/$name.log"
  echo "run_fuzzers: $name for ${seconds}s (log $log)"
  if timeout --kill-after=10 $((seconds + 120)) "$bin" -max_total_time="$seconds" -timeout=10 \
       -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
       -artifact_prefix="$build/artifacts/$name-" "${dict[@]}" "$work" "${seeds[@]}" \
       >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units' "$log" | sed "s/^/  $name: /" || true
  else
    echo "run_fuzzers: $name: FAILED (crash or sanitizer report); last lines of $log:" >&2
    tail -n 40 "$log" >&2
    failed+=("$name")
  fi
done

if ((${#failed[@]})); then
  echo "run_fuzzers: failed: ${failed[*]}" >&2
  exit 1
fi
echo "run_fuzzers: all ${#targets[@]} targets ran ${seconds}s without a crash"
