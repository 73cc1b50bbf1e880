/* test_pattern.c — client regular expressions with bounded cost (pattern.h).
 *
 * - refusals, each with its message: length, repetition counts, nested and
 *   stacked repetitions (the security review's a{1,1000}{1,1000}), group
 *   nesting, client callouts; syntax errors with offsets in the client's
 *   text; bad arguments;
 * - hostile patterns are bounded: (a+)+$, (a|aa)+$, (\w+\s?)+$,
 *   ^(a?){25}a{25}$ answer "too costly" instead of backtracking for
 *   minutes, (a|b)*$ on a long line runs out of its time budget, and the
 *   process's peak memory stays far from the 8 GB glibc took (results are
 *   asserted, not times);
 * - ordinary patterns still match: alternation, classes, anchors, case
 *   rules, back references, UTF-8 and invalid bytes in subjects, and the
 *   POSIX ERE forms that PCRE2 reads differently ({,m}, a{2}{3}, a**, \<,
 *   \>).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/pattern.h"

/* Compile must fail with rc and exactly this message. */
static void refused(const char *src, int rc, const char *want)
{
    char err[256];
    pattern_t *p = (pattern_t *)&err;   /* must come back NULL */
    assert_int_equal(pattern_compile(src, 0, &p, err, sizeof err), rc);
    assert_null(p);
    assert_string_equal(err, want);
}

static pattern_t *compiled(const char *src, unsigned flags)
{
    char err[256];
    pattern_t *p = NULL;
    int rc = pattern_compile(src, flags, &p, err, sizeof err);
    if (rc != PATTERN_OK)
        fail_msg("'%s' not compiled: %s", src, err);
    assert_string_equal(err, "");
    assert_non_null(p);
    return p;
}

static int match_s(pattern_t *p, const char *s)
{
    return pattern_match(p, s, strlen(s));
}

/* Whether src (flags) matches s; the pattern must compile. */
static bool matches(const char *src, unsigned flags, const char *s)
{
    pattern_t *p = compiled(src, flags);
    int m = match_s(p, s);
    pattern_free(p);
    if (m != PATTERN_MATCH && m != PATTERN_NOMATCH)
        fail_msg("'%s' on '%s': %s", src, s, pattern_strerror(m));
    return m == PATTERN_MATCH;
}

