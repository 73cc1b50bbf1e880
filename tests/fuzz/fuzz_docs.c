/* fuzz_docs.c — a document's text and a user's question, as long documents
 * take them: the chunker (docs/chunker.c), the text index (docs/textindex.c)
 * and the store's chunk index and search (store/store_sqlite.c, FTS5).
 *
 * Input: two parameter bytes, then the text and the question separated by
 * the first "\n--q--\n" (no separator: all text, the question is its
 * first 200 bytes). The text goes to the chunker in pieces of sizes drawn
 * from the parameters, its chunks (with a page mark and a heading mark
 * placed from the parameters) are indexed and written to an in-memory
 * store, and the question is searched among them.
 *
 * Checked besides memory safety: the chunker accepts exactly the texts
 * that are valid UTF-8 without NUL; its chunks are in order, inside the
 * text, each its own bytes of the text, valid UTF-8, within max_tokens by
 * its own estimate; the chunks of one text are the same whatever the
 * piece sizes; an index text is valid UTF-8 within 4 bytes per input
 * byte; a question's expression, when it has terms, is always accepted by
 * FTS5 (the store answers STORE_OK, never "malformed").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/docs/chunker.h"
#include "app/docs/textindex.h"
#include "app/store/store.h"
#include "common/buf.h"
#include "common/utf8.h"
#include "fuzz_util.h"

#define SEP "\n--q--\n"
#define MAX_CHUNKS 4096

static textindex_t *g_ti;
static store_t *g_store;
static char g_doc_id[STORE_UUID_BUFSZ];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    FUZZ_CHECK(textindex_open(&g_ti) == TEXTINDEX_OK, "textindex_open");
    FUZZ_CHECK(store_open("sqlite::memory:", &g_store) == STORE_OK, "store_open");
    store_doc_t d, out;
    store_doc_init(&d);
    d.filename = "fuzz.txt";
    d.stored_name = "fuzz.txt";
    d.content_type = "txt";
    d.file_size = 1;
    d.sha256 = "0000000000000000000000000000000000000000000000000000000000000000";
    FUZZ_CHECK(store_doc_insert(g_store, &d, "x", 1, &out, NULL) == STORE_OK, "doc insert");
    snprintf(g_doc_id, sizeof g_doc_id, "%s", out.id);
    store_doc_cleanup(&out);
    return 0;
}

/* The chunks of one run, copied. */
typedef struct {
    const char *text;
    size_t text_len;
    int max_tokens;
    store_chunk_t c[MAX_CHUNKS];
    char *ix[MAX_CHUNKS];
    size_t n, at;
    size_t last_end;
} run_t;

static int on_chunk(void *ud, const chunker_chunk_t *k)
{
    run_t *r = ud;
    FUZZ_CHECK(k->start >= r->last_end && k->start < k->end && k->end <= r->text_len,
               "chunk %zu at [%zu, %zu) after %zu in %zu bytes", k->index, k->start, k->end,
               r->last_end, r->text_len);
    FUZZ_CHECK(k->len == k->end - k->start && memcmp(k->text, r->text + k->start, k->len) == 0,
               "chunk %zu is not the text's bytes", k->index);
    FUZZ_CHECK(utf8_valid(k->text, k->len), "chunk %zu is not UTF-8", k->index);
    FUZZ_CHECK(k->est_tokens == chunker_estimate_tokens(k->text, k->len) &&
                   k->est_tokens <= r->max_tokens,
               "chunk %zu: %d tokens, max %d", k->index, k->est_tokens, r->max_tokens);
    r->last_end = k->end;
    if (r->n == MAX_CHUNKS)
        return 0;
    store_chunk_t *c = &r->c[r->n];
    store_chunk_init(c);
    c->start = (int64_t)k->start;
    c->end = (int64_t)k->end;
    c->n_chars = (int64_t)k->n_chars;
    c->est_tokens = k->est_tokens;
    c->page_first = k->page_first;
    c->page_last = k->page_last;
    c->content = strndup(k->text, k->len);
    c->heading = strdup(k->heading);
    c->label_first = strdup(k->page_label_first);
    c->label_last = strdup(k->page_label_last);
    FUZZ_CHECK(c->content && c->heading && c->label_first && c->label_last, "out of memory");
    buf_t b;
    buf_init(&b, 4 * k->len + 16);
    int rc = textindex_doc(g_ti, k->text, k->len, &b);
    FUZZ_CHECK(rc == TEXTINDEX_OK, "textindex_doc: %s", textindex_strerror(rc));
    FUZZ_CHECK(b.len <= 4 * k->len && utf8_valid(b.data ? b.data : "", b.len),
               "index text of %zu bytes for %zu", b.len, k->len);
    r->ix[r->n] = b.data ? buf_steal(&b, NULL) : strdup("");
    buf_cleanup(&b);
    r->n++;
    return 0;
}

