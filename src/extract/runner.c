/* runner.c — see runner.h.
 *
 * Shape of one run:
 *   parent: resolve exe, build argv/envp and rlimits, make pipes (CLOEXEC),
 *           block all signals, fork
 *   child:  default signal handlers, death signal tied to the parent, own
 *           process group, stdin/stdout/stderr and the structure pipe as
 *           fd 3, rlimits, every other descriptor close-on-exec, unblock,
 *           execve; on failure write errno to the exec pipe and _exit
 *   parent: exec pipe EOF = exec succeeded; then poll stdout, stderr, the
 *           structure pipe and a pidfd (or a short tick where pidfds are
 *           missing) until the three pipes are at EOF and the child has
 *           exited, or the deadline or the output limit is hit; kill the
 *           group while the leader is still unreaped (so its id cannot
 *           have been reused), reap with wait4 for the resource usage,
 *           classify; on success parse and check the marks.
 * The child between fork and execve calls only async-signal-safe functions
 * on data prepared before the fork.
 */
#include "extract/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/utf8.h"
#include "extract/codepoint.h"

#define CHILD_NOFILE 32
#define STDERR_KEEP 8192        /* tail of stderr kept for the status line */
#define READ_CHUNK 65536
#define TICK_MS 20              /* poll tick when there is no pidfd */
#define EXE_PATH_MAX 4096
#define STRUCTURE_FD 3          /* where the child finds the structure pipe */
#define PROGRESS_FD 4           /* ... and the OCR progress pipe */

void extract_limits_default(extract_limits_t *lim)
{
    lim->exe = "kvchat-extract";
    lim->cpu_seconds = 20;
    lim->mem_bytes = (size_t)1 << 30;
    lim->max_output = (size_t)64 << 20;
    lim->timeout_ms = 30000;
    lim->ocr_languages = "eng";
    lim->ocr_page_seconds = 60;
    lim->ocr_seconds = 600;
}

void extract_result_cleanup(extract_result_t *res)
{
    if (!res)
        return;
    free(res->text);
    res->text = NULL;
    res->len = res->chars = 0;
    free(res->marks);   /* the labels live in the same block */
    res->marks = NULL;
    res->n_marks = 0;
    free(res->ocr_pages);
    res->ocr_pages = NULL;
    res->n_ocr_pages = 0;
}

/* The sandbox's niceness (0..19): below the engine and the app. */
#define EXTRACT_NICE 10

/* Everything the child needs, prepared before fork (no allocation after). */
typedef struct {
    const char *exe;
    char *const *argv;
    char *const *envp;
    int in_fd, out_fd, err_fd, st_fd, pr_fd, exec_fd;
    struct rlimit cpu, as, fsize, core, nofile;
    bool set_cpu, set_as;
    pid_t parent;           /* getpid() before the fork */
} child_plan_t;

/* The text as it streams to a file (extract_run_to_fd): checked piece by
 * piece, so the whole text never has to be in memory. */
typedef struct {
    int fd;                  /* where the text goes; -1: into run_t.text */
    unsigned char carry[4];  /* a character cut by the pipe, completed by the next read */
    size_t carry_len;
    size_t bytes, chars;
    bool ill_formed;         /* invalid UTF-8 or a NUL byte */
    int write_errno;         /* writing the file failed */
} stream_t;

/* The state of one run in the parent. */
typedef struct {
    pid_t pid;
    int out_r, err_r, st_r, pr_r, exec_r, pidfd;
    buf_t text;
    stream_t to;
    buf_t marks;             /* the structure lines, at most extract_marks_limit() */
    bool marks_over;         /* more came: drained and dropped */
    char tail[STDERR_KEEP];
    size_t tail_len;
    bool out_eof, err_eof, st_eof, pr_eof, exited;
    /* OCR progress (extract.h): the line being read, what it said. */
    char pline[EXTRACT_PROGRESS_LINE_MAX];
    size_t pline_len;
    int ocr_total;           /* pages announced; 0 before "ocr" */
    int *ocr_pages;          /* ocr_total slots */
    int ocr_done;
    long ocr_conf_sum;
    int ocr_conf_pages;      /* pages with a confidence: those with words */
    bool progress_bad;       /* a line broke the protocol */
    const extract_watch_t *watch;
    uint64_t deadline;       /* 0 = none; grows when OCR starts */
    unsigned ocr_extra_ms;
    bool timed_out, too_big, poll_failed;
} run_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void format_size(size_t bytes, char *buf, size_t n)
{
    if (bytes >= ((size_t)1 << 30) && bytes % ((size_t)1 << 30) == 0)
        snprintf(buf, n, "%zu GiB", bytes >> 30);
    else if (bytes >= ((size_t)1 << 20))
        snprintf(buf, n, "%zu MiB", bytes >> 20);
    else if (bytes >= 1024)
        snprintf(buf, n, "%zu KiB", bytes >> 10);
    else
        snprintf(buf, n, "%zu bytes", bytes);
}

