/* router.h — which engine serves a document: rendezvous hashing over the
 * healthy engines, with a bound on load.
 *
 * Every key (a document part's cache key, a session id) ranks the engines
 * by a hash of (key, engine id): the highest is the key's home. Every app
 * replica ranks alike without talking to the others, since the ranking
 * depends on the key and the engines' ids only; an engine that goes away
 * moves only its own keys, each to the next engine of its ranking, and
 * they come back when it returns (Thaler and Ravishankar's highest random
 * weight; as SGLang's and llm-d's cache-aware routers place prefixes).
 *
 * Load: router_pick skips an engine whose requests in flight are at or
 * above load_factor times the mean (counted with the new one: Mirrokni,
 * Thorup and Zadimoghaddam's consistent hashing with bounded loads), for
 * the next of the key's ranking, so that one popular document cannot queue
 * every request behind one engine while the others idle. An engine with
 * fewer than min_load in flight (its sequence slots: it is not busy yet)
 * is never skipped, since sending a request elsewhere costs the cache it
 * would have found at home. load_factor <= 1 is taken as 1 (every engine
 * as loaded as the mean before any is skipped); 0 engines healthy is an
 * error, never a wait.
 *
 * The hash is XXH3 (libxxhash), seeded with 0: the same ranking on every
 * machine and every run, which the replicas rely on. Thread safe (one
 * mutex; every call is O(engines)).
 */
#ifndef KVCHAT_APP_LLM_ROUTER_H
#define KVCHAT_APP_LLM_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#define ROUTER_MAX 64        /* engines at most */
#define ROUTER_ID_MAX 256    /* an engine id (its URL), bytes with the NUL */

typedef struct router router_t;

/* A router over n engines (1..ROUTER_MAX) named by ids (distinct; each
 * shorter than ROUTER_ID_MAX), all healthy, none loaded; load_factor and
 * min_load as above. NULL on a bad argument or out of memory. */
router_t *router_new(size_t n, const char *const *ids, double load_factor, int min_load);
void router_free(router_t *r);

size_t router_count(const router_t *r);

/* key's ranking of every engine, healthy or not: order[0] is its home.
 * order has router_count() entries. */
void router_rank(const router_t *r, const char *key, size_t keylen, int *order);

/* The first healthy engine of key's ranking (the engine that should hold
 * its cache, whatever the load), or -1 when none is healthy. */
int router_home(router_t *r, const char *key, size_t keylen);

/* The engine to send key's next request to: the first healthy engine of
 * its ranking below the load bound (else the least loaded healthy one),
 * counted as in flight until router_done. -1 when none is healthy.
 * *rank (may be NULL) receives its place in the key's ranking among the
 * healthy engines (0 = home). */
int router_pick(router_t *r, const char *key, size_t keylen, int *rank);
void router_done(router_t *r, int engine);

/* Health, as the app's checks find it. */
void router_set_healthy(router_t *r, int engine, bool healthy);
bool router_healthy(router_t *r, int engine);
size_t router_healthy_count(router_t *r);

/* Requests in flight on an engine (router_pick minus router_done). */
int router_inflight(router_t *r, int engine);

#endif
