#!/bin/bash
# bench/stale.sh: serve-stale under an authority outage (issue 5): ballast-resolver, Unbound,
# Knot Resolver and PowerDNS Recursor, one at a time, each reaching stale.test through a stub.
# Measures success rate, latency, upstream queries to the failed authority, recovery time.
#
# Usage: bench/stale.sh [--quick] [--out DIR]
#   --quick: 20 s of load per outage (10 s closed port), recovery capped at 30 s (~8 min)
#   --out DIR: results (default /tmp/stale-bench): summary.md, summary.csv, one directory per
#   outage and resolver with the configs, logs, per-query CSVs and JSON summaries
# Environment: BENCH_SECONDS (60) BENCH_CLOSED_SECONDS (20) BENCH_RECOVERY_MAX (75)
#   BENCH_RATE (100 qps) BENCH_NAMES (50) BENCH_TTL (5 s) BENCH_TIMEOUT (5 s, per query)
#   BENCH_NET (127.0.14) BENCH_PORT (5300) BENCH_SERVERS ("ballast unbound kresd pdns")
#   BENCH_OUTAGES ("silent refused closed") BENCH_BUILD (build-bench) BENCH_RESOLVER BENCH_AUTHD
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# log, descendants, stop_pid
. "$here/lib.sh"

seconds=${BENCH_SECONDS:-60}
closed_seconds=${BENCH_CLOSED_SECONDS:-20}
recovery_max=${BENCH_RECOVERY_MAX:-75}
rate=${BENCH_RATE:-100}
names=${BENCH_NAMES:-50}
ttl=${BENCH_TTL:-5}
qtimeout=${BENCH_TIMEOUT:-5}
net=${BENCH_NET:-127.0.14}
port=${BENCH_PORT:-5300}
servers=${BENCH_SERVERS:-"ballast unbound kresd pdns"}
outages=${BENCH_OUTAGES:-"silent refused closed"}
build=$root/${BENCH_BUILD:-build-bench}
resolver=${BENCH_RESOLVER:-$build/resolver/ballast-resolver}
authd=${BENCH_AUTHD:-$build/authd/ballast-authd}
tool=$build/tools/ballast
py=/usr/bin/python3
out=/tmp/stale-bench

while [ $# -gt 0 ]; do
    case $1 in
    --quick)
        seconds=${BENCH_SECONDS:-20}
        closed_seconds=${BENCH_CLOSED_SECONDS:-10}
        recovery_max=${BENCH_RECOVERY_MAX:-30}
        ;;
    --out)
        out=$2
        shift
        ;;
    -h | --help)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "stale: unknown argument: $1" >&2
        exit 2
        ;;
    esac
    shift
done

case $net in
127.*.*) ;;
*)
    echo "stale: BENCH_NET must be inside 127.0.0.0/8 (three octets), not $net" >&2
    exit 2
    ;;
esac

auth=$net.1
# A root hint that points at nothing (port unreachable): no resolver may leave the loopback
# test set-up, even for root priming.
fake_root=$net.254
declare -A addr=([ballast]=$net.10 [unbound]=$net.11 [kresd]=$net.12 [pdns]=$net.13
    [kresd-stub]=$net.14 [ballast-nostale]=$net.15)
zone=stale.test
old_prefix=192.0.2.
new_prefix=198.51.100.
expire_wait=$((ttl + 1))

tmp=$(mktemp -d /tmp/ballast-stale.XXXXXX)
mkdir -p "$out"
pids=()         # every process this script started, killed by PID on exit
authd_pid=""
fake_pid=""
rpid=""

