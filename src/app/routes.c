/* routes.c — see routes.h; also /health, /metrics and the OpenAPI route.
 *
 * The seed's API lives under /api/v1 with its request and response shapes;
 * errors come as FastAPI's {"detail": "..."}.
 */
#include "app/routes.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/auth/auth.h"
#include "app/docs/documents.h"
#include "app/docs/extractq.h"
#include "app/model/models.h"
#include "app/chat/sessions.h"
#include "app/web.h"
#include "common/buf.h"

static void h_health(httpd_req_t *req, void *user)
{
    app_t *a = user;
    supervisor_status_t st = { .status = "stopped" };
    supervisor_state_t state;
    if (a->sv)
        supervisor_status(a->sv, &st);
    else if (app_local_running(a, &state) || state != SUPERVISOR_STOPPED)
        st.status = supervisor_state_name(state);   /* engine.endpoints */
    app_provider_t *p = app_provider_acquire(a);
    json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:f}", "status", "ok", "engine", st.status,
                             "provider", llm_kind_name(llm_provider_kind(p->llm)), "serving_name",
                             p->serving_name, "uptime_s", (double)store_now_ms() / 1000 - a->started_at);
    app_provider_release(p);
    httpd_reply_json(req, 200, body);
}

static void h_metrics(httpd_req_t *req, void *user)
{
    app_t *a = user;
    static const double bounds[12] = { 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };
    app_stats_t s;
    pthread_mutex_lock(&a->lock);
    s = a->stats;
    int active = a->active_chats;
    pthread_mutex_unlock(&a->lock);
    httpd_stats_t h;
    httpd_stats((const httpd_t *)a->http, &h);
    buf_t b;
    buf_init(&b, 1 << 20);
#define C(name, help, v) \
    buf_printf(&b, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %" PRIu64 "\n", (uint64_t)(v))
    C("kvchat_chats_total", "Chat turns sent to a provider", s.chats);
    C("kvchat_chat_errors_total", "Chat turns that failed", s.chat_errors);
    C("kvchat_chat_cancelled_total", "Chat turns cut short by their client", s.chat_cancelled);
    C("kvchat_uploads_total", "Documents uploaded", s.uploads);
    C("kvchat_uploads_rejected_total", "Uploads refused (type, extraction)", s.upload_rejected);
    C("kvchat_document_caches_total", "Documents cached in the engine", s.caches);
    C("kvchat_document_cache_errors_total", "Document caching that failed", s.cache_errors);
    C("kvchat_prompt_tokens_total", "Prompt tokens of chat turns", s.prompt_tokens);
    C("kvchat_cached_prompt_tokens_total", "Prompt tokens served from the KV cache", s.cached_prompt_tokens);
#undef C
    buf_printf(&b, "# HELP kvchat_chats_active Chat turns running\n# TYPE kvchat_chats_active gauge\n"
                   "kvchat_chats_active %d\n", active);
    extractq_counts_t q;
    extractq_counts(a->extractq, &q);
    buf_printf(&b, "# HELP kvchat_extractions_running Extractions running (at most extract.concurrency)\n"
                   "# TYPE kvchat_extractions_running gauge\nkvchat_extractions_running %u\n"
                   "# HELP kvchat_extractions_queued Uploads waiting for an extraction slot\n"
                   "# TYPE kvchat_extractions_queued gauge\nkvchat_extractions_queued %u\n",
               q.running, q.queued);
    buf_printf(&b, "# HELP kvchat_ttft_seconds Time to the first token of an answer\n"
                   "# TYPE kvchat_ttft_seconds histogram\n");
    for (int i = 0; i < 12; i++)
        buf_printf(&b, "kvchat_ttft_seconds_bucket{le=\"%g\"} %" PRIu64 "\n", bounds[i], s.ttft_buckets[i]);
    buf_printf(&b, "kvchat_ttft_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\nkvchat_ttft_seconds_sum %.6f\n"
                   "kvchat_ttft_seconds_count %" PRIu64 "\n", s.ttft_count, s.ttft_sum, s.ttft_count);
    buf_printf(&b, "# HELP kvchat_http_requests_total HTTP requests by status class\n"
                   "# TYPE kvchat_http_requests_total counter\n");
    for (int c = 2; c <= 5; c++)
        buf_printf(&b, "kvchat_http_requests_total{class=\"%dxx\"} %" PRIu64 "\n", c, h.status[c]);
    buf_printf(&b, "# HELP kvchat_http_connections_open HTTP connections open\n"
                   "# TYPE kvchat_http_connections_open gauge\nkvchat_http_connections_open %" PRIu64 "\n"
                   "# HELP kvchat_http_connections_closed_total Connections closed by the server: "
                   "request too slow (deadline) or to admit a new one (shed)\n"
                   "# TYPE kvchat_http_connections_closed_total counter\n"
                   "kvchat_http_connections_closed_total{reason=\"deadline\"} %" PRIu64 "\n"
                   "kvchat_http_connections_closed_total{reason=\"shed\"} %" PRIu64 "\n",
               h.connections_open, h.connections_cut, h.connections_shed);
    httpd_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "", b.len);
    buf_cleanup(&b);
}

