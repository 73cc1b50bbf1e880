/* odf.c — see odf.h. */
#include "extract/odf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/xmlerror.h>
#include <libxml/xmlreader.h>

#include "extract/extract.h"
#include "extract/zipread.h"

#define NS_TEXT "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
#define NS_TABLE "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
#define NS_OFFICE "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
#define NS_MANIFEST "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"

#define TABLE_DEPTH_MAX 32
#define SPACES_MAX 1000     /* most spaces one text:s may ask for */

typedef struct {
    textout_t *out;
    int body_depth;       /* inside office:body */
    int para_depth;       /* open text:p / text:h */
    bool pending_space;   /* collapsed whitespace not yet written */
    bool para_has_text;
    int row_depth;
    unsigned cells[TABLE_DEPTH_MAX + 1];
    bool cell_para_done[TABLE_DEPTH_MAX + 1];
    int heading_level;     /* an open text:h to mark, 0 if none */
    size_t heading_start;  /* where its text starts */
} odt_t;

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

static bool ns_is(xmlTextReaderPtr r, const char *ns)
{
    const xmlChar *u = xmlTextReaderConstNamespaceUri(r);
    return u && strcmp((const char *)u, ns) == 0;
}

static xmlTextReaderPtr open_reader(zipread_entry_t *e)
{
    return xmlReaderForIO(read_entry, NULL, e, NULL, NULL,
                          XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

/* Map a reader failure to a code: the zip layer knows best (bomb, CRC). */
static int reader_failure(zipread_entry_t *e)
{
    if (zipread_entry_error(e))
        return zipread_entry_error(e);
    const xmlError *xe = xmlGetLastError();
    return (xe && xe->code == XML_ERR_NO_MEMORY) ? EXTRACT_EMEMORY : EXTRACT_ECORRUPT;
}

/* Whether the manifest marks content.xml as encrypted. Returns 0 (and sets
 * *encrypted) or an EXTRACT_* code. A missing manifest is not an error. */
static int manifest_encrypted(zipread_t *z, bool *encrypted)
{
    *encrypted = false;
    if (!zipread_exists(z, "META-INF/manifest.xml"))
        return 0;
    zipread_entry_t *e;
    int rc = zipread_entry_open(z, "META-INF/manifest.xml", &e);
    if (rc)
        return rc;
    xmlTextReaderPtr r = open_reader(e);
    if (!r) {
        zipread_entry_close(e);
        return EXTRACT_EMEMORY;
    }
    bool in_content_entry = false;
    int ret;
    while ((ret = xmlTextReaderRead(r)) == 1) {
        int type = xmlTextReaderNodeType(r);
        if (type == XML_READER_TYPE_DOCUMENT_TYPE) {
            ret = -1;
            break;
        }
        if (type != XML_READER_TYPE_ELEMENT && type != XML_READER_TYPE_END_ELEMENT)
            continue;
        if (!ns_is(r, NS_MANIFEST))
            continue;
        const char *name = (const char *)xmlTextReaderConstLocalName(r);
        if (strcmp(name, "file-entry") == 0) {
            if (type == XML_READER_TYPE_END_ELEMENT || xmlTextReaderIsEmptyElement(r)) {
                in_content_entry = false;
                continue;
            }
            xmlChar *path = xmlTextReaderGetAttributeNs(r, BAD_CAST "full-path",
                                                        BAD_CAST NS_MANIFEST);
            in_content_entry = path && strcmp((const char *)path, "content.xml") == 0;
            xmlFree(path);
        } else if (strcmp(name, "encryption-data") == 0 && in_content_entry) {
            *encrypted = true;
        }
    }
    rc = ret < 0 ? reader_failure(e) : 0;
    xmlFreeTextReader(r);
    zipread_entry_close(e);
    return rc;
}

static void flush_space(odt_t *o)
{
    if (o->pending_space && o->para_has_text)
        textout_putc(o->out, ' ');
    o->pending_space = false;
}

static void cell_text_starts(odt_t *o)
{
    int t = o->row_depth;
    if (t > 0 && o->cell_para_done[t]) {
        o->cell_para_done[t] = false;
        textout_putc(o->out, ' ');
    }
}

static void put_text(odt_t *o, const char *s)
{
    const char *p = s;
    while (*p) {
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            o->pending_space = true;
            p++;
            continue;
        }
        const char *q = p;
        while (*q && *q != ' ' && *q != '\t' && *q != '\n' && *q != '\r')
            q++;
        if (!o->para_has_text)
            cell_text_starts(o);
        flush_space(o);
        textout_put_utf8(o->out, p, (size_t)(q - p));
        o->para_has_text = true;
        p = q;
    }
}

static void para_start(odt_t *o)
{
    o->para_depth++;
    o->pending_space = false;
    o->para_has_text = false;
}

static void para_end(odt_t *o)
{
    if (o->para_depth > 0)
        o->para_depth--;
    o->pending_space = false;
    int t = o->row_depth;
    if (t > 0)
        o->cell_para_done[t] = o->cell_para_done[t] || o->para_has_text;
    else
        textout_putc(o->out, '\n');
    o->para_has_text = o->para_depth > 0;
}

/* A text:h starts: its level (text:outline-level, 1 by default) and where
 * its text starts, for the heading mark at its end. */
static void heading_start(odt_t *o, xmlTextReaderPtr r)
{
    long level = 1;
    xmlChar *v = xmlTextReaderGetAttributeNs(r, BAD_CAST "outline-level", BAD_CAST NS_TEXT);
    if (v) {
        char *end;
        long n = strtol((const char *)v, &end, 10);
        if (end != (const char *)v && *end == '\0' && n >= 1)
            level = n > EXTRACT_HEADING_LEVEL_MAX ? EXTRACT_HEADING_LEVEL_MAX : n;
        xmlFree(v);
    }
    o->heading_level = (int)level;
    o->heading_start = textout_len(o->out);
}

/* Subtrees whose text is not part of the document as it reads. */
static bool skipped(const char *name)
{
    static const char *const names[] = {
        "tracked-changes", "note", "annotation", "sequence-decls",
        "variable-decls", "user-field-decls", "bookmark-ref",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

/* A start tag; returns true to skip its subtree. */
static bool start(odt_t *o, xmlTextReaderPtr r, const char *name)
{
    if (ns_is(r, NS_OFFICE)) {
        if (strcmp(name, "body") == 0)
            o->body_depth++;
        return strcmp(name, "annotation") == 0;
    }
    if (o->body_depth == 0)
        return false;
    if (ns_is(r, NS_TEXT)) {
        if (skipped(name))
            return true;
        if (strcmp(name, "h") == 0 && o->para_depth == 0 && o->row_depth == 0) {
            heading_start(o, r);
            para_start(o);
        } else if (strcmp(name, "p") == 0 || strcmp(name, "h") == 0) {
            para_start(o);
        } else if (strcmp(name, "s") == 0) {
            long n = 1;
            xmlChar *c = xmlTextReaderGetAttributeNs(r, BAD_CAST "c", BAD_CAST NS_TEXT);
            if (c) {
                n = strtol((const char *)c, NULL, 10);
                xmlFree(c);
            }
            if (n < 1)
                n = 1;
            if (n > SPACES_MAX)
                n = SPACES_MAX;
            flush_space(o);
            for (long i = 0; i < n; i++)
                textout_putc(o->out, ' ');
            o->para_has_text = true;
        } else if (strcmp(name, "tab") == 0) {
            flush_space(o);
            textout_putc(o->out, '\t');
            o->para_has_text = true;
        } else if (strcmp(name, "line-break") == 0) {
            o->pending_space = false;
            textout_putc(o->out, '\n');
        }
    } else if (ns_is(r, NS_TABLE)) {
        int t = o->row_depth;
        if (strcmp(name, "table-row") == 0) {
            textout_newline(o->out);
            if (o->row_depth < TABLE_DEPTH_MAX)
                o->row_depth++;
            o->cells[o->row_depth] = 0;
            o->cell_para_done[o->row_depth] = false;
        } else if ((strcmp(name, "table-cell") == 0 ||
                    strcmp(name, "covered-table-cell") == 0) && t > 0) {
            if (o->cells[t]++ > 0)
                textout_putc(o->out, '\t');
            o->cell_para_done[t] = false;
        }
    }
    return false;
}

static void end(odt_t *o, xmlTextReaderPtr r, const char *name)
{
    if (ns_is(r, NS_OFFICE)) {
        if (strcmp(name, "body") == 0 && o->body_depth > 0)
            o->body_depth--;
        return;
    }
    if (o->body_depth == 0)
        return;
    if (ns_is(r, NS_TEXT)) {
        if (strcmp(name, "h") == 0 && o->heading_level && o->para_depth == 1) {
            textout_heading_at(o->out, o->heading_start, o->heading_level, NULL, 0);
            o->heading_level = 0;
        }
        if (strcmp(name, "p") == 0 || strcmp(name, "h") == 0)
            para_end(o);
    } else if (ns_is(r, NS_TABLE) && strcmp(name, "table-row") == 0) {
        if (o->row_depth > 0)
            o->row_depth--;
        textout_newline(o->out);
    }
}

static int run_content(odt_t *o, xmlTextReaderPtr r)
{
    bool skip = false;
    for (;;) {
        int rc = skip ? xmlTextReaderNext(r) : xmlTextReaderRead(r);
        skip = false;
        if (rc == 0)
            return 0;
        if (rc < 0)
            return EXTRACT_ECORRUPT;
        if (textout_error(o->out))
            return textout_error(o->out);
        switch (xmlTextReaderNodeType(r)) {
        case XML_READER_TYPE_DOCUMENT_TYPE:
            return EXTRACT_ECORRUPT;
        case XML_READER_TYPE_ELEMENT: {
            const char *name = (const char *)xmlTextReaderConstLocalName(r);
            if (!name)
                break;
            bool empty = xmlTextReaderIsEmptyElement(r);
            if (start(o, r, name))
                skip = !empty;
            else if (empty)
                end(o, r, name);
            break;
        }
        case XML_READER_TYPE_END_ELEMENT: {
            const char *name = (const char *)xmlTextReaderConstLocalName(r);
            if (name)
                end(o, r, name);
            break;
        }
        case XML_READER_TYPE_TEXT:
        case XML_READER_TYPE_CDATA:
        case XML_READER_TYPE_WHITESPACE:
        case XML_READER_TYPE_SIGNIFICANT_WHITESPACE:
            if (o->para_depth > 0) {
                const char *v = (const char *)xmlTextReaderConstValue(r);
                if (v)
                    put_text(o, v);
            }
            break;
        default:
            break;
        }
    }
}

int odf_extract(int fd, textout_t *out)
{
    zipread_t *z = NULL;
    int rc = zipread_open(fd, &z);
    if (rc)
        return rc;
    xmlInitParser();
    xmlSetGenericErrorFunc(NULL, silent);
    xmlSetStructuredErrorFunc(NULL, silent_structured);
    xmlResetLastError();

    bool encrypted = false;
    rc = manifest_encrypted(z, &encrypted);
    if (!rc && encrypted)
        rc = EXTRACT_EENCRYPTED;
    zipread_entry_t *e = NULL;
    if (!rc)
        rc = zipread_entry_open(z, "content.xml", &e);
    if (!rc) {
        xmlTextReaderPtr r = open_reader(e);
        if (!r) {
            rc = EXTRACT_EMEMORY;
        } else {
            odt_t o = { .out = out };
            rc = run_content(&o, r);
            if (rc == EXTRACT_ECORRUPT)
                rc = reader_failure(e);
            if (!rc)
                rc = textout_error(out);
            xmlFreeTextReader(r);
        }
    }
    zipread_entry_close(e);
    zipread_close(z);
    return rc;
}
