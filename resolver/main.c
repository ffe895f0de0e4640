/* ballast-resolver entry point: command line and config, the shared cache and infra cache, the
 * worker threads with their frontends, and the main loop (signals, control socket, staged
 * reload of ACL, forward/stub zones and limits). */
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <urcu/pointer.h>
#include <urcu/urcu-memb.h>

#include "control.h"
#include "daemon.h"
#include "errors.h"
#include "frontend.h"
#include "log.h"
#include "metrics.h"
#include "resolver_config.h"
#include "snapshot.h"
#include "stale.h"
#include "wire.h"
#include "workers.h"

#define RESOLVER_VERSION "0.1.0"
#define RESOLVER_EXIT_FAILURE 1
#define RESOLVER_EXIT_USAGE 2
#define RESOLVER_MALLOC_TRIM_THRESHOLD (256 << 20)

struct resolver {
    char *config_file;                  /* NULL when run from flags only */
    struct frontend_snapshot *snapshot; /* RCU-published; workers take references */
    struct cache *cache;
    struct infra *infra;
    struct stale_table *stale;
    uv_timer_t snapshot_timer;
    bool snapshot_timer_ready;
    uint64_t snapshots_written, snapshots_failed;
    struct frontend_shared shared;
    struct frontend **frontends;
    unsigned worker_count;
    struct workers *threads;
    uv_loop_t loop;
    bool loop_ready;
    struct daemon *daemon;          /* signals, control socket, pid file */
    struct metrics_server *metrics; /* server.metrics; NULL when off */
    time_t started;
    uint64_t reloads_ok, reloads_failed;
};

/* --- command line ------------------------------------------------------------------------- */

enum resolver_option {
    OPT_CHECK = 256,
    OPT_LISTEN,
    OPT_ROOT_HINTS,
    OPT_FORWARD,
    OPT_STUB,
    OPT_ALLOW_PRIVATE,
    OPT_UPSTREAM_PORT,
    OPT_WORKERS,
    OPT_CONTROL,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_LOG_TARGET,
    OPT_PID_FILE,
    OPT_NO_QMIN,
    OPT_NO_SERVE_STALE,
    OPT_USER,
    OPT_ALLOW_ROOT,
};

static void resolver_usage(FILE *out)
{
    fputs("usage: ballast-resolver -c FILE [--check]\n"
          "       ballast-resolver --listen ADDR[@PORT] [options]\n"
          "\n"
          "  -c, --config FILE            YAML configuration (docs/resolver-configuration.md)\n"
          "      --check                  validate the configuration and root hints, then exit\n"
          "      --listen ADDR[@PORT]     listen on ADDR (port 53 if omitted); repeatable\n"
          "      --root-hints FILE        root hints (default zones/root.hints)\n"
          "      --forward ZONE=ADDR[@PORT],...  forward ZONE (\".\" for all) to resolvers\n"
          "      --stub ZONE=ADDR[@PORT],...     send ZONE to these authoritative servers\n"
          "      --allow-private-upstreams query loopback and private addresses (tests)\n"
          "      --upstream-port N        port of servers found from hints and referrals\n"
          "      --no-qname-minimisation  send full names upstream (RFC 9156 off)\n"
          "      --no-serve-stale         turn serve-stale off whatever the file says\n"
          "      --workers N              worker threads (0 = one per CPU)\n"
          "      --control PATH           Unix control socket (`ballast -s PATH ...`)\n"
          "      --log-level LEVEL        error, warn, info or debug\n"
          "      --log-format FORMAT      text (key=value) or json (one object per line)\n"
          "      --log-target TARGET      stderr or syslog (facility daemon)\n"
          "      --pid-file PATH          write the process id to PATH\n"
          "      --user USER[:GROUP]      after binding, run as USER (overrides server.user)\n"
          "      --allow-root             keep running as root when no user is set (or set\n"
          "                               BALLAST_ALLOW_ROOT=1)\n"
          "  -V, --version                print the version\n"
          "  -h, --help                   this help\n",
          out);
}

/* Apply one flag to cfg; returns 0 or fills err. */
static int resolver_apply_flag(struct resolver_config *cfg, int opt, const char *arg,
                               struct config_error *err)
{
    switch (opt) {
    case OPT_LISTEN:
        return resolver_config_add_listen(cfg, arg, err);
    case OPT_ROOT_HINTS:
        return resolver_config_set_root_hints(cfg, arg, err);
    case OPT_FORWARD:
        return resolver_config_add_forward_arg(cfg, arg, err);
    case OPT_STUB:
        return resolver_config_add_stub_arg(cfg, arg, err);
    case OPT_ALLOW_PRIVATE:
        cfg->resolution.allow_private_upstreams = true;
        return 0;
    case OPT_NO_QMIN:
        cfg->resolution.qname_minimisation = false;
        return 0;
    case OPT_NO_SERVE_STALE:
        cfg->stale.enable = false;
        return 0;
    case OPT_UPSTREAM_PORT:
        return resolver_config_set_upstream_port(cfg, arg, err);
    case OPT_WORKERS:
        return resolver_config_set_workers(cfg, arg, err);
    case OPT_CONTROL:
        return resolver_config_set_control(cfg, arg, err);
    case OPT_LOG_LEVEL:
        return resolver_config_set_log_level(cfg, arg, err);
    case OPT_LOG_FORMAT:
        if (log_format_parse(arg, &cfg->log_format) != 0)
            return config_fail_or_cmdline(err, NULL,
                                          "--log-format: expected text or json, got '%s'", arg);
        return 0;
    case OPT_LOG_TARGET:
        if (log_target_parse(arg, &cfg->log_target) != 0)
            return config_fail_or_cmdline(err, NULL,
                                          "--log-target: expected stderr or syslog, got '%s'", arg);
        return 0;
    case OPT_PID_FILE:
        return resolver_config_set_pid_file(cfg, arg, err);
    case OPT_USER:
        return resolver_config_set_user(cfg, arg, err);
    default:
        return BALLAST_EINVAL;
    }
}

