/* text.c — see text.h. */
#include "extract/text.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "extract/extract.h"
#include "extract/codepoint.h"

/* Windows-1252 for 0x80..0x9F; 0 marks the five undefined bytes. */
static const uint16_t cp1252_high[32] = {
    0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
    0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
};

text_encoding_t text_guess_encoding(const unsigned char *p, size_t n)
{
    if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
        return TEXT_ENC_UTF8;
    if (n >= 2 && p[0] == 0xFF && p[1] == 0xFE)
        return TEXT_ENC_UTF16LE;
    if (n >= 2 && p[0] == 0xFE && p[1] == 0xFF)
        return TEXT_ENC_UTF16BE;
    size_t good_multi = 0, bad = 0;
    for (size_t i = 0; i < n;) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        bool ok;
        i += codepoint_decode(p + i, n - i, &cp, &ok);
        if (ok)
            good_multi++;
        else
            bad++;
    }
    if (bad == 0)
        return TEXT_ENC_UTF8;
    return good_multi >= bad ? TEXT_ENC_UTF8_REPAIRED : TEXT_ENC_LATIN1;
}

static int decode_utf16(const unsigned char *p, size_t n, bool le, text_emit_fn emit, void *arg)
{
    size_t i = 2;   /* past the BOM */
    int rc = 0;
    while (i + 1 < n && !rc) {
        uint32_t u = le ? (uint32_t)(p[i] | p[i + 1] << 8) : (uint32_t)(p[i] << 8 | p[i + 1]);
        i += 2;
        if (u >= 0xD800 && u <= 0xDBFF && i + 1 < n) {
            uint32_t v = le ? (uint32_t)(p[i] | p[i + 1] << 8) : (uint32_t)(p[i] << 8 | p[i + 1]);
            if (v >= 0xDC00 && v <= 0xDFFF) {
                i += 2;
                rc = emit(arg, 0x10000 + ((u - 0xD800) << 10) + (v - 0xDC00));
                continue;
            }
        }
        if (u >= 0xD800 && u <= 0xDFFF)
            u = CODEPOINT_REPLACEMENT;
        rc = emit(arg, u);
    }
    if (!rc && i < n)    /* an odd byte at the end */
        rc = emit(arg, CODEPOINT_REPLACEMENT);
    return rc;
}

int text_decode(const unsigned char *p, size_t n, text_emit_fn emit, void *arg,
                text_encoding_t *enc_out)
{
    text_encoding_t enc = text_guess_encoding(p, n);
    if (enc_out)
        *enc_out = enc;
    int rc = 0;
    switch (enc) {
    case TEXT_ENC_UTF16LE:
    case TEXT_ENC_UTF16BE:
        return decode_utf16(p, n, enc == TEXT_ENC_UTF16LE, emit, arg);
    case TEXT_ENC_LATIN1:
        for (size_t i = 0; i < n && !rc; i++) {
            uint32_t cp = p[i];
            if (cp >= 0x80 && cp <= 0x9F)
                cp = cp1252_high[cp - 0x80] ? cp1252_high[cp - 0x80] : CODEPOINT_REPLACEMENT;
            rc = emit(arg, cp);
        }
        return rc;
    case TEXT_ENC_UTF8:
    case TEXT_ENC_UTF8_REPAIRED:
    default: {
        size_t i = (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) ? 3 : 0;
        while (i < n && !rc) {
            uint32_t cp;
            i += codepoint_decode(p + i, n - i, &cp, NULL);
            rc = emit(arg, cp);
        }
        return rc;
    }
    }
}

static int emit_utf8(void *arg, uint32_t cp)
{
    buf_t *b = arg;
    char enc[4];
    size_t k = codepoint_encode(cp, enc);
    int rc = buf_append(b, enc, k);
    if (rc == BUF_ETOOBIG)
        return EXTRACT_ETOOBIG;
    return rc ? EXTRACT_EMEMORY : 0;
}

int text_to_utf8(const unsigned char *p, size_t n, buf_t *out)
{
    return text_decode(p, n, emit_utf8, out, NULL);
}

int text_read_fd(int fd, size_t max, unsigned char **data, size_t *len)
{
    buf_t b;
    buf_init(&b, max);
    *data = NULL;
    *len = 0;
    if (lseek(fd, 0, SEEK_SET) < 0)
        return EXTRACT_ECORRUPT;
    char chunk[65536];
    int rc = 0;
    for (;;) {
        ssize_t k = read(fd, chunk, sizeof chunk);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            rc = EXTRACT_ECORRUPT;
            break;
        }
        if (k == 0)
            break;
        int brc = buf_append(&b, chunk, (size_t)k);
        if (brc) {
            rc = brc == BUF_ETOOBIG ? EXTRACT_ETOOBIG : EXTRACT_EMEMORY;
            break;
        }
    }
    if (rc) {
        buf_cleanup(&b);
        return rc;
    }
    *data = (unsigned char *)buf_steal(&b, len);
    return *data ? 0 : EXTRACT_EMEMORY;
}

size_t text_input_limit(size_t max_output)
{
    const size_t cap = (size_t)1 << 30;
    if (max_output > (cap - 65536) / 4)
        return cap;
    return max_output * 4 + 65536;
}

static int emit_textout(void *arg, uint32_t cp) { return textout_putc(arg, cp); }

int text_extract(int fd, textout_t *out)
{
    unsigned char *data;
    size_t len;
    int rc = text_read_fd(fd, text_input_limit(textout_max(out)), &data, &len);
    if (rc)
        return rc;
    rc = text_decode(data, len, emit_textout, out, NULL);
    free(data);
    return rc;
}
