/* server.c — see server.h.
 *
 * Generation requests are handed to the scheduler as jobs. A non-streaming
 * request's handler waits for its job (httpd runs one thread per
 * connection, so waiting blocks only that client) and cancels it if the
 * client goes away. A streaming request's handler opens the stream and
 * returns; the scheduler's decode thread then writes SSE chunks into the
 * stream (non-blocking queue writes) and closes it at the end. A client
 * that disconnects fires the stream's on_close, which cancels the job; the
 * scheduler drops it within one step.
 *
 * gen_t is shared by the handler, the decode thread (sink callbacks) and
 * the stream's on_close: it is reference-counted and freed by the last one.
 *
 * A prefill with "tier": "disk" answers only once its entry file is
 * durable (written, fsync'd, renamed): the handler waits for the store's
 * writer (kvstore_when_written); a streamed one sends its last event from
 * the writer's callback, so the decode thread never waits for a disk.
 */
#include "engine/server.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/httpd.h"
#include "common/json.h"
#include "common/log.h"
#include "engine/jsonschema.h"
#include "engine/metrics.h"
#include "engine/salt.h"
#include "engine/tools.h"

#define MAX_MESSAGES 4096

const char *server_strerror(int rc) { return httpd_strerror(rc); }

/* ---- helpers ---- */

static bool check_ready(engine_t *e, httpd_req_t *req)
{
    switch (atomic_load(&e->state)) {
    case ENGINE_READY:
        return true;
    case ENGINE_LOADING:
        httpd_reply_error(req, 503, "the model is loading");
        return false;
    default:
        httpd_reply_error(req, 503, "the model failed to load: %s", e->error);
        return false;
    }
}

static int sched_status(int rc)
{
    switch (rc) {
    case SCHED_EBUSY:
    case SCHED_ESTOPPED:
        return 503;
    case SCHED_ETOOLONG:
    case SCHED_EINVAL:
        return 400;
    case SCHED_ESTORE:
        return 507;
    default:
        return 500;
    }
}

static double epoch_s(void) { return (double)time(NULL); }

/* "chatcmpl-<16 hex>" style ids. */
static void make_id(char *out, size_t cap, const char *prefix)
{
    static atomic_uint_fast64_t counter;
    uint64_t x = atomic_fetch_add(&counter, 1) + 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t h = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (x * 0x9e3779b97f4a7c15ULL);
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
    snprintf(out, cap, "%s-%016" PRIx64, prefix, h);
}

/* The start of every POST handler: the model is ready and the body is a
 * JSON object. Answers the request itself (503, 400) and returns NULL
 * otherwise; the caller decrefs the result. */
static json_t *begin_json(engine_t *e, httpd_req_t *req)
{
    if (!check_ready(e, req))
        return NULL;
    json_t *body;
    const char *msg;
    if (httpd_req_json(req, &body, &msg) != HTTPD_OK) {
        httpd_reply_error(req, 400, "%s", msg);
        return NULL;
    }
    return body;
}

/* The request's optional "cache_salt" (chat, completions, prefill) into
 * *salt, zeroed when the field is absent or null: 1 to SALT_MAX_BYTES bytes
 * of text, of which only the SHA-256 is kept (salt.h), so the request sees
 * only the cache of its own salt. Returns 0; or answers the request itself
 * (400 for another type or length, 500 when it cannot be hashed; no
 * message repeats the salt) and returns -1. */
static int parse_salt(httpd_req_t *req, const json_t *body, kvstore_salt_t *salt)
{
    memset(salt, 0, sizeof *salt);
    json_t *v = json_object_get(body, "cache_salt");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        httpd_reply_error(req, 400, "Field 'cache_salt' must be a string");
        return -1;
    }
    size_t len = json_string_length(v);
    int rc = salt_hash(json_string_value(v), len, salt);
    if (rc == SALT_EINVAL) {
        httpd_reply_error(req, 400, "Field 'cache_salt' must be 1 to %d bytes of UTF-8 text "
                          "(it has %zu)", SALT_MAX_BYTES, len);
        return -1;
    }
    if (rc) {
        httpd_reply_error(req, 500, "%s", salt_strerror(rc));
        return -1;
    }
    return 0;
}

#define LOGIT_BIAS_MAX 4096   /* biased tokens per request */

/* Bias every token of one logit_bias key: a token id (OpenAI: the key is
 * its decimal string; llama.cpp's array form: a number) or a text whose
 * tokens all get it (llama.cpp). */
static int add_logit_bias(const engine_t *e, sched_job_params_t *p, const json_t *key_num,
                          const char *key_text, const json_t *val, json_err_t *err)
{
    float bias;
    if (json_is_false(val))
        bias = -INFINITY;   /* llama.cpp: never this token */
    else if (json_is_number(val) && json_number_value(val) >= -100.0 &&
             json_number_value(val) <= 100.0)
        bias = (float)json_number_value(val);
    else {
        snprintf(err->msg, sizeof err->msg,
                 "logit_bias values must be numbers from -100 to 100 (or false: banned)");
        return -1;
    }
    const int n_vocab = model_info(e->model)->n_vocab;
    model_token_t one, *toks = &one;
    int n = 1;
    long long id = -1;
    if (key_num) {
        if (!json_is_integer(key_num)) {
            snprintf(err->msg, sizeof err->msg, "logit_bias token ids must be integers");
            return -1;
        }
        id = json_integer_value(key_num);
    } else if (key_text[0] && strspn(key_text, "0123456789") == strlen(key_text)) {
        /* a decimal key: OpenAI's token id (a longer one is out of range) */
        id = strlen(key_text) <= 9 ? strtoll(key_text, NULL, 10) : LLONG_MAX;
    } else {
        toks = NULL;
        if (model_tokenize(e->model, key_text, strlen(key_text), false, false, LOGIT_BIAS_MAX,
                           &toks, &n) != MODEL_OK) {
            snprintf(err->msg, sizeof err->msg, "logit_bias: cannot tokenize a key");
            return -1;
        }
    }
    if (toks == &one) {
        if (id < 0 || id >= n_vocab) {
            snprintf(err->msg, sizeof err->msg,
                     "logit_bias: token id %lld is out of range (the vocabulary has %d tokens)", id,
                     n_vocab);
            return -1;
        }
        one = (model_token_t)id;
    }
    int rc = 0;
    if (p->n_logit_bias + n > LOGIT_BIAS_MAX) {
        snprintf(err->msg, sizeof err->msg, "logit_bias: at most %d tokens", LOGIT_BIAS_MAX);
        rc = -1;
    } else {
        model_logit_bias_t *nb =
            realloc(p->logit_bias, (size_t)(p->n_logit_bias + n) * sizeof *nb);
        if (!nb) {
            snprintf(err->msg, sizeof err->msg, "out of memory");
            rc = -1;
        } else {
            p->logit_bias = nb;
            for (int k = 0; k < n; k++)
                nb[p->n_logit_bias++] = (model_logit_bias_t){ toks[k], bias };
        }
    }
    if (toks != &one)
        free(toks);
    return rc;
}

/* logit_bias: OpenAI's {"token id": bias} map, or llama.cpp's forms
 * (text keys, [[id or text, bias or false], ...]). */
static int parse_logit_bias(const engine_t *e, const json_t *body, sched_job_params_t *p,
                            json_err_t *err)
{
    json_t *lb = json_object_get(body, "logit_bias");
    if (!lb || json_is_null(lb))
        return 0;
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_object(lb)) {
        json_object_foreach(lb, key, v)
            if (add_logit_bias(e, p, NULL, key, v, err) != 0)
                return -1;
        return 0;
    }
    if (json_is_array(lb)) {
        json_array_foreach(lb, i, v) {
            json_t *k = json_array_get(v, 0);
            if (!json_is_array(v) || json_array_size(v) != 2 ||
                !(json_is_number(k) || json_is_string(k))) {
                snprintf(err->msg, sizeof err->msg,
                         "logit_bias entries must be [token id or text, bias]");
                return -1;
            }
            if (add_logit_bias(e, p, json_is_string(k) ? NULL : k,
                               json_is_string(k) ? json_string_value(k) : NULL,
                               json_array_get(v, 1), err) != 0)
                return -1;
        }
        return 0;
    }
    snprintf(err->msg, sizeof err->msg,
             "Field 'logit_bias' must be an object of token ids to biases");
    return -1;
}

/* Parse sampling and limits shared by chat and completions. Returns 0, or
 * -1 with a message for a 400 in err. */
static int parse_generation(const engine_t *e, json_t *body, sched_job_params_t *p, bool *stream,
                            bool *include_usage, json_err_t *err)
{
    double d;
    int64_t i;
    bool b;
    const char *str;
    json_t *arr;
    int rc;
    model_sampling_t *s = &p->sampling;

    *stream = false;
    if ((rc = json_get_bool(body, "stream", stream, err)) == JSON_ETYPE)
        return -1;
    json_t *so = NULL;
    *include_usage = false;
    if ((rc = json_get_object(body, "stream_options", &so, err)) == JSON_ETYPE)
        return -1;
    if (so && json_get_bool(so, "include_usage", include_usage, err) == JSON_ETYPE)
        return -1;

    p->max_tokens = e->cfg.max_tokens_default;
    const char *mt_keys[] = { "max_tokens", "max_completion_tokens", "n_predict" };
    for (size_t k = 0; k < 3; k++) {
        rc = json_get_int_range(body, mt_keys[k], -1, 1 << 24, &i, err);
        if (rc == JSON_ETYPE)
            return -1;
        if (rc == JSON_OK)
            p->max_tokens = i < 0 ? (1 << 24) : (int)i;
    }
    if (p->max_tokens == 0) {
        snprintf(err->msg, sizeof err->msg, "max_tokens must be at least 1 (or -1: no limit)");
        return -1;
    }

    struct {
        const char *key;
        float *dst;
        double lo, hi;
    } nums[] = {
        { "temperature", &s->temperature, 0.0, 100.0 },
        { "top_p", &s->top_p, 0.0, 1.0 },
        { "min_p", &s->min_p, 0.0, 1.0 },
        { "repeat_penalty", &s->repeat_penalty, 0.0, 10.0 },
        { "presence_penalty", &s->presence_penalty, -2.0, 2.0 },
        { "frequency_penalty", &s->frequency_penalty, -2.0, 2.0 },
    };
    for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
        rc = json_get_number(body, nums[k].key, &d, err);
        if (rc == JSON_ETYPE)
            return -1;
        if (rc == JSON_OK) {
            if (!(d >= nums[k].lo && d <= nums[k].hi)) {
                snprintf(err->msg, sizeof err->msg, "Field '%s' must be between %g and %g",
                         nums[k].key, nums[k].lo, nums[k].hi);
                return -1;
            }
            *nums[k].dst = (float)d;
        }
    }
    if ((rc = json_get_int_range(body, "top_k", 0, 1 << 20, &i, err)) == JSON_ETYPE)
        return -1;
    if (rc == JSON_OK)
        s->top_k = (int)i;
    if ((rc = json_get_int_range(body, "repeat_last_n", 0, 1 << 20, &i, err)) == JSON_ETYPE)
        return -1;
    if (rc == JSON_OK)
        s->penalty_last_n = (int)i;
    if ((rc = json_get_int_range(body, "seed", -1, UINT32_MAX, &i, err)) == JSON_ETYPE)
        return -1;
    if (rc == JSON_OK && i >= 0)
        s->seed = (uint32_t)i;
    if ((rc = json_get_bool(body, "ignore_eos", &b, err)) == JSON_ETYPE)
        return -1;
    if (rc == JSON_OK)
        p->ignore_eos = b;
    /* Per-request cache switch: "cache_prompt" (llama-server's name). */
    if ((rc = json_get_bool(body, "cache_prompt", &b, err)) == JSON_ETYPE)
        return -1;
    if (rc == JSON_OK)
        p->use_cache = b;
    if (e->cfg.no_cache)
        p->use_cache = false;

    /* stop: a string or an array of strings */
    rc = json_get_string(body, "stop", &str, err);
    if (rc == JSON_OK) {
        if (*str)
            p->stop[p->n_stop++] = strdup(str);
    } else if (rc == JSON_ETYPE) {
        if (json_get_array(body, "stop", &arr, err) != JSON_OK) {
            snprintf(err->msg, sizeof err->msg, "Field 'stop' must be a string or an array of strings");
            return -1;
        }
        size_t idx;
        json_t *v;
        if (json_array_size(arr) > SCHED_MAX_STOP) {
            snprintf(err->msg, sizeof err->msg, "At most %d stop strings", SCHED_MAX_STOP);
            return -1;
        }
        json_array_foreach(arr, idx, v) {
            if (!json_is_string(v)) {
                snprintf(err->msg, sizeof err->msg, "Field 'stop' must be a string or an array of strings");
                return -1;
            }
            if (json_string_length(v) && json_string_length(v) < 256)
                p->stop[p->n_stop++] = strdup(json_string_value(v));
        }
    }
    for (int k = 0; k < p->n_stop; k++) {
        if (!p->stop[k]) {
            snprintf(err->msg, sizeof err->msg, "out of memory");
            return -1;
        }
    }
    return parse_logit_bias(e, body, p, err);
}

