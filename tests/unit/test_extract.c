/* test_extract.c — kvchat-extract on every format, through the runner (as
 * kvchat calls it) and through its command line.
 *
 * Every fixture is generated here, into a temporary folder: PDFs are
 * written object by object with a computed xref (no MuPDF in the tests:
 * kvchat-extract is the only binary that links it), zip-based documents
 * with libzip.
 * - txt: UTF-8 with CRLF and trailing blanks, UTF-16LE with BOM, Latin-1,
 *   ill-formed UTF-8 (U+FFFD), stray NULs and controls, Markdown by name;
 * - html: script/style/head skipped, 300 nested divs (past libxml2's 256
 *   default), a <meta charset> Latin-1 page, a UTF-8 page naming no
 *   charset, tables, <pre>, HTML found by content under a .txt name;
 * - pdf: hyphenated line joined, hyphen before a capital kept, two pages
 *   split by a blank line; a PDF named .txt; password-protected; images
 *   only (no text: "scanned"); garbage after a PDF header (corrupt); page
 *   trees that lie (absurd /Count, a count past the pages, a subtree listed
 *   400,000 times: damaged, early, within a CPU limit of a few seconds); a
 *   truncated file (damaged, not "scanned");
 * - docx: paragraphs, tabs, breaks, tables, tab stops, deleted and moved
 *   text, mc:Fallback duplicates; a zip bomb whose declared size is over
 *   the limit, and one whose headers lie about its size; an
 *   Office-encrypted docx; a damaged zip;
 * - odt: headings, spans, text:s, tabs, line breaks, lists, tables,
 *   tracked deletions, notes and annotations skipped; an encrypted odt;
 * - epub: spine order (not manifest order), a %-encoded href, chapters
 *   split by a blank line, font obfuscation accepted, DRM refused;
 * - rejects: random bytes named .pdf and .txt, a PNG named .pdf, a zip of
 *   something else (unsupported, HTTP 400 class); an empty file (no text);
 * - the CLI: --detect, the stderr status line, exit codes, --max-output;
 * - structure (pages and headings, through the runner): each mark at the
 *   start of the text it opens, with its number and label: txt form
 *   feeds, Markdown headings, HTML h1-h6 and print page breaks, PDF pages
 *   with /PageLabels (roman, decimal with a prefix and a start, letters)
 *   and outline entries by explicit and named destinations and GoTo
 *   actions (nested, out of order, UTF-16 titles; URI entries and a cycle
 *   skipped), an outline 150 deep with a cycle (levels capped, the walk
 *   bounded), 20,000 entries naming absent destinations in a name tree
 *   built to be slow (quick all the same), docx heading styles (by ID, by name in styles.xml, by
 *   w:outlineLvl in the style, on the paragraph, through w:basedOn; not
 *   in a table, not from a tracked old style), odt text:h outline levels,
 *   epub chapters' headings and page breaks numbered through the book,
 *   headings from the nav's TOC (levels by nesting, at a chapter's start or
 *   at an id, not doubling the chapter's own heading of the same title) and
 *   from an EPUB 2 NCX, pages from a nav page-list and an NCX pageList
 *   (labels, one mark where a page break marks the same page), unusable
 *   navigation (malformed, too deep, missing; entries outside the book)
 *   ignored without losing the text;
 *   types without structure have none; --structure-fd on the command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zip.h>

#include "extract/runner.h"

static char g_dir[64];

/* ---- files ------------------------------------------------------------ */

static const char *fixture(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    return path;
}

static const char *write_fixture(const char *name, const void *data, size_t len)
{
    const char *path = fixture(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

#define WRITE_LIT(name, lit) write_fixture(name, lit, sizeof(lit) - 1)

/* ---- running ------------------------------------------------------------ */

static void limits(extract_limits_t *lim)
{
    extract_limits_default(lim);
    lim->exe = KVCHAT_EXTRACT_EXE;
    lim->timeout_ms = 120000;
    lim->cpu_seconds = 100;
#if defined(__SANITIZE_ADDRESS__)
    lim->mem_bytes = 0;   /* ASan reserves terabytes of address space */
#endif
}

/* Tight CPU budgets: ASan's checks slow the extractor's own code several
 * times over (test_pdf_count_past_pages' 8-million-entry xref took 2.2 s
 * of CPU under ASan, over its budget of 2). */
#if defined(__SANITIZE_ADDRESS__)
#define CPU_SCALE 4
#else
#define CPU_SCALE 1
#endif

/* Expect mark i of r to be of this kind, number and label, at the offset
 * where `at` starts in the text (the first occurrence; "" is the end). */
static void expect_mark(const extract_result_t *r, size_t i, extract_mark_kind_t kind, int number,
                        const char *label, const char *at)
{
    if (i >= r->n_marks)
        fail_msg("mark %zu of %zu", i, r->n_marks);
    const extract_mark_t *m = &r->marks[i];
    const char *where = *at ? strstr(r->text, at) : r->text + r->len;
    assert_non_null(where);
    if (m->kind != kind || m->number != number || strcmp(m->label, label) != 0 ||
        m->offset != (size_t)(where - r->text))
        fail_msg("mark %zu: %c %zu %d \"%s\", want %c %zu %d \"%s\"", i, (char)m->kind,
                 m->offset, m->number, m->label, (char)kind, (size_t)(where - r->text), number,
                 label);
}

#define PAGE(r, i, n, label, at) expect_mark(r, i, EXTRACT_MARK_PAGE, n, label, at)
#define HEADING(r, i, n, title, at) expect_mark(r, i, EXTRACT_MARK_HEADING, n, title, at)

/* Extract and expect success with this type; *r is the caller's to clean. */
static void run_ok(const char *path, const char *client_name, const char *type,
                   extract_result_t *r)
{
    extract_limits_t lim;
    limits(&lim);
    int rc = extract_run(&lim, path, client_name, r);
    if (rc != EXTRACT_OK)
        fail_msg("%s: code %d (%s): %s", client_name, rc, extract_strerror(rc), r->message);
    assert_string_equal(r->type, type);
    assert_false(r->marks_dropped);
}

/* Extract and expect success with this text and type. */
static void expect_text(const char *path, const char *client_name, const char *type,
                        const char *want)
{
    extract_limits_t lim;
    limits(&lim);
    extract_result_t r;
    int rc = extract_run(&lim, path, client_name, &r);
    if (rc != EXTRACT_OK)
        fail_msg("%s: code %d (%s): %s", client_name, rc, extract_strerror(rc), r.message);
    assert_string_equal(r.type, type);
    assert_string_equal(r.text, want);
    assert_int_equal(strlen(r.text), r.len);
    extract_result_cleanup(&r);
}

/* Extract and expect this failure; returns nothing, checks the message if
 * `message` is not NULL. */
static void expect_error(const char *path, const char *client_name, int code,
                         const char *message)
{
    extract_limits_t lim;
    limits(&lim);
    extract_result_t r;
    int rc = extract_run(&lim, path, client_name, &r);
    if (rc != code)
        fail_msg("%s: want %d (%s), got %d (%s): %s", client_name, code, extract_strerror(code),
                 rc, extract_strerror(rc), r.message);
    assert_null(r.text);
    if (message)
        assert_string_equal(r.message, message);
    assert_true(r.message[0] != '\0');
    extract_result_cleanup(&r);
}

/* As expect_error, with a CPU-time limit of cpu_seconds (a hostile file
 * that is not caught early runs into it: EXTRACT_ECPU). */
static void expect_error_cpu(const char *path, const char *client_name, unsigned cpu_seconds,
                             int code, const char *message)
{
    extract_limits_t lim;
    limits(&lim);
    lim.cpu_seconds = cpu_seconds;
    extract_result_t r;
    int rc = extract_run(&lim, path, client_name, &r);
    if (rc != code)
        fail_msg("%s: want %d (%s), got %d (%s): %s", client_name, code, extract_strerror(code),
                 rc, extract_strerror(rc), r.message);
    assert_null(r.text);
    assert_string_equal(r.message, message);
    extract_result_cleanup(&r);
}

typedef struct {
    int status;          /* exit status, or -1 */
    char out[4096];
    char err[4096];
} cli_t;

static void read_all_fd(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0 || n + (size_t)k >= cap - 1) {
            if (k > 0)
                n += (size_t)k;
            break;
        }
        n += (size_t)k;
    }
    buf[n] = '\0';
}

