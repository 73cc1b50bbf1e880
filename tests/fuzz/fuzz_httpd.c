/* fuzz_httpd.c — the HTTP layer (common/httpd.c over libmicrohttpd):
 * request line, headers, routing with {params}, query arguments,
 * percent-decoding, bodies (Content-Length and chunked, limits), JSON
 * bodies, multipart and urlencoded uploads, CORS preflight, the API key,
 * streams.
 *
 * One real server runs in the process for the whole session: httpd_open()
 * on 127.0.0.1, port 0, in LLVMFuzzerInitialize(), with a small route
 * table shaped like kvchat's (an upload route, routes with {params} and
 * {rest*}, a JSON route, a stream). Its handlers use every request
 * accessor and answer with every reply kind. The input is what a client
 * sends on one connection (possibly several pipelined requests): it is
 * written to a fresh TCP connection, the sending side is shut down, and
 * the answer is read until the server closes the connection.
 * (libmicrohttpd could be handed one end of a socketpair with
 * MHD_add_connection(), which would skip the TCP handshake, but httpd.h
 * keeps its daemon to itself.)
 *
 * Checked besides memory safety (sanitizers see the server's threads
 * too): an answer, when there is one, starts with an HTTP/1.x status line
 * and is never a 500 (nothing in these handlers fails); the server ends
 * every connection by itself within 10 s of the client's end of input.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/httpd.h"
#include "fuzz_util.h"

#define ANSWER_WAIT_MS 10000
#define API_KEY "fuzz-key"

static httpd_t *g_srv;
static unsigned g_port;

/* ---- handlers ----------------------------------------------------------- */

/* A JSON string from request text that may be anything (NULL: null). */
static json_t *str_or_null(const char *s)
{
    return s ? json_string_lossy(s, strlen(s)) : json_null();
}

/* Echo what the request carries: route, params, query, headers. */
static void h_echo(httpd_req_t *req, void *user)
{
    (void)user;
    json_t *o = json_object();
    json_object_set_new(o, "method", str_or_null(httpd_req_method(req)));
    json_object_set_new(o, "path", str_or_null(httpd_req_path(req)));
    json_object_set_new(o, "route", str_or_null(httpd_req_route(req)));
    json_object_set_new(o, "id", str_or_null(httpd_req_param(req, "id")));
    json_object_set_new(o, "part", str_or_null(httpd_req_param(req, "part")));
    json_object_set_new(o, "rest", str_or_null(httpd_req_param(req, "rest")));
    json_object_set_new(o, "q", str_or_null(httpd_req_query(req, "q")));
    json_object_set_new(o, "limit", str_or_null(httpd_req_query(req, "limit")));
    json_object_set_new(o, "agent", str_or_null(httpd_req_header(req, "User-Agent")));
    size_t len = 0;
    httpd_req_body(req, &len);
    json_object_set_new(o, "body", json_integer((json_int_t)len));
    httpd_reply_header(req, "X-Echo", "1");
    httpd_reply_json(req, 200, o);
}

/* A JSON body, read as the app's handlers read theirs. */
static void h_json(httpd_req_t *req, void *user)
{
    (void)user;
    json_t *body = NULL;
    const char *msg = NULL;
    int rc = httpd_req_json(req, &body, &msg);
    if (rc != HTTPD_OK) {
        FUZZ_CHECK(body == NULL && msg != NULL, "httpd_req_json: %d without a message", rc);
        httpd_reply_error(req, 400, "%s", msg);
        return;
    }
    FUZZ_CHECK(json_is_object(body), "httpd_req_json gave a non-object");
    json_err_t err;
    const char *model = NULL;
    int64_t max_tokens = 0;
    bool stream = false;
    json_t *messages = NULL;
    if (json_get_string(body, "model", &model, &err) == JSON_ETYPE ||
        json_get_int_range(body, "max_tokens", 1, 4096, &max_tokens, &err) == JSON_ETYPE ||
        json_get_bool(body, "stream", &stream, &err) == JSON_ETYPE ||
        json_get_array(body, "messages", &messages, &err) == JSON_ETYPE) {
        json_decref(body);
        httpd_reply_error(req, 400, "%s", err.msg);
        return;
    }
    httpd_reply_json(req, 200, body);
}

static void h_static(httpd_req_t *req, void *user)
{
    (void)user;
    static const char page[] = "<!doctype html><p>kvchat</p>";
    httpd_reply_static(req, 200, "text/html; charset=utf-8", page, sizeof page - 1,
                       "no-cache", "\"v1\"");
}

static void h_text(httpd_req_t *req, void *user)
{
    (void)user;
    httpd_reply_text(req, 204, NULL, "", 0);
}

static void h_stream(httpd_req_t *req, void *user)
{
    (void)user;
    httpd_stream_t *s = NULL;
    if (httpd_stream_open(req, "text/event-stream", &s) != HTTPD_OK) {
        httpd_reply_error(req, 503, "no stream");
        return;
    }
    httpd_stream_sse(s, "first\nsecond");
    httpd_stream_sse_event(s, "done", "{}");
    httpd_stream_sse_json(s, json_pack("{s:s}", "q", "end"));
    httpd_stream_close(s);
}

/* Uploads: a per-request tally, freed by the framework. */
typedef struct {
    size_t parts, bytes;
} tally_t;

