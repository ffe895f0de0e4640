/* Fault injection: parsing and formatting of rules, the copy-on-write rule sets, the "fault"
 * control command, the per-query decision, rewritten responses and delayed replies. */
#include "fault.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "errors.h"
#include "limit.h"
#include "log.h"

#define FAULT_OPT_LEN 11 /* root owner, TYPE, CLASS, TTL, RDLENGTH=0 */
#define FAULT_RULE_TEXT_MAX 400
#define FAULT_KINDS_TEXT "drop, loss, latency, servfail, refused, empty, nxdomain, truncate"

static const char *const fault_kind_names[FAULT_KIND_COUNT] = {
    "drop", "loss", "latency", "servfail", "refused", "empty", "nxdomain", "truncate",
};

const char *fault_kind_name(enum fault_kind kind)
{
    return (unsigned)kind < FAULT_KIND_COUNT ? fault_kind_names[kind] : "unknown";
}

int fault_kind_parse(const char *text, enum fault_kind *out)
{
    for (int k = 0; k < FAULT_KIND_COUNT; k++) {
        if (strcmp(text, fault_kind_names[k]) == 0) {
            *out = (enum fault_kind)k;
            return BALLAST_OK;
        }
    }
    return BALLAST_EINVAL;
}

/* --- rules -------------------------------------------------------------------------------- */

/* A command-line word as a config scalar, so percent= and delay= read like config values. */
static struct config_node fault_scalar(const char *text)
{
    struct config_node node;
    memset(&node, 0, sizeof node);
    node.kind = CONFIG_SCALAR;
    node.file = CONFIG_CMDLINE;
    node.scalar = (char *)text;
    return node;
}

static int fault_parse_name(const char *value, struct fault_rule *rule, char *err, size_t err_len)
{
    if (*value == '\0' || wire_name_from_text(value, rule->name, &rule->name_len) != 0) {
        ballast_set_error(err, err_len, "name=: not a valid domain name: '%s'", value);
        return BALLAST_EINVAL;
    }
    wire_name_lower(rule->name, rule->name, rule->name_len);
    return BALLAST_OK;
}

static int fault_parse_percent(const char *value, struct fault_rule *rule, char *err,
                               size_t err_len)
{
    struct config_node node = fault_scalar(value);
    struct config_error cerr;
    uint64_t percent;
    if (config_get_uint(&node, 0, 100, &percent, &cerr) != 0) {
        ballast_set_error(err, err_len, "percent=: %s", cerr.reason);
        return BALLAST_EINVAL;
    }
    rule->percent = (uint32_t)percent;
    return BALLAST_OK;
}

static int fault_parse_delay(const char *value, struct fault_rule *rule, char *err, size_t err_len)
{
    struct config_node node = fault_scalar(value);
    struct config_error cerr;
    uint64_t delay_ms;
    if (config_get_duration_ms(&node, 1, FAULT_DELAY_MAX_MS, &delay_ms, &cerr) != 0) {
        ballast_set_error(err, err_len, "delay=: %s", cerr.reason);
        return BALLAST_EINVAL;
    }
    rule->delay_ms = (uint32_t)delay_ms;
    return BALLAST_OK;
}

/* One KEY=VALUE word; seen[] catches a key given twice. */
static int fault_parse_option(const char *word, struct fault_rule *rule, bool seen[3], char *err,
                              size_t err_len)
{
    static const char *const keys[3] = {"name", "percent", "delay"};
    const char *eq = strchr(word, '=');
    for (int k = 0; eq && k < 3; k++) {
        if (strlen(keys[k]) != (size_t)(eq - word) || strncmp(word, keys[k], (size_t)(eq - word)))
            continue;
        if (seen[k]) {
            ballast_set_error(err, err_len, "%s= given twice", keys[k]);
            return BALLAST_EINVAL;
        }
        seen[k] = true;
        if (k == 0)
            return fault_parse_name(eq + 1, rule, err, err_len);
        if (k == 1)
            return fault_parse_percent(eq + 1, rule, err, err_len);
        return fault_parse_delay(eq + 1, rule, err, err_len);
    }
    ballast_set_error(err, err_len, "unknown argument '%s' (expected name=, percent=, delay=)",
                      word);
    return BALLAST_EINVAL;
}

