/* httpd.c — see httpd.h.
 *
 * The one module that includes <microhttpd.h>.
 *
 * libmicrohttpd runs with one thread per connection. For every request MHD
 * calls on_request() several times on that thread:
 *   1. headers read: we allocate the httpd_req_t, match the route, check
 *      the API key, the declared length and the content type, and return
 *      MHD_YES without answering (answering now makes MHD 0.9.75 send
 *      "Connection: close"). Only a declared body over the limit is
 *      answered at once: then MHD closes the connection and never reads it.
 *   2. body chunks: buffered (limit), parsed as multipart (upload routes),
 *      or discarded (the request already failed). MHD 0.9.75 refuses to
 *      queue an answer in this phase, so an answer decided here (a chunked
 *      body over the limit, an upload callback that gives up) is kept and
 *      the rest of the body is drained unread — at most the declared
 *      length, or as much again as the limit of a chunked body (so that a
 *      client that sends it all reads the 413), after which the
 *      connection is dropped.
 *   3. body complete: the kept answer is queued, or the handler runs.
 * on_completed() (MHD_OPTION_NOTIFY_COMPLETED) writes the access log line,
 * counts, and frees the request.
 *
 * A stream's answer is an MHD callback response. Its reader runs on the
 * connection's thread: it hands over queued bytes, or waits in poll() on
 * the stream's eventfd (written by producers) and the client's socket (a
 * FIN or reset means the client is gone), with the heartbeat interval as
 * timeout. A thread-per-connection daemon may block in its callbacks, so
 * no MHD_suspend_connection() is needed, and a parked stream sees a
 * disconnect at once instead of at its next write.
 *
 * Locks: httpd.lock (list of streams, closing flag) is taken before a
 * stream's lock, never after.
 */
#include "common/httpd.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"

#define MAX_SEGS 32         /* segments in a route pattern */
#define MAX_PARAMS 8        /* captures in a route pattern */
#define MAX_REPLY_HEADERS 16
#define MAX_FORM_FIELDS 32
#define FORM_MAX (64 * 1024)        /* all plain upload fields together */
#define ERRMSG_MAX 4096
#define DRAIN_SLACK (1024 * 1024)   /* least chunked bytes drained after a refusal */
#define MIN_BODY_RATE 1024          /* bytes/s a request body must keep up, on average */
#define PP_BUFFER (64 * 1024)       /* post processor buffer */
#define STREAM_BLOCK (32 * 1024)    /* most bytes per chunk of a stream */

const char *httpd_strerror(int rc)
{
    switch (rc) {
    case HTTPD_OK: return "ok";
    case HTTPD_ENOMEM: return "out of memory";
    case HTTPD_EINVAL: return "invalid argument";
    case HTTPD_EBIND: return "cannot listen on the address";
    case HTTPD_ESTATE: return "request already answered or wrong state";
    case HTTPD_EFULL: return "stream queue full";
    case HTTPD_ECLOSED: return "stream closed";
    case HTTPD_ENOENT: return "file not found";
    case HTTPD_EIO: return "file cannot be read";
    case HTTPD_EBADJSON: return "malformed JSON body";
    default: return "unknown httpd error";
    }
}

httpd_config_t httpd_config_default(void)
{
    httpd_config_t c;
    memset(&c, 0, sizeof c);
    c.host = "127.0.0.1";
    c.port = 0;
    c.max_body = 1024 * 1024;
    c.max_upload = 50 * 1024 * 1024;
    c.max_connections = 512;
    c.max_per_ip = 64;
    c.timeout_s = 30;
    c.allowed_hosts = NULL;
    c.same_origin_only = true;
    c.json_bodies = true;
    c.api_key = NULL;
    c.error_style = HTTPD_ERRORS_OPENAI;
    c.cors_origins = NULL;
    c.heartbeat_ms = 15000;
    c.stream_queue_max = 1024 * 1024;
    c.access_log_level = LOG_INFO;
    return c;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void stat_add(uint64_t *v, uint64_t n) { __atomic_fetch_add(v, n, __ATOMIC_RELAXED); }
static void stat_sub(uint64_t *v, uint64_t n) { __atomic_fetch_sub(v, n, __ATOMIC_RELAXED); }

/* ---- types ------------------------------------------------------------ */

enum { SEG_LIT, SEG_PARAM, SEG_REST };

typedef struct {
    int kind;
    char *text; /* literal text, or the capture's name */
    size_t len;
} seg_t;

typedef struct {
    char *method;
    char *pattern;
    seg_t *segs;
    int nsegs;
    int nparams;
    int score; /* higher wins among matches */
    httpd_handler_fn handler;
    unsigned flags;
    const httpd_upload_t *upload;
} route_t;

struct httpd {
    struct MHD_Daemon *mhd;
    unsigned port;
    httpd_config_t cfg; /* strings point to the copies below */
    char *host, *api_key, *cors, *hosts;
    char **cors_list; /* exact origins; NULL with cors_any */
    size_t n_cors;
    bool cors_any;
    char hostname[256]; /* this machine's name: answered on any listen address */
    char **host_list; /* allowed_hosts besides the built-in ones */
    size_t n_hosts;
    bool hosts_any;
    route_t *routes;
    size_t n_routes;
    void *user;

    pthread_mutex_t lock;
    struct httpd_stream *streams; /* streams whose connection is open */
    atomic_bool closing;

    /* The request deadline and shedding (see conn_watch_t). */
    pthread_mutex_t wlock;
    pthread_cond_t wcond;
    struct conn_watch *watch;
    unsigned nwatch;
    pthread_t reaper;
    bool reaper_started, reaper_stop;

    httpd_stats_t st; /* updated with __atomic builtins */
};

struct httpd_stream {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on_close finished */
    int refs;            /* producer + connection + request */
    httpd_t *srv;        /* NULL once the connection side let go */
    int efd;             /* eventfd: producers wake the reader */
    int sock;            /* client socket (owned by MHD) */
    struct MHD_Connection *con; /* its connection: used on the connection's thread only */
    unsigned timeout_s;  /* the server's idle timeout */
    bool sse;
    unsigned heartbeat_ms;

    char *q; /* pending bytes are q[qhead .. qhead+qlen) */
    size_t qhead, qlen, qcap, qmax;

    atomic_bool gone;     /* client gone or server closing: writes fail */
    bool shutdown;        /* server closing */
    bool producer_closed; /* httpd_stream_close() called */
    bool waiting;         /* reader is in (or about to enter) poll() */
    bool signalled;       /* efd written since the reader last drained it */
    bool watch_sock;      /* poll the socket for EOF */
    uint64_t sent;
    int64_t last_ms; /* when bytes were last handed to MHD */

    void (*on_close)(httpd_stream_t *s, void *user);
    void *on_close_user;
    bool cb_running;
    pthread_t cb_thread;

    struct httpd_stream *prev, *next; /* in srv->streams */
};

/* One open connection, for the request deadline. libmicrohttpd's timeout
 * only measures silence, so a client that sends a byte now and then would
 * hold its connection for ever. A connection waiting for a request has a
 * budget that starts when it opened or its previous request ended; once
 * the headers are in, every body byte earns 1/MIN_BODY_RATE s of it, never
 * beyond the present (a fast start buys no later stall). The reaper thread
 * shuts down a connection whose budget is more than timeout_s old: headers
 * must be complete within timeout_s, a body must arrive at MIN_BODY_RATE
 * on average with timeout_s of slack. Not watched: a running handler, an
 * answer being sent (MHD's timeout covers a client that takes nothing).
 *
 * Shedding: MHD admits up to max_connections + shed_reserve(); a
 * connection past max_connections closes the watched one with the oldest
 * budget, so idle or slow clients that hold every connection are replaced
 * by new ones instead of locking them out until the timeout.
 *
 * fd is our own duplicate of the socket: shutting it down reaches the
 * connection even if MHD closed its descriptor and the number was reused. */
typedef struct conn_watch {
    int fd;
    int64_t since_ms;            /* the budget's start; 0 = not watched */
    struct conn_watch *prev, *next;
} conn_watch_t;

typedef struct {
    char *name;
    buf_t value;
} form_field_t;

enum { PHASE_FIRST, PHASE_BODY, PHASE_FINAL };
enum { BODY_BUFFER, BODY_UPLOAD, BODY_DISCARD, BODY_DRAIN };

struct httpd_req {
    httpd_t *srv;
    struct MHD_Connection *con;
    const char *method; /* MHD's string */
    char *path;         /* decoded path (copy) */
    const route_t *route;
    const char *pnames[MAX_PARAMS];
    char *pvals[MAX_PARAMS]; /* point into pbuf */
    int nparams;
    char *pbuf;
    double t0;
    int phase;

    /* body */
    conn_watch_t *watch; /* the connection's, while the request lasts */
    int mode;
    size_t limit;
    uint64_t declared; /* Content-Length, or UINT64_MAX if none */
    uint64_t seen;
    uint64_t drain_cap;
    buf_t body;
    struct MHD_PostProcessor *pp;

    /* upload parts */
    bool in_part;
    uint64_t part_bytes;
    char *part_key, *part_file;
    form_field_t *cur_field;
    form_field_t form[MAX_FORM_FIELDS];
    int nform;
    size_t form_bytes;
    bool cb_failed;

    /* answer */
    bool preflight;
    char *allow;       /* methods of the path, for 405 and preflight */
    const char *cors_origin; /* value for Access-Control-Allow-Origin */
    bool replied;      /* queued to MHD */
    struct MHD_Response *kept; /* decided during the body, queued at its end */
    int kept_status;
    int status;
    uint64_t bytes_out;
    char *hname[MAX_REPLY_HEADERS], *hval[MAX_REPLY_HEADERS];
    int nhdr;
    httpd_stream_t *stream; /* the request's own reference */

    void *ctx;
    void (*ctx_free)(void *);
    void *auth;
    void (*auth_free)(void *);
    char peer[64];     /* "" until asked for */
    json_err_t jerr;
};

static void watch_mark(httpd_req_t *req, int64_t since);
static void watch_body(httpd_req_t *req, size_t n);
static void shed_one(httpd_t *srv, conn_watch_t *fresh);
static unsigned shed_reserve(unsigned max_connections);

/* ---- routes ----------------------------------------------------------- */

static void route_cleanup(route_t *r)
{
    for (int i = 0; i < r->nsegs; i++)
        free(r->segs[i].text);
    free(r->segs);
    free(r->method);
    free(r->pattern);
}

/* Compile one table row. Returns HTTPD_OK, HTTPD_EINVAL or HTTPD_ENOMEM. */
static int route_compile(route_t *r, const httpd_route_t *src)
{
    memset(r, 0, sizeof *r);
    if (!src->method || !*src->method || !src->pattern || src->pattern[0] != '/' ||
        !src->handler)
        return HTTPD_EINVAL;
    if ((src->flags & HTTPD_ROUTE_UPLOAD) &&
        (!src->upload || !src->upload->on_part_begin || !src->upload->on_part_data))
        return HTTPD_EINVAL;
    r->method = strdup(src->method);
    r->pattern = strdup(src->pattern);
    r->segs = calloc(MAX_SEGS, sizeof *r->segs);
    if (!r->method || !r->pattern || !r->segs)
        return HTTPD_ENOMEM;
    r->handler = src->handler;
    r->flags = src->flags;
    r->upload = src->upload;
    int nlit = 0;
    bool rest = false;
    const char *p = src->pattern + 1;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (r->nsegs == MAX_SEGS || rest)
            return HTTPD_EINVAL; /* too deep, or {x*} not last */
        seg_t *s = &r->segs[r->nsegs++];
        if (n >= 2 && p[0] == '{' && p[n - 1] == '}') {
            const char *name = p + 1;
            size_t nl = n - 2;
            s->kind = SEG_PARAM;
            if (nl > 0 && name[nl - 1] == '*') {
                s->kind = SEG_REST;
                nl--;
                rest = true;
            }
            if (nl == 0 || memchr(name, '{', nl) || memchr(name, '}', nl) ||
                r->nparams == MAX_PARAMS)
                return HTTPD_EINVAL;
            s->text = strndup(name, nl);
            s->len = nl;
            r->nparams++;
        } else {
            if (memchr(p, '{', n) || memchr(p, '}', n))
                return HTTPD_EINVAL;
            s->kind = SEG_LIT;
            s->text = strndup(p, n);
            s->len = n;
            nlit++;
        }
        if (!s->text)
            return HTTPD_ENOMEM;
        if (!e)
            break;
        p = e + 1;
    }
    r->score = nlit * 2 + (rest ? 0 : 1);
    return HTTPD_OK;
}

