/* test_app.c — kvchat end to end: the real app server, the real engine with
 * the tiny model, the real extractor, over HTTP.
 *
 * One app runs for the group (a 1 MB upload limit, 1024 tokens per slot,
 * and a remote "openai" model that points back at its own engine); a
 * second one checks session expiry. Covered: every endpoint of the seed
 * under /api/v1 and its error cases, documents of every format, the KV
 * cache end to end (upload, cache, ask: the reply's timings count the
 * document as cached; after a restart without reset it comes from disk),
 * streaming, disconnects, model supervision, logs and the OpenAPI table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/routes.h"
#include "fixtures.h"
#include "support.h"

#define MODEL KVCHAT_TEST_MODELS_DIR "/tiny.gguf"
#define API "/api/v1"

static char g_dir[256];
static proc_t g_app;
static int g_engine_port;
#define ENGINE_KEY "itest-engine-key"

static void start_app(proc_t *p, const char *dir, const char *const *extra)
{
    char data[300], models[300], eport[64], remote[128], log[300];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(models, sizeof models, "engine.models_dir=%s", dir);
    snprintf(log, sizeof log, "%s/kvchat.log", dir);
    g_engine_port = free_port();
    snprintf(eport, sizeof eport, "engine.port=%d", g_engine_port);
    snprintf(remote, sizeof remote, "remote.self.base_url=http://127.0.0.1:%d/v1", g_engine_port);
    const char *argv[40] = { "--data", data, "--model", MODEL, "--set", eport, "--set",
                             "engine.threads=2", "--set", "engine.ctx_size=2048", "--set", models,
                             "--set", "remote.self.provider=openai", "--set", remote, "--set",
                             "llm.max_tokens=12", "--set", "engine.api_key=" ENGINE_KEY, "--set",
                             "remote.self.api_key=" ENGINE_KEY };
    int n = 22;
    /* the tests also call the engine directly: with its key */
    http_set_bearer(ENGINE_KEY);
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    proc_start(p, KVCHAT_BIN_DIR "/kvchat", argv, log, 60);
    app_wait_model(p->port, "running");
}

static int group_setup(void **state)
{
    (void)state;
    tmpdir_make(g_dir, sizeof g_dir);
    const char *extra[] = { "--set", "server.max_upload_mb=1", NULL };
    start_app(&g_app, g_dir, extra);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int st = proc_stop(&g_app);
    tmpdir_remove(g_dir);
    return st == 0 ? 0 : -1;
}

static const char *const g_lines[] = {
    "The harbor office opens at seven in the morning.",
    "Ferries to the island leave every forty minutes.",
    "The lighthouse was painted red and white in spring.",
    "Fishing boats return before the evening market.",
    "A bakery near the pier sells rye bread.",
    "Storm warnings are posted on the blue board.",
    "The museum keeps maps of the old coastline.",
    "Visitors may rent bicycles at the station.",
    "The tide table is printed every Sunday.",
    "Night buses stop at the square until one.",
    "The library closes early on Saturdays.",
    "Cargo ships anchor beyond the breakwater.",
};
#define N_LINES (sizeof g_lines / sizeof g_lines[0])

static char *upload(const char *path, const char *name, long want_status, resp_t *keep)
{
    resp_t r;
    http_upload(g_app.port, API "/documents/upload", path, name, &r);
    if (r.status != want_status)
        fail_msg("upload %s: expected %ld, got %ld: %s", name, want_status, r.status, r.body);
    char *id = NULL;
    if (want_status == 200)
        id = strdup(jstr(r.json, "doc_id"));
    if (keep)
        *keep = r;
    else
        resp_free(&r);
    return id;
}

