/* supervisor.c — see supervisor.h.
 *
 * Threads:
 *  - callers of start/stop ("commands"), one carried out at a time: the
 *    one that set op_busy (see op_acquire); the others wait on `cond` and
 *    give up as soon as a newer command has taken a ticket;
 *  - the reaper: polls the engine's pidfd (and a wake-up pipe), and is the
 *    only thread that reaps. It reaps under `lock` and marks the process
 *    reaped, and every kill() happens under `lock` on an unreaped process,
 *    so a signal can never reach a recycled pid;
 *  - the keeper: performs automatic restarts when one is due (it too sets
 *    op_busy while it restarts);
 *  - one logger per engine process: pipe -> logbook run, and notes the last
 *    lines and the "listening on" line.
 * One mutex, `lock`: it is never held while calling into the logbook (the
 * logger's line callback takes `lock` with the run's lock held), while
 * waiting for a thread other than on `cond`, or while calling on_event.
 * Whoever holds op_busy may wait for the reaper (which never waits for
 * op_busy), and nobody waits for op_busy while holding anything, so
 * commands cannot deadlock one another.
 *
 * Superseding: every command bumps cmd_seq (its ticket) and cancel_seq.
 * A start in progress compares cancel_seq with the value it saw when it
 * got op_busy, before spawning and at every health poll, and gives up
 * (stopping what it started) when it changed; a command waiting for
 * op_busy gives up when cmd_seq is no longer its ticket.
 *
 * State ownership: sv->proc is set by a start (op_busy held) and cleared by
 * the reaper after the exit is fully handled (logger joined, run closed);
 * the proc_t is freed by the reaper. A thread that released `lock` must not
 * touch a proc_t unless it checked again that sv->proc still points to it.
 */
#include "app/model/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/json.h"
#include "common/log.h"

extern char **environ;

#define TICK_MS 100               /* reaper tick when there is no pidfd */
#define TAIL_LINES 8              /* engine output lines kept for messages */
#define TAIL_LINE_MAX 320
#define HEALTH_BODY_MAX 4096
#define HEALTH_REQ_TIMEOUT_MS 2000
#define KILL_WAIT_MS 5000         /* after SIGKILL, before giving up */
#define BACKOFF_CAP_MS 30000
#define RESTART_HISTORY_MAX 64
#define EXE_PATH_MAX 4096
#define HOST_MAX 255
#define LISTEN_MARK "listening on http://"
#define KEY_BYTES 32              /* random bytes of an engine's API key */
#define KEY_FD 3                  /* where the engine finds its key (--api-key-fd) */

/* What a command asks for (the newest one names itself to those it supersedes). */
typedef enum { CMD_RESET, CMD_RESUME, CMD_STOP } cmd_t;

/* A start asks the reaper thread to fork (see child_exec: the parent-death
 * signal is tied to the thread that forks, and the reaper lives as long as
 * the supervisor). */
typedef struct {
    char **argv;
    const char *key;              /* the engine's API key, or NULL */
    logbook_run_t *run;
    struct proc *proc;            /* out */
    int rc;                       /* out */
    char msg[512];                /* out: why, on failure */
    bool done;
} spawn_req_t;

typedef struct proc {
    struct supervisor *sv;
    uint64_t gen;
    pid_t pid;
    int pidfd;                    /* -1: the reaper ticks instead */
    int out_r;                    /* the logger's end of the output pipe */
    int quit_r, quit_w;           /* tells the logger to drain and end */
    pthread_t logger;
    logbook_run_t *run;
    double create_time;           /* epoch */
    uint64_t spawn_ms;            /* monotonic */
    /* Guarded by sv->lock. */
    bool listening;
    int port;
    bool expected;                /* a stop was asked: the exit is no crash */
    bool starting;                /* a start waits for it: the exit is a failed start */
    bool reaped;
    int wstatus;
    uint64_t cpu_ticks;           /* at the previous status call */
    uint64_t cpu_ms;
    double cpu_percent;
    char tail[TAIL_LINES][TAIL_LINE_MAX];
    unsigned tail_next, tail_count;
} proc_t;

struct supervisor {
    /* Copied config; immutable after supervisor_new except where noted. */
    char *exe, *host, *cache_dir;
    char **extra;
    size_t n_extra;
    int port, ctx_size, parallel, threads;
    unsigned health_timeout_ms, poll_ms, restart_max, restart_window_ms, backoff_ms, grace_ms;
    bool restart_on_crash;
    supervisor_event_fn on_event;
    void *user;
    logbook_t *lb;

    pthread_mutex_t lock;         /* everything below */
    pthread_cond_t cond;          /* broadcast on every state change */
    int wake_r, wake_w;           /* wakes the reaper */
    pthread_t reaper, keeper;
    bool reaper_started, keeper_started;
    bool quit;                    /* supervisor_free began: no new work */
    bool reaper_quit;

    spawn_req_t *spawn_req;       /* waiting for the reaper */
    char *model_path;             /* the model of the next start (lock) */
    char *model_name;
    proc_t *proc;
    uint64_t next_gen;
    supervisor_state_t state;
    char message[1024];
    int last_port;

    bool op_busy;                 /* a command or restart is being carried out */
    uint64_t cmd_seq;             /* ticket of the newest command */
    cmd_t cmd_kind;               /* what the newest command asked for */
    unsigned user_cmds;           /* commands between their call and return */
    uint64_t cancel_seq;          /* bumped by every command and free: a running start gives up */
    uint64_t restart_epoch;       /* bumped by every command: drops a pending restart */
    char *fixed_key;              /* config api_key, or NULL: random per start */
    char key[SUPERVISOR_KEY_MAX + 1]; /* the newest engine's API key; "" before the first */
    uint64_t restart_due_ms;      /* 0 = no restart pending */
    uint64_t restart_hist[RESTART_HISTORY_MAX];
    size_t n_restart_hist;
    unsigned restarts;

    /* The last exit the reaper handled. */
    uint64_t exit_gen;
    int exit_status, exit_signal, exit_wstatus;
    char exit_tail[TAIL_LINES * TAIL_LINE_MAX];
};

/* ---- small helpers ---- */

const char *supervisor_strerror(int rc)
{
    switch (rc) {
    case SUPERVISOR_OK: return "ok";
    case SUPERVISOR_EINVAL: return "invalid argument";
    case SUPERVISOR_ENOMEM: return "out of memory";
    case SUPERVISOR_ESPAWN: return "the model server could not be started";
    case SUPERVISOR_EEXITED: return "the model server exited during start-up";
    case SUPERVISOR_EFAILED: return "the model server failed to start";
    case SUPERVISOR_ETIMEOUT: return "the model server did not become ready in time";
    case SUPERVISOR_ESUPERSEDED: return "a later start or stop request took over";
    case SUPERVISOR_ECANCELED: return "the start was cancelled";
    case SUPERVISOR_ELOG: return "the log file could not be created";
    case SUPERVISOR_ESTOP: return "the model server could not be stopped";
    default: return "unknown supervisor error";
    }
}

const char *supervisor_state_name(supervisor_state_t st)
{
    switch (st) {
    case SUPERVISOR_STOPPED: return "stopped";
    case SUPERVISOR_STARTING: return "starting";
    case SUPERVISOR_RUNNING: return "running";
    case SUPERVISOR_CRASHED: return "crashed";
    }
    return "stopped";
}

/* Copy src into dst (size n > 0), cut to fit, always NUL-terminated. */
static void str_copy(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src);
    if (len > n - 1)
        len = n - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait on sv->cond until the monotonic deadline (ms). Lock held. */
static void cond_wait_until(supervisor_t *sv, uint64_t deadline)
{
    struct timespec ts = { (time_t)(deadline / 1000), (long)(deadline % 1000) * 1000000L };
    pthread_cond_timedwait(&sv->cond, &sv->lock, &ts);
}

static void wake_reaper(supervisor_t *sv)
{
    char b = 1;
    ssize_t ignored = write(sv->wake_w, &b, 1);   /* full pipe: already awake */
    (void)ignored;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static char *dup_or_null(const char *s, bool *nomem)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *nomem = true;
    return d;
}

/* The file name of a path. */
static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Describe a wait status: "exited with status 1", "was killed by signal 9
 * (Killed)". */
