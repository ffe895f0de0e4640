#!/bin/bash
# bench/resolver-qps.sh: cache-hit UDP throughput and memory of ballast-resolver against Unbound
# and Knot Resolver (kresd), one thread each, on the loopback test hierarchy. See bench/README.md.
#
# Usage: bench/resolver-qps.sh [--quick] [--profile SERVER] [--out DIR]
#   --quick: 1,000 names, 2 rounds of 3 s (about 30 s), a smoke test
#   --profile SERVER: measure only SERVER (one round) under `perf record`, print its hottest
#   functions; figures from a profiled run are not comparable.
# Environment: BENCH_SECONDS (15) BENCH_ROUNDS (3) BENCH_NAMES (5000) BENCH_NET (127.0.7)
#   BENCH_BUILD (build-bench) BENCH_RESOLVER BENCH_AUTHD (binaries) BENCH_SERVERS
#   ("ballast unbound kresd") BENCH_CLIENTS BENCH_OUTSTANDING BENCH_THREADS (dnsperf -c/-q/-T)
#   BENCH_EDNS (1: send EDNS0) BENCH_WARM_QPS (2000: rate of the warming pass)
#   BENCH_MAX_QPS (dnsperf -Q: fixed offered rate) BENCH_PERF_RECORD (1; 0: perf stat only)
#   BENCH_PERF_CALLGRAPH (fp; dwarf: callers in a build without frame pointers, bigger data)
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# log, descendants, cpu_ticks, rss_kb, stop_pid
. "$here/lib.sh"

seconds=${BENCH_SECONDS:-15}
rounds=${BENCH_ROUNDS:-3}
names=${BENCH_NAMES:-5000}
net=${BENCH_NET:-127.0.7}
servers=${BENCH_SERVERS:-"ballast unbound kresd"}
edns=${BENCH_EDNS:-1}
warm_qps=${BENCH_WARM_QPS:-2000}
build=$root/${BENCH_BUILD:-build-bench}
resolver=${BENCH_RESOLVER:-$build/resolver/ballast-resolver}
authd=${BENCH_AUTHD:-$build/authd/ballast-authd}
tool=$build/tools/ballast
# Unbound sends to port 53 for every address learnt from hints and referrals, so the hierarchy
# runs on port 53; the resolvers listen on port 53 of their own addresses.
port=53
out=""
profile=""

while [ $# -gt 0 ]; do
    case $1 in
    --quick)
        seconds=${BENCH_SECONDS:-3}
        rounds=${BENCH_ROUNDS:-2}
        names=${BENCH_NAMES:-1000}
        ;;
    --profile)
        profile=$2
        servers=$2
        rounds=1
        shift
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
        echo "resolver-qps: unknown argument: $1" >&2
        exit 2
        ;;
    esac
    shift
done

case $net in
127.*.*) ;;
*)
    echo "resolver-qps: BENCH_NET must be inside 127.0.0.0/8 (three octets), not $net" >&2
    exit 2
    ;;
esac

# The hierarchy uses .101-.108 and .100 (tests/system/hierarchy.py); the resolvers .110-.112.
declare -A addr=([ballast]=$net.110 [unbound]=$net.111 [kresd]=$net.112)
ncpu=$(nproc)
tck=$(getconf CLK_TCK)
tmp=$(mktemp -d /tmp/ballast-rbench.XXXXXX)
shm=""
[ -n "$out" ] || out=$tmp
mkdir -p "$out"
results=$out/results.tsv
memory=$out/memory.tsv
pids=()  # every process this script started, killed by PID on exit
hpid=""  # the hierarchy (tests/system/hierarchy.py), stopped last

cleanup() {
    local p
    for p in "${pids[@]}"; do stop_pid "$p"; done
    pids=()
    [ -n "$hpid" ] && stop_pid "$hpid"
    hpid=""
    [ -n "$shm" ] && rm -rf "$shm"
    [ "$out" = "$tmp" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

have_server() {
    case $1 in
    ballast) [ -x "$resolver" ] || { log "skip ballast: $resolver not built"; return 1; } ;;
    unbound) command -v unbound >/dev/null || { log "skip unbound: unbound is not installed"; return 1; } ;;
    kresd) command -v kresd >/dev/null || { log "skip kresd: kresd (knot-resolver) is not installed"; return 1; } ;;
    *) log "skip $1: unknown server (ballast, unbound, kresd)"; return 1 ;;
    esac
}

