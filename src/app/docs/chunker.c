/* chunker.c — see chunker.h.
 *
 * One pass over the text, one code point at a time, in a fixed window that
 * holds the chunk being built and the unit being read (never more: a unit
 * is judged while it is read, so nothing waits for the end of a paragraph).
 *
 * State: the chunk being built (committed units [cs, ce), its estimate
 * c_est), the unit being read (from us; its content ends at ue when
 * whitespace follows) and the whitespace run after it (r_len, r_nl), whose
 * kind is known only when the next content character comes: the boundary
 * level is 0 for a paragraph (or heading), 1 for a sentence, 2 for a word,
 * 3 for a character. At depth d, units end at boundaries of level <= d; a
 * unit whose estimate passes max_tokens sends the scan back to its start
 * with depth d + 1 (its bytes are still in the window), and a boundary of
 * level b < d brings the depth back to b (the long unit is over).
 *
 * Two estimator states run along: e_u over the unit alone (to see it pass
 * max_tokens), e_cu over the chunk from cs (to see the unit no longer fit
 * under target_tokens: the chunk is emitted at once, so the window never
 * holds more than about one chunk and one unit). Both are monotonic: once
 * past a limit, no continuation comes back under it, so every decision is
 * final when it is made and depends on the text only, never on where the
 * pieces were cut.
 */
#include "app/docs/chunker.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

/* ---- the token estimate --------------------------------------------------
 *
 * Weights are in 1/60 token. Runs of letters and of ASCII punctuation are
 * costed as a whole (a BPE merges inside them); everything else is costed
 * per character. The figures come from comparing with Qwen2's tokenizer
 * (chunker.h, chunker_estimate_tokens).
 */

enum { K_ONE, K_SPACE, K_ALPHA, K_DIGIT, K_PUNCT, K_LETTER, K_TWO };   /* K_ONE = 0: the table's default */

typedef struct {
    uint8_t kind;
    uint8_t weight;     /* K_LETTER: 1/60 token per character */
    bool foreign;       /* a non-ASCII Latin letter */
} klass_t;

enum { RUN_NONE, RUN_LETTER, RUN_PUNCT, RUN_SPACE };

#define W_UNIT 60
#define W_ASCII_FIRST 10     /* the first 6 ASCII letters of a run: 1 token */
#define N_ASCII_FIRST 6
#define W_ASCII_MORE 12      /* then 1 token per 5 */
#define W_ASCII_FOREIGN 20   /* 1 per 3 after a non-ASCII Latin letter */
#define W_PUNCT_REPEAT 15    /* "----": 1/4 per repeat */
#define WS_BYTES_PER_TOKEN 8

typedef struct {
    uint64_t done;       /* tokens of the closed runs */
    uint64_t w;          /* open letter or punctuation run: weight */
    uint64_t ws;         /* open whitespace run: bytes */
    uint64_t ascii;      /* open letter run: ASCII letters so far */
    uint32_t last;       /* open punctuation run: its last character */
    uint8_t run;
    bool ws_space;       /* the open whitespace run is one ' ' */
    bool foreign;        /* a non-ASCII Latin letter was seen */
} est_t;

static const uint8_t ASCII_KIND[128] = {   /* the rest (controls, DEL): K_ONE */
    ['\t' ... '\r'] = K_SPACE, [' '] = K_SPACE,
    ['!' ... '/'] = K_PUNCT, [':' ... '@'] = K_PUNCT,
    ['[' ... '`'] = K_PUNCT, ['{' ... '~'] = K_PUNCT,
    ['0' ... '9'] = K_DIGIT, ['A' ... 'Z'] = K_ALPHA, ['a' ... 'z'] = K_ALPHA,
};

