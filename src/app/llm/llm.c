/* llm.c — the provider object, and everything providers have in common:
 * the HTTP exchange over libcurl, the SSE reader, error mapping, and the
 * chat call's bookkeeping. See llm.h for the contract, llm_int.h for the
 * backend interface.
 *
 * One exchange = one easy handle driven by a private multi handle, so that
 * the calling thread wakes at least every POLL_MS to poll should_stop and
 * the first-byte and idle timeouts (libcurl's progress callback may be
 * called only once a second while nothing arrives). Cancelling removes the
 * handle in the middle of the answer, which closes the connection: the
 * engine sees its client leave and drops the generation.
 *
 * The answer is read as it arrives: an SSE stream is split into lines
 * (each within max_line), lines into events ("data:" lines joined by '\n',
 * dispatched at the blank line), events parsed as JSON one at a time. A
 * non-2xx answer is read whole (within ERRBODY_MAX) and turned into a
 * message from its error object. A 2xx answer that is not an event stream
 * is read whole within max_body.
 */
#include "app/llm/llm.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "app/llm/llm_int.h"
#include "common/log.h"
#include "common/utf8.h"

#define POLL_MS 50
#define ERRBODY_MAX ((size_t)64 << 10)
#define DONE_GRACE_MS 1000 /* how long to wait for the end of the body after [DONE] */
#define USER_AGENT "kvchat/0.1"

enum { MODE_UNSET = 0, MODE_SSE, MODE_WHOLE, MODE_ERRBODY };

/* ---- codes ------------------------------------------------------------- */

static const struct {
    int rc;
    int status;
    const char *text;
} codes[] = {
    { LLM_OK, 200, "success" },
    { LLM_ENOMEM, 500, "out of memory" },
    { LLM_EINVAL, 500, "invalid argument or configuration" },
    { LLM_EDOWN, 503, "the model server is not running" },
    { LLM_ETIMEOUT, 504, "the model server did not answer in time" },
    { LLM_EAUTH, 502, "the API key was rejected" },
    { LLM_ERATELIMIT, 429, "rate limited by the model provider" },
    { LLM_EUNAVAIL, 503, "the model server is busy or unavailable" },
    { LLM_EUPSTREAM, 502, "the model server failed" },
    { LLM_ETOOLONG, 422, "the prompt is too long for the model's context" },
    { LLM_EREFUSED, 502, "the model server refused the request" },
    { LLM_ENOTFOUND, 404, "not found on the model server" },
    { LLM_EPROTO, 502, "malformed answer from the model server" },
    { LLM_ETOOBIG, 502, "the answer from the model server is too large" },
    { LLM_ECONN, 502, "the connection to the model server was lost" },
    { LLM_ECANCELLED, 499, "cancelled" },
    { LLM_ENOTSUP, 501, "not supported by this model provider" },
};

const char *llm_strerror(int rc)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].rc == rc)
            return codes[i].text;
    return "unknown error";
}

int llm_http_status(int rc)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].rc == rc)
            return codes[i].status;
    return 500;
}

int llm_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? LLM_OK : LLM_ENOMEM;
}

void llm_global_cleanup(void) { curl_global_cleanup(); }

/* ---- small helpers ----------------------------------------------------- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void copy_cut(char *dst, size_t cap, const char *src, size_t len)
{
    if (cap == 0)
        return;
    if (len >= cap)
        len = utf8_complete_len(src, cap - 1);
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static void set_msg(char *dst, size_t cap, const char *src)
{
    if (dst && cap)
        copy_cut(dst, cap, src ? src : "", src ? strlen(src) : 0);
}

char *llm__strdupf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

json_t *llm__json_text(const char *s)
{
    return json_string_lossy(s ? s : "", s ? strlen(s) : 0);
}

int llm__merge_extra(json_t *body, const llm_params_t *params)
{
    if (!params || !params->extra)
        return LLM_OK;
    if (!json_is_object(params->extra))
        return LLM_EINVAL;
    /* json_object_update takes no const; the extra object is not modified. */
    return json_object_update(body, (json_t *)params->extra) == 0 ? LLM_OK : LLM_ENOMEM;
}

void llm__copy_str(char *dst, size_t cap, const json_t *obj, const char *key)
{
    const char *s = NULL;
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v)) {
        s = json_string_value(v);
        copy_cut(dst, cap, s, json_string_length(v));
    } else if (cap) {
        dst[0] = '\0';
    }
}

int64_t llm__get_int(const json_t *obj, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return dflt;
}

/* ---- providers --------------------------------------------------------- */

int llm_kind_parse(const char *s, llm_kind_t *out)
{
    static const char *names[] = { "local", "openai", "gemini" };
    for (int i = 0; s && i < 3; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (llm_kind_t)i;
            return LLM_OK;
        }
    }
    return LLM_EINVAL;
}

const char *llm_kind_name(llm_kind_t kind)
{
    switch (kind) {
    case LLM_PROVIDER_LOCAL: return "local";
    case LLM_PROVIDER_OPENAI: return "openai";
    case LLM_PROVIDER_GEMINI: return "gemini";
    }
    return "unknown";
}

llm_config_t llm_config_default(llm_kind_t kind)
{
    llm_config_t c = {
        .kind = kind,
        .connect_timeout_ms = 10 * 1000,
        .first_byte_timeout_ms = 300 * 1000,
        .idle_timeout_ms = 120 * 1000,
        .total_timeout_ms = 30 * 60 * 1000,
        .max_line = (size_t)1 << 20,
        .max_answer = (size_t)4 << 20,
    };
    return c;
}

/* libcurl share: DNS answers and TLS sessions only (sharing connections
 * between threads is documented as unsafe). One mutex per data kind. */
struct llm_share {
    CURLSH *sh;
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
};

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *user)
{
    (void)h;
    (void)access;
    struct llm_share *s = user;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&s->locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *user)
{
    (void)h;
    struct llm_share *s = user;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&s->locks[data]);
}

