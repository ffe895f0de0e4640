#!/bin/sh
# Install the Debian 12 packages Ballast needs to build, test and benchmark.
# Skips apt when everything is already installed; uses sudo when not root.
set -eu
PACKAGES="gcc meson ninja-build pkg-config libldns-dev libuv1-dev libsodium-dev libyaml-dev
liburcu-dev libcmocka-dev libjansson-dev libcurl4-openssl-dev clang-format knot-dnsutils bind9-dnsutils python3 python3-dnspython python3-cryptography openssl nsd unbound
valgrind groff-base clang libclang-rt-14-dev llvm"
if [ "${1:-}" = "--bench" ]; then
    PACKAGES="$PACKAGES knot knot-resolver pdns-recursor dnsperf linux-perf"
fi
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
# shellcheck disable=SC2086
$SUDO apt-get install -y --no-install-recommends $missing
# Debian starts nsd and knot as services on install; Ballast's tests run their own instances.
for s in nsd knot unbound; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$s" 2>/dev/null; then
        $SUDO systemctl stop "$s" || true
    fi
done
