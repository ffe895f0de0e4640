#!/bin/bash
# bench/auth-qps.sh: authoritative UDP throughput of ballast-authd against NSD and Knot DNS,
# serving the same generated zone on loopback, measured with dnsperf. See bench/README.md.
#
# Usage: bench/auth-qps.sh [--quick] [--profile SERVER] [--health] [--out DIR]
#   --profile SERVER: measure only SERVER (one round, modes as BENCH_MODES) under `perf record`
#   and print its hottest functions; figures from a profiled run are not comparable.
#   --health: ballast-authd only, one pinned worker, the zone without and with a health section
#   of BENCH_HEALTH_POOLS (100) pools x BENCH_HEALTH_MEMBERS (10) TCP-probed members, alternated.
# Environment: BENCH_SECONDS (10) BENCH_ROUNDS (3) BENCH_PORT (5390) BENCH_BUILD (build-bench)
#   BENCH_AUTHD (path to ballast-authd) BENCH_SERVERS ("ballast nsd knot") BENCH_MODES ("one all")
#   BENCH_CLIENTS BENCH_OUTSTANDING BENCH_THREADS (dnsperf -c/-q/-T) BENCH_EDNS (1: send EDNS0)
#   BENCH_NAMES (10000 hosts in the zone) BENCH_MAX_QPS (dnsperf -Q: fixed offered rate)
#   BENCH_PERF_RECORD (1; 0: --profile runs only `perf stat`, which barely slows the server)
#   --health: BENCH_HEALTH_POOLS BENCH_HEALTH_MEMBERS BENCH_HEALTH_INTERVAL (1s) BENCH_HEALTH_SHARE
#   (20: % of queries for pool names) BENCH_HEALTH_SETTLE (5: seconds between start and run)
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# log, descendants, cpu_ticks, stop_pid
. "$here/lib.sh"

seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-3}
port=${BENCH_PORT:-5390}
servers=${BENCH_SERVERS:-"ballast nsd knot"}
modes=${BENCH_MODES:-"one all"}
names=${BENCH_NAMES:-10000}
edns=${BENCH_EDNS:-1}
authd=${BENCH_AUTHD:-$root/${BENCH_BUILD:-build-bench}/authd/ballast-authd}
out=""
profile=""
health=""

while [ $# -gt 0 ]; do
    case $1 in
    --quick)
        seconds=${BENCH_SECONDS:-3}
        rounds=${BENCH_ROUNDS:-1}
        ;;
    --profile)
        profile=$2
        servers=$2
        rounds=1
        shift
        ;;
    --health)
        health=1
        servers=${BENCH_SERVERS:-"plain health pools"}
        modes=one
        rounds=${BENCH_ROUNDS:-2}
        ;;
    --out)
        out=$2
        shift
        ;;
    -h | --help)
        sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "auth-qps: unknown argument: $1" >&2
        exit 2
        ;;
    esac
    shift
done

# plain, health, pools: ballast-authd without the health section, with it, and with its pools
# but no checks (--health).
declare -A addr=([ballast]=127.0.0.51 [nsd]=127.0.0.52 [knot]=127.0.0.53 [plain]=127.0.0.54
    [health]=127.0.0.55 [pools]=127.0.0.56)
ncpu=$(nproc)
tck=$(getconf CLK_TCK)
tmp=$(mktemp -d /tmp/ballast-bench.XXXXXX)
[ -n "$out" ] || out=$tmp
mkdir -p "$out"
results=$out/results.tsv
pids=() # every process this script started, killed by PID on exit

cleanup() {
    local p
    for p in "${pids[@]}"; do stop_pid "$p"; done
    pids=()
    [ "$out" = "$tmp" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A server is ready when it answers the zone's SOA over UDP.
wait_ready() {
    local server=$1 pid=$2
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$server exited during startup; its log:"
            tail -n 20 "$tmp/$server.log" >&2
            return 1
        fi
        if kdig @"${addr[$server]}" -p "$port" bench.test SOA +time=1 +retry=0 +short 2>/dev/null |
            grep -q hostmaster; then
            return 0
        fi
        sleep 0.1
    done
    log "$server did not answer within 30 s"
    return 1
}

have_server() {
    case $1 in
    ballast | plain | health | pools)
        [ -x "$authd" ] || { log "skip $1: $authd not built"; return 1; } ;;
    nsd) command -v nsd >/dev/null || { log "skip nsd: nsd is not installed"; return 1; } ;;
    knot) command -v knotd >/dev/null || { log "skip knot: knotd is not installed"; return 1; } ;;
    esac
}

