/* buf.h — a growable byte buffer with a hard maximum size.
 *
 * Every buffer that holds outside data is created with the most it may ever
 * hold (request bodies, upstream responses, extracted text). Appending past
 * that maximum fails with BUF_ETOOBIG and leaves the buffer as it was, so a
 * caller can answer "too large" instead of truncating silently.
 * The contents are always NUL-terminated (the NUL is not counted in len).
 */
#ifndef KVCHAT_COMMON_BUF_H
#define KVCHAT_COMMON_BUF_H

#include <stdarg.h>
#include <stddef.h>

enum {
    BUF_OK = 0,
    BUF_ENOMEM = -1,
    BUF_ETOOBIG = -2,
};

typedef struct {
    char *data;      /* NULL until the first append */
    size_t len;
    size_t cap;
    size_t max;      /* most bytes len may reach */
} buf_t;

/* Caller-owned struct; no allocation until the first append. */
void buf_init(buf_t *b, size_t max);

/* Frees the contents; the struct may be reused after buf_init(). */
void buf_cleanup(buf_t *b);

/* Empty the buffer, keeping its memory. */
void buf_reset(buf_t *b);

/* Append n bytes. Returns BUF_OK, BUF_ENOMEM or BUF_ETOOBIG (unchanged). */
int buf_append(buf_t *b, const void *p, size_t n);
int buf_puts(buf_t *b, const char *s);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Take the contents (caller frees with free()); the buffer becomes empty.
 * Returns "" as a heap string when nothing was appended; NULL on ENOMEM. */
char *buf_steal(buf_t *b, size_t *len);

#endif
