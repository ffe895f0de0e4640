/* Scratch files for the libFuzzer harnesses (fuzz_util.h): a directory made with mkdtemp() under
 * $TMPDIR (or /tmp) on first use, one file per name rewritten for each input, all removed by
 * atexit(). */
#include "fuzz_util.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_FILE_NAMES 4

static char fuzz_dir[PATH_MAX];
static char fuzz_path[PATH_MAX];
static char fuzz_names[FUZZ_FILE_NAMES][64];
static size_t fuzz_name_count;

static void fuzz_file_cleanup(void)
{
    char path[PATH_MAX];
    for (size_t i = 0; i < fuzz_name_count; i++) {
        snprintf(path, sizeof path, "%s/%s", fuzz_dir, fuzz_names[i]);
        unlink(path);
    }
    rmdir(fuzz_dir);
}

static void fuzz_file_init(void)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || *tmp == '\0')
        tmp = "/tmp";
    if (snprintf(fuzz_dir, sizeof fuzz_dir, "%s/ballast-fuzz-XXXXXX", tmp) >= (int)sizeof fuzz_dir)
        abort();
    if (mkdtemp(fuzz_dir) == NULL) {
        perror("fuzz_file: mkdtemp");
        abort();
    }
    atexit(fuzz_file_cleanup);
}

static void fuzz_file_remember(const char *name)
{
    for (size_t i = 0; i < fuzz_name_count; i++)
        if (strcmp(fuzz_names[i], name) == 0)
            return;
    if (fuzz_name_count == FUZZ_FILE_NAMES || strlen(name) >= sizeof fuzz_names[0])
        abort();
    strcpy(fuzz_names[fuzz_name_count++], name);
}

const char *fuzz_file_write(const char *name, const uint8_t *data, size_t size)
{
    if (fuzz_dir[0] == '\0')
        fuzz_file_init();
    fuzz_file_remember(name);
    snprintf(fuzz_path, sizeof fuzz_path, "%s/%s", fuzz_dir, name);
    int fd = open(fuzz_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror("fuzz_file: open");
        abort();
    }
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            perror("fuzz_file: write");
            abort();
        }
        done += (size_t)n;
    }
    close(fd);
    return fuzz_path;
}
