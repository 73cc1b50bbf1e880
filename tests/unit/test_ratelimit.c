/* test_ratelimit.c — auth/ratelimit.c, with the time passed in.
 *
 * Covered: free failures, then a doubling backoff up to its maximum, then
 * the lock for lock_s; a success clears the key; failures older than the
 * window are forgotten; keys are independent and cut at
 * RATELIMIT_KEY_MAX; a table flooded with new keys keeps memory fixed and
 * loses only the least recently seen; the token bucket's burst, refill and
 * retry time; no limit when the rate is 0; a clock that goes back never
 * lengthens a wait.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "app/auth/ratelimit.h"
#include "app/auth/secret.h"

static const ratelimit_policy_t P = { .free = 3, .lock_after = 10, .backoff_max = 30,
                                      .lock_s = 900, .window_s = 3600 };

static bool near(double a, double b)
{
    return fabs(a - b) < 1e-6;
}

static void test_backoff_and_lock(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_new(64);
    assert_non_null(rl);
    int64_t t = 1000000;
    double wait = -1;
    bool locked = true;
    assert_true(ratelimit_allowed(rl, "login:user:alice", &P, t, &wait, &locked));
    assert_true(near(wait, 0) && !locked);
    /* two failures: still free */
    ratelimit_fail(rl, "login:user:alice", &P, t);
    ratelimit_fail(rl, "login:user:alice", &P, t);
    assert_true(ratelimit_allowed(rl, "login:user:alice", &P, t, &wait, NULL));
    /* the third: 1 s, then 2 s, 4 s ... */
    double expect = 1;
    for (int f = 3; f < 10; f++) {
        assert_int_equal(ratelimit_fail(rl, "login:user:alice", &P, t), f);
        assert_false(ratelimit_allowed(rl, "login:user:alice", &P, t, &wait, &locked));
        assert_false(locked);
        assert_true(near(wait, fmin(expect, 30)));
        assert_false(ratelimit_allowed(rl, "login:user:alice", &P, t + (int64_t)(wait * 1000) - 1,
                                       NULL, NULL));
        t += (int64_t)(wait * 1000);
        assert_true(ratelimit_allowed(rl, "login:user:alice", &P, t, NULL, NULL));
        expect *= 2;
    }
    /* the tenth: locked for 15 minutes */
    assert_int_equal(ratelimit_fail(rl, "login:user:alice", &P, t), 10);
    assert_false(ratelimit_allowed(rl, "login:user:alice", &P, t + 899000, &wait, &locked));
    assert_true(locked);
    assert_true(near(wait, 1));
    assert_true(ratelimit_allowed(rl, "login:user:alice", &P, t + 900000, NULL, NULL));
    /* another key is not touched; a success clears */
    assert_true(ratelimit_allowed(rl, "login:user:bob", &P, t, NULL, NULL));
    ratelimit_clear(rl, "login:user:alice");
    assert_true(ratelimit_allowed(rl, "login:user:alice", &P, t, NULL, NULL));
    assert_int_equal(ratelimit_fail(rl, "login:user:alice", &P, t), 1);
    /* the window: failures an hour old are forgotten */
    for (int i = 0; i < 5; i++)
        ratelimit_fail(rl, "login:ip:10.0.0.7", &P, t);
    assert_false(ratelimit_allowed(rl, "login:ip:10.0.0.7", &P, t + 1000, NULL, NULL));
    assert_true(ratelimit_allowed(rl, "login:ip:10.0.0.7", &P, t + 3601000, NULL, NULL));
    assert_int_equal(ratelimit_fail(rl, "login:ip:10.0.0.7", &P, t + 3601000), 1);
    ratelimit_free(rl);
}

static void test_keys(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_new(16);
    int64_t t = 5000;
    /* keys past the limit are cut: these two are one key */
    char a[300], b[300];
    memset(a, 'k', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    memcpy(b, a, sizeof b);
    b[RATELIMIT_KEY_MAX + 5] = 'z';
    for (int i = 0; i < 4; i++)
        ratelimit_fail(rl, a, &P, t);
    assert_false(ratelimit_allowed(rl, b, &P, t, NULL, NULL));
    /* flooding: thousands of keys in a table of 16; the one in use most
     * recently survives the ones in its set that were seen before it */
    for (int i = 0; i < 5000; i++) {
        char k[32];
        snprintf(k, sizeof k, "flood:%d", i);
        ratelimit_fail(rl, k, &P, t + i);
    }
    ratelimit_fail(rl, "victim", &P, t + 6000);
    /* fewer new keys than a set has older entries: the newest stays */
    ratelimit_fail(rl, "late:1", &P, t + 6500);
    ratelimit_fail(rl, "late:2", &P, t + 6500);
    assert_int_equal(ratelimit_fail(rl, "victim", &P, t + 6600), 2);
    int present = 0;
    for (int i = 4990; i < 5000; i++) {
        char k[32];
        snprintf(k, sizeof k, "flood:%d", i);
        present += ratelimit_fail(rl, k, &P, t + 7000) == 2;
    }
    assert_true(present >= 1);   /* recent keys are still counted */
    ratelimit_free(rl);
}

static void test_bucket(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_new(64);
    int64_t t = 0;
    double wait;
    /* 6 a minute, burst 3: three at once, then one every 10 s */
    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take(rl, "chat:u1", 6, 3, t, &wait));
    assert_false(ratelimit_take(rl, "chat:u1", 6, 3, t, &wait));
    assert_true(near(wait, 10));
    assert_false(ratelimit_take(rl, "chat:u1", 6, 3, t + 9999, &wait));
    assert_true(ratelimit_take(rl, "chat:u1", 6, 3, t + 10000, &wait));
    assert_true(ratelimit_take(rl, "chat:u2", 6, 3, t + 10000, &wait));   /* its own */
    /* refilled, never above the burst */
    t += 3600000;
    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take(rl, "chat:u1", 6, 3, t, NULL));
    assert_false(ratelimit_take(rl, "chat:u1", 6, 3, t, NULL));
    /* no limit */
    for (int i = 0; i < 100; i++)
        assert_true(ratelimit_take(rl, "chat:u3", 0, 0, t, &wait));
    ratelimit_free(rl);
}

static int setup(void **state)
{
    (void)state;
    return secret_init();
}

/* Times earlier than one already seen (a clock set back, threads that
 * read the clock in another order) never make a wait longer than the
 * policy's. */
static void test_time_going_back(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_new(64);
    assert_non_null(rl);
    int64_t t = 10000000;
    for (int i = 0; i < P.lock_after; i++)
        ratelimit_fail(rl, "k", &P, t);
    double wait = 0;
    bool locked = false;
    assert_false(ratelimit_allowed(rl, "k", &P, t - 3600 * 1000, &wait, &locked));
    assert_true(locked);
    assert_true(near(wait, P.lock_s));
    ratelimit_fail(rl, "k", &P, t - 60 * 1000);   /* counted, the time kept */
    assert_false(ratelimit_allowed(rl, "k", &P, t + 100 * 1000, &wait, &locked));
    assert_true(near(wait, P.lock_s - 100));
    ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_and_lock),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_time_going_back),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
