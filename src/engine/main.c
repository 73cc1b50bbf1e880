/* main.c — kvchat-engine: a local model server with a tiered, persistent
 * KV-cache store.
 *
 * Start-up order: make the C library put large allocations on huge pages
 * (executing the program again if it must); parse flags; read the API key
 * from its descriptor when --api-key-fd names one; open the HTTP
 * server first, so /health can answer 503 "loading" while the model loads;
 * load the model, create the context, open the KV store (resuming or
 * resetting its disk tier), start the scheduler; mark ready. SIGINT/SIGTERM
 * shut down in reverse: the HTTP server ends every open stream, the
 * scheduler finishes every job, the store flushes pending disk writes.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/log.h"
#include "engine/engine.h"
#include "engine/hugemem.h"
#include "engine/server.h"

static void usage(FILE *out)
{
    fprintf(out,
        "Usage: kvchat-engine --model PATH [options]\n"
        "A local LLM server (OpenAI-compatible API) that keeps the KV cache of every\n"
        "prompt prefix in RAM and on disk and restores it instead of recomputing it.\n"
        "\n"
        "  -m, --model PATH        GGUF model file (required)\n"
        "      --alias NAME        model id reported by the API (default: file name)\n"
        "      --host ADDR         listen address (default 127.0.0.1)\n"
        "      --port N            listen port (default 13141; 0 = any free port)\n"
        "  -c, --ctx-size N        KV cells in total, shared by the slots\n"
        "                          (default: min(8192, training context) per slot)\n"
        "  -np, --parallel N       sequence slots decoded together (default 2)\n"
        "  -t, --threads N         CPU threads (default: all cores)\n"
        "  -b, --batch N           most tokens per decode step (default 512)\n"
        "      --prompt-chunk N    prompt tokens per step while others generate (default 128)\n"
        "      --queue N           requests that may wait for a slot (default 64)\n"
        "      --timeout S         close a connection silent for S seconds while it\n"
        "                          sends a request or reads an answer (default 30)\n"
        "      --max-connections N connections at once (default 1024)\n"
        "      --max-connections-per-ip N  from one client address (default 512)\n"
        "      --allowed-hosts LIST  Host names answered besides IP addresses and\n"
        "                          localhost (comma-separated; '*' any; the default\n"
        "                          is '*' unless listening on loopback only)\n"
        "      --cors-origins LIST web pages allowed to call the API from a browser:\n"
        "                          exact origins, comma-separated, or '*' (default:\n"
        "                          none; preflights answered and CORS headers sent\n"
        "                          for these only)\n"
        "      --kv-type TYPE      f16 | q8_0 KV cache (default f16; q8_0 halves the bytes)\n"
        "      --no-flash-attn     disable flash attention (snapshots get slow)\n"
        "      --kv-unified        one KV buffer shared by the slots (default: one per\n"
        "                          slot, whose prefills and restores measured faster)\n"
        "      --cache-ram MiB     RAM tier budget (default 2048; K/M/G suffixes allowed)\n"
        "      --cache-disk GiB    disk tier budget (default 10; 0 = no disk tier; K/M/G)\n"
        "      --cache-dir DIR     disk tier directory (default $XDG_CACHE_HOME/kvchat/kv)\n"
        "      --cache-shared DIR  shared tier: a directory (NFS or any POSIX filesystem)\n"
        "                          several engines write entries to and restore from\n"
        "                          (needs the disk tier; default: none)\n"
        "      --cache-shared-gb GiB  shared tier budget (default 10; K/M/G)\n"
        "      --resume            keep the disk tier's entries from earlier runs (default)\n"
        "      --reset             delete them at start\n"
        "      --no-cache          never restore or store KV (for comparisons)\n"
        "      --api-key KEY       require 'Authorization: Bearer KEY' (all but /health)\n"
        "      --api-key-fd N      the same, with KEY read from descriptor N (to its end;\n"
        "                          one trailing newline dropped), which is then closed:\n"
        "                          the key stays off the command line and environment\n"
        "      --log-file F        append logs to F instead of stderr\n"
        "      --max-tokens N      default generation limit (default 512; -1: none but\n"
        "                          the context)\n"
        "  -v, --verbose           log llama.cpp's own messages too\n"
        "  -h, --help\n");
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* A size: a plain number is in `unit` bytes; K, M, G suffixes (powers of
 * 1024) override it ("512K", "3M"). */