static klass_t klass_of(uint32_t cp)
{
    klass_t k = { K_ONE, 0, false };
    if (cp < 0x80) {
        k.kind = ASCII_KIND[cp];
        return k;
    }
    k.kind = K_LETTER;
    if (cp < 0xC0 || cp == 0xD7 || cp == 0xF7)
        k.kind = K_ONE;                                 /* Latin-1 symbols */
    else if (cp <= 0xFF)
        k.weight = 24, k.foreign = true;                /* Latin-1 letters */
    else if (cp <= 0x24F)
        k.weight = 60, k.foreign = true;                /* Latin Extended */
    else if (cp <= 0x2AF)
        k.weight = 60;                                  /* IPA */
    else if (cp <= 0x2FF)
        k.kind = K_ONE;                                 /* modifier letters */
    else if (cp <= 0x36F)
        k.weight = 60, k.foreign = true;                /* combining marks */
    else if (cp <= 0x3FF)
        k.weight = 60;                                  /* Greek */
    else if (cp <= 0x52F)
        k.weight = 30;                                  /* Cyrillic */
    else if (cp <= 0x6FF)
        k.weight = 40;                                  /* Armenian, Hebrew, Arabic */
    else if (cp < 0x900)
        k.weight = 60;
    else if (cp <= 0xDFF)
        k.weight = 75;                                  /* Indic */
    else if (cp < 0x1E00)
        k.weight = 60;                                  /* other scripts */
    else if (cp <= 0x1EFF)
        k.weight = 24, k.foreign = true;                /* Vietnamese */
    else if (cp <= 0x1FFF)
        k.weight = 60;                                  /* Greek Extended */
    else if (cp < 0x10000 || (cp >= 0x20000 && cp <= 0x3FFFF))
        k.kind = K_ONE;          /* punctuation, symbols, CJK, kana, Hangul */
    else
        k.kind = K_TWO;          /* emoji and other astral characters */
    return k;
}

static const klass_t K_INVALID = { K_ONE, 0, false };

static uint64_t run_cost(const est_t *e)
{
    switch (e->run) {
    case RUN_LETTER: return e->w <= W_UNIT ? 1 : (e->w + W_UNIT - 1) / W_UNIT;
    case RUN_PUNCT: return (e->w + W_UNIT - 1) / W_UNIT;
    case RUN_SPACE:
        return e->ws_space ? 0 : (e->ws + WS_BYTES_PER_TOKEN - 1) / WS_BYTES_PER_TOKEN;
    default: return 0;
    }
}

/* Tokens of everything fed so far, as if the text ended here. Never
 * decreases as more is fed (an open run only grows; a closing space run
 * only gains its digit token). */
static uint64_t est_value(const est_t *e)
{
    return e->done + run_cost(e);
}

static void est_feed(est_t *e, uint32_t cp, klass_t k)
{
    if (k.kind == K_SPACE) {
        if (e->run != RUN_SPACE) {
            e->done += run_cost(e);
            e->run = RUN_SPACE;
            e->ws = 0;
            e->ws_space = cp == ' ';
        } else {
            e->ws_space = false;
        }
        e->ws++;
        return;
    }
    if (e->run == RUN_SPACE) {
        /* " 1": Qwen2 keeps the space apart from a digit. */
        e->done += e->ws_space ? (k.kind == K_DIGIT) : run_cost(e);
        e->run = RUN_NONE;
    }
    switch (k.kind) {
    case K_ALPHA:
    case K_LETTER:
        if (e->run != RUN_LETTER) {
            e->done += run_cost(e);
            e->run = RUN_LETTER;
            e->w = 0;
            e->ascii = 0;
        }
        if (k.kind == K_ALPHA) {
            e->ascii++;
            e->w += e->foreign ? W_ASCII_FOREIGN
                  : e->ascii <= N_ASCII_FIRST ? W_ASCII_FIRST : W_ASCII_MORE;
        } else {
            e->w += k.weight;
            e->foreign |= k.foreign;
        }
        break;
    case K_PUNCT:
        if (e->run != RUN_PUNCT) {
            e->done += run_cost(e);
            e->run = RUN_PUNCT;
            e->w = 0;
            e->last = 0;
        }
        e->w += cp == e->last ? W_PUNCT_REPEAT : W_UNIT;
        e->last = cp;
        break;
    default:
        e->done += run_cost(e) + (k.kind == K_TWO ? 2 : 1);
        e->run = RUN_NONE;
        break;
    }
}

/* The same as n calls of est_feed() with ASCII letters, when a letter
 * run is open (the scan's fast path through words). */
static void est_feed_letters(est_t *e, uint64_t n)
{
    uint64_t first = 0;
    if (!e->foreign && e->ascii < N_ASCII_FIRST)
        first = n < N_ASCII_FIRST - e->ascii ? n : N_ASCII_FIRST - e->ascii;
    e->w += e->foreign ? W_ASCII_FOREIGN * n : W_ASCII_FIRST * first + W_ASCII_MORE * (n - first);
    e->ascii += n;
}

