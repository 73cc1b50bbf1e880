/* app.c — the shared program state's helpers: the active provider (kept
 * alive by reference counts while calls use it) and chat statistics. */
#include "app/app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- providers ---- */

app_provider_t *app_provider_acquire(app_t *a)
{
    pthread_mutex_lock(&a->lock);
    app_provider_t *p = a->provider;
    if (p)
        atomic_fetch_add(&p->refs, 1);
    pthread_mutex_unlock(&a->lock);
    return p;
}

app_provider_t *app_local_acquire(app_t *a)
{
    pthread_mutex_lock(&a->lock);
    app_provider_t *p = a->local;
    if (p)
        atomic_fetch_add(&p->refs, 1);
    pthread_mutex_unlock(&a->lock);
    return p;
}

void app_provider_release(app_provider_t *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1) {
        llm_provider_free(p->llm);
        free(p);
    }
}

void app_provider_set(app_t *a, app_provider_t *p)
{
    pthread_mutex_lock(&a->lock);
    app_provider_t *old = a->provider;
    a->provider = p;
    pthread_mutex_unlock(&a->lock);
    app_provider_release(old);
}

app_provider_t *app_provider_new(app_t *a, const char *kind, const char *base_url,
                                 const char *api_key, const char *model, const char *serving_name,
                                 bool local, int context_tokens, char *err, size_t errcap)
{
    llm_kind_t k;
    if (llm_kind_parse(kind, &k) != LLM_OK) {
        snprintf(err, errcap, "unknown provider '%s'", kind);
        return NULL;
    }
    llm_config_t lc = llm_config_default(k);
    lc.base_url = base_url && *base_url ? base_url : NULL;
    lc.api_key = api_key && *api_key ? api_key : NULL;
    lc.model = model && *model ? model : NULL;
    lc.first_byte_timeout_ms = (unsigned)a->cfg.first_byte_timeout_s * 1000u;
    lc.context_tokens = context_tokens > 0 ? context_tokens : 0;
    app_provider_t *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    atomic_init(&p->refs, 1);
    p->local = local;
    snprintf(p->serving_name, sizeof p->serving_name, "%s", serving_name);
    if (llm_provider_new(&lc, &p->llm, err, errcap) != LLM_OK) {
        free(p);
        return NULL;
    }
    return p;
}

void app_record_chat(app_t *a, double ttft_ms, int64_t prompt_tokens, int64_t cached_tokens)
{
    static const double bounds[12] = { 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };
    pthread_mutex_lock(&a->lock);
    if (ttft_ms >= 0) {
        double s = ttft_ms / 1000.0;
        for (int i = 0; i < 12; i++)
            if (s <= bounds[i])
                a->stats.ttft_buckets[i]++;
        a->stats.ttft_sum += s;
        a->stats.ttft_count++;
    }
    if (prompt_tokens > 0)
        a->stats.prompt_tokens += (uint64_t)prompt_tokens;
    if (cached_tokens > 0)
        a->stats.cached_prompt_tokens += (uint64_t)cached_tokens;
    pthread_mutex_unlock(&a->lock);
}

