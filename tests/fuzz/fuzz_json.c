/* fuzz_json.c — JSON request bodies (common/json.c).
 *
 * The input is a request body. It goes through json_parse() as
 * httpd_req_json() calls it, then through the typed getters the handlers
 * use on the fields of kvchat's requests (chat, sessions, documents,
 * OpenAI-style completions), then json_string_lossy() as the app uses it
 * on text that may not be UTF-8.
 *
 * Checked besides memory safety: a parsed value is never nested deeper
 * than JSON_MAX_DEPTH; it serialises (json_dumps_compact) to text that
 * parses back to an equal value; a failure leaves a message and no value;
 * a getter that succeeds returns a value of its type (and range);
 * json_string_lossy() returns valid UTF-8 of at most three bytes per
 * input byte.
 */
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/utf8.h"
#include "fuzz_util.h"

/* Depth of v (a scalar is 0, [] is 1). Stops counting past limit. */
static int depth(const json_t *v, int limit)
{
    if (limit < 0)
        return 0;
    int d = 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            int k = depth(x, limit - 1);
            if (k > d)
                d = k;
        }
        return d + 1;
    }
    if (json_is_object(v)) {
        const char *key;
        json_t *x;
        json_object_foreach((json_t *)v, key, x) {
            int k = depth(x, limit - 1);
            if (k > d)
                d = k;
        }
        return d + 1;
    }
    return 0;
}

/* The getters over the fields kvchat's handlers read. */
static void read_fields(const json_t *obj)
{
    static const char *const keys[] = {
        "model", "messages", "message", "role", "content", "stream", "max_tokens",
        "temperature", "top_p", "stop", "session_id", "document_id", "prompt", "pin",
        "cache_prompt", "n_predict", "id", "name", "options", "seed",
    };
    json_err_t err;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *k = keys[i];
        const char *s = NULL;
        int64_t n = 0;
        double d = 0;
        bool b = false;
        json_t *v = NULL;
        if (json_get_string(obj, k, &s, &err) == JSON_OK)
            FUZZ_CHECK(s != NULL && utf8_valid(s, strlen(s)), "json_get_string(%s)", k);
        else
            FUZZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL, "message not terminated");
        if (json_get_int(obj, k, &n, &err) == JSON_OK)
            FUZZ_CHECK(json_is_number(json_object_get(obj, k)), "json_get_int(%s)", k);
        if (json_get_int_range(obj, k, -5, 4096, &n, &err) == JSON_OK)
            FUZZ_CHECK(n >= -5 && n <= 4096, "json_get_int_range(%s) gave %lld", k, (long long)n);
        if (json_get_number(obj, k, &d, &err) == JSON_OK)
            FUZZ_CHECK(json_is_number(json_object_get(obj, k)), "json_get_number(%s)", k);
        if (json_get_bool(obj, k, &b, &err) == JSON_OK)
            FUZZ_CHECK(json_is_boolean(json_object_get(obj, k)), "json_get_bool(%s)", k);
        if (json_get_object(obj, k, &v, &err) == JSON_OK)
            FUZZ_CHECK(json_is_object(v), "json_get_object(%s)", k);
        if (json_get_array(obj, k, &v, &err) == JSON_OK) {
            FUZZ_CHECK(json_is_array(v), "json_get_array(%s)", k);
            /* messages: [{role, content}, ...] */
            size_t j;
            json_t *m;
            json_array_foreach(v, j, m) {
                if (json_get_string(m, "role", &s, &err) == JSON_OK)
                    FUZZ_CHECK(s != NULL, "role");
                (void)json_get_string(m, "content", &s, &err);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    json_t *v = (json_t *)1;
    json_err_t err;
    memset(&err, 0, sizeof err);
    int rc = json_parse(text, size, &v, &err);
    if (rc != JSON_OK) {
        FUZZ_CHECK(rc == JSON_EPARSE || rc == JSON_ENOMEM, "json_parse returned %d", rc);
        FUZZ_CHECK(v == NULL, "a value left behind a failure");
        FUZZ_CHECK(err.msg[0] != '\0', "a failure without a message");
        FUZZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL, "message not terminated");
    } else {
        FUZZ_CHECK(v != NULL, "success without a value");
        int d = depth(v, JSON_MAX_DEPTH + 1);
        FUZZ_CHECK(d <= JSON_MAX_DEPTH, "nested %d deep (limit %d)", d, JSON_MAX_DEPTH);
        char *dump = json_dumps_compact(v);
        FUZZ_CHECK(dump != NULL, "json_dumps_compact failed");
        json_t *again = NULL;
        rc = json_parse(dump, strlen(dump), &again, &err);
        FUZZ_CHECK(rc == JSON_OK, "its own serialisation does not parse: %s", err.msg);
        FUZZ_CHECK(json_equal(v, again), "round trip changed the value: %s", dump);
        json_decref(again);
        free(dump);
        read_fields(v);
        if (json_is_array(v)) {
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x) read_fields(x);
        }
        json_decref(v);
    }

    json_t *s = json_string_lossy(text, size);
    FUZZ_CHECK(s != NULL, "json_string_lossy failed");
    size_t n = json_string_length(s);
    FUZZ_CHECK(utf8_valid(json_string_value(s), n), "json_string_lossy gave invalid UTF-8");
    FUZZ_CHECK(n <= size * 3, "json_string_lossy grew %zu bytes to %zu", size, n);
    char *dump = json_dumps_compact(s);
    FUZZ_CHECK(dump != NULL, "a lossy string does not serialise");
    free(dump);
    json_decref(s);
    return 0;
}
