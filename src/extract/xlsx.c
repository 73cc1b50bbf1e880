/* xlsx.c — see xlsx.h. */
#include "extract/xlsx.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "extract/extract.h"
#include "extract/mdtable.h"
#include "extract/opc.h"
#include "extract/sheet.h"
#include "extract/xmlquiet.h"

#define STRING_KEEP (MDTABLE_CELL_MAX + 4)   /* bytes of a string a cell can show */

/* The shared strings: all in one buffer, each NUL-terminated. */
typedef struct {
    buf_t text;
    size_t *at;
    size_t n, cap;
} strings_t;

static void strings_cleanup(strings_t *s)
{
    buf_cleanup(&s->text);
    free(s->at);
}

static const char *string_get(const strings_t *s, const char *index)
{
    char *end;
    unsigned long long i = strtoull(index, &end, 10);
    if (end == index || i >= s->n)
        return "";
    return s->text.data + s->at[i];
}

static bool named(xmlTextReaderPtr r, const char *name)
{
    const char *l = (const char *)xmlTextReaderConstLocalName(r);
    return l && strcmp(l, name) == 0;
}

/* Append text (cut at STRING_KEEP bytes from `start`) to b. */
static int keep_text(buf_t *b, size_t start, const char *v)
{
    size_t have = b->len - start;
    if (have >= STRING_KEEP)
        return 0;
    size_t n = strlen(v);
    if (n > STRING_KEEP - have)
        n = STRING_KEEP - have;
    int rc = buf_append(b, v, n);
    return rc == BUF_ETOOBIG ? EXTRACT_ETOOBIG : rc ? EXTRACT_EMEMORY : 0;
}

/* Read xl/sharedStrings.xml: each <si>'s <t> texts (not those of <rPh>,
 * phonetic guides). */
static int strings_read(zipread_t *z, const char *part, strings_t *s)
{
    buf_init(&s->text, XLSX_STRINGS_BYTES);
    if (!part || !zipread_exists(z, part))
        return 0;
    zipread_entry_t *e;
    xmlTextReaderPtr r;
    int rc = opc_reader_open(z, part, &e, &r);
    if (rc)
        return rc;
    bool in_si = false, in_t = false;
    int rph = 0;
    size_t start = 0;
    while ((rc = opc_reader_next(e, r, false)) == 1) {
        int type = xmlTextReaderNodeType(r);
        if (type == XML_READER_TYPE_ELEMENT) {
            bool empty = xmlTextReaderIsEmptyElement(r);
            if (named(r, "si")) {
                if (s->n >= XLSX_STRINGS_MAX) {
                    rc = EXTRACT_ETOOBIG;
                    break;
                }
                if (s->n == s->cap) {
                    size_t cap = s->cap ? s->cap * 2 : 1024;
                    size_t *v = realloc(s->at, cap * sizeof *v);
                    if (!v) {
                        rc = EXTRACT_EMEMORY;
                        break;
                    }
                    s->at = v;
                    s->cap = cap;
                }
                start = s->text.len;
                s->at[s->n++] = start;
                in_si = true;
                if (empty) {
                    in_si = false;
                    if ((rc = buf_append(&s->text, "", 1)))
                        break;
                }
            } else if (named(r, "rPh") && !empty) {
                rph++;
            } else if (named(r, "t") && !empty) {
                in_t = in_si && rph == 0;
            }
        } else if (type == XML_READER_TYPE_END_ELEMENT) {
            if (named(r, "si") && in_si) {
                in_si = false;
                if (buf_append(&s->text, "", 1)) {   /* the NUL */
                    rc = EXTRACT_ETOOBIG;
                    break;
                }
            } else if (named(r, "rPh") && rph > 0) {
                rph--;
            } else if (named(r, "t")) {
                in_t = false;
            }
        } else if (in_t && (type == XML_READER_TYPE_TEXT || type == XML_READER_TYPE_CDATA ||
                            type == XML_READER_TYPE_WHITESPACE ||
                            type == XML_READER_TYPE_SIGNIFICANT_WHITESPACE)) {
            const char *v = (const char *)xmlTextReaderConstValue(r);
            if (v && (rc = keep_text(&s->text, start, v)))
                break;
        }
    }
    if (rc == BUF_ETOOBIG || rc == BUF_ENOMEM)
        rc = rc == BUF_ETOOBIG ? EXTRACT_ETOOBIG : EXTRACT_EMEMORY;
    if (rc == 0 && in_si)
        rc = EXTRACT_ECORRUPT;
    opc_reader_close(e, r);
    return rc < 0 ? rc : 0;
}

