/* textout.c — see textout.h. */
#include "extract/textout.h"

#include <stdlib.h>

#include "extract/extract.h"
#include "extract/codepoint.h"

void textout_init(textout_t *t, size_t max)
{
    buf_init(&t->buf, max);
    t->err = 0;
    t->after_cr = false;
}

void textout_cleanup(textout_t *t)
{
    if (!t)
        return;
    buf_cleanup(&t->buf);
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

static void trim_line_end(textout_t *t)
{
    while (t->buf.len > 0 && (t->buf.data[t->buf.len - 1] == ' ' ||
                              t->buf.data[t->buf.len - 1] == '\t'))
        t->buf.len--;
    if (t->buf.data)
        t->buf.data[t->buf.len] = '\0';
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
    *text = buf_steal(&t->buf, len);
    if (!*text)
        return t->err = EXTRACT_EMEMORY;
    *chars = codepoint_count(*text, *len);
    return 0;
}
