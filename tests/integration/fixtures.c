/* fixtures.c — see fixtures.h. Office and EPUB files are zips built with
 * libzip; the PDF is written object by object with a correct xref. */
#include "fixtures.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "common/buf.h"

const char *const fixture_formats[] = { "txt", "md", "html", "pdf", "docx", "odt", "epub", NULL };

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len)
        fail_msg("cannot write %s", path);
    fclose(f);
}

const char *fixture_raw(const char *dir, const char *name, const void *data, size_t len)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_file(path, data, len);
    return path;
}

typedef struct {
    const char *name;
    const char *data;
    int store;
} zent_t;

static void zip_write(const char *path, const zent_t *e, size_t n)
{
    int err = 0;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
    if (!z)
        fail_msg("zip_open %s: %d", path, err);
    for (size_t i = 0; i < n; i++) {
        zip_source_t *src = zip_source_buffer(z, e[i].data, strlen(e[i].data), 0);
        zip_int64_t idx = zip_file_add(z, e[i].name, src, ZIP_FL_OVERWRITE);
        if (idx < 0)
            fail_msg("zip_file_add %s", e[i].name);
        if (e[i].store)
            zip_set_file_compression(z, (zip_uint64_t)idx, ZIP_CM_STORE, 0);
    }
    if (zip_close(z) != 0)
        fail_msg("zip_close %s", path);
}

/* Lines joined by `open` and `close` around each. Caller frees. */
static char *wrap(const char *const *lines, size_t n, const char *open, const char *close)
{
    buf_t b;
    buf_init(&b, 1 << 24);
    for (size_t i = 0; i < n; i++) {
        buf_puts(&b, open);
        buf_puts(&b, lines[i]);
        buf_puts(&b, close);
    }
    return buf_steal(&b, NULL);
}

