/* Config files: reads YAML with libyaml's event API into a tree of config_node (each node and
 * map key knows its file and line), rejects what a config must not contain (aliases, duplicate
 * keys, oversized files), reads typed values with range-checked errors, and schema helpers. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "addr.h"
#include "daemon.h"
#include "errors.h"
#include "limit.h"

/* Deeper nesting than this is never needed by a Ballast config; the cap keeps tree walks
 * (free, duplicate check) bounded. */
#define CONFIG_MAX_DEPTH 64

/* One open collection while the tree is built. */
struct config_frame {
    struct config_node *node;
    size_t capacity;
    char *key; /* CONFIG_MAP: key waiting for its value */
    unsigned key_line;
};

struct config_builder {
    const char *file; /* shared with every node */
    struct config_node *root;
    struct config_frame stack[CONFIG_MAX_DEPTH];
    size_t depth;
    unsigned documents;
    struct config_error *err;
};

static void config_set_error(struct config_error *err, const char *file, unsigned line,
                             const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void config_set_error(struct config_error *err, const char *file, unsigned line,
                             const char *fmt, ...)
{
    if (err == NULL)
        return;
    if (file != NULL)
        snprintf(err->file, sizeof(err->file), "%s", file);
    err->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
    va_end(ap);
}

static int config_vfail(struct config_error *err, const struct config_node *node, const char *fmt,
                        va_list ap)
{
    if (err == NULL)
        return BALLAST_EINVAL;
    /* Without a node the caller's err->file is kept: it knows which file it was reading. */
    if (node != NULL)
        snprintf(err->file, sizeof(err->file), "%s", node->file ? node->file : "");
    err->line = node != NULL ? node->line : 0;
    vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
    return BALLAST_EINVAL;
}

int config_fail(struct config_error *err, const struct config_node *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = config_vfail(err, node, fmt, ap);
    va_end(ap);
    return rc;
}

int config_fail_or_cmdline(struct config_error *err, const struct config_node *node,
                           const char *fmt, ...)
{
    if (err != NULL && node == NULL)
        snprintf(err->file, sizeof(err->file), "%s", CONFIG_CMDLINE);
    va_list ap;
    va_start(ap, fmt);
    int rc = config_vfail(err, node, fmt, ap);
    va_end(ap);
    return rc;
}

int config_nomem(struct config_error *err, const struct config_node *node)
{
    config_fail_or_cmdline(err, node, "out of memory");
    return BALLAST_ENOMEM;
}

int config_name_key(struct config_error *err, const char *key, int rc)
{
    if (err == NULL)
        return rc;
    char reason[sizeof(err->reason)];
    memcpy(reason, err->reason, sizeof(reason));
    /* A reason cut short at 511 bytes is acceptable; checking the length says so. */
    if (snprintf(err->reason, sizeof(err->reason), "%s: %s", key, reason) < 0)
        err->reason[0] = '\0';
    return rc;
}

const char *config_error_text(const struct config_error *err, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    if (err->file[0] == '\0')
        snprintf(buf, len, "%s", err->reason);
    else if (err->line > 0)
        snprintf(buf, len, "%s:%u: %s", err->file, err->line, err->reason);
    else
        snprintf(buf, len, "%s: %s", err->file, err->reason);
    return buf;
}

static const char *config_kind_name(enum config_kind kind)
{
    switch (kind) {
    case CONFIG_SCALAR:
        return "a scalar";
    case CONFIG_MAP:
        return "a map";
    case CONFIG_LIST:
        return "a list";
    }
    return "?";
}

/* ---- tree ---- */

static void config_node_free(struct config_node *node)
{
    if (node == NULL)
        return;
    free(node->scalar);
    for (size_t i = 0; i < node->count; i++) {
        if (node->keys != NULL)
            free(node->keys[i]);
        config_node_free(node->values[i]);
    }
    free(node->keys);
    free(node->key_lines);
    free(node->values);
    free(node);
}

void config_free(struct config_node *root)
{
    if (root == NULL)
        return;
    char *file = (char *)root->file;
    config_node_free(root);
    free(file);
}

static struct config_node *config_node_new(enum config_kind kind, const char *file, unsigned line)
{
    struct config_node *node = calloc(1, sizeof(*node));
    if (node == NULL)
        return NULL;
    node->kind = kind;
    node->file = file;
    node->line = line;
    return node;
}

/* Make room for one more child of the collection in frame. */
static int config_frame_reserve(struct config_frame *frame)
{
    struct config_node *node = frame->node;
    if (node->count < frame->capacity)
        return 0;
    size_t capacity = frame->capacity ? frame->capacity * 2 : 4;
    struct config_node **values = realloc(node->values, capacity * sizeof(*values));
    if (values == NULL)
        return BALLAST_ENOMEM;
    node->values = values;
    if (node->kind == CONFIG_MAP) {
        char **keys = realloc(node->keys, capacity * sizeof(*keys));
        if (keys == NULL)
            return BALLAST_ENOMEM;
        node->keys = keys;
        unsigned *lines = realloc(node->key_lines, capacity * sizeof(*lines));
        if (lines == NULL)
            return BALLAST_ENOMEM;
        node->key_lines = lines;
    }
    frame->capacity = capacity;
    return 0;
}

/* ---- building from libyaml events ---- */

static unsigned config_mark_line(const yaml_mark_t *mark)
{
    return (unsigned)mark->line + 1;
}

static int config_build_fail(struct config_builder *b, unsigned line, const char *reason,
                             const char *detail)
{
    config_set_error(b->err, b->file, line, "%s%s", reason, detail ? detail : "");
    return BALLAST_EINVAL;
}

/* Attach a finished scalar or a just-opened collection to the open collection on top. */
static int config_attach(struct config_builder *b, struct config_node *node)
{
    if (b->depth == 0) {
        if (b->root != NULL) {
            unsigned line = node->line;
            config_node_free(node);
            return config_build_fail(b, line, "more than one top-level node", NULL);
        }
        b->root = node;
        return 0;
    }
    struct config_frame *frame = &b->stack[b->depth - 1];
    struct config_node *parent = frame->node;
    if (parent->kind == CONFIG_MAP && frame->key == NULL) {
        if (node->kind != CONFIG_SCALAR) {
            unsigned line = node->line;
            config_node_free(node);
            return config_build_fail(b, line, "map keys must be plain strings", NULL);
        }
        frame->key = node->scalar;
        frame->key_line = node->line;
        node->scalar = NULL;
        config_node_free(node);
        return 0;
    }
    if (config_frame_reserve(frame) != 0) {
        config_node_free(node);
        return BALLAST_ENOMEM;
    }
    if (parent->kind == CONFIG_MAP) {
        parent->keys[parent->count] = frame->key;
        parent->key_lines[parent->count] = frame->key_line;
        frame->key = NULL;
    }
    parent->values[parent->count++] = node;
    return 0;
}

static int config_on_scalar(struct config_builder *b, const yaml_event_t *event)
{
    unsigned line = config_mark_line(&event->start_mark);
    size_t len = event->data.scalar.length;
    if (memchr(event->data.scalar.value, '\0', len) != NULL)
        return config_build_fail(b, line, "NUL character in a value", NULL);
    struct config_node *node = config_node_new(CONFIG_SCALAR, b->file, line);
    if (node == NULL)
        return BALLAST_ENOMEM;
    node->scalar = strndup((const char *)event->data.scalar.value, len);
    if (node->scalar == NULL) {
        free(node);
        return BALLAST_ENOMEM;
    }
    /* A document that is only "---" (a null) counts as empty: an empty map. */
    bool is_null = len == 0 && event->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                   event->data.scalar.tag == NULL;
    if (b->depth == 0 && is_null) {
        free(node->scalar);
        node->scalar = NULL;
        node->kind = CONFIG_MAP;
    }
    return config_attach(b, node);
}

static int config_on_collection_start(struct config_builder *b, const yaml_event_t *event,
                                      enum config_kind kind)
{
    unsigned line = config_mark_line(&event->start_mark);
    if (b->depth == CONFIG_MAX_DEPTH) {
        config_set_error(b->err, b->file, line, "nesting deeper than %d levels", CONFIG_MAX_DEPTH);
        return BALLAST_ELIMIT;
    }
    struct config_node *node = config_node_new(kind, b->file, line);
    if (node == NULL)
        return BALLAST_ENOMEM;
    int rc = config_attach(b, node);
    if (rc != 0)
        return rc;
    b->stack[b->depth++] = (struct config_frame){.node = node};
    return 0;
}

static const yaml_char_t *config_event_anchor(const yaml_event_t *event)
{
    switch (event->type) {
    case YAML_SCALAR_EVENT:
        return event->data.scalar.anchor;
    case YAML_SEQUENCE_START_EVENT:
        return event->data.sequence_start.anchor;
    case YAML_MAPPING_START_EVENT:
        return event->data.mapping_start.anchor;
    default:
        return NULL;
    }
}

static int config_on_event(struct config_builder *b, const yaml_event_t *event)
{
    unsigned line = config_mark_line(&event->start_mark);
    const yaml_char_t *anchor = config_event_anchor(event);
    if (anchor != NULL) {
        config_set_error(b->err, b->file, line, "anchors and aliases are not allowed ('&%s')",
                         (const char *)anchor);
        return BALLAST_EINVAL;
    }
    switch (event->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (b->documents++ > 0)
            return config_build_fail(b, line, "only one YAML document is allowed", NULL);
        return 0;
    case YAML_ALIAS_EVENT:
        config_set_error(b->err, b->file, line, "anchors and aliases are not allowed ('*%s')",
                         (const char *)event->data.alias.anchor);
        return BALLAST_EINVAL;
    case YAML_SCALAR_EVENT:
        return config_on_scalar(b, event);
    case YAML_SEQUENCE_START_EVENT:
        return config_on_collection_start(b, event, CONFIG_LIST);
    case YAML_MAPPING_START_EVENT:
        return config_on_collection_start(b, event, CONFIG_MAP);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (b->depth > 0)
            b->depth--;
        return 0;
    default:
        return 0;
    }
}

/* Line of the byte at offset (reader errors carry an offset, not a mark). */
static unsigned config_offset_line(const char *text, size_t len, size_t offset)
{
    unsigned line = 1;
    for (size_t i = 0; i < offset && i < len; i++)
        if (text[i] == '\n')
            line++;
    return line;
}

static int config_syntax_error(struct config_builder *b, const yaml_parser_t *parser,
                               const char *text, size_t len)
{
    if (parser->error == YAML_MEMORY_ERROR) {
        config_set_error(b->err, b->file, 0, "out of memory");
        return BALLAST_ENOMEM;
    }
    const char *problem = parser->problem ? parser->problem : "unknown error";
    unsigned line;
    if (parser->error == YAML_READER_ERROR)
        line = config_offset_line(text, len, parser->problem_offset);
    else
        line = config_mark_line(&parser->problem_mark);
    unsigned context_line = config_mark_line(&parser->context_mark);
    /* libyaml often notices a problem a line after its cause; the context says where it began. */
    if (parser->context != NULL && parser->error != YAML_READER_ERROR && context_line != line)
        config_set_error(b->err, b->file, line, "YAML syntax error: %s (%s at line %u)", problem,
                         parser->context, context_line);
    else if (parser->context != NULL)
        config_set_error(b->err, b->file, line, "YAML syntax error: %s (%s)", problem,
                         parser->context);
    else
        config_set_error(b->err, b->file, line, "YAML syntax error: %s", problem);
    return BALLAST_EPARSE;
}

/* ---- duplicate keys ---- */

struct config_name_ref {
    const char *name;
    size_t index;
};

static int config_name_ref_cmp(const void *a, const void *b)
{
    const struct config_name_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

int config_find_duplicate(const void *items, size_t count,
                          const char *(*name_at)(const void *items, size_t index), size_t *second,
                          size_t *first)
{
    if (count < 2)
        return 0;
    struct config_name_ref *refs = malloc(count * sizeof(*refs));
    if (refs == NULL)
        return BALLAST_ENOMEM;
    for (size_t i = 0; i < count; i++)
        refs[i] = (struct config_name_ref){.name = name_at(items, i), .index = i};
    qsort(refs, count, sizeof(*refs), config_name_ref_cmp);
    int found = 0;
    for (size_t i = 1; i < count; i++) {
        if (strcmp(refs[i - 1].name, refs[i].name) != 0)
            continue;
        /* refs[i-1] is the first occurrence only when it starts its run of equal names. */
        if (i >= 2 && strcmp(refs[i - 2].name, refs[i].name) == 0)
            continue;
        if (!found || refs[i].index < *second) {
            *second = refs[i].index;
            if (first != NULL)
                *first = refs[i - 1].index;
            found = 1;
        }
    }
    free(refs);
    return found;
}

static const char *config_map_key_at(const void *map, size_t index)
{
    return ((const struct config_node *)map)->keys[index];
}

struct config_duplicate {
    const struct config_node *map;
    size_t second, first;
};

/* Walk the tree and keep the duplicate key with the smallest line, so the error names the
 * first problem a reader meets in the file. */
static int config_find_duplicates(const struct config_node *node, struct config_duplicate *best)
{
    if (node->kind == CONFIG_SCALAR)
        return 0;
    if (node->kind == CONFIG_MAP) {
        size_t second = 0, first = 0;
        int rc = config_find_duplicate(node, node->count, config_map_key_at, &second, &first);
        if (rc < 0)
            return rc;
        if (rc > 0 &&
            (best->map == NULL || node->key_lines[second] < best->map->key_lines[best->second])) {
            *best = (struct config_duplicate){.map = node, .second = second, .first = first};
        }
    }
    for (size_t i = 0; i < node->count; i++) {
        int rc = config_find_duplicates(node->values[i], best);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int config_check_duplicates(struct config_builder *b)
{
    struct config_duplicate best = {0};
    int rc = config_find_duplicates(b->root, &best);
    if (rc < 0)
        return rc;
    if (best.map == NULL)
        return 0;
    config_set_error(b->err, b->file, best.map->key_lines[best.second],
                     "duplicate key '%s' (first at line %u)", best.map->keys[best.second],
                     best.map->key_lines[best.first]);
    return BALLAST_EINVAL;
}

/* ---- parsing ---- */

static void config_builder_cleanup(struct config_builder *b)
{
    for (size_t i = 0; i < b->depth; i++)
        free(b->stack[i].key);
    b->depth = 0;
    config_node_free(b->root);
    b->root = NULL;
}

static int config_build(struct config_builder *b, const char *text, size_t len)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        config_set_error(b->err, b->file, 0, "out of memory");
        return BALLAST_ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = 0;
    for (;;) {
        yaml_event_t event;
        if (!yaml_parser_parse(&parser, &event)) {
            rc = config_syntax_error(b, &parser, text, len);
            break;
        }
        rc = config_on_event(b, &event);
        bool done = event.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&event);
        if (rc == BALLAST_ENOMEM)
            config_set_error(b->err, b->file, 0, "out of memory");
        if (rc != 0 || done)
            break;
    }
    yaml_parser_delete(&parser);
    return rc;
}

int config_parse_string(const char *name, const char *text, size_t len, struct config_node **out,
                        struct config_error *err)
{
    *out = NULL;
    char *file = strdup(name);
    if (file == NULL) {
        config_set_error(err, name, 0, "out of memory");
        return BALLAST_ENOMEM;
    }
    struct config_builder b = {.file = file, .err = err};
    int rc = config_build(&b, text, len);
    if (rc == 0 && b.root == NULL) {
        b.root = config_node_new(CONFIG_MAP, file, 1);
        if (b.root == NULL) {
            config_set_error(err, file, 0, "out of memory");
            rc = BALLAST_ENOMEM;
        }
    }
    if (rc == 0 && b.root->kind != CONFIG_MAP)
        rc = config_build_fail(&b, b.root->line, "the top level must be a map, got ",
                               config_kind_name(b.root->kind));
    if (rc == 0)
        rc = config_check_duplicates(&b);
    if (rc != 0) {
        config_builder_cleanup(&b);
        free(file);
        return rc;
    }
    *out = b.root;
    return 0;
}

/* Read at most max_bytes of path into a NUL-terminated buffer. */
static int config_read_file(const char *path, size_t max_bytes, char **text, size_t *len,
                            struct config_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        config_set_error(err, path, 0, "cannot open: %s", strerror(errno));
        return BALLAST_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > max_bytes) {
        config_set_error(err, path, 0, "file is %lld bytes, limit is %zu (max-config-size)",
                         (long long)st.st_size, max_bytes);
        close(fd);
        return BALLAST_ELIMIT;
    }
    /* Read one byte past the limit so a file that grows (or a pipe) is still caught. */
    size_t capacity = max_bytes < 4096 ? max_bytes + 1 : 4096;
    char *buf = malloc(capacity + 1);
    size_t used = 0;
    int rc = buf ? 0 : BALLAST_ENOMEM;
    while (rc == 0) {
        if (used == capacity) {
            if (capacity > max_bytes) {
                config_set_error(err, path, 0, "file is more than %zu bytes (max-config-size)",
                                 max_bytes);
                rc = BALLAST_ELIMIT;
                break;
            }
            size_t next = capacity * 2 > max_bytes ? max_bytes + 1 : capacity * 2;
            char *grown = realloc(buf, next + 1);
            if (grown == NULL) {
                rc = BALLAST_ENOMEM;
                break;
            }
            buf = grown;
            capacity = next;
        }
        ssize_t n = read(fd, buf + used, capacity - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            config_set_error(err, path, 0, "cannot read: %s", strerror(errno));
            rc = BALLAST_EIO;
        } else if (n == 0) {
            break;
        } else {
            used += (size_t)n;
        }
    }
    close(fd);
    if (rc == 0 && used > max_bytes) {
        config_set_error(err, path, 0, "file is more than %zu bytes (max-config-size)", max_bytes);
        rc = BALLAST_ELIMIT;
    }
    if (rc != 0) {
        if (rc == BALLAST_ENOMEM)
            config_set_error(err, path, 0, "out of memory");
        free(buf);
        return rc;
    }
    buf[used] = '\0';
    *text = buf;
    *len = used;
    return 0;
}

int config_parse_file(const char *path, size_t max_bytes, struct config_node **out,
                      struct config_error *err)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = config_read_file(path, max_bytes, &text, &len, err);
    if (rc != 0)
        return rc;
    rc = config_parse_string(path, text, len, out, err);
    free(text);
    return rc;
}

