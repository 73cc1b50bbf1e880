/* runner.h — run kvchat-extract on one file, under limits, from kvchat.
 *
 * extract_run() starts the program in a new process group with a minimal
 * environment, /dev/null as stdin, no inherited descriptors but the pipe
 * of its structure marks as fd 3 (--structure-fd 3) and the pipe of its OCR
 * progress as fd 4 (--progress-fd 4), and these limits set
 * in the child before exec: RLIMIT_CPU (cpu_seconds), RLIMIT_AS
 * (mem_bytes), RLIMIT_FSIZE = 0, RLIMIT_CORE = 0, RLIMIT_NOFILE = 32 (the
 * program is also asked to apply them itself), and PR_SET_PDEATHSIG =
 * SIGKILL, so the program dies with the calling thread (and so with
 * kvchat, killed or crashed) instead of running on to its CPU limit. The
 * parent reads stdout into a buffer (extract_run) or a file
 * (extract_run_to_fd) that may not grow past max_output, keeps the tail of
 * stderr for the status line, reads the marks (extract.h) into a buffer of
 * at most extract_marks_limit(max_output) bytes (max_output / 8, at least
 * 64 KiB, at most 16 MiB) — all in one poll loop — and kills the whole
 * process group on the wall-clock timeout or when the output grows too
 * large. The child is always reaped and every descriptor closed before
 * extract_run() returns, whatever happened; a descendant that outlives it
 * is killed with the group.
 *
 * A success is trusted only if the exit status is 0, the status line reads
 * "type=<known type> chars=<N>", N is the number of code points received,
 * the text is well-formed UTF-8 without NUL bytes, and every line of marks
 * is as extract.h writes it: kind P or H, offsets never decreasing and at
 * most the text's length, page numbers >= 1, levels 1..6, labels
 * well-formed UTF-8 of at most EXTRACT_MARK_LABEL_MAX bytes without
 * control characters, the last line ended; extract_run() also checks that
 * every offset falls on a character boundary of the text
 * (extract_run_to_fd() cannot: its caller checks that against the file if
 * it needs to). Anything else is EXTRACT_EPROTOCOL: the program is
 * sandboxed because a file may subvert it, so its output is checked, not
 * trusted. Marks past the buffer's bound, or more than EXTRACT_MARKS_MAX
 * of them, are dropped (marks_dropped) and the text stays good: structure
 * is optional. A user-facing message from the program is used only if it
 * is one of extract_message()'s sentences for the code it exited with.
 *
 * OCR (extract.h, "OCR progress"): the program is given the OCR settings
 * of the limits (--ocr-languages, --ocr-page-seconds, --ocr-seconds) and
 * room for OCR in its CPU-time limit (RLIMIT_CPU's hard value is
 * cpu_seconds + ocr_seconds + 1, its soft value cpu_seconds; the program
 * raises the soft one only when it starts OCR, and a program that raises
 * it otherwise still stops at the hard one). The wall-clock limit grows
 * by ocr_seconds when the program announces OCR ("ocr <pages>"). Each
 * progress line is passed to the watcher as it arrives; on success the
 * pages recognised and their mean confidence are in the result. Progress
 * lines not as extract.h writes them make a success EXTRACT_EPROTOCOL.
 *
 * Thread safety: no global state; any number of threads may call
 * extract_run() at once. Between fork and exec the child makes only
 * async-signal-safe calls on data prepared beforehand, so locks held by
 * other threads at fork time do not matter.
 *
 * The calling process must not set SIGCHLD to SIG_IGN and must not reap
 * children it did not start (waitpid(-1, ...)) in another thread: either
 * would take the exit status away (the run then ends EXTRACT_EINTERNAL,
 * logged).
 */
#ifndef KVCHAT_EXTRACT_RUNNER_H
#define KVCHAT_EXTRACT_RUNNER_H

#include <stdbool.h>
#include <stddef.h>

#include "extract/extract.h"

typedef struct {
    const char *exe;        /* kvchat-extract; a name without '/' is looked up
                               in PATH. Must stay valid during extract_run(). */
    unsigned cpu_seconds;   /* RLIMIT_CPU; 0 = no limit */
    size_t mem_bytes;       /* RLIMIT_AS; 0 = no limit */
    size_t max_output;      /* most bytes of text accepted (> 0) */
    unsigned timeout_ms;    /* wall clock; 0 = no limit */
    /* OCR of scanned PDF pages and images. */
    const char *ocr_languages;  /* Tesseract languages ("eng", "eng+deu"); "" =
                                   OCR off; NULL = the program's default (eng).
                                   Must stay valid during the run. */
    unsigned ocr_page_seconds;  /* per page; 0 = no limit */
    unsigned ocr_seconds;       /* per document, added to the CPU and wall
                                   limits once OCR starts; 0 = no limit of
                                   its own (and no extra time) */
} extract_limits_t;

