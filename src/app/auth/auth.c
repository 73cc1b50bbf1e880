/* auth.c — see auth.h. */
#include "app/auth/auth.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "app/auth/authparse.h"
#include "app/auth/ratelimit.h"
#include "app/auth/secret.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "common/utf8.h"

#define COOKIE "kvchat_session"
#define TOUCH_AFTER_S 60            /* a login's or token's last use, to the minute */
#define RATE_TABLE 16384            /* keys the rate limits remember */
#define LOGIN_FREE_FAILURES 3       /* failed logins before any backoff */
#define LOGIN_BACKOFF_MAX 30.0      /* seconds */
#define LOGIN_IP_FACTOR 5           /* a client address may fail this many times more */
#define LOGIN_WINDOW_S 3600.0       /* failures older than this are forgotten */
#define CHAT_BURST 5.0              /* chats a user may send at once before the rate */
#define UPLOAD_BURST 10.0
#define SALT_SECRET_FILE "cache-salt.key"
#define BEARER_MAX 1024             /* longer credentials are none of ours */

#define RUNNING_MAX 2048            /* (user, chats or uploads) busy, tracked at once */

typedef struct {
    char user[AUTH_TICKET_MAX];   /* "c:" or "u:" and the user's id; "" = free */
    int n;
} running_t;

struct auth_state {
    ratelimit_t *rl;
    running_t running[RUNNING_MAX];   /* under lock */
    pthread_mutex_t lock;
    char setup_hash[SECRET_HEX_MAX];   /* the first-admin link's, "" when none */
    char salt_key[SECRET_HEX_MAX];     /* per-owner salts are derived from it */
};

bool auth_accounts(const app_t *a)
{
    return strcmp(a->cfg.auth_mode, "accounts") == 0;
}

/* ---- salts ---- */

/* The secret per-owner cache salts are made from: kept in the data
 * directory (mode 0600) so that entries on disk stay reachable across
 * restarts; made at the first start. */
static int load_salt_key(app_t *a)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/" SALT_SECRET_FILE, a->cfg.data_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        char buf[SECRET_HEX_MAX] = "";
        bool ok = fgets(buf, sizeof buf, f) && strlen(buf) == SECRET_HEX_MAX - 1;
        fclose(f);
        if (ok) {
            memcpy(a->auth->salt_key, buf, sizeof buf);
            return 0;
        }
        log_warn("auth: %s is malformed: a new one is made (cached entries of private "
                 "documents are cached again)", path);
    }
    char secret[SECRET_TOKEN_MAX];
    secret_new("", secret);
    secret_hash_hex(secret, strlen(secret), a->auth->salt_key);
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, a->auth->salt_key, SECRET_HEX_MAX - 1) != SECRET_HEX_MAX - 1 ||
        fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        log_error("auth: cannot write %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return 0;
}

void auth_cache_salt(app_t *a, const store_doc_t *d, char *out, size_t cap)
{
    if (cap)
        out[0] = '\0';
    if (!auth_accounts(a) || !a->auth || !d || d->shared || !d->owner_id || !cap)
        return;
    char in[STORE_ID_MAX + SECRET_HEX_MAX + 8];
    int n = snprintf(in, sizeof in, "%s:%s", a->auth->salt_key, d->owner_id);
    char hex[SECRET_HEX_MAX];
    secret_hash_hex(in, (size_t)n, hex);
    snprintf(out, cap, "%s", hex);
}

/* ---- set-up ---- */

int auth_init(app_t *a)
{
    if (secret_init() != 0) {
        log_error("auth: libsodium cannot start (no random source?)");
        return -1;
    }
    a->auth = calloc(1, sizeof *a->auth);
    if (!a->auth || !(a->auth->rl = ratelimit_new(RATE_TABLE))) {
        log_error("auth: out of memory");
        return -1;
    }
    pthread_mutex_init(&a->auth->lock, NULL);
    if (!auth_accounts(a))
        return 0;
    char why[200];
    if (!authparse_addr_list_check(a->cfg.auth_trusted_proxies, why, sizeof why)) {
        log_error("auth.trusted_proxies: %s", why);
        return -1;
    }
    if (a->cfg.auth_trusted_header[0] && !a->cfg.auth_trusted_proxies[0]) {
        log_error("auth.trusted_header is set but auth.trusted_proxies is empty: name the "
                  "addresses of the proxies allowed to set it");
        return -1;
    }
    if (load_salt_key(a) != 0)
        return -1;
    int64_t users = 0;
    int rc = store_user_count(a->store, &users, NULL);
    if (rc != STORE_OK) {
        log_error("auth: cannot count the users: %s", store_strerror(rc));
        return -1;
    }
    if (users == 0) {
        char secret[SECRET_TOKEN_MAX];
        secret_new("kvl_", secret);
        secret_hash_hex(secret, strlen(secret), a->auth->setup_hash);
        /* on the console only: it is a credential, kept out of log files */
        fprintf(stderr,
                "\nkvchat: no user yet. Create the first admin (this link works once):\n"
                "    http://%s:%d/#setup=%s\n"
                "  or on the command line: kvchat user add NAME --role admin\n\n",
                strcmp(a->cfg.host, "0.0.0.0") == 0 || strcmp(a->cfg.host, "::") == 0
                    ? "127.0.0.1"
                    : a->cfg.host,
                a->cfg.port, secret);
        secret_wipe(secret, sizeof secret);
    }
    return 0;
}

void auth_free(app_t *a)
{
    if (!a->auth)
        return;
    ratelimit_free(a->auth->rl);
    pthread_mutex_destroy(&a->auth->lock);
    free(a->auth);
    a->auth = NULL;
}

/* The client's address: the socket's peer, or behind a trusted proxy the
 * address it forwards (X-Forwarded-For); "" when unknown. */
static const char *client_addr(const app_t *a, httpd_req_t *req, char *buf)
{
    authparse_client_addr(httpd_req_peer(req), httpd_req_header(req, "X-Forwarded-For"),
                          a->cfg.auth_trusted_proxies, buf, AUTHPARSE_ADDR_MAX);
    return buf;
}

