/* pdf.c — see pdf.h. */
#include "extract/pdf.h"

#include <limits.h>
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

static void page_map_add(page_map_t *m, pdf_obj *page, int64_t index, fz_context *ctx)
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
            page_map_add(map, kid, pages, ctx);
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
 * Both are read before the first page, each within its own budget, since
 * a hostile file can make either as large or as cyclic as it likes:
 *   - /PageLabels, a number tree: at most LABEL_NODES_MAX nodes visited,
 *     LABEL_DEPTH_MAX deep, one range per page at most;
 *   - /Outlines: at most OUTLINE_ITEMS_MAX items, OUTLINE_DEPTH_MAX deep
 *     (deeper entries are not read), each item object read once (a cycle
 *     ends its chain).
 * MuPDF's own outline loader is not used: it walks the whole outline,
 * recursively, before handing back the first entry. A failure in either
 * walk (an object MuPDF cannot read, no memory) keeps what was read so far:
 * structure is optional, the text does not depend on it. */
#define LABEL_NODES_MAX 100000
#define LABEL_DEPTH_MAX 32
#define OUTLINE_ITEMS_MAX 50000
#define OUTLINE_DEPTH_MAX 64
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

typedef struct {
    label_range_t *ranges;   /* sorted by start */
    size_t n_ranges;
    outline_item_t *items;   /* sorted by page, then outline order */
    size_t n_items;
    buf_t titles;
} structure_t;

