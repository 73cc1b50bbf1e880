/* test_logbook.c — the engine's per-run log files (logbook.h).
 *
 * - run names: engine-YYYYmmdd-HHMMSS.log, "-2" for a second run in the
 *   same second; the current run, and ENONE before the first;
 * - fed output: lines in pieces, CRLF, stamps added only where missing,
 *   over-long lines split at a UTF-8 boundary, a partial last line written
 *   at close, the per-line callback;
 * - logbook_recent: the last N lines in order across read-block boundaries,
 *   filtering (case and not), bad regex, count bounds, the scan limit on a
 *   big file, a foreign line longer than the longest kept;
 * - hostile filters have bounded cost: the security review's request
 *   (lines=1000, pattern a{1,1000}{1,1000}: 25 s and 8 GB with glibc) is
 *   refused with its reason, a pattern that backtracks exponentially on the
 *   log's lines answers "too costly", one that is merely slow stops at the
 *   search's time budget with the lines found so far (complete = false);
 *   peak memory stays far below the old 8 GB;
 * - rotation keeps the newest K and leaves other files alone; sessions are
 *   listed newest first with sizes and the active flag;
 * - lines written by two threads at once are never mixed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/model/logbook.h"
#include "common/pattern.h"

typedef struct {
    char dir[256];
    logbook_t *lb;
} fx_t;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static fx_t *fx_new_ms(unsigned keep, size_t scan_max, unsigned search_ms)
{
    fx_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/kvchat-logbook-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    char logs[300];
    snprintf(logs, sizeof logs, "%s/logs/nested", fx->dir);   /* created by logbook_new */
    logbook_config_t cfg;
    logbook_config_default(&cfg);
    assert_int_equal(cfg.keep, 50);
    assert_int_equal(cfg.search_ms, 2000);
    cfg.dir = logs;
    cfg.keep = keep;
    if (scan_max)
        cfg.scan_max = scan_max;
    if (search_ms)
        cfg.search_ms = search_ms;
    assert_int_equal(logbook_new(&cfg, &fx->lb), LOGBOOK_OK);
    return fx;
}

static fx_t *fx_new(unsigned keep, size_t scan_max)
{
    return fx_new_ms(keep, scan_max, 0);
}

/* Bound of the peak RSS growth of a hostile search (glibc took 8 GB).
 * Under ASan freed blocks stay in quarantine (up to 256 MiB), so the peak
 * also counts memory PCRE2 has given back. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_BOUND_KIB (256 * 1024)
#else
#define RSS_BOUND_KIB (64 * 1024)
#endif

static long peak_rss_kib(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

static void fx_free(fx_t *fx)
{
    logbook_free(fx->lb);
    rm_tree(fx->dir);
    free(fx);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

/* Split text into lines (modifies it); returns the count. */
static size_t split_lines(char *text, char **lines, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l && n < max; l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    return n;
}

static bool matches(const char *s, const char *ere)
{
    regex_t re;
    assert_int_equal(regcomp(&re, ere, REG_EXTENDED | REG_NOSUB), 0);
    bool m = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return m;
}

#define STAMP_RE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "

