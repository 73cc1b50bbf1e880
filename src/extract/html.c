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
#include "extract/mdtable.h"
#include "extract/text.h"
#include "extract/xmlquiet.h"

enum {
    EL_SKIP = 1,    /* do not descend */
    EL_BLOCK = 2,   /* starts and ends a line */
    EL_BR = 4,      /* a line break */
    EL_ROW = 8,     /* table row: cells counted, a line */
    EL_CELL = 16,   /* table cell: tab before all but the first */
    EL_PRE = 32,    /* whitespace kept */
    EL_TABLE = 64,  /* a table: a Markdown table (mdtable.h) */
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
    { "summary", EL_BLOCK },   { "svg", EL_SKIP },         { "table", EL_BLOCK | EL_TABLE },
    { "tbody", EL_BLOCK },     { "td", EL_CELL },          { "template", EL_SKIP },
    { "textarea", EL_BLOCK | EL_PRE },                     { "tfoot", EL_BLOCK },
    { "th", EL_CELL },         { "thead", EL_BLOCK },      { "title", EL_SKIP },
    { "tr", EL_ROW },          { "ul", EL_BLOCK },         { "video", EL_SKIP },
    { "xmp", EL_BLOCK | EL_PRE },
};

#define ROW_DEPTH_MAX 32
#define HEADING_DEPTH_MAX 8   /* open headings whose start is kept */
#define PAGE_LABEL_READ 1024  /* bytes of a page break's text read for its label */
#define HEADING_SCAN_MAX 64   /* nodes looked at for a heading ahead of an id */
#define TITLE_NODES_MAX 4096  /* nodes of a heading read for its title */

typedef struct {
    textout_t *out;
    bool pending_space;   /* collapsed whitespace not yet written */
    int pre_depth;
    int row_depth;        /* nesting of open <tr> (capped) */
    int table_depth;      /* open <table>; the outermost one is tbl */
    mdtable_t tbl;
    unsigned cells[ROW_DEPTH_MAX + 1];
    int heading_depth;    /* open h1-h6 (not capped) */
    size_t heading_start[HEADING_DEPTH_MAX];   /* where the first ones started */
    /* Hooks only. */
    const html_hooks_t *hooks;   /* NULL: none */
    const xmlNode *root;
    const xmlNode *heading_node[HEADING_DEPTH_MAX];   /* the open h1-h6 */
    bool started;                /* hooks->start was called */
    const xmlNode *eager;        /* h1-h6 to record on entering (after a hook's) */
    unsigned recorded;           /* bit d: open heading d already recorded */
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

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* Inside a cell of the outermost table: text goes to the table. */
static bool in_cell(const walk_t *w)
{
    return w->table_depth > 0 && mdtable_in_cell(&w->tbl);
}

static int put_text(walk_t *w, const char *s)
{
    if (in_cell(w))
        return mdtable_put(&w->tbl, s, strlen(s)) ? w->tbl.err : textout_error(w->out);
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
    if (in_cell(w)) {
        mdtable_space(&w->tbl);
        return;
    }
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
    if (w->hooks && w->hooks->page_break)
        w->hooks->page_break(w->hooks->ctx, w->out, (const char *)label);
    else
        textout_page(w->out, textout_last_page(w->out) + 1, (const char *)label);
    xmlFree(label);
}

static bool is_page_break(const xmlNode *n)
{
    return n->properties &&
           (attr_has_word(n, "epub:type", "pagebreak") || attr_has_word(n, "role", "doc-pagebreak"));
}

/* ---- hooks ---------------------------------------------------------------- */

/* The title of heading h into buf (HTML_TITLE_READ + 1 bytes): its text as
 * the walk writes it (skipped elements left out, a space for each line or
 * cell break), cut at a character boundary; blanks are left to the sink. */
static const char *heading_title(const xmlNode *h, char *buf)
{
    size_t o = 0;
    int nodes = 0;
    const xmlNode *c = h->children;
    while (c && o < HTML_TITLE_READ && nodes++ < TITLE_NODES_MAX) {
        bool down = false;
        if (c->type == XML_ELEMENT_NODE) {
            unsigned f = element_flags(c);
            if (!(f & EL_SKIP)) {
                if (f & (EL_BLOCK | EL_ROW | EL_BR | EL_CELL))
                    buf[o++] = ' ';
                down = c->children != NULL;
            }
        } else if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) &&
                   c->content) {
            const char *t = (const char *)c->content;
            size_t k = strnlen(t, HTML_TITLE_READ - o);
            if (t[k] != '\0') {   /* cut: not inside a character */
                while (k > 0 && ((unsigned char)t[k] & 0xC0) == 0x80)
                    k--;
                memcpy(buf + o, t, k);
                o += k;
                break;
            }
            memcpy(buf + o, t, k);
            o += k;
        }
        if (down) {
            c = c->children;
            continue;
        }
        while (c != h && !c->next)
            c = c->parent;
        if (c == h)
            break;
        c = c->next;
    }
    buf[o] = '\0';
    return buf;
}

