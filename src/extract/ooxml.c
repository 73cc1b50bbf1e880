/* ooxml.c — see ooxml.h. */
#include "extract/ooxml.h"

#include <stdbool.h>
#include <string.h>

#include <libxml/xmlerror.h>
#include <libxml/xmlreader.h>

#include "extract/extract.h"
#include "extract/zipread.h"

#define NS_W "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
#define NS_W_STRICT "http://purl.oclc.org/ooxml/wordprocessingml/main"
#define NS_MC "http://schemas.openxmlformats.org/markup-compatibility/2006"

#define TABLE_DEPTH_MAX 32

typedef struct {
    textout_t *out;
    bool in_text;          /* inside w:t */
    int run_depth;         /* open w:r elements */
    int tbl_depth;         /* open w:tbl elements (capped) */
    unsigned cells[TABLE_DEPTH_MAX + 1];        /* cells so far in the row */
    bool in_cell[TABLE_DEPTH_MAX + 1];
    bool cell_para_done[TABLE_DEPTH_MAX + 1];   /* a paragraph ended in the cell */
} docx_t;

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

static void put(docx_t *d, uint32_t cp)
{
    textout_putc(d->out, cp);
}

/* Joins the paragraphs of one table cell with a space. */
static void cell_text_starts(docx_t *d)
{
    int t = d->tbl_depth;
    if (t > 0 && d->in_cell[t] && d->cell_para_done[t]) {
        d->cell_para_done[t] = false;
        put(d, ' ');
    }
}

/* A start tag in the w: namespace; returns true to skip its subtree. */
static bool start_w(docx_t *d, const char *name)
{
    int t = d->tbl_depth;
    if (strcmp(name, "t") == 0) {
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
        cell_text_starts(d);
        put(d, '-');
    } else if (strcmp(name, "tbl") == 0) {
        textout_newline(d->out);
        if (d->tbl_depth < TABLE_DEPTH_MAX)
            d->tbl_depth++;
        d->in_cell[d->tbl_depth] = false;
    } else if (strcmp(name, "tr") == 0) {
        textout_newline(d->out);
        d->cells[t] = 0;
    } else if (strcmp(name, "tc") == 0) {
        if (d->cells[t]++ > 0)
            put(d, '\t');
        d->in_cell[t] = true;
        d->cell_para_done[t] = false;
    } else if (strcmp(name, "moveFrom") == 0) {
        return true;
    }
    return false;
}

static void end_w(docx_t *d, const char *name)
{
    int t = d->tbl_depth;
    if (strcmp(name, "t") == 0) {
        d->in_text = false;
    } else if (strcmp(name, "r") == 0) {
        if (d->run_depth > 0)
            d->run_depth--;
    } else if (strcmp(name, "p") == 0) {
        if (t > 0 && d->in_cell[t])
            d->cell_para_done[t] = true;
        else
            put(d, '\n');
    } else if (strcmp(name, "tc") == 0) {
        d->in_cell[t] = false;
    } else if (strcmp(name, "tr") == 0) {
        textout_newline(d->out);
    } else if (strcmp(name, "tbl") == 0) {
        if (d->tbl_depth > 0)
            d->tbl_depth--;
        textout_newline(d->out);
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
            if (start_w(d, name)) {
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
                if (v && *v) {
                    cell_text_starts(d);
                    textout_put_utf8(d->out, v, strlen(v));
                }
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
    xmlInitParser();
    xmlSetGenericErrorFunc(NULL, silent);
    xmlSetStructuredErrorFunc(NULL, silent_structured);
    xmlResetLastError();
    xmlTextReaderPtr r = xmlReaderForIO(read_entry, NULL, e, NULL, NULL,
                                        XML_PARSE_NONET | XML_PARSE_NOERROR |
                                            XML_PARSE_NOWARNING);
    if (!r) {
        rc = EXTRACT_EMEMORY;
    } else {
        docx_t d = { .out = out };
        rc = run_reader(&d, r);
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
    return rc;
}
