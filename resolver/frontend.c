/* The resolver's frontend: per worker, the listeners (deferred answers), the outbound engine the
 * iterator sends through, and one client_query per query in flight with its patience timer. */
#include "frontend.h"

#include <stdlib.h>
#include <string.h>
#include <urcu/pointer.h>
#include <urcu/urcu-memb.h>

#include "acl.h"
#include "errors.h"
#include "listener.h"
#include "log.h"
#include "outbound.h"
#include "wire.h"

const char *const frontend_counter_names[FRONTEND_COUNTER_COUNT] = {
    "queries",          "queries_tcp",     "answers_from_cache",
    "answers_resolved", "answers_noerror", "answers_nxdomain",
    "answers_servfail", "answers_refused", "answers_formerr",
    "answers_notimp",   "dropped",         "acl_refused",
    "query_timeouts",
};

struct frontend {
    uv_loop_t *loop;
    struct frontend_shared shared;
    struct outbound *outbound;
    struct listener *listeners[RESOLVER_MAX_LISTEN];
    size_t listener_count;
    struct client_query *queries; /* in flight, doubly linked */
    uint64_t counters[FRONTEND_COUNTER_COUNT];
    uint8_t resp[LIMIT_DNS_MESSAGE_MAX];
    bool closing;
};

/* One client query from arrival to answer. */
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
    struct client_query *prev, *next;
    bool over_tcp;
};

/* --- snapshots ---------------------------------------------------------------------------- */

struct frontend_snapshot *frontend_snapshot_new(struct resolver_config *cfg,
                                                const struct iter_hints *hints)
{
    struct frontend_snapshot *snapshot = calloc(1, sizeof *snapshot);
    if (!snapshot)
        return NULL;
    snapshot->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    snapshot->hints = *hints;
    snapshot->refs = 1;
    return snapshot;
}

