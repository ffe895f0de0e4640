/* Fault injection for the daemons (used by `ballast replay` to make an authority misbehave): the
 * rules set over the control channel ("fault add|clear|list"), the per-query decision, the
 * rewritten responses and delayed replies. Off unless the daemon starts with --fault-injection. */
#ifndef BALLAST_FAULT_H
#define BALLAST_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "control.h"
#include "listener.h"
#include "wire.h"

#define FAULT_RULES_MAX 64         /* rules in effect at once */
#define FAULT_DELAY_MAX_MS 300000u /* latency= at most 5 minutes */
#define FAULT_PENDING_MAX 65536u   /* delayed answers held per worker; more are dropped */
#define FAULT_DISABLED_TEXT                                                                        \
    "fault injection is disabled (start ballast-authd with --fault-injection)"

enum fault_kind {
    FAULT_DROP,     /* no answer at all */
    FAULT_LOSS,     /* no answer, with probability percent/100 */
    FAULT_LATENCY,  /* the normal answer, sent delay_ms later */
    FAULT_SERVFAIL, /* SERVFAIL, question only */
    FAULT_REFUSED,  /* REFUSED, question only */
    FAULT_EMPTY,    /* NOERROR, AA, no answer records (NODATA), the zone's SOA if known */
    FAULT_NXDOMAIN, /* NXDOMAIN, AA, the zone's SOA if known */
    FAULT_TRUNCATE, /* over UDP: TC=1 and no records; over TCP: the normal answer */
    FAULT_KIND_COUNT
};

struct fault_rule {
    enum fault_kind kind;
    uint8_t name[WIRE_NAME_MAX]; /* lowercase wire form: the rule covers this name and below */
    size_t name_len;             /* 0: every query */
    uint32_t percent;            /* FAULT_LOSS: 0..100 */
    uint32_t delay_ms;           /* FAULT_LATENCY: 1..FAULT_DELAY_MAX_MS */
};

/* An immutable rule set, published to the workers as a whole (copy on write; the daemon swaps
 * the pointer and frees the old set once no reader can hold it). Rules apply in order. */
struct fault_rules {
    size_t count;
    struct fault_rule rules[];
};

/* "drop", "loss", ... and back (BALLAST_EINVAL for an unknown kind). */
const char *fault_kind_name(enum fault_kind kind);
int fault_kind_parse(const char *text, enum fault_kind *out);

/* Parse the words after "fault add": KIND [name=NAME] [percent=N] [delay=DURATION]. percent= is
 * required for loss and only allowed there; delay= likewise for latency. On error err names the
 * bad argument. Returns 0 or BALLAST_EINVAL. */
int fault_rule_parse(int argc, char *const *argv, struct fault_rule *rule, char *err,
                     size_t err_len);
/* "kind=loss name=www.example.test. percent=30" (no name=: the rule covers every query). */
void fault_rule_format(const struct fault_rule *rule, char *buf, size_t len);

/* A new set holding rules (may be NULL) followed by rule; the caller owns it (fault_rules_free).
 * Returns 0, BALLAST_ELIMIT past FAULT_RULES_MAX rules, BALLAST_ENOMEM, or BALLAST_ESYS
 * when libsodium (for loss) cannot start. */
int fault_rules_add(const struct fault_rules *rules, const struct fault_rule *rule,
                    struct fault_rules **out);
void fault_rules_free(struct fault_rules *rules);

/* The first rule covering qname (lowercase wire), or NULL. qname NULL (the question could not be
 * read) matches only rules without a name. */
const struct fault_rule *fault_rules_match(const struct fault_rules *rules, const uint8_t *qname,
                                           size_t qname_len);

/* The control command. argv[0] is "fault", argv[1] add|clear|list. On success a change is
 * reported with *changed = true and *next = the set to publish (NULL: no rules); the caller
 * publishes it, then frees current once readers are done. Text for the reply goes to reply;
 * every change is logged (event=fault action=add|clear). Returns 0 or a BALLAST_E* code. */
