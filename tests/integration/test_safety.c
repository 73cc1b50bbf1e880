/* test_safety.c — kvchat on its default settings against hostile clients:
 * the real app, the real engine with the tiny model, over real sockets.
 *
 * Covered: idle connections from one address cannot lock other clients
 * out (a limit per address, an idle timeout, and chat served meanwhile);
 * a web page cannot drive kvchat (a cross-site POST, a text/plain "simple"
 * request, a rebound Host name, a cross-site upload are refused; the
 * app's own origin and an allowed CORS origin work, preflight included);
 * a session title over its limit is a 400; a chunked upload over the limit
 * is answered 413 (the client that sends it all reads the answer).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

#define MODEL KVCHAT_TEST_MODELS_DIR "/tiny.gguf"
#define API "/api/v1"

static char g_dir[256];
static proc_t g_app;

static void wait_running(int port)
{
    double t0 = now_ms();
    for (;;) {
        resp_t r;
        http(port, "GET", API "/model/status", NULL, &r);
        bool ok = r.json && strcmp(jstr(r.json, "status"), "running") == 0;
        resp_free(&r);
        if (ok)
            return;
        if (now_ms() - t0 > 60000)
            fail_msg("engine did not start");
        usleep(100 * 1000);
    }
}

static int group_setup(void **state)
{
    (void)state;
    tmpdir_make(g_dir, sizeof g_dir);
    char data[300], log[300], eport[64];
    snprintf(data, sizeof data, "%s/data", g_dir);
    snprintf(log, sizeof log, "%s/kvchat.log", g_dir);
    snprintf(eport, sizeof eport, "engine.port=%d", free_port());
    const char *argv[] = { "--data", data, "--model", MODEL, "--set", eport, "--set",
                           "engine.threads=2", "--set", "engine.ctx_size=2048", "--set",
                           "llm.max_tokens=8", "--set", "server.timeout=3", "--set",
                           "server.max_connections_per_ip=16", "--set",
                           "server.cors_origins=https://ok.example", "--set",
                           "server.max_upload_mb=1", NULL };
    proc_start(&g_app, KVCHAT_BIN_DIR "/kvchat", argv, log, 60);
    wait_running(g_app.port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    proc_stop(&g_app);
    tmpdir_remove(g_dir);
    return 0;
}

/* ---- raw sockets ------------------------------------------------------ */

/* Send a whole request on a new connection and read the answer to the end.
 * Returns the status; the answer (headers and body) goes to out (cap bytes,
 * NUL-terminated). */
static int raw_request(const char *req, size_t len, char *out, size_t cap)
{
    int fd = tcp_connect_from(g_app.port, NULL);
    assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    size_t got = 0;
    double end = now_ms() + 30000;
    while (got + 1 < cap && now_ms() < end) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 1000) <= 0)
            continue;
        ssize_t k = recv(fd, out + got, cap - 1 - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    out[got] = '\0';
    close(fd);
    int status = 0;
    sscanf(out, "HTTP/1.%*d %d", &status);
    return status;
}

/* A request with the app's own Host and extra header lines `extra`
 * (each ending in CRLF), and a body with its Content-Type. */
static int request(const char *method, const char *path, const char *host, const char *extra,
                   const char *ctype, const char *body, char *out, size_t cap)
{
    char req[8192], hostbuf[64];
    if (!host) {
        snprintf(hostbuf, sizeof hostbuf, "127.0.0.1:%d", g_app.port);
        host = hostbuf;
    }
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%sContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     method, path, host, extra ? extra : "", ctype ? "Content-Type: " : "",
                     ctype ? ctype : "", ctype ? "\r\n" : "", blen, body ? body : "");
    assert_true(n > 0 && (size_t)n < sizeof req);
    return raw_request(req, (size_t)n, out, cap);
}

static const char *engine_status(void)
{
    static char st[32];
    resp_t r;
    http(g_app.port, "GET", API "/model/status", NULL, &r);
    snprintf(st, sizeof st, "%s", r.json ? jstr(r.json, "status") : "?");
    resp_free(&r);
    return st;
}

/* ---- tests ------------------------------------------------------------ */

/* 100+ connections that send nothing (as in the report: everyone else
 * failed while they were held) no longer lock anyone out. */
