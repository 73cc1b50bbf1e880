/* mdtable.c — see mdtable.h.
 *
 * Each row is rendered as it is fed ("| a | b " — the closing "|" and the
 * padding are added when it is written, once the width is known) into one
 * buffer; the rows array says where each starts. */
#include "extract/mdtable.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extract/codepoint.h"
#include "extract/extract.h"

#define ELLIPSIS "\xe2\x80\xa6"

void mdtable_init(mdtable_t *t, textout_t *out)
{
    memset(t, 0, sizeof *t);
    t->out = out;
    /* The hold limit plus one row at most (a row is bounded by its cells). */
    buf_init(&t->rows, MDTABLE_HOLD_MAX + (size_t)MDTABLE_COLS_MAX * (MDTABLE_CELL_MAX + 16));
}

void mdtable_cleanup(mdtable_t *t)
{
    if (!t)
        return;
    buf_cleanup(&t->rows);
    free(t->row);
    t->row = NULL;
    t->n_rows = t->cap_rows = 0;
}

static int fail(mdtable_t *t, int rc)
{
    if (!t->err)
        t->err = rc;
    return t->err;
}

static int append(mdtable_t *t, const char *s, size_t n)
{
    if (t->err)
        return t->err;
    int rc = buf_append(&t->rows, s, n);
    if (rc)
        return fail(t, rc == BUF_ENOMEM ? EXTRACT_EMEMORY : EXTRACT_EINTERNAL);
    return 0;
}

/* The width cells may reach in this row. */
static unsigned limit(const mdtable_t *t)
{
    return t->flushed ? t->width : MDTABLE_COLS_MAX;
}

static void empty_cell(mdtable_t *t)
{
    if (t->cells < limit(t)) {
        append(t, "|  ", 3);
        t->cells++;
    } else {
        t->cut_cells++;
    }
}

/* Columns still covered by a rowspan from above, at the current place. */
static void skip_covered(mdtable_t *t)
{
    while (t->cells < limit(t) && t->cover[t->cells] > t->row_index)
        empty_cell(t);
}

static void end_cell(mdtable_t *t)
{
    if (!t->in_cell)
        return;
    t->in_cell = false;
    if (t->cell_start == (size_t)-1) {   /* a cell past the width */
        t->cut_cells++;
        return;
    }
    append(t, " ", 1);
    unsigned first = t->cells++;
    unsigned cs = t->colspan < 1 ? 1 : t->colspan;
    unsigned rs = t->rowspan < 1 ? 1 : t->rowspan > MDTABLE_SPAN_MAX ? MDTABLE_SPAN_MAX
                                                                       : t->rowspan;
    for (unsigned k = 1; k < cs && k <= MDTABLE_COLS_MAX; k++)
        empty_cell(t);
    if (rs > 1)
        for (unsigned j = first; j < first + cs && j < MDTABLE_COLS_MAX; j++)
            t->cover[j] = t->row_index + rs;
}

/* Write held row i (or the row just ended) padded to the width. */
static int write_row(mdtable_t *t, const mdtable_row_t *r)
{
    const char *s = t->rows.data + r->off;
    if (t->width == 1) {   /* one column: a line of text */
        size_t n = r->len;
        if (n >= 2 && s[0] == '|') {
            s += 2;
            n -= 2;
        }
        while (n > 0 && s[n - 1] == ' ')
            n--;
        textout_put_utf8(t->out, s, n);
        return textout_newline(t->out);
    }
    textout_put_utf8(t->out, s, r->len);
    for (unsigned k = r->cells; k < t->width; k++)
        textout_put_utf8(t->out, "|  ", 3);
    textout_putc(t->out, '|');
    return textout_newline(t->out);
}

/* Write the held rows (header and separator first) and start streaming. */
static int flush(mdtable_t *t)
{
    if (t->flushed || t->n_rows == 0)
        return t->err ? t->err : textout_error(t->out);
    textout_blank_line(t->out);
    for (size_t i = 0; i < t->n_rows; i++) {
        write_row(t, &t->row[i]);
        if (i == 0 && t->width > 1) {
            for (unsigned k = 0; k < t->width; k++)
                textout_put_utf8(t->out, "| --- ", 6);
            textout_putc(t->out, '|');
            textout_newline(t->out);
        }
    }
    t->flushed = true;
    t->n_rows = 0;
    buf_reset(&t->rows);
    int rc = textout_error(t->out);
    return rc ? fail(t, rc) : 0;
}

