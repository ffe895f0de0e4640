/* Response rate limiting and per-client query limits: the token-bucket table (keyed SipHash of
 * client prefix and key, sets of RRL_WAYS buckets, striped spinlocks), the response classes of
 * authoritative answers, the TC=1 slip, and the rrl / client-limits config sections. */
#include "rrl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errors.h"

#define RRL_COUNT(a) (sizeof(a) / sizeof((a)[0]))
/* A token is 1000 milli-tokens: a rate of R per second then refills exactly R per millisecond. */
#define RRL_TOKEN 1000u
/* Lock stripes: enough that workers rarely meet on one, few enough to stay in cache. */
#define RRL_STRIPES 256u
/* A bucket idle this long is full whatever the rate (burst <= RRL_RATE_MAX tokens). */
#define RRL_FULL_AFTER_MS 1000000000ull

struct rrl_bucket {
    uint64_t hash;     /* 0: empty */
    uint64_t stamp_ms; /* last refill */
    uint32_t tokens;   /* milli-tokens */
    uint32_t limited;  /* limited answers so far, for the slip pattern */
};

/* One lock and the counters of the sets it guards, on a cache line of its own. */
struct rrl_stripe {
    _Alignas(64) pthread_spinlock_t lock;
    uint64_t passed, slipped, dropped, evicted;
};

struct rrl {
    struct rrl_config cfg;
    uint64_t capacity; /* milli-tokens */
    size_t set_count;
    struct rrl_bucket *buckets; /* set_count * RRL_WAYS */
    struct rrl_stripe *stripes; /* RRL_STRIPES */
    unsigned char hash_key[crypto_shorthash_KEYBYTES];
    uint64_t exempt; /* atomic */
};

/* --- config --------------------------------------------------------------------------------- */

void rrl_config_defaults(struct rrl_config *cfg, enum rrl_section_kind kind)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->table_size = RRL_DEFAULT_TABLE_SIZE;
    if (kind == RRL_SECTION_RESPONSES) {
        cfg->rate = RRL_DEFAULT_RATE;
        cfg->slip = RRL_DEFAULT_SLIP;
        cfg->ipv4_prefix = RRL_DEFAULT_IPV4_PREFIX;
        cfg->ipv6_prefix = RRL_DEFAULT_IPV6_PREFIX;
    } else {
        /* A resolver's clients are single hosts (a /64 is one host's IPv6 network). */
        cfg->ipv4_prefix = 32;
        cfg->ipv6_prefix = 64;
    }
}

#define RRL_KEY(section, key, type, min, max, field)                                               \
    CONFIG_KEY(section, key, type, min, max, struct rrl_config, field)
/* Ranges are documented in docs/authd.md and docs/resolver-configuration.md. */
static const struct config_key_spec rrl_response_specs[] = {
    RRL_KEY("rrl", "enable", BOOL, 0, 1, enable),
    RRL_KEY("rrl", "rate", COUNT, 1, RRL_RATE_MAX, rate),
    RRL_KEY("rrl", "burst", COUNT, 0, RRL_RATE_MAX, burst),
    RRL_KEY("rrl", "slip", COUNT, 0, RRL_SLIP_MAX, slip),
    RRL_KEY("rrl", "ipv4-prefix", COUNT, 1, 32, ipv4_prefix),
    RRL_KEY("rrl", "ipv6-prefix", COUNT, 1, 128, ipv6_prefix),
    RRL_KEY("rrl", "table-size", COUNT, RRL_TABLE_SIZE_MIN, RRL_TABLE_SIZE_MAX, table_size),
};
static const struct config_key_spec rrl_query_specs[] = {
    RRL_KEY("client-limits", "rate", COUNT, 0, RRL_RATE_MAX, rate),
    RRL_KEY("client-limits", "burst", COUNT, 0, RRL_RATE_MAX, burst),
    RRL_KEY("client-limits", "ipv4-prefix", COUNT, 1, 32, ipv4_prefix),
    RRL_KEY("client-limits", "ipv6-prefix", COUNT, 1, 128, ipv6_prefix),
    RRL_KEY("client-limits", "table-size", COUNT, RRL_TABLE_SIZE_MIN, RRL_TABLE_SIZE_MAX,
            table_size),
};
static const char *const rrl_extra_keys[] = {"whitelist", NULL};

