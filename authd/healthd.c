/* The health engine: one thread and libuv loop running the probes (one per distinct target) and
 * the feed pulls; member states and velocity control under one mutex; each pool's answer set
 * published with RCU so answers never wait for health work. */
#include "healthd.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <urcu/pointer.h>
#include <urcu/urcu-memb.h>
#include <uv.h>

#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "wire.h"

#define HEALTHD_TICK_MS 1000 /* re-apply velocity windows, damping ends, feed expiry */
#define HEALTHD_PROBE_KEY_MAX PROBE_SPEC_KEY_MAX

struct hd_ref {
    size_t pool;
    size_t member;
};

/* One running probe, shared by every member that checks the same target the same way. */
struct hd_probe {
    struct healthd *hd;
    struct probe *probe;
    struct probe_spec spec; /* strings owned here */
    char key[HEALTHD_PROBE_KEY_MAX];
    struct hd_ref *refs;
    size_t ref_count;
};

struct hd_pool {
    struct pool_def def;          /* deep copy */
    struct health_params *params; /* per member */
    struct health_member *members;
    bool *serving;
    struct health_velocity velocity;
    struct pool_answer *published; /* RCU */
    uint64_t fail_open_events;
    uint64_t probe_results; /* probe results received for this pool's members */
    uint64_t probe_failures;
};

struct hd_feed {
    struct healthd *hd;
    struct healthd_feed_config cfg; /* strings owned here */
    uv_timer_t timer;
    uint8_t *payload; /* fetched document waiting for its signature */
    size_t payload_len;
    uint64_t last_generation;
    uint64_t applied, rejected;
    char last_error[FEED_REASON_MAX];
};

struct healthd {
    uv_thread_t thread;
    bool thread_started;
    uv_loop_t loop;
    uv_async_t stop_async;
    uv_timer_t tick;
    struct prober *prober;
    pthread_mutex_t lock; /* member states, serving flags, counters */
    struct hd_pool *pools;
    size_t pool_count;
    struct hd_probe *probes;
    size_t probe_count;
    struct hd_feed *feeds;
    size_t feed_count;
    size_t *index; /* open addressing over pools by (owner, type); SIZE_MAX = empty */
    size_t index_mask;
};

/* --- config ------------------------------------------------------------------------------- */

static void healthd_spec_free(struct probe_spec *spec)
{
    free(spec->url);
    free(spec->body_match);
    spec->url = spec->body_match = NULL;
}

void healthd_config_free(struct healthd_config *cfg)
{
    for (size_t i = 0; i < cfg->pool_count; i++) {
        struct healthd_pool_config *p = &cfg->pools[i];
        for (size_t m = 0; p->checks && m < p->def.count; m++)
            healthd_spec_free(&p->checks[m].spec);
        free(p->checks);
        pool_def_free(&p->def);
    }
    free(cfg->pools);
    for (size_t i = 0; i < cfg->feed_count; i++) {
        free(cfg->feeds[i].url);
        free(cfg->feeds[i].signature_url);
    }
    free(cfg->feeds);
    memset(cfg, 0, sizeof *cfg);
}

static char *healthd_strdup(const char *text)
{
    return text ? strdup(text) : NULL;
}

/* --- lookup for workers ------------------------------------------------------------------- */

static size_t healthd_slot(const uint8_t *owner, size_t len, uint16_t type)
{
    return (size_t)(wire_name_hash(owner, len) ^ (type * 0x9E3779B97F4A7C15ull));
}

const struct pool_answer *healthd_find(const struct healthd *hd, const uint8_t *owner,
                                       size_t owner_len, uint16_t type)
{
    if (!hd || hd->pool_count == 0)
        return NULL;
    for (size_t i = healthd_slot(owner, owner_len, type) & hd->index_mask;;
         i = (i + 1) & hd->index_mask) {
        size_t p = hd->index[i];
        if (p == SIZE_MAX)
            return NULL;
        const struct pool_def *def = &hd->pools[p].def;
        if (def->type == type && def->owner_len == owner_len &&
            memcmp(def->owner, owner, owner_len) == 0)
            return rcu_dereference(hd->pools[p].published);
    }
}

