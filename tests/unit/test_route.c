/* test_route.c — chat/route.c over a real in-memory store (SQLite FTS5)
 * and the real text index: which part a question goes to.
 *
 * Covered: the part holding the one chunk that matches best wins over a
 * part with many weak matches (a manual that repeats its wording in every
 * section); the previous question keeps "tell me more" on its part; a
 * question without a searchable word or a match stays on the previous
 * part, else the first; several documents: the best part of either; the
 * sources are the chosen part's best chunks, best first; rag_info and
 * sources in the prototype's shape; an index (a list of names, or under a
 * heading that says so) and a three-line fragment weigh less than the
 * passage that explains what the question names (route_chunk_weight).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/chat/route.h"
#include "app/docs/textindex.h"
#include "common/buf.h"

typedef struct {
    app_t a;
    store_doc_t doc[2];
    store_part_list_t plan[2];
} fx_t;

static const char *g_sha[2] = {
    "1111111111111111111111111111111111111111111111111111111111111111",
    "2222222222222222222222222222222222222222222222222222222222222222",
};

/* Chunks of one document, from texts. */
typedef struct {
    textindex_t *ti;
    const char *const *texts;
    size_t n, at;
    store_chunk_t c;
    buf_t ix;
} feed_t;

static int feed_next(void *ud, const store_chunk_t **chunk, const char **index_text)
{
    feed_t *f = ud;
    if (f->at == f->n) {
        *chunk = NULL;
        return STORE_OK;
    }
    const char *t = f->texts[f->at++];
    store_chunk_init(&f->c);
    f->c.start = 0;
    f->c.end = (int64_t)strlen(t);
    f->c.n_chars = f->c.end;
    f->c.est_tokens = f->c.end / 4 + 1;
    f->c.content = (char *)t;
    f->c.heading = (char *)"";
    buf_reset(&f->ix);
    assert_int_equal(textindex_doc(f->ti, t, strlen(t), &f->ix), TEXTINDEX_OK);
    *chunk = &f->c;
    *index_text = f->ix.data ? f->ix.data : "";
    return STORE_OK;
}

