/* Client access control for ballast-resolver: a list of IPv4/IPv6 prefixes, each with an action
 * (allow, refuse, deny); the longest matching prefix decides, and no match means refuse. */
#ifndef BALLAST_ACL_H
#define BALLAST_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Rules in one list; a longer list is a config error (checks are a linear scan). */
#define ACL_MAX_RULES 1024
/* "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128" plus NUL. */
#define ACL_PREFIX_TEXT_MAX 56

enum acl_action {
    ACL_REFUSE = 0, /* answer REFUSED (RFC 1035 §4.1.1 RCODE 5); also the no-match default */
    ACL_ALLOW = 1,  /* serve the query (recursion) */
    ACL_DENY = 2,   /* drop silently, no answer at all */
};

/* An address prefix. IPv4-mapped IPv6 prefixes (::ffff:a.b.c.d/96+n) are stored as IPv4 /n,
 * so one rule covers a client whether it arrives over an IPv4 or a dual-stack IPv6 socket. */
struct acl_prefix {
    sa_family_t family; /* AF_INET or AF_INET6 */
    uint8_t len;        /* prefix length in bits: 0-32 or 0-128 */
    uint8_t addr[16];   /* network byte order (IPv4 in the first 4 bytes); host bits are zero */
};

/* One rule as the check sees it: the address and mask as two 64-bit words, so a match is two
 * AND-compares. IPv4 uses only word 0 (the address in its low 32 bits). */
struct acl_rule {
    uint64_t addr[2];
    uint64_t mask[2];
    struct acl_prefix prefix;
    enum acl_action action;
};

/* Rules per family, each array sorted by prefix length, longest first, so the first match is
 * the longest. The acl owns both arrays. Once built it is only read: acl_check may run on any
 * number of threads at once. */
struct acl {
    struct acl_rule *v4;
    size_t v4_count;
    struct acl_rule *v6;
    size_t v6_count;
};

/* An empty list (everything refused). */
void acl_init(struct acl *acl);
/* Free the rules and leave acl empty (acl_init state); safe to call twice. */
void acl_free(struct acl *acl);

/* Add the default rules: allow 127.0.0.0/8, ::1/128, 10.0.0.0/8, 172.16.0.0/12,
 * 192.168.0.0/16, 169.254.0.0/16, fc00::/7 and fe80::/10 (loopback, RFC 1918 private, link-local,
 * RFC 4193 unique local); everything else falls to the refuse default. acl must be empty.
 * Returns 0 or BALLAST_ENOMEM. */
int acl_defaults(struct acl *acl);

/* Parse "ADDR/LEN" or a bare "ADDR" (= /32 or /128). On error returns BALLAST_EINVAL and writes
 * a reason (naming the text) to reason: not an address, a length out of range, or host bits set
 * beyond the length ("did you mean 10.0.0.0/8?"). */
int acl_prefix_parse(const char *text, struct acl_prefix *out, char *reason, size_t reason_len);
/* Canonical text: "10.0.0.0/8", "fd00::/8". Returns buf. */
const char *acl_prefix_format(const struct acl_prefix *prefix, char *buf, size_t buf_len);
bool acl_prefix_equal(const struct acl_prefix *a, const struct acl_prefix *b);

/* "allow", "refuse" or "deny"; returns 0 or BALLAST_EINVAL. */
int acl_action_parse(const char *text, enum acl_action *out);
const char *acl_action_name(enum acl_action action);

/* Add a rule. Returns 0, BALLAST_EEXIST if the same prefix is already listed (whatever its
 * action), BALLAST_ELIMIT past ACL_MAX_RULES, or BALLAST_ENOMEM. */
int acl_add(struct acl *acl, const struct acl_prefix *prefix, enum acl_action action);
size_t acl_rule_count(const struct acl *acl);

/* The action for a client address: the longest matching prefix's, else ACL_REFUSE. IPv4-mapped
 * IPv6 addresses are checked against the IPv4 rules; other families are refused. Pure read. */
enum acl_action acl_check(const struct acl *acl, const struct sockaddr *client);

/* Is addr one that a resolver must not query unless told to (allow-private-upstreams): the
 * default-allowed ranges above plus the unspecified 0.0.0.0/8 and ::/128 (IPv4-mapped included)? */
bool acl_address_is_private(const struct sockaddr *addr);

#endif