int config_load_file(const char *path, char **source_file,
                     int (*read_tree)(void *cfg, const struct config_node *root,
                                      struct config_error *err),
                     void *cfg, struct config_error *err)
{
    struct config_node *root = NULL;
    int rc = config_parse_file(path, LIMIT_DEFAULT_CONFIG_BYTES, &root, err);
    if (rc != 0)
        return rc;
    *source_file = strdup(path);
    if (*source_file == NULL)
        rc = config_nomem(err, root);
    else
        rc = read_tree(cfg, root, err);
    config_free(root);
    return rc;
}

/* ---- lookups and typed reads ---- */

const struct config_node *config_map_get(const struct config_node *map, const char *key)
{
    if (map == NULL || map->kind != CONFIG_MAP)
        return NULL;
    for (size_t i = 0; i < map->count; i++)
        if (strcmp(map->keys[i], key) == 0)
            return map->values[i];
    return NULL;
}

static int config_expect_kind(const struct config_node *node, enum config_kind kind,
                              struct config_error *err)
{
    if (node == NULL)
        return config_fail(err, NULL, "missing value");
    if (node->kind != kind)
        return config_fail(err, node, "expected %s, got %s", config_kind_name(kind),
                           config_kind_name(node->kind));
    return 0;
}

int config_check_keys(const struct config_node *map, const char *const *allowed,
                      struct config_error *err)
{
    int rc = config_expect_kind(map, CONFIG_MAP, err);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < map->count; i++) {
        bool known = false;
        for (size_t j = 0; allowed[j] != NULL && !known; j++)
            known = strcmp(map->keys[i], allowed[j]) == 0;
        if (known)
            continue;
        char list[400] = "";
        size_t used = 0;
        for (size_t j = 0; allowed[j] != NULL && used < sizeof(list); j++) {
            int n = snprintf(list + used, sizeof(list) - used, "%s%s", j ? ", " : "", allowed[j]);
            if (n < 0)
                break;
            used += (size_t)n;
        }
        config_fail(err, map, "unknown key '%s' (expected one of: %s)", map->keys[i], list);
        if (err != NULL)
            err->line = map->key_lines[i];
        return BALLAST_EINVAL;
    }
    return 0;
}

