/* test_engine_draft.c — prefill while typing, and snapshots off the
 * critical path, in kvchat-engine over real HTTP with the tiny model.
 *
 * Drafts (POST /v1/cache/draft): a turn drafted word by word and then sent
 * finds every drafted token in its slot, and its greedy answer is token for
 * token the answer of an engine with no cache at all; drafts that replace
 * each other decode each token once; drafts run only in steps where no
 * real request has work (a generating stream holds them back, a waiting
 * request refuses them); drafts never take a slot that holds what a job
 * left, never mix salts; bad drafts are 400s.
 * Snapshots: an answer's snapshot is owed, taken when the engine is idle,
 * or before another job takes the slot, or at shutdown: a later turn (or
 * a restart, test_engine.c) still restores the whole conversation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

#define MODEL KVCHAT_TEST_MODELS_DIR "/tiny.gguf"
#define DRAFT_CHUNK 64 /* SCHED_DRAFT_CHUNK */

typedef struct {
    char log[300];
    proc_t p;
} engine_t;

static void engine_start(engine_t *e, const char *dir, const char *const *extra)
{
    const char *argv[48] = { "--model", MODEL, "--threads", "2", "--ctx-size", "4096",
                             "--max-tokens", "4096" };
    int n = 8;
    static char kvdir[300];
    snprintf(kvdir, sizeof kvdir, "%s/kv", dir);
    snprintf(e->log, sizeof e->log, "%s/engine.log", dir);
    argv[n++] = "--cache-dir";
    argv[n++] = kvdir;
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    proc_start(&e->p, KVCHAT_ENGINE_EXE, argv, e->log, 60);
}

static void engine_stop(engine_t *e) { assert_int_equal(proc_stop(&e->p), 0); }

/* A document of about n_lines * 12 tokens, different per seed. */
static char *make_doc(int seed, int n_lines)
{
    static const char *const words[] = { "alpha", "bravo", "cedar", "delta", "ember", "fjord",
                                         "grove", "harbor", "iris", "juniper", "kelp", "lumen" };
    size_t cap = (size_t)n_lines * 96 + 64;
    char *s = malloc(cap);
    size_t len = 0;
    len += (size_t)snprintf(s + len, cap - len, "Inventory %d.\n", seed);
    for (int i = 0; i < n_lines; i++)
        len += (size_t)snprintf(s + len, cap - len, "Crate %d of row %d: %s %s holds %d units.\n",
                                i, seed, words[(i * 5 + seed) % 12], words[(i * 7 + seed * 3) % 12],
                                (i * 41 + seed * 13) % 1000);
    return s;
}

/* The value of a metric sample line (a counter or gauge), -1 if absent. */
static double metric(int port, const char *name)
{
    resp_t r;
    http(port, "GET", "/metrics", NULL, &r);
    double v = -1;
    char pat[256];
    snprintf(pat, sizeof pat, "\n%s ", name);
    char *at = r.body ? strstr(r.body, pat) : NULL;
    if (at)
        v = strtod(at + strlen(pat), NULL);
    resp_free(&r);
    return v;
}

static long long g_typed;   /* typed_tokens of the last draft answered 202 */

/* POST a draft of [system doc, user text] under `key` (salt or NULL);
 * returns the status, *tokens and *accepted from a 202 (and g_typed). */
static long draft(int port, const char *doc, const char *text, const char *key, const char *salt,
                  long long *tokens, bool *accepted)
{
    json_t *b = json_pack("{s:[{s:s, s:s}, {s:s, s:s}], s:s}", "messages", "role", "system",
                          "content", doc, "role", "user", "content", text, "key", key);
    if (salt)
        json_object_set_new(b, "cache_salt", json_string(salt));
    char *body = json_take_dump(b);
    resp_t r;
    http(port, "POST", "/v1/cache/draft", body, &r);
    free(body);
    long status = r.status;
    if (status == 202) {
        if (tokens)
            *tokens = jint(r.json, "tokens");
        if (accepted)
            *accepted = json_is_true(jpath(r.json, "accepted"));
        g_typed = jint(r.json, "typed_tokens");
    }
    resp_free(&r);
    return status;
}

