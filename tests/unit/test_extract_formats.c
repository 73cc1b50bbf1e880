/* test_extract_formats.c — tables as Markdown, slides, spreadsheets and
 * csv, through the runner (as kvchat calls kvchat-extract).
 *
 * Fixtures are written at test time by extract_fixtures.py (pandoc for
 * docx/odt/html/epub/pptx from one Markdown source, openpyxl for xlsx,
 * zips written by hand for ods, odp and the hostile files) and, for HTML
 * edge cases, here. Checked:
 * - a Markdown table with its header, separator and escaped '|' from each
 *   of docx, odt, html, epub and pptx;
 * - merged cells (gridSpan, vMerge, colspan, rowspan) left empty, ragged
 *   rows padded, nested tables flattened, long cells cut with "…", more
 *   than MDTABLE_COLS_MAX columns cut with a note, one-column tables as
 *   lines;
 * - pptx and odp: slides in order as pages, titles as headings, notes
 *   after "Notes:", tables;
 * - xlsx (shared and inline strings, numbers, booleans, errors, gaps,
 *   several sheets) and ods (repeated cells and rows, trailing empties);
 * - csv: semicolons and Latin-1 with quoted delimiters, quotes and line
 *   breaks; tsv with a BOM; a pipe-separated file found by content; prose
 *   with commas stays text;
 * - hostile: a million-cell xlsx and ods (a note, bounded time), large
 *   cells under a small output limit (a note, not "too big"), a sheet
 *   that inflates past the zip limits (bomb), a truncated xlsx (corrupt).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "extract/runner.h"

static char g_dir[64];

static const char *fixture(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    return path;
}

static const char *write_fixture(const char *name, const char *data)
{
    const char *p = fixture(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, strlen(data), f), strlen(data));
    assert_int_equal(fclose(f), 0);
    return p;
}

static void limits(extract_limits_t *lim)
{
    extract_limits_default(lim);
    lim->exe = KVCHAT_EXTRACT_EXE;
    lim->timeout_ms = 120000;
    lim->cpu_seconds = 60;
#if defined(__SANITIZE_ADDRESS__)
    lim->mem_bytes = 0;
#endif
}

static void run_ok(const char *name, const char *type, extract_result_t *r)
{
    extract_limits_t lim;
    limits(&lim);
    int rc = extract_run(&lim, fixture(name), name, r);
    if (rc != EXTRACT_OK)
        fail_msg("%s: code %d (%s): %s", name, rc, extract_strerror(rc), r->message);
    assert_string_equal(r->type, type);
}

static void expect_text(const char *name, const char *type, const char *want)
{
    extract_result_t r;
    run_ok(name, type, &r);
    if (strcmp(r.text, want) != 0)
        fail_msg("%s: got\n%s\nwant\n%s", name, r.text, want);
    extract_result_cleanup(&r);
}

static void expect_contains(const char *name, const char *type, const char *want)
{
    extract_result_t r;
    run_ok(name, type, &r);
    if (!strstr(r.text, want))
        fail_msg("%s: no\n%s\nin\n%s", name, want, r.text);
    extract_result_cleanup(&r);
}

static void expect_error(const char *name, int code)
{
    extract_limits_t lim;
    limits(&lim);
    extract_result_t r;
    int rc = extract_run(&lim, fixture(name), name, &r);
    if (rc != code)
        fail_msg("%s: want %d, got %d (%s)", name, code, rc, r.message);
    assert_null(r.text);
    extract_result_cleanup(&r);
}

/* Mark i: kind, number, label, at the first occurrence of `at`. */
static void expect_mark(const extract_result_t *r, size_t i, extract_mark_kind_t kind, int number,
                        const char *label, const char *at)
{
    if (i >= r->n_marks)
        fail_msg("mark %zu of %zu", i, r->n_marks);
    const extract_mark_t *m = &r->marks[i];
    const char *where = strstr(r->text, at);
    assert_non_null(where);
    if (m->kind != kind || m->number != number || strcmp(m->label, label) != 0 ||
        m->offset != (size_t)(where - r->text))
        fail_msg("mark %zu: %c %zu %d \"%s\", want %c %zu %d \"%s\"", i, (char)m->kind,
                 m->offset, m->number, m->label, (char)kind, (size_t)(where - r->text), number,
                 label);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/kvchat-formats-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/unit/extract_fixtures.py' '%s'",
             KVCHAT_SOURCE_DIR, g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- tables ------------------------------------------------------------- */

#define PRICES                                                                              \
    "| Name | Price | Note |\n| --- | --- | --- |\n| Tea | 3 | hot \\| cold |\n"           \
    "| Cake | 4.5 | sweet |\n"

static void test_tables_pandoc(void **state)
{
    (void)state;
    expect_contains("pandoc.docx", "docx", "Before the table.\n\n" PRICES "\nAfter the table.\n");
    expect_contains("pandoc.odt", "odt", "Before the table.\n\n" PRICES "\nAfter the table.\n");
    expect_contains("pandoc.html", "html", "Before the table.\n\n" PRICES "\nAfter the table.\n");
    expect_contains("pandoc.epub", "epub", "Before the table.\n\n" PRICES "\nAfter the table.\n");
}

static void test_tables_merged(void **state)
{
    (void)state;
    expect_text("merged.docx", "docx",
                "| H1 | H2 | H3 |\n| --- | --- | --- |\n| wide |  | c3 |\n"
                "| tall | b3 | outer in1 in2 |\n|  |  |  |\n");
    write_fixture("merged.html",
                  "<html><body><p>Top</p><table>"
                  "<tr><th>A</th><th>B</th><th>C</th></tr>"
                  "<tr><td colspan=\"2\">wide<br>two lines</td><td>c</td></tr>"
                  "<tr><td rowspan=\"2\">tall</td><td>x</td><td>y</td></tr>"
                  "<tr><td>p</td><td><table><tr><td>in</td><td>ner</td></tr></table></td></tr>"
                  "<tr><td>short</td></tr>"
                  "</table><table><tr><td>layout</td></tr><tr><td>only</td></tr></table>"
                  "<p>End</p></body></html>");
    expect_text("merged.html", "html",
                "Top\n\n| A | B | C |\n| --- | --- | --- |\n| wide two lines |  | c |\n"
                "| tall | x | y |\n|  | p | in ner |\n| short |  |  |\n\nlayout\nonly\n\nEnd\n");
}

static void test_tables_wide(void **state)
{
    (void)state;
    /* 70 columns, one cell of 3,000 bytes. */
    static char page[16384];
    size_t n = (size_t)snprintf(page, sizeof page, "<html><body><table><tr>");
    for (int i = 0; i < 70; i++)
        n += (size_t)snprintf(page + n, sizeof page - n, "<td>c%d</td>", i);
    n += (size_t)snprintf(page + n, sizeof page - n, "</tr><tr><td>");
    for (int i = 0; i < 3000; i++)
        page[n++] = 'x';
    snprintf(page + n, sizeof page - n, "</td></tr></table></body></html>");
    write_fixture("wide.html", page);
    extract_result_t r;
    run_ok("wide.html", "html", &r);
    assert_non_null(strstr(r.text, "| c0 | c1 |"));
    assert_non_null(strstr(r.text, "| c63 |\n"));
    assert_null(strstr(r.text, "c64"));
    assert_non_null(strstr(r.text, "\n\n\xe2\x80\xa6 6 more cells not shown\n"));
    const char *cut = strstr(r.text, "\xe2\x80\xa6 |");
    assert_non_null(cut);
    assert_true(cut - strstr(r.text, "| xxx") == 2 + 1000);
    extract_result_cleanup(&r);
}

/* ---- slides ------------------------------------------------------------- */

static void test_pptx(void **state)
{
    (void)state;
    extract_result_t r;
    run_ok("pandoc.pptx", "pptx", &r);
    assert_non_null(strstr(r.text, "Before the table.\n\n" PRICES));
    assert_non_null(strstr(r.text, "\n\nNotes: Say the prices aloud.\n"));
    const char *second = strstr(r.text, "Second slide");
    assert_non_null(second);
    assert_true(second > strstr(r.text, "Notes:"));
    /* Pandoc: a title slide; "Prices" (its text and table), the slide its
     * notes go to, "Second slide". */
    size_t pages = 0, found = 0;
    for (size_t i = 0; i < r.n_marks; i++) {
        if (r.marks[i].kind == EXTRACT_MARK_PAGE)
            assert_int_equal(r.marks[i].number, (int)++pages);
        if (r.marks[i].kind == EXTRACT_MARK_HEADING &&
            (strcmp(r.marks[i].label, "Prices") == 0 ||
             strcmp(r.marks[i].label, "Second slide") == 0)) {
            assert_int_equal(r.marks[i].offset, (size_t)(strstr(r.text, r.marks[i].label) - r.text));
            found++;
        }
    }
    assert_int_equal(pages, 4);
    assert_int_equal(found, 2);
    extract_result_cleanup(&r);
}

static void test_odp(void **state)
{
    (void)state;
    extract_result_t r;
    run_ok("deck.odp", "odp", &r);
    assert_string_equal(r.text, "Opening\n\nFirst point\nSecond point\n\n"
                                "Notes: Remember the pause.\n\nData\n\n"
                                "| K | V |\n| --- | --- |\n| a | 1 |\n");
    assert_int_equal(r.n_marks, 4);
    expect_mark(&r, 0, EXTRACT_MARK_PAGE, 1, "", "Opening");
    expect_mark(&r, 1, EXTRACT_MARK_HEADING, 1, "Opening", "Opening");
    expect_mark(&r, 2, EXTRACT_MARK_PAGE, 2, "", "Data");
    expect_mark(&r, 3, EXTRACT_MARK_HEADING, 1, "Data", "Data");
    extract_result_cleanup(&r);
}

/* ---- spreadsheets --------------------------------------------------------- */

static void test_xlsx(void **state)
{
    (void)state;
    extract_result_t r;
    run_ok("book.xlsx", "xlsx", &r);
    assert_string_equal(r.text,
                        "Fruit\n\n| Name | Count | Fresh |  |  |\n| --- | --- | --- | --- | --- |\n"
                        "| Apple | 3 | TRUE |  |  |\n| Pear\\|Quince | 2.5 | FALSE |  |  |\n"
                        "|  |  |  |  | far |\n\nEmpty one\n\nTotals\n\n"
                        "| Total | 5.5 |\n| --- | --- |\n");
    assert_int_equal(r.n_marks, 3);
    expect_mark(&r, 0, EXTRACT_MARK_HEADING, 1, "Fruit", "Fruit");
    expect_mark(&r, 1, EXTRACT_MARK_HEADING, 1, "Empty one", "Empty one");
    expect_mark(&r, 2, EXTRACT_MARK_HEADING, 1, "Totals", "Totals");
    extract_result_cleanup(&r);
    expect_text("inline.xlsx", "xlsx",
                "Big\n\n| Key | Value |  |\n| --- | --- | --- |\n| rich text | #DIV/0! | TRUE |\n");
    /* dates are shown as dates (ISO), whichever the date system */
    const char *dates = "Dates\n\n| What | When |\n| --- | --- |\n| day | 2024-03-01 |\n"
                        "| moment | 2024-03-01 14:30 |\n| clock | 14:30:05 |\n"
                        "| custom | 2024-03-01 |\n| money | 1234.5 |\n";
    char want[512];
    snprintf(want, sizeof want, "%s| early | 1900-02-28 |\n", dates);
    expect_text("dates.xlsx", "xlsx", want);
    expect_text("dates1904.xlsx", "xlsx", dates);
}

static void test_ods(void **state)
{
    (void)state;
    expect_text("sheet.ods", "ods",
                "Cities\n\n| City | Pop |  |\n| --- | --- | --- |\n| Oslo | 700000 |  |\n"
                "| x | y | y |\n| x | y | y |\n\nSecond\n\nonly\n");
}

static void test_sheets_million(void **state)
{
    (void)state;
    const char *names[] = { "million.xlsx", "million.ods" };
    const char *types[] = { "xlsx", "ods" };
    for (int i = 0; i < 2; i++) {
        extract_limits_t lim;
        limits(&lim);
        lim.cpu_seconds = 20;
        extract_result_t r;
        int rc = extract_run(&lim, fixture(names[i]), names[i], &r);
        if (rc != EXTRACT_OK)
            fail_msg("%s: %d %s", names[i], rc, r.message);
        assert_string_equal(r.type, types[i]);
        /* 200,000 cells shown: 20,000 rows of 10; the rest counted. */
        assert_non_null(strstr(r.text, "\n\n\xe2\x80\xa6 80000 more rows not shown\n"));
        assert_true(r.len < (size_t)8 << 20);
        assert_true(r.elapsed_ms < 30000);
        extract_result_cleanup(&r);
    }
}

static void test_sheets_hostile(void **state)
{
    (void)state;
    expect_error("bomb.xlsx", EXTRACT_EBOMB);
    expect_error("truncated.xlsx", EXTRACT_ECORRUPT);
    /* A small output limit: the cell limit follows it, never an error. */
    extract_limits_t lim;
    limits(&lim);
    lim.max_output = 64 << 10;
    extract_result_t r;
    assert_int_equal(extract_run(&lim, fixture("million.xlsx"), "m.xlsx", &r), EXTRACT_OK);
    assert_non_null(strstr(r.text, "more rows not shown"));
    extract_result_cleanup(&r);
    /* Cells of 900 bytes, 27 MB of them, under a 4 MB output limit: the
     * rows that fit, then the note (not "too big"). */
    lim.max_output = 4 << 20;
    assert_int_equal(extract_run(&lim, fixture("bigcells.xlsx"), "b.xlsx", &r), EXTRACT_OK);
    assert_true(r.len <= (size_t)4 << 20);
    assert_non_null(strstr(r.text, "more rows not shown\n"));
    extract_result_cleanup(&r);
}

/* ---- csv ------------------------------------------------------------------ */

static void test_csv(void **state)
{
    (void)state;
    expect_text("latin1.csv", "csv",
                "| Nom | Ville | Prix |\n| --- | --- | --- |\n"
                "| Cr\xc3\xa8me; br\xc3\xbbl\xc3\xa9" "e | Paris | 4,50 |\n"
                "| Two lines | Say \"hi\" | 7 |\n| \xc3\x89" "clair | Lyon | 3 |\n");
    expect_text("plain.tsv", "csv", "| a | b | c |\n| --- | --- | --- |\n| 1 | 2 | 3 |\n"
                                    "| 4 | 5 |  |\n");
    /* By content, without a name. */
    expect_text("data.bin", "csv", "| id | name | score |\n| --- | --- | --- |\n"
                                   "| 1 | ann | 9 |\n| 2 | bob | 7 |\n| 3 | cy | 8 |\n");
    /* A Markdown table is text too, not pipe-separated values. */
    write_fixture("table.bin", "| a | b |\n| --- | --- |\n| 1 | 2 |\n| 3 | 4 |\n");
    expect_text("table.bin", "txt", "| a | b |\n| --- | --- |\n| 1 | 2 |\n| 3 | 4 |\n");
    /* Prose with commas on every line is not a table. */
    extract_result_t r;
    run_ok("prose.bin", "txt", &r);
    extract_result_cleanup(&r);
    extract_limits_t lim;
    limits(&lim);
    assert_int_equal(extract_run(&lim, fixture("prose.bin"), "letter.txt", &r), EXTRACT_OK);
    assert_string_equal(r.type, "txt");
    extract_result_cleanup(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_pandoc),
        cmocka_unit_test(test_tables_merged),
        cmocka_unit_test(test_tables_wide),
        cmocka_unit_test(test_pptx),
        cmocka_unit_test(test_odp),
        cmocka_unit_test(test_xlsx),
        cmocka_unit_test(test_ods),
        cmocka_unit_test(test_sheets_million),
        cmocka_unit_test(test_sheets_hostile),
        cmocka_unit_test(test_csv),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
