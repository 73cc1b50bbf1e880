/* test_accounts.c — accounts mode against the real kvchat: logins, tokens,
 * roles, users, the audit log, the command line, the first-admin link,
 * the upgrade of a local-mode data directory, and failed-login limits.
 *
 * The engine is not needed here (--no-autostart): what a user may see of
 * documents and chats is test_isolation.c's.
 *
 * Covered:
 * - nothing of /api/v1 without a login or token (401), health and the UI
 *   stay public; a wrong password and an unknown user get the same 401;
 * - the login cookie: HttpOnly, SameSite=Strict, Path=/, Secure only behind
 *   an HTTPS proxy that says so; /auth/me; logout ends it, logout
 *   everywhere ends all;
 * - roles: a user gets 403 on users, audit, logs, metrics and model
 *   commands; the last enabled admin cannot be demoted, disabled or
 *   deleted; a disabled user's login stops working at once;
 * - tokens: shown once, listed without their secret, read scope cannot
 *   change anything, chat scope can, a user cannot make an admin token,
 *   a revoked token is refused;
 * - server.api_key acts as an admin;
 * - the audit log has logins (failed too), tokens, user changes;
 * - `kvchat user add|list|passwd|delete` (password on standard input);
 * - the set-up link printed at the first start creates the first admin,
 *   once;
 * - a trusted proxy's header signs its user in (made on the first visit),
 *   from the listed addresses only;
 * - a local-mode data directory's documents and sessions go to the first
 *   admin;
 * - failed logins back off, then lock (per account and per address), and
 *   say when to come back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/json.h"
#include "support.h"

#define API "/api/v1"
#define KVCHAT KVCHAT_BIN_DIR "/kvchat"
#define API_KEY "itest-accounts-api-key"

static char g_dir[256], g_data[300];
static proc_t g_app;

/* ---- HTTP with cookies and headers ---- */

typedef struct {
    long status;
    json_t *json;
    char *body;
    char set_cookie[512];   /* the Set-Cookie header, "" when none */
    char retry_after[32];
} ares_t;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    return buf_append(ud, p, sz * n) == BUF_OK ? sz * n : 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    ares_t *r = ud;
    size_t len = sz * n;
    char line[600];
    snprintf(line, sizeof line, "%.*s", (int)(len < 599 ? len : 599), p);
    line[strcspn(line, "\r\n")] = '\0';
    if (!strncasecmp(line, "Set-Cookie: ", 12))
        snprintf(r->set_cookie, sizeof r->set_cookie, "%.500s", line + 12);
    if (!strncasecmp(line, "Retry-After: ", 13))
        snprintf(r->retry_after, sizeof r->retry_after, "%.30s", line + 13);
    return len;
}

/* One request; cookie (may be NULL) is "kvchat_session=..." or a bearer
 * "Bearer ..."; extra (may be NULL) one more header. */