static void describe_exit(int wstatus, char *buf, size_t n)
{
    if (WIFEXITED(wstatus)) {
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(wstatus));
    } else if (WIFSIGNALED(wstatus)) {
        const char *d = sigdescr_np(WTERMSIG(wstatus));
        snprintf(buf, n, "was killed by signal %d (%s)", WTERMSIG(wstatus), d ? d : "?");
    } else {
        snprintf(buf, n, "ended (wait status %d)", wstatus);
    }
}

/* Append "\n" + text to msg (size n), cutting text to fit. */
static void msg_append(char *msg, size_t n, const char *text)
{
    size_t len = strlen(msg);
    if (len + 2 >= n || !*text)
        return;
    snprintf(msg + len, n - len, "%s%s", len ? "\n" : "", text);
}

/* ---- configuration ---- */

void supervisor_config_default(supervisor_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->host = "127.0.0.1";
    cfg->port = 13141;
    cfg->log_keep = 50;
    cfg->health_timeout_ms = 120000;
    cfg->poll_interval_ms = 250;
    cfg->restart_on_crash = true;
    cfg->restart_max = 3;
    cfg->restart_window_ms = 300000;
    cfg->restart_backoff_ms = 1000;
    cfg->stop_grace_ms = 10000;
}

/* The host to connect to for a listen address. */
static const char *connect_host(const char *host)
{
    if (!*host || strcmp(host, "0.0.0.0") == 0)
        return "127.0.0.1";
    if (strcmp(host, "::") == 0)
        return "::1";
    return host;
}

/* ---- the child ---- */

/* Everything the child needs, prepared before fork. */
typedef struct {
    const char *exe;
    char *const *argv;
    char *const *envp;
    int in_fd, out_fd, exec_fd;
    int key_fd;                   /* read end of the key pipe, or -1 */
    pid_t parent;
} plan_t;

/* In the child: async-signal-safe calls only. Never returns. */
__attribute__((noreturn)) static void child_exec(const plan_t *p)
{
    /* Every descriptor that must outlive the wiring below moves above
     * KEY_FD first, so that placing the key there clobbers none of them. */
    int exec_fd = p->exec_fd;
    int hi = fcntl(exec_fd, F_DUPFD_CLOEXEC, KEY_FD + 1);
    if (hi >= 0)
        exec_fd = hi;
    int key_hi = -1;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);   /* fails harmlessly for KILL, STOP */
    if (setpgid(0, 0) != 0)
        goto fail;
    /* If kvchat dies (even by SIGKILL) the engine gets SIGTERM instead of
     * living on, holding the port. The signal follows the forking thread,
     * which is why the long-lived reaper thread forks. The parent may have
     * died already before the prctl: then go no further. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != p->parent) {
        errno = ECHILD;
        goto fail;
    }
    if (hi < 0)
        goto fail;
    if (p->key_fd >= 0 && (key_hi = fcntl(p->key_fd, F_DUPFD_CLOEXEC, KEY_FD + 1)) < 0)
        goto fail;
    /* Lift both ends above 2 first so wiring one cannot clobber the other. */
    int in_hi = fcntl(p->in_fd, F_DUPFD_CLOEXEC, 3);
    int out_hi = fcntl(p->out_fd, F_DUPFD_CLOEXEC, 3);
    if (in_hi < 0 || out_hi < 0)
        goto fail;
    if (dup2(in_hi, 0) < 0 || dup2(out_hi, 1) < 0 || dup2(out_hi, 2) < 0)
        goto fail;
    /* Descriptors other threads opened without O_CLOEXEC must not leak. */
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = 3; fd < 65536; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    /* The key's pipe is the one descriptor the engine inherits (dup2
     * leaves the copy without close-on-exec). */
    if (key_hi >= 0 && dup2(key_hi, KEY_FD) < 0)
        goto fail;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(p->exe, p->argv, p->envp);
fail:;
    int err = errno;
    ssize_t ignored = write(exec_fd, &err, sizeof err);
    (void)ignored;
    _exit(127);
}

/* Find exe in PATH when it has no '/'. Returns 0 or an errno value. */
static int resolve_exe(const char *exe, char *out, size_t n)
{
    if (strchr(exe, '/')) {
        if (strlen(exe) >= n)
            return ENAMETOOLONG;
        strcpy(out, exe);
        return 0;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        int k = snprintf(out, n, "%.*s/%s", (int)len, len ? path : ".", exe);
        if (k > 0 && (size_t)k < n && access(out, X_OK) == 0)
            return 0;
        if (!end)
            break;
        path = end + 1;
    }
    return ENOENT;
}

/* One argument, quoted for a POSIX shell when it needs to be. */
static void quote_arg(buf_t *b, const char *a)
{
    bool plain = *a != '\0';
    for (const char *c = a; *c && plain; c++)
        plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                (*c >= '0' && *c <= '9') || strchr("_-./:=,+@%", *c);
    if (plain) {
        buf_puts(b, a);
        return;
    }
    buf_puts(b, "'");
    for (const char *c = a; *c; c++) {
        if (*c == '\'')
            buf_puts(b, "'\\''");
        else
            buf_append(b, c, 1);
    }
    buf_puts(b, "'");
}

/* ---- the logger thread ---- */

static void logger_line(const char *line, size_t len, void *user)
{
    proc_t *p = user;
    supervisor_t *sv = p->sv;
    pthread_mutex_lock(&sv->lock);
    /* Keep the line for messages, without the engine's own stamp. */
    const char *s = line;
    size_t n = len;
    if (n > 25 && s[4] == '-' && s[10] == 'T' && s[23] == 'Z' && s[24] == ' ') {
        s += 25;
        n -= 25;
    }
    if (n > 0) {
        snprintf(p->tail[p->tail_next], TAIL_LINE_MAX, "%.*s", (int)n, s);
        p->tail_next = (p->tail_next + 1) % TAIL_LINES;
        if (p->tail_count < TAIL_LINES)
            p->tail_count++;
    }
    if (!p->listening) {
        const char *m = memmem(line, len, LISTEN_MARK, strlen(LISTEN_MARK));
        if (m) {
            /* The port follows the last ':' of the address. */
            const char *end = line + len;
            const char *colon = NULL;
            for (const char *c = m + strlen(LISTEN_MARK); c < end && *c != ' '; c++)
                if (*c == ':')
                    colon = c;
            long port = 0;
            for (const char *c = colon ? colon + 1 : end; c < end && *c >= '0' && *c <= '9'; c++)
                port = port * 10 + (*c - '0');
            if (port > 0 && port < 65536) {
                p->port = (int)port;
                p->listening = true;
                pthread_cond_broadcast(&sv->cond);
            }
        }
    }
    pthread_mutex_unlock(&sv->lock);
}

