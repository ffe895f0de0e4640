#!/bin/sh
# Install, build and run the quickstart on loopback: ballast-authd serving zones/ on 127.0.0.1
# port 5301, ballast-resolver on port 5300 sending those zones to it with serve-stale on, and a
# second ballast-authd on port 5302 answering a health-checked pool whose two endpoints this
# script starts itself (127.0.0.31 and 127.0.0.32, TCP port 5321).
#   tools/quickstart.sh          run them and print what to try; Ctrl-C stops everything
#   tools/quickstart.sh --demo   a scripted tour, then stop: query, fail an endpoint and watch
#                                the answer change, stale answers while the authority is down
# BALLAST_BUILD_DIR=DIR uses the build in DIR as it is (no package install, no build).
set -eu
cd "$(dirname "$0")/.."
mode=run
case "${1:-}" in
"") ;;
--demo) mode=demo ;;
*)
    echo "usage: $0 [--demo]" >&2
    exit 2
    ;;
esac
if [ -n "${BALLAST_BUILD_DIR:-}" ]; then
    build=$BALLAST_BUILD_DIR
else
    build=build
    tools/install-deps.sh
    [ -d build ] || meson setup build
    ninja -C build
fi
authd=$build/authd/ballast-authd
resolver=$build/resolver/ballast-resolver
ballast=$build/tools/ballast
top=$(pwd)

# The daemons refuse to run as root without server.user (issue #7). The demo uses ports above
# 1024 and files of this checkout, which another user may not be able to read: as root, keep root.
run_as=""
[ "$(id -u)" -eq 0 ] && run_as="--allow-root"

