/* test_llm_openai.c — the local and openai providers against real servers:
 * kvchat-engine with the tiny model (started here on a free port with its
 * own cache directory), and llama-server built from the same llama.cpp
 * when KVCHAT_LLAMA_SERVER names it (skipped with a note otherwise).
 *
 * Covered:
 * - streamed deltas (valid UTF-8) concatenate to the collected answer of
 *   the same greedy request; usage, timings and model arrive;
 * - a repeated prompt reports cached tokens, and so does a chat whose
 *   document prefix was prefilled;
 * - should_stop aborts a long generation within 200 ms; the engine's
 *   /metrics then shows no busy slot and one more cancelled request;
 * - prefill streams progress up to its total, returns an entry (tokens,
 *   bytes, id), answers "cached" the second time; cache entries delete
 *   once (then LLM_ENOTFOUND) and bad ids are refused before any request;
 * - a salted prefill is restored by chats of its salt only; the salt is
 *   not sent when the engine is used as an "openai" provider;
 * - token counts grow with the text; /v1/models says random_weights and
 *   the slot size;
 * - a prompt over the slot's context is LLM_ETOOLONG (chat and prefill);
 * - a stopped engine is LLM_EDOWN at once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <openssl/evp.h>

#include "app/llm/llm.h"
#include "common/buf.h"
#include "common/utf8.h"

#define ENGINE KVCHAT_BIN_DIR "/kvchat-engine"
#define MODEL KVCHAT_TEST_MODELS_DIR "/tiny.gguf"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- servers as child processes ------------------------------------------ */

typedef struct {
    pid_t pid;
    int port;
    char dir[64];   /* temporary directory: cache and log */
    char log[128];
} server_t;

static server_t g_engine;
static server_t g_llama; /* stopped by the group teardown if a test fails */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    close(fd);
    return ntohs(a.sin_port);
}

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
    return buf_append(ud, p, sz * n) == BUF_OK ? sz * n : 0;
}

/* GET http://127.0.0.1:port/path into out (reset first); the status. */
static long http_get(int port, const char *path, buf_t *out)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    buf_reset(out);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    return status;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void server_stop(server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        double deadline = now_ms() + 20000;
        int status;
        while (waitpid(s->pid, &status, WNOHANG) == 0) {
            if (now_ms() > deadline) {
                kill(-s->pid, SIGKILL);
                waitpid(s->pid, &status, 0);
                break;
            }
            usleep(20 * 1000);
        }
        s->pid = 0;
    }
    if (strncmp(s->dir, "/tmp/kvchat-test-", 17) == 0)
        nftw(s->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    s->dir[0] = '\0';
}

/* Start exe with args (NULL-terminated) plus "--port N" in a fresh
 * temporary directory ("{dir}" in an argument is replaced by it); wait up
 * to timeout_s for /health to answer 200. Returns false (and cleans up)
 * if it does not. */
static bool server_start(server_t *s, const char *exe, const char *const *args, int timeout_s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/kvchat-test-XXXXXX");
    if (!mkdtemp(s->dir))
        return false;
    snprintf(s->log, sizeof s->log, "%s/server.log", s->dir);
    s->port = free_port();
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    char cache[96];
    snprintf(cache, sizeof cache, "%s/cache", s->dir);
    const char *argv[40];
    int n = 0;
    argv[n++] = exe;
    for (int i = 0; args[i] && n < 36; i++)
        argv[n++] = strcmp(args[i], "{dir}") == 0 ? cache : args[i];
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        setpgid(0, 0);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    buf_t b;
    buf_init(&b, 1 << 20);
    double deadline = now_ms() + timeout_s * 1000.0;
    bool ok = false;
    while (!ok && now_ms() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            break;
        }
        ok = http_get(s->port, "/health", &b) == 200;
        if (!ok)
            usleep(50 * 1000);
    }
    buf_cleanup(&b);
    if (!ok) {
        char cmd[200];
        snprintf(cmd, sizeof cmd, "tail -n 20 %s >&2", s->log);
        if (system(cmd) < 0)
            perror("system");
        server_stop(s);
    }
    return ok;
}