/* Wait until the engine has decoded `want` draft tokens in all and drafts
 * no more (10 s at most); returns the final count. */
static double wait_drafted(int port, double want)
{
    double v = -1;
    for (int i = 0; i < 1000; i++) {
        v = metric(port, "kvchat_engine_draft_tokens_total");
        if (v >= want)
            break;
        usleep(10000);
    }
    usleep(100000);   /* and nothing more comes */
    return metric(port, "kvchat_engine_draft_tokens_total");
}

static void chat(int port, json_t *messages, const char *salt, int max_tokens, resp_t *r)
{
    json_t *b = json_pack("{s:O, s:f, s:i, s:b}", "messages", messages, "temperature", 0.0,
                          "max_tokens", max_tokens, "return_tokens", 1);
    if (salt)
        json_object_set_new(b, "cache_salt", json_string(salt));
    char *body = json_take_dump(b);
    http(port, "POST", "/v1/chat/completions", body, r);
    free(body);
    if (r->status != 200)
        fail_msg("chat: HTTP %ld: %s", r->status, r->body);
}

static json_t *doc_question(const char *doc, const char *q)
{
    return json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content", doc, "role", "user",
                     "content", q);
}

/* Cache [system doc] (tier "disk": in the disk tier only, the slot left
 * empty; NULL: the default); returns its tokens. */
static long long prefill(int port, const char *doc, const char *tier)
{
    json_t *b = json_pack("{s:[{s:s, s:s}]}", "messages", "role", "system", "content", doc);
    if (tier)
        json_object_set_new(b, "tier", json_string(tier));
    char *body = json_take_dump(b);
    resp_t r;
    http(port, "POST", "/v1/cache/prefill", body, &r);
    free(body);
    assert_int_equal(r.status, 200);
    long long n = jint(r.json, "n_tokens");
    resp_free(&r);
    return n;
}

/* A question typed word by word, drafted at every word; then sent. Every
 * typed token is decoded once (only the turn's closing tokens, drafted
 * after the text, are decoded again after it), the real turn finds them
 * all in its slot, and its greedy answer is the cache-less engine's, token
 * for token; sent as drafted, it decodes one token. */