static void share_free(struct llm_share *s)
{
    if (!s)
        return;
    if (s->sh)
        curl_share_cleanup(s->sh);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&s->locks[i]);
    free(s);
}

static struct llm_share *share_new(void)
{
    struct llm_share *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&s->locks[i], NULL);
    s->sh = curl_share_init();
    if (!s->sh || curl_share_setopt(s->sh, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
        curl_share_setopt(s->sh, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
        curl_share_setopt(s->sh, CURLSHOPT_USERDATA, s) != CURLSHE_OK ||
        curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
        curl_share_setopt(s->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
        share_free(s);
        return NULL;
    }
    return s;
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

/* Default display name: who the user's messages should blame. */
static char *default_name(llm_kind_t kind, const char *url)
{
    if (kind == LLM_PROVIDER_LOCAL)
        return strdup("the model server");
    if (kind == LLM_PROVIDER_GEMINI)
        return strdup("Gemini");
    if (strstr(url, "://api.openai.com"))
        return strdup("OpenAI");
    /* "the model server at host:port" */
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t hl = strcspn(h, "/?#");
    return llm__strdupf("the model server at %.*s", (int)(hl > 200 ? 200 : hl), h);
}

int llm_provider_new(const llm_config_t *cfg, llm_provider_t **out, char *errmsg, size_t errcap)
{
    *out = NULL;
    set_msg(errmsg, errcap, "");
    if (!cfg) {
        set_msg(errmsg, errcap, "no configuration");
        return LLM_EINVAL;
    }
    const llm_backend_t *be;
    const char *dflt_url;
    switch (cfg->kind) {
    case LLM_PROVIDER_LOCAL:
        be = &llm__backend_openai;
        dflt_url = "http://127.0.0.1:13141/v1";
        break;
    case LLM_PROVIDER_OPENAI:
        be = &llm__backend_openai;
        dflt_url = "https://api.openai.com/v1";
        break;
    case LLM_PROVIDER_GEMINI:
        be = &llm__backend_gemini;
        dflt_url = "https://generativelanguage.googleapis.com";
        break;
    default:
        set_msg(errmsg, errcap, "unknown provider kind");
        return LLM_EINVAL;
    }
    const char *url = cfg->base_url && *cfg->base_url ? cfg->base_url : dflt_url;
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
        set_msg(errmsg, errcap, "the base URL must start with http:// or https://");
        return LLM_EINVAL;
    }
    if (strlen(url) > 2048) {
        set_msg(errmsg, errcap, "the base URL is too long");
        return LLM_EINVAL;
    }
    if (cfg->kind == LLM_PROVIDER_GEMINI && (!cfg->model || !*cfg->model)) {
        set_msg(errmsg, errcap, "Gemini needs a model name (for example gemini-2.0-flash)");
        return LLM_EINVAL;
    }
    if (cfg->max_line < 1024 || cfg->max_answer < 1024) {
        set_msg(errmsg, errcap, "max_line and max_answer must be at least 1 KiB");
        return LLM_EINVAL;
    }

    llm_provider_t *p = calloc(1, sizeof *p);
    if (!p)
        goto nomem;
    p->cfg = *cfg;
    p->be = be;
    p->base_url = strdup(url);
    p->api_key = dup_or_empty(cfg->api_key);
    p->model = dup_or_empty(cfg->model);
    p->share = share_new();
    if (!p->base_url || !p->api_key || !p->model || !p->share)
        goto nomem;
    size_t ul = strlen(p->base_url);
    while (ul > 8 && p->base_url[ul - 1] == '/')
        p->base_url[--ul] = '\0';
    p->root_url = strdup(p->base_url);
    if (!p->root_url)
        goto nomem;
    if (ul >= 3 && strcmp(p->root_url + ul - 3, "/v1") == 0)
        p->root_url[ul - 3] = '\0';
    p->name = cfg->name && *cfg->name ? strdup(cfg->name) : default_name(cfg->kind, p->base_url);
    if (!p->name)
        goto nomem;
    p->cfg.base_url = p->base_url;
    p->cfg.api_key = p->api_key;
    p->cfg.model = p->model;
    p->cfg.name = p->name;
    *out = p;
    return LLM_OK;
nomem:
    llm_provider_free(p);
    set_msg(errmsg, errcap, "out of memory");
    return LLM_ENOMEM;
}

void llm_provider_free(llm_provider_t *p)
{
    if (!p)
        return;
    share_free(p->share);
    free(p->base_url);
    free(p->root_url);
    if (p->api_key) {
        /* The key does not linger in freed memory. */
        volatile char *k = p->api_key;
        for (size_t i = 0; k[i]; i++)
            k[i] = 0;
        free(p->api_key);
    }
    free(p->model);
    free(p->name);
    free(p);
}

void llm_provider_set_down_hook(llm_provider_t *p, llm_down_fn fn, void *ud)
{
    p->down_fn = fn;
    p->down_ud = ud;
}

void llm_provider_set_key_source(llm_provider_t *p, llm_key_fn fn, void *ud)
{
    p->key_fn = fn;
    p->key_ud = fn ? ud : NULL;
}

llm_kind_t llm_provider_kind(const llm_provider_t *p) { return p->cfg.kind; }
const char *llm_provider_base_url(const llm_provider_t *p) { return p->base_url; }
const char *llm_provider_model(const llm_provider_t *p) { return p->model; }
const char *llm_provider_name(const llm_provider_t *p) { return p->name; }

/* ---- messages and params ------------------------------------------------ */

int llm_role_parse(const char *s, llm_role_t *out)
{
    if (!s)
        return LLM_EINVAL;
    if (strcmp(s, "system") == 0 || strcmp(s, "developer") == 0)
        *out = LLM_ROLE_SYSTEM;
    else if (strcmp(s, "user") == 0)
        *out = LLM_ROLE_USER;
    else if (strcmp(s, "assistant") == 0)
        *out = LLM_ROLE_ASSISTANT;
    else
        return LLM_EINVAL;
    return LLM_OK;
}

const char *llm_role_name(llm_role_t role)
{
    switch (role) {
    case LLM_ROLE_SYSTEM: return "system";
    case LLM_ROLE_USER: return "user";
    case LLM_ROLE_ASSISTANT: return "assistant";
    }
    return "user";
}

llm_params_t llm_params_default(void)
{
    llm_params_t p = { .max_tokens = 0, .temperature = -1.0, .top_p = -1.0 };
    return p;
}

void llm_result_init(llm_result_t *r)
{
    memset(r, 0, sizeof *r);
    r->usage.prompt_tokens = -1;
    r->usage.completion_tokens = -1;
    r->usage.cached_tokens = -1;
    r->ttft_ms = -1;
}

void llm_result_cleanup(llm_result_t *r)
{
    if (!r)
        return;
    free(r->text);
    r->text = NULL;
    json_decref(r->timings);
    r->timings = NULL;
}

/* ---- failures ---------------------------------------------------------- */

int llm__fail(llm_xfer_t *x, int rc, const char *fmt, ...)
{
    if (x->rc != LLM_OK)
        return x->rc;
    x->rc = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->error, sizeof x->error, fmt, ap);
    va_end(ap);
    /* vsnprintf may have cut a character in half. */
    x->error[utf8_complete_len(x->error, strlen(x->error))] = '\0';
    return rc;
}

/* The provider's name with a capital first letter, for sentence starts. */
static void cap_name(const llm_provider_t *p, char *out, size_t cap)
{
    snprintf(out, cap, "%s", p->name);
    if (out[0] >= 'a' && out[0] <= 'z')
        out[0] = (char)(out[0] - 'a' + 'A');
}

static bool contains_ci(const char *hay, const char *needle)
{
    return hay && strcasestr(hay, needle) != NULL;
}

/* The ways servers say "the prompt does not fit": the engine ("the prompt
 * has N tokens or more, but a slot's context holds M tokens"), llama-server
 * ("exceeds the available context size", type exceed_context_size_error),
 * OpenAI and vLLM ("maximum context length is N tokens",
 * context_length_exceeded), Gemini ("input token count (N) exceeds the
 * maximum number of tokens allowed"). */
static bool says_too_long(const char *msg, const char *type, const char *code)
{
    if (contains_ci(type, "context") || contains_ci(code, "context"))
        return true;
    if (contains_ci(msg, "context") &&
        (contains_ci(msg, "token") || contains_ci(msg, "exceed") || contains_ci(msg, "length") ||
         contains_ci(msg, "size")))
        return true;
    return contains_ci(msg, "token") && (contains_ci(msg, "exceed") || contains_ci(msg, "too long") ||
                                         contains_ci(msg, "too many"));
}

/* Gemini answers a bad key with 400 INVALID_ARGUMENT, reason
 * API_KEY_INVALID in its details. */
static bool says_bad_key(const json_t *err, const char *msg)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(err, "details"), i, d) {
        const char *reason = json_string_value(json_object_get(d, "reason"));
        if (reason && strcmp(reason, "API_KEY_INVALID") == 0)
            return true;
    }
    return contains_ci(msg, "API key not valid");
}

