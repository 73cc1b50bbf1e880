/* test_httpd.c — the HTTP server layer over real sockets on 127.0.0.1.
 *
 * Every test starts a server on port 0 and talks to it with libcurl (or a
 * raw socket where the client must misbehave precisely):
 * - routing: captures, query, literal-before-capture, HEAD, 404 and 405
 *   (with Allow) in both error styles;
 * - keep-alive: a second request on one curl handle opens no connection;
 * - limits: body over max_body gets 413 (declared and chunked), malformed
 *   JSON gets 400 through httpd_req_json, API key 401/200, CORS preflight;
 * - streams: 1000 SSE events from a producer thread arrive complete and in
 *   order; heartbeats while idle; a client that disconnects makes
 *   httpd_stream_closed() true and on_close fire promptly, and writes then
 *   fail with HTTPD_ECLOSED; the queue limit gives HTTPD_EFULL;
 *   httpd_close() with open streams and busy producers returns promptly;
 * - uploads: several MB of multipart arrive intact through the callbacks
 *   with the file name and form fields; over max_upload gets 413 without
 *   the body being read; malformed multipart 400, wrong type 415, a
 *   callback's own refusal is sent;
 * - a waiting handler sees httpd_req_gone() when the client leaves or the
 *   server closes; the access log line; IPv6;
 * - 50 concurrent requests all answer, in parallel;
 * - static bytes with ETag/304, files, missing answers (500), stats, and
 *   httpd_open() argument checks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "common/buf.h"
#include "common/httpd.h"

/* ---- shared test state ------------------------------------------------ */

#define MAX_HELD 8

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    httpd_stream_t *held[MAX_HELD]; /* streams opened by /hold, test is producer */
    int nheld;
    int closed[MAX_HELD];           /* on_close calls per slot */
    double closed_at[MAX_HELD];
    pthread_t producer;             /* /sse's producer thread */
    bool have_producer;
    int efull_written;              /* bytes /full queued before HTTPD_EFULL */
    int gone_seen;                  /* /wait saw httpd_req_gone() */
    double gone_at;
    int efull_rc;
} T = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

/* Checks on server threads: cmocka's asserts must only run on the test
 * thread, so failures there are counted and asserted zero in stop(). */
static atomic_int g_server_failures;
#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: server-side check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                             \
            atomic_fetch_add(&g_server_failures, 1);                                    \
        }                                                                               \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void reset_state(void)
{
    pthread_mutex_lock(&T.lock);
    T.nheld = 0;
    memset(T.held, 0, sizeof T.held);
    memset(T.closed, 0, sizeof T.closed);
    T.have_producer = false;
    T.gone_seen = 0;
    pthread_mutex_unlock(&T.lock);
}

/* ---- handlers --------------------------------------------------------- */

static void h_hello(httpd_req_t *req, void *user)
{
    (void)user;
    httpd_reply_json(req, 200, json_pack("{s:s}", "hello", "world"));
}

/* Who the authorize callback said the request comes from, and from where. */
static void h_whoami(httpd_req_t *req, void *user)
{
    (void)user;
    const char *who = httpd_req_auth(req);
    httpd_reply_json(req, 200, json_pack("{s:s, s:s}", "who", who ? who : "", "peer",
                                         httpd_req_peer(req)));
}

static void h_item(httpd_req_t *req, void *user)
{
    (void)user;
    const char *q = httpd_req_query(req, "lines");
    const char *flag = httpd_req_query(req, "flag");
    httpd_reply_json(req, 200,
                     json_pack("{s:s, s:s*, s:s*, s:s, s:s}", "id", httpd_req_param(req, "id"),
                               "lines", q, "flag", flag, "route", httpd_req_route(req), "method",
                               httpd_req_method(req)));
}

static void h_item_list(httpd_req_t *req, void *user)
{
    (void)user;
    httpd_reply_json(req, 200, json_pack("{s:b}", "list", 1));
}

static void h_item_delete(httpd_req_t *req, void *user)
{
    (void)user;
    httpd_reply_text(req, 200, NULL, "deleted", 7);
}

static void h_echo(httpd_req_t *req, void *user)
{
    (void)user;
    json_t *body;
    const char *msg;
    if (httpd_req_json(req, &body, &msg) != HTTPD_OK) {
        httpd_reply_error(req, 400, "%s", msg);
        return;
    }
    size_t len;
    httpd_req_body(req, &len);
    httpd_reply_json(req, 200, json_pack("{s:o, s:i}", "got", body, "len", (json_int_t)len));
}

static void h_public(httpd_req_t *req, void *user)
{
    (void)user;
    httpd_reply_text(req, 200, "text/plain", "public", 6);
}

static const char asset[] = "body { color: red }";

static void h_static(httpd_req_t *req, void *user)
{
    (void)user;
    const char *path = httpd_req_param(req, "path");
    if (strcmp(path, "style.css") == 0) {
        httpd_reply_static(req, 200, "text/css", asset, sizeof asset - 1,
                           "public, max-age=3600", "\"v1\"");
        return;
    }
    httpd_reply_json(req, 200, json_pack("{s:s}", "path", path));
}

static char g_file_path[256];

static void h_file(httpd_req_t *req, void *user)
{
    (void)user;
    int rc = httpd_reply_file(req, 200, "text/plain", g_file_path);
    if (rc == HTTPD_ENOENT)
        httpd_reply_error(req, 404, "no such file");
}

static void h_missing_file(httpd_req_t *req, void *user)
{
    (void)user;
    int rc = httpd_reply_file(req, 200, "text/plain", "/nonexistent/kvchat/file");
    httpd_reply_error(req, rc == HTTPD_ENOENT ? 404 : 500, "%s", httpd_strerror(rc));
}

static void h_noreply(httpd_req_t *req, void *user)
{
    (void)req;
    (void)user;
}

static void h_twice(httpd_req_t *req, void *user)
{
    (void)user;
    int a = httpd_reply_text(req, 201, NULL, "first", 5);
    int b = httpd_reply_text(req, 200, NULL, "second", 6);
    CHECK((a) == HTTPD_OK);
    CHECK((b) == HTTPD_ESTATE);
}

static void h_headers(httpd_req_t *req, void *user)
{
    (void)user;
    const char *x = httpd_req_header(req, "x-test");
    CHECK((httpd_reply_header(req, "X-Reply", "yes")) == HTTPD_OK);
    CHECK((httpd_reply_header(req, "X-Bad", "a\r\nInjected: 1")) == HTTPD_EINVAL);
    httpd_reply_json(req, 200, json_pack("{s:s?}", "x", x));
}