/* Defaults: exe "kvchat-extract", 20 s CPU, 1 GiB address space, 64 MiB of
 * text, 30 s wall clock; OCR in English, 60 s a page, 600 s a document. */
void extract_limits_default(extract_limits_t *lim);

typedef struct {
    int code;               /* EXTRACT_OK or an EXTRACT_E* code */
    const char *type;       /* "pdf", ... or "unknown"; static string */
    char *text;             /* EXTRACT_OK only: malloc'd, NUL-terminated,
                               well-formed UTF-8; owned by the result */
    size_t len;             /* bytes of text, without the NUL */
    size_t chars;           /* code points of text */
    /* EXTRACT_OK only: the document's structure, in offset order (see
     * extract.h); NULL and 0 when it has none. One block with the labels,
     * owned by the result. */
    extract_mark_t *marks;
    size_t n_marks;
    bool marks_dropped;     /* the program sent more marks than the bound:
                               none are kept */
    /* EXTRACT_OK only: the pages whose text was recognised from images
     * (OCR), in increasing order, malloc'd and owned by the result (NULL
     * and 0 when none), and their mean confidence 0..100 over the pages
     * where words were found (0 when there were none; -1 without OCR). */
    int *ocr_pages;
    size_t n_ocr_pages;
    int ocr_confidence;
    char message[EXTRACT_MESSAGE_MAX]; /* for the user; "" on success */
    /* For logs. */
    int pid;                /* the child (also its process group); 0 if none */
    int exit_status;        /* exit status, or -1 */
    int signal;             /* terminating signal, or 0 */
    long max_rss_kib;       /* peak resident memory of the child */
    unsigned elapsed_ms;
} extract_result_t;

/* Run lim->exe on `path` (the stored upload; read by the child only).
 * client_name is the filename the client gave (extension hint; may be
 * NULL). Always fills *out — clean it with extract_result_cleanup() — and
 * returns out->code:
 *   EXTRACT_OK            out->text holds the text;
 *   a program code        EXTRACT_EUNSUPPORTED, _ECORRUPT, _EENCRYPTED,
 *                         _ENOTEXT, _ETOOBIG, _EBOMB, _EMEMORY, _EINTERNAL;
 *   EXTRACT_ETOOBIG       also when stdout passed max_output (child killed);
 *   EXTRACT_ETIMEOUT      timeout_ms passed (process group killed);
 *   EXTRACT_ECPU          killed by the CPU-time limit;
 *   EXTRACT_EMEMORY       also when it died of a signal after using at
 *                         least half of mem_bytes (what a failed allocation
 *                         that was not checked looks like);
 *   EXTRACT_ECRASHED      any other death by signal;
 *   EXTRACT_ESPAWN        pipes, fork or exec failed (out->message says why);
 *   EXTRACT_EPROTOCOL     exit 0 but output not as the contract says;
 *   EXTRACT_EINTERNAL     also bad arguments, or an exit status the program
 *                         does not use.
 * Nothing is left behind on any path: no child, no zombie, no descriptor. */
int extract_run(const extract_limits_t *lim, const char *path, const char *client_name,
                extract_result_t *out);

/* As extract_run(), with the text written to the file open on text_fd
 * (from its current offset) as it arrives instead of kept in memory, so
 * the caller's memory does not grow with the text: it is checked on the
 * way (well-formed UTF-8 also across pipe reads, no NUL, the character
 * count, at most max_output bytes). On EXTRACT_OK out->text is NULL and
 * out->len / out->chars describe the file's new bytes; out->marks'
 * offsets count from where the text starts in the file and are checked
 * against its length only (character boundaries are the caller's to
 * check, should it need them). On failure the file
 * may hold part of a text (or an ill-formed one): the caller discards it.
 * A write error is EXTRACT_EINTERNAL with the reason in out->message. The
 * descriptor stays open and the caller's. text_fd < 0 is EXTRACT_EINTERNAL. */
int extract_run_to_fd(const extract_limits_t *lim, const char *path, const char *client_name,
                      int text_fd, extract_result_t *out);

/* Told of OCR progress while a run goes on: done pages of total (0 of
 * total when OCR starts, then after each page). Runs on the calling
 * thread, inside the run; it must not block for long. */
typedef struct {
    void (*on_ocr)(void *ud, int done, int total);
    void *ud;
} extract_watch_t;

/* extract_run() (text_fd < 0) or extract_run_to_fd() (text_fd >= 0) with
 * a watcher (NULL: none). Same returns. */
int extract_run_watched(const extract_limits_t *lim, const char *path, const char *client_name,
                        int text_fd, const extract_watch_t *watch, extract_result_t *out);

/* Free the text, the marks and the OCR pages; the struct may be reused.
 * Accepts NULL. */
void extract_result_cleanup(extract_result_t *res);

#endif