const char *rrl_section_name(enum rrl_section_kind kind)
{
    return kind == RRL_SECTION_RESPONSES ? "rrl" : "client-limits";
}

static bool rrl_prefix_equal(const struct rrl_prefix *a, const struct rrl_prefix *b)
{
    return a->family == b->family && a->len == b->len && memcmp(a->addr, b->addr, 16) == 0;
}

/* Bits of addr past len are zero? */
static bool rrl_host_bits_clear(const uint8_t *addr, unsigned len, unsigned bits)
{
    for (unsigned bit = len; bit < bits; bit++)
        if (addr[bit / 8] & (0x80u >> (bit % 8)))
            return false;
    return true;
}

int rrl_prefix_parse(const char *text, struct rrl_prefix *out, char *reason, size_t reason_len)
{
    char addr_text[64];
    const char *slash = strchr(text, '/');
    size_t addr_len = slash ? (size_t)(slash - text) : strlen(text);
    if (addr_len == 0 || addr_len >= sizeof addr_text) {
        ballast_set_error(reason, reason_len, "'%s' is not an address prefix", text);
        return BALLAST_EINVAL;
    }
    memcpy(addr_text, text, addr_len);
    addr_text[addr_len] = '\0';
    memset(out, 0, sizeof *out);
    unsigned bits;
    if (inet_pton(AF_INET, addr_text, out->addr) == 1) {
        out->family = AF_INET;
        bits = 32;
    } else if (inet_pton(AF_INET6, addr_text, out->addr) == 1) {
        out->family = AF_INET6;
        bits = 128;
    } else {
        ballast_set_error(reason, reason_len, "'%s' is not an IPv4 or IPv6 address", addr_text);
        return BALLAST_EINVAL;
    }
    unsigned len = bits;
    if (slash) {
        char *end = NULL;
        unsigned long value = strtoul(slash + 1, &end, 10);
        if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || value > bits) {
            ballast_set_error(reason, reason_len, "'%s': prefix length must be 0-%u", text, bits);
            return BALLAST_EINVAL;
        }
        len = (unsigned)value;
    }
    if (!rrl_host_bits_clear(out->addr, len, bits)) {
        ballast_set_error(reason, reason_len, "'%s' has host bits set past /%u", text, len);
        return BALLAST_EINVAL;
    }
    out->len = (uint8_t)len;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (out->family == AF_INET6 && len >= 96 && memcmp(out->addr, mapped, 12) == 0) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = AF_INET;
        out->len = (uint8_t)(len - 96);
    }
    return 0;
}

static int rrl_read_whitelist(const struct config_node *section, struct rrl_config *cfg,
                              struct config_error *err)
{
    const struct config_node *list;
    int rc = config_section(section, "whitelist", CONFIG_LIST, &list, err);
    if (rc != 0 || list == NULL)
        return rc;
    cfg->whitelist_count = 0;
    for (size_t i = 0; i < list->count; i++) {
        const struct config_node *item = list->values[i];
        if (item->kind != CONFIG_SCALAR)
            return config_fail(err, item, "whitelist: expected an address prefix");
        struct rrl_prefix prefix;
        char reason[256];
        if (rrl_prefix_parse(item->scalar, &prefix, reason, sizeof reason) != 0)
            return config_fail(err, item, "whitelist: %s", reason);
        for (size_t j = 0; j < cfg->whitelist_count; j++)
            if (rrl_prefix_equal(&cfg->whitelist[j], &prefix))
                return config_fail(err, item, "whitelist: '%s' is listed twice", item->scalar);
        if (cfg->whitelist_count >= RRL_WHITELIST_MAX) {
            config_fail(err, item, "whitelist: too many prefixes (limit is %u)", RRL_WHITELIST_MAX);
            return BALLAST_ELIMIT;
        }
        cfg->whitelist[cfg->whitelist_count++] = prefix;
    }
    return 0;
}

