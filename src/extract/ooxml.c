/* ooxml.c — see ooxml.h. */
#include "extract/ooxml.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/xmlerror.h>
#include <libxml/xmlreader.h>

#include "extract/codepoint.h"
#include "extract/extract.h"
#include "extract/mdtable.h"
#include "extract/zipread.h"
#include "extract/xmlquiet.h"

#define NS_W "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
#define NS_W_STRICT "http://purl.oclc.org/ooxml/wordprocessingml/main"
#define NS_MC "http://schemas.openxmlformats.org/markup-compatibility/2006"

#define STYLES_MAX 10000                   /* styles read from styles.xml */
#define STYLES_XML_MAX ((size_t)16 << 20)  /* bytes of styles.xml read */
#define STYLE_CHAIN_MAX 16                 /* w:basedOn steps followed */
#define OUTLINE_BODY 9                     /* w:outlineLvl of body text */

/* A paragraph style from styles.xml. level: its heading level 1..9, 0 for
 * none, -1 not yet resolved. */
typedef struct {
    char *id;
    char *based_on;
    int outline;      /* w:outlineLvl + 1, 0 if absent (OUTLINE_BODY + 1: body) */
    int name_level;   /* from its name, 0 if none */
    int level;
} style_t;

typedef struct {
    style_t *v;       /* sorted by id once read */
    size_t n, cap;
} styles_t;

typedef struct {
    textout_t *out;
    const styles_t *styles;
    int p_depth;           /* open w:p (text boxes nest them) */
    int ppr_depth;         /* open w:pPr (w:pPrChange nests an old one) */
    int p_level;           /* the outer paragraph's heading level, 0 if none */
    int p_direct;          /* its own w:outlineLvl + 1, 0 if none */
    size_t p_start;        /* where its text starts */
    bool in_text;          /* inside w:t */
    int run_depth;         /* open w:r elements */
    int tbl_depth;         /* open w:tbl elements; the outermost is tbl */
    int tc_depth;          /* open w:tc elements */
    mdtable_t tbl;
} docx_t;

static int read_entry(void *ctx, char *buf, int len)
{
    ssize_t k = zipread_entry_read(ctx, buf, len > 0 ? (size_t)len : 0);
    return k < 0 ? -1 : (int)k;
}

static bool is_w(const xmlChar *ns)
{
    return ns && (strcmp((const char *)ns, NS_W) == 0 ||
                  strcmp((const char *)ns, NS_W_STRICT) == 0);
}

/* The w:val attribute (either namespace) of the current element; caller
 * frees with xmlFree. */
static xmlChar *w_val(xmlTextReaderPtr r)
{
    xmlChar *v = xmlTextReaderGetAttributeNs(r, BAD_CAST "val", BAD_CAST NS_W);
    return v ? v : xmlTextReaderGetAttributeNs(r, BAD_CAST "val", BAD_CAST NS_W_STRICT);
}

/* w:outlineLvl's value + 1 (1..10), 0 when it is not a number 0..9. */
static int outline_value(const xmlChar *v)
{
    if (!v || v[0] < '0' || v[0] > '9' || v[1])
        return 0;
    return v[0] - '0' + 1;
}

/* ---- styles ------------------------------------------------------------------ */

static void styles_cleanup(styles_t *st)
{
    for (size_t i = 0; i < st->n; i++) {
        free(st->v[i].id);
        free(st->v[i].based_on);
    }
    free(st->v);
    st->v = NULL;
    st->n = st->cap = 0;
}

/* The level a style's name gives: "heading N" (any case) is N, "Title" 1. */
static int name_level(const char *name)
{
    if (strcasecmp(name, "title") == 0)
        return 1;
    if (strncasecmp(name, "heading", 7) != 0)
        return 0;
    const char *p = name + 7;
    while (*p == ' ')
        p++;
    return p[0] >= '1' && p[0] <= '9' && !p[1] ? p[0] - '0' : 0;
}

/* Built-in heading style IDs, for styles styles.xml does not describe. */
static int builtin_level(const char *id)
{
    if (strcasecmp(id, "Title") == 0)
        return 1;
    if (strncasecmp(id, "Heading", 7) == 0 && id[7] >= '1' && id[7] <= '9' && !id[8])
        return id[7] - '0';
    return 0;
}

static int style_cmp(const void *a, const void *b)
{
    return strcmp(((const style_t *)a)->id, ((const style_t *)b)->id);
}

static style_t *style_find(const styles_t *st, const char *id)
{
    if (!st->n || !id)
        return NULL;
    style_t key = { .id = (char *)id };
    return bsearch(&key, st->v, st->n, sizeof *st->v, style_cmp);
}