static void test_names_and_current(void **state)
{
    (void)state;
    fx_t *fx = fx_new(50, 0);
    logbook_current_t cur;
    assert_int_equal(logbook_current(fx->lb, &cur), LOGBOOK_ENONE);
    logbook_lines_t res;
    assert_int_equal(logbook_recent(fx->lb, 10, NULL, false, &res), LOGBOOK_ENONE);
    assert_null(res.lines);

    logbook_run_t *run = NULL;
    assert_int_equal(logbook_run_open(fx->lb, &run), LOGBOOK_OK);
    const char *id = logbook_run_id(run);
    assert_true(matches(id, "^engine-[0-9]{8}-[0-9]{6}(-[0-9]+)?\\.log$"));
    assert_non_null(strstr(logbook_run_path(run), "/logs/nested/engine-"));
    assert_true(logbook_run_started(run) > 1.6e9);
    struct stat st;
    assert_int_equal(stat(logbook_run_path(run), &st), 0);

    assert_int_equal(logbook_current(fx->lb, &cur), LOGBOOK_OK);
    assert_string_equal(cur.session_id, id);
    assert_string_equal(cur.path, logbook_run_path(run));
    assert_true(cur.active);
    assert_true(cur.start_time == logbook_run_started(run));
    char saved[LOGBOOK_ID_MAX];
    snprintf(saved, sizeof saved, "%s", id);
    logbook_run_close(run);
    assert_int_equal(logbook_current(fx->lb, &cur), LOGBOOK_OK);
    assert_string_equal(cur.session_id, saved);
    assert_false(cur.active);

    /* Two runs in one second: the second gets "-2" (retry until a pair
     * falls in the same second, which is nearly always the first one). */
    bool checked = false;
    for (int attempt = 0; attempt < 20 && !checked; attempt++) {
        logbook_run_t *a = NULL, *b = NULL;
        assert_int_equal(logbook_run_open(fx->lb, &a), LOGBOOK_OK);
        assert_int_equal(logbook_run_open(fx->lb, &b), LOGBOOK_OK);
        const char *ia = logbook_run_id(a), *ib = logbook_run_id(b);
        assert_string_not_equal(ia, ib);
        if (strncmp(ia, ib, strlen("engine-YYYYmmdd-HHMMSS")) == 0) {
            /* b is the next free name after a's. */
            char expect[LOGBOOK_ID_MAX];
            unsigned seq = 1;
            sscanf(ia + strlen("engine-YYYYmmdd-HHMMSS"), "-%u", &seq);
            snprintf(expect, sizeof expect, "%.22s-%u.log", ia, seq + 1);
            assert_string_equal(ib, expect);
            checked = true;
        }
        /* The newest is current, also while the older one is open. */
        assert_int_equal(logbook_current(fx->lb, &cur), LOGBOOK_OK);
        assert_string_equal(cur.session_id, ib);
        logbook_run_close(b);
        logbook_run_close(a);
    }
    assert_true(checked);
    logbook_run_close(NULL);
    logbook_free(NULL);
    fx_free(fx);
}

typedef struct {
    int calls;
    char last[LOGBOOK_LINE_MAX + 1];
} seen_t;

static void on_line(const char *line, size_t len, void *user)
{
    seen_t *s = user;
    s->calls++;
    snprintf(s->last, sizeof s->last, "%.*s", (int)len, line);
}

static void test_feed_lines(void **state)
{
    (void)state;
    fx_t *fx = fx_new(50, 0);
    logbook_run_t *run = NULL;
    assert_int_equal(logbook_run_open(fx->lb, &run), LOGBOOK_OK);
    char path[LOGBOOK_PATH_MAX];
    snprintf(path, sizeof path, "%s", logbook_run_path(run));
    seen_t seen = { 0 };
    const char *own = "2026-01-02T03:04:05.678Z INFO  engine: ready: tiny";
    assert_int_equal(logbook_run_feed(run, "hello wor", 9, on_line, &seen), LOGBOOK_OK);
    assert_int_equal(seen.calls, 0);   /* no line end yet */
    assert_int_equal(logbook_run_feed(run, "ld\r\n", 4, on_line, &seen), LOGBOOK_OK);
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.last, "hello world");
    char buf[256];
    snprintf(buf, sizeof buf, "%s\n\nno newline at the end", own);
    assert_int_equal(logbook_run_feed(run, buf, strlen(buf), on_line, &seen), LOGBOOK_OK);
    assert_int_equal(seen.calls, 3);
    assert_int_equal(logbook_run_printf(run, "kvchat: note %d\n", 42), LOGBOOK_OK);
    logbook_run_close(run);

    char *text = slurp(path, NULL);
    assert_int_equal(text[strlen(text) - 1], '\n');
    char *lines[16];
    /* strtok skips the empty line: count raw newlines separately. */
    size_t newlines = 0;
    for (char *c = text; *c; c++)
        newlines += *c == '\n';
    assert_int_equal(newlines, 5);
    size_t n = split_lines(text, lines, 16);
    assert_int_equal(n, 5);   /* the empty line got a stamp, so it is not empty */
    assert_true(matches(lines[0], STAMP_RE "hello world$"));
    assert_string_equal(lines[1], own);                         /* no second stamp */
    assert_true(matches(lines[2], STAMP_RE "$"));
    assert_true(matches(lines[3], STAMP_RE "kvchat: note 42$"));
    assert_true(matches(lines[4], STAMP_RE "no newline at the end$"));   /* written at close */
    free(text);
    fx_free(fx);
}

