/* llm_openai.c — the OpenAI-compatible backend (providers "local" and
 * "openai"), and the kvchat engine's own calls.
 *
 * Chat: POST {base_url}/chat/completions with "stream": true and
 * "stream_options": {"include_usage": true}. The answer is an SSE stream of
 * chat.completion.chunk objects; the variants met in practice are all read:
 *   - text in choices[0].delta.content (the first chunk may carry only the
 *     role, or content "");
 *   - finish_reason in the last chunk with choices, usage either in that
 *     chunk (kvchat-engine, llama-server) or in a separate chunk with
 *     "choices": [] (OpenAI, vLLM, Ollama);
 *   - "timings" (kvchat-engine, llama-server) passed through as they are;
 *     cached tokens from usage.prompt_tokens_details.cached_tokens, else
 *     from timings.cache_n;
 *   - "data: [DONE]" at the end (a stream that ends with neither [DONE] nor
 *     a finish reason is incomplete);
 *   - a server that ignores "stream" and answers one chat.completion object
 *     (choices[0].message.content).
 *
 * A cache salt (llm_params_t.cache_salt, llm_prefill_salted) is sent as
 * "cache_salt" to the local engine only (cfg.kind LLM_PROVIDER_LOCAL); an
 * "openai" provider never gets it, whatever server it names.
 *
 * Engine calls (the local provider): POST {root}/v1/cache/prefill,
 * DELETE {root}/v1/cache/{id}; and for local and openai: GET
 * {base_url}/models, POST {root}/tokenize. {root} is base_url without its
 * trailing "/v1" (the engine and llama-server serve those paths there).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/llm/llm.h"
#include "app/llm/llm_int.h"

/* ---- chat -------------------------------------------------------------- */

static int oa_chat_request(const llm_provider_t *p, const llm_message_t *msgs, size_t n,
                           const llm_params_t *prm, char **url, char **body, char *err,
                           size_t errcap)
{
    *url = NULL;
    *body = NULL;
    json_t *arr = json_array();
    json_t *b = json_object();
    int rc = LLM_ENOMEM;
    if (!arr || !b)
        goto out;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_pack("{s:s, s:o}", "role", llm_role_name(msgs[i].role), "content",
                              llm__json_text(msgs[i].content));
        if (!m || json_array_append_new(arr, m) != 0)
            goto out;
    }
    if (*p->model && json_object_set_new(b, "model", json_string(p->model)) != 0)
        goto out;
    if (json_object_set(b, "messages", arr) != 0 ||
        json_object_set_new(b, "stream", json_true()) != 0 ||
        json_object_set_new(b, "stream_options", json_pack("{s:b}", "include_usage", 1)) != 0)
        goto out;
    if (prm->max_tokens > 0 &&
        json_object_set_new(b, "max_tokens", json_integer(prm->max_tokens)) != 0)
        goto out;
    if (prm->temperature >= 0 &&
        json_object_set_new(b, "temperature", json_real(prm->temperature)) != 0)
        goto out;
    if (prm->top_p >= 0 && json_object_set_new(b, "top_p", json_real(prm->top_p)) != 0)
        goto out;
    if (prm->stop[0]) {
        json_t *stop = json_array();
        for (int i = 0; stop && i < LLM_MAX_STOP && prm->stop[i]; i++)
            json_array_append_new(stop, llm__json_text(prm->stop[i]));
        if (!stop || json_object_set_new(b, "stop", stop) != 0)
            goto out;
    }
    /* The engine's cache namespace: for the local engine only, which
     * knows the field (another server would refuse it, or ignore it and
     * have no use for it). */
    if (prm->cache_salt && *prm->cache_salt && p->cfg.kind == LLM_PROVIDER_LOCAL &&
        json_object_set_new(b, "cache_salt", llm__json_text(prm->cache_salt)) != 0)
        goto out;
    rc = llm__merge_extra(b, prm);
    if (rc == LLM_EINVAL) {
        snprintf(err, errcap, "The extra generation parameters must be a JSON object");
        goto out;
    }
    if (rc != LLM_OK)
        goto out;
    rc = LLM_ENOMEM;
    *body = json_dumps_compact(b);
    *url = llm__strdupf("%s/chat/completions", p->base_url);
    if (*body && *url)
        rc = LLM_OK;
out:
    if (rc == LLM_ENOMEM)
        snprintf(err, errcap, "Out of memory");
    if (rc != LLM_OK) {
        free(*body);
        free(*url);
        *body = NULL;
        *url = NULL;
    }
    json_decref(arr);
    json_decref(b);
    return rc;
}

