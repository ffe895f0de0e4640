/* The catalog: loads every configured zone into a new zone set, falling back to the last good
 * version of each zone that fails (file, line and reason are reported). */
#include "catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "wire.h"

static const struct zone *catalog_previous_zone(const struct zone_set *previous, const char *name)
{
    uint8_t apex[WIRE_NAME_MAX];
    size_t apex_len = 0;
    if (!previous || wire_name_from_text(name, apex, &apex_len) != 0)
        return NULL;
    wire_name_lower(apex, apex, apex_len);
    return zone_set_find_exact(previous, apex, apex_len);
}

static int catalog_add_failure(struct catalog_report *report, const char *name,
                               const struct zone_error *error, bool kept_previous)
{
    struct catalog_failure *grown =
        realloc(report->failures, (report->failure_count + 1) * sizeof *grown);
    if (!grown)
        return BALLAST_ENOMEM;
    report->failures = grown;
    struct catalog_failure *failure = &grown[report->failure_count++];
    snprintf(failure->zone, sizeof failure->zone, "%s", name);
    failure->error = *error;
    failure->kept_previous = kept_previous;
    return BALLAST_OK;
}

static void catalog_free_fresh(struct zone **zones, const bool *fresh, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (fresh[i])
            zone_free(zones[i]);
}

int catalog_load(const struct authd_config *cfg, const struct zone_set *previous,
                 struct zone_set **out, struct catalog_report *report)
{
    memset(report, 0, sizeof *report);
    *out = NULL;
    struct zone **zones = calloc(cfg->zone_count ? cfg->zone_count : 1, sizeof *zones);
    bool *fresh = calloc(cfg->zone_count ? cfg->zone_count : 1, sizeof *fresh);
    if (!zones || !fresh) {
        free(zones);
        free(fresh);
        return BALLAST_ENOMEM;
    }
    size_t count = 0;
    int rc = BALLAST_OK;
    for (size_t i = 0; i < cfg->zone_count && rc == BALLAST_OK; i++) {
        const struct authd_zone_config *zc = &cfg->zones[i];
        struct zone *zone = NULL;
        struct zone_error error;
        memset(&error, 0, sizeof error);
        if (zone_load(zc->name, zc->file, &cfg->limits, &zone, &error) == 0) {
            fresh[count] = true;
            zones[count++] = zone;
            report->loaded++;
            continue;
        }
        const struct zone *last_good = catalog_previous_zone(previous, zc->name);
        rc = catalog_add_failure(report, zc->name, &error, last_good != NULL);
        if (last_good) /* shared with previous until catalog_release_previous() */
            zones[count++] = (struct zone *)last_good;
    }
    if (rc == BALLAST_OK && count == 0)
        rc = BALLAST_ENOTFOUND;
    if (rc == BALLAST_OK) {
        rc = zone_set_create(zones, count, out);
        if (rc != BALLAST_OK)
            *out = NULL;
    }
    if (rc != BALLAST_OK)
        catalog_free_fresh(zones, fresh, count);
    free(zones);
    free(fresh);
    return rc;
}

void catalog_report_free(struct catalog_report *report)
{
    free(report->failures);
    memset(report, 0, sizeof *report);
}

void catalog_release_previous(const struct zone_set *next, struct zone_set *previous)
{
    if (!previous)
        return;
    for (size_t i = 0; i < previous->count; i++) {
        bool shared = false;
        for (size_t j = 0; next && j < next->count && !shared; j++)
            shared = next->zones[j] == previous->zones[i];
        if (!shared)
            zone_free(previous->zones[i]);
    }
    zone_set_free_shallow(previous);
}

const char *catalog_failure_text(const struct catalog_failure *failure, char *buf, size_t len)
{
    if (failure->error.line > 0)
        snprintf(buf, len, "%s:%u: %s", failure->error.file, failure->error.line,
                 failure->error.reason);
    else
        snprintf(buf, len, "%s: %s", failure->error.file, failure->error.reason);
    return buf;
}

int catalog_check(const struct authd_config *cfg, FILE *err, size_t *zones_out, size_t *records_out)
{
    struct zone_set *zones = NULL;
    struct catalog_report report;
    char text[1200];
    int rc = catalog_load(cfg, NULL, &zones, &report);
    for (size_t i = 0; i < report.failure_count; i++)
        fprintf(err, "%s\n", catalog_failure_text(&report.failures[i], text, sizeof text));
    if (rc == BALLAST_ENOTFOUND)
        fprintf(err, "error: no zone could be loaded\n");
    else if (rc != 0)
        fprintf(err, "error: %s\n", ballast_strerror(rc));
    size_t records = 0;
    for (size_t i = 0; zones && i < zones->count; i++)
        records += zones->zones[i]->record_count;
    if (zones_out)
        *zones_out = zones ? zones->count : 0;
    if (records_out)
        *records_out = records;
    if (rc == 0 && report.failure_count > 0)
        rc = BALLAST_EPARSE;
    catalog_report_free(&report);
    if (zones)
        zone_set_free(zones);
    return rc;
}
