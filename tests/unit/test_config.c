/* Unit tests for common/config.c: YAML into a tree with lines, what a config may not contain,
 * the typed reads (integers, booleans, durations, sizes) with their error texts, and the schema
 * helpers both daemons share (sections, paths, key tables, listen addresses, server keys). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "addr.h"
#include "config.h"
#include "errors.h"

#define DATA "tests/unit/data/config/"

static struct config_node *parse_ok(const char *text)
{
    struct config_node *root = NULL;
    struct config_error err = {0};
    int rc = config_parse_string("t.yaml", text, strlen(text), &root, &err);
    if (rc != 0)
        fail_msg("unexpected error: %s:%u: %s", err.file, err.line, err.reason);
    assert_non_null(root);
    return root;
}

/* Parse text expecting failure at line with reason containing part. */
static void parse_fails(const char *text, int want_rc, unsigned line, const char *part)
{
    struct config_node *root = (struct config_node *)1;
    struct config_error err = {0};
    int rc = config_parse_string("t.yaml", text, strlen(text), &root, &err);
    assert_int_equal(rc, want_rc);
    assert_null(root);
    assert_string_equal(err.file, "t.yaml");
    assert_int_equal(err.line, line);
    if (strstr(err.reason, part) == NULL)
        fail_msg("reason '%s' lacks '%s'", err.reason, part);
}

static void assert_contains(const char *text, const char *part)
{
    if (strstr(text, part) == NULL)
        fail_msg("'%s' lacks '%s'", text, part);
}

static void test_config_tree_keeps_file_and_lines(void **state)
{
    (void)state;
    struct config_node *root = NULL;
    struct config_error err = {0};
    assert_int_equal(config_parse_file(DATA "nested.yaml", 4096, &root, &err), 0);
    assert_int_equal(root->kind, CONFIG_MAP);
    assert_int_equal(root->count, 2);
    assert_string_equal(root->keys[0], "alpha");
    assert_int_equal(root->key_lines[0], 2);
    assert_string_equal(root->file, DATA "nested.yaml");

    const struct config_node *alpha = config_map_get(root, "alpha");
    assert_int_equal(alpha->kind, CONFIG_SCALAR);
    assert_string_equal(alpha->scalar, "1");
    assert_int_equal(alpha->line, 2);

    const struct config_node *beta = config_map_get(root, "beta");
    assert_int_equal(beta->kind, CONFIG_MAP);
    assert_int_equal(root->key_lines[1], 3);
    assert_string_equal(beta->file, DATA "nested.yaml");
    assert_string_equal(config_map_get(beta, "gamma")->scalar, "two");
    assert_int_equal(config_map_get(beta, "gamma")->line, 4);

    const struct config_node *delta = config_map_get(beta, "delta");
    assert_int_equal(delta->kind, CONFIG_LIST);
    assert_int_equal(delta->count, 2);
    assert_string_equal(delta->values[0]->scalar, "x");
    assert_int_equal(delta->values[0]->line, 6);
    assert_string_equal(delta->values[1]->scalar, "y");
    assert_int_equal(delta->values[1]->line, 7);

    const struct config_node *eps = config_map_get(beta, "epsilon");
    assert_int_equal(eps->kind, CONFIG_LIST);
    assert_int_equal(eps->count, 2);
    assert_string_equal(eps->values[1]->scalar, "4");
    assert_int_equal(eps->line, 8);
    assert_null(config_map_get(root, "missing"));
    assert_null(config_map_get(alpha, "x"));
    config_free(root);
}

static void test_config_empty_document_is_empty_map(void **state)
{
    (void)state;
    const char *texts[] = {"", "# only a comment\n", "---\n", "---\n...\n"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct config_node *root = parse_ok(texts[i]);
        assert_int_equal(root->kind, CONFIG_MAP);
        assert_int_equal(root->count, 0);
        config_free(root);
    }
}

static void test_config_top_level_must_be_map(void **state)
{
    (void)state;
    parse_fails("- a\n- b\n", BALLAST_EINVAL, 1, "top level must be a map, got a list");
    parse_fails("\n\njust text\n", BALLAST_EINVAL, 3, "top level must be a map, got a scalar");
}

static void test_config_duplicate_key_reported_at_second(void **state)
{
    (void)state;
    parse_fails("a: 1\nb: 2\na: 3\n", BALLAST_EINVAL, 3, "duplicate key 'a' (first at line 1)");
    /* Nested map: the line of the inner duplicate. */
    parse_fails("x:\n  k: 1\n  j: 2\n  k: 3\n", BALLAST_EINVAL, 4,
                "duplicate key 'k' (first at line 2)");
    /* Two duplicates: the one met first in the file is reported, even if its map closes last. */
    parse_fails("a: 1\na: 2\nb:\n  c: 1\n  c: 2\n", BALLAST_EINVAL, 2,
                "duplicate key 'a' (first at line 1)");
    /* Three of a kind: the second occurrence, pointing at the first. */
    parse_fails("z: 1\nq: 0\nz: 2\nz: 3\n", BALLAST_EINVAL, 3,
                "duplicate key 'z' (first at line 1)");
}

static void test_config_same_key_in_different_maps_is_fine(void **state)
{
    (void)state;
    struct config_node *root = parse_ok("a:\n  name: x\nb:\n  name: y\nl:\n  - k: 1\n  - k: 2\n");
    assert_string_equal(config_map_get(config_map_get(root, "b"), "name")->scalar, "y");
    config_free(root);
}

static void test_config_duplicate_check_handles_large_map(void **state)
{
    (void)state;
    size_t n = 20000;
    size_t cap = n * 16 + 32;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t used = 0;
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(text + used, cap - used, "k%zu: %zu\n", i, i);
    used += (size_t)snprintf(text + used, cap - used, "k7: again\n");
    struct config_node *root = NULL;
    struct config_error err = {0};
    assert_int_equal(config_parse_string("big.yaml", text, used, &root, &err), BALLAST_EINVAL);
    assert_int_equal(err.line, n + 1);
    assert_string_equal(err.reason, "duplicate key 'k7' (first at line 8)");
    free(text);
}

