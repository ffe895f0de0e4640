/* Built-in health probes on one libuv loop: TCP connect, HTTP(S) through libcurl's multi socket
 * API, DNS over UDP; jittered scheduling with at most one attempt in flight per probe; and
 * document fetches (file or HTTP(S)) for health feeds. What a result means is health.c's job. */
#include "probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "errors.h"
#include "wire.h"

#define PROBE_DEFAULT_INTERVAL_MS 10000u
#define PROBE_DEFAULT_TIMEOUT_MS 2000u
#define PROBE_DEFAULT_FETCH_TIMEOUT_MS 10000u
#define PROBE_BODY_MAX (64u * 1024u) /* body kept for body_match; the transfer stops there */
#define PROBE_ERROR_MAX 192
#define PROBE_REASON_MAX 256
#define PROBE_UDP_RECV_MAX 4096 /* no EDNS is sent, so answers are 512 bytes or truncated */
#define PROBE_DNS_QUERY_MAX (WIRE_HEADER_LEN + WIRE_NAME_MAX + 4)
#define PROBE_BODY_INITIAL 16384u
#define PROBE_FILE_CHUNK 16384u
#define PROBE_USER_AGENT "ballast-authd-probe"

#define PROBE_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Bytes received, kept up to max; error says why more were refused. */
struct probe_body {
    uint8_t *data;
    size_t len, cap, max;
    int error; /* 0, BALLAST_ELIMIT (more than max arrived) or BALLAST_ENOMEM */
};

/* One libcurl transfer on the prober's multi handle. done runs once, after the easy handle left
 * the multi handle and before it is cleaned up (so CURLINFO still works). */
struct probe_xfer {
    struct prober *prober;
    CURL *easy;
    struct curl_slist *connect_to;
    struct probe_body body;
    char errbuf[CURL_ERROR_SIZE];
    void (*done)(struct probe_xfer *xfer, CURLcode result);
};

struct probe_xfer_request {
    const char *url;
    const char *connect_to; /* CURLOPT_CONNECT_TO entry, or NULL */
    uint32_t timeout_ms;
    bool tls_verify;
    size_t max_body;
    curl_off_t max_file_size; /* 0: none */
};

/* One run of a probe. It lives until its handles have closed, which can be after its result was
 * delivered or after its probe was removed. */
struct probe_attempt {
    struct prober *prober;
    struct probe *probe; /* NULL once nobody wants the result */
    uint64_t start_ns;
    uint32_t timeout_ms;
    uv_timer_t deadline;
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_udp_t udp;
    uint8_t query[PROBE_DNS_QUERY_MAX];
    size_t query_len;
    uint16_t dns_id;
    struct probe_xfer xfer;
    int handles_open;
    bool tcp_open;
    bool udp_open;
    bool finished;
};

struct probe {
    struct prober *prober;
    struct probe *prev, *next; /* prober->probes */
    struct probe_spec spec;    /* url and body_match owned */
    char *connect_to;          /* HTTP(S): "::ADDR:PORT" for CURLOPT_CONNECT_TO */
    probe_result_fn cb;
    void *ctx;
    uv_timer_t tick;
    struct probe_attempt *attempt; /* in flight, or NULL */
    bool removed;
};

/* A socket libcurl asked us to watch. */
struct probe_curl_sock {
    uv_poll_t poll;
    struct prober *prober;
    curl_socket_t fd;
    int events;                          /* UV_READABLE / UV_WRITABLE libcurl wants */
    bool closing;                        /* libcurl said CURL_POLL_REMOVE */
    struct probe_curl_sock *prev, *next; /* prober->socks */
};

struct probe_fetch {
    struct prober *prober;
    struct probe_fetch *prev, *next; /* prober->fetches, until delivered or canceled */
    probe_fetch_fn cb;
    void *ctx;
    bool linked;
    bool canceled; /* no callback */
    bool is_file;
    uint32_t timeout_ms;
    uv_work_t work; /* file: read on libuv's thread pool */
    char *path;
    int status;
    char reason[PROBE_REASON_MAX];
    struct probe_xfer xfer; /* HTTP(S); its body holds the document in both cases */
};

struct prober {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t curl_timer; /* CURLMOPT_TIMERFUNCTION */
    struct probe *probes;
    struct probe_fetch *fetches;
    struct probe_curl_sock *socks;
    struct prober_stats stats;
    uint32_t alive; /* probes, attempts, fetches, sockets, timer and holds not yet gone */
    bool closing;
    uint8_t udp_buf[PROBE_UDP_RECV_MAX]; /* shared by DNS reads: the loop is single-threaded */
};

static uv_once_t prober_curl_once = UV_ONCE_INIT;
static CURLcode prober_curl_init_result;

