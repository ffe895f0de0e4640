/* Unit tests for common/config.c: YAML into a tree with lines, what a config may not contain,
 * and the typed reads (integers, booleans, durations, sizes) with their error texts. */
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