/* A gauge or counter line "name value" of /metrics; -1 if absent. */
static double metric(int port, const char *name)
{
    buf_t b;
    buf_init(&b, 1 << 20);
    double v = -1;
    if (http_get(port, "/metrics", &b) == 200 && b.data) {
        size_t nl = strlen(name);
        for (const char *l = b.data; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
            if (strncmp(l, name, nl) == 0 && l[nl] == ' ') {
                v = strtod(l + nl + 1, NULL);
                break;
            }
        }
    }
    buf_cleanup(&b);
    return v;
}

/* ---- a recording client --------------------------------------------------- */

typedef struct {
    buf_t text;
    int deltas;
    bool all_valid;
    int stop_after;   /* should_stop turns true after this many deltas; -1 never */
    double stop_at;
    int progress, last_done, last_total;
    bool progress_monotonic;
} rec_t;

static void rec_init(rec_t *r)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->text, (size_t)16 << 20);
    r->all_valid = true;
    r->stop_after = -1;
    r->progress_monotonic = true;
}

static int rec_delta(void *ud, const char *t, size_t n)
{
    rec_t *r = ud;
    if (n == 0 || !utf8_valid(t, n))
        r->all_valid = false;
    buf_append(&r->text, t, n);
    r->deltas++;
    return 0;
}

static bool rec_stop(void *ud)
{
    rec_t *r = ud;
    if (r->stop_after >= 0 && r->deltas >= r->stop_after) {
        if (r->stop_at == 0)
            r->stop_at = now_ms();
        return true;
    }
    return false;
}

static void rec_progress(void *ud, int done, int total)
{
    rec_t *r = ud;
    if (done < r->last_done || done > total)
        r->progress_monotonic = false;
    r->progress++;
    r->last_done = done;
    r->last_total = total;
}

static const llm_callbacks_t rec_cb = { rec_delta, rec_progress, rec_stop };

static const char *rec_text(rec_t *r) { return r->text.data ? r->text.data : ""; }

#define assert_contains(hay, needle)                                                     \
    do {                                                                                  \
        if (!strstr((hay), (needle)))                                                     \
            fail_msg("'%s' does not contain '%s'", (hay), (needle));                       \
    } while (0)

static llm_provider_t *provider_at(llm_kind_t kind, int port)
{
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", port);
    llm_config_t c = llm_config_default(kind);
    c.base_url = url;
    llm_provider_t *p = NULL;
    char err[256];
    if (llm_provider_new(&c, &p, err, sizeof err) != LLM_OK)
        fail_msg("llm_provider_new: %s", err);
    return p;
}

/* Some text of about n words, different for each seed. */
static char *words(int n, int seed)
{
    static const char *w[] = { "cache", "river", "token", "stone", "paper", "light", "north",
                               "green", "table", "quiet", "seven", "metal", "cloud", "bread" };
    buf_t b;
    buf_init(&b, (size_t)n * 16 + 64);
    buf_printf(&b, "Document %d.", seed);
    for (int i = 0; i < n; i++)
        buf_printf(&b, " %s", w[(i * 7 + seed * 3 + i / 5) % 14]);
    return buf_steal(&b, NULL);
}

/* ---- group setup ---------------------------------------------------------- */

static int engine_up(void **state)
{
    (void)state;
    const char *args[] = { "--model", MODEL, "--threads", "2", "--ctx-size", "2048",
                           "--cache-dir", "{dir}", "--reset", NULL };
    if (!server_start(&g_engine, ENGINE, args, 120)) {
        fprintf(stderr, "kvchat-engine did not start\n");
        return -1;
    }
    return 0;
}

