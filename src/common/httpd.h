/* httpd.h — the HTTP server layer shared by kvchat-engine and kvchat.
 *
 * A small framework over libmicrohttpd: routes are data (a table of
 * method, pattern, handler, flags), request bodies are read completely and
 * within a limit before the handler runs, replies are JSON / text / files /
 * embedded bytes, errors come in one of two JSON shapes, and a handler may
 * turn its reply into a stream that other threads write to (SSE).
 *
 * Threading model. The server runs libmicrohttpd with one thread per
 * connection (plus one listening thread). Everything that concerns one
 * connection — handler, upload callbacks, stream output — runs on that
 * connection's thread (on_close too, with one exception: see Streams), so:
 *   - handlers MAY block (a database query, a call to another server, a
 *     wait for a generation result); only their own connection waits;
 *   - an idle keep-alive connection or an open stream costs one parked
 *     thread (poll()), no CPU;
 *   - httpd_close() waits for running handlers to return: a handler that
 *     waits for a long time should poll httpd_req_gone().
 * (A thread pool would park idle streams with MHD_suspend_connection();
 * with a thread per connection a stream's output simply waits in poll() on
 * its own thread, which also sees the client's socket close at once.)
 *
 * Connections. Each has a thread; max_per_ip bounds those of one client
 * address (over it, a new connection is closed at once); timeout_s closes
 * the ones that stall while sending a request or reading an answer, those
 * whose headers take longer than that, and those whose body arrives
 * slower than 1 KiB/s on average (after timeout_s of slack). When
 * max_connections are open, a new connection closes the one that has
 * waited longest for its request (an idle keep-alive or a trickling
 * client) instead of being refused; a running handler or an answer being
 * sent is never closed for it. So idle or slow clients cannot lock the
 * others out. (With timeout_s 0, none of this: max_connections is a hard
 * limit.)
 *
 * Who may ask. Before a handler runs: the Host header must name this
 * server (allowed_hosts: a page whose name was rebound to 127.0.0.1 is
 * refused); a state-changing request from a browser must come from this
 * origin or an allowed one (same_origin_only, cors_origins); a JSON body
 * must say so (json_bodies: a cross-site "simple" text/plain POST is
 * refused even from a browser that sends no Origin); the API key, when
 * set, must match exactly (a header with a NUL byte never does).
 *
 * Limits. A request body over max_body (max_upload on upload routes) is
 * answered 413: at once when Content-Length declares it, before any of it
 * is read; for a chunked body when the limit is crossed: the rest is
 * then read and discarded, up to as much again as the limit (at least 1
 * MiB), so that the client reads the 413; beyond that the connection is
 * dropped. Bodies are
 * never held beyond the limit; upload bodies are never held at all.
 *
 * Replies. A handler answers exactly once with one httpd_reply_*() call or
 * httpd_stream_open(). A handler that returns without answering gets a 500.
 * Requests that fail before their handler (404, 405, 401, 413, 415, bad
 * multipart) are answered by the framework in the configured error style.
 *
 * Lifetimes. An httpd_req_t and every string obtained from it are valid
 * only while the handler (or upload callback) runs; do not keep them. A
 * stream outlives its request and is shared by the producer and the
 * connection; see "Streams" below.
 *
 * Every function that returns int returns HTTPD_OK (0) or a negative
 * HTTPD_E* code; httpd_strerror() describes it.
 */
#ifndef KVCHAT_COMMON_HTTPD_H
#define KVCHAT_COMMON_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/json.h"
#include "common/log.h"

enum {
    HTTPD_OK = 0,
    HTTPD_ENOMEM = -1,
    HTTPD_EINVAL = -2,   /* bad argument, configuration or route table */
    HTTPD_EBIND = -3,    /* could not resolve or listen on host:port */
    HTTPD_ESTATE = -4,   /* already answered, or called at the wrong time */
    HTTPD_EFULL = -5,    /* stream queue limit reached; nothing was written */
    HTTPD_ECLOSED = -6,  /* client gone, server closing, or stream ended */
    HTTPD_ENOENT = -7,   /* file not found */
    HTTPD_EIO = -8,      /* file could not be opened or read */
    HTTPD_EBADJSON = -9, /* request body is not a JSON object */
};

/* Static English description of an HTTPD_* code. */
const char *httpd_strerror(int rc);