# Query file: NAMES generated lines, deterministic. Wildcard-synthesised names under
# *.wild.example.test (RFC 4592; every one resolves, each is its own cache entry): 90 % A, 5 %
# TXT; 5 % NXDOMAIN names in example.test; and after every 50th line one of the fixed cases of
# tests/system/hierarchy.py (CNAMEs across zones, a delegated subzone, an out-of-bailiwick NS, a
# TCP-only server, NODATA, NXDOMAIN), so about 2 % of the queries. The lame and silent servers'
# names (SERVFAIL, not cached alike) are left out.
gen_queries() {
    awk -v names="$names" 'BEGIN {
        n = split("www.example.test A|www.example.test AAAA|example.test MX|example.test TXT|" \
            "txt.example.test TXT|to-other.example.test A|chain.example.test A|" \
            "to-sub.example.test A|www.sub.example.test A|www.sub.example.test AAAA|" \
            "host.sub.example.test TXT|www.other.test A|www.oob.test A|www.tcponly.test A|" \
            "txt.tcponly.test TXT|nope.example.test A|nope.sub.example.test A|nope.test A|" \
            "www.example.test MX", fixed, "|")
        f = 0
        for (i = 1; i <= names; i++) {
            if (i % 20 == 0) printf "nx%d.example.test A\n", i
            else if (i % 20 == 10) printf "w%d.wild.example.test TXT\n", i
            else printf "w%d.wild.example.test A\n", i
            if (i % 50 == 0) print fixed[(f++ % n) + 1]
        }
        if (f < n) for (; f < n; f++) print fixed[f + 1]
    }'
}

# start_hierarchy: root, TLD and leaf zones on $net.101-108 port 53 (ballast-authd and two small
# Python servers), until SIGTERM. Sets hpid and hints.
start_hierarchy() {
    local hout=$tmp/hierarchy.out
    /usr/bin/python3 "$root/tests/system/hierarchy.py" --port "$port" --net "$net" \
        --dir "$tmp/hierarchy" --authd "$authd" >"$hout" 2>"$tmp/hierarchy.log" &
    hpid=$!
    for _ in $(seq 1 300); do
        if grep -q '^event=ready' "$hout" 2>/dev/null; then
            hints=$(sed -n 's/^root_hints=//p' "$hout")
            return 0
        fi
        if ! kill -0 "$hpid" 2>/dev/null; then
            log "the hierarchy exited during startup:"
            tail -n 20 "$tmp/hierarchy.log" >&2
            return 1
        fi
        sleep 0.1
    done
    log "the hierarchy did not start within 30 s"
    return 1
}

# start_server NAME CPUSET: starts the resolver in the background (this shell's child), one
# worker thread, and sets started_pid. CPUSET empty = unpinned.
start_server() {
    local server=$1 cpus=$2 pin=() dir=$tmp/$1
    [ -n "$cpus" ] && pin=(taskset -c "$cpus")
    mkdir -p "$dir"
    case $server in
    ballast)
        local ctl=()
        [ -x "$tool" ] && ctl=(--control "$dir/control.sock")
        "${pin[@]}" "$resolver" --listen "${addr[ballast]}@$port" --root-hints "$hints" \
            --allow-private-upstreams --upstream-port "$port" --workers 1 --log-level warn \
            "${ctl[@]}" >"$tmp/$server.log" 2>&1 &
        ;;
    unbound)
        # tests/system/hierarchy.py unbound_config() and /work/shared/PEERS.md; otherwise
        # Unbound's defaults, except the cache sizes: 32 MB + 32 MB like ballast's 64 MB (the
        # defaults, 4 MB + 4 MB, evict with BENCH_NAMES=50000). Unbound allocates cache memory
        # as entries arrive, so the limits do not change its resident memory.
        cat >"$dir/unbound.conf" <<EOF
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
    directory: "$dir"
    pidfile: "$dir/unbound.pid"
    logfile: ""
    use-syslog: no
    verbosity: 0
    root-hints: "$hints"
    do-not-query-localhost: no
    module-config: "iterator"
    qname-minimisation: yes
    local-zone: "test." nodefault
    access-control: 127.0.0.0/8 allow
    msg-cache-size: 32m
    rrset-cache-size: 32m
