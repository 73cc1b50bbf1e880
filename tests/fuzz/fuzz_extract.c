/* fuzz_extract.c — one kvchat-extract backend, in process.
 *
 * Built once per format (FUZZ_TYPE = EXTRACT_TYPE_PDF, ...). The input is
 * the uploaded file. Each input goes the way main.c takes a file: type
 * detection from the content (detect_type, with the format's usual file
 * name as the hint), then the backend into the normalising sink with the
 * program's output limit, then textout_finish(). The backend runs whatever
 * the detection said, so inputs that detection would send elsewhere still
 * exercise it.
 *
 * The zip formats (docx, odt, epub, pptx, odp, xlsx, ods) take two kinds
 * of input. One that
 * starts with "PK" is the file itself (zip structure, the unpack guards).
 * Any other input is the XML the backend reads, up to FUZZ_PARTS_MAX
 * entries separated by FUZZ_PART_SPLIT (fuzz_util.h) in the order of the
 * format's table below (missing ones get a default); it is packed here
 * into a zip of stored entries with the format's other entries, so that
 * mutations reach the XML walkers instead of stopping at a compressed
 * stream's checksum.
 *
 * Checked besides memory safety: every return is one of the program codes
 * a file may cause (never EXTRACT_EINTERNAL or EXTRACT_EUSAGE); a finished
 * text keeps every promise of textout.h (clean UTF-8, no blanks at line
 * ends, at most two blank lines in a row, none at the start, exactly one
 * '\n' at the end, within the limit, chars counted right); its structure
 * marks keep theirs (offsets in order, within the text, on character
 * boundaries; page numbers >= 1, levels 1..6; labels normalised: clean
 * UTF-8 of at most 256 bytes, no blank at either end, no two in a row; at
 * most EXTRACT_MARKS_MAX of them within extract_marks_limit() bytes, none
 * once dropped), and each one's line (extract_mark_format) reads back to
 * the same mark (extract_mark_parse), as the runner reads it; no
 * descriptor is left open. The txt target also runs the md backend on the
 * same input: its text must be the txt backend's, byte for byte (md only
 * adds headings).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "extract/csv.h"
#include "extract/detect.h"
#include "extract/epub.h"
#include "extract/extract.h"
#include "extract/html.h"
#include "extract/odf.h"
#include "extract/ooxml.h"
#include "extract/pdf.h"
#include "extract/pptx.h"
#include "extract/text.h"
#include "extract/textout.h"
#include "extract/xlsx.h"
#include "fuzz_util.h"

#ifndef FUZZ_TYPE
#error "define FUZZ_TYPE as the backend's extract_type_t (EXTRACT_TYPE_PDF, ...)"
#endif

/* kvchat-extract's default --max-output, which is also the runner's. */
#define MAX_OUTPUT ((size_t)64 << 20)

typedef int (*backend_fn)(int fd, textout_t *out);

static const struct {
    extract_type_t type;
    backend_fn extract;
    const char *name; /* the client's file name, as the hint for detection */
} backends[] = {
    { EXTRACT_TYPE_TXT, text_extract, "notes.txt" },
    { EXTRACT_TYPE_PDF, pdf_extract, "paper.pdf" },
    { EXTRACT_TYPE_DOCX, ooxml_extract, "letter.docx" },
    { EXTRACT_TYPE_ODT, odf_extract, "letter.odt" },
    { EXTRACT_TYPE_HTML, html_extract, "page.html" },
    { EXTRACT_TYPE_EPUB, epub_extract, "book.epub" },
    { EXTRACT_TYPE_PPTX, pptx_extract, "talk.pptx" },
    { EXTRACT_TYPE_ODP, odf_extract_slides, "talk.odp" },
    { EXTRACT_TYPE_XLSX, xlsx_extract, "sums.xlsx" },
    { EXTRACT_TYPE_ODS, odf_extract_sheet, "sums.ods" },
    { EXTRACT_TYPE_CSV, csv_extract, "data.csv" },
};

