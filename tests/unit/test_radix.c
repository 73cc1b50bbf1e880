/* test_radix.c — the compressed radix tree (radix.h).
 *
 * - empty tree answers, NULL/invalid arguments;
 * - insert, replace (old value returned), exact find, the empty key;
 * - edge splitting and merging keep the tree compressed (node counts);
 * - longest_prefix and longest_common on hand-made cases, including which
 *   value longest_common picks (the shortest key past the common point);
 * - foreach visits keys in order with the right key bytes, and stops early;
 * - radix_free calls the destructor once per value (or never when NULL);
 * - a randomized run of thousands of operations over tiny alphabets (so
 *   prefixes collide all the time), every answer compared with a brute-force
 *   list and the invariants checked with radix_check() as it goes.
 * Leaks are caught by the ASan build.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "engine/radix.h"

#define V(i) ((void *)(uintptr_t)(i))
#define K(...) ((const int32_t[]){ __VA_ARGS__ }), (sizeof((const int32_t[]){ __VA_ARGS__ }) / sizeof(int32_t))

static void test_empty(void **state)
{
    (void)state;
    radix_t *t = NULL;
    assert_int_equal(radix_new(&t), RADIX_OK);
    void *v = V(99);
    size_t len = 77;
    assert_int_equal(radix_size(t), 0);
    assert_int_equal(radix_find_exact(t, K(1, 2), &v), RADIX_ENOTFOUND);
    assert_int_equal(radix_longest_prefix(t, K(1, 2), &v, &len), RADIX_ENOTFOUND);
    assert_int_equal(radix_longest_common(t, K(1, 2), &v, &len), RADIX_ENOTFOUND);
    assert_int_equal(radix_remove(t, K(1), &v), RADIX_ENOTFOUND);
    assert_ptr_equal(v, V(99));   /* untouched on failure */
    assert_int_equal(len, 77);
    assert_int_equal(radix_insert(t, K(1), NULL, NULL), RADIX_EINVAL);
    assert_int_equal(radix_insert(t, NULL, 3, V(1), NULL), RADIX_EINVAL);
    assert_int_equal(radix_check(t), RADIX_OK);
    assert_string_equal(radix_strerror(RADIX_ENOTFOUND), "not found");
    radix_free(t, NULL);
    radix_free(NULL, NULL);
}

static void test_insert_replace_find(void **state)
{
    (void)state;
    radix_t *t = NULL;
    assert_int_equal(radix_new(&t), RADIX_OK);
    void *old = V(5);
    assert_int_equal(radix_insert(t, K(1, 2, 3), V(1), &old), RADIX_OK);
    assert_null(old);
    assert_int_equal(radix_insert(t, K(1, 2, 3), V(2), &old), RADIX_OK);
    assert_ptr_equal(old, V(1));
    assert_int_equal(radix_size(t), 1);
    void *v = NULL;
    assert_int_equal(radix_find_exact(t, K(1, 2, 3), &v), RADIX_OK);
    assert_ptr_equal(v, V(2));
    assert_int_equal(radix_find_exact(t, K(1, 2), &v), RADIX_ENOTFOUND);
    assert_int_equal(radix_find_exact(t, K(1, 2, 3, 4), &v), RADIX_ENOTFOUND);

    /* The empty key lives at the root. */
    assert_int_equal(radix_insert(t, NULL, 0, V(3), NULL), RADIX_OK);
    assert_int_equal(radix_find_exact(t, NULL, 0, &v), RADIX_OK);
    assert_ptr_equal(v, V(3));
    size_t len = 9;
    assert_int_equal(radix_longest_prefix(t, K(7, 7), &v, &len), RADIX_OK);
    assert_ptr_equal(v, V(3));
    assert_int_equal(len, 0);
    assert_int_equal(radix_remove(t, NULL, 0, &v), RADIX_OK);
    assert_ptr_equal(v, V(3));
    assert_int_equal(radix_size(t), 1);
    assert_int_equal(radix_check(t), RADIX_OK);
    radix_free(t, NULL);
}