static int clamp_int(uint64_t v)
{
    return v > INT_MAX ? INT_MAX : (int)v;
}

/* ---- UTF-8 ---------------------------------------------------------------*/


int chunker_estimate_tokens(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    est_t e;
    memset(&e, 0, sizeof e);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_decode((const char *)u + i, n - i, &cp);
        if (k <= 0) {
            est_feed(&e, 0xFFFD, K_INVALID);
            i++;
            continue;
        }
        klass_t kl = klass_of(cp);
        est_feed(&e, cp, kl);
        i += (size_t)k;
        if (kl.kind == K_ALPHA) {   /* the rest of the word at once */
            size_t j = i;
            while (j < n && u[j] < 0x80 && ASCII_KIND[u[j]] == K_ALPHA)
                j++;
            est_feed_letters(&e, j - i);
            i = j;
        }
    }
    return clamp_int(est_value(&e));
}

/* ---- where text may be cut -----------------------------------------------*/

enum { LVL_PARA, LVL_SENTENCE, LVL_WORD, LVL_CHAR };
enum { TERM_NONE, TERM_ASCII, TERM_CJK };

static bool is_cjk_term(uint32_t cp)
{
    return cp == 0x3002 || cp == 0xFF01 || cp == 0xFF1F || cp == 0xFF0E || cp == 0xFF61;
}

static bool is_term(uint32_t cp)
{
    return cp == '.' || cp == '!' || cp == '?' || is_cjk_term(cp);
}

/* Closing quotes and brackets: they stay with the sentence they close. */
static bool is_closer(uint32_t cp)
{
    switch (cp) {
    case ')': case ']': case '}': case '"': case '\'':
    case 0x00BB: case 0x2019: case 0x201D:
    case 0x3009: case 0x300B: case 0x300D: case 0x300F: case 0x3011: case 0x3015:
    case 0xFF02: case 0xFF07: case 0xFF09: case 0xFF3D: case 0xFF5D:
        return true;
    default:
        return false;
    }
}

static bool is_cjk_clause(uint32_t cp)
{
    return cp == 0xFF0C || cp == 0x3001 || cp == 0xFF1B || cp == 0xFF1A;
}

/* ---- the chunker ---------------------------------------------------------*/

typedef struct {
    size_t offset;
    int number;
    const char *label;
} page_t;

typedef struct {
    size_t offset;
    int level;           /* 1..CHUNKER_HEADING_LEVELS */
    const char *title;
} head_t;

struct chunker {
    chunker_params_t p;
    int merge_below;                 /* a heading merges below this estimate */
    chunker_emit_fn emit;
    void *ud;
    int rc;                          /* sticky: the first nonzero result */
    bool finished;
    size_t index;                    /* of the next chunk */

    /* The marks (copies; strings in one block). */
    page_t *pages;
    size_t n_pages;
    head_t *heads;
    size_t n_heads;
    char *strings;
    size_t next_cut;                 /* first heading the scan has not reached */
    size_t next_path;                /* first heading not yet in the path */
    size_t page_a, page_b;           /* pages of the last chunk's start, end */
    const char *levels[CHUNKER_HEADING_LEVELS];
    char *path;                      /* the heading path, NUL-terminated */
    size_t path_cap;
    size_t alloc;                    /* bytes allocated */

    /* The window: win[0..len) is text[base..base + len); one spare byte
     * past len for the NUL of an emitted chunk. */
    char *win;
    size_t cap;
    size_t base, len;
    size_t pos;                      /* next code point to scan */

    /* The chunk being built: committed units [cs, ce). */
    bool c_open;
    size_t cs, ce;
    int c_est;
    est_t e_cu;                      /* over text[cs..pos) (or the unit's, when !c_open) */
    est_t e_cu_ue;                   /* e_cu when the unit's content ended (at ue) */

    /* The unit being read, from us; depth says which kind of unit. */
    bool u_open;
    size_t us, ue;
    est_t e_u;
    int depth;

    /* The whitespace run after the unit's content, and what came before it. */
    size_t r_len;
    unsigned r_nl;
    bool hpending;                   /* a heading starts before the next content */
    uint8_t term;                    /* TERM_*: the content ended a sentence */
    bool clause;                     /* the content ended with ，、；： */