static void h_openapi(httpd_req_t *req, void *user)
{
    (void)user;
    size_t n;
    const route_doc_t *t = routes_table(&n);
    httpd_reply_json(req, 200, openapi_document(t, n));
}

#define API "/api/v1"
#define PUB HTTPD_ROUTE_PUBLIC
#define QUIET HTTPD_ROUTE_QUIET

static const route_doc_t table[] = {
    /* Documents */
    { { "POST", API "/documents/upload", documents_h_upload, HTTPD_ROUTE_UPLOAD, &documents_upload_callbacks },
      "Documents", "Upload a document (text, PDF, office files, web pages, e-books, spreadsheets, images) and extract its text",
      "multipart/form-data with the file in field 'file'" },
    { { "POST", API "/documents/upload_and_cache", documents_h_upload_and_cache, HTTPD_ROUTE_UPLOAD,
        &documents_upload_callbacks },
      "Documents", "Upload a document and cache its prefix in the local model server",
      "multipart/form-data with the file in field 'file'" },
    { { "POST", API "/documents/upload_collection", documents_h_upload_collection,
        HTTPD_ROUTE_UPLOAD, &documents_collection_callbacks },
      "Documents", "Upload several documents as a named collection to chat with together",
      "multipart/form-data: the files in fields 'files', the collection's name in 'name'" },
    { { "GET", API "/documents/collections/{collection_id}", documents_h_collection, 0, NULL },
      "Documents", "A collection and its documents", NULL },
    { { "GET", API "/documents/list", documents_h_list, 0, NULL }, "Documents", "List documents", NULL },
    { { "GET", API "/documents/limits", documents_h_limits, QUIET, NULL }, "Documents",
      "The upload limit and the accepted file types", NULL },
    { { "GET", API "/documents/{doc_id}", documents_h_get, 0, NULL }, "Documents",
      "Get a document (?include_preview=true adds its first 10 lines)", NULL },
    { { "DELETE", API "/documents/{doc_id}", documents_h_delete, 0, NULL }, "Documents",
      "Delete a document, its file, text and cache entry", NULL },
    { { "POST", API "/documents/cache/{doc_id}", documents_h_cache, 0, NULL }, "Documents",
      "Prefill and cache a document's prefix (Accept: text/event-stream streams progress)", NULL },
    { { "GET", API "/documents/{doc_id}/cache-status", documents_h_cache_status, QUIET, NULL }, "Documents",
      "A document's cache state (per part for a long document)", NULL },
    { { "GET", API "/documents/{doc_id}/chunks", documents_h_chunks, 0, NULL }, "Documents",
      "A page of the document's chunks (?offset=0&limit=100): pages, heading, sizes, parts", NULL },
    { { "GET", API "/documents/{doc_id}/chunks/{chunk_id}", documents_h_chunk, 0, NULL },
      "Documents", "One chunk with its text", NULL },
    { { "GET", API "/documents/{doc_id}/search", documents_h_search, 0, NULL }, "Documents",
      "Search a document (?q=words&limit=10): the best chunks, and the part a question with "
      "these words goes to", NULL },
    { { "POST", API "/documents/{doc_id}/share", documents_h_share, 0, NULL }, "Documents",
      "Share a document with every user, or not (admins, accounts mode)", "{everyone}" },
    { { "GET", API "/documents/{doc_id}/groups", documents_h_groups, 0, NULL }, "Documents",
      "The document's parts for the model in use, and which are cached", NULL },
    /* Sessions */
    { { "POST", API "/session", sessions_h_create, 0, NULL }, "Sessions", "Create a session",
      "{document_id?, title?, session_id?}" },
    { { "GET", API "/sessions", sessions_h_list, 0, NULL }, "Sessions", "List sessions, most recent first", NULL },
    { { "GET", API "/session/{session_id}", sessions_h_get, 0, NULL }, "Sessions", "Get a session", NULL },
    { { "DELETE", API "/session/{session_id}", sessions_h_delete, 0, NULL }, "Sessions", "Delete a session", NULL },
    { { "GET", API "/session/{session_id}/messages", sessions_h_messages, 0, NULL }, "Sessions",
      "A session's messages", NULL },
    { { "POST", API "/session/{session_id}/messages", sessions_h_post_message, 0, NULL }, "Sessions",
      "Send a message and get the whole answer", "{message, document_id?}" },
    { { "POST", API "/session/{session_id}/messages/stream", sessions_h_stream, 0, NULL }, "Sessions",
      "Send a message and stream the answer (SSE)", "{message, document_id?}" },
    { { "POST", API "/session/{session_id}/draft", sessions_h_draft, QUIET, NULL }, "Sessions",
      "The message being typed: prefilled ahead so that its answer starts sooner (202; nothing "
      "is stored)", "{message, document_id?}" },
    /* Model */
    { { "POST", API "/model/up/reset", models_h_up_reset, 0, NULL }, "Model",
      "Start the model server with an empty KV cache", "{model_name?}" },
    { { "POST", API "/model/up/without_reset", models_h_up_resume, 0, NULL }, "Model",
      "Start the model server keeping its KV cache", "{model_name?}" },
    { { "POST", API "/model/down", models_h_down, 0, NULL }, "Model", "Stop the model server", NULL },
    { { "GET", API "/model/status", models_h_status, QUIET, NULL }, "Model", "The model server's state", NULL },
    { { "GET", API "/model/list", models_h_list, 0, NULL }, "Model",
      "Local GGUF models and configured remote models", NULL },
    { { "POST", API "/model/switch", models_h_switch, 0, NULL }, "Model",
      "Serve another model (local or remote)", "{serving_name}" },
    /* Logs */
    { { "GET", API "/logs/current", logs_h_current, QUIET, NULL }, "Logs", "The current engine log file", NULL },
    { { "GET", API "/logs/recent", logs_h_recent, QUIET, NULL }, "Logs",
      "Recent engine log lines (?lines=1..1000&pattern=REGEX)", NULL },
    { { "GET", API "/logs/server", logs_h_server, QUIET, NULL }, "Logs",
      "Engine log lines (?lines=1..1000&pattern=REGEX)", NULL },
    { { "GET", API "/logs/sessions", logs_h_sessions, 0, NULL }, "Logs", "Engine log files, newest first", NULL },
    /* Accounts (auth.mode = accounts) */
    { { "POST", API "/auth/login", auth_h_login, PUB, NULL }, "Accounts",
      "Sign in: a login cookie (HttpOnly, SameSite=Strict)", "{username, password}" },
    { { "POST", API "/auth/setup", auth_h_setup, PUB, NULL }, "Accounts",
      "Create the first admin with the one-time link printed at start-up",
      "{token, username, password}" },
    { { "POST", API "/auth/logout", auth_h_logout, 0, NULL }, "Accounts",
      "End this login, or every login of the user", "{everywhere?}" },
    { { "GET", API "/auth/me", auth_h_me, QUIET, NULL }, "Accounts",
      "Who is asking (mode local: nobody in particular)", NULL },
    { { "POST", API "/auth/password", auth_h_password, 0, NULL }, "Accounts",
      "Change one's password (ends one's other logins)", "{current_password, new_password}" },
    { { "POST", API "/auth/tokens", auth_h_tokens_create, 0, NULL }, "Accounts",
      "Make an API token (its secret is shown once)", "{name, scope: read|chat|admin, expires_in?}" },
    { { "GET", API "/auth/tokens", auth_h_tokens_list, 0, NULL }, "Accounts",
      "One's API tokens", NULL },
    { { "DELETE", API "/auth/tokens/{token_id}", auth_h_tokens_delete, 0, NULL }, "Accounts",
      "Revoke one of one's API tokens", NULL },
    { { "GET", API "/users", auth_h_users_list, 0, NULL }, "Accounts", "Users (admins)", NULL },
    { { "POST", API "/users", auth_h_users_create, 0, NULL }, "Accounts",
      "Add a user (admins)", "{username, password, role}" },
    { { "PATCH", API "/users/{user_id}", auth_h_users_patch, 0, NULL }, "Accounts",
      "Change a user's role, password, or disable them (admins)", "{role?, disabled?, password?}" },
    { { "DELETE", API "/users/{user_id}", auth_h_users_delete, 0, NULL }, "Accounts",
      "Delete a user with their documents and chats (admins)", NULL },
    { { "GET", API "/audit", auth_h_audit, 0, NULL }, "Accounts",
      "The audit log, newest first (?actor=&action=&offset=&limit=; admins)", NULL },
    /* System */
    { { "GET", "/health", h_health, PUB | QUIET, NULL }, "System", "Liveness and engine state", NULL },
    { { "GET", API "/health", h_health, PUB | QUIET, NULL }, "System", "Liveness and engine state", NULL },
    { { "GET", "/metrics", h_metrics, QUIET, NULL }, "System", "Prometheus metrics", NULL },
    { { "GET", API "/openapi.json", h_openapi, PUB, NULL }, "System", "This API's OpenAPI description", NULL },
    /* Web UI */
    { { "GET", "/", web_h_index, PUB, NULL }, "Web", "The web UI", NULL },
    { { "GET", "/assets/{path*}", web_h_asset, PUB | QUIET, NULL }, "Web", "The web UI's files", NULL },
};

