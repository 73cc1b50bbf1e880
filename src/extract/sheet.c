/* sheet.c — see sheet.h. */
#include "extract/sheet.h"

#include <stdio.h>
#include <string.h>

#include "extract/extract.h"

#define ELLIPSIS "\xe2\x80\xa6"

size_t sheet_cells_limit(size_t max_output)
{
    size_t n = max_output / 16;   /* a cell costs at least "| x " */
    return n < SHEET_CELLS_MAX ? (n ? n : 1) : SHEET_CELLS_MAX;
}

void sheet_init(sheet_t *s, textout_t *out)
{
    memset(s, 0, sizeof *s);
    s->out = out;
    s->cells_max = sheet_cells_limit(textout_max(out));
    mdtable_init(&s->tbl, out);
    buf_init(&s->text, (size_t)MDTABLE_COLS_MAX * (MDTABLE_CELL_MAX + 8));
}

void sheet_cleanup(sheet_t *s)
{
    if (!s)
        return;
    mdtable_cleanup(&s->tbl);
    buf_cleanup(&s->text);
}

static int error(const sheet_t *s)
{
    return s->tbl.err ? s->tbl.err : textout_error(s->out);
}

int sheet_begin(sheet_t *s, const char *name, size_t n)
{
    sheet_end(s);
    textout_blank_line(s->out);
    if (name) {
        size_t start = textout_len(s->out);
        textout_put_utf8(s->out, name, n);
        textout_heading_at(s->out, start, 1, NULL, 0);
        textout_blank_line(s->out);
    }
    s->in_sheet = true;
    s->hidden_rows = 0;
    s->cut_cells = 0;
    s->n_cells = 0;
    s->col = 0;
    buf_reset(&s->text);
    return error(s);
}

int sheet_row(sheet_t *s)
{
    s->n_cells = 0;
    s->col = 0;
    buf_reset(&s->text);
    return error(s);
}

int sheet_cell(sheet_t *s, unsigned long col, const char *text, size_t n, unsigned long repeat)
{
    if (col == SHEET_NEXT || col < s->col)
        col = s->col;
    if (repeat < 1)
        repeat = 1;
    /* Blank text is an empty cell. */
    size_t k = 0;
    while (k < n && (text[k] == ' ' || text[k] == '\t' || text[k] == '\n' || text[k] == '\r'))
        k++;
    bool filled = k < n;
    if (n > MDTABLE_CELL_MAX + 4)
        n = MDTABLE_CELL_MAX + 4;   /* mdtable cuts it further, with an ellipsis */
    for (unsigned long i = 0; filled && i < repeat; i++) {
        unsigned long c = col + i;
        if (c >= MDTABLE_COLS_MAX || s->n_cells >= MDTABLE_COLS_MAX) {
            s->cut_cells += repeat - i;
            break;
        }
        size_t off = s->text.len;
        if (buf_append(&s->text, text, n) != BUF_OK)
            return s->tbl.err = EXTRACT_EMEMORY;
        s->cell[s->n_cells++] = (sheet_cell_t){ (unsigned)c, off, n };
    }
    s->col = col + repeat < col ? SHEET_NEXT - 1 : col + repeat;
    return error(s);
}

int sheet_row_end(sheet_t *s, unsigned long repeat)
{
    if (repeat < 1)
        repeat = 1;
    unsigned n = s->n_cells;
    s->n_cells = 0;
    if (n == 0)
        return error(s);   /* an empty row: left out */
    /* What the row costs as a Markdown line, at most (cells, padding, '|'). */
    size_t row_bytes = 2;
    for (unsigned i = 0; i < n; i++)
        row_bytes += s->cell[i].len + 8;
    row_bytes += 3 * (size_t)s->cell[n - 1].col;
    size_t max = textout_max(s->out), budget = max - max / 8;
    for (unsigned long r = 0; r < repeat; r++) {
        size_t held = textout_len(s->out) + s->tbl.rows.len;
        if (s->full || s->cells_shown + n > s->cells_max || held + row_bytes > budget) {
            s->full = true;
            s->hidden_rows += repeat - r;
            break;
        }
        s->cells_shown += n;
        mdtable_row(&s->tbl);
        unsigned c = 0;
        for (unsigned i = 0; i < n; i++) {
            for (; c < s->cell[i].col; c++)
                mdtable_cell(&s->tbl, 1, 1);
            mdtable_cell(&s->tbl, 1, 1);
            mdtable_put(&s->tbl, s->text.data + s->cell[i].off, s->cell[i].len);
            c++;
        }
        if (error(s))
            break;
    }
    return error(s);
}

int sheet_end(sheet_t *s)
{
    if (!s->in_sheet)
        return error(s);
    s->in_sheet = false;
    mdtable_end(&s->tbl);
    char note[128];
    int k;
    if (s->hidden_rows) {
        k = snprintf(note, sizeof note, ELLIPSIS " %llu more rows not shown", s->hidden_rows);
        textout_put_utf8(s->out, note, (size_t)k);
        textout_blank_line(s->out);
    }
    if (s->cut_cells) {
        k = snprintf(note, sizeof note, ELLIPSIS " %llu more cells past column %d not shown",
                     s->cut_cells, MDTABLE_COLS_MAX);
        textout_put_utf8(s->out, note, (size_t)k);
        textout_blank_line(s->out);
    }
    return error(s);
}
