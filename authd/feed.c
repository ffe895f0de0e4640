/* Health feeds: parsing and validating the JSON document (jansson), checking its detached
 * Ed25519 signature (libsodium), and deciding whether a parsed feed may be applied (generation,
 * age, clock skew, emptiness). Every rejection carries a reason that names the path or limit. */
#include "feed.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <sodium.h>

#include "errors.h"

#define FEED_DEFAULT_MAX_BYTES (16u << 20) /* fits the default member limit (~66 bytes each) */
#define FEED_DEFAULT_MAX_MEMBERS 100000
#define FEED_DEFAULT_MAX_AGE_S 300
#define FEED_DEFAULT_MAX_SKEW_S 60

#define FEED_OWNER_MAX 254  /* presentation form of a name, trailing dot included */
#define FEED_MEMBER_MAX 255 /* pool_member_def.text holds 255 characters */
#define FEED_QUOTE_MAX 48   /* input quoted back in a reason is cut to this */
#define FEED_PATH_MAX 48

void feed_limits_defaults(struct feed_limits *limits)
{
    limits->max_bytes = FEED_DEFAULT_MAX_BYTES;
    limits->max_members = FEED_DEFAULT_MAX_MEMBERS;
    limits->max_age_s = FEED_DEFAULT_MAX_AGE_S;
    limits->max_skew_s = FEED_DEFAULT_MAX_SKEW_S;
}

/* Fill reason (when the caller gave one) and return code, so failures are one statement. The
 * reason is made printable ASCII: it quotes feed bytes and goes to logs, where a newline or
 * escape sequence from a feed must not forge lines. */
__attribute__((format(printf, 4, 5))) static int feed_fail(char *reason, size_t reason_len,
                                                           int code, const char *fmt, ...)
{
    if (reason != NULL && reason_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, reason_len, fmt, ap);
        va_end(ap);
        for (char *p = reason; *p != '\0'; p++) {
            unsigned char c = (unsigned char)*p;
            if (c < 0x20 || c >= 0x7f)
                *p = '?';
        }
    }
    return code;
}

/* Copy untrusted text for a reason, cut to FEED_QUOTE_MAX (feed_fail makes it printable). */
static void feed_quote(const char *text, char *out, size_t out_len)
{
    size_t n = 0;
    for (; text[n] != '\0' && n < FEED_QUOTE_MAX && n + 4 < out_len; n++)
        out[n] = text[n];
    if (text[n] != '\0' && n + 4 <= out_len) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

static const char *feed_json_kind(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

/* Only the documented keys may appear: a misspelt key must not be silently ignored. */
static int feed_reject_unknown_keys(const json_t *object, const char *const *known, size_t count,
                                    const char *prefix, char *reason, size_t reason_len)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value)
    {
        size_t i = 0;
        while (i < count && strcmp(key, known[i]) != 0)
            i++;
        if (i == count) {
            char quoted[FEED_QUOTE_MAX + 4];
            feed_quote(key, quoted, sizeof quoted);
            return feed_fail(reason, reason_len, BALLAST_EPARSE, "%s%s: unknown key", prefix,
                             quoted);
        }
    }
    return 0;
}

static int feed_get(const json_t *object, const char *key, json_type type, const char *prefix,
                    json_t **out, char *reason, size_t reason_len)
{
    json_t *value = json_object_get(object, key);
    if (value == NULL)
        return feed_fail(reason, reason_len, BALLAST_EPARSE, "%s%s: missing key", prefix, key);
    if (json_typeof(value) != type) {
        const char *want = type == JSON_INTEGER  ? "an integer"
                           : type == JSON_STRING ? "a string"
                                                 : "an array";
        return feed_fail(reason, reason_len, BALLAST_EPARSE, "%s%s: must be %s, not %s", prefix,
                         key, want, feed_json_kind(value));
    }
    *out = value;
    return 0;
}

