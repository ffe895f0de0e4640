/* The running ballast-authd: worker threads each with its own libuv loop and SO_REUSEPORT
 * listeners, the zone snapshot they read under RCU, counters, and the main loop (signals,
 * control socket, staged reload, clean shutdown). */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <urcu/pointer.h>
#include <urcu/urcu-memb.h>

#include "answer.h"
#include "catalog.h"
#include "control.h"
#include "cookie.h"
#include "daemon.h"
#include "errors.h"
#include "fault.h"
#include "healthd.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "rrl.h"
#include "wire.h"
#include "workers.h"

#define SERVER_VERSION "0.1.0"

/* What workers answer from; replaced as a whole on reload and freed after a grace period. */
struct server_snapshot {
    struct zone_set *zones;
    struct limits limits;
    struct rrl *rrl; /* response rate limiting, shared by the workers; NULL when off */
};

/* Per-worker counters: one writer (the worker), read by the main thread with relaxed loads. */
enum server_counter {
    COUNTER_QUERIES_UDP,
    COUNTER_QUERIES_TCP,
    COUNTER_NOERROR,
    COUNTER_FORMERR,
    COUNTER_SERVFAIL,
    COUNTER_NXDOMAIN,
    COUNTER_NOTIMP,
    COUNTER_REFUSED,
    COUNTER_BADVERS,
    COUNTER_TRUNCATED,
    COUNTER_REFERRALS,
    COUNTER_DROPPED_MALFORMED,
    COUNTER_COUNT
};

static const char *const server_counter_names[COUNTER_COUNT] = {
    "queries_udp",      "queries_tcp",       "answers_noerror",  "answers_formerr",
    "answers_servfail", "answers_nxdomain",  "answers_notimp",   "answers_refused",
    "answers_badvers",  "answers_truncated", "answers_referral", "dropped_malformed",
};

struct worker {
    struct server *server;
    struct listener *listeners[AUTHD_MAX_LISTEN];
    size_t listener_count;
    uint64_t counters[COUNTER_COUNT];
    struct metrics_qtypes qtypes;   /* queries by QTYPE */
    struct metrics_latency latency; /* receipt to reply */
    /* --fault-injection only: */
    uint8_t *fault_resp; /* the answer being built (deferred listeners bring no buffer) */
    struct fault_delayer *fault_delayer;
    struct fault_counters faults;
};

struct server {
    struct authd_config cfg;
    struct server_snapshot *snapshot; /* RCU-protected */
    struct worker *workers;           /* one per thread of `threads` */
    unsigned worker_count;
    struct workers *threads;
    uv_loop_t loop;
    struct daemon *daemon;  /* signals, control socket, pid file */
    struct healthd *health; /* NULL without health-checked pools; kept across reloads */
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    time_t started;
    struct metrics_server *metrics; /* server.metrics; NULL when off */
    bool fault_injection;           /* --fault-injection */
    struct server_options options;  /* command-line settings, kept across reloads */
    struct fault_rules *faults;     /* RCU-protected; NULL: no rules */
};

/* --- the hot path ------------------------------------------------------------------------- */

/* Single writer, so a relaxed load-add-store is enough and avoids a locked instruction. */
static inline void worker_bump(struct worker *worker, enum server_counter counter)
{
    __atomic_store_n(&worker->counters[counter], worker->counters[counter] + 1, __ATOMIC_RELAXED);
}

static void worker_count_answer(struct worker *worker, const struct answer_info *info)
{
    enum server_counter counter;
    if (info->outcome == ANSWER_DROPPED) {
        counter = COUNTER_DROPPED_MALFORMED;
    } else {
        switch (info->rcode) {
        case WIRE_RCODE_NOERROR:
            counter = COUNTER_NOERROR;
            break;
        case WIRE_RCODE_FORMERR:
            counter = COUNTER_FORMERR;
            break;
        case WIRE_RCODE_NXDOMAIN:
            counter = COUNTER_NXDOMAIN;
            break;
        case WIRE_RCODE_NOTIMP:
            counter = COUNTER_NOTIMP;
            break;
        case WIRE_RCODE_REFUSED:
            counter = COUNTER_REFUSED;
            break;
        case WIRE_RCODE_BADVERS:
            counter = COUNTER_BADVERS;
            break;
        default:
            counter = COUNTER_SERVFAIL;
            break;
        }
        if (info->truncated)
            worker_bump(worker, COUNTER_TRUNCATED);
        if (info->referral)
            worker_bump(worker, COUNTER_REFERRALS);
    }
    worker_bump(worker, counter);
}

/* Response rate limiting (docs/authd.md): the response in resp as sent (len), cut to a TC=1 slip,
 * or 0 to send nothing. Only UDP is limited: a TCP client has proved its address (RFC 7766 §1),
 * and the slip sends real clients there. Call inside the RCU read-side section of snapshot. */
