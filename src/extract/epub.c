/* epub.c — see epub.h. */
#include "extract/epub.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/xmlerror.h>
#include <libxml/xmlreader.h>

#include "extract/extract.h"
#include "extract/html.h"
#include "extract/zipread.h"

#define NS_CONTAINER "urn:oasis:names:tc:opendocument:xmlns:container"
#define NS_OPF "http://www.idpf.org/2007/opf"
#define NS_XMLENC "http://www.w3.org/2001/04/xmlenc#"

#define META_MAX ((size_t)16 << 20)   /* container, OPF, encryption.xml */
#define PATH_MAX_LEN 1024             /* longest entry name we resolve */
#define ITEMS_MAX ZIPREAD_ENTRIES_MAX

typedef struct {
    char *id;
    char *href;
    char *media_type;
} item_t;

typedef struct {
    item_t *items;      /* manifest, owned */
    size_t n_items;
    char **spine;       /* idrefs in reading order, owned */
    size_t n_spine;
} package_t;

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

static void package_cleanup(package_t *p)
{
    for (size_t i = 0; i < p->n_items; i++) {
        xmlFree(p->items[i].id);
        xmlFree(p->items[i].href);
        xmlFree(p->items[i].media_type);
    }
    free(p->items);
    for (size_t i = 0; i < p->n_spine; i++)
        xmlFree(p->spine[i]);
    free(p->spine);
}