int config_get_string(const struct config_node *node, const char **out, struct config_error *err)
{
    int rc = config_expect_kind(node, CONFIG_SCALAR, err);
    if (rc != 0)
        return rc;
    *out = node->scalar;
    return 0;
}

/* Parse a run of decimal digits at *text into *value, advancing *text. Rejects overflow. */
static int config_parse_digits(const char **text, uint64_t *value)
{
    const char *p = *text;
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return BALLAST_EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return BALLAST_ELIMIT;
        v = v * 10 + digit;
    }
    *text = p;
    *value = v;
    return 0;
}

int config_get_uint(const struct config_node *node, uint64_t min, uint64_t max, uint64_t *out,
                    struct config_error *err)
{
    int rc = config_expect_kind(node, CONFIG_SCALAR, err);
    if (rc != 0)
        return rc;
    const char *p = node->scalar;
    uint64_t value = 0;
    if (config_parse_digits(&p, &value) != 0 || *p != '\0' || value < min || value > max)
        return config_fail(err, node, "expected an integer between %llu and %llu, got '%s'",
                           (unsigned long long)min, (unsigned long long)max, node->scalar);
    *out = value;
    return 0;
}

int config_get_bool(const struct config_node *node, bool *out, struct config_error *err)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    int rc = config_expect_kind(node, CONFIG_SCALAR, err);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(node->scalar, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(node->scalar, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return config_fail(err, node, "expected true or false, got '%s'", node->scalar);
}

struct config_unit {
    const char *suffix;
    uint64_t factor;
};

/* Parse digits followed by an optional unit from units (bare digits use plain_factor). */
static int config_parse_scaled(const char *text, const struct config_unit *units, size_t n_units,
                               uint64_t plain_factor, uint64_t *out)
{
    const char *p = text;
    uint64_t value = 0;
    int rc = config_parse_digits(&p, &value);
    if (rc != 0)
        return rc;
    uint64_t factor = 0;
    if (*p == '\0')
        factor = plain_factor;
    for (size_t i = 0; i < n_units && factor == 0; i++)
        if (strcmp(p, units[i].suffix) == 0)
            factor = units[i].factor;
    if (factor == 0)
        return BALLAST_EINVAL;
    if (value > UINT64_MAX / factor)
        return BALLAST_ELIMIT;
    *out = value * factor;
    return 0;
}

/* Largest unit that divides value exactly, for messages like "between 1ms and 1d". */
static const char *config_format_scaled(uint64_t value, const struct config_unit *units,
                                        size_t n_units, const char *base_suffix, char *buf,
                                        size_t len)
{
    for (size_t i = n_units; i-- > 0;) {
        if (units[i].factor > 1 && value != 0 && value % units[i].factor == 0) {
            snprintf(buf, len, "%llu%s", (unsigned long long)(value / units[i].factor),
                     units[i].suffix);
            return buf;
        }
    }
    snprintf(buf, len, "%llu%s", (unsigned long long)value, base_suffix);
    return buf;
}

/* Ordered by factor so config_format_scaled picks the largest exact unit. */
static const struct config_unit config_duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
};
static const struct config_unit config_size_units[] = {
    {"k", 1ull << 10}, {"K", 1ull << 10}, {"m", 1ull << 20}, {"M", 1ull << 20},
    {"g", 1ull << 30}, {"G", 1ull << 30}, {"t", 1ull << 40}, {"T", 1ull << 40},
};
#define CONFIG_COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int config_get_scaled(const struct config_node *node, uint64_t min, uint64_t max,
                             uint64_t *out, struct config_error *err, const char *what,
                             const struct config_unit *units, size_t n_units, uint64_t plain_factor,
                             const char *base_suffix)
{
    int rc = config_expect_kind(node, CONFIG_SCALAR, err);
    if (rc != 0)
        return rc;
    uint64_t value = 0;
    rc = config_parse_scaled(node->scalar, units, n_units, plain_factor, &value);
    if (rc == 0 && value >= min && value <= max) {
        *out = value;
        return 0;
    }
    char lo[32], hi[32];
    config_format_scaled(min, units, n_units, base_suffix, lo, sizeof(lo));
    config_format_scaled(max, units, n_units, base_suffix, hi, sizeof(hi));
    return config_fail(err, node, "expected %s between %s and %s, got '%s'", what, lo, hi,
                       node->scalar);
}