static const struct option resolver_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"check", no_argument, NULL, OPT_CHECK},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"root-hints", required_argument, NULL, OPT_ROOT_HINTS},
    {"forward", required_argument, NULL, OPT_FORWARD},
    {"stub", required_argument, NULL, OPT_STUB},
    {"allow-private-upstreams", no_argument, NULL, OPT_ALLOW_PRIVATE},
    {"upstream-port", required_argument, NULL, OPT_UPSTREAM_PORT},
    {"no-qname-minimisation", no_argument, NULL, OPT_NO_QMIN},
    {"no-serve-stale", no_argument, NULL, OPT_NO_SERVE_STALE},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"control", required_argument, NULL, OPT_CONTROL},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"log-target", required_argument, NULL, OPT_LOG_TARGET},
    {"pid-file", required_argument, NULL, OPT_PID_FILE},
    {"user", required_argument, NULL, OPT_USER},
    {"allow-root", no_argument, NULL, OPT_ALLOW_ROOT},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Build the config: the file (if -c) then the flags on top, then validate. Flags are applied
 * again on every reload so they keep overriding the file. */
static int resolver_build_config(const char *config_file, int argc, char **argv,
                                 struct resolver_config *cfg, struct config_error *err)
{
    int rc = config_file ? resolver_config_load(config_file, cfg, err) : resolver_config_init(cfg);
    if (rc != 0)
        return rc;
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:Vh", resolver_options, NULL)) != -1) {
        if (opt == 'c' || opt == OPT_CHECK || opt == OPT_ALLOW_ROOT)
            continue;
        rc = resolver_apply_flag(cfg, opt, optarg, err);
        if (rc != 0)
            return rc;
    }
    return resolver_config_validate(cfg, err);
}

/* --- workers ------------------------------------------------------------------------------ */

static void resolver_thread_enter(void *ctx, unsigned index)
{
    urcu_memb_register_thread();
}

static void resolver_thread_exit(void *ctx, unsigned index)
{
    urcu_memb_unregister_thread();
}

static int resolver_worker_open(void *ctx, unsigned index, uv_loop_t *loop, char *err_text,
                                size_t err_len)
{
    struct resolver *r = ctx;
    return frontend_open(loop, &r->shared, &r->frontends[index], err_text, err_len);
}

static void resolver_worker_close(void *ctx, unsigned index)
{
    struct resolver *r = ctx;
    frontend_close(r->frontends[index]);
    r->frontends[index] = NULL;
}

static const struct workers_callbacks resolver_worker_callbacks = {
    .open = resolver_worker_open,
    .close = resolver_worker_close,
    .thread_enter = resolver_thread_enter,
    .thread_exit = resolver_thread_exit,
};

/* --- reload ------------------------------------------------------------------------------- */

static int resolver_load_snapshot(const char *config_file, int argc, char **argv,
                                  struct frontend_snapshot **out, char *text, size_t text_len)
{
    struct resolver_config cfg;
    struct config_error err;
    memset(&cfg, 0, sizeof cfg);
    memset(&err, 0, sizeof err);
    if (resolver_build_config(config_file, argc, argv, &cfg, &err) != 0) {
        config_error_text(&err, text, text_len);
        resolver_config_free(&cfg);
        return BALLAST_EINVAL;
    }
    struct iter_hints hints;
    int rc = iter_hints_load(cfg.resolution.root_hints, cfg.resolution.upstream_port, &hints, text,
                             text_len);
    if (rc != 0) {
        resolver_config_free(&cfg);
        return rc;
    }
    *out = frontend_snapshot_new(&cfg, &hints);
    if (!*out) {
        resolver_config_free(&cfg);
        snprintf(text, text_len, "out of memory");
        return BALLAST_ENOMEM;
    }
    return BALLAST_OK;
}

/* How long the cache keeps expired entries: max-stale-age with serve-stale on, else nothing. */
static uint64_t resolver_stale_retention_ms(const struct resolver_config *cfg)
{
    return cfg->stale.enable ? (uint64_t)cfg->stale.max_stale_age * 1000u : 0;
}

static int resolver_argc;
static char **resolver_argv;

static bool resolver_listen_equal(const struct resolver_config *a, const struct resolver_config *b)
{
    if (a->listen_count != b->listen_count)
        return false;
    for (size_t i = 0; i < a->listen_count; i++)
        if (a->listen[i].len != b->listen[i].len ||
            memcmp(&a->listen[i].ss, &b->listen[i].ss, a->listen[i].len) != 0)
            return false;
    return true;
}

/* Staged: the new config and hints are read and checked completely, then published in one
 * pointer swap. Queries in flight finish with the config they started with. Listen addresses
 * and worker count need a restart. */