static void test_long_lines_split(void **state)
{
    (void)state;
    fx_t *fx = fx_new(50, 0);
    logbook_run_t *run = NULL;
    assert_int_equal(logbook_run_open(fx->lb, &run), LOGBOOK_OK);
    char path[LOGBOOK_PATH_MAX];
    snprintf(path, sizeof path, "%s", logbook_run_path(run));
    size_t big = 2 * LOGBOOK_LINE_MAX + 100;
    char *data = malloc(big + 1);
    memset(data, 'a', big);
    data[big] = '\n';
    seen_t seen = { 0 };
    /* In uneven pieces. */
    size_t off = 0, step = 1000;
    while (off < big + 1) {
        size_t k = big + 1 - off < step ? big + 1 - off : step;
        assert_int_equal(logbook_run_feed(run, data + off, k, on_line, &seen), LOGBOOK_OK);
        off += k;
        step += 777;
    }
    assert_int_equal(seen.calls, 3);
    /* A two-byte character across the limit moves whole to the next piece. */
    char utf[LOGBOOK_LINE_MAX + 8];
    memset(utf, 'b', LOGBOOK_LINE_MAX - 1);
    memcpy(utf + LOGBOOK_LINE_MAX - 1, "\xc3\xa9z\n", 4);
    assert_int_equal(logbook_run_feed(run, utf, LOGBOOK_LINE_MAX + 3, on_line, &seen),
                     LOGBOOK_OK);
    /* Exactly LOGBOOK_LINE_MAX bytes then the newline: one line, not two. */
    memset(utf, 'c', LOGBOOK_LINE_MAX);
    utf[LOGBOOK_LINE_MAX] = '\n';
    assert_int_equal(logbook_run_feed(run, utf, LOGBOOK_LINE_MAX, on_line, &seen), LOGBOOK_OK);
    assert_int_equal(logbook_run_feed(run, utf + LOGBOOK_LINE_MAX, 1, on_line, &seen),
                     LOGBOOK_OK);
    logbook_run_close(run);
    free(data);

    char *text = slurp(path, NULL);
    char *lines[16];
    size_t n = split_lines(text, lines, 16);
    assert_int_equal(n, 6);
    const size_t stamp = 25;
    assert_int_equal(strlen(lines[0]), stamp + LOGBOOK_LINE_MAX);
    assert_int_equal(strlen(lines[1]), stamp + LOGBOOK_LINE_MAX);
    assert_int_equal(strlen(lines[2]), stamp + 100);
    assert_int_equal(strlen(lines[3]), stamp + LOGBOOK_LINE_MAX - 1);
    assert_true(matches(lines[3], STAMP_RE "b+$"));
    assert_true(matches(lines[4], STAMP_RE "\xc3\xa9z$"));
    assert_int_equal(strlen(lines[5]), stamp + LOGBOOK_LINE_MAX);
    free(text);
    fx_free(fx);
}