# start_server NAME WORKERS CPUSET: starts the server in the background (not in a subshell, so it
# stays this shell's child) and sets started_pid. CPUSET empty = unpinned.
start_server() {
    local server=$1 workers=$2 cpus=$3 pin=() dir=$tmp/$1-$2
    [ -n "$cpus" ] && pin=(taskset -c "$cpus")
    mkdir -p "$dir"
    case $server in
    plain | health | pools)
        # Same zone and options; health adds the health section (written by health_prepare).
        {
            echo "server:"
            echo "  listen: ${addr[$server]}@$port"
            echo "  workers: $workers"
            echo "  log-level: warn"
            echo "  control: $tmp/$server.sock"
            echo "zones:"
            echo "  - name: bench.test"
            echo "    file: $zone"
            [ "$server" = health ] && cat "$tmp/health-section.yaml"
            [ "$server" = pools ] && grep -v ' check: ' "$tmp/health-section.yaml"
        } >"$dir/authd.yaml"
        "${pin[@]}" "$authd" -c "$dir/authd.yaml" >"$tmp/$server.log" 2>&1 &
        ;;
    ballast)
        "${pin[@]}" "$authd" --listen "${addr[ballast]}@$port" --zone "bench.test:$zone" \
            --workers "$workers" --log-level warn >"$tmp/$server.log" 2>&1 &
        ;;
    nsd)
        cat >"$dir/nsd.conf" <<EOF
server:
    ip-address: ${addr[nsd]}@$port
    server-count: $workers
    reuseport: yes
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "$dir"
    database: ""
    zonelistfile: "$dir/zone.list"
    xfrdfile: "$dir/xfrd.state"
    xfrdir: "$dir"
    pidfile: "$dir/nsd.pid"
    logfile: "$dir/nsd-log"
    verbosity: 0
    hide-version: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: bench.test
    zonefile: "$zone"
EOF
        nsd-checkconf "$dir/nsd.conf" >&2 || return 1
        "${pin[@]}" nsd -d -c "$dir/nsd.conf" >"$tmp/$server.log" 2>&1 &
        ;;
    knot)
        cat >"$dir/knot.conf" <<EOF
server:
    listen: ${addr[knot]}@$port
    rundir: "$dir"
    pidfile: "$dir/knot.pid"
    udp-workers: $workers
    tcp-workers: $workers
    background-workers: 1
database:
    storage: "$dir"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$dir"
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
zone:
  - domain: bench.test
    file: "$zone"
EOF
        knotc -c "$dir/knot.conf" conf-check >&2 || return 1
        "${pin[@]}" knotd -c "$dir/knot.conf" >"$tmp/$server.log" 2>&1 &
        ;;
    esac
    started_pid=$!
}

# Query each server for one name of each kind and print rcode/flags/section counts, so a server
# that answers differently (and so does different work) is visible before the figures.
sanity() {
    local server=$1 q
    for q in "h00001.bench.test A" "h00002.bench.test MX" "nx1.bench.test A" \
        "alias1.bench.test A" "w1.wild.bench.test A" "www.sub1.bench.test A"; do
        set -- $q
        kdig @"${addr[$server]}" -p "$port" "$1" "$2" +time=1 +retry=0 +norecurse 2>/dev/null |
            awk -v q="$q" '/status:/ {st = $6; sub(/;/, "", st)} /^;; Flags:/ {
                    sub(/;; Flags: /, ""); gsub(/;/, ""); fl = $0 }
                END { printf "    %-24s %s %s\n", q, st, fl }'
    done
}