int fault_rule_parse(int argc, char *const *argv, struct fault_rule *rule, char *err,
                     size_t err_len)
{
    memset(rule, 0, sizeof *rule);
    if (argc < 1) {
        ballast_set_error(err, err_len, "missing KIND (expected " FAULT_KINDS_TEXT ")");
        return BALLAST_EINVAL;
    }
    if (fault_kind_parse(argv[0], &rule->kind) != 0) {
        ballast_set_error(err, err_len, "unknown kind '%s' (expected " FAULT_KINDS_TEXT ")",
                          argv[0]);
        return BALLAST_EINVAL;
    }
    bool seen[3] = {false, false, false}; /* name, percent, delay */
    for (int i = 1; i < argc; i++)
        if (fault_parse_option(argv[i], rule, seen, err, err_len) != 0)
            return BALLAST_EINVAL;
    bool loss = rule->kind == FAULT_LOSS, latency = rule->kind == FAULT_LATENCY;
    if (loss != seen[1]) {
        ballast_set_error(err, err_len,
                          loss ? "percent=: loss needs percent=N (0-100)"
                               : "percent=: only loss takes a percentage");
        return BALLAST_EINVAL;
    }
    if (latency != seen[2]) {
        ballast_set_error(err, err_len,
                          latency ? "delay=: latency needs delay=DURATION (e.g. 2s, 500ms)"
                                  : "delay=: only latency takes a delay");
        return BALLAST_EINVAL;
    }
    return BALLAST_OK;
}

void fault_rule_format(const struct fault_rule *rule, char *buf, size_t len)
{
    char name[WIRE_NAME_MAX * 4 + 8] = "";
    if (rule->name_len > 0) {
        char text[WIRE_NAME_MAX * 4 + 1];
        if (wire_name_to_text(rule->name, text, sizeof text) != 0)
            snprintf(text, sizeof text, "?");
        snprintf(name, sizeof name, " name=%s", text);
    }
    char extra[32] = "";
    if (rule->kind == FAULT_LOSS)
        snprintf(extra, sizeof extra, " percent=%u", rule->percent);
    else if (rule->kind == FAULT_LATENCY)
        snprintf(extra, sizeof extra, " delay=%ums", rule->delay_ms);
    snprintf(buf, len, "kind=%s%s%s", fault_kind_name(rule->kind), name, extra);
}

int fault_rules_add(const struct fault_rules *rules, const struct fault_rule *rule,
                    struct fault_rules **out)
{
    size_t count = rules ? rules->count : 0;
    *out = NULL;
    if (count >= FAULT_RULES_MAX)
        return BALLAST_ELIMIT;
    /* Loss draws random numbers on the workers; a rule exists only once libsodium is ready. */
    if (sodium_init() < 0)
        return BALLAST_ESYS;
    struct fault_rules *next = malloc(sizeof *next + (count + 1) * sizeof next->rules[0]);
    if (!next)
        return BALLAST_ENOMEM;
    if (count > 0)
        memcpy(next->rules, rules->rules, count * sizeof next->rules[0]);
    next->rules[count] = *rule;
    next->count = count + 1;
    *out = next;
    return BALLAST_OK;
}

void fault_rules_free(struct fault_rules *rules)
{
    free(rules);
}

const struct fault_rule *fault_rules_match(const struct fault_rules *rules, const uint8_t *qname,
                                           size_t qname_len)
{
    for (size_t i = 0; rules && i < rules->count; i++) {
        const struct fault_rule *rule = &rules->rules[i];
        if (rule->name_len == 0 ||
            (qname && wire_name_is_subdomain(qname, qname_len, rule->name, rule->name_len)))
            return rule;
    }
    return NULL;
}

/* --- the control command ------------------------------------------------------------------ */

static void fault_reply_count(struct control_reply *reply, size_t count)
{
    control_reply_printf(reply, "%zu rule%s\n", count, count == 1 ? "" : "s");
}

static int fault_command_add(const struct fault_rules *current, int argc, char **argv,
                             struct control_reply *reply, struct fault_rules **next)
{
    struct fault_rule rule;
    char err[512];
    if (fault_rule_parse(argc, argv, &rule, err, sizeof err) != 0) {
        control_reply_printf(reply, "fault add: %s\n", err);
        return BALLAST_EINVAL;
    }
    int rc = fault_rules_add(current, &rule, next);
    if (rc == BALLAST_ELIMIT) {
        control_reply_printf(reply, "fault add: at most %d rules (fault clear first)\n",
                             FAULT_RULES_MAX);
        return rc;
    }
    if (rc != 0) {
        control_reply_printf(reply, "fault add: %s\n", ballast_strerror(rc));
        return rc;
    }
    char text[FAULT_RULE_TEXT_MAX];
    fault_rule_format(&rule, text, sizeof text);
    log_info("fault", "action=add %s rules=%zu", text, (*next)->count);
    fault_reply_count(reply, (*next)->count);
    return BALLAST_OK;
}

