/* html.c — see html.h. */
#include "extract/html.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include "common/buf.h"
#include "extract/extract.h"
#include "extract/text.h"

enum {
    EL_SKIP = 1,    /* do not descend */
    EL_BLOCK = 2,   /* starts and ends a line */
    EL_BR = 4,      /* a line break */
    EL_ROW = 8,     /* table row: cells counted, a line */
    EL_CELL = 16,   /* table cell: tab before all but the first */
    EL_PRE = 32,    /* whitespace kept */
};

/* h1..h6 carry their level in bits 8..10. */
#define EL_H(n) ((unsigned)(n) << 8)
#define EL_LEVEL(f) ((int)(((f) >> 8) & 7))

typedef struct {
    const char *name;
    unsigned flags;
} element_t;

/* Sorted by name for bsearch. */
static const element_t elements[] = {
    { "address", EL_BLOCK },   { "applet", EL_SKIP },      { "article", EL_BLOCK },
    { "aside", EL_BLOCK },     { "audio", EL_SKIP },       { "blockquote", EL_BLOCK },
    { "body", EL_BLOCK },      { "br", EL_BR },            { "canvas", EL_SKIP },
    { "caption", EL_BLOCK },   { "center", EL_BLOCK },     { "dd", EL_BLOCK },
    { "details", EL_BLOCK },   { "dialog", EL_BLOCK },     { "div", EL_BLOCK },
    { "dl", EL_BLOCK },        { "dt", EL_BLOCK },         { "embed", EL_SKIP },
    { "fieldset", EL_BLOCK },  { "figcaption", EL_BLOCK }, { "figure", EL_BLOCK },
    { "footer", EL_BLOCK },    { "form", EL_BLOCK },       { "frameset", EL_SKIP },
    { "h1", EL_BLOCK | EL_H(1) }, { "h2", EL_BLOCK | EL_H(2) }, { "h3", EL_BLOCK | EL_H(3) },
    { "h4", EL_BLOCK | EL_H(4) }, { "h5", EL_BLOCK | EL_H(5) }, { "h6", EL_BLOCK | EL_H(6) },
    { "head", EL_SKIP },       { "header", EL_BLOCK },     { "hgroup", EL_BLOCK },
    { "hr", EL_BLOCK },        { "iframe", EL_SKIP },      { "legend", EL_BLOCK },
    { "li", EL_BLOCK },        { "listing", EL_BLOCK | EL_PRE },
    { "main", EL_BLOCK },      { "map", EL_SKIP },         { "nav", EL_BLOCK },
    { "noembed", EL_SKIP },    { "noframes", EL_SKIP },    { "noscript", EL_SKIP },
    { "object", EL_SKIP },     { "ol", EL_BLOCK },         { "option", EL_BLOCK },
    { "p", EL_BLOCK },         { "plaintext", EL_BLOCK | EL_PRE },
    { "pre", EL_BLOCK | EL_PRE },                          { "script", EL_SKIP },
    { "section", EL_BLOCK },   { "select", EL_BLOCK },     { "style", EL_SKIP },
    { "summary", EL_BLOCK },   { "svg", EL_SKIP },         { "table", EL_BLOCK },
    { "tbody", EL_BLOCK },     { "td", EL_CELL },          { "template", EL_SKIP },
    { "textarea", EL_BLOCK | EL_PRE },                     { "tfoot", EL_BLOCK },
    { "th", EL_CELL },         { "thead", EL_BLOCK },      { "title", EL_SKIP },
    { "tr", EL_ROW },          { "ul", EL_BLOCK },         { "video", EL_SKIP },
    { "xmp", EL_BLOCK | EL_PRE },
};

#define ROW_DEPTH_MAX 32
#define HEADING_DEPTH_MAX 8   /* open headings whose start is kept */
#define PAGE_LABEL_READ 1024  /* bytes of a page break's text read for its label */

typedef struct {
    textout_t *out;
    bool pending_space;   /* collapsed whitespace not yet written */
    int pre_depth;
    int row_depth;        /* nesting of open <tr> (capped) */
    unsigned cells[ROW_DEPTH_MAX + 1];
    int heading_depth;    /* open h1-h6 (not capped) */
    size_t heading_start[HEADING_DEPTH_MAX];   /* where the first ones started */
} walk_t;

