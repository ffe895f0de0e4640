/* libFuzzer harness: any bytes as an outage scenario file (docs/scenarios.md) to scenario_load(),
 * through a scratch file (fuzz_util.h); a scenario that loads is checked against the promises of
 * tools/scenario.h (limits, sorted events, references resolved) and freed. Build: docs/fuzzing.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "fuzz_util.h"
#include "scenario.h"

static bool fuzz_has_authority(const struct scenario *s, const char *name)
{
    for (size_t i = 0; i < s->authority_count; i++)
        if (strcmp(s->authorities[i].name, name) == 0)
            return true;
    return strcmp(name, "root") == 0;
}

static void fuzz_check_scenario(const struct scenario *s)
{
    FUZZ_CHECK(s->name != NULL);
    FUZZ_CHECK(s->duration_ms > 0 && s->duration_ms <= SCENARIO_MAX_DURATION_MS);
    FUZZ_CHECK(s->zone_count <= SCENARIO_MAX_ZONES);
    FUZZ_CHECK(s->authority_count <= SCENARIO_MAX_AUTHORITIES);
    FUZZ_CHECK(s->endpoint_count <= SCENARIO_MAX_ENDPOINTS);
    FUZZ_CHECK(s->event_count <= SCENARIO_MAX_EVENTS);
    FUZZ_CHECK(s->load.name_count <= SCENARIO_MAX_NAMES);
    FUZZ_CHECK(s->load.rate <= SCENARIO_MAX_RATE);
    for (size_t i = 0; i < s->zone_count; i++) {
        FUZZ_CHECK(s->zones[i].record_count <= SCENARIO_MAX_RECORDS);
        FUZZ_CHECK(fuzz_has_authority(s, s->zones[i].authority));
    }
    for (size_t i = 0; i < s->event_count; i++) {
        FUZZ_CHECK(s->events[i].at_ms <= s->duration_ms);
        if (i > 0)
            FUZZ_CHECK(s->events[i - 1].at_ms <= s->events[i].at_ms);
        FUZZ_CHECK(scenario_action_name(s->events[i].action) != NULL);
    }
    for (size_t i = 0; i < s->load.name_count; i++) {
        const struct scenario_name *n = &s->load.names[i];
        FUZZ_CHECK(n->wire_len >= 1 && n->wire_len <= WIRE_NAME_MAX);
        FUZZ_CHECK(wire_name_length(n->wire, n->wire_len) == n->wire_len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file_write("scenario.yaml", data, size);
    struct scenario s;
    struct config_error err;
    memset(&err, 0, sizeof err);
    int rc = scenario_load(path, &s, &err);
    if (rc != 0) {
        FUZZ_CHECK(err.reason[0] != '\0');
        return 0;
    }
    fuzz_check_scenario(&s);
    scenario_free(&s);
    return 0;
}