static int engine_down(void **state)
{
    (void)state;
    server_stop(&g_llama);
    server_stop(&g_engine);
    return 0;
}

/* ---- streaming and collected answers -------------------------------------- */

/* Stream a greedy answer, then collect the same request: same text. */
static void check_stream_vs_collect(llm_provider_t *p, bool engine)
{
    const llm_message_t msgs[] = {
        { LLM_ROLE_SYSTEM, "You are a careful assistant." },
        { LLM_ROLE_USER, "Write a short poem about caches." },
    };
    llm_params_t prm = llm_params_default();
    prm.max_tokens = 24;
    prm.temperature = 0;
    rec_t r;
    rec_init(&r);
    llm_result_t a, b;
    int rc = llm_chat_stream(p, msgs, 2, &prm, &rec_cb, &r, &a);
    if (rc != LLM_OK)
        fail_msg("stream: %s", a.error);
    assert_true(r.deltas > 1);
    assert_true(r.all_valid);
    assert_int_equal(a.text_len, r.text.len);
    assert_true(a.finish_reason[0] != '\0');
    assert_true(a.usage.prompt_tokens > 0);
    assert_true(a.usage.completion_tokens > 0 && a.usage.completion_tokens <= 24);
    assert_true(a.usage.cached_tokens >= 0);
    assert_true(a.ttft_ms >= 0 && a.ttft_ms <= a.total_ms);
    assert_true(a.model[0] != '\0');
    if (engine) {
        assert_string_equal(a.model, "tiny.gguf");
        assert_non_null(a.timings);
        assert_int_equal(json_integer_value(json_object_get(a.timings, "predicted_n")),
                         a.usage.completion_tokens);
        assert_true(json_is_string(json_object_get(a.timings, "cache_tier")));
    }

    rc = llm_chat(p, msgs, 2, &prm, NULL, NULL, &b);
    if (rc != LLM_OK)
        fail_msg("collect: %s", b.error);
    assert_string_equal(b.text, rec_text(&r));
    assert_int_equal(b.usage.completion_tokens, a.usage.completion_tokens);
    assert_string_equal(b.finish_reason, a.finish_reason);
    llm_result_cleanup(&a);
    llm_result_cleanup(&b);
    buf_cleanup(&r.text);
}

static void test_stream_vs_collect(void **state)
{
    (void)state;
    llm_provider_t *p = provider_at(LLM_PROVIDER_LOCAL, g_engine.port);
    check_stream_vs_collect(p, true);
    llm_provider_free(p);
    /* The same engine as a plain OpenAI-compatible server. */
    p = provider_at(LLM_PROVIDER_OPENAI, g_engine.port);
    check_stream_vs_collect(p, true);
    llm_provider_free(p);
}

static void test_cached_tokens(void **state)
{
    (void)state;
    llm_provider_t *p = provider_at(LLM_PROVIDER_LOCAL, g_engine.port);
    char *doc = words(200, 11);
    const llm_message_t msgs[] = { { LLM_ROLE_SYSTEM, doc }, { LLM_ROLE_USER, "What is it about?" } };
    llm_params_t prm = llm_params_default();
    prm.max_tokens = 4;
    llm_result_t a, b;
    assert_int_equal(llm_chat(p, msgs, 2, &prm, NULL, NULL, &a), LLM_OK);
    assert_int_equal(llm_chat(p, msgs, 2, &prm, NULL, NULL, &b), LLM_OK);
    assert_true(a.usage.prompt_tokens > 200);
    assert_int_equal(b.usage.prompt_tokens, a.usage.prompt_tokens);
    assert_true(b.usage.cached_tokens > a.usage.cached_tokens);
    assert_true(b.usage.cached_tokens >= 200);
    assert_int_equal(json_integer_value(json_object_get(b.timings, "cache_n")), b.usage.cached_tokens);
    llm_result_cleanup(&a);
    llm_result_cleanup(&b);
    free(doc);
    llm_provider_free(p);
}

