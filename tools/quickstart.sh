#!/bin/sh
# Install, build and run the main job: ballast-authd serving the zones in zones/ on 127.0.0.1
# port 5301, and ballast-resolver on 127.0.0.1 port 5300 sending those zones to it (stub zones)
# with serve-stale on. Ctrl-C stops both.
set -eu
cd "$(dirname "$0")/.."
tools/install-deps.sh
[ -d build ] || meson setup build
ninja -C build
build/resolver/ballast-resolver --check -c zones/resolver.yaml >/dev/null
build/authd/ballast-authd -c zones/authd.yaml &
authd_pid=$!
trap 'kill "$authd_pid" 2>/dev/null || true' EXIT INT TERM
cat <<'MSG'

ballast-authd is serving the zones in zones/ on 127.0.0.1 port 5301, and ballast-resolver is
starting on 127.0.0.1 port 5300 (Ctrl-C stops both). From another terminal:

    dig @127.0.0.1 -p 5300 www.example.test A            # through the resolver
    dig @127.0.0.1 -p 5301 www.example.test A +norec     # the authority itself
    build/tools/ballast -s /tmp/ballast-resolver-5300.sock stats

Watch serve-stale: stop the authority, wait for the TTL (60 s for short.example.test), and ask
again: the old answer comes back with "; EDE: 3 (Stale Answer)".

    dig @127.0.0.1 -p 5300 short.example.test A
    build/tools/ballast -s /tmp/ballast-authd-5301.sock stop
    sleep 61; dig @127.0.0.1 -p 5300 short.example.test A

MSG
build/resolver/ballast-resolver -c zones/resolver.yaml