static void prober_curl_global_init(void)
{
    prober_curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- small helpers ---- */

/* Counters are written only on the loop thread; relaxed stores let other threads read them. */
static void prober_count(uint64_t *counter)
{
    __atomic_store_n(counter, *counter + 1, __ATOMIC_RELAXED);
}

void prober_get_stats(const struct prober *prober, struct prober_stats *out)
{
    out->probes_sent = __atomic_load_n(&prober->stats.probes_sent, __ATOMIC_RELAXED);
    out->probes_failed = __atomic_load_n(&prober->stats.probes_failed, __ATOMIC_RELAXED);
}

static uint32_t probe_elapsed_ms(uint64_t since_ns)
{
    uint64_t ms = (uv_hrtime() - since_ns) / 1000000u;
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

static const char *probe_strerror(int sys_errno)
{
    return uv_strerror(uv_translate_sys_error(sys_errno));
}

static bool probe_has_prefix(const char *text, const char *prefix)
{
    return strncasecmp(text, prefix, strlen(prefix)) == 0;
}

/* Everything that may still run a callback holds the prober; the last release after
 * prober_free frees it. */
static void prober_hold(struct prober *p)
{
    p->alive++;
}

static void prober_release(struct prober *p)
{
    if (--p->alive == 0 && p->closing) {
        free(p);
    }
}

static void prober_on_handle_closed(uv_handle_t *handle)
{
    prober_release(handle->data);
}

/* Append what fits under max; returns 0, or the error also kept in body->error. */
static int probe_body_append(struct probe_body *body, const void *data, size_t len)
{
    size_t room = body->max - body->len;
    size_t take = len < room ? len : room;
    if (take > 0 && body->len + take > body->cap) {
        size_t cap = body->cap > 0 ? body->cap : PROBE_BODY_INITIAL;
        while (cap < body->len + take)
            cap *= 2;
        if (cap > body->max)
            cap = body->max;
        uint8_t *grown = realloc(body->data, cap);
        if (grown == NULL) {
            body->error = BALLAST_ENOMEM;
            return body->error;
        }
        body->data = grown;
        body->cap = cap;
    }
    if (take > 0)
        memcpy(body->data + body->len, data, take);
    body->len += take;
    if (take < len)
        body->error = BALLAST_ELIMIT;
    return body->error;
}

static void probe_body_free(struct probe_body *body)
{
    free(body->data);
    body->data = NULL;
    body->len = body->cap = 0;
}

/* ---- libcurl on the loop (multi socket API) ---- */

static void prober_curl_check_done(struct prober *p)
{
    prober_hold(p); /* a callback may free the prober */
    CURLMsg *msg;
    int left;
    while (!p->closing && (msg = curl_multi_info_read(p->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        curl_multi_remove_handle(p->multi, easy); /* msg is gone from here on */
        struct probe_xfer *xfer = (struct probe_xfer *)priv;
        xfer->done(xfer, result);
    }
    prober_release(p);
}

static void prober_curl_on_poll(uv_poll_t *poll, int status, int events)
{
    struct probe_curl_sock *sock = poll->data;
    struct prober *p = sock->prober;
    if (p->closing)
        return;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR; /* libuv stopped the handle; curl reads SO_ERROR */
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(p->multi, sock->fd, flags, &running);
    /* libuv stopped the handle on POLLERR; libcurl only calls back when its wish changes. */
    if (status < 0 && !sock->closing && sock->events != 0)
        uv_poll_start(&sock->poll, sock->events, prober_curl_on_poll);
    prober_curl_check_done(p);
}

static void prober_curl_on_timeout(uv_timer_t *timer)
{
    struct prober *p = timer->data;
    if (p->closing)
        return;
    int running;
    curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    prober_curl_check_done(p);
}

/* Called by libcurl only: no curl_multi_* calls in here, only the timer. timeout_ms 0 means
 * "act at once", which the 0 ms timer does on the next loop iteration. */
static int prober_curl_on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct prober *p = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&p->curl_timer);
    else
        uv_timer_start(&p->curl_timer, prober_curl_on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

static void prober_curl_sock_on_closed(uv_handle_t *handle)
{
    struct probe_curl_sock *sock = handle->data;
    struct prober *p = sock->prober;
    free(sock);
    prober_release(p);
}

/* libcurl calls CURL_POLL_REMOVE before it closes the socket, so the poll stops first. */
static void prober_curl_sock_close(struct probe_curl_sock *sock)
{
    struct prober *p = sock->prober;
    sock->closing = true;
    if (sock->prev != NULL)
        sock->prev->next = sock->next;
    else
        p->socks = sock->next;
    if (sock->next != NULL)
        sock->next->prev = sock->prev;
    uv_close((uv_handle_t *)&sock->poll, prober_curl_sock_on_closed);
}

static struct probe_curl_sock *prober_curl_sock_open(struct prober *p, curl_socket_t fd)
{
    struct probe_curl_sock *sock = calloc(1, sizeof(*sock));
    if (sock == NULL)
        return NULL;
    if (uv_poll_init_socket(p->loop, &sock->poll, fd) != 0) {
        free(sock);
        return NULL;
    }
    sock->poll.data = sock;
    sock->prober = p;
    sock->fd = fd;
    sock->next = p->socks;
    if (p->socks != NULL)
        p->socks->prev = sock;
    p->socks = sock;
    prober_hold(p);
    return sock;
}

static int prober_curl_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct prober *p = userp;
    struct probe_curl_sock *sock = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sock != NULL)
            prober_curl_sock_close(sock);
        return 0;
    }
    if (sock == NULL) {
        sock = prober_curl_sock_open(p, fd);
        if (sock == NULL)
            return -1;
        curl_multi_assign(p->multi, fd, sock);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    sock->events = events;
    if (events == 0)
        uv_poll_stop(&sock->poll);
    else
        uv_poll_start(&sock->poll, events, prober_curl_on_poll);
    return 0;
}

static size_t probe_xfer_on_write(char *data, size_t size, size_t count, void *userdata)
{
    struct probe_xfer *xfer = userdata;
    size_t len = size * count;
    if (probe_body_append(&xfer->body, data, len) != 0)
        return 0; /* CURLE_WRITE_ERROR ends the transfer */
    return len;
}

/* Leave the multi handle (a no-op when already out) and free the easy handle; keeps the body. */
static void probe_xfer_cleanup(struct probe_xfer *xfer)
{
    if (xfer->easy != NULL) {
        if (xfer->prober->multi != NULL)
            curl_multi_remove_handle(xfer->prober->multi, xfer->easy);
        curl_easy_cleanup(xfer->easy);
        xfer->easy = NULL;
    }
    curl_slist_free_all(xfer->connect_to);
    xfer->connect_to = NULL;
}

static CURLcode probe_xfer_configure(struct probe_xfer *xfer, const struct probe_xfer_request *r)
{
    CURL *e = xfer->easy;
    CURLcode rc = curl_easy_setopt(e, CURLOPT_URL, r->url);
    rc = rc ? rc : curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)xfer);
    rc = rc ? rc : curl_easy_setopt(e, CURLOPT_ERRORBUFFER, xfer->errbuf);
    rc = rc ? rc : curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    rc = rc ? rc : curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
    rc = rc ? rc : curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    /* Environment proxies must not change where a health check goes. */
    rc = rc ? rc : curl_easy_setopt(e, CURLOPT_PROXY, "");
    /* A fresh connection each time: a probe checks that connecting works. */
    rc = rc ? rc : curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    rc = rc ? rc : curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    rc = rc ? rc : curl_easy_setopt(e, CURLOPT_USERAGENT, PROBE_USER_AGENT);
    rc = rc ? rc : curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, probe_xfer_on_write);
    rc = rc ? rc : curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)xfer);
    rc = rc ? rc : curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, r->tls_verify ? 1L : 0L);
    rc = rc ? rc : curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, r->tls_verify ? 2L : 0L);
    if (r->connect_to != NULL)
        rc = rc ? rc : curl_easy_setopt(e, CURLOPT_CONNECT_TO, xfer->connect_to);
    if (r->max_file_size > 0)
        rc = rc ? rc : curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, r->max_file_size);
    return rc;
}

