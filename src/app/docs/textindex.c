/* textindex.c — see textindex.h.
 *
 * The only file that includes opencc.h.
 *
 * Both directions walk the text once, one code point at a time, and sort
 * each into a kind (kind_of): token characters (what unicode61 keeps as
 * words: letters and digits, approximated by excluding the punctuation and
 * symbol blocks), joiners (the punctuation that holds an identifier
 * together: `_ . - : / \ @ # ~ > '`), separators, and the four CJK kinds
 * (Han, hiragana, katakana, hangul). A run of one CJK kind is cut into
 * bigrams; runs of different kinds are cut apart ("設定を変更" is 設定 |
 * を | 変更), so no bigram straddles kanji and a particle.
 *
 * Only this file's two scanners need to agree with unicode61 where a word
 * starts and ends, and only roughly: FTS5 tokenizes the inside of each
 * quoted query term itself, so a character classified differently here
 * costs at most a term that matches nothing.
 *
 * Traditional → Simplified is a table of OpenCC's own t2s mappings of
 * single characters, asked of OpenCC once, when the index opens: every
 * Han character of Unicode (about 98,000, one newline-separated string per
 * block, ~40 ms) goes through the loaded t2s configuration, and the ~4,100
 * that change are kept as sorted (from, to) pairs, closed under repetition
 * (a target that is itself converted is followed), so that converting
 * twice changes nothing. OpenCC is then closed. Why not call OpenCC on
 * each run: it converts about 5 MB/s here (13 ms for a 64 KiB chunk,
 * whether or not the text is Traditional, measured), over the budget of a
 * few ms per chunk, and per-call overhead is 2 µs for a short run. What
 * the table gives up is OpenCC's phrase level (甚麼 → 什么 becomes 甚么);
 * since the same function of a character is applied to documents and
 * questions of both scripts alike, a character always meets itself, which
 * is what a search index needs. And no OpenCC code runs after
 * textindex_open*, which settles its thread safety.
 */
#include "app/docs/textindex.h"

#include <opencc/opencc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/utf8.h"

typedef struct {
    uint32_t from, to;
} t2s_pair_t;

struct textindex {
    t2s_pair_t *t2s;        /* sorted by from; NULL without OpenCC */
    size_t n_t2s;
    bool converts;
};

/* The blocks of Han characters whose conversion OpenCC is asked for. */
static const uint32_t HAN_BLOCKS[][2] = {
    { 0x3400, 0x4DBF }, { 0x4E00, 0x9FFF }, { 0xF900, 0xFAFF },
    { 0x20000, 0x2A6DF }, { 0x2A700, 0x2EBEF }, { 0x2F800, 0x2FA1F },
    { 0x30000, 0x323AF },
};

const char *textindex_strerror(int rc)
{
    switch (rc) {
    case TEXTINDEX_OK: return "success";
    case TEXTINDEX_ENOMEM: return "out of memory";
    case TEXTINDEX_ETOOBIG: return "index text too large";
    case TEXTINDEX_EINVAL: return "invalid argument";
    case TEXTINDEX_EUTF8: return "text is not valid UTF-8";
    default: return "unknown error";
    }
}

/* ---- characters ------------------------------------------------------ */

/* Decode the code point at s[*i] of text already checked by utf8_valid()
 * and step past it. */
static uint32_t next_cp(const unsigned char *s, size_t *i)
{
    unsigned c = s[*i];
    if (c < 0x80) {
        *i += 1;
        return c;
    }
    if (c < 0xE0) {
        uint32_t cp = ((uint32_t)(c & 0x1F) << 6) | (s[*i + 1] & 0x3F);
        *i += 2;
        return cp;
    }
    if (c < 0xF0) {
        uint32_t cp = ((uint32_t)(c & 0x0F) << 12) |
                      ((uint32_t)(s[*i + 1] & 0x3F) << 6) | (s[*i + 2] & 0x3F);
        *i += 3;
        return cp;
    }
    uint32_t cp = ((uint32_t)(c & 0x07) << 18) |
                  ((uint32_t)(s[*i + 1] & 0x3F) << 12) |
                  ((uint32_t)(s[*i + 2] & 0x3F) << 6) | (s[*i + 3] & 0x3F);
    *i += 4;
    return cp;
}

