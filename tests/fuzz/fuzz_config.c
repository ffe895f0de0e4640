/* libFuzzer harness: any bytes as a YAML config: config_parse_string() (the tree, freed), then
 * the same text as a file through both daemons' schemas, resolver_config_load() and
 * authd_config_load(), each followed by its validate step on success. Everything is freed; the
 * loaders must fail cleanly with file:line. Build: docs/fuzzing.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd_config.h"
#include "config.h"
#include "errors.h"
#include "fuzz_util.h"
#include "resolver_config.h"

/* Every node of a parsed tree is well formed: kinds, counts and lines. */
static void fuzz_check_tree(const struct config_node *node)
{
    FUZZ_CHECK(node != NULL && node->file != NULL);
    switch (node->kind) {
    case CONFIG_SCALAR:
        FUZZ_CHECK(node->scalar != NULL);
        break;
    case CONFIG_MAP:
        for (size_t i = 0; i < node->count; i++) {
            FUZZ_CHECK(node->keys[i] != NULL);
            FUZZ_CHECK(config_map_get(node, node->keys[i]) != NULL);
            fuzz_check_tree(node->values[i]);
        }
        break;
    case CONFIG_LIST:
        for (size_t i = 0; i < node->count; i++)
            fuzz_check_tree(node->values[i]);
        break;
    default:
        FUZZ_CHECK(!"unknown node kind");
    }
}

static void fuzz_check_error(const struct config_error *err)
{
    char text[1200];
    FUZZ_CHECK(err->reason[0] != '\0');
    FUZZ_CHECK(config_error_text(err, text, sizeof text) != NULL);
}

static void fuzz_parse_string(const uint8_t *data, size_t size)
{
    struct config_node *root = NULL;
    struct config_error err;
    memset(&err, 0, sizeof err);
    int rc = config_parse_string("fuzz.yaml", (const char *)data, size, &root, &err);
    if (rc == 0) {
        fuzz_check_tree(root);
        config_free(root);
    } else {
        FUZZ_CHECK(root == NULL);
        fuzz_check_error(&err);
    }
}

static void fuzz_resolver(const char *path)
{
    struct resolver_config cfg;
    struct config_error err;
    memset(&err, 0, sizeof err);
    if (resolver_config_load(path, &cfg, &err) != 0) {
        fuzz_check_error(&err);
        resolver_config_free(&cfg); /* freed on error already; must be safe again */
        return;
    }
    if (resolver_config_validate(&cfg, &err) != 0)
        fuzz_check_error(&err);
    resolver_config_free(&cfg);
}

static void fuzz_authd(const char *path)
{
    struct authd_config cfg;
    struct config_error err;
    memset(&err, 0, sizeof err);
    if (authd_config_load(path, &cfg, &err) != 0) {
        fuzz_check_error(&err);
        authd_config_free(&cfg); /* left freed/initialised on error: safe again */
        return;
    }
    if (authd_config_validate(&cfg, &err) != 0)
        fuzz_check_error(&err);
    authd_config_free(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parse_string(data, size);
    const char *path = fuzz_file_write("config.yaml", data, size);
    fuzz_resolver(path);
    fuzz_authd(path);
    return 0;
}
