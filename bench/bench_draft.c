/* bench_draft.c — prefill while typing: kvchat-engine's drafts against the
 * same questions without drafts and against llama-server, in one run.
 *
 * kvchat-engine and llama-server (same llama.cpp source, same model, same
 * threads; both with 4 slots over 32,768 KV cells, llama-server's
 * defaults) run at once and take turns question by question, so the
 * machine's slower and faster spells fall on all conditions alike. Two
 * documents, generated deterministically: a cached document (~2,300
 * tokens) and a part of a long document (~6,000 tokens, with the part's
 * header line). kvchat holds each in its cache (POST /v1/cache/prefill);
 * llama-server is warmed with one question on each (its slots and prompt
 * cache then hold them).
 *
 * Measured, at the client:
 *   1. TTFT from Enter: each question is typed at KEY_MS per character;
 *      at every word boundary the text so far goes to POST /v1/cache/draft
 *      (one draft in flight at most; a newer one waits and replaces any
 *      older one not yet sent); the typist then looks the question over for
 *      ENTER_PAUSE_MS, during which the web UI's rule (a draft after a pause
 *      of DRAFT_PAUSE_MS at a word's end) drafts the whole question, and
 *      presses Enter: the real request. The same question is asked of kvchat without
 *      drafts (another cache_salt, so neither condition finds the other's
 *      KV; the documents are cached under both) and of llama-server warm.
 *   2. The decode speed of another stream on kvchat while a question is
 *      typed, with drafts and without (pairs, alternating).
 *   3. The end of an answer on the 6,000-token part: time from the last
 *      content piece to "data: [DONE]", and the largest gap of another
 *      stream of the same server around that end, kvchat against
 *      llama-server (pairs, alternating).
 *
 * Usage: kvchat-bench-draft --engine PATH --llama-server PATH --model PATH
 *                           [--threads N] [--out FILE (appends)] [--quick]
 * --quick is a smoke run: 4 questions, 2 pairs, 3 answer ends per server,
 * documents a third the size (their prefill is most of a run's time).
 * Streams are timed by their content pieces as the client sees them.
 */
#include <curl/curl.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_http.h"
#include "bench_util.h"
#include "common/buf.h"
#include "common/json.h"

#define KEY_MS 125.0          /* typing pace: 8 characters a second */
#define DRAFT_PAUSE_MS 350.0  /* the web UI's pause before a draft (chat.js) */
#define ENTER_PAUSE_MS 700.0  /* the look over the question before Enter */
#define ANSWER_TOKENS 8       /* answers to the typed questions */
#define END_TOKENS 4          /* answers whose end is timed */
#define N_QUESTIONS 20
#define SALT_TYPED "bench-draft:typed"   /* kvchat with drafts */
#define SALT_PLAIN "bench-draft:plain"   /* kvchat without drafts */
#define STREAM_TIMES 4096     /* chunk times kept per stream */

enum { DOC_CACHED, DOC_PART, N_DOCS };
enum { C_DRAFT, C_PLAIN, C_LLAMA, N_COND };

static const char *const g_cond_label[N_COND] = { "kvchat with drafts", "kvchat without drafts",
                                                  "llama-server warm" };

