/* test_extract_ocr.c — OCR in kvchat-extract, through the runner.
 *
 * Fixtures are made at run time by Debian tools, never committed: a text
 * PDF from PostScript (ps2pdf), rendered to 300 dpi grayscale images
 * (pdftoppm) and put back into a PDF (img2pdf) — a scan whose text is
 * known; a mixed PDF (a text page, then a scanned page; pdfunite); the
 * same pages as PNG, JPEG, WebP (Leptonica) and a multi-page TIFF
 * (ghostscript); and
 * hostile images written byte by byte here. The scan's figures (character
 * accuracy by edit distance against the known text, time per page) are
 * printed for docs/benchmarks.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>
#include <leptonica/allheaders.h>

#include "extract/runner.h"

#ifndef KVCHAT_EXTRACT_EXE
#error "KVCHAT_EXTRACT_EXE must name the kvchat-extract binary"
#endif

static char g_dir[] = "/tmp/kvchat-ocr-XXXXXX";
static char g_path[512];

/* The known text, one line each; pages 1 and 2 of text.pdf. */
static const char *const page1[] = {
    "The quick brown fox jumps over the lazy dog.",
    "Kvchat reads scanned documents with optical character recognition.",
    "Every page of this file was rendered to an image and back.",
    "Seven hundred and twelve parcels left the harbour in March.",
};
static const char *const page2[] = {
    "The second page speaks of rivers, mountains and seven green hills.",
    "Tesseract counts the words it is sure of and those it guesses.",
};

static const char *in_dir(const char *name)
{
    snprintf(g_path, sizeof g_path, "%s/%s", g_dir, name);
    return g_path;
}

static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static void put_lines(FILE *f, const char *const *lines, size_t n)
{
    fputs("/Times-Roman findfont 14 scalefont setfont\n", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "72 %zu moveto (%s) show\n", 720 - 20 * i, lines[i]);
    fputs("showpage\n", f);
}

/* A numbered "Line 1:" prefix made Tesseract read the numbers as a column
 * of their own: the lines read as prose. */
#define DENSE_LINES 50

static void dense_line(int i, char *out, size_t n)
{
    static const char *const what[] = { "boats", "nets", "barrels", "lanterns", "ropes" };
    snprintf(out, n, "On day %d the harbour master counted %d %s and %d gulls before dawn.", i + 1,
             (i * 37) % 90 + 10, what[i % 5], (i * 53) % 70 + 5);
}

/* text.pdf (2 pages), scan.pdf, mixed.pdf, page PNG/JPEG, multi.tif, and a
 * dense page (dense-scan.pdf). */
static int make_fixtures(void **state)
{
    (void)state;
    if (!mkdtemp(g_dir))
        return -1;
    FILE *f = fopen(in_dir("text.ps"), "w");
    if (!f)
        return -1;
    fputs("%!PS\n", f);
    put_lines(f, page1, sizeof page1 / sizeof *page1);
    put_lines(f, page2, sizeof page2 / sizeof *page2);
    fclose(f);
    /* A full page: DENSE_LINES lines of 10 pt text, known by construction. */
    f = fopen(in_dir("dense.ps"), "w");
    if (!f)
        return -1;
    fputs("%!PS\n/Times-Roman findfont 10 scalefont setfont\n", f);
    for (int i = 0; i < DENSE_LINES; i++) {
        char line[128];
        dense_line(i, line, sizeof line);
        fprintf(f, "60 %d moveto (%s) show\n", 760 - 14 * i, line);
    }
    fputs("showpage\n", f);
    fclose(f);
    return sh("cd %s && ps2pdf dense.ps dense.pdf && pdftoppm -r 300 -gray -png dense.pdf dn && "
              "img2pdf dn-1.png -o dense-scan.pdf && ps2pdf text.ps text.pdf && pdftoppm -r 300 -gray -png text.pdf pg && "
              "img2pdf pg-1.png pg-2.png -o scan.pdf && img2pdf pg-2.png -o scan2.pdf && "
              "pdfseparate -f 1 -l 1 text.pdf text1.pdf && "
              "pdfunite text1.pdf scan2.pdf mixed.pdf && "
              "pdftoppm -r 300 -gray -jpeg -f 1 -l 1 text.pdf jp && "
              "gs -q -sDEVICE=tiffg4 -r300 -o multi.tif text.pdf",
              g_dir) == 0
               ? 0
               : -1;
}