/* Document k with texts, planned as parts of `per_part` chunks each. */
static void add_doc(fx_t *f, int k, const char *name, const char *const *texts, size_t n,
                    size_t per_part)
{
    store_doc_t in;
    store_doc_init(&in);
    in.filename = (char *)name;
    in.stored_name = (char *)name;
    in.content_type = "md";
    in.file_size = 1;
    in.sha256 = (char *)g_sha[k];
    assert_int_equal(store_doc_insert(f->a.store, &in, "x", 1, &f->doc[k], NULL), STORE_OK);
    feed_t fd = { f->a.textindex, texts, n, 0, { 0 }, { 0 } };
    buf_init(&fd.ix, 1 << 20);
    store_chunk_reader_t r = { feed_next, &fd };
    assert_int_equal(store_doc_set_chunks(f->a.store, f->doc[k].id, &r, NULL), STORE_OK);
    buf_cleanup(&fd.ix);
    store_part_t parts[16];
    size_t np = 0;
    for (size_t first = 0; first < n; first += per_part) {
        store_part_init(&parts[np]);
        parts[np].chunk_first = (int64_t)first;
        parts[np].chunk_last = (int64_t)(first + per_part - 1 < n ? first + per_part - 1 : n - 1);
        parts[np].content_length = 1;
        np++;
    }
    assert_int_equal(store_parts_set(f->a.store, f->doc[k].id, "k", parts, np), STORE_OK);
    assert_int_equal(store_parts_list(f->a.store, f->doc[k].id, "k", &f->plan[k]), STORE_OK);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    if (!f || store_open("sqlite::memory:", &f->a.store) != STORE_OK ||
        textindex_open(&f->a.textindex) != TEXTINDEX_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    for (int k = 0; k < 2; k++) {
        store_doc_cleanup(&f->doc[k]);
        store_part_list_cleanup(&f->plan[k]);
    }
    textindex_close(f->a.textindex);
    store_close(f->a.store);
    free(f);
    return 0;
}

/* 120 chunks in 2 parts: 0..99 and 100..119. Every third chunk of the
 * first part is a harbour section saying "keeper", "harbour", "gulls",
 * "spring" (common words, but not in every chunk: they weigh something);
 * in the second part only chunk 111 does (harbour 97). */
#define N_CHUNKS 120
static char g_harbour[N_CHUNKS][200];
static const char *g_harbour_p[N_CHUNKS];

static void harbours(void)
{
    for (int i = 0; i < N_CHUNKS; i++) {
        if ((i < 100 && i % 3 == 0) || i == 111)
            snprintf(g_harbour[i], sizeof g_harbour[i],
                     "The keeper of harbour %d counts the gulls each spring and writes the "
                     "count in the harbour book, as every keeper of every harbour does.",
                     i == 111 ? 97 : 1000 + i);
        else
            snprintf(g_harbour[i], sizeof g_harbour[i],
                     "Recipe %d: bake the bread for forty minutes and let it rest.", i);
        g_harbour_p[i] = g_harbour[i];
    }
}

static void test_best_chunk_wins(void **state)
{
    fx_t *f = *state;
    harbours();
    add_doc(f, 0, "almanac.md", g_harbour_p, N_CHUNKS, 100);
    route_doc_t rd = { &f->doc[0], &f->plan[0] };
    route_t r;
    char err[256];
    route_prev_t none = { -1, -1 };
    assert_int_equal(route_pick(&f->a, &rd, 1,
                                "How many gulls does the keeper of harbour 97 count each spring?",
                                NULL, none, &r, err, sizeof err),
                     0);
    assert_int_equal(r.doc, 0);
    assert_int_equal(r.part, 1);
    assert_true(r.matched);
    assert_true(r.hits.n >= 1);
    assert_int_equal(r.hits.items[0].seq, 111);   /* the best chunk first */
    for (size_t i = 1; i < r.hits.n; i++)
        assert_true(r.hits.items[i - 1].score >= r.hits.items[i].score);

    json_t *ri = route_rag_info(&rd, &r, "pages 3\u20134");
    assert_int_equal(json_integer_value(json_object_get(ri, "group_id")), 1);
    assert_int_equal(json_integer_value(json_object_get(ri, "total_groups")), 2);
    assert_string_equal(json_string_value(json_object_get(ri, "method")), "rag");
    assert_int_equal(json_integer_value(json_object_get(ri, "matched_chunk_id")), 111);
    assert_non_null(strstr(json_string_value(json_object_get(ri, "content_preview")), "97"));
    assert_true(json_is_object(json_object_get(ri, "matched_chunk_metadata")));
    json_decref(ri);
    json_t *src = route_sources(&rd, &r);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(src, 0), "chunk_id")),
                     111);
    json_decref(src);
    route_cleanup(&r);
}

static void test_previous_turn(void **state)
{
    fx_t *f = *state;
    harbours();
    add_doc(f, 0, "almanac.md", g_harbour_p, N_CHUNKS, 100);
    route_doc_t rd = { &f->doc[0], &f->plan[0] };
    route_t r;
    char err[256];
    /* nothing searchable: the previous part stays */
    route_prev_t prev = { 0, 1 };   /* (the harbour 97 part) */
    assert_int_equal(route_pick(&f->a, &rd, 1, "Tell me more?", NULL, prev, &r, err, sizeof err),
                     0);
    assert_false(r.matched);
    assert_int_equal(r.part, 1);
    route_cleanup(&r);
    /* ... else the first part */
    route_prev_t none = { -1, -1 };
    assert_int_equal(route_pick(&f->a, &rd, 1, "zebra quokka", NULL, none, &r, err, sizeof err),
                     0);
    assert_int_equal(r.part, 0);
    route_cleanup(&r);
    /* the previous question carries "and in winter?" to harbour 97's part */
    assert_int_equal(route_pick(&f->a, &rd, 1, "And in winter?",
                                "What does the keeper of harbour 97 count?", none, &r, err,
                                sizeof err),
                     0);
    assert_int_equal(r.part, 1);
    route_cleanup(&r);
}

