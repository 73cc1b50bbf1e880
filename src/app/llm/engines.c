/* engines.c — see engines.h. */
#include "app/llm/engines.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

typedef struct engines engines_t_;

typedef struct {
    char url[ROUTER_ID_MAX];
    llm_provider_t *llm;
    char error[256];          /* the last check's or call's failure; "" when none */
    engines_t_ *owner;        /* for the down hook */
    int index;
} engine_t;

struct engines {
    router_t *router;
    size_t n;
    engine_t e[ROUTER_MAX];
    pthread_mutex_t lock;     /* error texts */
    /* the checker */
    pthread_t thread;
    bool running;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    bool stop;
    unsigned check_ms;
};

/* The next entry of list (separated by commas and/or spaces) into out;
 * returns where the rest starts, or NULL at the end. */
static const char *next_entry(const char *p, char *out, size_t cap, bool *too_long)
{
    while (*p == ' ' || *p == '\t' || *p == ',')
        p++;
    if (!*p)
        return NULL;
    const char *e = p;
    while (*e && *e != ' ' && *e != '\t' && *e != ',')
        e++;
    size_t n = (size_t)(e - p);
    *too_long = n >= cap;
    if (!*too_long) {
        memcpy(out, p, n);
        out[n] = '\0';
    }
    return e;
}

static void *checker(void *arg);
static void on_down(void *ud, const char *why);

int engines_new(const engines_config_t *cfg, engines_t **out, char *err, size_t errcap)
{
    *out = NULL;
    engines_t *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    pthread_mutex_init(&g->lock, NULL);
    pthread_mutex_init(&g->stop_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->stop_cond, &ca);
    pthread_condattr_destroy(&ca);
    char url[ROUTER_ID_MAX];
    bool too_long = false;
    const char *ids[ROUTER_MAX];
    for (const char *p = cfg->list ? cfg->list : ""; (p = next_entry(p, url, sizeof url - 4,
                                                                      &too_long));) {
        if (too_long) {
            snprintf(err, errcap, "engine.endpoints: an address is longer than %d bytes",
                     ROUTER_ID_MAX - 5);
            goto fail;
        }
        /* "openai:URL": an OpenAI-compatible server with a prefix cache of
         * its own (vLLM, SGLang, llama-server), not a kvchat-engine */
        llm_kind_t kind = LLM_PROVIDER_LOCAL;
        if (strncmp(url, "openai:", 7) == 0) {
            kind = LLM_PROVIDER_OPENAI;
            memmove(url, url + 7, strlen(url + 7) + 1);
        }
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
            snprintf(err, errcap, "engine.endpoints: '%s' is not an http:// or https:// URL",
                     url);
            goto fail;
        }
        if (g->n == ROUTER_MAX) {
            snprintf(err, errcap, "engine.endpoints: more than %d engines", ROUTER_MAX);
            goto fail;
        }
        size_t len = strlen(url);
        while (len && url[len - 1] == '/')
            url[--len] = '\0';
        if (len < 3 || strcmp(url + len - 3, "/v1") != 0)
            strcat(url, "/v1");
        for (size_t i = 0; i < g->n; i++)
            if (strcmp(g->e[i].url, url) == 0) {
                snprintf(err, errcap, "engine.endpoints: '%s' is listed twice", url);
                goto fail;
            }
        engine_t *e = &g->e[g->n];
        snprintf(e->url, sizeof e->url, "%s", url);
        llm_config_t lc = llm_config_default(kind);
        lc.base_url = e->url;
        lc.api_key = cfg->api_key && *cfg->api_key ? cfg->api_key : NULL;
        if (cfg->first_byte_timeout_ms)
            lc.first_byte_timeout_ms = cfg->first_byte_timeout_ms;
        char why[256];
        if (llm_provider_new(&lc, &e->llm, why, sizeof why) != LLM_OK) {
            snprintf(err, errcap, "engine.endpoints: %s: %s", url, why);
            goto fail;
        }
        e->owner = g;
        e->index = (int)g->n;
        ids[g->n] = e->url;
        g->n++;
    }
    if (!g->n) {
        snprintf(err, errcap, "engine.endpoints lists no engine");
        goto fail;
    }
    g->router = router_new(g->n, ids, cfg->load_factor, cfg->min_load);
    if (!g->router) {
        snprintf(err, errcap, "out of memory");
        goto fail;
    }
    /* a call that finds an engine gone takes it out at once */
    for (size_t i = 0; i < g->n; i++)
        llm_provider_set_down_hook(g->e[i].llm, on_down, &g->e[i]);
    g->check_ms = cfg->check_ms;
    if (g->check_ms) {
        if (pthread_create(&g->thread, NULL, checker, g) != 0) {
            snprintf(err, errcap, "cannot start the engines' health checks");
            goto fail;
        }
        g->running = true;
    }
    *out = g;
    return 0;