# run_dnsperf SERVER CPUSET LABEL: one timed dnsperf run; appends a line to results.tsv.
run_dnsperf() {
    local server=$1 cpus=$2 mode=$3 round=$4 pid=$5 pin=() t0 t1 dp rc f
    [ -n "$cpus" ] && pin=(taskset -c "$cpus")
    local eopt=()
    [ "$edns" = 1 ] && eopt=(-e)
    [ -n "${BENCH_MAX_QPS:-}" ] && eopt+=(-Q "$BENCH_MAX_QPS")
    f=$out/dnsperf-$server-$mode-$round.txt
    local perf_pid="" stat_pid="" pdata=$out/perf-$server-$mode
    if [ -n "$profile" ]; then
        local all=$pid c
        for c in $(descendants "$pid"); do all+=",$c"; done
        # cpu-clock: this VM has no hardware counters. Frame pointers are absent in a release
        # build, so the report is flat (self time per function), which is what we need here.
        if [ "${BENCH_PERF_RECORD:-1}" = 1 ]; then
            "${pin[@]}" perf record -q -g -e cpu-clock -F 2999 -p "$all" -o "$pdata.data" \
                >"$pdata.log" 2>&1 &
        else
            # Stands in for perf record. Background jobs of a script ignore SIGINT: stopped
            # with SIGTERM below.
            sleep 3600 &
        fi
        perf_pid=$!
        pids+=("$perf_pid")
        # System calls and context switches per query show batching: how many datagrams each
        # wakeup and each recvmmsg/sendmmsg call handles.
        "${pin[@]}" perf stat -x, -e raw_syscalls:sys_enter,context-switches,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_recvmsg,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto \
            -p "$all" -o "$pdata-stat.csv" >/dev/null 2>&1 &
        stat_pid=$!
        pids+=("$stat_pid")
        sleep 0.5
    fi
    t0=$(cpu_ticks "$pid")
    "${pin[@]}" timeout $((seconds + 20)) dnsperf -s "${addr[$server]}" -p "$port" -d "$queries" \
        -l "$seconds" -c "$clients" -q "$outstanding" -T "$threads" "${eopt[@]}" >"$f" 2>&1 &
    dp=$!
    pids+=("$dp")
    wait "$dp"
    rc=$?
    unset 'pids[-1]'
    t1=$(cpu_ticks "$pid")
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid" "$stat_pid"
        [ "${BENCH_PERF_RECORD:-1}" = 1 ] || kill -TERM "$perf_pid"
        wait "$perf_pid" "$stat_pid"
        unset 'pids[-1]' 'pids[-1]'
        {
            if [ -s "$pdata.data" ]; then
                perf report -i "$pdata.data" --no-children -g none --sort dso,sym --stdio 2>/dev/null |
                    grep -v '^#' | grep '%' | head -n 40 >"$pdata.txt"
                perf report -i "$pdata.data" --no-children -g none --sort dso --stdio 2>/dev/null |
                    grep -v '^#' | grep '%' >"$pdata-dso.txt"
                echo "perf profile of $server ($mode), share of its CPU time by shared object:"
                cat "$pdata-dso.txt"
                echo "hottest functions (self time):"
                cat "$pdata.txt"
            fi
            echo "events per answered query during the run (perf stat):"
            awk -F, -v done="$(awk '/Queries completed:/ { print $3 }' "$f")" \
                '$1 ~ /^[0-9]+$/ && done > 0 { printf "    %-36s %8.3f\n", $3, $1 / done }' \
                "$pdata-stat.csv"
        } >&2
    fi
    if [ "$rc" -ne 0 ]; then
        log "dnsperf against $server failed (exit $rc):"
        tail -n 5 "$f" >&2
        return 1
    fi
    set -- $t0 $t1
    awk -v s="$server" -v m="$mode" -v r="$round" -v uticks=$(($3 - $1)) -v sticks=$(($4 - $2)) \
        -v tck="$tck" \
        -v secs="$seconds" '
        /Queries sent:/ { sent = $3 }
        /Queries completed:/ { done = $3 }
        /Queries lost:/ { lost = $3 }
        /Queries per second:/ { qps = $4 }
        /Average Latency \(s\):/ { lat = $4 }
        /Response codes:/ { sub(/.*Response codes: /, ""); gsub(/ /, ""); codes = $0 }
        END {
            u = uticks / tck; k = sticks / tck
            upq = done > 0 ? u / done * 1e6 : 0
            kpq = done > 0 ? k / done * 1e6 : 0
            printf "%s\t%s\t%s\t%d\t%d\t%d\t%.0f\t%.1f\t%.3f\t%.3f\t%.3f\t%.1f\t%s\n", s, m, r, sent,
                done, lost, qps, lat * 1e6, upq + kpq, upq, kpq, (u + k) / secs * 100, codes
        }' "$f" | tee -a "$results" | awk -F'\t' '{
            printf "    %-8s %-3s round %s: %7d qps  latency %6.1f us  cpu/query %5.2f us (user %4.2f sys %4.2f)  server cpu %5.1f%%  lost %d\n",
                $1, $2, $3, $7, $8, $9, $10, $11, $12, $6 }' >&2
}

