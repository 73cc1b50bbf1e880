/* test_longdoc.c — documents of any length, end to end: the real app, the
 * real engine with the tiny model (2048 tokens per conversation, 1024 of
 * them for a document), the real extractor.
 *
 * A generated Markdown manual of eight sections, each with a fact found
 * nowhere else ("The vault of the walrus opens with code 4417"), is cut
 * into chunks and planned into five or more parts. Covered: the chunk and
 * group endpoints (shapes, paging, errors); caching every part with the
 * prototype's events (init, progress per part, complete) onto the engine's
 * disk tier; each question routed to a part holding its fact (and the
 * answer's rag_info, sources and stored meta saying so); the part's KV
 * restored (cached tokens at least the part's), the greedy answer the same
 * as after a cold prefill of the same part; a restart with --resume
 * restoring parts from disk; use_rag false answered 422 with both numbers;
 * the SSE stream's first event; a Chinese document (asked in Simplified
 * and in Traditional) and a mixed English/Chinese one routed right; a
 * short document staying one part with method "full_document"; several
 * documents in one chat (short ones together in one system message, in
 * the session's order; a long one with a short one routed across both).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include "common/httpd.h"
#include "common/json.h"
#include "fixtures.h"
#include "support.h"

#define MODEL KVCHAT_TEST_MODELS_DIR "/tiny.gguf"
#define MODEL_NAME "tiny.gguf"
#define API "/api/v1"
#define ENGINE_KEY "itest-longdoc-key"

static char g_dir[256];
static proc_t g_app;

/* ---- a remote provider that does not say its context ----
 *
 * An OpenAI-compatible server as OpenAI's own API is: /v1/models lists a
 * model without any context size, /v1/chat/completions streams an answer.
 * It keeps the system message of the last request. kvchat knows it as two
 * remote models: "blind" (no context setting) and "sized"
 * (remote.sized.context). */
static struct {
    httpd_t *srv;
    pthread_mutex_t lock;
    char *system;      /* the last request's system message */
    int chats;
} g_remote = { .lock = PTHREAD_MUTEX_INITIALIZER };

#define REMOTE_CONTEXT 1536

static void remote_models(httpd_req_t *req, void *user)
{
    (void)user;
    httpd_reply_json(req, 200, json_pack("{s:s, s:[{s:s, s:s, s:s}]}", "object", "list", "data",
                                         "id", "gpt-test", "object", "model", "owned_by",
                                         "test"));
}

static void remote_chat(httpd_req_t *req, void *user)
{
    (void)user;
    size_t len;
    const char *b = httpd_req_body(req, &len);
    json_t *j = json_loadb(b, len, 0, NULL);
    json_t *first = json_array_get(json_object_get(j, "messages"), 0);
    const char *role = json_string_value(json_object_get(first, "role"));
    pthread_mutex_lock(&g_remote.lock);
    free(g_remote.system);
    g_remote.system = role && !strcmp(role, "system")
                          ? strdup(json_string_value(json_object_get(first, "content")))
                          : NULL;
    g_remote.chats++;
    pthread_mutex_unlock(&g_remote.lock);
    json_decref(j);
    static const char sse[] =
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-test\","
        "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"The code is "
        "in the manual.\"},\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-test\","
        "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":"
        "{\"prompt_tokens\":100,\"completion_tokens\":6,\"total_tokens\":106}}\n\n"
        "data: [DONE]\n\n";
    httpd_reply_text(req, 200, "text/event-stream", sse, sizeof sse - 1);
}

static const httpd_route_t g_remote_routes[] = {
    { "GET", "/v1/models", remote_models, 0, NULL },
    { "POST", "/v1/chat/completions", remote_chat, 0, NULL },
};

static int remote_start(void)
{
    httpd_config_t cfg = httpd_config_default();
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.max_body = (size_t)16 << 20;
    return httpd_open(&cfg, g_remote_routes, 2, NULL, &g_remote.srv) == HTTPD_OK ? 0 : -1;
}

static int group_setup(void **state)
{
    (void)state;
    if (remote_start() != 0)
        return -1;
    char blind[128], sized[128], sized_ctx[64];
    snprintf(blind, sizeof blind, "remote.blind.base_url=http://127.0.0.1:%u/v1",
             httpd_port(g_remote.srv));
    snprintf(sized, sizeof sized, "remote.sized.base_url=http://127.0.0.1:%u/v1",
             httpd_port(g_remote.srv));
    snprintf(sized_ctx, sizeof sized_ctx, "remote.sized.context=%d", REMOTE_CONTEXT);
    tmpdir_make(g_dir, sizeof g_dir);
    char data[300], models[300], eport[64], log[300];
    snprintf(data, sizeof data, "%s/data", g_dir);
    snprintf(models, sizeof models, "engine.models_dir=%s", g_dir);
    snprintf(log, sizeof log, "%s/kvchat.log", g_dir);
    snprintf(eport, sizeof eport, "engine.port=%d", free_port());
    const char *argv[] = { "--data", data, "--model", MODEL, "--set", eport, "--set",
                           "engine.threads=2", "--set", "engine.ctx_size=4096", "--set",
                           "engine.parallel=2", "--set", models, "--set", "llm.max_tokens=8",
                           "--set", "llm.temperature=0", "--set", "engine.api_key=" ENGINE_KEY,
                           "--set", "documents.chunk_tokens=48", "--set",
                           "documents.chunk_max_tokens=96", "--set", blind, "--set",
                           "remote.blind.provider=openai", "--set", sized, "--set",
                           "remote.sized.provider=openai", "--set", sized_ctx, NULL };
    http_set_bearer(ENGINE_KEY);
    proc_start(&g_app, KVCHAT_BIN_DIR "/kvchat", argv, log, 60);
    app_wait_model(g_app.port, "running");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int st = proc_stop(&g_app);
    tmpdir_remove(g_dir);
    httpd_close(g_remote.srv);
    free(g_remote.system);
    return st == 0 ? 0 : -1;
}

