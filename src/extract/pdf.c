/* pdf.c — see pdf.h. */
#include "extract/pdf.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mupdf/fitz.h>
#include <mupdf/pdf.h>
#include <mupdf/ucdn.h>

#include "common/buf.h"
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

/* ---- OCR of pages without a text layer ---- */

/* True when page i has some text (anything but blanks) of its own. A page
 * that fails to load has none that OCR could find either: false. */
static bool page_has_text(fz_context *ctx, fz_document *doc, int i)
{
    fz_stext_options opts = { 0 };
    fz_page *page = NULL;
    fz_stext_page *text = NULL;
    bool found = false;
    fz_var(page);
    fz_var(text);
    fz_var(found);
    fz_try(ctx) {
        page = fz_load_page(ctx, doc, i);
        text = fz_new_stext_page_from_page(ctx, page, &opts);
        for (fz_stext_block *b = text->first_block; b && !found; b = b->next) {
            if (b->type != FZ_STEXT_BLOCK_TEXT)
                continue;
            for (fz_stext_line *l = b->u.t.first_line; l && !found; l = l->next)
                for (fz_stext_char *ch = l->first_char; ch && !found; ch = ch->next)
                    found = ch->c > ' ' && ch->c != 0xA0 && ch->c != 0xAD;
        }
    }
    fz_always(ctx) {
        fz_drop_stext_page(ctx, text);
        fz_drop_page(ctx, page);
    }
    fz_catch(ctx) {
        found = true;   /* not for OCR: the text pass reports the failure */
    }
    return found;
}

/* Render page i in grayscale at OCR_DPI (lower when that would pass
 * OCR_MAX_PIXELS) and recognise it. Returns 0, an ocr_page() code, or
 * EXTRACT_EMEMORY / EXTRACT_ECORRUPT when MuPDF cannot render it. */
static int ocr_one_page(fz_context *ctx, fz_document *doc, int i, ocr_t *ocr, textout_t *out)
{
    fz_page *page = NULL;
    fz_pixmap *pix = NULL;
    int rc = 0, dpi = OCR_DPI;
    fz_var(page);
    fz_var(pix);
    fz_var(rc);
    fz_var(dpi);
    fz_try(ctx) {
        page = fz_load_page(ctx, doc, i);
        fz_rect r = fz_bound_page(ctx, page);
        double w = (double)r.x1 - r.x0, h = (double)r.y1 - r.y0;
        if (w >= 1 && h >= 1) {
            double scale = OCR_DPI / 72.0;
            double px = w * scale * h * scale;
            if (px > (double)OCR_MAX_PIXELS)
                scale *= sqrt((double)OCR_MAX_PIXELS / px);
            dpi = (int)(scale * 72.0 + 0.5);
            pix = fz_new_pixmap_from_page(ctx, page, fz_scale((float)scale, (float)scale),
                                          fz_device_gray(ctx), 0);
        }
    }
    fz_catch(ctx) {
        rc = fz_caught(ctx) == FZ_ERROR_MEMORY ? EXTRACT_EMEMORY : EXTRACT_ECORRUPT;
    }
    if (!rc && pix && fz_pixmap_width(ctx, pix) > 0 && fz_pixmap_height(ctx, pix) > 0)
        rc = ocr_page(ocr, i + 1, fz_pixmap_samples(ctx, pix), fz_pixmap_width(ctx, pix),
                      fz_pixmap_height(ctx, pix), (int)fz_pixmap_stride(ctx, pix), dpi, out);
    fz_drop_pixmap(ctx, pix);
    fz_drop_page(ctx, page);
    return rc;
}

/* Which pages need OCR: a bool per page (NULL when none do, or OCR is
 * off) in *need. Returns 0, or EXTRACT_EMEMORY, or EXTRACT_EOCRTIME when
 * more than EXTRACT_OCR_PAGES_MAX pages would need it; starts the OCR
 * (ocr_begin) when some do. */
