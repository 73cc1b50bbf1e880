/* codepoint.h — strict UTF-8 decoding and encoding, one code point at a
 * time (common/utf8.h works on whole strings; the sink needs single code
 * points).
 *
 * Decoding follows the Unicode "maximal subpart" rule: each ill-formed
 * subsequence becomes exactly one U+FFFD, overlong forms, surrogates and
 * values past U+10FFFF are ill-formed. No allocation, no state.
 */
#ifndef KVCHAT_EXTRACT_CODEPOINT_H
#define KVCHAT_EXTRACT_CODEPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CODEPOINT_REPLACEMENT 0xFFFDu

/* Decode the code point at p[0..n) (n > 0). Sets *cp and returns the bytes
 * consumed (1..4). An ill-formed sequence sets *cp = U+FFFD, *valid = false
 * and consumes its maximal subpart (at least 1 byte). `valid` may be NULL. */
size_t codepoint_decode(const unsigned char *p, size_t n, uint32_t *cp, bool *valid);

/* Encode cp into out (4 bytes of room); returns the length 1..4. Surrogates
 * and values past U+10FFFF are written as U+FFFD. */
size_t codepoint_encode(uint32_t cp, char out[4]);

/* Number of code points in well-formed UTF-8 p[0..n). */
size_t codepoint_count(const char *p, size_t n);

#endif
