/* csv.h — the csv backend (comma-, semicolon-, tab- or pipe-separated
 * values), and the sniffing detect.c uses to tell a csv file from prose.
 *
 * Encoding: text_decode() (text.h: BOM, UTF-8, UTF-16 by BOM, else
 * Latin-1/Windows-1252). Parsing follows RFC 4180, leniently: a field in
 * double quotes may hold the delimiter, line breaks and "" for a quote; a
 * quote inside an unquoted field is kept as it is; records end at LF,
 * CRLF or CR outside quotes; a quoted field left open at the end of the
 * file ends there. The delimiter is the candidate (, ; TAB |) whose count
 * per record, outside quotes, is the same non-zero number on the most of
 * the first CSV_SNIFF_RECORDS records (ties: the one with more fields;
 * none at all: TAB when the head holds one, else ',').
 * The file is one sheet written by sheet.h without a heading: a Markdown
 * table whose first record is the header, with sheet.h's cell limit and
 * note ("… N more rows not shown"); empty records are left out.
 */
#ifndef KVCHAT_EXTRACT_CSV_H
#define KVCHAT_EXTRACT_CSV_H

#include <stdbool.h>
#include <stddef.h>

#include "extract/textout.h"

#define CSV_SNIFF_RECORDS 20

/* Whether p[0..n) (the head of a text file, ASCII-compatible) reads as
 * delimited values without a hint from the name: at least 3 records, and
 * a delimiter that appears the same number of times (2 or more, outside
 * quotes) in every complete record among the first CSV_SNIFF_RECORDS,
 * and not a Markdown table (lines that start with '|'). Strict on
 * purpose: a one-comma-per-line text stays text. Sets *delim
 * when not NULL. */
bool csv_sniff(const char *p, size_t n, char *delim);

/* Returns 0 or an EXTRACT_* code; the text is in out. */
int csv_extract(int fd, textout_t *out);

#endif
