/* supervisor.h — run kvchat-engine (the local model server) as kvchat's child.
 *
 * One supervisor_t runs at most one engine process at a time:
 *
 *  - Start: any running engine is stopped first; then the engine is started
 *    (fork/exec, its own process group, stdin /dev/null, stdout and stderr
 *    into one pipe, its API key on descriptor 3, every other descriptor
 *    closed) with --reset or --resume, and supervisor_start() waits until
 *    GET /health answers 200, bounded by health_timeout_ms. The engine is
 *    "up" only after it printed its "listening on http://HOST:PORT" line,
 *    so a stale server on the same port cannot pass for it (that line also
 *    tells the port when port 0 asks the engine to pick one). An engine
 *    whose model fails to load stays up and says so on /health (503,
 *    "status":"error"); the supervisor then stops it and reports the
 *    reason. An engine that exits during start-up is reported with its exit
 *    status and last output lines.
 *  - Key: every start (automatic restarts too) makes a new API key, 32
 *    random bytes from getrandom(2) as 64 hex digits (unless the config
 *    gives a fixed one, for operators who call the engine themselves). The
 *    engine reads it from an inherited pipe (--api-key-fd 3), so it is
 *    never on a command line (ps) nor in an environment
 *    (/proc/PID/environ), and requires it on every route but /health.
 *    supervisor_api_key() gives it to the app's calls to the engine. It is
 *    never logged.
 *  - Logs: a logger thread per process reads the pipe into a new logbook run
 *    (logbook.h), one file per process; the supervisor adds its own lines
 *    ("kvchat: engine exited (signal 9)") to the same file.
 *  - Stop: SIGTERM to the process group, up to stop_grace_ms, then SIGKILL.
 *    Should kvchat itself die, even by SIGKILL, the engine gets SIGTERM
 *    (Linux parent-death signal; the supervisor's own thread forks, so the
 *    application's threads may come and go), so no orphan keeps the port.
 *  - Crashes: a reaper thread notices any exit (pidfd; a 100 ms tick where
 *    pidfds are missing), reaps the child and kills what is left of its
 *    group. An exit nobody asked for is a crash: it is logged (app log and
 *    the run's file), status becomes "crashed", and if restart_on_crash is
 *    set the engine is started again with --resume after a backoff
 *    (restart_backoff_ms, doubled per recent restart, at most 30 s), at most
 *    restart_max times per restart_window_ms; beyond that it stays crashed.
 *    A restart that fails to come up counts as an attempt.
 *
 * Threads and serialization:
 *  - supervisor_status(), supervisor_base_url(), supervisor_api_key() and
 *    supervisor_logbook() may be called from any thread at any time, also
 *    while a start is waiting for the engine; they never wait for one.
 *  - supervisor_start() and supervisor_stop() are commands, and the last
 *    command wins: any number may be called at once from any threads, none
 *    is refused because another runs, and one is carried out at a time.
 *    Each takes a ticket when called; a newer ticket supersedes every
 *    older command that has not finished:
 *      - an older command still waiting for its turn returns at once;
 *      - an older start in progress gives up at its next step: it stops
 *        the engine it started (or, if it was still stopping the previous
 *        engine, finishes that and starts nothing) and returns;
 *      - an older stop in progress finishes (the newer command would have
 *        to stop the engine first anyway) and reports success.
 *    A superseded command returns SUPERVISOR_ESUPERSEDED with
 *    out->superseded set and out->superseded_by naming the newest command;
 *    it never waits for the newer one. Every engine it started is stopped
 *    and reaped before it returns (a start notices a newer command within
 *    one health poll: 2 s at most). A user command also cancels an
 *    automatic restart, pending or in progress.
 *  - on_event is called from the thread that caused the event (a start or
 *    stop caller, the reaper, the restart thread, or supervisor_free),
 *    without the supervisor's state lock but possibly while a command is
 *    being carried out: it may call supervisor_status/base_url/api_key/
 *    logbook, and must not call supervisor_start, _stop or _free.
 *
 * Process requirements (as for extract/runner.h): the application must not
 * set SIGCHLD to SIG_IGN nor reap children it did not start
 * (waitpid(-1, ...)): either takes the exit status away. SIGPIPE should be
 * ignored by the application (the health check writes to sockets with
 * MSG_NOSIGNAL anyway). All descriptors the supervisor opens are
 * close-on-exec; no zombie is left on any path once the reaper ran.
 */
#ifndef KVCHAT_APP_SUPERVISOR_H
#define KVCHAT_APP_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/model/logbook.h"

#define SUPERVISOR_KEY_LEN 64       /* a key of the supervisor's making: hex digits */
#define SUPERVISOR_KEY_MAX 512      /* the longest key (as the engine's --api-key-fd) */