static int resolver_reload(struct resolver *r, struct control_reply *reply)
{
    struct frontend_snapshot *fresh = NULL;
    char text[1200];
    if (resolver_load_snapshot(r->config_file, resolver_argc, resolver_argv, &fresh, text,
                               sizeof text) != 0) {
        r->reloads_failed++;
        log_error("reload", "result=refused reason=\"%s\"", text);
        if (reply)
            control_reply_printf(reply, "reload refused, still serving: %s\n", text);
        return BALLAST_EINVAL;
    }
    /* Listeners are never re-bound on reload (after the privilege drop port 53 could not be):
     * the old ones keep serving and the change waits for a restart. */
    if (!resolver_listen_equal(&fresh->cfg, &r->snapshot->cfg) ||
        fresh->cfg.workers != r->snapshot->cfg.workers)
        log_warn("reload_restart_needed",
                 "reason=\"listen addresses or worker count changed; restart to apply (the "
                 "current listeners keep serving)\"");
    if ((fresh->cfg.user == NULL) != (r->snapshot->cfg.user == NULL) ||
        (fresh->cfg.user && strcmp(fresh->cfg.user, r->snapshot->cfg.user) != 0))
        log_warn("reload_restart_needed", "reason=\"server.user changed; restart to apply\"");
    if (!control_tcp_config_equal(&fresh->cfg.control_tcp, &r->snapshot->cfg.control_tcp))
        log_warn("reload_restart_needed",
                 "reason=\"control-tcp or control-key-file changed; restart to apply\"");
    log_configure(fresh->cfg.log_level, fresh->cfg.log_format, fresh->cfg.log_target,
                  fresh->cfg.log_queries);
    cache_set_stale_retention(r->cache, resolver_stale_retention_ms(&fresh->cfg));
    struct frontend_snapshot *old = rcu_xchg_pointer(&r->snapshot, fresh);
    urcu_memb_synchronize_rcu(); /* nobody is between load and reference on the old one */
    frontend_snapshot_release(old);
    r->reloads_ok++;
    log_info("reload", "result=ok forward_zones=%zu acl_rules=%zu", fresh->cfg.zone_count,
             acl_rule_count(&fresh->cfg.acl));
    if (reply)
        control_reply_printf(reply, "reloaded\n");
    return BALLAST_OK;
}

/* --- control ------------------------------------------------------------------------------ */

/* One frontend counter, summed over the workers. */
static uint64_t resolver_counter_sum(struct resolver *r, enum frontend_counter counter)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < r->worker_count; i++)
        if (r->frontends[i])
            sum += frontend_counter(r->frontends[i], counter);
    return sum;
}

/* The workers' client listener counters, summed. */
static void resolver_listener_totals(const struct resolver *r, struct listener_stats *sum)
{
    memset(sum, 0, sizeof *sum);
    for (unsigned i = 0; i < r->worker_count; i++)
        if (r->frontends[i])
            frontend_add_listener_stats(r->frontends[i], sum);
}

/* The workers' upstream counters, summed. */
static void resolver_outbound_totals(const struct resolver *r, struct outbound_stats *sum)
{
    memset(sum, 0, sizeof *sum);
    for (unsigned i = 0; i < r->worker_count; i++) {
        struct outbound_stats s;
        if (!r->frontends[i])
            continue;
        frontend_outbound_stats(r->frontends[i], &s);
        sum->sent_udp += s.sent_udp;
        sum->sent_tcp += s.sent_tcp;
        sum->answers += s.answers;
        sum->timeouts += s.timeouts;
        sum->errors += s.errors;
        sum->mismatched += s.mismatched;
        sum->tc_fallbacks += s.tc_fallbacks;
        sum->coalesced += s.coalesced;
        sum->bad_cookie += s.bad_cookie;
    }
}

static void resolver_print_stats(struct resolver *r, struct control_reply *reply)
{
    for (int c = 0; c < FRONTEND_COUNTER_COUNT; c++)
        control_reply_printf(reply, "%s=%llu\n", frontend_counter_names[c],
                             (unsigned long long)resolver_counter_sum(r, c));
    struct listener_stats ls;
    resolver_listener_totals(r, &ls);
    control_reply_printf(reply,
                         "tcp_accepted=%llu\ntcp_refused=%llu\ntcp_idle_closed=%llu\n"
                         "tcp_bad_frames=%llu\nudp_send_errors=%llu\n",
                         (unsigned long long)ls.tcp_accepted, (unsigned long long)ls.tcp_refused,
                         (unsigned long long)ls.tcp_idle_closed,
                         (unsigned long long)ls.tcp_bad_frames,
                         (unsigned long long)ls.udp_send_errors);
    struct outbound_stats total;
    resolver_outbound_totals(r, &total);
    control_reply_printf(reply,
                         "upstream_udp=%llu\nupstream_tcp=%llu\nupstream_answers=%llu\n"
                         "upstream_errors=%llu\nupstream_timeouts=%llu\n"
                         "upstream_mismatched=%llu\nupstream_coalesced=%llu\n"
                         "upstream_tc_fallbacks=%llu\nupstream_bad_cookie=%llu\n",
                         (unsigned long long)total.sent_udp, (unsigned long long)total.sent_tcp,
                         (unsigned long long)total.answers, (unsigned long long)total.errors,
                         (unsigned long long)total.timeouts, (unsigned long long)total.mismatched,
                         (unsigned long long)total.coalesced,
                         (unsigned long long)total.tc_fallbacks,
                         (unsigned long long)total.bad_cookie);
    struct cache_stats cs;
    cache_get_stats(r->cache, &cs);
    control_reply_printf(reply,
                         "cache_entries=%llu\ncache_bytes=%llu\ncache_hits=%llu\n"
                         "cache_stale_hits=%llu\ncache_misses=%llu\ncache_evictions=%llu\n"
                         "cache_expired_removed=%llu\n",
                         (unsigned long long)cs.entries, (unsigned long long)cs.bytes,
                         (unsigned long long)cs.hits, (unsigned long long)cs.stale_hits,
                         (unsigned long long)cs.misses, (unsigned long long)cs.evictions,
                         (unsigned long long)cs.expired_removed);
    struct stale_table_stats ss;
    stale_table_get_stats(r->stale, &ss);
    control_reply_printf(reply,
                         "stale_questions=%llu\nresolution_failures=%llu\nsuspicions=%llu\n"
                         "suspicions_ended=%llu\nsnapshots_written=%llu\nsnapshots_failed=%llu\n",
                         (unsigned long long)ss.entries, (unsigned long long)ss.failures,
                         (unsigned long long)ss.suspicions, (unsigned long long)ss.suspicions_ended,
                         (unsigned long long)r->snapshots_written,
                         (unsigned long long)r->snapshots_failed);
    control_reply_printf(reply, "control_auth_failed=%llu\n",
                         (unsigned long long)control_auth_failures());
    control_reply_printf(reply, "infra_servers=%zu\nreloads_ok=%llu\nreloads_failed=%llu\n",
                         infra_count(r->infra), (unsigned long long)r->reloads_ok,
                         (unsigned long long)r->reloads_failed);
}

