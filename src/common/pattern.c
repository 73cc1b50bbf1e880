/* pattern.c — see pattern.h.
 *
 * Compiling is two passes over the client's text:
 *  1. a translator (tr_*) walks the pattern token by token, the way PCRE2
 *     will read it (escapes, \Q...\E, bracket classes, group openers,
 *     quantifiers), checks the limits of pattern.h, rewrites the ERE forms
 *     listed there and puts the budget callout "(?C)" in front (after any
 *     leading (*VERB) settings, which PCRE2 only accepts at the very start).
 *     It keeps, for every byte it writes, the offset of the source byte it
 *     came from, so PCRE2's error offsets are reported in the client's
 *     terms;
 *  2. pcre2_compile() on the translation, with a compile context that
 *     repeats the length and nesting limits.
 * The translator need not reject everything PCRE2 would: whatever it lets
 * through is still compiled and matched under PCRE2's limits; its job is
 * the clear refusals and the ERE rewrites.
 *
 * Invariants: the callout is the only one in the compiled pattern (client
 * callouts are refused); a pattern_t's match context, match data and budget
 * are used by one thread at a time.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "common/pattern.h"

#include <pcre2.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Room for the translation: a source byte becomes at most 5 (a stacked
 * quantifier "*" becomes "(?:" ... ")*"; "\>" becomes "\b(?<=\w)"), plus
 * the callout. */
#define TR_CAP(len) ((len) * 5 + 16)

struct pattern {
    pcre2_code *code;
    pcre2_match_context *mctx;
    pcre2_match_data *md;
    bool has_budget;
    bool spent;             /* the budget ran out; sticky */
    int64_t deadline_ns;    /* monotonic clock */
};

const char *pattern_strerror(int rc)
{
    switch (rc) {
    case PATTERN_OK: return "ok";
    case PATTERN_MATCH: return "match";
    case PATTERN_EINVAL: return "invalid argument";
    case PATTERN_ENOMEM: return "out of memory";
    case PATTERN_ESYNTAX: return "invalid pattern";
    case PATTERN_EREFUSED: return "pattern over a limit";
    case PATTERN_ECOSTLY: return "pattern too costly on this subject";
    case PATTERN_ETIME: return "time budget spent";
    default: return "unknown pattern error";
    }
}