static int healthd_build_index(struct healthd *hd)
{
    size_t slots = 16;
    while (slots < hd->pool_count * 2)
        slots <<= 1;
    hd->index = malloc(slots * sizeof *hd->index);
    if (!hd->index)
        return BALLAST_ENOMEM;
    for (size_t i = 0; i < slots; i++)
        hd->index[i] = SIZE_MAX;
    hd->index_mask = slots - 1;
    for (size_t p = 0; p < hd->pool_count; p++) {
        const struct pool_def *def = &hd->pools[p].def;
        size_t i = healthd_slot(def->owner, def->owner_len, def->type) & hd->index_mask;
        while (hd->index[i] != SIZE_MAX)
            i = (i + 1) & hd->index_mask;
        hd->index[i] = p;
    }
    return BALLAST_OK;
}

/* --- publishing --------------------------------------------------------------------------- */

/* Re-apply velocity control to pool p and rebuild its answer when the serving set changed (or
 * force). The replaced answer goes to *old for freeing after a grace period. Lock held. */
static int healthd_refresh_pool(struct healthd *hd, struct hd_pool *pool, uint64_t now, bool force,
                                struct pool_answer **old)
{
    *old = NULL;
    size_t changed =
        health_pool_apply(&pool->velocity, pool->members, pool->serving, pool->def.count, now);
    if (changed == 0 && !force)
        return BALLAST_OK;
    struct pool_answer *fresh = NULL;
    int rc = pool_build_answer(&pool->def, pool->serving, pool->published, &fresh);
    if (rc != 0)
        return rc;
    if (fresh->fail_open && (!pool->published || !pool->published->fail_open)) {
        pool->fail_open_events++;
        log_warn("pool_fail_open", "pool=%s members=%zu reason=\"no member is healthy; %s\"",
                 pool->def.name, pool->def.count,
                 pool->def.empty_mode == POOL_FAIL_OPEN ? "answering with every member"
                                                        : "answering with the last healthy set");
    }
    log_info("pool_answer", "pool=%s level=%u records=%u fail_open=%s", pool->def.name,
             fresh->level, fresh->count, fresh->fail_open ? "yes" : "no");
    *old = rcu_xchg_pointer(&pool->published, fresh);
    return BALLAST_OK;
}

/* Refresh every pool (or only those listed in `only` when non-NULL) and free replaced answers
 * once no worker can still read them. */
static void healthd_refresh(struct healthd *hd, const bool *only, bool force)
{
    uint64_t now = uv_now(&hd->loop);
    struct pool_answer **old = calloc(hd->pool_count ? hd->pool_count : 1, sizeof *old);
    if (!old)
        return;
    bool any = false;
    pthread_mutex_lock(&hd->lock);
    for (size_t p = 0; p < hd->pool_count; p++) {
        if (only && !only[p])
            continue;
        healthd_refresh_pool(hd, &hd->pools[p], now, force, &old[p]);
        any |= old[p] != NULL;
    }
    pthread_mutex_unlock(&hd->lock);
    if (any) {
        urcu_memb_synchronize_rcu();
        for (size_t p = 0; p < hd->pool_count; p++)
            pool_answer_free(old[p]);
    }
    free(old);
}

/* --- probes ------------------------------------------------------------------------------- */

static const char *healthd_state_name(enum health_state state)
{
    return state == HEALTH_UP ? "up" : "down";
}

static void healthd_on_probe(void *ctx, bool ok, const char *error, uint32_t latency_ms)
{
    struct hd_probe *probe = ctx;
    struct healthd *hd = probe->hd;
    uint64_t now = uv_now(&hd->loop);
    bool *touched = calloc(hd->pool_count ? hd->pool_count : 1, sizeof *touched);
    if (!touched)
        return;
    pthread_mutex_lock(&hd->lock);
    for (size_t r = 0; r < probe->ref_count; r++) {
        struct hd_pool *pool = &hd->pools[probe->refs[r].pool];
        size_t m = probe->refs[r].member;
        struct health_member *member = &pool->members[m];
        pool->probe_results++;
        pool->probe_failures += !ok;
        if (health_member_report(member, &pool->params[m], ok, error, now)) {
            log_info("health_transition", "pool=%s member=%s state=%s probe=\"%s\" error=\"%s\"",
                     pool->def.name, pool->def.members[m].text,
                     healthd_state_name(health_member_verdict(member, now)), probe->key,
                     ok ? "" : error);
        }
        touched[probe->refs[r].pool] = true;
    }
    pthread_mutex_unlock(&hd->lock);
    healthd_refresh(hd, touched, false);
    free(touched);
}

