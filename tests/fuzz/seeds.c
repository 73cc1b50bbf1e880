/* seeds.c — kvchat-fuzz-seeds OUTDIR: writes the seed corpus of every
 * fuzz target into OUTDIR/<target>/ (no input file is committed to the
 * repository; scripts/fuzz runs this before the targets).
 *
 * Documents come from the integration tests' fixture writers
 * (tests/integration/fixtures.c) plus small variants built here with the
 * features each backend handles (tables, tabs, breaks, notes, tracked
 * changes, several chapters, other encodings) and the structure each
 * reports (form feeds, Markdown headings and fences, HTML headings and
 * page breaks, docx heading styles, odt outline levels, PDF page labels
 * and a nested outline with named destinations); KV-cache entry files are
 * written by the store itself (kvstore_insert, then read back); requests,
 * JSON bodies, event streams and config files are written out as text.
 * Exit status 0, or 1 with a message when a file cannot be written.
 */
#include <errno.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "common/buf.h"
#include "common/json.h"
#include "engine/kvstore.h"
#include "fixtures.h"
#include "fuzz_util.h"

static const char *g_out;

static void die(const char *what, const char *path)
{
    fprintf(stderr, "kvchat-fuzz-seeds: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

/* OUTDIR/<target>, created; returns a static path. */
static const char *target_dir(const char *target)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_out, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die("cannot create", path);
    return path;
}

static void put(const char *target, const char *name, const void *data, size_t len)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", target_dir(target), name);
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
        die("cannot write", path);
}

static void put_str(const char *target, const char *name, const char *text)
{
    put(target, name, text, strlen(text));
}

/* Each of n texts as <stem>-<i>.<ext>. */
static void put_strs(const char *target, const char *stem, const char *ext,
                     const char *const *texts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s-%zu.%s", stem, i, ext);
        put_str(target, name, texts[i]);
    }
}

/* A fixture document of format ext, renamed to <target>/<name>. */
static void put_fixture(const char *target, const char *ext, const char *name,
                        const char *const *lines, size_t n)
{
    const char *dir = target_dir(target);
    const char *written = fixture_write(dir, ext, lines, n);
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (rename(written, path) != 0)
        die("cannot rename", written);
}

typedef struct {
    const char *name;
    const char *data;
} zent_t;

/* A zip of the entries (the first one stored, as mimetype must be). */
static void put_zip(const char *target, const char *name, const zent_t *e, size_t n)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", target_dir(target), name);
    int err = 0;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
    if (!z)
        die("cannot create zip", path);
    for (size_t i = 0; i < n; i++) {
        zip_source_t *src = zip_source_buffer(z, e[i].data, strlen(e[i].data), 0);
        zip_int64_t idx = src ? zip_file_add(z, e[i].name, src, ZIP_FL_OVERWRITE) : -1;
        if (idx < 0)
            die("cannot add to zip", path);
        if (i == 0)
            zip_set_file_compression(z, (zip_uint64_t)idx, ZIP_CM_STORE, 0);
    }
    if (zip_close(z) != 0)
        die("cannot write zip", path);
}

/* The data of entries e[0..n) joined by FUZZ_PART_SPLIT: an input of the
 * zip targets' XML-part kind (fuzz_extract.c). */
static void put_parts(const char *target, const char *name, const zent_t *e, size_t n)
{
    buf_t b;
    buf_init(&b, 1 << 20);
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_puts(&b, FUZZ_PART_SPLIT);
        buf_puts(&b, e[i].data);
    }
    put(target, name, b.data, b.len);
    buf_cleanup(&b);
}

/* ---- documents ----------------------------------------------------------- */

static const char *const lines_a[] = {
    "The quick brown fox jumps over the lazy dog.",
    "Prefill once, restore many times.",
    "A second paragraph with a longer sentence in it, to wrap.",
};
static const char *const lines_b[] = {
    "An exam-", "ple of a hyphen at the end of a line.", "Nord-", "Amerika keeps it.",
    "    indented   words   ", "",
};
#define N(a) (sizeof(a) / sizeof((a)[0]))

