/* epub.c — see epub.h. */
#include "extract/epub.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/xmlerror.h>
#include <libxml/xmlreader.h>

#include "extract/codepoint.h"
#include "extract/extract.h"
#include "extract/html.h"
#include "extract/zipread.h"
#include "extract/xmlquiet.h"

#define NS_CONTAINER "urn:oasis:names:tc:opendocument:xmlns:container"
#define NS_OPF "http://www.idpf.org/2007/opf"
#define NS_XMLENC "http://www.w3.org/2001/04/xmlenc#"
#define NS_XHTML "http://www.w3.org/1999/xhtml"
#define NS_OPS "http://www.idpf.org/2007/ops"
#define NS_NCX "http://www.daisy.org/z3986/2005/ncx/"

#define META_MAX ((size_t)16 << 20)   /* container, OPF, encryption.xml */
#define PATH_MAX_LEN 1024             /* longest entry name we resolve */
#define ITEMS_MAX ZIPREAD_ENTRIES_MAX
#define NAV_ENTRIES_MAX 65536         /* entries of one list (TOC, page list) */
#define NAV_TITLE_READ HTML_TITLE_READ   /* bytes of an entry's title read */
#define PAGE_LABEL_KEEP 256           /* bytes of a page label kept to compare */

typedef struct {
    char *id;
    char *href;
    char *media_type;
    char *properties;
} item_t;

typedef struct {
    item_t *items;      /* manifest, owned */
    size_t n_items;
    char **spine;       /* idrefs in reading order, owned */
    size_t n_spine;
    char *toc;          /* spine@toc: the NCX's id, owned, may be NULL */
} package_t;

/* An entry of the table of contents or of the page list, once its href is
 * known to name a chapter. */
typedef struct {
    size_t chapter;     /* its index in the spine */
    size_t order;       /* its place in the list */
    int level;          /* TOC: nesting depth, 1 at the top; page list: 0 */
    bool done;          /* its id was met (targets with an id are used once) */
    bool at_start;      /* its id was met before the chapter's first text */
    char *id;           /* the fragment, %-decoded, owned; NULL: the chapter's start */
    char *title;        /* TOC: the title; page list: the label; owned */
} target_t;

typedef struct {
    target_t *v;        /* sorted by chapter, then id (NULL first), then order */
    size_t n;
    size_t at;          /* the first not yet behind the chapters read */
} list_t;

/* A chapter's path, to find the chapter an href names. */
typedef struct {
    char *path;         /* owned */
    size_t spine;
} doc_t;

/* The last page marked by one source (page list, in-text page breaks). */
typedef struct {
    bool valid;
    size_t offset;
    char label[PAGE_LABEL_KEEP + 1];
} page_seen_t;

/* What the book's navigation adds to its chapters. */
typedef struct {
    doc_t *docs;        /* the spine's (X)HTML chapters, sorted by path */
    size_t n_docs;
    list_t toc, pages;
    page_seen_t from_list, from_breaks;
} book_t;