static int up_begin(httpd_req_t *req, const char *field, const char *filename,
                    const char *content_type)
{
    (void)content_type;
    tally_t *t = httpd_req_ctx(req);
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t)
            return -1;
        httpd_req_set_ctx(req, t, free);
    }
    t->parts++;
    if (strcmp(field, "refuse") == 0) {
        httpd_reply_error(req, 422, "Refused field %s", filename ? filename : "");
        return -1;
    }
    return 0;
}

static int up_data(httpd_req_t *req, const char *data, size_t len)
{
    (void)data;
    tally_t *t = httpd_req_ctx(req);
    FUZZ_CHECK(t != NULL && len > 0, "part data without a part");
    t->bytes += len;
    return t->bytes > 100000 ? -1 : 0;
}

static int up_end(httpd_req_t *req)
{
    FUZZ_CHECK(httpd_req_ctx(req) != NULL, "part end without a part");
    return 0;
}

static const httpd_upload_t upload_cbs = { up_begin, up_data, up_end };

static void h_upload(httpd_req_t *req, void *user)
{
    (void)user;
    tally_t *t = httpd_req_ctx(req);
    json_t *o = json_object();
    json_object_set_new(o, "parts", json_integer(t ? (json_int_t)t->parts : 0));
    json_object_set_new(o, "bytes", json_integer(t ? (json_int_t)t->bytes : 0));
    json_object_set_new(o, "note", str_or_null(httpd_req_form(req, "note")));
    httpd_reply_json(req, 201, o);
}

static const httpd_route_t routes[] = {
    { "GET", "/health", h_text, HTTPD_ROUTE_PUBLIC | HTTPD_ROUTE_QUIET, NULL },
    { "GET", "/", h_static, HTTPD_ROUTE_PUBLIC, NULL },
    { "GET", "/assets/{rest*}", h_static, HTTPD_ROUTE_PUBLIC, NULL },
    { "GET", "/api/v1/documents/list", h_echo, HTTPD_ROUTE_PUBLIC, NULL },
    { "GET", "/api/v1/documents/{id}", h_echo, HTTPD_ROUTE_PUBLIC, NULL },
    { "DELETE", "/api/v1/documents/{id}", h_echo, 0, NULL },
    { "GET", "/api/v1/documents/{id}/parts/{part}", h_echo, HTTPD_ROUTE_PUBLIC, NULL },
    { "POST", "/api/v1/documents/upload", h_upload, HTTPD_ROUTE_PUBLIC | HTTPD_ROUTE_UPLOAD,
      &upload_cbs },
    { "POST", "/api/v1/chat", h_json, HTTPD_ROUTE_PUBLIC, NULL },
    { "POST", "/v1/chat/completions", h_json, 0, NULL },
    { "POST", "/api/v1/stream", h_stream, HTTPD_ROUTE_PUBLIC, NULL },
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    httpd_config_t cfg = httpd_config_default();
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.max_body = 64 * 1024;
    cfg.max_upload = 256 * 1024;
    cfg.timeout_s = 5;
    cfg.api_key = API_KEY;
    cfg.error_style = HTTPD_ERRORS_DETAIL;
    cfg.cors_origins = "http://a.example, http://b.example";
    cfg.heartbeat_ms = 1000;
    int rc = httpd_open(&cfg, routes, sizeof routes / sizeof routes[0], NULL, &g_srv);
    FUZZ_CHECK(rc == HTTPD_OK, "httpd_open: %s", httpd_strerror(rc));
    g_port = httpd_port(g_srv);
    return 0;
}

/* ---- one connection ----------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for `events` on fd until the deadline; false when it passed. */
static bool wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return false;
        struct pollfd p = { .fd = fd, .events = events };
        int k = poll(&p, 1, (int)left);
        if (k > 0)
            return true;
        if (k < 0 && errno != EINTR)
            return false;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)g_port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int64_t deadline = now_ms() + ANSWER_WAIT_MS;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        /* libFuzzer's timer signal may interrupt it; the connection then
         * completes on its own. */
        FUZZ_CHECK(errno == EINTR, "connect: %s", strerror(errno));
        int err = 0;
        socklen_t len = sizeof err;
        FUZZ_CHECK(wait_fd(fd, POLLOUT, deadline) &&
                       getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0,
                   "connect: %s", strerror(err));
    }

    /* Send; the server may stop reading (an answer decided early). */
    size_t sent = 0;
    while (sent < size && wait_fd(fd, POLLOUT, deadline)) {
        ssize_t k = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        sent += (size_t)k;
    }
    shutdown(fd, SHUT_WR);

    /* Read the answer to the end; keep its first line. */
    char first[64] = "";
    size_t have = 0, total = 0;
    bool ended = false;
    deadline = now_ms() + ANSWER_WAIT_MS;
    while (wait_fd(fd, POLLIN, deadline)) {
        char buf[16384];
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            ended = true; /* EOF, or a reset after an early answer */
            break;
        }
        if (have + 1 < sizeof first) {
            size_t n = (size_t)k < sizeof first - 1 - have ? (size_t)k : sizeof first - 1 - have;
            memcpy(first + have, buf, n);
            have += n;
            first[have] = '\0';
        }
        total += (size_t)k;
    }
    close(fd);
    FUZZ_CHECK(ended, "the server kept the connection %d ms after the end of the request",
               ANSWER_WAIT_MS);
    if (total > 0) {
        FUZZ_CHECK(have < 9 || strncmp(first, "HTTP/1.", 7) == 0, "answer starts with '%.20s'",
                   first);
        FUZZ_CHECK(have < 12 || strncmp(first + 8, " 500", 4) != 0, "answered %.12s", first);
    }
    return 0;
}
