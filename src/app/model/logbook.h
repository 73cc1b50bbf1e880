/* logbook.h — the model server's log files, one per run.
 *
 * Every run of kvchat-engine gets its own file in the logs directory:
 *
 *     <dir>/engine-YYYYmmdd-HHMMSS.log        (UTC, the run's start)
 *     <dir>/engine-YYYYmmdd-HHMMSS-2.log      (a second run in the same second)
 *
 * UTC is used for names and line stamps alike, as in every kvchat log line,
 * so that names sort as times do whatever the host's time zone or DST.
 * The run id (the API's "session_id") is the file's base name.
 *
 * Writing: the supervisor feeds the bytes it reads from the engine's
 * stdout/stderr pipe into logbook_run_feed(); they are cut into lines of at
 * most LOGBOOK_LINE_MAX bytes (a longer line is split, at a UTF-8 character
 * boundary, into several), a line that does not start with a timestamp gets
 * one ("2026-11-25T03:52:31.123Z "), and each line goes to the file with one
 * write() (O_APPEND), so a reader never sees half of a line that was
 * written. No fsync: a lost tail after a power cut is acceptable for logs.
 *
 * Reading: logbook_recent() reads the newest run backwards from its end in
 * blocks, so asking for the last 100 lines of a 1 GB log reads a few
 * blocks; with a filter it stops after scan_max bytes or search_ms of
 * matching (the answer then says it is not complete). Filters are client
 * regular expressions compiled by common/pattern.h, so their cost is
 * bounded: a pattern over its limits is refused, and one that backtracks
 * too much on a line ends the search with an error instead of running
 * away. logbook_sessions() lists the run files.
 *
 * Rotation: opening a run deletes the oldest run files beyond the newest
 * `keep` (the open run is never deleted). Only names of the form above are
 * ever listed or deleted; other files in the directory are left alone.
 *
 * Threads: every function may be called from any thread. A logbook_t has
 * one mutex for its bookkeeping (current run, naming, rotation); each run
 * has its own mutex, so writers of different runs and readers do not wait
 * on each other. Readers open the file themselves and never hold a lock
 * while reading it.
 *
 * Lifetime: close every run (logbook_run_close) before logbook_free().
 */
#ifndef KVCHAT_APP_LOGBOOK_H
#define KVCHAT_APP_LOGBOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most bytes of one line's content (without stamp and newline); a longer
 * line is split. */
#define LOGBOOK_LINE_MAX 4096
/* Room for a run id ("engine-20261125-035231-999.log" and NUL). */
#define LOGBOOK_ID_MAX 64
/* Room for a file's full path; the directory name must leave room for the
 * id (checked by logbook_new). */
#define LOGBOOK_PATH_MAX 1024
/* Bounds of logbook_recent()'s line count. */
#define LOGBOOK_RECENT_MAX 1000

enum {
    LOGBOOK_OK = 0,
    LOGBOOK_EINVAL = -1,   /* bad argument (NULL, count out of range, path too long) */
    LOGBOOK_ENOMEM = -2,
    LOGBOOK_EIO = -3,      /* a file or directory operation failed (errno logged) */
    LOGBOOK_ENONE = -4,    /* no run yet: the API answers 404 "No active log session" */
    LOGBOOK_EREGEX = -5,   /* the pattern cannot be used: invalid, refused by its
                              limits, or too costly on a line (message given) */
    LOGBOOK_EEXIST = -6,   /* no free name for a new run in this second */
};

/* Returns a static English description of a LOGBOOK_* code. */
const char *logbook_strerror(int rc);

typedef struct logbook logbook_t;
typedef struct logbook_run logbook_run_t;

typedef struct {
    const char *dir;       /* logs directory; created (mode 0755, parents too)
                              if missing. Copied by logbook_new. */
    unsigned keep;         /* newest run files kept; 0 = keep all. Default 50. */
    size_t scan_max;       /* most bytes logbook_recent() reads back from the
                              end of a file. Default 64 MiB. */
    unsigned search_ms;    /* most time one filtered logbook_recent() spends
                              matching; then it stops as at scan_max
                              (complete = false). Default 2000; 0 = 2000. */
} logbook_config_t;

/* Defaults: dir NULL (must be set), keep 50, scan_max 64 MiB, search_ms
 * 2000 (64 MiB of lines take 0.1-0.7 s with ordinary filters). */
void logbook_config_default(logbook_config_t *cfg);

/* Create a logbook on cfg->dir (created if missing). The config is copied.
 * Returns LOGBOOK_OK and stores a new logbook in *out (free it with
 * logbook_free), or LOGBOOK_EINVAL (no dir, or dir too long), LOGBOOK_EIO
 * (cannot create or open the directory), LOGBOOK_ENOMEM; *out is NULL on
 * failure. */
int logbook_new(const logbook_config_t *cfg, logbook_t **out);

/* Free the logbook. Every run must have been closed. Accepts NULL. */
void logbook_free(logbook_t *lb);

/* ---- writing ---- */

/* Start a new run: create its file (O_EXCL; "-2", "-3", ... appended when
 * a run of the same second exists), make it the current run, then apply
 * rotation. Returns LOGBOOK_OK and a new run in *out (close it with
 * logbook_run_close), or LOGBOOK_EIO, LOGBOOK_EEXIST, LOGBOOK_ENOMEM, with
 * *out NULL and the current run unchanged. */
int logbook_run_open(logbook_t *lb, logbook_run_t **out);

