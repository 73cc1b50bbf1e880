/* bench_cluster.c — how request routing over several engines decides the
 * cache hit rate and the time to first token: a simulation.
 *
 * Documents of Zipf popularity, each cached once when it is uploaded (as
 * kvchat does), multi-turn chat sessions about them, arriving at random,
 * served by 1 to 4 engines, each with the costs of
 * kvchat-engine measured in docs/benchmarks.md (Qwen2.5-0.5B's shape on 2
 * CPU threads: prefill per token, KV bytes per token, restore bandwidth
 * from RAM and disk, decode speed) and the tiers of its KV cache: the
 * sequence slots, a RAM tier that holds a quarter of all the documents'
 * KV, a disk tier that keeps what the engine wrote, and optionally the
 * shared tier every engine reads. Three routing policies send each
 * question to an engine:
 *
 *   round-robin    the next engine, in turn;
 *   least-loaded   the engine with the fewest requests in flight;
 *   kvchat         rendezvous hashing of the document over the healthy
 *                  engines with a bound on load (llm/router.c, the
 *                  function kvchat itself runs).
 *
 * Every policy sees the same arrivals (one seed) at the same load per
 * engine. Printed per engine count and policy: where the prompt tokens
 * came from (slot, RAM, disk, shared tier, recomputed), TTFT p50 and p99,
 * and the load skew (the busiest engine's requests in flight over the
 * mean, averaged over time). The simulation is deterministic: the same
 * options give the same table.
 *
 * With --real (and --engine, --model), the same policies over real
 * kvchat-engines instead, 1 to 3 of them, each with a RAM tier of a
 * quarter of the documents' KV: a smaller workload of the same shape, the
 * questions sent one after another (so every engine is idle when asked,
 * and least-loaded means the engine that has served the fewest), each
 * answered with 4 tokens; the prompt tokens each engine restored and from
 * which tier, as it reports them, and the time to the first token at the
 * client. With the tiny model the times are small; the hit rates are the
 * point.
 *
 * Usage: kvchat-bench-cluster [--docs N] [--hours H] [--rate SESSIONS/S per
 *                             engine] [--seed N] [--shared] [--out FILE]
 *                             [--real --engine PATH --model PATH]
 */
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/llm/router.h"
#include "bench_http.h"
#include "bench_util.h"
#include "common/json.h"

/* Costs, from docs/benchmarks.md (2,349-token document: cold TTFT 10.26 s,
 * 29.0 MB of KV, restored from RAM at 6.8 GB/s, from the disk tier in
 * 4.3 ms from the page cache; decode 28.5 tokens/s alone). */
#define PREFILL_MS_PER_TOKEN 4.37
#define KV_BYTES_PER_TOKEN 12350.0
#define RESTORE_FIXED_MS 0.7
#define RAM_GBPS 6.8
#define DISK_GBPS 0.8       /* a file not in the page cache: an SSD's read */
#define SHARED_GBPS 0.4     /* a network filesystem */
#define FIRST_TOKEN_MS 35.0
#define DECODE_TPS 28.5
#define SLOTS 2             /* sequence slots per engine */

#define QUESTION_TOKENS 20
#define ANSWER_TOKENS 32
#define MAX_ENGINES 4
#define MAX_DOCS 4096
#define MAX_ENTRIES 65536

/* where a request's cached tokens came from (the table's columns, in order) */
enum { T_SLOT, T_RAM, T_DISK, T_SHARED, T_NONE, N_TIERS };
enum { P_ROUND_ROBIN, P_LEAST_LOADED, P_KVCHAT, N_POLICIES };
static const char *const policy_names[N_POLICIES] = { "round-robin", "least-loaded", "kvchat" };

typedef struct {
    int docs;
    double hours, rate;   /* sessions per second per engine */
    uint64_t seed;
    bool shared, real;
    const char *out, *engine, *model;
} opts_t;

/* ---- randomness (xorshift64*: the same sequence everywhere) ---- */

static uint64_t g_rng;