static void format_seconds(unsigned ms, char *buf, size_t n)
{
    if (ms % 1000 == 0)
        snprintf(buf, n, "%u s", ms / 1000);
    else
        snprintf(buf, n, "%.1f s", ms / 1000.0);
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

/* In the child: async-signal-safe calls only. Never returns. */
__attribute__((noreturn)) static void child_exec(const child_plan_t *p)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);   /* fails harmlessly for KILL, STOP */

    int err = 0;
    /* Die with the thread that runs us: if kvchat is killed (-9, a crash)
     * nobody would read our output or enforce the wall clock, and a
     * hostile file would hold a core until the CPU limit. The signal
     * follows the forking thread, which waits in extract_run() until we
     * are reaped. The parent may have died before the prctl: then stop. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != p->parent) {
        errno = ECHILD;
        goto fail;
    }
    if (setpgid(0, 0) != 0)
        goto fail;
    /* Extraction is background work: a chat being answered on the same
     * cores goes first (nice 10; an error leaves the priority as it was). */
    (void)setpriority(PRIO_PROCESS, 0, EXTRACT_NICE);
    /* Lift the five ends above 4 first, so that wiring one of them to
     * 0..4 cannot overwrite another (a parent may run with 0..2 closed). */
    const int from[5] = { p->in_fd, p->out_fd, p->err_fd, p->st_fd, p->pr_fd };
    int high[5];
    for (int t = 0; t < 5; t++)
        if ((high[t] = fcntl(from[t], F_DUPFD_CLOEXEC, 5)) < 0)
            goto fail;
    for (int t = 0; t < 5; t++)
        if (dup2(high[t], t) < 0)   /* the copy at t is not close-on-exec */
            goto fail;
    if ((p->set_cpu && setrlimit(RLIMIT_CPU, &p->cpu) != 0) ||
        (p->set_as && setrlimit(RLIMIT_AS, &p->as) != 0) ||
        setrlimit(RLIMIT_FSIZE, &p->fsize) != 0 || setrlimit(RLIMIT_CORE, &p->core) != 0 ||
        setrlimit(RLIMIT_NOFILE, &p->nofile) != 0)
        goto fail;
    /* Descriptors other threads opened without O_CLOEXEC must not leak
     * into the sandbox. */
    if (close_range(PROGRESS_FD + 1, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = PROGRESS_FD + 1; fd < 65536; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(p->exe, p->argv, p->envp);
fail:
    err = errno;
    ssize_t ignored = write(p->exec_fd, &err, sizeof err);
    (void)ignored;
    _exit(127);
}

static void keep_tail(run_t *r, const char *p, size_t n)
{
    if (n >= sizeof r->tail) {
        memcpy(r->tail, p + n - sizeof r->tail, sizeof r->tail);
        r->tail_len = sizeof r->tail;
        return;
    }
    if (r->tail_len + n > sizeof r->tail) {
        size_t drop = r->tail_len + n - sizeof r->tail;
        memmove(r->tail, r->tail + drop, r->tail_len - drop);
        r->tail_len -= drop;
    }
    memcpy(r->tail + r->tail_len, p, n);
    r->tail_len += n;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? errno : EIO;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Check n bytes of text and append them to the file. A character cut at
 * the end waits in carry for the next piece. Returns false once the text
 * is over max_output (the run is then stopped). */
static bool stream_text(run_t *r, const char *p, size_t n, size_t max_output)
{
    stream_t *t = &r->to;
    if (n > max_output - t->bytes) {
        r->too_big = true;
        return false;
    }
    t->bytes += n;
    if (t->ill_formed || t->write_errno)
        return true;   /* failed already: drain the pipe, decide at the end */
    char buf[READ_CHUNK + sizeof t->carry];
    memcpy(buf, t->carry, t->carry_len);
    memcpy(buf + t->carry_len, p, n);
    size_t len = t->carry_len + n;
    size_t whole = utf8_complete_len(buf, len);
    if (memchr(buf, '\0', whole) || !utf8_valid(buf, whole)) {
        t->ill_formed = true;
        return true;
    }
    t->chars += codepoint_count(buf, whole);
    t->carry_len = len - whole;
    memcpy(t->carry, buf + whole, t->carry_len);
    t->write_errno = write_all(t->fd, buf, whole);
    return true;
}

typedef enum { PIPE_OUT, PIPE_ERR, PIPE_STRUCTURE, PIPE_PROGRESS } pipe_t;

/* A decimal number without sign or leading zeros, at most `max`; -1 if
 * the field is anything else. Moves *p past it. */
static long parse_field(const char **p, const char *end, long max)
{
    const char *s = *p;
    long v = 0;
    if (s >= end || *s < '0' || *s > '9' || (*s == '0' && s + 1 < end && s[1] >= '0' &&
                                              s[1] <= '9'))
        return -1;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (*s - '0');
        if (v > max)
            return -1;
    }
    *p = s;
    return v;
}

/* One progress line (without its '\n'), as extract.h writes it. */
static void progress_line(run_t *r, const char *line, size_t n)
{
    const char *p = line, *end = line + n;
    if (n > 4 && memcmp(line, "ocr ", 4) == 0 && !r->ocr_total) {
        p += 4;
        long pages = parse_field(&p, end, EXTRACT_OCR_PAGES_MAX);
        if (pages < 1 || p != end || !(r->ocr_pages = calloc((size_t)pages, sizeof(int)))) {
            r->progress_bad = true;
            return;
        }
        r->ocr_total = (int)pages;
        if (r->deadline)
            r->deadline += r->ocr_extra_ms;   /* OCR's own time, once */
    } else if (n > 5 && memcmp(line, "page ", 5) == 0 && r->ocr_total &&
               r->ocr_done < r->ocr_total) {
        p += 5;
        long page = parse_field(&p, end, INT32_MAX);
        long conf = -1;
        if (page >= 1 && p < end && *p == ' ') {
            p++;
            conf = parse_field(&p, end, 100);
        }
        if (page < 1 || conf < 0 || p != end ||
            (r->ocr_done && page <= r->ocr_pages[r->ocr_done - 1])) {
            r->progress_bad = true;
            return;
        }
        r->ocr_pages[r->ocr_done++] = (int)page;
        r->ocr_conf_sum += conf;
        if (conf > 0)
            r->ocr_conf_pages++;
    } else {
        r->progress_bad = true;
        return;
    }
    if (r->watch && r->watch->on_ocr)
        r->watch->on_ocr(r->watch->ud, r->ocr_done, r->ocr_total);
}

/* Split what came on the progress pipe into lines. */
static void progress_bytes(run_t *r, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !r->progress_bad; i++) {
        if (p[i] == '\n') {
            progress_line(r, r->pline, r->pline_len);
            r->pline_len = 0;
        } else if (r->pline_len == sizeof r->pline) {
            r->progress_bad = true;
        } else {
            r->pline[r->pline_len++] = p[i];
        }
    }
}