/* ---- audit ---- */

void auth_audit(app_t *a, httpd_req_t *req, const char *action, const char *target,
                json_t *detail)
{
    const auth_t *who = req ? auth_get(req) : NULL;
    char *dt = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
    json_decref(detail);
    char tgt[256] = "";
    if (target)
        snprintf(tgt, sizeof tgt, "%s", target);
    store_audit_t e;
    store_audit_init(&e);
    e.actor_id = who && who->user_id[0] ? (char *)who->user_id : NULL;
    e.actor_name = who ? (char *)who->name : (char *)(auth_accounts(a) ? "system" : "local");
    e.action = (char *)action;
    e.target = target ? tgt : NULL;
    char from[AUTHPARSE_ADDR_MAX];
    e.client_addr = req && client_addr(a, req, from)[0] ? from : NULL;
    e.detail = dt;
    int rc = store_audit_append(a->store, &e, a->cfg.audit_keep, NULL);
    if (rc != STORE_OK)
        log_warn("audit: cannot record %s: %s", action, store_strerror(rc));
    log_info("audit: %s %s%s%s from %s", e.actor_name ? e.actor_name : "-", action,
             target ? " " : "", target ? tgt : "", e.client_addr ? e.client_addr : "-");
    free(dt);
}

/* An audit line for a request whose caller is not known (yet): a login. */
static void audit_as(app_t *a, httpd_req_t *req, const char *actor_id, const char *actor_name,
                     const char *action, json_t *detail)
{
    char name[128];
    snprintf(name, sizeof name, "%s", actor_name ? actor_name : "");
    /* a name a client typed: cut, and only when it is valid UTF-8 */
    char *dt = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
    json_decref(detail);
    store_audit_t e;
    store_audit_init(&e);
    e.actor_id = (char *)actor_id;
    e.actor_name = utf8_valid(name, strlen(name)) ? name : (char *)"(not UTF-8)";
    e.action = (char *)action;
    char from[AUTHPARSE_ADDR_MAX];
    e.client_addr = client_addr(a, req, from)[0] ? from : NULL;
    e.detail = dt;
    int rc = store_audit_append(a->store, &e, a->cfg.audit_keep, NULL);
    if (rc != STORE_OK)
        log_warn("audit: cannot record %s: %s", action, store_strerror(rc));
    log_info("audit: %s %s from %s", e.actor_name, action, e.client_addr ? e.client_addr : "-");
    free(dt);
}

/* ---- who is asking ---- */

const auth_t *auth_get(httpd_req_t *req)
{
    return httpd_req_auth(req);
}

const store_scope_t *auth_scope(httpd_req_t *req)
{
    const auth_t *w = auth_get(req);
    /* server.api_key is nobody in particular: unscoped, as in local mode */
    return w && w->user_id[0] ? &w->store_scope : NULL;
}

/* The rate limits' clock: monotonic, so a clock set back never lengthens
 * a wait. */
static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void free_auth(void *p)
{
    free(p);
}

/* The bearer credentials of req, NUL-terminated into out; NULL when there
 * are none (or they are too long to be any of ours). */
static const char *bearer(httpd_req_t *req, char *out, size_t cap)
{
    size_t n;
    const char *v = authparse_bearer(httpd_req_header(req, "Authorization"), &n);
    if (!v || n >= cap)
        return NULL;
    memcpy(out, v, n);
    out[n] = '\0';
    return out;
}

static bool key_matches(const char *given, const char *key)
{
    size_t gl = strlen(given), kl = strlen(key);
    char a[SECRET_HEX_MAX], b[SECRET_HEX_MAX];
    secret_hash_hex(given, gl, a);
    secret_hash_hex(key, kl, b);
    return secret_equal(a, b, SECRET_HEX_MAX - 1);
}

static void fill_user(auth_t *w, const store_user_t *u)
{
    snprintf(w->user_id, sizeof w->user_id, "%s", u->id);
    snprintf(w->name, sizeof w->name, "%s", u->name);
    w->admin = u->role == STORE_USER_ROLE_ADMIN;
    w->scope = w->admin ? STORE_TOKEN_ADMIN : STORE_TOKEN_CHAT;
}

/* The user named by the trusted proxy's header, made when new. */
static int header_user(app_t *a, httpd_req_t *req, const char *name, store_user_t *u)
{
    int rc = store_user_get_by_name(a->store, name, u);
    if (rc != STORE_ENOTFOUND)
        return rc;
    if (!store_user_name_valid(name))
        return STORE_EINVAL;
    /* a password nobody knows: this user signs in through the proxy */
    char secret[SECRET_TOKEN_MAX], hash[SECRET_PWHASH_MAX];
    secret_new("", secret);
    if (secret_password_hash(secret, strlen(secret), hash) != 0)
        return STORE_ENOMEM;
    rc = store_user_create(a->store, name, hash, STORE_USER_ROLE_USER, u);
    if (rc == STORE_OK)
        audit_as(a, req, u->id, u->name, "user.create",
                 json_pack("{s:s}", "via", "trusted header"));
    else if (rc == STORE_ECONFLICT)   /* made meanwhile by another request */
        rc = store_user_get_by_name(a->store, name, u);
    return rc;
}

/* What the route of req needs. */
static store_token_scope_t route_needs(httpd_req_t *req)
{
    const char *m = httpd_req_method(req), *r = httpd_req_route(req);
    static const char *const admin_prefixes[] = {
        "/api/v1/logs/", "/api/v1/users", "/api/v1/audit", "/metrics",
    };
    for (size_t i = 0; i < sizeof admin_prefixes / sizeof *admin_prefixes; i++)
        if (strncmp(r, admin_prefixes[i], strlen(admin_prefixes[i])) == 0)
            return STORE_TOKEN_ADMIN;
    bool reads = !strcmp(m, "GET") || !strcmp(m, "HEAD");
    if (!reads && strncmp(r, "/api/v1/model/", 14) == 0)
        return STORE_TOKEN_ADMIN;
    size_t rl = strlen(r);
    if (rl > 6 && !strcmp(r + rl - 6, "/share"))
        return STORE_TOKEN_ADMIN;
    return reads ? STORE_TOKEN_READ : STORE_TOKEN_CHAT;
}

