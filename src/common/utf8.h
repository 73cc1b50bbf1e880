/* utf8.h — UTF-8 boundaries and repair for text that arrives in pieces.
 *
 * Model output arrives token by token and a token may end in the middle of
 * a multi-byte character; documents may hold invalid bytes. JSON needs valid
 * UTF-8, so text is cut only at character boundaries and invalid sequences
 * become U+FFFD.
 */
#ifndef KVCHAT_COMMON_UTF8_H
#define KVCHAT_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Length of s[0..n) without a trailing INCOMPLETE sequence (one that more
 * bytes could still complete). Invalid bytes elsewhere are not trimmed. */
size_t utf8_complete_len(const char *s, size_t n);

/* Decode the character at s[0..n) (n >= 1) into *cp. Returns its length
 * (1..4); 0 when the bytes at s do not start a valid sequence (overlongs,
 * surrogates, code points above U+10FFFF); -1 when they are a valid
 * beginning cut short by n. */
int utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Whether s[0..n) is entirely valid UTF-8 (no overlongs, surrogates or
 * code points above U+10FFFF). */
bool utf8_valid(const char *s, size_t n);

/* Append s[0..n) to out with every invalid sequence replaced by U+FFFD
 * (the maximal-subpart rule of Unicode §3.9). Returns a BUF_* code. */
int utf8_append_sanitized(buf_t *out, const char *s, size_t n);

#endif