typedef enum {
    K_SEP,      /* space, control, punctuation, symbol, emoji */
    K_JOIN,     /* punctuation inside identifiers */
    K_TOKEN,    /* letters and digits of spaced scripts */
    K_HAN,
    K_HIRA,
    K_KATA,
    K_HANGUL,
} kind_t;

static bool is_cjk(kind_t k)
{
    return k >= K_HAN;
}

static bool in(uint32_t c, uint32_t lo, uint32_t hi)
{
    return c >= lo && c <= hi;
}

/* Fullwidth ASCII (U+FF01..U+FF5E) as ASCII; any other code point as it is. */
static uint32_t fold_width(uint32_t c)
{
    return in(c, 0xFF01, 0xFF5E) ? c - 0xFEE0 : c;
}

static kind_t kind_of(uint32_t c)
{
    if (c < 0x80) {
        if (in(c, '0', '9') || in(c, 'a', 'z') || in(c, 'A', 'Z'))
            return K_TOKEN;
        switch (c) {
        case '_': case '.': case '-': case ':': case '/': case '\\':
        case '@': case '#': case '~': case '>': case '\'':
            return K_JOIN;
        default:
            return K_SEP;
        }
    }
    if (c == 0x2019)                        /* ’ as in don’t */
        return K_JOIN;
    if (in(c, 0x4E00, 0x9FFF) || in(c, 0x3400, 0x4DBF) ||
        in(c, 0xF900, 0xFAFF) || in(c, 0x20000, 0x2FA1F) ||
        in(c, 0x30000, 0x323AF) || in(c, 0x3005, 0x3007))
        return K_HAN;
    if (in(c, 0x3041, 0x3096) || in(c, 0x3099, 0x309A) ||
        in(c, 0x309D, 0x309F))
        return K_HIRA;
    if (in(c, 0x30A1, 0x30FA) || in(c, 0x30FC, 0x30FF) ||
        in(c, 0x31F0, 0x31FF) || in(c, 0xFF66, 0xFF9F) ||
        in(c, 0x1B000, 0x1B16F))
        return K_KATA;
    if (in(c, 0xAC00, 0xD7A3) || in(c, 0x1100, 0x11FF) ||
        in(c, 0x3131, 0x318E) || in(c, 0xA960, 0xA97C) ||
        in(c, 0xD7B0, 0xD7FB) || in(c, 0xFFA0, 0xFFDC))
        return K_HANGUL;
    if (c <= 0xBF)          /* C1 controls, Latin-1 punctuation, but ª ² ³ µ ¹ º ¼ ½ ¾ */
        return (c == 0xAA || c == 0xB2 || c == 0xB3 || c == 0xB5 ||
                c == 0xB9 || c == 0xBA || in(c, 0xBC, 0xBE)) ? K_TOKEN : K_SEP;
    if (c == 0xD7 || c == 0xF7 ||
        in(c, 0x2000, 0x206F) ||            /* general punctuation, spaces */
        in(c, 0x20A0, 0x20FF) ||            /* currency */
        in(c, 0x2190, 0x245F) ||            /* arrows, math, technical */
        in(c, 0x2500, 0x2775) ||            /* box drawing … dingbats */
        in(c, 0x2794, 0x2BFF) ||            /* arrows, math, symbols */
        in(c, 0x2E00, 0x2FFF) ||            /* punctuation, radicals */
        in(c, 0x3000, 0x3004) || in(c, 0x3008, 0x3020) ||
        c == 0x3030 || in(c, 0x303D, 0x303F) ||
        c == 0x309B || c == 0x309C || c == 0x30A0 || c == 0x30FB ||
        in(c, 0x31C0, 0x31EF) || in(c, 0x3200, 0x33FF) ||
        in(c, 0x4DC0, 0x4DFF) ||
        in(c, 0xFE00, 0xFE0F) || in(c, 0xFE10, 0xFE1F) ||
        in(c, 0xFE30, 0xFE6F) || c == 0xFEFF ||
        in(c, 0xFF00, 0xFF65) || in(c, 0xFFE0, 0xFFFF) ||
        in(c, 0x1F000, 0x1FAFF) ||          /* emoji, pictographs */
        in(c, 0xE0000, 0xE01EF))            /* tags, variation selectors */
        return K_SEP;
    return K_TOKEN;
}