cleanup() {
    local p
    for p in $rpid $fake_pid $authd_pid "${pids[@]}"; do stop_pid "$p"; done
    pids=()
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the authority ------------------------------------------------------------------------------

# write_zone VERSION FILE: stale.test with NAMES A records nNN (TTL $ttl). Version 1 answers
# 192.0.2.x, version 2 198.51.100.x, so a fresh answer after the outage is told from a stale one.
write_zone() {
    local v=$1 f=$2 prefix=$old_prefix i
    [ "$v" = 2 ] && prefix=$new_prefix
    {
        echo "\$ORIGIN $zone."
        echo "\$TTL $ttl"
        echo "@ 3600 IN SOA ns.$zone. hostmaster.$zone. $v 3600 600 86400 $ttl"
        echo "@ 3600 IN NS ns.$zone."
        echo "ns 3600 IN A $auth"
        for ((i = 0; i < names; i++)); do
            printf 'n%02d %d IN A %s%d\n' "$i" "$ttl" "$prefix" $((i + 1))
        done
    } >"$f"
}

# start_authd VERSION: ballast-authd serving zone VERSION on $auth@$port; waits until it answers
# that version. Sets authd_pid.
start_authd() {
    local v=$1 want=$old_prefix
    [ "$v" = 2 ] && want=$new_prefix
    "$authd" --listen "$auth@$port" --zone "$zone:$tmp/zone-v$v" --workers 1 --log-level warn \
        >>"$tmp/authd.log" 2>&1 &
    authd_pid=$!
    for _ in $(seq 1 100); do
        if kdig @"$auth" -p "$port" "n00.$zone" A +norec +time=1 +retry=0 +short 2>/dev/null |
            grep -q "^${want//./\\.}1\$"; then
            return 0
        fi
        kill -0 "$authd_pid" 2>/dev/null || break
        sleep 0.05
    done
    log "the authority did not start; its log:"
    tail -n 20 "$tmp/authd.log" >&2
    return 1
}

stop_authd() {
    [ -n "$authd_pid" ] && stop_pid "$authd_pid"
    authd_pid=""
}

# start_fake MODE STATS: bench/fake_authority.py on the authority's address (silent, refuse or
# closed). Sets fake_pid.
start_fake() {
    local mode=$1 stats=$2 fo=$tmp/fake.out
    : >"$fo"
    "$py" "$here/fake_authority.py" --addr "$auth" --port "$port" --mode "$mode" \
        --stats "$stats" >"$fo" 2>>"$tmp/fake.log" &
    fake_pid=$!
    for _ in $(seq 1 100); do
        grep -q '^ready' "$fo" 2>/dev/null && return 0
        kill -0 "$fake_pid" 2>/dev/null || break
        sleep 0.05
    done
    log "the fake authority did not start; its log:"
    tail -n 20 "$tmp/fake.log" >&2
    return 1
}

stop_fake() {
    [ -n "$fake_pid" ] && stop_pid "$fake_pid"
    fake_pid=""
}

# --- the resolvers ------------------------------------------------------------------------------

have_server() {
    case $1 in
    ballast | ballast-nostale) [ -x "$resolver" ] && return 0 ;;
    unbound) command -v unbound >/dev/null && return 0 ;;
    kresd | kresd-stub) command -v kresd >/dev/null && return 0 ;;
    pdns) command -v pdns_recursor >/dev/null && return 0 ;;
    *)
        log "skip $1: unknown (ballast, unbound, kresd, pdns, kresd-stub, ballast-nostale)"
        return 1
        ;;
    esac
    log "skip $1: not installed or not built"
    return 1
}

# write_config NAME DIR: the resolver's configuration in DIR (serve-stale on, one thread, the
# stub zone stale.test -> $auth@$port, the dead root hint). Prints the file's path.
write_config() {
    local s=$1 d=$2
    mkdir -p "$d"
    case $s in
    ballast | ballast-nostale)
        # The serve-stale settings of issue 5 (docs/resolver-configuration.md, serve-stale.md);
        # ballast-nostale is the same resolver with serve-stale off (on by default), a baseline.
        cat >"$d/resolver.yaml" <<EOF
server:
  listen: ${addr[$s]}@$port
  workers: 1
  log-level: info
  control: $d/control.sock
resolution:
  root-hints: $tmp/root.hints
  allow-private-upstreams: true
stub:
  - zone: $zone
    to: [ "$auth@$port" ]
EOF
        [ "$s" = ballast-nostale ] && printf 'serve-stale:\n  enable: no\n' >>"$d/resolver.yaml"
        [ "$s" = ballast ] && cat >>"$d/resolver.yaml" <<EOF
serve-stale:
  enable: yes
  max-stale-age: 1d
  stale-ttl: 30s
  client-timeout: 1800ms
  failure-recheck: 30s
  prefetch: yes