static int remove_fixtures(void **state)
{
    (void)state;
    return sh("rm -rf %s", g_dir) == 0 ? 0 : -1;
}

static void ocr_limits(extract_limits_t *lim)
{
    extract_limits_default(lim);
    lim->exe = KVCHAT_EXTRACT_EXE;
    lim->cpu_seconds = 60;
    lim->timeout_ms = 60000;
    lim->ocr_seconds = 120;
    lim->ocr_page_seconds = 60;
#if defined(__SANITIZE_ADDRESS__)
    lim->mem_bytes = 0;   /* ASan reserves terabytes of address space */
#endif
}

typedef struct {
    int calls, last_done, last_total;
    bool ordered;
} seen_t;

static void on_ocr(void *ud, int done, int total)
{
    seen_t *s = ud;
    if (s->calls && (done != s->last_done + 1 || total != s->last_total))
        s->ordered = false;
    if (!s->calls && done != 0)
        s->ordered = false;
    s->calls++;
    s->last_done = done;
    s->last_total = total;
}

static int run_file(const char *name, extract_limits_t *lim, seen_t *seen, extract_result_t *r)
{
    extract_watch_t w = { on_ocr, seen };
    if (seen)
        *seen = (seen_t){ .ordered = true };
    return extract_run_watched(lim, in_dir(name), name, -1, seen ? &w : NULL, r);
}

/* Whitespace collapsed to single spaces, trimmed. */
static char *squeeze(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    bool space = false;
    for (; *s; s++) {
        if (*s == ' ' || *s == '\n' || *s == '\t') {
            space = o != out;
            continue;
        }
        if (space)
            *o++ = ' ';
        space = false;
        *o++ = *s;
    }
    *o = '\0';
    return out;
}

/* Levenshtein distance in bytes (the texts are ASCII). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    size_t *row = malloc((m + 1) * sizeof *row);
    for (size_t j = 0; j <= m; j++)
        row[j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    size_t d = row[m];
    free(row);
    return d;
}

static char *known_text(bool first, bool second)
{
    char buf[2048] = "";
    for (size_t i = 0; first && i < sizeof page1 / sizeof *page1; i++)
        strcat(strcat(buf, page1[i]), " ");
    for (size_t i = 0; second && i < sizeof page2 / sizeof *page2; i++)
        strcat(strcat(buf, page2[i]), " ");
    return squeeze(buf);
}

/* Characters right / total, in percent, of text against the known one. */
static double accuracy(const char *text, bool first, bool second)
{
    char *want = known_text(first, second), *got = squeeze(text);
    size_t d = edit_distance(got, want), n = strlen(want);
    free(want);
    free(got);
    return d >= n ? 0 : 100.0 * (double)(n - d) / (double)n;
}

static void test_scanned_pdf(void **state)
{
    (void)state;
    extract_limits_t lim;
    ocr_limits(&lim);
    extract_result_t r;
    seen_t seen;
    assert_int_equal(run_file("scan.pdf", &lim, &seen, &r), EXTRACT_OK);
    assert_string_equal(r.type, "pdf");
    assert_non_null(strstr(r.text, "The quick brown fox jumps over the lazy dog."));
    assert_non_null(strstr(r.text, "seven green hills"));
    assert_int_equal(r.n_ocr_pages, 2);
    assert_int_equal(r.ocr_pages[0], 1);
    assert_int_equal(r.ocr_pages[1], 2);
    assert_in_range(r.ocr_confidence, 70, 100);
    /* Pages keep their marks; page 2's text follows its mark. */
    assert_int_equal(r.n_marks, 2);
    assert_int_equal(r.marks[1].number, 2);
    assert_non_null(strstr(r.text + r.marks[1].offset, "The second page"));
    /* 0 of 2, 1 of 2, 2 of 2. */
    assert_true(seen.ordered);
    assert_int_equal(seen.calls, 3);
    assert_int_equal(seen.last_done, 2);
    assert_int_equal(seen.last_total, 2);
    double acc = accuracy(r.text, true, true);
    printf("# OCR scanned PDF (300 dpi, Times 14 pt): accuracy %.2f%% of characters, "
           "mean confidence %d, %u ms for 2 pages (%.0f ms/page, incl. start-up)\n",
           acc, r.ocr_confidence, r.elapsed_ms, r.elapsed_ms / 2.0);
    assert_true(acc >= 97.0);
    extract_result_cleanup(&r);
}

