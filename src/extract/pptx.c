/* pptx.c — see pptx.h. */
#include "extract/pptx.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "extract/extract.h"
#include "extract/mdtable.h"
#include "extract/opc.h"
#include "extract/xmlquiet.h"

#define NS_REL_TRANSITIONAL "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
#define NS_REL_STRICT "http://purl.oclc.org/ooxml/officeDocument/relationships"

typedef struct {
    textout_t *out;
    mdtable_t tbl;
    bool notes;          /* reading a notes slide */
    bool notes_prefix;   /* "Notes:" not yet written */
    int sp_depth;        /* open p:sp */
    bool skip_shape;     /* the open shape is a placeholder left out */
    bool title;          /* the open shape is the title */
    bool body;           /* notes: the open shape is the notes body */
    size_t title_start;
    int tbl_depth;       /* open a:tbl */
    bool in_t;           /* inside a:t */
} slide_t;

static bool named(xmlTextReaderPtr r, const char *name)
{
    const char *l = (const char *)xmlTextReaderConstLocalName(r);
    return l && strcmp(l, name) == 0;
}

static bool wanted(const slide_t *s)
{
    return !s->skip_shape && (!s->notes || s->body || s->tbl_depth > 0);
}

static void emit(slide_t *s, const char *v, size_t n)
{
    if (!wanted(s))
        return;
    if (s->tbl_depth > 0) {
        mdtable_put(&s->tbl, v, n);
        return;
    }
    if (s->notes_prefix) {
        s->notes_prefix = false;
        textout_blank_line(s->out);
        textout_put_utf8(s->out, "Notes: ", 7);
    }
    textout_put_utf8(s->out, v, n);
}

static void line_break(slide_t *s)
{
    if (!wanted(s))
        return;
    if (s->tbl_depth > 0)
        mdtable_space(&s->tbl);
    else if (!s->notes_prefix)
        textout_newline(s->out);
}

static unsigned span(xmlTextReaderPtr r, const char *name)
{
    xmlChar *v = xmlTextReaderGetAttribute(r, BAD_CAST name);
    long k = v ? strtol((const char *)v, NULL, 10) : 1;
    xmlFree(v);
    return k < 1 ? 1 : k > MDTABLE_SPAN_MAX ? MDTABLE_SPAN_MAX : (unsigned)k;
}

static void start(slide_t *s, xmlTextReaderPtr r, bool empty)
{
    (void)empty;
    if (named(r, "sp")) {
        if (s->sp_depth++ == 0) {
            s->skip_shape = s->title = s->body = false;
        }
    } else if (named(r, "ph") && s->sp_depth == 1) {
        xmlChar *t = xmlTextReaderGetAttribute(r, BAD_CAST "type");
        const char *type = t ? (const char *)t : "body";
        s->title = !s->notes && (strcmp(type, "title") == 0 || strcmp(type, "ctrTitle") == 0);
        s->body = strcmp(type, "body") == 0;
        s->skip_shape = strcmp(type, "sldNum") == 0 || strcmp(type, "dt") == 0 ||
                        strcmp(type, "ftr") == 0 || strcmp(type, "hdr") == 0 ||
                        strcmp(type, "sldImg") == 0;
        xmlFree(t);
    } else if (named(r, "txBody") && s->tbl_depth == 0 && !empty) {
        if (wanted(s) && !s->notes_prefix)
            textout_blank_line(s->out);
        s->title_start = textout_len(s->out);
    } else if (named(r, "tbl")) {
        if (s->tbl_depth++ == 0)
            textout_blank_line(s->out);
        else
            mdtable_space(&s->tbl);
    } else if (named(r, "tr") && s->tbl_depth == 1) {
        mdtable_row(&s->tbl);
    } else if (named(r, "tc") && s->tbl_depth == 1) {
        mdtable_cell(&s->tbl, span(r, "gridSpan"), span(r, "rowSpan"));
    } else if (named(r, "t") && !empty) {
        s->in_t = true;
    } else if (named(r, "br")) {
        line_break(s);
    }
}

static void end(slide_t *s, xmlTextReaderPtr r)
{
    if (named(r, "sp") && s->sp_depth > 0) {
        s->sp_depth--;
    } else if (named(r, "txBody") && s->tbl_depth == 0) {
        if (s->title && s->sp_depth == 1)
            textout_heading_at(s->out, s->title_start, 1, NULL, 0);
    } else if (named(r, "p")) {
        line_break(s);
    } else if (named(r, "tbl") && s->tbl_depth > 0) {
        if (--s->tbl_depth == 0)
            mdtable_end(&s->tbl);
    } else if (named(r, "t")) {
        s->in_t = false;
    }
}