int config_get_duration_ms(const struct config_node *node, uint64_t min_ms, uint64_t max_ms,
                           uint64_t *out, struct config_error *err)
{
    return config_get_scaled(node, min_ms, max_ms, out, err, "a duration", config_duration_units,
                             CONFIG_COUNT(config_duration_units), 1000, "ms");
}

int config_get_size(const struct config_node *node, uint64_t min, uint64_t max, uint64_t *out,
                    struct config_error *err)
{
    return config_get_scaled(node, min, max, out, err, "a size", config_size_units,
                             CONFIG_COUNT(config_size_units), 1, "");
}

/* ---- helpers for a daemon's schema code ---- */

char *config_resolve_path(const char *config_path, const char *path)
{
    const char *slash = strrchr(config_path, '/');
    if (path[0] == '/' || slash == NULL)
        return strdup(path);
    size_t dir_len = (size_t)(slash - config_path);
    char *joined = NULL;
    if (asprintf(&joined, "%.*s/%s", (int)dir_len, config_path, path) < 0)
        return NULL;
    return joined;
}

int config_section(const struct config_node *map, const char *key, enum config_kind kind,
                   const struct config_node **out, struct config_error *err)
{
    const struct config_node *node = config_map_get(map, key);
    *out = NULL;
    if (node == NULL || (node->kind == CONFIG_SCALAR && node->scalar[0] == '\0'))
        return 0;
    if (node->kind != kind)
        return config_fail(err, node, "%s: expected %s", key, config_kind_name(kind));
    *out = node;
    return 0;
}

