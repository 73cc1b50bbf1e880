/* fuzz_auth.c — what a request says about who sends it (auth/authparse.c)
 * and the rate-limit table those values key (auth/ratelimit.c).
 *
 * The input is up to six fields separated by '\n': a Cookie header, an
 * Authorization header, an auth.trusted_proxies list, a client address,
 * an X-Forwarded-Proto value and a cookie name. Each is parsed as kvchat
 * parses it; the values found then key failed logins and request rates in
 * a small table, at times taken from the input.
 *
 * The fifth field is also read as an X-Forwarded-For header.
 *
 * Checked besides memory safety: the client's address is the peer or
 * an entry of the forwarded header, and the peer itself unless it is a
 * trusted proxy; a cookie value found is non-empty, fits
 * the buffer, is a run of the header's bytes and holds no ';'; a bearer
 * value lies inside its header, is non-empty and has no space at either
 * end; a list that passes the start-up check matches each of its own
 * plain addresses; matching never depends on the order of the entries
 * (the list reversed answers the same); the rate-limit table never asks a
 * key to wait longer than its lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/auth/authparse.h"
#include "app/auth/ratelimit.h"
#include "app/auth/secret.h"
#include "fuzz_util.h"

#define FIELDS 6
#define COOKIE_CAP 128

static ratelimit_t *g_rl;
static const ratelimit_policy_t P = { .free = 2, .lock_after = 5, .backoff_max = 8,
                                      .lock_s = 60, .window_s = 600 };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    if (secret_init() != 0)
        abort();
    g_rl = ratelimit_new(16);   /* tiny: inputs push each other out */
    if (!g_rl)
        abort();
    return 0;
}

/* The entries of list in reverse order, comma-separated (caller frees). */
static char *reversed(const char *list)
{
    size_t n = strlen(list);
    char *out = malloc(n + 2), *o = out;
    if (!out)
        abort();
    const char *end = list + n;
    while (end > list) {
        const char *e = end;
        while (e > list && (e[-1] == ',' || e[-1] == ' ' || e[-1] == '\t'))
            e--;
        const char *b = e;
        while (b > list && b[-1] != ',' && b[-1] != ' ' && b[-1] != '\t')
            b--;
        if (e > b) {
            memcpy(o, b, (size_t)(e - b));
            o += e - b;
            *o++ = ',';
        }
        end = b;
    }
    *o = '\0';
    return out;
}

struct own_ud {
    const char *list;
};

static void check_cookie(const char *header, const char *name)
{
    char v[COOKIE_CAP];
    memset(v, 0x55, sizeof v);
    if (!authparse_cookie(header, name[0] ? name : "kvchat_session", v, sizeof v))
        return;
    size_t n = strnlen(v, sizeof v);
    FUZZ_CHECK(n > 0 && n < sizeof v, "cookie value of %zu bytes", n);
    FUZZ_CHECK(!strchr(v, ';'), "cookie value '%s' holds a ';'", v);
    FUZZ_CHECK(strstr(header, v) != NULL, "cookie value '%s' is not in the header", v);
}

static void check_bearer(const char *header)
{
    size_t n;
    const char *v = authparse_bearer(header, &n);
    if (!v)
        return;
    FUZZ_CHECK(v > header && v + n <= header + strlen(header), "bearer outside its header");
    FUZZ_CHECK(n > 0 && v[0] != ' ' && v[0] != '\t' && v[n - 1] != ' ' && v[n - 1] != '\t',
               "bearer of %zu bytes with spaces at an end", n);
}

static void check_list(const char *list, const char *addr)
{
    char why[200];
    bool ok = authparse_addr_list_check(list, why, sizeof why);
    FUZZ_CHECK(ok || why[0], "a refused list without a reason");
    bool in = authparse_addr_listed(list, addr);
    char *rev = reversed(list);
    FUZZ_CHECK(authparse_addr_listed(rev, addr) == in, "'%s' and '%s' disagree on '%s'", list,
               rev, addr);
    free(rev);
    if (!ok)
        return;
    /* every plain address of a valid list is in it */
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ' && *e != '\t')
            e++;
        char one[80];
        size_t n = (size_t)(e - p);
        if (n && n < sizeof one && !memchr(p, '/', n)) {
            memcpy(one, p, n);
            one[n] = '\0';
            FUZZ_CHECK(authparse_addr_listed(list, one), "'%s' is not in '%s'", one, list);
        }
        p = e;
    }
}

static void check_limits(const char *who, const char *addr, const uint8_t *data, size_t size)
{
    int64_t t = 1000000;
    for (size_t i = 0; i < size && i < 64; i++) {
        t += (int64_t)data[i] * 97;
        char key[RATELIMIT_KEY_MAX * 2];
        snprintf(key, sizeof key, "%s:%s", i % 2 ? "login:user" : "login:ip", i % 2 ? who : addr);
        double wait = 0;
        bool locked = false;
        if (!ratelimit_allowed(g_rl, key, &P, t, &wait, &locked))
            FUZZ_CHECK(wait > 0 && wait <= P.lock_s + 1, "wait %.3f s", wait);
        if (data[i] & 1)
            ratelimit_fail(g_rl, key, &P, t);
        else if ((data[i] & 6) == 6)
            ratelimit_clear(g_rl, key);
        if (!ratelimit_take(g_rl, key, data[i] % 7, 3, t, &wait))
            FUZZ_CHECK(wait > 0 && wait <= 60.0 * 3 + 1, "bucket wait %.3f s", wait);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    char *f[FIELDS];
    char *p = s;
    for (int i = 0; i < FIELDS; i++) {
        f[i] = p;
        char *nl = p ? strchr(p, '\n') : NULL;
        if (nl) {
            *nl = '\0';
            p = nl + 1;
        } else {
            p = p + strlen(p);
        }
    }
    check_cookie(f[0], f[5]);
    check_bearer(f[1]);
    check_list(f[2], f[3]);
    (void)authparse_forwarded_https(f[4]);
    /* the client behind proxies f[2], forwarded in f[4] read as X-Forwarded-For */
    char client[AUTHPARSE_ADDR_MAX];
    authparse_client_addr(f[3], f[4], f[2], client, sizeof client);
    /* (a peer longer than the buffer is cut: peers are IP addresses) */
    bool is_peer = strncmp(client, f[3], sizeof client - 1) == 0;
    FUZZ_CHECK(is_peer || (client[0] && strstr(f[4], client)),
               "client '%s' is neither the peer nor forwarded", client);
    if (!authparse_addr_listed(f[2], f[3]))
        FUZZ_CHECK(is_peer, "an untrusted peer's header was believed");
    char v[COOKIE_CAP];
    const char *who = authparse_cookie(f[0], "user", v, sizeof v) ? v : f[1];
    check_limits(who, f[3], data, size);
    free(s);
    return 0;
}