typedef struct {
    const char *engine, *server, *model, *out;
    int threads;
    bool quick;
} opts_t;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kvchat-bench-draft: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void sleep_ms(double ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = { .tv_sec = (time_t)(ms / 1000),
                           .tv_nsec = (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void sleep_until(double t) { sleep_ms(t - bench_now_ms()); }

/* ---- the drafter: one draft in flight, the newest one next ---- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int port;
    char *pending;        /* the next draft's body (owned), NULL: none */
    bool busy, stop;
    int sent, accepted, declined, failed;
    long bad_status;      /* the last status other than 202 (0: none) */
    double ms_max;        /* the slowest answer to a draft */
} drafter_t;

static void *drafter_main(void *arg)
{
    drafter_t *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->pending && !d->stop)
            pthread_cond_wait(&d->cv, &d->mu);
        if (d->stop)
            break;
        char *body = d->pending;
        d->pending = NULL;
        d->busy = true;
        pthread_mutex_unlock(&d->mu);
        char *out = NULL;
        double t0 = bench_now_ms();
        long st = bench_request(d->port, "POST", "/v1/cache/draft", body, NULL, &out);
        double ms = bench_now_ms() - t0;
        json_t *j = st == 202 && out ? json_loads(out, 0, NULL) : NULL;
        bool acc = json_is_true(json_object_get(j, "accepted"));
        json_decref(j);
        free(out);
        free(body);
        pthread_mutex_lock(&d->mu);
        d->busy = false;
        d->sent++;
        if (ms > d->ms_max)
            d->ms_max = ms;
        if (st != 202) {
            d->failed++;
            d->bad_status = st;
        } else if (acc) {
            d->accepted++;
        } else {
            d->declined++;
        }
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static void drafter_init(drafter_t *d, int port)
{
    memset(d, 0, sizeof *d);
    d->port = port;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    if (pthread_create(&d->th, NULL, drafter_main, d) != 0)
        die("pthread_create failed");
}

/* Queue a draft (body: owned by the drafter from here); an older one not
 * yet sent is dropped, as a client that sends one at a time does. */
static void drafter_post(drafter_t *d, char *body)
{
    pthread_mutex_lock(&d->mu);
    free(d->pending);
    d->pending = body;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* Wait until no draft is queued or in flight. */
static void drafter_idle(drafter_t *d)
{
    pthread_mutex_lock(&d->mu);
    while (d->pending || d->busy)
        pthread_cond_wait(&d->cv, &d->mu);
    pthread_mutex_unlock(&d->mu);
}

static void drafter_cleanup(drafter_t *d)
{
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->th, NULL);
    free(d->pending);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
}

/* ---- documents and questions ---- */

static uint64_t rnd(uint64_t *x)
{
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return *x >> 33;
}

static const char *const g_towns[] = { "Ashford", "Brightwater", "Corran", "Dunmere", "Elmstead",
                                       "Fallowby", "Greystoke", "Hollins", "Ivybridge", "Kestrel",
                                       "Larkspur", "Millbrook", "Northam", "Ostwick" };
static const char *const g_people[] = { "Mara Quill", "Tobias Fenn", "Ada Rusk", "Hugh Barrow",
                                        "Nell Ashby", "Owen Strand", "Ruth Calder", "Simon Vale",
                                        "Ida Marsh", "Leo Thorne", "Greta Holm", "Piet Lowe" };
static const char *const g_goods[] = { "wool", "barley", "salted fish", "oak planks", "honey",
                                       "iron nails", "cheese", "linen", "apples", "lamp oil",
                                       "rope", "candles", "slate", "dried peas" };
static const char *const g_places[] = { "mill", "bridge", "granary", "school", "harbour wall",
                                        "chapel", "well", "market hall", "ferry landing", "forge",
                                        "toll house", "orchard" };
static const char *const g_moods[] = { "poor", "fair", "better than hoped", "the best in years",
                                       "late but sound", "thin", "plentiful", "uneven" };

#define PICK(a, x) a[rnd(x) % (sizeof a / sizeof a[0])]

/* One sentence of the chronicle into b. */
static void sentence(buf_t *b, uint64_t *x)
{
    switch (rnd(x) % 8) {
    case 0:
        buf_printf(b, "In %s the market opened at %d o'clock, and %s sold %d baskets of %s before noon. ",
                   PICK(g_towns, x), 5 + (int)(rnd(x) % 5), PICK(g_people, x), 3 + (int)(rnd(x) % 90),
                   PICK(g_goods, x));
        break;
    case 1:
        buf_printf(b, "%s, who keeps the ledger of the %s guild, wrote that the %s arrived %d days late. ",
                   PICK(g_people, x), PICK(g_towns, x), PICK(g_goods, x), 1 + (int)(rnd(x) % 12));
        break;
    case 2:
        buf_printf(b, "The road from %s to %s was closed for %d hours after a storm; travellers waited "
                      "near the %s. ",
                   PICK(g_towns, x), PICK(g_towns, x), 2 + (int)(rnd(x) % 30), PICK(g_places, x));
        break;
    case 3:
        buf_printf(b, "The council of %s agreed to spend %d crowns on a new %s, against the advice of %s. ",
                   PICK(g_towns, x), 40 + (int)(rnd(x) % 900), PICK(g_places, x), PICK(g_people, x));
        break;
    case 4:
        buf_printf(b, "According to %s, the %s harvest around %s was %s, with %d carts more than last "
                      "autumn. ",
                   PICK(g_people, x), PICK(g_goods, x), PICK(g_towns, x), PICK(g_moods, x),
                   (int)(rnd(x) % 40));
        break;
    case 5:
        buf_printf(b, "Rain fell on %s for %d days, and the river rose %d centimetres above the mark on "
                      "the old %s. ",
                   PICK(g_towns, x), 2 + (int)(rnd(x) % 9), 10 + (int)(rnd(x) % 120), PICK(g_places, x));
        break;
    case 6:
        buf_printf(b, "%s repaired the %s at %s and asked %d crowns for the work, paid in %s. ",
                   PICK(g_people, x), PICK(g_places, x), PICK(g_towns, x), 3 + (int)(rnd(x) % 60),
                   PICK(g_goods, x));
        break;
    default:
        buf_printf(b, "Children from %s won the boat race at the %s fair, and %s gave each of them a "
                      "jar of %s. ",
                   PICK(g_towns, x), PICK(g_towns, x), PICK(g_people, x), PICK(g_goods, x));
        break;
    }
}

/* A document of n_sentences after `header` (malloc'd; caller frees). */
static char *make_doc(const char *header, uint64_t seed, int n_sentences)
{
    buf_t b;
    buf_init(&b, 1 << 22);
    buf_printf(&b, "%s\n\n", header);
    uint64_t x = seed;
    int section = 1;
    for (int i = 0; i < n_sentences; i++) {
        if (i % 24 == 0)
            buf_printf(&b, "%sSection %d: the records of %s\n\n", i ? "\n\n" : "", section++,
                       PICK(g_towns, &x));
        else if (i % 6 == 0)
            buf_puts(&b, "\n\n");
        sentence(&b, &x);
    }
    buf_puts(&b, "\n");
    return buf_steal(&b, NULL);
}

/* Tokens of text by llama-server's POST /tokenize (the same vocabulary). */
static int count_tokens(int port, const char *text)
{
    json_t *req = json_pack("{s:s}", "content", text);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char *out = NULL;
    long st = bench_request(port, "POST", "/tokenize", body, NULL, &out);
    free(body);
    json_t *j = st == 200 && out ? json_loads(out, 0, NULL) : NULL;
    free(out);
    int n = (int)json_array_size(json_object_get(j, "tokens"));
    json_decref(j);
    if (n <= 0)
        die("llama-server /tokenize answered %ld", st);
    return n;
}

/* A document of about `target` tokens: sentences counted once, then scaled. */
static char *make_doc_tokens(int port, const char *header, uint64_t seed, int target)
{
    int n = target / 24;
    char *d = make_doc(header, seed, n);
    int t = count_tokens(port, d);
    free(d);
    n = (int)((double)n * target / t);
    return make_doc(header, seed, n);
}

/* The typed questions: 30 to 70 characters, varied. */
static const char *const g_questions[N_QUESTIONS] = {
    "Who keeps the ledger of the Corran guild?",
    "What did the council of Dunmere decide to build?",
    "How long was the road to Ostwick closed?",
    "Which town had the best honey harvest this year?",
    "What did Mara Quill sell at the market?",
    "How high did the river rise after the rain?",
    "Who won the boat race at the Hollins fair?",
    "How many crowns did the new mill cost?",
    "Which goods arrived late, and by how many days?",
    "Who repaired the bridge at Larkspur?",
    "When does the market in Ashford open?",
    "Was the barley harvest better than last autumn?",
    "What did the children get after the race?",
    "Which person is named most often in the records?",
    "List the towns where it rained for a week or more.",
    "Who argued against the council's spending?",
    "What was paid in lamp oil, and to whom?",
    "Summarise the records of the first section.",
    "Which places were repaired more than once?",
    "How many baskets of wool were sold in total?",
};

/* Questions typed while another stream runs. */
static const char *const g_stream_questions[] = {
    "Which town sold the most salted fish?",
    "Who was paid in candles for the repairs?",
    "What happened near the old toll house?",
    "Which harvest was called thin, and where?",
    "How many carts of apples came to Northam?",
    "Who waited at the ferry landing, and why?",
};

/* The n-th question whose answer's end is timed (on the long part). */
static void end_question(char *q, size_t cap, int n)
{
    const char *town = g_towns[(n * 5 + 3) % (int)(sizeof g_towns / sizeof g_towns[0])];
    switch (n % 4) {
    case 0: snprintf(q, cap, "What happened in %s on market day %d?", town, 10 + n); break;
    case 1: snprintf(q, cap, "Who in %s was paid for work number %d?", town, 10 + n); break;
    case 2: snprintf(q, cap, "How did %s fare in the storm of week %d?", town, 10 + n); break;
    default: snprintf(q, cap, "What does record %d say about %s?", 10 + n, town); break;
    }
}

/* ---- requests ---- */

/* A streamed chat body: [system doc (if any), user q], greedy, ignore_eos,
 * cache_prompt, with cache_salt when salt is not NULL (malloc'd). */
static char *chat_body(const char *doc, const char *q, int max_tokens, const char *salt)
{
    json_t *msgs = json_array();
    if (doc)
        json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", doc));
    json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", q));
    json_t *body = json_pack("{s:o, s:b, s:i, s:f, s:b, s:b}", "messages", msgs, "stream", 1,
                             "max_tokens", max_tokens, "temperature", 0.0, "ignore_eos", 1,
                             "cache_prompt", 1);
    if (salt)
        json_object_set_new(body, "cache_salt", json_string(salt));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return text;
}

static char *draft_body(const char *doc, const char *partial, const char *key, const char *salt)
{
    json_t *msgs = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content", doc, "role",
                             "user", "content", partial);
    json_t *body = json_pack("{s:o, s:s, s:s}", "messages", msgs, "key", key, "cache_salt", salt);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return text;
}

/* One streamed question; exits when it fails. Returns TTFT ms. */
static double ask(int port, const char *doc, const char *q, int max_tokens, const char *salt,
                  double *times, int cap, bench_stream_t *st)
{
    char *body = chat_body(doc, q, max_tokens, salt);
    double ttft = bench_chat_json(port, NULL, body, times, cap, NULL, st);
    free(body);
    if (ttft < 0)
        die("a question failed on port %d", port);
    return ttft;
}

/* kvchat's /v1/cache/prefill of doc as a system message under salt. */
static void prefill(int port, const char *doc, const char *salt, int *n_tokens)
{
    json_t *req = json_pack("{s:[{s:s, s:s}], s:s}", "messages", "role", "system", "content", doc,
                            "cache_salt", salt);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char *out = NULL;
    long st = bench_request(port, "POST", "/v1/cache/prefill", body, NULL, &out);
    free(body);
    if (st != 200)
        die("POST /v1/cache/prefill answered %ld: %s", st, out ? out : "");
    json_t *j = json_loads(out, 0, NULL);
    *n_tokens = (int)json_integer_value(json_object_get(j, "n_tokens"));
    json_decref(j);
    free(out);
}

/* The engine's draft counters from GET /metrics (-1 each when absent). */
typedef struct {
    double drafts, dropped, tokens, used;
} draft_metrics_t;

static double metric(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && (p[n] == ' ' || p[n] == '{')) {
            const char *v = strchr(p + n, ' ');
            return v ? strtod(v + 1, NULL) : -1;
        }
    return -1;
}

