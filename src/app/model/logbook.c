/* logbook.c — see logbook.h.
 *
 * Invariants:
 *  - lb->lock guards the current-run record, the list of open runs, file
 *    naming and rotation; run->lock guards one run's descriptor and its
 *    partial line. Order: lb->lock may be taken while holding run->lock
 *    (logbook_run_close), never the other way round.
 *  - Every line reaches the file with a single write() of stamp + content +
 *    newline; a run's partial line is at most LOGBOOK_LINE_MAX bytes.
 *  - Reading back (logbook_recent) needs at most one block, one fragment and
 *    one assembled line in memory, plus the lines it returns.
 */
#include "app/model/logbook.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pattern.h"
#include "common/utf8.h"

#define NAME_PREFIX "engine-"
#define NAME_SUFFIX ".log"
#define STAMP_LEN 15               /* YYYYmmdd-HHMMSS */
#define MAX_SAME_SECOND 999        /* engine-<stamp>-999.log is the last try */
#define LINE_STAMP_LEN 25          /* "2026-11-25T03:52:31.123Z " */
#define READ_BLOCK 65536           /* logbook_recent reads this much at a time */
#define KEEP_LINE_MAX 65536        /* longest line logbook_recent returns */
#define SEARCH_MS_DEFAULT 2000

struct logbook_run {
    logbook_t *lb;
    pthread_mutex_t lock;
    int fd;
    char id[LOGBOOK_ID_MAX];
    char path[LOGBOOK_PATH_MAX];
    double started;
    char pending[LOGBOOK_LINE_MAX];
    size_t plen;
    logbook_run_t *next_open;      /* in lb->open_runs; guarded by lb->lock */
};

struct logbook {
    pthread_mutex_t lock;
    char dir[LOGBOOK_PATH_MAX];
    unsigned keep;
    size_t scan_max;
    unsigned search_ms;
    bool have_current;
    logbook_current_t current;
    logbook_run_t *current_run;    /* the current run while it is open */
    logbook_run_t *open_runs;
};

const char *logbook_strerror(int rc)
{
    switch (rc) {
    case LOGBOOK_OK: return "ok";
    case LOGBOOK_EINVAL: return "invalid argument";
    case LOGBOOK_ENOMEM: return "out of memory";
    case LOGBOOK_EIO: return "log file input/output error";
    case LOGBOOK_ENONE: return "No active log session";
    case LOGBOOK_EREGEX: return "regular expression invalid, refused or too costly";
    case LOGBOOK_EEXIST: return "too many log files started in the same second";
    default: return "unknown logbook error";
    }
}

void logbook_config_default(logbook_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->keep = 50;
    cfg->scan_max = (size_t)64 << 20;
    cfg->search_ms = SEARCH_MS_DEFAULT;
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

/* dir + "/" + name into out (size n); cut to fit (logbook_new checked
 * that a run id always fits after the directory). */
static void path_join(char *out, size_t n, const char *dir, const char *name)
{
    str_copy(out, n, dir);
    size_t len = strlen(out);
    if (len + 1 < n) {
        out[len++] = '/';
        str_copy(out + len, n - len, name);
    }
}

/* ---- names ---- */

/* Parse "engine-YYYYmmdd-HHMMSS[-N].log": the stamp (15 chars copied into
 * stamp[16]) and the sequence number (1 without suffix). */
static bool name_parse(const char *name, char *stamp, unsigned *seq)
{
    size_t plen = strlen(NAME_PREFIX);
    if (strncmp(name, NAME_PREFIX, plen) != 0)
        return false;
    const char *s = name + plen;
    for (int i = 0; i < STAMP_LEN; i++) {
        bool ok = i == 8 ? s[i] == '-' : (s[i] >= '0' && s[i] <= '9');
        if (!ok)
            return false;
    }
    const char *p = s + STAMP_LEN;
    unsigned n = 1;
    if (*p == '-') {
        p++;
        if (*p < '1' || *p > '9')
            return false;
        n = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 4) {
            n = n * 10 + (unsigned)(*p - '0');
            p++;
            digits++;
        }
        if (n < 2 || n > MAX_SAME_SECOND)
            return false;
    }
    if (strcmp(p, NAME_SUFFIX) != 0)
        return false;
    memcpy(stamp, s, STAMP_LEN);
    stamp[STAMP_LEN] = '\0';
    *seq = n;
    return true;
}