static void package_cleanup(package_t *p)
{
    for (size_t i = 0; i < p->n_items; i++) {
        xmlFree(p->items[i].id);
        xmlFree(p->items[i].href);
        xmlFree(p->items[i].media_type);
        xmlFree(p->items[i].properties);
    }
    free(p->items);
    for (size_t i = 0; i < p->n_spine; i++)
        xmlFree(p->spine[i]);
    free(p->spine);
    xmlFree(p->toc);
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

/* Make room in *arr (n used) for one more; at most max. */
static int grow(void **arr, size_t n, size_t size, size_t max)
{
    if (n >= max)
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
            rc = grow((void **)&p->items, p->n_items, sizeof *p->items, ITEMS_MAX);
            if (rc)
                break;
            item_t *it = &p->items[p->n_items++];
            it->id = (char *)xmlTextReaderGetAttribute(r, BAD_CAST "id");
            it->href = (char *)xmlTextReaderGetAttribute(r, BAD_CAST "href");
            it->media_type = (char *)xmlTextReaderGetAttribute(r, BAD_CAST "media-type");
            it->properties = (char *)xmlTextReaderGetAttribute(r, BAD_CAST "properties");
        } else if (is_element(r, NS_OPF, "spine") && !p->toc) {
            p->toc = (char *)xmlTextReaderGetAttribute(r, BAD_CAST "toc");
        } else if (is_element(r, NS_OPF, "itemref")) {
            xmlChar *idref = xmlTextReaderGetAttribute(r, BAD_CAST "idref");
            if (!idref)
                continue;
            rc = grow((void **)&p->spine, p->n_spine, sizeof *p->spine, ITEMS_MAX);
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

/* Resolve href (a relative URL) against the folder of base, the entry
 * holding it (the OPF, the nav, the NCX), into out (PATH_MAX_LEN bytes):
 * percent-decoded, fragment dropped, "." and ".." segments applied.
 * Returns false when it does not fit or leaves the archive's root. */
static bool resolve(const char *base, const char *href, char *out)
{
    char joined[2 * PATH_MAX_LEN];
    const char *slash = strrchr(base, '/');
    size_t dir = slash ? (size_t)(slash - base) + 1 : 0;
    size_t n = 0;
    if (href[0] == '/') {   /* absolute within the container */
        href++;
        dir = 0;
    }
    if (dir >= PATH_MAX_LEN)
        return false;
    memcpy(joined, base, dir);
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

/* ---- navigation: table of contents and page list ----------------------------
 *
 * EPUB 3 books have a navigation document (the manifest item with
 * properties "nav"): <nav epub:type="toc"> and <nav epub:type="page-list">,
 * each an <ol> of <li><a href>, the TOC's nested for its levels. EPUB 2
 * books have an NCX (spine@toc, else the manifest's
 * application/x-dtbncx+xml item): navMap/navPoint, nested, and
 * pageList/pageTarget, each with navLabel/text and content@src. Each list
 * comes from the nav when that has one, else from the NCX. An href is
 * resolved against the file that holds it; external ones, and ones naming
 * no (X)HTML chapter of the spine, are left out. All of it is optional: a
 * file that is missing, malformed (strict XML), too large (META_MAX) or
 * over NAV_ENTRIES_MAX entries gives no list, never an error, and the text
 * is the same with or without it. Nesting is bounded by libxml2's own
 * depth limit (256 without XML_PARSE_HUGE: past it the file is malformed),
 * levels past 6 count as 6 (textout.h), titles are read to NAV_TITLE_READ
 * bytes.
 */

/* Whether v, split at blanks, holds `word` (case-sensitive, as EPUB's
 * property and type vocabularies are). */
static bool has_word(const char *v, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = v; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        const char *q = p;
        while (*q && *q != ' ' && *q != '\t' && *q != '\n' && *q != '\r')
            q++;
        if ((size_t)(q - p) == wl && strncmp(p, word, wl) == 0)
            return true;
        p = q;
    }
    return false;
}

/* An href with a scheme ("http:", "mailto:") or a host ("//host/"). */
static bool is_external(const char *href)
{
    if (href[0] == '/' && href[1] == '/')
        return true;
    const char *p = href;
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
        return false;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '+' || *p == '-' || *p == '.')
        p++;
    return *p == ':';
}

/* s %-decoded, malloc'd (caller frees); NULL when memory runs out. */
static char *percent_decode(const char *s)
{
    char *out = malloc(strlen(s) + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    for (; *s; s++) {
        int hi, lo;
        if (*s == '%' && (hi = hexval(s[1])) >= 0 && (lo = hexval(s[2])) >= 0) {
            out[n++] = (char)(hi << 4 | lo);
            s += 2;
        } else {
            out[n++] = *s;
        }
    }
    out[n] = '\0';
    return out;
}

/* Copy at most max bytes of s into out (max + 1 bytes), not cutting a
 * character in two. */
static void copy_cut(char *out, const char *s, size_t max)
{
    size_t k = strnlen(s, max);
    if (s[k] != '\0')
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
            k--;
    memcpy(out, s, k);
    out[k] = '\0';
}

/* The next character of *s that tells titles apart, advancing *s: a
 * letter or digit (ASCII folded to lower case), or any other character
 * but ASCII, Latin-1 and general punctuation, symbols and blanks; 0 at the
 * end. */
static uint32_t title_next(const char **s)
{
    const unsigned char *p = (const unsigned char *)*s;
    uint32_t cp = 0;
    while (*p) {
        p += codepoint_decode(p, strnlen((const char *)p, 4), &cp, NULL);
        if (cp >= 'A' && cp <= 'Z')
            cp += 'a' - 'A';
        if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9'))
            break;
        if (cp >= 0xC0 && !(cp >= 0x2000 && cp <= 0x206F) && !(cp >= 0x3000 && cp <= 0x303F) &&
            cp != 0xFEFF && cp != 0xFFFD)
            break;
        cp = 0;
    }
    *s = (const char *)p;
    return cp;
}

/* Whether titles a and b are the same but for case, blanks and
 * punctuation (over the first EXTRACT_MARK_LABEL_MAX characters that
 * count, as a mark keeps no more). */
static bool same_title(const char *a, const char *b)
{
    for (int i = 0; i < EXTRACT_MARK_LABEL_MAX; i++) {
        uint32_t x = title_next(&a), y = title_next(&b);
        if (x != y)
            return false;
        if (x == 0)
            return true;
    }
    return true;
}

/* Whether a title has any character that counts (see title_next). */
static bool has_title(const char *s)
{
    return title_next(&s) != 0;
}

static void list_cleanup(list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].id);
        free(l->v[i].title);
    }
    free(l->v);
    *l = (list_t){ 0 };
}