/* ---- dates ---------------------------------------------------------------
 *
 * A workbook stores a date as a number of days (the time as its fraction)
 * and says it is a date only through the cell's style: <c s="N"> names
 * entry N of xl/styles.xml's <cellXfs>, whose numFmtId is a built-in date
 * or time format (14-22, 27-36, 45-47, 50-58) or one of <numFmts> whose
 * code has date or time letters outside quotes and brackets. Such cells
 * are written as ISO dates: 2024-03-01, 2024-03-01 14:30, 14:30:05. */

enum { XF_NUMBER = 0, XF_DATE = 1, XF_TIME = 2, XF_DATETIME = 3 };
#define XLSX_XF_MAX 65536        /* cell formats kept; later ones are numbers */
#define XLSX_NUMFMT_MAX 4096     /* custom number formats looked at */

typedef struct {
    unsigned char *xf;           /* per cell format: XF_* */
    size_t n_xf;
    bool date1904;               /* the workbook counts from 1904-01-01 */
} styles_t;

static int builtin_kind(long id)
{
    if ((id >= 14 && id <= 17) || (id >= 27 && id <= 31) || (id >= 34 && id <= 36) ||
        (id >= 50 && id <= 58))
        return XF_DATE;
    if ((id >= 18 && id <= 21) || (id >= 32 && id <= 33) || (id >= 45 && id <= 47))
        return XF_TIME;
    return id == 22 ? XF_DATETIME : XF_NUMBER;
}

/* What a custom format code shows: date and time letters outside "quoted
 * text", [colours and locales] (but [h], [m], [s] elapsed time counts),
 * \escaped and _padded characters. */
static int code_kind(const char *code)
{
    bool date = false, time = false;
    for (const char *p = code; *p; p++) {
        char ch = *p;
        if (ch == '"') {
            const char *q = strchr(p + 1, '"');
            if (!q)
                break;
            p = q;
        } else if (ch == '\\' || ch == '_' || ch == '*') {
            if (!p[1])
                break;
            p++;
        } else if (ch == '[') {
            const char *q = strchr(p + 1, ']');
            if (!q)
                break;
            char c1 = (char)(p[1] | 0x20);
            size_t len = (size_t)(q - p - 1);
            if (len && (c1 == 'h' || c1 == 'm' || c1 == 's') && strspn(p + 1, "hHmMsS") == len)
                time = true;
            p = q;
        } else {
            switch (ch | 0x20) {
            case 'y': case 'd': date = true; break;
            case 'h': case 's': time = true; break;
            default: break;
            }
        }
    }
    return date && time ? XF_DATETIME : date ? XF_DATE : time ? XF_TIME : XF_NUMBER;
}

static long attr_long(xmlTextReaderPtr r, const char *name, long none)
{
    xmlChar *v = xmlTextReaderGetAttribute(r, BAD_CAST name);
    char *end = NULL;
    long n = v ? strtol((const char *)v, &end, 10) : none;
    if (v && (end == (char *)v || *end))
        n = none;
    xmlFree(v);
    return n;
}