    /* Markdown table rows: a line whose first character is '|' is cut only
     * at its end (between rows), unless it alone passes max_tokens. */
    bool line_start;                 /* the next content starts a line */
    bool in_row;                     /* the current line is a table row */
    bool u_line_start, u_in_row;     /* both as they were at us (for a rewind) */
};

const char *chunker_strerror(int rc)
{
    switch (rc) {
    case CHUNKER_OK: return "success";
    case CHUNKER_ENOMEM: return "out of memory";
    case CHUNKER_EINVAL: return "invalid argument";
    case CHUNKER_EUTF8: return "the text is not valid UTF-8";
    case CHUNKER_EINTERNAL: return "internal error (chunk window overflow)";
    default: return "unknown error";
    }
}

chunker_params_t chunker_params_default(void)
{
    chunker_params_t p = { 256, 512 };
    return p;
}

static int fail(chunker_t *c, int rc)
{
    if (!c->rc)
        c->rc = rc;
    return c->rc;
}

/* Copy the marks into c, pages and headings apart. Returns CHUNKER_OK,
 * CHUNKER_EINVAL or CHUNKER_ENOMEM (what was allocated stays in c for
 * chunker_free). */
static int copy_marks(chunker_t *c, const chunker_mark_t *marks, size_t n)
{
    size_t np = 0, nh = 0, bytes = 0, longest = 0;
    for (size_t i = 0; i < n; i++) {
        const chunker_mark_t *m = &marks[i];
        if (m->kind != CHUNKER_MARK_PAGE && m->kind != CHUNKER_MARK_HEADING)
            return CHUNKER_EINVAL;
        if (i > 0 && m->offset < marks[i - 1].offset)
            return CHUNKER_EINVAL;
        size_t l = m->label ? strlen(m->label) : 0;
        if (bytes > SIZE_MAX - l - 1)
            return CHUNKER_ENOMEM;
        bytes += l + 1;
        if (m->kind == CHUNKER_MARK_PAGE) {
            np++;
        } else {
            nh++;
            if (l > longest)
                longest = l;
        }
    }
    if (n && ((np && !(c->pages = calloc(np, sizeof *c->pages)))
              || (nh && !(c->heads = calloc(nh, sizeof *c->heads)))
              || !(c->strings = malloc(bytes))))
        return CHUNKER_ENOMEM;
    /* "A > B > C": every level's title and a separator. */
    if (longest > (SIZE_MAX - 1) / CHUNKER_HEADING_LEVELS - 3)
        return CHUNKER_ENOMEM;
    c->path_cap = CHUNKER_HEADING_LEVELS * (longest + 3) + 1;
    if (!(c->path = malloc(c->path_cap)))
        return CHUNKER_ENOMEM;
    c->path[0] = '\0';
    c->alloc += np * sizeof *c->pages + nh * sizeof *c->heads + (n ? bytes : 0) + c->path_cap;

    char *s = c->strings;
    for (size_t i = 0; i < n; i++) {
        const chunker_mark_t *m = &marks[i];
        size_t l = m->label ? strlen(m->label) : 0;
        if (l)
            memcpy(s, m->label, l);
        s[l] = '\0';
        if (m->kind == CHUNKER_MARK_PAGE) {
            c->pages[c->n_pages++] = (page_t){ m->offset, m->number, s };
        } else {
            int lv = m->number < 1 ? 1
                   : m->number > CHUNKER_HEADING_LEVELS ? CHUNKER_HEADING_LEVELS : m->number;
            c->heads[c->n_heads++] = (head_t){ m->offset, lv, s };
        }
        s += l + 1;
    }
    return CHUNKER_OK;
}