static int parse_size(const char *s, size_t unit, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return -1;
    if (*end) {
        switch (*end) {
        case 'K': case 'k': unit = (size_t)1 << 10; break;
        case 'M': case 'm': unit = (size_t)1 << 20; break;
        case 'G': case 'g': unit = (size_t)1 << 30; break;
        default: return -1;
        }
        const char *rest = end + 1;   /* "M", "MB" and "MiB" all mean MiB */
        if (*rest && strcmp(rest, "B") != 0 && strcmp(rest, "iB") != 0)
            return -1;
    }
    if (v > (unsigned long long)(SIZE_MAX / unit))
        return -1;
    *out = (size_t)v * unit;
    return 0;
}

static void config_default(engine_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 13141;
    c->parallel = 2;
    c->batch = 512;
    c->prompt_chunk = 128;
    c->queue = 64;
    c->kv_type = MODEL_KV_F16;
    c->flash_attn = true;
    c->kv_unified = false;
    c->cache_ram = (size_t)2048 << 20;
    c->cache_disk = (size_t)10 << 30;
    c->cache_shared_size = (size_t)10 << 30;
    c->max_body = (size_t)32 << 20;
    c->max_tokens_default = 512;
    c->api_key_fd = -1;
    c->http_timeout_s = 30;
    /* The app's own calls all come from one address; the limit per address
     * is there for an engine that listens on a network. */
    c->max_connections = 1024;
    c->max_per_ip = 512;
}