static void test_config_anchors_and_aliases_rejected(void **state)
{
    (void)state;
    parse_fails("a: &x 1\nb: *x\n", BALLAST_EINVAL, 1, "anchors and aliases are not allowed");
    parse_fails("base: &b {k: 1}\n", BALLAST_EINVAL, 1, "'&b'");
    /* An alias to nothing is still reported as an alias, not a crash. */
    parse_fails("a: 1\nb: *nothing\n", BALLAST_EINVAL, 2, "'*nothing'");
    parse_fails("a:\n  - &i item\n", BALLAST_EINVAL, 2, "anchors and aliases are not allowed");
}

static void test_config_syntax_error_has_line_and_problem(void **state)
{
    (void)state;
    parse_fails("a: 1\nb\nc: 3\n", BALLAST_EPARSE, 3, "could not find expected ':'");
    parse_fails("a: 1\nb\nc: 3\n", BALLAST_EPARSE, 3, "at line 2");
    parse_fails("a: [1, 2\nb: 3\n", BALLAST_EPARSE, 2, "YAML syntax error");
    parse_fails("a: 1\n\tb: 2\n", BALLAST_EPARSE, 2, "YAML syntax error");
    parse_fails("a: 1\nb: \"\xff\"\n", BALLAST_EPARSE, 2, "UTF-8");
}

static void test_config_rejects_more_than_one_document(void **state)
{
    (void)state;
    parse_fails("a: 1\n---\nb: 2\n", BALLAST_EINVAL, 2, "only one YAML document");
}

static void test_config_rejects_nul_in_value(void **state)
{
    (void)state;
    parse_fails("a: \"x\\0y\"\n", BALLAST_EINVAL, 1, "NUL");
}

static void test_config_rejects_collection_as_key(void **state)
{
    (void)state;
    parse_fails("? [a, b]\n: 1\n", BALLAST_EINVAL, 1, "map keys must be plain strings");
}

static void test_config_rejects_deep_nesting(void **state)
{
    (void)state;
    char text[400];
    size_t used = 0;
    for (int i = 0; i < 70; i++)
        text[used++] = '[';
    for (int i = 0; i < 70; i++)
        text[used++] = ']';
    text[used] = '\0';
    char doc[500];
    snprintf(doc, sizeof(doc), "a: %s\n", text);
    parse_fails(doc, BALLAST_ELIMIT, 1, "nesting deeper than 64");
}

static size_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (size_t)st.st_size;
}

static void test_config_file_over_limit_rejected(void **state)
{
    (void)state;
    char want[64];
    snprintf(want, sizeof(want), "file is %zu bytes", file_size(DATA "nested.yaml"));
    struct config_node *root = NULL;
    struct config_error err = {0};
    int rc = config_parse_file(DATA "nested.yaml", 20, &root, &err);
    assert_int_equal(rc, BALLAST_ELIMIT);
    assert_null(root);
    assert_string_equal(err.file, DATA "nested.yaml");
    assert_int_equal(err.line, 0);
    assert_contains(err.reason, "limit is 20 (max-config-size)");
    assert_contains(err.reason, want);
}

static void test_config_file_exactly_at_limit_accepted(void **state)
{
    (void)state;
    size_t size = file_size(DATA "nested.yaml");
    struct config_node *root = NULL;
    struct config_error err = {0};
    assert_int_equal(config_parse_file(DATA "nested.yaml", size, &root, &err), 0);
    config_free(root);
    assert_int_equal(config_parse_file(DATA "nested.yaml", size - 1, &root, &err), BALLAST_ELIMIT);
    assert_null(root);
}

static void test_config_endless_stream_stops_at_limit(void **state)
{
    (void)state;
    struct config_node *root = NULL;
    struct config_error err = {0};
    assert_int_equal(config_parse_file("/dev/zero", 10000, &root, &err), BALLAST_ELIMIT);
    assert_null(root);
    assert_string_equal(err.reason, "file is more than 10000 bytes (max-config-size)");
}

static void test_config_large_file_read_whole(void **state)
{
    (void)state;
    char path[] = "/tmp/ballast-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    for (int i = 0; i < 5000; i++)
        fprintf(f, "key%d: value%d\n", i, i);
    fclose(f);
    struct config_node *root = NULL;
    struct config_error err = {0};
    int rc = config_parse_file(path, 1 << 20, &root, &err);
    unlink(path);
    assert_int_equal(rc, 0);
    assert_int_equal(root->count, 5000);
    assert_string_equal(config_map_get(root, "key4999")->scalar, "value4999");
    assert_int_equal(config_map_get(root, "key4999")->line, 5000);
    config_free(root);
}

static void test_config_unreadable_file_names_os_error(void **state)
{
    (void)state;
    struct config_node *root = NULL;
    struct config_error err = {0};
    assert_int_equal(config_parse_file(DATA "does-not-exist.yaml", 4096, &root, &err), BALLAST_EIO);
    assert_string_equal(err.file, DATA "does-not-exist.yaml");
    assert_int_equal(err.line, 0);
    assert_contains(err.reason, "No such file or directory");
    assert_int_equal(config_parse_file(DATA, 4096, &root, &err), BALLAST_EIO);
    assert_contains(err.reason, "Is a directory");
}

static void test_config_error_text_formats(void **state)
{
    (void)state;
    struct config_error err = {.file = "a.yaml", .line = 7, .reason = "bad"};
    char buf[64];
    assert_string_equal(config_error_text(&err, buf, sizeof(buf)), "a.yaml:7: bad");
    err.line = 0;
    assert_string_equal(config_error_text(&err, buf, sizeof(buf)), "a.yaml: bad");
    char tiny[6];
    assert_string_equal(config_error_text(&err, tiny, sizeof(tiny)), "a.yam");
}

