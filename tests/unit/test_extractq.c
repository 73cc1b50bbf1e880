/* test_extractq.c — the extraction queue: slots, first come first served,
 * places in line as they change, giving up a place, counts.
 *
 * Waiters are real threads. Each holds its slot until the test lets it go,
 * so every step of the line is observed before the next one happens; waits
 * for a condition are bounded (a broken queue fails, it does not hang).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/docs/extractq.h"

#define MAX_TOLD 8

typedef struct {
    extractq_t *q;
    pthread_t th;
    atomic_uint told[MAX_TOLD];   /* places in line, in the order told */
    atomic_int n_told;
    atomic_bool stop;             /* should_stop answers this */
    atomic_bool let_go;           /* release the slot */
    atomic_int rc;                /* extractq_acquire's result, -100 before */
    atomic_int served;            /* order in which it got its slot, 0 before */
} waiter_t;

static atomic_int g_served;

static void on_position(void *ud, unsigned pos)
{
    waiter_t *w = ud;
    int i = atomic_load(&w->n_told);
    if (i < MAX_TOLD)
        atomic_store(&w->told[i], pos);
    atomic_store(&w->n_told, i + 1);
}

static bool should_stop(void *ud)
{
    waiter_t *w = ud;
    return atomic_load(&w->stop);
}

static void *wait_thread(void *arg)
{
    waiter_t *w = arg;
    extractq_wait_t wt = { on_position, should_stop, w };
    int rc = extractq_acquire(w->q, &wt);
    if (rc == EXTRACTQ_OK) {
        atomic_store(&w->served, atomic_fetch_add(&g_served, 1) + 1);
        atomic_store(&w->rc, rc);
        while (!atomic_load(&w->let_go))
            usleep(1000);
        extractq_release(w->q);
    } else {
        atomic_store(&w->rc, rc);
    }
    return NULL;
}

static void start_waiter(waiter_t *w, extractq_t *q)
{
    memset(w, 0, sizeof *w);
    w->q = q;
    atomic_store(&w->rc, -100);
    assert_int_equal(pthread_create(&w->th, NULL, wait_thread, w), 0);
}

/* Wait up to 5 s for *v to reach want. */
static void wait_int(atomic_int *v, int want)
{
    for (int i = 0; i < 5000 && atomic_load(v) != want; i++)
        usleep(1000);
    assert_int_equal(atomic_load(v), want);
}

static void wait_queued(extractq_t *q, unsigned want)
{
    extractq_counts_t c;
    for (int i = 0; i < 5000; i++) {
        extractq_counts(q, &c);
        if (c.queued == want)
            return;
        usleep(1000);
    }
    fail_msg("queued %u, expected %u", c.queued, want);
}

static void assert_told(waiter_t *w, const unsigned *want, int n)
{
    assert_int_equal(atomic_load(&w->n_told), n);
    for (int i = 0; i < n; i++)
        assert_int_equal(atomic_load(&w->told[i]), want[i]);
}

static void assert_counts(extractq_t *q, unsigned running, unsigned queued)
{
    extractq_counts_t c;
    extractq_counts(q, &c);
    assert_int_equal(c.running, running);
    assert_int_equal(c.queued, queued);
}

