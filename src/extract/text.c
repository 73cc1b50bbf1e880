/* text.c — see text.h. */
#include "extract/text.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "extract/extract.h"
#include "extract/codepoint.h"

/* Windows-1252 for 0x80..0x9F; 0 marks the five undefined bytes. */
static const uint16_t cp1252_high[32] = {
    0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
    0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
};

text_encoding_t text_guess_encoding(const unsigned char *p, size_t n)
{
    if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
        return TEXT_ENC_UTF8;
    if (n >= 2 && p[0] == 0xFF && p[1] == 0xFE)
        return TEXT_ENC_UTF16LE;
    if (n >= 2 && p[0] == 0xFE && p[1] == 0xFF)
        return TEXT_ENC_UTF16BE;
    size_t good_multi = 0, bad = 0;
    for (size_t i = 0; i < n;) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        bool ok;
        i += codepoint_decode(p + i, n - i, &cp, &ok);
        if (ok)
            good_multi++;
        else
            bad++;
    }
    if (bad == 0)
        return TEXT_ENC_UTF8;
    return good_multi >= bad ? TEXT_ENC_UTF8_REPAIRED : TEXT_ENC_LATIN1;
}

static int decode_utf16(const unsigned char *p, size_t n, bool le, text_emit_fn emit, void *arg)
{
    size_t i = 2;   /* past the BOM */
    int rc = 0;
    while (i + 1 < n && !rc) {
        uint32_t u = le ? (uint32_t)(p[i] | p[i + 1] << 8) : (uint32_t)(p[i] << 8 | p[i + 1]);
        i += 2;
        if (u >= 0xD800 && u <= 0xDBFF && i + 1 < n) {
            uint32_t v = le ? (uint32_t)(p[i] | p[i + 1] << 8) : (uint32_t)(p[i] << 8 | p[i + 1]);
            if (v >= 0xDC00 && v <= 0xDFFF) {
                i += 2;
                rc = emit(arg, 0x10000 + ((u - 0xD800) << 10) + (v - 0xDC00));
                continue;
            }
        }
        if (u >= 0xD800 && u <= 0xDFFF)
            u = CODEPOINT_REPLACEMENT;
        rc = emit(arg, u);
    }
    if (!rc && i < n)    /* an odd byte at the end */
        rc = emit(arg, CODEPOINT_REPLACEMENT);
    return rc;
}

int text_decode(const unsigned char *p, size_t n, text_emit_fn emit, void *arg,
                text_encoding_t *enc_out)
{
    text_encoding_t enc = text_guess_encoding(p, n);
    if (enc_out)
        *enc_out = enc;
    int rc = 0;
    switch (enc) {
    case TEXT_ENC_UTF16LE:
    case TEXT_ENC_UTF16BE:
        return decode_utf16(p, n, enc == TEXT_ENC_UTF16LE, emit, arg);
    case TEXT_ENC_LATIN1:
        for (size_t i = 0; i < n && !rc; i++) {
            uint32_t cp = p[i];
            if (cp >= 0x80 && cp <= 0x9F)
                cp = cp1252_high[cp - 0x80] ? cp1252_high[cp - 0x80] : CODEPOINT_REPLACEMENT;
            rc = emit(arg, cp);
        }
        return rc;
    case TEXT_ENC_UTF8:
    case TEXT_ENC_UTF8_REPAIRED:
    default: {
        size_t i = (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) ? 3 : 0;
        while (i < n && !rc) {
            uint32_t cp;
            i += codepoint_decode(p + i, n - i, &cp, NULL);
            rc = emit(arg, cp);
        }
        return rc;
    }
    }
}

static int emit_utf8(void *arg, uint32_t cp)
{
    buf_t *b = arg;
    char enc[4];
    size_t k = codepoint_encode(cp, enc);
    int rc = buf_append(b, enc, k);
    if (rc == BUF_ETOOBIG)
        return EXTRACT_ETOOBIG;
    return rc ? EXTRACT_EMEMORY : 0;
}

int text_to_utf8(const unsigned char *p, size_t n, buf_t *out)
{
    return text_decode(p, n, emit_utf8, out, NULL);
}