static void documents(void)
{
    static const struct {
        const char *target, *ext;
    } fmts[] = {
        { "fuzz_extract_txt", "txt" }, { "fuzz_extract_txt", "md" },
        { "fuzz_extract_html", "html" }, { "fuzz_extract_pdf", "pdf" },
        { "fuzz_extract_docx", "docx" }, { "fuzz_extract_odt", "odt" },
        { "fuzz_extract_epub", "epub" },
    };
    for (size_t i = 0; i < N(fmts); i++) {
        char name[64];
        snprintf(name, sizeof name, "fixture-a.%s", fmts[i].ext);
        put_fixture(fmts[i].target, fmts[i].ext, name, lines_a, N(lines_a));
        snprintf(name, sizeof name, "fixture-b.%s", fmts[i].ext);
        put_fixture(fmts[i].target, fmts[i].ext, name, lines_b, N(lines_b));
    }

    /* Plain text in other encodings and with controls. */
    static const char utf16le[] = "\xff\xfeH\0i\0 \0\xe9\0\r\0\n\0\x3d\xd8\x00\xde";
    put("fuzz_extract_txt", "utf16le.txt", utf16le, sizeof utf16le - 1);
    static const char utf16be[] = "\xfe\xff\0H\0i\0\n\xd8\x3d";
    put("fuzz_extract_txt", "utf16be.txt", utf16be, sizeof utf16be - 1);
    put_str("fuzz_extract_txt", "latin1.txt", "Caf\xe9 \x93quoted\x94 \x80 5\r\nna\xefve\r\n");
    put_str("fuzz_extract_txt", "mixed.txt",
            "\xef\xbb\xbfline\t\ttabs  \x0c page\x0b\xc2\x85nel\xe2\x80\xa8ls\n\n\n\n\nsoft\xc2\xad"
            "hyphen\xc2\xa0nbsp \xed\xa0\x80 bad \xf4\x90\x80\x80 \x01\x7f end");

    /* HTML with the elements html.c treats specially. */
    put_str("fuzz_extract_html", "structure.html",
            "<!DOCTYPE html><html><head><meta charset=\"windows-1252\"><title>t</title>"
            "<style>p{}</style></head><body><h1>Title</h1><p>One<br>two &amp; &eacute; &#x1F600;"
            "</p><table><tr><td>a</td><td>b</td></tr><tr><th>c</th><td>d</td></tr></table>"
            "<pre>  keep\n   spaces</pre><ul><li>x<li>y</ul><script>no()</script>"
            "<noscript>no</noscript><svg><text>no</text></svg><template>no</template>"
            "<div><div><span>deep</span></div></div><object>x</object></body></html>");
    put_str("fuzz_extract_html", "nocharset.html",
            "<html><body><p>Caf\xe9 na\xefve</p><p>\xe2\x82\xac ok</p></body></html>");

    /* docx with tables, tabs, breaks, duplicates Word keeps and fields. */
    static const char docx_body[] =
        "<?xml version=\"1.0\"?><w:document "
        "xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\" "
        "xmlns:mc=\"http://schemas.openxmlformats.org/markup-compatibility/2006\"><w:body>"
        "<w:p><w:r><w:t>Hello</w:t><w:tab/><w:t xml:space=\"preserve\"> world </w:t><w:br/>"
        "<w:t>next</w:t></w:r></w:p><w:p/>"
        "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>a</w:t></w:r></w:p><w:p><w:r><w:t>b</w:t></w:r></w:p>"
        "</w:tc><w:tc><w:p><w:r><w:t>c</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"
        "<w:p><w:del><w:r><w:delText>gone</w:delText></w:r></w:del><w:r><w:instrText>PAGE"
        "</w:instrText></w:r><w:moveFrom><w:r><w:t>moved</w:t></w:r></w:moveFrom>"
        "<mc:AlternateContent><mc:Choice><w:r><w:t>box</w:t></w:r></mc:Choice><mc:Fallback>"
        "<w:r><w:t>box</w:t></w:r></mc:Fallback></mc:AlternateContent></w:p>"
        "</w:body></w:document>";
    zent_t docx[] = {
        { "[Content_Types].xml", "<?xml version=\"1.0\"?><Types/>" },
        { "word/document.xml", docx_body },
    };
    put_zip("fuzz_extract_docx", "features.docx", docx, N(docx));
    put_parts("fuzz_extract_docx", "features.xml", docx + 1, 1);

    static const char odt_body[] =
        "<?xml version=\"1.0\"?><office:document-content "
        "xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" "
        "xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\" "
        "xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\"><office:body>"
        "<office:text><text:h>Head</text:h><text:p>  a<text:s text:c=\"3\"/>b<text:tab/>c"
        "<text:line-break/>d <text:span>span</text:span></text:p>"
        "<text:list><text:list-item><text:p>item</text:p></text:list-item></text:list>"
        "<table:table><table:table-row><table:table-cell><text:p>x</text:p></table:table-cell>"
        "<table:table-cell><text:p>y</text:p></table:table-cell></table:table-row></table:table>"
        "<text:tracked-changes><text:p>deleted</text:p></text:tracked-changes>"
        "<text:p>n<office:annotation><text:p>note</text:p></office:annotation>"
        "<text:note><text:p>fn</text:p></text:note></text:p></office:text></office:body>"
        "</office:document-content>";
    zent_t odt[] = {
        { "mimetype", "application/vnd.oasis.opendocument.text" },
        { "META-INF/manifest.xml",
          "<?xml version=\"1.0\"?><manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:"
          "opendocument:xmlns:manifest:1.0\"><manifest:file-entry manifest:full-path=\""
          "content.xml\" manifest:media-type=\"text/xml\"/></manifest:manifest>" },
        { "content.xml", odt_body },
    };
    put_zip("fuzz_extract_odt", "features.odt", odt, N(odt));
    zent_t odt_parts[] = { odt[2], odt[1] };   /* content.xml, manifest */
    put_parts("fuzz_extract_odt", "features.xml", odt_parts, N(odt_parts));
    zent_t odt_locked[] = {
        odt[2],
        { "META-INF/manifest.xml",
          "<?xml version=\"1.0\"?><manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:"
          "opendocument:xmlns:manifest:1.0\"><manifest:file-entry manifest:full-path=\""
          "content.xml\"><manifest:encryption-data/></manifest:file-entry></manifest:manifest>" },
    };
    put_parts("fuzz_extract_odt", "encrypted.xml", odt_locked, N(odt_locked));

    zent_t epub[] = {
        { "mimetype", "application/epub+zip" },
        { "META-INF/container.xml",
          "<?xml version=\"1.0\"?><container version=\"1.0\" xmlns=\"urn:oasis:names:tc:"
          "opendocument:xmlns:container\"><rootfiles><rootfile full-path=\"OEBPS/book.opf\" "
          "media-type=\"application/oebps-package+xml\"/></rootfiles></container>" },
        { "META-INF/encryption.xml",
          "<?xml version=\"1.0\"?><encryption xmlns=\"urn:oasis:names:tc:opendocument:xmlns:"
          "container\" xmlns:enc=\"http://www.w3.org/2001/04/xmlenc#\"><enc:EncryptedData>"
          "<enc:EncryptionMethod Algorithm=\"http://www.idpf.org/2008/embedding\"/>"
          "</enc:EncryptedData></encryption>" },
        { "OEBPS/book.opf",
          "<?xml version=\"1.0\"?><package xmlns=\"http://www.idpf.org/2007/opf\" version=\"3.0\">"
          "<metadata/><manifest><item id=\"b\" href=\"text/two.xhtml\" media-type=\"application/"
          "xhtml+xml\"/><item id=\"a\" href=\"text/one.xhtml\" media-type=\"application/"
          "xhtml+xml\"/><item id=\"m\" href=\"../missing.xhtml\" media-type=\"application/"
          "xhtml+xml\"/></manifest><spine><itemref idref=\"a\"/><itemref idref=\"m\"/>"
          "<itemref idref=\"b\"/></spine></package>" },
        { "OEBPS/text/one.xhtml",
          "<?xml version=\"1.0\"?><html xmlns=\"http://www.w3.org/1999/xhtml\"><body><h1>One</h1>"
          "<p>First chapter.</p></body></html>" },
        { "OEBPS/text/two.xhtml",
          "<html><body><p>Second <b>chapter</b>.</p><table><tr><td>a</td></tr></table>"
          "</body></html>" },
    };
    put_zip("fuzz_extract_epub", "chapters.epub", epub, N(epub));
    zent_t epub_parts[] = { epub[3], epub[4], epub[1], epub[5] }; /* opf, one, container, two */
    put_parts("fuzz_extract_epub", "chapters.xml", epub_parts, N(epub_parts));
    /* Found by fuzz_extract_epub: a spine with an empty manifest. */
    zent_t epub_empty[] = {
        { "OEBPS/book.opf",
          "<?xml version=\"1.0\"?><package xmlns=\"http://www.idpf.org/2007/opf\" version=\"3.0\">"
          "<metadata/><manifest/><spine><itemref idref=\"c1\"/></spine></package>" },
    };
    put_parts("fuzz_extract_epub", "empty-manifest.xml", epub_empty, N(epub_empty));
    /* A table of contents and a page list: the EPUB 3 nav and the EPUB 2
     * NCX, pointing at chapter starts and at ids inside them. */
    zent_t epub_nav[] = {
        epub[0],
        epub[1],
        { "OEBPS/book.opf",
          "<?xml version=\"1.0\"?><package xmlns=\"http://www.idpf.org/2007/opf\" version=\"3.0\">"
          "<metadata/><manifest><item id=\"nav\" href=\"nav.xhtml\" properties=\"nav\" "
          "media-type=\"application/xhtml+xml\"/><item id=\"ncx\" href=\"toc.ncx\" "
          "media-type=\"application/x-dtbncx+xml\"/><item id=\"a\" href=\"text/one.xhtml\" "
          "media-type=\"application/xhtml+xml\"/></manifest><spine toc=\"ncx\"><itemref "
          "idref=\"a\"/></spine></package>" },
        { "OEBPS/nav.xhtml",
          "<?xml version=\"1.0\"?><html xmlns=\"http://www.w3.org/1999/xhtml\" xmlns:epub=\""
          "http://www.idpf.org/2007/ops\"><body><nav epub:type=\"toc\"><ol><li><a href=\"text/"
          "one.xhtml\">One</a><ol><li><a href=\"text/one.xhtml#s2\">Part %32</a></li></ol></li>"
          "</ol></nav><nav epub:type=\"page-list\"><ol><li><a href=\"text/one.xhtml#p7\">vii"
          "</a></li></ol></nav></body></html>" },
        { "OEBPS/toc.ncx",
          "<?xml version=\"1.0\"?><ncx xmlns=\"http://www.daisy.org/z3986/2005/ncx/\"><navMap>"
          "<navPoint><navLabel><text>One</text></navLabel><content src=\"text/one.xhtml\"/>"
          "</navPoint></navMap><pageList><pageTarget><navLabel><text>vii</text></navLabel>"
          "<content src=\"text/one.xhtml#p7\"/></pageTarget></pageList></ncx>" },
        { "OEBPS/text/one.xhtml",
          "<?xml version=\"1.0\"?><html xmlns=\"http://www.w3.org/1999/xhtml\"><body>"
          "<p>First chapter.</p><h2 id=\"s2\">Part 2</h2><p>More <span id=\"p7\"/>text.</p>"
          "</body></html>" },
    };
    put_zip("fuzz_extract_epub", "nav.epub", epub_nav, N(epub_nav));
    zent_t nav_parts[] = { epub_nav[2], epub_nav[5], epub[1], epub[5], epub_nav[3], epub_nav[4] };
    put_parts("fuzz_extract_epub", "nav.xml", nav_parts, N(nav_parts)); /* the wrap's order */
}