/* --- Prometheus metrics ------------------------------------------------------------------- */

/* One family whose samples are frontend counters told apart by one label. */
static void resolver_metric_labelled(struct resolver *r, struct metrics_writer *w, const char *name,
                                     const char *help, const char *label,
                                     const enum frontend_counter *counters,
                                     const char *const *values, size_t count)
{
    metrics_family(w, name, "counter", help);
    for (size_t i = 0; i < count; i++) {
        char labels[96];
        snprintf(labels, sizeof labels, "%s=\"%s\"", label, values[i]);
        metrics_sample(w, name, labels, resolver_counter_sum(r, counters[i]));
    }
}

/* Queries by QTYPE and the answer latency histogram, summed over the workers. */
static void resolver_collect_query_metrics(struct resolver *r, struct metrics_writer *w)
{
    struct metrics_qtypes qtypes = {0};
    struct metrics_latency latency = {0};
    for (unsigned i = 0; i < r->worker_count; i++)
        if (r->frontends[i])
            frontend_add_metrics(r->frontends[i], &qtypes, &latency);
    metrics_write_qtypes(w, "ballast_resolver_queries_by_type_total", "Client queries, by QTYPE.",
                         &qtypes);
    metrics_write_latency(w, "ballast_resolver_query_duration_seconds",
                          "Time from query receipt to reply sent (cache, stale, resolved, error).",
                          &latency);
}

/* The server label of an upstream: its address, with @PORT unless the port is 53. */
static void resolver_server_label(const struct addr *server, char *text, size_t len)
{
    const struct sockaddr *sa = (const struct sockaddr *)&server->ss;
    addr_format(sa, text, len);
    char *port = strrchr(text, '@');
    if (port && addr_port(sa) == 53)
        *port = '\0';
}

/* Upstream queries and timeouts per server: the first INFRA_COUNTED_SERVERS servers by label,
 * the rest as server="other" (resolver/infra.h). */
static void resolver_collect_server_metrics(struct resolver *r, struct metrics_writer *w)
{
    struct infra_server_counters counted[INFRA_COUNTED_SERVERS], other;
    size_t n = infra_get_counters(r->infra, counted, INFRA_COUNTED_SERVERS, &other);
    static const char *const names[] = {"ballast_resolver_upstream_server_queries_total",
                                        "ballast_resolver_upstream_server_timeouts_total"};
    static const char *const helps[] = {"Queries sent upstream, by server.",
                                        "Upstream queries that timed out, by server."};
    for (size_t f = 0; f < 2; f++) {
        metrics_family(w, names[f], "counter", helps[f]);
        for (size_t i = 0; i <= n; i++) {
            const struct infra_server_counters *c = i < n ? &counted[i] : &other;
            char text[64] = "other", labels[96];
            if (i < n)
                resolver_server_label(&c->server, text, sizeof text);
            snprintf(labels, sizeof labels, "server=\"%s\"", text);
            metrics_sample(w, names[f], labels, f == 0 ? c->queries : c->timeouts);
        }
    }
}

/* docs/operations.md lists these; names follow the Prometheus conventions (unit suffixes,
 * _total for counters, labels for the dimension). */