/* Run kvchat-extract directly with argv (NULL-terminated, without argv[0]). */
static void cli(cli_t *c, const char *const *args)
{
    const char *argv[16] = { KVCHAT_EXTRACT_EXE };
    int n = 1;
    for (; args[n - 1]; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    int out[2], err[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    read_all_fd(out[0], c->out, sizeof c->out);   /* outputs here are small */
    read_all_fd(err[0], c->err, sizeof c->err);
    close(out[0]);
    close(err[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    c->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- zip ------------------------------------------------------------------ */

typedef struct {
    const char *name;
    const void *data;
    size_t len;          /* 0: strlen(data) */
    bool store;
} zentry_t;

static void zip_write(const char *path, const zentry_t *e, size_t n)
{
    int ze = 0;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &ze);
    assert_non_null(z);
    for (size_t i = 0; i < n; i++) {
        size_t len = e[i].len ? e[i].len : strlen(e[i].data);
        zip_source_t *src = zip_source_buffer(z, e[i].data, len, 0);
        assert_non_null(src);
        zip_int64_t idx = zip_file_add(z, e[i].name, src, ZIP_FL_OVERWRITE);
        assert_true(idx >= 0);
        if (e[i].store)
            assert_int_equal(zip_set_file_compression(z, (zip_uint64_t)idx, ZIP_CM_STORE, 0), 0);
    }
    assert_int_equal(zip_close(z), 0);
}

/* A zip source producing `size` bytes of a Word body without holding them. */
typedef struct {
    uint64_t size, pos;
    zip_error_t error;
} bomb_t;

static const char bomb_head[] =
    "<?xml version=\"1.0\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/"
    "wordprocessingml/2006/main\"><w:body>";
static const char bomb_unit[] = "<w:p><w:r><w:t>boom boom boom</w:t></w:r></w:p>";

static zip_int64_t bomb_cb(void *ud, void *data, zip_uint64_t len, zip_source_cmd_t cmd)
{
    bomb_t *b = ud;
    switch (cmd) {
    case ZIP_SOURCE_OPEN:
        b->pos = 0;
        return 0;
    case ZIP_SOURCE_READ: {
        char *p = data;
        uint64_t n = b->size - b->pos < len ? b->size - b->pos : len;
        const uint64_t h = sizeof bomb_head - 1, u = sizeof bomb_unit - 1;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t at = b->pos + i;
            p[i] = at < h ? bomb_head[at] : bomb_unit[(at - h) % u];
        }
        b->pos += n;
        return (zip_int64_t)n;
    }
    case ZIP_SOURCE_CLOSE:
    case ZIP_SOURCE_FREE:
        return 0;
    case ZIP_SOURCE_STAT: {
        zip_stat_t *st = data;
        zip_stat_init(st);
        st->size = b->size;
        st->mtime = 0;
        st->valid |= ZIP_STAT_SIZE | ZIP_STAT_MTIME;
        return sizeof *st;
    }
    case ZIP_SOURCE_ERROR:
        return zip_error_to_data(&b->error, data, len);
    case ZIP_SOURCE_SUPPORTS:
        return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ,
                                              ZIP_SOURCE_CLOSE, ZIP_SOURCE_STAT,
                                              ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE, -1);
    default:
        zip_error_set(&b->error, ZIP_ER_OPNOTSUPP, 0);
        return -1;
    }
}

static void write_bomb_docx(const char *path, uint64_t size)
{
    int ze = 0;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &ze);
    assert_non_null(z);
    bomb_t b = { .size = size };
    zip_error_init(&b.error);
    zip_source_t *src = zip_source_function(z, bomb_cb, &b);
    assert_non_null(src);
    assert_true(zip_file_add(z, "word/document.xml", src, 0) >= 0);
    assert_int_equal(zip_close(z), 0);
    zip_error_fini(&b.error);
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Rewrite the uncompressed size of every entry, in the local and the
 * central headers alike, so the archive stays self-consistent but lies. */
static int patch_declared_sizes(const char *path, uint32_t size)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    unsigned char *buf = malloc((size_t)n);
    assert_non_null(buf);
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    int patched = 0;
    for (long i = 0; i + 46 <= n; i++) {
        if (memcmp(buf + i, "PK\x03\x04", 4) == 0 && le32(buf + i + 22) > size) {
            put_le32(buf + i + 22, size);
            patched++;
        } else if (memcmp(buf + i, "PK\x01\x02", 4) == 0 && le32(buf + i + 24) > size) {
            put_le32(buf + i + 24, size);
            patched++;
        }
    }
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fwrite(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    free(buf);
    return patched;
}

/* ---- pdf ------------------------------------------------------------------ */

typedef struct {
    char data[65536];
    size_t len;
} pdfbuf_t;

static void pdf_add(pdfbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pdf_add(pdfbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->data + b->len, sizeof b->data - b->len, fmt, ap);
    va_end(ap);
    assert_true(k >= 0 && (size_t)k < sizeof b->data - b->len);
    b->len += (size_t)k;
}

/* A stream object body with its /Length. */
static char *pdf_stream(const char *dict_extra, const char *data)
{
    static char out[8][2048];
    static int next;
    char *s = out[next++ % 8];
    snprintf(s, sizeof out[0], "<< /Length %zu %s>>\nstream\n%s\nendstream", strlen(data),
             dict_extra, data);
    return s;
}

/* Write a PDF whose objects 1..n are objs[0..n), with a correct xref. */
static const char *pdf_write(const char *name, const char *const *objs, int n,
                             const char *trailer_extra)
{
    static pdfbuf_t b;
    long offsets[256];
    assert_true(n < 256);
    b.len = 0;
    pdf_add(&b, "%%PDF-1.4\n%%\xe2\xe3\xcf\xd3\n");
    for (int i = 0; i < n; i++) {
        offsets[i] = (long)b.len;
        pdf_add(&b, "%d 0 obj\n%s\nendobj\n", i + 1, objs[i]);
    }
    long xref = (long)b.len;
    pdf_add(&b, "xref\n0 %d\n0000000000 65535 f \n", n + 1);
    for (int i = 0; i < n; i++)
        pdf_add(&b, "%010ld 00000 n \n", offsets[i]);
    pdf_add(&b, "trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%ld\n%%%%EOF\n", n + 1,
            trailer_extra, xref);
    return write_fixture(name, b.data, b.len);
}

#define PDF_CATALOG "<< /Type /Catalog /Pages 2 0 R >>"
#define PDF_FONT "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
#define PDF_PAGE(contents)                                                                  \
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R" \
    " >> /XObject << /Im1 4 0 R >> >> /Contents " contents " >>"
#define PDF_IMAGE_DICT                                                                      \
    "/Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray "            \
    "/BitsPerComponent 8 /Filter /ASCIIHexDecode "

/* One page of text (objects: 1 catalog, 2 pages, 3 font, 4 image, 5 page,
 * 6 contents, then extra). */
static const char *pdf_one_page(const char *name, const char *content, const char *extra_obj,
                                const char *trailer_extra)
{
    const char *objs[7] = {
        PDF_CATALOG,
        "<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
        PDF_FONT,
        pdf_stream(PDF_IMAGE_DICT, "00FF00FF>"),
        PDF_PAGE("6 0 R"),
        pdf_stream("", content),
        extra_obj,
    };
    return pdf_write(name, objs, extra_obj ? 7 : 6, trailer_extra ? trailer_extra : "");
}

/* ---- setup ---------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/kvchat-extract-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- text ------------------------------------------------------------------ */

static void test_txt(void **state)
{
    (void)state;
    const char *p = WRITE_LIT("a.bin", "Hello, world.   \r\nSecond line\t\r\n\r\n\r\n\r\n\r\nLast");
    expect_text(p, "hello.txt", "txt", "Hello, world.\nSecond line\n\n\nLast\n");
    expect_text(p, NULL, "txt", "Hello, world.\nSecond line\n\n\nLast\n");

    p = WRITE_LIT("b.bin", "\xff\xfeH\x00\xe9\x00l\x00l\x00o\x00\r\x00\n\x00" "2\x00");
    expect_text(p, "utf16.txt", "txt", "H\xc3\xa9llo\n2\n");

    p = WRITE_LIT("c.bin", "Cr\xe8me br\xfbl\xe9" "e \x80" "5");
    expect_text(p, "latin1.txt", "txt", "Cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e \xe2\x82\xac" "5\n");

    p = WRITE_LIT("d.bin", "Gr\xc3\xbc\xc3\x9f" "e \xff\xfe\xc3\xa9t\xc3\xa9 \xe2\x82");
    expect_text(p, "broken.txt", "txt",
                "Gr\xc3\xbc\xc3\x9f" "e \xef\xbf\xbd\xef\xbf\xbd\xc3\xa9t\xc3\xa9 \xef\xbf\xbd\n");
}

static void test_txt_controls(void **state)
{
    (void)state;
    /* A log with one stray NUL and a bell stays text; both are dropped. */
    char buf[4096];
    size_t n = 0;
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "line %02d of the log\n", i);
    buf[5] = '\0';
    buf[30] = '\a';
    const char *p = write_fixture("log.bin", buf, n);
    extract_limits_t lim;
    limits(&lim);
    extract_result_t r;
    assert_int_equal(extract_run(&lim, p, "server.log", &r), EXTRACT_OK);
    assert_string_equal(r.type, "txt");
    assert_int_equal(strncmp(r.text, "line 0 of the log\nline 01 of he log\n", 36), 0);
    assert_null(memchr(r.text, '\a', r.len));
    assert_int_equal(r.len, n - 2);
    extract_result_cleanup(&r);
}

static void test_md(void **state)
{
    (void)state;
    const char *p = WRITE_LIT("m.bin", "# Title\n\n- item *one*\n- item two   \n\n    code\n");
    expect_text(p, "notes.md", "md", "# Title\n\n- item *one*\n- item two\n\n    code\n");
    expect_text(p, "notes.MARKDOWN", "md", "# Title\n\n- item *one*\n- item two\n\n    code\n");
    expect_text(p, "notes", "txt", "# Title\n\n- item *one*\n- item two\n\n    code\n");
}

/* ---- html ------------------------------------------------------------------ */

static void test_html(void **state)
{
    (void)state;
    static char page[16384];
    size_t n = 0;
    n += (size_t)snprintf(page + n, sizeof page - n,
                          "<!DOCTYPE html><html><head><meta charset=\"iso-8859-1\">"
                          "<title>Title text</title><style>p { color: red }</style>"
                          "<script>document.write('<p>scripted</p>')</script></head><body>"
                          "<p>caf\xe9   au\n   lait</p>");
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(page + n, sizeof page - n, "<div>");
    n += (size_t)snprintf(page + n, sizeof page - n, "deep <b>bold</b> text");
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(page + n, sizeof page - n, "</div>");
    n += (size_t)snprintf(page + n, sizeof page - n,
                          "<p>after the divs<br>and a break</p>"
                          "<table><tr><td>a</td><td>b</td></tr><tr><th>c</th><td>d</td></tr>"
                          "</table><pre>  keep   spaces</pre><noscript>js off</noscript>"
                          "<ul><li>one</li><li>two</li></ul></body></html>");
    const char *p = write_fixture("page.bin", page, n);
    expect_text(p, "page.html", "html",
                "caf\xc3\xa9 au lait\ndeep bold text\nafter the divs\nand a break\n"
                "\n| a | b |\n| --- | --- |\n| c | d |\n\n  keep   spaces\none\ntwo\n");
}

static void test_html_encoding(void **state)
{
    (void)state;
    /* No charset named: UTF-8 must not be read as Latin-1. */
    const char *p = WRITE_LIT("u.bin", "<html><body><p>caf\xc3\xa9 &amp; cr\xc3\xa8me</p></body></html>");
    expect_text(p, "u.html", "html", "caf\xc3\xa9 & cr\xc3\xa8me\n");
    /* No charset and not UTF-8: Latin-1. */
    p = WRITE_LIT("l.bin", "<html><body><p>caf\xe9</p></body></html>");
    expect_text(p, "l.htm", "html", "caf\xc3\xa9\n");
    /* http-equiv form. */
    p = WRITE_LIT("e.bin", "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; "
                           "charset=windows-1252\"></head><body>\x93quoted\x94</body></html>");
    expect_text(p, "e.html", "html", "\xe2\x80\x9cquoted\xe2\x80\x9d\n");
    /* HTML by content, whatever the name says. */
    p = WRITE_LIT("h.bin", "\n  <!doctype HTML><html><body><p>Hi</p><p>there</p></body></html>");
    expect_text(p, "page.txt", "html", "Hi\nthere\n");
    /* A .html name with plain text inside is still read as HTML. */
    p = WRITE_LIT("t.bin", "just text, a < b");
    expect_text(p, "plain.html", "html", "just text, a < b\n");
}

/* ---- pdf ------------------------------------------------------------------- */

static void test_pdf(void **state)
{
    (void)state;
    const char *objs[] = {
        PDF_CATALOG,
        "<< /Type /Pages /Kids [5 0 R 7 0 R] /Count 2 >>",
        PDF_FONT,
        pdf_stream(PDF_IMAGE_DICT, "00FF00FF>"),
        PDF_PAGE("6 0 R"),
        pdf_stream("", "BT /F1 12 Tf 72 720 Td (This is an exam-) Tj 0 -14 Td "
                       "(ple of text about Nord-) Tj 0 -14 Td (Amerika and more.) Tj ET"),
        PDF_PAGE("8 0 R"),
        pdf_stream("", "BT /F1 12 Tf 72 720 Td (Second page.) Tj ET"),
    };
    const char *p = pdf_write("two.pdf", objs, 8, "");
    const char *want = "This is an example of text about Nord-\nAmerika and more.\n\nSecond page.\n";
    expect_text(p, "report.pdf", "pdf", want);
    /* Content wins over the name. */
    expect_text(p, "report.txt", "pdf", want);
    expect_text(p, NULL, "pdf", want);
}

static void test_pdf_encrypted(void **state)
{
    (void)state;
    /* Standard security handler with a user password we do not know: the
     * empty password does not match /U, so the file cannot be opened. */
    char enc[512];
    snprintf(enc, sizeof enc,
             "<< /Filter /Standard /V 1 /R 2 /Length 40 /P -44 /O <%s> /U <%s> >>",
             "8d9a4bc1e73a2e1c5f64b2a7d03c91e58d9a4bc1e73a2e1c5f64b2a7d03c91e5",
             "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988");
    const char *p = pdf_one_page("locked.pdf", "BT /F1 12 Tf 72 720 Td (Secret) Tj ET", enc,
                                 "/Encrypt 7 0 R /ID [<0123456789abcdef0123456789abcdef> "
                                 "<0123456789abcdef0123456789abcdef>] ");
    expect_error(p, "locked.pdf", EXTRACT_EENCRYPTED,
                 "The PDF is password-protected; kvchat cannot read it.");
}

static void test_pdf_no_text(void **state)
{
    (void)state;
    const char *p = pdf_one_page("scan.pdf", "q 200 0 0 200 100 400 cm /Im1 Do Q", NULL, NULL);
    expect_error(p, "scan.pdf", EXTRACT_ENOTEXT,
                 "The PDF looks like a scanned document: it contains no text, and none was "
                 "recognised in its images (OCR).");
}

static void test_pdf_corrupt(void **state)
{
    (void)state;
    char junk[2048] = "%PDF-1.7\n";
    for (size_t i = 9; i < sizeof junk; i++)
        junk[i] = (char)('a' + (i * 7) % 26);
    const char *p = write_fixture("junk.pdf", junk, sizeof junk);
    expect_error(p, "junk.pdf", EXTRACT_ECORRUPT, "The PDF is damaged or unreadable.");
}

/* A page tree whose /Count no file could hold: MuPDF looks up every page
 * it counts by walking the tree, so without a check the count alone runs
 * the extractor into its CPU limit. Overlong digits wrap around to another
 * large count; a negative or zero count or a real is no page either. */
static void test_pdf_absurd_page_count(void **state)
{
    (void)state;
    static const char *const counts[] = { "2147483647", "100000000000000000000", "1e20",
                                          "-1", "0", "3000000000.0", NULL };
    for (int i = 0; counts[i]; i++) {
        char pages[128];
        snprintf(pages, sizeof pages, "<< /Type /Pages /Kids [5 0 R] /Count %s >>", counts[i]);
        const char *objs[] = {
            PDF_CATALOG, pages, PDF_FONT, pdf_stream(PDF_IMAGE_DICT, "00FF00FF>"),
            PDF_PAGE("6 0 R"), pdf_stream("", "BT /F1 12 Tf 72 720 Td (Counted) Tj ET"),
        };
        const char *p = pdf_write("count.pdf", objs, 6, "");
        expect_error_cpu(p, counts[i], 3, EXTRACT_ECORRUPT, "The PDF is damaged or unreadable.");
    }
}

/* An xref subsection at object 8,000,000 makes the xref that long, so a
 * count of 8,000,000 passes the first check; the pages the tree really
 * holds bound the lookups (before: 8 million failed lookups, seconds of
 * CPU). The one real page is read. */
static void test_pdf_count_past_pages(void **state)
{
    (void)state;
    pdfbuf_t *b = calloc(1, sizeof *b);
    assert_non_null(b);
    const char *objs[] = {
        PDF_CATALOG, "<< /Type /Pages /Kids [5 0 R] /Count 8000000 >>", PDF_FONT,
        pdf_stream(PDF_IMAGE_DICT, "00FF00FF>"), PDF_PAGE("6 0 R"),
        pdf_stream("", "BT /F1 12 Tf 72 720 Td (Only page.) Tj ET"),
    };
    long offsets[6];
    pdf_add(b, "%%PDF-1.4\n");
    for (int i = 0; i < 6; i++) {
        offsets[i] = (long)b->len;
        pdf_add(b, "%d 0 obj\n%s\nendobj\n", i + 1, objs[i]);
    }
    long xref = (long)b->len;
    pdf_add(b, "xref\n0 7\n0000000000 65535 f \n");
    for (int i = 0; i < 6; i++)
        pdf_add(b, "%010ld 00000 n \n", offsets[i]);
    pdf_add(b, "8000000 1\n%010ld 00000 n \n", offsets[0]);
    pdf_add(b, "trailer\n<< /Size 8000001 /Root 1 0 R >>\nstartxref\n%ld\n%%%%EOF\n", xref);
    const char *p = write_fixture("past.pdf", b->data, b->len);
    free(b);
    extract_limits_t lim;
    limits(&lim);
    lim.cpu_seconds = 2 * CPU_SCALE;
    extract_result_t r;
    int rc = extract_run(&lim, p, "past.pdf", &r);
    if (rc != EXTRACT_OK)
        fail_msg("code %d (%s): %s", rc, extract_strerror(rc), r.message);
    assert_string_equal(r.text, "Only page.\n");
    extract_result_cleanup(&r);
}

/* The same empty subtree listed 400,000 times before 20,000 real pages:
 * every page lookup walks past all of them (8e9 steps). A tree needs one
 * visit per object; one that needs more is refused at once. */
static void test_pdf_shared_subtree(void **state)
{
    (void)state;
    enum { PAGES = 20000, REPEAT = 400000, FIRST_PAGE = 7 };
    const char *path = fixture("shared.pdf");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    long *off = calloc(FIRST_PAGE + PAGES, sizeof *off);
    assert_non_null(off);
    fputs("%PDF-1.4\n", f);
#define OBJ(num, ...) (off[(num) - 1] = ftell(f), fprintf(f, "%d 0 obj\n", (num)), \
                       fprintf(f, __VA_ARGS__), fputs("\nendobj\n", f))
    OBJ(1, "%s", PDF_CATALOG);
    off[1] = ftell(f);
    fprintf(f, "2 0 obj\n<< /Type /Pages /Count %d /Kids [", PAGES);
    for (int i = 0; i < REPEAT; i++)
        fputs("6 0 R ", f);
    for (int i = 0; i < PAGES; i++)
        fprintf(f, "%d 0 R ", FIRST_PAGE + i);
    fputs("] >>\nendobj\n", f);
    OBJ(3, "%s", PDF_FONT);
    OBJ(4, "%s", pdf_stream(PDF_IMAGE_DICT, "00FF00FF>"));
    OBJ(5, "%s", pdf_stream("", "BT /F1 12 Tf 72 720 Td (Page.) Tj ET"));
    OBJ(6, "<< /Type /Pages /Kids [] /Count 0 >>");
    for (int i = 0; i < PAGES; i++)
        OBJ(FIRST_PAGE + i, "%s", PDF_PAGE("5 0 R"));
#undef OBJ
    long xref = ftell(f);
    fprintf(f, "xref\n0 %d\n0000000000 65535 f \n", FIRST_PAGE + PAGES);
    for (int i = 0; i < FIRST_PAGE - 1 + PAGES; i++)
        fprintf(f, "%010ld 00000 n \n", off[i]);
    fprintf(f, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%ld\n%%%%EOF\n",
            FIRST_PAGE + PAGES, xref);
    assert_int_equal(fclose(f), 0);
    free(off);
    expect_error_cpu(path, "shared.pdf", 3, EXTRACT_ECORRUPT, "The PDF is damaged or unreadable.");
}