EOF
        echo "$d/resolver.yaml"
        ;;
    unbound)
        # /work/shared/PEERS.md; RFC 8767 serve-stale: serve-expired with a client timeout
        # (answer from the cache after 1.8 s without an upstream answer).
        cat >"$d/unbound.conf" <<EOF
server:
    interface: ${addr[unbound]}
    port: $port
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    num-threads: 1
    username: ""
    chroot: ""
    directory: "$d"
    pidfile: ""
    logfile: ""
    use-syslog: no
    verbosity: 1
    root-hints: "$tmp/root.hints"
    do-not-query-localhost: no
    module-config: "iterator"
    local-zone: "test." nodefault
    access-control: 127.0.0.0/8 allow
    serve-expired: yes
    serve-expired-ttl: 86400
    serve-expired-reply-ttl: 30
    serve-expired-client-timeout: 1800
stub-zone:
    name: "$zone."
    stub-addr: $auth@$port
remote-control:
    control-enable: no
EOF
        echo "$d/unbound.conf"
        ;;
    kresd | kresd-stub)
        # serve_stale: stale data (at most 1 day old) once a query has gone about 3 s without an
        # upstream answer (kres_modules/serve_stale.lua). PEERS.md: test. is a special name,
        # loopback servers need ALLOW_LOCAL. policy.FORWARD (RD=1; the authority ignores RD):
        # with policy.STUB (kresd-stub) an upstream REFUSED is passed to the client as is and
        # no stale data is served for it.
        local action=FORWARD
        [ "$s" = kresd-stub ] && action=STUB
        cat >"$d/config" <<EOF
log_target('stderr')
log_level('notice')
net.listen('${addr[$s]}', $port, { kind = 'dns' })
cache.open(10 * MB, 'lmdb://$d/cache')
modules.load('serve_stale < cache')
trust_anchors.remove('.')
table.remove(policy.special_names, 2)
option('ALLOW_LOCAL', true)
modules.load('hints > iterate')
hints.root({ ['a.root.invalid.'] = '$fake_root' })
policy.add(policy.suffix(policy.$action({ '$auth@$port' }), { todname('$zone.') }))
EOF
        echo "$d/config"
        ;;
    pdns)
        # forward-zones sends RD=0 (forward-zones-recurse would set RD=1); serve-stale-extensions:
        # stale records served with TTL 30 s, extended up to 1440 times (12 h).
        cat >"$d/recursor.conf" <<EOF
local-address=${addr[pdns]}
local-port=$port
allow-from=127.0.0.0/8
forward-zones=$zone=$auth:$port
hint-file=$tmp/root.hints
dont-query=
dnssec=off
security-poll-suffix=
serve-stale-extensions=1440
threads=1
socket-dir=$d
daemon=no
disable-syslog=yes
loglevel=5
log-common-errors=yes
EOF
        echo "$d/recursor.conf"
        ;;
    esac
}

# check_config NAME FILE: 0 when the resolver accepts its configuration (message on failure).
check_config() {
    local s=$1 f=$2
    case $s in
    ballast | ballast-nostale) "$resolver" --check -c "$f" >"$tmp/check.txt" 2>&1 ;;
    unbound) unbound-checkconf "$f" >"$tmp/check.txt" 2>&1 ;;
    *) return 0 ;;
    esac
    local rc=$?
    [ $rc = 0 ] || log "$s rejects its configuration: $(head -c 400 "$tmp/check.txt")"
    return $rc
}

# start_resolver NAME DIR FILE LOG: sets rpid.
start_resolver() {
    local s=$1 d=$2 f=$3 lg=$4
    case $s in
    ballast | ballast-nostale) (cd "$root" && exec "$resolver" -c "$f") >"$lg" 2>&1 & ;;
    unbound) unbound -d -c "$f" >"$lg" 2>&1 & ;;
    kresd | kresd-stub) (cd "$d" && exec kresd -n -c "$f" "$d") >"$lg" 2>&1 & ;;
    pdns) pdns_recursor --config-dir="$d" >"$lg" 2>&1 & ;;
    esac
    rpid=$!
}