static void test_draft_then_turn(void **state)
{
    (void)state;
    char dir_a[256], dir_b[256];
    tmpdir_make(dir_a, sizeof dir_a);
    tmpdir_make(dir_b, sizeof dir_b);
    engine_t a, b;
    const char *two[] = { "--reset", "--parallel", "2", NULL };
    const char *nocache[] = { "--no-cache", "--parallel", "1", NULL };
    engine_start(&a, dir_a, two);
    engine_start(&b, dir_b, nocache);
    char *doc = make_doc(1, 40);
    long long p_doc = prefill(a.p.port, doc, NULL);
    assert_true(p_doc > 300);

    static const char *const typed[] = { "Which", "Which crate", "Which crate holds",
                                         "Which crate holds the ", "Which crate holds the most" };
    long long n_tok = 0, prev = 0, prev_typed = p_doc, want = 0;
    bool acc = false;
    for (size_t i = 0; i < sizeof typed / sizeof typed[0]; i++) {
        assert_int_equal(draft(a.p.port, doc, typed[i], "session-1", NULL, &n_tok, &acc), 202);
        assert_true(acc);
        /* a word more is a few tokens more, and a trailing space none */
        assert_true(g_typed > p_doc && n_tok > g_typed && n_tok >= prev);
        /* no repeated work: the document came from the prefill, each typed
         * token is decoded once, and the closing tokens after the text
         * again when the text changed */
        if (n_tok != prev)
            want += n_tok - prev_typed;
        prev = n_tok;
        prev_typed = g_typed;
        assert_int_equal((long long)wait_drafted(a.p.port, (double)want), want);
    }
    long long n_typed = g_typed;
    assert_int_equal((long long)metric(a.p.port, "kvchat_engine_drafts_total"), 1);

    json_t *m = doc_question(doc, "Which crate holds the most units?");
    resp_t ra, rb;
    chat(a.p.port, m, NULL, 16, &ra);
    chat(b.p.port, m, NULL, 16, &rb);
    assert_string_equal(jstr(ra.json, "timings.cache_tier"), "slot");
    assert_true(jint(ra.json, "timings.cache_n") >= n_typed);
    assert_true(json_equal(jpath(ra.json, "choices.0.tokens"), jpath(rb.json, "choices.0.tokens")));
    assert_true(json_array_size(jpath(ra.json, "choices.0.tokens")) > 0);
    assert_string_equal(jstr(ra.json, "choices.0.message.content"),
                        jstr(rb.json, "choices.0.message.content"));
    assert_int_equal((long long)metric(a.p.port, "kvchat_engine_draft_tokens_used_total"),
                     n_typed - p_doc);
    assert_int_equal((long long)metric(a.p.port, "kvchat_engine_draft_slots"), 0);
    resp_free(&ra);
    resp_free(&rb);

    /* A draft of a document the engine holds only in its store (here the
     * disk tier) restores it first, as the real turn would: the draft
     * decodes only the question. */
    char *doc2 = make_doc(2, 40);
    long long p2 = prefill(a.p.port, doc2, "disk");
    double before = metric(a.p.port, "kvchat_engine_draft_tokens_total");
    assert_int_equal(draft(a.p.port, doc2, "How many units", "session-2", NULL, &n_tok, &acc), 202);
    assert_true(acc);
    double after = wait_drafted(a.p.port, before + (double)(n_tok - p2));
    assert_int_equal((long long)(after - before), n_tok - p2);
    json_decref(m);
    /* sent as drafted: everything but the last token was there */
    m = doc_question(doc2, "How many units");
    chat(a.p.port, m, NULL, 8, &ra);
    assert_string_equal(jstr(ra.json, "timings.cache_tier"), "slot");
    assert_int_equal(jint(ra.json, "timings.cache_n"), n_tok - 1);
    assert_int_equal(jint(ra.json, "usage.prompt_tokens"), n_tok);
    resp_free(&ra);
    json_decref(m);

    /* another salt shares nothing with it */
    assert_int_equal(draft(a.p.port, doc2, "How many units", "session-3", "tenant-b", &n_tok, &acc),
                     202);
    m = doc_question(doc2, "How many units are in crate 3?");
    chat(a.p.port, m, "tenant-c", 8, &ra);
    assert_true(jint(ra.json, "timings.cache_n") < 64);
    resp_free(&ra);
    json_decref(m);

    free(doc);
    free(doc2);
    engine_stop(&a);
    engine_stop(&b);
    tmpdir_remove(dir_a);
    tmpdir_remove(dir_b);
}

typedef struct {
    int port;
    int events;
    int draft_port;
    double drafted_mid;   /* draft tokens seen while the stream was flowing */
    bool checked;
} flow_t;

static bool flow_event(const char *data, void *ud)
{
    flow_t *f = ud;
    if (strcmp(data, "[DONE]") == 0)
        return true;
    f->events++;
    /* Well after the draft was sent (before the first event), while
     * tokens still flow: drafts must not have run. */
    if (f->events == 200 && !f->checked) {
        f->drafted_mid = metric(f->draft_port, "kvchat_engine_draft_tokens_total");
        f->checked = true;
    }
    return true;
}

typedef struct {
    int port;
    flow_t f;
    pthread_mutex_t mu;
    bool started;
} long_gen_t;

static bool first_event(const char *data, void *ud)
{
    long_gen_t *g = ud;
    pthread_mutex_lock(&g->mu);
    g->started = true;
    pthread_mutex_unlock(&g->mu);
    return flow_event(data, &g->f);
}

static void *long_gen(void *arg)
{
    long_gen_t *g = arg;
    http_sse(g->port, "/v1/chat/completions",
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Count on.\"}],\"max_tokens\":600,"
             "\"ignore_eos\":true,\"stream\":true,\"temperature\":0}",
             first_event, g);
    return NULL;
}

