/* test_engines.c — one kvchat over several kvchat-engines
 * (engine.endpoints): the real app, three real engines with the tiny
 * model, the real extractor, over loopback.
 *
 * Covered:
 * - /model/status lists the engines and says how many answer; starting
 *   the model is refused with 409 (the engines run elsewhere);
 * - caching puts each document's entry on exactly one engine, and the
 *   documents spread over the engines;
 * - questions about a document, in any session, go to the engine that
 *   cached it: the prompt comes from its cache;
 * - kill -9 of a document's engine: the next question about it is still
 *   answered (by the next engine of its ranking), the engine is reported
 *   down, and the other documents keep their engines and caches;
 * - engine.endpoints that cannot be read stops kvchat at start with a
 *   sentence;
 * - engine.count: two engines supervised by kvchat, each with its own
 *   port and cache directory, routed over alike, writing to the cache
 *   tier they share (engine.cache_shared); Stop stops both;
 * - an OpenAI-compatible server listed as "openai:URL": caching warms its
 *   prefix cache, and the question finds it there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <ftw.h>
#include <sys/stat.h>

#include "common/json.h"
#include "fixtures.h"
#include "support.h"

#define MODEL KVCHAT_TEST_MODELS_DIR "/tiny.gguf"
#define KVCHAT KVCHAT_BIN_DIR "/kvchat"
#define API "/api/v1"
#define KEY "engines-test-key"
#define N_ENGINES 3
#define N_DOCS 12

static char g_dir[256];
static proc_t g_engine[N_ENGINES], g_app;
static char g_doc[N_DOCS][64];
static int g_home[N_DOCS];          /* the engine each document was cached on */
static long long g_tokens[N_DOCS];

/* Entries in engine i's cache. */
static int cache_entries(int i)
{
    return engine_cache_count(g_engine[i].port, KEY);
}

/* A text of its own for document i: distinct words, a few hundred tokens. */
static char *doc_text(int i)
{
    static const char *const words[] = { "harbor", "ferry", "lamp", "keeper", "island",
                                         "storm", "tide", "signal", "rock", "beacon",
                                         "gull", "pier", "rope", "sail", "fog" };
    size_t cap = 8192, len = 0;
    char *t = malloc(cap);
    len += (size_t)snprintf(t + len, cap - len, "# Logbook %d\n\n", i);
    unsigned x = 2654435761u * (unsigned)(i + 1);
    for (int s = 0; s < 60; s++) {
        for (int w = 0; w < 12; w++) {
            x = x * 1103515245u + 12345u;
            len += (size_t)snprintf(t + len, cap - len, "%s%s", w ? " " : "",
                                    words[(x >> 16) % 15]);
        }
        len += (size_t)snprintf(t + len, cap - len, ".\n");
    }
    return t;
}

static int group_setup(void **state)
{
    (void)state;
    tmpdir_make(g_dir, sizeof g_dir);
    char list[1024] = "engine.endpoints=";
    for (int i = 0; i < N_ENGINES; i++) {
        char kv[300], log[300];
        snprintf(kv, sizeof kv, "%s/kv%d", g_dir, i);
        snprintf(log, sizeof log, "%s/engine%d.log", g_dir, i);
        const char *argv[] = { "--model", MODEL, "--threads", "1", "--ctx-size", "4096",
                               "--parallel", "2", "--cache-dir", kv, "--api-key", KEY, NULL };
        proc_start(&g_engine[i], KVCHAT_ENGINE_EXE, argv, log, 60);
        char url[64];
        snprintf(url, sizeof url, "%shttp://127.0.0.1:%d", i ? ", " : "", g_engine[i].port);
        strcat(list, url);
    }
    char data[300], log[300];
    snprintf(data, sizeof data, "%s/data", g_dir);
    snprintf(log, sizeof log, "%s/kvchat.log", g_dir);
    const char *argv[] = { "--data", data, "--set", list, "--set", "engine.api_key=" KEY,
                           "--set", "llm.max_tokens=4", "--set", "llm.temperature=0", NULL };
    proc_start(&g_app, KVCHAT, argv, log, 60);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int bad = proc_stop(&g_app) != 0;
    for (int i = 0; i < N_ENGINES; i++)
        if (g_engine[i].pid > 0)
            bad |= proc_stop(&g_engine[i]) != 0;
    tmpdir_remove(g_dir);
    return bad ? -1 : 0;
}

