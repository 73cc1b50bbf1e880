/* pdf.c — see pdf.h. */
#include "extract/pdf.h"

#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include <mupdf/fitz.h>
#include <mupdf/pdf.h>
#include <mupdf/ucdn.h>

#include "extract/extract.h"

/* MuPDF's resource cache; its default (256 MiB) would crowd the memory
 * limit the runner gives the process. */
#define PDF_STORE_MAX ((size_t)64 << 20)

typedef struct {
    textout_t *out;
    uint32_t held_hyphen;   /* hyphen held back at a line end, 0 if none */
} page_writer_t;

static void quiet(void *user, const char *message)
{
    (void)user;
    (void)message;
}

static bool is_letter(int c)
{
    if (c < 0)
        return false;
    switch (ucdn_get_general_category((uint32_t)c)) {
    case UCDN_GENERAL_CATEGORY_LL: case UCDN_GENERAL_CATEGORY_LM:
    case UCDN_GENERAL_CATEGORY_LO: case UCDN_GENERAL_CATEGORY_LT:
    case UCDN_GENERAL_CATEGORY_LU:
        return true;
    default:
        return false;
    }
}

static bool is_lower(int c)
{
    return c >= 0 && ucdn_get_general_category((uint32_t)c) == UCDN_GENERAL_CATEGORY_LL;
}

static bool is_hyphen(int c) { return c == '-' || c == 0x2010 || c == 0xAD; }

/* Settle a hyphen held back at the previous line's end, now that the line
 * after it starts with `next` (0 at the end of the page). */
static void settle_hyphen(page_writer_t *w, int next)
{
    if (!w->held_hyphen)
        return;
    bool join = w->held_hyphen == 0xAD || (next && is_lower(next));
    if (!join) {
        textout_putc(w->out, w->held_hyphen);
        textout_newline(w->out);
    }
    w->held_hyphen = 0;
}

static void write_line(page_writer_t *w, const fz_stext_line *line)
{
    /* The last non-space character and the one before it. */
    const fz_stext_char *last = NULL, *before = NULL;
    for (const fz_stext_char *ch = line->first_char; ch; ch = ch->next) {
        if (ch->c == ' ')
            continue;
        before = last;
        last = ch;
    }
    if (!last)
        return;
    settle_hyphen(w, line->first_char->c == ' ' ? last->c : line->first_char->c);
    bool hold = is_hyphen(last->c) && before && is_letter(before->c);
    for (const fz_stext_char *ch = line->first_char; ch; ch = ch->next) {
        if (hold && ch == last)
            break;
        textout_putc(w->out, (uint32_t)ch->c);
    }
    if (hold)
        w->held_hyphen = (uint32_t)last->c;
    else
        textout_newline(w->out);
}

static void write_page(page_writer_t *w, const fz_stext_page *page)
{
    for (const fz_stext_block *b = page->first_block; b; b = b->next) {
        if (b->type != FZ_STEXT_BLOCK_TEXT)
            continue;
        for (const fz_stext_line *l = b->u.t.first_line; l; l = l->next)
            write_line(w, l);
    }
    settle_hyphen(w, 0);
    textout_blank_line(w->out);
}

/* Extract page i. Returns 0, EXTRACT_EMEMORY, or EXTRACT_ECORRUPT when
 * MuPDF cannot load the page. */
static int write_one_page(fz_context *ctx, fz_document *doc, int i, page_writer_t *w)
{
    fz_stext_options opts = { 0 };   /* ligatures expanded, whitespace normalised */
    fz_page *page = NULL;
    fz_stext_page *text = NULL;
    int rc = 0;
    fz_var(page);
    fz_var(text);
    fz_var(rc);
    fz_try(ctx) {
        page = fz_load_page(ctx, doc, i);
        text = fz_new_stext_page_from_page(ctx, page, &opts);
        write_page(w, text);
    }
    fz_always(ctx) {
        fz_drop_stext_page(ctx, text);
        fz_drop_page(ctx, page);
    }
    fz_catch(ctx) {
        rc = fz_caught(ctx) == FZ_ERROR_MEMORY ? EXTRACT_EMEMORY : EXTRACT_ECORRUPT;
    }
    return rc;
}

