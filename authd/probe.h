/* Built-in health probes on a libuv loop: TCP connect, HTTP and HTTPS (libcurl's multi socket
 * API driven by the loop), and DNS (a query to an address, expecting an RCODE). Each probe runs
 * on its own interval with jitter so probes spread out; results go to a callback. Also fetches
 * a document over HTTP(S) or from a file, for health feeds. */
#ifndef BALLAST_PROBE_H
#define BALLAST_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "addr.h"

enum probe_kind { PROBE_TCP, PROBE_HTTP, PROBE_HTTPS, PROBE_DNS };

struct probe_spec {
    enum probe_kind kind;
    struct addr target;     /* TCP, DNS: address and port; HTTP(S): where to connect */
    char *url;              /* HTTP(S): full URL (its host is sent as Host/SNI); else NULL */
    uint16_t expect_status; /* HTTP(S): expected status (0 = any 2xx or 3xx) */
    char *body_match;       /* HTTP(S): substring the body must contain; NULL = none */
    bool tls_verify;        /* HTTPS: verify the certificate (default true) */
    uint8_t dns_qname[255]; /* DNS: the question (wire) */
    size_t dns_qname_len;
    uint16_t dns_qtype;
    uint8_t dns_expect_rcode; /* DNS: expected RCODE (default 0) */
    uint32_t interval_ms;     /* between probes (default 10 s) */
    uint32_t timeout_ms;      /* one probe (default 2 s, < interval) */
};

/* A canonical text of a spec ("tcp 192.0.2.10@443 interval=10000 timeout=2000", "http
 * 192.0.2.10@80 http://... status=200 interval=... timeout=... body='ok'"), used to share one
 * probe between pools that check the same target. Every field that changes the check is in it;
 * a buffer shorter than PROBE_SPEC_KEY_MAX may cut it (and make distinct specs collide). */
#define PROBE_SPEC_KEY_MAX 4096
void probe_spec_key(const struct probe_spec *spec, char *buf, size_t len);

/* ok false comes with a short error ("connect: connection refused", "timeout after 2000 ms",
 * "HTTP status 503", "body does not contain 'ok'", "RCODE SERVFAIL"). */
typedef void (*probe_result_fn)(void *ctx, bool ok, const char *error, uint32_t latency_ms);

struct prober;
struct probe;

/* Create on loop (owned by the caller, who keeps it running). Returns 0 or BALLAST_E*. */
int prober_create(uv_loop_t *loop, struct prober **out);
/* Stop every probe and fetch (no more callbacks) and free once handles are closed: keep
 * running the loop afterwards. */
void prober_free(struct prober *prober);

/* Start probing spec (copied) every interval; the first probe runs after a random delay in
 * [0, interval) (jitter), later ones every interval +/- 10 %. At most one run is in flight per
 * probe: a run still going when the next slot comes makes that slot be skipped. Returns 0,
 * BALLAST_EINVAL (TCP/DNS need an address with a port; HTTP(S) an address, port 0 = the URL's,
 * and a URL whose scheme matches the kind), BALLAST_ENOMEM or BALLAST_ECANCELED (prober freed).
 * cb is never called from inside prober_add, nor after probe_remove (which a callback may call,
 * for its own probe too). */
int prober_add(struct prober *prober, const struct probe_spec *spec, probe_result_fn cb, void *ctx,
               struct probe **out);
void probe_remove(struct probe *probe);

struct prober_stats {
    uint64_t probes_sent;
    uint64_t probes_failed;
};
void prober_get_stats(const struct prober *prober, struct prober_stats *out);

/* Fetch a document: "file:///path" or a plain path reads the file (on libuv's thread pool;
 * timeout_ms applies to HTTP(S) only), http(s):// uses libcurl (no redirects, no proxy).
 * More than max_bytes fails ("document larger than N bytes", BALLAST_ELIMIT). cb gets status 0
 * and the bytes (valid during the call), or an error code and a reason; it is called exactly
 * once, later, unless the prober is freed first. Returns 0, or BALLAST_EINVAL (other scheme,
 * max_bytes 0) and the like, and then cb is never called. timeout_ms 0 means 10 s. */
typedef void (*probe_fetch_fn)(void *ctx, int status, const uint8_t *data, size_t len,
                               const char *reason);
int prober_fetch(struct prober *prober, const char *url, size_t max_bytes, uint32_t timeout_ms,
                 probe_fetch_fn cb, void *ctx);

#endif