static int element_cmp(const void *key, const void *el)
{
    return strcasecmp(key, ((const element_t *)el)->name);
}

static unsigned element_flags(const xmlNode *n)
{
    const element_t *e = bsearch(n->name, elements, sizeof elements / sizeof elements[0],
                                 sizeof elements[0], element_cmp);
    return e ? e->flags : 0;
}

static void silent(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

static void silent_structured(void *ctx, xmlErrorPtr err)
{
    (void)ctx;
    (void)err;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static int put_text(walk_t *w, const char *s)
{
    if (w->pre_depth > 0)
        return textout_put_utf8(w->out, s, strlen(s));
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (is_space(*p)) {
            w->pending_space = true;
            p++;
            continue;
        }
        const unsigned char *q = p;
        while (*q && !is_space(*q))
            q++;
        if (w->pending_space && !textout_at_line_start(w->out))
            textout_putc(w->out, ' ');
        w->pending_space = false;
        if (textout_put_utf8(w->out, (const char *)p, (size_t)(q - p)))
            break;
        p = q;
    }
    return textout_error(w->out);
}

static void line_break(walk_t *w)
{
    w->pending_space = false;
    textout_newline(w->out);
}

/* Whether attribute `name` of n, split at blanks, holds the word `word`. */
static bool attr_has_word(const xmlNode *n, const char *name, const char *word)
{
    xmlChar *v = xmlGetProp(n, BAD_CAST name);
    if (!v)
        return false;
    bool found = false;
    size_t wl = strlen(word);
    for (const char *p = (const char *)v; *p && !found;) {
        while (is_space((unsigned char)*p))
            p++;
        const char *q = p;
        while (*q && !is_space((unsigned char)*q))
            q++;
        found = (size_t)(q - p) == wl && strncasecmp(p, word, wl) == 0;
        p = q;
    }
    xmlFree(v);
    return found;
}

/* A print page break starts here: a page mark numbered on from the last,
 * labelled by its title or aria-label, else its first text. */
static void page_break(walk_t *w, const xmlNode *n)
{
    xmlChar *label = xmlGetProp(n, BAD_CAST "title");
    if (!label || !*label) {
        xmlFree(label);
        label = xmlGetProp(n, BAD_CAST "aria-label");
    }
    if ((!label || !*label) && n->children && n->children->type == XML_TEXT_NODE &&
        n->children->content) {
        xmlFree(label);
        /* xmlStrndup copies all len bytes: measure first. */
        const char *text = (const char *)n->children->content;
        label = xmlStrndup(n->children->content, (int)strnlen(text, PAGE_LABEL_READ));
    }
    textout_page(w->out, textout_last_page(w->out) + 1, (const char *)label);
    xmlFree(label);
}

static bool is_page_break(const xmlNode *n)
{
    return n->properties &&
           (attr_has_word(n, "epub:type", "pagebreak") || attr_has_word(n, "role", "doc-pagebreak"));
}

/* Entering an element; returns whether to descend into it. */
static bool enter(walk_t *w, const xmlNode *n, unsigned f)
{
    if (f & EL_SKIP)
        return false;
    if (f & (EL_BLOCK | EL_ROW))
        line_break(w);
    if (is_page_break(n))
        page_break(w, n);
    if (EL_LEVEL(f)) {
        if (w->heading_depth < HEADING_DEPTH_MAX)
            w->heading_start[w->heading_depth] = textout_len(w->out);
        w->heading_depth++;
    }
    if (f & EL_BR) {
        w->pending_space = false;
        textout_putc(w->out, '\n');
    }
    if (f & EL_ROW) {
        if (w->row_depth < ROW_DEPTH_MAX)
            w->row_depth++;
        w->cells[w->row_depth] = 0;
    }
    if (f & EL_CELL) {
        if (w->cells[w->row_depth]++ > 0) {
            w->pending_space = false;
            textout_putc(w->out, '\t');
        }
    }
    if (f & EL_PRE)
        w->pre_depth++;
    return n->children != NULL;
}

static void leave(walk_t *w, unsigned f)
{
    if (EL_LEVEL(f) && w->heading_depth > 0) {
        w->heading_depth--;
        if (w->heading_depth < HEADING_DEPTH_MAX)
            textout_heading_at(w->out, w->heading_start[w->heading_depth], EL_LEVEL(f), NULL, 0);
    }
    if (f & EL_PRE)
        w->pre_depth--;
    if (f & EL_ROW && w->row_depth > 0)
        w->row_depth--;
    if (f & (EL_BLOCK | EL_ROW))
        line_break(w);
}

/* Depth-first over the tree with parent links instead of recursion, so a
 * page nested 100,000 deep costs no stack. */
static int walk(walk_t *w, xmlNode *root)
{
    xmlNode *n = root;
    while (!textout_error(w->out)) {
        bool descend = false;
        if (n->type == XML_ELEMENT_NODE) {
            unsigned f = element_flags(n);
            descend = enter(w, n, f);
            if (!descend && !(f & EL_SKIP))
                leave(w, f);
        } else if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) &&
                   n->content) {
            put_text(w, (const char *)n->content);
        }
        if (descend) {
            n = n->children;
            continue;
        }
        /* Climb out of finished elements until one has a next sibling. */
        while (n != root && !n->next) {
            n = n->parent;
            leave(w, element_flags(n));
        }
        if (n == root)
            break;
        n = n->next;
    }
    return textout_error(w->out);
}