/* ---- the documents ---- */

static const char *const g_animals[] = { "walrus", "pelican", "armadillo", "flamingo",
                                         "porcupine", "salamander", "chinchilla", "meerkat" };
#define N_SECTIONS 8
static const int g_codes[N_SECTIONS] = { 4417, 9021, 3385, 7702, 1568, 6243, 8830, 2194 };

static const char *const g_filler[] = {
    "The committee reviewed the quarterly figures and found the totals in order.",
    "Visitors are asked to sign the register at the front desk before entering.",
    "Maintenance work on the eastern wing continues through the autumn months.",
    "Each department keeps its own records in a cabinet near the window.",
    "The garden behind the building was planted with roses and lavender.",
    "Deliveries arrive on weekday mornings and are checked against the list.",
    "A small library on the second floor holds reference books and journals.",
    "Lights in the corridor switch off automatically after ten in the evening.",
};
#define N_FILLER (sizeof g_filler / sizeof g_filler[0])

/* A Markdown manual: a title, then N_SECTIONS sections of filler
 * paragraphs, each with its fact in the middle. */
static char *manual(void)
{
    size_t cap = 200000, len = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    len += (size_t)snprintf(s + len, cap - len, "# Facilities manual\n\n");
    for (int k = 0; k < N_SECTIONS; k++) {
        len += (size_t)snprintf(s + len, cap - len, "## The %s wing\n\n", g_animals[k]);
        for (int p = 0; p < 24; p++) {
            if (p == 11)
                len += (size_t)snprintf(s + len, cap - len,
                                        "The vault of the %s opens with code %d, and only the "
                                        "night warden of the %s wing keeps it.\n\n",
                                        g_animals[k], g_codes[k], g_animals[k]);
            len += (size_t)snprintf(s + len, cap - len, "%s %s\n\n", g_filler[(k + p) % N_FILLER],
                                    g_filler[(k * 3 + p + 1) % N_FILLER]);
        }
    }
    return s;
}

static char *upload_text(const char *name, const char *text)
{
    const char *p = fixture_raw(g_dir, name, text, strlen(text));
    resp_t r;
    http_upload(g_app.port, API "/documents/upload", p, name, &r);
    if (r.status != 200)
        fail_msg("upload %s: %ld %s", name, r.status, r.body);
    char *id = strdup(jstr(r.json, "doc_id"));
    resp_free(&r);
    return id;
}

static void get(const char *path, long want, resp_t *r)
{
    http(g_app.port, "GET", path, NULL, r);
    if (r->status != want)
        fail_msg("GET %.200s: expected %ld, got %ld: %.300s", path, want, r->status, r->body);
}

/* The chunk of document id whose content has `needle`: its id, or -1. */
static long chunk_with(const char *id, const char *needle)
{
    char path[256];
    for (long offset = 0;; offset += 50) {
        resp_t r;
        snprintf(path, sizeof path, API "/documents/%s/chunks?offset=%ld&limit=50", id, offset);
        get(path, 200, &r);
        size_t n = json_array_size(jpath(r.json, "chunks"));
        resp_free(&r);
        if (n == 0)
            return -1;
        for (size_t i = 0; i < n; i++) {
            snprintf(path, sizeof path, API "/documents/%s/chunks/%ld", id, offset + (long)i);
            get(path, 200, &r);
            bool has = strstr(jstr(r.json, "chunk.content"), needle) != NULL;
            resp_free(&r);
            if (has)
                return offset + (long)i;
        }
    }
}

/* Whether part `group` of document id holds chunk `chunk`. */
static bool group_has(json_t *groups, long group, long chunk)
{
    json_t *g = json_array_get(groups, (size_t)group);
    return g && chunk >= jint(g, "first_chunk") && chunk <= jint(g, "last_chunk");
}

/* Ask (not streamed); the answer's JSON into *r. */
static void ask(const char *session, const char *doc_id, const char *question, bool use_rag,
                long want, resp_t *r)
{
    char path[256];
    snprintf(path, sizeof path, API "/session/%s/messages", session);
    char *body = json_take_dump(json_pack("{s:s, s:s, s:b}", "message", question, "document_id",
                                          doc_id, "use_rag", use_rag));
    http(g_app.port, "POST", path, body, r);
    free(body);
    if (r->status != want)
        fail_msg("ask %s: expected %ld, got %ld: %s", question, want, r->status, r->body);
}

typedef struct {
    int init, progress, complete, done;
    long long total_groups, cached_groups, failed_groups, last_cached_count;
    bool saw_eta;
} cache_ev_t;

