/* Config files: YAML (libyaml) parsed into a tree whose every node knows its file and line, so
 * each daemon's schema code can report "FILE:LINE: reason". */
#ifndef BALLAST_CONFIG_H
#define BALLAST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum config_kind { CONFIG_SCALAR, CONFIG_MAP, CONFIG_LIST };

struct config_node {
    enum config_kind kind;
    const char *file;            /* shared, owned by the tree */
    unsigned line;               /* 1-based */
    char *scalar;                /* CONFIG_SCALAR: the text */
    size_t count;                /* CONFIG_MAP: pairs; CONFIG_LIST: items */
    char **keys;                 /* CONFIG_MAP: keys[i] names values[i] */
    unsigned *key_lines;         /* CONFIG_MAP: line of each key */
    struct config_node **values; /* CONFIG_MAP values or CONFIG_LIST items */
};

struct config_error {
    char file[512];
    unsigned line; /* 0 when the error is not tied to a line */
    char reason[512];
};

/* Parse the YAML file at path (at most max_bytes). The tree is owned by the caller
 * (config_free). An empty document gives an empty map. Anchors/aliases are rejected. */
int config_parse_file(const char *path, size_t max_bytes, struct config_node **out,
                      struct config_error *err);
/* Same, from a string; name is used as the file in errors. */
int config_parse_string(const char *name, const char *text, size_t len, struct config_node **out,
                        struct config_error *err);
void config_free(struct config_node *root);

/* Set err from a node's position; always returns BALLAST_EINVAL for "return config_fail(...)". */
int config_fail(struct config_error *err, const struct config_node *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Format as "FILE:LINE: reason" (or "FILE: reason"). */
const char *config_error_text(const struct config_error *err, char *buf, size_t len);

/* Map lookup (NULL if absent or node is not a map). */
const struct config_node *config_map_get(const struct config_node *map, const char *key);
/* Fail with "unknown key 'x' (expected one of: a, b, c)" at the key's line if map has a key not
 * in the NULL-terminated allowed list. */
int config_check_keys(const struct config_node *map, const char *const *allowed,
                      struct config_error *err);

/* Typed reads of a scalar node; each fails with file:line and the accepted range. */
int config_get_string(const struct config_node *node, const char **out, struct config_error *err);
int config_get_uint(const struct config_node *node, uint64_t min, uint64_t max, uint64_t *out,
                    struct config_error *err);
int config_get_bool(const struct config_node *node, bool *out, struct config_error *err);
/* Durations: "500ms", "10s", "5m", "1h", "1d" or a plain number of seconds; out in ms. */
int config_get_duration_ms(const struct config_node *node, uint64_t min_ms, uint64_t max_ms,
                           uint64_t *out, struct config_error *err);
/* Sizes: "64k", "512M", "1G" or plain bytes. */
int config_get_size(const struct config_node *node, uint64_t min, uint64_t max, uint64_t *out,
                    struct config_error *err);

#endif