# wait_ready NAME LOG: the resolver answers n00.stale.test (through the authority, version 1).
wait_ready() {
    local s=$1 lg=$2
    for _ in $(seq 1 100); do
        if ! kill -0 "$rpid" 2>/dev/null; then
            log "$s exited during startup; its log:"
            tail -n 20 "$lg" >&2
            return 1
        fi
        if kdig @"${addr[$s]}" -p "$port" "n00.$zone" A +time=1 +retry=0 +short 2>/dev/null |
            grep -q "^${old_prefix//./\\.}1\$"; then
            return 0
        fi
        sleep 0.1
    done
    log "$s did not answer n00.$zone within 10 s; its log:"
    tail -n 20 "$lg" >&2
    return 1
}

stop_resolver() {
    [ -n "$rpid" ] && stop_pid "$rpid"
    rpid=""
}

client() {
    "$py" "$here/stale_client.py" load --server "${addr[$1]}" --port "$port" --zone "$zone" \
        --names "$names" --timeout "$qtimeout" --old-prefix "$old_prefix" \
        --new-prefix "$new_prefix" "${@:2}"
}

# combine DIR OUTAGE NAME NOTE: DIR/run.json from the phase summaries present in DIR.
combine() {
    "$py" - "$@" <<'EOF'
import json, os, sys
d, outage, name, note = sys.argv[1:5]
run = {"outage": outage, "resolver": name, "note": note}
for key, f in (("warm", "warm.json"), ("outage_load", "outage.json"),
               ("upstream", "upstream.json"), ("recovery", "recovery.json")):
    p = os.path.join(d, f)
    if os.path.exists(p):
        with open(p) as fh:
            run[key] = json.load(fh)
with open(os.path.join(d, "run.json"), "w") as fh:
    json.dump(run, fh, indent=1)
EOF
}

# brief FILE: one line on a client summary (stderr log)
brief() {
    "$py" - "$1" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
lat, first = s["latency_ok_ms"], s["first_per_name"]
line = (f"{s['queries']} queries, success {s['success_pct']}% (old {s['old_data']}, "
        f"new {s['new_data']}), timeouts {s['timeouts']}, rcodes {s['rcodes']}; ok latency "
        f"median {lat['median']} p99 {lat['p99']} ms; first per name median "
        f"{first['median_ms']} max {first['max_ms']} ms ({first['success']}/{first['names']} ok); "
        f"ttl {s['ttl_ok']['median']}")
if s["names_new"]:
    line += f"; first new {s['first_new_s']} s, all new {s['all_new_s']} s"
print(line)
EOF
}

# upstream_brief FILE: one line on the fake authority's counts
upstream_brief() {
    "$py" - "$1" <<'EOF'
import json, sys
u = json.load(open(sys.argv[1]))
print(f"{u['udp_queries']} UDP queries in {u['duration_s']} s ({u['tcp_syns']} TCP SYNs); "
      f"per second: {u['per_second']}")
EOF
}

# run_one OUTAGE NAME: one resolver through one outage. Results in $out/OUTAGE/NAME/.
run_one() {
    local outage=$1 s=$2 d=$out/$1/$2 w=$tmp/$2-$1 cfg mode secs note="" why
    rm -rf "$d"
    mkdir -p "$d" "$w"
    case $outage in
    silent) mode=silent secs=$seconds ;;
    refused) mode=refuse secs=$seconds ;;
    closed) mode=closed secs=$closed_seconds ;;
    esac
    cfg=$(write_config "$s" "$w")
    cp "$cfg" "$d/"
    if ! check_config "$s" "$cfg"; then
        why=$(head -n 1 "$tmp/check.txt" | sed 's|^[^ ]*/||' | cut -c1-200)
        combine "$d" "$outage" "$s" "not run: configuration rejected ($why)"
        return 1
    fi
    start_authd 1 || return 1
    start_resolver "$s" "$w" "$cfg" "$d/resolver.log"
    if ! wait_ready "$s" "$d/resolver.log"; then
        stop_resolver
        stop_authd
        combine "$d" "$outage" "$s" "not run: did not start or did not resolve through its stub"
        return 1
    fi
    # Warm: every name once, each must answer version 1.
    client "$s" --count "$names" --rate 50 --label warm --json "$d/warm.json"
    log "$s/$outage warm: $(brief "$d/warm.json")"
    if ! "$py" -c 'import json, sys; s = json.load(open(sys.argv[1]))