static void *logger_main(void *arg)
{
    proc_t *p = arg;
    char chunk[16384];
    bool draining = false;
    for (;;) {
        struct pollfd fds[2] = {
            { .fd = p->out_r, .events = POLLIN },
            { .fd = p->quit_r, .events = POLLIN },
        };
        int k = draining ? 1 : poll(fds, 2, -1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            break;
        if (!draining && fds[1].revents && !fds[0].revents) {
            /* The engine is reaped: what it wrote is in the pipe already. */
            fcntl(p->out_r, F_SETFL, O_NONBLOCK);
            draining = true;
            continue;
        }
        ssize_t n = read(p->out_r, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;   /* EOF, or EAGAIN while draining */
        logbook_run_feed(p->run, chunk, (size_t)n, logger_line, p);
    }
    return NULL;
}

/* ---- spawning ---- */

/* Build argv (heap strings, NULL-terminated) for one start. */
static char **build_argv(supervisor_t *sv, const char *exe, const char *model, bool reset)
{
    size_t cap = 24 + sv->n_extra;
    char **argv = calloc(cap, sizeof *argv);
    if (!argv)
        return NULL;
    size_t n = 0;
    char num[32];
    bool nomem = false;
#define ADD(s) (argv[n++] = dup_or_null((s), &nomem))
#define ADD_INT(flag, v) do { snprintf(num, sizeof num, "%d", (v)); ADD(flag); ADD(num); } while (0)
    ADD(exe);
    ADD("--model");
    ADD(model);
    ADD("--host");
    ADD(sv->host);
    ADD_INT("--port", sv->port);
    if (sv->cache_dir) {
        ADD("--cache-dir");
        ADD(sv->cache_dir);
    }
    if (sv->ctx_size > 0)
        ADD_INT("--ctx-size", sv->ctx_size);
    if (sv->parallel > 0)
        ADD_INT("--parallel", sv->parallel);
    if (sv->threads > 0)
        ADD_INT("--threads", sv->threads);
    ADD_INT("--api-key-fd", KEY_FD);
    ADD(reset ? "--reset" : "--resume");
    for (size_t i = 0; i < sv->n_extra; i++)
        ADD(sv->extra[i]);
#undef ADD
#undef ADD_INT
    argv[n] = NULL;
    if (nomem) {
        for (size_t i = 0; i < n; i++)
            free(argv[i]);
        free(argv);
        return NULL;
    }
    return argv;
}

static void free_argv(char **argv)
{
    if (!argv)
        return;
    for (char **a = argv; *a; a++)
        free(*a);
    free(argv);
}

static void proc_free(proc_t *p)
{
    if (!p)
        return;
    close_fd(&p->pidfd);
    close_fd(&p->out_r);
    close_fd(&p->quit_r);
    close_fd(&p->quit_w);
    free(p);
}

/* A pipe that holds `key` and a newline, its write end closed: the engine
 * reads it to the end. Returns the read end (close-on-exec), or -1 with
 * errno set. */
static int key_pipe(const char *key)
{
    int kp[2];
    if (pipe2(kp, O_CLOEXEC) != 0)
        return -1;
    char line[SUPERVISOR_KEY_MAX + 2];
    size_t len = strlen(key);
    if (len > SUPERVISOR_KEY_MAX) {
        close(kp[0]);
        close(kp[1]);
        errno = EINVAL;
        return -1;
    }
    memcpy(line, key, len);
    line[len++] = '\n';
    /* Far below the pipe's capacity: one write, never blocks. */
    ssize_t k = write(kp[1], line, len);
    int err = errno;
    explicit_bzero(line, sizeof line);
    close(kp[1]);
    if (k != (ssize_t)len) {
        close(kp[0]);
        errno = k < 0 ? err : EIO;
        return -1;
    }
    return kp[0];
}

/* Fork and exec argv with output into a new pipe and `key` (may be NULL)
 * on KEY_FD; start the logger. Returns SUPERVISOR_OK with *out (not yet
 * registered), or ESPAWN/ENOMEM with why in msg (nothing left behind). */
static int proc_spawn(supervisor_t *sv, char **argv, const char *key, logbook_run_t *run,
                      proc_t **out, char *msg, size_t msg_n)
{
    *out = NULL;
    char exe[EXE_PATH_MAX];
    int err = resolve_exe(argv[0], exe, sizeof exe);
    if (err) {
        snprintf(msg, msg_n, "cannot find %s: %s", argv[0], strerror(err));
        return SUPERVISOR_ESPAWN;
    }
    proc_t *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(msg, msg_n, "out of memory");
        return SUPERVISOR_ENOMEM;
    }
    p->sv = sv;
    p->pidfd = p->out_r = p->quit_r = p->quit_w = -1;
    p->run = run;
    int out_p[2] = { -1, -1 }, exec_p[2] = { -1, -1 }, quit_p[2] = { -1, -1 };
    int key_r = -1;
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0 || pipe2(out_p, O_CLOEXEC) != 0 || pipe2(exec_p, O_CLOEXEC) != 0 ||
        pipe2(quit_p, O_CLOEXEC) != 0 || (key && (key_r = key_pipe(key)) < 0)) {
        err = errno;
        close_fd(&devnull);
        close_fd(&key_r);
        for (int i = 0; i < 2; i++) {
            close_fd(&out_p[i]);
            close_fd(&exec_p[i]);
            close_fd(&quit_p[i]);
        }
        free(p);
        snprintf(msg, msg_n, "cannot create pipes: %s", strerror(err));
        return SUPERVISOR_ESPAWN;
    }
    p->out_r = out_p[0];
    p->quit_r = quit_p[0];
    p->quit_w = quit_p[1];
    plan_t plan = { exe, argv, environ, devnull, out_p[1], exec_p[1], key_r, getpid() };

    /* No handler of the application may run in the child before exec. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0)
        child_exec(&plan);
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close_fd(&devnull);
    close_fd(&key_r);
    close_fd(&out_p[1]);
    close_fd(&exec_p[1]);
    if (pid < 0) {
        close_fd(&exec_p[0]);
        proc_free(p);
        snprintf(msg, msg_n, "fork failed: %s", strerror(err));
        return SUPERVISOR_ESPAWN;
    }
    setpgid(pid, pid);   /* also here: no window where a group kill misses */
    p->pid = pid;
    p->create_time = wall_now();
    p->spawn_ms = mono_ms();
    p->cpu_ms = p->spawn_ms;

    /* EOF on the exec pipe: execve succeeded; an int: it failed. */
    int child_errno = 0;
    ssize_t k;
    do
        k = read(exec_p[0], &child_errno, sizeof child_errno);
    while (k < 0 && errno == EINTR);
    close_fd(&exec_p[0]);
    if (k == (ssize_t)sizeof child_errno) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        proc_free(p);
        snprintf(msg, msg_n, "cannot run %s: %s", exe, strerror(child_errno));
        return SUPERVISOR_ESPAWN;
    }
    p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);   /* -1: the reaper ticks */
    err = pthread_create(&p->logger, NULL, logger_main, p);
    if (err) {
        kill(-pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        proc_free(p);
        snprintf(msg, msg_n, "cannot start the log reader: %s", strerror(err));
        return SUPERVISOR_ESPAWN;
    }
    *out = p;
    return SUPERVISOR_OK;
}

/* ---- the reaper ---- */

static bool child_exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
        return errno == ECHILD;
    return si.si_pid == pid;
}

/* The kept output lines, oldest first, one per line. Lock held. */
static void tail_copy(const proc_t *p, char *buf, size_t n)
{
    buf[0] = '\0';
    unsigned first = (p->tail_next + TAIL_LINES - p->tail_count) % TAIL_LINES;
    for (unsigned i = 0; i < p->tail_count; i++)
        msg_append(buf, n, p->tail[(first + i) % TAIL_LINES]);
}

/* Prune restart attempts older than the window. Lock held. */
static void restart_prune(supervisor_t *sv, uint64_t now)
{
    size_t k = 0;
    for (size_t i = 0; i < sv->n_restart_hist; i++)
        if (now - sv->restart_hist[i] < sv->restart_window_ms)
            sv->restart_hist[k++] = sv->restart_hist[i];
    sv->n_restart_hist = k;
}

/* After a crash or a failed automatic restart: schedule the next attempt
 * if the policy allows, and set state and message. `what` describes what
 * happened. Lock held. */
static void restart_schedule(supervisor_t *sv, const char *what)
{
    sv->state = SUPERVISOR_CRASHED;
    if (!sv->restart_on_crash || sv->quit) {
        str_copy(sv->message, sizeof sv->message, what);
        return;
    }
    uint64_t now = mono_ms();
    restart_prune(sv, now);
    size_t n = sv->n_restart_hist;
    if (n >= sv->restart_max) {
        snprintf(sv->message, sizeof sv->message,
                 "%s; not restarting again: %zu restarts in the last %u s", what, n,
                 sv->restart_window_ms / 1000);
        log_error("supervisor: %s", sv->message);
        return;
    }
    uint64_t delay = sv->backoff_ms;
    for (size_t i = 0; i < n && delay < BACKOFF_CAP_MS; i++)
        delay *= 2;
    if (delay > BACKOFF_CAP_MS)
        delay = BACKOFF_CAP_MS;
    sv->restart_due_ms = now + (delay ? delay : 1);
    snprintf(sv->message, sizeof sv->message, "%s; restarting in %.1f s (attempt %zu of %u)",
             what, (double)delay / 1000.0, n + 1, sv->restart_max);
    log_warn("supervisor: %s", sv->message);
}

/* Handle the exit of p = sv->proc: reap, finish its log, record, decide.
 * Called and returns with the lock held (released in between). */