/* Start a transfer; on failure error says why and nothing is left to clean but the body. */
static int probe_xfer_start(struct prober *p, struct probe_xfer *xfer,
                            const struct probe_xfer_request *r, char *error, size_t error_len)
{
    xfer->prober = p;
    xfer->body.max = r->max_body;
    xfer->easy = curl_easy_init();
    if (xfer->easy == NULL) {
        snprintf(error, error_len, "out of memory");
        return BALLAST_ENOMEM;
    }
    if (r->connect_to != NULL) {
        xfer->connect_to = curl_slist_append(NULL, r->connect_to);
        if (xfer->connect_to == NULL) {
            probe_xfer_cleanup(xfer);
            snprintf(error, error_len, "out of memory");
            return BALLAST_ENOMEM;
        }
    }
    CURLcode rc = probe_xfer_configure(xfer, r);
    if (rc != CURLE_OK) {
        snprintf(error, error_len, "curl: %s", curl_easy_strerror(rc));
        probe_xfer_cleanup(xfer);
        return BALLAST_EINVAL;
    }
    CURLMcode mrc = curl_multi_add_handle(p->multi, xfer->easy);
    if (mrc != CURLM_OK) {
        snprintf(error, error_len, "curl: %s", curl_multi_strerror(mrc));
        probe_xfer_cleanup(xfer);
        return BALLAST_ESYS;
    }
    return 0;
}

/* A failed transfer in the same words as the other probes. */
static void probe_xfer_describe(const struct probe_xfer *xfer, CURLcode result, uint32_t timeout_ms,
                                char *error, size_t len)
{
    if (result == CURLE_OPERATION_TIMEDOUT) {
        snprintf(error, len, "timeout after %u ms", timeout_ms);
        return;
    }
    if (result == CURLE_WRITE_ERROR && xfer->body.error == BALLAST_ENOMEM) {
        snprintf(error, len, "out of memory");
        return;
    }
    if (result == CURLE_COULDNT_CONNECT) {
        long os_errno = 0;
        curl_easy_getinfo(xfer->easy, CURLINFO_OS_ERRNO, &os_errno);
        if (os_errno != 0) {
            snprintf(error, len, "connect: %s", probe_strerror((int)os_errno));
            return;
        }
    }
    snprintf(error, len, "%s", xfer->errbuf[0] != '\0' ? xfer->errbuf : curl_easy_strerror(result));
}

/* ---- probe attempts ---- */

static void probe_attempt_on_closed(uv_handle_t *handle)
{
    struct probe_attempt *a = handle->data;
    if (--a->handles_open > 0)
        return;
    struct prober *p = a->prober;
    probe_body_free(&a->xfer.body);
    free(a);
    prober_release(p);
}

/* Deliver the result (unless the probe is gone) and close everything. A pending connect
 * completes with UV_ECANCELED afterwards and sees `finished`. */
static void probe_attempt_finish(struct probe_attempt *a, bool ok, const char *error)
{
    if (a->finished)
        return;
    a->finished = true;
    uint32_t latency_ms = probe_elapsed_ms(a->start_ns);
    probe_xfer_cleanup(&a->xfer);
    uv_timer_stop(&a->deadline);
    uv_close((uv_handle_t *)&a->deadline, probe_attempt_on_closed);
    if (a->tcp_open) {
        a->tcp_open = false;
        uv_close((uv_handle_t *)&a->tcp, probe_attempt_on_closed);
    }
    if (a->udp_open) {
        a->udp_open = false;
        uv_close((uv_handle_t *)&a->udp, probe_attempt_on_closed);
    }
    struct probe *probe = a->probe;
    if (probe == NULL)
        return;
    a->probe = NULL;
    probe->attempt = NULL;
    if (!ok)
        prober_count(&a->prober->stats.probes_failed);
    /* a is alive until its handles close, so error may point into it; the callback may
     * remove the probe or free the prober. */
    probe->cb(probe->ctx, ok, ok ? NULL : error, latency_ms);
}

