/* test_cluster.c — kvchat as a cluster on one machine: PostgreSQL (a
 * throw-away cluster from scripts/pgtmp, KVCHAT_TEST_PG), two app replicas
 * on it and on one data directory, three kvchat-engines with the tiny
 * model, over loopback.
 *
 * Covered:
 * - a document uploaded on one replica is listed, cached and chatted with
 *   on the other, and its questions hit the cache of the engine both
 *   replicas route it to; a session started on one continues on the other;
 * - a model switch on one replica is followed by the other, and so are a
 *   start and a stop of replicas that each supervise an engine;
 * - kill -9 of the document's engine: the next question is answered by
 *   another engine, which restores the document from the tier the
 *   engines share (cache_tier "shared"), and nothing stored is lost;
 * - kill -9 of a replica in the middle of a streamed answer: the client
 *   resends to the other replica with the same idempotency key and gets
 *   its answer, with one user message in the session, not two;
 * - the idle-session sweep runs once per interval for all the replicas,
 *   not once in each.
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
#include "fixtures.h"
#include "support.h"

#define MODEL KVCHAT_TEST_MODELS_DIR "/tiny.gguf"
#define KVCHAT KVCHAT_BIN_DIR "/kvchat"
#define API "/api/v1"
#define KEY "cluster-test-key"
#define N_ENGINES 3

static char g_dir[256], g_data[300], g_db[600], g_list[600];
static proc_t g_engine[N_ENGINES], g_app[2];
static char g_doc[64];
static long long g_tokens;

/* Start a replica on the shared database and data directory, answering
 * with at most max_tokens ("llm.max_tokens=N"). */
static void replica_start(proc_t *p, const char *name, const char *max_tokens)
{
    char log[300];
    snprintf(log, sizeof log, "%s/%s.log", g_dir, name);
    char remote[96];
    snprintf(remote, sizeof remote, "remote.direct.base_url=http://127.0.0.1:%d/v1",
             g_engine[0].port);
    const char *argv[] = { "--data", g_data, "--set", g_db, "--set", g_list, "--set",
                           "engine.api_key=" KEY, "--set", max_tokens, "--set",
                           "llm.temperature=0", "--set", "remote.direct.provider=openai", "--set",
                           remote, "--set", "remote.direct.api_key=" KEY, NULL };
    proc_start(p, KVCHAT, argv, log, 60);
}

static int group_setup(void **state)
{
    (void)state;
    const char *pg = getenv("KVCHAT_TEST_PG");
    if (!pg || !*pg) {
        fprintf(stderr, "test_cluster: KVCHAT_TEST_PG is not set (run it through scripts/pgtmp)\n");
        return -1;
    }
    tmpdir_make(g_dir, sizeof g_dir);
    snprintf(g_data, sizeof g_data, "%s/data", g_dir);
    snprintf(g_db, sizeof g_db, "data.database=%s", pg);
    snprintf(g_list, sizeof g_list, "engine.endpoints=");
    for (int i = 0; i < N_ENGINES; i++) {
        char kv[300], log[300], shared[300];
        snprintf(kv, sizeof kv, "%s/kv%d", g_dir, i);
        snprintf(log, sizeof log, "%s/engine%d.log", g_dir, i);
        snprintf(shared, sizeof shared, "%s/shared-kv", g_dir);   /* all three's */
        const char *argv[] = { "--model", MODEL, "--threads", "1", "--ctx-size", "4096",
                               "--cache-dir", kv, "--cache-shared", shared, "--api-key", KEY,
                               NULL };
        proc_start(&g_engine[i], KVCHAT_ENGINE_EXE, argv, log, 60);
        char url[64];
        snprintf(url, sizeof url, "%shttp://127.0.0.1:%d", i ? "," : "", g_engine[i].port);
        strcat(g_list, url);
    }
    /* the first answers at length (a stream to cut in the middle), the
     * second briefly (conversations stay within the tiny context) */
    replica_start(&g_app[0], "replica0", "llm.max_tokens=300");
    replica_start(&g_app[1], "replica1", "llm.max_tokens=16");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int bad = 0;
    for (int i = 0; i < 2; i++)
        if (g_app[i].pid > 0)
            bad |= proc_stop(&g_app[i]) != 0;
    for (int i = 0; i < N_ENGINES; i++)
        if (g_engine[i].pid > 0)
            bad |= proc_stop(&g_engine[i]) != 0;
    tmpdir_remove(g_dir);
    return bad ? -1 : 0;
}

