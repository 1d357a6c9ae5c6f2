# Dockerfile -- a rafting node in a Debian 12 image.
#
#   docker build --build-arg GIT_REV=$(git rev-parse --short=12 HEAD) -t rafting .
#   docker run --rm -p 8001:8001 -v rafting-data:/var/lib/rafting rafting
#   docker run --rm -p 8001:8001 -v $PWD/my.lua:/etc/rafting/cluster.lua:ro \
#       rafting --config /etc/rafting/cluster.lua --node 2
#
# Stage 1 builds with the -dev packages; stage 2 keeps the runtime
# libraries, the installed tree and nothing else.

FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake gcc libc6-dev make pkg-config liblua5.4-dev libprotobuf-c-dev \
      protobuf-c-compiler libuv1-dev node-llhttp libxxhash-dev libjansson-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# .git is not sent to the daemon (.dockerignore): pass the revision in
ARG GIT_REV=unknown
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DRAFTING_GIT_REV="$GIT_REV" \
 && cmake --build build -j"$(nproc)" --target rafting \
 && DESTDIR=/out cmake --install build --prefix /usr/local --strip \
      --component node

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      liblua5.4-0 libprotobuf-c1 libuv1 libxxhash0 libjansson4 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/rafting --shell /usr/sbin/nologin rafting \
 && mkdir -p /etc/rafting /var/lib/rafting \
 && chown rafting:rafting /var/lib/rafting
COPY --from=build /out/usr/local/ /usr/local/
COPY dist/docker/cluster.lua /etc/rafting/cluster.lua
USER rafting
WORKDIR /var/lib/rafting
VOLUME /var/lib/rafting
EXPOSE 7001 8001
# SIGTERM (docker stop) stops the node cleanly
STOPSIGNAL SIGTERM
ENTRYPOINT ["rafting"]
CMD ["--config", "/etc/rafting/cluster.lua", "--node", "1"]
