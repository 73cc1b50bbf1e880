/* ooxml.h — the docx backend (Office Open XML word processing).
 *
 * Streams word/document.xml out of the zip (zipread.h guards) through
 * libxml2's xmlReader, so memory does not grow with the document. The body
 * text only: headers, footers, footnotes and comments live in other parts
 * and are not read. Each w:p is a line (an empty one a blank line); w:t is
 * text; w:tab and w:br inside a run are a tab and a line break; a table
 * (w:tbl) is a Markdown table (mdtable.h: the first row is the header;
 * paragraphs, breaks and tabs inside a cell become spaces; w:gridSpan
 * leaves the cells it covers empty, as vMerge continuation cells are; a
 * nested table's text is flattened into its cell). Content that Word keeps twice — mc:Fallback copies
 * of text boxes and w:moveFrom sources of moved text — is skipped; deleted
 * text (w:delText) and field codes (w:instrText) are never w:t. A document
 * type declaration is refused (OOXML has none; it could only be an attack).
 * A password-protected docx is not a zip at all: detect.c reports it.
 *
 * Structure: a body paragraph (not in a table) is a heading mark when its
 * outline level says so, titled with its text. The level comes from the
 * paragraph's own w:outlineLvl (0-8 are levels 1-9, counted as at most 6;
 * 9 is body text), else from its style (w:pStyle): the style's
 * w:outlineLvl, else its name ("heading N" is level N, "Title" level 1),
 * else the style it is based on (w:basedOn, at most STYLE_CHAIN_MAX
 * steps), all read from word/styles.xml; a style that file does not
 * describe (or no styles.xml) is a heading only by its ID, as Word's
 * built-in ones are named: "Heading1".."Heading9", "Title". styles.xml is
 * read up to STYLES_XML_MAX bytes and STYLES_MAX styles; past that, or when
 * it is missing or damaged, the styles read so far serve: the text never
 * fails because of it.
 */
#ifndef KVCHAT_EXTRACT_OOXML_H
#define KVCHAT_EXTRACT_OOXML_H

#include "extract/textout.h"

/* Returns 0 or an EXTRACT_* code; the text is in out. */
int ooxml_extract(int fd, textout_t *out);

#endif