int config_get_text(const struct config_node *map, const char *key, const struct config_node **node,
                    const char **out, struct config_error *err)
{
    *node = config_map_get(map, key);
    *out = NULL;
    if (*node == NULL)
        return 0;
    int rc = config_get_string(*node, out, err);
    if (rc != 0)
        return config_name_key(err, key, rc);
    if ((*out)[0] == '\0')
        return config_fail(err, *node, "%s: must not be empty", key);
    return 0;
}

int config_read_path(const struct config_node *map, const char *key, const char *config_path,
                     char **out, struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = config_get_text(map, key, &node, &text, err);
    if (rc != 0 || text == NULL)
        return rc;
    char *resolved = config_resolve_path(config_path, text);
    if (resolved == NULL)
        return config_nomem(err, node);
    free(*out);
    *out = resolved;
    return 0;
}

void *config_array_reserve(void *items, size_t count, size_t item_size)
{
    if (count != 0 && (count < 4 || (count & (count - 1)) != 0))
        return items;
    size_t capacity = count ? count * 2 : 4;
    if (capacity > SIZE_MAX / item_size)
        return NULL;
    return realloc(items, capacity * item_size);
}

/* ---- scalar keys described by a table ---- */

int config_value_parse(const struct config_node *node, const struct config_key_spec *spec,
                       uint64_t *value, struct config_error *err)
{
    bool flag = false;
    int rc;
    switch (spec->type) {
    case CONFIG_VALUE_BOOL:
        rc = config_get_bool(node, &flag, err);
        *value = flag;
        return rc;
    case CONFIG_VALUE_SIZE:
        return config_get_size(node, spec->min, spec->max, value, err);
    case CONFIG_VALUE_DURATION:
        return config_get_duration_ms(node, spec->min, spec->max, value, err);
    case CONFIG_VALUE_TTL:
        rc = config_get_duration_ms(node, spec->min, spec->max, value, err);
        if (rc != 0)
            return rc;
        /* TTLs are whole seconds on the wire (RFC 1035 §3.2.1). */
        if (*value % 1000 != 0)
            return config_fail(err, node, "expected a whole number of seconds, got '%s'",
                               node->scalar);
        *value /= 1000;
        return 0;
    case CONFIG_VALUE_POWER_OF_TWO:
        rc = config_get_uint(node, spec->min, spec->max, value, err);
        if (rc == 0 && (*value & (*value - 1)) != 0)
            return config_fail(err, node, "expected a power of two between %llu and %llu, got '%s'",
                               (unsigned long long)spec->min, (unsigned long long)spec->max,
                               node->scalar);
        return rc;
    case CONFIG_VALUE_COUNT:
        break;
    }
    return config_get_uint(node, spec->min, spec->max, value, err);
}

