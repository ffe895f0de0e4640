/* Structured logging: key=value or JSON lines to stderr or syslog, one write per line so threads
 * do not interleave; and the text of the per-query log line. */
#include "log.h"

#include <stdatomic.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "errors.h"

#define LOG_LINE_MAX 2048
/* Every byte of a text line may become a 6-byte \u00XX escape. */
#define LOG_JSON_MAX (LOG_LINE_MAX * 6 + 8)

static _Atomic int current_level = LOG_LEVEL_INFO;
static _Atomic int current_format = LOG_FORMAT_TEXT;
static _Atomic int current_target = LOG_TARGET_STDERR;
static FILE *_Atomic log_stream;
static const char *_Atomic log_ident = "ballast";
_Atomic bool log_queries_switch = false;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const format_names[] = {"text", "json"};
static const char *const target_names[] = {"stderr", "syslog"};
static const int syslog_priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

static int log_name_index(const char *const *names, size_t count, const char *text)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(text, names[i]) == 0)
            return (int)i;
    return -1;
}

#define LOG_COUNT(a) (sizeof(a) / sizeof((a)[0]))

void log_set_level(enum log_level level)
{
    atomic_store(&current_level, (int)level);
}

enum log_level log_get_level(void)
{
    return (enum log_level)atomic_load_explicit(&current_level, memory_order_relaxed);
}

int log_level_parse(const char *text, enum log_level *out)
{
    int i = log_name_index(level_names, LOG_COUNT(level_names), text);
    if (i < 0 && strcmp(text, "warning") == 0)
        i = LOG_LEVEL_WARN;
    if (i < 0)
        return BALLAST_EINVAL;
    *out = (enum log_level)i;
    return 0;
}

void log_set_stream(FILE *stream)
{
    atomic_store(&log_stream, stream);
}

void log_set_format(enum log_format format)
{
    atomic_store(&current_format, (int)format);
}

int log_format_parse(const char *text, enum log_format *out)
{
    int i = log_name_index(format_names, LOG_COUNT(format_names), text);
    if (i < 0)
        return BALLAST_EINVAL;
    *out = (enum log_format)i;
    return 0;
}

void log_set_ident(const char *ident)
{
    atomic_store(&log_ident, ident);
}

void log_set_target(enum log_target target)
{
    int old = atomic_exchange(&current_target, (int)target);
    if (old == (int)target)
        return;
    if (target == LOG_TARGET_SYSLOG)
        openlog(atomic_load(&log_ident), LOG_PID | LOG_NDELAY, LOG_DAEMON);
    else
        closelog();
}

int log_target_parse(const char *text, enum log_target *out)
{
    int i = log_name_index(target_names, LOG_COUNT(target_names), text);
    if (i < 0)
        return BALLAST_EINVAL;
    *out = (enum log_target)i;
    return 0;
}

void log_set_queries(bool on)
{
    atomic_store(&log_queries_switch, on);
}

void log_configure(enum log_level level, enum log_format format, enum log_target target,
                   bool queries)
{
    log_set_level(level);
    log_set_format(format);
    log_set_target(target);
    log_set_queries(queries);
}

/* --- JSON --------------------------------------------------------------------------------- */

struct log_out {
    char *buf;
    size_t cap; /* room for the text and its NUL */
    size_t len;
    bool full;
};

/* Append n bytes whole or not at all, so a cut line never ends inside an escape. */
static bool log_out_put(struct log_out *out, const char *text, size_t n)
{
    if (out->full || out->len + n + 1 > out->cap) {
        out->full = true;
        return false;
    }
    memcpy(out->buf + out->len, text, n);
    out->len += n;
    return true;
}

/* The length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes are not one. */
static size_t log_utf8_length(const unsigned char *s, size_t avail)
{
    size_t n;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4;
    else
        return 0;
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
        return 0; /* overlong, surrogate or beyond U+10FFFF */
    return n;
}