/* Read what is there from one pipe. */
static void drain(run_t *r, pipe_t which, size_t max_output)
{
    char chunk[READ_CHUNK];
    int fd = which == PIPE_OUT         ? r->out_r
             : which == PIPE_ERR       ? r->err_r
             : which == PIPE_STRUCTURE ? r->st_r
                                       : r->pr_r;
    for (;;) {
        ssize_t k = read(fd, chunk, sizeof chunk);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EAGAIN)
            return;
        if (k <= 0) {
            if (which == PIPE_OUT)
                r->out_eof = true;
            else if (which == PIPE_ERR)
                r->err_eof = true;
            else if (which == PIPE_STRUCTURE)
                r->st_eof = true;
            else
                r->pr_eof = true;
            return;
        }
        if (which == PIPE_OUT && r->to.fd >= 0) {
            if (!stream_text(r, chunk, (size_t)k, max_output))
                return;
        } else if (which == PIPE_OUT) {
            if (buf_append(&r->text, chunk, (size_t)k) != BUF_OK) {
                r->too_big = true;   /* ENOMEM here is as fatal: stop */
                return;
            }
        } else if (which == PIPE_ERR) {
            keep_tail(r, chunk, (size_t)k);
        } else if (which == PIPE_PROGRESS) {
            progress_bytes(r, chunk, (size_t)k);
        } else if (!r->marks_over && buf_append(&r->marks, chunk, (size_t)k) != BUF_OK) {
            /* Over the bound (or no memory for it): the text does not
             * depend on its marks, so drop them and keep draining. */
            r->marks_over = true;
            buf_cleanup(&r->marks);
        }
        if ((size_t)k < sizeof chunk)
            return;
    }
}

/* Has the leader exited? Does not reap it. */
static bool leader_exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
        return errno == ECHILD;
    return si.si_pid == pid;
}