/* A style's heading level (0 for none) through its basedOn chain. */
static int style_level(const styles_t *st, style_t *s)
{
    style_t *chain[STYLE_CHAIN_MAX];
    int n = 0, level = 0;
    for (style_t *c = s; c && n < STYLE_CHAIN_MAX; c = style_find(st, c->based_on)) {
        if (c->level >= 0) {
            level = c->level;
            break;
        }
        chain[n++] = c;
        if (c->outline) {
            level = c->outline > OUTLINE_BODY ? 0 : c->outline;
            break;
        }
        if (c->name_level) {
            level = c->name_level;
            break;
        }
        if (!c->based_on)
            break;
    }
    for (int i = 0; i < n; i++)
        chain[i]->level = level;
    return level;
}

typedef struct {
    zipread_entry_t *e;
    size_t read;
} limited_t;

/* Read styles.xml only up to STYLES_XML_MAX bytes. */
static int read_limited(void *ctx, char *buf, int len)
{
    limited_t *l = ctx;
    if (l->read >= STYLES_XML_MAX)
        return -1;
    size_t n = len > 0 ? (size_t)len : 0;
    if (n > STYLES_XML_MAX - l->read)
        n = STYLES_XML_MAX - l->read;
    ssize_t k = zipread_entry_read(l->e, buf, n);
    if (k < 0)
        return -1;
    l->read += (size_t)k;
    return (int)k;
}

/* Collect the paragraph styles of word/styles.xml into st (sorted, levels
 * resolved). Whatever fails, st holds the styles read so far: structure
 * is optional. */
static void styles_read(zipread_t *z, styles_t *st)
{
    zipread_entry_t *e = NULL;
    if (!zipread_exists(z, "word/styles.xml") || zipread_entry_open(z, "word/styles.xml", &e))
        return;
    limited_t l = { .e = e };
    xmlTextReaderPtr r = xmlReaderForIO(read_limited, NULL, &l, NULL, NULL,
                                        XML_PARSE_NONET | XML_PARSE_NOERROR |
                                            XML_PARSE_NOWARNING);
    style_t *cur = NULL;   /* the w:style being read (a paragraph style) */
    int ppr = 0;
    while (r && xmlTextReaderRead(r) == 1) {
        int type = xmlTextReaderNodeType(r);
        if (type == XML_READER_TYPE_DOCUMENT_TYPE)
            break;
        if (!is_w(xmlTextReaderConstNamespaceUri(r)))
            continue;
        const char *name = (const char *)xmlTextReaderConstLocalName(r);
        if (type == XML_READER_TYPE_END_ELEMENT) {
            if (strcmp(name, "style") == 0)
                cur = NULL;
            else if (strcmp(name, "pPr") == 0 && ppr > 0)
                ppr--;
            continue;
        }
        if (type != XML_READER_TYPE_ELEMENT)
            continue;
        bool empty = xmlTextReaderIsEmptyElement(r);
        if (strcmp(name, "style") == 0) {
            cur = NULL;
            ppr = 0;
            xmlChar *t = xmlTextReaderGetAttributeNs(r, BAD_CAST "type", BAD_CAST NS_W);
            xmlChar *id = xmlTextReaderGetAttributeNs(r, BAD_CAST "styleId", BAD_CAST NS_W);
            if (!t)
                t = xmlTextReaderGetAttributeNs(r, BAD_CAST "type", BAD_CAST NS_W_STRICT);
            if (!id)
                id = xmlTextReaderGetAttributeNs(r, BAD_CAST "styleId", BAD_CAST NS_W_STRICT);
            bool para = !t || strcmp((const char *)t, "paragraph") == 0;
            if (para && id && !empty && st->n < STYLES_MAX) {
                if (st->n == st->cap) {
                    size_t cap = st->cap ? st->cap * 2 : 64;
                    style_t *v = realloc(st->v, cap * sizeof *v);
                    if (v) {
                        st->v = v;
                        st->cap = cap;
                    }
                }
                char *copy = st->n < st->cap ? strdup((const char *)id) : NULL;
                if (copy) {
                    cur = &st->v[st->n++];
                    *cur = (style_t){ .id = copy, .level = -1 };
                }
            }
            xmlFree(t);
            xmlFree(id);
        } else if (cur && strcmp(name, "pPr") == 0 && !empty) {
            ppr++;
        } else if (cur && (strcmp(name, "name") == 0 || strcmp(name, "basedOn") == 0 ||
                           (strcmp(name, "outlineLvl") == 0 && ppr == 1))) {
            xmlChar *v = w_val(r);
            if (v && name[0] == 'n')
                cur->name_level = name_level((const char *)v);
            else if (v && name[0] == 'b' && !cur->based_on)
                cur->based_on = strdup((const char *)v);
            else if (v)
                cur->outline = outline_value(v);
            xmlFree(v);
        }
    }
    xmlFreeTextReader(r);
    zipread_entry_close(e);
    if (st->n > 1)
        qsort(st->v, st->n, sizeof *st->v, style_cmp);
    /* A styleId listed twice: one of them is kept (bsearch must find one
     * answer). */
    size_t k = 0;
    for (size_t i = 0; i < st->n; i++) {
        if (k > 0 && strcmp(st->v[k - 1].id, st->v[i].id) == 0) {
            free(st->v[i].id);
            free(st->v[i].based_on);
            continue;
        }
        st->v[k++] = st->v[i];
    }
    st->n = k;
    for (size_t i = 0; i < st->n; i++)
        style_level(st, &st->v[i]);
}

