/* llm_int.h — what llm.c shares with its backends (llm_openai.c,
 * llm_gemini.c); no other module includes it.
 *
 * llm.c owns everything that is the same for every provider: the provider
 * object, the HTTP exchange over libcurl (timeouts, cancellation, limits),
 * the SSE reader, the mapping of transport failures and upstream error
 * objects to LLM_E* codes and messages, and the chat call's bookkeeping
 * (deltas, answer limit, UTF-8, finish reason). A backend is a table of
 * functions that build its requests and read its events:
 *
 *   chat_request   builds the URL and JSON body of a streaming chat;
 *   chat_event     reads one parsed event of the answer (error objects and
 *                  "[DONE]" never reach it) and reports text through
 *                  llm__emit(), the end through llm__finish();
 *   prefill, draft, cache_delete, models, tokenize_count: optional (NULL means
 *                  LLM_ENOTSUP); they use llm__xfer_run() as well.
 *
 * Internal names carry a double underscore (libuv's uv__ convention).
 */
#ifndef KVCHAT_APP_LLM_INT_H
#define KVCHAT_APP_LLM_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "app/llm/llm.h"
#include "common/buf.h"
#include "common/json.h"

typedef struct llm_backend llm_backend_t;
struct llm_share; /* libcurl share handle and its locks (llm.c) */

struct llm_provider {
    llm_config_t cfg;          /* limits and timeouts; its strings point below */
    const llm_backend_t *be;
    char *base_url;            /* without a trailing '/' */
    char *root_url;            /* base_url without a trailing "/v1" (engine paths) */
    char *api_key;             /* "" when none */
    llm_key_fn key_fn;         /* when set, the key of each request (see
                                  llm_provider_set_key_source) */
    void *key_ud;
    llm_down_fn down_fn;       /* llm_provider_set_down_hook's, or NULL */
    void *down_ud;
    char *model;               /* "" when none */
    char *name;                /* for messages: "the model server", "OpenAI" */
    struct llm_share *share;
};

/* One HTTP exchange, filled in by the caller, run by llm__xfer_run(). */
typedef struct llm_xfer llm_xfer_t;
struct llm_xfer {
    /* -- set by the caller -- */
    llm_provider_t *p;
    const llm_callbacks_t *cb; /* should_stop is polled; may be NULL */
    void *ud;
    const char *method;        /* "GET", "POST", "DELETE" */
    const char *url;
    const char *body;          /* NULL = none; JSON text */
    size_t body_len;
    bool sse;                  /* the answer is an event stream */
    size_t max_body;           /* limit of a whole (non-SSE) answer body */
    unsigned timeout_ms;       /* limit of the whole exchange; 0 = the
                                  provider's total_timeout_ms */
    /* SSE (or a whole JSON answer to a streaming request, element by
     * element when it is an array): one parsed event. Returns LLM_OK or
     * an error code after llm__fail(). */
    int (*on_event)(llm_xfer_t *x, json_t *ev);
    void *ctx;                 /* the on_event owner's state */

    /* -- results -- */
    int rc;                    /* first failure, LLM_OK while none */
    char error[512];           /* its message */
    int status;                /* HTTP status, 0 before the headers */
    bool done;                 /* "data: [DONE]" arrived */
    json_t *json;              /* non-SSE 2xx answer, parsed (owned; NULL for
                                  an empty body); freed by llm__xfer_cleanup */

    /* -- llm.c's working state -- */
    int mode;
    buf_t line, event, whole;
    char event_name[32];
    bool has_data, got_bytes, overflow;
    double t_start, t_last;
};

/* Zero x and set the fields every exchange needs. */
void llm__xfer_init(llm_xfer_t *x, llm_provider_t *p, const char *method, const char *url);

/* Perform the exchange: connect, send, read the answer (events to
 * on_event, or the whole body into x->json), map non-2xx answers through
 * their error object, poll should_stop, enforce timeouts and limits.
 * Returns x->rc (LLM_OK or the first failure, with x->error). */
int llm__xfer_run(llm_xfer_t *x);

/* Frees x->json and the working buffers. */
void llm__xfer_cleanup(llm_xfer_t *x);

