/* test_llm.c — the LLM provider layer against fake servers.
 *
 * A fake server made with common/httpd.h speaks the wire formats exactly
 * as documented (OpenAI-compatible SSE and Gemini's streamGenerateContent
 * SSE), records the request it received, and misbehaves on demand; a raw
 * socket server covers what an HTTP layer cannot do (never answer, break
 * a chunked body). The real engine is in test_llm_openai.c.
 *
 * Covered:
 * - codes: every LLM_E* has a description and the documented HTTP status;
 *   kind/role names; provider configuration checks and defaults;
 * - OpenAI wire: the request (path, Bearer key, model, roles, stream,
 *   stream_options, sampling, stop, extra fields); SSE split across
 *   writes, CRLF, comments, multi-line events, role-only first chunk,
 *   JSON escapes and multi-byte UTF-8 (every delta valid UTF-8), usage in
 *   a separate chunk or in the last one, timings passed through, a server
 *   that ignores "stream"; llm_chat collects the text;
 * - OpenAI errors: 401/403, 429, 500 with an error body, 502 HTML, 503,
 *   404, three shapes of "context too long", other 400s, an error event
 *   mid-stream, a line and an answer over their limits, malformed chunks,
 *   a stream that ends early (cleanly and by a broken connection), idle
 *   and first-byte timeouts, refused connections;
 * - cancellation: should_stop aborts within 200 ms and the server sees
 *   the connection close; on_delta can cancel; a call cancelled before it
 *   starts sends nothing;
 * - Gemini: the request (path, alt=sse, x-goog-api-key and no Bearer,
 *   systemInstruction, user/model roles, merged consecutive roles,
 *   generationConfig), text across events without thought parts,
 *   usageMetadata, finishReason mapping, modelVersion; errors 400 (bad
 *   key, too long, other), 403, 429, 500, 503, the array error shape, a
 *   malformed event, a prompt blocked, a stream without finishReason, an
 *   idle hang; countTokens; only-system conversations;
 * - calls a provider does not offer return LLM_ENOTSUP;
 * - the engine's cache salt: sent as "cache_salt" with a local engine's
 *   chat and prefill when set, never when unset, never to an OpenAI-
 *   compatible server or Gemini; one the engine would refuse is refused
 *   before anything is sent;
 * - a key source: asked at every request (the key may change between two),
 *   in place of the configured key; none, or one too long, sends none.
 */
#include <arpa/inet.h>
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "app/llm/llm.h"
#include "common/buf.h"
#include "common/httpd.h"
#include "common/json.h"
#include "common/utf8.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- the fake server ---------------------------------------------------- */

#define MAX_PIECES 32

enum { F_REPLY, F_SSE };

static struct {
    pthread_mutex_t lock;
    /* what to answer */
    int mode;
    int status;
    const char *ctype;
    const char *body;
    const char *pieces[MAX_PIECES]; /* raw bytes written one by one */
    int n_pieces;
    int delay_ms;                   /* before each piece */
    bool hang;                      /* keep the stream open until released */
    char *owned;                    /* a generated piece, freed by fake_stop */
    /* what was asked */
    int requests;
    char method[16], path[512], alt[32], auth[256], goog[256];
    json_t *req;                    /* the request body, parsed */
    /* run state */
    atomic_bool release, stream_closed;
    pthread_t producer;
    bool have_producer;
    httpd_t *srv;
    char url[128];
} F = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void on_stream_close(httpd_stream_t *s, void *user)
{
    (void)s;
    (void)user;
    atomic_store(&F.stream_closed, true);
}

static void *producer(void *arg)
{
    httpd_stream_t *s = arg;
    for (int i = 0; i < F.n_pieces; i++) {
        if (F.delay_ms)
            sleep_ms(F.delay_ms);
        size_t len = strlen(F.pieces[i]);
        int rc;
        while ((rc = httpd_stream_write(s, F.pieces[i], len)) == HTTPD_EFULL)
            sleep_ms(2);
        if (rc != HTTPD_OK)
            break;
    }
    while (F.hang && !atomic_load(&F.release) && !httpd_stream_closed(s))
        sleep_ms(5);
    httpd_stream_close(s);
    return NULL;
}

static void copy_hdr(char *dst, size_t cap, const char *v) { snprintf(dst, cap, "%s", v ? v : ""); }

static void h_any(httpd_req_t *req, void *user)
{
    (void)user;
    pthread_mutex_lock(&F.lock);
    F.requests++;
    copy_hdr(F.method, sizeof F.method, httpd_req_method(req));
    copy_hdr(F.path, sizeof F.path, httpd_req_path(req));
    copy_hdr(F.alt, sizeof F.alt, httpd_req_query(req, "alt"));
    copy_hdr(F.auth, sizeof F.auth, httpd_req_header(req, "Authorization"));
    copy_hdr(F.goog, sizeof F.goog, httpd_req_header(req, "x-goog-api-key"));
    json_decref(F.req);
    size_t len;
    const char *b = httpd_req_body(req, &len);
    F.req = len ? json_loadb(b, len, 0, NULL) : NULL;
    pthread_mutex_unlock(&F.lock);
    if (F.mode == F_REPLY) {
        httpd_reply_text(req, F.status, F.ctype ? F.ctype : "application/json", F.body,
                         strlen(F.body));
        return;
    }
    /* One request at a time: the last one's producer has finished, or
     * finishes now that its client has left. */
    if (F.have_producer)
        pthread_join(F.producer, NULL);
    F.have_producer = false;
    httpd_stream_t *s;
    if (httpd_stream_open(req, "text/event-stream", &s) != HTTPD_OK)
        return;
    httpd_stream_on_close(s, on_stream_close, NULL);
    F.have_producer = pthread_create(&F.producer, NULL, producer, s) == 0;
    if (!F.have_producer)
        httpd_stream_close(s);
}

static const httpd_route_t fake_routes[] = {
    { "GET", "/{rest*}", h_any, 0, NULL },
    { "POST", "/{rest*}", h_any, 0, NULL },
    { "DELETE", "/{rest*}", h_any, 0, NULL },
};

static void fake_start(void)
{
    httpd_config_t cfg = httpd_config_default();
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.heartbeat_ms = 0;
    cfg.timeout_s = 0;
    cfg.max_body = (size_t)16 << 20;
    cfg.stream_queue_max = (size_t)8 << 20;
    cfg.access_log_level = LOG_DEBUG;
    F.requests = 0;
    F.req = NULL;
    F.owned = NULL;
    F.have_producer = false;
    F.method[0] = F.path[0] = F.alt[0] = F.auth[0] = F.goog[0] = '\0';
    atomic_store(&F.release, false);
    atomic_store(&F.stream_closed, false);
    assert_int_equal(httpd_open(&cfg, fake_routes, 3, NULL, &F.srv), HTTPD_OK);
    snprintf(F.url, sizeof F.url, "http://127.0.0.1:%u", httpd_port(F.srv));
}

static void fake_stop(void)
{
    atomic_store(&F.release, true);
    if (F.have_producer)
        pthread_join(F.producer, NULL);
    F.have_producer = false;
    httpd_close(F.srv);
    F.srv = NULL;
    json_decref(F.req);
    F.req = NULL;
    free(F.owned);
    F.owned = NULL;
}

static void script_reply(int status, const char *ctype, const char *body)
{
    F.mode = F_REPLY;
    F.status = status;
    F.ctype = ctype;
    F.body = body;
}

/* SSE pieces, NULL-terminated. */
static void script_sse(int delay_ms, bool hang, ...)
{
    va_list ap;
    va_start(ap, hang);
    F.mode = F_SSE;
    F.delay_ms = delay_ms;
    F.hang = hang;
    F.n_pieces = 0;
    const char *p;
    while ((p = va_arg(ap, const char *)) && F.n_pieces < MAX_PIECES)
        F.pieces[F.n_pieces++] = p;
    va_end(ap);
}

static int fake_setup(void **state)
{
    (void)state;
    fake_start();
    return 0;
}

static int fake_teardown(void **state)
{
    (void)state;
    fake_stop();
    return 0;
}