static void test_cancel(void **state)
{
    (void)state;
    llm_provider_t *p = provider_at(LLM_PROVIDER_LOCAL, g_engine.port);
    double cancelled0 = metric(g_engine.port, "kvchat_engine_requests_total{outcome=\"cancelled\"}");
    assert_true(cancelled0 >= 0);
    json_t *extra = json_pack("{s:b}", "ignore_eos", 1);
    llm_params_t prm = llm_params_default();
    prm.max_tokens = 1000;
    prm.extra = extra;
    rec_t r;
    rec_init(&r);
    r.stop_after = 1;
    llm_result_t res;
    int rc = llm_chat_stream(p, (llm_message_t[]){ { LLM_ROLE_USER, "Go on forever." } }, 1, &prm,
                             &rec_cb, &r, &res);
    double late = now_ms() - r.stop_at;
    if (rc != LLM_ECANCELLED)
        fail_msg("got %d (%s) after %d deltas", rc, res.error, r.deltas);
    assert_true(r.stop_at > 0);
    assert_true(late < 200);
    assert_string_equal(res.finish_reason, "cancelled");
    /* The engine noticed and freed the slot. */
    double busy = -1, cancelled = -1;
    for (int i = 0; i < 100; i++) {
        busy = metric(g_engine.port, "kvchat_engine_slots_busy");
        cancelled = metric(g_engine.port, "kvchat_engine_requests_total{outcome=\"cancelled\"}");
        if (busy == 0 && cancelled == cancelled0 + 1)
            break;
        usleep(30 * 1000);
    }
    assert_true(busy == 0);
    assert_true(cancelled == cancelled0 + 1);
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    json_decref(extra);
    llm_provider_free(p);
}

/* ---- engine calls ---------------------------------------------------------- */

static void test_prefill(void **state)
{
    (void)state;
    llm_provider_t *p = provider_at(LLM_PROVIDER_LOCAL, g_engine.port);
    char *doc = words(900, 23);
    const llm_message_t sys[] = { { LLM_ROLE_SYSTEM, doc } };
    rec_t r;
    rec_init(&r);
    llm_prefill_result_t a, b;
    int rc = llm_prefill(p, sys, 1, 0, &rec_cb, &r, &a);
    if (rc != LLM_OK)
        fail_msg("prefill: %s", a.error);
    assert_true(a.n_tokens > 900);
    assert_true(a.bytes > 0);
    assert_true(a.id[0] != '\0');
    assert_false(a.cached);
    assert_true(a.prefill_ms > 0);
    assert_true(a.tier[0] != '\0');
    assert_true(r.progress >= 2); /* several prompt chunks */
    assert_true(r.progress_monotonic);
    assert_int_equal(r.last_done, r.last_total);
    assert_true(r.last_total > 0);

    /* Stored already: answered at once, without progress events. */
    assert_int_equal(llm_prefill(p, sys, 1, LLM_PREFILL_PIN, NULL, NULL, &b), LLM_OK);
    assert_true(b.cached);
    assert_true(b.pinned);
    assert_string_equal(b.id, a.id);
    assert_int_equal(b.n_tokens, a.n_tokens);

    /* A chat over the prefilled document restores it. */
    const llm_message_t chat[] = { { LLM_ROLE_SYSTEM, doc }, { LLM_ROLE_USER, "Summarize." } };
    llm_params_t prm = llm_params_default();
    prm.max_tokens = 2;
    llm_result_t res;
    assert_int_equal(llm_chat(p, chat, 2, &prm, NULL, NULL, &res), LLM_OK);
    assert_true(res.usage.cached_tokens >= a.n_tokens);
    llm_result_cleanup(&res);

    char err[256];
    /* The engine lists the entry, pinned, with its tokens. */
    llm_cache_entry_t *ents = NULL;
    size_t n_ents = 0, seen = 0;
    assert_int_equal(llm_cache_entries(p, &ents, &n_ents, err, sizeof err), LLM_OK);
    for (size_t i = 0; i < n_ents; i++) {
        if (strcmp(ents[i].id, a.id) != 0)
            continue;
        seen++;
        assert_int_equal(ents[i].n_tokens, a.n_tokens);
        assert_true(ents[i].pinned);
        assert_true(strcmp(ents[i].tier, "ram") == 0 || strcmp(ents[i].tier, "disk") == 0);
    }
    assert_int_equal(seen, 1);
    free(ents);

    assert_int_equal(llm_cache_delete(p, a.id, err, sizeof err), LLM_OK);
    assert_int_equal(llm_cache_entries(p, &ents, &n_ents, err, sizeof err), LLM_OK);
    for (size_t i = 0; i < n_ents; i++)
        assert_string_not_equal(ents[i].id, a.id);
    free(ents);
    assert_int_equal(llm_cache_delete(p, a.id, err, sizeof err), LLM_ENOTFOUND);
    assert_contains(err, a.id);
    assert_int_equal(llm_cache_delete(p, "../v1/cache/reset", err, sizeof err), LLM_EINVAL);
    assert_int_equal(llm_cache_delete(p, "", err, sizeof err), LLM_EINVAL);

    buf_cleanup(&r.text);
    free(doc);
    llm_provider_free(p);
}