/* Pump the pipes until done, the deadline, or the output limit. */
static void pump(run_t *r, const extract_limits_t *lim, uint64_t start)
{
    r->deadline = lim->timeout_ms ? start + lim->timeout_ms : 0;
    while (!(r->out_eof && r->err_eof && r->st_eof && r->pr_eof && r->exited)) {
        int wait_ms = -1;
        if (r->deadline) {
            uint64_t now = now_ms();
            if (now >= r->deadline) {
                r->timed_out = true;
                return;
            }
            wait_ms = (int)(r->deadline - now);
        }
        if (r->pidfd < 0 && !r->exited && (wait_ms < 0 || wait_ms > TICK_MS))
            wait_ms = TICK_MS;
        struct pollfd fds[5];
        int nfds = 0, i_out = -1, i_err = -1, i_st = -1, i_pr = -1, i_pid = -1;
        if (!r->out_eof) {
            i_out = nfds;
            fds[nfds++] = (struct pollfd){ .fd = r->out_r, .events = POLLIN };
        }
        if (!r->err_eof) {
            i_err = nfds;
            fds[nfds++] = (struct pollfd){ .fd = r->err_r, .events = POLLIN };
        }
        if (!r->st_eof) {
            i_st = nfds;
            fds[nfds++] = (struct pollfd){ .fd = r->st_r, .events = POLLIN };
        }
        if (!r->pr_eof) {
            i_pr = nfds;
            fds[nfds++] = (struct pollfd){ .fd = r->pr_r, .events = POLLIN };
        }
        if (!r->exited && r->pidfd >= 0) {
            i_pid = nfds;
            fds[nfds++] = (struct pollfd){ .fd = r->pidfd, .events = POLLIN };
        }
        int k = poll(fds, (nfds_t)nfds, wait_ms);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r->poll_failed = true;
            return;
        }
        if (i_out >= 0 && fds[i_out].revents) {
            drain(r, PIPE_OUT, lim->max_output);
            if (r->too_big)
                return;
        }
        if (i_err >= 0 && fds[i_err].revents)
            drain(r, PIPE_ERR, lim->max_output);
        if (i_st >= 0 && fds[i_st].revents)
            drain(r, PIPE_STRUCTURE, lim->max_output);
        if (i_pr >= 0 && fds[i_pr].revents)
            drain(r, PIPE_PROGRESS, lim->max_output);
        bool exited_now = false;
        if (i_pid >= 0 && fds[i_pid].revents)
            exited_now = true;
        else if (r->pidfd < 0 && !r->exited)
            exited_now = leader_exited(r->pid);
        if (exited_now) {
            r->exited = true;
            /* The leader is a zombie now, so its group id is still ours:
             * kill any descendant still holding the pipes open. */
            kill(-r->pid, SIGKILL);
        }
    }
}

/* Parse "type=<t> chars=<n>"; returns false if it is not exactly that. */
static bool parse_success(const char *line, size_t n, extract_type_t *type, size_t *chars)
{
    if (n < 5 || memcmp(line, "type=", 5) != 0)
        return false;
    const char *t = line + 5, *end = line + n;
    const char *sp = memchr(t, ' ', (size_t)(end - t));
    if (!sp)
        return false;
    *type = extract_type_parse(t, (size_t)(sp - t));
    if (*type == EXTRACT_TYPE_UNKNOWN)
        return false;
    const char *c = sp + 1;
    if (end - c < 7 || memcmp(c, "chars=", 6) != 0)
        return false;
    c += 6;
    size_t v = 0;
    if (c == end)
        return false;
    for (; c < end; c++) {
        if (*c < '0' || *c > '9' || v > (SIZE_MAX - 9) / 10)
            return false;
        v = v * 10 + (size_t)(*c - '0');
    }
    *chars = v;
    return true;
}

/* The last non-empty line of the stderr tail. */
static void last_line(const run_t *r, const char **line, size_t *n)
{
    size_t end = r->tail_len;
    while (end > 0 && (r->tail[end - 1] == '\n' || r->tail[end - 1] == '\r'))
        end--;
    size_t start = end;
    while (start > 0 && r->tail[start - 1] != '\n')
        start--;
    *line = r->tail + start;
    *n = end - start;
}

/* A program-reported failure: keep its message only if it is one of the
 * fixed sentences for that code (which also tells the type). */
static void take_program_error(const run_t *r, int code, extract_result_t *out)
{
    const char *line;
    size_t n;
    last_line(r, &line, &n);
    extract_message(code, EXTRACT_TYPE_UNKNOWN, out->message, sizeof out->message);
    if (n < 6 || memcmp(line, "error=", 6) != 0)
        return;
    const char *name = line + 6, *end = line + n;
    const char *sp = memchr(name, ' ', (size_t)(end - name));
    if (!sp || extract_code_parse(name, (size_t)(sp - name)) != code)
        return;
    const char *msg = sp + 1;
    size_t msg_len = (size_t)(end - msg);
    char expect[EXTRACT_MESSAGE_MAX];
    for (int t = 0; t < EXTRACT_TYPE_COUNT; t++) {
        extract_message(code, (extract_type_t)t, expect, sizeof expect);
        if (strlen(expect) == msg_len && memcmp(expect, msg, msg_len) == 0) {
            memcpy(out->message, expect, msg_len + 1);
            out->type = extract_type_name((extract_type_t)t);
            return;
        }
    }
}

