/* llm.h — the LLM provider layer: one interface to the local engine, any
 * OpenAI-compatible server and Gemini.
 *
 * kvchat sends a chat (an array of {role, content} messages) to a provider
 * and gets the answer back as it is generated. Three kinds of provider
 * stand behind one opaque llm_provider_t, each a table of functions (as
 * curl's TLS backends are):
 *
 *   LLM_PROVIDER_LOCAL   kvchat-engine, the supervised local model server.
 *                        OpenAI's chat API plus the engine-only calls
 *                        (llm_prefill, llm_cache_delete, llm_tokenize_count).
 *   LLM_PROVIDER_OPENAI  any OpenAI-compatible /chat/completions: OpenAI,
 *                        vLLM, llama-server, Ollama, an engine on another host.
 *   LLM_PROVIDER_GEMINI  Google's Gemini API (streamGenerateContent, SSE).
 *
 * Calls are BLOCKING and meant for the app's connection threads: each call
 * makes its own libcurl handle (a provider shares only DNS answers and TLS
 * sessions between calls, under a lock), so any number of threads may use
 * one provider at once. Nothing is global except libcurl's own
 * initialization, which the app does once with llm_global_init().
 *
 * Streaming. llm_chat_stream() hands each piece of the answer to
 * cb->on_delta as soon as it arrives. Every piece is valid UTF-8 and never
 * splits a character. cb->should_stop is polled at least every 50 ms
 * while the call waits; when it returns true the connection is closed at
 * once (which makes the engine cancel the generation) and the call returns
 * LLM_ECANCELLED.
 *
 * Limits. Upstream answers are read one SSE line at a time; a line (or a
 * multi-line event) over cfg.max_line bytes, an answer over cfg.max_answer
 * bytes, and a JSON body over its limit all end the call with
 * LLM_ETOOBIG: never a crash, never silent truncation.
 *
 * Errors. Every call returns LLM_OK (0) or a negative LLM_E* code, and
 * leaves a human message (one sentence fit to show the user) in the result
 * it fills. llm_http_status() gives the HTTP status the app should answer
 * with for each code (see the table at the enum).
 *
 * Timeouts. connect (the TCP/TLS handshake), first byte (from the request
 * being sent until any byte of the answer: a cold prefill of a long
 * document on a CPU takes minutes, so the default is 300 s), idle (between
 * two received pieces once the answer started; the engine sends an SSE
 * comment every 15 s while it prefills, which counts) and total. Each
 * gives LLM_ETIMEOUT with a message that says which one expired.
 */
#ifndef KVCHAT_APP_LLM_H
#define KVCHAT_APP_LLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/json.h"

/* Result codes. The comment gives the HTTP status llm_http_status()
 * returns, i.e. what the app answers its own client. */
enum {
    LLM_OK = 0,
    LLM_ENOMEM = -1,      /* 500 out of memory */
    LLM_EINVAL = -2,      /* 500 bad argument or configuration (our bug or the admin's) */
    LLM_EDOWN = -3,       /* 503 connection refused, host unknown: the server is not running */
    LLM_ETIMEOUT = -4,    /* 504 connect / first byte / idle / total timeout */
    LLM_EAUTH = -5,       /* 502 upstream 401/403: the API key was rejected */
    LLM_ERATELIMIT = -6,  /* 429 upstream 429: rate limited or out of quota */
    LLM_EUNAVAIL = -7,    /* 503 upstream 503: loading, overloaded, queue full */
    LLM_EUPSTREAM = -8,   /* 502 upstream 5xx or an error event, with its message */
    LLM_ETOOLONG = -9,    /* 422 the prompt does not fit the model's context */
    LLM_EREFUSED = -10,   /* 502 upstream 4xx other than the above (request refused) */
    LLM_ENOTFOUND = -11,  /* 404 upstream 404: unknown model, cache entry or path */
    LLM_EPROTO = -12,     /* 502 malformed answer: bad JSON, unexpected shape */
    LLM_ETOOBIG = -13,    /* 502 a line, event, body or answer over its limit */
    LLM_ECONN = -14,      /* 502 connection lost, or the stream ended before the answer did */
    LLM_ECANCELLED = -15, /* 499 should_stop returned true (the client left) */
    LLM_ENOTSUP = -16,    /* 501 this provider does not offer the call */
};

