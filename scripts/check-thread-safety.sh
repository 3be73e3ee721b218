#!/usr/bin/env bash
# Checks the ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED annotations with
# clang's -Wthread-safety (the main build uses g++, which ignores them).
# Run by ctest as `thread_safety_annotations`; skips nothing silently: a
# missing clang++ is a failure.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
clang=$(command -v clang++ || command -v clang++-14 || true)
if [[ -z "$clang" ]]; then
  echo "check-thread-safety: clang++ not found (apt-get install clang)" >&2
  exit 1
fi
cd "$top"
status=0
for f in $(git ls-files --cached --others --exclude-standard \
           'common/*.cc' 'lockmgr/*.cc' 'server/*.cc' 'client/*.cc' 2>/dev/null ||
           find common lockmgr server client -name '*.cc'); do
  # Generated protobuf headers live in the build tree.
  "$clang" -std=c++17 -fsyntax-only -Wthread-safety -Werror=thread-safety \
    -Wno-unknown-warning-option -I"$top" -I"${RANGEFS_BUILD:-$top/build}" "$f" || status=1
done
exit $status