static void test_config_fail_uses_node_position(void **state)
{
    (void)state;
    struct config_node *root = parse_ok("a: 1\nb: 2\n");
    struct config_error err = {0};
    assert_int_equal(config_fail(&err, config_map_get(root, "b"), "no %s", "good"), BALLAST_EINVAL);
    assert_string_equal(err.file, "t.yaml");
    assert_int_equal(err.line, 2);
    assert_string_equal(err.reason, "no good");
    config_free(root);
}

static void test_config_check_keys_names_unknown_and_allowed(void **state)
{
    (void)state;
    static const char *const allowed[] = {"name", "file", NULL};
    struct config_node *root = parse_ok("name: x\nfile: y\n");
    struct config_error err = {0};
    assert_int_equal(config_check_keys(root, allowed, &err), 0);
    config_free(root);

    root = parse_ok("name: x\n\nfiel: y\n");
    assert_int_equal(config_check_keys(root, allowed, &err), BALLAST_EINVAL);
    assert_int_equal(err.line, 3);
    assert_string_equal(err.reason, "unknown key 'fiel' (expected one of: name, file)");
    config_free(root);

    root = parse_ok("l: [1]\n");
    assert_int_equal(config_check_keys(config_map_get(root, "l"), allowed, &err), BALLAST_EINVAL);
    assert_contains(err.reason, "expected a map, got a list");
    config_free(root);
}

static void test_config_get_uint_range_and_text(void **state)
{
    (void)state;
    struct config_node *root =
        parse_ok("ok: 256\nzero: 0\nword: abc\nneg: -1\nbig: 257\nhex: 0x10\nplus: +3\n"
                 "huge: 99999999999999999999\nmax: 18446744073709551615\nlist: [1]\n"
                 "empty:\nspace: 1 2\n");
    struct config_error err = {0};
    uint64_t v = 0;
    assert_int_equal(config_get_uint(config_map_get(root, "ok"), 0, 256, &v, &err), 0);
    assert_int_equal(v, 256);
    assert_int_equal(config_get_uint(config_map_get(root, "zero"), 0, 256, &v, &err), 0);
    assert_int_equal(v, 0);
    assert_int_equal(config_get_uint(config_map_get(root, "max"), 0, UINT64_MAX, &v, &err), 0);
    assert_true(v == UINT64_MAX);

    v = 77;
    assert_int_equal(config_get_uint(config_map_get(root, "word"), 0, 256, &v, &err),
                     BALLAST_EINVAL);
    assert_int_equal(v, 77);
    assert_int_equal(err.line, 3);
    assert_string_equal(err.reason, "expected an integer between 0 and 256, got 'abc'");

    const char *bad[] = {"neg", "big", "hex", "plus", "huge", "empty", "space"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err.line = 0;
        assert_int_equal(config_get_uint(config_map_get(root, bad[i]), 0, 256, &v, &err),
                         BALLAST_EINVAL);
        assert_int_not_equal(err.line, 0);
        assert_contains(err.reason, "expected an integer between 0 and 256");
    }
    assert_int_equal(config_get_uint(config_map_get(root, "ok"), 300, 400, &v, &err),
                     BALLAST_EINVAL);
    assert_string_equal(err.reason, "expected an integer between 300 and 400, got '256'");
    assert_int_equal(config_get_uint(config_map_get(root, "list"), 0, 9, &v, &err), BALLAST_EINVAL);
    assert_int_equal(err.line, 10);
    assert_contains(err.reason, "expected a scalar, got a list");
    config_free(root);
}

static void test_config_get_string_and_bool(void **state)
{
    (void)state;
    struct config_node *root =
        parse_ok("s: 'quoted text'\nt: yes\nf: False\nx: maybe\nm: {a: 1}\n");
    struct config_error err = {0};
    const char *s = NULL;
    assert_int_equal(config_get_string(config_map_get(root, "s"), &s, &err), 0);
    assert_string_equal(s, "quoted text");
    assert_int_equal(config_get_string(config_map_get(root, "m"), &s, &err), BALLAST_EINVAL);
    assert_int_equal(err.line, 5);
    assert_contains(err.reason, "expected a scalar, got a map");

    bool b = false;
    assert_int_equal(config_get_bool(config_map_get(root, "t"), &b, &err), 0);
    assert_true(b);
    assert_int_equal(config_get_bool(config_map_get(root, "f"), &b, &err), 0);
    assert_false(b);
    assert_int_equal(config_get_bool(config_map_get(root, "x"), &b, &err), BALLAST_EINVAL);
    assert_int_equal(err.line, 4);
    assert_string_equal(err.reason, "expected true or false, got 'maybe'");
    config_free(root);
}

struct scaled_case {
    const char *text;
    int rc;
    uint64_t value;
};

static void check_scaled(const struct scaled_case *cases, size_t n, bool duration, uint64_t min,
                         uint64_t max)
{
    for (size_t i = 0; i < n; i++) {
        char doc[128];
        snprintf(doc, sizeof(doc), "\nv: %s\n", cases[i].text);
        struct config_node *root = parse_ok(doc);
        struct config_error err = {0};
        uint64_t v = 12345;
        const struct config_node *node = config_map_get(root, "v");
        int rc = duration ? config_get_duration_ms(node, min, max, &v, &err)
                          : config_get_size(node, min, max, &v, &err);
        if (rc != cases[i].rc)
            fail_msg("'%s': rc %d, want %d (%s)", cases[i].text, rc, cases[i].rc, err.reason);
        if (rc == 0 && v != cases[i].value)
            fail_msg("'%s': got %llu, want %llu", cases[i].text, (unsigned long long)v,
                     (unsigned long long)cases[i].value);
        if (rc != 0) {
            assert_int_equal(err.line, 2);
            assert_contains(err.reason,
                            duration ? "expected a duration between" : "expected a size between");
            assert_int_equal(v, 12345);
        }
        config_free(root);
    }
}