/* Entries of the zip built from XML parts: the fixed ones first (a
 * mimetype entry must come first), then parts[i] from the input's i-th
 * piece, or its default when the input has fewer pieces. */
typedef struct {
    const char *name, *data;
} entry_t;

#define PKG_RELS "http://schemas.openxmlformats.org/package/2006/relationships"
#define OFFICE_RELS "http://schemas.openxmlformats.org/officeDocument/2006/relationships"

static const struct {
    extract_type_t type;
    entry_t fixed[2];
    entry_t parts[FUZZ_PARTS_MAX];
} wraps[] = {
    { EXTRACT_TYPE_DOCX,
      { { "[Content_Types].xml", "<?xml version=\"1.0\"?><Types/>" } },
      { { "word/document.xml", "" },
        { "word/styles.xml",
          "<?xml version=\"1.0\"?><w:styles xmlns:w=\"http://schemas.openxmlformats.org/"
          "wordprocessingml/2006/main\"><w:style w:type=\"paragraph\" w:styleId=\"Heading1\">"
          "<w:name w:val=\"heading 1\"/></w:style></w:styles>" } } },
    { EXTRACT_TYPE_ODT,
      { { "mimetype", "application/vnd.oasis.opendocument.text" } },
      { { "content.xml", "" },
        { "META-INF/manifest.xml",
          "<?xml version=\"1.0\"?><manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:"
          "opendocument:xmlns:manifest:1.0\"/>" } } },
    { EXTRACT_TYPE_EPUB,
      { { "mimetype", "application/epub+zip" } },
      { { "OEBPS/book.opf", "" },
        { "OEBPS/text/one.xhtml", "<html><body><p>One.</p></body></html>" },
        { "META-INF/container.xml",
          "<?xml version=\"1.0\"?><container version=\"1.0\" xmlns=\"urn:oasis:names:tc:"
          "opendocument:xmlns:container\"><rootfiles><rootfile full-path=\"OEBPS/book.opf\" "
          "media-type=\"application/oebps-package+xml\"/></rootfiles></container>" },
        { "OEBPS/text/two.xhtml", "<html><body><p>Two.</p></body></html>" },
        { "OEBPS/nav.xhtml", "" },
        { "OEBPS/toc.ncx", "" } } },
    { EXTRACT_TYPE_PPTX,
      { { "[Content_Types].xml", "<?xml version=\"1.0\"?><Types/>" } },
      { { "ppt/slides/slide1.xml", "" },
        { "ppt/notesSlides/notesSlide1.xml", "" },
        { "ppt/presentation.xml",
          "<?xml version=\"1.0\"?><p:presentation xmlns:p=\"http://schemas.openxmlformats.org/"
          "presentationml/2006/main\" xmlns:r=\"" OFFICE_RELS "\"><p:sldIdLst><p:sldId "
          "id=\"256\" r:id=\"rId1\"/></p:sldIdLst></p:presentation>" },
        { "ppt/_rels/presentation.xml.rels",
          "<?xml version=\"1.0\"?><Relationships xmlns=\"" PKG_RELS "\"><Relationship "
          "Id=\"rId1\" Type=\"" OFFICE_RELS "/slide\" Target=\"slides/slide1.xml\"/>"
          "</Relationships>" },
        { "ppt/slides/_rels/slide1.xml.rels",
          "<?xml version=\"1.0\"?><Relationships xmlns=\"" PKG_RELS "\"><Relationship "
          "Id=\"rId2\" Type=\"" OFFICE_RELS "/notesSlide\" "
          "Target=\"../notesSlides/notesSlide1.xml\"/></Relationships>" } } },
    { EXTRACT_TYPE_XLSX,
      { { "[Content_Types].xml", "<?xml version=\"1.0\"?><Types/>" } },
      { { "xl/worksheets/sheet1.xml", "" },
        { "xl/sharedStrings.xml", "" },
        { "xl/workbook.xml",
          "<?xml version=\"1.0\"?><workbook xmlns=\"http://schemas.openxmlformats.org/"
          "spreadsheetml/2006/main\" xmlns:r=\"" OFFICE_RELS "\"><sheets><sheet name=\"S\" "
          "sheetId=\"1\" r:id=\"rId1\"/></sheets></workbook>" },
        { "xl/_rels/workbook.xml.rels",
          "<?xml version=\"1.0\"?><Relationships xmlns=\"" PKG_RELS "\"><Relationship "
          "Id=\"rId1\" Type=\"" OFFICE_RELS "/worksheet\" Target=\"worksheets/sheet1.xml\"/>"
          "<Relationship Id=\"rId2\" Type=\"" OFFICE_RELS "/sharedStrings\" "
          "Target=\"sharedStrings.xml\"/></Relationships>" } } },
    { EXTRACT_TYPE_ODP,
      { { "mimetype", "application/vnd.oasis.opendocument.presentation" } },
      { { "content.xml", "" } } },
    { EXTRACT_TYPE_ODS,
      { { "mimetype", "application/vnd.oasis.opendocument.spreadsheet" } },
      { { "content.xml", "" } } },
};

