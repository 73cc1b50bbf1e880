/* test_supervisor.c — kvchat-engine under the supervisor (supervisor.h), with
 * the real engine and the tiny model, and with small shell scripts standing
 * in for engines that misbehave.
 *
 * - start with reset: running, GET /health 200 on the returned port, the
 *   run's log file holds the engine's "ready" line; status has pid, memory,
 *   create time; start again with resume: the old process is gone, a second
 *   log file exists, sessions list both newest first, recent lines filter,
 *   a bad regex is refused; stop: stopped, reaped, idempotent; events;
 * - SIGKILL behind the supervisor's back: crashed, then running again with
 *   a new pid (--resume), the crash is in the old run's log; with a limit
 *   of one restart a second crash stays crashed;
 * - a model file that does not exist: a clear error, quickly, nothing left;
 * - a program that exits at once: its exit status and last output lines;
 * - a program that never serves: the health timeout, killed; one that
 *   ignores SIGTERM: SIGKILL after the grace period;
 * - a program that cannot be executed: a spawn error;
 * - the last command wins (scripts that never serve): a start supersedes a
 *   start, a stop supersedes both, a command waiting for its turn returns
 *   as soon as a newer one comes;
 * - kvchat killed with SIGKILL: its engine goes too (parent-death signal);
 * - the engine's key: its own per start, off the command line, environment
 *   and logs; the engine refuses requests without it (401) while the app's
 *   calls (prefill, cache list and stats, models, tokenize, chat, delete)
 *   carry it;
 * - the last request wins, with the real engine started late: a reset
 *   while a start is under way, a stop while starting, two resets racing,
 *   a start keeping the cache during a reset;
 * - config checks.
 * After each test no child process of ours is left, reaped or not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "app/llm/llm.h"
#include "app/model/logbook.h"
#include "app/model/supervisor.h"

#define ENGINE KVCHAT_BIN_DIR "/kvchat-engine"
#define TINY KVCHAT_TEST_MODELS_DIR "/tiny.gguf"

static const char *const g_extra[] = { "--threads", "2", "--ctx-size", "2048", NULL };

/* ---- fixtures ---- */

#define MAX_EVENTS 32

typedef struct {
    char dir[256];
    char logs[300];
    char cache[300];
    supervisor_config_t cfg;
    pthread_mutex_t lock;
    supervisor_event_t events[MAX_EVENTS];
    int n_events;
} fx_t;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void on_event(supervisor_t *sv, const supervisor_event_t *ev, void *user)
{
    fx_t *fx = user;
    /* Callbacks may read the status. */
    supervisor_status_t st;
    assert_int_equal(supervisor_status(sv, &st), SUPERVISOR_OK);
    pthread_mutex_lock(&fx->lock);
    if (fx->n_events < MAX_EVENTS) {
        fx->events[fx->n_events] = *ev;
        fx->events[fx->n_events].message = NULL;   /* borrowed for the call only */
        fx->n_events++;
    }
    pthread_mutex_unlock(&fx->lock);
}

static int count_events(fx_t *fx, supervisor_event_type_t type)
{
    pthread_mutex_lock(&fx->lock);
    int n = 0;
    for (int i = 0; i < fx->n_events; i++)
        n += fx->events[i].type == type;
    pthread_mutex_unlock(&fx->lock);
    return n;
}

/* Wait (at most ms) until n events of type have come: the keeper thread
 * emits an event after publishing the state it reports. */
static bool wait_events(fx_t *fx, supervisor_event_type_t type, int n, unsigned ms)
{
    for (unsigned waited = 0; waited < ms; waited += 10) {
        if (count_events(fx, type) >= n)
            return count_events(fx, type) == n;
        usleep(10000);
    }
    return false;
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/kvchat-supervisor-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->logs, sizeof fx->logs, "%s/logs", fx->dir);
    snprintf(fx->cache, sizeof fx->cache, "%s/cache", fx->dir);
    pthread_mutex_init(&fx->lock, NULL);
    supervisor_config_t *c = &fx->cfg;
    supervisor_config_default(c);
    c->engine_exe = ENGINE;
    c->model_path = TINY;
    c->port = 0;   /* tests may run side by side */
    c->cache_dir = fx->cache;
    c->extra_args = g_extra;
    c->logs_dir = fx->logs;
    c->health_timeout_ms = 60000;
    c->poll_interval_ms = 50;
    c->restart_backoff_ms = 300;
    c->stop_grace_ms = 5000;
    c->on_event = on_event;
    c->user = fx;
    *state = fx;
    return 0;
}

/* No child of this process is left, zombie or alive. */
static void assert_no_children(void)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT);
    if (r == 0 && si.si_pid != 0)
        fail_msg("child %d exited but was not reaped", (int)si.si_pid);
    /* Alive children: waitid without WNOHANG would block; ECHILD means none. */
    if (r == 0)
        fail_msg("a child process is still running");
    assert_int_equal(errno, ECHILD);
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    pthread_mutex_destroy(&fx->lock);
    free(fx);
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static bool file_contains(const char *path, const char *needle)
{
    char *text = slurp(path);
    bool found = text && strstr(text, needle);
    free(text);
    return found;
}

/* Write an executable shell script into the fixture directory. */
static void write_script(fx_t *fx, const char *name, const char *body, char *path, size_t n)
{
    snprintf(path, n, "%s/%s", fx->dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s", body);
    fclose(f);
    assert_int_equal(chmod(path, 0755), 0);
}

static size_t discard(char *p, size_t size, size_t n, void *user)
{
    (void)p;
    (void)user;
    return size * n;
}

static long http_get_status(const char *url)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    long code = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    return code;
}

static bool pid_alive(int pid)
{
    return kill(pid, 0) == 0;
}

/* The HTTP status of method url, with "Authorization: Bearer key" unless
 * key is NULL; 0 when no answer came. */
static long http_status_key(const char *method, const char *url, const char *body,
                            const char *key)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char auth[600];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    long code = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return code;
}

/* Whether /proc/pid/<what> (NUL-separated: cmdline, environ) holds needle. */
static bool proc_holds(int pid, const char *what, const char *needle)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", pid, what);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    static char buf[1 << 16];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    assert_true(n > 0);
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

/* Whether any file in dir holds needle. */
static bool dir_holds(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    bool found = false;
    while (!found && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        found = file_contains(path, needle);
    }
    closedir(d);
    return found;
}

/* Live (not zombie) processes whose parent is ppid (> 0), or whose
 * process group is pgrp (> 0). */
static int live_procs(int ppid_want, int pgrp_want)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = '\0';
        char st = 0;
        int ppid = 0, pgrp = 0;
        const char *rp = strrchr(buf, ')');
        if (rp && sscanf(rp + 1, " %c %d %d", &st, &ppid, &pgrp) == 3 && st != 'Z' &&
            ((ppid_want > 0 && ppid == ppid_want) || (pgrp_want > 0 && pgrp == pgrp_want)))
            n++;
    }
    closedir(d);
    return n;
}