/* A PDF of objects 1..n (objs[0..n)) with a computed xref. */
static void put_pdf(const char *target, const char *name, const char *const *objs, int n)
{
    buf_t b;
    buf_init(&b, 1 << 20);
    long off[64];
    buf_puts(&b, "%PDF-1.4\n");
    for (int i = 0; i < n && i < 64; i++) {
        off[i] = (long)b.len;
        buf_printf(&b, "%d 0 obj\n%s\nendobj\n", i + 1, objs[i]);
    }
    long xref = (long)b.len;
    buf_printf(&b, "xref\n0 %d\n0000000000 65535 f \n", n + 1);
    for (int i = 0; i < n && i < 64; i++)
        buf_printf(&b, "%010ld 00000 n \n", off[i]);
    buf_printf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%ld\n%%%%EOF\n", n + 1, xref);
    put(target, name, b.data, b.len);
    buf_cleanup(&b);
}

/* Documents with the structure each backend reports (pages, headings). */
static void structure(void)
{
    put_str("fuzz_extract_txt", "pages.txt", "Page one\fPage two\r\n\fPage three\f");
    put_str("fuzz_extract_txt", "headings.md",
            "---\ntitle: front matter\n---\n# Title #\n\nIntro *text*.\n\nSetext one\n"
            "line two\n==========\n\n```c\n# not a heading\n```\n~~~~\n## nor this\n~~~\n"
            "~~~~~\n   ### Indented ###\n    # code\n- item\n---\n> quote\n1. list\n"
            "Para\r\n--\r\n####### seven\n#\tTab\f# Next page\n");

    put_str("fuzz_extract_html", "headings.html",
            "<html><body><h1>Main <em>title</em></h1><p>Intro <span epub:type=\"pagebreak\" "
            "title=\"ii\"/>text.</p><h2>Part</h2><div role=\"doc-pagebreak\" aria-label=\"3\">"
            "</div><h3><h4>nested</h4></h3><h5></h5><h6>  last\n  one </h6></body></html>");

    static const char docx_body[] =
        "<?xml version=\"1.0\"?><w:document "
        "xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>"
        "<w:p><w:pPr><w:pStyle w:val=\"Title\"/></w:pPr><w:r><w:t>Title</w:t></w:r></w:p>"
        "<w:p><w:pPr><w:pStyle w:val=\"Heading1\"/></w:pPr><w:r><w:t>One</w:t></w:r></w:p>"
        "<w:p><w:pPr><w:pStyle w:val=\"Custom\"/></w:pPr><w:r><w:t>Custom</w:t></w:r></w:p>"
        "<w:p><w:pPr><w:outlineLvl w:val=\"1\"/><w:pPrChange><w:pPr><w:pStyle "
        "w:val=\"Heading1\"/></w:pPr></w:pPrChange></w:pPr><w:r><w:t>Direct</w:t></w:r></w:p>"
        "<w:p><w:r><w:t>Body</w:t></w:r></w:p></w:body></w:document>";
    static const char docx_styles[] =
        "<?xml version=\"1.0\"?><w:styles "
        "xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\">"
        "<w:style w:type=\"paragraph\" w:styleId=\"Heading1\"><w:name w:val=\"heading 1\"/>"
        "</w:style><w:style w:type=\"paragraph\" w:styleId=\"Base\"><w:name w:val=\"Base\"/>"
        "<w:pPr><w:outlineLvl w:val=\"2\"/></w:pPr></w:style><w:style w:type=\"paragraph\" "
        "w:styleId=\"Custom\"><w:name w:val=\"Custom\"/><w:basedOn w:val=\"Base\"/></w:style>"
        "</w:styles>";
    zent_t docx[] = {
        { "[Content_Types].xml", "<?xml version=\"1.0\"?><Types/>" },
        { "word/document.xml", docx_body },
        { "word/styles.xml", docx_styles },
    };
    put_zip("fuzz_extract_docx", "headings.docx", docx, N(docx));
    put_parts("fuzz_extract_docx", "headings.xml", docx + 1, 2);

    static const char odt_body[] =
        "<?xml version=\"1.0\"?><office:document-content "
        "xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" "
        "xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\"><office:body>"
        "<office:text><text:h text:outline-level=\"1\">One</text:h><text:p>a</text:p>"
        "<text:list><text:list-item><text:h text:outline-level=\"2\">Two</text:h>"
        "</text:list-item></text:list><text:h>Default</text:h><text:h text:outline-level=\"9\">"
        "Deep</text:h></office:text></office:body></office:document-content>";
    zent_t odt_parts[] = { { "content.xml", odt_body } };
    put_parts("fuzz_extract_odt", "headings.xml", odt_parts, N(odt_parts));

    /* Four pages labelled i, 1, 2, A-7; an outline with explicit and named
     * destinations, a GoTo action, a URI entry and a cycle. */
    static const char *const pdf[] = {
        "<< /Type /Catalog /Pages 2 0 R /Outlines 11 0 R /Dests << /sec [6 0 R /Fit] >> "
        "/PageLabels << /Nums [0 << /S /r >> 1 << /S /D >> 3 << /P (A-) /S /D /St 7 >>] >> >>",
        "<< /Type /Pages /Kids [4 0 R 6 0 R 8 0 R 9 0 R] /Count 4 >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >>"
        " >> /Contents 5 0 R >>",
        "<< /Length 43 >>\nstream\nBT /F1 12 Tf 72 720 Td (Preface text) Tj ET\nendstream",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >>"
        " >> /Contents 7 0 R >>",
        "<< /Length 47 >>\nstream\nBT /F1 12 Tf 72 720 Td (Chapter one text) Tj ET\nendstream",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >>"
        " >> /Contents 10 0 R >>",
        "<< /Length 44 >>\nstream\nBT /F1 12 Tf 72 720 Td (Appendix text) Tj ET\nendstream",
        "<< /Type /Outlines /First 12 0 R /Last 15 0 R /Count 4 >>",
        "<< /Title (Chapter 1) /Parent 11 0 R /Next 14 0 R /First 13 0 R /Last 13 0 R "
        "/Dest [6 0 R /XYZ 0 792 0] >>",
        "<< /Title (Section 1.1) /Parent 12 0 R /Dest /sec >>",
        "<< /Title <FEFF0041007000700065006E006400690078> /Parent 11 0 R /Next 15 0 R "
        "/A << /S /GoTo /D [9 0 R /Fit] >> >>",
        "<< /Title (Web) /Parent 11 0 R /Next 12 0 R /A << /S /URI /URI (http://x/) >> >>",
    };
    put_pdf("fuzz_extract_pdf", "outline.pdf", pdf, N(pdf));
}