static void test_split_and_merge(void **state)
{
    (void)state;
    radix_t *t = NULL;
    assert_int_equal(radix_new(&t), RADIX_OK);
    assert_int_equal(radix_insert(t, K(1, 2, 3, 4), V(1), NULL), RADIX_OK);
    assert_int_equal(radix_node_count(t), 2);           /* root + one edge */
    assert_int_equal(radix_insert(t, K(1, 2, 5), V(2), NULL), RADIX_OK);
    assert_int_equal(radix_node_count(t), 4);           /* root, [1 2], [3 4], [5] */
    assert_int_equal(radix_check(t), RADIX_OK);
    /* A key ending inside an edge splits it and holds the split node. */
    assert_int_equal(radix_insert(t, K(1, 2, 3), V(3), NULL), RADIX_OK);
    assert_int_equal(radix_node_count(t), 5);
    assert_int_equal(radix_check(t), RADIX_OK);
    void *v = NULL;
    assert_int_equal(radix_remove(t, K(1, 2, 3), &v), RADIX_OK);
    assert_ptr_equal(v, V(3));
    assert_int_equal(radix_node_count(t), 4);           /* [3] merged back with [4] */
    assert_int_equal(radix_remove(t, K(1, 2, 5), &v), RADIX_OK);
    assert_int_equal(radix_node_count(t), 2);           /* [1 2] merged with [3 4] */
    assert_int_equal(radix_check(t), RADIX_OK);
    assert_int_equal(radix_find_exact(t, K(1, 2, 3, 4), &v), RADIX_OK);
    assert_ptr_equal(v, V(1));
    /* Removing a key that is only a path point is not found. */
    assert_int_equal(radix_remove(t, K(1, 2), &v), RADIX_ENOTFOUND);
    assert_int_equal(radix_remove(t, K(1, 2, 3, 4), &v), RADIX_OK);
    assert_int_equal(radix_node_count(t), 1);
    assert_int_equal(radix_size(t), 0);
    assert_int_equal(radix_check(t), RADIX_OK);
    radix_free(t, NULL);
}

static void test_longest(void **state)
{
    (void)state;
    radix_t *t = NULL;
    assert_int_equal(radix_new(&t), RADIX_OK);
    assert_int_equal(radix_insert(t, K(1, 2), V(12), NULL), RADIX_OK);
    assert_int_equal(radix_insert(t, K(1, 2, 3, 4), V(1234), NULL), RADIX_OK);
    assert_int_equal(radix_insert(t, K(1, 2, 3, 9, 9, 9), V(123999), NULL), RADIX_OK);
    assert_int_equal(radix_insert(t, K(1, 2, 3, 8, 8), V(12388), NULL), RADIX_OK);
    assert_int_equal(radix_insert(t, K(5), V(5), NULL), RADIX_OK);

    void *v = NULL;
    size_t len = 0;
    assert_int_equal(radix_longest_prefix(t, K(1, 2, 3, 4, 5, 6), &v, &len), RADIX_OK);
    assert_ptr_equal(v, V(1234));
    assert_int_equal(len, 4);
    assert_int_equal(radix_longest_prefix(t, K(1, 2, 3, 7), &v, &len), RADIX_OK);
    assert_ptr_equal(v, V(12));
    assert_int_equal(len, 2);
    assert_int_equal(radix_longest_prefix(t, K(1), &v, &len), RADIX_ENOTFOUND);
    assert_int_equal(radix_longest_prefix(t, K(2, 1), &v, &len), RADIX_ENOTFOUND);

    /* Diverges after [1 2 3]: three keys pass through; the shortest is
     * [1 2 3 4] (length 4). */
    assert_int_equal(radix_longest_common(t, K(1, 2, 3, 7), &v, &len), RADIX_OK);
    assert_int_equal(len, 3);
    assert_ptr_equal(v, V(1234));
    /* Diverges inside the edge [9 9 9]. */
    assert_int_equal(radix_longest_common(t, K(1, 2, 3, 9, 9, 1), &v, &len), RADIX_OK);
    assert_int_equal(len, 5);
    assert_ptr_equal(v, V(123999));
    /* The query is a prefix of stored keys: L = n, the shortest past it. */
    assert_int_equal(radix_longest_common(t, K(1, 2, 3, 8), &v, &len), RADIX_OK);
    assert_int_equal(len, 4);
    assert_ptr_equal(v, V(12388));
    /* A stored key ending exactly at L wins over longer ones. */
    assert_int_equal(radix_longest_common(t, K(1, 2, 7), &v, &len), RADIX_OK);
    assert_int_equal(len, 2);
    assert_ptr_equal(v, V(12));
    /* Full match of a stored key. */
    assert_int_equal(radix_longest_common(t, K(1, 2, 3, 4), &v, &len), RADIX_OK);
    assert_int_equal(len, 4);
    assert_ptr_equal(v, V(1234));
    /* Nothing in common: L = 0 and the shortest key in the tree. */
    assert_int_equal(radix_longest_common(t, K(7, 7), &v, &len), RADIX_OK);
    assert_int_equal(len, 0);
    assert_ptr_equal(v, V(5));
    /* Ties in length go to the smaller diverging token. */
    assert_int_equal(radix_insert(t, K(1, 2, 3, 3), V(1233), NULL), RADIX_OK);
    assert_int_equal(radix_longest_common(t, K(1, 2, 3, 7), &v, &len), RADIX_OK);
    assert_ptr_equal(v, V(1233));
    assert_int_equal(radix_check(t), RADIX_OK);
    radix_free(t, NULL);
}