static void probe_attempt_on_deadline(uv_timer_t *timer)
{
    struct probe_attempt *a = timer->data;
    char error[PROBE_ERROR_MAX];
    snprintf(error, sizeof(error), "timeout after %u ms", a->timeout_ms);
    probe_attempt_finish(a, false, error);
}

/* TCP: connected is up; the connection is closed at once. */
static void probe_tcp_on_connect(uv_connect_t *req, int status)
{
    struct probe_attempt *a = req->data;
    if (a->finished)
        return;
    char error[PROBE_ERROR_MAX];
    if (status < 0) {
        snprintf(error, sizeof(error), "connect: %s", uv_strerror(status));
        probe_attempt_finish(a, false, error);
        return;
    }
    probe_attempt_finish(a, true, NULL);
}

static int probe_tcp_start(struct probe_attempt *a, char *error, size_t error_len)
{
    int rc = uv_tcp_init(a->prober->loop, &a->tcp);
    if (rc != 0) {
        snprintf(error, error_len, "socket: %s", uv_strerror(rc));
        return BALLAST_ESYS;
    }
    a->tcp.data = a;
    a->tcp_open = true;
    a->handles_open++;
    a->connect.data = a;
    rc = uv_tcp_connect(&a->connect, &a->tcp, (const struct sockaddr *)&a->probe->spec.target.ss,
                        probe_tcp_on_connect);
    if (rc != 0) {
        snprintf(error, error_len, "connect: %s", uv_strerror(rc));
        return BALLAST_EIO;
    }
    return 0;
}

/* HTTP(S): the status (expect_status, or any 2xx/3xx), then the body match. */
static bool probe_http_verdict(const struct probe_spec *spec, struct probe_xfer *xfer,
                               CURLcode result, char *error, size_t len)
{
    /* The body is kept up to PROBE_BODY_MAX (0 without body_match); more ends the transfer. */
    bool cut_short = result == CURLE_WRITE_ERROR && xfer->body.error == BALLAST_ELIMIT;
    if (result != CURLE_OK && !cut_short) {
        probe_xfer_describe(xfer, result, spec->timeout_ms, error, len);
        return false;
    }
    long status = 0;
    curl_easy_getinfo(xfer->easy, CURLINFO_RESPONSE_CODE, &status);
    if (spec->expect_status != 0 && status != spec->expect_status) {
        snprintf(error, len, "HTTP status %ld, expected %u", status, spec->expect_status);
        return false;
    }
    if (spec->expect_status == 0 && (status < 200 || status > 399)) {
        snprintf(error, len, "HTTP status %ld", status);
        return false;
    }
    const char *match = spec->body_match;
    if (match != NULL && match[0] != '\0' &&
        (xfer->body.len == 0 ||
         memmem(xfer->body.data, xfer->body.len, match, strlen(match)) == NULL)) {
        snprintf(error, len, "body does not contain '%s'", match);
        return false;
    }
    return true;
}

static void probe_http_on_done(struct probe_xfer *xfer, CURLcode result)
{
    struct probe_attempt *a = PROBE_CONTAINER_OF(xfer, struct probe_attempt, xfer);
    char error[PROBE_ERROR_MAX] = "";
    bool ok =
        a->probe != NULL && probe_http_verdict(&a->probe->spec, xfer, result, error, sizeof(error));
    probe_xfer_cleanup(xfer);
    probe_attempt_finish(a, ok, error);
}

static int probe_http_start(struct probe_attempt *a, char *error, size_t error_len)
{
    const struct probe *probe = a->probe;
    struct probe_xfer_request r = {
        .url = probe->spec.url,
        .connect_to = probe->connect_to,
        .timeout_ms = probe->spec.timeout_ms,
        .tls_verify = probe->spec.tls_verify,
        .max_body = probe->spec.body_match != NULL ? PROBE_BODY_MAX : 0,
    };
    a->xfer.done = probe_http_on_done;
    return probe_xfer_start(a->prober, &a->xfer, &r, error, error_len);
}

/* DNS: RFC 1035 §4.1.1 header with a random ID (RFC 5452 §4.3), RD=1 so that a recursive
 * target answers too (an authoritative server ignores RD), one question of class IN. */
static int probe_dns_build_query(struct probe_attempt *a)
{
    const struct probe_spec *spec = &a->probe->spec;
    a->dns_id = (uint16_t)randombytes_uniform(65536u);
    struct wire_writer w;
    wire_writer_init(&w, a->query, sizeof(a->query));
    int rc = wire_writer_u16(&w, a->dns_id);
    rc = rc ? rc : wire_writer_u16(&w, WIRE_FLAG_RD);
    rc = rc ? rc : wire_writer_u16(&w, 1); /* QDCOUNT */
    rc = rc ? rc : wire_writer_u32(&w, 0); /* ANCOUNT, NSCOUNT */
    rc = rc ? rc : wire_writer_u16(&w, 0); /* ARCOUNT */
    rc = rc ? rc : wire_writer_name(&w, spec->dns_qname, spec->dns_qname_len, false);
    rc = rc ? rc : wire_writer_u16(&w, spec->dns_qtype);
    rc = rc ? rc : wire_writer_u16(&w, WIRE_CLASS_IN);
    a->query_len = w.len;
    return rc;
}

/* RFC 5452 §9.1: only an answer with our ID (and our question, when the server echoes it)
 * counts; the connected socket already dropped other sources. */