/* ---- a raw socket server ------------------------------------------------ */

/* Accepts one connection, reads the request head, writes `reply` (may be
 * NULL), then holds the connection until released or the client leaves. */
typedef struct {
    int fd, port;
    const char *reply;
    bool hold;          /* after the reply, keep the connection open */
    pthread_t th;
    atomic_bool release, peer_left;
} raw_t;

static void *raw_main(void *arg)
{
    raw_t *r = arg;
    int c = accept(r->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    char buf[8192];
    size_t have = 0;
    while (have < sizeof buf - 1) {
        ssize_t k = recv(c, buf + have, sizeof buf - 1 - have, 0);
        if (k <= 0)
            break;
        have += (size_t)k;
        buf[have] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    if (r->reply && send(c, r->reply, strlen(r->reply), MSG_NOSIGNAL) < 0)
        perror("send");
    if (!r->reply || r->hold) {
        while (!atomic_load(&r->release)) {
            struct pollfd pf = { c, POLLIN, 0 };
            if (poll(&pf, 1, 10) > 0) {
                ssize_t k = recv(c, buf, sizeof buf, 0);
                if (k <= 0) {
                    atomic_store(&r->peer_left, true);
                    break;
                }
            }
        }
    }
    close(c);
    return NULL;
}

static void raw_start(raw_t *r, bool hold, const char *reply)
{
    memset(r, 0, sizeof *r);
    r->reply = reply;
    r->hold = hold;
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(r->fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    assert_int_equal(bind(r->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(r->fd, 4), 0);
    assert_int_equal(getsockname(r->fd, (struct sockaddr *)&a, &len), 0);
    r->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&r->th, NULL, raw_main, r), 0);
}

static void raw_stop(raw_t *r)
{
    atomic_store(&r->release, true);
    shutdown(r->fd, SHUT_RDWR);
    pthread_join(r->th, NULL);
    close(r->fd);
}

/* A port nobody listens on. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- a recording client --------------------------------------------------- */

typedef struct {
    buf_t text;
    int deltas;
    bool all_valid;
    int stop_after;   /* should_stop turns true after this many deltas; -1 never */
    int cancel_after; /* on_delta returns 1 at this delta; -1 never */
    double stop_at;
    int polls;
} rec_t;

static void rec_init(rec_t *r)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->text, (size_t)16 << 20);
    r->all_valid = true;
    r->stop_after = -1;
    r->cancel_after = -1;
}

static int rec_delta(void *ud, const char *t, size_t n)
{
    rec_t *r = ud;
    if (n == 0 || !utf8_valid(t, n))
        r->all_valid = false;
    buf_append(&r->text, t, n);
    r->deltas++;
    return r->cancel_after >= 0 && r->deltas >= r->cancel_after ? 1 : 0;
}

static bool rec_stop(void *ud)
{
    rec_t *r = ud;
    r->polls++;
    if (r->stop_after >= 0 && r->deltas >= r->stop_after) {
        if (r->stop_at == 0)
            r->stop_at = now_ms();
        return true;
    }
    return false;
}

static const llm_callbacks_t rec_cb = { rec_delta, NULL, rec_stop };

static const char *rec_text(rec_t *r) { return r->text.data ? r->text.data : ""; }

static llm_provider_t *provider(llm_kind_t kind, const char *url, const char *key,
                                const char *model, const llm_config_t *tweak)
{
    llm_config_t c = tweak ? *tweak : llm_config_default(kind);
    c.kind = kind;
    c.base_url = url;
    c.api_key = key;
    c.model = model;
    llm_provider_t *p = NULL;
    char err[256];
    int rc = llm_provider_new(&c, &p, err, sizeof err);
    if (rc != LLM_OK)
        fail_msg("llm_provider_new: %s", err);
    return p;
}

static llm_provider_t *openai_fake(const llm_config_t *tweak)
{
    char url[160];
    snprintf(url, sizeof url, "%s/v1", F.url);
    return provider(LLM_PROVIDER_OPENAI, url, "sk-test", "fake-model", tweak);
}

static const llm_message_t one_msg[] = { { LLM_ROLE_USER, "Hello?" } };

/* Run one streaming chat with a fresh recorder. */
static int run_chat(llm_provider_t *p, rec_t *r, llm_result_t *res)
{
    return llm_chat_stream(p, one_msg, 1, NULL, &rec_cb, r, res);
}

#define assert_contains(hay, needle)                                                     \
    do {                                                                                  \
        if (!strstr((hay), (needle)))                                                     \
            fail_msg("'%s' does not contain '%s'", (hay), (needle));                       \
    } while (0)

/* OpenAI-style chunk with one piece of content (a C string literal that is
 * already JSON-escaped). */
#define CHUNK(content)                                                                      \
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"fake-model\","     \
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" content "\"},\"finish_reason\":null}]}\n\n"
#define FINISH(reason)                                                                     \
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"" reason "\"}]}\n\n"
#define DONE "data: [DONE]\n\n"

/* ---- codes and configuration ------------------------------------------- */

static void test_codes(void **state)
{
    (void)state;
    static const struct {
        int rc, status;
    } want[] = {
        { LLM_OK, 200 },          { LLM_ENOMEM, 500 },      { LLM_EINVAL, 500 },
        { LLM_EDOWN, 503 },       { LLM_ETIMEOUT, 504 },    { LLM_EAUTH, 502 },
        { LLM_ERATELIMIT, 429 },  { LLM_EUNAVAIL, 503 },    { LLM_EUPSTREAM, 502 },
        { LLM_ETOOLONG, 422 },    { LLM_EREFUSED, 502 },    { LLM_ENOTFOUND, 404 },
        { LLM_EPROTO, 502 },      { LLM_ETOOBIG, 502 },     { LLM_ECONN, 502 },
        { LLM_ECANCELLED, 499 },  { LLM_ENOTSUP, 501 },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(llm_http_status(want[i].rc), want[i].status);
        assert_string_not_equal(llm_strerror(want[i].rc), "unknown error");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(llm_strerror(want[i].rc), llm_strerror(want[j].rc));
    }
    assert_string_equal(llm_strerror(-999), "unknown error");
    assert_int_equal(llm_http_status(-999), 500);

    llm_kind_t k;
    assert_int_equal(llm_kind_parse("gemini", &k), LLM_OK);
    assert_int_equal(k, LLM_PROVIDER_GEMINI);
    assert_int_equal(llm_kind_parse("OpenAI", &k), LLM_OK);
    assert_int_equal(k, LLM_PROVIDER_OPENAI);
    assert_int_equal(llm_kind_parse("claude", &k), LLM_EINVAL);
    assert_string_equal(llm_kind_name(LLM_PROVIDER_LOCAL), "local");
    llm_role_t r;
    assert_int_equal(llm_role_parse("developer", &r), LLM_OK);
    assert_int_equal(r, LLM_ROLE_SYSTEM);
    assert_int_equal(llm_role_parse("assistant", &r), LLM_OK);
    assert_int_equal(r, LLM_ROLE_ASSISTANT);
    assert_int_equal(llm_role_parse("tool", &r), LLM_EINVAL);
    assert_string_equal(llm_role_name(LLM_ROLE_USER), "user");
}