static bool is_blank_text(const char *s)
{
    while (*s && is_space((unsigned char)*s))
        s++;
    return *s == '\0';
}

/* The h1-h6 element whose text starts where the walk is, on entering n:
 * n itself; the innermost open heading when nothing of it is written yet;
 * else the first heading ahead (in n, then after it) before any text,
 * looking at HEADING_SCAN_MAX nodes at most. NULL when there is none. */
static const xmlNode *heading_here(const walk_t *w, const xmlNode *n)
{
    if (EL_LEVEL(element_flags(n)))
        return n;
    int d = w->heading_depth - 1;
    if (d >= 0)
        return d < HEADING_DEPTH_MAX && textout_len(w->out) == w->heading_start[d]
                   ? w->heading_node[d] : NULL;
    const xmlNode *c = n;
    bool down = n->children != NULL;
    for (int i = 0; i < HEADING_SCAN_MAX; i++) {
        if (down) {
            c = c->children;
        } else {
            while (c != w->root && !c->next)
                c = c->parent;
            if (c == w->root)
                return NULL;
            c = c->next;
        }
        down = false;
        if (c->type == XML_ELEMENT_NODE) {
            unsigned f = element_flags(c);
            if (EL_LEVEL(f))
                return c;
            down = !(f & EL_SKIP) && c->children != NULL;
        } else if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) &&
                   c->content && !is_blank_text((const char *)c->content)) {
            return NULL;
        }
    }
    return NULL;
}

/* Record heading h's own mark now, at the end of the text, as open
 * heading d (its mark is then not recorded again on leaving it). */
static void record_heading(walk_t *w, const xmlNode *h, int d)
{
    char title[HTML_TITLE_READ + 1];
    heading_title(h, title);
    textout_heading(w->out, EL_LEVEL(element_flags(h)), title, strlen(title));
    if (d >= 0 && d < HEADING_DEPTH_MAX)
        w->recorded |= 1u << d;
}

/* After a hook given heading h: when it recorded a heading, h's own mark
 * must follow it at once (h open, nothing of it written) or on entering h,
 * or textout_heading_at() would take h for a heading holding the hook's. */
static void after_hook(walk_t *w, const xmlNode *h, size_t marks_before)
{
    size_t n = textout_mark_count(w->out);
    if (!h || n <= marks_before)
        return;
    extract_mark_t m;
    textout_mark_get(w->out, n - 1, &m);
    if (m.kind != EXTRACT_MARK_HEADING)
        return;
    int d = w->heading_depth - 1;
    if (d >= 0 && d < HEADING_DEPTH_MAX && w->heading_node[d] == h)
        record_heading(w, h, d);
    else
        w->eager = h;
}

/* The page's first text or heading (h, or NULL for text) comes next. */
static void start_hook(walk_t *w, const xmlNode *h)
{
    w->started = true;
    if (!w->hooks->start)
        return;
    char title[HTML_TITLE_READ + 1];
    size_t before = textout_mark_count(w->out);
    w->hooks->start(w->hooks->ctx, w->out, h ? heading_title(h, title) : NULL);
    after_hook(w, h, before);
}

/* The hooks for entering element n: its id, then the start of the page
 * when n is its first heading. */