/* A static English description of an LLM_* code ("the model server is not
 * running", ...). The result's message says more. */
const char *llm_strerror(int rc);

/* The HTTP status the app should answer with for an LLM_* code (table
 * above; 200 for LLM_OK, 500 for unknown codes). */
int llm_http_status(int rc);

/* curl_global_init(); call once at program start, before any thread uses
 * this module. Returns LLM_OK or LLM_ENOMEM. */
int llm_global_init(void);
/* curl_global_cleanup(); call once at exit, when no call runs. */
void llm_global_cleanup(void);

/* ---- providers -------------------------------------------------------- */

typedef enum {
    LLM_PROVIDER_LOCAL = 0,
    LLM_PROVIDER_OPENAI = 1,
    LLM_PROVIDER_GEMINI = 2,
} llm_kind_t;

/* Parse "local" | "openai" | "gemini". Returns LLM_OK and *out, or
 * LLM_EINVAL. */
int llm_kind_parse(const char *s, llm_kind_t *out);
/* "local", "openai", "gemini". */
const char *llm_kind_name(llm_kind_t kind);

typedef struct {
    llm_kind_t kind;
    /* NULL or "" = the kind's default:
     *   local  "http://127.0.0.1:13141/v1"
     *   openai "https://api.openai.com/v1"
     *   gemini "https://generativelanguage.googleapis.com"
     * OpenAI-style URLs end before "/chat/completions". A trailing '/' is
     * ignored. */
    const char *base_url;
    const char *api_key;   /* NULL/"" = none. Sent as "Authorization: Bearer"
                              (local, openai) or "x-goog-api-key" (gemini);
                              never logged. */
    const char *model;     /* sent as "model" (omitted when NULL/"" for local
                              and openai); required for gemini */
    const char *name;      /* how messages name the provider ("OpenAI", "the
                              model server"); NULL = derived from kind and URL */
    unsigned connect_timeout_ms;    /* 10 s */
    unsigned first_byte_timeout_ms; /* 300 s */
    unsigned idle_timeout_ms;       /* 120 s between received pieces */
    unsigned total_timeout_ms;      /* 30 min; 0 = none */
    size_t max_line;                /* one SSE line or event: 1 MiB */
    size_t max_answer;              /* the answer's text: 4 MiB */
    int context_tokens;             /* tokens one request may use, for a server
                                       that does not say (llm_models); 0 = unknown */
} llm_config_t;

/* The defaults above for `kind`, with no URL, key or model. */
llm_config_t llm_config_default(llm_kind_t kind);

typedef struct llm_provider llm_provider_t;

/* Make a provider from cfg (every string is copied; cfg may go away).
 * Returns LLM_OK and *out (free with llm_provider_free); LLM_EINVAL with a
 * reason in errmsg (may be NULL, errcap bytes) for an unknown kind, a URL
 * that is not http(s)://, or gemini without a model; LLM_ENOMEM. On failure
 * *out is NULL. */
int llm_provider_new(const llm_config_t *cfg, llm_provider_t **out, char *errmsg, size_t errcap);

/* Free a provider. No call may be running on it. Accepts NULL. */
void llm_provider_free(llm_provider_t *p);

/* The context a request may use as configured (llm_config_t's
 * context_tokens), 0 when it was not. */
int llm_context_tokens(const llm_provider_t *p);

/* Where a key that changes while the provider lives comes from (the
 * supervised engine gets a new one at every start): write the key,
 * NUL-terminated, into buf (cap bytes) and return its length, or return 0
 * for none. Called at the start of every request, on the calling thread,
 * so it must be thread-safe. */
typedef size_t (*llm_key_fn)(void *ud, char *buf, size_t cap);

/* The longest key a key source may give (longer ones are not sent). */
#define LLM_KEY_MAX 512

/* Take every request's key from fn(ud, ...) instead of cfg.api_key (fn
 * NULL: back to cfg.api_key). ud must stay valid while calls may run. Call before
 * the provider is used by more than one thread. The key is never logged
 * and is wiped from the request's memory when the request ends. */
void llm_provider_set_key_source(llm_provider_t *p, llm_key_fn fn, void *ud);

