/* sheet.h — writing spreadsheets (xlsx, ods) as Markdown tables.
 *
 * The xlsx and ods backends stream their XML and hand each cell's text
 * (already formatted: shared string, inline string, number, boolean) to
 * this writer, which writes each sheet as a line with the sheet's name (a
 * heading mark, level 1) followed by the sheet as a Markdown table
 * (mdtable.h: the first row is the header).
 *
 * Sparse sheets: empty rows are left out, and empty cells at the end of a
 * row are dropped (a spreadsheet row "ends" at column 16,384); empty cells
 * between filled ones are kept, so columns stay aligned. A repeated cell
 * or row (ODF's number-columns-repeated / number-rows-repeated) costs no
 * more than its filled copies.
 *
 * Limits: the whole workbook shows at most `cells_max` filled cells
 * (sheet_cells_limit: SHEET_CELLS_MAX, lower for a small --max-output)
 * and rows only while the text stays under 7/8 of --max-output (so large
 * cells cannot make it fail as too big); once a sheet reaches either, its remaining rows are counted, not shown, and
 * a line after its table says "… N more rows not shown"; later sheets show
 * their name and the same kind of note. Reading a million-cell sheet thus
 * costs time linear in the file and memory bounded by the limits.
 */
#ifndef KVCHAT_EXTRACT_SHEET_H
#define KVCHAT_EXTRACT_SHEET_H

#include <stdbool.h>
#include <stddef.h>

#include "extract/mdtable.h"
#include "extract/textout.h"

#define SHEET_CELLS_MAX 200000   /* filled cells shown per workbook */
#define SHEET_NEXT ((unsigned long)-1)

typedef struct {
    unsigned col;
    size_t off, len;
} sheet_cell_t;

typedef struct {
    textout_t *out;
    mdtable_t tbl;
    sheet_cell_t cell[MDTABLE_COLS_MAX];   /* filled cells of the current row */
    unsigned n_cells;
    buf_t text;                 /* their text */
    unsigned long long cut_cells;   /* filled cells past MDTABLE_COLS_MAX */
    size_t cells_max, cells_shown;
    bool in_sheet;
    bool full;                  /* the limit was reached */
    unsigned long col;          /* next column of the current row (0-based) */
    unsigned long long hidden_rows;   /* filled rows not shown in this sheet */
} sheet_t;

/* Most filled cells shown for an output limit of max_output bytes. */
size_t sheet_cells_limit(size_t max_output);

/* Caller-owned struct, writing to out. */
void sheet_init(sheet_t *s, textout_t *out);

/* Frees what it holds. Accepts NULL. */
void sheet_cleanup(sheet_t *s);

/* A sheet called name[0..n) starts (ends the previous one); name NULL:
 * no heading (a csv file is one nameless sheet). */
int sheet_begin(sheet_t *s, const char *name, size_t n);

/* A row starts (ends the previous one, once). */
int sheet_row(sheet_t *s);

/* A cell of the current row at column `col` (0-based; SHEET_NEXT: right after
 * the previous one) holding text[0..n), repeated `repeat` times (>= 1). */
int sheet_cell(sheet_t *s, unsigned long col, const char *text, size_t n, unsigned long repeat);

/* The current row ends; `repeat` is how many times it occurs (>= 1). */
int sheet_row_end(sheet_t *s, unsigned long repeat);

/* The sheet ends: its table and its note are written. */
int sheet_end(sheet_t *s);

#endif
