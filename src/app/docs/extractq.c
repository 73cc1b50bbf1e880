/* extractq.c — see extractq.h.
 *
 * One mutex, one condition variable and a doubly linked list of waiters,
 * each a node on its waiter's stack. Any change to the line (a slot
 * released, a waiter served or gone) broadcasts; every waiter then works
 * out its place by walking the list (the line is as long as the
 * connections the server allows) and tells its caller when it moved. The
 * first waiter takes a slot when one is free. Waits are timed so that
 * should_stop() is asked every EXTRACTQ_POLL_MS.
 */
#include "app/docs/extractq.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef struct waiter {
    struct waiter *prev, *next;
} waiter_t;

struct extractq {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned slots, running, queued;
    waiter_t *head, *tail;
};

const char *extractq_strerror(int rc)
{
    switch (rc) {
    case EXTRACTQ_OK: return "success";
    case EXTRACTQ_ENOMEM: return "out of memory";
    case EXTRACTQ_EINVAL: return "invalid argument";
    case EXTRACTQ_ECANCELLED: return "gave up waiting";
    default: return "unknown error";
    }
}

int extractq_new(unsigned slots, extractq_t **out)
{
    *out = NULL;
    if (slots == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        slots = n > 0 ? (unsigned)n : 1;
    }
    if (slots > EXTRACTQ_SLOTS_MAX)
        return EXTRACTQ_EINVAL;
    extractq_t *q = calloc(1, sizeof *q);
    if (!q)
        return EXTRACTQ_ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_mutex_init(&q->lock, NULL) != 0) {
        pthread_condattr_destroy(&ca);
        free(q);
        return EXTRACTQ_ENOMEM;
    }
    if (pthread_cond_init(&q->changed, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_mutex_destroy(&q->lock);
        free(q);
        return EXTRACTQ_ENOMEM;
    }
    pthread_condattr_destroy(&ca);
    q->slots = slots;
    *out = q;
    return EXTRACTQ_OK;
}

void extractq_free(extractq_t *q)
{
    if (!q)
        return;
    pthread_cond_destroy(&q->changed);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

static void unlink_waiter(extractq_t *q, waiter_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    q->queued--;
}

/* 1-based place of w in line. Called with the lock held. */
static unsigned position_of(const extractq_t *q, const waiter_t *w)
{
    unsigned pos = 1;
    for (const waiter_t *p = q->head; p && p != w; p = p->next)
        pos++;
    return pos;
}

int extractq_acquire(extractq_t *q, const extractq_wait_t *wt)
{
    if (!q)
        return EXTRACTQ_EINVAL;
    extractq_wait_t none = { 0 };
    if (!wt)
        wt = &none;
    pthread_mutex_lock(&q->lock);
    if (!q->head && q->running < q->slots) {
        q->running++;
        pthread_mutex_unlock(&q->lock);
        return EXTRACTQ_OK;
    }
    waiter_t me = { .prev = q->tail, .next = NULL };
    if (q->tail)
        q->tail->next = &me;
    else
        q->head = &me;
    q->tail = &me;
    q->queued++;
    unsigned told = 0;
    int rc = EXTRACTQ_OK;
    for (;;) {
        if (q->head == &me && q->running < q->slots) {
            unlink_waiter(q, &me);
            q->running++;
            pthread_cond_broadcast(&q->changed);   /* the others moved up */
            break;
        }
        unsigned pos = position_of(q, &me);
        if (pos != told && wt->on_position) {
            told = pos;
            pthread_mutex_unlock(&q->lock);
            wt->on_position(wt->ud, pos);
            pthread_mutex_lock(&q->lock);
            continue;   /* the line may have moved meanwhile */
        }
        if (wt->should_stop) {
            pthread_mutex_unlock(&q->lock);
            bool stop = wt->should_stop(wt->ud);
            pthread_mutex_lock(&q->lock);
            if (stop) {
                unlink_waiter(q, &me);
                pthread_cond_broadcast(&q->changed);
                rc = EXTRACTQ_ECANCELLED;
                break;
            }
            if (q->head == &me && q->running < q->slots)
                continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long)EXTRACTQ_POLL_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        int e = pthread_cond_timedwait(&q->changed, &q->lock, &ts);
        (void)e;   /* woken, timed out or interrupted: look again */
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

void extractq_release(extractq_t *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    if (q->running > 0)
        q->running--;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
}

void extractq_counts(extractq_t *q, extractq_counts_t *out)
{
    *out = (extractq_counts_t){ 0 };
    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    out->slots = q->slots;
    out->running = q->running;
    out->queued = q->queued;
    pthread_mutex_unlock(&q->lock);
}
