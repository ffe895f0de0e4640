/* Upstream exchanges on one libuv loop: query building, UDP from random ports (uv_poll on a
 * connected socket), TCP fallback (uv_tcp, RFC 7766 framing), answer matching, coalescing of
 * identical exchanges, timeouts. Decisions about whom to ask live in iterate.c and infra.c. */
#include "outbound.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cookie.h"
#include "errors.h"
#include "wire.h"

#define OUTBOUND_OPT_RR_LEN 11 /* root owner, TYPE, CLASS, TTL, RDLENGTH */
#define OUTBOUND_QUERY_MAX                                                                         \
    (WIRE_HEADER_LEN + WIRE_NAME_MAX + 4 + OUTBOUND_OPT_RR_LEN + COOKIE_OPTION_MAX)
#define OUTBOUND_COOKIE_SLOTS 1024 /* server cookies remembered per process (direct-mapped) */
/* family, port, address (16), IPv6 scope (4), qtype, qclass, flags, lowercased qname */
#define OUTBOUND_KEY_MAX (1 + 2 + 16 + 4 + 2 + 2 + 1 + WIRE_NAME_MAX)
#define OUTBOUND_BIND_ATTEMPTS 8       /* random ports tried before the kernel picks one */
#define OUTBOUND_UDP_RECV_MAX 65535    /* largest UDP payload */
#define OUTBOUND_UDP_READS_PER_POLL 64 /* per wakeup, so one socket cannot starve the loop */
#define OUTBOUND_TCP_INITIAL_READ 1024 /* grows to the largest frame seen */
#define OUTBOUND_BUCKETS_MIN 16u
#define OUTBOUND_BUCKETS_MAX 65536u

/* One waiter on an exchange. */
struct outbound_request {
    struct outbound_exchange *exchange; /* NULL while its callback runs */
    struct outbound_request *prev, *next;
    outbound_done_fn cb;
    void *ctx;
};

/* One question on the wire to one server, shared by every waiter that asked the same. It lives
 * until its last handle has closed, which can be after it finished. */
struct outbound_exchange {
    struct outbound *ob;
    struct outbound_exchange *hash_next;   /* bucket chain, while in flight */
    struct outbound_exchange *prev, *next; /* ob->active, while in flight */
    struct outbound_request *waiters;
    uint64_t hash;
    uint8_t key[OUTBOUND_KEY_MAX];
    size_t key_len;
    struct addr server;
    uint8_t qname[WIRE_NAME_MAX]; /* as sent */
    size_t qname_len;
    uint16_t qtype, qclass, id;
    uint8_t client_cookie[COOKIE_CLIENT_LEN]; /* sent in the query's COOKIE option */
    bool sent_cookie;
    bool expect_cookie; /* the server gave us a server cookie before: it does cookies */
    uint8_t frame[2 + OUTBOUND_QUERY_MAX]; /* TCP length prefix, then the query */
    size_t query_len;
    uint64_t sent_ns; /* when the current attempt went out */

    uv_timer_t timer;
    int udp_fd;
    uv_poll_t poll;
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uint8_t *rbuf; /* TCP read buffer */
    size_t rlen, rcap;

    int handles_open; /* freed when this drops to 0 */
    bool poll_open;
    bool tcp_open;
    bool in_flight; /* in the hash table and counted against max_outstanding */
    bool finished;
};

/* The server cookie a server last gave us (RFC 7873 §5.3), keyed by its IP. */
struct outbound_cookie {
    uint8_t ip[16];
    uint8_t ip_len; /* 0: free slot */
    uint8_t server_len;
    uint8_t server[COOKIE_SERVER_MAX];
};

/* Learnt server cookies are shared by every outbound (worker) of the process: the client cookie
 * depends only on the process secret and the server's address, so any worker can send what
 * another learnt, and every worker knows which servers do cookies (the defence against forged
 * answers without one). Taken once per query and per answer. */
static struct {
    pthread_mutex_t lock;
    pthread_once_t once;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    struct outbound_cookie slots[OUTBOUND_COOKIE_SLOTS];
} outbound_cookie_jar = {.lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT};

struct outbound {
    uv_loop_t *loop;
    struct outbound_options options;
    struct outbound_stats stats;
    uint8_t hash_key[crypto_shorthash_KEYBYTES]; /* random: peers cannot aim at one bucket */
    struct outbound_exchange **buckets;
    size_t bucket_mask;
    struct outbound_exchange *active; /* in flight */
    uint32_t outstanding;             /* exchanges in flight */
    uint32_t exchanges_alive;         /* allocated, including those whose handles are closing */
    uint8_t *udp_buf;                 /* OUTBOUND_UDP_RECV_MAX bytes, shared by UDP reads */
    bool closing;
};

