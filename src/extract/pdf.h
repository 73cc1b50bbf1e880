/* pdf.h — the pdf backend; the only module that includes MuPDF.
 *
 * MuPDF (AGPL) is linked into kvchat-extract alone; kvchat itself reaches
 * it only through a process boundary.
 * Text comes from MuPDF's structured text, in its reading order, ligatures
 * expanded. Each text line becomes a line; a line ending in a hyphen after
 * a letter is joined to the next line when that one starts with a
 * lower-case letter ("exam-" + "ple" -> "example", but "Nord-" + "Amerika"
 * keeps both); a soft hyphen at a line end always joins. Pages are
 * separated by a blank line. A PDF that needs a password to open gives
 * EXTRACT_EENCRYPTED (one with only an owner password opens normally).
 * The page tree is checked before any page is loaded (pdf.c says why): a
 * page count that is not positive or not smaller than the number of
 * objects, or a tree that takes more visits than it has objects, is
 * EXTRACT_ECORRUPT at once. Pages that fail to load are skipped; if all
 * fail the file is EXTRACT_ECORRUPT. An intact file whose pages have no
 * text at all (a scan) gives EXTRACT_ENOTEXT through the sink; without
 * text, a file MuPDF had to repair (truncated, broken xref), with pages
 * that failed to load, or whose tree holds fewer or more pages than it
 * counts is EXTRACT_ECORRUPT. MuPDF's warnings and errors are silenced.
 *
 * Structure: every page gets a page mark where its text starts (an empty
 * or unreadable page too, at the same offset as the next), numbered from
 * 1, labelled as the document's /PageLabels say (decimal, roman, letters,
 * with prefix and start; "" where none apply). The outline (bookmarks)
 * gives heading marks: each entry whose destination resolves to a page
 * (an explicit destination, a named one, or a GoTo action) is a heading at
 * the start of that page, its level the entry's depth (capped at 6), in
 * outline order within the page. Both are read within budgets (pdf.c), so
 * a hostile label tree or outline (cycles, depth, width) costs little.
 */
#ifndef KVCHAT_EXTRACT_PDF_H
#define KVCHAT_EXTRACT_PDF_H

#include "extract/ocr.h"
#include "extract/textout.h"

/* Returns 0 or an EXTRACT_* code; the text is in out. No OCR. */
int pdf_extract(int fd, textout_t *out);

/* As pdf_extract(), with OCR (ocr.h) of the pages that have no text layer
 * (no character but blanks): they are found in a first pass, announced
 * with ocr_begin(), rendered in grayscale at OCR_DPI (lower for a page
 * that would pass OCR_MAX_PIXELS) and recognised in their place, after
 * their page mark, in page order; pages with text are read as usual. A
 * page OCR finds nothing on stays empty; a PDF with no text from either
 * is EXTRACT_ENOTEXT as before. More than EXTRACT_OCR_PAGES_MAX pages to
 * recognise, or the document's OCR time used up, is EXTRACT_EOCRTIME; a
 * language that cannot be loaded EXTRACT_EINTERNAL. ocr NULL or disabled:
 * exactly pdf_extract(). */
int pdf_extract_ocr(int fd, textout_t *out, ocr_t *ocr);

#endif
