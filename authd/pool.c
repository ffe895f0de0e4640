/* Pools: which members answer (best priority level with enough serving members, never empty:
 * fail open or last healthy set) as an immutable pool_answer, and the per-query pick from it
 * (weighted sampling without replacement, a maximum number of records, rotation). */
#include "pool.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "wire.h"

/* The arrays of an answer: one allocation holds the struct, weights, member indexes and data, so
 * an answer is freed in one call (and retired in one RCU callback). */
struct pool_answer_arrays {
    uint16_t *weights;
    uint16_t *member_index;
    uint8_t *data;
};

static uint16_t pool_weight(const struct pool_member_def *member)
{
    return member->weight > 0 ? member->weight : 1;
}

static struct pool_answer *pool_answer_alloc(size_t count, size_t data_len,
                                             struct pool_answer_arrays *arrays)
{
    size_t header = sizeof(struct pool_answer);
    size_t arrays_len = 2 * count * sizeof(uint16_t);
    uint8_t *mem = malloc(header + arrays_len + data_len);
    if (mem == NULL)
        return NULL;
    memset(mem, 0, header);
    arrays->weights = (uint16_t *)(mem + header);
    arrays->member_index = arrays->weights + count;
    arrays->data = mem + header + arrays_len;
    struct pool_answer *answer = (struct pool_answer *)mem;
    answer->weights = arrays->weights;
    answer->member_index = arrays->member_index;
    answer->data = arrays->data;
    return answer;
}

/* Build an answer from the members whose index is listed in chosen[0..n). */
static int pool_answer_from_members(const struct pool_def *def, const uint16_t *chosen, size_t n,
                                    uint16_t level, bool fail_open, struct pool_answer **out)
{
    size_t data_len = 0;
    for (size_t i = 0; i < n; i++)
        data_len += 2 + def->members[chosen[i]].rdlen;
    struct pool_answer_arrays arrays;
    struct pool_answer *answer = pool_answer_alloc(n, data_len, &arrays);
    if (answer == NULL)
        return BALLAST_ENOMEM;
    size_t at = 0;
    uint32_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct pool_member_def *member = &def->members[chosen[i]];
        arrays.member_index[i] = chosen[i];
        arrays.weights[i] = pool_weight(member);
        total += arrays.weights[i];
        arrays.data[at] = (uint8_t)(member->rdlen >> 8);
        arrays.data[at + 1] = (uint8_t)member->rdlen;
        memcpy(arrays.data + at + 2, member->rdata, member->rdlen);
        at += 2 + member->rdlen;
    }
    answer->ttl = def->ttl;
    answer->type = def->type;
    answer->count = (uint16_t)n;
    answer->max_records =
        def->max_records == 0 || def->max_records >= n ? (uint16_t)n : (uint16_t)def->max_records;
    answer->level = level;
    answer->fail_open = fail_open;
    answer->total_weight = total;
    answer->data_len = (uint32_t)data_len;
    *out = answer;
    return BALLAST_OK;
}

/* Can previous serve as the last healthy set of def? It must be a healthy set (or a copy of
 * one), not all members, and still fit def (a reload may have changed the pool). */
static bool pool_previous_usable(const struct pool_def *def, const struct pool_answer *previous)
{
    if (previous == NULL || previous->count == 0 || previous->type != def->type)
        return false;
    if (previous->fail_open && !previous->last_healthy)
        return false;
    for (size_t i = 0; i < previous->count; i++)
        if (previous->member_index[i] >= def->count)
            return false;
    return true;
}

/* A copy of previous (the last healthy set), re-owned by the caller. */
static int pool_answer_copy(const struct pool_answer *previous, struct pool_answer **out)
{
    struct pool_answer_arrays arrays;
    struct pool_answer *answer = pool_answer_alloc(previous->count, previous->data_len, &arrays);
    if (answer == NULL)
        return BALLAST_ENOMEM;
    memcpy(arrays.weights, previous->weights, previous->count * sizeof(uint16_t));
    memcpy(arrays.member_index, previous->member_index, previous->count * sizeof(uint16_t));
    memcpy(arrays.data, previous->data, previous->data_len);
    answer->ttl = previous->ttl;
    answer->type = previous->type;
    answer->count = previous->count;
    answer->max_records = previous->max_records;
    answer->level = previous->level;
    answer->fail_open = true;
    answer->last_healthy = true;
    answer->total_weight = previous->total_weight;
    answer->data_len = previous->data_len;
    *out = answer;
    return BALLAST_OK;
}