/* Drafts run only in steps where no real request has work: while a stream
 * generates, a draft waits (none of its tokens decoded), and it runs once
 * the stream ends; while a request waits for a slot, drafts are refused. */
static void test_drafts_yield(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    const char *one[] = { "--reset", "--parallel", "2", NULL };
    engine_start(&e, dir, one);
    char *doc = make_doc(4, 100);

    long_gen_t g = { .port = e.p.port, .f = { .draft_port = e.p.port } };
    pthread_mutex_init(&g.mu, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, long_gen, &g), 0);
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&g.mu);
        bool started = g.started;
        pthread_mutex_unlock(&g.mu);
        if (started)
            break;
        usleep(5000);
    }
    long long n_tok = 0;
    bool acc = false;
    assert_int_equal(draft(e.p.port, doc, "Which crate", "busy-1", NULL, &n_tok, &acc), 202);
    assert_true(acc);
    pthread_join(th, NULL);
    assert_true(g.f.checked);   /* the stream ran long enough to look */
    assert_int_equal((long long)g.f.drafted_mid, 0);
    /* after the stream: the whole draft, once */
    assert_int_equal((long long)wait_drafted(e.p.port, (double)n_tok), n_tok);
    engine_stop(&e);

    /* one slot, busy, and a request waiting: no draft is taken */
    const char *single[] = { "--parallel", "1", NULL };
    engine_start(&e, dir, single);
    long_gen_t g1 = { .port = e.p.port, .f = { .draft_port = e.p.port } };
    long_gen_t g2 = { .port = e.p.port, .f = { .draft_port = e.p.port } };
    pthread_mutex_init(&g1.mu, NULL);
    pthread_mutex_init(&g2.mu, NULL);
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, long_gen, &g1), 0);
    for (int i = 0; i < 2000 && !g1.started; i++)
        usleep(5000);
    assert_int_equal(pthread_create(&t2, NULL, long_gen, &g2), 0);
    bool waiting = false;
    for (int i = 0; i < 400 && !waiting; i++) {
        waiting = metric(e.p.port, "kvchat_engine_queue_length") >= 1;
        if (!waiting)
            usleep(5000);
    }
    assert_true(waiting);
    assert_int_equal(draft(e.p.port, doc, "Which crate", "busy-2", NULL, &n_tok, &acc), 202);
    assert_false(acc);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_true(metric(e.p.port, "kvchat_engine_drafts_dropped_total") >= 1);
    engine_stop(&e);
    pthread_mutex_destroy(&g.mu);
    pthread_mutex_destroy(&g1.mu);
    pthread_mutex_destroy(&g2.mu);
    free(doc);
    tmpdir_remove(dir);
}

/* When every slot holds what jobs left, a draft takes the least recently
 * used one (its conversation stored first: it comes back from RAM, whole),
 * never a running job's; one slot always stays with the jobs, so a second
 * draft finds none. */
