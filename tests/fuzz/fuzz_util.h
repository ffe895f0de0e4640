/* What the libFuzzer harnesses share: FUZZ_CHECK for the properties they assert, and scratch
 * files for the entry points that take a path (zone, config and scenario loaders). */
#ifndef BALLAST_FUZZ_UTIL_H
#define BALLAST_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A property the code under test promises: when it does not hold, say which and abort, so that
 * libFuzzer keeps the input as a crash. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* libFuzzer's entry point, defined by each harness. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Write data to `name` (a plain file name) inside this process's scratch directory, replacing
 * what was there, and return its path (valid until the next call). Aborts when the file cannot
 * be written: that is a broken environment, not a finding. */
const char *fuzz_file_write(const char *name, const uint8_t *data, size_t size);

#endif