static void exchange_start_tcp_or_fail(struct outbound_exchange *ex);
static void exchange_cookie_forget(struct outbound_exchange *ex);

/* Counters are written only on the loop thread; relaxed stores let other threads read them. */
static void outbound_count(uint64_t *counter)
{
    __atomic_store_n(counter, *counter + 1, __ATOMIC_RELAXED);
}

void outbound_get_stats(const struct outbound *ob, struct outbound_stats *out)
{
    const struct outbound_stats *s = &ob->stats;
    out->sent_udp = __atomic_load_n(&s->sent_udp, __ATOMIC_RELAXED);
    out->sent_tcp = __atomic_load_n(&s->sent_tcp, __ATOMIC_RELAXED);
    out->answers = __atomic_load_n(&s->answers, __ATOMIC_RELAXED);
    out->timeouts = __atomic_load_n(&s->timeouts, __ATOMIC_RELAXED);
    out->errors = __atomic_load_n(&s->errors, __ATOMIC_RELAXED);
    out->mismatched = __atomic_load_n(&s->mismatched, __ATOMIC_RELAXED);
    out->tc_fallbacks = __atomic_load_n(&s->tc_fallbacks, __ATOMIC_RELAXED);
    out->coalesced = __atomic_load_n(&s->coalesced, __ATOMIC_RELAXED);
    out->bad_cookie = __atomic_load_n(&s->bad_cookie, __ATOMIC_RELAXED);
}

static uint32_t outbound_elapsed_ms(uint64_t since_ns)
{
    uint64_t ms = (uv_hrtime() - since_ns) / 1000000u;
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

/* ---- create / free ---- */

static size_t outbound_bucket_count(uint32_t max_outstanding)
{
    size_t count = OUTBOUND_BUCKETS_MIN;
    while (count < max_outstanding && count < OUTBOUND_BUCKETS_MAX)
        count <<= 1;
    return count;
}

int outbound_create(uv_loop_t *loop, const struct outbound_options *o, struct outbound **out)
{
    if (loop == NULL || out == NULL)
        return BALLAST_EINVAL;
    if (sodium_init() < 0)
        return BALLAST_ESYS;
    struct outbound *ob = calloc(1, sizeof(*ob));
    if (ob == NULL)
        return BALLAST_ENOMEM;
    if (o != NULL)
        ob->options = *o;
    if (ob->options.edns_udp_size == 0)
        ob->options.edns_udp_size = OUTBOUND_DEFAULT_EDNS_UDP_SIZE;
    if (ob->options.tcp_timeout_ms == 0)
        ob->options.tcp_timeout_ms = OUTBOUND_DEFAULT_TCP_TIMEOUT_MS;
    if (ob->options.max_outstanding == 0)
        ob->options.max_outstanding = OUTBOUND_DEFAULT_MAX_OUTSTANDING;
    size_t buckets = outbound_bucket_count(ob->options.max_outstanding);
    ob->buckets = calloc(buckets, sizeof(*ob->buckets));
    ob->udp_buf = malloc(OUTBOUND_UDP_RECV_MAX);
    if (ob->buckets == NULL || ob->udp_buf == NULL) {
        free(ob->buckets);
        free(ob->udp_buf);
        free(ob);
        return BALLAST_ENOMEM;
    }
    ob->bucket_mask = buckets - 1;
    ob->loop = loop;
    crypto_shorthash_keygen(ob->hash_key);
    *out = ob;
    return 0;
}

static void outbound_destroy(struct outbound *ob)
{
    free(ob->buckets);
    free(ob->udp_buf);
    free(ob);
}

/* ---- the table of exchanges in flight (coalescing) ---- */

/* The identity of an exchange: who is asked what, how. Names compare without case. */
static void outbound_key_build(const struct outbound_query *q, uint8_t *key, size_t *key_len)
{
    size_t at = 0;
    const struct sockaddr_storage *ss = &q->server->ss;
    key[at++] = (uint8_t)ss->ss_family;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        memcpy(key + at, &sin->sin_port, 2);
        memcpy(key + at + 2, &sin->sin_addr, 4);
        at += 6;
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        memcpy(key + at, &sin6->sin6_port, 2);
        memcpy(key + at + 2, &sin6->sin6_addr, 16);
        memcpy(key + at + 18, &sin6->sin6_scope_id, 4);
        at += 22;
    }
    wire_write_u16(key + at, q->qtype);
    wire_write_u16(key + at + 2, q->qclass);
    key[at + 4] = (uint8_t)((q->edns ? 1 : 0) | (q->tcp ? 2 : 0) | (q->rd ? 4 : 0));
    at += 5;
    wire_name_lower(key + at, q->qname, q->qname_len);
    *key_len = at + q->qname_len;
}