/* Returns 0, 1 for --help, or -1 on a bad flag (message printed). */
static int parse_args(int argc, char **argv, engine_config_t *c)
{
    enum {
        O_ALIAS = 256, O_HOST, O_PORT, O_KV, O_NOFA, O_RAM, O_DISK, O_DIR, O_RESUME, O_RESET,
        O_NOCACHE, O_KEY, O_KEY_FD, O_LOG, O_CHUNK, O_QUEUE, O_MAXTOK, O_NP, O_UNIFIED, O_MMAP,
        O_TIMEOUT, O_MAXCONN, O_MAXCONN_IP, O_HOSTS, O_SHARED, O_SHARED_GB, O_CORS
    };
    static const struct option opts[] = {
        { "model", required_argument, NULL, 'm' },
        { "alias", required_argument, NULL, O_ALIAS },
        { "host", required_argument, NULL, O_HOST },
        { "port", required_argument, NULL, O_PORT },
        { "ctx-size", required_argument, NULL, 'c' },
        { "parallel", required_argument, NULL, O_NP },
        { "np", required_argument, NULL, O_NP },
        { "threads", required_argument, NULL, 't' },
        { "batch", required_argument, NULL, 'b' },
        { "prompt-chunk", required_argument, NULL, O_CHUNK },
        { "queue", required_argument, NULL, O_QUEUE },
        { "timeout", required_argument, NULL, O_TIMEOUT },
        { "max-connections", required_argument, NULL, O_MAXCONN },
        { "max-connections-per-ip", required_argument, NULL, O_MAXCONN_IP },
        { "allowed-hosts", required_argument, NULL, O_HOSTS },
        { "cors-origins", required_argument, NULL, O_CORS },
        { "kv-type", required_argument, NULL, O_KV },
        { "no-flash-attn", no_argument, NULL, O_NOFA },
        { "kv-unified", no_argument, NULL, O_UNIFIED },
        { "mmap", no_argument, NULL, O_MMAP },
        { "cache-ram", required_argument, NULL, O_RAM },
        { "cache-disk", required_argument, NULL, O_DISK },
        { "cache-dir", required_argument, NULL, O_DIR },
        { "cache-shared", required_argument, NULL, O_SHARED },
        { "cache-shared-gb", required_argument, NULL, O_SHARED_GB },
        { "resume", no_argument, NULL, O_RESUME },
        { "reset", no_argument, NULL, O_RESET },
        { "no-cache", no_argument, NULL, O_NOCACHE },
        { "api-key", required_argument, NULL, O_KEY },
        { "api-key-fd", required_argument, NULL, O_KEY_FD },
        { "log-file", required_argument, NULL, O_LOG },
        { "max-tokens", required_argument, NULL, O_MAXTOK },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    long v;
    while ((ch = getopt_long_only(argc, argv, "m:c:t:b:vh", opts, NULL)) != -1) {
        const char *name = NULL;
        switch (ch) {
        case 'm': c->model_path = optarg; break;
        case O_ALIAS: c->alias = optarg; break;
        case O_HOST: c->host = optarg; break;
        case O_PORT:
            if (parse_long(optarg, 0, 65535, &v)) { name = "--port"; break; }
            c->port = (int)v;
            break;
        case 'c':
            if (parse_long(optarg, 64, 1 << 24, &v)) { name = "--ctx-size"; break; }
            c->ctx_size = (int)v;
            break;
        case O_NP:
            if (parse_long(optarg, 1, 256, &v)) { name = "--parallel"; break; }
            c->parallel = (int)v;
            break;
        case 't':
            if (parse_long(optarg, 1, 1024, &v)) { name = "--threads"; break; }
            c->threads = (int)v;
            break;
        case 'b':
            if (parse_long(optarg, 1, 65536, &v)) { name = "--batch"; break; }
            c->batch = (int)v;
            break;
        case O_CHUNK:
            if (parse_long(optarg, 1, 65536, &v)) { name = "--prompt-chunk"; break; }
            c->prompt_chunk = (int)v;
            break;
        case O_QUEUE:
            if (parse_long(optarg, 0, 100000, &v)) { name = "--queue"; break; }
            c->queue = (int)v;
            break;
        case O_TIMEOUT:
            if (parse_long(optarg, 0, 86400, &v)) { name = "--timeout"; break; }
            c->http_timeout_s = (unsigned)v;
            break;
        case O_MAXCONN:
            if (parse_long(optarg, 16, 16384, &v)) { name = "--max-connections"; break; }
            c->max_connections = (unsigned)v;
            break;
        case O_MAXCONN_IP:
            if (parse_long(optarg, 0, 16384, &v)) { name = "--max-connections-per-ip"; break; }
            c->max_per_ip = (unsigned)v;
            break;
        case O_HOSTS: c->allowed_hosts = optarg; break;
        case O_CORS: c->cors_origins = optarg; break;
        case O_MAXTOK:
            if (parse_long(optarg, -1, 1 << 20, &v) || v == 0) { name = "--max-tokens"; break; }
            c->max_tokens_default = v < 0 ? (1 << 24) : (int)v;   /* -1: the context's */
            break;
        case O_KV:
            if (strcmp(optarg, "f16") == 0) c->kv_type = MODEL_KV_F16;
            else if (strcmp(optarg, "q8_0") == 0) c->kv_type = MODEL_KV_Q8_0;
            else if (strcmp(optarg, "f32") == 0) c->kv_type = MODEL_KV_F32;
            else name = "--kv-type";
            break;
        case O_NOFA: c->flash_attn = false; break;
        case O_UNIFIED: c->kv_unified = true; break;
        case O_MMAP: c->mmap = true; break;
        case O_RAM:
            if (parse_size(optarg, (size_t)1 << 20, &c->cache_ram)) name = "--cache-ram";
            break;
        case O_DISK:
            if (parse_size(optarg, (size_t)1 << 30, &c->cache_disk)) name = "--cache-disk";
            break;
        case O_DIR: c->cache_dir = optarg; break;
        case O_SHARED: c->cache_shared = optarg; break;
        case O_SHARED_GB:
            if (parse_size(optarg, (size_t)1 << 30, &c->cache_shared_size) ||
                c->cache_shared_size == 0)
                name = "--cache-shared-gb";
            break;
        case O_RESUME: c->reset = false; break;
        case O_RESET: c->reset = true; break;
        case O_NOCACHE: c->no_cache = true; break;
        case O_KEY: c->api_key = optarg; break;
        case O_KEY_FD:
            if (parse_long(optarg, 0, INT_MAX, &v)) { name = "--api-key-fd"; break; }
            c->api_key_fd = (int)v;
            break;
        case O_LOG: c->log_file = optarg; break;
        case 'v': c->verbose = true; break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
        if (name) {
            fprintf(stderr, "kvchat-engine: bad value '%s' for %s\n", optarg, name);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "kvchat-engine: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!c->model_path) {
        fprintf(stderr, "kvchat-engine: --model PATH is required (see --help)\n");
        return -1;
    }
    if (c->api_key && c->api_key_fd >= 0) {
        fprintf(stderr, "kvchat-engine: give --api-key or --api-key-fd, not both\n");
        return -1;
    }
    if (c->cache_shared && (c->cache_disk == 0 || c->no_cache)) {
        fprintf(stderr, "kvchat-engine: --cache-shared needs the disk tier (--cache-disk > 0)\n");
        return -1;
    }
    if (c->kv_type == MODEL_KV_Q8_0 && !c->flash_attn) {
        fprintf(stderr, "kvchat-engine: --kv-type q8_0 needs flash attention\n");
        return -1;
    }
    return 0;
}

/* Read the API key from descriptor fd to its end and close it. One
 * trailing newline (and a CR before it) is dropped; what is left must be
 * 1..ENGINE_KEY_MAX printable ASCII characters without spaces. Stores it
 * in key (ENGINE_KEY_MAX + 1 bytes). Returns 0, or -1 with a message
 * printed (never the key). */
static int read_key_fd(int fd, char *key)
{
    char buf[ENGINE_KEY_MAX + 3];
    size_t len = 0;
    int rc = -1;
    for (;;) {
        ssize_t k = read(fd, buf + len, sizeof buf - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            fprintf(stderr, "kvchat-engine: cannot read the API key from descriptor %d: %s\n", fd,
                    strerror(errno));
            goto out;
        }
        if (k == 0)
            break;
        len += (size_t)k;
        if (len == sizeof buf) {
            fprintf(stderr, "kvchat-engine: the API key from descriptor %d is longer than %d "
                    "bytes\n", fd, ENGINE_KEY_MAX);
            goto out;
        }
    }
    if (len && buf[len - 1] == '\n')
        len--;
    if (len && buf[len - 1] == '\r')
        len--;
    if (len == 0 || len > ENGINE_KEY_MAX) {
        fprintf(stderr, "kvchat-engine: the API key from descriptor %d is %s\n", fd,
                len ? "too long" : "empty");
        goto out;
    }
    for (size_t i = 0; i < len; i++) {
        if (buf[i] <= ' ' || buf[i] > '~') {
            fprintf(stderr, "kvchat-engine: the API key from descriptor %d holds a character "
                    "other than printable ASCII\n", fd);
            goto out;
        }
    }
    memcpy(key, buf, len);
    key[len] = '\0';
    rc = 0;
out:
    explicit_bzero(buf, sizeof buf);
    close(fd);
    return rc;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* prompt.h's source of replies: the store's snapshots of the
 * conversation's namespace that continue a prompt (model_token_t is the
 * store's int32_t token). */
static int replies_from_store(void *src, const kvstore_salt_t *salt, const model_token_t *prefix,
                              int n, prompt_visit_fn visit, void *vud)
{
    return kvstore_foreach_extending_salted(src, salt, prefix, n, visit, vud);
}

/* Load the model and build everything that depends on it. On failure the
 * engine stays up in the FAILED state (health says why) until stopped. */
static int load(engine_t *e)
{
    const engine_config_t *c = &e->cfg;
    int rc = model_open(c->model_path, c->mmap, &e->model);
    if (rc) {
        snprintf(e->error, sizeof e->error, "cannot load model %.200s", c->model_path);
        return -1;
    }
    const model_info_t *in = model_info(e->model);
    if (!c->alias) {
        const char *slash = strrchr(c->model_path, '/');
        snprintf(e->model_id, sizeof e->model_id, "%s", slash ? slash + 1 : c->model_path);
    }
    if (in->random_weights)
        log_warn("model %s has RANDOM weights (written by kvchat-mkmodel): answers are "
                 "meaningless", e->model_id);

    model_ctx_params_t cp;
    model_ctx_params_default(&cp);
    /* default: room for an 8K-token conversation per slot */
    int per_slot = in->n_ctx_train > 0 && in->n_ctx_train < 8192 ? in->n_ctx_train : 8192;
    cp.n_ctx = c->ctx_size ? c->ctx_size : per_slot * c->parallel;
    cp.n_seq = c->parallel;
    cp.n_batch = c->batch;
    cp.n_threads = c->threads;
    cp.kv_type = c->kv_type;
    cp.flash_attn = c->flash_attn;
    cp.kv_unified = c->kv_unified;
    rc = model_ctx_new(e->model, &cp, &e->ctx);
    if (rc) {
        snprintf(e->error, sizeof e->error, "cannot create the inference context: %s",
                 model_strerror(rc));
        return -1;
    }
    rc = prompt_new(e->model, 1024, &e->prompt);
    if (rc) {
        snprintf(e->error, sizeof e->error, "out of memory");
        return -1;
    }

    if (!c->no_cache) {
        kvstore_config_t kc;
        kvstore_config_default(&kc);
        kc.ram_budget = c->cache_ram;
        kc.disk_budget = c->cache_disk;
        kc.fingerprint = in->fingerprint;
        kc.layout = model_ctx_layout(e->ctx);
        kc.mode = c->reset ? KVSTORE_RESET : KVSTORE_RESUME;
        /* One directory per model and context layout: entries of another
         * model or layout are kept for when that one runs again. */
        char base[PATH_MAX - 64], dir[PATH_MAX];
        if (c->cache_dir) {
            snprintf(base, sizeof base, "%s", c->cache_dir);
        } else {
            const char *xdg = getenv("XDG_CACHE_HOME");
            const char *home = getenv("HOME");
            if (xdg && *xdg)
                snprintf(base, sizeof base, "%s/kvchat/kv", xdg);
            else
                snprintf(base, sizeof base, "%s/.cache/kvchat/kv", home ? home : ".");
        }
        snprintf(dir, sizeof dir, "%s/%016" PRIx64 "-%08" PRIx32, base, in->fingerprint,
                 (uint32_t)hash_str(kc.layout));
        if (c->cache_disk > 0) {
            int mr = fs_mkdirs(dir);
            if (mr) {
                snprintf(e->error, sizeof e->error, "cannot create cache directory %.180s: %s", dir,
                         strerror(-mr));
                return -1;
            }
            kc.dir = dir;
        }
        /* The shared tier likewise: one directory per model and layout,
         * which is what its budget counts. */
        char sdir[PATH_MAX];
        if (c->cache_shared) {
            char sbase[PATH_MAX - 64];
            snprintf(sbase, sizeof sbase, "%s", c->cache_shared);
            snprintf(sdir, sizeof sdir, "%s/%016" PRIx64 "-%08" PRIx32, sbase, in->fingerprint,
                     (uint32_t)hash_str(kc.layout));
            int mr = fs_mkdirs(sdir);
            if (mr) {
                snprintf(e->error, sizeof e->error, "cannot create shared cache directory %.180s: %s",
                         sdir, strerror(-mr));
                return -1;
            }
            kc.shared_dir = sdir;
            kc.shared_budget = c->cache_shared_size;
        }
        rc = kvstore_open(&kc, &e->store);
        if (rc) {
            snprintf(e->error, sizeof e->error, "cannot open the KV store: %s",
                     kvstore_strerror(rc));
            return -1;
        }
        log_info("KV store: RAM budget %zu MiB, disk budget %zu MiB at %s (%s)", c->cache_ram >> 20,
                 c->cache_disk >> 20, c->cache_disk ? dir : "-", c->reset ? "reset" : "resumed");
        /* Replies sent back as text find their tokens in the snapshots too
         * (after a restart nothing else remembers them). */
        prompt_set_reply_source_salted(e->prompt, replies_from_store, e->store);
        if (c->cache_shared)
            log_info("KV store: shared tier budget %zu MiB at %s", c->cache_shared_size >> 20,
                     sdir);
    }

    sched_config_t sc;
    sched_config_default(&sc);
    sc.n_slots = c->parallel;
    sc.n_batch = c->batch;
    sc.prompt_chunk = c->prompt_chunk;
    sc.queue_max = c->queue;
    rc = sched_start(&sc, e->model, e->ctx, e->store, e->prompt, &e->sched);
    if (rc) {
        snprintf(e->error, sizeof e->error, "cannot start the scheduler: %s", sched_strerror(rc));
        return -1;
    }
    log_info("ready: %s (%s), %d slots x %d cells, KV %s", e->model_id, in->desc, c->parallel,
             sched_slot_capacity(e->sched), model_ctx_layout(e->ctx));
    size_t anon, huge;
    if (hugemem_usage(&anon, &huge) == 0)
        log_info("memory: %zu MiB allocated, %zu MiB of it on huge pages%s", anon >> 20, huge >> 20,
                 huge ? "" : " (transparent huge pages off or unavailable)");
    return 0;
}

int main(int argc, char **argv)
{
    /* Before anything else: the weights, KV cache and compute buffers that
     * llama.cpp allocates should be on huge pages (hugemem.h). */
    hugemem_exec_advised(argv);
    engine_t e;
    memset(&e, 0, sizeof e);
    config_default(&e.cfg);
    int pr = parse_args(argc, argv, &e.cfg);
    if (pr)
        return pr > 0 ? 0 : 2;
    if (e.cfg.api_key_fd >= 0) {
        if (read_key_fd(e.cfg.api_key_fd, e.key) != 0)
            return 2;
        e.cfg.api_key = e.key;
    }
    log_set_tag("engine");
    if (e.cfg.log_file) {
        int rc = log_open(e.cfg.log_file);
        if (rc) {
            fprintf(stderr, "kvchat-engine: cannot open log file %s: %s\n", e.cfg.log_file,
                    strerror(-rc));
            return 1;
        }
    }
    if (e.cfg.verbose)
        log_set_level(LOG_DEBUG);
    snprintf(e.model_id, sizeof e.model_id, "%s", e.cfg.alias ? e.cfg.alias : "");
    e.started_at = (double)time(NULL);
    atomic_init(&e.state, ENGINE_LOADING);

    /* Signals are taken synchronously by the main thread (sigwait), so
     * every other thread starts with them blocked. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A file-size limit makes writes fail with EFBIG (handled: the entry
     * stays in RAM) instead of killing the engine. */
    signal(SIGXFSZ, SIG_IGN);

    int rc = server_open(&e);
    if (rc) {
        log_error("cannot listen on %s:%d: %s", e.cfg.host, e.cfg.port, server_strerror(rc));
        return 1;
    }
    log_info("listening on http://%s:%d", e.cfg.host, server_port(&e));

    model_backend_init(e.cfg.verbose);
    if (load(&e) == 0) {
        atomic_store(&e.state, ENGINE_READY);
    } else {
        log_error("%s", e.error);
        atomic_store(&e.state, ENGINE_FAILED);
    }

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("signal %d: shutting down", sig);
    server_close(&e);
    sched_stop(e.sched);
    kvstore_close(e.store);
    prompt_free(e.prompt);
    model_ctx_free(e.ctx);
    model_close(e.model);
    log_info("stopped");
    log_close();
    explicit_bzero(e.key, sizeof e.key);
    return atomic_load(&e.state) == ENGINE_FAILED ? 1 : 0;
}