static void test_recent(void **state)
{
    (void)state;
    fx_t *fx = fx_new(50, 0);
    logbook_run_t *run = NULL;
    assert_int_equal(logbook_run_open(fx->lb, &run), LOGBOOK_OK);
    /* ~110 KB: more than one read block. */
    for (int i = 0; i < 3000; i++) {
        if (i % 7 == 0)
            assert_int_equal(logbook_run_printf(run, "ERROR line %d", i), LOGBOOK_OK);
        else
            assert_int_equal(logbook_run_printf(run, "info line %d", i), LOGBOOK_OK);
    }
    logbook_lines_t res;
    assert_int_equal(logbook_recent(fx->lb, 10, NULL, false, &res), LOGBOOK_OK);
    assert_int_equal(res.count, 10);
    assert_true(res.complete);
    for (int i = 0; i < 10; i++) {
        char expect[64];
        int k = 2990 + i;
        snprintf(expect, sizeof expect, "%s line %d$", k % 7 == 0 ? "ERROR" : "info", k);
        assert_true(matches(res.lines[i], expect));
    }
    assert_string_equal(res.session_id, logbook_run_id(run));
    logbook_lines_cleanup(&res);

    /* 1000 lines back cross read blocks: consecutive and whole. */
    assert_int_equal(logbook_recent(fx->lb, 1000, "", false, &res), LOGBOOK_OK);
    assert_int_equal(res.count, 1000);
    for (int i = 0; i < 1000; i++) {
        int k = -1;
        const char *sp = strstr(res.lines[i], " line ");
        assert_non_null(sp);
        k = atoi(sp + 6);
        assert_int_equal(k, 2000 + i);
        assert_true(matches(res.lines[i], STAMP_RE "(ERROR|info) line [0-9]+$"));
    }
    logbook_lines_cleanup(&res);

    /* Filtered: the last 5 errors. */
    assert_int_equal(logbook_recent(fx->lb, 5, "^[^ ]+ ERROR", false, &res), LOGBOOK_OK);
    assert_int_equal(res.count, 5);
    const int last_errors[5] = { 2968, 2975, 2982, 2989, 2996 };
    for (int i = 0; i < 5; i++) {
        char expect[64];
        snprintf(expect, sizeof expect, "ERROR line %d$", last_errors[i]);
        assert_true(matches(res.lines[i], expect));
    }
    logbook_lines_cleanup(&res);
    assert_int_equal(logbook_recent(fx->lb, 5, "error line 29(68|75)", false, &res), LOGBOOK_OK);
    assert_int_equal(res.count, 0);   /* case matters by default */
    logbook_lines_cleanup(&res);
    assert_int_equal(logbook_recent(fx->lb, 5, "error line 29(68|75)", true, &res), LOGBOOK_OK);
    assert_int_equal(res.count, 2);
    logbook_lines_cleanup(&res);
    /* Fewer matches than asked: all of them, the whole file was read. */
    assert_int_equal(logbook_recent(fx->lb, 100, "line (0|1|2)$", false, &res), LOGBOOK_OK);
    assert_int_equal(res.count, 3);
    assert_true(matches(res.lines[0], "ERROR line 0$"));
    assert_true(res.complete);
    logbook_lines_cleanup(&res);

    /* Errors: the message is the whole answer's. */
    assert_int_equal(logbook_recent(fx->lb, 5, "([a-z", false, &res), LOGBOOK_EREGEX);
    assert_string_equal(res.error,
                        "Invalid pattern: missing terminating ] for character class at offset 5");
    assert_null(res.lines);
    assert_int_equal(res.count, 0);
    logbook_lines_cleanup(&res);
    assert_int_equal(logbook_recent(fx->lb, 5, "line 2{1,5000}", false, &res), LOGBOOK_EREGEX);
    assert_string_equal(res.error, "Pattern refused: repetition count 5000 at offset 6 is above "
                                   "the limit of 1000");
    assert_null(res.lines);
    logbook_lines_cleanup(&res);
    assert_int_equal(logbook_recent(fx->lb, 0, NULL, false, &res), LOGBOOK_EINVAL);
    assert_int_equal(logbook_recent(fx->lb, LOGBOOK_RECENT_MAX + 1, NULL, false, &res),
                     LOGBOOK_EINVAL);
    assert_int_equal(logbook_recent(fx->lb, LOGBOOK_RECENT_MAX, NULL, false, &res), LOGBOOK_OK);
    assert_int_equal(res.count, LOGBOOK_RECENT_MAX);
    logbook_lines_cleanup(&res);
    logbook_lines_cleanup(NULL);
    assert_string_equal(logbook_strerror(LOGBOOK_ENONE), "No active log session");

    /* The file deleted behind its back. */
    char path[LOGBOOK_PATH_MAX];
    snprintf(path, sizeof path, "%s", logbook_run_path(run));
    logbook_run_close(run);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(logbook_recent(fx->lb, 5, NULL, false, &res), LOGBOOK_EIO);
    fx_free(fx);
}