/* The page tree, checked before any page is loaded.
 *
 * MuPDF 1.21 takes the page count as written in Root/Pages/Count
 * (pdf_count_pages: pdf_to_int, so "2147483647" stays, overlong digits wrap
 * around and a real is cast) and finds page i by walking the tree from the
 * root again (pdf_lookup_page_loc: the kids of each node in turn, whole
 * subtrees skipped by their own /Count), failing with "cannot find page"
 * once the walk runs out of kids. A count the file cannot hold therefore
 * costs one walk per absent page: /Count 2147483647 on a 600-byte file runs
 * until the CPU limit. So, before the first page:
 *   - the count must be positive and smaller than the number of objects in
 *     the xref (pdf_xref_len; object 0 is never a page, and MuPDF already
 *     refuses object numbers past PDF_MAX_OBJECT_NUMBER);
 *   - the tree is walked once, telling nodes from pages as the lookup does,
 *     within a visit budget: a tree that holds N objects takes N visits, so
 *     more than xref_len + count means nodes reached again (a cycle, or the
 *     same subtree listed many times, which turns every lookup into a
 *     long walk); deeper than PAGE_TREE_DEPTH_MAX is refused too;
 *   - pages are looked up only as far as the pages the walk found (the
 *     lookup cannot find more).
 * A count that disagrees with the pages found marks the file as damaged. */
#define PAGE_TREE_DEPTH_MAX 256

typedef struct {
    pdf_obj *kids;
    int next, len;
} tree_level_t;

/* As pdf_lookup_page_loc_imp tells an inner node of the tree from a page. */
static bool is_tree_node(fz_context *ctx, pdf_obj *kid)
{
    pdf_obj *type = pdf_dict_get(ctx, kid, PDF_NAME(Type));
    if (type)
        return pdf_name_eq(ctx, type, PDF_NAME(Pages));
    return pdf_dict_get(ctx, kid, PDF_NAME(Kids)) && !pdf_dict_get(ctx, kid, PDF_NAME(MediaBox));
}

/* Count the pages under `root`, visiting at most max_visits kids. Returns
 * the count, or -1 when the budget or the depth limit is exceeded. MuPDF
 * may throw (an object that cannot be read). */
static int64_t count_tree_pages(fz_context *ctx, pdf_obj *root, int64_t max_visits)
{
    tree_level_t st[PAGE_TREE_DEPTH_MAX];
    int depth = 0;
    int64_t visits = 0, pages = 0;
    st[0].kids = pdf_dict_get(ctx, root, PDF_NAME(Kids));
    st[0].len = pdf_array_len(ctx, st[0].kids);
    st[0].next = 0;
    while (depth >= 0) {
        tree_level_t *l = &st[depth];
        if (l->next >= l->len) {
            depth--;
            continue;
        }
        pdf_obj *kid = pdf_array_get(ctx, l->kids, l->next++);
        if (++visits > max_visits)
            return -1;
        if (!is_tree_node(ctx, kid)) {
            pages++;
            continue;
        }
        if (depth + 1 >= PAGE_TREE_DEPTH_MAX)
            return -1;
        depth++;
        st[depth].kids = pdf_dict_get(ctx, kid, PDF_NAME(Kids));
        st[depth].len = pdf_array_len(ctx, st[depth].kids);
        st[depth].next = 0;
    }
    return pages;
}

/* The number of pages to extract, after the checks above: 0 when the page
 * tree cannot be true. *mismatch is set when /Count disagrees with the
 * pages found. Never throws. */
