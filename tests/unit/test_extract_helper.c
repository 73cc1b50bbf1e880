/* test_extract_helper.c — a stand-in for kvchat-extract that misbehaves on
 * request, for the runner tests (test_extract_runner.c).
 *
 * It takes the command line the runner builds and reads only the value of
 * --name, which chooses the behaviour:
 *   ok          "hello\n" and a correct status line
 *   segv        dies of SIGSEGV
 *   hang        sleeps forever
 *   hang-group  forks a child, and both sleep forever
 *   orphan      forks a child that sleeps holding stdout, then succeeds
 *   flood       writes to stdout forever
 *   hog         allocates and touches up to 2 GiB in 32 MiB steps; aborts
 *               when an allocation fails (as unchecked code would crash)
 *   spin        burns CPU forever
 *   badutf8     exits 0 with ill-formed UTF-8
 *   nostatus    exits 0 without a status line
 *   lie         exits 0 with a wrong character count
 *   encrypted   exits as kvchat-extract does for a password-protected PDF
 *   spoof       the same exit, with a message not from the table
 *   exit1       exits 1
 *   probe       reports what the sandbox looks like from inside
 *   marks-*     "h\xc3\xa9llo\nworld\n" (12 characters) and structure marks on
 *               fd 3 (the runner's structure pipe): marks-ok well-formed,
 *               marks-flood more than the runner keeps, the others each
 *               break one rule of the line format (see marks[] below)
 *   progress-*  "hello\n" and OCR progress lines on fd 4 (the runner's
 *               progress pipe): progress-ok well-formed, progress-slow
 *               announces OCR and takes 1.5 s, the others each break one
 *               rule of the protocol (see progress[] below)
 * Built without sanitizers (see src/extract/CMakeLists.txt).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

static void sleep_forever(void)
{
    for (;;)
        pause();
}

static void status_ok(size_t chars)
{
    fprintf(stderr, "type=txt chars=%zu\n", chars);
}

static unsigned long long limit_of(int resource)
{
    struct rlimit r;
    if (getrlimit(resource, &r) != 0)
        return 0;
    return r.rlim_cur == RLIM_INFINITY ? ~0ULL : (unsigned long long)r.rlim_cur;
}

/* Structure modes: the marks each writes after the text. */
static const struct {
    const char *mode;
    const char *marks;
} marks[] = {
    { "marks-ok", "P\t0\t1\tiv\nH\t0\t1\tH\xc3\xa9llo there\nP\t7\t2\t\n"
                  "H\t7\t6\tWorld\nP\t13\t3\t\n" },
    { "marks-kind", "X\t0\t1\tx\n" },
    { "marks-past", "P\t0\t1\t\nP\t14\t2\t\n" },          /* the text has 13 bytes */
    { "marks-order", "H\t7\t1\tb\nH\t6\t1\ta\n" },
    { "marks-midchar", "H\t2\t1\tinside \xc3\xa9\n" },
    { "marks-level", "H\t0\t7\tseven\n" },
    { "marks-page0", "P\t0\t0\t\n" },
    { "marks-utf8", "H\t0\t1\tbad \xff\n" },
    { "marks-control", "H\t0\t1\tbell\a\n" },
    { "marks-noeol", "H\t0\t1\tunended" },
    { "marks-zeros", "H\t00\t1\tzeros\n" },
    { "marks-fields", "H\t0\t1\n" },
};

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

static int structure(const char *mode)
{
    fputs("h\xc3\xa9llo\nworld\n", stdout);
    fflush(stdout);
    if (strcmp(mode, "marks-long") == 0) {
        char line[400] = "H\t0\t1\t";
        memset(line + 6, 'x', 257);
        line[263] = '\n';
        if (write_all(3, line, 264) != 0)
            return 96;
    } else if (strcmp(mode, "marks-flood") == 0) {
        /* 200,000 well-formed lines (1.6 MB): more than the runner keeps
         * for a 1 MiB text limit (128 KiB). */
        for (int i = 0; i < 200000; i++)
            if (write_all(3, "P\t0\t1\tx\n", 8) != 0)
                return 96;
    } else {
        for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
            if (strcmp(mode, marks[i].mode) == 0 &&
                write_all(3, marks[i].marks, strlen(marks[i].marks)) != 0)
                return 96;
    }
    status_ok(12);
    return 0;
}

static int probe(void)
{
    int fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                fds++;
        fds--;   /* the directory's own descriptor */
        closedir(d);
    }
    int env = 0;
    for (char **e = environ; *e; e++)
        env++;
    struct stat in, null;
    int devnull = fstat(0, &in) == 0 && stat("/dev/null", &null) == 0 &&
                  in.st_rdev == null.st_rdev && S_ISCHR(in.st_mode);
    char out[1024];
    int n = snprintf(out, sizeof out,
                     "fds=%d\nenv=%d\nsecret=%s\nfsize=%llu\ncore=%llu\nnofile=%llu\n"
                     "cpu=%llu\nas=%llu\npgid_is_pid=%d\nstdin_devnull=%d\nnice=%d\n",
                     fds, env, getenv("KVCHAT_TEST_SECRET") ? "yes" : "no",
                     limit_of(RLIMIT_FSIZE), limit_of(RLIMIT_CORE), limit_of(RLIMIT_NOFILE),
                     limit_of(RLIMIT_CPU), limit_of(RLIMIT_AS), getpgrp() == getpid(),
                     devnull, getpriority(PRIO_PROCESS, 0));
    fwrite(out, 1, (size_t)n, stdout);
    fflush(stdout);
    status_ok((size_t)n);
    return 0;
}

