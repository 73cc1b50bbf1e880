/* mdtable.h — collecting a table's cells and writing it as a Markdown table.
 *
 * The docx, odt, html (and so epub), xlsx, ods, csv and pptx/odp backends
 * feed a table row by row, cell by cell, and the writer emits it to the
 * textout sink as a GitHub-flavoured Markdown table, between blank lines:
 *
 *   | Name | Price |
 *   | --- | --- |
 *   | Tea | 3 |
 *
 * Choices (the same for every format):
 *   - header: the first row is the header row (Markdown has no table
 *     without one; the first row of a document table is its header far
 *     more often than not, and <th>, w:tblHeader or table-header-rows
 *     mark just that row when they are used at all);
 *   - cell text: whitespace runs, line breaks and paragraph breaks inside
 *     a cell become one space (no <br>: the text is read by a model, not
 *     rendered); leading and trailing blanks are dropped; '|' is written
 *     as "\|";
 *   - merged cells: the text stays in the first (top-left) cell; the cells
 *     a colspan/gridSpan covers to its right and a rowspan covers below
 *     are empty (formats that write covered cells themselves, such as
 *     vMerge continuations and covered-table-cell, give the same);
 *   - ragged rows are padded with empty cells to the widest row;
 *   - legibility: a cell keeps at most MDTABLE_CELL_MAX bytes (cut at a
 *     character boundary, then "…"); a row keeps at most MDTABLE_COLS_MAX
 *     columns, and a line after the table says how many cells were left
 *     out ("… N more cells not shown");
 *   - a table whose rows all have one column (a layout table in a web
 *     page) is written as one paragraph per row, not as a table;
 *   - nested tables: the caller flattens an inner table's text into the
 *     cell that holds it (mdtable_space between its cells).
 * Memory: rows are held until the table ends, at most MDTABLE_HOLD_MAX
 * bytes; past that the rows so far are written (their widest row fixes the
 * width) and later rows go out as they end, padded or cut to that width.
 * So a table of any length costs bounded memory. Output goes through the
 * sink, which enforces --max-output.
 */
#ifndef KVCHAT_EXTRACT_MDTABLE_H
#define KVCHAT_EXTRACT_MDTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "extract/textout.h"

#define MDTABLE_CELL_MAX 1000              /* bytes of text kept per cell */
#define MDTABLE_COLS_MAX 64                /* columns kept per row */
#define MDTABLE_SPAN_MAX 1000              /* largest rowspan honoured */
#define MDTABLE_HOLD_MAX ((size_t)1 << 20) /* bytes of rows held before writing */

typedef struct {
    size_t off, len;   /* the row's rendered cells in mdtable_t.rows */
    unsigned cells;
} mdtable_row_t;

typedef struct {
    textout_t *out;
    buf_t rows;                 /* rendered rows: "| a | b " per row */
    mdtable_row_t *row;         /* held rows */
    size_t n_rows, cap_rows;
    bool in_row, in_cell;
    unsigned cells;             /* cells of the current row (incl. padding) */
    unsigned width;             /* widest row so far (<= MDTABLE_COLS_MAX) */
    size_t cell_start;          /* where the current cell's text starts */
    size_t cell_len;            /* its text bytes so far */
    bool cell_cut;              /* "…" written */
    bool pending_space;
    unsigned colspan;           /* of the current cell */
    unsigned rowspan;
    size_t row_index;           /* rows started */
    size_t cover[MDTABLE_COLS_MAX];   /* column covered by a rowspan until row */
    bool flushed;               /* rows are streaming (width fixed) */
    size_t rows_total;          /* rows written or held */
    unsigned long long cut_cells;   /* cells left out past the width */
    int err;
} mdtable_t;

/* Start a table that will be written to out. Caller-owned struct. */
void mdtable_init(mdtable_t *t, textout_t *out);

/* Free what it holds (without writing). Accepts NULL. */
void mdtable_cleanup(mdtable_t *t);

/* Start a row (ends the previous one). Returns 0 or an EXTRACT_* code
 * (sticky, also the sink's). */
int mdtable_row(mdtable_t *t);

/* Start a cell in the current row (starting a row if none is open) that
 * spans colspan columns and rowspan rows (values below 1 count as 1). */
int mdtable_cell(mdtable_t *t, unsigned colspan, unsigned rowspan);

/* Change the current cell's spans (docx says w:gridSpan inside the cell). */
void mdtable_span(mdtable_t *t, unsigned colspan, unsigned rowspan);

/* Append n bytes of UTF-8 text to the current cell (ignored outside a
 * cell). Whitespace collapses; '|' is escaped; the cell is cut past
 * MDTABLE_CELL_MAX. */
int mdtable_put(mdtable_t *t, const char *s, size_t n);

/* A word break in the current cell (a line or paragraph break, a cell of
 * a nested table). */
void mdtable_space(mdtable_t *t);

/* True inside a cell. */
bool mdtable_in_cell(const mdtable_t *t);

/* Number of rows so far (written or held). */
size_t mdtable_rows(const mdtable_t *t);

/* End the table: write what is held and the note on cut cells, then a
 * blank line. The struct is left empty, ready for another table. Returns 0
 * or an EXTRACT_* code. */
int mdtable_end(mdtable_t *t);

#endif