int fault_command(const struct fault_rules *current, int argc, char **argv,
                  struct control_reply *reply, struct fault_rules **next, bool *changed)
{
    *next = NULL;
    *changed = false;
    const char *sub = argc >= 2 ? argv[1] : "";
    size_t count = current ? current->count : 0;
    if (strcmp(sub, "add") == 0) {
        int rc = fault_command_add(current, argc - 2, argv + 2, reply, next);
        *changed = rc == 0;
        return rc;
    }
    if ((strcmp(sub, "clear") == 0 || strcmp(sub, "list") == 0) && argc > 2) {
        control_reply_printf(reply, "fault %s: unexpected argument '%s'\n", sub, argv[2]);
        return BALLAST_EINVAL;
    }
    if (strcmp(sub, "clear") == 0) {
        log_info("fault", "action=clear removed=%zu", count);
        *changed = true;
        fault_reply_count(reply, 0);
        return BALLAST_OK;
    }
    if (strcmp(sub, "list") == 0) {
        char text[FAULT_RULE_TEXT_MAX];
        for (size_t i = 0; i < count; i++) {
            fault_rule_format(&current->rules[i], text, sizeof text);
            control_reply_printf(reply, "rule=%zu %s\n", i + 1, text);
        }
        return BALLAST_OK;
    }
    control_reply_printf(reply,
                         "fault: expected add KIND [name=NAME] [percent=N] [delay=DURATION], "
                         "clear or list\n");
    return BALLAST_EINVAL;
}

/* --- per query ---------------------------------------------------------------------------- */

static enum fault_action fault_action_of(const struct fault_rule *rule, bool over_tcp, bool parsed)
{
    switch (rule->kind) {
    case FAULT_DROP:
        return FAULT_ACTION_DROP;
    case FAULT_LOSS:
        return randombytes_uniform(100) < rule->percent ? FAULT_ACTION_DROP : FAULT_ACTION_ANSWER;
    case FAULT_LATENCY:
        return FAULT_ACTION_DELAY;
    case FAULT_TRUNCATE:
        /* RFC 7766 §6.2: the client retries over TCP, which gets the whole answer. */
        return !over_tcp && parsed ? FAULT_ACTION_REWRITE : FAULT_ACTION_ANSWER;
    default:
        return parsed ? FAULT_ACTION_REWRITE : FAULT_ACTION_ANSWER;
    }
}

void fault_decide(const struct fault_rules *rules, const uint8_t *query, size_t query_len,
                  bool over_tcp, struct fault_decision *out)
{
    out->action = FAULT_ACTION_ANSWER;
    out->over_tcp = over_tcp;
    out->parsed = false;
    if (!rules || rules->count == 0)
        return;
    const struct wire_query *q = &out->query;
    /* Only a well-formed standard query has a name to match and a question to echo. */
    out->parsed = wire_parse_query(query, query_len, &out->query) == 0 &&
                  WIRE_OPCODE(q->flags) == 0 && q->qdcount == 1;
    const struct fault_rule *rule =
        fault_rules_match(rules, out->parsed ? q->qname_lower : NULL, q->qname_len);
    if (!rule)
        return;
    out->kind = rule->kind;
    out->delay_ms = rule->delay_ms;
    out->action = fault_action_of(rule, over_tcp, out->parsed);
}

/* The space an answer may use: RFC 1035 §4.2.1 512 bytes over UDP, or the EDNS size both sides
 * accept (RFC 6891 §6.2.5); the whole buffer over TCP. */
static size_t fault_response_limit(const struct fault_decision *decision, uint16_t edns_udp_size,
                                   size_t resp_cap)
{
    const struct wire_query *q = &decision->query;
    size_t limit = LIMIT_UDP_MIN_PAYLOAD;
    if (decision->over_tcp)
        limit = LIMIT_DNS_MESSAGE_MAX;
    else if (q->has_edns)
        limit = q->edns_udp_size < edns_udp_size ? q->edns_udp_size : edns_udp_size;
    if (limit < LIMIT_UDP_MIN_PAYLOAD)
        limit = LIMIT_UDP_MIN_PAYLOAD;
    return limit < resp_cap ? limit : resp_cap;
}

/* RFC 2308 §3: the SOA in authority, owner the zone apex, TTL min(SOA TTL, MINIMUM). Left out
 * when it does not fit: the rcode alone says what the fault means. */