static size_t worker_rate_limit(const struct server_snapshot *snapshot, uint8_t *resp, size_t len,
                                const struct sockaddr *peer, bool over_tcp)
{
    if (!snapshot->rrl || over_tcp || len == 0)
        return len;
    uint8_t key[RRL_KEY_MAX];
    size_t key_len = rrl_response_key(resp, len, key);
    switch (rrl_check(snapshot->rrl, peer, key, key_len, rrl_now_ms())) {
    case RRL_PASS:
        return len;
    case RRL_SLIP:
        return rrl_slip_response(resp, len);
    default:
        return 0;
    }
}

/* server.log-queries: one line per answered query (docs/authd.md, Logs); size=0 when rate
 * limiting sent nothing. A packet dropped as malformed has no question to log. */
static void worker_log_query(const uint8_t *query, size_t query_len, const struct sockaddr *peer,
                             bool over_tcp, const struct answer_info *info, size_t len)
{
    if (info->outcome == ANSWER_DROPPED)
        return;
    char text[LOG_QUERY_TEXT_MAX];
    log_info("query", "%s size=%zu",
             log_query_describe(text, peer, over_tcp, query, query_len, info->rcode), len);
}

static size_t worker_on_query(void *ctx, const uint8_t *query, size_t query_len, uint8_t *resp,
                              size_t resp_cap, const struct sockaddr *peer, bool over_tcp)
{
    struct worker *worker = ctx;
    struct answer_info info;
    uint64_t received_ns = uv_hrtime();
    worker_bump(worker, over_tcp ? COUNTER_QUERIES_TCP : COUNTER_QUERIES_UDP);
    metrics_qtypes_count_query(&worker->qtypes, query, query_len);
    urcu_memb_read_lock();
    const struct server_snapshot *snapshot = rcu_dereference(worker->server->snapshot);
    const struct answer_client client = {peer, (uint32_t)time(NULL)}; /* DNS cookies */
    size_t len =
        answer_query_client(snapshot->zones, worker->server->health, &client, &snapshot->limits,
                            query, query_len, resp, resp_cap, over_tcp, &info);
    len = worker_rate_limit(snapshot, resp, len, peer, over_tcp);
    urcu_memb_read_unlock();
    worker_count_answer(worker, &info);
    if (log_queries_enabled())
        worker_log_query(query, query_len, peer, over_tcp, &info, len);
    if (len > 0) /* the listener sends it as soon as this returns */
        metrics_latency_observe_since(&worker->latency, received_ns);
    return len;
}

/* --- fault injection (--fault-injection only, common/fault.h) ----------------------------- */

/* The response a rewriting fault asks for, with the SOA of the name's zone for empty and
 * nxdomain. Call inside the RCU read-side section that gave snapshot. */
static size_t worker_fault_rewrite(struct worker *worker, const struct server_snapshot *snapshot,
                                   const struct fault_decision *decision, const uint8_t *query,
                                   const struct sockaddr *peer, struct answer_info *info)
{
    const struct wire_query *q = &decision->query;
    const struct zone *zone = zone_set_find(snapshot->zones, q->qname_lower, q->qname_len);
    struct fault_soa soa, *negative = NULL;
    if (zone && zone->soa && zone->soa->count > 0) {
        soa = (struct fault_soa){
            .owner = zone->apex,
            .owner_len = zone->apex_len,
            .rdata = zone->soa->data + 2, /* past RDLENGTH */
            .rdlen = wire_read_u16(zone->soa->data),
            .ttl = zone->negative_ttl,
        };
        negative = &soa;
    }
    size_t len = fault_write_response(decision, query, negative, snapshot->limits.edns_udp_size,
                                      worker->fault_resp, LIMIT_DNS_MESSAGE_MAX);
    /* A failing server that does cookies still answers with one (RFC 7873 §5.2): without it a
     * resolver that learnt our cookie would take the fault for a forgery. */
    struct cookie cookie = {.present = false};
    if (len > 0 && q->has_edns &&
        cookie_parse_option(q->edns_options, q->edns_options_len, &cookie) == 0 && cookie.present) {
        uint8_t option[COOKIE_OPTION_MAX];
        size_t option_len =
            cookie_server_option(&cookie, peer, (uint32_t)time(NULL), option, sizeof option);
        len = cookie_append_to_response(worker->fault_resp, len, LIMIT_DNS_MESSAGE_MAX, option,
                                        option_len);
    }
    memset(info, 0, sizeof *info);
    info->outcome = ANSWER_SENT;
    info->rcode = len ? WIRE_RCODE(worker->fault_resp[3]) : WIRE_RCODE_NOERROR;
    info->truncated = decision->kind == FAULT_TRUNCATE;
    return len;
}

/* The query path with fault injection on: listeners are deferred, and every answer is sent
 * at once except the ones a latency rule holds back. */