static void test_two_documents(void **state)
{
    fx_t *f = *state;
    harbours();
    add_doc(f, 0, "almanac.md", g_harbour_p, N_CHUNKS, 100);
    static const char *const kitchen[] = {
        "The kettle is in the second cupboard.",
        "Knives hang on the magnetic strip by the window.",
        "The kettle descaler sits under the sink.",
    };
    add_doc(f, 1, "kitchen.md", kitchen, 3, 2);
    route_doc_t rd[2] = { { &f->doc[0], &f->plan[0] }, { &f->doc[1], &f->plan[1] } };
    route_t r;
    char err[256];
    route_prev_t none = { -1, -1 };
    assert_int_equal(route_pick(&f->a, rd, 2, "Where is the kettle descaler?", NULL, none, &r,
                                err, sizeof err),
                     0);
    assert_int_equal(r.doc, 1);
    assert_int_equal(r.part, 1);   /* chunk 2: the descaler */
    route_cleanup(&r);
    assert_int_equal(route_pick(&f->a, rd, 2, "harbour 97 gulls", NULL, none, &r, err,
                                sizeof err),
                     0);
    assert_int_equal(r.doc, 0);
    assert_int_equal(r.part, 1);
    route_cleanup(&r);
}

static bool near(double x, double y)
{
    return fabs(x - y) < 1e-9;
}

static void test_chunk_weight(void **state)
{
    (void)state;
    char prose[1024] = "", list[1024] = "";
    for (int i = 0; i < 8; i++)
        strcat(prose, "The keeper counts the gulls. He writes the count in the book.\n");
    for (int i = 0; i < 16; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "aes%d_encrypt: AES\n", i);
    assert_true(strlen(prose) >= ROUTE_SHORT_BYTES && strlen(list) >= ROUTE_SHORT_BYTES);
    assert_true(near(route_chunk_weight("Manual > 7 Reference", prose), 1.0));
    assert_true(near(route_chunk_weight(NULL, prose), 1.0));
    /* all bare lines: a list of names */
    assert_true(near(route_chunk_weight("Manual > 7 Reference", list), ROUTE_NAV_WEIGHT));
    /* the heading says index or contents (the last one of the path; whole
     * words, any case, Chinese too) */
    assert_true(near(route_chunk_weight("Manual > Function and Concept Index", prose),
                     ROUTE_NAV_WEIGHT));
    assert_true(near(route_chunk_weight("Book > Table of Contents", prose), ROUTE_NAV_WEIGHT));
    assert_true(near(route_chunk_weight("手册 > 目录", prose), ROUTE_NAV_WEIGHT));
    assert_true(near(route_chunk_weight("Book > Indexing strategies", prose), 1.0));
    assert_true(near(route_chunk_weight("Index > Usage", prose), 1.0));
    /* half the lines bare: still prose; 80%: between */
    char mixed[2048] = "";
    for (int i = 0; i < 10; i++)
        strcat(mixed, i % 5 ? "Function: void aes128_encrypt (struct aes128_ctx *ctx)\n"
                            : "It encrypts one block of data with the key set up before.\n");
    double w = route_chunk_weight("", mixed);
    assert_true(w > ROUTE_NAV_WEIGHT && w < 1.0);
    /* fewer than ROUTE_NAV_MIN_LINES lines are never a list */
    char few[1024] = "";
    for (int i = 0; i < ROUTE_NAV_MIN_LINES - 1; i++)
        strcat(few, "Function: void aes128_encrypt (struct aes128_ctx *ctx, size_t n)\n");
    assert_true(strlen(few) >= ROUTE_SHORT_BYTES);
    assert_true(near(route_chunk_weight("", few), 1.0));
    /* a short fragment: sqrt of its share of ROUTE_SHORT_BYTES */
    char frag[ROUTE_SHORT_BYTES / 4 + 1];
    memset(frag, 'a', sizeof frag - 1);
    frag[sizeof frag - 1] = '\0';
    assert_true(near(route_chunk_weight("", frag), 0.5));
    assert_true(route_chunk_weight("", "") > 0);
}