/* Entries in engine i's cache. */
static int cache_entries(int i)
{
    return engine_cache_count(g_engine[i].port, KEY);
}

/* Ask on replica `on` in session sid; the answer's cached tokens (and
 * where they came from into tier, when not NULL). */
static long long ask_tier(int on, const char *sid, const char *question, char *tier)
{
    char path[256], body[256];
    snprintf(path, sizeof path, API "/session/%s/messages", sid);
    snprintf(body, sizeof body, "{\"message\":\"%s\",\"document_id\":\"%s\"}", question, g_doc);
    resp_t r;
    http(g_app[on].port, "POST", path, body, &r);
    if (r.status != 200)
        fail_msg("replica %d, session %s: %ld %s", on, sid, r.status, r.body);
    long long cached = jint(r.json, "usage.cached_tokens");
    const char *from = jstr(r.json, "timings.cache_tier");
    if (tier)
        snprintf(tier, 32, "%s", from ? from : "");
    resp_free(&r);
    return cached;
}

static long long ask(int on, const char *sid, const char *question)
{
    return ask_tier(on, sid, question, NULL);
}

static size_t messages(int on, const char *sid, resp_t *r)
{
    char path[256];
    snprintf(path, sizeof path, API "/session/%s/messages", sid);
    http(g_app[on].port, "GET", path, NULL, r);
    assert_int_equal(r->status, 200);
    return json_array_size(jpath(r->json, "messages"));
}

static void test_replicas_share(void **state)
{
    (void)state;
    static const char text[] =
        "# The harbor\n\nThe ferry leaves the north pier every forty minutes. The lamp keeper "
        "climbs the tower at dusk and trims the wick. Gulls follow the fishing boats home.\n";
    char *long_text = malloc(16384);
    long_text[0] = '\0';
    for (int i = 0; i < 20; i++)
        strcat(long_text, text);
    const char *p = fixture_raw(g_dir, "harbor.md", long_text, strlen(long_text));
    free(long_text);
    resp_t r;
    http_upload(g_app[0].port, API "/documents/upload", p, "harbor.md", &r);
    assert_int_equal(r.status, 200);
    snprintf(g_doc, sizeof g_doc, "%s", jstr(r.json, "doc_id"));
    resp_free(&r);
    /* the other replica lists it and caches it */
    http(g_app[1].port, "GET", API "/documents/list", NULL, &r);
    assert_int_equal(json_array_size(r.json), 1);
    assert_string_equal(jstr(r.json, "0.doc_id"), g_doc);
    resp_free(&r);
    char path[256];
    snprintf(path, sizeof path, API "/documents/cache/%s", g_doc);
    http(g_app[1].port, "POST", path, NULL, &r);
    assert_int_equal(r.status, 200);
    g_tokens = jint(r.json, "n_tokens");
    resp_free(&r);
    int holders = 0;
    for (int i = 0; i < N_ENGINES; i++)
        holders += cache_entries(i) > 0;
    assert_int_equal(holders, 1);
    /* a question on the first replica finds that engine's cache; the
     * session goes on on the second */
    assert_true(ask(0, "shared-1", "When does the ferry leave?") >= g_tokens - 2);
    assert_true(ask(1, "shared-1", "Who trims the wick?") >= g_tokens - 2);
    assert_int_equal(messages(0, "shared-1", &r), 4);
    assert_string_equal(jstr(r.json, "messages.2.content"), "Who trims the wick?");
    resp_free(&r);
}

