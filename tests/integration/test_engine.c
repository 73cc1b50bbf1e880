/* test_engine.c — kvchat-engine over real HTTP with the tiny model.
 *
 * Correctness of the cache: greedy answers are token-identical whether the
 * prompt's prefix came from a slot, RAM, disk or was computed (an engine
 * with --no-cache runs beside it); restarts resume or reset the disk tier;
 * damaged cache files are refused; budgets hold; a prefill with "tier":
 * "disk" goes to the disk tier only, answers once its file is written, and
 * is restored from there token-identically (its errors: no disk tier, no
 * room); and the API's error handling, streaming format, concurrency,
 * cancellation and queue limits.
 * The API key: from --api-key-fd (off the command line and environment)
 * and from --api-key, required everywhere but /health; bad key inputs.
 * cache_salt: cached prefixes (entries, slots, remembered replies) are
 * shared only by requests with the same salt, across restarts too; the
 * salt is in no file and no log line; bad salts are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define MODEL KVCHAT_TEST_MODELS_DIR "/tiny.gguf"

typedef struct {
    char dir[256];
    char kvdir[300];
    char log[300];
    proc_t p;
} engine_t;

/* Start an engine; extra args are appended to the common ones. */
static void engine_start(engine_t *e, const char *dir, const char *const *extra)
{
    const char *argv[48] = { "--model", MODEL, "--threads", "2", "--ctx-size", "4096",
                             "--max-tokens", "16" };
    int n = 8;
    snprintf(e->dir, sizeof e->dir, "%s", dir);
    snprintf(e->kvdir, sizeof e->kvdir, "%s/kv", dir);
    snprintf(e->log, sizeof e->log, "%s/engine.log", dir);
    argv[n++] = "--cache-dir";
    argv[n++] = e->kvdir;
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    proc_start(&e->p, KVCHAT_ENGINE_EXE, argv, e->log, 60);
}

static void engine_stop(engine_t *e) { assert_int_equal(proc_stop(&e->p), 0); }

/* Two engines of one slot each, in new directories: *a with a cache
 * (started with --reset), *b without (--no-cache), for answers that must
 * be the same token for token. */
static void engine_pair_start(engine_t *a, char *dir_a, engine_t *b, char *dir_b)
{
    tmpdir_make(dir_a, 256);
    tmpdir_make(dir_b, 256);
    const char *reset[] = { "--reset", "--parallel", "1", NULL };
    const char *nocache[] = { "--no-cache", "--parallel", "1", NULL };
    engine_start(a, dir_a, reset);
    engine_start(b, dir_b, nocache);
}

/* A document of about n_lines * 12 tokens, different per seed. */
static char *make_doc(int seed, int n_lines)
{
    static const char *const words[] = { "alpha", "bravo", "cedar", "delta", "ember", "fjord",
                                         "grove", "harbor", "iris", "juniper", "kelp", "lumen" };
    size_t cap = (size_t)n_lines * 96 + 64;
    char *s = malloc(cap);
    size_t len = 0;
    len += (size_t)snprintf(s + len, cap - len, "Report %d.\n", seed);
    for (int i = 0; i < n_lines; i++)
        len += (size_t)snprintf(s + len, cap - len, "Item %d of part %d: %s %s weighs %d kg.\n",
                                i, seed, words[(i * 7 + seed) % 12], words[(i * 5 + seed * 3) % 12],
                                (i * 37 + seed * 11) % 1000);
    return s;
}

/* POST a greedy chat; returns the parsed response (caller resp_free). */
static void chat(int port, json_t *messages, resp_t *r, bool cache)
{
    char *body = json_take_dump(json_pack("{s:O, s:f, s:i, s:b, s:b}", "messages", messages,
                                          "temperature", 0.0, "max_tokens", 16, "return_tokens", 1,
                                          "cache_prompt", cache));
    http(port, "POST", "/v1/chat/completions", body, r);
    free(body);
    if (r->status != 200)
        fail_msg("chat: HTTP %ld: %s", r->status, r->body);
}

static json_t *msgs_doc_question(const char *doc, const char *q)
{
    return json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content", doc, "role", "user",
                     "content", q);
}

static void assert_same_tokens(resp_t *a, resp_t *b)
{
    json_t *ta = jpath(a->json, "choices.0.tokens"), *tb = jpath(b->json, "choices.0.tokens");
    assert_non_null(ta);
    assert_non_null(tb);
    if (!json_equal(ta, tb))
        fail_msg("answers differ:\n  %s\n  %s", json_dumps(ta, JSON_COMPACT),
                 json_dumps(tb, JSON_COMPACT));
    assert_true(json_array_size(ta) > 0);
    assert_string_equal(jstr(a->json, "choices.0.message.content"),
                        jstr(b->json, "choices.0.message.content"));
}

static const char *tier(resp_t *r) { return jstr(r->json, "timings.cache_tier"); }
static long long cache_n(resp_t *r) { return jint(r->json, "timings.cache_n"); }

static long long prefill(int port, const char *doc, bool pin, resp_t *out)
{
    char *body = json_take_dump(json_pack("{s:[{s:s, s:s}], s:b}", "messages", "role", "system",
                                          "content", doc, "pin", pin));
    http(port, "POST", "/v1/cache/prefill", body, out);
    free(body);
    if (out->status != 200)
        fail_msg("prefill: HTTP %ld: %s", out->status, out->body);
    return jint(out->json, "n_tokens");
}

/* Documents behind a common system preamble each keep a slot: a new
 * document takes the free slot rather than the one whose only tokens in
 * common with it are the preamble, so every document's next question is
 * served from the slot tier. */
static void test_slots_keep_documents(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    const char *args[] = { "--reset", "--parallel", "2", NULL };
    engine_start(&e, dir, args);
    static const char preamble[] =
        "You answer questions about the document below. Quote the lines you rely on, "
        "say so when the document does not tell, and keep answers short.\n\n";
    char *docs[2];
    for (int i = 0; i < 2; i++) {
        char *body = make_doc(i + 5, 25);
        size_t n = strlen(preamble) + strlen(body) + 1;
        docs[i] = malloc(n);
        snprintf(docs[i], n, "%s%s", preamble, body);
        free(body);
    }
    const char *const qs[] = { "Which item is heaviest?", "Which item is lightest?" };
    resp_t r;
    for (int round = 0; round < 2; round++) {
        for (int d = 0; d < 2; d++) {
            json_t *m = msgs_doc_question(docs[d], qs[round]);
            chat(e.p.port, m, &r, true);
            if (round == 0) {
                /* cold: at most the preamble was in a slot */
                assert_true(cache_n(&r) < 40);
            } else {
                assert_string_equal(tier(&r), "slot");
                assert_true(cache_n(&r) > 200);
            }
            resp_free(&r);
            json_decref(m);
        }
    }
    free(docs[0]);
    free(docs[1]);
    engine_stop(&e);
    tmpdir_remove(dir);
}

/* Tiers slot, RAM and disk all give the answer an uncached engine gives,
 * for a document prefix and for a 3-turn conversation. */
