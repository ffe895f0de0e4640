/* libFuzzer harness: any bytes as a query to answer_query() over the example zones. Build with
 * `CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined` and run
 * `build-fuzz/tests/fuzz_answer -max_total_time=60` from the source root. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "answer.h"

static struct zone_set *fuzz_zones;
static struct limits fuzz_limits;

static void fuzz_load_zones(void)
{
    static const char *const zones[][2] = {
        {"example.test", "tests/unit/data/answer/example.test.zone"},
        {"deep.example.test", "tests/unit/data/answer/deep.example.test.zone"},
    };
    struct zone *loaded[2];
    struct zone_error err;
    limits_init_defaults(&fuzz_limits);
    for (size_t i = 0; i < 2; i++)
        if (zone_load(zones[i][0], zones[i][1], &fuzz_limits, &loaded[i], &err) != 0)
            abort();
    if (zone_set_create(loaded, 2, &fuzz_zones) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t response[65535];
    struct answer_info info;
    if (!fuzz_zones)
        fuzz_load_zones();
    size_t n = answer_query(fuzz_zones, &fuzz_limits, data, size, response, sizeof response,
                            size % 2 == 0, &info);
    if (n != 0 && n < 12)
        abort();
    return 0;
}
