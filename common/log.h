/* Structured logging: one line per event, "ts=... level=... event=... key=value ...", to stderr
 * or syslog, as key=value text or one JSON object per line; and the per-query log line. */
#ifndef BALLAST_LOG_H
#define BALLAST_LOG_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct sockaddr;

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };
/* text: ts=... level=... event=... key=value; json: {"ts":"...","level":"...","event":"...",...}
 * where a value quoted in the text form is a JSON string and an unquoted number a JSON number. */
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };
/* stderr, or syslog(3) as facility LOG_DAEMON under the name given to log_set_ident. */
enum log_target { LOG_TARGET_STDERR = 0, LOG_TARGET_SYSLOG };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "error", "warn", "info", "debug"; returns 0 or BALLAST_EINVAL. */
int log_level_parse(const char *text, enum log_level *out);
/* Redirect output (tests); NULL restores stderr. The stream is not owned. */
void log_set_stream(FILE *stream);

void log_set_format(enum log_format format);
/* Parse "text" or "json"; returns 0 or BALLAST_EINVAL. */
int log_format_parse(const char *text, enum log_format *out);
/* The program name syslog lines carry (a string that lives as long as the process); call
 * before choosing LOG_TARGET_SYSLOG. */
void log_set_ident(const char *ident);
/* Switch between stderr and syslog (openlog on the way in, closelog on the way out). */
void log_set_target(enum log_target target);
/* Parse "stderr" or "syslog"; returns 0 or BALLAST_EINVAL. */
int log_target_parse(const char *text, enum log_target *out);

/* Apply a daemon's logging settings at once (startup and reload). */
void log_configure(enum log_level level, enum log_format format, enum log_target target,
                   bool queries);

/* Rewrite the text line "ts=... level=... event=... k=v ..." (len bytes, no newline) as one JSON
 * object into out (cap bytes, NUL-terminated); returns its length, cut short (still valid JSON)
 * when cap is too small. Exposed for tests. */
size_t log_text_to_json(const char *line, size_t len, char *out, size_t cap);

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

/* Query logging (server.log-queries, off by default): the daemons test log_queries_enabled()
 * once per answered query, so the off path is one relaxed load and one branch. */
extern _Atomic bool log_queries_switch;
void log_set_queries(bool on);
static inline bool log_queries_enabled(void)
{
    return atomic_load_explicit(&log_queries_switch, memory_order_relaxed);
}

/* Room for "client=ADDR proto=tcp qname=NAME qtype=TYPE65535 rcode=RCODE4095". */
#define LOG_QUERY_TEXT_MAX 1280
/* Write "client=ADDR proto=udp|tcp qname=NAME qtype=TYPE rcode=RCODE" for the question of query
 * (query_len bytes) into buf (LOG_QUERY_TEXT_MAX bytes); returns buf. qname=- qtype=- when the
 * question cannot be read. NAME has no spaces or quotes (RFC 1035 §5.1 \DDD escapes). */
const char *log_query_describe(char *buf, const struct sockaddr *client, bool over_tcp,
                               const uint8_t *query, size_t query_len, unsigned rcode);

#endif
