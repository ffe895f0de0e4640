/* The client load of `ballast replay`: a libuv timer sends queries at a fixed rate over UDP client
 * sockets, matches and classifies the responses, times out the rest, and keeps per-second
 * counters and latency percentiles (a small log-linear histogram per second still open). */
#include "loadgen.h"

#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

#define LOADGEN_TICK_MS 1          /* sending and timeout granularity */
#define LOADGEN_MAX_CLIENTS 4096   /* sockets; also keeps (client, id) within 32 bits */
#define LOADGEN_EDNS_UDP_SIZE 1232 /* room for EDE options (RFC 8914) without truncation */
#define LOADGEN_ID_TRIES 16        /* random IDs tried before a busy socket is skipped */
#define LOADGEN_QUERY_MAX (WIRE_HEADER_LEN + WIRE_NAME_MAX + 4 + 11)
#define LOADGEN_RING_MIN 1024
#define LOADGEN_REFRESH_NS 100000000ull /* percentiles of open seconds are refreshed this often */
#define NS_PER_S 1000000000ull

/* RFC 8914 §4: the Extended DNS Error option and the info-codes of stale answers. */
#define EDNS_OPTION_EDE 15
#define EDE_STALE_ANSWER 3
#define EDE_STALE_NXDOMAIN 19

/* Latency histogram in µs: values below 64 exact, above 64 sub-buckets per power of two, so a
 * bucket is at most 1/64 (1.6 %) of its value wide. About 7 KB; one per second still open. */
#define HIST_SUB_BITS 6u
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB + (32u - HIST_SUB_BITS) * HIST_SUB)

struct loadgen_hist {
    size_t second;    /* the second it counts for */
    bool open;        /* that second may still get answers */
    uint64_t pending; /* queries of that second neither answered nor timed out */
    uint64_t count;
    uint32_t buckets[HIST_BUCKETS];
};

/* A query sent, in the send-order ring; done ones stay until they reach the head. */
struct loadgen_query {
    uint64_t sent_ns;
    size_t second;
    uint32_t name;
    uint32_t key; /* client << 16 | id */
    bool in_flight;
};

/* In-flight table: (client, id) -> sequence number in the ring; linear probing. */
struct loadgen_slot {
    uint64_t seq_plus1; /* 0 = empty */
    uint32_t key;
};

struct loadgen_client {
    uv_udp_t udp;
    struct loadgen *lg;
    uint32_t index;
    bool open;
};

struct loadgen_entry {
    struct loadgen_name name;
    uint8_t query[LOADGEN_QUERY_MAX]; /* the query with ID 0 */
    size_t query_len;
};

struct loadgen {
    uv_loop_t *loop;
    struct addr server;
    struct loadgen_entry *names;
    uint64_t *weight_cumulative;
    size_t name_count;
    uint32_t rate;
    uint64_t timeout_ns;
    struct loadgen_client *clients;
    uint32_t client_count;
    uint32_t next_client;
    uv_timer_t timer;
    bool timer_open;
    unsigned open_handles;

    uint64_t start_ns;
    uint64_t paced; /* queries the rate has accounted for (sent, or skipped when behind) */
    uint64_t last_refresh_ns;

    struct loadgen_query *ring; /* capacity a power of two; index = seq & (cap - 1) */
    size_t ring_cap;
    uint64_t head, tail;
    struct loadgen_slot *table; /* capacity 2 * ring_cap */
    size_t table_cap;
    size_t in_flight;

    struct loadgen_second *seconds;
    size_t second_count, second_cap;
    size_t first_open;
    struct loadgen_hist *hists; /* second s uses hists[s % hist_count] */
    size_t hist_count;

    bool stopping, done_called;
    void (*done)(void *ctx);
    void *done_ctx;
    uint8_t recv_buf[65536];
};

/* ---- latency histogram ---- */

static unsigned loadgen_hist_index(uint32_t us)
{
    if (us < HIST_SUB)
        return us;
    unsigned exp = 31u - (unsigned)__builtin_clz(us);
    unsigned sub = (us >> (exp - HIST_SUB_BITS)) - HIST_SUB;
    return HIST_SUB + (exp - HIST_SUB_BITS) * HIST_SUB + sub;
}

