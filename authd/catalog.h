/* The catalog: every zone a config names, loaded into one zone set. A zone that fails to load
 * keeps its last good version from the previous set, so a bad file never takes a zone down. */
#ifndef BALLAST_CATALOG_H
#define BALLAST_CATALOG_H

#include <stddef.h>
#include <stdio.h>

#include "authd_config.h"
#include "zone.h"

struct catalog_failure {
    char zone[256];          /* zone name as configured */
    struct zone_error error; /* file, line, reason */
    bool kept_previous;      /* the last good version keeps serving */
};

struct catalog_report {
    size_t loaded; /* zones read fresh from their files */
    size_t failure_count;
    struct catalog_failure *failures; /* owned by the report */
};

/* Load every zone of cfg with cfg->limits. previous (may be NULL) supplies last good versions;
 * it is not modified. *out is a new set that may share zones with previous: release previous
 * with catalog_release_previous() once *out has replaced it. Returns 0 even when some zones
 * failed (see report); BALLAST_ENOTFOUND when the set would be empty (nothing is returned);
 * BALLAST_ENOMEM. The report is owned by the caller (catalog_report_free). */
int catalog_load(const struct authd_config *cfg, const struct zone_set *previous,
                 struct zone_set **out, struct catalog_report *report);

void catalog_report_free(struct catalog_report *report);

/* Free previous and those of its zones that next does not share. next may be NULL. */
void catalog_release_previous(const struct zone_set *next, struct zone_set *previous);

/* Format one failure as "FILE:LINE: reason" (or "FILE: reason"). */
const char *catalog_failure_text(const struct catalog_failure *failure, char *buf, size_t len);

/* Load every zone of cfg and throw them away: for --check. Prints each failure to err as
 * "FILE:LINE: reason" and returns 0 only when every zone loaded; counts go to the out
 * parameters (may be NULL). */
int catalog_check(const struct authd_config *cfg, FILE *err, size_t *zones_out,
                  size_t *records_out);

#endif