static void test_slots(void **state)
{
    (void)state;
    extractq_t *q;
    assert_int_equal(extractq_new(0, &q), EXTRACTQ_OK);
    extractq_counts_t c;
    extractq_counts(q, &c);
    assert_int_equal(c.slots, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
    extractq_free(q);
    assert_int_equal(extractq_new(EXTRACTQ_SLOTS_MAX + 1, &q), EXTRACTQ_EINVAL);
    assert_null(q);
    extractq_free(NULL);
    assert_int_equal(extractq_acquire(NULL, NULL), EXTRACTQ_EINVAL);
}

/* Free slots are taken at once, without being told a place. */
static void test_free_slots(void **state)
{
    (void)state;
    extractq_t *q;
    assert_int_equal(extractq_new(2, &q), EXTRACTQ_OK);
    waiter_t w;
    memset(&w, 0, sizeof w);
    extractq_wait_t wt = { on_position, should_stop, &w };
    assert_int_equal(extractq_acquire(q, &wt), EXTRACTQ_OK);
    assert_int_equal(extractq_acquire(q, &wt), EXTRACTQ_OK);
    assert_int_equal(atomic_load(&w.n_told), 0);
    assert_counts(q, 2, 0);
    extractq_release(q);
    extractq_release(q);
    assert_counts(q, 0, 0);
    extractq_free(q);
}

/* One slot, three waiters: served in the order they came, each told its
 * place at the start and every time the line moved. */
static void test_first_come_first_served(void **state)
{
    (void)state;
    extractq_t *q;
    assert_int_equal(extractq_new(1, &q), EXTRACTQ_OK);
    atomic_store(&g_served, 0);
    assert_int_equal(extractq_acquire(q, NULL), EXTRACTQ_OK);
    waiter_t w[3];
    for (int i = 0; i < 3; i++) {
        start_waiter(&w[i], q);
        wait_queued(q, (unsigned)i + 1);
        wait_int(&w[i].n_told, 1);
    }
    assert_counts(q, 1, 3);
    extractq_release(q);
    wait_int(&w[0].served, 1);
    wait_int(&w[1].n_told, 2);
    wait_int(&w[2].n_told, 2);
    assert_counts(q, 1, 2);
    atomic_store(&w[0].let_go, true);
    wait_int(&w[1].served, 2);
    wait_int(&w[2].n_told, 3);
    assert_counts(q, 1, 1);
    atomic_store(&w[1].let_go, true);
    wait_int(&w[2].served, 3);
    atomic_store(&w[2].let_go, true);
    for (int i = 0; i < 3; i++) {
        pthread_join(w[i].th, NULL);
        assert_int_equal(atomic_load(&w[i].rc), EXTRACTQ_OK);
    }
    static const unsigned t0[] = { 1 }, t1[] = { 2, 1 }, t2[] = { 3, 2, 1 };
    assert_told(&w[0], t0, 1);
    assert_told(&w[1], t1, 2);
    assert_told(&w[2], t2, 3);
    assert_counts(q, 0, 0);
    extractq_free(q);
}

/* A waiter whose client left gives up its place: the one behind moves up
 * and is served next. */
static void test_give_up(void **state)
{
    (void)state;
    extractq_t *q;
    assert_int_equal(extractq_new(1, &q), EXTRACTQ_OK);
    atomic_store(&g_served, 0);
    assert_int_equal(extractq_acquire(q, NULL), EXTRACTQ_OK);
    waiter_t w[2];
    for (int i = 0; i < 2; i++) {
        start_waiter(&w[i], q);
        wait_queued(q, (unsigned)i + 1);
    }
    atomic_store(&w[0].stop, true);
    wait_int(&w[0].rc, EXTRACTQ_ECANCELLED);
    wait_int(&w[1].n_told, 2);
    assert_counts(q, 1, 1);
    extractq_release(q);
    wait_int(&w[1].served, 1);
    atomic_store(&w[1].let_go, true);
    for (int i = 0; i < 2; i++)
        pthread_join(w[i].th, NULL);
    assert_int_equal(atomic_load(&w[0].served), 0);
    static const unsigned t1[] = { 2, 1 };
    assert_told(&w[1], t1, 2);
    assert_counts(q, 0, 0);
    extractq_free(q);
}

/* Two slots, six waiters: never more than two hold a slot. */
static atomic_int g_holding, g_most;

static void *busy_thread(void *arg)
{
    extractq_t *q = arg;
    for (int k = 0; k < 20; k++) {
        assert_int_equal(extractq_acquire(q, NULL), EXTRACTQ_OK);
        int now = atomic_fetch_add(&g_holding, 1) + 1;
        int most = atomic_load(&g_most);
        while (now > most && !atomic_compare_exchange_weak(&g_most, &most, now))
            ;
        usleep(200);
        atomic_fetch_sub(&g_holding, 1);
        extractq_release(q);
    }
    return NULL;
}

static void test_bound_holds(void **state)
{
    (void)state;
    extractq_t *q;
    assert_int_equal(extractq_new(2, &q), EXTRACTQ_OK);
    pthread_t th[6];
    for (int i = 0; i < 6; i++)
        assert_int_equal(pthread_create(&th[i], NULL, busy_thread, q), 0);
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&g_most), 2);
    assert_counts(q, 0, 0);
    extractq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_free_slots),
        cmocka_unit_test(test_first_come_first_served),
        cmocka_unit_test(test_give_up),
        cmocka_unit_test(test_bound_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
