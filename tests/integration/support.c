/* support.c — see support.h. */
#include "support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void tmpdir_make(char *out, size_t cap)
{
    snprintf(out, cap, "/tmp/kvchat-test-XXXXXX");
    if (!mkdtemp(out))
        fail_msg("mkdtemp: %s", strerror(errno));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void tmpdir_remove(const char *dir)
{
    if (getenv("KVCHAT_TEST_KEEP"))   /* keep logs and data for a look */
        return;
    if (dir && strncmp(dir, "/tmp/kvchat-test-", 17) == 0)
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        fail_msg("free_port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

/* Every process started and not yet stopped, so that a failing test (cmocka
 * jumps out of it) leaves nothing running: proc_kill_all() at exit. */
static pid_t g_running[64];

static void track(pid_t pid, bool on)
{
    for (int i = 0; i < 64; i++) {
        if (on && g_running[i] == 0) {
            g_running[i] = pid;
            return;
        }
        if (!on && g_running[i] == pid) {
            g_running[i] = 0;
            return;
        }
    }
}

void proc_kill_all(void)
{
    for (int i = 0; i < 64; i++) {
        if (g_running[i] > 0) {
            kill(-g_running[i], SIGKILL);
            kill(g_running[i], SIGKILL);
            waitpid(g_running[i], NULL, 0);
            g_running[i] = 0;
        }
    }
}

bool proc_try_start(proc_t *p, const char *exe, const char *const *argv, const char *log_path,
                    int timeout_s)
{
    static bool registered;
    if (!registered) {
        atexit(proc_kill_all);
        registered = true;
    }
    memset(p, 0, sizeof *p);
    p->port = free_port();
    snprintf(p->log_path, sizeof p->log_path, "%s", log_path);
    const char *args[64];
    int n = 0;
    args[n++] = exe;
    for (int i = 0; argv[i] && n < 60; i++)
        args[n++] = argv[i];
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    args[n++] = "--port";
    args[n++] = port;
    args[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        /* Die with the test if it crashes. */
        setpgid(0, 0);
        execv(exe, (char *const *)args);
        _exit(127);
    }
    p->pid = pid;
    track(pid, true);
    double deadline = now_ms() + timeout_s * 1000.0;
    while (now_ms() < deadline) {
        resp_t r;
        if (http_try(p->port, "GET", "/health", NULL, &r)) {
            long st = r.status;
            resp_free(&r);
            if (st == 200)
                return true;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            track(pid, false);
            p->pid = 0;
            return false;
        }
        usleep(50 * 1000);
    }
    return false;
}

void proc_start(proc_t *p, const char *exe, const char *const *argv, const char *log_path,
                int timeout_s)
{
    if (!proc_try_start(p, exe, argv, log_path, timeout_s)) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "tail -n 30 %s >&2", log_path);
        if (system(cmd) < 0)
            perror("system");
        proc_stop(p);
        fail_msg("%s did not become healthy (log: %s)", exe, log_path);
    }
}

int proc_stop(proc_t *p)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, SIGTERM);
    int status = 0;
    double deadline = now_ms() + 20000;
    while (now_ms() < deadline) {
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            track(p->pid, false);
            p->pid = 0;
            return status;
        }
        usleep(20 * 1000);
    }
    kill(-p->pid, SIGKILL);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    track(p->pid, false);
    p->pid = 0;
    fail_msg("process did not stop within 20 s of SIGTERM");
    return status;
}

bool log_contains(const char *log_path, const char *needle)
{
    FILE *f = fopen(log_path, "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

typedef struct {
    char *data;
    size_t len;
} sink_t;

static size_t collect(char *p, size_t sz, size_t n, void *ud)
{
    sink_t *s = ud;
    size_t add = sz * n;
    char *d = realloc(s->data, s->len + add + 1);
    if (!d)
        return 0;
    memcpy(d + s->len, p, add);
    s->data = d;
    s->len += add;
    s->data[s->len] = '\0';
    return add;
}

static char g_bearer[256];
static char g_cookie[512];

void http_set_bearer(const char *key)
{
    snprintf(g_bearer, sizeof g_bearer, "%s", key ? key : "");
}

void http_set_cookie(const char *cookie)
{
    snprintf(g_cookie, sizeof g_cookie, "%s", cookie ? cookie : "");
}

/* The Cookie header of http_set_cookie, added to h (unchanged when none). */
static struct curl_slist *add_cookie(struct curl_slist *h)
{
    if (!g_cookie[0])
        return h;
    char line[600];
    snprintf(line, sizeof line, "Cookie: %s", g_cookie);
    return curl_slist_append(h, line);
}

/* Keeps the "name=value" of a Set-Cookie header in resp_t.set_cookie. */
static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    resp_t *r = ud;
    size_t len = sz * n;
    if (len > 12 && strncasecmp(p, "Set-Cookie: ", 12) == 0) {
        size_t v = 0;   /* the header is not NUL-terminated */
        while (12 + v < len && p[12 + v] != ';' && p[12 + v] != '\r' && p[12 + v] != '\n')
            v++;
        snprintf(r->set_cookie, sizeof r->set_cookie, "%.*s", (int)v, p + 12);
    }
    return len;
}

bool http_try(int port, const char *method, const char *path, const char *body, resp_t *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    char url[4096];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    sink_t s = { NULL, 0 };
    struct curl_slist *h = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (g_bearer[0]) {
        char auth[300];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", g_bearer);
        h = curl_slist_append(h, auth);
    }
    h = add_cookie(h);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        free(s.data);
        return false;
    }
    out->body = s.data ? s.data : calloc(1, 1);
    out->len = s.len;
    out->json = json_loadb(out->body, out->len, 0, NULL);
    return true;
}