/* ---- JSON, HTTP, SSE, config --------------------------------------------- */

/* Slides, spreadsheets and csv: the XML parts (split as fuzz_extract.c
 * packs them) and delimited text. */
static void slides_and_sheets(void)
{
    static const char slide[] =
        "<?xml version=\"1.0\"?><p:sld xmlns:p=\"http://schemas.openxmlformats.org/"
        "presentationml/2006/main\" xmlns:a=\"http://schemas.openxmlformats.org/drawingml/2006/"
        "main\"><p:cSld><p:spTree><p:sp><p:nvSpPr><p:nvPr><p:ph type=\"title\"/></p:nvPr>"
        "</p:nvSpPr><p:txBody><a:p><a:r><a:t>Title</a:t></a:r></a:p></p:txBody></p:sp>"
        "<p:sp><p:txBody><a:p><a:r><a:t>Body</a:t></a:r><a:br/><a:r><a:t>more</a:t></a:r>"
        "</a:p></p:txBody></p:sp><p:graphicFrame><a:graphic><a:graphicData><a:tbl><a:tr>"
        "<a:tc gridSpan=\"2\"><a:txBody><a:p><a:r><a:t>A|B</a:t></a:r></a:p></a:txBody></a:tc>"
        "<a:tc hMerge=\"1\"/></a:tr><a:tr><a:tc><a:txBody><a:p><a:r><a:t>1</a:t></a:r></a:p>"
        "</a:txBody></a:tc><a:tc><a:txBody><a:p><a:r><a:t>2</a:t></a:r></a:p></a:txBody>"
        "</a:tc></a:tr></a:tbl></a:graphicData></a:graphic></p:graphicFrame></p:spTree>"
        "</p:cSld></p:sld>" FUZZ_PART_SPLIT
        "<?xml version=\"1.0\"?><p:notes xmlns:p=\"http://schemas.openxmlformats.org/"
        "presentationml/2006/main\" xmlns:a=\"http://schemas.openxmlformats.org/drawingml/2006/"
        "main\"><p:cSld><p:spTree><p:sp><p:nvSpPr><p:nvPr><p:ph type=\"body\"/></p:nvPr>"
        "</p:nvSpPr><p:txBody><a:p><a:r><a:t>Notes</a:t></a:r></a:p></p:txBody></p:sp>"
        "</p:spTree></p:cSld></p:notes>";
    put("fuzz_extract_pptx", "slide.xml", slide, sizeof slide - 1);
    static const char sheet[] =
        "<?xml version=\"1.0\"?><worksheet xmlns=\"http://schemas.openxmlformats.org/"
        "spreadsheetml/2006/main\"><sheetData><row r=\"1\"><c r=\"A1\" t=\"s\"><v>0</v></c>"
        "<c r=\"C1\" t=\"inlineStr\"><is><t>x</t></is></c></row><row r=\"2\"><c r=\"A2\">"
        "<v>3.5</v></c><c r=\"B2\" t=\"b\"><v>1</v></c><c r=\"XFD2\" t=\"e\"><v>#N/A</v></c>"
        "</row></sheetData></worksheet>" FUZZ_PART_SPLIT
        "<?xml version=\"1.0\"?><sst xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/"
        "2006/main\"><si><t>Name</t></si><si><r><t>rich</t></r><rPh><t>ruby</t></rPh></si></sst>";
    put("fuzz_extract_xlsx", "sheet.xml", sheet, sizeof sheet - 1);
#define ODF_HEAD                                                                             \
    "<?xml version=\"1.0\"?><office:document-content xmlns:office=\"urn:oasis:names:tc:"    \
    "opendocument:xmlns:office:1.0\" xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:"   \
    "text:1.0\" xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\" "           \
    "xmlns:draw=\"urn:oasis:names:tc:opendocument:xmlns:drawing:1.0\" "                      \
    "xmlns:presentation=\"urn:oasis:names:tc:opendocument:xmlns:presentation:1.0\">"         \
    "<office:body>"
    static const char ods[] =
        ODF_HEAD "<office:spreadsheet><table:table table:name=\"S\"><table:table-row>"
        "<table:table-cell><text:p>a</text:p></table:table-cell><table:table-cell "
        "table:number-columns-repeated=\"3\"><text:p>b</text:p></table:table-cell>"
        "</table:table-row><table:table-row table:number-rows-repeated=\"1000\">"
        "<table:table-cell table:number-columns-repeated=\"16384\"/></table:table-row>"
        "</table:table></office:spreadsheet></office:body></office:document-content>";
    put("fuzz_extract_ods", "content.xml", ods, sizeof ods - 1);
    static const char odp[] =
        ODF_HEAD "<office:presentation><draw:page><draw:frame presentation:class=\"title\">"
        "<draw:text-box><text:p>Title</text:p></draw:text-box></draw:frame><draw:frame>"
        "<draw:text-box><text:p>Body</text:p></draw:text-box></draw:frame><presentation:notes>"
        "<draw:frame><draw:text-box><text:p>Notes</text:p></draw:text-box></draw:frame>"
        "</presentation:notes></draw:page></office:presentation></office:body>"
        "</office:document-content>";
    put("fuzz_extract_odp", "content.xml", odp, sizeof odp - 1);
#undef ODF_HEAD
    static const char *const csvs[] = {
        "a,b,c\r\n1,\"x, y\",3\r\n\"multi\nline\",\"q\"\"q\",\r\n",
        "Nom;Prix\nCr\xe8me;4,50\n\xc9" "clair;3\n",
        "\xef\xbb\xbf" "a\tb\n1\t2\n",
        "x|y|z\n1|2|3\n4|5\n",
        "\"open quote,1\n2,3\n",
    };
    for (size_t i = 0; i < N(csvs); i++) {
        char name[32];
        snprintf(name, sizeof name, "data-%zu.csv", i);
        put("fuzz_extract_csv", name, csvs[i], strlen(csvs[i]));
    }
}