/* The heading level of paragraph style `id`, 0 for none. */
static int paragraph_style_level(const styles_t *st, const char *id)
{
    style_t *s = style_find(st, id);
    return s ? s->level : builtin_level(id);
}

/* ---- the document -------------------------------------------------------------- */

/* Inside a table cell, text goes to the Markdown table (breaks, tabs and
 * paragraphs become spaces there). */
static bool in_cell(const docx_t *d)
{
    return d->tbl_depth > 0 && mdtable_in_cell(&d->tbl);
}

static void put(docx_t *d, uint32_t cp)
{
    if (in_cell(d)) {
        if (cp == '\t' || cp == '\n') {
            mdtable_space(&d->tbl);
        } else {
            char enc[4];
            mdtable_put(&d->tbl, enc, codepoint_encode(cp, enc));
        }
        return;
    }
    textout_putc(d->out, cp);
}

static void put_text(docx_t *d, const char *s, size_t n)
{
    if (in_cell(d))
        mdtable_put(&d->tbl, s, n);
    else
        textout_put_utf8(d->out, s, n);
}

/* A start tag in the w: namespace; returns true to skip its subtree.
 * Empty elements get their end_w() at once. */
static bool start_w(docx_t *d, xmlTextReaderPtr r, const char *name)
{
    if (strcmp(name, "p") == 0) {
        if (++d->p_depth == 1) {
            d->p_start = textout_len(d->out);
            d->p_level = d->p_direct = d->ppr_depth = 0;
        }
    } else if (strcmp(name, "pPr") == 0) {
        d->ppr_depth++;
    } else if (d->p_depth == 1 && d->ppr_depth == 1 &&
               (strcmp(name, "pStyle") == 0 || strcmp(name, "outlineLvl") == 0)) {
        xmlChar *v = w_val(r);
        if (v && name[0] == 'p')
            d->p_level = paragraph_style_level(d->styles, (const char *)v);
        else if (v)
            d->p_direct = outline_value(v);
        xmlFree(v);
    } else if (strcmp(name, "t") == 0) {
        d->in_text = true;
    } else if (strcmp(name, "r") == 0) {
        d->run_depth++;
    } else if (strcmp(name, "tab") == 0 || strcmp(name, "ptab") == 0) {
        if (d->run_depth > 0)
            put(d, '\t');
    } else if (strcmp(name, "br") == 0 || strcmp(name, "cr") == 0) {
        if (d->run_depth > 0)
            put(d, '\n');
    } else if (strcmp(name, "noBreakHyphen") == 0) {
        put(d, '-');
    } else if (strcmp(name, "tbl") == 0) {
        if (d->tbl_depth++ == 0)
            textout_newline(d->out);
        else
            mdtable_space(&d->tbl);   /* a nested table: flattened into the cell */
    } else if (strcmp(name, "tr") == 0) {
        if (d->tbl_depth == 1)
            mdtable_row(&d->tbl);
        else
            mdtable_space(&d->tbl);
    } else if (strcmp(name, "tc") == 0) {
        d->tc_depth++;
        if (d->tbl_depth == 1)
            mdtable_cell(&d->tbl, 1, 1);
        else
            mdtable_space(&d->tbl);
    } else if (strcmp(name, "gridSpan") == 0 && d->tbl_depth == 1 && d->tc_depth == 1) {
        xmlChar *v = w_val(r);
        long k = v ? strtol((const char *)v, NULL, 10) : 1;
        xmlFree(v);
        if (k > 1)
            mdtable_span(&d->tbl, k > MDTABLE_COLS_MAX ? MDTABLE_COLS_MAX : (unsigned)k, 0);
    } else if (strcmp(name, "moveFrom") == 0) {
        return true;
    }
    return false;
}

/* The end of the outer paragraph: a heading mark if its level says so. */
static void paragraph_ends(docx_t *d)
{
    int level = d->p_level;
    if (d->p_direct)
        level = d->p_direct > OUTLINE_BODY ? 0 : d->p_direct;
    if (level && d->tbl_depth == 0)
        textout_heading_at(d->out, d->p_start, level, NULL, 0);
}