int text_read_fd(int fd, size_t max, unsigned char **data, size_t *len)
{
    buf_t b;
    buf_init(&b, max);
    *data = NULL;
    *len = 0;
    if (lseek(fd, 0, SEEK_SET) < 0)
        return EXTRACT_ECORRUPT;
    char chunk[65536];
    int rc = 0;
    for (;;) {
        ssize_t k = read(fd, chunk, sizeof chunk);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            rc = EXTRACT_ECORRUPT;
            break;
        }
        if (k == 0)
            break;
        int brc = buf_append(&b, chunk, (size_t)k);
        if (brc) {
            rc = brc == BUF_ETOOBIG ? EXTRACT_ETOOBIG : EXTRACT_EMEMORY;
            break;
        }
    }
    if (rc) {
        buf_cleanup(&b);
        return rc;
    }
    *data = (unsigned char *)buf_steal(&b, len);
    return *data ? 0 : EXTRACT_EMEMORY;
}

size_t text_input_limit(size_t max_output)
{
    const size_t cap = (size_t)1 << 30;
    if (max_output > (cap - 65536) / 4)
        return cap;
    return max_output * 4 + 65536;
}

/* ---- txt and md: the text as decoded, and its structure --------------------
 *
 * Both backends push every decoded code point into the sink unchanged, so
 * the text is what decoding gives whatever the structure; the structure is
 * watched on the way. Pages: when the text holds a form feed, page 1
 * starts at 0 and page k+1 right after the k-th form feed. Markdown
 * headings are found line by line (a line ends where the sink ends one:
 * LF, CR, CRLF, FF, VT, NEL, U+2028/2029), as CommonMark has them, within
 * what a line-at-a-time reader can tell:
 *   - ATX: up to 3 spaces, 1-6 '#', then a blank or the end of the line;
 *     the title is the rest without a closing run of '#';
 *   - setext: a paragraph (non-blank lines started by a line indented at
 *     most 3 spaces that is not a list item, quote or thematic break)
 *     followed by a line of only '=' (level 1) or '-' (level 2), indented
 *     at most 3 spaces; the title is the paragraph;
 *   - nothing inside fenced code (``` or ~~~, closed by a run at least as
 *     long) or a front matter block ("---" on the first line to the next
 *     "---" or "...").
 * The mark is at the start of the heading's first line. */

#define HEAD_MAX 12   /* code points of a line's start that classify it */

typedef struct {
    textout_t *out;
    bool md;
    int pages;            /* page marks so far; 0 when the text has no FF */
    bool after_cr;        /* a '\n' now ends nothing (CRLF) */
    /* the current line */
    size_t line_start;    /* its offset in the sink */
    int indent;           /* columns of blanks before its first character */
    uint32_t head[HEAD_MAX];  /* its first code points after the indent */
    int head_n;
    bool has_text;        /* a non-blank code point seen */
    int run;              /* head[0] repeated from the start (uniform lines) */
    int uniform;          /* 0: a run of head[0] so far, 1: then blanks, 2: neither */
    /* blocks */
    bool in_para;
    size_t para_start;
    bool in_fence;
    uint32_t fence_char;
    int fence_len;
    bool in_front;        /* front matter */
    bool first_line;
} scan_t;

static bool is_line_end(uint32_t cp)
{
    return cp == '\n' || cp == '\r' || cp == '\f' || cp == '\v' || cp == 0x85 ||
           cp == 0x2028 || cp == 0x2029;
}

static bool is_blank_cp(uint32_t cp) { return cp == ' ' || cp == '\t'; }

static void line_reset(scan_t *s)
{
    s->line_start = textout_len(s->out);
    s->indent = 0;
    s->head_n = 0;
    s->has_text = false;
    s->run = 0;
    s->uniform = 0;
}

/* One more code point of the current line (not a line end). */
static void line_add(scan_t *s, uint32_t cp)
{
    if (!s->has_text) {
        if (is_blank_cp(cp)) {
            s->indent += cp == '\t' ? 4 : 1;
            return;
        }
        s->has_text = true;
    }
    if (s->head_n < HEAD_MAX)
        s->head[s->head_n++] = cp;
    if (s->uniform == 0 && cp == s->head[0])
        s->run++;
    else if (s->uniform < 2 && is_blank_cp(cp))
        s->uniform = 1;
    else
        s->uniform = 2;
}

/* Is the line a list item, a block quote or a thematic break (which
 * neither start nor continue a paragraph)? */
static bool starts_other_block(const scan_t *s)
{
    uint32_t c = s->head[0];
    bool end1 = s->head_n == 1 || is_blank_cp(s->head[1]);
    if (c == '>')
        return true;
    if ((c == '-' || c == '*' || c == '+') && end1)
        return true;
    if ((c == '-' || c == '*' || c == '_') && s->uniform < 2 && s->run >= 3)
        return true;
    int d = 0;
    while (d < s->head_n && d < 9 && s->head[d] >= '0' && s->head[d] <= '9')
        d++;
    return d > 0 && d < s->head_n && (s->head[d] == '.' || s->head[d] == ')') &&
           (d + 1 == s->head_n || is_blank_cp(s->head[d + 1]));
}