static int g_fd = -1;
static backend_fn g_extract;
static const char *g_name;
static int g_wrap = -1;   /* index into wraps, or -1 */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (backends[i].type == FUZZ_TYPE) {
            g_extract = backends[i].extract;
            g_name = backends[i].name;
        }
    FUZZ_CHECK(g_extract != NULL, "no backend for type %d", (int)FUZZ_TYPE);
    for (size_t i = 0; i < sizeof wraps / sizeof wraps[0]; i++)
        if (wraps[i].type == FUZZ_TYPE)
            g_wrap = (int)i;
    g_fd = fuzz_memfd("upload");
    return 0;
}

/* A code a file may legitimately cause. */
static bool file_code(int rc)
{
    switch (rc) {
    case EXTRACT_OK:
    case EXTRACT_EUNSUPPORTED:
    case EXTRACT_ECORRUPT:
    case EXTRACT_EENCRYPTED:
    case EXTRACT_ENOTEXT:
    case EXTRACT_ETOOBIG:
    case EXTRACT_EBOMB:
    case EXTRACT_EMEMORY:
        return true;
    default:
        return false;
    }
}

static void check_text(const char *text, size_t len, size_t chars)
{
    FUZZ_CHECK(text != NULL && len > 0, "success without text");
    FUZZ_CHECK(len <= MAX_OUTPUT, "%zu bytes over the limit", len);
    FUZZ_CHECK(text[len] == '\0', "text not NUL-terminated");
    FUZZ_CHECK(fuzz_clean_text(text, len), "text is not clean UTF-8");
    FUZZ_CHECK(text[0] != '\n', "text starts with a blank line");
    FUZZ_CHECK(text[len - 1] == '\n', "text does not end with a newline");
    FUZZ_CHECK(len == 1 || text[len - 2] != '\n', "text ends with a blank line");
    size_t cps = 0;
    int run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c & 0xC0) != 0x80)
            cps++;
        if (c == '\n') {
            FUZZ_CHECK(i == 0 || (text[i - 1] != ' ' && text[i - 1] != '\t'),
                       "blank at the end of a line (offset %zu)", i);
            FUZZ_CHECK(++run <= 3, "more than two blank lines in a row (offset %zu)", i);
        } else {
            run = 0;
        }
    }
    FUZZ_CHECK(cps == chars, "chars %zu, counted %zu", chars, cps);
}