/* Live (not zombie) children of this process. */
static int live_children(void) { return live_procs((int)getpid(), 0); }

/* The app's provider for the supervised engine, as kvchat makes it: its
 * key from the supervisor at every call (keyed), or none. Free with
 * llm_provider_free. The engine's port changes at each start (port 0), so
 * make one per engine. */
static llm_provider_t *engine_provider(supervisor_t *sv, bool keyed)
{
    char url[300], base[320];
    assert_int_equal(supervisor_base_url(sv, url, sizeof url), SUPERVISOR_OK);
    snprintf(base, sizeof base, "%s/v1", url);
    llm_config_t c = llm_config_default(LLM_PROVIDER_LOCAL);
    c.base_url = base;
    llm_provider_t *p = NULL;
    char err[256];
    if (llm_provider_new(&c, &p, err, sizeof err) != LLM_OK)
        fail_msg("llm_provider_new: %s", err);
    if (keyed)
        llm_provider_set_key_source(p, supervisor_api_key_source, sv);
    return p;
}

static const char g_doc[] =
    "Inventory of the north depot.\n"
    "Item 1: cedar planks, 40 kg.\nItem 2: iron hinges, 3 kg.\nItem 3: copper wire, 12 kg.\n"
    "Item 4: glass panes, 25 kg.\nItem 5: oak beams, 90 kg.\n";

/* Prefill the document into the engine's cache, as caching a document does. */
static void cache_doc(supervisor_t *sv)
{
    llm_provider_t *p = engine_provider(sv, true);
    const llm_message_t m[] = { { LLM_ROLE_SYSTEM, g_doc } };
    llm_prefill_result_t r;
    if (llm_prefill(p, m, 1, 0, NULL, NULL, &r) != LLM_OK)
        fail_msg("prefill: %s", r.error);
    assert_true(r.n_tokens > 10);
    llm_provider_free(p);
}

/* The engine's cache entries, asked as the app asks. */
static int64_t cache_entries(supervisor_t *sv)
{
    llm_provider_t *p = engine_provider(sv, true);
    llm_cache_stats_t cs;
    char err[256];
    if (llm_cache_stats(p, &cs, err, sizeof err) != LLM_OK)
        fail_msg("cache stats: %s", err);
    llm_provider_free(p);
    return cs.entries;
}

/* ---- tests ---- */

static void test_start_restart_stop(void **state)
{
    fx_t *fx = *state;
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    supervisor_status_t st;
    assert_int_equal(supervisor_status(sv, &st), SUPERVISOR_OK);
    assert_string_equal(st.status, "stopped");
    assert_int_equal(st.pid, 0);
    logbook_current_t cur;
    assert_int_equal(logbook_current(supervisor_logbook(sv), &cur), LOGBOOK_ENONE);

    /* Start with reset. */
    supervisor_result_t r1;
    assert_int_equal(supervisor_start(sv, true, NULL, &r1), SUPERVISOR_OK);
    assert_string_equal(r1.status, "success");
    assert_true(r1.pid > 0);
    assert_true(r1.port > 0);
    assert_true(r1.reset);
    assert_true(r1.ready_ms > 0);
    assert_true(r1.timestamp > 1.6e9);
    assert_string_equal(r1.model_name, "tiny.gguf");
    assert_non_null(r1.command);
    assert_non_null(strstr(r1.command, ENGINE " --model " TINY));
    assert_non_null(strstr(r1.command, " --reset"));
    assert_non_null(strstr(r1.command, "--threads 2 --ctx-size 2048"));
    assert_true(pid_alive(r1.pid));

    char url[300];
    assert_int_equal(supervisor_base_url(sv, url, sizeof url), SUPERVISOR_OK);
    char expect[64];
    snprintf(expect, sizeof expect, "http://127.0.0.1:%d", r1.port);
    assert_string_equal(url, expect);
    assert_int_equal(supervisor_base_url(sv, url, 5), SUPERVISOR_EINVAL);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health", r1.port);
    assert_int_equal(http_get_status(url), 200);

    /* Its log file holds the engine's own "ready" line. */
    assert_int_equal(logbook_current(supervisor_logbook(sv), &cur), LOGBOOK_OK);
    assert_string_equal(cur.session_id, r1.log_session);
    assert_true(cur.active);
    char first_log[LOGBOOK_PATH_MAX];
    snprintf(first_log, sizeof first_log, "%s", cur.path);
    /* the logger thread copies the engine's output: allow it a moment */
    for (int i = 0; i < 100 && !file_contains(first_log, "INFO  engine: ready: tiny.gguf"); i++)
        usleep(50 * 1000);
    assert_true(file_contains(first_log, "INFO  engine: ready: tiny.gguf"));
    assert_true(file_contains(first_log, "kvchat: starting the model server: "));

    assert_int_equal(supervisor_status(sv, &st), SUPERVISOR_OK);
    assert_string_equal(st.status, "running");
    assert_int_equal(st.state, SUPERVISOR_RUNNING);
    assert_int_equal(st.pid, r1.pid);
    assert_int_equal(st.port, r1.port);
    assert_true(st.memory_usage > 1024 * 1024);
    assert_true(st.cpu_percent >= 0.0);
    assert_true(st.create_time > 1.6e9 && st.create_time <= st.last_updated);
    assert_string_equal(st.model_name, "tiny.gguf");
    assert_int_equal(st.restarts, 0);
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_STARTED), 1);
    assert_true(fx->events[0].reset);
    assert_int_equal(fx->events[0].pid, r1.pid);

    /* Start again without reset: the old process is gone. */
    supervisor_result_t r2;
    assert_int_equal(supervisor_start(sv, false, NULL, &r2), SUPERVISOR_OK);
    assert_true(r2.pid > 0 && r2.pid != r1.pid);
    assert_false(pid_alive(r1.pid));
    assert_int_equal(errno, ESRCH);
    assert_false(r2.reset);
    assert_non_null(strstr(r2.command, " --resume"));
    assert_string_not_equal(r2.log_session, r1.log_session);
    assert_true(r2.stop_ms < 5000);   /* SIGTERM was enough */
    assert_true(file_contains(first_log, "exited with status 0"));
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_STOPPED), 1);
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_STARTED), 2);
    assert_false(fx->events[2].reset);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health", r2.port);
    assert_int_equal(http_get_status(url), 200);

    /* Both runs are listed, newest first. */
    logbook_sessions_t list;
    assert_int_equal(logbook_sessions(supervisor_logbook(sv), &list), LOGBOOK_OK);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].filename, r2.log_session);
    assert_string_equal(list.items[1].filename, r1.log_session);
    assert_true(list.items[0].active);
    assert_false(list.items[1].active);
    assert_true(list.items[1].size > 0);
    logbook_sessions_cleanup(&list);

    /* Recent lines of the current run, filtered. */
    logbook_lines_t lines;
    assert_int_equal(logbook_recent(supervisor_logbook(sv), 100, "engine: (ready|listening)",
                                    false, &lines),
                     LOGBOOK_OK);
    assert_int_equal(lines.count, 2);
    assert_non_null(strstr(lines.lines[0], "listening on http://127.0.0.1:"));
    assert_non_null(strstr(lines.lines[1], "ready: tiny.gguf"));
    assert_string_equal(lines.session_id, r2.log_session);
    logbook_lines_cleanup(&lines);
    assert_int_equal(logbook_recent(supervisor_logbook(sv), 100, NULL, false, &lines),
                     LOGBOOK_OK);
    assert_true(lines.count >= 4);
    logbook_lines_cleanup(&lines);
    assert_int_equal(logbook_recent(supervisor_logbook(sv), 10, "*[", false, &lines),
                     LOGBOOK_EREGEX);
    assert_true(lines.error[0] != '\0');
    logbook_lines_cleanup(&lines);

    /* Stop. */
    supervisor_result_t r3;
    assert_int_equal(supervisor_stop(sv, &r3), SUPERVISOR_OK);
    assert_string_equal(r3.status, "success");
    assert_string_equal(r3.message, "Model server stopped");
    assert_null(r3.command);
    assert_false(pid_alive(r2.pid));
    assert_int_equal(waitpid(r2.pid, NULL, WNOHANG), -1);   /* already reaped */
    assert_int_equal(errno, ECHILD);
    assert_int_equal(supervisor_status(sv, &st), SUPERVISOR_OK);
    assert_string_equal(st.status, "stopped");
    assert_int_equal(st.pid, 0);
    assert_int_equal(st.memory_usage, 0);
    assert_int_equal(logbook_current(supervisor_logbook(sv), &cur), LOGBOOK_OK);
    assert_false(cur.active);
    assert_true(file_contains(cur.path, "exited with status 0"));
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_STOPPED), 2);
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_CRASHED), 0);
    /* Again: nothing to do. */
    supervisor_result_t r4;
    assert_int_equal(supervisor_stop(sv, &r4), SUPERVISOR_OK);
    assert_string_equal(r4.message, "Model server is not running");
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_STOPPED), 2);

    supervisor_result_cleanup(&r1);
    supervisor_result_cleanup(&r2);
    supervisor_result_cleanup(&r3);
    supervisor_result_cleanup(&r4);
    supervisor_result_cleanup(NULL);
    supervisor_free(sv);
    supervisor_free(NULL);
    assert_no_children();
}