static void test_status(void **state)
{
    (void)state;
    resp_t r;
    http(g_app.port, "GET", API "/model/status", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "running");
    assert_string_equal(jstr(r.json, "message"), "3 of 3 engines answering");
    assert_int_equal(json_array_size(jpath(r.json, "engines")), N_ENGINES);
    assert_true(json_is_true(jpath(r.json, "engines.0.healthy")));
    resp_free(&r);
    /* the engines are run where they are: kvchat does not start them */
    http_set_bearer(NULL);
    http(g_app.port, "POST", API "/model/up/without_reset", NULL, &r);
    assert_int_equal(r.status, 409);
    assert_non_null(strstr(jstr(r.json, "detail"), "engine.endpoints"));
    resp_free(&r);
}

/* Caching: one engine per document, found by which engine's cache grew. */
static void test_caching_spreads(void **state)
{
    (void)state;
    int used[N_ENGINES] = { 0 };
    for (int d = 0; d < N_DOCS; d++) {
        char name[32];
        snprintf(name, sizeof name, "log%d.md", d);
        char *text = doc_text(d);
        const char *p = fixture_raw(g_dir, name, text, strlen(text));
        free(text);
        resp_t r;
        http_upload(g_app.port, API "/documents/upload", p, name, &r);
        assert_int_equal(r.status, 200);
        snprintf(g_doc[d], sizeof g_doc[d], "%s", jstr(r.json, "doc_id"));
        resp_free(&r);
        int before[N_ENGINES];
        for (int i = 0; i < N_ENGINES; i++)
            before[i] = cache_entries(i);
        char path[256];
        snprintf(path, sizeof path, API "/documents/cache/%s", g_doc[d]);
        http(g_app.port, "POST", path, NULL, &r);
        if (r.status != 200)
            fail_msg("caching %s: %ld %s", name, r.status, r.body);
        g_tokens[d] = jint(r.json, "n_tokens");
        resp_free(&r);
        g_home[d] = -1;
        for (int i = 0; i < N_ENGINES; i++) {
            int grew = cache_entries(i) - before[i];
            assert_true(grew == 0 || grew == 1);
            if (grew) {
                assert_int_equal(g_home[d], -1);   /* on one engine only */
                g_home[d] = i;
            }
        }
        assert_true(g_home[d] >= 0);
        used[g_home[d]]++;
    }
    int engines_used = 0;
    for (int i = 0; i < N_ENGINES; i++)
        engines_used += used[i] > 0;
    assert_true(engines_used >= 2);
}

/* Ask about document d in a new session; its cached tokens into *cached. */
static void ask(int d, const char *session, long want, long long *cached)
{
    char path[256], body[256];
    snprintf(path, sizeof path, API "/session/%s/messages", session);
    snprintf(body, sizeof body, "{\"message\":\"Which lamp?\",\"document_id\":\"%s\"}", g_doc[d]);
    resp_t r;
    http(g_app.port, "POST", path, body, &r);
    if (r.status != want)
        fail_msg("asking about document %d: %ld %s", d, r.status, r.body);
    *cached = jint(r.json, "usage.cached_tokens");
    resp_free(&r);
}

static void test_questions_go_home(void **state)
{
    (void)state;
    for (int d = 0; d < N_DOCS; d++)
        for (int k = 0; k < 2; k++) {   /* two sessions each */
            char sid[64];
            snprintf(sid, sizeof sid, "home-%d-%d", d, k);
            long long cached = 0;
            ask(d, sid, 200, &cached);
            if (cached < g_tokens[d] - 2)
                fail_msg("document %d: %lld of %lld tokens from the cache", d, cached,
                         g_tokens[d]);
        }
}