/* Serving members at one priority level, written to chosen (in definition order). */
static size_t pool_level_serving(const struct pool_def *def, const bool *serving, uint16_t level,
                                 uint16_t *chosen)
{
    size_t n = 0;
    for (size_t i = 0; i < def->count; i++)
        if (def->members[i].priority == level && serving[i])
            chosen[n++] = (uint16_t)i;
    return n;
}

/* The lowest priority above `after` (or the lowest at all when first); false when none. */
static bool pool_next_level(const struct pool_def *def, bool first, uint16_t after, uint16_t *level)
{
    bool found = false;
    for (size_t i = 0; i < def->count; i++) {
        uint16_t priority = def->members[i].priority;
        if ((first || priority > after) && (!found || priority < *level)) {
            *level = priority;
            found = true;
        }
    }
    return found;
}

/* Rules 1 and 2: the first level with min_healthy serving members, else the first with any.
 * Returns the number of members written to chosen (0: nobody serves). */
static size_t pool_choose_level(const struct pool_def *def, const bool *serving, uint16_t *chosen,
                                uint16_t *level_out)
{
    uint32_t needed = def->min_healthy > 0 ? def->min_healthy : 1;
    size_t fallback_n = 0;
    uint16_t fallback_level = 0;
    uint16_t level = 0;
    for (bool first = true; pool_next_level(def, first, level, &level); first = false) {
        size_t n = pool_level_serving(def, serving, level, chosen);
        if (n >= needed) {
            *level_out = level;
            return n;
        }
        if (n > 0 && fallback_n == 0) {
            fallback_n = n;
            fallback_level = level;
        }
    }
    if (fallback_n == 0)
        return 0;
    *level_out = fallback_level;
    return pool_level_serving(def, serving, fallback_level, chosen);
}

int pool_build_answer(const struct pool_def *def, const bool *serving,
                      const struct pool_answer *previous, struct pool_answer **out)
{
    *out = NULL;
    if (def->count == 0 || def->count > POOL_MAX_MEMBERS)
        return BALLAST_EINVAL;
    uint16_t *chosen = malloc(def->count * sizeof *chosen);
    if (chosen == NULL)
        return BALLAST_ENOMEM;
    uint16_t level = 0;
    size_t n = pool_choose_level(def, serving, chosen, &level);
    int rc;
    if (n > 0) {
        rc = pool_answer_from_members(def, chosen, n, level, false, out);
    } else if (def->empty_mode == POOL_LAST_HEALTHY && pool_previous_usable(def, previous)) {
        rc = pool_answer_copy(previous, out);
    } else if (def->empty_mode == POOL_FAIL_CLOSED) {
        rc = pool_answer_from_members(def, chosen, 0, 0, false, out);
    } else {
        /* Rule 3, fail open: an empty answer would take the name down for every client. */
        for (size_t i = 0; i < def->count; i++)
            chosen[i] = (uint16_t)i;
        pool_next_level(def, true, 0, &level);
        rc = pool_answer_from_members(def, chosen, def->count, level, true, out);
    }
    free(chosen);
    return rc;
}

void pool_answer_free(struct pool_answer *answer)
{
    free(answer);
}

/* splitmix64: a small, well-mixed generator so picks are reproducible from the seed. */
static uint64_t pool_random_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static size_t pool_record_size(const uint8_t *data, size_t at)
{
    return 2 + (((size_t)data[at] << 8) | data[at + 1]);
}

