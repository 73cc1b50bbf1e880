/* test_extract_runner.c — the runner (runner.h) against a misbehaving
 * stand-in program (test_extract_helper) and the real kvchat-extract.
 *
 * Every test starts and ends with the same open descriptors and no child
 * process of ours left (reaped or not): checked in setup/teardown.
 * - a good run: text, type, character count;
 * - crash (SIGSEGV), hang (timeout; the whole process group dies, a
 *   forked grandchild included), the calling process killed with -9 (the
 *   extractor dies with it), a grandchild holding stdout after a
 *   successful exit (no wait for it, killed), output flood (too large),
 *   memory hog (address-space limit, reported as memory), CPU spin (CPU
 *   limit), missing program (spawn failed);
 * - contract checks: ill-formed UTF-8, no status line, wrong count
 *   (protocol error); unknown exit status (internal); a program error with
 *   its table message (kept, type recovered) and with a foreign message
 *   (replaced);
 * - the sandbox from inside: only fds 0..3 (3: the structure pipe), stdin
 *   is /dev/null, no inherited environment, the limits, its own process
 *   group;
 * - four threads running at once get their own results;
 * - the text streamed to a file (extract_run_to_fd): characters cut
 *   between pipe reads, the same contract checks, the output limit, a
 *   file that cannot be written;
 * - structure marks: well-formed ones arrive (in memory and with the text
 *   in a file), every broken rule of the line format is a protocol error,
 *   an offset inside a character is one in memory only (a file's caller
 *   checks), too many marks are dropped and the text stays good, the real
 *   program's marks for a Markdown file.
 */
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "extract/runner.h"

#define HELPER KVCHAT_EXTRACT_HELPER

static int g_fds_before;

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

static int setup(void **state)
{
    (void)state;
    g_fds_before = count_fds();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    /* No child left behind, not even a zombie. */
    errno = 0;
    pid_t w = waitpid(-1, NULL, WNOHANG);
    assert_int_equal(w, -1);
    assert_int_equal(errno, ECHILD);
    assert_int_equal(count_fds(), g_fds_before);
    return 0;
}

static void helper_limits(extract_limits_t *lim)
{
    extract_limits_default(lim);
    lim->exe = HELPER;
    lim->timeout_ms = 10000;
    lim->cpu_seconds = 10;
    lim->mem_bytes = (size_t)512 << 20;
}

/* Live (not zombie) processes whose process group is pgid. */
static int live_in_group(int pgid)
{
    int live = 0;
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        if (!rp)
            continue;
        char st;
        int ppid, pgrp;
        if (sscanf(rp + 1, " %c %d %d", &st, &ppid, &pgrp) == 3 && pgrp == pgid &&
            st != 'Z' && st != 'X')
            live++;
    }
    closedir(d);
    return live;
}

/* SIGKILL is delivered at once but acted on when the target next runs:
 * allow a moment before calling the group empty. */