/* Salts through the real engine: a document prefilled under one salt is
 * restored by a chat of that salt only; a chat of another salt, or of
 * none, finds nothing of it (and prefilling the same text under another
 * salt is a new entry, not "cached"). The same engine as an "openai"
 * provider is never sent the salt, and so shares the unsalted cache. */
static void test_salted_prefill(void **state)
{
    (void)state;
    llm_provider_t *p = provider_at(LLM_PROVIDER_LOCAL, g_engine.port);
    char *doc = words(600, 41);
    const llm_message_t sys[] = { { LLM_ROLE_SYSTEM, doc } };
    llm_prefill_result_t a, b, c;
    int rc = llm_prefill_salted(p, sys, 1, 0, "alice-salt", NULL, NULL, &a);
    if (rc != LLM_OK)
        fail_msg("prefill: %s", a.error);
    assert_false(a.cached);
    assert_true(a.n_tokens > 600);
    assert_int_equal(llm_prefill_salted(p, sys, 1, 0, "alice-salt", NULL, NULL, &b), LLM_OK);
    assert_true(b.cached);
    assert_string_equal(b.id, a.id);
    assert_int_equal(llm_prefill_salted(p, sys, 1, 0, "bob-salt", NULL, NULL, &c), LLM_OK);
    assert_false(c.cached);
    assert_string_not_equal(c.id, a.id);

    const llm_message_t chat[] = { { LLM_ROLE_SYSTEM, doc }, { LLM_ROLE_USER, "Summarize." } };
    llm_params_t prm = llm_params_default();
    prm.max_tokens = 2;
    llm_result_t res;
    prm.cache_salt = "alice-salt";
    assert_int_equal(llm_chat(p, chat, 2, &prm, NULL, NULL, &res), LLM_OK);
    assert_true(res.usage.cached_tokens >= a.n_tokens);
    llm_result_cleanup(&res);
    prm.cache_salt = "carol-salt";   /* nobody prefilled anything under it */
    assert_int_equal(llm_chat(p, chat, 2, &prm, NULL, NULL, &res), LLM_OK);
    assert_int_equal(res.usage.cached_tokens, 0);
    llm_result_cleanup(&res);
    prm.cache_salt = NULL;
    assert_int_equal(llm_chat(p, chat, 2, &prm, NULL, NULL, &res), LLM_OK);
    assert_true(res.usage.cached_tokens < a.n_tokens / 2);
    llm_result_cleanup(&res);
    /* as an OpenAI-compatible server: the salt stays home, so this chat
     * is the unsalted one just made, and restores it */
    llm_provider_t *oa = provider_at(LLM_PROVIDER_OPENAI, g_engine.port);
    prm.cache_salt = "alice-salt";
    assert_int_equal(llm_chat(oa, chat, 2, &prm, NULL, NULL, &res), LLM_OK);
    assert_true(res.usage.cached_tokens >= a.n_tokens);
    llm_result_cleanup(&res);
    llm_provider_free(oa);

    /* the engine lists each entry with its salt's hash */
    char err[256], want[65];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    assert_int_equal(EVP_Digest("alice-salt", 10, md, &mdlen, EVP_sha256(), NULL), 1);
    for (unsigned i = 0; i < 32; i++)
        snprintf(want + 2 * i, 3, "%02x", md[i]);
    llm_cache_entry_t *ents = NULL;
    size_t n_ents = 0;
    int seen = 0;
    assert_int_equal(llm_cache_entries(p, &ents, &n_ents, err, sizeof err), LLM_OK);
    for (size_t i = 0; i < n_ents; i++) {
        if (strcmp(ents[i].id, a.id) == 0) {
            assert_string_equal(ents[i].salt_hash, want);
            seen++;
        } else if (strcmp(ents[i].id, c.id) == 0) {
            assert_int_equal(strlen(ents[i].salt_hash), 64);
            assert_string_not_equal(ents[i].salt_hash, want);
            seen++;
        }
    }
    assert_int_equal(seen, 2);
    free(ents);
    assert_int_equal(llm_cache_delete(p, a.id, err, sizeof err), LLM_OK);
    assert_int_equal(llm_cache_delete(p, c.id, err, sizeof err), LLM_OK);
    free(doc);
    llm_provider_free(p);
}