int llm__fail_upstream(llm_xfer_t *x, int status, const json_t *err)
{
    const char *msg = NULL, *type = NULL, *code_s = NULL;
    if (json_is_string(err)) {
        msg = json_string_value(err);
    } else if (json_is_object(err)) {
        json_t *m = json_object_get(err, "message");
        msg = json_is_string(m) ? json_string_value(m) : NULL;
        json_t *t = json_object_get(err, "type");
        if (!json_is_string(t))
            t = json_object_get(err, "status"); /* Gemini: "INVALID_ARGUMENT" */
        type = json_is_string(t) ? json_string_value(t) : NULL;
        json_t *c = json_object_get(err, "code");
        if (json_is_string(c)) {
            code_s = json_string_value(c);
        } else if (json_is_integer(c)) {
            json_int_t v = json_integer_value(c);
            /* An error event inside a 200 stream carries the real status. */
            if (status == 0 || status / 100 == 2)
                status = v >= 100 && v <= 599 ? (int)v : 0;
        }
    }
    if (!msg || !*msg)
        msg = type && *type ? type : "no details given";
    if (status / 100 == 2)
        status = 0;

    char nm[160];
    cap_name(x->p, nm, sizeof nm);
    const char *who = x->p->name;
    int rc;
    if (status == 401 || status == 403 || contains_ci(type, "PERMISSION_DENIED") ||
        contains_ci(type, "UNAUTHENTICATED") || says_bad_key(err, msg)) {
        rc = llm__fail(x, LLM_EAUTH, "The API key was rejected by %s: %s", who, msg);
    } else if (status == 429 || contains_ci(type, "RESOURCE_EXHAUSTED")) {
        rc = llm__fail(x, LLM_ERATELIMIT, "Rate limited by %s: %s", who, msg);
    } else if ((status == 0 || status == 400 || status == 413 || status == 422) &&
               says_too_long(msg, type, code_s)) {
        rc = llm__fail(x, LLM_ETOOLONG, "The conversation is too long for the model: %s", msg);
    } else if (status == 404) {
        rc = llm__fail(x, LLM_ENOTFOUND, "%s answered 404 Not Found: %s", nm, msg);
    } else if (status == 503 || contains_ci(type, "UNAVAILABLE")) {
        rc = llm__fail(x, LLM_EUNAVAIL, "%s is unavailable: %s", nm, msg);
    } else if (status == 504 || contains_ci(type, "DEADLINE_EXCEEDED")) {
        rc = llm__fail(x, LLM_ETIMEOUT, "%s timed out: %s", nm, msg);
    } else if (status >= 400 && status < 500) {
        rc = llm__fail(x, LLM_EREFUSED, "%s refused the request (HTTP %d): %s", nm, status, msg);
    } else if (status >= 500) {
        rc = llm__fail(x, LLM_EUPSTREAM, "Error from %s (HTTP %d): %s", who, status, msg);
    } else {
        rc = llm__fail(x, LLM_EUPSTREAM, "Error from %s: %s", who, msg);
    }
    return rc;
}