static void book_cleanup(book_t *b)
{
    for (size_t i = 0; i < b->n_docs; i++)
        free(b->docs[i].path);
    free(b->docs);
    b->docs = NULL;
    b->n_docs = 0;
    list_cleanup(&b->toc);
    list_cleanup(&b->pages);
}

static int doc_cmp(const void *a, const void *b)
{
    const doc_t *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    return c ? c : (x->spine > y->spine) - (x->spine < y->spine);
}

/* The (X)HTML chapters of the spine by path into b->docs. Returns false
 * when memory runs out (b->docs is then empty). */
static bool index_chapters(book_t *b, const char *opf, const package_t *p)
{
    if (p->n_spine == 0)
        return true;
    b->docs = malloc(p->n_spine * sizeof *b->docs);
    if (!b->docs)
        return false;
    for (size_t i = 0; i < p->n_spine; i++) {
        const item_t *it = find_item(p, p->spine[i]);
        char path[PATH_MAX_LEN];
        if (!it || !it->href || !is_html_type(it->media_type) || !resolve(opf, it->href, path))
            continue;
        char *copy = strdup(path);
        if (!copy) {
            book_cleanup(b);
            return false;
        }
        b->docs[b->n_docs++] = (doc_t){ .path = copy, .spine = i };
    }
    if (b->n_docs > 1)
        qsort(b->docs, b->n_docs, sizeof *b->docs, doc_cmp);
    return true;
}

/* The spine index of the first chapter at path into *spine. */
static bool find_chapter(const book_t *b, const char *path, size_t *spine)
{
    size_t lo = 0, hi = b->n_docs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(b->docs[mid].path, path) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == b->n_docs || strcmp(b->docs[lo].path, path) != 0)
        return false;
    *spine = b->docs[lo].spine;
    return true;
}

/* Add the entry for href (relative to base, the file holding it) titled
 * `title` to l, when it names a chapter; a TOC entry (level > 0) needs a
 * title. Returns 0, also when the entry is left out; -1 when l is full or
 * memory runs out (l is then to be dropped). */
static int add_target(list_t *l, const book_t *b, const char *base, const char *href,
                      const char *title, int level)
{
    char path[PATH_MAX_LEN];
    size_t chapter;
    if (!href || is_external(href) || (level > 0 && !has_title(title)))
        return 0;
    if (href[0] == '#') {   /* in the file itself */
        if (strlen(base) >= sizeof path)
            return 0;
        strcpy(path, base);
    } else if (!resolve(base, href, path)) {
        return 0;
    }
    if (!find_chapter(b, path, &chapter))
        return 0;
    if (grow((void **)&l->v, l->n, sizeof *l->v, NAV_ENTRIES_MAX))
        return -1;
    const char *hash = strchr(href, '#');
    target_t t = { .chapter = chapter, .order = l->n, .level = level };
    t.id = hash && hash[1] ? percent_decode(hash + 1) : NULL;
    t.title = strdup(title);
    if (!t.title || (hash && hash[1] && !t.id)) {
        free(t.id);
        free(t.title);
        return -1;
    }
    l->v[l->n++] = t;
    return 0;
}

static int target_cmp(const void *a, const void *b)
{
    const target_t *x = a, *y = b;
    if (x->chapter != y->chapter)
        return x->chapter < y->chapter ? -1 : 1;
    if (!x->id || !y->id) {
        if (x->id || y->id)
            return x->id ? 1 : -1;
    } else {
        int c = strcmp(x->id, y->id);
        if (c)
            return c;
    }
    return (x->order > y->order) - (x->order < y->order);
}

