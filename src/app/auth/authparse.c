/* authparse.c — see authparse.h. */
#include "app/auth/authparse.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ENTRY_MAX 64   /* the longest address/prefix entry read */

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

bool authparse_cookie(const char *header, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (!header || !nl || !cap)
        return false;
    for (const char *h = header; *h;) {
        while (is_space(*h) || *h == ';')
            h++;
        const char *end = strchr(h, ';');
        size_t len = end ? (size_t)(end - h) : strlen(h);
        if (len > nl && strncmp(h, name, nl) == 0 && h[nl] == '=') {
            const char *v = h + nl + 1;
            size_t vl = len - nl - 1;
            while (vl && is_space(v[vl - 1]))
                vl--;
            if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
                v++;
                vl -= 2;
            }
            if (!vl || vl >= cap)
                return false;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return true;
        }
        if (!end)
            break;
        h = end;
    }
    return false;
}

const char *authparse_bearer(const char *header, size_t *len)
{
    *len = 0;
    if (!header)
        return NULL;
    while (is_space(*header))
        header++;
    if (strncasecmp(header, "Bearer", 6) != 0 || !is_space(header[6]))
        return NULL;
    const char *v = header + 7;
    while (is_space(*v))
        v++;
    size_t n = strlen(v);
    while (n && is_space(v[n - 1]))
        n--;
    if (!n)
        return NULL;
    *len = n;
    return v;
}

/* An address as 16 bytes (IPv4 as its IPv4-mapped IPv6 form). */
static bool addr16(const char *s, unsigned char out[16], bool *v4)
{
    struct in_addr a4;
    if (inet_pton(AF_INET, s, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        *v4 = true;
        return true;
    }
    *v4 = false;
    return inet_pton(AF_INET6, s, out) == 1;
}

/* One entry ("addr" or "addr/bits") as 16 bytes and a prefix length over
 * them; false when it does not parse. */
static bool entry_parse(const char *p, size_t n, unsigned char net[16], int *bits)
{
    char e[ENTRY_MAX];
    if (!n || n >= sizeof e)
        return false;
    memcpy(e, p, n);
    e[n] = '\0';
    char *slash = strchr(e, '/');
    long b = -1;
    if (slash) {
        *slash = '\0';
        const char *d = slash + 1;
        if (!*d || strlen(d) > 3)
            return false;
        for (const char *q = d; *q; q++)
            if (*q < '0' || *q > '9')
                return false;
        b = strtol(d, NULL, 10);
    }
    bool v4;
    if (!addr16(e, net, &v4))
        return false;
    int max = v4 ? 32 : 128;
    if (b > max)
        return false;
    *bits = (b < 0 ? max : (int)b) + (v4 ? 96 : 0);
    return true;
}

static bool prefix_match(const unsigned char a[16], const unsigned char net[16], int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, net, (size_t)whole) != 0)
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (net[whole] & mask);
}

/* Calls fn for each entry of list; stops when it returns true. Returns
 * whether one did. */
static bool each_entry(const char *list, bool (*fn)(const char *p, size_t n, void *ud), void *ud)
{
    for (const char *p = list; p && *p;) {
        while (is_space(*p) || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',' && !is_space(*e))
            e++;
        if (e > p && fn(p, (size_t)(e - p), ud))
            return true;
        p = e;
    }
    return false;
}

struct match_ud {
    unsigned char addr[16];
};

static bool entry_matches(const char *p, size_t n, void *ud)
{
    struct match_ud *m = ud;
    unsigned char net[16];
    int bits;
    return entry_parse(p, n, net, &bits) && prefix_match(m->addr, net, bits);
}

bool authparse_addr_listed(const char *list, const char *addr)
{
    struct match_ud m;
    bool v4;
    if (!addr || !addr16(addr, m.addr, &v4))
        return false;
    return each_entry(list, entry_matches, &m);
}

struct check_ud {
    char *why;
    size_t cap;
};

static bool entry_bad(const char *p, size_t n, void *ud)
{
    struct check_ud *c = ud;
    unsigned char net[16];
    int bits;
    if (entry_parse(p, n, net, &bits))
        return false;
    snprintf(c->why, c->cap, "'%.*s' is not an IP address or a CIDR range (10.0.0.0/8, fd00::/8)",
             (int)(n < ENTRY_MAX ? n : ENTRY_MAX), p);
    return true;
}

bool authparse_addr_list_check(const char *list, char *why, size_t whycap)
{
    struct check_ud c = { why, whycap };
    if (whycap)
        why[0] = '\0';
    return !each_entry(list, entry_bad, &c);
}

/* Whether s (n bytes) is an IP address, copied into out (AUTHPARSE_ADDR_MAX). */
static bool ip_entry(const char *s, size_t n, char *out)
{
    unsigned char a[16];
    bool v4;
    if (!n || n >= AUTHPARSE_ADDR_MAX)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return addr16(out, a, &v4);
}

void authparse_client_addr(const char *peer, const char *xff, const char *trusted, char *out,
                           size_t cap)
{
    char cur[AUTHPARSE_ADDR_MAX];
    snprintf(out, cap, "%s", peer ? peer : "");
    if (!peer || strlen(peer) >= sizeof cur || !xff)
        return;
    snprintf(cur, sizeof cur, "%s", peer);
    const char *end = xff + strlen(xff);
    while (authparse_addr_listed(trusted, cur)) {
        /* the entry left of `end` */
        while (end > xff && (end[-1] == ',' || is_space(end[-1])))
            end--;
        const char *b = end;
        while (b > xff && b[-1] != ',' && !is_space(b[-1]))
            b--;
        char next[AUTHPARSE_ADDR_MAX];
        if (b == end || !ip_entry(b, (size_t)(end - b), next))
            break;
        memcpy(cur, next, sizeof cur);
        end = b;
    }
    if (strlen(cur) < cap)
        snprintf(out, cap, "%s", cur);
}

bool authparse_forwarded_https(const char *value)
{
    if (!value)
        return false;
    while (is_space(*value))
        value++;
    size_t n = strcspn(value, ", \t");
    return n == 5 && strncasecmp(value, "https", 5) == 0;
}
