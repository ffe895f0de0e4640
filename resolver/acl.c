/* Client access control: parses address prefixes, keeps rules per family sorted longest first,
 * and answers "allow, refuse or deny?" for a client address with a pure read. */
#include "acl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

/* Bits of IPv4-mapped IPv6 (RFC 4291 §2.5.5.2): ::ffff:0:0/96. */
#define ACL_V4_MAPPED_BITS 96

static const uint8_t acl_v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* A built-in prefix, written as bytes so no parsing happens at run time. */
struct acl_builtin {
    sa_family_t family;
    uint8_t len;
    uint8_t addr[16];
};

/* Loopback (RFC 1122 §3.2.1.3, RFC 4291 §2.5.3), private (RFC 1918 §3), link-local (RFC 3927,
 * RFC 4291 §2.5.6) and unique local (RFC 4193 §3): the clients a fresh resolver serves and the
 * servers it does not query unless allow-private-upstreams is set. */
static const struct acl_builtin acl_private_ranges[] = {
    {AF_INET, 8, {127}},          /* 127.0.0.0/8 */
    {AF_INET6, 128, {[15] = 1}},  /* ::1/128 */
    {AF_INET, 8, {10}},           /* 10.0.0.0/8 */
    {AF_INET, 12, {172, 16}},     /* 172.16.0.0/12 */
    {AF_INET, 16, {192, 168}},    /* 192.168.0.0/16 */
    {AF_INET, 16, {169, 254}},    /* 169.254.0.0/16 */
    {AF_INET6, 7, {0xfc}},        /* fc00::/7 */
    {AF_INET6, 10, {0xfe, 0x80}}, /* fe80::/10 */
};
/* Never a real server (RFC 1122 §3.2.1.3 "this network", RFC 4291 §2.5.2 unspecified). */
static const struct acl_builtin acl_unspecified_ranges[] = {
    {AF_INET, 8, {0}},
    {AF_INET6, 128, {0}},
};
#define ACL_COUNT(a) (sizeof(a) / sizeof((a)[0]))

void acl_init(struct acl *acl)
{
    memset(acl, 0, sizeof(*acl));
}

void acl_free(struct acl *acl)
{
    free(acl->v4);
    free(acl->v6);
    acl_init(acl);
}

size_t acl_rule_count(const struct acl *acl)
{
    return acl->v4_count + acl->v6_count;
}

/* ---- words and masks ---- */

static uint64_t acl_load_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Mask of the top `bits` bits of a `width`-bit word (bits <= width <= 64). */
static uint64_t acl_mask_bits(unsigned bits, unsigned width)
{
    if (bits == 0)
        return 0;
    uint64_t top = bits == 64 ? UINT64_MAX : ~(UINT64_MAX >> bits);
    return top >> (64 - width);
}

/* The address of a prefix or a client as the two words a rule compares. */
static void acl_words(sa_family_t family, const uint8_t *addr, uint64_t words[2])
{
    if (family == AF_INET) {
        words[0] = ((uint64_t)addr[0] << 24) | ((uint64_t)addr[1] << 16) |
                   ((uint64_t)addr[2] << 8) | addr[3];
        words[1] = 0;
    } else {
        words[0] = acl_load_u64(addr);
        words[1] = acl_load_u64(addr + 8);
    }
}

static void acl_masks(sa_family_t family, unsigned len, uint64_t mask[2])
{
    if (family == AF_INET) {
        mask[0] = acl_mask_bits(len, 32);
        mask[1] = 0;
    } else {
        mask[0] = acl_mask_bits(len > 64 ? 64 : len, 64);
        mask[1] = acl_mask_bits(len > 64 ? len - 64 : 0, 64);
    }
}

/* Clear the bits of addr past len; returns true if any was set. */
static bool acl_clear_host_bits(uint8_t *addr, size_t addr_bytes, unsigned len)
{
    bool had = false;
    for (size_t i = 0; i < addr_bytes; i++) {
        unsigned first_bit = (unsigned)i * 8;
        uint8_t keep;
        if (first_bit + 8 <= len)
            keep = 0xff;
        else if (first_bit >= len)
            keep = 0;
        else
            keep = (uint8_t)(0xff << (8 - (len - first_bit)));
        had |= (addr[i] & (uint8_t)~keep) != 0;
        addr[i] &= keep;
    }
    return had;
}

/* ---- prefixes ---- */