/* Parse and check the structure lines received (extract.h) into
 * out->marks: one block, the array followed by the labels it points to.
 * text[0..len) is the text when it is in memory (each offset must then
 * fall on a character boundary), NULL when it went to a file (only the
 * length is checked). Marks over the bound, more than EXTRACT_MARKS_MAX of
 * them, or no memory for them: none, and out->marks_dropped. Returns 0 or
 * EXTRACT_EPROTOCOL (out->marks is NULL then). */
static int take_marks(const run_t *r, const char *text, size_t len, extract_result_t *out)
{
    out->marks_dropped = r->marks_over;
    if (r->marks_over || r->marks.len == 0)
        return 0;
    const char *end = r->marks.data + r->marks.len;
    if (end[-1] != '\n')
        return EXTRACT_EPROTOCOL;
    size_t n = 0, label_bytes = 0, prev = 0;
    for (const char *line = r->marks.data; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        extract_mark_t m;
        size_t label_len;
        if (extract_mark_parse(line, (size_t)(nl - line), &m, &label_len) != 0 ||
            m.offset < prev || m.offset > len ||
            (text && m.offset < len && ((unsigned char)text[m.offset] & 0xC0) == 0x80))
            return EXTRACT_EPROTOCOL;
        prev = m.offset;
        n++;
        label_bytes += label_len + 1;
        line = nl + 1;
    }
    extract_mark_t *v = n <= EXTRACT_MARKS_MAX ? malloc(n * sizeof *v + label_bytes) : NULL;
    if (!v) {
        out->marks_dropped = true;
        return 0;
    }
    char *labels = (char *)(v + n);
    size_t i = 0;
    for (const char *line = r->marks.data; line < end; i++) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t label_len;
        extract_mark_parse(line, (size_t)(nl - line), &v[i], &label_len);   /* checked above */
        memcpy(labels, v[i].label, label_len);
        labels[label_len] = '\0';
        v[i].label = labels;
        labels += label_len + 1;
        line = nl + 1;
    }
    out->marks = v;
    out->n_marks = n;
    return 0;
}

/* Move the OCR record into the result. Returns 0, or EXTRACT_EPROTOCOL
 * when the progress lines broke the protocol (or the last one was not
 * ended). */
static int take_ocr(run_t *r, extract_result_t *out)
{
    out->ocr_confidence = -1;
    if (r->progress_bad || r->pline_len)
        return EXTRACT_EPROTOCOL;
    if (r->ocr_done) {
        out->ocr_pages = r->ocr_pages;
        out->n_ocr_pages = (size_t)r->ocr_done;
        /* Over the pages where words were found: a blank page (0) says
         * nothing of how well the others were read. */
        out->ocr_confidence =
            r->ocr_conf_pages ? (int)(r->ocr_conf_sum / r->ocr_conf_pages) : 0;
        r->ocr_pages = NULL;
    }
    return 0;
}