static void test_recent_reads_from_the_end(void **state)
{
    (void)state;
    /* scan_max 256 KiB on a ~2.3 MB file: a filter that matches only the
     * first line must give up (not complete) instead of reading it all. */
    fx_t *fx = fx_new(50, 256 * 1024);
    logbook_run_t *run = NULL;
    assert_int_equal(logbook_run_open(fx->lb, &run), LOGBOOK_OK);
    assert_int_equal(logbook_run_printf(run, "the very first line"), LOGBOOK_OK);
    char pad[200];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < 10000; i++)
        assert_int_equal(logbook_run_printf(run, "%d %s", i, pad), LOGBOOK_OK);
    logbook_lines_t res;
    assert_int_equal(logbook_recent(fx->lb, 5, "very first", false, &res), LOGBOOK_OK);
    assert_int_equal(res.count, 0);
    assert_false(res.complete);
    assert_false(res.timed_out);   /* it was the size limit */
    logbook_lines_cleanup(&res);
    /* Without a filter the last lines come from the end at once. */
    assert_int_equal(logbook_recent(fx->lb, 3, NULL, false, &res), LOGBOOK_OK);
    assert_int_equal(res.count, 3);
    assert_true(matches(res.lines[2], STAMP_RE "9999 x+$"));
    assert_true(res.complete);
    logbook_lines_cleanup(&res);

    /* A foreign line of 100 KB at the end comes back cut to its last
     * 64 KiB, and the line before it is intact. */
    int fd = open(logbook_run_path(run), O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    size_t big = 100000;
    char *line = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        line[i] = (char)('a' + i % 26);
    line[big] = '\n';
    assert_int_equal(write(fd, line, big + 1), (ssize_t)(big + 1));
    close(fd);
    assert_int_equal(logbook_recent(fx->lb, 2, NULL, false, &res), LOGBOOK_OK);
    assert_int_equal(res.count, 2);
    assert_true(matches(res.lines[0], STAMP_RE "9999 x+$"));
    assert_int_equal(strlen(res.lines[1]), 65536);
    assert_memory_equal(res.lines[1], line + big - 65536, 65536);
    logbook_lines_cleanup(&res);
    free(line);
    logbook_run_close(run);
    fx_free(fx);
}

/* The security review's request: GET /api/v1/logs/recent?lines=1000&
 * pattern=a%7B1%2C1000%7D%7B1%2C1000%7D took 25 s and 8 GB in glibc's
 * regcomp. Now it is refused with its reason, and costs next to nothing. */
static void test_recent_hostile_request(void **state)
{
    (void)state;
    fx_t *fx = fx_new(50, 0);
    logbook_run_t *run = NULL;
    assert_int_equal(logbook_run_open(fx->lb, &run), LOGBOOK_OK);
    for (int i = 0; i < 1500; i++)
        assert_int_equal(logbook_run_printf(run, "info line %d aaaaaaaaaaaaaaaa", i), LOGBOOK_OK);
    long rss0 = peak_rss_kib();
    logbook_lines_t res;
    assert_int_equal(logbook_recent(fx->lb, 1000, "a{1,1000}{1,1000}", false, &res),
                     LOGBOOK_EREGEX);
    assert_string_equal(res.error, "Pattern refused: nested repetitions at offset 9 allow 1000000 "
                                   "repeats, above the limit of 1000");
    assert_null(res.lines);
    assert_int_equal(res.count, 0);
    logbook_lines_cleanup(&res);
    long grew = peak_rss_kib() - rss0;
    if (grew > RSS_BOUND_KIB)
        fail_msg("peak RSS grew by %ld KiB", grew);
    /* A bounded repetition of the same kind still works. */
    assert_int_equal(logbook_recent(fx->lb, 1000, "a{1,10}{1,10}$", false, &res), LOGBOOK_OK);
    assert_int_equal(res.count, 1000);
    assert_true(res.complete);
    logbook_lines_cleanup(&res);
    logbook_run_close(run);
    fx_free(fx);
}

/* A pattern that backtracks exponentially on the log's lines: the search
 * answers "too costly" (no lines: an answer that skipped those lines would
 * be wrong), within the backtracking limits. */
