/* Structured logging: one line per event, "ts=... level=... event=... key=value ...", to stderr. */
#ifndef BALLAST_LOG_H
#define BALLAST_LOG_H

#include <stdarg.h>
#include <stdio.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "error", "warn", "info", "debug"; returns 0 or BALLAST_EINVAL. */
int log_level_parse(const char *text, enum log_level *out);
/* Redirect output (tests); NULL restores stderr. The stream is not owned. */
void log_set_stream(FILE *stream);

/* Write one line: event is a short snake_case word; fmt adds key=value pairs. Thread-safe. */
void log_event(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(event, ...) log_event(LOG_LEVEL_ERROR, event, __VA_ARGS__)
#define log_warn(event, ...) log_event(LOG_LEVEL_WARN, event, __VA_ARGS__)
#define log_info(event, ...) log_event(LOG_LEVEL_INFO, event, __VA_ARGS__)
#define log_debug(event, ...)                                                                      \
    do {                                                                                           \
        if (log_get_level() >= LOG_LEVEL_DEBUG)                                                    \
            log_event(LOG_LEVEL_DEBUG, event, __VA_ARGS__);                                        \
    } while (0)

#endif
