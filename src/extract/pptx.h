/* pptx.h — the pptx backend (Office Open XML presentations).
 *
 * Slides in presentation order: ppt/presentation.xml's p:sldIdLst, each
 * entry resolved through ppt/_rels/presentation.xml.rels. Each slide's XML
 * is streamed (xmlReader) and written as:
 *   a page mark (the slide's number, 1-based, no label) at its start;
 *   the text of each shape (p:sp: its a:p paragraphs as lines, a:br a line
 *   break) in the order the slide lists them, one paragraph per shape;
 *   the shape that is the title placeholder (p:ph type "title" or
 *   "ctrTitle") a level-1 heading mark;
 *   tables (a:tbl) as Markdown tables (mdtable.h; gridSpan/rowSpan merged
 *   cells and their hMerge/vMerge copies empty);
 *   the speaker notes (the slide's notesSlide relationship, its body
 *   placeholder) after "Notes: ".
 * Date, footer, slide-number and header placeholders are left out. At most
 * PPTX_SLIDES_MAX slides; missing slide parts are skipped.
 */
#ifndef KVCHAT_EXTRACT_PPTX_H
#define KVCHAT_EXTRACT_PPTX_H

#include "extract/textout.h"

#define PPTX_SLIDES_MAX 10000

/* Returns 0 or an EXTRACT_* code; the text is in out. */
int pptx_extract(int fd, textout_t *out);

#endif