static int live_in_group_settled(int pgid)
{
    int live = 0;
    for (int i = 0; i < 100; i++) {
        live = live_in_group(pgid);
        if (live == 0)
            break;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return live;
}

static void test_ok(void **state)
{
    (void)state;
    extract_limits_t lim;
    helper_limits(&lim);
    extract_result_t r;
    assert_int_equal(extract_run(&lim, "/dev/null", "ok", &r), EXTRACT_OK);
    assert_int_equal(r.code, EXTRACT_OK);
    assert_string_equal(r.text, "hello\n");
    assert_int_equal(r.len, 6);
    assert_int_equal(r.chars, 6);
    assert_string_equal(r.type, "txt");
    assert_string_equal(r.message, "");
    assert_int_equal(r.exit_status, 0);
    assert_true(r.pid > 0);
    extract_result_cleanup(&r);
    assert_null(r.text);
    extract_result_cleanup(NULL);
}

static void test_crash(void **state)
{
    (void)state;
    extract_limits_t lim;
    helper_limits(&lim);
    extract_result_t r;
    assert_int_equal(extract_run(&lim, "/dev/null", "segv", &r), EXTRACT_ECRASHED);
    assert_int_equal(r.signal, 11);
    assert_null(r.text);
    assert_non_null(strstr(r.message, "crashed"));
    assert_false(extract_error_is_unsupported(r.code));
    extract_result_cleanup(&r);
}

static void test_timeout(void **state)
{
    (void)state;
    extract_limits_t lim;
    helper_limits(&lim);
    lim.timeout_ms = 500;
    extract_result_t r;
    assert_int_equal(extract_run(&lim, "/dev/null", "hang", &r), EXTRACT_ETIMEOUT);
    assert_true(r.elapsed_ms >= 500);
    assert_true(r.elapsed_ms < 3000);
    assert_string_equal(r.message, "Extraction timed out after 0.5 s.");
    assert_int_equal(r.signal, 9);
    assert_int_equal(live_in_group_settled(r.pid), 0);
    extract_result_cleanup(&r);
}

static void test_timeout_kills_group(void **state)
{
    (void)state;
    extract_limits_t lim;
    helper_limits(&lim);
    lim.timeout_ms = 1000;
    extract_result_t r;
    assert_int_equal(extract_run(&lim, "/dev/null", "hang-group", &r), EXTRACT_ETIMEOUT);
    assert_string_equal(r.message, "Extraction timed out after 1 s.");
    /* The grandchild sleeps forever unless the group was killed. */
    assert_int_equal(live_in_group_settled(r.pid), 0);
    extract_result_cleanup(&r);
}

static void test_orphan_holding_stdout(void **state)
{
    (void)state;
    extract_limits_t lim;
    helper_limits(&lim);
    lim.timeout_ms = 20000;
    extract_result_t r;
    assert_int_equal(extract_run(&lim, "/dev/null", "orphan", &r), EXTRACT_OK);
    assert_string_equal(r.text, "hello\n");
    /* Not held up by the grandchild's 60 s sleep, and it is gone. */
    assert_true(r.elapsed_ms < 5000);
    assert_int_equal(live_in_group_settled(r.pid), 0);
    extract_result_cleanup(&r);
}

/* The first child of process `parent` found in /proc, or 0. */
static int child_of(int parent)
{
    int found = 0;
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        char st;
        int ppid;
        if (rp && sscanf(rp + 1, " %c %d", &st, &ppid) == 2 && ppid == parent)
            found = atoi(e->d_name);
    }
    closedir(d);
    return found;
}

/* kvchat killed with -9 while an extraction runs (a forked process stands
 * for it): the extractor dies with it instead of running on to its CPU
 * limit, since nobody is left to read it or enforce the wall clock. */
static void test_parent_killed(void **state)
{
    (void)state;
    pid_t app = fork();
    assert_true(app >= 0);
    if (app == 0) {
        extract_limits_t lim;
        helper_limits(&lim);
        lim.timeout_ms = 120000;
        extract_result_t r;
        extract_run(&lim, "/dev/null", "hang", &r);
        _exit(0);
    }
    int extractor = 0;
    for (int i = 0; i < 500 && !extractor; i++) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        extractor = child_of(app);
    }
    assert_true(extractor > 0);
    /* let it get past exec: it runs in its own process group */
    for (int i = 0; i < 500 && live_in_group(extractor) == 0; i++) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    assert_int_equal(live_in_group(extractor), 1);
    kill(app, SIGKILL);
    assert_int_equal(waitpid(app, NULL, 0), app);
    int live = live_in_group_settled(extractor);
    kill(-extractor, SIGKILL);   /* clean up if it did survive */
    assert_int_equal(live, 0);
}

static void test_output_too_large(void **state)
{
    (void)state;
    extract_limits_t lim;
    helper_limits(&lim);
    lim.max_output = (size_t)1 << 20;
    extract_result_t r;
    assert_int_equal(extract_run(&lim, "/dev/null", "flood", &r), EXTRACT_ETOOBIG);
    assert_null(r.text);
    assert_string_equal(r.message, "The extracted text is larger than the 1 MiB limit.");
    assert_int_equal(live_in_group_settled(r.pid), 0);
    extract_result_cleanup(&r);
}