static void handle_exit(supervisor_t *sv, proc_t *p)
{
    /* The leader is a zombie: its group id is still ours. */
    kill(-p->pid, SIGKILL);
    int ws = 0;
    pid_t w;
    do
        w = waitpid(p->pid, &ws, 0);
    while (w < 0 && errno == EINTR);
    if (w != p->pid)
        log_error("supervisor: cannot reap pid %d: %s (is SIGCHLD ignored?)", (int)p->pid,
                  strerror(errno));
    p->reaped = true;
    p->wstatus = ws;
    bool crash = !p->expected && !p->starting;
    pthread_mutex_unlock(&sv->lock);

    char how[96];
    describe_exit(ws, how, sizeof how);
    ssize_t ignored = write(p->quit_w, "q", 1);
    (void)ignored;
    pthread_join(p->logger, NULL);
    logbook_run_printf(p->run, "kvchat: model server (pid %d) %s%s", (int)p->pid, how,
                       crash ? " unexpectedly" : "");
    logbook_run_close(p->run);
    p->run = NULL;
    if (crash)
        log_error("supervisor: model server (pid %d) %s unexpectedly", (int)p->pid, how);
    else
        log_info("supervisor: model server (pid %d) %s", (int)p->pid, how);

    pthread_mutex_lock(&sv->lock);
    sv->proc = NULL;
    sv->exit_gen = p->gen;
    sv->exit_status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    sv->exit_signal = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
    sv->exit_wstatus = ws;
    tail_copy(p, sv->exit_tail, sizeof sv->exit_tail);
    supervisor_event_t ev = { .type = SUPERVISOR_EVENT_CRASHED, .pid = (int)p->pid,
                              .port = p->port, .exit_status = sv->exit_status,
                              .signal = sv->exit_signal };
    char what[160];
    if (crash) {
        snprintf(what, sizeof what, "The model server %s", how);
        restart_schedule(sv, what);
    }
    pthread_cond_broadcast(&sv->cond);
    proc_free(p);
    if (crash && sv->on_event) {
        char message[sizeof sv->message];
        str_copy(message, sizeof message, sv->message);
        ev.message = message;
        pthread_mutex_unlock(&sv->lock);
        sv->on_event(sv, &ev, sv->user);
        pthread_mutex_lock(&sv->lock);
    }
}

static void *reaper_main(void *arg)
{
    supervisor_t *sv = arg;
    pthread_mutex_lock(&sv->lock);
    while (!sv->reaper_quit) {
        spawn_req_t *req = sv->spawn_req;
        if (req) {
            sv->spawn_req = NULL;
            pthread_mutex_unlock(&sv->lock);
            req->rc = proc_spawn(sv, req->argv, req->key, req->run, &req->proc, req->msg,
                                 sizeof req->msg);
            pthread_mutex_lock(&sv->lock);
            req->done = true;
            pthread_cond_broadcast(&sv->cond);
            continue;
        }
        proc_t *p = sv->proc;
        pthread_mutex_unlock(&sv->lock);
        /* Only this thread frees a proc_t, so p stays valid here. */
        struct pollfd fds[2] = { { .fd = sv->wake_r, .events = POLLIN } };
        nfds_t nfds = 1;
        int timeout = -1;
        if (p && p->pidfd >= 0)
            fds[nfds++] = (struct pollfd){ .fd = p->pidfd, .events = POLLIN };
        else if (p)
            timeout = TICK_MS;
        int k = poll(fds, nfds, timeout);
        if (k > 0 && fds[0].revents) {
            char drain[64];
            ssize_t ignored = read(sv->wake_r, drain, sizeof drain);
            (void)ignored;
        }
        pthread_mutex_lock(&sv->lock);
        if (p && sv->proc == p && child_exited(p->pid))
            handle_exit(sv, p);
    }
    pthread_mutex_unlock(&sv->lock);
    return NULL;
}

/* ---- stopping ---- */

/* Stop sv->proc if there is one: SIGTERM to the group, grace, SIGKILL,
 * wait for the reaper. op_busy held, lock not held. Sets *stopped when a
 * process was there, *ms to the time it took. Returns SUPERVISOR_OK or
 * SUPERVISOR_ESTOP. */
static int stop_current(supervisor_t *sv, bool *stopped, int *pid_out, unsigned *ms)
{
    *stopped = false;
    *ms = 0;
    pthread_mutex_lock(&sv->lock);
    proc_t *p = sv->proc;
    if (!p) {
        pthread_mutex_unlock(&sv->lock);
        return SUPERVISOR_OK;
    }
    *stopped = true;
    if (pid_out)
        *pid_out = (int)p->pid;
    uint64_t gen = p->gen, t0 = mono_ms();
    p->expected = true;
    if (!p->reaped)
        kill(-p->pid, SIGTERM);
    uint64_t deadline = t0 + sv->grace_ms;
    while (sv->proc && sv->proc->gen == gen && mono_ms() < deadline)
        cond_wait_until(sv, deadline);
    int rc = SUPERVISOR_OK;
    if (sv->proc && sv->proc->gen == gen) {
        p = sv->proc;
        log_warn("supervisor: model server (pid %d) still running %u ms after SIGTERM; "
                 "sending SIGKILL", (int)p->pid, sv->grace_ms);
        if (!p->reaped)
            kill(-p->pid, SIGKILL);
        deadline = mono_ms() + KILL_WAIT_MS;
        while (sv->proc && sv->proc->gen == gen && mono_ms() < deadline)
            cond_wait_until(sv, deadline);
        if (sv->proc && sv->proc->gen == gen) {
            log_error("supervisor: model server (pid %d) does not die", (int)p->pid);
            rc = SUPERVISOR_ESTOP;
        }
    }
    pthread_mutex_unlock(&sv->lock);
    *ms = (unsigned)(mono_ms() - t0);
    return rc;
}

static void emit(supervisor_t *sv, const supervisor_event_t *ev)
{
    if (sv->on_event)
        sv->on_event(sv, ev, sv->user);
}

/* ---- starting ---- */

/* GET /health. Returns 0 with *status (HTTP code) and body (NUL-terminated,
 * possibly cut) when a status line came back, -1 otherwise. */
static int health_get(const char *host, int port, unsigned timeout_ms, int *status, char *body,
                      size_t body_n)
{
    *status = 0;
    body[0] = '\0';
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, port_s, &hints, &res) != 0)
        return -1;
    uint64_t deadline = mono_ms() + timeout_ms;
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            struct pollfd pf = { .fd = fd, .events = POLLOUT };
            uint64_t now = mono_ms();
            int left = now < deadline ? (int)(deadline - now) : 0;
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (poll(&pf, 1, left) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                break;
        }
        close_fd(&fd);
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;

    char req[512];
    int rl = strchr(host, ':')
                 ? snprintf(req, sizeof req,
                            "GET /health HTTP/1.1\r\nHost: [%s]:%d\r\nConnection: close\r\n\r\n",
                            host, port)
                 : snprintf(req, sizeof req,
                            "GET /health HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n",
                            host, port);
    if (rl < 0 || (size_t)rl >= sizeof req || send(fd, req, (size_t)rl, MSG_NOSIGNAL) != rl) {
        close(fd);
        return -1;
    }
    char resp[HEALTH_BODY_MAX + 1024];
    size_t got = 0;
    while (got < sizeof resp - 1) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            break;
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        int k = poll(&pf, 1, (int)(deadline - now));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        ssize_t n = recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    resp[got] = '\0';
    int maj, min, code;
    if (sscanf(resp, "HTTP/%d.%d %d", &maj, &min, &code) != 3)
        return -1;
    *status = code;
    const char *b = strstr(resp, "\r\n\r\n");
    if (b)
        str_copy(body, body_n, b + 4);
    return 0;
}

/* From a 503 body: true and the reason when the engine reports a failed
 * start ("status":"error"), false while it is still loading. */