static double uniform(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static double exponential(double mean)
{
    return -mean * log(1.0 - uniform());
}

/* ---- the workload ---- */

typedef struct {
    double t;        /* arrival, seconds */
    int session, turn, doc;
    int tokens;      /* the prompt: document, then the conversation so far */
} request_t;

typedef struct {
    int n_docs;
    int doc_tokens[MAX_DOCS];
    double zipf_cdf[MAX_DOCS];
    request_t *req;
    int n_req;
} workload_t;

static int zipf_doc(const workload_t *w)
{
    double u = uniform();
    int lo = 0, hi = w->n_docs - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (w->zipf_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int by_time(const void *a, const void *b)
{
    double d = ((const request_t *)a)->t - ((const request_t *)b)->t;
    return d < 0 ? -1 : d > 0;
}

/* Sessions arriving at `rate` a second for `seconds`, each about one
 * document (Zipf, s = 1), of 2 to 6 questions some 20 s apart. */
static void workload_make(workload_t *w, const opts_t *o, double rate, double seconds)
{
    g_rng = o->seed * 0x9e3779b97f4a7c15ull + 1;
    w->n_docs = o->docs;
    double sum = 0;
    for (int i = 0; i < w->n_docs; i++) {
        w->doc_tokens[i] = 1000 + (int)(uniform() * 5000);
        sum += 1.0 / (i + 1);
    }
    double acc = 0;
    for (int i = 0; i < w->n_docs; i++) {
        acc += 1.0 / (i + 1) / sum;
        w->zipf_cdf[i] = acc;
    }
    int cap = (int)(rate * seconds * 7) + 64;
    w->req = calloc((size_t)cap, sizeof *w->req);
    w->n_req = 0;
    int session = 0;
    for (double t = exponential(1 / rate); t < seconds; t += exponential(1 / rate), session++) {
        int doc = zipf_doc(w), turns = 2 + (int)(uniform() * 5);
        double at = t;
        for (int k = 0; k < turns && w->n_req < cap; k++) {
            request_t *r = &w->req[w->n_req++];
            r->t = at;
            r->session = session;
            r->turn = k;
            r->doc = doc;
            r->tokens = w->doc_tokens[doc] + k * (QUESTION_TOKENS + ANSWER_TOKENS) +
                        QUESTION_TOKENS;
            at += 5 + exponential(20);
        }
    }
    qsort(w->req, (size_t)w->n_req, sizeof *w->req, by_time);
}

/* ---- an engine's KV cache ---- */

/* An entry: a document alone (session -1) or a session after a turn. */
typedef struct {
    int doc, session, turn;
    int tokens;
    double used;     /* last use, for LRU */
    bool ram, disk;
} entry_t;

typedef struct {
    entry_t *e;
    int n;
    double ram_bytes, ram_budget;
    int slot_session[SLOTS];   /* the sessions whose sequences the slots hold */
    int slot_turn[SLOTS];
    int next_slot;
    /* queue and service */
    double free_at[SLOTS];
    int inflight;
    double busy_integral;      /* integral of inflight over time */
    double last_t;
} engine_t;

typedef struct {
    entry_t *e;      /* shared tier: every entry any engine wrote */
    int n;
} shared_t;

static entry_t *find(entry_t *e, int n, int doc, int session, int turn)
{
    for (int i = 0; i < n; i++)
        if (e[i].doc == doc && e[i].session == session && e[i].turn == turn)
            return &e[i];
    return NULL;
}

/* Make room in the RAM tier: least recently used copies go (to disk,
 * where every entry is written anyway). */
static void ram_fit(engine_t *g)
{
    while (g->ram_bytes > g->ram_budget) {
        entry_t *lru = NULL;
        for (int i = 0; i < g->n; i++)
            if (g->e[i].ram && (!lru || g->e[i].used < lru->used))
                lru = &g->e[i];
        if (!lru)
            return;
        lru->ram = false;
        g->ram_bytes -= lru->tokens * KV_BYTES_PER_TOKEN;
    }
}

static void remember(engine_t *g, shared_t *sh, int doc, int session, int turn, int tokens,
                     double now)
{
    entry_t *x = find(g->e, g->n, doc, session, turn);
    if (!x && g->n < MAX_ENTRIES) {
        x = &g->e[g->n++];
        *x = (entry_t){ .doc = doc, .session = session, .turn = turn, .tokens = tokens };
    }
    if (!x)
        return;
    x->used = now;
    x->disk = true;
    if (!x->ram) {
        x->ram = true;
        g->ram_bytes += tokens * KV_BYTES_PER_TOKEN;
        ram_fit(g);
    }
    if (sh && !find(sh->e, sh->n, doc, session, turn) && sh->n < MAX_ENTRIES)
        sh->e[sh->n++] = (entry_t){ .doc = doc, .session = session, .turn = turn,
                                    .tokens = tokens, .disk = true };
}

/* The longest cached prefix of request r on engine g: its tokens and tier. */
static int lookup(engine_t *g, const shared_t *sh, const request_t *r, int *tier, double now)
{
    for (int s = 0; s < SLOTS; s++)
        if (r->turn > 0 && g->slot_session[s] == r->session && g->slot_turn[s] == r->turn - 1) {
            *tier = T_SLOT;
            return r->tokens - QUESTION_TOKENS;
        }
    /* the conversation so far, else the document alone */
    const int keys[2][2] = { { r->session, r->turn - 1 }, { -1, -1 } };
    for (int k = r->turn > 0 ? 0 : 1; k < 2; k++) {
        entry_t *x = find(g->e, g->n, r->doc, keys[k][0], keys[k][1]);
        if (x) {
            x->used = now;
            *tier = x->ram ? T_RAM : T_DISK;
            return x->tokens;
        }
        if (sh && find(sh->e, sh->n, r->doc, keys[k][0], keys[k][1])) {
            *tier = T_SHARED;
            return find(sh->e, sh->n, r->doc, keys[k][0], keys[k][1])->tokens;
        }
    }
    *tier = T_NONE;
    return 0;
}

static double restore_ms(int tier, int tokens)
{
    double gbps = tier == T_RAM ? RAM_GBPS : tier == T_DISK ? DISK_GBPS : SHARED_GBPS;
    if (tier == T_SLOT || tier == T_NONE)
        return 0;
    return RESTORE_FIXED_MS + tokens * KV_BYTES_PER_TOKEN / (gbps * 1e6);
}

/* ---- one run: n engines, one policy ---- */

typedef struct {
    double tokens[N_TIERS];
    double p50, p99, skew;
} result_t;

static int cmp_double(const void *a, const void *b)
{
    double d = *(const double *)a - *(const double *)b;
    return d < 0 ? -1 : d > 0;
}

static void advance(engine_t *g, double t)
{
    if (t > g->last_t) {
        g->busy_integral += g->inflight * (t - g->last_t);
        g->last_t = t;
    }
}

/* Requests are served in arrival order per engine (FIFO over its slots);
 * a request's in-flight span is from its arrival to its last token. */
typedef struct {
    double end;
    int engine;
} pending_t;

static result_t run(const workload_t *w, int n, int policy, bool with_shared, double ram_budget)
{
    engine_t g[MAX_ENGINES];
    memset(g, 0, sizeof g);
    shared_t sh = { 0 };
    if (with_shared)
        sh.e = calloc(MAX_ENTRIES, sizeof *sh.e);
    for (int i = 0; i < n; i++) {
        g[i].e = calloc(MAX_ENTRIES, sizeof *g[i].e);
        g[i].ram_budget = ram_budget;
        for (int s = 0; s < SLOTS; s++)
            g[i].slot_session[s] = -1;
    }
    const char *ids[MAX_ENGINES] = { "http://10.0.0.1:13141", "http://10.0.0.2:13141",
                                     "http://10.0.0.3:13141", "http://10.0.0.4:13141" };
    router_t *rt = router_new((size_t)n, ids, 1.25, SLOTS);
    /* every document is cached when it is uploaded (POST /documents/cache),
     * on the engine the policy sends it to: kvchat's, its home; the
     * others', the next engine in turn */
    for (int d = 0; d < w->n_docs; d++) {
        char key[32];
        int klen = snprintf(key, sizeof key, "doc-%d", d);
        int e = policy == P_KVCHAT ? router_home(rt, key, (size_t)klen) : d % n;
        remember(&g[e], with_shared ? &sh : NULL, d, -1, -1, w->doc_tokens[d], 0);
    }
    pending_t *pend = calloc((size_t)w->n_req, sizeof *pend);
    int n_pend = 0;
    double *ttft = calloc((size_t)w->n_req, sizeof *ttft);
    result_t res = { 0 };
    int rr = 0;
    for (int i = 0; i < w->n_req; i++) {
        const request_t *r = &w->req[i];
        /* requests that ended before this arrival leave */
        for (int k = 0; k < n_pend;) {
            if (pend[k].end <= r->t) {
                advance(&g[pend[k].engine], pend[k].end);
                g[pend[k].engine].inflight--;
                if (policy == P_KVCHAT)
                    router_done(rt, pend[k].engine);
                pend[k] = pend[--n_pend];
            } else {
                k++;
            }
        }
        int e = 0;
        char key[32];   /* kvchat routes by the document (its part) */
        int klen = snprintf(key, sizeof key, "doc-%d", r->doc);
        if (policy == P_ROUND_ROBIN) {
            e = rr++ % n;
        } else if (policy == P_LEAST_LOADED) {
            for (int k = 1; k < n; k++)
                if (g[k].inflight < g[e].inflight)
                    e = k;
        }
        if (policy == P_KVCHAT)
            e = router_pick(rt, key, (size_t)klen, NULL);
        engine_t *x = &g[e];
        /* the first free slot of the engine, FIFO */
        int s = 0;
        for (int k = 1; k < SLOTS; k++)
            if (x->free_at[k] < x->free_at[s])
                s = k;
        double start = x->free_at[s] > r->t ? x->free_at[s] : r->t;
        int tier;
        int cached = lookup(x, with_shared ? &sh : NULL, r, &tier, start);
        if (cached > r->tokens)
            cached = r->tokens;
        res.tokens[tier] += cached;
        res.tokens[T_NONE] += r->tokens - cached;
        double first = restore_ms(tier, cached) + (r->tokens - cached) * PREFILL_MS_PER_TOKEN +
                       FIRST_TOKEN_MS;
        double end = start + first / 1000.0 + (ANSWER_TOKENS - 1) / DECODE_TPS;
        ttft[i] = (start - r->t) * 1000.0 + first;
        x->free_at[s] = end;
        advance(x, r->t);
        x->inflight++;
        pend[n_pend++] = (pending_t){ end, e };
        /* what the engine keeps: the document (the first turn's prefix)
         * and the conversation after this turn, in this slot */
        remember(x, with_shared ? &sh : NULL, r->doc, -1, -1, w->doc_tokens[r->doc], end);
        remember(x, with_shared ? &sh : NULL, r->doc, r->session, r->turn,
                 r->tokens + ANSWER_TOKENS, end);
        x->slot_session[s] = r->session;
        x->slot_turn[s] = r->turn;
    }
    double t_end = w->req[w->n_req - 1].t;
    for (int k = 0; k < n_pend; k++)
        if (pend[k].end > t_end)
            t_end = pend[k].end;
    for (int k = 0; k < n_pend; k++) {
        advance(&g[pend[k].engine], pend[k].end);
        g[pend[k].engine].inflight--;
    }
    double most = 0, sum = 0;
    for (int k = 0; k < n; k++) {
        advance(&g[k], t_end);
        double avg = g[k].busy_integral / t_end;
        sum += avg;
        if (avg > most)
            most = avg;
        free(g[k].e);
    }
    res.skew = sum > 0 ? most / (sum / n) : 1;
    qsort(ttft, (size_t)w->n_req, sizeof *ttft, cmp_double);
    res.p50 = ttft[w->n_req / 2];
    res.p99 = ttft[(int)(w->n_req * 0.99)];
    free(ttft);
    free(pend);
    free(sh.e);
    router_free(rt);
    return res;
}

/* ---- real engines ---- */

#define REAL_KEY "bench-cluster-key"
#define REAL_ENGINES 3
#define TINY_KV_BYTES_PER_TOKEN 520.0   /* the tiny model's KV (docs/benchmarks.md) */

/* Document d's text: words enough for about `tokens` tokens. */
static char *real_text(int d, int tokens)
{
    static const char *const words[] = { "harbor", "ferry", "lamp", "keeper", "island", "storm",
                                         "tide", "signal", "rock", "beacon", "gull", "pier" };
    size_t cap = (size_t)tokens * 8 + 64, len = 0;
    char *t = malloc(cap);
    len += (size_t)snprintf(t, cap, "Logbook %d.", d);
    uint64_t x = (uint64_t)d * 0x9e3779b97f4a7c15ull + 1;
    for (int i = 0; i < tokens && len + 10 < cap; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        len += (size_t)snprintf(t + len, cap - len, " %s", words[(x >> 20) % 12]);
    }
    return t;
}

static void real_prefill(int port, const char *text)
{
    json_t *b = json_pack("{s:[{s:s, s:s}]}", "messages", "role", "system", "content", text);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    long st = bench_request(port, "POST", "/v1/cache/prefill", body, REAL_KEY, NULL);
    free(body);
    if (st != 200) {
        fprintf(stderr, "kvchat-bench-cluster: prefill on port %d answered %ld\n", port, st);
        exit(1);
    }
}

static size_t run_real(const opts_t *o, char *report, size_t len, size_t cap)
{
    workload_t w;
    opts_t small = *o;
    small.docs = o->docs < 60 ? o->docs : 60;
    workload_make(&w, &small, 0.004, 3600 * 4);
    if (w.n_req > 240)
        w.n_req = 240;
    double total_kv = 0;
    char *texts[MAX_DOCS];
    for (int d = 0; d < w.n_docs; d++) {
        w.doc_tokens[d] = 200 + w.doc_tokens[d] / 2;   /* 700-3,200 tokens */
        texts[d] = real_text(d, w.doc_tokens[d]);
        total_kv += w.doc_tokens[d] * TINY_KV_BYTES_PER_TOKEN;
    }
    char ram[32];
    snprintf(ram, sizeof ram, "%d", (int)(total_kv / 4 / (1 << 20)) + 1);
    char dir[] = "/tmp/kvchat-bench-cluster-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    len += (size_t)snprintf(report + len, cap - len,
        "\n## Routing over several engines (real engines, tiny model)\n\n"
        "kvchat-bench-cluster --real: %d documents of 700-3,200 tokens, each prefilled at upload "
        "on the engine the policy sends it to; %d questions of Zipf-popular documents, one "
        "after another; 1 to 3 kvchat-engines with the tiny model, each with a RAM tier of %s "
        "MiB (a quarter of the documents' KV) and a disk tier. Prompt tokens by the tier the "
        "engine restored them from; TTFT at the client.\n\n"
        "| engines | routing | slot | RAM | disk | recomputed | hit rate | TTFT p50 ms | TTFT "
        "p99 ms | skew (requests) |\n|---|---|---|---|---|---|---|---|---|---|\n",
        w.n_docs, w.n_req, ram);
    double hit[REAL_ENGINES + 1][N_POLICIES] = { { 0 } };
    double p99[REAL_ENGINES + 1][N_POLICIES] = { { 0 } };
    for (int n = 1; n <= REAL_ENGINES; n++)
        for (int policy = n == 1 ? P_KVCHAT : 0; policy < N_POLICIES; policy++) {
            bench_proc_t e[REAL_ENGINES];
            const char *ids[REAL_ENGINES];
            char urls[REAL_ENGINES][64];
            for (int i = 0; i < n; i++) {
                char port[16], kv[128], log[128];
                e[i].port = bench_free_port();
                snprintf(port, sizeof port, "%d", e[i].port);
                snprintf(kv, sizeof kv, "%s/kv-%d-%d-%d", dir, n, policy, i);
                snprintf(log, sizeof log, "%s/engine-%d-%d-%d.log", dir, n, policy, i);
                const char *argv[] = { o->engine, "--model", o->model, "--port", port,
                                       "--threads", "1", "--ctx-size", "8192", "--parallel",
                                       "2", "--cache-dir", kv, "--cache-ram", ram, "--api-key",
                                       REAL_KEY, NULL };
                bench_proc_start(&e[i], argv, log, "/health");
                snprintf(urls[i], sizeof urls[i], "http://127.0.0.1:%d", e[i].port);
                ids[i] = urls[i];
            }
            router_t *rt = router_new((size_t)n, ids, 1.25, SLOTS);
            for (int d = 0; d < w.n_docs; d++) {
                char key[32];
                int klen = snprintf(key, sizeof key, "doc-%d", d);
                int home = policy == P_KVCHAT ? router_home(rt, key, (size_t)klen) : d % n;
                real_prefill(e[home].port, texts[d]);
            }
            double tokens[N_TIERS] = { 0 }, *ttft = calloc((size_t)w.n_req, sizeof *ttft);
            int served[REAL_ENGINES] = { 0 }, rr = 0;
            for (int i = 0; i < w.n_req; i++) {
                const request_t *r = &w.req[i];
                char key[32], q[64];
                int klen = snprintf(key, sizeof key, "doc-%d", r->doc);
                snprintf(q, sizeof q, "Question %d of session %d?", r->turn, r->session);
                int k = 0;
                if (policy == P_ROUND_ROBIN)
                    k = rr++ % n;
                else if (policy == P_LEAST_LOADED)
                    for (int j = 1; j < n; j++)
                        k = served[j] < served[k] ? j : k;
                else
                    k = router_pick(rt, key, (size_t)klen, NULL);
                bench_stream_t st;
                ttft[i] = bench_chat(e[k].port, REAL_KEY, texts[r->doc], q, 4, true, &st);
                if (policy == P_KVCHAT)
                    router_done(rt, k);
                served[k]++;
                int tier = !strcmp(st.cache_tier, "slot") ? T_SLOT
                           : !strcmp(st.cache_tier, "ram") ? T_RAM
                           : !strcmp(st.cache_tier, "disk") ? T_DISK
                           : !strcmp(st.cache_tier, "shared") ? T_SHARED : T_NONE;
                int cached = st.cache_n > 0 ? st.cache_n : 0;
                tokens[tier] += cached;
                tokens[T_NONE] += st.prompt_n > 0 ? st.prompt_n : 0;
            }
            double all = 0;
            for (int t = 0; t < N_TIERS; t++)
                all += tokens[t];
            int most = 0;
            for (int i = 0; i < n; i++)
                most = served[i] > most ? served[i] : most;
            qsort(ttft, (size_t)w.n_req, sizeof *ttft, cmp_double);
            hit[n][policy] = 1 - tokens[T_NONE] / all;
            p99[n][policy] = ttft[(int)(w.n_req * 0.99)];
            len += (size_t)snprintf(report + len, cap - len,
                                    "| %d | %s | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f "
                                    "| %.1f | %.2f |\n",
                                    n, n == 1 ? "(one engine)" : policy_names[policy],
                                    100 * tokens[T_SLOT] / all, 100 * tokens[T_RAM] / all,
                                    100 * tokens[T_DISK] / all, 100 * tokens[T_NONE] / all,
                                    100 * (1 - tokens[T_NONE] / all), ttft[w.n_req / 2],
                                    ttft[(int)(w.n_req * 0.99)],
                                    most / ((double)w.n_req / n));
            free(ttft);
            router_free(rt);
            for (int i = 0; i < n; i++)
                bench_proc_stop(&e[i]);
        }
    len += (size_t)snprintf(report + len, cap - len,
                            "\nTargets, kvchat's routing on real engines:\n\n");
    for (int n = 2; n <= REAL_ENGINES; n++)
        len += (size_t)snprintf(report + len, cap - len,
                                "- %d engines: hit rate %.1f%% against one engine's %.1f%% (%+.1f "
                                "points; target: within 5); TTFT p99 round-robin / kvchat %.1fx "
                                "(target >= 3x)\n",
                                n, 100 * hit[n][P_KVCHAT], 100 * hit[1][P_KVCHAT],
                                100 * (hit[n][P_KVCHAT] - hit[1][P_KVCHAT]),
                                p99[n][P_ROUND_ROBIN] / p99[n][P_KVCHAT]);
    for (int d = 0; d < w.n_docs; d++)
        free(texts[d]);
    free(w.req);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "kvchat-bench-cluster: cannot remove %s\n", dir);
    return len;
}

int main(int argc, char **argv)
{
    opts_t o = { .docs = 400, .hours = 8, .rate = 0.03, .seed = 7 };
    static const struct option longopts[] = {
        { "docs", required_argument, NULL, 'd' },  { "hours", required_argument, NULL, 'h' },
        { "rate", required_argument, NULL, 'r' },  { "seed", required_argument, NULL, 's' },
        { "shared", no_argument, NULL, 'S' },      { "out", required_argument, NULL, 'o' },
        { "real", no_argument, NULL, 'R' },        { "engine", required_argument, NULL, 'e' },
        { "model", required_argument, NULL, 'm' }, { NULL, 0, NULL, 0 },
    };
    for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        switch (c) {
        case 'd': o.docs = atoi(optarg); break;
        case 'h': o.hours = atof(optarg); break;
        case 'r': o.rate = atof(optarg); break;
        case 's': o.seed = strtoull(optarg, NULL, 10); break;
        case 'S': o.shared = true; break;
        case 'o': o.out = optarg; break;
        case 'R': o.real = true; break;
        case 'e': o.engine = optarg; break;
        case 'm': o.model = optarg; break;
        default: return 2;
        }
    }
    if (o.docs < 1 || o.docs > MAX_DOCS || o.hours <= 0 || o.rate <= 0) {
        fprintf(stderr, "kvchat-bench-cluster: --docs 1..%d, --hours and --rate > 0\n", MAX_DOCS);
        return 2;
    }
    static char report[1 << 16];
    size_t len = 0;
    if (o.real) {
        if (!o.engine || !o.model) {
            fprintf(stderr, "kvchat-bench-cluster: --real needs --engine and --model\n");
            return 2;
        }
        len = run_real(&o, report, len, sizeof report);
        fputs(report, stdout);
        if (o.out) {
            FILE *f = fopen(o.out, "a");
            if (!f || fputs(report, f) < 0 || fclose(f) != 0)
                return 1;
        }
        return 0;
    }
#define OUT(...) len += (size_t)snprintf(report + len, sizeof report - len, __VA_ARGS__)
    OUT("\n## Routing over several engines (simulation%s)\n\n",
        o.shared ? ", with a shared tier" : "");
    OUT("kvchat-bench-cluster: %d documents of 1,000-6,000 tokens, each cached at upload on "
        "the engine the policy sends it to, Zipf popularity (s = 1); "
        "chat sessions of 2-6 questions about one document, %.3f sessions/s per engine for "
        "%.1f h; each engine with %d slots, a RAM tier holding a quarter of all the documents' "
        "KV and a disk tier%s, at the costs measured above (prefill %.2f ms/token, restore at "
        "%.1f GB/s from RAM, %.1f from disk%s). Prompt tokens by where they came from; TTFT "
        "from arrival (queueing included); skew = the busiest engine's mean requests in flight "
        "over all engines' mean.\n\n",
        o.docs, o.rate, o.hours, SLOTS, o.shared ? ", and the shared tier" : "",
        PREFILL_MS_PER_TOKEN, RAM_GBPS, DISK_GBPS, o.shared ? ", 0.4 from the shared tier" : "");
    OUT("| engines | routing | slot | RAM | disk | shared | recomputed | hit rate | TTFT p50 ms "
        "| TTFT p99 ms | skew |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    workload_t w;
    double one_engine_hits = 0;
    double p99_rr[MAX_ENGINES + 1] = { 0 }, p99_kv[MAX_ENGINES + 1] = { 0 };
    double hit_kv[MAX_ENGINES + 1] = { 0 };
    for (int n = 1; n <= MAX_ENGINES; n++) {
        workload_make(&w, &o, o.rate * n, o.hours * 3600);
        double total_kv = 0;
        for (int i = 0; i < w.n_docs; i++)
            total_kv += w.doc_tokens[i] * KV_BYTES_PER_TOKEN;
        for (int p = 0; p < (n == 1 ? 1 : N_POLICIES); p++) {
            int policy = n == 1 ? P_KVCHAT : p;
            result_t r = run(&w, n, policy, o.shared, total_kv / 4);
            double all = 0;
            for (int t = 0; t < N_TIERS; t++)
                all += r.tokens[t];
            double hits = 1 - r.tokens[T_NONE] / all;
            OUT("| %d | %s |", n, n == 1 ? "(one engine)" : policy_names[policy]);
            for (int t = 0; t < N_TIERS; t++)
                OUT(" %.1f%% |", 100 * r.tokens[t] / all);
            OUT(" %.1f%% | %.0f | %.0f | %.2f |\n", 100 * hits, r.p50, r.p99, r.skew);
            if (n == 1)
                one_engine_hits = hits;
            if (policy == P_ROUND_ROBIN)
                p99_rr[n] = r.p99;
            if (policy == P_KVCHAT) {
                p99_kv[n] = r.p99;
                hit_kv[n] = hits;
            }
        }
        free(w.req);
    }
    OUT("\nTargets, kvchat's routing against the others:\n\n");
    for (int n = 2; n <= MAX_ENGINES; n++)
        OUT("- %d engines: hit rate %.1f%% against one engine's %.1f%% (%+.1f points; target: "
            "within 5); TTFT p99 round-robin / kvchat %.1fx (target >= 3x)\n",
            n, 100 * hit_kv[n], 100 * one_engine_hits, 100 * (hit_kv[n] - one_engine_hits),
            p99_rr[n] / p99_kv[n]);
    fputs(report, stdout);
    if (o.out) {
        FILE *f = fopen(o.out, "a");
        if (!f || fputs(report, f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "kvchat-bench-cluster: cannot append to %s\n", o.out);
            return 1;
        }
    }
    return 0;
}