static bool probe_dns_matches(const struct probe_attempt *a, const uint8_t *pkt, size_t len)
{
    if (len < WIRE_HEADER_LEN || wire_read_u16(pkt) != a->dns_id ||
        (wire_read_u16(pkt + 2) & WIRE_FLAG_QR) == 0)
        return false;
    uint16_t qdcount = wire_read_u16(pkt + 4);
    if (qdcount == 0)
        return true; /* some servers drop the question from FORMERR/REFUSED answers */
    if (qdcount != 1)
        return false;
    const struct probe_spec *spec = &a->probe->spec;
    uint8_t name[WIRE_NAME_MAX];
    size_t name_len;
    size_t pos = WIRE_HEADER_LEN;
    if (wire_name_unpack(pkt, len, &pos, name, &name_len) != 0 || len - pos < 4)
        return false;
    return wire_name_equal_nocase(name, name_len, spec->dns_qname, spec->dns_qname_len) &&
           wire_read_u16(pkt + pos) == spec->dns_qtype &&
           wire_read_u16(pkt + pos + 2) == WIRE_CLASS_IN;
}

static const char *probe_rcode_name(unsigned rcode, char *buf, size_t len)
{
    static const char *const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                        "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
                                        "NXRRSET", "NOTAUTH", "NOTZONE"};
    if (rcode < sizeof(names) / sizeof(names[0]))
        return names[rcode];
    snprintf(buf, len, "%u", rcode);
    return buf;
}

static void probe_dns_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct probe_attempt *a = handle->data;
    *buf = uv_buf_init((char *)a->prober->udp_buf, sizeof(a->prober->udp_buf));
}

static void probe_dns_on_recv(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf,
                              const struct sockaddr *from, unsigned flags)
{
    struct probe_attempt *a = udp->data;
    if (a->finished || nread == 0)
        return;
    char error[PROBE_ERROR_MAX];
    if (nread < 0) {
        /* ICMP port unreachable arrives as ECONNREFUSED on the connected socket. */
        snprintf(error, sizeof(error), "recv: %s", uv_strerror((int)nread));
        probe_attempt_finish(a, false, error);
        return;
    }
    const uint8_t *pkt = (const uint8_t *)buf->base;
    if (!probe_dns_matches(a, pkt, (size_t)nread))
        return; /* keep waiting: a stray datagram must not end the probe */
    unsigned rcode = WIRE_RCODE(wire_read_u16(pkt + 2));
    unsigned expected = a->probe->spec.dns_expect_rcode;
    if (rcode == expected) {
        probe_attempt_finish(a, true, NULL);
        return;
    }
    char got_buf[8], want_buf[8];
    const char *got = probe_rcode_name(rcode, got_buf, sizeof(got_buf));
    if (expected == WIRE_RCODE_NOERROR)
        snprintf(error, sizeof(error), "RCODE %s", got);
    else
        snprintf(error, sizeof(error), "RCODE %s, expected %s", got,
                 probe_rcode_name(expected, want_buf, sizeof(want_buf)));
    probe_attempt_finish(a, false, error);
}

static int probe_dns_start(struct probe_attempt *a, char *error, size_t error_len)
{
    if (probe_dns_build_query(a) != 0) {
        snprintf(error, error_len, "query does not fit");
        return BALLAST_ESPACE;
    }
    int rc = uv_udp_init(a->prober->loop, &a->udp);
    if (rc != 0) {
        snprintf(error, error_len, "socket: %s", uv_strerror(rc));
        return BALLAST_ESYS;
    }
    a->udp.data = a;
    a->udp_open = true;
    a->handles_open++;
    /* Connected: the kernel picks a random ephemeral port and drops other sources. */
    rc = uv_udp_connect(&a->udp, (const struct sockaddr *)&a->probe->spec.target.ss);
    rc = rc ? rc : uv_udp_recv_start(&a->udp, probe_dns_on_alloc, probe_dns_on_recv);
    if (rc != 0) {
        snprintf(error, error_len, "connect: %s", uv_strerror(rc));
        return BALLAST_EIO;
    }
    uv_buf_t buf = uv_buf_init((char *)a->query, (unsigned)a->query_len);
    rc = uv_udp_try_send(&a->udp, &buf, 1, NULL);
    if (rc < 0) {
        snprintf(error, error_len, "send: %s", uv_strerror(rc));
        return BALLAST_EIO;
    }
    return 0;
}

static void probe_start_attempt(struct probe *probe)
{
    struct prober *p = probe->prober;
    prober_count(&p->stats.probes_sent);
    struct probe_attempt *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        prober_count(&p->stats.probes_failed);
        probe->cb(probe->ctx, false, "out of memory", 0);
        return;
    }
    a->prober = p;
    a->probe = probe;
    a->start_ns = uv_hrtime();
    a->timeout_ms = probe->spec.timeout_ms;
    uv_timer_init(p->loop, &a->deadline);
    a->deadline.data = a;
    a->handles_open = 1;
    prober_hold(p);
    probe->attempt = a;
    uv_timer_start(&a->deadline, probe_attempt_on_deadline, a->timeout_ms, 0);
    char error[PROBE_ERROR_MAX] = "";
    int rc;
    switch (probe->spec.kind) {
    case PROBE_TCP:
        rc = probe_tcp_start(a, error, sizeof(error));
        break;
    case PROBE_HTTP:
    case PROBE_HTTPS:
        rc = probe_http_start(a, error, sizeof(error));
        break;
    default:
        rc = probe_dns_start(a, error, sizeof(error));
        break;
    }
    if (rc != 0)
        probe_attempt_finish(a, false, error);
}

/* ---- scheduling ---- */

/* interval +/- 10 %, so probes added together drift apart. */
static uint32_t probe_next_delay(uint32_t interval_ms)
{
    return interval_ms - interval_ms / 10 + randombytes_uniform(interval_ms / 5 + 1);
}

