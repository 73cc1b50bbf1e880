/* json.h — jansson, plus the helpers every kvchat program needs around it.
 *
 * This is the one place that includes <jansson.h>: other modules include
 * "common/json.h" and use jansson's API (json_t, json_object_get, json_pack,
 * ...) through it. On top of jansson it adds:
 *
 *  - json_parse(): parse outside text with limits. Nesting deeper than
 *    JSON_MAX_DEPTH is refused before jansson sees it; trailing garbage is
 *    refused; the error message names line and column and is fit to send
 *    back in a 400 answer ("Malformed JSON at line 1 column 5: ...").
 *  - typed getters (json_get_string, _int, _number, _bool, _array,
 *    _object) that tell "missing" from "wrong type" and leave a message
 *    naming the field for the 400 answer.
 *  - json_string_lossy(): a JSON string from bytes that may not be valid
 *    UTF-8 (jansson's json_string() refuses those and returns NULL); every
 *    invalid sequence becomes U+FFFD (utf8.h does the repair; use its
 *    utf8_complete_len() for text that arrives in pieces).
 *  - json_dumps_compact(): compact serialization into malloc'd text.
 *
 * Ownership follows jansson: a function that returns json_t * returns a new
 * reference (release with json_decref); getters return borrowed values that
 * stay valid while the object they came from lives and is not modified.
 */
#ifndef KVCHAT_COMMON_JSON_H
#define KVCHAT_COMMON_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest nesting of arrays/objects json_parse() accepts. */
#define JSON_MAX_DEPTH 64

/* Result codes of this module (0 = ok). The getters' codes are the ones
 * their callers test: JSON_EMISSING (-1) and JSON_ETYPE (-2). */
enum {
    JSON_OK = 0,
    JSON_EMISSING = -1, /* key absent, or present with the value null */
    JSON_ETYPE = -2,    /* present with another type, or out of range */
    JSON_EPARSE = -3,   /* malformed text, too deep, trailing garbage */
    JSON_ENOMEM = -4,
};

/* Returns a static English description of a JSON_* code. */
const char *json_strerror(int rc);

/* Message left by a failing parse or getter. Caller-owned, usually on the
 * stack; the text is always NUL-terminated (possibly shortened to fit). */
typedef struct {
    char msg[256];
} json_err_t;

/* Parse `len` bytes of `text` (need not be NUL-terminated) as one JSON value
 * of any type. The caller bounds `len` (request body limit).
 * Returns JSON_OK and stores a new reference in *out; or JSON_EPARSE with
 * err->msg like "Malformed JSON at line 1 column 5: <reason>" (nesting deeper
 * than JSON_MAX_DEPTH, invalid UTF-8, trailing garbage and numbers that do
 * not fit (integers beyond int64, reals beyond double) are all refused);
 * or JSON_ENOMEM. On failure *out is NULL. err may be NULL. */
int json_parse(const char *text, size_t len, json_t **out, json_err_t *err);

/* Typed getters on an object. Each returns:
 *   JSON_OK        and stores the value in *out;
 *   JSON_EMISSING  if the key is absent or null (*out untouched);
 *   JSON_ETYPE     if the value has another type, or `obj` is not an object
 *                  (*out untouched).
 * On failure err->msg (if err is not NULL) names the key, e.g.
 * "Missing required field 'model'" or "Field 'stream' must be a boolean".
 * Strings, arrays and objects are borrowed from `obj`. */
int json_get_string(const json_t *obj, const char *key, const char **out, json_err_t *err);
/* Integers in int64 range; a real with an integral value in range (2.0) is
 * accepted, 2.5 and 1e30 are JSON_ETYPE. */
int json_get_int(const json_t *obj, const char *key, int64_t *out, json_err_t *err);
/* As json_get_int, and JSON_ETYPE unless min <= value <= max (the message
 * names the range). */
int json_get_int_range(const json_t *obj, const char *key, int64_t min, int64_t max,
                       int64_t *out, json_err_t *err);
/* Reals and integers (converted to double). */
int json_get_number(const json_t *obj, const char *key, double *out, json_err_t *err);
int json_get_bool(const json_t *obj, const char *key, bool *out, json_err_t *err);
int json_get_array(const json_t *obj, const char *key, json_t **out, json_err_t *err);
int json_get_object(const json_t *obj, const char *key, json_t **out, json_err_t *err);

/* A new JSON string holding `n` bytes of `s`, where every invalid UTF-8
 * sequence (stray continuation bytes, overlong forms, surrogates, code
 * points above U+10FFFF, truncated sequences) is replaced by U+FFFD, one per
 * maximal invalid subpart as Unicode recommends. NUL bytes are valid UTF-8
 * and kept. Returns a new reference, or NULL only when out of memory. */
json_t *json_string_lossy(const char *s, size_t n);

/* Compact serialization (no spaces, UTF-8 kept, any value type). Returns
 * malloc'd NUL-terminated text the caller frees with free(), or NULL if out
 * of memory or `json` is NULL. */
char *json_dumps_compact(const json_t *json);

#endif