static int oa_chat_event(llm_chat_call_t *c, json_t *ev)
{
    llm_xfer_t *x = &c->x;
    llm_result_t *res = c->res;
    const char *who = x->p->name;

    json_t *model = json_object_get(ev, "model");
    if (json_is_string(model) && json_string_length(model))
        llm__copy_str(res->model, sizeof res->model, ev, "model");

    json_t *choices = json_object_get(ev, "choices");
    if (choices && !json_is_array(choices) && !json_is_null(choices))
        return llm__fail(x, LLM_EPROTO, "Malformed chunk from %s: 'choices' is not an array", who);
    json_t *ch = json_array_get(choices, 0);
    if (ch) {
        if (!json_is_object(ch))
            return llm__fail(x, LLM_EPROTO, "Malformed chunk from %s: a choice is not an object",
                             who);
        json_t *delta = json_object_get(ch, "delta");
        if (!delta)
            delta = json_object_get(ch, "message"); /* an answer that was not streamed */
        if (delta && !json_is_object(delta) && !json_is_null(delta))
            return llm__fail(x, LLM_EPROTO, "Malformed chunk from %s: 'delta' is not an object",
                             who);
        json_t *content = json_object_get(delta, "content");
        if (content && !json_is_string(content) && !json_is_null(content))
            return llm__fail(x, LLM_EPROTO,
                             "Malformed chunk from %s: 'delta.content' is not a string", who);
        if (json_is_string(content) &&
            llm__emit(c, json_string_value(content), json_string_length(content)) != LLM_OK)
            return x->rc;
        json_t *fr = json_object_get(ch, "finish_reason");
        if (json_is_string(fr) && json_string_length(fr))
            llm__finish(c, json_string_value(fr));
    }

    json_t *usage = json_object_get(ev, "usage");
    if (json_is_object(usage)) {
        res->usage.prompt_tokens = llm__get_int(usage, "prompt_tokens", res->usage.prompt_tokens);
        res->usage.completion_tokens =
            llm__get_int(usage, "completion_tokens", res->usage.completion_tokens);
        json_t *det = json_object_get(usage, "prompt_tokens_details");
        res->usage.cached_tokens = llm__get_int(det, "cached_tokens", res->usage.cached_tokens);
    }
    json_t *timings = json_object_get(ev, "timings");
    if (json_is_object(timings)) {
        json_decref(res->timings);
        res->timings = json_incref(timings);
        if (res->usage.cached_tokens < 0)
            res->usage.cached_tokens = llm__get_int(timings, "cache_n", -1);
    }
    return LLM_OK;
}

/* ---- JSON calls -------------------------------------------------------- */

/* One request with a JSON answer. body (may be NULL) is stolen.
 * timeout_ms bounds the whole exchange (0: the provider's timeouts). On
 * success *out is a new reference (NULL for an empty answer). Messages go
 * to errmsg (may be NULL). */
static int json_call(llm_provider_t *p, const char *method, const char *url, json_t *body,
                     size_t max_body, unsigned timeout_ms, const llm_callbacks_t *cb, void *ud,
                     json_t **out, int *status, char *errmsg, size_t errcap)
{
    *out = NULL;
    char *text = NULL;
    if (body) {
        text = json_dumps_compact(body);
        json_decref(body);
        if (!text) {
            if (errmsg)
                snprintf(errmsg, errcap, "Out of memory");
            return LLM_ENOMEM;
        }
    }
    llm_xfer_t x;
    llm__xfer_init(&x, p, method, url);
    x.cb = cb;
    x.ud = ud;
    x.body = text;
    x.body_len = text ? strlen(text) : 0;
    x.max_body = max_body;
    x.timeout_ms = timeout_ms;
    int rc = llm__xfer_run(&x);
    if (status)
        *status = x.status;
    if (rc == LLM_OK) {
        *out = x.json;
        x.json = NULL;
    } else if (errmsg) {
        snprintf(errmsg, errcap, "%s", x.error);
    }
    llm__xfer_cleanup(&x);
    free(text);
    return rc;
}