static void test_draft_takes_lru_slot(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    const char *two[] = { "--reset", "--parallel", "2", NULL };
    engine_start(&e, dir, two);
    char *d1 = make_doc(5, 30), *d2 = make_doc(6, 30), *d3 = make_doc(7, 30);
    json_t *m1 = doc_question(d1, "Which crate?"), *m2 = doc_question(d2, "Which crate?");
    resp_t r;
    chat(e.p.port, m1, NULL, 4, &r);
    long long n1 = jint(r.json, "usage.prompt_tokens");
    resp_free(&r);
    chat(e.p.port, m2, NULL, 4, &r);
    resp_free(&r);
    long long n_tok;
    bool acc;
    assert_int_equal(draft(e.p.port, d3, "Which", "third", NULL, &n_tok, &acc), 202);
    assert_true(acc);
    /* all of it but the few template tokens the slot had in common */
    long long drafted = (long long)wait_drafted(e.p.port, (double)(n_tok - 10));
    assert_true(drafted >= n_tok - 10 && drafted <= n_tok);
    assert_int_equal((long long)metric(e.p.port, "kvchat_engine_drafts_total"), 1);
    /* a second draft: no slot left for it */
    double dropped = metric(e.p.port, "kvchat_engine_drafts_dropped_total");
    assert_int_equal(draft(e.p.port, d1, "How", "fourth", NULL, &n_tok, &acc), 202);
    for (int i = 0; i < 200 && metric(e.p.port, "kvchat_engine_drafts_dropped_total") <= dropped; i++)
        usleep(10000);
    assert_true(metric(e.p.port, "kvchat_engine_drafts_dropped_total") > dropped);
    /* the first conversation gave its slot up, stored whole; the second
     * kept its slot */
    chat(e.p.port, m1, NULL, 4, &r);
    assert_string_equal(jstr(r.json, "timings.cache_tier"), "ram");
    assert_true(jint(r.json, "timings.cache_n") >= n1 - 1);
    resp_free(&r);
    chat(e.p.port, m2, NULL, 4, &r);
    assert_string_equal(jstr(r.json, "timings.cache_tier"), "slot");
    resp_free(&r);
    json_decref(m1);
    json_decref(m2);
    free(d1);
    free(d2);
    free(d3);
    engine_stop(&e);
    tmpdir_remove(dir);
}

typedef struct {
    int port;
    json_t *messages;
    int max_tokens;
    resp_t r;
} chat_job_t;

static void *chat_thread(void *arg)
{
    chat_job_t *c = arg;
    chat(c->port, c->messages, NULL, c->max_tokens, &c->r);
    return NULL;
}

/* An answer's snapshot is owed, not taken before the answer ends: it is
 * taken before another job takes the slot (here one that waited for it,
 * admitted in the very next step, with no idle step between), so the
 * conversation's next turn still restores prompt and reply from RAM; and
 * in idle time. */
static void test_deferred_snapshot(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    const char *one[] = { "--reset", "--parallel", "1", NULL };
    engine_start(&e, dir, one);
    char *d1 = make_doc(8, 30), *d2 = make_doc(9, 30);
    json_t *m1 = doc_question(d1, "Which crate holds the fewest units?");
    json_t *m2 = doc_question(d2, "Which crate?");
    chat_job_t c1 = { .port = e.p.port, .messages = m1, .max_tokens = 200 };
    chat_job_t c2 = { .port = e.p.port, .messages = m2, .max_tokens = 4 };
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, chat_thread, &c1), 0);
    for (int i = 0; i < 1000 && metric(e.p.port, "kvchat_engine_slots_busy") < 1; i++)
        usleep(2000);
    /* the other document waits for the only slot, and takes it at once */
    assert_int_equal(pthread_create(&t2, NULL, chat_thread, &c2), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    /* it did wait for the slot */
    assert_true(json_number_value(jpath(c2.r.json, "timings.queue_ms")) > 0);
    resp_t r = c1.r;
    long long total = jint(r.json, "usage.prompt_tokens") + jint(r.json, "usage.completion_tokens");
    json_array_append_new(m1, json_pack("{s:s, s:s}", "role", "assistant", "content",
                                        jstr(r.json, "choices.0.message.content")));
    json_array_append_new(m1, json_pack("{s:s, s:s}", "role", "user", "content", "And the most?"));
    resp_free(&c1.r);
    resp_free(&c2.r);
    chat(e.p.port, m1, NULL, 4, &r);
    assert_string_equal(jstr(r.json, "timings.cache_tier"), "ram");
    assert_true(jint(r.json, "timings.cache_n") >= total - 1);
    resp_free(&r);
    /* every answer's snapshot is taken in the end, off their paths */
    double snaps = 0;
    for (int i = 0; i < 300 && snaps < 3; i++) {
        snaps = metric(e.p.port, "kvchat_engine_snapshots_total");
        if (snaps < 3)
            usleep(10000);
    }
    assert_true(snaps >= 3);
    assert_true(metric(e.p.port, "kvchat_engine_deferred_snapshot_seconds_total") > 0);
    json_decref(m1);
    json_decref(m2);
    free(d1);
    free(d2);
    engine_stop(&e);
    tmpdir_remove(dir);
}