fail:
    engines_free(g);
    return -1;
}

void engines_free(engines_t *g)
{
    if (!g)
        return;
    if (g->running) {
        pthread_mutex_lock(&g->stop_lock);
        g->stop = true;
        pthread_cond_signal(&g->stop_cond);
        pthread_mutex_unlock(&g->stop_lock);
        pthread_join(g->thread, NULL);
    }
    for (size_t i = 0; i < g->n; i++)
        llm_provider_free(g->e[i].llm);
    router_free(g->router);
    pthread_cond_destroy(&g->stop_cond);
    pthread_mutex_destroy(&g->stop_lock);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

size_t engines_count(const engines_t *g)
{
    return g->n;
}

llm_provider_t *engines_llm(engines_t *g, int i)
{
    return i >= 0 && (size_t)i < g->n ? g->e[i].llm : NULL;
}

const char *engines_url(const engines_t *g, int i)
{
    return i >= 0 && (size_t)i < g->n ? g->e[i].url : "";
}

int engines_pick(engines_t *g, const char *key, int *rank)
{
    return router_pick(g->router, key, strlen(key), rank);
}

void engines_done(engines_t *g, int i)
{
    router_done(g->router, i);
}

int engines_home(engines_t *g, const char *key)
{
    return router_home(g->router, key, strlen(key));
}

int engines_any(engines_t *g)
{
    for (size_t i = 0; i < g->n; i++)
        if (router_healthy(g->router, (int)i))
            return (int)i;
    return -1;
}

/* Health of engine i is now `up` (error: why not, or NULL); logs changes. */
static void set_health(engines_t *g, int i, bool up, const char *error)
{
    bool was = router_healthy(g->router, i);
    router_set_healthy(g->router, i, up);
    pthread_mutex_lock(&g->lock);
    snprintf(g->e[i].error, sizeof g->e[i].error, "%s", up ? "" : error ? error : "down");
    pthread_mutex_unlock(&g->lock);
    if (was && !up)
        log_warn("engine %s is down (%s): its documents go to their next engines",
                 g->e[i].url, error ? error : "no answer");
    else if (!was && up)
        log_info("engine %s answers again: its documents come back to it", g->e[i].url);
}

void engines_down(engines_t *g, int i, const char *why)
{
    if (i >= 0 && (size_t)i < g->n)
        set_health(g, i, false, why);
}

static void on_down(void *ud, const char *why)
{
    engine_t *e = ud;
    engines_down(e->owner, e->index, why);
}

bool engines_healthy(engines_t *g, int i)
{
    return router_healthy(g->router, i);
}

size_t engines_healthy_count(engines_t *g)
{
    return router_healthy_count(g->router);
}

size_t engines_check(engines_t *g)
{
    for (size_t i = 0; i < g->n; i++) {
        llm_model_info_t info;
        char why[256];
        int rc = llm_models(g->e[i].llm, &info, why, sizeof why);
        set_health(g, (int)i, rc == LLM_OK, rc == LLM_OK ? NULL : why);
    }
    return router_healthy_count(g->router);
}

static void *checker(void *arg)
{
    engines_t *g = arg;
    pthread_mutex_lock(&g->stop_lock);
    while (!g->stop) {
        pthread_mutex_unlock(&g->stop_lock);
        engines_check(g);
        pthread_mutex_lock(&g->stop_lock);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += g->check_ms / 1000;
        ts.tv_nsec += (long)(g->check_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!g->stop && pthread_cond_timedwait(&g->stop_cond, &g->stop_lock, &ts) == 0) {
        }
    }
    pthread_mutex_unlock(&g->stop_lock);
    return NULL;
}

json_t *engines_json(engines_t *g)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < g->n; i++) {
        pthread_mutex_lock(&g->lock);
        char error[256];
        snprintf(error, sizeof error, "%s", g->e[i].error);
        pthread_mutex_unlock(&g->lock);
        json_array_append_new(
            arr, json_pack("{s:s, s:b, s:i, s:s?}", "url", g->e[i].url, "healthy",
                           router_healthy(g->router, (int)i), "inflight",
                           router_inflight(g->router, (int)i), "error",
                           error[0] ? error : NULL));
    }
    return arr;
}