/* Called (in the calling thread, before the call returns) whenever a call
 * finds the server unreachable or loses the connection (LLM_EDOWN,
 * LLM_ECONN), with the message; for whoever routes over several servers.
 * Set before calls start. */
typedef void (*llm_down_fn)(void *ud, const char *why);
void llm_provider_set_down_hook(llm_provider_t *p, llm_down_fn fn, void *ud);

/* Borrowed views of the provider's configuration (valid while p lives). */
llm_kind_t llm_provider_kind(const llm_provider_t *p);
const char *llm_provider_base_url(const llm_provider_t *p);
const char *llm_provider_model(const llm_provider_t *p);   /* "" when none */
const char *llm_provider_name(const llm_provider_t *p);

/* ---- chat ------------------------------------------------------------- */

typedef enum {
    LLM_ROLE_SYSTEM = 0,
    LLM_ROLE_USER = 1,
    LLM_ROLE_ASSISTANT = 2,
} llm_role_t;

/* One chat message. content is NUL-terminated UTF-8 (invalid bytes are
 * sent as U+FFFD); borrowed for the duration of the call. */
typedef struct {
    llm_role_t role;
    const char *content;
} llm_message_t;

/* Parse "system" | "user" | "assistant" ("developer" is system). Returns
 * LLM_OK and *out, or LLM_EINVAL. */
int llm_role_parse(const char *s, llm_role_t *out);
const char *llm_role_name(llm_role_t role);

#define LLM_MAX_STOP 4

/* Generation parameters; start from llm_params_default(). Everything is
 * borrowed for the duration of the call. */
typedef struct {
    int max_tokens;          /* > 0, or 0 = the provider's default */
    double temperature;      /* >= 0, or < 0 = the provider's default */
    double top_p;            /* 0..1, or < 0 = the provider's default */
    const char *stop[LLM_MAX_STOP]; /* stop strings; the first NULL ends the list */
    const json_t *extra;     /* NULL, or an object whose fields are added to the
                                request body as they are (provider-specific:
                                "seed", "top_k", "ignore_eos", "cache_prompt"...);
                                they override fields set from the above */
    const char *cache_salt;  /* NULL or "": none. The request's cache namespace in
                                the local engine (docs/engine.md, "Salts"): it
                                reuses only the KV that requests of the same salt
                                left. Sent as "cache_salt" to LLM_PROVIDER_LOCAL
                                only: other servers never see it (OpenAI-
                                compatible ones would refuse or ignore it, and it
                                means nothing to them). At most LLM_CACHE_SALT_MAX
                                bytes of UTF-8, else the call is LLM_EINVAL. */
} llm_params_t;

/* The longest cache salt the engine takes, in bytes. */
#define LLM_CACHE_SALT_MAX 256

llm_params_t llm_params_default(void);

/* Callbacks of a call; any member may be NULL, and so may the struct. They
 * run on the calling thread, inside the call. */
typedef struct {
    /* The next piece of the answer: len > 0 bytes of valid UTF-8, never a
     * split character, not NUL-terminated; only valid during the call.
     * Return 0 to go on; anything else cancels the call (LLM_ECANCELLED). */
    int (*on_delta)(void *ud, const char *text, size_t len);
    /* llm_prefill(): the engine has prefilled `done` of `total` tokens. */
    void (*on_progress)(void *ud, int done, int total);
    /* Polled at least every 50 ms while the call waits; true cancels. */
    bool (*should_stop)(void *ud);
} llm_callbacks_t;

typedef struct {
    int64_t prompt_tokens;     /* -1 = not reported */
    int64_t completion_tokens; /* -1 = not reported */
    int64_t cached_tokens;     /* prompt tokens served from a cache; -1 = not reported */
} llm_usage_t;

/* What a chat call leaves behind. Caller-owned; llm_result_init() before
 * the call (the call does it too), llm_result_cleanup() after. */