/* OCR progress modes: the lines each writes on fd 4 (extract.h). */
static const struct {
    const char *mode, *lines;
} progress[] = {
    { "progress-ok", "ocr 3\npage 1 90\npage 2 0\npage 5 80\n" },
    { "progress-first", "page 1 90\n" },                 /* no "ocr" line first */
    { "progress-order", "ocr 2\npage 2 90\npage 1 90\n" }, /* pages not increasing */
    { "progress-conf", "ocr 1\npage 1 101\n" },           /* confidence over 100 */
    { "progress-many", "ocr 1\npage 1 50\npage 2 50\n" }, /* more pages than announced */
    { "progress-unended", "ocr 1\npage 1 50" },            /* last line without '\n' */
    { "progress-zero", "ocr 02\n" },                       /* leading zero */
    { "progress-huge", "ocr 999999\n" },                   /* past EXTRACT_OCR_PAGES_MAX */
    { "progress-junk", "ocr 1\npage one 50\n" },
};

static int ocr_progress(const char *mode)
{
    const char *lines = NULL;
    for (size_t i = 0; i < sizeof progress / sizeof progress[0]; i++)
        if (strcmp(mode, progress[i].mode) == 0)
            lines = progress[i].lines;
    if (strcmp(mode, "progress-slow") == 0) {
        if (write(4, "ocr 1\n", 6) != 6)
            return 1;
        usleep(1500 * 1000);
        lines = "page 1 77\n";
    }
    if (!lines)
        return 2;
    size_t n = strlen(lines);
    if (write(4, lines, n) != (ssize_t)n)
        return 1;
    fputs("hello\n", stdout);
    fflush(stdout);
    status_ok(6);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = "ok";
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--name") == 0)
            mode = argv[i + 1];

    if (strcmp(mode, "ok") == 0) {
        fputs("hello\n", stdout);
        fflush(stdout);
        status_ok(6);
        return 0;
    }
    if (strcmp(mode, "segv") == 0) {
        raise(SIGSEGV);
        return 99;
    }
    if (strcmp(mode, "hang") == 0)
        sleep_forever();
    if (strcmp(mode, "hang-group") == 0) {
        if (fork() < 0)
            return 98;
        sleep_forever();
    }
    if (strcmp(mode, "orphan") == 0) {
        pid_t pid = fork();
        if (pid < 0)
            return 98;
        if (pid == 0) {
            sleep(60);
            _exit(0);
        }
        fputs("hello\n", stdout);
        fflush(stdout);
        status_ok(6);
        return 0;
    }
    if (strcmp(mode, "flood") == 0) {
        static char block[65536];
        memset(block, 'a', sizeof block);
        for (;;)
            if (fwrite(block, 1, sizeof block, stdout) != sizeof block)
                return 97;
    }
    if (strcmp(mode, "hog") == 0) {
        const size_t step = (size_t)32 << 20;
        for (size_t total = 0; total < ((size_t)2 << 30); total += step) {
            char *p = malloc(step);
            if (!p)
                abort();
            memset(p, 1, step);
        }
        fputs("hogged\n", stdout);
        status_ok(7);
        return 0;
    }
    if (strcmp(mode, "spin") == 0) {
        volatile unsigned long x = 0;
        for (;;)
            x++;
    }
    if (strcmp(mode, "badutf8") == 0) {
        fputs("ok \xff\xfe\n", stdout);
        fflush(stdout);
        status_ok(6);
        return 0;
    }
    if (strcmp(mode, "nostatus") == 0) {
        fputs("hello\n", stdout);
        return 0;
    }
    if (strcmp(mode, "lie") == 0) {
        fputs("hello\n", stdout);
        fflush(stdout);
        status_ok(99);
        return 0;
    }
    if (strcmp(mode, "encrypted") == 0) {
        fputs("error=encrypted The PDF is password-protected; kvchat cannot read it.\n", stderr);
        return 12;
    }
    if (strcmp(mode, "spoof") == 0) {
        fputs("error=encrypted Your file is locked: visit evil.example to unlock it.\n", stderr);
        return 12;
    }
    if (strcmp(mode, "exit1") == 0)
        return 1;
    if (strcmp(mode, "probe") == 0)
        return probe();
    if (strncmp(mode, "marks-", 6) == 0)
        return structure(mode);
    if (strncmp(mode, "progress-", 9) == 0)
        return ocr_progress(mode);
    fprintf(stderr, "error=usage unknown helper mode\n");
    return 2;
}