static uint64_t outbound_key_hash(const struct outbound *ob, const uint8_t *key, size_t len)
{
    uint8_t digest[crypto_shorthash_BYTES];
    crypto_shorthash(digest, key, len, ob->hash_key);
    uint64_t hash;
    memcpy(&hash, digest, sizeof(hash));
    return hash;
}

static struct outbound_exchange *outbound_find(const struct outbound *ob, uint64_t hash,
                                               const uint8_t *key, size_t key_len)
{
    for (struct outbound_exchange *ex = ob->buckets[hash & ob->bucket_mask]; ex != NULL;
         ex = ex->hash_next) {
        if (ex->hash == hash && ex->key_len == key_len && memcmp(ex->key, key, key_len) == 0)
            return ex;
    }
    return NULL;
}

static void outbound_insert(struct outbound *ob, struct outbound_exchange *ex)
{
    struct outbound_exchange **bucket = &ob->buckets[ex->hash & ob->bucket_mask];
    ex->hash_next = *bucket;
    *bucket = ex;
    ex->prev = NULL;
    ex->next = ob->active;
    if (ob->active != NULL)
        ob->active->prev = ex;
    ob->active = ex;
    ob->outstanding++;
    ex->in_flight = true;
}

static void outbound_remove(struct outbound *ob, struct outbound_exchange *ex)
{
    struct outbound_exchange **link = &ob->buckets[ex->hash & ob->bucket_mask];
    while (*link != ex)
        link = &(*link)->hash_next;
    *link = ex->hash_next;
    if (ex->prev != NULL)
        ex->prev->next = ex->next;
    else
        ob->active = ex->next;
    if (ex->next != NULL)
        ex->next->prev = ex->prev;
    ob->outstanding--;
    ex->in_flight = false;
}

/* ---- exchange lifetime ---- */

static void exchange_release(struct outbound_exchange *ex)
{
    if (--ex->handles_open > 0)
        return;
    struct outbound *ob = ex->ob;
    free(ex->rbuf);
    free(ex);
    ob->exchanges_alive--;
    if (ob->closing && ob->exchanges_alive == 0)
        outbound_destroy(ob);
}

static void exchange_on_handle_closed(uv_handle_t *handle)
{
    exchange_release(handle->data);
}

/* The fd must outlive its poll handle (uv_poll docs), so it is closed here. */
static void exchange_on_poll_closed(uv_handle_t *handle)
{
    struct outbound_exchange *ex = handle->data;
    close(ex->udp_fd);
    ex->udp_fd = -1;
    exchange_release(ex);
}

static void exchange_close_udp(struct outbound_exchange *ex)
{
    if (!ex->poll_open)
        return;
    ex->poll_open = false;
    uv_close((uv_handle_t *)&ex->poll, exchange_on_poll_closed);
}

/* Leave the table and close every handle; the memory goes when the last one has closed. A
 * pending TCP connect or write completes with UV_ECANCELED first and sees ex->finished. */
static void exchange_end(struct outbound_exchange *ex)
{
    if (ex->finished)
        return;
    ex->finished = true;
    if (ex->in_flight)
        outbound_remove(ex->ob, ex);
    uv_timer_stop(&ex->timer);
    uv_close((uv_handle_t *)&ex->timer, exchange_on_handle_closed);
    exchange_close_udp(ex);
    if (ex->tcp_open) {
        ex->tcp_open = false;
        uv_close((uv_handle_t *)&ex->tcp, exchange_on_handle_closed);
    }
}

/* Every waiter gets the same result. A callback may cancel other waiters (they leave the list)
 * or free the outbound (this exchange is still alive, so the outbound is too). */
static void exchange_finish(struct outbound_exchange *ex, int status, const uint8_t *resp,
                            size_t resp_len)
{
    if (ex->finished)
        return;
    struct outbound_stats *stats = &ex->ob->stats;
    if (status == 0)
        outbound_count(&stats->answers);
    else if (status == BALLAST_ETIMEOUT)
        outbound_count(&stats->timeouts);
    else if (status != BALLAST_ECANCELED)
        outbound_count(&stats->errors);
    uint32_t rtt_ms = outbound_elapsed_ms(ex->sent_ns);
    exchange_end(ex);
    struct outbound_request *req;
    while ((req = ex->waiters) != NULL) {
        ex->waiters = req->next;
        if (ex->waiters != NULL)
            ex->waiters->prev = NULL;
        req->exchange = NULL;
        req->cb(req->ctx, status, resp, resp_len, rtt_ms);
        free(req);
    }
}

