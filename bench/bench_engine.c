/* bench_engine.c — kvchat-engine against llama-server, same workloads, same run.
 *
 * Both servers are built from the same llama.cpp source and load the same
 * model (Qwen2.5-0.5B's shape, f16, random weights) with the same thread
 * count. Workloads, measured as time to first token (TTFT) at the client:
 *   1. a cold question on a ~2,000-token document;
 *   2. a new question on the same document;
 *   3. questions alternating across three documents (6 rounds);
 *   4. a new question after the server restarted;
 *   5. decode speed: one stream, and four concurrent streams.
 * Peers: llama-server with its defaults (RAM prompt cache on), and
 * llama-server -np 1 --cache-ram 0 (one slot, no prompt cache: how the seed
 * prototype behaves). Restore bandwidth (KV bytes copied per second when a
 * cached prefix is restored) is compared with memcpy of the same bytes,
 * measured in this process. The three servers run at once and take turns
 * at every step of every workload, so the machine's slower and faster
 * spells (a shared virtual machine has them) fall on all of them alike.
 *
 * Usage: kvchat-bench --engine PATH --llama-server PATH --model PATH
 *                     [--threads N] [--out docs/benchmarks.md] [--quick]
 * Prints the table and writes it (with a machine description) to --out.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_http.h"
#include "bench_util.h"
#include "common/buf.h"
#include "common/json.h"
#include "engine/hugemem.h"

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
    fprintf(stderr, "kvchat-bench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ---- servers ---- */

typedef enum { SRV_KVCHAT, SRV_LLAMA, SRV_LLAMA_NP1 } srv_kind_t;

typedef struct {
    srv_kind_t kind;
    const char *label;
    pid_t pid;
    int port;
    char dir[256];
    char log[300];
} srv_t;

/* A request; returns the status (0 on transport error), body in *out. */
static long request(int port, const char *method, const char *path, const char *body, char **out)
{
    return bench_request(port, method, path, body, NULL, out);
}

static void srv_start(srv_t *s, const opts_t *o, bool reset)
{
    s->port = bench_free_port();
    char port[16], threads[16];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(threads, sizeof threads, "%d", o->threads);
    const char *argv[40];
    int n = 0;
    char kvdir[300];
    snprintf(kvdir, sizeof kvdir, "%s/kv", s->dir);
    if (s->kind == SRV_KVCHAT) {
        argv[n++] = o->engine;
        argv[n++] = "--model"; argv[n++] = o->model;
        argv[n++] = "--threads"; argv[n++] = threads;
        argv[n++] = "--parallel"; argv[n++] = "4";
        argv[n++] = "--ctx-size"; argv[n++] = "32768";
        argv[n++] = "--cache-dir"; argv[n++] = kvdir;
        argv[n++] = reset ? "--reset" : "--resume";
    } else {
        argv[n++] = o->server;
        argv[n++] = "-m"; argv[n++] = o->model;
        argv[n++] = "-t"; argv[n++] = threads;
        if (s->kind == SRV_LLAMA_NP1) {
            argv[n++] = "-np"; argv[n++] = "1";
            argv[n++] = "--cache-ram"; argv[n++] = "0";
        }
    }
    argv[n++] = "--port"; argv[n++] = port;
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        setpgid(0, 0);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    double t0 = bench_now_ms();
    for (;;) {
        if (request(s->port, "GET", "/health", NULL, NULL) == 200)
            break;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            die("%s exited during start-up; see %s", s->label, s->log);
        if (bench_now_ms() - t0 > 300000)
            die("%s not healthy after 300 s; see %s", s->label, s->log);
        usleep(100 * 1000);
    }
}