/* Message contents may be strings or arrays of {type:"text", text} parts;
 * parts are joined into strings kept in `owned` (freed by the caller). */
static int parse_messages(json_t *arr, prompt_msg_t *msgs, int *n, char **owned, json_err_t *err)
{
    size_t i;
    json_t *m;
    *n = 0;
    json_array_foreach(arr, i, m) {
        if (!json_is_object(m)) {
            snprintf(err->msg, sizeof err->msg, "messages[%zu] must be an object", i);
            return -1;
        }
        const char *role;
        if (json_get_string(m, "role", &role, err) != JSON_OK) {
            snprintf(err->msg, sizeof err->msg, "messages[%zu].role must be a string", i);
            return -1;
        }
        if (strcmp(role, "developer") == 0)
            role = "system";
        if (strcmp(role, "system") != 0 && strcmp(role, "user") != 0 &&
            strcmp(role, "assistant") != 0 && strcmp(role, "tool") != 0) {
            snprintf(err->msg, sizeof err->msg,
                     "messages[%zu].role must be system, user, assistant or tool", i);
            return -1;
        }
        json_t *c = json_object_get(m, "content");
        const char *content = NULL;
        if (json_is_string(c)) {
            content = json_string_value(c);
        } else if (json_is_array(c)) {
            buf_t b;
            buf_init(&b, 64u << 20);
            size_t k;
            json_t *part;
            json_array_foreach(c, k, part) {
                const char *type = NULL, *text = NULL;
                json_get_string(part, "type", &type, NULL);
                if (!type || strcmp(type, "text") != 0 || json_get_string(part, "text", &text, NULL)) {
                    buf_cleanup(&b);
                    snprintf(err->msg, sizeof err->msg,
                             "messages[%zu].content: only text parts are supported", i);
                    return -1;
                }
                if (buf_puts(&b, text) != BUF_OK) {
                    buf_cleanup(&b);
                    snprintf(err->msg, sizeof err->msg, "messages[%zu].content is too long", i);
                    return -1;
                }
            }
            owned[i] = buf_steal(&b, NULL);
            content = owned[i];
        } else if (json_is_null(c) && strcmp(role, "assistant") == 0) {
            content = "";
        } else {
            snprintf(err->msg, sizeof err->msg, "messages[%zu].content must be a string", i);
            return -1;
        }
        if (i > 0 && strcmp(role, "assistant") == 0 && strcmp(msgs[i - 1].role, "assistant") == 0) {
            snprintf(err->msg, sizeof err->msg,
                     "messages[%zu]: two assistant messages in a row (a user or tool message "
                     "must come between them)", i);
            return -1;
        }
        msgs[i].role = role;
        msgs[i].content = content;
        (*n)++;
    }
    return 0;
}

static json_t *usage_json(const sched_result_t *r)
{
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", r->prompt_n, "completion_tokens",
                     r->predicted_n, "total_tokens", r->prompt_n + r->predicted_n,
                     "prompt_tokens_details", "cached_tokens", r->cache_n);
}

static json_t *timings_json(const sched_result_t *r)
{
    int decoded = r->prompt_n - r->cache_n;
    return json_pack("{s:i, s:f, s:f, s:f, s:i, s:f, s:f, s:f, s:i, s:s, s:f, s:f, s:f, s:i}",
                     "prompt_n", decoded, "prompt_ms", r->prompt_ms, "prompt_per_token_ms",
                     decoded ? r->prompt_ms / decoded : 0.0, "prompt_per_second",
                     r->prompt_ms > 0 ? decoded * 1000.0 / r->prompt_ms : 0.0, "predicted_n",
                     r->predicted_n, "predicted_ms", r->predicted_ms, "predicted_per_token_ms",
                     r->predicted_n ? r->predicted_ms / r->predicted_n : 0.0,
                     "predicted_per_second",
                     r->predicted_ms > 0 ? r->predicted_n * 1000.0 / r->predicted_ms : 0.0,
                     "cache_n", r->cache_n, "cache_tier", sched_tier_name(r->cache_tier),
                     "queue_ms", r->queue_ms, "ttft_ms", r->ttft_ms, "restore_ms", r->restore_ms,
                     "draft_steps_waited", r->draft_steps_waited);
}

/* ---- generation requests ---- */

typedef enum { GEN_CHAT, GEN_COMPLETION, GEN_PREFILL } gen_kind_t;

typedef struct {
    atomic_int refs;
    engine_t *e;
    gen_kind_t kind;
    bool streaming, include_usage;
    httpd_stream_t *stream;
    sched_job_t *job;
    atomic_bool gone;
    char id[48];
    double created;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    sched_result_t res;      /* copy; res.text points into text */
    char *text;
    model_token_t *gen_tokens;
    bool return_tokens;
    bool return_progress;    /* llama-server's prompt_progress chunks (streamed) */
    int progress_cache;      /* their "cache": the first report's count, or -1 */
    int n_tokens;            /* prompt tokens (prefill) */
    bool pin;
    bool to_disk;            /* prefill "tier": "disk" */
    int index;               /* its choice's index (completions of several prompts) */
    char *echo;              /* completions "echo": the prompt's text, before the answer */
    json_t *lp_pending;      /* logprobs: entries not streamed yet (chat's shape) */
    json_t *lp_all;          /* logprobs: every entry (not streamed) */
    /* tool calls (chat with tools, tool_choice not "none"): the reply is
     * read for calls in the family's syntax; streamed, content goes out up
     * to what could start a call, and nothing after a call began */
    bool tool_mode;
    tools_family_t tf;
    buf_t tt;                /* the reply so far (streamed) */
    size_t tt_sent;          /* bytes of it streamed as content */
    bool in_call;
} gen_t;

static gen_t *gen_new(engine_t *e, gen_kind_t kind)
{
    gen_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    atomic_init(&g->refs, 1);
    atomic_init(&g->gone, false);
    g->e = e;
    g->kind = kind;
    g->created = epoch_s();
    g->progress_cache = -1;
    make_id(g->id, sizeof g->id, kind == GEN_CHAT ? "chatcmpl" : kind == GEN_COMPLETION ? "cmpl" : "prefill");
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    return g;
}

static void gen_unref(gen_t *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    sched_job_release(g->job);
    free(g->text);
    free(g->gen_tokens);
    free(g->echo);
    json_decref(g->lp_pending);
    json_decref(g->lp_all);
    buf_cleanup(&g->tt);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
    free(g);
}

/* "system_fingerprint": what decides the answers besides the request: the
 * model (its fingerprint) and the KV layout (cache types, attention path),
 * as "fp_<16 hex>_<8 hex>". */
static void system_fingerprint(const engine_t *e, char out[40])
{
    const char *layout = model_ctx_layout(e->ctx);
    uint32_t h = 2166136261u;
    for (const char *c = layout; c && *c; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    snprintf(out, 40, "fp_%016" PRIx64 "_%08" PRIx32, model_info(e->model)->fingerprint, h);
}

/* A streamed chunk with the given choices (a new reference, stolen). */
static json_t *chunk_with(gen_t *g, json_t *choices)
{
    char fp[40];
    system_fingerprint(g->e, fp);
    return json_pack("{s:s, s:s, s:i, s:s, s:s, s:o}", "id", g->id, "object",
                     g->kind == GEN_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)g->created, "model", g->e->model_id, "system_fingerprint", fp,
                     "choices", choices);
}

static json_t *chunk_json(gen_t *g, json_t *choice) { return chunk_with(g, json_pack("[o]", choice)); }

static void stream_write_or_cancel(gen_t *g, json_t *j)
{
    int rc = httpd_stream_sse_json(g->stream, j);
    if (rc != HTTPD_OK) {
        /* Client gone, or not reading fast enough to hold 1 MiB. */
        atomic_store(&g->gone, true);
        sched_cancel(g->job);
    }
}

/* {"token", "logprob", "bytes"} of one token (OpenAI's logprobs shape). */
static json_t *token_json(const engine_t *e, model_token_t id, float logprob, bool special)
{
    char piece[256];
    int n = model_token_piece(e->model, id, special, piece, sizeof piece);
    if (n < 0)
        n = 0;
    json_t *bytes = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(bytes, json_integer((unsigned char)piece[i]));
    return json_pack("{s:o, s:f, s:o}", "token", json_string_lossy(piece, (size_t)n), "logprob",
                     (double)logprob, "bytes", bytes);
}

static void on_token(void *ud, const sched_logprob_t *lp)
{
    gen_t *g = ud;
    json_t *entry = token_json(g->e, lp->id, lp->logprob, g->tool_mode);
    json_t *top = json_array();
    for (int k = 0; k < lp->n_top; k++)
        json_array_append_new(top, token_json(g->e, lp->top[k].id, lp->top[k].logprob, g->tool_mode));
    json_object_set_new(entry, "top_logprobs", top);
    json_t *list = g->streaming ? g->lp_pending : g->lp_all;
    if (list)
        json_array_append(list, entry);
    json_decref(entry);
}

/* Chat's "logprobs": {"content": [...]}; the completions API's older
 * shape: {"tokens", "token_logprobs", "top_logprobs" (token -> logprob),
 * "text_offset"}. Takes `entries` (may be NULL: null). */
static json_t *logprobs_json(gen_t *g, json_t *entries, size_t text_offset)
{
    if (!entries)
        return json_null();
    if (g->kind == GEN_CHAT)
        return json_pack("{s:o, s:n}", "content", entries, "refusal");
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        const char *tok = json_string_value(json_object_get(e, "token"));
        json_array_append(tokens, json_object_get(e, "token"));
        json_array_append(lps, json_object_get(e, "logprob"));
        json_t *map = json_object();
        size_t k;
        json_t *alt;
        json_array_foreach(json_object_get(e, "top_logprobs"), k, alt)
            json_object_set(map, json_string_value(json_object_get(alt, "token")),
                            json_object_get(alt, "logprob"));
        json_array_append_new(tops, map);
        json_array_append_new(offs, json_integer((json_int_t)text_offset));
        text_offset += tok ? strlen(tok) : 0;
    }
    json_decref(entries);
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps,
                     "top_logprobs", tops, "text_offset", offs);
}

/* The entries gathered since the last chunk, as that chunk's logprobs. */
static json_t *pending_logprobs(gen_t *g)
{
    if (!g->lp_pending)
        return json_null();
    json_t *entries = g->lp_pending;
    g->lp_pending = json_array();
    return logprobs_json(g, entries, 0);
}

/* A streamed content chunk of text[0..len). */
static void stream_content(gen_t *g, const char *text, size_t len)
{
    json_t *s = json_string_lossy(text, len);
    json_t *choice = g->kind == GEN_CHAT
                         ? json_pack("{s:i, s:{s:o}, s:n}", "index", g->index, "delta", "content",
                                     s, "finish_reason")
                         : json_pack("{s:i, s:o, s:n}", "index", g->index, "text", s,
                                     "finish_reason");
    json_object_set_new(choice, "logprobs", pending_logprobs(g));
    stream_write_or_cancel(g, chunk_json(g, choice));
}