static int checked_page_count(fz_context *ctx, pdf_document *doc, bool *mismatch, int *err)
{
    int n = 0;
    int64_t found = -1;
    *mismatch = false;
    *err = 0;
    fz_var(n);
    fz_var(found);
    fz_try(ctx) {
        n = pdf_count_pages(ctx, doc);
        int xref_len = pdf_xref_len(ctx, doc);
        pdf_obj *root = pdf_dict_getp(ctx, pdf_trailer(ctx, doc), "Root/Pages");
        if (root && n > 0 && n < xref_len)
            found = count_tree_pages(ctx, root, (int64_t)xref_len + n);
    }
    fz_catch(ctx) {
        if (fz_caught(ctx) == FZ_ERROR_MEMORY)
            *err = EXTRACT_EMEMORY;
        return 0;
    }
    if (found <= 0)
        return 0;
    *mismatch = found != n;
    return found < n ? (int)found : n;
}

/* True when the sink holds some text (anything but blanks). */
static bool has_text(const textout_t *out)
{
    for (size_t i = 0; i < out->buf.len; i++)
        if (out->buf.data[i] != ' ' && out->buf.data[i] != '\t' && out->buf.data[i] != '\n')
            return true;
    return false;
}

/* Extract every page of an open document. Returns 0 or an EXTRACT_* code.
 * No text at all is "no text" (a scan) only from an intact file: when
 * MuPDF had to repair the file (a broken or missing xref, as in a truncated
 * download), a page failed to load, or the page tree does not hold the
 * pages it counts, the file is damaged. */
static int write_document(fz_context *ctx, pdf_document *doc, textout_t *out)
{
    bool mismatch = false;
    int err = 0;
    int n = checked_page_count(ctx, doc, &mismatch, &err);
    if (err)
        return err;
    if (n <= 0)
        return EXTRACT_ECORRUPT;
    page_writer_t w = { .out = out };
    int failed = 0;
    for (int i = 0; i < n && !textout_error(out); i++) {
        int rc = write_one_page(ctx, &doc->super, i, &w);
        if (rc == EXTRACT_EMEMORY)
            return rc;
        if (rc)
            failed++;
    }
    if (textout_error(out))
        return textout_error(out);
    if (failed == n)
        return EXTRACT_ECORRUPT;
    bool repaired = false;
    fz_var(repaired);
    fz_try(ctx) {
        repaired = pdf_was_repaired(ctx, doc) != 0;
    }
    fz_catch(ctx) {
        repaired = true;
    }
    if (!has_text(out) && (repaired || failed || mismatch))
        return EXTRACT_ECORRUPT;
    return 0;
}

int pdf_extract(int fd, textout_t *out)
{
    int dfd = dup(fd);
    if (dfd < 0)
        return EXTRACT_EINTERNAL;
    FILE *fp = fdopen(dfd, "rb");
    if (!fp) {
        close(dfd);
        return EXTRACT_EINTERNAL;
    }
    fz_context *ctx = fz_new_context(NULL, NULL, PDF_STORE_MAX);
    if (!ctx) {
        fclose(fp);
        return EXTRACT_EMEMORY;
    }
    fz_set_warning_callback(ctx, quiet, NULL);
    fz_set_error_callback(ctx, quiet, NULL);

    int rc = 0;
    fz_stream *stm = NULL;
    pdf_document *doc = NULL;
    fz_var(stm);
    fz_var(doc);
    fz_var(rc);
    fz_try(ctx) {
        stm = fz_open_file_ptr_no_close(ctx, fp);
        doc = pdf_open_document_with_stream(ctx, stm);
    }
    fz_catch(ctx) {
        rc = fz_caught(ctx) == FZ_ERROR_MEMORY ? EXTRACT_EMEMORY : EXTRACT_ECORRUPT;
    }
    if (!rc) {
        int locked = 0;
        fz_var(locked);
        fz_try(ctx) {
            locked = pdf_needs_password(ctx, doc);
        }
        fz_catch(ctx) {
            locked = -1;   /* a broken encryption dictionary */
        }
        if (locked)
            rc = locked > 0 ? EXTRACT_EENCRYPTED : EXTRACT_ECORRUPT;
    }
    if (!rc)
        rc = write_document(ctx, doc, out);
    fz_drop_document(ctx, doc ? &doc->super : NULL);
    fz_drop_stream(ctx, stm);
    fz_drop_context(ctx);
    fclose(fp);
    return rc;
}
