/* app.c — the shared program state's helpers: the active provider (kept
 * alive by reference counts while calls use it) and chat statistics. */
#include "app/app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "app/llm/engines.h"

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
        if (p->engines)
            engines_free(p->engines);   /* p->llm is one of its providers */
        else
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

/* ---- several engines ---- */

bool app_local_running(app_t *a, supervisor_state_t *state)
{
    *state = SUPERVISOR_STOPPED;
    app_provider_t *p = app_local_acquire(a);
    bool several = p && p->engines;
    if (several)
        *state = engines_healthy_count(p->engines) ? SUPERVISOR_RUNNING : SUPERVISOR_CRASHED;
    app_provider_release(p);
    supervisor_status_t st;
    if (!several && a->sv && supervisor_status(a->sv, &st) == SUPERVISOR_OK)
        *state = st.state;
    return *state == SUPERVISOR_RUNNING;
}

app_provider_t *app_provider_engines(struct engines *g, const char *serving_name)
{
    app_provider_t *p = calloc(1, sizeof *p);
    if (!p) {
        engines_free(g);
        return NULL;
    }
    atomic_init(&p->refs, 1);
    p->local = true;
    p->engines = g;
    p->llm = engines_llm(g, 0);
    snprintf(p->serving_name, sizeof p->serving_name, "%s", serving_name);
    return p;
}

void app_route_key(const char *salt, const char *text, size_t len, char out[APP_ROUTE_KEY_MAX])
{
    XXH3_state_t *st = XXH3_createState();
    uint64_t h = 0;
    if (st && XXH3_64bits_reset(st) == XXH_OK) {
        XXH3_64bits_update(st, salt ? salt : "", salt ? strlen(salt) + 1 : 1);
        XXH3_64bits_update(st, text, len);
        h = XXH3_64bits_digest(st);
    }
    XXH3_freeState(st);
    snprintf(out, APP_ROUTE_KEY_MAX, "p%016llx", (unsigned long long)h);
}

llm_provider_t *app_llm(app_provider_t *p)
{
    if (!p->engines)
        return p->llm;
    int i = engines_any(p->engines);
    return i >= 0 ? engines_llm(p->engines, i) : p->llm;
}

bool app_llm_healthy(app_provider_t *p)
{
    return !p->engines || engines_any(p->engines) >= 0;
}

llm_provider_t *app_engine(app_provider_t *p, const char *key, bool home, int *slot)
{
    *slot = -1;
    if (!p->engines)
        return p->llm;
    int i = home ? engines_home(p->engines, key) : engines_pick(p->engines, key, NULL);
    if (i < 0)
        return NULL;
    /* a home is not counted in flight: encode it apart for app_engine_done */
    *slot = home ? -2 - i : i;
    return engines_llm(p->engines, i);
}

void app_engine_done(app_provider_t *p, int slot)
{
    if (p->engines && slot >= 0)
        engines_done(p->engines, slot);
}

bool app_engine_failed(app_provider_t *p, int slot, int rc, const char *why)
{
    if (!p->engines || slot == -1 || (rc != LLM_EDOWN && rc != LLM_ECONN))
        return false;
    engines_down(p->engines, slot >= 0 ? slot : -2 - slot, why);
    return engines_healthy_count(p->engines) > 0;
}

/* An OpenAI-compatible server keeps no entries kvchat can name: a
 * one-token answer to the prefix (and a one-character question) leaves
 * it in the server's own prefix cache, as caching does on an engine. */
static int warm_prefix(llm_provider_t *lp, const llm_message_t *msgs, size_t n,
                       const char *salt, const llm_callbacks_t *cb, void *ud,
                       llm_prefill_result_t *res)
{
    memset(res, 0, sizeof *res);
    llm_message_t m[8];
    if (n + 1 > sizeof m / sizeof *m)
        n = sizeof m / sizeof *m - 1;
    memcpy(m, msgs, n * sizeof *m);
    m[n] = (llm_message_t){ LLM_ROLE_USER, "." };
    llm_params_t params = llm_params_default();
    params.max_tokens = 1;
    params.temperature = 0;
    params.cache_salt = salt;
    llm_callbacks_t c = { .should_stop = cb ? cb->should_stop : NULL };
    llm_result_t r;
    int rc = llm_chat(lp, m, n + 1, &params, &c, ud, &r);
    res->rc = rc;
    res->upstream_status = r.upstream_status;
    if (rc == LLM_OK) {
        res->n_tokens = r.usage.prompt_tokens > 0 ? (int)r.usage.prompt_tokens : 0;
        res->bytes = -1;
        snprintf(res->tier, sizeof res->tier, "remote");
        res->prefill_ms = r.total_ms;
        res->cached = r.usage.cached_tokens > 0;
    } else {
        snprintf(res->error, sizeof res->error, "%s", r.error);
    }
    llm_result_cleanup(&r);
    return rc;
}