/* Code points a question's Han runs lose: particles, pronouns, question
 * words (Simplified, and the Traditional forms met when OpenCC is
 * missing). They would otherwise make bigrams such as 置的 or 是什 that
 * match everywhere or nowhere. A document keeps them. */
static const uint32_t HAN_STOP[] = {
    0x7684, /* 的 */ 0x4E86, /* 了 */ 0x5417, /* 吗 */ 0x55CE, /* 嗎 */
    0x5462, /* 呢 */ 0x5427, /* 吧 */ 0x554A, /* 啊 */ 0x5440, /* 呀 */
    0x4E48, /* 么 */ 0x9EBC, /* 麼 */ 0x9EBD, /* 麽 */ 0x662F, /* 是 */
    0x5728, /* 在 */ 0x548C, /* 和 */ 0x4E0E, /* 与 */ 0x8207, /* 與 */
    0x53CA, /* 及 */ 0x6216, /* 或 */ 0x4E4B, /* 之 */ 0x4E5F, /* 也 */
    0x90FD, /* 都 */ 0x5C31, /* 就 */ 0x800C, /* 而 */ 0x628A, /* 把 */
    0x88AB, /* 被 */ 0x8FD9, /* 这 */ 0x9019, /* 這 */ 0x90A3, /* 那 */
    0x54EA, /* 哪 */ 0x4E2A, /* 个 */ 0x500B, /* 個 */ 0x4EC0, /* 什 */
    0x600E, /* 怎 */ 0x5982, /* 如 */ 0x4F55, /* 何 */ 0x4E3A, /* 为 */
    0x70BA, /* 為 */ 0x6211, /* 我 */ 0x4F60, /* 你 */ 0x60A8, /* 您 */
    0x4ED6, /* 他 */ 0x5979, /* 她 */ 0x5B83, /* 它 */ 0x4EEC, /* 们 */
    0x5011, /* 們 */ 0x8BF7, /* 请 */ 0x8ACB, /* 請 */ 0x7740, /* 着 */
    0x751A, /* 甚 */
};

static bool han_stop(uint32_t c)
{
    for (size_t i = 0; i < sizeof HAN_STOP / sizeof HAN_STOP[0]; i++)
        if (HAN_STOP[i] == c)
            return true;
    return false;
}

/* A question's hiragana runs this short are particles and endings (を は
 * が の に で から です); longer ones are bigrammed like the rest. */
#define HIRA_STOP_MAX 3

/* English stopwords (NLTK's list without its contractions, and could,
 * might, please, shall, would, also), sorted for bsearch. */
static const char *const EN_STOP[] = {
    "a", "about", "above", "after", "again", "against", "ain", "all", "also",
    "am", "an", "and", "any", "are", "aren", "as", "at", "be", "because",
    "been", "before", "being", "below", "between", "both", "but", "by",
    "can", "could", "couldn", "d", "did", "didn", "do", "does", "doesn",
    "doing", "don", "down", "during", "each", "few", "for", "from",
    "further", "had", "hadn", "has", "hasn", "have", "haven", "having", "he",
    "her", "here", "hers", "herself", "him", "himself", "his", "how", "i",
    "if", "in", "into", "is", "isn", "it", "its", "itself", "just", "ll",
    "m", "ma", "me", "might", "mightn", "more", "most", "mustn", "my",
    "myself", "needn", "no", "nor", "not", "now", "o", "of", "off", "on",
    "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over",
    "own", "please", "re", "s", "same", "shall", "shan", "she", "should",
    "shouldn", "so", "some", "such", "t", "than", "that", "the", "their",
    "theirs", "them", "themselves", "then", "there", "these", "they", "this",
    "those", "through", "to", "too", "under", "until", "up", "ve", "very",
    "was", "wasn", "we", "were", "weren", "what", "when", "where", "which",
    "while", "who", "whom", "why", "will", "with", "won", "would", "wouldn",
    "y", "you", "your", "yours", "yourself", "yourselves",
};

