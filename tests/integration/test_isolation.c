/* test_isolation.c — what each user of accounts mode may see of documents
 * and chats, end to end: the real app in accounts mode on 127.0.0.1, the
 * real engine with the tiny model, the real extractor. Users are made
 * with `kvchat user add` before the server starts (alice, bob and carol,
 * users; root, an admin) and sign in with POST /auth/login (the session
 * cookie goes with every request).
 *
 * Covered:
 * - every route that names a document (get, preview, chunks, a chunk,
 *   groups, search, cache, cache-status, delete, chat with document_id or
 *   document_ids, a new session naming it) answers another user's private
 *   document with exactly the body it gives an unknown id; a collection
 *   of another user's documents is an unknown collection (get, chat); the
 *   lists show one's own documents (an admin's: all), each with its owner
 *   and whether it is shared;
 * - sessions: another user's session id is an unknown one (get, messages,
 *   delete, list); the same client session id used by two users is two
 *   sessions; an admin sees no one else's sessions;
 * - sharing: by an admin only (a user is refused), the document is then
 *   listed, readable and chat-able by every user, but not theirs to
 *   delete (403); unsharing takes it out of their sessions; both are in
 *   the audit log, and so is a deletion and a model command;
 * - one content, two owners: bob's upload of alice's bytes is his own
 *   document on the same file (no second file kept); alice deleting hers
 *   leaves his working and the file in place; the file goes with the last
 *   document;
 * - the storage quota (limits.storage_mb): a file that would take a user
 *   past it is refused with 413 and the numbers, before extraction; the
 *   same content again is still "already uploaded";
 * - the engine's cache salt: bob asking about his own copy of the text
 *   alice cached gets no cached tokens from it, alice does; a shared
 *   document's cache serves both (after sharing, its old entry is gone
 *   and the document must be cached anew);
 * - uploads at once (limits.uploads_at_once): a user's third upload
 *   while two are under way is refused with 429, another user's is not,
 *   and the places come back when the uploads end;
 * - local mode: sharing is refused with a clear 400.
 * Chats run one after another here, more of them per user than
 * limits.chats_at_once (4): each gives its place back when it ends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/json.h"
#include "fixtures.h"
#include "support.h"

#define MODEL KVCHAT_TEST_MODELS_DIR "/tiny.gguf"
#define KVCHAT KVCHAT_BIN_DIR "/kvchat"
#define API "/api/v1"
#define UNKNOWN_ID "00000000-0000-4000-8000-000000000000"

static char g_dir[256], g_data[300];
static proc_t g_app;

typedef struct {
    const char *name, *password, *role;
    char cookie[512];
    char id[64];
} user_t;

static user_t g_alice = { "alice", "alice-pass-1", "user", "", "" };
static user_t g_bob = { "bob", "bob-pass-12", "user", "", "" };
static user_t g_carol = { "carol", "carol-pass-1", "user", "", "" };
static user_t g_root = { "root", "root-pass-12", "admin", "", "" };

/* ---- users ---- */

/* `kvchat user add NAME --role ROLE --data DIR` with the password on
 * standard input; fails the test unless it succeeds. */