static int next_chunk(void *ud, const store_chunk_t **chunk, const char **index_text)
{
    run_t *r = ud;
    if (r->at == r->n) {
        *chunk = NULL;
        return STORE_OK;
    }
    *chunk = &r->c[r->at];
    *index_text = r->ix[r->at];
    r->at++;
    return STORE_OK;
}

static void run_free(run_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        store_chunk_cleanup(&r->c[i]);
        free(r->ix[i]);
    }
}

/* Chunk text[0..len) in pieces of `step` bytes (0: at once). Returns the
 * chunker's result. */
static int chunk_all(run_t *r, const chunker_params_t *p, const chunker_mark_t *marks,
                     size_t n_marks, size_t step)
{
    chunker_t *ck = NULL;
    FUZZ_CHECK(chunker_new(p, marks, n_marks, on_chunk, r, &ck) == CHUNKER_OK, "chunker_new");
    int rc = CHUNKER_OK;
    for (size_t at = 0; rc == CHUNKER_OK && at < r->text_len;) {
        size_t n = step && step < r->text_len - at ? step : r->text_len - at;
        rc = chunker_feed(ck, r->text + at, n);
        at += n;
    }
    if (rc == CHUNKER_OK)
        rc = chunker_finish(ck);
    chunker_free(ck);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > (1u << 20))
        return 0;
    uint8_t p0 = data[0], p1 = data[1];
    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    const char *sep = memmem(text, len, SEP, strlen(SEP));
    const char *q = sep ? sep + strlen(SEP) : text;
    size_t qlen = sep ? len - (size_t)(q - text) : (len < 200 ? len : 200);
    if (sep)
        len = (size_t)(sep - text);

    chunker_params_t p = { .max_tokens = CHUNKER_TOKENS_MIN + (p0 & 0x3f) * 4 };
    p.target_tokens = 1 + (int)((unsigned)(p.max_tokens - 1) * ((p1 & 0x7) + 1) / 8);
    chunker_mark_t marks[2] = {
        { CHUNKER_MARK_PAGE, len * (p1 >> 4) / 16, 1 + (p0 >> 6), "iv" },
        { CHUNKER_MARK_HEADING, len * (p1 >> 4) / 16 + (p1 & 8), 1 + (p0 >> 5) % 6, "Title" },
    };
    bool valid = utf8_valid(text, len) && !memchr(text, '\0', len);

    run_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    FUZZ_CHECK(a && b, "out of memory");
    a->text = b->text = text;
    a->text_len = b->text_len = len;
    a->max_tokens = b->max_tokens = p.max_tokens;
    int ra = chunk_all(a, &p, marks, 2, 0);
    int rb = chunk_all(b, &p, marks, 2, 1 + (size_t)(p1 & 0x3f) * 7);
    FUZZ_CHECK(ra == rb, "one piece: %d, in pieces: %d", ra, rb);
    FUZZ_CHECK(valid ? ra == CHUNKER_OK : ra == CHUNKER_EUTF8, "valid %d, chunker %s", valid,
               chunker_strerror(ra));
    FUZZ_CHECK(a->n == b->n, "%zu chunks at once, %zu in pieces", a->n, b->n);
    for (size_t i = 0; i < a->n; i++)
        FUZZ_CHECK(a->c[i].start == b->c[i].start && a->c[i].end == b->c[i].end,
                   "chunk %zu differs with the pieces", i);

    if (ra == CHUNKER_OK) {
        store_chunk_reader_t r = { next_chunk, a };
        int src = store_doc_set_chunks(g_store, g_doc_id, &r, NULL);
        FUZZ_CHECK(src == STORE_OK || src == STORE_ETOOBIG, "set chunks: %s",
                   store_strerror(src));
    }
    if (utf8_valid(q, qlen) && !memchr(q, '\0', qlen)) {
        buf_t e;
        buf_init(&e, 64 * 1024);
        int terms = 0;
        int rc = textindex_query(g_ti, q, qlen, &e, &terms);
        FUZZ_CHECK(rc == TEXTINDEX_OK || rc == TEXTINDEX_ETOOBIG, "query: %s",
                   textindex_strerror(rc));
        FUZZ_CHECK(terms <= TEXTINDEX_QUERY_TERMS_MAX, "%d terms", terms);
        if (rc == TEXTINDEX_OK && terms > 0) {
            const char *ids[] = { g_doc_id };
            store_chunk_list_t l;
            int src = store_chunk_search(g_store, ids, 1, e.data, 16, &l);
            FUZZ_CHECK(src == STORE_OK || src == STORE_ETOOBIG, "search \"%s\": %s", e.data,
                       store_strerror(src));
            store_chunk_list_cleanup(&l);
        }
        buf_cleanup(&e);
    }
    run_free(a);
    run_free(b);
    free(a);
    free(b);
    return 0;
}
