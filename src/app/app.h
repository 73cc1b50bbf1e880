/* app.h — the program state of kvchat, built in main.c.
 *
 * One struct holds the configuration and every long-lived object: the
 * store, the engine supervisor, the LLM providers, the extraction limits,
 * the HTTP server. Every HTTP handler receives it as its user data.
 *
 * The active provider may change at run time (POST /model/switch), so it
 * is reached through app_provider_acquire()/release(), which keep the
 * provider alive while a call uses it.
 */
#ifndef KVCHAT_APP_APP_H
#define KVCHAT_APP_APP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "app/config.h"
#include "app/llm/llm.h"
#include "app/store/store.h"
#include "app/model/supervisor.h"
#include "extract/runner.h"

struct httpd;

/* A provider with a reference count (see app_provider_acquire). */
typedef struct app_provider {
    atomic_int refs;
    llm_provider_t *llm;
    char serving_name[128];    /* what /model/list calls it */
    bool local;                /* the supervised engine */
} app_provider_t;

typedef struct {
    uint64_t chats, chat_errors, chat_cancelled;
    uint64_t uploads, upload_rejected;
    uint64_t caches, cache_errors;
    uint64_t ttft_buckets[12];
    double ttft_sum;
    uint64_t ttft_count;
    uint64_t cached_prompt_tokens, prompt_tokens;
} app_stats_t;

typedef struct app {
    config_t cfg;
    char exe_dir[1024];        /* where kvchat (and its siblings) live */
    char engine_exe[1100];
    char extract_exe[1100];
    char uploads_dir[1100];
    char texts_dir[1100];
    store_t *store;
    supervisor_t *sv;          /* NULL when no local model is available */
    char model_path[1024];     /* the local model in use ("" if none) */
    char model_name[256];
    extract_limits_t extract;
    struct extractq *extractq; /* extractions at once (extract.concurrency) */
    struct textindex *textindex; /* index texts and queries of chunks */
    struct httpd *http;
    struct auth_state *auth;   /* accounts: secrets, rate limits (auth.c) */
    double started_at;

    pthread_mutex_t lock;      /* provider pointer, stats, active chats */
    app_provider_t *provider;  /* active provider (local or a remote) */
    app_provider_t *local;     /* the engine's provider, also for caching */
    app_stats_t stats;
    int active_chats;

    pthread_t sweeper;
    pthread_mutex_t sweep_lock;
    pthread_cond_t sweep_cond;
    bool stopping;
} app_t;

/* The active provider with a reference (never NULL while the app runs).
 * Release with app_provider_release. */
app_provider_t *app_provider_acquire(app_t *a);
/* The local engine's provider with a reference, or NULL if there is none. */
app_provider_t *app_local_acquire(app_t *a);
void app_provider_release(app_provider_t *p);
/* Make `p` (a new reference, taken over) the active provider. */
void app_provider_set(app_t *a, app_provider_t *p);
/* A new provider from a kind, URL, key and model; context_tokens: the
 * context a request may use when the server does not say (0 = unknown).
 * NULL with a message in err on failure. The result has one reference. */
app_provider_t *app_provider_new(app_t *a, const char *kind, const char *base_url,
                                 const char *api_key, const char *model, const char *serving_name,
                                 bool local, int context_tokens, char *err, size_t errcap);

/* Record a chat's time to first token (ms) and prompt/cached tokens. */
void app_record_chat(app_t *a, double ttft_ms, int64_t prompt_tokens, int64_t cached_tokens);

/* Route table and server start (routes.c). Returns 0 or an HTTPD_E* code. */
int routes_open(app_t *a);
void routes_close(app_t *a);

#endif