static void srv_stop(srv_t *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    double t0 = bench_now_ms();
    while (waitpid(s->pid, NULL, WNOHANG) != s->pid) {
        if (bench_now_ms() - t0 > 30000) {
            kill(-s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            break;
        }
        usleep(20 * 1000);
    }
    s->pid = 0;
}

/* ---- one streamed question ---- */

typedef bench_stream_t stream_t;

/* Ask and stream; returns TTFT in ms (exits on failure). */
static double ask(int port, const char *doc, const char *question, int max_tokens, stream_t *st)
{
    double ttft = bench_chat(port, NULL, doc, question, max_tokens, true, st);
    if (ttft < 0)
        die("question failed on port %d", port);
    return ttft;
}

/* ---- workloads ---- */

static char *make_doc(int seed, int n_lines)
{
    static const char *const words[] = { "alpha", "bravo", "cedar", "delta", "ember", "fjord",
                                         "grove", "harbor", "iris", "juniper", "kelp", "lumen",
                                         "mesa", "nectar", "onyx", "prairie" };
    buf_t b;
    buf_init(&b, 1 << 22);
    buf_printf(&b, "Inventory report %d. Each line lists an item, its place and its weight.\n", seed);
    for (int i = 0; i < n_lines; i++)
        buf_printf(&b, "Item %d in hall %d: %s %s crate, %d kg, checked on day %d.\n", i, seed,
                   words[(i * 7 + seed) % 16], words[(i * 5 + seed * 3) % 16],
                   (i * 37 + seed * 11) % 1000, (i * 13 + seed) % 365);
    return buf_steal(&b, NULL);
}

typedef struct {
    double cold;            /* (1) */
    double same_doc;        /* (2) */
    double alternating;     /* (3) median of 6 */
    double alt_max;
    double restart;         /* (4) */
    double tps1, tps4;      /* (5) */
    int doc_tokens;
    int cache_n_same, cache_n_restart;
    double restore_copy_gbs, restore_total_gbs;   /* the restore from disk in (4) */
    double restored_mb;
    double ram_restore_gbs;     /* median over restores from RAM, one slot */
    double ram_restore_min, ram_restore_max;
    int ram_restores;
} result_t;

typedef struct {
    int port;
    int idx;
    stream_t st;
} conc_t;

static void *conc_ask(void *arg)
{
    conc_t *c = arg;
    char q[128];
    snprintf(q, sizeof q, "Write a long story about crate number %d.", c->idx);
    ask(c->port, NULL, q, 96, &c->st);
    return NULL;
}

static double json_num(const char *body, const char *key)
{
    json_t *j = json_loads(body, 0, NULL);
    double v = json_number_value(json_object_get(j, key));
    json_decref(j);
    return v;
}

/* Restore bandwidth, on the engine restarted for (4): five documents
 * cycled over its four slots, so each question misses the slot tier and
 * restores its document from the store (B and C from disk, being the
 * first after the restart; D and E are new; then every one from RAM). The
 * copy into the KV is timed by the engine (restore_copy_ms_total); the
 * median over the RAM restores is compared with memcpy's median. */
static void measure_restores(srv_t *s, const opts_t *o, char *docs[3], const char *const questions[],
                             result_t *r)
{
    stream_t st;
    char *all[5] = { docs[0], docs[1], docs[2], make_doc(4, o->quick ? 40 : 84),
                     make_doc(5, o->quick ? 40 : 84) };
    double gbs[10];
    int n = 0;
    for (int i = 1; i < 15; i++) {
        char *before = NULL, *after = NULL;
        request(s->port, "GET", "/v1/cache/stats", NULL, &before);
        sleep(1);
        ask(s->port, all[i % 5], questions[i % 14], 4, &st);
        request(s->port, "GET", "/v1/cache/stats", NULL, &after);
        double bytes = json_num(after, "restored_bytes") - json_num(before, "restored_bytes");
        double ms = json_num(after, "restore_copy_ms_total") - json_num(before, "restore_copy_ms_total");
        const bool from_ram = i >= 5 && bytes > 0 && ms > 0;
        if (from_ram && n < 10)
            gbs[n++] = bytes / ms / 1e6;
        fprintf(stderr, "  restore %d doc %c: %.1f MB copied in %.2f ms (cache_n %d)%s\n", i, 'A' + i % 5,
                bytes / 1e6, ms, st.cache_n, from_ram ? "" : ", not from RAM");
        free(before);
        free(after);
    }
    free(all[3]);
    free(all[4]);
    r->ram_restores = n;
    if (n > 0) {
        r->ram_restore_gbs = bench_median(gbs, n);
        r->ram_restore_min = r->ram_restore_max = gbs[0];
        for (int i = 1; i < n; i++) {
            if (gbs[i] < r->ram_restore_min)
                r->ram_restore_min = gbs[i];
            if (gbs[i] > r->ram_restore_max)
                r->ram_restore_max = gbs[i];
        }
    }
}

/* (5) one run: tokens/s of one stream, then of four at once (sum). */
static void decode_run(srv_t *s, int run, double *one, double *four)
{
    stream_t st;
    ask(s->port, NULL, "Tell me everything about crates.", 96, &st);
    *one = st.predicted_ms > 0 ? st.predicted_n * 1000.0 / st.predicted_ms : 0;
    conc_t c[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        c[i] = (conc_t){ .port = s->port, .idx = i + 4 * run };
        pthread_create(&th[i], NULL, conc_ask, &c[i]);
    }
    double first = 1e18, last = 0;
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        if (c[i].st.t_first < first)
            first = c[i].st.t_first;
        if (c[i].st.t_last > last)
            last = c[i].st.t_last;
        total += c[i].st.predicted_n;
    }
    *four = last > first ? total * 1000.0 / (last - first) : 0;
}