/* A non-2xx answer: find its error object (OpenAI/Gemini {"error":...},
 * Gemini's [{"error":...}], FastAPI's {"detail":...}, an SSE "data:" line,
 * or plain text) and record it. */
static void fail_from_body(llm_xfer_t *x)
{
    const char *body = x->whole.data ? x->whole.data : "";
    size_t len = x->whole.len;
    if (len >= 5 && strncmp(body, "data:", 5) == 0) {
        body += 5;
        len -= 5;
        size_t nl = strcspn(body, "\r\n");
        len = nl < len ? nl : len;
    }
    json_t *j = NULL;
    if (json_parse(body, len, &j, NULL) == JSON_OK) {
        json_t *root = json_is_array(j) ? json_array_get(j, 0) : j;
        json_t *err = json_object_get(root, "error");
        if (!err)
            err = json_object_get(root, "detail");
        if (err && !json_is_null(err)) {
            llm__fail_upstream(x, x->status, err);
            json_decref(j);
            return;
        }
        json_decref(j);
    }
    /* Not an error object: quote the start of the text. */
    buf_t t;
    buf_init(&t, 400);
    size_t show = len > 300 ? 300 : len;
    show = utf8_complete_len(body, show);
    utf8_append_sanitized(&t, body, show);
    for (size_t i = 0; i < t.len; i++)
        if (t.data[i] == '\n' || t.data[i] == '\r' || t.data[i] == '\t')
            t.data[i] = ' ';
    json_t *s = json_string(t.len ? t.data : "");
    if (s && t.len == 0) {
        json_decref(s);
        s = json_string(x->status == 404 ? "no such path" : "no details given");
    }
    llm__fail_upstream(x, x->status, s);
    json_decref(s);
    buf_cleanup(&t);
}

/* ---- SSE --------------------------------------------------------------- */

static void dispatch_json(llm_xfer_t *x, json_t *ev)
{
    if (json_is_array(ev)) { /* Gemini answers a non-SSE request with an array */
        size_t i;
        json_t *v;
        json_array_foreach(ev, i, v) {
            dispatch_json(x, v);
            if (x->rc != LLM_OK)
                return;
        }
        return;
    }
    if (!json_is_object(ev)) {
        llm__fail(x, LLM_EPROTO, "Malformed answer from %s: an event is not a JSON object",
                  x->p->name);
        return;
    }
    json_t *err = json_object_get(ev, "error");
    if (err && !json_is_null(err)) {
        llm__fail_upstream(x, x->status, err);
        return;
    }
    if (x->on_event)
        x->on_event(x, ev);
}

/* One complete event: its joined data lines are in x->event. */
static void dispatch_event(llm_xfer_t *x)
{
    const char *data = x->event.data ? x->event.data : "";
    size_t len = x->event.len;
    bool is_error = strcmp(x->event_name, "error") == 0;
    x->has_data = false;
    x->event_name[0] = '\0';
    if (x->done) {
        buf_reset(&x->event); /* nothing after [DONE] counts */
        return;
    }
    if (len == 0)
        return; /* "data:" alone: a keep-alive some proxies send */
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        x->done = true;
        buf_reset(&x->event);
        return;
    }
    json_t *ev = NULL;
    json_err_t jerr;
    if (json_parse(data, len, &ev, &jerr) != JSON_OK) {
        if (is_error) {
            json_t *s = json_string_lossy(data, len > 300 ? utf8_complete_len(data, 300) : len);
            llm__fail_upstream(x, 0, s);
            json_decref(s);
        } else {
            llm__fail(x, LLM_EPROTO, "Malformed event from %s: %s", x->p->name, jerr.msg);
        }
        buf_reset(&x->event);
        return;
    }
    buf_reset(&x->event);
    if (is_error && json_is_object(ev) && !json_object_get(ev, "error"))
        llm__fail_upstream(x, 0, ev);
    else
        dispatch_json(x, ev);
    json_decref(ev);
}

/* One line without its terminator. */
static void sse_line(llm_xfer_t *x, char *line, size_t len)
{
    if (len && line[len - 1] == '\r')
        line[--len] = '\0';
    if (len == 0) {
        if (x->has_data)
            dispatch_event(x);
        return;
    }
    if (line[0] == ':')
        return; /* comment (the engine's heartbeat) */
    char *colon = memchr(line, ':', len);
    size_t flen = colon ? (size_t)(colon - line) : len;
    const char *val = colon ? colon + 1 : line + len;
    size_t vlen = colon ? len - flen - 1 : 0;
    if (vlen && *val == ' ') {
        val++;
        vlen--;
    }
    if (flen == 4 && memcmp(line, "data", 4) == 0) {
        int rc = BUF_OK;
        if (x->has_data)
            rc = buf_append(&x->event, "\n", 1);
        if (rc == BUF_OK)
            rc = buf_append(&x->event, val, vlen);
        if (rc == BUF_ETOOBIG)
            llm__fail(x, LLM_ETOOBIG, "An event from %s is larger than %zu bytes", x->p->name,
                      x->p->cfg.max_line);
        else if (rc != BUF_OK)
            llm__fail(x, LLM_ENOMEM, "Out of memory reading the answer from %s", x->p->name);
        x->has_data = true;
    } else if (flen == 5 && memcmp(line, "event", 5) == 0) {
        copy_cut(x->event_name, sizeof x->event_name, val, vlen);
    }
    /* id:, retry: and unknown fields are ignored, as SSE says. */
}

void llm__sse_feed(llm_xfer_t *x, const char *p, size_t n)
{
    while (n > 0 && x->rc == LLM_OK) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (buf_append(&x->line, p, take) != BUF_OK) {
            if (x->line.len + take > x->line.max)
                llm__fail(x, LLM_ETOOBIG, "A line of the answer from %s is longer than %zu bytes",
                          x->p->name, x->p->cfg.max_line);
            else
                llm__fail(x, LLM_ENOMEM, "Out of memory reading the answer from %s", x->p->name);
            return;
        }
        if (!nl)
            return;
        sse_line(x, x->line.data ? x->line.data : (char *)"", x->line.len);
        buf_reset(&x->line);
        p += take + 1;
        n -= take + 1;
    }
}

