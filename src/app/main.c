/* main.c — kvchat, the app server.
 *
 * Start-up: load the configuration; create the data directories; open the
 * store; find the local model (configured, else the demo model, else the
 * first GGUF in the models directory) and create the engine supervisor;
 * create the LLM providers; open the HTTP server; start the engine in the
 * background (with --resume: what the engine cached before is kept) and the
 * session sweeper. SIGINT/SIGTERM: stop listening, stop the engine, close
 * the store.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/app.h"
#include "app/auth/auth.h"
#include "app/dbcli.h"
#include "app/docs/documents.h"
#include "app/docs/extractq.h"
#include "app/docs/textindex.h"
#include "app/llm/engines.h"
#include "app/model/models.h"
#include "common/fs.h"
#include "common/log.h"

/* Between health checks of the engines of engine.endpoints. */
#define ENGINE_CHECK_MS 2000u
/* Between looks at what other replicas changed (follower). */
#define FOLLOW_MS 2000

/* ---- start-up helpers ---- */

static bool is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The directory of our own executable (siblings live there). */
static void find_exe_dir(app_t *a)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) {
        snprintf(a->exe_dir, sizeof a->exe_dir, ".");
        return;
    }
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash)
        *slash = '\0';
    snprintf(a->exe_dir, sizeof a->exe_dir, "%.1023s", buf);
}

/* The local model: configured; else the demo model next to the build;
 * else the first *.gguf in models_dir. "" when there is none. */
static void find_model(app_t *a)
{
    const config_t *c = &a->cfg;
    if (c->model_path[0]) {
        snprintf(a->model_path, sizeof a->model_path, "%s", c->model_path);
        return;
    }
    DIR *d = opendir(c->models_dir);
    struct dirent *de;
    char best[1024] = "";
    while (d && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".gguf") != 0 || strncmp(de->d_name, "ggml-vocab", 10) == 0)
            continue;
        if (!best[0] || strcmp(de->d_name, best) < 0)
            snprintf(best, sizeof best, "%s", de->d_name);
    }
    if (d)
        closedir(d);
    if (best[0])
        snprintf(a->model_path, sizeof a->model_path, "%.100s/%.900s", c->models_dir, best);
}

static void on_engine_event(supervisor_t *sv, const supervisor_event_t *ev, void *user)
{
    (void)sv;
    app_t *a = user;
    if (ev->type == SUPERVISOR_EVENT_STARTED && ev->reset) {
        int64_t n = 0;
        store_doc_reset_cache(a->store, false, &n);
        log_info("engine started with --reset: %lld document caches marked empty", (long long)n);
    } else if (ev->type == SUPERVISOR_EVENT_CRASHED) {
        log_error("engine crashed (exit %d, signal %d)%s%s", ev->exit_status, ev->signal,
                  ev->message ? ": " : "", ev->message ? ev->message : "");
    } else if (ev->type == SUPERVISOR_EVENT_RESTARTED) {
        log_warn("engine restarted with --resume after a crash (pid %d)", ev->pid);
    }
}

static void *autostart(void *arg)
{
    app_t *a = arg;
    for (size_t i = 0; i < a->n_sv; i++) {
        supervisor_result_t r;
        supervisor_start(a->svs[i], false, NULL, &r);
        if (r.code == SUPERVISOR_OK)
            log_info("engine ready on port %d in %u ms (pid %d)", r.port, r.ready_ms, r.pid);
        else if (r.code == SUPERVISOR_ESUPERSEDED)
            log_info("engine start at start-up superseded: %s", r.message);
        else
            log_error("engine did not start: %s", r.message);
        supervisor_result_cleanup(&r);
    }
    return NULL;
}

/* Deletes sessions idle longer than the timeout, every sweep interval. */
static void *sweeper(void *arg)
{
    app_t *a = arg;
    pthread_mutex_lock(&a->sweep_lock);
    while (!a->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += a->cfg.session_sweep_s;
        pthread_cond_timedwait(&a->sweep_cond, &a->sweep_lock, &ts);
        if (a->stopping)
            break;
        pthread_mutex_unlock(&a->sweep_lock);
        /* one sweep per interval for all the replicas on one database (a
         * little early, so that a replica's own tick is never just late) */
        bool mine = false;
        int64_t every = (int64_t)a->cfg.session_sweep_s * 1000;
        if (store_job_claim(a->store, "session-sweep", every - every / 10, &mine) != STORE_OK ||
            !mine) {
            pthread_mutex_lock(&a->sweep_lock);
            continue;
        }
        log_debug("session sweep: this replica's turn");
        int64_t n = 0, logins = 0;
        if (store_login_sweep(a->store, 0, &logins) == STORE_OK && logins)
            log_info("ended %lld idle login(s)", (long long)logins);
        int rc = store_session_delete_expired(a->store, a->cfg.session_idle_s, store_now_ms(), &n);
        if (rc)
            log_warn("session sweep failed: %s", store_strerror(rc));
        else if (n)
            log_info("expired %lld idle session(s)", (long long)n);
        pthread_mutex_lock(&a->sweep_lock);
    }
    pthread_mutex_unlock(&a->sweep_lock);
    return NULL;
}

