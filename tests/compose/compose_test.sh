#!/usr/bin/env bash
# The compose cluster end to end (ctest label `compose`): builds the image
# from this build's binaries, brings docker-compose.yml up under a project
# of its own, writes through one client container and reads through the
# other, kills the client container that holds the file's locks and checks
# that the other one proceeds (after lockd evicts the dead node), and takes
# everything down: containers, network, volumes, image, and the Docker
# engine if this test started it.
#
# Exit 77 (skipped) when no Docker engine can run here, with the reason.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
export RANGEFS_BUILD=${RANGEFS_BUILD:-$top/build}
export RANGEFS_COMPOSE_PROJECT=rangefstest$$
export RANGEFS_IMAGE=rangefs:test$$
compose=("$top/scripts/compose")

skip() {
  echo "compose_test: SKIPPED: $*"
  exit 77
}

if ! RANGEFS_WITH_DOCKER=1 "$top/scripts/deps.sh"; then
  skip "Docker's packages cannot be installed here"
fi
engine=$("$top/scripts/dockerd" 2>/tmp/compose_test_dockerd.$$) ||
  skip "no Docker engine can be started: $(tail -3 /tmp/compose_test_dockerd.$$)"
rm -f /tmp/compose_test_dockerd.$$
docker_pid=""
[[ "$engine" == started ]] && docker_pid=$(cat /run/rangefs-dockerd.pid)

cleanup() {
  set +e
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1
  docker image rm -f "$RANGEFS_IMAGE" >/dev/null 2>&1
  docker image prune -f --filter label=rangefs.stage=build >/dev/null 2>&1
  if [[ -n "$docker_pid" ]]; then
    kill "$docker_pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$docker_pid" 2>/dev/null || break; sleep 0.2; done
  fi
}
trap cleanup EXIT

in_node() {  # in_node N CMD...: runs CMD in client container N (bounded).
  local n=$1
  shift
  timeout 120 "${compose[@]}" exec -T "node$n" "$@"
}

step() { echo "compose_test: $*"; }

step "building the image and starting the cluster"
"${compose[@]}" up --prebuilt

step "write on node0, read on node1"
in_node 0 sh -c 'echo "hello from node0" > /mnt/rangefs/hello'
got=$(in_node 1 cat /mnt/rangefs/hello)
[[ "$got" == "hello from node0" ]] || { echo "node1 read '$got'"; exit 1; }

step "1 MiB written on node1 (node1 keeps its locks), read back on node0"
in_node 1 sh -c 'head -c 1048576 /dev/urandom > /mnt/rangefs/shared'
sum1=$(in_node 1 md5sum /mnt/rangefs/shared | cut -d' ' -f1)
sum0=$(in_node 0 md5sum /mnt/rangefs/shared | cut -d' ' -f1)
[[ "$sum0" == "$sum1" ]] || { echo "checksums differ: $sum0 vs $sum1"; exit 1; }
in_node 1 sh -c 'echo node1-was-here | dd of=/mnt/rangefs/shared bs=1 seek=4096 conv=notrunc 2>/dev/null'

step "kill node1's container; node0 must proceed once lockd evicts it"
node1=$("${compose[@]}" ps -q node1)
docker kill "$node1" >/dev/null
start=$(date +%s)
in_node 0 sh -c 'echo node0-after > /mnt/rangefs/after && dd if=/dev/zero of=/mnt/rangefs/shared bs=4096 count=1 seek=16 conv=notrunc 2>/dev/null && cat /mnt/rangefs/after'
step "node0 went on after $(($(date +%s) - start)) s"
# node1's write was in its cache only (no fsync): it may or may not be
# there, but the file is readable and the rest of it is intact.
in_node 0 sh -c 'test "$(stat -c %s /mnt/rangefs/shared)" = 1048576'

step "take the cluster down"
"${compose[@]}" down -v >/dev/null
step "passed"