/* Text of the entry being read: at most NAV_TITLE_READ bytes. */
typedef struct {
    char buf[NAV_TITLE_READ + 1];
    size_t len;
} title_t;

static void title_add(title_t *t, const char *s)
{
    if (!s)
        return;
    copy_cut(t->buf + t->len, s, NAV_TITLE_READ - t->len);
    t->len += strlen(t->buf + t->len);
}

static bool is_text_node(int type)
{
    return type == XML_READER_TYPE_TEXT || type == XML_READER_TYPE_CDATA ||
           type == XML_READER_TYPE_WHITESPACE || type == XML_READER_TYPE_SIGNIFICANT_WHITESPACE;
}

/* An element called `name` in namespace ns, or in none (navigation files
 * written without their namespace are common enough). */
static bool is_named(xmlTextReaderPtr r, const char *ns, const char *name)
{
    const xmlChar *u = xmlTextReaderConstNamespaceUri(r);
    const xmlChar *l = xmlTextReaderConstLocalName(r);
    return l && strcmp((const char *)l, name) == 0 && (!u || strcmp((const char *)u, ns) == 0);
}

/* Whether the element's epub:type holds `type` or its role `role`. */
static bool nav_is(xmlTextReaderPtr r, const char *type, const char *role)
{
    xmlChar *v = xmlTextReaderGetAttributeNs(r, BAD_CAST "type", BAD_CAST NS_OPS);
    if (!v)
        v = xmlTextReaderGetAttribute(r, BAD_CAST "epub:type");   /* prefix not declared */
    bool yes = v && has_word((const char *)v, type);
    xmlFree(v);
    if (!yes) {
        v = xmlTextReaderGetAttribute(r, BAD_CAST "role");
        yes = v && has_word((const char *)v, role);
        xmlFree(v);
    }
    return yes;
}

/* The EPUB 3 navigation document data[0..len), at path base, into toc and
 * pages (the first <nav> of each kind). Returns 0, or -1 when it is
 * malformed, too long or memory runs out. */
static int parse_nav(const char *data, size_t len, const char *base, const book_t *b,
                     list_t *toc, list_t *pages)
{
    xmlTextReaderPtr r = reader_for(data, len);
    if (!r)
        return -1;
    list_t *in = NULL;          /* the list of the <nav> being read */
    bool toc_read = false, pages_read = false;
    int nav_depth = -1, a_depth = -1, ol = 0;
    xmlChar *href = NULL;
    title_t title;
    int ret, rc = 0;
    while (!rc && (ret = xmlTextReaderRead(r)) == 1) {
        int type = xmlTextReaderNodeType(r);
        int depth = xmlTextReaderDepth(r);
        if (type == XML_READER_TYPE_ELEMENT && !in) {
            if (xmlTextReaderIsEmptyElement(r) || !is_named(r, NS_XHTML, "nav"))
                continue;
            if (!toc_read && nav_is(r, "toc", "doc-toc"))
                in = toc;
            else if (!pages_read && nav_is(r, "page-list", "doc-pagelist"))
                in = pages;
            nav_depth = depth;
            ol = 0;
        } else if (type == XML_READER_TYPE_ELEMENT) {
            bool empty = xmlTextReaderIsEmptyElement(r);
            if (is_named(r, NS_XHTML, "ol") && !empty) {
                ol++;
            } else if (is_named(r, NS_XHTML, "a") && a_depth < 0) {
                href = xmlTextReaderGetAttribute(r, BAD_CAST "href");
                title.len = 0;
                title.buf[0] = '\0';
                a_depth = depth;
            }
        } else if (type == XML_READER_TYPE_END_ELEMENT && in) {
            if (depth == nav_depth) {
                toc_read = toc_read || in == toc;
                pages_read = pages_read || in == pages;
                in = NULL;
            } else if (is_named(r, NS_XHTML, "ol")) {
                ol--;
            }
        } else if (in && a_depth >= 0 && is_text_node(type)) {
            title_add(&title, (const char *)xmlTextReaderConstValue(r));
        }
        /* An <a> ends at its end tag, or at once when it is empty. */
        if (a_depth >= 0 && depth == a_depth &&
            (type == XML_READER_TYPE_END_ELEMENT ||
             (type == XML_READER_TYPE_ELEMENT && xmlTextReaderIsEmptyElement(r)))) {
            if (in)
                rc = add_target(in, b, base, (const char *)href, title.buf,
                                in == toc ? (ol > 0 ? ol : 1) : 0);
            xmlFree(href);
            href = NULL;
            a_depth = -1;
        }
    }
    if (!rc && ret < 0)
        rc = -1;
    xmlFree(href);
    xmlFreeTextReader(r);
    return rc;
}