# --- prepare -----------------------------------------------------------------------------------

command -v dnsperf >/dev/null || { echo "auth-qps: dnsperf is not installed" >&2; exit 1; }
command -v kdig >/dev/null || { echo "auth-qps: kdig (knot-dnsutils) is not installed" >&2; exit 1; }
if [ -n "$profile" ] && ! perf --version >/dev/null 2>&1; then
    echo "auth-qps: --profile needs perf (linux-perf)" >&2
    exit 1
fi
zone=$here/zones/bench.test.zone
queries=$here/zones/bench.queries
"$here/gen-zone.sh" "$zone" "$queries" "$names" || exit 1

# --health: both configurations serve a copy of the zone with BENCH_HEALTH_POOLS extra names
# poolNNN, each holding its members' full static A RRset (the RRset a pool overrides, see
# docs/health.md), so plain and health send answers of the same size. Member m of the pools is
# 127.0.(9 + m / 250).(1 + m % 250), probed by TCP on port BENCH_PORT + 1, where nothing
# listens: every probe is refused at once, every member goes down after `fall` probes and every
# pool fails open (answers with all its members), while the probes go on at the full rate.
# BENCH_HEALTH_SHARE % of the queries (every k-th line) become A queries for pool names.
health_prepare() {
    local npools=${BENCH_HEALTH_POOLS:-100} nmem=${BENCH_HEALTH_MEMBERS:-10}
    local interval=${BENCH_HEALTH_INTERVAL:-1s} share=${BENCH_HEALTH_SHARE:-20}
    cp "$zone" "$tmp/bench-health.zone"
    awk -v np="$npools" -v nm="$nmem" 'BEGIN {
        for (p = 0; p < np; p++)
            for (i = 0; i < nm; i++) {
                m = p * nm + i
                printf "pool%03d IN A 127.0.%d.%d\n", p, 9 + int(m / 250), 1 + m % 250
            }
    }' >>"$tmp/bench-health.zone"
    awk -v np="$npools" -v share="$share" 'BEGIN { srand(4); acc = 0 }
        { acc += share; if (acc >= 100) { acc -= 100; printf "pool%03d.bench.test A\n", int(rand() * np) }
          else print }' "$queries" >"$tmp/bench-health.queries"
    {
        echo "health:"
        echo "  pools:"
        awk -v np="$npools" -v nm="$nmem" -v iv="$interval" -v cport=$((port + 1)) 'BEGIN {
            for (p = 0; p < np; p++) {
                printf "    - name: pool%03d.bench.test\n      type: A\n      ttl: 30s\n", p
                # Velocity control off (share 1): the pools reach their steady state (fail open)
                # within a few intervals instead of 25 % per 10 s.
                printf "      max-withdraw-share: 1\n      withdraw-interval: 1s\n"
                printf "      check: { type: tcp, port: %d, interval: %s, timeout: 500ms, rise: 2, fall: 2 }\n", cport, iv
                printf "      members:\n"
                for (i = 0; i < nm; i++) {
                    m = p * nm + i
                    printf "        - { address: 127.0.%d.%d }\n", 9 + int(m / 250), 1 + m % 250
                }
            }
        }'
    } >"$tmp/health-section.yaml"
    zone=$tmp/bench-health.zone
    queries=$tmp/bench-health.queries
    log "health: $npools pools x $nmem members = $((npools * nmem)) TCP probes every $interval to port $((port + 1)); $(grep -c '^pool' "$queries") of $(wc -l <"$queries") queries for pool names"
}
[ -n "$health" ] && health_prepare