static void test_idle_connections(void **state)
{
    (void)state;
    enum { N = 120 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = tcp_connect_from(g_app.port, i % 4 == 3 ? "127.0.0.3" : "127.0.0.2");
        if (i % 3 == 0)   /* some send half a request line and stop */
            assert_int_equal(send(fds[i], "POST /api/v1/sess", 17, MSG_NOSIGNAL), 17);
    }
    /* everyone else is served meanwhile: health, a session, a chat turn */
    resp_t r;
    http(g_app.port, "GET", "/health", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http(g_app.port, "POST", API "/session", "{}", &r);
    assert_int_equal(r.status, 201);
    char path[200];
    snprintf(path, sizeof path, API "/session/%s/messages", jstr(r.json, "session_id"));
    resp_free(&r);
    http(g_app.port, "POST", path, "{\"message\":\"hello\"}", &r);
    assert_int_equal(r.status, 200);
    assert_true(json_is_string(jpath(r.json, "message")));
    resp_free(&r);
    /* connections over the per-address limit were closed at once; the
     * rest are closed by the idle timeout (3 s here) */
    int closed = 0;
    for (int i = 0; i < N; i++) {
        closed += tcp_closed_within(fds[i], 8000);
        close(fds[i]);
    }
    assert_int_equal(closed, N);
    http(g_app.port, "GET", "/health", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

/* What a page on another site can make a browser send. */
static void test_web_pages_cannot_drive(void **state)
{
    (void)state;
    char out[16384];
    /* a cross-site POST that would stop the engine */
    assert_int_equal(request("POST", API "/model/down", NULL, "Origin: http://evil.example\r\n",
                             "text/plain", "", out, sizeof out),
                     403);
    assert_non_null(strstr(out, "Cross-site request refused"));
    assert_int_equal(request("POST", API "/model/down", NULL, "Sec-Fetch-Site: cross-site\r\n",
                             NULL, NULL, out, sizeof out),
                     403);
    assert_string_equal(engine_status(), "running");
    /* a "simple" text/plain POST that would run a chat, even without Origin */
    assert_int_equal(request("POST", API "/session", NULL, NULL, "text/plain", "{}", out, sizeof out),
                     415);
    assert_non_null(strstr(out, "application/json"));
    /* a cross-site upload (multipart is a "simple" type too) */
    const char *mp = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
                     "Content-Type: text/plain\r\n\r\nhello there\r\n--XyZ--\r\n";
    assert_int_equal(request("POST", API "/documents/upload", NULL, "Origin: https://evil.example\r\n",
                             "multipart/form-data; boundary=XyZ", mp, out, sizeof out),
                     403);
    /* DNS rebinding: a page whose name now resolves to 127.0.0.1 */
    assert_int_equal(request("GET", API "/documents/list", "evil.example:8000", NULL, NULL, NULL, out,
                             sizeof out),
                     403);
    assert_non_null(strstr(out, "allowed hosts"));
    assert_int_equal(request("GET", "/", "evil.example", NULL, NULL, NULL, out, sizeof out), 403);

    /* the app's own page, a non-browser client and an allowed origin work */
    char same[128];
    snprintf(same, sizeof same, "Origin: http://127.0.0.1:%d\r\n", g_app.port);
    assert_int_equal(request("POST", API "/session", NULL, same, "application/json", "{}", out,
                             sizeof out),
                     201);
    assert_int_equal(request("POST", API "/session", "localhost", "Origin: http://localhost\r\n",
                             "application/json", "{}", out, sizeof out),
                     201);
    int ust = request("POST", API "/documents/upload", NULL, same, "multipart/form-data; boundary=XyZ",
                      mp, out, sizeof out);
    if (ust != 200)
        fail_msg("same-origin upload: %d %s", ust, strstr(out, "\r\n\r\n") ? strstr(out, "\r\n\r\n") + 4 : out);
    /* CORS: the preflight of an allowed origin, then its request */
    assert_int_equal(request("OPTIONS", API "/session", NULL,
                             "Origin: https://ok.example\r\nAccess-Control-Request-Method: POST\r\n"
                             "Access-Control-Request-Headers: content-type\r\n",
                             NULL, NULL, out, sizeof out),
                     204);
    assert_non_null(strcasestr(out, "Access-Control-Allow-Origin: https://ok.example"));
    assert_non_null(strcasestr(out, "Access-Control-Allow-Methods:"));
    assert_int_equal(request("POST", API "/session", NULL, "Origin: https://ok.example\r\n",
                             "application/json", "{}", out, sizeof out),
                     201);
    assert_non_null(strcasestr(out, "Access-Control-Allow-Origin: https://ok.example"));
    /* the preflight of another origin is refused */
    assert_int_equal(request("OPTIONS", API "/session", NULL,
                             "Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n",
                             NULL, NULL, out, sizeof out),
                     403);
    assert_string_equal(engine_status(), "running");
}

static void test_title_limit(void **state)
{
    (void)state;
    size_t n = 1u << 20;
    char *body = malloc(n + 64);
    assert_non_null(body);
    memcpy(body, "{\"title\":\"", 10);
    memset(body + 10, 'x', n);
    memcpy(body + 10 + n, "\"}", 3);
    resp_t r;
    http(g_app.port, "POST", API "/session", body, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(jstr(r.json, "detail"), "Title too long"));
    resp_free(&r);
    free(body);
}

/* A chunked upload (no Content-Length) three times over the 1 MB limit:
 * the client reads a 413, not a reset connection. */
static void test_chunked_upload_over_limit(void **state)
{
    (void)state;
    size_t n = 3u << 20;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'a', n);
    for (size_t i = 80; i < n; i += 81)
        big[i] = '\n';
    int fd = tcp_connect_from(g_app.port, NULL);
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "POST " API "/documents/upload HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      "Content-Type: multipart/form-data; boundary=XyZ\r\n"
                      "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                      g_app.port);
    assert_int_equal(send(fd, head, (size_t)hl, MSG_NOSIGNAL), hl);
    const char *pre = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n"
                      "Content-Type: text/plain\r\n\r\n";
    char chunk_head[32];
    int ch = snprintf(chunk_head, sizeof chunk_head, "%zx\r\n", strlen(pre));
    assert_int_equal(send(fd, chunk_head, (size_t)ch, MSG_NOSIGNAL), ch);
    assert_int_equal(send(fd, pre, strlen(pre), MSG_NOSIGNAL), (ssize_t)strlen(pre));
    assert_int_equal(send(fd, "\r\n", 2, MSG_NOSIGNAL), 2);
    bool sent_all = true;
    for (size_t off = 0; off < n; off += 65536) {
        size_t k = n - off < 65536 ? n - off : 65536;
        ch = snprintf(chunk_head, sizeof chunk_head, "%zx\r\n", k);
        if (send(fd, chunk_head, (size_t)ch, MSG_NOSIGNAL) != ch ||
            send(fd, big + off, k, MSG_NOSIGNAL) != (ssize_t)k ||
            send(fd, "\r\n", 2, MSG_NOSIGNAL) != 2) {
            sent_all = false;
            break;
        }
    }
    const char *end = "\r\n--XyZ--\r\n";
    ch = snprintf(chunk_head, sizeof chunk_head, "%zx\r\n", strlen(end));
    if (sent_all)
        sent_all = send(fd, chunk_head, (size_t)ch, MSG_NOSIGNAL) == ch &&
                   send(fd, end, strlen(end), MSG_NOSIGNAL) == (ssize_t)strlen(end) &&
                   send(fd, "\r\n0\r\n\r\n", 7, MSG_NOSIGNAL) == 7;
    assert_true(sent_all);   /* the server read it all, it did not reset */
    char out[4096];
    size_t got = 0;
    double until = now_ms() + 20000;
    while (got + 1 < sizeof out && now_ms() < until) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 1000) <= 0)
            continue;
        ssize_t k = recv(fd, out + got, sizeof out - 1 - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    out[got] = '\0';
    close(fd);
    free(big);
    int status = 0;
    sscanf(out, "HTTP/1.%*d %d", &status);
    assert_int_equal(status, 413);
    assert_non_null(strstr(out, "too large"));
}

/* Without accounts, kvchat serves loopback addresses only: on 0.0.0.0 it
 * refuses to start (exit 2, the way out in its message, nothing bound),
 * unless --insecure-no-auth says the network is trusted. */
static void test_local_mode_loopback_only(void **state)
{
    (void)state;
    char data[300], log[300];
    snprintf(data, sizeof data, "%s/open-data", g_dir);
    snprintf(log, sizeof log, "%s/open.log", g_dir);
    const char *argv[] = { "--host", "0.0.0.0", "--data", data, "--no-autostart", NULL };
    proc_t p;
    assert_false(proc_try_start(&p, KVCHAT_BIN_DIR "/kvchat", argv, log, 10));
    assert_true(log_contains(log, "without accounts"));
    assert_true(log_contains(log, "--insecure-no-auth"));
    resp_t r;
    assert_false(http_try(p.port, "GET", "/health", NULL, &r));
    const char *argv2[] = { "--host", "0.0.0.0", "--data", data, "--no-autostart",
                            "--insecure-no-auth", NULL };
    proc_start(&p, KVCHAT_BIN_DIR "/kvchat", argv2, log, 30);
    http(p.port, "GET", "/health", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(proc_stop(&p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_connections),
        cmocka_unit_test(test_web_pages_cannot_drive),
        cmocka_unit_test(test_title_limit),
        cmocka_unit_test(test_chunked_upload_over_limit),
        cmocka_unit_test(test_local_mode_loopback_only),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