/* Whether w[0..n) (lowercase) is an English stopword. */
static bool en_stop(const char *w, size_t n)
{
    size_t lo = 0, hi = sizeof EN_STOP / sizeof EN_STOP[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *s = EN_STOP[mid];
        int c = strncmp(w, s, n);
        if (c == 0)
            c = s[n] == '\0' ? 0 : -1;
        if (c == 0)
            return true;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

/* The suffixes that an apostrophe makes a contraction of (don't, it's,
 * we're, I've, you'll, I'd, I'm): dropped from a question's word. */
static bool contraction(const char *w, size_t n)
{
    static const char *const SUF[] = { "s", "t", "re", "ve", "ll", "d", "m" };
    for (size_t i = 0; i < sizeof SUF / sizeof SUF[0]; i++)
        if (strlen(SUF[i]) == n && memcmp(SUF[i], w, n) == 0)
            return true;
    return false;
}

/* Write code point c as UTF-8 to o (room for 4 bytes); returns its length. */
static size_t put_cp(uint32_t c, char *o)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | c >> 12);
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | c >> 18);
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* The Simplified form of Han character c (c itself when none). */
static uint32_t t2s(const textindex_t *ti, uint32_t c)
{
    size_t lo = 0, hi = ti->n_t2s;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ti->t2s[mid].from == c)
            return ti->t2s[mid].to;
        if (ti->t2s[mid].from < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return c;
}

static bool is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static bool is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* ---- the conversion table -------------------------------------------- */

/* Ask OpenCC for the conversion of every character of block [lo, hi] (one
 * string, a newline after each character, so that no phrase of its
 * dictionaries spans two) and append the pairs that change to *pairs
 * (*n used of *cap). Returns TEXTINDEX_OK; TEXTINDEX_ENOMEM; or 1 when
 * OpenCC failed or its answer does not line up with the question (the
 * block's pairs are then left out). */
static int t2s_block(opencc_t cc, uint32_t lo, uint32_t hi,
                     t2s_pair_t **pairs, size_t *n, size_t *cap)
{
    size_t count = hi - lo + 1, len = 0, n0 = *n;
    char *in = malloc(count * 5 + 1);
    if (!in)
        return TEXTINDEX_ENOMEM;
    for (uint32_t c = lo; c <= hi; c++) {
        len += put_cp(c, in + len);
        in[len++] = '\n';
    }
    in[len] = '\0';
    char *o = opencc_convert_utf8(cc, in, len);
    free(in);
    if (!o)
        return 1;
    size_t olen = strlen(o), i = 0;
    const unsigned char *u = (const unsigned char *)o;
    int rc = utf8_valid(o, olen) ? TEXTINDEX_OK : 1;
    for (uint32_t c = lo; c <= hi && rc == TEXTINDEX_OK; c++) {
        size_t at = i;
        while (i < olen && o[i] != '\n')
            i++;
        if (i == olen) {
            rc = 1;                     /* fewer lines than characters */
            break;
        }
        size_t j = at;
        uint32_t to = i > at ? next_cp(u, &j) : c;
        i++;
        if (j != i - 1 || to == c)      /* unchanged, or not one character */
            continue;
        if (*n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 4096;
            t2s_pair_t *p = realloc(*pairs, ncap * sizeof *p);
            if (!p) {
                rc = TEXTINDEX_ENOMEM;
                break;
            }
            *pairs = p;
            *cap = ncap;
        }
        (*pairs)[(*n)++] = (t2s_pair_t){ c, to };
    }
    if (rc == TEXTINDEX_OK && i != olen)
        rc = 1;                         /* more lines than characters */
    if (rc != TEXTINDEX_OK)
        *n = n0;
    opencc_convert_utf8_free(o);
    return rc;
}

/* Fill ti's table from OpenCC configuration `name`. Returns TEXTINDEX_OK
 * (ti->converts tells whether OpenCC could be used) or TEXTINDEX_ENOMEM. */
