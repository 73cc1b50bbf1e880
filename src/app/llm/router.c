/* router.c — see router.h. */
#include "app/llm/router.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct {
    char id[ROUTER_ID_MAX];
    uint64_t id_hash;   /* XXH3 of the id: the seed of its scores */
    bool healthy;
    int inflight;
} engine_t;

struct router {
    pthread_mutex_t lock;
    size_t n;
    double load_factor;
    int min_load;
    engine_t e[ROUTER_MAX];
};

router_t *router_new(size_t n, const char *const *ids, double load_factor, int min_load)
{
    if (n == 0 || n > ROUTER_MAX || !ids)
        return NULL;
    router_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t len = ids[i] ? strlen(ids[i]) : ROUTER_ID_MAX;
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = strcmp(r->e[j].id, ids[i]) == 0;
        if (len == 0 || len >= ROUTER_ID_MAX || dup) {
            free(r);
            return NULL;
        }
        memcpy(r->e[i].id, ids[i], len + 1);
        r->e[i].id_hash = XXH3_64bits(ids[i], len);
        r->e[i].healthy = true;
    }
    r->n = n;
    r->load_factor = load_factor > 1.0 ? load_factor : 1.0;
    r->min_load = min_load > 0 ? min_load : 0;
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void router_free(router_t *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r);
}

size_t router_count(const router_t *r)
{
    return r->n;
}

/* Engine i's score for key: a hash of both (the key's, seeded by the
 * engine's). */
static uint64_t score(const engine_t *e, const char *key, size_t keylen)
{
    return XXH3_64bits_withSeed(key, keylen, e->id_hash);
}

void router_rank(const router_t *r, const char *key, size_t keylen, int *order)
{
    uint64_t s[ROUTER_MAX];
    for (size_t i = 0; i < r->n; i++) {
        s[i] = score(&r->e[i], key, keylen);
        order[i] = (int)i;
    }
    /* insertion sort, highest first; ties (never in practice) by index */
    for (size_t i = 1; i < r->n; i++)
        for (size_t j = i; j > 0 && s[order[j - 1]] < s[order[j]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
}

int router_home(router_t *r, const char *key, size_t keylen)
{
    int order[ROUTER_MAX];
    router_rank(r, key, keylen, order);
    pthread_mutex_lock(&r->lock);
    int home = -1;
    for (size_t i = 0; i < r->n && home < 0; i++)
        if (r->e[order[i]].healthy)
            home = order[i];
    pthread_mutex_unlock(&r->lock);
    return home;
}

int router_pick(router_t *r, const char *key, size_t keylen, int *rank)
{
    int order[ROUTER_MAX];
    router_rank(r, key, keylen, order);
    pthread_mutex_lock(&r->lock);
    int healthy = 0, total = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->e[i].healthy) {
            healthy++;
            total += r->e[i].inflight;
        }
    int pick = -1, place = -1, least = -1, least_place = -1;
    if (healthy > 0) {
        /* the bound, with this request counted */
        double bound = ceil(r->load_factor * (double)(total + 1) / healthy);
        if (bound < r->min_load)
            bound = r->min_load;
        for (size_t i = 0, h = 0; i < r->n && pick < 0; i++) {
            const engine_t *e = &r->e[order[i]];
            if (!e->healthy)
                continue;
            if (least < 0 || e->inflight < r->e[least].inflight) {
                least = order[i];
                least_place = (int)h;
            }
            if ((double)e->inflight + 1 <= bound) {
                pick = order[i];
                place = (int)h;
            }
            h++;
        }
        if (pick < 0) {   /* cannot happen with load_factor >= 1; kept safe */
            pick = least;
            place = least_place;
        }
        r->e[pick].inflight++;
    }
    pthread_mutex_unlock(&r->lock);
    if (rank)
        *rank = place;
    return pick;
}

void router_done(router_t *r, int engine)
{
    if (engine < 0 || (size_t)engine >= r->n)
        return;
    pthread_mutex_lock(&r->lock);
    if (r->e[engine].inflight > 0)
        r->e[engine].inflight--;
    pthread_mutex_unlock(&r->lock);
}

void router_set_healthy(router_t *r, int engine, bool healthy)
{
    if (engine < 0 || (size_t)engine >= r->n)
        return;
    pthread_mutex_lock(&r->lock);
    r->e[engine].healthy = healthy;
    pthread_mutex_unlock(&r->lock);
}

bool router_healthy(router_t *r, int engine)
{
    if (engine < 0 || (size_t)engine >= r->n)
        return false;
    pthread_mutex_lock(&r->lock);
    bool h = r->e[engine].healthy;
    pthread_mutex_unlock(&r->lock);
    return h;
}

size_t router_healthy_count(router_t *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        n += r->e[i].healthy;
    pthread_mutex_unlock(&r->lock);
    return n;
}

int router_inflight(router_t *r, int engine)
{
    if (engine < 0 || (size_t)engine >= r->n)
        return 0;
    pthread_mutex_lock(&r->lock);
    int n = r->e[engine].inflight;
    pthread_mutex_unlock(&r->lock);
    return n;
}