static void exchange_on_timeout(uv_timer_t *timer)
{
    exchange_finish(timer->data, BALLAST_ETIMEOUT, NULL, 0);
}

/* ---- DNS cookies (RFC 7873 §5.1, §5.3) ---- */

/* The server's IP bytes into ip; returns 4, 16, or 0 for another family. */
static size_t outbound_server_ip(const struct addr *server, uint8_t ip[16])
{
    if (server->ss.ss_family == AF_INET) {
        memcpy(ip, &((const struct sockaddr_in *)&server->ss)->sin_addr, 4);
        return 4;
    }
    if (server->ss.ss_family == AF_INET6) {
        memcpy(ip, &((const struct sockaddr_in6 *)&server->ss)->sin6_addr, 16);
        return 16;
    }
    return 0;
}

static void outbound_cookie_jar_init(void)
{
    crypto_shorthash_keygen(outbound_cookie_jar.hash_key);
}

/* The jar slot for server's IP: the one holding it when create is false (NULL if absent), or the
 * one to overwrite when create is true. Jar lock held. */
static struct outbound_cookie *outbound_cookie_slot(const struct addr *server, bool create)
{
    uint8_t ip[16];
    size_t ip_len = outbound_server_ip(server, ip);
    if (ip_len == 0)
        return NULL;
    uint64_t h;
    crypto_shorthash((unsigned char *)&h, ip, ip_len, outbound_cookie_jar.hash_key);
    struct outbound_cookie *slot = &outbound_cookie_jar.slots[h % OUTBOUND_COOKIE_SLOTS];
    if (create) {
        memcpy(slot->ip, ip, ip_len);
        slot->ip_len = (uint8_t)ip_len;
        return slot;
    }
    return slot->ip_len == ip_len && memcmp(slot->ip, ip, ip_len) == 0 ? slot : NULL;
}

/* The COOKIE option for ex's query: our client cookie for the server, and the server cookie it
 * gave us last, if any. Returns its length. */
static size_t exchange_cookie_option(struct outbound_exchange *ex, uint8_t *out, size_t cap)
{
    pthread_once(&outbound_cookie_jar.once, outbound_cookie_jar_init);
    cookie_client_make(cookie_client_secret(), (const struct sockaddr *)&ex->server.ss,
                       ex->client_cookie);
    pthread_mutex_lock(&outbound_cookie_jar.lock);
    const struct outbound_cookie *slot = outbound_cookie_slot(&ex->server, false);
    size_t n = cookie_write_option(out, cap, ex->client_cookie, slot ? slot->server : NULL,
                                   slot ? slot->server_len : 0);
    ex->expect_cookie = slot != NULL && slot->server_len > 0;
    pthread_mutex_unlock(&outbound_cookie_jar.lock);
    ex->sent_cookie = n > 0;
    return n;
}

/* What to do with a response that matched the question (RFC 7873 §5.3). */
enum cookie_verdict {
    COOKIE_TAKE,    /* good, or the server does not do cookies */
    COOKIE_FORGED,  /* another client cookie: a forgery, ignored, keep waiting */
    COOKIE_MISSING, /* none over UDP from a server that gave us one: ask again over TCP */
};

/* A response whose COOKIE option carries another client cookie is forged, and is ignored; a
 * good one's server cookie is kept for the next query to this server. A response without one is
 * fine from a server that does not do cookies, but one that gave us a server cookie before is
 * expected to answer with one. Over UDP such an answer is not taken: the question is asked again
 * over TCP, as BIND does ("missing expected cookie"). An off-path forger cannot know our client
 * cookie, so this is what stops a Kaminsky race even when it guesses the ID and the port, while
 * a server that really stopped doing cookies (a new build, a mixed anycast fleet, a middlebox
 * stripping options) costs a TCP exchange rather than a timeout. Over TCP (no off-path forgery)
 * a cookieless answer is taken, and the server's cookie is forgotten: it no longer does them. */
