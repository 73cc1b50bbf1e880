/* codepoint.c — see codepoint.h. */
#include "extract/codepoint.h"

size_t codepoint_decode(const unsigned char *p, size_t n, uint32_t *cp, bool *valid)
{
    unsigned char b0 = p[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;   /* range of the second byte */
    uint32_t c;

    if (valid)
        *valid = true;
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
        c = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        c = b0 & 0x0F;
        if (b0 == 0xE0)
            lo = 0xA0;           /* no overlongs */
        else if (b0 == 0xED)
            hi = 0x9F;           /* no surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        c = b0 & 0x07;
        if (b0 == 0xF0)
            lo = 0x90;           /* no overlongs */
        else if (b0 == 0xF4)
            hi = 0x8F;           /* nothing past U+10FFFF */
    } else {
        goto bad1;
    }
    for (size_t i = 1; i <= need; i++) {
        unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xBF;
        if (i >= n || p[i] < lo_i || p[i] > hi_i) {
            *cp = CODEPOINT_REPLACEMENT;
            if (valid)
                *valid = false;
            return i;
        }
        c = (c << 6) | (p[i] & 0x3F);
    }
    *cp = c;
    return need + 1;

bad1:
    *cp = CODEPOINT_REPLACEMENT;
    if (valid)
        *valid = false;
    return 1;
}

size_t codepoint_encode(uint32_t cp, char out[4])
{
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        cp = CODEPOINT_REPLACEMENT;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t codepoint_count(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            count++;
    return count;
}
