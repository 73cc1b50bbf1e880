/* odf.c — see odf.h. */
#include "extract/odf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/xmlerror.h>
#include <libxml/xmlreader.h>

#include "extract/extract.h"
#include "extract/mdtable.h"
#include "extract/sheet.h"
#include "extract/zipread.h"
#include "extract/xmlquiet.h"

#define NS_TEXT "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
#define NS_TABLE "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
#define NS_OFFICE "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
#define NS_MANIFEST "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"
#define NS_DRAW "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
#define NS_PRESENTATION "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"

#define REPEAT_MAX 1048576   /* most copies of a repeated row or cell */

typedef enum { MODE_TEXT, MODE_SHEET, MODE_SLIDES } mode_t_;
#define SPACES_MAX 1000     /* most spaces one text:s may ask for */

typedef struct {
    textout_t *out;
    int body_depth;       /* inside office:body */
    int para_depth;       /* open text:p / text:h */
    bool pending_space;   /* collapsed whitespace not yet written */
    bool para_has_text;
    int tbl_depth;         /* open table:table; the outermost is tbl or sheet */
    int cell_depth;        /* open cells */
    mdtable_t tbl;         /* text and slides: the outermost table */
    int heading_level;     /* an open text:h to mark, 0 if none */
    size_t heading_start;  /* where its text starts */
    mode_t_ mode;
    /* Spreadsheets. */
    sheet_t sheet;
    buf_t cell;            /* text of the open cell */
    unsigned long cell_repeat, row_repeat;
    /* Presentations. */
    int slide;             /* slides so far */
    int title_depth;       /* open draw:frame of class title (1) */
    int frame_depth;       /* open draw:frame */
    size_t title_start;
    int notes_depth;       /* inside presentation:notes */
    bool notes_prefix;     /* "Notes:" not yet written for this slide */
} odt_t;

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

static void table_end(odt_t *o, const char *name);

/* Where text goes: the open spreadsheet cell, the open table cell, or
 * the text (after "Notes:" for a slide's first note). */
static void emit(odt_t *o, const char *s, size_t n)
{
    if (o->mode == MODE_SHEET && o->cell_depth > 0 && o->tbl_depth == 1) {
        if (o->cell.len + n <= MDTABLE_CELL_MAX + 4)
            buf_append(&o->cell, s, n);   /* past that, mdtable would cut it */
        return;
    }
    if (o->tbl_depth > 0 && mdtable_in_cell(&o->tbl)) {
        mdtable_put(&o->tbl, s, n);
        return;
    }
    if (o->notes_prefix) {
        o->notes_prefix = false;
        textout_blank_line(o->out);
        textout_put_utf8(o->out, "Notes: ", 7);
    }
    textout_put_utf8(o->out, s, n);
}

/* A line break; in a cell, a space. */
static void emit_break(odt_t *o)
{
    if (o->cell_depth > 0 && o->tbl_depth > 0) {
        if (o->mode == MODE_SHEET && o->tbl_depth == 1) {
            if (o->cell.len)
                buf_append(&o->cell, " ", 1);
        } else {
            mdtable_space(&o->tbl);
        }
        return;
    }
    if (!o->notes_prefix)
        textout_putc(o->out, '\n');
}