/* The highest value a bucket holds (percentiles are reported as upper bounds). */
static uint32_t loadgen_hist_high(unsigned index)
{
    if (index < HIST_SUB)
        return index;
    unsigned exp = (index - HIST_SUB) / HIST_SUB + HIST_SUB_BITS;
    unsigned sub = (index - HIST_SUB) % HIST_SUB;
    uint64_t low = (uint64_t)(HIST_SUB + sub) << (exp - HIST_SUB_BITS);
    uint64_t high = low + ((uint64_t)1 << (exp - HIST_SUB_BITS)) - 1;
    return high > UINT32_MAX ? UINT32_MAX : (uint32_t)high;
}

/* Nearest-rank percentile (percent of count), never above the largest value seen. */
static uint32_t loadgen_hist_percentile(const struct loadgen_hist *h, unsigned percent,
                                        uint32_t max_us)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (h->count * percent + 99) / 100;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint32_t v = loadgen_hist_high(i);
            return v < max_us ? v : max_us;
        }
    }
    return max_us;
}

static struct loadgen_hist *loadgen_hist_of(struct loadgen *lg, size_t second)
{
    struct loadgen_hist *h = &lg->hists[second % lg->hist_count];
    return h->open && h->second == second ? h : NULL;
}

static void loadgen_percentiles(struct loadgen *lg, const struct loadgen_hist *h)
{
    struct loadgen_second *s = &lg->seconds[h->second];
    s->p50_us = loadgen_hist_percentile(h, 50, s->max_us);
    s->p99_us = loadgen_hist_percentile(h, 99, s->max_us);
}

static void loadgen_close_second(struct loadgen *lg, struct loadgen_hist *h)
{
    loadgen_percentiles(lg, h);
    h->open = false;
}

/* ---- in-flight table ---- */

static size_t loadgen_table_home(const struct loadgen *lg, uint32_t key)
{
    return (size_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 32) & (lg->table_cap - 1);
}

static struct loadgen_slot *loadgen_table_find(struct loadgen *lg, uint32_t key)
{
    for (size_t i = loadgen_table_home(lg, key);; i = (i + 1) & (lg->table_cap - 1)) {
        struct loadgen_slot *slot = &lg->table[i];
        if (slot->seq_plus1 == 0)
            return NULL;
        if (slot->key == key)
            return slot;
    }
}

static void loadgen_table_insert(struct loadgen *lg, uint32_t key, uint64_t seq)
{
    size_t i = loadgen_table_home(lg, key);
    while (lg->table[i].seq_plus1 != 0)
        i = (i + 1) & (lg->table_cap - 1);
    lg->table[i].seq_plus1 = seq + 1;
    lg->table[i].key = key;
}

/* Backward-shift deletion keeps every probe chain unbroken without tombstones. */
static void loadgen_table_remove(struct loadgen *lg, struct loadgen_slot *slot)
{
    size_t mask = lg->table_cap - 1;
    size_t hole = (size_t)(slot - lg->table);
    lg->table[hole].seq_plus1 = 0;
    for (size_t j = (hole + 1) & mask; lg->table[j].seq_plus1 != 0; j = (j + 1) & mask) {
        size_t home = loadgen_table_home(lg, lg->table[j].key);
        /* the entry at j may move to hole unless its home lies cyclically in (hole, j] */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays)
            continue;
        lg->table[hole] = lg->table[j];
        lg->table[j].seq_plus1 = 0;
        hole = j;
    }
}

static struct loadgen_query *loadgen_ring_at(struct loadgen *lg, uint64_t seq)
{
    return &lg->ring[seq & (lg->ring_cap - 1)];
}