/* 429 with Retry-After, for a per-user rate. */
static int too_fast(httpd_req_t *req, double wait, const char *what, char *msg, size_t cap)
{
    char ra[32];
    snprintf(ra, sizeof ra, "%d", (int)(wait + 0.999));
    httpd_reply_header(req, "Retry-After", ra);
    snprintf(msg, cap, "Too many %s: try again in %s s", what, ra);
    return 429;
}

int auth_authorize(httpd_req_t *req, void *user, char *msg, size_t cap)
{
    app_t *a = user;
    char bkbuf[BEARER_MAX];
    const char *bk = bearer(req, bkbuf, sizeof bkbuf);
    if (!auth_accounts(a)) {
        if (a->cfg.api_key[0] && (!bk || !key_matches(bk, a->cfg.api_key))) {
            httpd_reply_header(req, "WWW-Authenticate", "Bearer");
            snprintf(msg, cap, "Invalid or missing API key");
            return 401;
        }
        return 0;
    }
    auth_t *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(msg, cap, "out of memory");
        return 503;
    }
    store_user_t u;
    store_user_init(&u);
    int64_t now = store_now_ms();
    bool found = false;
    char sess[SECRET_TOKEN_MAX + 8];
    const char *peer = httpd_req_peer(req);
    if (bk && a->cfg.api_key[0] && key_matches(bk, a->cfg.api_key)) {
        snprintf(w->name, sizeof w->name, "api-key");
        w->admin = true;
        w->scope = STORE_TOKEN_ADMIN;
        w->via = AUTH_VIA_API_KEY;
        found = true;
    } else if (bk) {
        char hash[SECRET_HEX_MAX];
        secret_hash_hex(bk, strlen(bk), hash);
        store_token_t t;
        store_token_init(&t);
        if (store_token_lookup(a->store, hash, now, TOUCH_AFTER_S, &t, &u) == STORE_OK) {
            fill_user(w, &u);
            w->scope = t.scope < w->scope ? t.scope : w->scope;
            w->via = AUTH_VIA_TOKEN;
            found = true;
        }
        store_token_cleanup(&t);
        if (!found) {
            free(w);
            httpd_reply_header(req, "WWW-Authenticate", "Bearer");
            snprintf(msg, cap, "Invalid, expired or revoked token");
            return 401;
        }
    } else if (authparse_cookie(httpd_req_header(req, "Cookie"), COOKIE, sess, sizeof sess)) {
        char hash[SECRET_HEX_MAX];
        secret_hash_hex(sess, strlen(sess), hash);
        if (store_login_lookup(a->store, hash, now, TOUCH_AFTER_S, NULL, &u) == STORE_OK) {
            fill_user(w, &u);
            w->via = AUTH_VIA_LOGIN;
            memcpy(w->login_hash, hash, sizeof hash);
            found = true;
        }
    }
    if (!found && a->cfg.auth_trusted_header[0] && authparse_addr_listed(a->cfg.auth_trusted_proxies, peer)) {
        const char *name = httpd_req_header(req, a->cfg.auth_trusted_header);
        if (name && *name) {
            int rc = header_user(a, req, name, &u);
            if (rc == STORE_OK && !u.disabled) {
                fill_user(w, &u);
                w->via = AUTH_VIA_HEADER;
                found = true;
            }
        }
    }
    store_user_cleanup(&u);
    if (!found) {
        free(w);
        snprintf(msg, cap, "Sign in first (POST /api/v1/auth/login), or send an API token");
        return 401;
    }
    w->store_scope.user_id = w->user_id[0] ? w->user_id : NULL;
    w->store_scope.admin = w->admin;
    store_token_scope_t need = route_needs(req);
    if (need > w->scope || (need == STORE_TOKEN_ADMIN && !w->admin)) {
        snprintf(msg, cap, "%s", need == STORE_TOKEN_ADMIN && !w->admin
                                     ? "Only an admin may do that"
                                     : "This token's scope does not allow that");
        free(w);
        return 403;
    }
    /* per-user rates: sending chat messages, uploading */
    const char *route = httpd_req_route(req), *m = httpd_req_method(req);
    double wait = 0;
    char key[RATELIMIT_KEY_MAX + 1];
    if (!strcmp(m, "POST") && strstr(route, "/messages")) {
        snprintf(key, sizeof key, "chat:%.80s", w->user_id);
        if (!ratelimit_take(a->auth->rl, key, a->cfg.chats_per_minute, CHAT_BURST,
                            mono_ms(), &wait)) {
            free(w);
            return too_fast(req, wait, "messages", msg, cap);
        }
    } else if (!strcmp(m, "POST") && strstr(route, "/documents/upload")) {
        snprintf(key, sizeof key, "upload:%.80s", w->user_id);
        if (!ratelimit_take(a->auth->rl, key, a->cfg.uploads_per_minute, UPLOAD_BURST,
                            mono_ms(), &wait)) {
            free(w);
            return too_fast(req, wait, "uploads", msg, cap);
        }
    }
    httpd_req_set_auth(req, w, free_auth);
    return 0;
}

/* ---- chats and uploads at once ---- */

/* The running table's key of w's chats or uploads. */
static void busy_key(const auth_t *w, auth_busy_t kind, char *key)
{
    snprintf(key, AUTH_TICKET_MAX, "%c:%s", kind == AUTH_BUSY_UPLOAD ? 'u' : 'c',
             w->user_id[0] ? w->user_id : "(api-key)");
}

/* How many chats or uploads of w's are counted as running. */
static int busy_count(app_t *a, const auth_t *w, auth_busy_t kind)
{
    char key[AUTH_TICKET_MAX];
    busy_key(w, kind, key);
    int n = 0;
    pthread_mutex_lock(&a->auth->lock);
    for (size_t i = 0; i < RUNNING_MAX; i++)
        if (a->auth->running[i].user[0] && strcmp(a->auth->running[i].user, key) == 0) {
            n = a->auth->running[i].n;
            break;
        }
    pthread_mutex_unlock(&a->auth->lock);
    return n;
}