/* A download cut short: MuPDF repairs the missing xref and finds the page,
 * but its font and contents are gone. That is a damaged file, not a scan
 * (which test_pdf_no_text covers: an intact file without text). */
static void test_pdf_truncated(void **state)
{
    (void)state;
    const char *p = pdf_one_page("whole.pdf", "BT /F1 12 Tf 72 720 Td (Complete text) Tj ET", NULL,
                                 NULL);
    expect_text(p, "whole.pdf", "pdf", "Complete text\n");
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    static char data[65536];
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    data[n] = '\0';
    /* cut right after the page object (5), before its contents (6) */
    char *cut = strstr(data, "6 0 obj");
    assert_non_null(cut);
    p = write_fixture("cut.pdf", data, (size_t)(cut - data));
    expect_error(p, "cut.pdf", EXTRACT_ECORRUPT, "The PDF is damaged or unreadable.");
    /* cut inside the xref: repaired, text intact, so it is read */
    cut = strstr(data, "xref");
    assert_non_null(cut);
    p = write_fixture("cut2.pdf", data, (size_t)(cut - data) + 20);
    expect_text(p, "cut2.pdf", "pdf", "Complete text\n");
}

/* ---- docx ---------------------------------------------------------------- */

#define W_NS "http://schemas.openxmlformats.org/wordprocessingml/2006/main"

static const char docx_types[] =
    "<?xml version=\"1.0\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/"
    "content-types\"><Override PartName=\"/word/document.xml\" ContentType=\"application/"
    "vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/></Types>";