static void texts(void)
{
    static const char *const json[] = {
        "{\"model\":\"local\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"Hi \\u00e9\\ud83d\\ude00\"}],\"stream\":true,"
        "\"max_tokens\":64,\"temperature\":0.2,\"top_p\":1,\"stop\":[\"\\n\"]}",
        "{\"session_id\":\"abc\",\"message\":\"What is it about?\",\"document_id\":null}",
        ("{\"prompt\":\"x\",\"n_predict\":1e3,\"cache_prompt\":false,\"seed\":-1,"
         "\"options\":{\"a\":[1,2.5,-0,1E-7,9223372036854775807]}}"),
        "\"a string with \\\" escapes \\t\\n\\/\"",
        "{\"max_tokens\":2.0,\"pin\":true,\"id\":\"1\",\"name\":\"\xc3\xa9\"} ",
    };
    put_strs("fuzz_json", "body", "json", json, N(json));
    /* Nested as deep as json_parse() allows, and one deeper. */
    for (int depth = JSON_MAX_DEPTH; depth <= JSON_MAX_DEPTH + 1; depth++) {
        buf_t b;
        buf_init(&b, 1024);
        for (int i = 0; i < depth; i++)
            buf_puts(&b, i % 2 ? "{\"k\":" : "[");
        buf_puts(&b, "1");
        for (int i = depth - 1; i >= 0; i--)
            buf_puts(&b, i % 2 ? "}" : "]");
        char name[32];
        snprintf(name, sizeof name, "depth-%d.json", depth);
        put("fuzz_json", name, b.data, b.len);
        buf_cleanup(&b);
    }

    /* head, and body (NULL: the head is the whole request); with a body
     * its Content-Length and the blank line are added. */
    static const char *const http[][2] = {
        { "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", NULL },
        { "GET /api/v1/documents/a%20b%2Fc/parts/2?q=caf%C3%A9+x&limit=10&flag HTTP/1.1\r\n"
          "Host: localhost\r\nUser-Agent: fuzz\r\n\r\n", NULL },
        { "GET /api/v1/documents/list?q=%zz%&&=& HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"
          "HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: \"v1\"\r\n\r\n", NULL },
        { "GET /assets/js/app.js HTTP/1.0\r\n\r\n", NULL },
        { "POST /api/v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n",
          "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"x\":1}" },
        { "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
          "fuzz-key\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
          "7\r\n{\"stre\r\nC;ext=1\r\nam\":false}  \r\n0\r\n\r\n", NULL },
        { "DELETE /api/v1/documents/42 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
          "fuzz-key\r\nOrigin: http://a.example\r\n\r\n", NULL },
        { "OPTIONS /api/v1/documents/42 HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://a.example"
          "\r\nAccess-Control-Request-Method: DELETE\r\nAccess-Control-Request-Headers: X-A"
          "\r\n\r\n", NULL },
        { "POST /api/v1/documents/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
          "multipart/form-data; boundary=XyZ\r\n",
          "--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
          "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
          "Content-Type: text/plain\r\n\r\nfile body\r\n--XyZ--\r\n" },
        { "POST /api/v1/documents/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
          "application/x-www-form-urlencoded\r\n", "note=a%20b&refuse=1&x=%" },
        { "POST /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
          "\r\n", "{}" },
        { "POST /api/v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n\r\n",
          NULL },
        { "PUT /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /nope HTTP/1.1\r\nHost: "
          "evil.example\r\n\r\n", NULL },
        /* a form cut short: the connection ends with a value pending */
        { "POST /api/v1/documents/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
          "application/x-www-form-urlencoded\r\nContent-Length: 20\r\n\r\na=1&b=", NULL },
    };
    for (size_t i = 0; i < N(http); i++) {
        char name[32];
        snprintf(name, sizeof name, "request-%zu.http", i);
        buf_t b;
        buf_init(&b, 1 << 16);
        if (http[i][1])
            buf_printf(&b, "%sContent-Length: %zu\r\n\r\n%s", http[i][0], strlen(http[i][1]),
                       http[i][1]);
        else
            buf_puts(&b, http[i][0]);
        put("fuzz_httpd", name, b.data, b.len);
        buf_cleanup(&b);
    }

    static const char *const openai[] = {
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":"
        "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n"
        ": heartbeat\n\n"
        "data: {\"choices\":[{\"delta\":{\"content\":\"lo \\u00e9\"},"
        "\"finish_reason\":null}]}\n\n"
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{"
        "\"prompt_tokens\":5,\"completion_tokens\":2,"
        "\"prompt_tokens_details\":{\"cached_tokens\":3}},"
        "\"timings\":{\"cache_n\":3,\"cache_tier\":\"ram\"}}\n\n"
        "data: [DONE]\n\n",
        ("data: {\"choices\":[{\"message\":{\"content\":\"whole\"},"
         "\"finish_reason\":\"length\"}]}\r\n\r\n"),
        ("event: error\ndata: {\"message\":\"context too long\","
         "\"type\":\"invalid_request_error\"}\n\n"),
        "data: {\"error\":{\"message\":\"slow down\",\"code\":429}}\n\n",
        "id: 1\nretry: 5\ndata: {\"choices\":\ndata: [{\"delta\":{\"content\":\"split\"}}]}\n\n"
        "data:\n\ndata: [DONE]",
    };
    put_strs("fuzz_sse_openai", "stream", "sse", openai, N(openai));
    static const char *const gemini[] = {
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi \"},{\"text\":\"there\"}],"
        "\"role\":\"model\"}}],\"modelVersion\":\"gemini-x\"}\r\n\r\n"
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"!\"}]},\"finishReason\":"
        "\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":2,"
        "\"cachedContentTokenCount\":1}}\r\n\r\n",
        ("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hmm\",\"thought\":true},"
         "{\"functionCall\":{}}]},\"finishReason\":\"MAX_TOKENS\"}]}\n\n"),
        "data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"}}\n\n",
        ("data: [{\"error\":{\"code\":400,\"message\":\"bad\","
         "\"status\":\"INVALID_ARGUMENT\"}}]\n\n"),
        "data: {\"candidates\":[{\"finishReason\":\"SAFETY\"}]}\n\n",
    };
    put_strs("fuzz_sse_gemini", "stream", "sse", gemini, N(gemini));

    static const char *const ini[] = {
        "; kvchat.ini\n[server]\nhost = 0.0.0.0\nport = 8080\ncors_origins = http://a, http://b\n"
        "api_key = secret\nmax_upload_mb = 10\n[data]\ndir = /var/lib/kvchat\n[session]\n"
        "idle_timeout = 600\n[llm]\nprovider = openai\nbase_url = https://api.example/v1\n"
        "temperature = 0.5\n[engine]\nrestart_on_crash = no\nparallel = 4\n[log]\nformat = json\n",
        "[prompt]\nsystem_template = Answer from {filename}:\\n\\n{document}\\t\\\\end\n"
        "system_no_document =\n[remote.gpu]\nprovider = openai\nbase_url = http://10.0.0.2:8000/v1"
        "\nmodel = big\n[remote.g]\nprovider = gemini\napi_key = k\nmodel = gemini-x\n",
        "[server]\nport = 99999\n",
        "[nope]\nkey = value\n",
        "[engine\nmodel = /models/x.gguf\n  continued line\n",
        "[llm]\nprovider = gemini\n[remote.x]\nprovider = other\n",
    };
    put_strs("fuzz_config", "config", "ini", ini, N(ini));

    /* cookie, authorization, trusted proxies, client, forwarded proto, name */
    static const char *const auth[] = {
        "theme=dark; kvchat_session=kvs_abc\nBearer kvt_x\n10.0.0.0/8, ::1\n10.2.3.4\nhttps\n",
        ("kvchat_session=\"q\"; user=alice\nbearer   kvt_y  \nfd00::/8 192.168.1.1\nfd00::7\n"
         "http, https\nuser"),
        ";;kvchat_session=\nBasic dXNlcjpw\n::ffff:10.0.0.0/104,junk\n10.0.0.1\nHTTPS\n",
        "a=1\nBearer\n0.0.0.0/0\n2001:db8::1\n\nkvchat_session",
    };
    put_strs("fuzz_auth", "request", "txt", auth, N(auth));

    /* schemas, request bodies with a schema and tools, and model replies
     * with tool calls in each family's markers */
    static const char *const schema[] = {
        "true",   /* a boolean schema: its grammar has no rules of its own */
        "{}",
        ("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1},"
         "\"age\":{\"type\":\"integer\",\"minimum\":0},\"tags\":{\"type\":\"array\",\"items\":"
         "{\"enum\":[\"a\",\"b\"]},\"maxItems\":3}},\"required\":[\"name\"],"
         "\"additionalProperties\":false}"),
        ("{\"$defs\":{\"n\":{\"anyOf\":[{\"type\":\"null\"},{\"$ref\":\"#/$defs/n\"}]}},"
         "\"$ref\":\"#/$defs/n\"}"),
        "{\"type\":[\"string\",\"number\"],\"format\":\"date-time\",\"const\":\"x\"}",
        ("{\"schema\":{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"boolean\"}}},"
         "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
         "\"description\":\"Weather\",\"parameters\":{\"type\":\"object\",\"properties\":"
         "{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}],"
         "\"tool_choice\":\"required\",\"parallel_tool_calls\":true}"),
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
        "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]",
        "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}<|eom_id|>",
    };
    put_strs("fuzz_schema", "input", "json", schema, N(schema));
}