struct visit {
    int n;
    int stop_at;
    char seen[256];
};

static int visit_cb(const int32_t *key, size_t n, void *value, void *ud)
{
    struct visit *vs = ud;
    size_t off = strlen(vs->seen);
    off += (size_t)snprintf(vs->seen + off, sizeof vs->seen - off, "%s", off ? "|" : "");
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(vs->seen + off, sizeof vs->seen - off, "%d", key[i]);
    off += (size_t)snprintf(vs->seen + off, sizeof vs->seen - off, "=%d", (int)(uintptr_t)value);
    vs->n++;
    return vs->n == vs->stop_at ? 42 : 0;
}

static void test_foreach(void **state)
{
    (void)state;
    radix_t *t = NULL;
    assert_int_equal(radix_new(&t), RADIX_OK);
    assert_int_equal(radix_insert(t, K(2, 1), V(21), NULL), RADIX_OK);
    assert_int_equal(radix_insert(t, K(1, 3), V(13), NULL), RADIX_OK);
    assert_int_equal(radix_insert(t, K(1, 2, 5), V(125), NULL), RADIX_OK);
    assert_int_equal(radix_insert(t, K(1, 2), V(12), NULL), RADIX_OK);
    struct visit vs = { 0, 0, "" };
    assert_int_equal(radix_foreach(t, visit_cb, &vs), 0);
    assert_int_equal(vs.n, 4);
    assert_string_equal(vs.seen, "12=12|125=125|13=13|21=21");
    struct visit stop = { 0, 2, "" };
    assert_int_equal(radix_foreach(t, visit_cb, &stop), 42);
    assert_int_equal(stop.n, 2);

    /* The keys that extend a prefix: at a node, inside an edge, none. */
    assert_int_equal(radix_insert(t, K(4, 4, 4, 4), V(4444), NULL), RADIX_OK);
    assert_int_equal(radix_insert(t, K(4, 4, 4, 4, 9), V(44449), NULL), RADIX_OK);
    static const struct {
        int32_t key[5];
        size_t n;
        const char *want;
    } cases[] = {
        { { 1 }, 1, "12=12|125=125|13=13" },
        { { 1, 2 }, 2, "12=12|125=125" },
        { { 1, 2, 5 }, 3, "125=125" },
        { { 1, 2, 5, 7 }, 4, "" },
        { { 3 }, 1, "" },
        { { 4, 4 }, 2, "4444=4444|44449=44449" },
        { { 4, 4, 4, 4, 9 }, 5, "44449=44449" },
        { { 0 }, 0, "12=12|125=125|13=13|21=21|4444=4444|44449=44449" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct visit ve = { 0, 0, "" };
        assert_int_equal(radix_foreach_extending(t, cases[i].key, cases[i].n, visit_cb, &ve), 0);
        assert_string_equal(ve.seen, cases[i].want);
    }
    struct visit ve = { 0, 1, "" };
    assert_int_equal(radix_foreach_extending(t, K(1), visit_cb, &ve), 42);
    assert_int_equal(ve.n, 1);
    assert_int_equal(radix_foreach_extending(t, NULL, 1, visit_cb, &ve), RADIX_EINVAL);
    radix_free(t, NULL);
}

static int g_freed;
static void count_free(void *v)
{
    g_freed++;
    free(v);
}

static void test_free_values(void **state)
{
    (void)state;
    radix_t *t = NULL;
    assert_int_equal(radix_new(&t), RADIX_OK);
    /* Distinct keys, many sharing prefixes, one of them the empty key. */
    for (int32_t i = 0; i < 50; i++) {
        int32_t key[3] = { i % 3, i % 7, i };
        assert_int_equal(radix_insert(t, key, 3, malloc(8), NULL), RADIX_OK);
    }
    assert_int_equal(radix_insert(t, NULL, 0, malloc(8), NULL), RADIX_OK);
    size_t n = radix_size(t);
    assert_int_equal(n, 51);
    radix_free(t, count_free);
    assert_int_equal((size_t)g_freed, n);
    /* NULL destructor leaves values alone. */
    assert_int_equal(radix_new(&t), RADIX_OK);
    int local = 1;
    assert_int_equal(radix_insert(t, K(1), &local, NULL), RADIX_OK);
    radix_free(t, NULL);
    assert_int_equal(local, 1);
}

/* ---- randomized comparison with a brute-force list ---- */

#define MAXK 10

struct bent {
    int32_t key[MAXK];
    size_t n;
    uintptr_t value;
};

struct brute {
    struct bent *e;
    size_t n, cap;
};

static uint64_t g_rng;
static uint32_t rnd(uint32_t bound)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng % bound);
}