static draft_metrics_t get_metrics(int port)
{
    char *out = NULL;
    draft_metrics_t m = { -1, -1, -1, -1 };
    if (bench_request(port, "GET", "/metrics", NULL, NULL, &out) == 200 && out) {
        m.drafts = metric(out, "kvchat_engine_drafts_total");
        m.dropped = metric(out, "kvchat_engine_drafts_dropped_total");
        m.tokens = metric(out, "kvchat_engine_draft_tokens_total");
        m.used = metric(out, "kvchat_engine_draft_tokens_used_total");
    }
    free(out);
    return m;
}

/* ---- servers ---- */

typedef struct {
    bench_proc_t p;
    char dir[64];
} srv_t;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void srv_start(srv_t *s, const opts_t *o, bool kvchat)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/kvchat-bench-draft-XXXXXX");
    if (!mkdtemp(s->dir))
        die("mkdtemp: %s", strerror(errno));
    s->p.port = bench_free_port();
    char port[16], threads[16], kvdir[128], log[128];
    snprintf(port, sizeof port, "%d", s->p.port);
    snprintf(threads, sizeof threads, "%d", o->threads);
    snprintf(kvdir, sizeof kvdir, "%s/kv", s->dir);
    snprintf(log, sizeof log, "%s/server.log", s->dir);
    const char *argv[32];
    int n = 0;
    if (kvchat) {
        argv[n++] = o->engine;
        argv[n++] = "--model"; argv[n++] = o->model;
        argv[n++] = "--threads"; argv[n++] = threads;
        argv[n++] = "--parallel"; argv[n++] = "4";
        argv[n++] = "--ctx-size"; argv[n++] = "32768";
        argv[n++] = "--cache-dir"; argv[n++] = kvdir;
        argv[n++] = "--reset";
    } else {
        /* defaults: 4 slots, unified KV of the model's 32,768 cells, RAM prompt cache */
        argv[n++] = o->server;
        argv[n++] = "-m"; argv[n++] = o->model;
        argv[n++] = "-t"; argv[n++] = threads;
    }
    argv[n++] = "--host"; argv[n++] = "127.0.0.1";
    argv[n++] = "--port"; argv[n++] = port;
    argv[n] = NULL;
    bench_proc_start(&s->p, argv, log, "/health");
}