static int plan_ocr(fz_context *ctx, fz_document *doc, int n, ocr_t *ocr, bool **need)
{
    *need = NULL;
    if (!ocr_enabled(ocr))
        return 0;
    bool *v = calloc((size_t)n, sizeof *v);
    if (!v)
        return EXTRACT_EMEMORY;
    int count = 0;
    for (int i = 0; i < n; i++)
        if ((v[i] = !page_has_text(ctx, doc, i)))
            count++;
    if (!count) {
        free(v);
        return 0;
    }
    int rc = count > EXTRACT_OCR_PAGES_MAX ? EXTRACT_EOCRTIME : ocr_begin(ocr, count);
    if (rc) {
        free(v);
        return rc;
    }
    *need = v;
    return 0;
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

/* Page object number -> page index, for outline destinations (which name
 * a page by its object). Sorted by object number once the tree is walked. */
typedef struct {
    int num, index;
} page_ref_t;

typedef struct {
    page_ref_t *v;
    size_t n, cap;
    bool failed;      /* out of memory: no outline headings */
} page_map_t;

static void page_map_add(fz_context *ctx, page_map_t *m, pdf_obj *page, int64_t index)
{
    if (m->failed || !pdf_is_indirect(ctx, page) || index > INT_MAX)
        return;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        page_ref_t *v = realloc(m->v, cap * sizeof *v);
        if (!v) {
            m->failed = true;
            return;
        }
        m->v = v;
        m->cap = cap;
    }
    m->v[m->n++] = (page_ref_t){ pdf_to_num(ctx, page), (int)index };
}

/* Count the pages under `root`, visiting at most max_visits kids, and note
 * each page's object number in map. Returns the count, or -1 when the
 * budget or the depth limit is exceeded. MuPDF may throw (an object that
 * cannot be read). */
static int64_t count_tree_pages(fz_context *ctx, pdf_obj *root, int64_t max_visits,
                                page_map_t *map)
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
            page_map_add(ctx, map, kid, pages);
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
static int checked_page_count(fz_context *ctx, pdf_document *doc, page_map_t *map,
                              bool *mismatch, int *err)
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
            found = count_tree_pages(ctx, root, (int64_t)xref_len + n, map);
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

/* ---- structure: page labels and the outline ----------------------------------
 *
 * Read before the first page, within budgets, since a hostile file can
 * make any of these trees as large, as deep or as cyclic as it likes:
 *   - every node of a tree (/PageLabels, the /Dests name tree) is visited
 *     once (object numbers are remembered), at most TREE_DEPTH_MAX deep;
 *   - all walks together examine at most STRUCTURE_WORK_MAX nodes and
 *     array or dictionary entries;
 *   - the outline: at most OUTLINE_ITEMS_MAX entries, each read once (a
 *     cycle ends its chain), OUTLINE_DEPTH_MAX deep (deeper ones are not
 *     read);
 *   - named destinations are collected once into a sorted table
 *     (NAMED_DESTS_MAX names) instead of looked up per entry: MuPDF's
 *     lookup falls back to a linear search of an unsorted leaf, and
 *     recurses once per level.
 * MuPDF's own outline loader is not used either: it walks the whole
 * outline, recursively, before handing back the first entry. A failure in
 * a walk (an object MuPDF cannot read, no memory) keeps what was read so
 * far: structure is optional, the text does not depend on it. */
#define STRUCTURE_WORK_MAX 4000000L
#define TREE_DEPTH_MAX 32
#define OUTLINE_ITEMS_MAX 50000
#define OUTLINE_DEPTH_MAX 64
#define NAMED_DESTS_MAX 200000
#define DEST_NAME_MAX 1024      /* longer names are not collected */
#define TITLE_READ_MAX 512      /* bytes of an outline title kept */
#define PAGE_LABEL_MAX (EXTRACT_MARK_LABEL_MAX + 1)

/* A page label range: pages from `start` on are labelled prefix + their
 * number from `first` in `style` (D, R, r, A, a; 0 for no number). */
typedef struct {
    int start;
    char style;
    int64_t first;
    char prefix[EXTRACT_MARK_LABEL_MAX + 1];
} label_range_t;