/* The SSE reader of llm__xfer_run(), exposed for the fuzz tests: feed n
 * bytes of an event stream (x->line and x->event initialised with their
 * limits), and end it (a last line or event without its terminator). */
void llm__sse_feed(llm_xfer_t *x, const char *p, size_t n);
void llm__sse_flush(llm_xfer_t *x);

/* Record a failure (the first one wins) with a printf message; returns
 * the code in effect. */
int llm__fail(llm_xfer_t *x, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Record the upstream error object `err` ({"message","type"|"status",
 * "code"}, or a plain string) seen with HTTP status `status` (0 for an
 * error event in a 200 stream), classified into an LLM_E* code. Returns
 * the code in effect. */
int llm__fail_upstream(llm_xfer_t *x, int status, const json_t *err);

/* A chat call: the exchange plus what the answer is building up. */
typedef struct {
    llm_xfer_t x;              /* first member: on_event gets &c->x */
    llm_result_t *res;
    const llm_callbacks_t *cb;
    void *ud;
    bool finished;             /* a finish reason arrived */
    double t0;
} llm_chat_call_t;

/* Hand len bytes of answer text to on_delta (empty pieces are skipped;
 * invalid UTF-8, which a JSON parser never yields, is repaired). Enforces
 * max_answer. Returns LLM_OK or a failure (recorded). */
int llm__emit(llm_chat_call_t *c, const char *text, size_t len);

/* The answer ended for `reason` (copied, cut to fit). */
void llm__finish(llm_chat_call_t *c, const char *reason);

/* Helpers for backends. */
/* A new JSON string from NUL-terminated text that may hold invalid UTF-8.
 * NULL only when out of memory. */
json_t *llm__json_text(const char *s);
/* Add the fields of params->extra to body. Returns LLM_OK or LLM_EINVAL
 * (extra is not an object) / LLM_ENOMEM. */
int llm__merge_extra(json_t *body, const llm_params_t *params);
/* malloc'd printf. NULL when out of memory. */
char *llm__strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Copy a JSON string member into a fixed buffer ("" when absent). */
void llm__copy_str(char *dst, size_t cap, const json_t *obj, const char *key);
/* An integer member, or `dflt` when absent or not a number. */
int64_t llm__get_int(const json_t *obj, const char *key, int64_t dflt);

struct llm_backend {
    const char *auth_prefix;   /* header line before the key:
                                  "Authorization: Bearer " or "x-goog-api-key: " */
    /* Build a streaming chat request. Returns LLM_OK with *url and *body
     * (malloc'd, the caller frees), or a code with a message in err. */
    int (*chat_request)(const llm_provider_t *p, const llm_message_t *msgs, size_t n,
                        const llm_params_t *params, char **url, char **body, char *err,
                        size_t errcap);
    int (*chat_event)(llm_chat_call_t *c, json_t *ev);
    /* cache_salt: NULL or a checked salt of 1..LLM_CACHE_SALT_MAX bytes */
    int (*prefill)(llm_provider_t *p, const llm_message_t *msgs, size_t n, unsigned flags,
                   const char *cache_salt, const llm_callbacks_t *cb, void *ud,
                   llm_prefill_result_t *out);
    /* key: 1..LLM_DRAFT_KEY_MAX bytes; cache_salt as for prefill */
    int (*draft)(llm_provider_t *p, const llm_message_t *msgs, size_t n, const char *cache_salt,
                 const char *key, bool *accepted, char *errmsg, size_t errcap);
    int (*cache_delete)(llm_provider_t *p, const char *id, char *errmsg, size_t errcap);
    int (*models)(llm_provider_t *p, llm_model_info_t *out, char *errmsg, size_t errcap);
    int (*cache_stats)(llm_provider_t *p, llm_cache_stats_t *out, char *errmsg, size_t errcap);
    int (*cache_entries)(llm_provider_t *p, llm_cache_entry_t **out, size_t *n, char *errmsg,
                         size_t errcap);
    int (*tokenize_count)(llm_provider_t *p, const char *text, size_t len, int64_t *n,
                          char *errmsg, size_t errcap);
};

extern const llm_backend_t llm__backend_openai; /* local and openai (llm_openai.c) */
extern const llm_backend_t llm__backend_gemini; /* llm_gemini.c */

#endif