static void flush_space(odt_t *o)
{
    if (o->pending_space && o->para_has_text)
        emit(o, " ", 1);
    o->pending_space = false;
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
        flush_space(o);
        emit(o, p, (size_t)(q - p));
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
    emit_break(o);
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

/* A numeric attribute of the table namespace, 1 when absent or not a
 * number, at most REPEAT_MAX. */
static unsigned long table_count(xmlTextReaderPtr r, const char *name)
{
    xmlChar *v = xmlTextReaderGetAttributeNs(r, BAD_CAST name, BAD_CAST NS_TABLE);
    long n = v ? strtol((const char *)v, NULL, 10) : 1;
    xmlFree(v);
    return n < 1 ? 1 : n > REPEAT_MAX ? REPEAT_MAX : (unsigned long)n;
}

/* Tables: the outermost one is a sheet (spreadsheets) or a Markdown table;
 * a nested one is flattened into the cell holding it. Covered cells (the
 * places a merged cell spans) are written as empty cells. */
static void table_start(odt_t *o, xmlTextReaderPtr r, const char *name)
{
    bool sheet = o->mode == MODE_SHEET;
    if (strcmp(name, "table") == 0) {
        if (o->tbl_depth++ > 0) {
            emit_break(o);
        } else if (sheet) {
            xmlChar *v = xmlTextReaderGetAttributeNs(r, BAD_CAST "name", BAD_CAST NS_TABLE);
            const char *sn = v ? (const char *)v : "Sheet";
            sheet_begin(&o->sheet, sn, strlen(sn));
            xmlFree(v);
        } else {
            textout_newline(o->out);
        }
    } else if (strcmp(name, "table-row") == 0) {
        if (o->tbl_depth != 1) {
            emit_break(o);
        } else if (sheet) {
            o->row_repeat = table_count(r, "number-rows-repeated");
            sheet_row(&o->sheet);
        } else {
            mdtable_row(&o->tbl);
        }
    } else if (strcmp(name, "table-cell") == 0 || strcmp(name, "covered-table-cell") == 0) {
        o->cell_depth++;
        if (o->tbl_depth != 1) {
            emit_break(o);
            return;
        }
        if (sheet) {
            o->cell_repeat = table_count(r, "number-columns-repeated");
            buf_reset(&o->cell);
        } else {
            mdtable_cell(&o->tbl, 1, 1);
        }
    }
}

static void table_end(odt_t *o, const char *name)
{
    bool sheet = o->mode == MODE_SHEET;
    if (strcmp(name, "table") == 0 && o->tbl_depth > 0) {
        if (--o->tbl_depth == 0) {
            if (sheet)
                sheet_end(&o->sheet);
            else
                mdtable_end(&o->tbl);
        }
    } else if (strcmp(name, "table-row") == 0 && o->tbl_depth == 1 && sheet) {
        sheet_row_end(&o->sheet, o->row_repeat);
    } else if ((strcmp(name, "table-cell") == 0 || strcmp(name, "covered-table-cell") == 0) &&
               o->cell_depth > 0) {
        o->cell_depth--;
        if (sheet && o->tbl_depth == 1)
            sheet_cell(&o->sheet, SHEET_NEXT, o->cell.data ? o->cell.data : "", o->cell.len,
                       o->cell_repeat);
    }
}

/* Slides: each draw:page is a page; a frame of class "title" is its
 * heading; presentation:notes are its speaker notes, after "Notes:". */
static void slide_start(odt_t *o, xmlTextReaderPtr r, const char *name)
{
    if (ns_is(r, NS_DRAW) && strcmp(name, "page") == 0 && o->notes_depth == 0) {
        textout_blank_line(o->out);
        textout_page(o->out, ++o->slide, NULL);
        o->notes_prefix = false;
    } else if (ns_is(r, NS_DRAW) && strcmp(name, "frame") == 0) {
        o->frame_depth++;
        xmlChar *c = xmlTextReaderGetAttributeNs(r, BAD_CAST "class", BAD_CAST NS_PRESENTATION);
        if (c && strcmp((const char *)c, "title") == 0 && o->notes_depth == 0 &&
            o->title_depth == 0) {
            textout_blank_line(o->out);
            o->title_depth = o->frame_depth;
            o->title_start = textout_len(o->out);
        }
        xmlFree(c);
    } else if (ns_is(r, NS_PRESENTATION) && strcmp(name, "notes") == 0) {
        if (o->notes_depth++ == 0)
            o->notes_prefix = true;
    }
}

static void slide_end(odt_t *o, xmlTextReaderPtr r, const char *name)
{
    if (ns_is(r, NS_DRAW) && strcmp(name, "frame") == 0 && o->frame_depth > 0) {
        if (o->title_depth == o->frame_depth) {
            o->title_depth = 0;
            textout_heading_at(o->out, o->title_start, 1, NULL, 0);
        }
        o->frame_depth--;
        if (!o->notes_prefix)
            textout_blank_line(o->out);
    } else if (ns_is(r, NS_PRESENTATION) && strcmp(name, "notes") == 0 && o->notes_depth > 0) {
        if (--o->notes_depth == 0)
            o->notes_prefix = false;
    }
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
        if (strcmp(name, "h") == 0 && o->para_depth == 0 && o->tbl_depth == 0) {
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
                emit(o, " ", 1);
            o->para_has_text = true;
        } else if (strcmp(name, "tab") == 0) {
            flush_space(o);
            emit(o, "\t", 1);
            o->para_has_text = true;
        } else if (strcmp(name, "line-break") == 0) {
            o->pending_space = false;
            emit_break(o);
        }
    } else if (ns_is(r, NS_TABLE)) {
        table_start(o, r, name);
    } else if (o->mode == MODE_SLIDES) {
        slide_start(o, r, name);
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
    } else if (ns_is(r, NS_TABLE)) {
        table_end(o, name);
    } else if (o->mode == MODE_SLIDES) {
        slide_end(o, r, name);
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
        if (o->tbl.err || o->sheet.tbl.err)
            return o->tbl.err ? o->tbl.err : o->sheet.tbl.err;
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

static int extract_as(int fd, textout_t *out, mode_t_ mode)
{
    zipread_t *z = NULL;
    int rc = zipread_open(fd, &z);
    if (rc)
        return rc;
    xml_quiet_init();
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
            odt_t o = { .out = out, .mode = mode };
            mdtable_init(&o.tbl, out);
            sheet_init(&o.sheet, out);
            buf_init(&o.cell, MDTABLE_CELL_MAX + 16);
            rc = run_content(&o, r);
            if (rc == EXTRACT_ECORRUPT)
                rc = reader_failure(e);
            if (!rc && o.tbl_depth > 0)   /* a table left open: what it holds */
                rc = mode == MODE_SHEET ? sheet_end(&o.sheet) : mdtable_end(&o.tbl);
            if (!rc)
                rc = o.tbl.err ? o.tbl.err : o.sheet.tbl.err;
            if (!rc)
                rc = textout_error(out);
            mdtable_cleanup(&o.tbl);
            sheet_cleanup(&o.sheet);
            buf_cleanup(&o.cell);
            xmlFreeTextReader(r);
        }
    }
    zipread_entry_close(e);
    zipread_close(z);
    return rc;
}

int odf_extract(int fd, textout_t *out)
{
    return extract_as(fd, out, MODE_TEXT);
}

int odf_extract_sheet(int fd, textout_t *out)
{
    return extract_as(fd, out, MODE_SHEET);
}

int odf_extract_slides(int fd, textout_t *out)
{
    return extract_as(fd, out, MODE_SLIDES);
}