/* (4) restart the server, then a new question on document A. */
static void restart_question(srv_t *s, const opts_t *o, char *docs[3], const char *const questions[],
                             result_t *r)
{
    stream_t st;
    srv_stop(s);
    srv_start(s, o, false);
    ask(s->port, NULL, "Hello there.", 4, &st);
    char *before = NULL;
    if (s->kind == SRV_KVCHAT)
        request(s->port, "GET", "/v1/cache/stats", NULL, &before);
    sleep(1);
    r->restart = ask(s->port, docs[0], questions[10], 8, &st);
    r->cache_n_restart = st.cache_n;
    fprintf(stderr, "  %s: (4) after restart: %.0f ms (cache_n %d)\n", s->label, r->restart, st.cache_n);
    if (s->kind == SRV_KVCHAT) {
        char *after = NULL;
        request(s->port, "GET", "/v1/cache/stats", NULL, &after);
        double bytes = json_num(after, "restored_bytes") - json_num(before, "restored_bytes");
        double copy_ms = json_num(after, "restore_copy_ms_total") - json_num(before, "restore_copy_ms_total");
        double total_ms = json_num(after, "restore_ms_total") - json_num(before, "restore_ms_total");
        r->restored_mb = bytes / 1e6;
        r->restore_copy_gbs = copy_ms > 0 ? bytes / copy_ms / 1e6 : 0;
        r->restore_total_gbs = total_ms > 0 ? bytes / total_ms / 1e6 : 0;
        free(before);
        free(after);
    }
}

/* Every workload, the servers taking turns at each step: all of them are
 * up at once (only the one asked works), so a slower or faster spell of
 * this machine falls on every server alike instead of on whichever ran
 * then. Each server still sees its own requests in the workload's order,
 * a second apart where the workload says so. */
static void run_servers(srv_t *sv, int n, const opts_t *o, char *docs[3], const char *const questions[],
                        result_t *res)
{
    stream_t st;
    for (int k = 0; k < n; k++) {
        srv_start(&sv[k], o, true);
        /* warm-up (model pages, threads) on an unrelated short prompt */
        ask(sv[k].port, NULL, "Hello there.", 4, &st);
    }

    /* (5) decode speed first, while nothing else runs (no snapshot
     * writes): medians of seven runs, the servers' order reversed every
     * other run */
    enum { DECODE_RUNS = 7 };
    double one[3][DECODE_RUNS], four[3][DECODE_RUNS];
    for (int run = 0; run < DECODE_RUNS; run++)
        for (int i = 0; i < n; i++) {
            int k = run % 2 ? n - 1 - i : i;
            if (sv[k].kind == SRV_LLAMA_NP1)
                continue;
            decode_run(&sv[k], run, &one[k][run], &four[k][run]);
            fprintf(stderr, "  %s: (5) decode run %d: %.1f tok/s single, %.1f tok/s with 4 streams\n",
                    sv[k].label, run + 1, one[k][run], four[k][run]);
        }
    for (int k = 0; k < n; k++) {
        if (sv[k].kind == SRV_LLAMA_NP1)
            continue;
        res[k].tps1 = bench_median(one[k], DECODE_RUNS);
        res[k].tps4 = bench_median(four[k], DECODE_RUNS);
        fprintf(stderr, "  %s: (5) decode: %.1f tok/s single, %.1f tok/s with 4 streams\n", sv[k].label,
                res[k].tps1, res[k].tps4);
    }

    for (int k = 0; k < n; k++) {
        res[k].cold = ask(sv[k].port, docs[0], questions[0], 8, &st);
        res[k].doc_tokens = st.prompt_n + st.cache_n;
        fprintf(stderr, "  %s: (1) cold: %.0f ms (%d prompt tokens)\n", sv[k].label, res[k].cold,
                res[k].doc_tokens);
    }
    /* (2) five new questions on the same document, a second apart (a
     * person reads the answer before asking again); the median counts */
    enum { SAME_N = 5 };
    double same[3][SAME_N];
    for (int i = 0; i < SAME_N; i++)
        for (int k = 0; k < n; k++) {
            sleep(1);
            same[k][i] = ask(sv[k].port, docs[0], questions[11 + i], 8, &st);
            res[k].cache_n_same = st.cache_n;
            fprintf(stderr, "  %s: (2) same document: %.0f ms (cache_n %d)\n", sv[k].label, same[k][i],
                    st.cache_n);
        }
    for (int k = 0; k < n; k++)
        res[k].same_doc = bench_median(same[k], SAME_N);

    /* (3) B and C are seen once (cold), then 6 alternating rounds */
    for (int k = 0; k < n; k++) {
        ask(sv[k].port, docs[1], questions[2], 8, &st);
        ask(sv[k].port, docs[2], questions[3], 8, &st);
    }
    int rounds = o->quick ? 3 : 6;
    double alt[3][6];
    for (int i = 0; i < rounds; i++)
        for (int k = 0; k < n; k++) {
            sleep(1);
            alt[k][i] = ask(sv[k].port, docs[i % 3], questions[4 + i], 8, &st);
            fprintf(stderr, "  %s: (3) round %d doc %c: %.0f ms (cache_n %d)\n", sv[k].label, i + 1,
                    'A' + i % 3, alt[k][i], st.cache_n);
        }
    for (int k = 0; k < n; k++) {
        res[k].alt_max = 0;
        for (int i = 0; i < rounds; i++)
            if (alt[k][i] > res[k].alt_max)
                res[k].alt_max = alt[k][i];
        res[k].alternating = bench_median(alt[k], rounds);
    }

    for (int k = 0; k < n; k++)
        restart_question(&sv[k], o, docs, questions, &res[k]);
    for (int k = 0; k < n; k++)
        if (sv[k].kind == SRV_KVCHAT)
            measure_restores(&sv[k], o, docs, questions, &res[k]);
    for (int k = 0; k < n; k++)
        srv_stop(&sv[k]);
}