/* The stream ended: a last line without '\n' and a last event without a
 * blank line still count. */
void llm__sse_flush(llm_xfer_t *x)
{
    if (x->rc == LLM_OK && x->line.len) {
        sse_line(x, x->line.data, x->line.len);
        buf_reset(&x->line);
    }
    if (x->rc == LLM_OK && x->has_data)
        dispatch_event(x);
}

/* ---- the exchange ------------------------------------------------------ */

void llm__xfer_init(llm_xfer_t *x, llm_provider_t *p, const char *method, const char *url)
{
    memset(x, 0, sizeof *x);
    x->p = p;
    x->method = method;
    x->url = url;
    x->max_body = p->cfg.max_answer;
}

void llm__xfer_cleanup(llm_xfer_t *x)
{
    json_decref(x->json);
    x->json = NULL;
    buf_cleanup(&x->line);
    buf_cleanup(&x->event);
    buf_cleanup(&x->whole);
}

/* The first byte of the body: decide how to read it. */
static void choose_mode(llm_xfer_t *x, CURL *h)
{
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    x->status = (int)status;
    char *ct = NULL;
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
    if (status / 100 != 2) {
        x->mode = MODE_ERRBODY;
        buf_init(&x->whole, ERRBODY_MAX);
    } else if (x->sse && (!ct || strncasecmp(ct, "text/event-stream", 17) == 0)) {
        x->mode = MODE_SSE;
        buf_init(&x->line, x->p->cfg.max_line);
        buf_init(&x->event, x->p->cfg.max_line);
    } else {
        x->mode = MODE_WHOLE;
        /* A streaming request answered in one piece still holds at most
         * the answer plus its envelope. */
        buf_init(&x->whole, x->sse ? x->p->cfg.max_answer + x->p->cfg.max_line : x->max_body);
    }
}

typedef struct {
    llm_xfer_t *x;
    CURL *h;
} wctx_t;

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    wctx_t *w = ud;
    llm_xfer_t *x = w->x;
    size_t n = size * nmemb;
    x->got_bytes = true;
    x->t_last = now_ms();
    if (x->rc != LLM_OK)
        return 0;
    if (x->mode == MODE_UNSET)
        choose_mode(x, w->h);
    switch (x->mode) {
    case MODE_SSE:
        llm__sse_feed(x, data, n);
        break;
    case MODE_ERRBODY:
        if (buf_append(&x->whole, data, n) != BUF_OK) {
            /* Enough to find the message: keep what fits, stop reading. */
            size_t room = x->whole.max - x->whole.len;
            buf_append(&x->whole, data, room < n ? room : n);
            x->overflow = true;
            return 0;
        }
        break;
    case MODE_WHOLE:
        if (buf_append(&x->whole, data, n) != BUF_OK) {
            if (x->whole.len + n > x->whole.max)
                llm__fail(x, LLM_ETOOBIG, "The answer from %s is larger than %zu bytes",
                          x->p->name, x->whole.max);
            else
                llm__fail(x, LLM_ENOMEM, "Out of memory reading the answer from %s", x->p->name);
        }
        break;
    }
    return x->rc == LLM_OK ? n : 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    llm_xfer_t *x = ud;
    (void)data;
    x->got_bytes = true;
    x->t_last = now_ms();
    return size * nmemb;
}

/* Map a transfer that failed in libcurl. */
/* The limits of the exchange, ms: the whole of it (0 = none), and the
 * connection within it. */
static unsigned total_timeout(const llm_xfer_t *x)
{
    return x->timeout_ms ? x->timeout_ms : x->p->cfg.total_timeout_ms;
}

static unsigned connect_timeout(const llm_xfer_t *x)
{
    unsigned c = x->p->cfg.connect_timeout_ms ? x->p->cfg.connect_timeout_ms : 10000;
    return x->timeout_ms && c > x->timeout_ms ? x->timeout_ms : c;
}

static void fail_curl(llm_xfer_t *x, CURLcode cc, const char *ebuf)
{
    const char *detail = ebuf && *ebuf ? ebuf : curl_easy_strerror(cc);
    llm_provider_t *p = x->p;
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
        if (p->cfg.kind == LLM_PROVIDER_LOCAL) {
            const char *h = strstr(p->base_url, "://");
            h = h ? h + 3 : p->base_url;
            int hl = (int)strcspn(h, "/?#");
            llm__fail(x, LLM_EDOWN, "The model server is not running (nothing answers at %.*s)",
                      hl > 200 ? 200 : hl, h);
        } else {
            llm__fail(x, LLM_EDOWN, "Could not connect to %s (%s)", p->name, detail);
        }
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        llm__fail(x, LLM_EDOWN, "Could not find the host of %s (%s)", p->name, detail);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        if (!x->got_bytes && strstr(detail, "onnect"))
            llm__fail(x, LLM_ETIMEOUT, "Could not connect to %s within %g s", p->name,
                      connect_timeout(x) / 1000.0);
        else
            llm__fail(x, LLM_ETIMEOUT, "No complete answer from %s within %g s", p->name,
                      total_timeout(x) / 1000.0);
        break;
    case CURLE_OUT_OF_MEMORY:
        llm__fail(x, LLM_ENOMEM, "Out of memory talking to %s", p->name);
        break;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        llm__fail(x, LLM_EINVAL, "Bad URL for %s: %s", p->name, detail);
        break;
    default:
        llm__fail(x, LLM_ECONN, "The connection to %s failed: %s", p->name, detail);
        break;
    }
}