typedef struct httpd httpd_t;               /* a running server */
typedef struct httpd_req httpd_req_t;       /* one request */
typedef struct httpd_stream httpd_stream_t; /* a streamed reply */

typedef enum {
    /* {"error":{"message":"...","type":"invalid_request_error","code":400}} */
    HTTPD_ERRORS_OPENAI = 0,
    /* {"detail":"..."} (FastAPI's shape) */
    HTTPD_ERRORS_DETAIL = 1,
} httpd_error_style_t;

typedef struct {
    const char *host;            /* numeric address or name; "127.0.0.1" */
    unsigned port;               /* 0 = any free port, see httpd_port() */
    size_t max_body;             /* request body limit, bytes (1 MiB); over: 413 */
    size_t max_upload;           /* body limit of HTTPD_ROUTE_UPLOAD routes (50 MiB) */
    unsigned max_connections;    /* connections kept (512); past it a new one closes the
                                    longest-waiting idle or slow one (with timeout_s) */
    unsigned max_per_ip;         /* simultaneous connections from one client address
                                    (64); more are closed at once; 0 = no limit */
    unsigned timeout_s;          /* a connection that sends nothing for this long while
                                    its headers or body are read, or between keep-alive
                                    requests, or that takes nothing of an answer for this
                                    long, is closed (30); so is one whose request line and
                                    headers are not complete this long after it opened (or
                                    after its previous request), or whose body comes slower
                                    than 1 KiB/s with this much slack. 0 = never. Not applied
                                    while a handler runs or a stream waits for its
                                    producer. */
    const char *allowed_hosts;   /* Host header check, against DNS rebinding. NULL/"":
                                    IP literals, "localhost" (and *.localhost) and the
                                    listen host; else a comma-separated list of names
                                    added to those (".example.org" takes subdomains too);
                                    "*" = any Host. Others: 403. */
    bool same_origin_only;       /* refuse (403) state-changing requests (not GET, HEAD,
                                    OPTIONS) that a browser sent from another origin
                                    (Origin, else Sec-Fetch-Site), unless cors_origins
                                    allows that origin (true) */
    bool json_bodies;            /* a request body on a route that is not an upload route
                                    must be Content-Type: application/json (or +json),
                                    else 415 (true) */
    const char *api_key;         /* NULL/"" = none; else "Authorization: Bearer <key>"
                                    is required except on HTTPD_ROUTE_PUBLIC routes */
    /* NULL = none. Else called for every request to a route without
     * HTTPD_ROUTE_PUBLIC, after the Host and Origin checks and before its
     * body is read (an upload from someone who may not make it is refused
     * before a byte of it is kept), in place of the api_key check (which
     * the callback then does itself if it wants it). Returns 0 to go on,
     * or the HTTP status to answer (401, 403, 429, 503...) with msg as the
     * error's message; it may add reply headers (Retry-After, Set-Cookie)
     * with httpd_reply_header and leave per-request state with
     * httpd_req_set_auth. Runs on the connection's thread; may block
     * briefly (a store lookup). */
    int (*authorize)(httpd_req_t *req, void *user, char *msg, size_t msgcap);
    httpd_error_style_t error_style; /* HTTPD_ERRORS_OPENAI */
    const char *cors_origins;    /* NULL/"" = no CORS headers; "*" = any origin; or a
                                    comma-separated list of exact origins */
    unsigned heartbeat_ms;       /* SSE comment ":\n\n" after this much idle time on a
                                    text/event-stream stream (15000); 0 = never */
    size_t stream_queue_max;     /* per-stream queue limit, bytes (1 MiB) */
    log_level_t access_log_level; /* level of the per-request log line (LOG_INFO);
                                     HTTPD_ROUTE_QUIET routes log at LOG_DEBUG */
} httpd_config_t;

/* The defaults above. Strings in the struct are copied by httpd_open(). */
httpd_config_t httpd_config_default(void);

/* ---- routes ----------------------------------------------------------- */

/* Route flags. */
enum {
    HTTPD_ROUTE_PUBLIC = 1 << 0, /* no API key needed (health, web UI) */
    HTTPD_ROUTE_UPLOAD = 1 << 1, /* multipart body streamed to `upload` callbacks */
    HTTPD_ROUTE_QUIET = 1 << 2,  /* access log at LOG_DEBUG (polled endpoints) */
};