/* Epoch seconds of a YYYYmmdd-HHMMSS stamp read as UTC. */
static int64_t stamp_epoch(const char *stamp)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!strptime(stamp, "%Y%m%d-%H%M%S", &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

/* ---- writing ---- */

static bool line_has_stamp(const char *s, size_t n)
{
    /* YYYY-MM-DD[T ]HH:MM:SS */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    if (n < sizeof shape - 1)
        return false;
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        char c = s[i];
        switch (shape[i]) {
        case 'd':
            if (c < '0' || c > '9')
                return false;
            break;
        case 'T':
            if (c != 'T' && c != ' ')
                return false;
            break;
        default:
            if (c != shape[i])
                return false;
        }
    }
    return true;
}

/* "2026-11-25T03:52:31.123Z " into buf (LINE_STAMP_LEN + 1 bytes). */
static void line_stamp(char *buf, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%s.%03ldZ ", day, ts.tv_nsec / 1000000L);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Write one line (n <= LOGBOOK_LINE_MAX), stamped unless it has a stamp.
 * Run lock held. */
static int run_emit(logbook_run_t *run, const char *line, size_t n)
{
    char buf[LINE_STAMP_LEN + 1 + LOGBOOK_LINE_MAX + 1];
    size_t off = 0;
    if (!line_has_stamp(line, n)) {
        line_stamp(buf, sizeof buf);
        off = strlen(buf);
    }
    memcpy(buf + off, line, n);
    off += n;
    buf[off++] = '\n';
    if (run->fd < 0 || write_all(run->fd, buf, off) != 0)
        return LOGBOOK_EIO;
    return LOGBOOK_OK;
}

/* mkdir -p; returns 0 or an errno value. */
static int make_dirs(const char *path)
{
    char tmp[LOGBOOK_PATH_MAX];
    str_copy(tmp, sizeof tmp, path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return errno;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return errno;
    struct stat st;
    if (stat(tmp, &st) != 0)
        return errno;
    return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
}

int logbook_new(const logbook_config_t *cfg, logbook_t **out)
{
    *out = NULL;
    if (!cfg || !cfg->dir || !*cfg->dir)
        return LOGBOOK_EINVAL;
    /* Room for "/" + the longest id. */
    if (strlen(cfg->dir) + 1 + LOGBOOK_ID_MAX >= LOGBOOK_PATH_MAX)
        return LOGBOOK_EINVAL;
    int err = make_dirs(cfg->dir);
    if (err) {
        log_error("logbook: cannot create logs directory %s: %s", cfg->dir, strerror(err));
        return LOGBOOK_EIO;
    }
    logbook_t *lb = calloc(1, sizeof *lb);
    if (!lb)
        return LOGBOOK_ENOMEM;
    pthread_mutex_init(&lb->lock, NULL);
    str_copy(lb->dir, sizeof lb->dir, cfg->dir);
    size_t dl = strlen(lb->dir);
    while (dl > 1 && lb->dir[dl - 1] == '/')
        lb->dir[--dl] = '\0';
    lb->keep = cfg->keep;
    lb->scan_max = cfg->scan_max ? cfg->scan_max : READ_BLOCK;
    lb->search_ms = cfg->search_ms ? cfg->search_ms : SEARCH_MS_DEFAULT;
    *out = lb;
    return LOGBOOK_OK;
}

void logbook_free(logbook_t *lb)
{
    if (!lb)
        return;
    if (lb->open_runs)
        log_error("logbook: freed with a run still open (%s)", lb->open_runs->id);
    pthread_mutex_destroy(&lb->lock);
    free(lb);
}

/* ---- listing ---- */

typedef struct {
    char name[LOGBOOK_ID_MAX];
    char stamp[STAMP_LEN + 1];
    unsigned seq;
    uint64_t size;
    int64_t mtime;
} entry_t;

/* Newest first. */
static int entry_cmp(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    int c = strcmp(y->stamp, x->stamp);
    if (c)
        return c;
    return (y->seq > x->seq) - (y->seq < x->seq);
}

/* The run files of the directory, newest first (malloc'd array). */
static int list_runs(const char *dir, entry_t **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        log_error("logbook: cannot read %s: %s", dir, strerror(errno));
        return LOGBOOK_EIO;
    }
    entry_t *items = NULL;
    size_t n = 0, cap = 0;
    int rc = LOGBOOK_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        entry_t e;
        memset(&e, 0, sizeof e);
        if (strlen(de->d_name) >= sizeof e.name || !name_parse(de->d_name, e.stamp, &e.seq))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        str_copy(e.name, sizeof e.name, de->d_name);
        e.size = (uint64_t)st.st_size;
        e.mtime = (int64_t)st.st_mtime;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            entry_t *grown = realloc(items, ncap * sizeof *items);
            if (!grown) {
                rc = LOGBOOK_ENOMEM;
                break;
            }
            items = grown;
            cap = ncap;
        }
        items[n++] = e;
    }
    closedir(d);
    if (rc) {
        free(items);
        return rc;
    }
    if (n > 1)
        qsort(items, n, sizeof *items, entry_cmp);
    *out = items;
    *count = n;
    return LOGBOOK_OK;
}

