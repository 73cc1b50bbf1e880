/* bench_longdoc.c — a real manual of 60,000+ tokens, end to end through
 * kvchat: upload, caching of every part, then questions routed to parts
 * restored from the engine's disk tier.
 *
 * One kvchat (with its engine) on the given model and document. Measured:
 *   - caching: wall time, tokens and bytes on disk, per 1,000 document
 *     tokens;
 *   - 20 questions, each in a new session, each naming one function of the
 *     manual: time to first token at the client (median, worst), whether
 *     the part it was routed to holds that function's definition (the
 *     routing's hit rate), the tokens restored and from which tier;
 *   - routing alone, for every function the manual defines (one question
 *     each, GET /search: the part chat would route it to, no answer);
 * against, in the same run:
 *   (a) the cold prefill of the same part: its text (the part's chunks)
 *       and the same question sent to the same engine with cache_prompt
 *       false, three parts;
 *   (b) llama-server (when given) with the same part as its prompt: cold,
 *       then a second question on the same part (its slot's cache).
 *
 * Usage: kvchat-bench-longdoc --kvchat PATH --model PATH --doc PATH
 *                             [--llama-server PATH] [--threads N]
 *                             [--out FILE (appends)]
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_http.h"
#include "bench_util.h"
#include "common/buf.h"
#include "common/json.h"

#define API "/api/v1"
#define ENGINE_KEY "bench-longdoc-engine-key"
#define N_QUESTIONS 20
#define N_COLD 3

typedef struct {
    const char *kvchat, *model, *doc, *server, *out;
    int threads;
} opts_t;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kvchat-bench-longdoc: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* Functions of the nettle manual, from its start to its end. */
static const char *const g_functions[N_QUESTIONS] = {
    "sha256_init",          "sha3_384_update",       "ripemd160_update",
    "aes256_encrypt",       "camellia_set_decrypt_key", "des3_set_key",
    "xts_encrypt_message",  "gcm_aes192_set_key",    "ccm_aes128_update",
    "siv_cmac_aes256_set_key", "hmac_sm3_digest",    "cmac_des3_digest",
    "chacha_poly1305_encrypt", "pbkdf2_hmac_sha256", "yarrow256_random",
    "rsa_sha512_sign_digest", "dsa_public_key_init", "gostdsa_verify",
    "ed25519_sha512_sign",  "base64_encode_update",
};
/* Question `form` (0..3) about function fn, into q. */
static void question(char *q, size_t cap, int form, const char *fn)
{
    switch (form % 4) {
    case 0: snprintf(q, cap, "What does %s do?", fn); break;
    case 1: snprintf(q, cap, "How do I call %s, and what are its arguments?", fn); break;
    case 2: snprintf(q, cap, "When should I use %s?", fn); break;
    default: snprintf(q, cap, "What does %s return?", fn); break;
    }
}

static json_t *get_json(int port, const char *path)
{
    char *body = NULL;
    long st = bench_request(port, "GET", path, NULL, NULL, &body);
    json_t *j = st == 200 ? json_loads(body, 0, NULL) : NULL;
    if (!j)
        die("GET %s: %ld %.300s", path, st, body ? body : "");
    free(body);
    return j;
}

static long long jint(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* ---- kvchat ---- */

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
    return buf_append(ud, p, sz * n) == BUF_OK ? sz * n : 0;
}

static char *upload(int port, const char *path)
{
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d" API "/documents/upload", port);
    curl_mime *mime = curl_mime_init(c);
    curl_mimepart *part = curl_mime_addpart(mime);
    curl_mime_name(part, "file");
    curl_mime_filedata(part, path);
    const char *slash = strrchr(path, '/');
    curl_mime_filename(part, slash ? slash + 1 : path);
    buf_t b;
    buf_init(&b, 1 << 20);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 1200L);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_mime_free(mime);
    curl_easy_cleanup(c);
    json_t *j = status == 200 ? json_loads(b.data, 0, NULL) : NULL;
    if (!j)
        die("upload of %s: %ld %.300s", path, status, b.data ? b.data : "");
    char *id = strdup(json_string_value(json_object_get(j, "doc_id")));
    json_decref(j);
    buf_cleanup(&b);
    return id;
}