/* Double the ring and rebuild the table at twice its size. */
static int loadgen_ring_grow(struct loadgen *lg)
{
    size_t cap = lg->ring_cap * 2;
    struct loadgen_query *ring = calloc(cap, sizeof(*ring));
    struct loadgen_slot *table = calloc(cap * 2, sizeof(*table));
    if (!ring || !table) {
        free(ring);
        free(table);
        return BALLAST_ENOMEM;
    }
    for (uint64_t seq = lg->head; seq < lg->tail; seq++)
        ring[seq & (cap - 1)] = *loadgen_ring_at(lg, seq);
    free(lg->ring);
    free(lg->table);
    lg->ring = ring;
    lg->ring_cap = cap;
    lg->table = table;
    lg->table_cap = cap * 2;
    for (uint64_t seq = lg->head; seq < lg->tail; seq++) {
        const struct loadgen_query *q = loadgen_ring_at(lg, seq);
        if (q->in_flight)
            loadgen_table_insert(lg, q->key, seq);
    }
    return BALLAST_OK;
}

/* ---- seconds ---- */

static int loadgen_add_second(struct loadgen *lg)
{
    if (lg->second_count == lg->second_cap) {
        size_t cap = lg->second_cap ? lg->second_cap * 2 : 64;
        struct loadgen_second *grown = realloc(lg->seconds, cap * sizeof(*grown));
        if (!grown)
            return BALLAST_ENOMEM;
        lg->seconds = grown;
        lg->second_cap = cap;
    }
    size_t second = lg->second_count++;
    memset(&lg->seconds[second], 0, sizeof(lg->seconds[second]));
    struct loadgen_hist *h = &lg->hists[second % lg->hist_count];
    if (h->open) /* its queries are all past their deadline (see loadgen_tick); be safe anyway */
        loadgen_close_second(lg, h);
    memset(h, 0, sizeof(*h));
    h->second = second;
    h->open = true;
    return BALLAST_OK;
}

/* Close every second that can get no more sends and has nothing in flight. */
static void loadgen_close_seconds(struct loadgen *lg)
{
    for (size_t s = lg->first_open; s < lg->second_count; s++) {
        struct loadgen_hist *h = loadgen_hist_of(lg, s);
        bool sending = s + 1 == lg->second_count && !lg->stopping;
        if (h && h->pending == 0 && !sending)
            loadgen_close_second(lg, h);
    }
    while (lg->first_open < lg->second_count && !loadgen_hist_of(lg, lg->first_open))
        lg->first_open++;
}

static void loadgen_refresh_open(struct loadgen *lg)
{
    for (size_t s = lg->first_open; s < lg->second_count; s++) {
        struct loadgen_hist *h = loadgen_hist_of(lg, s);
        if (h)
            loadgen_percentiles(lg, h);
    }
}

/* ---- outcomes ---- */

enum loadgen_outcome {
    LOADGEN_WITH_DATA,
    LOADGEN_NODATA,
    LOADGEN_NXDOMAIN,
    LOADGEN_SERVFAIL,
    LOADGEN_OTHER,
    LOADGEN_TIMEOUT,
};

/* Count a finished query (answered or timed out) in the second it was sent. */
static void loadgen_finish(struct loadgen *lg, struct loadgen_query *q,
                           enum loadgen_outcome outcome, bool stale, uint64_t now)
{
    struct loadgen_second *s = &lg->seconds[q->second];
    struct loadgen_hist *h = loadgen_hist_of(lg, q->second);
    q->in_flight = false;
    lg->in_flight--;
    if (h)
        h->pending--;
    switch (outcome) {
    case LOADGEN_WITH_DATA:
        s->with_data++;
        break;
    case LOADGEN_NODATA:
        s->nodata++;
        break;
    case LOADGEN_NXDOMAIN:
        s->nxdomain++;
        break;
    case LOADGEN_SERVFAIL:
        s->servfail++;
        break;
    case LOADGEN_OTHER:
        s->other_rcode++;
        break;
    case LOADGEN_TIMEOUT:
        s->timeouts++;
        break;
    }
    bool empty = outcome == LOADGEN_NODATA || outcome == LOADGEN_NXDOMAIN ||
                 outcome == LOADGEN_SERVFAIL || outcome == LOADGEN_TIMEOUT;
    if (empty && lg->names[q->name].name.never_empty)
        s->never_empty_violations++;
    if (outcome == LOADGEN_TIMEOUT)
        return;
    s->answered++;
    if (stale)
        s->stale++;
    uint64_t us = (now - q->sent_ns) / 1000;
    uint32_t latency = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    if (latency > s->max_us)
        s->max_us = latency;
    if (h) {
        h->buckets[loadgen_hist_index(latency)]++;
        h->count++;
    }
}