/* One JSON string character (RFC 8259 §7): quote, backslash and controls escaped, invalid UTF-8
 * replaced by U+FFFD. Returns the bytes of text consumed, or 0 when out is full. */
static size_t log_json_char(struct log_out *out, const unsigned char *s, size_t avail)
{
    char esc[8];
    switch (s[0]) {
    case '"':
        return log_out_put(out, "\\\"", 2) ? 1 : 0;
    case '\\':
        return log_out_put(out, "\\\\", 2) ? 1 : 0;
    case '\n':
        return log_out_put(out, "\\n", 2) ? 1 : 0;
    case '\r':
        return log_out_put(out, "\\r", 2) ? 1 : 0;
    case '\t':
        return log_out_put(out, "\\t", 2) ? 1 : 0;
    default:
        break;
    }
    if (s[0] < 0x20) {
        snprintf(esc, sizeof esc, "\\u%04x", s[0]);
        return log_out_put(out, esc, 6) ? 1 : 0;
    }
    if (s[0] < 0x80)
        return log_out_put(out, (const char *)s, 1) ? 1 : 0;
    size_t n = log_utf8_length(s, avail);
    if (n == 0)
        return log_out_put(out, "\\ufffd", 6) ? 1 : 0;
    return log_out_put(out, (const char *)s, n) ? n : 0;
}

static void log_json_string(struct log_out *out, const char *text, size_t len)
{
    if (!log_out_put(out, "\"", 1))
        return;
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        size_t used = log_json_char(out, s + i, len - i);
        if (used == 0)
            return;
        i += used;
    }
    log_out_put(out, "\"", 1);
}

static bool log_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Whether text is a JSON number (RFC 8259 §6): -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool log_is_json_number(const char *s, size_t len)
{
    size_t i = 0;
    if (i < len && s[i] == '-')
        i++;
    if (i >= len || !log_is_digit(s[i]))
        return false;
    if (s[i] == '0')
        i++;
    else
        while (i < len && log_is_digit(s[i]))
            i++;
    if (i < len && s[i] == '.') {
        if (++i >= len || !log_is_digit(s[i]))
            return false;
        while (i < len && log_is_digit(s[i]))
            i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= len || !log_is_digit(s[i]))
            return false;
        while (i < len && log_is_digit(s[i]))
            i++;
    }
    return i == len;
}

/* A quoted text value runs to the closing quote that ends the line or precedes a space; \" and
 * \\ inside it stand for the character. Returns the offset just past the closing quote. */
static size_t log_quoted_end(const char *line, size_t pos, size_t len)
{
    for (size_t i = pos + 1; i < len; i++) {
        if (line[i] == '\\' && i + 1 < len) {
            i++;
            continue;
        }
        if (line[i] == '"' && (i + 1 == len || line[i + 1] == ' '))
            return i + 1;
    }
    return len; /* unterminated: the rest of the line */
}

/* The quoted value line[start..end) without its quotes and backslash escapes, as a JSON string. */
static void log_json_unquote(struct log_out *out, const char *line, size_t start, size_t end)
{
    char value[LOG_LINE_MAX];
    size_t n = 0;
    size_t stop = end > start + 1 && line[end - 1] == '"' ? end - 1 : end;
    for (size_t i = start + 1; i < stop && n < sizeof value; i++) {
        if (line[i] == '\\' && i + 1 < stop && (line[i + 1] == '"' || line[i + 1] == '\\'))
            i++;
        value[n++] = line[i];
    }
    log_json_string(out, value, n);
}