/* All records, starting at record `first` and wrapping around. */
static size_t pool_pick_rotated(const struct pool_answer *answer, size_t first, uint8_t *buf)
{
    size_t at = 0;
    for (size_t i = 0; i < first; i++)
        at += pool_record_size(answer->data, at);
    size_t tail = answer->data_len - at;
    memcpy(buf, answer->data + at, tail);
    memcpy(buf + tail, answer->data, at);
    return answer->data_len;
}

static uint64_t pool_pick_weight(const struct pool_answer *answer, size_t i)
{
    return answer->weights[i] > 0 ? answer->weights[i] : 1;
}

/* Weighted sampling without replacement of `want` (< count) records; each pick is one pass over
 * the records, so a query allocates nothing (pools are small, want smaller). */
static size_t pool_pick_weighted(const struct pool_answer *answer, size_t want, uint64_t state,
                                 uint8_t *buf)
{
    uint8_t taken[(POOL_MAX_MEMBERS + 7) / 8] = {0};
    uint64_t remaining = 0;
    for (size_t i = 0; i < answer->count; i++)
        remaining += pool_pick_weight(answer, i);
    size_t out_len = 0;
    for (size_t picked = 0; picked < want; picked++) {
        uint64_t target = pool_random_next(&state) % remaining;
        size_t at = 0;
        size_t i = 0;
        for (;; i++) {
            size_t size = pool_record_size(answer->data, at);
            if (!(taken[i / 8] & (1u << (i % 8)))) {
                uint64_t weight = pool_pick_weight(answer, i);
                if (target < weight) {
                    memcpy(buf + out_len, answer->data + at, size);
                    out_len += size;
                    break;
                }
                target -= weight;
            }
            at += size;
        }
        taken[i / 8] |= (uint8_t)(1u << (i % 8));
        remaining -= pool_pick_weight(answer, i);
    }
    return out_len;
}

int pool_answer_pick(const struct pool_answer *answer, uint32_t seed, uint8_t *buf, size_t buf_len,
                     struct zone_rrset *out)
{
    if (buf_len < answer->data_len)
        return BALLAST_ESPACE;
    size_t count = answer->count;
    size_t want = answer->max_records;
    out->type = answer->type;
    out->ttl = answer->ttl;
    out->data = buf;
    if (count == 0) {
        out->count = 0;
        out->data_len = 0;
        return BALLAST_OK;
    }
    if (want == 0 || want >= count) {
        out->count = (uint16_t)count;
        out->data_len = (uint32_t)pool_pick_rotated(answer, seed % count, buf);
    } else {
        out->count = (uint16_t)want;
        out->data_len = (uint32_t)pool_pick_weighted(answer, want, seed, buf);
    }
    return BALLAST_OK;
}

int pool_member_parse(uint16_t type, const char *text, struct pool_member_def *out)
{
    memset(out, 0, sizeof *out);
    out->weight = 1;
    if (text == NULL)
        return BALLAST_EINVAL;
    size_t text_len = strlen(text);
    if (text_len == 0 || text_len >= sizeof out->text)
        return BALLAST_EINVAL;
    memcpy(out->text, text, text_len + 1);
    if (type == WIRE_TYPE_A) {
        if (inet_pton(AF_INET, text, out->rdata) != 1)
            return BALLAST_EINVAL;
        out->rdlen = 4;
    } else if (type == WIRE_TYPE_AAAA) {
        if (inet_pton(AF_INET6, text, out->rdata) != 1)
            return BALLAST_EINVAL;
        out->rdlen = 16;
    } else if (type == WIRE_TYPE_CNAME) {
        uint8_t name[WIRE_NAME_MAX];
        size_t len = 0;
        if (wire_name_from_text(text, name, &len) != BALLAST_OK)
            return BALLAST_EINVAL;
        wire_name_lower(out->rdata, name, len);
        out->rdlen = (uint16_t)len;
    } else {
        return BALLAST_EINVAL;
    }
    return BALLAST_OK;
}

void pool_def_free(struct pool_def *def)
{
    if (def == NULL)
        return;
    free(def->name);
    free(def->members);
    def->name = NULL;
    def->members = NULL;
    def->count = 0;
}