int chunker_new(const chunker_params_t *p, const chunker_mark_t *marks, size_t n_marks,
                chunker_emit_fn emit, void *ud, chunker_t **out)
{
    if (out)
        *out = NULL;
    chunker_params_t prm = p ? *p : chunker_params_default();
    if (!out || !emit || (n_marks && !marks)
        || prm.max_tokens < CHUNKER_TOKENS_MIN || prm.max_tokens > CHUNKER_TOKENS_MAX
        || prm.target_tokens < 1 || prm.target_tokens > prm.max_tokens)
        return CHUNKER_EINVAL;
    chunker_t *c = calloc(1, sizeof *c);
    if (!c)
        return CHUNKER_ENOMEM;
    c->p = prm;
    c->line_start = true;
    c->merge_below = prm.target_tokens / 4;
    c->emit = emit;
    c->ud = ud;
    c->alloc = sizeof *c;
    int rc = copy_marks(c, marks, n_marks);
    if (rc) {
        chunker_free(c);
        return rc;
    }
    /* What the window must hold at most (see chunker.h and the file
     * comment): the chunk being built (<= max_tokens) or the unit being
     * read (<= max_tokens plus one character) with an undecided whitespace
     * run (<= CHUNKER_WS_BREAK bytes), at CHUNKER_BYTES_PER_TOKEN_MAX bytes
     * a token; twice that, for safety and for fewer compactions. */
    c->cap = 2 * ((size_t)CHUNKER_BYTES_PER_TOKEN_MAX * ((size_t)prm.max_tokens + 16)
                  + CHUNKER_WS_BREAK) + 64;
    if (!(c->win = malloc(c->cap))) {
        chunker_free(c);
        return CHUNKER_ENOMEM;
    }
    c->alloc += c->cap;
    *out = c;
    return CHUNKER_OK;
}

void chunker_free(chunker_t *c)
{
    if (!c)
        return;
    free(c->pages);
    free(c->heads);
    free(c->strings);
    free(c->path);
    free(c->win);
    free(c);
}

size_t chunker_memory(const chunker_t *c)
{
    return c ? c->alloc : 0;
}

/* Bring the heading path up to the chunk starting at cs. */
static void path_update(chunker_t *c, size_t cs)
{
    bool changed = false;
    while (c->next_path < c->n_heads && c->heads[c->next_path].offset <= cs) {
        const head_t *h = &c->heads[c->next_path++];
        c->levels[h->level - 1] = h->title;
        for (int i = h->level; i < CHUNKER_HEADING_LEVELS; i++)
            c->levels[i] = NULL;
        changed = true;
    }
    if (!changed)
        return;
    size_t n = 0;
    for (int i = 0; i < CHUNKER_HEADING_LEVELS; i++) {
        const char *t = c->levels[i];
        if (!t || !*t)
            continue;
        size_t l = strlen(t);
        if (n) {
            memcpy(c->path + n, " > ", 3);
            n += 3;
        }
        memcpy(c->path + n, t, l);
        n += l;
    }
    c->path[n] = '\0';
}

/* The page holding offset x; *cur only moves forward (x never goes back). */
static const page_t *page_at(const chunker_t *c, size_t *cur, size_t x)
{
    while (*cur + 1 < c->n_pages && c->pages[*cur + 1].offset <= x)
        (*cur)++;
    return &c->pages[*cur];
}

/* Emit the chunk [cs, ce); it is closed afterwards. Returns 0 or the
 * callback's value (made sticky). */
static int emit_chunk(chunker_t *c)
{
    chunker_chunk_t k;
    char *t = c->win + (c->cs - c->base);
    size_t n = c->ce - c->cs;
    size_t chars = 0;
    for (size_t i = 0; i < n; i++)
        chars += ((unsigned char)t[i] & 0xC0) != 0x80;
    path_update(c, c->cs);
    k.index = c->index++;
    k.start = c->cs;
    k.end = c->ce;
    k.text = t;
    k.len = n;
    k.n_chars = chars;
    k.est_tokens = c->c_est;
    k.page_first = k.page_last = 0;
    k.page_label_first = k.page_label_last = "";
    if (c->n_pages) {
        const page_t *a = page_at(c, &c->page_a, c->cs);
        const page_t *b = page_at(c, &c->page_b, c->ce - 1);
        k.page_first = a->number;
        k.page_label_first = a->label;
        k.page_last = b->number;
        k.page_label_last = b->label;
    }
    k.heading = c->path;
    c->c_open = false;
    char saved = t[n];   /* within the window's spare byte at worst */
    t[n] = '\0';
    int rc = c->emit(c->ud, &k);
    t[n] = saved;
    return rc ? fail(c, rc) : 0;
}

/* The unit's content ended (at ue, or here when no whitespace followed)
 * with a boundary of level b <= depth: commit it to the chunk, then apply
 * the heading rule and, when whitespace already follows, close a chunk
 * that nothing more can join. */
