/* odf.h — the odt, ods and odp backends (OpenDocument text, spreadsheet,
 * presentation).
 *
 * First META-INF/manifest.xml: when content.xml carries
 * <manifest:encryption-data>, the document is password-protected
 * (EXTRACT_EENCRYPTED). Then content.xml is streamed through libxml2's
 * xmlReader (zipread.h guards apply). Inside office:body: text:p and
 * text:h are lines; lists are lines per item; text:span is inline;
 * text:s is text:c spaces; text:tab a tab; text:line-break a line break;
 * whitespace in the XML collapses as ODF specifies (leading whitespace of
 * a paragraph dropped); a table is a Markdown table (mdtable.h: first row
 * the header, covered-table-cell an empty cell, a nested table's text
 * flattened into its cell).
 * Tracked deletions (text:tracked-changes), annotations and notes are
 * skipped. A document type declaration is refused.
 * Structure: each text:h outside tables and paragraphs is a heading mark of
 * its text:outline-level (1 when absent or not a number), titled with its
 * text.
 */
#ifndef KVCHAT_EXTRACT_ODF_H
#define KVCHAT_EXTRACT_ODF_H

#include "extract/textout.h"

/* Returns 0 or an EXTRACT_* code; the text is in out. */
int odf_extract(int fd, textout_t *out);

/* ods: the same walk of content.xml; each table:table is a sheet written
 * by sheet.h (its table:name a level-1 heading, then a Markdown table;
 * number-columns-repeated and number-rows-repeated honoured, empty rows
 * and trailing empty cells left out, the cell limit of sheet.h). A cell's
 * text is its text:p (the value as displayed). */
int odf_extract_sheet(int fd, textout_t *out);

/* odp: each draw:page is a slide: a page mark numbered from 1 (no label),
 * the text of its frames in document order, one paragraph per frame, the
 * frame of presentation:class "title" a level-1 heading mark; its
 * presentation:notes after "Notes: ". Tables on slides are Markdown
 * tables. */
int odf_extract_slides(int fd, textout_t *out);

#endif