static int t2s_load(textindex_t *ti, const char *name)
{
    opencc_t cc = opencc_open(name);
    if (cc == (opencc_t)-1) {
        log_warn("textindex: OpenCC cannot load %s (%s): Traditional and "
                 "Simplified Chinese will not find each other",
                 name, opencc_error());
        return TEXTINDEX_OK;
    }
    size_t cap = 0;
    int rc = TEXTINDEX_OK;
    for (size_t b = 0; b < sizeof HAN_BLOCKS / sizeof HAN_BLOCKS[0]; b++) {
        rc = t2s_block(cc, HAN_BLOCKS[b][0], HAN_BLOCKS[b][1], &ti->t2s,
                       &ti->n_t2s, &cap);
        if (rc == 1) {
            log_warn("textindex: OpenCC's %s gave no usable answer for "
                     "U+%04X..U+%04X: those characters are not converted",
                     name, (unsigned)HAN_BLOCKS[b][0],
                     (unsigned)HAN_BLOCKS[b][1]);
            rc = TEXTINDEX_OK;
        }
        if (rc != TEXTINDEX_OK)
            break;
    }
    opencc_close(cc);
    if (rc != TEXTINDEX_OK)
        return rc;
    /* Follow chains (A → B, B → C gives A → C): a converted text then
     * converts to itself. Chains are short; 8 steps bound a cycle. */
    for (size_t i = 0; i < ti->n_t2s; i++)
        for (int step = 0; step < 8; step++) {
            uint32_t to = t2s(ti, ti->t2s[i].to);
            if (to == ti->t2s[i].to)
                break;
            ti->t2s[i].to = to;
        }
    ti->converts = true;
    return TEXTINDEX_OK;
}

int textindex_open(textindex_t **out)
{
    return textindex_open_config(NULL, out);
}

int textindex_open_config(const char *config, textindex_t **out)
{
    *out = NULL;
    textindex_t *ti = calloc(1, sizeof *ti);
    if (!ti)
        return TEXTINDEX_ENOMEM;
    int rc = t2s_load(ti, config ? config : OPENCC_DEFAULT_CONFIG_TRAD_TO_SIMP);
    if (rc != TEXTINDEX_OK) {
        textindex_close(ti);
        return rc;
    }
    *out = ti;
    return TEXTINDEX_OK;
}

void textindex_close(textindex_t *ti)
{
    if (!ti)
        return;
    free(ti->t2s);
    free(ti);
}

bool textindex_converts(const textindex_t *ti)
{
    return ti && ti->converts;
}

/* ---- documents ------------------------------------------------------- */

/* Append the parts of every camelCase token of the word w[0..n) (a run of
 * token characters and joiners), each between spaces: "EVP_DigestInit"
 * gives " Digest Init ". A token is cut before an upper-case letter that
 * follows a lower-case letter or a digit, and before the last capital of a
 * capital run followed by a lower-case letter (HTTPServer: HTTP Server). */
static int doc_camel(const char *w, size_t n, buf_t *out);

/* Append the fused form of an identifier w[0..n) of two tokens or more
 * (joined by joiners): its token characters alone, " aes128encrypt " for
 * aes128_encrypt. One rare token per identifier, which the question's
 * identifier asks for too (textindex_query): the phrase "aes128 encrypt"
 * also matches inside gcm_aes128_encrypt, the fused token does not, so the
 * chunk that names the identifier itself ranks first. */
static int doc_fused(const char *w, size_t n, buf_t *out)
{
    const unsigned char *u = (const unsigned char *)w;
    size_t first = n, last = 0;   /* the first and last token characters */
    for (size_t k = 0; k < n; k++)
        if (u[k] >= 0x80 || is_upper(u[k]) || is_lower(u[k]) || is_digit(u[k])) {
            first = first < k ? first : k;
            last = k;
        }
    bool joined = false;
    for (size_t k = first; k < last && !joined; k++)
        joined = !(u[k] >= 0x80 || is_upper(u[k]) || is_lower(u[k]) || is_digit(u[k]));
    if (!joined || last - first + 1 > TEXTINDEX_TERM_MAX)
        return BUF_OK;
    int rc = buf_append(out, " ", 1);
    for (size_t k = first; k <= last && rc == BUF_OK; k++)
        if (u[k] >= 0x80 || is_upper(u[k]) || is_lower(u[k]) || is_digit(u[k]))
            rc = buf_append(out, w + k, 1);
    return rc == BUF_OK ? buf_append(out, " ", 1) : rc;
}

/* Everything a word w[0..n) adds to the index text after itself. */
static int doc_word(const char *w, size_t n, buf_t *out)
{
    int rc = doc_fused(w, n, out);
    return rc == BUF_OK ? doc_camel(w, n, out) : rc;
}