/* An ATX heading line: its title is the line in the sink without the
 * opening and closing runs of '#'. */
static void atx_heading(scan_t *s, int level)
{
    const textout_t *t = s->out;
    const char *p = t->buf.data ? t->buf.data + s->line_start : "";
    size_t n = textout_len(t) - s->line_start, i = 0;
    while (i < n && is_blank_cp((unsigned char)p[i]))
        i++;
    i += (size_t)level;
    if (i > n)   /* the sink stopped mid-line (its limit) */
        return;
    while (n > i && is_blank_cp((unsigned char)p[n - 1]))
        n--;
    size_t k = n;
    while (k > i && p[k - 1] == '#')
        k--;
    if (k == i || is_blank_cp((unsigned char)p[k - 1]))
        n = k;
    textout_heading_at(s->out, s->line_start, level, p + i, n - i);
}

/* The current line is complete (its end not yet in the sink). */
static void line_end(scan_t *s)
{
    bool first = s->first_line;
    s->first_line = false;
    uint32_t c = s->head[0];
    bool shallow = s->has_text && s->indent <= 3;
    if (s->in_front) {
        if (s->indent == 0 && s->uniform < 2 && s->run == 3 && (c == '-' || c == '.'))
            s->in_front = false;
        return;
    }
    if (s->in_fence) {
        if (shallow && c == s->fence_char && s->uniform < 2 && s->run >= s->fence_len)
            s->in_fence = false;
        return;
    }
    if (first && s->indent == 0 && c == '-' && s->uniform < 2 && s->run == 3) {
        s->in_front = true;
        return;
    }
    if (!s->has_text) {
        s->in_para = false;
        return;
    }
    int hashes = 0;
    while (hashes < s->head_n && s->head[hashes] == '#')
        hashes++;
    if (shallow && (c == '`' || c == '~') && hashes == 0 && s->run >= 3) {
        s->in_fence = true;
        s->fence_char = c;
        s->fence_len = s->run;
        s->in_para = false;
    } else if (shallow && hashes >= 1 && hashes <= 6 &&
               (hashes == s->head_n || is_blank_cp(s->head[hashes]))) {
        atx_heading(s, hashes);
        s->in_para = false;
    } else if (s->in_para && shallow && (c == '=' || c == '-') && s->uniform < 2) {
        const textout_t *t = s->out;
        textout_heading_at(s->out, s->para_start, c == '=' ? 1 : 2,
                           t->buf.data + s->para_start, s->line_start - s->para_start);
        s->in_para = false;
    } else if (s->in_para) {
        if (shallow && starts_other_block(s))
            s->in_para = false;
    } else if (shallow && !starts_other_block(s)) {
        s->in_para = true;
        s->para_start = s->line_start;
    }
}

static int emit_scan(void *arg, uint32_t cp)
{
    scan_t *s = arg;
    bool crlf = cp == '\n' && s->after_cr;
    s->after_cr = cp == '\r';
    if (crlf || !is_line_end(cp)) {
        if (s->md && !crlf)
            line_add(s, cp);
        return textout_putc(s->out, cp);
    }
    if (s->md)
        line_end(s);
    int rc = textout_putc(s->out, cp);
    if (!rc && cp == '\f' && s->pages > 0)
        rc = textout_page(s->out, ++s->pages, NULL);
    if (s->md)
        line_reset(s);
    return rc;
}

static int find_form_feed(void *arg, uint32_t cp)
{
    (void)arg;
    return cp == '\f';
}

static int extract_text(int fd, textout_t *out, bool md)
{
    unsigned char *data;
    size_t len;
    int rc = text_read_fd(fd, text_input_limit(textout_max(out)), &data, &len);
    if (rc)
        return rc;
    scan_t s = { .out = out, .md = md, .first_line = true };
    line_reset(&s);
    if (text_decode(data, len, find_form_feed, NULL, NULL) == 1) {
        s.pages = 1;
        textout_page(out, 1, NULL);
    }
    rc = text_decode(data, len, emit_scan, &s, NULL);
    if (!rc && md && (s.has_text || s.indent > 0))
        line_end(&s);
    free(data);
    return rc;
}

int text_extract(int fd, textout_t *out) { return extract_text(fd, out, false); }

int text_extract_md(int fd, textout_t *out) { return extract_text(fd, out, true); }