static int healthd_spec_copy(struct probe_spec *to, const struct probe_spec *from)
{
    *to = *from;
    to->url = healthd_strdup(from->url);
    to->body_match = healthd_strdup(from->body_match);
    if ((from->url && !to->url) || (from->body_match && !to->body_match)) {
        healthd_spec_free(to);
        return BALLAST_ENOMEM;
    }
    return BALLAST_OK;
}

/* Attach member m of pool p to the probe for its check, creating the probe if new. */
static int healthd_attach_probe(struct healthd *hd, size_t p, size_t m,
                                const struct probe_spec *spec)
{
    char key[HEALTHD_PROBE_KEY_MAX];
    probe_spec_key(spec, key, sizeof key);
    struct hd_probe *probe = NULL;
    for (size_t i = 0; i < hd->probe_count && !probe; i++)
        if (strcmp(hd->probes[i].key, key) == 0)
            probe = &hd->probes[i];
    if (!probe) {
        probe = &hd->probes[hd->probe_count++];
        memset(probe, 0, sizeof *probe);
        probe->hd = hd;
        snprintf(probe->key, sizeof probe->key, "%s", key);
        if (healthd_spec_copy(&probe->spec, spec) != 0)
            return BALLAST_ENOMEM;
    }
    struct hd_ref *grown = realloc(probe->refs, (probe->ref_count + 1) * sizeof *grown);
    if (!grown)
        return BALLAST_ENOMEM;
    probe->refs = grown;
    probe->refs[probe->ref_count++] = (struct hd_ref){p, m};
    return BALLAST_OK;
}

/* --- feeds -------------------------------------------------------------------------------- */

static void healthd_feed_reject(struct hd_feed *feed, const char *reason)
{
    feed->rejected++;
    snprintf(feed->last_error, sizeof feed->last_error, "%s", reason);
    log_warn("feed_rejected", "feed=%s reason=\"%s\" kept=last_good", feed->cfg.url, reason);
}

/* Pool names compare without regard to case or a trailing dot on the owner
 * ("API.example.test./A" is "api.example.test/A"). */
static bool healthd_pool_name_equal(const char *configured, const char *given)
{
    const char *slash_c = strrchr(configured, '/'), *slash_g = strrchr(given, '/');
    if (!slash_c || !slash_g || strcasecmp(slash_c, slash_g) != 0)
        return false;
    size_t len_c = (size_t)(slash_c - configured), len_g = (size_t)(slash_g - given);
    if (len_g > 1 && given[len_g - 1] == '.')
        len_g--;
    return len_c == len_g && strncasecmp(configured, given, len_c) == 0;
}

static bool healthd_find_member(struct healthd *hd, const char *pool_name, const char *member,
                                size_t *p_out, size_t *m_out)
{
    for (size_t p = 0; p < hd->pool_count; p++) {
        if (!healthd_pool_name_equal(hd->pools[p].def.name, pool_name))
            continue;
        for (size_t m = 0; m < hd->pools[p].def.count; m++)
            if (strcasecmp(hd->pools[p].def.members[m].text, member) == 0) {
                *p_out = p;
                *m_out = m;
                return true;
            }
    }
    return false;
}

static void healthd_feed_apply(struct hd_feed *feed, const uint8_t *data, size_t len)
{
    struct healthd *hd = feed->hd;
    char reason[FEED_REASON_MAX];
    struct feed_doc doc;
    if (feed_parse((const char *)data, len, &feed->cfg.limits, &doc, reason, sizeof reason) != 0) {
        healthd_feed_reject(feed, reason);
        return;
    }
    if (feed_check(&doc, feed->last_generation, (uint64_t)time(NULL), &feed->cfg.limits, reason,
                   sizeof reason) != 0) {
        healthd_feed_reject(feed, reason);
        feed_doc_free(&doc);
        return;
    }
    uint64_t now = uv_now(&hd->loop);
    size_t unknown = 0, changed = 0;
    pthread_mutex_lock(&hd->lock);
    for (size_t i = 0; i < doc.count; i++) {
        size_t p, m;
        if (!healthd_find_member(hd, doc.entries[i].pool, doc.entries[i].member, &p, &m)) {
            unknown++;
            continue;
        }
        struct hd_pool *pool = &hd->pools[p];
        if (health_member_feed(&pool->members[m], doc.entries[i].state, feed->cfg.valid_ms, now)) {
            changed++;
            log_info("health_transition", "pool=%s member=%s state=%s source=feed generation=%llu",
                     pool->def.name, pool->def.members[m].text,
                     healthd_state_name(doc.entries[i].state), (unsigned long long)doc.generation);
        }
    }
    feed->last_generation = doc.generation;
    feed->applied++;
    feed->last_error[0] = '\0';
    pthread_mutex_unlock(&hd->lock);
    /* Publish before logging: once feed_applied is in the log, queries see the new states. */
    healthd_refresh(hd, NULL, false);
    log_info("feed_applied", "feed=%s generation=%llu entries=%zu changed=%zu unknown=%zu",
             feed->cfg.url, (unsigned long long)doc.generation, doc.count, changed, unknown);
    feed_doc_free(&doc);
}

