/* bench_login.c — whether the time of a failed login tells that a user
 * name exists.
 *
 * One kvchat in accounts mode (no model server), with N_USERS users made
 * through the API. Timed at the client, interleaved so that the machine's
 * noise falls on all alike:
 *   (a) a wrong password for an existing user,
 *   (b) a user name that does not exist,
 *   (c) the right password (the same hashing, plus the new login).
 * Each attempt comes from its own loopback address and names a user tried
 * at most twice, so the login rate limits (per account, per address) never
 * answer instead of the password check. Prints the median and the 90th
 * percentile of each, and the ratio (b)/(a): near 1 means the answer time
 * does not tell an existing name from an unknown one.
 *
 * Usage: kvchat-bench-login --kvchat PATH [--rounds N] [--out FILE (appends)]
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_http.h"
#include "bench_util.h"

#define API "/api/v1"
#define KEY "bench-login-admin-key"
#define N_USERS 24

static double pct(double *v, int n, double p)
{
    double s[512];
    int k = n < 512 ? n : 512;
    memcpy(s, v, (size_t)k * sizeof *v);
    for (int i = 1; i < k; i++)   /* insertion sort: a few dozen values */
        for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
            double t = s[j];
            s[j] = s[j - 1];
            s[j - 1] = t;
        }
    int i = (int)(p * (k - 1) + 0.5);
    return s[i];
}

/* One login from address `from`; its time in ms, the status in *status. */
static double login(int port, const char *from, const char *user, const char *pw, long *status)
{
    char body[256];
    snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"%s\"}", user, pw);
    double t0 = bench_now_ms();
    *status = bench_request_from(port, from, "POST", API "/auth/login", body, NULL, NULL);
    return bench_now_ms() - t0;
}

int main(int argc, char **argv)
{
    const char *kvchat = NULL, *out = NULL;
    int rounds = 2;
    static const struct option longopts[] = {
        { "kvchat", required_argument, NULL, 'k' },
        { "rounds", required_argument, NULL, 'r' },
        { "out", required_argument, NULL, 'o' },
        { NULL, 0, NULL, 0 },
    };
    for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        if (c == 'k')
            kvchat = optarg;
        else if (c == 'r')
            rounds = atoi(optarg);
        else if (c == 'o')
            out = optarg;
        else
            return 2;
    }
    if (!kvchat || rounds < 1 || rounds > 2) {
        fprintf(stderr, "usage: kvchat-bench-login --kvchat PATH [--rounds 1|2] [--out FILE]\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char dir[] = "/tmp/kvchat-bench-login-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "kvchat-bench-login: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    bench_proc_t app = { .port = bench_free_port() };
    char data[300], port[16], log[300];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(port, sizeof port, "%d", app.port);
    snprintf(log, sizeof log, "%s/kvchat.log", dir);
    const char *args[] = { kvchat, "--port", port, "--data", data, "--no-autostart", "--set",
                           "auth.mode=accounts", "--set", "server.api_key=" KEY, NULL };
    bench_proc_start(&app, args, log, "/health");
    for (int i = 0; i < N_USERS; i++) {
        char body[200];
        snprintf(body, sizeof body,
                 "{\"username\":\"user%02d\",\"password\":\"right-pass-%02d\",\"role\":\"user\"}", i,
                 i);
        long st = bench_request(app.port, "POST", API "/users", body, KEY, NULL);
        if (st != 201) {
            fprintf(stderr, "kvchat-bench-login: POST /users answered %ld; see %s\n", st, log);
            bench_proc_stop(&app);
            return 1;
        }
    }
    /* per user: a wrong password per round, then the right one */
    int n = N_USERS * rounds;
    double wrong[N_USERS * 2], unknown[N_USERS * 2], right[N_USERS];
    int addr = 2, bad = 0;
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < N_USERS; i++) {
            char from[32], user[32], ghost[48];
            long st;
            snprintf(user, sizeof user, "user%02d", i);
            snprintf(ghost, sizeof ghost, "nobody%02d%c", i, 'a' + r);
            snprintf(from, sizeof from, "127.0.%d.%d", addr / 250, 1 + addr % 250);
            addr++;
            unknown[r * N_USERS + i] = login(app.port, from, ghost, "guess-guess-1", &st);
            bad += st != 401;
            snprintf(from, sizeof from, "127.0.%d.%d", addr / 250, 1 + addr % 250);
            addr++;
            wrong[r * N_USERS + i] = login(app.port, from, user, "guess-guess-1", &st);
            bad += st != 401;
        }
    for (int i = 0; i < N_USERS; i++) {
        char from[32], user[32], pw[32];
        long st;
        snprintf(user, sizeof user, "user%02d", i);
        snprintf(pw, sizeof pw, "right-pass-%02d", i);
        snprintf(from, sizeof from, "127.0.%d.%d", addr / 250, 1 + addr % 250);
        addr++;
        right[i] = login(app.port, from, user, pw, &st);
        bad += st != 200;
    }
    bench_proc_stop(&app);
    if (bad) {
        fprintf(stderr, "kvchat-bench-login: %d logins did not answer as expected; see %s\n",
                bad, log);
        return 1;
    }
    double mw = pct(wrong, n, 0.5), mu = pct(unknown, n, 0.5), mr = pct(right, N_USERS, 0.5);
    char report[2048];
    snprintf(report, sizeof report,
             "\n## Login timing (accounts mode)\n\n"
             "kvchat-bench-login: %d users; %d logins of each kind, interleaved, each from its own "
             "loopback address (the rate limits never answer first). Time at the client, ms.\n\n"
             "| login | median | p90 |\n|---|---|---|\n"
             "| wrong password, existing user | %.1f | %.1f |\n"
             "| unknown user name | %.1f | %.1f |\n"
             "| right password | %.1f | %.1f |\n\n"
             "Unknown name / existing name, median: **%.2f** (1.00 = the time does not tell "
             "them apart).\n",
             N_USERS, n, mw, pct(wrong, n, 0.9), mu, pct(unknown, n, 0.9), mr,
             pct(right, N_USERS, 0.9), mu / mw);
    fputs(report, stdout);
    if (out) {
        FILE *f = fopen(out, "a");
        if (!f || fputs(report, f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "kvchat-bench-login: cannot append to %s\n", out);
            return 1;
        }
    }
    return 0;
}
