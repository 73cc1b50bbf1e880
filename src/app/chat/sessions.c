/* sessions.c — the /session endpoints and the chat turn over HTTP.
 *
 * A streamed turn runs on a worker thread: the handler validates, stores
 * the user message and opens the SSE stream, then returns (the connection's
 * thread must be free to send what the worker queues). The worker first
 * sends where the answer comes from (`{"rag_info":{...},"sources":[...],
 * "chunk":"","done":false}`, for a turn with a document), then calls the
 * provider, turns each delta into `data: {"chunk":"...","done":false}`,
 * and ends with `{"chunk":"","done":true,"full_response":...,"usage":...,
 * "timings":...}` or `{"error":"...","done":true}`. A client that goes away
 * makes should_stop true: the provider call is aborted (the engine cancels
 * the generation) and the partial answer is stored marked incomplete.
 *
 * Accounts: every call acts in the caller's sessions (auth_scope; NULL in
 * local mode: the sessions without an owner, as before accounts). Session
 * ids are the clients' and mean something only within their owner: two
 * users may each have a session "abc", and another user's id is the same
 * 404 "Session not found" as an unknown one. A user has at most
 * limits.chats_at_once turns running (auth_busy_begin; 429 past it).
 */
#include "app/chat/sessions.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/auth/auth.h"
#include "app/chat/chat.h"
#include "common/buf.h"
#include "common/log.h"

#define MAX_ACTIVE_CHATS 64

/* The caller's store scope: auth_scope, or NULL (everything, as in local
 * mode) for a caller who is nobody in particular (server.api_key in
 * accounts mode: an admin whose documents and sessions have no owner). */
static const store_scope_t *req_scope(httpd_req_t *req)
{
    const store_scope_t *s = auth_scope(req);
    return s && s->user_id ? s : NULL;
}

static json_t *time_json(int64_t ms)
{
    char t[STORE_TIME_BUFSZ];
    store_format_time(ms, t);
    return json_string(t);
}

static void reply_store_error(httpd_req_t *req, int rc)
{
    if (rc == STORE_ENOTFOUND || rc == STORE_EINVAL)
        httpd_reply_error(req, 404, "Session not found");
    else
        httpd_reply_error(req, 500, "Session store error: %s", store_strerror(rc));
}

static json_t *session_json(const store_session_t *s)
{
    return json_pack("{s:s, s:o, s:o, s:I, s:b, s:s?, s:s?, s:s?}", "session_id", s->id, "created_at",
                     time_json(s->created_at), "last_active", time_json(s->last_active),
                     "message_count", (json_int_t)s->message_count, "has_document",
                     s->document_id != NULL, "document_id", s->document_id, "document_filename",
                     s->document_filename, "title", s->title);
}

void sessions_h_create(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const store_scope_t *scope = req_scope(req);
    json_t *body = NULL;
    const char *msg;
    size_t blen = 0;
    httpd_req_body(req, &blen);
    if (blen && httpd_req_json(req, &body, &msg) != HTTPD_OK) {
        httpd_reply_error(req, 400, "%s", msg);
        return;
    }
    json_err_t err = { "" };
    const char *doc = NULL, *title = NULL, *sid = NULL;
    if (body && (json_get_string(body, "document_id", &doc, &err) == JSON_ETYPE ||
                 json_get_string(body, "title", &title, &err) == JSON_ETYPE ||
                 json_get_string(body, "session_id", &sid, &err) == JSON_ETYPE)) {
        httpd_reply_error(req, 400, "%s", err.msg);
        json_decref(body);
        return;
    }
    if (title && strlen(title) > STORE_NAME_MAX) {
        httpd_reply_error(req, 400, "Title too long: %zu bytes, the limit is %d", strlen(title),
                          STORE_NAME_MAX);
        json_decref(body);
        return;
    }
    if (doc && *doc) {
        store_doc_t d;
        store_doc_init(&d);
        int rc = store_doc_get_scoped(a->store, scope, doc, &d);
        store_doc_cleanup(&d);
        if (rc) {
            httpd_reply_error(req, 404, "Document not found");
            json_decref(body);
            return;
        }
    }
    store_session_t s;
    store_session_init(&s);
    int rc = store_session_create_scoped(a->store, scope, sid, doc && *doc ? doc : NULL, title,
                                         &s);
    json_decref(body);
    if (rc == STORE_ECONFLICT) {
        httpd_reply_error(req, 409, "A session with this id exists");
        return;
    }
    if (rc == STORE_EINVAL || rc == STORE_ETOOBIG) {
        httpd_reply_error(req, 400, "Invalid session id or title");
        return;
    }
    if (rc) {
        reply_store_error(req, rc);
        return;
    }
    httpd_reply_json(req, 201, session_json(&s));
    store_session_cleanup(&s);
}