static void set_err(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t cap, const char *fmt, ...)
{
    if (!err || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* ---- the translator ---- */

enum { ITEM_NONE, ITEM_ATOM, ITEM_QUANT };

typedef struct {
    size_t out_at;          /* where the group's "(" is in the output */
    uint32_t inner;         /* largest product of counts inside it so far */
} tr_group_t;

typedef struct {
    const char *src;
    size_t len;
    size_t i;               /* next source byte */
    char *out;
    uint16_t *map;          /* out[k] came from src[map[k]] */
    size_t n, cap;
    bool overflow;
    bool callout_done;
    /* The item a quantifier would apply to. */
    int prev;
    size_t atom_out;        /* where that item starts in the output */
    uint32_t atom_inner;    /* product of the counts inside it (groups) */
    uint32_t quant_product; /* prev == ITEM_QUANT: the repeats it allows */
    unsigned atom_wraps;    /* (?: ) put around it for stacked quantifiers */
    size_t depth;           /* open groups */
    tr_group_t stack[PATTERN_NEST_MAX + 1];   /* [0] is the whole pattern */
    char *err;
    size_t errcap;
} tr_t;

static void tr_emit(tr_t *t, const char *s, size_t n, size_t from)
{
    if (t->n + n > t->cap) {
        t->overflow = true;
        return;
    }
    memcpy(t->out + t->n, s, n);
    for (size_t k = 0; k < n; k++)
        t->map[t->n + k] = (uint16_t)from;
    t->n += n;
}

/* Copy src[a..b) unchanged. */
static void tr_copy(tr_t *t, size_t a, size_t b)
{
    if (t->n + (b - a) > t->cap) {
        t->overflow = true;
        return;
    }
    memcpy(t->out + t->n, t->src + a, b - a);
    for (size_t k = a; k < b; k++)
        t->map[t->n++] = (uint16_t)k;
}

static char tr_at(const tr_t *t, size_t k)
{
    return k < t->len ? t->src[k] : '\0';
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
static bool is_alpha(char c) { return is_lower(c) || (c >= 'A' && c <= 'Z'); }
static bool is_xdigit(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Bytes of the UTF-8 character starting at src[k] (1 for a stray byte;
 * PCRE2 reports invalid UTF-8 itself). */
static size_t tr_char_len(const tr_t *t, size_t k)
{
    unsigned char c = (unsigned char)t->src[k];
    size_t n = c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    return k + n <= t->len ? n : t->len - k;
}

/* The index just past the first `close` at or after k (len if none). */
static size_t tr_skip_to(const tr_t *t, size_t k, char close)
{
    while (k < t->len && t->src[k] != close)
        k++;
    return k < t->len ? k + 1 : t->len;
}

/* A new item starts at output position `at`. */
static void tr_atom(tr_t *t, size_t at, uint32_t inner)
{
    t->prev = ITEM_ATOM;
    t->atom_out = at;
    t->atom_inner = inner;
    t->atom_wraps = 0;
}

static int tr_refuse_depth(tr_t *t, size_t at)
{
    set_err(t->err, t->errcap,
            "Pattern refused: groups nested more than %d deep at offset %zu", PATTERN_NEST_MAX,
            at);
    return PATTERN_EREFUSED;
}

/* A group opener src[i..j) (already checked to open a group). */
static int tr_open(tr_t *t, size_t j)
{
    if (t->depth + 1 > PATTERN_NEST_MAX)
        return tr_refuse_depth(t, t->i);
    size_t at = t->n;
    tr_copy(t, t->i, j);
    t->i = j;
    t->depth++;
    t->stack[t->depth].out_at = at;
    t->stack[t->depth].inner = 1;
    t->prev = ITEM_NONE;
    return PATTERN_OK;
}

/* "(" at t->i: a group, a comment, an option setting, a verb, a call. */
static int tr_paren(tr_t *t)
{
    size_t i = t->i;
    char c1 = tr_at(t, i + 1), c2 = tr_at(t, i + 2), c3 = tr_at(t, i + 3);
    if (c1 == '*') {
        if (is_lower(c2)) {
            /* (*atomic:...), (*pla:...): groups with alphabetic names. */
            size_t j = i + 2;
            while (j < t->len && is_alpha(t->src[j]))
                j++;
            return tr_open(t, j < t->len && t->src[j] == ':' ? j + 1 : j);
        }
        /* (*VERB), (*MARK:name), (*UTF), (*LIMIT_MATCH=n): no item. */
        size_t j = tr_skip_to(t, i, ')');
        tr_copy(t, i, j);
        t->i = j;
        t->prev = ITEM_NONE;
        return PATTERN_OK;
    }
    if (c1 != '?')
        return tr_open(t, i + 1);
    if (c2 == '#') {
        /* A comment: dropped; the item before it is still the one a
         * quantifier after it applies to. */
        size_t j = tr_skip_to(t, i, ')');
        if (j == t->len && t->src[j - 1] != ')')
            tr_copy(t, i, j);   /* unterminated: PCRE2 says so */
        t->i = j;
        return PATTERN_OK;
    }
    if (c2 == 'C') {
        set_err(t->err, t->errcap, "Pattern refused: callouts (?C...) are not allowed (offset %zu)",
                i);
        return PATTERN_EREFUSED;
    }
    if (c2 == 'R' || is_digit(c2) || ((c2 == '+' || c2 == '-') && is_digit(c3)) || c2 == '&' ||
        (c2 == 'P' && (c3 == '>' || c3 == '='))) {
        /* Recursion, subroutine call or named back reference: one item. */
        size_t j = tr_skip_to(t, i, ')');
        size_t at = t->n;
        tr_copy(t, i, j);
        t->i = j;
        tr_atom(t, at, 1);
        return PATTERN_OK;
    }
    if (c2 == '(') {
        /* A conditional group; an assertion condition is a group of its
         * own (read next), any other condition is skipped here. */
        if (c3 == '?' || c3 == '*')
            return tr_open(t, i + 2);
        return tr_open(t, tr_skip_to(t, i + 2, ')'));
    }
    if (c2 == ':' || c2 == '=' || c2 == '!' || c2 == '>' || c2 == '|' || c2 == '*')
        return tr_open(t, i + 3);
    if (c2 == '<' && (c3 == '=' || c3 == '!' || c3 == '*'))
        return tr_open(t, i + 4);
    if (c2 == '<' || c2 == '\'' || (c2 == 'P' && c3 == '<')) {
        /* Named group: through the end of the name. */
        char close = c2 == '\'' ? '\'' : '>';
        size_t from = c2 == 'P' ? i + 4 : i + 3;
        return tr_open(t, tr_skip_to(t, from, close));
    }
    /* Option letters: (?i) sets options (no item), (?i:...) is a group. */
    size_t j = i + 2;
    while (j < t->len && (is_alpha(t->src[j]) || t->src[j] == '-' || t->src[j] == '^'))
        j++;
    if (j < t->len && t->src[j] == ')') {
        tr_copy(t, i, j + 1);
        t->i = j + 1;
        t->prev = ITEM_NONE;
        return PATTERN_OK;
    }
    if (j < t->len && t->src[j] == ':')
        return tr_open(t, j + 1);
    return tr_open(t, i + 2);   /* unknown: PCRE2 explains */
}

static void tr_close(tr_t *t)
{
    if (t->depth == 0) {
        /* Unmatched: PCRE2 reports it. */
        tr_copy(t, t->i, t->i + 1);
        t->i++;
        t->prev = ITEM_NONE;
        return;
    }
    tr_group_t g = t->stack[t->depth--];
    tr_copy(t, t->i, t->i + 1);
    t->i++;
    if (g.inner > t->stack[t->depth].inner)
        t->stack[t->depth].inner = g.inner;
    tr_atom(t, g.out_at, g.inner);
}

/* "[" at t->i: copy the whole class unchanged (one item). */
static void tr_class(tr_t *t)
{
    size_t i = t->i, j = i + 1;
    if (tr_at(t, j) == '^')
        j++;
    if (tr_at(t, j) == ']')
        j++;   /* a leading ] is literal */
    while (j < t->len) {
        char c = t->src[j];
        if (c == '\\' && tr_at(t, j + 1) == 'Q') {
            j += 2;
            while (j < t->len && !(t->src[j] == '\\' && tr_at(t, j + 1) == 'E'))
                j++;
            j = j + 2 <= t->len ? j + 2 : t->len;
        } else if (c == '\\') {
            j = j + 2 <= t->len ? j + 2 : t->len;
        } else if (c == '[' && (tr_at(t, j + 1) == ':' || tr_at(t, j + 1) == '.' ||
                                tr_at(t, j + 1) == '=')) {
            /* [:alpha:] and friends, through their ":]". */
            char kind = t->src[j + 1];
            size_t k = j + 2;
            while (k + 1 < t->len && !(t->src[k] == kind && t->src[k + 1] == ']'))
                k++;
            j = k + 1 < t->len ? k + 2 : j + 1;
        } else if (c == ']') {
            j++;
            break;
        } else {
            j++;
        }
    }
    size_t at = t->n;
    tr_copy(t, i, j);
    t->i = j;
    tr_atom(t, at, 1);
}

/* "\" at t->i. */
static void tr_escape(tr_t *t)
{
    size_t i = t->i, at = t->n;
    char c = tr_at(t, i + 1);
    if (i + 1 >= t->len) {
        tr_copy(t, i, i + 1);   /* "\" at the end: PCRE2 says so */
        t->i = i + 1;
        return;
    }
    switch (c) {
    case 'Q': {
        /* Each quoted character becomes an escaped literal, so that a
         * stacked quantifier's (?: ) can go around the last one. */
        size_t j = i + 2;
        while (j < t->len && !(t->src[j] == '\\' && tr_at(t, j + 1) == 'E')) {
            size_t cl = tr_char_len(t, j);
            size_t here = t->n;
            char ch = t->src[j];
            if (cl == 1 && (unsigned char)ch < 0x80 && !is_alpha(ch) && !is_digit(ch))
                tr_emit(t, "\\", 1, j);
            tr_copy(t, j, j + cl);
            tr_atom(t, here, 1);
            j += cl;
        }
        t->i = j < t->len ? j + 2 : t->len;
        return;
    }
    case 'E':
        t->i = i + 2;   /* a stray \E is ignored, as PCRE2 does */
        return;
    case '<':
        tr_emit(t, "\\b(?=\\w)", 8, i);
        break;
    case '>':
        tr_emit(t, "\\b(?<=\\w)", 9, i);
        break;
    case '`':
    case '\'':
        /* Assertions PCRE2 does not repeat: nothing for a quantifier. */
        tr_emit(t, c == '`' ? "\\A" : "\\z", 2, i);
        t->i = i + 2;
        t->prev = ITEM_NONE;
        return;
    default: {
        size_t j = i + 1 + tr_char_len(t, i + 1);
        char n1 = tr_at(t, i + 2);
        if (c && strchr("xopPNgk", c) && n1 == '{') {
            j = tr_skip_to(t, i + 2, '}');      /* \x{263a}, \p{Lu}, \g{1} */
        } else if ((c == 'g' || c == 'k') && (n1 == '<' || n1 == '\'')) {
            j = tr_skip_to(t, i + 3, n1 == '<' ? '>' : '\'');
        } else if (c == 'c') {
            j = i + 3 <= t->len ? i + 3 : t->len;   /* \cX */
        } else if (c == 'x') {
            while (j < t->len && j < i + 4 && is_xdigit(t->src[j]))
                j++;
        } else if (c == '0') {
            while (j < t->len && j < i + 4 && t->src[j] >= '0' && t->src[j] <= '7')
                j++;
        } else if (is_digit(c)) {
            while (j < t->len && is_digit(t->src[j]))
                j++;
        }
        tr_copy(t, i, j);
        t->i = j;
        if (c && strchr("bBAzZGK", c))
            t->prev = ITEM_NONE;   /* assertions: not repeatable */
        else
            tr_atom(t, at, 1);
        return;
    }
    }
    t->i = i + 2;
    tr_atom(t, at, 1);
}

/* Read digits at src[*k] into *v (saturating); returns how many. */
static size_t tr_number(const tr_t *t, size_t *k, uint32_t *v)
{
    size_t n = 0;
    uint64_t x = 0;
    while (*k < t->len && is_digit(t->src[*k])) {
        x = x * 10 + (uint64_t)(t->src[*k] - '0');
        if (x > UINT32_MAX)
            x = UINT32_MAX;
        (*k)++;
        n++;
    }
    *v = (uint32_t)x;
    return n;
}

/* "{" at t->i: a counted quantifier? Fills lo, hi (UINT32_MAX: no upper
 * bound), the index past "}", and whether the lower bound was omitted
 * ("{,m}", ERE for {0,m}). */
static bool tr_brace(const tr_t *t, uint32_t *lo, uint32_t *hi, size_t *end, bool *no_lo)
{
    size_t k = t->i + 1;
    size_t n1 = tr_number(t, &k, lo);
    if (tr_at(t, k) == '}' && n1 > 0) {
        *hi = *lo;
        *end = k + 1;
        *no_lo = false;
        return true;
    }
    if (tr_at(t, k) != ',')
        return false;
    k++;
    uint32_t m = 0;
    size_t n2 = tr_number(t, &k, &m);
    if (tr_at(t, k) != '}' || (n1 == 0 && n2 == 0))
        return false;
    if (n1 == 0)
        *lo = 0;
    *hi = n2 ? m : UINT32_MAX;
    *end = k + 1;
    *no_lo = n1 == 0;
    return true;
}

/* A quantifier src[t->i..end) allowing lo..hi repeats; `text` is what to
 * write for it (the source, or "{0,m}" for "{,m}"). */
static int tr_quant(tr_t *t, uint32_t lo, uint32_t hi, size_t end, const char *text,
                    size_t tlen)
{
    size_t at = t->i;
    uint32_t big = hi != UINT32_MAX && hi > lo ? hi : lo;
    if (big > PATTERN_REPEAT_MAX) {
        set_err(t->err, t->errcap,
                "Pattern refused: repetition count %u at offset %zu is above the limit of %d", big,
                at, PATTERN_REPEAT_MAX);
        return PATTERN_EREFUSED;
    }
    uint32_t factor = big > 1 ? big : 1;
    if (t->prev != ITEM_NONE) {
        uint32_t base = t->prev == ITEM_QUANT ? t->quant_product : t->atom_inner;
        uint64_t product = (uint64_t)factor * base;
        if (product > PATTERN_REPEAT_MAX) {
            set_err(t->err, t->errcap,
                    "Pattern refused: nested repetitions at offset %zu allow %llu repeats, above "
                    "the limit of %d",
                    at, (unsigned long long)product, PATTERN_REPEAT_MAX);
            return PATTERN_EREFUSED;
        }
        if (t->prev == ITEM_QUANT) {
            /* ERE's a{2}{3} is (?:a{2}){3}; PCRE2 needs the group. */
            if (t->depth + t->atom_wraps + 1 > PATTERN_NEST_MAX)
                return tr_refuse_depth(t, at);
            if (t->n + 4 > t->cap) {
                t->overflow = true;
                return PATTERN_OK;
            }
            size_t a = t->atom_out, moved = t->n - a;
            memmove(t->out + a + 3, t->out + a, moved);
            memmove(t->map + a + 3, t->map + a, moved * sizeof *t->map);
            memcpy(t->out + a, "(?:", 3);
            for (size_t k = 0; k < 3; k++)
                t->map[a + k] = t->map[a + 3];
            t->n += 3;
            tr_emit(t, ")", 1, at);
            t->atom_wraps++;
        }
        t->quant_product = (uint32_t)product;
        if (t->quant_product > t->stack[t->depth].inner)
            t->stack[t->depth].inner = t->quant_product;
        t->prev = ITEM_QUANT;
    }
    tr_emit(t, text, tlen, at);
    t->i = end;
    /* Possessive (a++) and lazy (a+?) forms belong to the quantifier, also
     * with comments, \E or an empty \Q\E in between (PCRE2 skips them). */
    size_t k = t->i;
    for (;;) {
        if (tr_at(t, k) == '(' && tr_at(t, k + 1) == '?' && tr_at(t, k + 2) == '#') {
            size_t j = tr_skip_to(t, k, ')');
            if (t->src[j - 1] != ')')
                break;   /* unterminated: left for PCRE2 to report */
            k = j;
        } else if (tr_at(t, k) == '\\' && tr_at(t, k + 1) == 'E') {
            k += 2;
        } else if (tr_at(t, k) == '\\' && tr_at(t, k + 1) == 'Q' && tr_at(t, k + 2) == '\\' &&
                   tr_at(t, k + 3) == 'E') {
            k += 4;
        } else {
            break;
        }
    }
    char c = tr_at(t, k);
    if (c == '+' || c == '?') {
        tr_copy(t, k, k + 1);
        t->i = k + 1;
    }
    return PATTERN_OK;
}

/* Translate t->src into t->out, checking the limits. */
static int tr_run(tr_t *t)
{
    int rc = PATTERN_OK;
    while (t->i < t->len && rc == PATTERN_OK && !t->overflow) {
        size_t i = t->i;
        char c = t->src[i];
        if (!t->callout_done && !(c == '(' && tr_at(t, i + 1) == '*' && !is_lower(tr_at(t, i + 2)))) {
            tr_emit(t, "(?C)", 4, i);
            t->callout_done = true;
        }
        switch (c) {
        case '\\':
            tr_escape(t);
            break;
        case '[':
            tr_class(t);
            break;
        case '(':
            rc = tr_paren(t);
            break;
        case ')':
            tr_close(t);
            break;
        case '|':
        case '^':
        case '$':
            tr_copy(t, i, i + 1);
            t->i++;
            t->prev = ITEM_NONE;   /* ^ and $ are not repeatable either */
            break;
        case '*':
            rc = tr_quant(t, 0, UINT32_MAX, i + 1, "*", 1);
            break;
        case '+':
            rc = tr_quant(t, 1, UINT32_MAX, i + 1, "+", 1);
            break;
        case '?':
            rc = tr_quant(t, 0, 1, i + 1, "?", 1);
            break;
        case '{': {
            uint32_t lo = 0, hi = 0;
            size_t end = 0;
            bool no_lo = false;
            /* "{,m}" with nothing to repeat stays text, as PCRE2 reads it. */
            if (tr_brace(t, &lo, &hi, &end, &no_lo) && !(no_lo && t->prev == ITEM_NONE)) {
                char text[32];
                int k = no_lo ? snprintf(text, sizeof text, "{0,%u}", (unsigned)hi)
                              : snprintf(text, sizeof text, "%.*s", (int)(end - i), t->src + i);
                if (k < 0 || (size_t)k >= sizeof text) {
                    /* Long runs of leading zeros: write the source as it is. */
                    rc = tr_quant(t, lo, hi, end, t->src + i, end - i);
                } else {
                    rc = tr_quant(t, lo, hi, end, text, (size_t)k);
                }
            } else {
                size_t at = t->n;
                tr_emit(t, "\\{", 2, i);   /* a literal brace stays literal */
                t->i++;
                tr_atom(t, at, 1);
            }
            break;
        }
        default: {
            size_t at = t->n;
            size_t cl = tr_char_len(t, i);
            tr_copy(t, i, i + cl);
            t->i = i + cl;
            tr_atom(t, at, 1);
            break;
        }
        }
    }
    if (rc == PATTERN_OK && !t->callout_done) {
        tr_emit(t, "(?C)", 4, t->len);
        t->callout_done = true;
    }
    if (rc == PATTERN_OK && t->overflow) {
        set_err(t->err, t->errcap, "Pattern refused: it is too long once translated");
        rc = PATTERN_EREFUSED;
    }
    return rc;
}

/* ---- compiling and matching ---- */

static int64_t now_ns(void)
{
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    /* A few ns per call instead of ~20; its ~4 ms steps are fine for a
     * budget of seconds. */
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Run by PCRE2 at the start of every match attempt (the "(?C)" in front). */
static int on_callout(pcre2_callout_block *cb, void *data)
{
    (void)cb;
    pattern_t *p = data;
    if (p->has_budget && now_ns() >= p->deadline_ns) {
        p->spent = true;
        return PCRE2_ERROR_CALLOUT;   /* abandons the match */
    }
    return 0;
}

/* PCRE2's compile error as the client's message. */
static int compile_error(int code, size_t src_off, char *err, size_t errcap)
{
    switch (code) {
    case PCRE2_ERROR_PARENTHESES_NEST_TOO_DEEP:
        set_err(err, errcap, "Pattern refused: groups nested more than %d deep at offset %zu",
                PATTERN_NEST_MAX, src_off);
        return PATTERN_EREFUSED;
    case PCRE2_ERROR_PATTERN_TOO_LARGE:
        set_err(err, errcap,
                "Pattern refused: it compiles to more than 64 KiB (long repeated groups)");
        return PATTERN_EREFUSED;
    case PCRE2_ERROR_HEAP_FAILED:
        set_err(err, errcap, "Pattern not compiled: out of memory");
        return PATTERN_ENOMEM;
    default: {
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", code);
        set_err(err, errcap, "Invalid pattern: %s at offset %zu", (const char *)msg, src_off);
        return PATTERN_ESYNTAX;
    }
    }
}

int pattern_compile(const char *src, unsigned flags, pattern_t **out, char *err, size_t errcap)
{
    if (err && errcap)
        err[0] = '\0';
    if (out)
        *out = NULL;
    if (!src || !out || (flags & ~PATTERN_ICASE)) {
        set_err(err, errcap, "Pattern not compiled: invalid argument");
        return PATTERN_EINVAL;
    }
    size_t len = strlen(src);
    if (len > PATTERN_LEN_MAX) {
        set_err(err, errcap, "Pattern refused: it is %zu bytes long, above the limit of %d", len,
                PATTERN_LEN_MAX);
        return PATTERN_EREFUSED;
    }

    tr_t *t = calloc(1, sizeof *t);
    pattern_t *p = calloc(1, sizeof *p);
    pcre2_compile_context *cctx = pcre2_compile_context_create(NULL);
    int rc = PATTERN_OK;
    if (t) {
        t->cap = TR_CAP(len);
        t->out = malloc(t->cap);
        t->map = malloc(t->cap * sizeof *t->map);
    }
    if (!t || !t->out || !t->map || !p || !cctx) {
        set_err(err, errcap, "Pattern not compiled: out of memory");
        rc = PATTERN_ENOMEM;
        goto done;
    }
    t->src = src;
    t->len = len;
    t->err = err;
    t->errcap = errcap;
    t->stack[0].inner = 1;
    rc = tr_run(t);
    if (rc)
        goto done;

    /* The translation's groups: the client's (<= PATTERN_NEST_MAX, stacked
     * quantifiers' (?: ) included) plus one lookahead of \< or \>. */
    pcre2_set_parens_nest_limit(cctx, PATTERN_NEST_MAX + 1);
    pcre2_set_max_pattern_length(cctx, t->cap);
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_NEVER_BACKSLASH_C;
    if (flags & PATTERN_ICASE)
        opts |= PCRE2_CASELESS;
    int code = 0;
    PCRE2_SIZE eoff = 0;
    p->code = pcre2_compile((PCRE2_SPTR)t->out, t->n, opts, &code, &eoff, cctx);
    if (!p->code) {
        size_t src_off = eoff < t->n ? t->map[eoff] : len;
        rc = compile_error(code, src_off, err, errcap);
        goto done;
    }
    p->mctx = pcre2_match_context_create(NULL);
    p->md = pcre2_match_data_create(1, NULL);
    if (!p->mctx || !p->md) {
        set_err(err, errcap, "Pattern not compiled: out of memory");
        rc = PATTERN_ENOMEM;
        goto done;
    }
    pcre2_set_match_limit(p->mctx, PATTERN_STEPS_MAX);
    pcre2_set_depth_limit(p->mctx, PATTERN_DEPTH_MAX);
    pcre2_set_heap_limit(p->mctx, PATTERN_HEAP_KIB);
    pcre2_set_callout(p->mctx, on_callout, p);

done:
    pcre2_compile_context_free(cctx);
    if (t) {
        free(t->out);
        free(t->map);
        free(t);
    }
    if (rc) {
        pattern_free(p);
        return rc;
    }
    *out = p;
    return PATTERN_OK;
}

void pattern_set_budget(pattern_t *p, unsigned ms)
{
    if (!p)
        return;
    p->spent = false;
    p->has_budget = ms > 0;
    p->deadline_ns = now_ns() + (int64_t)ms * 1000000;
}

int pattern_match(pattern_t *p, const char *s, size_t len)
{
    if (!p || (!s && len))
        return PATTERN_EINVAL;
    if (p->has_budget && (p->spent || now_ns() >= p->deadline_ns)) {
        p->spent = true;
        return PATTERN_ETIME;
    }
    int rc = pcre2_match(p->code, (PCRE2_SPTR)(s ? s : ""), len, 0, 0, p->md, p->mctx);
    if (rc >= 0)
        return PATTERN_MATCH;   /* 0: matched, ovector too small for the groups */
    switch (rc) {
    case PCRE2_ERROR_NOMATCH:
        return PATTERN_NOMATCH;
    case PCRE2_ERROR_CALLOUT:
        return p->spent ? PATTERN_ETIME : PATTERN_EINVAL;
    case PCRE2_ERROR_MATCHLIMIT:
    case PCRE2_ERROR_DEPTHLIMIT:
    case PCRE2_ERROR_HEAPLIMIT:
        return PATTERN_ECOSTLY;
    case PCRE2_ERROR_NOMEMORY:
        return PATTERN_ENOMEM;
    default:
        return PATTERN_EINVAL;
    }
}

void pattern_free(pattern_t *p)
{
    if (!p)
        return;
    pcre2_match_data_free(p->md);
    pcre2_match_context_free(p->mctx);
    pcre2_code_free(p->code);
    free(p);
}
