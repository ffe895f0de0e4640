/* Config files: YAML (libyaml) parsed into a tree whose every node knows its file and line, so
 * each daemon's schema code can report "FILE:LINE: reason", and the schema helpers both daemons
 * share (sections, paths, key tables, listen addresses, the server keys). */
#ifndef BALLAST_CONFIG_H
#define BALLAST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

struct addr;

struct addr;

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
/* Load a daemon's config: parse path (at most LIMIT_DEFAULT_CONFIG_BYTES), store a copy of path
 * in *source_file (so read_tree can resolve relative paths against it), then hand the tree to
 * read_tree(cfg, ...). The tree is freed before returning; cleaning up cfg on error is the
 * caller's. */
int config_load_file(const char *path, char **source_file,
                     int (*read_tree)(void *cfg, const struct config_node *root,
                                      struct config_error *err),
                     void *cfg, struct config_error *err);
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

/* ---- helpers for a daemon's schema code ---- */

/* err->file of errors about command-line flags. */
#define CONFIG_CMDLINE "command line"

/* Like config_fail, but without a node the error is placed at CONFIG_CMDLINE (the value came
 * from a flag) instead of keeping err->file. Returns BALLAST_EINVAL. */
int config_fail_or_cmdline(struct config_error *err, const struct config_node *node,
                           const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "out of memory" at node (or CONFIG_CMDLINE without one); returns BALLAST_ENOMEM. */
int config_nomem(struct config_error *err, const struct config_node *node);
/* Prefix the reason already in err with the key (or flag) it is about, as in
 * "workers: expected an integer ..."; returns rc so callers can "return config_name_key(...)". */
int config_name_key(struct config_error *err, const char *key, int rc);

/* path as written when absolute or when config_path has no directory, else joined to the
 * directory of config_path. The result is the caller's to free; NULL when out of memory. */
char *config_resolve_path(const char *config_path, const char *path);
/* The value of key in map when it is of kind; *out is NULL when the key is absent or empty
 * ("server:" alone). Any other kind fails with "KEY: expected a map" (or "a list"). */
int config_section(const struct config_node *map, const char *key, enum config_kind kind,
                   const struct config_node **out, struct config_error *err);
/* The non-empty string value of key in map: *node and *out are NULL when the key is absent.
 * Fails, naming the key, when the value is not a scalar or is empty. */
int config_get_text(const struct config_node *map, const char *key, const struct config_node **node,
                    const char **out, struct config_error *err);
/* config_get_text, then config_resolve_path against config_path; replaces (and frees) *out
 * when the key is present, leaves it alone when absent. */
int config_read_path(const struct config_node *map, const char *key, const char *config_path,
                     char **out, struct config_error *err);

/* Earliest (in index order) second occurrence of a string among count items, where name_at
 * gives item i's string. Sorting keeps it n log n for huge generated inputs. Returns 1 and sets
 * *second (and *first, the earlier occurrence, unless first is NULL), 0 when all differ, or
 * BALLAST_ENOMEM. */
int config_find_duplicate(const void *items, size_t count,
                          const char *(*name_at)(const void *items, size_t index), size_t *second,
                          size_t *first);

/* Room for one more item in a list whose capacity follows from its count (4, 8, 16, ...), so
 * the count is the only size its owner keeps: items itself when it has room, else items grown by
 * realloc. NULL when out of memory; items is then untouched and still the caller's. */
void *config_array_reserve(void *items, size_t count, size_t item_size);

/* ---- scalar keys described by a table ---- */

enum config_value_type {
    CONFIG_VALUE_COUNT,        /* integer in [min, max] */
    CONFIG_VALUE_POWER_OF_TWO, /* integer 1, 2, 4, ... in [min, max] */
    CONFIG_VALUE_SIZE,         /* bytes, "64M" (config_get_size) */
    CONFIG_VALUE_DURATION,     /* range and value in ms (config_get_duration_ms) */
    CONFIG_VALUE_TTL,          /* a duration in whole seconds: range in ms, value in seconds */
    CONFIG_VALUE_BOOL,         /* 0 or 1 (config_get_bool); the field is a bool */
};

/* One scalar key of a schema: where it is, what it accepts, and the field of the caller's
 * struct it fills (offset and width: a bool, or an unsigned integer of 2, 4 or 8 bytes). */
struct config_key_spec {
    const char *section;
    const char *key;
    enum config_value_type type;
    uint64_t min, max;
    size_t offset, width;
};

/* Table entry for a field of struct type base, e.g.
 * CONFIG_KEY("limits", "tcp-pipeline", COUNT, 1, 65535, struct limits, tcp_pipeline). */
#define CONFIG_KEY(section, key, type, min, max, base, field)                                      \
    {                                                                                              \
        section, key, CONFIG_VALUE_##type, min, max, offsetof(base, field),                        \
            sizeof(((base *)0)->field)                                                             \
    }

/* Read node as spec says (type and range); the error is not prefixed with the key, so a caller
 * can name the key or the flag the value came from. */
int config_value_parse(const struct config_node *node, const struct config_key_spec *spec,
                       uint64_t *value, struct config_error *err);
/* Store value in the field of base that spec names. */
void config_value_store(void *base, const struct config_key_spec *spec, uint64_t value);
/* Read the map section name of root; absent or empty leaves *out NULL (config_section). Its
 * keys must be the keys of specs in that section or extras (NULL-terminated, or NULL for none),
 * listed in that order by the unknown-key error. Every spec key present is read into base, in
 * table order, its errors prefixed by the key. *out is the section, for the caller's own keys. */
int config_read_section(const struct config_node *root, const char *name,
                        const struct config_key_spec *specs, size_t spec_count,
                        const char *const *extras, void *base, const struct config_node **out,
                        struct config_error *err);

/* ---- listen addresses and the server section ---- */

/* Each item of value, which is one address or a list of them, handed to add; what names the key
 * in errors. With required, an empty scalar or list fails ("WHAT: needs at least one address");
 * without, an empty list adds nothing and an empty scalar goes to add like any other. */
int config_for_each_address(const struct config_node *value, const char *what, bool required,
                            int (*add)(void *ctx, const struct config_node *item,
                                       struct config_error *err),
                            void *ctx, struct config_error *err);

/* A daemon's listen addresses, in arrays its config owns: up to capacity entries, *count used. */
struct config_listen_list {
    struct addr *addrs;
    char **texts; /* as written, for logs; each strdup'ed, freed by the config's owner */
    size_t *count;
    size_t capacity;
    uint16_t default_port; /* for "ADDR" without "@PORT" */
};

/* The config_listen_list over the listen, listen_text and listen_count fields of a daemon's
 * config cfg (a pointer), holding at most max addresses. */
#define CONFIG_LISTEN_LIST(cfg, max, port)                                                         \
    ((struct config_listen_list){.addrs = (cfg)->listen,                                           \
                                 .texts = (cfg)->listen_text,                                      \
                                 .count = &(cfg)->listen_count,                                    \
                                 .capacity = (max),                                                \
                                 .default_port = (port)})

/* Parse "ADDR[@PORT]" and append it, refusing a duplicate address and more than capacity. node
 * is where text came from (NULL for a flag: the error names CONFIG_CMDLINE). */
int config_listen_append(const struct config_listen_list *list, const char *text,
                         const struct config_node *node, struct config_error *err);

/* The server keys both daemons share, each pointing into the daemon's config. */
struct config_server_fields {
    struct config_listen_list listen;
    bool listen_required; /* an empty listen value is an error, not zero addresses */
    unsigned *workers;    /* 0..LIMIT_DEFAULT_WORKERS_MAX; NULL when read elsewhere (a spec) */
    enum log_level *log_level;
    enum log_format *log_format; /* log-format; NULL: not read */
    enum log_target *log_target; /* log-target; NULL: not read */
    bool *log_queries;           /* log-queries; NULL: not read */
    char **control_path;         /* paths resolved against the config file's directory */
    char **pid_file;
    struct addr *metrics;          /* metrics: ADDR[@PORT]; NULL: not read */
    bool *has_metrics;             /* set when metrics is present */
    uint16_t metrics_default_port; /* the port when metrics names none */
    char **user;                   /* user: USER[:GROUP] (form checked, daemon_user_check) */
};

/* Read listen, workers, log-level, log-format, log-target, log-queries, control, pid-file,
 * metrics and user, in that order, from the server map;
 * the caller has checked the map's keys. config_path is the file relative paths start from. */
int config_read_server_fields(const struct config_node *server, const char *config_path,
                              const struct config_server_fields *fields, struct config_error *err);

/* --user USER[:GROUP]: check its form (daemon_user_check) and replace *user with a copy. Errors
 * name the flag. */
int config_set_user(char **user, const char *spec, struct config_error *err);

#endif
