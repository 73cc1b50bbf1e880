/* ratelimit.c — see ratelimit.h. */
#include "app/auth/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "app/auth/secret.h"

typedef struct {
    char key[RATELIMIT_KEY_MAX + 1];   /* "" = free */
    int64_t seen_ms;                   /* last use: the set's eviction order */
    /* failures */
    int fails;
    int64_t last_fail_ms;
    /* bucket */
    double tokens;
    int64_t filled_ms;
} entry_t;

struct ratelimit {
    pthread_mutex_t lock;
    size_t n_sets;
    entry_t *e;   /* n_sets * RATELIMIT_WAYS */
};

ratelimit_t *ratelimit_new(size_t entries)
{
    ratelimit_t *rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    rl->n_sets = entries / RATELIMIT_WAYS + 1;
    rl->e = calloc(rl->n_sets * RATELIMIT_WAYS, sizeof *rl->e);
    if (!rl->e) {
        free(rl);
        return NULL;
    }
    pthread_mutex_init(&rl->lock, NULL);
    return rl;
}

void ratelimit_free(ratelimit_t *rl)
{
    if (!rl)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl->e);
    free(rl);
}

/* key's entry (cut to RATELIMIT_KEY_MAX), or NULL; with create, a new one
 * in place of the set's least recently seen. Under the lock. */
static entry_t *find(ratelimit_t *rl, const char *key, bool create, int64_t now)
{
    char k[RATELIMIT_KEY_MAX + 1];
    size_t len = strnlen(key, RATELIMIT_KEY_MAX);
    memcpy(k, key, len);
    k[len] = '\0';
    entry_t *set = &rl->e[(secret_shorthash(k, len) % rl->n_sets) * RATELIMIT_WAYS];
    entry_t *oldest = &set[0];
    for (int i = 0; i < RATELIMIT_WAYS; i++) {
        if (set[i].key[0] && strcmp(set[i].key, k) == 0) {
            set[i].seen_ms = now;
            return &set[i];
        }
        if (!set[i].key[0] || (oldest->key[0] && set[i].seen_ms < oldest->seen_ms))
            oldest = &set[i];
    }
    if (!create)
        return NULL;
    memset(oldest, 0, sizeof *oldest);
    memcpy(oldest->key, k, len + 1);
    oldest->seen_ms = now;
    oldest->tokens = -1;   /* a full bucket, filled at first use */
    return oldest;
}

/* The seconds key must wait after its failures, 0 when none; *locked set
 * when it is the lock. */
static double wait_for(const entry_t *e, const ratelimit_policy_t *p, int64_t now,
                       bool *locked)
{
    *locked = false;
    if (!e || e->fails <= 0 || (double)(now - e->last_fail_ms) / 1000.0 > p->window_s)
        return 0;
    /* a clock that went back counts as no time passed */
    double since = fmax(0.0, (double)(now - e->last_fail_ms) / 1000.0);
    double need = 0;
    if (e->fails >= p->lock_after) {
        *locked = true;
        need = p->lock_s;
    } else if (e->fails >= p->free) {
        need = fmin(ldexp(1.0, e->fails - p->free), p->backoff_max);
    }
    return need > since ? need - since : 0;
}

bool ratelimit_allowed(ratelimit_t *rl, const char *key, const ratelimit_policy_t *p,
                       int64_t now_ms, double *retry_after, bool *locked)
{
    pthread_mutex_lock(&rl->lock);
    bool lk;
    double w = wait_for(find(rl, key, false, now_ms), p, now_ms, &lk);
    pthread_mutex_unlock(&rl->lock);
    if (retry_after)
        *retry_after = w;
    if (locked)
        *locked = w > 0 && lk;
    return w <= 0;
}

int ratelimit_fail(ratelimit_t *rl, const char *key, const ratelimit_policy_t *p,
                   int64_t now_ms)
{
    pthread_mutex_lock(&rl->lock);
    entry_t *e = find(rl, key, true, now_ms);
    if (e->fails > 0 && (double)(now_ms - e->last_fail_ms) / 1000.0 > p->window_s)
        e->fails = 0;   /* forgotten: a new run */
    e->fails++;
    if (now_ms > e->last_fail_ms)
        e->last_fail_ms = now_ms;
    int n = e->fails;
    pthread_mutex_unlock(&rl->lock);
    return n;
}

void ratelimit_clear(ratelimit_t *rl, const char *key)
{
    pthread_mutex_lock(&rl->lock);
    entry_t *e = find(rl, key, false, 0);
    if (e)
        memset(e, 0, sizeof *e);
    pthread_mutex_unlock(&rl->lock);
}

bool ratelimit_take(ratelimit_t *rl, const char *key, double per_minute, double burst,
                    int64_t now_ms, double *retry_after)
{
    if (retry_after)
        *retry_after = 0;
    if (per_minute <= 0)
        return true;
    if (burst < 1)
        burst = 1;
    pthread_mutex_lock(&rl->lock);
    entry_t *e = find(rl, key, true, now_ms);
    if (e->tokens < 0) {
        e->tokens = burst;
        e->filled_ms = now_ms;
    }
    double rate = per_minute / 60000.0;   /* tokens per ms */
    if (now_ms > e->filled_ms) {
        e->tokens = fmin(burst, e->tokens + (double)(now_ms - e->filled_ms) * rate);
        e->filled_ms = now_ms;
    }
    bool ok = e->tokens >= 1.0;
    if (ok)
        e->tokens -= 1.0;
    else if (retry_after)
        *retry_after = (1.0 - e->tokens) / rate / 1000.0;
    pthread_mutex_unlock(&rl->lock);
    return ok;
}