void sessions_h_list(httpd_req_t *req, void *user)
{
    app_t *a = user;
    store_session_list_t l = { 0 };
    int rc = store_session_list_scoped(a->store, req_scope(req), 200, &l);
    if (rc) {
        reply_store_error(req, rc);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < l.n; i++)
        json_array_append_new(arr, session_json(&l.items[i]));
    store_session_list_cleanup(&l);
    httpd_reply_json(req, 200, arr);
}

/* The documents of the caller's session `id`, in order, as a JSON array
 * of ids (new ref). */
static json_t *document_ids_json(app_t *a, const store_scope_t *scope, const char *id)
{
    json_t *arr = json_array();
    store_id_list_t l;
    if (store_session_documents_scoped(a->store, scope, id, &l) == STORE_OK)
        for (size_t i = 0; i < l.n; i++)
            json_array_append_new(arr, json_string(l.ids[i]));
    store_id_list_cleanup(&l);
    return arr;
}

void sessions_h_get(httpd_req_t *req, void *user)
{
    app_t *a = user;
    store_session_t s;
    store_session_init(&s);
    const store_scope_t *scope = req_scope(req);
    int rc = store_session_get_scoped(a->store, scope, httpd_req_param(req, "session_id"), &s);
    if (rc) {
        reply_store_error(req, rc);
        return;
    }
    json_t *j = session_json(&s);
    json_object_set_new(j, "document_ids", document_ids_json(a, scope, s.id));
    httpd_reply_json(req, 200, j);
    store_session_cleanup(&s);
}

void sessions_h_delete(httpd_req_t *req, void *user)
{
    app_t *a = user;
    int rc = store_session_delete_scoped(a->store, req_scope(req),
                                         httpd_req_param(req, "session_id"));
    if (rc) {
        reply_store_error(req, rc);
        return;
    }
    httpd_reply_json(req, 200, json_pack("{s:s}", "message", "Session deleted successfully"));
}

void sessions_h_messages(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const char *id = httpd_req_param(req, "session_id");
    const store_scope_t *scope = req_scope(req);
    store_session_t s;
    store_session_init(&s);
    int rc = store_session_get_scoped(a->store, scope, id, &s);
    if (rc) {
        reply_store_error(req, rc);
        return;
    }
    store_msg_list_t l = { 0 };
    rc = store_msg_list_scoped(a->store, scope, id, 0, &l);
    if (rc) {
        store_session_cleanup(&s);
        reply_store_error(req, rc);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < l.n; i++) {
        const store_msg_t *m = &l.items[i];
        json_t *j = json_pack("{s:s, s:s, s:o, s:b}", "role", store_role_name(m->role), "content",
                              m->content, "timestamp", time_json(m->created_at), "incomplete",
                              m->incomplete);
        json_t *meta = m->meta ? json_loads(m->meta, 0, NULL) : NULL;
        if (meta) {
            const char *keys[] = { "usage", "timings", "ttft_ms", "finish_reason", "rag_info",
                                   "sources" };
            for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
                if (json_object_get(meta, keys[k]))
                    json_object_set(j, keys[k], json_object_get(meta, keys[k]));
            json_decref(meta);
        }
        json_array_append_new(arr, j);
    }
    json_t *body = json_pack("{s:s, s:o, s:b, s:s?, s:s?}", "session_id", s.id, "messages", arr,
                             "has_document", s.document_id != NULL, "document_id", s.document_id,
                             "document_filename", s.document_filename);
    json_object_set_new(body, "document_ids", document_ids_json(a, scope, s.id));
    store_msg_list_cleanup(&l);
    store_session_cleanup(&s);
    httpd_reply_json(req, 200, body);
}