int rrl_config_read(const struct config_node *root, enum rrl_section_kind kind,
                    struct rrl_config *cfg, struct config_error *err)
{
    bool responses = kind == RRL_SECTION_RESPONSES;
    const struct config_key_spec *specs = responses ? rrl_response_specs : rrl_query_specs;
    size_t count = responses ? RRL_COUNT(rrl_response_specs) : RRL_COUNT(rrl_query_specs);
    const struct config_node *section;
    int rc = config_read_section(root, rrl_section_name(kind), specs, count, rrl_extra_keys, cfg,
                                 &section, err);
    if (rc == 0 && section != NULL)
        rc = rrl_read_whitelist(section, cfg, err);
    if (rc == 0 && !responses)
        cfg->enable = cfg->rate > 0;
    return rc;
}

bool rrl_config_equal(const struct rrl_config *a, const struct rrl_config *b)
{
    if (a->enable != b->enable || a->rate != b->rate || a->burst != b->burst ||
        a->slip != b->slip || a->ipv4_prefix != b->ipv4_prefix ||
        a->ipv6_prefix != b->ipv6_prefix || a->table_size != b->table_size ||
        a->whitelist_count != b->whitelist_count)
        return false;
    for (size_t i = 0; i < a->whitelist_count; i++)
        if (!rrl_prefix_equal(&a->whitelist[i], &b->whitelist[i]))
            return false;
    return true;
}

/* --- the table ------------------------------------------------------------------------------ */

int rrl_create(const struct rrl_config *cfg, struct rrl **out)
{
    *out = NULL;
    if (cfg->rate == 0 || cfg->rate > RRL_RATE_MAX || cfg->burst > RRL_RATE_MAX ||
        cfg->table_size < RRL_TABLE_SIZE_MIN || cfg->table_size > RRL_TABLE_SIZE_MAX ||
        cfg->ipv4_prefix == 0 || cfg->ipv4_prefix > 32 || cfg->ipv6_prefix == 0 ||
        cfg->ipv6_prefix > 128 || cfg->whitelist_count > RRL_WHITELIST_MAX)
        return BALLAST_EINVAL;
    if (sodium_init() < 0)
        return BALLAST_ESYS;
    struct rrl *rrl = calloc(1, sizeof *rrl);
    if (!rrl)
        return BALLAST_ENOMEM;
    rrl->cfg = *cfg;
    rrl->capacity = (uint64_t)(cfg->burst ? cfg->burst : cfg->rate) * RRL_TOKEN;
    rrl->set_count = (cfg->table_size + RRL_WAYS - 1) / RRL_WAYS;
    rrl->buckets = calloc(rrl->set_count * RRL_WAYS, sizeof *rrl->buckets);
    rrl->stripes = aligned_alloc(_Alignof(struct rrl_stripe), RRL_STRIPES * sizeof *rrl->stripes);
    if (!rrl->buckets || !rrl->stripes) {
        free(rrl->buckets);
        free(rrl->stripes);
        free(rrl);
        return BALLAST_ENOMEM;
    }
    memset(rrl->stripes, 0, RRL_STRIPES * sizeof *rrl->stripes);
    for (unsigned i = 0; i < RRL_STRIPES; i++)
        pthread_spin_init(&rrl->stripes[i].lock, PTHREAD_PROCESS_PRIVATE);
    /* A secret hash key: an attacker cannot aim many keys at one set to evict a victim's. */
    crypto_shorthash_keygen(rrl->hash_key);
    *out = rrl;
    return 0;
}