/* A full page of small text, for the figures of docs/benchmarks.md. */
static void test_dense_page(void **state)
{
    (void)state;
    extract_limits_t lim;
    ocr_limits(&lim);
    extract_result_t r;
    assert_int_equal(run_file("dense-scan.pdf", &lim, NULL, &r), EXTRACT_OK);
    assert_int_equal(r.n_ocr_pages, 1);
    char *buf = malloc(DENSE_LINES * 128), *p = buf;
    for (int i = 0; i < DENSE_LINES; i++) {
        dense_line(i, p, 128);
        p += strlen(p);
        *p++ = ' ';
    }
    *p = '\0';
    char *want = squeeze(buf), *got = squeeze(r.text);
    size_t d = edit_distance(got, want), n = strlen(want);
    double acc = d >= n ? 0 : 100.0 * (double)(n - d) / (double)n;
    /* The same run without OCR's work: the program's start and the PDF alone. */
    extract_result_t t;
    assert_int_equal(run_file("dense.pdf", &lim, NULL, &t), EXTRACT_OK);
    printf("# OCR dense page (%d lines of 10 pt Times, 300 dpi): accuracy %.2f%% (%zu of %zu "
           "characters wrong), confidence %d, %u ms by OCR vs %u ms from the text layer\n",
           DENSE_LINES, acc, d, n, r.ocr_confidence, r.elapsed_ms, t.elapsed_ms);
    assert_true(acc >= 95.0);
    free(buf);
    free(want);
    free(got);
    extract_result_cleanup(&t);
    extract_result_cleanup(&r);
}

static void test_mixed_pdf(void **state)
{
    (void)state;
    extract_limits_t lim;
    ocr_limits(&lim);
    extract_result_t r;
    seen_t seen;
    assert_int_equal(run_file("mixed.pdf", &lim, &seen, &r), EXTRACT_OK);
    /* Page 1 from its text layer, exact; page 2 by OCR only. */
    assert_non_null(strstr(r.text, page1[3]));
    assert_non_null(strstr(r.text, "seven green hills"));
    assert_int_equal(r.n_ocr_pages, 1);
    assert_int_equal(r.ocr_pages[0], 2);
    assert_int_equal(seen.last_total, 1);
    assert_int_equal(r.n_marks, 2);
    assert_true(strstr(r.text, "The second page") >= r.text + r.marks[1].offset);
    extract_result_cleanup(&r);

    /* A text PDF needs no OCR: no progress, no record. */
    assert_int_equal(run_file("text.pdf", &lim, &seen, &r), EXTRACT_OK);
    assert_int_equal(r.n_ocr_pages, 0);
    assert_null(r.ocr_pages);
    assert_int_equal(r.ocr_confidence, -1);
    assert_int_equal(seen.calls, 0);
    extract_result_cleanup(&r);
}

static void test_images(void **state)
{
    (void)state;
    extract_limits_t lim;
    ocr_limits(&lim);
    extract_result_t r;
    static const struct {
        const char *file, *type;
        int pages;
    } cases[] = {
        { "pg-1.png", "png", 1 },
        { "jp-1.jpg", "jpeg", 1 },
        { "multi.tif", "tiff", 2 },
        { "pg-1.webp", "webp", 1 },
    };
    /* No Debian tool here writes WebP: Leptonica (Debian's build has
     * libwebp) converts the PNG. */
    PIX *pix = pixRead(in_dir("pg-1.png"));
    assert_non_null(pix);
    assert_int_equal(pixWrite(in_dir("pg-1.webp"), pix, IFF_WEBP), 0);
    pixDestroy(&pix);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_int_equal(run_file(cases[i].file, &lim, NULL, &r), EXTRACT_OK);
        assert_string_equal(r.type, cases[i].type);
        assert_non_null(strstr(r.text, "brown fox jumps"));
        assert_int_equal((int)r.n_ocr_pages, cases[i].pages);
        assert_int_equal((int)r.n_marks, cases[i].pages);
        if (cases[i].pages == 2) {
            assert_non_null(strstr(r.text + r.marks[1].offset, "The second page"));
            printf("# OCR multi-page TIFF (G4, 300 dpi): accuracy %.2f%%, %u ms for 2 pages\n",
                   accuracy(r.text, true, true), r.elapsed_ms);
        }
        extract_result_cleanup(&r);
    }
    /* OCR off: an image has no text kvchat can read; a scan none either. */
    lim.ocr_languages = "";
    assert_int_equal(run_file("pg-1.png", &lim, NULL, &r), EXTRACT_EUNSUPPORTED);
    extract_result_cleanup(&r);
    assert_int_equal(run_file("scan.pdf", &lim, NULL, &r), EXTRACT_ENOTEXT);
    assert_non_null(strstr(r.message, "scanned document"));
    extract_result_cleanup(&r);
    /* A language that is not installed is kvchat's problem, not the file's. */
    lim.ocr_languages = "zzz";
    assert_int_equal(run_file("pg-1.png", &lim, NULL, &r), EXTRACT_EINTERNAL);
    extract_result_cleanup(&r);
    /* Not a language name at all: refused on the command line. */
    lim.ocr_languages = "../etc";
    assert_int_equal(run_file("pg-1.png", &lim, NULL, &r), EXTRACT_EUSAGE);
    assert_true(extract_error_is_internal(r.code));
    extract_result_cleanup(&r);
}

