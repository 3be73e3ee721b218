#!/usr/bin/env bash
# Installs, from Debian 12's archive, exactly the packages rangefs needs that
# are missing. Idempotent: when everything is present it changes nothing and
# makes no network access. Every entry point (scripts/up, scripts/test) runs it.
set -euo pipefail

# Build and run: compiler, CMake, gRPC/Protobuf, RocksDB, FUSE, tests
# (python3 runs tests/fuse/fsx.py), benchmarks.
packages=(
  build-essential cmake pkg-config ccache clang
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librocksdb-dev
  libfuse3-dev fuse3
  libgtest-dev libgmock-dev libbenchmark-dev
  iproute2 iptables procps psmisc
  python3
)
# The compose test and image build need these; install them only on request
# (RANGEFS_WITH_DOCKER=1), as most runs never start a container.
if [[ "${RANGEFS_WITH_DOCKER:-0}" == 1 ]]; then
  packages+=(docker.io docker-compose debootstrap)
fi

# bench/fio-bench needs fio.
if [[ "${RANGEFS_WITH_BENCH:-0}" == 1 ]]; then
  packages+=(fio)
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they are missing or older than a day.
if [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]]; then
  $sudo apt-get update -qq
fi
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