static size_t common(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    return i;
}

static long brute_find(const struct brute *b, const int32_t *k, size_t n)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->e[i].n == n && memcmp(b->e[i].key, k, n * sizeof *k) == 0)
            return (long)i;
    return -1;
}

/* -1 if a < b lexicographically (shorter first on equal prefix). */
static int lex(const struct bent *a, const struct bent *b)
{
    size_t c = common(a->key, a->n, b->key, b->n);
    if (c < a->n && c < b->n)
        return a->key[c] < b->key[c] ? -1 : 1;
    return a->n < b->n ? -1 : a->n > b->n ? 1 : 0;
}

static int count_cb(const int32_t *key, size_t n, void *value, void *ud)
{
    const struct brute *b = ud;
    long i = brute_find(b, key, n);
    assert_true(i >= 0);
    assert_int_equal(b->e[i].value, (uintptr_t)value);
    return 0;
}

struct extending {
    const struct brute *b;
    const int32_t *prefix;
    size_t n;
    size_t seen;
};

static int extending_cb(const int32_t *key, size_t n, void *value, void *ud)
{
    struct extending *x = ud;
    assert_true(n >= x->n);
    assert_memory_equal(key, x->prefix, x->n * sizeof *key);
    assert_int_equal(count_cb(key, n, value, (void *)x->b), 0);
    x->seen++;
    return 0;
}

