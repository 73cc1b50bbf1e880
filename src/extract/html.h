/* html.h — the html backend, also used by the epub backend for XHTML.
 *
 * libxml2's HTML parser in recover mode (HTML_PARSE_RECOVER, NOERROR,
 * NOWARNING, NONET) with XML_PARSE_HUGE, without which it silently stops
 * at nesting depth 256. Encoding: a page whose first 4 KiB name a charset
 * in a <meta> tag is left to libxml2; any other page is decoded by
 * text_decode() (BOM, UTF-8, else Latin-1) and parsed as "UTF-8" given
 * explicitly, since libxml2 would otherwise read it as Latin-1.
 * Text: script, style, head, template, noscript, svg and embedded objects
 * are skipped; block elements end lines; <br> breaks a line; table cells
 * are separated by tabs, rows by lines; whitespace collapses except in
 * <pre>. The tree is walked without recursion (any depth).
 * Structure: h1-h6 are heading marks, titled with their text as extracted
 * (a heading holding another heading is not one itself); a print page
 * break (an element with epub:type "pagebreak" or role "doc-pagebreak", as
 * EPUB books mark the pages of their printed edition) is a page mark,
 * numbered on from the sink's last page, labelled with its title or
 * aria-label attribute, else its text.
 */
#ifndef KVCHAT_EXTRACT_HTML_H
#define KVCHAT_EXTRACT_HTML_H

#include <stddef.h>

#include "extract/textout.h"

/* The html backend: reads all of fd. Returns 0 or an EXTRACT_* code. */
int html_extract(int fd, textout_t *out);

/* Extract the page in data[0..len) (not modified, stays the caller's). */
int html_extract_memory(const unsigned char *data, size_t len, textout_t *out);

#endif