sys.exit(0 if s["old_data"] == s["queries"] else 1)' "$d/warm.json"; then
        note="warming did not answer every name with data"
        log "warning: $s/$outage: $note"
    fi
    # Outage: the authority is replaced by the fake on the same address and port. The load
    # starts once every cached record has expired (TTL + 1 s), so every answer is stale or none.
    stop_authd
    start_fake "$mode" "$d/upstream.json" || { stop_resolver; return 1; }
    sleep "$expire_wait"
    client "$s" --rate "$rate" --duration "$secs" --label outage --csv "$d/outage.csv" \
        --json "$d/outage.json"
    log "$s/$outage outage ($secs s): $(brief "$d/outage.json")"
    stop_fake
    log "$s/$outage upstream: $(upstream_brief "$d/upstream.json")"
    if [ -S "$w/control.sock" ] && [ -x "$tool" ]; then
        "$tool" -s "$w/control.sock" stats >"$d/ballast-stats.txt" 2>&1
    fi
    # Recovery: the authority is back with version 2; the same load until every name answers
    # version 2 (at most BENCH_RECOVERY_MAX seconds).
    write_zone 2 "$tmp/zone-v2"
    start_authd 2 || { stop_resolver; return 1; }
    client "$s" --rate "$rate" --duration "$recovery_max" --until-new --label recovery \
        --csv "$d/recovery.csv" --json "$d/recovery.json"
    log "$s/$outage recovery: $(brief "$d/recovery.json")"
    stop_resolver
    stop_authd
    combine "$d" "$outage" "$s" "$note"
}

# --- main ---------------------------------------------------------------------------------------

command -v kdig >/dev/null || { echo "stale: kdig (knot-dnsutils) is not installed" >&2; exit 1; }
[ -x "$authd" ] || { echo "stale: $authd not built (the authority)" >&2; exit 1; }
"$py" -c 'import dns.message' 2>/dev/null ||
    { echo "stale: $py lacks dnspython (python3-dnspython)" >&2; exit 1; }

active=()
for s in $servers; do have_server "$s" && active+=("$s"); done
[ ${#active[@]} -gt 0 ] || { echo "stale: no resolver to measure" >&2; exit 1; }

for a in "$auth" "${addr[@]}"; do
    busy=$(ss -Hlunp "src $a:$port" 2>/dev/null)
    if [ -n "$busy" ]; then
        echo "stale: $a@$port is already in use; stop that process first:" >&2
        echo "$busy" >&2
        exit 1
    fi
done

printf '. 3600000 IN NS a.root.invalid.\na.root.invalid. 3600000 IN A %s\n' "$fake_root" \
    >"$tmp/root.hints"
write_zone 1 "$tmp/zone-v1"
"$py" - "$out/meta.json" rate "$rate" names "$names" seconds "$seconds" \
    closed_seconds "$closed_seconds" timeout "$qtimeout" ttl "$ttl" expire_wait "$expire_wait" \
    recovery_max "$recovery_max" servers "${active[*]}" outages "$outages" \
    date "$(date -Is)" <<'EOF'
import json, sys
with open(sys.argv[1], "w") as f:
    json.dump(dict(zip(sys.argv[2::2], sys.argv[3::2])), f, indent=1)
EOF

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
log "stale: ${active[*]}; outages: $outages; $rate qps over $names names for $seconds s" \
    "(closed: $closed_seconds s), TTL $ttl s, timeout $qtimeout s; authority $auth@$port; out $out"

for outage in $outages; do
    case $outage in
    silent | refused | closed) ;;
    *) log "skip outage $outage: unknown (silent, refused, closed)"; continue ;;
    esac
    for s in "${active[@]}"; do
        log "--- $s, $outage authority"
        run_one "$outage" "$s" || log "$s/$outage: not measured"
        stop_resolver
        stop_fake
        stop_authd
    done
done

log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$py" "$here/stale_client.py" report --dir "$out" --outages "$outages" --resolvers "${active[*]}"
echo
echo "results: $out/summary.md, $out/summary.csv; per run: $out/OUTAGE/RESOLVER/"