int fault_command(const struct fault_rules *current, int argc, char **argv,
                  struct control_reply *reply, struct fault_rules **next, bool *changed);

/* --- per query ---------------------------------------------------------------------------- */

enum fault_action {
    FAULT_ACTION_ANSWER,  /* answer normally */
    FAULT_ACTION_DROP,    /* send nothing */
    FAULT_ACTION_DELAY,   /* answer normally, delay_ms later */
    FAULT_ACTION_REWRITE, /* send fault_write_response() instead of the answer */
};

struct fault_decision {
    enum fault_action action;
    enum fault_kind kind; /* the rule that applied (not for FAULT_ACTION_ANSWER) */
    uint32_t delay_ms;
    bool over_tcp;
    bool parsed; /* query below holds the parsed query */
    struct wire_query query;
};

/* Decide what to do with one query: the first rule covering its name applies (loss draws with
 * libsodium's randombytes_uniform). A query whose question cannot be read is only affected by
 * rules without a name, and never rewritten. With no rules, returns at once without parsing. */
void fault_decide(const struct fault_rules *rules, const uint8_t *query, size_t query_len,
                  bool over_tcp, struct fault_decision *out);

/* The negative-answer SOA for empty/nxdomain (RFC 2308 §3), taken from the zone of the name. */
struct fault_soa {
    const uint8_t *owner; /* the zone apex, uncompressed wire form */
    size_t owner_len;
    const uint8_t *rdata; /* uncompressed wire form */
    uint16_t rdlen;
    uint32_t ttl; /* min(SOA TTL, SOA MINIMUM) */
};

/* Write the response a FAULT_ACTION_REWRITE decision asks for: the header and question, the SOA
 * (soa may be NULL) for empty/nxdomain, and an OPT advertising edns_udp_size when the query had
 * one (RFC 6891 §7). Returns the length, or 0 when resp_cap is too small. */
size_t fault_write_response(const struct fault_decision *decision, const uint8_t *query,
                            const struct fault_soa *soa, uint16_t edns_udp_size, uint8_t *resp,
                            size_t resp_cap);

/* --- counters ----------------------------------------------------------------------------- */

/* Faults applied, per worker (one writer: the worker; read with relaxed loads). */
struct fault_counters {
    uint64_t applied[FAULT_KIND_COUNT];
    uint64_t delay_overflow; /* delayed answers dropped: FAULT_PENDING_MAX were waiting */
};

static inline void fault_counters_bump(uint64_t *counter)
{
    __atomic_store_n(counter, *counter + 1, __ATOMIC_RELAXED);
}

/* sum += one, reading one with relaxed loads (another thread writes it). */
void fault_counters_add(struct fault_counters *sum, const struct fault_counters *one);
/* Lines for `stats`: fault_rules=, fault_dropped=, fault_delayed=, fault_rewritten=, then one
 * fault_<kind>= per kind and fault_delay_overflow=. */
void fault_counters_print(const struct fault_counters *sum, const struct fault_rules *rules,
                          struct control_reply *reply);

/* --- delayed replies ---------------------------------------------------------------------- */

/* Answers waiting for their time on one loop, each with its own timer and a copy of the
 * response. Owned by the worker; use on the loop's thread only. */
struct fault_delayer;

int fault_delayer_create(uv_loop_t *loop, size_t max_pending, struct fault_delayer **out);
/* Send resp (copied) through reply delay_ms from now. The token is consumed either way: when
 * max_pending answers already wait (BALLAST_ELIMIT) or memory runs out (BALLAST_ENOMEM), the
 * reply is dropped. */
int fault_delayer_send(struct fault_delayer *delayer, struct listener_reply *reply,
                       const uint8_t *resp, size_t len, uint32_t delay_ms);
size_t fault_delayer_pending(const struct fault_delayer *delayer);
/* Drop every waiting answer and free the delayer once libuv has closed the timers (the loop must
 * run afterwards). NULL is allowed. */
void fault_delayer_close(struct fault_delayer *delayer);

#endif