/* Parse {message, document_id?, document_ids?, collection_id?, use_rag?}
 * into *turn (its strings borrowed from *body; the ids' array is ids,
 * STORE_SET_MAX entries); answers 400 itself on error. */
static int parse_turn(httpd_req_t *req, json_t **body, chat_turn_t *turn, const char **ids)
{
    memset(turn, 0, sizeof *turn);
    const char **message = &turn->message, **doc = &turn->document_id;
    bool *doc_given = &turn->document_given;
    turn->session_id = httpd_req_param(req, "session_id");
    turn->scope = req_scope(req);
    turn->use_rag = true;
    const char *msg;
    if (httpd_req_json(req, body, &msg) != HTTPD_OK) {
        httpd_reply_error(req, 400, "%s", msg);
        return -1;
    }
    json_err_t err = { "" };
    int rc = json_get_string(*body, "message", message, &err);
    if (rc != JSON_OK) {
        httpd_reply_error(req, 400, "%s", rc == JSON_EMISSING ? "Missing required field 'message'" : err.msg);
        json_decref(*body);
        return -1;
    }
    json_t *d = json_object_get(*body, "document_id");
    *doc_given = d != NULL;
    *doc = NULL;
    if (d && !json_is_null(d)) {
        if (!json_is_string(d)) {
            httpd_reply_error(req, 400, "Field 'document_id' must be a string or null");
            json_decref(*body);
            return -1;
        }
        *doc = json_string_value(d);
    }
    json_t *rag = json_object_get(*body, "use_rag");
    if (rag && !json_is_null(rag)) {
        if (!json_is_boolean(rag)) {
            httpd_reply_error(req, 400, "Field 'use_rag' must be true or false");
            json_decref(*body);
            return -1;
        }
        turn->use_rag = json_is_true(rag);
    }
    json_t *arr = json_object_get(*body, "document_ids");
    if (arr && !json_is_null(arr)) {
        size_t i;
        json_t *v;
        bool ok = json_is_array(arr) && json_array_size(arr) <= STORE_SET_MAX;
        json_array_foreach(arr, i, v) {
            if (!ok || !json_is_string(v)) {
                ok = false;
                break;
            }
            ids[i] = json_string_value(v);
        }
        if (!ok) {
            httpd_reply_error(req, 400, "Field 'document_ids' must be an array of at most %d "
                                        "document ids",
                              STORE_SET_MAX);
            json_decref(*body);
            return -1;
        }
        turn->document_ids = ids;
        turn->n_document_ids = json_array_size(arr);
        turn->ids_given = true;
    }
    /* the header, as payment APIs take it; or the body's field */
    turn->idempotency_key = httpd_req_header(req, "Idempotency-Key");
    json_t *ik = json_object_get(*body, "idempotency_key");
    if (!turn->idempotency_key && json_is_string(ik))
        turn->idempotency_key = json_string_value(ik);
    if (turn->idempotency_key && !chat_idempotency_key_valid(turn->idempotency_key)) {
        httpd_reply_error(req, 400, "An Idempotency-Key is 1 to %d of A-Z a-z 0-9 . _ : -",
                          CHAT_IDEMPOTENCY_MAX);
        json_decref(*body);
        return -1;
    }
    json_t *col = json_object_get(*body, "collection_id");
    if (col && !json_is_null(col)) {
        if (!json_is_string(col) || turn->ids_given) {
            httpd_reply_error(req, 400, "Field 'collection_id' must be a string, and not given "
                                        "with 'document_ids'");
            json_decref(*body);
            return -1;
        }
        turn->collection_id = json_string_value(col);
    }
    return 0;
}

/* ---- drafts ---- */

/* A turn being typed: prepared as the real one will be (nothing stored)
 * and sent to its engine as a draft. Always 202 once the turn is valid:
 * a draft is advice, so an engine that cannot take it (busy, remote,
 * down) makes it {"accepted": false, "reason"}, not an error; so does
 * llm.drafts = false, before any work. */