static void on_text(void *ud, const char *text, size_t len)
{
    gen_t *g = ud;
    if (!g->streaming || atomic_load(&g->gone))
        return;
    if (!g->tool_mode) {
        stream_content(g, text, len);
        return;
    }
    if (buf_append(&g->tt, text, len) != BUF_OK || g->in_call)
        return;
    if (tools_in_call(g->tf, g->tt.data, g->tt.len)) {
        g->in_call = true;
        return;
    }
    size_t upto = g->tt.len - tools_holdback(g->tf, g->tt.data, g->tt.len);
    if (upto > g->tt_sent) {
        stream_content(g, g->tt.data + g->tt_sent, upto - g->tt_sent);
        g->tt_sent = upto;
    }
}

/* A streamed reply with tools, at its end: the calls as tool_calls deltas
 * (each whole, with its index), or the text held back as content. Returns
 * whether calls were sent. */
static bool stream_tool_calls(gen_t *g)
{
    json_t *calls = NULL;
    char *content = NULL;
    const char *rest = g->tt.data ? g->tt.data + g->tt_sent : "";
    size_t rest_len = g->tt.len - g->tt_sent;
    if (tools_parse_output(g->tf, rest, rest_len, &calls, &content) != TOOLS_OK || !calls) {
        free(content);
        if (rest_len)
            stream_content(g, rest, rest_len);
        return false;
    }
    if (content)
        stream_content(g, content, strlen(content));
    free(content);
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        json_object_set_new(c, "index", json_integer((json_int_t)i));
        json_t *choice = json_pack("{s:i, s:{s:[O]}, s:n}", "index", g->index, "delta",
                                   "tool_calls", c, "finish_reason");
        json_object_set_new(choice, "logprobs", pending_logprobs(g));
        stream_write_or_cancel(g, chunk_json(g, choice));
    }
    json_decref(calls);
    return true;
}

static void on_progress(void *ud, int done, int total)
{
    gen_t *g = ud;
    if (!g->streaming || atomic_load(&g->gone))
        return;
    if (g->kind == GEN_PREFILL) {
        stream_write_or_cancel(g, json_pack("{s:s, s:i, s:i}", "event", "progress", "done", done,
                                            "total", total));
        return;
    }
    if (!g->return_progress)
        return;
    /* llama-server's return_progress: a chunk without choices carrying
     * prompt_progress; the first report is what the cache gave. */
    if (g->progress_cache < 0)
        g->progress_cache = done;
    json_t *c = chunk_with(g, json_array());
    json_object_set_new(c, "prompt_progress",
                        json_pack("{s:i, s:i, s:i, s:I}", "total", total, "cache", g->progress_cache,
                                  "processed", done, "time_ms",
                                  (json_int_t)((epoch_s() - g->created) * 1000.0)));
    stream_write_or_cancel(g, c);
}

static json_t *prefill_result_json(gen_t *g, const sched_result_t *r);

/* The status and message for a disk-tier write that did not end durable
 * (kvstore_when_written's rc, or kvstore_set_disk_only's). */
static int disk_error(int rc, char *msg, size_t cap)
{
    switch (rc) {
    case KVSTORE_ENOSPACE:
        snprintf(msg, cap, "no room in the disk tier: pinned entries fill its budget (--cache-disk)");
        return 507;
    case KVSTORE_ETOOBIG:
        snprintf(msg, cap, "the snapshot is larger than the disk tier's budget (--cache-disk)");
        return 507;
    case KVSTORE_EIO:
        snprintf(msg, cap, "the snapshot could not be written to the disk tier (a full or failing "
                 "disk: see the engine log)");
        return 507;
    case KVSTORE_ENOTFOUND:
        snprintf(msg, cap, "the entry was deleted before its file was written");
        return 409;
    default:
        snprintf(msg, cap, "%s", kvstore_strerror(rc));
        return 500;
    }
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int rc;
} durable_t;

static void on_durable(void *ud, int rc)
{
    durable_t *d = ud;
    pthread_mutex_lock(&d->lock);
    d->rc = rc;
    d->done = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

/* Wait until entry id's file is durable; returns KVSTORE_OK or why not.
 * Blocks the calling (handler) thread for as long as the writer takes. */
static int wait_durable(engine_t *e, const char *id)
{
    durable_t d = { .done = false, .rc = KVSTORE_OK };
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.cond, NULL);
    int rc = kvstore_when_written(e->store, id, on_durable, &d);
    if (rc == KVSTORE_OK) {
        pthread_mutex_lock(&d.lock);
        while (!d.done)
            pthread_cond_wait(&d.cond, &d.lock);
        pthread_mutex_unlock(&d.lock);
        rc = d.rc;
    }
    pthread_mutex_destroy(&d.lock);
    pthread_cond_destroy(&d.cond);
    return rc;
}

/* The end of a streamed prefill: its last event (or an error), [DONE],
 * and the stream closed. Takes over the sink's reference to g. */
static void prefill_stream_end(gen_t *g, const sched_result_t *r, int disk_rc)
{
    if (!atomic_load(&g->gone)) {
        char msg[256];
        if (r->rc != SCHED_OK) {
            httpd_stream_sse_json(g->stream,
                                  json_pack("{s:{s:s, s:s, s:i}}", "error", "message", r->error,
                                            "type", "server_error", "code", sched_status(r->rc)));
        } else if (disk_rc != KVSTORE_OK) {
            int status = disk_error(disk_rc, msg, sizeof msg);
            httpd_stream_sse_json(g->stream,
                                  json_pack("{s:{s:s, s:s, s:i}}", "error", "message", msg, "type",
                                            status >= 500 ? "server_error"
                                                          : "invalid_request_error",
                                            "code", status));
        } else {
            json_t *res = prefill_result_json(g, r);
            json_object_set_new(res, "event", json_string("done"));
            httpd_stream_sse_json(g->stream, res);
        }
        httpd_stream_sse(g->stream, "[DONE]");
    }
    httpd_stream_close(g->stream);
    g->stream = NULL;
    gen_unref(g);
}

/* kvstore_when_written's callback for a streamed "tier": "disk" prefill
 * (the writer thread, or the decode thread when already decided). */
static void on_stream_durable(void *ud, int rc)
{
    gen_t *g = ud;
    prefill_stream_end(g, &g->res, rc);
}

static void on_done(void *ud, const sched_result_t *r)
{
    gen_t *g = ud;
    if (g->streaming && g->kind == GEN_PREFILL) {
        if (r->rc == SCHED_OK && g->to_disk && !atomic_load(&g->gone)) {
            /* Answer once the file is durable, from the writer's callback. */
            g->res = *r;
            g->res.text = "";
            g->res.text_len = 0;
            if (kvstore_when_written(g->e->store, r->entry_id, on_stream_durable, g) == KVSTORE_OK)
                return;
            prefill_stream_end(g, r, KVSTORE_ENOMEM);
            return;
        }
        prefill_stream_end(g, r, KVSTORE_OK);
        return;
    }
    if (g->streaming) {
        if (!atomic_load(&g->gone)) {
            if (r->rc != SCHED_OK) {
                httpd_stream_sse_json(g->stream,
                                      json_pack("{s:{s:s, s:s, s:i}}", "error", "message", r->error,
                                                "type", "server_error", "code", sched_status(r->rc)));
            } else if (g->kind == GEN_PREFILL) {
                json_t *res = prefill_result_json(g, r);
                json_object_set_new(res, "event", json_string("done"));
                httpd_stream_sse_json(g->stream, res);
            } else {
                const char *reason = r->finish_reason;
                if (g->tool_mode && stream_tool_calls(g) && strcmp(reason, "length") != 0)
                    reason = "tool_calls";
                json_t *choice = g->kind == GEN_CHAT
                                     ? json_pack("{s:i, s:{}, s:s}", "index", g->index, "delta",
                                                 "finish_reason", reason)
                                     : json_pack("{s:i, s:s, s:s}", "index", g->index, "text",
                                                 "", "finish_reason", r->finish_reason);
                json_object_set_new(choice, "logprobs", pending_logprobs(g));
                json_t *last = chunk_json(g, choice);
                json_object_set_new(last, "timings", timings_json(r));
                httpd_stream_sse_json(g->stream, last);
                if (g->include_usage) {
                    /* as OpenAI: a last chunk with no choices, only when asked */
                    json_t *u = chunk_with(g, json_array());
                    json_object_set_new(u, "usage", usage_json(r));
                    json_object_set_new(u, "timings", timings_json(r));   /* as llama-server */
                    httpd_stream_sse_json(g->stream, u);
                }
            }
            httpd_stream_sse(g->stream, "[DONE]");
        }
        httpd_stream_close(g->stream);
        g->stream = NULL;
        gen_unref(g);
        return;
    }
    pthread_mutex_lock(&g->lock);
    g->res = *r;
    g->text = malloc(r->text_len + 1);
    if (g->text) {
        memcpy(g->text, r->text, r->text_len);
        g->text[r->text_len] = '\0';
    }
    g->res.text = g->text ? g->text : "";
    g->res.text_len = g->text ? r->text_len : 0;
    g->res.gen_tokens = NULL;
    g->res.n_gen_tokens = 0;
    if (g->return_tokens && r->n_gen_tokens > 0) {
        g->gen_tokens = malloc((size_t)r->n_gen_tokens * sizeof *g->gen_tokens);
        if (g->gen_tokens) {
            memcpy(g->gen_tokens, r->gen_tokens, (size_t)r->n_gen_tokens * sizeof *g->gen_tokens);
            g->res.gen_tokens = g->gen_tokens;
            g->res.n_gen_tokens = r->n_gen_tokens;
        }
    }
    g->done = true;
    pthread_cond_signal(&g->cond);
    pthread_mutex_unlock(&g->lock);
    gen_unref(g);
}

static void on_stream_close(httpd_stream_t *s, void *user)
{
    (void)s;
    gen_t *g = user;
    atomic_store(&g->gone, true);
    sched_cancel(g->job);
}

/* Wait for a non-streaming job, cancelling it if the client leaves. */
static void wait_done(gen_t *g, httpd_req_t *req)
{
    pthread_mutex_lock(&g->lock);
    while (!g->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cond, &g->lock, &ts);
        if (!g->done && httpd_req_gone(req))
            sched_cancel(g->job);
    }
    pthread_mutex_unlock(&g->lock);
}

/* Constrained output: `response_format` (OpenAI: "text", "json_object",
 * "json_schema" {name, schema, strict}), or llama.cpp's own `grammar`
 * (GBNF) or `json_schema` (a bare schema). The grammar goes to p->grammar,
 * checked against the model's vocabulary. Returns 0, or -1 with the reason
 * for a 400 in err. */