static void test_docx(void **state)
{
    (void)state;
    static const char doc[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>"
        "<w:document xmlns:w=\"" W_NS "\" xmlns:mc=\"http://schemas.openxmlformats.org/"
        "markup-compatibility/2006\"><w:body>"
        "<w:p><w:pPr><w:tabs><w:tab w:val=\"left\" w:pos=\"720\"/></w:tabs></w:pPr>"
        "<w:r><w:t>Heading</w:t></w:r></w:p>"
        "<w:p><w:r><w:t xml:space=\"preserve\">Hello </w:t></w:r><w:r><w:t>w\xc3\xb6rld</w:t>"
        "</w:r><w:r><w:tab/><w:t>tabbed</w:t><w:br/><w:t>broken</w:t></w:r></w:p>"
        "<w:p/>"
        "<w:p><w:r><w:t>After empty</w:t></w:r><w:del><w:r><w:delText>deleted</w:delText>"
        "</w:r></w:del><w:moveFrom><w:r><w:t>moved away</w:t></w:r></w:moveFrom>"
        "<w:r><w:instrText>PAGE</w:instrText></w:r></w:p>"
        "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>a1</w:t></w:r></w:p><w:p><w:r><w:t>a1b</w:t></w:r>"
        "</w:p></w:tc><w:tc><w:p><w:r><w:t>b1</w:t></w:r></w:p></w:tc></w:tr>"
        "<w:tr><w:tc><w:p><w:r><w:t>a2</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>b2</w:t>"
        "</w:r></w:p></w:tc></w:tr></w:tbl>"
        "<w:p><w:r><mc:AlternateContent><mc:Choice Requires=\"wps\"><w:t xml:space=\"preserve\">"
        "choice </w:t></mc:Choice><mc:Fallback><w:t>fallback</w:t></mc:Fallback>"
        "</mc:AlternateContent></w:r><w:r><w:t>Last &amp; final</w:t></w:r></w:p>"
        "</w:body></w:document>";
    const zentry_t entries[] = {
        { "[Content_Types].xml", docx_types, 0, false },
        { "word/document.xml", doc, 0, false },
    };
    const char *p = fixture("doc.bin");
    zip_write(p, entries, 2);
    expect_text(p, "letter.docx", "docx",
                "Heading\nHello w\xc3\xb6rld\ttabbed\nbroken\n\nAfter empty\n\n"
                "| a1 a1b | b1 |\n| --- | --- |\n| a2 | b2 |\n\nchoice Last & final\n");
    expect_text(p, "letter.zip", "docx",
                "Heading\nHello w\xc3\xb6rld\ttabbed\nbroken\n\nAfter empty\n\n"
                "| a1 a1b | b1 |\n| --- | --- |\n| a2 | b2 |\n\nchoice Last & final\n");
}

static void test_docx_bomb(void **state)
{
    (void)state;
    /* 300 MB of paragraphs that deflate to well under 1 MB. */
    const char *p = fixture("bomb.docx");
    write_bomb_docx(p, (uint64_t)300 << 20);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_true(st.st_size < (1 << 20));
    expect_error(p, "bomb.docx", EXTRACT_EBOMB, NULL);

    /* The same trick with headers that claim 1,000 bytes: caught while
     * inflating, at the 1,001st byte. */
    p = fixture("liar.docx");
    write_bomb_docx(p, (uint64_t)64 << 20);
    assert_int_equal(patch_declared_sizes(p, 1000), 2);
    extract_limits_t lim;
    limits(&lim);
    extract_result_t r;
    assert_int_equal(extract_run(&lim, p, "liar.docx", &r), EXTRACT_EBOMB);
    assert_non_null(strstr(r.message, "zip bomb"));
    assert_string_equal(r.type, "docx");
    assert_true(r.elapsed_ms < 10000);
    extract_result_cleanup(&r);
}

static void test_docx_encrypted(void **state)
{
    (void)state;
    /* What Office writes for a password-protected docx: an OLE2 compound
     * file with an EncryptedPackage stream (directory names in UTF-16LE). */
    unsigned char ole[4096];
    memset(ole, 0, sizeof ole);
    memcpy(ole, "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8);
    const char *names[] = { "EncryptionInfo", "EncryptedPackage" };
    size_t at = 1024;
    for (int k = 0; k < 2; k++, at += 128)
        for (size_t i = 0; names[k][i]; i++)
            ole[at + 2 * i] = (unsigned char)names[k][i];
    const char *p = write_fixture("locked.bin", ole, sizeof ole);
    expect_error(p, "locked.docx", EXTRACT_EENCRYPTED,
                 "The Word document is password-protected; kvchat cannot read it.");
    /* A legacy .doc is an OLE2 file too, without that stream. */
    memset(ole + 1024, 0, 256);
    p = write_fixture("legacy.bin", ole, sizeof ole);
    expect_error(p, "legacy.doc", EXTRACT_EUNSUPPORTED, NULL);
}

static void test_docx_damaged(void **state)
{
    (void)state;
    char z[600] = "PK\x03\x04";
    for (size_t i = 4; i < sizeof z; i++)
        z[i] = (char)(i * 31);
    const char *p = write_fixture("damaged.bin", z, sizeof z);
    expect_error(p, "damaged.docx", EXTRACT_ECORRUPT,
                 "The Word document is damaged or unreadable.");
    /* document.xml that is not XML. */
    const zentry_t entries[] = { { "word/document.xml", "<w:document><w:body><w:p>", 0, false } };
    p = fixture("notxml.docx");
    zip_write(p, entries, 1);
    expect_error(p, "notxml.docx", EXTRACT_ECORRUPT, NULL);
}

/* ---- odt ------------------------------------------------------------------ */

#define ODT_MIME "application/vnd.oasis.opendocument.text"
#define MANIFEST_HEAD                                                                        \
    "<?xml version=\"1.0\"?><manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:"         \
    "opendocument:xmlns:manifest:1.0\" manifest:version=\"1.2\"><manifest:file-entry "       \
    "manifest:full-path=\"/\" manifest:media-type=\"" ODT_MIME "\"/>"

static void test_odt(void **state)
{
    (void)state;
    static const char content[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
        "<office:document-content xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\""
        " xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\""
        " xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\" office:version=\"1.2\">"
        "<office:automatic-styles/><office:body><office:text>"
        "<text:tracked-changes><text:changed-region text:id=\"c1\"><text:deletion>"
        "<text:p>deleted words</text:p></text:deletion></text:changed-region>"
        "</text:tracked-changes>"
        "<text:h text:outline-level=\"1\">Chapter   One</text:h>\n"
        "<text:p>  Leading space  and <text:span>spanned</text:span> text<text:s text:c=\"3\"/>"
        "three<text:tab/>tab<text:line-break/>next line</text:p>\n"
        "<text:list><text:list-item><text:p>first item</text:p></text:list-item>"
        "<text:list-item><text:p>second item</text:p></text:list-item></text:list>"
        "<text:p>with note<text:note text:note-class=\"footnote\"><text:note-citation>1"
        "</text:note-citation><text:note-body><text:p>footnote text</text:p></text:note-body>"
        "</text:note> and comment<office:annotation><text:p>a comment</text:p>"
        "</office:annotation>.</text:p>"
        "<table:table table:name=\"T\"><table:table-column/><table:table-row><table:table-cell>"
        "<text:p>c1</text:p></table:table-cell><table:table-cell><text:p>c2</text:p>"
        "<text:p>c2b</text:p></table:table-cell></table:table-row><table:table-row>"
        "<table:table-cell><text:p>d1</text:p></table:table-cell><table:table-cell><text:p>d2"
        "</text:p></table:table-cell></table:table-row></table:table>"
        "<text:p>The end</text:p>"
        "</office:text></office:body></office:document-content>";
    static const char manifest[] =
        MANIFEST_HEAD "<manifest:file-entry manifest:full-path=\"content.xml\" "
                      "manifest:media-type=\"text/xml\"/></manifest:manifest>";
    const zentry_t entries[] = {
        { "mimetype", ODT_MIME, 0, true },
        { "content.xml", content, 0, false },
        { "META-INF/manifest.xml", manifest, 0, false },
    };
    const char *p = fixture("text.bin");
    zip_write(p, entries, 3);
    expect_text(p, "essay.odt", "odt",
                "Chapter One\nLeading space and spanned text   three\ttab\nnext line\n"
                "first item\nsecond item\nwith note and comment.\n\n"
                "| c1 | c2 c2b |\n| --- | --- |\n| d1 | d2 |\n\nThe end\n");
}

static void test_odt_encrypted(void **state)
{
    (void)state;
    static const char manifest[] =
        MANIFEST_HEAD
        "<manifest:file-entry manifest:full-path=\"content.xml\" manifest:media-type=\"text/xml\""
        " manifest:size=\"1234\"><manifest:encryption-data manifest:checksum-type=\"SHA1/1K\" "
        "manifest:checksum=\"AAAA\"><manifest:algorithm manifest:algorithm-name=\"Blowfish CFB\""
        " manifest:initialisation-vector=\"AAAA\"/><manifest:key-derivation "
        "manifest:key-derivation-name=\"PBKDF2\" manifest:iteration-count=\"1024\" "
        "manifest:salt=\"AAAA\"/></manifest:encryption-data></manifest:file-entry>"
        "</manifest:manifest>";
    unsigned char noise[512];
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (unsigned char)(i * 131 + 7);
    const zentry_t entries[] = {
        { "mimetype", ODT_MIME, 0, true },
        { "content.xml", noise, sizeof noise, true },
        { "META-INF/manifest.xml", manifest, 0, false },
    };
    const char *p = fixture("locked.odt");
    zip_write(p, entries, 3);
    expect_error(p, "locked.odt", EXTRACT_EENCRYPTED,
                 "The OpenDocument text is password-protected; kvchat cannot read it.");
}

/* ---- epub ------------------------------------------------------------------ */

static const char epub_container[] =
    "<?xml version=\"1.0\"?><container version=\"1.0\" xmlns=\"urn:oasis:names:tc:"
    "opendocument:xmlns:container\"><rootfiles><rootfile full-path=\"OEBPS/content.opf\" "
    "media-type=\"application/oebps-package+xml\"/></rootfiles></container>";

static const char epub_opf[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><package xmlns=\"http://www.idpf.org/2007/opf\""
    " version=\"3.0\" unique-identifier=\"id\"><metadata xmlns:dc=\"http://purl.org/dc/"
    "elements/1.1/\"><dc:title>Book</dc:title></metadata><manifest>"
    "<item id=\"c2\" href=\"text/chapter%202.xhtml\" media-type=\"application/xhtml+xml\"/>"
    "<item id=\"c1\" href=\"text/ch1.xhtml#start\" media-type=\"application/xhtml+xml\"/>"
    "<item id=\"css\" href=\"style.css\" media-type=\"text/css\"/>"
    "<item id=\"nav\" href=\"nav.xhtml\" media-type=\"application/xhtml+xml\" "
    "properties=\"nav\"/></manifest><spine><itemref idref=\"c1\"/><itemref idref=\"css\"/>"
    "<itemref idref=\"missing\"/><itemref idref=\"c2\"/></spine></package>";

static const char epub_ch1[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><!DOCTYPE html><html xmlns=\"http://www.w3.org/"
    "1999/xhtml\"><head><title>Ch 1</title><link rel=\"stylesheet\" href=\"../style.css\"/>"
    "</head><body><h1>Chapter One</h1><p>It was a dark and stormy night&#8212;caf&#233;."
    "</p></body></html>";

static const char epub_ch2[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><html xmlns=\"http://www.w3.org/1999/xhtml\">"
    "<head><title>Ch 2</title></head><body><h1>Chapter Two</h1><p>The&nbsp;end.</p>"
    "<br/><p>Really.</p></body></html>";

static void write_epub(const char *path, const char *encryption)
{
    const zentry_t entries[] = {
        { "mimetype", "application/epub+zip", 0, true },
        { "META-INF/container.xml", epub_container, 0, false },
        { "OEBPS/content.opf", epub_opf, 0, false },
        { "OEBPS/text/chapter 2.xhtml", epub_ch2, 0, false },
        { "OEBPS/text/ch1.xhtml", epub_ch1, 0, false },
        { "OEBPS/style.css", "p { margin: 0 }", 0, false },
        { "OEBPS/nav.xhtml", "<html><body><p>Contents</p></body></html>", 0, false },
        { "META-INF/encryption.xml", encryption, 0, false },
    };
    zip_write(path, entries, encryption ? 8 : 7);
}

#define ENCRYPTION_XML(alg)                                                                  \
    "<?xml version=\"1.0\"?><encryption xmlns=\"urn:oasis:names:tc:opendocument:xmlns:"     \
    "container\" xmlns:enc=\"http://www.w3.org/2001/04/xmlenc#\"><enc:EncryptedData>"        \
    "<enc:EncryptionMethod Algorithm=\"" alg "\"/><enc:CipherData><enc:CipherReference "     \
    "URI=\"OEBPS/text/ch1.xhtml\"/></enc:CipherData></enc:EncryptedData></encryption>"

static void test_epub(void **state)
{
    (void)state;
    const char *want = "Chapter One\nIt was a dark and stormy night\xe2\x80\x94" "caf\xc3\xa9.\n\n"
                       "Chapter Two\nThe end.\n\nReally.\n";
    const char *p = fixture("book.bin");
    write_epub(p, NULL);
    expect_text(p, "book.epub", "epub", want);
    /* Font obfuscation is not DRM. */
    p = fixture("fonts.epub");
    write_epub(p, ENCRYPTION_XML("http://www.idpf.org/2008/embedding"));
    expect_text(p, "fonts.epub", "epub", want);
    p = fixture("drm.epub");
    write_epub(p, ENCRYPTION_XML("http://www.w3.org/2001/04/xmlenc#aes128-cbc"));
    expect_error(p, "drm.epub", EXTRACT_EENCRYPTED,
                 "The e-book is password-protected; kvchat cannot read it.");
}

/* A spine with an empty manifest: no chapter can be read, so the book is
 * damaged. (Found by fuzz_extract_epub: the manifest lookup handed
 * bsearch() a NULL array, which UBSan reports in the ASan build.) */
static void test_epub_empty_manifest(void **state)
{
    (void)state;
    const zentry_t entries[] = {
        { "mimetype", "application/epub+zip", 0, true },
        { "META-INF/container.xml", epub_container, 0, false },
        { "OEBPS/content.opf",
          "<?xml version=\"1.0\"?><package xmlns=\"http://www.idpf.org/2007/opf\" "
          "version=\"3.0\"><metadata/><manifest/><spine><itemref idref=\"c1\"/></spine>"
          "</package>", 0, false },
        { "OEBPS/text/ch1.xhtml", epub_ch1, 0, false },
    };
    const char *p = fixture("nomanifest.epub");
    zip_write(p, entries, 4);
    expect_error(p, "nomanifest.epub", EXTRACT_ECORRUPT, NULL);
}

/* ---- rejects ----------------------------------------------------------------- */

static void test_unsupported(void **state)
{
    (void)state;
    unsigned char noise[8192];
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof noise; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise[i] = (unsigned char)x;
    }
    const char *p = write_fixture("noise.pdf", noise, sizeof noise);
    extract_limits_t lim;
    limits(&lim);
    extract_result_t r;
    assert_int_equal(extract_run(&lim, p, "noise.pdf", &r), EXTRACT_EUNSUPPORTED);
    assert_true(extract_error_is_unsupported(r.code));
    assert_non_null(strstr(r.message, "cannot read this type of file"));
    extract_result_cleanup(&r);
    expect_error(p, "noise.txt", EXTRACT_EUNSUPPORTED, NULL);

    static const unsigned char png[] = {
        0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
        0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89,
    };
    /* A PNG named .pdf is an image (read by OCR); this one is cut short. */
    p = write_fixture("image.pdf", png, sizeof png);
    expect_error(p, "image.pdf", EXTRACT_ECORRUPT, "The PNG image is damaged or unreadable.");

    const zentry_t entries[] = { { "data.csv", "a,b\n1,2\n", 0, false } };
    p = fixture("other.zip");
    zip_write(p, entries, 1);
    expect_error(p, "other.docx", EXTRACT_EUNSUPPORTED, NULL);

    const zentry_t odg[] = { { "mimetype", "application/vnd.oasis.opendocument.graphics", 0,
                               true } };
    p = fixture("drawing.odg");
    zip_write(p, odg, 1);
    expect_error(p, "drawing.odt", EXTRACT_EUNSUPPORTED, NULL);
}

static void test_empty(void **state)
{
    (void)state;
    const char *p = write_fixture("empty.bin", "", 0);
    expect_error(p, "empty.txt", EXTRACT_ENOTEXT, "The text file contains no text.");
    expect_error(p, NULL, EXTRACT_ENOTEXT, "The file is empty or contains no text.");
    p = WRITE_LIT("blank.bin", "  \r\n\t\n   \n");
    expect_error(p, "blank.txt", EXTRACT_ENOTEXT, NULL);
    p = WRITE_LIT("blank.html", "<html><body><p> </p><script>x()</script></body></html>");
    expect_error(p, "blank.html", EXTRACT_ENOTEXT, "The web page contains no text.");
}

static void test_output_limit(void **state)
{
    (void)state;
    static char big[300000];
    memset(big, 'x', sizeof big);
    for (size_t i = 99; i < sizeof big; i += 100)
        big[i] = '\n';
    const char *p = write_fixture("big.txt", big, sizeof big);
    extract_limits_t lim;
    limits(&lim);
    lim.max_output = 100000;
    extract_result_t r;
    assert_int_equal(extract_run(&lim, p, "big.txt", &r), EXTRACT_ETOOBIG);
    assert_string_equal(r.message, "The extracted text is larger than the 97 KiB limit.");
    extract_result_cleanup(&r);
    lim.max_output = sizeof big;
    assert_int_equal(extract_run(&lim, p, "big.txt", &r), EXTRACT_OK);
    assert_int_equal(r.len, sizeof big);
    extract_result_cleanup(&r);
}

/* ---- structure ------------------------------------------------------------ */

static void test_structure_text(void **state)
{
    (void)state;
    extract_result_t r;
    const char *p = WRITE_LIT("pages.bin", "First page\fSecond page\n\fThird\f");
    run_ok(p, "pages.txt", "txt", &r);
    assert_string_equal(r.text, "First page\nSecond page\n\nThird\n");
    assert_int_equal(r.n_marks, 4);
    PAGE(&r, 0, 1, "", "First");
    PAGE(&r, 1, 2, "", "Second");
    PAGE(&r, 2, 3, "", "Third");
    PAGE(&r, 3, 4, "", "");          /* empty, after the last form feed */
    extract_result_cleanup(&r);

    /* Plain text without form feeds has no structure, nor has Markdown
     * read as txt. */
    p = WRITE_LIT("md.bin", "# Title\n\nIntro.\n\nPart two\n--------\n\n```\n# code\n```\n"
                            "### Deep ###\n");
    run_ok(p, "notes.txt", "txt", &r);
    assert_int_equal(r.n_marks, 0);
    assert_null(r.marks);
    extract_result_cleanup(&r);
    run_ok(p, "notes.md", "md", &r);
    assert_string_equal(r.text, "# Title\n\nIntro.\n\nPart two\n--------\n\n```\n# code\n```\n"
                                "### Deep ###\n");
    assert_int_equal(r.n_marks, 3);
    HEADING(&r, 0, 1, "Title", "# Title");
    HEADING(&r, 1, 2, "Part two", "Part two");
    HEADING(&r, 2, 3, "Deep", "### Deep");
    extract_result_cleanup(&r);
}

static void test_structure_html(void **state)
{
    (void)state;
    const char *p = WRITE_LIT(
        "s.bin", "<html><head><title>Not a heading</title></head><body>"
                 "<h1>  The <em>main</em>\n title </h1><p>Intro text.</p>"
                 "<h2>Part <script>no()</script>one</h2><p>Body <span role=\"doc-pagebreak\" "
                 "aria-label=\"12\"></span>text.</p><h3></h3><div><h4>Nested <h5>inner</h5></h4>"
                 "</div><h6>Last</h6><p>End.</p></body></html>");
    extract_result_t r;
    run_ok(p, "s.html", "html", &r);
    assert_string_equal(r.text, "The main title\nIntro text.\nPart one\nBody text.\nNested\n"
                                "inner\nLast\nEnd.\n");
    assert_int_equal(r.n_marks, 5);
    HEADING(&r, 0, 1, "The main title", "The main");
    HEADING(&r, 1, 2, "Part one", "Part one");
    PAGE(&r, 2, 1, "12", " text.\nNested");   /* mid-paragraph: where the next word goes */
    HEADING(&r, 3, 5, "inner", "inner");   /* the h4 holding it is not a heading */
    HEADING(&r, 4, 6, "Last", "Last");
    extract_result_cleanup(&r);
}

#define PDF_TEXT_PAGE(contents)                                                               \
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R"  \
    " >> >> /Contents " contents " >>"

/* Four pages (the third empty), labelled i, 1, 2, A-7, with an outline of
 * explicit and named destinations and actions. */
static void test_structure_pdf(void **state)
{
    (void)state;
    const char *objs[] = {
        /* 1 */ "<< /Type /Catalog /Pages 2 0 R /Outlines 11 0 R /Dests << /sec11 [6 0 R /Fit] >>"
                " /PageLabels << /Nums [0 << /S /r >> 1 << /S /D >> 3 << /P (A-) /S /D /St 7 >>] >>"
                " >>",
        /* 2 */ "<< /Type /Pages /Kids [4 0 R 6 0 R 8 0 R 9 0 R] /Count 4 >>",
        /* 3 */ PDF_FONT,
        /* 4 */ PDF_TEXT_PAGE("5 0 R"),
        /* 5 */ pdf_stream("", "BT /F1 12 Tf 72 720 Td (Preface text) Tj ET"),
        /* 6 */ PDF_TEXT_PAGE("7 0 R"),
        /* 7 */ pdf_stream("", "BT /F1 12 Tf 72 720 Td (Chapter one text) Tj ET"),
        /* 8 */ "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        /* 9 */ PDF_TEXT_PAGE("10 0 R"),
        /* 10 */ pdf_stream("", "BT /F1 12 Tf 72 720 Td (Appendix text) Tj ET"),
        /* 11 */ "<< /Type /Outlines /First 12 0 R /Last 16 0 R /Count 5 >>",
        /* 12 */ "<< /Title (Chapter 1) /Parent 11 0 R /Next 14 0 R /First 13 0 R /Last 13 0 R"
                 " /Dest [6 0 R /XYZ 0 792 0] >>",
        /* 13 */ "<< /Title (Section   1.1) /Parent 12 0 R /Dest /sec11 >>",
        /* 14 */ "<< /Title <FEFF0041007000700065006E00640069007800200049> /Parent 11 0 R"
                 " /Next 15 0 R /A << /S /GoTo /D [9 0 R /Fit] >> >>",
        /* 15 */ "<< /Title (Web site) /Parent 11 0 R /Next 16 0 R /A << /S /URI"
                 " /URI (http://example.com/) >> >>",
        /* 16 */ "<< /Title (Preface) /Parent 11 0 R /Next 12 0 R /Dest [4 0 R /Fit] >>",
    };
    const char *p = pdf_write("outline.pdf", objs, 16, "");
    extract_result_t r;
    run_ok(p, "book.pdf", "pdf", &r);
    assert_string_equal(r.text, "Preface text\n\nChapter one text\n\nAppendix text\n");
    assert_int_equal(r.n_marks, 8);
    PAGE(&r, 0, 1, "i", "Preface text");
    HEADING(&r, 1, 1, "Preface", "Preface text");     /* later in the outline, earlier page */
    PAGE(&r, 2, 2, "1", "Chapter one");
    HEADING(&r, 3, 1, "Chapter 1", "Chapter one");
    HEADING(&r, 4, 2, "Section 1.1", "Chapter one");
    PAGE(&r, 5, 3, "2", "Appendix");                  /* no text: the same offset */
    PAGE(&r, 6, 4, "A-7", "Appendix");
    HEADING(&r, 7, 1, "Appendix I", "Appendix");
    extract_result_cleanup(&r);

    /* Other label styles; a range with a prefix and no style. */
    const char *objs2[] = {
        "<< /Type /Catalog /Pages 2 0 R /PageLabels << /Nums [0 << /S /A /St 27 >> "
        "1 << /S /R /St 1994 >> 2 << /P (Cover) >> 3 << /S /a /St 3 >>] >> >>",
        "<< /Type /Pages /Kids [4 0 R 6 0 R 7 0 R 8 0 R] /Count 4 >>",
        PDF_FONT,
        PDF_TEXT_PAGE("5 0 R"),
        pdf_stream("", "BT /F1 12 Tf 72 720 Td (Same text) Tj ET"),
        PDF_TEXT_PAGE("5 0 R"),
        PDF_TEXT_PAGE("5 0 R"),
        PDF_TEXT_PAGE("5 0 R"),
    };
    p = pdf_write("labels.pdf", objs2, 8, "");
    run_ok(p, "labels.pdf", "pdf", &r);
    assert_int_equal(r.n_marks, 4);
    assert_string_equal(r.marks[0].label, "AA");
    assert_string_equal(r.marks[1].label, "MCMXCIV");
    assert_string_equal(r.marks[2].label, "Cover");
    assert_string_equal(r.marks[3].label, "c");
    assert_int_equal(r.marks[3].offset, 3 * strlen("Same text\n\n"));
    extract_result_cleanup(&r);

    /* The two-page PDF of test_pdf: pages without labels, no outline. */
    run_ok(fixture("two.pdf"), "report.pdf", "pdf", &r);
    assert_int_equal(r.n_marks, 2);
    PAGE(&r, 0, 1, "", "This is");
    PAGE(&r, 1, 2, "", "Second page");
    extract_result_cleanup(&r);
}

/* An outline nested 150 deep whose last entry leads back to the first:
 * the walk stops at its depth limit and at the cycle, in no time. */
static void test_structure_pdf_hostile_outline(void **state)
{
    (void)state;
    enum { DEPTH = 150, FIRST = 6 };
    static char items[DEPTH][160];
    const char *objs[FIRST - 1 + DEPTH];
    objs[0] = "<< /Type /Catalog /Pages 2 0 R /Outlines 5 0 R >>";
    objs[1] = "<< /Type /Pages /Kids [4 0 R] /Count 1 >>";
    objs[2] = PDF_FONT;
    objs[3] = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << "
              "/F1 3 0 R >> >> /Contents 156 0 R >>";
    objs[4] = "<< /Type /Outlines /First 6 0 R >>";
    for (int i = 0; i < DEPTH; i++) {
        if (i + 1 < DEPTH)
            snprintf(items[i], sizeof items[i], "<< /Title (Level %d) /First %d 0 R /Next %d 0 R"
                     " /Dest [4 0 R /Fit] >>", i + 1, FIRST + i + 1, FIRST);
        else
            snprintf(items[i], sizeof items[i], "<< /Title (Bottom) /First %d 0 R /Dest "
                     "[4 0 R /Fit] >>", FIRST);
        objs[FIRST - 1 + i] = items[i];
    }
    const char *all[FIRST + DEPTH];
    memcpy(all, objs, sizeof objs);
    all[FIRST - 1 + DEPTH] = pdf_stream("", "BT /F1 12 Tf 72 720 Td (Deep) Tj ET");
    const char *p = pdf_write("deep.pdf", all, FIRST + DEPTH, "");
    extract_limits_t lim;
    limits(&lim);
    lim.cpu_seconds = 3;
    extract_result_t r;
    assert_int_equal(extract_run(&lim, p, "deep.pdf", &r), EXTRACT_OK);
    assert_string_equal(r.text, "Deep\n");
    assert_int_equal(r.n_marks, 1 + 64);   /* the page, then 64 levels of the outline */
    PAGE(&r, 0, 1, "", "Deep");
    for (int i = 1; i <= 64; i++) {
        char title[32];
        snprintf(title, sizeof title, "Level %d", i);
        HEADING(&r, (size_t)i, i < 6 ? i : 6, title, "Deep");
    }
    extract_result_cleanup(&r);
}

/* Named destinations built to be slow: a name tree whose root lists one
 * leaf 100,000 times (and itself), the leaf 20,000 unsorted names, and
 * 20,000 outline entries naming destinations that are not there before one
 * that is. Each name is looked for once in a table, not in the tree. */
static void test_structure_pdf_hostile_dests(void **state)
{
    (void)state;
    enum { NAMES = 20000, ITEMS = 20000, KIDS = 100000, FIRST_ITEM = 9 };
    const char *path = fixture("dests.pdf");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    long *off = calloc(FIRST_ITEM + ITEMS, sizeof *off);
    assert_non_null(off);
    fputs("%PDF-1.4\n", f);
#define OBJ(num, ...) (off[(num) - 1] = ftell(f), fprintf(f, "%d 0 obj\n", (num)), \
                       fprintf(f, __VA_ARGS__), fputs("\nendobj\n", f))
    OBJ(1, "<< /Type /Catalog /Pages 2 0 R /Outlines 6 0 R /Names << /Dests 7 0 R >> >>");
    OBJ(2, "<< /Type /Pages /Kids [4 0 R] /Count 1 >>");
    OBJ(3, "%s", PDF_FONT);
    OBJ(4, "%s", PDF_TEXT_PAGE("5 0 R"));
    OBJ(5, "%s", pdf_stream("", "BT /F1 12 Tf 72 720 Td (Destined) Tj ET"));
    OBJ(6, "<< /Type /Outlines /First %d 0 R >>", FIRST_ITEM);
    off[6] = ftell(f);
    fputs("7 0 obj\n<< /Kids [7 0 R ", f);
    for (int i = 0; i < KIDS; i++)
        fputs("8 0 R ", f);
    fputs("] >>\nendobj\n", f);
    off[7] = ftell(f);
    fputs("8 0 obj\n<< /Names [", f);
    for (int i = NAMES - 1; i > 0; i--)
        fprintf(f, "(name%05d) [4 0 R /Fit] ", i);
    fputs("(found) [4 0 R /Fit] ] >>\nendobj\n", f);
    for (int i = 0; i < ITEMS; i++) {
        if (i + 1 < ITEMS)
            OBJ(FIRST_ITEM + i, "<< /Title (Missing) /Dest (nothing%d) /Next %d 0 R >>", i,
                FIRST_ITEM + i + 1);
        else
            OBJ(FIRST_ITEM + i, "<< /Title (Found) /Dest (found) >>");
    }
#undef OBJ
    long xref = ftell(f);
    fprintf(f, "xref\n0 %d\n0000000000 65535 f \n", FIRST_ITEM + ITEMS);
    for (int i = 0; i < FIRST_ITEM - 1 + ITEMS; i++)
        fprintf(f, "%010ld 00000 n \n", off[i]);
    fprintf(f, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%ld\n%%%%EOF\n",
            FIRST_ITEM + ITEMS, xref);
    assert_int_equal(fclose(f), 0);
    free(off);
    extract_limits_t lim;
    limits(&lim);
    lim.cpu_seconds = 3;
    extract_result_t r;
    int rc = extract_run(&lim, path, "dests.pdf", &r);
    if (rc != EXTRACT_OK)
        fail_msg("code %d (%s): %s", rc, extract_strerror(rc), r.message);
    assert_string_equal(r.text, "Destined\n");
    assert_int_equal(r.n_marks, 2);
    PAGE(&r, 0, 1, "", "Destined");
    HEADING(&r, 1, 1, "Found", "Destined");
    assert_true(r.elapsed_ms < 2000);
    extract_result_cleanup(&r);
}

static void test_structure_docx(void **state)
{
    (void)state;
#define P(style, text) "<w:p><w:pPr>" style "</w:pPr><w:r><w:t>" text "</w:t></w:r></w:p>"
#define STYLE(id) "<w:pStyle w:val=\"" id "\"/>"
    static const char doc[] =
        "<?xml version=\"1.0\"?><w:document xmlns:w=\"" W_NS "\"><w:body>"
        P(STYLE("Title"), "The title")
        P(STYLE("Heading1"), "Intro")
        P("", "Body text.")
        P(STYLE("berschrift2"), "Localised")           /* "heading 2" by name */
        P(STYLE("MyHead"), "Outline style")           /* w:outlineLvl 2 in the style */
        P(STYLE("Derived"), "Based on")               /* basedOn MyHead */
        P("<w:outlineLvl w:val=\"0\"/>", "Direct")
        P(STYLE("Heading2") "<w:outlineLvl w:val=\"9\"/>", "Body after all")
        P("<w:pPrChange><w:pPr>" STYLE("Heading1") "</w:pPr></w:pPrChange>", "Was a heading")
        "<w:tbl><w:tr><w:tc>" P(STYLE("Heading1"), "In a table") "</w:tc></w:tr></w:tbl>"
        P(STYLE("Heading8"), "Deep")
        P(STYLE("Heading3"), "")
        "</w:body></w:document>";
#undef P
#undef STYLE
    static const char styles[] =
        "<?xml version=\"1.0\"?><w:styles xmlns:w=\"" W_NS "\">"
        "<w:style w:type=\"paragraph\" w:styleId=\"Heading1\"><w:name w:val=\"heading 1\"/>"
        "</w:style><w:style w:type=\"paragraph\" w:styleId=\"berschrift2\"><w:name "
        "w:val=\"heading 2\"/></w:style><w:style w:type=\"paragraph\" w:styleId=\"MyHead\">"
        "<w:name w:val=\"My head\"/><w:pPr><w:outlineLvl w:val=\"2\"/></w:pPr></w:style>"
        "<w:style w:type=\"paragraph\" w:styleId=\"Derived\"><w:name w:val=\"Derived\"/>"
        "<w:basedOn w:val=\"MyHead\"/></w:style><w:style w:type=\"character\" "
        "w:styleId=\"Heading2\"><w:name w:val=\"heading 2\"/></w:style></w:styles>";
    const zentry_t entries[] = {
        { "[Content_Types].xml", docx_types, 0, false },
        { "word/document.xml", doc, 0, false },
        { "word/styles.xml", styles, 0, false },
    };
    const char *p = fixture("styled.docx");
    zip_write(p, entries, 3);
    extract_result_t r;
    run_ok(p, "styled.docx", "docx", &r);
    assert_string_equal(r.text, "The title\nIntro\nBody text.\nLocalised\nOutline style\n"
                                "Based on\nDirect\nBody after all\nWas a heading\n\nIn a table\n"
                                "\nDeep\n");
    assert_int_equal(r.n_marks, 7);
    HEADING(&r, 0, 1, "The title", "The title");
    HEADING(&r, 1, 1, "Intro", "Intro");
    HEADING(&r, 2, 2, "Localised", "Localised");
    HEADING(&r, 3, 3, "Outline style", "Outline style");
    HEADING(&r, 4, 3, "Based on", "Based on");
    HEADING(&r, 5, 1, "Direct", "Direct");
    HEADING(&r, 6, 6, "Deep", "Deep");
    extract_result_cleanup(&r);

    /* Without styles.xml the built-in IDs still count. */
    p = fixture("doc.bin");      /* test_docx's: no heading styles */
    run_ok(p, "letter.docx", "docx", &r);
    assert_int_equal(r.n_marks, 0);
    extract_result_cleanup(&r);
}

static void test_structure_odt(void **state)
{
    (void)state;
    static const char content[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
        "<office:document-content xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\""
        " xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\""
        " xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\"><office:body>"
        "<office:text><text:h text:outline-level=\"1\">Part   <text:span>One</text:span></text:h>"
        "<text:p>Text.</text:p><text:list><text:list-item><text:h text:outline-level=\"2\">"
        "Numbered<text:note><text:note-body><text:p>note</text:p></text:note-body></text:note>"
        "</text:h></text:list-item></text:list><text:h>No level</text:h>"
        "<text:h text:outline-level=\"12\">Deep</text:h><text:h text:outline-level=\"x\">Bad"
        "</text:h><table:table><table:table-row><table:table-cell><text:h text:outline-level="
        "\"1\">Cell</text:h></table:table-cell></table:table-row></table:table><text:h "
        "text:outline-level=\"3\"/><text:p>End.</text:p></office:text></office:body>"
        "</office:document-content>";
    const zentry_t entries[] = {
        { "mimetype", ODT_MIME, 0, true },
        { "content.xml", content, 0, false },
    };
    const char *p = fixture("headings.odt");
    zip_write(p, entries, 2);
    extract_result_t r;
    run_ok(p, "headings.odt", "odt", &r);
    assert_string_equal(r.text, "Part One\nText.\nNumbered\nNo level\nDeep\nBad\n\nCell\n\n\nEnd.\n");
    assert_int_equal(r.n_marks, 5);
    HEADING(&r, 0, 1, "Part One", "Part One");
    HEADING(&r, 1, 2, "Numbered", "Numbered");
    HEADING(&r, 2, 1, "No level", "No level");
    HEADING(&r, 3, 6, "Deep", "Deep");
    HEADING(&r, 4, 1, "Bad", "Bad");
    extract_result_cleanup(&r);

    run_ok(fixture("text.bin"), "essay.odt", "odt", &r);   /* test_odt's */
    assert_int_equal(r.n_marks, 1);
    HEADING(&r, 0, 1, "Chapter One", "Chapter One");
    extract_result_cleanup(&r);
}

static void test_structure_epub(void **state)
{
    (void)state;
    static const char ch1[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><html xmlns=\"http://www.w3.org/1999/xhtml\" "
        "xmlns:epub=\"http://www.idpf.org/2007/ops\"><body><span epub:type=\"pagebreak\" "
        "id=\"p1\" title=\"1\"/><h1>Chapter One</h1><p>First words.</p><span "
        "epub:type=\"pagebreak\" title=\"2\"/><h2>A section</h2><p>More.</p></body></html>";
    static const char ch2[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><html xmlns=\"http://www.w3.org/1999/xhtml\" "
        "xmlns:epub=\"http://www.idpf.org/2007/ops\"><body><div epub:type=\"pagebreak\">3</div>"
        "<h1>Chapter Two</h1><p>Last words.</p></body></html>";
    static const char opf[] =
        "<?xml version=\"1.0\"?><package xmlns=\"http://www.idpf.org/2007/opf\" version=\"3.0\">"
        "<metadata/><manifest><item id=\"a\" href=\"a.xhtml\" media-type=\"application/xhtml+xml\""
        "/><item id=\"b\" href=\"b.xhtml\" media-type=\"application/xhtml+xml\"/></manifest>"
        "<spine><itemref idref=\"a\"/><itemref idref=\"b\"/></spine></package>";
    const zentry_t entries[] = {
        { "mimetype", "application/epub+zip", 0, true },
        { "META-INF/container.xml", epub_container, 0, false },
        { "OEBPS/content.opf", opf, 0, false },
        { "OEBPS/a.xhtml", ch1, 0, false },
        { "OEBPS/b.xhtml", ch2, 0, false },
    };
    const char *p = fixture("pages.epub");
    zip_write(p, entries, 5);
    extract_result_t r;
    run_ok(p, "pages.epub", "epub", &r);
    assert_string_equal(r.text, "Chapter One\nFirst words.\nA section\nMore.\n\n3\nChapter Two\n"
                                "Last words.\n");
    assert_int_equal(r.n_marks, 6);
    PAGE(&r, 0, 1, "1", "Chapter One");
    HEADING(&r, 1, 1, "Chapter One", "Chapter One");
    PAGE(&r, 2, 2, "2", "A section");
    HEADING(&r, 3, 2, "A section", "A section");
    PAGE(&r, 4, 3, "3", "3\n");
    HEADING(&r, 5, 1, "Chapter Two", "Chapter Two");
    extract_result_cleanup(&r);

    run_ok(fixture("book.bin"), "book.epub", "epub", &r);   /* test_epub's: no page breaks */
    assert_int_equal(r.n_marks, 2);
    HEADING(&r, 0, 1, "Chapter One", "Chapter One");
    HEADING(&r, 1, 1, "Chapter Two", "Chapter Two");
    extract_result_cleanup(&r);
}

/* ---- epub navigation: table of contents and page list ---------------------- */

#define XHTML_HEAD                                                                           \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><html xmlns=\"http://www.w3.org/1999/xhtml\" " \
    "xmlns:epub=\"http://www.idpf.org/2007/ops\"><head><title>t</title></head><body>"
#define XHTML_TAIL "</body></html>"
#define OPF_HEAD(version)                                                                    \
    "<?xml version=\"1.0\"?><package xmlns=\"http://www.idpf.org/2007/opf\" version=\""      \
    version "\"><metadata/><manifest>"
#define OPF_XHTML(id, href) \
    "<item id=\"" id "\" href=\"" href "\" media-type=\"application/xhtml+xml\"/>"

/* Write an epub of files[0..n) under OEBPS/ with this OPF (at
 * OEBPS/content.opf) and the usual mimetype and container. */
static void write_book(const char *path, const char *opf, const zentry_t *files, size_t n)
{
    zentry_t e[16];
    assert_true(n + 3 <= sizeof e / sizeof e[0]);
    e[0] = (zentry_t){ "mimetype", "application/epub+zip", 0, true };
    e[1] = (zentry_t){ "META-INF/container.xml", epub_container, 0, false };
    e[2] = (zentry_t){ "OEBPS/content.opf", opf, 0, false };
    for (size_t i = 0; i < n; i++)
        e[3 + i] = files[i];
    zip_write(path, e, n + 3);
}

/* An EPUB 3 whose chapters mostly have no h1: the nav's TOC titles them,
 * its nesting gives the levels. The nav sits in its own folder (hrefs are
 * resolved from there, one %-encoded); an entry without a fragment, and
 * one whose fragment is at the chapter's start, head the chapter; one
 * inside a chapter heads the element with that id; a chapter whose own
 * h1 has the entry's title (but for case and punctuation) keeps just its
 * own; an entry whose title differs from the heading at its target comes
 * first, the heading after it at the same offset. */
static void test_structure_epub_nav(void **state)
{
    (void)state;
    static const char opf[] =
        OPF_HEAD("3.0") OPF_XHTML("one", "text/one.xhtml") OPF_XHTML("two", "text/two%20b.xhtml")
        OPF_XHTML("three", "text/three.xhtml")
        "<item id=\"toc\" href=\"nav/toc.xhtml\" media-type=\"application/xhtml+xml\" "
        "properties=\"nav\"/></manifest><spine><itemref idref=\"one\"/><itemref idref=\"two\"/>"
        "<itemref idref=\"three\"/></spine></package>";
    static const char nav[] =
        XHTML_HEAD "<nav epub:type=\"landmarks\"><ol><li><a href=\"../text/three.xhtml\">"
        "Not a chapter</a></li></ol></nav>"
        "<nav epub:type=\"toc\"><h1>Contents</h1><ol>"
        "<li><a href=\"../text/one.xhtml\">Part One</a><ol>"
        "  <li><a href=\"../text/one.xhtml#c1\"> Chapter <em>1</em> </a></li>"
        "  <li><a href=\"../text/two%20b.xhtml\">Chapter 2</a><ol>"
        "    <li><a href=\"../text/two%20b.xhtml#s21\">Section 2.1</a></li></ol></li>"
        "</ol></li>"
        "<li><span>Unlinked</span><ol><li><a href=\"../text/three.xhtml\">Three</a><ol>"
        "  <li><a href=\"../text/three.xhtml#ep\">Epilogue</a></li></ol></li></ol></li>"
        "</ol></nav>" XHTML_TAIL;
    static const char one[] = XHTML_HEAD "<section id=\"c1\"><p>Call me Ishmael.</p>"
                              "<p>Some years ago.</p></section>" XHTML_TAIL;
    static const char two[] = XHTML_HEAD "<p>Second chapter text.</p><p id=\"s21\">Subsection "
                              "text.</p>" XHTML_TAIL;
    static const char three[] = XHTML_HEAD "<h1>THREE.</h1><p>Third text.</p><h2 id=\"ep\">The "
                                "End</h2><p>Fin.</p>" XHTML_TAIL;
    const zentry_t files[] = {
        { "OEBPS/nav/toc.xhtml", nav, 0, false },
        { "OEBPS/text/one.xhtml", one, 0, false },
        { "OEBPS/text/two b.xhtml", two, 0, false },
        { "OEBPS/text/three.xhtml", three, 0, false },
    };
    const char *p = fixture("nav.epub");
    write_book(p, opf, files, 4);
    extract_result_t r;
    run_ok(p, "nav.epub", "epub", &r);
    assert_string_equal(r.text, "Call me Ishmael.\nSome years ago.\n\nSecond chapter text.\n"
                                "Subsection text.\n\nTHREE.\nThird text.\nThe End\nFin.\n");
    assert_int_equal(r.n_marks, 7);
    HEADING(&r, 0, 1, "Part One", "Call me");
    HEADING(&r, 1, 2, "Chapter 1", "Call me");
    HEADING(&r, 2, 2, "Chapter 2", "Second");
    HEADING(&r, 3, 3, "Section 2.1", "Subsection");
    HEADING(&r, 4, 1, "THREE.", "THREE");        /* the chapter's own, not the TOC's "Three" */
    HEADING(&r, 5, 3, "Epilogue", "The End");    /* the TOC's, then the h2 it points at */
    HEADING(&r, 6, 2, "The End", "The End");
    extract_result_cleanup(&r);
}

/* An EPUB 2 with only an NCX (spine@toc): navPoints give the chapters'
 * headings, nested ones their levels. An entry pointing at an anchor in a
 * heading of the same title (the Project Gutenberg way) leaves that
 * heading alone; one at a missing file, one outside the book and one on
 * the web are left out. */
static void test_structure_epub_ncx(void **state)
{
    (void)state;
    static const char opf[] =
        OPF_HEAD("2.0") OPF_XHTML("c1", "ch1.xhtml") OPF_XHTML("c2", "ch2.xhtml")
        "<item id=\"ncx\" href=\"toc.ncx\" media-type=\"application/x-dtbncx+xml\"/>"
        "</manifest><spine toc=\"ncx\"><itemref idref=\"c1\"/><itemref idref=\"c2\"/></spine>"
        "</package>";
#define NAV_POINT(label, src) \
    "<navPoint id=\"n\"><navLabel><text>" label "</text></navLabel><content src=\"" src "\"/>"
    static const char ncx[] =
        "<?xml version=\"1.0\"?><ncx xmlns=\"http://www.daisy.org/z3986/2005/ncx/\" "
        "version=\"2005-1\"><head/><docTitle><text>Book</text></docTitle><navMap>"
        NAV_POINT("Chapter I", "ch1.xhtml") "</navPoint>"
        NAV_POINT("Chapter II", "ch2.xhtml#ch2")
        NAV_POINT("A &amp; Section", "ch2.xhtml#sec") "</navPoint>"
        NAV_POINT("Gone", "missing.xhtml") "</navPoint>"
        NAV_POINT("Outside", "../../ch1.xhtml") "</navPoint>"
        NAV_POINT("Web", "http://example.com/ch2.xhtml#sec") "</navPoint>"
        "</navPoint></navMap></ncx>";
#undef NAV_POINT
    static const char ch1[] = XHTML_HEAD "<p>It was the best of times.</p>" XHTML_TAIL;
    static const char ch2[] = XHTML_HEAD "<h2><a id=\"ch2\"></a>CHAPTER II.</h2><p>Words.</p>"
                              "<p id=\"sec\">More words.</p>" XHTML_TAIL;
    const zentry_t files[] = {
        { "OEBPS/toc.ncx", ncx, 0, false },
        { "OEBPS/ch1.xhtml", ch1, 0, false },
        { "OEBPS/ch2.xhtml", ch2, 0, false },
    };
    const char *p = fixture("ncx.epub");
    write_book(p, opf, files, 3);
    extract_result_t r;
    run_ok(p, "ncx.epub", "epub", &r);
    assert_string_equal(r.text, "It was the best of times.\n\nCHAPTER II.\nWords.\nMore words.\n");
    assert_int_equal(r.n_marks, 3);
    HEADING(&r, 0, 1, "Chapter I", "It was");
    HEADING(&r, 1, 2, "CHAPTER II.", "CHAPTER");
    HEADING(&r, 2, 2, "A & Section", "More words");
    extract_result_cleanup(&r);
}

/* A page list (nav page-list here, NCX pageList in the second book):
 * each page at the element with its id, labelled by the list, numbered
 * through the book; an entry without a fragment starts with its chapter.
 * In-text page breaks still count, but one the list also names is one
 * page, not two; entries naming no element are left out. A book with
 * neither a page list nor page breaks has no pages at all (test_epub's,
 * in test_structure_epub): a reflowable book has none of its own. */
static void test_structure_epub_page_list(void **state)
{
    (void)state;
    static const char opf[] =
        OPF_HEAD("3.0") OPF_XHTML("one", "one.xhtml") OPF_XHTML("two", "two.xhtml")
        "<item id=\"nav\" href=\"nav.xhtml\" media-type=\"application/xhtml+xml\" "
        "properties=\"nav\"/></manifest><spine><itemref idref=\"one\"/><itemref idref=\"two\"/>"
        "</spine></package>";
    static const char nav[] =
        XHTML_HEAD "<nav epub:type=\"page-list\" hidden=\"\"><ol>"
        "<li><a href=\"one.xhtml\">i</a></li>"
        "<li><a href=\"two.xhtml#pg1\">1</a></li>"
        "<li><a href=\"two.xhtml#pg2\">2</a></li>"
        "<li><a href=\"two.xhtml#nowhere\">9</a></li>"
        "</ol></nav>" XHTML_TAIL;
    static const char one[] = XHTML_HEAD "<p>Preface.</p>" XHTML_TAIL;
    static const char two[] =
        XHTML_HEAD "<p>Start <span id=\"pg1\"/>of page one.</p>"
        "<p>Then <span epub:type=\"pagebreak\" id=\"pg2\" title=\"2\"/>page two.</p>"
        "<div epub:type=\"pagebreak\" title=\"3\"/><p>Page three.</p>" XHTML_TAIL;
    const zentry_t files[] = {
        { "OEBPS/nav.xhtml", nav, 0, false },
        { "OEBPS/one.xhtml", one, 0, false },
        { "OEBPS/two.xhtml", two, 0, false },
    };
    const char *p = fixture("pagelist.epub");
    write_book(p, opf, files, 3);
    extract_result_t r;
    run_ok(p, "pagelist.epub", "epub", &r);
    assert_string_equal(r.text, "Preface.\n\nStart of page one.\nThen page two.\nPage three.\n");
    assert_int_equal(r.n_marks, 4);
    PAGE(&r, 0, 1, "i", "Preface");
    PAGE(&r, 1, 2, "1", " of page one");   /* mid-paragraph: where the next word goes */
    PAGE(&r, 2, 3, "2", " page two");
    PAGE(&r, 3, 4, "3", "Page three");
    extract_result_cleanup(&r);

    /* The same from an NCX pageList, the page list's entry coming before
     * the page break at the same place this time. */
    static const char opf2[] =
        OPF_HEAD("2.0") OPF_XHTML("one", "one.xhtml") OPF_XHTML("two", "two.xhtml")
        "<item id=\"ncx\" href=\"toc.ncx\" media-type=\"application/x-dtbncx+xml\"/>"
        "</manifest><spine toc=\"ncx\"><itemref idref=\"one\"/><itemref idref=\"two\"/>"
        "</spine></package>";
#define PAGE_TARGET(label, src) \
    "<pageTarget type=\"normal\"><navLabel><text>" label "</text></navLabel><content src=\"" \
    src "\"/></pageTarget>"
    static const char ncx[] =
        "<?xml version=\"1.0\"?><ncx xmlns=\"http://www.daisy.org/z3986/2005/ncx/\" "
        "version=\"2005-1\"><navMap/><pageList>" PAGE_TARGET("i", "one.xhtml")
        PAGE_TARGET("1", "two.xhtml#pg1") PAGE_TARGET("2", "two.xhtml#wrap")
        "</pageList></ncx>";
#undef PAGE_TARGET
    static const char two2[] =
        XHTML_HEAD "<p>Start <span id=\"pg1\"/>of page one.</p>"
        "<p>Then <span id=\"wrap\"><span epub:type=\"pagebreak\"/>page two.</span></p>"
        "<div epub:type=\"pagebreak\" title=\"3\"/><p>Page three.</p>" XHTML_TAIL;
    const zentry_t files2[] = {
        { "OEBPS/toc.ncx", ncx, 0, false },
        { "OEBPS/one.xhtml", one, 0, false },
        { "OEBPS/two.xhtml", two2, 0, false },
    };
    p = fixture("pagelist-ncx.epub");
    write_book(p, opf2, files2, 3);
    run_ok(p, "pagelist-ncx.epub", "epub", &r);
    assert_string_equal(r.text, "Preface.\n\nStart of page one.\nThen page two.\nPage three.\n");
    assert_int_equal(r.n_marks, 4);
    PAGE(&r, 0, 1, "i", "Preface");
    PAGE(&r, 1, 2, "1", " of page one");   /* mid-paragraph: where the next word goes */
    PAGE(&r, 2, 3, "2", " page two");
    PAGE(&r, 3, 4, "3", "Page three");
    extract_result_cleanup(&r);
}

/* Navigation that cannot be used never costs the text: a nav that is not
 * well-formed, a nav nested past libxml2's depth limit, a nav the
 * manifest names but the zip lacks, and an NCX that is garbage all give
 * the chapters' text with only their own headings. A malformed nav falls
 * back to the NCX when that is fine. */
static void test_structure_epub_bad_nav(void **state)
{
    (void)state;
    static const char opf[] =
        OPF_HEAD("3.0") OPF_XHTML("one", "one.xhtml")
        "<item id=\"nav\" href=\"nav.xhtml\" media-type=\"application/xhtml+xml\" "
        "properties=\"nav\"/><item id=\"ncx\" href=\"toc.ncx\" media-type=\"application/"
        "x-dtbncx+xml\"/></manifest><spine toc=\"ncx\"><itemref idref=\"one\"/></spine>"
        "</package>";
    static const char one[] = XHTML_HEAD "<h1>Own</h1><p>Body text.</p>" XHTML_TAIL;
    static const char broken[] =
        XHTML_HEAD "<nav epub:type=\"toc\"><ol><li><a href=\"one.xhtml\">Entry</li></ol></nav>"
        XHTML_TAIL;
    static const char good_ncx[] =
        "<?xml version=\"1.0\"?><ncx xmlns=\"http://www.daisy.org/z3986/2005/ncx/\"><navMap>"
        "<navPoint><navLabel><text>From NCX</text></navLabel><content src=\"one.xhtml\"/>"
        "</navPoint></navMap></ncx>";
    /* 300 levels of <ol><li>: past the parser's limit of 256. */
    char deep[300 * 48 + 1024];
    size_t n = (size_t)snprintf(deep, sizeof deep, "%s<nav epub:type=\"toc\">", XHTML_HEAD);
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(deep + n, sizeof deep - n, "<ol><li><a href=\"one.xhtml\">x</a>");
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(deep + n, sizeof deep - n, "</li></ol>");
    n += (size_t)snprintf(deep + n, sizeof deep - n, "</nav>%s", XHTML_TAIL);
    assert_true(n < sizeof deep);

    const struct {
        const char *nav, *ncx;   /* NULL: not in the zip */
        const char *toc_title;   /* the TOC heading expected, or NULL */
    } cases[] = {
        { broken, NULL, NULL },
        { deep, NULL, NULL },
        { NULL, NULL, NULL },
        { NULL, "<ncx><navMap><navPoint>\x01</navMap>", NULL },
        { broken, good_ncx, "From NCX" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zentry_t files[3] = { { "OEBPS/one.xhtml", one, 0, false } };
        size_t k = 1;
        if (cases[i].nav)
            files[k++] = (zentry_t){ "OEBPS/nav.xhtml", cases[i].nav, 0, false };
        if (cases[i].ncx)
            files[k++] = (zentry_t){ "OEBPS/toc.ncx", cases[i].ncx, 0, false };
        const char *p = fixture("badnav.epub");
        write_book(p, opf, files, k);
        extract_result_t r;
        run_ok(p, "badnav.epub", "epub", &r);
        assert_string_equal(r.text, "Own\nBody text.\n");
        if (cases[i].toc_title) {
            assert_int_equal(r.n_marks, 2);
            HEADING(&r, 0, 1, cases[i].toc_title, "Own");
            HEADING(&r, 1, 1, "Own", "Own");
        } else {
            if (r.n_marks != 1)
                fail_msg("case %zu: %zu marks", i, r.n_marks);
            HEADING(&r, 0, 1, "Own", "Own");
        }
        extract_result_cleanup(&r);
    }
}

/* Nav entries that name nothing in the book: a web address, a mailto, a
 * path out of the archive, a file that is not there, a file that is there
 * but not in the spine (a stylesheet), an empty href and an entry without
 * a title. They are left out; the entry that names a chapter is used. */
static void test_structure_epub_nav_outside(void **state)
{
    (void)state;
    static const char opf[] =
        OPF_HEAD("3.0") OPF_XHTML("one", "one.xhtml")
        "<item id=\"css\" href=\"style.css\" media-type=\"text/css\"/>"
        "<item id=\"nav\" href=\"nav.xhtml\" media-type=\"application/xhtml+xml\" "
        "properties=\"nav\"/></manifest><spine><itemref idref=\"one\"/></spine></package>";
    static const char nav[] =
        XHTML_HEAD "<nav epub:type=\"toc\"><ol>"
        "<li><a href=\"https://example.com/one.xhtml\">Web</a></li>"
        "<li><a href=\"mailto:someone@example.com\">Mail</a></li>"
        "<li><a href=\"//example.com/one.xhtml\">Host</a></li>"
        "<li><a href=\"../../one.xhtml\">Outside</a></li>"
        "<li><a href=\"missing.xhtml\">Missing</a></li>"
        "<li><a href=\"style.css\">Style</a></li>"
        "<li><a href=\"\">Empty</a></li>"
        "<li><a href=\"one.xhtml#p\">  </a></li>"
        "<li><a href=\"./one.xhtml#p\">Real</a></li>"
        "</ol></nav>" XHTML_TAIL;
    static const char one[] = XHTML_HEAD "<p>Intro.</p><p id=\"p\">Body.</p>" XHTML_TAIL;
    const zentry_t files[] = {
        { "OEBPS/nav.xhtml", nav, 0, false },
        { "OEBPS/one.xhtml", one, 0, false },
        { "OEBPS/style.css", "p {}", 0, false },
    };
    const char *p = fixture("outside.epub");
    write_book(p, opf, files, 3);
    extract_result_t r;
    run_ok(p, "outside.epub", "epub", &r);
    assert_string_equal(r.text, "Intro.\nBody.\n");
    assert_int_equal(r.n_marks, 1);
    HEADING(&r, 0, 1, "Real", "Body");
    extract_result_cleanup(&r);
}

/* ---- the command line ------------------------------------------------------ */

static void test_cli(void **state)
{
    (void)state;
    cli_t c;
    char txt[256];   /* fixture() reuses its buffer */
    snprintf(txt, sizeof txt, "%s", WRITE_LIT("cli.bin", "h\xc3\xa9llo\n"));
    cli(&c, (const char *const[]){ "--name", "x.md", txt, NULL });
    assert_int_equal(c.status, 0);
    assert_string_equal(c.out, "h\xc3\xa9llo\n");
    assert_string_equal(c.err, "type=md chars=6\n");

    cli(&c, (const char *const[]){ "--detect", "--name", "x.pdf", txt, NULL });
    assert_int_equal(c.status, 0);
    assert_string_equal(c.out, "txt\n");

    cli(&c, (const char *const[]){ "--detect", fixture("two.pdf"), NULL });
    assert_int_equal(c.status, 0);
    assert_string_equal(c.out, "pdf\n");
    cli(&c, (const char *const[]){ "--detect", fixture("doc.bin"), NULL });
    assert_string_equal(c.out, "docx\n");
    cli(&c, (const char *const[]){ "--detect", fixture("text.bin"), NULL });
    assert_string_equal(c.out, "odt\n");
    cli(&c, (const char *const[]){ "--detect", fixture("book.bin"), NULL });
    assert_string_equal(c.out, "epub\n");

    cli(&c, (const char *const[]){ fixture("noise.pdf"), NULL });
    assert_int_equal(c.status, 10);
    assert_string_equal(c.out, "");
    assert_int_equal(strncmp(c.err, "error=unsupported ", 18), 0);

    cli(&c, (const char *const[]){ fixture("locked.pdf"), NULL });
    assert_int_equal(c.status, 12);
    assert_string_equal(c.err, "error=encrypted The PDF is password-protected; kvchat cannot "
                               "read it.\n");

    cli(&c, (const char *const[]){ "--max-output", "3", txt, NULL });
    assert_int_equal(c.status, 14);
    assert_string_equal(c.out, "");
    assert_int_equal(strncmp(c.err, "error=toobig ", 13), 0);

    cli(&c, (const char *const[]){ fixture("no-such-file"), NULL });
    assert_int_equal(c.status, 11);

    cli(&c, (const char *const[]){ "--max-output", "lots", txt, NULL });
    assert_int_equal(c.status, 2);
    cli(&c, (const char *const[]){ NULL });
    assert_int_equal(c.status, 2);
    cli(&c, (const char *const[]){ g_dir, NULL });   /* a directory */
    assert_int_equal(c.status, 11);
}

/* --structure-fd: the marks on the named descriptor; a descriptor that is
 * not open, or one of 0..2, is a usage error. */
static void test_cli_structure(void **state)
{
    (void)state;
    char md[256];
    snprintf(md, sizeof md, "%s", WRITE_LIT("cli-md.bin", "# One\n\ntext\n\n## Two\n"));
    int st[2];
    assert_int_equal(pipe(st), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        dup2(st[1], 3);
        execl(KVCHAT_EXTRACT_EXE, KVCHAT_EXTRACT_EXE, "--structure-fd", "3", "--name", "a.md",
              md, (char *)NULL);
        _exit(127);
    }
    close(st[1]);
    char marks[256];
    read_all_fd(st[0], marks, sizeof marks);
    close(st[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_string_equal(marks, "H\t0\t1\tOne\nH\t13\t2\tTwo\n");

    cli_t c;
    cli(&c, (const char *const[]){ "--structure-fd", "9", md, NULL });   /* not open */
    assert_int_equal(c.status, 2);
    cli(&c, (const char *const[]){ "--structure-fd", "1", md, NULL });
    assert_int_equal(c.status, 2);
    cli(&c, (const char *const[]){ "--structure-fd", "x", md, NULL });
    assert_int_equal(c.status, 2);
    /* Without the option the marks go nowhere and the text is the same. */
    cli(&c, (const char *const[]){ "--name", "a.md", md, NULL });
    assert_int_equal(c.status, 0);
    assert_string_equal(c.out, "# One\n\ntext\n\n## Two\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_txt),
        cmocka_unit_test(test_txt_controls),
        cmocka_unit_test(test_md),
        cmocka_unit_test(test_html),
        cmocka_unit_test(test_html_encoding),
        cmocka_unit_test(test_pdf),
        cmocka_unit_test(test_pdf_encrypted),
        cmocka_unit_test(test_pdf_no_text),
        cmocka_unit_test(test_pdf_corrupt),
        cmocka_unit_test(test_pdf_absurd_page_count),
        cmocka_unit_test(test_pdf_count_past_pages),
        cmocka_unit_test(test_pdf_shared_subtree),
        cmocka_unit_test(test_pdf_truncated),
        cmocka_unit_test(test_docx),
        cmocka_unit_test(test_docx_bomb),
        cmocka_unit_test(test_docx_encrypted),
        cmocka_unit_test(test_docx_damaged),
        cmocka_unit_test(test_odt),
        cmocka_unit_test(test_odt_encrypted),
        cmocka_unit_test(test_epub),
        cmocka_unit_test(test_epub_empty_manifest),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_output_limit),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_structure_text),
        cmocka_unit_test(test_structure_html),
        cmocka_unit_test(test_structure_pdf),
        cmocka_unit_test(test_structure_pdf_hostile_outline),
        cmocka_unit_test(test_structure_pdf_hostile_dests),
        cmocka_unit_test(test_structure_docx),
        cmocka_unit_test(test_structure_odt),
        cmocka_unit_test(test_structure_epub),
        cmocka_unit_test(test_structure_epub_nav),
        cmocka_unit_test(test_structure_epub_ncx),
        cmocka_unit_test(test_structure_epub_page_list),
        cmocka_unit_test(test_structure_epub_bad_nav),
        cmocka_unit_test(test_structure_epub_nav_outside),
        cmocka_unit_test(test_cli_structure),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