static void test_memory_limit(void **state)
{
    (void)state;
    extract_limits_t lim;
    helper_limits(&lim);
    lim.mem_bytes = (size_t)256 << 20;
    extract_result_t r;
    assert_int_equal(extract_run(&lim, "/dev/null", "hog", &r), EXTRACT_EMEMORY);
    assert_null(r.text);
    assert_true(r.signal != 0);
    assert_true((size_t)r.max_rss_kib * 1024 < ((size_t)300 << 20));
    assert_non_null(strstr(r.message, "256 MiB of memory"));
    extract_result_cleanup(&r);
}

static void test_cpu_limit(void **state)
{
    (void)state;
    extract_limits_t lim;
    helper_limits(&lim);
    lim.cpu_seconds = 1;
    lim.timeout_ms = 15000;
    extract_result_t r;
    assert_int_equal(extract_run(&lim, "/dev/null", "spin", &r), EXTRACT_ECPU);
    assert_true(r.elapsed_ms < 10000);
    assert_string_equal(r.message, "Extraction was stopped after using 1 s of CPU time.");
    extract_result_cleanup(&r);
}

static void test_missing_program(void **state)
{
    (void)state;
    extract_limits_t lim;
    helper_limits(&lim);
    lim.exe = "/nonexistent/kvchat-extract";
    extract_result_t r;
    assert_int_equal(extract_run(&lim, "/dev/null", "ok", &r), EXTRACT_ESPAWN);
    assert_null(r.text);
    assert_non_null(strstr(r.message, "could not be started"));
    assert_non_null(strstr(r.message, "No such file"));
    assert_true(extract_error_is_internal(r.code));
    extract_result_cleanup(&r);

    lim.exe = "kvchat-extract-not-in-path";
    assert_int_equal(extract_run(&lim, "/dev/null", "ok", &r), EXTRACT_ESPAWN);
    assert_int_equal(r.pid, 0);
    extract_result_cleanup(&r);

    /* Exists but cannot be executed. */
    char plain[] = "/tmp/kvchat-not-a-program-XXXXXX";
    int fd = mkstemp(plain);
    assert_true(fd >= 0);
    close(fd);
    lim.exe = plain;
    assert_int_equal(extract_run(&lim, "/dev/null", "ok", &r), EXTRACT_ESPAWN);
    assert_non_null(strstr(r.message, "exec: Permission denied"));
    assert_true(r.pid > 0);   /* it forked; the child was reaped (teardown) */
    extract_result_cleanup(&r);
    unlink(plain);
}

static void test_protocol_errors(void **state)
{
    (void)state;
    static const char *const modes[] = { "badutf8", "nostatus", "lie" };
    extract_limits_t lim;
    helper_limits(&lim);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        extract_result_t r;
        assert_int_equal(extract_run(&lim, "/dev/null", modes[i], &r), EXTRACT_EPROTOCOL);
        assert_null(r.text);
        assert_string_equal(r.message, "The text extractor returned malformed output.");
        extract_result_cleanup(&r);
    }
    extract_result_t r;
    assert_int_equal(extract_run(&lim, "/dev/null", "exit1", &r), EXTRACT_EINTERNAL);
    assert_int_equal(r.exit_status, 1);
    extract_result_cleanup(&r);
}

static void test_program_messages(void **state)
{
    (void)state;
    extract_limits_t lim;
    helper_limits(&lim);
    extract_result_t r;
    assert_int_equal(extract_run(&lim, "/dev/null", "encrypted", &r), EXTRACT_EENCRYPTED);
    assert_string_equal(r.message, "The PDF is password-protected; kvchat cannot read it.");
    assert_string_equal(r.type, "pdf");
    assert_int_equal(r.exit_status, 12);
    extract_result_cleanup(&r);

    assert_int_equal(extract_run(&lim, "/dev/null", "spoof", &r), EXTRACT_EENCRYPTED);
    assert_null(strstr(r.message, "evil"));
    assert_string_equal(r.message, "The file is password-protected; kvchat cannot read it.");
    assert_string_equal(r.type, "unknown");
    extract_result_cleanup(&r);
}

static long probe_value(const char *text, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\n%s=", key);
    char *with_nl = malloc(strlen(text) + 2);
    assert_non_null(with_nl);
    with_nl[0] = '\n';
    strcpy(with_nl + 1, text);
    const char *p = strstr(with_nl, k);
    long v = -1;
    if (p)
        v = strtol(p + strlen(k), NULL, 10);
    free(with_nl);
    return v;
}