static bool health_failed(const char *body, char *why, size_t n)
{
    const char *open = strchr(body, '{'), *close = strrchr(body, '}');
    if (!open || !close || close < open)
        return false;
    json_t *j = NULL;
    if (json_parse(open, (size_t)(close - open + 1), &j, NULL) != JSON_OK)
        return false;
    const char *status = NULL, *message = NULL;
    bool failed = json_get_string(j, "status", &status, NULL) == JSON_OK &&
                  strcmp(status, "error") == 0;
    if (failed) {
        json_t *err = NULL;
        if (json_get_object(j, "error", &err, NULL) == JSON_OK)
            json_get_string(err, "message", &message, NULL);
        str_copy(why, n, message && *message ? message : "unknown error");
    }
    json_decref(j);
    return failed;
}

/* Fill the common fields of a result. */
static void result_init(supervisor_result_t *out)
{
    memset(out, 0, sizeof *out);
    out->status = "error";
    out->exit_status = -1;
}

static int result_finish(supervisor_result_t *out, int rc)
{
    out->code = rc;
    out->status = rc == SUPERVISOR_OK            ? "success"
                : rc == SUPERVISOR_ESUPERSEDED ? "superseded"
                                               : "error";
    out->timestamp = wall_now();
    return rc;
}

/* A new API key: KEY_BYTES from getrandom(2) as hex into key (size
 * SUPERVISOR_KEY_LEN + 1). Returns 0, or an errno value. */
static int make_key(char *key)
{
    unsigned char raw[KEY_BYTES];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t k = getrandom(raw + got, sizeof raw - got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int err = k < 0 ? errno : EIO;
            explicit_bzero(raw, sizeof raw);
            return err;
        }
        got += (size_t)k;
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        key[2 * i] = hex[raw[i] >> 4];
        key[2 * i + 1] = hex[raw[i] & 15];
    }
    key[2 * sizeof raw] = '\0';
    explicit_bzero(raw, sizeof raw);
    return 0;
}

/* Start an engine. op_busy held; `cancel` is the cancel_seq seen when it
 * was taken: once it changes (a newer command, or supervisor_free) the
 * start gives up with SUPERVISOR_ECANCELED, before spawning or at the next
 * health poll, and stops what it started. Fills *out. */
static int do_start(supervisor_t *sv, bool reset, const char *model_override, bool restart,
                    uint64_t cancel, supervisor_result_t *out)
{
    out->reset = reset;
    /* 1. The old engine goes first. */
    bool stopped = false;
    int old_pid = 0;
    int rc = stop_current(sv, &stopped, &old_pid, &out->stop_ms);
    if (stopped) {
        supervisor_event_t ev = { .type = SUPERVISOR_EVENT_STOPPED, .pid = old_pid,
                                  .exit_status = -1, .message = "stopped for a new start" };
        emit(sv, &ev);
    }
    if (rc) {
        snprintf(out->message, sizeof out->message,
                 "The running model server could not be stopped, so no new one was started.");
        return result_finish(out, rc);
    }

    /* 2. What to run, unless a newer command came meanwhile. */
    pthread_mutex_lock(&sv->lock);
    if (sv->cancel_seq != cancel || sv->quit) {
        sv->state = SUPERVISOR_STOPPED;
        snprintf(sv->message, sizeof sv->message, "%s",
                 stopped ? "Model server stopped" : "Model server is not running");
        str_copy(out->model_name, sizeof out->model_name, sv->model_name);
        pthread_mutex_unlock(&sv->lock);
        snprintf(out->message, sizeof out->message, "The start was cancelled.");
        return result_finish(out, SUPERVISOR_ECANCELED);
    }
    if (model_override) {
        char *path = strdup(model_override);
        char *name = strdup(base_name(model_override));
        if (!path || !name) {
            free(path);
            free(name);
            pthread_mutex_unlock(&sv->lock);
            snprintf(out->message, sizeof out->message, "Out of memory.");
            return result_finish(out, SUPERVISOR_ENOMEM);
        }
        free(sv->model_path);
        free(sv->model_name);
        sv->model_path = path;
        sv->model_name = name;
    }
    str_copy(out->model_name, sizeof out->model_name, sv->model_name);
    out->port = sv->port;
    char **argv = build_argv(sv, sv->exe, sv->model_path, reset);
    char model[PATH_MAX];
    str_copy(model, sizeof model, sv->model_path);
    sv->state = SUPERVISOR_STARTING;
    snprintf(sv->message, sizeof sv->message, "%s the model server (%s)",
             restart ? "Restarting" : "Starting", reset ? "KV cache reset" : "KV cache resumed");
    pthread_mutex_unlock(&sv->lock);

    char fail[1024] = "";
    int wait_rc = SUPERVISOR_OK;
    logbook_run_t *run = NULL;
    proc_t *p = NULL;
    uint64_t gen = 0;
    char key[SUPERVISOR_KEY_MAX + 1];
    int kerr = 0;
    if (sv->fixed_key)
        str_copy(key, sizeof key, sv->fixed_key);
    else
        kerr = make_key(key);
    if (kerr) {
        snprintf(out->message, sizeof out->message,
                 "The model server could not be started: no random bytes for its key: %s.",
                 strerror(kerr));
        rc = SUPERVISOR_ESPAWN;
        goto failed_early;
    }
    if (!argv) {
        snprintf(out->message, sizeof out->message, "Out of memory.");
        rc = SUPERVISOR_ENOMEM;
        goto failed_early;
    }
    buf_t cmd;
    buf_init(&cmd, 64 * 1024);
    for (char **a = argv; *a; a++) {
        if (a != argv)
            buf_puts(&cmd, " ");
        quote_arg(&cmd, *a);
    }
    out->command = buf_steal(&cmd, NULL);

    /* 3. Its log file, then the process. */
    int lr = logbook_run_open(sv->lb, &run);
    if (lr) {
        snprintf(out->message, sizeof out->message,
                 "Cannot create the model server's log file: %s.", logbook_strerror(lr));
        rc = SUPERVISOR_ELOG;
        goto failed_early;
    }
    str_copy(out->log_session, sizeof out->log_session, logbook_run_id(run));
    logbook_run_printf(run, "kvchat: %s the model server: %s", restart ? "restarting" : "starting",
                       out->command ? out->command : argv[0]);
    spawn_req_t req = { .argv = argv, .key = key, .run = run };
    pthread_mutex_lock(&sv->lock);
    sv->spawn_req = &req;
    pthread_mutex_unlock(&sv->lock);
    wake_reaper(sv);
    pthread_mutex_lock(&sv->lock);
    while (!req.done)
        pthread_cond_wait(&sv->cond, &sv->lock);
    pthread_mutex_unlock(&sv->lock);
    rc = req.rc;
    p = req.proc;
    str_copy(fail, sizeof fail, req.msg);
    if (rc) {
        logbook_run_printf(run, "kvchat: %s", fail);
        log_error("supervisor: %s", fail);
        logbook_run_close(run);
        snprintf(out->message, sizeof out->message, "The model server could not be started: %s.",
                 fail);
        goto failed_early;
    }
    out->pid = (int)p->pid;
    log_info("supervisor: %s model server pid %d: %s", restart ? "restarted" : "started",
             (int)p->pid, out->command ? out->command : argv[0]);

    /* 4. Hand it to the reaper, wait for /health. */
    pthread_mutex_lock(&sv->lock);
    p->gen = gen = ++sv->next_gen;
    p->starting = true;
    str_copy(sv->key, sizeof sv->key, key);
    explicit_bzero(key, sizeof key);
    if (sv->port > 0) {
        p->port = sv->port;
        sv->last_port = sv->port;
    }
    sv->proc = p;
    /* Once unlocked, the reaper may reap and free p at any moment (an
     * engine that exits at once): read what is needed now, and touch p
     * below only under the lock after checking sv->proc == p. */
    uint64_t deadline = p->spawn_ms + sv->health_timeout_ms;
    pthread_mutex_unlock(&sv->lock);
    wake_reaper(sv);

    char host[HOST_MAX + 1];
    str_copy(host, sizeof host, connect_host(sv->host));
    char body[HEALTH_BODY_MAX];
    pthread_mutex_lock(&sv->lock);
    for (;;) {
        if (sv->proc != p) {
            wait_rc = SUPERVISOR_EEXITED;
            break;
        }
        if (sv->cancel_seq != cancel || sv->quit) {
            wait_rc = SUPERVISOR_ECANCELED;
            break;
        }
        uint64_t now = mono_ms();
        if (now >= deadline) {
            wait_rc = SUPERVISOR_ETIMEOUT;
            break;
        }
        if (p->listening) {
            int port = p->port;
            unsigned left = (unsigned)(deadline - now);
            pthread_mutex_unlock(&sv->lock);
            int code = 0;
            int hr = health_get(host, port, left < HEALTH_REQ_TIMEOUT_MS ? left
                                                                         : HEALTH_REQ_TIMEOUT_MS,
                                &code, body, sizeof body);
            pthread_mutex_lock(&sv->lock);
            if (sv->proc != p)
                continue;
            if (hr == 0 && code == 200) {
                out->ready_ms = (unsigned)(mono_ms() - p->spawn_ms);
                break;
            }
            if (hr == 0 && code == 503 && health_failed(body, fail, sizeof fail)) {
                wait_rc = SUPERVISOR_EFAILED;
                break;
            }
        }
        now = mono_ms();
        uint64_t next = now + sv->poll_ms;
        cond_wait_until(sv, next < deadline ? next : deadline);
    }
    if (wait_rc == SUPERVISOR_OK) {
        p->starting = false;
        out->port = p->port;
        sv->last_port = p->port;
        sv->state = SUPERVISOR_RUNNING;
        snprintf(sv->message, sizeof sv->message, "Model server is running (%s, ready in %.1f s)",
                 reset ? "KV cache reset" : "KV cache resumed", out->ready_ms / 1000.0);
        str_copy(out->message, sizeof out->message, sv->message);
        pthread_mutex_unlock(&sv->lock);
        logbook_run_printf(run, "kvchat: model server ready on port %d after %u ms", out->port,
                           out->ready_ms);
        free_argv(argv);
        supervisor_event_t ev = { .type = restart ? SUPERVISOR_EVENT_RESTARTED
                                                  : SUPERVISOR_EVENT_STARTED,
                                  .reset = reset, .pid = out->pid, .port = out->port,
                                  .exit_status = -1, .message = out->message };
        emit(sv, &ev);
        return result_finish(out, SUPERVISOR_OK);
    }
    if (p == sv->proc && p->listening)
        out->port = p->port;
    pthread_mutex_unlock(&sv->lock);

    /* 5. It did not come up: make sure it is gone, then say why. */
    if (wait_rc != SUPERVISOR_EEXITED) {
        pthread_mutex_lock(&sv->lock);
        bool ours = sv->proc == p;
        pthread_mutex_unlock(&sv->lock);
        if (ours) {
            const char *why = wait_rc == SUPERVISOR_ETIMEOUT ? "timed out waiting for /health"
                            : wait_rc == SUPERVISOR_EFAILED  ? "reported a start-up failure"
                                                             : "start cancelled";
            logbook_run_printf(run, "kvchat: %s; stopping the model server", why);
        }
        bool s2;
        unsigned ms2;
        if (stop_current(sv, &s2, NULL, &ms2) != SUPERVISOR_OK)
            wait_rc = SUPERVISOR_ESTOP;
    }
    rc = wait_rc;
    pthread_mutex_lock(&sv->lock);
    bool have_exit = sv->exit_gen == gen;
    char tail[sizeof sv->exit_tail] = "";
    int exit_ws = sv->exit_wstatus;
    if (have_exit) {
        out->exit_status = sv->exit_status;
        out->signal = sv->exit_signal;
        str_copy(tail, sizeof tail, sv->exit_tail);
    }
    pthread_mutex_unlock(&sv->lock);
    char how[96] = "";
    if (have_exit)
        describe_exit(exit_ws, how, sizeof how);
    switch (rc) {
    case SUPERVISOR_EEXITED:
        snprintf(out->message, sizeof out->message,
                 "The model server %s during start-up.", how);
        break;
    case SUPERVISOR_EFAILED: {
        struct stat st;
        bool missing = stat(model, &st) != 0;
        snprintf(out->message, sizeof out->message, "The model server could not start: %s%s%s.",
                 fail, missing ? ": " : "", missing ? strerror(errno) : "");
        break;
    }
    case SUPERVISOR_ETIMEOUT:
        if (sv->health_timeout_ms % 1000 == 0)
            snprintf(out->message, sizeof out->message,
                     "The model server did not become ready within %u s and was stopped.",
                     sv->health_timeout_ms / 1000);
        else
            snprintf(out->message, sizeof out->message,
                     "The model server did not become ready within %.1f s and was stopped.",
                     sv->health_timeout_ms / 1000.0);
        break;
    case SUPERVISOR_ECANCELED:
        snprintf(out->message, sizeof out->message, "The start was cancelled.");
        break;
    default:
        snprintf(out->message, sizeof out->message,
                 "The model server did not come up and could not be stopped.");
    }
    if (*tail && rc != SUPERVISOR_ECANCELED) {
        msg_append(out->message, sizeof out->message, "Last output:");
        msg_append(out->message, sizeof out->message, tail);
    }
    log_warn("supervisor: %s", out->message);
    out->pid = 0;
    free_argv(argv);
    pthread_mutex_lock(&sv->lock);
    sv->state = SUPERVISOR_STOPPED;
    str_copy(sv->message, sizeof sv->message, out->message);
    pthread_mutex_unlock(&sv->lock);
    return result_finish(out, rc);

failed_early:
    explicit_bzero(key, sizeof key);
    free_argv(argv);
    log_warn("supervisor: %s", out->message);
    pthread_mutex_lock(&sv->lock);
    sv->state = SUPERVISOR_STOPPED;
    str_copy(sv->message, sizeof sv->message, out->message);
    pthread_mutex_unlock(&sv->lock);
    return result_finish(out, rc);
}