static void healthd_on_signature(void *ctx, int status, const uint8_t *data, size_t len,
                                 const char *reason)
{
    struct hd_feed *feed = ctx;
    uint8_t *payload = feed->payload;
    size_t payload_len = feed->payload_len;
    feed->payload = NULL;
    if (status != 0) {
        char text[FEED_REASON_MAX];
        snprintf(text, sizeof text, "signature: %s", reason ? reason : ballast_strerror(status));
        healthd_feed_reject(feed, text);
    } else {
        char signature[512];
        char why[FEED_REASON_MAX];
        snprintf(signature, sizeof signature, "%.*s", (int)(len < 511 ? len : 511),
                 (const char *)data);
        if (feed_verify(payload, payload_len, signature, feed->cfg.public_key, why, sizeof why) !=
            0)
            healthd_feed_reject(feed, why);
        else
            healthd_feed_apply(feed, payload, payload_len);
    }
    free(payload);
}

static void healthd_on_document(void *ctx, int status, const uint8_t *data, size_t len,
                                const char *reason)
{
    struct hd_feed *feed = ctx;
    if (status != 0) {
        healthd_feed_reject(feed, reason ? reason : ballast_strerror(status));
        return;
    }
    if (!feed->cfg.has_key) {
        healthd_feed_apply(feed, data, len);
        return;
    }
    free(feed->payload);
    feed->payload = malloc(len ? len : 1);
    if (!feed->payload)
        return;
    memcpy(feed->payload, data, len);
    feed->payload_len = len;
    if (prober_fetch(feed->hd->prober, feed->cfg.signature_url, 1024, feed->cfg.interval_ms,
                     healthd_on_signature, feed) != 0) {
        free(feed->payload);
        feed->payload = NULL;
        healthd_feed_reject(feed, "cannot fetch the signature");
    }
}

static void healthd_on_feed_timer(uv_timer_t *timer)
{
    struct hd_feed *feed = timer->data;
    if (feed->payload)
        return; /* the previous pull is still waiting for its signature */
    if (prober_fetch(feed->hd->prober, feed->cfg.url, feed->cfg.limits.max_bytes,
                     feed->cfg.interval_ms, healthd_on_document, feed) != 0)
        healthd_feed_reject(feed, "cannot start the fetch");
}

/* --- thread ------------------------------------------------------------------------------- */

static void healthd_on_tick(uv_timer_t *timer)
{
    healthd_refresh(timer->data, NULL, false);
}