static enum cookie_verdict exchange_cookie_check(struct outbound_exchange *ex, const uint8_t *pkt,
                                                 size_t len, bool udp)
{
    struct cookie c;
    if (!ex->sent_cookie)
        return COOKIE_TAKE;
    if (cookie_find_in_response(pkt, len, &c) != 0 || !c.present) {
        if (!ex->expect_cookie)
            return COOKIE_TAKE;
        outbound_count(&ex->ob->stats.bad_cookie);
        if (udp)
            return COOKIE_MISSING;
        exchange_cookie_forget(ex);
        return COOKIE_TAKE;
    }
    if (sodium_memcmp(c.client, ex->client_cookie, COOKIE_CLIENT_LEN) != 0) {
        outbound_count(&ex->ob->stats.bad_cookie);
        return COOKIE_FORGED;
    }
    if (c.server_len >= COOKIE_SERVER_MIN) {
        pthread_mutex_lock(&outbound_cookie_jar.lock);
        struct outbound_cookie *slot = outbound_cookie_slot(&ex->server, true);
        if (slot) {
            memcpy(slot->server, c.server, c.server_len);
            slot->server_len = c.server_len;
        }
        pthread_mutex_unlock(&outbound_cookie_jar.lock);
    }
    return COOKIE_TAKE;
}

/* Forget the server cookie of ex's server. */
static void exchange_cookie_forget(struct outbound_exchange *ex)
{
    pthread_mutex_lock(&outbound_cookie_jar.lock);
    struct outbound_cookie *slot = outbound_cookie_slot(&ex->server, false);
    if (slot)
        slot->ip_len = 0;
    pthread_mutex_unlock(&outbound_cookie_jar.lock);
}

/* ---- query and answer ---- */

/* RFC 1035 §4.1: one question, RD=0 when we iterate, RD=1 to forwarders; RFC 6891 §6.1.2: OPT with
 * our payload size, version 0, no DO bit. */
static int exchange_build_query(struct outbound_exchange *ex, bool edns, bool rd, uint16_t udp_size)
{
    struct wire_writer w;
    wire_writer_init(&w, ex->frame + 2, OUTBOUND_QUERY_MAX);
    int rc = wire_writer_u16(&w, ex->id);
    rc = rc ? rc : wire_writer_u16(&w, rd ? WIRE_FLAG_RD : 0); /* opcode QUERY */
    rc = rc ? rc : wire_writer_u16(&w, 1);                     /* QDCOUNT */
    rc = rc ? rc : wire_writer_u32(&w, 0);                     /* ANCOUNT, NSCOUNT */
    rc = rc ? rc : wire_writer_u16(&w, edns ? 1 : 0);          /* ARCOUNT */
    rc = rc ? rc : wire_writer_name(&w, ex->qname, ex->qname_len, false);
    rc = rc ? rc : wire_writer_u16(&w, ex->qtype);
    rc = rc ? rc : wire_writer_u16(&w, ex->qclass);
    if (edns) {
        static const uint8_t root = 0;
        uint8_t cookie[COOKIE_OPTION_MAX];
        size_t cookie_len = exchange_cookie_option(ex, cookie, sizeof cookie);
        rc = rc ? rc : wire_writer_bytes(&w, &root, 1);
        rc = rc ? rc : wire_writer_u16(&w, WIRE_TYPE_OPT);
        rc = rc ? rc : wire_writer_u16(&w, udp_size);
        rc = rc ? rc : wire_writer_u32(&w, 0); /* extended RCODE, version 0, flags 0 */
        rc = rc ? rc : wire_writer_u16(&w, (uint16_t)cookie_len);
        rc = rc ? rc : wire_writer_bytes(&w, cookie, cookie_len);
    }
    if (rc != 0)
        return rc;
    ex->query_len = w.len;
    wire_write_u16(ex->frame, (uint16_t)w.len); /* RFC 7766 §8 length prefix */
    return 0;
}

/* RFC 5452 §9.1: accept only a response to our ID with our question; the socket is connected,
 * so the kernel already checked the source address and port. */
static bool exchange_matches(const struct outbound_exchange *ex, const uint8_t *pkt, size_t len)
{
    if (len < WIRE_HEADER_LEN)
        return false;
    uint16_t flags = wire_read_u16(pkt + 2);
    if (wire_read_u16(pkt) != ex->id || (flags & WIRE_FLAG_QR) == 0 || WIRE_OPCODE(flags) != 0 ||
        wire_read_u16(pkt + 4) != 1)
        return false;
    uint8_t name[WIRE_NAME_MAX];
    size_t name_len;
    size_t pos = WIRE_HEADER_LEN;
    if (wire_name_unpack(pkt, len, &pos, name, &name_len) != 0 || len - pos < 4)
        return false;
    return wire_name_equal_nocase(name, name_len, ex->qname, ex->qname_len) &&
           wire_read_u16(pkt + pos) == ex->qtype && wire_read_u16(pkt + pos + 2) == ex->qclass;
}

