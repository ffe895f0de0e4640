/* The resolver's frontend: per worker, the listeners (deferred answers), the outbound engine the
 * iterator sends through, and one client_query per query in flight with its patience timer. */
#include "frontend.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <urcu/pointer.h>
#include <urcu/urcu-memb.h>

#include "acl.h"
#include "cookie.h"
#include "errors.h"
#include "listener.h"
#include "log.h"
#include "outbound.h"
#include "rrl.h"
#include "wire.h"

const char *const frontend_counter_names[FRONTEND_COUNTER_COUNT] = {
    "queries",          "queries_tcp",     "answers_from_cache",
    "answers_resolved", "answers_noerror", "answers_nxdomain",
    "answers_servfail", "answers_refused", "answers_formerr",
    "answers_notimp",   "dropped",         "acl_refused",
    "query_timeouts",   "stale_answers",   "stale_on_timer",
    "stale_on_failure", "stale_at_once",   "stale_suspect",
    "prefetches",       "refreshes",       "refreshes_skipped",
    "overload",         "client_limited",  "answers_truncated",
};

struct frontend {
    uv_loop_t *loop;
    struct frontend_shared shared;
    struct outbound *outbound;
    struct listener *listeners[RESOLVER_MAX_LISTEN];
    size_t listener_count;
    struct client_query *queries; /* in flight, doubly linked */
    uint32_t pending;             /* resolutions running (client or background) */
    uint32_t refreshing;          /* of which background refreshes and prefetches */
    uint64_t counters[FRONTEND_COUNTER_COUNT];
    struct metrics_qtypes qtypes;
    struct metrics_latency latency; /* receipt to reply sent */
    uint64_t received_ns;           /* uv_hrtime() when frontend_on_query got the query */
    uint8_t resp[LIMIT_DNS_MESSAGE_MAX];
    const struct sockaddr *peer; /* client of the query frontend_on_query is reading (query log) */
    bool closing;
};

/* Where a client query's timer is (serve-stale, RFC 8767 §5). */
enum client_phase {
    CLIENT_PHASE_CLIENT_TIMER, /* waiting; at the client timer, answer stale if there is any */
    CLIENT_PHASE_PATIENCE,     /* waiting; at query-timeout, SERVFAIL */
    CLIENT_PHASE_BACKGROUND,   /* client answered (or none): resolving to refresh the cache */
};

/* One client query from arrival to answer, or a background refresh (no reply). */
struct client_query {
    struct frontend *frontend;
    struct frontend_snapshot *snapshot; /* one reference held */
    struct listener_reply *reply;
    struct iter_env env;
    struct iter_request *req;
    uv_timer_t patience;
    struct wire_query q;
    uint8_t *packet; /* the client's query, copied */
    size_t packet_len;
    uint8_t cookie[COOKIE_OPTION_MAX]; /* our COOKIE option for the answer (RFC 7873 §5.2) */
    size_t cookie_len;                 /* 0: the client sent none */
    struct client_query *prev, *next;
    enum client_phase phase;
    uint64_t started_ms;
    uint64_t received_ns; /* for the latency histogram */
    bool over_tcp;
    bool running;      /* counted in frontend->pending */
    bool refreshing;   /* counted in frontend->refreshing */
    bool refresh_slot; /* holds the stale table's refresh slot for the question */
    /* server.log-queries only: */
    struct sockaddr_storage client;
    const char *source; /* where the answer came from: cache, stale; NULL: resolved */
};

/* --- snapshots ---------------------------------------------------------------------------- */

struct frontend_snapshot *frontend_snapshot_new(struct resolver_config *cfg,
                                                const struct iter_hints *hints)
{
    struct frontend_snapshot *snapshot = calloc(1, sizeof *snapshot);
    if (!snapshot)
        return NULL;
    /* A reload starts the buckets over: a client's count is at most one burst off. */
    if (cfg->client_limits.enable &&
        rrl_create(&cfg->client_limits, &snapshot->client_limits) != 0) {
        free(snapshot);
        return NULL;
    }
    snapshot->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    snapshot->hints = *hints;
    snapshot->refs = 1;
    return snapshot;
}