/* The sink's marks against the finished text[0..len). */
static void check_marks(const textout_t *out, const char *text, size_t len)
{
    size_t n = textout_mark_count(out), prev = 0, wire = 0;
    FUZZ_CHECK(n <= EXTRACT_MARKS_MAX, "%zu marks", n);
    FUZZ_CHECK(!textout_marks_dropped(out) || n == 0, "marks kept after they were dropped");
    for (size_t i = 0; i < n; i++) {
        extract_mark_t m;
        textout_mark_get(out, i, &m);
        FUZZ_CHECK(m.offset >= prev, "mark %zu at %zu before %zu", i, m.offset, prev);
        FUZZ_CHECK(m.offset <= len, "mark %zu at %zu past the end (%zu)", i, m.offset, len);
        FUZZ_CHECK(m.offset == len || ((unsigned char)text[m.offset] & 0xC0) != 0x80,
                   "mark %zu at %zu inside a character", i, m.offset);
        prev = m.offset;
        if (m.kind == EXTRACT_MARK_PAGE)
            FUZZ_CHECK(m.number >= 1, "page %d", m.number);
        else
            FUZZ_CHECK(m.kind == EXTRACT_MARK_HEADING && m.number >= 1 &&
                           m.number <= EXTRACT_HEADING_LEVEL_MAX,
                       "kind %d number %d", (int)m.kind, m.number);
        size_t ll = strlen(m.label);
        FUZZ_CHECK(ll <= EXTRACT_MARK_LABEL_MAX, "label of %zu bytes", ll);
        FUZZ_CHECK(m.kind == EXTRACT_MARK_PAGE || ll > 0, "heading without a title");
        FUZZ_CHECK(fuzz_clean_text(m.label, ll) && !memchr(m.label, '\n', ll) &&
                       !memchr(m.label, '\t', ll),
                   "label not clean");
        FUZZ_CHECK(ll == 0 || (m.label[0] != ' ' && m.label[ll - 1] != ' ' &&
                               !strstr(m.label, "  ")),
                   "label not normalised: \"%s\"", m.label);
        char line[EXTRACT_MARK_LINE_MAX];
        size_t k = extract_mark_format(&m, line);
        FUZZ_CHECK(k > 0 && line[k - 1] == '\n', "mark %zu not written", i);
        wire += k;
        extract_mark_t back;
        size_t back_len;
        FUZZ_CHECK(extract_mark_parse(line, k - 1, &back, &back_len) == 0,
                   "mark %zu does not read back: %s", i, line);
        FUZZ_CHECK(back.kind == m.kind && back.offset == m.offset && back.number == m.number &&
                       back_len == ll && memcmp(back.label, m.label, ll) == 0,
                   "mark %zu reads back different: %s", i, line);
    }
    FUZZ_CHECK(wire <= extract_marks_limit(MAX_OUTPUT), "%zu bytes of marks", wire);
}

/* Run backend `extract` on g_fd; checks what it gives and returns the
 * code, with the text in *text (caller frees) on success. */
static int run_backend(backend_fn extract, char **text, size_t *len)
{
    textout_t out;
    textout_init(&out, MAX_OUTPUT);
    int rc = extract(g_fd, &out);
    FUZZ_CHECK(file_code(rc), "the backend returned %d (%s)", rc, extract_strerror(rc));
    size_t chars = 0;
    *text = NULL;
    *len = 0;
    if (rc == EXTRACT_OK) {
        rc = textout_finish(&out, text, len, &chars);
        FUZZ_CHECK(file_code(rc), "textout_finish returned %d", rc);
        if (rc == EXTRACT_OK) {
            check_text(*text, *len, chars);
            check_marks(&out, *text, *len);
        } else {
            FUZZ_CHECK(*text == NULL, "text left behind a failure");
        }
    }
    textout_cleanup(&out);
    return rc;
}