/* Time out the queries past their deadline; they leave the ring in send order, and the timeout
 * is the same for all, so the oldest in-flight query is always the first to expire. */
static void loadgen_expire(struct loadgen *lg, uint64_t now)
{
    for (; lg->head < lg->tail; lg->head++) {
        struct loadgen_query *q = loadgen_ring_at(lg, lg->head);
        if (!q->in_flight)
            continue;
        if (q->sent_ns + lg->timeout_ns > now)
            break;
        loadgen_table_remove(lg, loadgen_table_find(lg, q->key));
        loadgen_finish(lg, q, LOADGEN_TIMEOUT, false, now);
    }
}

/* ---- responses ---- */

struct loadgen_reply {
    unsigned rcode;
    bool has_data;
    bool stale;
    bool malformed; /* the question matched but a later section did not parse */
};

/* RFC 8914 §2: EDE in an OPT record's options; stale answers carry info-code 3 or 19. */
static bool loadgen_has_stale_ede(const uint8_t *opt, size_t len)
{
    size_t pos = 0;
    while (pos + 4 <= len) {
        uint16_t code = wire_read_u16(opt + pos);
        uint16_t option_len = wire_read_u16(opt + pos + 2);
        pos += 4;
        if (pos + option_len > len)
            return false;
        if (code == EDNS_OPTION_EDE && option_len >= 2) {
            uint16_t info = wire_read_u16(opt + pos);
            if (info == EDE_STALE_ANSWER || info == EDE_STALE_NXDOMAIN)
                return true;
        }
        pos += option_len;
    }
    return false;
}

/* Walk the answer, authority and additional sections after the question. */
static int loadgen_parse_sections(const uint8_t *pkt, size_t len, size_t pos, uint16_t qtype,
                                  struct loadgen_reply *reply)
{
    unsigned counts[3] = {wire_read_u16(pkt + 6), wire_read_u16(pkt + 8), wire_read_u16(pkt + 10)};
    for (unsigned section = 0; section < 3; section++) {
        for (unsigned i = 0; i < counts[section]; i++) {
            if (wire_name_unpack(pkt, len, &pos, NULL, NULL) != 0 || pos + 10 > len)
                return BALLAST_EFORMERR;
            uint16_t type = wire_read_u16(pkt + pos);
            uint8_t ext_rcode = pkt[pos + 4];
            uint16_t rdlen = wire_read_u16(pkt + pos + 8);
            pos += 10;
            if (pos + rdlen > len)
                return BALLAST_EFORMERR;
            bool data_type = type == qtype || type == WIRE_TYPE_CNAME || qtype == WIRE_TYPE_ANY;
            if (section == 0 && data_type)
                reply->has_data = true;
            if (section == 2 && type == WIRE_TYPE_OPT) {
                /* RFC 6891 §6.1.3: the upper 8 bits of the 12-bit RCODE */
                reply->rcode |= (unsigned)ext_rcode << 4;
                reply->stale = loadgen_has_stale_ede(pkt + pos, rdlen);
            }
            pos += rdlen;
        }
    }
    return BALLAST_OK;
}

/* Parse a response to the query for name: BALLAST_EINVAL when it is not one (QR=0, another
 * question), else 0 with reply filled. */