static void probe_on_tick(uv_timer_t *timer)
{
    struct probe *probe = timer->data;
    uv_timer_start(&probe->tick, probe_on_tick, probe_next_delay(probe->spec.interval_ms), 0);
    if (probe->attempt != NULL)
        return; /* the last run is still going: this slot is skipped */
    probe_start_attempt(probe);
}

/* ---- probes ---- */

static bool probe_target_valid(const struct addr *target, bool port_required)
{
    uint16_t port = addr_port((const struct sockaddr *)&target->ss);
    if (target->ss.ss_family == AF_INET)
        return target->len >= sizeof(struct sockaddr_in) && (port != 0 || !port_required);
    if (target->ss.ss_family == AF_INET6)
        return target->len >= sizeof(struct sockaddr_in6) && (port != 0 || !port_required);
    return false;
}

static bool probe_spec_valid(const struct probe_spec *spec)
{
    switch (spec->kind) {
    case PROBE_TCP:
        return probe_target_valid(&spec->target, true);
    case PROBE_DNS:
        return probe_target_valid(&spec->target, true) && spec->dns_qname_len > 0 &&
               spec->dns_qname_len <= WIRE_NAME_MAX &&
               wire_name_length(spec->dns_qname, spec->dns_qname_len) == spec->dns_qname_len &&
               spec->dns_expect_rcode <= 15;
    case PROBE_HTTP:
        return probe_target_valid(&spec->target, false) && spec->url != NULL &&
               probe_has_prefix(spec->url, "http://");
    case PROBE_HTTPS:
        return probe_target_valid(&spec->target, false) && spec->url != NULL &&
               probe_has_prefix(spec->url, "https://");
    }
    return false;
}

/* CURLOPT_CONNECT_TO "::ADDR:PORT": any host and port of the URL goes to the target, so the
 * URL's host is only sent (Host, SNI) and never looked up. Port 0 keeps the URL's port. */