/* A handler answers the request (see "Replies"). `user` is the user_data
 * given to httpd_open(). Runs on the connection's thread; may block. */
typedef void (*httpd_handler_fn)(httpd_req_t *req, void *user);

/* Callbacks of an HTTPD_ROUTE_UPLOAD route. The body (multipart/form-data or
 * application/x-www-form-urlencoded) is parsed while it arrives and never
 * held in memory; the handler runs after the whole body went through these
 * callbacks. Per-request state goes in httpd_req_set_ctx(); the server's
 * user_data is httpd_req_user(req).
 * A callback returns 0 to go on. Any other value refuses the upload: no
 * callback is called again, the rest of the body is drained without being
 * parsed or kept (libmicrohttpd cannot answer in the middle of a body),
 * then the answer the callback made with httpd_reply_*() is sent, or a
 * 400 if it made none; the handler does not run. A callback that answers
 * and returns 0 refuses the upload just the same.
 * Parts with no file name (plain fields) also pass through the callbacks
 * and are in addition kept for httpd_req_form() (64 KiB in all). */
typedef struct {
    /* A part begins. field: the form field name; filename: as the client
     * sent it (NULL for plain fields; never use it as a path);
     * content_type: the part's type or NULL. Required. */
    int (*on_part_begin)(httpd_req_t *req, const char *field, const char *filename,
                         const char *content_type);
    /* The next len > 0 bytes of the current part. Required. */
    int (*on_part_data)(httpd_req_t *req, const char *data, size_t len);
    /* The current part is complete. Optional (NULL). */
    int (*on_part_end)(httpd_req_t *req);
} httpd_upload_t;

/* One row of the routing table.
 * pattern: "/v1/cache/{id}" — a "{name}" segment matches one non-empty path
 * segment and captures it for httpd_req_param(); a last segment "{name*}"
 * matches the rest of the path (slashes included, possibly empty). Among
 * the routes that match a path, the one with the most literal segments
 * wins ("/documents/list" before "/documents/{id}"), then table order.
 * A GET route also answers HEAD. */
typedef struct {
    const char *method;              /* "GET", "POST", "DELETE", ... */
    const char *pattern;
    httpd_handler_fn handler;
    unsigned flags;                  /* HTTPD_ROUTE_* */
    const httpd_upload_t *upload;    /* HTTPD_ROUTE_UPLOAD routes only; must
                                        outlive the server */
} httpd_route_t;

/* ---- server ----------------------------------------------------------- */

/* Start a server listening on cfg->host:cfg->port with `n_routes` routes.
 * The table and the config strings are copied; user_data is passed to
 * every handler and must outlive the server.
 * Returns HTTPD_OK and *out; HTTPD_EINVAL (bad config or pattern, duplicate
 * route, upload route without callbacks), HTTPD_EBIND or HTTPD_ENOMEM with
 * *out = NULL. */
int httpd_open(const httpd_config_t *cfg, const httpd_route_t *routes, size_t n_routes,
               void *user_data, httpd_t **out);

/* True when `host` (a listen address or name) is a loopback one:
 * 127.0.0.0/8, ::1, "localhost". NULL or "" counts as 127.0.0.1. */
bool httpd_host_is_loopback(const char *host);

/* The port actually bound (useful with port 0). */
unsigned httpd_port(const httpd_t *srv);

/* Stop the server and free it. Call once, from a thread that is not a
 * handler or callback of this server. In order: new requests and new streams are
 * refused (503); every open stream is ended (its client gets the end of the
 * response, its producer's writes return HTTPD_ECLOSED, on_close fires);
 * the listening socket and all connections are closed; running handlers are
 * waited for. Producers may still hold streams afterwards: their
 * httpd_stream_* calls stay valid and fail with HTTPD_ECLOSED until they
 * call httpd_stream_close(). Accepts NULL. */
void httpd_close(httpd_t *srv);

/* Counters for /metrics. Statuses are counted per class: status[2] is 2xx,
 * ..., status[5] is 5xx; status[0] counts requests that ended without an
 * answer (client gone). */