static bool is_open_name(const logbook_t *lb, const char *name)
{
    for (const logbook_run_t *r = lb->open_runs; r; r = r->next_open)
        if (strcmp(r->id, name) == 0)
            return true;
    return false;
}

/* Delete run files beyond the newest lb->keep, sparing open runs.
 * lb->lock held. Failures are logged, not returned: the new run is fine. */
static void rotate(logbook_t *lb)
{
    if (lb->keep == 0)
        return;
    entry_t *items;
    size_t n;
    if (list_runs(lb->dir, &items, &n) != LOGBOOK_OK)
        return;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_open_name(lb, items[i].name) || kept < lb->keep) {
            kept++;
            continue;
        }
        char path[LOGBOOK_PATH_MAX];
        path_join(path, sizeof path, lb->dir, items[i].name);
        if (unlink(path) != 0 && errno != ENOENT)
            log_warn("logbook: cannot delete old log %s: %s", path, strerror(errno));
    }
    free(items);
}

int logbook_run_open(logbook_t *lb, logbook_run_t **out)
{
    *out = NULL;
    if (!lb)
        return LOGBOOK_EINVAL;
    logbook_run_t *run = calloc(1, sizeof *run);
    if (!run)
        return LOGBOOK_ENOMEM;
    pthread_mutex_init(&run->lock, NULL);
    run->lb = lb;
    run->fd = -1;

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    run->started = (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000L) / 1000.0;
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[STAMP_LEN + 8];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);

    int rc = LOGBOOK_EEXIST;
    pthread_mutex_lock(&lb->lock);
    /* Past the highest number taken in this second, not the first free one:
     * rotation may have deleted a lower one, and reusing it would sort the
     * new run before older ones. */
    unsigned first = 1;
    entry_t *items;
    size_t n;
    if (list_runs(lb->dir, &items, &n) == LOGBOOK_OK) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(items[i].stamp, stamp) == 0 && items[i].seq >= first)
                first = items[i].seq + 1;
        free(items);
    }
    for (unsigned seq = first; seq <= MAX_SAME_SECOND; seq++) {
        if (seq == 1)
            snprintf(run->id, sizeof run->id, NAME_PREFIX "%s" NAME_SUFFIX, stamp);
        else
            snprintf(run->id, sizeof run->id, NAME_PREFIX "%s-%u" NAME_SUFFIX, stamp, seq);
        path_join(run->path, sizeof run->path, lb->dir, run->id);
        run->fd = open(run->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
        if (run->fd >= 0) {
            rc = LOGBOOK_OK;
            break;
        }
        if (errno != EEXIST) {
            log_error("logbook: cannot create %s: %s", run->path, strerror(errno));
            rc = LOGBOOK_EIO;
            break;
        }
    }
    if (rc) {
        pthread_mutex_unlock(&lb->lock);
        pthread_mutex_destroy(&run->lock);
        free(run);
        return rc;
    }
    run->next_open = lb->open_runs;
    lb->open_runs = run;
    lb->have_current = true;
    lb->current_run = run;
    str_copy(lb->current.session_id, sizeof lb->current.session_id, run->id);
    str_copy(lb->current.path, sizeof lb->current.path, run->path);
    lb->current.start_time = run->started;
    lb->current.active = true;
    rotate(lb);
    pthread_mutex_unlock(&lb->lock);
    *out = run;
    return LOGBOOK_OK;
}

