/* textout.c — see textout.h. */
#include "extract/textout.h"

#include <stdlib.h>
#include <string.h>

#include "extract/extract.h"
#include "extract/codepoint.h"

void textout_init(textout_t *t, size_t max)
{
    buf_init(&t->buf, max);
    t->err = 0;
    t->after_cr = false;
    t->marks = NULL;
    t->n_marks = t->cap_marks = 0;
    t->marks_limit = extract_marks_limit(max);
    buf_init(&t->labels, t->marks_limit);
    t->marks_bytes = 0;
    t->last_page = 0;
    t->marks_dropped = false;
}

void textout_cleanup(textout_t *t)
{
    if (!t)
        return;
    buf_cleanup(&t->buf);
    buf_cleanup(&t->labels);
    free(t->marks);
    t->marks = NULL;
    t->n_marks = t->cap_marks = 0;
}

size_t textout_max(const textout_t *t) { return t->buf.max; }

int textout_error(const textout_t *t) { return t->err; }

bool textout_at_line_start(const textout_t *t)
{
    return t->buf.len == 0 || t->buf.data[t->buf.len - 1] == '\n';
}

static int append(textout_t *t, const char *p, size_t n)
{
    int rc = buf_append(&t->buf, p, n);
    if (rc == BUF_ETOOBIG)
        t->err = EXTRACT_ETOOBIG;
    else if (rc != BUF_OK)
        t->err = EXTRACT_EMEMORY;
    return t->err;
}

/* Marks past the end of the text (which just got shorter) move back to
 * it. Only ASCII blanks are ever dropped, so the end is a character
 * boundary. */
static void clamp_marks(textout_t *t, size_t end)
{
    for (size_t i = t->n_marks; i > 0 && t->marks[i - 1].offset > end; i--)
        t->marks[i - 1].offset = end;
}

static void trim_line_end(textout_t *t)
{
    size_t len = t->buf.len;
    while (t->buf.len > 0 && (t->buf.data[t->buf.len - 1] == ' ' ||
                              t->buf.data[t->buf.len - 1] == '\t'))
        t->buf.len--;
    if (t->buf.data)
        t->buf.data[t->buf.len] = '\0';
    if (t->buf.len < len)
        clamp_marks(t, t->buf.len);
}

/* Number of '\n' ending the output, counting at most 3. */
static int trailing_newlines(const textout_t *t)
{
    int k = 0;
    while (k < 3 && (size_t)k < t->buf.len && t->buf.data[t->buf.len - 1 - k] == '\n')
        k++;
    return k;
}

/* A line break: trailing blanks go, no break at the very start, and never
 * more than three '\n' in a row (two blank lines). */
static int put_newline(textout_t *t)
{
    trim_line_end(t);
    if (t->buf.len == 0 || trailing_newlines(t) >= 3)
        return 0;
    return append(t, "\n", 1);
}

int textout_putc(textout_t *t, uint32_t cp)
{
    if (t->err)
        return t->err;
    bool was_cr = t->after_cr;
    t->after_cr = false;
    switch (cp) {
    case '\r':
        t->after_cr = true;
        return put_newline(t);
    case '\n':
        return was_cr ? 0 : put_newline(t);
    case '\f': case '\v': case 0x85: case 0x2028: case 0x2029:
        return put_newline(t);
    case '\t':
        return append(t, "\t", 1);
    case 0xA0:
        return append(t, " ", 1);
    case 0xAD: case 0xFEFF:
        return 0;
    default:
        break;
    }
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
        return 0;
    char enc[4];
    size_t n = codepoint_encode(cp, enc);
    return append(t, enc, n);
}

int textout_put_utf8(textout_t *t, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && !t->err) {
        /* Runs of plain printable ASCII go in one piece. */
        size_t j = i;
        while (j < n && p[j] >= 0x20 && p[j] < 0x7F)
            j++;
        if (j > i) {
            if (t->after_cr)
                t->after_cr = false;
            if (append(t, s + i, j - i))
                break;
            i = j;
            continue;
        }
        uint32_t cp;
        i += codepoint_decode(p + i, n - i, &cp, NULL);
        textout_putc(t, cp);
    }
    return t->err;
}

int textout_newline(textout_t *t)
{
    if (t->err)
        return t->err;
    t->after_cr = false;
    trim_line_end(t);
    if (textout_at_line_start(t))
        return 0;
    return append(t, "\n", 1);
}

int textout_blank_line(textout_t *t)
{
    if (t->err)
        return t->err;
    t->after_cr = false;
    trim_line_end(t);
    while (t->buf.len > 0 && trailing_newlines(t) < 2)
        if (append(t, "\n", 1))
            return t->err;
    return 0;
}

int textout_finish(textout_t *t, char **text, size_t *len, size_t *chars)
{
    *text = NULL;
    *len = 0;
    *chars = 0;
    if (t->err)
        return t->err;
    /* Drop trailing whitespace of every kind the sink lets through. */
    while (t->buf.len > 0) {
        char c = t->buf.data[t->buf.len - 1];
        if (c != ' ' && c != '\t' && c != '\n')
            break;
        t->buf.len--;
    }
    if (t->buf.len == 0)
        return EXTRACT_ENOTEXT;
    t->buf.data[t->buf.len] = '\0';
    if (append(t, "\n", 1))
        return t->err;
    /* Marks in the dropped blanks, or at the very end, start at the end:
     * what they open is empty. */
    for (size_t i = t->n_marks; i > 0 && t->marks[i - 1].offset >= t->buf.len - 1; i--)
        t->marks[i - 1].offset = t->buf.len;
    *text = buf_steal(&t->buf, len);
    if (!*text)
        return t->err = EXTRACT_EMEMORY;
    *chars = codepoint_count(*text, *len);
    return 0;
}