static void test_tiers_match_uncached(void **state)
{
    (void)state;
    char dir_a[256], dir_b[256];
    engine_t a, b;
    /* One slot, so that a second prefill moves the first document out of
     * the slot and into the RAM tier only. */
    engine_pair_start(&a, dir_a, &b, dir_b);
    char *doc = make_doc(1, 60);
    char *other = make_doc(3, 20);

    resp_t pf;
    long long P = prefill(a.p.port, doc, false, &pf);
    assert_true(P > 300);
    assert_string_equal(jstr(pf.json, "tier"), "ram");
    assert_true(jint(pf.json, "bytes") > 0);
    resp_free(&pf);
    prefill(a.p.port, other, false, &pf);
    resp_free(&pf);

    /* RAM: the prefill entry. */
    json_t *m1 = msgs_doc_question(doc, "Which item weighs the most?");
    resp_t ra, rb;
    chat(a.p.port, m1, &ra, true);
    chat(b.p.port, m1, &rb, true);
    assert_string_equal(tier(&ra), "ram");
    assert_int_equal(cache_n(&ra), P);
    assert_int_equal(jint(ra.json, "usage.prompt_tokens_details.cached_tokens"), P);
    assert_string_equal(tier(&rb), "none");
    assert_int_equal(cache_n(&rb), 0);
    assert_same_tokens(&ra, &rb);
    resp_free(&ra);

    /* Slot: the same question again is held by the slot that answered it. */
    chat(a.p.port, m1, &ra, true);
    assert_string_equal(tier(&ra), "slot");
    assert_true(cache_n(&ra) > P);
    assert_same_tokens(&ra, &rb);
    resp_free(&ra);

    /* Per-request switch: cache_prompt false computes everything. */
    chat(a.p.port, m1, &ra, false);
    assert_string_equal(tier(&ra), "none");
    assert_same_tokens(&ra, &rb);
    resp_free(&ra);
    resp_free(&rb);

    /* Three turns: each turn restores the whole history before it. */
    json_t *conv = json_deep_copy(m1);
    const char *questions[] = { NULL, "Summarize part one in a sentence.",
                                "Now list three items by weight." };
    long long prev_total = 0;
    for (int turn = 0; turn < 3; turn++) {
        if (questions[turn])
            json_array_append_new(conv, json_pack("{s:s, s:s}", "role", "user", "content",
                                                  questions[turn]));
        chat(a.p.port, conv, &ra, true);
        chat(b.p.port, conv, &rb, true);
        assert_same_tokens(&ra, &rb);
        if (turn > 0) {
            /* everything up to the previous reply's last token came from cache */
            assert_true(cache_n(&ra) >= prev_total - 1);
            assert_string_not_equal(tier(&ra), "none");
        }
        prev_total = jint(ra.json, "usage.prompt_tokens") + jint(ra.json, "usage.completion_tokens");
        json_array_append_new(conv, json_pack("{s:s, s:s}", "role", "assistant", "content",
                                              jstr(ra.json, "choices.0.message.content")));
        resp_free(&ra);
        resp_free(&rb);
    }

    /* Disk: after a restart with --resume, a new question on the document
     * restores the prefix from disk. */
    engine_stop(&a);
    const char *resume[] = { "--resume", "--parallel", "1", NULL };
    engine_start(&a, dir_a, resume);
    json_t *m2 = msgs_doc_question(doc, "Describe the heaviest fjord item.");
    chat(a.p.port, m2, &ra, true);
    chat(b.p.port, m2, &rb, true);
    assert_string_equal(tier(&ra), "disk");
    assert_int_equal(cache_n(&ra), P);
    assert_same_tokens(&ra, &rb);
    resp_free(&ra);
    resp_free(&rb);

    /* The conversation's last turn resumes from disk as well. */
    chat(a.p.port, conv, &ra, true);
    chat(b.p.port, conv, &rb, true);
    assert_same_tokens(&ra, &rb);
    assert_true(cache_n(&ra) >= prev_total - 1);
    resp_free(&ra);
    resp_free(&rb);

    json_decref(m1);
    json_decref(m2);
    json_decref(conv);
    free(doc);
    free(other);
    engine_stop(&a);
    engine_stop(&b);
    tmpdir_remove(dir_a);
    tmpdir_remove(dir_b);
}

/* After a restart the engine no longer remembers the tokens it generated;
 * a reply whose text tokenizes to other tokens is found in the stored
 * snapshot, so the next turn still restores the whole conversation. */
static void test_reply_tokens_after_restart(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    const char *reset[] = { "--reset", NULL };
    engine_start(&e, dir, reset);
    json_t *conv = json_pack("[{s:s, s:s}]", "role", "user", "content", "Which item weighs the most?");
    char *body = json_take_dump(json_pack("{s:O, s:f, s:i, s:b}", "messages", conv, "temperature",
                                          0.0, "max_tokens", 48, "return_tokens", 1));
    resp_t r;
    http(e.p.port, "POST", "/v1/chat/completions", body, &r);
    free(body);
    assert_int_equal(r.status, 200);
    const char *text = jstr(r.json, "choices.0.message.content");
    json_t *gen = json_incref(jpath(r.json, "choices.0.tokens"));
    long long total = jint(r.json, "usage.prompt_tokens") + jint(r.json, "usage.completion_tokens");
    json_array_append_new(conv, json_pack("{s:s, s:s}", "role", "assistant", "content", text));
    json_array_append_new(conv, json_pack("{s:s, s:s}", "role", "user", "content", "And the lightest?"));
    /* What this test is about: the text tokenizes to other tokens. */
    resp_t tk;
    body = json_take_dump(json_pack("{s:s}", "content", text));
    http(e.p.port, "POST", "/tokenize", body, &tk);
    free(body);
    assert_int_equal(tk.status, 200);
    assert_false(json_equal(jpath(tk.json, "tokens"), gen));
    resp_free(&tk);
    resp_free(&r);

    engine_stop(&e);
    const char *resume[] = { "--resume", NULL };
    engine_start(&e, dir, resume);
    chat(e.p.port, conv, &r, true);
    assert_string_equal(tier(&r), "disk");
    /* the prompt and the reply up to its last decoded token */
    assert_true(cache_n(&r) >= total - 1);
    resp_free(&r);
    json_decref(gen);
    json_decref(conv);
    engine_stop(&e);
    tmpdir_remove(dir);
}

static void test_resume_and_reset(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    const char *reset[] = { "--reset", NULL };
    const char *resume[] = { "--resume", NULL };
    engine_start(&e, dir, reset);
    char *doc = make_doc(2, 40);
    resp_t r;
    long long P = prefill(e.p.port, doc, false, &r);
    resp_free(&r);
    engine_stop(&e);

    engine_start(&e, dir, resume);
    http(e.p.port, "GET", "/v1/cache", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(jpath(r.json, "entries")), 1);
    assert_string_equal(jstr(r.json, "entries.0.tier"), "disk");
    resp_free(&r);
    json_t *m = msgs_doc_question(doc, "Quick question?");
    chat(e.p.port, m, &r, true);
    assert_string_equal(tier(&r), "disk");
    assert_int_equal(cache_n(&r), P);
    resp_free(&r);
    engine_stop(&e);

    engine_start(&e, dir, reset);
    http(e.p.port, "GET", "/v1/cache", NULL, &r);
    assert_int_equal(json_array_size(jpath(r.json, "entries")), 0);
    resp_free(&r);
    chat(e.p.port, m, &r, true);
    assert_string_equal(tier(&r), "none");
    assert_int_equal(cache_n(&r), 0);
    resp_free(&r);
    engine_stop(&e);

    json_decref(m);
    free(doc);
    tmpdir_remove(dir);
}

/* The directory holding the entry files (one per model and layout). */
static void entry_dir(const char *kvdir, char *out, size_t cap)
{
    DIR *d = opendir(kvdir);
    assert_non_null(d);
    struct dirent *de;
    out[0] = '\0';
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            snprintf(out, cap, "%s/%s", kvdir, de->d_name);
    closedir(d);
    assert_true(out[0] != '\0');
}

static void entry_file(const char *edir, const char *id, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s.kv", edir, id);
    struct stat st;
    if (stat(out, &st) != 0)
        fail_msg("no entry file %s", out);
}

static void test_damaged_files_rejected(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    const char *reset[] = { "--reset", NULL };
    const char *resume[] = { "--resume", NULL };
    engine_start(&e, dir, reset);
    char *docs[3];
    char ids[3][32];
    for (int i = 0; i < 3; i++) {
        docs[i] = make_doc(10 + i, 30);
        resp_t r;
        prefill(e.p.port, docs[i], false, &r);
        snprintf(ids[i], sizeof ids[i], "%s", jstr(r.json, "id"));
        resp_free(&r);
    }
    engine_stop(&e);   /* flushes the writer */

    char edir[600], f[700];
    entry_dir(e.kvdir, edir, sizeof edir);
    /* 0: one flipped byte in the blob (found on load, by its checksum) */
    entry_file(edir, ids[0], f, sizeof f);
    FILE *fp = fopen(f, "r+b");
    assert_non_null(fp);
    fseek(fp, -100, SEEK_END);
    int c = fgetc(fp);
    fseek(fp, -100, SEEK_END);
    fputc(c ^ 0x5a, fp);
    fclose(fp);
    /* 1: truncated (found at start) */
    entry_file(edir, ids[1], f, sizeof f);
    struct stat st;
    stat(f, &st);
    assert_int_equal(truncate(f, st.st_size / 2), 0);
    /* 2: not an entry at all (found at start) */
    entry_file(edir, ids[2], f, sizeof f);
    fp = fopen(f, "wb");
    fputs("this is not a kvchat cache entry, whatever its name says", fp);
    fclose(fp);

    engine_start(&e, dir, resume);
    resp_t r;
    http(e.p.port, "GET", "/v1/cache", NULL, &r);
    assert_int_equal(json_array_size(jpath(r.json, "entries")), 1);
    assert_string_equal(jstr(r.json, "entries.0.id"), ids[0]);
    resp_free(&r);
    /* The flipped byte is caught on load: the request is served without
     * the entry, and the entry is gone. No request restores its document
     * from anywhere (the first tokens, which the documents share, may come
     * from the last request's snapshot) and nothing comes from disk. */
    for (int i = 0; i < 3; i++) {
        json_t *m = msgs_doc_question(docs[i], "Anything?");
        chat(e.p.port, m, &r, true);
        assert_true(cache_n(&r) < 20);
        assert_string_not_equal(tier(&r), "disk");
        resp_free(&r);
        json_decref(m);
    }
    http(e.p.port, "GET", "/v1/cache/stats", NULL, &r);
    assert_int_equal(jint(r.json, "requests.disk"), 0);
    assert_int_equal(jint(r.json, "disk_read_failures"), 1);
    resp_free(&r);
    http(e.p.port, "GET", "/v1/cache", NULL, &r);
    /* only the three new turn snapshots remain */
    size_t k;
    json_t *v;
    json_array_foreach(jpath(r.json, "entries"), k, v)
        assert_string_not_equal(jstr(v, "id"), ids[0]);
    resp_free(&r);
    engine_stop(&e);
    assert_true(log_contains(e.log, ids[0]));
    assert_true(log_contains(e.log, ids[1]));
    assert_true(log_contains(e.log, ids[2]));
    for (int i = 0; i < 3; i++)
        free(docs[i]);
    tmpdir_remove(dir);
}

