#!/bin/sh
# Run the libFuzzer harnesses (tests/fuzz/, docs/fuzzing.md): build build-fuzz (clang, -Dfuzz=true,
# ASan+UBSan) when missing, then run each harness named (default: all) for --time seconds on a
# scratch copy of its seed corpus. Exit 1 when any harness crashes, naming the reproducer.
#
#   tools/fuzz.sh [--time N] [--merge] [--build DIR] [HARNESS...]
#
# --merge folds the new inputs that add coverage back into tests/fuzz/corpus/HARNESS (minimised
# with -merge=1); without it the committed corpus is never touched.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=60
merge=0
build="build-fuzz"
all="fuzz_query fuzz_answer fuzz_response fuzz_zone fuzz_config fuzz_feed fuzz_snapshot fuzz_scenario"
usage() {
    echo "usage: tools/fuzz.sh [--time N] [--merge] [--build DIR] [HARNESS...]" >&2
    echo "harnesses: $all" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
    --time)
        [ $# -ge 2 ] || usage
        seconds=$2
        shift 2
        ;;
    --time=*)
        seconds=${1#--time=}
        shift
        ;;
    --merge)
        merge=1
        shift
        ;;
    --build)
        [ $# -ge 2 ] || usage
        build=$2
        shift 2
        ;;
    -h | --help) usage ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
    esac
done
case "$seconds" in '' | *[!0-9]*) usage ;; esac
harnesses=${*:-$all}
for h in $harnesses; do
    case " $all " in *" $h "*) ;; *) echo "unknown harness: $h" >&2; usage ;; esac
done

command -v clang >/dev/null 2>&1 || { echo "clang is needed (tools/install-deps.sh)" >&2; exit 1; }
if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbuildtype=debugoptimized
fi
# shellcheck disable=SC2086
targets=$(for h in $harnesses; do printf 'tests/%s ' "$h"; done)
# shellcheck disable=SC2086
ninja -C "$build" $targets

# UBSan findings must stop the run like ASan's (libFuzzer then saves the input).
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ballast-fuzz-run.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
trap 'exit 130' INT TERM
export TMPDIR="$scratch" # the harnesses' own scratch files go here too

failed=""
for h in $harnesses; do
    corpus="$scratch/$h-corpus"
    artifacts="$scratch/$h-artifacts"
    mkdir -p "$corpus" "$artifacts"
    seeds="tests/fuzz/corpus/$h"
    if [ -d "$seeds" ]; then
        cp "$seeds"/* "$corpus"/
    fi
    log="$scratch/$h.log"
    echo "== $h: ${seconds}s"
    set +e
    # Harnesses read data relative to the source root (fuzz_answer's zones).
    "$build/tests/$h" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1
    rc=$?
    set -e
    grep -E '^#[0-9]+.*(DONE|INITED)' "$log" | tail -2 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
    found=$(ls "$artifacts" 2>/dev/null || true)
    if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
        keep="$root/$build/fuzz-crashes/$h"
        mkdir -p "$keep"
        for f in $found; do cp "$artifacts/$f" "$keep/"; done
        cp "$log" "$keep/$h.log"
        echo "FAIL $h (exit $rc): log $keep/$h.log" >&2
        grep -E 'ERROR: |SUMMARY: |runtime error|check failed' "$log" | head -5 >&2 || true
        for f in $found; do
            echo "  reproducer: $keep/$f  (run: $build/tests/$h $keep/$f)" >&2
        done
        failed="$failed $h"
        continue
    fi
    if [ "$merge" -eq 1 ]; then
        mkdir -p "$seeds"
        "$build/tests/$h" -merge=1 -rss_limit_mb=2048 -timeout=10 "$seeds" "$corpus" \
            >"$scratch/$h.merge.log" 2>&1 || {
            echo "merge of $h failed:" >&2
            tail -20 "$scratch/$h.merge.log" >&2
            failed="$failed $h"
        }
        echo "merged into $seeds: $(find "$seeds" -type f | wc -l) files"
    fi
done

if [ -n "$failed" ]; then
    echo "fuzzing failed:$failed" >&2
    exit 1
fi
echo "fuzzing passed: $harnesses (${seconds}s each)"