/* An IPv4-mapped IPv6 prefix covering only mapped addresses becomes the IPv4 prefix. */
static void acl_prefix_unmap(struct acl_prefix *p)
{
    if (p->family != AF_INET6 || p->len < ACL_V4_MAPPED_BITS ||
        memcmp(p->addr, acl_v4_mapped_prefix, sizeof(acl_v4_mapped_prefix)) != 0)
        return;
    uint8_t v4[4];
    memcpy(v4, p->addr + 12, 4);
    memset(p->addr, 0, sizeof(p->addr));
    memcpy(p->addr, v4, 4);
    p->family = AF_INET;
    p->len = (uint8_t)(p->len - ACL_V4_MAPPED_BITS);
}

/* Parse the "/LEN" part: 1 to 3 digits, at most max. */
static int acl_parse_length(const char *text, unsigned max, unsigned *out)
{
    size_t n = strlen(text);
    if (n == 0 || n > 3)
        return BALLAST_EINVAL;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9')
            return BALLAST_EINVAL;
        v = v * 10 + (unsigned)(text[i] - '0');
    }
    if (v > max)
        return BALLAST_EINVAL;
    *out = v;
    return 0;
}

int acl_prefix_parse(const char *text, struct acl_prefix *out, char *reason, size_t reason_len)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t host_len = slash ? (size_t)(slash - text) : strlen(text);
    struct acl_prefix p = {0};
    if (host_len == 0) {
        snprintf(reason, reason_len, "'%s': missing address (expected ADDR[/LEN])", text);
        return BALLAST_EINVAL;
    }
    if (host_len < sizeof(host)) {
        memcpy(host, text, host_len);
        host[host_len] = '\0';
    }
    unsigned max;
    if (host_len < sizeof(host) && inet_pton(AF_INET, host, p.addr) == 1) {
        p.family = AF_INET;
        max = 32;
    } else if (host_len < sizeof(host) && inet_pton(AF_INET6, host, p.addr) == 1) {
        p.family = AF_INET6;
        max = 128;
    } else {
        snprintf(reason, reason_len, "'%.*s' is not an IPv4 or IPv6 address (in '%s')",
                 (int)(host_len > 64 ? 64 : host_len), text, text);
        return BALLAST_EINVAL;
    }
    unsigned len = max;
    if (slash != NULL && acl_parse_length(slash + 1, max, &len) != 0) {
        snprintf(reason, reason_len, "'%s': prefix length must be a number from 0 to %u for %s",
                 text, max, p.family == AF_INET ? "IPv4" : "IPv6");
        return BALLAST_EINVAL;
    }
    p.len = (uint8_t)len;
    if (acl_clear_host_bits(p.addr, max / 8, len)) {
        char fixed[ACL_PREFIX_TEXT_MAX];
        snprintf(reason, reason_len, "'%s': address has bits set past /%u (did you mean %s?)", text,
                 len, acl_prefix_format(&p, fixed, sizeof(fixed)));
        return BALLAST_EINVAL;
    }
    acl_prefix_unmap(&p);
    *out = p;
    return 0;
}

const char *acl_prefix_format(const struct acl_prefix *prefix, char *buf, size_t buf_len)
{
    char host[INET6_ADDRSTRLEN];
    if (inet_ntop(prefix->family, prefix->addr, host, sizeof(host)) == NULL)
        snprintf(host, sizeof(host), "?");
    snprintf(buf, buf_len, "%s/%u", host, prefix->len);
    return buf;
}

bool acl_prefix_equal(const struct acl_prefix *a, const struct acl_prefix *b)
{
    return a->family == b->family && a->len == b->len && memcmp(a->addr, b->addr, 16) == 0;
}

/* ---- actions ---- */

static const char *const acl_action_names[] = {
    [ACL_REFUSE] = "refuse",
    [ACL_ALLOW] = "allow",
    [ACL_DENY] = "deny",
};

int acl_action_parse(const char *text, enum acl_action *out)
{
    for (size_t i = 0; i < ACL_COUNT(acl_action_names); i++) {
        if (strcmp(text, acl_action_names[i]) == 0) {
            *out = (enum acl_action)i;
            return 0;
        }
    }
    return BALLAST_EINVAL;
}

const char *acl_action_name(enum acl_action action)
{
    if ((size_t)action < ACL_COUNT(acl_action_names))
        return acl_action_names[action];
    return "?";
}

/* ---- building ---- */

static bool acl_rules_contain(const struct acl_rule *rules, size_t count,
                              const struct acl_prefix *prefix)
{
    for (size_t i = 0; i < count; i++)
        if (acl_prefix_equal(&rules[i].prefix, prefix))
            return true;
    return false;
}