const char *logbook_run_id(const logbook_run_t *run) { return run->id; }
const char *logbook_run_path(const logbook_run_t *run) { return run->path; }
double logbook_run_started(const logbook_run_t *run) { return run->started; }

/* Emit the partial line as one line (without a trailing '\r'). */
static int run_flush_pending(logbook_run_t *run, size_t n, logbook_line_fn fn, void *user)
{
    size_t len = n;
    if (len > 0 && run->pending[len - 1] == '\r')
        len--;
    int rc = run_emit(run, run->pending, len);
    if (fn)
        fn(run->pending, len, user);
    memmove(run->pending, run->pending + n, run->plen - n);
    run->plen -= n;
    return rc;
}

int logbook_run_feed(logbook_run_t *run, const char *data, size_t len, logbook_line_fn fn,
                     void *user)
{
    if (!run || (!data && len))
        return LOGBOOK_EINVAL;
    int rc = LOGBOOK_OK;
    pthread_mutex_lock(&run->lock);
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t seg = nl ? (size_t)(nl - data) : len;
        size_t room = LOGBOOK_LINE_MAX - run->plen;
        size_t take = seg < room ? seg : room;
        memcpy(run->pending + run->plen, data, take);
        run->plen += take;
        data += take;
        len -= take;
        seg -= take;
        if (run->plen == LOGBOOK_LINE_MAX && seg > 0) {
            /* Over-long: cut at a character boundary; the rest (at most a
             * few bytes of one character) starts the next piece. */
            size_t cut = utf8_complete_len(run->pending, run->plen);
            if (cut == 0)
                cut = run->plen;
            if (run_flush_pending(run, cut, fn, user))
                rc = LOGBOOK_EIO;
            continue;
        }
        if (nl && seg == 0) {
            if (run_flush_pending(run, run->plen, fn, user))
                rc = LOGBOOK_EIO;
            data++;
            len--;
        }
    }
    pthread_mutex_unlock(&run->lock);
    return rc;
}