active=()
for s in $servers; do have_server "$s" && active+=("$s"); done
[ ${#active[@]} -gt 0 ] || { echo "auth-qps: no server to measure" >&2; exit 1; }

printf 'server\tmode\tround\tsent\tcompleted\tlost\tqps\tlatency_us\tcpu_us_per_query\tuser_us_per_query\tsys_us_per_query\tserver_cpu_pct\trcodes\n' >"$results"
# SO_REUSEPORT lets a leftover server on the same address and port silently take part of the
# traffic (ballast-authd, NSD with reuseport), so refuse to measure next to one.
for s in "${active[@]}"; do
    busy=$(ss -Hlunp "src ${addr[$s]}:$port" 2>/dev/null)
    if [ -n "$busy" ]; then
        echo "auth-qps: ${addr[$s]}@$port is already in use; stop that process first:" >&2
        echo "$busy" >&2
        exit 1
    fi
done

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
log "auth-qps: ${active[*]}; modes: $modes; $rounds round(s) of $seconds s; nproc=$ncpu; port $port; out $out"

# --health: one server at a time (an idle health server would keep probing on the measured CPU),
# started afresh for every run: plain, health, plain, health, ... BENCH_HEALTH_SETTLE seconds
# after it answers, the run starts (the pools have failed open by then). The health thread runs
# on the pinned CPU too, so CPU per query includes the probes. probes_sent and probes_failed
# from `ballast stats` before and after each run show the probes ran.
health_stat() {
    "$ballast" -s "$tmp/$1.sock" stats 2>/dev/null |
        awk -v k="$2" '{ for (i = 1; i <= NF; i++) { split($i, kv, /[=:]/)
            if (kv[1] == k) { v = kv[2] != "" ? kv[2] : $(i + 1); gsub(/[^0-9]/, "", v); print v + 0; exit } } }'
}
if [ -n "$health" ]; then
    ballast=${BENCH_BALLAST:-$(dirname "$authd")/../tools/ballast}
    [ -x "$ballast" ] || { echo "auth-qps: --health needs the ballast tool ($ballast)" >&2; exit 1; }
    busy=$(ss -Hltn "sport = :$((port + 1))" 2>/dev/null)
    [ -z "$busy" ] || log "warning: something listens on port $((port + 1)); some probes may succeed: $busy"
    server_cpus=1 client_cpus=0
    [ "$ncpu" -ge 2 ] || { server_cpus=""; client_cpus=""; }
    threads=${BENCH_THREADS:-1}
    clients=${BENCH_CLIENTS:-4}
    outstanding=${BENCH_OUTSTANDING:-128}
    settle=${BENCH_HEALTH_SETTLE:-5}
    probes=$out/probes.tsv
    printf 'server\tround\tprobes_sent\tprobes_failed\tseconds\tidle_cpu_pct\n' >"$probes"
    log "mode one: 1 worker, server CPUs ${server_cpus:-any}, dnsperf CPUs ${client_cpus:-any} -T $threads -c $clients -q $outstanding; settle $settle s"
    for round in $(seq 1 "$rounds"); do
        for s in "${active[@]}"; do
            start_server "$s" 1 "$server_cpus" || { log "cannot start $s"; exit 1; }
            p=$started_pid
            pids+=("$p")
            wait_ready "$s" "$p" || exit 1
            [ "$round" = 1 ] && { log "$s ready (pid $p)"; sanity "$s" >&2; }
            c0=$(cpu_ticks "$p")
            sleep "$settle"
            c1=$(cpu_ticks "$p")
            set -- $c0 $c1
            idle=$(awk -v t=$(($3 + $4 - $1 - $2)) -v tck="$tck" -v s="$settle" 'BEGIN { printf "%.1f", t / tck / s * 100 }')
            s0=$(health_stat "$s" probes_sent) f0=$(health_stat "$s" probes_failed)
            run_dnsperf "$s" "$client_cpus" one "$round" "$p"
            s1=$(health_stat "$s" probes_sent) f1=$(health_stat "$s" probes_failed)
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$round" $((${s1:-0} - ${s0:-0})) \
                $((${f1:-0} - ${f0:-0})) "$seconds" "$idle" >>"$probes"
            [ "$s" = health ] && log "    health round $round: probes_sent +$((${s1:-0} - ${s0:-0})) probes_failed +$((${f1:-0} - ${f0:-0})) during the run (total $s1); pool_fail_open_events $(health_stat "$s" pool_fail_open_events)"
            [ "$round" = 1 ] && [ "$s" = health ] &&
                "$ballast" -s "$tmp/$s.sock" health 2>/dev/null | sed -n '1,2p' | sed 's/^/    /' >&2
            stop_pid "$p"
            unset 'pids[-1]'
        done
    done
    log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    awk -F'\t' 'FNR == 1 { next }
        FILENAME == ARGV[2] { ps[$1] += $3; pf[$1] += $4; psec[$1] += $5; idle[$1] += $6; next }
        {
            k = $1; n[k]++; qps[k] += $7; lat[k] += $8; cpq[k] += $9; upq[k] += $10
            kpq[k] += $11; cpu[k] += $12; lost[k] += $6
            if (!(k in qmin) || $7 < qmin[k]) qmin[k] = $7
            if (!(k in qmax) || $7 > qmax[k]) qmax[k] = $7
        }
        END {
            printf "\n%-8s %6s %9s %15s %10s %10s %8s %8s %10s %6s %10s %8s\n", "config", "rounds",
                "qps mean", "qps min-max", "latency", "cpu/query", "user", "sys", "server cpu",
                "lost", "probes/s", "idle cpu"
            split("plain health pools", order, " ")
            for (i = 1; i <= 3; i++) {
                k = order[i]
                if (!(k in n)) continue
                printf "%-8s %6d %9.0f %7.0f-%-7.0f %7.0f us %7.2f us %5.2f us %5.2f us %9.1f%% %6d %10.0f %7.1f%%\n",
                    k, n[k], qps[k] / n[k], qmin[k], qmax[k], lat[k] / n[k], cpq[k] / n[k],
                    upq[k] / n[k], kpq[k] / n[k], cpu[k] / n[k], lost[k],
                    (psec[k] > 0 ? ps[k] / psec[k] : 0), idle[k] / n[k]
            }
            for (i = 2; i <= 3; i++) {
                k = order[i]
                if (n["plain"] > 0 && n[k] > 0 && qps["plain"] > 0 && cpq["plain"] > 0)
                    printf "%s%-6s / plain: qps %.3f  cpu/query %.3f\n", i == 2 ? "\n" : "", k,
                        (qps[k] / n[k]) / (qps["plain"] / n["plain"]),
                        (cpq[k] / n[k]) / (cpq["plain"] / n["plain"])
            }
            print "goal (issue 4): health / plain qps >= 0.90"
        }' "$results" "$probes" | tee "$out/summary.txt"
    echo
    echo "raw figures: $results, $probes; dnsperf outputs and summary in $out"
    exit 0