typedef struct {
    int rc;                  /* the call's return value */
    int upstream_status;     /* HTTP status the provider answered; 0 = none */
    char finish_reason[32];  /* "stop", "length", "content_filter", "cancelled"
                                or the provider's word; "" if none came */
    size_t text_len;         /* bytes handed to on_delta */
    char *text;              /* llm_chat() only: the whole answer, NUL-terminated
                                (malloc'd, freed by llm_result_cleanup) */
    llm_usage_t usage;
    json_t *timings;         /* the engine's (or llama-server's) "timings" object
                                as received (prompt_n, prompt_ms, predicted_n,
                                predicted_ms, cache_n, cache_tier, ttft_ms...),
                                or NULL; owned (a reference), released by
                                llm_result_cleanup */
    char model[128];         /* the model that answered, as the provider names it */
    double ttft_ms;          /* time from the call to the first piece of text;
                                -1 if none came */
    double total_ms;         /* duration of the call */
    char error[512];         /* human message when rc != LLM_OK, else "" */
} llm_result_t;

void llm_result_init(llm_result_t *r);
/* Frees text and timings; the struct may be reused after llm_result_init.
 * Accepts NULL. */
void llm_result_cleanup(llm_result_t *r);

/* Send n >= 1 messages and stream the answer to cb->on_delta. Blocks until
 * the answer is complete, failed or cancelled. Returns LLM_OK and fills
 * *out (finish_reason, usage, timings, model, text_len), or an LLM_E* code
 * with out->error set; out->text_len then tells how much was delivered
 * before the failure. out is initialized by the call (its earlier contents
 * are NOT freed: clean it up before reuse). */
int llm_chat_stream(llm_provider_t *p, const llm_message_t *msgs, size_t n,
                    const llm_params_t *params, const llm_callbacks_t *cb, void *ud,
                    llm_result_t *out);

/* As llm_chat_stream, and collects the answer in out->text (the answer is
 * streamed from upstream all the same, so cancellation and timeouts work
 * the same way). cb may be NULL; its on_delta, when set, is called too. */
int llm_chat(llm_provider_t *p, const llm_message_t *msgs, size_t n, const llm_params_t *params,
             const llm_callbacks_t *cb, void *ud, llm_result_t *out);

/* ---- engine calls ----------------------------------------------------- */

/* Result of llm_prefill(). Caller-owned, filled by the call. */
typedef struct {
    int rc;
    int upstream_status;
    char id[80];           /* cache entry id (for llm_cache_delete) */
    int n_tokens;          /* tokens in the cached prefix */
    int64_t bytes;         /* size of the KV snapshot */
    char tier[16];         /* "ram", "disk", ... where the entry is now */
    double prefill_ms;     /* time the engine spent prefilling (0 if cached) */
    bool cached;           /* the prefix was stored already */
    bool pinned;
    char error[512];
} llm_prefill_result_t;

/* llm_prefill() flags. */
enum {
    LLM_PREFILL_PIN = 1,   /* keep the entry from eviction */
    LLM_PREFILL_DISK = 2,  /* store it on the engine's disk tier, not in RAM
                              (the parts of a long document) */
};

/* Local provider only: prefill the KV cache with the prompt prefix that
 * msgs render to (as a chat with these messages would begin) and store it
 * in the engine's cache, as `flags` (LLM_PREFILL_*) say. When cb->on_progress
 * is set the engine streams progress, reported through it; cb->should_stop
 * cancels as for a chat. Blocks until done.
 * Returns LLM_OK and *out; LLM_ENOTSUP for other providers; LLM_ETOOLONG
 * when the prefix does not fit a slot; any other LLM_E* with out->error. */
int llm_prefill(llm_provider_t *p, const llm_message_t *msgs, size_t n, unsigned flags,
                const llm_callbacks_t *cb, void *ud, llm_prefill_result_t *out);

/* llm_prefill() in the cache namespace `cache_salt` (NULL or "": none, the
 * same as llm_prefill; see llm_params_t.cache_salt): the entry is found
 * only by chats and prefills with the same salt. A salt over
 * LLM_CACHE_SALT_MAX bytes or not UTF-8 is LLM_EINVAL (nothing sent). */
int llm_prefill_salted(llm_provider_t *p, const llm_message_t *msgs, size_t n, unsigned flags,
                       const char *cache_salt, const llm_callbacks_t *cb, void *ud,
                       llm_prefill_result_t *out);