static int doc_camel(const char *w, size_t n, buf_t *out)
{
    const unsigned char *u = (const unsigned char *)w;
    size_t part = 0;
    bool in_tok = false, cut = false;
    int rc = BUF_OK;
    for (size_t k = 0; k <= n && rc == BUF_OK; k++) {
        unsigned char c = k < n ? u[k] : 0;
        /* A byte of a non-ASCII character counts as a token character:
         * the word holds no non-ASCII separators. */
        bool token = k < n && (c >= 0x80 || is_upper(c) || is_lower(c) ||
                               is_digit(c));
        if (token && !in_tok) {
            in_tok = true;
            cut = false;
            part = k;
            continue;
        }
        if (token) {
            unsigned char p = u[k - 1], nx = k + 1 < n ? u[k + 1] : 0;
            bool boundary = is_upper(c) &&
                ((is_lower(p) || is_digit(p)) ||
                 (is_upper(p) && is_lower(nx)));
            if (boundary) {
                rc = buf_append(out, " ", 1);
                if (rc == BUF_OK)
                    rc = buf_append(out, w + part, k - part);
                part = k;
                cut = true;
            }
            continue;
        }
        if (in_tok && cut) {
            rc = buf_append(out, " ", 1);
            if (rc == BUF_OK)
                rc = buf_append(out, w + part, k - part);
            if (rc == BUF_OK)
                rc = buf_append(out, " ", 1);
        }
        in_tok = false;
    }
    return rc;
}

/* Append the index text of one CJK run t[0..n) of kind k: its bigrams,
 * then its characters, each followed by a space (Han converted). */
static int doc_run(const textindex_t *ti, kind_t k, const char *t, size_t n,
                   buf_t *out)
{
    const unsigned char *u = (const unsigned char *)t;
    char bi[9], one[5];
    size_t pl = 0;
    int rc = buf_append(out, " ", 1);
    for (size_t i = 0, count = 0; i < n && rc == BUF_OK; count++) {
        uint32_t c = next_cp(u, &i);
        size_t cl = put_cp(k == K_HAN ? t2s(ti, c) : c, bi + pl);
        if (count > 0) {
            bi[pl + cl] = ' ';
            rc = buf_append(out, bi, pl + cl + 1);
            memmove(bi, bi + pl, cl);
        }
        pl = cl;
    }
    for (size_t i = 0; i < n && rc == BUF_OK;) {
        uint32_t c = next_cp(u, &i);
        size_t cl = put_cp(k == K_HAN ? t2s(ti, c) : c, one);
        one[cl] = ' ';
        rc = buf_append(out, one, cl + 1);
    }
    return rc;
}

int textindex_doc(textindex_t *ti, const char *s, size_t n, buf_t *out)
{
    if (!ti || !out || (!s && n))
        return TEXTINDEX_EINVAL;
    if (n == 0)
        return TEXTINDEX_OK;
    if (!utf8_valid(s, n))
        return TEXTINDEX_EUTF8;
    const unsigned char *u = (const unsigned char *)s;
    size_t start = out->len;
    size_t span = 0;            /* s[span..at) is copied as it is */
    size_t word = SIZE_MAX;     /* start of the current word, if any */
    int rc = BUF_OK;
    size_t i = 0;
    while (i < n && rc == BUF_OK) {
        size_t at = i;
        uint32_t raw = next_cp(u, &i);
        uint32_t c = fold_width(raw);
        kind_t k = kind_of(c);
        bool in_word = k == K_TOKEN || k == K_JOIN;
        if (word != SIZE_MAX && !in_word) {
            rc = buf_append(out, s + span, at - span);
            if (rc == BUF_OK)
                rc = doc_word(s + word, at - word, out);
            span = at;
            word = SIZE_MAX;
            if (rc != BUF_OK)
                break;
        }
        if (in_word && word == SIZE_MAX)
            word = at;
        if (is_cjk(k)) {
            size_t end = i;
            while (end < n) {
                size_t j = end;
                if (kind_of(next_cp(u, &j)) != k)
                    break;
                end = j;
            }
            rc = buf_append(out, s + span, at - span);
            if (rc == BUF_OK)
                rc = doc_run(ti, k, s + at, end - at, out);
            span = i = end;
        } else if (c != raw || c < 0x20 || in(c, 0x7F, 0x9F)) {
            /* fullwidth to ASCII; controls (NUL included) to a space */
            char a = c != raw ? (char)c : ' ';
            rc = buf_append(out, s + span, at - span);
            if (rc == BUF_OK)
                rc = buf_append(out, &a, 1);
            span = i;
        }
    }
    if (rc == BUF_OK)
        rc = buf_append(out, s + span, n - span);
    if (rc == BUF_OK && word != SIZE_MAX)
        rc = doc_word(s + word, n - word, out);
    if (rc != BUF_OK) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return rc == BUF_ETOOBIG ? TEXTINDEX_ETOOBIG : TEXTINDEX_ENOMEM;
    }
    return TEXTINDEX_OK;
}

