/* utf8.c — see utf8.h. */
#include "common/utf8.h"

int utf8_decode(const char *str, size_t n, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;   /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;   /* <= U+10FFFF */
    } else {
        return 0;
    }
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n)
            return -1;
        unsigned b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF))
            return 0;
        v = v << 6 | (b & 0x3F);
    }
    *cp = v;
    return need;
}

/* Length of the valid sequence starting at s (1..4), or 0 if the bytes at s
 * do not start a valid one. *incomplete is set when the sequence is a valid
 * beginning cut short by the end of the input. */
static size_t seq_len(const unsigned char *s, size_t n, bool *incomplete)
{
    uint32_t cp;
    int k = utf8_decode((const char *)s, n, &cp);
    *incomplete = k < 0;
    return k > 0 ? (size_t)k : 0;
}

size_t utf8_complete_len(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        bool inc;
        size_t k = seq_len(u + i, n - i, &inc);
        if (inc)
            return i;
        i += k ? k : 1;
    }
    return n;
}

bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        bool inc;
        size_t k = seq_len(u + i, n - i, &inc);
        if (!k)
            return false;
        i += k;
    }
    return true;
}

/* Bytes of the maximal subpart of an ill-formed sequence at s: the lead
 * byte and as many continuation bytes as were valid for it. */
static size_t bad_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 1;
    }
    size_t i = 1;
    for (; i < need && i < n; i++) {
        unsigned b = s[i];
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h)
            break;
    }
    return i;
}

int utf8_append_sanitized(buf_t *out, const char *s, size_t n)
{
    static const char repl[] = "\xEF\xBF\xBD";
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0;   /* start of the current valid run */
    size_t i = 0;
    while (i < n) {
        bool inc;
        size_t k = seq_len(u + i, n - i, &inc);
        if (k) {
            i += k;
            continue;
        }
        int rc = buf_append(out, s + run, i - run);
        if (rc == BUF_OK)
            rc = buf_append(out, repl, 3);
        if (rc)
            return rc;
        i += inc ? n - i : bad_len(u + i, n - i);
        run = i;
    }
    return buf_append(out, s + run, n - run);
}