/* ---- KV-cache entry files ------------------------------------------------- */

/* Read every "*.kv" file of dir into b, separated by FUZZ_KV_SPLIT. */
static int read_entries(const char *dir, buf_t *b, int max)
{
    DIR *d = opendir(dir);
    if (!d)
        die("cannot list", dir);
    struct dirent *de;
    int n = 0;
    while (n < max && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 4 || strcmp(de->d_name + l - 3, ".kv") != 0)
            continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            die("cannot read", path);
        if (n++)
            buf_puts(b, FUZZ_KV_SPLIT);
        char chunk[4096];
        size_t k;
        while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
            buf_append(b, chunk, k);
        fclose(f);
    }
    closedir(d);
    return n;
}

static void empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            unlinkat(dirfd(d), de->d_name, 0);
    closedir(d);
}

/* One store with the entries given, written as one seed per flags value. */
static void kv_seed(const char *dir, const char *name, const int32_t *const *tokens,
                    const int *n, const size_t *blob_len, const bool *pinned, int count,
                    const unsigned char *flags, int nflags)
{
    empty(dir);
    kvstore_config_t cfg;
    kvstore_config_default(&cfg);
    cfg.dir = dir;
    cfg.disk_budget = (uint64_t)1 << 30;
    cfg.fingerprint = FUZZ_KV_FINGERPRINT;
    cfg.layout = FUZZ_KV_LAYOUT;
    kvstore_t *s = NULL;
    if (kvstore_open(&cfg, &s) != KVSTORE_OK)
        die("cannot open a store in", dir);
    for (int i = 0; i < count; i++) {
        unsigned char *blob = malloc(blob_len[i]);
        if (!blob)
            die("out of memory for", name);
        for (size_t j = 0; j < blob_len[i]; j++)
            blob[j] = (unsigned char)(j * 31 + (size_t)i);
        if (kvstore_insert(s, tokens[i], n[i], blob, blob_len[i], pinned[i], NULL) != KVSTORE_OK)
            die("cannot insert into the store in", dir);
    }
    kvstore_flush(s);
    kvstore_close(s);
    buf_t b;
    buf_init(&b, (size_t)1 << 24);
    if (read_entries(dir, &b, FUZZ_KV_FILES) != count)
        die("entry files missing in", dir);
    for (int k = 0; k < nflags; k++) {
        buf_t seed;
        buf_init(&seed, (size_t)1 << 24);
        buf_append(&seed, &flags[k], 1);
        buf_append(&seed, b.data, b.len);
        char file[64];
        snprintf(file, sizeof file, "%s-%02x.kv", name, flags[k]);
        put("fuzz_kvstore", file, seed.data, seed.len);
        buf_cleanup(&seed);
    }
    buf_cleanup(&b);
    empty(dir);
}