static int end_row(mdtable_t *t)
{
    if (!t->in_row)
        return t->err;
    end_cell(t);
    skip_covered(t);
    t->in_row = false;
    t->row_index++;
    size_t off = t->n_rows ? t->row[t->n_rows - 1].off + t->row[t->n_rows - 1].len : 0;
    mdtable_row_t r = { off, t->rows.len - off, t->cells };
    if (t->err)
        return t->err;
    if (t->cells == 0)
        return 0;   /* nothing in it: not a row */
    t->rows_total++;
    if (t->flushed) {
        int rc = write_row(t, &r);
        buf_reset(&t->rows);
        return rc ? fail(t, rc) : 0;
    }
    if (t->cells > t->width)
        t->width = t->cells;
    if (t->n_rows == t->cap_rows) {
        size_t cap = t->cap_rows ? t->cap_rows * 2 : 16;
        mdtable_row_t *v = realloc(t->row, cap * sizeof *v);
        if (!v)
            return fail(t, EXTRACT_EMEMORY);
        t->row = v;
        t->cap_rows = cap;
    }
    t->row[t->n_rows++] = r;
    if (t->rows.len > MDTABLE_HOLD_MAX)
        return flush(t);
    return 0;
}

int mdtable_row(mdtable_t *t)
{
    end_row(t);
    t->in_row = true;
    t->cells = 0;
    return t->err;
}

int mdtable_cell(mdtable_t *t, unsigned colspan, unsigned rowspan)
{
    if (!t->in_row)
        mdtable_row(t);
    end_cell(t);
    skip_covered(t);
    t->in_cell = true;
    t->colspan = colspan;
    t->rowspan = rowspan;
    t->cell_len = 0;
    t->cell_cut = false;
    t->pending_space = false;
    if (t->cells >= limit(t)) {
        t->cell_start = (size_t)-1;
        return t->err;
    }
    append(t, "| ", 2);
    t->cell_start = t->rows.len;
    return t->err;
}

void mdtable_span(mdtable_t *t, unsigned colspan, unsigned rowspan)
{
    if (!t->in_cell)
        return;
    if (colspan)
        t->colspan = colspan;
    if (rowspan)
        t->rowspan = rowspan;
}

void mdtable_space(mdtable_t *t)
{
    if (t->in_cell && t->cell_len > 0)
        t->pending_space = true;
}

bool mdtable_in_cell(const mdtable_t *t)
{
    return t->in_cell;
}

size_t mdtable_rows(const mdtable_t *t)
{
    return t->rows_total + (t->in_row && t->cells ? 1 : 0);
}

static bool is_break(uint32_t cp)
{
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f' || cp == '\v' ||
           cp == 0x85 || cp == 0xA0 || cp == 0x2028 || cp == 0x2029;
}

int mdtable_put(mdtable_t *t, const char *s, size_t n)
{
    if (!t->in_cell || t->cell_start == (size_t)-1 || t->cell_cut)
        return t->err;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && !t->err) {
        uint32_t cp;
        size_t k = codepoint_decode(p + i, n - i, &cp, NULL);
        i += k;
        if (is_break(cp)) {
            mdtable_space(t);
            continue;
        }
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0) || cp == 0xFEFF || cp == 0xAD)
            continue;   /* the sink would drop them; keep the count honest */
        char enc[6];
        size_t len = 0;
        if (t->pending_space)
            enc[len++] = ' ';
        if (cp == '|')
            enc[len++] = '\\';
        len += codepoint_encode(cp, enc + len);
        if (t->cell_len + len > MDTABLE_CELL_MAX) {
            append(t, ELLIPSIS, sizeof ELLIPSIS - 1);
            t->cell_cut = true;
            break;
        }
        t->pending_space = false;
        append(t, enc, len);
        t->cell_len += len;
    }
    return t->err;
}

int mdtable_end(mdtable_t *t)
{
    end_row(t);
    if (!t->err && t->rows_total > 0) {
        flush(t);
        if (!t->err && t->cut_cells) {
            char note[96];
            int k = snprintf(note, sizeof note, ELLIPSIS " %llu more cells not shown",
                             t->cut_cells);
            textout_blank_line(t->out);
            textout_put_utf8(t->out, note, (size_t)k);
        }
        textout_blank_line(t->out);
    }
    int rc = t->err ? t->err : textout_error(t->out);
    textout_t *out = t->out;
    mdtable_cleanup(t);
    mdtable_init(t, out);
    t->err = rc;
    return rc;
}