int llm__xfer_run(llm_xfer_t *x)
{
    llm_provider_t *p = x->p;
    char ebuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL;
    char *auth = NULL;
    CURLM *m = NULL;
    CURL *h = NULL;
    wctx_t w = { x, NULL };
    bool added = false;
    char key[LLM_KEY_MAX + 1] = "";
    const char *api_key = p->api_key;

    x->t_start = now_ms();
    x->t_last = 0;
    if (x->cb && x->cb->should_stop && x->cb->should_stop(x->ud))
        return llm__fail(x, LLM_ECANCELLED, "Cancelled");

    h = curl_easy_init();
    m = curl_multi_init();
    if (!h || !m) {
        llm__fail(x, LLM_ENOMEM, "Out of memory talking to %s", p->name);
        goto out;
    }
    w.h = h;
    hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
    if (hdrs && x->body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    if (hdrs)
        hdrs = curl_slist_append(hdrs, x->sse ? "Accept: text/event-stream" : "Accept: application/json");
    if (p->key_fn) {
        size_t kl = p->key_fn(p->key_ud, key, sizeof key);
        api_key = kl > 0 && kl < sizeof key && key[kl] == '\0' ? key : "";
    }
    if (hdrs && *api_key) {
        auth = llm__strdupf("%s%s", p->be->auth_prefix, api_key);
        hdrs = auth ? curl_slist_append(hdrs, auth) : NULL;
    }
    if (!hdrs) {
        llm__fail(x, LLM_ENOMEM, "Out of memory talking to %s", p->name);
        goto out;
    }

    CURLcode cc = CURLE_OK;
#define SET(opt, val)                                                                             \
    do {                                                                                          \
        if (cc == CURLE_OK)                                                                       \
            cc = curl_easy_setopt(h, opt, val);                                                   \
    } while (0)
    SET(CURLOPT_URL, x->url);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_KEEPIDLE, 30L);
    SET(CURLOPT_TCP_KEEPINTVL, 15L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)connect_timeout(x));
    if (total_timeout(x))
        SET(CURLOPT_TIMEOUT_MS, (long)total_timeout(x));
    SET(CURLOPT_SHARE, p->share->sh);
    SET(CURLOPT_USERAGENT, USER_AGENT);
    SET(CURLOPT_HTTPHEADER, hdrs);
    SET(CURLOPT_ERRORBUFFER, ebuf);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, &w);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, x);
    if (x->body) {
        SET(CURLOPT_POSTFIELDS, x->body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
    }
    if (strcmp(x->method, "GET") != 0 && strcmp(x->method, "POST") != 0)
        SET(CURLOPT_CUSTOMREQUEST, x->method);
    else if (strcmp(x->method, "GET") == 0)
        SET(CURLOPT_HTTPGET, 1L);
#undef SET
    if (cc != CURLE_OK) {
        llm__fail(x, LLM_EINVAL, "Could not set up the request to %s: %s", p->name,
                  curl_easy_strerror(cc));
        goto out;
    }
    if (curl_multi_add_handle(m, h) != CURLM_OK) {
        llm__fail(x, LLM_ENOMEM, "Out of memory talking to %s", p->name);
        goto out;
    }
    added = true;

    int running = 1;
    while (x->rc == LLM_OK) {
        CURLMcode mc = curl_multi_perform(m, &running);
        if (mc != CURLM_OK) {
            llm__fail(x, LLM_ECONN, "The connection to %s failed: %s", p->name,
                      curl_multi_strerror(mc));
            break;
        }
        if (!running || x->rc != LLM_OK)
            break;
        if (x->cb && x->cb->should_stop && x->cb->should_stop(x->ud)) {
            llm__fail(x, LLM_ECANCELLED, "Cancelled");
            break;
        }
        double t = now_ms();
        if (x->done && t - x->t_last > DONE_GRACE_MS)
            break; /* the answer is complete; the server just did not end the body */
        if (!x->got_bytes && p->cfg.first_byte_timeout_ms &&
            t - x->t_start > p->cfg.first_byte_timeout_ms) {
            llm__fail(x, LLM_ETIMEOUT, "No answer from %s within %g s", p->name,
                      p->cfg.first_byte_timeout_ms / 1000.0);
            break;
        }
        if (x->got_bytes && p->cfg.idle_timeout_ms && t - x->t_last > p->cfg.idle_timeout_ms) {
            char nm[160];
            cap_name(p, nm, sizeof nm);
            llm__fail(x, LLM_ETIMEOUT, "%s stopped sending for %g s in the middle of the answer",
                      nm, p->cfg.idle_timeout_ms / 1000.0);
            break;
        }
        mc = curl_multi_poll(m, NULL, 0, POLL_MS, NULL);
        if (mc != CURLM_OK) {
            llm__fail(x, LLM_ECONN, "The connection to %s failed: %s", p->name,
                      curl_multi_strerror(mc));
            break;
        }
    }
    if (x->rc == LLM_OK && running) {
        /* Left early after [DONE]: nothing more to read. */
    } else if (x->rc == LLM_OK) {
        int left;
        CURLMsg *msg;
        CURLcode res = CURLE_OK;
        while ((msg = curl_multi_info_read(m, &left)))
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == h)
                res = msg->data.result;
        if (res != CURLE_OK && x->mode == MODE_SSE && x->done) {
            /* Broken off after [DONE]: the answer was complete. */
        } else if (res != CURLE_OK) {
            if (x->mode == MODE_ERRBODY && (res == CURLE_WRITE_ERROR || x->whole.len))
                fail_from_body(x); /* a refused request that was cut short */
            else
                fail_curl(x, res, ebuf);
        }
    }
    if (x->rc == LLM_OK) {
        if (x->mode == MODE_UNSET) {
            long status = 0;
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
            x->status = (int)status;
            if (status / 100 != 2)
                x->mode = MODE_ERRBODY;
        }
        switch (x->mode) {
        case MODE_ERRBODY:
            fail_from_body(x);
            break;
        case MODE_SSE:
            llm__sse_flush(x);
            break;
        case MODE_WHOLE: {
            json_err_t jerr;
            if (x->whole.len == 0)
                break;
            if (json_parse(x->whole.data, x->whole.len, &x->json, &jerr) != JSON_OK) {
                llm__fail(x, LLM_EPROTO, "Malformed answer from %s: %s", p->name, jerr.msg);
                break;
            }
            if (x->sse) { /* a streaming request answered in one piece */
                dispatch_json(x, x->json);
                if (x->rc == LLM_OK)
                    x->done = true;
            } else if (json_is_object(x->json)) {
                json_t *err = json_object_get(x->json, "error");
                if (err && !json_is_null(err))
                    llm__fail_upstream(x, x->status, err);
            }
            break;
        }
        default: /* 2xx with no body */
            break;
        }
    }