void sessions_h_draft(httpd_req_t *req, void *user)
{
    app_t *a = user;
    json_t *body = NULL;
    chat_turn_t turn;
    const char *ids[STORE_SET_MAX];
    if (parse_turn(req, &body, &turn, ids))
        return;
    if (!a->cfg.drafts) {
        json_decref(body);
        httpd_reply_json(req, 202, json_pack("{s:b, s:s}", "accepted", 0, "reason",
                                             "drafts are turned off on this server (llm.drafts)"));
        return;
    }
    turn.draft = true;
    turn.idempotency_key = NULL;
    chat_t *c;
    int status;
    char err[512] = "";
    if (chat_prepare(a, &turn, &c, &status, err, sizeof err)) {
        httpd_reply_error(req, status, "%s", err);
        json_decref(body);
        return;
    }
    json_decref(body);
    bool accepted = false;
    int rc = chat_draft(c, &accepted, err, sizeof err);
    chat_free(c);
    json_t *out = json_pack("{s:b}", "accepted", accepted);
    if (rc)
        json_object_set_new(out, "reason", json_string(err));
    httpd_reply_json(req, 202, out);
}

/* ---- non-streaming ---- */

static bool never_stop(void *ud)
{
    return httpd_req_gone(ud);
}

typedef struct {
    buf_t text;
} collect_t;

static int collect_delta(void *ud, const char *text, size_t len)
{
    collect_t *c = ud;
    return buf_append(&c->text, text, len) == BUF_OK ? 0 : 1;
}

typedef struct {
    collect_t col;
    httpd_req_t *req;
} sync_ud_t;

static int sync_delta(void *ud, const char *t, size_t n) { return collect_delta(&((sync_ud_t *)ud)->col, t, n); }
static bool sync_stop(void *ud) { return never_stop(((sync_ud_t *)ud)->req); }

void sessions_h_post_message(httpd_req_t *req, void *user)
{
    app_t *a = user;
    json_t *body;
    chat_turn_t turn;
    const char *ids[STORE_SET_MAX];
    if (parse_turn(req, &body, &turn, ids))
        return;
    char ticket[AUTH_TICKET_MAX];
    if (!auth_busy_begin(a, req, AUTH_BUSY_CHAT, ticket)) {
        json_decref(body);
        return;
    }
    chat_t *c;
    int status;
    char err[512];
    if (chat_prepare(a, &turn, &c, &status, err, sizeof err)) {
        httpd_reply_error(req, status, "%s", err);
        json_decref(body);
        auth_busy_end(a, ticket);
        return;
    }
    json_decref(body);
    sync_ud_t ud = { .req = req };
    buf_init(&ud.col.text, 64u << 20);
    llm_callbacks_t cb = { .on_delta = sync_delta, .should_stop = sync_stop };
    llm_result_t res;
    llm_result_init(&res);
    int rc = chat_run(c, &cb, &ud, &res);
    auth_busy_end(a, ticket);   /* before the answer: the client may ask again at once */
    if (rc == LLM_OK) {
        int64_t t = chat_store_answer(c, ud.col.text.data, ud.col.text.len, false, &res);
        httpd_reply_json(req, 200,
                         json_pack("{s:s, s:s%, s:o, s:o, s:O?, s:s, s:O?, s:O?}", "session_id",
                                   chat_session_id(c), "message",
                                   ud.col.text.data ? ud.col.text.data : "", ud.col.text.len,
                                   "timestamp", time_json(t), "usage", chat_usage_json(&res),
                                   "timings", res.timings, "finish_reason", res.finish_reason,
                                   "rag_info", chat_rag_info(c), "sources", chat_sources(c)));
    } else {
        if (ud.col.text.len)
            chat_store_answer(c, ud.col.text.data, ud.col.text.len, true, &res);
        httpd_reply_error(req, llm_http_status(rc), "%s", res.error[0] ? res.error : llm_strerror(rc));
    }
    llm_result_cleanup(&res);
    buf_cleanup(&ud.col.text);
    chat_free(c);
}

/* ---- streaming ---- */

typedef struct {
    app_t *a;
    chat_t *chat;
    httpd_stream_t *stream;
    buf_t text;
    char ticket[AUTH_TICKET_MAX];   /* auth_busy_end's, when the turn ends */
} stream_job_t;

static int stream_delta(void *ud, const char *text, size_t len)
{
    stream_job_t *j = ud;
    if (buf_append(&j->text, text, len) != BUF_OK)
        return 1;
    json_t *ev = json_pack("{s:s%, s:b}", "chunk", text, len, "done", 0);
    int rc = httpd_stream_sse_json(j->stream, ev);
    return rc == HTTPD_OK || rc == HTTPD_EFULL ? 0 : 1;
}