static void test_sandbox_inside(void **state)
{
    (void)state;
    setenv("KVCHAT_TEST_SECRET", "sk-do-not-leak", 1);
    extract_limits_t lim;
    helper_limits(&lim);
    lim.cpu_seconds = 7;
    lim.mem_bytes = (size_t)300 << 20;
    extract_result_t r;
    assert_int_equal(extract_run(&lim, "/dev/null", "probe", &r), EXTRACT_OK);
    unsetenv("KVCHAT_TEST_SECRET");
    assert_non_null(strstr(r.text, "secret=no\n"));
    /* 0..2, the structure pipe and the OCR progress pipe */
    assert_int_equal(probe_value(r.text, "fds"), 5);
    assert_int_equal(probe_value(r.text, "env"), 3);   /* PATH, LC_ALL, OMP_THREAD_LIMIT */
    assert_int_equal(probe_value(r.text, "fsize"), 0);
    assert_int_equal(probe_value(r.text, "core"), 0);
    assert_int_equal(probe_value(r.text, "nofile"), 32);
    assert_int_equal(probe_value(r.text, "cpu"), 7);
    assert_int_equal(probe_value(r.text, "as"), 300L << 20);
    assert_int_equal(probe_value(r.text, "pgid_is_pid"), 1);
    assert_int_equal(probe_value(r.text, "stdin_devnull"), 1);
    /* below the app and the engine (nice 10), or as low as it was */
    int before = getpriority(PRIO_PROCESS, 0);
    assert_int_equal(probe_value(r.text, "nice"), before > 10 ? before : 10);
    extract_result_cleanup(&r);
}

/* OCR progress (extract.h): passed to the watcher as it comes, kept as the
 * record on success, refused when it breaks the protocol; announcing OCR
 * gives the run ocr_seconds more of wall clock. */
typedef struct {
    int calls, done[8], total[8];
} ocr_seen_t;

static void on_ocr(void *ud, int done, int total)
{
    ocr_seen_t *s = ud;
    if (s->calls < 8) {
        s->done[s->calls] = done;
        s->total[s->calls] = total;
    }
    s->calls++;
}

static void test_ocr_progress(void **state)
{
    (void)state;
    extract_limits_t lim;
    helper_limits(&lim);
    extract_result_t r;
    ocr_seen_t seen = { 0 };
    extract_watch_t w = { on_ocr, &seen };
    assert_int_equal(extract_run_watched(&lim, "/dev/null", "progress-ok", -1, &w, &r), EXTRACT_OK);
    assert_string_equal(r.text, "hello\n");
    assert_int_equal(r.n_ocr_pages, 3);
    assert_int_equal(r.ocr_pages[0], 1);
    assert_int_equal(r.ocr_pages[1], 2);
    assert_int_equal(r.ocr_pages[2], 5);
    assert_int_equal(r.ocr_confidence, 85);   /* (90 + 80) / 2: the blank page does not count */
    assert_int_equal(seen.calls, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(seen.done[i], i);
        assert_int_equal(seen.total[i], 3);
    }
    extract_result_cleanup(&r);
    assert_null(r.ocr_pages);
    /* Without OCR: no record. */
    assert_int_equal(extract_run(&lim, "/dev/null", "ok", &r), EXTRACT_OK);
    assert_int_equal(r.n_ocr_pages, 0);
    assert_int_equal(r.ocr_confidence, -1);
    extract_result_cleanup(&r);

    static const char *const bad[] = { "progress-first", "progress-order", "progress-conf",
                                       "progress-many", "progress-unended", "progress-zero",
                                       "progress-huge", "progress-junk" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(extract_run(&lim, "/dev/null", bad[i], &r), EXTRACT_EPROTOCOL);
        assert_null(r.ocr_pages);
        extract_result_cleanup(&r);
    }

    /* 1 s of wall clock; OCR announced, then 1.5 s: within ocr_seconds. */
    lim.timeout_ms = 1000;
    lim.ocr_seconds = 3;
    assert_int_equal(extract_run(&lim, "/dev/null", "progress-slow", &r), EXTRACT_OK);
    assert_int_equal(r.n_ocr_pages, 1);
    assert_int_equal(r.ocr_confidence, 77);
    extract_result_cleanup(&r);
    /* OCR off (no languages): no extra time, the wall clock stops it. */
    lim.ocr_languages = "";
    assert_int_equal(extract_run(&lim, "/dev/null", "progress-slow", &r), EXTRACT_ETIMEOUT);
    extract_result_cleanup(&r);
}