/* ---- hostile images ---- */

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* A PNG of w x h 8-bit gray pixels whose IDAT holds `rows` rows of zeros
 * (fewer than h: a truncated image). */
static const char *write_png(const char *name, uint32_t w, uint32_t h, uint32_t rows)
{
    FILE *f = fopen(in_dir(name), "wb");
    assert_non_null(f);
    fwrite("\x89PNG\r\n\x1a\n", 1, 8, f);
    unsigned char ihdr[25];
    put32(ihdr, 13);
    memcpy(ihdr + 4, "IHDR", 4);
    put32(ihdr + 8, w);
    put32(ihdr + 12, h);
    ihdr[16] = 8;   /* depth */
    ihdr[17] = 0;   /* gray */
    ihdr[18] = ihdr[19] = ihdr[20] = 0;
    put32(ihdr + 21, (uint32_t)crc32(0, ihdr + 4, 17));
    fwrite(ihdr, 1, sizeof ihdr, f);
    size_t raw_len = (size_t)rows * (w + 1);
    unsigned char *raw = calloc(raw_len ? raw_len : 1, 1);
    uLongf zlen = compressBound(raw_len);
    unsigned char *chunk = malloc(zlen + 12);
    compress(chunk + 8, &zlen, raw, raw_len);
    put32(chunk, (uint32_t)zlen);
    memcpy(chunk + 4, "IDAT", 4);
    put32(chunk + 8 + zlen, (uint32_t)crc32(0, chunk + 4, (uInt)zlen + 4));
    fwrite(chunk, 1, zlen + 12, f);
    fwrite("\0\0\0\0IEND\xae\x42\x60\x82", 1, 12, f);
    fclose(f);
    free(raw);
    free(chunk);
    return name;
}

/* A little-endian TIFF of n pages, each 1x1 8-bit gray, every IFD
 * pointing at the next. */
static const char *write_tiff(const char *name, int n)
{
    FILE *f = fopen(in_dir(name), "wb");
    assert_non_null(f);
    const uint16_t entries = 8;
    const uint32_t ifd_size = 2 + entries * 12 + 4;
    unsigned char head[8] = { 'I', 'I', 42, 0, 8, 0, 0, 0 };
    fwrite(head, 1, 8, f);
    for (int p = 0; p < n; p++) {
        uint32_t at = 8 + (uint32_t)p * (ifd_size + 4);
        uint32_t pixel = at + ifd_size;
        uint32_t next = p + 1 < n ? at + ifd_size + 4 : 0;
        const uint16_t tags[8][2] = { { 256, 3 }, { 257, 3 }, { 258, 3 }, { 259, 3 },
                                      { 262, 3 }, { 273, 4 }, { 278, 3 }, { 279, 4 } };
        const uint32_t values[8] = { 1, 1, 8, 1, 1, pixel, 1, 1 };
        unsigned char buf[2 + 8 * 12 + 4 + 4] = { 0 };
        buf[0] = (unsigned char)entries;
        for (int i = 0; i < 8; i++) {
            unsigned char *e = buf + 2 + 12 * i;
            e[0] = (unsigned char)tags[i][0];
            e[1] = (unsigned char)(tags[i][0] >> 8);
            e[2] = (unsigned char)tags[i][1];
            e[4] = 1;
            e[8] = (unsigned char)values[i];
            e[9] = (unsigned char)(values[i] >> 8);
            e[10] = (unsigned char)(values[i] >> 16);
            e[11] = (unsigned char)(values[i] >> 24);
        }
        unsigned char *nx = buf + 2 + 8 * 12;
        nx[0] = (unsigned char)next;
        nx[1] = (unsigned char)(next >> 8);
        nx[2] = (unsigned char)(next >> 16);
        nx[3] = (unsigned char)(next >> 24);
        buf[sizeof buf - 4] = 0xff;   /* the pixel: white */
        fwrite(buf, 1, sizeof buf, f);
    }
    fclose(f);
    return name;
}