static int resolve(chunker_t *c, int b)
{
    const est_t *at_ue = c->r_len ? &c->e_cu_ue : &c->e_cu;
    if (!c->c_open) {
        c->cs = c->us;
        c->c_open = true;
    }
    c->ce = c->r_len ? c->ue : c->pos;
    c->c_est = clamp_int(est_value(at_ue));
    c->u_open = false;
    c->depth = b;
    if (c->hpending) {
        c->hpending = false;
        if (c->c_est >= c->merge_below)
            return emit_chunk(c);
    }
    /* After whitespace any content costs at least 1 more token. */
    if (c->r_len && est_value(&c->e_cu) >= (uint64_t)c->p.target_tokens)
        return emit_chunk(c);
    return 0;
}

/* A heading mark starts at pos (or inside the character just scanned). */
static int on_heading(chunker_t *c)
{
    if (c->u_open) {
        c->hpending = true;
        return c->r_len ? resolve(c, LVL_PARA) : 0;   /* else at this character */
    }
    if (c->c_open && c->c_est >= c->merge_below)
        return emit_chunk(c);
    return 0;
}

static int on_space(chunker_t *c, uint32_t cp, klass_t k)
{
    if (cp == '\n')
        c->line_start = true;
    if (c->u_open) {
        if (c->r_len == 0) {
            c->ue = c->pos;
            c->e_cu_ue = c->e_cu;
        }
        c->r_len++;
        c->r_nl += cp == '\n';
        /* As if the unit went on after it; undone by resolve() if not. */
        est_feed(&c->e_u, cp, k);
        est_feed(&c->e_cu, cp, k);
        if (c->r_nl >= 2 || c->r_len > CHUNKER_WS_BREAK)
            return resolve(c, LVL_PARA);
        return 0;
    }
    if (c->c_open) {   /* after a paragraph: the chunk may go on past it */
        est_feed(&c->e_cu, cp, k);
        if (est_value(&c->e_cu) >= (uint64_t)c->p.target_tokens)
            return emit_chunk(c);
    }
    return 0;   /* whitespace outside any chunk is left out */
}

/* After content was added to the unit: close the chunk if the unit no
 * longer fits in it; go back to the unit's start, one depth down, if the
 * unit is too long on its own (*rewound set, pos at us). Checking after
 * several characters at once decides the same as after each: both
 * estimates only grow, and what is done does not depend on where in the
 * unit the limit was passed. */
static int check_limits(chunker_t *c, bool *rewound)
{
    int rc;
    if (c->c_open && est_value(&c->e_cu) > (uint64_t)c->p.target_tokens) {
        if ((rc = emit_chunk(c)))
            return rc;
        c->e_cu = c->e_u;
    }
    if (est_value(&c->e_u) > (uint64_t)c->p.max_tokens) {
        if (c->c_open && (rc = emit_chunk(c)))
            return rc;
        if (c->depth >= LVL_CHAR)
            return fail(c, CHUNKER_EINTERNAL);   /* one character > max: impossible */
        c->depth++;
        c->pos = c->us;
        c->line_start = c->u_line_start;
        c->in_row = c->u_in_row;
        c->u_open = false;
        c->term = TERM_NONE;
        c->clause = false;
        memset(&c->e_u, 0, sizeof c->e_u);
        memset(&c->e_cu, 0, sizeof c->e_cu);
        *rewound = true;
    }
    return 0;
}

/* Level of the boundary between the unit's content and cp. */
static int boundary_level(const chunker_t *c, uint32_t cp)
{
    if (c->hpending || c->r_nl >= 2 || c->r_len > CHUNKER_WS_BREAK)
        return LVL_PARA;
    if (c->r_nl == 1)
        return LVL_SENTENCE;
    bool glued = c->r_len == 0 && (is_closer(cp) || is_term(cp));
    if ((c->term == TERM_CJK && !glued) || (c->term == TERM_ASCII && c->r_len))
        return c->in_row ? LVL_WORD : LVL_SENTENCE;   /* a row is one sentence */
    if (c->r_len || (c->clause && !glued))
        return LVL_WORD;
    return LVL_CHAR;
}

/* A content character at pos. Sets *rewound when the scan must go back to
 * the unit's start (pos is set there). */