/* ---- commands ---- */

/* What the newest command is, for those it supersedes. */
static const char *cmd_name(cmd_t kind)
{
    switch (kind) {
    case CMD_RESET: return "reset";
    case CMD_RESUME: return "resume";
    case CMD_STOP: return "stop";
    }
    return "stop";
}

/* A command arrives: its ticket supersedes every older command, a start
 * in progress gives up, a pending restart is dropped. Lock held. */
static uint64_t cmd_begin(supervisor_t *sv, cmd_t kind)
{
    uint64_t my = ++sv->cmd_seq;
    sv->cmd_kind = kind;
    sv->user_cmds++;
    sv->cancel_seq++;
    sv->restart_epoch++;
    sv->restart_due_ms = 0;
    pthread_cond_broadcast(&sv->cond);
    return my;
}

/* Wait for the turn of command `my`. Returns true with op_busy taken, or
 * false as soon as a newer command took a ticket. Lock held. */
static bool op_acquire(supervisor_t *sv, uint64_t my)
{
    while (sv->op_busy && sv->cmd_seq == my)
        pthread_cond_wait(&sv->cond, &sv->lock);
    if (sv->cmd_seq != my)
        return false;
    sv->op_busy = true;
    /* A user command starts the restart policy afresh. */
    sv->restarts = 0;
    sv->n_restart_hist = 0;
    sv->restart_due_ms = 0;
    return true;
}

static void op_release(supervisor_t *sv)
{
    sv->op_busy = false;
    pthread_cond_broadcast(&sv->cond);
}

/* Fill *out for a command superseded by the newest one. Lock held. */
static int superseded(supervisor_t *sv, supervisor_result_t *out)
{
    static const char *const what[] = {
        [CMD_RESET] = "to start the model server with an empty KV cache",
        [CMD_RESUME] = "to start the model server keeping its KV cache",
        [CMD_STOP] = "to stop the model server",
    };
    out->superseded = true;
    out->superseded_by = cmd_name(sv->cmd_kind);
    out->pid = 0;
    out->ready_ms = 0;
    str_copy(out->model_name, sizeof out->model_name, sv->model_name);
    snprintf(out->message, sizeof out->message,
             "A later request %s took over before this one finished.", what[sv->cmd_kind]);
    return SUPERVISOR_ESUPERSEDED;
}

/* The end of a command: its result says the state it leaves, and whether
 * it was superseded. Lock held. Returns the final code. */
static int cmd_end(supervisor_t *sv, uint64_t my, supervisor_result_t *out, int rc)
{
    if (rc == SUPERVISOR_ECANCELED && !sv->quit && sv->cmd_seq != my)
        rc = superseded(sv, out);
    sv->user_cmds--;
    out->state = sv->state;
    return result_finish(out, rc);
}