static bool on_cache(const char *data, void *ud)
{
    cache_ev_t *e = ud;
    json_t *j = json_loads(data, 0, NULL);
    assert_non_null(j);
    const char *ev = jstr(j, "event");
    if (!strcmp(ev, "init")) {
        e->init++;
        e->total_groups = jint(j, "total_groups");
        assert_int_equal(json_array_size(jpath(j, "groups")), (size_t)e->total_groups);
    } else if (!strcmp(ev, "progress")) {
        e->progress++;
        assert_true(jint(j, "total_groups") == e->total_groups);
        assert_non_null(jpath(j, "group_id"));
        assert_non_null(jpath(j, "status"));
        assert_true(jint(j, "percent") >= 0 && jint(j, "percent") <= 100);
        assert_true(jint(j, "cached_count") >= e->last_cached_count);
        e->last_cached_count = jint(j, "cached_count");
        e->saw_eta |= json_is_number(jpath(j, "eta_s"));
    } else if (!strcmp(ev, "complete")) {
        e->complete++;
        e->cached_groups = jint(j, "cached_groups");
        e->failed_groups = jint(j, "failed_groups");
        assert_int_equal(jint(j, "total_groups"), e->total_groups);
    } else if (!strcmp(ev, "done")) {
        e->done++;
    } else if (strcmp(ev, "start") != 0) {
        fail_msg("unexpected cache event: %s", data);
    }
    json_decref(j);
    return true;
}

static char *g_manual_id;

/* ---- tests ---- */

static void test_chunks_and_groups(void **state)
{
    (void)state;
    char *text = manual();
    g_manual_id = upload_text("manual.md", text);
    free(text);
    char path[256];
    resp_t r;
    snprintf(path, sizeof path, API "/documents/%s", g_manual_id);
    get(path, 200, &r);
    long long total_chunks = jint(r.json, "total_chunks");
    assert_true(total_chunks >= 20);
    assert_int_equal(jint(r.json, "total_pages"), 0);
    resp_free(&r);

    snprintf(path, sizeof path, API "/documents/%s/chunks?limit=5", g_manual_id);
    get(path, 200, &r);
    assert_string_equal(jstr(r.json, "doc_id"), g_manual_id);
    assert_int_equal(jint(r.json, "total_chunks"), total_chunks);
    assert_int_equal(json_array_size(jpath(r.json, "chunks")), 5);
    json_t *c1 = json_array_get(jpath(r.json, "chunks"), 1);
    assert_int_equal(jint(c1, "chunk_id"), 1);
    assert_true(jint(c1, "char_count") > 0);
    assert_true(jint(c1, "token_count") > 0);
    assert_true(json_is_array(jpath(c1, "page_numbers")));
    assert_true(json_array_size(jpath(c1, "group_ids")) >= 1);
    assert_non_null(strstr(jstr(c1, "heading"), "Facilities manual"));
    assert_null(jpath(c1, "content"));
    resp_free(&r);

    /* headings nest: a section's chunk names the title and the section */
    long walrus = chunk_with(g_manual_id, "walrus opens");
    assert_true(walrus >= 0);
    snprintf(path, sizeof path, API "/documents/%s/chunks/%ld", g_manual_id, walrus);
    get(path, 200, &r);
    assert_string_equal(jstr(r.json, "chunk.heading"), "Facilities manual > The walrus wing");
    assert_non_null(strstr(jstr(r.json, "chunk.content"), "4417"));
    resp_free(&r);

    snprintf(path, sizeof path, API "/documents/%s/chunks/%lld", g_manual_id, total_chunks);
    get(path, 404, &r);
    resp_free(&r);
    snprintf(path, sizeof path, API "/documents/%s/chunks/abc", g_manual_id);
    get(path, 400, &r);
    resp_free(&r);
    snprintf(path, sizeof path, API "/documents/%s/chunks?limit=0", g_manual_id);
    get(path, 400, &r);
    resp_free(&r);
    get(API "/documents/no-such-doc/chunks", 404, &r);
    resp_free(&r);
    get(API "/documents/no-such-doc/groups", 404, &r);
    resp_free(&r);

    snprintf(path, sizeof path, API "/documents/%s/groups", g_manual_id);
    get(path, 200, &r);
    size_t n = json_array_size(r.json);
    assert_true(n >= 5);
    resp_t doc;
    snprintf(path, sizeof path, API "/documents/%s", g_manual_id);
    get(path, 200, &doc);
    assert_int_equal(jint(doc.json, "total_groups"), (long long)n);
    resp_free(&doc);
    for (size_t i = 0; i < n; i++) {
        json_t *g = json_array_get(r.json, i);
        assert_int_equal(jint(g, "group_id"), (long long)i);
        assert_true(jint(g, "total_tokens") > 0 && jint(g, "total_tokens") <= 2048 - 1024);
        assert_false(json_is_true(jpath(g, "cached")));
        if (i > 0) /* consecutive parts overlap by a chunk or more */
            assert_true(jint(g, "first_chunk") <=
                        jint(json_array_get(r.json, i - 1), "last_chunk"));
    }
    assert_int_equal(jint(json_array_get(r.json, n - 1), "last_chunk"), total_chunks - 1);
    resp_free(&r);
}

static void test_cache_parts(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, API "/documents/cache/%s", g_manual_id);
    cache_ev_t ev = { 0 };
    assert_int_equal(http_sse(g_app.port, path, "{}", on_cache, &ev), 200);
    assert_int_equal(ev.init, 1);
    assert_int_equal(ev.complete, 1);
    assert_int_equal(ev.done, 1);
    assert_true(ev.total_groups >= 5);
    assert_true(ev.progress >= ev.total_groups);
    assert_int_equal(ev.cached_groups, ev.total_groups);
    assert_int_equal(ev.failed_groups, 0);
    assert_true(ev.saw_eta);

    resp_t r;
    snprintf(path, sizeof path, API "/documents/%s/cache-status", g_manual_id);
    get(path, 200, &r);
    assert_string_equal(jstr(r.json, "cache_status"), "cached");
    assert_int_equal(jint(r.json, "total_groups"), ev.total_groups);
    assert_int_equal(jint(r.json, "cached_groups"), ev.total_groups);
    assert_string_equal(jstr(json_array_get(jpath(r.json, "groups"), 0), "tier"), "disk");
    resp_free(&r);

    /* again: every part is skipped, nothing prefilled */
    snprintf(path, sizeof path, API "/documents/cache/%s", g_manual_id);
    http(g_app.port, "POST", path, "{}", &r);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(jpath(r.json, "already_cached")));
    assert_int_equal(jint(r.json, "cached_groups"), ev.total_groups);
    resp_free(&r);
}