static void pdf(const char *path, const char *const *lines, size_t n)
{
    buf_t content;
    buf_init(&content, 1 << 20);
    buf_puts(&content, "BT /F1 11 Tf 50 750 Td 14 TL\n");
    for (size_t i = 0; i < n; i++)
        buf_printf(&content, "(%s) Tj T*\n", lines[i]);
    buf_puts(&content, "ET");
    char *objs[5];
    objs[0] = strdup("<< /Type /Catalog /Pages 2 0 R >>");
    objs[1] = strdup("<< /Type /Pages /Kids [3 0 R] /Count 1 >>");
    objs[2] = strdup("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                     "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>");
    objs[3] = strdup("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
    buf_t s;
    buf_init(&s, 1 << 20);
    buf_printf(&s, "<< /Length %zu >>\nstream\n%s\nendstream", content.len, content.data);
    objs[4] = buf_steal(&s, NULL);
    buf_t b;
    buf_init(&b, 1 << 22);
    long off[5];
    buf_puts(&b, "%PDF-1.4\n");
    for (int i = 0; i < 5; i++) {
        off[i] = (long)b.len;
        buf_printf(&b, "%d 0 obj\n%s\nendobj\n", i + 1, objs[i]);
        free(objs[i]);
    }
    long xref = (long)b.len;
    buf_puts(&b, "xref\n0 6\n0000000000 65535 f \n");
    for (int i = 0; i < 5; i++)
        buf_printf(&b, "%010ld 00000 n \n", off[i]);
    buf_printf(&b, "trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%ld\n%%%%EOF\n", xref);
    write_file(path, b.data, b.len);
    buf_cleanup(&b);
    buf_cleanup(&content);
}

const char *fixture_write(const char *dir, const char *ext, const char *const *lines, size_t n)
{
    static char paths[8][512];
    int slot = 0;
    while (fixture_formats[slot] && strcmp(fixture_formats[slot], ext) != 0)
        slot++;
    char *path = paths[slot % 8];
    snprintf(path, 512, "%s/doc.%s", dir, ext);
    if (!strcmp(ext, "txt")) {
        char *t = wrap(lines, n, "", "\n");
        write_file(path, t, strlen(t));
        free(t);
    } else if (!strcmp(ext, "md")) {
        char *t = wrap(lines, n, "- ", "\n");
        buf_t b;
        buf_init(&b, 1 << 24);
        buf_printf(&b, "# Notes\n\n%s", t);
        write_file(path, b.data, b.len);
        buf_cleanup(&b);
        free(t);
    } else if (!strcmp(ext, "html")) {
        char *t = wrap(lines, n, "<p>", "</p>\n");
        buf_t b;
        buf_init(&b, 1 << 24);
        buf_printf(&b, "<!doctype html><html><head><title>T</title><style>p{}</style>"
                       "<script>var hidden = 1;</script></head><body>%s</body></html>", t);
        write_file(path, b.data, b.len);
        buf_cleanup(&b);
        free(t);
    } else if (!strcmp(ext, "pdf")) {
        pdf(path, lines, n);
    } else if (!strcmp(ext, "docx")) {
        char *t = wrap(lines, n, "<w:p><w:r><w:t>", "</w:t></w:r></w:p>");
        buf_t b;
        buf_init(&b, 1 << 24);
        buf_printf(&b, "<?xml version=\"1.0\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/"
                       "wordprocessingml/2006/main\"><w:body>%s</w:body></w:document>", t);
        zent_t e[] = {
            { "[Content_Types].xml",
              "<?xml version=\"1.0\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/"
              "content-types\"><Override PartName=\"/word/document.xml\" ContentType=\"application/"
              "vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/></Types>", 0 },
            { "word/document.xml", b.data, 0 },
        };
        zip_write(path, e, 2);
        buf_cleanup(&b);
        free(t);
    } else if (!strcmp(ext, "odt")) {
        char *t = wrap(lines, n, "<text:p>", "</text:p>");
        buf_t b;
        buf_init(&b, 1 << 24);
        buf_printf(&b, "<?xml version=\"1.0\"?><office:document-content xmlns:office=\"urn:oasis:"
                       "names:tc:opendocument:xmlns:office:1.0\" xmlns:text=\"urn:oasis:names:tc:"
                       "opendocument:xmlns:text:1.0\"><office:body><office:text>%s</office:text>"
                       "</office:body></office:document-content>", t);
        zent_t e[] = {
            { "mimetype", "application/vnd.oasis.opendocument.text", 1 },
            { "content.xml", b.data, 0 },
        };
        zip_write(path, e, 2);
        buf_cleanup(&b);
        free(t);
    } else if (!strcmp(ext, "epub")) {
        char *t = wrap(lines, n, "<p>", "</p>");
        buf_t b;
        buf_init(&b, 1 << 24);
        buf_printf(&b, "<?xml version=\"1.0\"?><html xmlns=\"http://www.w3.org/1999/xhtml\"><head>"
                       "<title>C</title></head><body>%s</body></html>", t);
        zent_t e[] = {
            { "mimetype", "application/epub+zip", 1 },
            { "META-INF/container.xml",
              "<?xml version=\"1.0\"?><container version=\"1.0\" xmlns=\"urn:oasis:names:tc:"
              "opendocument:xmlns:container\"><rootfiles><rootfile full-path=\"content.opf\" "
              "media-type=\"application/oebps-package+xml\"/></rootfiles></container>", 0 },
            { "content.opf",
              "<?xml version=\"1.0\"?><package xmlns=\"http://www.idpf.org/2007/opf\" version=\"3.0\">"
              "<metadata/><manifest><item id=\"c1\" href=\"c1.xhtml\" media-type=\"application/"
              "xhtml+xml\"/></manifest><spine><itemref idref=\"c1\"/></spine></package>", 0 },
            { "c1.xhtml", b.data, 0 },
        };
        zip_write(path, e, 4);
        buf_cleanup(&b);
        free(t);
    } else {
        fail_msg("no fixture writer for .%s", ext);
    }
    return path;
}
