/* detect.c — see detect.h. */
#include "extract/detect.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "extract/csv.h"
#include "extract/zipread.h"

#define HEAD_MAX 65536
#define OLE_SCAN_MAX ((off_t)64 << 20)

typedef struct {
    const char *ext;
    extract_type_t type;
} ext_map_t;

static const ext_map_t ext_map[] = {
    { "txt", EXTRACT_TYPE_TXT },   { "text", EXTRACT_TYPE_TXT },
    { "md", EXTRACT_TYPE_MD },     { "markdown", EXTRACT_TYPE_MD },
    { "pdf", EXTRACT_TYPE_PDF },   { "docx", EXTRACT_TYPE_DOCX },
    { "odt", EXTRACT_TYPE_ODT },   { "html", EXTRACT_TYPE_HTML },
    { "htm", EXTRACT_TYPE_HTML },  { "xhtml", EXTRACT_TYPE_HTML },
    { "epub", EXTRACT_TYPE_EPUB },
    { "pptx", EXTRACT_TYPE_PPTX }, { "odp", EXTRACT_TYPE_ODP },
    { "xlsx", EXTRACT_TYPE_XLSX }, { "ods", EXTRACT_TYPE_ODS },
    { "csv", EXTRACT_TYPE_CSV },   { "tsv", EXTRACT_TYPE_CSV },
};

extract_type_t detect_from_name(const char *name)
{
    if (!name)
        return EXTRACT_TYPE_UNKNOWN;
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base)
        return EXTRACT_TYPE_UNKNOWN;
    for (size_t i = 0; i < sizeof ext_map / sizeof ext_map[0]; i++)
        if (strcasecmp(dot + 1, ext_map[i].ext) == 0)
            return ext_map[i].type;
    return EXTRACT_TYPE_UNKNOWN;
}

/* pread until n bytes or the end of the file; returns the count or -1. */
static ssize_t read_at(int fd, void *buf, size_t n, off_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = pread(fd, (char *)buf + done, n - done, off + (off_t)done);
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        done += (size_t)k;
    }
    return (ssize_t)done;
}

static bool allowed_control(unsigned c)
{
    return c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == 0x1B;
}

/* Binary unless it reads as text: at most 1% NULs and control bytes other
 * than \t \n \r \f \v and ESC (a stray NUL in a log file is still text;
 * the sink drops it). */
static bool looks_binary(const unsigned char *p, size_t n)
{
    size_t bad = 0, units = 0;
    bool le = n >= 2 && p[0] == 0xFF && p[1] == 0xFE;
    bool be = n >= 2 && p[0] == 0xFE && p[1] == 0xFF;
    if (le || be) {
        for (size_t i = 2; i + 1 < n; i += 2, units++) {
            unsigned u = le ? (unsigned)(p[i] | p[i + 1] << 8) : (unsigned)(p[i] << 8 | p[i + 1]);
            if (u < 0x20 && !allowed_control(u))
                bad++;
        }
    } else {
        for (size_t i = 0; i < n; i++, units++) {
            if (p[i] < 0x20 && !allowed_control(p[i]))
                bad++;
        }
    }
    return bad * 100 > units;
}

static bool starts_with_ci(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && strncasecmp(s, prefix, k) == 0;
}

static bool contains_ci(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (strncasecmp(s + i, needle, k) == 0)
            return true;
    return false;
}

