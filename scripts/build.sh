#!/usr/bin/env bash
# Configures and builds rangefs into $RANGEFS_BUILD (default: build/ in the
# repository). Used by scripts/test and scripts/up.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${RANGEFS_BUILD:-$top/build}
jobs=${RANGEFS_JOBS:-$(nproc)}
"$top/scripts/deps.sh"
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE="${RANGEFS_BUILD_TYPE:-RelWithDebInfo}" \
    ${RANGEFS_CMAKE_ARGS:-} >/dev/null
fi
cmake --build "$build" -j "$jobs" "$@"