static void healthd_close_walk(uv_handle_t *handle, void *arg)
{
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

static void healthd_on_stop(uv_async_t *async)
{
    struct healthd *hd = async->data;
    for (size_t i = 0; i < hd->probe_count; i++)
        if (hd->probes[i].probe)
            probe_remove(hd->probes[i].probe);
    prober_free(hd->prober);
    hd->prober = NULL;
    uv_walk(&hd->loop, healthd_close_walk, NULL);
}

static void healthd_thread_main(void *arg)
{
    struct healthd *hd = arg;
    uv_run(&hd->loop, UV_RUN_DEFAULT);
}

/* --- start and stop ----------------------------------------------------------------------- */

static int healthd_copy_pool(struct hd_pool *pool, const struct healthd_pool_config *cfg,
                             uint64_t now)
{
    pool->def = cfg->def;
    pool->def.name = strdup(cfg->def.name);
    pool->def.members = malloc(cfg->def.count * sizeof *pool->def.members);
    pool->params = malloc(cfg->def.count * sizeof *pool->params);
    pool->members = calloc(cfg->def.count, sizeof *pool->members);
    pool->serving = calloc(cfg->def.count, sizeof *pool->serving);
    if (!pool->def.name || !pool->def.members || !pool->params || !pool->members || !pool->serving)
        return BALLAST_ENOMEM;
    memcpy(pool->def.members, cfg->def.members, cfg->def.count * sizeof *pool->def.members);
    for (size_t m = 0; m < cfg->def.count; m++) {
        pool->params[m] = cfg->checks[m].params;
        health_member_init(&pool->members[m], &pool->params[m], now);
        pool->serving[m] = health_member_verdict(&pool->members[m], now) == HEALTH_UP;
    }
    health_velocity_init(&pool->velocity, cfg->max_withdraw_share, cfg->withdraw_interval_ms);
    return BALLAST_OK;
}

static void healthd_free(struct healthd *hd)
{
    for (size_t p = 0; p < hd->pool_count; p++) {
        struct hd_pool *pool = &hd->pools[p];
        pool_answer_free(pool->published);
        free(pool->params);
        free(pool->members);
        free(pool->serving);
        pool_def_free(&pool->def);
    }
    free(hd->pools);
    for (size_t i = 0; i < hd->probe_count; i++) {
        healthd_spec_free(&hd->probes[i].spec);
        free(hd->probes[i].refs);
    }
    free(hd->probes);
    for (size_t i = 0; i < hd->feed_count; i++) {
        free(hd->feeds[i].cfg.url);
        free(hd->feeds[i].cfg.signature_url);
        free(hd->feeds[i].payload);
    }
    free(hd->feeds);
    free(hd->index);
    pthread_mutex_destroy(&hd->lock);
    free(hd);
}

static int healthd_setup(struct healthd *hd, const struct healthd_config *cfg, char *err_text,
                         size_t err_len)
{
    uint64_t now = uv_now(&hd->loop);
    size_t member_total = 0;
    for (size_t p = 0; p < cfg->pool_count; p++)
        member_total += cfg->pools[p].def.count;
    hd->pools = calloc(cfg->pool_count ? cfg->pool_count : 1, sizeof *hd->pools);
    hd->probes = calloc(member_total ? member_total : 1, sizeof *hd->probes);
    hd->feeds = calloc(cfg->feed_count ? cfg->feed_count : 1, sizeof *hd->feeds);
    if (!hd->pools || !hd->probes || !hd->feeds)
        goto nomem;
    for (size_t p = 0; p < cfg->pool_count; p++) {
        hd->pool_count++;
        if (healthd_copy_pool(&hd->pools[p], &cfg->pools[p], now) != 0)
            goto nomem;
        for (size_t m = 0; m < cfg->pools[p].def.count; m++)
            if (cfg->pools[p].checks[m].enabled &&
                healthd_attach_probe(hd, p, m, &cfg->pools[p].checks[m].spec) != 0)
                goto nomem;
    }
    for (size_t f = 0; f < cfg->feed_count; f++) {
        struct hd_feed *feed = &hd->feeds[hd->feed_count++];
        feed->hd = hd;
        feed->cfg = cfg->feeds[f];
        feed->cfg.url = strdup(cfg->feeds[f].url);
        feed->cfg.signature_url = healthd_strdup(cfg->feeds[f].signature_url);
        if (!feed->cfg.url || (cfg->feeds[f].signature_url && !feed->cfg.signature_url))
            goto nomem;
        if (feed->cfg.has_key && !feed->cfg.signature_url) {
            if (asprintf(&feed->cfg.signature_url, "%s.sig", feed->cfg.url) < 0) {
                feed->cfg.signature_url = NULL;
                goto nomem;
            }
        }
    }
    if (healthd_build_index(hd) != 0)
        goto nomem;
    return BALLAST_OK;
nomem:
    snprintf(err_text, err_len, "out of memory starting the health engine");
    return BALLAST_ENOMEM;
}

static int healthd_start_loop_work(struct healthd *hd, char *err_text, size_t err_len)
{
    int rc = prober_create(&hd->loop, &hd->prober);
    if (rc != 0) {
        snprintf(err_text, err_len, "cannot start the prober: %s", ballast_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < hd->probe_count; i++) {
        rc = prober_add(hd->prober, &hd->probes[i].spec, healthd_on_probe, &hd->probes[i],
                        &hd->probes[i].probe);
        if (rc != 0) {
            snprintf(err_text, err_len, "cannot start probe %s: %s", hd->probes[i].key,
                     ballast_strerror(rc));
            return rc;
        }
    }
    for (size_t f = 0; f < hd->feed_count; f++) {
        struct hd_feed *feed = &hd->feeds[f];
        uv_timer_init(&hd->loop, &feed->timer);
        feed->timer.data = feed;
        uint32_t interval = feed->cfg.interval_ms ? feed->cfg.interval_ms : 10000;
        /* jitter the first pull so several feeds do not fire together */
        uv_timer_start(&feed->timer, healthd_on_feed_timer, randombytes_uniform(interval / 10 + 1),
                       interval);
    }
    uv_timer_init(&hd->loop, &hd->tick);
    hd->tick.data = hd;
    uv_timer_start(&hd->tick, healthd_on_tick, HEALTHD_TICK_MS, HEALTHD_TICK_MS);
    uv_async_init(&hd->loop, &hd->stop_async, healthd_on_stop);
    hd->stop_async.data = hd;
    return BALLAST_OK;
}

int healthd_start(const struct healthd_config *cfg, struct healthd **out, char *err_text,
                  size_t err_len)
{
    *out = NULL;
    struct healthd *hd = calloc(1, sizeof *hd);
    if (!hd || uv_loop_init(&hd->loop) != 0) {
        free(hd);
        snprintf(err_text, err_len, "out of memory starting the health engine");
        return BALLAST_ENOMEM;
    }
    pthread_mutex_init(&hd->lock, NULL);
    int rc = healthd_setup(hd, cfg, err_text, err_len);
    if (rc == 0) {
        healthd_refresh(hd, NULL, true); /* publish every pool before the first query */
        rc = healthd_start_loop_work(hd, err_text, err_len);
    }
    if (rc == 0 && uv_thread_create(&hd->thread, healthd_thread_main, hd) != 0) {
        snprintf(err_text, err_len, "cannot start the health thread");
        rc = BALLAST_ESYS;
    }
    if (rc != 0) {
        if (hd->prober)
            healthd_on_stop(&hd->stop_async);
        uv_walk(&hd->loop, healthd_close_walk, NULL);
        uv_run(&hd->loop, UV_RUN_DEFAULT);
        uv_loop_close(&hd->loop);
        healthd_free(hd);
        return rc;
    }
    hd->thread_started = true;
    log_info("health_started", "pools=%zu probes=%zu feeds=%zu", hd->pool_count, hd->probe_count,
             hd->feed_count);
    *out = hd;
    return BALLAST_OK;
}

void healthd_stop(struct healthd *hd)
{
    if (!hd)
        return;
    if (hd->thread_started) {
        uv_async_send(&hd->stop_async);
        uv_thread_join(&hd->thread);
    }
    uv_loop_close(&hd->loop);
    healthd_free(hd);
}

/* --- reporting ---------------------------------------------------------------------------- */

void healthd_report(struct healthd *hd, struct control_reply *reply)
{
    pthread_mutex_lock(&hd->lock);
    uint64_t now = uv_now(&hd->loop);
    for (size_t p = 0; p < hd->pool_count; p++) {
        struct hd_pool *pool = &hd->pools[p];
        const struct pool_answer *answer = pool->published;
        size_t up = 0;
        for (size_t m = 0; m < pool->def.count; m++)
            up += health_member_verdict(&pool->members[m], now) == HEALTH_UP;
        control_reply_printf(
            reply,
            "pool=%s ttl=%u members=%zu up=%zu down=%zu level=%u records=%u "
            "fail_open=%s fail_open_events=%llu withdrawals_held_back=%llu probes=%llu "
            "probes_failed=%llu\n",
            pool->def.name, pool->def.ttl, pool->def.count, up, pool->def.count - up,
            answer ? answer->level : 0, answer ? answer->count : 0,
            answer && answer->fail_open ? "yes" : "no", (unsigned long long)pool->fail_open_events,
            (unsigned long long)pool->velocity.held_back, (unsigned long long)pool->probe_results,
            (unsigned long long)pool->probe_failures);
        for (size_t m = 0; m < pool->def.count; m++) {
            const struct health_member *member = &pool->members[m];
            uint64_t since = now >= member->since_ms ? (now - member->since_ms) / 1000 : 0;
            control_reply_printf(
                reply,
                "  member=%s priority=%u weight=%u state=%s serving=%s since_s=%llu "
                "transitions=%u last_probe=%s feed=%s error=\"%s\"\n",
                pool->def.members[m].text, pool->def.members[m].priority,
                pool->def.members[m].weight, healthd_state_name(health_member_verdict(member, now)),
                pool->serving[m] ? "yes" : "no", (unsigned long long)since, member->transitions,
                member->last_probe_ms ? (member->last_ok ? "ok" : "failed") : "none",
                member->feed_valid && member->feed_expires_ms > now
                    ? healthd_state_name(member->feed_state)
                    : "none",
                member->last_error);
        }
    }
    for (size_t f = 0; f < hd->feed_count; f++) {
        const struct hd_feed *feed = &hd->feeds[f];
        control_reply_printf(
            reply, "feed=%s generation=%llu applied=%llu rejected=%llu last_error=\"%s\"\n",
            feed->cfg.url, (unsigned long long)feed->last_generation,
            (unsigned long long)feed->applied, (unsigned long long)feed->rejected,
            feed->last_error);
    }
    pthread_mutex_unlock(&hd->lock);
}

void healthd_stats(struct healthd *hd, struct control_reply *reply)
{
    struct prober_stats ps = {0};
    uint64_t fail_open = 0, held_back = 0, applied = 0, rejected = 0;
    pthread_mutex_lock(&hd->lock);
    if (hd->prober)
        prober_get_stats(hd->prober, &ps);
    for (size_t p = 0; p < hd->pool_count; p++) {
        fail_open += hd->pools[p].fail_open_events;
        held_back += hd->pools[p].velocity.held_back;
    }
    for (size_t f = 0; f < hd->feed_count; f++) {
        applied += hd->feeds[f].applied;
        rejected += hd->feeds[f].rejected;
    }
    pthread_mutex_unlock(&hd->lock);
    control_reply_printf(reply,
                         "health_pools=%zu\nhealth_probes=%zu\nprobes_sent=%llu\n"
                         "probes_failed=%llu\npool_fail_open_events=%llu\n"
                         "withdrawals_held_back=%llu\nfeeds_applied=%llu\nfeeds_rejected=%llu\n",
                         hd->pool_count, hd->probe_count, (unsigned long long)ps.probes_sent,
                         (unsigned long long)ps.probes_failed, (unsigned long long)fail_open,
                         (unsigned long long)held_back, (unsigned long long)applied,
                         (unsigned long long)rejected);
}

/* --- Prometheus metrics ------------------------------------------------------------------- */

/* A label value with \ " and newlines escaped (text exposition format). */
static void healthd_label_escape(char *out, size_t len, const char *text)
{
    size_t at = 0;
    for (; *text && at + 3 < len; text++) {
        if (*text == '\\' || *text == '"') {
            out[at++] = '\\';
            out[at++] = *text;
        } else if (*text == '\n') {
            out[at++] = '\\';
            out[at++] = 'n';
        } else {
            out[at++] = *text;
        }
    }
    out[at] = '\0';
}

/* One gauge or counter family with a sample per pool: value(pool, now). */
static void healthd_pool_family(struct healthd *hd, struct metrics_writer *w, const char *name,
                                const char *type, const char *help,
                                uint64_t (*value)(const struct hd_pool *pool, uint64_t now),
                                uint64_t now)
{
    metrics_family(w, name, type, help);
    for (size_t p = 0; p < hd->pool_count; p++) {
        char pool[512], labels[600];
        healthd_label_escape(pool, sizeof pool, hd->pools[p].def.name);
        snprintf(labels, sizeof labels, "pool=\"%s\"", pool);
        metrics_sample(w, name, labels, value(&hd->pools[p], now));
    }
}

static uint64_t healthd_pool_up(const struct hd_pool *pool, uint64_t now)
{
    uint64_t up = 0;
    for (size_t m = 0; m < pool->def.count; m++)
        up += health_member_verdict(&pool->members[m], now) == HEALTH_UP;
    return up;
}

static uint64_t healthd_pool_members(const struct hd_pool *pool, uint64_t now)
{
    return pool->def.count;
}

static uint64_t healthd_pool_level(const struct hd_pool *pool, uint64_t now)
{
    return pool->published ? pool->published->level : 0;
}

static uint64_t healthd_pool_records(const struct hd_pool *pool, uint64_t now)
{
    return pool->published ? pool->published->count : 0;
}

static uint64_t healthd_pool_fail_open(const struct hd_pool *pool, uint64_t now)
{
    return pool->published && pool->published->fail_open;
}

static uint64_t healthd_pool_fail_open_events(const struct hd_pool *pool, uint64_t now)
{
    return pool->fail_open_events;
}

static uint64_t healthd_pool_held_back(const struct hd_pool *pool, uint64_t now)
{
    return pool->velocity.held_back;
}

static uint64_t healthd_pool_probes(const struct hd_pool *pool, uint64_t now)
{
    return pool->probe_results;
}

static uint64_t healthd_pool_probe_failures(const struct hd_pool *pool, uint64_t now)
{
    return pool->probe_failures;
}

void healthd_metrics(struct healthd *hd, struct metrics_writer *w)
{
    pthread_mutex_lock(&hd->lock);
    uint64_t now = uv_now(&hd->loop);
    healthd_pool_family(hd, w, "ballast_authd_pool_members", "gauge", "Members of a pool.",
                        healthd_pool_members, now);
    healthd_pool_family(hd, w, "ballast_authd_pool_members_up", "gauge",
                        "Members of a pool that are up.", healthd_pool_up, now);
    healthd_pool_family(hd, w, "ballast_authd_pool_level", "gauge",
                        "Priority level answering (0 = the first).", healthd_pool_level, now);
    healthd_pool_family(hd, w, "ballast_authd_pool_answer_records", "gauge",
                        "Records in the pool's answer set.", healthd_pool_records, now);
    healthd_pool_family(hd, w, "ballast_authd_pool_fail_open", "gauge",
                        "1 while no member is healthy and the pool answers its fallback.",
                        healthd_pool_fail_open, now);
    healthd_pool_family(hd, w, "ballast_authd_pool_fail_open_events_total", "counter",
                        "Times the pool fell back to fail-open or last-healthy.",
                        healthd_pool_fail_open_events, now);
    healthd_pool_family(hd, w, "ballast_authd_pool_withdrawals_held_back_total", "counter",
                        "Withdrawals delayed by velocity control.", healthd_pool_held_back, now);
    healthd_pool_family(hd, w, "ballast_authd_pool_probes_total", "counter",
                        "Probe results received for the pool's members.", healthd_pool_probes, now);
    healthd_pool_family(hd, w, "ballast_authd_pool_probe_failures_total", "counter",
                        "Failed probes of the pool's members.", healthd_pool_probe_failures, now);
    metrics_family(w, "ballast_authd_member_up", "gauge",
                   "1 when the member is up (probes and feed), else 0.");
    for (size_t p = 0; p < hd->pool_count; p++) {
        const struct hd_pool *pool = &hd->pools[p];
        for (size_t m = 0; m < pool->def.count; m++) {
            char pool_name[512], member[300], labels[900];
            healthd_label_escape(pool_name, sizeof pool_name, pool->def.name);
            healthd_label_escape(member, sizeof member, pool->def.members[m].text);
            snprintf(labels, sizeof labels, "pool=\"%s\",member=\"%s\"", pool_name, member);
            metrics_sample(w, "ballast_authd_member_up", labels,
                           health_member_verdict(&pool->members[m], now) == HEALTH_UP);
        }
    }
    metrics_family(w, "ballast_authd_member_transitions_total", "counter",
                   "State changes of the member.");
    for (size_t p = 0; p < hd->pool_count; p++) {
        const struct hd_pool *pool = &hd->pools[p];
        for (size_t m = 0; m < pool->def.count; m++) {
            char pool_name[512], member[300], labels[900];
            healthd_label_escape(pool_name, sizeof pool_name, pool->def.name);
            healthd_label_escape(member, sizeof member, pool->def.members[m].text);
            snprintf(labels, sizeof labels, "pool=\"%s\",member=\"%s\"", pool_name, member);
            metrics_sample(w, "ballast_authd_member_transitions_total", labels,
                           pool->members[m].transitions);
        }
    }
    metrics_family(w, "ballast_authd_feed_documents_total", "counter",
                   "Health feed documents, by result.");
    for (size_t f = 0; f < hd->feed_count; f++) {
        char url[600], labels[700];
        healthd_label_escape(url, sizeof url, hd->feeds[f].cfg.url);
        snprintf(labels, sizeof labels, "feed=\"%s\",result=\"applied\"", url);
        metrics_sample(w, "ballast_authd_feed_documents_total", labels, hd->feeds[f].applied);
        snprintf(labels, sizeof labels, "feed=\"%s\",result=\"rejected\"", url);
        metrics_sample(w, "ballast_authd_feed_documents_total", labels, hd->feeds[f].rejected);
    }
    pthread_mutex_unlock(&hd->lock);
}
