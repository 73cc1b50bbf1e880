/* bench_http.h — HTTP for the benchmark programs: a free port, plain
 * requests, and OpenAI-style streamed chats timed at the client. */
#ifndef KVCHAT_BENCH_HTTP_H
#define KVCHAT_BENCH_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

/* A TCP port on 127.0.0.1 free right now; exits the program on failure. */
int bench_free_port(void);

/* A request to 127.0.0.1:port (JSON body or NULL; bearer key or NULL).
 * Returns the HTTP status (0 on a transport error); the body in *out
 * (malloc'd, caller frees) when out is not NULL. */
long bench_request(int port, const char *method, const char *path, const char *body,
                   const char *bearer, char **out);
/* bench_request from the local address `from` ("127.0.0.9"; NULL: any). */
long bench_request_from(int port, const char *from, const char *method, const char *path,
                        const char *body, const char *bearer, char **out);

/* A server the benchmark started: its own process group, output to log. */
typedef struct {
    pid_t pid;
    int port;       /* set before bench_proc_start */
    char log[400];
} bench_proc_t;

/* Start argv (its program at argv[0]) and wait until GET `health` on
 * p->port answers 200; exits the program when it dies or takes 600 s. */
void bench_proc_start(bench_proc_t *p, const char *const *argv, const char *log,
                      const char *health);
/* SIGTERM, then after 10 s SIGKILL to its group; reaped. */
void bench_proc_stop(bench_proc_t *p);

/* What a streamed answer looked like at the client. */
typedef struct {
    double t0, t_first, t_last;   /* request sent, first and last content */
    int chunks;                   /* content pieces */
    int predicted_n, cache_n, prompt_n;   /* from the final timings */
    char cache_tier[16];                  /* the timings' cache_tier, "" if none */
    double predicted_ms;
    double t_done;                /* "data: [DONE]" arrived (0: never) */
    double t_end;                 /* the response ended (transfer complete) */
    double *times;                /* bench_chat_json: arrival of each content piece */
    int times_cap;                /* (times[0..min(chunks, times_cap)) are set) */
    const atomic_bool *stop;      /* bench_chat_json: hang up once it is true */
    char line[1 << 16];
    unsigned len;
} bench_stream_t;

/* POST /v1/chat/completions, streamed: [system (if not NULL), user], at
 * most max_tokens, greedy, ignore_eos, cache_prompt as given. Returns the
 * time to the first content in ms, or -1 on failure (*st filled). */
double bench_chat(int port, const char *bearer, const char *system, const char *question,
                  int max_tokens, bool cache_prompt, bench_stream_t *st);

/* POST /v1/chat/completions with `body` as given (a JSON object that asks
 * for a stream). When times is not NULL, times[k] gets the arrival time
 * (bench_now_ms) of content piece k for k < cap; the array stays the
 * caller's. When stop is not NULL the client hangs up at the first data
 * after *stop became true (the answer then counts as failed). Returns the
 * time to the first content in ms, or -1 on failure (*st filled as far as
 * the answer went). */
double bench_chat_json(int port, const char *bearer, const char *body, double *times, int cap,
                       const atomic_bool *stop, bench_stream_t *st);

#endif