static void structure_cleanup(structure_t *st)
{
    free(st->ranges);
    free(st->items);
    buf_cleanup(&st->titles);
    memset(st, 0, sizeof *st);
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

/* Record the label range of number-tree entry (key, value). */
static void add_label_range(fz_context *ctx, structure_t *st, size_t *cap, int n_pages,
                            pdf_obj *key, pdf_obj *dict)
{
    if (!pdf_is_int(ctx, key) || !pdf_is_dict(ctx, dict))
        return;
    int start = pdf_to_int(ctx, key);
    if (start < 0 || start >= n_pages || st->n_ranges >= (size_t)n_pages)
        return;
    if (st->n_ranges == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        label_range_t *v = realloc(st->ranges, c * sizeof *v);
        if (!v)
            return;
        st->ranges = v;
        *cap = c;
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

/* Walk the /PageLabels number tree (see above). May throw. */
static void read_page_labels(fz_context *ctx, pdf_document *doc, int n_pages, structure_t *st)
{
    pdf_obj *root = pdf_dict_getp(ctx, pdf_trailer(ctx, doc), "Root/PageLabels");
    if (!pdf_is_dict(ctx, root))
        return;
    struct {
        pdf_obj *kids;
        int next, len;
    } stack[LABEL_DEPTH_MAX];
    size_t cap = 0;
    int visits = 0, depth = 0;
    pdf_obj *node = root;
    for (;;) {
        if (node && ++visits <= LABEL_NODES_MAX) {
            pdf_obj *nums = pdf_dict_get(ctx, node, PDF_NAME(Nums));
            int len = pdf_array_len(ctx, nums);
            for (int i = 0; i + 1 < len; i += 2)
                add_label_range(ctx, st, &cap, n_pages, pdf_array_get(ctx, nums, i),
                                pdf_array_get(ctx, nums, i + 1));
            pdf_obj *kids = pdf_dict_get(ctx, node, PDF_NAME(Kids));
            if (pdf_is_array(ctx, kids) && depth < LABEL_DEPTH_MAX) {
                stack[depth].kids = kids;
                stack[depth].next = 0;
                stack[depth].len = pdf_array_len(ctx, kids);
                depth++;
            }
        }
        node = NULL;
        while (depth > 0 && stack[depth - 1].next >= stack[depth - 1].len)
            depth--;
        if (depth == 0 || visits > LABEL_NODES_MAX)
            break;
        node = pdf_array_get(ctx, stack[depth - 1].kids, stack[depth - 1].next++);
    }
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

/* The printed label of page index i, "" when the file defines none. */
static void page_label(const structure_t *st, int i, char *out)
{
    out[0] = '\0';
    /* The last range starting at or before i (ranges are few per page). */
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
    snprintf(out, PAGE_LABEL_MAX, "%s%s", r->prefix, number);
}

/* The page index an outline destination points at, -1 if none: an explicit
 * destination [page ...] (a page object, or a page index as remote
 * destinations have it), a name or string looked up in the document's
 * destinations, or a dictionary holding one as /D. May throw. */
static int dest_page(fz_context *ctx, pdf_document *doc, pdf_obj *dest, const page_map_t *map,
                     int n_pages)
{
    for (int step = 0; step < 4 && dest; step++) {
        if (pdf_is_array(ctx, dest)) {
            pdf_obj *page = pdf_array_get(ctx, dest, 0);
            if (pdf_is_int(ctx, page)) {
                int i = pdf_to_int(ctx, page);
                return i >= 0 && i < n_pages ? i : -1;
            }
            if (!pdf_is_indirect(ctx, page) || map->n == 0)
                return -1;
            page_ref_t key = { pdf_to_num(ctx, page), -1 };
            /* The first entry of that object number (lowest index). */
            size_t lo = 0, hi = map->n;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (page_ref_cmp(&map->v[mid], &key) < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < map->n && map->v[lo].num == key.num && map->v[lo].index < n_pages)
                return map->v[lo].index;
            return -1;
        }
        if (pdf_is_dict(ctx, dest))
            dest = pdf_dict_get(ctx, dest, PDF_NAME(D));
        else if (pdf_is_name(ctx, dest) || pdf_is_string(ctx, dest))
            dest = pdf_lookup_dest(ctx, doc, dest);
        else
            return -1;
    }
    return -1;
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

/* Bit i of a set of object numbers; returns whether it was set before. */
static bool test_and_set(unsigned char *set, int n, int i)
{
    if (!set || i <= 0 || i >= n)
        return false;
    bool was = set[i / 8] & (1u << (i % 8));
    set[i / 8] |= (unsigned char)(1u << (i % 8));
    return was;
}

/* Walk /Outlines in order (see above), collecting the entries that point
 * at a page. May throw; *cap is st->items' capacity. */
static void read_outline(fz_context *ctx, pdf_document *doc, int n_pages, const page_map_t *map,
                         unsigned char *seen, int n_seen, structure_t *st, size_t *cap)
{
    pdf_obj *stack[OUTLINE_DEPTH_MAX];
    int depth = 0;
    size_t count = 0;
    pdf_obj *item = pdf_dict_get(ctx, pdf_dict_getp(ctx, pdf_trailer(ctx, doc), "Root/Outlines"),
                                 PDF_NAME(First));
    while (count < OUTLINE_ITEMS_MAX) {
        if (item && pdf_is_dict(ctx, item) &&
            !(pdf_is_indirect(ctx, item) && test_and_set(seen, n_seen, pdf_to_num(ctx, item)))) {
            count++;
            int page = dest_page(ctx, doc, item_dest(ctx, item), map, n_pages);
            const char *title = pdf_dict_get_text_string(ctx, item, PDF_NAME(Title));
            size_t len = title ? strnlen(title, TITLE_READ_MAX) : 0;
            if (page >= 0 && len > 0) {
                if (st->n_items == *cap) {
                    size_t c = *cap ? *cap * 2 : 64;
                    outline_item_t *v = realloc(st->items, c * sizeof *v);
                    if (!v)
                        return;
                    st->items = v;
                    *cap = c;
                }
                size_t at = st->titles.len;
                if (buf_append(&st->titles, title, len) != BUF_OK)
                    return;
                st->items[st->n_items++] = (outline_item_t){
                    .page = page,
                    .level = depth + 1 > EXTRACT_HEADING_LEVEL_MAX ? EXTRACT_HEADING_LEVEL_MAX
                                                                   : depth + 1,
                    .seq = count,
                    .title_at = at,
                    .title_len = len,
                };
            }
            pdf_obj *first = pdf_dict_get(ctx, item, PDF_NAME(First));
            if (first && depth + 1 < OUTLINE_DEPTH_MAX) {
                stack[depth++] = item;
                item = first;
                continue;
            }
            item = pdf_dict_get(ctx, item, PDF_NAME(Next));
            continue;
        }
        /* This chain is over: on with the parent's next sibling. */
        if (depth == 0)
            break;
        item = pdf_dict_get(ctx, stack[--depth], PDF_NAME(Next));
    }
}

/* Read the page labels and the outline of a document of n_pages pages
 * whose page objects are in map. Never throws; st holds what was read. */
static void read_structure(fz_context *ctx, pdf_document *doc, int n_pages, page_map_t *map,
                           structure_t *st)
{
    buf_init(&st->titles, (size_t)OUTLINE_ITEMS_MAX * TITLE_READ_MAX);
    if (map->n > 1)
        qsort(map->v, map->n, sizeof *map->v, page_ref_cmp);
    unsigned char *seen = NULL;
    int n_seen = 0;
    size_t cap = 0;
    fz_var(seen);
    fz_var(n_seen);
    fz_try(ctx) {
        read_page_labels(ctx, doc, n_pages, st);
        n_seen = pdf_xref_len(ctx, doc);
        seen = calloc((size_t)n_seen / 8 + 1, 1);
        if (seen && !map->failed)
            read_outline(ctx, doc, n_pages, map, seen, n_seen, st, &cap);
    }
    fz_catch(ctx) {
        /* Keep what was read. */
    }
    free(seen);
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
static int write_document(fz_context *ctx, pdf_document *doc, textout_t *out)
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
        int rc = write_one_page(ctx, &doc->super, i, &w);
        if (rc == EXTRACT_EMEMORY) {
            structure_cleanup(&st);
            return rc;
        }
        if (rc)
            failed++;
    }
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
