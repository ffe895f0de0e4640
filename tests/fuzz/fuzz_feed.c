/* libFuzzer harness: any bytes as a health feed. The input is DOCUMENT [NUL SIGNATURE]: the
 * document goes to feed_parse() (small limits) and, when parsed, to feed_check() at a fixed time
 * and onto a fixed list of pool members (health_member_feed(), health_pool_apply()); the
 * signature text goes to feed_verify() over the document with the test key
 * (tests/unit/data/feed/key.pub) and to feed_public_key_parse(). Build: docs/fuzzing.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "feed.h"
#include "fuzz_util.h"
#include "health.h"

#define FUZZ_NOW_S 1763900010u /* 10 s after the timestamp of the seed documents */
#define FUZZ_LAST_GENERATION 41u
#define FUZZ_VALID_MS 60000u
#define FUZZ_SIGNATURE_MAX 1024 /* longer signature texts are cut, as the daemon's fetch does */
#define FUZZ_TEST_KEY "gvrFYeminxDoSdXBTYe7FPwF9Itdqar3lbeOOC6+DYw="

/* The members a feed can name (those of tests/unit/data/feed/good.json and one more). */
static const struct {
    const char *pool;
    const char *member;
} fuzz_members[] = {
    {"api.example.test/A", "192.0.2.10"},      {"api.example.test/A", "192.0.2.11"},
    {"api.example.test/A", "192.0.2.12"},      {"api.example.test/A", "192.0.2.13"},
    {"api.example.test/AAAA", "2001:db8::10"}, {"www.example.test/CNAME", "eu.api.example.test."},
};
#define FUZZ_MEMBER_COUNT (sizeof fuzz_members / sizeof fuzz_members[0])

static struct feed_limits fuzz_limits;
static uint8_t fuzz_key[32];

static void fuzz_init(void)
{
    feed_limits_defaults(&fuzz_limits);
    fuzz_limits.max_bytes = 64u << 10;
    fuzz_limits.max_members = 1000;
    if (feed_public_key_parse(FUZZ_TEST_KEY, fuzz_key) != 0)
        abort();
}

/* Apply the document's entries to fresh members and run velocity control over each pool (the
 * members of one pool are adjacent in fuzz_members). */
static void fuzz_apply(const struct feed_doc *doc)
{
    struct health_params params;
    struct health_member members[FUZZ_MEMBER_COUNT];
    bool serving[FUZZ_MEMBER_COUNT];
    uint64_t now_ms = (uint64_t)FUZZ_NOW_S * 1000;
    health_params_defaults(&params);
    for (size_t m = 0; m < FUZZ_MEMBER_COUNT; m++) {
        health_member_init(&members[m], &params, now_ms);
        serving[m] = true;
    }
    for (size_t i = 0; i < doc->count; i++)
        for (size_t m = 0; m < FUZZ_MEMBER_COUNT; m++)
            if (strcmp(doc->entries[i].pool, fuzz_members[m].pool) == 0 &&
                strcmp(doc->entries[i].member, fuzz_members[m].member) == 0)
                health_member_feed(&members[m], doc->entries[i].state, FUZZ_VALID_MS, now_ms);
    for (size_t start = 0; start < FUZZ_MEMBER_COUNT;) {
        size_t end = start + 1;
        while (end < FUZZ_MEMBER_COUNT &&
               strcmp(fuzz_members[end].pool, fuzz_members[start].pool) == 0)
            end++;
        struct health_velocity velocity;
        health_velocity_init(&velocity, 0.25, 10000);
        size_t changed =
            health_pool_apply(&velocity, members + start, serving + start, end - start, now_ms);
        FUZZ_CHECK(changed <= end - start);
        /* a quarter of a pool at most, and at least one member, per interval */
        size_t withdrawn = 0;
        for (size_t m = start; m < end; m++)
            withdrawn += !serving[m];
        FUZZ_CHECK(withdrawn <= ((end - start) / 4 > 1 ? (end - start) / 4 : 1));
        start = end;
    }
}

static void fuzz_document(const char *text, size_t len)
{
    struct feed_doc doc;
    char reason[FEED_REASON_MAX];
    reason[0] = '\0';
    int rc = feed_parse(text, len, &fuzz_limits, &doc, reason, sizeof reason);
    if (rc != 0) {
        FUZZ_CHECK(rc == BALLAST_EPARSE || rc == BALLAST_ELIMIT);
        FUZZ_CHECK(reason[0] != '\0');
        return;
    }
    FUZZ_CHECK(doc.count <= fuzz_limits.max_members);
    for (size_t i = 0; i < doc.count; i++) {
        FUZZ_CHECK(doc.entries[i].pool != NULL && doc.entries[i].member != NULL);
        FUZZ_CHECK(doc.entries[i].state == HEALTH_UP || doc.entries[i].state == HEALTH_DOWN);
    }
    if (feed_check(&doc, FUZZ_LAST_GENERATION, FUZZ_NOW_S, &fuzz_limits, reason, sizeof reason) ==
        0)
        fuzz_apply(&doc);
    else
        FUZZ_CHECK(reason[0] != '\0');
    feed_doc_free(&doc);
}

static void fuzz_signature(const uint8_t *payload, size_t len, const uint8_t *sig, size_t sig_len)
{
    char text[FUZZ_SIGNATURE_MAX + 1];
    char reason[FEED_REASON_MAX];
    uint8_t key[32];
    if (sig_len > FUZZ_SIGNATURE_MAX)
        sig_len = FUZZ_SIGNATURE_MAX;
    memcpy(text, sig, sig_len);
    text[sig_len] = '\0';
    int rc = feed_verify(payload, len, text, fuzz_key, reason, sizeof reason);
    FUZZ_CHECK(rc == 0 || rc == BALLAST_EINVAL);
    rc = feed_public_key_parse(text, key);
    FUZZ_CHECK(rc == 0 || rc == BALLAST_EINVAL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_limits.max_bytes == 0)
        fuzz_init();
    const uint8_t *nul = memchr(data, 0, size);
    size_t doc_len = nul ? (size_t)(nul - data) : size;
    fuzz_document((const char *)data, doc_len);
    if (nul != NULL)
        fuzz_signature(data, doc_len, nul + 1, size - doc_len - 1);
    return 0;
}