/* Match `path` against r. With req, store the captures in req (pointing
 * into req->pbuf, a copy of path). */
static bool route_match(const route_t *r, const char *path, httpd_req_t *req)
{
    const char *p = path;
    const char *cap[MAX_PARAMS];
    size_t caplen[MAX_PARAMS];
    int nc = 0;
    for (int i = 0; i < r->nsegs; i++) {
        const seg_t *s = &r->segs[i];
        if (*p != '/')
            return false;
        p++;
        if (s->kind == SEG_REST) {
            cap[nc] = p;
            caplen[nc++] = strlen(p);
            p += strlen(p);
            break;
        }
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (s->kind == SEG_LIT) {
            if (n != s->len || memcmp(p, s->text, n) != 0)
                return false;
        } else {
            if (n == 0)
                return false;
            cap[nc] = p;
            caplen[nc++] = n;
        }
        p += n;
    }
    if (*p != '\0')
        return false;
    if (req) {
        /* pbuf holds the captures one after another, NUL-terminated. */
        size_t total = 0;
        for (int i = 0; i < nc; i++)
            total += caplen[i] + 1;
        req->pbuf = malloc(total ? total : 1);
        if (!req->pbuf)
            return false;
        char *w = req->pbuf;
        int k = 0;
        for (int i = 0; i < r->nsegs && k < nc; i++) {
            if (r->segs[i].kind == SEG_LIT)
                continue;
            memcpy(w, cap[k], caplen[k]);
            w[caplen[k]] = '\0';
            req->pnames[k] = r->segs[i].text;
            req->pvals[k] = w;
            w += caplen[k] + 1;
            k++;
        }
        req->nparams = nc;
    }
    return true;
}

static bool method_is(const char *a, const char *b) { return strcasecmp(a, b) == 0; }

/* ---- small helpers ---------------------------------------------------- */

static const char *error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 501: return "not_supported_error";
    case 503: return "unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* Serialized error body in the configured style; malloc'd, or NULL. */
static char *error_text(const httpd_t *srv, int status, const char *msg, size_t *len)
{
    json_t *m = json_string_lossy(msg, strlen(msg));
    json_t *body;
    if (srv->cfg.error_style == HTTPD_ERRORS_DETAIL)
        body = json_pack("{s:o*}", "detail", m);
    else
        body = json_pack("{s:{s:o*,s:s,s:i}}", "error", "message", m, "type", error_type(status),
                         "code", status);
    char *text = json_dumps_compact(body);
    json_decref(body);
    if (text)
        *len = strlen(text);
    return text;
}

/* libmicrohttpd's own messages, at debug level. */
__attribute__((format(printf, 2, 0)))
static void log_mhd(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    log_debug("httpd: %s", line);
}

static int connection_fd(struct MHD_Connection *con)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* ---- answers ---------------------------------------------------------- */

static void add_headers(httpd_req_t *req, struct MHD_Response *resp)
{
    if (req->cors_origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", req->cors_origin);
        if (strcmp(req->cors_origin, "*") != 0)
            MHD_add_response_header(resp, "Vary", "Origin");
    }
    for (int i = 0; i < req->nhdr; i++)
        MHD_add_response_header(resp, req->hname[i], req->hval[i]);
}

/* Queue resp (takes the caller's reference) now, or keep it for the end of
 * the body when MHD cannot take it yet. The first answer wins; later ones
 * are dropped with HTTPD_ESTATE. */
static int answer(httpd_req_t *req, int status, struct MHD_Response *resp, uint64_t len)
{
    if (!resp)
        return HTTPD_ENOMEM;
    if (req->replied || req->kept) {
        MHD_destroy_response(resp);
        return HTTPD_ESTATE;
    }
    add_headers(req, resp);
    req->status = status;
    req->bytes_out = len;
    if (req->phase == PHASE_BODY) {
        req->kept = resp;
        req->kept_status = status;
        return HTTPD_OK;
    }
    enum MHD_Result q = MHD_queue_response(req->con, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (q != MHD_YES) {
        req->status = 0;
        req->bytes_out = 0;
        return HTTPD_ESTATE;
    }
    req->replied = true;
    stat_add(&req->srv->st.bytes_out, len);
    return HTTPD_OK;
}

static int answer_bytes(httpd_req_t *req, int status, const char *ctype, const void *data,
                        size_t len, enum MHD_ResponseMemoryMode mode)
{
    if (req->replied || req->kept) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free((void *)data);
        return HTTPD_ESTATE;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)data, mode);
    if (!resp) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free((void *)data);
        return HTTPD_ENOMEM;
    }
    if (ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    return answer(req, status, resp, len);
}

static int answer_error(httpd_req_t *req, int status, const char *msg)
{
    size_t len = 0;
    char *text = error_text(req->srv, status, msg, &len);
    if (!text)
        return answer_bytes(req, status, "text/plain", msg, strlen(msg), MHD_RESPMEM_MUST_COPY);
    if (status == 405 && req->allow)
        httpd_reply_header(req, "Allow", req->allow);
    if (status == 401)
        httpd_reply_header(req, "WWW-Authenticate", "Bearer");
    return answer_bytes(req, status, "application/json", text, len, MHD_RESPMEM_MUST_FREE);
}