static void req(const char *method, const char *path, const char *body, const char *cred,
                const char *extra, ares_t *r)
{
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    char url[600];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", g_app.port, path);
    buf_t b;
    buf_init(&b, 16 << 20);
    struct curl_slist *h = NULL;
    char hdr[700];
    if (cred && !strncmp(cred, "Bearer ", 7)) {
        snprintf(hdr, sizeof hdr, "Authorization: %s", cred);
        h = curl_slist_append(h, hdr);
    } else if (cred) {
        snprintf(hdr, sizeof hdr, "Cookie: %s", cred);
        h = curl_slist_append(h, hdr);
    }
    if (extra)
        h = curl_slist_append(h, extra);
    if (body)
        h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    r->body = buf_steal(&b, NULL);
    r->json = r->body ? json_loads(r->body, 0, NULL) : NULL;
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void ares_free(ares_t *r)
{
    json_decref(r->json);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* req, and the status must be `want`. */
static void expect(const char *method, const char *path, const char *body, const char *cred,
                   long want, ares_t *r)
{
    req(method, path, body, cred, NULL, r);
    if (r->status != want)
        fail_msg("%s %s: expected %ld, got %ld: %.300s", method, path, want, r->status,
                 r->body ? r->body : "");
}

static void expect_free(const char *method, const char *path, const char *body,
                        const char *cred, long want)
{
    ares_t r;
    expect(method, path, body, cred, want, &r);
    ares_free(&r);
}

/* Log in; the cookie ("kvchat_session=...") into out. */
static void login(const char *name, const char *pw, char *out, size_t cap)
{
    char body[300];
    snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"%s\"}", name, pw);
    ares_t r;
    expect("POST", API "/auth/login", body, NULL, 200, &r);
    assert_non_null(strstr(r.set_cookie, "kvchat_session=kvs_"));
    size_t n = strcspn(r.set_cookie, ";");
    assert_true(n < cap);
    snprintf(out, cap, "%.*s", (int)n, r.set_cookie);
    ares_free(&r);
}

/* ---- the command line ---- */

/* Run `kvchat user ARGS... --data DIR` with `input` on standard input;
 * its standard output into out (may be NULL). Returns the exit status. */
static int cli(const char *data, const char *input, char *out, size_t cap, const char *a1,
               const char *a2, const char *a3, const char *a4)
{
    int in[2], outp[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(outp), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(outp[1], 1);
        close(in[1]);
        close(outp[0]);
        const char *argv[12] = { KVCHAT, "user" };
        int n = 2;
        const char *args[] = { a1, a2, a3, a4 };
        for (int i = 0; i < 4; i++)
            if (args[i])
                argv[n++] = args[i];
        argv[n++] = "--data";
        argv[n++] = data;
        argv[n] = NULL;
        execv(KVCHAT, (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(outp[1]);
    if (input)
        assert_true(write(in[1], input, strlen(input)) == (ssize_t)strlen(input));
    close(in[1]);
    size_t got = 0;
    char buf[4096];
    ssize_t k;
    while ((k = read(outp[0], buf, sizeof buf)) > 0)
        if (out && got + (size_t)k < cap) {
            memcpy(out + got, buf, (size_t)k);
            got += (size_t)k;
        }
    if (out)
        out[got] = '\0';
    close(outp[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void start_app(proc_t *p, const char *data, const char *log, const char *extra_set)
{
    const char *argv[] = { "--data", data, "--no-autostart", "--set", "auth.mode=accounts",
                           "--set", "server.api_key=" API_KEY, "--set",
                           "auth.login_lock_after=5", "--set", "auth.login_lock_minutes=1",
                           extra_set ? "--set" : NULL, extra_set, NULL };
    proc_start(p, KVCHAT, argv, log, 30);
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    tmpdir_make(g_dir, sizeof g_dir);
    snprintf(g_data, sizeof g_data, "%s/data", g_dir);
    if (cli(g_data, "root-password-1\n", NULL, 0, "add", "root", "--role", "admin") != 0)
        return -1;
    char log[300];
    snprintf(log, sizeof log, "%s/kvchat.log", g_dir);
    start_app(&g_app, g_data, log, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int st = proc_stop(&g_app);
    tmpdir_remove(g_dir);
    return st == 0 ? 0 : -1;
}

/* ---- tests ---- */

static void test_sign_in_first(void **state)
{
    (void)state;
    ares_t r;
    expect("GET", API "/documents/list", NULL, NULL, 401, &r);
    assert_non_null(strstr(r.body, "Sign in"));
    ares_free(&r);
    expect_free("GET", API "/auth/me", NULL, NULL, 401);
    expect_free("GET", "/health", NULL, NULL, 200);
    expect_free("GET", "/", NULL, NULL, 200);
    /* wrong password and unknown user: one answer */
    ares_t a, b;
    expect("POST", API "/auth/login", "{\"username\":\"root\",\"password\":\"nope-nope\"}", NULL,
           401, &a);
    expect("POST", API "/auth/login", "{\"username\":\"ghost\",\"password\":\"nope-nope\"}",
           NULL, 401, &b);
    assert_string_equal(a.body, b.body);
    assert_string_equal(a.set_cookie, "");
    ares_free(&a);
    ares_free(&b);
    expect_free("POST", API "/auth/login", "{\"username\":\"root\"}", NULL, 400);
    expect_free("POST", API "/auth/login", "not json", NULL, 400);
    /* a made-up cookie is nobody */
    expect_free("GET", API "/auth/me", NULL, "kvchat_session=kvs_forged", 401);
}

static void test_login_cookie(void **state)
{
    (void)state;
    ares_t r;
    expect("POST", API "/auth/login", "{\"username\":\"ROOT\",\"password\":\"root-password-1\"}",
           NULL, 200, &r);   /* names in any case */
    assert_non_null(strstr(r.set_cookie, "HttpOnly"));
    assert_non_null(strstr(r.set_cookie, "SameSite=Strict"));
    assert_non_null(strstr(r.set_cookie, "Path=/"));
    assert_null(strstr(r.set_cookie, "Secure"));
    assert_string_equal(jstr(r.json, "user.role"), "admin");
    ares_free(&r);
    req("POST", API "/auth/login", "{\"username\":\"root\",\"password\":\"root-password-1\"}",
        NULL, "X-Forwarded-Proto: https", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.set_cookie, "; Secure"));
    ares_free(&r);
    char c1[200], c2[200];
    login("root", "root-password-1", c1, sizeof c1);
    login("root", "root-password-1", c2, sizeof c2);
    expect("GET", API "/auth/me", NULL, c1, 200, &r);
    assert_string_equal(jstr(r.json, "user.name"), "root");
    assert_string_equal(jstr(r.json, "via"), "login");
    assert_string_equal(jstr(r.json, "mode"), "accounts");
    ares_free(&r);
    /* logout ends this login only; everywhere ends the rest */
    expect("POST", API "/auth/logout", NULL, c1, 200, &r);
    assert_non_null(strstr(r.set_cookie, "Max-Age=0"));
    ares_free(&r);
    expect_free("GET", API "/auth/me", NULL, c1, 401);
    expect_free("GET", API "/auth/me", NULL, c2, 200);
    expect_free("POST", API "/auth/logout", "{\"everywhere\":true}", c2, 200);
    expect_free("GET", API "/auth/me", NULL, c2, 401);
}

static void test_roles_and_users(void **state)
{
    (void)state;
    char root[200], alice[200];
    login("root", "root-password-1", root, sizeof root);
    ares_t r;
    expect("POST", API "/users", "{\"username\":\"alice\",\"password\":\"alice-pass-1\"}", root,
           201, &r);
    assert_string_equal(jstr(r.json, "role"), "user");
    char alice_id[64];
    snprintf(alice_id, sizeof alice_id, "%s", jstr(r.json, "id"));
    ares_free(&r);
    expect_free("POST", API "/users", "{\"username\":\"Alice\",\"password\":\"alice-pass-2\"}",
                root, 409);
    expect_free("POST", API "/users", "{\"username\":\"bob\",\"password\":\"short\"}", root, 400);
    expect_free("POST", API "/users", "{\"username\":\"bad name/x\",\"password\":\"long-enough\"}",
                root, 400);
    login("alice", "alice-pass-1", alice, sizeof alice);
    /* a user is no admin */
    expect_free("GET", API "/users", NULL, alice, 403);
    expect_free("GET", API "/audit", NULL, alice, 403);
    expect_free("GET", API "/logs/recent", NULL, alice, 403);
    expect_free("GET", "/metrics", NULL, alice, 403);
    expect_free("POST", API "/model/down", "{}", alice, 403);
    expect_free("GET", API "/model/status", NULL, alice, 200);
    expect_free("GET", API "/documents/list", NULL, alice, 200);
    /* the last admin stays one */
    expect("GET", API "/auth/me", NULL, root, 200, &r);
    char root_id[64], path[200];
    snprintf(root_id, sizeof root_id, "%s", jstr(r.json, "user.id"));
    ares_free(&r);
    snprintf(path, sizeof path, API "/users/%s", root_id);
    expect_free("PATCH", path, "{\"role\":\"user\"}", root, 409);
    expect_free("PATCH", path, "{\"disabled\":true}", root, 409);
    expect_free("DELETE", path, NULL, root, 409);
    /* disabling a user ends their logins at once; enabling lets them in again */
    snprintf(path, sizeof path, API "/users/%s", alice_id);
    expect_free("PATCH", path, "{\"disabled\":true}", root, 200);
    expect_free("GET", API "/auth/me", NULL, alice, 401);
    expect_free("POST", API "/auth/login", "{\"username\":\"alice\",\"password\":\"alice-pass-1\"}",
                NULL, 401);
    expect_free("PATCH", path, "{\"disabled\":false}", root, 200);
    login("alice", "alice-pass-1", alice, sizeof alice);
    /* a password change by the user ends their other logins */
    char other[200];
    login("alice", "alice-pass-1", other, sizeof other);
    expect_free("POST", API "/auth/password",
                "{\"current_password\":\"wrong-one\",\"new_password\":\"alice-pass-2\"}", alice,
                403);
    expect_free("POST", API "/auth/password",
                "{\"current_password\":\"alice-pass-1\",\"new_password\":\"alice-pass-2\"}", alice,
                200);
    expect_free("GET", API "/auth/me", NULL, other, 401);
    expect_free("GET", API "/auth/me", NULL, alice, 200);
    expect("GET", API "/users", NULL, root, 200, &r);
    assert_int_equal(json_array_size(jpath(r.json, "users")), 2);
    assert_null(strstr(r.body, "argon2"));
    ares_free(&r);
    expect_free("GET", API "/users/nope", NULL, root, 405);
    expect_free("PATCH", API "/users/nope", "{\"role\":\"user\"}", root, 404);
}

static void test_tokens(void **state)
{
    (void)state;
    char alice[200], root[200];
    login("alice", "alice-pass-2", alice, sizeof alice);
    login("root", "root-password-1", root, sizeof root);
    ares_t r;
    expect("POST", API "/auth/tokens", "{\"name\":\"reader\",\"scope\":\"read\"}", alice, 201,
           &r);
    char rd[200], rd_id[64];
    snprintf(rd, sizeof rd, "Bearer %s", jstr(r.json, "token"));
    snprintf(rd_id, sizeof rd_id, "%s", jstr(r.json, "id"));
    assert_memory_equal(jstr(r.json, "token"), "kvt_", 4);
    ares_free(&r);
    expect("POST", API "/auth/tokens",
           "{\"name\":\"chatter\",\"scope\":\"chat\",\"expires_in\":3600}", alice, 201, &r);
    char ch[200];
    snprintf(ch, sizeof ch, "Bearer %s", jstr(r.json, "token"));
    assert_non_null(jpath(r.json, "expires_at"));
    ares_free(&r);
    expect_free("POST", API "/auth/tokens", "{\"name\":\"boss\",\"scope\":\"admin\"}", alice, 403);
    expect_free("POST", API "/auth/tokens", "{\"name\":\"x\",\"scope\":\"root\"}", alice, 400);
    expect_free("POST", API "/auth/tokens", "{\"name\":\"x\",\"expires_in\":5}", alice, 400);
    /* read: looks, changes nothing */
    expect("GET", API "/auth/me", NULL, rd, 200, &r);
    assert_string_equal(jstr(r.json, "scope"), "read");
    assert_string_equal(jstr(r.json, "via"), "token");
    ares_free(&r);
    expect_free("GET", API "/documents/list", NULL, rd, 200);
    expect_free("POST", API "/session", "{}", rd, 403);
    expect_free("POST", API "/session", "{}", ch, 201);
    /* listed without secrets */
    expect("GET", API "/auth/tokens", NULL, alice, 200, &r);
    assert_int_equal(json_array_size(jpath(r.json, "tokens")), 2);
    assert_null(strstr(r.body, rd + 7));
    assert_null(strstr(r.body, "hash"));
    ares_free(&r);
    /* another user cannot revoke it; its owner can */
    char path[200];
    snprintf(path, sizeof path, API "/auth/tokens/%s", rd_id);
    expect_free("DELETE", path, NULL, root, 404);
    expect_free("DELETE", path, NULL, alice, 200);
    expect_free("GET", API "/documents/list", NULL, rd, 401);
    expect_free("DELETE", path, NULL, alice, 404);
    /* an admin's admin token is an admin; the server's API key too */
    expect("POST", API "/auth/tokens", "{\"name\":\"ops\",\"scope\":\"admin\"}", root, 201, &r);
    char ad[200];
    snprintf(ad, sizeof ad, "Bearer %s", jstr(r.json, "token"));
    ares_free(&r);
    expect_free("GET", API "/users", NULL, ad, 200);
    expect_free("GET", API "/users", NULL, "Bearer " API_KEY, 200);
    expect_free("GET", API "/users", NULL, "Bearer not-the-key", 401);
}

static void test_audit(void **state)
{
    (void)state;
    char root[200];
    login("root", "root-password-1", root, sizeof root);
    ares_t r;
    expect("GET", API "/audit?limit=1000", NULL, root, 200, &r);
    static const char *const actions[] = { "login.ok", "login.fail", "logout", "user.create",
                                           "user.change", "token.create", "token.revoke",
                                           "password.change" };
    for (size_t i = 0; i < sizeof actions / sizeof *actions; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "\"action\":\"%s\"", actions[i]);
        if (!strstr(r.body, needle))
            fail_msg("no %s in the audit log", actions[i]);
    }
    assert_null(strstr(r.body, "root-password-1"));
    assert_null(strstr(r.body, "nope-nope"));
    ares_free(&r);
    expect("GET", API "/audit?action=login.fail&limit=5", NULL, root, 200, &r);
    json_t *e = jpath(r.json, "entries");
    assert_true(json_array_size(e) >= 2);
    assert_string_equal(jstr(json_array_get(e, 0), "action"), "login.fail");
    assert_string_equal(jstr(json_array_get(e, 0), "from"), "127.0.0.1");
    ares_free(&r);
    expect_free("GET", API "/audit?limit=0", NULL, root, 400);
    /* the password never reaches the log either */
    assert_false(log_contains(g_app.log_path, "root-password-1"));
    assert_false(log_contains(g_app.log_path, "alice-pass"));
}

static void test_cli(void **state)
{
    (void)state;
    char out[4096];
    assert_int_equal(cli(g_data, NULL, out, sizeof out, "list", NULL, NULL, NULL), 0);
    assert_non_null(strstr(out, "root"));
    assert_non_null(strstr(out, "alice"));
    assert_int_equal(cli(g_data, "carol-pass-1\n", out, sizeof out, "add", "carol", NULL, NULL), 0);
    assert_int_equal(cli(g_data, "carol-pass-1\n", NULL, 0, "add", "CAROL", NULL, NULL), 1);
    assert_int_equal(cli(g_data, "short\n", NULL, 0, "add", "dave", NULL, NULL), 2);
    assert_int_equal(cli(g_data, "x\n", NULL, 0, "add", "erin", "--role", "king"), 2);
    char c[200];
    login("carol", "carol-pass-1", c, sizeof c);
    assert_int_equal(cli(g_data, "carol-pass-2\n", NULL, 0, "passwd", "carol", NULL, NULL), 0);
    expect_free("GET", API "/auth/me", NULL, c, 401);   /* logins ended */
    login("carol", "carol-pass-2", c, sizeof c);
    assert_int_equal(cli(g_data, NULL, NULL, 0, "delete", "carol", NULL, NULL), 0);
    expect_free("GET", API "/auth/me", NULL, c, 401);
    assert_int_equal(cli(g_data, NULL, NULL, 0, "delete", "carol", NULL, NULL), 1);
    assert_int_equal(cli(g_data, NULL, NULL, 0, "delete", "root", NULL, NULL), 1);
}

/* A data directory used in local mode, then with accounts: the setup
 * link creates the first admin, who gets the documents and sessions. */
static void test_setup_link_and_upgrade(void **state)
{
    (void)state;
    char data[300], log[300], doc[300];
    snprintf(data, sizeof data, "%s/old-data", g_dir);
    snprintf(log, sizeof log, "%s/old.log", g_dir);
    snprintf(doc, sizeof doc, "%s/notes.md", g_dir);
    FILE *f = fopen(doc, "w");
    assert_non_null(f);
    fputs("# Notes\n\nThe spare key is under the third flower pot.\n", f);
    fclose(f);
    proc_t local;
    const char *argv[] = { "--data", data, "--no-autostart", NULL };
    proc_start(&local, KVCHAT, argv, log, 30);
    resp_t r;
    http_upload(local.port, API "/documents/upload", doc, "notes.md", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(local.port, "POST", API "/session", "{\"session_id\":\"old-chat\"}", &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);
    assert_int_equal(proc_stop(&local), 0);

    /* accounts on, no user yet: the link is on the console */
    proc_t acc;
    const char *argv2[] = { "--data", data, "--no-autostart", "--set", "auth.mode=accounts", NULL };
    proc_start(&acc, KVCHAT, argv2, log, 30);
    FILE *lf = fopen(log, "r");
    assert_non_null(lf);
    char line[1024], token[128] = "";
    while (fgets(line, sizeof line, lf)) {
        char *p = strstr(line, "#setup=");
        if (p) {
            snprintf(token, sizeof token, "%s", p + 7);
            token[strcspn(token, "\r\n ")] = '\0';
        }
    }
    fclose(lf);
    assert_memory_equal(token, "kvl_", 4);
    int saved = g_app.port;
    g_app.port = acc.port;
    char body[400];
    snprintf(body, sizeof body,
             "{\"token\":\"%s\",\"username\":\"owner\",\"password\":\"owner-pass-1\"}", token);
    ares_t a;
    expect_free("POST", API "/auth/setup",
                "{\"token\":\"kvl_wrong\",\"username\":\"x\",\"password\":\"owner-pass-1\"}", NULL,
                403);
    expect("POST", API "/auth/setup", body, NULL, 201, &a);
    assert_non_null(strstr(a.set_cookie, "kvchat_session=kvs_"));
    char cookie[200];
    snprintf(cookie, sizeof cookie, "%.*s", (int)strcspn(a.set_cookie, ";"), a.set_cookie);
    ares_free(&a);
    expect_free("POST", API "/auth/setup", body, NULL, 403);   /* once */
    /* the old document and chat are the admin's now */
    expect("GET", API "/documents/list", NULL, cookie, 200, &a);
    assert_non_null(strstr(a.body, "notes.md"));
    ares_free(&a);
    expect("GET", API "/sessions", NULL, cookie, 200, &a);
    assert_non_null(strstr(a.body, "old-chat"));
    ares_free(&a);
    /* a user made now sees neither */
    expect_free("POST", API "/users", "{\"username\":\"newbie\",\"password\":\"newbie-pass\"}",
                cookie, 201);
    char nb[200];
    login("newbie", "newbie-pass", nb, sizeof nb);
    expect("GET", API "/sessions", NULL, nb, 200, &a);
    assert_null(strstr(a.body, "old-chat"));
    ares_free(&a);
    g_app.port = saved;
    assert_int_equal(proc_stop(&acc), 0);
}

/* Sign-in by a trusted proxy's header: believed from the listed
 * addresses and ranges only; the user is made on the first visit, as a
 * user; a list kvchat cannot read stops it at start-up. */
static void test_trusted_header(void **state)
{
    (void)state;
    char data[300], log[300];
    snprintf(data, sizeof data, "%s/sso-data", g_dir);
    snprintf(log, sizeof log, "%s/sso.log", g_dir);
    assert_int_equal(cli(data, "admin-pass-1\n", NULL, 0, "add", "admin", "--role", "admin"), 0);
    int saved = g_app.port;
    proc_t p;
    const char *trusted[] = { "--data", data, "--no-autostart", "--set", "auth.mode=accounts",
                              "--set", "auth.trusted_header=X-Forwarded-User", "--set",
                              "auth.trusted_proxies=10.9.9.9, 127.0.0.0/8", NULL };
    proc_start(&p, KVCHAT, trusted, log, 30);
    g_app.port = p.port;
    ares_t r;
    req("GET", API "/auth/me", NULL, NULL, "X-Forwarded-User: dora@example.org", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "user.name"), "dora@example.org");
    assert_string_equal(jstr(r.json, "user.role"), "user");
    assert_string_equal(jstr(r.json, "via"), "header");
    ares_free(&r);
    req("GET", API "/users", NULL, NULL, "X-Forwarded-User: dora@example.org", &r);
    assert_int_equal(r.status, 403);   /* a user, even so */
    ares_free(&r);
    req("GET", API "/auth/me", NULL, NULL, "X-Forwarded-User: not a valid/name", &r);
    assert_int_equal(r.status, 401);
    ares_free(&r);
    /* behind the proxy, a login is from the address it forwards */
    req("POST", API "/auth/login", "{\"username\":\"admin\",\"password\":\"admin-pass-1\"}",
        NULL, "X-Forwarded-For: 6.6.6.6, 198.51.100.7", &r);
    assert_int_equal(r.status, 200);
    char cookie[300];
    snprintf(cookie, sizeof cookie, "%.*s", (int)strcspn(r.set_cookie, ";"), r.set_cookie);
    ares_free(&r);
    expect("GET", API "/audit?action=login.ok&limit=1", NULL, cookie, 200, &r);
    assert_string_equal(jstr(r.json, "entries.0.from"), "198.51.100.7");
    ares_free(&r);
    assert_int_equal(proc_stop(&p), 0);
    /* the same header from an address not listed: nobody */
    const char *untrusted[] = { "--data", data, "--no-autostart", "--set", "auth.mode=accounts",
                                "--set", "auth.trusted_header=X-Forwarded-User", "--set",
                                "auth.trusted_proxies=10.9.9.9", NULL };
    proc_start(&p, KVCHAT, untrusted, log, 30);
    g_app.port = p.port;
    req("GET", API "/auth/me", NULL, NULL, "X-Forwarded-User: admin", &r);
    assert_int_equal(r.status, 401);
    ares_free(&r);
    g_app.port = saved;
    assert_int_equal(proc_stop(&p), 0);
    /* a list entry that is not an address or a range, or a header without
     * proxies, stops kvchat at start-up with a sentence */
    const char *bad[] = { "--data", data, "--no-autostart", "--set", "auth.mode=accounts",
                          "--set", "auth.trusted_header=X-Forwarded-User", "--set",
                          "auth.trusted_proxies=10.9.9.9, proxy.internal", NULL };
    assert_false(proc_try_start(&p, KVCHAT, bad, log, 30));
    assert_true(log_contains(log, "auth.trusted_proxies: 'proxy.internal' is not an IP address "
                                  "or a CIDR range"));
    const char *none[] = { "--data", data, "--no-autostart", "--set", "auth.mode=accounts",
                           "--set", "auth.trusted_header=X-Forwarded-User", NULL };
    assert_false(proc_try_start(&p, KVCHAT, none, log, 30));
    assert_true(log_contains(log, "auth.trusted_header is set but auth.trusted_proxies is empty"));
}

/* Last: it locks 127.0.0.1 out of logging in for a while. */
static void test_login_limits(void **state)
{
    (void)state;
    const char *bad = "{\"username\":\"alice\",\"password\":\"guess-guess\"}";
    for (int i = 0; i < 3; i++)   /* free */
        expect_free("POST", API "/auth/login", bad, NULL, 401);
    ares_t r;
    expect("POST", API "/auth/login", bad, NULL, 429, &r);   /* back off 1 s */
    assert_string_equal(r.retry_after, "1");
    ares_free(&r);
    usleep(1100 * 1000);
    expect_free("POST", API "/auth/login", bad, NULL, 401);   /* the 4th: 2 s */
    usleep(2100 * 1000);
    expect_free("POST", API "/auth/login", bad, NULL, 401);   /* the 5th: locked */
    expect("POST", API "/auth/login", "{\"username\":\"alice\",\"password\":\"alice-pass-2\"}",
           NULL, 429, &r);   /* even the right password */
    assert_non_null(strstr(r.body, "locked"));
    assert_true(atoi(r.retry_after) > 50);
    ares_free(&r);
    expect("GET", API "/audit?action=login.locked", NULL, "Bearer " API_KEY, 200, &r);
    assert_true(json_array_size(jpath(r.json, "entries")) >= 1);
    ares_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_in_first),
        cmocka_unit_test(test_login_cookie),
        cmocka_unit_test(test_roles_and_users),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_audit),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_setup_link_and_upgrade),
        cmocka_unit_test(test_trusted_header),
        cmocka_unit_test(test_login_limits),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