/* The serving name replica `on` reports. */
static char *serving(int on)
{
    resp_t r;
    http(g_app[on].port, "GET", API "/model/status", NULL, &r);
    char *name = strdup(jstr(r.json, "serving_name"));
    resp_free(&r);
    return name;
}

/* A model switch on one replica is followed by the other. */
static void test_switch_followed(void **state)
{
    (void)state;
    char *engines_model = serving(0);
    for (int k = 0; k < 2; k++) {
        int on = k, other = 1 - k;
        const char *to = k == 0 ? "direct" : engines_model;
        char body[300];
        snprintf(body, sizeof body, "{\"serving_name\":\"%s\"}", to);
        resp_t r;
        http(g_app[on].port, "POST", API "/model/switch", body, &r);
        if (r.status != 200)
            fail_msg("switch to %s on replica %d: %ld %s", to, on, r.status, r.body);
        resp_free(&r);
        double end = now_ms() + 10000;
        for (;;) {
            char *now = serving(other);
            bool followed = strcmp(now, to) == 0;
            free(now);
            if (followed)
                break;
            if (now_ms() > end)
                fail_msg("replica %d did not follow the switch to %s", other, to);
            usleep(100 * 1000);
        }
    }
    free(engines_model);
}

static void test_engine_killed(void **state)
{
    (void)state;
    int home = -1;
    for (int i = 0; i < N_ENGINES && home < 0; i++)
        if (cache_entries(i) > 0)
            home = i;
    assert_true(home >= 0);
    kill(g_engine[home].pid, SIGKILL);
    waitpid(g_engine[home].pid, NULL, 0);
    g_engine[home].pid = 0;
    /* the next engine restores the document from the shared tier */
    char tier[32];
    long long cached = ask_tier(1, "after-kill", "When does the ferry leave?", tier);
    /* (from the shared tier, or already in a slot or RAM there when that
     * engine had restored it before) */
    if (cached < g_tokens - 2 || !tier[0])
        fail_msg("after the kill: %lld of %lld tokens cached, from '%s'", cached, g_tokens, tier);
    ask(0, "after-kill", "And the gulls?");
    resp_t r;
    assert_int_equal(messages(1, "shared-1", &r), 4);   /* nothing lost */
    resp_free(&r);
    assert_int_equal(messages(0, "after-kill", &r), 4);
    resp_free(&r);
}

typedef struct {
    pid_t kill_pid;
    int chunks;
} kill_ud_t;

/* The first piece of the answer: the replica dies. */
static bool kill_on_first(const char *data, void *ud)
{
    kill_ud_t *k = ud;
    if (strstr(data, "\"chunk\"") && !strstr(data, "\"chunk\":\"\"")) {
        k->chunks++;
        kill(k->kill_pid, SIGKILL);
        return false;
    }
    return true;
}

static void test_replica_killed_mid_stream(void **state)
{
    (void)state;
    char body[256];
    snprintf(body, sizeof body,
             "{\"message\":\"Tell me all about the harbor.\",\"document_id\":\"%s\","
             "\"idempotency_key\":\"resend-1\"}",
             g_doc);
    kill_ud_t k = { g_app[0].pid, 0 };
    http_sse(g_app[0].port, API "/session/resend/messages/stream", body, kill_on_first, &k);
    assert_int_equal(k.chunks, 1);
    waitpid(g_app[0].pid, NULL, 0);
    g_app[0].pid = 0;
    /* the client sends it again to the other replica */
    resp_t r;
    http(g_app[1].port, "POST", API "/session/resend/messages", body, &r);
    assert_int_equal(r.status, 200);
    assert_true(strlen(jstr(r.json, "message")) > 0);
    resp_free(&r);
    size_t n = messages(1, "resend", &r);
    int users = 0;
    for (size_t i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, "messages.%zu.role", i);
        users += strcmp(jstr(r.json, key), "user") == 0;
    }
    assert_int_equal(users, 1);
    char last[64];
    snprintf(last, sizeof last, "messages.%zu.incomplete", n - 1);
    assert_false(json_is_true(jpath(r.json, last)));
    resp_free(&r);
    /* and once more: the same answer, nothing added */
    http(g_app[1].port, "POST", API "/session/resend/messages", body, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(messages(1, "resend", &r), n);
    resp_free(&r);
}