void rrl_free(struct rrl *rrl)
{
    if (!rrl)
        return;
    for (unsigned i = 0; i < RRL_STRIPES; i++)
        pthread_spin_destroy(&rrl->stripes[i].lock);
    free(rrl->stripes);
    free(rrl->buckets);
    free(rrl);
}

const struct rrl_config *rrl_get_config(const struct rrl *rrl)
{
    return &rrl->cfg;
}

uint64_t rrl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The client's address as 4 or 16 bytes (IPv4-mapped IPv6 as IPv4); 0 for other families. */
static size_t rrl_client_address(const struct sockaddr *client, uint8_t *addr)
{
    if (client->sa_family == AF_INET) {
        memcpy(addr, &((const struct sockaddr_in *)client)->sin_addr, 4);
        return 4;
    }
    if (client->sa_family != AF_INET6)
        return 0;
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)client)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6)) {
        memcpy(addr, a6->s6_addr + 12, 4);
        return 4;
    }
    memcpy(addr, a6->s6_addr, 16);
    return 16;
}

static bool rrl_prefix_covers(const struct rrl_prefix *prefix, const uint8_t *addr, size_t len)
{
    if ((prefix->family == AF_INET) != (len == 4))
        return false;
    unsigned whole = prefix->len / 8, rest = prefix->len % 8;
    if (memcmp(prefix->addr, addr, whole) != 0)
        return false;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return rest == 0 || (addr[whole] & mask) == prefix->addr[whole];
}

static bool rrl_whitelisted(const struct rrl *rrl, const uint8_t *addr, size_t len)
{
    for (size_t i = 0; i < rrl->cfg.whitelist_count; i++)
        if (rrl_prefix_covers(&rrl->cfg.whitelist[i], addr, len))
            return true;
    return false;
}

/* Keep the first bits of addr (len bytes), zero the rest. */
static void rrl_mask(uint8_t *addr, size_t len, unsigned bits)
{
    for (size_t i = 0; i < len; i++) {
        unsigned keep = bits > 8 * i ? bits - 8 * (unsigned)i : 0;
        if (keep < 8)
            addr[i] &= (uint8_t)(0xff00u >> keep);
    }
}

/* Keyed SipHash of family, client prefix and key; never 0 (the empty-bucket mark). */
static uint64_t rrl_hash(const struct rrl *rrl, const uint8_t *addr, size_t addr_len,
                         const uint8_t *key, size_t key_len)
{
    uint8_t input[1 + 16 + RRL_KEY_MAX];
    if (key_len > RRL_KEY_MAX)
        key_len = RRL_KEY_MAX;
    input[0] = (uint8_t)addr_len;
    memcpy(input + 1, addr, addr_len);
    rrl_mask(input + 1, addr_len, addr_len == 4 ? rrl->cfg.ipv4_prefix : rrl->cfg.ipv6_prefix);
    if (key_len)
        memcpy(input + 1 + addr_len, key, key_len);
    unsigned char out[crypto_shorthash_BYTES];
    crypto_shorthash(out, input, 1 + addr_len + key_len, rrl->hash_key);
    uint64_t hash;
    memcpy(&hash, out, sizeof hash);
    return hash ? hash : 1;
}

/* Milli-tokens of bucket b refilled up to now (not stored). */
static uint64_t rrl_refilled(const struct rrl *rrl, const struct rrl_bucket *b, uint64_t now_ms)
{
    uint64_t elapsed = now_ms > b->stamp_ms ? now_ms - b->stamp_ms : 0;
    if (elapsed >= RRL_FULL_AFTER_MS)
        return rrl->capacity;
    uint64_t tokens = b->tokens + elapsed * rrl->cfg.rate;
    return tokens < rrl->capacity ? tokens : rrl->capacity;
}

/* The bucket of hash in its set: its own, else an empty or full one (taking it loses nothing),
 * else the one refilled longest ago (evicted). *fresh says the bucket is new to hash. */