static int parse_format(const engine_t *e, const json_t *body, sched_job_params_t *p,
                        json_err_t *err)
{
    const json_t *rf = json_object_get(body, "response_format");
    const json_t *gr = json_object_get(body, "grammar");
    const json_t *js = json_object_get(body, "json_schema");
    if (rf && json_is_null(rf))
        rf = NULL;
    if (gr && (json_is_null(gr) || (json_is_string(gr) && json_string_length(gr) == 0)))
        gr = NULL;
    if (js && json_is_null(js))
        js = NULL;
    if ((rf != NULL) + (gr != NULL) + (js != NULL) > 1) {
        snprintf(err->msg, sizeof err->msg,
                 "Give one of 'response_format', 'grammar' and 'json_schema', not several");
        return -1;
    }
    char msg[256] = "";
    const char *what = NULL;
    int rc = 0;
    if (rf) {
        const char *type = json_string_value(json_object_get(rf, "type"));
        if (!json_is_object(rf) || !type) {
            snprintf(err->msg, sizeof err->msg,
                     "'response_format' must be an object with a 'type'");
            return -1;
        }
        if (strcmp(type, "text") == 0)
            return 0;
        if (strcmp(type, "json_object") == 0) {
            p->grammar = strdup(jsonschema_object_gbnf());
            what = "response_format";
        } else if (strcmp(type, "json_schema") == 0) {
            const json_t *spec = json_object_get(rf, "json_schema");
            const json_t *schema = json_object_get(spec, "schema");
            if (!json_is_object(spec) || !json_is_object(schema)) {
                snprintf(err->msg, sizeof err->msg,
                         "'response_format.json_schema' must be an object with a 'schema' "
                         "object");
                return -1;
            }
            what = "response_format.json_schema";
            rc = jsonschema_to_gbnf(schema, &p->grammar, msg, sizeof msg);
        } else {
            snprintf(err->msg, sizeof err->msg,
                     "'response_format': type must be \"text\", \"json_object\" or "
                     "\"json_schema\" (not \"%.40s\")", type);
            return -1;
        }
    } else if (js) {
        if (!json_is_object(js)) {
            snprintf(err->msg, sizeof err->msg, "'json_schema' must be a JSON Schema object");
            return -1;
        }
        what = "json_schema";
        rc = jsonschema_to_gbnf(js, &p->grammar, msg, sizeof msg);
    } else if (gr) {
        if (!json_is_string(gr)) {
            snprintf(err->msg, sizeof err->msg, "'grammar' must be a string (GBNF)");
            return -1;
        }
        if (json_string_length(gr) > JSONSCHEMA_MAX_GBNF) {
            snprintf(err->msg, sizeof err->msg, "'grammar' is longer than %d bytes",
                     JSONSCHEMA_MAX_GBNF);
            return -1;
        }
        what = "grammar";
        p->grammar = strdup(json_string_value(gr));
    } else {
        return 0;
    }
    if (rc != 0) {
        snprintf(err->msg, sizeof err->msg, "%s: %.200s", what, msg);
        return -1;
    }
    if (!p->grammar) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -1;
    }
    if (model_grammar_check(e->model, p->grammar, msg, sizeof msg) != MODEL_OK) {
        snprintf(err->msg, sizeof err->msg, "%s: the grammar does not parse: %.180s", what, msg);
        return -1;
    }
    return 0;
}

/* logprobs: chat's "logprobs" (bool) and "top_logprobs" (0..20), or the
 * completions API's "logprobs" (alternatives, 0..20), into p->logprobs
 * (-1: none). Returns 0, or -1 with the reason in err. */
static int parse_logprobs(const json_t *body, gen_kind_t kind, sched_job_params_t *p,
                          json_err_t *err)
{
    const json_t *lp = json_object_get(body, "logprobs");
    const json_t *top = json_object_get(body, "top_logprobs");
    p->logprobs = -1;
    if (kind == GEN_COMPLETION) {
        if (!lp || json_is_null(lp))
            return 0;
        if (!json_is_integer(lp) || json_integer_value(lp) < 0 ||
            json_integer_value(lp) > SCHED_TOP_LOGPROBS) {
            snprintf(err->msg, sizeof err->msg, "'logprobs' must be an integer from 0 to %d",
                     SCHED_TOP_LOGPROBS);
            return -1;
        }
        p->logprobs = (int)json_integer_value(lp);
        return 0;
    }
    if (lp && !json_is_null(lp) && !json_is_boolean(lp)) {
        snprintf(err->msg, sizeof err->msg, "'logprobs' must be true or false");
        return -1;
    }
    if (top && !json_is_null(top)) {
        if (!json_is_integer(top) || json_integer_value(top) < 0 ||
            json_integer_value(top) > SCHED_TOP_LOGPROBS) {
            snprintf(err->msg, sizeof err->msg, "'top_logprobs' must be an integer from 0 to %d",
                     SCHED_TOP_LOGPROBS);
            return -1;
        }
        if (!json_is_true(lp)) {
            snprintf(err->msg, sizeof err->msg, "'top_logprobs' needs 'logprobs': true");
            return -1;
        }
    }
    if (json_is_true(lp))
        p->logprobs = json_is_integer(top) ? (int)json_integer_value(top) : 0;
    return 0;
}

/* Request fields this server cannot honour are refused with a 400 that
 * says so, never ignored (docs/openai.md lists every field). Returns 0, or
 * -1 with the message in err. */
static int refuse_unsupported(const json_t *body, json_err_t *err)
{
    static const struct {
        const char *key;
        const char *why;
    } refused[] = {
        { "functions", "functions (deprecated by OpenAI for 'tools') are not supported" },
        { "function_call", "functions (deprecated by OpenAI for 'tools') are not supported" },
        { "audio", "audio output is not supported (text models only)" },
        { "prediction", "predicted outputs are not supported" },
        { "web_search_options", "web search is not supported" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        json_t *v = json_object_get(body, refused[i].key);
        /* null, false, empty: the client's library filling in a default */
        if (!v || json_is_null(v) || json_is_false(v) ||
            (json_is_array(v) && json_array_size(v) == 0) ||
            (json_is_object(v) && json_object_size(v) == 0) ||
            (json_is_string(v) && strcmp(json_string_value(v), "none") == 0))
            continue;
        snprintf(err->msg, sizeof err->msg, "'%s': %s", refused[i].key, refused[i].why);
        return -1;
    }
    json_t *mod = json_object_get(body, "modalities");
    size_t i;
    json_t *m;
    json_array_foreach(mod, i, m) {
        if (!json_is_string(m) || strcmp(json_string_value(m), "text") != 0) {
            snprintf(err->msg, sizeof err->msg, "'modalities': only \"text\" is supported");
            return -1;
        }
    }
    return 0;
}

/* Submit a job (g's sink), reporting a refusal to the client (as an SSE
 * error event once a stream is open). Returns 0 when submitted. */
static int submit(engine_t *e, httpd_req_t *req, gen_t *g, sched_job_params_t *p)
{
    const sched_sink_t sink = { on_text, on_progress, on_done, on_token };
    atomic_fetch_add(&g->refs, 1);   /* the sink's reference */
    if (g->streaming) {
        /* on_close only cancels: it may fire before the job exists. */
        httpd_stream_on_close(g->stream, on_stream_close, g);
    }
    int rc = sched_submit(e->sched, p, &sink, g, &g->job);
    if (rc == SCHED_OK)
        return 0;
    sched_job_params_cleanup(p);
    gen_unref(g);   /* the sink's reference: no callback will come */
    if (g->streaming) {
        httpd_stream_on_close(g->stream, NULL, NULL);
        httpd_stream_sse_json(g->stream, json_pack("{s:{s:s, s:s, s:i}}", "error", "message",
                                                   sched_strerror(rc), "type",
                                                   "unavailable_error", "code", sched_status(rc)));
        httpd_stream_sse(g->stream, "[DONE]");
        httpd_stream_close(g->stream);
    } else {
        httpd_reply_error(req, sched_status(rc), "%s", sched_strerror(rc));
    }
    return -1;
}

/* Submit a job that is not streamed and wait for it. Returns 0 with the
 * result in g->res, or -1 once the client was answered with the error. */
static int submit_and_wait(engine_t *e, httpd_req_t *req, gen_t *g, sched_job_params_t *p)
{
    if (submit(e, req, g, p) != 0)
        return -1;
    wait_done(g, req);
    const sched_result_t *r = &g->res;
    if (r->rc != SCHED_OK) {
        httpd_reply_error(req, sched_status(r->rc), "%s",
                          r->error[0] ? r->error : sched_strerror(r->rc));
        return -1;
    }
    return 0;
}

/* The choice of a finished chat or completion job (not streamed). */
static json_t *choice_json(gen_t *g)
{
    const sched_result_t *r = &g->res;
    json_t *text;
    if (g->echo) {
        size_t el = strlen(g->echo);
        char *both = malloc(el + r->text_len + 1);
        if (!both)
            return NULL;
        memcpy(both, g->echo, el);
        memcpy(both + el, r->text, r->text_len);
        text = json_string_lossy(both, el + r->text_len);
        free(both);
    } else {
        text = json_string_lossy(r->text, r->text_len);
    }
    json_t *choice = g->kind == GEN_CHAT
                         ? json_pack("{s:i, s:{s:s, s:o}, s:s}", "index", g->index, "message",
                                     "role", "assistant", "content", text, "finish_reason",
                                     r->finish_reason)
                         : json_pack("{s:i, s:o, s:s}", "index", g->index, "text", text,
                                     "finish_reason", r->finish_reason);
    if (choice && g->tool_mode) {
        json_t *calls = NULL;
        char *content = NULL;
        if (tools_parse_output(g->tf, r->text, r->text_len, &calls, &content) == TOOLS_OK && calls) {
            json_t *msg = json_object_get(choice, "message");
            json_object_set_new(msg, "content", content ? json_string_lossy(content, strlen(content))
                                                        : json_null());
            json_object_set_new(msg, "tool_calls", calls);
            /* a reply cut at max_tokens says so, calls or not */
            if (strcmp(r->finish_reason, "length") != 0)
                json_object_set_new(choice, "finish_reason", json_string("tool_calls"));
        }
        free(content);
    }
    if (choice) {
        json_t *entries = g->lp_all;
        g->lp_all = NULL;
        json_object_set_new(choice, "logprobs",
                            logprobs_json(g, entries, g->echo ? strlen(g->echo) : 0));
    }
    if (choice && g->return_tokens) {
        /* kvchat extension: the generated token ids */
        json_t *toks = json_array();
        for (int i = 0; i < r->n_gen_tokens; i++)
            json_array_append_new(toks, json_integer(r->gen_tokens[i]));
        json_object_set_new(choice, "tokens", toks);
    }
    return choice;
}

/* The whole answer to a chat or completion that is not streamed. */
static json_t *answer_json(engine_t *e, gen_t *g, json_t *choices, json_t *usage, json_t *timings)
{
    char fp[40];
    system_fingerprint(e, fp);
    return json_pack("{s:s, s:s, s:i, s:s, s:s, s:o, s:o, s:o}", "id", g->id, "object",
                     g->kind == GEN_CHAT ? "chat.completion" : "text_completion", "created",
                     (json_int_t)g->created, "model", e->model_id, "system_fingerprint", fp,
                     "choices", choices, "usage", usage, "timings", timings);
}

/* Submit and answer (stream or wait). Takes over p's allocations. */
static void run_job(engine_t *e, httpd_req_t *req, gen_t *g, sched_job_params_t *p)
{
    if (g->streaming) {
        if (httpd_stream_open(req, "text/event-stream", &g->stream) != HTTPD_OK) {
            sched_job_params_cleanup(p);
            httpd_reply_error(req, 503, "the server is shutting down");
            gen_unref(g);
            return;
        }
        if (g->kind == GEN_CHAT)
            httpd_stream_sse_json(g->stream,
                                  chunk_json(g, json_pack("{s:i, s:{s:s, s:s}, s:n}", "index", 0,
                                                          "delta", "role", "assistant", "content",
                                                          "", "finish_reason")));
        else if (g->echo)
            httpd_stream_sse_json(g->stream,
                                  chunk_json(g, json_pack("{s:i, s:s, s:n, s:n}", "index",
                                                          g->index, "text", g->echo, "logprobs",
                                                          "finish_reason")));
        if (submit(e, req, g, p) == 0 && atomic_load(&g->gone))
            sched_cancel(g->job);
        gen_unref(g);   /* the handler's reference; the sink finishes */
        return;
    }
    if (g->kind != GEN_PREFILL) {
        if (submit_and_wait(e, req, g, p) == 0) {
            const sched_result_t *r = &g->res;
            httpd_reply_json(req, 200, answer_json(e, g, json_pack("[o]", choice_json(g)),
                                                   usage_json(r), timings_json(r)));
        }
        gen_unref(g);
        return;
    }
    if (submit_and_wait(e, req, g, p) != 0) {
        gen_unref(g);
        return;
    }
    const sched_result_t *r = &g->res;
    if (g->to_disk) {
        /* "tier": "disk": answer once the file is durable. */
        int drc = wait_durable(e, r->entry_id);
        if (drc != KVSTORE_OK) {
            char msg[256];
            int status = disk_error(drc, msg, sizeof msg);
            httpd_reply_error(req, status, "%s", msg);
            gen_unref(g);
            return;
        }
    }
    httpd_reply_json(req, 200, prefill_result_json(g, r));
    gen_unref(g);
}

/* Hand a parsed chat or completion request to the scheduler and answer
 * (stream or wait). Takes over p's allocations. */
/* The most prompts one completions request may carry (n choices each),
 * and the most choices one request may ask for in all. */
#define MAX_PROMPTS 16
#define MAX_CHOICES 16

/* How a chat prompt ends (llama-server's and vLLM's fields): a final
 * assistant message is continued (its text is the start of the reply:
 * llama-server's default, vLLM's continue_final_message), unless
 * add_generation_prompt is true or continue_final_message false; the two
 * true together, or either asking to continue without a final assistant
 * message, are 400s. An empty final assistant message is dropped (the
 * reply starts from nothing). Returns 0 with *end set (and *n maybe one
 * less), or -1 with a message in err. */
static int parse_continuation(const json_t *body, const prompt_msg_t *msgs, int *n,
                              prompt_end_t *end, json_err_t *err)
{
    bool cont = false, add_gen = true;
    int rc_cont = json_get_bool(body, "continue_final_message", &cont, err);
    int rc_add = json_get_bool(body, "add_generation_prompt", &add_gen, err);
    if (rc_cont == JSON_ETYPE || rc_add == JSON_ETYPE)
        return -1;
    const bool explicit_cont = rc_cont == JSON_OK && cont;
    const bool explicit_add = rc_add == JSON_OK && add_gen;
    if (explicit_cont && explicit_add) {
        snprintf(err->msg, sizeof err->msg,
                 "add_generation_prompt and continue_final_message cannot both be true");
        return -1;
    }
    const bool last_assistant = *n > 0 && strcmp(msgs[*n - 1].role, "assistant") == 0;
    if ((explicit_cont || (rc_add == JSON_OK && !add_gen)) && !last_assistant) {
        snprintf(err->msg, sizeof err->msg,
                 "%s needs a final assistant message to continue",
                 explicit_cont ? "continue_final_message" : "add_generation_prompt: false");
        return -1;
    }
    *end = PROMPT_GENERATE;
    if (!last_assistant || explicit_add || (rc_cont == JSON_OK && !cont))
        return 0;
    if (msgs[*n - 1].content[strspn(msgs[*n - 1].content, " \t\r\n")] == '\0')
        (*n)--;
    else
        *end = PROMPT_DRAFT;   /* up to the end of its content: no closer */
    return 0;
}

/* A chat generation set up from the request (NULL: out of memory). */
static gen_t *chat_gen(engine_t *e, json_t *body, bool stream, bool usage,
                       const tools_req_t *treq, tools_family_t tf, sched_job_params_t *p)
{
    gen_t *g = gen_new(e, GEN_CHAT);
    if (!g)
        return NULL;
    g->streaming = stream;
    g->include_usage = usage;
    if (p->logprobs >= 0) {
        g->lp_pending = json_array();
        g->lp_all = json_array();
    }
    if (treq && tools_req_choice(treq) != TOOLS_CHOICE_NONE) {
        g->tool_mode = true;
        g->tf = tf;
        buf_init(&g->tt, 64u << 20);
        /* a family's call marker may be a control token ("[TOOL_CALLS]") */
        p->render_special = true;
    }
    json_get_bool(body, "return_tokens", &g->return_tokens, NULL);
    json_get_bool(body, "return_progress", &g->return_progress, NULL);
    return g;
}

/* Usage over several choices: each prompt counted once (first), every
 * choice's completion. */
static void add_usage(sched_result_t *total, const sched_result_t *r, bool first)
{
    if (first) {
        total->prompt_n += r->prompt_n;
        total->cache_n += r->cache_n;
        total->prompt_ms += r->prompt_ms;
    }
    total->predicted_n += r->predicted_n;
    total->predicted_ms += r->predicted_ms;
}

/* The seed of choice k: the request's plus k (so that choices differ and
 * each is reproducible), or random when none was given. */
static uint32_t choice_seed(uint32_t seed, int k)
{
    return seed == 0xFFFFFFFFu ? seed : (uint32_t)(seed + (uint32_t)k) % 0xFFFFFFFFu;
}

/* A chat answer: streamed or waited for; n > 1 choices (not streamed) are
 * generated one after the other, the prompt restored from the cache after
 * the first. Takes over p's allocations. */
static void start_generation(engine_t *e, httpd_req_t *req, json_t *body, bool stream,
                             bool usage, const tools_req_t *treq, tools_family_t tf,
                             sched_job_params_t *p, int n)
{
    if (n == 1) {
        gen_t *g = chat_gen(e, body, stream, usage, treq, tf, p);
        if (!g) {
            httpd_reply_error(req, 500, "out of memory");
            return;
        }
        run_job(e, req, g, p);
        return;
    }
    json_t *choices = json_array();
    sched_result_t total = { 0 };
    gen_t *first = NULL;
    for (int k = 0; k < n; k++) {
        sched_job_params_t q;
        gen_t *g = NULL;
        if (!choices || sched_job_params_copy(&q, p) != SCHED_OK ||
            !(g = chat_gen(e, body, false, usage, treq, tf, &q))) {
            if (choices)
                sched_job_params_cleanup(&q);
            httpd_reply_error(req, 500, "out of memory");
            goto out;
        }
        q.sampling.seed = choice_seed(p->sampling.seed, k);
        g->index = k;
        if (submit_and_wait(e, req, g, &q) != 0) {
            gen_unref(g);
            goto out;
        }
        json_array_append_new(choices, choice_json(g));
        add_usage(&total, &g->res, k == 0);
        if (!first) {
            first = g;
            total.cache_tier = g->res.cache_tier;
        } else {
            gen_unref(g);
        }
    }
    httpd_reply_json(req, 200, answer_json(e, first, choices, usage_json(&total),
                                           timings_json(&total)));
    choices = NULL;
out:
    json_decref(choices);
    gen_unref(first);
    sched_job_params_cleanup(p);
}

/* "n": how many choices (1 to MAX_CHOICES; more than one not streamed).
 * Returns 0, or -1 with a message for a 400 in err. */
static int parse_n(const json_t *body, bool stream, int *n, json_err_t *err)
{
    int64_t v = 1;
    int rc = json_get_int_range(body, "n", 1, MAX_CHOICES, &v, err);
    if (rc == JSON_ETYPE) {
        snprintf(err->msg, sizeof err->msg, "Field 'n' must be an integer from 1 to %d",
                 MAX_CHOICES);
        return -1;
    }
    if (v > 1 && stream) {
        snprintf(err->msg, sizeof err->msg,
                 "n > 1 is not supported with stream: send n requests, or stream: false");
        return -1;
    }
    *n = (int)v;
    return 0;
}

/* Counting a prompt that does not fit stops here. */
#define COUNT_MAX (1 << 24)

/* 400 as OpenAI says it (code "context_length_exceeded", both numbers):
 * the prompt has n tokens (at_least: n or more). */
static void reply_too_long(engine_t *e, httpd_req_t *req, int n, bool at_least)
{
    char msg[320];
    int cap = sched_slot_capacity(e->sched);
    snprintf(msg, sizeof msg,
             "This model's maximum context length is %d tokens (a slot's context, prompt and "
             "reply). However, your prompt has %s%d tokens. Please reduce the length of the "
             "messages or prompt.",
             cap, at_least ? "at least " : "", n);
    /* n_prompt_tokens and n_ctx: llama-server's fields, for its clients */
    httpd_reply_json(req, 400, json_pack("{s:{s:s, s:s, s:s, s:n, s:i, s:i}}", "error", "message",
                                         msg, "type", "invalid_request_error", "code",
                                         "context_length_exceeded", "param", "n_prompt_tokens", n,
                                         "n_ctx", cap));
}

/* Does the conversation hold tool calls or tool results? */
static bool tools_in_history(const json_t *messages)
{
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if ((role && strcmp(role, "tool") == 0) || json_object_get(m, "tool_calls"))
            return true;
    }
    return false;
}