static void worker_on_query_faulty(void *ctx, const uint8_t *query, size_t query_len,
                                   const struct sockaddr *peer, bool over_tcp,
                                   struct listener_reply *reply)
{
    struct worker *worker = ctx;
    struct fault_decision decision;
    struct answer_info info;
    size_t len = 0;
    uint64_t received_ns = uv_hrtime();
    worker_bump(worker, over_tcp ? COUNTER_QUERIES_TCP : COUNTER_QUERIES_UDP);
    metrics_qtypes_count_query(&worker->qtypes, query, query_len);
    urcu_memb_read_lock();
    const struct server_snapshot *snapshot = rcu_dereference(worker->server->snapshot);
    fault_decide(rcu_dereference(worker->server->faults), query, query_len, over_tcp, &decision);
    if (decision.action == FAULT_ACTION_REWRITE)
        len = worker_fault_rewrite(worker, snapshot, &decision, query, peer, &info);
    else if (decision.action != FAULT_ACTION_DROP)
        len = answer_query_client(snapshot->zones, worker->server->health,
                                  &(struct answer_client){peer, (uint32_t)time(NULL)},
                                  &snapshot->limits, query, query_len, worker->fault_resp,
                                  LIMIT_DNS_MESSAGE_MAX, over_tcp, &info);
    if (decision.action != FAULT_ACTION_DROP)
        len = worker_rate_limit(snapshot, worker->fault_resp, len, peer, over_tcp);
    urcu_memb_read_unlock();
    if (decision.action != FAULT_ACTION_ANSWER)
        fault_counters_bump(&worker->faults.applied[decision.kind]);
    if (decision.action == FAULT_ACTION_DROP) {
        listener_reply_drop(reply);
        return;
    }
    worker_count_answer(worker, &info);
    if (log_queries_enabled())
        worker_log_query(query, query_len, peer, over_tcp, &info, len);
    if (len > 0 && decision.action != FAULT_ACTION_DELAY) /* a delayed one is not measured */
        metrics_latency_observe_since(&worker->latency, received_ns);
    if (len == 0)
        listener_reply_drop(reply);
    else if (decision.action != FAULT_ACTION_DELAY)
        listener_reply_send(reply, worker->fault_resp, len);
    else if (fault_delayer_send(worker->fault_delayer, reply, worker->fault_resp, len,
                                decision.delay_ms) != 0)
        fault_counters_bump(&worker->faults.delay_overflow);
}

static int worker_open_faulty(struct worker *worker, uv_loop_t *loop, char *err_text,
                              size_t err_len)
{
    worker->fault_resp = malloc(LIMIT_DNS_MESSAGE_MAX);
    if (!worker->fault_resp ||
        fault_delayer_create(loop, FAULT_PENDING_MAX, &worker->fault_delayer) != 0) {
        snprintf(err_text, err_len, "out of memory");
        return BALLAST_ENOMEM;
    }
    return BALLAST_OK;
}

static int server_fault_command(struct server *server, int argc, char **argv,
                                struct control_reply *reply)
{
    if (!server->fault_injection) {
        control_reply_printf(reply, "%s\n", FAULT_DISABLED_TEXT);
        return BALLAST_EINVAL;
    }
    struct fault_rules *next = NULL;
    bool changed = false;
    int rc = fault_command(server->faults, argc, argv, reply, &next, &changed);
    if (rc == 0 && changed) {
        struct fault_rules *old = rcu_xchg_pointer(&server->faults, next);
        urcu_memb_synchronize_rcu(); /* no worker still reads the old rules */
        fault_rules_free(old);
    }
    return rc;
}

/* --- workers ------------------------------------------------------------------------------ */

static void worker_thread_enter(void *ctx, unsigned index)
{
    urcu_memb_register_thread();
}

static void worker_thread_exit(void *ctx, unsigned index)
{
    urcu_memb_unregister_thread();
}

static void worker_close(void *ctx, unsigned index)
{
    struct worker *worker = &((struct server *)ctx)->workers[index];
    fault_delayer_close(worker->fault_delayer); /* before the listeners: it holds replies */
    worker->fault_delayer = NULL;
    for (size_t i = 0; i < worker->listener_count; i++)
        listener_close(worker->listeners[i]);
    worker->listener_count = 0;
}