/* Poll the status until `want` with a pid other than not_pid (0: any), or
 * the deadline; *st holds the last status. */
static bool wait_state(supervisor_t *sv, supervisor_state_t want, int not_pid, unsigned ms,
                       supervisor_status_t *st)
{
    uint64_t end = now_ms() + ms;
    do {
        assert_int_equal(supervisor_status(sv, st), SUPERVISOR_OK);
        if (st->state == want && (not_pid == 0 || st->pid != not_pid))
            return true;
        usleep(10000);
    } while (now_ms() < end);
    return false;
}

static void test_crash_restart(void **state)
{
    fx_t *fx = *state;
    fx->cfg.restart_max = 1;
    fx->cfg.restart_window_ms = 600000;
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    supervisor_result_t r;
    assert_int_equal(supervisor_start(sv, true, NULL, &r), SUPERVISOR_OK);
    int pid1 = r.pid;
    char log1[LOGBOOK_PATH_MAX];
    logbook_current_t cur;
    assert_int_equal(logbook_current(supervisor_logbook(sv), &cur), LOGBOOK_OK);
    snprintf(log1, sizeof log1, "%s", cur.path);
    supervisor_result_cleanup(&r);

    /* Killed behind the supervisor's back. */
    assert_int_equal(kill(pid1, SIGKILL), 0);
    supervisor_status_t st;
    assert_true(wait_state(sv, SUPERVISOR_CRASHED, 0, 5000, &st));
    assert_non_null(strstr(st.message, "killed by signal 9"));
    assert_non_null(strstr(st.message, "restarting in"));
    assert_true(wait_state(sv, SUPERVISOR_RUNNING, pid1, 30000, &st));
    int pid2 = st.pid;
    assert_true(pid2 > 0 && pid2 != pid1);
    assert_true(pid_alive(pid2));
    assert_int_equal(st.restarts, 1);
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_CRASHED), 1);
    assert_true(wait_events(fx, SUPERVISOR_EVENT_RESTARTED, 1, 5000));
    pthread_mutex_lock(&fx->lock);
    for (int i = 0; i < fx->n_events; i++) {
        if (fx->events[i].type == SUPERVISOR_EVENT_CRASHED) {
            assert_int_equal(fx->events[i].signal, SIGKILL);
            assert_int_equal(fx->events[i].pid, pid1);
        }
        if (fx->events[i].type == SUPERVISOR_EVENT_RESTARTED) {
            assert_int_equal(fx->events[i].pid, pid2);
            assert_false(fx->events[i].reset);
        }
    }
    pthread_mutex_unlock(&fx->lock);
    /* The crash is in the old run's log; the new run resumed the cache. */
    assert_true(file_contains(log1, "was killed by signal 9 (Killed) unexpectedly"));
    assert_int_equal(logbook_current(supervisor_logbook(sv), &cur), LOGBOOK_OK);
    assert_string_not_equal(cur.path, log1);
    assert_true(file_contains(cur.path, "kvchat: restarting the model server: "));
    assert_true(file_contains(cur.path, " --resume"));
    char url[300];
    assert_int_equal(supervisor_base_url(sv, url, sizeof url), SUPERVISOR_OK);
    strcat(url, "/health");
    assert_int_equal(http_get_status(url), 200);

    /* A second crash within the window goes beyond restart_max = 1. */
    assert_int_equal(kill(pid2, SIGKILL), 0);
    assert_true(wait_state(sv, SUPERVISOR_CRASHED, pid2, 5000, &st));
    usleep(1000 * 1000);   /* longer than the backoff */
    assert_int_equal(supervisor_status(sv, &st), SUPERVISOR_OK);
    assert_string_equal(st.status, "crashed");
    assert_int_equal(st.pid, 0);
    assert_non_null(strstr(st.message, "not restarting again"));
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_RESTARTED), 1);
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_CRASHED), 2);
    assert_no_children();

    /* A stop after a crash: stopped. */
    assert_int_equal(supervisor_stop(sv, &r), SUPERVISOR_OK);
    assert_int_equal(supervisor_status(sv, &st), SUPERVISOR_OK);
    assert_string_equal(st.status, "stopped");
    assert_int_equal(st.restarts, 0);
    supervisor_result_cleanup(&r);
    supervisor_free(sv);
    assert_no_children();
}