typedef struct {
    uint64_t requests;           /* requests completed */
    uint64_t status[6];
    uint64_t connections_open;
    uint64_t streams_open;       /* streams whose connection is still open */
    uint64_t streams_total;
    uint64_t stream_disconnects; /* streams whose client left before the end */
    uint64_t bytes_in;           /* request body bytes read */
    uint64_t bytes_out;          /* response body bytes queued */
    uint64_t connections_cut;    /* closed: headers not complete within timeout_s, or a
                                    body slower than 1 KiB/s after timeout_s of slack */
    uint64_t connections_shed;   /* closed to admit a new one past max_connections */
} httpd_stats_t;

void httpd_stats(const httpd_t *srv, httpd_stats_t *out);

/* ---- request ---------------------------------------------------------- */

const char *httpd_req_method(const httpd_req_t *req);
/* The decoded path, without the query string. */
const char *httpd_req_path(const httpd_req_t *req);
/* The pattern of the matched route ("/v1/cache/{id}"), for logs/metrics. */
const char *httpd_req_route(const httpd_req_t *req);
/* A path capture by name ("id" for "{id}"), or NULL. */
const char *httpd_req_param(const httpd_req_t *req, const char *name);
/* A query argument (decoded), or NULL. "?a" gives "" for "a". */
const char *httpd_req_query(const httpd_req_t *req, const char *name);
/* A request header (case-insensitive name), or NULL. */
const char *httpd_req_header(const httpd_req_t *req, const char *name);
/* The request body: a NUL-terminated copy (the NUL is not counted in
 * *len), "" when there is none. Complete before the handler runs and never
 * more than max_body bytes. Empty on upload routes. len may be NULL. */
const char *httpd_req_body(const httpd_req_t *req, size_t *len);
/* Parse the body as a JSON object (json.h limits: depth, UTF-8, trailing
 * garbage). Returns HTTPD_OK and a new reference in *out (caller decrefs),
 * or HTTPD_EBADJSON with *out = NULL and *errmsg, a message fit for a 400
 * answer owned by the request; HTTPD_ENOMEM. */
int httpd_req_json(httpd_req_t *req, json_t **out, const char **errmsg);
/* A plain field of an upload route's form (see httpd_upload_t), or NULL. */
const char *httpd_req_form(const httpd_req_t *req, const char *name);
/* The user_data given to httpd_open(). */
void *httpd_req_user(const httpd_req_t *req);
/* Attach per-request state. free_fn (may be NULL) is called with ctx when
 * the request ends for any reason (answered, client gone, server closing),
 * so an upload's temporary file can be removed if the handler never ran.
 * Replaces (without freeing) an earlier ctx. */
void httpd_req_set_ctx(httpd_req_t *req, void *ctx, void (*free_fn)(void *ctx));
/* Who the request comes from, as the authorize callback found it: kept
 * apart from the ctx of upload routes, freed (free_fn, may be NULL) when
 * the request ends. NULL when never set. */
void httpd_req_set_auth(httpd_req_t *req, void *auth, void (*free_fn)(void *auth));
void *httpd_req_auth(const httpd_req_t *req);
/* The client's address as text ("127.0.0.1", "::1"), "" when unknown. */
const char *httpd_req_peer(httpd_req_t *req);
void *httpd_req_ctx(const httpd_req_t *req);
/* True if the client has closed its connection or the server is closing.
 * Cheap (one poll(2) with no wait); for handlers that wait a long time. */
bool httpd_req_gone(httpd_req_t *req);

/* ---- replies ---------------------------------------------------------- */

/* Add a header to the answer this request will send (any reply kind,
 * including streams and framework errors sent later). Copies both strings.
 * HTTPD_EINVAL for names/values with CR or LF or beyond 16 headers. */
int httpd_reply_header(httpd_req_t *req, const char *name, const char *value);

/* Answer `status` with `body` serialized compactly as application/json.
 * Steals the reference to body, also on failure. body NULL (for example a
 * failed json_pack) answers 500. */
int httpd_reply_json(httpd_req_t *req, int status, json_t *body);

/* Answer `status` with an error in the configured style; the message is
 * printf-formatted and cut at 4 KiB. Bytes that are not UTF-8 become U+FFFD. */