static void test_config(void **state)
{
    (void)state;
    llm_provider_t *p = NULL;
    char err[256];
    llm_config_t c = llm_config_default(LLM_PROVIDER_OPENAI);
    assert_int_equal(c.first_byte_timeout_ms, 300000);
    assert_int_equal(c.max_line, 1u << 20);
    assert_int_equal(c.max_answer, 4u << 20);

    c.base_url = "ftp://example.com";
    assert_int_equal(llm_provider_new(&c, &p, err, sizeof err), LLM_EINVAL);
    assert_null(p);
    assert_contains(err, "http");

    c = llm_config_default(LLM_PROVIDER_GEMINI);
    assert_int_equal(llm_provider_new(&c, &p, err, sizeof err), LLM_EINVAL);
    assert_contains(err, "model");

    c = llm_config_default(LLM_PROVIDER_OPENAI);
    c.max_line = 10;
    assert_int_equal(llm_provider_new(&c, &p, err, sizeof err), LLM_EINVAL);

    c = llm_config_default(LLM_PROVIDER_OPENAI);
    assert_int_equal(llm_provider_new(&c, &p, err, sizeof err), LLM_OK);
    assert_string_equal(llm_provider_base_url(p), "https://api.openai.com/v1");
    assert_string_equal(llm_provider_name(p), "OpenAI");
    assert_string_equal(llm_provider_model(p), "");
    llm_provider_free(p);

    c = llm_config_default(LLM_PROVIDER_LOCAL);
    assert_int_equal(llm_provider_new(&c, &p, err, sizeof err), LLM_OK);
    assert_string_equal(llm_provider_base_url(p), "http://127.0.0.1:13141/v1");
    assert_string_equal(llm_provider_name(p), "the model server");
    assert_int_equal(llm_provider_kind(p), LLM_PROVIDER_LOCAL);
    llm_provider_free(p);

    c = llm_config_default(LLM_PROVIDER_OPENAI);
    c.base_url = "http://gpu-host:8000/v1/";
    assert_int_equal(llm_provider_new(&c, &p, err, sizeof err), LLM_OK);
    assert_string_equal(llm_provider_base_url(p), "http://gpu-host:8000/v1");
    assert_string_equal(llm_provider_name(p), "the model server at gpu-host:8000");
    llm_provider_free(p);

    c = llm_config_default(LLM_PROVIDER_GEMINI);
    c.model = "gemini-2.0-flash";
    c.name = "Google";
    assert_int_equal(llm_provider_new(&c, &p, err, sizeof err), LLM_OK);
    assert_string_equal(llm_provider_base_url(p), "https://generativelanguage.googleapis.com");
    assert_string_equal(llm_provider_name(p), "Google");
    llm_provider_free(p);
    llm_provider_free(NULL);

    /* Bad arguments to a chat never reach the network. */
    c = llm_config_default(LLM_PROVIDER_LOCAL);
    assert_int_equal(llm_provider_new(&c, &p, err, sizeof err), LLM_OK);
    llm_result_t res;
    assert_int_equal(llm_chat_stream(p, NULL, 0, NULL, NULL, NULL, &res), LLM_EINVAL);
    assert_true(res.error[0] != '\0');
    llm_result_cleanup(&res);
    llm_provider_free(p);
}

/* ---- OpenAI wire: success ------------------------------------------------ */

static void test_openai_stream(void **state)
{
    (void)state;
    script_sse(15, false,
               "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
               "\"finish_reason\":null}],\"model\":\"fake-model-2024\"}\n\n",
               ": keep-alive\n\n", "data:\n\n",
               "data: {\"choices\":[{\"index\":0,\"del", /* a line split across writes */
               "ta\":{\"content\":\"Hel\"}}]}\n\n",
               "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo, w\\u00f6rld \"}}]}\r\n\r\n",
               "id: 7\nevent: message\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":"
               "\"\xe6\x97\xa5\xe6\x9c\xac \\ud83d\\ude00\"}}]}\n\n",
               FINISH("stop"),
               "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,"
               "\"total_tokens\":17,\"prompt_tokens_details\":{\"cached_tokens\":8}}}\n\n",
               DONE, NULL);
    llm_provider_t *p = openai_fake(NULL);
    const llm_message_t msgs[] = {
        { LLM_ROLE_SYSTEM, "You answer questions about the document." },
        { LLM_ROLE_USER, "First question" },
        { LLM_ROLE_ASSISTANT, "First answer" },
        { LLM_ROLE_USER, "Caf\xc3\xa9 \xff?" }, /* an invalid byte goes as U+FFFD */
    };
    json_t *extra = json_pack("{s:i, s:i}", "seed", 7, "top_k", 3);
    llm_params_t prm = llm_params_default();
    prm.max_tokens = 32;
    prm.temperature = 0.5;
    prm.top_p = 0.9;
    prm.stop[0] = "\n\n";
    prm.stop[1] = "END";
    prm.extra = extra;
    rec_t r;
    rec_init(&r);
    llm_result_t res;
    int rc = llm_chat_stream(p, msgs, 4, &prm, &rec_cb, &r, &res);
    if (rc != LLM_OK)
        fail_msg("chat failed: %s", res.error);
    assert_string_equal(rec_text(&r), "Hello, w\xc3\xb6rld \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80");
    assert_int_equal(r.deltas, 3);
    assert_true(r.all_valid);
    assert_int_equal(res.text_len, r.text.len);
    assert_string_equal(res.finish_reason, "stop");
    assert_int_equal(res.usage.prompt_tokens, 12);
    assert_int_equal(res.usage.completion_tokens, 5);
    assert_int_equal(res.usage.cached_tokens, 8);
    assert_null(res.timings);
    assert_string_equal(res.model, "fake-model-2024"); /* as the server named it */
    assert_int_equal(res.upstream_status, 200);
    assert_true(res.ttft_ms >= 0 && res.ttft_ms <= res.total_ms);
    assert_string_equal(res.error, "");

    /* The request as the server saw it. */
    assert_string_equal(F.method, "POST");
    assert_string_equal(F.path, "/v1/chat/completions");
    assert_string_equal(F.auth, "Bearer sk-test");
    assert_non_null(F.req);
    assert_string_equal(json_string_value(json_object_get(F.req, "model")), "fake-model");
    assert_true(json_is_true(json_object_get(F.req, "stream")));
    assert_true(json_is_true(json_object_get(json_object_get(F.req, "stream_options"), "include_usage")));
    json_t *m = json_object_get(F.req, "messages");
    assert_int_equal(json_array_size(m), 4);
    const char *roles[] = { "system", "user", "assistant", "user" };
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(m, i), "role")), roles[i]);
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, 3), "content")),
                        "Caf\xc3\xa9 \xef\xbf\xbd?");
    assert_int_equal(json_integer_value(json_object_get(F.req, "max_tokens")), 32);
    assert_true(json_real_value(json_object_get(F.req, "temperature")) == 0.5);
    assert_true(json_real_value(json_object_get(F.req, "top_p")) == 0.9);
    json_t *stop = json_object_get(F.req, "stop");
    assert_int_equal(json_array_size(stop), 2);
    assert_string_equal(json_string_value(json_array_get(stop, 1)), "END");
    assert_int_equal(json_integer_value(json_object_get(F.req, "seed")), 7);
    assert_int_equal(json_integer_value(json_object_get(F.req, "top_k")), 3);

    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    json_decref(extra);
    llm_provider_free(p);
}

/* The engine's and llama-server's shape: usage and timings in the last
 * chunk with the finish reason; a multi-line event; no [DONE] needed once
 * the finish reason came. No key: no Authorization header. */
static void test_openai_engine_shape(void **state)
{
    (void)state;
    script_sse(0, false,
               "data: {\"choices\":[{\"index\":0,\n"
               "data: \"delta\":{\"content\":\"ab\"}}]}\n\n",
               "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}],"
               "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2},"
               "\"timings\":{\"prompt_n\":1,\"prompt_ms\":1.5,\"predicted_n\":2,\"cache_n\":2,"
               "\"cache_tier\":\"ram\"}}\n\n",
               NULL);
    char url[160];
    snprintf(url, sizeof url, "%s/v1", F.url);
    llm_provider_t *p = provider(LLM_PROVIDER_LOCAL, url, NULL, NULL, NULL);
    rec_t r;
    rec_init(&r);
    llm_result_t res;
    assert_int_equal(run_chat(p, &r, &res), LLM_OK);
    assert_string_equal(rec_text(&r), "ab");
    assert_string_equal(res.finish_reason, "length");
    assert_int_equal(res.usage.cached_tokens, 2); /* from timings.cache_n */
    assert_non_null(res.timings);
    assert_string_equal(json_string_value(json_object_get(res.timings, "cache_tier")), "ram");
    assert_string_equal(F.auth, "");
    assert_null(json_object_get(F.req, "model"));
    assert_null(json_object_get(F.req, "max_tokens"));
    assert_null(json_object_get(F.req, "temperature"));
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
}