static void delete_doc(const char *id)
{
    char path[256];
    snprintf(path, sizeof path, API "/documents/%s", id);
    resp_t r;
    http(g_app.port, "DELETE", path, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

/* Every format uploads, is recognized by content and its text extracted. */
static void test_formats(void **state)
{
    (void)state;
    for (int i = 0; fixture_formats[i]; i++) {
        const char *ext = fixture_formats[i];
        /* a different line first, so contents (and hashes) differ */
        const char *lines[N_LINES + 1];
        char first[64];
        snprintf(first, sizeof first, "Format %s notes.", ext);
        lines[0] = first;
        memcpy(lines + 1, g_lines, sizeof g_lines);
        const char *path = fixture_write(g_dir, ext, lines, N_LINES + 1);
        char name[32];
        snprintf(name, sizeof name, "notes.%s", ext);
        resp_t r;
        char *id = upload(path, name, 200, &r);
        assert_string_equal(jstr(r.json, "filename"), name);
        assert_string_equal(jstr(r.json, "message"), "Document uploaded successfully");
        assert_true(jint(r.json, "file_size") > 0);
        assert_string_equal(jstr(r.json, "content_type"), strcmp(ext, "htm") ? ext : "html");
        resp_free(&r);
        char p[256];
        snprintf(p, sizeof p, API "/documents/%s?include_preview=true", id);
        http(g_app.port, "GET", p, NULL, &r);
        assert_int_equal(r.status, 200);
        const char *prev = jstr(r.json, "content_preview");
        if (!strstr(prev, "harbor office"))
            fail_msg(".%s preview lacks the text: %s", ext, prev);
        if (!strcmp(ext, "html"))
            assert_null(strstr(prev, "hidden"));   /* scripts are not text */
        assert_true(jint(r.json, "total_lines") >= 10);
        assert_false(json_is_true(jpath(r.json, "preview_truncated")));
        resp_free(&r);
        delete_doc(id);
        free(id);
    }
    /* a document of one long line: the preview stops at 4 KiB, between
     * two-byte characters */
    size_t n = 6000;
    char *line = malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(line + 2 * i, "é", 2);
    line[2 * n] = '\0';
    const char *one[] = { line };
    const char *path = fixture_write(g_dir, "txt", one, 1);
    resp_t r;
    char *id = upload(path, "long.txt", 200, NULL);
    char p[256];
    snprintf(p, sizeof p, API "/documents/%s?include_preview=true", id);
    http(g_app.port, "GET", p, NULL, &r);
    assert_int_equal(r.status, 200);
    const char *prev = jstr(r.json, "content_preview");
    assert_true(strlen(prev) <= 4096 && strlen(prev) >= 4000);
    assert_true(strlen(prev) % 2 == 0 && strncmp(prev, "éé", 4) == 0);
    assert_null(strstr(prev, "\xef\xbf\xbd"));   /* no U+FFFD from a split character */
    assert_true(json_is_true(jpath(r.json, "preview_truncated")));
    resp_free(&r);
    delete_doc(id);
    free(id);
    free(line);
}

static void test_upload_rules(void **state)
{
    (void)state;
    /* the limits the UI checks before sending: this app runs with 1 MB */
    resp_t lim;
    http(g_app.port, "GET", API "/documents/limits", NULL, &lim);
    assert_int_equal(lim.status, 200);
    assert_int_equal(jint(lim.json, "max_upload_mb"), 1);
    assert_int_equal(jint(lim.json, "max_upload_bytes"), 1 << 20);
    assert_true(json_array_size(jpath(lim.json, "allowed_extensions")) >= 8);
    assert_string_equal(jstr(lim.json, "allowed_extensions.0"), "txt");
    resp_free(&lim);
    resp_t r;
    /* unsupported extension */
    const char *p = fixture_raw(g_dir, "a.xyz", "hello", 5);
    upload(p, "a.xyz", 400, &r);
    const char *d = jstr(r.json, "detail");
    assert_non_null(strstr(d, "Unsupported file type: .xyz. Allowed types:"));
    assert_non_null(strstr(d, ".pdf"));
    resp_free(&r);
    /* content checked, not only the extension: PNG bytes named .pdf */
    static const unsigned char png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                                         'I', 'H', 'D', 'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0 };
    /* (a PNG is a document read by OCR: this one is cut short, and said to
     * be a damaged PNG, not a PDF) */
    p = fixture_raw(g_dir, "image.pdf", png, sizeof png);
    upload(p, "image.pdf", 422, &r);
    assert_string_equal(jstr(r.json, "detail"), "The PNG image is damaged or unreadable.");
    resp_free(&r);
    /* GIF bytes named .pdf: a format kvchat does not read */
    static const unsigned char gif[] = { 'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0,
                                         0, 0, 0, 0xff, 0xff, 0xff, ';' };
    p = fixture_raw(g_dir, "gif.pdf", gif, sizeof gif);
    upload(p, "gif.pdf", 400, &r);
    assert_non_null(strstr(jstr(r.json, "detail"), "Unsupported file type"));
    resp_free(&r);
    /* too large (the app runs with a 1 MB limit) */
    size_t big = (1u << 20) + 4096;
    char *buf = malloc(big);
    memset(buf, 'a', big);
    p = fixture_raw(g_dir, "big.txt", buf, big);
    free(buf);
    upload(p, "big.txt", 413, &r);
    assert_non_null(strstr(jstr(r.json, "detail"), "1 MB"));
    resp_free(&r);
    /* empty file: nothing to read */
    p = fixture_raw(g_dir, "empty.txt", "", 0);
    upload(p, "empty.txt", 422, &r);
    assert_true(strlen(jstr(r.json, "detail")) > 10);
    resp_free(&r);
    /* a broken zip named docx */
    static const char broken_zip[] = "PK\x03\x04garbage";
    p = fixture_raw(g_dir, "broken.docx", broken_zip, sizeof broken_zip - 1);
    upload(p, "broken.docx", 422, &r);
    resp_free(&r);
    /* identical content is stored once */
    p = fixture_write(g_dir, "txt", g_lines, 3);
    char *id1 = upload(p, "one.txt", 200, NULL);
    char *id2 = upload(p, "two.txt", 200, &r);
    assert_string_equal(id1, id2);
    assert_true(json_is_true(jpath(r.json, "existed")));
    resp_free(&r);
    /* no file field */
    http(g_app.port, "POST", API "/documents/upload", "{}", &r);
    assert_true(r.status == 400 || r.status == 415);
    resp_free(&r);
    delete_doc(id1);
    free(id1);
    free(id2);
    /* the server still answers and nothing was left behind in the list */
    http(g_app.port, "GET", API "/documents/list", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(r.json), 0);
    resp_free(&r);
}

typedef struct {
    char text[8192];
    bool done, error;
    int chunks;
    json_t *final;
    int hang_up_after;
} chat_sse_t;

static bool on_chat_event(const char *data, void *ud)
{
    chat_sse_t *c = ud;
    json_t *j = json_loads(data, 0, NULL);
    if (!j)
        fail_msg("not JSON: %s", data);
    if (json_object_get(j, "error"))
        c->error = true;
    if (json_is_true(json_object_get(j, "done"))) {
        c->done = true;
        c->final = j;
        return true;
    }
    json_t *chunk = json_object_get(j, "chunk");
    if (json_is_string(chunk)) {
        strncat(c->text, json_string_value(chunk), sizeof c->text - strlen(c->text) - 1);
        c->chunks++;
    }
    json_decref(j);
    return c->hang_up_after == 0 || c->chunks < c->hang_up_after;
}

static long ask(const char *session, const char *message, const char *doc_id, chat_sse_t *c)
{
    int hang_up_after = c->hang_up_after;
    memset(c, 0, sizeof *c);
    c->hang_up_after = hang_up_after;
    char path[256];
    snprintf(path, sizeof path, API "/session/%s/messages/stream", session);
    char *body = json_take_dump(doc_id ? json_pack("{s:s, s:s}", "message", message, "document_id", doc_id)
                                       : json_pack("{s:s}", "message", message));
    long st = http_sse(g_app.port, path, body, on_chat_event, c);
    free(body);
    return st;
}

typedef struct {
    bool start;
    int progress;
    long long done_tokens;
} cache_events_t;

static bool on_cache_event(const char *data, void *ud)
{
    cache_events_t *e = ud;
    json_t *j = json_loads(data, 0, NULL);
    assert_non_null(j);
    const char *ev = json_string_value(json_object_get(j, "event"));
    assert_non_null(ev);
    if (!strcmp(ev, "start"))
        e->start = true;
    else if (!strcmp(ev, "progress"))
        e->progress++;
    else if (!strcmp(ev, "done"))
        e->done_tokens = json_integer_value(json_object_get(j, "n_tokens"));
    else
        fail_msg("cache event: %s", data);
    json_decref(j);
    return true;
}

/* The document `id` in GET /documents/list (kept in *r until resp_free). */
static json_t *listed(const char *id, resp_t *r)
{
    http(g_app.port, "GET", API "/documents/list", NULL, r);
    assert_int_equal(r->status, 200);
    size_t i;
    json_t *d;
    json_array_foreach(r->json, i, d) {
        if (strcmp(json_string_value(json_object_get(d, "doc_id")), id) == 0)
            return d;
    }
    fail_msg("document %s not listed", id);
    return NULL;
}

/* The KV cache at work: upload, cache, ask; the answer's timings count the
 * document's tokens as cached. After a restart without reset: from disk.
 * The document list reports the engine's cache as it is now. */
static void test_cache_end_to_end(void **state)
{
    (void)state;
    const char *p = fixture_write(g_dir, "md", g_lines, N_LINES);
    char *id = upload(p, "harbor.md", 200, NULL);
    char path[256];
    snprintf(path, sizeof path, API "/documents/cache/%s", id);
    resp_t r;
    http(g_app.port, "POST", path, NULL, &r);
    if (r.status != 200)
        fail_msg("cache: %ld %s", r.status, r.body);
    long long cached_tokens = jint(r.json, "n_tokens");
    assert_true(cached_tokens > 50);
    assert_string_equal(jstr(r.json, "status"), "cached");
    resp_free(&r);
    snprintf(path, sizeof path, API "/documents/%s/cache-status", id);
    http(g_app.port, "GET", path, NULL, &r);
    assert_string_equal(jstr(r.json, "cache_status"), "cached");
    assert_int_equal(jint(r.json, "tokens"), cached_tokens);
    assert_true(json_is_true(jpath(r.json, "live")));
    resp_free(&r);
    json_t *d = listed(id, &r);
    assert_string_equal(jstr(d, "cache.tier"), "ram");
    assert_true(json_is_true(jpath(d, "cache.live")));
    char entry[96];
    snprintf(entry, sizeof entry, "%s", jstr(d, "cache.entry_id"));
    resp_free(&r);

    chat_sse_t c = { 0 };
    assert_int_equal(ask("cache-session", "When does the office open?", id, &c), 200);
    assert_true(c.done && !c.error);
    assert_true(c.chunks > 0);
    assert_string_equal(jstr(c.final, "full_response"), c.text);
    /* the whole document prefix came from the cache */
    assert_true(jint(c.final, "timings.cache_n") >= cached_tokens);
    assert_true(jint(c.final, "usage.cached_tokens") >= cached_tokens);
    assert_true(jint(c.final, "timings.prompt_n") < 40);
    json_decref(c.final);

    /* restart the engine keeping its cache: a new question restores it from disk */
    http(g_app.port, "POST", API "/model/up/without_reset", "{}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "success");
    assert_true(jint(r.json, "pid") > 0);
    assert_non_null(strstr(jstr(r.json, "command"), "--resume"));
    resp_free(&r);
    /* the restarted engine holds the entry on disk: the list says so */
    d = listed(id, &r);
    assert_string_equal(jstr(d, "cache_status"), "cached");
    assert_string_equal(jstr(d, "cache.tier"), "disk");
    assert_true(json_is_true(jpath(d, "cache.live")));
    resp_free(&r);
    assert_int_equal(ask("cache-session-2", "Where can visitors rent bicycles?", id, &c), 200);
    assert_true(c.done && !c.error);
    assert_string_equal(jstr(c.final, "timings.cache_tier"), "disk");
    assert_true(jint(c.final, "timings.cache_n") >= cached_tokens);
    json_decref(c.final);

    /* the second turn of a session reuses the first turn too */
    assert_int_equal(ask("cache-session-2", "And the library?", NULL, &c), 200);
    assert_true(c.done && !c.error);
    assert_true(jint(c.final, "timings.cache_n") > cached_tokens);
    json_decref(c.final);
    /* the session's messages name its document */
    http(g_app.port, "GET", API "/session/cache-session-2/messages", NULL, &r);
    assert_true(json_is_true(jpath(r.json, "has_document")));
    assert_string_equal(jstr(r.json, "document_id"), id);
    assert_string_equal(jstr(r.json, "document_filename"), "harbor.md");
    assert_int_equal(json_array_size(jpath(r.json, "messages")), 4);
    resp_free(&r);

    /* the engine drops the entry (here: deleted at the engine itself): the
     * document is reported uncached, and caching it again works */
    http(g_app.port, "GET", API "/model/status", NULL, &r);
    int engine_port = (int)jint(r.json, "port");
    resp_free(&r);
    char epath[160];
    snprintf(epath, sizeof epath, "/v1/cache/%s", entry);
    http(engine_port, "DELETE", epath, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    snprintf(path, sizeof path, API "/documents/%s/cache-status", id);
    http(g_app.port, "GET", path, NULL, &r);
    assert_string_equal(jstr(r.json, "cache_status"), "none");
    assert_true(json_is_true(jpath(r.json, "evicted")));
    resp_free(&r);
    d = listed(id, &r);
    assert_string_equal(jstr(d, "cache_status"), "none");
    assert_true(json_is_true(jpath(d, "cache.evicted")));
    resp_free(&r);
    snprintf(path, sizeof path, API "/documents/cache/%s", id);
    http(g_app.port, "POST", path, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "cached");
    resp_free(&r);
    d = listed(id, &r);
    assert_string_equal(jstr(d, "cache_status"), "cached");
    assert_true(json_is_true(jpath(d, "cache.live")));
    resp_free(&r);

    /* start with reset: every document's cache state is empty */
    http(g_app.port, "POST", API "/model/up/reset", "{}", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(jstr(r.json, "command"), "--reset"));
    resp_free(&r);
    snprintf(path, sizeof path, API "/documents/%s/cache-status", id);
    http(g_app.port, "GET", path, NULL, &r);
    assert_string_equal(jstr(r.json, "cache_status"), "none");
    resp_free(&r);

    /* streamed caching: a start event, progress events, then done */
    snprintf(path, sizeof path, API "/documents/cache/%s", id);
    cache_events_t ev = { 0 };
    assert_int_equal(http_sse(g_app.port, path, "{}", on_cache_event, &ev), 200);
    assert_true(ev.start);
    assert_true(ev.progress >= 1);
    assert_true(ev.done_tokens >= cached_tokens);
    delete_doc(id);
    free(id);
}

static void test_upload_and_cache(void **state)
{
    (void)state;
    const char *lines[] = { "Upload and cache in one request.", "The ferry leaves at noon." };
    const char *p = fixture_write(g_dir, "txt", lines, 2);
    resp_t r;
    http_upload(g_app.port, API "/documents/upload_and_cache", p, "both.txt", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "filename"), "both.txt");
    assert_string_equal(jstr(r.json, "cache.status"), "cached");
    assert_true(jint(r.json, "cache.n_tokens") > 10);
    char *id = strdup(jstr(r.json, "doc_id"));
    resp_free(&r);
    char path[256];
    snprintf(path, sizeof path, API "/documents/%s/cache-status", id);
    http(g_app.port, "GET", path, NULL, &r);
    assert_string_equal(jstr(r.json, "cache_status"), "cached");
    resp_free(&r);
    delete_doc(id);
    free(id);
}

static void test_sessions(void **state)
{
    (void)state;
    resp_t r;
    chat_sse_t c = { 0 };
    /* created on first message; the user turn is stored, then the answer */
    assert_int_equal(ask("s-one", "Hello there", NULL, &c), 200);
    assert_true(c.done && !c.error);
    json_decref(c.final);
    http(g_app.port, "GET", API "/session/s-one", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "session_id"), "s-one");
    assert_int_equal(jint(r.json, "message_count"), 2);
    assert_false(json_is_true(jpath(r.json, "has_document")));
    assert_string_equal(jstr(r.json, "title"), "Hello there");   /* named after its first message */
    assert_non_null(jpath(r.json, "created_at"));
    assert_non_null(jpath(r.json, "last_active"));
    resp_free(&r);
    http(g_app.port, "GET", API "/session/s-one/messages", NULL, &r);
    assert_true(json_is_null(jpath(r.json, "document_id")));
    assert_string_equal(jstr(r.json, "messages.0.role"), "user");
    assert_string_equal(jstr(r.json, "messages.0.content"), "Hello there");
    assert_string_equal(jstr(r.json, "messages.1.role"), "assistant");
    assert_non_null(jpath(r.json, "messages.1.timestamp"));
    resp_free(&r);
    /* non-streaming turn */
    http(g_app.port, "POST", API "/session/s-one/messages", "{\"message\":\"Again\"}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "session_id"), "s-one");
    assert_true(json_is_string(jpath(r.json, "message")));
    assert_non_null(jpath(r.json, "timestamp"));
    resp_free(&r);
    /* a long first message: its first line, cut between characters */
    assert_int_equal(ask("s-long", "  Où est la bibliothèque municipale, et à quelle heure ouvre-t-elle le samedi ?\n"
                                   "Second line.", NULL, &c), 200);
    json_decref(c.final);
    http(g_app.port, "GET", API "/session/s-long", NULL, &r);
    const char *t = jstr(r.json, "title");
    assert_non_null(t);
    assert_true(strncmp(t, "Où est la bibliothèque", strlen("Où est la bibliothèque")) == 0);
    assert_true(strlen(t) <= 60 + strlen("…"));
    assert_non_null(strstr(t, "…"));
    assert_null(strstr(t, "Second"));
    resp_free(&r);
    /* POST /session creates one; a title given there is kept */
    http(g_app.port, "POST", API "/session", "{\"title\":\"Trip\"}", &r);
    assert_int_equal(r.status, 201);
    char made[64];
    snprintf(made, sizeof made, "%s", jstr(r.json, "session_id"));
    resp_free(&r);
    char mpath[128];
    snprintf(mpath, sizeof mpath, API "/session/%s/messages", made);
    http(g_app.port, "POST", mpath, "{\"message\":\"Plan the trip\"}", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    snprintf(mpath, sizeof mpath, API "/session/%s", made);
    http(g_app.port, "GET", mpath, NULL, &r);
    assert_string_equal(jstr(r.json, "title"), "Trip");
    resp_free(&r);
    http(g_app.port, "GET", API "/sessions", NULL, &r);
    assert_true(json_array_size(r.json) >= 2);
    resp_free(&r);
    /* errors */
    http(g_app.port, "GET", API "/session/nope", NULL, &r);
    assert_int_equal(r.status, 404);
    assert_non_null(jpath(r.json, "detail"));
    resp_free(&r);
    http(g_app.port, "POST", API "/session/s-one/messages/stream", "{\"message\":", &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(jstr(r.json, "detail"), "Malformed JSON"));
    resp_free(&r);
    http(g_app.port, "POST", API "/session/s-one/messages/stream", "{\"message\":\"\"}", &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    http(g_app.port, "POST", API "/session/s-one/messages/stream", "{\"message\":3}", &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    http(g_app.port, "POST", API "/session/s-one/messages/stream",
         "{\"message\":\"x\",\"document_id\":\"00000000-0000-0000-0000-000000000000\"}", &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http(g_app.port, "POST", API "/session/bad%20id!/messages", "{\"message\":\"x\"}", &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    /* delete */
    char path[128];
    snprintf(path, sizeof path, API "/session/%s", made);
    http(g_app.port, "DELETE", path, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(g_app.port, "DELETE", path, NULL, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
}


/* An idempotency key: the same turn sent again (a client whose stream
 * broke, resending, maybe to another replica) is the same turn: its
 * answer again, or an answer for the first time, never a second user
 * message; with another message it is refused, and so is a bad key. */
static void test_idempotency(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    proc_t app;
    const char *extra[] = { "--set", "llm.max_tokens=64", NULL };
    start_app(&app, dir, extra);
    const char *turn1 = "{\"message\":\"Where do ferries leave?\",\"idempotency_key\":\"turn-1\"}";
    resp_t a, b;
    /* a stream cut short by its client: the answer is stored incomplete */
    const char *path = API "/session/s-idem/messages/stream";
    chat_sse_t c = { .hang_up_after = 2 };
    assert_int_equal(http_sse(app.port, path, turn1, on_chat_event, &c), 200);
    double t0 = now_ms();
    for (;;) {
        http(app.port, "GET", API "/session/s-idem/messages", NULL, &a);
        size_t n = json_array_size(jpath(a.json, "messages"));
        resp_free(&a);
        if (n == 2)
            break;
        assert_true(now_ms() - t0 < 10000);
        usleep(50 * 1000);
    }
    /* sent again: answered anew, without a second user message */
    http(app.port, "POST", API "/session/s-idem/messages", turn1, &a);
    assert_int_equal(a.status, 200);
    http(app.port, "GET", API "/session/s-idem/messages", NULL, &b);
    assert_int_equal(json_array_size(jpath(b.json, "messages")), 3);
    assert_string_equal(jstr(b.json, "messages.0.role"), "user");
    assert_true(json_is_true(jpath(b.json, "messages.1.incomplete")));
    assert_string_equal(jstr(b.json, "messages.2.role"), "assistant");
    assert_false(json_is_true(jpath(b.json, "messages.2.incomplete")));
    assert_string_equal(jstr(b.json, "messages.2.content"), jstr(a.json, "message"));
    resp_free(&b);
    /* and again, streamed: the same answer, nothing stored */
    chat_sse_t d = { 0 };
    assert_int_equal(http_sse(app.port, path, turn1, on_chat_event, &d), 200);
    assert_true(d.done);
    assert_string_equal(d.text, jstr(a.json, "message"));
    json_decref(d.final);
    http(app.port, "GET", API "/session/s-idem/messages", NULL, &b);
    assert_int_equal(json_array_size(jpath(b.json, "messages")), 3);
    resp_free(&b);
    resp_free(&a);
    /* the key with another message; a malformed key */
    http(app.port, "POST", API "/session/s-idem/messages",
         "{\"message\":\"Something else\",\"idempotency_key\":\"turn-1\"}", &a);
    assert_int_equal(a.status, 422);
    assert_string_equal(jstr(a.json, "detail"),
                        "This Idempotency-Key was sent with another message");
    resp_free(&a);
    http(app.port, "POST", API "/session/s-idem/messages",
         "{\"message\":\"Hi\",\"idempotency_key\":\"not a key\"}", &a);
    assert_int_equal(a.status, 400);
    resp_free(&a);
    assert_int_equal(proc_stop(&app), 0);
    tmpdir_remove(dir);
}

/* A client that leaves mid-answer: generation stops, the partial answer is
 * stored marked incomplete. */
static void test_disconnect(void **state)
{
    (void)state;
    /* an app whose answers are long enough to leave in the middle of */
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    proc_t app;
    const char *extra[] = { "--set", "llm.max_tokens=100000", NULL };
    start_app(&app, dir, extra);
    int saved = g_app.port;
    g_app.port = app.port;
    chat_sse_t c = { .hang_up_after = 3 };
    ask("s-leave", "Tell me everything", NULL, &c);
    g_app.port = saved;
    assert_false(c.done);
    double t0 = now_ms();
    resp_t r;
    for (;;) {
        http(app.port, "GET", API "/session/s-leave/messages", NULL, &r);
        if (json_array_size(jpath(r.json, "messages")) == 2)
            break;
        resp_free(&r);
        if (now_ms() - t0 > 10000)
            fail_msg("the partial answer was not stored");
        usleep(50 * 1000);
    }
    json_t *m = jpath(r.json, "messages.1");
    assert_string_equal(jstr(m, "role"), "assistant");
    assert_true(json_is_true(json_object_get(m, "incomplete")));
    resp_free(&r);
    /* the engine stopped generating: its slot is free again */
    char metrics[64];
    snprintf(metrics, sizeof metrics, "/metrics");
    t0 = now_ms();
    bool idle = false;
    while (!idle && now_ms() - t0 < 5000) {
        http(g_engine_port, "GET", metrics, NULL, &r);
        idle = strstr(r.body, "\nkvchat_engine_slots_busy 0") != NULL;
        resp_free(&r);
        if (!idle)
            usleep(50 * 1000);
    }
    assert_true(idle);
    assert_int_equal(proc_stop(&app), 0);
    tmpdir_remove(dir);
}

static void test_model_and_logs(void **state)
{
    (void)state;
    resp_t r;
    http(g_app.port, "GET", API "/model/status", NULL, &r);
    assert_string_equal(jstr(r.json, "status"), "running");
    assert_true(jint(r.json, "pid") > 0);
    assert_true(jint(r.json, "memory_usage") > 0);
    assert_true(json_is_true(jpath(r.json, "random_weights")));
    assert_non_null(jpath(r.json, "cache.entries"));
    resp_free(&r);
    http(g_app.port, "GET", API "/model/list", NULL, &r);
    assert_true(json_array_size(jpath(r.json, "models")) >= 2);
    assert_string_equal(jstr(r.json, "models.0.name"), "tiny.gguf");
    resp_free(&r);

    /* logs of the engine's runs */
    http(g_app.port, "GET", API "/logs/current", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(jstr(r.json, "log_file_path"), "engine-"));
    resp_free(&r);
    http(g_app.port, "GET", API "/logs/recent?lines=50&pattern=ready", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(jint(r.json, "lines_count") >= 1);
    assert_non_null(strstr(jstr(r.json, "logs.0"), "ready"));
    assert_string_equal(jstr(r.json, "pattern"), "ready");
    resp_free(&r);
    http(g_app.port, "GET", API "/logs/recent?pattern=%5B", NULL, &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    http(g_app.port, "GET", API "/logs/recent?lines=5000", NULL, &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    http(g_app.port, "GET", API "/logs/server?lines=3", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(jint(r.json, "lines_count") <= 3);
    resp_free(&r);
    http(g_app.port, "GET", API "/logs/sessions", NULL, &r);
    assert_true(json_array_size(r.json) >= 1);
    assert_non_null(strstr(jstr(r.json, "0.filename"), "engine-"));
    resp_free(&r);

    /* the remote "openai" model (this engine, through the openai provider) */
    http(g_app.port, "POST", API "/model/switch", "{\"serving_name\":\"self\"}", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    chat_sse_t c = { 0 };
    assert_int_equal(ask("s-remote", "Hi", NULL, &c), 200);
    if (!c.done || c.error)
        fail_msg("chat through the remote provider: %s",
                 c.final ? json_dumps(c.final, 0) : "(no final event)");
    json_decref(c.final);
    http(g_app.port, "POST", API "/model/switch", "{\"serving_name\":\"tiny.gguf\"}", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(g_app.port, "POST", API "/model/switch", "{\"serving_name\":\"nothing\"}", &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);

    /* stopped: chat answers an error event, caching 503 */
    const char *p = fixture_write(g_dir, "txt", g_lines, 4);
    char *id = upload(p, "down.txt", 200, NULL);
    http(g_app.port, "POST", API "/model/down", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(g_app.port, "GET", API "/model/status", NULL, &r);
    assert_string_equal(jstr(r.json, "status"), "stopped");
    resp_free(&r);
    assert_int_equal(ask("s-down", "Anyone there?", NULL, &c), 200);
    assert_true(c.done && c.error);
    assert_non_null(strstr(jstr(c.final, "error"), "not running"));
    json_decref(c.final);
    char path[256];
    snprintf(path, sizeof path, API "/documents/cache/%s", id);
    http(g_app.port, "POST", path, NULL, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(jstr(r.json, "detail"), "not running"));
    resp_free(&r);
    http(g_app.port, "POST", API "/model/up/without_reset", "{\"model_name\":\"none.gguf\"}", &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http(g_app.port, "POST", API "/model/up/without_reset", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* its own stop, shared for other replicas, is not followed by this
     * one once it has started again (the follower looks every 2 s) */
    sleep(3);
    http(g_app.port, "GET", API "/model/status", NULL, &r);
    assert_string_equal(jstr(r.json, "status"), "running");
    resp_free(&r);
    assert_false(log_contains(g_app.log_path, "another replica's model command"));
    delete_doc(id);
    free(id);
}

/* A draft of a turn being typed: 202 at once, nothing stored (no session
 * is made, no message kept), the same checks as a turn (unknown document
 * 404, empty message and bad JSON 400); the real turn afterwards is
 * answered as ever. */
static void test_draft(void **state)
{
    (void)state;
    const char *p = fixture_write(g_dir, "txt", g_lines, 6);
    char *id = upload(p, "drafted.txt", 200, NULL);
    char body[512];
    resp_t r;
    snprintf(body, sizeof body, "{\"message\":\"Where do the ferr\",\"document_id\":\"%s\"}", id);
    http(g_app.port, "POST", API "/session/s-draft/draft", body, &r);
    assert_int_equal(r.status, 202);
    assert_true(json_is_boolean(jpath(r.json, "accepted")));
    resp_free(&r);
    /* nothing stored: no session, no message */
    http(g_app.port, "GET", API "/session/s-draft", NULL, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http(g_app.port, "POST", API "/session/s-draft/draft",
         "{\"message\":\"x\",\"document_id\":\"00000000-0000-0000-0000-000000000000\"}", &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http(g_app.port, "POST", API "/session/s-draft/draft", "{\"message\":\"\"}", &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    http(g_app.port, "POST", API "/session/s-draft/draft", "{\"message\":", &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    char longid[300];
    memset(longid, 'a', 200);
    snprintf(longid + 200, sizeof longid - 200, "/draft");
    char url[400];
    snprintf(url, sizeof url, API "/session/%s", longid);
    http(g_app.port, "POST", url, "{\"message\":\"x\"}", &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    /* the real turn: one user message, one answer */
    snprintf(body, sizeof body,
             "{\"message\":\"Where do the ferries leave?\",\"document_id\":\"%s\"}", id);
    http(g_app.port, "POST", API "/session/s-draft/messages", body, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* a draft of the next turn in an existing session stores nothing either */
    http(g_app.port, "POST", API "/session/s-draft/draft", "{\"message\":\"And when do th\"}", &r);
    assert_int_equal(r.status, 202);
    resp_free(&r);
    http(g_app.port, "GET", API "/session/s-draft/messages", NULL, &r);
    assert_int_equal(json_array_size(jpath(r.json, "messages")), 2);
    resp_free(&r);
    http(g_app.port, "DELETE", API "/session/s-draft", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    delete_doc(id);
    free(id);
}

/* One request whose status is all that matters. */
static void expect_status(int port, const char *method, const char *path, const char *body,
                          long want)
{
    resp_t r;
    http(port, method, path, body, &r);
    if (r.status != want)
        fail_msg("%s %s -> HTTP %ld (want %ld): %s", method, path, r.status, want, r.body);
    resp_free(&r);
}

/* Drafts whose session or document goes away: refused where the real turn
 * would be (a deleted document named by the draft is 404), dropped where
 * it would carry on (a deleted session is typed into as a new one and is
 * not brought back; a session whose document is gone drafts on its
 * history), and a deletion while the engine still works on a draft
 * neither fails nor leaves anything stored. */
static void test_draft_gone(void **state)
{
    (void)state;
    const char *p = fixture_write(g_dir, "txt", g_lines, 7);
    char *id = upload(p, "gone.txt", 200, NULL);
    char body[512];
    resp_t r;
    snprintf(body, sizeof body,
             "{\"message\":\"Where do the ferries leave?\",\"document_id\":\"%s\"}", id);
    expect_status(g_app.port, "POST", API "/session/s-gone/messages", body, 200);
    /* a draft in flight on the engine, then its document deleted */
    snprintf(body, sizeof body,
             "{\"message\":\"And which of them runs at ni\",\"document_id\":\"%s\"}", id);
    expect_status(g_app.port, "POST", API "/session/s-gone/draft", body, 202);
    delete_doc(id);
    /* naming the deleted document: refused as the real turn is */
    http(g_app.port, "POST", API "/session/s-gone/draft", body, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(jstr(r.json, "detail"), "Document not found");
    resp_free(&r);
    expect_status(g_app.port, "POST", API "/session/s-gone/messages", body, 404);
    /* the session's own document gone: the draft goes on the history */
    expect_status(g_app.port, "POST", API "/session/s-gone/draft",
                  "{\"message\":\"And the last one le\"}", 202);
    http(g_app.port, "GET", API "/session/s-gone/messages", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(jpath(r.json, "messages")), 2);
    resp_free(&r);
    /* the session deleted while a draft of it runs: it stays deleted */
    expect_status(g_app.port, "POST", API "/session/s-gone/draft",
                  "{\"message\":\"Which boat is the fa\"}", 202);
    expect_status(g_app.port, "DELETE", API "/session/s-gone", NULL, 200);
    expect_status(g_app.port, "POST", API "/session/s-gone/draft",
                  "{\"message\":\"Which boat is the fast\"}", 202);
    expect_status(g_app.port, "GET", API "/session/s-gone", NULL, 404);
    expect_status(g_app.port, "GET", API "/session/s-gone/messages", NULL, 404);
    /* and the engine answers the next real turn as ever */
    expect_status(g_app.port, "POST", API "/session/s-gone-next/messages",
                  "{\"message\":\"Hello\"}", 200);
    expect_status(g_app.port, "DELETE", API "/session/s-gone-next", NULL, 200);
    free(id);
}

/* llm.drafts = false: drafts are declined before any work, with the
 * setting named, and /model/status says so (the page then hides its box). */
static void test_drafts_off(void **state)
{
    (void)state;
    resp_t r;
    http(g_app.port, "GET", API "/model/status", NULL, &r);
    assert_true(json_is_true(jpath(r.json, "drafts")));
    resp_free(&r);
    char data[300], log[300];
    snprintf(data, sizeof data, "%s/nodrafts-data", g_dir);
    snprintf(log, sizeof log, "%s/nodrafts.log", g_dir);
    const char *argv[] = { "--data", data, "--no-autostart", "--set", "llm.drafts=false", NULL };
    proc_t p;
    proc_start(&p, KVCHAT_BIN_DIR "/kvchat", argv, log, 30);
    http(p.port, "GET", API "/model/status", NULL, &r);
    assert_true(json_is_false(jpath(r.json, "drafts")));
    resp_free(&r);
    http(p.port, "POST", API "/session/s-off/draft", "{\"message\":\"Where do the ferr\"}", &r);
    assert_int_equal(r.status, 202);
    assert_true(json_is_false(jpath(r.json, "accepted")));
    assert_non_null(strstr(jstr(r.json, "reason"), "llm.drafts"));
    resp_free(&r);
    /* a body that is not JSON is still refused */
    expect_status(p.port, "POST", API "/session/s-off/draft", "{\"message\":", 400);
    assert_int_equal(proc_stop(&p), 0);
}

/* A document longer than the model's context: cached in parts; asking about
 * all of it at once (use_rag false) is a 422 with both numbers. */
static void test_too_long(void **state)
{
    (void)state;
    enum { N = 400 };
    const char *lines[N];
    for (int i = 0; i < N; i++)
        lines[i] = g_lines[i % N_LINES];
    const char *p = fixture_write(g_dir, "txt", lines, N);
    char *id = upload(p, "long.txt", 200, NULL);
    char path[256];
    snprintf(path, sizeof path, API "/documents/cache/%s", id);
    /* longer than a conversation: cached as several parts */
    resp_t r;
    http(g_app.port, "POST", path, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(jint(r.json, "total_groups") > 1);
    assert_int_equal(jint(r.json, "cached_groups"), jint(r.json, "total_groups"));
    resp_free(&r);
    /* the whole of it cannot be asked about at once: 422 with both numbers */
    char *body = json_take_dump(json_pack("{s:s, s:s, s:b}", "message", "Summarize it.",
                                          "document_id", id, "use_rag", 0));
    http(g_app.port, "POST", API "/session/too-long/messages", body, &r);
    free(body);
    assert_int_equal(r.status, 422);
    const char *d = jstr(r.json, "detail");
    assert_non_null(strstr(d, "1024"));
    assert_non_null(strstr(d, "tokens"));
    resp_free(&r);
    delete_doc(id);
    free(id);
}

static void test_errors_and_system(void **state)
{
    (void)state;
    resp_t r;
    http(g_app.port, "GET", API "/documents/not-a-document", NULL, &r);
    assert_int_equal(r.status, 404);
    assert_non_null(jpath(r.json, "detail"));
    resp_free(&r);
    http(g_app.port, "DELETE", API "/documents/00000000-0000-0000-0000-000000000000", NULL, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http(g_app.port, "POST", API "/documents/cache/00000000-0000-0000-0000-000000000000", NULL, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http(g_app.port, "GET", API "/nothing/here", NULL, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http(g_app.port, "GET", "/health", NULL, &r);
    assert_string_equal(jstr(r.json, "status"), "ok");
    resp_free(&r);
    http(g_app.port, "GET", "/metrics", NULL, &r);
    assert_non_null(strstr(r.body, "kvchat_chats_total"));
    assert_non_null(strstr(r.body, "kvchat_ttft_seconds_count"));
    resp_free(&r);
    /* the OpenAPI document describes exactly the route table */
    http(g_app.port, "GET", API "/openapi.json", NULL, &r);
    json_t *paths = jpath(r.json, "paths");
    assert_non_null(paths);
    size_t n, described = 0;
    const route_doc_t *t = routes_table(&n);
    for (size_t i = 0; i < n; i++) {
        char path[256], method[16];
        size_t o = 0;
        for (const char *p = t[i].route.pattern; *p && o < sizeof path - 1; p++)
            if (*p != '*')
                path[o++] = *p;
        path[o] = '\0';
        size_t k = 0;
        for (; t[i].route.method[k]; k++)
            method[k] = (char)(t[i].route.method[k] | 0x20);
        method[k] = '\0';
        json_t *op = json_object_get(json_object_get(paths, path), method);
        if (!op)
            fail_msg("openapi.json lacks %s %s", t[i].route.method, path);
        described++;
    }
    size_t ops = 0;
    const char *key;
    json_t *item;
    json_object_foreach(paths, key, item)
        ops += json_object_size(item);
    assert_int_equal(ops, described);
    resp_free(&r);
}

/* Sessions idle longer than the timeout are swept. */
static void test_session_expiry(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    proc_t app;
    const char *extra[] = { "--set", "session.idle_timeout=2", "--set", "session.sweep_interval=1", NULL };
    start_app(&app, dir, extra);
    resp_t r;
    http(app.port, "POST", API "/session", "{\"session_id\":\"short-lived\"}", &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);
    http(app.port, "GET", API "/session/short-lived", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    double t0 = now_ms();
    long st = 200;
    while (st == 200 && now_ms() - t0 < 10000) {
        usleep(250 * 1000);
        http(app.port, "GET", API "/session/short-lived", NULL, &r);
        st = r.status;
        resp_free(&r);
    }
    assert_int_equal(st, 404);
    assert_int_equal(proc_stop(&app), 0);
    tmpdir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_upload_rules),
        cmocka_unit_test(test_cache_end_to_end),
        cmocka_unit_test(test_upload_and_cache),
        cmocka_unit_test(test_sessions),
        cmocka_unit_test(test_disconnect),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_draft),
        cmocka_unit_test(test_draft_gone),
        cmocka_unit_test(test_drafts_off),
        cmocka_unit_test(test_model_and_logs),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_errors_and_system),
        cmocka_unit_test(test_session_expiry),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