static int worker_open(void *ctx, unsigned index, uv_loop_t *loop, char *err_text, size_t err_len)
{
    struct server *server = ctx;
    struct worker *worker = &server->workers[index];
    worker->server = server;
    struct listener_options options = {
        .tcp_clients = server->cfg.limits.tcp_clients,
        .tcp_idle_timeout_ms = server->cfg.limits.tcp_idle_timeout_ms,
        .tcp_pipeline = server->cfg.limits.tcp_pipeline,
        .udp = true,
        .tcp = true,
    };
    if (server->fault_injection && worker_open_faulty(worker, loop, err_text, err_len) != 0)
        return BALLAST_ENOMEM;
    for (size_t i = 0; i < server->cfg.listen_count; i++) {
        /* Without fault injection, the synchronous listener: no token per query. */
        int rc = server->fault_injection
                     ? listener_open_deferred(loop, &server->cfg.listen[i], &options,
                                              worker_on_query_faulty, worker, &worker->listeners[i],
                                              err_text, err_len)
                     : listener_open(loop, &server->cfg.listen[i], &options, worker_on_query,
                                     worker, &worker->listeners[i], err_text, err_len);
        if (rc != 0)
            return rc;
        worker->listener_count++;
    }
    return BALLAST_OK;
}

static const struct workers_callbacks server_worker_callbacks = {
    .open = worker_open,
    .close = worker_close,
    .thread_enter = worker_thread_enter,
    .thread_exit = worker_thread_exit,
};

/* --- counters and control ----------------------------------------------------------------- */

static uint64_t server_counter_sum(const struct server *server, enum server_counter counter)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < server->worker_count; i++)
        sum += __atomic_load_n(&server->workers[i].counters[counter], __ATOMIC_RELAXED);
    return sum;
}

static void server_listener_stats(const struct server *server, struct listener_stats *sum)
{
    memset(sum, 0, sizeof *sum);
    for (unsigned i = 0; i < server->worker_count; i++) {
        const struct worker *worker = &server->workers[i];
        for (size_t l = 0; l < worker->listener_count; l++)
            listener_stats_add(sum, worker->listeners[l]);
    }
}

/* Counters of the current rate-limit table (zeros when off); they start over when a reload
 * changes the rrl section. The main thread is the only writer of the snapshot pointer. */
static void server_print_rrl_stats(const struct server *server, struct control_reply *reply)
{
    struct rrl_stats rs = {0};
    if (server->snapshot->rrl)
        rrl_get_stats(server->snapshot->rrl, &rs);
    control_reply_printf(reply,
                         "rrl_passed=%llu\nrrl_slipped=%llu\nrrl_dropped=%llu\nrrl_exempt=%llu\n"
                         "rrl_evicted=%llu\n",
                         (unsigned long long)rs.passed, (unsigned long long)rs.slipped,
                         (unsigned long long)rs.dropped, (unsigned long long)rs.exempt,
                         (unsigned long long)rs.evicted);
}

static void server_print_stats(struct server *server, struct control_reply *reply)
{
    for (int c = 0; c < COUNTER_COUNT; c++)
        control_reply_printf(reply, "%s=%llu\n", server_counter_names[c],
                             (unsigned long long)server_counter_sum(server, c));
    struct listener_stats ls;
    server_listener_stats(server, &ls);
    control_reply_printf(reply,
                         "tcp_accepted=%llu\ntcp_refused=%llu\ntcp_idle_closed=%llu\n"
                         "tcp_bad_frames=%llu\nudp_send_errors=%llu\n",
                         (unsigned long long)ls.tcp_accepted, (unsigned long long)ls.tcp_refused,
                         (unsigned long long)ls.tcp_idle_closed,
                         (unsigned long long)ls.tcp_bad_frames,
                         (unsigned long long)ls.udp_send_errors);
    server_print_rrl_stats(server, reply);
    control_reply_printf(reply, "control_auth_failed=%llu\n",
                         (unsigned long long)control_auth_failures());
    control_reply_printf(reply, "reloads_ok=%llu\nreloads_failed=%llu\nzones=%zu\n",
                         (unsigned long long)server->reloads_ok,
                         (unsigned long long)server->reloads_failed,
                         server->snapshot->zones->count);
    if (server->health)
        healthd_stats(server->health, reply);
    if (server->fault_injection) {
        struct fault_counters faults;
        memset(&faults, 0, sizeof faults);
        for (unsigned i = 0; i < server->worker_count; i++)
            fault_counters_add(&faults, &server->workers[i].faults);
        fault_counters_print(&faults, server->faults, reply);
    }
}

/* --- Prometheus metrics (server.metrics; docs/authd.md lists them) ------------------------- */

