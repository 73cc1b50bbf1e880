/* textout.h — the normalising sink every kvchat-extract backend writes to.
 *
 * Backends push code points (or UTF-8 pieces, or line/paragraph breaks);
 * the sink holds the one copy of the output and keeps these invariants at
 * every step, so no backend has to:
 *   - the contents are well-formed UTF-8 (ill-formed input becomes U+FFFD);
 *   - no NUL and no control character other than '\n' and '\t' (CR and CRLF
 *     become '\n'; FF, VT, NEL, U+2028/2029 become '\n'; C0/C1 controls, DEL,
 *     U+FEFF and the soft hyphen U+00AD are dropped; NBSP becomes a space);
 *   - no spaces or tabs at the end of a line;
 *   - no blank line at the start, at most two consecutive blank lines;
 *   - at most `max` bytes (the --max-output limit): going over makes every
 *     later call fail with EXTRACT_ETOOBIG, never a silent truncation.
 * Errors are sticky: after the first failure every call returns it, so a
 * backend may check only now and then.
 */
#ifndef KVCHAT_EXTRACT_TEXTOUT_H
#define KVCHAT_EXTRACT_TEXTOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef struct {
    buf_t buf;
    int err;          /* sticky EXTRACT_* error, 0 while fine */
    bool after_cr;    /* last code point was '\r' (swallow a following '\n') */
} textout_t;

/* Caller-owned struct; output may grow to `max` bytes. */
void textout_init(textout_t *t, size_t max);

/* Frees the contents. Accepts NULL. */
void textout_cleanup(textout_t *t);

/* The limit given to textout_init(). */
size_t textout_max(const textout_t *t);

/* Append one code point, normalised as described above. Returns 0,
 * EXTRACT_ETOOBIG or EXTRACT_EMEMORY (sticky). */
int textout_putc(textout_t *t, uint32_t cp);

/* Append n bytes of (possibly ill-formed) UTF-8. Same returns. */
int textout_put_utf8(textout_t *t, const char *s, size_t n);

/* End the current line unless the output is at the start of a line. */
int textout_newline(textout_t *t);

/* Make sure the output ends with one blank line (a paragraph, page or
 * chapter break); nothing at the start of the output. */
int textout_blank_line(textout_t *t);

/* True at the start of the output or right after a '\n'. */
bool textout_at_line_start(const textout_t *t);

/* The sticky error, 0 if none. */
int textout_error(const textout_t *t);

/* Finish: drop trailing blank lines, end with exactly one '\n', and hand
 * the text over (*text malloc'd, NUL-terminated, caller frees; the sink is
 * left empty). *len is its length in bytes, *chars in code points.
 * Returns 0; EXTRACT_ENOTEXT when there is nothing but whitespace; or the
 * sticky error. On failure *text is NULL. */
int textout_finish(textout_t *t, char **text, size_t *len, size_t *chars);

#endif