/* A server that ignores "stream" answers one chat.completion object. */
static void test_openai_not_streamed(void **state)
{
    (void)state;
    script_reply(200, "application/json",
                 "{\"id\":\"x\",\"object\":\"chat.completion\",\"model\":\"m2\",\"choices\":[{\"index\":0,"
                 "\"message\":{\"role\":\"assistant\",\"content\":\"whole answer\"},"
                 "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}");
    llm_provider_t *p = openai_fake(NULL);
    llm_result_t res;
    rec_t r;
    rec_init(&r);
    assert_int_equal(llm_chat(p, one_msg, 1, NULL, &rec_cb, &r, &res), LLM_OK);
    assert_string_equal(res.text, "whole answer");
    assert_string_equal(rec_text(&r), "whole answer"); /* on_delta is called too */
    assert_string_equal(res.finish_reason, "stop");
    assert_string_equal(res.model, "m2");
    assert_int_equal(res.usage.completion_tokens, 2);
    assert_int_equal(res.usage.cached_tokens, -1);
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
}

static void test_openai_collect(void **state)
{
    (void)state;
    script_sse(0, false, CHUNK("one "), CHUNK("two "), CHUNK("three"), FINISH("stop"), DONE, NULL);
    llm_provider_t *p = openai_fake(NULL);
    llm_result_t res;
    assert_int_equal(llm_chat(p, one_msg, 1, NULL, NULL, NULL, &res), LLM_OK);
    assert_string_equal(res.text, "one two three");
    assert_int_equal(res.text_len, 13);
    llm_result_cleanup(&res);
    assert_null(res.text);
    llm_result_cleanup(&res); /* twice is harmless */
    llm_provider_free(p);
}

/* ---- a key that changes ----------------------------------------------------- */

typedef struct {
    const char *key;   /* NULL: none */
    size_t claim;      /* when not 0: the length reported instead of the real one */
    int calls;
} key_src_t;

static size_t key_src(void *ud, char *buf, size_t cap)
{
    key_src_t *k = ud;
    k->calls++;
    if (!k->key)
        return 0;
    snprintf(buf, cap, "%s", k->key);
    return k->claim ? k->claim : strlen(k->key);
}

static void test_key_source(void **state)
{
    (void)state;
    script_reply(200, NULL, "{\"object\":\"list\",\"data\":[{\"id\":\"fake-model\"}]}");
    llm_provider_t *p = openai_fake(NULL);   /* configured key: sk-test */
    llm_model_info_t info;
    assert_int_equal(llm_models(p, &info, NULL, 0), LLM_OK);
    assert_string_equal(F.auth, "Bearer sk-test");

    key_src_t k = { .key = "first-key" };
    llm_provider_set_key_source(p, key_src, &k);
    assert_int_equal(llm_models(p, &info, NULL, 0), LLM_OK);
    assert_string_equal(F.auth, "Bearer first-key");
    assert_int_equal(k.calls, 1);
    k.key = "second-key";   /* a new engine, a new key: the next request has it */
    script_sse(0, false, CHUNK("hi"), FINISH("stop"), DONE, NULL);
    llm_result_t res;
    assert_int_equal(llm_chat(p, one_msg, 1, NULL, NULL, NULL, &res), LLM_OK);
    llm_result_cleanup(&res);
    assert_string_equal(F.auth, "Bearer second-key");
    assert_int_equal(k.calls, 2);

    script_reply(200, NULL, "{\"object\":\"list\",\"data\":[{\"id\":\"fake-model\"}]}");
    k.key = NULL;           /* none yet: no header, not the configured key */
    assert_int_equal(llm_models(p, &info, NULL, 0), LLM_OK);
    assert_string_equal(F.auth, "");
    k.key = "x";
    k.claim = LLM_KEY_MAX + 1;   /* did not fit: not sent */
    assert_int_equal(llm_models(p, &info, NULL, 0), LLM_OK);
    assert_string_equal(F.auth, "");

    llm_provider_set_key_source(p, NULL, &k);   /* back to the configured key */
    assert_int_equal(llm_models(p, &info, NULL, 0), LLM_OK);
    assert_string_equal(F.auth, "Bearer sk-test");
    assert_int_equal(k.calls, 4);
    llm_provider_free(p);
}

/* ---- OpenAI wire: errors ------------------------------------------------ */

static void test_openai_http_errors(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *ctype, *body;
        int rc;
        const char *says;
    } cases[] = {
        { 401, NULL,
          "{\"error\":{\"message\":\"Incorrect API key provided: sk-bad\",\"type\":"
          "\"invalid_request_error\",\"code\":\"invalid_api_key\"}}",
          LLM_EAUTH, "The API key was rejected by the model server at" },
        { 403, NULL, "{\"error\":{\"message\":\"forbidden\"}}", LLM_EAUTH, "forbidden" },
        { 429, NULL,
          "{\"error\":{\"message\":\"Rate limit reached for requests\",\"type\":\"requests\","
          "\"code\":\"rate_limit_exceeded\"}}",
          LLM_ERATELIMIT, "Rate limit reached for requests" },
        { 500, NULL,
          "{\"error\":{\"message\":\"The server had an error while processing your request.\","
          "\"type\":\"server_error\"}}",
          LLM_EUPSTREAM, "(HTTP 500): The server had an error" },
        { 502, "text/html", "<html><body>Bad Gateway</body></html>", LLM_EUPSTREAM, "Bad Gateway" },
        { 503, NULL,
          "{\"error\":{\"message\":\"the model is loading\",\"type\":\"unavailable_error\",\"code\":503}}",
          LLM_EUNAVAIL, "the model is loading" },
        { 404, NULL, "{\"error\":{\"message\":\"The model 'x' does not exist\"}}", LLM_ENOTFOUND,
          "does not exist" },
        { 400, NULL,
          "{\"error\":{\"message\":\"the prompt has 3000 tokens or more, but a slot's context holds "
          "1024 tokens (including the reply)\",\"type\":\"invalid_request_error\",\"code\":400}}",
          LLM_ETOOLONG, "3000 tokens" },
        { 400, NULL,
          "{\"error\":{\"code\":400,\"message\":\"the request exceeds the available context size, "
          "try increasing it\",\"type\":\"exceed_context_size_error\"}}",
          LLM_ETOOLONG, "available context size" },
        { 400, NULL,
          "{\"error\":{\"message\":\"This model's maximum context length is 8192 tokens. However, "
          "your messages resulted in 9000 tokens.\",\"type\":\"invalid_request_error\","
          "\"code\":\"context_length_exceeded\"}}",
          LLM_ETOOLONG, "maximum context length" },
        { 400, NULL,
          "{\"error\":{\"message\":\"Field 'temperature' must be between 0 and 100\",\"type\":"
          "\"invalid_request_error\",\"code\":400}}",
          LLM_EREFUSED, "refused the request (HTTP 400): Field 'temperature'" },
        { 422, NULL, "{\"detail\":\"messages: field required\"}", LLM_EREFUSED, "field required" },
    };
    llm_provider_t *p = openai_fake(NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        script_reply(cases[i].status, cases[i].ctype, cases[i].body);
        rec_t r;
        rec_init(&r);
        llm_result_t res;
        int rc = run_chat(p, &r, &res);
        if (rc != cases[i].rc)
            fail_msg("case %zu (HTTP %d): got %d (%s), want %d", i, cases[i].status, rc, res.error,
                     cases[i].rc);
        assert_int_equal(res.rc, rc);
        assert_int_equal(res.upstream_status, cases[i].status);
        assert_contains(res.error, cases[i].says);
        assert_int_equal(r.deltas, 0);
        llm_result_cleanup(&res);
        buf_cleanup(&r.text);
    }
    llm_provider_free(p);
}

