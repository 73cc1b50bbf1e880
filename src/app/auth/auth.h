/* auth.h — who a request comes from, and what it may do.
 *
 * Two modes (auth.mode). In *local* mode there are no users: every request
 * may do everything (with server.api_key, when set, as the one key), and
 * kvchat only serves loopback addresses (config_mode_allowed). In
 * *accounts* mode every /api/v1 request outside the public ones (login,
 * first-admin setup, health, the web UI's files) must come from someone:
 *
 *  - a login: the `kvchat_session` cookie (HttpOnly, SameSite=Strict,
 *    Secure behind an HTTPS proxy) of a login made with POST
 *    /api/v1/auth/login, a server-side record that ends when idle
 *    (auth.session_idle), at logout, or when the user is disabled;
 *  - an API token ("Authorization: Bearer kvt_..."), with its scope:
 *    read < chat < admin (admin tokens for admins only), optional expiry;
 *  - server.api_key as a bearer: an admin, for scripts (it acts as nobody
 *    in particular: the documents and sessions it makes have no owner);
 *  - auth.trusted_header set by a proxy in auth.trusted_proxies: the user
 *    it names (made, as a user, the first time).
 *
 * What a request needs: admin for the model server's controls and logs,
 * metrics, users, audit and sharing; chat for any other request that
 * changes something; read for the rest. A login may do what its user's
 * role allows; a token no more than its scope. Failed logins back off and
 * lock per account and per client address (auth.login_lock_after,
 * auth.login_lock_minutes); chats and uploads are limited per user
 * (limits.*: a rate, and how many at once). Every login, token, user
 * change, share, document delete and model command is one line of the
 * audit log (auth_audit), which keeps the newest auth.audit_keep.
 *
 * Handlers get the caller with auth_get (NULL in local mode) and the
 * store's view of it with auth_scope (NULL in local mode: unscoped, as
 * before accounts existed).
 */
#ifndef KVCHAT_APP_AUTH_AUTH_H
#define KVCHAT_APP_AUTH_AUTH_H

#include <jansson.h>
#include <stdbool.h>

#include "app/app.h"
#include "common/httpd.h"

typedef enum {
    AUTH_VIA_LOGIN,     /* the session cookie */
    AUTH_VIA_TOKEN,     /* an API token */
    AUTH_VIA_API_KEY,   /* server.api_key */
    AUTH_VIA_HEADER,    /* the trusted proxy's header */
} auth_via_t;

typedef struct {
    char user_id[STORE_ID_MAX + 1];   /* "" for server.api_key */
    char name[128];
    bool admin;                       /* the user's role */
    store_token_scope_t scope;        /* what this request may do */
    auth_via_t via;
    char login_hash[65];              /* the login's id (AUTH_VIA_LOGIN), else "" */
    store_scope_t store_scope;        /* { user_id or NULL, admin } */
} auth_t;

/* Set up (random secrets, rate-limit tables); in accounts mode with no
 * user yet, print the one-time link that creates the first admin. Returns
 * 0 or -1 (logged). */
int auth_init(app_t *a);
void auth_free(app_t *a);

/* Whether auth.mode is accounts. */
bool auth_accounts(const app_t *a);

/* The httpd authorize callback (httpd_config_t.authorize). */
int auth_authorize(httpd_req_t *req, void *user, char *msg, size_t msgcap);

/* The caller of req; NULL in local mode. */
const auth_t *auth_get(httpd_req_t *req);

/* The store's scope for req's caller; NULL in local mode (everything, as
 * without accounts). */
const store_scope_t *auth_scope(httpd_req_t *req);

/* One line of the audit log: the caller of req (may be NULL: the system)
 * did `action` to `target` (may be NULL), with detail (may be NULL; taken
 * over). Failures are logged, never returned. */
void auth_audit(app_t *a, httpd_req_t *req, const char *action, const char *target,
                json_t *detail);

/* Per-user chats and uploads at once (limits.chats_at_once,
 * limits.uploads_at_once). auth_busy_begin counts one of req's caller's
 * as running and writes what auth_busy_end needs into ticket
 * (AUTH_TICKET_MAX bytes; "" when nothing is counted: local mode, no
 * limit); it returns false, counting nothing and answering req with 429
 * and a sentence, when the caller already has that many running.
 * auth_busy_end (any thread, once it is over) takes it back and empties
 * ticket, so a second call does nothing: call it before the answer's last
 * bytes go out, since a client that has its answer may start the next one
 * at once. */
typedef enum { AUTH_BUSY_CHAT, AUTH_BUSY_UPLOAD } auth_busy_t;
#define AUTH_TICKET_MAX (STORE_ID_MAX + 3)
bool auth_busy_begin(app_t *a, httpd_req_t *req, auth_busy_t kind, char *ticket);
void auth_busy_end(app_t *a, char *ticket);

/* The cache salt for a document's entries in the engine: "" for a shared
 * document or in local mode (one entry for everyone), else a secret per
 * owner (another user's identical text never matches it). */
void auth_cache_salt(app_t *a, const store_doc_t *d, char *out, size_t cap);

/* Routes: POST /auth/login, /auth/logout, /auth/password, /auth/setup;
 * GET /auth/me; tokens; users; audit. */
void auth_h_login(httpd_req_t *req, void *user);
void auth_h_logout(httpd_req_t *req, void *user);
void auth_h_me(httpd_req_t *req, void *user);
void auth_h_password(httpd_req_t *req, void *user);
void auth_h_setup(httpd_req_t *req, void *user);
void auth_h_tokens_create(httpd_req_t *req, void *user);
void auth_h_tokens_list(httpd_req_t *req, void *user);
void auth_h_tokens_delete(httpd_req_t *req, void *user);
void auth_h_users_list(httpd_req_t *req, void *user);
void auth_h_users_create(httpd_req_t *req, void *user);
void auth_h_users_patch(httpd_req_t *req, void *user);
void auth_h_users_delete(httpd_req_t *req, void *user);
void auth_h_audit(httpd_req_t *req, void *user);

/* Create user `name` with password pw (checked) and role; the first admin
 * also gets what local mode left (store_adopt_unowned). *out (caller-owned)
 * receives the user. Returns STORE_OK, or a STORE_E* code with a sentence
 * for people in why. */
int auth_user_create(app_t *a, const char *name, const char *pw, store_user_role_t role,
                     store_user_t *out, char *why, size_t whycap);

/* `kvchat user add|passwd|list|delete ...` (argv[0] is "user"). Returns
 * the process's exit status. */
int auth_cli(int argc, char **argv);

#endif
