/* DNS cookies (RFC 7873) with interoperable server cookies (RFC 9018): parsing and writing the
 * COOKIE EDNS option, making and checking server cookies, and client cookies for upstream. */
#ifndef BALLAST_COOKIE_H
#define BALLAST_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define COOKIE_OPTION_CODE 10
#define COOKIE_CLIENT_LEN 8
#define COOKIE_SERVER_MIN 8
#define COOKIE_SERVER_MAX 32
#define COOKIE_SERVER_LEN 16 /* ours: RFC 9018 §4 */
#define COOKIE_SECRET_LEN 16 /* SipHash-2-4 key */
/* Option code, length, client cookie and the longest server cookie. */
#define COOKIE_OPTION_MAX (4 + COOKIE_CLIENT_LEN + COOKIE_SERVER_MAX)
/* RFC 9018 §4.3: a server cookie is valid for 1 hour, and up to 5 minutes in the future. */
#define COOKIE_MAX_AGE 3600
#define COOKIE_MAX_FUTURE 300

/* A COOKIE option as received. */
struct cookie {
    bool present; /* false: the query had no COOKIE option */
    uint8_t client[COOKIE_CLIENT_LEN];
    uint8_t server[COOKIE_SERVER_MAX];
    uint8_t server_len; /* 0: client cookie only */
};

/* Find the COOKIE option in OPT RDATA (options, len bytes; NULL/0 when none). Returns 0 (with
 * c->present false when there is no COOKIE option), or BALLAST_EFORMERR when the option list
 * overruns RDATA or the COOKIE length is not 8 or 16-40 (RFC 7873 §5.2.2). */
int cookie_parse_option(const uint8_t *options, size_t len, struct cookie *c);

/* A fresh secret from the system's random source. */
void cookie_secret_generate(uint8_t secret[COOKIE_SECRET_LEN]);
/* The process's server and client secrets (COOKIE_SECRET_LEN bytes each), generated on first
 * use and shared by every worker, so any worker checks any worker's cookie. A restart makes new
 * ones: clients then simply learn a new server cookie (RFC 7873 §5.4). */
const uint8_t *cookie_server_secret(void);
const uint8_t *cookie_client_secret(void);

/* RFC 9018 §4: Version 1 | Reserved 0 | Timestamp (now, seconds) | SipHash-2-4(client cookie |
 * version | reserved | timestamp | client IP) into out (COOKIE_SERVER_LEN bytes). peer is an
 * AF_INET or AF_INET6 address; only its IP is hashed. */
void cookie_server_make(const uint8_t secret[COOKIE_SECRET_LEN],
                        const uint8_t client[COOKIE_CLIENT_LEN], const struct sockaddr *peer,
                        uint32_t now, uint8_t out[COOKIE_SERVER_LEN]);

/* Is c's server cookie one we made for this client cookie and peer, not older than
 * COOKIE_MAX_AGE and not more than COOKIE_MAX_FUTURE ahead (serial arithmetic, RFC 1982)? */
bool cookie_server_check(const uint8_t secret[COOKIE_SECRET_LEN], const struct cookie *c,
                         const struct sockaddr *peer, uint32_t now);

/* Write the option (code, length, client cookie, server cookie of server_len bytes, which may
 * be 0) at out. Returns the bytes written, or 0 when cap is too small. */
size_t cookie_write_option(uint8_t *out, size_t cap, const uint8_t client[COOKIE_CLIENT_LEN],
                           const uint8_t *server, size_t server_len);

/* The COOKIE option a server answers c with (RFC 7873 §5.2.3-5.2.5): c's client cookie and a
 * fresh server cookie for peer, made with cookie_server_secret(). Returns its length (0 when c
 * is not present or cap is too small). */
size_t cookie_server_option(const struct cookie *c, const struct sockaddr *peer, uint32_t now,
                            uint8_t *out, size_t cap);

/* The COOKIE option of a whole response (RFC 7873 §5.3), in the OPT of its additional section.
 * Returns 0 (c->present false when there is none) or BALLAST_EFORMERR (malformed packet or
 * option). */
int cookie_find_in_response(const uint8_t *resp, size_t len, struct cookie *c);

/* Add option (option_len bytes, e.g. from cookie_write_option) to the OPT record that ends
 * the response resp (len bytes, buffer of cap). Returns the new length, or len unchanged when
 * the last record is not OPT, the response is malformed or there is no room. */
size_t cookie_append_to_response(uint8_t *resp, size_t len, size_t cap, const uint8_t *option,
                                 size_t option_len);

/* RFC 7873 §4.1 / RFC 9018 §3: our client cookie for a server, SipHash-2-4 of the server's IP
 * (the source IP is unknown on unbound sockets, as in Unbound) with a per-process secret. */
void cookie_client_make(const uint8_t secret[COOKIE_SECRET_LEN], const struct sockaddr *server,
                        uint8_t out[COOKIE_CLIENT_LEN]);

#endif