bool auth_busy_begin(app_t *a, httpd_req_t *req, auth_busy_t kind, char *ticket)
{
    ticket[0] = '\0';
    const auth_t *w = auth_get(req);
    int limit = kind == AUTH_BUSY_UPLOAD ? a->cfg.uploads_at_once : a->cfg.chats_at_once;
    if (!w || limit <= 0 || !a->auth)
        return true;
    char key[AUTH_TICKET_MAX];
    busy_key(w, kind, key);
    bool ok = true;
    pthread_mutex_lock(&a->auth->lock);
    running_t *slot = NULL, *free_slot = NULL;
    for (size_t i = 0; i < RUNNING_MAX && !slot; i++) {
        running_t *r = &a->auth->running[i];
        if (r->user[0] && strcmp(r->user, key) == 0)
            slot = r;
        else if (!r->user[0] && !free_slot)
            free_slot = r;
    }
    if (!slot && free_slot) {
        slot = free_slot;
        snprintf(slot->user, sizeof slot->user, "%s", key);
        slot->n = 0;
    }
    if (!slot)   /* more users busy at once than tracked: not limited */
        ok = true;
    else if (slot->n >= limit)
        ok = false;
    else {
        slot->n++;
        snprintf(ticket, AUTH_TICKET_MAX, "%s", key);
    }
    pthread_mutex_unlock(&a->auth->lock);
    if (!ok)
        httpd_reply_error(req, 429, "You have %d %s running at once, the most allowed: wait for "
                                    "one to finish",
                          limit, kind == AUTH_BUSY_UPLOAD ? "uploads" : "chats");
    return ok;
}

void auth_busy_end(app_t *a, char *ticket)
{
    if (!ticket || !ticket[0] || !a->auth)
        return;
    pthread_mutex_lock(&a->auth->lock);
    for (size_t i = 0; i < RUNNING_MAX; i++) {
        running_t *r = &a->auth->running[i];
        if (r->user[0] && strcmp(r->user, ticket) == 0) {
            if (--r->n <= 0)
                r->user[0] = '\0';
            break;
        }
    }
    pthread_mutex_unlock(&a->auth->lock);
    ticket[0] = '\0';
}

/* ---- helpers for the routes ---- */