static void h_slow(httpd_req_t *req, void *user)
{
    (void)user;
    usleep(200 * 1000);
    httpd_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* /sleep?ms=N: answers after N ms (longer than the idle timeout). */
static void h_sleep(httpd_req_t *req, void *user)
{
    (void)user;
    const char *ms = httpd_req_query(req, "ms");
    usleep((useconds_t)(ms ? atoi(ms) : 0) * 1000);
    httpd_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* /late?ms=N: a plain (not SSE, so no heartbeat) stream whose producer
 * writes once after N ms. */
static void *late_producer(void *arg)
{
    httpd_stream_t *s = arg;
    usleep(2500 * 1000);
    httpd_stream_write(s, "late\n", 5);
    httpd_stream_close(s);
    return NULL;
}

static void h_late(httpd_req_t *req, void *user)
{
    (void)user;
    httpd_stream_t *s;
    if (httpd_stream_open(req, "text/plain", &s) != HTTPD_OK)
        return;
    pthread_t t;
    if (pthread_create(&t, NULL, late_producer, s) != 0) {
        httpd_stream_close(s);
        return;
    }
    pthread_detach(t);
}

/* /sse?n=N: a producer thread sends N events then [DONE]. */
static void *sse_producer(void *arg)
{
    httpd_stream_t *s = arg;
    int n = 1000;
    pthread_mutex_lock(&T.lock);
    n = T.efull_written; /* reused as "n" for this route */
    pthread_mutex_unlock(&T.lock);
    for (int i = 0; i < n; i++) {
        char ev[64];
        snprintf(ev, sizeof ev, "{\"i\":%d}", i);
        int rc;
        while ((rc = httpd_stream_sse(s, ev)) == HTTPD_EFULL)
            usleep(1000);
        if (rc != HTTPD_OK)
            break;
    }
    httpd_stream_sse(s, "[DONE]");
    httpd_stream_close(s);
    return NULL;
}

static void h_sse(httpd_req_t *req, void *user)
{
    (void)user;
    const char *n = httpd_req_query(req, "n");
    httpd_stream_t *s;
    CHECK((httpd_stream_open(req, "text/event-stream", &s)) == HTTPD_OK);
    /* A second answer is refused. */
    CHECK((httpd_reply_text(req, 200, NULL, "x", 1)) == HTTPD_ESTATE);
    pthread_mutex_lock(&T.lock);
    T.efull_written = n ? atoi(n) : 1000;
    T.have_producer = true;
    CHECK((pthread_create(&T.producer, NULL, sse_producer, s)) == 0);
    pthread_mutex_unlock(&T.lock);
}

static void on_held_close(httpd_stream_t *s, void *user)
{
    int slot = (int)(intptr_t)user;
    /* on_close may use the stream: writes fail at once. */
    CHECK(httpd_stream_closed(s));
    CHECK((httpd_stream_write(s, "x", 1)) == HTTPD_ECLOSED);
    pthread_mutex_lock(&T.lock);
    T.closed[slot]++;
    T.closed_at[slot] = now_s();
    pthread_cond_broadcast(&T.cond);
    pthread_mutex_unlock(&T.lock);
}

/* /hold: open a stream and hand it to the test, which is the producer. */
static void h_hold(httpd_req_t *req, void *user)
{
    (void)user;
    httpd_stream_t *s;
    int rc = httpd_stream_open(req, "text/event-stream", &s);
    if (rc != HTTPD_OK) {
        httpd_reply_error(req, 503, "%s", httpd_strerror(rc));
        return;
    }
    pthread_mutex_lock(&T.lock);
    int slot = T.nheld++;
    T.held[slot] = s;
    httpd_stream_on_close(s, on_held_close, (void *)(intptr_t)slot);
    httpd_stream_sse(s, "{\"hello\":1}");
    pthread_cond_broadcast(&T.cond);
    pthread_mutex_unlock(&T.lock);
}

/* /full: fill the queue from the handler (the connection is not reading
 * yet) until HTTPD_EFULL, then close. */
static void h_full(httpd_req_t *req, void *user)
{
    (void)user;
    httpd_stream_t *s;
    CHECK((httpd_stream_open(req, "application/octet-stream", &s)) == HTTPD_OK);
    char block[100];
    memset(block, 'z', sizeof block);
    int written = 0, rc;
    while ((rc = httpd_stream_write(s, block, sizeof block)) == HTTPD_OK)
        written += (int)sizeof block;
    CHECK((httpd_stream_pending(s)) == (size_t)written);
    pthread_mutex_lock(&T.lock);
    T.efull_written = written;
    T.efull_rc = rc;
    pthread_mutex_unlock(&T.lock);
    httpd_stream_close(s);
}

/* /wait: a handler that waits a long time, as a non-streaming generation
 * does, polling httpd_req_gone(). */
static void h_wait(httpd_req_t *req, void *user)
{
    (void)user;
    double end = now_s() + 10;
    while (now_s() < end && !httpd_req_gone(req))
        usleep(10 * 1000);
    pthread_mutex_lock(&T.lock);
    T.gone_seen++;
    T.gone_at = now_s();
    pthread_mutex_unlock(&T.lock);
    httpd_reply_text(req, 200, NULL, "late", 4);
}

/* ---- upload route ----------------------------------------------------- */

typedef struct {
    int parts;
    char field[64], filename[128], ctype[64];
    uint64_t bytes; /* file part bytes */
    uint64_t hash;  /* FNV-1a of the file part */
    int ended;
    bool refuse;    /* refuse files named *.exe */
} upload_ctx_t;

static atomic_ullong g_upload_bytes_seen; /* every byte given to on_part_data */
static atomic_int g_upload_ctx_freed;

static void *_Atomic g_upload_ctx_last_freed; /* compared, never dereferenced */
static atomic_int g_upload_cb_after_free;    /* callbacks given a freed ctx */

static void upload_ctx_free(void *p)
{
    atomic_store(&g_upload_ctx_last_freed, p);
    free(p);
    atomic_fetch_add(&g_upload_ctx_freed, 1);
}

/* The request's ctx, or NULL (counted) when the request already ended. */
static upload_ctx_t *live_ctx(httpd_req_t *req)
{
    upload_ctx_t *c = httpd_req_ctx(req);
    if (c && (void *)c == atomic_load(&g_upload_ctx_last_freed)) {
        atomic_fetch_add(&g_upload_cb_after_free, 1);
        return NULL;
    }
    return c;
}

static int up_begin(httpd_req_t *req, const char *field, const char *filename,
                    const char *content_type)
{
    if (httpd_req_ctx(req) && !live_ctx(req))
        return -1;
    upload_ctx_t *c = httpd_req_ctx(req);
    if (!c) {
        c = calloc(1, sizeof *c);
        CHECK(c != NULL);
        if (!c)
            return -1;
        c->hash = 1469598103934665603ULL;
        void *same = c; /* malloc may hand back the last freed block */
        atomic_compare_exchange_strong(&g_upload_ctx_last_freed, &same, NULL);
        httpd_req_set_ctx(req, c, upload_ctx_free);
    }
    c->parts++;
    if (filename) {
        snprintf(c->field, sizeof c->field, "%s", field);
        snprintf(c->filename, sizeof c->filename, "%s", filename);
        snprintf(c->ctype, sizeof c->ctype, "%s", content_type ? content_type : "");
        size_t n = strlen(filename);
        if (n > 4 && strcmp(filename + n - 4, ".exe") == 0) {
            httpd_reply_error(req, 422, "File type not allowed: %s", filename);
            return -1;
        }
    }
    return 0;
}

static int up_data(httpd_req_t *req, const char *data, size_t len)
{
    upload_ctx_t *c = live_ctx(req);
    if (!c)
        return -1;
    atomic_fetch_add(&g_upload_bytes_seen, len);
    if (c->filename[0]) {
        for (size_t i = 0; i < len; i++) {
            c->hash ^= (unsigned char)data[i];
            c->hash *= 1099511628211ULL;
        }
        c->bytes += len;
    }
    return 0;
}

static int up_end(httpd_req_t *req)
{
    upload_ctx_t *c = live_ctx(req);
    if (!c)
        return -1;
    c->ended++;
    return 0;
}

static const httpd_upload_t upload_ops = { up_begin, up_data, up_end };

static void h_upload(httpd_req_t *req, void *user)
{
    (void)user;
    upload_ctx_t *c = httpd_req_ctx(req);
    if (!c) {
        httpd_reply_error(req, 400, "no parts");
        return;
    }
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)c->hash);
    httpd_reply_json(req, 200,
                     json_pack("{s:i, s:s, s:s, s:s, s:I, s:s, s:i, s:s?}", "parts", c->parts,
                               "field", c->field, "filename", c->filename, "ctype", c->ctype,
                               "bytes", (json_int_t)c->bytes, "hash", hash, "ended", c->ended,
                               "note", httpd_req_form(req, "note")));
}

static const httpd_route_t routes[] = {
    { "GET", "/hello", h_hello, 0, NULL },
    { "GET", "/items/{id}", h_item, 0, NULL },
    { "GET", "/items/list", h_item_list, 0, NULL },
    { "DELETE", "/items/{id}", h_item_delete, 0, NULL },
    { "POST", "/echo", h_echo, 0, NULL },
    { "GET", "/public", h_public, HTTPD_ROUTE_PUBLIC, NULL },
    { "GET", "/static/{path*}", h_static, HTTPD_ROUTE_PUBLIC, NULL },
    { "GET", "/file", h_file, 0, NULL },
    { "GET", "/missing-file", h_missing_file, 0, NULL },
    { "GET", "/noreply", h_noreply, 0, NULL },
    { "GET", "/twice", h_twice, 0, NULL },
    { "GET", "/headers", h_headers, 0, NULL },
    { "GET", "/slow", h_slow, HTTPD_ROUTE_QUIET, NULL },
    { "GET", "/sse", h_sse, 0, NULL },
    { "GET", "/hold", h_hold, 0, NULL },
    { "GET", "/full", h_full, 0, NULL },
    { "POST", "/upload", h_upload, HTTPD_ROUTE_UPLOAD, &upload_ops },
    { "GET", "/wait", h_wait, 0, NULL },
    { "GET", "/sleep", h_sleep, 0, NULL },
    { "GET", "/late", h_late, 0, NULL },
    { "POST", "/act", h_item_delete, 0, NULL },
    { "GET", "/whoami", h_whoami, 0, NULL },
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

static httpd_t *g_srv;
static char g_base[64];

static httpd_config_t test_config(void)
{
    httpd_config_t c = httpd_config_default();
    c.access_log_level = LOG_DEBUG;
    c.heartbeat_ms = 0;
    return c;
}

static void start(const httpd_config_t *cfg)
{
    reset_state();
    assert_int_equal(httpd_open(cfg, routes, N_ROUTES, NULL, &g_srv), HTTPD_OK);
    assert_true(httpd_port(g_srv) > 0);
    snprintf(g_base, sizeof g_base, "http://127.0.0.1:%u", httpd_port(g_srv));
}

/* Wait until every client connection is closed on the server side, so
 * that completion callbacks (stats, ctx frees) have run. */
static void settle(void)
{
    httpd_stats_t st;
    for (int i = 0; i < 400; i++) {
        httpd_stats(g_srv, &st);
        if (st.connections_open == 0)
            return;
        usleep(5000);
    }
    fail_msg("connections still open: %llu", (unsigned long long)st.connections_open);
}

static void stop(void)
{
    httpd_close(g_srv);
    g_srv = NULL;
    assert_int_equal(atomic_exchange(&g_server_failures, 0), 0);
}

/* ---- client helpers --------------------------------------------------- */

typedef struct {
    long status;
    buf_t body;
    buf_t hdrs;
    long connects;
    CURLcode rc;
    double secs;
} resp_t;

static size_t collect(char *p, size_t sz, size_t n, void *ud)
{
    buf_t *b = ud;
    if (buf_append(b, p, sz * n) != BUF_OK)
        return 0;
    return sz * n;
}

static void resp_init(resp_t *r)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->body, 64 * 1024 * 1024);
    buf_init(&r->hdrs, 1024 * 1024);
}

static void resp_cleanup(resp_t *r)
{
    buf_cleanup(&r->body);
    buf_cleanup(&r->hdrs);
}

/* Value of response header `name` (last one), copied into out. */
static const char *resp_header(const resp_t *r, const char *name, char *out, size_t cap)
{
    const char *p = r->hdrs.data;
    const char *found = NULL;
    size_t nl = strlen(name);
    while (p && *p) {
        const char *e = strstr(p, "\r\n");
        if (!e)
            break;
        if ((size_t)(e - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t n = (size_t)(e - v);
            if (n >= cap)
                n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            found = out;
        }
        p = e + 2;
    }
    return found;
}

static CURL *new_handle(void)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    return c;
}

/* One request on handle c. headers: NULL-terminated list. body NULL: none. */
static void do_req(CURL *c, const char *method, const char *path, const char *body,
                   long body_len, const char *const *headers, resp_t *r)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", g_base, path);
    resp_init(r);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->hdrs);
    curl_easy_setopt(c, CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, strcmp(method, "HEAD") == 0 ? NULL : method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, body_len < 0 ? (long)strlen(body) : body_len);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    struct curl_slist *h = NULL;
    bool has_ct = false;
    for (int i = 0; headers && headers[i]; i++) {
        h = curl_slist_append(h, headers[i]);
        has_ct |= strncasecmp(headers[i], "Content-Type:", 13) == 0;
    }
    /* a body is JSON unless the test says otherwise (curl's own default
     * would be a form) */
    if (body && !has_ct)
        h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    double t0 = now_s();
    r->rc = curl_easy_perform(c);
    r->secs = now_s() - t0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r->connects);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
}

static void req1(const char *method, const char *path, const char *body,
                 const char *const *headers, resp_t *r)
{
    CURL *c = new_handle();
    do_req(c, method, path, body, -1, headers, r);
    curl_easy_cleanup(c);
}

static json_t *resp_json(const resp_t *r)
{
    json_t *j = NULL;
    json_err_t err;
    if (json_parse(r->body.data ? r->body.data : "", r->body.len, &j, &err) != JSON_OK)
        fail_msg("response is not JSON: %s (%s)", r->body.data ? r->body.data : "", err.msg);
    return j;
}