/* Read the cell formats of part (may be NULL or missing: no dates). */
static int styles_read(zipread_t *z, const char *part, styles_t *st)
{
    if (!part || !zipread_exists(z, part))
        return 0;
    zipread_entry_t *e;
    xmlTextReaderPtr r;
    int rc = opc_reader_open(z, part, &e, &r);
    if (rc)
        return rc;
    long custom_id[XLSX_NUMFMT_MAX];
    unsigned char custom_kind[XLSX_NUMFMT_MAX];
    size_t n_custom = 0, cap = 0;
    bool in_xfs = false;
    while ((rc = opc_reader_next(e, r, false)) == 1) {
        int type = xmlTextReaderNodeType(r);
        if (type == XML_READER_TYPE_END_ELEMENT && named(r, "cellXfs")) {
            in_xfs = false;
            continue;
        }
        if (type != XML_READER_TYPE_ELEMENT)
            continue;
        if (named(r, "numFmt") && n_custom < XLSX_NUMFMT_MAX) {
            xmlChar *code = xmlTextReaderGetAttribute(r, BAD_CAST "formatCode");
            custom_id[n_custom] = attr_long(r, "numFmtId", -1);
            custom_kind[n_custom++] =
                code ? (unsigned char)code_kind((const char *)code) : XF_NUMBER;
            xmlFree(code);
        } else if (named(r, "cellXfs")) {
            in_xfs = !xmlTextReaderIsEmptyElement(r);
        } else if (in_xfs && named(r, "xf") && st->n_xf < XLSX_XF_MAX) {
            long id = attr_long(r, "numFmtId", 0);
            int kind = builtin_kind(id);
            for (size_t i = 0; i < n_custom; i++)
                if (custom_id[i] == id)
                    kind = custom_kind[i];
            if (st->n_xf == cap) {
                cap = cap ? cap * 2 : 64;
                unsigned char *v = realloc(st->xf, cap);
                if (!v) {
                    rc = EXTRACT_EMEMORY;
                    break;
                }
                st->xf = v;
            }
            st->xf[st->n_xf++] = (unsigned char)kind;
        }
    }
    opc_reader_close(e, r);
    return rc < 0 ? rc : 0;
}

/* The civil date of a count of days since 1970-01-01 (proleptic
 * Gregorian). */