/* tool_choice "required" or a named function: a grammar forces the call.
 * Returns 0, or -1 with the reason in err. */
static int parse_tool_grammar(const engine_t *e, const tools_req_t *treq, tools_family_t tf,
                              sched_job_params_t *p, json_err_t *err)
{
    if (!treq)
        return 0;
    tools_choice_t c = tools_req_choice(treq);
    if (c != TOOLS_CHOICE_REQUIRED && c != TOOLS_CHOICE_NAMED)
        return 0;
    if (p->grammar) {
        snprintf(err->msg, sizeof err->msg, "A required or named 'tool_choice' cannot be "
                                            "combined with 'response_format' or 'grammar'");
        return -1;
    }
    char msg[256] = "";
    int rc = tools_grammar(tf, treq, &p->grammar, msg, sizeof msg);
    if (rc != TOOLS_OK || !p->grammar) {
        snprintf(err->msg, sizeof err->msg, "%s", msg[0] ? msg : tools_strerror(rc));
        return -1;
    }
    if (model_grammar_check(e->model, p->grammar, msg, sizeof msg) != MODEL_OK) {
        snprintf(err->msg, sizeof err->msg, "tool_choice: the call's grammar does not parse: %.180s",
                 msg);
        return -1;
    }
    return 0;
}

static void h_chat(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    json_t *body = begin_json(e, req);
    if (!body)
        return;
    json_err_t err = { "" };
    json_t *arr;
    int rc = json_get_array(body, "messages", &arr, &err);
    if (rc != JSON_OK || json_array_size(arr) == 0 || json_array_size(arr) > MAX_MESSAGES) {
        httpd_reply_error(req, 400, "%s", rc == JSON_ETYPE ? err.msg
                                          : rc == JSON_EMISSING ? "Missing required field 'messages'"
                                          : json_array_size(arr) == 0 ? "'messages' must not be empty"
                                                                      : "too many messages");
        json_decref(body);
        return;
    }
    /* Tools, earlier calls and their results become text in the model
     * family's syntax (tools.h) before the template renders the messages. */
    tools_req_t *treq = NULL;
    json_t *rendered = NULL;
    tools_family_t tf = tools_family(model_chat_template(e->model));
    char terr[320] = "";
    rc = tools_parse(json_object_get(body, "tools"), json_object_get(body, "tool_choice"),
                     json_object_get(body, "parallel_tool_calls"), &treq, terr, sizeof terr);
    if (rc == TOOLS_OK && (treq || tools_in_history(arr))) {
        rc = tools_render(tf, treq, arr, &rendered, terr, sizeof terr);
        if (rc == TOOLS_OK)
            arr = rendered;
    }
    if (rc != TOOLS_OK) {
        if (rc == TOOLS_EFAMILY)
            httpd_reply_error(req, 400, "This model's chat template has no tool calling (tools "
                                        "need a ChatML template as Qwen2.5's and Hermes', Llama "
                                        "3.x's or Mistral's)");
        else
            httpd_reply_error(req, 400, "%s", terr[0] ? terr : tools_strerror(rc));
        tools_req_free(treq);
        json_decref(body);
        return;
    }
    size_t nm = json_array_size(arr);
    prompt_msg_t *msgs = calloc(nm, sizeof *msgs);
    char **owned = calloc(nm, sizeof *owned);
    sched_job_params_t p;
    sched_job_params_init(&p);
    bool stream = false, usage = false;
    int n = 0, n_choices = 1;
    prompt_end_t end = PROMPT_GENERATE;
    if (!msgs || !owned) {
        httpd_reply_error(req, 500, "out of memory");
    } else if (json_object_get(body, "echo") && !json_is_false(json_object_get(body, "echo"))) {
        httpd_reply_error(req, 400, "'echo' is an option of /v1/completions, not of chat "
                                    "completions");
    } else if (json_object_get(body, "suffix")) {
        httpd_reply_error(req, 400, "'suffix' is an option of /v1/completions, not of chat "
                                    "completions");
    } else if (parse_salt(req, body, &p.salt) != 0) {
        /* answered */
    } else if (parse_messages(arr, msgs, &n, owned, &err) != 0 ||
               refuse_unsupported(body, &err) != 0 ||
               parse_generation(e, body, &p, &stream, &usage, &err) != 0 ||
               parse_logprobs(body, GEN_CHAT, &p, &err) != 0 ||
               parse_format(e, body, &p, &err) != 0 ||
               parse_tool_grammar(e, treq, tf, &p, &err) != 0 ||
               parse_n(body, stream, &n_choices, &err) != 0 ||
               parse_continuation(body, msgs, &n, &end, &err) != 0) {
        httpd_reply_error(req, 400, "%s", err.msg);
    } else {
        char perr[256];
        int cap = sched_slot_capacity(e->sched);
        if (rendered)   /* the family's markers as its template has them */
            for (int k = 0; k < n; k++)
                msgs[k].markers = tools_family_markers(tf);
        rc = prompt_chat_salted(e->prompt, &p.salt, msgs, n, end, cap - 1, &p.tokens,
                                &p.n_tokens, perr, sizeof perr);
        if (rc == MODEL_ETOOLONG) {
            /* counted to the end, for the message */
            model_token_t *all = NULL;
            int n_all = 0;
            int crc = prompt_chat_salted(e->prompt, &p.salt, msgs, n, end, COUNT_MAX,
                                         &all, &n_all, perr, sizeof perr);
            free(all);
            reply_too_long(e, req, crc == 0 ? n_all : p.n_tokens, crc != 0);
        } else if (rc) {
            httpd_reply_error(req, 400, "%s", perr);
        } else {
            start_generation(e, req, body, stream, usage, treq, tf, &p, n_choices);
        }
    }
    sched_job_params_cleanup(&p);
    for (size_t i = 0; owned && i < nm; i++)
        free(owned[i]);
    free(owned);
    free(msgs);
    tools_req_free(treq);
    json_decref(rendered);
    json_decref(body);
}

