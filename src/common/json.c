/* json.c — see json.h.
 *
 * Depth is checked by a scan of the raw text before jansson parses it, since
 * jansson's own limit (2048) is fixed at its build time: the scan counts '['
 * and '{' outside strings and stops at the first one past JSON_MAX_DEPTH,
 * so a hostile body of a million '[' costs one linear pass and no
 * allocation.
 */
#include "common/json.h"

#include "common/buf.h"
#include "common/utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *json_strerror(int rc)
{
    switch (rc) {
    case JSON_OK: return "ok";
    case JSON_EMISSING: return "missing field";
    case JSON_ETYPE: return "wrong type";
    case JSON_EPARSE: return "malformed JSON";
    case JSON_ENOMEM: return "out of memory";
    default: return "unknown JSON error";
    }
}

static void err_set(json_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void err_set(json_err_t *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

/* ---- parsing ---------------------------------------------------------- */

/* Scan for nesting deeper than JSON_MAX_DEPTH. Returns 0, or -1 with the
 * 1-based line and column (in characters, as jansson counts) of the bracket
 * that goes too deep. Text that is malformed in other ways passes; jansson
 * reports it. */
static int depth_scan(const char *text, size_t len, int *line, int *col)
{
    int depth = 0;
    bool in_str = false, esc = false;
    int ln = 1, cl = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n') {
            ln++;
            cl = 0;
        } else if ((c & 0xC0) != 0x80) {
            cl++;
        }
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > JSON_MAX_DEPTH) {
                *line = ln;
                *col = cl;
                return -1;
            }
        } else if (c == ']' || c == '}') {
            if (depth > 0)
                depth--;
        }
    }
    return 0;
}

int json_parse(const char *text, size_t len, json_t **out, json_err_t *err)
{
    *out = NULL;
    if (!text)
        len = 0;
    int line, col;
    if (text && depth_scan(text, len, &line, &col) < 0) {
        err_set(err, "Malformed JSON at line %d column %d: nesting deeper than %d levels", line,
                col, JSON_MAX_DEPTH);
        return JSON_EPARSE;
    }
    json_error_t je;
    json_t *j = json_loadb(text ? text : "", len, JSON_DECODE_ANY, &je);
    if (!j) {
        if (json_error_code(&je) == json_error_out_of_memory) {
            err_set(err, "Out of memory while parsing JSON");
            return JSON_ENOMEM;
        }
        if (len == 0)
            err_set(err, "Malformed JSON: empty input");
        else
            err_set(err, "Malformed JSON at line %d column %d: %s", je.line < 1 ? 1 : je.line,
                    je.column < 1 ? 1 : je.column, je.text);
        return JSON_EPARSE;
    }
    *out = j;
    return JSON_OK;
}

/* ---- typed getters ---------------------------------------------------- */

/* Find `key` in `obj`; null counts as missing. */
static int lookup(const json_t *obj, const char *key, json_t **v, json_err_t *err)
{
    if (!json_is_object(obj)) {
        err_set(err, "Expected a JSON object with field '%.64s'", key);
        return JSON_ETYPE;
    }
    json_t *x = json_object_get(obj, key);
    if (!x || json_is_null(x)) {
        err_set(err, "Missing required field '%.64s'", key);
        return JSON_EMISSING;
    }
    *v = x;
    return JSON_OK;
}

static int wrong_type(json_err_t *err, const char *key, const char *what)
{
    err_set(err, "Field '%.64s' must be %s", key, what);
    return JSON_ETYPE;
}

int json_get_string(const json_t *obj, const char *key, const char **out, json_err_t *err)
{
    json_t *v;
    int rc = lookup(obj, key, &v, err);
    if (rc)
        return rc;
    if (!json_is_string(v))
        return wrong_type(err, key, "a string");
    *out = json_string_value(v);
    return JSON_OK;
}

/* 2^63 as a double: the first value that does not fit in int64. */
#define TWO_POW_63 9223372036854775808.0

int json_get_int(const json_t *obj, const char *key, int64_t *out, json_err_t *err)
{
    json_t *v;
    int rc = lookup(obj, key, &v, err);
    if (rc)
        return rc;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return JSON_OK;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= -TWO_POW_63 && d < TWO_POW_63)) {
            err_set(err, "Field '%.64s' is out of range for an integer", key);
            return JSON_ETYPE;
        }
        int64_t i = (int64_t)d;
        if ((double)i == d) {
            *out = i;
            return JSON_OK;
        }
    }
    return wrong_type(err, key, "an integer");
}

int json_get_int_range(const json_t *obj, const char *key, int64_t min, int64_t max,
                       int64_t *out, json_err_t *err)
{
    int64_t v;
    int rc = json_get_int(obj, key, &v, err);
    if (rc)
        return rc;
    if (v < min || v > max) {
        err_set(err, "Field '%.64s' must be between %lld and %lld", key, (long long)min,
                (long long)max);
        return JSON_ETYPE;
    }
    *out = v;
    return JSON_OK;
}

int json_get_number(const json_t *obj, const char *key, double *out, json_err_t *err)
{
    json_t *v;
    int rc = lookup(obj, key, &v, err);
    if (rc)
        return rc;
    if (!json_is_number(v))
        return wrong_type(err, key, "a number");
    *out = json_number_value(v);
    return JSON_OK;
}

int json_get_bool(const json_t *obj, const char *key, bool *out, json_err_t *err)
{
    json_t *v;
    int rc = lookup(obj, key, &v, err);
    if (rc)
        return rc;
    if (!json_is_boolean(v))
        return wrong_type(err, key, "a boolean");
    *out = json_is_true(v);
    return JSON_OK;
}

int json_get_array(const json_t *obj, const char *key, json_t **out, json_err_t *err)
{
    json_t *v;
    int rc = lookup(obj, key, &v, err);
    if (rc)
        return rc;
    if (!json_is_array(v))
        return wrong_type(err, key, "an array");
    *out = v;
    return JSON_OK;
}

int json_get_object(const json_t *obj, const char *key, json_t **out, json_err_t *err)
{
    json_t *v;
    int rc = lookup(obj, key, &v, err);
    if (rc)
        return rc;
    if (!json_is_object(v))
        return wrong_type(err, key, "an object");
    *out = v;
    return JSON_OK;
}

/* ---- UTF-8 ------------------------------------------------------------ */

json_t *json_string_lossy(const char *s, size_t n)
{
    if (!s)
        n = 0;
    if (utf8_valid(s, n))
        return json_stringn_nocheck(s ? s : "", n);
    /* Worst case every byte becomes the 3-byte U+FFFD. */
    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    buf_t b;
    buf_init(&b, n * 3);
    json_t *j = NULL;
    if (utf8_append_sanitized(&b, s, n) == BUF_OK)
        j = json_stringn_nocheck(b.data ? b.data : "", b.len);
    buf_cleanup(&b);
    return j;
}

/* ---- output ----------------------------------------------------------- */

char *json_dumps_compact(const json_t *json)
{
    if (!json)
        return NULL;
    return json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY);
}