remote-control:
    control-enable: no
EOF
        unbound-checkconf "$dir/unbound.conf" >/dev/null || return 1
        "${pin[@]}" unbound -d -c "$dir/unbound.conf" >"$tmp/$server.log" 2>&1 &
        ;;
    kresd)
        # /work/shared/PEERS.md: Knot Resolver 5.6 ignores 127.0.0.0/8 name servers without
        # ALLOW_LOCAL, refuses test. (policy.special_names[2]) and wants a signed root.
        # ALLOW_LOCAL is set as a global query flag with option(): the equivalent rule
        # policy.add(policy.all(policy.FLAGS({'ALLOW_LOCAL'}))) runs a Lua callback for every
        # query and cost about 3.3 us (40 %) per cache hit here, which a resolver on the public
        # Internet would not pay. The cache is an LMDB file; its documentation recommends
        # tmpfs, so /dev/shm when there.
        local cachedir=$dir/cache
        if [ -d /dev/shm ] && [ -w /dev/shm ]; then
            shm=$(mktemp -d /dev/shm/ballast-rbench.XXXXXX)
            cachedir=$shm
        fi
        local root_ns root_addr
        read -r root_ns root_addr < <(awk '$3 == "A" { print tolower($1), $4; exit }' "$hints")
        cat >"$dir/config" <<EOF
log_target('stderr')
log_level('warning')
net.listen('${addr[kresd]}', $port, { kind = 'dns' })
cache.open(100 * MB, 'lmdb://$cachedir')
modules.load('hints > iterate')
hints.root({ ['$root_ns'] = '$root_addr' })
trust_anchors.remove('.')
table.remove(policy.special_names, 2)
option('ALLOW_LOCAL', true)
EOF
        (cd "$dir" && exec "${pin[@]}" kresd -n -c config "$dir") >"$tmp/$server.log" 2>&1 &
        ;;
    esac
    started_pid=$!
}

# Ready when it resolves www.example.test (the first iteration, through the hierarchy).
wait_ready() {
    local server=$1 pid=$2
    for _ in $(seq 1 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$server exited during startup; its log:"
            tail -n 20 "$tmp/$server.log" >&2
            return 1
        fi
        if kdig @"${addr[$server]}" -p "$port" www.example.test A +time=1 +retry=0 +short \
            2>/dev/null | grep -q '^192\.0\.2\.10$'; then
            return 0
        fi
        sleep 0.2
    done
    log "$server did not answer www.example.test within 30 s; its log:"
    tail -n 20 "$tmp/$server.log" >&2
    return 1
}

# One query of several kinds (after warming: from the cache): rcode, flags and section counts,
# so a server that sends different answers (and so does different work) shows.
sanity() {
    local server=$1 q
    for q in "w1.wild.example.test A" "w10.wild.example.test TXT" "nx20.example.test A" \
        "chain.example.test A" "www.example.test MX"; do
        set -- $q
        kdig @"${addr[$server]}" -p "$port" "$1" "$2" +time=1 +retry=0 +edns=0 2>/dev/null |
            awk -v q="$q" '/status:/ {st = $6; sub(/;/, "", st)} /^;; Flags:/ {
                    sub(/;; Flags: /, ""); gsub(/;/, ""); fl = $0 }
                END { printf "    %-26s %s %s\n", q, st, fl }'
    done
}

# pass SERVER QPS FILE: one pass over the query list (dnsperf -n 1) at QPS queries per second.
pass() {
    local server=$1 qps=$2 f=$3 dp
    timeout 120 dnsperf -s "${addr[$server]}" -p "$port" -d "$queries" -n 1 -Q "$qps" -c 1 \
        -T 1 -t 5 ${edns_opt[@]+"${edns_opt[@]}"} >"$f" 2>&1 &
    dp=$!
    pids+=("$dp")
    wait "$dp"
    unset 'pids[-1]'
    awk '/Queries sent:/ { s = $3 } /Queries completed:/ { c = $3 } /Queries lost:/ { l = $3 }
        /Response codes:/ { sub(/.*Response codes: /, ""); r = $0 }
        END { printf "sent %d completed %d lost %d; %s", s, c, l, r }' "$f"
}