static void test_missing_model(void **state)
{
    fx_t *fx = *state;
    char missing[400];
    snprintf(missing, sizeof missing, "%s/no-such-model.gguf", fx->dir);
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    uint64_t t0 = now_ms();
    supervisor_result_t r;
    assert_int_equal(supervisor_start(sv, false, missing, &r), SUPERVISOR_EFAILED);
    uint64_t took = now_ms() - t0;
    assert_true(took < 15000);
    assert_string_equal(r.status, "error");
    assert_int_equal(r.code, SUPERVISOR_EFAILED);
    assert_non_null(strstr(r.message, "cannot load model"));
    assert_non_null(strstr(r.message, "no-such-model.gguf"));
    assert_non_null(strstr(r.message, "No such file or directory"));
    assert_string_equal(r.model_name, "no-such-model.gguf");
    assert_int_equal(r.pid, 0);
    supervisor_status_t st;
    assert_int_equal(supervisor_status(sv, &st), SUPERVISOR_OK);
    assert_string_equal(st.status, "stopped");
    assert_string_equal(st.model_name, "no-such-model.gguf");
    assert_non_null(strstr(st.message, "cannot load model"));
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_STARTED), 0);
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_CRASHED), 0);
    /* The log says what happened. */
    logbook_current_t cur;
    assert_int_equal(logbook_current(supervisor_logbook(sv), &cur), LOGBOOK_OK);
    assert_true(file_contains(cur.path, "reported a start-up failure"));
    assert_no_children();
    supervisor_result_cleanup(&r);
    supervisor_free(sv);
}

static void test_exits_during_startup(void **state)
{
    fx_t *fx = *state;
    char exe[400];
    write_script(fx, "dies.sh",
                 "echo 'warming up'\n"
                 "echo 'fatal: the GPU caught fire' >&2\n"
                 "exit 3\n",
                 exe, sizeof exe);
    fx->cfg.engine_exe = exe;
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    supervisor_result_t r;
    assert_int_equal(supervisor_start(sv, true, NULL, &r), SUPERVISOR_EEXITED);
    assert_non_null(strstr(r.message, "exited with status 3 during start-up"));
    assert_non_null(strstr(r.message, "warming up\nfatal: the GPU caught fire"));
    assert_int_equal(r.exit_status, 3);
    assert_int_equal(r.signal, 0);
    supervisor_status_t st;
    assert_int_equal(supervisor_status(sv, &st), SUPERVISOR_OK);
    assert_string_equal(st.status, "stopped");
    /* A failed start is no crash: no restart either. */
    usleep(600 * 1000);
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_CRASHED), 0);
    assert_int_equal(supervisor_status(sv, &st), SUPERVISOR_OK);
    assert_string_equal(st.status, "stopped");
    logbook_current_t cur;
    assert_int_equal(logbook_current(supervisor_logbook(sv), &cur), LOGBOOK_OK);
    assert_true(file_contains(cur.path, "fatal: the GPU caught fire"));
    assert_true(file_contains(cur.path, "exited with status 3"));
    supervisor_result_cleanup(&r);
    assert_no_children();
    supervisor_free(sv);
}

static void test_health_timeout(void **state)
{
    fx_t *fx = *state;
    char exe[400];
    /* Claims to listen on a port where nothing answers, then hangs. */
    write_script(fx, "hangs.sh",
                 "echo 'listening on http://127.0.0.1:1'\n"
                 "exec sleep 600\n",
                 exe, sizeof exe);
    fx->cfg.engine_exe = exe;
    fx->cfg.health_timeout_ms = 1500;
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    uint64_t t0 = now_ms();
    supervisor_result_t r;
    assert_int_equal(supervisor_start(sv, false, NULL, &r), SUPERVISOR_ETIMEOUT);
    uint64_t took = now_ms() - t0;
    assert_true(took >= 1500 && took < 6000);   /* sleep dies of SIGTERM at once */
    assert_non_null(strstr(r.message, "did not become ready within 1.5 s"));
    assert_int_equal(r.signal, SIGTERM);
    supervisor_result_cleanup(&r);
    assert_no_children();
    supervisor_free(sv);
}

static void test_sigkill_after_grace(void **state)
{
    fx_t *fx = *state;
    char exe[400];
    write_script(fx, "stubborn.sh",
                 "trap '' TERM\n"
                 "echo 'ignoring SIGTERM'\n"
                 "sleep 600\n",
                 exe, sizeof exe);
    fx->cfg.engine_exe = exe;
    fx->cfg.health_timeout_ms = 800;
    fx->cfg.stop_grace_ms = 700;
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    uint64_t t0 = now_ms();
    supervisor_result_t r;
    assert_int_equal(supervisor_start(sv, false, NULL, &r), SUPERVISOR_ETIMEOUT);
    uint64_t took = now_ms() - t0;
    assert_true(took >= 1500 && took < 8000);
    assert_int_equal(r.signal, SIGKILL);
    assert_non_null(strstr(r.message, "ignoring SIGTERM"));
    supervisor_result_cleanup(&r);
    assert_no_children();   /* the sleep in its group went too */
    supervisor_free(sv);
}

static void test_cannot_exec(void **state)
{
    fx_t *fx = *state;
    char exe[400];
    snprintf(exe, sizeof exe, "%s/not-there", fx->dir);
    fx->cfg.engine_exe = exe;
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    supervisor_result_t r;
    assert_int_equal(supervisor_start(sv, false, NULL, &r), SUPERVISOR_ESPAWN);
    assert_non_null(strstr(r.message, "No such file or directory"));
    supervisor_result_cleanup(&r);
    supervisor_free(sv);

    /* Present but not executable. */
    write_script(fx, "plain.sh", "exit 0\n", exe, sizeof exe);
    assert_int_equal(chmod(exe, 0644), 0);
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    assert_int_equal(supervisor_start(sv, false, NULL, &r), SUPERVISOR_ESPAWN);
    assert_non_null(strstr(r.message, "Permission denied"));
    logbook_current_t cur;
    assert_int_equal(logbook_current(supervisor_logbook(sv), &cur), LOGBOOK_OK);
    assert_true(file_contains(cur.path, "Permission denied"));
    supervisor_result_cleanup(&r);
    supervisor_free(sv);
    assert_no_children();
}

/* A command run on its own thread. */
typedef struct {
    supervisor_t *sv;
    int what;                  /* 0 start, 1 start with reset, 2 stop */
    supervisor_result_t res;
    int rc;
    uint64_t done_ms;          /* when it returned */
    pthread_barrier_t *go;     /* NULL, or waited for before the call */
    pthread_t th;
} cmd_call_t;