static void assert_json_error(const resp_t *r, httpd_error_style_t style, long status,
                              const char *msg_part)
{
    assert_int_equal(r->status, status);
    char ct[128];
    assert_non_null(resp_header(r, "Content-Type", ct, sizeof ct));
    assert_string_equal(ct, "application/json");
    json_t *j = resp_json(r);
    const char *msg = NULL;
    if (style == HTTPD_ERRORS_DETAIL) {
        assert_int_equal(json_object_size(j), 1);
        msg = json_string_value(json_object_get(j, "detail"));
    } else {
        json_t *e = json_object_get(j, "error");
        assert_non_null(e);
        assert_int_equal(json_integer_value(json_object_get(e, "code")), status);
        assert_non_null(json_string_value(json_object_get(e, "type")));
        msg = json_string_value(json_object_get(e, "message"));
    }
    assert_non_null(msg);
    if (msg_part && !strstr(msg, msg_part))
        fail_msg("error message '%s' lacks '%s'", msg, msg_part);
    json_decref(j);
}

/* ---- raw socket client ------------------------------------------------ */

/* A TCP connection to the server from source address `from` (a loopback
 * address such as "127.0.0.2", or NULL for the default). */
static int raw_connect_from(const char *from)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (from) {
        struct sockaddr_in src = { .sin_family = AF_INET };
        assert_int_equal(inet_pton(AF_INET, from, &src.sin_addr), 1);
        assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
    }
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)httpd_port(g_srv)) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)httpd_port(g_srv)) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void raw_send(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Read into b until `needle` appears or timeout_ms passes. Returns true if
 * found. */
static bool raw_read_until(int fd, buf_t *b, const char *needle, int timeout_ms)
{
    double end = now_s() + timeout_ms / 1000.0;
    for (;;) {
        if (b->data && strstr(b->data, needle))
            return true;
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0)
            return false;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, left) <= 0)
            continue;
        char tmp[4096];
        ssize_t k = recv(fd, tmp, sizeof tmp, 0);
        if (k <= 0)
            return b->data && strstr(b->data, needle);
        assert_int_equal(buf_append(b, tmp, (size_t)k), BUF_OK);
    }
}

/* Open a /hold stream on a raw socket; returns the fd and the slot. */
static int hold_open(int *slot)
{
    int fd = raw_connect();
    raw_send(fd, "GET /hold HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    buf_t b;
    buf_init(&b, 1 << 20);
    assert_true(raw_read_until(fd, &b, "{\"hello\":1}", 3000));
    assert_non_null(strstr(b.data, "200 OK"));
    assert_non_null(strstr(b.data, "text/event-stream"));
    assert_non_null(strstr(b.data, "chunked"));
    buf_cleanup(&b);
    pthread_mutex_lock(&T.lock);
    *slot = T.nheld - 1;
    pthread_mutex_unlock(&T.lock);
    return fd;
}

/* Wait until slot's on_close fired; returns the seconds from `since` to
 * the call (at least 0), or -1 on timeout. */
static double wait_closed(int slot, double since, double timeout)
{
    double end = now_s() + timeout;
    pthread_mutex_lock(&T.lock);
    while (!T.closed[slot] && now_s() < end) {
        pthread_mutex_unlock(&T.lock);
        usleep(5000);
        pthread_mutex_lock(&T.lock);
    }
    double r = T.closed[slot] ? T.closed_at[slot] - since : -1;
    if (T.closed[slot] && r < 0)
        r = 0;
    pthread_mutex_unlock(&T.lock);
    return r;
}

/* ---- tests: routing and errors ---------------------------------------- */

static void test_routing(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    start(&cfg);
    resp_t r;

    req1("GET", "/hello", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "{\"hello\":\"world\"}");
    char v[128];
    assert_string_equal(resp_header(&r, "Content-Type", v, sizeof v), "application/json");
    resp_cleanup(&r);

    req1("GET", "/items/42?lines=10&flag", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = resp_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "42");
    assert_string_equal(json_string_value(json_object_get(j, "lines")), "10");
    assert_string_equal(json_string_value(json_object_get(j, "flag")), "");
    assert_string_equal(json_string_value(json_object_get(j, "route")), "/items/{id}");
    json_decref(j);
    resp_cleanup(&r);

    /* Percent-decoded capture; absent query is absent. */
    req1("GET", "/items/a%20b", NULL, NULL, &r);
    j = resp_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "a b");
    assert_null(json_object_get(j, "lines"));
    json_decref(j);
    resp_cleanup(&r);

    /* The literal route wins over the capture, whatever the table order. */
    req1("GET", "/items/list", NULL, NULL, &r);
    assert_string_equal(r.body.data, "{\"list\":true}");
    resp_cleanup(&r);

    req1("DELETE", "/items/7", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "deleted");
    resp_cleanup(&r);

    /* HEAD runs the GET route and sends no body. */
    req1("HEAD", "/hello", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    resp_cleanup(&r);

    /* Rest capture. */
    req1("GET", "/static/js/app.js", NULL, NULL, &r);
    j = resp_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "path")), "js/app.js");
    json_decref(j);
    resp_cleanup(&r);

    /* Trailing slash and extra segments do not match. */
    req1("GET", "/hello/", NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    resp_cleanup(&r);
    req1("GET", "/items/1/2", NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    resp_cleanup(&r);

    /* Request headers in, reply headers out; CR/LF refused. */
    const char *hx[] = { "X-Test: abc", NULL };
    req1("GET", "/headers", NULL, hx, &r);
    assert_string_equal(r.body.data, "{\"x\":\"abc\"}");
    assert_string_equal(resp_header(&r, "X-Reply", v, sizeof v), "yes");
    assert_null(resp_header(&r, "Injected", v, sizeof v));
    resp_cleanup(&r);
    stop();
}

static void check_error_shapes(httpd_error_style_t style)
{
    httpd_config_t cfg = test_config();
    cfg.error_style = style;
    start(&cfg);
    resp_t r;
    req1("GET", "/nope", NULL, NULL, &r);
    assert_json_error(&r, style, 404, "Not found: /nope");
    if (style == HTTPD_ERRORS_OPENAI) {
        json_t *j = resp_json(&r);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(j, "error"), "type")),
            "not_found_error");
        json_decref(j);
    }
    resp_cleanup(&r);

    req1("POST", "/items/3", "{}", NULL, &r);
    assert_json_error(&r, style, 405, "not allowed");
    char allow[128];
    assert_non_null(resp_header(&r, "Allow", allow, sizeof allow));
    assert_string_equal(allow, "GET, HEAD, DELETE");
    resp_cleanup(&r);

    req1("GET", "/noreply", NULL, NULL, &r);
    assert_json_error(&r, style, 500, "no response");
    resp_cleanup(&r);
    stop();
}

static void test_errors_openai(void **state)
{
    (void)state;
    check_error_shapes(HTTPD_ERRORS_OPENAI);
    /* The exact shape. */
    httpd_config_t cfg = test_config();
    start(&cfg);
    resp_t r;
    req1("POST", "/echo", "[1]", NULL, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body.data, "{\"error\":{\"message\":\"Request body must be a JSON "
                                     "object\",\"type\":\"invalid_request_error\",\"code\":400}}");
    resp_cleanup(&r);
    stop();
}

static void test_errors_detail(void **state)
{
    (void)state;
    check_error_shapes(HTTPD_ERRORS_DETAIL);
    httpd_config_t cfg = test_config();
    cfg.error_style = HTTPD_ERRORS_DETAIL;
    start(&cfg);
    resp_t r;
    req1("POST", "/echo", "[1]", NULL, &r);
    assert_string_equal(r.body.data, "{\"detail\":\"Request body must be a JSON object\"}");
    resp_cleanup(&r);
    stop();
}

static void test_keepalive(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    start(&cfg);
    CURL *c = new_handle();
    resp_t r;
    do_req(c, "GET", "/hello", NULL, -1, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.connects, 1);
    resp_cleanup(&r);
    do_req(c, "GET", "/hello", NULL, -1, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.connects, 0);
    char v[64];
    assert_null(resp_header(&r, "Connection", v, sizeof v));
    resp_cleanup(&r);
    /* A POST with a body, an error, and a stream keep the connection too. */
    do_req(c, "POST", "/echo", "{\"a\":1}", -1, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.connects, 0);
    resp_cleanup(&r);
    do_req(c, "GET", "/nope", NULL, -1, NULL, &r);
    assert_int_equal(r.status, 404);
    assert_int_equal(r.connects, 0);
    resp_cleanup(&r);
    do_req(c, "GET", "/sse?n=3", NULL, -1, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.connects, 0);
    assert_non_null(strstr(r.body.data, "data: [DONE]\n\n"));
    resp_cleanup(&r);
    pthread_join(T.producer, NULL);
    do_req(c, "GET", "/hello", NULL, -1, NULL, &r);
    assert_int_equal(r.connects, 0);
    resp_cleanup(&r);
    curl_easy_cleanup(c);
    settle();

    httpd_stats_t st;
    httpd_stats(g_srv, &st);
    assert_int_equal(st.requests, 6);
    assert_int_equal(st.status[2], 5);
    assert_int_equal(st.status[4], 1);
    assert_int_equal(st.streams_total, 1);
    assert_int_equal(st.streams_open, 0);
    assert_true(st.bytes_in >= 7);
    stop();
}

static void test_body_limit(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.max_body = 1024;
    start(&cfg);
    char *big = malloc(4096);
    memset(big, ' ', 4096);
    memcpy(big, "{\"a\":1}", 7);
    resp_t r;
    /* Declared too large: 413 before the body is read. */
    CURL *c = new_handle();
    do_req(c, "POST", "/echo", big, 2000, NULL, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 413, "limit 1024 bytes");
    resp_cleanup(&r);
    /* At the limit: fine. */
    do_req(c, "POST", "/echo", big, 1024, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = resp_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "len")), 1024);
    json_decref(j);
    resp_cleanup(&r);
    /* Chunked (no Content-Length) and too large: 413 as well. */
    const char *chunked[] = { "Transfer-Encoding: chunked", NULL };
    do_req(c, "POST", "/echo", big, 4096, chunked, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 413, "too large");
    resp_cleanup(&r);
    do_req(c, "POST", "/echo", big, 500, chunked, &r);
    assert_int_equal(r.status, 200);
    resp_cleanup(&r);
    curl_easy_cleanup(c);
    free(big);
    stop();
}