void frontend_snapshot_release(struct frontend_snapshot *snapshot)
{
    if (snapshot && __atomic_sub_fetch(&snapshot->refs, 1, __ATOMIC_ACQ_REL) == 0) {
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
    return outbound_send(frontend->outbound, &oq, done, ctx, (struct outbound_request **)handle);
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

/* Send (resp_len > 0) or drop the answer and release everything the query holds. */
static void client_query_end(struct client_query *cq, const uint8_t *resp, size_t resp_len)
{
    struct frontend *frontend = cq->frontend;
    if (cq->reply) {
        if (resp_len > 0)
            listener_reply_send(cq->reply, resp, resp_len);
        else
            listener_reply_drop(cq->reply);
        cq->reply = NULL;
    }
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

static size_t client_query_limit(const struct client_query *cq)
{
    if (cq->over_tcp)
        return LIMIT_DNS_MESSAGE_MAX;
    if (!cq->q.has_edns)
        return LIMIT_UDP_MIN_PAYLOAD;
    uint16_t ours = cq->snapshot->cfg.limits.edns_udp_size;
    size_t size = cq->q.edns_udp_size < ours ? cq->q.edns_udp_size : ours;
    return size < LIMIT_UDP_MIN_PAYLOAD ? LIMIT_UDP_MIN_PAYLOAD : size;
}

static void client_query_on_done(void *ctx, struct iter_request *req)
{
    struct client_query *cq = ctx;
    struct frontend *frontend = cq->frontend;
    const struct iter_budget *budget = iter_request_budget(req);
    frontend_bump(frontend, budget->outbound > 0 ? FRONTEND_RESOLVED : FRONTEND_CACHE_ANSWERS);
    frontend_count_rcode(frontend, iter_request_rcode(req));
    if (iter_request_rcode(req) == WIRE_RCODE_SERVFAIL)
        log_debug("servfail", "reason=\"%s\" outbound=%u referrals=%u",
                  iter_request_failure(req) ? iter_request_failure(req) : "", budget->outbound,
                  budget->referrals);
    size_t len =
        iter_write_response(req, cq->packet, &cq->q, cq->snapshot->cfg.limits.edns_udp_size,
                            frontend->resp, client_query_limit(cq));
    cq->req = req; /* freed by client_query_end */
    client_query_end(cq, frontend->resp, len);
}

/* The client's patience ran out (query-timeout): answer SERVFAIL rather than nothing. */
static void client_query_on_patience(uv_timer_t *timer)
{
    struct client_query *cq = timer->data;
    struct frontend *frontend = cq->frontend;
    frontend_bump(frontend, FRONTEND_TIMEOUTS);
    frontend_count_rcode(frontend, WIRE_RCODE_SERVFAIL);
    size_t len = wire_write_error(cq->packet, &cq->q, WIRE_RCODE_SERVFAIL, WIRE_FLAG_RA,
                                  frontend->resp, sizeof frontend->resp);
    client_query_end(cq, frontend->resp, len);
}

/* Answer at once with an error RCODE (FORMERR, NOTIMP, REFUSED). */
static void frontend_answer_error(struct frontend *frontend, const uint8_t *query,
                                  const struct wire_query *q, uint16_t rcode,
                                  struct listener_reply *reply)
{
    frontend_count_rcode(frontend, rcode);
    size_t len =
        wire_write_error(query, q, rcode, WIRE_FLAG_RA, frontend->resp, sizeof frontend->resp);
    if (len > 0)
        listener_reply_send(reply, frontend->resp, len);
    else
        listener_reply_drop(reply);
}

static bool frontend_refused_type(uint16_t qtype)
{
    return qtype == WIRE_TYPE_AXFR || qtype == WIRE_TYPE_IXFR || qtype == WIRE_TYPE_OPT ||
           (qtype >= 128 && qtype <= 254 && qtype != WIRE_TYPE_ANY);
}

static void frontend_on_query(void *ctx, const uint8_t *query, size_t query_len,
                              const struct sockaddr *peer, bool over_tcp,
                              struct listener_reply *reply)
{
    struct frontend *frontend = ctx;
    frontend_bump(frontend, over_tcp ? FRONTEND_QUERIES_TCP : FRONTEND_QUERIES);
    if (frontend->closing) {
        listener_reply_drop(reply);
        return;
    }
    struct wire_query q;
    int rc = wire_parse_query(query, query_len, &q);
    if (rc == BALLAST_EINVAL) {
        frontend_bump(frontend, FRONTEND_DROPPED);
        listener_reply_drop(reply);
        return;
    }
    struct frontend_snapshot *snapshot = frontend_snapshot_acquire(frontend);
    enum acl_action action = acl_check(&snapshot->cfg.acl, peer);
    if (action == ACL_DENY) {
        frontend_bump(frontend, FRONTEND_DROPPED);
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
        struct client_query *cq = calloc(1, sizeof *cq);
        uint8_t *packet = cq ? malloc(query_len) : NULL;
        if (!packet) {
            free(cq);
            frontend_answer_error(frontend, query, &q, WIRE_RCODE_SERVFAIL, reply);
            frontend_snapshot_release(snapshot);
            return;
        }
        memcpy(packet, query, query_len);
        cq->frontend = frontend;
        cq->snapshot = snapshot;
        cq->reply = reply;
        cq->packet = packet;
        cq->packet_len = query_len;
        cq->q = q;
        cq->q.edns_options = NULL; /* pointed into the listener's buffer */
        cq->over_tcp = over_tcp;
        cq->env = (struct iter_env){
            .cache = frontend->shared.cache,
            .infra = frontend->shared.infra,
            .cfg = &snapshot->cfg,
            .hints = &snapshot->hints,
            .transport = {frontend_transport_send, frontend_transport_cancel, frontend,
                          frontend_transport_now},
        };
        uv_timer_init(frontend->loop, &cq->patience);
        cq->patience.data = cq;
        cq->next = frontend->queries;
        if (frontend->queries)
            frontend->queries->prev = cq;
        frontend->queries = cq;
        uv_timer_start(&cq->patience, client_query_on_patience,
                       snapshot->cfg.resolution.query_timeout_ms, 0);
        struct iter_request *req = NULL;
        bool recursion = (q.flags & WIRE_FLAG_RD) != 0;
        rc = recursion ? iter_request_start(&cq->env, q.qname, q.qname_len, q.qtype,
                                            client_query_on_done, cq, &req)
                       : iter_request_cache_only(&cq->env, q.qname, q.qname_len, q.qtype,
                                                 client_query_on_done, cq, &req);
        if (rc == 0 && cq->reply && !cq->req)
            cq->req = req; /* still resolving */
        else if (rc != 0)
            client_query_on_patience(&cq->patience);
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
