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

/* Extract every page of an open document. Returns 0 or an EXTRACT_* code. */
static int write_document(fz_context *ctx, fz_document *doc, textout_t *out)
{
    int n = 0;
    fz_var(n);
    fz_try(ctx) {
        n = fz_count_pages(ctx, doc);
    }
    fz_catch(ctx) {
        return fz_caught(ctx) == FZ_ERROR_MEMORY ? EXTRACT_EMEMORY : EXTRACT_ECORRUPT;
    }
    page_writer_t w = { .out = out };
    int failed = 0;
    for (int i = 0; i < n && !textout_error(out); i++) {
        int rc = write_one_page(ctx, doc, i, &w);
        if (rc == EXTRACT_EMEMORY)
            return rc;
        if (rc)
            failed++;
    }
    if (textout_error(out))
        return textout_error(out);
    return (n > 0 && failed == n) ? EXTRACT_ECORRUPT : 0;
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
        rc = write_document(ctx, &doc->super, out);
    fz_drop_document(ctx, doc ? &doc->super : NULL);
    fz_drop_stream(ctx, stm);
    fz_drop_context(ctx);
    fclose(fp);
    return rc;
}