static void test_malformed_json(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    start(&cfg);
    resp_t r;
    req1("POST", "/echo", "{\"a\": tru}", NULL, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 400, "Malformed JSON at line 1 column");
    resp_cleanup(&r);
    req1("POST", "/echo", "{\"a\":1} x", NULL, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 400, "end of file expected");
    resp_cleanup(&r);
    req1("POST", "/echo", "", NULL, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 400, "empty");
    resp_cleanup(&r);
    char deep[200] = "";
    for (int i = 0; i < 70; i++)
        strcat(deep, "[");
    req1("POST", "/echo", deep, NULL, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 400, "nesting deeper than 64");
    resp_cleanup(&r);
    /* Invalid UTF-8 in the body: refused, and the error itself is JSON. */
    req1("POST", "/echo", "{\"a\":\"\xff\"}", NULL, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 400, "Malformed JSON");
    resp_cleanup(&r);
    req1("POST", "/echo", "{\"a\":[1,2]}", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "{\"got\":{\"a\":[1,2]},\"len\":11}");
    resp_cleanup(&r);
    stop();
}

static void test_api_key(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.api_key = "sekret";
    start(&cfg);
    resp_t r;
    char v[128];
    req1("GET", "/hello", NULL, NULL, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 401, "API key");
    assert_string_equal(resp_header(&r, "WWW-Authenticate", v, sizeof v), "Bearer");
    resp_cleanup(&r);
    const char *wrong[] = { "Authorization: Bearer sekre", NULL };
    req1("GET", "/hello", NULL, wrong, &r);
    assert_int_equal(r.status, 401);
    resp_cleanup(&r);
    const char *longer[] = { "Authorization: Bearer sekrets", NULL };
    req1("GET", "/hello", NULL, longer, &r);
    assert_int_equal(r.status, 401);
    resp_cleanup(&r);
    const char *basic[] = { "Authorization: Basic sekret", NULL };
    req1("GET", "/hello", NULL, basic, &r);
    assert_int_equal(r.status, 401);
    resp_cleanup(&r);
    const char *right[] = { "Authorization: Bearer sekret", NULL };
    req1("GET", "/hello", NULL, right, &r);
    assert_int_equal(r.status, 200);
    resp_cleanup(&r);
    /* A POST refused for its key keeps the connection (body drained). */
    CURL *c = new_handle();
    do_req(c, "POST", "/echo", "{\"a\":1}", -1, NULL, &r);
    assert_int_equal(r.status, 401);
    resp_cleanup(&r);
    do_req(c, "POST", "/echo", "{\"a\":1}", -1, right, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.connects, 0);
    resp_cleanup(&r);
    curl_easy_cleanup(c);
    /* Public routes need no key. */
    req1("GET", "/public", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_cleanup(&r);
    stop();
}

/* The authorize callback: X-User names the caller ("mallory" is
 * refused, "slow" told to wait). */
static atomic_int g_auth_calls;

static void free_str(void *p)
{
    free(p);
}

static int authorize(httpd_req_t *req, void *user, char *msg, size_t cap)
{
    (void)user;
    atomic_fetch_add(&g_auth_calls, 1);
    const char *u = httpd_req_header(req, "X-User");
    if (!u) {
        snprintf(msg, cap, "Sign in first");
        return 401;
    }
    if (!strcmp(u, "mallory")) {
        snprintf(msg, cap, "%s may not do that", u);
        return 403;
    }
    if (!strcmp(u, "slow")) {
        httpd_reply_header(req, "Retry-After", "7");
        return 429;   /* no message: the default */
    }
    httpd_req_set_auth(req, strdup(u), free_str);
    return 0;
}

static void test_authorize(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.authorize = authorize;
    start(&cfg);
    resp_t r;
    char v[64];
    req1("GET", "/whoami", NULL, NULL, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 401, "Sign in first");
    resp_cleanup(&r);
    const char *mallory[] = { "X-User: mallory", NULL };
    req1("GET", "/whoami", NULL, mallory, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 403, "mallory may not do that");
    resp_cleanup(&r);
    const char *slow[] = { "X-User: slow", NULL };
    req1("GET", "/whoami", NULL, slow, &r);
    assert_int_equal(r.status, 429);
    assert_string_equal(resp_header(&r, "Retry-After", v, sizeof v), "7");
    resp_cleanup(&r);
    const char *alice[] = { "X-User: alice", NULL };
    req1("GET", "/whoami", NULL, alice, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "\"who\":\"alice\""));
    assert_non_null(strstr(r.body.data, "\"peer\":\"127.0.0.1\""));
    resp_cleanup(&r);
    /* public routes are not asked about */
    int before = atomic_load(&g_auth_calls);
    req1("GET", "/public", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(atomic_load(&g_auth_calls), before);
    resp_cleanup(&r);
    /* a refused POST keeps the connection, its body drained */
    CURL *c = new_handle();
    do_req(c, "POST", "/echo", "{\"a\":1}", -1, NULL, &r);
    assert_int_equal(r.status, 401);
    resp_cleanup(&r);
    const char *alice_json[] = { "X-User: alice", NULL };
    do_req(c, "POST", "/echo", "{\"a\":1}", -1, alice_json, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.connects, 0);
    resp_cleanup(&r);
    curl_easy_cleanup(c);
    /* an authorized request still has its body's type checked */
    const char *alice_text[] = { "X-User: alice", "Content-Type: text/plain", NULL };
    req1("POST", "/echo", "{\"a\":1}", alice_text, &r);
    assert_int_equal(r.status, 415);
    resp_cleanup(&r);
    stop();
}

static void test_cors(void **state)
{
    (void)state;
    char v[256];
    resp_t r;
    /* No CORS configured: no headers. */
    httpd_config_t cfg = test_config();
    start(&cfg);
    const char *origin[] = { "Origin: https://a.example", NULL };
    req1("GET", "/hello", NULL, origin, &r);
    assert_int_equal(r.status, 200);
    assert_null(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    resp_cleanup(&r);
    stop();

    cfg.cors_origins = "https://a.example, https://b.example";
    cfg.api_key = "k";
    start(&cfg);
    const char *pre[] = { "Origin: https://b.example", "Access-Control-Request-Method: POST",
                          "Access-Control-Request-Headers: authorization, content-type", NULL };
    req1("OPTIONS", "/echo", NULL, pre, &r);
    assert_int_equal(r.status, 204);
    assert_string_equal(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof v),
                        "https://b.example");
    assert_non_null(strstr(resp_header(&r, "Access-Control-Allow-Methods", v, sizeof v), "POST"));
    assert_string_equal(resp_header(&r, "Access-Control-Allow-Headers", v, sizeof v),
                        "authorization, content-type");
    assert_non_null(resp_header(&r, "Access-Control-Max-Age", v, sizeof v));
    assert_string_equal(resp_header(&r, "Vary", v, sizeof v), "Origin");
    resp_cleanup(&r);
    /* Origin not in the list. */
    const char *bad[] = { "Origin: https://evil.example", "Access-Control-Request-Method: POST",
                          NULL };
    req1("OPTIONS", "/echo", NULL, bad, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 403, "CORS");
    assert_null(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    resp_cleanup(&r);
    /* Unknown path. */
    req1("OPTIONS", "/nope", NULL, pre, &r);
    assert_int_equal(r.status, 404);
    resp_cleanup(&r);
    /* Actual requests carry the header, errors included. */
    const char *get[] = { "Origin: https://a.example", "Authorization: Bearer k", NULL };
    req1("GET", "/hello", NULL, get, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof v),
                        "https://a.example");
    resp_cleanup(&r);
    req1("GET", "/hello", NULL, origin, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof v),
                        "https://a.example");
    resp_cleanup(&r);
    stop();

    cfg.cors_origins = "*";
    start(&cfg);
    req1("OPTIONS", "/items/1", NULL, pre, &r);
    assert_int_equal(r.status, 204);
    assert_string_equal(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof v), "*");
    assert_string_equal(resp_header(&r, "Access-Control-Allow-Methods", v, sizeof v),
                        "GET, HEAD, DELETE, OPTIONS");
    resp_cleanup(&r);
    stop();
}

/* ---- tests: streams --------------------------------------------------- */

static void test_sse_1000(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.stream_queue_max = 4096; /* small: the producer meets EFULL and retries */
    start(&cfg);
    resp_t r;
    req1("GET", "/sse?n=1000", NULL, NULL, &r);
    pthread_join(T.producer, NULL);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    char v[128];
    assert_string_equal(resp_header(&r, "Content-Type", v, sizeof v), "text/event-stream");
    assert_string_equal(resp_header(&r, "Cache-Control", v, sizeof v), "no-cache");
    /* Parse the events: exactly 0..999 in order, then [DONE]. */
    const char *p = r.body.data;
    int next = 0;
    for (;;) {
        const char *e = strstr(p, "\n\n");
        assert_non_null(e);
        int i;
        if (strncmp(p, "data: [DONE]", 12) == 0) {
            assert_string_equal(e + 2, "");
            break;
        }
        assert_int_equal(sscanf(p, "data: {\"i\":%d}", &i), 1);
        assert_int_equal(i, next);
        next++;
        p = e + 2;
    }
    assert_int_equal(next, 1000);
    resp_cleanup(&r);
    settle();
    httpd_stats_t st;
    httpd_stats(g_srv, &st);
    assert_int_equal(st.streams_total, 1);
    assert_int_equal(st.streams_open, 0);
    assert_int_equal(st.stream_disconnects, 0);
    stop();
}

static void test_sse_format_and_heartbeat(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.heartbeat_ms = 100;
    start(&cfg);
    int slot;
    int fd = hold_open(&slot);
    httpd_stream_t *s = T.held[slot];
    /* Idle: comments arrive about every 100 ms. */
    buf_t b;
    buf_init(&b, 1 << 20);
    double t0 = now_s();
    assert_true(raw_read_until(fd, &b, ":\n\n", 2000));
    double first = now_s() - t0;
    assert_true(first < 1.0);
    buf_reset(&b);
    usleep(350 * 1000);
    assert_true(raw_read_until(fd, &b, ":\n\n", 1000));
    int beats = 0;
    for (const char *p = b.data; (p = strstr(p, ":\n\n")); p += 3)
        beats++;
    assert_true(beats >= 2);
    /* Multi-line text and named events. */
    buf_reset(&b);
    assert_int_equal(httpd_stream_sse_event(s, "progress", "line1\nline2\r\nline3"), HTTPD_OK);
    assert_true(raw_read_until(fd, &b, "line3\n\n", 2000));
    assert_non_null(strstr(b.data, "event: progress\ndata: line1\ndata: line2\ndata: line3\n\n"));
    buf_reset(&b);
    assert_int_equal(httpd_stream_sse_json(s, json_pack("{s:i}", "n", 5)), HTTPD_OK);
    assert_true(raw_read_until(fd, &b, "data: {\"n\":5}\n\n", 2000));
    assert_int_equal(httpd_stream_sse_event(s, "bad\nname", "x"), HTTPD_EINVAL);
    /* Producer ends: the chunked body ends, on_close does not fire. */
    buf_reset(&b);
    httpd_stream_close(s);
    assert_true(raw_read_until(fd, &b, "0\r\n\r\n", 2000));
    close(fd);
    buf_cleanup(&b);
    usleep(50 * 1000);
    pthread_mutex_lock(&T.lock);
    assert_int_equal(T.closed[slot], 0);
    pthread_mutex_unlock(&T.lock);
    stop();
}