static int answer_errorf(httpd_req_t *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int answer_errorf(httpd_req_t *req, int status, const char *fmt, ...)
{
    char msg[ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return answer_error(req, status, msg);
}

int httpd_reply_header(httpd_req_t *req, const char *name, const char *value)
{
    if (!req || !name || !value || !*name || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return HTTPD_EINVAL;
    if (req->nhdr == MAX_REPLY_HEADERS)
        return HTTPD_EINVAL;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return HTTPD_ENOMEM;
    }
    req->hname[req->nhdr] = n;
    req->hval[req->nhdr++] = v;
    return HTTPD_OK;
}

int httpd_reply_json(httpd_req_t *req, int status, json_t *body)
{
    if (!body)
        return answer_error(req, 500, "Internal error: could not build the response");
    char *text = json_dumps_compact(body);
    json_decref(body);
    if (!text)
        return answer_error(req, 500, "Internal error: could not serialize the response");
    return answer_bytes(req, status, "application/json", text, strlen(text),
                        MHD_RESPMEM_MUST_FREE);
}

int httpd_reply_error(httpd_req_t *req, int status, const char *fmt, ...)
{
    char msg[ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return answer_error(req, status, msg);
}

int httpd_reply_text(httpd_req_t *req, int status, const char *content_type, const void *data,
                     size_t len)
{
    return answer_bytes(req, status, content_type ? content_type : "text/plain; charset=utf-8",
                        data ? data : "", data ? len : 0, MHD_RESPMEM_MUST_COPY);
}

int httpd_reply_static(httpd_req_t *req, int status, const char *content_type, const void *data,
                       size_t len, const char *cache_control, const char *etag)
{
    if (cache_control)
        httpd_reply_header(req, "Cache-Control", cache_control);
    if (etag) {
        httpd_reply_header(req, "ETag", etag);
        const char *inm = httpd_req_header(req, "If-None-Match");
        if (inm && (strcmp(inm, etag) == 0 || strcmp(inm, "*") == 0))
            return answer_bytes(req, 304, NULL, "", 0, MHD_RESPMEM_PERSISTENT);
    }
    return answer_bytes(req, status, content_type, data ? data : "", data ? len : 0,
                        MHD_RESPMEM_PERSISTENT);
}

int httpd_reply_file(httpd_req_t *req, int status, const char *content_type, const char *path)
{
    if (req->replied || req->kept)
        return HTTPD_ESTATE;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? HTTPD_ENOENT : HTTPD_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return HTTPD_EIO;
    }
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (!resp) {
        close(fd);
        return HTTPD_ENOMEM;
    }
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    return answer(req, status, resp, (uint64_t)st.st_size);
}

/* ---- request accessors ------------------------------------------------ */

const char *httpd_req_method(const httpd_req_t *req) { return req->method; }
const char *httpd_req_path(const httpd_req_t *req) { return req->path; }
const char *httpd_req_route(const httpd_req_t *req)
{
    return req->route ? req->route->pattern : NULL;
}

const char *httpd_req_param(const httpd_req_t *req, const char *name)
{
    for (int i = 0; i < req->nparams; i++)
        if (strcmp(req->pnames[i], name) == 0)
            return req->pvals[i];
    return NULL;
}

const char *httpd_req_query(const httpd_req_t *req, const char *name)
{
    /* "?a" (no '=') is stored with a NULL value: report it as "". */
    const char *v = NULL;
    size_t vlen = 0;
    if (MHD_lookup_connection_value_n(req->con, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v,
                                      &vlen) != MHD_YES)
        return NULL;
    return v ? v : "";
}

const char *httpd_req_header(const httpd_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->con, MHD_HEADER_KIND, name);
}

const char *httpd_req_body(const httpd_req_t *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

int httpd_req_json(httpd_req_t *req, json_t **out, const char **errmsg)
{
    *out = NULL;
    size_t len;
    const char *body = httpd_req_body(req, &len);
    json_t *j = NULL;
    int rc = json_parse(body, len, &j, &req->jerr);
    if (rc == JSON_ENOMEM)
        return HTTPD_ENOMEM;
    if (rc != JSON_OK) {
        if (len == 0)
            snprintf(req->jerr.msg, sizeof req->jerr.msg, "Request body is empty; expected JSON");
        if (errmsg)
            *errmsg = req->jerr.msg;
        return HTTPD_EBADJSON;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(req->jerr.msg, sizeof req->jerr.msg, "Request body must be a JSON object");
        if (errmsg)
            *errmsg = req->jerr.msg;
        return HTTPD_EBADJSON;
    }
    *out = j;
    return HTTPD_OK;
}

const char *httpd_req_form(const httpd_req_t *req, const char *name)
{
    for (int i = 0; i < req->nform; i++)
        if (strcmp(req->form[i].name, name) == 0)
            return req->form[i].value.data ? req->form[i].value.data : "";
    return NULL;
}

void *httpd_req_user(const httpd_req_t *req) { return req->srv->user; }

void httpd_req_set_ctx(httpd_req_t *req, void *ctx, void (*free_fn)(void *ctx))
{
    req->ctx = ctx;
    req->ctx_free = free_fn;
}

void *httpd_req_ctx(const httpd_req_t *req) { return req->ctx; }

void httpd_req_set_auth(httpd_req_t *req, void *auth, void (*free_fn)(void *auth))
{
    if (req->auth_free && req->auth && req->auth != auth)
        req->auth_free(req->auth);
    req->auth = auth;
    req->auth_free = free_fn;
}

void *httpd_req_auth(const httpd_req_t *req) { return req->auth; }

const char *httpd_req_peer(httpd_req_t *req)
{
    if (req->peer[0])
        return req->peer;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, req->peer,
                  sizeof req->peer);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, req->peer,
                  sizeof req->peer);
    /* an IPv4 client of a dual-stack socket, as IPv4 */
    if (!strncmp(req->peer, "::ffff:", 7) && strchr(req->peer + 7, '.'))
        memmove(req->peer, req->peer + 7, strlen(req->peer + 7) + 1);
    return req->peer;
}

/* True if the socket shows the peer has closed (FIN, reset, error). */
static bool socket_gone(int fd, bool *data_pending)
{
    if (fd < 0)
        return true;
    struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL))
        return true;
    if (p.revents & POLLIN) {
        char c;
        ssize_t k = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (k == 0)
            return true;
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return true;
        if (k > 0 && data_pending)
            *data_pending = true;
    }
    return false;
}

bool httpd_req_gone(httpd_req_t *req)
{
    if (atomic_load(&req->srv->closing))
        return true;
    return socket_gone(connection_fd(req->con), NULL);
}

/* ---- streams ---------------------------------------------------------- */

static void stream_unref(httpd_stream_t *s)
{
    pthread_mutex_lock(&s->lock);
    int r = --s->refs;
    pthread_mutex_unlock(&s->lock);
    if (r > 0)
        return;
    if (s->efd >= 0)
        close(s->efd);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->q);
    free(s);
}

/* Wake the reader if it waits. Caller holds s->lock. */
static void stream_wake(httpd_stream_t *s)
{
    if (s->waiting && !s->signalled) {
        uint64_t one = 1;
        ssize_t w = write(s->efd, &one, sizeof one);
        (void)w; /* EAGAIN: the counter is already non-zero */
        s->signalled = true;
    }
}

/* Append pieces as one unit. Caller holds s->lock. `force` ignores the
 * limit (heartbeats). */
static int stream_put(httpd_stream_t *s, const struct iovec *iov, int n, bool force)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return HTTPD_OK;
    if (!force && (total > s->qmax || s->qlen > s->qmax - total))
        return HTTPD_EFULL;
    if (s->qhead + s->qlen + total > s->qcap) {
        if (s->qlen + total <= s->qcap) {
            memmove(s->q, s->q + s->qhead, s->qlen);
            s->qhead = 0;
        } else {
            size_t cap = s->qcap ? s->qcap : 4096;
            while (cap < s->qlen + total)
                cap *= 2;
            char *q = malloc(cap);
            if (!q)
                return HTTPD_ENOMEM;
            if (s->qlen)
                memcpy(q, s->q + s->qhead, s->qlen);
            free(s->q);
            s->q = q;
            s->qcap = cap;
            s->qhead = 0;
        }
    }
    char *w = s->q + s->qhead + s->qlen;
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len)
            memcpy(w, iov[i].iov_base, iov[i].iov_len);
        w += iov[i].iov_len;
    }
    s->qlen += total;
    stream_wake(s);
    return HTTPD_OK;
}