/* One navPoint or pageTarget of an NCX, read up to its first child. */
typedef struct {
    bool open;
    int level;          /* navPoint: its depth; pageTarget: 0 */
    bool in_label, in_text, labelled;
    title_t title;
    xmlChar *src;
} ncx_entry_t;

/* Add the open entry, if any, to its list; it is closed then. */
static int ncx_commit(ncx_entry_t *e, const book_t *b, const char *base, list_t *toc,
                      list_t *pages)
{
    int rc = 0;
    if (e->open && e->src)
        rc = add_target(e->level > 0 ? toc : pages, b, base, (const char *)e->src, e->title.buf,
                        e->level);
    xmlFree(e->src);
    e->src = NULL;
    e->open = e->in_label = e->in_text = e->labelled = false;
    return rc;
}

/* The EPUB 2 NCX data[0..len), at path base, into toc (navMap) and pages
 * (pageList). Returns as parse_nav(). */
static int parse_ncx(const char *data, size_t len, const char *base, const book_t *b,
                     list_t *toc, list_t *pages)
{
    xmlTextReaderPtr r = reader_for(data, len);
    if (!r)
        return -1;
    ncx_entry_t e = { 0 };
    bool in_map = false, in_pages = false;
    int points = 0;   /* open navPoints */
    int ret, rc = 0;
    while (!rc && (ret = xmlTextReaderRead(r)) == 1) {
        int type = xmlTextReaderNodeType(r);
        if (type == XML_READER_TYPE_ELEMENT) {
            if (xmlTextReaderIsEmptyElement(r)) {
                if (e.open && !e.src && is_named(r, NS_NCX, "content"))
                    e.src = xmlTextReaderGetAttribute(r, BAD_CAST "src");
            } else if (is_named(r, NS_NCX, "navMap")) {
                in_map = true;
            } else if (is_named(r, NS_NCX, "pageList")) {
                in_pages = true;
            } else if (in_map && is_named(r, NS_NCX, "navPoint")) {
                rc = ncx_commit(&e, b, base, toc, pages);
                e.open = true;
                e.level = ++points;
                e.title.len = 0;
                e.title.buf[0] = '\0';
            } else if (in_pages && !in_map && is_named(r, NS_NCX, "pageTarget")) {
                rc = ncx_commit(&e, b, base, toc, pages);
                e.open = true;
                e.level = 0;
                e.title.len = 0;
                e.title.buf[0] = '\0';
            } else if (e.open && !e.labelled && is_named(r, NS_NCX, "navLabel")) {
                e.in_label = true;
            } else if (e.in_label && is_named(r, NS_NCX, "text")) {
                e.in_text = true;
            } else if (e.open && !e.src && is_named(r, NS_NCX, "content")) {
                e.src = xmlTextReaderGetAttribute(r, BAD_CAST "src");
            }
        } else if (type == XML_READER_TYPE_END_ELEMENT) {
            if (is_named(r, NS_NCX, "navMap")) {
                rc = ncx_commit(&e, b, base, toc, pages);
                in_map = false;
            } else if (is_named(r, NS_NCX, "pageList")) {
                rc = ncx_commit(&e, b, base, toc, pages);
                in_pages = false;
            } else if (in_map && is_named(r, NS_NCX, "navPoint")) {
                rc = ncx_commit(&e, b, base, toc, pages);
                points--;
            } else if (in_pages && is_named(r, NS_NCX, "pageTarget")) {
                rc = ncx_commit(&e, b, base, toc, pages);
            } else if (e.in_label && is_named(r, NS_NCX, "navLabel")) {
                e.in_label = e.in_text = false;
                e.labelled = true;
            } else if (e.in_text && is_named(r, NS_NCX, "text")) {
                e.in_text = false;
            }
        } else if (e.in_text && is_text_node(type)) {
            title_add(&e.title, (const char *)xmlTextReaderConstValue(r));
        }
    }
    if (!rc && ret < 0)
        rc = -1;
    xmlFree(e.src);
    xmlFreeTextReader(r);
    return rc;
}