static json_t *messages_json(const llm_message_t *msgs, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        json_t *m = json_pack("{s:s, s:o}", "role", llm_role_name(msgs[i].role), "content",
                              llm__json_text(msgs[i].content));
        if (!m || json_array_append_new(arr, m) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* LLM_OK for the local engine; LLM_ENOTSUP, with a message, for others. */
static int require_cache_api(const llm_provider_t *p, char *errmsg, size_t errcap)
{
    if (p->cfg.kind == LLM_PROVIDER_LOCAL)
        return LLM_OK;
    if (errmsg)
        snprintf(errmsg, errcap, "%s does not offer a KV-cache API", p->name);
    return LLM_ENOTSUP;
}

/* ---- prefill ----------------------------------------------------------- */

typedef struct {
    llm_prefill_result_t *out;
    const llm_callbacks_t *cb;
    void *ud;
    bool got_done;
} prefill_ctx_t;

static int prefill_fill(llm_xfer_t *x, llm_prefill_result_t *out, const json_t *j)
{
    json_t *id = json_object_get(j, "id");
    if (!json_is_string(id) || json_string_length(id) == 0)
        return llm__fail(x, LLM_EPROTO, "Malformed prefill answer from %s: no entry id",
                         x->p->name);
    llm__copy_str(out->id, sizeof out->id, j, "id");
    out->n_tokens = (int)llm__get_int(j, "n_tokens", 0);
    out->bytes = llm__get_int(j, "bytes", 0);
    llm__copy_str(out->tier, sizeof out->tier, j, "tier");
    json_t *ms = json_object_get(j, "prefill_ms");
    out->prefill_ms = json_is_number(ms) ? json_number_value(ms) : 0;
    out->cached = json_is_true(json_object_get(j, "cached"));
    out->pinned = json_is_true(json_object_get(j, "pinned"));
    return LLM_OK;
}

static int prefill_event(llm_xfer_t *x, json_t *ev)
{
    prefill_ctx_t *k = x->ctx;
    const char *what = json_string_value(json_object_get(ev, "event"));
    if (!what)
        return llm__fail(x, LLM_EPROTO, "Malformed prefill event from %s: no 'event' field",
                         x->p->name);
    if (strcmp(what, "progress") == 0) {
        if (k->cb && k->cb->on_progress)
            k->cb->on_progress(k->ud, (int)llm__get_int(ev, "done", 0),
                               (int)llm__get_int(ev, "total", 0));
        return LLM_OK;
    }
    if (strcmp(what, "done") == 0) {
        k->got_done = true;
        return prefill_fill(x, k->out, ev);
    }
    return LLM_OK; /* unknown events are for newer clients */
}

static int oa_prefill(llm_provider_t *p, const llm_message_t *msgs, size_t n, unsigned flags,
                      const char *cache_salt, const llm_callbacks_t *cb, void *ud,
                      llm_prefill_result_t *out)
{
    out->rc = require_cache_api(p, out->error, sizeof out->error);
    if (out->rc)
        return out->rc;
    bool stream = cb && cb->on_progress;
    json_t *arr = messages_json(msgs, n);
    json_t *body = arr ? json_pack("{s:o, s:b, s:b}", "messages", arr, "pin",
                                   (flags & LLM_PREFILL_PIN) != 0, "stream", stream)
                       : NULL;
    if (body && (flags & LLM_PREFILL_DISK))
        json_object_set_new(body, "tier", json_string("disk"));
    if (body && cache_salt)
        json_object_set_new(body, "cache_salt", llm__json_text(cache_salt));
    char *url = llm__strdupf("%s/v1/cache/prefill", p->root_url);
    char *text = body ? json_dumps_compact(body) : NULL;
    json_decref(body);
    if (!url || !text) {
        free(url);
        free(text);
        out->rc = LLM_ENOMEM;
        snprintf(out->error, sizeof out->error, "Out of memory");
        return out->rc;
    }
    llm_xfer_t x;
    prefill_ctx_t k = { out, cb, ud, false };
    llm__xfer_init(&x, p, "POST", url);
    x.cb = cb;
    x.ud = ud;
    x.body = text;
    x.body_len = strlen(text);
    x.sse = stream;
    x.max_body = (size_t)1 << 20;
    x.on_event = prefill_event;
    x.ctx = &k;
    int rc = llm__xfer_run(&x);
    if (rc == LLM_OK && stream && !k.got_done)
        rc = llm__fail(&x, LLM_ECONN, "The prefill answer from %s ended before it was complete",
                       p->name);
    if (rc == LLM_OK && !stream) {
        if (!json_is_object(x.json))
            rc = llm__fail(&x, LLM_EPROTO, "Malformed prefill answer from %s", p->name);
        else
            rc = prefill_fill(&x, out, x.json);
    }
    out->upstream_status = x.status;
    out->rc = rc;
    if (rc != LLM_OK)
        snprintf(out->error, sizeof out->error, "%s", x.error);
    llm__xfer_cleanup(&x);
    free(url);
    free(text);
    return rc;
}

/* ---- drafts -------------------------------------------------------------- */

static int oa_draft(llm_provider_t *p, const llm_message_t *msgs, size_t n, const char *cache_salt,
                    const char *key, bool *accepted, char *errmsg, size_t errcap)
{
    int rc = require_cache_api(p, errmsg, errcap);
    if (rc)
        return rc;
    json_t *arr = messages_json(msgs, n);
    json_t *body = arr ? json_pack("{s:o, s:o}", "messages", arr, "key", llm__json_text(key))
                       : NULL;
    if (body && cache_salt)
        json_object_set_new(body, "cache_salt", llm__json_text(cache_salt));
    char *url = llm__strdupf("%s/v1/cache/draft", p->root_url);
    if (!body || !url) {
        json_decref(body);
        free(url);
        if (errmsg)
            snprintf(errmsg, errcap, "Out of memory");
        return LLM_ENOMEM;
    }
    json_t *j = NULL;
    rc = json_call(p, "POST", url, body, (size_t)64 << 10, LLM_STATUS_TIMEOUT_MS, NULL, NULL, &j,
                   NULL, errmsg, errcap);
    if (rc == LLM_OK)
        *accepted = json_is_true(json_object_get(j, "accepted"));
    json_decref(j);
    free(url);
    return rc;
}

/* ---- cache delete, models, tokenize -------------------------------------- */

/* GET {root}{path} from the local engine, a status call (bounded by
 * LLM_STATUS_TIMEOUT_MS); *out as json_call's. */
static int cache_get(llm_provider_t *p, const char *path, size_t max_body, json_t **out,
                     char *errmsg, size_t errcap)
{
    *out = NULL;
    int rc = require_cache_api(p, errmsg, errcap);
    if (rc)
        return rc;
    char *url = llm__strdupf("%s%s", p->root_url, path);
    if (!url)
        return LLM_ENOMEM;
    rc = json_call(p, "GET", url, NULL, max_body, LLM_STATUS_TIMEOUT_MS, NULL, NULL, out, NULL,
                   errmsg, errcap);
    free(url);
    return rc;
}

static int oa_cache_delete(llm_provider_t *p, const char *id, char *errmsg, size_t errcap)
{
    int rc = require_cache_api(p, errmsg, errcap);
    if (rc)
        return rc;
    size_t len = id ? strlen(id) : 0;
    if (len == 0 || len > 64 || strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                           "0123456789_-") != len) {
        if (errmsg)
            snprintf(errmsg, errcap, "Not a cache entry id");
        return LLM_EINVAL;
    }
    char *url = llm__strdupf("%s/v1/cache/%s", p->root_url, id);
    if (!url)
        return LLM_ENOMEM;
    json_t *j = NULL;
    rc = json_call(p, "DELETE", url, NULL, (size_t)64 << 10, 0, NULL, NULL, &j, NULL, errmsg,
                   errcap);
    json_decref(j);
    free(url);
    return rc;
}

static int oa_models(llm_provider_t *p, llm_model_info_t *out, char *errmsg, size_t errcap)
{
    char *url = llm__strdupf("%s/models", p->base_url);
    if (!url)
        return LLM_ENOMEM;
    json_t *j = NULL;
    /* The local engine answers at once, even while it decodes: a status
     * call need not wait the provider's minutes. */
    unsigned limit = p->cfg.kind == LLM_PROVIDER_LOCAL ? LLM_STATUS_TIMEOUT_MS : 0;
    int rc = json_call(p, "GET", url, NULL, (size_t)4 << 20, limit, NULL, NULL, &j, NULL, errmsg,
                       errcap);
    free(url);
    if (rc != LLM_OK)
        return rc;
    json_t *data = json_object_get(j, "data");
    json_t *pick = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(data, i, v) {
        const char *id = json_string_value(json_object_get(v, "id"));
        if (!pick || (id && *p->model && strcmp(id, p->model) == 0))
            pick = v;
        if (id && *p->model && strcmp(id, p->model) == 0)
            break;
    }
    if (!json_is_object(pick) || !json_is_string(json_object_get(pick, "id"))) {
        if (errmsg)
            snprintf(errmsg, errcap, "%s lists no model", p->name);
        json_decref(j);
        return LLM_EPROTO;
    }
    llm__copy_str(out->id, sizeof out->id, pick, "id");
    json_t *meta = json_object_get(pick, "meta");
    llm__copy_str(out->name, sizeof out->name, meta, "name");
    out->random_weights = json_is_true(json_object_get(meta, "random_weights"));
    out->n_ctx_slot = (int)llm__get_int(meta, "n_ctx_slot", 0);
    out->n_ctx_train = (int)llm__get_int(meta, "n_ctx_train", 0);
    out->cache_enabled = json_is_true(json_object_get(meta, "cache_enabled"));
    llm__copy_str(out->fingerprint, sizeof out->fingerprint, meta, "fingerprint");
    json_decref(j);
    return LLM_OK;
}

static int oa_cache_stats(llm_provider_t *p, llm_cache_stats_t *out, char *errmsg, size_t errcap)
{
    json_t *j;
    int rc = cache_get(p, "/v1/cache/stats", (size_t)64 << 10, &j, errmsg, errcap);
    if (rc != LLM_OK)
        return rc;
    out->entries = llm__get_int(j, "entries", 0);
    out->bytes_ram = llm__get_int(j, "bytes_ram", 0);
    out->bytes_disk = llm__get_int(j, "bytes_disk", 0);
    json_decref(j);
    return LLM_OK;
}

static int oa_cache_entries(llm_provider_t *p, llm_cache_entry_t **out, size_t *n, char *errmsg,
                            size_t errcap)
{
    json_t *j;
    int rc = cache_get(p, "/v1/cache", (size_t)64 << 20, &j, errmsg, errcap);
    if (rc != LLM_OK)
        return rc;
    json_t *arr = json_object_get(j, "entries");
    if (!json_is_array(arr)) {
        if (errmsg)
            snprintf(errmsg, errcap, "Malformed cache list from %s: no 'entries' array", p->name);
        json_decref(j);
        return LLM_EPROTO;
    }
    size_t cnt = json_array_size(arr);
    llm_cache_entry_t *e = cnt ? calloc(cnt, sizeof *e) : NULL;
    if (cnt && !e) {
        json_decref(j);
        return LLM_ENOMEM;
    }
    size_t k = 0, i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_string(json_object_get(v, "id")))
            continue;
        llm__copy_str(e[k].id, sizeof e[k].id, v, "id");
        llm__copy_str(e[k].tier, sizeof e[k].tier, v, "tier");
        e[k].n_tokens = (int)llm__get_int(v, "n_tokens", 0);
        e[k].pinned = json_is_true(json_object_get(v, "pinned"));
        llm__copy_str(e[k].salt_hash, sizeof e[k].salt_hash, v, "salt_hash");
        k++;
    }
    json_decref(j);
    *out = e;
    *n = k;
    return LLM_OK;
}

