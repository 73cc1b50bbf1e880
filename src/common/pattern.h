/* pattern.h — regular expressions from clients, with bounded cost.
 *
 * The one module that includes pcre2.h (PCRE2, 8-bit, interpreter; no JIT,
 * whose stack ignores the depth and heap limits). A client's pattern (the
 * log filter of GET /api/v1/logs/recent) is first checked against the limits
 * below, then compiled with a compile context that repeats them, and every
 * match runs with a match context that bounds its steps, its depth and its
 * memory, plus an optional time budget over many matches. No pattern and no
 * subject can therefore take unbounded time or memory: glibc's regcomp took
 * 25 s and 8 GB for a{1,1000}{1,1000}.
 *
 * Syntax: PCRE2 (Perl), which is nearly a superset of POSIX extended
 * regular expressions (ERE). So that ERE patterns keep meaning what they
 * meant, the source is translated before compiling:
 *   - x{,m} means x{0,m} (PCRE2 10.42 would read it as literal text);
 *   - a repetition that directly follows another (ERE a{2}{3}, a**) repeats
 *     it, as in ERE: it is compiled as (?:a{2}){3} (PCRE2 would refuse it);
 *     a+ followed by + or ? stays PCRE2's possessive or lazy form;
 *   - GNU \< and \> (start and end of a word) and \` \' (start and end of
 *     the subject) become \b(?=\w), \b(?<=\w), \A and \z;
 *   - \Q...\E outside brackets becomes escaped literals.
 * Subjects are UTF-8; bytes that are not valid UTF-8 match nothing (not even
 * "."), the rest of the subject still matches (PCRE2_MATCH_INVALID_UTF).
 *
 * Limits and why (measured on the 2-core development machine, PCRE2 10.42):
 *   PATTERN_LEN_MAX 512 bytes — far above any log filter; keeps the checks
 *     and the compiled size small.
 *   PATTERN_REPEAT_MAX 1000 — the largest count in x{n}, x{n,}, x{n,m}, AND
 *     the largest product of the counts of repetitions nested in each other
 *     (or stacked: a{1,1000}{1,1000} is 1,000,000 repeats and is refused).
 *     Above it nothing useful is left for a one-line filter; below it,
 *     ([0-9]{1,3}\.){3} or .{0,500} still work.
 *   PATTERN_NEST_MAX 32 — groups nested deeper are refused (PCRE2's own
 *     default is 250).
 *   Nested unbounded repetition ((a+)+, (\d+\.)+) is allowed: it is common
 *     in useful patterns and is bounded at match time instead.
 *   Callouts (?C...) are refused: the budget's callout (below) is the only
 *     one.
 *   PATTERN_STEPS_MAX 1,000,000 backtracking steps per match attempt
 *     (PCRE2's match_limit; its default is 10,000,000, 0.13-0.15 s). (a+)+$,
 *     (a|aa)+$, (\w+\s?)+$, (a*)*$, ^(a?){25}a{25}$ on a line of 4096 'a'
 *     and '!' reach it after 15-50 ms (one attempt each; up to 70 ms when
 *     the machine was busy); the most an ordinary filter needed was 117,007
 *     ((foo|bar|word| )*$ over a 65,000-byte line).
 *   PATTERN_DEPTH_MAX 100,000 nested backtracking frames (depth_limit) and
 *     PATTERN_HEAP_KIB 16 MiB of backtracking memory (heap_limit; PCRE2's
 *     default is 20 GB): the same ordinary filter needed 52,004 frames and
 *     7.1 MiB; (a|aa)+$ over 64 KiB of 'a' stops at the depth limit after
 *     25 ms with 20 MB more peak RSS (PCRE2 doubles its frame vector).
 *   Per attempt means per start position: PCRE2 restarts its step count at
 *     each one, so (a|b)*$ on a line of 4096 'a' and '!' takes 0.33 s with
 *     no attempt over a limit (quadratic). That is what the time budget is
 *     for: the compiled pattern starts with a callout, run once per attempt,
 *     that checks the budget's deadline (a coarse clock; the overshoot is at
 *     most one attempt). Ordinary filters ran at 110-900 MB/s over log
 *     lines with the callout (it costs 0-35%), so logbook's 64 MiB scan
 *     limit takes well under its 2 s budget.
 *
 * Threads: a pattern_t holds its match state; use one per thread.
 */
#ifndef KVCHAT_COMMON_PATTERN_H
#define KVCHAT_COMMON_PATTERN_H

#include <stddef.h>

#define PATTERN_LEN_MAX 512
#define PATTERN_REPEAT_MAX 1000
#define PATTERN_NEST_MAX 32
#define PATTERN_STEPS_MAX 1000000
#define PATTERN_DEPTH_MAX 100000
#define PATTERN_HEAP_KIB 16384

/* pattern_compile flags. */
#define PATTERN_ICASE 1u   /* ignore case (Unicode case folding) */

enum {
    PATTERN_OK = 0,
    PATTERN_NOMATCH = 0,   /* pattern_match: the subject does not match */
    PATTERN_MATCH = 1,     /* pattern_match: it matches */
    PATTERN_EINVAL = -1,   /* NULL argument or unknown flag */
    PATTERN_ENOMEM = -2,
    PATTERN_ESYNTAX = -3,  /* not a valid pattern; the message says where */
    PATTERN_EREFUSED = -4, /* valid, but over one of the limits above */
    PATTERN_ECOSTLY = -5,  /* one match attempt went over the step, depth or
                              memory limit */
    PATTERN_ETIME = -6,    /* the time budget is spent */
};

/* A static English description of a PATTERN_* code. */
const char *pattern_strerror(int rc);

typedef struct pattern pattern_t;

/* Check, translate and compile `src` (NUL-terminated; "" matches every
 * subject) with `flags` (PATTERN_ICASE or 0). Returns PATTERN_OK with a new
 * pattern in *out (free it with pattern_free), or:
 *   PATTERN_ESYNTAX   "Invalid pattern: <why> at offset N" in err;
 *   PATTERN_EREFUSED  "Pattern refused: <which limit>" in err, for example
 *                     "Pattern refused: repetition count 5000 at offset 1 is
 *                     above the limit of 1000";
 *   PATTERN_EINVAL, PATTERN_ENOMEM (err says so too).
 * Offsets count bytes of src from 0. err (errcap bytes, may be NULL when
 * errcap is 0) is always NUL-terminated, "" on success; 256 bytes hold every
 * message. On failure *out is NULL. src is not kept. */
int pattern_compile(const char *src, unsigned flags, pattern_t **out, char *err, size_t errcap);

/* From now on, all later pattern_match() calls on p together may run for
 * about `ms` milliseconds (0 = no budget, the initial state); once it is
 * spent they return PATTERN_ETIME, from inside a match or at the next
 * call, until the budget is set again. Accepts NULL (does nothing). */
void pattern_set_budget(pattern_t *p, unsigned ms);

/* Search s[0..len) (not NUL-terminated; may hold NULs and invalid UTF-8)
 * for the pattern anywhere. Returns PATTERN_MATCH, PATTERN_NOMATCH,
 * PATTERN_ECOSTLY (one attempt went over PATTERN_STEPS_MAX,
 * PATTERN_DEPTH_MAX or PATTERN_HEAP_KIB: whether it would have matched is
 * unknown), PATTERN_ETIME, PATTERN_ENOMEM or PATTERN_EINVAL. The pattern
 * stays usable after any of them. */
int pattern_match(pattern_t *p, const char *s, size_t len);

/* Free the pattern and its match memory. Accepts NULL. */
void pattern_free(pattern_t *p);

#endif