/* ---- questions ------------------------------------------------------- */

typedef struct {
    buf_t *out;
    int rc;                     /* BUF_* of the first failed append */
    int n;                      /* terms written */
    size_t off[TEXTINDEX_QUERY_TERMS_MAX];  /* each term's text in out */
    size_t len[TEXTINDEX_QUERY_TERMS_MAX];
    /* the word being read: its tokens, lowercase, joined by spaces */
    char term[TEXTINDEX_TERM_MAX];
    size_t tlen;
    size_t tok_at;              /* where the current token starts in term */
    int ntok;
    bool in_tok, join, join_apos, after_apos, all_stop, too_long;
    /* the CJK piece being read (a run between function characters) */
    char prev[4];               /* its last character */
    size_t prev_len;
    size_t piece;               /* its length in characters */
} query_t;

static bool query_full(const query_t *q)
{
    return q->rc != BUF_OK || q->n == TEXTINDEX_QUERY_TERMS_MAX;
}

/* Write t[0..n) as one quoted term unless it is empty, too long or written
 * already. t holds no '"' (a separator everywhere); quotes would be
 * doubled anyway. */
static void query_term(query_t *q, const char *t, size_t n)
{
    if (n == 0 || n > TEXTINDEX_TERM_MAX || query_full(q))
        return;
    for (int i = 0; i < q->n; i++)
        if (q->len[i] == n && memcmp(q->out->data + q->off[i], t, n) == 0)
            return;
    buf_t *o = q->out;
    int rc = q->n ? buf_append(o, " OR \"", 5) : buf_append(o, "\"", 1);
    size_t off = o->len;
    for (size_t i = 0; i < n && rc == BUF_OK; i++)
        rc = t[i] == '"' ? buf_append(o, "\"\"", 2) : buf_append(o, t + i, 1);
    size_t len = o->len - off;
    if (rc == BUF_OK)
        rc = buf_append(o, "\"", 1);
    if (rc != BUF_OK) {
        q->rc = rc;
        return;
    }
    q->off[q->n] = off;
    q->len[q->n] = len;
    q->n++;
}

static void word_put(query_t *q, const char *p, size_t n)
{
    if (q->too_long || q->tlen + n > sizeof q->term) {
        q->too_long = true;
        return;
    }
    memcpy(q->term + q->tlen, p, n);
    q->tlen += n;
}

static void word_end_token(query_t *q)
{
    q->in_tok = false;
    if (q->too_long)
        return;
    const char *t = q->term + q->tok_at;
    size_t n = q->tlen - q->tok_at;
    if (q->after_apos && contraction(t, n)) {
        q->tlen = q->tok_at - 1;        /* the token and its space */
        q->ntok--;
        return;
    }
    if (!en_stop(t, n))
        q->all_stop = false;
}

/* The word ends: write it as a term unless every token is a stopword. A
 * word of several tokens (an identifier) is written as a phrase, then its
 * tokens that are no stopwords one by one: the phrase tells
 * asn1_der_decoding from asn1_der_coding, the tokens weigh the identifier
 * above a plain word of the question (bm25 sums over terms; with the
 * phrase alone, "how is asn1_der_coding used" ranked a chunk saying "use"
 * as high as the one defining asn1_der_coding) and find a near miss
 * (asn1_der_decode_element). */
static void word_end(query_t *q)
{
    if (q->in_tok)
        word_end_token(q);
    if (q->ntok > 0 && !q->too_long && !q->all_stop) {
        query_term(q, q->term, q->tlen);
        if (q->ntok > 1) {   /* the identifier's fused token (doc_fused) */
            char fused[TEXTINDEX_TERM_MAX];
            size_t fl = 0;
            for (size_t i = 0; i < q->tlen; i++)
                if (q->term[i] != ' ')
                    fused[fl++] = q->term[i];
            query_term(q, fused, fl);
        }
        for (size_t i = 0; q->ntok > 1 && i < q->tlen;) {
            size_t e = i;
            while (e < q->tlen && q->term[e] != ' ')
                e++;
            if (!en_stop(q->term + i, e - i))
                query_term(q, q->term + i, e - i);
            i = e + 1;
        }
    }
    q->tlen = 0;
    q->ntok = 0;
    q->join = q->too_long = false;
    q->all_stop = true;
}