static void test_openai_error_event(void **state)
{
    (void)state;
    script_sse(0, false, CHUNK("par"), CHUNK("tial"),
               "data: {\"error\":{\"message\":\"decode failed: out of memory\",\"type\":"
               "\"server_error\",\"code\":500}}\n\n",
               DONE, NULL);
    llm_provider_t *p = openai_fake(NULL);
    rec_t r;
    rec_init(&r);
    llm_result_t res;
    assert_int_equal(run_chat(p, &r, &res), LLM_EUPSTREAM);
    assert_contains(res.error, "decode failed: out of memory");
    assert_string_equal(rec_text(&r), "partial");
    assert_int_equal(res.text_len, 7);
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);

    /* "event: error" with a text payload (some proxies). */
    script_sse(0, false, "event: error\ndata: upstream went away\n\n", NULL);
    rec_init(&r);
    assert_int_equal(run_chat(p, &r, &res), LLM_EUPSTREAM);
    assert_contains(res.error, "upstream went away");
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
}

static void test_openai_limits(void **state)
{
    (void)state;
    llm_config_t c = llm_config_default(LLM_PROVIDER_OPENAI);
    c.max_line = 64 << 10;
    c.max_answer = 4096;
    llm_provider_t *p = openai_fake(&c);

    /* A line over max_line. */
    size_t big = 100 << 10;
    buf_t b;
    buf_init(&b, big + 256);
    buf_puts(&b, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
    for (size_t i = 0; i < big; i++)
        buf_append(&b, "a", 1);
    buf_puts(&b, "\"}}]}\n\n");
    F.owned = buf_steal(&b, NULL);
    script_sse(0, false, CHUNK("ok"), F.owned, DONE, NULL);
    rec_t r;
    rec_init(&r);
    llm_result_t res;
    assert_int_equal(run_chat(p, &r, &res), LLM_ETOOBIG);
    assert_contains(res.error, "longer than 65536 bytes");
    assert_string_equal(rec_text(&r), "ok");
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    free(F.owned);
    F.owned = NULL;

    /* An answer over max_answer: an error, not a cut answer. */
    static char piece[1200];
    snprintf(piece, sizeof piece, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%0*d\"}}]}\n\n",
             1000, 0);
    script_sse(0, false, piece, piece, piece, piece, piece, FINISH("stop"), DONE, NULL);
    rec_init(&r);
    assert_int_equal(run_chat(p, &r, &res), LLM_ETOOBIG);
    assert_contains(res.error, "longer than 4096 bytes");
    assert_int_equal(res.text_len, 4000);
    assert_int_equal(r.text.len, 4000);
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
}

static void test_openai_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}]\n\n",   /* broken JSON */
        "data: {\"choices\":{\"delta\":{}}}\n\n",                    /* choices not an array */
        "data: {\"choices\":[{\"delta\":{\"content\":42}}]}\n\n",    /* content not a string */
        "data: [1,2]\n\n",                                           /* not objects */
    };
    llm_provider_t *p = openai_fake(NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        script_sse(0, false, CHUNK("ok"), bad[i], FINISH("stop"), DONE, NULL);
        rec_t r;
        rec_init(&r);
        llm_result_t res;
        int rc = run_chat(p, &r, &res);
        if (rc != LLM_EPROTO)
            fail_msg("case %zu: got %d (%s)", i, rc, res.error);
        assert_contains(res.error, "Malformed");
        assert_string_equal(rec_text(&r), "ok");
        llm_result_cleanup(&res);
        buf_cleanup(&r.text);
    }
    llm_provider_free(p);
}

/* The server ends the body cleanly before the answer is complete. */
static void test_openai_ends_early(void **state)
{
    (void)state;
    script_sse(0, false, CHUNK("abc"), NULL);
    llm_provider_t *p = openai_fake(NULL);
    rec_t r;
    rec_init(&r);
    llm_result_t res;
    assert_int_equal(run_chat(p, &r, &res), LLM_ECONN);
    assert_contains(res.error, "ended before it was complete");
    assert_int_equal(res.text_len, 3);
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
}

/* The connection breaks in the middle of a chunked body. */
static void test_openai_connection_drops(void **state)
{
    (void)state;
    raw_t raw;
    raw_start(&raw, false, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n"
                    "3a\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"xy\"}}]}\n\n\r\n"
                    "40\r\ndata: {\"choices\":[{\"in");
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", raw.port);
    llm_provider_t *p = provider(LLM_PROVIDER_OPENAI, url, NULL, NULL, NULL);
    rec_t r;
    rec_init(&r);
    llm_result_t res;
    int rc = run_chat(p, &r, &res);
    if (rc != LLM_ECONN)
        fail_msg("got %d (%s)", rc, res.error);
    assert_string_equal(rec_text(&r), "xy");
    assert_contains(res.error, "connection");
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
    raw_stop(&raw);
}

/* A server that sends [DONE] but never ends the body: the answer is
 * complete all the same, after a short grace period. */
static void test_openai_done_without_end(void **state)
{
    (void)state;
    raw_t raw;
    raw_start(&raw, true, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
                "3a\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"xy\"}}]}\n\n\r\n"
                "e\r\ndata: [DONE]\n\n\r\n");
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", raw.port);
    llm_provider_t *p = provider(LLM_PROVIDER_OPENAI, url, NULL, NULL, NULL);
    rec_t r;
    rec_init(&r);
    llm_result_t res;
    double t0 = now_ms();
    int rc = run_chat(p, &r, &res);
    if (rc != LLM_OK)
        fail_msg("got %d (%s)", rc, res.error);
    assert_true(now_ms() - t0 < 3000);
    assert_string_equal(rec_text(&r), "xy");
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
    raw_stop(&raw);
}

static void test_openai_idle_timeout(void **state)
{
    (void)state;
    script_sse(0, true, CHUNK("a"), NULL);
    llm_config_t c = llm_config_default(LLM_PROVIDER_OPENAI);
    c.idle_timeout_ms = 300;
    llm_provider_t *p = openai_fake(&c);
    rec_t r;
    rec_init(&r);
    llm_result_t res;
    double t0 = now_ms();
    assert_int_equal(run_chat(p, &r, &res), LLM_ETIMEOUT);
    double took = now_ms() - t0;
    assert_true(took >= 290 && took < 2000);
    assert_contains(res.error, "stopped sending for 0.3 s");
    assert_string_equal(rec_text(&r), "a");
    /* The connection was closed: the server sees its client leave. */
    for (int i = 0; i < 200 && !atomic_load(&F.stream_closed); i++)
        sleep_ms(5);
    assert_true(atomic_load(&F.stream_closed));
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
}

