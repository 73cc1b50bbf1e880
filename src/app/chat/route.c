/* route.c — see route.h. */
#include "app/chat/route.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/docs/textindex.h"
#include "common/buf.h"
#include "common/log.h"

/* Characters of a chunk shown as a preview or snippet. */
#define PREVIEW_CHARS 200

/* A chunk's score in the search of one turn. */
typedef struct {
    int doc;
    int64_t seq;
    double score;
} hit_t;

typedef struct {
    hit_t *h;
    size_t n, cap;
} hits_t;

static int hits_add(hits_t *hs, int doc, int64_t seq, double score)
{
    for (size_t i = 0; i < hs->n; i++)
        if (hs->h[i].doc == doc && hs->h[i].seq == seq) {
            hs->h[i].score += score;
            return 0;
        }
    if (hs->n == hs->cap) {
        size_t cap = hs->cap ? hs->cap * 2 : 64;
        hit_t *h = realloc(hs->h, cap * sizeof *h);
        if (!h)
            return -1;
        hs->h = h;
        hs->cap = cap;
    }
    hs->h[hs->n++] = (hit_t){ doc, seq, score };
    return 0;
}

/* ---- navigational chunks ---- */

/* Whether heading component h (len bytes) names an index or a table of
 * contents: "Index", "Function and Concept Index", "Contents", "Table of
 * Contents", "目录", "索引"... (whole words, any case). */
static bool nav_heading(const char *h, size_t len)
{
    static const char *const words[] = { "index", "contents", "toc", "目录", "目錄", "索引" };
    for (size_t w = 0; w < sizeof words / sizeof *words; w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= len; i++) {
            if (strncasecmp(h + i, words[w], wl) != 0)
                continue;
            bool ascii = (unsigned char)words[w][0] < 0x80;
            bool start = i == 0 || !ascii || !isalnum((unsigned char)h[i - 1]);
            bool end = i + wl == len || !ascii || !isalnum((unsigned char)h[i + wl]);
            if (start && end)
                return true;
        }
    }
    return false;
}

/* Whether a line ends a sentence somewhere: ". ", "? ", "! ", "; " or the
 * CJK full stops, or one of them at its end. */
static bool line_has_sentence(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if ((c == '.' || c == '?' || c == '!' || c == ';') &&
            (i + 1 == len || s[i + 1] == ' ' || s[i + 1] == '\t'))
            return true;
        if (i + 3 <= len && (!memcmp(s + i, "\u3002", 3) || !memcmp(s + i, "\uff01", 3) ||
                             !memcmp(s + i, "\uff1f", 3) || !memcmp(s + i, "\uff1b", 3)))
            return true;
    }
    return false;
}

double route_chunk_weight(const char *heading, const char *content)
{
    double shortw = 1.0;
    if (content) {
        size_t len = strlen(content);
        if (len < ROUTE_SHORT_BYTES)
            shortw = sqrt((double)(len ? len : 1) / ROUTE_SHORT_BYTES);
    }
    /* the last heading of the path says what this stretch of text is */
    if (heading && *heading) {
        const char *last = heading, *sep;
        while ((sep = strstr(last, " > ")))
            last = sep + 3;
        if (nav_heading(last, strlen(last)))
            return ROUTE_NAV_WEIGHT * shortw;
    }
    if (!content)
        return shortw;
    size_t lines = 0, bare = 0;
    for (const char *s = content; *s;) {
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        size_t i = 0;
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i < len) {
            lines++;
            bare += !line_has_sentence(s + i, len - i);
        }
        s += len + (e != NULL);
    }
    if (lines < ROUTE_NAV_MIN_LINES)
        return shortw;
    /* 60% bare lines or fewer: prose; then down to ROUTE_NAV_WEIGHT at 100% */
    double f = (double)bare / (double)lines;
    if (f <= 0.6)
        return shortw;
    return shortw * (1.0 - (1.0 - ROUTE_NAV_WEIGHT) * (f - 0.6) / 0.4);
}

/* Search `text` among the chunks of docs (the best `candidates`); add
 * weight × score × the chunk's route_chunk_weight per chunk. */