/* A streamed kvchat turn as the client sees it. */
typedef struct {
    double t0, t_first;
    long group;          /* rag_info.group_id, -1 without */
    long long cached;    /* usage.cached_tokens of the final event */
    char tier[16];
    bool done;
    buf_t line;
} turn_t;

static void turn_event(turn_t *t, const char *data)
{
    json_t *j = json_loads(data, 0, NULL);
    if (!j)
        return;
    json_t *ri = json_object_get(j, "rag_info");
    if (ri)
        t->group = (long)json_integer_value(json_object_get(ri, "group_id"));
    json_t *chunk = json_object_get(j, "chunk");
    if (json_is_string(chunk) && json_string_length(chunk) > 0 && t->t_first == 0)
        t->t_first = bench_now_ms();
    if (json_is_true(json_object_get(j, "done"))) {
        t->done = !json_object_get(j, "error");
        t->cached = (long long)json_integer_value(
            json_object_get(json_object_get(j, "usage"), "cached_tokens"));
        const char *tier =
            json_string_value(json_object_get(json_object_get(j, "timings"), "cache_tier"));
        snprintf(t->tier, sizeof t->tier, "%s", tier ? tier : "?");
    }
    json_decref(j);
}

static size_t turn_write(char *p, size_t sz, size_t n, void *ud)
{
    turn_t *t = ud;
    for (size_t i = 0; i < sz * n; i++) {
        if (p[i] != '\n') {
            buf_append(&t->line, p + i, 1);
            continue;
        }
        if (t->line.len > 6 && strncmp(t->line.data, "data: ", 6) == 0)
            turn_event(t, t->line.data + 6);
        buf_reset(&t->line);
    }
    return sz * n;
}

static double kvchat_ask(int port, const char *session, const char *doc, const char *question,
                         turn_t *t)
{
    memset(t, 0, sizeof *t);
    t->group = -1;
    buf_init(&t->line, 4u << 20);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d" API "/session/%s/messages/stream", port,
             session);
    json_t *b = json_pack("{s:s, s:s}", "message", question, "document_id", doc);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, turn_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 1200L);
    t->t0 = bench_now_ms();
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(body);
    buf_cleanup(&t->line);
    if (rc != CURLE_OK || !t->done || t->t_first == 0)
        die("question failed: %s", question);
    return t->t_first - t->t0;
}

/* ---- the document's chunks ---- */

typedef struct {
    char **content;    /* per chunk */
    long n;
    json_t *groups;    /* GET /groups */
} doc_t;

static void load_doc(int port, const char *id, doc_t *d)
{
    char path[256];
    snprintf(path, sizeof path, API "/documents/%s", id);
    json_t *j = get_json(port, path);
    d->n = (long)jint(j, "total_chunks");
    json_decref(j);
    d->content = calloc((size_t)d->n, sizeof *d->content);
    for (long i = 0; i < d->n; i++) {
        snprintf(path, sizeof path, API "/documents/%s/chunks/%ld", id, i);
        j = get_json(port, path);
        d->content[i] = strdup(json_string_value(
            json_object_get(json_object_get(j, "chunk"), "content")));
        json_decref(j);
    }
    snprintf(path, sizeof path, API "/documents/%s/groups", id);
    d->groups = get_json(port, path);
}

/* The name a definition line of the manual defines ("Function: void
 * sha256_init (struct sha256_ctx *ctx)" defines sha256_init), into name;
 * false for any other line. line[0..len). */
static bool defines(const char *line, size_t len, char *name, size_t cap)
{
    static const char *const kinds[] = { "Function: ", "Macro: " };
    bool kind = false;
    for (size_t k = 0; k < 2; k++)
        kind |= len > strlen(kinds[k]) && !strncmp(line, kinds[k], strlen(kinds[k]));
    const char *paren = kind ? memchr(line, '(', len) : NULL;
    if (!paren)
        return false;
    const char *e = paren;
    while (e > line && e[-1] == ' ')
        e--;
    const char *b = e;
    while (b > line && (isalnum((unsigned char)b[-1]) || b[-1] == '_'))
        b--;
    if (e == b || (size_t)(e - b) >= cap)
        return false;
    memcpy(name, b, (size_t)(e - b));
    name[e - b] = '\0';
    return true;
}