static uint16_t fault_put_soa(struct wire_writer *w, const struct fault_soa *soa)
{
    struct wire_writer_mark mark = wire_writer_mark(w);
    if (wire_writer_name(w, soa->owner, soa->owner_len, true) != 0 ||
        wire_writer_u16(w, WIRE_TYPE_SOA) != 0 || wire_writer_u16(w, WIRE_CLASS_IN) != 0 ||
        wire_writer_u32(w, soa->ttl) != 0 ||
        wire_writer_rdata(w, WIRE_TYPE_SOA, soa->rdata, soa->rdlen) != 0) {
        wire_writer_rollback(w, mark);
        return 0;
    }
    return 1;
}

/* RFC 6891 §6.1.2: our OPT with the client's DO bit. Space for it was kept back. */
static uint16_t fault_put_opt(struct wire_writer *w, const struct wire_query *q,
                              uint16_t edns_udp_size)
{
    uint8_t opt[FAULT_OPT_LEN] = {0};
    wire_write_u16(opt + 1, WIRE_TYPE_OPT);
    wire_write_u16(opt + 3, edns_udp_size);
    wire_write_u16(opt + 7, q->edns_flags & WIRE_EDNS_DO);
    w->limit += FAULT_OPT_LEN;
    return wire_writer_bytes(w, opt, sizeof opt) == 0 ? 1 : 0;
}

size_t fault_write_response(const struct fault_decision *decision, const uint8_t *query,
                            const struct fault_soa *soa, uint16_t edns_udp_size, uint8_t *resp,
                            size_t resp_cap)
{
    const struct wire_query *q = &decision->query;
    if (!decision->parsed)
        return 0;
    size_t limit = fault_response_limit(decision, edns_udp_size, resp_cap);
    size_t reserve = q->has_edns ? FAULT_OPT_LEN : 0;
    if (q->question_end + reserve > limit)
        return 0;
    uint16_t rcode = WIRE_RCODE_NOERROR, flags = 0, authority = 0, additional = 0;
    switch (decision->kind) {
    case FAULT_SERVFAIL:
        rcode = WIRE_RCODE_SERVFAIL;
        break;
    case FAULT_REFUSED:
        rcode = WIRE_RCODE_REFUSED;
        break;
    case FAULT_NXDOMAIN:
        rcode = WIRE_RCODE_NXDOMAIN;
        flags = WIRE_FLAG_AA;
        break;
    case FAULT_TRUNCATE:
        flags = WIRE_FLAG_AA | WIRE_FLAG_TC;
        break;
    default: /* FAULT_EMPTY: NODATA */
        flags = WIRE_FLAG_AA;
        break;
    }
    struct wire_writer w;
    wire_writer_init(&w, resp, limit - reserve);
    memcpy(resp + WIRE_HEADER_LEN, query + WIRE_HEADER_LEN, q->question_end - WIRE_HEADER_LEN);
    w.len = q->question_end;
    wire_writer_remember_name(&w, WIRE_HEADER_LEN);
    if (soa && (decision->kind == FAULT_EMPTY || decision->kind == FAULT_NXDOMAIN))
        authority = fault_put_soa(&w, soa);
    if (q->has_edns)
        additional = fault_put_opt(&w, q, edns_udp_size);
    wire_write_u16(resp, q->id);
    wire_write_u16(resp + 2,
                   (uint16_t)(WIRE_FLAG_QR | (q->flags & (0x7800u | WIRE_FLAG_RD | WIRE_FLAG_CD)) |
                              flags | rcode));
    wire_write_u16(resp + 4, 1);
    wire_write_u16(resp + 6, 0);
    wire_write_u16(resp + 8, authority);
    wire_write_u16(resp + 10, additional);
    return w.len;
}

/* --- counters ----------------------------------------------------------------------------- */

void fault_counters_add(struct fault_counters *sum, const struct fault_counters *one)
{
    for (int k = 0; k < FAULT_KIND_COUNT; k++)
        sum->applied[k] += __atomic_load_n(&one->applied[k], __ATOMIC_RELAXED);
    sum->delay_overflow += __atomic_load_n(&one->delay_overflow, __ATOMIC_RELAXED);
}