static int search_into(app_t *a, const route_doc_t *docs, size_t n_docs, const char *text,
                       double weight, size_t candidates, hits_t *hs, char *err, size_t errcap)
{
    buf_t q;
    buf_init(&q, 64 * 1024);
    int terms = 0;
    int rc = textindex_query(a->textindex, text, strlen(text), &q, &terms);
    if (rc != TEXTINDEX_OK || terms == 0) {
        buf_cleanup(&q);
        return 0;   /* nothing searchable: no hits */
    }
    const char *ids[64];
    size_t n_ids = n_docs < 64 ? n_docs : 64;
    for (size_t i = 0; i < n_ids; i++)
        ids[i] = docs[i].doc->id;
    store_chunk_list_t l;
    rc = store_chunk_search(a->store, ids, n_ids, q.data, candidates, &l);
    buf_cleanup(&q);
    if (rc != STORE_OK) {
        snprintf(err, errcap, "cannot search the document: %s", store_strerror(rc));
        return -1;
    }
    for (size_t i = 0; i < l.n; i++) {
        int doc = -1;
        for (size_t k = 0; k < n_ids; k++)
            if (strcmp(ids[k], l.items[i].doc_id) == 0)
                doc = (int)k;
        if (doc < 0)
            continue;
        store_chunk_t k;
        double w = 1.0;
        if (store_chunk_get(a->store, l.items[i].doc_id, l.items[i].seq, &k) == STORE_OK) {
            w = route_chunk_weight(k.heading, k.content);
            store_chunk_cleanup(&k);
        }
        if (hits_add(hs, doc, l.items[i].seq, weight * w * l.items[i].score)) {
            store_chunk_list_cleanup(&l);
            snprintf(err, errcap, "out of memory");
            return -1;
        }
    }
    store_chunk_list_cleanup(&l);
    return 0;
}

