# Ballast container image: ballast-resolver on port 53 as a non-root user (docs/packaging.md).
#   docker build -t ballast .
#   docker run -d --name ballast -p 127.0.0.1:53:53/udp -p 127.0.0.1:53:53/tcp \
#       -v ballast-cache:/var/lib/ballast ballast
#   docker exec ballast ballast -s /run/ballast/resolver.sock stats
# ballast-authd and ballast are in the image too: --entrypoint ballast-authd.
#
# Port 53 without root: the image carries no file capability (setcap) and does not move to a
# port above 1024. Docker (20.10 and later) and Podman set net.ipv4.ip_unprivileged_port_start=0
# in every container network namespace, so an unprivileged process may bind port 53 inside its
# own namespace and needs no capability at all. File capabilities would be worse here: with
# `--cap-drop ALL` the kernel refuses to exec a binary whose file capabilities it cannot grant,
# and under no_new_privs (Kubernetes allowPrivilegeEscalation: false) they are ignored, so the
# bind would fail. A port above 1024 cannot be named in resolv.conf, which the Kubernetes sidecar
# needs. Where the sysctl is not set (Kubernetes pods, --network host), set it:
# `docker run --sysctl net.ipv4.ip_unprivileged_port_start=0` or the pod's securityContext.sysctls
# (docs/kubernetes-sidecar.yaml).

ARG DEBIAN_IMAGE=debian:12-slim

FROM ${DEBIAN_IMAGE} AS build
# The build packages of tools/install-deps.sh (not its test peers, linters or benchmarks).
# libc6-dev is only a Recommends of gcc, so it is named here.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gcc libc6-dev meson ninja-build pkg-config \
        libldns-dev libuv1-dev libsodium-dev libyaml-dev liburcu-dev libjansson-dev \
        libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# debugoptimized (-O2 -g, asserts kept) is what the tests run; the install strips the binaries.
RUN meson setup /build --prefix=/usr --buildtype=debugoptimized -Dtests=false \
 && meson compile -C /build \
 && DESTDIR=/pkg meson install -C /build --strip

FROM ${DEBIAN_IMAGE}
# Only the shared libraries the three binaries link (ldns, libuv, libsodium, libyaml, liburcu,
# jansson, libcurl) and CA certificates for ballast-authd's HTTPS health checks and feeds.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libldns3 libuv1 libsodium23 libyaml-0-2 liburcu8 libjansson4 libcurl4 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10053 ballast \
 && useradd --system --uid 10053 --gid ballast --home-dir /var/lib/ballast --no-create-home \
        --shell /usr/sbin/nologin ballast \
 && install -d -o ballast -g ballast -m 0750 /run/ballast /var/lib/ballast \
 && install -d -m 0755 /etc/ballast
COPY --from=build /pkg/usr/bin/ /usr/bin/
COPY --from=build /pkg/usr/share/ballast/ /usr/share/ballast/
COPY --from=build /pkg/usr/share/doc/ballast/examples/ /usr/share/doc/ballast/examples/
COPY --from=build /pkg/usr/share/doc/ballast/examples/resolver-container.yaml \
        /etc/ballast/resolver.yaml
# Numeric, so that Kubernetes runAsNonRoot can check it without reading /etc/passwd.
USER 10053:10053
EXPOSE 53/udp 53/tcp
# The control socket answers once the resolver has started; SIGTERM (docker stop) writes the
# cache snapshot before exit.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["ballast", "-s", "/run/ballast/resolver.sock", "status"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["ballast-resolver"]
CMD ["-c", "/etc/ballast/resolver.yaml"]