static void test_openai_first_byte_timeout(void **state)
{
    (void)state;
    raw_t raw;
    raw_start(&raw, false, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", raw.port);
    llm_config_t c = llm_config_default(LLM_PROVIDER_OPENAI);
    c.first_byte_timeout_ms = 300;
    llm_provider_t *p = provider(LLM_PROVIDER_OPENAI, url, NULL, NULL, &c);
    rec_t r;
    rec_init(&r);
    llm_result_t res;
    double t0 = now_ms();
    assert_int_equal(run_chat(p, &r, &res), LLM_ETIMEOUT);
    double took = now_ms() - t0;
    assert_true(took >= 290 && took < 2000);
    assert_contains(res.error, "No answer from");
    assert_int_equal(llm_http_status(res.rc), 504);
    for (int i = 0; i < 200 && !atomic_load(&raw.peer_left); i++)
        sleep_ms(5);
    assert_true(atomic_load(&raw.peer_left));
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
    raw_stop(&raw);
}

/* Status calls (the engine's cache list) give up after
 * LLM_STATUS_TIMEOUT_MS, not the provider's minutes-long limits. */
static void test_status_timeout(void **state)
{
    (void)state;
    raw_t raw;
    raw_start(&raw, false, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", raw.port);
    llm_provider_t *p = provider(LLM_PROVIDER_LOCAL, url, NULL, NULL, NULL);
    llm_cache_entry_t *e = (llm_cache_entry_t *)1;
    size_t n = 7;
    char err[256];
    double t0 = now_ms();
    assert_int_equal(llm_cache_entries(p, &e, &n, err, sizeof err), LLM_ETIMEOUT);
    double took = now_ms() - t0;
    assert_true(took >= LLM_STATUS_TIMEOUT_MS - 10 && took < LLM_STATUS_TIMEOUT_MS + 2000);
    assert_null(e);
    assert_int_equal(n, 0);
    assert_contains(err, "within 3 s");
    llm_provider_free(p);
    raw_stop(&raw);
}

static void test_refused(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", dead_port());
    llm_kind_t kinds[] = { LLM_PROVIDER_LOCAL, LLM_PROVIDER_OPENAI };
    const char *says[] = { "The model server is not running", "Could not connect to the model server at 127.0.0.1" };
    for (int i = 0; i < 2; i++) {
        llm_provider_t *p = provider(kinds[i], url, NULL, NULL, NULL);
        rec_t r;
        rec_init(&r);
        llm_result_t res;
        double t0 = now_ms();
        assert_int_equal(run_chat(p, &r, &res), LLM_EDOWN);
        assert_true(now_ms() - t0 < 1000);
        assert_contains(res.error, says[i]);
        assert_int_equal(llm_http_status(res.rc), 503);
        llm_result_cleanup(&res);
        buf_cleanup(&r.text);
        llm_provider_free(p);
    }
}

/* ---- cancellation -------------------------------------------------------- */

static void test_cancel(void **state)
{
    (void)state;
    script_sse(0, true, CHUNK("a"), NULL);
    llm_provider_t *p = openai_fake(NULL);
    rec_t r;
    rec_init(&r);
    r.stop_after = 1;
    llm_result_t res;
    assert_int_equal(run_chat(p, &r, &res), LLM_ECANCELLED);
    double late = now_ms() - r.stop_at;
    assert_true(r.stop_at > 0);
    assert_true(late < 200);
    assert_string_equal(res.finish_reason, "cancelled");
    assert_int_equal(res.text_len, 1);
    for (int i = 0; i < 200 && !atomic_load(&F.stream_closed); i++)
        sleep_ms(5);
    assert_true(atomic_load(&F.stream_closed));
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
}

/* should_stop is polled while nothing arrives, often enough. */
static void test_cancel_polls(void **state)
{
    (void)state;
    script_sse(0, true, NULL);
    llm_config_t c = llm_config_default(LLM_PROVIDER_OPENAI);
    c.idle_timeout_ms = 500;
    llm_provider_t *p = openai_fake(&c);
    rec_t r;
    rec_init(&r);
    llm_result_t res;
    assert_int_equal(run_chat(p, &r, &res), LLM_ETIMEOUT); /* headers came, then nothing */
    assert_true(r.polls >= 5);                             /* 500 ms at <= 100 ms a poll */
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
}

static void test_cancel_from_delta(void **state)
{
    (void)state;
    script_sse(0, false, CHUNK("a"), CHUNK("b"), CHUNK("c"), FINISH("stop"), DONE, NULL);
    llm_provider_t *p = openai_fake(NULL);
    rec_t r;
    rec_init(&r);
    r.cancel_after = 2;
    llm_result_t res;
    assert_int_equal(run_chat(p, &r, &res), LLM_ECANCELLED);
    assert_string_equal(rec_text(&r), "ab");
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
}

static void test_cancel_before_start(void **state)
{
    (void)state;
    script_sse(0, false, CHUNK("a"), FINISH("stop"), DONE, NULL);
    llm_provider_t *p = openai_fake(NULL);
    rec_t r;
    rec_init(&r);
    r.stop_after = 0;
    llm_result_t res;
    assert_int_equal(run_chat(p, &r, &res), LLM_ECANCELLED);
    assert_int_equal(F.requests, 0);
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
}

/* ---- engine-only calls elsewhere -------------------------------------------- */

static void test_not_supported(void **state)
{
    (void)state;
    llm_provider_t *oa = openai_fake(NULL);
    llm_provider_t *gm = provider(LLM_PROVIDER_GEMINI, F.url, "k", "gemini-test", NULL);
    llm_prefill_result_t pr;
    assert_int_equal(llm_prefill(oa, one_msg, 1, 0, NULL, NULL, &pr), LLM_ENOTSUP);
    assert_true(pr.error[0] != '\0');
    assert_int_equal(llm_prefill(gm, one_msg, 1, 0, NULL, NULL, &pr), LLM_ENOTSUP);
    char err[256];
    assert_int_equal(llm_cache_delete(oa, "abc", err, sizeof err), LLM_ENOTSUP);
    assert_int_equal(llm_cache_delete(gm, "abc", err, sizeof err), LLM_ENOTSUP);
    llm_model_info_t info;
    assert_int_equal(llm_models(gm, &info, err, sizeof err), LLM_ENOTSUP);
    llm_cache_entry_t *e;
    size_t n;
    assert_int_equal(llm_cache_entries(oa, &e, &n, err, sizeof err), LLM_ENOTSUP);
    assert_int_equal(llm_cache_entries(gm, &e, &n, err, sizeof err), LLM_ENOTSUP);
    assert_null(e);
    assert_int_equal(F.requests, 0);
    llm_provider_free(oa);
    llm_provider_free(gm);
}

/* ---- Gemini --------------------------------------------------------------- */

static llm_provider_t *gemini_fake(const llm_config_t *tweak)
{
    return provider(LLM_PROVIDER_GEMINI, F.url, "AIza-test", "gemini-test", tweak);
}

#define GEV(json) "data: " json "\r\n\r\n"

/* ---- the engine's cache salt ------------------------------------------------- */

/* The last request's "cache_salt", or NULL when it had none. */
static const char *sent_salt(void)
{
    return json_string_value(json_object_get(F.req, "cache_salt"));
}

/* A chat's salt goes to the local engine as "cache_salt" (and nowhere
 * else: not when none is set, not to an OpenAI-compatible server, not to
 * Gemini); a prefill's too; a salt the engine would refuse is refused
 * before anything is sent. */
static void test_cache_salt(void **state)
{
    (void)state;
    char url[160];
    snprintf(url, sizeof url, "%s/v1", F.url);
    llm_provider_t *local = provider(LLM_PROVIDER_LOCAL, url, NULL, NULL, NULL);
    llm_provider_t *oa = openai_fake(NULL);
    llm_provider_t *gm = gemini_fake(NULL);
    llm_params_t prm = llm_params_default();
    llm_result_t res;

    /* the local engine: sent when set, absent when NULL or "" */
    prm.cache_salt = "owner-7f3a";
    script_sse(0, false, CHUNK("a"), FINISH("stop"), DONE, NULL);
    assert_int_equal(llm_chat(local, one_msg, 1, &prm, NULL, NULL, &res), LLM_OK);
    llm_result_cleanup(&res);
    assert_non_null(sent_salt());
    assert_string_equal(sent_salt(), "owner-7f3a");
    const char *none[] = { NULL, "" };
    for (int i = 0; i < 2; i++) {
        prm.cache_salt = none[i];
        script_sse(0, false, CHUNK("a"), FINISH("stop"), DONE, NULL);
        assert_int_equal(llm_chat(local, one_msg, 1, &prm, NULL, NULL, &res), LLM_OK);
        llm_result_cleanup(&res);
        assert_non_null(F.req);
        assert_null(json_object_get(F.req, "cache_salt"));
    }

    /* remote providers never see it */
    prm.cache_salt = "owner-7f3a";
    script_sse(0, false, CHUNK("a"), FINISH("stop"), DONE, NULL);
    assert_int_equal(llm_chat(oa, one_msg, 1, &prm, NULL, NULL, &res), LLM_OK);
    llm_result_cleanup(&res);
    assert_string_equal(F.path, "/v1/chat/completions");
    assert_non_null(F.req);
    assert_null(json_object_get(F.req, "cache_salt"));
    script_sse(0, false,
               GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}],\"role\":\"model\"},"
                   "\"finishReason\":\"STOP\",\"index\":0}]}"),
               NULL);
    assert_int_equal(llm_chat(gm, one_msg, 1, &prm, NULL, NULL, &res), LLM_OK);
    llm_result_cleanup(&res);
    assert_non_null(F.req);
    assert_null(json_object_get(F.req, "cache_salt"));
    char *dump = json_dumps_compact(F.req);
    assert_non_null(dump);
    assert_null(strstr(dump, "owner-7f3a"));   /* nowhere in the request */
    free(dump);

    /* prefill: the salted call sends it, the plain one does not */
    script_reply(200, "application/json",
                 "{\"id\":\"e1\",\"n_tokens\":3,\"bytes\":10,\"tier\":\"ram\",\"prefill_ms\":1,"
                 "\"cached\":false}");
    llm_prefill_result_t pr;
    const llm_message_t sys[] = { { LLM_ROLE_SYSTEM, "doc" } };
    int chats = F.requests;
    assert_int_equal(llm_prefill_salted(local, sys, 1, LLM_PREFILL_DISK, "owner-7f3a", NULL, NULL,
                                        &pr),
                     LLM_OK);
    assert_string_equal(F.path, "/v1/cache/prefill");
    assert_non_null(sent_salt());
    assert_string_equal(sent_salt(), "owner-7f3a");
    assert_string_equal(json_string_value(json_object_get(F.req, "tier")), "disk");
    assert_string_equal(pr.id, "e1");
    assert_int_equal(llm_prefill(local, sys, 1, 0, NULL, NULL, &pr), LLM_OK);
    assert_null(json_object_get(F.req, "cache_salt"));
    assert_int_equal(llm_prefill_salted(local, sys, 1, 0, "", NULL, NULL, &pr), LLM_OK);
    assert_null(json_object_get(F.req, "cache_salt"));
    assert_int_equal(F.requests, chats + 3);
    /* an OpenAI-compatible server has no cache API, salted or not */
    assert_int_equal(llm_prefill_salted(oa, sys, 1, 0, "owner-7f3a", NULL, NULL, &pr),
                     LLM_ENOTSUP);

    /* over the engine's limit, or not UTF-8: refused here, nothing sent */
    char big[LLM_CACHE_SALT_MAX + 2];
    memset(big, 's', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    int before = F.requests;
    prm.cache_salt = big;
    assert_int_equal(llm_chat(local, one_msg, 1, &prm, NULL, NULL, &res), LLM_EINVAL);
    assert_true(res.error[0] != '\0');
    llm_result_cleanup(&res);
    assert_int_equal(llm_prefill_salted(local, sys, 1, 0, big, NULL, NULL, &pr), LLM_EINVAL);
    assert_int_equal(llm_prefill_salted(local, sys, 1, 0, "bad \xff", NULL, NULL, &pr),
                     LLM_EINVAL);
    assert_int_equal(F.requests, before);
    big[LLM_CACHE_SALT_MAX] = '\0';   /* exactly the limit: sent */
    script_sse(0, false, CHUNK("a"), FINISH("stop"), DONE, NULL);
    assert_int_equal(llm_chat(local, one_msg, 1, &prm, NULL, NULL, &res), LLM_OK);
    llm_result_cleanup(&res);
    assert_int_equal(strlen(sent_salt()), LLM_CACHE_SALT_MAX);

    llm_provider_free(local);
    llm_provider_free(oa);
    llm_provider_free(gm);
}