/* A manual: each cipher's section explains its functions; its last part is
 * the index, which names every function again in short lines (and so,
 * by bm25 alone, matches a question naming one better than the section:
 * a shorter text and every word of the question in it). */
static void test_index_loses(void **state)
{
    fx_t *f = *state;
    static char sec[6][600], idx[2][1200];
    static const char *texts[8];
    static const char *const ciphers[6] = { "aes128", "aes192", "aes256", "camellia128",
                                            "serpent", "twofish" };
    for (int i = 0; i < 6; i++) {
        snprintf(sec[i], sizeof sec[i],
                 "The %s cipher is one of the block ciphers the library offers. Its context "
                 "struct holds the expanded key, and a context may be copied freely.\n"
                 "Function: void %s_encrypt (struct %s_ctx *ctx, size_t length, uint8_t *dst, "
                 "const uint8_t *src)\nEncrypts the data, one block at a time; the length "
                 "must be a multiple of the block size. The key schedule must have been set "
                 "up before with the set_encrypt_key function.",
                 ciphers[i], ciphers[i], ciphers[i]);
        texts[i] = sec[i];
    }
    for (int k = 0; k < 2; k++) {
        idx[k][0] = '\0';
        for (int i = 0; i < 6; i++)
            snprintf(idx[k] + strlen(idx[k]), sizeof idx[k] - strlen(idx[k]),
                     "%s_%s: %s\n%s_set_%s_key: %s\n", ciphers[i], k ? "decrypt" : "encrypt",
                     ciphers[i], ciphers[i], k ? "decrypt" : "encrypt", ciphers[i]);
        texts[6 + k] = idx[k];
    }
    add_doc(f, 0, "manual.md", texts, 8, 2);   /* parts: 0-1 2-3 4-5 6-7 */
    route_doc_t rd = { &f->doc[0], &f->plan[0] };
    route_t r;
    char err[256];
    route_prev_t none = { -1, -1 };
    for (int i = 0; i < 6; i++) {
        char q[128];
        snprintf(q, sizeof q, "What does %s_encrypt do?", ciphers[i]);
        assert_int_equal(route_pick(&f->a, &rd, 1, q, NULL, none, &r, err, sizeof err), 0);
        assert_int_equal(r.part, (size_t)(i / 2));
        assert_int_equal(r.hits.items[0].seq, i);
        route_cleanup(&r);
    }
    /* the search finds the same, the index below */
    store_chunk_list_t l;
    assert_int_equal(route_search(&f->a, &rd, 1, "aes192_encrypt", 8, &l, err, sizeof err), 0);
    assert_true(l.n >= 2);
    assert_int_equal(l.items[0].seq, 1);
    assert_non_null(l.items[0].content);
    for (size_t i = 1; i < l.n; i++)
        assert_true(l.items[i - 1].score >= l.items[i].score);
    store_chunk_list_cleanup(&l);
    /* nothing searchable: nothing found, no failure */
    assert_int_equal(route_search(&f->a, &rd, 1, "the of and", 8, &l, err, sizeof err), 0);
    assert_int_equal(l.n, 0);
    store_chunk_list_cleanup(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_best_chunk_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_previous_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_documents, setup, teardown),
        cmocka_unit_test(test_chunk_weight),
        cmocka_unit_test_setup_teardown(test_index_loses, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