work=$(mktemp -d "${TMPDIR:-/tmp}/ballast-quickstart.XXXXXX")
pids=""
cleanup() {
    for pid in $pids; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $pids; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The health-checked pool: app.demo.test answers with the endpoints whose TCP port 5321 accepts
# connections (checked every 500 ms; down after 2 failures). docs/health.md explains every key.
cat >"$work/demo.test.zone" <<'EOF'
$ORIGIN demo.test.
$TTL 5
@    3600 IN SOA ns.demo.test. hostmaster.demo.test. 1 7200 3600 1209600 5
          IN NS  ns
ns        IN A   127.0.0.1
app     5 IN A   127.0.0.31
app     5 IN A   127.0.0.32
EOF
cat >"$work/health.yaml" <<'EOF'
server:
  listen: 127.0.0.1@5302
  workers: 1
  log-level: info
  control: /tmp/ballast-authd-5302.sock
zones:
  - name: demo.test
    file: demo.test.zone
health:
  pools:
    - name: app.demo.test
      type: A
      ttl: 5s
      max-withdraw-share: 0.5
      withdraw-interval: 1s
      check: { type: tcp, port: 5321, interval: 500ms, timeout: 200ms, rise: 1, fall: 2 }
      members:
        - { address: 127.0.0.31 }
        - { address: 127.0.0.32 }
EOF
# The tour caps TTLs at 2 s so that an answer expires while you watch (zones/resolver.yaml, which
# the interactive run uses, keeps the real ones: 60 s for short.example.test).
cat >"$work/resolver.yaml" <<EOF
server:
  listen: 127.0.0.1@5300
  workers: 2
  log-level: info
  control: /tmp/ballast-resolver-5300.sock
resolution:
  root-hints: $top/zones/root.hints
cache:
  max-ttl: 2s
serve-stale:
  failure-recheck: 10s
stub:
  - zone: example.test
    to: [ 127.0.0.1@5301 ]
  - zone: other.test
    to: [ 127.0.0.1@5301 ]
EOF
resolver_config=zones/resolver.yaml
[ "$mode" = demo ] && resolver_config=$work/resolver.yaml
$resolver --check -c "$resolver_config" >/dev/null
$authd --check -c "$work/health.yaml" >/dev/null

# start NAME COMMAND...: run a daemon in the background, its log in $work/NAME.log; its pid in
# $started.
start() {
    name=$1
    shift
    "$@" >"$work/$name.log" 2>&1 &
    started=$!
    pids="$pids $started"
}

# wait_ready NAME: until the daemon logs event=ready (10 s at most).
wait_ready() {
    i=0
    until grep -q 'event=ready' "$work/$1.log" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
            echo "quickstart: $1 did not start; its log:" >&2
            cat "$work/$1.log" >&2
            exit 1
        fi
        sleep 0.1
    done
}

# The endpoints are two more ballast-authd processes: anything that accepts TCP would do.
# shellcheck disable=SC2086
start endpoint1 $authd --listen 127.0.0.31@5321 --zone "demo.test:$work/demo.test.zone" $run_as
pid_endpoint1=$started
# shellcheck disable=SC2086
start endpoint2 $authd --listen 127.0.0.32@5321 --zone "demo.test:$work/demo.test.zone" $run_as
pid_endpoint2=$started
wait_ready endpoint1
wait_ready endpoint2
# shellcheck disable=SC2086
start authd $authd -c zones/authd.yaml $run_as
pid_authd=$started
# shellcheck disable=SC2086
start health $authd -c "$work/health.yaml" $run_as
# shellcheck disable=SC2086
start resolver $resolver -c "$resolver_config" $run_as
pid_resolver=$started
for name in authd health resolver; do
    wait_ready $name
done

if [ "$mode" = run ]; then
    cat <<MSG

Running on 127.0.0.1 (Ctrl-C stops everything; logs in $work):
  ballast-resolver  port 5300, example.test and other.test sent to ballast-authd (stub zones)
  ballast-authd     port 5301, the zones in zones/
  ballast-authd     port 5302, app.demo.test: a pool of 127.0.0.31 and 127.0.0.32, each
                    checked by connecting to TCP port 5321 (endpoint pids $pid_endpoint1, $pid_endpoint2)

From another terminal:

    dig @127.0.0.1 -p 5300 www.example.test A            # through the resolver
    dig @127.0.0.1 -p 5301 www.example.test A +norec     # the authority itself
    $ballast -s /tmp/ballast-resolver-5300.sock stats

Fail an endpoint and watch the answer change: within a second or two of the kill,
127.0.0.32 leaves the answer (and ballast health shows it down).

    dig @127.0.0.1 -p 5302 +short app.demo.test A
    kill $pid_endpoint2
    sleep 2; dig @127.0.0.1 -p 5302 +short app.demo.test A
    $ballast -s /tmp/ballast-authd-5302.sock health

Watch serve-stale: stop the authority, wait for the TTL (60 s for short.example.test), and ask
again: the old answer comes back with "; EDE: 3 (Stale Answer)".

    dig @127.0.0.1 -p 5300 short.example.test A
    $ballast -s /tmp/ballast-authd-5301.sock stop
    sleep 61; dig @127.0.0.1 -p 5300 short.example.test A

Or run the same as a scripted tour: tools/quickstart.sh --demo

MSG
    wait "$pid_resolver"
    exit 0
fi

# --- the tour ------------------------------------------------------------------------------

# show COMMAND...: print the command, then run it with its output indented.
show() {
    echo "\$ $*"
    "$@" 2>&1 | sed 's/^/    /'
}

# pool_answer: the addresses ballast-authd answers for app.demo.test, sorted, on one line.
pool_answer() {
    dig @127.0.0.1 -p 5302 +short +tries=1 +time=2 app.demo.test A | sort | tr '\n' ' '
}

fail() {
    echo "quickstart: $*" >&2
    exit 1
}

echo
echo "== 1. Ask the resolver (port 5300); it asks ballast-authd (port 5301)"
show dig @127.0.0.1 -p 5300 +short www.example.test A

echo
echo "== 2. A health-checked pool: ballast-authd (port 5302) answers app.demo.test with the"
echo "      endpoints that are up"
show dig @127.0.0.1 -p 5302 +short app.demo.test A
[ "$(pool_answer)" = "127.0.0.31 127.0.0.32 " ] || fail "the pool should answer both endpoints"
echo "\$ kill $pid_endpoint2    # stop the endpoint on 127.0.0.32"
kill "$pid_endpoint2"
i=0
while pool_answer | grep -q 127.0.0.32; do
    i=$((i + 1))
    [ $i -le 100 ] || fail "127.0.0.32 was still answered 10 s after its endpoint stopped"
    sleep 0.1
done
echo "    ... its probes fail twice (500 ms apart), and it leaves the answer:"
show dig @127.0.0.1 -p 5302 +short app.demo.test A
show "$ballast" -s /tmp/ballast-authd-5302.sock health
echo "    (with every member down the pool would answer all of them: never an empty answer)"

echo
echo "== 3. Serve-stale: the authority stops, the resolver keeps answering from its cache"
show dig @127.0.0.1 -p 5300 +short short.example.test A
echo "\$ $ballast -s /tmp/ballast-authd-5301.sock stop"
"$ballast" -s /tmp/ballast-authd-5301.sock stop >/dev/null
wait "$pid_authd" 2>/dev/null || true
echo "\$ sleep 3    # this tour caps TTLs at 2 s"
sleep 3
stale=$(dig @127.0.0.1 -p 5300 +tries=1 +time=5 short.example.test A)
echo "\$ dig @127.0.0.1 -p 5300 short.example.test A"
echo "$stale" | grep -E 'EDE|IN[[:space:]]+A[[:space:]]' | grep -v '^;short' | sed 's/^/    /'
echo "$stale" | grep -q 'EDE: 3' || fail "no stale answer (EDE 3) from the resolver"
echo
echo "Tour done. tools/quickstart.sh without --demo keeps everything running for you to try."
