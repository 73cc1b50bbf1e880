/* ratelimit.h — how often a client may try: failed logins and request
 * rates, keyed by any string ("login:user:alice", "login:ip:10.0.0.7",
 * "chat:<user id>").
 *
 * Memory is fixed at creation: a table of RATELIMIT_WAYS-way sets placed by
 * a keyed hash (secret_shorthash: a client cannot pick keys that collide),
 * where a new key takes the place of its set's least recently seen entry.
 * A client that floods the table with keys only pushes out stale entries
 * (and gains nothing: a pushed-out key starts from nothing, while an
 * attacker's own keys stay the ones counted). Keys longer than
 * RATELIMIT_KEY_MAX bytes are cut.
 *
 * Failures (logins): every failure counts; from the `free` failures on, the
 * next attempt must wait a backoff that doubles with each failure (1 s, 2 s,
 * 4 s, ... up to backoff_max); at `lock_after` failures the key is locked
 * for `lock_s` seconds. Failures older than `window_s` are forgotten, and a
 * success clears the key (ratelimit_clear).
 *
 * Rates (chats, uploads): a token bucket of `burst` tokens refilled at
 * `per_minute` per minute.
 *
 * Thread safe (one mutex; every call is O(RATELIMIT_WAYS)). Times are
 * passed in (ms, a monotonic clock), so tests need no sleeping; a time
 * earlier than one already seen counts as no time passed (never a longer
 * wait than the policy's).
 */
#ifndef KVCHAT_APP_AUTH_RATELIMIT_H
#define KVCHAT_APP_AUTH_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_KEY_MAX 96
#define RATELIMIT_WAYS 4

typedef struct ratelimit ratelimit_t;

typedef struct {
    int free;            /* failures before any backoff (e.g. 3) */
    int lock_after;      /* failures that lock the key (e.g. 10) */
    double backoff_max;  /* seconds (e.g. 30) */
    double lock_s;       /* seconds a locked key waits (e.g. 900) */
    double window_s;     /* failures older than this are forgotten (e.g. 3600) */
} ratelimit_policy_t;

/* A table for about `entries` keys (rounded up to whole sets). NULL when
 * out of memory. */
ratelimit_t *ratelimit_new(size_t entries);
void ratelimit_free(ratelimit_t *rl);

/* Whether `key` may try now under policy p: true, or false with the
 * seconds to wait in *retry_after (may be NULL) and *locked (may be NULL)
 * set when it is a lock rather than a backoff. */
bool ratelimit_allowed(ratelimit_t *rl, const char *key, const ratelimit_policy_t *p,
                       int64_t now_ms, double *retry_after, bool *locked);

/* Count a failure of `key`. Returns the failures now counted. */
int ratelimit_fail(ratelimit_t *rl, const char *key, const ratelimit_policy_t *p,
                   int64_t now_ms);

/* Forget `key` (a successful login). */
void ratelimit_clear(ratelimit_t *rl, const char *key);

/* Take one token from `key`'s bucket (burst tokens, refilled at per_minute
 * a minute; per_minute <= 0 means no limit). true when taken; else false
 * with the seconds until one is there in *retry_after (may be NULL). */
bool ratelimit_take(ratelimit_t *rl, const char *key, double per_minute, double burst,
                    int64_t now_ms, double *retry_after);

#endif