static void test_engine_killed(void **state)
{
    (void)state;
    int victim = g_home[0];
    kill(g_engine[victim].pid, SIGKILL);
    waitpid(g_engine[victim].pid, NULL, 0);
    g_engine[victim].pid = 0;
    /* its document is answered all the same, by another engine */
    long long cached = 0;
    ask(0, "after-kill-0", 200, &cached);
    resp_t r;
    http(g_app.port, "GET", API "/model/status", NULL, &r);
    assert_string_equal(jstr(r.json, "status"), "running");
    assert_string_equal(jstr(r.json, "message"), "2 of 3 engines answering");
    char key[64];
    snprintf(key, sizeof key, "engines.%d.healthy", victim);
    assert_true(json_is_false(jpath(r.json, key)));
    resp_free(&r);
    /* the others keep their engines and caches */
    for (int d = 1; d < N_DOCS; d++) {
        if (g_home[d] == victim)
            continue;
        char sid[64];
        snprintf(sid, sizeof sid, "after-kill-%d", d);
        ask(d, sid, 200, &cached);
        if (cached < g_tokens[d] - 2)
            fail_msg("document %d lost its cache: %lld of %lld tokens", d, cached, g_tokens[d]);
    }
}

static void test_bad_endpoints(void **state)
{
    (void)state;
    char data[300], log[300];
    snprintf(data, sizeof data, "%s/bad-data", g_dir);
    snprintf(log, sizeof log, "%s/bad.log", g_dir);
    const char *argv[] = { "--data", data, "--set", "engine.endpoints=ftp://10.0.0.1:13141",
                           NULL };
    proc_t p;
    assert_false(proc_try_start(&p, KVCHAT, argv, log, 30));
    assert_true(log_contains(log, "engine.endpoints: 'ftp://10.0.0.1:13141' is not an http:// "
                                  "or https:// URL"));
}

/* Upload document `seed` to the kvchat on port, cache it (its tier into
 * tier, when not NULL, and its tokens into *tokens) and ask about it in
 * session sid (the cached tokens of the answer into *cached). */
static void upload_cache_ask(int port, int seed, const char *sid, char *tier, long long *tokens,
                             long long *cached)
{
    char name[32];
    snprintf(name, sizeof name, "doc%d.md", seed);
    char *text = doc_text(seed);
    const char *p = fixture_raw(g_dir, name, text, strlen(text));
    free(text);
    resp_t r;
    http_upload(port, API "/documents/upload", p, name, &r);
    assert_int_equal(r.status, 200);
    char path[256], body[256];
    snprintf(path, sizeof path, API "/documents/cache/%s", jstr(r.json, "doc_id"));
    snprintf(body, sizeof body, "{\"message\":\"Which lamp?\",\"document_id\":\"%s\"}",
             jstr(r.json, "doc_id"));
    resp_free(&r);
    http(port, "POST", path, NULL, &r);
    if (r.status != 200)
        fail_msg("caching %s: %ld %s", name, r.status, r.body);
    *tokens = jint(r.json, "n_tokens");
    if (tier)
        snprintf(tier, 32, "%s", jstr(r.json, "tier"));
    resp_free(&r);
    snprintf(path, sizeof path, API "/session/%s/messages", sid);
    http(port, "POST", path, body, &r);
    assert_int_equal(r.status, 200);
    *cached = jint(r.json, "usage.cached_tokens");
    resp_free(&r);
}

static int g_kvs;

static int one_kvs(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    size_t n = strlen(path);
    if (flag == FTW_F && n > 4 && strcmp(path + n - 4, ".kvs") == 0)
        g_kvs++;
    return 0;
}

/* Entry files (*.kvs) anywhere under dir. */
static int count_kvs(const char *dir)
{
    g_kvs = 0;
    nftw(dir, one_kvs, 8, FTW_PHYS);
    return g_kvs;
}

/* engine.count: kvchat supervises two engines of the local model, each
 * with its own port, cache and logs, and routes over them; Stop stops
 * both. */