size_t log_text_to_json(const char *line, size_t len, char *buf, size_t cap)
{
    if (cap < 3) {
        if (cap > 0)
            buf[0] = '\0';
        return 0;
    }
    struct log_out out = {.buf = buf, .cap = cap - 1, .len = 0, .full = false}; /* 1 for '}' */
    log_out_put(&out, "{", 1);
    size_t pos = 0;
    bool first = true;
    while (pos < len && !out.full) {
        while (pos < len && line[pos] == ' ')
            pos++;
        if (pos >= len)
            break;
        size_t key_start = pos;
        while (pos < len && line[pos] != '=' && line[pos] != ' ')
            pos++;
        size_t mark = out.len;
        if (!first)
            log_out_put(&out, ",", 1);
        if (pos >= len || line[pos] == ' ') {
            /* a word without "=": kept as "msg" so nothing is lost */
            log_json_string(&out, "msg", 3);
            log_out_put(&out, ":", 1);
            log_json_string(&out, line + key_start, pos - key_start);
        } else {
            log_json_string(&out, line + key_start, pos - key_start);
            log_out_put(&out, ":", 1);
            size_t value_start = ++pos;
            if (pos < len && line[pos] == '"') {
                pos = log_quoted_end(line, pos, len);
                log_json_unquote(&out, line, value_start, pos);
            } else {
                while (pos < len && line[pos] != ' ')
                    pos++;
                if (log_is_json_number(line + value_start, pos - value_start))
                    log_out_put(&out, line + value_start, pos - value_start);
                else
                    log_json_string(&out, line + value_start, pos - value_start);
            }
        }
        if (out.full) {
            out.len = mark; /* drop the member that did not fit */
            break;
        }
        first = false;
    }
    out.cap = cap; /* the '}' always fits: it was held back */
    out.full = false;
    log_out_put(&out, "}", 1);
    buf[out.len] = '\0';
    return out.len;
}

/* --- writing ------------------------------------------------------------------------------ */

static void log_write(const char *text, size_t len)
{
    FILE *stream = atomic_load(&log_stream);
    if (stream == NULL) {
        ssize_t unused = write(STDERR_FILENO, text, len);
        (void)unused;
    } else {
        fwrite(text, 1, len, stream);
        fflush(stream);
    }
}

/* Send the text line (no newline) where the target and format say. */
static void log_emit(enum log_level level, char *line, size_t len, size_t ts_len)
{
    int format = atomic_load_explicit(&current_format, memory_order_relaxed);
    bool to_syslog =
        atomic_load_explicit(&current_target, memory_order_relaxed) == LOG_TARGET_SYSLOG &&
        atomic_load(&log_stream) == NULL;
    if (format == LOG_FORMAT_JSON) {
        static _Thread_local char json[LOG_JSON_MAX];
        size_t n = log_text_to_json(line, len, json, sizeof json - 1);
        if (to_syslog) {
            syslog(syslog_priorities[level], "%s", json);
            return;
        }
        json[n++] = '\n';
        log_write(json, n);
        return;
    }
    if (to_syslog) {
        /* syslog stamps its own time */
        syslog(syslog_priorities[level], "%s", line + ts_len);
        return;
    }
    line[len++] = '\n';
    log_write(line, len);
}

void log_event(enum log_level level, const char *event, const char *fmt, ...)
{
    if ((int)level > atomic_load_explicit(&current_level, memory_order_relaxed))
        return;
    char line[LOG_LINE_MAX];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    int ts_len = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ",
                          tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                          tm.tm_sec, now.tv_nsec / 1000000);
    if (ts_len < 0)
        return;
    int n = snprintf(line + ts_len, sizeof(line) - (size_t)ts_len, "level=%s event=%s",
                     level_names[level], event);
    if (n < 0)
        return;
    size_t len = (size_t)ts_len + (size_t)n;
    if (len > sizeof(line) - 1)
        len = sizeof(line) - 1;
    if (fmt != NULL && fmt[0] != '\0' && len < sizeof(line) - 2) {
        line[len++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
        va_end(ap);
        if (m > 0)
            len += (size_t)m < sizeof(line) - len ? (size_t)m : sizeof(line) - len - 1;
    }
    if (len >= sizeof(line) - 1)
        len = sizeof(line) - 2; /* room for the newline */
    line[len] = '\0';
    log_emit(level, line, len, (size_t)ts_len);
}

/* --- query lines -------------------------------------------------------------------------- */