static void *cmd_main(void *arg)
{
    cmd_call_t *c = arg;
    if (c->go)
        pthread_barrier_wait(c->go);
    c->rc = c->what == 2 ? supervisor_stop(c->sv, &c->res)
                         : supervisor_start(c->sv, c->what == 1, NULL, &c->res);
    c->done_ms = now_ms();
    return NULL;
}

static void cmd_spawn(cmd_call_t *c, supervisor_t *sv, int what, pthread_barrier_t *go)
{
    memset(c, 0, sizeof *c);
    c->sv = sv;
    c->what = what;
    c->go = go;
    assert_int_equal(pthread_create(&c->th, NULL, cmd_main, c), 0);
}

static void cmd_join(cmd_call_t *c) { assert_int_equal(pthread_join(c->th, NULL), 0); }

/* Wait until a start has spawned its process (status starting, a pid other
 * than not_pid); returns the pid. */
static int wait_spawned(supervisor_t *sv, int not_pid)
{
    supervisor_status_t st;
    assert_true(wait_state(sv, SUPERVISOR_STARTING, 0, 10000, &st));
    uint64_t deadline = now_ms() + 10000;
    while ((st.pid == 0 || st.pid == not_pid) && now_ms() < deadline) {
        usleep(5000);
        supervisor_status(sv, &st);
    }
    assert_true(st.pid > 0 && st.pid != not_pid);
    assert_int_equal(st.state, SUPERVISOR_STARTING);
    return st.pid;
}

static void assert_superseded(const cmd_call_t *c, const char *by)
{
    assert_int_equal(c->rc, SUPERVISOR_ESUPERSEDED);
    assert_int_equal(c->res.code, SUPERVISOR_ESUPERSEDED);
    assert_true(c->res.superseded);
    assert_non_null(c->res.superseded_by);
    assert_string_equal(c->res.superseded_by, by);
    assert_string_equal(c->res.status, "superseded");
    assert_non_null(strstr(c->res.message, "A later request"));
    assert_int_equal(c->res.pid, 0);
}

/* The last command wins, shown with engines that never become ready: a
 * start supersedes a start, a stop supersedes that, and a command still
 * waiting for its turn returns as soon as a newer one arrives, without
 * waiting for the engine in front of it to stop. */
static void test_supersede_mechanics(void **state)
{
    fx_t *fx = *state;
    char exe[400];
    /* never serves; ignores SIGTERM, so stopping it takes the grace period */
    write_script(fx, "slow.sh", "trap '' TERM\necho 'loading slowly'\nsleep 600\n", exe,
                 sizeof exe);
    fx->cfg.engine_exe = exe;
    fx->cfg.health_timeout_ms = 30000;
    fx->cfg.stop_grace_ms = 4000;
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);

    cmd_call_t a, b, c;
    cmd_spawn(&a, sv, 0, NULL);
    int pid_a = wait_spawned(sv, 0);
    assert_true(pid_alive(pid_a));
    /* the script ignores SIGTERM only once its first line has run */
    usleep(1000 * 1000);

    /* B supersedes A, which must stop its engine first (4 s: SIGTERM is
     * ignored). C comes while B still waits for its turn: B returns at
     * once, long before A's engine is gone (the margin is for a loaded
     * machine). */
    cmd_spawn(&b, sv, 1, NULL);
    usleep(300 * 1000);
    uint64_t t_c = now_ms();
    cmd_spawn(&c, sv, 2, NULL);
    cmd_join(&b);
    assert_true(b.done_ms - t_c < 2500);
    assert_superseded(&b, "stop");
    assert_true(b.res.reset);
    cmd_join(&a);
    assert_superseded(&a, "stop");   /* the newest command when it returned */
    assert_false(pid_alive(pid_a));
    cmd_join(&c);
    assert_int_equal(c.rc, SUPERVISOR_OK);
    assert_string_equal(c.res.status, "success");
    assert_false(c.res.superseded);
    assert_null(c.res.superseded_by);
    assert_int_equal(c.res.state, SUPERVISOR_STOPPED);
    supervisor_status_t st;
    assert_int_equal(supervisor_status(sv, &st), SUPERVISOR_OK);
    assert_string_equal(st.status, "stopped");
    assert_int_equal(st.pid, 0);
    /* Nobody was told "busy", and B never started anything. */
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_STARTED), 0);
    assert_no_children();
    supervisor_result_cleanup(&a.res);
    supervisor_result_cleanup(&b.res);
    supervisor_result_cleanup(&c.res);

    /* A start that supersedes a start in progress: the older one stops its
     * engine and returns; the newer one is starting its own. */
    cmd_spawn(&a, sv, 0, NULL);
    pid_a = wait_spawned(sv, 0);
    cmd_spawn(&b, sv, 0, NULL);
    cmd_join(&a);
    assert_superseded(&a, "resume");
    assert_false(pid_alive(pid_a));
    int pid_b = wait_spawned(sv, pid_a);
    assert_true(pid_alive(pid_b));
    assert_int_equal(supervisor_stop(sv, &c.res), SUPERVISOR_OK);
    cmd_join(&b);
    assert_superseded(&b, "stop");
    assert_false(pid_alive(pid_b));
    supervisor_result_cleanup(&a.res);
    supervisor_result_cleanup(&b.res);
    supervisor_result_cleanup(&c.res);
    assert_no_children();
    supervisor_free(sv);
}

/* ---- the engine's key ---- */

/* Every engine the supervisor starts has a key of its own, from a pipe:
 * not on its command line nor in its environment, nor in any log. Straight
 * to the engine's port without it (or with another) is refused; the app's
 * calls carry it; a new start makes a new key. */