static void test_gemini_stream(void **state)
{
    (void)state;
    script_sse(10, false,
               GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Bonjour\"}],\"role\":\"model\"},"
                   "\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":10,\"totalTokenCount\":10},"
                   "\"modelVersion\":\"gemini-test-001\"}"),
               GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\" le \"},{\"text\":\"hmm...\","
                   "\"thought\":true},{\"text\":\"monde\"}],\"role\":\"model\"},\"index\":0}]}"),
               GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\" \\u00e0 tous\"}],\"role\":"
                   "\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{"
                   "\"promptTokenCount\":10,\"candidatesTokenCount\":6,\"cachedContentTokenCount\":4,"
                   "\"totalTokenCount\":16},\"modelVersion\":\"gemini-test-001\"}"),
               NULL);
    llm_provider_t *p = gemini_fake(NULL);
    const llm_message_t msgs[] = {
        { LLM_ROLE_SYSTEM, "You are terse." },
        { LLM_ROLE_USER, "Hi" },
        { LLM_ROLE_USER, "Are you there?" },
        { LLM_ROLE_ASSISTANT, "Yes." },
        { LLM_ROLE_SYSTEM, "Second system" },
        { LLM_ROLE_USER, "Tell me" },
    };
    llm_params_t prm = llm_params_default();
    prm.max_tokens = 64;
    prm.temperature = 0.25;
    prm.top_p = 0.75;
    prm.stop[0] = "STOP!";
    rec_t r;
    rec_init(&r);
    llm_result_t res;
    int rc = llm_chat_stream(p, msgs, 6, &prm, &rec_cb, &r, &res);
    if (rc != LLM_OK)
        fail_msg("chat failed: %s", res.error);
    assert_string_equal(rec_text(&r), "Bonjour le monde \xc3\xa0 tous");
    assert_true(r.all_valid);
    assert_string_equal(res.finish_reason, "stop");
    assert_int_equal(res.usage.prompt_tokens, 10);
    assert_int_equal(res.usage.completion_tokens, 6);
    assert_int_equal(res.usage.cached_tokens, 4);
    assert_string_equal(res.model, "gemini-test-001");

    assert_string_equal(F.path, "/v1beta/models/gemini-test:streamGenerateContent");
    assert_string_equal(F.alt, "sse");
    assert_string_equal(F.goog, "AIza-test");
    assert_string_equal(F.auth, "");
    json_t *si = json_object_get(json_object_get(F.req, "systemInstruction"), "parts");
    assert_int_equal(json_array_size(si), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(si, 0), "text")), "You are terse.");
    assert_string_equal(json_string_value(json_object_get(json_array_get(si, 1), "text")), "Second system");
    json_t *contents = json_object_get(F.req, "contents");
    assert_int_equal(json_array_size(contents), 3);
    const char *roles[] = { "user", "model", "user" };
    size_t nparts[] = { 2, 1, 1 };
    for (size_t i = 0; i < 3; i++) {
        json_t *c = json_array_get(contents, i);
        assert_string_equal(json_string_value(json_object_get(c, "role")), roles[i]);
        assert_int_equal(json_array_size(json_object_get(c, "parts")), nparts[i]);
    }
    json_t *merged = json_object_get(json_array_get(contents, 0), "parts");
    assert_string_equal(json_string_value(json_object_get(json_array_get(merged, 1), "text")),
                        "Are you there?");
    json_t *gc = json_object_get(F.req, "generationConfig");
    assert_int_equal(json_integer_value(json_object_get(gc, "maxOutputTokens")), 64);
    assert_true(json_real_value(json_object_get(gc, "temperature")) == 0.25);
    assert_true(json_real_value(json_object_get(gc, "topP")) == 0.75);
    assert_string_equal(json_string_value(json_array_get(json_object_get(gc, "stopSequences"), 0)), "STOP!");
    assert_null(json_object_get(F.req, "model"));
    assert_null(json_object_get(F.req, "messages"));
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    llm_provider_free(p);
}

static void test_gemini_finish_reasons(void **state)
{
    (void)state;
    static const struct {
        const char *event, *want;
    } cases[] = {
        { GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},\"finishReason\":\"MAX_TOKENS\"}]}"), "length" },
        { GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},\"finishReason\":\"SAFETY\"}]}"), "content_filter" },
        { GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},\"finishReason\":\"MALFORMED_FUNCTION_CALL\"}]}"), "malformed_function_call" },
    };
    llm_provider_t *p = gemini_fake(NULL);
    for (size_t i = 0; i < 3; i++) {
        script_sse(0, false, cases[i].event, NULL);
        rec_t r;
        rec_init(&r);
        llm_result_t res;
        assert_int_equal(run_chat(p, &r, &res), LLM_OK);
        assert_string_equal(res.finish_reason, cases[i].want);
        assert_string_equal(res.model, "gemini-test"); /* none reported: the configured one */
        llm_result_cleanup(&res);
        buf_cleanup(&r.text);
    }
    llm_provider_free(p);
}