/* ---- the keeper (automatic restarts) ---- */

static void *keeper_main(void *arg)
{
    supervisor_t *sv = arg;
    pthread_mutex_lock(&sv->lock);
    while (!sv->quit) {
        if (!sv->restart_due_ms) {
            pthread_cond_wait(&sv->cond, &sv->lock);
            continue;
        }
        if (mono_ms() < sv->restart_due_ms) {
            cond_wait_until(sv, sv->restart_due_ms);
            continue;
        }
        sv->restart_due_ms = 0;
        if (sv->user_cmds)
            continue;   /* a command is under way: it replaces the restart */
        uint64_t epoch = sv->restart_epoch;
        while (sv->op_busy && !sv->quit && sv->restart_epoch == epoch)
            pthread_cond_wait(&sv->cond, &sv->lock);
        if (sv->quit || sv->restart_epoch != epoch)
            continue;
        sv->op_busy = true;
        uint64_t cancel = sv->cancel_seq;
        restart_prune(sv, mono_ms());
        if (sv->n_restart_hist < RESTART_HISTORY_MAX)
            sv->restart_hist[sv->n_restart_hist++] = mono_ms();
        sv->restarts++;
        pthread_mutex_unlock(&sv->lock);

        supervisor_result_t res;
        result_init(&res);
        int rc = do_start(sv, false, NULL, true, cancel, &res);

        pthread_mutex_lock(&sv->lock);
        if (rc != SUPERVISOR_OK && rc != SUPERVISOR_ECANCELED && !sv->quit &&
            sv->cancel_seq == cancel) {
            char what[512];
            snprintf(what, sizeof what, "Automatic restart failed: %.400s", res.message);
            char *nl = strchr(what, '\n');
            if (nl)
                *nl = '\0';
            restart_schedule(sv, what);
        }
        op_release(sv);
        pthread_mutex_unlock(&sv->lock);
        supervisor_result_cleanup(&res);
        pthread_mutex_lock(&sv->lock);
    }
    pthread_mutex_unlock(&sv->lock);
    return NULL;
}

/* ---- public API ---- */

void supervisor_result_cleanup(supervisor_result_t *res)
{
    if (!res)
        return;
    free(res->command);
    res->command = NULL;
}

static void sv_destroy(supervisor_t *sv)
{
    logbook_free(sv->lb);
    free(sv->exe);
    free(sv->host);
    free(sv->cache_dir);
    free(sv->model_path);
    free(sv->model_name);
    for (size_t i = 0; i < sv->n_extra; i++)
        free(sv->extra[i]);
    free(sv->extra);
    close_fd(&sv->wake_r);
    close_fd(&sv->wake_w);
    explicit_bzero(sv->key, sizeof sv->key);
    if (sv->fixed_key) {
        explicit_bzero(sv->fixed_key, strlen(sv->fixed_key));
        free(sv->fixed_key);
    }
    pthread_cond_destroy(&sv->cond);
    pthread_mutex_destroy(&sv->lock);
    free(sv);
}

int supervisor_new(const supervisor_config_t *cfg, supervisor_t **out)
{
    *out = NULL;
    if (!cfg || !cfg->engine_exe || !*cfg->engine_exe || !cfg->model_path ||
        !*cfg->model_path || !cfg->logs_dir || !*cfg->logs_dir || cfg->port < 0 ||
        cfg->port > 65535 || (cfg->host && strlen(cfg->host) > HOST_MAX))
        return SUPERVISOR_EINVAL;
    if (cfg->api_key && *cfg->api_key) {
        size_t kl = strlen(cfg->api_key);
        if (kl > SUPERVISOR_KEY_MAX)
            return SUPERVISOR_EINVAL;
        for (size_t i = 0; i < kl; i++)
            if (cfg->api_key[i] <= ' ' || cfg->api_key[i] > '~')
                return SUPERVISOR_EINVAL;
    }
    size_t n_extra = 0;
    if (cfg->extra_args) {
        /* getopt_long_only takes one dash as well as two */
        for (; cfg->extra_args[n_extra]; n_extra++) {
            const char *a = cfg->extra_args[n_extra];
            if (a[0] == '-' && a[1] == '-')
                a++;
            if (strncmp(a, "-log-file", 9) == 0 || strncmp(a, "-api-key", 8) == 0)
                return SUPERVISOR_EINVAL;
        }
    }
    supervisor_t *sv = calloc(1, sizeof *sv);
    if (!sv)
        return SUPERVISOR_ENOMEM;
    sv->wake_r = sv->wake_w = -1;
    pthread_mutex_init(&sv->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sv->cond, &ca);
    pthread_condattr_destroy(&ca);

    bool nomem = false;
    sv->exe = dup_or_null(cfg->engine_exe, &nomem);
    sv->host = dup_or_null(cfg->host ? cfg->host : "127.0.0.1", &nomem);
    sv->cache_dir = dup_or_null(cfg->cache_dir, &nomem);
    sv->model_path = dup_or_null(cfg->model_path, &nomem);
    sv->fixed_key = cfg->api_key && *cfg->api_key ? dup_or_null(cfg->api_key, &nomem) : NULL;
    sv->model_name = dup_or_null(cfg->model_name && *cfg->model_name ? cfg->model_name
                                                                     : base_name(cfg->model_path),
                                 &nomem);
    sv->extra = calloc(n_extra + 1, sizeof *sv->extra);
    if (!sv->extra)
        nomem = true;
    for (size_t i = 0; sv->extra && i < n_extra; i++) {
        sv->extra[i] = dup_or_null(cfg->extra_args[i], &nomem);
        sv->n_extra = i + 1;
    }
    sv->port = cfg->port;
    sv->last_port = cfg->port;
    sv->ctx_size = cfg->ctx_size;
    sv->parallel = cfg->parallel;
    sv->threads = cfg->threads;
    sv->health_timeout_ms = cfg->health_timeout_ms ? cfg->health_timeout_ms : 120000;
    sv->poll_ms = cfg->poll_interval_ms ? cfg->poll_interval_ms : 250;
    sv->restart_on_crash = cfg->restart_on_crash;
    sv->restart_max = cfg->restart_max;
    if (sv->restart_max > RESTART_HISTORY_MAX)
        sv->restart_max = RESTART_HISTORY_MAX;
    sv->restart_window_ms = cfg->restart_window_ms;
    sv->backoff_ms = cfg->restart_backoff_ms;
    sv->grace_ms = cfg->stop_grace_ms;
    sv->on_event = cfg->on_event;
    sv->user = cfg->user;
    sv->state = SUPERVISOR_STOPPED;
    snprintf(sv->message, sizeof sv->message, "Model server is not running");
    if (nomem) {
        sv_destroy(sv);
        return SUPERVISOR_ENOMEM;
    }

    logbook_config_t lc;
    logbook_config_default(&lc);
    lc.dir = cfg->logs_dir;
    lc.keep = cfg->log_keep;
    int lr = logbook_new(&lc, &sv->lb);
    if (lr) {
        sv_destroy(sv);
        return lr == LOGBOOK_ENOMEM ? SUPERVISOR_ENOMEM
             : lr == LOGBOOK_EINVAL ? SUPERVISOR_EINVAL
                                    : SUPERVISOR_ELOG;
    }
    int wp[2];
    if (pipe2(wp, O_CLOEXEC | O_NONBLOCK) != 0) {
        sv_destroy(sv);
        return SUPERVISOR_ENOMEM;
    }
    sv->wake_r = wp[0];
    sv->wake_w = wp[1];
    if (pthread_create(&sv->reaper, NULL, reaper_main, sv) != 0) {
        sv_destroy(sv);
        return SUPERVISOR_ENOMEM;
    }
    sv->reaper_started = true;
    if (pthread_create(&sv->keeper, NULL, keeper_main, sv) != 0) {
        supervisor_free(sv);
        return SUPERVISOR_ENOMEM;
    }
    sv->keeper_started = true;
    *out = sv;
    return SUPERVISOR_OK;
}

logbook_t *supervisor_logbook(supervisor_t *sv) { return sv ? sv->lb : NULL; }