static bool body_json(httpd_req_t *req, json_t **body)
{
    const char *msg = NULL;
    if (httpd_req_json(req, body, &msg) != HTTPD_OK || !json_is_object(*body)) {
        httpd_reply_error(req, 400, "%s", msg ? msg : "Expected a JSON object");
        if (*body)
            json_decref(*body);
        *body = NULL;
        return false;
    }
    return true;
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static json_t *user_json(const store_user_t *u)
{
    char c[STORE_TIME_BUFSZ], up[STORE_TIME_BUFSZ];
    store_format_time(u->created_at, c);
    store_format_time(u->updated_at, up);
    return json_pack("{s:s, s:s, s:s, s:b, s:s, s:s}", "id", u->id, "name", u->name, "role",
                     store_user_role_name(u->role), "disabled", u->disabled, "created_at", c,
                     "updated_at", up);
}

static bool accounts_only(httpd_req_t *req, app_t *a)
{
    if (auth_accounts(a))
        return true;
    httpd_reply_error(req, 400, "There are no accounts in local mode (auth.mode = local)");
    return false;
}

static void reply_store(httpd_req_t *req, int rc, const char *what)
{
    if (rc == STORE_ENOTFOUND)
        httpd_reply_error(req, 404, "%s not found", what);
    else if (rc == STORE_ECONFLICT)
        httpd_reply_error(req, 409, "%s: conflict", what);
    else if (rc == STORE_EINVAL || rc == STORE_ETOOBIG)
        httpd_reply_error(req, 400, "%s: invalid value", what);
    else
        httpd_reply_error(req, 500, "%s: %s", what, store_strerror(rc));
}

/* Whether the request came over HTTPS through a proxy that says so. */
static bool over_https(httpd_req_t *req)
{
    return authparse_forwarded_https(httpd_req_header(req, "X-Forwarded-Proto"));
}

static void set_cookie(httpd_req_t *req, const char *value, long max_age)
{
    char c[256];
    snprintf(c, sizeof c, COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%ld%s",
             value, max_age, over_https(req) ? "; Secure" : "");
    httpd_reply_header(req, "Set-Cookie", c);
}

/* A new login for u: the cookie set on req. Returns 0 or -1 (answered). */
static int start_login(app_t *a, httpd_req_t *req, const store_user_t *u)
{
    char secret[SECRET_TOKEN_MAX], hash[SECRET_HEX_MAX];
    secret_new("kvs_", secret);
    secret_hash_hex(secret, strlen(secret), hash);
    char from[AUTHPARSE_ADDR_MAX];
    const char *peer = client_addr(a, req, from);
    int rc = store_login_create(a->store, hash, u->id, a->cfg.auth_session_idle_s,
                                peer[0] ? peer : NULL, httpd_req_header(req, "User-Agent"),
                                NULL);
    if (rc != STORE_OK) {
        reply_store(req, rc, "Login");
        return -1;
    }
    set_cookie(req, secret, a->cfg.auth_session_idle_s);
    return 0;
}

/* Per account: backoff after LOGIN_FREE_FAILURES, the lock at
 * auth.login_lock_after. Per client address (many people may share one
 * behind a NAT; one guesser may try many accounts): LOGIN_IP_FACTOR times
 * as many before each. */
static ratelimit_policy_t login_policy(const app_t *a, bool per_address)
{
    int f = per_address ? LOGIN_IP_FACTOR : 1;
    return (ratelimit_policy_t){ .free = LOGIN_FREE_FAILURES * f,
                                 .lock_after = a->cfg.login_lock_after * f,
                                 .backoff_max = LOGIN_BACKOFF_MAX,
                                 .lock_s = a->cfg.login_lock_minutes * 60.0,
                                 .window_s = LOGIN_WINDOW_S };
}

/* ---- login, logout, me, password ---- */

void auth_h_login(httpd_req_t *req, void *user)
{
    app_t *a = user;
    if (!accounts_only(req, a))
        return;
    json_t *b = NULL;
    if (!body_json(req, &b))
        return;
    const char *name = jstr(b, "username"), *pw = jstr(b, "password");
    if (!name || !pw) {
        json_decref(b);
        httpd_reply_error(req, 400, "Send {\"username\": ..., \"password\": ...}");
        return;
    }
    char lower[160], kuser[RATELIMIT_KEY_MAX + 1], kaddr[RATELIMIT_KEY_MAX + 1];
    size_t i = 0;
    for (; name[i] && i < sizeof lower - 1; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    lower[i] = '\0';
    snprintf(kuser, sizeof kuser, "login:user:%.80s", lower);
    char from[AUTHPARSE_ADDR_MAX];
    snprintf(kaddr, sizeof kaddr, "login:ip:%s", client_addr(a, req, from));
    ratelimit_policy_t pol = login_policy(a, false), pol_ip = login_policy(a, true);
    int64_t now = mono_ms();
    double w1 = 0, w2 = 0;
    bool l1 = false, l2 = false;
    bool ok1 = ratelimit_allowed(a->auth->rl, kuser, &pol, now, &w1, &l1);
    bool ok2 = ratelimit_allowed(a->auth->rl, kaddr, &pol_ip, now, &w2, &l2);
    if (!ok1 || !ok2) {
        double w = w1 > w2 ? w1 : w2;
        audit_as(a, req, NULL, name, l1 || l2 ? "login.locked" : "login.backoff",
                 json_pack("{s:f}", "retry_after_s", w));
        json_decref(b);
        char ra[32];
        snprintf(ra, sizeof ra, "%d", (int)(w + 0.999));
        httpd_reply_header(req, "Retry-After", ra);
        httpd_reply_error(req, 429, "%s: try again in %s s",
                          l1 || l2 ? "Too many failed logins, locked" : "Too many failed logins",
                          ra);
        return;
    }
    store_user_t u;
    store_user_init(&u);
    int rc = store_user_get_by_name(a->store, name, &u);
    /* the same work whether or not the user exists (no timing tells) */
    static const char dummy[] = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$"
                                "2IeLhsqG7Zkft4Kv3v4yfEjLG2Xr9kYqh0Tzm+uc4Hk";
    bool good = secret_password_verify(rc == STORE_OK ? u.password_hash : dummy, pw, strlen(pw));
    good = good && rc == STORE_OK && !u.disabled;
    if (!good) {
        ratelimit_fail(a->auth->rl, kuser, &pol, now);
        ratelimit_fail(a->auth->rl, kaddr, &pol_ip, now);
        audit_as(a, req, rc == STORE_OK ? u.id : NULL, name, "login.fail",
                 rc == STORE_OK && u.disabled ? json_pack("{s:s}", "why", "disabled") : NULL);
        store_user_cleanup(&u);
        json_decref(b);
        httpd_reply_error(req, 401, "Wrong user name or password");
        return;
    }
    ratelimit_clear(a->auth->rl, kuser);
    if (secret_needs_rehash(u.password_hash)) {
        char h[SECRET_PWHASH_MAX];
        if (secret_password_hash(pw, strlen(pw), h) == 0)
            store_user_set_password(a->store, u.id, h);
    }
    json_decref(b);
    if (start_login(a, req, &u) == 0) {
        audit_as(a, req, u.id, u.name, "login.ok", NULL);
        httpd_reply_json(req, 200, json_pack("{s:o}", "user", user_json(&u)));
    }
    store_user_cleanup(&u);
}

void auth_h_logout(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const auth_t *w = auth_get(req);
    if (!accounts_only(req, a) || !w)
        return;
    json_t *b = NULL;
    size_t blen = 0;
    httpd_req_body(req, &blen);
    if (blen && !body_json(req, &b))
        return;
    bool everywhere = json_is_true(json_object_get(b, "everywhere"));
    json_decref(b);
    int64_t n = 0;
    if (everywhere && w->user_id[0])
        store_login_delete_user(a->store, w->user_id, NULL, &n);
    else if (w->login_hash[0] && store_login_delete(a->store, w->login_hash, NULL) == STORE_OK)
        n = 1;
    set_cookie(req, "", 0);
    auth_audit(a, req, everywhere ? "logout.everywhere" : "logout", NULL,
               json_pack("{s:I}", "logins", (json_int_t)n));
    httpd_reply_json(req, 200, json_pack("{s:s, s:I}", "message", "Logged out", "logins_ended",
                                         (json_int_t)n));
}

static const char *via_name(auth_via_t v)
{
    switch (v) {
    case AUTH_VIA_LOGIN: return "login";
    case AUTH_VIA_TOKEN: return "token";
    case AUTH_VIA_API_KEY: return "api_key";
    default: return "header";
    }
}

void auth_h_me(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const auth_t *w = auth_get(req);
    if (!w) {
        httpd_reply_json(req, 200, json_pack("{s:s, s:n}", "mode", "local", "user"));
        return;
    }
    const config_t *c = &a->cfg;
    httpd_reply_json(
        req, 200,
        json_pack("{s:s, s:{s:s?, s:s, s:s}, s:s, s:s, s:{s:i, s:i}, s:{s:i, s:i, s:i, s:i, s:i}}",
                  "mode", "accounts", "user", "id", w->user_id[0] ? w->user_id : NULL, "name",
                  w->name, "role", w->admin ? "admin" : "user", "scope",
                  store_token_scope_name(w->scope), "via", via_name(w->via), "running", "chats",
                  busy_count(a, w, AUTH_BUSY_CHAT), "uploads", busy_count(a, w, AUTH_BUSY_UPLOAD),
                  "limits", "chats_per_minute", c->chats_per_minute, "chats_at_once",
                  c->chats_at_once, "uploads_per_minute", c->uploads_per_minute,
                  "uploads_at_once", c->uploads_at_once, "storage_mb", c->storage_mb));
}

void auth_h_password(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const auth_t *w = auth_get(req);
    if (!accounts_only(req, a) || !w)
        return;
    if (!w->user_id[0] || w->via == AUTH_VIA_TOKEN) {
        httpd_reply_error(req, 403, "Change a password from a login, not with a token");
        return;
    }
    json_t *b = NULL;
    if (!body_json(req, &b))
        return;
    const char *cur = jstr(b, "current_password"), *nw = jstr(b, "new_password");
    char why[160];
    store_user_t u;
    store_user_init(&u);
    if (!cur || !nw) {
        httpd_reply_error(req, 400, "Send {\"current_password\": ..., \"new_password\": ...}");
    } else if (!secret_password_ok(nw, strlen(nw), why, sizeof why)) {
        httpd_reply_error(req, 400, "%s", why);
    } else if (store_user_get(a->store, w->user_id, &u) != STORE_OK ||
               !secret_password_verify(u.password_hash, cur, strlen(cur))) {
        auth_audit(a, req, "password.fail", w->name, NULL);
        httpd_reply_error(req, 403, "The current password is wrong");
    } else {
        char h[SECRET_PWHASH_MAX];
        int rc = secret_password_hash(nw, strlen(nw), h) == 0
                     ? store_user_set_password(a->store, w->user_id, h)
                     : STORE_ENOMEM;
        if (rc != STORE_OK) {
            reply_store(req, rc, "User");
        } else {
            int64_t n = 0;
            store_login_delete_user(a->store, w->user_id, w->login_hash[0] ? w->login_hash : NULL,
                                    &n);
            auth_audit(a, req, "password.change", w->name,
                       json_pack("{s:I}", "other_logins_ended", (json_int_t)n));
            httpd_reply_json(req, 200, json_pack("{s:s}", "message", "Password changed"));
        }
    }
    store_user_cleanup(&u);
    json_decref(b);
}

/* ---- the first admin ---- */

/* Make admin `name` with password pw; the first one adopts what local mode
 * left (documents and sessions without owner). *out receives the user. */
int auth_user_create(app_t *a, const char *name, const char *pw, store_user_role_t role,
                     store_user_t *out, char *why, size_t whycap)
{
    if (!store_user_name_valid(name)) {
        snprintf(why, whycap, "A user name is 1 to 64 letters, digits and . _ - @");
        return STORE_EINVAL;
    }
    if (!secret_password_ok(pw, strlen(pw), why, whycap))
        return STORE_EINVAL;
    char h[SECRET_PWHASH_MAX];
    if (secret_password_hash(pw, strlen(pw), h) != 0) {
        snprintf(why, whycap, "out of memory");
        return STORE_ENOMEM;
    }
    int64_t before = 0;
    store_user_count(a->store, &before, NULL);
    int rc = store_user_create(a->store, name, h, role, out);
    if (rc == STORE_ECONFLICT)
        snprintf(why, whycap, "A user named %s exists", name);
    else if (rc != STORE_OK)
        snprintf(why, whycap, "%s", store_strerror(rc));
    if (rc == STORE_OK && before == 0 && role == STORE_USER_ROLE_ADMIN) {
        int64_t nd = 0, ns = 0;
        int arc = store_adopt_unowned(a->store, out->id, &nd, &ns);
        if (arc == STORE_OK && (nd || ns))
            log_info("auth: %s now owns the %lld document(s) and %lld session(s) kvchat had "
                     "before accounts", name, (long long)nd, (long long)ns);
        else if (arc != STORE_OK)
            log_warn("auth: documents and sessions from before accounts not given to %s: %s",
                     name, store_strerror(arc));
    }
    return rc;
}

void auth_h_setup(httpd_req_t *req, void *user)
{
    app_t *a = user;
    if (!accounts_only(req, a))
        return;
    json_t *b = NULL;
    if (!body_json(req, &b))
        return;
    const char *tok = jstr(b, "token"), *name = jstr(b, "username"), *pw = jstr(b, "password");
    char hash[SECRET_HEX_MAX] = "";
    if (tok)
        secret_hash_hex(tok, strlen(tok), hash);
    pthread_mutex_lock(&a->auth->lock);
    bool valid = a->auth->setup_hash[0] && tok &&
                 secret_equal(hash, a->auth->setup_hash, SECRET_HEX_MAX - 1);
    if (valid)
        a->auth->setup_hash[0] = '\0';   /* once */
    pthread_mutex_unlock(&a->auth->lock);
    if (!valid) {
        audit_as(a, req, NULL, name ? name : "", "setup.fail", NULL);
        json_decref(b);
        httpd_reply_error(req, 403, "This set-up link is not valid (it works once)");
        return;
    }
    store_user_t u;
    store_user_init(&u);
    char why[200] = "";
    int rc = name && pw ? auth_user_create(a, name, pw, STORE_USER_ROLE_ADMIN, &u, why, sizeof why)
                        : STORE_EINVAL;
    if (rc != STORE_OK) {
        pthread_mutex_lock(&a->auth->lock);
        memcpy(a->auth->setup_hash, hash, sizeof hash);   /* try again */
        pthread_mutex_unlock(&a->auth->lock);
        httpd_reply_error(req, rc == STORE_ECONFLICT ? 409 : 400, "%s",
                          why[0] ? why : "Send {\"token\", \"username\", \"password\"}");
    } else if (start_login(a, req, &u) == 0) {
        audit_as(a, req, u.id, u.name, "user.create", json_pack("{s:s, s:s}", "role", "admin",
                                                                "via", "set-up link"));
        httpd_reply_json(req, 201, json_pack("{s:o}", "user", user_json(&u)));
    }
    store_user_cleanup(&u);
    json_decref(b);
}

/* ---- tokens ---- */

void auth_h_tokens_create(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const auth_t *w = auth_get(req);
    if (!accounts_only(req, a) || !w)
        return;
    if (!w->user_id[0]) {
        httpd_reply_error(req, 400, "The server's API key has no tokens of its own");
        return;
    }
    json_t *b = NULL;
    if (!body_json(req, &b))
        return;
    const char *name = jstr(b, "name"), *sc = jstr(b, "scope");
    json_t *exp = json_object_get(b, "expires_in");
    store_token_scope_t scope = STORE_TOKEN_CHAT;
    if (!name || !*name) {
        httpd_reply_error(req, 400, "Name the token: {\"name\": ..., \"scope\": "
                                    "\"read\"|\"chat\"|\"admin\", \"expires_in\": seconds}");
    } else if (sc && store_token_scope_parse(sc, &scope) != STORE_OK) {
        httpd_reply_error(req, 400, "scope must be read, chat or admin");
    } else if (scope > w->scope) {
        httpd_reply_error(req, 403, "A token cannot do more than the one who makes it");
    } else if (exp && !json_is_null(exp) &&
               (!json_is_integer(exp) || json_integer_value(exp) < 60 ||
                json_integer_value(exp) > 10LL * 366 * 86400)) {
        httpd_reply_error(req, 400, "expires_in is seconds, 60 to ten years (or null: never)");
    } else {
        int64_t expires = exp && json_is_integer(exp)
                              ? store_now_ms() + (int64_t)json_integer_value(exp) * 1000
                              : 0;
        char secret[SECRET_TOKEN_MAX], hash[SECRET_HEX_MAX];
        secret_new("kvt_", secret);
        secret_hash_hex(secret, strlen(secret), hash);
        store_token_t t;
        store_token_init(&t);
        int rc = store_token_create(a->store, w->user_id, name, hash, scope, expires, &t);
        if (rc != STORE_OK) {
            reply_store(req, rc, "Token");
        } else {
            auth_audit(a, req, "token.create", t.id,
                       json_pack("{s:s, s:s}", "name", name, "scope",
                                 store_token_scope_name(scope)));
            char e[STORE_TIME_BUFSZ] = "";
            if (t.expires_at > 0)
                store_format_time(t.expires_at, e);
            httpd_reply_json(req, 201,
                             json_pack("{s:s, s:s, s:s, s:s, s:s?}", "id", t.id, "token", secret,
                                       "name", t.name, "scope", store_token_scope_name(t.scope),
                                       "expires_at", t.expires_at > 0 ? e : NULL));
        }
        store_token_cleanup(&t);
        secret_wipe(secret, sizeof secret);
    }
    json_decref(b);
}

void auth_h_tokens_list(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const auth_t *w = auth_get(req);
    if (!accounts_only(req, a) || !w)
        return;
    store_token_list_t l = { 0 };
    int rc = store_token_list(a->store, w->user_id, &l);
    if (rc != STORE_OK) {
        reply_store(req, rc, "Tokens");
        return;
    }
    json_t *arr = json_array();
    int64_t now = store_now_ms();
    for (size_t i = 0; i < l.n; i++) {
        const store_token_t *t = &l.items[i];
        char c[STORE_TIME_BUFSZ], e[STORE_TIME_BUFSZ] = "", u[STORE_TIME_BUFSZ] = "";
        store_format_time(t->created_at, c);
        if (t->expires_at > 0)
            store_format_time(t->expires_at, e);
        if (t->last_used_at > 0)
            store_format_time(t->last_used_at, u);
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:b}", "id", t->id, "name", t->name,
                           "scope", store_token_scope_name(t->scope), "created_at", c,
                           "expires_at", t->expires_at > 0 ? e : NULL, "last_used_at",
                           t->last_used_at > 0 ? u : NULL, "expired",
                           t->expires_at > 0 && t->expires_at <= now));
    }
    store_token_list_cleanup(&l);
    httpd_reply_json(req, 200, json_pack("{s:o}", "tokens", arr));
}