/* memcpy bandwidth for `bytes`, measured two ways between buffers far
 * larger than the CPU caches (a restore writes KV cells that are not in
 * the cache), filled with distinct data, on huge pages as the engine's
 * KV cache and snapshots are:
 * - like a restore: each copy a second after the last one, between
 *   buffers untouched since they were filled, as a restore copies a cached
 *   entry after the question's idle second: the median of 7 (*idle);
 * - back to back: the median of 9 copies in a row (returned).
 * *hot gets the best of 5 repeated copies of one buffer (cache-hot). */
static double memcpy_gbs(size_t bytes, double *idle, double *hot)
{
    const int slots = 9;
    char *src = hugemem_alloc(bytes * (size_t)slots), *dst = hugemem_alloc(bytes * (size_t)slots);
    if (!src || !dst)
        die("out of memory");
    bench_fill_unique(src, bytes * (size_t)slots, 88172645463325252ull);
    bench_fill_unique(dst, bytes * (size_t)slots, 1234567ull);
    double t[9];
    for (int i = 0; i < 7; i++) {
        sleep(1);
        size_t so = (size_t)i * bytes, d_o = (size_t)((i * 5 + 3) % slots) * bytes;
        double t0 = bench_now_ms();
        memcpy(dst + d_o, src + so, bytes);
        t[i] = bench_now_ms() - t0;
        src[so] = dst[d_o + bytes - 1];   /* keep the copies observable */
    }
    *idle = bytes / bench_median(t, 7) / 1e6;
    for (int i = 0; i < slots; i++) {
        size_t so = (size_t)i * bytes, d_o = (size_t)((i * 5 + 3) % slots) * bytes;
        double t0 = bench_now_ms();
        memcpy(dst + d_o, src + so, bytes);
        t[i] = bench_now_ms() - t0;
        src[so] = dst[d_o + bytes - 1];
    }
    double best = 1e18;
    for (int i = 0; i < 5; i++) {
        double t0 = bench_now_ms();
        memcpy(dst, src, bytes);
        double x = bench_now_ms() - t0;
        if (x < best)
            best = x;
        src[i] = dst[bytes - 1 - (size_t)i];
    }
    *hot = bytes / best / 1e6;
    double med = bench_median(t, slots);
    free(src);
    free(dst);
    return bytes / med / 1e6;
}