static int stream_putv(httpd_stream_t *s, const struct iovec *iov, int n)
{
    if (atomic_load(&s->gone))
        return HTTPD_ECLOSED;
    pthread_mutex_lock(&s->lock);
    int rc = atomic_load(&s->gone) || s->producer_closed ? HTTPD_ECLOSED
                                                          : stream_put(s, iov, n, false);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* MHD content reader: runs on the connection's thread and may block. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    httpd_stream_t *s = cls;
    ssize_t ret;
    bool waited = false;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->shutdown) {
            ret = MHD_CONTENT_READER_END_OF_STREAM;
            break;
        }
        if (atomic_load(&s->gone)) {
            ret = MHD_CONTENT_READER_END_WITH_ERROR;
            break;
        }
        if (s->qlen > 0) {
            size_t n = s->qlen < max ? s->qlen : max;
            memcpy(buf, s->q + s->qhead, n);
            s->qhead += n;
            s->qlen -= n;
            if (s->qlen == 0)
                s->qhead = 0;
            s->sent += n;
            s->last_ms = now_ms();
            ret = (ssize_t)n;
            break;
        }
        if (s->producer_closed) {
            ret = MHD_CONTENT_READER_END_OF_STREAM;
            break;
        }
        int timeout = -1;
        if (s->sse && s->heartbeat_ms) {
            int64_t idle = now_ms() - s->last_ms;
            if (idle >= (int64_t)s->heartbeat_ms) {
                struct iovec hb = { .iov_base = ":\n\n", .iov_len = 3 };
                if (stream_put(s, &hb, 1, true) != HTTPD_OK)
                    s->last_ms = now_ms(); /* out of memory: try later */
                continue;
            }
            timeout = (int)((int64_t)s->heartbeat_ms - idle);
        }
        s->waiting = true;
        waited = true;
        bool watch = s->watch_sock;
        pthread_mutex_unlock(&s->lock);

        struct pollfd p[2] = {
            { .fd = s->efd, .events = POLLIN },
            { .fd = watch ? s->sock : -1, .events = POLLIN | POLLRDHUP },
        };
        int r = poll(p, 2, timeout);
        int perr = r < 0 ? errno : 0;
        bool gone = false, pending = false;
        if (r > 0 && p[1].revents)
            gone = socket_gone(s->sock, &pending);

        pthread_mutex_lock(&s->lock);
        s->waiting = false;
        if (r < 0 && perr != EINTR)
            gone = true;
        if (r > 0 && (p[0].revents & POLLIN)) {
            uint64_t v;
            ssize_t k = read(s->efd, &v, sizeof v);
            (void)k;
            s->signalled = false;
        }
        if (pending)
            s->watch_sock = false; /* the client sent more (pipelining): stop watching */
        if (gone)
            atomic_store(&s->gone, true);
    }
    pthread_mutex_unlock(&s->lock);
    /* Waiting for the producer is not the client's idleness: MHD would
     * count it against the connection's timeout and close the connection
     * with these bytes unsent. Setting the timeout anew from 0 restarts
     * its clock (libmicrohttpd 0.9.75). */
    if (waited && ret > 0 && s->timeout_s) {
        MHD_set_connection_option(s->con, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
        MHD_set_connection_option(s->con, MHD_CONNECTION_OPTION_TIMEOUT, s->timeout_s);
    }
    return ret;
}

/* MHD is done with the stream's response: the connection side lets go. */
static void stream_conn_release(void *cls)
{
    httpd_stream_t *s = cls;
    httpd_t *srv = s->srv;
    if (srv) {
        pthread_mutex_lock(&srv->lock);
        if (s->prev)
            s->prev->next = s->next;
        else
            srv->streams = s->next;
        if (s->next)
            s->next->prev = s->prev;
        s->prev = s->next = NULL;
        pthread_mutex_unlock(&srv->lock);
        stat_sub(&srv->st.streams_open, 1);
    }
    pthread_mutex_lock(&s->lock);
    s->srv = NULL;
    if (!s->producer_closed) {
        if (srv && !s->shutdown)
            stat_add(&srv->st.stream_disconnects, 1);
        atomic_store(&s->gone, true);
        if (s->on_close) {
            s->cb_running = true;
            s->cb_thread = pthread_self();
            void (*fn)(httpd_stream_t *, void *) = s->on_close;
            void *user = s->on_close_user;
            pthread_mutex_unlock(&s->lock);
            fn(s, user);
            pthread_mutex_lock(&s->lock);
            s->cb_running = false;
            pthread_cond_broadcast(&s->cond);
        }
    }
    pthread_mutex_unlock(&s->lock);
    stream_unref(s);
}

int httpd_stream_open(httpd_req_t *req, const char *content_type, httpd_stream_t **out)
{
    *out = NULL;
    if (req->replied || req->kept || req->phase != PHASE_FINAL)
        return HTTPD_ESTATE;
    httpd_t *srv = req->srv;
    httpd_stream_t *s = calloc(1, sizeof *s);
    if (!s)
        return HTTPD_ENOMEM;
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0) {
        free(s);
        return HTTPD_ENOMEM;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->refs = 3;
    s->srv = srv;
    s->sock = connection_fd(req->con);
    s->con = req->con;
    s->timeout_s = req->srv->cfg.timeout_s;
    s->watch_sock = s->sock >= 0;
    if (!content_type)
        content_type = "text/event-stream";
    s->sse = strncasecmp(content_type, "text/event-stream", 17) == 0;
    s->heartbeat_ms = srv->cfg.heartbeat_ms;
    s->qmax = srv->cfg.stream_queue_max;
    s->last_ms = now_ms();

    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, s,
                                          stream_conn_release);
    if (!resp) {
        s->refs = 1;
        stream_unref(s);
        return HTTPD_ENOMEM;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");

    pthread_mutex_lock(&srv->lock);
    if (atomic_load(&srv->closing)) {
        pthread_mutex_unlock(&srv->lock);
        s->srv = NULL;
        MHD_destroy_response(resp); /* releases the connection's reference */
        s->producer_closed = true;
        stream_unref(s);
        stream_unref(s);
        return HTTPD_ECLOSED;
    }
    s->next = srv->streams;
    if (s->next)
        s->next->prev = s;
    srv->streams = s;
    pthread_mutex_unlock(&srv->lock);
    stat_add(&srv->st.streams_open, 1);
    stat_add(&srv->st.streams_total, 1);

    int rc = answer(req, 200, resp, 0);
    if (rc != HTTPD_OK) {
        /* The response is gone and with it the connection's reference. */
        pthread_mutex_lock(&s->lock);
        s->producer_closed = true;
        pthread_mutex_unlock(&s->lock);
        stream_unref(s);
        stream_unref(s);
        return rc;
    }
    req->stream = s;
    *out = s;
    return HTTPD_OK;
}

void httpd_stream_on_close(httpd_stream_t *s, void (*fn)(httpd_stream_t *s, void *user),
                           void *user)
{
    pthread_mutex_lock(&s->lock);
    s->on_close = fn;
    s->on_close_user = user;
    pthread_mutex_unlock(&s->lock);
}

int httpd_stream_write(httpd_stream_t *s, const void *data, size_t len)
{
    struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
    return stream_putv(s, &iov, 1);
}

int httpd_stream_sse_event(httpd_stream_t *s, const char *event, const char *text)
{
    if (atomic_load(&s->gone))
        return HTTPD_ECLOSED;
    if (!text)
        text = "";
    if (event && strpbrk(event, "\r\n"))
        return HTTPD_EINVAL;
    if (!strpbrk(text, "\r\n")) {
        struct iovec iov[5];
        int n = 0;
        if (event) {
            iov[n++] = (struct iovec){ .iov_base = "event: ", .iov_len = 7 };
            iov[n++] = (struct iovec){ .iov_base = (void *)event, .iov_len = strlen(event) };
            iov[n++] = (struct iovec){ .iov_base = "\ndata: ", .iov_len = 7 };
        } else {
            iov[n++] = (struct iovec){ .iov_base = "data: ", .iov_len = 6 };
        }
        iov[n++] = (struct iovec){ .iov_base = (void *)text, .iov_len = strlen(text) };
        iov[n++] = (struct iovec){ .iov_base = "\n\n", .iov_len = 2 };
        return stream_putv(s, iov, n);
    }
    /* Several lines: one "data:" line each (CR, LF and CRLF end lines). */
    buf_t b;
    buf_init(&b, s->qmax + 64);
    int rc = BUF_OK;
    if (event)
        rc = buf_printf(&b, "event: %s\n", event);
    const char *p = text;
    while (rc == BUF_OK) {
        size_t n = strcspn(p, "\r\n");
        rc = buf_puts(&b, "data: ");
        if (rc == BUF_OK)
            rc = buf_append(&b, p, n);
        if (rc == BUF_OK)
            rc = buf_puts(&b, "\n");
        p += n;
        if (!*p)
            break;
        p += (p[0] == '\r' && p[1] == '\n') ? 2 : 1;
    }
    if (rc == BUF_OK)
        rc = buf_puts(&b, "\n");
    int out;
    if (rc == BUF_ETOOBIG)
        out = HTTPD_EFULL;
    else if (rc != BUF_OK)
        out = HTTPD_ENOMEM;
    else
        out = httpd_stream_write(s, b.data, b.len);
    buf_cleanup(&b);
    return out;
}

int httpd_stream_sse(httpd_stream_t *s, const char *text)
{
    return httpd_stream_sse_event(s, NULL, text);
}

int httpd_stream_sse_json(httpd_stream_t *s, json_t *json)
{
    if (!json)
        return HTTPD_EINVAL;
    char *text = json_dumps_compact(json);
    json_decref(json);
    if (!text)
        return HTTPD_ENOMEM;
    int rc = httpd_stream_sse(s, text);
    free(text);
    return rc;
}

bool httpd_stream_closed(const httpd_stream_t *s) { return atomic_load(&s->gone); }