out:
    if (added)
        curl_multi_remove_handle(m, h); /* mid-answer: closes the connection */
    if (h)
        curl_easy_cleanup(h);
    if (m)
        curl_multi_cleanup(m);
    curl_slist_free_all(hdrs);
    if (auth) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    explicit_bzero(key, sizeof key);
    if (x->rc != LLM_OK && x->rc != LLM_ECANCELLED)
        log_warn("llm: %s %s: %s", x->method, x->url, x->error);
    if ((x->rc == LLM_EDOWN || x->rc == LLM_ECONN) && p->down_fn)
        p->down_fn(p->down_ud, x->error);
    return x->rc;
}

/* ---- chat -------------------------------------------------------------- */

int llm__emit(llm_chat_call_t *c, const char *text, size_t len)
{
    llm_xfer_t *x = &c->x;
    if (len == 0 || x->rc != LLM_OK)
        return x->rc;
    if (c->res->text_len + len > x->p->cfg.max_answer)
        return llm__fail(x, LLM_ETOOBIG, "The answer from %s is longer than %zu bytes", x->p->name,
                         x->p->cfg.max_answer);
    buf_t fixed;
    buf_init(&fixed, len * 3 + 4);
    if (!utf8_valid(text, len)) {
        if (utf8_append_sanitized(&fixed, text, len) != BUF_OK) {
            buf_cleanup(&fixed);
            return llm__fail(x, LLM_ENOMEM, "Out of memory");
        }
        text = fixed.data;
        len = fixed.len;
    }
    if (c->res->ttft_ms < 0)
        c->res->ttft_ms = now_ms() - c->t0;
    c->res->text_len += len;
    int stop = c->cb && c->cb->on_delta ? c->cb->on_delta(c->ud, text, len) : 0;
    buf_cleanup(&fixed);
    if (stop)
        return llm__fail(x, LLM_ECANCELLED, "Cancelled");
    return LLM_OK;
}

void llm__finish(llm_chat_call_t *c, const char *reason)
{
    c->finished = true;
    snprintf(c->res->finish_reason, sizeof c->res->finish_reason, "%s",
             reason && *reason ? reason : "stop");
}

/* Whether a cache salt may be sent: none (NULL, ""), or at most
 * LLM_CACHE_SALT_MAX bytes of UTF-8 (the engine's limit: a longer one
 * would be refused there, after the request was built). */
static bool salt_ok(const char *salt)
{
    if (!salt || !*salt)
        return true;
    size_t len = strnlen(salt, LLM_CACHE_SALT_MAX + 1);
    return len <= LLM_CACHE_SALT_MAX && utf8_valid(salt, len);
}

static int chat_event(llm_xfer_t *x, json_t *ev)
{
    llm_chat_call_t *c = (llm_chat_call_t *)x;
    return x->p->be->chat_event(c, ev);
}

int llm_chat_stream(llm_provider_t *p, const llm_message_t *msgs, size_t n,
                    const llm_params_t *params, const llm_callbacks_t *cb, void *ud,
                    llm_result_t *out)
{
    llm_result_init(out);
    double t0 = now_ms();
    llm_params_t dflt = llm_params_default();
    if (!params)
        params = &dflt;
    if (!p || (!msgs && n) || n == 0) {
        out->rc = LLM_EINVAL;
        snprintf(out->error, sizeof out->error, "A chat needs at least one message");
        return out->rc;
    }
    if (!salt_ok(params->cache_salt)) {
        out->rc = LLM_EINVAL;
        snprintf(out->error, sizeof out->error, "A cache salt is 1 to %d bytes of UTF-8",
                 LLM_CACHE_SALT_MAX);
        return out->rc;
    }
    char *url = NULL, *body = NULL;
    int rc = p->be->chat_request(p, msgs, n, params, &url, &body, out->error, sizeof out->error);
    if (rc != LLM_OK) {
        out->rc = rc;
        return rc;
    }
    llm_chat_call_t c;
    llm__xfer_init(&c.x, p, "POST", url);
    c.res = out;
    c.cb = cb;
    c.ud = ud;
    c.finished = false;
    c.t0 = t0;
    c.x.cb = cb;
    c.x.ud = ud;
    c.x.body = body;
    c.x.body_len = strlen(body);
    c.x.sse = true;
    c.x.on_event = chat_event;
    rc = llm__xfer_run(&c.x);
    if (rc == LLM_OK && !c.finished && !c.x.done)
        rc = llm__fail(&c.x, LLM_ECONN, "The answer from %s ended before it was complete",
                       p->name);
    out->upstream_status = c.x.status;
    if (rc != LLM_OK) {
        snprintf(out->error, sizeof out->error, "%s", c.x.error);
        if (rc == LLM_ECANCELLED)
            snprintf(out->finish_reason, sizeof out->finish_reason, "cancelled");
    }
    if (!out->model[0])
        snprintf(out->model, sizeof out->model, "%s", p->model);
    out->rc = rc;
    out->total_ms = now_ms() - t0;
    llm__xfer_cleanup(&c.x);
    free(url);
    free(body);
    return rc;
}

typedef struct {
    buf_t text;
    const llm_callbacks_t *cb;
    void *ud;
} collect_t;

