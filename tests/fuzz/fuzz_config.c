/* fuzz_config.c — kvchat's config file (app/config.c, over inih).
 *
 * The input is the file given as `kvchat --config FILE`: config_load()
 * reads it (from a memfd, through /proc/self/fd) with no KVCHAT_*
 * variable in the environment, then config_resolve() derives the paths.
 *
 * Checked besides memory safety: a failure leaves a message; after a
 * success every string setting is NUL-terminated within its field,
 * integers are in the ranges the settings table allows (the ones checked
 * here), the provider and log format are known words, and at most
 * CONFIG_MAX_REMOTES remotes exist, each with a known provider.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/config.h"
#include "fuzz_util.h"

extern char **environ;

static int g_fd = -1;
static char g_path[64];
static config_t g_cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* The environment overrides the file: take kvchat's variables out. */
    for (;;) {
        char name[128] = "";
        for (char **e = environ; *e; e++)
            if (strncmp(*e, "KVCHAT_", 7) == 0) {
                size_t n = strcspn(*e, "=");
                snprintf(name, sizeof name, "%.*s", (int)n, *e);
                break;
            }
        if (!name[0])
            break;
        unsetenv(name);
    }
    g_fd = fuzz_memfd("kvchat.ini");
    snprintf(g_path, sizeof g_path, "/proc/self/fd/%d", g_fd);
    return 0;
}

#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

static void check_config(const config_t *c)
{
    FUZZ_CHECK(TERMINATED(c->host) && TERMINATED(c->cors_origins) && TERMINATED(c->api_key) &&
                   TERMINATED(c->allowed_hosts) && TERMINATED(c->data_dir) &&
                   TERMINATED(c->database) && TERMINATED(c->system_template) &&
                   TERMINATED(c->system_no_doc) && TERMINATED(c->provider) &&
                   TERMINATED(c->llm_base_url) && TERMINATED(c->llm_api_key) &&
                   TERMINATED(c->llm_model) && TERMINATED(c->engine_exe) &&
                   TERMINATED(c->model_path) && TERMINATED(c->models_dir) &&
                   TERMINATED(c->cache_dir) && TERMINATED(c->extract_exe) &&
                   TERMINATED(c->log_level) && TERMINATED(c->log_format) &&
                   TERMINATED(c->logs_dir) && TERMINATED(c->config_file),
               "a string setting is not terminated");
    FUZZ_CHECK(c->port >= 0 && c->port <= 65535, "port %d", c->port);
    FUZZ_CHECK(c->engine_port >= 0 && c->engine_port <= 65535, "engine port %d", c->engine_port);
    FUZZ_CHECK(c->parallel >= 1 && c->parallel <= 64, "parallel %d", c->parallel);
    FUZZ_CHECK(c->max_upload_mb >= 1, "max_upload_mb %d", c->max_upload_mb);
    FUZZ_CHECK(c->extract_mem_mb >= 16, "extract memory %d", c->extract_mem_mb);
    FUZZ_CHECK(!strcmp(c->provider, "local") || !strcmp(c->provider, "openai") ||
                   !strcmp(c->provider, "gemini"),
               "provider '%s'", c->provider);
    FUZZ_CHECK(!strcmp(c->log_format, "text") || !strcmp(c->log_format, "json"), "log format '%s'",
               c->log_format);
    FUZZ_CHECK(c->n_remotes >= 0 && c->n_remotes <= CONFIG_MAX_REMOTES, "%d remotes", c->n_remotes);
    for (int i = 0; i < c->n_remotes; i++) {
        const config_remote_t *r = &c->remotes[i];
        FUZZ_CHECK(TERMINATED(r->name) && TERMINATED(r->provider) && TERMINATED(r->base_url) &&
                       TERMINATED(r->api_key) && TERMINATED(r->model),
                   "remote %d: a string is not terminated", i);
        FUZZ_CHECK(r->name[0] != '\0', "remote %d without a name", i);
        FUZZ_CHECK(!strcmp(r->provider, "openai") || !strcmp(r->provider, "gemini"),
                   "remote %d: provider '%s'", i, r->provider);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds = fuzz_fds_mark();
    fuzz_memfd_set(g_fd, data, size);
    char *argv[] = { "kvchat", "--config", g_path, NULL };
    char err[512];
    memset(err, 'x', sizeof err);
    int rc = config_load(&g_cfg, 3, argv, err, sizeof err);
    FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL, "message not terminated");
    FUZZ_CHECK(rc == 0 || rc == -1, "config_load returned %d", rc);
    if (rc == 0) {
        config_resolve(&g_cfg);
        check_config(&g_cfg);
    } else {
        FUZZ_CHECK(err[0] != '\0', "a failure without a message");
    }
    fuzz_fds_check(fds);
    return 0;
}