static void kv_entries(void)
{
    char dir[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/kvchat-fuzz-seeds-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        die("cannot create", dir);

    static const int32_t t1[] = { 151644, 8948, 198, 2610, 525, 264 };
    static const int32_t t2[] = { 151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13 };
    static const int32_t t3[] = { 7 };
    const int32_t *one[] = { t1 };
    int n1[] = { 6 };
    size_t b1[] = { 96 };
    bool p1[] = { false };
    const unsigned char f1[] = { 0, FUZZ_KV_FIX_HSUM | FUZZ_KV_FIX_BSUM | FUZZ_KV_PIN,
                                 FUZZ_KV_SMALL_RAM | FUZZ_KV_DELETE };
    kv_seed(dir, "one", one, n1, b1, p1, 1, f1, 3);

    const int32_t *three[] = { t1, t2, t3 };
    int n3[] = { 6, 9, 1 };
    size_t b3[] = { 64, 200, 1 };
    bool p3[] = { false, true, false };
    const unsigned char f3[] = { FUZZ_KV_FIX_HSUM | FUZZ_KV_FIX_BSUM,
                                 FUZZ_KV_FIX_HSUM | FUZZ_KV_SMALL_DISK,
                                 FUZZ_KV_FIX_HSUM | FUZZ_KV_FIX_BSUM | FUZZ_KV_SMALL_RAM |
                                     FUZZ_KV_PIN | FUZZ_KV_DELETE };
    kv_seed(dir, "three", three, n3, b3, p3, 3, f3, 3);
    rmdir(dir);
}

/* fuzz_docs: two parameter bytes, a text, "\n--q--\n", a question. */
/* Images for fuzz_image: an 8x8 gray PNG and a TIFF of two 4x4 gray
 * pages, each IFD with its strip (uncompressed, so mutations reach the
 * tags and the pixel data alike). */
static void put_u16le(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_u32le(unsigned char *p, uint32_t v)
{
    put_u16le(p, v & 0xffff);
    put_u16le(p + 2, v >> 16);
}

static void images(void)
{
    static const unsigned char png[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
    0x52, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x08, 0x08, 0x00, 0x00, 0x00, 0x00, 0xe1,
    0x64, 0xe1, 0x57, 0x00, 0x00, 0x00, 0x30, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60,
    0x50, 0x70, 0x48, 0x68, 0x58, 0x70, 0xe0, 0x01, 0x83, 0x80, 0x41, 0x40, 0xc1, 0x84, 0x0d,
    0x17, 0x3e, 0xc0, 0x05, 0x18, 0xa0, 0x02, 0x02, 0x0c, 0x50, 0x01, 0x05, 0x06, 0xa8, 0x80,
    0x01, 0x03, 0x54, 0xc0, 0x81, 0x01, 0x2a, 0x10, 0x00, 0x00, 0x27, 0x84, 0x1e, 0x01, 0xbf,
    0x31, 0xec, 0x4b, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    };
    put("fuzz_image", "gray8x8.png", png, sizeof png);

    enum { PAGES = 2, SIDE = 4, TAGS = 9, IFD = 2 + TAGS * 12 + 4 };
    unsigned char tif[8 + PAGES * (IFD + SIDE * SIDE)];
    memcpy(tif, "II*\0", 4);
    put_u32le(tif + 4, 8);
    for (int p = 0; p < PAGES; p++) {
        size_t at = 8 + (size_t)p * (IFD + SIDE * SIDE), strip = at + IFD;
        static const uint16_t tags[TAGS] = { 256, 257, 258, 259, 262, 273, 277, 278, 279 };
        const uint32_t values[TAGS] = { SIDE, SIDE, 8, 1, 1, (uint32_t)strip, 1, SIDE,
                                        SIDE * SIDE };
        put_u16le(tif + at, TAGS);
        for (int t = 0; t < TAGS; t++) {
            unsigned char *e = tif + at + 2 + 12 * t;
            put_u16le(e, tags[t]);
            put_u16le(e + 2, tags[t] == 273 || tags[t] == 279 ? 4 : 3);   /* LONG : SHORT */
            put_u32le(e + 4, 1);
            put_u32le(e + 8, values[t]);
        }
        put_u32le(tif + at + 2 + TAGS * 12, p + 1 < PAGES ? (uint32_t)(strip + SIDE * SIDE) : 0);
        for (int i = 0; i < SIDE * SIDE; i++)
            tif[strip + (size_t)i] = (unsigned char)(i * 17 + p * 50);
    }
    put("fuzz_image", "two-pages.tif", tif, sizeof tif);
}

static void docs(void)
{
    static const struct {
        const char *name, *body;
    } seeds[] = {
        { "english", "\x10\x53# Manual\n\n## Decoding\n\nThe function asn1_der_decoding reads "
                     "a DER structure. It returns ASN1_SUCCESS.\n\nCall process.nextTick() "
                     "to defer work. See EVP_DigestInit for hashing.\n\n## Errors\n\nAn "
                     "error code is returned when the tag is wrong.\n--q--\nWhat does "
                     "asn1_der_decoding return?" },
        { "chinese", "\x04\x21# 手册\n\n## 第一章\n\n关于熊猫的档案保存在第4417号柜子里。"
                     "委员会审查了季度数字，认为总数没有问题。\n\n## 第二章\n\n長城的檔案在"
                     "櫃子裡。\n--q--\n熊貓的檔案在哪個櫃子裡？" },
        { "mixed", "\x3f\x77Release notes 版本说明\n\nThe cache 缓存 keeps parts on disk.\n\n"
                   "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ and かな and 한국어.\n--q--\ncache 缓存 \"quoted\" "
                   "NEAR(a b) col:x * ^ AND OR NOT (" },
        { "long-paragraph", "\x01\x01Sentence one. Sentence two! Sentence three? Another "
                            "sentence without end and with many words that go on and on and on "
                            "and on and on and on and on and on and on and on and on and on and "
                            "on. 最后一句。\n--q--\nsentence" },
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
        put_str("fuzz_docs", seeds[i].name, seeds[i].body);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: kvchat-fuzz-seeds OUTDIR\n");
        return 2;
    }
    g_out = argv[1];
    fuzz_quiet_logs();
    if (mkdir(g_out, 0755) != 0 && errno != EEXIST)
        die("cannot create", g_out);
    documents();
    slides_and_sheets();
    structure();
    texts();
    kv_entries();
    docs();
    images();
    return 0;
}