static int loadgen_parse_reply(const uint8_t *pkt, size_t len, const struct loadgen_name *name,
                               struct loadgen_reply *reply)
{
    if (len < WIRE_HEADER_LEN)
        return BALLAST_EINVAL;
    uint16_t flags = wire_read_u16(pkt + 2);
    if (!(flags & WIRE_FLAG_QR) || wire_read_u16(pkt + 4) != 1)
        return BALLAST_EINVAL;
    uint8_t qname[WIRE_NAME_MAX];
    size_t qname_len = 0;
    size_t pos = WIRE_HEADER_LEN;
    if (wire_name_unpack(pkt, len, &pos, qname, &qname_len) != 0 || pos + 4 > len)
        return BALLAST_EINVAL;
    if (!wire_name_equal_nocase(qname, qname_len, name->wire, name->wire_len) ||
        wire_read_u16(pkt + pos) != name->qtype || wire_read_u16(pkt + pos + 2) != WIRE_CLASS_IN)
        return BALLAST_EINVAL;
    memset(reply, 0, sizeof(*reply));
    reply->rcode = WIRE_RCODE(flags);
    if (loadgen_parse_sections(pkt, len, pos + 4, name->qtype, reply) != 0)
        reply->malformed = true;
    return BALLAST_OK;
}

static enum loadgen_outcome loadgen_classify(const struct loadgen_reply *reply)
{
    if (reply->malformed)
        return LOADGEN_OTHER;
    switch (reply->rcode) {
    case WIRE_RCODE_NOERROR:
        return reply->has_data ? LOADGEN_WITH_DATA : LOADGEN_NODATA;
    case WIRE_RCODE_NXDOMAIN:
        return LOADGEN_NXDOMAIN;
    case WIRE_RCODE_SERVFAIL:
        return LOADGEN_SERVFAIL;
    default:
        return LOADGEN_OTHER;
    }
}

static bool loadgen_from_server(const struct loadgen *lg, const struct sockaddr *from)
{
    const struct sockaddr *server = (const struct sockaddr *)&lg->server.ss;
    if (from->sa_family != server->sa_family)
        return false;
    if (from->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)from;
        const struct sockaddr_in *b = (const struct sockaddr_in *)server;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)from;
    const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)server;
    return a->sin6_port == b->sin6_port &&
           memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
}

static void loadgen_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct loadgen_client *client = handle->data;
    *buf = uv_buf_init((char *)client->lg->recv_buf, sizeof(client->lg->recv_buf));
}

static void loadgen_on_recv(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf,
                            const struct sockaddr *from, unsigned flags)
{
    struct loadgen_client *client = udp->data;
    struct loadgen *lg = client->lg;
    if (nread < WIRE_HEADER_LEN || !from || (flags & UV_UDP_PARTIAL) ||
        !loadgen_from_server(lg, from))
        return;
    const uint8_t *pkt = (const uint8_t *)buf->base;
    uint32_t key = client->index << 16 | wire_read_u16(pkt);
    struct loadgen_slot *slot = loadgen_table_find(lg, key);
    if (!slot)
        return; /* late (timed out) or not ours */
    struct loadgen_query *q = loadgen_ring_at(lg, slot->seq_plus1 - 1);
    struct loadgen_reply reply;
    if (loadgen_parse_reply(pkt, (size_t)nread, &lg->names[q->name].name, &reply) != 0)
        return; /* RFC 5452 §4.3: ID and question must both match */
    loadgen_table_remove(lg, slot);
    loadgen_finish(lg, q, loadgen_classify(&reply), reply.stale, uv_hrtime());
}

/* ---- sending ---- */

static uint64_t loadgen_random_below(uint64_t bound)
{
    if (bound <= UINT32_MAX)
        return randombytes_uniform((uint32_t)bound);
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound; /* rejection keeps it uniform */
    uint64_t r;
    do {
        randombytes_buf(&r, sizeof(r));
    } while (r >= limit);
    return r % bound;
}

