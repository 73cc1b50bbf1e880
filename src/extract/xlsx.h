/* xlsx.h — the xlsx backend (Office Open XML spreadsheets).
 *
 * xl/workbook.xml lists the sheets in order (name, relationship id);
 * xl/_rels/workbook.xml.rels gives each sheet's part. xl/sharedStrings.xml
 * is read first (each string cut to what a cell shows, at most
 * XLSX_STRINGS_MAX strings and XLSX_STRINGS_BYTES bytes: past that the
 * workbook is EXTRACT_ETOOBIG). Each sheet's XML is then streamed through
 * libxml2's xmlReader (no DOM: memory does not grow with the sheet) and
 * written by sheet.h as a heading with the sheet's name and a Markdown
 * table. Cells: t="s" a shared string, t="inlineStr" its <is> text,
 * t="b" TRUE/FALSE, numbers, formula strings (t="str") and errors (t="e")
 * as stored in <v> (numbers unformatted), except numbers whose cell
 * format (xl/styles.xml) is a date or time: ISO dates (xlsx.c, "dates");
 * columns come from the cell reference (r="C7"), so gaps stay aligned.
 * Hidden sheets are read like the others. Chart sheets and sheets whose
 * part is missing are skipped. zipread.h guards every part.
 */
#ifndef KVCHAT_EXTRACT_XLSX_H
#define KVCHAT_EXTRACT_XLSX_H

#include "extract/textout.h"

#define XLSX_STRINGS_MAX 4000000
#define XLSX_STRINGS_BYTES ((size_t)64 << 20)
#define XLSX_SHEETS_MAX 1000

/* Returns 0 or an EXTRACT_* code; the text is in out. */
int xlsx_extract(int fd, textout_t *out);

#endif