static void test_hostile_images(void **state)
{
    (void)state;
    extract_limits_t lim;
    ocr_limits(&lim);
    lim.cpu_seconds = 10;
    lim.timeout_ms = 20000;
    lim.ocr_seconds = 20;
    extract_result_t r;
    /* 60000 x 60000 (3.6 Gpx) in a few hundred bytes: refused by its header. */
    assert_int_equal(run_file(write_png("huge.png", 60000, 60000, 1), &lim, NULL, &r),
                     EXTRACT_EBOMB);
    assert_non_null(strstr(r.message, "too large"));
    assert_true(r.elapsed_ms < 5000);
    extract_result_cleanup(&r);
    /* 9000 x 9000 (81 Mpx) is over the limit too; 8000 x 5000 (40 Mpx) is not. */
    assert_int_equal(run_file(write_png("big.png", 9000, 9000, 1), &lim, NULL, &r),
                     EXTRACT_EBOMB);
    extract_result_cleanup(&r);
    /* 10,000 pages: refused before any is decoded. */
    assert_int_equal(run_file(write_tiff("many.tif", 10000), &lim, NULL, &r), EXTRACT_EBOMB);
    assert_true(r.elapsed_ms < 10000);
    extract_result_cleanup(&r);
    /* 2,000 pages (the limit), blank: every header in one walk, every page
     * read in turn (this took 16 s of CPU when each page was looked up
     * from the first). */
    assert_int_equal(run_file(write_tiff("limit.tif", EXTRACT_OCR_PAGES_MAX), &lim, NULL, &r),
                     EXTRACT_ENOTEXT);
    assert_true(r.elapsed_ms < 8000);
    extract_result_cleanup(&r);
    /* Three blank pages: read, nothing recognised. */
    assert_int_equal(run_file(write_tiff("three.tif", 3), &lim, NULL, &r), EXTRACT_ENOTEXT);
    assert_non_null(strstr(r.message, "No text was recognised in the TIFF image"));
    extract_result_cleanup(&r);
    /* Rows missing, a file cut after its header, garbage after a signature. */
    assert_int_equal(run_file(write_png("short.png", 200, 200, 3), &lim, NULL, &r),
                     EXTRACT_ECORRUPT);
    extract_result_cleanup(&r);
    FILE *f = fopen(in_dir("cut.png"), "wb");
    fwrite("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0", 1, 18, f);
    fclose(f);
    assert_int_equal(run_file("cut.png", &lim, NULL, &r), EXTRACT_ECORRUPT);
    extract_result_cleanup(&r);
    f = fopen(in_dir("junk.jpg"), "wb");
    fwrite("\xff\xd8\xff\xe0garbage garbage garbage garbage", 1, 34, f);
    fclose(f);
    assert_int_equal(run_file("junk.jpg", &lim, NULL, &r), EXTRACT_ECORRUPT);
    extract_result_cleanup(&r);
    f = fopen(in_dir("junk.tif"), "wb");
    fwrite("MM\0*\0\0\0\x08\xff\xff\xff\xff", 1, 12, f);
    fclose(f);
    assert_int_equal(run_file("junk.tif", &lim, NULL, &r), EXTRACT_ECORRUPT);
    extract_result_cleanup(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scanned_pdf),
        cmocka_unit_test(test_dense_page),
        cmocka_unit_test(test_mixed_pdf),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_hostile_images),
    };
    return cmocka_run_group_tests(tests, make_fixtures, remove_fixtures);
}