size_t httpd_stream_pending(httpd_stream_t *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->qlen;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void httpd_stream_close(httpd_stream_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->producer_closed = true;
    while (s->cb_running && !pthread_equal(s->cb_thread, pthread_self()))
        pthread_cond_wait(&s->cond, &s->lock);
    stream_wake(s);
    pthread_mutex_unlock(&s->lock);
    stream_unref(s);
}

/* ---- uploads ---------------------------------------------------------- */

static bool str_eq_null(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

/* The current part ended. Returns 0 or the callback's refusal. */
static int part_end(httpd_req_t *req)
{
    int rc = 0;
    if (req->in_part && req->route->upload->on_part_end)
        rc = req->route->upload->on_part_end(req);
    req->in_part = false;
    req->cur_field = NULL;
    free(req->part_key);
    free(req->part_file);
    req->part_key = req->part_file = NULL;
    return rc;
}

static enum MHD_Result post_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *filename, const char *content_type,
                                 const char *transfer_encoding, const char *data, uint64_t off,
                                 size_t size)
{
    (void)kind;
    (void)transfer_encoding;
    httpd_req_t *req = cls;
    const httpd_upload_t *up = req->route->upload;
    if (req->cb_failed || req->kept || !key) {
        req->cb_failed = true; /* an answer is decided: no more callbacks */
        return MHD_NO;
    }
    bool fresh = !req->in_part ||
                 (off == 0 && (req->part_bytes > 0 || strcmp(key, req->part_key) != 0 ||
                               !str_eq_null(filename, req->part_file)));
    if (fresh) {
        if (req->in_part && part_end(req) != 0)
            goto refused;
        req->part_key = strdup(key);
        req->part_file = filename ? strdup(filename) : NULL;
        if (!req->part_key || (filename && !req->part_file)) {
            answer_error(req, 500, "Out of memory");
            goto refused;
        }
        req->in_part = true;
        req->part_bytes = 0;
        if (!filename) {
            if (req->nform == MAX_FORM_FIELDS) {
                answer_errorf(req, 413, "Too many form fields (limit %d)", MAX_FORM_FIELDS);
                goto refused;
            }
            form_field_t *f = &req->form[req->nform];
            f->name = strdup(key);
            if (!f->name) {
                answer_error(req, 500, "Out of memory");
                goto refused;
            }
            buf_init(&f->value, FORM_MAX);
            req->nform++;
            req->cur_field = f;
        }
        if (up->on_part_begin(req, key, filename, content_type) != 0)
            goto refused;
    }
    if (size > 0) {
        req->part_bytes += size;
        if (req->cur_field) {
            req->form_bytes += size;
            if (req->form_bytes > FORM_MAX ||
                buf_append(&req->cur_field->value, data, size) != BUF_OK) {
                answer_errorf(req, 413, "Form fields larger than %d bytes", FORM_MAX);
                goto refused;
            }
        }
        if (up->on_part_data(req, data, size) != 0)
            goto refused;
    }
    return MHD_YES;
refused:
    req->cb_failed = true;
    return MHD_NO;
}

/* ---- request lifecycle ------------------------------------------------ */

static void req_free(httpd_req_t *req)
{
    if (!req)
        return;
    /* First the post processor: destroying it flushes a pending
       urlencoded value through post_iter, which must not reach the
       route's callbacks once the request ends (their ctx goes next). */
    if (req->pp) {
        req->cb_failed = true;
        MHD_destroy_post_processor(req->pp);
        req->pp = NULL;
    }
    if (req->ctx_free)
        req->ctx_free(req->ctx);
    if (req->auth_free && req->auth)
        req->auth_free(req->auth);
    if (req->kept)
        MHD_destroy_response(req->kept);
    free(req->part_key);
    free(req->part_file);
    for (int i = 0; i < req->nform; i++) {
        free(req->form[i].name);
        buf_cleanup(&req->form[i].value);
    }
    for (int i = 0; i < req->nhdr; i++) {
        free(req->hname[i]);
        free(req->hval[i]);
    }
    if (req->stream)
        stream_unref(req->stream);
    buf_cleanup(&req->body);
    free(req->allow);
    free(req->pbuf);
    free(req->path);
    free(req);
}

/* Append a method to req->allow unless present. */
static void allow_add(httpd_req_t *req, const char *m)
{
    size_t have = req->allow ? strlen(req->allow) : 0;
    if (req->allow) {
        const char *p = req->allow;
        size_t ml = strlen(m);
        while (*p) {
            size_t n = strcspn(p, ",");
            if (n == ml && strncasecmp(p, m, n) == 0)
                return;
            p += n;
            while (*p == ',' || *p == ' ')
                p++;
        }
    }
    char *a = realloc(req->allow, have + strlen(m) + 3);
    if (!a)
        return;
    if (have)
        strcpy(a + have, ", ");
    else
        a[0] = '\0';
    strcat(a, m);
    req->allow = a;
}

/* The Authorization header, with its length; NULL when absent or when the
 * line held a NUL byte ("Bearer KEY\0junk" must not pass as KEY).
 * libmicrohttpd 0.9.75 cuts a value at a NUL without saying so; it parses
 * header lines in place, ending each at its CR and LF with NUL bytes, so a
 * value followed by anything but (trailing blanks and) those two NULs had
 * a NUL inside it. (A line ended by a bare LF looks the same and is
 * refused too; HTTP client libraries send CRLF.) */
static const char *auth_header(const httpd_req_t *req, size_t *len)
{
    const char *v = NULL;
    size_t n = 0;
    if (MHD_lookup_connection_value_n(req->con, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION,
                                      strlen(MHD_HTTP_HEADER_AUTHORIZATION), &v,
                                      &n) != MHD_YES || !v)
        return NULL;
    if (memchr(v, '\0', n) || v[n] != '\0')
        return NULL;
    size_t i = n + 1;
    while (v[i] == ' ' || v[i] == '\t')
        i++;
    if (v[i] != '\0')
        return NULL;
    *len = n;
    return v;
}

static bool key_ok(const httpd_t *srv, const httpd_req_t *req)
{
    size_t alen = 0;
    const char *auth = auth_header(req, &alen);
    if (!auth || alen < 7 || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    const char *k = auth + 7;
    while (*k == ' ')
        k++;
    size_t kl = strlen(k);
    while (kl > 0 && k[kl - 1] == ' ')
        kl--;
    size_t want = strlen(srv->api_key);
    /* Constant time in the key's contents. */
    unsigned char diff = (unsigned char)(kl != want);
    for (size_t i = 0; i < want; i++)
        diff |= (unsigned char)(srv->api_key[i] ^ (i < kl ? k[i] : 0));
    return diff == 0;
}

/* The authorize callback's answer: 0, or 1000 + its status (msg filled). */
static int authorize(httpd_t *srv, httpd_req_t *req, char *msg, size_t cap)
{
    int st = srv->cfg.authorize(req, srv->user, msg, cap);
    if (!st)
        return 0;
    if (!msg[0])
        snprintf(msg, cap, "%s", st == 401 ? "Sign in first" : "Not allowed");
    return 1000 + st;
}

static void cors_setup(httpd_req_t *req)
{
    httpd_t *srv = req->srv;
    if (!srv->cors)
        return;
    const char *origin = httpd_req_header(req, "Origin");
    if (!origin)
        return;
    if (srv->cors_any) {
        req->cors_origin = "*";
        return;
    }
    for (size_t i = 0; i < srv->n_cors; i++)
        if (strcmp(srv->cors_list[i], origin) == 0) {
            req->cors_origin = origin;
            return;
        }
}

/* Is `name` (len bytes, no port) one this server answers to? IP literals
 * cannot be rebound to another address, so they always pass; names must
 * be localhost, the listen host, or in allowed_hosts. */
static bool host_name_ok(const httpd_t *srv, const char *name, size_t len)
{
    char h[256];
    if (len == 0 || len >= sizeof h)
        return false;
    memcpy(h, name, len);
    h[len] = '\0';
    if (len > 1 && h[len - 1] == '.')   /* "localhost." is "localhost" */
        h[--len] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return true;
    if (strcasecmp(h, "localhost") == 0 ||
        (len > 10 && strcasecmp(h + len - 10, ".localhost") == 0))
        return true;
    if (strcasecmp(h, srv->host) == 0 || (srv->hostname[0] && strcasecmp(h, srv->hostname) == 0))
        return true;
    for (size_t i = 0; i < srv->n_hosts; i++) {
        const char *e = srv->host_list[i];
        size_t el = strlen(e);
        if (e[0] == '.') {
            /* ".example.org": example.org and any name under it */
            if (strcasecmp(h, e + 1) == 0 ||
                (len > el && strcasecmp(h + len - el, e) == 0))
                return true;
        } else if (strcasecmp(h, e) == 0) {
            return true;
        }
    }
    return false;
}

/* Host header check (see allowed_hosts). A request without Host (HTTP/1.0)
 * passes: browsers always send one. */
static bool host_ok(const httpd_req_t *req)
{
    const httpd_t *srv = req->srv;
    if (srv->hosts_any)
        return true;
    const char *h = httpd_req_header(req, MHD_HTTP_HEADER_HOST);
    if (!h)
        return true;
    size_t n = strlen(h);
    if (h[0] == '[') {   /* IPv6 literal, with or without a port */
        const char *end = memchr(h, ']', n);
        if (!end || end == h + 1)
            return false;
        char a[64];
        size_t al = (size_t)(end - h - 1);
        struct in6_addr a6;
        if (al >= sizeof a)
            return false;
        memcpy(a, h + 1, al);
        a[al] = '\0';
        return inet_pton(AF_INET6, a, &a6) == 1 && (end[1] == '\0' || end[1] == ':');
    }
    const char *colon = memchr(h, ':', n);
    if (colon) {
        for (const char *p = colon + 1; *p; p++)
            if (*p < '0' || *p > '9')
                return false;
        n = (size_t)(colon - h);
    }
    return host_name_ok(srv, h, n);
}

/* The authority ("host:port") of an origin "scheme://host:port", or NULL. */
static const char *origin_authority(const char *origin, size_t *len)
{
    const char *p = strstr(origin, "://");
    if (!p)
        return NULL;
    p += 3;
    size_t n = strcspn(p, "/?#");
    if (n == 0)
        return NULL;
    *len = n;
    return p;
}

static bool is_default_port(const char *origin, const char *port)
{
    return (strncasecmp(origin, "http:", 5) == 0 && strcmp(port, "80") == 0) ||
           (strncasecmp(origin, "https:", 6) == 0 && strcmp(port, "443") == 0);
}

/* Does `authority` (from an Origin) name the same host and port as the
 * Host-like header `host`? A port the scheme implies may be left out on
 * either side. */
static bool same_authority(const char *origin, const char *auth, size_t alen, const char *host)
{
    if (!host)
        return false;
    size_t hl = strlen(host);
    if (hl == alen && strncasecmp(auth, host, alen) == 0)
        return true;
    /* "http://h" against "h:80", or "http://h:80" against "h" */
    const char *ac = memrchr(auth, ':', alen), *hc = strrchr(host, ':');
    if (ac && memchr(auth, ']', alen) > (void *)ac)
        ac = NULL;
    if (hc && strchr(host, ']') > hc)
        hc = NULL;
    size_t an = ac ? (size_t)(ac - auth) : alen, hn = hc ? (size_t)(hc - host) : hl;
    if (an != hn || strncasecmp(auth, host, an) != 0)
        return false;
    char port[8];
    if (ac && !hc) {
        size_t pl = alen - an - 1;
        if (pl >= sizeof port)
            return false;
        memcpy(port, ac + 1, pl);
        port[pl] = '\0';
        return is_default_port(origin, port);
    }
    if (hc && !ac)
        return is_default_port(origin, hc + 1);
    return false;
}

/* A state-changing request that a browser made on behalf of a page of
 * another origin, which cors_origins does not allow? Requests from other
 * clients (no Origin, no Sec-Fetch-Site) pass. */
static bool cross_site(const httpd_req_t *req)
{
    const httpd_t *srv = req->srv;
    if (!srv->cfg.same_origin_only || method_is(req->method, "GET") ||
        method_is(req->method, "HEAD") || method_is(req->method, "OPTIONS"))
        return false;
    const char *origin = httpd_req_header(req, "Origin");
    if (origin) {
        if (req->cors_origin)   /* allowed by cors_origins */
            return false;
        size_t alen;
        const char *auth = origin_authority(origin, &alen);
        if (!auth)              /* "null": sandboxed frames, file: pages */
            return true;
        if (same_authority(origin, auth, alen, httpd_req_header(req, MHD_HTTP_HEADER_HOST)))
            return false;
        /* a reverse proxy that rewrote Host says what the browser used */
        const char *fwd = httpd_req_header(req, "X-Forwarded-Host");
        if (fwd) {
            char first[256];
            size_t fl = strcspn(fwd, ", ");
            if (fl < sizeof first) {
                memcpy(first, fwd, fl);
                first[fl] = '\0';
                if (same_authority(origin, auth, alen, first))
                    return false;
            }
        }
        return true;
    }
    /* Without Origin, Fetch Metadata: "same-site" is another port or a
     * subdomain, which is still another origin. */
    const char *sfs = httpd_req_header(req, "Sec-Fetch-Site");
    return sfs && strcasecmp(sfs, "same-origin") != 0 && strcasecmp(sfs, "none") != 0;
}

/* application/json or any +json type, with or without parameters. */
static bool json_content_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strcspn(ct, "; ");
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return true;
    return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
           strncasecmp(ct + n - 5, "+json", 5) == 0;
}

/* Does the request carry a body (declared non-empty, or chunked)? */
static bool has_body(const httpd_req_t *req)
{
    if (req->declared != UINT64_MAX)
        return req->declared > 0;
    return httpd_req_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
}

/* Headers are in: route, check, and prepare for the body. Answers now
 * only what must be answered before the body is read. */
static void req_begin(httpd_req_t *req)
{
    httpd_t *srv = req->srv;
    const route_t *best = NULL;
    bool known = false;
    bool head = method_is(req->method, "HEAD");
    int pending = 0;
    char auth_msg[256] = "";

    watch_mark(req, now_ms()); /* the body's budget; cleared when it is complete */
    cors_setup(req);
    const char *cl = httpd_req_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    req->declared = UINT64_MAX;
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(cl, &end, 10);
        if (errno == 0 && end != cl)
            req->declared = v;
    }
    int best_score = -1;
    for (size_t i = 0; i < srv->n_routes; i++) {
        const route_t *r = &srv->routes[i];
        if (!route_match(r, req->path, NULL))
            continue;
        known = true;
        allow_add(req, r->method);
        if (method_is(r->method, "GET"))
            allow_add(req, "HEAD");
        bool exact = method_is(r->method, req->method);
        if (!exact && !(head && method_is(r->method, "GET")))
            continue;
        /* More literal segments first; an explicit HEAD route before GET. */
        int score = r->score * 2 + (exact ? 1 : 0);
        if (score > best_score) {
            best = r;
            best_score = score;
        }
    }
    if (srv->cors && known)
        allow_add(req, "OPTIONS");

    if (atomic_load(&srv->closing)) {
        pending = 503;
    } else if (!host_ok(req)) {
        pending = 4032;
    } else if (!known) {
        pending = 404;
    } else if (!best && method_is(req->method, "OPTIONS") && srv->cors) {
        req->preflight = true;
        const char *acrm = httpd_req_header(req, "Access-Control-Request-Method");
        if (acrm && httpd_req_header(req, "Origin") && !req->cors_origin)
            pending = 403;
    } else if (!best) {
        pending = 405;
    } else {
        req->route = best;
        if (!route_match(best, req->path, req)) {
            pending = 500;
        } else if (cross_site(req)) {
            pending = 4031;
        } else if (srv->cfg.authorize && !(best->flags & HTTPD_ROUTE_PUBLIC) &&
                   (pending = authorize(srv, req, auth_msg, sizeof auth_msg)) != 0) {
            /* answered below with the callback's status and message */
        } else if (!srv->cfg.authorize && srv->api_key && !(best->flags & HTTPD_ROUTE_PUBLIC) &&
                   !key_ok(srv, req)) {
            pending = 401;
        } else if (srv->cfg.json_bodies && !(best->flags & HTTPD_ROUTE_UPLOAD) && has_body(req) &&
                   !json_content_type(httpd_req_header(req, MHD_HTTP_HEADER_CONTENT_TYPE))) {
            pending = 4151;
        }
    }
    bool upload = !pending && req->route && (req->route->flags & HTTPD_ROUTE_UPLOAD);
    req->limit = upload ? srv->cfg.max_upload : srv->cfg.max_body;
    req->mode = pending || req->preflight ? BODY_DISCARD : upload ? BODY_UPLOAD : BODY_BUFFER;
    buf_init(&req->body, req->limit);

    if (!pending && upload) {
        req->pp = MHD_create_post_processor(req->con, PP_BUFFER, post_iter, req);
        if (!req->pp) {
            const char *ct = httpd_req_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
            pending = ct && strncasecmp(ct, "multipart/form-data", 19) == 0 ? 400 : 415;
            req->mode = BODY_DISCARD;
            req->limit = srv->cfg.max_body;
        }
    }

    /* A declared body over the limit is refused before it is read (MHD
     * then closes the connection); so is a failed request's big body. */
    bool refuse_now = req->declared != UINT64_MAX && req->declared > req->limit;
    if (!pending && !refuse_now) {
        req->phase = PHASE_BODY;
        return;
    }
    req->phase = refuse_now ? PHASE_FIRST : PHASE_BODY;
    if (!pending)
        pending = 413;
    switch (pending) {
    case 503: answer_error(req, 503, "Server is shutting down"); break;
    case 404: answer_errorf(req, 404, "Not found: %.200s", req->path); break;
    case 405:
        answer_errorf(req, 405, "Method %.16s not allowed for %.200s", req->method, req->path);
        break;
    case 403: answer_error(req, 403, "CORS origin not allowed"); break;
    case 4032: {
        const char *h = httpd_req_header(req, MHD_HTTP_HEADER_HOST);
        answer_errorf(req, 403,
                      "Host '%.100s' is not a name this server answers to; add it to the "
                      "allowed hosts setting",
                      h ? h : "");
        break;
    }
    case 4031: {
        const char *o = httpd_req_header(req, "Origin");
        answer_errorf(req, 403,
                      "Cross-site request refused: origin '%.100s' is not allowed (add it to "
                      "the CORS origins setting to allow it)",
                      o ? o : "(another site)");
        break;
    }
    case 4151:
        answer_error(req, 415, "Expected Content-Type: application/json");
        break;
    case 401: answer_error(req, 401, "Invalid or missing API key"); break;
    case 400: answer_error(req, 400, "Malformed multipart body: no boundary"); break;
    case 415:
        answer_error(req, 415, "Expected a multipart/form-data or urlencoded body");
        break;
    case 413:
        answer_errorf(req, 413, "Request body too large (limit %zu bytes)", req->limit);
        break;
    default:
        if (pending > 1000 && pending < 1600)   /* the authorize callback's */
            answer_error(req, pending - 1000, auth_msg);
        else
            answer_error(req, 500, "Internal error");
        break;
    }
    req->phase = PHASE_BODY;
}

