/* html.h — the html backend, also used by the epub backend for XHTML.
 *
 * libxml2's HTML parser in recover mode (HTML_PARSE_RECOVER, NOERROR,
 * NOWARNING, NONET) with XML_PARSE_HUGE, without which it silently stops
 * at nesting depth 256. Encoding: a page whose first 4 KiB name a charset
 * in a <meta> tag is left to libxml2; any other page is decoded by
 * text_decode() (BOM, UTF-8, else Latin-1) and parsed as "UTF-8" given
 * explicitly, since libxml2 would otherwise read it as Latin-1.
 * Text: script, style, head, template, noscript, svg and embedded objects
 * are skipped; block elements end lines; <br> breaks a line; a table is a
 * Markdown table (mdtable.h: the first row is the header, colspan and
 * rowspan leave the cells they cover empty, a nested table's text is
 * flattened into its cell, a table of one column is lines of text); whitespace collapses except in
 * <pre>. The tree is walked without recursion (any depth).
 * Structure: h1-h6 are heading marks, titled with their text as extracted
 * (a heading holding another heading is not one itself); a print page
 * break (an element with epub:type "pagebreak" or role "doc-pagebreak", as
 * EPUB books mark the pages of their printed edition) is a page mark,
 * numbered on from the sink's last page, labelled with its title or
 * aria-label attribute, else its text.
 * Hooks (html_extract_hooked): a caller that places marks of its own in
 * the page (the epub backend: the book's table of contents and page list)
 * learns where the walk is: where the text starts, where each element with
 * an id starts, and each page break. The hooks record marks, never text,
 * so the text is the same with or without them.
 */
#ifndef KVCHAT_EXTRACT_HTML_H
#define KVCHAT_EXTRACT_HTML_H

#include <stddef.h>

#include "extract/textout.h"

/* The html backend: reads all of fd. Returns 0 or an EXTRACT_* code. */
int html_extract(int fd, textout_t *out);

/* Extract the page in data[0..len) (not modified, stays the caller's). */
int html_extract_memory(const unsigned char *data, size_t len, textout_t *out);

/* Longest heading title handed to a hook, in bytes (not normalised: the
 * sink cuts it to EXTRACT_MARK_LABEL_MAX once blanks are collapsed). */
#define HTML_TITLE_READ (4 * EXTRACT_MARK_LABEL_MAX)

/* Callbacks into the walk of one page; any of them may be NULL. Each may
 * record marks at the end of `out` (textout_page, textout_heading) and
 * must not write text. Strings passed are valid during the call only.
 * `heading`, where given, is the title of the h1-h6 element whose text
 * starts where the walk is (its text, at most HTML_TITLE_READ bytes), or
 * NULL when text (or nothing) comes first. When a hook records a heading
 * while `heading` is not NULL, that element's own heading mark follows it
 * at the same offset, instead of being taken for one nested in it. */
typedef struct {
    void *ctx;
    /* Once per page, right before its first text or its first h1-h6
     * element, whichever comes first; never for a page with neither. */
    void (*start)(void *ctx, textout_t *out, const char *heading);
    /* On entering each element with an id attribute (`id`, its value),
     * where its text will start: after the line break a block element
     * begins with and after the page break the element may be. */
    void (*id)(void *ctx, textout_t *out, const char *id, const char *heading);
    /* A print page break, with its label (NULL when none): called instead
     * of recording its page mark, which is then the callback's to record. */
    void (*page_break)(void *ctx, textout_t *out, const char *label);
} html_hooks_t;

/* html_extract_memory() with hooks (NULL: none, the same as it). */
int html_extract_hooked(const unsigned char *data, size_t len, textout_t *out,
                        const html_hooks_t *hooks);

#endif
