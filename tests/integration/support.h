/* support.h — helpers for integration tests: real programs over real HTTP.
 *
 * A test starts the programs it needs (kvchat-engine, kvchat) on free
 * loopback ports with their own temporary directories, talks to them with
 * libcurl, and stops them at the end. Every helper aborts the test (cmocka
 * fail) on an unexpected failure, so test bodies read as the scenario.
 */
#ifndef KVCHAT_TESTS_SUPPORT_H
#define KVCHAT_TESTS_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/json.h"

typedef struct {
    pid_t pid;
    int port;
    char log_path[512];
} proc_t;

/* A fresh directory under /tmp, removed by tmpdir_remove(). */
void tmpdir_make(char *out, size_t cap);
void tmpdir_remove(const char *dir);

/* A port nobody listens on right now. */
int free_port(void);

/* Start `exe` with argv (NULL-terminated, without the program name) plus
 * "--port N", stdout+stderr to log_path; wait until GET /health answers 200
 * (up to timeout_s). Fails the test if it does not. */
void proc_start(proc_t *p, const char *exe, const char *const *argv, const char *log_path,
                int timeout_s);
/* As proc_start but returns false instead of failing when not healthy. */
bool proc_try_start(proc_t *p, const char *exe, const char *const *argv, const char *log_path,
                    int timeout_s);
/* Kill every process started by proc_start that was not stopped (runs at
 * exit too). */
void proc_kill_all(void);
/* SIGTERM, wait up to 20 s, then SIGKILL. Returns the exit status. */
int proc_stop(proc_t *p);
/* Whether the log contains `needle`. */
bool log_contains(const char *log_path, const char *needle);

typedef struct {
    long status;
    char *body;
    size_t len;
    json_t *json;      /* parsed body, or NULL if not JSON */
    char set_cookie[512]; /* http()/http_try(): the "name=value" of the answer's
                             last Set-Cookie header, "" when none */
} resp_t;

/* Send "Authorization: Bearer <key>" with every later http()/http_try()
 * request (NULL or "": none). */
void http_set_bearer(const char *key);
/* Send "Cookie: <cookie>" ("kvchat_session=...") with every later http(),
 * http_try(), http_upload*() and http_sse() request (NULL or "": none,
 * the default). */
void http_set_cookie(const char *cookie);
/* One request. body may be NULL; a body is sent as application/json.
 * Returns false on a transport error (connection refused, ...). */
bool http_try(int port, const char *method, const char *path, const char *body, resp_t *out);
/* As http_try, failing the test on a transport error. */
void http(int port, const char *method, const char *path, const char *body, resp_t *out);
void resp_free(resp_t *r);

/* POST a multipart upload of file_path as field "file" named `filename`.
 * Extra headers (e.g. "Accept: text/event-stream") may be NULL. */
void http_upload(int port, const char *path, const char *file_path, const char *filename,
                 resp_t *out);

/* A multipart POST of n files in fields named `field` (file_paths[i] sent
 * as filenames[i]), plus one plain field form_name=form_value when
 * form_name is not NULL. */
void http_upload_many(int port, const char *path, const char *field,
                      const char *const *file_paths, const char *const *filenames, size_t n,
                      const char *form_name, const char *form_value, resp_t *out);

/* Streams a POST and calls cb with each SSE "data:" payload; cb returns
 * true to go on, false to hang up at once. Returns the HTTP status. */
typedef bool (*sse_fn)(const char *data, void *ud);
long http_sse(int port, const char *path, const char *body, sse_fn cb, void *ud);

/* json_pack / json_dumps shorthand: serialize and decref. Caller frees. */
char *json_take_dump(json_t *j);

/* Navigate parsed JSON by a path like "choices.0.message.content". */
json_t *jpath(json_t *root, const char *path);
const char *jstr(json_t *root, const char *path);
long long jint(json_t *root, const char *path);

/* Milliseconds since some fixed point. */
double now_ms(void);

/* A TCP connection to 127.0.0.1:port from the loopback address `from`
 * ("127.0.0.2"; NULL: any). Fails the test when it cannot connect. */
int tcp_connect_from(int port, const char *from);
/* Is the server's end of fd closed (EOF or reset) within ms? */
bool tcp_closed_within(int fd, int ms);

/* How many entries the kvchat-engine on `port` (with API key `key`) has
 * in its KV cache (GET /v1/cache); fails the test on an error. */
int engine_cache_count(int port, const char *key);

/* Wait (at most 60 s) until kvchat on `port` reports its model server
 * `want` ("running", "stopped") in GET /api/v1/model/status. */
void app_wait_model(int port, const char *want);

#endif