/* How much more of a chunked body is read (and discarded) after it was
 * refused, so that a client that sends it all still gets the answer: as
 * much again as the limit, at least DRAIN_SLACK. A client that sends
 * more than that is cut off. */
static uint64_t drain_allowance(const httpd_req_t *req)
{
    return req->limit > DRAIN_SLACK ? req->limit : DRAIN_SLACK;
}

/* A piece of the body. Returns MHD_NO to drop the connection. */
static enum MHD_Result req_feed(httpd_req_t *req, const char *data, size_t n)
{
    req->seen += n;
    stat_add(&req->srv->st.bytes_in, n);
    watch_body(req, n);
    if (req->mode == BODY_DRAIN)
        return req->seen > req->drain_cap ? MHD_NO : MHD_YES;
    if (req->replied)
        return MHD_YES;
    if (req->seen > req->limit) {
        /* Only a chunked body gets here (MHD enforces Content-Length). */
        if (!req->kept)
            answer_errorf(req, 413, "Request body too large (limit %zu bytes)", req->limit);
        req->mode = BODY_DRAIN;
        req->drain_cap = req->seen + drain_allowance(req);
        return MHD_YES;
    }
    switch (req->mode) {
    case BODY_BUFFER:
        if (buf_append(&req->body, data, n) != BUF_OK) {
            answer_error(req, 500, "Out of memory");
            req->mode = BODY_DISCARD;
        }
        break;
    case BODY_UPLOAD:
        if (MHD_post_process(req->pp, data, n) != MHD_YES) {
            if (!req->kept)
                answer_error(req, 400,
                             req->cb_failed ? "Upload refused" : "Malformed multipart body");
            req->mode = BODY_DRAIN;
            req->drain_cap =
                req->declared != UINT64_MAX ? req->declared : req->seen + drain_allowance(req);
        }
        break;
    default: break;
    }
    return MHD_YES;
}

