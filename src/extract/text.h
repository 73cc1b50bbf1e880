/* text.h — plain text: decoding bytes of an unknown encoding, and the txt
 * and md backends.
 *
 * Decoding rules (text_decode):
 *   - a UTF-8 BOM, or bytes that are well-formed UTF-8: UTF-8 (BOM dropped);
 *   - a UTF-16 LE or BE BOM: UTF-16 (unpaired surrogates and an odd last
 *     byte become U+FFFD);
 *   - otherwise, bytes that are mostly UTF-8 with a few ill-formed sequences
 *     (at least as many well-formed multi-byte sequences as ill-formed ones):
 *     UTF-8 with U+FFFD for each ill-formed sequence;
 *   - otherwise Latin-1, reading 0x80..0x9F as Windows-1252 does (that is
 *     what "Latin-1" files mostly are; undefined bytes become U+FFFD).
 * The decoder does no other cleaning; the textout sink does that.
 */
#ifndef KVCHAT_EXTRACT_TEXT_H
#define KVCHAT_EXTRACT_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "extract/textout.h"

typedef enum {
    TEXT_ENC_UTF8 = 0,
    TEXT_ENC_UTF8_REPAIRED,   /* mostly UTF-8, ill-formed parts replaced */
    TEXT_ENC_UTF16LE,
    TEXT_ENC_UTF16BE,
    TEXT_ENC_LATIN1,
} text_encoding_t;

/* Receives each decoded code point; a non-zero return stops decoding and
 * is returned by text_decode(). */
typedef int (*text_emit_fn)(void *arg, uint32_t cp);

/* Guess the encoding of p[0..n) by the rules above. */
text_encoding_t text_guess_encoding(const unsigned char *p, size_t n);

/* Decode p[0..n) and pass every code point to emit. Sets *enc (may be
 * NULL) to the encoding used. Returns 0 or emit's first non-zero return. */
int text_decode(const unsigned char *p, size_t n, text_emit_fn emit, void *arg,
                text_encoding_t *enc);

/* Decode p[0..n) into well-formed UTF-8 appended to out (which keeps its
 * own limit). Returns 0, EXTRACT_ETOOBIG or EXTRACT_EMEMORY. */
int text_to_utf8(const unsigned char *p, size_t n, buf_t *out);

/* Read all of fd (from offset 0) into *data (malloc'd, NUL-terminated,
 * caller frees). Returns 0; EXTRACT_ETOOBIG when the file is larger than
 * max bytes; EXTRACT_ECORRUPT on a read error; EXTRACT_EMEMORY. On failure
 * *data is NULL. */
int text_read_fd(int fd, size_t max, unsigned char **data, size_t *len);

/* Most input bytes the txt/md/html backends read for an output limit of
 * max_output (decoding may shrink text, e.g. by dropping NULs, but not by
 * much more than this). */
size_t text_input_limit(size_t max_output);

/* The txt and md backends (Markdown is kept as written, '#' and all).
 * Return 0 or an EXTRACT_* code; the text and its marks are in out.
 * Structure (text.c says exactly what is recognised): pages when the text
 * holds form feeds (page 1 at the start, page k+1 after the k-th FF, no
 * labels), for both; Markdown's ATX and setext headings, outside fenced
 * code and front matter, for md. */
int text_extract(int fd, textout_t *out);
int text_extract_md(int fd, textout_t *out);

#endif