static struct rrl_bucket *rrl_find(struct rrl *rrl, struct rrl_bucket *set, uint64_t hash,
                                   uint64_t now_ms, bool *fresh, bool *evicted)
{
    struct rrl_bucket *free_bucket = NULL, *oldest = &set[0];
    *fresh = *evicted = false;
    for (unsigned i = 0; i < RRL_WAYS; i++) {
        struct rrl_bucket *b = &set[i];
        if (b->hash == hash)
            return b;
        if (!free_bucket && (b->hash == 0 || rrl_refilled(rrl, b, now_ms) == rrl->capacity))
            free_bucket = b;
        if (b->stamp_ms < oldest->stamp_ms)
            oldest = b;
    }
    *fresh = true;
    *evicted = free_bucket == NULL;
    return free_bucket ? free_bucket : oldest;
}

static inline void rrl_bump(uint64_t *counter)
{
    __atomic_store_n(counter, *counter + 1, __ATOMIC_RELAXED); /* under the stripe's lock */
}

/* One token from b, or the limited answer's fate. Call with the stripe locked. */
static enum rrl_action rrl_take(struct rrl *rrl, struct rrl_bucket *b, uint64_t now_ms)
{
    uint64_t tokens = rrl_refilled(rrl, b, now_ms);
    if (now_ms > b->stamp_ms)
        b->stamp_ms = now_ms;
    if (tokens >= RRL_TOKEN) {
        b->tokens = (uint32_t)(tokens - RRL_TOKEN);
        return RRL_PASS;
    }
    b->tokens = (uint32_t)tokens;
    b->limited++;
    return rrl->cfg.slip && b->limited % rrl->cfg.slip == 0 ? RRL_SLIP : RRL_DROP;
}

enum rrl_action rrl_check(struct rrl *rrl, const struct sockaddr *client, const uint8_t *key,
                          size_t key_len, uint64_t now_ms)
{
    uint8_t addr[16];
    size_t addr_len = rrl_client_address(client, addr);
    if (addr_len == 0 || rrl_whitelisted(rrl, addr, addr_len)) {
        __atomic_fetch_add(&rrl->exempt, 1, __ATOMIC_RELAXED);
        return RRL_PASS;
    }
    uint64_t hash = rrl_hash(rrl, addr, addr_len, key, key_len);
    size_t set_index = (size_t)(hash % rrl->set_count);
    struct rrl_bucket *set = &rrl->buckets[set_index * RRL_WAYS];
    struct rrl_stripe *stripe = &rrl->stripes[set_index % RRL_STRIPES];
    pthread_spin_lock(&stripe->lock);
    bool fresh, evicted;
    struct rrl_bucket *b = rrl_find(rrl, set, hash, now_ms, &fresh, &evicted);
    if (fresh)
        *b = (struct rrl_bucket){.hash = hash, .stamp_ms = now_ms, .tokens = rrl->capacity};
    if (evicted)
        rrl_bump(&stripe->evicted);
    enum rrl_action action = rrl_take(rrl, b, now_ms);
    rrl_bump(action == RRL_PASS   ? &stripe->passed
             : action == RRL_SLIP ? &stripe->slipped
                                  : &stripe->dropped);
    pthread_spin_unlock(&stripe->lock);
    return action;
}

void rrl_get_stats(const struct rrl *rrl, struct rrl_stats *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < RRL_STRIPES; i++) {
        const struct rrl_stripe *s = &rrl->stripes[i];
        out->passed += __atomic_load_n(&s->passed, __ATOMIC_RELAXED);
        out->slipped += __atomic_load_n(&s->slipped, __ATOMIC_RELAXED);
        out->dropped += __atomic_load_n(&s->dropped, __ATOMIC_RELAXED);
        out->evicted += __atomic_load_n(&s->evicted, __ATOMIC_RELAXED);
    }
    out->exempt = __atomic_load_n(&rrl->exempt, __ATOMIC_RELAXED);
}

/* --- response keys -------------------------------------------------------------------------- */