/* Stream one slide or notes part. */
static int part_read(zipread_t *z, const char *part, slide_t *s)
{
    zipread_entry_t *e;
    xmlTextReaderPtr r;
    int rc = opc_reader_open(z, part, &e, &r);
    if (rc)
        return rc;
    s->sp_depth = s->tbl_depth = 0;
    s->in_t = s->skip_shape = s->title = s->body = false;
    while ((rc = opc_reader_next(e, r, false)) == 1) {
        int err = s->tbl.err ? s->tbl.err : textout_error(s->out);
        if (err) {
            rc = err;
            break;
        }
        int type = xmlTextReaderNodeType(r);
        if (type == XML_READER_TYPE_ELEMENT) {
            bool empty = xmlTextReaderIsEmptyElement(r);
            start(s, r, empty);
            if (empty && !named(r, "br"))
                end(s, r);
        } else if (type == XML_READER_TYPE_END_ELEMENT) {
            end(s, r);
        } else if (s->in_t && (type == XML_READER_TYPE_TEXT || type == XML_READER_TYPE_CDATA ||
                               type == XML_READER_TYPE_WHITESPACE ||
                               type == XML_READER_TYPE_SIGNIFICANT_WHITESPACE)) {
            const char *v = (const char *)xmlTextReaderConstValue(r);
            if (v)
                emit(s, v, strlen(v));
        }
    }
    if (rc >= 0 && s->tbl_depth > 0)
        mdtable_end(&s->tbl);
    opc_reader_close(e, r);
    return rc < 0 ? rc : 0;
}

/* The r:id of each p:sldId of presentation.xml, in order. */
static int slide_ids(zipread_t *z, const char *part, char **ids, size_t *n)
{
    zipread_entry_t *e;
    xmlTextReaderPtr r;
    int rc = opc_reader_open(z, part, &e, &r);
    if (rc)
        return rc;
    while ((rc = opc_reader_next(e, r, false)) == 1) {
        if (xmlTextReaderNodeType(r) != XML_READER_TYPE_ELEMENT || !named(r, "sldId"))
            continue;
        if (*n >= PPTX_SLIDES_MAX)
            break;
        xmlChar *id = xmlTextReaderGetAttributeNs(r, BAD_CAST "id", BAD_CAST NS_REL_TRANSITIONAL);
        if (!id)
            id = xmlTextReaderGetAttributeNs(r, BAD_CAST "id", BAD_CAST NS_REL_STRICT);
        if (id) {
            ids[*n] = strdup((const char *)id);
            xmlFree(id);
            if (!ids[*n]) {
                rc = EXTRACT_EMEMORY;
                break;
            }
            (*n)++;
        }
    }
    opc_reader_close(e, r);
    return rc < 0 ? rc : 0;
}

int pptx_extract(int fd, textout_t *out)
{
    zipread_t *z = NULL;
    int rc = zipread_open(fd, &z);
    if (rc)
        return rc;
    xml_quiet_init();
    const char *pres = "ppt/presentation.xml";
    opc_rels_t rels = { 0 };
    char **ids = calloc(PPTX_SLIDES_MAX, sizeof *ids);
    size_t n = 0;
    slide_t s = { .out = out };
    mdtable_init(&s.tbl, out);
    rc = ids ? opc_rels_read(z, pres, &rels) : EXTRACT_EMEMORY;
    if (!rc)
        rc = slide_ids(z, pres, ids, &n);
    int number = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const opc_rel_t *rel = opc_rels_find(&rels, ids[i]);
        if (!rel || !zipread_exists(z, rel->target))
            continue;
        textout_blank_line(out);
        textout_page(out, ++number, NULL);
        s.notes = false;
        s.notes_prefix = false;
        rc = part_read(z, rel->target, &s);
        opc_rels_t srels = { 0 };
        if (!rc)
            rc = opc_rels_read(z, rel->target, &srels);
        const opc_rel_t *notes = rc ? NULL : opc_rels_find_type(&srels, "/notesSlide");
        if (notes && zipread_exists(z, notes->target)) {
            s.notes = true;
            s.notes_prefix = true;
            rc = part_read(z, notes->target, &s);
        }
        opc_rels_cleanup(&srels);
    }
    if (!rc)
        rc = s.tbl.err ? s.tbl.err : textout_error(out);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    mdtable_cleanup(&s.tbl);
    opc_rels_cleanup(&rels);
    zipread_close(z);
    return rc;
}