static int oa_tokenize_count(llm_provider_t *p, const char *text, size_t len, int64_t *n,
                             char *errmsg, size_t errcap)
{
    /* count_only: kvchat-engine answers {"count"} instead of every token;
     * other servers (llama-server) ignore it and answer {"tokens"}. */
    json_t *body = json_pack("{s:o, s:b}", "content", json_string_lossy(text, len), "count_only", 1);
    char *url = llm__strdupf("%s/tokenize", p->root_url);
    if (!body || !url) {
        json_decref(body);
        free(url);
        return LLM_ENOMEM;
    }
    /* No more tokens than bytes (plus specials), each at most 11 bytes of
     * JSON: the answer's limit follows from the text's length. */
    size_t max = len * 12 + ((size_t)64 << 10);
    json_t *j = NULL;
    int rc = json_call(p, "POST", url, body, max, 0, NULL, NULL, &j, NULL, errmsg, errcap);
    free(url);
    if (rc != LLM_OK)
        return rc;
    json_t *count = json_object_get(j, "count");
    json_t *toks = json_object_get(j, "tokens");
    if (json_is_integer(count) && json_integer_value(count) >= 0) {
        *n = (int64_t)json_integer_value(count);
    } else if (json_is_array(toks)) {
        *n = (int64_t)json_array_size(toks);
    } else {
        if (errmsg)
            snprintf(errmsg, errcap, "Malformed tokenize answer from %s: no 'count' or 'tokens'",
                     p->name);
        json_decref(j);
        return LLM_EPROTO;
    }
    json_decref(j);
    return LLM_OK;
}

const llm_backend_t llm__backend_openai = {
    .auth_prefix = "Authorization: Bearer ",
    .chat_request = oa_chat_request,
    .chat_event = oa_chat_event,
    .prefill = oa_prefill,
    .draft = oa_draft,
    .cache_delete = oa_cache_delete,
    .models = oa_models,
    .cache_stats = oa_cache_stats,
    .cache_entries = oa_cache_entries,
    .tokenize_count = oa_tokenize_count,
};