/* Decide the outcome from what was seen. */
static int classify(run_t *r, const extract_limits_t *lim, int status, const struct rusage *ru,
                    extract_result_t *out)
{
    char amount[32];
    out->max_rss_kib = ru->ru_maxrss;
    if (WIFSIGNALED(status))
        out->signal = WTERMSIG(status);
    else
        out->exit_status = WEXITSTATUS(status);
    if (r->too_big) {
        format_size(lim->max_output, amount, sizeof amount);
        snprintf(out->message, sizeof out->message,
                 "The extracted text is larger than the %s limit.", amount);
        return EXTRACT_ETOOBIG;
    }
    if (r->timed_out) {
        format_seconds(lim->timeout_ms, amount, sizeof amount);
        snprintf(out->message, sizeof out->message, "Extraction timed out after %s.", amount);
        return EXTRACT_ETIMEOUT;
    }
    if (r->poll_failed) {
        extract_message(EXTRACT_EINTERNAL, EXTRACT_TYPE_UNKNOWN, out->message,
                        sizeof out->message);
        return EXTRACT_EINTERNAL;
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        long cpu = ru->ru_utime.tv_sec + ru->ru_stime.tv_sec;
        if (lim->cpu_seconds &&
            (sig == SIGXCPU || (sig == SIGKILL && cpu >= (long)lim->cpu_seconds))) {
            /* OCR may have been given more than cpu_seconds (runner.h). */
            snprintf(out->message, sizeof out->message,
                     "Extraction was stopped after using %ld s of CPU time.",
                     cpu > (long)lim->cpu_seconds ? cpu : (long)lim->cpu_seconds);
            return EXTRACT_ECPU;
        }
        if (lim->mem_bytes && (size_t)ru->ru_maxrss * 1024 >= lim->mem_bytes / 2) {
            format_size(lim->mem_bytes, amount, sizeof amount);
            snprintf(out->message, sizeof out->message,
                     "Extraction was stopped: it needed more than the %s of memory "
                     "kvchat allows.", amount);
            return EXTRACT_EMEMORY;
        }
        snprintf(out->message, sizeof out->message,
                 "The text extractor crashed while reading this file (signal %d).", sig);
        return EXTRACT_ECRASHED;
    }
    int st = WEXITSTATUS(status);
    if (st != 0) {
        int code = extract_code_from_exit(st);
        if (code == EXTRACT_OK)
            code = EXTRACT_EINTERNAL;
        take_program_error(r, code, out);
        if (code == EXTRACT_ETOOBIG) {
            format_size(lim->max_output, amount, sizeof amount);
            snprintf(out->message, sizeof out->message,
                     "The extracted text is larger than the %s limit.", amount);
        }
        return code;
    }
    /* Exit 0: trust it only if everything agrees. */
    const char *line;
    size_t n, chars = 0;
    extract_type_t type = EXTRACT_TYPE_UNKNOWN;
    last_line(r, &line, &n);
    if (r->to.fd >= 0) {
        if (r->to.write_errno) {
            snprintf(out->message, sizeof out->message,
                     "The extracted text could not be written (%s).",
                     strerrordesc_np(r->to.write_errno) ? strerrordesc_np(r->to.write_errno)
                                                        : "unknown error");
            return EXTRACT_EINTERNAL;
        }
        if (!parse_success(line, n, &type, &chars) || r->to.bytes == 0 || r->to.ill_formed ||
            r->to.carry_len || r->to.chars != chars || take_ocr(r, out) != 0 ||
            take_marks(r, NULL, r->to.bytes, out) != 0) {
            extract_message(EXTRACT_EPROTOCOL, EXTRACT_TYPE_UNKNOWN, out->message,
                            sizeof out->message);
            return EXTRACT_EPROTOCOL;
        }
        out->type = extract_type_name(type);
        out->chars = chars;
        out->len = r->to.bytes;
        out->message[0] = '\0';
        return EXTRACT_OK;
    }
    const char *text = r->text.data ? r->text.data : "";
    if (!parse_success(line, n, &type, &chars) || r->text.len == 0 ||
        memchr(text, '\0', r->text.len) || !utf8_valid(text, r->text.len) ||
        codepoint_count(text, r->text.len) != chars || take_ocr(r, out) != 0 ||
        take_marks(r, text, r->text.len, out) != 0) {
        extract_message(EXTRACT_EPROTOCOL, EXTRACT_TYPE_UNKNOWN, out->message,
                        sizeof out->message);
        return EXTRACT_EPROTOCOL;
    }
    out->type = extract_type_name(type);
    out->chars = chars;
    out->text = buf_steal(&r->text, &out->len);
    if (!out->text) {
        free(out->marks);
        out->marks = NULL;
        out->n_marks = 0;
        free(out->ocr_pages);
        out->ocr_pages = NULL;
        out->n_ocr_pages = 0;
        extract_message(EXTRACT_EINTERNAL, EXTRACT_TYPE_UNKNOWN, out->message,
                        sizeof out->message);
        return EXTRACT_EINTERNAL;
    }
    out->message[0] = '\0';
    return EXTRACT_OK;
}

static int spawn_failed(extract_result_t *out, const char *what, int err)
{
    char detail[160];
    snprintf(detail, sizeof detail, "%s: %s", what, strerrordesc_np(err) ? strerrordesc_np(err)
                                                                          : "unknown error");
    snprintf(out->message, sizeof out->message,
             "The text extractor could not be started (%s).", detail);
    log_error("extract: cannot start extractor: %s", detail);
    return out->code = EXTRACT_ESPAWN;
}

/* extract_run() and extract_run_to_fd(): text_fd -1 keeps the text in
 * memory. */