static void test_tokenize(void **state)
{
    (void)state;
    llm_provider_t *p = provider_at(LLM_PROVIDER_LOCAL, g_engine.port);
    int64_t n1 = 0, n2 = 0;
    char err[256];
    assert_int_equal(llm_tokenize_count(p, "Hello world", 11, &n1, err, sizeof err), LLM_OK);
    assert_true(n1 >= 1 && n1 <= 11);
    char *doc = words(1000, 5);
    assert_int_equal(llm_tokenize_count(p, doc, strlen(doc), &n2, err, sizeof err), LLM_OK);
    assert_true(n2 > 1000 && n2 < (int64_t)strlen(doc));
    int64_t n0 = -1;
    assert_int_equal(llm_tokenize_count(p, "", 0, &n0, err, sizeof err), LLM_OK);
    assert_int_equal(n0, 0);
    free(doc);
    llm_provider_free(p);
}

static void test_models(void **state)
{
    (void)state;
    llm_provider_t *p = provider_at(LLM_PROVIDER_LOCAL, g_engine.port);
    llm_model_info_t info;
    char err[256];
    assert_int_equal(llm_models(p, &info, err, sizeof err), LLM_OK);
    assert_string_equal(info.id, "tiny.gguf");
    assert_true(info.random_weights);
    assert_int_equal(info.n_ctx_slot, 1024); /* 2048 over the default 2 slots */
    assert_true(info.n_ctx_train > 0);
    assert_true(info.cache_enabled);
    assert_true(info.name[0] != '\0');
    llm_provider_free(p);
}

static void test_too_long(void **state)
{
    (void)state;
    llm_provider_t *p = provider_at(LLM_PROVIDER_LOCAL, g_engine.port);
    char *doc = words(3000, 3);
    const llm_message_t msgs[] = { { LLM_ROLE_SYSTEM, doc }, { LLM_ROLE_USER, "Hi" } };
    llm_result_t res;
    rec_t r;
    rec_init(&r);
    assert_int_equal(llm_chat_stream(p, msgs, 2, NULL, &rec_cb, &r, &res), LLM_ETOOLONG);
    assert_int_equal(llm_http_status(res.rc), 422);
    assert_int_equal(res.upstream_status, 400);
    assert_contains(res.error, "tokens");
    assert_int_equal(r.deltas, 0);
    llm_result_cleanup(&res);
    llm_prefill_result_t pr;
    assert_int_equal(llm_prefill(p, msgs, 1, 0, NULL, NULL, &pr), LLM_ETOOLONG);
    assert_contains(pr.error, "too long");
    buf_cleanup(&r.text);
    free(doc);
    llm_provider_free(p);
}