int app_prefill(app_provider_t *p, const llm_message_t *msgs, size_t n, unsigned flags,
                const char *salt, const llm_callbacks_t *cb, void *ud, llm_prefill_result_t *res)
{
    char key[APP_ROUTE_KEY_MAX];
    app_route_key(salt, msgs[0].content, strlen(msgs[0].content), key);
    for (;;) {
        int slot;
        llm_provider_t *lp = app_engine(p, key, true, &slot);
        if (!lp) {
            memset(res, 0, sizeof *res);
            snprintf(res->error, sizeof res->error, "No model server is answering");
            return LLM_EDOWN;
        }
        int rc = llm_provider_kind(lp) == LLM_PROVIDER_OPENAI
                     ? warm_prefix(lp, msgs, n, salt, cb, ud, res)
                     : llm_prefill_salted(lp, msgs, n, flags, salt, cb, ud, res);
        if (rc == LLM_OK || !app_engine_failed(p, slot, rc, res->error))
            return rc;
    }
}

int app_draft(app_provider_t *p, const char *key, const llm_message_t *msgs, size_t n,
              const char *salt, const char *draft_key, bool *accepted, char *err,
              size_t errcap)
{
    *accepted = false;
    char derived[APP_ROUTE_KEY_MAX];
    if (!key) {
        app_route_key(salt, msgs[0].content, strlen(msgs[0].content), derived);
        key = derived;
    }
    int slot;
    llm_provider_t *lp = app_engine(p, key, true, &slot);
    if (!lp) {
        snprintf(err, errcap, "No model server is answering");
        return LLM_EDOWN;
    }
    return llm_draft(lp, msgs, n, salt, draft_key, accepted, err, errcap);
}

int app_chat_stream(app_provider_t *p, const char *key, const llm_message_t *msgs, size_t n,
                    const llm_params_t *params, const llm_callbacks_t *cb, void *ud,
                    llm_result_t *res)
{
    char derived[APP_ROUTE_KEY_MAX];
    if (!key) {
        app_route_key(params->cache_salt, msgs[0].content, strlen(msgs[0].content), derived);
        key = derived;
    }
    for (;;) {
        int slot;
        llm_provider_t *lp = app_engine(p, key, false, &slot);
        if (!lp) {
            llm_result_init(res);
            res->rc = LLM_EDOWN;
            snprintf(res->error, sizeof res->error, "No model server is answering");
            return LLM_EDOWN;
        }
        int rc = llm_chat_stream(lp, msgs, n, params, cb, ud, res);
        app_engine_done(p, slot);
        /* another engine only while the client has seen nothing */
        if (rc == LLM_OK || res->text_len > 0 || !app_engine_failed(p, slot, rc, res->error))
            return rc;
        llm_result_cleanup(res);
    }
}

int app_cache_entries(app_provider_t *p, llm_cache_entry_t **out, size_t *n, char *err,
                      size_t errcap)
{
    if (!p->engines)
        return llm_cache_entries(p->llm, out, n, err, errcap);
    *out = NULL;
    *n = 0;
    int rc = LLM_EDOWN;
    snprintf(err, errcap, "No model server is answering");
    for (size_t i = 0; i < engines_count(p->engines); i++) {
        if (!engines_healthy(p->engines, (int)i))
            continue;
        llm_cache_entry_t *e = NULL;
        size_t k = 0;
        if (llm_cache_entries(engines_llm(p->engines, (int)i), &e, &k, err, errcap) != LLM_OK)
            continue;
        llm_cache_entry_t *all = k ? realloc(*out, (*n + k) * sizeof *all) : *out;
        if (k && !all) {
            free(e);
            free(*out);
            *out = NULL;
            *n = 0;
            snprintf(err, errcap, "out of memory");
            return LLM_ENOMEM;
        }
        if (k)
            memcpy(all + *n, e, k * sizeof *e);
        *out = all;
        *n += k;
        free(e);
        rc = LLM_OK;
    }
    if (rc == LLM_OK && err && errcap)
        err[0] = '\0';
    return rc;
}

int app_cache_delete(app_provider_t *p, const char *entry_id, char *err, size_t errcap)
{
    if (!p->engines)
        return llm_cache_delete(p->llm, entry_id, err, errcap);
    /* entry ids are unique across engines: delete it wherever it is */
    int rc = LLM_ENOTFOUND;
    for (size_t i = 0; i < engines_count(p->engines); i++) {
        int r = llm_cache_delete(engines_llm(p->engines, (int)i), entry_id, err, errcap);
        if (r == LLM_OK)
            rc = LLM_OK;
        else if (r != LLM_ENOTFOUND && rc != LLM_OK)
            rc = r;
    }
    return rc;
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