static void enter_hooks(walk_t *w, const xmlNode *n, unsigned f)
{
    if (w->hooks->id) {
        const xmlAttr *a = n->properties;
        while (a && !(a->name && strcmp((const char *)a->name, "id") == 0))
            a = a->next;   /* most elements have none: look before allocating */
        xmlChar *id = a ? xmlGetProp(n, BAD_CAST "id") : NULL;
        if (id && *id) {
            const xmlNode *h = heading_here(w, n);
            char title[HTML_TITLE_READ + 1];
            size_t before = textout_mark_count(w->out);
            w->hooks->id(w->hooks->ctx, w->out, (const char *)id,
                         h ? heading_title(h, title) : NULL);
            after_hook(w, h, before);
        }
        xmlFree(id);
    }
    if (!w->started && EL_LEVEL(f))
        start_hook(w, n);
}

/* ---- the walk ------------------------------------------------------------- */

/* A span attribute (colspan, rowspan) of n: 1 when absent or not a
 * number, at most MDTABLE_SPAN_MAX. */
static unsigned span_attr(const xmlNode *n, const char *name)
{
    xmlChar *v = n->properties ? xmlGetProp(n, BAD_CAST name) : NULL;
    long k = v ? strtol((const char *)v, NULL, 10) : 1;
    xmlFree(v);
    return k < 1 ? 1 : k > MDTABLE_SPAN_MAX ? MDTABLE_SPAN_MAX : (unsigned)k;
}

/* A row or cell inside a table: of the outermost table, a row or cell of
 * the Markdown table; of a nested one, a word break in the outer cell. */
static void table_enter(walk_t *w, const xmlNode *n, unsigned f)
{
    if (w->table_depth > 1)
        mdtable_space(&w->tbl);
    else if (f & EL_ROW)
        mdtable_row(&w->tbl);
    else
        mdtable_cell(&w->tbl, span_attr(n, "colspan"), span_attr(n, "rowspan"));
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
    if (w->hooks)
        enter_hooks(w, n, f);
    if (EL_LEVEL(f)) {
        int d = w->heading_depth++;
        if (d < HEADING_DEPTH_MAX) {
            w->heading_start[d] = textout_len(w->out);
            w->heading_node[d] = n;
            w->recorded &= ~(1u << d);
        }
        if (n == w->eager) {
            w->eager = NULL;
            record_heading(w, n, d);
        }
    }
    if (f & EL_BR) {
        w->pending_space = false;
        if (in_cell(w))
            mdtable_space(&w->tbl);
        else
            textout_putc(w->out, '\n');
    }
    if (f & EL_TABLE)
        w->table_depth++;
    if ((f & (EL_ROW | EL_CELL)) && w->table_depth > 0) {
        table_enter(w, n, f);
    } else if (f & EL_ROW) {
        if (w->row_depth < ROW_DEPTH_MAX)
            w->row_depth++;
        w->cells[w->row_depth] = 0;
    }
    else if (f & EL_CELL) {
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
        int d = --w->heading_depth;
        if (d < HEADING_DEPTH_MAX && (w->recorded & (1u << d)))
            w->recorded &= ~(1u << d);
        else if (d < HEADING_DEPTH_MAX)
            textout_heading_at(w->out, w->heading_start[d], EL_LEVEL(f), NULL, 0);
    }
    if (f & EL_PRE)
        w->pre_depth--;
    if (f & EL_ROW && w->row_depth > 0 && w->table_depth == 0)
        w->row_depth--;
    if (f & EL_TABLE && w->table_depth > 0 && --w->table_depth == 0)
        mdtable_end(&w->tbl);
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
            if (w->hooks && !w->started && !is_blank_text((const char *)n->content))
                start_hook(w, NULL);
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
    return html_extract_hooked(data, len, out, NULL);
}

int html_extract_hooked(const unsigned char *data, size_t len, textout_t *out,
                        const html_hooks_t *hooks)
{
    const int opts = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                     HTML_PARSE_NONET | HTML_PARSE_COMPACT | XML_PARSE_HUGE;
    if (len > (size_t)INT32_MAX)
        return EXTRACT_ETOOBIG;
    xml_quiet_init();
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
    xmlNode *root = xmlDocGetRootElement(doc);
    walk_t w = { .out = out, .hooks = hooks, .root = root };
    mdtable_init(&w.tbl, out);
    int rc = 0;
    if (root)
        rc = walk(&w, root);
    if (!rc && w.table_depth > 0)   /* the root was inside a table */
        rc = mdtable_end(&w.tbl);
    if (!rc)
        rc = w.tbl.err;
    mdtable_cleanup(&w.tbl);
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