typedef struct {
    const char *mode;
    int code;
    char text[16];
} job_t;

static void *run_job(void *arg)
{
    job_t *j = arg;
    extract_limits_t lim;
    helper_limits(&lim);
    extract_result_t r;
    j->code = extract_run(&lim, "/dev/null", j->mode, &r);
    if (r.text)
        snprintf(j->text, sizeof j->text, "%s", r.text);
    extract_result_cleanup(&r);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    job_t jobs[4] = { { "ok", -1, "" }, { "segv", -1, "" }, { "ok", -1, "" },
                      { "encrypted", -1, "" } };
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, run_job, &jobs[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(jobs[0].code, EXTRACT_OK);
    assert_string_equal(jobs[0].text, "hello\n");
    assert_int_equal(jobs[1].code, EXTRACT_ECRASHED);
    assert_int_equal(jobs[2].code, EXTRACT_OK);
    assert_int_equal(jobs[3].code, EXTRACT_EENCRYPTED);
}

static void test_real_program(void **state)
{
    (void)state;
    char dir[] = "/tmp/kvchat-runner-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/upload", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# Title\r\n\r\nSome *markdown*.   \r\n", f);
    fclose(f);

    extract_limits_t lim;
    extract_limits_default(&lim);
    lim.exe = KVCHAT_EXTRACT_EXE;
#if defined(__SANITIZE_ADDRESS__)
    lim.mem_bytes = 0;   /* ASan reserves terabytes of address space */
#endif
    extract_result_t r;
    assert_int_equal(extract_run(&lim, path, "notes.md", &r), EXTRACT_OK);
    assert_string_equal(r.type, "md");
    assert_string_equal(r.text, "# Title\n\nSome *markdown*.\n");
    extract_result_cleanup(&r);

    /* Too large for the limit: the program refuses, the runner says so. */
    lim.max_output = 10;
    assert_int_equal(extract_run(&lim, path, "notes.md", &r), EXTRACT_ETOOBIG);
    assert_string_equal(r.message, "The extracted text is larger than the 10 bytes limit.");
    extract_result_cleanup(&r);

    /* A client name that looks like an option is only a name. */
    lim.max_output = 1 << 20;
    assert_int_equal(extract_run(&lim, path, "--detect", &r), EXTRACT_OK);
    assert_string_equal(r.type, "txt");
    extract_result_cleanup(&r);

    unlink(path);
    rmdir(dir);
}

/* The text streamed to a file: the same checks as in memory, made piece by
 * piece, with characters cut between two pipe reads put back together. */
static void test_to_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/kvchat-runner-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], text_path[256];
    snprintf(path, sizeof path, "%s/upload", dir);
    snprintf(text_path, sizeof text_path, "%s/text", dir);
    /* 1 MiB and more of 1-, 2-, 3- and 4-byte characters: many land across
     * the 64 KiB reads */
    static const char unit[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 line\n";
    const size_t unit_chars = 10, reps = 80000;
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < reps; i++)
        fputs(unit, f);
    fclose(f);
    extract_limits_t lim;
    extract_limits_default(&lim);
    lim.exe = KVCHAT_EXTRACT_EXE;
#if defined(__SANITIZE_ADDRESS__)
    lim.mem_bytes = 0;