void frontend_snapshot_release(struct frontend_snapshot *snapshot)
{
    if (snapshot && __atomic_sub_fetch(&snapshot->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        rrl_free(snapshot->client_limits);
        resolver_config_free(&snapshot->cfg);
        free(snapshot);
    }
}

/* Take a reference to the current snapshot (RCU protects the load against a concurrent swap). */
static struct frontend_snapshot *frontend_snapshot_acquire(struct frontend *frontend)
{
    urcu_memb_read_lock();
    struct frontend_snapshot *snapshot = rcu_dereference(*frontend->shared.snapshot);
    __atomic_add_fetch(&snapshot->refs, 1, __ATOMIC_ACQ_REL);
    urcu_memb_read_unlock();
    return snapshot;
}

/* --- counters ----------------------------------------------------------------------------- */

static void frontend_bump(struct frontend *frontend, enum frontend_counter counter)
{
    __atomic_store_n(&frontend->counters[counter], frontend->counters[counter] + 1,
                     __ATOMIC_RELAXED);
}

uint64_t frontend_counter(const struct frontend *frontend, enum frontend_counter counter)
{
    return __atomic_load_n(&frontend->counters[counter], __ATOMIC_RELAXED);
}

void frontend_outbound_stats(const struct frontend *frontend, struct outbound_stats *out)
{
    outbound_get_stats(frontend->outbound, out);
}

void frontend_add_listener_stats(const struct frontend *frontend, struct listener_stats *sum)
{
    for (size_t l = 0; l < frontend->listener_count; l++)
        listener_stats_add(sum, frontend->listeners[l]);
}

void frontend_add_metrics(const struct frontend *frontend, struct metrics_qtypes *qtypes,
                          struct metrics_latency *latency)
{
    metrics_qtypes_add(qtypes, &frontend->qtypes);
    metrics_latency_add(latency, &frontend->latency);
}

static void frontend_count_rcode(struct frontend *frontend, uint16_t rcode)
{
    switch (rcode) {
    case WIRE_RCODE_NOERROR:
        frontend_bump(frontend, FRONTEND_NOERROR);
        break;
    case WIRE_RCODE_NXDOMAIN:
        frontend_bump(frontend, FRONTEND_NXDOMAIN);
        break;
    case WIRE_RCODE_REFUSED:
        frontend_bump(frontend, FRONTEND_REFUSED);
        break;
    case WIRE_RCODE_FORMERR:
        frontend_bump(frontend, FRONTEND_FORMERR);
        break;
    case WIRE_RCODE_NOTIMP:
        frontend_bump(frontend, FRONTEND_NOTIMP);
        break;
    default:
        frontend_bump(frontend, FRONTEND_SERVFAIL);
        break;
    }
}

/* --- transport for the iterator ----------------------------------------------------------- */

static int frontend_transport_send(void *io, const struct iter_send *q, iter_send_done_fn done,
                                   void *ctx, void **handle)
{
    struct frontend *frontend = io;
    struct outbound_query oq = {
        .server = q->server,
        .qname = q->qname,
        .qname_len = q->qname_len,
        .qtype = q->qtype,
        .qclass = WIRE_CLASS_IN,
        .edns = q->edns,
        .rd = q->rd,
        .tcp = false,
        .timeout_ms = q->timeout_ms ? q->timeout_ms : 1,
    };
    int rc = outbound_send(frontend->outbound, &oq, done, ctx, (struct outbound_request **)handle);
    if (rc == 0)
        infra_count_query(frontend->shared.infra, q->server);
    return rc;
}

static void frontend_transport_cancel(void *io, void *handle)
{
    outbound_cancel(handle);
}

static uint64_t frontend_transport_now(void *io)
{
    struct frontend *frontend = io;
    return uv_now(frontend->loop);
}

/* --- client queries ----------------------------------------------------------------------- */

static void client_query_on_closed(uv_handle_t *handle)
{
    struct client_query *cq = handle->data;
    frontend_snapshot_release(cq->snapshot);
    free(cq->packet);
    free(cq);
}

/* server.log-queries: one line per answer sent (docs/resolver.md, Logs). */
static void frontend_log_query(const struct sockaddr *client, bool over_tcp, const uint8_t *query,
                               size_t query_len, unsigned rcode, const char *source, uint64_t ms)
{
    char text[LOG_QUERY_TEXT_MAX];
    log_info("query", "%s source=%s ms=%" PRIu64,
             log_query_describe(text, client, over_tcp, query, query_len, rcode), source, ms);
}

static void client_query_log(const struct client_query *cq, const uint8_t *resp, size_t resp_len)
{
    if (resp_len < WIRE_HEADER_LEN)
        return;
    frontend_log_query((const struct sockaddr *)&cq->client, cq->over_tcp, cq->packet,
                       cq->packet_len, WIRE_RCODE(resp[3]), cq->source ? cq->source : "resolved",
                       uv_now(cq->frontend->loop) - cq->started_ms);
}

/* Send (resp_len > 0) or drop the answer; the query may go on resolving in the background. */
static void client_query_reply(struct client_query *cq, const uint8_t *resp, size_t resp_len)
{
    struct frontend *frontend = cq->frontend;
    if (cq->reply && resp == frontend->resp && resp_len > 0 && cq->cookie_len > 0)
        resp_len = cookie_append_to_response(frontend->resp, resp_len, sizeof frontend->resp,
                                             cq->cookie, cq->cookie_len);
    if (cq->reply && log_queries_enabled())
        client_query_log(cq, resp, resp_len);
    if (cq->reply) {
        if (resp_len > 0) {
            /* observed first: a client that has its answer finds it counted in the histogram */
            metrics_latency_observe_since(&frontend->latency, cq->received_ns);
            if (resp_len >= 4 && (wire_read_u16(resp + 2) & WIRE_FLAG_TC))
                frontend_bump(frontend, FRONTEND_TRUNCATED);
            listener_reply_send(cq->reply, resp, resp_len);
        } else {
            listener_reply_drop(cq->reply);
        }
        cq->reply = NULL;
    }
}

/* Send (resp_len > 0) or drop the answer and release everything the query holds. */
static void client_query_end(struct client_query *cq, const uint8_t *resp, size_t resp_len)
{
    struct frontend *frontend = cq->frontend;
    client_query_reply(cq, resp, resp_len);
    if (cq->running)
        frontend->pending--;
    if (cq->refreshing)
        frontend->refreshing--;
    if (cq->refresh_slot)
        stale_refresh_end(frontend->shared.stale, cq->q.qname, cq->q.qname_len, cq->q.qtype);
    cq->running = cq->refreshing = cq->refresh_slot = false;
    if (cq->prev)
        cq->prev->next = cq->next;
    else
        frontend->queries = cq->next;
    if (cq->next)
        cq->next->prev = cq->prev;
    iter_request_free(cq->req);
    cq->req = NULL;
    uv_timer_stop(&cq->patience);
    uv_close((uv_handle_t *)&cq->patience, client_query_on_closed);
}

/* The response size limit, less the room client_query_reply needs for our COOKIE option. */
static size_t client_query_limit(const struct client_query *cq)
{
    if (cq->over_tcp)
        return LIMIT_DNS_MESSAGE_MAX - cq->cookie_len;
    if (!cq->q.has_edns)
        return LIMIT_UDP_MIN_PAYLOAD;
    uint16_t ours = cq->snapshot->cfg.limits.edns_udp_size;
    size_t size = cq->q.edns_udp_size < ours ? cq->q.edns_udp_size : ours;
    return (size < LIMIT_UDP_MIN_PAYLOAD ? LIMIT_UDP_MIN_PAYLOAD : size) - cq->cookie_len;
}

static void frontend_start_refresh(struct frontend *frontend, struct frontend_snapshot *snapshot,
                                   const uint8_t *qname, size_t qname_len, uint16_t qtype,
                                   enum frontend_counter counter);

/* Answer the waiting client from stale cache data (RFC 8767), counted under reason. Returns
 * false, answering nothing, when serve-stale is off or the cache cannot answer the question. */
static bool client_query_answer_stale(struct client_query *cq, enum frontend_counter reason)
{
    struct frontend *frontend = cq->frontend;
    struct iter_request *stale = NULL;
    if (!cq->reply || !cq->snapshot->cfg.stale.enable || cq->packet == NULL ||
        iter_request_stale(&cq->env, cq->q.qname, cq->q.qname_len, cq->q.qtype, &stale) != 0)
        return false;
    size_t len =
        iter_write_response(stale, cq->packet, &cq->q, cq->snapshot->cfg.limits.edns_udp_size,
                            frontend->resp, client_query_limit(cq));
    frontend_bump(frontend, FRONTEND_CACHE_ANSWERS);
    frontend_count_rcode(frontend, iter_request_rcode(stale));
    cq->source = iter_request_from_stale(stale) ? "stale" : "cache";
    if (iter_request_from_stale(stale)) {
        frontend_bump(frontend, FRONTEND_STALE_ANSWERS);
        frontend_bump(frontend, reason);
    }
    iter_request_free(stale);
    client_query_reply(cq, frontend->resp, len);
    return true;
}

/* Record how a resolution of the client's question ended, for the failure recheck timer. */
static void client_query_note_outcome(struct client_query *cq, struct iter_request *req)
{
    const struct resolver_config *cfg = &cq->snapshot->cfg;
    struct stale_table *table = cq->frontend->shared.stale;
    if (!cfg->stale.enable)
        return;
    if (iter_request_rcode(req) == WIRE_RCODE_SERVFAIL) {
        const char *failure = iter_request_failure(req);
        if (failure == NULL || strcmp(failure, "canceled") != 0)
            stale_mark_failed(table, cq->q.qname, cq->q.qname_len, cq->q.qtype,
                              uv_now(cq->frontend->loop), cfg->stale.failure_recheck_ms);
    } else {
        stale_mark_resolved(table, cq->q.qname, cq->q.qname_len, cq->q.qtype);
    }
}

static void client_query_on_done(void *ctx, struct iter_request *req)
{
    struct client_query *cq = ctx;
    struct frontend *frontend = cq->frontend;
    const struct iter_budget *budget = iter_request_budget(req);
    bool resolved = budget->outbound > 0 || cq->running;
    cq->req = req; /* freed by client_query_end */
    if (cq->running)
        client_query_note_outcome(cq, req);
    if (!cq->reply) { /* a background refresh: the cache is updated, nobody to answer */
        client_query_end(cq, NULL, 0);
        return;
    }
    uint16_t rcode = iter_request_rcode(req);
    if (rcode == WIRE_RCODE_SERVFAIL &&
        client_query_answer_stale(cq, iter_request_suspect(req) ? FRONTEND_STALE_SUSPECT
                                                                : FRONTEND_STALE_ON_FAILURE)) {
        if (iter_request_suspect(req))
            frontend_bump(frontend, FRONTEND_STALE_ON_FAILURE);
        client_query_end(cq, NULL, 0);
        return;
    }
    frontend_bump(frontend, resolved ? FRONTEND_RESOLVED : FRONTEND_CACHE_ANSWERS);
    frontend_count_rcode(frontend, rcode);
    if (rcode == WIRE_RCODE_SERVFAIL)
        log_debug("servfail", "reason=\"%s\" outbound=%u referrals=%u",
                  iter_request_failure(req) ? iter_request_failure(req) : "", budget->outbound,
                  budget->referrals);
    size_t len =
        iter_write_response(req, cq->packet, &cq->q, cq->snapshot->cfg.limits.edns_udp_size,
                            frontend->resp, client_query_limit(cq));
    bool prefetch = !resolved && iter_request_prefetch_due(req) && cq->snapshot->cfg.stale.prefetch;
    cq->source = resolved ? NULL : "cache";
    client_query_reply(cq, frontend->resp, len);
    if (prefetch)
        frontend_start_refresh(frontend, cq->snapshot, cq->q.qname, cq->q.qname_len, cq->q.qtype,
                               FRONTEND_PREFETCHES);
    client_query_end(cq, NULL, 0);
}

/* SERVFAIL to a client whose resolution ran out of time (with EDE 22, RFC 8914). */
static void client_query_servfail(struct client_query *cq, int ede)
{
    struct frontend *frontend = cq->frontend;
    frontend_count_rcode(frontend, WIRE_RCODE_SERVFAIL);
    size_t len = iter_write_servfail(cq->packet, &cq->q, cq->snapshot->cfg.limits.edns_udp_size,
                                     ede, frontend->resp, client_query_limit(cq));
    client_query_end(cq, frontend->resp, len);
}

/* The query's timer: the client timer (answer stale now, go on resolving), then query-timeout
 * (SERVFAIL, or the end of a background refresh). */
static void client_query_on_patience(uv_timer_t *timer)
{
    struct client_query *cq = timer->data;
    struct frontend *frontend = cq->frontend;
    uint32_t query_timeout = cq->snapshot->cfg.resolution.query_timeout_ms;
    uint64_t elapsed = uv_now(frontend->loop) - cq->started_ms;
    uint64_t left = elapsed < query_timeout ? query_timeout - elapsed : 1;
    if (cq->phase == CLIENT_PHASE_CLIENT_TIMER) {
        cq->phase = client_query_answer_stale(cq, FRONTEND_STALE_ON_TIMER) ? CLIENT_PHASE_BACKGROUND
                                                                           : CLIENT_PHASE_PATIENCE;
        uv_timer_start(&cq->patience, client_query_on_patience, left, 0);
        return;
    }
    frontend_bump(frontend, FRONTEND_TIMEOUTS);
    if (cq->running && cq->snapshot->cfg.stale.enable)
        stale_mark_failed(frontend->shared.stale, cq->q.qname, cq->q.qname_len, cq->q.qtype,
                          uv_now(frontend->loop), cq->snapshot->cfg.stale.failure_recheck_ms);
    if (!cq->reply) {
        client_query_end(cq, NULL, 0);
        return;
    }
    client_query_servfail(cq, STALE_EDE_NO_REACHABLE_AUTHORITY);
}

/* Answer at once with an error RCODE (FORMERR, NOTIMP, REFUSED). */
static void frontend_answer_error(struct frontend *frontend, const uint8_t *query,
                                  const struct wire_query *q, uint16_t rcode,
                                  struct listener_reply *reply)
{
    frontend_count_rcode(frontend, rcode);
    size_t len =
        wire_write_error(query, q, rcode, WIRE_FLAG_RA, frontend->resp, sizeof frontend->resp);
    if (len > 0 && log_queries_enabled())
        frontend_log_query(frontend->peer, listener_reply_is_tcp(reply), query, q->question_end,
                           rcode, "none", 0);
    if (len > 0) {
        metrics_latency_observe_since(&frontend->latency, frontend->received_ns);
        listener_reply_send(reply, frontend->resp, len);
    } else {
        listener_reply_drop(reply);
    }
}

/* A new client_query (or background refresh when reply is NULL and query NULL) holding the
 * snapshot reference, its timer initialised, linked into the frontend. NULL when out of memory
 * (the reference is then still the caller's). */
static struct client_query *client_query_new(struct frontend *frontend,
                                             struct frontend_snapshot *snapshot,
                                             struct listener_reply *reply, const uint8_t *query,
                                             size_t query_len, const struct wire_query *q)
{
    struct client_query *cq = calloc(1, sizeof *cq);
    uint8_t *packet = cq && query ? malloc(query_len) : NULL;
    if (!cq || (query && !packet)) {
        free(cq);
        return NULL;
    }
    if (query)
        memcpy(packet, query, query_len);
    if (reply && frontend->peer && log_queries_enabled())
        memcpy(&cq->client, frontend->peer,
               frontend->peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                     : sizeof(struct sockaddr_in));
    cq->frontend = frontend;
    cq->snapshot = snapshot;
    cq->reply = reply;
    cq->packet = packet;
    cq->packet_len = query_len;
    cq->q = *q;
    cq->q.edns_options = NULL; /* pointed into the listener's buffer */
    cq->started_ms = uv_now(frontend->loop);
    cq->received_ns = frontend->received_ns;
    cq->env = (struct iter_env){
        .cache = frontend->shared.cache,
        .infra = frontend->shared.infra,
        .cfg = &snapshot->cfg,
        .hints = &snapshot->hints,
        .transport = {frontend_transport_send, frontend_transport_cancel, frontend,
                      frontend_transport_now},
        .stale = frontend->shared.stale,
    };
    uv_timer_init(frontend->loop, &cq->patience);
    cq->patience.data = cq;
    cq->next = frontend->queries;
    if (frontend->queries)
        frontend->queries->prev = cq;
    frontend->queries = cq;
    return cq;
}

/* Start resolving for cq (its request created): count it and run. */
static void client_query_run(struct client_query *cq, uint64_t timeout_ms)
{
    cq->running = true;
    cq->frontend->pending++;
    uv_timer_start(&cq->patience, client_query_on_patience, timeout_ms ? timeout_ms : 1, 0);
    iter_request_run(cq->req); /* may end cq */
}

/* A background resolution of qname/qtype that refreshes the cache: a prefetch, or the refresh
 * behind a stale answer. Paced: at most an eighth of max-pending per worker at once, and one
 * per question across workers (the stale table's refresh slot). */
static void frontend_start_refresh(struct frontend *frontend, struct frontend_snapshot *snapshot,
                                   const uint8_t *qname, size_t qname_len, uint16_t qtype,
                                   enum frontend_counter counter)
{
    const struct resolver_config *cfg = &snapshot->cfg;
    uint32_t cap = cfg->resolution.max_pending / 8 ? cfg->resolution.max_pending / 8 : 1;
    if (frontend->closing || frontend->refreshing >= cap) {
        frontend_bump(frontend, FRONTEND_REFRESHES_SKIPPED);
        return;
    }
    uint64_t now = uv_now(frontend->loop);
    /* a question that just failed waits for its recheck time: prefetching it on every query in
     * the last part of its TTL would be a retry storm of its own */
    if (stale_recently_failed(frontend->shared.stale, qname, qname_len, qtype, now))
        return;
    if (!stale_refresh_begin(frontend->shared.stale, qname, qname_len, qtype, now,
                             cfg->resolution.query_timeout_ms))
        return; /* another worker or query is refreshing it */
    struct wire_query q = {
        .qname_len = (uint8_t)qname_len, .qtype = qtype, .qclass = WIRE_CLASS_IN};
    memcpy(q.qname, qname, qname_len);
    __atomic_add_fetch(&snapshot->refs, 1, __ATOMIC_ACQ_REL);
    struct client_query *cq = client_query_new(frontend, snapshot, NULL, NULL, 0, &q);
    if (!cq) {
        frontend_snapshot_release(snapshot);
        stale_refresh_end(frontend->shared.stale, qname, qname_len, qtype);
        return;
    }
    cq->refresh_slot = true;
    cq->phase = CLIENT_PHASE_BACKGROUND;
    if (iter_request_create(&cq->env, cq->q.qname, qname_len, qtype, client_query_on_done, cq,
                            &cq->req) != 0) {
        client_query_end(cq, NULL, 0);
        return;
    }
    iter_request_set_refresh(cq->req);
    cq->refreshing = true;
    frontend->refreshing++;
    frontend_bump(frontend, counter);
    client_query_run(cq, cfg->resolution.query_timeout_ms);
}

/* The serve-stale decision for a question the cache cannot answer fresh (RFC 8767 §5): answer
 * stale at once when the question failed within the failure recheck time, a refresh of it is
 * already running, or the worker is overloaded; answer stale at once and refresh in the
 * background when the client timer is 0 or the question failed before and its recheck time is
 * over (only the first client of an outage waits for the client timer); otherwise resolve with
 * the client timer armed. */
static void client_query_resolve(struct client_query *cq)
{
    struct frontend *frontend = cq->frontend;
    const struct resolver_config *cfg = &cq->snapshot->cfg;
    struct stale_table *table = frontend->shared.stale;
    const uint8_t *name = cq->q.qname;
    size_t len = cq->q.qname_len;
    uint16_t type = cq->q.qtype;
    uint64_t now = uv_now(frontend->loop);
    bool overloaded = frontend->pending >= cfg->resolution.max_pending;
    if (overloaded)
        frontend_bump(frontend, FRONTEND_OVERLOAD);
    if (cfg->stale.enable) {
        bool failed = stale_recently_failed(table, name, len, type, now);
        bool running =
            stale_refresh_running(table, name, len, type, now, cfg->resolution.query_timeout_ms);
        bool behind =
            cfg->stale.client_timeout_ms == 0 || stale_failed_before(table, name, len, type);
        if ((failed || running || overloaded || behind) &&
            client_query_answer_stale(cq, FRONTEND_STALE_AT_ONCE)) {
            if (!failed && !running && !overloaded)
                frontend_start_refresh(frontend, cq->snapshot, name, len, type, FRONTEND_REFRESHES);
            client_query_end(cq, NULL, 0);
            return;
        }
    }
    if (overloaded) {
        client_query_servfail(cq, STALE_EDE_NONE);
        return;
    }
    if (cfg->stale.enable)
        cq->refresh_slot =
            stale_refresh_begin(table, name, len, type, now, cfg->resolution.query_timeout_ms);
    bool client_timer = cfg->stale.enable && cfg->stale.client_timeout_ms > 0;
    cq->phase = client_timer ? CLIENT_PHASE_CLIENT_TIMER : CLIENT_PHASE_PATIENCE;
    client_query_run(cq, client_timer ? cfg->stale.client_timeout_ms
                                      : cfg->resolution.query_timeout_ms);
}

/* A recursive or cache-only client query that passed every check. */
static void client_query_start(struct frontend *frontend, struct frontend_snapshot *snapshot,
                               struct listener_reply *reply, const uint8_t *query, size_t query_len,
                               const struct wire_query *q, const struct sockaddr *peer,
                               const struct cookie *cookie, bool over_tcp)
{
    struct client_query *cq = client_query_new(frontend, snapshot, reply, query, query_len, q);
    if (!cq) {
        frontend_answer_error(frontend, query, q, WIRE_RCODE_SERVFAIL, reply);
        frontend_snapshot_release(snapshot);
        return;
    }
    cq->over_tcp = over_tcp;
    /* RFC 7873 §5.2.3-5.2.4: cookies are not required; a client that sent one gets ours. */
    cq->cookie_len =
        cookie_server_option(cookie, peer, (uint32_t)time(NULL), cq->cookie, sizeof cq->cookie);
    int rc;
    if ((q->flags & WIRE_FLAG_RD) == 0) {
        struct iter_request *req = NULL;
        rc = iter_request_cache_only(&cq->env, cq->q.qname, cq->q.qname_len, cq->q.qtype,
                                     client_query_on_done, cq, &req);
        if (rc != 0)
            client_query_servfail(cq, STALE_EDE_NONE);
        return;
    }
    rc = iter_request_create(&cq->env, cq->q.qname, cq->q.qname_len, cq->q.qtype,
                             client_query_on_done, cq, &cq->req);
    if (rc != 0) {
        client_query_servfail(cq, STALE_EDE_NONE);
        return;
    }
    if (iter_request_try_cache(cq->req))
        return; /* answered (and ended) by client_query_on_done */
    client_query_resolve(cq);
}

static bool frontend_refused_type(uint16_t qtype)
{
    return qtype == WIRE_TYPE_AXFR || qtype == WIRE_TYPE_IXFR || qtype == WIRE_TYPE_OPT ||
           (qtype >= 128 && qtype <= 254 && qtype != WIRE_TYPE_ANY);
}

/* Over its client-limits (docs/resolver-configuration.md)? Every query an allowed client sends,
 * over UDP or TCP, takes a token from its prefix's bucket; without one it is dropped, so a flood
 * costs the resolver no resolution and its victim no answer. There is no TC=1 slip: a resolver's
 * answers are not the amplifier RRL guards against; the limit is about the work. */
static bool frontend_client_limited(const struct frontend_snapshot *snapshot,
                                    const struct sockaddr *peer)
{
    return snapshot->client_limits &&
           rrl_check(snapshot->client_limits, peer, NULL, 0, rrl_now_ms()) != RRL_PASS;
}

static void frontend_on_query(void *ctx, const uint8_t *query, size_t query_len,
                              const struct sockaddr *peer, bool over_tcp,
                              struct listener_reply *reply)
{
    struct frontend *frontend = ctx;
    frontend->peer = peer;
    frontend->received_ns = uv_hrtime();
    frontend_bump(frontend, over_tcp ? FRONTEND_QUERIES_TCP : FRONTEND_QUERIES);
    if (frontend->closing) {
        listener_reply_drop(reply);
        return;
    }
    struct wire_query q;
    struct cookie cookie = {.present = false};
    int rc = wire_parse_query(query, query_len, &q);
    if (rc == BALLAST_EINVAL) {
        frontend_bump(frontend, FRONTEND_DROPPED);
        listener_reply_drop(reply);
        return;
    }
    if (rc == 0)
        metrics_qtypes_count(&frontend->qtypes, q.qtype);
    if (rc == 0 && q.has_edns) /* RFC 7873 §5.2.2: a malformed COOKIE option is FORMERR */
        rc = cookie_parse_option(q.edns_options, q.edns_options_len, &cookie);
    struct frontend_snapshot *snapshot = frontend_snapshot_acquire(frontend);
    enum acl_action action = acl_check(&snapshot->cfg.acl, peer);
    if (action == ACL_DENY) {
        frontend_bump(frontend, FRONTEND_DROPPED);
        listener_reply_drop(reply);
    } else if (action == ACL_ALLOW && frontend_client_limited(snapshot, peer)) {
        frontend_bump(frontend, FRONTEND_CLIENT_LIMITED);
        listener_reply_drop(reply);
    } else if (WIRE_OPCODE(q.flags) != 0) {
        if (rc != 0)
            q.question_end = 0;
        frontend_answer_error(frontend, query, &q, WIRE_RCODE_NOTIMP, reply);
    } else if (rc != 0) {
        frontend_answer_error(frontend, query, &q, WIRE_RCODE_FORMERR, reply);
    } else if (action != ACL_ALLOW) {
        frontend_bump(frontend, FRONTEND_ACL_REFUSED);
        frontend_answer_error(frontend, query, &q, WIRE_RCODE_REFUSED, reply);
    } else if (q.qclass != WIRE_CLASS_IN || frontend_refused_type(q.qtype)) {
        frontend_answer_error(frontend, query, &q, WIRE_RCODE_REFUSED, reply);
    } else {
        client_query_start(frontend, snapshot, reply, query, query_len, &q, peer, &cookie,
                           over_tcp);
        return; /* the snapshot reference now belongs to cq */
    }
    frontend_snapshot_release(snapshot);
}

/* --- lifetime ----------------------------------------------------------------------------- */

int frontend_open(uv_loop_t *loop, const struct frontend_shared *shared, struct frontend **out,
                  char *err_text, size_t err_len)
{
    struct frontend *frontend = calloc(1, sizeof *frontend);
    if (!frontend) {
        snprintf(err_text, err_len, "out of memory");
        return BALLAST_ENOMEM;
    }
    frontend->loop = loop;
    frontend->shared = *shared;
    int rc = outbound_create(loop, NULL, &frontend->outbound);
    if (rc != 0) {
        snprintf(err_text, err_len, "cannot start the outbound engine: %s", ballast_strerror(rc));
        free(frontend);
        return rc;
    }
    *out = frontend;
    const struct resolver_config *cfg = &(*shared->snapshot)->cfg;
    struct listener_options options = {
        .tcp_clients = cfg->limits.tcp_clients,
        .tcp_idle_timeout_ms = cfg->limits.tcp_idle_timeout_ms,
        .tcp_pipeline = cfg->limits.tcp_pipeline,
        .udp = true,
        .tcp = true,
    };
    for (size_t i = 0; i < cfg->listen_count; i++) {
        rc = listener_open_deferred(loop, &cfg->listen[i], &options, frontend_on_query, frontend,
                                    &frontend->listeners[i], err_text, err_len);
        if (rc != 0)
            return rc; /* the caller closes the frontend */
        frontend->listener_count++;
    }
    return BALLAST_OK;
}

void frontend_close(struct frontend *frontend)
{
    if (!frontend)
        return;
    frontend->closing = true;
    for (size_t i = 0; i < frontend->listener_count; i++)
        listener_close(frontend->listeners[i]);
    frontend->listener_count = 0;
    while (frontend->queries)
        client_query_end(frontend->queries, NULL, 0);
    outbound_free(frontend->outbound);
    free(frontend);
}
