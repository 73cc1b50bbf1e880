/* test_engine_shared.c — two kvchat-engines (the tiny model) on one
 * --cache-shared directory, each with its own --cache-dir, over loopback.
 *
 * Covered:
 * - a document prefilled on engine A ("tier": "disk": answered once its
 *   files, local and shared, are written) is found by engine B's periodic
 *   rescan; after kill -9 of A, a question about the document is answered
 *   by B from the shared tier (timings.cache_tier "shared", its prompt
 *   tokens restored) with the very tokens A answered with;
 * - B counts the shared hit in /v1/cache/stats and /metrics;
 * - what A was writing when it was killed (a temporary file, perhaps)
 *   does not disturb B.
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

#include "common/json.h"
#include "support.h"

#define MODEL KVCHAT_TEST_MODELS_DIR "/tiny.gguf"

/* Start an engine with its own cache directory under dir and the shared
 * one at shared. */
static void engine_start(proc_t *p, const char *dir, const char *shared, const char *name)
{
    char kv[400], log[400];
    snprintf(kv, sizeof kv, "%s/%s-kv", dir, name);
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    const char *argv[] = { "--model", MODEL, "--threads", "2", "--ctx-size", "4096",
                           "--max-tokens", "16", "--parallel", "1", "--reset",
                           "--cache-dir", kv, "--cache-shared", shared, NULL };
    proc_start(p, KVCHAT_ENGINE_EXE, argv, log, 60);
}

static char *make_doc(int n_lines)
{
    static const char *const words[] = { "alpha", "bravo", "cedar", "delta", "ember", "fjord",
                                         "grove", "harbor", "iris", "juniper", "kelp", "lumen" };
    size_t cap = (size_t)n_lines * 96 + 64;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t len = (size_t)snprintf(s, cap, "Inventory.\n");
    for (int i = 0; i < n_lines; i++)
        len += (size_t)snprintf(s + len, cap - len, "Item %d: %s %s weighs %d kg.\n", i,
                                words[(i * 7) % 12], words[(i * 5 + 3) % 12], (i * 37) % 1000);
    return s;
}

static void ask(int port, const char *doc, resp_t *r)
{
    char *body = json_take_dump(json_pack(
        "{s:[{s:s, s:s}, {s:s, s:s}], s:f, s:i, s:b}", "messages", "role", "system", "content",
        doc, "role", "user", "content", "What weighs the most?", "temperature", 0.0,
        "max_tokens", 16, "return_tokens", 1));
    http(port, "POST", "/v1/chat/completions", body, r);
    free(body);
    if (r->status != 200)
        fail_msg("chat: HTTP %ld: %s", r->status, r->body);
}

static long long shared_stat(int port, const char *field)
{
    resp_t r;
    http(port, "GET", "/v1/cache/stats", NULL, &r);
    json_t *v = jpath(r.json, field);
    long long n = v ? json_integer_value(v) : -1;
    resp_free(&r);
    return n;
}

static void test_takeover_from_shared(void **state)
{
    (void)state;
    char dir[256], shared[300];
    tmpdir_make(dir, sizeof dir);
    snprintf(shared, sizeof shared, "%s/shared", dir);
    proc_t a, b;
    engine_start(&a, dir, shared, "a");
    engine_start(&b, dir, shared, "b");
    char *doc = make_doc(30);

    resp_t r;
    char *body = json_take_dump(json_pack("{s:[{s:s, s:s}], s:s}", "messages", "role", "system",
                                          "content", doc, "tier", "disk"));
    http(a.port, "POST", "/v1/cache/prefill", body, &r);
    free(body);
    if (r.status != 200)
        fail_msg("prefill: HTTP %ld: %s", r.status, r.body);
    long long n_doc = jint(r.json, "n_tokens");
    assert_true(n_doc > 100);
    resp_free(&r);
    assert_int_equal(shared_stat(a.port, "shared.writes"), 1);

    resp_t ra;
    ask(a.port, doc, &ra);

    /* B's rescan (every 2 s) finds the file. */
    double until = now_ms() + 15000;
    while (shared_stat(b.port, "shared.entries") < 1 && now_ms() < until)
        usleep(100 * 1000);
    assert_true(shared_stat(b.port, "shared.entries") >= 1);

    kill(a.pid, SIGKILL);
    waitpid(a.pid, NULL, 0);
    a.pid = 0;

    resp_t rb;
    ask(b.port, doc, &rb);
    assert_string_equal(jstr(rb.json, "timings.cache_tier"), "shared");
    assert_true(jint(rb.json, "timings.cache_n") >= n_doc - 1);
    json_t *ta = jpath(ra.json, "choices.0.tokens"), *tb = jpath(rb.json, "choices.0.tokens");
    assert_non_null(ta);
    assert_non_null(tb);
    assert_true(json_array_size(tb) > 0);
    if (!json_equal(ta, tb))
        fail_msg("answers differ:\n  %s\n  %s", json_dumps(ta, JSON_COMPACT),
                 json_dumps(tb, JSON_COMPACT));
    assert_int_equal(shared_stat(b.port, "shared.hits"), 1);
    assert_int_equal(shared_stat(b.port, "requests.shared"), 1);
    resp_free(&ra);
    resp_free(&rb);

    http(b.port, "GET", "/metrics", NULL, &r);
    assert_non_null(strstr(r.body, "kvchat_engine_cache_hits_total{tier=\"shared\"} 1\n"));
    assert_non_null(strstr(r.body, "kvchat_engine_cache_requests_total{tier=\"shared\"} 1\n"));
    resp_free(&r);

    /* The same question again: B's own copy now (its slot). */
    ask(b.port, doc, &rb);
    assert_string_not_equal(jstr(rb.json, "timings.cache_tier"), "none");
    resp_free(&rb);

    assert_int_equal(proc_stop(&b), 0);
    free(doc);
    tmpdir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_takeover_from_shared),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    proc_kill_all();
    return rc;
}