/* ---- UDP ---- */

/* RFC 5452 §9.2: a random source port makes blind spoofing as hard as guessing 16+ more bits. */
static int udp_bind_random_port(int fd, int family)
{
    for (int attempt = 0; attempt < OUTBOUND_BIND_ATTEMPTS; attempt++) {
        uint16_t port = (uint16_t)(OUTBOUND_SOURCE_PORT_MIN +
                                   randombytes_uniform(65536u - OUTBOUND_SOURCE_PORT_MIN));
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        socklen_t len;
        if (family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
            sin->sin_family = AF_INET;
            sin->sin_port = htons(port);
            len = sizeof(*sin);
        } else {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons(port);
            len = sizeof(*sin6);
        }
        if (bind(fd, (const struct sockaddr *)&ss, len) == 0)
            return 0;
        if (errno != EADDRINUSE)
            return BALLAST_ESYS;
    }
    return 0; /* connect() lets the kernel pick an ephemeral port */
}

/* A fresh socket per exchange, connected so that the kernel drops datagrams from any other
 * address or port and reports ICMP unreachable as ECONNREFUSED. */
static int udp_open_socket(const struct addr *server, int *fd_out)
{
    int family = server->ss.ss_family;
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return BALLAST_ESYS;
    int rc = udp_bind_random_port(fd, family);
    if (rc == 0 && connect(fd, (const struct sockaddr *)&server->ss, server->len) != 0)
        rc = BALLAST_EIO;
    if (rc != 0) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

/* Returns true when the exchange is done with UDP (answered, or moved to TCP on TC=1). */
static bool udp_consider(struct outbound_exchange *ex, const uint8_t *pkt, size_t len)
{
    if (!exchange_matches(ex, pkt, len)) {
        outbound_count(&ex->ob->stats.mismatched);
        return false; /* keep waiting: a spoofer must not end the exchange */
    }
    switch (exchange_cookie_check(ex, pkt, len, true)) {
    case COOKIE_FORGED:
        return false;
    case COOKIE_MISSING:
        exchange_start_tcp_or_fail(ex);
        return true;
    case COOKIE_TAKE:
        break;
    }
    /* RFC 1035 §4.2.1, RFC 7766 §5: a truncated answer is asked again over TCP. */
    if (wire_read_u16(pkt + 2) & WIRE_FLAG_TC) {
        outbound_count(&ex->ob->stats.tc_fallbacks);
        exchange_start_tcp_or_fail(ex);
        return true;
    }
    exchange_finish(ex, 0, pkt, len);
    return true;
}

static void udp_on_poll(uv_poll_t *poll, int status, int events)
{
    struct outbound_exchange *ex = poll->data;
    uint8_t *buf = ex->ob->udp_buf;
    for (int i = 0; i < OUTBOUND_UDP_READS_PER_POLL; i++) {
        ssize_t n = recv(ex->udp_fd, buf, OUTBOUND_UDP_RECV_MAX, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            exchange_finish(ex, BALLAST_EIO, NULL, 0); /* ECONNREFUSED from ICMP, etc. */
            return;
        }
        if (udp_consider(ex, buf, (size_t)n))
            return;
    }
    /* libuv stops the handle and reports an error on POLLERR. */
    if (status < 0)
        exchange_finish(ex, BALLAST_EIO, NULL, 0);
}

static int udp_start(struct outbound_exchange *ex, uint32_t timeout_ms)
{
    int rc = udp_open_socket(&ex->server, &ex->udp_fd);
    if (rc != 0)
        return rc;
    if (uv_poll_init(ex->ob->loop, &ex->poll, ex->udp_fd) != 0) {
        close(ex->udp_fd);
        ex->udp_fd = -1;
        return BALLAST_ESYS;
    }
    ex->poll.data = ex;
    ex->poll_open = true;
    ex->handles_open++;
    if (uv_poll_start(&ex->poll, UV_READABLE, udp_on_poll) != 0)
        return BALLAST_ESYS;
    ssize_t sent;
    do {
        sent = send(ex->udp_fd, ex->frame + 2, ex->query_len, 0);
    } while (sent < 0 && errno == EINTR);
    if (sent != (ssize_t)ex->query_len)
        return BALLAST_EIO;
    outbound_count(&ex->ob->stats.sent_udp);
    ex->sent_ns = uv_hrtime();
    uv_timer_start(&ex->timer, exchange_on_timeout, timeout_ms, 0);
    return 0;
}

/* ---- TCP (RFC 7766) ---- */

static void tcp_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct outbound_exchange *ex = handle->data;
    if (ex->rbuf == NULL) {
        ex->rbuf = malloc(OUTBOUND_TCP_INITIAL_READ);
        ex->rcap = ex->rbuf != NULL ? OUTBOUND_TCP_INITIAL_READ : 0;
    }
    /* A zero-length buffer makes libuv report UV_ENOBUFS, which ends the exchange. */
    *buf = uv_buf_init((char *)ex->rbuf + ex->rlen, (unsigned)(ex->rcap - ex->rlen));
}

