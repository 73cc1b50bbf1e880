/* odf.h — the odt backend (OpenDocument text).
 *
 * First META-INF/manifest.xml: when content.xml carries
 * <manifest:encryption-data>, the document is password-protected
 * (EXTRACT_EENCRYPTED). Then content.xml is streamed through libxml2's
 * xmlReader (zipread.h guards apply). Inside office:body: text:p and
 * text:h are lines; lists are lines per item; text:span is inline;
 * text:s is text:c spaces; text:tab a tab; text:line-break a line break;
 * whitespace in the XML collapses as ODF specifies (leading whitespace of
 * a paragraph dropped); table rows are lines with tab-separated cells.
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

#endif