static int run(const extract_limits_t *lim, const char *path, const char *client_name,
               int text_fd, const extract_watch_t *watch, extract_result_t *out)
{
    memset(out, 0, sizeof *out);
    out->ocr_confidence = -1;
    out->type = extract_type_name(EXTRACT_TYPE_UNKNOWN);
    out->exit_status = -1;
    if (!lim || !lim->exe || !path || lim->max_output == 0 ||
        lim->max_output > SIZE_MAX / 2) {
        extract_message(EXTRACT_EINTERNAL, EXTRACT_TYPE_UNKNOWN, out->message,
                        sizeof out->message);
        return out->code = EXTRACT_EINTERNAL;
    }
    char exe[EXE_PATH_MAX];
    int err = resolve_exe(lim->exe, exe, sizeof exe);
    if (err)
        return spawn_failed(out, "looking up the program", err);

    /* argv and envp, prepared before the fork. */
    char max_s[32], cpu_s[32], mem_s[32], st_s[16], pr_s[16], ocr_page_s[16], ocr_s[16];
    snprintf(max_s, sizeof max_s, "%zu", lim->max_output);
    snprintf(cpu_s, sizeof cpu_s, "%u", lim->cpu_seconds);
    snprintf(mem_s, sizeof mem_s, "%zu", lim->mem_bytes);
    snprintf(st_s, sizeof st_s, "%d", STRUCTURE_FD);
    snprintf(pr_s, sizeof pr_s, "%d", PROGRESS_FD);
    snprintf(ocr_page_s, sizeof ocr_page_s, "%u", lim->ocr_page_seconds);
    snprintf(ocr_s, sizeof ocr_s, "%u", lim->ocr_seconds);
    bool ocr_on = !lim->ocr_languages || lim->ocr_languages[0];
    const char *argv[32];
    int argc = 0;
    argv[argc++] = exe;
    argv[argc++] = "--sandbox";
    argv[argc++] = "--max-output";
    argv[argc++] = max_s;
    argv[argc++] = "--structure-fd";
    argv[argc++] = st_s;
    argv[argc++] = "--progress-fd";
    argv[argc++] = pr_s;
    if (lim->ocr_languages) {
        argv[argc++] = "--ocr-languages";
        argv[argc++] = lim->ocr_languages;
    }
    if (lim->ocr_page_seconds) {
        argv[argc++] = "--ocr-page-seconds";
        argv[argc++] = ocr_page_s;
    }
    if (lim->ocr_seconds) {
        argv[argc++] = "--ocr-seconds";
        argv[argc++] = ocr_s;
    }
    if (lim->cpu_seconds) {
        argv[argc++] = "--limit-cpu";
        argv[argc++] = cpu_s;
    }
    if (lim->mem_bytes) {
        argv[argc++] = "--limit-mem";
        argv[argc++] = mem_s;
    }
    if (client_name && *client_name) {
        argv[argc++] = "--name";
        argv[argc++] = client_name;
    }
    argv[argc++] = "--";
    argv[argc++] = path;
    argv[argc] = NULL;
    /* Nothing of kvchat's environment (API keys!) reaches the sandbox.
     * OCR runs on one thread: the extraction queue counts one core a run. */
    const char *envp[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C", "OMP_THREAD_LIMIT=1",
                           NULL };

    run_t r = { .pid = -1, .out_r = -1, .err_r = -1, .st_r = -1, .pr_r = -1, .exec_r = -1,
                .pidfd = -1, .to = { .fd = text_fd }, .watch = watch,
                .ocr_extra_ms = ocr_on ? lim->ocr_seconds * 1000u : 0 };
    buf_init(&r.text, lim->max_output);
    buf_init(&r.marks, extract_marks_limit(lim->max_output));
    int out_p[2] = { -1, -1 }, err_p[2] = { -1, -1 }, st_p[2] = { -1, -1 },
        pr_p[2] = { -1, -1 }, exec_p[2] = { -1, -1 };
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0 || pipe2(out_p, O_CLOEXEC) != 0 || pipe2(err_p, O_CLOEXEC) != 0 ||
        pipe2(st_p, O_CLOEXEC) != 0 || pipe2(pr_p, O_CLOEXEC) != 0 ||
        pipe2(exec_p, O_CLOEXEC) != 0) {
        err = errno;
        close_fd(&devnull);
        for (int i = 0; i < 2; i++) {
            close_fd(&out_p[i]);
            close_fd(&err_p[i]);
            close_fd(&st_p[i]);
            close_fd(&pr_p[i]);
            close_fd(&exec_p[i]);
        }
        buf_cleanup(&r.text);
        buf_cleanup(&r.marks);
        return spawn_failed(out, "creating pipes", err);
    }
    child_plan_t plan = {
        .exe = exe,
        .argv = (char *const *)argv,
        .envp = (char *const *)envp,
        .in_fd = devnull,
        .out_fd = out_p[1],
        .err_fd = err_p[1],
        .st_fd = st_p[1],
        .pr_fd = pr_p[1],
        .exec_fd = exec_p[1],
        /* The hard limit leaves OCR its time (runner.h). */
        .cpu = { lim->cpu_seconds,
                 (rlim_t)lim->cpu_seconds + (ocr_on ? lim->ocr_seconds : 0) + 1 },
        .as = { lim->mem_bytes, lim->mem_bytes },
        .fsize = { 0, 0 },
        .core = { 0, 0 },
        .nofile = { CHILD_NOFILE, CHILD_NOFILE },
        .set_cpu = lim->cpu_seconds > 0,
        .set_as = lim->mem_bytes > 0,
        .parent = getpid(),
    };

    /* No signal handler of ours may run in the child before it resets them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    uint64_t start = now_ms();
    pid_t pid = fork();
    if (pid == 0)
        child_exec(&plan);
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close_fd(&devnull);
    close_fd(&out_p[1]);
    close_fd(&err_p[1]);
    close_fd(&st_p[1]);
    close_fd(&pr_p[1]);
    close_fd(&exec_p[1]);
    r.out_r = out_p[0];
    r.err_r = err_p[0];
    r.st_r = st_p[0];
    r.pr_r = pr_p[0];
    r.exec_r = exec_p[0];
    int rc;
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    if (pid < 0) {
        rc = spawn_failed(out, "fork", err);
        goto done;
    }
    r.pid = pid;
    out->pid = (int)pid;
    setpgid(pid, pid);   /* also in the parent: no window where a kill misses */

    /* EOF on the exec pipe means execve succeeded; an int means it failed. */
    int child_errno = 0;
    ssize_t k;
    do
        k = read(r.exec_r, &child_errno, sizeof child_errno);
    while (k < 0 && errno == EINTR);
    close_fd(&r.exec_r);
    if (k == (ssize_t)sizeof child_errno) {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        rc = spawn_failed(out, "exec", child_errno);
        goto done;
    }

    r.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);   /* -1: tick instead */
    fcntl(r.out_r, F_SETFL, O_NONBLOCK);
    fcntl(r.err_r, F_SETFL, O_NONBLOCK);
    fcntl(r.st_r, F_SETFL, O_NONBLOCK);
    fcntl(r.pr_r, F_SETFL, O_NONBLOCK);
    pump(&r, lim, start);

    /* Kill the group unless the leader exited on its own (then it was
     * already killed in pump), wait for the leader without reaping, kill
     * the group once more for stragglers, then reap. */
    if (!r.exited)
        kill(-pid, SIGKILL);
    siginfo_t si;
    while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) != 0 && errno == EINTR)
        ;
    kill(-pid, SIGKILL);
    pid_t w;
    do
        w = wait4(pid, &status, 0, &ru);
    while (w < 0 && errno == EINTR);
    out->elapsed_ms = (unsigned)(now_ms() - start);
    if (w != pid) {
        log_error("extract: cannot reap pid %d: %s (is SIGCHLD ignored?)", (int)pid,
                  strerrordesc_np(errno) ? strerrordesc_np(errno) : "?");
        extract_message(EXTRACT_EINTERNAL, EXTRACT_TYPE_UNKNOWN, out->message,
                        sizeof out->message);
        rc = out->code = EXTRACT_EINTERNAL;
        goto done;
    }
    rc = out->code = classify(&r, lim, status, &ru, out);
    if (rc == EXTRACT_OK)
        log_debug("extract: pid %d: %s, %zu chars in %u ms", (int)pid, out->type, out->chars,
                  out->elapsed_ms);
    else if (extract_error_is_internal(rc) || rc == EXTRACT_ECRASHED || rc == EXTRACT_ETIMEOUT ||
             rc == EXTRACT_ECPU || rc == EXTRACT_EMEMORY)
        log_warn("extract: pid %d: %s (exit %d, signal %d, %ld KiB peak, %u ms)", (int)pid,
                 extract_strerror(rc), out->exit_status, out->signal, out->max_rss_kib,
                 out->elapsed_ms);
    else
        log_info("extract: pid %d: %s", (int)pid, extract_strerror(rc));

