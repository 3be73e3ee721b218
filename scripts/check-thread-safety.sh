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
build=${RANGEFS_BUILD:-$top/build}
# Generated protobuf headers live in the build tree; libfuse's headers in
# their own directory.
flags="-std=c++17 -fsyntax-only -Wthread-safety -Werror=thread-safety \
  -Wno-unknown-warning-option -I$top -I$build $(pkg-config --cflags fuse3)"
files=$(git ls-files --cached --others --exclude-standard \
          'common/*.cc' 'lockmgr/*.cc' 'server/*.cc' 'client/*.cc' 2>/dev/null ||
        find common lockmgr server client -name '*.cc')
# One clang per file, as many at once as there are cores.
printf '%s\n' $files | xargs -P "$(nproc)" -I{} sh -c "$clang $flags {}"