/* Looks at the first 1 KiB as ASCII (a UTF-16 head is narrowed first). */
static bool looks_like_html(const unsigned char *p, size_t n)
{
    char a[1024];
    size_t k = 0;
    if (n >= 2 && (p[0] == 0xFF || p[0] == 0xFE) && (p[1] == 0xFE || p[1] == 0xFF)) {
        size_t lo = p[0] == 0xFF ? 0 : 1;
        for (size_t i = 2; i + 1 < n && k < sizeof a; i += 2)
            a[k++] = (char)p[i + lo];
    } else {
        size_t i = (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) ? 3 : 0;
        for (; i < n && k < sizeof a; i++)
            a[k++] = (char)p[i];
    }
    size_t s = 0;
    while (s < k && (a[s] == ' ' || a[s] == '\t' || a[s] == '\r' || a[s] == '\n'))
        s++;
    if (s >= k || a[s] != '<')
        return false;
    return starts_with_ci(a + s, k - s, "<!doctype html") || contains_ci(a, k, "<html") ||
           contains_ci(a, k, "<head") || contains_ci(a, k, "<body");
}

static int detect_zip(int fd, extract_type_t hint, extract_type_t *type)
{
    bool zip_hint = hint == EXTRACT_TYPE_DOCX || hint == EXTRACT_TYPE_ODT ||
                    hint == EXTRACT_TYPE_EPUB || hint == EXTRACT_TYPE_PPTX ||
                    hint == EXTRACT_TYPE_ODP || hint == EXTRACT_TYPE_XLSX ||
                    hint == EXTRACT_TYPE_ODS;
    *type = zip_hint ? hint : EXTRACT_TYPE_UNKNOWN;
    zipread_t *z;
    int rc = zipread_open(fd, &z);
    if (rc)
        return rc;
    rc = EXTRACT_EUNSUPPORTED;
    if (zipread_exists(z, "mimetype")) {
        char *mt = NULL;
        size_t len = 0;
        int mrc = zipread_read_all(z, "mimetype", 256, &mt, &len);
        if (mrc == 0) {
            while (len > 0 && (mt[len - 1] == '\n' || mt[len - 1] == '\r' || mt[len - 1] == ' '))
                mt[--len] = '\0';
            if (strcmp(mt, "application/vnd.oasis.opendocument.text") == 0 ||
                strcmp(mt, "application/vnd.oasis.opendocument.text-template") == 0) {
                *type = EXTRACT_TYPE_ODT;
                rc = 0;
            } else if (strncmp(mt, "application/vnd.oasis.opendocument.presentation", 47) ==
                           0 && (!mt[47] || strcmp(mt + 47, "-template") == 0)) {
                *type = EXTRACT_TYPE_ODP;
                rc = 0;
            } else if (strncmp(mt, "application/vnd.oasis.opendocument.spreadsheet", 46) ==
                           0 && (!mt[46] || strcmp(mt + 46, "-template") == 0)) {
                *type = EXTRACT_TYPE_ODS;
                rc = 0;
            } else if (strcmp(mt, "application/epub+zip") == 0) {
                *type = EXTRACT_TYPE_EPUB;
                rc = 0;
            }
        }
        free(mt);
        if (rc == 0 || mrc == 0) {   /* a readable mimetype decides */
            zipread_close(z);
            return rc;
        }
    }
    if (zipread_exists(z, "word/document.xml")) {
        *type = EXTRACT_TYPE_DOCX;
        rc = 0;
    } else if (zipread_exists(z, "ppt/presentation.xml")) {
        *type = EXTRACT_TYPE_PPTX;
        rc = 0;
    } else if (zipread_exists(z, "xl/workbook.xml")) {
        *type = EXTRACT_TYPE_XLSX;
        rc = 0;
    } else if (zipread_exists(z, "META-INF/container.xml")) {
        *type = EXTRACT_TYPE_EPUB;
        rc = 0;
    }
    zipread_close(z);
    return rc;
}

/* An OLE2 compound file is how Office wraps an encrypted docx: the real
 * package sits in a stream called "EncryptedPackage". Its directory entry
 * names are UTF-16LE; look for that name. */