typedef int (*nav_parser_t)(const char *data, size_t len, const char *base, const book_t *b,
                            list_t *toc, list_t *pages);

/* Read navigation file `it` with `parse`, filling those of b's lists that
 * are still empty. Anything wrong leaves them as they were. */
static void read_nav_file(zipread_t *z, const char *opf, const item_t *it, book_t *b,
                          nav_parser_t parse)
{
    char path[PATH_MAX_LEN];
    if (!it->href || !resolve(opf, it->href, path) || !zipread_exists(z, path))
        return;
    char *data;
    size_t len;
    if (zipread_read_all(z, path, META_MAX, &data, &len))
        return;
    list_t toc = { 0 }, pages = { 0 };
    if (parse(data, len, path, b, &toc, &pages) == 0) {
        if (b->toc.n == 0) {
            list_cleanup(&b->toc);
            b->toc = toc;
            toc = (list_t){ 0 };
        }
        if (b->pages.n == 0) {
            list_cleanup(&b->pages);
            b->pages = pages;
            pages = (list_t){ 0 };
        }
    }
    list_cleanup(&toc);
    list_cleanup(&pages);
    free(data);
}

/* The book's TOC and page list into b, sorted for read_chapters(). Never
 * fails: what cannot be read is left out. */
static void read_navigation(zipread_t *z, const char *opf, const package_t *p, book_t *b)
{
    if (!index_chapters(b, opf, p) || b->n_docs == 0)
        return;
    const item_t *nav = NULL, *ncx = p->toc ? find_item(p, p->toc) : NULL;
    for (size_t i = 0; i < p->n_items; i++) {
        const item_t *it = &p->items[i];
        if (!nav && it->properties && has_word(it->properties, "nav"))
            nav = it;
        if (!ncx && it->media_type && strcmp(it->media_type, "application/x-dtbncx+xml") == 0)
            ncx = it;
    }
    if (nav)
        read_nav_file(z, opf, nav, b, parse_nav);
    if (ncx && (b->toc.n == 0 || b->pages.n == 0))
        read_nav_file(z, opf, ncx, b, parse_ncx);
    if (b->toc.n > 1)
        qsort(b->toc.v, b->toc.n, sizeof *b->toc.v, target_cmp);
    if (b->pages.n > 1)
        qsort(b->pages.v, b->pages.n, sizeof *b->pages.v, target_cmp);
}

/* ---- marks while a chapter is read ---------------------------------------- */

/* One chapter's entries (each list's slice [begin, end), those with an
 * id from `ids`), the hooks' context. */
typedef struct {
    book_t *book;
    target_t *toc, *toc_ids, *toc_end;
    target_t *pages, *page_ids, *page_end;
    bool started;
} chapter_t;

/* Chapter `spine`'s slice of l; chapters are read in spine order. */
static void slice(list_t *l, size_t spine, target_t **begin, target_t **ids, target_t **end)
{
    *begin = *ids = *end = NULL;
    if (!l->v)
        return;
    while (l->at < l->n && l->v[l->at].chapter < spine)
        l->at++;
    *begin = l->v + l->at;
    while (l->at < l->n && l->v[l->at].chapter == spine)
        l->at++;
    *end = l->v + l->at;
    *ids = *begin;
    while (*ids < *end && !(*ids)->id)   /* those without an id sort first */
        (*ids)++;
}