static void srv_stop(srv_t *s)
{
    bench_proc_stop(&s->p);
    nftw(s->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- figures ---- */

static double pct(const double *v, int n, double q)
{
    if (n <= 0)
        return 0;
    double *c = malloc(sizeof *c * (size_t)n);
    memcpy(c, v, sizeof *c * (size_t)n);
    bench_median(c, n);   /* sorts */
    int k = (int)(q * (n - 1) + 0.5);
    double x = c[k];
    free(c);
    return x;
}

static double med(const double *v, int n) { return pct(v, n, 0.5); }

/* Tokens per second of a stream's chunks that arrived in [a, b] (all of
 * them after the first when a < 0). */
static double tps_in(const double *t, int n, double a, double b)
{
    int first = -1, last = -1;
    for (int k = a < 0 ? 1 : 0; k < n; k++)
        if (a < 0 || (t[k] >= a && t[k] <= b)) {
            if (first < 0)
                first = k;
            last = k;
        }
    if (first < 0 || last <= first)
        return 0;
    return (last - first) * 1000.0 / (t[last] - t[first]);
}

/* ---- the program ---- */

typedef struct {
    opts_t o;
    srv_t kv, ls;
    drafter_t dr;
    char *doc[N_DOCS];
    int doc_tokens[N_DOCS];
    int n_questions;
    /* 1: TTFT from Enter, by document and condition */
    double ttft[N_DOCS][N_COND][N_QUESTIONS];
    double cache_n[N_DOCS][N_COND][N_QUESTIONS], prompt_n[N_DOCS][N_COND][N_QUESTIONS];
    draft_metrics_t m0, m1;
    /* 2: the other stream */
    int n_pairs;
    double tps_typing[2][8], tps_whole[2][8], typed_ttft[2][8];   /* [0] drafts, [1] none */
    /* 3: answer ends */
    int n_end;
    double end_done[2][12], end_http[2][12];   /* [0] kvchat, [1] llama-server */
    double stall[2][12], gap_med[2][12];
    int n_stall[2];                            /* stall[s][0..n_stall[s]) counted */
} bench_t;

/* Type q from now at KEY_MS a character; with a drafter, a draft of the
 * text before every space typed. Then the typist looks the question over
 * for ENTER_PAUSE_MS before pressing Enter; the web UI drafts the whole
 * question once a pause after a word's end reaches DRAFT_PAUSE_MS (its
 * own rule), so a draft of the finished question goes out meanwhile.
 * Returns at Enter. */
static void type_question(bench_t *b, bool drafts, const char *doc, const char *q, const char *key)
{
    double t0 = bench_now_ms();
    size_t n = strlen(q);
    for (size_t i = 0; i < n; i++) {
        sleep_until(t0 + (double)i * KEY_MS);
        if (drafts && q[i] == ' ' && i > 0) {
            char part[256];
            snprintf(part, sizeof part, "%.*s", (int)i, q);
            drafter_post(&b->dr, draft_body(doc, part, key, SALT_TYPED));
        }
    }
    double t_last = t0 + (double)(n - 1) * KEY_MS;
    if (drafts) {
        sleep_until(t_last + DRAFT_PAUSE_MS);
        drafter_post(&b->dr, draft_body(doc, q, key, SALT_TYPED));
    }
    sleep_until(t_last + ENTER_PAUSE_MS);
}

/* 1: every question on both documents, the three conditions in turn (their
 * order rotated question by question). */
static void run_typing(bench_t *b)
{
    bench_stream_t st;
    b->m0 = get_metrics(b->kv.p.port);
    for (int i = 0; i < b->n_questions; i++)
        for (int d = 0; d < N_DOCS; d++)
            for (int r = 0; r < N_COND; r++) {
                int c = (r + i + d) % N_COND;
                const char *q = g_questions[i];
                double ttft;
                if (c == C_DRAFT) {
                    char key[64];
                    snprintf(key, sizeof key, "bench-draft-session-%d-%d", d, i);
                    type_question(b, true, b->doc[d], q, key);
                    ttft = ask(b->kv.p.port, b->doc[d], q, ANSWER_TOKENS, SALT_TYPED, NULL, 0, &st);
                    drafter_idle(&b->dr);
                } else {
                    sleep_ms(1000);   /* a person reads the last answer */
                    ttft = ask(c == C_LLAMA ? b->ls.p.port : b->kv.p.port, b->doc[d], q, ANSWER_TOKENS,
                               c == C_PLAIN ? SALT_PLAIN : NULL, NULL, 0, &st);
                }
                b->ttft[d][c][i] = ttft;
                b->cache_n[d][c][i] = st.cache_n;
                b->prompt_n[d][c][i] = st.prompt_n;
                fprintf(stderr, "  q%-2d %s, %-22s TTFT %6.0f ms (cache_n %d, prompt_n %d)\n", i + 1,
                        d == DOC_CACHED ? "cached doc" : "long part ", g_cond_label[c], ttft, st.cache_n,
                        st.prompt_n);
            }
    b->m1 = get_metrics(b->kv.p.port);
}

/* Another stream: a long generation that runs until it is stopped. */
typedef struct {
    int port;
    char prompt[128];
    double *times;
    atomic_bool stop;
    bench_stream_t st;
} stream_job_t;

#define STREAM_MAX_TOKENS 2000   /* more than any window needs; stopped before */

static void *stream_main(void *arg)
{
    stream_job_t *j = arg;
    char *body = chat_body(NULL, j->prompt, STREAM_MAX_TOKENS, NULL);
    double r = bench_chat_json(j->port, NULL, body, j->times, STREAM_TIMES, &j->stop, &j->st);
    free(body);
    if (r < 0 && !atomic_load(&j->stop))
        die("the other stream failed on port %d", j->port);
    return NULL;
}

/* Start a stream in *th (the job is the caller's, for stream_end). */
static stream_job_t *stream_start(pthread_t *th, int port, int n)
{
    stream_job_t *j = calloc(1, sizeof *j);
    if (!j || !(j->times = calloc(STREAM_TIMES, sizeof *j->times)))
        die("out of memory");
    j->port = port;
    atomic_init(&j->stop, false);
    snprintf(j->prompt, sizeof j->prompt, "Tell the long story of the lighthouse keeper number %d.", n);
    if (pthread_create(th, NULL, stream_main, j) != 0)
        die("pthread_create failed");
    return j;
}

/* Hang the stream up and wait for its thread; returns its pieces timed. */
static int stream_end(stream_job_t *j, pthread_t th)
{
    atomic_store(&j->stop, true);
    pthread_join(th, NULL);
    return j->st.chunks < STREAM_TIMES ? j->st.chunks : STREAM_TIMES;
}

static void stream_free(stream_job_t *j)
{
    if (j) {
        free(j->times);
        free(j);
    }
}

/* 2: another stream on kvchat while a question is typed, with drafts and
 * without, in pairs (the order alternating). */
static void run_other_stream(bench_t *b)
{
    bench_stream_t st;
    const char *doc = b->doc[DOC_CACHED];
    for (int p = 0; p < b->n_pairs; p++)
        for (int r = 0; r < 2; r++) {
            int c = (p + r) % 2;   /* 0 drafts, 1 none */
            const char *q = g_stream_questions[p];
            pthread_t th;
            stream_job_t *j = stream_start(&th, b->kv.p.port, 100 + 2 * p + c);
            sleep_ms(1500);   /* past the stream's first token */
            char key[64];
            snprintf(key, sizeof key, "bench-draft-stream-%d", p);
            double t_type = bench_now_ms();
            type_question(b, c == 0, doc, q, key);
            double t_enter = bench_now_ms();
            b->typed_ttft[c][p] = ask(b->kv.p.port, doc, q, ANSWER_TOKENS, c == 0 ? SALT_TYPED : SALT_PLAIN,
                                      NULL, 0, &st);
            drafter_idle(&b->dr);
            sleep_ms(300);
            int n = stream_end(j, th);
            if (n == 0 || j->times[n - 1] < t_enter)
                fprintf(stderr, "  warning: the stream ended before Enter (%d pieces)\n", n);
            b->tps_typing[c][p] = tps_in(j->times, n, t_type, t_enter);
            b->tps_whole[c][p] = tps_in(j->times, n, -1, 0);
            fprintf(stderr, "  pair %d %-14s: stream %.1f tok/s while typing, %.1f overall; typed TTFT %.0f ms\n",
                    p + 1, c == 0 ? "with drafts" : "without drafts", b->tps_typing[c][p], b->tps_whole[c][p],
                    b->typed_ttft[c][p]);
            stream_free(j);
        }
}

/* 3: answers of END_TOKENS on the long part; alone (last token to [DONE])
 * and with another stream of the same server (its largest gap around the
 * answer's end against its median gap); the servers alternating. */
static void run_answer_end(bench_t *b)
{
    bench_stream_t st;
    const char *doc = b->doc[DOC_PART];
    for (int i = 0; i < b->n_end; i++)
        for (int r = 0; r < 2; r++) {
            int s = (i + r) % 2;
            int port = s == 0 ? b->kv.p.port : b->ls.p.port;
            char q[128];
            end_question(q, sizeof q, 2 * i);
            sleep_ms(1000);
            ask(port, doc, q, END_TOKENS, s == 0 ? SALT_PLAIN : NULL, NULL, 0, &st);
            b->end_done[s][i] = st.t_done > 0 ? st.t_done - st.t_last : st.t_end - st.t_last;
            b->end_http[s][i] = st.t_end - st.t_last;
            /* the same with a stream decoding meanwhile */
            end_question(q, sizeof q, 2 * i + 1);
            pthread_t th;
            stream_job_t *j = stream_start(&th, port, 200 + 2 * i + s);
            sleep_ms(1500);
            ask(port, doc, q, END_TOKENS, s == 0 ? SALT_PLAIN : NULL, NULL, 0, &st);
            sleep_until(st.t_end + 800);
            int n = stream_end(j, th);
            double gaps[STREAM_TIMES], worst = 0;
            int ng = 0;
            double a = st.t_last, z = st.t_end + 500;
            for (int k = 2; k < n; k++) {
                double g = j->times[k] - j->times[k - 1];
                gaps[ng++] = g;
                if (j->times[k] > a && j->times[k - 1] < z && g > worst)
                    worst = g;
            }
            b->gap_med[s][i] = ng ? bench_median(gaps, ng) : 0;
            if (n == 0 || j->times[n - 1] < z) {
                fprintf(stderr, "  the stream ended before the window closed: stall not counted\n");
                worst = -1;
            } else {
                b->stall[s][b->n_stall[s]++] = worst;
            }
            fprintf(stderr, "  end %d %-13s: last token -> [DONE] %.1f ms (-> end %.1f ms); other stream: "
                            "largest gap %.0f ms around the end, median gap %.0f ms\n",
                    i + 1, s == 0 ? "kvchat" : "llama-server", b->end_done[s][i], b->end_http[s][i],
                    worst, b->gap_med[s][i]);
            stream_free(j);
        }
}

static const char *met(bool ok) { return ok ? "met" : "NOT met"; }

static void report(bench_t *b, buf_t *r)
{
    const opts_t *o = &b->o;
    int nq = b->n_questions;
    buf_puts(r, "\n## Prefill while typing\n\n");
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
    buf_printf(r, "`kvchat-bench-draft` (%s; kvchat-engine and llama-server at once, %d threads each, "
                  "4 slots over 32,768 KV cells; model %s%s).\n\n",
               date, o->threads, o->model, o->quick ? "; --quick" : "");
    buf_printf(r, "Method: %d questions (30-70 characters) typed at %.0f characters a second on a cached "
                  "document (%d tokens) and on a cached part of a long document (%d tokens, its header "
                  "\"Document 7, part 3 of 13 (pages 41-60)\"). With drafts, the text typed so far goes to "
                  "POST /v1/cache/draft at every word boundary (one in flight); the typist then looks the "
                  "question over for %.0f ms before Enter, and the web UI's rule (a draft once a pause at "
                  "a word's end reaches %.0f ms) drafts the whole question meanwhile. Enter sends it "
                  "(%d-token greedy answer, streamed). TTFT from "
                  "Enter is the time from that request to its first content. The same questions go to "
                  "kvchat without drafts (another cache_salt, under which the documents are cached too) "
                  "and to llama-server, warm (one question on each document first); the three conditions "
                  "take turns question by question.\n\n",
               nq, 1000 / KEY_MS, b->doc_tokens[DOC_CACHED], b->doc_tokens[DOC_PART], ENTER_PAUSE_MS,
               DRAFT_PAUSE_MS, ANSWER_TOKENS);
    buf_puts(r, "| TTFT from Enter, ms | cached document, median | p90 | long document part, median | p90 | "
                "decoded at Enter, median prompt_n / cache_n (cached doc; part) |\n|---|---|---|---|---|---|\n");
    for (int c = 0; c < N_COND; c++)
        buf_printf(r, "| %s | %.0f | %.0f | %.0f | %.0f | %.0f / %.0f; %.0f / %.0f |\n", g_cond_label[c],
                   med(b->ttft[0][c], nq), pct(b->ttft[0][c], nq, 0.9), med(b->ttft[1][c], nq),
                   pct(b->ttft[1][c], nq, 0.9), med(b->prompt_n[0][c], nq), med(b->cache_n[0][c], nq),
                   med(b->prompt_n[1][c], nq), med(b->cache_n[1][c], nq));
    double ratio_ls[N_DOCS], ratio_plain[N_DOCS];
    for (int d = 0; d < N_DOCS; d++) {
        double dr = med(b->ttft[d][C_DRAFT], nq);
        ratio_ls[d] = dr / med(b->ttft[d][C_LLAMA], nq);
        ratio_plain[d] = dr / med(b->ttft[d][C_PLAIN], nq);
    }
    buf_printf(r, "| with drafts / llama-server warm (medians) | %.2f | | %.2f | | |\n", ratio_ls[0], ratio_ls[1]);
    buf_printf(r, "| with drafts / without drafts (medians) | %.2f | | %.2f | | |\n\n", ratio_plain[0],
               ratio_plain[1]);
    drafter_t *d = &b->dr;
    char other[64] = "";
    if (d->failed)
        snprintf(other, sizeof other, ", the last HTTP %ld", d->bad_status);
    buf_printf(r, "Drafts sent: %d (202 accepted: %d, 202 declined: %d, other answers: %d%s; slowest "
                  "answer %.0f ms).",
               d->sent, d->accepted, d->declined, d->failed, other, d->ms_max);
    if (b->m0.tokens >= 0 && b->m1.tokens >= 0)
        buf_printf(r, " Engine counters over the typing above: %.0f drafts bound, %.0f dropped, %.0f tokens "
                      "drafted, %.0f of them used by the request that followed.\n\n",
                   b->m1.drafts - b->m0.drafts, b->m1.dropped - b->m0.dropped, b->m1.tokens - b->m0.tokens,
                   b->m1.used - b->m0.used);
    else
        buf_puts(r, " The engine's /metrics has no draft counters.\n\n");

    int np = b->n_pairs;
    double tw = med(b->tps_typing[0], np), tn = med(b->tps_typing[1], np);
    double ow = med(b->tps_whole[0], np), on = med(b->tps_whole[1], np);
    buf_printf(r, "Another stream on kvchat while a question is typed on the cached document (%d pairs, "
                  "alternating; decode tokens/s from its chunk times, first token excluded):\n\n", np);
    buf_puts(r, "| other stream | with drafts | without drafts | with / without |\n|---|---|---|---|\n");
    buf_printf(r, "| decode while typing, tokens/s (median) | %.1f | %.1f | %.3f |\n", tw, tn, tn > 0 ? tw / tn : 0);
    buf_printf(r, "| decode over the whole stream, tokens/s (median) | %.1f | %.1f | %.3f |\n", ow, on,
               on > 0 ? ow / on : 0);
    buf_printf(r, "| TTFT from Enter of the typed question, ms (median) | %.0f | %.0f | %.2f |\n\n",
               med(b->typed_ttft[0], np), med(b->typed_ttft[1], np),
               med(b->typed_ttft[0], np) / med(b->typed_ttft[1], np));

    int ne = b->n_end;
    double e_kv = med(b->end_done[0], ne), e_ls = med(b->end_done[1], ne);
    double h_kv = med(b->end_http[0], ne), h_ls = med(b->end_http[1], ne);
    double s_kv = med(b->stall[0], b->n_stall[0]), s_ls = med(b->stall[1], b->n_stall[1]);
    double g_kv = med(b->gap_med[0], ne), g_ls = med(b->gap_med[1], ne);
    buf_printf(r, "The end of an answer on the %d-token part (%d-token answers, %d per server, alternating; "
                  "the stall: the largest gap between two pieces of another stream of the same server that "
                  "overlaps the time from the answer's last piece to 500 ms after its end):\n\n",
               b->doc_tokens[DOC_PART], END_TOKENS, ne);
    buf_puts(r, "| answer end | kvchat | llama-server | kvchat / llama-server |\n|---|---|---|---|\n");
    buf_printf(r, "| last token -> [DONE], ms (median) | %.1f | %.1f | %.2f |\n", e_kv, e_ls, e_ls > 0 ? e_kv / e_ls : 0);
    buf_printf(r, "| last token -> end of response, ms (median) | %.1f | %.1f | %.2f |\n", h_kv, h_ls,
               h_ls > 0 ? h_kv / h_ls : 0);
    buf_printf(r, "| other stream's largest gap at an answer's end, ms (median of %d; %d) | %.0f | %.0f | %.2f |\n",
               b->n_stall[0], b->n_stall[1], s_kv, s_ls, s_ls > 0 ? s_kv / s_ls : 0);
    buf_printf(r, "| other stream's median gap, ms | %.0f | %.0f | %.2f |\n\n", g_kv, g_ls, g_ls > 0 ? g_kv / g_ls : 0);

    buf_puts(r, "Targets:\n\n");
    buf_printf(r, "- TTFT from Enter <= 0.4x llama-server's warm TTFT: %.2f on the cached document (%s), %.2f on "
                  "the long document's part (%s)\n",
               ratio_ls[0], met(ratio_ls[0] <= 0.4), ratio_ls[1], met(ratio_ls[1] <= 0.4));
    buf_printf(r, "- the other stream's decode >= 0.95x of its speed without drafts: %.3f while typing (%s)\n",
               tn > 0 ? tw / tn : 0, met(tn > 0 && tw / tn >= 0.95));
    buf_printf(r, "- an answer's end no slower than llama-server's: last token -> [DONE] %.2f (%s); the other "
                  "stream's stall %.2f (%s)\n",
               e_ls > 0 ? e_kv / e_ls : 0, met(e_kv <= e_ls), s_ls > 0 ? s_kv / s_ls : 0,
               b->n_stall[0] && b->n_stall[1] ? met(s_kv <= s_ls) : "not measured");
    if (d->failed && !d->accepted && !d->declined)
        buf_printf(r, "\n**POST /v1/cache/draft never answered 202 (last HTTP %ld): the \"with drafts\" figures "
                      "are questions typed without any draft taken.**\n",
                   d->bad_status);
}

int main(int argc, char **argv)
{
    static bench_t b;
    b.o.threads = 2;
    static const struct option opts[] = {
        { "engine", required_argument, NULL, 'e' }, { "llama-server", required_argument, NULL, 's' },
        { "model", required_argument, NULL, 'm' },  { "threads", required_argument, NULL, 't' },
        { "out", required_argument, NULL, 'o' },    { "quick", no_argument, NULL, 'q' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "e:s:m:t:o:q", opts, NULL)) != -1) {
        switch (c) {
        case 'e': b.o.engine = optarg; break;
        case 's': b.o.server = optarg; break;
        case 'm': b.o.model = optarg; break;
        case 't': b.o.threads = atoi(optarg); break;
        case 'o': b.o.out = optarg; break;
        case 'q': b.o.quick = true; break;
        default:
            die("usage: kvchat-bench-draft --engine P --llama-server P --model P [--threads N] "
                "[--out F] [--quick]");
        }
    }
    if (!b.o.engine || !b.o.server || !b.o.model || b.o.threads < 1)
        die("--engine, --llama-server and --model are required");
    b.n_questions = b.o.quick ? 4 : N_QUESTIONS;
    b.n_pairs = b.o.quick ? 2 : 5;
    b.n_end = b.o.quick ? 3 : 8;   /* (8 pairs at most: the arrays hold 12) */
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    fprintf(stderr, "starting kvchat-engine and llama-server\n");
    srv_start(&b.kv, &b.o, true);
    srv_start(&b.ls, &b.o, false);
    bench_stream_t st;
    ask(b.kv.p.port, NULL, "Hello there.", 4, NULL, NULL, 0, &st);
    ask(b.ls.p.port, NULL, "Hello there.", 4, NULL, NULL, 0, &st);

    b.doc[DOC_CACHED] = make_doc_tokens(b.ls.p.port, "The Valley Towns Gazette, issue 12: the month's records.",
                                        0x9e3779b97f4a7c15ull, b.o.quick ? 800 : 2300);
    b.doc[DOC_PART] = make_doc_tokens(b.ls.p.port,
                                      "Document 7, part 3 of 13 (pages 41-60) of The Chronicle of the "
                                      "Valley Towns.",
                                      0x2545f4914f6cdd1dull, b.o.quick ? 2000 : 6000);
    for (int d = 0; d < N_DOCS; d++) {
        double t0 = bench_now_ms();
        int n1, n2;
        prefill(b.kv.p.port, b.doc[d], SALT_TYPED, &n1);
        prefill(b.kv.p.port, b.doc[d], SALT_PLAIN, &n2);
        double t1 = bench_now_ms();
        ask(b.ls.p.port, b.doc[d], d == DOC_CACHED ? "What is this gazette about?" : "What does this part cover?",
            ANSWER_TOKENS, NULL, NULL, 0, &st);
        b.doc_tokens[d] = n1;
        fprintf(stderr, "document %d: %d tokens cached twice in kvchat in %.1f s; llama-server warmed in %.1f s "
                        "(%d prompt tokens)\n",
                d + 1, n1, (t1 - t0) / 1000, (bench_now_ms() - t1) / 1000, st.prompt_n + st.cache_n);
    }

    drafter_init(&b.dr, b.kv.p.port);
    fprintf(stderr, "1. TTFT from Enter (%d questions x 2 documents x 3 conditions)\n", b.n_questions);
    run_typing(&b);
    fprintf(stderr, "2. another stream while typing (%d pairs)\n", b.n_pairs);
    run_other_stream(&b);
    drafter_idle(&b.dr);
    fprintf(stderr, "3. the end of an answer (%d per server)\n", b.n_end);
    run_answer_end(&b);

    buf_t r;
    buf_init(&r, 1 << 20);
    report(&b, &r);
    fputs(r.data, stdout);
    if (b.o.out) {
        FILE *f = fopen(b.o.out, "a");
        if (!f)
            die("cannot write %s: %s", b.o.out, strerror(errno));
        fputs(r.data, f);
        fclose(f);
    }
    buf_cleanup(&r);
    drafter_cleanup(&b.dr);
    srv_stop(&b.kv);
    srv_stop(&b.ls);
    for (int d = 0; d < N_DOCS; d++)
        free(b.doc[d]);
    curl_global_cleanup();
    return 0;
}
