/* test_hugemem.c — large buffers on transparent huge pages.
 *
 * Whether the kernel hands out a huge page at a given moment depends on
 * free 2 MiB blocks, so the tests check what we control: the advice on the
 * mapping (the "hg" flag in /proc/self/smaps), the environment a re-exec
 * gets, and that the C library then advises its own large allocations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/hugemem.h"

#define MiB ((size_t)1 << 20)

/* Whether the mapping holding p is advised for huge pages (VmFlags "hg"). */
static int advised(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    assert_non_null(f);
    char line[512];
    int in = 0, hg = -1;
    uintptr_t a = (uintptr_t)p;
    while (hg < 0 && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {   /* a mapping's first line */
            in = a >= lo && a < hi;
            continue;
        }
        if (in && strncmp(line, "VmFlags:", 8) == 0)
            hg = strstr(line, " hg") != NULL;
    }
    fclose(f);
    assert_int_not_equal(hg, -1);   /* the mapping was found */
    return hg;
}

static void test_alloc(void **state)
{
    (void)state;
    char *small = hugemem_alloc(100);
    assert_non_null(small);
    memset(small, 1, 100);
    free(small);
    char *zero = hugemem_alloc(0);   /* a valid pointer to free */
    assert_non_null(zero);
    free(zero);

    size_t len = 9 * MiB + 123;
    char *p = hugemem_alloc(len);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % (2 * MiB), 0);
    memset(p, 0x5A, len);
    assert_int_equal(p[len - 1], 0x5A);
    if (hugemem_available())
        assert_true(advised(p));
    free(p);
}

static void test_usage(void **state)
{
    (void)state;
    size_t len = 32 * MiB, anon = 0, huge = 0;
    char *p = hugemem_alloc(len);
    assert_non_null(p);
    memset(p, 1, len);
    assert_int_equal(hugemem_usage(&anon, &huge), 0);
    assert_true(anon >= len);
    assert_true(huge <= anon);
    free(p);
}

/* The child half of test_exec: this binary run again by
 * hugemem_exec_advised() prints its GLIBC_TUNABLES and whether a large
 * malloc() came back advised. */
static int child_report(void)
{
    const char *t = getenv("GLIBC_TUNABLES");
    size_t len = 64 * MiB;
    char *p = malloc(len);
    if (!p)
        return 1;
    memset(p, 1, len);
    printf("%s\n%d\n", t ? t : "", advised(p + len / 2));
    free(p);
    return 0;
}

/* Run hugemem_exec_advised() in a child with GLIBC_TUNABLES=tunables (NULL:
 * unset); out gets what the re-executed child printed ("" when there was
 * no exec). */
static void run_exec(const char *tunables, char *out, size_t cap)
{
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        if (tunables)
            setenv("GLIBC_TUNABLES", tunables, 1);
        else
            unsetenv("GLIBC_TUNABLES");
        char *argv[] = { "test_hugemem", "--child-report", NULL };
        hugemem_exec_advised(argv);
        _exit(0);   /* nothing was executed */
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fd[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Under AddressSanitizer malloc() is not the C library's: its tunable
 * changes nothing, so the child reports "0" for its own allocation. */
#if defined(__SANITIZE_ADDRESS__)
#define LIBC_ADVISES "0"
#else
#define LIBC_ADVISES "1"
#endif

static void test_exec(void **state)
{
    (void)state;
    char out[512];
    if (!hugemem_available()) {
        run_exec(NULL, out, sizeof out);
        assert_string_equal(out, "");   /* nothing to gain: no exec */
        return;
    }
    run_exec(NULL, out, sizeof out);
    assert_string_equal(out, "glibc.malloc.hugetlb=1\n" LIBC_ADVISES "\n");
    /* other tunables are kept */
    run_exec("glibc.malloc.arena_max=2", out, sizeof out);
    assert_string_equal(out, "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1\n" LIBC_ADVISES "\n");
    /* a setting of the user's wins, either way: no exec */
    run_exec("glibc.malloc.hugetlb=0", out, sizeof out);
    assert_string_equal(out, "");
    run_exec("glibc.malloc.hugetlb=1", out, sizeof out);
    assert_string_equal(out, "");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child-report") == 0)
        return child_report();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_exec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
