/* Text for the error codes of errors.h. */
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>

const char *ballast_strerror(int code)
{
    switch (code) {
    case BALLAST_OK:
        return "success";
    case BALLAST_ENOMEM:
        return "out of memory";
    case BALLAST_EINVAL:
        return "invalid value";
    case BALLAST_EIO:
        return "input/output error";
    case BALLAST_ELIMIT:
        return "limit exceeded";
    case BALLAST_EPARSE:
        return "parse error";
    case BALLAST_ENOTFOUND:
        return "not found";
    case BALLAST_EEXIST:
        return "already exists";
    case BALLAST_ESYS:
        return "system error";
    case BALLAST_EFORMERR:
        return "malformed message";
    case BALLAST_ESPACE:
        return "no space";
    case BALLAST_ETIMEOUT:
        return "timed out";
    case BALLAST_ECANCELED:
        return "canceled";
    default:
        return "unknown error";
    }
}

void ballast_set_error(char *err_text, size_t err_len, const char *fmt, ...)
{
    if (err_text == NULL || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_text, err_len, fmt, ap);
    va_end(ap);
}
