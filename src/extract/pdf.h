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
 * EXTRACT_EENCRYPTED (one with only an owner password opens normally); one
 * whose pages have no text at all (a scan) gives EXTRACT_ENOTEXT through
 * the sink. Pages that fail to load are skipped; if all fail the file is
 * EXTRACT_ECORRUPT. MuPDF's warnings and errors are silenced.
 */
#ifndef KVCHAT_EXTRACT_PDF_H
#define KVCHAT_EXTRACT_PDF_H

#include "extract/textout.h"

/* Returns 0 or an EXTRACT_* code; the text is in out. */
int pdf_extract(int fd, textout_t *out);

#endif