#endif
    int fd = open(text_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    extract_result_t r;
    assert_int_equal(extract_run_to_fd(&lim, path, "chars.txt", fd, &r), EXTRACT_OK);
    assert_null(r.text);
    assert_string_equal(r.type, "txt");
    assert_int_equal(r.len, reps * (sizeof unit - 1));
    assert_int_equal(r.chars, reps * unit_chars);
    extract_result_cleanup(&r);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal((size_t)st.st_size, reps * (sizeof unit - 1));
    char got[sizeof unit];
    assert_int_equal(pread(fd, got, sizeof unit - 1, (off_t)(sizeof unit - 1) * 1234), sizeof unit - 1);
    assert_memory_equal(got, unit, sizeof unit - 1);
    close(fd);

    /* contract checks as in memory */
    static const char *const modes[] = { "badutf8", "nostatus", "lie" };
    helper_limits(&lim);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        fd = open(text_path, O_RDWR | O_TRUNC | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(extract_run_to_fd(&lim, "/dev/null", modes[i], fd, &r), EXTRACT_EPROTOCOL);
        assert_string_equal(r.message, "The text extractor returned malformed output.");
        extract_result_cleanup(&r);
        close(fd);
    }
    /* the output limit holds, and the file never grows past it */
    lim.max_output = (size_t)1 << 20;
    fd = open(text_path, O_RDWR | O_TRUNC | O_CLOEXEC);
    assert_int_equal(extract_run_to_fd(&lim, "/dev/null", "flood", fd, &r), EXTRACT_ETOOBIG);
    assert_string_equal(r.message, "The extracted text is larger than the 1 MiB limit.");
    assert_int_equal(live_in_group_settled(r.pid), 0);
    extract_result_cleanup(&r);
    assert_int_equal(fstat(fd, &st), 0);
    assert_true((size_t)st.st_size <= lim.max_output);
    close(fd);
    /* a descriptor that cannot be written */
    fd = open(text_path, O_RDONLY | O_CLOEXEC);
    lim.max_output = (size_t)1 << 20;
    assert_int_equal(extract_run_to_fd(&lim, "/dev/null", "ok", fd, &r), EXTRACT_EINTERNAL);
    assert_non_null(strstr(r.message, "could not be written"));
    extract_result_cleanup(&r);
    close(fd);
    assert_int_equal(extract_run_to_fd(&lim, "/dev/null", "ok", -1, &r), EXTRACT_EINTERNAL);
    extract_result_cleanup(&r);
    unlink(text_path);
    unlink(path);
    rmdir(dir);
}

/* ---- structure marks ------------------------------------------------------ */

static void test_marks(void **state)
{
    (void)state;
    extract_limits_t lim;
    helper_limits(&lim);
    extract_result_t r;
    assert_int_equal(extract_run(&lim, "/dev/null", "marks-ok", &r), EXTRACT_OK);
    assert_string_equal(r.text, "h\xc3\xa9llo\nworld\n");
    assert_int_equal(r.n_marks, 5);
    assert_false(r.marks_dropped);
    static const struct {
        extract_mark_kind_t kind;
        size_t offset;
        int number;
        const char *label;
    } want[] = {
        { EXTRACT_MARK_PAGE, 0, 1, "iv" },     { EXTRACT_MARK_HEADING, 0, 1, "H\xc3\xa9llo there" },
        { EXTRACT_MARK_PAGE, 7, 2, "" },       { EXTRACT_MARK_HEADING, 7, 6, "World" },
        { EXTRACT_MARK_PAGE, 13, 3, "" },
    };
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(r.marks[i].kind, want[i].kind);
        assert_int_equal(r.marks[i].offset, want[i].offset);
        assert_int_equal(r.marks[i].number, want[i].number);
        assert_string_equal(r.marks[i].label, want[i].label);
    }
    extract_result_cleanup(&r);
    assert_null(r.marks);
    assert_int_equal(r.n_marks, 0);

    /* A run without marks has none. */
    assert_int_equal(extract_run(&lim, "/dev/null", "ok", &r), EXTRACT_OK);
    assert_null(r.marks);
    assert_int_equal(r.n_marks, 0);
    extract_result_cleanup(&r);

    static const char *const bad[] = {
        "marks-kind", "marks-past", "marks-order", "marks-midchar", "marks-level",
        "marks-page0", "marks-utf8", "marks-control", "marks-noeol", "marks-zeros",
        "marks-fields", "marks-long",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = extract_run(&lim, "/dev/null", bad[i], &r);
        if (rc != EXTRACT_EPROTOCOL)
            fail_msg("%s: got %d (%s)", bad[i], rc, extract_strerror(rc));
        assert_null(r.text);
        assert_null(r.marks);
        assert_string_equal(r.message, "The text extractor returned malformed output.");
        extract_result_cleanup(&r);
    }

    /* More than the runner keeps: the marks go, the text stays. */
    lim.max_output = (size_t)1 << 20;
    assert_int_equal(extract_run(&lim, "/dev/null", "marks-flood", &r), EXTRACT_OK);
    assert_string_equal(r.text, "h\xc3\xa9llo\nworld\n");
    assert_true(r.marks_dropped);
    assert_null(r.marks);
    assert_int_equal(r.n_marks, 0);
    extract_result_cleanup(&r);
    lim.max_output = (size_t)64 << 20;   /* its 8 MiB take them all */
    assert_int_equal(extract_run(&lim, "/dev/null", "marks-flood", &r), EXTRACT_OK);
    assert_false(r.marks_dropped);
    assert_int_equal(r.n_marks, 200000);
    assert_string_equal(r.marks[199999].label, "x");
    extract_result_cleanup(&r);
}