# warm SERVER PID: fills the cache with every name of the query list (at BENCH_WARM_QPS, so the
# hierarchy keeps up), checks a second pass is answered from the cache (no CPU time in the
# hierarchy), records resident memory before and after.
warm() {
    local server=$1 pid=$2 r0 r1 h0 h1 summary
    r0=$(rss_kb "$pid")
    # Not in $(...): pass must run in this shell, so that its dnsperf is in pids.
    pass "$server" "$warm_qps" "$out/warm-$server.txt" >"$tmp/pass.txt"
    log "$server warming pass: $(cat "$tmp/pass.txt")"
    h0=$(cpu_ticks "$hpid")
    pass "$server" 20000 "$out/check-$server.txt" >"$tmp/pass.txt"
    h1=$(cpu_ticks "$hpid")
    summary=$(cat "$tmp/pass.txt")
    set -- $h0 $h1
    log "$server second pass: $summary; hierarchy CPU $((($3 + $4 - $1 - $2) * 1000 / tck)) ms"
    case $summary in *SERVFAIL*) log "warning: $server answered SERVFAIL after warming" ;; esac
    r1=$(rss_kb "$pid")
    printf '%s\t%s\t%s\t%d\n' "$server" "$r0" "$r1" "$entries" | tr ' ' '\t' >>"$memory"
    set -- $r0 $r1
    log "$server resident memory: ${1} kB at start, ${5} kB after warming (anon ${6}, file ${7}, shmem ${8})"
}

# run_dnsperf SERVER CPUSET ROUND PID: one timed dnsperf run; appends a line to results.tsv.
run_dnsperf() {
    local server=$1 cpus=$2 round=$3 pid=$4 pin=() t0 t1 h0 h1 dp rc f eopt=()
    [ -n "$cpus" ] && pin=(taskset -c "$cpus")
    eopt=(${edns_opt[@]+"${edns_opt[@]}"})
    [ -n "${BENCH_MAX_QPS:-}" ] && eopt+=(-Q "$BENCH_MAX_QPS")
    f=$out/dnsperf-$server-$round.txt
    # Refresh: anything that expired since warming (negative TTL 300 s) is fetched again now,
    # not during the timed run.
    pass "$server" 20000 "$out/refresh-$server-$round.txt" >/dev/null
    local perf_pid="" stat_pid="" pdata=$out/perf-$server
    if [ -n "$profile" ]; then
        # cpu-clock: this VM has no hardware counters. A release build has no frame pointers,
        # so the call graphs are shallow; self time per function is what the report shows.
        if [ "${BENCH_PERF_RECORD:-1}" = 1 ]; then
            "${pin[@]}" perf record -q --call-graph "${BENCH_PERF_CALLGRAPH:-fp}" -e cpu-clock \
                -F 2999 -p "$pid" -o "$pdata.data" >"$pdata.log" 2>&1 &
        else
            sleep 3600 &
        fi
        perf_pid=$!
        pids+=("$perf_pid")
        "${pin[@]}" perf stat -x, -e raw_syscalls:sys_enter,context-switches,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_recvmsg,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_madvise,syscalls:sys_enter_mprotect,page-faults \
            -p "$pid" -o "$pdata-stat.csv" >/dev/null 2>&1 &
        stat_pid=$!
        pids+=("$stat_pid")
        sleep 0.5
    fi
    t0=$(cpu_ticks "$pid")
    h0=$(cpu_ticks "$hpid")
    "${pin[@]}" timeout $((seconds + 20)) dnsperf -s "${addr[$server]}" -p "$port" -d "$queries" \
        -l "$seconds" -c "$clients" -q "$outstanding" -T "$threads" \
        ${eopt[@]+"${eopt[@]}"} >"$f" 2>&1 &
    dp=$!
    pids+=("$dp")
    wait "$dp"
    rc=$?
    unset 'pids[-1]'
    t1=$(cpu_ticks "$pid")
    h1=$(cpu_ticks "$hpid")
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid" "$stat_pid"
        [ "${BENCH_PERF_RECORD:-1}" = 1 ] || kill -TERM "$perf_pid"
        wait "$perf_pid" "$stat_pid"
        unset 'pids[-1]' 'pids[-1]'
        {
            if [ -s "$pdata.data" ]; then
                perf report -i "$pdata.data" --no-children -g none --sort dso,sym --stdio \
                    2>/dev/null | grep -v '^#' | grep '%' | head -n 50 >"$pdata.txt"
                perf report -i "$pdata.data" --no-children -g none --sort dso --stdio \
                    2>/dev/null | grep -v '^#' | grep '%' >"$pdata-dso.txt"
                echo "perf profile of $server, share of its CPU time by shared object:"
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
    set -- $t0 $t1 $h0 $h1
    awk -v s="$server" -v r="$round" -v uticks=$(($3 - $1)) -v sticks=$(($4 - $2)) \
        -v hticks=$(($7 + $8 - $5 - $6)) -v tck="$tck" -v secs="$seconds" '
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
            printf "%s\t%s\t%d\t%d\t%d\t%.0f\t%.1f\t%.3f\t%.3f\t%.3f\t%.1f\t%.0f\t%s\n", s, r,
                sent, done, lost, qps, lat * 1e6, upq + kpq, upq, kpq, (u + k) / secs * 100,
                hticks / tck * 1000, codes
        }' "$f" | tee -a "$results" | awk -F'\t' '{
            printf "    %-8s round %s: %7d qps  latency %6.1f us  cpu/query %5.2f us (user %4.2f sys %4.2f)  server cpu %5.1f%%  lost %d  hierarchy cpu %d ms\n",
                $1, $2, $6, $7, $8, $9, $10, $11, $5, $12 }' >&2
}