/* A client that closes its socket is seen while the stream is idle, even
 * with no heartbeat, and writes then fail at once. */
static void test_disconnect(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.heartbeat_ms = 0;
    start(&cfg);
    int slot;
    int fd = hold_open(&slot);
    httpd_stream_t *s = T.held[slot];
    assert_false(httpd_stream_closed(s));
    double t0 = now_s();
    close(fd);
    double waited = wait_closed(slot, t0, 3.0);
    assert_true(waited >= 0);
    assert_true(waited < 0.5);
    assert_true(httpd_stream_closed(s));
    /* Writes now fail and cost nothing. */
    double w0 = now_s();
    for (int i = 0; i < 100000; i++)
        assert_int_equal(httpd_stream_sse(s, "{\"x\":1}"), HTTPD_ECLOSED);
    assert_true(now_s() - w0 < 0.5);
    assert_int_equal(httpd_stream_pending(s), 0);
    pthread_mutex_lock(&T.lock);
    assert_int_equal(T.closed[slot], 1);
    pthread_mutex_unlock(&T.lock);
    httpd_stream_close(s);
    httpd_stats_t st;
    httpd_stats(g_srv, &st);
    assert_int_equal(st.stream_disconnects, 1);
    assert_int_equal(st.streams_open, 0);
    stop();
}

/* Disconnect while the producer is busy writing (MHD sees the send fail),
 * with curl as the client aborting after the first event. */
static size_t abort_after_first(char *p, size_t sz, size_t n, void *ud)
{
    buf_t *b = ud;
    buf_append(b, p, sz * n);
    return strstr(b->data, "\n\n") ? 0 : sz * n;
}

static void *busy_producer(void *arg)
{
    httpd_stream_t *s = arg;
    char ev[256];
    memset(ev, 'a', sizeof ev - 1);
    ev[sizeof ev - 1] = '\0';
    int rc;
    double end = now_s() + 10;
    while ((rc = httpd_stream_sse(s, ev)) != HTTPD_ECLOSED && now_s() < end)
        if (rc == HTTPD_EFULL)
            usleep(1000);
    return (void *)(intptr_t)rc;
}

static void test_disconnect_busy(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.heartbeat_ms = 200;
    start(&cfg);
    CURL *c = new_handle();
    char url[128];
    snprintf(url, sizeof url, "%s/hold", g_base);
    buf_t b;
    buf_init(&b, 1 << 20);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, abort_after_first);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    assert_int_equal(curl_easy_perform(c), CURLE_WRITE_ERROR);
    double t0 = now_s();
    curl_easy_cleanup(c); /* closes the socket */
    pthread_mutex_lock(&T.lock);
    httpd_stream_t *s = T.held[0];
    pthread_mutex_unlock(&T.lock);
    pthread_t th;
    pthread_create(&th, NULL, busy_producer, s);
    double waited = wait_closed(0, t0, 5.0);
    void *rc;
    pthread_join(th, &rc);
    assert_true(waited >= 0);
    assert_true(waited < 1.0); /* within about a heartbeat interval */
    assert_int_equal((int)(intptr_t)rc, HTTPD_ECLOSED);
    assert_true(httpd_stream_closed(s));
    httpd_stream_close(s);
    buf_cleanup(&b);
    stop();
}

static void test_stream_full(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.stream_queue_max = 1000;
    start(&cfg);
    resp_t r;
    req1("GET", "/full", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    pthread_mutex_lock(&T.lock);
    assert_int_equal(T.efull_rc, HTTPD_EFULL);
    assert_int_equal(T.efull_written, 1000);
    pthread_mutex_unlock(&T.lock);
    assert_int_equal(r.body.len, 1000);
    resp_cleanup(&r);
    stop();
}

/* httpd_close() with three open streams, one idle and two whose producers
 * keep writing, returns promptly; producers then see HTTPD_ECLOSED and
 * close their streams after the server is gone. */
static void test_close_with_streams(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.heartbeat_ms = 100;
    start(&cfg);
    int fds[3], slots[3];
    for (int i = 0; i < 3; i++)
        fds[i] = hold_open(&slots[i]);
    httpd_stream_t *s[3];
    pthread_mutex_lock(&T.lock);
    for (int i = 0; i < 3; i++)
        s[i] = T.held[slots[i]];
    pthread_mutex_unlock(&T.lock);
    /* Two busy producers; the clients never read, so queues fill up. */
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, busy_producer, s[i + 1]);
    usleep(100 * 1000);
    /* A request arriving on a kept-alive connection during close is fine
     * too: use a plain client in flight. */
    double t0 = now_s();
    httpd_close(g_srv);
    g_srv = NULL;
    double took = now_s() - t0;
    assert_true(took < 2.0);
    for (int i = 0; i < 2; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        assert_int_equal((int)(intptr_t)rc, HTTPD_ECLOSED);
    }
    for (int i = 0; i < 3; i++) {
        assert_true(httpd_stream_closed(s[i]));
        assert_int_equal(httpd_stream_write(s[i], "x", 1), HTTPD_ECLOSED);
        pthread_mutex_lock(&T.lock);
        assert_int_equal(T.closed[slots[i]], 1);
        pthread_mutex_unlock(&T.lock);
        httpd_stream_close(s[i]);
        close(fds[i]);
    }
}

/* A handler that waits notices the client leaving, and the server
 * closing. */
static void test_req_gone(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    start(&cfg);
    int fd = raw_connect();
    raw_send(fd, "GET /wait HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    usleep(100 * 1000);
    pthread_mutex_lock(&T.lock);
    assert_int_equal(T.gone_seen, 0);
    pthread_mutex_unlock(&T.lock);
    double t0 = now_s();
    close(fd);
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&T.lock);
        int seen = T.gone_seen;
        pthread_mutex_unlock(&T.lock);
        if (seen)
            break;
        usleep(5000);
    }
    pthread_mutex_lock(&T.lock);
    assert_int_equal(T.gone_seen, 1);
    assert_true(T.gone_at - t0 < 0.5);
    pthread_mutex_unlock(&T.lock);
    settle();
    /* httpd_close() while the handler waits: it sees the server closing,
     * so close returns promptly. */
    fd = raw_connect();
    raw_send(fd, "GET /wait HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    usleep(100 * 1000);
    t0 = now_s();
    stop();
    assert_true(now_s() - t0 < 2.0);
    pthread_mutex_lock(&T.lock);
    assert_int_equal(T.gone_seen, 2);
    pthread_mutex_unlock(&T.lock);
    close(fd);
}

/* The access log line: method, path, status, bytes, milliseconds. */
static void test_access_log(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "/tmp/kvchat-test-httpd-log-%d.txt", (int)getpid());
    unlink(path);
    assert_int_equal(log_open(path), 0);
    log_set_level(LOG_INFO);
    httpd_config_t cfg = httpd_config_default();
    start(&cfg);
    resp_t r;
    req1("GET", "/hello?x=1", NULL, NULL, &r);
    resp_cleanup(&r);
    req1("GET", "/nope", NULL, NULL, &r);
    resp_cleanup(&r);
    req1("GET", "/slow", NULL, NULL, &r); /* HTTPD_ROUTE_QUIET: debug level */
    resp_cleanup(&r);
    req1("GET", "/sse?n=2", NULL, NULL, &r);
    resp_cleanup(&r);
    pthread_join(T.producer, NULL);
    int slot;
    int fd = hold_open(&slot);
    close(fd);
    assert_true(wait_closed(slot, now_s(), 3.0) >= 0);
    httpd_stream_close(T.held[slot]);
    settle();
    stop();
    log_close();
    log_set_level(LOG_WARN);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    unlink(path);
    if (!strstr(text, "INFO  kvchat: GET /hello 200 17B "))
        fail_msg("no access line for /hello in:\n%s", text);
    assert_non_null(strstr(text, "GET /nope 404 "));
    assert_null(strstr(text, "GET /slow"));
    assert_non_null(strstr(text, "GET /sse 200 "));
    assert_non_null(strstr(text, " stream"));
    assert_non_null(strstr(text, "GET /hold 200 "));
    assert_non_null(strstr(text, "stream (client gone)"));
    assert_non_null(strstr(text, "ms"));
}

static void test_ipv6(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.host = "::1";
    reset_state();
    httpd_t *s;
    int rc = httpd_open(&cfg, routes, N_ROUTES, NULL, &s);
    if (rc == HTTPD_EBIND)
        skip(); /* no IPv6 here */
    assert_int_equal(rc, HTTPD_OK);
    g_srv = s;
    snprintf(g_base, sizeof g_base, "http://[::1]:%u", httpd_port(s));
    resp_t r;
    req1("GET", "/hello", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_cleanup(&r);
    stop();
}

/* ---- tests: uploads --------------------------------------------------- */

static uint64_t fnv(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static unsigned char *random_bytes(size_t n)
{
    unsigned char *p = malloc(n);
    assert_non_null(p);
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)x;
    }
    return p;
}

typedef struct {
    const unsigned char *data;
    size_t len, off;
} reader_t;

static size_t read_cb(char *out, size_t sz, size_t n, void *ud)
{
    reader_t *r = ud;
    size_t k = sz * n;
    if (k > r->len - r->off)
        k = r->len - r->off;
    memcpy(out, r->data + r->off, k);
    r->off += k;
    return k;
}

/* Multipart POST /upload with a text field and a file of n bytes; chunked
 * sends the file from a callback of unknown size (no Content-Length). */
static void upload(const unsigned char *data, size_t n, const char *filename, bool chunked,
                   resp_t *r)
{
    CURL *c = new_handle();
    char url[128];
    snprintf(url, sizeof url, "%s/upload", g_base);
    resp_init(r);
    curl_mime *mime = curl_mime_init(c);
    curl_mimepart *part = curl_mime_addpart(mime);
    curl_mime_name(part, "note");
    curl_mime_data(part, "hello form", CURL_ZERO_TERMINATED);
    part = curl_mime_addpart(mime);
    curl_mime_name(part, "file");
    curl_mime_filename(part, filename);
    curl_mime_type(part, "application/pdf");
    reader_t rd = { data, n, 0 };
    if (chunked)
        curl_mime_data_cb(part, -1, read_cb, NULL, NULL, &rd);
    else
        curl_mime_data(part, (const char *)data, n);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->hdrs);
    double t0 = now_s();
    r->rc = curl_easy_perform(c);
    r->secs = now_s() - t0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
    curl_mime_free(mime);
}