static void word_char(query_t *q, kind_t k, uint32_t c, const char *p,
                      size_t n)
{
    if (k == K_JOIN) {
        bool apos = c == '\'' || c == 0x2019;
        if (q->in_tok) {
            word_end_token(q);
            q->join = true;
            q->join_apos = apos;
        } else if (q->join) {
            q->join_apos = q->join_apos && apos;
        }
        return;                 /* a joiner before the first token: dropped */
    }
    if (!q->in_tok) {
        if (q->ntok > 0)
            word_put(q, " ", 1);
        q->after_apos = q->ntok > 0 && q->join_apos;
        q->tok_at = q->tlen;
        q->in_tok = true;
        q->join = false;
        q->ntok++;
    }
    if (c < 0x80) {
        char a = is_upper((unsigned char)c) ? (char)(c + 32) : (char)c;
        word_put(q, &a, 1);
    } else {
        word_put(q, p, n);
    }
}

static void piece_end(query_t *q)
{
    if (q->piece == 1)
        query_term(q, q->prev, q->prev_len);
    q->piece = 0;
}

/* One character p[0..n) of a CJK run: a bigram with the one before it, or
 * the end of a piece when it is a function character. */
static void piece_char(query_t *q, kind_t k, uint32_t c, const char *p,
                       size_t n)
{
    if (k == K_HAN && han_stop(c)) {
        piece_end(q);
        return;
    }
    if (q->piece > 0) {
        char bi[8];
        memcpy(bi, q->prev, q->prev_len);
        memcpy(bi + q->prev_len, p, n);
        query_term(q, bi, q->prev_len + n);
    }
    memcpy(q->prev, p, n);
    q->prev_len = n;
    q->piece++;
}

/* A question's CJK run t[0..n) of `chars` characters and kind k. */
static void query_run(const textindex_t *ti, query_t *q, kind_t k,
                      const char *t, size_t n, size_t chars)
{
    if (k == K_HIRA && chars <= HIRA_STOP_MAX)
        return;
    const unsigned char *u = (const unsigned char *)t;
    for (size_t i = 0; i < n && !query_full(q);) {
        uint32_t c = next_cp(u, &i);
        if (k == K_HAN)
            c = t2s(ti, c);
        char b[4];
        piece_char(q, k, c, b, put_cp(c, b));
    }
    piece_end(q);
}

int textindex_query(textindex_t *ti, const char *s, size_t n, buf_t *out,
                    int *n_terms)
{
    if (n_terms)
        *n_terms = 0;
    if (!ti || !out || (!s && n))
        return TEXTINDEX_EINVAL;
    if (!utf8_valid(s, n))
        return TEXTINDEX_EUTF8;
    query_t *q = malloc(sizeof *q);
    if (!q)
        return TEXTINDEX_ENOMEM;
    memset(q, 0, sizeof *q);
    q->out = out;
    q->all_stop = true;
    size_t start = out->len;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && !query_full(q)) {
        size_t at = i;
        uint32_t raw = next_cp(u, &i);
        uint32_t c = fold_width(raw);
        kind_t k = kind_of(c);
        if (k == K_TOKEN || k == K_JOIN) {
            word_char(q, k, c, s + at, i - at);
            continue;
        }
        word_end(q);
        if (!is_cjk(k))
            continue;
        size_t end = i, chars = 1;
        while (end < n) {
            size_t j = end;
            if (kind_of(next_cp(u, &j)) != k)
                break;
            end = j;
            chars++;
        }
        query_run(ti, q, k, s + at, end - at, chars);
        i = end;
    }
    word_end(q);
    int rc = q->rc, terms = q->n;
    free(q);
    if (rc != BUF_OK) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return rc == BUF_ETOOBIG ? TEXTINDEX_ETOOBIG : TEXTINDEX_ENOMEM;
    }
    if (n_terms)
        *n_terms = terms;
    return TEXTINDEX_OK;
}