static void server_collect_metrics(void *ctx, struct metrics_writer *w)
{
    struct server *server = ctx;
    metrics_family(w, "ballast_authd_queries_total", "counter", "Queries received.");
    metrics_sample(w, "ballast_authd_queries_total", "transport=\"udp\"",
                   server_counter_sum(server, COUNTER_QUERIES_UDP));
    metrics_sample(w, "ballast_authd_queries_total", "transport=\"tcp\"",
                   server_counter_sum(server, COUNTER_QUERIES_TCP));
    static const enum server_counter rcodes[] = {
        COUNTER_NOERROR, COUNTER_NXDOMAIN, COUNTER_SERVFAIL, COUNTER_REFUSED,
        COUNTER_FORMERR, COUNTER_NOTIMP,   COUNTER_BADVERS};
    static const char *const rcode_names[] = {"NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED",
                                              "FORMERR", "NOTIMP",   "BADVERS"};
    struct metrics_qtypes qtypes = {0};
    struct metrics_latency latency = {0};
    for (unsigned i = 0; i < server->worker_count; i++) {
        metrics_qtypes_add(&qtypes, &server->workers[i].qtypes);
        metrics_latency_add(&latency, &server->workers[i].latency);
    }
    metrics_write_qtypes(w, "ballast_authd_queries_by_type_total", "Queries, by QTYPE.", &qtypes);
    metrics_write_latency(w, "ballast_authd_query_duration_seconds",
                          "Time from query receipt to reply.", &latency);
    metrics_family(w, "ballast_authd_answers_total", "counter", "Answers sent, by RCODE.");
    for (size_t i = 0; i < sizeof rcodes / sizeof rcodes[0]; i++) {
        char labels[48];
        snprintf(labels, sizeof labels, "rcode=\"%s\"", rcode_names[i]);
        metrics_sample(w, "ballast_authd_answers_total", labels,
                       server_counter_sum(server, rcodes[i]));
    }
    metrics_single(w, "ballast_authd_answers_truncated_total", "counter", "Answers sent with TC=1.",
                   server_counter_sum(server, COUNTER_TRUNCATED));
    metrics_single(w, "ballast_authd_referrals_total", "counter", "Referrals sent.",
                   server_counter_sum(server, COUNTER_REFERRALS));
    struct listener_stats ls;
    server_listener_stats(server, &ls);
    metrics_family(w, "ballast_authd_dropped_total", "counter", "Packets dropped, by reason.");
    metrics_sample(w, "ballast_authd_dropped_total", "reason=\"malformed\"",
                   server_counter_sum(server, COUNTER_DROPPED_MALFORMED));
    metrics_sample(w, "ballast_authd_dropped_total", "reason=\"tcp_bad_frame\"", ls.tcp_bad_frames);
    metrics_sample(w, "ballast_authd_dropped_total", "reason=\"udp_send_error\"",
                   ls.udp_send_errors);
    metrics_family(w, "ballast_authd_tcp_connections_total", "counter",
                   "TCP connections, by what happened to them.");
    metrics_sample(w, "ballast_authd_tcp_connections_total", "event=\"accepted\"", ls.tcp_accepted);
    metrics_sample(w, "ballast_authd_tcp_connections_total", "event=\"refused\"", ls.tcp_refused);
    metrics_sample(w, "ballast_authd_tcp_connections_total", "event=\"idle_closed\"",
                   ls.tcp_idle_closed);
    struct rrl_stats rs = {0};
    if (server->snapshot->rrl)
        rrl_get_stats(server->snapshot->rrl, &rs);
    metrics_family(w, "ballast_authd_rrl_responses_total", "counter",
                   "Responses seen by response rate limiting, by decision.");
    metrics_sample(w, "ballast_authd_rrl_responses_total", "decision=\"passed\"", rs.passed);
    metrics_sample(w, "ballast_authd_rrl_responses_total", "decision=\"slipped\"", rs.slipped);
    metrics_sample(w, "ballast_authd_rrl_responses_total", "decision=\"dropped\"", rs.dropped);
    metrics_sample(w, "ballast_authd_rrl_responses_total", "decision=\"exempt\"", rs.exempt);
    metrics_family(w, "ballast_authd_reloads_total", "counter", "Reloads by result.");
    metrics_sample(w, "ballast_authd_reloads_total", "result=\"ok\"", server->reloads_ok);
    metrics_sample(w, "ballast_authd_reloads_total", "result=\"rejected\"", server->reloads_failed);
    metrics_single(w, "ballast_authd_control_auth_failures_total", "counter",
                   "TCP control connections refused for a wrong or missing MAC.",
                   control_auth_failures());
    metrics_single(w, "ballast_authd_zones", "gauge", "Zones served.",
                   server->snapshot->zones->count);
    metrics_single(w, "ballast_authd_start_time_seconds", "gauge", "Unix time the server started.",
                   (uint64_t)server->started);
    if (server->health)
        healthd_metrics(server->health, w);
}

static void server_print_zones(struct server *server, struct control_reply *reply)
{
    /* The main thread is the only writer of the snapshot, so it reads it without a lock. */
    const struct zone_set *zones = server->snapshot->zones;
    for (size_t i = 0; i < zones->count; i++) {
        const struct zone *zone = zones->zones[i];
        control_reply_printf(reply, "%s serial=%u records=%zu file=%s\n", zone->name_text,
                             zone->serial, zone->record_count, zone->file);
    }
}