static void resolver_collect_metrics(void *ctx, struct metrics_writer *w)
{
    struct resolver *r = ctx;
    resolver_collect_query_metrics(r, w);
    static const enum frontend_counter transports[] = {FRONTEND_QUERIES, FRONTEND_QUERIES_TCP};
    static const char *const transport_names[] = {"udp", "tcp"};
    resolver_metric_labelled(r, w, "ballast_resolver_queries_total", "Client queries received.",
                             "transport", transports, transport_names, 2);
    static const enum frontend_counter rcodes[] = {FRONTEND_NOERROR,  FRONTEND_NXDOMAIN,
                                                   FRONTEND_SERVFAIL, FRONTEND_REFUSED,
                                                   FRONTEND_FORMERR,  FRONTEND_NOTIMP};
    static const char *const rcode_names[] = {"NOERROR", "NXDOMAIN", "SERVFAIL",
                                              "REFUSED", "FORMERR",  "NOTIMP"};
    resolver_metric_labelled(r, w, "ballast_resolver_answers_total", "Answers sent, by RCODE.",
                             "rcode", rcodes, rcode_names, 6);
    static const enum frontend_counter sources[] = {FRONTEND_CACHE_ANSWERS, FRONTEND_RESOLVED};
    static const char *const source_names[] = {"cache", "resolved"};
    resolver_metric_labelled(r, w, "ballast_resolver_answers_by_source_total",
                             "Answers from the cache or after iterating.", "source", sources,
                             source_names, 2);
    static const enum frontend_counter stale[] = {
        FRONTEND_STALE_ON_TIMER, FRONTEND_STALE_ON_FAILURE, FRONTEND_STALE_AT_ONCE};
    static const char *const stale_names[] = {"client_timer", "failure", "at_once"};
    resolver_metric_labelled(r, w, "ballast_resolver_stale_answers_total",
                             "Answers with stale data (RFC 8767), by why they were stale.",
                             "reason", stale, stale_names, 3);
    static const enum frontend_counter drops[] = {FRONTEND_DROPPED, FRONTEND_ACL_REFUSED,
                                                  FRONTEND_OVERLOAD, FRONTEND_CLIENT_LIMITED};
    static const char *const drop_names[] = {"malformed_or_denied", "acl_refused", "overload",
                                             "client_limited"};
    resolver_metric_labelled(r, w, "ballast_resolver_rejected_queries_total",
                             "Queries dropped or refused, by reason.", "reason", drops, drop_names,
                             4);
    struct listener_stats ls;
    resolver_listener_totals(r, &ls);
    metrics_family(w, "ballast_resolver_tcp_connections_total", "counter",
                   "Client TCP connections, by event.");
    metrics_sample(w, "ballast_resolver_tcp_connections_total", "event=\"accepted\"",
                   ls.tcp_accepted);
    metrics_sample(w, "ballast_resolver_tcp_connections_total", "event=\"refused\"",
                   ls.tcp_refused);
    metrics_sample(w, "ballast_resolver_tcp_connections_total", "event=\"idle_closed\"",
                   ls.tcp_idle_closed);
    metrics_single(w, "ballast_resolver_answers_truncated_total", "counter",
                   "Answers sent with TC=1.", resolver_counter_sum(r, FRONTEND_TRUNCATED));
    metrics_single(w, "ballast_resolver_stale_suspect_answers_total", "counter",
                   "Stale answers for critical names that turned empty (suspicion window).",
                   resolver_counter_sum(r, FRONTEND_STALE_SUSPECT));
    metrics_single(w, "ballast_resolver_query_timeouts_total", "counter",
                   "Client queries that reached query-timeout.",
                   resolver_counter_sum(r, FRONTEND_TIMEOUTS));
    metrics_single(w, "ballast_resolver_prefetches_total", "counter",
                   "Background refreshes started before an entry expired.",
                   resolver_counter_sum(r, FRONTEND_PREFETCHES));
    metrics_single(w, "ballast_resolver_refreshes_total", "counter",
                   "Background refreshes started behind a stale answer.",
                   resolver_counter_sum(r, FRONTEND_REFRESHES));
    struct outbound_stats total;
    resolver_outbound_totals(r, &total);
    metrics_single(
        w, "ballast_resolver_upstream_bad_cookie_total", "counter",
        "Upstream responses not taken for their cookie: another client cookie, or none from a "
        "server that gave us one (then asked again over TCP).",
        total.bad_cookie);
    resolver_collect_server_metrics(r, w);
    metrics_family(w, "ballast_resolver_upstream_queries_total", "counter",
                   "Queries sent to authorities and forwarders.");
    metrics_sample(w, "ballast_resolver_upstream_queries_total", "transport=\"udp\"",
                   total.sent_udp);
    metrics_sample(w, "ballast_resolver_upstream_queries_total", "transport=\"tcp\"",
                   total.sent_tcp);
    metrics_family(w, "ballast_resolver_upstream_results_total", "counter",
                   "How upstream exchanges ended.");
    metrics_sample(w, "ballast_resolver_upstream_results_total", "result=\"answer\"",
                   total.answers);
    metrics_sample(w, "ballast_resolver_upstream_results_total", "result=\"timeout\"",
                   total.timeouts);
    metrics_sample(w, "ballast_resolver_upstream_results_total", "result=\"error\"", total.errors);
    metrics_single(w, "ballast_resolver_upstream_coalesced_total", "counter",
                   "Upstream sends that joined an identical exchange in flight.", total.coalesced);
    struct cache_stats cs;
    cache_get_stats(r->cache, &cs);
    metrics_single(w, "ballast_resolver_cache_entries", "gauge",
                   "Entries in the cache (fresh and stale).", cs.entries);
    metrics_single(w, "ballast_resolver_cache_bytes", "gauge", "Bytes accounted to the cache.",
                   cs.bytes);
    metrics_family(w, "ballast_resolver_cache_lookups_total", "counter",
                   "Cache lookups by result.");
    metrics_sample(w, "ballast_resolver_cache_lookups_total", "result=\"hit\"", cs.hits);
    metrics_sample(w, "ballast_resolver_cache_lookups_total", "result=\"stale\"", cs.stale_hits);
    metrics_sample(w, "ballast_resolver_cache_lookups_total", "result=\"miss\"", cs.misses);
    metrics_single(w, "ballast_resolver_cache_evictions_total", "counter",
                   "Entries dropped to stay within the cache size.", cs.evictions);
    struct stale_table_stats ss;
    stale_table_get_stats(r->stale, &ss);
    metrics_single(w, "ballast_resolver_resolution_failures_total", "counter",
                   "Failed resolutions recorded for the failure recheck.", ss.failures);
    metrics_single(w, "ballast_resolver_suspicions_total", "counter",
                   "Suspicion windows started for critical names that turned empty.",
                   ss.suspicions);
    metrics_single(w, "ballast_resolver_upstream_servers", "gauge",
                   "Upstream servers in the infra cache.", infra_count(r->infra));
    metrics_family(w, "ballast_resolver_reloads_total", "counter", "Reloads by result.");
    metrics_sample(w, "ballast_resolver_reloads_total", "result=\"ok\"", r->reloads_ok);
    metrics_sample(w, "ballast_resolver_reloads_total", "result=\"rejected\"", r->reloads_failed);
    metrics_single(w, "ballast_resolver_control_auth_failures_total", "counter",
                   "TCP control connections refused for a wrong or missing MAC.",
                   control_auth_failures());
    metrics_family(w, "ballast_resolver_cache_snapshots_total", "counter",
                   "Cache snapshot writes by result.");
    metrics_sample(w, "ballast_resolver_cache_snapshots_total", "result=\"ok\"",
                   r->snapshots_written);
    metrics_sample(w, "ballast_resolver_cache_snapshots_total", "result=\"failed\"",
                   r->snapshots_failed);
    metrics_single(w, "ballast_resolver_start_time_seconds", "gauge",
                   "Unix time the resolver started.", (uint64_t)r->started);
}

