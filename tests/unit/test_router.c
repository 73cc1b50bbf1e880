/* test_router.c — llm/router.c: rendezvous hashing with bounded load.
 *
 * Covered: the ranking is a permutation, the same for the same ids in any
 * order of construction (replicas agree), and spreads homes evenly;
 * taking an engine out moves only its own keys, each to the next of its
 * ranking, and they come back with it; router_pick keeps a key on its
 * home while loads are even, skips an engine at the bound for the next of
 * the key's ranking, and never leaves an engine above the bound (nor
 * skips one below min_load); no
 * healthy engine is -1; bad arguments are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "app/llm/router.h"

#define KEYS 20000

static const char *const IDS4[] = { "http://10.0.0.1:13141", "http://10.0.0.2:13141",
                                    "http://10.0.0.3:13141", "http://10.0.0.4:13141" };

static size_t key(char *buf, size_t cap, int i)
{
    return (size_t)snprintf(buf, cap, "doc-%d:part-%d", i, i % 7);
}

static void test_rank_and_spread(void **state)
{
    (void)state;
    router_t *r = router_new(4, IDS4, 1.25, 0);
    assert_non_null(r);
    const char *const rev[] = { IDS4[3], IDS4[2], IDS4[1], IDS4[0] };
    router_t *r2 = router_new(4, rev, 1.25, 0);   /* another replica, listed otherwise */
    int homes[4] = { 0 };
    for (int i = 0; i < KEYS; i++) {
        char k[64];
        size_t n = key(k, sizeof k, i);
        int o[ROUTER_MAX], o2[ROUTER_MAX];
        router_rank(r, k, n, o);
        router_rank(r2, k, n, o2);
        int seen = 0;
        for (int j = 0; j < 4; j++) {
            seen |= 1 << o[j];
            assert_int_equal(o[j], 3 - o2[j]);   /* the same engines, by id */
        }
        assert_int_equal(seen, 15);
        homes[o[0]]++;
        assert_int_equal(router_home(r, k, n), o[0]);
    }
    for (int j = 0; j < 4; j++)   /* within 5 % of a quarter */
        assert_true(fabs(homes[j] - KEYS / 4.0) < KEYS / 4.0 * 0.05);
    router_free(r);
    router_free(r2);
}

static void test_failover_moves_own_keys(void **state)
{
    (void)state;
    router_t *r = router_new(4, IDS4, 1.25, 0);
    int before[KEYS], second[KEYS];
    for (int i = 0; i < KEYS; i++) {
        char k[64];
        size_t n = key(k, sizeof k, i);
        int o[ROUTER_MAX];
        router_rank(r, k, n, o);
        before[i] = o[0];
        second[i] = o[1];
    }
    router_set_healthy(r, 2, false);
    assert_false(router_healthy(r, 2));
    assert_int_equal(router_healthy_count(r), 3);
    int moved = 0;
    for (int i = 0; i < KEYS; i++) {
        char k[64];
        size_t n = key(k, sizeof k, i);
        int h = router_home(r, k, n);
        if (before[i] == 2) {
            assert_int_equal(h, second[i]);
            moved++;
        } else {
            assert_int_equal(h, before[i]);   /* nobody else's keys move */
        }
    }
    assert_true(moved > KEYS / 5 && moved < KEYS * 3 / 10);
    router_set_healthy(r, 2, true);
    for (int i = 0; i < KEYS; i++) {
        char k[64];
        size_t n = key(k, sizeof k, i);
        assert_int_equal(router_home(r, k, n), before[i]);
    }
    for (int e = 0; e < 4; e++)
        router_set_healthy(r, e, false);
    assert_int_equal(router_home(r, "x", 1), -1);
    assert_int_equal(router_pick(r, "x", 1, NULL), -1);
    router_free(r);
}

static void test_bounded_load(void **state)
{
    (void)state;
    router_t *r = router_new(4, IDS4, 1.25, 0);
    const char *hot = "the one popular document";
    size_t hn = strlen(hot);
    int o[ROUTER_MAX];
    router_rank(r, hot, hn, o);
    /* alone, every request of the hot key stays home until the bound */
    int rank = -1;
    assert_int_equal(router_pick(r, hot, hn, &rank), o[0]);
    assert_int_equal(rank, 0);
    /* 40 requests of the one key at once: none above 1.25 x the mean */
    int picks[40];
    picks[0] = o[0];
    for (int i = 1; i < 40; i++)
        picks[i] = router_pick(r, hot, hn, NULL);
    int total = 0, most = 0;
    for (int e = 0; e < 4; e++) {
        total += router_inflight(r, e);
        if (router_inflight(r, e) > most)
            most = router_inflight(r, e);
    }
    assert_int_equal(total, 40);
    assert_true(most <= (int)ceil(1.25 * 40 / 4));
    /* the home has the most; the next of the ranking comes second */
    assert_int_equal(router_inflight(r, o[0]), most);
    assert_true(router_inflight(r, o[1]) >= router_inflight(r, o[3]));
    for (int i = 0; i < 40; i++)
        router_done(r, picks[i]);
    for (int e = 0; e < 4; e++)
        assert_int_equal(router_inflight(r, e), 0);
    router_done(r, 0);   /* one too many: stays at 0 */
    assert_int_equal(router_inflight(r, 0), 0);
    /* a sick home: the request goes to the next, as rank 0 of the healthy */
    router_set_healthy(r, o[0], false);
    assert_int_equal(router_pick(r, hot, hn, &rank), o[1]);
    assert_int_equal(rank, 0);
    router_free(r);

    /* min_load: an engine with free slots keeps its keys, however the
     * others idle; past them the bound applies */
    r = router_new(4, IDS4, 1.25, 2);
    assert_int_equal(router_pick(r, hot, hn, NULL), o[0]);
    assert_int_equal(router_pick(r, hot, hn, NULL), o[0]);   /* 1.25 x 2/4 < 1, yet 2 slots */
    assert_int_equal(router_pick(r, hot, hn, NULL), o[1]);   /* the home is full */
    router_free(r);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    const char *const dup[] = { "a", "a" };
    const char *const empty[] = { "a", "" };
    assert_null(router_new(0, IDS4, 1.0, 0));
    assert_null(router_new(2, dup, 1.0, 0));
    assert_null(router_new(2, empty, 1.0, 0));
    assert_null(router_new(ROUTER_MAX + 1, IDS4, 1.0, 0));
    router_t *r = router_new(1, IDS4, 0.5, 0);   /* taken as 1 */
    assert_non_null(r);
    for (int i = 0; i < 5; i++)
        assert_int_equal(router_pick(r, "k", 1, NULL), 0);
    assert_int_equal(router_inflight(r, 0), 5);
    assert_int_equal(router_inflight(r, 7), 0);
    router_set_healthy(r, -1, false);
    assert_true(router_healthy(r, 0));
    router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank_and_spread),
        cmocka_unit_test(test_failover_moves_own_keys),
        cmocka_unit_test(test_bounded_load),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