/* An outline entry that points at a page. */
typedef struct {
    int page;
    int level;
    size_t seq;          /* outline order */
    size_t title_at, title_len;
} outline_item_t;

/* A named destination and the page it points at. */
typedef struct {
    char *name;
    size_t len;
    int page;
} named_dest_t;

typedef struct {
    label_range_t *ranges;   /* sorted by start */
    size_t n_ranges, cap_ranges;
    outline_item_t *items;   /* sorted by page, then outline order */
    size_t n_items, cap_items;
    buf_t titles;
} structure_t;

/* What the walks share. */
typedef struct {
    fz_context *ctx;
    pdf_document *doc;
    int n_pages;
    const page_map_t *map;
    unsigned char *seen;     /* object numbers visited by the current walk */
    int n_seen;
    long work;               /* nodes and entries examined, all walks */
    named_dest_t *dests;     /* sorted by name once collected */
    size_t n_dests, cap_dests;
    bool dests_read;
} walker_t;

static void structure_cleanup(structure_t *st)
{
    free(st->ranges);
    free(st->items);
    buf_cleanup(&st->titles);
    memset(st, 0, sizeof *st);
}

static bool spend(walker_t *w, long n)
{
    w->work += n;
    return w->work <= STRUCTURE_WORK_MAX;
}

/* Whether obj (an indirect object) was visited by this walk; marks it. */
static bool visited(walker_t *w, pdf_obj *obj)
{
    if (!pdf_is_indirect(w->ctx, obj))
        return false;
    int i = pdf_to_num(w->ctx, obj);
    if (i <= 0 || i >= w->n_seen)
        return true;   /* not an object of this file */
    bool was = w->seen[i / 8] & (1u << (i % 8));
    w->seen[i / 8] |= (unsigned char)(1u << (i % 8));
    return was;
}

static void forget_visits(walker_t *w)
{
    memset(w->seen, 0, (size_t)w->n_seen / 8 + 1);
}

typedef void (*tree_leaf_fn)(walker_t *w, void *arg, pdf_obj *key, pdf_obj *value);

/* Walk a number or name tree from root (its leaves' pairs under
 * `leaves`: Nums or Names), calling leaf for each pair in tree order,
 * within the budgets. May throw. */
static void walk_tree(walker_t *w, pdf_obj *root, pdf_obj *leaves, tree_leaf_fn leaf, void *arg)
{
    struct {
        pdf_obj *kids;
        int next, len;
    } stack[TREE_DEPTH_MAX];
    int depth = 0;
    fz_context *ctx = w->ctx;
    forget_visits(w);
    pdf_obj *node = root;
    for (;;) {
        if (pdf_is_dict(ctx, node) && !visited(w, node) && spend(w, 1)) {
            pdf_obj *pairs = pdf_dict_get(ctx, node, leaves);
            int len = pdf_array_len(ctx, pairs);
            for (int i = 0; i + 1 < len && spend(w, 2); i += 2)
                leaf(w, arg, pdf_array_get(ctx, pairs, i), pdf_array_get(ctx, pairs, i + 1));
            pdf_obj *kids = pdf_dict_get(ctx, node, PDF_NAME(Kids));
            if (pdf_is_array(ctx, kids) && depth < TREE_DEPTH_MAX) {
                stack[depth].kids = kids;
                stack[depth].next = 0;
                stack[depth].len = pdf_array_len(ctx, kids);
                depth++;
            }
        }
        while (depth > 0 && stack[depth - 1].next >= stack[depth - 1].len)
            depth--;
        if (depth == 0 || !spend(w, 1))
            return;
        node = pdf_array_get(ctx, stack[depth - 1].kids, stack[depth - 1].next++);
    }
}