fi

for mode in $modes; do
    if [ "$mode" = one ]; then
        workers=1
        server_cpus=1
        client_cpus=0
        threads=${BENCH_THREADS:-1}
        clients=${BENCH_CLIENTS:-4}
        outstanding=${BENCH_OUTSTANDING:-128}
        [ "$ncpu" -ge 2 ] || { server_cpus=""; client_cpus=""; }
    else
        workers=$ncpu
        server_cpus=""
        client_cpus=""
        threads=${BENCH_THREADS:-$ncpu}
        clients=${BENCH_CLIENTS:-$((2 * ncpu))}
        outstanding=${BENCH_OUTSTANDING:-$((64 * ncpu))}
    fi
    log "mode $mode: $workers worker(s) per server, server CPUs ${server_cpus:-any}, dnsperf CPUs ${client_cpus:-any} -T $threads -c $clients -q $outstanding"
    declare -A spid=()
    for s in "${active[@]}"; do
        start_server "$s" "$workers" "$server_cpus" || { log "cannot start $s"; continue; }
        p=$started_pid
        pids+=("$p")
        if wait_ready "$s" "$p"; then
            spid[$s]=$p
            log "$s ready (pid $p)"
            sanity "$s" >&2
        else
            log "skip $s in mode $mode"
        fi
    done
    for round in $(seq 1 "$rounds"); do
        for s in "${active[@]}"; do
            [ -n "${spid[$s]:-}" ] || continue
            run_dnsperf "$s" "$client_cpus" "$mode" "$round" "${spid[$s]}"
        done
    done
    for s in "${active[@]}"; do [ -n "${spid[$s]:-}" ] && stop_pid "${spid[$s]}"; done
    pids=()
    unset spid