static void preflight_answer(httpd_req_t *req)
{
    const char *acrh = httpd_req_header(req, "Access-Control-Request-Headers");
    if (req->cors_origin) {
        httpd_reply_header(req, "Access-Control-Allow-Methods", req->allow ? req->allow : "");
        httpd_reply_header(req, "Access-Control-Allow-Headers",
                           acrh ? acrh : "Authorization, Content-Type");
        httpd_reply_header(req, "Access-Control-Max-Age", "600");
    }
    httpd_reply_header(req, "Allow", req->allow ? req->allow : "");
    answer_bytes(req, 204, NULL, "", 0, MHD_RESPMEM_PERSISTENT);
}

/* The body is complete: send the kept answer or run the handler. */
static void req_finish(httpd_req_t *req)
{
    if (req->mode == BODY_UPLOAD && !req->kept) {
        enum MHD_Result ok = MHD_destroy_post_processor(req->pp);
        req->pp = NULL;
        if (req->cb_failed) {
            if (!req->kept)
                answer_error(req, 400, "Upload refused");
        } else if (ok != MHD_YES) {
            answer_error(req, 400, "Malformed multipart body");
        } else if (part_end(req) != 0 && !req->kept) {
            answer_error(req, 400, "Upload refused");
        }
    }
    req->phase = PHASE_FINAL;
    if (req->kept) {
        struct MHD_Response *resp = req->kept;
        req->kept = NULL;
        if (MHD_queue_response(req->con, (unsigned)req->kept_status, resp) == MHD_YES) {
            req->replied = true;
            stat_add(&req->srv->st.bytes_out, req->bytes_out);
        }
        MHD_destroy_response(resp);
        return;
    }
    if (req->replied)
        return;
    if (req->preflight) {
        preflight_answer(req);
        return;
    }
    if (!req->route || (req->mode != BODY_BUFFER && req->mode != BODY_UPLOAD)) {
        /* The body was refused but no answer could be made (memory). */
        answer_error(req, 500, "Internal error");
        return;
    }
    /* The client has sent its request and now waits for us: a handler may
     * take longer than the idle timeout (a long prefill, a model start).
     * The timeout applies again, from now, to sending the answer. */
    MHD_set_connection_option(req->con, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    req->route->handler(req, req->srv->user);
    MHD_set_connection_option(req->con, MHD_CONNECTION_OPTION_TIMEOUT, req->srv->cfg.timeout_s);
    if (!req->replied) {
        log_error("httpd: handler for %s %s did not answer", req->method, req->route->pattern);
        answer_error(req, 500, "Internal error: no response");
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    httpd_t *srv = cls;
    httpd_req_t *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->srv = srv;
        req->con = con;
        req->method = method;
        req->t0 = now_sec();
        req->path = strdup(url ? url : "/");
        if (!req->path) {
            free(req);
            return MHD_NO;
        }
        *con_cls = req;
        req_begin(req);
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return req_feed(req, upload_data, n);
    }
    watch_mark(req, 0); /* the body is complete: the handler is not timed */
    if (!req->replied)
        req_finish(req);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)con;
    httpd_t *srv = cls;
    httpd_req_t *req = *con_cls;
    if (!req)
        return;
    *con_cls = NULL;
    int status = req->replied ? req->status : 0;
    uint64_t bytes = req->bytes_out;
    bool client_left = toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT;
    if (req->stream) {
        pthread_mutex_lock(&req->stream->lock);
        bytes = req->stream->sent;
        if (atomic_load(&req->stream->gone) && !req->stream->shutdown)
            client_left = true;
        pthread_mutex_unlock(&req->stream->lock);
        stat_add(&srv->st.bytes_out, bytes);
    }
    watch_mark(req, now_ms());
    stat_add(&srv->st.requests, 1);
    int cls_i = status / 100;
    stat_add(&srv->st.status[cls_i >= 1 && cls_i <= 5 ? cls_i : 0], 1);

    double ms = (now_sec() - req->t0) * 1000.0;
    log_level_t lvl = srv->cfg.access_log_level;
    if (req->route && (req->route->flags & HTTPD_ROUTE_QUIET))
        lvl = LOG_DEBUG;
    const char *how = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? ""
                      : client_left ? " (client gone)"
                      : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? " (shutdown)"
                      : toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? " (timeout)"
                                                                      : " (aborted)";
    if (status)
        log_msg(lvl, "%s %.200s %d %lluB %.1fms%s%s", req->method, req->path, status,
                (unsigned long long)bytes, ms, req->stream ? " stream" : "", how);
    else
        log_msg(lvl, "%s %.200s - %lluB %.1fms%s", req->method, req->path,
                (unsigned long long)bytes, ms, how);
    req_free(req);
}

static void on_connection(void *cls, struct MHD_Connection *con, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    httpd_t *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        stat_add(&srv->st.connections_open, 1);
        if (!srv->reaper_started)
            return;
        conn_watch_t *w = calloc(1, sizeof *w);
        int fd = connection_fd(con);
        if (!w || fd < 0 || (w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
            free(w);   /* no deadline for this one; the idle timeout still holds */
            return;
        }
        w->since_ms = now_ms();
        pthread_mutex_lock(&srv->wlock);
        w->next = srv->watch;
        if (srv->watch)
            srv->watch->prev = w;
        srv->watch = w;
        srv->nwatch++;
        if (srv->nwatch > srv->cfg.max_connections)
            shed_one(srv, w);
        pthread_mutex_unlock(&srv->wlock);
        *socket_context = w;
        return;
    }
    stat_sub(&srv->st.connections_open, 1);
    conn_watch_t *w = *socket_context;
    if (!w)
        return;
    *socket_context = NULL;
    pthread_mutex_lock(&srv->wlock);
    if (w->prev)
        w->prev->next = w->next;
    else
        srv->watch = w->next;
    if (w->next)
        w->next->prev = w->prev;
    srv->nwatch--;
    pthread_mutex_unlock(&srv->wlock);
    close(w->fd);
    free(w);
}

/* The room MHD keeps above max_connections for new connections that shed
 * old ones (see conn_watch_t). */
static unsigned shed_reserve(unsigned max_connections)
{
    unsigned r = max_connections / 8;
    return r < 8 ? 8 : r > 256 ? 256 : r;
}

/* Over max_connections (wlock held): close the watched connection with the
 * oldest budget, the one that has waited or trickled longest; fresh, the
 * new connection, is only chosen when no other is waiting for a request. */
static void shed_one(httpd_t *srv, conn_watch_t *fresh)
{
    conn_watch_t *victim = NULL;
    for (conn_watch_t *w = srv->watch; w; w = w->next)
        if (w != fresh && w->since_ms && (!victim || w->since_ms < victim->since_ms))
            victim = w;
    if (!victim)
        victim = fresh;
    shutdown(victim->fd, SHUT_RDWR);
    victim->since_ms = 0;
    stat_add(&srv->st.connections_shed, 1);
}

