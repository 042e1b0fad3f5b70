#!/usr/bin/env bash
# scripts/sanitize.sh [asan|tsan|fuzz|all]...   (default: all)
#
# Builds the engine and its unit tests with sanitizers (clang) and runs them,
# and runs the libFuzzer targets in fuzz/ for a bounded time (issue 3, part 5).
# scripts/test.sh runs it after the normal test suite (docs/testing.md).
#   asan  build-asan: -DBOOSTVOL_SANITIZE=address,undefined; every unit test.
#   tsan  build-tsan: -DBOOSTVOL_SANITIZE=thread; every unit test
#         (suppressions for uninstrumented libraries: scripts/tsan.supp).
#   fuzz  build-asan again (the same build: it has -DBOOSTVOL_FUZZ=ON, so the
#         engine carries libFuzzer's coverage instrumentation and only the
#         targets need compiling); each target for FUZZ_SECONDS on a copy of
#         fuzz/corpus/<target>.
# Only the engine, the unit tests and the fuzz targets are built (not the CLI
# or the FUSE server: the unit tests do not use them), at -O1 with line
# tables and with assert() enabled (no -DNDEBUG).
# Under a sanitizer the power-cut model test runs fewer seeds (BOOSTVOL_QUICK=1,
# see tests/unit/volume_test.cc); every test still runs.
# Any sanitizer report fails the run: ASan, UBSan (-fno-sanitize-recover=all)
# and TSan (halt_on_error=1) abort the test binary, LeakSanitizer makes it exit
# non-zero, and a fuzz target that crashes or reports fails its part.
#
# Environment:
#   BUILD_ROOT    where the build dirs go (default: the source tree)
#   JOBS          parallel compile jobs (default: nproc)
#   FUZZ_SECONDS  seconds per fuzz target (default 15; 4 targets)
#   GTEST_FILTER  restrict the unit tests (default: all)
# Exit status: 0 if every part passed; 1 otherwise (the first failure stops it).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_ROOT=${BUILD_ROOT:-$SRC}
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
FUZZ_TARGETS=(fuzz_record_header fuzz_log_scan fuzz_home_stamp fuzz_checkpoint)
export BOOSTVOL_QUICK=1
# Symbolized stack traces in reports (llvm-symbolizer is in Debian's llvm-14).
if ! command -v llvm-symbolizer >/dev/null; then
  for sym in /usr/lib/llvm-*/bin/llvm-symbolizer; do
    [[ -x $sym ]] && export ASAN_SYMBOLIZER_PATH=$sym TSAN_SYMBOLIZER_PATH=$sym && break
  done
fi

log() { printf '[sanitize %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "FAIL: $*"; exit 1; }

command -v clang++ >/dev/null || die "clang++ is needed (apt-get install clang)"
command -v ninja >/dev/null || die "ninja is needed (apt-get install ninja-build)"

configure() {  # DIR CMAKE-ARGS...
  local dir=$1
  shift
  mkdir -p "$dir"
  cmake -S "$SRC" -B "$dir" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" -DBOOSTVOL_PCH=ON "$@" >"$dir/configure.log" 2>&1 ||
    { cat "$dir/configure.log"; die "configuring $dir"; }
}

build() {  # DIR LABEL TARGET...
  local dir=$1 label=$2 t0=$SECONDS
  shift 2
  log "$label: building $* in $dir"
  ninja -C "$dir" -j"$JOBS" "$@" >"$dir/build.log" 2>&1 || { tail -50 "$dir/build.log"; die "$label build"; }
  log "$label: built in $((SECONDS - t0)) s"
}

run_unit() {  # DIR LABEL
  local dir=$1 label=$2 t0=$SECONDS
  log "$label: running the unit tests"
  # TMPDIR on the build dir's file system: the tests create real volumes.
  mkdir -p "$dir/tmp"
  if ! TMPDIR=$dir/tmp "$dir/boostvol_unit_tests" --gtest_filter="${GTEST_FILTER:-*}" --gtest_brief=1 \
    >"$dir/test.log" 2>&1; then
    grep -E 'ERROR: (Address|Thread|Undefined|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error|\[  FAILED  \]' \
      "$dir/test.log" | head -20 || true
    tail -80 "$dir/test.log"
    die "$label unit tests (full log: $dir/test.log)"
  fi
  # A report that did not stop the binary still fails the part.
  if grep -qE 'ERROR: (Address|Thread|Undefined|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:' "$dir/test.log"; then
    grep -E -A30 'ERROR: (Address|Thread|Undefined|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:' \
      "$dir/test.log" | head -80
    die "$label: a sanitizer reported a problem (full log: $dir/test.log)"
  fi
  tail -3 "$dir/test.log"
  log "$label: unit tests passed in $((SECONDS - t0)) s"
}

ASAN_DIR=$BUILD_ROOT/build-asan
configure_asan() {
  [[ -n ${asan_configured:-} ]] && return
  configure "$ASAN_DIR" -DBOOSTVOL_SANITIZE=address,undefined -DBOOSTVOL_FUZZ=ON
  asan_configured=1
}
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

do_asan() {
  configure_asan
  build "$ASAN_DIR" asan boostvol_unit_tests
  run_unit "$ASAN_DIR" asan
}

do_tsan() {
  local dir=$BUILD_ROOT/build-tsan
  configure "$dir" -DBOOSTVOL_SANITIZE=thread
  build "$dir" tsan boostvol_unit_tests
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$SRC/scripts/tsan.supp" run_unit "$dir" tsan
}

do_fuzz() {
  local dir=$ASAN_DIR t0=$SECONDS
  configure_asan
  build "$dir" fuzz "${FUZZ_TARGETS[@]}"
  local tmp
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/boostvol-fuzz.XXXXXX")
  [[ -d /dev/shm && -w /dev/shm ]] && rmdir "$tmp" && tmp=$(mktemp -d /dev/shm/boostvol-fuzz.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  local t
  for t in "${FUZZ_TARGETS[@]}"; do
    local corpus=$dir/corpus/$t
    mkdir -p "$corpus" "$dir/artifacts"
    cp -n "$SRC/fuzz/corpus/$t/"* "$corpus/" 2>/dev/null || true
    log "fuzz: $t for $FUZZ_SECONDS s"
    if ! FUZZ_TMPDIR=$tmp "$dir/$t" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -rss_limit_mb=2048 \
      -timeout=20 -artifact_prefix="$dir/artifacts/$t-" "$corpus" >"$dir/$t.log" 2>&1; then
      tail -60 "$dir/$t.log"
      die "fuzz target $t found a problem (input saved under $dir/artifacts/; replay: $dir/$t <file>)"
    fi
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^#[0-9]+ *DONE' "$dir/$t.log" |
      sed "s/^/  $t: /" || true
  done
  rm -rf "$tmp"
  trap - EXIT
  log "fuzz: done in $((SECONDS - t0)) s"
}

parts=("$@")
[[ ${#parts[@]} -eq 0 || ${parts[0]} == all ]] && parts=(asan fuzz tsan)
start=$SECONDS
for p in "${parts[@]}"; do
  case $p in
    asan) do_asan ;;
    tsan) do_tsan ;;
    fuzz) do_fuzz ;;
    *) die "unknown part '$p' (asan, tsan, fuzz or all)" ;;
  esac
done
log "all passed (${parts[*]}) in $((SECONDS - start)) s"