static void cli_add(const user_t *u)
{
    int in[2];
    assert_int_equal(pipe(in), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        close(in[1]);
        execl(KVCHAT, KVCHAT, "user", "add", u->name, "--role", u->role, "--data", g_data,
              (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    char line[128];
    int n = snprintf(line, sizeof line, "%s\n", u->password);
    assert_int_equal(write(in[1], line, (size_t)n), n);
    close(in[1]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("kvchat user add %s failed (status %d)", u->name, st);
}

/* Sign u in: its cookie and id. */
static void login(user_t *u)
{
    resp_t r;
    http_set_cookie(NULL);
    char *body = json_take_dump(
        json_pack("{s:s, s:s}", "username", u->name, "password", u->password));
    http(g_app.port, "POST", API "/auth/login", body, &r);
    free(body);
    if (r.status != 200 || strncmp(r.set_cookie, "kvchat_session=", 15) != 0)
        fail_msg("login %s: %ld %s (cookie '%s')", u->name, r.status, r.body, r.set_cookie);
    snprintf(u->cookie, sizeof u->cookie, "%s", r.set_cookie);
    resp_free(&r);
    http_set_cookie(u->cookie);
    http(g_app.port, "GET", API "/auth/me", NULL, &r);
    assert_int_equal(r.status, 200);
    snprintf(u->id, sizeof u->id, "%s", jstr(r.json, "user.id"));
    resp_free(&r);
}

/* ---- requests as a user ---- */

/* method path as u; the status must be `want`. */
static void call(const user_t *u, const char *method, const char *path, const char *body,
                 long want, resp_t *r)
{
    http_set_cookie(u->cookie);
    http(g_app.port, method, path, body, r);
    if (r->status != want)
        fail_msg("%s %s %.200s: expected %ld, got %ld: %.300s", u->name, method, path, want,
                 r->status, r->body);
}

static void call_free(const user_t *u, const char *method, const char *path, const char *body,
                      long want)
{
    resp_t r;
    call(u, method, path, body, want, &r);
    resp_free(&r);
}

/* The same request about a foreign id and about an unknown one (the path
 * is pre + id + post): both 404 with the very same body. */
static void same_404(const user_t *u, const char *method, const char *pre, const char *post,
                     const char *foreign, const char *unknown, const char *body)
{
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s%s%s", pre, foreign, post);
    snprintf(p2, sizeof p2, "%s%s%s", pre, unknown, post);
    resp_t a, b;
    call(u, method, p1, body, 404, &a);
    call(u, method, p2, body, 404, &b);
    if (strcmp(a.body, b.body) != 0)
        fail_msg("%s %s: another user's id answers %s, an unknown id %s", method, p1, a.body,
                 b.body);
    resp_free(&a);
    resp_free(&b);
}

/* Upload text as `name` by u; the document's id (caller frees). *existed
 * (may be NULL) says whether it was there already. */
static char *upload_as(const user_t *u, const char *name, const char *text, bool *existed)
{
    const char *p = fixture_raw(g_dir, name, text, strlen(text));
    resp_t r;
    http_set_cookie(u->cookie);
    http_upload(g_app.port, API "/documents/upload", p, name, &r);
    if (r.status != 200)
        fail_msg("%s uploads %s: %ld %s", u->name, name, r.status, r.body);
    char *id = strdup(jstr(r.json, "doc_id"));
    if (existed)
        *existed = json_is_true(jpath(r.json, "existed"));
    resp_free(&r);
    return id;
}

/* Ask in session sid (document doc_id, may be NULL: the session's) as u;
 * the answer into *r. */
static void ask(const user_t *u, const char *sid, const char *doc_id, const char *q, long want,
                resp_t *r)
{
    char path[256];
    snprintf(path, sizeof path, API "/session/%s/messages", sid);
    json_t *b = json_pack("{s:s}", "message", q);
    if (doc_id)
        json_object_set_new(b, "document_id", json_string(doc_id));
    char *body = json_take_dump(b);
    call(u, "POST", path, body, want, r);
    free(body);
}

static void ask_free(const user_t *u, const char *sid, const char *doc_id, const char *q,
                     long want)
{
    resp_t r;
    ask(u, sid, doc_id, q, want, &r);
    resp_free(&r);
}

/* The entry of document id in u's list, or NULL; *r keeps the list. */
static json_t *listed(const user_t *u, const char *id, resp_t *r)
{
    call(u, "GET", API "/documents/list", NULL, 200, r);
    size_t i;
    json_t *d;
    json_array_foreach(r->json, i, d) {
        if (strcmp(json_string_value(json_object_get(d, "doc_id")), id) == 0)
            return d;
    }
    return NULL;
}

static bool sees_in_list(const user_t *u, const char *id)
{
    resp_t r;
    bool seen = listed(u, id, &r) != NULL;
    resp_free(&r);
    return seen;
}

/* Regular files in the uploads directory (temporary ones left out). */
static int upload_files(void)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/uploads", g_data);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Keeps the last event of a stream (json_t ** in ud). */
static bool keep_last(const char *data, void *ud)
{
    json_t **last = ud;
    json_t *j = json_loads(data, 0, NULL);
    if (j) {
        json_decref(*last);
        *last = j;
    }
    return true;
}

/* Ask with a streamed answer as u; its last event (caller decrefs) and the
 * HTTP status. */
static json_t *ask_stream(const user_t *u, const char *sid, const char *doc_id, const char *q,
                          long *status)
{
    char path[256];
    snprintf(path, sizeof path, API "/session/%s/messages/stream", sid);
    json_t *b = json_pack("{s:s}", "message", q);
    if (doc_id)
        json_object_set_new(b, "document_id", json_string(doc_id));
    char *body = json_take_dump(b);
    json_t *last = NULL;
    http_set_cookie(u->cookie);
    *status = http_sse(g_app.port, path, body, keep_last, &last);
    free(body);
    return last;
}

/* A text document of n lines about `topic`, different for each seed. */
static char *doc_text(const char *topic, int seed, int n)
{
    static const char *const lines[] = {
        "The office opens at seven in the morning and closes at six.",
        "Ferries to the island leave every forty minutes from the pier.",
        "The lighthouse was painted red and white last spring.",
        "Fishing boats return before the evening market begins.",
        "A bakery near the square sells rye bread and almond cake.",
        "Storm warnings are posted on the blue board by the gate.",
        "The museum keeps maps of the old coastline in its cellar.",
        "Visitors may rent bicycles at the station until noon.",
    };
    buf_t b;
    buf_init(&b, 1 << 20);
    buf_printf(&b, "Notes on the %s (%d)\n\n", topic, seed);
    for (int i = 0; i < n; i++)
        buf_printf(&b, "%s %s\n", lines[(i * 3 + seed) % 8], lines[(i + seed * 5) % 8]);
    buf_printf(&b, "The code word for the %s is %d.\n", topic, 1000 + seed * 37);
    return buf_steal(&b, NULL);
}

/* ---- set-up ---- */

static int group_setup(void **state)
{
    (void)state;
    tmpdir_make(g_dir, sizeof g_dir);
    snprintf(g_data, sizeof g_data, "%s/data", g_dir);
    cli_add(&g_alice);
    cli_add(&g_bob);
    cli_add(&g_carol);
    cli_add(&g_root);
    char models[300], eport[64], log[300];
    snprintf(models, sizeof models, "engine.models_dir=%s", g_dir);
    snprintf(log, sizeof log, "%s/kvchat.log", g_dir);
    snprintf(eport, sizeof eport, "engine.port=%d", free_port());
    const char *argv[] = { "--data", g_data, "--model", MODEL, "--set", eport, "--set",
                           "engine.threads=2", "--set", "engine.ctx_size=4096", "--set",
                           "engine.parallel=2", "--set", models, "--set", "llm.max_tokens=4",
                           "--set", "llm.temperature=0", "--set", "auth.mode=accounts", "--set",
                           "server.host=127.0.0.1", "--set", "limits.storage_mb=1", "--set",
                           "limits.chats_per_minute=0", "--set", "limits.uploads_per_minute=0",
                           NULL };
    http_set_bearer(NULL);
    http_set_cookie(NULL);
    proc_start(&g_app, KVCHAT, argv, log, 60);
    login(&g_alice);
    login(&g_bob);
    login(&g_carol);
    login(&g_root);
    http_set_cookie(g_root.cookie);
    app_wait_model(g_app.port, "running");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    http_set_cookie(NULL);
    int st = proc_stop(&g_app);
    tmpdir_remove(g_dir);
    return st == 0 ? 0 : -1;
}

/* ---- every route ---- */

static void test_documents_isolated(void **state)
{
    (void)state;
    char *text = doc_text("alpine hut", 1, 12);
    char *a = upload_as(&g_alice, "alpine.txt", text, NULL);
    free(text);

    /* the owner's list says whose it is */
    resp_t r;
    json_t *d = listed(&g_alice, a, &r);
    assert_non_null(d);
    assert_string_equal(jstr(d, "owner"), g_alice.id);
    assert_true(json_is_false(jpath(d, "shared")));
    resp_free(&r);
    assert_false(sees_in_list(&g_bob, a));
    assert_true(sees_in_list(&g_root, a));   /* admins see every document */

    /* every route about a document: another user's is an unknown one */
    static const char *const gets[] = {
        "", "?include_preview=true", "/chunks", "/chunks/0", "/groups", "/search?q=ferries",
        "/cache-status",
    };
    for (size_t i = 0; i < sizeof gets / sizeof *gets; i++)
        same_404(&g_bob, "GET", API "/documents/", gets[i], a, UNKNOWN_ID, NULL);
    same_404(&g_bob, "POST", API "/documents/cache/", "", a, UNKNOWN_ID, NULL);
    same_404(&g_bob, "DELETE", API "/documents/", "", a, UNKNOWN_ID, NULL);
    /* chatting with it, or making a session of it */
    char b1[256], b2[256];
    snprintf(b1, sizeof b1, "{\"message\":\"Tell me\",\"document_id\":\"%s\"}", a);
    snprintf(b2, sizeof b2, "{\"message\":\"Tell me\",\"document_id\":\"%s\"}", UNKNOWN_ID);
    resp_t x, y;
    call(&g_bob, "POST", API "/session/bob-s1/messages", b1, 404, &x);
    call(&g_bob, "POST", API "/session/bob-s1/messages", b2, 404, &y);
    assert_string_equal(x.body, y.body);
    resp_free(&x);
    resp_free(&y);
    snprintf(b1, sizeof b1, "{\"message\":\"Tell me\",\"document_ids\":[\"%s\"]}", a);
    call(&g_bob, "POST", API "/session/bob-s1/messages", b1, 404, &x);
    char want[300];
    snprintf(want, sizeof want, "Document not found: %s", a);
    assert_string_equal(jstr(x.json, "detail"), want);
    resp_free(&x);
    snprintf(b1, sizeof b1, "{\"document_id\":\"%s\"}", a);
    snprintf(b2, sizeof b2, "{\"document_id\":\"%s\"}", UNKNOWN_ID);
    call(&g_bob, "POST", API "/session", b1, 404, &x);
    call(&g_bob, "POST", API "/session", b2, 404, &y);
    assert_string_equal(x.body, y.body);
    resp_free(&x);
    resp_free(&y);
    /* none of it reached a session of bob's */
    call(&g_bob, "GET", API "/sessions", NULL, 200, &x);
    assert_int_equal(json_array_size(x.json), 0);
    resp_free(&x);

    /* the owner and an admin still reach it, and its chunks */
    char path[256];
    snprintf(path, sizeof path, API "/documents/%s/chunks/0", a);
    call_free(&g_alice, "GET", path, NULL, 200);
    call_free(&g_root, "GET", path, NULL, 200);
    snprintf(path, sizeof path, API "/documents/%s/search?q=ferries", a);
    call_free(&g_alice, "GET", path, NULL, 200);

    /* a collection of alice's documents is an unknown one to bob */
    char *t1 = doc_text("north quay", 2, 6), *t2 = doc_text("south quay", 3, 6);
    const char *p1 = strdup(fixture_raw(g_dir, "north.txt", t1, strlen(t1)));
    const char *p2 = fixture_raw(g_dir, "south.txt", t2, strlen(t2));
    const char *paths[] = { p1, p2 }, *names[] = { "north.txt", "south.txt" };
    http_set_cookie(g_alice.cookie);
    http_upload_many(g_app.port, API "/documents/upload_collection", "files", paths, names, 2,
                     "name", "quays", &r);
    if (r.status != 200)
        fail_msg("collection: %ld %s", r.status, r.body);
    char *col = strdup(jstr(r.json, "collection_id"));
    resp_free(&r);
    free((char *)p1);
    free(t1);
    free(t2);
    same_404(&g_bob, "GET", API "/documents/collections/", "", col, UNKNOWN_ID, NULL);
    snprintf(b1, sizeof b1, "{\"message\":\"Hi\",\"collection_id\":\"%s\"}", col);
    snprintf(b2, sizeof b2, "{\"message\":\"Hi\",\"collection_id\":\"%s\"}", UNKNOWN_ID);
    call(&g_bob, "POST", API "/session/bob-s2/messages", b1, 404, &x);
    call(&g_bob, "POST", API "/session/bob-s2/messages", b2, 404, &y);
    assert_string_equal(x.body, y.body);
    resp_free(&x);
    resp_free(&y);
    snprintf(path, sizeof path, API "/documents/collections/%s", col);
    call(&g_alice, "GET", path, NULL, 200, &r);
    assert_int_equal(json_array_size(jpath(r.json, "documents")), 2);
    resp_free(&r);
    call_free(&g_root, "GET", path, NULL, 200);
    ask_free(&g_alice, "alice-quays", NULL, "Which quay?", 200);   /* no document: fine */
    snprintf(b1, sizeof b1, "{\"message\":\"Which quay?\",\"collection_id\":\"%s\"}", col);
    call_free(&g_alice, "POST", API "/session/alice-quays/messages", b1, 200);
    free(col);

    /* the owner deletes it: a deletion is audited */
    snprintf(path, sizeof path, API "/documents/%s", a);
    call_free(&g_alice, "DELETE", path, NULL, 200);
    call_free(&g_alice, "GET", path, NULL, 404);
    call(&g_root, "GET", API "/audit?action=document.delete&limit=5", NULL, 200, &r);
    json_t *e = json_array_get(jpath(r.json, "entries"), 0);
    assert_non_null(e);
    assert_string_equal(jstr(e, "target"), a);
    assert_string_equal(jstr(e, "actor"), "alice");
    resp_free(&r);
    free(a);
}

/* Sessions are each user's own; a client's session id means something
 * only within its user. */
static void test_sessions_isolated(void **state)
{
    (void)state;
    char *text = doc_text("harbor", 4, 10);
    char *a = upload_as(&g_alice, "harbor.txt", text, NULL);
    free(text);
    resp_t r;
    ask(&g_alice, "trip", a, "When do ferries leave?", 200, &r);
    assert_string_equal(jstr(r.json, "session_id"), "trip");
    resp_free(&r);

    same_404(&g_bob, "GET", API "/session/", "", "trip", "no-such-session", NULL);
    same_404(&g_bob, "GET", API "/session/", "/messages", "trip", "no-such-session", NULL);
    same_404(&g_bob, "DELETE", API "/session/", "", "trip", "no-such-session", NULL);
    same_404(&g_root, "GET", API "/session/", "", "trip", "no-such-session", NULL);
    call(&g_bob, "GET", API "/sessions", NULL, 200, &r);
    for (size_t i = 0; i < json_array_size(r.json); i++)
        assert_string_not_equal(jstr(json_array_get(r.json, i), "session_id"), "trip");
    resp_free(&r);

    /* the same id for bob is a session of his own */
    ask_free(&g_bob, "trip", NULL, "Hello, is anyone there?", 200);
    call(&g_bob, "GET", API "/session/trip", NULL, 200, &r);
    assert_int_equal(jint(r.json, "message_count"), 2);
    assert_true(json_is_false(jpath(r.json, "has_document")));
    resp_free(&r);
    call(&g_alice, "GET", API "/session/trip/messages", NULL, 200, &r);
    assert_int_equal(json_array_size(jpath(r.json, "messages")), 2);
    assert_string_equal(jstr(r.json, "document_id"), a);
    assert_string_equal(jstr(r.json, "messages.0.content"), "When do ferries leave?");
    resp_free(&r);
    call(&g_alice, "GET", API "/sessions", NULL, 200, &r);
    size_t trips = 0;
    for (size_t i = 0; i < json_array_size(r.json); i++)
        trips += strcmp(jstr(json_array_get(r.json, i), "session_id"), "trip") == 0;
    assert_int_equal(trips, 1);
    resp_free(&r);

    /* streamed: the same, each in their own session */
    long st;
    json_t *last = ask_stream(&g_alice, "trip", NULL, "And on Sunday?", &st);
    assert_int_equal(st, 200);
    assert_true(json_is_true(jpath(last, "done")));
    assert_string_equal(jstr(last, "session_id"), "trip");
    json_decref(last);
    last = ask_stream(&g_bob, "trip", a, "And on Sunday?", &st);
    assert_int_equal(st, 404);
    json_decref(last);
    /* drafts too: bob's draft naming alice's document is a 404, like his
     * turn; his draft of his own "trip" is his (202), read ahead in his
     * own namespace, and adds nothing to either session */
    char dbody[256];
    snprintf(dbody, sizeof dbody, "{\"message\":\"And on Sund\",\"document_id\":\"%s\"}", a);
    call_free(&g_bob, "POST", API "/session/trip/draft", dbody, 404);
    call_free(&g_bob, "POST", API "/session/trip/draft", "{\"message\":\"And on Sunday at nine\"}",
              202);
    call(&g_alice, "GET", API "/session/trip", NULL, 200, &r);
    assert_int_equal(jint(r.json, "message_count"), 4);
    resp_free(&r);

    /* bob deletes his; alice's stays */
    call_free(&g_bob, "DELETE", API "/session/trip", NULL, 200);
    call_free(&g_bob, "GET", API "/session/trip", NULL, 404);
    call(&g_alice, "GET", API "/session/trip", NULL, 200, &r);
    assert_int_equal(jint(r.json, "message_count"), 4);
    resp_free(&r);
    free(a);
}

/* ---- sharing ---- */

/* Whether kvchat on `port` routes POST /documents/{doc_id}/share (its
 * OpenAPI document lists every route); the tests that need it say so and
 * skip until it does. */
static bool share_routed(int port)
{
    resp_t r;
    http(port, "GET", API "/openapi.json", NULL, &r);
    bool yes = jpath(r.json, "paths") &&
               json_object_get(json_object_get(jpath(r.json, "paths"),
                                               API "/documents/{doc_id}/share"),
                               "post") != NULL;
    resp_free(&r);
    if (!yes)
        print_message("POST " API "/documents/{doc_id}/share is not routed (routes.c): "
                      "sharing not tested\n");
    return yes;
}

static void test_sharing(void **state)
{
    (void)state;
    if (!share_routed(g_app.port))
        skip();
    char *text = doc_text("city library", 5, 10);
    char *s = upload_as(&g_alice, "library.txt", text, NULL);
    free(text);
    char path[256], share[256];
    snprintf(path, sizeof path, API "/documents/%s", s);
    snprintf(share, sizeof share, API "/documents/%s/share", s);
    call_free(&g_bob, "GET", path, NULL, 404);
    /* users may not share, even their own documents */
    call_free(&g_alice, "POST", share, "{\"everyone\":true}", 403);
    call_free(&g_bob, "POST", share, "{\"everyone\":true}", 403);
    call_free(&g_root, "POST", share, "{\"everyone\":\"yes\"}", 400);
    char unknown[256];
    snprintf(unknown, sizeof unknown, API "/documents/%s/share", UNKNOWN_ID);
    call_free(&g_root, "POST", unknown, "{\"everyone\":true}", 404);

    resp_t r;
    call(&g_root, "POST", share, "{\"everyone\":true}", 200, &r);
    assert_true(json_is_true(jpath(r.json, "shared")));
    assert_string_equal(jstr(r.json, "owner"), g_alice.id);
    resp_free(&r);

    /* bob now lists, reads and chats with it; it stays alice's */
    json_t *d = listed(&g_bob, s, &r);
    assert_non_null(d);
    assert_true(json_is_true(jpath(d, "shared")));
    assert_string_equal(jstr(d, "owner"), g_alice.id);
    resp_free(&r);
    call_free(&g_bob, "GET", path, NULL, 200);
    char chunks[300];
    snprintf(chunks, sizeof chunks, API "/documents/%s/chunks", s);
    call_free(&g_bob, "GET", chunks, NULL, 200);
    ask(&g_bob, "bob-library", s, "When does the library open?", 200, &r);
    assert_non_null(jpath(r.json, "message"));
    resp_free(&r);
    call(&g_bob, "DELETE", path, NULL, 403, &r);
    assert_non_null(strstr(jstr(r.json, "detail"), "shared with you"));
    resp_free(&r);
    call_free(&g_bob, "GET", path, NULL, 200);   /* still there */

    /* unshared: gone for bob, and out of his session */
    call_free(&g_root, "POST", share, "{\"everyone\":false}", 200);
    call_free(&g_bob, "GET", path, NULL, 404);
    assert_false(sees_in_list(&g_bob, s));
    call(&g_bob, "GET", API "/session/bob-library", NULL, 200, &r);
    assert_true(json_is_false(jpath(r.json, "has_document")));
    resp_free(&r);
    ask_free(&g_bob, "bob-library", s, "And now?", 404);
    call_free(&g_alice, "GET", path, NULL, 200);

    /* both are in the audit log */
    call(&g_root, "GET", API "/audit?action=document.share&limit=5", NULL, 200, &r);
    assert_string_equal(jstr(r.json, "entries.0.target"), s);
    assert_string_equal(jstr(r.json, "entries.0.actor"), "root");
    resp_free(&r);
    call(&g_root, "GET", API "/audit?action=document.unshare&limit=5", NULL, 200, &r);
    assert_string_equal(jstr(r.json, "entries.0.target"), s);
    resp_free(&r);

    /* a model command is audited too (the model already runs: no restart) */
    call(&g_root, "GET", API "/model/status", NULL, 200, &r);
    char *name = strdup(jstr(r.json, "serving_name"));
    resp_free(&r);
    char body[400];
    snprintf(body, sizeof body, "{\"serving_name\":\"%s\"}", name);
    call_free(&g_root, "POST", API "/model/switch", body, 200);
    call(&g_root, "GET", API "/audit?action=model.switch&limit=5", NULL, 200, &r);
    assert_string_equal(jstr(r.json, "entries.0.target"), name);
    resp_free(&r);
    free(name);
    free(s);
}

/* ---- one content, two owners ---- */

static void test_same_content(void **state)
{
    (void)state;
    char *text = doc_text("bus depot", 6, 10);
    int files0 = upload_files();
    bool existed = true;
    char *a = upload_as(&g_alice, "depot.txt", text, &existed);
    assert_false(existed);
    assert_int_equal(upload_files(), files0 + 1);
    char *b = upload_as(&g_bob, "my-depot.txt", text, &existed);
    assert_false(existed);   /* a document of bob's own ... */
    assert_string_not_equal(a, b);
    assert_int_equal(upload_files(), files0 + 1);   /* ... on the same file */
    char *again = upload_as(&g_bob, "depot-again.txt", text, &existed);
    assert_true(existed);    /* his own, uploaded twice: one document */
    assert_string_equal(again, b);
    free(again);
    resp_t r;
    json_t *d = listed(&g_bob, b, &r);
    assert_string_equal(jstr(d, "owner"), g_bob.id);
    assert_string_equal(jstr(d, "filename"), "my-depot.txt");
    resp_free(&r);

    /* alice deletes hers: bob's keeps working, and the file stays */
    char path[256];
    snprintf(path, sizeof path, API "/documents/%s", a);
    call_free(&g_alice, "DELETE", path, NULL, 200);
    assert_int_equal(upload_files(), files0 + 1);
    snprintf(path, sizeof path, API "/documents/%s?include_preview=true", b);
    call(&g_bob, "GET", path, NULL, 200, &r);
    assert_non_null(strstr(jstr(r.json, "content_preview"), "bus depot"));
    resp_free(&r);
    ask_free(&g_bob, "bob-depot", b, "What is the code word?", 200);
    /* the last document takes the file with it */
    snprintf(path, sizeof path, API "/documents/%s", b);
    call_free(&g_bob, "DELETE", path, NULL, 200);
    assert_int_equal(upload_files(), files0);
    free(a);
    free(b);
    free(text);
}

/* ---- the storage quota ---- */

/* An HTML file of about `bytes`, almost all of it a comment: big on disk,
 * a line of text once extracted. */
static char *padded_html(size_t bytes, int seed)
{
    buf_t b;
    buf_init(&b, bytes + 4096);
    buf_printf(&b, "<html><body><p>Padded page %d.</p><!-- ", seed);
    while (b.len < bytes)
        buf_puts(&b, "padding padding padding padding padding padding padding padding\n");
    buf_puts(&b, " --></body></html>\n");
    return buf_steal(&b, NULL);
}

static void test_quota(void **state)
{
    (void)state;
    const long long limit = 1 << 20;   /* limits.storage_mb=1 */
    /* alone over the limit */
    char *big = padded_html((size_t)limit + 100000, 1);
    const char *p = fixture_raw(g_dir, "big.html", big, strlen(big));
    resp_t r;
    http_set_cookie(g_carol.cookie);
    http_upload(g_app.port, API "/documents/upload", p, "big.html", &r);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(jstr(r.json, "detail"), "Storage quota exceeded"));
    assert_non_null(strstr(jstr(r.json, "detail"), "1 MB"));
    resp_free(&r);
    free(big);

    /* 0.7 MB fits; 0.5 MB more does not, and the answer says the numbers */
    char *first = padded_html(700000, 2);
    bool existed = true;
    char *id = upload_as(&g_carol, "first.html", first, &existed);
    assert_false(existed);
    char *second = padded_html(500000, 3);
    p = fixture_raw(g_dir, "second.html", second, strlen(second));
    http_set_cookie(g_carol.cookie);
    http_upload(g_app.port, API "/documents/upload", p, "second.html", &r);
    assert_int_equal(r.status, 413);
    const char *why = jstr(r.json, "detail");
    char used[64];
    snprintf(used, sizeof used, "%zu +", strlen(first));
    if (!strstr(why, used) || !strstr(why, "0.7 MB"))
        fail_msg("the 413 should give the numbers: %s", why);
    resp_free(&r);
    /* the same content again costs nothing: still "already uploaded" */
    char *again = upload_as(&g_carol, "first-again.html", first, &existed);
    assert_true(existed);
    assert_string_equal(again, id);
    free(again);
    /* others have their own allowance */
    char *b = upload_as(&g_bob, "second.html", second, &existed);
    char path[256];
    snprintf(path, sizeof path, API "/documents/%s", b);
    call_free(&g_bob, "DELETE", path, NULL, 200);
    /* room again once deleted */
    snprintf(path, sizeof path, API "/documents/%s", id);
    call_free(&g_carol, "DELETE", path, NULL, 200);
    char *c2 = upload_as(&g_carol, "second.html", second, &existed);
    snprintf(path, sizeof path, API "/documents/%s", c2);
    call_free(&g_carol, "DELETE", path, NULL, 200);
    free(c2);
    free(b);
    free(id);
    free(first);
    free(second);
}

/* ---- the cache salt ---- */

static long long cached_of(resp_t *r)
{
    json_t *c = jpath(r->json, "usage.cached_tokens");
    if (!json_is_integer(c))
        fail_msg("no usage.cached_tokens in %s", r->body);
    return (long long)json_integer_value(c);
}

/* Cache document id as u; its tokens. */
static long long cache_doc(const user_t *u, const char *id)
{
    char path[256];
    snprintf(path, sizeof path, API "/documents/cache/%s", id);
    resp_t r;
    call(u, "POST", path, NULL, 200, &r);
    long long n = jint(r.json, "n_tokens");
    resp_free(&r);
    assert_true(n > 100);
    return n;
}

static void test_cache_salt(void **state)
{
    (void)state;
    /* alice's private document, cached: her chat restores it */
    char *text = doc_text("observatory", 7, 14);
    char *a = upload_as(&g_alice, "observatory.txt", text, NULL);
    long long n = cache_doc(&g_alice, a);
    resp_t r;
    ask(&g_alice, "alice-sky", a, "When does the observatory open?", 200, &r);
    assert_true(cached_of(&r) >= n);
    resp_free(&r);
    /* bob asks about the very same text, his own copy: nothing of
     * alice's cache reaches him (without salts it would: same tokens) */
    char *b = upload_as(&g_bob, "observatory.txt", text, NULL);
    ask(&g_bob, "bob-sky", b, "When does the observatory open?", 200, &r);
    long long bob_cached = cached_of(&r);
    resp_free(&r);
    if (bob_cached >= n / 4)
        fail_msg("bob's chat restored %lld tokens of alice's %lld", bob_cached, n);
    /* his own cache then serves him */
    long long nb = cache_doc(&g_bob, b);
    assert_int_equal(nb, n);
    ask(&g_bob, "bob-sky2", b, "Is it open on Sunday?", 200, &r);
    assert_true(cached_of(&r) >= nb);
    resp_free(&r);

    /* a shared document's cache is everyone's */
    if (!share_routed(g_app.port)) {
        free(a);
        free(b);
        free(text);
        return;
    }
    char *stext = doc_text("planetarium", 8, 14);
    char *s = upload_as(&g_alice, "planetarium.txt", stext, NULL);
    long long ns = cache_doc(&g_alice, s);   /* under alice's salt */
    char path[256];
    snprintf(path, sizeof path, API "/documents/%s/share", s);
    call_free(&g_root, "POST", path, "{\"everyone\":true}", 200);
    /* its old entry cannot serve anyone now: gone, the state says so */
    snprintf(path, sizeof path, API "/documents/%s/cache-status", s);
    call(&g_bob, "GET", path, NULL, 200, &r);
    assert_string_equal(jstr(r.json, "cache_status"), "none");
    resp_free(&r);
    assert_int_equal(cache_doc(&g_bob, s), ns);   /* bob may cache it: it is shared */
    ask(&g_bob, "bob-planets", s, "What is the code word?", 200, &r);
    assert_true(cached_of(&r) >= ns);
    resp_free(&r);
    ask(&g_alice, "alice-planets", s, "What is the code word?", 200, &r);
    assert_true(cached_of(&r) >= ns);
    resp_free(&r);

    free(a);
    free(b);
    free(s);
    free(text);
    free(stext);
}

/* ---- uploads at once ---- */

/* An upload that stays open: the request head and the start of a file
 * part of a body that never ends, as u. Returns the socket. */
static int upload_held(const user_t *u)
{
    int fd = tcp_connect_from(g_app.port, NULL);
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "POST " API "/documents/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Cookie: %s\r\nContent-Type: multipart/form-data; boundary=XB\r\n"
                     "Content-Length: 900000\r\n\r\n--XB\r\nContent-Disposition: form-data; "
                     "name=\"file\"; filename=\"slow.txt\"\r\nContent-Type: text/plain\r\n\r\n",
                     u->cookie);
    assert_true(write(fd, head, (size_t)n) == n);
    /* more than the server's multipart buffer (64 KiB), which holds a
     * part's first bytes until it is full */
    static char part[256 << 10];
    memset(part, 'a', sizeof part);
    assert_true(write(fd, part, sizeof part) == (ssize_t)sizeof part);
    return fd;
}

/* Wait (at most 10 s) until GET /auth/me says u has n uploads running. */
static void wait_uploads(const user_t *u, long long n)
{
    long long seen = -1;
    for (double end = now_ms() + 10000; now_ms() < end;) {
        resp_t r;
        call(u, "GET", API "/auth/me", NULL, 200, &r);
        seen = jint(r.json, "running.uploads");
        resp_free(&r);
        if (seen == n)
            return;
        usleep(50 * 1000);
    }
    fail_msg("%s: %lld uploads running, expected %lld", u->name, seen, n);
}

/* limits.uploads_at_once (2): carol's third upload while two of hers are
 * under way is refused with 429 and a sentence; alice's is not; once
 * carol's uploads end (their clients leave), hers go through again.
 * GET /auth/me counts them, with the limits. */
static void test_uploads_at_once(void **state)
{
    (void)state;
    login(&g_carol);
    login(&g_alice);
    resp_t r;
    call(&g_carol, "GET", API "/auth/me", NULL, 200, &r);
    assert_int_equal(jint(r.json, "limits.uploads_at_once"), 2);
    assert_int_equal(jint(r.json, "limits.chats_at_once"), 4);
    assert_int_equal(jint(r.json, "running.chats"), 0);
    resp_free(&r);
    wait_uploads(&g_carol, 0);
    int held[2];
    for (int i = 0; i < 2; i++) {
        held[i] = upload_held(&g_carol);
        wait_uploads(&g_carol, i + 1);
    }
    const char *text = "Uploaded while two others were still coming in.\n";
    const char *p = fixture_raw(g_dir, "third.txt", text, strlen(text));
    http_set_cookie(g_carol.cookie);
    http_upload(g_app.port, API "/documents/upload", p, "third.txt", &r);
    assert_int_equal(r.status, 429);
    assert_string_equal(jstr(r.json, "detail"), "You have 2 uploads running at once, the most "
                                                "allowed: wait for one to finish");
    resp_free(&r);
    http_set_cookie(g_alice.cookie);
    http_upload(g_app.port, API "/documents/upload", p, "third.txt", &r);
    assert_int_equal(r.status, 200);   /* per user */
    resp_free(&r);
    wait_uploads(&g_alice, 0);
    close(held[0]);
    close(held[1]);
    wait_uploads(&g_carol, 0);   /* the server saw the clients leave */
    http_set_cookie(g_carol.cookie);
    http_upload(g_app.port, API "/documents/upload", p, "third.txt", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

/* ---- local mode ---- */

static void test_local_mode_share(void **state)
{
    (void)state;
    char dir[256], data[300], log[300];
    tmpdir_make(dir, sizeof dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(log, sizeof log, "%s/kvchat.log", dir);
    const char *argv[] = { "--data", data, "--no-autostart", "--set", "server.host=127.0.0.1",
                           NULL };
    proc_t app;
    http_set_cookie(NULL);
    proc_start(&app, KVCHAT, argv, log, 60);
    char *text = doc_text("town hall", 9, 4);
    const char *p = fixture_raw(dir, "hall.txt", text, strlen(text));
    resp_t r;
    http_upload(app.port, API "/documents/upload", p, "hall.txt", &r);
    assert_int_equal(r.status, 200);
    assert_true(json_is_null(jpath(r.json, "owner")));
    assert_true(json_is_false(jpath(r.json, "shared")));
    char path[256];
    snprintf(path, sizeof path, API "/documents/%s/share", jstr(r.json, "doc_id"));
    resp_free(&r);
    if (share_routed(app.port)) {
        http(app.port, "POST", path, "{\"everyone\":true}", &r);
        assert_int_equal(r.status, 400);
        assert_string_equal(jstr(r.json, "detail"),
                            "Sharing needs accounts (auth.mode = accounts)");
        resp_free(&r);
    }
    free(text);
    assert_int_equal(proc_stop(&app), 0);
    tmpdir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_documents_isolated),
        cmocka_unit_test(test_sessions_isolated),
        cmocka_unit_test(test_sharing),
        cmocka_unit_test(test_same_content),
        cmocka_unit_test(test_quota),
        cmocka_unit_test(test_cache_salt),
        cmocka_unit_test(test_uploads_at_once),
        cmocka_unit_test(test_local_mode_share),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