enum {
    SUPERVISOR_OK = 0,
    SUPERVISOR_EINVAL = -1,     /* bad config or argument */
    SUPERVISOR_ENOMEM = -2,
    SUPERVISOR_ESPAWN = -3,     /* pipes, fork or exec failed (message says why) */
    SUPERVISOR_EEXITED = -4,    /* the engine exited during start-up */
    SUPERVISOR_EFAILED = -5,    /* the engine reported a start-up failure on
                                   /health (e.g. the model cannot be loaded) */
    SUPERVISOR_ETIMEOUT = -6,   /* not ready within health_timeout_ms; killed */
    SUPERVISOR_ESUPERSEDED = -7,/* a later start or stop took over before this one
                                   finished (see "Threads and serialization") */
    SUPERVISOR_ECANCELED = -8,  /* supervisor_free cancelled the start */
    SUPERVISOR_ELOG = -9,       /* the run's log file cannot be created */
    SUPERVISOR_ESTOP = -10,     /* the process did not go away even after SIGKILL */
};

/* Returns a static English description of a SUPERVISOR_* code. */
const char *supervisor_strerror(int rc);

typedef struct supervisor supervisor_t;

typedef enum {
    SUPERVISOR_STOPPED = 0,
    SUPERVISOR_STARTING,
    SUPERVISOR_RUNNING,
    SUPERVISOR_CRASHED,
} supervisor_state_t;

/* "stopped", "starting", "running", "crashed". */
const char *supervisor_state_name(supervisor_state_t st);

typedef enum {
    SUPERVISOR_EVENT_STARTED,   /* a start asked for by the user is ready */
    SUPERVISOR_EVENT_STOPPED,   /* an engine was stopped on request (also the
                                   old one stopped by a start) */
    SUPERVISOR_EVENT_CRASHED,   /* an engine exited unexpectedly */
    SUPERVISOR_EVENT_RESTARTED, /* an automatic restart (--resume) is ready */
} supervisor_event_type_t;

typedef struct {
    supervisor_event_type_t type;
    bool reset;                 /* STARTED: the engine was started with --reset
                                   (every KV cache entry is gone) */
    int pid;
    int port;
    int exit_status;            /* CRASHED: exit status, or -1 */
    int signal;                 /* CRASHED: terminating signal, or 0 */
    const char *message;        /* borrowed for the call only */
} supervisor_event_t;

typedef void (*supervisor_event_fn)(supervisor_t *sv, const supervisor_event_t *ev, void *user);

typedef struct {
    const char *engine_exe;     /* path to kvchat-engine (required) */
    const char *model_path;     /* GGUF file (required) */
    const char *model_name;     /* display name; NULL = the model file's name */
    const char *host;           /* listen address; default "127.0.0.1" */
    int port;                   /* default 13141; 0 = the engine picks a free one */
    const char *cache_dir;      /* --cache-dir; NULL = the engine's default */
    int ctx_size;               /* --ctx-size; 0 = the engine's default */
    int parallel;               /* --parallel; 0 = the engine's default */
    int threads;                /* --threads; 0 = the engine's default */
    const char *const *extra_args; /* NULL-terminated, appended last; NULL = none.
                                   May contain neither --log-file (the log
                                   must come through the pipe) nor
                                   --api-key or --api-key-fd (the supervisor
                                   keys the engine). */
    const char *api_key;        /* the engine's key for every start; NULL or "" =
                                   a new random one at every start (the
                                   default, and the safe choice). 1 to
                                   SUPERVISOR_KEY_MAX printable ASCII
                                   characters without spaces */
    const char *logs_dir;       /* where run logs go (required) */
    unsigned log_keep;          /* run files kept; default 50; 0 = all */
    unsigned health_timeout_ms; /* default 120000 */
    unsigned poll_interval_ms;  /* health polls during start; default 250 */
    bool restart_on_crash;      /* default true */
    unsigned restart_max;       /* default 3 ... */
    unsigned restart_window_ms; /* ... per 300000 (5 min) */
    unsigned restart_backoff_ms;/* first delay, default 1000 */
    unsigned stop_grace_ms;     /* SIGTERM to SIGKILL; default 10000 */
    supervisor_event_fn on_event; /* may be NULL */
    void *user;                 /* passed to on_event */
} supervisor_config_t;

/* Fill *cfg with the defaults above (required fields NULL). */
void supervisor_config_default(supervisor_config_t *cfg);

/* Create a supervisor (nothing is started). Every string and the
 * extra_args array are copied. Opens the logbook on logs_dir and starts
 * the reaper and restart threads. Returns SUPERVISOR_OK and stores the
 * supervisor in *out (free with supervisor_free), or SUPERVISOR_EINVAL
 * (missing exe/model/logs_dir, --log-file or an API key among extra_args,
 * a malformed api_key, port out of range), SUPERVISOR_ELOG, SUPERVISOR_ENOMEM, with *out NULL. */
int supervisor_new(const supervisor_config_t *cfg, supervisor_t **out);

/* Stop the engine if one runs (events are still reported), end the
 * threads, free everything. No other call on `sv` may be in progress or
 * follow. Accepts NULL. */
void supervisor_free(supervisor_t *sv);

/* The logbook of the engine's runs, for the logs endpoints. Borrowed:
 * valid until supervisor_free(). */