static void test_config_durations_parse_units_and_reject_junk(void **state)
{
    (void)state;
    static const struct scaled_case cases[] = {
        {"500ms", 0, 500},
        {"10s", 0, 10000},
        {"5m", 0, 300000},
        {"1h", 0, 3600000},
        {"1d", 0, 86400000},
        {"7", 0, 7000},
        {"0", 0, 0},
        {"10 s", BALLAST_EINVAL, 0},
        {"10sec", BALLAST_EINVAL, 0},
        {"1.5s", BALLAST_EINVAL, 0},
        {"-1s", BALLAST_EINVAL, 0},
        {"s", BALLAST_EINVAL, 0},
        {"10S", BALLAST_EINVAL, 0},
        {"''", BALLAST_EINVAL, 0},
        /* Overflow in the multiplication, and in the digits themselves. */
        {"99999999999999999d", BALLAST_EINVAL, 0},
        {"999999999999999999999ms", BALLAST_EINVAL, 0},
    };
    check_scaled(cases, sizeof(cases) / sizeof(cases[0]), true, 0, UINT64_MAX);

    struct config_node *root = parse_ok("v: 2d\n");
    struct config_error err = {0};
    uint64_t v;
    assert_int_equal(config_get_duration_ms(config_map_get(root, "v"), 1, 86400000, &v, &err),
                     BALLAST_EINVAL);
    assert_string_equal(err.reason, "expected a duration between 1ms and 1d, got '2d'");
    config_free(root);
}

static void test_config_sizes_parse_units_and_reject_junk(void **state)
{
    (void)state;
    static const struct scaled_case cases[] = {
        {"64k", 0, 64u << 10},
        {"64K", 0, 64u << 10},
        {"512M", 0, 512u << 20},
        {"1G", 0, 1u << 30},
        {"2T", 0, 2ull << 40},
        {"1000", 0, 1000},
        {"12Q", BALLAST_EINVAL, 0},
        {"1 G", BALLAST_EINVAL, 0},
        {"1GB", BALLAST_EINVAL, 0},
        {"-1", BALLAST_EINVAL, 0},
        {"99999999999999999999G", BALLAST_EINVAL, 0},
        {"17179869184G", BALLAST_EINVAL, 0}, /* 2^34 GiB = 2^64 bytes: one past the top */
    };
    check_scaled(cases, sizeof(cases) / sizeof(cases[0]), false, 0, UINT64_MAX);

    struct config_node *root = parse_ok("v: 2T\n");
    struct config_error err = {0};
    uint64_t v;
    assert_int_equal(config_get_size(config_map_get(root, "v"), 512, 1ull << 40, &v, &err),
                     BALLAST_EINVAL);
    assert_string_equal(err.reason, "expected a size between 512 and 1T, got '2T'");
    config_free(root);
}

/* ---- helpers for a daemon's schema code ---- */

static void assert_error(const struct config_error *err, unsigned line, const char *reason)
{
    assert_int_equal(err->line, line);
    assert_string_equal(err->reason, reason);
}

static void test_config_fail_or_cmdline_names_command_line_without_node(void **state)
{
    (void)state;
    struct config_node *root = parse_ok("a: 1\nb: 2\n");
    struct config_error err = {.file = "other.yaml", .line = 9};
    assert_int_equal(config_fail_or_cmdline(&err, NULL, "--%s: bad", "workers"), BALLAST_EINVAL);
    assert_string_equal(err.file, CONFIG_CMDLINE);
    assert_string_equal(err.file, "command line");
    assert_error(&err, 0, "--workers: bad");

    assert_int_equal(config_fail_or_cmdline(&err, config_map_get(root, "b"), "at %d", 2),
                     BALLAST_EINVAL);
    assert_string_equal(err.file, "t.yaml");
    assert_error(&err, 2, "at 2");
    assert_int_equal(config_fail_or_cmdline(NULL, NULL, "no err"), BALLAST_EINVAL);
    config_free(root);
}

static void test_config_nomem_and_name_key(void **state)
{
    (void)state;
    struct config_error err = {0};
    assert_int_equal(config_nomem(&err, NULL), BALLAST_ENOMEM);
    assert_string_equal(err.file, "command line");
    assert_string_equal(err.reason, "out of memory");

    snprintf(err.reason, sizeof(err.reason), "expected an integer");
    assert_int_equal(config_name_key(&err, "workers", BALLAST_ELIMIT), BALLAST_ELIMIT);
    assert_string_equal(err.reason, "workers: expected an integer");

    /* A reason at the size limit is cut, never overrun. */
    memset(err.reason, 'x', sizeof(err.reason) - 1);
    err.reason[sizeof(err.reason) - 1] = '\0';
    assert_int_equal(config_name_key(&err, "k", BALLAST_EINVAL), BALLAST_EINVAL);
    assert_int_equal(strlen(err.reason), sizeof(err.reason) - 1);
    assert_memory_equal(err.reason, "k: xx", 5);
}