static void server_print_status(struct server *server, struct control_reply *reply)
{
    control_reply_printf(reply, "version=%s\npid=%ld\nuptime_s=%lld\nworkers=%u\nzones=%zu\n",
                         SERVER_VERSION, (long)getpid(), (long long)(time(NULL) - server->started),
                         server->worker_count, server->snapshot->zones->count);
    for (size_t i = 0; i < server->cfg.listen_count; i++)
        control_reply_printf(reply, "listen=%s\n", server->cfg.listen_text[i]);
}

/* --- reload ------------------------------------------------------------------------------- */

static bool server_listen_equal(const struct authd_config *a, const struct authd_config *b)
{
    if (a->listen_count != b->listen_count)
        return false;
    for (size_t i = 0; i < a->listen_count; i++)
        if (a->listen[i].len != b->listen[i].len ||
            memcmp(&a->listen[i].ss, &b->listen[i].ss, a->listen[i].len) != 0)
            return false;
    return true;
}

/* The log flags given on the command line win over the file's log settings. */
static void server_apply_log_flags(const struct server_options *options, struct authd_config *cfg)
{
    if (options->has_log_level)
        cfg->log_level = options->log_level;
    if (options->has_log_format)
        cfg->log_format = options->log_format;
    if (options->has_log_target)
        cfg->log_target = options->log_target;
}

/* Take the reloadable parts (zones, limits, log level) of next; listeners, workers, control
 * socket and pid file need a restart and stay as they are. next is consumed. */
static void server_adopt_config(struct server *server, struct authd_config *next)
{
    if (!server_listen_equal(&server->cfg, next) || next->workers != server->cfg.workers)
        log_warn("reload_restart_needed",
                 "reason=\"listen addresses or worker count changed; restart to apply\"");
    struct authd_config kept = server->cfg;
    memcpy(next->listen, kept.listen, sizeof next->listen);
    for (size_t i = 0; i < AUTHD_MAX_LISTEN; i++) {
        char *text = next->listen_text[i];
        next->listen_text[i] = kept.listen_text[i];
        kept.listen_text[i] = text;
    }
    size_t count = next->listen_count;
    next->listen_count = kept.listen_count;
    kept.listen_count = count;
    next->workers = kept.workers;
    char *control_path = next->control_path;
    next->control_path = kept.control_path;
    kept.control_path = control_path;
    if (!control_tcp_config_equal(&next->control_tcp, &kept.control_tcp))
        log_warn("reload_restart_needed",
                 "reason=\"control-tcp or control-key-file changed; restart to apply\"");
    struct control_tcp_config control_tcp = next->control_tcp;
    next->control_tcp = kept.control_tcp;
    kept.control_tcp = control_tcp;
    char *pid_file = next->pid_file;
    next->pid_file = kept.pid_file;
    kept.pid_file = pid_file;
    /* The health engine keeps its pools, member states and feeds across reloads; a changed
     * health section needs a restart (its states would otherwise start over). */
    if (next->health.pool_count != kept.health.pool_count ||
        next->health.feed_count != kept.health.feed_count)
        log_warn("reload_restart_needed",
                 "reason=\"health pools or feeds changed; restart to apply\"");
    struct healthd_config health = next->health;
    next->health = kept.health;
    kept.health = health;
    unsigned *lines = next->health_pool_lines;
    next->health_pool_lines = kept.health_pool_lines;
    kept.health_pool_lines = lines;
    server->cfg = *next;
    authd_config_free(&kept);
    authd_config_init(next);
    server_apply_log_flags(&server->options, &server->cfg);
    log_configure(server->cfg.log_level, server->cfg.log_format, server->cfg.log_target,
                  server->cfg.log_queries);
}

static void server_report_failures(const struct catalog_report *report, struct control_reply *reply)
{
    char text[1200];
    for (size_t i = 0; i < report->failure_count; i++) {
        const struct catalog_failure *f = &report->failures[i];
        log_error("zone_rejected", "zone=%s file=%s line=%u reason=\"%s\" kept_previous=%s",
                  f->zone, f->error.file, f->error.line, f->error.reason,
                  f->kept_previous ? "yes" : "no");
        if (reply)
            control_reply_printf(reply, "zone %s %s: %s\n", f->zone,
                                 f->kept_previous ? "kept previous version" : "not served",
                                 catalog_failure_text(f, text, sizeof text));
    }
}

/* The rate-limit table for wanted: none when off, the current one (buckets and counters kept)
 * when its settings did not change, else a new one. */