/* Look at every complete frame; keep the partial one, with room for all of it. Returns false
 * when the exchange finished. */
static bool tcp_process(struct outbound_exchange *ex)
{
    size_t off = 0;
    while (ex->rlen - off >= 2) {
        size_t frame = wire_read_u16(ex->rbuf + off);
        if (ex->rlen - off - 2 < frame)
            break;
        const uint8_t *msg = ex->rbuf + off + 2;
        if (exchange_matches(ex, msg, frame)) {
            if (exchange_cookie_check(ex, msg, frame, false) == COOKIE_TAKE) {
                exchange_finish(ex, 0, msg, frame);
                return false;
            }
        } else {
            outbound_count(&ex->ob->stats.mismatched);
        }
        off += 2 + frame;
    }
    memmove(ex->rbuf, ex->rbuf + off, ex->rlen - off);
    ex->rlen -= off;
    if (ex->rlen >= 2) {
        size_t need = 2 + (size_t)wire_read_u16(ex->rbuf);
        if (need > ex->rcap) {
            uint8_t *grown = realloc(ex->rbuf, need);
            if (grown == NULL) {
                exchange_finish(ex, BALLAST_EIO, NULL, 0);
                return false;
            }
            ex->rbuf = grown;
            ex->rcap = need;
        }
    }
    return true;
}

static void tcp_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct outbound_exchange *ex = stream->data;
    if (ex->finished || nread == 0)
        return;
    if (nread < 0) {
        /* EOF or reset before our answer came. */
        exchange_finish(ex, BALLAST_EIO, NULL, 0);
        return;
    }
    ex->rlen += (size_t)nread;
    tcp_process(ex);
}

static void tcp_on_written(uv_write_t *req, int status)
{
    struct outbound_exchange *ex = req->data;
    if (!ex->finished && status < 0)
        exchange_finish(ex, BALLAST_EIO, NULL, 0);
}

static void tcp_on_connect(uv_connect_t *req, int status)
{
    struct outbound_exchange *ex = req->data;
    if (ex->finished)
        return;
    if (status < 0) {
        exchange_finish(ex, BALLAST_EIO, NULL, 0); /* refused, unreachable */
        return;
    }
    uv_buf_t buf = uv_buf_init((char *)ex->frame, (unsigned)(2 + ex->query_len));
    ex->write.data = ex;
    if (uv_write(&ex->write, (uv_stream_t *)&ex->tcp, &buf, 1, tcp_on_written) != 0 ||
        uv_read_start((uv_stream_t *)&ex->tcp, tcp_on_alloc, tcp_on_read) != 0) {
        exchange_finish(ex, BALLAST_EIO, NULL, 0);
        return;
    }
    outbound_count(&ex->ob->stats.sent_tcp);
}

static int tcp_start(struct outbound_exchange *ex)
{
    if (uv_tcp_init(ex->ob->loop, &ex->tcp) != 0)
        return BALLAST_ESYS;
    ex->tcp.data = ex;
    ex->tcp_open = true;
    ex->handles_open++;
    uv_tcp_nodelay(&ex->tcp, 1);
    ex->connect.data = ex;
    ex->sent_ns = uv_hrtime();
    if (uv_tcp_connect(&ex->connect, &ex->tcp, (const struct sockaddr *)&ex->server.ss,
                       tcp_on_connect) != 0)
        return BALLAST_EIO;
    uv_timer_start(&ex->timer, exchange_on_timeout, ex->ob->options.tcp_timeout_ms, 0);
    return 0;
}

static void exchange_start_tcp_or_fail(struct outbound_exchange *ex)
{
    exchange_close_udp(ex);
    uv_timer_stop(&ex->timer);
    if (tcp_start(ex) != 0)
        exchange_finish(ex, BALLAST_EIO, NULL, 0);
}

/* ---- public ---- */

