/* opc.c — see opc.h. */
#include "extract/opc.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/xmlerror.h>

#include "extract/extract.h"
#include "extract/xmlquiet.h"

#define NS_PKG_RELS "http://schemas.openxmlformats.org/package/2006/relationships"

static int read_entry(void *ctx, char *buf, int len)
{
    ssize_t k = zipread_entry_read(ctx, buf, len > 0 ? (size_t)len : 0);
    return k < 0 ? -1 : (int)k;
}

static const int xml_opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;

int opc_reader_open(zipread_t *z, const char *name, zipread_entry_t **e, xmlTextReaderPtr *r)
{
    *e = NULL;
    *r = NULL;
    int rc = zipread_entry_open(z, name, e);
    if (rc)
        return rc;
    xmlResetLastError();
    *r = xmlReaderForIO(read_entry, NULL, *e, NULL, NULL, xml_opts);
    if (!*r) {
        zipread_entry_close(*e);
        *e = NULL;
        return EXTRACT_EMEMORY;
    }
    return 0;
}

void opc_reader_close(zipread_entry_t *e, xmlTextReaderPtr r)
{
    if (r)
        xmlFreeTextReader(r);
    zipread_entry_close(e);
}

static int failure(zipread_entry_t *e)
{
    if (e && zipread_entry_error(e))
        return zipread_entry_error(e);
    const xmlError *xe = xmlGetLastError();
    return (xe && xe->code == XML_ERR_NO_MEMORY) ? EXTRACT_EMEMORY : EXTRACT_ECORRUPT;
}

int opc_reader_next(zipread_entry_t *e, xmlTextReaderPtr r, bool skip)
{
    int rc = skip ? xmlTextReaderNext(r) : xmlTextReaderRead(r);
    if (rc < 0)
        return failure(e);
    if (rc == 1 && xmlTextReaderNodeType(r) == XML_READER_TYPE_DOCUMENT_TYPE)
        return EXTRACT_ECORRUPT;
    return rc;
}

/* The .rels part name of `part`: "a/b/c.xml" -> "a/b/_rels/c.xml.rels". */
static bool rels_name(const char *part, char *out, size_t cap)
{
    const char *slash = strrchr(part, '/');
    size_t dir = slash ? (size_t)(slash - part + 1) : 0;
    int k = snprintf(out, cap, "%.*s_rels/%s.rels", (int)dir, part, part + dir);
    return k > 0 && (size_t)k < cap;
}

/* Resolve target against the folder of `part` into out; false when it
 * does not fit or climbs out of the package. */
static bool resolve(const char *part, const char *target, char *out, size_t cap)
{
    size_t n = 0;
    if (target[0] == '/') {
        target++;
    } else {
        const char *slash = strrchr(part, '/');
        n = slash ? (size_t)(slash - part + 1) : 0;
        if (n >= cap)
            return false;
        memcpy(out, part, n);
    }
    out[n] = '\0';
    const char *p = target;
    while (*p) {
        const char *q = strchr(p, '/');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            if (n == 0)
                return false;
            n--;   /* drop the trailing '/', then the last segment */
            while (n > 0 && out[n - 1] != '/')
                n--;
        } else if (!(len == 1 && p[0] == '.') && len > 0) {
            if (n + len + 2 > cap)
                return false;
            memcpy(out + n, p, len);
            n += len;
            if (q)
                out[n++] = '/';
        }
        out[n] = '\0';
        p = q ? q + 1 : p + len;
    }
    return n > 0;
}

static char *attr(xmlTextReaderPtr r, const char *name)
{
    xmlChar *v = xmlTextReaderGetAttribute(r, BAD_CAST name);
    char *s = strdup(v ? (const char *)v : "");
    xmlFree(v);
    return s;
}

int opc_rels_read(zipread_t *z, const char *part, opc_rels_t *rels)
{
    rels->v = NULL;
    rels->n = 0;
    char name[OPC_NAME_MAX + 16];
    if (!rels_name(part, name, sizeof name))
        return EXTRACT_ECORRUPT;
    if (!zipread_exists(z, name))
        return 0;
    char *data = NULL;
    size_t len = 0;
    int rc = zipread_read_all(z, name, OPC_RELS_XML_MAX, &data, &len);
    if (rc)
        return rc == EXTRACT_EBOMB ? EXTRACT_ECORRUPT : rc;
    xmlResetLastError();
    xmlTextReaderPtr r = xmlReaderForMemory(data, (int)len, NULL, NULL, xml_opts);
    if (!r) {
        free(data);
        return EXTRACT_EMEMORY;
    }
    size_t cap = 0;
    while ((rc = opc_reader_next(NULL, r, false)) == 1) {
        if (xmlTextReaderNodeType(r) != XML_READER_TYPE_ELEMENT)
            continue;
        const char *local = (const char *)xmlTextReaderConstLocalName(r);
        if (!local || strcmp(local, "Relationship") != 0)
            continue;
        char *mode = attr(r, "TargetMode");
        bool external = mode && strcmp(mode, "External") == 0;
        free(mode);
        if (external)
            continue;
        if (rels->n >= OPC_RELS_MAX) {
            rc = EXTRACT_ECORRUPT;
            break;
        }
        if (rels->n == cap) {
            cap = cap ? cap * 2 : 16;
            opc_rel_t *v = realloc(rels->v, cap * sizeof *v);
            if (!v) {
                rc = EXTRACT_EMEMORY;
                break;
            }
            rels->v = v;
        }
        char *target = attr(r, "Target");
        char resolved[OPC_NAME_MAX];
        opc_rel_t rel = { attr(r, "Id"), attr(r, "Type"), NULL };
        if (target && resolve(part, target, resolved, sizeof resolved))
            rel.target = strdup(resolved);
        free(target);
        if (!rel.id || !rel.type || !rel.target) {
            free(rel.id);
            free(rel.type);
            free(rel.target);
            continue;   /* unusable: as if absent */
        }
        rels->v[rels->n++] = rel;
    }
    xmlFreeTextReader(r);
    free(data);
    return rc < 0 ? rc : 0;
}

const opc_rel_t *opc_rels_find(const opc_rels_t *rels, const char *id)
{
    for (size_t i = 0; id && i < rels->n; i++)
        if (strcmp(rels->v[i].id, id) == 0)
            return &rels->v[i];
    return NULL;
}

const opc_rel_t *opc_rels_find_type(const opc_rels_t *rels, const char *suffix)
{
    size_t k = strlen(suffix);
    for (size_t i = 0; i < rels->n; i++) {
        size_t n = strlen(rels->v[i].type);
        if (n >= k && strcmp(rels->v[i].type + n - k, suffix) == 0)
            return &rels->v[i];
    }
    return NULL;
}

void opc_rels_cleanup(opc_rels_t *rels)
{
    if (!rels)
        return;
    for (size_t i = 0; i < rels->n; i++) {
        free(rels->v[i].id);
        free(rels->v[i].type);
        free(rels->v[i].target);
    }
    free(rels->v);
    rels->v = NULL;
    rels->n = 0;
}
