/* DNS cookies (RFC 7873, RFC 9018): the COOKIE option on the wire and SipHash-2-4 server and
 * client cookies (libsodium's crypto_shorthash_siphash24). */
#include "cookie.h"

#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "errors.h"
#include "wire.h"

#define COOKIE_VERSION 1
#define COOKIE_HASH_INPUT_MAX (COOKIE_CLIENT_LEN + 8 + 16)

int cookie_parse_option(const uint8_t *options, size_t len, struct cookie *c)
{
    memset(c, 0, sizeof *c);
    size_t pos = 0;
    while (pos < len) {
        if (len - pos < 4)
            return BALLAST_EFORMERR;
        uint16_t code = wire_read_u16(options + pos);
        uint16_t opt_len = wire_read_u16(options + pos + 2);
        pos += 4;
        if (opt_len > len - pos)
            return BALLAST_EFORMERR;
        if (code == COOKIE_OPTION_CODE && !c->present) {
            /* RFC 7873 §5.2.2: 8 bytes, or 8 plus a server cookie of 8 to 32 bytes. */
            if (opt_len != COOKIE_CLIENT_LEN && (opt_len < COOKIE_CLIENT_LEN + COOKIE_SERVER_MIN ||
                                                 opt_len > COOKIE_CLIENT_LEN + COOKIE_SERVER_MAX))
                return BALLAST_EFORMERR;
            c->present = true;
            memcpy(c->client, options + pos, COOKIE_CLIENT_LEN);
            c->server_len = (uint8_t)(opt_len - COOKIE_CLIENT_LEN);
            memcpy(c->server, options + pos + COOKIE_CLIENT_LEN, c->server_len);
        }
        pos += opt_len;
    }
    return BALLAST_OK;
}

void cookie_secret_generate(uint8_t secret[COOKIE_SECRET_LEN])
{
    randombytes_buf(secret, COOKIE_SECRET_LEN);
}

static uint8_t cookie_secrets[2][COOKIE_SECRET_LEN];
static pthread_once_t cookie_secrets_once = PTHREAD_ONCE_INIT;

static void cookie_secrets_init(void)
{
    cookie_secret_generate(cookie_secrets[0]);
    cookie_secret_generate(cookie_secrets[1]);
}

const uint8_t *cookie_server_secret(void)
{
    pthread_once(&cookie_secrets_once, cookie_secrets_init);
    return cookie_secrets[0];
}

const uint8_t *cookie_client_secret(void)
{
    pthread_once(&cookie_secrets_once, cookie_secrets_init);
    return cookie_secrets[1];
}

/* The peer's IP bytes (4 or 16), or 0 for another family. */
static size_t cookie_peer_ip(const struct sockaddr *peer, uint8_t out[16])
{
    if (peer && peer->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)(const void *)peer)->sin_addr, 4);
        return 4;
    }
    if (peer && peer->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)peer)->sin6_addr, 16);
        return 16;
    }
    return 0;
}

void cookie_server_make(const uint8_t secret[COOKIE_SECRET_LEN],
                        const uint8_t client[COOKIE_CLIENT_LEN], const struct sockaddr *peer,
                        uint32_t now, uint8_t out[COOKIE_SERVER_LEN])
{
    uint8_t input[COOKIE_HASH_INPUT_MAX];
    memcpy(input, client, COOKIE_CLIENT_LEN);
    input[8] = COOKIE_VERSION;
    input[9] = input[10] = input[11] = 0;
    wire_write_u32(input + 12, now);
    size_t len = 16 + cookie_peer_ip(peer, input + 16);
    memcpy(out, input + 8, 8); /* version, reserved, timestamp */
    crypto_shorthash_siphash24(out + 8, input, len, secret);
}

bool cookie_server_check(const uint8_t secret[COOKIE_SECRET_LEN], const struct cookie *c,
                         const struct sockaddr *peer, uint32_t now)
{
    if (!c->present || c->server_len != COOKIE_SERVER_LEN || c->server[0] != COOKIE_VERSION)
        return false;
    uint32_t stamp = wire_read_u32(c->server + 4);
    /* RFC 9018 §4.3 with serial number arithmetic (RFC 1982) for wrap-around. */
    uint32_t age = now - stamp;
    if (age > COOKIE_MAX_AGE && stamp - now > COOKIE_MAX_FUTURE)
        return false;
    uint8_t expect[COOKIE_SERVER_LEN];
    cookie_server_make(secret, c->client, peer, stamp, expect);
    /* expect has zero reserved bytes, so a cookie with other ones never matches. */
    return sodium_memcmp(expect, c->server, COOKIE_SERVER_LEN) == 0;
}