static bool outbound_server_valid(const struct addr *server)
{
    if (server == NULL)
        return false;
    if (server->ss.ss_family == AF_INET)
        return server->len >= sizeof(struct sockaddr_in) &&
               ((const struct sockaddr_in *)&server->ss)->sin_port != 0;
    if (server->ss.ss_family == AF_INET6)
        return server->len >= sizeof(struct sockaddr_in6) &&
               ((const struct sockaddr_in6 *)&server->ss)->sin6_port != 0;
    return false;
}

static bool outbound_query_valid(const struct outbound_query *q)
{
    return outbound_server_valid(q->server) && q->qname != NULL && q->qname_len > 0 &&
           q->qname_len <= WIRE_NAME_MAX &&
           wire_name_length(q->qname, q->qname_len) == q->qname_len &&
           (q->tcp || q->timeout_ms > 0);
}

static void outbound_attach(struct outbound_exchange *ex, struct outbound_request *req,
                            outbound_done_fn cb, void *ctx)
{
    req->exchange = ex;
    req->cb = cb;
    req->ctx = ctx;
    req->prev = NULL;
    req->next = ex->waiters;
    if (ex->waiters != NULL)
        ex->waiters->prev = req;
    ex->waiters = req;
}

static struct outbound_exchange *outbound_exchange_new(struct outbound *ob,
                                                       const struct outbound_query *q)
{
    struct outbound_exchange *ex = calloc(1, sizeof(*ex));
    if (ex == NULL)
        return NULL;
    ex->ob = ob;
    ex->udp_fd = -1;
    ex->server = *q->server;
    memcpy(ex->qname, q->qname, q->qname_len);
    ex->qname_len = q->qname_len;
    ex->qtype = q->qtype;
    ex->qclass = q->qclass;
    ex->id = (uint16_t)randombytes_uniform(65536u); /* RFC 5452 §4.3 */
    uv_timer_init(ob->loop, &ex->timer);
    ex->timer.data = ex;
    ex->handles_open = 1;
    ob->exchanges_alive++;
    return ex;
}

int outbound_send(struct outbound *ob, const struct outbound_query *q, outbound_done_fn cb,
                  void *ctx, struct outbound_request **handle)
{
    if (ob == NULL || q == NULL || cb == NULL || !outbound_query_valid(q))
        return BALLAST_EINVAL;
    if (ob->closing)
        return BALLAST_ECANCELED;
    uint8_t key[OUTBOUND_KEY_MAX];
    size_t key_len;
    outbound_key_build(q, key, &key_len);
    uint64_t hash = outbound_key_hash(ob, key, key_len);
    struct outbound_exchange *ex = outbound_find(ob, hash, key, key_len);
    if (ex == NULL && ob->outstanding >= ob->options.max_outstanding)
        return BALLAST_ELIMIT;
    struct outbound_request *req = malloc(sizeof(*req));
    if (req == NULL)
        return BALLAST_ENOMEM;
    if (ex != NULL) {
        outbound_count(&ob->stats.coalesced);
        outbound_attach(ex, req, cb, ctx);
        if (handle != NULL)
            *handle = req;
        return 0;
    }
    ex = outbound_exchange_new(ob, q);
    if (ex == NULL) {
        free(req);
        return BALLAST_ENOMEM;
    }
    memcpy(ex->key, key, key_len);
    ex->key_len = key_len;
    ex->hash = hash;
    int rc = exchange_build_query(ex, q->edns, q->rd, ob->options.edns_udp_size);
    if (rc == 0) {
        outbound_insert(ob, ex);
        rc = q->tcp ? tcp_start(ex) : udp_start(ex, q->timeout_ms);
    }
    if (rc != 0) {
        exchange_end(ex);
        free(req);
        return rc;
    }
    outbound_attach(ex, req, cb, ctx);
    if (handle != NULL)
        *handle = req;
    return 0;
}

void outbound_cancel(struct outbound_request *req)
{
    if (req == NULL || req->exchange == NULL)
        return; /* its callback is running */
    struct outbound_exchange *ex = req->exchange;
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        ex->waiters = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    free(req);
    if (ex->waiters == NULL)
        exchange_end(ex); /* nobody wants the answer any more */
}

void outbound_free(struct outbound *ob)
{
    if (ob == NULL || ob->closing)
        return;
    ob->closing = true;
    while (ob->active != NULL)
        exchange_finish(ob->active, BALLAST_ECANCELED, NULL, 0);
    if (ob->exchanges_alive == 0)
        outbound_destroy(ob);
}