void config_value_store(void *base, const struct config_key_spec *spec, uint64_t value)
{
    char *field = (char *)base + spec->offset;
    if (spec->type == CONFIG_VALUE_BOOL) {
        bool v = value != 0;
        memcpy(field, &v, sizeof(v));
    } else if (spec->width == sizeof(uint16_t)) {
        uint16_t v = (uint16_t)value;
        memcpy(field, &v, sizeof(v));
    } else if (spec->width == sizeof(uint32_t)) {
        uint32_t v = (uint32_t)value;
        memcpy(field, &v, sizeof(v));
    } else {
        memcpy(field, &value, sizeof(value));
    }
}

/* The keys a section accepts: its specs' keys in table order, then extras (NULL for none);
 * NULL-terminated. */
static const char **config_section_keys(const char *name, const struct config_key_spec *specs,
                                        size_t spec_count, const char *const *extras)
{
    size_t extra_count = 0;
    while (extras != NULL && extras[extra_count] != NULL)
        extra_count++;
    const char **allowed = malloc((spec_count + extra_count + 1) * sizeof(*allowed));
    if (allowed == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < spec_count; i++)
        if (strcmp(specs[i].section, name) == 0)
            allowed[n++] = specs[i].key;
    for (size_t i = 0; i < extra_count; i++)
        allowed[n++] = extras[i];
    allowed[n] = NULL;
    return allowed;
}