int logbook_run_printf(logbook_run_t *run, const char *fmt, ...)
{
    if (!run || !fmt)
        return LOGBOOK_EINVAL;
    char line[LOGBOOK_LINE_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (k < 0)
        return LOGBOOK_EINVAL;
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    for (size_t i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    pthread_mutex_lock(&run->lock);
    int rc = run_emit(run, line, n);
    pthread_mutex_unlock(&run->lock);
    return rc;
}

void logbook_run_close(logbook_run_t *run)
{
    if (!run)
        return;
    pthread_mutex_lock(&run->lock);
    if (run->plen > 0)
        run_flush_pending(run, run->plen, NULL, NULL);
    if (run->fd >= 0)
        close(run->fd);
    run->fd = -1;
    pthread_mutex_unlock(&run->lock);

    logbook_t *lb = run->lb;
    pthread_mutex_lock(&lb->lock);
    for (logbook_run_t **pp = &lb->open_runs; *pp; pp = &(*pp)->next_open) {
        if (*pp == run) {
            *pp = run->next_open;
            break;
        }
    }
    if (lb->current_run == run) {
        lb->current_run = NULL;
        lb->current.active = false;
    }
    pthread_mutex_unlock(&lb->lock);
    pthread_mutex_destroy(&run->lock);
    free(run);
}

/* ---- reading ---- */

int logbook_current(logbook_t *lb, logbook_current_t *out)
{
    memset(out, 0, sizeof *out);
    if (!lb)
        return LOGBOOK_EINVAL;
    pthread_mutex_lock(&lb->lock);
    int rc = LOGBOOK_ENONE;
    if (lb->have_current) {
        *out = lb->current;
        rc = LOGBOOK_OK;
    }
    pthread_mutex_unlock(&lb->lock);
    return rc;
}

void logbook_lines_cleanup(logbook_lines_t *res)
{
    if (!res)
        return;
    for (size_t i = 0; i < res->count; i++)
        free(res->lines[i]);
    free(res->lines);
    res->lines = NULL;
    res->count = 0;
}

/* State of one backwards scan. */
typedef struct {
    pattern_t *re;            /* NULL: every line matches */
    size_t want;
    char **found;             /* newest first while scanning */
    size_t n_found;
    char *frag;               /* the known tail of the line being assembled */
    size_t frag_len;
    char *line;               /* assembly buffer, KEEP_LINE_MAX + 1 */
    bool seen_end;            /* the segment after the file's last newline is done */
    bool nomem;
    int halt;                 /* a PATTERN_* error of pattern_match: stop */
} scan_t;

/* Put data[0..n) in front of the fragment, keeping at most KEEP_LINE_MAX
 * bytes (the line's end is kept). */
static void frag_prepend(scan_t *s, const char *data, size_t n)
{
    size_t room = KEEP_LINE_MAX - s->frag_len;
    size_t m = n < room ? n : room;
    if (m == 0)
        return;
    memmove(s->frag + m, s->frag, s->frag_len);
    memcpy(s->frag, data + n - m, m);
    s->frag_len += m;
}

/* One whole line: seg[0..n) followed by the fragment. */
static void scan_line(scan_t *s, const char *seg, size_t n)
{
    if (!s->seen_end) {
        /* What follows the file's last newline is empty, or a line still
         * being written: not a line yet. */
        s->seen_end = true;
        s->frag_len = 0;
        return;
    }
    size_t total = n + s->frag_len;
    size_t skip = total > KEEP_LINE_MAX ? total - KEEP_LINE_MAX : 0;
    size_t off = 0;
    if (skip < n) {
        memcpy(s->line, seg + skip, n - skip);
        off = n - skip;
        memcpy(s->line + off, s->frag, s->frag_len);
        off += s->frag_len;
    } else {
        size_t fskip = skip - n;
        memcpy(s->line, s->frag + fskip, s->frag_len - fskip);
        off = s->frag_len - fskip;
    }
    s->line[off] = '\0';
    s->frag_len = 0;
    if (off > 0 && s->line[off - 1] == '\r')
        s->line[--off] = '\0';
    if (s->re) {
        int m = pattern_match(s->re, s->line, off);
        if (m != PATTERN_MATCH) {
            if (m != PATTERN_NOMATCH)
                s->halt = m;
            return;
        }
    }
    char *copy = malloc(off + 1);
    if (!copy) {
        s->nomem = true;
        return;
    }
    memcpy(copy, s->line, off + 1);
    s->found[s->n_found++] = copy;
}

int logbook_recent(logbook_t *lb, size_t lines, const char *pattern, bool icase,
                   logbook_lines_t *out)
{
    memset(out, 0, sizeof *out);
    out->complete = true;
    if (!lb || lines < 1 || lines > LOGBOOK_RECENT_MAX)
        return LOGBOOK_EINVAL;

    pattern_t *re = NULL;
    if (pattern && *pattern) {
        int pr = pattern_compile(pattern, icase ? PATTERN_ICASE : 0, &re, out->error,
                                 sizeof out->error);
        if (pr == PATTERN_ENOMEM)
            return LOGBOOK_ENOMEM;
        if (pr != PATTERN_OK)
            return LOGBOOK_EREGEX;
    }

    char path[LOGBOOK_PATH_MAX];
    pthread_mutex_lock(&lb->lock);
    bool have = lb->have_current;
    size_t scan_max = lb->scan_max;
    unsigned search_ms = lb->search_ms;
    if (have) {
        str_copy(path, sizeof path, lb->current.path);
        str_copy(out->session_id, sizeof out->session_id, lb->current.session_id);
    }
    pthread_mutex_unlock(&lb->lock);
    if (!have) {
        pattern_free(re);
        return LOGBOOK_ENONE;
    }

    int rc = LOGBOOK_OK;
    scan_t s;
    memset(&s, 0, sizeof s);
    s.re = re;
    s.want = lines;
    char *block = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        log_warn("logbook: cannot read %s: %s", path, strerror(errno));
        rc = LOGBOOK_EIO;
        goto done;
    }
    s.found = calloc(lines, sizeof *s.found);
    s.frag = malloc(KEEP_LINE_MAX);
    s.line = malloc(KEEP_LINE_MAX + 1);
    block = malloc(READ_BLOCK);
    if (!s.found || !s.frag || !s.line || !block) {
        rc = LOGBOOK_ENOMEM;
        goto done;
    }

    /* The budget covers the whole scan, reading included. */
    if (re)
        pattern_set_budget(re, search_ms);
    off_t pos = st.st_size;
    size_t scanned = 0;
    while (pos > 0 && s.n_found < lines && !s.nomem && !s.halt) {
        if (scanned >= scan_max) {
            out->complete = false;
            break;
        }
        size_t n = pos < READ_BLOCK ? (size_t)pos : READ_BLOCK;
        size_t got = 0;
        while (got < n) {
            ssize_t k = pread(fd, block + got, n - got, pos - (off_t)n + (off_t)got);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                log_warn("logbook: short read of %s", path);
                rc = LOGBOOK_EIO;
                goto done;
            }
            got += (size_t)k;
        }
        pos -= (off_t)n;
        scanned += n;
        size_t end = n;
        while (end > 0 && s.n_found < lines && !s.nomem && !s.halt) {
            char *nl = memrchr(block, '\n', end);
            if (!nl)
                break;
            size_t at = (size_t)(nl - block);
            scan_line(&s, nl + 1, end - at - 1);
            end = at;
        }
        if (s.n_found < lines && end > 0 && !s.halt)
            frag_prepend(&s, block, end);
    }
    /* The file's first line has no newline before it. */
    if (pos == 0 && s.n_found < lines && !s.nomem && !s.halt && s.seen_end && s.frag_len > 0)
        scan_line(&s, "", 0);
    if (s.nomem || s.halt == PATTERN_ENOMEM) {
        rc = LOGBOOK_ENOMEM;
        goto done;
    }
    if (s.halt == PATTERN_ETIME) {
        /* Like scan_max: the newest matches found in time are the answer. */
        log_warn("logbook: a log search stopped after %u ms of matching", search_ms);
        out->complete = false;
        out->timed_out = true;
    } else if (s.halt == PATTERN_ECOSTLY) {
        log_warn("logbook: a log search was refused: its pattern is too costly");
        snprintf(out->error, sizeof out->error,
                 "Pattern too costly: on a line of the log it needed more than %d backtracking "
                 "steps, %d levels or %d MiB; nested repetition such as (a+)+ or (a|aa)+ "
                 "backtracks exponentially, simplify it",
                 PATTERN_STEPS_MAX, PATTERN_DEPTH_MAX, PATTERN_HEAP_KIB / 1024);
        rc = LOGBOOK_EREGEX;
        goto done;
    } else if (s.halt) {
        log_error("logbook: matching a log line failed: %s", pattern_strerror(s.halt));
        rc = LOGBOOK_EIO;
        goto done;
    }
    /* Oldest first. */
    for (size_t i = 0; i < s.n_found / 2; i++) {
        char *t = s.found[i];
        s.found[i] = s.found[s.n_found - 1 - i];
        s.found[s.n_found - 1 - i] = t;
    }
    out->lines = s.found;
    out->count = s.n_found;
    s.found = NULL;
    s.n_found = 0;

done:
    if (s.found) {
        for (size_t i = 0; i < s.n_found; i++)
            free(s.found[i]);
        free(s.found);
    }
    free(s.frag);
    free(s.line);
    free(block);
    if (fd >= 0)
        close(fd);
    pattern_free(re);
    if (rc) {
        out->complete = true;
        out->timed_out = false;
    }
    return rc;
}