static void test_engine_down(void **state)
{
    (void)state;
    llm_provider_t *p = provider_at(LLM_PROVIDER_LOCAL, free_port());
    llm_result_t res;
    double t0 = now_ms();
    assert_int_equal(llm_chat(p, (llm_message_t[]){ { LLM_ROLE_USER, "Hi" } }, 1, NULL, NULL, NULL,
                              &res),
                     LLM_EDOWN);
    assert_true(now_ms() - t0 < 1000);
    assert_contains(res.error, "The model server is not running");
    llm_result_cleanup(&res);
    llm_prefill_result_t pr;
    assert_int_equal(llm_prefill(p, (llm_message_t[]){ { LLM_ROLE_SYSTEM, "doc" } }, 1, 0, NULL,
                                 NULL, &pr),
                     LLM_EDOWN);
    llm_provider_free(p);
}

/* ---- llama-server ------------------------------------------------------------ */

static void test_llama_server(void **state)
{
    (void)state;
    const char *exe = getenv("KVCHAT_LLAMA_SERVER");
    if (!exe || !*exe || access(exe, X_OK) != 0) {
        printf("note: llama-server tests skipped (set KVCHAT_LLAMA_SERVER to its path, e.g. "
               "$(scripts/setup --print-prefix)/../server-build/bin/llama-server)\n");
        skip();
    }
    server_t *s = &g_llama;
    const char *args[] = { "-m", MODEL, "--host", "127.0.0.1", "-c", "2048", "-t", "2", "-np", "1",
                           NULL };
    if (!server_start(s, exe, args, 120))
        fail_msg("llama-server did not start");
    llm_provider_t *p = provider_at(LLM_PROVIDER_OPENAI, s->port);
    check_stream_vs_collect(p, false);
    llm_model_info_t info;
    char err[256];
    assert_int_equal(llm_models(p, &info, err, sizeof err), LLM_OK);
    assert_true(info.id[0] != '\0');
    int64_t n = 0;
    assert_int_equal(llm_tokenize_count(p, "Hello world", 11, &n, err, sizeof err), LLM_OK);
    assert_true(n >= 1 && n <= 11);
    /* Cancellation works the same on a server that is not ours. */
    json_t *extra = json_pack("{s:b}", "ignore_eos", 1);
    llm_params_t prm = llm_params_default();
    prm.max_tokens = 1000;
    prm.extra = extra;
    rec_t r;
    rec_init(&r);
    r.stop_after = 1;
    llm_result_t res;
    int rc = llm_chat_stream(p, (llm_message_t[]){ { LLM_ROLE_USER, "Go on forever." } }, 1, &prm,
                             &rec_cb, &r, &res);
    assert_int_equal(rc, LLM_ECANCELLED);
    assert_true(now_ms() - r.stop_at < 200);
    llm_result_cleanup(&res);
    buf_cleanup(&r.text);
    json_decref(extra);
    llm_provider_free(p);
    server_stop(s);
}

int main(void)
{
    if (llm_global_init() != LLM_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_vs_collect),
        cmocka_unit_test(test_cached_tokens),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_prefill),
        cmocka_unit_test(test_salted_prefill),
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_engine_down),
        cmocka_unit_test(test_llama_server),
    };
    int rc = cmocka_run_group_tests(tests, engine_up, engine_down);
    llm_global_cleanup();
    return rc;
}