int acl_add(struct acl *acl, const struct acl_prefix *prefix, enum acl_action action)
{
    if (prefix->family != AF_INET && prefix->family != AF_INET6)
        return BALLAST_EINVAL;
    bool v4 = prefix->family == AF_INET;
    struct acl_rule **rules = v4 ? &acl->v4 : &acl->v6;
    size_t *count = v4 ? &acl->v4_count : &acl->v6_count;
    if (acl_rules_contain(*rules, *count, prefix))
        return BALLAST_EEXIST;
    if (acl_rule_count(acl) >= ACL_MAX_RULES)
        return BALLAST_ELIMIT;
    /* Lists are short and built once, so growing by one keeps the code obvious. */
    struct acl_rule *grown = realloc(*rules, (*count + 1) * sizeof(*grown));
    if (grown == NULL)
        return BALLAST_ENOMEM;
    *rules = grown;
    struct acl_rule rule = {.prefix = *prefix, .action = action};
    acl_words(prefix->family, prefix->addr, rule.addr);
    acl_masks(prefix->family, prefix->len, rule.mask);
    /* Insert after every rule at least as long: longest first, then in the order given. */
    size_t at = 0;
    while (at < *count && grown[at].prefix.len >= prefix->len)
        at++;
    memmove(&grown[at + 1], &grown[at], (*count - at) * sizeof(*grown));
    grown[at] = rule;
    (*count)++;
    return 0;
}

static int acl_add_builtins(struct acl *acl, const struct acl_builtin *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct acl_prefix p = {.family = list[i].family, .len = list[i].len};
        memcpy(p.addr, list[i].addr, sizeof(p.addr));
        int rc = acl_add(acl, &p, ACL_ALLOW);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int acl_defaults(struct acl *acl)
{
    return acl_add_builtins(acl, acl_private_ranges, ACL_COUNT(acl_private_ranges));
}

/* ---- checking ---- */

/* The family and words of a client address; IPv4-mapped IPv6 is unwrapped to IPv4.
 * Returns false for families other than IPv4 and IPv6. */
static bool acl_client_words(const struct sockaddr *sa, sa_family_t *family, uint64_t words[2])
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        *family = AF_INET;
        acl_words(AF_INET, (const uint8_t *)&v4->sin_addr, words);
        return true;
    }
    if (sa->sa_family != AF_INET6)
        return false;
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
    const uint8_t *bytes = v6->sin6_addr.s6_addr;
    if (memcmp(bytes, acl_v4_mapped_prefix, sizeof(acl_v4_mapped_prefix)) == 0) {
        *family = AF_INET;
        acl_words(AF_INET, bytes + 12, words);
    } else {
        *family = AF_INET6;
        acl_words(AF_INET6, bytes, words);
    }
    return true;
}

static const struct acl_rule *acl_match(const struct acl_rule *rules, size_t count,
                                        const uint64_t words[2])
{
    for (size_t i = 0; i < count; i++) {
        const struct acl_rule *r = &rules[i];
        if ((words[0] & r->mask[0]) == r->addr[0] && (words[1] & r->mask[1]) == r->addr[1])
            return r;
    }
    return NULL;
}

enum acl_action acl_check(const struct acl *acl, const struct sockaddr *client)
{
    sa_family_t family;
    uint64_t words[2];
    if (!acl_client_words(client, &family, words))
        return ACL_REFUSE;
    const struct acl_rule *rule = family == AF_INET ? acl_match(acl->v4, acl->v4_count, words)
                                                    : acl_match(acl->v6, acl->v6_count, words);
    return rule != NULL ? rule->action : ACL_REFUSE;
}

static bool acl_builtins_match(const struct acl_builtin *list, size_t n, sa_family_t family,
                               const uint64_t words[2])
{
    for (size_t i = 0; i < n; i++) {
        if (list[i].family != family)
            continue;
        uint64_t addr[2], mask[2];
        acl_words(family, list[i].addr, addr);
        acl_masks(family, list[i].len, mask);
        if ((words[0] & mask[0]) == addr[0] && (words[1] & mask[1]) == addr[1])
            return true;
    }
    return false;
}

bool acl_address_is_private(const struct sockaddr *addr)
{
    sa_family_t family;
    uint64_t words[2];
    if (!acl_client_words(addr, &family, words))
        return false;
    return acl_builtins_match(acl_private_ranges, ACL_COUNT(acl_private_ranges), family, words) ||
           acl_builtins_match(acl_unspecified_ranges, ACL_COUNT(acl_unspecified_ranges), family,
                              words);
}