static int server_rrl_prepare(const struct server *server, const struct rrl_config *wanted,
                              struct rrl **out)
{
    *out = NULL;
    if (!wanted->enable)
        return BALLAST_OK;
    struct rrl *current = server->snapshot->rrl;
    if (current && rrl_config_equal(rrl_get_config(current), wanted)) {
        *out = current;
        return BALLAST_OK;
    }
    int rc = rrl_create(wanted, out);
    if (rc == 0)
        log_info("rrl",
                 "action=enabled rate=%u burst=%u slip=%u ipv4_prefix=%u ipv6_prefix=%u "
                 "table_size=%u whitelist=%zu",
                 wanted->rate, wanted->burst ? wanted->burst : wanted->rate, wanted->slip,
                 wanted->ipv4_prefix, wanted->ipv6_prefix, wanted->table_size,
                 wanted->whitelist_count);
    return rc;
}

/* Staged reload: read the config (if any) and every zone first, then publish the new snapshot
 * in one pointer swap. Returns 0 when everything loaded; an error when the reload was refused
 * or some zones kept their previous version. */
static int server_reload(struct server *server, struct control_reply *reply)
{
    struct authd_config next;
    authd_config_init(&next);
    struct config_error error;
    char text[1200];
    if (server->cfg.source_file) {
        if (authd_config_load(server->cfg.source_file, &next, &error) != 0 ||
            authd_config_validate(&next, &error) != 0) {
            config_error_text(&error, text, sizeof text);
            log_error("reload", "result=refused reason=\"%s\"", text);
            if (reply)
                control_reply_printf(reply, "reload refused, still serving: %s\n", text);
            authd_config_free(&next);
            server->reloads_failed++;
            return BALLAST_EINVAL;
        }
    }
    const struct authd_config *wanted = server->cfg.source_file ? &next : &server->cfg;
    struct zone_set *zones = NULL;
    struct catalog_report report;
    int rc = catalog_load(wanted, server->snapshot->zones, &zones, &report);
    server_report_failures(&report, reply);
    struct server_snapshot *fresh = rc == 0 ? malloc(sizeof *fresh) : NULL;
    if (fresh && (rc = server_rrl_prepare(server, &wanted->rrl, &fresh->rrl)) != 0) {
        free(fresh);
        fresh = NULL;
    }
    if (!fresh) {
        const char *why =
            rc == BALLAST_ENOTFOUND ? "no zone would be served" : ballast_strerror(rc);
        log_error("reload", "result=refused reason=\"%s\"", why);
        if (reply)
            control_reply_printf(reply, "reload refused, still serving: %s\n", why);
        catalog_release_previous(server->snapshot->zones, zones);
        catalog_report_free(&report);
        authd_config_free(&next);
        server->reloads_failed++;
        return rc ? rc : BALLAST_ENOMEM;
    }
    if (server->cfg.source_file)
        server_adopt_config(server, &next);
    fresh->zones = zones;
    fresh->limits = server->cfg.limits;
    struct server_snapshot *old = rcu_xchg_pointer(&server->snapshot, fresh);
    urcu_memb_synchronize_rcu(); /* no worker still reads the old snapshot */
    catalog_release_previous(zones, old->zones);
    if (old->rrl != fresh->rrl)
        rrl_free(old->rrl);
    free(old);

    bool partial = report.failure_count > 0;
    log_info("reload", "result=%s zones=%zu loaded=%zu failed=%zu", partial ? "partial" : "ok",
             zones->count, report.loaded, report.failure_count);
    if (reply && !partial)
        control_reply_printf(reply, "zones=%zu\n", zones->count);
    catalog_report_free(&report);
    authd_config_free(&next);
    if (partial) {
        server->reloads_failed++;
        return BALLAST_EPARSE;
    }
    server->reloads_ok++;
    return BALLAST_OK;
}

/* --- main loop ---------------------------------------------------------------------------- */

static int server_on_command(void *ctx, int argc, char **argv, struct control_reply *reply)
{
    struct server *server = ctx;
    const char *command = argv[0];
    if (strcmp(command, "status") == 0) {
        server_print_status(server, reply);
    } else if (strcmp(command, "stats") == 0) {
        server_print_stats(server, reply);
    } else if (strcmp(command, "health") == 0) {
        if (server->health)
            healthd_report(server->health, reply);
        else
            control_reply_printf(reply, "no health-checked pools configured\n");
    } else if (strcmp(command, "zones") == 0) {
        server_print_zones(server, reply);
    } else if (strcmp(command, "reload") == 0) {
        return server_reload(server, reply);
    } else if (strcmp(command, "fault") == 0) {
        return server_fault_command(server, argc, argv, reply);
    } else {
        control_reply_printf(reply,
                             "unknown command '%s' (expected status, stats, zones, health, "
                             "reload, fault, stop)\n",
                             command);
        return BALLAST_EINVAL;
    }
    return BALLAST_OK;
}

static void server_on_reload(void *ctx)
{
    server_reload(ctx, NULL);
}

