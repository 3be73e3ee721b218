# rangefs images: `docker-compose.yml` runs them (docs/compose.md).
#
# Build stage: the same dependency script as the README's commands, then a
# release build of the servers, the FUSE daemon, the CLI and the race
# suite's node. Runtime stage: Debian's runtime libraries and those
# binaries. A machine without an image registry gets the base image from
# scripts/docker-base-image (debootstrap + docker import).
#
# --build-arg PREBUILT=1 takes the binaries from .docker-prebuilt/ in the
# build context instead of compiling them (the compose test stages the
# ones it has just built there: same Debian 12, same libraries).
FROM debian:bookworm-slim AS build
LABEL rangefs.stage=build
ARG PREBUILT=0
COPY scripts/deps.sh /src/scripts/deps.sh
RUN if [ "$PREBUILT" != 1 ]; then /src/scripts/deps.sh; fi
COPY . /src
RUN set -e; mkdir -p /out; \
    if [ "$PREBUILT" = 1 ]; then \
      cp /src/.docker-prebuilt/* /out/; \
    else \
      cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release >/dev/null; \
      cmake --build /build -j"$(nproc)" --target rangefs-lockd rangefs-meta \
        rangefs-data rangefs-fuse rangefs rangefs-racenode; \
      cp /build/lockmgr/rangefs-lockd /build/server/rangefs-meta \
        /build/server/rangefs-data /build/client/rangefs-fuse \
        /build/client/rangefs /build/tests/rangefs-racenode /out/; \
    fi; \
    ls /out

FROM debian:bookworm-slim
RUN apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libgrpc++1.51 libprotobuf32 librocksdb7.8 libfuse3-3 fuse3 procps \
      >/dev/null && \
    rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
COPY docker/cluster.conf /etc/rangefs/cluster.conf
COPY docker/node-entrypoint /usr/local/bin/rangefs-node-entrypoint
CMD ["bash"]