static void test_engine_key(void **state)
{
    fx_t *fx = *state;
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    char key1[SUPERVISOR_KEY_LEN + 1], key2[SUPERVISOR_KEY_LEN + 1], small[SUPERVISOR_KEY_LEN];
    assert_int_equal(supervisor_api_key(sv, key1, sizeof key1), 0);
    assert_string_equal(key1, "");

    supervisor_result_t r1;
    assert_int_equal(supervisor_start(sv, true, NULL, &r1), SUPERVISOR_OK);
    assert_int_equal(supervisor_api_key(sv, key1, sizeof key1), SUPERVISOR_KEY_LEN);
    for (int i = 0; i < SUPERVISOR_KEY_LEN; i++)
        assert_non_null(strchr("0123456789abcdef", key1[i]));
    assert_int_equal(supervisor_api_key(sv, small, sizeof small), 0);
    assert_string_equal(small, "");
    assert_true(proc_holds(r1.pid, "cmdline", "--api-key-fd 3"));
    assert_false(proc_holds(r1.pid, "cmdline", key1));
    assert_false(proc_holds(r1.pid, "environ", key1));
    assert_null(strstr(r1.command, key1));

    /* Straight to the engine's port. */
    char base[300], url[400];
    assert_int_equal(supervisor_base_url(sv, base, sizeof base), SUPERVISOR_OK);
    static const struct {
        const char *method, *path, *body;
    } routes[] = {
        { "GET", "/v1/cache", NULL },
        { "GET", "/v1/cache/stats", NULL },
        { "GET", "/v1/models", NULL },
        { "GET", "/metrics", NULL },
        { "POST", "/v1/chat/completions",
          "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":2}" },
        { "POST", "/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":2}" },
        { "POST", "/tokenize", "{\"content\":\"Hi\"}" },
        { "POST", "/v1/cache/prefill", "{\"prompt\":\"Hi\"}" },
        { "DELETE", "/v1/cache/abc", NULL },
        { "POST", "/v1/cache/reset", "{}" },
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        snprintf(url, sizeof url, "%s%s", base, routes[i].path);
        assert_int_equal(http_status_key(routes[i].method, url, routes[i].body, NULL), 401);
        assert_int_equal(http_status_key(routes[i].method, url, routes[i].body, "0123abcd"), 401);
    }
    snprintf(url, sizeof url, "%s/health", base);
    assert_int_equal(http_status_key("GET", url, NULL, NULL), 200);
    snprintf(url, sizeof url, "%s/v1/cache", base);
    assert_int_equal(http_status_key("GET", url, NULL, key1), 200);

    /* The app's calls carry the key: caching, the cache list and stats,
     * model listing, token counts, chat, deleting an entry. */
    llm_provider_t *p = engine_provider(sv, true);
    const llm_message_t doc[] = { { LLM_ROLE_SYSTEM, g_doc } };
    llm_prefill_result_t pr;
    if (llm_prefill(p, doc, 1, 0, NULL, NULL, &pr) != LLM_OK)
        fail_msg("prefill: %s", pr.error);
    llm_cache_entry_t *entries = NULL;
    size_t n = 0;
    char err[256];
    assert_int_equal(llm_cache_entries(p, &entries, &n, err, sizeof err), LLM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(entries[0].id, pr.id);
    free(entries);
    llm_cache_stats_t cs;
    assert_int_equal(llm_cache_stats(p, &cs, err, sizeof err), LLM_OK);
    assert_int_equal(cs.entries, 1);
    llm_model_info_t info;
    assert_int_equal(llm_models(p, &info, err, sizeof err), LLM_OK);
    assert_true(info.random_weights);
    int64_t tokens = 0;
    assert_int_equal(llm_tokenize_count(p, "Hello there", 11, &tokens, err, sizeof err), LLM_OK);
    assert_true(tokens >= 2);
    const llm_message_t chat[] = { { LLM_ROLE_SYSTEM, g_doc }, { LLM_ROLE_USER, "Heaviest?" } };
    llm_params_t prm = llm_params_default();
    prm.max_tokens = 4;
    llm_result_t cr;
    assert_int_equal(llm_chat(p, chat, 2, &prm, NULL, NULL, &cr), LLM_OK);
    assert_true(cr.usage.cached_tokens > 0);   /* the prefilled document */
    llm_result_cleanup(&cr);
    assert_int_equal(llm_cache_delete(p, pr.id, err, sizeof err), LLM_OK);
    llm_provider_free(p);
    /* Without the key the same calls are refused. */
    p = engine_provider(sv, false);
    assert_int_equal(llm_cache_stats(p, &cs, err, sizeof err), LLM_EAUTH);
    assert_int_equal(llm_chat(p, chat, 2, &prm, NULL, NULL, &cr), LLM_EAUTH);
    llm_result_cleanup(&cr);
    llm_provider_free(p);

    /* A new start, a new key; the old one opens nothing. */
    supervisor_result_t r2;
    assert_int_equal(supervisor_start(sv, false, NULL, &r2), SUPERVISOR_OK);
    assert_int_equal(supervisor_api_key(sv, key2, sizeof key2), SUPERVISOR_KEY_LEN);
    assert_string_not_equal(key1, key2);
    assert_int_equal(supervisor_base_url(sv, base, sizeof base), SUPERVISOR_OK);
    snprintf(url, sizeof url, "%s/v1/cache", base);
    assert_int_equal(http_status_key("GET", url, NULL, key1), 401);
    assert_int_equal(http_status_key("GET", url, NULL, key2), 200);
    assert_false(proc_holds(r2.pid, "cmdline", key2));
    assert_true(cache_entries(sv) >= 0);   /* the app's calls follow the new key */

    supervisor_result_t r3;
    assert_int_equal(supervisor_stop(sv, &r3), SUPERVISOR_OK);
    /* Never logged. */
    assert_false(dir_holds(fx->logs, key1));
    assert_false(dir_holds(fx->logs, key2));
    assert_true(dir_holds(fx->logs, "--api-key-fd 3"));
    supervisor_result_cleanup(&r1);
    supervisor_result_cleanup(&r2);
    supervisor_result_cleanup(&r3);
    supervisor_free(sv);
    assert_no_children();

    /* A fixed key from the configuration (engine.api_key): the same at
     * every start, through the pipe all the same. */
    fx->cfg.api_key = "operator-chosen-key_1";
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    assert_int_equal(supervisor_start(sv, false, NULL, &r1), SUPERVISOR_OK);
    assert_int_equal(supervisor_api_key(sv, key1, sizeof key1), 21);
    assert_string_equal(key1, "operator-chosen-key_1");
    assert_false(proc_holds(r1.pid, "cmdline", key1));
    assert_int_equal(supervisor_base_url(sv, base, sizeof base), SUPERVISOR_OK);
    snprintf(url, sizeof url, "%s/v1/cache", base);
    assert_int_equal(http_status_key("GET", url, NULL, NULL), 401);
    assert_int_equal(http_status_key("GET", url, NULL, "operator-chosen-key_1"), 200);
    assert_true(cache_entries(sv) >= 0);
    supervisor_result_cleanup(&r1);
    supervisor_free(sv);
    assert_no_children();
}

/* ---- the last request wins, with the real engine ---- */

/* The real engine, started one second late: a start long enough for
 * requests to overlap it. */
#define LATE_ENGINE "sleep 1\nexec '" ENGINE "' \"$@\"\n"

/* A reset while a start (keeping the cache) is under way: the start stops,
 * the engine starts again with --reset, and the reset answers once it
 * runs, with the cache empty. */
static void test_reset_while_starting(void **state)
{
    fx_t *fx = *state;
    char exe[400];
    write_script(fx, "late-engine.sh", LATE_ENGINE, exe, sizeof exe);
    fx->cfg.engine_exe = exe;
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    /* A cached document, on disk once the engine stops. */
    supervisor_result_t r;
    assert_int_equal(supervisor_start(sv, false, NULL, &r), SUPERVISOR_OK);
    cache_doc(sv);
    assert_int_equal(cache_entries(sv), 1);
    supervisor_result_cleanup(&r);
    assert_int_equal(supervisor_stop(sv, &r), SUPERVISOR_OK);
    supervisor_result_cleanup(&r);

    cmd_call_t a;
    cmd_spawn(&a, sv, 0, NULL);   /* as kvchat's own start at start-up */
    int pid_a = wait_spawned(sv, 0);
    assert_int_equal(supervisor_start(sv, true, NULL, &r), SUPERVISOR_OK);
    assert_string_equal(r.status, "success");
    assert_false(r.superseded);
    assert_int_equal(r.state, SUPERVISOR_RUNNING);
    assert_true(r.reset);
    assert_non_null(strstr(r.command, " --reset"));
    assert_true(r.pid > 0 && r.pid != pid_a);
    assert_true(pid_alive(r.pid));
    cmd_join(&a);
    assert_superseded(&a, "reset");
    assert_false(pid_alive(pid_a));
    supervisor_status_t st;
    assert_int_equal(supervisor_status(sv, &st), SUPERVISOR_OK);
    assert_string_equal(st.status, "running");
    assert_int_equal(st.pid, r.pid);
    assert_int_equal(live_children(), 1);
    assert_int_equal(cache_entries(sv), 0);
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_STARTED), 2);
    supervisor_result_cleanup(&r);
    supervisor_result_cleanup(&a.res);
    assert_int_equal(supervisor_stop(sv, &r), SUPERVISOR_OK);
    supervisor_result_cleanup(&r);
    supervisor_free(sv);
    assert_no_children();
}