/* One prompt of a completions request: text, or token ids. */
typedef struct {
    const char *text;
    const json_t *ids;      /* array of integers, when not text */
} cprompt_t;

/* "prompt": a string, an array of strings, an array of token ids, or an
 * array of arrays of token ids. Fills out[0..*n). Returns 0, or -1 with a
 * message in err. */
static int parse_prompts(const engine_t *e, json_t *v, cprompt_t *out, int *n, json_err_t *err)
{
    *n = 0;
    if (!v) {
        snprintf(err->msg, sizeof err->msg, "Missing required field 'prompt'");
        return -1;
    }
    if (json_is_string(v)) {
        out[(*n)++].text = json_string_value(v);
    } else if (json_is_array(v) && json_array_size(v) > 0) {
        json_t *first = json_array_get(v, 0);
        if (json_is_integer(first)) {
            out[(*n)++].ids = v;
        } else {
            size_t i;
            json_t *x;
            if (json_array_size(v) > MAX_PROMPTS) {
                snprintf(err->msg, sizeof err->msg, "At most %d prompts in one request",
                         MAX_PROMPTS);
                return -1;
            }
            json_array_foreach(v, i, x) {
                if (json_is_string(x)) {
                    out[*n].text = json_string_value(x);
                } else if (json_is_array(x) && json_array_size(x) > 0) {
                    out[*n].ids = x;
                } else {
                    snprintf(err->msg, sizeof err->msg,
                             "Field 'prompt' must be a string, an array of strings, an array of "
                             "token ids or an array of arrays of token ids");
                    return -1;
                }
                (*n)++;
            }
        }
    } else {
        snprintf(err->msg, sizeof err->msg,
                 "Field 'prompt' must be a string, an array of strings, an array of token ids or "
                 "an array of arrays of token ids");
        return -1;
    }
    int n_vocab = model_info(e->model)->n_vocab;
    for (int k = 0; k < *n; k++) {
        if (out[k].text && !*out[k].text) {
            snprintf(err->msg, sizeof err->msg, "'prompt' must not be empty");
            return -1;
        }
        size_t i;
        json_t *x;
        json_array_foreach(out[k].ids, i, x) {
            if (!json_is_integer(x) || json_integer_value(x) < 0 ||
                json_integer_value(x) >= n_vocab) {
                snprintf(err->msg, sizeof err->msg,
                         "'prompt' token ids must be integers from 0 to %d", n_vocab - 1);
                return -1;
            }
        }
    }
    return 0;
}

/* The tokens of one prompt (at most max; MODEL_ETOOLONG beyond, with *n
 * the count) and, for echo, its text. */
static int prompt_tokens(engine_t *e, const cprompt_t *cp, int max, model_token_t **toks, int *n,
                         char **echo)
{
    *toks = NULL;
    *n = 0;
    if (cp->text) {
        int rc = prompt_text(e->prompt, cp->text, strlen(cp->text), max, toks, n);
        if (rc == 0 && echo && !(*echo = strdup(cp->text)))
            rc = MODEL_ENOMEM;
        return rc;
    }
    size_t len = json_array_size(cp->ids);
    if (len > (size_t)max) {
        *n = (int)len;
        return MODEL_ETOOLONG;
    }
    *toks = malloc(len * sizeof **toks);
    if (!*toks)
        return MODEL_ENOMEM;
    for (size_t i = 0; i < len; i++)
        (*toks)[i] = (model_token_t)json_integer_value(json_array_get(cp->ids, i));
    *n = (int)len;
    if (echo) {
        size_t tl;
        int rc = model_detokenize(e->model, *toks, *n, false, echo, &tl);
        if (rc)
            return rc;
    }
    return 0;
}

static void h_completions(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    json_t *body = begin_json(e, req);
    if (!body)
        return;
    json_err_t err = { "" };
    cprompt_t prompts[MAX_PROMPTS] = { 0 };
    int n_prompts = 0;
    bool stream = false, usage = false, echo = false;
    gen_t *gens[MAX_CHOICES] = { 0 };
    sched_job_params_t p;
    sched_job_params_init(&p);
    json_t *suffix = json_object_get(body, "suffix");
    int rc = 0;
    if (suffix && !json_is_null(suffix) &&
        !(json_is_string(suffix) && json_string_length(suffix) == 0)) {
        httpd_reply_error(req, 400, "'suffix' (text after the insertion) is not supported: this "
                                    "server completes prompts from their end only");
        goto out;
    }
    if (json_get_bool(body, "echo", &echo, &err) == JSON_ETYPE ||
        refuse_unsupported(body, &err) != 0 ||
        parse_prompts(e, json_object_get(body, "prompt"), prompts, &n_prompts, &err) != 0) {
        httpd_reply_error(req, 400, "%s", err.msg);
        goto out;
    }
    if (n_prompts > 1 && json_is_true(json_object_get(body, "stream"))) {
        httpd_reply_error(req, 400, "Streaming several prompts in one request is not supported: "
                                    "send one request per prompt");
        goto out;
    }
    int n_choices = 1;
    if (parse_n(body, json_is_true(json_object_get(body, "stream")), &n_choices, &err) != 0) {
        httpd_reply_error(req, 400, "%s", err.msg);
        goto out;
    }
    if (n_prompts * n_choices > MAX_CHOICES) {
        httpd_reply_error(req, 400, "At most %d choices in one request (%d prompts, n %d)",
                          MAX_CHOICES, n_prompts, n_choices);
        goto out;
    }
    int cap = sched_slot_capacity(e->sched);
    json_t *choices = json_array();
    sched_result_t total = { 0 };
    /* Choice c is prompt c / n_choices's (c % n_choices)th. */
    for (int c = 0; c < n_prompts * n_choices; c++) {
        const int k = c / n_choices, j = c % n_choices;
        sched_job_params_cleanup(&p);
        sched_job_params_init(&p);
        if (parse_salt(req, body, &p.salt) != 0) {
            json_decref(choices);
            goto out;
        }
        if (parse_generation(e, body, &p, &stream, &usage, &err) != 0 ||
            parse_logprobs(body, GEN_COMPLETION, &p, &err) != 0 ||
            parse_format(e, body, &p, &err) != 0) {
            httpd_reply_error(req, 400, "%s", err.msg);
            json_decref(choices);
            goto out;
        }
        p.sampling.seed = choice_seed(p.sampling.seed, j);
        gens[c] = gen_new(e, GEN_COMPLETION);
        if (!gens[c]) {
            httpd_reply_error(req, 500, "out of memory");
            json_decref(choices);
            goto out;
        }
        gen_t *g = gens[c];
        g->index = c;
        if (p.logprobs >= 0) {
            g->lp_pending = json_array();
            g->lp_all = json_array();
        }
        g->streaming = stream;
        g->include_usage = usage;
        json_get_bool(body, "return_tokens", &g->return_tokens, NULL);
        json_get_bool(body, "return_progress", &g->return_progress, NULL);
        rc = prompt_tokens(e, &prompts[k], cap - 1, &p.tokens, &p.n_tokens, echo ? &g->echo : NULL);
        if (rc == MODEL_ETOOLONG) {
            model_token_t *all = NULL;
            int n_all = 0;
            int crc = prompts[k].text ? prompt_tokens(e, &prompts[k], COUNT_MAX, &all, &n_all, NULL)
                                      : MODEL_ETOOLONG;
            free(all);
            reply_too_long(e, req, crc == 0 ? n_all : (p.n_tokens > cap ? p.n_tokens : cap),
                           crc != 0 && prompts[k].text);
            json_decref(choices);
            goto out;
        }
        if (rc) {
            httpd_reply_error(req, 400, "tokenization failed: %s", model_strerror(rc));
            json_decref(choices);
            goto out;
        }
        if (n_prompts * n_choices == 1) {
            gens[c] = NULL;   /* run_job answers and releases it */
            json_decref(choices);
            run_job(e, req, g, &p);
            goto out;
        }
        /* Several choices: one after the other (a prompt's later ones
         * restore it from the cache), their choices together. */
        if (submit_and_wait(e, req, g, &p) != 0) {
            json_decref(choices);
            goto out;
        }
        json_array_append_new(choices, choice_json(g));
        add_usage(&total, &g->res, j == 0);
    }
    total.cache_tier = gens[0]->res.cache_tier;
    httpd_reply_json(req, 200, answer_json(e, gens[0], choices, usage_json(&total),
                                           timings_json(&total)));
out:
    for (int k = 0; k < MAX_CHOICES; k++)
        gen_unref(gens[k]);
    sched_job_params_cleanup(&p);
    json_decref(body);
}

/* ---- cache API ---- */

/* "salt_hash": the hex SHA-256 of the entry's cache_salt, or null. */
static json_t *salt_json(const kvstore_salt_t *salt)
{
    char hex[SALT_HEX_LEN];
    salt_hex(salt, hex);
    return hex[0] ? json_string(hex) : json_null();
}

static json_t *entry_json(const kvstore_entry_info_t *in)
{
    return json_pack("{s:s, s:i, s:I, s:s, s:b, s:b, s:b, s:I, s:I, s:I, s:b, s:b, s:o}", "id",
                     in->id, "n_tokens", in->n_tokens, "bytes", (json_int_t)in->bytes, "tier",
                     kvstore_tier_name(in->tier), "on_disk", in->on_disk, "shared", in->shared,
                     "disk_only",
                     in->disk_only, "hits", (json_int_t)in->hits, "created",
                     (json_int_t)in->created, "last_used", (json_int_t)in->last_used, "pinned",
                     in->pinned, "salted", in->salt.salted, "salt_hash", salt_json(&in->salt));
}

/* The entry stored in the namespace `salt` whose tokens are exactly
 * toks[0..n), if any. */
static bool find_entry(engine_t *e, const kvstore_salt_t *salt, const model_token_t *toks, int n,
                       kvstore_entry_info_t *info)
{
    kvstore_match_t m;
    if (kvstore_lookup_salted(e->store, salt, toks, n, &m) != KVSTORE_OK)
        return false;
    bool found = m.full && m.full_len == n;
    if (found)
        kvstore_handle_info(e->store, m.full, info);
    kvstore_match_release(e->store, &m);
    return found;
}