/* A /PageLabels entry: pages from key on are labelled as value says. */
static void label_leaf(walker_t *w, void *arg, pdf_obj *key, pdf_obj *dict)
{
    fz_context *ctx = w->ctx;
    structure_t *st = arg;
    if (!pdf_is_int(ctx, key) || !pdf_is_dict(ctx, dict))
        return;
    int start = pdf_to_int(ctx, key);
    if (start < 0 || start >= w->n_pages || st->n_ranges >= (size_t)w->n_pages)
        return;
    if (st->n_ranges == st->cap_ranges) {
        size_t c = st->cap_ranges ? st->cap_ranges * 2 : 16;
        label_range_t *v = realloc(st->ranges, c * sizeof *v);
        if (!v)
            return;
        st->ranges = v;
        st->cap_ranges = c;
    }
    label_range_t *r = &st->ranges[st->n_ranges++];
    pdf_obj *s = pdf_dict_get(ctx, dict, PDF_NAME(S));
    const char *style = pdf_is_name(ctx, s) ? pdf_to_name(ctx, s) : "";
    r->start = start;
    r->style = strlen(style) == 1 && strchr("DRrAa", style[0]) ? style[0] : 0;
    pdf_obj *first = pdf_dict_gets(ctx, dict, "St");   /* not in the name table */
    r->first = pdf_is_int(ctx, first) && pdf_to_int64(ctx, first) >= 1 ? pdf_to_int64(ctx, first)
                                                                        : 1;
    const char *prefix = pdf_dict_get_text_string(ctx, dict, PDF_NAME(P));
    snprintf(r->prefix, sizeof r->prefix, "%s", prefix ? prefix : "");
}

/* value in the label style: decimal, roman (R, r) or letters (A, a: A..Z,
 * AA..ZZ, ...). Past what a style can write sensibly, decimal. */
static void format_number(char style, int64_t v, char *out, size_t n)
{
    static const struct {
        int value;
        const char *digits;
    } roman[] = {
        { 1000, "m" }, { 900, "cm" }, { 500, "d" }, { 400, "cd" }, { 100, "c" },
        { 90, "xc" },  { 50, "l" },   { 40, "xl" }, { 10, "x" },   { 9, "ix" },
        { 5, "v" },    { 4, "iv" },   { 1, "i" },
    };
    bool upper = style == 'R' || style == 'A';
    size_t o = 0;
    if ((style == 'R' || style == 'r') && v <= 4999) {
        for (size_t i = 0; i < sizeof roman / sizeof roman[0]; i++)
            for (; v >= roman[i].value; v -= roman[i].value)
                for (const char *d = roman[i].digits; *d && o + 1 < n; d++)
                    out[o++] = upper ? (char)(*d - 'a' + 'A') : *d;
        out[o] = '\0';
    } else if ((style == 'A' || style == 'a') && v <= 26 * 20) {
        int64_t reps = (v - 1) / 26 + 1;
        char c = (char)((upper ? 'A' : 'a') + (v - 1) % 26);
        for (int64_t i = 0; i < reps && o + 1 < n; i++)
            out[o++] = c;
        out[o] = '\0';
    } else {
        snprintf(out, n, "%lld", (long long)v);
    }
}

/* The printed label of page index i into out (PAGE_LABEL_MAX bytes), ""
 * when the file defines none. */
static void page_label(const structure_t *st, int i, char *out)
{
    out[0] = '\0';
    /* The last range starting at or before i. */
    size_t lo = 0, hi = st->n_ranges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (st->ranges[mid].start <= i)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return;
    const label_range_t *r = &st->ranges[lo - 1];
    char number[32] = "";
    if (r->style) {
        int64_t v = r->first + (i - r->start);
        format_number(r->style, v < r->first ? r->first : v, number, sizeof number);
    }
    /* The sink cuts labels to EXTRACT_MARK_LABEL_MAX bytes anyway. */
    size_t p = strlen(r->prefix), k = strlen(number);
    if (k > EXTRACT_MARK_LABEL_MAX - p)
        k = EXTRACT_MARK_LABEL_MAX - p;
    memcpy(out, r->prefix, p);
    memcpy(out + p, number, k);
    out[p + k] = '\0';
}