static int on_content(chunker_t *c, uint32_t cp, klass_t k, bool *rewound)
{
    int rc;
    if (c->u_open) {
        int b = boundary_level(c, cp);
        if (b <= c->depth && (rc = resolve(c, b)))
            return rc;
    }
    if (!c->u_open) {   /* a unit starts here */
        c->u_open = true;
        c->us = c->pos;
        c->u_line_start = c->line_start;
        c->u_in_row = c->in_row;
        memset(&c->e_u, 0, sizeof c->e_u);
        if (!c->c_open)
            memset(&c->e_cu, 0, sizeof c->e_cu);
    }
    c->r_len = 0;
    c->r_nl = 0;
    c->hpending = false;
    if (c->line_start)
        c->in_row = cp == '|';
    c->line_start = false;
    if (is_term(cp))
        c->term = is_cjk_term(cp) || c->term == TERM_CJK ? TERM_CJK : TERM_ASCII;
    else if (!is_closer(cp))
        c->term = TERM_NONE;
    c->clause = is_cjk_clause(cp);
    est_feed(&c->e_u, cp, k);
    est_feed(&c->e_cu, cp, k);
    return check_limits(c, rewound);
}

/* The fast path through a word: after an ASCII letter, the ASCII letters
 * that follow (up to the next heading mark) only continue the unit, at
 * depths where a cut between them is not allowed. */
static int letters(chunker_t *c, bool *rewound)
{
    const size_t end = c->base + c->len;
    size_t stop = c->next_cut < c->n_heads && c->heads[c->next_cut].offset < end
                ? c->heads[c->next_cut].offset : end;
    const unsigned char *w = (const unsigned char *)c->win;
    size_t j = c->pos;
    while (j < stop && w[j - c->base] < 0x80 && ASCII_KIND[w[j - c->base]] == K_ALPHA)
        j++;
    if (j <= c->pos)
        return 0;
    est_feed_letters(&c->e_u, j - c->pos);
    est_feed_letters(&c->e_cu, j - c->pos);
    c->pos = j;
    return check_limits(c, rewound);
}

/* Scan the window from pos to its end (to the last complete character
 * unless at_eof). */
static int scan(chunker_t *c, bool at_eof)
{
    const size_t end = c->base + c->len;
    while (c->pos < end) {
        const unsigned char *s = (const unsigned char *)c->win + (c->pos - c->base);
        uint32_t cp;
        int n = utf8_decode((const char *)s, end - c->pos, &cp);
        if (n == 0 || (n > 0 && cp == 0) || (n < 0 && at_eof))
            return fail(c, CHUNKER_EUTF8);
        if (n < 0)
            break;   /* the rest of the character is in the next piece */
        int rc;
        while (c->next_cut < c->n_heads && c->heads[c->next_cut].offset <= c->pos) {
            c->next_cut++;
            if ((rc = on_heading(c)))
                return rc;
        }
        klass_t k = klass_of(cp);
        bool rewound = false;
        rc = k.kind == K_SPACE ? on_space(c, cp, k) : on_content(c, cp, k, &rewound);
        if (rc)
            return rc;
        if (rewound)
            continue;
        c->pos += (size_t)n;
        if (k.kind == K_ALPHA && c->depth < LVL_CHAR && (rc = letters(c, &rewound)))
            return rc;
    }
    return 0;
}

/* Drop from the window what no chunk can need any more. */
static void compact(chunker_t *c)
{
    size_t keep = c->c_open ? c->cs : c->u_open ? c->us : c->pos;
    if (keep <= c->base)
        return;
    size_t drop = keep - c->base;
    memmove(c->win, c->win + drop, c->len - drop);
    c->len -= drop;
    c->base = keep;
}

int chunker_feed(chunker_t *c, const char *piece, size_t len)
{
    if (!c)
        return CHUNKER_EINVAL;
    if (c->rc)
        return c->rc;
    if (c->finished || (len && !piece))
        return fail(c, CHUNKER_EINVAL);
    while (len) {
        compact(c);
        size_t room = c->cap - 1 - c->len;
        if (room == 0)
            return fail(c, CHUNKER_EINTERNAL);
        size_t k = len < room ? len : room;
        memcpy(c->win + c->len, piece, k);
        c->len += k;
        piece += k;
        len -= k;
        int rc = scan(c, false);
        if (rc)
            return rc;
    }
    return CHUNKER_OK;
}

int chunker_finish(chunker_t *c)
{
    if (!c)
        return CHUNKER_EINVAL;
    if (c->rc)
        return c->rc;
    if (c->finished)
        return fail(c, CHUNKER_EINVAL);
    c->finished = true;
    int rc = scan(c, true);
    if (!rc && c->u_open)
        rc = resolve(c, LVL_PARA);
    if (!rc && c->c_open)
        rc = emit_chunk(c);
    return rc;
}