int config_read_section(const struct config_node *root, const char *name,
                        const struct config_key_spec *specs, size_t spec_count,
                        const char *const *extras, void *base, const struct config_node **out,
                        struct config_error *err)
{
    int rc = config_section(root, name, CONFIG_MAP, out, err);
    if (rc != 0 || *out == NULL)
        return rc;
    const char **allowed = config_section_keys(name, specs, spec_count, extras);
    if (allowed == NULL)
        return config_nomem(err, *out);
    rc = config_check_keys(*out, allowed, err);
    free(allowed);
    for (size_t i = 0; i < spec_count && rc == 0; i++) {
        const struct config_key_spec *spec = &specs[i];
        const struct config_node *node = config_map_get(*out, spec->key);
        if (node == NULL || strcmp(spec->section, name) != 0)
            continue;
        uint64_t value = 0;
        rc = config_value_parse(node, spec, &value, err);
        if (rc != 0)
            return config_name_key(err, spec->key, rc);
        config_value_store(base, spec, value);
    }
    return rc;
}

/* ---- listen addresses and the server section ---- */

int config_for_each_address(const struct config_node *value, const char *what, bool required,
                            int (*add)(void *ctx, const struct config_node *item,
                                       struct config_error *err),
                            void *ctx, struct config_error *err)
{
    bool empty = (value->kind == CONFIG_SCALAR && value->scalar[0] == '\0') ||
                 (value->kind == CONFIG_LIST && value->count == 0);
    if (required && empty)
        return config_fail(err, value, "%s: needs at least one address", what);
    if (value->kind == CONFIG_SCALAR)
        return add(ctx, value, err);
    if (value->kind != CONFIG_LIST)
        return config_fail(err, value, "%s: expected an address or a list of addresses", what);
    for (size_t i = 0; i < value->count; i++) {
        const struct config_node *item = value->values[i];
        if (item->kind != CONFIG_SCALAR)
            return config_fail(err, item, "%s: expected an address, got a %s", what,
                               item->kind == CONFIG_MAP ? "map" : "list");
        int rc = add(ctx, item, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int config_listen_append(const struct config_listen_list *list, const char *text,
                         const struct config_node *node, struct config_error *err)
{
    struct addr addr;
    if (addr_parse(text, list->default_port, &addr) != 0)
        return config_fail_or_cmdline(err, node,
                                      "invalid listen address '%s' (expected ADDR[@PORT])", text);
    size_t count = *list->count;
    for (size_t i = 0; i < count; i++) {
        const struct addr *seen = &list->addrs[i];
        if (seen->len == addr.len && memcmp(&seen->ss, &addr.ss, addr.len) == 0)
            return config_fail_or_cmdline(err, node, "duplicate listen address '%s' (same as '%s')",
                                          text, list->texts[i]);
    }
    if (count == list->capacity) {
        config_fail_or_cmdline(err, node, "too many listen addresses (limit is %zu)",
                               list->capacity);
        return BALLAST_ELIMIT;
    }
    char *copy = strdup(text);
    if (copy == NULL)
        return config_nomem(err, node);
    list->addrs[count] = addr;
    list->texts[count] = copy;
    *list->count = count + 1;
    return 0;
}

static int config_add_listen_node(void *list, const struct config_node *item,
                                  struct config_error *err)
{
    return config_listen_append(list, item->scalar, item, err);
}

/* log-format, log-target and log-queries of the server map, into the fields that are not NULL. */
static int config_read_log_fields(const struct config_node *server,
                                  const struct config_server_fields *fields,
                                  struct config_error *err)
{
    const struct config_node *node;
    const char *text;
    int rc = config_get_text(server, "log-format", &node, &text, err);
    if (rc != 0)
        return rc;
    if (text != NULL && fields->log_format != NULL &&
        log_format_parse(text, fields->log_format) != 0)
        return config_fail(err, node, "log-format: expected text or json, got '%s'", text);
    rc = config_get_text(server, "log-target", &node, &text, err);
    if (rc != 0)
        return rc;
    if (text != NULL && fields->log_target != NULL &&
        log_target_parse(text, fields->log_target) != 0)
        return config_fail(err, node, "log-target: expected stderr or syslog, got '%s'", text);
    node = config_map_get(server, "log-queries");
    if (node != NULL && fields->log_queries != NULL) {
        rc = config_get_bool(node, fields->log_queries, err);
        if (rc != 0)
            return config_name_key(err, "log-queries", rc);
    }
    return 0;
}

int config_read_server_fields(const struct config_node *server, const char *config_path,
                              const struct config_server_fields *fields, struct config_error *err)
{
    const struct config_node *node = config_map_get(server, "listen");
    int rc = 0;
    if (node != NULL)
        rc = config_for_each_address(node, "listen", fields->listen_required,
                                     config_add_listen_node, (void *)&fields->listen, err);
    if (rc != 0)
        return rc;
    node = config_map_get(server, "workers");
    if (node != NULL && fields->workers != NULL) {
        uint64_t workers;
        rc = config_get_uint(node, 0, LIMIT_DEFAULT_WORKERS_MAX, &workers, err);
        if (rc != 0)
            return config_name_key(err, "workers", rc);
        *fields->workers = (unsigned)workers;
    }
    const char *level;
    rc = config_get_text(server, "log-level", &node, &level, err);
    if (rc != 0)
        return rc;
    if (level != NULL && log_level_parse(level, fields->log_level) != 0)
        return config_fail(err, node, "log-level: expected error, warn, info or debug, got '%s'",
                           level);
    rc = config_read_log_fields(server, fields, err);
    if (rc != 0)
        return rc;
    rc = config_read_path(server, "control", config_path, fields->control_path, err);
    if (rc == 0)
        rc = config_read_path(server, "pid-file", config_path, fields->pid_file, err);
    const char *text = NULL;
    if (rc == 0 && fields->metrics != NULL)
        rc = config_get_text(server, "metrics", &node, &text, err);
    if (rc == 0 && text != NULL) {
        if (addr_parse(text, fields->metrics_default_port, fields->metrics) != 0)
            return config_fail(err, node, "metrics: invalid address '%s' (expected ADDR[@PORT])",
                               text);
        *fields->has_metrics = true;
    }
    text = NULL;
    if (rc == 0 && fields->user != NULL)
        rc = config_get_text(server, "user", &node, &text, err);
    if (rc == 0 && text != NULL) {
        char reason[256];
        if (daemon_user_check(text, reason, sizeof reason) != 0)
            return config_fail(err, node, "%s", reason);
        char *copy = strdup(text);
        if (copy == NULL)
            return config_nomem(err, node);
        free(*fields->user);
        *fields->user = copy;
    }
    return rc;
}

int config_set_user(char **user, const char *spec, struct config_error *err)
{
    char reason[256];
    if (daemon_user_check(spec, reason, sizeof reason) != 0)
        return config_fail_or_cmdline(err, NULL, "--%s", reason);
    char *copy = strdup(spec);
    if (copy == NULL)
        return config_nomem(err, NULL);
    free(*user);
    *user = copy;
    return BALLAST_OK;
}