void auth_h_tokens_delete(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const auth_t *w = auth_get(req);
    if (!accounts_only(req, a) || !w)
        return;
    const char *id = httpd_req_param(req, "token_id");
    int rc = store_token_delete(a->store, w->user_id, id);
    if (rc != STORE_OK) {
        reply_store(req, rc == STORE_EINVAL ? STORE_ENOTFOUND : rc, "Token");
        return;
    }
    auth_audit(a, req, "token.revoke", id, NULL);
    httpd_reply_json(req, 200, json_pack("{s:s, s:s}", "message", "Token revoked", "id", id));
}

/* ---- users (admins) ---- */

void auth_h_users_list(httpd_req_t *req, void *user)
{
    app_t *a = user;
    if (!accounts_only(req, a))
        return;
    store_user_list_t l = { 0 };
    int rc = store_user_list(a->store, &l);
    if (rc != STORE_OK) {
        reply_store(req, rc, "Users");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < l.n; i++) {
        json_t *u = user_json(&l.items[i]);
        int64_t bytes = 0, docs = 0;
        store_user_usage(a->store, l.items[i].id, &bytes, &docs);
        json_object_set_new(u, "documents", json_integer(docs));
        json_object_set_new(u, "bytes", json_integer(bytes));
        json_array_append_new(arr, u);
    }
    store_user_list_cleanup(&l);
    httpd_reply_json(req, 200, json_pack("{s:o}", "users", arr));
}