/* A request that arrives while a long draft is being decoded waits for at
 * most the draft chunk under way (timings.draft_steps_waited), and the
 * draft goes on afterwards. */
static void test_request_during_long_draft(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    const char *big[] = { "--reset", "--parallel", "2", "--ctx-size", "16384", NULL };
    engine_start(&e, dir, big);
    char *longdoc = make_doc(11, 170), *other = make_doc(12, 20);
    long long n_tok = 0;
    bool acc = false;
    int tries = 0, waited_checked = 0;
    for (; tries < 3 && !waited_checked; tries++) {
        char key[32];
        snprintf(key, sizeof key, "long-%d", tries);
        double before = metric(e.p.port, "kvchat_engine_draft_tokens_total");
        assert_int_equal(draft(e.p.port, longdoc, tries ? "Which crate" : "Which", key, NULL,
                               &n_tok, &acc), 202);
        assert_true(acc && n_tok > 2000);
        double d = before;
        for (int i = 0; i < 2000 && d <= before; i++) {
            d = metric(e.p.port, "kvchat_engine_draft_tokens_total");
            if (d <= before)
                usleep(1000);
        }
        json_t *m = doc_question(other, "Which crate?");
        resp_t r;
        chat(e.p.port, m, NULL, 4, &r);
        double after = metric(e.p.port, "kvchat_engine_draft_tokens_total");
        assert_true(jint(r.json, "timings.draft_steps_waited") <= 1);
        /* it counts only when the draft was still under way when the
         * request came and when it was answered */
        if (after - before < (double)n_tok - 100)
            waited_checked = 1;
        resp_free(&r);
        json_decref(m);
    }
    assert_true(waited_checked);
    free(longdoc);
    free(other);
    engine_stop(&e);
    tmpdir_remove(dir);
}

static void expect_400(int port, const char *body, const char *needle)
{
    resp_t r;
    http(port, "POST", "/v1/cache/draft", body, &r);
    if (r.status != 400 || !strstr(r.body, needle))
        fail_msg("%s -> HTTP %ld %s (wanted 400 with \"%s\")", body, r.status, r.body, needle);
    resp_free(&r);
}

static void test_draft_bad_requests(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    engine_start(&e, dir, NULL);
    int p = e.p.port;
    expect_400(p, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "'key'");
    expect_400(p, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"key\":7}", "'key'");
    expect_400(p, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"key\":\"\"}", "'key'");
    char big[400];
    snprintf(big, sizeof big, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"key\":\"%0129d\"}", 0);
    expect_400(p, big, "'key'");
    expect_400(p, "{\"key\":\"k\"}", "messages");
    expect_400(p, "{\"messages\":[],\"key\":\"k\"}", "messages");
    expect_400(p, "{\"messages\":[{\"role\":\"robot\",\"content\":\"hi\"}],\"key\":\"k\"}", "role");
    expect_400(p, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"key\":\"k\","
                  "\"cache_salt\":5}", "cache_salt");
    expect_400(p, "{\"messages\":", "");
    /* longer than a slot's context */
    char *doc = make_doc(10, 600);
    json_t *b = json_pack("{s:[{s:s, s:s}], s:s}", "messages", "role", "user", "content", doc,
                          "key", "k");
    char *body = json_take_dump(b);
    expect_400(p, body, "tokens");
    free(body);
    free(doc);
    assert_int_equal((long long)metric(p, "kvchat_engine_drafts_total"), 0);
    engine_stop(&e);
    tmpdir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_draft_then_turn),
        cmocka_unit_test(test_drafts_yield),
        cmocka_unit_test(test_draft_takes_lru_slot),
        cmocka_unit_test(test_deferred_snapshot),
        cmocka_unit_test(test_request_during_long_draft),
        cmocka_unit_test(test_draft_bad_requests),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    proc_kill_all();
    return rc;
}