# --- prepare -----------------------------------------------------------------------------------

command -v dnsperf >/dev/null || { echo "resolver-qps: dnsperf is not installed" >&2; exit 1; }
command -v kdig >/dev/null || { echo "resolver-qps: kdig (knot-dnsutils) is not installed" >&2; exit 1; }
[ -x "$authd" ] || { echo "resolver-qps: $authd not built (the hierarchy needs it)" >&2; exit 1; }
/usr/bin/python3 -c 'import dns.message' 2>/dev/null ||
    { echo "resolver-qps: /usr/bin/python3 lacks dnspython (python3-dnspython)" >&2; exit 1; }
if [ -n "$profile" ] && ! perf --version >/dev/null 2>&1; then
    echo "resolver-qps: --profile needs perf (linux-perf)" >&2
    exit 1
fi

active=()
for s in $servers; do have_server "$s" && active+=("$s"); done
[ ${#active[@]} -gt 0 ] || { echo "resolver-qps: no server to measure" >&2; exit 1; }

for s in "${active[@]}"; do
    busy=$(ss -Hlunp "src ${addr[$s]}:$port" 2>/dev/null)
    if [ -n "$busy" ]; then
        echo "resolver-qps: ${addr[$s]}@$port is already in use; stop that process first:" >&2
        echo "$busy" >&2
        exit 1
    fi
done

queries=$tmp/queries.txt
gen_queries >"$queries"
entries=$(sort -u "$queries" | wc -l)
edns_opt=()
[ "$edns" = 1 ] && edns_opt=(-e)

# One pinned worker each: server on CPU 1, dnsperf on CPU 0 (as bench/auth-qps.sh mode `one`).
server_cpus=1
client_cpus=0
[ "$ncpu" -ge 2 ] || { server_cpus=""; client_cpus=""; }
threads=${BENCH_THREADS:-1}
clients=${BENCH_CLIENTS:-4}
outstanding=${BENCH_OUTSTANDING:-128}

printf 'server\tround\tsent\tcompleted\tlost\tqps\tlatency_us\tcpu_us_per_query\tuser_us_per_query\tsys_us_per_query\tserver_cpu_pct\thierarchy_cpu_ms\trcodes\n' >"$results"
printf 'server\trss_start_kb\tanon_start_kb\tfile_start_kb\tshmem_start_kb\trss_warm_kb\tanon_warm_kb\tfile_warm_kb\tshmem_warm_kb\tentries\n' >"$memory"

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
log "resolver-qps: ${active[*]}; $entries distinct names ($(wc -l <"$queries") query lines); $rounds round(s) of $seconds s; nproc=$ncpu; server CPUs ${server_cpus:-any}, dnsperf CPUs ${client_cpus:-any} -T $threads -c $clients -q $outstanding; out $out"

start_hierarchy || exit 1
log "hierarchy ready on $net.101-108 port $port (pid $hpid), hints $hints"

declare -A spid=()
for s in "${active[@]}"; do
    start_server "$s" "$server_cpus" || { log "cannot start $s"; continue; }
    p=$started_pid
    pids+=("$p")
    if wait_ready "$s" "$p"; then
        spid[$s]=$p
        log "$s ready on ${addr[$s]}@$port (pid $p)"
        warm "$s" "$p"
        sanity "$s" >&2
    else
        log "skip $s"
    fi
done

for round in $(seq 1 "$rounds"); do
    for s in "${active[@]}"; do
        [ -n "${spid[$s]:-}" ] || continue
        run_dnsperf "$s" "$client_cpus" "$round" "${spid[$s]}"
    done
done

for s in "${active[@]}"; do
    [ -n "${spid[$s]:-}" ] || continue
    set -- $(rss_kb "${spid[$s]}")
    log "$s resident memory after the runs: $1 kB"
done
if [ -n "${spid[ballast]:-}" ] && [ -x "$tool" ]; then
    log "ballast-resolver statistics (cache, upstream):"
    "$tool" -s "$tmp/ballast/control.sock" stats 2>&1 |
        grep -Ei 'cache|upstream|queries' | sed 's/^/    /' >&2
fi

# --- report ------------------------------------------------------------------------------------

log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# Mean over rounds (QPS also min-max), memory after warming. Ratios: QPS ballast/peer; CPU per
# query and memory peer/ballast; so > 1 always means ballast did better.
awk -F'\t' '
    FNR == 1 { next }
    FILENAME ~ /memory.tsv$/ {
        order[++norder] = $1; rss[$1] = $6; grow[$1] = $6 - $2; ent = $10; next
    }
    {
        k = $1
        n[k]++; qps[k] += $6; lat[k] += $7; cpq[k] += $8; upq[k] += $9; kpq[k] += $10
        cpu[k] += $11; lost[k] += $5; hc[k] += $12
        if (!(k in qmin) || $6 < qmin[k]) qmin[k] = $6
        if (!(k in qmax) || $6 > qmax[k]) qmax[k] = $6
    }
    END {
        printf "\ncache hits, one thread pinned; %d names cached\n", ent
        printf "%-8s %6s %9s %15s %10s %10s %8s %8s %10s %6s %9s %10s %10s\n", "server",
            "rounds", "qps mean", "qps min-max", "latency", "cpu/query", "user", "sys",
            "server cpu", "lost", "upstream", "rss warm", "rss growth"
        for (i = 1; i <= norder; i++) {
            k = order[i]
            if (n[k] > 0)
                printf "%-8s %6d %9.0f %7.0f-%-7.0f %7.0f us %7.2f us %5.2f us %5.2f us %9.1f%% %6d %6d ms",
                    k, n[k], qps[k] / n[k], qmin[k], qmax[k], lat[k] / n[k], cpq[k] / n[k],
                    upq[k] / n[k], kpq[k] / n[k], cpu[k] / n[k], lost[k], hc[k]
            else
                printf "%-8s %6d %9s %15s %10s %10s %8s %8s %10s %6s %9s", k, 0, "-", "-", "-",
                    "-", "-", "-", "-", "-", "-"
            printf " %7d kB %7d kB\n", rss[k], grow[k]
        }
        printf "\nballast ratio to each peer (> 1 means ballast better):\n"
        printf "%-8s %10s %12s %12s %12s\n", "peer", "qps", "cpu/query", "rss warm", "rss growth"
        b = "ballast"
        if (!(b in rss)) exit
        for (i = 1; i <= norder; i++) {
            k = order[i]
            if (k == b) continue
            rq = rc = rr = rg = 0
            if (n[k] > 0 && n[b] > 0 && qps[k] > 0) rq = (qps[b] / n[b]) / (qps[k] / n[k])
            if (n[k] > 0 && n[b] > 0 && cpq[b] > 0) rc = cpq[k] / cpq[b] * n[b] / n[k]
            if (rss[b] > 0) rr = rss[k] / rss[b]
            if (grow[b] > 0) rg = grow[k] / grow[b]
            printf "%-8s %10s %12s %12.2f %12.2f\n", k, rq ? sprintf("%.2f", rq) : "-",
                rc ? sprintf("%.2f", rc) : "-", rr, rg
        }
    }' "$memory" "$results" | tee "$out/summary.txt"
echo
echo "raw figures: $results, $memory; dnsperf outputs and summary in $out"
