/* extractq.h — how many extractions run at once, and the line for the rest.
 *
 * kvchat-extract is CPU-bound for as long as its limits allow: four hostile
 * or merely large uploads at once used to keep every core busy, and chat
 * (the engine) and other uploads then crawled or timed out. An upload holds
 * one of `slots` slots while its file is extracted and its text stored;
 * the others wait in line, first come first served, and learn their place
 * as it changes (1 = next), so a client can be told "waiting for
 * extraction (position 2)". A waiter whose client leaves gives up its
 * place; nobody behind it waits for it.
 *
 * OCR (text recognised from scanned pages and images) runs inside
 * kvchat-extract, so inside the slot of its upload: a long OCR holds one
 * slot (one core: Tesseract runs on one thread) for as long as it runs.
 *
 * Rules:
 *  1. A slot is taken at once only if one is free and nobody is waiting;
 *     otherwise the caller joins the end of the line.
 *  2. The first in line takes the next slot released; a place given up
 *     moves everyone behind it forward.
 *  3. Every extractq_acquire() that returned EXTRACTQ_OK is matched by one
 *     extractq_release().
 *  4. When extractq_acquire() returns an error, no slot is held and the
 *     caller is no longer in line.
 *
 * Thread safety: every function may be called from any thread at once,
 * except extractq_free().
 */
#ifndef KVCHAT_APP_EXTRACTQ_H
#define KVCHAT_APP_EXTRACTQ_H

#include <stdbool.h>

enum {
    EXTRACTQ_OK = 0,
    EXTRACTQ_ENOMEM = -1,
    EXTRACTQ_EINVAL = -2,
    EXTRACTQ_ECANCELLED = -3,   /* the waiter gave up its place (should_stop) */
};

/* Static English description of an EXTRACTQ_* code. */
const char *extractq_strerror(int rc);

typedef struct extractq extractq_t;

/* Most slots a queue may have. */
#define EXTRACTQ_SLOTS_MAX 1024

/* How often a waiter asks should_stop(), in milliseconds. */
#define EXTRACTQ_POLL_MS 200

/* A queue with `slots` slots (0 = the number of online processors; at most
 * EXTRACTQ_SLOTS_MAX). Returns EXTRACTQ_OK and *out (free with
 * extractq_free); EXTRACTQ_EINVAL or EXTRACTQ_ENOMEM with *out = NULL. */
int extractq_new(unsigned slots, extractq_t **out);

/* Free the queue. No slot may be held and nobody may wait. Accepts NULL. */
void extractq_free(extractq_t *q);

/* What a waiter is told and asked while in line. Every member may be
 * NULL. Callbacks run on the waiting thread, without the queue's lock held,
 * and must not call extractq functions on the same queue. */
typedef struct {
    /* The caller's place in line (1 = next), at the start of the wait and
     * whenever it changes. Not called when a slot is free at once. */
    void (*on_position)(void *ud, unsigned position);
    /* Asked every EXTRACTQ_POLL_MS while waiting: true gives up the place. */
    bool (*should_stop)(void *ud);
    void *ud;
} extractq_wait_t;

/* Take a slot, waiting in line if none is free (w may be NULL: wait without
 * being told or asked). Returns EXTRACTQ_OK with a slot held (release it
 * with extractq_release); EXTRACTQ_ECANCELLED when should_stop() said so
 * (no slot held, out of the line); EXTRACTQ_EINVAL for q NULL. */
int extractq_acquire(extractq_t *q, const extractq_wait_t *w);

/* Give back a slot taken by extractq_acquire(); the first in line gets it. */
void extractq_release(extractq_t *q);

typedef struct {
    unsigned slots;     /* the limit */
    unsigned running;   /* slots held */
    unsigned queued;    /* callers waiting in line */
} extractq_counts_t;

/* The counts now (for /metrics). */
void extractq_counts(extractq_t *q, extractq_counts_t *out);

#endif