static int by_score(const void *x, const void *y)
{
    const hit_t *a = x, *b = y;
    if (a->score != b->score)
        return a->score < b->score ? 1 : -1;
    if (a->doc != b->doc)
        return a->doc - b->doc;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Append hit h's chunk (with its text, its score) to l. Returns 0, or -1
 * when the list cannot grow (a chunk gone meanwhile is skipped). */
static int push_hit(app_t *a, const route_doc_t *docs, const hit_t *h, store_chunk_list_t *l)
{
    store_chunk_t k;
    if (store_chunk_get(a->store, docs[h->doc].doc->id, h->seq, &k) != STORE_OK)
        return 0;
    k.score = h->score;
    return store__chunk_list_push(l, &k) == STORE_OK ? 0 : -1;
}

void route_cleanup(route_t *r)
{
    if (r)
        store_chunk_list_cleanup(&r->hits);
}

int route_pick(app_t *a, const route_doc_t *docs, size_t n_docs, const char *question,
               const char *previous, route_prev_t prev, route_t *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    hits_t hs = { 0 };
    if (search_into(a, docs, n_docs, question, 1.0, ROUTE_CANDIDATES, &hs, err, errcap) ||
        (previous && *previous &&
         search_into(a, docs, n_docs, previous, ROUTE_PREVIOUS_WEIGHT, ROUTE_CANDIDATES, &hs,
                     err, errcap))) {
        free(hs.h);
        return -1;
    }
    if (hs.n > 1)
        qsort(hs.h, hs.n, sizeof *hs.h, by_score);
    /* The fallback first: the previous part, else the first. */
    if (prev.doc >= 0 && (size_t)prev.doc < n_docs && prev.part >= 0 &&
        (size_t)prev.part < docs[prev.doc].plan->n) {
        out->doc = prev.doc;
        out->part = (size_t)prev.part;
    }
    double best = 0;
    for (size_t d = 0; d < n_docs; d++) {
        const store_part_list_t *pl = docs[d].plan;
        for (size_t p = 0; p < pl->n; p++) {
            double top = 0, second = 0;
            for (size_t i = 0; i < hs.n; i++) {
                const hit_t *h = &hs.h[i];
                if (h->doc != (int)d || h->seq < pl->items[p].chunk_first ||
                    h->seq > pl->items[p].chunk_last)
                    continue;
                if (top == 0)
                    top = h->score;   /* sorted: the first is the best */
                else if (second == 0)
                    second = h->score;
            }
            double score = top + ROUTE_SECOND_WEIGHT * second;
            bool is_prev = (int)d == prev.doc && (long)p == prev.part;
            if (score > best || (score > 0 && score == best && is_prev)) {
                best = score;
                out->doc = (int)d;
                out->part = p;
            }
        }
    }
    out->score = best;
    out->matched = best > 0;
    /* The chosen part's best chunks, with their text, as its sources. */
    const store_part_t *part = &docs[out->doc].plan->items[out->part];
    for (size_t i = 0; i < hs.n && out->hits.n < ROUTE_SOURCES_MAX; i++) {
        const hit_t *h = &hs.h[i];
        if (h->doc == out->doc && h->seq >= part->chunk_first && h->seq <= part->chunk_last &&
            push_hit(a, docs, h, &out->hits) != 0)
            break;
    }
    free(hs.h);
    return 0;
}

int route_search(app_t *a, const route_doc_t *docs, size_t n_docs, const char *text,
                 size_t limit, store_chunk_list_t *out, char *err, size_t errcap)
{
    *out = (store_chunk_list_t){ 0 };
    hits_t hs = { 0 };
    size_t candidates = limit > ROUTE_CANDIDATES ? limit : ROUTE_CANDIDATES;
    if (search_into(a, docs, n_docs, text, 1.0, candidates, &hs, err, errcap)) {
        free(hs.h);
        return -1;
    }
    if (hs.n > 1)
        qsort(hs.h, hs.n, sizeof *hs.h, by_score);
    for (size_t i = 0; i < hs.n && out->n < limit; i++)
        if (push_hit(a, docs, &hs.h[i], out) != 0)
            break;
    free(hs.h);
    return 0;
}

/* The first PREVIEW_CHARS characters of s, with "…" when cut. */
static json_t *preview(const char *s)
{
    if (!s)
        return json_string("");
    size_t n = 0, chars = 0;
    while (s[n] && chars < PREVIEW_CHARS) {
        n++;
        while ((s[n] & 0xc0) == 0x80)   /* the rest of the character */
            n++;
        chars++;
    }
    if (!s[n])
        return json_string(s);
    char *t = malloc(n + 4);
    if (!t)
        return json_string("");
    memcpy(t, s, n);
    memcpy(t + n, "\u2026", 4);
    json_t *j = json_string(t);
    free(t);
    return j;
}

json_t *route_snippet(const char *content)
{
    return preview(content);
}

json_t *route_page_numbers(int64_t first, int64_t last)
{
    json_t *a = json_array();
    for (int64_t p = first; p > 0 && p <= last && p - first < 1000; p++)
        json_array_append_new(a, json_integer(p));
    return a;
}

static double rounded(double x)
{
    return round(x * 1000) / 1000;
}

json_t *route_rag_info(const route_doc_t *d, const route_t *r, const char *where)
{
    const store_doc_t *doc = d[r->doc].doc;
    const store_part_list_t *plan = d[r->doc].plan;
    const store_chunk_t *k = r->hits.n ? &r->hits.items[0] : NULL;
    json_t *meta = k ? json_pack("{s:o, s:s}", "page_numbers",
                                 route_page_numbers(k->page_first, k->page_last), "heading",
                                 k->heading ? k->heading : "")
                     : json_null();
    return json_pack("{s:I, s:I, s:f, s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "group_id",
                     (json_int_t)r->part, "total_groups", (json_int_t)plan->n,
                     "similarity_score", rounded(r->score), "method", "rag", "filename",
                     doc->filename, "document_id", doc->id, "where", where ? where : "",
                     "content_preview", preview(k ? k->content : NULL), "matched_chunk_id",
                     k ? json_integer(k->seq) : json_null(), "matched_chunk_metadata", meta);
}

json_t *route_rag_info_full(const store_doc_t *d)
{
    return json_pack("{s:i, s:i, s:n, s:s, s:s, s:s, s:s, s:s, s:n, s:n}", "group_id", 0,
                     "total_groups", 1, "similarity_score", "method", "full_document",
                     "filename", d->filename, "document_id", d->id, "where", "",
                     "content_preview", "", "matched_chunk_id", "matched_chunk_metadata");
}

json_t *route_sources(const route_doc_t *d, const route_t *r)
{
    json_t *arr = json_array();
    const store_doc_t *doc = d[r->doc].doc;
    for (size_t i = 0; i < r->hits.n; i++) {
        const store_chunk_t *k = &r->hits.items[i];
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:I, s:o, s:[s,s], s:s, s:f, s:I, s:I, s:o}", "document_id",
                           doc->id, "filename", doc->filename, "chunk_id", (json_int_t)k->seq,
                           "page_numbers", route_page_numbers(k->page_first, k->page_last),
                           "page_labels", k->label_first ? k->label_first : "",
                           k->label_last ? k->label_last : "", "heading",
                           k->heading ? k->heading : "", "score", rounded(k->score), "start",
                           (json_int_t)k->start, "end", (json_int_t)k->end, "snippet",
                           preview(k->content)));
    }
    return arr;
}
