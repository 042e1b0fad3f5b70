#!/usr/bin/env bash
# scripts/sanitize.sh [asan|tsan|fuzz|all]...   (default: all)
#
# Builds the engine and its unit tests with sanitizers (clang) and runs them,
# and runs the libFuzzer targets in fuzz/ for a bounded time (issue 3, part 5).
#   asan  build-asan: -DBOOSTVOL_SANITIZE=address,undefined; every unit test.
#   tsan  build-tsan: -DBOOSTVOL_SANITIZE=thread; every unit test
#         (suppressions for uninstrumented libraries: scripts/tsan.supp).
#   fuzz  build-fuzz: -DBOOSTVOL_FUZZ=ON with ASan+UBSan; each target for
#         FUZZ_SECONDS on a copy of fuzz/corpus/<target>.
# The power-cut model test runs fewer seeds here (BOOSTVOL_QUICK=1).
#
# Environment:
#   BUILD_ROOT    where the build dirs go (default: the source tree)
#   JOBS          parallel compile jobs (default 2)
#   FUZZ_SECONDS  seconds per fuzz target (default 50; 4 targets)
#   GTEST_FILTER  restrict the unit tests (default: all)
# Exit status: 0 if every part passed; 1 otherwise (the first failure stops it).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_ROOT=${BUILD_ROOT:-$SRC}
JOBS=${JOBS:-2}
FUZZ_SECONDS=${FUZZ_SECONDS:-50}
FUZZ_TARGETS=(fuzz_record_header fuzz_log_scan fuzz_home_stamp fuzz_checkpoint)
export BOOSTVOL_QUICK=1

log() { printf '[sanitize %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "FAIL: $*"; exit 1; }

command -v clang++ >/dev/null || die "clang++ is needed (apt-get install clang)"
command -v ninja >/dev/null || die "ninja is needed (apt-get install ninja-build)"

configure() {  # DIR CMAKE-ARGS...
  local dir=$1
  shift
  cmake -S "$SRC" -B "$dir" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; die "configuring $dir"; }
}

run_unit() {  # DIR LABEL
  local dir=$1 label=$2 t0=$SECONDS
  log "$label: building unit tests in $dir"
  ninja -C "$dir" -j"$JOBS" boostvol_unit_tests >"$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; die "$label build"; }
  log "$label: built in $((SECONDS - t0)) s; running unit tests"
  t0=$SECONDS
  # TMPDIR on the build dir's file system: the tests create real volumes.
  mkdir -p "$dir/tmp"
  if ! TMPDIR=$dir/tmp "$dir/boostvol_unit_tests" --gtest_filter="${GTEST_FILTER:-*}" --gtest_brief=1 \
    >"$dir.test.log" 2>&1; then
    grep -E 'ERROR: (Address|Thread|Undefined|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error|\[  FAILED  \]' \
      "$dir.test.log" | head -20 || true
    tail -80 "$dir.test.log"
    die "$label unit tests (full log: $dir.test.log)"
  fi
  tail -3 "$dir.test.log"
  log "$label: unit tests passed in $((SECONDS - t0)) s"
}

do_asan() {
  local dir=$BUILD_ROOT/build-asan
  configure "$dir" -DBOOSTVOL_SANITIZE=address,undefined
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 run_unit "$dir" asan
}

do_tsan() {
  local dir=$BUILD_ROOT/build-tsan
  configure "$dir" -DBOOSTVOL_SANITIZE=thread
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$SRC/scripts/tsan.supp" run_unit "$dir" tsan
}

do_fuzz() {
  local dir=$BUILD_ROOT/build-fuzz t0=$SECONDS
  configure "$dir" -DBOOSTVOL_SANITIZE=address,undefined -DBOOSTVOL_FUZZ=ON
  log "fuzz: building ${FUZZ_TARGETS[*]}"
  ninja -C "$dir" -j"$JOBS" "${FUZZ_TARGETS[@]}" >"$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; die "fuzz build"; }
  log "fuzz: built in $((SECONDS - t0)) s"
  local tmp
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/boostvol-fuzz.XXXXXX")
  [[ -d /dev/shm && -w /dev/shm ]] && tmp=$(mktemp -d /dev/shm/boostvol-fuzz.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  local t
  for t in "${FUZZ_TARGETS[@]}"; do
    local corpus=$dir/corpus/$t
    mkdir -p "$corpus" "$dir/artifacts"
    cp -n "$SRC/fuzz/corpus/$t/"* "$corpus/" 2>/dev/null || true
    log "fuzz: $t for $FUZZ_SECONDS s"
    if ! FUZZ_TMPDIR=$tmp ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$dir/$t" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -rss_limit_mb=2048 -timeout=20 \
      -artifact_prefix="$dir/artifacts/$t-" "$corpus" >"$dir/$t.log" 2>&1; then
      tail -60 "$dir/$t.log"
      die "fuzz target $t found a problem (input saved under $dir/artifacts/)"
    fi
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^#[0-9]+ *DONE' "$dir/$t.log" |
      sed "s/^/  $t: /" || true
  done
  rm -rf "$tmp"
  trap - EXIT
  log "fuzz: done in $((SECONDS - t0)) s"
}

parts=("$@")
[[ ${#parts[@]} -eq 0 || ${parts[0]} == all ]] && parts=(asan tsan fuzz)
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