/* --- cache snapshots ---------------------------------------------------------------------- */

static uint64_t resolver_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t resolver_snapshot_max(const struct resolver_config *cfg)
{
    return cfg->cache.snapshot_max_bytes ? cfg->cache.snapshot_max_bytes
                                         : 2 * cfg->cache.size_bytes;
}

/* Write the cache to path (the configured snapshot file when NULL). */
static int resolver_snapshot_save(struct resolver *r, const char *path, struct control_reply *reply)
{
    path = path ? path : r->snapshot->cfg.cache.snapshot_file;
    if (path == NULL) {
        if (reply)
            control_reply_printf(reply,
                                 "no snapshot file: set cache.snapshot-file or give a path\n");
        return BALLAST_EINVAL;
    }
    struct snapshot_stats stats = {0};
    char text[1024];
    uv_update_time(&r->loop);
    int rc = snapshot_write(r->cache, path, uv_now(&r->loop), resolver_wall_ms(), &stats, text,
                            sizeof text);
    if (rc != 0) {
        r->snapshots_failed++;
        log_error("cache_snapshot", "result=failed file=\"%s\" reason=\"%s\"", path, text);
        if (reply)
            control_reply_printf(reply, "cache dump failed: %s\n", text);
        return rc;
    }
    r->snapshots_written++;
    log_info("cache_snapshot", "result=written file=\"%s\" entries=%llu bytes=%llu", path,
             (unsigned long long)stats.entries, (unsigned long long)stats.bytes);
    if (reply)
        control_reply_printf(reply, "dumped %llu entries (%llu bytes) to %s\n",
                             (unsigned long long)stats.entries, (unsigned long long)stats.bytes,
                             path);
    return BALLAST_OK;
}

/* Load path (the configured snapshot file when NULL) into the cache. A bad snapshot loads
 * nothing and is logged with its reason. */
static int resolver_snapshot_restore(struct resolver *r, const char *path,
                                     struct control_reply *reply)
{
    path = path ? path : r->snapshot->cfg.cache.snapshot_file;
    if (path == NULL) {
        if (reply)
            control_reply_printf(reply,
                                 "no snapshot file: set cache.snapshot-file or give a path\n");
        return BALLAST_EINVAL;
    }
    struct snapshot_stats stats = {0};
    char text[1024];
    uv_update_time(&r->loop);
    int rc = snapshot_load(r->cache, path, resolver_snapshot_max(&r->snapshot->cfg),
                           uv_now(&r->loop), resolver_wall_ms(), &stats, text, sizeof text);
    if (rc != 0) {
        if (rc == BALLAST_ENOTFOUND && !reply)
            log_info("cache_snapshot", "result=absent file=\"%s\"", path);
        else
            log_warn("cache_snapshot", "result=rejected file=\"%s\" reason=\"%s\"", path, text);
        if (reply)
            control_reply_printf(reply, "cache load failed: %s\n", text);
        return rc;
    }
    log_info("cache_snapshot", "result=loaded file=\"%s\" entries=%llu skipped=%llu", path,
             (unsigned long long)stats.entries, (unsigned long long)stats.skipped);
    if (reply)
        control_reply_printf(reply, "loaded %llu entries (%llu skipped) from %s\n",
                             (unsigned long long)stats.entries, (unsigned long long)stats.skipped,
                             path);
    return BALLAST_OK;
}

static void resolver_on_snapshot_timer(uv_timer_t *timer)
{
    struct resolver *r = timer->data;
    if (r->snapshot->cfg.cache.snapshot_file != NULL)
        resolver_snapshot_save(r, NULL, NULL);
}

/* `cache dump [PATH]`, `cache load [PATH]`, `cache flush NAME`, `cache flush-zone NAME`. */
static int resolver_flush(struct resolver *r, int argc, char **argv, struct control_reply *reply);
static int resolver_cache_command(struct resolver *r, int argc, char **argv,
                                  struct control_reply *reply)
{
    const char *sub = argc >= 2 ? argv[1] : "";
    if ((strcmp(sub, "dump") == 0 || strcmp(sub, "load") == 0) && argc <= 3) {
        const char *path = argc == 3 ? argv[2] : NULL;
        return strcmp(sub, "dump") == 0 ? resolver_snapshot_save(r, path, reply)
                                        : resolver_snapshot_restore(r, path, reply);
    }
    if (strcmp(sub, "flush") == 0 || strcmp(sub, "flush-zone") == 0 ||
        strcmp(sub, "flush-all") == 0)
        return resolver_flush(r, argc - 1, argv + 1, reply);
    control_reply_printf(reply, "usage: cache dump [PATH] | cache load [PATH] | cache flush NAME "
                                "| cache flush-zone NAME | cache flush-all\n");
    return BALLAST_EINVAL;
}