/* The run's id (file base name) and full path. Borrowed: valid until
 * logbook_run_close(). */
const char *logbook_run_id(const logbook_run_t *run);
const char *logbook_run_path(const logbook_run_t *run);
/* The run's start, in seconds since the epoch (with milliseconds). */
double logbook_run_started(const logbook_run_t *run);

/* Called by logbook_run_feed() for each line it writes, with the line as it
 * arrived (no stamp added, no newline, at most LOGBOOK_LINE_MAX bytes, not
 * NUL-terminated). Runs with the run's lock held: it must not call back
 * into the same run. */
typedef void (*logbook_line_fn)(const char *line, size_t len, void *user);

/* Append raw output bytes (any split: a line may arrive in pieces). Every
 * complete line is written; a partial one waits for its end (or for
 * LOGBOOK_LINE_MAX bytes, or for logbook_run_close). "\r\n" counts as one
 * line end. `fn` (may be NULL) sees each line. Returns LOGBOOK_OK, or
 * LOGBOOK_EIO if a write failed (the line is lost; later lines are still
 * tried). */
int logbook_run_feed(logbook_run_t *run, const char *data, size_t len, logbook_line_fn fn,
                     void *user);

/* Write one line composed by kvchat itself (printf format; a trailing
 * newline is optional), stamped. A pending partial line of fed output stays
 * pending. Returns LOGBOOK_OK or LOGBOOK_EIO. */
int logbook_run_printf(logbook_run_t *run, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Write any pending partial line, close the file and free the run. The run
 * stays the logbook's current one (inactive) until another is opened.
 * Accepts NULL. */
void logbook_run_close(logbook_run_t *run);

/* ---- reading ---- */

typedef struct {
    char session_id[LOGBOOK_ID_MAX];     /* the run id */
    char path[LOGBOOK_PATH_MAX];
    double start_time;                   /* epoch seconds */
    bool active;                         /* its run is still open */
} logbook_current_t;

/* The newest run opened by this logbook (open or closed). Returns
 * LOGBOOK_OK and fills *out, or LOGBOOK_ENONE when no run was opened yet
 * (runs of an earlier kvchat process are listed by logbook_sessions() but
 * are not current). */
int logbook_current(logbook_t *lb, logbook_current_t *out);

typedef struct {
    char **lines;          /* count lines, oldest first, each malloc'd and
                              NUL-terminated, without newline */
    size_t count;
    bool complete;         /* false: the search stopped before the start of
                              the file (scan_max read, or search_ms spent);
                              older matches may exist */
    bool timed_out;        /* it was search_ms that stopped it */
    char session_id[LOGBOOK_ID_MAX];
    char error[256];       /* LOGBOOK_EREGEX: the whole message for a 400
                              answer ("Invalid pattern: ...", "Pattern
                              refused: ...", "Pattern too costly: ...") */
} logbook_lines_t;

/* The last `lines` (1..LOGBOOK_RECENT_MAX) lines of the current run that
 * match `pattern` (a regular expression as common/pattern.h reads it:
 * PCRE2 syntax, POSIX ERE patterns keep their meaning; searched anywhere
 * in the line; NULL or "" = every line; `icase` = ignore case). Always
 * fills *out — release it with logbook_lines_cleanup() — and returns:
 *   LOGBOOK_OK      out->lines holds up to `lines` lines (complete false
 *                   if scan_max or search_ms stopped the search first);
 *   LOGBOOK_EINVAL  `lines` out of range;
 *   LOGBOOK_EREGEX  the pattern is invalid, over a limit of pattern.h, or
 *                   went over PATTERN_STEPS_MAX / _DEPTH_MAX / _HEAP_KIB on
 *                   one line (no lines are returned then: an answer that
 *                   silently skipped that line could be wrong); out->error
 *                   says which, for a 400 answer;
 *   LOGBOOK_ENONE   no current run;
 *   LOGBOOK_EIO     the file cannot be read (deleted by hand?);
 *   LOGBOOK_ENOMEM.
 * On failure out->lines is NULL and count 0. A last line without its
 * newline (still being written) is not returned. A line longer than 64 KiB
 * (written by something else) is returned cut to its last 64 KiB. */
int logbook_recent(logbook_t *lb, size_t lines, const char *pattern, bool icase,
                   logbook_lines_t *out);

/* Free the lines; the struct may be reused. Accepts NULL. */
void logbook_lines_cleanup(logbook_lines_t *res);

typedef struct {
    char filename[LOGBOOK_ID_MAX];       /* the run id */
    char path[LOGBOOK_PATH_MAX];
    uint64_t size;                       /* bytes */
    int64_t created;                     /* epoch seconds, from the name */
    int64_t modified;                    /* epoch seconds, from the file */
    bool active;                         /* the open run */
} logbook_session_t;

typedef struct {
    logbook_session_t *items;            /* newest first; malloc'd */
    size_t count;
} logbook_sessions_t;

/* List the run files in the directory (this process's and earlier ones'),
 * newest first (by the time in the name, then the "-N" suffix). Returns
 * LOGBOOK_OK and fills *out (release with logbook_sessions_cleanup), or
 * LOGBOOK_EIO / LOGBOOK_ENOMEM with *out empty. */
int logbook_sessions(logbook_t *lb, logbook_sessions_t *out);

/* Free the list; the struct may be reused. Accepts NULL. */
void logbook_sessions_cleanup(logbook_sessions_t *list);

#endif