static void test_marks_to_file(void **state)
{
    (void)state;
    char path[] = "/tmp/kvchat-runner-marks-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    extract_limits_t lim;
    helper_limits(&lim);
    extract_result_t r;
    assert_int_equal(extract_run_to_fd(&lim, "/dev/null", "marks-ok", fd, &r), EXTRACT_OK);
    assert_int_equal(r.len, 13);
    assert_int_equal(r.n_marks, 5);
    assert_int_equal(r.marks[4].offset, 13);
    assert_string_equal(r.marks[1].label, "H\xc3\xa9llo there");
    extract_result_cleanup(&r);
    /* Only the length is checked here: the offset inside a character is
     * the caller's to refuse (the text is in its file, not in memory). */
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(extract_run_to_fd(&lim, "/dev/null", "marks-midchar", fd, &r), EXTRACT_OK);
    assert_int_equal(r.n_marks, 1);
    assert_int_equal(r.marks[0].offset, 2);
    extract_result_cleanup(&r);
    static const char *const bad[] = { "marks-past", "marks-order", "marks-level", "marks-long" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ftruncate(fd, 0), 0);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(extract_run_to_fd(&lim, "/dev/null", bad[i], fd, &r), EXTRACT_EPROTOCOL);
        assert_null(r.marks);
        extract_result_cleanup(&r);
    }
    close(fd);
}

/* The real program sends the marks of a Markdown file through the same
 * pipe. */
static void test_marks_real_program(void **state)
{
    (void)state;
    char path[] = "/tmp/kvchat-runner-md-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char md[] = "# Caf\xc3\xa9\n\nText.\n\nSecond\n------\n\f# Page two\n";
    assert_int_equal(write(fd, md, sizeof md - 1), (ssize_t)(sizeof md - 1));
    close(fd);
    extract_limits_t lim;
    extract_limits_default(&lim);
    lim.exe = KVCHAT_EXTRACT_EXE;
#if defined(__SANITIZE_ADDRESS__)
    lim.mem_bytes = 0;
#endif
    extract_result_t r;
    assert_int_equal(extract_run(&lim, path, "notes.md", &r), EXTRACT_OK);
    assert_string_equal(r.text, "# Caf\xc3\xa9\n\nText.\n\nSecond\n------\n\n# Page two\n");
    assert_int_equal(r.n_marks, 5);
    assert_int_equal(r.marks[0].kind, EXTRACT_MARK_PAGE);
    assert_int_equal(r.marks[1].offset, 0);
    assert_string_equal(r.marks[1].label, "Caf\xc3\xa9");
    assert_int_equal(r.marks[2].offset, 16);
    assert_int_equal(r.marks[2].number, 2);
    assert_string_equal(r.marks[2].label, "Second");
    assert_int_equal(r.marks[3].kind, EXTRACT_MARK_PAGE);
    assert_int_equal(r.marks[3].number, 2);
    assert_int_equal(r.marks[3].offset, 31);
    assert_int_equal(r.marks[4].offset, 31);
    assert_string_equal(r.marks[4].label, "Page two");
    extract_result_cleanup(&r);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_kills_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_orphan_holding_stdout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parent_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cpu_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_program, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_program_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_inside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_program, setup, teardown),
        cmocka_unit_test_setup_teardown(test_to_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_marks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ocr_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_marks_to_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_marks_real_program, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