void fault_counters_print(const struct fault_counters *sum, const struct fault_rules *rules,
                          struct control_reply *reply)
{
    const uint64_t *a = sum->applied;
    unsigned long long dropped = a[FAULT_DROP] + a[FAULT_LOSS] + sum->delay_overflow;
    unsigned long long rewritten = a[FAULT_SERVFAIL] + a[FAULT_REFUSED] + a[FAULT_EMPTY] +
                                   a[FAULT_NXDOMAIN] + a[FAULT_TRUNCATE];
    control_reply_printf(reply,
                         "fault_rules=%zu\nfault_dropped=%llu\nfault_delayed=%llu\n"
                         "fault_rewritten=%llu\n",
                         rules ? rules->count : 0, dropped, (unsigned long long)a[FAULT_LATENCY],
                         rewritten);
    for (int k = 0; k < FAULT_KIND_COUNT; k++)
        control_reply_printf(reply, "fault_%s=%llu\n", fault_kind_names[k],
                             (unsigned long long)a[k]);
    control_reply_printf(reply, "fault_delay_overflow=%llu\n",
                         (unsigned long long)sum->delay_overflow);
}

/* --- delayed replies ---------------------------------------------------------------------- */

struct fault_delayed {
    uv_timer_t timer;
    struct fault_delayer *delayer;
    struct listener_reply *reply;
    struct fault_delayed *prev, *next; /* in delayer->waiting */
    size_t len;
    uint8_t resp[];
};

struct fault_delayer {
    uv_loop_t *loop;
    size_t max_pending;
    size_t pending;     /* answers in waiting */
    size_t timers_open; /* timers not yet closed by libuv (waiting or closing) */
    bool closing;
    struct fault_delayed *waiting;
};

int fault_delayer_create(uv_loop_t *loop, size_t max_pending, struct fault_delayer **out)
{
    struct fault_delayer *delayer = calloc(1, sizeof *delayer);
    *out = delayer;
    if (!delayer)
        return BALLAST_ENOMEM;
    delayer->loop = loop;
    delayer->max_pending = max_pending;
    return BALLAST_OK;
}

static void fault_delayer_maybe_free(struct fault_delayer *delayer)
{
    if (delayer->closing && delayer->timers_open == 0)
        free(delayer);
}

static void fault_delayed_on_closed(uv_handle_t *handle)
{
    struct fault_delayed *item = handle->data;
    struct fault_delayer *delayer = item->delayer;
    free(item);
    delayer->timers_open--;
    fault_delayer_maybe_free(delayer);
}

/* Take item out of the waiting list and close its timer (freed in the close callback). */
static void fault_delayed_finish(struct fault_delayed *item)
{
    struct fault_delayer *delayer = item->delayer;
    if (item->prev)
        item->prev->next = item->next;
    else
        delayer->waiting = item->next;
    if (item->next)
        item->next->prev = item->prev;
    delayer->pending--;
    uv_close((uv_handle_t *)&item->timer, fault_delayed_on_closed);
}

static void fault_delayed_on_timer(uv_timer_t *timer)
{
    struct fault_delayed *item = timer->data;
    listener_reply_send(item->reply, item->resp, item->len);
    fault_delayed_finish(item);
}

int fault_delayer_send(struct fault_delayer *delayer, struct listener_reply *reply,
                       const uint8_t *resp, size_t len, uint32_t delay_ms)
{
    if (delayer->closing || delayer->pending >= delayer->max_pending) {
        listener_reply_drop(reply);
        return BALLAST_ELIMIT;
    }
    struct fault_delayed *item = malloc(sizeof *item + len);
    if (!item || uv_timer_init(delayer->loop, &item->timer) != 0) {
        free(item);
        listener_reply_drop(reply);
        return BALLAST_ENOMEM;
    }
    item->timer.data = item;
    item->delayer = delayer;
    item->reply = reply;
    item->len = len;
    memcpy(item->resp, resp, len);
    item->prev = NULL;
    item->next = delayer->waiting;
    if (delayer->waiting)
        delayer->waiting->prev = item;
    delayer->waiting = item;
    delayer->pending++;
    delayer->timers_open++;
    uv_timer_start(&item->timer, fault_delayed_on_timer, delay_ms, 0);
    return BALLAST_OK;
}

size_t fault_delayer_pending(const struct fault_delayer *delayer)
{
    return delayer->pending;
}

void fault_delayer_close(struct fault_delayer *delayer)
{
    if (!delayer)
        return;
    delayer->closing = true;
    while (delayer->waiting) {
        struct fault_delayed *item = delayer->waiting;
        uv_timer_stop(&item->timer);
        listener_reply_drop(item->reply);
        fault_delayed_finish(item);
    }
    fault_delayer_maybe_free(delayer);
}