void auth_h_users_create(httpd_req_t *req, void *user)
{
    app_t *a = user;
    if (!accounts_only(req, a))
        return;
    json_t *b = NULL;
    if (!body_json(req, &b))
        return;
    const char *name = jstr(b, "username"), *pw = jstr(b, "password"), *role = jstr(b, "role");
    store_user_role_t r = STORE_USER_ROLE_USER;
    char why[200] = "";
    store_user_t u;
    store_user_init(&u);
    if (!name || !pw) {
        httpd_reply_error(req, 400, "Send {\"username\", \"password\", \"role\"}");
    } else if (role && store_user_role_parse(role, &r) != STORE_OK) {
        httpd_reply_error(req, 400, "role must be admin or user");
    } else {
        int rc = auth_user_create(a, name, pw, r, &u, why, sizeof why);
        if (rc != STORE_OK) {
            httpd_reply_error(req, rc == STORE_ECONFLICT ? 409 : rc == STORE_EINVAL ? 400 : 500,
                              "%s", why);
        } else {
            auth_audit(a, req, "user.create", u.name,
                       json_pack("{s:s}", "role", store_user_role_name(u.role)));
            httpd_reply_json(req, 201, user_json(&u));
        }
    }
    store_user_cleanup(&u);
    json_decref(b);
}

