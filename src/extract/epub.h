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
 * Structure: headings are the chapters' own h1-h6 (through html.c) and
 * the entries of the book's table of contents: the EPUB 3 nav document's
 * <nav epub:type="toc">, else the EPUB 2 NCX's navMap, its nesting giving
 * the level. An entry heads the place it points at: a chapter's start (no
 * fragment, or an id before any of its text) or the element with that id
 * inside it; not where the text's own heading of the same title (but for
 * case, blanks and punctuation) starts there, which stays as it is. Pages
 * are the print edition's, from two sources: the page list (nav
 * epub:type="page-list", else the NCX's pageList), a page at each target
 * labelled by the list, and the page breaks marked in the text (epub:type
 * "pagebreak", role "doc-pagebreak"); a page both mark at one place is
 * marked once. Pages are numbered through the book in reading order. A
 * reflowable book has no pages of its own, so a book with neither a page
 * list nor page breaks has no page marks, by design. Navigation is
 * optional: when it is missing, malformed or over its bounds (epub.c) the
 * text comes out the same, with the chapters' own structure only.
 */
#ifndef KVCHAT_EXTRACT_EPUB_H
#define KVCHAT_EXTRACT_EPUB_H

#include "extract/textout.h"

/* Returns 0 or an EXTRACT_* code; the text is in out. */
int epub_extract(int fd, textout_t *out);

#endif