static void random_round(uint64_t seed, uint32_t alphabet, uint32_t maxlen, int ops)
{
    g_rng = seed;
    radix_t *t = NULL;
    assert_int_equal(radix_new(&t), RADIX_OK);
    struct brute b = { 0 };
    b.cap = 4096;
    b.e = calloc(b.cap, sizeof *b.e);
    assert_non_null(b.e);
    uintptr_t next_value = 1;

    for (int op = 0; op < ops; op++) {
        int32_t k[MAXK];
        size_t n = rnd(maxlen + 1);
        for (size_t i = 0; i < n; i++)
            k[i] = (int32_t)rnd(alphabet) - 1;   /* includes negative tokens */
        uint32_t what = rnd(100);
        long bi = brute_find(&b, k, n);
        void *v = NULL;
        size_t len = 0;
        if (what < 35) {
            void *old = V(1);
            uintptr_t nv = next_value++;
            assert_int_equal(radix_insert(t, k, n, V(nv), &old), RADIX_OK);
            if (bi >= 0) {
                assert_ptr_equal(old, V(b.e[bi].value));
                b.e[bi].value = nv;
            } else {
                assert_null(old);
                assert_true(b.n < b.cap);
                memcpy(b.e[b.n].key, k, n * sizeof *k);
                b.e[b.n].n = n;
                b.e[b.n].value = nv;
                b.n++;
            }
        } else if (what < 55) {
            /* Remove: half the time a key known to exist. */
            if (b.n > 0 && rnd(2)) {
                bi = (long)rnd((uint32_t)b.n);
                n = b.e[bi].n;
                memcpy(k, b.e[bi].key, n * sizeof *k);
            }
            int rc = radix_remove(t, k, n, &v);
            if (bi >= 0) {
                assert_int_equal(rc, RADIX_OK);
                assert_ptr_equal(v, V(b.e[bi].value));
                b.e[bi] = b.e[--b.n];
            } else {
                assert_int_equal(rc, RADIX_ENOTFOUND);
            }
        } else if (what < 65) {
            int rc = radix_find_exact(t, k, n, &v);
            if (bi >= 0) {
                assert_int_equal(rc, RADIX_OK);
                assert_ptr_equal(v, V(b.e[bi].value));
            } else {
                assert_int_equal(rc, RADIX_ENOTFOUND);
            }
        } else if (what < 82) {
            long best = -1;
            for (size_t i = 0; i < b.n; i++)
                if (b.e[i].n <= n && common(b.e[i].key, b.e[i].n, k, n) == b.e[i].n &&
                    (best < 0 || b.e[i].n > b.e[best].n))
                    best = (long)i;
            int rc = radix_longest_prefix(t, k, n, &v, &len);
            if (best >= 0) {
                assert_int_equal(rc, RADIX_OK);
                assert_int_equal(len, b.e[best].n);
                assert_ptr_equal(v, V(b.e[best].value));
            } else {
                assert_int_equal(rc, RADIX_ENOTFOUND);
            }
        } else {
            size_t L = 0;
            for (size_t i = 0; i < b.n; i++) {
                size_t c = common(b.e[i].key, b.e[i].n, k, n);
                if (c > L)
                    L = c;
            }
            long best = -1;
            for (size_t i = 0; i < b.n; i++) {
                if (common(b.e[i].key, b.e[i].n, k, n) < L)
                    continue;
                if (best < 0 || b.e[i].n < b.e[best].n ||
                    (b.e[i].n == b.e[best].n && lex(&b.e[i], &b.e[best]) < 0))
                    best = (long)i;
            }
            int rc = radix_longest_common(t, k, n, &v, &len);
            if (best >= 0) {
                assert_int_equal(rc, RADIX_OK);
                assert_int_equal(len, L);
                assert_ptr_equal(v, V(b.e[best].value));
            } else {
                assert_int_equal(rc, RADIX_ENOTFOUND);
            }
        }
        assert_int_equal(radix_size(t), b.n);
        if (op % 97 == 0)
            assert_int_equal(radix_check(t), RADIX_OK);
    }
    assert_int_equal(radix_check(t), RADIX_OK);
    assert_int_equal(radix_foreach(t, count_cb, &b), 0);
    /* The keys extending a prefix of a stored key, against brute force. */
    for (int q = 0; q < 64 && b.n > 0; q++) {
        const struct bent *e = &b.e[rnd((uint32_t)b.n)];
        size_t pn = rnd((uint32_t)e->n + 1);
        size_t want = 0;
        for (size_t i = 0; i < b.n; i++)
            want += b.e[i].n >= pn && common(b.e[i].key, b.e[i].n, e->key, pn) == pn;
        struct extending ex = { &b, e->key, pn, 0 };
        assert_int_equal(radix_foreach_extending(t, e->key, pn, extending_cb, &ex), 0);
        assert_int_equal(ex.seen, want);
    }
    /* Drain everything: the tree must shrink back to the bare root. */
    while (b.n > 0) {
        void *v = NULL;
        assert_int_equal(radix_remove(t, b.e[b.n - 1].key, b.e[b.n - 1].n, &v), RADIX_OK);
        assert_ptr_equal(v, V(b.e[b.n - 1].value));
        b.n--;
        if (b.n % 31 == 0)
            assert_int_equal(radix_check(t), RADIX_OK);
    }
    assert_int_equal(radix_node_count(t), 1);
    radix_free(t, NULL);
    free(b.e);
}

static void test_randomized(void **state)
{
    (void)state;
    struct timespec a, z;
    clock_gettime(CLOCK_MONOTONIC, &a);
    random_round(0x9E3779B97F4A7C15ull, 2, 9, 6000);
    random_round(0xD1B54A32D192ED03ull, 3, 6, 6000);
    random_round(0x8CB92BA72F3D8DD7ull, 4, 5, 4000);
    random_round(0x1234567887654321ull, 2, 3, 2000);   /* tiny key space: dense */
    clock_gettime(CLOCK_MONOTONIC, &z);
    printf("radix randomized: 18000 operations in %.1f ms\n",
           (double)(z.tv_sec - a.tv_sec) * 1e3 + (double)(z.tv_nsec - a.tv_nsec) / 1e6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_insert_replace_find),
        cmocka_unit_test(test_split_and_merge),
        cmocka_unit_test(test_longest),
        cmocka_unit_test(test_foreach),
        cmocka_unit_test(test_free_values),
        cmocka_unit_test(test_randomized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