/* The first of [v, end) (sorted by id) with this id, else end. */
static target_t *find_id(target_t *v, target_t *end, const char *id)
{
    if (v == end)
        return end;   /* v may be NULL */
    size_t lo = 0, hi = (size_t)(end - v);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(v[mid].id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return v + lo;
}

/* A page starts here, marked by the page list (from_list) or by a print
 * page break in the text. A book may have both: a page the other source
 * marked at this very offset, with the same label or one of them without,
 * is the same page and is not marked again. Pages are numbered through
 * the book as they come. */
static void add_page(book_t *b, textout_t *out, const char *label, bool from_list)
{
    page_seen_t *mine = from_list ? &b->from_list : &b->from_breaks;
    const page_seen_t *other = from_list ? &b->from_breaks : &b->from_list;
    size_t at = textout_len(out);
    if (!label)
        label = "";
    if (other->valid && other->offset == at &&
        (!has_title(other->label) || !has_title(label) || same_title(other->label, label)))
        return;
    textout_page(out, textout_last_page(out) + 1, label);
    mine->valid = true;
    mine->offset = at;
    copy_cut(mine->label, label, PAGE_LABEL_KEEP);
}

static void on_page_break(void *ctx, textout_t *out, const char *label)
{
    chapter_t *c = ctx;
    add_page(c->book, out, label, false);
}

/* A TOC entry's heading, unless the text's own heading starting here
 * (`heading`) has the same title. */
static void toc_heading(const target_t *t, textout_t *out, const char *heading)
{
    if (!heading || !same_title(t->title, heading))
        textout_heading(out, t->level, t->title, strlen(t->title));
}

static int order_cmp(const void *a, const void *b)
{
    const target_t *x = *(const target_t *const *)a, *y = *(const target_t *const *)b;
    return (x->order > y->order) - (x->order < y->order);
}

/* Before the chapter's first text: the headings of the TOC entries that
 * point at its start (no fragment, or an id met before any text), in
 * TOC order. */
static void on_start(void *ctx, textout_t *out, const char *heading)
{
    chapter_t *c = ctx;
    c->started = true;
    size_t n = 0;
    for (const target_t *t = c->toc; t < c->toc_end; t++)
        n += !t->id || t->at_start;
    const target_t **lead = n > 1 ? malloc(n * sizeof *lead) : NULL;
    if (!lead) {   /* one entry (or no memory for the order): as they are */
        for (const target_t *t = c->toc; t < c->toc_end; t++)
            if (!t->id || t->at_start)
                toc_heading(t, out, heading);
        return;
    }
    n = 0;
    for (const target_t *t = c->toc; t < c->toc_end; t++)
        if (!t->id || t->at_start)
            lead[n++] = t;
    qsort(lead, n, sizeof *lead, order_cmp);
    for (size_t i = 0; i < n; i++)
        toc_heading(lead[i], out, heading);
    free(lead);
}

/* An element with an id: the page that starts there, then the TOC entries
 * that point at it (those before the chapter's first text wait for
 * on_start, in TOC order). Each entry is used once. */
static void on_id(void *ctx, textout_t *out, const char *id, const char *heading)
{
    chapter_t *c = ctx;
    for (target_t *t = find_id(c->page_ids, c->page_end, id);
         t < c->page_end && strcmp(t->id, id) == 0; t++) {
        if (!t->done)
            add_page(c->book, out, t->title, true);
        t->done = true;
    }
    for (target_t *t = find_id(c->toc_ids, c->toc_end, id);
         t < c->toc_end && strcmp(t->id, id) == 0; t++) {
        if (t->done)
            continue;
        t->done = true;
        if (!c->started)
            t->at_start = true;
        else
            toc_heading(t, out, heading);
    }
}

/* Read the spine's chapters into out, with the marks of b's entries. */
static int read_chapters(zipread_t *z, const char *opf, const package_t *p, book_t *b,
                         textout_t *out)
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
        chapter_t ch = { .book = b };
        slice(&b->toc, i, &ch.toc, &ch.toc_ids, &ch.toc_end);
        slice(&b->pages, i, &ch.pages, &ch.page_ids, &ch.page_end);
        for (const target_t *t = ch.pages; t < ch.page_ids; t++)
            add_page(b, out, t->title, true);   /* pages starting with the chapter */
        /* A chapter without entries needs only its page breaks looked at,
         * to meet the page list's pages; without a page list, nothing. */
        html_hooks_t hooks = { .ctx = &ch, .page_break = on_page_break };
        bool entries = ch.toc != ch.toc_end || ch.page_ids != ch.page_end;
        if (entries) {
            hooks.start = on_start;
            hooks.id = on_id;
        }
        rc = html_extract_hooked((const unsigned char *)data, len, out,
                                 entries || b->pages.n ? &hooks : NULL);
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
    xml_quiet_init();

    char *opf = NULL, *data = NULL;
    size_t len = 0;
    package_t pkg = { 0 };
    book_t book = { 0 };
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
    if (!rc) {
        read_navigation(z, opf, &pkg, &book);
        rc = read_chapters(z, opf, &pkg, &book, out);
    }
    book_cleanup(&book);
    package_cleanup(&pkg);
    free(data);
    free(opf);
    zipread_close(z);
    return rc;
}
