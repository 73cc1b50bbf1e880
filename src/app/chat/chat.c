/* chat.c — see chat.h. */
#include "app/chat/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/docs/documents.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/utf8.h"

/* History sent with each turn: the last HISTORY_MAX messages. */
#define HISTORY_MAX 200

struct chat {
    app_t *a;
    app_provider_t *provider;
    char session_id[STORE_ID_MAX + 1];
    llm_message_t *msgs;
    size_t n;
    char *system;               /* owned */
    store_msg_list_t history;   /* owns the history's strings */
    char *user;                 /* owned copy of the user's message */
};

const char *chat_session_id(const chat_t *c) { return c->session_id; }

/* An untitled session is named after its first message: the first line,
 * at most TITLE_MAX bytes cut at a character boundary, with an ellipsis
 * when cut. Best effort: a failure leaves the session untitled. */
#define TITLE_MAX 60
static void title_from_message(app_t *a, const char *session_id, const char *message)
{
    while (*message == ' ' || *message == '\t' || *message == '\n' || *message == '\r')
        message++;
    size_t len = strcspn(message, "\r\n");
    bool cut = len > TITLE_MAX || message[len] != '\0';
    if (len > TITLE_MAX)
        len = utf8_complete_len(message, TITLE_MAX);   /* do not split a character */
    while (len > 0 && message[len - 1] == ' ')
        len--;
    if (len == 0)
        return;
    buf_t b;
    buf_init(&b, 3 * len + 16);   /* room for U+FFFD per invalid byte */
    if (utf8_append_sanitized(&b, message, len) == BUF_OK && (!cut || buf_puts(&b, "…") == BUF_OK))
        store_session_set_title(a->store, session_id, b.data);
    buf_cleanup(&b);
}

void chat_free(chat_t *c)
{
    if (!c)
        return;
    app_provider_release(c->provider);
    free(c->msgs);
    free(c->system);
    free(c->user);
    store_msg_list_cleanup(&c->history);
    free(c);
}