/* Add one stored entry to the zip being built. */
static void zip_put(zip_t *z, const char *name, const void *data, size_t len)
{
    zip_source_t *src = zip_source_buffer(z, len ? data : "", len, 0);
    FUZZ_CHECK(src != NULL, "zip_source_buffer: %s", zip_strerror(z));
    zip_int64_t i = zip_file_add(z, name, src, ZIP_FL_OVERWRITE);
    FUZZ_CHECK(i >= 0, "zip_file_add: %s", zip_strerror(z));
    zip_set_file_compression(z, (zip_uint64_t)i, ZIP_CM_STORE, 0);
}

/* Pack the XML pieces of data into a zip (wraps[g_wrap]) and write it to
 * g_fd. */
static void write_wrapped(const uint8_t *data, size_t size)
{
    zip_error_t zerr;
    zip_error_init(&zerr);
    zip_source_t *mem = zip_source_buffer_create(NULL, 0, 0, &zerr);
    FUZZ_CHECK(mem != NULL, "zip_source_buffer_create");
    zip_t *z = zip_open_from_source(mem, ZIP_TRUNCATE, &zerr);
    FUZZ_CHECK(z != NULL, "zip_open_from_source");
    zip_source_keep(mem);
    for (size_t i = 0; i < 2; i++)
        if (wraps[g_wrap].fixed[i].name)
            zip_put(z, wraps[g_wrap].fixed[i].name, wraps[g_wrap].fixed[i].data,
                    strlen(wraps[g_wrap].fixed[i].data));
    const uint8_t *p = data, *end = data + size;
    const size_t sl = strlen(FUZZ_PART_SPLIT);
    for (size_t i = 0; i < FUZZ_PARTS_MAX && wraps[g_wrap].parts[i].name; i++) {
        const entry_t *e = &wraps[g_wrap].parts[i];
        if (p) {
            const uint8_t *q = memmem(p, (size_t)(end - p), FUZZ_PART_SPLIT, sl);
            zip_put(z, e->name, p, q ? (size_t)(q - p) : (size_t)(end - p));
            p = q ? q + sl : NULL;
        } else {
            zip_put(z, e->name, e->data, strlen(e->data));
        }
    }
    FUZZ_CHECK(zip_close(z) == 0, "zip_close");
    zip_stat_t st;
    FUZZ_CHECK(zip_source_stat(mem, &st) == 0 && zip_source_open(mem) == 0, "zip source");
    uint8_t *buf = malloc(st.size ? st.size : 1);
    FUZZ_CHECK(buf != NULL, "out of memory");
    FUZZ_CHECK(zip_source_read(mem, buf, st.size) == (zip_int64_t)st.size, "zip source read");
    zip_source_close(mem);
    zip_source_free(mem);
    fuzz_memfd_set(g_fd, buf, st.size);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds = fuzz_fds_mark();
    if (g_wrap >= 0 && !(size >= 2 && data[0] == 'P' && data[1] == 'K'))
        write_wrapped(data, size);
    else
        fuzz_memfd_set(g_fd, data, size);

    extract_type_t type = detect_from_name(g_name);
    int rc = detect_type(g_fd, g_name, &type);
    FUZZ_CHECK(file_code(rc), "detect_type returned %d", rc);
    FUZZ_CHECK(type >= EXTRACT_TYPE_UNKNOWN && type < EXTRACT_TYPE_COUNT, "type %d", (int)type);

    char *text = NULL;
    size_t len = 0;
    rc = run_backend(g_extract, &text, &len);
    if (FUZZ_TYPE == EXTRACT_TYPE_TXT) {
        char *md = NULL;
        size_t md_len = 0;
        int md_rc = run_backend(text_extract_md, &md, &md_len);
        FUZZ_CHECK(md_rc == rc, "md returned %d, txt %d", md_rc, rc);
        FUZZ_CHECK(md_len == len && (len == 0 || memcmp(md, text, len) == 0),
                   "md text differs from txt text");
        free(md);
    }
    free(text);
    fuzz_fds_check(fds);
    return 0;
}