size_t cookie_write_option(uint8_t *out, size_t cap, const uint8_t client[COOKIE_CLIENT_LEN],
                           const uint8_t *server, size_t server_len)
{
    size_t len = 4 + COOKIE_CLIENT_LEN + server_len;
    if (server_len > COOKIE_SERVER_MAX || len > cap)
        return 0;
    wire_write_u16(out, COOKIE_OPTION_CODE);
    wire_write_u16(out + 2, (uint16_t)(COOKIE_CLIENT_LEN + server_len));
    memcpy(out + 4, client, COOKIE_CLIENT_LEN);
    if (server_len > 0)
        memcpy(out + 4 + COOKIE_CLIENT_LEN, server, server_len);
    return len;
}

void cookie_client_make(const uint8_t secret[COOKIE_SECRET_LEN], const struct sockaddr *server,
                        uint8_t out[COOKIE_CLIENT_LEN])
{
    uint8_t ip[16];
    size_t len = cookie_peer_ip(server, ip);
    crypto_shorthash_siphash24(out, ip, len, secret);
}

size_t cookie_server_option(const struct cookie *c, const struct sockaddr *peer, uint32_t now,
                            uint8_t *out, size_t cap)
{
    if (!c->present)
        return 0;
    uint8_t server[COOKIE_SERVER_LEN];
    cookie_server_make(cookie_server_secret(), c->client, peer, now, server);
    return cookie_write_option(out, cap, c->client, server, sizeof server);
}

/* Where a response's records are: offsets of the last record's TYPE field and of the OPT
 * record's TYPE field in the additional section (0: none). Returns 0, or BALLAST_EFORMERR when
 * the packet does not end exactly after its last record. */
static int cookie_walk(const uint8_t *resp, size_t len, size_t *last, size_t *opt)
{
    *last = *opt = 0;
    if (len < WIRE_HEADER_LEN)
        return BALLAST_EFORMERR;
    size_t pos = WIRE_HEADER_LEN;
    unsigned qd = wire_read_u16(resp + 4);
    unsigned before_additional = (unsigned)wire_read_u16(resp + 6) + wire_read_u16(resp + 8);
    unsigned rrs = before_additional + wire_read_u16(resp + 10);
    for (unsigned i = 0; i < qd; i++) {
        if (wire_name_unpack(resp, len, &pos, NULL, NULL) != 0 || len - pos < 4)
            return BALLAST_EFORMERR;
        pos += 4;
    }
    for (unsigned i = 0; i < rrs; i++) {
        if (wire_name_unpack(resp, len, &pos, NULL, NULL) != 0 || len - pos < 10)
            return BALLAST_EFORMERR;
        *last = pos;
        if (i >= before_additional && wire_read_u16(resp + pos) == WIRE_TYPE_OPT)
            *opt = pos;
        size_t rdlen = wire_read_u16(resp + pos + 8);
        if (len - pos - 10 < rdlen)
            return BALLAST_EFORMERR;
        pos += 10 + rdlen;
    }
    return pos == len ? BALLAST_OK : BALLAST_EFORMERR;
}

int cookie_find_in_response(const uint8_t *resp, size_t len, struct cookie *c)
{
    size_t last, opt;
    memset(c, 0, sizeof *c);
    int rc = cookie_walk(resp, len, &last, &opt);
    if (rc != 0 || opt == 0)
        return rc;
    return cookie_parse_option(resp + opt + 10, wire_read_u16(resp + opt + 8), c);
}

size_t cookie_append_to_response(uint8_t *resp, size_t len, size_t cap, const uint8_t *option,
                                 size_t option_len)
{
    size_t type_at, opt;
    if (cookie_walk(resp, len, &type_at, &opt) != 0 || type_at == 0 ||
        wire_read_u16(resp + type_at) != WIRE_TYPE_OPT || len > cap || option_len > cap - len)
        return len;
    size_t rdlen = wire_read_u16(resp + type_at + 8);
    if (rdlen + option_len > UINT16_MAX)
        return len;
    wire_write_u16(resp + type_at + 8, (uint16_t)(rdlen + option_len));
    memcpy(resp + len, option, option_len);
    return len + option_len;
}