/* The request's ctx is freed when MHD reports the request complete, which
 * may come just after the client has the answer. */
static int wait_freed(int want)
{
    for (int i = 0; i < 200 && atomic_load(&g_upload_ctx_freed) < want; i++)
        usleep(5000);
    return atomic_load(&g_upload_ctx_freed);
}

static void test_upload(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.max_upload = 16 * 1024 * 1024;
    cfg.max_body = 1024; /* uploads have their own limit */
    start(&cfg);
    size_t n = 6 * 1024 * 1024 + 12345;
    unsigned char *data = random_bytes(n);
    char want[32];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)fnv(data, n));
    for (int chunked = 0; chunked <= 1; chunked++) {
        settle();
        atomic_store(&g_upload_ctx_freed, 0);
        resp_t r;
        upload(data, n, "report \xc3\xa9t\xc3\xa9.pdf", chunked, &r);
        assert_int_equal(r.rc, CURLE_OK);
        assert_int_equal(r.status, 200);
        json_t *j = resp_json(&r);
        assert_int_equal(json_integer_value(json_object_get(j, "bytes")), (json_int_t)n);
        assert_string_equal(json_string_value(json_object_get(j, "hash")), want);
        assert_string_equal(json_string_value(json_object_get(j, "filename")),
                            "report \xc3\xa9t\xc3\xa9.pdf");
        assert_string_equal(json_string_value(json_object_get(j, "field")), "file");
        assert_string_equal(json_string_value(json_object_get(j, "ctype")), "application/pdf");
        assert_string_equal(json_string_value(json_object_get(j, "note")), "hello form");
        assert_int_equal(json_integer_value(json_object_get(j, "parts")), 2);
        assert_int_equal(json_integer_value(json_object_get(j, "ended")), 2);
        json_decref(j);
        resp_cleanup(&r);
        assert_int_equal(wait_freed(1), 1);
    }
    free(data);
    stop();
}

static void test_upload_limit(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.max_upload = 1024 * 1024;
    start(&cfg);
    size_t n = 8 * 1024 * 1024;
    unsigned char *data = random_bytes(n);
    /* Declared too large: 413 at once, nothing read, no callback. */
    atomic_store(&g_upload_bytes_seen, 0);
    resp_t r;
    upload(data, n, "big.bin", false, &r);
    assert_int_equal(r.status, 413);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 413, "limit 1048576 bytes");
    resp_cleanup(&r);
    assert_int_equal(atomic_load(&g_upload_bytes_seen), 0);
    httpd_stats_t st;
    httpd_stats(g_srv, &st);
    assert_true(st.bytes_in < 256 * 1024);

    /* Chunked, a little over: callbacks stop at the limit, 413. */
    settle();
    atomic_store(&g_upload_bytes_seen, 0);
    atomic_store(&g_upload_ctx_freed, 0);
    upload(data, 1024 * 1024 + 100 * 1024, "big.bin", true, &r);
    assert_int_equal(r.status, 413);
    resp_cleanup(&r);
    assert_true(atomic_load(&g_upload_bytes_seen) <= 1024 * 1024);
    assert_int_equal(wait_freed(1), 1);

    /* Chunked, far over: the server stops reading (413 or a dropped
     * connection); it never reads the 8 MB. */
    httpd_stats(g_srv, &st);
    uint64_t before = st.bytes_in;
    upload(data, n, "big.bin", true, &r);
    assert_true(r.status == 413 || r.rc != CURLE_OK);
    resp_cleanup(&r);
    httpd_stats(g_srv, &st);
    assert_true(st.bytes_in - before <= 1024 * 1024 + 1024 * 1024 + 128 * 1024);
    free(data);
    stop();
}

static void test_upload_errors(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    start(&cfg);
    resp_t r;
    /* Not multipart. */
    const char *json_ct[] = { "Content-Type: application/json", NULL };
    req1("POST", "/upload", "{}", json_ct, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 415, "multipart");
    resp_cleanup(&r);
    /* Multipart without a boundary. */
    const char *nob[] = { "Content-Type: multipart/form-data", NULL };
    req1("POST", "/upload", "xx", nob, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 400, "boundary");
    resp_cleanup(&r);
    /* Garbage body. */
    const char *ct[] = { "Content-Type: multipart/form-data; boundary=XyZ", NULL };
    req1("POST", "/upload", "this is not multipart at all\r\n", ct, &r);
    assert_int_equal(r.status, 400);
    resp_cleanup(&r);
    /* Truncated: the closing boundary never comes. */
    const char *trunc = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
                        "filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello wor";
    req1("POST", "/upload", trunc, ct, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 400, "Malformed multipart");
    resp_cleanup(&r);
    /* A well-formed hand-written body works. */
    const char *good = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
                       "filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello world"
                       "\r\n--XyZ--\r\n";
    req1("POST", "/upload", good, ct, &r);
    assert_int_equal(r.status, 200);
    json_t *j = resp_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 11);
    assert_string_equal(json_string_value(json_object_get(j, "filename")), "a.txt");
    json_decref(j);
    resp_cleanup(&r);
    /* An urlencoded form goes through the same callbacks. */
    const char *form_ct[] = { "Content-Type: application/x-www-form-urlencoded", NULL };
    req1("POST", "/upload", "note=hi+there%21&x=1", form_ct, &r);
    assert_int_equal(r.status, 200);
    j = resp_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "parts")), 2);
    assert_string_equal(json_string_value(json_object_get(j, "note")), "hi there!");
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 0);
    json_decref(j);
    resp_cleanup(&r);
    /* The callback's own refusal is what the client gets. */
    unsigned char *data = random_bytes(300000);
    settle();
    atomic_store(&g_upload_ctx_freed, 0);
    upload(data, 300000, "setup.exe", false, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 422, "File type not allowed: setup.exe");
    resp_cleanup(&r);
    assert_int_equal(wait_freed(1), 1);
    free(data);
    stop();
}

/* A client hangs up in the middle of an urlencoded form: ending the
 * request flushes the last, unfinished value through the post processor,
 * which must not reach the route's callbacks after their ctx is freed. */
static void test_upload_hangup(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    start(&cfg);
    const char *bodies[] = { "a=1&b=", "note=hi&x", "a=1&b=%2" };
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        settle();
        atomic_store(&g_upload_ctx_freed, 0);
        atomic_store(&g_upload_cb_after_free, 0);
        int fd = raw_connect();
        char head[256];
        snprintf(head, sizeof head,
                 "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Content-Type: application/x-www-form-urlencoded\r\n"
                 "Content-Length: 20\r\n\r\n%s",
                 bodies[i]);
        raw_send(fd, head);
        usleep(100 * 1000);
        close(fd);
        assert_int_equal(wait_freed(1), 1);
        usleep(50 * 1000);
        assert_int_equal(atomic_load(&g_upload_cb_after_free), 0);
    }
    /* the server still answers */
    resp_t r;
    req1("GET", "/hello", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_cleanup(&r);
    stop();
}

/* ---- tests: concurrency and misc -------------------------------------- */

static void test_concurrent_50(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    start(&cfg);
    enum { N = 50 };
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)N);
    CURL *h[N];
    buf_t bodies[N];
    char url[128];
    snprintf(url, sizeof url, "%s/slow", g_base);
    for (int i = 0; i < N; i++) {
        buf_init(&bodies[i], 4096);
        h[i] = new_handle();
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &bodies[i]);
        curl_multi_add_handle(m, h[i]);
    }
    double t0 = now_s();
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    double took = now_s() - t0;
    int ok = 0;
    for (int i = 0; i < N; i++) {
        long st = 0;
        curl_easy_getinfo(h[i], CURLINFO_RESPONSE_CODE, &st);
        if (st == 200 && bodies[i].data && strcmp(bodies[i].data, "{\"ok\":true}") == 0)
            ok++;
        curl_multi_remove_handle(m, h[i]);
        curl_easy_cleanup(h[i]);
        buf_cleanup(&bodies[i]);
    }
    curl_multi_cleanup(m);
    assert_int_equal(ok, N);
    /* Each takes 200 ms; in series that would be 10 s. */
    assert_true(took < 4.0);
    settle();
    httpd_stats_t st;
    httpd_stats(g_srv, &st);
    assert_int_equal(st.status[2], N);
    stop();
}

static void test_static_and_files(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    start(&cfg);
    resp_t r;
    char v[128];
    req1("GET", "/static/style.css", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, asset);
    assert_string_equal(resp_header(&r, "ETag", v, sizeof v), "\"v1\"");
    assert_string_equal(resp_header(&r, "Cache-Control", v, sizeof v), "public, max-age=3600");
    assert_string_equal(resp_header(&r, "Content-Type", v, sizeof v), "text/css");
    resp_cleanup(&r);
    const char *inm[] = { "If-None-Match: \"v1\"", NULL };
    req1("GET", "/static/style.css", NULL, inm, &r);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body.len, 0);
    resp_cleanup(&r);

    snprintf(g_file_path, sizeof g_file_path, "/tmp/kvchat-test-httpd-%d.txt", (int)getpid());
    FILE *f = fopen(g_file_path, "w");
    assert_non_null(f);
    for (int i = 0; i < 10000; i++)
        fprintf(f, "line %d\n", i);
    fclose(f);
    req1("GET", "/file", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 98890);
    assert_memory_equal(r.body.data, "line 0\nline 1\n", 14);
    resp_cleanup(&r);
    unlink(g_file_path);
    req1("GET", "/file", NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    resp_cleanup(&r);
    req1("GET", "/missing-file", NULL, NULL, &r);
    assert_json_error(&r, HTTPD_ERRORS_OPENAI, 404, "file not found");
    resp_cleanup(&r);

    /* The first answer wins. */
    req1("GET", "/twice", NULL, NULL, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body.data, "first");
    resp_cleanup(&r);
    stop();
}

static void dummy(httpd_req_t *req, void *user)
{
    (void)req;
    (void)user;
}

/* ---- who may ask: Host, Origin, Content-Type, key ------------------------- */

/* Send one raw request (bytes, len) on a new connection and read the
 * answer until the server closes or 5 s pass. Returns the status (0 if
 * none); the answer is left in *b (caller cleans up). */