static void test_config_resolve_path_joins_relative_to_config_dir(void **state)
{
    (void)state;
    static const struct {
        const char *config, *path, *want;
    } cases[] = {
        {"/etc/ballast/authd.yaml", "zones/a.zone", "/etc/ballast/zones/a.zone"},
        {"/etc/ballast/authd.yaml", "/var/a.zone", "/var/a.zone"},
        {"conf/r.yaml", "run/r.sock", "conf/run/r.sock"},
        {"r.yaml", "run/r.sock", "run/r.sock"},
        {"/r.yaml", "x", "/x"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = config_resolve_path(cases[i].config, cases[i].path);
        assert_non_null(got);
        assert_string_equal(got, cases[i].want);
        free(got);
    }
}

static void test_config_section_absent_empty_or_wrong_kind(void **state)
{
    (void)state;
    struct config_node *root = parse_ok("server:\nlimits: {a: 1}\nzones: x\nlist: [1]\n");
    const struct config_node *out = (const struct config_node *)1;
    struct config_error err = {0};
    assert_int_equal(config_section(root, "absent", CONFIG_MAP, &out, &err), 0);
    assert_null(out);
    out = (const struct config_node *)1;
    assert_int_equal(config_section(root, "server", CONFIG_MAP, &out, &err), 0);
    assert_null(out);
    assert_int_equal(config_section(root, "limits", CONFIG_MAP, &out, &err), 0);
    assert_ptr_equal(out, config_map_get(root, "limits"));
    assert_int_equal(config_section(root, "list", CONFIG_LIST, &out, &err), 0);
    assert_non_null(out);

    assert_int_equal(config_section(root, "zones", CONFIG_LIST, &out, &err), BALLAST_EINVAL);
    assert_null(out);
    assert_error(&err, 3, "zones: expected a list");
    assert_int_equal(config_section(root, "list", CONFIG_MAP, &out, &err), BALLAST_EINVAL);
    assert_error(&err, 4, "list: expected a map");
    config_free(root);
}

static void test_config_get_text_requires_non_empty_scalar(void **state)
{
    (void)state;
    struct config_node *root = parse_ok("name: example\nempty: ''\nlist: [a]\n");
    const struct config_node *node = NULL;
    const char *text = NULL;
    struct config_error err = {0};
    assert_int_equal(config_get_text(root, "name", &node, &text, &err), 0);
    assert_string_equal(text, "example");
    assert_int_equal(node->line, 1);
    assert_int_equal(config_get_text(root, "absent", &node, &text, &err), 0);
    assert_null(node);
    assert_null(text);

    assert_int_equal(config_get_text(root, "empty", &node, &text, &err), BALLAST_EINVAL);
    assert_error(&err, 2, "empty: must not be empty");
    assert_int_equal(config_get_text(root, "list", &node, &text, &err), BALLAST_EINVAL);
    assert_error(&err, 3, "list: expected a scalar, got a list");
    config_free(root);
}

static void test_config_read_path_resolves_and_replaces(void **state)
{
    (void)state;
    struct config_node *root = parse_ok("control: run/a.sock\npid-file: /run/a.pid\nbad: ''\n");
    struct config_error err = {0};
    char *path = strdup("old");
    assert_non_null(path);
    assert_int_equal(config_read_path(root, "control", "etc/a.yaml", &path, &err), 0);
    assert_string_equal(path, "etc/run/a.sock");
    assert_int_equal(config_read_path(root, "pid-file", "etc/a.yaml", &path, &err), 0);
    assert_string_equal(path, "/run/a.pid");
    /* Absent: the value set before (a default or a flag) stays. */
    assert_int_equal(config_read_path(root, "absent", "etc/a.yaml", &path, &err), 0);
    assert_string_equal(path, "/run/a.pid");
    assert_int_equal(config_read_path(root, "bad", "etc/a.yaml", &path, &err), BALLAST_EINVAL);
    assert_string_equal(err.reason, "bad: must not be empty");
    assert_string_equal(path, "/run/a.pid");
    free(path);
    config_free(root);
}

static const char *string_at(const void *items, size_t index)
{
    return ((const char *const *)items)[index];
}

static void test_config_find_duplicate_reports_earliest_second(void **state)
{
    (void)state;
    static const char *const none[] = {"a", "b", "c"};
    static const char *const names[] = {"z", "b", "a", "b", "a", "z"};
    size_t second = 99, first = 99;
    assert_int_equal(config_find_duplicate(none, 3, string_at, &second, &first), 0);
    assert_int_equal(config_find_duplicate(none, 0, string_at, &second, &first), 0);
    assert_int_equal(second, 99);
    /* "b" repeats at 3, before "a" at 4 and "z" at 5. */
    assert_int_equal(config_find_duplicate(names, 6, string_at, &second, &first), 1);
    assert_int_equal(second, 3);
    assert_int_equal(first, 1);
    assert_int_equal(config_find_duplicate(names, 6, string_at, &second, NULL), 1);
    assert_int_equal(second, 3);

    static const char *const triple[] = {"x", "y", "x", "x"};
    assert_int_equal(config_find_duplicate(triple, 4, string_at, &second, &first), 1);
    assert_int_equal(second, 2);
    assert_int_equal(first, 0);
}

static void test_config_array_reserve_grows_at_powers_of_two(void **state)
{
    (void)state;
    unsigned *items = NULL;
    for (unsigned count = 0; count < 40; count++) {
        unsigned *grown = config_array_reserve(items, count, sizeof(*items));
        assert_non_null(grown);
        bool must_grow = count == 0 || (count >= 4 && (count & (count - 1)) == 0);
        if (!must_grow)
            assert_ptr_equal(grown, items);
        items = grown;
        items[count] = count * 3; /* ASan flags a write past the capacity */
    }
    for (unsigned i = 0; i < 40; i++)
        assert_int_equal(items[i], i * 3);
    assert_null(config_array_reserve(items, 1u << 20, SIZE_MAX / 4));
    free(items);
}

struct load_probe {
    const char *seen_alpha; /* copied out of the tree while it is alive */
    char alpha[16];
    const char *source_seen;
    char **source_file;
    int rc;
};

static int load_probe_read(void *ctx, const struct config_node *root, struct config_error *err)
{
    struct load_probe *probe = ctx;
    const struct config_node *alpha = config_map_get(root, "alpha");
    snprintf(probe->alpha, sizeof(probe->alpha), "%s", alpha ? alpha->scalar : "");
    probe->seen_alpha = probe->alpha;
    /* Relative paths are resolved while reading, so the source is already known. */
    probe->source_seen = *probe->source_file;
    if (probe->rc != 0)
        return config_fail(err, alpha, "refused");
    return 0;
}

static void test_config_load_file_records_source_and_reads_tree(void **state)
{
    (void)state;
    char *source = NULL;
    struct load_probe probe = {.source_file = &source};
    struct config_error err = {0};
    assert_int_equal(config_load_file(DATA "nested.yaml", &source, load_probe_read, &probe, &err),
                     0);
    assert_string_equal(source, DATA "nested.yaml");
    assert_ptr_equal(probe.source_seen, source);
    assert_string_equal(probe.seen_alpha, "1");
    free(source);

    source = NULL;
    probe = (struct load_probe){.source_file = &source, .rc = BALLAST_EINVAL};
    assert_int_equal(config_load_file(DATA "nested.yaml", &source, load_probe_read, &probe, &err),
                     BALLAST_EINVAL);
    assert_error(&err, 2, "refused");
    free(source);

    /* A file that cannot be read never reaches read_tree. */
    source = NULL;
    probe = (struct load_probe){.source_file = &source};
    assert_int_equal(
        config_load_file(DATA "does-not-exist.yaml", &source, load_probe_read, &probe, &err),
        BALLAST_EIO);
    assert_null(source);
    assert_null(probe.seen_alpha);
}

struct sample {
    bool flag;
    uint16_t port;
    uint32_t timeout_ms;
    uint32_t ttl;
    uint32_t shards;
    uint64_t size;
    uint32_t count;
};

static const struct config_key_spec sample_specs[] = {
    CONFIG_KEY("net", "flag", BOOL, 0, 1, struct sample, flag),
    CONFIG_KEY("net", "port", COUNT, 1, 65535, struct sample, port),
    CONFIG_KEY("net", "timeout", DURATION, 10, 60000, struct sample, timeout_ms),
    CONFIG_KEY("cache", "ttl", TTL, 0, 86400000, struct sample, ttl),
    CONFIG_KEY("cache", "shards", POWER_OF_TWO, 1, 1024, struct sample, shards),
    CONFIG_KEY("cache", "size", SIZE, 1024, 1ull << 40, struct sample, size),
    CONFIG_KEY("other", "count", COUNT, 0, 10, struct sample, count),
};
#define SAMPLE_SPEC_COUNT (sizeof(sample_specs) / sizeof(sample_specs[0]))

static int parse_value(const char *text, size_t spec, uint64_t *value, struct config_error *err)
{
    struct config_node node = {
        .kind = CONFIG_SCALAR, .file = "f", .line = 1, .scalar = (char *)text};
    return config_value_parse(&node, &sample_specs[spec], value, err);
}

static void test_config_value_parse_by_type(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t spec; /* index in sample_specs */
        int rc;
        uint64_t value;     /* when rc is 0 */
        const char *reason; /* when it is not */
    } cases[] = {
        {"yes", 0, 0, 1, NULL},
        {"5353", 1, 0, 5353, NULL},
        {"0", 1, BALLAST_EINVAL, 0, "expected an integer between 1 and 65535, got '0'"},
        {"2s", 2, 0, 2000, NULL},
        {"2h", 3, 0, 7200, NULL},
        {"1500ms", 3, BALLAST_EINVAL, 0, "expected a whole number of seconds, got '1500ms'"},
        {"64", 4, 0, 64, NULL},
        {"48", 4, BALLAST_EINVAL, 0, "expected a power of two between 1 and 1024, got '48'"},
        {"2048", 4, BALLAST_EINVAL, 0, "expected an integer between 1 and 1024, got '2048'"},
        {"64k", 5, 0, 65536, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config_error err = {0};
        uint64_t value = 0;
        assert_int_equal(parse_value(cases[i].text, cases[i].spec, &value, &err), cases[i].rc);
        if (cases[i].rc == 0)
            assert_int_equal(value, cases[i].value);
        else
            assert_string_equal(err.reason, cases[i].reason);
    }
}

static void test_config_value_store_by_width(void **state)
{
    (void)state;
    struct sample s;
    memset(&s, 0xff, sizeof(s));
    config_value_store(&s, &sample_specs[0], 0);
    config_value_store(&s, &sample_specs[1], 5353);
    config_value_store(&s, &sample_specs[2], 70000);
    config_value_store(&s, &sample_specs[5], 1ull << 40);
    assert_false(s.flag);
    assert_int_equal(s.port, 5353);
    assert_int_equal(s.timeout_ms, 70000);
    assert_int_equal(s.size, 1ull << 40);
    /* Neighbours are untouched. */
    assert_int_equal(s.ttl, UINT32_MAX);
    config_value_store(&s, &sample_specs[0], 1);
    assert_true(s.flag);
}

static const char *const sample_extras[] = {"hints", NULL};

/* Read the cache section of text (with sample_extras) into s; returns the result. */
static int read_cache_section(const char *text, struct sample *s, struct config_error *err)
{
    struct config_node *root = parse_ok(text);
    const struct config_node *out = NULL;
    int rc = config_read_section(root, "cache", sample_specs, SAMPLE_SPEC_COUNT, sample_extras, s,
                                 &out, err);
    if (rc == 0 && config_map_get(root, "cache") != NULL)
        assert_ptr_equal(out, config_map_get(root, "cache"));
    config_free(root);
    return rc;
}

static void test_config_read_section_checks_keys_and_reads_specs(void **state)
{
    (void)state;
    struct sample s = {.port = 53, .count = 7};
    struct config_error err = {0};
    assert_int_equal(read_cache_section("cache:\n  ttl: 1m\n  size: 1M\n  hints: x\n", &s, &err),
                     0);
    assert_int_equal(s.ttl, 60);
    assert_int_equal(s.size, 1u << 20);
    /* Keys of other sections are neither read nor accepted. */
    assert_int_equal(s.port, 53);
    assert_int_equal(s.count, 7);
    assert_int_equal(read_cache_section("cache:\n  shards: 4\n  port: 1\n", &s, &err),
                     BALLAST_EINVAL);
    assert_error(&err, 3, "unknown key 'port' (expected one of: ttl, shards, size, hints)");
    assert_int_equal(s.shards, 0);

    assert_int_equal(read_cache_section("cache:\n  size: 1M\n  shards: 3\n", &s, &err),
                     BALLAST_EINVAL);
    assert_error(&err, 3, "shards: expected a power of two between 1 and 1024, got '3'");
    assert_int_equal(read_cache_section("cache: [1]\n", &s, &err), BALLAST_EINVAL);
    assert_error(&err, 1, "cache: expected a map");
}

static void test_config_read_section_absent_or_empty_reads_nothing(void **state)
{
    (void)state;
    struct sample s = {.ttl = 5};
    struct config_error err = {0};
    struct config_node *root = parse_ok("net:\nother: {count: 3}\n");
    const struct config_node *out = (const struct config_node *)1;
    assert_int_equal(
        config_read_section(root, "net", sample_specs, SAMPLE_SPEC_COUNT, NULL, &s, &out, &err), 0);
    assert_null(out);
    out = (const struct config_node *)1;
    assert_int_equal(
        config_read_section(root, "cache", sample_specs, SAMPLE_SPEC_COUNT, NULL, &s, &out, &err),
        0);
    assert_null(out);
    assert_int_equal(s.ttl, 5);
    /* NULL extras: only the section's own specs. */
    assert_int_equal(
        config_read_section(root, "other", sample_specs, SAMPLE_SPEC_COUNT, NULL, &s, &out, &err),
        0);
    assert_int_equal(s.count, 3);
    config_free(root);
}

struct seen_items {
    const char *text[8];
    size_t count;
    int fail_at; /* 1-based item that fails; 0 never */
};

static int collect_item(void *ctx, const struct config_node *item, struct config_error *err)
{
    struct seen_items *seen = ctx;
    seen->text[seen->count++] = item->scalar;
    if ((int)seen->count == seen->fail_at)
        return config_fail(err, item, "refused");
    return 0;
}

/* Run config_for_each_address on the value of "v" in text; returns its result. */
static int for_each_v(const char *text, bool required, struct seen_items *seen,
                      struct config_error *err)
{
    struct config_node *root = parse_ok(text);
    int rc =
        config_for_each_address(config_map_get(root, "v"), "to", required, collect_item, seen, err);
    config_free(root);
    return rc;
}

static void test_config_for_each_address_scalar_or_list(void **state)
{
    (void)state;
    struct config_error err = {0};
    struct seen_items seen = {0};
    assert_int_equal(for_each_v("v: 10.0.0.1\n", true, &seen, &err), 0);
    assert_int_equal(seen.count, 1);
    seen = (struct seen_items){0};
    assert_int_equal(for_each_v("v: [a, b, c]\n", true, &seen, &err), 0);
    assert_int_equal(seen.count, 3);

    seen = (struct seen_items){.fail_at = 2};
    assert_int_equal(for_each_v("v: [a, b, c]\n", true, &seen, &err), BALLAST_EINVAL);
    assert_int_equal(seen.count, 2);
    assert_string_equal(err.reason, "refused");

    seen = (struct seen_items){0};
    assert_int_equal(for_each_v("v: []\n", true, &seen, &err), BALLAST_EINVAL);
    assert_string_equal(err.reason, "to: needs at least one address");
    assert_int_equal(for_each_v("v: ''\n", true, &seen, &err), BALLAST_EINVAL);
    assert_string_equal(err.reason, "to: needs at least one address");
    assert_int_equal(seen.count, 0);
    /* Not required: an empty list adds nothing, an empty scalar is handed on. */
    assert_int_equal(for_each_v("v: []\n", false, &seen, &err), 0);
    assert_int_equal(seen.count, 0);
    assert_int_equal(for_each_v("v: ''\n", false, &seen, &err), 0);
    assert_int_equal(seen.count, 1);

    assert_int_equal(for_each_v("v: {a: 1}\n", false, &seen, &err), BALLAST_EINVAL);
    assert_string_equal(err.reason, "to: expected an address or a list of addresses");
    assert_int_equal(for_each_v("v:\n  - a\n  - [b]\n", false, &seen, &err), BALLAST_EINVAL);
    assert_error(&err, 3, "to: expected an address, got a list");
}

struct listen_fixture {
    struct addr addrs[3];
    char *texts[3];
    size_t count;
};

static struct config_listen_list listen_list(struct listen_fixture *f)
{
    return (struct config_listen_list){.addrs = f->addrs,
                                       .texts = f->texts,
                                       .count = &f->count,
                                       .capacity = 3,
                                       .default_port = 53};
}

static void listen_fixture_free(struct listen_fixture *f)
{
    for (size_t i = 0; i < f->count; i++)
        free(f->texts[i]);
}

static void test_config_listen_append_parses_and_refuses_duplicates_and_excess(void **state)
{
    (void)state;
    struct listen_fixture f = {0};
    struct config_listen_list list = listen_list(&f);
    struct config_error err = {0};
    char buf[64];
    assert_int_equal(config_listen_append(&list, "127.0.0.1", NULL, &err), 0);
    assert_int_equal(config_listen_append(&list, "::1@5300", NULL, &err), 0);
    assert_int_equal(f.count, 2);
    assert_string_equal(f.texts[0], "127.0.0.1");
    assert_string_equal(addr_format((const struct sockaddr *)&f.addrs[0].ss, buf, sizeof(buf)),
                        "127.0.0.1@53");

    assert_int_equal(config_listen_append(&list, "127.0.0.1@53", NULL, &err), BALLAST_EINVAL);
    assert_string_equal(err.file, "command line");
    assert_string_equal(err.reason,
                        "duplicate listen address '127.0.0.1@53' (same as '127.0.0.1')");
    assert_int_equal(config_listen_append(&list, "nowhere", NULL, &err), BALLAST_EINVAL);
    assert_string_equal(err.reason, "invalid listen address 'nowhere' (expected ADDR[@PORT])");

    struct config_node *root = parse_ok("a: 127.0.0.3\nb: 127.0.0.4\n");
    assert_int_equal(config_listen_append(&list, "127.0.0.3", config_map_get(root, "a"), &err), 0);
    assert_int_equal(config_listen_append(&list, "127.0.0.4", config_map_get(root, "b"), &err),
                     BALLAST_ELIMIT);
    assert_string_equal(err.file, "t.yaml");
    assert_error(&err, 2, "too many listen addresses (limit is 3)");
    assert_int_equal(f.count, 3);
    config_free(root);
    listen_fixture_free(&f);
}

struct server_fixture {
    struct listen_fixture listen;
    unsigned workers;
    enum log_level level;
    char *control;
    char *pid;
};

static int read_server(const char *text, struct server_fixture *s, bool with_workers,
                       struct config_error *err)
{
    struct config_node *root = parse_ok(text);
    const struct config_server_fields fields = {
        .listen = listen_list(&s->listen),
        .listen_required = true,
        .workers = with_workers ? &s->workers : NULL,
        .log_level = &s->level,
        .control_path = &s->control,
        .pid_file = &s->pid,
    };
    int rc = config_read_server_fields(root, "etc/d.yaml", &fields, err);
    config_free(root);
    return rc;
}

static void server_fixture_free(struct server_fixture *s)
{
    listen_fixture_free(&s->listen);
    free(s->control);
    free(s->pid);
}

static void test_config_read_server_fields_fills_each_field(void **state)
{
    (void)state;
    struct server_fixture s = {.level = LOG_LEVEL_INFO, .workers = 9};
    struct config_error err = {0};
    assert_int_equal(
        read_server("listen:\n  - 127.0.0.1@5300\n  - ::1\nworkers: 4\nlog-level: debug\n"
                    "control: run/d.sock\npid-file: /run/d.pid\n",
                    &s, true, &err),
        0);
    assert_int_equal(s.listen.count, 2);
    assert_string_equal(s.listen.texts[1], "::1");
    assert_int_equal(s.workers, 4);
    assert_int_equal(s.level, LOG_LEVEL_DEBUG);
    assert_string_equal(s.control, "etc/run/d.sock");
    assert_string_equal(s.pid, "/run/d.pid");
    server_fixture_free(&s);

    /* Without a workers field the key is left to the caller (a key spec). */
    s = (struct server_fixture){.workers = 9};
    assert_int_equal(read_server("workers: nonsense\n", &s, false, &err), 0);
    assert_int_equal(s.workers, 9);
    server_fixture_free(&s);
}

static void test_config_read_server_fields_errors_name_key_in_order(void **state)
{
    (void)state;
    struct server_fixture s = {0};
    struct config_error err = {0};
    /* listen is read first, so its error wins over the bad workers below it. */
    assert_int_equal(read_server("workers: x\nlisten: []\n", &s, true, &err), BALLAST_EINVAL);
    assert_error(&err, 2, "listen: needs at least one address");
    assert_int_equal(read_server("workers: 999\n", &s, true, &err), BALLAST_EINVAL);
    assert_string_equal(err.reason, "workers: expected an integer between 0 and 256, got '999'");
    assert_int_equal(read_server("log-level: loud\n", &s, true, &err), BALLAST_EINVAL);
    assert_string_equal(err.reason, "log-level: expected error, warn, info or debug, got 'loud'");
    assert_int_equal(read_server("pid-file: [a]\n", &s, true, &err), BALLAST_EINVAL);
    assert_string_equal(err.reason, "pid-file: expected a scalar, got a list");
    assert_null(s.pid);
    server_fixture_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_tree_keeps_file_and_lines),
        cmocka_unit_test(test_config_empty_document_is_empty_map),
        cmocka_unit_test(test_config_top_level_must_be_map),
        cmocka_unit_test(test_config_duplicate_key_reported_at_second),
        cmocka_unit_test(test_config_same_key_in_different_maps_is_fine),
        cmocka_unit_test(test_config_duplicate_check_handles_large_map),
        cmocka_unit_test(test_config_anchors_and_aliases_rejected),
        cmocka_unit_test(test_config_syntax_error_has_line_and_problem),
        cmocka_unit_test(test_config_rejects_more_than_one_document),
        cmocka_unit_test(test_config_rejects_nul_in_value),
        cmocka_unit_test(test_config_rejects_collection_as_key),
        cmocka_unit_test(test_config_rejects_deep_nesting),
        cmocka_unit_test(test_config_file_over_limit_rejected),
        cmocka_unit_test(test_config_file_exactly_at_limit_accepted),
        cmocka_unit_test(test_config_endless_stream_stops_at_limit),
        cmocka_unit_test(test_config_large_file_read_whole),
        cmocka_unit_test(test_config_unreadable_file_names_os_error),
        cmocka_unit_test(test_config_error_text_formats),
        cmocka_unit_test(test_config_fail_uses_node_position),
        cmocka_unit_test(test_config_check_keys_names_unknown_and_allowed),
        cmocka_unit_test(test_config_get_uint_range_and_text),
        cmocka_unit_test(test_config_get_string_and_bool),
        cmocka_unit_test(test_config_durations_parse_units_and_reject_junk),
        cmocka_unit_test(test_config_sizes_parse_units_and_reject_junk),
        cmocka_unit_test(test_config_fail_or_cmdline_names_command_line_without_node),
        cmocka_unit_test(test_config_nomem_and_name_key),
        cmocka_unit_test(test_config_resolve_path_joins_relative_to_config_dir),
        cmocka_unit_test(test_config_section_absent_empty_or_wrong_kind),
        cmocka_unit_test(test_config_get_text_requires_non_empty_scalar),
        cmocka_unit_test(test_config_read_path_resolves_and_replaces),
        cmocka_unit_test(test_config_find_duplicate_reports_earliest_second),
        cmocka_unit_test(test_config_array_reserve_grows_at_powers_of_two),
        cmocka_unit_test(test_config_load_file_records_source_and_reads_tree),
        cmocka_unit_test(test_config_value_parse_by_type),
        cmocka_unit_test(test_config_value_store_by_width),
        cmocka_unit_test(test_config_read_section_checks_keys_and_reads_specs),
        cmocka_unit_test(test_config_read_section_absent_or_empty_reads_nothing),
        cmocka_unit_test(test_config_for_each_address_scalar_or_list),
        cmocka_unit_test(test_config_listen_append_parses_and_refuses_duplicates_and_excess),
        cmocka_unit_test(test_config_read_server_fields_fills_each_field),
        cmocka_unit_test(test_config_read_server_fields_errors_name_key_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