/* The chunk holding fn's definition line, or -1. */
static long defining_chunk(const doc_t *d, const char *fn)
{
    char name[128];
    for (long i = 0; i < d->n; i++)
        for (const char *s = d->content[i]; *s;) {
            const char *nl = strchr(s, '\n');
            size_t len = nl ? (size_t)(nl - s) : strlen(s);
            if (defines(s, len, name, sizeof name) && !strcmp(name, fn))
                return i;
            s += len + (nl != NULL);
        }
    return -1;
}

/* Whether part g holds chunk c. */
static bool part_holds(const doc_t *d, long g, long c)
{
    json_t *p = json_array_get(d->groups, (size_t)g);
    return p && c >= (long)jint(p, "first_chunk") && c <= (long)jint(p, "last_chunk");
}

/* Every function the manual defines, each asked about in one of the
 * question forms through GET /search (the part chat would route it to,
 * no answer generated): how many went to the part holding the definition.
 * Prints the figures; returns the hits, *n_out the questions. */
static int route_all(int port, const char *id, const doc_t *d, int *n_out)
{
    int hits = 0, n = 0;
    long *parts = calloc((size_t)json_array_size(d->groups) + 1, sizeof *parts);
    for (long i = 0; i < d->n; i++)
        for (const char *s = d->content[i]; *s;) {
            const char *nl = strchr(s, '\n');
            size_t len = nl ? (size_t)(nl - s) : strlen(s);
            char fn[128], q[256], path[600];
            if (defines(s, len, fn, sizeof fn) && defining_chunk(d, fn) == i) {
                question(q, sizeof q, n, fn);
                char *e = curl_easy_escape(NULL, q, 0);
                snprintf(path, sizeof path, API "/documents/%s/search?limit=1&q=%s", id, e);
                curl_free(e);
                json_t *j = get_json(port, path);
                long g = (long)json_integer_value(
                    json_object_get(json_object_get(j, "route"), "group_id"));
                json_decref(j);
                hits += part_holds(d, g, i);
                if (g >= 0 && (size_t)g < json_array_size(d->groups))
                    parts[g]++;
                n++;
            }
            s += len + (nl != NULL);
        }
    printf("routing, every function the manual defines (%d, one question each): %d to the part "
           "holding its definition (%.1f%%); questions per part:",
           n, hits, n ? 100.0 * hits / n : 0);
    for (size_t g = 0; g < json_array_size(d->groups); g++)
        printf(" %ld", parts[g]);
    printf("\n");
    free(parts);
    *n_out = n;
    return hits;
}

