#!/usr/bin/env bash
# scripts/up, the README's first command, end to end: a two-mount cluster
# comes up and a write on one mount is read on the other; a second up on
# the same DIR brings the same filesystem back with its data; an up that
# cannot start (its devices formatted with another size) says why, from
# the server's own log, and leaves nothing mounted or running.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/rangefs-up-test.XXXXXX)
out="$dir.out"
port=${UP_TEST_BASE_PORT:-7400}
up() { "$top/scripts/up" --dir "$dir" --base-port "$port" --nodes 2 "$@"; }
cleanup() {
  "$top/scripts/up" --down --dir "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir" "$out"
}
trap cleanup EXIT
fail() {
  echo "up_test: $*" >&2
  [[ -s "$out" ]] && cat "$out" >&2
  exit 1
}

up --size $((256 << 20)) --detach >"$out" 2>&1 || fail "up failed"
echo hello >"$dir/mnt/0/f"
[[ $(cat "$dir/mnt/1/f") == hello ]] || fail "mount 1 does not see mount 0's write"
"$top/scripts/up" --down --dir "$dir" >/dev/null
! mountpoint -q "$dir/mnt/0" || fail "mount 0 still mounted after down"

# The same DIR: the same filesystem.
up --size $((256 << 20)) --detach >"$out" 2>&1 || fail "second up failed"
[[ $(cat "$dir/mnt/1/f") == hello ]] || fail "data lost across a restart"
"$top/scripts/up" --down --dir "$dir" >/dev/null

# Another size for the same devices: refused, with the server's reason
# (not a mount that times out), and nothing left behind.
if up --size $((512 << 20)) --detach >"$out" 2>&1; then
  fail "up with another device size started"
fi
grep -Eq "formatted with|holds [0-9]+ bytes" "$out" ||
  fail "the refusal does not name the cause"
for m in "$dir/mnt/0" "$dir/mnt/1"; do
  ! mountpoint -q "$m" || fail "a refused up left $m mounted"
done
! pgrep -f -- "--dir $dir/" >/dev/null || fail "a refused up left a server running"
: >"$out"
echo "up_test: ok"