/* The budget of the request's connection starts now (since), or it is not
 * watched (0). */
static void watch_mark(httpd_req_t *req, int64_t since)
{
    httpd_t *srv = req->srv;
    if (!req->watch) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(req->con, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        req->watch = ci ? ci->socket_context : NULL;
        if (!req->watch)
            return;
    }
    pthread_mutex_lock(&srv->wlock);
    req->watch->since_ms = since;
    pthread_mutex_unlock(&srv->wlock);
}

/* n body bytes arrived: they earn their time, up to the present. */
static void watch_body(httpd_req_t *req, size_t n)
{
    httpd_t *srv = req->srv;
    conn_watch_t *w = req->watch;
    if (!w)
        return;
    int64_t earned = (int64_t)((uint64_t)n * 1000 / MIN_BODY_RATE);
    int64_t now = now_ms();
    pthread_mutex_lock(&srv->wlock);
    if (w->since_ms) {
        w->since_ms += earned;
        if (w->since_ms > now)
            w->since_ms = now;
    }
    pthread_mutex_unlock(&srv->wlock);
}

static void *reaper_main(void *arg)
{
    httpd_t *srv = arg;
    int64_t limit = (int64_t)srv->cfg.timeout_s * 1000;
    pthread_mutex_lock(&srv->wlock);
    while (!srv->reaper_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&srv->wcond, &srv->wlock, &ts);
        int64_t now = now_ms();
        unsigned cut = 0;
        for (conn_watch_t *w = srv->watch; w; w = w->next)
            if (w->since_ms && now - w->since_ms > limit) {
                shutdown(w->fd, SHUT_RDWR);
                w->since_ms = 0;
                cut++;
            }
        if (cut) {
            stat_add(&srv->st.connections_cut, cut);
            log_debug("httpd: closed %u connection(s) whose request took over %u s (headers) "
                      "or came slower than %d bytes/s (body)",
                      cut, srv->cfg.timeout_s, MIN_BODY_RATE);
        }
    }
    pthread_mutex_unlock(&srv->wlock);
    return NULL;
}

/* ---- server ----------------------------------------------------------- */

static void srv_free(httpd_t *srv)
{
    if (srv->reaper_started) {
        pthread_mutex_lock(&srv->wlock);
        srv->reaper_stop = true;
        pthread_cond_signal(&srv->wcond);
        pthread_mutex_unlock(&srv->wlock);
        pthread_join(srv->reaper, NULL);
    }
    for (size_t i = 0; i < srv->n_routes; i++)
        route_cleanup(&srv->routes[i]);
    free(srv->routes);
    for (size_t i = 0; i < srv->n_cors; i++)
        free(srv->cors_list[i]);
    free(srv->cors_list);
    for (size_t i = 0; i < srv->n_hosts; i++)
        free(srv->host_list[i]);
    free(srv->host_list);
    free(srv->hosts);
    free(srv->host);
    free(srv->api_key);
    free(srv->cors);
    pthread_mutex_destroy(&srv->lock);
    pthread_mutex_destroy(&srv->wlock);
    pthread_cond_destroy(&srv->wcond);
    free(srv);
}

/* Split a comma- or space-separated setting into its entries; "*" sets
 * *any instead. */
static int list_parse(const char *p, char ***list, size_t *n_list, bool *any)
{
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        if (n == 0)
            break;
        if (n == 1 && *p == '*') {
            *any = true;
        } else {
            char **l = realloc(*list, (*n_list + 1) * sizeof *l);
            if (!l)
                return HTTPD_ENOMEM;
            *list = l;
            if (!(l[*n_list] = strndup(p, n)))
                return HTTPD_ENOMEM;
            (*n_list)++;
        }
        p += n;
    }
    return HTTPD_OK;
}

/* Each connection holds a descriptor (and a file may be open for it):
 * raise the soft descriptor limit towards the hard one when the
 * connection limit needs it. */
static void fd_limit_raise(unsigned connections)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)connections * 3 + 256;   /* socket, its watch, a file */
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        log_warn("httpd: cannot raise the open-file limit to %llu: %s",
                 (unsigned long long)rl.rlim_cur, strerror(errno));
}

int httpd_open(const httpd_config_t *cfg, const httpd_route_t *routes, size_t n_routes,
               void *user_data, httpd_t **out)
{
    *out = NULL;
    if (!cfg || (n_routes && !routes) || cfg->port > 65535 || cfg->max_body == 0 ||
        cfg->stream_queue_max == 0)
        return HTTPD_EINVAL;
    httpd_t *srv = calloc(1, sizeof *srv);
    if (!srv)
        return HTTPD_ENOMEM;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_mutex_init(&srv->wlock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->wcond, &ca);
    pthread_condattr_destroy(&ca);
    srv->cfg = *cfg;
    srv->user = user_data;
    int rc = HTTPD_ENOMEM;
    srv->host = strdup(cfg->host && *cfg->host ? cfg->host : "127.0.0.1");
    if (!srv->host)
        goto fail;
    srv->cfg.host = srv->host;
    if (cfg->api_key && *cfg->api_key) {
        if (!(srv->api_key = strdup(cfg->api_key)))
            goto fail;
    }
    srv->cfg.api_key = srv->api_key;
    if (cfg->cors_origins && *cfg->cors_origins) {
        if (!(srv->cors = strdup(cfg->cors_origins)) ||
            list_parse(srv->cors, &srv->cors_list, &srv->n_cors, &srv->cors_any) != HTTPD_OK)
            goto fail;
    }
    srv->cfg.cors_origins = srv->cors;
    if (cfg->allowed_hosts && *cfg->allowed_hosts) {
        if (!(srv->hosts = strdup(cfg->allowed_hosts)) ||
            list_parse(srv->hosts, &srv->host_list, &srv->n_hosts, &srv->hosts_any) != HTTPD_OK)
            goto fail;
    }
    srv->cfg.allowed_hosts = srv->hosts;
    if (!httpd_host_is_loopback(srv->host) && gethostname(srv->hostname, sizeof srv->hostname) != 0)
        srv->hostname[0] = '\0';
    srv->hostname[sizeof srv->hostname - 1] = '\0';
    fd_limit_raise(cfg->max_connections + shed_reserve(cfg->max_connections));

    srv->routes = calloc(n_routes ? n_routes : 1, sizeof *srv->routes);
    if (!srv->routes)
        goto fail;
    for (size_t i = 0; i < n_routes; i++) {
        rc = route_compile(&srv->routes[i], &routes[i]);
        srv->n_routes = i + 1;
        if (rc != HTTPD_OK)
            goto fail;
        for (size_t j = 0; j < i; j++)
            if (method_is(srv->routes[j].method, srv->routes[i].method) &&
                strcmp(srv->routes[j].pattern, srv->routes[i].pattern) == 0) {
                rc = HTTPD_EINVAL;
                goto fail;
            }
    }

    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE };
    char port[16];
    snprintf(port, sizeof port, "%u", cfg->port);
    struct addrinfo *ai = NULL;
    if (getaddrinfo(srv->host, port, &hints, &ai) != 0 || !ai) {
        log_error("httpd: cannot resolve %s", srv->host);
        rc = HTTPD_EBIND;
        goto fail;
    }
    if (cfg->timeout_s) {
        if (pthread_create(&srv->reaper, NULL, reaper_main, srv) != 0) {
            freeaddrinfo(ai);
            rc = HTTPD_ENOMEM;
            goto fail;
        }
        srv->reaper_started = true;
    }
    /* with the reaper, connections past max_connections shed old ones */
    unsigned mhd_limit = cfg->max_connections;
    if (srv->reaper_started)
        mhd_limit += shed_reserve(cfg->max_connections);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_DUAL_STACK; /* "::" also takes IPv4 clients */
    srv->mhd = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR,
        ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->max_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout_s, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_EXTERNAL_LOGGER, log_mhd, srv, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(64 * 1024), MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->mhd) {
        log_error("httpd: cannot listen on %s:%u", srv->host, cfg->port);
        rc = HTTPD_EBIND;
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : cfg->port;
    log_debug("httpd: listening on %s:%u", srv->host, srv->port);
    *out = srv;
    return HTTPD_OK;
fail:
    srv_free(srv);
    return rc;
}

bool httpd_host_is_loopback(const char *host)
{
    if (!host || !*host || strcasecmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

unsigned httpd_port(const httpd_t *srv) { return srv->port; }

void httpd_close(httpd_t *srv)
{
    if (!srv)
        return;
    pthread_mutex_lock(&srv->lock);
    atomic_store(&srv->closing, true);
    for (httpd_stream_t *s = srv->streams; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        s->shutdown = true;
        atomic_store(&s->gone, true);
        stream_wake(s);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&srv->lock);
    MHD_stop_daemon(srv->mhd);
    srv_free(srv);
}

void httpd_stats(const httpd_t *srv, httpd_stats_t *out)
{
    const uint64_t *src = (const uint64_t *)&srv->st;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof *out / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}