static void describe_machine(buf_t *b, const opts_t *o)
{
    char cpu[256] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                snprintf(cpu, sizeof cpu, "%s", c + 2);
                cpu[strcspn(cpu, "\n")] = '\0';
            }
            break;
        }
    }
    if (f)
        fclose(f);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    struct utsname u;
    uname(&u);
    time_t t = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&t));
    buf_printf(b, "Measured %s on %s, %ld cores online, %.0f GiB RAM, Linux %s; %d threads per server.\n"
                  "Model: Qwen2.5-0.5B's shape (24 layers, 896 wide, 14 heads, 2 KV heads, FFN 4864), "
                  "f16 weights (random, written by kvchat-mkmodel); KV cache f16, flash attention.\n"
                  "Both servers are built from the same llama.cpp source (commit 80fb11a) and run with their "
                  "defaults otherwise: kvchat-engine reads the weights into memory and puts its large buffers on "
                  "transparent huge pages (docs/engine.md), llama-server maps the file and uses the C "
                  "library's default pages.\n\n",
               date, cpu, sysconf(_SC_NPROCESSORS_ONLN), (double)pages * psz / (1 << 30), u.release,
               o->threads);
}

int main(int argc, char **argv)
{
    opts_t o = { .threads = 2, .out = NULL };
    static const struct option opts[] = {
        { "engine", required_argument, NULL, 'e' }, { "llama-server", required_argument, NULL, 's' },
        { "model", required_argument, NULL, 'm' },  { "threads", required_argument, NULL, 't' },
        { "out", required_argument, NULL, 'o' },    { "quick", no_argument, NULL, 'q' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "e:s:m:t:o:q", opts, NULL)) != -1) {
        switch (c) {
        case 'e': o.engine = optarg; break;
        case 's': o.server = optarg; break;
        case 'm': o.model = optarg; break;
        case 't': o.threads = atoi(optarg); break;
        case 'o': o.out = optarg; break;
        case 'q': o.quick = true; break;
        default: die("usage: kvchat-bench --engine P --llama-server P --model P [--threads N] [--out F]");
        }
    }
    if (!o.engine || !o.server || !o.model)
        die("--engine, --llama-server and --model are required");
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    char *docs[3];
    for (int i = 0; i < 3; i++)
        docs[i] = make_doc(i + 1, o.quick ? 40 : 84);
    static const char *const questions[] = {
        "Which crate is heaviest?", "List every onyx crate.", "Which hall is this?",
        "What was checked first?", "Name two light crates.", "Any prairie crates?",
        "Sum the first weights.", "Which crate is lightest?", "Count the cedar crates.",
        "What day was last?", "Where is the iris crate?", "Who checked hall one?",
        "Is any crate empty?", "Which day had most checks?", "How many halls are there?",
        "Which wood is most common?",
    };
    srv_t servers[3] = {
        { .kind = SRV_KVCHAT, .label = "kvchat-engine" },
        { .kind = SRV_LLAMA, .label = "llama-server (defaults)" },
        { .kind = SRV_LLAMA_NP1, .label = "llama-server -np 1 --cache-ram 0" },
    };
    result_t res[3] = { { 0 } };
    for (int i = 0; i < 3; i++) {
        snprintf(servers[i].dir, sizeof servers[i].dir, "/tmp/kvchat-bench-XXXXXX");
        if (!mkdtemp(servers[i].dir))
            die("mkdtemp: %s", strerror(errno));
        char dir[sizeof servers[i].dir];
        memcpy(dir, servers[i].dir, sizeof dir);
        snprintf(servers[i].log, sizeof servers[i].log, "%s/server.log", dir);
    }
    run_servers(servers, 3, &o, docs, questions, res);
    double mem_hot = 0, mem_idle = 0;
    double mem_gbs = memcpy_gbs(res[0].restored_mb > 1 ? (size_t)(res[0].restored_mb * 1e6) : 24u << 20,
                                &mem_idle, &mem_hot);

    buf_t b;
    buf_init(&b, 1 << 20);
    buf_puts(&b, "# Benchmarks: kvchat-engine against llama-server\n\n");
    describe_machine(&b, &o);
    buf_printf(&b, "Documents of %d prompt tokens; questions of about 10 tokens; answers of 8 tokens, "
                   "greedy. TTFT is measured at the client (request sent to first streamed token); "
                   "warm questions come a second after the previous answer, (2) is the median of five, "
                   "(5) of seven runs. "
                   "The three servers are up at once and take turns at every step of every workload.\n\n",
               res[0].doc_tokens);
    buf_puts(&b, "| workload | kvchat-engine | llama-server (defaults) | llama-server -np 1 --cache-ram 0 "
                 "| kvchat / best peer |\n|---|---|---|---|---|\n");
    struct {
        const char *name;
        double v[3];
    } rows[] = {
        { "(1) cold question, TTFT ms", { res[0].cold, res[1].cold, res[2].cold } },
        { "(2) new question, same document, TTFT ms", { res[0].same_doc, res[1].same_doc, res[2].same_doc } },
        { "(3) alternating 3 documents, median TTFT ms", { res[0].alternating, res[1].alternating, res[2].alternating } },
        { "(3) alternating 3 documents, worst TTFT ms", { res[0].alt_max, res[1].alt_max, res[2].alt_max } },
        { "(4) after a restart, TTFT ms", { res[0].restart, res[1].restart, res[2].restart } },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        double best = rows[i].v[1] < rows[i].v[2] ? rows[i].v[1] : rows[i].v[2];
        buf_printf(&b, "| %s | %.0f | %.0f | %.0f | %.3f |\n", rows[i].name, rows[i].v[0], rows[i].v[1],
                   rows[i].v[2], rows[i].v[0] / best);
    }
    buf_printf(&b, "| (5) decode, 1 stream, tokens/s | %.1f | %.1f | - | %.3f |\n", res[0].tps1, res[1].tps1,
               res[1].tps1 > 0 ? res[0].tps1 / res[1].tps1 : 0);
    buf_printf(&b, "| (5) decode, 4 streams, tokens/s (sum) | %.1f | %.1f | - | %.3f |\n", res[0].tps4,
               res[1].tps4, res[1].tps4 > 0 ? res[0].tps4 / res[1].tps4 : 0);
    buf_puts(&b, "\nRatios against the targets:\n\n");
    buf_printf(&b, "- (2) cold / warm TTFT: kvchat %.1fx (target >= 50x); kvchat / llama-server best: %.2f (target <= 1)\n",
               res[0].cold / res[0].same_doc, res[0].same_doc / (res[1].same_doc < res[2].same_doc ? res[1].same_doc : res[2].same_doc));
    buf_printf(&b, "- (3) cold / alternating median: kvchat %.1fx (target >= 50x); kvchat / llama-server best: %.2f (target <= 1)\n",
               res[0].cold / res[0].alternating, res[0].alternating / (res[1].alternating < res[2].alternating ? res[1].alternating : res[2].alternating));
    buf_printf(&b, "- (4) llama-server after restart / kvchat after restart: %.1fx (target >= 20x); kvchat restored %d cached tokens from disk\n",
               (res[1].restart < res[2].restart ? res[1].restart : res[2].restart) / res[0].restart, res[0].cache_n_restart);
    buf_printf(&b, "- (5) decode kvchat / llama-server: %.3f single, %.3f with 4 streams (target >= 0.95)\n",
               res[1].tps1 > 0 ? res[0].tps1 / res[1].tps1 : 0, res[1].tps4 > 0 ? res[0].tps4 / res[1].tps4 : 0);
    buf_printf(&b, "- restore bandwidth: %.2f GB/s (median of %d restores from the RAM tier, %.2f to %.2f) "
                   "copying %.1f MB of KV into the context. memcpy of the same bytes in this process, between "
                   "buffers larger than the CPU caches, on huge pages as the engine's: %.2f GB/s like a restore (a second after the last copy, "
                   "from a buffer left idle) -> %.2f of memcpy (target >= 0.5); %.2f GB/s back to back -> %.2f "
                   "of it; cache-hot %.2f GB/s. The one restore from disk in (4): %.2f GB/s for the copy, "
                   "%.2f GB/s including the read of the file.\n",
               res[0].ram_restore_gbs, res[0].ram_restores, res[0].ram_restore_min, res[0].ram_restore_max,
               res[0].restored_mb, mem_idle, mem_idle > 0 ? res[0].ram_restore_gbs / mem_idle : 0, mem_gbs,
               mem_gbs > 0 ? res[0].ram_restore_gbs / mem_gbs : 0, mem_hot, res[0].restore_copy_gbs,
               res[0].restore_total_gbs);
    fputs(b.data, stdout);
    if (o.out) {
        FILE *f = fopen(o.out, "w");
        if (!f)
            die("%s: %s", o.out, strerror(errno));
        fputs(b.data, f);
        fclose(f);
        fprintf(stderr, "wrote %s\n", o.out);
    }
    buf_cleanup(&b);
    for (int i = 0; i < 3; i++) {
        free(docs[i]);
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", servers[i].dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", servers[i].dir);
    }
    curl_global_cleanup();
    return 0;
}