static void test_budgets(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    /* A 30-line document is ~600 tokens x 512 B of KV (tiny model): RAM
     * holds two such entries, disk three. */
    const char *args[] = { "--reset", "--cache-ram", "700K", "--cache-disk", "1000K", NULL };
    engine_start(&e, dir, args);
    resp_t r;
    char *small = make_doc(99, 2);
    prefill(e.p.port, small, true, &r);
    char pinned_id[32];
    snprintf(pinned_id, sizeof pinned_id, "%s", jstr(r.json, "id"));
    long long pinned_bytes = jint(r.json, "bytes");
    resp_free(&r);
    for (int i = 0; i < 6; i++) {
        char *doc = make_doc(20 + i, 30);
        prefill(e.p.port, doc, false, &r);
        resp_free(&r);
        free(doc);
    }
    /* Wait for the writer, then check both budgets. */
    for (int i = 0; i < 200; i++) {
        http(e.p.port, "GET", "/v1/cache/stats", NULL, &r);
        long long pending = jint(r.json, "pending_writes");
        if (pending == 0)
            break;
        resp_free(&r);
        usleep(50 * 1000);
    }
    assert_true(jint(r.json, "bytes_ram") - pinned_bytes <= 700 * 1024);
    assert_true(jint(r.json, "bytes_disk") - pinned_bytes <= 1000 * 1024);
    assert_true(jint(r.json, "evictions_ram") > 0);
    assert_true(jint(r.json, "evictions_disk") > 0);
    resp_free(&r);
    http(e.p.port, "GET", "/v1/cache", NULL, &r);
    json_t *entries = jpath(r.json, "entries");
    bool found = false;
    size_t i;
    json_t *v;
    json_array_foreach(entries, i, v) {
        if (strcmp(jstr(v, "id"), pinned_id) == 0) {
            found = true;
            assert_true(json_is_true(jpath(v, "pinned")));
            assert_string_equal(jstr(v, "tier"), "ram");
        }
    }
    assert_true(found);
    assert_true(json_array_size(entries) < 7);
    resp_free(&r);

    /* DELETE one entry, then reset all. */
    char path[128];
    snprintf(path, sizeof path, "/v1/cache/%s", pinned_id);
    http(e.p.port, "DELETE", path, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(e.p.port, "DELETE", path, NULL, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http(e.p.port, "POST", "/v1/cache/reset", "{}", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(e.p.port, "GET", "/v1/cache", NULL, &r);
    assert_int_equal(json_array_size(jpath(r.json, "entries")), 0);
    resp_free(&r);
    free(small);
    engine_stop(&e);
    tmpdir_remove(dir);
}

typedef struct {
    int port;
    int idx;
    long status;
    long long completion_tokens;
} conc_t;

static void *conc_run(void *arg)
{
    conc_t *c = arg;
    char q[64];
    snprintf(q, sizeof q, "Question number %d?", c->idx);
    char *body = json_take_dump(json_pack("{s:[{s:s, s:s}], s:i, s:b}", "messages", "role", "user",
                                          "content", q, "max_tokens", 12, "ignore_eos", 1));
    resp_t r;
    if (http_try(c->port, "POST", "/v1/chat/completions", body, &r)) {
        c->status = r.status;
        json_t *ct = jpath(r.json, "usage.completion_tokens");
        c->completion_tokens = json_is_integer(ct) ? json_integer_value(ct) : -1;
        resp_free(&r);
    }
    free(body);
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    engine_start(&e, dir, NULL);
    enum { N = 6 };
    pthread_t th[N];
    conc_t c[N];
    for (int i = 0; i < N; i++) {
        c[i] = (conc_t){ .port = e.p.port, .idx = i };
        pthread_create(&th[i], NULL, conc_run, &c[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(c[i].status, 200);
        assert_int_equal(c[i].completion_tokens, 12);
    }
    engine_stop(&e);
    tmpdir_remove(dir);
}

typedef struct {
    int events;
    int hang_up_after;
    bool saw_role, saw_done, saw_usage, saw_timings;
    char content[4096];
    char finish[32];
} sse_state_t;

static bool on_event(const char *data, void *ud)
{
    sse_state_t *s = ud;
    s->events++;
    if (strcmp(data, "[DONE]") == 0) {
        s->saw_done = true;
        return true;
    }
    json_t *j = json_loads(data, 0, NULL);
    assert_non_null(j);
    json_t *delta = jpath(j, "choices.0.delta");
    if (json_is_string(json_object_get(delta, "role")))
        s->saw_role = true;
    json_t *content = json_object_get(delta, "content");
    if (json_is_string(content))
        strncat(s->content, json_string_value(content), sizeof s->content - strlen(s->content) - 1);
    json_t *fr = jpath(j, "choices.0.finish_reason");
    if (json_is_string(fr))
        snprintf(s->finish, sizeof s->finish, "%s", json_string_value(fr));
    /* timings on the finish chunk; usage (when asked) in a last chunk of
     * its own without choices, as OpenAI sends it */
    if (json_is_string(fr) && json_is_object(json_object_get(j, "timings")))
        s->saw_timings = true;
    if (json_is_object(json_object_get(j, "usage")))
        s->saw_usage = json_array_size(json_object_get(j, "choices")) == 0;
    json_decref(j);
    return s->hang_up_after == 0 || s->events < s->hang_up_after;
}

static long metric(int port, const char *line_prefix)
{
    resp_t r;
    http(port, "GET", "/metrics", NULL, &r);
    long v = -1;
    char pat[256];
    snprintf(pat, sizeof pat, "\n%s", line_prefix);   /* a sample line, not # HELP */
    char *at = strstr(r.body, pat);
    if (at)
        v = strtol(at + strlen(pat), NULL, 10);
    resp_free(&r);
    return v;
}

/* POST /v1/cache/prefill of a system message with "tier": tier (NULL: the
 * field left out); the response in out, its status returned. */
static long prefill_tier(int port, const char *doc, const char *tier, resp_t *out)
{
    json_t *b = json_pack("{s:[{s:s, s:s}]}", "messages", "role", "system", "content", doc);
    if (tier)
        json_object_set_new(b, "tier", json_string(tier));
    char *body = json_take_dump(b);
    http(port, "POST", "/v1/cache/prefill", body, out);
    free(body);
    return out->status;
}

/* The /v1/cache entry with this id (a new reference), or NULL. */
static json_t *cache_entry(int port, const char *id)
{
    resp_t r;
    http(port, "GET", "/v1/cache", NULL, &r);
    json_t *found = NULL, *v;
    size_t i;
    json_array_foreach(jpath(r.json, "entries"), i, v)
        if (strcmp(jstr(v, "id"), id) == 0)
            found = json_incref(v);
    resp_free(&r);
    return found;
}

static long long cache_stat(int port, const char *field)
{
    resp_t r;
    http(port, "GET", "/v1/cache/stats", NULL, &r);
    long long v = jint(r.json, field);
    resp_free(&r);
    return v;
}

typedef struct {
    json_t *done;   /* the "done" event */
    bool saw_done_marker;
} prefill_sse_t;

static bool on_prefill_event(const char *data, void *ud)
{
    prefill_sse_t *st = ud;
    if (strcmp(data, "[DONE]") == 0) {
        st->saw_done_marker = true;
        return true;
    }
    json_t *j = json_loads(data, 0, NULL);
    if (j && json_is_string(json_object_get(j, "event")) &&
        strcmp(json_string_value(json_object_get(j, "event")), "done") == 0) {
        json_decref(st->done);
        st->done = j;
    } else {
        json_decref(j);
    }
    return true;
}

/* "tier": "disk": the snapshot is on disk (and only there) when the
 * answer comes; a chat on the document restores it from disk and answers
 * token for token as an engine without cache does. */
static void test_prefill_to_disk(void **state)
{
    (void)state;
    char dir_a[256], dir_b[256];
    engine_t a, b;
    engine_pair_start(&a, dir_a, &b, dir_b);
    char *doc = make_doc(41, 60);

    long long ram0 = cache_stat(a.p.port, "bytes_ram");
    resp_t pf;
    assert_int_equal(prefill_tier(a.p.port, doc, "disk", &pf), 200);
    long long P = jint(pf.json, "n_tokens");
    assert_true(P > 300);
    assert_string_equal(jstr(pf.json, "tier"), "disk");
    assert_false(json_is_true(jpath(pf.json, "cached")));
    char id[32];
    snprintf(id, sizeof id, "%s", jstr(pf.json, "id"));
    resp_free(&pf);

    /* Durable at the answer: the file is there, nothing is pending, the
     * RAM tier did not grow. */
    char edir[600], f[700];
    entry_dir(a.kvdir, edir, sizeof edir);
    entry_file(edir, id, f, sizeof f);
    assert_int_equal(cache_stat(a.p.port, "pending_writes"), 0);
    assert_int_equal(cache_stat(a.p.port, "bytes_ram"), ram0);
    assert_int_equal(cache_stat(a.p.port, "entries_disk"), 1);
    json_t *en = cache_entry(a.p.port, id);
    assert_non_null(en);
    assert_string_equal(jstr(en, "tier"), "disk");
    assert_true(json_is_true(jpath(en, "on_disk")));
    assert_true(json_is_true(jpath(en, "disk_only")));
    json_decref(en);

    /* A chat on the document restores the prefix from disk. */
    json_t *m = msgs_doc_question(doc, "Which item weighs the most?");
    resp_t ra, rb;
    chat(a.p.port, m, &ra, true);
    chat(b.p.port, m, &rb, true);
    assert_string_equal(tier(&ra), "disk");
    assert_true(jint(ra.json, "usage.prompt_tokens_details.cached_tokens") >= P);
    assert_same_tokens(&ra, &rb);
    resp_free(&ra);
    /* It stays on disk (loads do not promote it); a second document's chat
     * in the one slot, then the first one's new question: from disk again. */
    en = cache_entry(a.p.port, id);
    assert_string_equal(jstr(en, "tier"), "disk");
    json_decref(en);
    char *other = make_doc(42, 10);
    json_t *m2 = msgs_doc_question(other, "Anything?");
    chat(a.p.port, m2, &ra, true);
    resp_free(&ra);
    /* (no word in common with the first question: the first chat's own
     * snapshot, in RAM, shares only the prefix with it) */
    json_t *m3 = msgs_doc_question(doc, "Name the lightest item.");
    chat(a.p.port, m3, &ra, true);
    resp_free(&rb);
    chat(b.p.port, m3, &rb, true);
    assert_string_equal(tier(&ra), "disk");
    assert_same_tokens(&ra, &rb);
    resp_free(&ra);
    resp_free(&rb);

    /* The same prefix again: already there. */
    assert_int_equal(prefill_tier(a.p.port, doc, "disk", &pf), 200);
    assert_true(json_is_true(jpath(pf.json, "cached")));
    assert_string_equal(jstr(pf.json, "tier"), "disk");
    assert_string_equal(jstr(pf.json, "id"), id);
    resp_free(&pf);

    /* A RAM entry prefilled again with "tier": "disk" moves there. */
    char *third = make_doc(43, 30);
    assert_int_equal(prefill_tier(a.p.port, third, NULL, &pf), 200);
    assert_string_equal(jstr(pf.json, "tier"), "ram");
    snprintf(id, sizeof id, "%s", jstr(pf.json, "id"));
    long long bytes3 = jint(pf.json, "bytes");
    resp_free(&pf);
    long long ram1 = cache_stat(a.p.port, "bytes_ram");
    assert_int_equal(prefill_tier(a.p.port, third, "disk", &pf), 200);
    assert_string_equal(jstr(pf.json, "tier"), "disk");
    assert_string_equal(jstr(pf.json, "id"), id);
    resp_free(&pf);
    assert_int_equal(cache_stat(a.p.port, "bytes_ram"), ram1 - bytes3);
    en = cache_entry(a.p.port, id);
    assert_true(json_is_true(jpath(en, "disk_only")));
    json_decref(en);

    /* Streamed: the last event comes once the file is durable. */
    char *fourth = make_doc(44, 20);
    char *body = json_take_dump(json_pack("{s:[{s:s, s:s}], s:s, s:b}", "messages", "role",
                                          "system", "content", fourth, "tier", "disk", "stream", 1));
    prefill_sse_t st = { 0 };
    assert_int_equal(http_sse(a.p.port, "/v1/cache/prefill", body, on_prefill_event, &st), 200);
    free(body);
    assert_non_null(st.done);
    assert_true(st.saw_done_marker);
    assert_string_equal(jstr(st.done, "tier"), "disk");
    entry_file(edir, jstr(st.done, "id"), f, sizeof f);
    json_decref(st.done);

    /* A bad value. */
    body = json_take_dump(json_pack("{s:s, s:s}", "prompt", "x", "tier", "gpu"));
    http(a.p.port, "POST", "/v1/cache/prefill", body, &pf);
    free(body);
    assert_int_equal(pf.status, 400);
    assert_non_null(strstr(jstr(pf.json, "error.message"), "tier"));
    resp_free(&pf);

    json_decref(m);
    json_decref(m2);
    json_decref(m3);
    free(other);
    free(third);
    free(fourth);
    engine_stop(&a);
    engine_stop(&b);
    tmpdir_remove(dir_b);

    /* No disk tier: 409. A disk tier too small for the snapshot: 507. */
    const char *nodisk[] = { "--reset", "--cache-disk", "0", NULL };
    engine_start(&a, dir_a, nodisk);
    assert_int_equal(prefill_tier(a.p.port, doc, "disk", &pf), 409);
    assert_non_null(strstr(jstr(pf.json, "error.message"), "disk tier is disabled"));
    resp_free(&pf);
    assert_int_equal(cache_stat(a.p.port, "entries"), 0);
    engine_stop(&a);
    const char *small[] = { "--reset", "--cache-disk", "64K", NULL };
    engine_start(&a, dir_a, small);
    assert_int_equal(prefill_tier(a.p.port, doc, "disk", &pf), 507);
    assert_string_equal(jstr(pf.json, "error.type"), "server_error");
    assert_non_null(strstr(jstr(pf.json, "error.message"), "disk tier"));
    resp_free(&pf);
    assert_int_equal(cache_stat(a.p.port, "entries"), 0);
    assert_int_equal(cache_stat(a.p.port, "bytes_ram"), 0);
    engine_stop(&a);
    free(doc);
    tmpdir_remove(dir_a);
}

static void test_streaming_and_disconnect(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    const char *args[] = { "--parallel", "1", "--queue", "0", NULL };
    engine_start(&e, dir, args);

    /* The stream carries what the non-streaming answer carries. */
    const char *req = "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story.\"}],"
                      "\"temperature\":0,\"max_tokens\":10,\"ignore_eos\":true";
    char body[512];
    snprintf(body, sizeof body, "%s,\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
             req);
    sse_state_t s = { 0 };
    assert_int_equal(http_sse(e.p.port, "/v1/chat/completions", body, on_event, &s), 200);
    assert_true(s.saw_role && s.saw_done && s.saw_usage && s.saw_timings);
    assert_string_equal(s.finish, "length");
    snprintf(body, sizeof body, "%s}", req);
    resp_t r;
    http(e.p.port, "POST", "/v1/chat/completions", body, &r);
    assert_string_equal(s.content, jstr(r.json, "choices.0.message.content"));
    resp_free(&r);

    /* A client that hangs up mid-stream frees the slot. */
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Go on forever.\"}],"
             "\"max_tokens\":100000,\"ignore_eos\":true,\"stream\":true}");
    sse_state_t s2 = { .hang_up_after = 4 };
    http_sse(e.p.port, "/v1/chat/completions", body, on_event, &s2);
    assert_false(s2.saw_done);
    double t0 = now_ms();
    while (metric(e.p.port, "kvchat_engine_slots_busy ") != 0 && now_ms() - t0 < 10000)
        usleep(20 * 1000);
    assert_int_equal(metric(e.p.port, "kvchat_engine_slots_busy "), 0);
    assert_int_equal(metric(e.p.port, "kvchat_engine_requests_total{outcome=\"cancelled\"} "), 1);
    /* ...and the slot serves the next request. */
    http(e.p.port, "POST", "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4}", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    engine_stop(&e);
    tmpdir_remove(dir);
}

typedef struct {
    int port;
    sse_state_t s;
} bg_t;

static bool bg_event(const char *data, void *ud)
{
    sse_state_t *s = ud;
    (void)data;
    s->events++;
    return s->events < s->hang_up_after;
}

static void *bg_stream(void *arg)
{
    bg_t *b = arg;
    http_sse(b->port, "/v1/chat/completions",
             "{\"messages\":[{\"role\":\"user\",\"content\":\"long\"}],\"max_tokens\":100000,"
             "\"ignore_eos\":true,\"stream\":true}",
             bg_event, &b->s);
    return NULL;
}

static void test_queue_full(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    const char *args[] = { "--parallel", "1", "--queue", "0", NULL };
    engine_start(&e, dir, args);
    bg_t b = { .port = e.p.port, .s = { .hang_up_after = 200 } };
    pthread_t th;
    pthread_create(&th, NULL, bg_stream, &b);
    double t0 = now_ms();
    while (metric(e.p.port, "kvchat_engine_slots_busy ") != 1 && now_ms() - t0 < 10000)
        usleep(10 * 1000);
    assert_int_equal(metric(e.p.port, "kvchat_engine_slots_busy "), 1);
    resp_t r;
    http(e.p.port, "POST", "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4}", &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(jstr(r.json, "error.message"), "busy"));
    resp_free(&r);
    pthread_join(th, NULL);
    engine_stop(&e);
    tmpdir_remove(dir);
}

static void expect_error(int port, const char *method, const char *path, const char *body,
                         long status, const char *needle)
{
    resp_t r;
    http(port, method, path, body, &r);
    if (r.status != status)
        fail_msg("%s %s %s: expected %ld, got %ld: %s", method, path, body ? body : "", status,
                 r.status, r.body);
    assert_non_null(r.json);
    const char *msg = jstr(r.json, "error.message");
    if (needle && !strstr(msg, needle))
        fail_msg("%s %s: message '%s' lacks '%s'", method, path, msg, needle);
    resp_free(&r);
}

static void test_bad_requests(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    engine_start(&e, dir, NULL);
    int p = e.p.port;
    const char *chat_path = "/v1/chat/completions";
    expect_error(p, "POST", chat_path, "{\"messages\": [", 400, "Malformed JSON");
    expect_error(p, "POST", chat_path, "[1,2]", 400, NULL);
    expect_error(p, "POST", chat_path, "{}", 400, "messages");
    expect_error(p, "POST", chat_path, "{\"messages\": []}", 400, "empty");
    expect_error(p, "POST", chat_path, "{\"messages\": \"hi\"}", 400, "messages");
    expect_error(p, "POST", chat_path, "{\"messages\": [{\"role\":\"user\",\"content\":5}]}", 400,
                 "content");
    expect_error(p, "POST", chat_path, "{\"messages\": [{\"role\":\"king\",\"content\":\"x\"}]}", 400,
                 "role");
    expect_error(p, "POST", chat_path,
                 "{\"messages\": [{\"role\":\"user\",\"content\":\"x\"}], \"temperature\":\"hot\"}",
                 400, "temperature");
    expect_error(p, "POST", chat_path,
                 "{\"messages\": [{\"role\":\"user\",\"content\":\"x\"}], \"max_tokens\":-5}", 400,
                 "max_tokens");
    expect_error(p, "POST", chat_path,
                 "{\"messages\": [{\"role\":\"user\",\"content\":\"x\"}], \"stream\":\"yes\"}", 400,
                 "stream");
    /* longer than a slot's context (2048 cells) */
    char *doc = make_doc(5, 400);
    char *big = json_take_dump(json_pack("{s:[{s:s, s:s}]}", "messages", "role", "user", "content", doc));
    expect_error(p, "POST", chat_path, big, 400, "tokens");
    free(big);
    big = json_take_dump(json_pack("{s:[{s:s, s:s}]}", "messages", "role", "system", "content", doc));
    expect_error(p, "POST", "/v1/cache/prefill", big, 400, "tokens");
    free(big);
    free(doc);
    expect_error(p, "POST", "/v1/completions", "{\"prompt\": 3}", 400, "prompt");
    expect_error(p, "POST", "/v1/cache/prefill", "{\"prompt\":\"a\",\"messages\":[]}", 400, NULL);
    expect_error(p, "POST", "/tokenize", "{}", 400, "content");
    expect_error(p, "POST", "/detokenize", "{\"tokens\":[1, -4]}", 400, "token");
    /* cache_salt: a string of 1 to 256 bytes (null: none), on every route
     * that caches; the message never repeats the salt. */
    const char *const salted_paths[] = { chat_path, "/v1/completions", "/v1/cache/prefill" };
    const char *const salted_bodies[] = {
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2,",
        "{\"prompt\":\"hi\",\"max_tokens\":2,",
        "{\"messages\":[{\"role\":\"system\",\"content\":\"hi\"}],",
    };
    char long_salt[300], salt_field[400], req_body[600];
    for (int i = 0; i < 3; i++) {
        const char *bad[] = { "\"cache_salt\":5", "\"cache_salt\":[\"a\"]", "\"cache_salt\":true",
                              "\"cache_salt\":\"\"" };
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            snprintf(req_body, sizeof req_body, "%s%s}", salted_bodies[i], bad[b]);
            expect_error(p, "POST", salted_paths[i], req_body, 400, "cache_salt");
        }
        /* 257 bytes: refused, and not echoed */
        memset(long_salt, 'q', 257);
        long_salt[257] = '\0';
        snprintf(salt_field, sizeof salt_field, "\"cache_salt\":\"%s\"", long_salt);
        snprintf(req_body, sizeof req_body, "%s%s}", salted_bodies[i], salt_field);
        resp_t lr;
        http(p, "POST", salted_paths[i], req_body, &lr);
        assert_int_equal(lr.status, 400);
        assert_non_null(strstr(jstr(lr.json, "error.message"), "cache_salt"));
        assert_null(strstr(lr.body, "qqqqqqqq"));
        resp_free(&lr);
        /* 256 bytes (128 two-byte characters) and null: accepted */
        size_t at = 0;
        for (int c = 0; c < 128; c++) {
            long_salt[at++] = '\xc3';
            long_salt[at++] = '\xa9';
        }
        long_salt[at] = '\0';
        snprintf(salt_field, sizeof salt_field, "\"cache_salt\":\"%s\"", long_salt);
        snprintf(req_body, sizeof req_body, "%s%s}", salted_bodies[i], salt_field);
        http(p, "POST", salted_paths[i], req_body, &lr);
        assert_int_equal(lr.status, 200);
        resp_free(&lr);
        snprintf(req_body, sizeof req_body, "%s%s}", salted_bodies[i], "\"cache_salt\":null");
        http(p, "POST", salted_paths[i], req_body, &lr);
        assert_int_equal(lr.status, 200);
        resp_free(&lr);
        /* 257 bytes of two-byte characters and one more */
        snprintf(salt_field, sizeof salt_field, "\"cache_salt\":\"%sx\"", long_salt);
        snprintf(req_body, sizeof req_body, "%s%s}", salted_bodies[i], salt_field);
        expect_error(p, "POST", salted_paths[i], req_body, 400, "cache_salt");
    }
    expect_error(p, "DELETE", "/v1/cache/0123456789abcdef", NULL, 404, "no cache entry");
    expect_error(p, "GET", "/v1/nothing", NULL, 404, NULL);
    expect_error(p, "GET", chat_path, NULL, 405, NULL);
    /* The engine still serves after all that. */
    resp_t r;
    http(p, "POST", chat_path, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    engine_stop(&e);
    tmpdir_remove(dir);
}

static void test_misc_endpoints(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    engine_start(&e, dir, NULL);
    int p = e.p.port;
    resp_t r;
    http(p, "GET", "/v1/models", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "data.0.id"), "tiny.gguf");
    assert_true(json_is_true(jpath(r.json, "data.0.meta.random_weights")));
    assert_int_equal(jint(r.json, "data.0.meta.n_ctx_slot"), 2048);
    resp_free(&r);

    http(p, "POST", "/tokenize", "{\"content\":\"Hello world\"}", &r);
    assert_int_equal(r.status, 200);
    json_t *toks = json_incref(jpath(r.json, "tokens"));
    assert_true(json_array_size(toks) >= 2);
    resp_free(&r);
    /* the count alone: as many, and no tokens */
    http(p, "POST", "/tokenize", "{\"content\":\"Hello world\",\"count_only\":true}", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(r.json, "count"), (long long)json_array_size(toks));
    assert_null(jpath(r.json, "tokens"));
    resp_free(&r);
    expect_error(p, "POST", "/tokenize", "{\"content\":\"a\",\"count_only\":1}", 400, "count_only");
    char *body = json_take_dump(json_pack("{s:o}", "tokens", toks));
    http(p, "POST", "/detokenize", body, &r);
    free(body);
    assert_string_equal(jstr(r.json, "content"), "Hello world");
    resp_free(&r);

    http(p, "POST", "/v1/completions", "{\"prompt\":\"Once upon a time\",\"max_tokens\":5,\"ignore_eos\":true}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "object"), "text_completion");
    assert_int_equal(jint(r.json, "usage.completion_tokens"), 5);
    resp_free(&r);

    http(p, "GET", "/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "kvchat_engine_ttft_seconds_bucket{le=\"+Inf\"} 1"));
    assert_non_null(strstr(r.body, "kvchat_engine_cache_requests_total{tier=\"none\"}"));
    assert_non_null(strstr(r.body, "kvchat_engine_cache_bytes{tier=\"ram\"}"));
    assert_non_null(strstr(r.body, "kvchat_engine_prompt_tokens_total"));
    resp_free(&r);
    engine_stop(&e);
    tmpdir_remove(dir);
}

/* ---- the API key ---- */

static size_t discard_body(char *p, size_t size, size_t n, void *user)
{
    (void)p;
    (void)user;
    return size * n;
}

/* The HTTP status of one request, with "Authorization: Bearer key" when key
 * is not NULL. */
static long status_with_key(int port, const char *method, const char *path, const char *body,
                            const char *key)
{
    char url[256], auth[700];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    long code = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return code;
}

/* A pipe holding `text` (write end closed), its read end inheritable. */
static int text_pipe(const char *text)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    size_t n = strlen(text);
    assert_int_equal(write(p[1], text, n), (ssize_t)n);
    close(p[1]);
    return p[0];
}

/* Whether the NUL-separated file /proc/pid/<what> contains needle. */
static bool proc_file_contains(int pid, const char *what, const char *needle)
{
    char path[64], buf[65536];
    snprintf(path, sizeof path, "/proc/%d/%s", pid, what);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    assert_true(n > 0);
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = '\n';
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

/* Whether process pid has a descriptor open on `target` (as readlink
 * shows it: "pipe:[123]"). */
static bool holds_fd(int pid, const char *target)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", pid);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    bool found = false;
    while (!found && (de = readdir(d))) {
        char path[400], link[256];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n > 0) {
            link[n] = '\0';
            found = strcmp(link, target) == 0;
        }
    }
    closedir(d);
    return found;
}

/* Every route but /health wants the key. */
static void assert_keyed(int port, const char *key)
{
    static const char chat[] =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":2}";
    assert_int_equal(status_with_key(port, "GET", "/health", NULL, NULL), 200);
    assert_int_equal(status_with_key(port, "GET", "/v1/cache", NULL, NULL), 401);
    assert_int_equal(status_with_key(port, "GET", "/v1/cache", NULL, "not-the-key"), 401);
    assert_int_equal(status_with_key(port, "GET", "/v1/cache/stats", NULL, NULL), 401);
    assert_int_equal(status_with_key(port, "GET", "/v1/models", NULL, NULL), 401);
    assert_int_equal(status_with_key(port, "GET", "/metrics", NULL, NULL), 401);
    assert_int_equal(status_with_key(port, "POST", "/v1/chat/completions", chat, NULL), 401);
    assert_int_equal(status_with_key(port, "POST", "/tokenize", "{\"content\":\"a\"}", NULL), 401);
    assert_int_equal(status_with_key(port, "POST", "/v1/cache/reset", "{}", NULL), 401);
    assert_int_equal(status_with_key(port, "GET", "/v1/cache", NULL, key), 200);
    assert_int_equal(status_with_key(port, "GET", "/v1/models", NULL, key), 200);
    assert_int_equal(status_with_key(port, "POST", "/v1/chat/completions", chat, key), 200);
}

/* Idle connections and rebound names (the engine on its defaults, with a
 * short timeout and a small per-address limit for the test). */
static void test_connections(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    const char *args[] = { "--timeout", "2", "--max-connections", "64", "--max-connections-per-ip",
                           "8", NULL };
    engine_start(&e, dir, args);
    enum { N = 80 };
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = tcp_connect_from(e.p.port, "127.0.0.2");
    /* other clients are served meanwhile, a generation included */
    resp_t r;
    http(e.p.port, "GET", "/health", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(e.p.port, "POST", "/v1/completions", "{\"prompt\":\"Hello\",\"max_tokens\":4}", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    int closed = 0;
    for (int i = 0; i < N; i++) {
        closed += tcp_closed_within(fds[i], 6000);
        close(fds[i]);
    }
    assert_int_equal(closed, N);
    /* a page whose name was rebound to 127.0.0.1 is not answered */
    int fd = tcp_connect_from(e.p.port, "127.0.0.1");
    const char *req = "GET /v1/models HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    char out[2048];
    ssize_t k = recv(fd, out, sizeof out - 1, 0);
    assert_true(k > 12);
    out[k] = '\0';
    assert_non_null(strstr(out, " 403 "));
    close(fd);
    engine_stop(&e);
    tmpdir_remove(dir);
}

/* --api-key-fd: the key is read from the descriptor (which is then
 * closed) and is in neither the command line nor the environment;
 * --api-key keeps working for an engine run by hand. */
static void test_api_key(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    static const char key[] = "3f9c1e0b7a6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b";
    char line[80];
    snprintf(line, sizeof line, "%s\n", key);
    int fd = text_pipe(line);
    struct stat pst;
    assert_int_equal(fstat(fd, &pst), 0);
    char fd_s[16];
    snprintf(fd_s, sizeof fd_s, "%d", fd);
    engine_t e;
    const char *args[] = { "--api-key-fd", fd_s, NULL };
    engine_start(&e, dir, args);
    close(fd);
    assert_keyed(e.p.port, key);
    assert_true(proc_file_contains(e.p.pid, "cmdline", "--api-key-fd"));
    assert_false(proc_file_contains(e.p.pid, "cmdline", key));
    assert_false(proc_file_contains(e.p.pid, "environ", key));
    /* the pipe was closed once read */
    char pipe_name[64];
    snprintf(pipe_name, sizeof pipe_name, "pipe:[%lu]", (unsigned long)pst.st_ino);
    assert_false(holds_fd(e.p.pid, pipe_name));
    assert_false(log_contains(e.log, key));
    engine_stop(&e);

    /* --api-key, by hand */
    const char *by_hand[] = { "--api-key", "hand-made-key", NULL };
    engine_start(&e, dir, by_hand);
    assert_keyed(e.p.port, "hand-made-key");
    engine_stop(&e);
    tmpdir_remove(dir);
}

/* Run the engine with argv (and the model) until it exits; its exit status
 * and whether its output holds `needle`. */
static int engine_exit(const char *dir, const char *const *extra, const char *needle, bool *found)
{
    char log[300];
    snprintf(log, sizeof log, "%s/exit.log", dir);
    unlink(log);
    const char *argv[16] = { KVCHAT_ENGINE_EXE, "--model", MODEL, "--port", "0" };
    int n = 5;
    for (int i = 0; extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int lf = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (lf < 0 || dup2(lf, 1) < 0 || dup2(lf, 2) < 0)
            _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    *found = log_contains(log, needle);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

/* Keys the engine refuses to start with: it says why, never echoing the key. */
static void test_api_key_bad(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    bool found = false;
    char fd_s[16];

    int fd = text_pipe("a-key\n");
    snprintf(fd_s, sizeof fd_s, "%d", fd);
    const char *both[] = { "--api-key", "k", "--api-key-fd", fd_s, NULL };
    assert_int_equal(engine_exit(dir, both, "not both", &found), 2);
    assert_true(found);
    close(fd);

    fd = text_pipe("");
    snprintf(fd_s, sizeof fd_s, "%d", fd);
    const char *empty[] = { "--api-key-fd", fd_s, NULL };
    assert_int_equal(engine_exit(dir, empty, "is empty", &found), 2);
    assert_true(found);
    close(fd);

    fd = text_pipe("two words\n");
    snprintf(fd_s, sizeof fd_s, "%d", fd);
    const char *spaced[] = { "--api-key-fd", fd_s, NULL };
    assert_int_equal(engine_exit(dir, spaced, "other than printable ASCII", &found), 2);
    assert_true(found);
    assert_int_equal(engine_exit(dir, spaced, "two words", &found), 2);
    assert_false(found);
    close(fd);

    char big[700];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fd = text_pipe(big);
    snprintf(fd_s, sizeof fd_s, "%d", fd);
    const char *huge[] = { "--api-key-fd", fd_s, NULL };
    assert_int_equal(engine_exit(dir, huge, "longer than 512 bytes", &found), 2);
    assert_true(found);
    close(fd);

    const char *closed[] = { "--api-key-fd", "999", NULL };
    assert_int_equal(engine_exit(dir, closed, "Bad file descriptor", &found), 2);
    assert_true(found);
    const char *bad[] = { "--api-key-fd", "-1", NULL };
    assert_int_equal(engine_exit(dir, bad, "bad value", &found), 2);
    assert_true(found);
    tmpdir_remove(dir);
}

/* A full disk (here: a file-size limit, as the kernel reports EFBIG like
 * ENOSPC) makes snapshot writes fail; the engine logs it and keeps serving
 * from RAM. */
static void test_full_disk(void **state)
{
    (void)state;
    char dir[256], kvdir[300], log[300];
    tmpdir_make(dir, sizeof dir);
    snprintf(kvdir, sizeof kvdir, "%s/kv", dir);
    snprintf(log, sizeof log, "%s/engine.log", dir);
    const char *argv[] = { "--fsize=20000", "--", KVCHAT_ENGINE_EXE, "--model", MODEL,
                           "--threads", "2", "--ctx-size", "4096", "--cache-dir", kvdir, NULL };
    proc_t p;
    proc_start(&p, "/usr/bin/prlimit", argv, log, 60);
    char *doc = make_doc(7, 30);
    resp_t r;
    prefill(p.port, doc, false, &r);
    resp_free(&r);
    for (int i = 0; i < 100; i++) {
        http(p.port, "GET", "/v1/cache/stats", NULL, &r);
        if (jint(r.json, "pending_writes") == 0)
            break;
        resp_free(&r);
        usleep(50 * 1000);
    }
    assert_int_equal(jint(r.json, "disk_write_failures"), 1);
    assert_int_equal(jint(r.json, "entries_disk"), 0);
    resp_free(&r);
    /* still served, from RAM */
    json_t *m = msgs_doc_question(doc, "Still there?");
    chat(p.port, m, &r, true);
    assert_string_not_equal(tier(&r), "none");
    resp_free(&r);
    json_decref(m);
    free(doc);
    assert_int_equal(proc_stop(&p), 0);
    tmpdir_remove(dir);
}

/* ---- cache_salt ---- */

/* A greedy chat under the cache salt `salt` (NULL: no salt). */
static void chat_salted(int port, json_t *messages, const char *salt, int max_tokens, resp_t *r)
{
    json_t *req = json_pack("{s:O, s:f, s:i, s:b}", "messages", messages, "temperature", 0.0,
                            "max_tokens", max_tokens, "return_tokens", 1);
    if (salt)
        json_object_set_new(req, "cache_salt", json_string(salt));
    char *body = json_take_dump(req);
    http(port, "POST", "/v1/chat/completions", body, r);
    free(body);
    if (r->status != 200)
        fail_msg("chat: HTTP %ld: %s", r->status, r->body);
    /* the figure OpenAI's clients read is the engine's own */
    assert_int_equal(jint(r->json, "usage.prompt_tokens_details.cached_tokens"), cache_n(r));
}

/* A prefill of doc as a system message under `salt` (NULL: none). */
static long long prefill_salted(int port, const char *doc, const char *salt, resp_t *out)
{
    json_t *req = json_pack("{s:[{s:s, s:s}]}", "messages", "role", "system", "content", doc);
    if (salt)
        json_object_set_new(req, "cache_salt", json_string(salt));
    char *body = json_take_dump(req);
    http(port, "POST", "/v1/cache/prefill", body, out);
    free(body);
    if (out->status != 200)
        fail_msg("prefill: HTTP %ld: %s", out->status, out->body);
    return jint(out->json, "n_tokens");
}

/* Whether any regular file under dir (recursively) holds needle[0..n). */
static bool dir_holds(const char *dir, const void *needle, size_t n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            found = dir_holds(p, needle, n);
            continue;
        }
        if (!S_ISREG(st.st_mode) || st.st_size == 0)
            continue;
        FILE *f = fopen(p, "rb");
        assert_non_null(f);
        char *b = malloc((size_t)st.st_size);
        assert_non_null(b);
        size_t got = fread(b, 1, (size_t)st.st_size, f);
        fclose(f);
        found = memmem(b, got, needle, n) != NULL;
        free(b);
    }
    closedir(d);
    return found;
}

/* The SHA-256 of text, as sha256sum(1) prints it (64 hex digits). */
static void sha256_hex(const char *text, char out[65])
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "printf '%%s' '%s' | sha256sum", text);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(out, 65, p));
    pclose(p);
    assert_int_equal(strlen(out), 64);
}

/* The entry listed under id, or NULL. */
static json_t *listed(json_t *list, const char *id)
{
    size_t k;
    json_t *v;
    json_array_foreach(jpath(list, "entries"), k, v)
        if (!strcmp(jstr(v, "id"), id))
            return v;
    return NULL;
}

/* cache_salt: a prefix cached under one salt gives cached tokens to
 * requests with that salt only: not to another salt's, nor to requests
 * without one (whether from an entry or from a slot's resident KV), and
 * entries without a salt serve requests without one as before; the same
 * after a restart (entries restored from disk into their own salt's
 * namespace). A reply's tokens remembered under one salt are not used for
 * another. The listing shows each entry's salt hash (SHA-256), never the
 * salt, and neither do the entry files and the log. */
static void test_cache_salt(void **state)
{
    (void)state;
    static const char SA[] = "salt-of-tenant-A-5d1f0c", SB[] = "salt-of-tenant-B-9e72aa",
                      SC[] = "salt-of-tenant-C-31b4e8", SD[] = "salt-of-tenant-D-0a77f2";
    const char *const salts[] = { SA, SB, SC, SD };
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    /* One slot: every request takes the slot the last one left, so a
     * slot's KV must not serve a request of another namespace. */
    const char *reset[] = { "--reset", "--parallel", "1", "--verbose", NULL };
    engine_start(&e, dir, reset);
    int port = e.p.port;
    char *doc = make_doc(21, 40), *doc2 = make_doc(22, 40), *doc3 = make_doc(23, 40);

    resp_t r;
    long long P = prefill_salted(port, doc, SA, &r);
    assert_true(P > 300);
    assert_false(json_is_true(jpath(r.json, "cached")));
    char id_a[32];
    snprintf(id_a, sizeof id_a, "%s", jstr(r.json, "id"));
    resp_free(&r);

    json_t *m1 = msgs_doc_question(doc, "Which item weighs the most?");
    chat_salted(port, m1, SA, 16, &r);
    assert_true(cache_n(&r) >= P);
    resp_free(&r);
    /* Salt B, the same text: nothing, though the slot holds it. */
    chat_salted(port, m1, SB, 16, &r);
    assert_int_equal(cache_n(&r), 0);
    assert_string_equal(tier(&r), "none");
    resp_free(&r);
    /* No salt: nothing either. */
    chat_salted(port, m1, NULL, 16, &r);
    assert_int_equal(cache_n(&r), 0);
    assert_string_equal(tier(&r), "none");
    resp_free(&r);
    /* A again: from its own entries, not from the slot (which holds the
     * unsalted request's KV of the same text). */
    json_t *m2 = msgs_doc_question(doc, "Which item is lightest?");
    chat_salted(port, m2, SA, 16, &r);
    assert_string_equal(tier(&r), "ram");
    assert_true(cache_n(&r) >= P);
    resp_free(&r);
    /* Prefill: stored already under A; computed afresh under C. */
    prefill_salted(port, doc, SA, &r);
    assert_true(json_is_true(jpath(r.json, "cached")));
    assert_string_equal(jstr(r.json, "id"), id_a);
    resp_free(&r);
    prefill_salted(port, doc, SC, &r);
    assert_false(json_is_true(jpath(r.json, "cached")));
    assert_int_equal(jint(r.json, "cache_n"), 0);
    char id_c[32];
    snprintf(id_c, sizeof id_c, "%s", jstr(r.json, "id"));
    resp_free(&r);

    /* Without a salt, as before salts: a prefill serves later requests. */
    long long P2 = prefill_salted(port, doc2, NULL, &r);
    resp_free(&r);
    json_t *m4 = msgs_doc_question(doc2, "Which item is heaviest?");
    chat_salted(port, m4, NULL, 16, &r);
    assert_true(cache_n(&r) >= P2);
    resp_free(&r);
    /* (A's own entries share only the opening tokens of the documents) */
    chat_salted(port, m4, SA, 16, &r);
    assert_true(cache_n(&r) < 20);
    resp_free(&r);

    /* A reply remembered under A is used again for A's next turn only: B's
     * and D's next turns tokenize its text alike (neither learns that A
     * had it), and A's uses the generated tokens. */
    json_t *conv = json_pack("[{s:s, s:s}]", "role", "user", "content",
                             "Which item weighs the most?");
    chat_salted(port, conv, SA, 48, &r);
    const char *text = jstr(r.json, "choices.0.message.content");
    long long n_gen = (long long)json_array_size(jpath(r.json, "choices.0.tokens"));
    json_array_append_new(conv, json_pack("{s:s, s:s}", "role", "assistant", "content", text));
    json_array_append_new(conv, json_pack("{s:s, s:s}", "role", "user", "content",
                                          "And the lightest?"));
    resp_t tk;
    char *body = json_take_dump(json_pack("{s:s}", "content", text));
    http(port, "POST", "/tokenize", body, &tk);
    free(body);
    long long n_text = (long long)json_array_size(jpath(tk.json, "tokens"));
    resp_free(&tk);
    resp_free(&r);
    long long pt[3];
    const char *turn2[3] = { SB, SD, SA };
    for (int i = 0; i < 3; i++) {
        chat_salted(port, conv, turn2[i], 8, &r);
        pt[i] = jint(r.json, "usage.prompt_tokens");
        if (i < 2)
            assert_true(cache_n(&r) < 20);
        resp_free(&r);
    }
    assert_int_equal(pt[0], pt[1]);
    assert_int_equal(pt[2] - pt[1], n_gen - n_text);

    /* The listing: each entry's salt hash (SHA-256 of the salt) or null;
     * a salted entry deletes by id as any other. */
    char ha[65], hc[65];
    sha256_hex(SA, ha);
    sha256_hex(SC, hc);
    http(port, "GET", "/v1/cache", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *ea = listed(r.json, id_a), *ec = listed(r.json, id_c);
    assert_non_null(ea);
    assert_non_null(ec);
    assert_true(json_is_true(json_object_get(ea, "salted")));
    assert_string_equal(jstr(ea, "salt_hash"), ha);
    assert_string_equal(jstr(ec, "salt_hash"), hc);
    size_t k, n_plain = 0;
    json_t *v;
    json_array_foreach(jpath(r.json, "entries"), k, v) {
        json_t *h = json_object_get(v, "salt_hash");
        assert_true(json_is_null(h) == !json_is_true(json_object_get(v, "salted")));
        n_plain += json_is_null(h);
    }
    assert_true(n_plain >= 2);   /* doc2's prefill and its question */
    resp_free(&r);
    char path[64];
    snprintf(path, sizeof path, "/v1/cache/%s", id_c);
    http(port, "DELETE", path, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(port, "GET", "/v1/cache", NULL, &r);
    assert_null(listed(r.json, id_c));
    resp_free(&r);

    long long P3 = prefill_salted(port, doc3, SA, &r);
    resp_free(&r);
    engine_stop(&e);   /* flushes the writer */

    /* Files and log: the salts' hashes, never the salts. */
    unsigned char ha_bin[32];
    for (int i = 0; i < 32; i++)
        sscanf(ha + 2 * i, "%2hhx", &ha_bin[i]);
    assert_true(dir_holds(e.kvdir, ha_bin, sizeof ha_bin));
    for (size_t i = 0; i < sizeof salts / sizeof salts[0]; i++) {
        assert_false(dir_holds(e.kvdir, salts[i], strlen(salts[i])));
        assert_false(log_contains(e.log, salts[i]));
    }

    /* After a restart: doc3 is A's, from disk; B, C and no salt get none
     * of it (at most the opening tokens their own entries share with it;
     * asked first, so that A's cannot come from the slot). */
    const char *resume[] = { "--resume", "--parallel", "1", "--verbose", NULL };
    engine_start(&e, dir, resume);
    port = e.p.port;
    json_t *m3 = msgs_doc_question(doc3, "Name one item.");
    const char *others[] = { SB, SC, NULL };
    for (int i = 0; i < 3; i++) {
        chat_salted(port, m3, others[i], 16, &r);
        assert_true(cache_n(&r) < 20);
        resp_free(&r);
    }
    chat_salted(port, m3, SA, 16, &r);
    assert_string_equal(tier(&r), "disk");
    assert_int_equal(cache_n(&r), P3);
    resp_free(&r);
    /* Entries without a salt serve requests without one, as they did. */
    json_t *m5 = msgs_doc_question(doc2, "Which item is lightest?");
    chat_salted(port, m5, NULL, 16, &r);
    assert_string_equal(tier(&r), "disk");
    assert_true(cache_n(&r) >= P2);
    resp_free(&r);
    engine_stop(&e);
    for (size_t i = 0; i < sizeof salts / sizeof salts[0]; i++) {
        assert_false(dir_holds(e.kvdir, salts[i], strlen(salts[i])));
        assert_false(log_contains(e.log, salts[i]));
    }

    json_decref(m1);
    json_decref(m2);
    json_decref(m3);
    json_decref(m4);
    json_decref(m5);
    json_decref(conv);
    free(doc);
    free(doc2);
    free(doc3);
    tmpdir_remove(dir);
}

/* A q8_0 KV cache halves (about) the bytes of a snapshot. */
static void test_kv_q8(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    engine_t e;
    char *doc = make_doc(8, 30);
    long long bytes[2];
    const char *f16[] = { "--reset", NULL };
    const char *q8[] = { "--reset", "--kv-type", "q8_0", NULL };
    for (int i = 0; i < 2; i++) {
        engine_start(&e, dir, i ? q8 : f16);
        resp_t r;
        prefill(e.p.port, doc, false, &r);
        bytes[i] = jint(r.json, "bytes");
        resp_free(&r);
        json_t *m = msgs_doc_question(doc, "And?");
        chat(e.p.port, m, &r, true);   /* restores and answers with a q8_0 cache too */
        resp_free(&r);
        json_decref(m);
        engine_stop(&e);
    }
    /* q8_0 stores 34 bytes per 32 values against 64 */
    assert_true(bytes[1] * 100 < bytes[0] * 60);
    assert_true(bytes[1] * 100 > bytes[0] * 45);
    free(doc);
    tmpdir_remove(dir);
}

int main(void)
{
    /* KVCHAT_TEST_FILTER=test_name (wildcards allowed) runs only those */
    if (getenv("KVCHAT_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KVCHAT_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiers_match_uncached),
        cmocka_unit_test(test_reply_tokens_after_restart),
        cmocka_unit_test(test_slots_keep_documents),
        cmocka_unit_test(test_resume_and_reset),
        cmocka_unit_test(test_damaged_files_rejected),
        cmocka_unit_test(test_prefill_to_disk),
        cmocka_unit_test(test_budgets),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_streaming_and_disconnect),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_misc_endpoints),
        cmocka_unit_test(test_full_disk),
        cmocka_unit_test(test_kv_q8),
        cmocka_unit_test(test_cache_salt),
        cmocka_unit_test(test_api_key),
        cmocka_unit_test(test_connections),
        cmocka_unit_test(test_api_key_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