static int collect_delta(void *ud, const char *text, size_t len)
{
    collect_t *k = ud;
    if (buf_append(&k->text, text, len) != BUF_OK)
        return 1; /* cannot happen within max_answer unless out of memory */
    return k->cb && k->cb->on_delta ? k->cb->on_delta(k->ud, text, len) : 0;
}

static bool collect_stop(void *ud)
{
    collect_t *k = ud;
    return k->cb && k->cb->should_stop ? k->cb->should_stop(k->ud) : false;
}

int llm_chat(llm_provider_t *p, const llm_message_t *msgs, size_t n, const llm_params_t *params,
             const llm_callbacks_t *cb, void *ud, llm_result_t *out)
{
    collect_t k = { .cb = cb, .ud = ud };
    buf_init(&k.text, p ? p->cfg.max_answer : 0);
    const llm_callbacks_t mine = { collect_delta, NULL, collect_stop };
    int rc = llm_chat_stream(p, msgs, n, params, &mine, &k, out);
    out->text = buf_steal(&k.text, NULL);
    buf_cleanup(&k.text);
    if (!out->text && rc == LLM_OK) {
        out->rc = rc = LLM_ENOMEM;
        snprintf(out->error, sizeof out->error, "Out of memory");
    }
    return rc;
}

/* ---- engine calls: dispatch ---------------------------------------------- */

int llm_draft(llm_provider_t *p, const llm_message_t *msgs, size_t n, const char *cache_salt,
              const char *key, bool *accepted, char *errmsg, size_t errcap)
{
    *accepted = false;
    if (!p->be->draft) {
        if (errmsg)
            snprintf(errmsg, errcap, "%s does not take drafts", p->name);
        return LLM_ENOTSUP;
    }
    size_t klen = key ? strlen(key) : 0;
    if (!msgs || n == 0 || klen == 0 || klen > LLM_DRAFT_KEY_MAX || !salt_ok(cache_salt)) {
        if (errmsg)
            snprintf(errmsg, errcap, "A draft needs messages, a key of 1 to %d bytes and a "
                                     "valid cache salt", LLM_DRAFT_KEY_MAX);
        return LLM_EINVAL;
    }
    return p->be->draft(p, msgs, n, cache_salt && *cache_salt ? cache_salt : NULL, key, accepted,
                        errmsg, errcap);
}

int llm_prefill(llm_provider_t *p, const llm_message_t *msgs, size_t n, unsigned flags,
                const llm_callbacks_t *cb, void *ud, llm_prefill_result_t *out)
{
    return llm_prefill_salted(p, msgs, n, flags, NULL, cb, ud, out);
}

int llm_prefill_salted(llm_provider_t *p, const llm_message_t *msgs, size_t n, unsigned flags,
                       const char *cache_salt, const llm_callbacks_t *cb, void *ud,
                       llm_prefill_result_t *out)
{
    memset(out, 0, sizeof *out);
    if (!p->be->prefill) {
        out->rc = LLM_ENOTSUP;
        snprintf(out->error, sizeof out->error, "%s does not keep a KV cache", p->name);
        return out->rc;
    }
    if (!msgs || n == 0) {
        out->rc = LLM_EINVAL;
        snprintf(out->error, sizeof out->error, "A prefill needs at least one message");
        return out->rc;
    }
    if (!salt_ok(cache_salt)) {
        out->rc = LLM_EINVAL;
        snprintf(out->error, sizeof out->error, "A cache salt is 1 to %d bytes of UTF-8",
                 LLM_CACHE_SALT_MAX);
        return out->rc;
    }
    return p->be->prefill(p, msgs, n, flags, cache_salt && *cache_salt ? cache_salt : NULL, cb,
                          ud, out);
}

int llm_cache_delete(llm_provider_t *p, const char *entry_id, char *errmsg, size_t errcap)
{
    set_msg(errmsg, errcap, "");
    if (!p->be->cache_delete) {
        set_msg(errmsg, errcap, "This model provider does not keep a KV cache");
        return LLM_ENOTSUP;
    }
    return p->be->cache_delete(p, entry_id, errmsg, errcap);
}

int llm_context_tokens(const llm_provider_t *p)
{
    return p && p->cfg.context_tokens > 0 ? p->cfg.context_tokens : 0;
}

int llm_models(llm_provider_t *p, llm_model_info_t *out, char *errmsg, size_t errcap)
{
    memset(out, 0, sizeof *out);
    set_msg(errmsg, errcap, "");
    if (!p->be->models) {
        set_msg(errmsg, errcap, "This model provider does not list its models");
        return LLM_ENOTSUP;
    }
    return p->be->models(p, out, errmsg, errcap);
}

int llm_cache_stats(llm_provider_t *p, llm_cache_stats_t *out, char *errmsg, size_t errcap)
{
    memset(out, 0, sizeof *out);
    set_msg(errmsg, errcap, "");
    if (!p->be->cache_stats) {
        set_msg(errmsg, errcap, "This model provider does not keep a KV cache");
        return LLM_ENOTSUP;
    }
    return p->be->cache_stats(p, out, errmsg, errcap);
}

int llm_cache_entries(llm_provider_t *p, llm_cache_entry_t **out, size_t *n, char *errmsg,
                      size_t errcap)
{
    *out = NULL;
    *n = 0;
    set_msg(errmsg, errcap, "");
    if (!p->be->cache_entries) {
        set_msg(errmsg, errcap, "This model provider does not keep a KV cache");
        return LLM_ENOTSUP;
    }
    return p->be->cache_entries(p, out, n, errmsg, errcap);
}

int llm_tokenize_count(llm_provider_t *p, const char *text, size_t len, int64_t *n, char *errmsg,
                       size_t errcap)
{
    *n = 0;
    set_msg(errmsg, errcap, "");
    if (!p->be->tokenize_count) {
        set_msg(errmsg, errcap, "This model provider cannot count tokens");
        return LLM_ENOTSUP;
    }
    if (!text && len) {
        set_msg(errmsg, errcap, "no text");
        return LLM_EINVAL;
    }
    return p->be->tokenize_count(p, text ? text : "", len, n, errmsg, errcap);
}
