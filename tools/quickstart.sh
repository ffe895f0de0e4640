#!/bin/sh
# Install, build and start ballast-authd serving the zones in zones/ on 127.0.0.1 port 5301.
set -eu
cd "$(dirname "$0")/.."
tools/install-deps.sh
[ -d build ] || meson setup build
ninja -C build
cat <<'MSG'

ballast-authd is starting on 127.0.0.1 port 5301 with the zones in zones/ (Ctrl-C stops it).
Query it from another terminal:
    kdig @127.0.0.1 -p 5301 www.example.test A
    dig @127.0.0.1 -p 5301 example.test SOA +norec
    build/tools/ballast -s /tmp/ballast-authd-5301.sock stats

MSG
exec build/authd/ballast-authd -c zones/authd.yaml