static int resolver_flush(struct resolver *r, int argc, char **argv, struct control_reply *reply)
{
    if (strcmp(argv[0], "flush-all") == 0) {
        cache_flush_all(r->cache);
        control_reply_printf(reply, "flushed everything\n");
        return BALLAST_OK;
    }
    uint8_t name[WIRE_NAME_MAX];
    size_t len = 0;
    if (argc != 2 || wire_name_from_text(argv[1], name, &len) != 0) {
        control_reply_printf(reply, "usage: %s NAME\n", argv[0]);
        return BALLAST_EINVAL;
    }
    wire_name_lower(name, name, len);
    if (strcmp(argv[0], "flush") == 0)
        cache_flush_name(r->cache, name, len);
    else
        cache_flush_below(r->cache, name, len);
    control_reply_printf(reply, "flushed %s%s\n", argv[1],
                         strcmp(argv[0], "flush") == 0 ? "" : " and below");
    return BALLAST_OK;
}

static int resolver_on_command(void *ctx, int argc, char **argv, struct control_reply *reply)
{
    struct resolver *r = ctx;
    const char *command = argv[0];
    if (strcmp(command, "status") == 0) {
        control_reply_printf(reply, "version=%s\npid=%ld\nuptime_s=%lld\nworkers=%u\n",
                             RESOLVER_VERSION, (long)getpid(), (long long)(time(NULL) - r->started),
                             r->worker_count);
        for (size_t i = 0; i < r->snapshot->cfg.listen_count; i++)
            control_reply_printf(reply, "listen=%s\n", r->snapshot->cfg.listen_text[i]);
    } else if (strcmp(command, "stats") == 0) {
        resolver_print_stats(r, reply);
    } else if (strcmp(command, "reload") == 0) {
        return resolver_reload(r, reply);
    } else if (strcmp(command, "flush") == 0 || strcmp(command, "flush-zone") == 0 ||
               strcmp(command, "flush-all") == 0) {
        return resolver_flush(r, argc, argv, reply);
    } else if (strcmp(command, "cache") == 0) {
        return resolver_cache_command(r, argc, argv, reply);
    } else {
        control_reply_printf(reply,
                             "unknown command '%s' (expected status, stats, reload, flush NAME, "
                             "flush-zone NAME, flush-all, cache dump|load [PATH], stop)\n",
                             command);
        return BALLAST_EINVAL;
    }
    return BALLAST_OK;
}

static void resolver_on_reload(void *ctx)
{
    resolver_reload(ctx, NULL);
}

/* --- lifetime ----------------------------------------------------------------------------- */

static int resolver_start(struct resolver *r, char *err_text, size_t err_len)
{
    const struct resolver_config *cfg = &r->snapshot->cfg;
    struct cache_options co;
    cache_options_init_defaults(&co);
    co.max_bytes = cfg->cache.size_bytes;
    co.shards = cfg->cache.shards;
    co.min_ttl = cfg->cache.min_ttl;
    co.max_ttl = cfg->cache.max_ttl;
    co.max_negative_ttl = cfg->cache.max_negative_ttl;
    co.stale_retention_ms = resolver_stale_retention_ms(cfg);
    struct infra_config ic;
    infra_config_defaults(&ic);
    ic.fail_when_all_held = true; /* the retry budget: see docs/serve-stale.md */
    ic.holddown_jitter_percent = 20;
    ic.max_rto_ms = cfg->resolution.upstream_timeout_ms;
    if (ic.min_rto_ms > ic.max_rto_ms)
        ic.min_rto_ms = ic.max_rto_ms;
    if (ic.unknown_rto_ms > ic.max_rto_ms)
        ic.unknown_rto_ms = ic.max_rto_ms;
    if (cache_create(&co, &r->cache) != 0 || infra_create(&ic, &r->infra) != 0 ||
        stale_table_create(0, &r->stale) != 0) {
        snprintf(err_text, err_len, "cannot create the cache (size %llu bytes, %u shards)",
                 (unsigned long long)co.max_bytes, co.shards);
        return BALLAST_EINVAL;
    }
    r->shared = (struct frontend_shared){
        .cache = r->cache, .infra = r->infra, .stale = r->stale, .snapshot = &r->snapshot};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    r->worker_count = cfg->workers ? cfg->workers : (cpus > 0 ? (unsigned)cpus : 1);
    r->frontends = calloc(r->worker_count, sizeof *r->frontends);
    if (!r->frontends || uv_loop_init(&r->loop) != 0) {
        snprintf(err_text, err_len, "out of memory");
        return BALLAST_ENOMEM;
    }
    r->loop_ready = true;
    if (cfg->cache.snapshot_file != NULL)
        resolver_snapshot_restore(r, NULL, NULL); /* before the workers answer anything */
    uv_timer_init(&r->loop, &r->snapshot_timer);
    r->snapshot_timer.data = r;
    r->snapshot_timer_ready = true;
    if (cfg->cache.snapshot_interval_ms > 0)
        uv_timer_start(&r->snapshot_timer, resolver_on_snapshot_timer,
                       cfg->cache.snapshot_interval_ms, cfg->cache.snapshot_interval_ms);
    struct daemon_options options = {
        .name = "resolver",
        .control_path = cfg->control_path,
        .pid_file = cfg->pid_file,
        .on_command = resolver_on_command,
        .on_reload = resolver_on_reload,
        .ctx = r,
    };
    int rc = workers_start(r->worker_count, &resolver_worker_callbacks, r, &r->threads, err_text,
                           err_len);
    if (rc == 0)
        rc = daemon_open(&r->loop, &options, &r->daemon, err_text, err_len);
    if (rc == 0)
        rc = daemon_open_control_tcp(r->daemon, &cfg->control_tcp, err_text, err_len);
    if (rc == 0 && cfg->has_metrics)
        rc = metrics_open(&r->loop, &cfg->metrics, resolver_collect_metrics, r, &r->metrics,
                          err_text, err_len);
    return rc;
}

/* Drop to the configured user, then check that what later work needs is still reachable: the
 * config file and root hints for reloads, the snapshot directory for cache snapshots. */