static json_t *prefill_result_json(gen_t *g, const sched_result_t *r)
{
    kvstore_entry_info_t info = { .tier = KVSTORE_TIER_RAM };
    snprintf(info.id, sizeof info.id, "%s", r->entry_id);
    info.bytes = r->entry_bytes;
    /* Where the snapshot went (RAM, or straight to disk when too big). */
    kvstore_entry_info_t *all = NULL;
    size_t n = 0;
    if (kvstore_list(g->e->store, &all, &n) == KVSTORE_OK) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(all[i].id, r->entry_id) == 0)
                info = all[i];
    }
    free(all);
    return json_pack("{s:s, s:i, s:I, s:s, s:f, s:b, s:b, s:i, s:s}", "id", info.id, "n_tokens",
                     r->entry_tokens ? r->entry_tokens : g->n_tokens, "bytes",
                     (json_int_t)info.bytes, "tier", kvstore_tier_name(info.tier), "prefill_ms",
                     r->prompt_ms, "cached", false, "pinned", g->pin, "cache_n", r->cache_n,
                     "cache_tier", sched_tier_name(r->cache_tier));
}

static void h_prefill(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    if (!check_ready(e, req))
        return;
    if (!e->store) {
        httpd_reply_error(req, 409, "the KV cache is disabled (--no-cache)");
        return;
    }
    json_t *body;
    const char *msg;
    if (httpd_req_json(req, &body, &msg) != HTTPD_OK) {
        httpd_reply_error(req, 400, "%s", msg);
        return;
    }
    json_err_t err = { "" };
    sched_job_params_t p;
    sched_job_params_init(&p);
    p.kind = JOB_PREFILL;
    bool pin = false, stream = false, to_disk = false;
    json_t *arr = NULL;
    const char *prompt = NULL, *tier = NULL;
    int rc_m = json_get_array(body, "messages", &arr, &err);
    int rc_p = rc_m == JSON_ETYPE ? JSON_EMISSING : json_get_string(body, "prompt", &prompt, &err);
    int cap = sched_slot_capacity(e->sched);
    int rc = 0;
    char perr[256] = "";
    if (json_get_bool(body, "pin", &pin, &err) == JSON_ETYPE ||
        json_get_bool(body, "stream", &stream, &err) == JSON_ETYPE || rc_m == JSON_ETYPE ||
        rc_p == JSON_ETYPE) {
        httpd_reply_error(req, 400, "%s", err.msg);
        goto out;
    }
    if (parse_salt(req, body, &p.salt) != 0)
        goto out;
    if ((rc_m == JSON_OK) == (rc_p == JSON_OK)) {
        httpd_reply_error(req, 400, "Give exactly one of 'messages' or 'prompt'");
        goto out;
    }
    rc = json_get_string(body, "tier", &tier, &err);
    if (rc == JSON_ETYPE || (rc == JSON_OK && strcmp(tier, "ram") && strcmp(tier, "disk"))) {
        httpd_reply_error(req, 400, "Field 'tier' must be \"ram\" or \"disk\"");
        goto out;
    }
    rc = 0;
    to_disk = tier && strcmp(tier, "disk") == 0;
    if (to_disk) {
        kvstore_stats_t ks;
        kvstore_stats(e->store, &ks);
        if (ks.disk_budget == 0) {
            httpd_reply_error(req, 409, "the disk tier is disabled (--cache-disk 0): \"tier\": "
                              "\"disk\" needs it");
            goto out;
        }
    }
    if (rc_m == JSON_OK) {
        size_t nm = json_array_size(arr);
        if (nm == 0 || nm > MAX_MESSAGES) {
            httpd_reply_error(req, 400, "'messages' must hold 1 to %d messages", MAX_MESSAGES);
            goto out;
        }
        prompt_msg_t *msgs = calloc(nm, sizeof *msgs);
        char **owned = calloc(nm, sizeof *owned);
        int n = 0;
        if (!msgs || !owned) {
            rc = MODEL_ENOMEM;
        } else if (parse_messages(arr, msgs, &n, owned, &err) != 0) {
            snprintf(perr, sizeof perr, "%s", err.msg);
            rc = MODEL_EINVAL;
        } else {
            rc = prompt_chat_salted(e->prompt, &p.salt, msgs, n, PROMPT_PREFIX, cap - 1,
                                    &p.tokens, &p.n_tokens, perr, sizeof perr);
        }
        for (size_t i = 0; owned && i < nm; i++)
            free(owned[i]);
        free(owned);
        free(msgs);
    } else {
        if (!*prompt) {
            httpd_reply_error(req, 400, "'prompt' must not be empty");
            goto out;
        }
        rc = prompt_text(e->prompt, prompt, strlen(prompt), cap - 1, &p.tokens, &p.n_tokens);
    }
    if (rc == MODEL_ETOOLONG) {
        reply_too_long(e, req, p.n_tokens > cap ? p.n_tokens : cap, true);
        goto out;
    }
    if (rc) {
        httpd_reply_error(req, 400, "%s", perr[0] ? perr : model_strerror(rc));
        goto out;
    }
    /* Already stored: answer at once. */
    kvstore_entry_info_t info;
    if (find_entry(e, &p.salt, p.tokens, p.n_tokens, &info)) {
        if (pin && !info.pinned) {
            kvstore_set_pinned(e->store, info.id, true);
            info.pinned = true;
        }
        if (to_disk) {
            /* Moved to the disk tier for good; answered once durable. */
            int drc = kvstore_set_disk_only(e->store, info.id);
            if (drc == KVSTORE_OK)
                drc = wait_durable(e, info.id);
            if (drc != KVSTORE_OK) {
                char why[256];
                int status = disk_error(drc, why, sizeof why);
                httpd_reply_error(req, status, "%s", why);
                goto out;
            }
            find_entry(e, &p.salt, p.tokens, p.n_tokens, &info);
        }
        json_t *res = json_pack("{s:s, s:i, s:I, s:s, s:f, s:b, s:b, s:i, s:s}", "id", info.id,
                                "n_tokens", info.n_tokens, "bytes", (json_int_t)info.bytes, "tier",
                                kvstore_tier_name(info.tier), "prefill_ms", 0.0, "cached", true,
                                "pinned", info.pinned, "cache_n", info.n_tokens, "cache_tier",
                                kvstore_tier_name(info.tier));
        if (stream) {
            httpd_stream_t *s;
            if (httpd_stream_open(req, "text/event-stream", &s) == HTTPD_OK) {
                json_object_set_new(res, "event", json_string("done"));
                httpd_stream_sse_json(s, res);
                httpd_stream_sse(s, "[DONE]");
                httpd_stream_close(s);
            } else {
                json_decref(res);
            }
        } else {
            httpd_reply_json(req, 200, res);
        }
        goto out;
    }
    p.pin = pin;
    p.to_disk = to_disk;
    gen_t *g = gen_new(e, GEN_PREFILL);
    if (!g) {
        httpd_reply_error(req, 500, "out of memory");
        goto out;
    }
    g->streaming = stream;
    g->n_tokens = p.n_tokens;
    g->pin = pin;
    g->to_disk = to_disk;
    run_job(e, req, g, &p);
out:
    sched_job_params_cleanup(&p);
    json_decref(body);
}

/* POST /v1/cache/draft {messages, key, cache_salt?}: the conversation as
 * typed so far (the last message unfinished), prefilled into a slot bound
 * to `key` while the engine has nothing else to do (scheduler.h,
 * "Drafts"). What is drafted is the turn as if sent now (closer and
 * assistant opener included): sent as it stands, the real request decodes
 * one token; typed on, the next draft cuts back to the end of the text
 * (typed_tokens), which every longer text starts with when this one ends a
 * word. Answers 202 at once: {"accepted", "tokens", "typed_tokens"};
 * accepted is false when real requests are waiting for a slot. */
static void h_draft(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    json_t *body = begin_json(e, req);
    if (!body)
        return;
    json_err_t err = { "" };
    json_t *arr = NULL;
    const char *key = NULL;
    int rc = json_get_array(body, "messages", &arr, &err);
    size_t nm = rc == JSON_OK ? json_array_size(arr) : 0;
    prompt_msg_t *msgs = NULL;
    char **owned = NULL;
    char *last = NULL;
    model_token_t *toks = NULL;
    int n = 0, n_toks = 0;
    kvstore_salt_t salt;
    if (rc != JSON_OK || nm == 0 || nm > MAX_MESSAGES) {
        httpd_reply_error(req, 400, "%s", rc == JSON_ETYPE     ? err.msg
                                          : rc == JSON_EMISSING ? "Missing required field 'messages'"
                                                                : "'messages' must hold 1 to "
                                                                  "4096 messages");
        goto out;
    }
    rc = json_get_string(body, "key", &key, &err);
    size_t klen = rc == JSON_OK ? strlen(key) : 0;
    if (klen == 0 || klen > SCHED_DRAFT_KEY_MAX) {
        httpd_reply_error(req, 400, "Field 'key' must be a string of 1 to %d bytes",
                          SCHED_DRAFT_KEY_MAX);
        goto out;
    }
    if (parse_salt(req, body, &salt) != 0)
        goto out;
    msgs = calloc(nm, sizeof *msgs);
    owned = calloc(nm, sizeof *owned);
    if (!msgs || !owned) {
        httpd_reply_error(req, 500, "out of memory");
        goto out;
    }
    if (parse_messages(arr, msgs, &n, owned, &err) != 0) {
        httpd_reply_error(req, 400, "%s", err.msg);
        goto out;
    }
    /* A word being typed ends at its last letter: the space after it
     * belongs to the next word's token. */
    size_t ll = strlen(msgs[n - 1].content);
    while (ll && strchr(" \t\r\n", msgs[n - 1].content[ll - 1]))
        ll--;
    last = strndup(msgs[n - 1].content, ll);
    if (!last) {
        httpd_reply_error(req, 500, "out of memory");
        goto out;
    }
    msgs[n - 1].content = last;
    char perr[256];
    int cap = sched_slot_capacity(e->sched);
    rc = prompt_chat_salted(e->prompt, &salt, msgs, n, PROMPT_GENERATE, cap - 1, &toks, &n_toks,
                            perr, sizeof perr);
    model_token_t *typed = NULL;
    int n_typed = 0;
    if (rc == 0)
        rc = prompt_chat_salted(e->prompt, &salt, msgs, n, PROMPT_DRAFT, cap - 1, &typed, &n_typed,
                                perr, sizeof perr);
    if (rc == 0 && (n_typed > n_toks || memcmp(typed, toks, (size_t)n_typed * sizeof *toks) != 0))
        n_typed = 0;   /* a template that renders the turn otherwise: nothing stable */
    free(typed);
    if (rc == MODEL_ETOOLONG) {
        reply_too_long(e, req, n_toks, true);
        goto out;
    }
    if (rc) {
        httpd_reply_error(req, 400, "%s", perr);
        goto out;
    }
    bool accepted = false;
    rc = sched_draft(e->sched, key, &salt, toks, n_toks, &accepted);
    toks = NULL;   /* the scheduler's in every case */
    if (rc != SCHED_OK) {
        httpd_reply_error(req, sched_status(rc), "%s", sched_strerror(rc));
        goto out;
    }
    httpd_reply_json(req, 202, json_pack("{s:b, s:i, s:i}", "accepted", accepted, "tokens", n_toks,
                                         "typed_tokens", n_typed));
out:
    free(toks);
    free(last);
    for (size_t i = 0; owned && i < nm; i++)
        free(owned[i]);
    free(owned);
    free(msgs);
    json_decref(body);
}

static void h_cache_list(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    if (!check_ready(e, req))
        return;
    json_t *arr = json_array();
    if (e->store) {
        kvstore_entry_info_t *all = NULL;
        size_t n = 0;
        if (kvstore_list(e->store, &all, &n) == KVSTORE_OK)
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, entry_json(&all[i]));
        free(all);
    }
    httpd_reply_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "entries", arr));
}