static int raw_exchange(const char *req, size_t len, buf_t *b)
{
    int fd = raw_connect();
    assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    buf_init(b, 1 << 20);
    raw_read_until(fd, b, "\x01never\x01", 5000);
    close(fd);
    int status = 0;
    if (b->data)
        sscanf(b->data, "HTTP/1.%*d %d", &status);
    return status;
}

static int raw_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int raw_status(const char *fmt, ...)
{
    char req[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(req, sizeof req, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof req);
    buf_t b;
    int st = raw_exchange(req, (size_t)n, &b);
    buf_cleanup(&b);
    return st;
}

#define GET_HOST_REQ "GET /hello HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
#define POST_ACT_REQ "POST /act HTTP/1.1\r\nHost: %s\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n"
#define GET_KEY_REQ \
    "GET /hello HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n"

static void test_host_check(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    start(&cfg);
    unsigned port = httpd_port(g_srv);
    char h[128];
    snprintf(h, sizeof h, "127.0.0.1:%u", port);
    assert_int_equal(raw_status(GET_HOST_REQ, h), 200);
    snprintf(h, sizeof h, "localhost:%u", port);
    assert_int_equal(raw_status(GET_HOST_REQ, h), 200);
    assert_int_equal(raw_status(GET_HOST_REQ, "LOCALHOST"), 200);
    assert_int_equal(raw_status(GET_HOST_REQ, "app.localhost:8000"), 200);
    assert_int_equal(raw_status(GET_HOST_REQ, "[::1]:8000"), 200);
    assert_int_equal(raw_status(GET_HOST_REQ, "10.1.2.3"), 200);
    /* a name rebound to 127.0.0.1 by its owner's DNS */
    buf_t b;
    const char *rebind = "GET /hello HTTP/1.1\r\nHost: evil.example:8000\r\nConnection: close\r\n\r\n";
    assert_int_equal(raw_exchange(rebind, strlen(rebind), &b), 403);
    assert_non_null(strstr(b.data, "evil.example"));
    assert_non_null(strstr(b.data, "allowed hosts"));
    buf_cleanup(&b);
    assert_int_equal(raw_status(GET_HOST_REQ, "localhost.evil.example"), 403);
    assert_int_equal(raw_status(GET_HOST_REQ, "127.0.0.1.nip.io"), 403);
    assert_int_equal(raw_status(GET_HOST_REQ, "localhost:80x"), 403);
    assert_int_equal(raw_status(GET_HOST_REQ, "[::1"), 403);
    assert_int_equal(raw_status(GET_HOST_REQ, "[evil]:80"), 403);
    /* public routes too: a rebound page must not read the UI's answers */
    assert_int_equal(raw_status("GET /public HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
                     403);
    stop();

    cfg.allowed_hosts = "kv.example, .corp.example";
    start(&cfg);
    assert_int_equal(raw_status(GET_HOST_REQ, "kv.example"), 200);
    assert_int_equal(raw_status(GET_HOST_REQ, "KV.example:443"), 200);
    assert_int_equal(raw_status(GET_HOST_REQ, "corp.example"), 200);
    assert_int_equal(raw_status(GET_HOST_REQ, "a.b.corp.example"), 200);
    assert_int_equal(raw_status(GET_HOST_REQ, "xcorp.example"), 403);
    assert_int_equal(raw_status(GET_HOST_REQ, "evil.example"), 403);
    stop();

    cfg.allowed_hosts = "*";
    start(&cfg);
    assert_int_equal(raw_status(GET_HOST_REQ, "evil.example"), 200);
    stop();
    assert_true(httpd_host_is_loopback("127.0.0.1"));
    assert_true(httpd_host_is_loopback("127.1.2.3"));
    assert_true(httpd_host_is_loopback("::1"));
    assert_true(httpd_host_is_loopback("localhost"));
    assert_false(httpd_host_is_loopback("0.0.0.0"));
    assert_false(httpd_host_is_loopback("::"));
    assert_false(httpd_host_is_loopback("192.168.1.2"));
}

static void test_cross_site(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.cors_origins = "https://ok.example";
    start(&cfg);
    unsigned port = httpd_port(g_srv);
    char host[64];
    snprintf(host, sizeof host, "127.0.0.1:%u", port);
    char same[128], other_port[128];
    snprintf(same, sizeof same, "Origin: http://%s\r\n", host);
    snprintf(other_port, sizeof other_port, "Origin: http://127.0.0.1:%u\r\n", port + 1);
    /* clients that are not browsers, and the server's own pages */
    assert_int_equal(raw_status(POST_ACT_REQ, host, ""), 200);
    assert_int_equal(raw_status(POST_ACT_REQ, host, same), 200);
    assert_int_equal(raw_status(POST_ACT_REQ, host, "Sec-Fetch-Site: same-origin\r\n"), 200);
    assert_int_equal(raw_status(POST_ACT_REQ, host, "Sec-Fetch-Site: none\r\n"), 200);
    /* pages of other origins */
    buf_t b;
    char req[512];
    int n = snprintf(req, sizeof req, POST_ACT_REQ, host, "Origin: http://evil.example\r\n");
    assert_int_equal(raw_exchange(req, (size_t)n, &b), 403);
    assert_non_null(strstr(b.data, "Cross-site request refused"));
    buf_cleanup(&b);
    assert_int_equal(raw_status(POST_ACT_REQ, host, other_port), 403);
    assert_int_equal(raw_status(POST_ACT_REQ, host, "Origin: null\r\n"), 403);
    assert_int_equal(raw_status(POST_ACT_REQ, host, "Sec-Fetch-Site: cross-site\r\n"), 403);
    assert_int_equal(raw_status(POST_ACT_REQ, host, "Sec-Fetch-Site: same-site\r\n"), 403);
    /* an allowed origin, and a proxy that says which host the browser used */
    assert_int_equal(raw_status(POST_ACT_REQ, host, "Origin: https://ok.example\r\n"), 200);
    assert_int_equal(raw_status(POST_ACT_REQ, "localhost",
                                "Origin: https://kv.example\r\nX-Forwarded-Host: kv.example\r\n"), 200);
    /* default ports may be implied on either side */
    assert_int_equal(raw_status(POST_ACT_REQ, "localhost:80", "Origin: http://localhost\r\n"), 200);
    assert_int_equal(raw_status(POST_ACT_REQ, "localhost", "Origin: http://localhost:80\r\n"), 200);
    assert_int_equal(raw_status(POST_ACT_REQ, "localhost", "Origin: https://localhost:80\r\n"), 403);
    /* reading is not changing: GET from anywhere is answered (the browser
     * keeps the answer from the page unless CORS allows it) */
    assert_int_equal(raw_status("GET /hello HTTP/1.1\r\nHost: %s\r\nOrigin: http://evil.example\r\n"
                                "Connection: close\r\n\r\n", host), 200);
    stop();

    cfg.same_origin_only = false;
    start(&cfg);
    snprintf(host, sizeof host, "127.0.0.1:%u", httpd_port(g_srv));
    assert_int_equal(raw_status(POST_ACT_REQ, host, "Origin: http://evil.example\r\n"), 200);
    stop();
}

static void test_json_content_type(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    start(&cfg);
    CURL *c = new_handle();
    resp_t r;
    /* what a cross-site form or a fetch without preflight can send */
    const char *plain[] = { "Content-Type: text/plain", NULL };
    do_req(c, "POST", "/echo", "{\"a\":1}", -1, plain, &r);
    assert_int_equal(r.status, 415);
    assert_non_null(strstr(r.body.data, "application/json"));
    resp_cleanup(&r);
    const char *form[] = { "Content-Type: application/x-www-form-urlencoded", NULL };
    do_req(c, "POST", "/echo", "{\"a\":1}", -1, form, &r);
    assert_int_equal(r.status, 415);
    resp_cleanup(&r);
    const char *none[] = { "Content-Type:", NULL };   /* curl: remove the header */
    do_req(c, "POST", "/echo", "{\"a\":1}", -1, none, &r);
    assert_int_equal(r.status, 415);
    resp_cleanup(&r);
    const char *charset[] = { "Content-Type: application/json; charset=utf-8", NULL };
    do_req(c, "POST", "/echo", "{\"a\":1}", -1, charset, &r);
    assert_int_equal(r.status, 200);
    resp_cleanup(&r);
    const char *plus[] = { "Content-Type: application/merge-patch+json", NULL };
    do_req(c, "POST", "/echo", "{\"a\":1}", -1, plus, &r);
    assert_int_equal(r.status, 200);
    resp_cleanup(&r);
    /* no body, no type needed */
    do_req(c, "POST", "/act", "", 0, none, &r);
    assert_int_equal(r.status, 200);
    resp_cleanup(&r);
    curl_easy_cleanup(c);
    stop();
}

static void test_api_key_exact(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.api_key = "SECRET";
    start(&cfg);
    char host[64];
    snprintf(host, sizeof host, "127.0.0.1:%u", httpd_port(g_srv));
    assert_int_equal(raw_status(GET_KEY_REQ, host, "SECRET"), 200);
    assert_int_equal(raw_status(GET_KEY_REQ, host, "SECRETX"), 401);
    assert_int_equal(raw_status(GET_KEY_REQ, host, "SECRE"), 401);
    /* a NUL byte in the header must not cut it to the key */
    static const char with_nul[] = "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   "Authorization: Bearer SECRET\0x\r\nConnection: close\r\n\r\n";
    buf_t b;
    int st = raw_exchange(with_nul, sizeof with_nul - 1, &b);
    buf_cleanup(&b);
    assert_int_equal(st, 401);
    stop();
}

/* ---- connections: idle, slow, many ------------------------------------ */

/* Is the server's end of fd closed (EOF or reset) within ms? */
static bool closed_within(int fd, int ms)
{
    double end = now_s() + ms / 1000.0;
    for (;;) {
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0)
            return false;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, left) <= 0)
            continue;
        char tmp[256];
        ssize_t k = recv(fd, tmp, sizeof tmp, 0);
        if (k <= 0)
            return true;
    }
}

static void test_idle_connections(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.max_connections = 40;
    cfg.max_per_ip = 8;
    cfg.timeout_s = 2;
    start(&cfg);
    /* One address opens more connections than it may and sends nothing
     * (or half a request line) on them. */
    enum { N = 48 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect_from("127.0.0.2");
        if (i % 2)
            raw_send(fds[i], "GET /hel");
    }
    /* Everyone else is served meanwhile. */
    CURL *c = new_handle();
    for (int i = 0; i < 5; i++) {
        resp_t r;
        do_req(c, "GET", "/hello", NULL, 0, NULL, &r);
        assert_int_equal(r.rc, CURLE_OK);
        assert_int_equal(r.status, 200);
        resp_cleanup(&r);
    }
    curl_easy_cleanup(c);
    /* Beyond the per-address limit, connections are closed at once. */
    int refused = 0;
    for (int i = 0; i < N; i++)
        refused += closed_within(fds[i], 50);
    assert_true(refused >= N - 8);
    /* The idle ones are closed after the timeout. */
    int closed = 0;
    for (int i = 0; i < N; i++) {
        closed += closed_within(fds[i], 6000);
        close(fds[i]);
    }
    assert_int_equal(closed, N);
    settle();
    stop();
}