void http(int port, const char *method, const char *path, const char *body, resp_t *out)
{
    if (!http_try(port, method, path, body, out))
        fail_msg("%s %s: no answer from port %d", method, path, port);
}

void resp_free(resp_t *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

void http_upload(int port, const char *path, const char *file_path, const char *filename,
                 resp_t *out)
{
    http_upload_many(port, path, "file", &file_path, &filename, 1, NULL, NULL, out);
}

void http_upload_many(int port, const char *path, const char *field,
                      const char *const *file_paths, const char *const *filenames, size_t n,
                      const char *form_name, const char *form_value, resp_t *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    char url[4096];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_mime *mime = curl_mime_init(c);
    for (size_t i = 0; i < n; i++) {
        curl_mimepart *part = curl_mime_addpart(mime);
        curl_mime_name(part, field);
        curl_mime_filedata(part, file_paths[i]);
        curl_mime_filename(part, filenames[i]);
    }
    if (form_name) {
        curl_mimepart *part = curl_mime_addpart(mime);
        curl_mime_name(part, form_name);
        curl_mime_data(part, form_value, CURL_ZERO_TERMINATED);
    }
    sink_t s = { NULL, 0 };
    struct curl_slist *h = add_cookie(NULL);
    if (h)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_mime_free(mime);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK && rc != CURLE_SEND_ERROR && !out->status)
        fail_msg("upload to %s failed: %s", path, curl_easy_strerror(rc));
    out->body = s.data ? s.data : calloc(1, 1);
    out->len = s.len;
    out->json = json_loadb(out->body, out->len, 0, NULL);
}

typedef struct {
    sse_fn cb;
    void *ud;
    char *line;
    size_t len;
    bool stop;
} sse_t;

static size_t sse_collect(char *p, size_t sz, size_t n, void *ud)
{
    sse_t *s = ud;
    size_t add = sz * n;
    for (size_t i = 0; i < add && !s->stop; i++) {
        if (p[i] == '\n') {
            if (s->len >= 6 && strncmp(s->line, "data: ", 6) == 0) {
                s->line[s->len] = '\0';
                if (!s->cb(s->line + 6, s->ud))
                    s->stop = true;
            }
            s->len = 0;
            continue;
        }
        char *l = realloc(s->line, s->len + 2);
        if (!l)
            return 0;
        s->line = l;
        s->line[s->len++] = p[i];
    }
    return s->stop ? 0 : add;   /* 0 aborts the transfer: the client hangs up */
}

long http_sse(int port, const char *path, const char *body, sse_fn cb, void *ud)
{
    CURL *c = curl_easy_init();
    char url[4096];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    sse_t s = { cb, ud, NULL, 0, false };
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: text/event-stream");
    h = add_cookie(h);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sse_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(s.line);
    return status;
}

char *json_take_dump(json_t *j)
{
    if (!j)
        fail_msg("json_pack failed");
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

json_t *jpath(json_t *root, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = root;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && cur;
         tok = strtok_r(NULL, ".", &save)) {
        if (json_is_array(cur))
            cur = json_array_get(cur, (size_t)strtoul(tok, NULL, 10));
        else
            cur = json_object_get(cur, tok);
    }
    return cur;
}

const char *jstr(json_t *root, const char *path)
{
    json_t *v = jpath(root, path);
    if (!json_is_string(v))
        fail_msg("%s is not a string", path);
    return json_string_value(v);
}

long long jint(json_t *root, const char *path)
{
    json_t *v = jpath(root, path);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", path);
    return (long long)json_integer_value(v);
}

int tcp_connect_from(int port, const char *from)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (from) {
        struct sockaddr_in src = { .sin_family = AF_INET };
        assert_int_equal(inet_pton(AF_INET, from, &src.sin_addr), 1);
        assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
    }
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

bool tcp_closed_within(int fd, int ms)
{
    double end = now_ms() + ms;
    for (;;) {
        int left = (int)(end - now_ms());
        if (left <= 0)
            return false;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, left) <= 0)
            continue;
        char tmp[512];
        if (recv(fd, tmp, sizeof tmp, 0) <= 0)
            return true;
    }
}

void app_wait_model(int port, const char *want)
{
    double t0 = now_ms();
    for (;;) {
        resp_t r;
        http(port, "GET", "/api/v1/model/status", NULL, &r);
        bool ok = r.json && strcmp(jstr(r.json, "status"), want) == 0;
        resp_free(&r);
        if (ok)
            return;
        if (now_ms() - t0 > 60000)
            fail_msg("the model server did not become %s", want);
        usleep(100 * 1000);
    }
}

int engine_cache_count(int port, const char *key)
{
    resp_t r;
    http_set_bearer(key);
    http(port, "GET", "/v1/cache", NULL, &r);
    http_set_bearer(NULL);
    assert_int_equal(r.status, 200);
    json_t *list = jpath(r.json, "entries");
    int n = (int)json_array_size(json_is_array(list) ? list : r.json);
    resp_free(&r);
    return n;
}
