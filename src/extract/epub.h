/* epub.h — the epub backend.
 *
 * Reads the book with libzip (zipread.h guards) and libxml2, not MuPDF:
 * MuPDF would lay every chapter out into pages with fonts (slow on a long
 * book) and hand back visual lines that then have to be glued back into
 * paragraphs, while the XHTML itself already says where paragraphs are.
 * It also keeps the zip-bomb guards and the DRM check in our hands.
 *
 * Steps: META-INF/encryption.xml naming any algorithm other than the two
 * font-obfuscation ones means DRM (EXTRACT_EENCRYPTED); META-INF/
 * container.xml names the package document (OPF); the OPF's spine lists
 * the chapters in reading order, resolved through its manifest relative to
 * the OPF's folder; each (X)HTML chapter goes through html.c, with a blank
 * line between chapters. Missing chapters are skipped; a book with no
 * readable chapter is EXTRACT_ECORRUPT.
 * Structure comes from the chapters themselves, through html.c: their
 * h1-h6 are the headings, and the print page breaks they mark (epub:type
 * "pagebreak") are the pages, numbered through the book. A reflowable book
 * has no pages of its own, so one without page breaks has no page marks;
 * the table of contents (nav, NCX) is not read: it names the chapters
 * whose own headings are already marked.
 */
#ifndef KVCHAT_EXTRACT_EPUB_H
#define KVCHAT_EXTRACT_EPUB_H

#include "extract/textout.h"

/* Returns 0 or an EXTRACT_* code; the text is in out. */
int epub_extract(int fd, textout_t *out);

#endif