/* Skip count resource records from *pos (RFC 1035 §4.1.3). Returns 0 or BALLAST_EFORMERR. */
static int rrl_skip_records(const uint8_t *pkt, size_t len, size_t *pos, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        if (wire_name_unpack(pkt, len, pos, NULL, NULL) != 0 || *pos + 10 > len)
            return BALLAST_EFORMERR;
        size_t rdlen = wire_read_u16(pkt + *pos + 8);
        if (*pos + 10 + rdlen > len)
            return BALLAST_EFORMERR;
        *pos += 10 + rdlen;
    }
    return 0;
}

static size_t rrl_key_write(uint8_t *key, enum rrl_class cls, uint16_t qtype, const uint8_t *name,
                            size_t name_len)
{
    key[0] = (uint8_t)cls;
    wire_write_u16(key + 1, qtype);
    wire_name_lower(key + 3, name, name_len);
    return 3 + name_len;
}

size_t rrl_response_key(const uint8_t *resp, size_t len, uint8_t *key)
{
    if (len < WIRE_HEADER_LEN || wire_read_u16(resp + 4) == 0)
        return rrl_key_write(key, RRL_CLASS_ERROR, 0, NULL, 0);
    uint16_t flags = wire_read_u16(resp + 2);
    uint16_t ancount = wire_read_u16(resp + 6), nscount = wire_read_u16(resp + 8);
    uint8_t qname[WIRE_NAME_MAX], owner[WIRE_NAME_MAX];
    size_t qname_len = 0, owner_len = 0, pos = WIRE_HEADER_LEN;
    if (wire_name_unpack(resp, len, &pos, qname, &qname_len) != 0 || pos + 4 > len)
        return rrl_key_write(key, RRL_CLASS_ERROR, 0, NULL, 0);
    uint16_t qtype = wire_read_u16(resp + pos);
    pos += 4;
    unsigned rcode = WIRE_RCODE(flags);
    if (rcode == WIRE_RCODE_NOERROR && (ancount > 0 || (flags & WIRE_FLAG_TC)))
        return rrl_key_write(key, RRL_CLASS_ANSWER, qtype, qname, qname_len);
    if (rcode != WIRE_RCODE_NOERROR && rcode != WIRE_RCODE_NXDOMAIN)
        return rrl_key_write(key, RRL_CLASS_ERROR, 0, NULL, 0);
    /* The imputed name: the first authority owner (SOA at the apex, or the delegation's NS). */
    bool found = nscount > 0 && rrl_skip_records(resp, len, &pos, ancount) == 0 &&
                 wire_name_unpack(resp, len, &pos, owner, &owner_len) == 0;
    if (rcode == WIRE_RCODE_NXDOMAIN)
        return rrl_key_write(key, RRL_CLASS_NXDOMAIN, 0, owner, found ? owner_len : 0);
    if (!found) /* NOERROR with nothing at all, e.g. BADVERS (its RCODE is in the OPT) */
        return rrl_key_write(key, RRL_CLASS_ERROR, 0, NULL, 0);
    enum rrl_class cls = (flags & WIRE_FLAG_AA) ? RRL_CLASS_NODATA : RRL_CLASS_REFERRAL;
    return rrl_key_write(key, cls, 0, owner, owner_len);
}

size_t rrl_slip_response(uint8_t *resp, size_t len)
{
    if (len < WIRE_HEADER_LEN)
        return len;
    size_t end = WIRE_HEADER_LEN;
    uint16_t qdcount = wire_read_u16(resp + 4);
    if (qdcount > 0 && (wire_name_unpack(resp, len, &end, NULL, NULL) != 0 || end + 4 > len)) {
        end = WIRE_HEADER_LEN;
        qdcount = 0;
    } else if (qdcount > 0) {
        end += 4;
        qdcount = 1;
    }
    wire_write_u16(resp + 2, wire_read_u16(resp + 2) | WIRE_FLAG_TC);
    wire_write_u16(resp + 4, qdcount);
    memset(resp + 6, 0, 6);
    return end;
}