const route_doc_t *routes_table(size_t *n)
{
    *n = sizeof table / sizeof table[0];
    return table;
}

int routes_open(app_t *a)
{
    size_t n;
    const route_doc_t *t = routes_table(&n);
    httpd_route_t *r = calloc(n, sizeof *r);
    if (!r)
        return HTTPD_ENOMEM;
    for (size_t i = 0; i < n; i++)
        r[i] = t[i].route;
    httpd_config_t cfg = httpd_config_default();
    cfg.host = a->cfg.host;
    cfg.port = (unsigned)a->cfg.port;
    cfg.max_body = 20u << 20;   /* JSON bodies (messages) */
    /* the file limit is counted by the upload callbacks (a clear 413);
     * this bound only covers the multipart framing around it */
    cfg.max_upload = ((size_t)a->cfg.max_upload_mb << 20) + (1u << 20);
    cfg.authorize = auth_authorize;   /* logins, tokens, server.api_key (auth.c) */
    cfg.error_style = HTTPD_ERRORS_DETAIL;
    cfg.cors_origins = a->cfg.cors_origins;
    cfg.timeout_s = (unsigned)a->cfg.http_timeout_s;
    cfg.max_connections = (unsigned)a->cfg.max_connections;
    cfg.max_per_ip = (unsigned)a->cfg.max_conn_per_ip;
    cfg.allowed_hosts = a->cfg.allowed_hosts;
    int rc = httpd_open(&cfg, r, n, a, (httpd_t **)&a->http);
    free(r);
    return rc;
}

void routes_close(app_t *a)
{
    httpd_close((httpd_t *)a->http);
    a->http = NULL;
}
