/* Ballast error codes: every fallible function returns 0 or one of these negative values. */
#ifndef BALLAST_ERRORS_H
#define BALLAST_ERRORS_H

#include <stddef.h>

enum ballast_error {
    BALLAST_OK = 0,
    BALLAST_ENOMEM = -1,     /* allocation failed */
    BALLAST_EINVAL = -2,     /* invalid argument or value */
    BALLAST_EIO = -3,        /* read/write/open failed */
    BALLAST_ELIMIT = -4,     /* a configured limit was crossed */
    BALLAST_EPARSE = -5,     /* syntax error in an input */
    BALLAST_ENOTFOUND = -6,  /* no such item */
    BALLAST_EEXIST = -7,     /* item already present */
    BALLAST_ESYS = -8,       /* system call failed (see errno) */
    BALLAST_EFORMERR = -9,   /* malformed DNS message */
    BALLAST_ESPACE = -10,    /* output buffer too small */
    BALLAST_ETIMEOUT = -11,  /* no answer in time */
    BALLAST_ECANCELED = -12, /* canceled (e.g. shutdown) */
};

/* Write a formatted reason into err_text (err_len bytes); does nothing when err_text is NULL. */
void ballast_set_error(char *err_text, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Static English text for an error code. */
const char *ballast_strerror(int code);

#endif