static void server_free(struct server *server)
{
    if (server->snapshot) {
        zone_set_free(server->snapshot->zones);
        rrl_free(server->snapshot->rrl);
        free(server->snapshot);
    }
    for (unsigned i = 0; server->workers && i < server->worker_count; i++)
        free(server->workers[i].fault_resp);
    fault_rules_free(server->faults);
    free(server->workers);
    authd_config_free(&server->cfg);
    free(server);
}

static unsigned server_worker_count(unsigned configured)
{
    if (configured > 0)
        return configured;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (unsigned)cpus : 1;
}

int server_start(struct authd_config *cfg, struct zone_set *zones,
                 const struct server_options *process_options, struct server **out, char *err_text,
                 size_t err_len)
{
    struct server *server = calloc(1, sizeof *server);
    struct server_snapshot *snapshot = malloc(sizeof *snapshot);
    if (!server || !snapshot) {
        free(server);
        free(snapshot);
        zone_set_free(zones);
        authd_config_free(cfg);
        authd_config_init(cfg);
        snprintf(err_text, err_len, "out of memory");
        return BALLAST_ENOMEM;
    }
    server->cfg = *cfg;
    authd_config_init(cfg);
    snapshot->zones = zones;
    snapshot->limits = server->cfg.limits;
    snapshot->rrl = NULL;
    server->snapshot = snapshot;
    server->started = time(NULL);
    if (process_options)
        server->options = *process_options;
    server->fault_injection = server->options.fault_injection;
    if (server->fault_injection)
        log_warn("fault",
                 "action=enabled reason=\"--fault-injection: answers can be faulted on command\"");
    int rrl_rc = server_rrl_prepare(server, &server->cfg.rrl, &snapshot->rrl);
    if (rrl_rc != 0) {
        snprintf(err_text, err_len, "rrl: %s", ballast_strerror(rrl_rc));
        server_free(server);
        return rrl_rc;
    }
    server->worker_count = server_worker_count(server->cfg.workers);
    server->workers = calloc(server->worker_count, sizeof *server->workers);
    if (!server->workers || uv_loop_init(&server->loop) != 0) {
        snprintf(err_text, err_len, "out of memory");
        server_free(server);
        return BALLAST_ENOMEM;
    }
    urcu_memb_register_thread();
    if (server->cfg.health.pool_count > 0 &&
        healthd_start(&server->cfg.health, &server->health, err_text, err_len) != 0) {
        urcu_memb_unregister_thread();
        uv_loop_close(&server->loop);
        server_free(server);
        return BALLAST_EINVAL;
    }
    struct daemon_options options = {
        .name = "authd",
        .control_path = server->cfg.control_path,
        .pid_file = server->cfg.pid_file,
        .on_command = server_on_command,
        .on_reload = server_on_reload,
        .ctx = server,
    };
    int rc = workers_start(server->worker_count, &server_worker_callbacks, server, &server->threads,
                           err_text, err_len);
    if (rc == 0 && server->cfg.has_metrics)
        rc = metrics_open(&server->loop, &server->cfg.metrics, server_collect_metrics, server,
                          &server->metrics, err_text, err_len);
    if (rc == 0)
        rc = daemon_open(&server->loop, &options, &server->daemon, err_text, err_len);
    if (rc == 0)
        rc = daemon_open_control_tcp(server->daemon, &server->cfg.control_tcp, err_text, err_len);
    if (rc != 0) {
        metrics_close(server->metrics);
        server->metrics = NULL;
        uv_run(&server->loop, UV_RUN_NOWAIT); /* let the closed handles go */
        workers_stop(server->threads);
        healthd_stop(server->health);
        if (server->daemon != NULL)
            daemon_close(server->daemon); /* control-tcp failed: closes the loop too */
        else
            uv_loop_close(&server->loop);
        urcu_memb_unregister_thread();
        server_free(server);
        return rc;
    }
    *out = server;
    return BALLAST_OK;
}

int server_run(struct server *server)
{
    char listen_text[1024];
    daemon_join(server->cfg.listen_text, server->cfg.listen_count, listen_text, sizeof listen_text);
    log_info("ready", "listen=%s workers=%u zones=%zu control=%s", listen_text,
             server->worker_count, server->snapshot->zones->count,
             server->cfg.control_path ? server->cfg.control_path : "none");

    uv_run(&server->loop, UV_RUN_DEFAULT);

    workers_stop(server->threads);
    server->threads = NULL;
    healthd_stop(server->health); /* after the workers: they read its pools */
    server->health = NULL;
    metrics_close(server->metrics); /* closed by daemon_close's loop run */
    server->metrics = NULL;
    daemon_close(server->daemon);
    urcu_memb_unregister_thread();
    log_info("stopped", "queries=%llu",
             (unsigned long long)(server_counter_sum(server, COUNTER_QUERIES_UDP) +
                                  server_counter_sum(server, COUNTER_QUERIES_TCP)));
    server_free(server);
    return 0;
}
