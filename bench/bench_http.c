/* bench_http.c — see bench_http.h. */
#include "bench_http.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "common/buf.h"
#include "common/json.h"

int bench_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        fprintf(stderr, "bench: no free port: %s\n", strerror(errno));
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

static size_t sink_write(char *p, size_t sz, size_t n, void *ud)
{
    return buf_append(ud, p, sz * n) == BUF_OK ? sz * n : 0;
}

static struct curl_slist *headers(const char *bearer)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (bearer) {
        char auth[600];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
        h = curl_slist_append(h, auth);
    }
    return h;
}

long bench_request(int port, const char *method, const char *path, const char *body,
                   const char *bearer, char **out)
{
    return bench_request_from(port, NULL, method, path, body, bearer, out);
}

long bench_request_from(int port, const char *from, const char *method, const char *path,
                        const char *body, const char *bearer, char **out)
{
    CURL *c = curl_easy_init();
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    buf_t s;
    buf_init(&s, 256u << 20);
    struct curl_slist *h = headers(bearer);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 7200L);
    char iface[80];
    if (from) {
        snprintf(iface, sizeof iface, "host!%s", from);
        curl_easy_setopt(c, CURLOPT_INTERFACE, iface);
    }
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (out)
        *out = buf_steal(&s, NULL);
    else
        buf_cleanup(&s);
    return status;
}

static void on_data_line(bench_stream_t *st, const char *data)
{
    if (strcmp(data, "[DONE]") == 0) {
        st->t_done = bench_now_ms();
        return;
    }
    json_t *j = json_loads(data, 0, NULL);
    if (!j)
        return;
    json_t *content = json_object_get(
        json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta"), "content");
    double t = bench_now_ms();
    if (json_is_string(content) && json_string_length(content) > 0) {
        if (st->t_first == 0)
            st->t_first = t;
        st->t_last = t;
        if (st->times && st->chunks < st->times_cap)
            st->times[st->chunks] = t;
        st->chunks++;
    }
    json_t *tm = json_object_get(j, "timings");
    if (json_is_object(tm)) {
        st->predicted_n = (int)json_integer_value(json_object_get(tm, "predicted_n"));
        st->predicted_ms = json_number_value(json_object_get(tm, "predicted_ms"));
        st->prompt_n = (int)json_integer_value(json_object_get(tm, "prompt_n"));
        st->cache_n = (int)json_integer_value(json_object_get(tm, "cache_n"));
        const char *tier = json_string_value(json_object_get(tm, "cache_tier"));
        snprintf(st->cache_tier, sizeof st->cache_tier, "%s", tier ? tier : "");
    }
    json_decref(j);
}

static size_t stream_write(char *p, size_t sz, size_t n, void *ud)
{
    bench_stream_t *st = ud;
    if (st->stop && atomic_load(st->stop))
        return 0;   /* curl aborts the transfer */
    for (size_t i = 0; i < sz * n; i++) {
        if (p[i] == '\n') {
            st->line[st->len] = '\0';
            if (st->len > 6 && strncmp(st->line, "data: ", 6) == 0)
                on_data_line(st, st->line + 6);
            st->len = 0;
        } else if (st->len + 1 < sizeof st->line) {
            st->line[st->len++] = p[i];
        }
    }
    return sz * n;
}

/* Stream the answer to `text` (a chat request body) into *st, which the
 * caller has zeroed. Returns TTFT in ms or -1. */
static double chat_stream(int port, const char *bearer, const char *text, bench_stream_t *st)
{
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", port);
    struct curl_slist *h = headers(bearer);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, stream_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, st);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 1200L);
    st->t0 = bench_now_ms();
    CURLcode rc = curl_easy_perform(c);
    st->t_end = bench_now_ms();
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || status != 200 || st->t_first == 0)
        return -1;
    return st->t_first - st->t0;
}

double bench_chat(int port, const char *bearer, const char *system, const char *question,
                  int max_tokens, bool cache_prompt, bench_stream_t *st)
{
    json_t *msgs;
    if (system)
        msgs = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content", system, "role",
                         "user", "content", question);
    else
        msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", question);
    json_t *body = json_pack("{s:o, s:b, s:i, s:f, s:b, s:b}", "messages", msgs, "stream", 1,
                             "max_tokens", max_tokens, "temperature", 0.0, "ignore_eos", 1,
                             "cache_prompt", cache_prompt);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    memset(st, 0, sizeof *st);
    double ttft = chat_stream(port, bearer, text, st);
    free(text);
    return ttft;
}

double bench_chat_json(int port, const char *bearer, const char *body, double *times, int cap,
                       const atomic_bool *stop, bench_stream_t *st)
{
    memset(st, 0, sizeof *st);
    st->times = times;
    st->times_cap = times ? cap : 0;
    st->stop = stop;
    return chat_stream(port, bearer, body, st);
}

void bench_proc_start(bench_proc_t *p, const char *const *argv, const char *log,
                      const char *health)
{
    snprintf(p->log, sizeof p->log, "%s", log);
    p->pid = fork();
    if (p->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        setpgid(0, 0);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    double t0 = bench_now_ms();
    while (bench_request(p->port, "GET", health, NULL, NULL, NULL) != 200) {
        const char *why = waitpid(p->pid, NULL, WNOHANG) == p->pid ? "exited during start-up"
                          : bench_now_ms() - t0 > 600000        ? "not up after 600 s"
                                                                 : NULL;
        if (why) {
            fprintf(stderr, "bench: %s %s; see %s\n", argv[0], why, log);
            exit(1);
        }
        usleep(200 * 1000);
    }
}

void bench_proc_stop(bench_proc_t *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGTERM);
    for (int i = 0; i < 100 && waitpid(p->pid, NULL, WNOHANG) == 0; i++)
        usleep(100 * 1000);
    kill(-p->pid, SIGKILL);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}
