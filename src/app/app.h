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
struct engines;

/* engine.count at most. */
#define APP_ENGINES_MAX 16

/* A provider with a reference count (see app_provider_acquire). */
typedef struct app_provider {
    atomic_int refs;
    llm_provider_t *llm;       /* one engine's or provider's; with several
                                  engines, the first's (use app_llm) */
    struct engines *engines;   /* several engines (engine.endpoints), owned;
                                  NULL for one */
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
    supervisor_t *sv;          /* NULL when no local model is available; the
                                  first of svs */
    supervisor_t *svs[APP_ENGINES_MAX]; /* engine.count supervised engines */
    size_t n_sv;
    int64_t model_setting_at;  /* the shared model switch last followed (under lock) */
    int64_t command_at;        /* the shared model command last followed (under lock) */
    bool command_seen;         /* the first look at it was made */
    char replica[20];          /* this process's random name, on the commands it shares */
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

/* Whether the local model can answer now, and its state: the supervised
 * engine's; with engine.endpoints SUPERVISOR_RUNNING while one engine
 * answers, else SUPERVISOR_CRASHED; SUPERVISOR_STOPPED without any. */
bool app_local_running(app_t *a, supervisor_state_t *state);

/* The local provider over several engines (engines_new's, taken over),
 * named serving_name. NULL when out of memory (g is freed). */
app_provider_t *app_provider_engines(struct engines *g, const char *serving_name);

/* ---- several engines (engine.endpoints) ----
 * A provider with one engine (or a remote API) answers every call itself;
 * with several, a request about a document goes to the engine its route
 * key ranks first (llm/engines.h). The route key of a cached prefix is
 * derived from what is cached (app_route_key), so caching a document part
 * and chatting about it pick the same engine on every replica. */

#define APP_ROUTE_KEY_MAX 24

/* The route key of a prefix: its cache salt and its first message's text
 * (a document part's system message). */
void app_route_key(const char *salt, const char *text, size_t len, char out[APP_ROUTE_KEY_MAX]);

/* A provider for calls any engine answers alike (tokenizing, the model's
 * facts): p->llm, or the first healthy engine's. */
llm_provider_t *app_llm(app_provider_t *p);
/* Whether app_llm(p) has a healthy engine to give (always, with one). */
bool app_llm_healthy(app_provider_t *p);

/* The provider a request about key should go to. *slot receives what
 * app_engine_done needs (-1 with one engine). home: the key's home engine
 * whatever the load (caching: where the entry belongs), else the load
 * bound applies and the request counts as in flight. NULL when no engine
 * is healthy. */
llm_provider_t *app_engine(app_provider_t *p, const char *key, bool home, int *slot);
void app_engine_done(app_provider_t *p, int slot);
/* A call to slot's engine failed with rc: when rc says the engine is
 * unreachable (refused, reset), it is skipped from now on and true is
 * returned (the caller may try the key's next engine, if nothing was
 * sent to its client yet). */
bool app_engine_failed(app_provider_t *p, int slot, int rc, const char *why);

/* llm_prefill_salted on the home engine of the prefix (its route key:
 * salt and msgs[0]); an engine found down is skipped for the next home. */
int app_prefill(app_provider_t *p, const llm_message_t *msgs, size_t n, unsigned flags,
                const char *salt, const llm_callbacks_t *cb, void *ud, llm_prefill_result_t *res);

/* llm_draft on the engine a chat with route key `key` (NULL: the route key
 * of the salt and msgs[0], as app_chat_stream) goes to when it is not
 * loaded: its home. draft_key names the conversation on that engine. */
int app_draft(app_provider_t *p, const char *key, const llm_message_t *msgs, size_t n,
              const char *salt, const char *draft_key, bool *accepted, char *err,
              size_t errcap);

/* llm_chat_stream on the engine for key (NULL: the route key of the salt
 * and msgs[0]), within the load bound; when an engine is found down
 * before any text came, the next one is tried, and the caller sees one
 * call. */
int app_chat_stream(app_provider_t *p, const char *key, const llm_message_t *msgs, size_t n,
                    const llm_params_t *params, const llm_callbacks_t *cb, void *ud,
                    llm_result_t *res);

/* Every engine's cache entries, one list (llm_cache_entries on each
 * healthy engine); and an entry deleted wherever it is. */
int app_cache_entries(app_provider_t *p, llm_cache_entry_t **out, size_t *n, char *err,
                      size_t errcap);
int app_cache_delete(app_provider_t *p, const char *entry_id, char *err, size_t errcap);
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