/* Mnemonics of the common types (RFC 1035 §3.2.2 and later); others are TYPEnnn (RFC 3597 §5). */
static const char *log_qtype_name(uint16_t type)
{
    switch (type) {
    case 1:
        return "A";
    case 2:
        return "NS";
    case 5:
        return "CNAME";
    case 6:
        return "SOA";
    case 12:
        return "PTR";
    case 15:
        return "MX";
    case 16:
        return "TXT";
    case 28:
        return "AAAA";
    case 33:
        return "SRV";
    case 35:
        return "NAPTR";
    case 39:
        return "DNAME";
    case 43:
        return "DS";
    case 46:
        return "RRSIG";
    case 47:
        return "NSEC";
    case 48:
        return "DNSKEY";
    case 50:
        return "NSEC3";
    case 52:
        return "TLSA";
    case 64:
        return "SVCB";
    case 65:
        return "HTTPS";
    case 252:
        return "AXFR";
    case 251:
        return "IXFR";
    case 255:
        return "ANY";
    case 257:
        return "CAA";
    default:
        return NULL;
    }
}

static const char *log_rcode_name(unsigned rcode)
{
    static const char *const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                        "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
                                        "NXRRSET", "NOTAUTH", "NOTZONE"};
    if (rcode < LOG_COUNT(names))
        return names[rcode];
    if (rcode == 16)
        return "BADVERS";
    if (rcode == 23)
        return "BADCOOKIE";
    return NULL;
}

static bool log_name_plain(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || log_is_digit((char)c) || c == '-' ||
           c == '_' || c == '*';
}

/* The question name at query[12..] as text: labels joined by dots, other bytes as \DDD
 * (RFC 1035 §5.1). Returns the offset past the name, or 0 when it is not a plain name. */
static size_t log_qname_text(const uint8_t *query, size_t len, char *out, size_t cap)
{
    size_t pos = 12, n = 0;
    while (pos < len) {
        uint8_t label = query[pos++];
        if (label == 0) {
            if (n == 0)
                out[n++] = '.';
            out[n] = '\0';
            return pos;
        }
        if (label > 63 || pos + label > len)
            return 0; /* a compression pointer or a cut name */
        for (uint8_t i = 0; i < label; i++) {
            unsigned char c = query[pos++];
            if (n + 6 >= cap)
                return 0;
            if (log_name_plain(c))
                out[n++] = (char)c;
            else
                n += (size_t)snprintf(out + n, cap - n, "\\%03u", c);
        }
        if (n + 2 >= cap)
            return 0;
        out[n++] = '.';
    }
    return 0;
}

const char *log_query_describe(char *buf, const struct sockaddr *client, bool over_tcp,
                               const uint8_t *query, size_t query_len, unsigned rcode)
{
    char client_text[128] = "-";
    if (client != NULL)
        addr_format(client, client_text, sizeof client_text);
    char qname[1024] = "-";
    char qtype[16] = "-";
    size_t end = query_len > 12 && query[4] == 0 && query[5] == 1
                     ? log_qname_text(query, query_len, qname, sizeof qname)
                     : 0;
    if (end != 0 && end + 2 <= query_len) {
        uint16_t type = (uint16_t)(query[end] << 8 | query[end + 1]);
        const char *name = log_qtype_name(type);
        if (name)
            snprintf(qtype, sizeof qtype, "%s", name);
        else
            snprintf(qtype, sizeof qtype, "TYPE%u", type);
    } else {
        snprintf(qname, sizeof qname, "-");
    }
    char rcode_text[16];
    const char *rcode_name = log_rcode_name(rcode);
    if (rcode_name)
        snprintf(rcode_text, sizeof rcode_text, "%s", rcode_name);
    else
        snprintf(rcode_text, sizeof rcode_text, "RCODE%u", rcode);
    snprintf(buf, LOG_QUERY_TEXT_MAX, "client=%s proto=%s qname=%s qtype=%s rcode=%s", client_text,
             over_tcp ? "tcp" : "udp", qname, qtype, rcode_text);
    return buf;
}