static void test_long_handler_and_stream(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.timeout_s = 1;
    start(&cfg);
    CURL *c = new_handle();
    resp_t r;
    /* a handler that takes longer than the idle timeout still answers */
    do_req(c, "GET", "/sleep?ms=2500", NULL, 0, NULL, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    resp_cleanup(&r);
    /* and the same connection is then kept alive for the next request */
    do_req(c, "GET", "/hello", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.connects, 0);
    resp_cleanup(&r);
    /* a stream whose producer is silent for longer than the timeout */
    do_req(c, "GET", "/late", NULL, 0, NULL, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "late\n");
    resp_cleanup(&r);
    curl_easy_cleanup(c);
    /* an idle keep-alive connection is closed after the timeout */
    int fd = raw_connect();
    raw_send(fd, "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    buf_t b;
    buf_init(&b, 1 << 16);
    assert_true(raw_read_until(fd, &b, "world", 3000));
    buf_cleanup(&b);
    assert_true(closed_within(fd, 4000));
    close(fd);
    settle();
    stop();
}

/* Send n bytes of s (repeating it) one at a time, gap_ms apart, until the
 * server closes fd. Returns the seconds that took, or -1 if it never did. */
static double trickle_until_cut(int fd, const char *s, size_t n, int gap_ms)
{
    size_t len = strlen(s);
    double t0 = now_s();
    for (size_t i = 0; i < n; i++)
        if (send(fd, s + i % len, 1, MSG_NOSIGNAL) != 1 || closed_within(fd, gap_ms))
            return now_s() - t0;
    return -1;
}

/* A client that sends its headers a byte at a time, never pausing as long
 * as the idle timeout, is still cut off once the headers took longer than
 * the timeout; one that completes them is answered. */
static void test_slow_headers(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.timeout_s = 2;
    start(&cfg);
    int fd = raw_connect();
    const char *req = "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    double took = trickle_until_cut(fd, req, strlen(req), 250);
    close(fd);
    assert_true(took >= 1.9 && took < 8.0);
    /* headers sent in one go, then a pause shorter than the timeout */
    fd = raw_connect();
    raw_send(fd, "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    usleep(1000 * 1000);
    raw_send(fd, "\r\n");
    buf_t b;
    buf_init(&b, 1 << 16);
    assert_true(raw_read_until(fd, &b, "world", 3000));
    buf_cleanup(&b);
    close(fd);
    settle();
    stop();
}

/* A body that trickles is closed after the timeout (it earns no time);
 * one that keeps up a modest rate is read to the end however long. */
static void test_slow_body(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.timeout_s = 2;
    start(&cfg);
    int fd = raw_connect();
    raw_send(fd, "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "Content-Length: 100000\r\n\r\n");
    double took = trickle_until_cut(fd, " ", 100, 200); /* 5 bytes/s */
    close(fd);
    assert_true(took >= 1.9 && took < 8.0);

    /* 8 KiB/s for 4 s: twice the timeout, well over 1 KiB/s */
    enum { LEN = 32768, STEP = 2048 };
    char *body = malloc(LEN + 1);
    assert_non_null(body);
    memset(body, ' ', LEN);
    memcpy(body + LEN - 2, "{}", 2);
    body[LEN] = '\0';
    fd = raw_connect();
    char head[200];
    snprintf(head, sizeof head,
             "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Content-Length: %d\r\n\r\n", LEN);
    raw_send(fd, head);
    for (int off = 0; off < LEN; off += STEP) {
        assert_int_equal(send(fd, body + off, STEP, MSG_NOSIGNAL), STEP);
        usleep(250 * 1000);
    }
    buf_t b;
    buf_init(&b, 1 << 16);
    assert_true(raw_read_until(fd, &b, "\"len\": 32768", 3000) ||
                raw_read_until(fd, &b, "\"len\":32768", 10));
    assert_non_null(strstr(b.data, "200 OK"));
    buf_cleanup(&b);
    close(fd);
    free(body);
    httpd_stats_t st;
    httpd_stats(g_srv, &st);
    assert_int_equal(st.connections_cut, 1);
    settle();
    stop();
}

/* Every connection taken by idle clients: a new one closes the one that
 * has waited longest and is served; a running handler is never shed. */
static void test_shed(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.max_connections = 8;
    cfg.max_per_ip = 0;
    cfg.timeout_s = 30;
    start(&cfg);
    int slot;
    int held = hold_open(&slot); /* a stream: not waiting for a request */
    enum { N = 7 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect();
        if (i == 3)
            raw_send(fds[i], "GET /hel"); /* half a request line: waiting too */
        usleep(20 * 1000);              /* so that their ages differ */
    }
    /* full: each new client is served and sheds the oldest idle one; it
     * stays open, idle, so the server stays full */
    int fresh[3];
    for (int k = 0; k < 3; k++) {
        fresh[k] = raw_connect();
        raw_send(fresh[k], "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        buf_t b;
        buf_init(&b, 1 << 16);
        assert_true(raw_read_until(fresh[k], &b, "world", 3000));
        buf_cleanup(&b);
        assert_true(closed_within(fds[k], 2000));
        for (int i = k + 1; i < N; i++)
            assert_false(closed_within(fds[i], 20));
    }
    /* the stream is still open and answers */
    assert_false(closed_within(held, 100));
    assert_true(wait_closed(slot, now_s(), 0.01) < 0);
    httpd_stats_t st;
    httpd_stats(g_srv, &st);
    assert_true(st.connections_shed >= 3);
    assert_int_equal(st.connections_cut, 0);
    close(held);
    httpd_stream_close(T.held[slot]);   /* the producer's end: the test's */
    for (int i = 0; i < N; i++)
        close(fds[i]);
    for (int k = 0; k < 3; k++)
        close(fresh[k]);
    settle();
    stop();
}

/* A chunked body over the limit: the client that sends it all reads the
 * 413 (before, the connection was dropped 1 MiB past the limit). */
static void test_chunked_over_limit(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    cfg.max_body = 4u << 20;
    start(&cfg);
    size_t n = 6u << 20;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    CURL *c = new_handle();
    resp_t r;
    const char *chunked[] = { "Transfer-Encoding: chunked", NULL };
    do_req(c, "POST", "/echo", big, (long)n, chunked, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 413);
    resp_cleanup(&r);
    curl_easy_cleanup(c);
    free(big);
    settle();
    stop();
}

static void test_open_errors(void **state)
{
    (void)state;
    httpd_config_t cfg = test_config();
    httpd_t *s = (httpd_t *)1;
    httpd_route_t dup[] = { { "GET", "/a", dummy, 0, NULL }, { "GET", "/a", dummy, 0, NULL } };
    assert_int_equal(httpd_open(&cfg, dup, 2, NULL, &s), HTTPD_EINVAL);
    assert_null(s);
    httpd_route_t bad1[] = { { "GET", "no-slash", dummy, 0, NULL } };
    assert_int_equal(httpd_open(&cfg, bad1, 1, NULL, &s), HTTPD_EINVAL);
    httpd_route_t bad2[] = { { "GET", "/a/{}", dummy, 0, NULL } };
    assert_int_equal(httpd_open(&cfg, bad2, 1, NULL, &s), HTTPD_EINVAL);
    httpd_route_t bad3[] = { { "GET", "/a/{rest*}/b", dummy, 0, NULL } };
    assert_int_equal(httpd_open(&cfg, bad3, 1, NULL, &s), HTTPD_EINVAL);
    httpd_route_t bad4[] = { { "POST", "/u", dummy, HTTPD_ROUTE_UPLOAD, NULL } };
    assert_int_equal(httpd_open(&cfg, bad4, 1, NULL, &s), HTTPD_EINVAL);
    httpd_route_t bad5[] = { { "GET", "/a", NULL, 0, NULL } };
    assert_int_equal(httpd_open(&cfg, bad5, 1, NULL, &s), HTTPD_EINVAL);
    /* A port in use. */
    start(&cfg);
    httpd_config_t c2 = cfg;
    c2.port = httpd_port(g_srv);
    log_set_level((log_level_t)(LOG_ERROR + 1));
    assert_int_equal(httpd_open(&c2, routes, N_ROUTES, NULL, &s), HTTPD_EBIND);
    c2.host = "no.such.host.invalid";
    c2.port = 0;
    assert_int_equal(httpd_open(&c2, routes, N_ROUTES, NULL, &s), HTTPD_EBIND);
    log_set_level(LOG_INFO);
    assert_null(s);
    stop();
    httpd_close(NULL);
    httpd_stream_close(NULL);
    assert_string_equal(httpd_strerror(HTTPD_EFULL), "stream queue full");
    assert_string_equal(httpd_strerror(HTTPD_ECLOSED), "stream closed");
    assert_string_equal(httpd_strerror(12345), "unknown httpd error");
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_errors_openai),
        cmocka_unit_test(test_errors_detail),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_api_key),
        cmocka_unit_test(test_cors),
        cmocka_unit_test(test_sse_1000),
        cmocka_unit_test(test_sse_format_and_heartbeat),
        cmocka_unit_test(test_disconnect),
        cmocka_unit_test(test_disconnect_busy),
        cmocka_unit_test(test_stream_full),
        cmocka_unit_test(test_close_with_streams),
        cmocka_unit_test(test_req_gone),
        cmocka_unit_test(test_access_log),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_upload),
        cmocka_unit_test(test_upload_limit),
        cmocka_unit_test(test_upload_errors),
        cmocka_unit_test(test_upload_hangup),
        cmocka_unit_test(test_concurrent_50),
        cmocka_unit_test(test_static_and_files),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_host_check),
        cmocka_unit_test(test_cross_site),
        cmocka_unit_test(test_json_content_type),
        cmocka_unit_test(test_api_key_exact),
        cmocka_unit_test(test_idle_connections),
        cmocka_unit_test(test_long_handler_and_stream),
        cmocka_unit_test(test_chunked_over_limit),
        cmocka_unit_test(test_slow_headers),
        cmocka_unit_test(test_slow_body),
        cmocka_unit_test(test_shed),
        cmocka_unit_test(test_authorize),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
