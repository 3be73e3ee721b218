#!/usr/bin/env bash
# scripts/up, the README's first command, end to end: a two-mount cluster
# comes up and a write on one mount is read on the other; a second up on
# the same DIR brings the same filesystem back with its data; kill -9 of
# one mount leaves the other going on (and the cluster up); an up that
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
up --size $((256 << 20)) --mount-options lease_ms=1000 --detach >"$out" 2>&1 ||
  fail "second up failed"
[[ $(cat "$dir/mnt/1/f") == hello ]] || fail "data lost across a restart"

# kill -9 of node 0 (holding the locks of what it just wrote): the cluster
# goes on, node 1 gets those locks once node 0's lease runs out, and node
# 0's dead mount is detached.
echo again >"$dir/mnt/0/f"
kill -9 "$(cat "$dir/node0.pid")"
echo bye >"$dir/mnt/1/f" || fail "mount 1 cannot write after node 0 was killed"
[[ $(cat "$dir/mnt/1/f") == bye ]] || fail "mount 1 does not read its own write"
for _ in $(seq 50); do
  grep -q " $dir/mnt/0 " /proc/mounts || break
  sleep 0.1
done
! grep -q " $dir/mnt/0 " /proc/mounts || fail "node 0's dead mount is still attached"
kill -0 "$(cat "$dir/up.pid")" || fail "the cluster stopped when node 0 was killed"
grep -q "node 0 (pid [0-9]*) exited" "$dir/logs/up.log" || fail "up did not report node 0"
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