int httpd_reply_error(httpd_req_t *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Answer with a copy of len bytes of data. content_type NULL means
 * "text/plain; charset=utf-8". */
int httpd_reply_text(httpd_req_t *req, int status, const char *content_type, const void *data,
                     size_t len);

/* Answer with bytes that are not copied and must outlive the server
 * (embedded web assets). cache_control and etag may be NULL; with an etag,
 * a request whose If-None-Match matches it gets 304 with no body. */
int httpd_reply_static(httpd_req_t *req, int status, const char *content_type, const void *data,
                       size_t len, const char *cache_control, const char *etag);

/* Answer with the contents of a regular file (sent with sendfile). Returns
 * HTTPD_ENOENT or HTTPD_EIO without answering, so the caller can answer
 * 404/500 itself. */
int httpd_reply_file(httpd_req_t *req, int status, const char *content_type, const char *path);

/* ---- streams ---------------------------------------------------------- */

/* Streams. A handler calls httpd_stream_open() instead of answering: the
 * answer becomes "200, content_type, chunked body" and the stream is then
 * written from any thread.
 *
 *  1. References: the stream is shared by the producer (the caller of
 *     httpd_stream_open) and the connection. It is freed when both have let
 *     go: the producer by httpd_stream_close(), the connection when the
 *     response ends (all data sent after close, client gone, or server
 *     closing). Never freed inside on_close or any other callback of its
 *     own. The producer must call httpd_stream_close() exactly once, even
 *     after the client is gone or the server closed.
 *  2. Writes never block: they copy into the stream's queue (limit
 *     stream_queue_max) and wake the connection. A write that does not fit
 *     fails with HTTPD_EFULL and writes nothing; the producer decides (wait
 *     and retry, drop, or give up). After the client is gone, or once the
 *     server is closing, every write returns HTTPD_ECLOSED at once.
 *  3. While the queue is empty the connection's thread waits in poll() on
 *     the stream's wake-up fd and the client's socket: a client that closes
 *     its connection is seen at once (not at the next write). On
 *     text/event-stream streams a comment ":\n\n" is sent after
 *     heartbeat_ms of silence, which also finds dead peers that did not
 *     close cleanly.
 *  4. When the connection ends before the producer called
 *     httpd_stream_close() (client gone, server closing, send error),
 *     httpd_stream_closed() becomes true and on_close(stream, user) is
 *     called once, from a server thread (normally the connection's own;
 *     during httpd_close() possibly its caller). on_close must not block
 *     (set a flag, signal a condition variable); it may call any
 *     httpd_stream_* function. It is never called after
 *     httpd_stream_close() has returned; a running on_close is waited for.
 *  5. httpd_stream_close() ends the response after the queued data is sent.
 *     The stream pointer is invalid after it returns.
 */

/* Turn the answer to `req` into a stream. Call from the handler only.
 * Headers: Content-Type: content_type, Cache-Control: no-cache,
 * X-Accel-Buffering: no, plus CORS and httpd_reply_header() ones.
 * Returns HTTPD_OK and *out (the producer's reference); HTTPD_ESTATE if the
 * request was answered already; HTTPD_ECLOSED if the server is closing
 * (then answer with an error); HTTPD_ENOMEM. */
int httpd_stream_open(httpd_req_t *req, const char *content_type, httpd_stream_t **out);

/* Set the disconnect callback (see 4). Set it in the handler, before the
 * stream is handed to another thread. fn NULL removes it. */
void httpd_stream_on_close(httpd_stream_t *s, void (*fn)(httpd_stream_t *s, void *user),
                           void *user);

/* Queue len bytes. HTTPD_OK, HTTPD_EFULL, HTTPD_ECLOSED, HTTPD_ENOMEM. */
int httpd_stream_write(httpd_stream_t *s, const void *data, size_t len);

/* Queue one SSE event "data: <text>\n\n" (one write, all or nothing). A
 * text with newlines becomes several "data:" lines, as SSE requires. */
int httpd_stream_sse(httpd_stream_t *s, const char *text);

/* As httpd_stream_sse() with an "event: <event>" line first (event NULL:
 * none). */
int httpd_stream_sse_event(httpd_stream_t *s, const char *event, const char *text);

/* Serialize `json` compactly and send it as one SSE event. Steals the
 * reference. */
int httpd_stream_sse_json(httpd_stream_t *s, json_t *json);

/* True once the client is gone or the server is closing. Lock-free. */
bool httpd_stream_closed(const httpd_stream_t *s);

/* Bytes queued and not yet handed to the connection. */
size_t httpd_stream_pending(httpd_stream_t *s);

/* The producer lets go (see 1 and 5). Accepts NULL. */
void httpd_stream_close(httpd_stream_t *s);

#endif