static bool stream_stop(void *ud)
{
    stream_job_t *j = ud;
    return httpd_stream_closed(j->stream);
}

static void *stream_worker(void *arg)
{
    stream_job_t *j = arg;
    /* Where the answer comes from goes first, as the prototype sends it. */
    if (chat_rag_info(j->chat))
        httpd_stream_sse_json(j->stream,
                              json_pack("{s:O, s:O?, s:s, s:b}", "rag_info", chat_rag_info(j->chat),
                                        "sources", chat_sources(j->chat), "chunk", "", "done", 0));
    llm_callbacks_t cb = { .on_delta = stream_delta, .should_stop = stream_stop };
    llm_result_t res;
    llm_result_init(&res);
    int rc = chat_run(j->chat, &cb, j, &res);
    auth_busy_end(j->a, j->ticket);   /* before the last event: the client may ask again at once */
    const char *text = j->text.data ? j->text.data : "";
    if (rc == LLM_OK) {
        chat_store_answer(j->chat, text, j->text.len, false, &res);
        httpd_stream_sse_json(j->stream,
                              json_pack("{s:s, s:b, s:s%, s:o, s:O?, s:s, s:s}", "chunk", "", "done", 1,
                                        "full_response", text, j->text.len, "usage",
                                        chat_usage_json(&res), "timings", res.timings,
                                        "finish_reason", res.finish_reason, "session_id",
                                        chat_session_id(j->chat)));
    } else {
        if (j->text.len || rc == LLM_ECANCELLED)
            chat_store_answer(j->chat, text, j->text.len, true, &res);
        if (rc != LLM_ECANCELLED)
            httpd_stream_sse_json(j->stream,
                                  json_pack("{s:s, s:b, s:i}", "error",
                                            res.error[0] ? res.error : llm_strerror(rc), "done", 1,
                                            "status", llm_http_status(rc)));
        else
            log_info("session %s: client left; partial answer (%zu bytes) stored as incomplete",
                     chat_session_id(j->chat), j->text.len);
    }
    httpd_stream_close(j->stream);
    llm_result_cleanup(&res);
    buf_cleanup(&j->text);
    chat_free(j->chat);
    free(j);
    return NULL;
}

void sessions_h_stream(httpd_req_t *req, void *user)
{
    app_t *a = user;
    pthread_mutex_lock(&a->lock);
    int active = a->active_chats;
    pthread_mutex_unlock(&a->lock);
    if (active >= MAX_ACTIVE_CHATS) {
        httpd_reply_error(req, 503, "Too many chats at once; try again shortly");
        return;
    }
    json_t *body;
    chat_turn_t turn;
    const char *ids[STORE_SET_MAX];
    if (parse_turn(req, &body, &turn, ids))
        return;
    stream_job_t *j = calloc(1, sizeof *j);
    int status;
    char err[512];
    if (!j) {
        httpd_reply_error(req, 500, "out of memory");
        json_decref(body);
        return;
    }
    if (!auth_busy_begin(a, req, AUTH_BUSY_CHAT, j->ticket)) {
        json_decref(body);
        free(j);
        return;
    }
    if (chat_prepare(a, &turn, &j->chat, &status, err, sizeof err)) {
        httpd_reply_error(req, status, "%s", err);
        json_decref(body);
        auth_busy_end(a, j->ticket);
        free(j);
        return;
    }
    json_decref(body);
    j->a = a;
    buf_init(&j->text, 64u << 20);
    if (httpd_stream_open(req, "text/event-stream", &j->stream) != HTTPD_OK) {
        httpd_reply_error(req, 503, "the server is shutting down");
        chat_free(j->chat);
        auth_busy_end(a, j->ticket);
        free(j);
        return;
    }
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, stream_worker, j) != 0) {
        httpd_stream_sse_json(j->stream, json_pack("{s:s, s:b}", "error", "cannot start the chat", "done", 1));
        httpd_stream_close(j->stream);
        chat_free(j->chat);
        buf_cleanup(&j->text);
        auth_busy_end(a, j->ticket);
        free(j);
    }
    pthread_attr_destroy(&attr);
}