static void end_w(docx_t *d, const char *name)
{
    if (strcmp(name, "p") == 0) {
        if (d->p_depth == 1)
            paragraph_ends(d);
        if (d->p_depth > 0)
            d->p_depth--;
    } else if (strcmp(name, "pPr") == 0) {
        if (d->ppr_depth > 0)
            d->ppr_depth--;
    }
    if (strcmp(name, "t") == 0) {
        d->in_text = false;
    } else if (strcmp(name, "r") == 0) {
        if (d->run_depth > 0)
            d->run_depth--;
    } else if (strcmp(name, "p") == 0) {
        put(d, '\n');
    } else if (strcmp(name, "tc") == 0) {
        if (d->tc_depth > 0)
            d->tc_depth--;
        if (d->tbl_depth > 1)
            mdtable_space(&d->tbl);
    } else if (strcmp(name, "tbl") == 0) {
        if (d->tbl_depth > 0 && --d->tbl_depth == 0)
            mdtable_end(&d->tbl);
    }
}

static int run_reader(docx_t *d, xmlTextReaderPtr r)
{
    bool skip = false;
    for (;;) {
        int rc = skip ? xmlTextReaderNext(r) : xmlTextReaderRead(r);
        skip = false;
        if (rc == 0)
            return 0;
        if (rc < 0)
            return EXTRACT_ECORRUPT;
        if (textout_error(d->out))
            return textout_error(d->out);
        if (d->tbl.err)
            return d->tbl.err;
        int type = xmlTextReaderNodeType(r);
        switch (type) {
        case XML_READER_TYPE_DOCUMENT_TYPE:
            return EXTRACT_ECORRUPT;
        case XML_READER_TYPE_ELEMENT: {
            const xmlChar *ns = xmlTextReaderConstNamespaceUri(r);
            const char *name = (const char *)xmlTextReaderConstLocalName(r);
            if (!name)
                break;
            if (ns && strcmp((const char *)ns, NS_MC) == 0 && strcmp(name, "Fallback") == 0) {
                skip = !xmlTextReaderIsEmptyElement(r);
                break;
            }
            if (!is_w(ns))
                break;
            if (start_w(d, r, name)) {
                skip = !xmlTextReaderIsEmptyElement(r);
                break;
            }
            if (xmlTextReaderIsEmptyElement(r))
                end_w(d, name);
            break;
        }
        case XML_READER_TYPE_END_ELEMENT: {
            const char *name = (const char *)xmlTextReaderConstLocalName(r);
            if (name && is_w(xmlTextReaderConstNamespaceUri(r)))
                end_w(d, name);
            break;
        }
        case XML_READER_TYPE_TEXT:
        case XML_READER_TYPE_CDATA:
        case XML_READER_TYPE_WHITESPACE:
        case XML_READER_TYPE_SIGNIFICANT_WHITESPACE:
            if (d->in_text) {
                const char *v = (const char *)xmlTextReaderConstValue(r);
                if (v && *v)
                    put_text(d, v, strlen(v));
            }
            break;
        default:
            break;
        }
    }
}

int ooxml_extract(int fd, textout_t *out)
{
    zipread_t *z = NULL;
    zipread_entry_t *e = NULL;
    int rc = zipread_open(fd, &z);
    if (rc)
        return rc;
    rc = zipread_entry_open(z, "word/document.xml", &e);
    if (rc) {
        zipread_close(z);
        return rc;
    }
    xml_quiet_init();
    styles_t styles = { 0 };
    styles_read(z, &styles);
    xmlResetLastError();
    xmlTextReaderPtr r = xmlReaderForIO(read_entry, NULL, e, NULL, NULL,
                                        XML_PARSE_NONET | XML_PARSE_NOERROR |
                                            XML_PARSE_NOWARNING);
    if (!r) {
        rc = EXTRACT_EMEMORY;
    } else {
        docx_t d = { .out = out, .styles = &styles };
        mdtable_init(&d.tbl, out);
        rc = run_reader(&d, r);
        if (!rc && d.tbl_depth > 0)   /* a table left open: what it holds */
            rc = mdtable_end(&d.tbl);
        mdtable_cleanup(&d.tbl);
        if (!rc)
            rc = textout_error(out);
        xmlFreeTextReader(r);
    }
    /* A failed read is better explained by the zip layer (bomb, CRC). */
    if (rc == EXTRACT_ECORRUPT && zipread_entry_error(e))
        rc = zipread_entry_error(e);
    if (rc == EXTRACT_ECORRUPT) {
        const xmlError *xe = xmlGetLastError();
        if (xe && xe->code == XML_ERR_NO_MEMORY)
            rc = EXTRACT_EMEMORY;
    }
    zipread_entry_close(e);
    zipread_close(z);
    styles_cleanup(&styles);
    return rc;
}