static void test_routing(void **state)
{
    (void)state;
    char path[256];
    resp_t g;
    snprintf(path, sizeof path, API "/documents/%s/groups", g_manual_id);
    get(path, 200, &g);
    for (int k = 0; k < N_SECTIONS; k++) {
        char question[200], session[64], code[16];
        snprintf(question, sizeof question, "Which code opens the vault of the %s?",
                 g_animals[k]);
        snprintf(session, sizeof session, "route-%d", k);
        snprintf(code, sizeof code, "%d", g_codes[k]);
        long chunk = chunk_with(g_manual_id, code);
        assert_true(chunk >= 0);
        resp_t r;
        ask(session, g_manual_id, question, true, 200, &r);
        long group = (long)jint(r.json, "rag_info.group_id");
        if (!group_has(g.json, group, chunk))
            fail_msg("%s went to part %ld, which does not hold chunk %ld", question, group,
                     chunk);
        assert_string_equal(jstr(r.json, "rag_info.method"), "rag");
        assert_string_equal(jstr(r.json, "rag_info.filename"), "manual.md");
        assert_true(jint(r.json, "rag_info.total_groups") >= 5);
        assert_true(json_real_value(jpath(r.json, "rag_info.similarity_score")) > 0);
        assert_int_equal(jint(r.json, "rag_info.matched_chunk_id"), chunk);
        assert_non_null(strstr(jstr(r.json, "rag_info.content_preview"), g_animals[k]));
        assert_non_null(strstr(jstr(r.json, "rag_info.matched_chunk_metadata.heading"),
                               g_animals[k]));
        json_t *src = jpath(r.json, "sources");
        assert_true(json_array_size(src) >= 1);
        assert_int_equal(jint(json_array_get(src, 0), "chunk_id"), chunk);
        /* the part came from the cache (on disk): at least its tokens */
        json_t *part = json_array_get(g.json, (size_t)group);
        assert_true(jint(r.json, "usage.cached_tokens") >= jint(part, "cached_tokens"));
        assert_true(jint(part, "cached_tokens") > 0);
        resp_free(&r);
    }
    resp_free(&g);

    /* "tell me more" stays on the previous turn's part */
    resp_t r;
    ask("route-3", g_manual_id, "Tell me more.", true, 200, &r);
    resp_t first;
    snprintf(path, sizeof path, API "/session/route-3/messages");
    get(path, 200, &first);
    json_t *msgs = jpath(first.json, "messages");
    assert_int_equal(json_array_size(msgs), 4);
    long before = (long)jint(json_array_get(msgs, 1), "rag_info.group_id");
    assert_int_equal(jint(r.json, "rag_info.group_id"), before);
    /* the stored answer keeps where it came from */
    assert_string_equal(jstr(json_array_get(msgs, 3), "rag_info.method"), "rag");
    assert_true(json_is_array(jpath(json_array_get(msgs, 3), "sources")));
    resp_free(&first);
    resp_free(&r);

    /* the whole document does not fit: 422 with both numbers */
    ask("route-whole", g_manual_id, "Summarize everything.", false, 422, &r);
    assert_non_null(strstr(jstr(r.json, "detail"), "2048"));
    assert_non_null(strstr(jstr(r.json, "detail"), "tokens"));
    resp_free(&r);
}

typedef struct {
    json_t *first;
    char text[4096];
    json_t *final;
} stream_t;

static bool on_stream(const char *data, void *ud)
{
    stream_t *s = ud;
    json_t *j = json_loads(data, 0, NULL);
    assert_non_null(j);
    if (!s->first) {
        s->first = j;
        return true;
    }
    if (json_is_true(jpath(j, "done"))) {
        s->final = j;
        return true;
    }
    strncat(s->text, jstr(j, "chunk"), sizeof s->text - strlen(s->text) - 1);
    json_decref(j);
    return true;
}

static void stream_ask(const char *session, const char *question, stream_t *s)
{
    memset(s, 0, sizeof *s);
    char path[256];
    snprintf(path, sizeof path, API "/session/%s/messages/stream", session);
    char *body = json_take_dump(
        json_pack("{s:s, s:s}", "message", question, "document_id", g_manual_id));
    assert_int_equal(http_sse(g_app.port, path, body, on_stream, s), 200);
    free(body);
    assert_non_null(s->final);
}

/* The stream's first event says where the answer comes from (the
 * prototype's shape); the answer restored from the disk tier equals the
 * one after a cold prefill of the same part; --resume keeps the parts. */
