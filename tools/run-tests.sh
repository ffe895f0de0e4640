#!/bin/sh
# Install, build and run the whole test suite twice: a normal build with -Werror, then a build
# with AddressSanitizer and UndefinedBehaviorSanitizer; then every libFuzzer harness for a short
# fixed time under ASan+UBSan (docs/fuzzing.md).
set -eu
cd "$(dirname "$0")/.."
tools/install-deps.sh
# One style everywhere (.clang-format); list the files that differ and fail.
unformatted=""
for f in $(find common authd resolver tools tests -name '*.[ch]'); do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || unformatted="$unformatted $f"
done
if [ -n "$unformatted" ]; then
    echo "not formatted with clang-format:$unformatted" >&2
    exit 1
fi
for variant in release asan; do
    dir="build-test-$variant"
    opts="--werror -Dbuildtype=debugoptimized"
    [ "$variant" = asan ] && opts="$opts -Db_sanitize=address,undefined -Db_lundef=false"
    rm -rf "$dir"
    # shellcheck disable=SC2086
    meson setup "$dir" $opts
    ninja -C "$dir"
    # Timing-based health tests get slower probes in the sanitizer build (TLS under ASan).
    scale=1
    [ "$variant" = asan ] && scale=3
    BALLAST_TIMING_SCALE=$scale UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        ASAN_OPTIONS=detect_leaks=1 meson test -C "$dir" --print-errorlogs --num-processes 2
done
# Every libFuzzer harness for 20 s under ASan+UBSan; a crash fails the run and its reproducer is
# kept in build-test-fuzz/fuzz-crashes/<harness>/.
rm -rf build-test-fuzz
tools/fuzz.sh --build build-test-fuzz --time 20
echo "all tests passed (normal and ASan/UBSan builds, fuzzing)"