static void test_recent_costly_pattern(void **state)
{
    (void)state;
    fx_t *fx = fx_new(50, 0);
    logbook_run_t *run = NULL;
    assert_int_equal(logbook_run_open(fx->lb, &run), LOGBOOK_OK);
    char line[4002];
    memset(line, 'a', 4000);
    line[4000] = '!';
    line[4001] = '\0';
    assert_int_equal(logbook_run_printf(run, "ready"), LOGBOOK_OK);
    for (int i = 0; i < 20; i++)
        assert_int_equal(logbook_run_printf(run, "%s", line), LOGBOOK_OK);
    long rss0 = peak_rss_kib();
    logbook_lines_t res;
    const char *costly[] = { "(a|aa)+$", "(a+)+$", "^[^ ]+ (\\w+\\s?)+$" };
    for (size_t i = 0; i < sizeof costly / sizeof *costly; i++) {
        assert_int_equal(logbook_recent(fx->lb, 100, costly[i], false, &res), LOGBOOK_EREGEX);
        assert_string_equal(res.error,
                            "Pattern too costly: on a line of the log it needed more than 1000000 "
                            "backtracking steps, 100000 levels or 16 MiB; nested repetition such "
                            "as (a+)+ or (a|aa)+ backtracks exponentially, simplify it");
        assert_null(res.lines);
        assert_true(res.complete);
        logbook_lines_cleanup(&res);
    }
    long grew = peak_rss_kib() - rss0;
    if (grew > RSS_BOUND_KIB)
        fail_msg("peak RSS grew by %ld KiB", grew);
    /* Nested repetition that does not explode on these lines is fine. */
    assert_int_equal(logbook_recent(fx->lb, 100, "(a+!)+$|(rea+dy)+", false, &res), LOGBOOK_OK);
    assert_int_equal(res.count, 21);
    logbook_lines_cleanup(&res);
    logbook_run_close(run);
    fx_free(fx);
}

/* A pattern that is slow on every line without going over a limit (its
 * cost is quadratic in the line's length): the search stops at search_ms
 * and answers with what it found, marked incomplete. */
static void test_recent_time_budget(void **state)
{
    (void)state;
    fx_t *fx = fx_new_ms(50, 0, 100);
    logbook_run_t *run = NULL;
    assert_int_equal(logbook_run_open(fx->lb, &run), LOGBOOK_OK);
    char line[4002];
    memset(line, 'a', 4000);
    line[4000] = '!';
    line[4001] = '\0';
    for (int i = 0; i < 30; i++)   /* ~0.3 s each: 9 s in all without the budget */
        assert_int_equal(logbook_run_printf(run, "%s", line), LOGBOOK_OK);
    logbook_lines_t res;
    assert_int_equal(logbook_recent(fx->lb, 100, "(a|b)*$", false, &res), LOGBOOK_OK);
    assert_true(res.count < 30);
    assert_false(res.complete);
    assert_true(res.timed_out);
    logbook_lines_cleanup(&res);
    /* An ordinary filter over the same lines is done well within it. */
    assert_int_equal(logbook_recent(fx->lb, 100, "a!$", false, &res), LOGBOOK_OK);
    assert_int_equal(res.count, 30);
    assert_true(res.complete);
    assert_false(res.timed_out);
    logbook_lines_cleanup(&res);
    logbook_run_close(run);
    fx_free(fx);
}

static void test_rotation_and_sessions(void **state)
{
    (void)state;
    fx_t *fx = fx_new(3, 0);
    char logs[300];
    snprintf(logs, sizeof logs, "%s/logs/nested", fx->dir);
    /* Files that are not run logs are never touched. */
    const char *others[] = { "notes.txt", "engine-bogus.log", "engine-20200101-000000-1.log" };
    for (int i = 0; i < 3; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", logs, others[i]);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fclose(f);
    }
    /* An old run of an earlier process: listed, and rotated away. */
    char old[400];
    snprintf(old, sizeof old, "%s/engine-20200101-000000.log", logs);
    FILE *f = fopen(old, "w");
    fputs("old\n", f);
    fclose(f);

    char ids[5][LOGBOOK_ID_MAX];
    logbook_run_t *open_run = NULL;
    for (int i = 0; i < 5; i++) {
        logbook_run_t *run = NULL;
        assert_int_equal(logbook_run_open(fx->lb, &run), LOGBOOK_OK);
        snprintf(ids[i], sizeof ids[i], "%s", logbook_run_id(run));
        for (int k = 0; k <= i; k++)
            logbook_run_printf(run, "run %d line %d", i, k);
        if (i == 4)
            open_run = run;
        else
            logbook_run_close(run);
    }
    logbook_sessions_t list;
    assert_int_equal(logbook_sessions(fx->lb, &list), LOGBOOK_OK);
    assert_int_equal(list.count, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(list.items[i].filename, ids[4 - i]);
        assert_true(list.items[i].size > 0);
        assert_true(list.items[i].created > 1600000000);
        assert_true(list.items[i].modified >= list.items[i].created);
        assert_true(list.items[i].active == (i == 0));
        struct stat st;
        assert_int_equal(stat(list.items[i].path, &st), 0);
        assert_int_equal((uint64_t)st.st_size, list.items[i].size);
    }
    /* Later runs hold more lines: sizes grow with the index. */
    assert_true(list.items[0].size > list.items[1].size);
    logbook_sessions_cleanup(&list);
    logbook_sessions_cleanup(NULL);
    struct stat st;
    assert_int_equal(stat(old, &st), -1);
    for (int i = 0; i < 3; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", logs, others[i]);
        assert_int_equal(stat(p, &st), 0);
    }
    logbook_run_close(open_run);

    /* keep = 0 keeps everything. */
    logbook_config_t cfg;
    logbook_config_default(&cfg);
    cfg.dir = logs;
    cfg.keep = 0;
    logbook_t *all = NULL;
    assert_int_equal(logbook_new(&cfg, &all), LOGBOOK_OK);
    for (int i = 0; i < 4; i++) {
        logbook_run_t *run = NULL;
        assert_int_equal(logbook_run_open(all, &run), LOGBOOK_OK);
        logbook_run_close(run);
    }
    assert_int_equal(logbook_sessions(all, &list), LOGBOOK_OK);
    assert_int_equal(list.count, 7);
    /* Newest first, strictly. */
    for (size_t i = 1; i < list.count; i++)
        assert_true(list.items[i - 1].created >= list.items[i].created);
    logbook_sessions_cleanup(&list);
    logbook_free(all);

    /* Bad configs. */
    logbook_t *bad = NULL;
    cfg.dir = NULL;
    assert_int_equal(logbook_new(&cfg, &bad), LOGBOOK_EINVAL);
    cfg.dir = "/proc/kvchat-cannot-create-this";
    assert_int_equal(logbook_new(&cfg, &bad), LOGBOOK_EIO);
    assert_null(bad);
    fx_free(fx);
}