static void civil(long long z, long long *y, int *m, int *d)
{
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Write serial (days, as the workbook stores them) as kind into out
 * (at least 32 bytes); false when it is no date (not a number, or out of
 * the years 1900..9999). */
static bool serial_text(const char *serial, int kind, bool date1904, char *out, size_t cap)
{
    char *end;
    double v = strtod(serial, &end);
    if (end == serial || *end || !(v >= 0 && v < 2958466))
        return false;
    long long days = (long long)v;
    long long secs = (long long)((v - (double)days) * 86400.0 + 0.5);
    if (secs >= 86400) {
        days++;
        secs -= 86400;
    }
    /* 1900 system: day 1 is 1900-01-01, and day 60 the 29 February 1900
     * that never was; from day 61 on, days count from 1899-12-30 */
    long long unix_days = date1904 ? days - 24107 : days < 61 ? days - 25568 : days - 25569;
    long long y;
    int m, d;
    civil(unix_days, &y, &m, &d);
    int hh = (int)(secs / 3600), mi = (int)(secs / 60 % 60), ss = (int)(secs % 60);
    char t[16];
    if (ss)
        snprintf(t, sizeof t, "%02d:%02d:%02d", hh, mi, ss);
    else
        snprintf(t, sizeof t, "%02d:%02d", hh, mi);
    if (kind == XF_TIME)
        snprintf(out, cap, "%s", t);
    else if (kind == XF_DATETIME && secs)
        snprintf(out, cap, "%04lld-%02d-%02d %s", y, m, d, t);
    else
        snprintf(out, cap, "%04lld-%02d-%02d", y, m, d);
    return true;
}

/* Column of a cell reference ("AB12" -> 27), SHEET_NEXT when none. */
static unsigned long ref_column(const char *ref)
{
    unsigned long c = 0;
    int k = 0;
    for (; ref[k] >= 'A' && ref[k] <= 'Z' && k < 4; k++)
        c = c * 26 + (unsigned long)(ref[k] - 'A' + 1);
    return k == 0 ? SHEET_NEXT : c - 1;
}

typedef struct {
    sheet_t *sheet;
    const strings_t *strings;
    buf_t v;                 /* the cell's <v> or inline text */
    char type[16];           /* its t attribute */
    int kind;                /* XF_* of its s attribute */
    const styles_t *styles;
    unsigned long col;
    bool in_cell, in_v, in_is_t;
    int rph;
} cells_t;

static void cell_end(cells_t *c)
{
    char date[48];
    const char *text = c->v.data ? c->v.data : "";
    size_t n = c->v.len;
    if (strcmp(c->type, "s") == 0) {
        text = string_get(c->strings, text);
        n = strlen(text);
    } else if (strcmp(c->type, "b") == 0) {
        text = strcmp(text, "1") == 0 ? "TRUE" : strcmp(text, "0") == 0 ? "FALSE" : text;
        n = strlen(text);
    } else if (strcmp(c->type, "n") == 0 && c->kind != XF_NUMBER &&
               serial_text(text, c->kind, c->styles->date1904, date, sizeof date)) {
        text = date;
        n = strlen(text);
    }
    sheet_cell(c->sheet, c->col, text, n, 1);
    c->in_cell = false;
}

/* Stream one worksheet part into the sheet writer. */
static int sheet_read(zipread_t *z, const char *part, cells_t *c)
{
    zipread_entry_t *e;
    xmlTextReaderPtr r;
    int rc = opc_reader_open(z, part, &e, &r);
    if (rc)
        return rc;
    bool in_data = false;
    while ((rc = opc_reader_next(e, r, false)) == 1) {
        int rcs = c->sheet->tbl.err ? c->sheet->tbl.err : textout_error(c->sheet->out);
        if (rcs) {
            rc = rcs;
            break;
        }
        int type = xmlTextReaderNodeType(r);
        if (type == XML_READER_TYPE_ELEMENT) {
            bool empty = xmlTextReaderIsEmptyElement(r);
            if (named(r, "sheetData")) {
                in_data = !empty;
            } else if (!in_data) {
                continue;
            } else if (named(r, "row")) {
                sheet_row(c->sheet);
                if (empty)
                    sheet_row_end(c->sheet, 1);
            } else if (named(r, "c")) {
                xmlChar *t = xmlTextReaderGetAttribute(r, BAD_CAST "t");
                xmlChar *ref = xmlTextReaderGetAttribute(r, BAD_CAST "r");
                snprintf(c->type, sizeof c->type, "%s", t ? (const char *)t : "n");
                long xf = attr_long(r, "s", 0);
                c->kind = xf >= 0 && (size_t)xf < c->styles->n_xf ? c->styles->xf[xf] : XF_NUMBER;
                c->col = ref ? ref_column((const char *)ref) : SHEET_NEXT;
                xmlFree(t);
                xmlFree(ref);
                buf_reset(&c->v);
                c->in_cell = true;
                c->rph = 0;
                if (empty)
                    cell_end(c);
            } else if (c->in_cell && named(r, "v") && !empty) {
                c->in_v = true;
            } else if (c->in_cell && named(r, "rPh") && !empty) {
                c->rph++;
            } else if (c->in_cell && named(r, "t") && !empty) {
                c->in_is_t = c->rph == 0;
            }
        } else if (type == XML_READER_TYPE_END_ELEMENT) {
            if (named(r, "sheetData"))
                in_data = false;
            else if (!in_data)
                continue;
            else if (named(r, "row"))
                sheet_row_end(c->sheet, 1);
            else if (named(r, "c") && c->in_cell)
                cell_end(c);
            else if (named(r, "v"))
                c->in_v = false;
            else if (named(r, "t"))
                c->in_is_t = false;
            else if (named(r, "rPh") && c->rph > 0)
                c->rph--;
        } else if ((c->in_v || c->in_is_t) && c->in_cell &&
                   (type == XML_READER_TYPE_TEXT || type == XML_READER_TYPE_CDATA ||
                    type == XML_READER_TYPE_WHITESPACE ||
                    type == XML_READER_TYPE_SIGNIFICANT_WHITESPACE)) {
            const char *v = (const char *)xmlTextReaderConstValue(r);
            if (v && (rc = keep_text(&c->v, 0, v)))
                break;
        }
    }
    opc_reader_close(e, r);
    return rc < 0 ? rc : 0;
}

typedef struct {
    char *name, *rid;
} sheet_ref_t;

/* The sheets of xl/workbook.xml, in order, and its date system. */
static int workbook_read(zipread_t *z, const char *part, sheet_ref_t *v, size_t *n,
                         bool *date1904)
{
    zipread_entry_t *e;
    xmlTextReaderPtr r;
    int rc = opc_reader_open(z, part, &e, &r);
    if (rc)
        return rc;
    while ((rc = opc_reader_next(e, r, false)) == 1) {
        if (xmlTextReaderNodeType(r) != XML_READER_TYPE_ELEMENT)
            continue;
        if (named(r, "workbookPr")) {
            xmlChar *d = xmlTextReaderGetAttribute(r, BAD_CAST "date1904");
            *date1904 =
                d && (strcmp((const char *)d, "1") == 0 || strcmp((const char *)d, "true") == 0);
            xmlFree(d);
            continue;
        }
        if (!named(r, "sheet"))
            continue;
        if (*n >= XLSX_SHEETS_MAX) {
            rc = EXTRACT_ECORRUPT;
            break;
        }
        xmlChar *name = xmlTextReaderGetAttribute(r, BAD_CAST "name");
        xmlChar *rid = xmlTextReaderGetAttributeNs(
            r, BAD_CAST "id",
            BAD_CAST "http://schemas.openxmlformats.org/officeDocument/2006/relationships");
        if (!rid)
            rid = xmlTextReaderGetAttributeNs(
                r, BAD_CAST "id", BAD_CAST "http://purl.oclc.org/ooxml/officeDocument/relationships");
        if (rid) {
            v[*n].name = strdup(name ? (const char *)name : "Sheet");
            v[*n].rid = strdup((const char *)rid);
            if (!v[*n].name || !v[*n].rid) {
                free(v[*n].name);
                free(v[*n].rid);
                rc = EXTRACT_EMEMORY;
            } else {
                (*n)++;
            }
        }
        xmlFree(name);
        xmlFree(rid);
        if (rc < 0)
            break;
    }
    opc_reader_close(e, r);
    return rc < 0 ? rc : 0;
}

int xlsx_extract(int fd, textout_t *out)
{
    zipread_t *z = NULL;
    int rc = zipread_open(fd, &z);
    if (rc)
        return rc;
    xml_quiet_init();
    const char *wb = "xl/workbook.xml";
    opc_rels_t rels = { 0 };
    strings_t strings = { 0 };
    sheet_ref_t *refs = calloc(XLSX_SHEETS_MAX, sizeof *refs);
    size_t n_refs = 0;
    sheet_t sheet;
    sheet_init(&sheet, out);
    styles_t styles = { 0 };
    cells_t cells = { .sheet = &sheet, .strings = &strings, .styles = &styles };
    buf_init(&cells.v, STRING_KEEP + 8);
    if (!refs)
        rc = EXTRACT_EMEMORY;
    if (!rc)
        rc = opc_rels_read(z, wb, &rels);
    if (!rc) {
        const opc_rel_t *sst = opc_rels_find_type(&rels, "/sharedStrings");
        rc = strings_read(z, sst ? sst->target : "xl/sharedStrings.xml", &strings);
    }
    if (!rc) {
        const opc_rel_t *sty = opc_rels_find_type(&rels, "/styles");
        rc = styles_read(z, sty ? sty->target : "xl/styles.xml", &styles);
    }
    if (!rc)
        rc = workbook_read(z, wb, refs, &n_refs, &styles.date1904);
    for (size_t i = 0; !rc && i < n_refs; i++) {
        const opc_rel_t *rel = opc_rels_find(&rels, refs[i].rid);
        if (!rel || !zipread_exists(z, rel->target) ||
            (strlen(rel->type) >= 10 && strstr(rel->type, "/chartsheet")))
            continue;
        sheet_begin(&sheet, refs[i].name, strlen(refs[i].name));
        rc = sheet_read(z, rel->target, &cells);
        if (!rc)
            rc = sheet_end(&sheet);
    }
    if (!rc)
        rc = sheet.tbl.err ? sheet.tbl.err : textout_error(out);
    for (size_t i = 0; i < n_refs; i++) {
        free(refs[i].name);
        free(refs[i].rid);
    }
    free(refs);
    buf_cleanup(&cells.v);
    sheet_cleanup(&sheet);
    strings_cleanup(&strings);
    free(styles.xf);
    opc_rels_cleanup(&rels);
    zipread_close(z);
    return rc;
}