/* Every FOLLOW_MS: what other replicas on this database changed that this
 * one follows (a model switch). */
static void *follower(void *arg)
{
    app_t *a = arg;
    pthread_mutex_lock(&a->sweep_lock);
    while (!a->stopping) {
        pthread_mutex_unlock(&a->sweep_lock);
        models_follow(a);
        pthread_mutex_lock(&a->sweep_lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += FOLLOW_MS / 1000;
        if (!a->stopping)
            pthread_cond_timedwait(&a->sweep_cond, &a->sweep_lock, &ts);
    }
    pthread_mutex_unlock(&a->sweep_lock);
    return NULL;
}

/* engine.endpoints: kvchat routes over engines it does not run (none is
 * supervised here); the local provider is theirs. */
static int setup_engines(app_t *a)
{
    const config_t *c = &a->cfg;
    engines_config_t ec = { .list = c->engine_endpoints, .api_key = c->engine_api_key,
                            .first_byte_timeout_ms = (unsigned)c->first_byte_timeout_s * 1000u,
                            .load_factor = c->engine_load_factor, .min_load = c->parallel,
                            .check_ms = ENGINE_CHECK_MS };
    engines_t *g;
    char err[512];
    if (engines_new(&ec, &g, err, sizeof err) != 0) {
        log_error("%s", err);
        return -1;
    }
    if (strcmp(c->auth_mode, "accounts") == 0 && strstr(c->engine_endpoints, "openai:"))
        log_warn("engine.endpoints: the OpenAI-compatible servers get no cache salt: their "
                 "users may tell from answer times what others asked of the same text");
    size_t up = engines_check(g);
    int first = engines_any(g);
    llm_model_info_t info = { .id = "" };
    if (first >= 0)
        llm_models(engines_llm(g, first), &info, NULL, 0);
    snprintf(a->model_name, sizeof a->model_name, "%s", info.id[0] ? info.id : "engines");
    log_info("%zu engines, %zu answering; model %s", engines_count(g), up, a->model_name);
    a->local = app_provider_engines(g, a->model_name);
    if (!a->local) {
        log_error("out of memory");
        return -1;
    }
    return 0;
}

/* The local model's engines, supervised here: one, or engine.count of
 * them (each on its own port, cache and logs directory, with its share
 * of the cores), routed over as engine.endpoints are. */
static int setup_supervised(app_t *a)
{
    const config_t *c = &a->cfg;
    const char *slash = strrchr(a->model_path, '/');
    snprintf(a->model_name, sizeof a->model_name, "%.255s", slash ? slash + 1 : a->model_path);
    static char ram[32], disk[32], shared_gb[32];
    snprintf(ram, sizeof ram, "%d", c->cache_ram_mb);
    snprintf(disk, sizeof disk, "%d", c->cache_disk_gb);
    snprintf(shared_gb, sizeof shared_gb, "%d", c->cache_shared_gb);
    static const char *extra[9] = { "--cache-ram", ram, "--cache-disk", disk };
    if (c->cache_shared[0]) {   /* a tier every engine reads (kvstore.h) */
        extra[4] = "--cache-shared";
        extra[5] = c->cache_shared;
        extra[6] = "--cache-shared-gb";
        extra[7] = shared_gb;
    }
    size_t n = (size_t)c->engine_count;
    if (n > 1 && !c->engine_port) {
        log_error("engine.count needs engine.port: the first engine's, the others follow it");
        return -1;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    static char dirs[APP_ENGINES_MAX][2][1100];
    char list[APP_ENGINES_MAX * 40] = "";
    for (size_t i = 0; i < n; i++) {
        supervisor_config_t sc;
        supervisor_config_default(&sc);
        sc.engine_exe = a->engine_exe;
        sc.model_path = a->model_path;
        sc.model_name = a->model_name;
        sc.port = c->engine_port ? c->engine_port + (int)i : 0;
        sc.cache_dir = c->cache_dir;
        sc.logs_dir = c->logs_dir;
        if (n > 1) {
            snprintf(dirs[i][0], sizeof dirs[i][0], "%s/engine-%zu", c->cache_dir, i);
            snprintf(dirs[i][1], sizeof dirs[i][1], "%s/engine-%zu", c->logs_dir, i);
            if (fs_mkdirs(dirs[i][0]) || fs_mkdirs(dirs[i][1])) {
                log_error("cannot create %s", dirs[i][0]);
                return -1;
            }
            sc.cache_dir = dirs[i][0];
            sc.logs_dir = dirs[i][1];
        }
        sc.ctx_size = c->ctx_size;
        sc.parallel = c->parallel;
        /* the cores shared out, unless engine.threads says */
        long share = cores / (long)n > 0 ? cores / (long)n : 1;
        sc.threads = c->threads || n == 1 ? c->threads : (int)share;
        sc.api_key = c->engine_api_key;
        sc.health_timeout_ms = (unsigned)c->health_timeout_s * 1000u;
        sc.restart_on_crash = c->restart_on_crash;
        sc.on_event = on_engine_event;
        sc.user = a;
        sc.extra_args = extra;
        int rc = supervisor_new(&sc, &a->svs[i]);
        if (rc) {
            log_error("cannot supervise the engine: %s", supervisor_strerror(rc));
            return -1;
        }
        a->n_sv = i + 1;
        char url[320];
        supervisor_base_url(a->svs[i], url, sizeof url);
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? "," : "", url);
    }
    a->sv = a->svs[0];
    char err[512];
    if (n == 1) {
        char base[sizeof list + 4];
        snprintf(base, sizeof base, "%s/v1", list);
        a->local = app_provider_new(a, "local", base, NULL, NULL, a->model_name, true, 0, err,
                                    sizeof err);
        if (!a->local) {
            log_error("local provider: %s", err);
            return -1;
        }
        llm_provider_set_key_source(a->local->llm, supervisor_api_key_source, a->sv);
        return 0;
    }
    engines_config_t ec = { .list = list,
                            .first_byte_timeout_ms = (unsigned)c->first_byte_timeout_s * 1000u,
                            .load_factor = c->engine_load_factor, .min_load = c->parallel,
                            .check_ms = ENGINE_CHECK_MS };
    engines_t *g;
    if (engines_new(&ec, &g, err, sizeof err) != 0) {
        log_error("%s", err);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        llm_provider_set_key_source(engines_llm(g, (int)i), supervisor_api_key_source, a->svs[i]);
    a->local = app_provider_engines(g, a->model_name);
    if (!a->local) {
        log_error("out of memory");
        return -1;
    }
    log_info("%zu engines for %s", n, a->model_name);
    return 0;
}

static int setup(app_t *a)
{
    config_t *c = &a->cfg;
    const char *dirs[] = { c->data_dir, c->logs_dir, c->cache_dir };
    for (size_t i = 0; i < 3; i++) {
        int rc = fs_mkdirs(dirs[i]);
        if (rc) {
            log_error("cannot create %s: %s", dirs[i], strerror(-rc));
            return -1;
        }
    }
    snprintf(a->uploads_dir, sizeof a->uploads_dir, "%s/uploads", c->data_dir);
    if (fs_mkdirs(a->uploads_dir)) {
        log_error("cannot create %s", a->uploads_dir);
        return -1;
    }
    documents_remove_stale(a);
    int rc = store_open(c->database, &a->store);
    if (rc) {
        log_error("cannot open the database %s: %s", c->database, store_strerror(rc));
        return -1;
    }
    /* A prefill cut short by a restart is not running any more. */
    store_doc_reset_cache(a->store, true, NULL);

    find_exe_dir(a);
    if (c->engine_exe[0])
        snprintf(a->engine_exe, sizeof a->engine_exe, "%s", c->engine_exe);
    else
        snprintf(a->engine_exe, sizeof a->engine_exe, "%s/kvchat-engine", a->exe_dir);
    if (c->extract_exe[0])
        snprintf(a->extract_exe, sizeof a->extract_exe, "%s", c->extract_exe);
    else
        snprintf(a->extract_exe, sizeof a->extract_exe, "%s/kvchat-extract", a->exe_dir);
    extract_limits_default(&a->extract);
    a->extract.exe = a->extract_exe;
    a->extract.timeout_ms = (unsigned)c->extract_timeout_s * 1000u;
    a->extract.cpu_seconds = (unsigned)c->extract_cpu_s;
    a->extract.mem_bytes = (size_t)c->extract_mem_mb << 20;
    a->extract.ocr_languages = c->ocr_languages;   /* the config outlives every run */
    a->extract.ocr_page_seconds = (unsigned)c->ocr_page_s;
    a->extract.ocr_seconds = (unsigned)c->ocr_s;
#if defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer reserves terabytes of address space: an address-space
     * limit would kill every extraction in a sanitizer build. */
    a->extract.mem_bytes = 0;
#endif
    if (!is_file(a->extract_exe))
        log_warn("kvchat-extract not found at %s: uploads will fail", a->extract_exe);
    /* Lives as long as the process: a streamed upload's worker may still
     * hold it while the server closes. */
    rc = extractq_new((unsigned)c->extract_concurrency, &a->extractq);
    if (rc) {
        log_error("extraction queue: %s", extractq_strerror(rc));
        return -1;
    }
    /* The same lifetime: workers cut and search chunks with it. */
    rc = textindex_open(&a->textindex);
    if (rc) {
        log_error("text index: %s", textindex_strerror(rc));
        return -1;
    }

    char err[512];
    if (!c->engine_endpoints[0])
        find_model(a);
    if (c->engine_endpoints[0]) {
        if (setup_engines(a) != 0)
            return -1;
    } else if (a->model_path[0] && is_file(a->model_path) && is_file(a->engine_exe)) {
        if (setup_supervised(a) != 0)
            return -1;
    } else {
        log_warn("no local model (%s); configure engine.model or put a GGUF in %s",
                 a->model_path[0] ? "file missing" : "none found", c->models_dir);
    }

    if (strcmp(c->provider, "local") == 0) {
        if (!a->local) {
            log_warn("llm.provider is local but there is no local model: chat will answer 503");
            /* A provider pointing at the engine's address still gives a clear
             * "not running" error to every chat. */
            a->local = app_provider_new(a, "local", NULL, NULL, NULL, "local", true, 0, err, sizeof err);
        }
        if (a->local)
            atomic_fetch_add(&a->local->refs, 1);
        a->provider = a->local;
    } else {
        a->provider = app_provider_new(a, c->provider, c->llm_base_url, c->llm_api_key,
                                       c->llm_model, c->llm_model[0] ? c->llm_model : c->provider,
                                       false, c->llm_context, err, sizeof err);
    }
    if (!a->provider) {
        log_error("provider: %s", err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "user") == 0)
        return auth_cli(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "db") == 0)
        return dbcli_main(argc - 1, argv + 1);
    static app_t app;
    app_t *a = &app;
    char err[512];
    int rc = config_load(&a->cfg, argc, argv, err, sizeof err);
    if (rc > 0)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "kvchat: %s\n", err);
        return 2;
    }
    config_resolve(&a->cfg);
    if (!config_mode_allowed(&a->cfg, err, sizeof err)) {
        fprintf(stderr, "kvchat: %s\n", err);
        return 2;
    }
    log_set_tag("kvchat");
    log_level_t lvl;
    if (log_level_parse(a->cfg.log_level, &lvl) == 0)
        log_set_level(lvl);
    log_set_format(strcmp(a->cfg.log_format, "json") == 0 ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
    a->started_at = (double)time(NULL);
    pthread_mutex_init(&a->lock, NULL);
    pthread_mutex_init(&a->sweep_lock, NULL);
    uint64_t tag = 0;
    if (getrandom(&tag, sizeof tag, 0) != (ssize_t)sizeof tag)
        tag = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
    snprintf(a->replica, sizeof a->replica, "%016llx", (unsigned long long)tag);
    pthread_cond_init(&a->sweep_cond, NULL);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (llm_global_init() != LLM_OK) {
        fprintf(stderr, "kvchat: cannot initialize libcurl\n");
        return 1;
    }
    if (a->cfg.config_file[0])
        log_info("configuration from %s", a->cfg.config_file);
    if (setup(a) != 0 || auth_init(a) != 0)
        return 1;
    rc = routes_open(a);
    if (rc) {
        log_error("cannot listen on %s:%d (%d)", a->cfg.host, a->cfg.port, rc);
        return 1;
    }
    log_info("kvchat on http://%s:%d (data in %s, provider %s)", a->cfg.host, a->cfg.port,
             a->cfg.data_dir, a->provider->serving_name);

    pthread_t starter;
    bool started = false;
    if (a->sv && a->cfg.autostart && pthread_create(&starter, NULL, autostart, a) == 0)
        started = true;
    pthread_create(&a->sweeper, NULL, sweeper, a);
    pthread_t follow;
    bool following = pthread_create(&follow, NULL, follower, a) == 0;

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("signal %d: shutting down", sig);
    pthread_mutex_lock(&a->sweep_lock);
    a->stopping = true;
    pthread_cond_broadcast(&a->sweep_cond);
    pthread_mutex_unlock(&a->sweep_lock);
    pthread_join(a->sweeper, NULL);
    if (following)
        pthread_join(follow, NULL);
    routes_close(a);
    for (size_t i = 0; i < a->n_sv; i++) {
        /* also cancels a start still waiting for the engine */
        supervisor_result_t r;
        supervisor_stop(a->svs[i], &r);
        supervisor_result_cleanup(&r);
    }
    if (started)
        pthread_join(starter, NULL);
    for (size_t i = 0; i < a->n_sv; i++)
        supervisor_free(a->svs[i]);
    app_provider_release(a->provider);
    app_provider_release(a->local);
    auth_free(a);
    store_close(a->store);
    llm_global_cleanup();
    log_info("stopped");
    return 0;
}