static void test_gemini_errors(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *body;
        int rc;
        const char *says;
    } cases[] = {
        { 400,
          "{\"error\":{\"code\":400,\"message\":\"API key not valid. Please pass a valid API key.\","
          "\"status\":\"INVALID_ARGUMENT\",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc."
          "ErrorInfo\",\"reason\":\"API_KEY_INVALID\"}]}}",
          LLM_EAUTH, "The API key was rejected by Gemini: API key not valid" },
        { 400,
          "{\"error\":{\"code\":400,\"message\":\"The input token count (1200000) exceeds the maximum "
          "number of tokens allowed (1048576).\",\"status\":\"INVALID_ARGUMENT\"}}",
          LLM_ETOOLONG, "input token count" },
        { 400,
          "[{\"error\":{\"code\":400,\"message\":\"Invalid value at 'generation_config.temperature'\","
          "\"status\":\"INVALID_ARGUMENT\"}}]",
          LLM_EREFUSED, "Gemini refused the request (HTTP 400): Invalid value" },
        { 403,
          "{\"error\":{\"code\":403,\"message\":\"Method doesn't allow unregistered callers.\","
          "\"status\":\"PERMISSION_DENIED\"}}",
          LLM_EAUTH, "unregistered callers" },
        { 429,
          "{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted (e.g. check quota).\","
          "\"status\":\"RESOURCE_EXHAUSTED\"}}",
          LLM_ERATELIMIT, "Rate limited by Gemini: Resource has been exhausted" },
        { 500,
          "{\"error\":{\"code\":500,\"message\":\"An internal error has occurred.\",\"status\":\"INTERNAL\"}}",
          LLM_EUPSTREAM, "Error from Gemini (HTTP 500): An internal error" },
        { 503,
          "{\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}",
          LLM_EUNAVAIL, "Gemini is unavailable: The model is overloaded." },
        { 404,
          "{\"error\":{\"code\":404,\"message\":\"models/gemini-test is not found\",\"status\":\"NOT_FOUND\"}}",
          LLM_ENOTFOUND, "is not found" },
    };
    llm_provider_t *p = gemini_fake(NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        script_reply(cases[i].status, "application/json", cases[i].body);
        rec_t r;
        rec_init(&r);
        llm_result_t res;
        int rc = run_chat(p, &r, &res);
        if (rc != cases[i].rc)
            fail_msg("case %zu (HTTP %d): got %d (%s), want %d", i, cases[i].status, rc, res.error,
                     cases[i].rc);
        assert_contains(res.error, cases[i].says);
        llm_result_cleanup(&res);
        buf_cleanup(&r.text);
    }
    llm_provider_free(p);
}

static void test_gemini_stream_failures(void **state)
{
    (void)state;
    llm_config_t c = llm_config_default(LLM_PROVIDER_GEMINI);
    c.idle_timeout_ms = 300;
    llm_provider_t *p = gemini_fake(&c);
    static const struct {
        const char *ev1, *ev2;
        bool hang;
        int rc;
        const char *says;
    } cases[] = {
        /* malformed */
        { GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}"),
          GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]}}]"), false, LLM_EPROTO,
          "Malformed event from Gemini" },
        { GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}"),
          GEV("{\"candidates\":[{\"content\":{\"parts\":{\"text\":\"b\"}}}]}"), false, LLM_EPROTO,
          "'parts' is not an array" },
        /* an error event mid-stream */
        { GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}"),
          GEV("{\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}"),
          false, LLM_EUNAVAIL, "overloaded" },
        /* no finishReason before the end */
        { GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}"), NULL, false,
          LLM_ECONN, "ended before it was complete" },
        /* a hang */
        { GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}"), NULL, true,
          LLM_ETIMEOUT, "Gemini stopped sending" },
        /* a prompt blocked outright */
        { GEV("{\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":5}}"),
          NULL, false, LLM_EREFUSED, "Gemini refused to answer this prompt (SAFETY)" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        script_sse(0, cases[i].hang, cases[i].ev1, cases[i].ev2, NULL);
        rec_t r;
        rec_init(&r);
        llm_result_t res;
        int rc = run_chat(p, &r, &res);
        if (rc != cases[i].rc)
            fail_msg("case %zu: got %d (%s), want %d", i, rc, res.error, cases[i].rc);
        assert_contains(res.error, cases[i].says);
        if (i < 5)
            assert_string_equal(rec_text(&r), "a");
        llm_result_cleanup(&res);
        buf_cleanup(&r.text);
    }
    llm_provider_free(p);
}

/* Only system messages: Gemini needs contents, so they become the user's. */
static void test_gemini_only_system(void **state)
{
    (void)state;
    script_sse(0, false,
               GEV("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"ok\"}]},\"finishReason\":\"STOP\"}]}"),
               NULL);
    char url[160];
    snprintf(url, sizeof url, "%s/v1beta/", F.url); /* a versioned base URL is kept */
    llm_provider_t *p = provider(LLM_PROVIDER_GEMINI, url, "k", "models/gemini-test", NULL);
    const llm_message_t msgs[] = { { LLM_ROLE_SYSTEM, "Summarize: text" } };
    llm_result_t res;
    assert_int_equal(llm_chat(p, msgs, 1, NULL, NULL, NULL, &res), LLM_OK);
    assert_string_equal(res.text, "ok");
    assert_string_equal(F.path, "/v1beta/models/gemini-test:streamGenerateContent");
    assert_null(json_object_get(F.req, "systemInstruction"));
    assert_null(json_object_get(F.req, "generationConfig"));
    json_t *c0 = json_array_get(json_object_get(F.req, "contents"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "role")), "user");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(c0, "parts"), 0), "text")),
                        "Summarize: text");
    llm_result_cleanup(&res);
    llm_provider_free(p);
}

static void test_gemini_count_tokens(void **state)
{
    (void)state;
    script_reply(200, "application/json", "{\"totalTokens\":42,\"promptTokensDetails\":[]}");
    llm_provider_t *p = gemini_fake(NULL);
    int64_t n = 0;
    char err[256];
    assert_int_equal(llm_tokenize_count(p, "some document text", 18, &n, err, sizeof err), LLM_OK);
    assert_int_equal(n, 42);
    assert_string_equal(F.path, "/v1beta/models/gemini-test:countTokens");
    assert_string_equal(F.goog, "AIza-test");
    json_t *c0 = json_array_get(json_object_get(F.req, "contents"), 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(c0, "parts"), 0), "text")),
                        "some document text");

    script_reply(400, "application/json",
                 "{\"error\":{\"code\":400,\"message\":\"bad\",\"status\":\"INVALID_ARGUMENT\"}}");
    assert_int_equal(llm_tokenize_count(p, "x", 1, &n, err, sizeof err), LLM_EREFUSED);
    assert_contains(err, "bad");
    script_reply(200, "application/json", "{\"nope\":1}");
    assert_int_equal(llm_tokenize_count(p, "x", 1, &n, err, sizeof err), LLM_EPROTO);
    llm_provider_free(p);
}

int main(void)
{
    if (llm_global_init() != LLM_OK)
        return 1;
#define T(f) cmocka_unit_test_setup_teardown(f, fake_setup, fake_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes),
        cmocka_unit_test(test_config),
        T(test_openai_stream),
        T(test_openai_engine_shape),
        T(test_openai_not_streamed),
        T(test_openai_collect),
        T(test_key_source),
        T(test_openai_http_errors),
        T(test_openai_error_event),
        T(test_openai_limits),
        T(test_openai_malformed),
        T(test_openai_ends_early),
        cmocka_unit_test(test_openai_connection_drops),
        cmocka_unit_test(test_openai_done_without_end),
        T(test_openai_idle_timeout),
        cmocka_unit_test(test_openai_first_byte_timeout),
        cmocka_unit_test(test_status_timeout),
        cmocka_unit_test(test_refused),
        T(test_cancel),
        T(test_cancel_polls),
        T(test_cancel_from_delta),
        T(test_cancel_before_start),
        T(test_not_supported),
        T(test_cache_salt),
        T(test_gemini_stream),
        T(test_gemini_finish_reasons),
        T(test_gemini_errors),
        T(test_gemini_stream_failures),
        T(test_gemini_only_system),
        T(test_gemini_count_tokens),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    llm_global_cleanup();
    return rc;
}