static void test_stream_restore_and_restart(void **state)
{
    (void)state;
    stream_t a;
    stream_ask("stream-1", "Which code opens the vault of the flamingo?", &a);
    assert_string_equal(jstr(a.first, "chunk"), "");
    assert_false(json_is_true(jpath(a.first, "done")));
    json_t *ri = jpath(a.first, "rag_info");
    const char *fields[] = { "group_id", "similarity_score", "method", "filename",
                             "content_preview", "matched_chunk_id", "matched_chunk_metadata" };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!json_object_get(ri, fields[i]))
            fail_msg("rag_info has no %s", fields[i]);
    assert_non_null(jpath(ri, "matched_chunk_metadata.page_numbers"));
    assert_non_null(jpath(ri, "matched_chunk_metadata.heading"));
    long group = (long)jint(ri, "group_id");
    /* from the part on disk, or from the earlier turn's snapshot of it */
    assert_true(strcmp(jstr(a.final, "timings.cache_tier"), "none") != 0);
    long long cached = jint(a.final, "usage.cached_tokens");
    assert_true(cached > 100);

    /* restart keeping the cache: the part comes from disk again */
    resp_t r;
    http(g_app.port, "POST", API "/model/up/without_reset", "{}", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    stream_t b;
    stream_ask("stream-2", "Which code opens the vault of the flamingo?", &b);
    assert_int_equal(jint(b.first, "rag_info.group_id"), group);
    assert_string_equal(jstr(b.final, "timings.cache_tier"), "disk");
    assert_true(jint(b.final, "usage.cached_tokens") >= cached);
    assert_string_equal(a.text, b.text);

    /* a cold start (cache wiped): the same part prefilled from scratch
     * gives the same greedy answer */
    http(g_app.port, "POST", API "/model/up/reset", "{}", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    stream_t c;
    stream_ask("stream-3", "Which code opens the vault of the flamingo?", &c);
    assert_int_equal(jint(c.first, "rag_info.group_id"), group);
    assert_true(jint(c.final, "usage.cached_tokens") < cached);
    assert_string_equal(a.text, c.text);
    stream_t *all[] = { &a, &b, &c };
    for (int i = 0; i < 3; i++) {
        json_decref(all[i]->first);
        json_decref(all[i]->final);
    }
}

/* ---- Chinese and mixed ---- */

static const char *const g_zh_topics[] = { "熊猫", "长城", "茶叶", "丝绸", "瓷器", "故宫" };
static const char *const g_zh_topics_tw[] = { "熊貓", "長城", "茶葉", "絲綢", "瓷器", "故宮" };
static const char *const g_zh_filler[] = {
    "委员会审查了季度数字，认为总数没有问题。",
    "访客进入之前需要在前台登记姓名和时间。",
    "东侧建筑的维修工作将持续整个秋季。",
    "每个部门都把自己的记录放在窗边的柜子里。",
    "楼后的花园种满了玫瑰和薰衣草。",
    "送货在工作日的早上到达，并按清单核对。",
};
#define N_ZH 6

static char *chinese(bool mixed)
{
    size_t cap = 200000, len = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    len += (size_t)snprintf(s + len, cap - len, "# 设施手册\n\n");
    for (int k = 0; k < N_ZH; k++) {
        len += (size_t)snprintf(s + len, cap - len, "## 第%d章\n\n", k + 1);
        for (int p = 0; p < 16; p++) {
            if (p == 8) {
                if (mixed)
                    len += (size_t)snprintf(s + len, cap - len,
                                            "关于%s的档案 the %s archive uses shelf %d.\n\n",
                                            g_zh_topics[k], g_animals[k], g_codes[k]);
                else
                    len += (size_t)snprintf(s + len, cap - len,
                                            "关于%s的档案保存在第%d号柜子里。\n\n",
                                            g_zh_topics[k], g_codes[k]);
            }
            len += (size_t)snprintf(s + len, cap - len, "%s%s\n\n",
                                    g_zh_filler[(k + p) % N_ZH], g_zh_filler[(k * 5 + p + 2) % N_ZH]);
        }
    }
    return s;
}

/* Ask each topic's question; its part must hold the topic's fact. */
static void route_all(const char *id, const char *const *questions, const char *tag)
{
    char path[256];
    resp_t g;
    snprintf(path, sizeof path, API "/documents/%s/groups", id);
    get(path, 200, &g);
    assert_true(json_array_size(g.json) >= 3);
    for (int k = 0; k < N_ZH; k++) {
        char code[16], session[64];
        snprintf(code, sizeof code, "%d", g_codes[k]);
        snprintf(session, sizeof session, "%s-%d", tag, k);
        long chunk = chunk_with(id, code);
        assert_true(chunk >= 0);
        resp_t r;
        ask(session, id, questions[k], true, 200, &r);
        long group = (long)jint(r.json, "rag_info.group_id");
        if (!group_has(g.json, group, chunk))
            fail_msg("%s (%s) went to part %ld, which does not hold chunk %ld", questions[k], tag,
                     group, chunk);
        resp_free(&r);
    }
    resp_free(&g);
}

static void test_chinese_and_mixed(void **state)
{
    (void)state;
    char *zh = chinese(false);
    char *id = upload_text("手册.md", zh);
    free(zh);
    char q[N_ZH][160], qt[N_ZH][160], qm[N_ZH][160];
    const char *qs[N_ZH], *qts[N_ZH], *qms[N_ZH];
    for (int k = 0; k < N_ZH; k++) {
        snprintf(q[k], sizeof q[k], "%s的档案在哪个柜子里？", g_zh_topics[k]);
        snprintf(qt[k], sizeof qt[k], "%s的檔案在哪個櫃子裡？", g_zh_topics_tw[k]);
        qs[k] = q[k];
        qts[k] = qt[k];
    }
    route_all(id, qs, "zh");
    route_all(id, qts, "zh-tw");   /* Traditional question, Simplified text */
    free(id);

    char *mx = chinese(true);
    id = upload_text("mixed.md", mx);
    free(mx);
    for (int k = 0; k < N_ZH; k++) {
        snprintf(qm[k], sizeof qm[k], "Which shelf holds the %s archive (%s)?", g_animals[k],
                 g_zh_topics[k]);
        qms[k] = qm[k];
    }
    route_all(id, qms, "mixed");
    free(id);
}

static void test_short_stays_whole(void **state)
{
    (void)state;
    char *id = upload_text("short.md", "# Note\n\nThe kettle is in the second cupboard.\n");
    resp_t r;
    char path[256];
    snprintf(path, sizeof path, API "/documents/%s/groups", id);
    get(path, 200, &r);
    assert_int_equal(json_array_size(r.json), 1);
    resp_free(&r);
    ask("short-1", id, "Where is the kettle?", true, 200, &r);
    assert_string_equal(jstr(r.json, "rag_info.method"), "full_document");
    assert_int_equal(jint(r.json, "rag_info.group_id"), 0);
    resp_free(&r);
    ask("short-2", id, "Where is the kettle?", false, 200, &r);
    assert_string_equal(jstr(r.json, "rag_info.method"), "full_document");
    resp_free(&r);
    free(id);
}

/* Ask about documents `ids` (a JSON array of ids, or NULL to keep the
 * session's); the answer into *r. */
static void ask_set(const char *session, json_t *ids, const char *question, long want, resp_t *r)
{
    char path[256];
    snprintf(path, sizeof path, API "/session/%s/messages", session);
    json_t *b = json_pack("{s:s}", "message", question);
    if (ids)
        json_object_set_new(b, "document_ids", ids);
    char *body = json_take_dump(b);
    http(g_app.port, "POST", path, body, r);
    free(body);
    if (r->status != want)
        fail_msg("ask %s: expected %ld, got %ld: %s", question, want, r->status, r->body);
}

static void test_several_documents(void **state)
{
    (void)state;
    char *kettle = upload_text("kitchen.md", "# Kitchen\n\nThe kettle is in the second "
                                             "cupboard.\n");
    char *umbrella = upload_text("hall.md", "# Hall\n\nThe umbrella stands by the front "
                                            "door.\n");
    /* two short ones fit together: one system message, in the set's order */
    resp_t r;
    ask_set("set-1", json_pack("[s,s]", kettle, umbrella), "Where is the umbrella?", 200, &r);
    assert_string_equal(jstr(r.json, "rag_info.method"), "full_document");
    assert_int_equal(json_array_size(jpath(r.json, "rag_info.document_ids")), 2);
    assert_string_equal(jstr(json_array_get(jpath(r.json, "rag_info.document_ids"), 0), ""),
                        kettle);
    resp_free(&r);
    get(API "/session/set-1", 200, &r);
    assert_int_equal(json_array_size(jpath(r.json, "document_ids")), 2);
    assert_string_equal(jstr(json_array_get(jpath(r.json, "document_ids"), 1), ""), umbrella);
    resp_free(&r);
    /* the session keeps its set; the second turn's prefix is the first's */
    ask_set("set-1", NULL, "And the kettle?", 200, &r);
    assert_int_equal(json_array_size(jpath(r.json, "rag_info.document_ids")), 2);
    assert_true(jint(r.json, "usage.cached_tokens") > 0);
    resp_free(&r);

    /* a long one with a short one: each question goes to the best part of
     * either */
    ask_set("set-2", json_pack("[s,s]", g_manual_id, kettle), "Which code opens the vault of "
            "the porcupine?", 200, &r);
    assert_string_equal(jstr(r.json, "rag_info.method"), "rag");
    assert_string_equal(jstr(r.json, "rag_info.document_id"), g_manual_id);
    resp_free(&r);
    ask_set("set-2", NULL, "Which cupboard holds the kettle?", 200, &r);
    assert_string_equal(jstr(r.json, "rag_info.document_id"), kettle);
    assert_string_equal(jstr(r.json, "rag_info.filename"), "kitchen.md");
    resp_free(&r);

    /* bad sets */
    ask_set("set-3", json_pack("[s,s]", kettle, kettle), "Hello?", 400, &r);
    resp_free(&r);
    ask_set("set-3", json_pack("[s,s]", kettle, "no-such-doc"), "Hello?", 404, &r);
    resp_free(&r);
    ask_set("set-3", json_pack("[i]", 7), "Hello?", 400, &r);
    resp_free(&r);

    /* a collection: several files and a name in one request; a chat names it */
    char p1[400], p2[400];
    const char *garden = "# Garden\n\nThe rake hangs in the shed.\n";
    snprintf(p1, sizeof p1, "%s", fixture_raw(g_dir, "garden.md", garden, strlen(garden)));
    snprintf(p2, sizeof p2, "%s/garage.md", g_dir);
    FILE *f = fopen(p2, "w");
    assert_non_null(f);
    fputs("# Garage\n\nThe ladder leans on the north wall.\n", f);
    fclose(f);
    const char *paths[] = { p1, p2 }, *names[] = { "garden.md", "garage.md" };
    http_upload_many(g_app.port, API "/documents/upload_collection", "files", paths, names, 2,
                     "name", "House notes", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "name"), "House notes");
    assert_int_equal(json_array_size(jpath(r.json, "document_ids")), 2);
    assert_int_equal(json_array_size(jpath(r.json, "errors")), 0);
    char col[128];
    snprintf(col, sizeof col, "%s", jstr(r.json, "collection_id"));
    resp_free(&r);
    char path[256];
    snprintf(path, sizeof path, API "/documents/collections/%s", col);
    get(path, 200, &r);
    assert_string_equal(jstr(r.json, "documents.1.filename"), "garage.md");
    resp_free(&r);
    char *body = json_take_dump(json_pack("{s:s, s:s}", "message", "Where is the ladder?",
                                          "collection_id", col));
    http(g_app.port, "POST", API "/session/set-4/messages", body, &r);
    free(body);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(jpath(r.json, "rag_info.document_ids")), 2);
    resp_free(&r);
    /* no name, no files, an unknown collection */
    http_upload_many(g_app.port, API "/documents/upload_collection", "files", paths, names, 2,
                     NULL, NULL, &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    http_upload_many(g_app.port, API "/documents/upload_collection", "files", paths, names, 0,
                     "name", "x", &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    get(API "/documents/collections/nope", 404, &r);
    resp_free(&r);
    free(kettle);
    free(umbrella);
}

/* The engine goes away after the first part is cached: the other parts
 * fail (recorded, the run goes on to its end), nothing cached is lost, and
 * caching again, with the engine back, skips what is done. */
typedef struct {
    int cached_seen;
    bool stopped;
    long long cached_groups, failed_groups;
    char first_error[512];   /* the first failed part's error, as streamed */
    long long first_failed;
} interrupt_t;

static bool on_interrupt(const char *data, void *ud)
{
    interrupt_t *t = ud;
    json_t *j = json_loads(data, 0, NULL);
    assert_non_null(j);
    const char *ev = jstr(j, "event");
    if (!strcmp(ev, "progress") && !strcmp(jstr(j, "status"), "cached") && !t->stopped) {
        t->cached_seen++;
        resp_t r;
        http(g_app.port, "POST", API "/model/down", "{}", &r);
        assert_int_equal(r.status, 200);
        resp_free(&r);
        t->stopped = true;
    } else if (!strcmp(ev, "progress") && !strcmp(jstr(j, "status"), "failed") &&
               !t->first_error[0]) {
        snprintf(t->first_error, sizeof t->first_error, "%s", jstr(j, "error"));
        t->first_failed = jint(j, "group_id");
    } else if (!strcmp(ev, "complete")) {
        t->cached_groups = jint(j, "cached_groups");
        t->failed_groups = jint(j, "failed_groups");
    }
    json_decref(j);
    return true;
}

static void test_cache_interrupted(void **state)
{
    (void)state;
    char *text = manual();
    /* another document (its content differs from the manual's) */
    size_t n = strlen(text);
    text = realloc(text, n + 64);
    assert_non_null(text);
    snprintf(text + n, 64, "\n## Appendix\n\nThe end of the second manual.\n");
    char *id = upload_text("manual2.md", text);
    free(text);
    char path[256];
    snprintf(path, sizeof path, API "/documents/cache/%s", id);
    interrupt_t t = { 0 };
    assert_int_equal(http_sse(g_app.port, path, "{}", on_interrupt, &t), 200);
    assert_true(t.stopped);
    assert_true(t.cached_groups >= 1);
    assert_true(t.failed_groups >= 1);
    /* no model to plan for: said so, no plan made for nothing */
    resp_t r;
    snprintf(path, sizeof path, API "/documents/%s/groups", id);
    get(path, 503, &r);
    resp_free(&r);
    /* back, keeping the cache: the failed parts say so, and caching again
     * skips what was cached */
    http(g_app.port, "POST", API "/model/up/without_reset", "{}", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    app_wait_model(g_app.port, "running");
    get(path, 200, &r);
    size_t failed = 0, cached = 0, total = json_array_size(r.json);
    for (size_t i = 0; i < total; i++) {
        json_t *g = json_array_get(r.json, i);
        failed += strcmp(jstr(g, "status"), "failed") == 0;
        cached += json_is_true(jpath(g, "cached"));
        /* the stream said why, in the words the parts list keeps */
        if (jint(g, "group_id") == t.first_failed)
            assert_string_equal(jstr(g, "error"), t.first_error);
    }
    assert_true(t.first_error[0] != '\0');
    assert_int_equal(failed, (size_t)t.failed_groups);
    assert_int_equal(cached, (size_t)t.cached_groups);
    resp_free(&r);
    snprintf(path, sizeof path, API "/documents/cache/%s", id);
    http(g_app.port, "POST", path, "{}", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(r.json, "cached_groups"), (long long)total);
    assert_false(json_is_true(jpath(r.json, "already_cached")));
    resp_free(&r);
    free(id);
}

/* GET /documents/{id}/search: the chunk holding the answer first, the part
 * a question goes to the one chat routes it to; bad searches are 400s. */
static void test_search(void **state)
{
    (void)state;
    char path[512];
    resp_t g, r;
    snprintf(path, sizeof path, API "/documents/%s/groups", g_manual_id);
    get(path, 200, &g);
    for (int k = 0; k < N_SECTIONS; k++) {
        char code[16];
        snprintf(code, sizeof code, "%d", g_codes[k]);
        long chunk = chunk_with(g_manual_id, code);
        snprintf(path, sizeof path, API "/documents/%s/search?q=vault+code+of+the+%s&limit=3",
                 g_manual_id, g_animals[k]);
        get(path, 200, &r);
        json_t *res = jpath(r.json, "results");
        assert_true(json_array_size(res) >= 1 && json_array_size(res) <= 3);
        assert_int_equal(jint(json_array_get(res, 0), "chunk_id"), chunk);
        assert_non_null(strstr(jstr(json_array_get(res, 0), "snippet"), g_animals[k]));
        assert_true(json_real_value(jpath(json_array_get(res, 0), "score")) > 0);
        assert_null(jpath(json_array_get(res, 0), "content"));
        long group = (long)jint(r.json, "route.group_id");
        assert_true(group_has(g.json, group, chunk));
        assert_true(json_is_true(jpath(r.json, "route.matched")));
        assert_int_equal(jint(r.json, "route.total_groups"), (long long)json_array_size(g.json));
        json_t *groups = jpath(json_array_get(res, 0), "group_ids");
        bool listed = false;
        for (size_t i = 0; i < json_array_size(groups); i++)
            listed |= json_integer_value(json_array_get(groups, i)) == group;
        assert_true(listed);
        resp_free(&r);
    }
    resp_free(&g);
    /* no searchable word: nothing found, the first part */
    snprintf(path, sizeof path, API "/documents/%s/search?q=the+of+and", g_manual_id);
    get(path, 200, &r);
    assert_int_equal(json_array_size(jpath(r.json, "results")), 0);
    assert_false(json_is_true(jpath(r.json, "route.matched")));
    assert_int_equal(jint(r.json, "route.group_id"), 0);
    resp_free(&r);
    /* FTS5 syntax is words, not syntax */
    snprintf(path, sizeof path, API "/documents/%s/search?q=%%22vault%%22+NEAR(code+*)+OR+%%5E",
             g_manual_id);
    get(path, 200, &r);
    resp_free(&r);
    snprintf(path, sizeof path, API "/documents/%s/search", g_manual_id);
    get(path, 400, &r);
    resp_free(&r);
    snprintf(path, sizeof path, API "/documents/%s/search?q=vault&limit=0", g_manual_id);
    get(path, 400, &r);
    resp_free(&r);
    char *longq = malloc(2200 + sizeof path);
    assert_non_null(longq);
    int n = snprintf(longq, 2200 + sizeof path, API "/documents/%s/search?q=", g_manual_id);
    memset(longq + n, 'a', 2100);
    longq[n + 2100] = '\0';
    get(longq, 400, &r);
    resp_free(&r);
    free(longq);
    get(API "/documents/nope/search?q=vault", 404, &r);
    resp_free(&r);
}

static void switch_to(const char *serving_name)
{
    char body[200];
    snprintf(body, sizeof body, "{\"serving_name\":\"%s\"}", serving_name);
    resp_t r;
    http(g_app.port, "POST", API "/model/switch", body, &r);
    if (r.status != 200)
        fail_msg("switch to %s: %ld %s", serving_name, r.status, r.body);
    resp_free(&r);
}

/* How many of the manual's sections the remote was given. */
static int remote_sections(void)
{
    pthread_mutex_lock(&g_remote.lock);
    int n = 0;
    for (int k = 0; k < N_SECTIONS && g_remote.system; k++) {
        char code[16];
        snprintf(code, sizeof code, "%d", g_codes[k]);
        n += strstr(g_remote.system, code) != NULL;
    }
    pthread_mutex_unlock(&g_remote.lock);
    return n;
}

/* A remote model that does not say its context gets the whole document
 * (kvchat cannot know it is too long); remote.NAME.context says it, and
 * then the document is cut into parts by estimated counts and each
 * question goes to its part. */
static void test_remote_context(void **state)
{
    (void)state;
    resp_t r;
    switch_to("blind");
    ask("remote-blind", g_manual_id, "Which code opens the vault of the walrus?", true, 200, &r);
    assert_string_equal(jstr(r.json, "rag_info.method"), "full_document");
    assert_int_equal(remote_sections(), N_SECTIONS);
    resp_free(&r);

    switch_to("sized");
    char path[256];
    snprintf(path, sizeof path, API "/documents/%s/groups", g_manual_id);
    resp_t g;
    get(path, 200, &g);
    size_t n = json_array_size(g.json);
    assert_true(n >= 2);
    for (size_t i = 0; i < n; i++)   /* estimates, each within the context */
        assert_true(jint(json_array_get(g.json, i), "total_tokens") < REMOTE_CONTEXT);
    for (int k = 0; k < N_SECTIONS; k += 3) {
        char q[200], session[64], code[16];
        snprintf(q, sizeof q, "Which code opens the vault of the %s?", g_animals[k]);
        snprintf(session, sizeof session, "remote-sized-%d", k);
        snprintf(code, sizeof code, "%d", g_codes[k]);
        ask(session, g_manual_id, q, true, 200, &r);
        assert_string_equal(jstr(r.json, "rag_info.method"), "rag");
        assert_int_equal(jint(r.json, "rag_info.total_groups"), (long long)n);
        assert_true(group_has(g.json, (long)jint(r.json, "rag_info.group_id"),
                              chunk_with(g_manual_id, code)));
        pthread_mutex_lock(&g_remote.lock);
        assert_non_null(g_remote.system);
        assert_non_null(strstr(g_remote.system, code));   /* its part, not the whole */
        pthread_mutex_unlock(&g_remote.lock);
        assert_true(remote_sections() < N_SECTIONS);
        resp_free(&r);
    }
    /* the whole document on request: more than the context holds */
    ask("remote-sized-whole", g_manual_id, "Which code opens the vault of the walrus?", false,
        422, &r);
    assert_non_null(strstr(jstr(r.json, "detail"), "does not fit"));
    resp_free(&r);
    resp_free(&g);
    switch_to(MODEL_NAME);
    app_wait_model(g_app.port, "running");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunks_and_groups),
        cmocka_unit_test(test_cache_parts),
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_search),
        cmocka_unit_test(test_stream_restore_and_restart),
        cmocka_unit_test(test_chinese_and_mixed),
        cmocka_unit_test(test_short_stays_whole),
        cmocka_unit_test(test_several_documents),
        cmocka_unit_test(test_cache_interrupted),
        cmocka_unit_test(test_remote_context),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    free(g_manual_id);
    return rc;
}