int supervisor_start(supervisor_t *sv, bool reset, const char *model_override,
                     supervisor_result_t *out)
{
    result_init(out);
    out->reset = reset;
    if (!sv || (model_override && !*model_override)) {
        snprintf(out->message, sizeof out->message, "Invalid argument.");
        return result_finish(out, SUPERVISOR_EINVAL);
    }
    pthread_mutex_lock(&sv->lock);
    if (sv->quit) {
        str_copy(out->model_name, sizeof out->model_name, sv->model_name);
        out->state = sv->state;
        pthread_mutex_unlock(&sv->lock);
        snprintf(out->message, sizeof out->message, "kvchat is shutting down.");
        return result_finish(out, SUPERVISOR_ECANCELED);
    }
    uint64_t my = cmd_begin(sv, reset ? CMD_RESET : CMD_RESUME);
    if (!op_acquire(sv, my)) {
        int rc = cmd_end(sv, my, out, superseded(sv, out));
        pthread_mutex_unlock(&sv->lock);
        return rc;
    }
    uint64_t cancel = sv->cancel_seq;
    pthread_mutex_unlock(&sv->lock);

    int rc = do_start(sv, reset, model_override, false, cancel, out);

    pthread_mutex_lock(&sv->lock);
    op_release(sv);
    rc = cmd_end(sv, my, out, rc);
    pthread_mutex_unlock(&sv->lock);
    return rc;
}

int supervisor_stop(supervisor_t *sv, supervisor_result_t *out)
{
    result_init(out);
    if (!sv) {
        snprintf(out->message, sizeof out->message, "Invalid argument.");
        return result_finish(out, SUPERVISOR_EINVAL);
    }
    pthread_mutex_lock(&sv->lock);
    bool was_starting = sv->state == SUPERVISOR_STARTING;
    uint64_t my = cmd_begin(sv, CMD_STOP);
    if (!op_acquire(sv, my)) {
        int rc = cmd_end(sv, my, out, superseded(sv, out));
        pthread_mutex_unlock(&sv->lock);
        return rc;
    }
    str_copy(out->model_name, sizeof out->model_name, sv->model_name);
    out->port = sv->last_port;
    pthread_mutex_unlock(&sv->lock);

    bool stopped = false;
    int pid = 0;
    int rc = stop_current(sv, &stopped, &pid, &out->stop_ms);

    pthread_mutex_lock(&sv->lock);
    if (rc == SUPERVISOR_OK) {
        sv->state = SUPERVISOR_STOPPED;
        /* A start this stop superseded may have stopped its engine itself. */
        snprintf(sv->message, sizeof sv->message, "%s",
                 stopped        ? "Model server stopped"
                 : was_starting ? "Model server stopped; its start was cancelled"
                                : "Model server is not running");
    } else {
        snprintf(sv->message, sizeof sv->message, "The model server could not be stopped");
    }
    str_copy(out->message, sizeof out->message, sv->message);
    pthread_mutex_unlock(&sv->lock);
    if (stopped && rc == SUPERVISOR_OK) {
        log_info("supervisor: model server (pid %d) stopped in %u ms", pid, out->stop_ms);
        supervisor_event_t ev = { .type = SUPERVISOR_EVENT_STOPPED, .pid = pid,
                                  .exit_status = -1, .message = out->message };
        emit(sv, &ev);
    }
    pthread_mutex_lock(&sv->lock);
    op_release(sv);
    /* A stop that began finishes: it is never reported as superseded. */
    sv->user_cmds--;
    out->state = sv->state;
    pthread_mutex_unlock(&sv->lock);
    return result_finish(out, rc);
}

void supervisor_free(supervisor_t *sv)
{
    if (!sv)
        return;
    pthread_mutex_lock(&sv->lock);
    sv->quit = true;
    sv->cancel_seq++;
    sv->restart_epoch++;
    sv->restart_due_ms = 0;
    pthread_cond_broadcast(&sv->cond);
    pthread_mutex_unlock(&sv->lock);
    if (sv->keeper_started)
        pthread_join(sv->keeper, NULL);

    supervisor_result_t res;
    supervisor_stop(sv, &res);
    supervisor_result_cleanup(&res);

    pthread_mutex_lock(&sv->lock);
    sv->reaper_quit = true;
    bool left = sv->proc != NULL;
    pthread_mutex_unlock(&sv->lock);
    wake_reaper(sv);
    if (sv->reaper_started)
        pthread_join(sv->reaper, NULL);
    if (left) {
        /* Only after a failed SIGKILL (a process stuck in the kernel):
         * leave its bookkeeping rather than free what the logger uses. */
        log_error("supervisor: freed while the model server could not be stopped");
        return;
    }
    sv_destroy(sv);
}

/* Resident bytes of pid, or 0. */
static uint64_t proc_rss(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    unsigned long long size = 0, resident = 0;
    int k = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    if (k != 2)
        return 0;
    long page = sysconf(_SC_PAGESIZE);
    return (uint64_t)resident * (uint64_t)(page > 0 ? page : 4096);
}

/* utime + stime of pid in clock ticks; false if unreadable. */
static bool proc_cpu_ticks(pid_t pid, uint64_t *ticks)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields start after
     * the last ')'. Field 3 is the state; utime and stime are 14 and 15. */
    char *s = strrchr(buf, ')');
    if (!s)
        return false;
    unsigned long long ut = 0, st = 0;
    if (sscanf(s + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return false;
    *ticks = ut + st;
    return true;
}

int supervisor_status(supervisor_t *sv, supervisor_status_t *out)
{
    memset(out, 0, sizeof *out);
    out->status = supervisor_state_name(SUPERVISOR_STOPPED);
    if (!sv)
        return SUPERVISOR_EINVAL;
    pthread_mutex_lock(&sv->lock);
    out->state = sv->state;
    out->status = supervisor_state_name(sv->state);
    str_copy(out->message, sizeof out->message, sv->message);
    str_copy(out->model_name, sizeof out->model_name, sv->model_name);
    out->restarts = sv->restarts;
    out->port = sv->last_port;
    proc_t *p = sv->proc;
    if (p && !p->reaped) {
        /* Not reaped, so the pid is still this process. */
        out->pid = (int)p->pid;
        if (p->listening || sv->port > 0)
            out->port = p->port;
        out->create_time = p->create_time;
        out->memory_usage = proc_rss(p->pid);
        uint64_t ticks;
        uint64_t now = mono_ms();
        if (proc_cpu_ticks(p->pid, &ticks)) {
            if (now - p->cpu_ms >= 50) {
                long hz = sysconf(_SC_CLK_TCK);
                double secs = (double)(ticks - p->cpu_ticks) / (double)(hz > 0 ? hz : 100);
                p->cpu_percent = secs * 100000.0 / (double)(now - p->cpu_ms);
                p->cpu_ticks = ticks;
                p->cpu_ms = now;
            }
            out->cpu_percent = p->cpu_percent;
        }
    }
    pthread_mutex_unlock(&sv->lock);
    out->last_updated = wall_now();
    return SUPERVISOR_OK;
}

int supervisor_base_url(supervisor_t *sv, char *buf, size_t n)
{
    if (!sv || !buf || n == 0)
        return SUPERVISOR_EINVAL;
    pthread_mutex_lock(&sv->lock);
    int port = sv->last_port;
    if (sv->proc && sv->proc->listening)
        port = sv->proc->port;
    pthread_mutex_unlock(&sv->lock);
    const char *host = connect_host(sv->host);
    int k = snprintf(buf, n, strchr(host, ':') ? "http://[%s]:%d" : "http://%s:%d", host, port);
    if (k < 0 || (size_t)k >= n)
        return SUPERVISOR_EINVAL;
    return SUPERVISOR_OK;
}

size_t supervisor_api_key(supervisor_t *sv, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return 0;
    buf[0] = '\0';
    if (!sv)
        return 0;
    pthread_mutex_lock(&sv->lock);
    size_t len = strlen(sv->key);
    if (len < cap) {
        memcpy(buf, sv->key, len + 1);
    } else {
        len = 0;
    }
    pthread_mutex_unlock(&sv->lock);
    return len;
}

size_t supervisor_api_key_source(void *sv, char *buf, size_t cap)
{
    return supervisor_api_key(sv, buf, cap);
}