/* True when a <meta> tag in the first 4 KiB names a charset. */
static bool names_charset(const unsigned char *p, size_t n)
{
    const char *s = (const char *)p;
    if (n > 4096)
        n = 4096;
    for (size_t i = 0; i + 5 <= n; i++) {
        if (strncasecmp(s + i, "<meta", 5) != 0)
            continue;
        size_t end = i + 5;
        while (end < n && s[end] != '>')
            end++;
        for (size_t j = i + 5; j + 7 <= end; j++) {
            if (strncasecmp(s + j, "charset", 7) != 0)
                continue;
            size_t k = j + 7;
            while (k < end && (s[k] == ' ' || s[k] == '\t'))
                k++;
            if (k < end && s[k] == '=')
                return true;
        }
    }
    return false;
}

static bool has_bom(const unsigned char *p, size_t n)
{
    return (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) ||
           (n >= 2 && ((p[0] == 0xFF && p[1] == 0xFE) || (p[0] == 0xFE && p[1] == 0xFF)));
}

int html_extract_memory(const unsigned char *data, size_t len, textout_t *out)
{
    const int opts = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                     HTML_PARSE_NONET | HTML_PARSE_COMPACT | XML_PARSE_HUGE;
    if (len > (size_t)INT32_MAX)
        return EXTRACT_ETOOBIG;
    xmlInitParser();
    xmlSetGenericErrorFunc(NULL, silent);
    xmlSetStructuredErrorFunc(NULL, silent_structured);
    xmlResetLastError();

    htmlDocPtr doc;
    buf_t utf8;
    buf_init(&utf8, len * 3 + 16);
    if (!has_bom(data, len) && names_charset(data, len)) {
        doc = htmlReadMemory((const char *)data, (int)len, NULL, NULL, opts);
    } else {
        int rc = text_to_utf8(data, len, &utf8);
        if (rc) {
            buf_cleanup(&utf8);
            return rc;
        }
        if (utf8.len > (size_t)INT32_MAX) {
            buf_cleanup(&utf8);
            return EXTRACT_ETOOBIG;
        }
        doc = htmlReadMemory(utf8.data ? utf8.data : "", (int)utf8.len, NULL, "UTF-8",
                             opts | HTML_PARSE_IGNORE_ENC);
    }
    buf_cleanup(&utf8);
    if (!doc) {
        const xmlError *e = xmlGetLastError();
        return (e && e->code == XML_ERR_NO_MEMORY) ? EXTRACT_EMEMORY : EXTRACT_ECORRUPT;
    }
    walk_t w = { .out = out };
    int rc = 0;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (root)
        rc = walk(&w, root);
    xmlFreeDoc(doc);
    if (!rc) {
        const xmlError *e = xmlGetLastError();
        if (e && e->code == XML_ERR_NO_MEMORY)
            rc = EXTRACT_EMEMORY;
    }
    return rc;
}

int html_extract(int fd, textout_t *out)
{
    unsigned char *data;
    size_t len;
    int rc = text_read_fd(fd, text_input_limit(textout_max(out)), &data, &len);
    if (rc)
        return rc;
    rc = html_extract_memory(data, len, out);
    free(data);
    return rc;
}