static void h_cache_stats(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    if (!check_ready(e, req))
        return;
    sched_stats_t ss;
    sched_get_stats(e->sched, &ss);
    kvstore_stats_t ks = { 0 };
    if (e->store)
        kvstore_stats(e->store, &ks);
    json_t *body = json_pack(
        "{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
        " s:{s:I, s:I, s:I, s:I},"
        " s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I}",
        "enabled", e->store != NULL, "entries", (json_int_t)ks.entries, "entries_ram",
        (json_int_t)ks.entries_ram, "entries_disk", (json_int_t)ks.entries_disk, "bytes_ram",
        (json_int_t)ks.ram_bytes, "bytes_disk", (json_int_t)ks.disk_bytes, "ram_budget",
        (json_int_t)ks.ram_budget, "disk_budget", (json_int_t)ks.disk_budget, "requests",
        "slot", (json_int_t)ss.hits[TIER_SLOT], "ram", (json_int_t)ss.hits[TIER_RAM], "disk",
        (json_int_t)ss.hits[TIER_DISK], "none", (json_int_t)ss.hits[TIER_NONE], "evictions_ram",
        (json_int_t)ks.evictions_ram, "evictions_disk", (json_int_t)ks.evictions_disk,
        "disk_writes", (json_int_t)ks.disk_writes, "disk_write_failures",
        (json_int_t)ks.disk_write_failures, "disk_read_failures",
        (json_int_t)ks.disk_read_failures, "pending_writes", (json_int_t)ks.pending_writes,
        "snapshots", (json_int_t)ss.snapshots, "restored_bytes",
        (json_int_t)ss.restore_bytes_total, "restore_ms_total", ss.restore_ms_total,
        "restore_copy_ms_total", ss.restore_copy_ms_total,
        "cached_tokens", (json_int_t)ss.cached_tokens);
    if (body) {
        json_object_set_new(json_object_get(body, "requests"), "shared",
                            json_integer((json_int_t)ss.hits[TIER_SHARED]));
        if (ks.shared_budget > 0)
            json_object_set_new(
                body, "shared",
                json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                          "entries", (json_int_t)ks.entries_shared, "bytes",
                          (json_int_t)ks.shared_bytes, "budget", (json_int_t)ks.shared_budget,
                          "hits", (json_int_t)ks.hits_shared, "writes",
                          (json_int_t)ks.shared_writes, "write_skips",
                          (json_int_t)ks.shared_write_skips, "write_failures",
                          (json_int_t)ks.shared_write_failures, "skipped_files",
                          (json_int_t)ks.shared_skipped, "read_failures",
                          (json_int_t)ks.shared_read_failures, "lost",
                          (json_int_t)ks.shared_lost, "evictions",
                          (json_int_t)ks.shared_evictions, "rescans",
                          (json_int_t)ks.shared_rescans));
    }
    httpd_reply_json(req, 200, body);
}

static void h_cache_delete(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    if (!check_ready(e, req))
        return;
    const char *id = httpd_req_param(req, "id");
    if (!e->store || kvstore_delete(e->store, id) != KVSTORE_OK) {
        httpd_reply_error(req, 404, "no cache entry with id '%s'", id);
        return;
    }
    httpd_reply_json(req, 200, json_pack("{s:s, s:b}", "id", id, "deleted", 1));
}

static void h_cache_reset(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    if (!check_ready(e, req))
        return;
    kvstore_stats_t ks = { 0 };
    if (e->store) {
        kvstore_stats(e->store, &ks);
        kvstore_reset(e->store);
    }
    sched_forget_slots(e->sched);
    httpd_reply_json(req, 200, json_pack("{s:b, s:I}", "reset", 1, "entries_removed",
                                         (json_int_t)ks.entries));
}

/* ---- misc ---- */

static void h_health(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    switch (atomic_load(&e->state)) {
    case ENGINE_READY:
        httpd_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
        break;
    case ENGINE_LOADING:
        httpd_reply_json(req, 503, json_pack("{s:s, s:{s:s, s:s, s:i}}", "status", "loading",
                                             "error", "message", "Loading model", "type",
                                             "unavailable_error", "code", 503));
        break;
    default:
        httpd_reply_json(req, 503, json_pack("{s:s, s:{s:s, s:s, s:i}}", "status", "error",
                                             "error", "message", e->error, "type",
                                             "unavailable_error", "code", 503));
    }
}

static json_t *model_json(engine_t *e)
{
    const model_info_t *in = model_info(e->model);
    char fp[24];
    snprintf(fp, sizeof fp, "%016" PRIx64, in->fingerprint);
    json_t *meta = json_pack(
        "{s:s, s:s, s:b, s:i, s:i, s:i, s:I, s:I, s:s, s:i, s:i, s:s, s:b}", "name", in->name,
        "desc", in->desc, "random_weights", in->random_weights, "n_ctx_train", in->n_ctx_train,
        "n_ctx_slot", sched_slot_capacity(e->sched), "n_vocab", in->n_vocab, "n_params",
        (json_int_t)in->n_params, "size", (json_int_t)in->size_bytes, "fingerprint", fp, "n_layer",
        in->n_layer, "n_embd", in->n_embd, "kv_layout", model_ctx_layout(e->ctx), "cache_enabled",
        e->store != NULL);
    return json_pack("{s:s, s:s, s:i, s:s, s:o}", "id", e->model_id, "object", "model", "created",
                     (json_int_t)e->started_at, "owned_by", "kvchat", "meta", meta);
}

static void h_models(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    if (!check_ready(e, req))
        return;
    httpd_reply_json(req, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", model_json(e)));
}

/* GET /v1/models/{id}: the SDKs' models.retrieve. */
static void h_model(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    if (!check_ready(e, req))
        return;
    const char *id = httpd_req_param(req, "id");
    if (!id || strcmp(id, e->model_id) != 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model '%.200s' does not exist (this server has '%.150s')",
                 id ? id : "", e->model_id);
        httpd_reply_json(req, 404, json_pack("{s:{s:s, s:s, s:s, s:s}}", "error", "message", msg,
                                             "type", "invalid_request_error", "param", "model",
                                             "code", "model_not_found"));
        return;
    }
    httpd_reply_json(req, 200, model_json(e));
}

static void h_tokenize(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    json_t *body = begin_json(e, req);
    if (!body)
        return;
    json_err_t err = { "" };
    const char *content;
    bool add_special = false, parse_special = true, with_pieces = false, count_only = false;
    if (json_get_string(body, "content", &content, &err) != JSON_OK ||
        json_get_bool(body, "add_special", &add_special, &err) == JSON_ETYPE ||
        json_get_bool(body, "parse_special", &parse_special, &err) == JSON_ETYPE ||
        json_get_bool(body, "with_pieces", &with_pieces, &err) == JSON_ETYPE ||
        json_get_bool(body, "count_only", &count_only, &err) == JSON_ETYPE) {
        httpd_reply_error(req, 400, "%s", err.msg[0] ? err.msg : "Missing required field 'content'");
        json_decref(body);
        return;
    }
    model_token_t *toks = NULL;
    int n = 0;
    int rc = model_tokenize(e->model, content, strlen(content), add_special, parse_special,
                            1 << 24, &toks, &n);
    if (rc) {
        httpd_reply_error(req, 400, "tokenization failed: %s", model_strerror(rc));
        json_decref(body);
        return;
    }
    if (count_only) {   /* kvchat's extension: the count without the tokens */
        free(toks);
        json_decref(body);
        httpd_reply_json(req, 200, json_pack("{s:i}", "count", n));
        return;
    }
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        if (with_pieces) {
            char piece[256];
            int len = model_token_piece(e->model, toks[i], true, piece, sizeof piece);
            json_array_append_new(arr, json_pack("{s:i, s:o}", "id", toks[i], "piece",
                                                 json_string_lossy(piece, len > 0 ? (size_t)len : 0)));
        } else {
            json_array_append_new(arr, json_integer(toks[i]));
        }
    }
    free(toks);
    json_decref(body);
    httpd_reply_json(req, 200, json_pack("{s:o}", "tokens", arr));
}

static void h_detokenize(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    json_t *body = begin_json(e, req);
    if (!body)
        return;
    json_err_t err = { "" };
    json_t *arr;
    if (json_get_array(body, "tokens", &arr, &err) != JSON_OK) {
        httpd_reply_error(req, 400, "%s", err.msg);
        json_decref(body);
        return;
    }
    size_t n = json_array_size(arr), i;
    model_token_t *toks = malloc((n ? n : 1) * sizeof *toks);
    json_t *v;
    int n_vocab = model_info(e->model)->n_vocab;
    json_array_foreach(arr, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= n_vocab) {
            httpd_reply_error(req, 400, "tokens[%zu] is not a token id of this model (0..%d)", i,
                              n_vocab - 1);
            free(toks);
            json_decref(body);
            return;
        }
        toks[i] = (model_token_t)json_integer_value(v);
    }
    char *text = NULL;
    size_t len = 0;
    int rc = model_detokenize(e->model, toks, (int)n, true, &text, &len);
    free(toks);
    json_decref(body);
    if (rc) {
        httpd_reply_error(req, 500, "detokenization failed: %s", model_strerror(rc));
        return;
    }
    httpd_reply_json(req, 200, json_pack("{s:o}", "content", json_string_lossy(text, len)));
    free(text);
}

static void h_metrics(httpd_req_t *req, void *user)
{
    engine_t *e = user;
    buf_t b;
    buf_init(&b, 1 << 20);
    metrics_render(e, &b);
    httpd_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "",
                     b.len);
    buf_cleanup(&b);
}

static const httpd_route_t routes[] = {
    { "GET", "/health", h_health, HTTPD_ROUTE_PUBLIC | HTTPD_ROUTE_QUIET, NULL },
    { "GET", "/metrics", h_metrics, HTTPD_ROUTE_QUIET, NULL },
    { "GET", "/v1/models", h_models, 0, NULL },
    { "GET", "/v1/models/{id*}", h_model, 0, NULL },
    { "GET", "/models", h_models, 0, NULL },
    { "POST", "/v1/chat/completions", h_chat, 0, NULL },
    { "POST", "/chat/completions", h_chat, 0, NULL },
    { "POST", "/v1/completions", h_completions, 0, NULL },
    { "POST", "/completions", h_completions, 0, NULL },
    { "POST", "/tokenize", h_tokenize, 0, NULL },
    { "POST", "/detokenize", h_detokenize, 0, NULL },
    { "POST", "/v1/cache/prefill", h_prefill, 0, NULL },
    { "POST", "/v1/cache/draft", h_draft, HTTPD_ROUTE_QUIET, NULL },
    { "GET", "/v1/cache", h_cache_list, 0, NULL },
    { "GET", "/v1/cache/stats", h_cache_stats, HTTPD_ROUTE_QUIET, NULL },
    { "DELETE", "/v1/cache/{id}", h_cache_delete, 0, NULL },
    { "POST", "/v1/cache/reset", h_cache_reset, 0, NULL },
};

int server_open(engine_t *e)
{
    httpd_config_t cfg = httpd_config_default();
    cfg.host = e->cfg.host;
    cfg.port = (unsigned)e->cfg.port;
    cfg.max_body = e->cfg.max_body;
    cfg.api_key = e->cfg.api_key;
    cfg.error_style = HTTPD_ERRORS_OPENAI;
    cfg.timeout_s = e->cfg.http_timeout_s;
    cfg.max_connections = e->cfg.max_connections;
    cfg.max_per_ip = e->cfg.max_per_ip;
    /* Names are checked (DNS rebinding) while the engine listens on
     * loopback only; on a network it answers to any name its clients use
     * unless told otherwise. */
    cfg.allowed_hosts = e->cfg.allowed_hosts ? e->cfg.allowed_hosts
                        : httpd_host_is_loopback(e->cfg.host) ? NULL : "*";
    cfg.stream_queue_max = 4u << 20;
    cfg.cors_origins = e->cfg.cors_origins;
    return httpd_open(&cfg, routes, sizeof routes / sizeof routes[0], e, (httpd_t **)&e->http);
}

int server_port(const engine_t *e) { return (int)httpd_port((const httpd_t *)e->http); }

void server_close(engine_t *e)
{
    httpd_close((httpd_t *)e->http);
    e->http = NULL;
}