static int feed_get_uint(const json_t *object, const char *key, json_int_t min, uint64_t *out,
                         char *reason, size_t reason_len)
{
    json_t *value;
    int rc = feed_get(object, key, JSON_INTEGER, "", &value, reason, reason_len);
    if (rc != 0)
        return rc;
    json_int_t v = json_integer_value(value);
    if (v < min)
        return feed_fail(reason, reason_len, BALLAST_EPARSE, "%s: must be at least %lld, not %lld",
                         key, (long long)min, (long long)v);
    *out = (uint64_t)v;
    return 0;
}

/* Names and addresses never contain spaces or control characters. */
static bool feed_text_is_clean(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* "owner/TYPE" as pool_def.name spells it; pools exist only for A, AAAA and CNAME (pool.h). */
static int feed_check_pool(const char *pool, const char *path, char *reason, size_t reason_len)
{
    char quoted[FEED_QUOTE_MAX + 4];
    feed_quote(pool, quoted, sizeof quoted);
    const char *slash = strrchr(pool, '/');
    if (slash == NULL || slash == pool)
        return feed_fail(reason, reason_len, BALLAST_EPARSE,
                         "%s.pool: \"%s\" is not \"owner/TYPE\"", path, quoted);
    size_t owner_len = (size_t)(slash - pool);
    if (owner_len > FEED_OWNER_MAX)
        return feed_fail(reason, reason_len, BALLAST_EPARSE,
                         "%s.pool: owner is %zu characters, limit is %d", path, owner_len,
                         FEED_OWNER_MAX);
    if (!feed_text_is_clean(pool, owner_len))
        return feed_fail(reason, reason_len, BALLAST_EPARSE,
                         "%s.pool: owner of \"%s\" contains a space or control character", path,
                         quoted);
    const char *type = slash + 1;
    if (strcmp(type, "A") != 0 && strcmp(type, "AAAA") != 0 && strcmp(type, "CNAME") != 0) {
        char quoted_type[FEED_QUOTE_MAX + 4];
        feed_quote(type, quoted_type, sizeof quoted_type);
        return feed_fail(reason, reason_len, BALLAST_EPARSE,
                         "%s.pool: type \"%s\" is not A, AAAA or CNAME", path, quoted_type);
    }
    return 0;
}

static int feed_check_member(const char *member, const char *path, char *reason, size_t reason_len)
{
    size_t len = strlen(member);
    if (len == 0)
        return feed_fail(reason, reason_len, BALLAST_EPARSE, "%s.member: empty", path);
    if (len > FEED_MEMBER_MAX)
        return feed_fail(reason, reason_len, BALLAST_EPARSE,
                         "%s.member: %zu characters, limit is %d", path, len, FEED_MEMBER_MAX);
    if (!feed_text_is_clean(member, len)) {
        char quoted[FEED_QUOTE_MAX + 4];
        feed_quote(member, quoted, sizeof quoted);
        return feed_fail(reason, reason_len, BALLAST_EPARSE,
                         "%s.member: \"%s\" contains a space or control character", path, quoted);
    }
    return 0;
}

static int feed_parse_state(const char *state, const char *path, enum health_state *out,
                            char *reason, size_t reason_len)
{
    if (strcmp(state, "up") == 0) {
        *out = HEALTH_UP;
        return 0;
    }
    if (strcmp(state, "down") == 0) {
        *out = HEALTH_DOWN;
        return 0;
    }
    char quoted[FEED_QUOTE_MAX + 4];
    feed_quote(state, quoted, sizeof quoted);
    return feed_fail(reason, reason_len, BALLAST_EPARSE,
                     "%s.state: \"%s\" is not \"up\" or \"down\"", path, quoted);
}

static int feed_parse_member(const json_t *item, size_t index, struct feed_entry *entry,
                             char *reason, size_t reason_len)
{
    static const char *const keys[] = {"pool", "member", "state"};
    char path[FEED_PATH_MAX];
    char prefix[FEED_PATH_MAX + 1];
    snprintf(path, sizeof path, "members[%zu]", index);
    snprintf(prefix, sizeof prefix, "%s.", path);
    if (!json_is_object(item))
        return feed_fail(reason, reason_len, BALLAST_EPARSE, "%s: must be an object, not %s", path,
                         feed_json_kind(item));
    int rc = feed_reject_unknown_keys(item, keys, 3, prefix, reason, reason_len);
    json_t *pool, *member, *state;
    if (rc == 0)
        rc = feed_get(item, "pool", JSON_STRING, prefix, &pool, reason, reason_len);
    if (rc == 0)
        rc = feed_get(item, "member", JSON_STRING, prefix, &member, reason, reason_len);
    if (rc == 0)
        rc = feed_get(item, "state", JSON_STRING, prefix, &state, reason, reason_len);
    if (rc == 0)
        rc = feed_check_pool(json_string_value(pool), path, reason, reason_len);
    if (rc == 0)
        rc = feed_check_member(json_string_value(member), path, reason, reason_len);
    if (rc == 0)
        rc = feed_parse_state(json_string_value(state), path, &entry->state, reason, reason_len);
    if (rc != 0)
        return rc;
    entry->pool = strdup(json_string_value(pool));
    entry->member = strdup(json_string_value(member));
    if (entry->pool == NULL || entry->member == NULL)
        return feed_fail(reason, reason_len, BALLAST_ENOMEM, "%s: out of memory", path);
    return 0;
}

struct feed_sort_item {
    const struct feed_entry *entry;
    size_t index;
};

/* Owner names and addresses compare without case (RFC 4343 §3; hex digits of IPv6). */
static int feed_sort_compare(const void *a, const void *b)
{
    const struct feed_sort_item *x = a, *y = b;
    int c = strcasecmp(x->entry->pool, y->entry->pool);
    if (c == 0)
        c = strcasecmp(x->entry->member, y->entry->member);
    if (c == 0)
        c = x->index < y->index ? -1 : x->index > y->index;
    return c;
}

/* The same member twice is ambiguous (which state wins?), so the feed is refused. Sorting keeps
 * this O(n log n) at max-members; the duplicate reported is the first in document order. */
static int feed_reject_duplicates(const struct feed_doc *doc, char *reason, size_t reason_len)
{
    if (doc->count < 2)
        return 0;
    struct feed_sort_item *items = calloc(doc->count, sizeof *items);
    if (items == NULL)
        return feed_fail(reason, reason_len, BALLAST_ENOMEM,
                         "out of memory checking %zu members for duplicates", doc->count);
    for (size_t i = 0; i < doc->count; i++)
        items[i] = (struct feed_sort_item){&doc->entries[i], i};
    qsort(items, doc->count, sizeof *items, feed_sort_compare);
    size_t first = 0, second = SIZE_MAX;
    for (size_t i = 1; i < doc->count; i++) {
        const struct feed_entry *a = items[i - 1].entry, *b = items[i].entry;
        if (strcasecmp(a->pool, b->pool) == 0 && strcasecmp(a->member, b->member) == 0 &&
            items[i].index < second) {
            first = items[i - 1].index;
            second = items[i].index;
        }
    }
    free(items);
    if (second == SIZE_MAX)
        return 0;
    char pool[FEED_QUOTE_MAX + 4], member[FEED_QUOTE_MAX + 4];
    feed_quote(doc->entries[second].pool, pool, sizeof pool);
    feed_quote(doc->entries[second].member, member, sizeof member);
    return feed_fail(reason, reason_len, BALLAST_EPARSE,
                     "members[%zu]: duplicate of members[%zu] (pool \"%s\", member \"%s\")", second,
                     first, pool, member);
}

static int feed_parse_members(const json_t *members, const struct feed_limits *limits,
                              struct feed_doc *doc, char *reason, size_t reason_len)
{
    size_t count = json_array_size(members);
    if (count > limits->max_members)
        return feed_fail(reason, reason_len, BALLAST_ELIMIT,
                         "feed has %zu members, limit is %zu (max-members)", count,
                         limits->max_members);
    if (count == 0)
        return 0; /* parsed; feed_check refuses to apply it */
    doc->entries = calloc(count, sizeof *doc->entries);
    if (doc->entries == NULL)
        return feed_fail(reason, reason_len, BALLAST_ENOMEM, "out of memory for %zu members",
                         count);
    for (size_t i = 0; i < count; i++) {
        doc->count = i + 1; /* so feed_doc_free releases a half-filled entry */
        int rc =
            feed_parse_member(json_array_get(members, i), i, &doc->entries[i], reason, reason_len);
        if (rc != 0)
            return rc;
    }
    return feed_reject_duplicates(doc, reason, reason_len);
}

static int feed_parse_root(const json_t *root, const struct feed_limits *limits,
                           struct feed_doc *doc, char *reason, size_t reason_len)
{
    static const char *const keys[] = {"generation", "timestamp", "members"};
    if (!json_is_object(root))
        return feed_fail(reason, reason_len, BALLAST_EPARSE, "top level: must be an object, not %s",
                         feed_json_kind(root));
    int rc = feed_reject_unknown_keys(root, keys, 3, "", reason, reason_len);
    if (rc == 0)
        rc = feed_get_uint(root, "generation", 1, &doc->generation, reason, reason_len);
    if (rc == 0)
        rc = feed_get_uint(root, "timestamp", 0, &doc->timestamp, reason, reason_len);
    json_t *members;
    if (rc == 0)
        rc = feed_get(root, "members", JSON_ARRAY, "", &members, reason, reason_len);
    if (rc == 0)
        rc = feed_parse_members(members, limits, doc, reason, reason_len);
    return rc;
}

int feed_parse(const char *text, size_t len, const struct feed_limits *limits, struct feed_doc *doc,
               char *reason, size_t reason_len)
{
    struct feed_limits defaults;
    if (limits == NULL) {
        feed_limits_defaults(&defaults);
        limits = &defaults;
    }
    if (doc == NULL || (text == NULL && len > 0))
        return feed_fail(reason, reason_len, BALLAST_EINVAL, "no document");
    memset(doc, 0, sizeof *doc);
    /* Size is checked before any parsing: an oversized input costs nothing (DESIGN.md). */
    if (len > limits->max_bytes)
        return feed_fail(reason, reason_len, BALLAST_ELIMIT,
                         "feed is %zu bytes, limit is %zu (max-size)", len, limits->max_bytes);
    json_error_t error;
    json_t *root = json_loadb(text != NULL ? text : "", len, JSON_REJECT_DUPLICATES, &error);
    if (root == NULL) {
        int code =
            json_error_code(&error) == json_error_out_of_memory ? BALLAST_ENOMEM : BALLAST_EPARSE;
        return feed_fail(reason, reason_len, code, "invalid JSON at line %d, column %d: %s",
                         error.line, error.column, error.text);
    }
    int rc = feed_parse_root(root, limits, doc, reason, reason_len);
    json_decref(root);
    if (rc != 0)
        feed_doc_free(doc);
    return rc;
}

void feed_doc_free(struct feed_doc *doc)
{
    if (doc == NULL)
        return;
    for (size_t i = 0; i < doc->count; i++) {
        free(doc->entries[i].pool);
        free(doc->entries[i].member);
    }
    free(doc->entries);
    memset(doc, 0, sizeof *doc);
}

static bool feed_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Decode base64 (RFC 4648 §4, padded) of exactly out_len bytes, surrounding whitespace ignored.
 * Returns 0, or -1 with *bad_at = offset of the first character that is not base64 (or the
 * trimmed length when the text is valid but of the wrong size). */
static int feed_base64_decode(const char *text, uint8_t *out, size_t out_len, size_t *trimmed_len,
                              size_t *bad_at)
{
    const char *start = text, *stop = text + strlen(text);
    while (start < stop && feed_is_space(*start))
        start++;
    while (stop > start && feed_is_space(stop[-1]))
        stop--;
    size_t n = (size_t)(stop - start);
    *trimmed_len = n;
    *bad_at = n;
    if (n != sodium_base64_encoded_len(out_len, sodium_base64_VARIANT_ORIGINAL) - 1)
        return -1;
    size_t bin_len = 0;
    const char *end = NULL;
    if (sodium_base642bin(out, out_len, start, n, NULL, &bin_len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != stop || bin_len != out_len) {
        *bad_at = end != NULL ? (size_t)(end - start) : 0;
        return -1;
    }
    return 0;
}

int feed_verify(const uint8_t *payload, size_t len, const char *signature_b64,
                const uint8_t public_key[32], char *reason, size_t reason_len)
{
    static const uint8_t empty[1];
    uint8_t signature[crypto_sign_BYTES];
    size_t chars, bad_at;
    if (signature_b64 == NULL || public_key == NULL || (payload == NULL && len > 0))
        return feed_fail(reason, reason_len, BALLAST_EINVAL, "no signature, key or document");
    if (sodium_init() < 0)
        return feed_fail(reason, reason_len, BALLAST_EINVAL, "libsodium failed to initialise");
    if (feed_base64_decode(signature_b64, signature, sizeof signature, &chars, &bad_at) != 0) {
        size_t want = sodium_base64_encoded_len(crypto_sign_BYTES, sodium_base64_VARIANT_ORIGINAL);
        if (chars != want - 1)
            return feed_fail(reason, reason_len, BALLAST_EINVAL,
                             "signature is %zu base64 characters, expected %zu (a %d-byte "
                             "Ed25519 signature)",
                             chars, want - 1, crypto_sign_BYTES);
        return feed_fail(reason, reason_len, BALLAST_EINVAL,
                         "signature is not valid base64 at character %zu", bad_at);
    }
    if (crypto_sign_verify_detached(signature, payload != NULL ? payload : empty, len,
                                    public_key) != 0)
        return feed_fail(reason, reason_len, BALLAST_EINVAL,
                         "Ed25519 signature does not match the %zu-byte feed for the configured "
                         "public key",
                         len);
    return 0;
}

int feed_public_key_parse(const char *text, uint8_t public_key[32])
{
    uint8_t key[crypto_sign_PUBLICKEYBYTES];
    size_t chars, bad_at;
    if (text == NULL || public_key == NULL || sodium_init() < 0)
        return BALLAST_EINVAL;
    if (feed_base64_decode(text, key, sizeof key, &chars, &bad_at) != 0)
        return BALLAST_EINVAL;
    /* A small-order or non-canonical point verifies nothing useful: refuse it at config time. */
    if (!crypto_core_ed25519_is_valid_point(key))
        return BALLAST_EINVAL;
    memcpy(public_key, key, sizeof key);
    return 0;
}

int feed_check(const struct feed_doc *doc, uint64_t last_generation, uint64_t now_s,
               const struct feed_limits *limits, char *reason, size_t reason_len)
{
    struct feed_limits defaults;
    if (limits == NULL) {
        feed_limits_defaults(&defaults);
        limits = &defaults;
    }
    if (doc == NULL)
        return feed_fail(reason, reason_len, BALLAST_EINVAL, "no document");
    /* DESIGN.md "newer state always wins": a delayed fetch of an older feed must never replace
     * a newer one (AWS, October 2025: an old plan applied over a new one emptied a record). */
    if (doc->generation <= last_generation)
        return feed_fail(reason, reason_len, BALLAST_EINVAL,
                         "generation %" PRIu64 " is not newer than the applied %" PRIu64,
                         doc->generation, last_generation);
    if (doc->timestamp < now_s && now_s - doc->timestamp > limits->max_age_s)
        return feed_fail(reason, reason_len, BALLAST_EINVAL,
                         "feed is stale: timestamp %" PRIu64 " is %" PRIu64
                         " s old, limit is %" PRIu64 " s (max-age)",
                         doc->timestamp, now_s - doc->timestamp, limits->max_age_s);
    if (doc->timestamp > now_s && doc->timestamp - now_s > limits->max_skew_s)
        return feed_fail(reason, reason_len, BALLAST_EINVAL,
                         "feed timestamp %" PRIu64 " is %" PRIu64
                         " s in the future, limit is %" PRIu64 " s (max-skew)",
                         doc->timestamp, doc->timestamp - now_s, limits->max_skew_s);
    /* DESIGN.md "never publish an empty answer": an empty feed is a broken producer. */
    if (doc->count == 0)
        return feed_fail(reason, reason_len, BALLAST_EINVAL,
                         "empty feed: generation %" PRIu64 " has no members", doc->generation);
    return 0;
}