void logbook_sessions_cleanup(logbook_sessions_t *list)
{
    if (!list)
        return;
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

int logbook_sessions(logbook_t *lb, logbook_sessions_t *out)
{
    memset(out, 0, sizeof *out);
    if (!lb)
        return LOGBOOK_EINVAL;
    entry_t *items;
    size_t n;
    /* Under the lock: rotation cannot delete files while we list them, and
     * the open-run flags are consistent with the listing. */
    pthread_mutex_lock(&lb->lock);
    int rc = list_runs(lb->dir, &items, &n);
    if (rc) {
        pthread_mutex_unlock(&lb->lock);
        return rc;
    }
    logbook_session_t *res = n ? calloc(n, sizeof *res) : NULL;
    if (n && !res) {
        pthread_mutex_unlock(&lb->lock);
        free(items);
        return LOGBOOK_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        str_copy(res[i].filename, sizeof res[i].filename, items[i].name);
        path_join(res[i].path, sizeof res[i].path, lb->dir, items[i].name);
        res[i].size = items[i].size;
        res[i].created = stamp_epoch(items[i].stamp);
        res[i].modified = items[i].mtime;
        res[i].active = is_open_name(lb, items[i].name);
    }
    pthread_mutex_unlock(&lb->lock);
    free(items);
    out->items = res;
    out->count = n;
    return LOGBOOK_OK;
}