static void test_engine_count(void **state)
{
    (void)state;
    char data[300], log[300], port[64], shared[400];
    snprintf(data, sizeof data, "%s/count-data", g_dir);
    snprintf(log, sizeof log, "%s/count.log", g_dir);
    snprintf(shared, sizeof shared, "engine.cache_shared=%s/count-shared", g_dir);
    /* two consecutive ports, held until kvchat has its own (which could
     * otherwise be the second), then given to the engines */
    int held[2] = { -1, -1 }, first = 0;
    while (held[1] < 0) {
        first = free_port();
        for (int i = 0; i < 2; i++) {
            held[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            struct sockaddr_in sa = { .sin_family = AF_INET,
                                      .sin_port = htons((uint16_t)(first + i)),
                                      .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
            if (bind(held[i], (struct sockaddr *)&sa, sizeof sa) != 0) {
                close(held[0]);
                if (i)
                    close(held[1]);
                held[0] = held[1] = -1;
                break;
            }
        }
    }
    snprintf(port, sizeof port, "engine.port=%d", first);
    const char *argv[] = { "--data", data, "--model", MODEL, "--no-autostart", "--set",
                           "engine.count=2", "--set", port, "--set", "engine.threads=1", "--set",
                           "llm.max_tokens=4", "--set", shared, NULL };
    proc_t app;
    proc_start(&app, KVCHAT, argv, log, 60);
    close(held[0]);
    close(held[1]);
    resp_t r;
    http(app.port, "POST", API "/model/up/without_reset", NULL, &r);
    if (r.status != 200)
        fail_msg("start: %ld %s", r.status, r.body);
    resp_free(&r);
    app_wait_model(app.port, "running");
    double end = now_ms() + 60000;
    for (;;) {   /* both engines up */
        http(app.port, "GET", API "/model/status", NULL, &r);
        bool both = json_array_size(jpath(r.json, "engines")) == 2 &&
                    json_is_true(jpath(r.json, "engines.0.healthy")) &&
                    json_is_true(jpath(r.json, "engines.1.healthy"));
        resp_free(&r);
        if (both)
            break;
        assert_true(now_ms() < end);
        usleep(200 * 1000);
    }
    for (int i = 0; i < 2; i++) {
        char dir[400];
        snprintf(dir, sizeof dir, "%s/kvcache/engine-%d", data, i);
        assert_int_equal(access(dir, F_OK), 0);
    }
    long long tokens, cached;
    upload_cache_ask(app.port, 99, "count-1", NULL, &tokens, &cached);
    assert_true(cached >= tokens - 2);
    /* engine.cache_shared: the engines write to the tier they share */
    char dir[400];
    snprintf(dir, sizeof dir, "%s/count-shared", g_dir);
    /* (written by the engine's writer thread after the answer) */
    for (double until = now_ms() + 15000; count_kvs(dir) < 1;) {
        assert_true(now_ms() < until);
        usleep(100 * 1000);
    }
    http(app.port, "POST", API "/model/down", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_false(http_try(first, "GET", "/health", NULL, &r));
    assert_false(http_try(first + 1, "GET", "/health", NULL, &r));
    assert_int_equal(proc_stop(&app), 0);
}

/* An OpenAI-compatible server in engine.endpoints ("openai:URL"; here a
 * kvchat-engine spoken to as any OpenAI server would be): caching warms
 * its own prefix cache (tier "remote"), and the question then finds it. */
static void test_openai_endpoint(void **state)
{
    (void)state;
    int live = g_engine[0].pid > 0 ? 0 : 1;
    char data[300], log[300], list[128];
    snprintf(data, sizeof data, "%s/openai-data", g_dir);
    snprintf(log, sizeof log, "%s/openai.log", g_dir);
    snprintf(list, sizeof list, "engine.endpoints=openai:http://127.0.0.1:%d/v1",
             g_engine[live].port);
    const char *argv[] = { "--data", data, "--set", list, "--set", "engine.api_key=" KEY,
                           "--set", "llm.max_tokens=4", NULL };
    proc_t app;
    proc_start(&app, KVCHAT, argv, log, 60);
    char tier[32];
    long long tokens, cached;
    upload_cache_ask(app.port, 77, "remote-1", tier, &tokens, &cached);
    assert_string_equal(tier, "remote");
    assert_true(tokens > 100);
    assert_true(cached >= tokens - 16);
    assert_int_equal(proc_stop(&app), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_caching_spreads),
        cmocka_unit_test(test_questions_go_home),
        cmocka_unit_test(test_engine_killed),
        cmocka_unit_test(test_bad_endpoints),
        cmocka_unit_test(test_engine_count),
        cmocka_unit_test(test_openai_endpoint),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