static int page_ref_cmp(const void *a, const void *b)
{
    const page_ref_t *x = a, *y = b;
    if (x->num != y->num)
        return x->num < y->num ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

static int range_cmp(const void *a, const void *b)
{
    const label_range_t *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

static int item_cmp(const void *a, const void *b)
{
    const outline_item_t *x = a, *y = b;
    if (x->page != y->page)
        return x->page < y->page ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int dest_cmp(const void *a, const void *b)
{
    const named_dest_t *x = a, *y = b;
    int c = memcmp(x->name, y->name, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* The page index of an explicit destination [page ...] (a page object, or
 * a page index as remote destinations have it), or of a dictionary
 * holding one as /D; -1 if none. May throw. */
static int explicit_page(walker_t *w, pdf_obj *dest)
{
    fz_context *ctx = w->ctx;
    if (pdf_is_dict(ctx, dest))
        dest = pdf_dict_get(ctx, dest, PDF_NAME(D));
    if (!pdf_is_array(ctx, dest))
        return -1;
    pdf_obj *page = pdf_array_get(ctx, dest, 0);
    if (pdf_is_int(ctx, page)) {
        int i = pdf_to_int(ctx, page);
        return i >= 0 && i < w->n_pages ? i : -1;
    }
    const page_map_t *map = w->map;
    if (!pdf_is_indirect(ctx, page) || map->n == 0)
        return -1;
    page_ref_t key = { pdf_to_num(ctx, page), -1 };
    size_t lo = 0, hi = map->n;   /* the first entry of that object (lowest index) */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (page_ref_cmp(&map->v[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < map->n && map->v[lo].num == key.num && map->v[lo].index < w->n_pages)
        return map->v[lo].index;
    return -1;
}

/* A name or string's bytes. */
static const char *name_bytes(fz_context *ctx, pdf_obj *obj, size_t *len)
{
    if (pdf_is_name(ctx, obj)) {
        const char *s = pdf_to_name(ctx, obj);
        *len = strlen(s);
        return s;
    }
    if (pdf_is_string(ctx, obj)) {
        *len = pdf_to_str_len(ctx, obj);
        return pdf_to_str_buf(ctx, obj);
    }
    return NULL;
}

/* One named destination into the table (those that point at a page). */
static void dest_leaf(walker_t *w, void *arg, pdf_obj *key, pdf_obj *value)
{
    (void)arg;
    size_t len;
    const char *name = name_bytes(w->ctx, key, &len);
    if (!name || len > DEST_NAME_MAX || w->n_dests >= NAMED_DESTS_MAX)
        return;
    int page = explicit_page(w, value);
    if (page < 0)
        return;
    if (w->n_dests == w->cap_dests) {
        size_t c = w->cap_dests ? w->cap_dests * 2 : 64;
        named_dest_t *v = realloc(w->dests, c * sizeof *v);
        if (!v)
            return;
        w->dests = v;
        w->cap_dests = c;
    }
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return;
    memcpy(copy, name, len);
    w->dests[w->n_dests++] = (named_dest_t){ copy, len, page };
}

/* Collect the named destinations: the catalog's /Dests dictionary (PDF
 * 1.1) and the /Names /Dests tree. May throw. */
static void read_named_dests(walker_t *w)
{
    fz_context *ctx = w->ctx;
    w->dests_read = true;
    pdf_obj *root = pdf_dict_get(ctx, pdf_trailer(ctx, w->doc), PDF_NAME(Root));
    pdf_obj *dict = pdf_dict_get(ctx, root, PDF_NAME(Dests));
    int n = pdf_dict_len(ctx, dict);
    for (int i = 0; i < n && spend(w, 1); i++)
        dest_leaf(w, NULL, pdf_dict_get_key(ctx, dict, i), pdf_dict_get_val(ctx, dict, i));
    pdf_obj *tree = pdf_dict_get(ctx, pdf_dict_get(ctx, root, PDF_NAME(Names)), PDF_NAME(Dests));
    if (tree)
        walk_tree(w, tree, PDF_NAME(Names), dest_leaf, NULL);
}

/* The page index an outline destination points at, -1 if none: an
 * explicit destination, or a name or string from the document's named
 * destinations (collected on first use). May throw. */
static int dest_page(walker_t *w, pdf_obj *dest)
{
    size_t len;
    const char *name = name_bytes(w->ctx, dest, &len);
    if (!name)
        return explicit_page(w, dest);
    if (!w->dests_read) {
        fz_try(w->ctx) {
            read_named_dests(w);
        }
        fz_catch(w->ctx) {
            /* Keep what was collected. */
        }
        if (w->n_dests > 1)
            qsort(w->dests, w->n_dests, sizeof *w->dests, dest_cmp);
    }
    if (w->n_dests == 0)
        return -1;
    named_dest_t key = { (char *)name, len, -1 };
    const named_dest_t *d = bsearch(&key, w->dests, w->n_dests, sizeof *w->dests, dest_cmp);
    return d ? d->page : -1;
}

/* The destination of an outline item: /Dest, or a GoTo action's /D. */
static pdf_obj *item_dest(fz_context *ctx, pdf_obj *item)
{
    pdf_obj *dest = pdf_dict_get(ctx, item, PDF_NAME(Dest));
    if (dest)
        return dest;
    pdf_obj *action = pdf_dict_get(ctx, item, PDF_NAME(A));
    if (pdf_name_eq(ctx, pdf_dict_get(ctx, action, PDF_NAME(S)), PDF_NAME(GoTo)))
        return pdf_dict_get(ctx, action, PDF_NAME(D));
    return NULL;
}

/* Note an outline entry pointing at page, at depth (0-based). */
static void add_item(structure_t *st, int page, int depth, size_t seq, const char *title,
                     size_t len)
{
    if (st->n_items == st->cap_items) {
        size_t c = st->cap_items ? st->cap_items * 2 : 64;
        outline_item_t *v = realloc(st->items, c * sizeof *v);
        if (!v)
            return;
        st->items = v;
        st->cap_items = c;
    }
    size_t at = st->titles.len;
    if (buf_append(&st->titles, title, len) != BUF_OK)
        return;
    st->items[st->n_items++] = (outline_item_t){
        .page = page,
        .level = depth + 1 > EXTRACT_HEADING_LEVEL_MAX ? EXTRACT_HEADING_LEVEL_MAX : depth + 1,
        .seq = seq,
        .title_at = at,
        .title_len = len,
    };
}

/* Walk /Outlines in order (see above), collecting the entries that point
 * at a page. May throw. */
static void read_outline(walker_t *w, structure_t *st)
{
    fz_context *ctx = w->ctx;
    pdf_obj *stack[OUTLINE_DEPTH_MAX];
    int depth = 0;
    size_t count = 0;
    forget_visits(w);
    pdf_obj *outlines = pdf_dict_getp(ctx, pdf_trailer(ctx, w->doc), "Root/Outlines");
    pdf_obj *item = pdf_dict_get(ctx, outlines, PDF_NAME(First));
    while (count < OUTLINE_ITEMS_MAX && spend(w, 1)) {
        if (pdf_is_dict(ctx, item) && !visited(w, item)) {
            count++;
            int page = dest_page(w, item_dest(ctx, item));
            const char *title = pdf_dict_get_text_string(ctx, item, PDF_NAME(Title));
            size_t len = title ? strnlen(title, TITLE_READ_MAX) : 0;
            if (page >= 0 && len > 0)
                add_item(st, page, depth, count, title, len);
            pdf_obj *first = pdf_dict_get(ctx, item, PDF_NAME(First));
            if (first && depth + 1 < OUTLINE_DEPTH_MAX) {
                stack[depth++] = item;
                item = first;
            } else {
                item = pdf_dict_get(ctx, item, PDF_NAME(Next));
            }
            continue;
        }
        /* This chain is over: on with the parent's next sibling. */
        if (depth == 0)
            break;
        item = pdf_dict_get(ctx, stack[--depth], PDF_NAME(Next));
    }
}

/* Read the page labels and the outline of a document of n_pages pages
 * whose page objects are in map (sorted here). Never throws; st holds
 * what was read. */
static void read_structure(fz_context *ctx, pdf_document *doc, int n_pages, page_map_t *map,
                           structure_t *st)
{
    buf_init(&st->titles, (size_t)OUTLINE_ITEMS_MAX * TITLE_READ_MAX);
    if (map->n > 1)
        qsort(map->v, map->n, sizeof *map->v, page_ref_cmp);
    walker_t w = { .ctx = ctx, .doc = doc, .n_pages = n_pages, .map = map };
    fz_var(w);
    fz_try(ctx) {
        w.n_seen = pdf_xref_len(ctx, doc);
        w.seen = malloc((size_t)w.n_seen / 8 + 1);
        if (w.seen) {
            pdf_obj *labels = pdf_dict_getp(ctx, pdf_trailer(ctx, doc), "Root/PageLabels");
            if (labels)
                walk_tree(&w, labels, PDF_NAME(Nums), label_leaf, st);
            if (!map->failed)
                read_outline(&w, st);
        }
    }
    fz_catch(ctx) {
        /* Keep what was read. */
    }
    free(w.seen);
    for (size_t i = 0; i < w.n_dests; i++)
        free(w.dests[i].name);
    free(w.dests);
    if (st->n_ranges > 1)
        qsort(st->ranges, st->n_ranges, sizeof *st->ranges, range_cmp);
    if (st->n_items > 1)
        qsort(st->items, st->n_items, sizeof *st->items, item_cmp);
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
static int write_document(fz_context *ctx, pdf_document *doc, textout_t *out, ocr_t *ocr)
{
    bool mismatch = false;
    int err = 0;
    page_map_t map = { 0 };
    int n = checked_page_count(ctx, doc, &map, &mismatch, &err);
    if (err || n <= 0) {
        free(map.v);
        return err ? err : EXTRACT_ECORRUPT;
    }
    structure_t st = { 0 };
    read_structure(ctx, doc, n, &map, &st);
    free(map.v);
    bool *need_ocr = NULL;
    int orc = plan_ocr(ctx, &doc->super, n, ocr, &need_ocr);
    if (orc) {
        structure_cleanup(&st);
        return orc;
    }
    page_writer_t w = { .out = out };
    int failed = 0;
    size_t next_item = 0;
    for (int i = 0; i < n && !textout_error(out); i++) {
        /* The page starts here (after the previous page's blank line),
         * and so do the outline entries that point at it. */
        char label[PAGE_LABEL_MAX];
        page_label(&st, i, label);
        textout_page(out, i + 1, label);
        for (; next_item < st.n_items && st.items[next_item].page <= i; next_item++)
            if (st.items[next_item].page == i)
                textout_heading(out, st.items[next_item].level,
                                st.titles.data + st.items[next_item].title_at,
                                st.items[next_item].title_len);
        int rc = need_ocr && need_ocr[i] ? ocr_one_page(ctx, &doc->super, i, ocr, out)
                                         : write_one_page(ctx, &doc->super, i, &w);
        if (need_ocr && need_ocr[i] && !rc)
            textout_blank_line(out);
        if (rc == EXTRACT_EMEMORY || rc == EXTRACT_EOCRTIME || rc == EXTRACT_EINTERNAL) {
            structure_cleanup(&st);
            free(need_ocr);
            return rc;
        }
        if (rc)
            failed++;
    }
    free(need_ocr);
    structure_cleanup(&st);
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

int pdf_extract(int fd, textout_t *out) { return pdf_extract_ocr(fd, out, NULL); }

int pdf_extract_ocr(int fd, textout_t *out, ocr_t *ocr)
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
        rc = write_document(ctx, doc, out, ocr);
    fz_drop_document(ctx, doc ? &doc->super : NULL);
    fz_drop_stream(ctx, stm);
    fz_drop_context(ctx);
    fclose(fp);
    return rc;
}