typedef struct {
    logbook_run_t *run;
    int who;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    char chunk[64];
    for (int i = 0; i < 2000; i++) {
        if (w->who == 0) {
            logbook_run_printf(w->run, "writer A line %d with some padding text", i);
        } else {
            /* Fed output, split mid-line on purpose. */
            int k = snprintf(chunk, sizeof chunk, "writer B line %d with other text\n", i);
            logbook_run_feed(w->run, chunk, 7, NULL, NULL);
            logbook_run_feed(w->run, chunk + 7, (size_t)k - 7, NULL, NULL);
        }
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    (void)state;
    fx_t *fx = fx_new(50, 0);
    logbook_run_t *run = NULL;
    assert_int_equal(logbook_run_open(fx->lb, &run), LOGBOOK_OK);
    pthread_t t[2];
    writer_t w[2] = { { run, 0 }, { run, 1 } };
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    /* Readers at the same time see whole lines only. */
    for (int r = 0; r < 20; r++) {
        logbook_lines_t res;
        assert_int_equal(logbook_recent(fx->lb, 50, NULL, false, &res), LOGBOOK_OK);
        for (size_t i = 0; i < res.count; i++)
            assert_true(matches(res.lines[i], STAMP_RE "writer [AB] line [0-9]+ with "
                                              "(some padding|other) text$"));
        logbook_lines_cleanup(&res);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    char path[LOGBOOK_PATH_MAX];
    snprintf(path, sizeof path, "%s", logbook_run_path(run));
    logbook_run_close(run);
    char *text = slurp(path, NULL);
    size_t n = 0, a = 0, b = 0;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        n++;
        assert_true(matches(l, STAMP_RE "writer [AB] line [0-9]+ with (some padding|other) "
                               "text$"));
        a += strstr(l, "writer A") != NULL;
        b += strstr(l, "writer B") != NULL;
    }
    assert_int_equal(n, 4000);
    assert_int_equal(a, 2000);
    assert_int_equal(b, 2000);
    free(text);
    fx_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_current),
        cmocka_unit_test(test_feed_lines),
        cmocka_unit_test(test_long_lines_split),
        cmocka_unit_test(test_recent),
        cmocka_unit_test(test_recent_reads_from_the_end),
        cmocka_unit_test(test_recent_hostile_request),
        cmocka_unit_test(test_recent_costly_pattern),
        cmocka_unit_test(test_recent_time_budget),
        cmocka_unit_test(test_rotation_and_sessions),
        cmocka_unit_test(test_concurrent_writers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