/* Local provider only: a draft of a turn being typed, keyed by its
 * conversation (key: 1..LLM_DRAFT_KEY_MAX bytes). The engine prefills what
 * msgs render to into a slot bound to key when it has nothing else to do,
 * and a later chat whose prompt extends it decodes only the rest; nothing
 * is stored (the engine's POST /v1/cache/draft). Answers at once:
 * LLM_OK with *accepted (false: the engine had no room for it, dropped),
 * LLM_ENOTSUP for other providers, LLM_EINVAL for a bad key or salt, or
 * another LLM_E* with errmsg (may be NULL). */
#define LLM_DRAFT_KEY_MAX 128
int llm_draft(llm_provider_t *p, const llm_message_t *msgs, size_t n, const char *cache_salt,
              const char *key, bool *accepted, char *errmsg, size_t errcap);

/* Local provider only: delete one cache entry. Returns LLM_OK,
 * LLM_ENOTFOUND (no such entry), LLM_EINVAL (an id with characters other
 * than [A-Za-z0-9_-]), LLM_ENOTSUP, or another LLM_E*. errmsg may be NULL. */
int llm_cache_delete(llm_provider_t *p, const char *entry_id, char *errmsg, size_t errcap);

/* What the server says about its model (GET {base_url}/models). */
typedef struct {
    char id[128];          /* the model id it serves (the configured one when
                              listed, else the first) */
    char name[128];        /* meta.name, or "" */
    bool random_weights;   /* meta.random_weights (kvchat's test/demo models) */
    int n_ctx_slot;        /* tokens one request may use (meta.n_ctx_slot); 0 = unknown */
    int n_ctx_train;       /* meta.n_ctx_train; 0 = unknown */
    bool cache_enabled;    /* meta.cache_enabled */
    char fingerprint[80];  /* meta.fingerprint (the engine's model and
                              tokenizer), or "" */
} llm_model_info_t;

/* Local and openai providers (the local engine's answer bounded by
 * LLM_STATUS_TIMEOUT_MS). Returns LLM_OK and *out; LLM_EPROTO if the list
 * is empty or malformed; LLM_ENOTSUP for gemini; another LLM_E*. errmsg
 * may be NULL. */
int llm_models(llm_provider_t *p, llm_model_info_t *out, char *errmsg, size_t errcap);

/* Calls that only report the local engine's state (its model, cache totals,
 * cache entries) give up after this long, so a stuck engine cannot hold up
 * a page. */
#define LLM_STATUS_TIMEOUT_MS 3000u

/* The engine's KV-cache totals (GET /v1/cache/stats; local only; bounded
 * by LLM_STATUS_TIMEOUT_MS). */
typedef struct {
    int64_t entries;
    int64_t bytes_ram;
    int64_t bytes_disk;
} llm_cache_stats_t;
int llm_cache_stats(llm_provider_t *p, llm_cache_stats_t *out, char *errmsg, size_t errcap);

/* One entry of the engine's KV cache, as GET /v1/cache lists it. */
typedef struct {
    char id[80];
    char tier[16];   /* "ram" or "disk": where its bytes are now */
    int n_tokens;
    bool pinned;
    char salt_hash[65]; /* the lowercase hex SHA-256 of the cache salt it was
                           made under (llm_params_t.cache_salt), "" for none:
                           only requests of that salt find it */
} llm_cache_entry_t;

/* Local provider only: every entry of the engine's KV cache (GET /v1/cache,
 * bounded by LLM_STATUS_TIMEOUT_MS). Returns LLM_OK with *out (malloc'd,
 * *n entries; the caller frees it with free(); NULL when empty);
 * LLM_ENOTSUP for other providers; another LLM_E* (*out NULL, *n 0).
 * errmsg may be NULL. */
int llm_cache_entries(llm_provider_t *p, llm_cache_entry_t **out, size_t *n, char *errmsg,
                      size_t errcap);

/* Count the tokens of len bytes of text: POST /tokenize (the engine,
 * llama-server) or Gemini's countTokens. Returns LLM_OK and *n;
 * LLM_ENOTFOUND when the server has no such endpoint; another LLM_E*.
 * errmsg may be NULL. */
int llm_tokenize_count(llm_provider_t *p, const char *text, size_t len, int64_t *n,
                       char *errmsg, size_t errcap);

#endif
