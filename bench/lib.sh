# bench/lib.sh: shell helpers shared by the benchmarks (auth-qps.sh, resolver-qps.sh): logging,
# process trees, CPU time and resident memory from /proc, stopping a process by PID.
# Sourced, not run: `. "$here/lib.sh"` (bash).

# The daemons refuse to run as root without server.user (issue #7). Benchmarks start throwaway
# daemons on loopback (directly and through tests/system/hierarchy.py), as whoever runs them.
[ "$(id -u)" -ne 0 ] || export BALLAST_ALLOW_ROOT=1

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# All descendants of a PID (NSD forks its serving processes and xfrd).
descendants() {
    local p c
    for p in "$@"; do
        for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
            echo "$c"
            descendants "$c"
        done
    done
}

# "UTIME STIME" (clock ticks) of a process and all its descendants; threads are included in the
# process line of /proc/PID/stat. Field 2 (comm) may hold spaces: cut after the last ')'.
cpu_ticks() {
    local u=0 k=0 p rest
    for p in "$1" $(descendants "$1"); do
        rest=$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null) || continue
        [ -n "$rest" ] || continue
        set -- $rest
        # after ')': field 3 is $1, so utime (14) is ${12} and stime (15) is ${13}
        u=$((u + ${12}))
        k=$((k + ${13}))
    done
    echo "$u $k"
}

# "VMRSS RSSANON RSSFILE RSSSHMEM" in kB of a process and all its descendants, from
# /proc/PID/status (VmRSS is the sum of the other three). RssFile and RssShmem count resident
# pages of mapped files: Knot Resolver's LMDB cache is one (RssShmem when it is on tmpfs).
rss_kb() {
    local p r=0 a=0 f=0 s=0 v
    for p in "$1" $(descendants "$1"); do
        v=$(awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
            /^RssShmem:/ { s = $2 } END { print r + 0, a + 0, f + 0, s + 0 }' \
            /proc/"$p"/status 2>/dev/null) || continue
        set -- $v
        r=$((r + ${1:-0}))
        a=$((a + ${2:-0}))
        f=$((f + ${3:-0}))
        s=$((s + ${4:-0}))
    done
    echo "$r $a $f $s"
}

# Stops a process started by the calling script (TERM, then KILL after 5 s) and any descendants
# still there afterwards.
stop_pid() {
    local p=$1 kids k
    kids=$(descendants "$p")
    kill -TERM "$p" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    for k in $kids; do kill -KILL "$k" 2>/dev/null; done
    return 0
}