static bool ole_is_encrypted_package(int fd, off_t size)
{
    static const char name[] = "EncryptedPackage";
    unsigned char pat[2 * (sizeof name - 1)];
    for (size_t i = 0; i < sizeof name - 1; i++) {
        pat[2 * i] = (unsigned char)name[i];
        pat[2 * i + 1] = 0;
    }
    const size_t chunk = 1 << 20;
    unsigned char *buf = malloc(chunk + sizeof pat);
    if (!buf)
        return false;
    bool found = false;
    off_t limit = size < OLE_SCAN_MAX ? size : OLE_SCAN_MAX;
    for (off_t off = 0; off < limit && !found; off += (off_t)chunk) {
        ssize_t k = read_at(fd, buf, chunk + sizeof pat, off);   /* overlap chunks */
        if (k <= 0)
            break;
        found = memmem(buf, (size_t)k, pat, sizeof pat) != NULL;
    }
    free(buf);
    return found;
}

/* An image format kvchat reads (by OCR), told by its signature at offset
 * 0; EXTRACT_TYPE_UNKNOWN when none. */
static extract_type_t image_magic(const unsigned char *h, size_t len)
{
    if (len >= 8 && memcmp(h, "\x89PNG\r\n\x1a\n", 8) == 0)
        return EXTRACT_TYPE_PNG;
    if (len >= 3 && memcmp(h, "\xff\xd8\xff", 3) == 0)
        return EXTRACT_TYPE_JPEG;
    if (len >= 4 && (memcmp(h, "II*\0", 4) == 0 || memcmp(h, "MM\0*", 4) == 0))
        return EXTRACT_TYPE_TIFF;
    if (len >= 12 && memcmp(h, "RIFF", 4) == 0 && memcmp(h + 8, "WEBP", 4) == 0)
        return EXTRACT_TYPE_WEBP;
    return EXTRACT_TYPE_UNKNOWN;
}

int detect_type(int fd, const char *name, extract_type_t *type)
{
    extract_type_t hint = detect_from_name(name);
    *type = EXTRACT_TYPE_UNKNOWN;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return EXTRACT_ECORRUPT;
    if (st.st_size == 0) {
        *type = hint;
        return EXTRACT_ENOTEXT;
    }
    unsigned char *head = malloc(HEAD_MAX);
    if (!head)
        return EXTRACT_EMEMORY;
    ssize_t n = read_at(fd, head, HEAD_MAX, 0);
    if (n <= 0) {
        free(head);
        return EXTRACT_ECORRUPT;
    }
    size_t len = (size_t)n;
    int rc = 0;
    static const unsigned char ole_magic[8] = { 0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1 };
    if (image_magic(head, len) != EXTRACT_TYPE_UNKNOWN) {
        *type = image_magic(head, len);
    } else if (memmem(head, len < 1024 ? len : 1024, "%PDF-", 5)) {
        *type = EXTRACT_TYPE_PDF;
    } else if (len >= 4 && memcmp(head, "PK\x03\x04", 4) == 0) {
        rc = detect_zip(fd, hint, type);
    } else if (len >= 8 && memcmp(head, ole_magic, 8) == 0) {
        if (ole_is_encrypted_package(fd, st.st_size)) {
            *type = hint == EXTRACT_TYPE_DOCX ? hint : EXTRACT_TYPE_UNKNOWN;
            rc = EXTRACT_EENCRYPTED;
        } else {
            rc = EXTRACT_EUNSUPPORTED;
        }
    } else if (looks_binary(head, len)) {
        rc = EXTRACT_EUNSUPPORTED;
    } else if (looks_like_html(head, len) || hint == EXTRACT_TYPE_HTML) {
        *type = EXTRACT_TYPE_HTML;
    } else if (hint == EXTRACT_TYPE_MD) {
        *type = EXTRACT_TYPE_MD;
    } else if (hint == EXTRACT_TYPE_CSV ||
               (hint != EXTRACT_TYPE_TXT && csv_sniff((const char *)head, len, NULL))) {
        *type = EXTRACT_TYPE_CSV;
    } else {
        *type = EXTRACT_TYPE_TXT;
    }
    free(head);
    return rc;
}