/* The part's text as its chunks hold it (what the cold peers read). */
static char *part_text(const doc_t *d, long g)
{
    json_t *p = json_array_get(d->groups, (size_t)g);
    buf_t b;
    buf_init(&b, 64u << 20);
    for (long i = (long)jint(p, "first_chunk"); i <= (long)jint(p, "last_chunk") && i < d->n; i++)
        buf_printf(&b, "%s%s", b.len ? "\n\n" : "", d->content[i]);
    return buf_steal(&b, NULL);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    opts_t o = { .threads = 2 };
    static const struct option longopts[] = {
        { "kvchat", required_argument, NULL, 'k' }, { "model", required_argument, NULL, 'm' },
        { "doc", required_argument, NULL, 'd' },    { "llama-server", required_argument, NULL, 's' },
        { "threads", required_argument, NULL, 't' }, { "out", required_argument, NULL, 'o' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'k': o.kvchat = optarg; break;
        case 'm': o.model = optarg; break;
        case 'd': o.doc = optarg; break;
        case 's': o.server = optarg; break;
        case 't': o.threads = atoi(optarg); break;
        case 'o': o.out = optarg; break;
        default: die("usage: --kvchat PATH --model PATH --doc PATH [--llama-server PATH] "
                     "[--threads N] [--out FILE]");
        }
    }
    if (!o.kvchat || !o.model || !o.doc)
        die("--kvchat, --model and --doc are required");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char dir[] = "/tmp/kvchat-bench-longdoc-XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp: %s", strerror(errno));

    /* kvchat as `make run` starts it: 8,192 tokens per conversation. */
    bench_proc_t app = { .port = bench_free_port() };
    int eport = bench_free_port();
    char data[300], port[16], ep[64], th[64], log[300];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(port, sizeof port, "%d", app.port);
    snprintf(ep, sizeof ep, "engine.port=%d", eport);
    snprintf(th, sizeof th, "engine.threads=%d", o.threads);
    snprintf(log, sizeof log, "%s/kvchat.log", dir);
    const char *args[] = { o.kvchat, "--port", port, "--data", data, "--model", o.model, "--set",
                           ep, "--set", th, "--set", "engine.ctx_size=16384", "--set",
                           "engine.parallel=2", "--set", "llm.max_tokens=8", "--set",
                           "llm.temperature=0", "--set", "engine.api_key=" ENGINE_KEY, NULL };
    bench_proc_start(&app, args, log, "/health");
    for (double t0 = bench_now_ms();;) {
        json_t *st = get_json(app.port, API "/model/status");
        bool running = strcmp(json_string_value(json_object_get(st, "status")), "running") == 0;
        json_decref(st);
        if (running)
            break;
        if (bench_now_ms() - t0 > 600000)
            die("the engine did not start; see %s", log);
        sleep(1);
    }
    printf("document: %s\n", o.doc);
    double t_up = bench_now_ms();
    char *id = upload(app.port, o.doc);
    double up_ms = bench_now_ms() - t_up;
    char path[256];
    snprintf(path, sizeof path, API "/documents/%s", id);
    json_t *dj = get_json(app.port, path);
    long long doc_tokens = jint(dj, "n_tokens"), n_chunks = jint(dj, "total_chunks");
    json_decref(dj);

    /* Cache every part. */
    snprintf(path, sizeof path, API "/documents/cache/%s", id);
    double t_cache = bench_now_ms();
    char *body = NULL;
    long st = bench_request(app.port, "POST", path, "{}", NULL, &body);
    double cache_ms = bench_now_ms() - t_cache;
    json_t *cj = json_loads(body ? body : "", 0, NULL);
    if (st != 200 || !cj)
        die("caching failed: %ld %.400s", st, body ? body : "");
    free(body);
    long long parts = jint(cj, "total_groups"), cached_tokens = jint(cj, "n_tokens"),
              cached_bytes = jint(cj, "bytes");
    json_decref(cj);
    doc_t d = { 0 };
    load_doc(app.port, id, &d);
    printf("%lld tokens, %lld chunks, %lld parts; upload %.1f s; caching %.1f s, %lld tokens, "
           "%.1f MB\n",
           doc_tokens, n_chunks, parts, up_ms / 1000, cache_ms / 1000, cached_tokens,
           (double)cached_bytes / 1e6);
    for (int i = 0; i < N_QUESTIONS; i++)
        if (defining_chunk(&d, g_functions[i]) < 0)
            die("the manual does not define %s", g_functions[i]);
    int all_n = 0, all_hits = route_all(app.port, id, &d, &all_n);

    /* 20 questions, each in a new session. */
    double ttft[N_QUESTIONS];
    long group[N_QUESTIONS];
    int hits = 0, from_disk = 0;
    long long restored_min = -1;
    for (int i = 0; i < N_QUESTIONS; i++) {
        char q[256], session[64];
        question(q, sizeof q, i, g_functions[i]);
        snprintf(session, sizeof session, "bench-q%d", i);
        turn_t t;
        ttft[i] = kvchat_ask(app.port, session, id, q, &t);
        group[i] = t.group;
        bool hit = part_holds(&d, t.group, defining_chunk(&d, g_functions[i]));
        hits += hit;
        from_disk += strcmp(t.tier, "disk") == 0;
        if (restored_min < 0 || t.cached < restored_min)
            restored_min = t.cached;
        printf("  q%-2d %-28s part %2ld %s  TTFT %7.1f ms  %lld tokens restored (%s)\n", i + 1,
               g_functions[i], t.group + 1, hit ? "hit " : "MISS", ttft[i], t.cached, t.tier);
    }
    double sorted[N_QUESTIONS];
    memcpy(sorted, ttft, sizeof sorted);
    double med = bench_median(sorted, N_QUESTIONS), worst = sorted[N_QUESTIONS - 1];

    /* (a) The cold prefill of the same part, same engine, no cache. */
    double cold[N_COLD];
    long long cold_tokens = 0;
    for (int i = 0; i < N_COLD; i++) {
        int qi = i * (N_QUESTIONS / N_COLD);
        char *text = part_text(&d, group[qi]);
        char q[256];
        question(q, sizeof q, qi, g_functions[qi]);
        bench_stream_t bs;
        cold[i] = bench_chat(eport, ENGINE_KEY, text, q, 8, false, &bs);
        if (cold[i] < 0)
            die("cold prefill on the engine failed");
        cold_tokens += bs.prompt_n;
        printf("  (a) cold part %ld: %d tokens, TTFT %.0f ms\n", group[qi] + 1, bs.prompt_n,
               cold[i]);
        free(text);
    }
    double cold_med = bench_median(cold, N_COLD);

    /* (b) llama-server with the same part as its prompt. */
    double ls_cold = -1, ls_warm = -1;
    if (o.server) {
        bench_proc_stop(&app);   /* one model in memory at a time */
        bench_proc_t ls = { .port = bench_free_port() };
        char lport[16], lth[16], llog[300];
        snprintf(lport, sizeof lport, "%d", ls.port);
        snprintf(lth, sizeof lth, "%d", o.threads);
        snprintf(llog, sizeof llog, "%s/llama-server.log", dir);
        const char *largs[] = { o.server, "-m", o.model, "-t", lth, "-c", "8192", "-np", "1",
                                "--port", lport, NULL };
        bench_proc_start(&ls, largs, llog, "/health");
        char *text = part_text(&d, group[0]);
        char q[256];
        question(q, sizeof q, 0, g_functions[0]);
        bench_stream_t bs;
        ls_cold = bench_chat(ls.port, NULL, text, q, 8, true, &bs);
        question(q, sizeof q, 1, g_functions[0]);
        ls_warm = bench_chat(ls.port, NULL, text, q, 8, true, &bs);
        printf("  (b) llama-server, part %ld: cold TTFT %.0f ms, next question %.0f ms\n",
               group[0] + 1, ls_cold, ls_warm);
        free(text);
        bench_proc_stop(&ls);
    } else {
        bench_proc_stop(&app);
    }

    buf_t r;
    buf_init(&r, 1 << 16);
    buf_printf(&r, "\n## Long documents\n\n");
    buf_printf(&r, "`kvchat-bench-longdoc` (through kvchat as `make run` starts it: %d "
                   "threads, 2 slots of 8,192 tokens; model %s): %s.\n\n", o.threads, o.model,
               o.doc);
    buf_printf(&r, "- document: %lld tokens, %lld chunks, %lld parts; caching every part %.1f s "
                   "(%.2f s per 1,000 tokens), %.1f MB on disk (%.2f MB per 1,000 tokens)\n",
               doc_tokens, n_chunks, parts, cache_ms / 1000,
               doc_tokens > 0 ? cache_ms / (double)doc_tokens : 0, (double)cached_bytes / 1e6,
               doc_tokens > 0 ? (double)cached_bytes / 1e3 / (double)doc_tokens : 0);
    buf_printf(&r, "- 20 questions, each naming one function, each in a new session: TTFT "
                   "median %.0f ms, worst %.0f ms; %d of 20 restored from the disk tier (at "
                   "least %lld tokens each); routing hit rate %d/20 (the part answered from "
                   "holds the function's definition)\n",
               med, worst, from_disk, restored_min, hits);
    buf_printf(&r, "- routing, every function the manual defines, one question each (GET "
                   "/search, the part chat would use): %d of %d to the part holding the "
                   "definition (%.1f%%)\n",
               all_hits, all_n, all_n ? 100.0 * all_hits / all_n : 0);
    buf_printf(&r, "- (a) cold prefill of the same part, same engine, cache off: median %.0f ms "
                   "(%lld tokens on average) -> kvchat's median TTFT is %.1fx below it "
                   "(target >= 30x)\n",
               cold_med, cold_tokens / N_COLD, med > 0 ? cold_med / med : 0);
    if (ls_cold >= 0)
        buf_printf(&r, "- (b) llama-server given the same part: first question %.0f ms (%.1fx "
                       "kvchat's median), next question on it %.0f ms (its slot's cache)\n",
                   ls_cold, med > 0 ? ls_cold / med : 0, ls_warm);
    fputs(r.data, stdout);
    if (o.out) {
        FILE *f = fopen(o.out, "a");
        if (!f)
            die("cannot write %s: %s", o.out, strerror(errno));
        fputs(r.data, f);
        fclose(f);
    }
    buf_cleanup(&r);
    for (long i = 0; i < d.n; i++)
        free(d.content[i]);
    free(d.content);
    json_decref(d.groups);
    free(id);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    curl_global_cleanup();
    return 0;
}