done

# --- report ------------------------------------------------------------------------------------

log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# Per server and mode: mean over rounds (QPS also min-max). Ratios are ballast / peer for QPS and
# peer / ballast for CPU per query, so > 1 always means ballast did better.
awk -F'\t' -v ncpu="$ncpu" '
    NR == 1 { next }
    {
        k = $1 SUBSEP $2
        if (!(k in n)) order[++norder] = k
        n[k]++; qps[k] += $7; lat[k] += $8; cpq[k] += $9; upq[k] += $10; kpq[k] += $11
        cpu[k] += $12; lost[k] += $6
        if (!(k in qmin) || $7 < qmin[k]) qmin[k] = $7
        if (!(k in qmax) || $7 > qmax[k]) qmax[k] = $7
    }
    END {
        printf "\n%-8s %-10s %6s %9s %15s %10s %10s %8s %8s %10s %6s\n", "server", "workers",
            "rounds", "qps mean", "qps min-max", "latency", "cpu/query", "user", "sys",
            "server cpu", "lost"
        for (i = 1; i <= norder; i++) {
            split(order[i], p, SUBSEP); k = order[i]
            w = p[2] == "one" ? "1 pinned" : ncpu " any"
            printf "%-8s %-10s %6d %9.0f %7.0f-%-7.0f %7.0f us %7.2f us %5.2f us %5.2f us %9.1f%% %6d\n",
                p[1], w, n[k], qps[k] / n[k], qmin[k], qmax[k], lat[k] / n[k], cpq[k] / n[k],
                upq[k] / n[k], kpq[k] / n[k], cpu[k] / n[k], lost[k]
        }
        printf "\nballast ratio to each peer (> 1 means ballast better):\n"
        printf "%-8s %-10s %10s %14s %14s %14s\n", "peer", "workers", "qps", "cpu/query",
            "user/query", "sys/query"
        for (i = 1; i <= norder; i++) {
            split(order[i], p, SUBSEP); k = order[i]; b = "ballast" SUBSEP p[2]
            if (p[1] == "ballast" || !(b in n)) continue
            w = p[2] == "one" ? "1 pinned" : ncpu " any"
            rq = rc = ru = rk = 0
            if (qps[k] > 0) rq = (qps[b] / n[b]) / (qps[k] / n[k])
            if (cpq[b] > 0) rc = cpq[k] / cpq[b] * n[b] / n[k]
            if (upq[b] > 0) ru = upq[k] / upq[b] * n[b] / n[k]
            if (kpq[b] > 0) rk = kpq[k] / kpq[b] * n[b] / n[k]
            printf "%-8s %-10s %10.2f %14.2f %14.2f %14.2f\n", p[1], w, rq, rc, ru, rk
        }
    }' "$results" | tee "$out/summary.txt"
echo
echo "raw figures: $results; dnsperf outputs and summary in $out"