static char *probe_connect_to_entry(const struct addr *target)
{
    char host[INET6_ADDRSTRLEN];
    const struct sockaddr *sa = (const struct sockaddr *)&target->ss;
    const void *raw = sa->sa_family == AF_INET
                          ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                          : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (inet_ntop(sa->sa_family, raw, host, sizeof(host)) == NULL)
        return NULL;
    char entry[INET6_ADDRSTRLEN + 16];
    bool v6 = sa->sa_family == AF_INET6;
    uint16_t port = addr_port(sa);
    if (port != 0)
        snprintf(entry, sizeof(entry), "::%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", port);
    else
        snprintf(entry, sizeof(entry), "::%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "");
    return strdup(entry);
}

static void probe_spec_apply_defaults(struct probe_spec *spec)
{
    if (spec->interval_ms == 0)
        spec->interval_ms = PROBE_DEFAULT_INTERVAL_MS;
    if (spec->timeout_ms == 0)
        spec->timeout_ms = PROBE_DEFAULT_TIMEOUT_MS;
}

static void probe_free_strings(struct probe *probe)
{
    free(probe->spec.url);
    free(probe->spec.body_match);
    free(probe->connect_to);
}

static int probe_copy_spec(struct probe *probe, const struct probe_spec *spec)
{
    probe->spec = *spec;
    probe->spec.url = NULL;
    probe->spec.body_match = NULL;
    probe_spec_apply_defaults(&probe->spec);
    if (spec->kind != PROBE_HTTP && spec->kind != PROBE_HTTPS)
        return 0;
    probe->spec.url = strdup(spec->url);
    probe->spec.body_match = spec->body_match != NULL ? strdup(spec->body_match) : NULL;
    probe->connect_to = probe_connect_to_entry(&spec->target);
    if (probe->spec.url == NULL || (spec->body_match != NULL && probe->spec.body_match == NULL) ||
        probe->connect_to == NULL)
        return BALLAST_ENOMEM;
    return 0;
}

int prober_add(struct prober *prober, const struct probe_spec *spec, probe_result_fn cb, void *ctx,
               struct probe **out)
{
    if (prober == NULL || spec == NULL || cb == NULL || !probe_spec_valid(spec))
        return BALLAST_EINVAL;
    if (prober->closing)
        return BALLAST_ECANCELED;
    struct probe *probe = calloc(1, sizeof(*probe));
    if (probe == NULL)
        return BALLAST_ENOMEM;
    if (probe_copy_spec(probe, spec) != 0) {
        probe_free_strings(probe);
        free(probe);
        return BALLAST_ENOMEM;
    }
    probe->prober = prober;
    probe->cb = cb;
    probe->ctx = ctx;
    uv_timer_init(prober->loop, &probe->tick);
    probe->tick.data = probe;
    prober_hold(prober);
    probe->next = prober->probes;
    if (prober->probes != NULL)
        prober->probes->prev = probe;
    prober->probes = probe;
    /* Jitter: probes added at the same moment (a config load) spread over one interval. */
    uv_timer_start(&probe->tick, probe_on_tick, randombytes_uniform(probe->spec.interval_ms), 0);
    if (out != NULL)
        *out = probe;
    return 0;
}

static void probe_on_closed(uv_handle_t *handle)
{
    struct probe *probe = handle->data;
    struct prober *p = probe->prober;
    probe_free_strings(probe);
    free(probe);
    prober_release(p);
}

void probe_remove(struct probe *probe)
{
    if (probe == NULL || probe->removed)
        return;
    probe->removed = true;
    struct prober *p = probe->prober;
    if (probe->prev != NULL)
        probe->prev->next = probe->next;
    else
        p->probes = probe->next;
    if (probe->next != NULL)
        probe->next->prev = probe->prev;
    struct probe_attempt *a = probe->attempt;
    if (a != NULL) {
        probe->attempt = NULL;
        a->probe = NULL; /* no callback */
        probe_attempt_finish(a, false, NULL);
    }
    uv_timer_stop(&probe->tick);
    uv_close((uv_handle_t *)&probe->tick, probe_on_closed);
}

/* Canonical: every field that changes what is checked, defaults applied; body_match comes last
 * so that its text cannot be confused with the fields. */
void probe_spec_key(const struct probe_spec *spec, char *buf, size_t len)
{
    struct probe_spec s = *spec;
    probe_spec_apply_defaults(&s);
    char target[INET6_ADDRSTRLEN + 8];
    addr_format((const struct sockaddr *)&s.target.ss, target, sizeof(target));
    switch (s.kind) {
    case PROBE_TCP:
        snprintf(buf, len, "tcp %s interval=%u timeout=%u", target, s.interval_ms, s.timeout_ms);
        return;
    case PROBE_HTTP:
    case PROBE_HTTPS: {
        const bool https = s.kind == PROBE_HTTPS;
        const bool has_body = s.body_match != NULL && s.body_match[0] != '\0';
        snprintf(buf, len, "%s %s %s status=%u%s interval=%u timeout=%u%s%s%s",
                 https ? "https" : "http", target, s.url != NULL ? s.url : "-", s.expect_status,
                 !https ? "" : (s.tls_verify ? " verify" : " noverify"), s.interval_ms,
                 s.timeout_ms, has_body ? " body='" : "", has_body ? s.body_match : "",
                 has_body ? "'" : "");
        return;
    }
    case PROBE_DNS: {
        char name[WIRE_NAME_MAX * 4 + 1] = "?";
        if (s.dns_qname_len > 0 && s.dns_qname_len <= WIRE_NAME_MAX &&
            wire_name_length(s.dns_qname, s.dns_qname_len) == s.dns_qname_len)
            wire_name_to_text(s.dns_qname, name, sizeof(name));
        const ldns_rr_descriptor *d = ldns_rr_descript(s.dns_qtype);
        char type[16];
        if (d != NULL && d->_name != NULL)
            snprintf(type, sizeof(type), "%s", d->_name);
        else
            snprintf(type, sizeof(type), "TYPE%u", s.dns_qtype);
        char rcode_buf[8];
        snprintf(buf, len, "dns %s %s %s rcode=%s interval=%u timeout=%u", target, name, type,
                 probe_rcode_name(s.dns_expect_rcode, rcode_buf, sizeof(rcode_buf)), s.interval_ms,
                 s.timeout_ms);
        return;
    }
    }
    snprintf(buf, len, "unknown");
}

/* ---- fetch ---- */

static void probe_fetch_unlink(struct probe_fetch *f)
{
    if (!f->linked)
        return;
    f->linked = false;
    struct prober *p = f->prober;
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        p->fetches = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
}

/* The one place a fetch ends: callback (unless canceled), then free. */
static void probe_fetch_deliver(struct probe_fetch *f, int status, const char *reason)
{
    struct prober *p = f->prober;
    probe_fetch_unlink(f);
    if (!f->canceled) {
        static const uint8_t empty[1];
        const uint8_t *data = f->xfer.body.data != NULL ? f->xfer.body.data : empty;
        if (status == 0)
            f->cb(f->ctx, 0, data, f->xfer.body.len, NULL);
        else
            f->cb(f->ctx, status, NULL, 0, reason);
    }
    probe_xfer_cleanup(&f->xfer);
    probe_body_free(&f->xfer.body);
    free(f->path);
    free(f);
    prober_release(p);
}

static int probe_read_file(const char *path, struct probe_body *body, char *reason, size_t len)
{
    /* O_NONBLOCK: opening a FIFO must not hang; it is refused below anyway. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(reason, len, "open: %s", probe_strerror(errno));
        return BALLAST_EIO;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        snprintf(reason, len, "stat: %s", probe_strerror(errno));
        rc = BALLAST_EIO;
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(reason, len, "not a regular file");
        rc = BALLAST_EINVAL;
    } else if ((uint64_t)st.st_size > body->max) {
        rc = BALLAST_ELIMIT; /* checked before reading a byte */
    }
    uint8_t chunk[PROBE_FILE_CHUNK];
    while (rc == 0) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(reason, len, "read: %s", probe_strerror(errno));
            rc = BALLAST_EIO;
        } else if (n == 0) {
            break;
        } else {
            rc = probe_body_append(body, chunk, (size_t)n); /* the file may have grown */
        }
    }
    close(fd);
    if (rc == BALLAST_ELIMIT)
        snprintf(reason, len, "document larger than %zu bytes", body->max);
    else if (rc == BALLAST_ENOMEM)
        snprintf(reason, len, "out of memory");
    return rc;
}

/* On a thread-pool thread: touches only this fetch's own fields. */
static void probe_fetch_file_work(uv_work_t *req)
{
    struct probe_fetch *f = req->data;
    f->status = probe_read_file(f->path, &f->xfer.body, f->reason, sizeof(f->reason));
}

static void probe_fetch_file_done(uv_work_t *req, int status)
{
    struct probe_fetch *f = req->data;
    if (status == UV_ECANCELED) {
        f->status = BALLAST_ECANCELED;
        snprintf(f->reason, sizeof(f->reason), "canceled");
    }
    probe_fetch_deliver(f, f->status, f->reason);
}

