/* fixtures.h — small documents of every supported format, written by the
 * tests themselves (no binary fixture is committed). Each writer puts the
 * given lines of text into a file of its format and returns the path
 * (static storage, valid until the next call with the same format).
 */
#ifndef KVCHAT_TESTS_FIXTURES_H
#define KVCHAT_TESTS_FIXTURES_H

#include <stddef.h>

/* The formats kvchat accepts, by extension. */
extern const char *const fixture_formats[];   /* "txt", "md", ..., NULL */

/* Write a document of format `ext` into dir holding `lines` (each a short
 * ASCII sentence). Returns the file path (static, per format). */
const char *fixture_write(const char *dir, const char *ext, const char *const *lines, size_t n);

/* Write raw bytes as dir/name; returns the path (static, one slot). */
const char *fixture_raw(const char *dir, const char *name, const void *data, size_t len);

#endif