/* ---- structure marks ------------------------------------------------------ */

size_t textout_len(const textout_t *t) { return t->buf.len; }

int textout_last_page(const textout_t *t) { return t->last_page; }

size_t textout_mark_count(const textout_t *t) { return t->n_marks; }

bool textout_marks_dropped(const textout_t *t) { return t->marks_dropped; }

void textout_mark_get(const textout_t *t, size_t i, extract_mark_t *m)
{
    const textout_mark_t *k = &t->marks[i];
    m->kind = k->kind;
    m->number = k->number;
    m->offset = k->offset;
    m->label = t->labels.data + k->label_at;
}

static void drop_marks(textout_t *t)
{
    t->marks_dropped = true;
    free(t->marks);
    t->marks = NULL;
    t->n_marks = t->cap_marks = 0;
    buf_cleanup(&t->labels);
    t->marks_bytes = 0;
}

static bool is_blank(uint32_t cp)
{
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f' || cp == '\v' ||
           cp == 0x85 || cp == 0xA0 || cp == 0x2028 || cp == 0x2029 || cp == 0x3000 ||
           (cp >= 0x2000 && cp <= 0x200A);
}

/* Normalise a label into out (EXTRACT_MARK_LABEL_MAX + 1 bytes): U+FFFD for
 * ill-formed UTF-8, blanks and controls collapsed into one space, none at
 * either end, soft hyphens and BOMs dropped, cut before the character that
 * would not fit. Returns its length. Reads only as far as it needs. */
static size_t normalise_label(const char *s, size_t n, char *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    bool space = false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += codepoint_decode(p + i, n - i, &cp, NULL);
        if (cp == 0xAD || cp == 0xFEFF)
            continue;
        if (is_blank(cp) || cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
            space = o > 0;
            continue;
        }
        char enc[4];
        size_t e = codepoint_encode(cp, enc);
        if (o + (space ? 1 : 0) + e > EXTRACT_MARK_LABEL_MAX)
            break;
        if (space)
            out[o++] = ' ';
        space = false;
        memcpy(out + o, enc, e);
        o += e;
    }
    out[o] = '\0';
    return o;
}

static size_t digits(size_t v)
{
    size_t d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

/* Append a mark at `offset` (not before the last one). Never fails the
 * text: over a limit, or out of memory, all marks go. */
static void add_mark(textout_t *t, extract_mark_kind_t kind, int number, size_t offset,
                     const char *label, size_t label_len)
{
    if (t->marks_dropped)
        return;
    /* Its line on the wire, with the offset as long as the largest text. */
    size_t wire = 4 + digits(t->buf.max) + digits((size_t)number) + label_len + 1;
    if (t->n_marks >= EXTRACT_MARKS_MAX || wire > t->marks_limit - t->marks_bytes) {
        drop_marks(t);
        return;
    }
    if (t->n_marks == t->cap_marks) {
        size_t cap = t->cap_marks ? t->cap_marks * 2 : 64;
        textout_mark_t *m = realloc(t->marks, cap * sizeof *m);
        if (!m) {
            drop_marks(t);
            return;
        }
        t->marks = m;
        t->cap_marks = cap;
    }
    size_t at = t->labels.len;
    if (buf_append(&t->labels, label, label_len) != BUF_OK ||
        buf_append(&t->labels, "", 1) != BUF_OK) {
        drop_marks(t);
        return;
    }
    t->marks[t->n_marks++] = (textout_mark_t){
        .kind = kind, .number = number, .offset = offset, .label_at = at
    };
    t->marks_bytes += wire;
}

int textout_page(textout_t *t, int number, const char *label)
{
    if (t->err || number < 1)
        return t->err;
    char norm[EXTRACT_MARK_LABEL_MAX + 1];
    size_t n = normalise_label(label ? label : "", label ? strlen(label) : 0, norm);
    add_mark(t, EXTRACT_MARK_PAGE, number, t->buf.len, norm, n);
    t->last_page = number;
    return 0;
}

int textout_heading(textout_t *t, int level, const char *title, size_t n)
{
    if (t->err || level < 1)
        return t->err;
    if (level > EXTRACT_HEADING_LEVEL_MAX)
        level = EXTRACT_HEADING_LEVEL_MAX;
    char norm[EXTRACT_MARK_LABEL_MAX + 1];
    size_t k = normalise_label(title ? title : "", title ? n : 0, norm);
    if (k > 0)
        add_mark(t, EXTRACT_MARK_HEADING, level, t->buf.len, norm, k);
    return 0;
}

int textout_heading_at(textout_t *t, size_t start, int level, const char *title, size_t n)
{
    if (t->err || level < 1)
        return t->err;
    if (start > t->buf.len)
        start = t->buf.len;
    /* A heading recorded since `start` was inside this one. */
    const textout_mark_t *last = t->n_marks ? &t->marks[t->n_marks - 1] : NULL;
    if (last && (last->offset > start ||
                 (last->offset == start && last->kind == EXTRACT_MARK_HEADING)))
        return 0;
    if (level > EXTRACT_HEADING_LEVEL_MAX)
        level = EXTRACT_HEADING_LEVEL_MAX;
    if (!title) {
        title = t->buf.data ? t->buf.data + start : "";
        n = t->buf.len - start;
    }
    char norm[EXTRACT_MARK_LABEL_MAX + 1];
    size_t k = normalise_label(title, n, norm);
    if (k > 0)
        add_mark(t, EXTRACT_MARK_HEADING, level, start, norm, k);
    return 0;
}