/* Count the lines of file path that hold needle. */
static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static void test_sweep_runs_once(void **state)
{
    (void)state;
    proc_t s[2];
    char logs[2][300];
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "sweeper%d", i);
        snprintf(logs[i], sizeof logs[i], "%s/%s.log", g_dir, name);
        char log[300];
        snprintf(log, sizeof log, "%s/%s.log", g_dir, name);
        const char *argv[] = { "--data", g_data, "--set", g_db, "--set", g_list, "--set",
                               "engine.api_key=" KEY, "--set", "session.sweep_interval=1",
                               "--log-level", "debug", NULL };
        proc_start(&s[i], KVCHAT, argv, log, 60);
    }
    usleep(5500 * 1000);
    int runs = count_lines(logs[0], "session sweep: this replica's turn") +
               count_lines(logs[1], "session sweep: this replica's turn");
    /* two replicas ticking every second for 5.5 s: about 5 sweeps in all,
     * not about 10 */
    if (runs < 3 || runs > 7)
        fail_msg("%d sweeps in 5.5 s from two replicas sweeping every second", runs);
    for (int i = 0; i < 2; i++)
        assert_int_equal(proc_stop(&s[i]), 0);
}

/* The model status replica p reports ("running", "stopped", ...). */
static bool model_state(const proc_t *p, const char *want)
{
    resp_t r;
    http(p->port, "GET", API "/model/status", NULL, &r);
    bool same = strcmp(jstr(r.json, "status"), want) == 0;
    resp_free(&r);
    return same;
}

static void wait_model_state(const proc_t *p, const char *want)
{
    for (double end = now_ms() + 30000; !model_state(p, want);) {
        if (now_ms() > end)
            fail_msg("kvchat on port %d: the model did not become %s", p->port, want);
        usleep(100 * 1000);
    }
}

/* Replicas that each supervise an engine of their own: a start or stop on
 * one is done by the other too. */
static void test_commands_followed(void **state)
{
    (void)state;
    proc_t s[2];
    for (int i = 0; i < 2; i++) {
        char data[300], log[300], port[64];
        snprintf(data, sizeof data, "%s/own-data-%d", g_dir, i);
        snprintf(log, sizeof log, "%s/own%d.log", g_dir, i);
        snprintf(port, sizeof port, "engine.port=%d", free_port());
        const char *argv[] = { "--data", data, "--model", MODEL, "--no-autostart", "--set", g_db,
                               "--set", port, "--set", "engine.threads=1", NULL };
        proc_start(&s[i], KVCHAT, argv, log, 60);
    }
    assert_true(model_state(&s[1], "stopped"));
    resp_t r;
    http(s[0].port, "POST", API "/model/up/without_reset", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    wait_model_state(&s[1], "running");
    http(s[1].port, "POST", API "/model/down", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    wait_model_state(&s[0], "stopped");
    for (int i = 0; i < 2; i++)
        assert_int_equal(proc_stop(&s[i]), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replicas_share),
        cmocka_unit_test(test_switch_followed),
        cmocka_unit_test(test_engine_killed),
        cmocka_unit_test(test_replica_killed_mid_stream),
        cmocka_unit_test(test_sweep_runs_once),
        cmocka_unit_test(test_commands_followed),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