static int resolver_drop_privileges(struct resolver *r, const struct daemon_identity *identity,
                                    char *err_text, size_t err_len)
{
    const struct resolver_config *cfg = &r->snapshot->cfg;
    int rc = daemon_drop_privileges(identity, cfg->control_path, err_text, err_len);
    if (rc != 0 || !identity->drop)
        return rc;
    daemon_check_access("the configuration file", r->config_file, false);
    daemon_check_access("the root hints", cfg->resolution.root_hints, false);
    daemon_check_access("the cache snapshot directory", cfg->cache.snapshot_file, true);
    return BALLAST_OK;
}

static void resolver_shutdown(struct resolver *r, bool clean)
{
    if (r->metrics) {
        metrics_close(r->metrics);
        r->metrics = NULL;
    }
    workers_stop(r->threads);
    r->threads = NULL;
    if (clean && r->cache && r->snapshot->cfg.cache.snapshot_file != NULL)
        resolver_snapshot_save(r, NULL, NULL); /* on clean shutdown (SIGTERM, stop) */
    if (r->snapshot_timer_ready) {
        uv_timer_stop(&r->snapshot_timer);
        uv_close((uv_handle_t *)&r->snapshot_timer, NULL);
        r->snapshot_timer_ready = false;
    }
    if (r->daemon)
        daemon_close(r->daemon);
    else if (r->loop_ready) {
        uv_run(&r->loop, UV_RUN_DEFAULT); /* let closed handles finish */
        uv_loop_close(&r->loop);
    }
    cache_free(r->cache);
    infra_free(r->infra);
    stale_table_free(r->stale);
    free(r->frontends);
    frontend_snapshot_release(r->snapshot);
}

int main(int argc, char **argv)
{
    const char *config_file = NULL;
    bool check = false;
    bool allow_root = daemon_allow_root_from_env();
    int opt;
    opterr = 1;
    while ((opt = getopt_long(argc, argv, "c:Vh", resolver_options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_file = optarg;
            break;
        case OPT_CHECK:
            check = true;
            break;
        case OPT_ALLOW_ROOT:
            allow_root = true;
            break;
        case 'V':
            printf("ballast-resolver %s\n", RESOLVER_VERSION);
            return 0;
        case 'h':
            resolver_usage(stdout);
            return 0;
        case '?':
            resolver_usage(stderr);
            return RESOLVER_EXIT_USAGE;
        default:
            break;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "error: unexpected argument '%s'\n", argv[optind]);
        return RESOLVER_EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN); /* a reset TCP peer must not kill the daemon */
    /* Every client query allocates and frees its request; without this glibc keeps returning
     * the heap top to the kernel and faulting it back in (about 17 % of the CPU time of cache
     * hits measured in docs/performance.md). */
    mallopt(M_TRIM_THRESHOLD, RESOLVER_MALLOC_TRIM_THRESHOLD);
    resolver_argc = argc;
    resolver_argv = argv;

    struct resolver r;
    memset(&r, 0, sizeof r);
    r.config_file = config_file ? strdup(config_file) : NULL;
    char text[1200];
    if (resolver_load_snapshot(r.config_file, argc, argv, &r.snapshot, text, sizeof text) != 0) {
        fprintf(stderr, "%s\n", text);
        free(r.config_file);
        return RESOLVER_EXIT_FAILURE;
    }
    if (check) {
        printf("ok: %zu listen addresses, %zu root server addresses, %zu forward/stub zones\n",
               r.snapshot->cfg.listen_count, r.snapshot->hints.count, r.snapshot->cfg.zone_count);
        frontend_snapshot_release(r.snapshot);
        free(r.config_file);
        return 0;
    }
    log_set_ident("ballast-resolver");
    log_configure(r.snapshot->cfg.log_level, r.snapshot->cfg.log_format, r.snapshot->cfg.log_target,
                  r.snapshot->cfg.log_queries);
    /* Before anything is bound: an unknown user, or root without a user, stops here. */
    struct daemon_identity identity;
    int prepared =
        daemon_privileges_prepare(r.snapshot->cfg.user, allow_root, &identity, text, sizeof text);
    if (prepared != 0) {
        log_error("startup_failed", "reason=\"%s\"", text);
        fprintf(stderr, "error: %s\n", text);
        frontend_snapshot_release(r.snapshot);
        free(r.config_file);
        return RESOLVER_EXIT_FAILURE;
    }
    urcu_memb_register_thread();
    r.started = time(NULL);
    int status = 0;
    /* resolver_start binds every listener (the worker threads start with their sockets open),
     * opens the control socket and metrics listener and writes the pid file; then the drop. The
     * workers already run: glibc's setuid() changes every thread of the process. */
    if (resolver_start(&r, text, sizeof text) != 0 ||
        resolver_drop_privileges(&r, &identity, text, sizeof text) != 0) {
        log_error("startup_failed", "reason=\"%s\"", text);
        fprintf(stderr, "error: %s\n", text);
        status = RESOLVER_EXIT_FAILURE;
    } else {
        char listen[1024];
        daemon_join(r.snapshot->cfg.listen_text, r.snapshot->cfg.listen_count, listen,
                    sizeof listen);
        log_info("ready", "listen=%s workers=%u root_servers=%zu forward_zones=%zu control=%s",
                 listen, r.worker_count, r.snapshot->hints.count, r.snapshot->cfg.zone_count,
                 r.snapshot->cfg.control_path ? r.snapshot->cfg.control_path : "none");
        uv_run(&r.loop, UV_RUN_DEFAULT);
    }
    resolver_shutdown(&r, status == 0);
    urcu_memb_unregister_thread();
    free(r.config_file);
    log_info("stopped", "status=%d", status);
    return status;
}