/* The user the route names into *u (store_user_cleanup); -1 when answered
 * (local mode, no such user). */
static int route_user(httpd_req_t *req, app_t *a, const char *id, store_user_t *u)
{
    store_user_init(u);
    if (!accounts_only(req, a))
        return -1;
    if (store_user_get(a->store, id, u) != STORE_OK) {
        store_user_cleanup(u);
        httpd_reply_error(req, 404, "User not found");
        return -1;
    }
    return 0;
}

void auth_h_users_patch(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const char *id = httpd_req_param(req, "user_id");
    store_user_t u;
    if (route_user(req, a, id, &u) != 0)
        return;
    json_t *b = NULL;
    if (!body_json(req, &b)) {
        store_user_cleanup(&u);
        return;
    }
    const char *role = jstr(b, "role"), *pw = jstr(b, "password");
    json_t *dis = json_object_get(b, "disabled");
    store_user_role_t r;
    char why[200] = "";
    int rc = STORE_OK;
    if (role && store_user_role_parse(role, &r) != STORE_OK) {
        httpd_reply_error(req, 400, "role must be admin or user");
        goto out;
    }
    if (dis && !json_is_boolean(dis)) {
        httpd_reply_error(req, 400, "disabled is true or false");
        goto out;
    }
    if (pw && !secret_password_ok(pw, strlen(pw), why, sizeof why)) {
        httpd_reply_error(req, 400, "%s", why);
        goto out;
    }
    if (role)
        rc = store_user_set_role(a->store, u.id, r);
    if (rc == STORE_OK && dis)
        rc = store_user_set_disabled(a->store, u.id, json_is_true(dis));
    if (rc == STORE_OK && pw) {
        char h[SECRET_PWHASH_MAX];
        rc = secret_password_hash(pw, strlen(pw), h) == 0
                 ? store_user_set_password(a->store, u.id, h)
                 : STORE_ENOMEM;
        if (rc == STORE_OK)
            store_login_delete_user(a->store, u.id, NULL, NULL);
    }
    if (rc == STORE_ECONFLICT) {
        httpd_reply_error(req, 409, "That would leave no enabled admin");
        goto out;
    }
    if (rc != STORE_OK) {
        reply_store(req, rc, "User");
        goto out;
    }
    auth_audit(a, req, "user.change", u.name,
               json_pack("{s:s?, s:o?, s:b}", "role", role, "disabled",
                         dis ? json_boolean(json_is_true(dis)) : NULL, "password", pw != NULL));
    store_user_cleanup(&u);
    store_user_get(a->store, id, &u);
    httpd_reply_json(req, 200, user_json(&u));
out:
    store_user_cleanup(&u);
    json_decref(b);
}

void auth_h_users_delete(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const char *id = httpd_req_param(req, "user_id");
    store_user_t u;
    if (route_user(req, a, id, &u) != 0)
        return;
    store_doc_list_t docs = { 0 };
    store_id_list_t files = { 0 };
    int rc = store_user_delete(a->store, u.id, &docs, &files);
    if (rc == STORE_ECONFLICT) {
        httpd_reply_error(req, 409, "That is the last enabled admin");
    } else if (rc != STORE_OK) {
        reply_store(req, rc, "User");
    } else {
        for (size_t i = 0; i < files.n; i++) {
            char path[1300];
            snprintf(path, sizeof path, "%s/%s", a->uploads_dir, files.ids[i]);
            if (unlink(path) != 0 && errno != ENOENT)
                log_warn("cannot remove %s: %s", path, strerror(errno));
        }
        auth_audit(a, req, "user.delete", u.name,
                   json_pack("{s:I}", "documents", (json_int_t)docs.n));
        httpd_reply_json(req, 200, json_pack("{s:s, s:s, s:I}", "message", "User deleted", "id",
                                             u.id, "documents_deleted", (json_int_t)docs.n));
    }
    store_doc_list_cleanup(&docs);
    store_id_list_cleanup(&files);
    store_user_cleanup(&u);
}

void auth_h_audit(httpd_req_t *req, void *user)
{
    app_t *a = user;
    store_audit_filter_t f = { .actor = httpd_req_query(req, "actor"),
                               .action = httpd_req_query(req, "action"),
                               .offset = 0,
                               .limit = 100 };
    const char *o = httpd_req_query(req, "offset"), *l = httpd_req_query(req, "limit");
    char *end;
    if (o) {
        long long v = strtoll(o, &end, 10);
        if (!*o || *end || v < 0) {
            httpd_reply_error(req, 400, "offset is a number from 0");
            return;
        }
        f.offset = (size_t)v;
    }
    if (l) {
        long long v = strtoll(l, &end, 10);
        if (!*l || *end || v < 1 || v > 1000) {
            httpd_reply_error(req, 400, "limit is a number from 1 to 1000");
            return;
        }
        f.limit = (size_t)v;
    }
    store_audit_list_t list = { 0 };
    int rc = store_audit_list(a->store, &f, &list);
    if (rc != STORE_OK) {
        reply_store(req, rc, "Audit log");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < list.n; i++) {
        const store_audit_t *e = &list.items[i];
        char ts[STORE_TIME_BUFSZ];
        store_format_time(e->ts, ts);
        json_t *d = e->detail ? json_loads(e->detail, JSON_DECODE_ANY, NULL) : NULL;
        json_array_append_new(arr, json_pack("{s:I, s:s, s:s?, s:s?, s:s, s:s?, s:s?, s:o?}",
                                             "id", (json_int_t)e->id, "time", ts, "actor_id",
                                             e->actor_id, "actor", e->actor_name, "action",
                                             e->action, "target", e->target, "from",
                                             e->client_addr, "detail", d));
    }
    store_audit_list_cleanup(&list);
    httpd_reply_json(req, 200, json_pack("{s:o, s:I, s:I}", "entries", arr, "offset",
                                         (json_int_t)f.offset, "limit", (json_int_t)f.limit));
}