/* n copies of c followed by tail, malloc'd. */
static char *run_of(char c, size_t n, const char *tail)
{
    size_t t = strlen(tail);
    char *s = malloc(n + t + 1);
    assert_non_null(s);
    memset(s, c, n);
    memcpy(s + n, tail, t + 1);
    return s;
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

static void test_refusals(void **state)
{
    (void)state;
    /* The review's pattern: a million repeats, refused before compiling. */
    refused("a{1,1000}{1,1000}", PATTERN_EREFUSED,
            "Pattern refused: nested repetitions at offset 9 allow 1000000 repeats, above the "
            "limit of 1000");
    refused("(?:a{1,1000}){1,1000}", PATTERN_EREFUSED,
            "Pattern refused: nested repetitions at offset 13 allow 1000000 repeats, above the "
            "limit of 1000");
    refused("((x{10}){10}){11}", PATTERN_EREFUSED,
            "Pattern refused: nested repetitions at offset 13 allow 1100 repeats, above the "
            "limit of 1000");
    pattern_free(compiled("((x{10}){10}){10}", 0));
    pattern_free(compiled("(?:x{10}|y{1000})+", 0));   /* unbounded: factor 1 */

    refused("a{1,1001}", PATTERN_EREFUSED,
            "Pattern refused: repetition count 1001 at offset 1 is above the limit of 1000");
    refused("ab{1001,}", PATTERN_EREFUSED,
            "Pattern refused: repetition count 1001 at offset 2 is above the limit of 1000");
    refused("a{99999999999}", PATTERN_EREFUSED,
            "Pattern refused: repetition count 4294967295 at offset 1 is above the limit of 1000");
    refused("x{,5000}", PATTERN_EREFUSED,
            "Pattern refused: repetition count 5000 at offset 1 is above the limit of 1000");
    pattern_free(compiled("a{1000}b{0,1000}", 0));

    char src[PATTERN_LEN_MAX + 2];
    memset(src, 'a', sizeof src - 1);
    src[sizeof src - 1] = '\0';
    refused(src, PATTERN_EREFUSED, "Pattern refused: it is 513 bytes long, above the limit of 512");
    src[PATTERN_LEN_MAX] = '\0';
    pattern_free(compiled(src, 0));

    /* 32 groups deep is fine, 33 is not (also through stacked repetition's
     * groups); PCRE2 itself would allow 250. */
    char deep[128];
    snprintf(deep, sizeof deep, "%.32sa%.32s", "((((((((((((((((((((((((((((((((((",
             "))))))))))))))))))))))))))))))))))");
    pattern_free(compiled(deep, 0));
    snprintf(deep, sizeof deep, "%.33sa%.33s", "((((((((((((((((((((((((((((((((((",
             "))))))))))))))))))))))))))))))))))");
    refused(deep, PATTERN_EREFUSED, "Pattern refused: groups nested more than 32 deep at offset 32");
    snprintf(deep, sizeof deep, "%.32sa%.32s{2}{3}", "((((((((((((((((((((((((((((((((((",
             "))))))))))))))))))))))))))))))))))");
    pattern_free(compiled(deep, 0));
    snprintf(deep, sizeof deep, "%.32sa*+*%.32s", "((((((((((((((((((((((((((((((((((",
             "))))))))))))))))))))))))))))))))))");
    refused(deep, PATTERN_EREFUSED, "Pattern refused: groups nested more than 32 deep at offset 35");

    /* The budget's callout is the only one. */
    refused("a(?C1)b", PATTERN_EREFUSED,
            "Pattern refused: callouts (?C...) are not allowed (offset 1)");
    refused("(?C\"x\")", PATTERN_EREFUSED,
            "Pattern refused: callouts (?C...) are not allowed (offset 0)");
}

static void test_syntax_errors(void **state)
{
    (void)state;
    refused("((", PATTERN_ESYNTAX, "Invalid pattern: missing closing parenthesis at offset 2");
    refused("([a-z", PATTERN_ESYNTAX,
            "Invalid pattern: missing terminating ] for character class at offset 5");
    refused("*[", PATTERN_ESYNTAX,
            "Invalid pattern: quantifier does not follow a repeatable item at offset 0");
    refused("a\\y", PATTERN_ESYNTAX,
            "Invalid pattern: unrecognized character follows \\ at offset 2");
    refused("[[=a=]]", PATTERN_ESYNTAX,
            "Invalid pattern: POSIX collating elements are not supported at offset 1");
    /* Offsets are the client's, not the translation's ("\<" is 8 bytes
     * once translated, the callout 4 more). */
    refused("\\<ab)", PATTERN_ESYNTAX,
            "Invalid pattern: unmatched closing parenthesis at offset 4");
    refused("ok\xff", PATTERN_ESYNTAX,
            "Invalid pattern: UTF-8 error: illegal byte (0xfe or 0xff) at offset 2");
    refused("\\C", PATTERN_ESYNTAX,
            "Invalid pattern: using \\C is disabled by the application at offset 2");

    char err[8];
    pattern_t *p = NULL;
    assert_int_equal(pattern_compile(NULL, 0, &p, err, sizeof err), PATTERN_EINVAL);
    assert_int_equal(pattern_compile("a", 0, NULL, err, sizeof err), PATTERN_EINVAL);
    assert_int_equal(pattern_compile("a", 0x80, &p, err, sizeof err), PATTERN_EINVAL);
    assert_null(p);
    /* The message is cut to the room given; no room at all is fine. */
    assert_int_equal(pattern_compile("((", 0, &p, err, sizeof err), PATTERN_ESYNTAX);
    assert_string_equal(err, "Invalid");
    assert_int_equal(pattern_compile("((", 0, &p, NULL, 0), PATTERN_ESYNTAX);
    assert_int_equal(pattern_compile("a", 0, &p, NULL, 0), PATTERN_OK);
    assert_int_equal(pattern_match(p, NULL, 1), PATTERN_EINVAL);
    assert_int_equal(pattern_match(NULL, "a", 1), PATTERN_EINVAL);
    pattern_free(p);
    pattern_free(NULL);
    assert_string_equal(pattern_strerror(PATTERN_ECOSTLY), "pattern too costly on this subject");
    assert_string_equal(pattern_strerror(12345), "unknown pattern error");
}

static void test_hostile_bounded(void **state)
{
    (void)state;
    long rss0 = peak_rss_kib();
    /* Exponential backtracking: each stops at the step (or depth) limit of
     * one attempt; without limits each runs for minutes. */
    const char *exponential[] = { "(a+)+$", "(a|aa)+$", "(\\w+\\s?)+$", "^(a?){25}a{25}$",
                                  "(a*)*$", "(?:a|a)+$", "a*a*a*a*a*a*a*a*a*$" };
    char *line = run_of('a', 4096, "!");
    char *longline = run_of('a', 65536, "!");
    for (size_t i = 0; i < sizeof exponential / sizeof *exponential; i++) {
        pattern_t *p = compiled(exponential[i], 0);
        pattern_set_budget(p, 60000);   /* far away: the step limit must come first */
        int m = match_s(p, line);
        if (m != PATTERN_ECOSTLY)
            fail_msg("'%s': %s", exponential[i], pattern_strerror(m));
        assert_int_equal(match_s(p, longline), PATTERN_ECOSTLY);
        /* Still usable: the limits are per subject. */
        m = match_s(p, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        if (m != PATTERN_MATCH)
            fail_msg("'%s' on 50 a: %s", exponential[i], pattern_strerror(m));
        pattern_free(p);
    }

    /* Quadratic over start positions, no single attempt over a limit:
     * the time budget ends it, at once and for every later call. */
    pattern_t *p = compiled("(a|b)*$", 0);
    pattern_set_budget(p, 50);
    assert_int_equal(match_s(p, line), PATTERN_ETIME);
    assert_int_equal(match_s(p, "ab"), PATTERN_ETIME);
    pattern_set_budget(p, 0);   /* no budget */
    assert_int_equal(match_s(p, "ab"), PATTERN_MATCH);
    pattern_set_budget(p, 60000);
    assert_int_equal(match_s(p, "ab"), PATTERN_MATCH);
    pattern_free(p);

    /* Patterns that look nested but PCRE2 answers at once. */
    assert_false(matches("(.*)*x", 0, line));
    assert_false(matches("x(.*)*y", 0, line));

    /* Backtracking memory is bounded by PATTERN_HEAP_KIB and the depth
     * limit: far below the review's 8 GB. */
    free(line);
    free(longline);
    long grew = peak_rss_kib() - rss0;
    if (grew > RSS_BOUND_KIB)
        fail_msg("peak RSS grew by %ld KiB", grew);
}

static void test_ordinary(void **state)
{
    (void)state;
    const char *l = "2026-11-25T03:52:31.123Z ERROR engine: slot 3 decoded 41 tokens in 812 ms";
    assert_true(matches("^[^ ]+ ERROR", 0, l));
    assert_true(matches("(WARN|ERROR) engine", 0, l));
    assert_true(matches("[[:digit:]]+ ms$", 0, l));
    assert_true(matches("\\d+ ms$", 0, l));
    assert_true(matches("slot [0-9] ", 0, l));
    assert_true(matches("T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z", 0, l));
    assert_false(matches("^ERROR", 0, l));
    assert_false(matches("tokens$", 0, l));
    assert_true(matches("", 0, l));
    assert_true(matches("([0-9]+\\.)+[0-9]+", 0, "v 10.0.0.1"));
    assert_true(matches("([0-9]{1,3}\\.){3}[0-9]{1,3}", 0, "from 192.168.1.20:80"));
    /* Case matters unless asked; (?i) asks inside the pattern. */
    assert_false(matches("error line 29(68|75)", 0, "ERROR line 2968"));
    assert_true(matches("error line 29(68|75)", PATTERN_ICASE, "ERROR line 2968"));
    assert_true(matches("(?i)error", 0, "ERROR"));
    assert_true(matches("\xc3\xa9t\xc3\xa9", PATTERN_ICASE, "\xc3\x89T\xc3\x89"));
    /* Back references, lookaround, lazy and possessive forms. */
    assert_true(matches("(ab)\\1", 0, "xabab"));
    assert_true(matches("(?<=id=)[0-9]+", 0, "id=42"));
    assert_true(matches("a+?b", 0, "aab"));
    assert_false(matches("a++a", 0, "aaa"));
    assert_true(matches("(*UTF)(*LIMIT_MATCH=1000)^ab", 0, "abc"));
    /* Brackets: a leading ] is literal, a backslash escapes (as in Perl). */
    assert_true(matches("[]a]", 0, "]"));
    assert_true(matches("[\\d]", 0, "5"));
    assert_true(matches("\\Qa.b*\\E", 0, "xa.b*"));
    assert_false(matches("\\Qa.b*\\E", 0, "xaxb"));
    assert_true(matches("\\{x}", 0, "{x}"));
    /* A comment or \E between a repetition and its ? or + does not turn
     * the ? into a second repetition (PCRE2 skips them). */
    assert_false(matches("^\\d{1,3}(?#note)?b", 0, "b"));
    assert_false(matches("^\\d{1,3}\\E?b", 0, "b"));
    assert_true(matches("a{x", 0, "a{x"));

    /* POSIX ERE forms keep their meaning. */
    assert_true(matches("^a{,3}b$", 0, "aab"));
    assert_false(matches("^a{,3}b$", 0, "a{,3}b"));
    assert_false(matches("^a{,3}b$", 0, "aaaab"));
    assert_true(matches("^{,2}x", 0, "{,2}x"));   /* nothing to repeat: text */
    assert_true(matches("^x{2}{3}$", 0, "xxxxxx"));
    assert_false(matches("^x{2}{3}$", 0, "xxxxx"));
    assert_true(matches("^a**b$", 0, "aab"));
    assert_true(matches("^\\Qab\\E{2}{2}$", 0, "abbbb"));
    assert_true(matches("\\<ab\\>", 0, "x ab y"));
    assert_false(matches("\\<ab\\>", 0, "xab y"));
    assert_false(matches("\\<ab\\>", 0, "x abc"));
    assert_true(matches("\\`ab", 0, "abc"));
    assert_false(matches("\\`ab", 0, "cab"));
    assert_true(matches("ab\\'", 0, "cab"));

    /* Subjects: UTF-8 characters, invalid bytes (matched by nothing, the
     * rest still matches), NUL bytes (the length is what counts). */
    assert_true(matches("^.t.$", 0, "\xc3\xa9t\xc3\xa9"));
    pattern_t *p = compiled("error", 0);
    assert_int_equal(pattern_match(p, "ok \xff\xfe error", 11), PATTERN_MATCH);
    assert_int_equal(pattern_match(p, "ok\0error", 8), PATTERN_MATCH);
    assert_int_equal(pattern_match(p, "ok\0error", 2), PATTERN_NOMATCH);
    assert_int_equal(pattern_match(p, "", 0), PATTERN_NOMATCH);
    pattern_free(p);
    p = compiled("k.e", 0);
    assert_int_equal(pattern_match(p, "ok\xff" "error", 8), PATTERN_NOMATCH);
    assert_int_equal(pattern_match(p, "ok error", 8), PATTERN_MATCH);
    pattern_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_hostile_bounded),
        cmocka_unit_test(test_ordinary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