logbook_t *supervisor_logbook(supervisor_t *sv);

/* Result of a start or stop, shaped for the model endpoints. */
typedef struct {
    int code;                   /* SUPERVISOR_OK or an error code */
    const char *status;         /* "success", "error" or "superseded" (static) */
    char message[2048];         /* for the user; on a failed start it ends
                                   with the engine's last output lines */
    double timestamp;           /* epoch seconds when the call finished */
    char model_name[256];
    int pid;                    /* the engine's pid (0 if none runs) */
    int port;
    char *command;              /* the full command line, shell-quoted as one
                                   string (malloc'd, owned by the result; NULL
                                   for a stop) */
    /* details */
    bool reset;                 /* start: --reset was passed */
    unsigned ready_ms;          /* start: time from spawn to /health 200 */
    unsigned stop_ms;           /* time spent stopping (old or current engine) */
    char log_session[LOGBOOK_ID_MAX]; /* start: the run id of the new log file */
    int exit_status;            /* failed start: exit status, or -1 */
    int signal;                 /* failed start: signal, or 0 */
    supervisor_state_t state;   /* the state when the call returned */
    bool superseded;            /* SUPERVISOR_ESUPERSEDED: a later command took over */
    const char *superseded_by;  /* then the newest command: "reset" (start with
                                   an empty cache), "resume" (start keeping
                                   it) or "stop" (static); else NULL */
} supervisor_result_t;

/* Free the command; the struct may be reused. Accepts NULL. */
void supervisor_result_cleanup(supervisor_result_t *res);

/* Stop any running engine, then start one with --reset (reset) or
 * --resume, and wait until it is ready. model_override (may be NULL)
 * replaces the model for this and every later start and restart, once
 * this start has had its turn (a start superseded while it waited for its
 * turn changes nothing). Always fills *out (clean with
 * supervisor_result_cleanup) and returns out->code:
 *   SUPERVISOR_OK         running; out->pid, port, ready_ms, log_session;
 *   SUPERVISOR_ESUPERSEDED a later start or stop took over (see above);
 *                         whatever this call started is stopped;
 *   SUPERVISOR_ESPAWN, _ELOG, _EEXITED, _EFAILED, _ETIMEOUT:
 *                         no engine runs afterwards (status "stopped" with
 *                         the reason as message);
 *   SUPERVISOR_ECANCELED  supervisor_free began;
 *   SUPERVISOR_ESTOP      the old engine could not be stopped;
 *   SUPERVISOR_EINVAL, _ENOMEM. */
int supervisor_start(supervisor_t *sv, bool reset, const char *model_override,
                     supervisor_result_t *out);

/* Stop the engine: SIGTERM to its process group, stop_grace_ms, SIGKILL;
 * reaped before returning. Supersedes a start in progress (which stops the
 * engine it started) and cancels a pending automatic restart. Returns
 * SUPERVISOR_OK also when nothing ran (message says so),
 * SUPERVISOR_ESUPERSEDED when a later command came before this one's turn,
 * or SUPERVISOR_ESTOP. Always fills *out. */
int supervisor_stop(supervisor_t *sv, supervisor_result_t *out);

typedef struct {
    supervisor_state_t state;
    const char *status;         /* supervisor_state_name(state) */
    char message[1024];
    int pid;                    /* 0 when no process */
    int port;
    uint64_t memory_usage;      /* resident bytes of the engine; 0 if none */
    double cpu_percent;         /* CPU use since the previous status call (or
                                   since the start), 100 = one core */
    double create_time;         /* epoch seconds the process started; 0 if none */
    double last_updated;        /* epoch seconds of this answer */
    char model_name[256];
    unsigned restarts;          /* automatic restarts since the last start or
                                   stop asked for by the user */
} supervisor_status_t;

/* Current state, for GET /model/status. Never blocks on a start or stop.
 * Fills *out and returns SUPERVISOR_OK (or SUPERVISOR_EINVAL). */
int supervisor_status(supervisor_t *sv, supervisor_status_t *out);

/* "http://HOST:PORT" of the engine, for the local LLM provider (the port
 * of the running engine, else the configured one; a wildcard host becomes
 * loopback). Returns SUPERVISOR_OK, or SUPERVISOR_EINVAL when buf is too
 * small (n >= 300 is always enough). */
int supervisor_base_url(supervisor_t *sv, char *buf, size_t n);

/* The API key of the newest engine this supervisor started, into buf (cap
 * bytes, NUL-terminated): what the app sends the engine as "Authorization:
 * Bearer". Returns its length (SUPERVISOR_KEY_LEN for a key of the
 * supervisor's making), or 0 with buf "" when no engine was started yet or
 * cap is too small. Any thread, any time. */
size_t supervisor_api_key(supervisor_t *sv, char *buf, size_t cap);

/* The same, shaped as an llm_key_fn (llm.h) whose ud is the supervisor:
 * llm_provider_set_key_source(p, supervisor_api_key_source, sv). */
size_t supervisor_api_key_source(void *sv, char *buf, size_t cap);

#endif