int chat_prepare(app_t *a, const char *session_id, const char *message, const char *document_id,
                 bool document_given, chat_t **out, int *status, char *err, size_t errcap)
{
    if (!store_id_valid(session_id)) {
        *status = 400;
        snprintf(err, errcap, "Invalid session id: use 1 to 128 letters, digits, '-', '_' or '.'");
        return -1;
    }
    if (!message || !*message) {
        *status = 400;
        snprintf(err, errcap, "The message must not be empty");
        return -1;
    }
    if (strlen(message) > STORE_CONTENT_MAX) {
        *status = 413;
        snprintf(err, errcap, "The message is too long");
        return -1;
    }
    store_doc_t doc;
    store_doc_init(&doc);
    bool have_doc = false;
    if (document_given && document_id && *document_id) {
        int rc = store_doc_get(a->store, document_id, &doc);
        if (rc) {
            *status = rc == STORE_ENOTFOUND || rc == STORE_EINVAL ? 404 : 500;
            snprintf(err, errcap, rc == STORE_ENOTFOUND || rc == STORE_EINVAL
                                      ? "Document not found" : "Cannot read the document");
            return -1;
        }
        have_doc = true;
    }
    chat_t *c = calloc(1, sizeof *c);
    if (!c) {
        store_doc_cleanup(&doc);
        *status = 500;
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    c->a = a;
    snprintf(c->session_id, sizeof c->session_id, "%s", session_id);
    store_session_t ss;
    store_session_init(&ss);
    bool created = false;
    int rc = store_session_ensure(a->store, session_id, have_doc ? doc.id : NULL, &ss, &created);
    if (rc == STORE_OK && document_given && !created) {
        /* an explicit null/"" detaches the document; an id attaches it */
        rc = store_session_set_document(a->store, session_id, have_doc ? doc.id : NULL);
        free(ss.document_id);
        ss.document_id = have_doc ? strdup(doc.id) : NULL;
    }
    if (rc != STORE_OK) {
        *status = 500;
        snprintf(err, errcap, "Cannot open the session: %s", store_strerror(rc));
        goto fail;
    }
    /* The document the session uses (given now or attached before). */
    if (!have_doc && ss.document_id) {
        if (store_doc_get(a->store, ss.document_id, &doc) == STORE_OK)
            have_doc = true;
    }
    if (have_doc) {
        char *text = NULL;
        size_t len = 0;
        if (store_doc_text(a->store, doc.id, &text, &len) != STORE_OK ||
            !(c->system = documents_system_message(a, doc.filename, text))) {
            free(text);
            *status = 500;
            snprintf(err, errcap, "Cannot read the document's text");
            goto fail;
        }
        free(text);
    } else if (a->cfg.system_no_doc[0]) {
        c->system = strdup(a->cfg.system_no_doc);
    }
    rc = store_msg_list(a->store, session_id, 0, &c->history);
    if (rc != STORE_OK) {
        *status = 500;
        snprintf(err, errcap, "Cannot read the session's history: %s", store_strerror(rc));
        goto fail;
    }
    if (!ss.title && c->history.n == 0)
        title_from_message(a, session_id, message);
    c->user = strdup(message);
    size_t first = c->history.n > HISTORY_MAX ? c->history.n - HISTORY_MAX : 0;
    c->msgs = calloc(c->history.n - first + 2, sizeof *c->msgs);
    if (!c->user || !c->msgs) {
        *status = 500;
        snprintf(err, errcap, "out of memory");
        goto fail;
    }
    if (c->system)
        c->msgs[c->n++] = (llm_message_t){ LLM_ROLE_SYSTEM, c->system };
    for (size_t i = first; i < c->history.n; i++) {
        const store_msg_t *m = &c->history.items[i];
        /* answers cut short are shown to the user but not sent back */
        if (m->incomplete || m->role == STORE_ROLE_SYSTEM)
            continue;
        c->msgs[c->n++] = (llm_message_t){ m->role == STORE_ROLE_USER ? LLM_ROLE_USER
                                                                       : LLM_ROLE_ASSISTANT,
                                           m->content };
    }
    c->msgs[c->n++] = (llm_message_t){ LLM_ROLE_USER, c->user };
    rc = store_msg_append(a->store, session_id, STORE_ROLE_USER, message, false, NULL, NULL);
    if (rc != STORE_OK) {
        *status = 500;
        snprintf(err, errcap, "Cannot store the message: %s", store_strerror(rc));
        goto fail;
    }
    c->provider = app_provider_acquire(a);
    store_session_cleanup(&ss);
    store_doc_cleanup(&doc);
    *out = c;
    return 0;
fail:
    store_session_cleanup(&ss);
    store_doc_cleanup(&doc);
    chat_free(c);
    return -1;
}

int chat_run(chat_t *c, const llm_callbacks_t *cb, void *ud, llm_result_t *res)
{
    llm_params_t params = llm_params_default();
    params.max_tokens = c->a->cfg.max_tokens;
    params.temperature = c->a->cfg.temperature;
    pthread_mutex_lock(&c->a->lock);
    c->a->stats.chats++;
    c->a->active_chats++;
    pthread_mutex_unlock(&c->a->lock);
    int rc = llm_chat_stream(c->provider->llm, c->msgs, c->n, &params, cb, ud, res);
    pthread_mutex_lock(&c->a->lock);
    c->a->active_chats--;
    if (rc == LLM_ECANCELLED)
        c->a->stats.chat_cancelled++;
    else if (rc != LLM_OK)
        c->a->stats.chat_errors++;
    pthread_mutex_unlock(&c->a->lock);
    if (rc == LLM_OK)
        app_record_chat(c->a, res->ttft_ms, res->usage.prompt_tokens, res->usage.cached_tokens);
    else if (rc != LLM_ECANCELLED)
        log_warn("chat in session %s failed: %s", c->session_id, res->error);
    return rc;
}

json_t *chat_usage_json(const llm_result_t *res)
{
    json_t *u = json_object();
    if (res->usage.prompt_tokens >= 0)
        json_object_set_new(u, "prompt_tokens", json_integer(res->usage.prompt_tokens));
    if (res->usage.completion_tokens >= 0)
        json_object_set_new(u, "completion_tokens", json_integer(res->usage.completion_tokens));
    if (res->usage.cached_tokens >= 0)
        json_object_set_new(u, "cached_tokens", json_integer(res->usage.cached_tokens));
    return u;
}

int64_t chat_store_answer(chat_t *c, const char *text, size_t len, bool incomplete,
                          const llm_result_t *res)
{
    json_t *meta = json_pack("{s:o, s:O?, s:s, s:f, s:s}", "usage", chat_usage_json(res), "timings",
                             res->timings, "finish_reason", res->finish_reason, "ttft_ms",
                             res->ttft_ms, "model", res->model);
    char *meta_s = json_dumps_compact(meta);
    json_decref(meta);
    char *t = strndup(text ? text : "", len);
    int64_t now = store_now_ms();
    int rc = store_msg_append(c->a->store, c->session_id, STORE_ROLE_ASSISTANT, t ? t : "",
                              incomplete, meta_s, NULL);
    if (rc != STORE_OK)
        log_error("session %s: cannot store the answer: %s", c->session_id, store_strerror(rc));
    free(t);
    free(meta_s);
    return now;
}