/* A stop while a start is under way: stopped, the start answers that it
 * was superseded, no process is left (reaped, none of its group alive). */
static void test_stop_while_starting(void **state)
{
    fx_t *fx = *state;
    char exe[400];
    write_script(fx, "late-engine.sh", LATE_ENGINE, exe, sizeof exe);
    fx->cfg.engine_exe = exe;
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    cmd_call_t a;
    cmd_spawn(&a, sv, 1, NULL);
    int pid_a = wait_spawned(sv, 0);
    supervisor_result_t r;
    assert_int_equal(supervisor_stop(sv, &r), SUPERVISOR_OK);
    assert_string_equal(r.status, "success");
    assert_int_equal(r.state, SUPERVISOR_STOPPED);
    assert_non_null(strstr(r.message, "Model server stopped"));
    cmd_join(&a);
    assert_superseded(&a, "stop");
    assert_int_equal(a.res.state, SUPERVISOR_STOPPED);
    assert_false(pid_alive(pid_a));
    /* nothing of its process group: the group got the signal with its
     * leader; a member may take a moment to finish exiting */
    for (int i = 0; i < 200 && live_procs(0, pid_a) > 0; i++)
        usleep(10 * 1000);
    assert_int_equal(live_procs(0, pid_a), 0);
    supervisor_status_t st;
    assert_int_equal(supervisor_status(sv, &st), SUPERVISOR_OK);
    assert_string_equal(st.status, "stopped");
    assert_int_equal(st.pid, 0);
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_STARTED), 0);
    assert_no_children();
    supervisor_result_cleanup(&r);
    supervisor_result_cleanup(&a.res);
    supervisor_free(sv);
}

/* Two resets at once: one runs the engine, the other answers that it was
 * superseded; one engine, cache empty. */
static void test_resets_racing(void **state)
{
    fx_t *fx = *state;
    char exe[400];
    write_script(fx, "late-engine.sh", LATE_ENGINE, exe, sizeof exe);
    fx->cfg.engine_exe = exe;
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    cmd_call_t c[2];
    cmd_spawn(&c[0], sv, 1, &go);
    cmd_spawn(&c[1], sv, 1, &go);
    cmd_join(&c[0]);
    cmd_join(&c[1]);
    pthread_barrier_destroy(&go);
    int won = c[0].rc == SUPERVISOR_OK ? 0 : 1;
    assert_int_equal(c[won].rc, SUPERVISOR_OK);
    assert_superseded(&c[1 - won], "reset");
    assert_int_equal(c[won].res.state, SUPERVISOR_RUNNING);
    assert_non_null(strstr(c[won].res.command, " --reset"));
    supervisor_status_t st;
    assert_int_equal(supervisor_status(sv, &st), SUPERVISOR_OK);
    assert_string_equal(st.status, "running");
    assert_int_equal(st.pid, c[won].res.pid);
    assert_int_equal(live_children(), 1);
    assert_int_equal(cache_entries(sv), 0);
    supervisor_result_t r;
    assert_int_equal(supervisor_stop(sv, &r), SUPERVISOR_OK);
    supervisor_result_cleanup(&r);
    supervisor_result_cleanup(&c[0].res);
    supervisor_result_cleanup(&c[1].res);
    supervisor_free(sv);
    assert_no_children();
}

/* A start keeping the cache during a reset: the later request wins, so
 * the engine resumes, and the document cached before is still there (the
 * reset's engine never ran). */
static void test_resume_during_reset(void **state)
{
    fx_t *fx = *state;
    char exe[400];
    write_script(fx, "late-engine.sh", LATE_ENGINE, exe, sizeof exe);
    fx->cfg.engine_exe = exe;
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    supervisor_result_t r;
    assert_int_equal(supervisor_start(sv, true, NULL, &r), SUPERVISOR_OK);
    cache_doc(sv);
    supervisor_result_cleanup(&r);
    assert_int_equal(supervisor_stop(sv, &r), SUPERVISOR_OK);
    supervisor_result_cleanup(&r);

    cmd_call_t a;
    cmd_spawn(&a, sv, 1, NULL);
    int pid_a = wait_spawned(sv, 0);
    assert_int_equal(supervisor_start(sv, false, NULL, &r), SUPERVISOR_OK);
    assert_false(r.reset);
    assert_non_null(strstr(r.command, " --resume"));
    assert_int_equal(r.state, SUPERVISOR_RUNNING);
    cmd_join(&a);
    assert_superseded(&a, "resume");
    assert_true(a.res.reset);
    assert_false(pid_alive(pid_a));
    assert_int_equal(cache_entries(sv), 1);
    assert_int_equal(live_children(), 1);
    supervisor_result_cleanup(&r);
    supervisor_result_cleanup(&a.res);
    assert_int_equal(supervisor_stop(sv, &r), SUPERVISOR_OK);
    supervisor_result_cleanup(&r);
    supervisor_free(sv);
    assert_no_children();
}