done:
    close_fd(&r.out_r);
    close_fd(&r.err_r);
    close_fd(&r.st_r);
    close_fd(&r.pr_r);
    close_fd(&r.exec_r);
    close_fd(&r.pidfd);
    buf_cleanup(&r.text);
    buf_cleanup(&r.marks);
    free(r.ocr_pages);
    return out->code = rc;
}

int extract_run(const extract_limits_t *lim, const char *path, const char *client_name,
                extract_result_t *out)
{
    return run(lim, path, client_name, -1, NULL, out);
}

int extract_run_to_fd(const extract_limits_t *lim, const char *path, const char *client_name,
                      int text_fd, extract_result_t *out)
{
    if (text_fd < 0) {
        memset(out, 0, sizeof *out);
        out->type = extract_type_name(EXTRACT_TYPE_UNKNOWN);
        out->exit_status = -1;
        extract_message(EXTRACT_EINTERNAL, EXTRACT_TYPE_UNKNOWN, out->message,
                        sizeof out->message);
        return out->code = EXTRACT_EINTERNAL;
    }
    return run(lim, path, client_name, text_fd, NULL, out);
}

int extract_run_watched(const extract_limits_t *lim, const char *path, const char *client_name,
                        int text_fd, const extract_watch_t *watch, extract_result_t *out)
{
    return run(lim, path, client_name, text_fd < 0 ? -1 : text_fd, watch, out);
}