static xmlTextReaderPtr reader_for(const char *data, size_t len)
{
    return xmlReaderForMemory(data, (int)len, NULL, NULL,
                              XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static bool is_element(xmlTextReaderPtr r, const char *ns, const char *name)
{
    const xmlChar *u = xmlTextReaderConstNamespaceUri(r);
    const xmlChar *l = xmlTextReaderConstLocalName(r);
    return xmlTextReaderNodeType(r) == XML_READER_TYPE_ELEMENT && u && l &&
           strcmp((const char *)u, ns) == 0 && strcmp((const char *)l, name) == 0;
}

/* DRM check. Returns 0 (sets *drm) or an EXTRACT_* code. */
static int check_encryption(zipread_t *z, bool *drm)
{
    static const char *const font_obfuscation[] = {
        "http://www.idpf.org/2008/embedding",
        "http://ns.adobe.com/pdf/enc#RC",
    };
    *drm = false;
    if (!zipread_exists(z, "META-INF/encryption.xml"))
        return 0;
    char *data;
    size_t len;
    int rc = zipread_read_all(z, "META-INF/encryption.xml", META_MAX, &data, &len);
    if (rc)
        return rc;
    xmlTextReaderPtr r = reader_for(data, len);
    if (!r) {
        free(data);
        return EXTRACT_EMEMORY;
    }
    int ret;
    while ((ret = xmlTextReaderRead(r)) == 1) {
        if (!is_element(r, NS_XMLENC, "EncryptionMethod"))
            continue;
        xmlChar *alg = xmlTextReaderGetAttribute(r, BAD_CAST "Algorithm");
        bool font = false;
        for (size_t i = 0; alg && i < 2; i++)
            font = font || strcmp((const char *)alg, font_obfuscation[i]) == 0;
        xmlFree(alg);
        if (!font)
            *drm = true;
    }
    xmlFreeTextReader(r);
    free(data);
    /* An unreadable encryption.xml cannot vouch for the book either. */
    return ret < 0 ? EXTRACT_EENCRYPTED : 0;
}

/* The OPF path named by META-INF/container.xml, malloc'd into *path. */
static int find_opf(zipread_t *z, char **path)
{
    *path = NULL;
    char *data;
    size_t len;
    int rc = zipread_read_all(z, "META-INF/container.xml", META_MAX, &data, &len);
    if (rc)
        return rc;
    xmlTextReaderPtr r = reader_for(data, len);
    if (!r) {
        free(data);
        return EXTRACT_EMEMORY;
    }
    while (!*path && xmlTextReaderRead(r) == 1) {
        if (!is_element(r, NS_CONTAINER, "rootfile"))
            continue;
        xmlChar *mt = xmlTextReaderGetAttribute(r, BAD_CAST "media-type");
        xmlChar *fp = xmlTextReaderGetAttribute(r, BAD_CAST "full-path");
        if (fp && (!mt || strcmp((const char *)mt, "application/oebps-package+xml") == 0))
            *path = strdup((const char *)fp);
        xmlFree(mt);
        xmlFree(fp);
    }
    xmlFreeTextReader(r);
    free(data);
    return *path ? 0 : EXTRACT_ECORRUPT;
}

static int grow(void **arr, size_t n, size_t size)
{
    if (n >= ITEMS_MAX)
        return EXTRACT_EBOMB;
    if ((n & (n - 1)) == 0) {    /* n is 0 or a power of two: double */
        void *p = realloc(*arr, (n ? n * 2 : 16) * size);
        if (!p)
            return EXTRACT_EMEMORY;
        *arr = p;
    }
    return 0;
}

/* Items sorted by id (those without one last), so that a spine of
 * thousands of entries costs n log n, not n squared. */
static int item_cmp(const void *a, const void *b)
{
    const char *x = ((const item_t *)a)->id, *y = ((const item_t *)b)->id;
    if (!x || !y)
        return !x - !y;
    return strcmp(x, y);
}

static int id_cmp(const void *key, const void *item)
{
    const char *id = ((const item_t *)item)->id;
    return id ? strcmp(key, id) : -1;
}

static int parse_opf(const char *data, size_t len, package_t *p)
{
    xmlTextReaderPtr r = reader_for(data, len);
    if (!r)
        return EXTRACT_EMEMORY;
    int ret, rc = 0;
    while (!rc && (ret = xmlTextReaderRead(r)) == 1) {
        if (is_element(r, NS_OPF, "item")) {
            rc = grow((void **)&p->items, p->n_items, sizeof *p->items);
            if (rc)
                break;
            item_t *it = &p->items[p->n_items++];
            it->id = (char *)xmlTextReaderGetAttribute(r, BAD_CAST "id");
            it->href = (char *)xmlTextReaderGetAttribute(r, BAD_CAST "href");
            it->media_type = (char *)xmlTextReaderGetAttribute(r, BAD_CAST "media-type");
        } else if (is_element(r, NS_OPF, "itemref")) {
            xmlChar *idref = xmlTextReaderGetAttribute(r, BAD_CAST "idref");
            if (!idref)
                continue;
            rc = grow((void **)&p->spine, p->n_spine, sizeof *p->spine);
            if (rc) {
                xmlFree(idref);
                break;
            }
            p->spine[p->n_spine++] = (char *)idref;
        }
    }
    if (!rc && ret < 0)
        rc = EXTRACT_ECORRUPT;
    xmlFreeTextReader(r);
    if (!rc && p->n_items > 1)
        qsort(p->items, p->n_items, sizeof *p->items, item_cmp);
    return rc;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Resolve href (a relative URL) against the folder of the OPF into out
 * (PATH_MAX_LEN bytes): percent-decoded, fragment dropped, "." and ".."
 * segments applied. Returns false when it does not fit or leaves the
 * archive's root. */
static bool resolve(const char *opf, const char *href, char *out)
{
    char joined[2 * PATH_MAX_LEN];
    const char *slash = strrchr(opf, '/');
    size_t dir = slash ? (size_t)(slash - opf) + 1 : 0;
    size_t n = 0;
    if (href[0] == '/') {   /* absolute within the container */
        href++;
        dir = 0;
    }
    if (dir >= PATH_MAX_LEN)
        return false;
    memcpy(joined, opf, dir);
    n = dir;
    for (const char *h = href; *h && *h != '#' && *h != '?'; h++) {
        if (n + 1 >= sizeof joined)
            return false;
        int hi, lo;
        if (*h == '%' && (hi = hexval(h[1])) >= 0 && (lo = hexval(h[2])) >= 0) {
            joined[n++] = (char)(hi << 4 | lo);
            h += 2;
        } else {
            joined[n++] = *h;
        }
    }
    joined[n] = '\0';
    /* Apply the segments. */
    size_t o = 0;
    char *save = NULL;
    for (char *seg = strtok_r(joined, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
        if (strcmp(seg, ".") == 0)
            continue;
        if (strcmp(seg, "..") == 0) {
            if (o == 0)
                return false;
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;   /* the slash itself */
            continue;
        }
        size_t k = strlen(seg);
        if (o + (o ? 1 : 0) + k + 1 > PATH_MAX_LEN)
            return false;
        if (o)
            out[o++] = '/';
        memcpy(out + o, seg, k);
        o += k;
    }
    out[o] = '\0';
    return o > 0;
}

static const item_t *find_item(const package_t *p, const char *id)
{
    if (p->n_items == 0)
        return NULL;   /* items is NULL then, which bsearch() must not get */
    return bsearch(id, p->items, p->n_items, sizeof *p->items, id_cmp);
}

static bool is_html_type(const char *mt)
{
    return !mt || strcmp(mt, "application/xhtml+xml") == 0 || strcmp(mt, "text/html") == 0;
}

static int read_chapters(zipread_t *z, const char *opf, const package_t *p, textout_t *out)
{
    size_t done = 0;
    for (size_t i = 0; i < p->n_spine; i++) {
        const item_t *it = find_item(p, p->spine[i]);
        char path[PATH_MAX_LEN];
        if (!it || !it->href || !is_html_type(it->media_type) || !resolve(opf, it->href, path) ||
            !zipread_exists(z, path))
            continue;
        char *data;
        size_t len;
        int rc = zipread_read_all(z, path, ZIPREAD_ENTRY_MAX, &data, &len);
        if (rc == EXTRACT_ECORRUPT)
            continue;   /* one damaged chapter should not lose the book */
        if (rc)
            return rc;
        rc = html_extract_memory((const unsigned char *)data, len, out);
        free(data);
        if (rc == EXTRACT_ECORRUPT)
            continue;
        if (rc)
            return rc;
        textout_blank_line(out);
        done++;
    }
    if (textout_error(out))
        return textout_error(out);
    return done ? 0 : EXTRACT_ECORRUPT;
}

int epub_extract(int fd, textout_t *out)
{
    zipread_t *z = NULL;
    int rc = zipread_open(fd, &z);
    if (rc)
        return rc;
    xmlInitParser();
    xmlSetGenericErrorFunc(NULL, silent);
    xmlSetStructuredErrorFunc(NULL, silent_structured);

    char *opf = NULL, *data = NULL;
    size_t len = 0;
    package_t pkg = { 0 };
    bool drm = false;
    rc = check_encryption(z, &drm);
    if (!rc && drm)
        rc = EXTRACT_EENCRYPTED;
    if (!rc)
        rc = find_opf(z, &opf);
    if (!rc)
        rc = zipread_read_all(z, opf, META_MAX, &data, &len);
    if (!rc)
        rc = parse_opf(data, len, &pkg);
    if (!rc)
        rc = read_chapters(z, opf, &pkg, out);
    package_cleanup(&pkg);
    free(data);
    free(opf);
    zipread_close(z);
    return rc;
}
