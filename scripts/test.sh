#!/usr/bin/env bash
# The test command: installs missing dependencies, configures and builds in ./build, runs every test with CTest.
#   sudo scripts/test.sh                   quick tier (unit tests + end-to-end tests; e2e needs root)
#   sudo BOOSTVOL_LONG=1 scripts/test.sh   long modes (more crash cycles, more data)
#   sudo scripts/test.sh -R e2e.basic      extra arguments go to ctest
# Without root the end-to-end tests are skipped (exit 77), except with CI=true, where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! scripts/install-deps.sh --check 2>/dev/null; then
  scripts/install-deps.sh
fi

export CI=${CI:-false}
export BOOSTVOL_LONG=${BOOSTVOL_LONG:-0}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE"
cmake --build build --parallel "$(nproc)"
echo "test.sh: CI=$CI BOOSTVOL_LONG=$BOOSTVOL_LONG"
exec ctest --test-dir build --output-on-failure --parallel "$(nproc)" "$@"