static void test_free_while_running(void **state)
{
    fx_t *fx = *state;
    supervisor_t *sv = NULL;
    assert_int_equal(supervisor_new(&fx->cfg, &sv), SUPERVISOR_OK);
    supervisor_result_t r;
    assert_int_equal(supervisor_start(sv, true, NULL, &r), SUPERVISOR_OK);
    int pid = r.pid;
    supervisor_result_cleanup(&r);
    supervisor_free(sv);   /* stops the engine */
    assert_false(pid_alive(pid));
    assert_int_equal(count_events(fx, SUPERVISOR_EVENT_STOPPED), 1);
    assert_no_children();
}

/* Gone, or a zombie waiting for whoever adopted it. */
static bool pid_gone(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] == 'Z';
}

static void test_parent_death(void **state)
{
    fx_t *fx = *state;
    char exe[400], pidfile[400];
    snprintf(pidfile, sizeof pidfile, "%s/engine.pid", fx->dir);
    char body[1400];
    snprintf(body, sizeof body, "echo $$ > %s.tmp && mv %s.tmp %s\nexec sleep 600\n", pidfile,
             pidfile, pidfile);
    write_script(fx, "orphan.sh", body, exe, sizeof exe);
    fx->cfg.engine_exe = exe;
    fx->cfg.on_event = NULL;
    /* A kvchat stand-in that starts an engine and is then killed hard. */
    pid_t app = fork();
    assert_true(app >= 0);
    if (app == 0) {
        supervisor_t *sv = NULL;
        if (supervisor_new(&fx->cfg, &sv) != SUPERVISOR_OK)
            _exit(1);
        supervisor_result_t r;
        supervisor_start(sv, false, NULL, &r);   /* waits for /health */
        _exit(2);
    }
    int engine = 0;
    uint64_t end = now_ms() + 10000;
    while (now_ms() < end) {
        FILE *f = fopen(pidfile, "r");
        if (f) {
            if (fscanf(f, "%d", &engine) != 1)
                engine = 0;
            fclose(f);
        }
        if (engine > 0)
            break;
        usleep(20000);
    }
    assert_true(engine > 0);
    assert_false(pid_gone(engine));
    assert_int_equal(kill(app, SIGKILL), 0);
    int ws = 0;
    assert_int_equal(waitpid(app, &ws, 0), app);
    assert_true(WIFSIGNALED(ws));
    /* The engine got SIGTERM when its parent died. */
    end = now_ms() + 5000;
    while (!pid_gone(engine) && now_ms() < end)
        usleep(20000);
    bool gone = pid_gone(engine);
    if (!gone)
        kill(engine, SIGKILL);
    assert_true(gone);
    assert_no_children();
}

static void test_config(void **state)
{
    fx_t *fx = *state;
    supervisor_config_t d;
    supervisor_config_default(&d);
    assert_int_equal(d.port, 13141);
    assert_string_equal(d.host, "127.0.0.1");
    assert_true(d.restart_on_crash);
    assert_int_equal(d.restart_max, 3);
    assert_int_equal(d.restart_window_ms, 300000);
    assert_int_equal(d.stop_grace_ms, 10000);
    assert_int_equal(d.health_timeout_ms, 120000);
    assert_int_equal(d.log_keep, 50);

    supervisor_t *sv = (supervisor_t *)&d;
    supervisor_config_t c = fx->cfg;
    c.engine_exe = NULL;
    assert_int_equal(supervisor_new(&c, &sv), SUPERVISOR_EINVAL);
    assert_null(sv);
    c = fx->cfg;
    c.logs_dir = NULL;
    assert_int_equal(supervisor_new(&c, &sv), SUPERVISOR_EINVAL);
    c = fx->cfg;
    c.port = 70000;
    assert_int_equal(supervisor_new(&c, &sv), SUPERVISOR_EINVAL);
    static const char *const with_log[] = { "--threads", "2", "--log-file=/tmp/x", NULL };
    c = fx->cfg;
    c.extra_args = with_log;
    assert_int_equal(supervisor_new(&c, &sv), SUPERVISOR_EINVAL);
    /* The supervisor keys the engine itself. */
    static const char *const with_key[] = { "--api-key", "k", NULL };
    static const char *const with_key_fd[] = { "-api-key-fd=5", NULL };
    c.extra_args = with_key;
    assert_int_equal(supervisor_new(&c, &sv), SUPERVISOR_EINVAL);
    c.extra_args = with_key_fd;
    assert_int_equal(supervisor_new(&c, &sv), SUPERVISOR_EINVAL);
    c = fx->cfg;
    c.api_key = "two words";
    assert_int_equal(supervisor_new(&c, &sv), SUPERVISOR_EINVAL);
    char long_key[SUPERVISOR_KEY_MAX + 2];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    c.api_key = long_key;
    assert_int_equal(supervisor_new(&c, &sv), SUPERVISOR_EINVAL);
    long_key[SUPERVISOR_KEY_MAX] = '\0';
    assert_int_equal(supervisor_new(&c, &sv), SUPERVISOR_OK);
    supervisor_free(sv);

    /* A wildcard listen address is reached on loopback; quoting in the
     * command line. */
    static const char *const quoted[] = { "--alias", "my model's name", NULL };
    c = fx->cfg;
    c.host = "0.0.0.0";
    c.port = 4321;
    c.model_name = "Tiny Test";
    c.extra_args = quoted;
    c.engine_exe = "/bin/false";
    assert_int_equal(supervisor_new(&c, &sv), SUPERVISOR_OK);
    char url[300];
    assert_int_equal(supervisor_base_url(sv, url, sizeof url), SUPERVISOR_OK);
    assert_string_equal(url, "http://127.0.0.1:4321");
    supervisor_result_t r;
    assert_int_equal(supervisor_start(sv, false, NULL, &r), SUPERVISOR_EEXITED);
    assert_string_equal(r.model_name, "Tiny Test");
    assert_non_null(strstr(r.command, " --alias 'my model'\\''s name'"));
    assert_non_null(strstr(r.command, " --host 0.0.0.0 --port 4321 "));
    assert_non_null(strstr(r.message, "exited with status 1"));
    supervisor_result_cleanup(&r);
    supervisor_free(sv);
    assert_string_equal(supervisor_strerror(SUPERVISOR_ESUPERSEDED),
                        "a later start or stop request took over");
    assert_string_equal(supervisor_state_name(SUPERVISOR_CRASHED), "crashed");
    assert_no_children();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* KVCHAT_TEST_FILTER=test_name (wildcards allowed) runs only those */
    if (getenv("KVCHAT_TEST_FILTER"))
        cmocka_set_test_filter(getenv("KVCHAT_TEST_FILTER"));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cannot_exec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exits_during_startup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_after_grace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_supersede_mechanics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parent_death, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_restart_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_while_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_while_starting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_while_starting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resets_racing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_during_reset, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