static uint32_t loadgen_pick_name(const struct loadgen *lg)
{
    uint64_t r = loadgen_random_below(lg->weight_cumulative[lg->name_count - 1]);
    size_t lo = 0, hi = lg->name_count - 1;
    while (lo < hi) { /* first name whose cumulative weight exceeds r */
        size_t mid = lo + (hi - lo) / 2;
        if (lg->weight_cumulative[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return (uint32_t)lo;
}

/* A random ID not in flight on client (RFC 5452 §4.3 wants it unpredictable). */
static bool loadgen_pick_id(struct loadgen *lg, uint32_t client, uint16_t *id)
{
    for (unsigned i = 0; i < LOADGEN_ID_TRIES; i++) {
        *id = (uint16_t)randombytes_uniform(65536u);
        if (!loadgen_table_find(lg, client << 16 | *id))
            return true;
    }
    return false;
}

/* Send one query in the current second; false when nothing could be sent now. */
static bool loadgen_send_one(struct loadgen *lg, uint64_t now)
{
    if (lg->tail - lg->head == lg->ring_cap && loadgen_ring_grow(lg) != 0)
        return false;
    uint32_t client = lg->next_client;
    lg->next_client = (client + 1) % lg->client_count;
    uint16_t id;
    if (!loadgen_pick_id(lg, client, &id))
        return false;
    uint32_t name = loadgen_pick_name(lg);
    struct loadgen_entry *entry = &lg->names[name];
    wire_write_u16(entry->query, id);
    uv_buf_t buf = uv_buf_init((char *)entry->query, (unsigned)entry->query_len);
    if (uv_udp_try_send(&lg->clients[client].udp, &buf, 1,
                        (const struct sockaddr *)&lg->server.ss) < 0)
        return false;
    size_t second = lg->second_count - 1;
    uint64_t seq = lg->tail++;
    struct loadgen_query *q = loadgen_ring_at(lg, seq);
    *q = (struct loadgen_query){.sent_ns = now,
                                .second = second,
                                .name = name,
                                .key = client << 16 | id,
                                .in_flight = true};
    loadgen_table_insert(lg, q->key, seq);
    lg->in_flight++;
    lg->seconds[second].sent++;
    loadgen_hist_of(lg, second)->pending++;
    return true;
}

/* Send what the rate says is due by now (rate x elapsed - paced): at 1 ms ticks the load is
 * smooth. Catching up after a stall is capped at 10 ms worth per tick, and more than one second
 * behind is given up rather than sent in a burst. */
static void loadgen_send_due(struct loadgen *lg, uint64_t now)
{
    uint64_t elapsed = now - lg->start_ns;
    uint64_t due = elapsed / NS_PER_S * lg->rate + elapsed % NS_PER_S * lg->rate / NS_PER_S;
    if (due <= lg->paced)
        return;
    if (due - lg->paced > lg->rate)
        lg->paced = due - lg->rate;
    uint64_t count = due - lg->paced;
    uint64_t cap = lg->rate / 100 + 1;
    if (count > cap)
        count = cap;
    for (uint64_t i = 0; i < count && loadgen_send_one(lg, now); i++)
        lg->paced++;
}

static void loadgen_tick(uv_timer_t *timer)
{
    struct loadgen *lg = timer->data;
    uint64_t now = uv_hrtime();
    /* Timeouts first: then every second older than the histogram ring is closed before its
     * histogram is reused (queries are at most timeout old). */
    loadgen_expire(lg, now);
    if (!lg->stopping) {
        size_t current = (size_t)((now - lg->start_ns) / NS_PER_S);
        bool have_second = true;
        while (lg->second_count <= current && have_second)
            have_second = loadgen_add_second(lg) == 0;
        if (have_second)
            loadgen_send_due(lg, now);
    }
    loadgen_close_seconds(lg);
    if (now - lg->last_refresh_ns >= LOADGEN_REFRESH_NS) {
        lg->last_refresh_ns = now;
        loadgen_refresh_open(lg);
    }
    if (lg->stopping && lg->in_flight == 0 && !lg->done_called) {
        lg->done_called = true;
        uv_timer_stop(&lg->timer);
        if (lg->done)
            lg->done(lg->done_ctx); /* last: it may free lg */
    }
}

/* ---- lifetime ---- */

static void loadgen_release(struct loadgen *lg)
{
    free(lg->names);
    free(lg->weight_cumulative);
    free(lg->clients);
    free(lg->ring);
    free(lg->table);
    free(lg->seconds);
    free(lg->hists);
    free(lg);
}

static void loadgen_on_handle_closed(struct loadgen *lg)
{
    if (--lg->open_handles == 0)
        loadgen_release(lg);
}

static void loadgen_on_timer_closed(uv_handle_t *handle)
{
    loadgen_on_handle_closed(handle->data);
}

static void loadgen_on_udp_closed(uv_handle_t *handle)
{
    struct loadgen_client *client = handle->data;
    loadgen_on_handle_closed(client->lg);
}

static int loadgen_check_options(const struct loadgen_options *o)
{
    int family = o->server.ss.ss_family;
    if (o->rate == 0 || o->clients == 0 || o->clients > LOADGEN_MAX_CLIENTS || o->timeout_ms == 0 ||
        o->name_count == 0 || !o->names || (family != AF_INET && family != AF_INET6))
        return BALLAST_EINVAL;
    for (size_t i = 0; i < o->name_count; i++) {
        const struct loadgen_name *n = &o->names[i];
        if (n->weight == 0 || n->wire_len == 0 || n->wire_len > WIRE_NAME_MAX ||
            wire_name_length(n->wire, n->wire_len) != n->wire_len)
            return BALLAST_EINVAL;
    }
    return BALLAST_OK;
}

/* RFC 1035 §4.1 query with RD, and an RFC 6891 §6.1.2 OPT record (UDP size 1232, no DO). */
static int loadgen_build_query(struct loadgen_entry *entry)
{
    struct wire_writer w;
    wire_writer_init(&w, entry->query, sizeof(entry->query));
    static const uint8_t header[WIRE_HEADER_LEN] = {0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1};
    static const uint8_t root = 0;
    int rc = wire_writer_bytes(&w, header, sizeof(header));
    rc = rc ? rc : wire_writer_name(&w, entry->name.wire, entry->name.wire_len, false);
    rc = rc ? rc : wire_writer_u16(&w, entry->name.qtype);
    rc = rc ? rc : wire_writer_u16(&w, WIRE_CLASS_IN);
    rc = rc ? rc : wire_writer_bytes(&w, &root, 1);
    rc = rc ? rc : wire_writer_u16(&w, WIRE_TYPE_OPT);
    rc = rc ? rc : wire_writer_u16(&w, LOADGEN_EDNS_UDP_SIZE);
    rc = rc ? rc : wire_writer_u32(&w, 0); /* extended RCODE, version 0, flags */
    rc = rc ? rc : wire_writer_u16(&w, 0); /* no options */
    entry->query_len = w.len;
    return rc;
}

static int loadgen_copy_names(struct loadgen *lg, const struct loadgen_options *o)
{
    lg->names = calloc(o->name_count, sizeof(*lg->names));
    lg->weight_cumulative = calloc(o->name_count, sizeof(*lg->weight_cumulative));
    if (!lg->names || !lg->weight_cumulative)
        return BALLAST_ENOMEM;
    lg->name_count = o->name_count;
    uint64_t total = 0;
    for (size_t i = 0; i < o->name_count; i++) {
        lg->names[i].name = o->names[i];
        if (loadgen_build_query(&lg->names[i]) != 0)
            return BALLAST_EINVAL;
        total += o->names[i].weight;
        lg->weight_cumulative[i] = total;
    }
    return BALLAST_OK;
}

static int loadgen_alloc_tables(struct loadgen *lg)
{
    lg->ring_cap = LOADGEN_RING_MIN;
    lg->table_cap = 2 * LOADGEN_RING_MIN;
    /* a second's queries are all answered or timed out timeout + one tick after it ends */
    lg->hist_count = (lg->timeout_ns + NS_PER_S - 1) / NS_PER_S + 3;
    lg->ring = calloc(lg->ring_cap, sizeof(*lg->ring));
    lg->table = calloc(lg->table_cap, sizeof(*lg->table));
    lg->hists = calloc(lg->hist_count, sizeof(*lg->hists));
    return lg->ring && lg->table && lg->hists ? BALLAST_OK : BALLAST_ENOMEM;
}

/* Client sockets on the loopback of the server's family, port 0 (random source ports). */
static int loadgen_open_clients(struct loadgen *lg)
{
    struct sockaddr_storage local;
    memset(&local, 0, sizeof(local));
    if (lg->server.ss.ss_family == AF_INET)
        uv_ip4_addr("127.0.0.1", 0, (struct sockaddr_in *)&local);
    else
        uv_ip6_addr("::1", 0, (struct sockaddr_in6 *)&local);
    for (uint32_t i = 0; i < lg->client_count; i++) {
        struct loadgen_client *client = &lg->clients[i];
        client->lg = lg;
        client->index = i;
        if (uv_udp_init(lg->loop, &client->udp) != 0)
            return BALLAST_ESYS;
        client->udp.data = client;
        client->open = true;
        lg->open_handles++;
        if (uv_udp_bind(&client->udp, (const struct sockaddr *)&local, 0) != 0 ||
            uv_udp_recv_start(&client->udp, loadgen_on_alloc, loadgen_on_recv) != 0)
            return BALLAST_ESYS;
    }
    return BALLAST_OK;
}

int loadgen_start(uv_loop_t *loop, const struct loadgen_options *options, struct loadgen **out)
{
    *out = NULL;
    if (!loop || !options || loadgen_check_options(options) != 0)
        return BALLAST_EINVAL;
    if (sodium_init() < 0)
        return BALLAST_ESYS;
    struct loadgen *lg = calloc(1, sizeof(*lg));
    if (!lg)
        return BALLAST_ENOMEM;
    lg->loop = loop;
    lg->server = options->server;
    lg->rate = options->rate;
    lg->timeout_ns = (uint64_t)options->timeout_ms * 1000000ull;
    lg->client_count = options->clients;
    lg->clients = calloc(options->clients, sizeof(*lg->clients));
    int rc = lg->clients ? loadgen_copy_names(lg, options) : BALLAST_ENOMEM;
    rc = rc ? rc : loadgen_alloc_tables(lg);
    if (rc != 0) {
        loadgen_release(lg);
        return rc;
    }
    rc = loadgen_open_clients(lg);
    if (rc == 0 && uv_timer_init(loop, &lg->timer) != 0)
        rc = BALLAST_ESYS;
    if (rc == 0) {
        lg->timer.data = lg;
        lg->timer_open = true;
        lg->open_handles++;
        lg->start_ns = uv_hrtime();
        lg->last_refresh_ns = lg->start_ns;
        rc = loadgen_add_second(lg);
    }
    if (rc == 0 && uv_timer_start(&lg->timer, loadgen_tick, 0, LOADGEN_TICK_MS) != 0)
        rc = BALLAST_ESYS;
    if (rc != 0) {
        loadgen_free(lg); /* handles close on the loop */
        return rc;
    }
    *out = lg;
    return BALLAST_OK;
}

void loadgen_stop(struct loadgen *lg, void (*done)(void *ctx), void *ctx)
{
    if (!lg || lg->stopping)
        return;
    lg->stopping = true;
    lg->done = done;
    lg->done_ctx = ctx;
}

const struct loadgen_second *loadgen_seconds(const struct loadgen *lg, size_t *count)
{
    *count = lg ? lg->second_count : 0;
    return lg ? lg->seconds : NULL;
}

void loadgen_free(struct loadgen *lg)
{
    if (!lg)
        return;
    if (lg->open_handles == 0) {
        loadgen_release(lg);
        return;
    }
    /* count them all before any close callback can run */
    if (lg->timer_open) {
        uv_timer_stop(&lg->timer);
        uv_close((uv_handle_t *)&lg->timer, loadgen_on_timer_closed);
    }
    for (uint32_t i = 0; i < lg->client_count; i++) {
        struct loadgen_client *client = &lg->clients[i];
        if (!client->open)
            continue;
        uv_udp_recv_stop(&client->udp);
        uv_close((uv_handle_t *)&client->udp, loadgen_on_udp_closed);
    }
}