static void probe_fetch_http_done(struct probe_xfer *xfer, CURLcode result)
{
    struct probe_fetch *f = PROBE_CONTAINER_OF(xfer, struct probe_fetch, xfer);
    int status = 0;
    long http_status = 0;
    if (result == CURLE_FILESIZE_EXCEEDED ||
        (result == CURLE_WRITE_ERROR && xfer->body.error == BALLAST_ELIMIT)) {
        status = BALLAST_ELIMIT;
        snprintf(f->reason, sizeof(f->reason), "document larger than %zu bytes", xfer->body.max);
    } else if (result != CURLE_OK) {
        status = result == CURLE_OPERATION_TIMEDOUT ? BALLAST_ETIMEOUT : BALLAST_EIO;
        probe_xfer_describe(xfer, result, f->timeout_ms, f->reason, sizeof(f->reason));
    } else if (curl_easy_getinfo(xfer->easy, CURLINFO_RESPONSE_CODE, &http_status) != CURLE_OK ||
               http_status < 200 || http_status > 299) {
        status = BALLAST_EIO;
        snprintf(f->reason, sizeof(f->reason), "HTTP status %ld", http_status);
    }
    probe_fetch_deliver(f, status, f->reason);
}

static void probe_fetch_cancel(struct probe_fetch *f)
{
    f->canceled = true;
    probe_fetch_unlink(f);
    if (f->is_file) {
        uv_cancel((uv_req_t *)&f->work); /* when already running, it finishes and is freed */
        return;
    }
    probe_fetch_deliver(f, BALLAST_ECANCELED, "canceled");
}

/* "file:///path", "file://localhost/path" or a plain path; NULL for any other URL. */
static const char *probe_fetch_file_path(const char *url)
{
    if (probe_has_prefix(url, "file://")) {
        const char *rest = url + strlen("file://");
        if (probe_has_prefix(rest, "localhost/"))
            rest += strlen("localhost");
        return rest[0] == '/' ? rest : NULL;
    }
    return strstr(url, "://") == NULL && url[0] != '\0' ? url : NULL;
}

static int probe_fetch_start(struct prober *p, struct probe_fetch *f, const char *url)
{
    if (probe_has_prefix(url, "http://") || probe_has_prefix(url, "https://")) {
        struct probe_xfer_request r = {
            .url = url,
            .timeout_ms = f->timeout_ms,
            .tls_verify = true,
            .max_body = f->xfer.body.max,
            .max_file_size = (curl_off_t)f->xfer.body.max,
        };
        f->xfer.done = probe_fetch_http_done;
        return probe_xfer_start(p, &f->xfer, &r, f->reason, sizeof(f->reason));
    }
    const char *path = probe_fetch_file_path(url);
    if (path == NULL)
        return BALLAST_EINVAL;
    f->path = strdup(path);
    if (f->path == NULL)
        return BALLAST_ENOMEM;
    f->is_file = true;
    f->work.data = f;
    if (uv_queue_work(p->loop, &f->work, probe_fetch_file_work, probe_fetch_file_done) != 0)
        return BALLAST_ESYS;
    return 0;
}

int prober_fetch(struct prober *prober, const char *url, size_t max_bytes, uint32_t timeout_ms,
                 probe_fetch_fn cb, void *ctx)
{
    if (prober == NULL || url == NULL || cb == NULL || max_bytes == 0)
        return BALLAST_EINVAL;
    if (prober->closing)
        return BALLAST_ECANCELED;
    struct probe_fetch *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return BALLAST_ENOMEM;
    f->prober = prober;
    f->cb = cb;
    f->ctx = ctx;
    f->timeout_ms = timeout_ms != 0 ? timeout_ms : PROBE_DEFAULT_FETCH_TIMEOUT_MS;
    f->xfer.prober = prober;
    f->xfer.body.max = max_bytes;
    int rc = probe_fetch_start(prober, f, url);
    if (rc != 0) {
        free(f->path);
        free(f);
        return rc;
    }
    prober_hold(prober);
    f->linked = true;
    f->next = prober->fetches;
    if (prober->fetches != NULL)
        prober->fetches->prev = f;
    prober->fetches = f;
    return 0;
}

/* ---- create / free ---- */

static int prober_multi_setup(struct prober *p)
{
    p->multi = curl_multi_init();
    if (p->multi == NULL)
        return BALLAST_ENOMEM;
    CURLMcode rc = curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, prober_curl_on_socket);
    rc = rc ? rc : curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, (void *)p);
    rc = rc ? rc : curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, prober_curl_on_timer);
    rc = rc ? rc : curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, (void *)p);
    if (rc != CURLM_OK) {
        curl_multi_cleanup(p->multi);
        return BALLAST_ESYS;
    }
    return 0;
}

int prober_create(uv_loop_t *loop, struct prober **out)
{
    if (loop == NULL || out == NULL)
        return BALLAST_EINVAL;
    uv_once(&prober_curl_once, prober_curl_global_init);
    if (prober_curl_init_result != CURLE_OK || sodium_init() < 0)
        return BALLAST_ESYS;
    struct prober *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return BALLAST_ENOMEM;
    int rc = prober_multi_setup(p);
    if (rc != 0) {
        free(p);
        return rc;
    }
    p->loop = loop;
    uv_timer_init(loop, &p->curl_timer);
    p->curl_timer.data = p;
    p->alive = 1; /* the curl timer */
    *out = p;
    return 0;
}

void prober_free(struct prober *prober)
{
    if (prober == NULL || prober->closing)
        return;
    prober->closing = true;
    prober_hold(prober);
    while (prober->probes != NULL)
        probe_remove(prober->probes);
    while (prober->fetches != NULL)
        probe_fetch_cancel(prober->fetches);
    curl_multi_cleanup(prober->multi); /* no transfers left; may still report sockets */
    prober->multi = NULL;
    while (prober->socks != NULL)
        prober_curl_sock_close(prober->socks);
    uv_timer_stop(&prober->curl_timer);
    uv_close((uv_handle_t *)&prober->curl_timer, prober_on_handle_closed);
    prober_release(prober);
}
