/* test_json.c — json.h: parsing with limits, typed getters, lossy UTF-8.
 *
 * - json_parse accepts valid text of any type, refuses trailing garbage,
 *   malformed text (with line and column in the message), invalid UTF-8,
 *   numbers that do not fit, and nesting deeper than JSON_MAX_DEPTH (and
 *   accepts exactly JSON_MAX_DEPTH); brackets inside strings do not count;
 * - getters tell missing (absent or null) from wrong type, range-check
 *   int64 and name the field in their message;
 * - json_string_lossy replaces each maximal invalid subpart with U+FFFD and
 *   keeps valid text byte for byte;
 * - json_dumps_compact is compact and keeps UTF-8.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/json.h"

static json_t *parse_ok(const char *text)
{
    json_t *j = NULL;
    json_err_t err;
    int rc = json_parse(text, strlen(text), &j, &err);
    if (rc != JSON_OK)
        fail_msg("parse of %s failed: %s", text, err.msg);
    assert_non_null(j);
    return j;
}

static void parse_bad(const char *text, size_t len, const char *want_in_msg)
{
    json_t *j = (json_t *)1;
    json_err_t err;
    memset(&err, 0, sizeof err);
    assert_int_equal(json_parse(text, len, &j, &err), JSON_EPARSE);
    assert_null(j);
    if (want_in_msg && !strstr(err.msg, want_in_msg))
        fail_msg("message '%s' lacks '%s'", err.msg, want_in_msg);
}

static void test_parse_valid(void **state)
{
    (void)state;
    json_t *j = parse_ok("{\"a\": [1, 2.5, \"x\", true, null], \"b\": {}}");
    assert_true(json_is_object(j));
    assert_int_equal(json_array_size(json_object_get(j, "a")), 5);
    json_decref(j);
    /* Any top-level type. */
    j = parse_ok("42");
    assert_int_equal(json_integer_value(j), 42);
    json_decref(j);
    j = parse_ok("\"h\\u00e9\"");
    assert_string_equal(json_string_value(j), "h\xc3\xa9");
    json_decref(j);
    /* Not NUL-terminated: only len bytes count. */
    json_t *k = NULL;
    assert_int_equal(json_parse("[1]xyz", 3, &k, NULL), JSON_OK);
    assert_int_equal(json_array_size(k), 1);
    json_decref(k);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    const char *t = "{\"a\": }";
    parse_bad(t, strlen(t), "Malformed JSON at line 1 column 7");
    t = "{\"a\": 1}\n{\"b\": 2}";
    parse_bad(t, strlen(t), "at line 2");
    t = "{\"a\": 1} garbage";
    parse_bad(t, strlen(t), "end of file expected");
    t = "[1, 2,]";
    parse_bad(t, strlen(t), "Malformed JSON");
    parse_bad("", 0, "empty");
    t = "{\"a\":\n\n  tru}";
    parse_bad(t, strlen(t), "line 3");
    /* Raw NUL byte and an escaped NUL are both refused. */
    parse_bad("\"a\0b\"", 5, "Malformed JSON");
    t = "\"a\\u0000b\"";
    parse_bad(t, strlen(t), "Malformed JSON");
}

static void test_parse_invalid_utf8(void **state)
{
    (void)state;
    const char *t = "{\"a\": \"\xff\xfe\"}";
    parse_bad(t, strlen(t), "Malformed JSON");
    t = "[\"\xed\xa0\x80\"]"; /* UTF-8 encoded surrogate */
    parse_bad(t, strlen(t), "Malformed JSON");
    t = "[\"\xc0\xaf\"]"; /* overlong '/' */
    parse_bad(t, strlen(t), "Malformed JSON");
}

static void test_parse_numbers(void **state)
{
    (void)state;
    json_t *j = parse_ok("[9223372036854775807, -9223372036854775808, 1e308, 1e-400]");
    assert_true(json_integer_value(json_array_get(j, 0)) == INT64_MAX);
    assert_true(json_integer_value(json_array_get(j, 1)) == INT64_MIN);
    assert_true(json_is_real(json_array_get(j, 2)));
    json_decref(j);
    const char *t = "[9223372036854775808]";
    parse_bad(t, strlen(t), "too big");
    t = "[-9223372036854775809]";
    parse_bad(t, strlen(t), "too big");
    t = "[1e400]";
    parse_bad(t, strlen(t), "overflow");
    t = "[123456789012345678901234567890]";
    parse_bad(t, strlen(t), "Malformed JSON");
}

static char *nested(int depth, char open, char close, const char *inner)
{
    size_t n = (size_t)depth * 2 + strlen(inner) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    memset(s, open, (size_t)depth);
    strcpy(s + depth, inner);
    memset(s + depth + strlen(inner), close, (size_t)depth);
    s[n - 1] = '\0';
    return s;
}

static void test_parse_depth(void **state)
{
    (void)state;
    /* Exactly the limit is fine. */
    char *s = nested(JSON_MAX_DEPTH, '[', ']', "1");
    json_t *j = parse_ok(s);
    json_decref(j);
    free(s);
    /* One more is refused, with the column of the offending bracket. */
    s = nested(JSON_MAX_DEPTH + 1, '[', ']', "1");
    char want[64];
    snprintf(want, sizeof want, "column %d: nesting deeper than %d", JSON_MAX_DEPTH + 1,
             JSON_MAX_DEPTH);
    parse_bad(s, strlen(s), want);
    free(s);
    /* A hostile body: a million '[' is refused without recursion. */
    size_t big = 1000000;
    s = malloc(big);
    assert_non_null(s);
    memset(s, '[', big);
    parse_bad(s, big, "nesting deeper");
    free(s);
    /* Objects count too. */
    char *o = malloc(JSON_MAX_DEPTH * 8 + 8);
    assert_non_null(o);
    o[0] = '\0';
    for (int i = 0; i <= JSON_MAX_DEPTH; i++)
        strcat(o, "{\"a\":");
    strcat(o, "1");
    for (int i = 0; i <= JSON_MAX_DEPTH; i++)
        strcat(o, "}");
    parse_bad(o, strlen(o), "nesting deeper");
    free(o);
    /* Brackets inside strings (and escaped quotes) are not nesting. */
    char str[400] = "[\"";
    for (int i = 0; i < 100; i++)
        strcat(str, "[{");
    strcat(str, "\\\"[[[\"]");
    j = parse_ok(str);
    assert_true(json_is_array(j));
    json_decref(j);
}

static void test_getters(void **state)
{
    (void)state;
    json_t *j = parse_ok("{\"s\":\"str\",\"i\":7,\"r\":2.0,\"f\":2.5,\"big\":1e30,"
                         "\"b\":false,\"a\":[1],\"o\":{\"x\":1},\"n\":null,"
                         "\"neg\":-9223372036854775808}");
    json_err_t err;
    const char *s = NULL;
    int64_t i = 0;
    double d = 0;
    bool b = true;
    json_t *x = NULL;

    assert_int_equal(json_get_string(j, "s", &s, &err), JSON_OK);
    assert_string_equal(s, "str");
    assert_int_equal(json_get_string(j, "missing", &s, &err), JSON_EMISSING);
    assert_string_equal(err.msg, "Missing required field 'missing'");
    assert_int_equal(json_get_string(j, "n", &s, &err), JSON_EMISSING);
    assert_int_equal(json_get_string(j, "i", &s, &err), JSON_ETYPE);
    assert_string_equal(err.msg, "Field 'i' must be a string");

    assert_int_equal(json_get_int(j, "i", &i, &err), JSON_OK);
    assert_int_equal(i, 7);
    assert_int_equal(json_get_int(j, "r", &i, &err), JSON_OK);
    assert_int_equal(i, 2);
    assert_int_equal(json_get_int(j, "neg", &i, &err), JSON_OK);
    assert_true(i == INT64_MIN);
    assert_int_equal(json_get_int(j, "f", &i, &err), JSON_ETYPE);
    assert_string_equal(err.msg, "Field 'f' must be an integer");
    assert_int_equal(json_get_int(j, "big", &i, &err), JSON_ETYPE);
    assert_non_null(strstr(err.msg, "out of range"));
    assert_int_equal(json_get_int(j, "s", &i, &err), JSON_ETYPE);
    assert_int_equal(json_get_int(j, "nope", &i, NULL), JSON_EMISSING);
    assert_int_equal(json_get_int_range(j, "i", 1, 5, &i, &err), JSON_ETYPE);
    assert_string_equal(err.msg, "Field 'i' must be between 1 and 5");
    i = 0;
    assert_int_equal(json_get_int_range(j, "i", 1, 7, &i, &err), JSON_OK);
    assert_int_equal(i, 7);

    assert_int_equal(json_get_number(j, "f", &d, &err), JSON_OK);
    assert_true(d == 2.5);
    assert_int_equal(json_get_number(j, "i", &d, &err), JSON_OK);
    assert_true(d == 7.0);
    assert_int_equal(json_get_number(j, "b", &d, &err), JSON_ETYPE);
    assert_string_equal(err.msg, "Field 'b' must be a number");

    assert_int_equal(json_get_bool(j, "b", &b, &err), JSON_OK);
    assert_false(b);
    assert_int_equal(json_get_bool(j, "i", &b, &err), JSON_ETYPE);

    assert_int_equal(json_get_array(j, "a", &x, &err), JSON_OK);
    assert_int_equal(json_array_size(x), 1);
    assert_int_equal(json_get_array(j, "o", &x, &err), JSON_ETYPE);
    assert_string_equal(err.msg, "Field 'o' must be an array");
    assert_int_equal(json_get_object(j, "o", &x, &err), JSON_OK);
    assert_true(json_is_object(x));
    assert_int_equal(json_get_object(j, "a", &x, &err), JSON_ETYPE);

    /* Not an object at all. */
    json_t *arr = parse_ok("[1]");
    assert_int_equal(json_get_int(arr, "x", &i, &err), JSON_ETYPE);
    assert_non_null(strstr(err.msg, "object"));
    assert_int_equal(json_get_int(NULL, "x", &i, &err), JSON_ETYPE);
    json_decref(arr);

    /* Out-parameters are untouched on failure. */
    s = "keep";
    assert_int_equal(json_get_string(j, "i", &s, NULL), JSON_ETYPE);
    assert_string_equal(s, "keep");
    json_decref(j);
    assert_string_equal(json_strerror(JSON_ETYPE), "wrong type");
}

static void lossy_is(const char *in, size_t n, const char *want)
{
    json_t *j = json_string_lossy(in, n);
    assert_non_null(j);
    assert_int_equal(json_string_length(j), strlen(want));
    assert_memory_equal(json_string_value(j), want, strlen(want));
    json_decref(j);
}

#define FFFD "\xef\xbf\xbd"

static void test_string_lossy(void **state)
{
    (void)state;
    /* Valid text is kept byte for byte, including 4-byte sequences. */
    const char *ok = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
    lossy_is(ok, strlen(ok), ok);
    /* jansson itself refuses invalid UTF-8. */
    assert_null(json_string("a\xff"));
    lossy_is("a\xff" "b", 3, "a" FFFD "b");
    /* Stray continuation bytes: one U+FFFD each. */
    lossy_is("\x80\x80", 2, FFFD FFFD);
    /* Overlong encodings: C0/C1 and E0 80..9F and F0 80..8F. */
    lossy_is("\xc0\xaf", 2, FFFD FFFD);
    lossy_is("\xe0\x80\xaf", 3, FFFD FFFD FFFD);
    lossy_is("\xf0\x80\x80\xaf", 4, FFFD FFFD FFFD FFFD);
    /* Surrogates (ED A0..BF) and beyond U+10FFFF (F4 90, F5..FF). */
    lossy_is("\xed\xa0\x80", 3, FFFD FFFD FFFD);
    lossy_is("\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD);
    lossy_is("\xf5\x80", 2, FFFD FFFD);
    /* A truncated sequence is one maximal subpart: one U+FFFD. */
    lossy_is("a\xe2\x82", 3, "a" FFFD);
    lossy_is("\xe2\x82" "b", 3, FFFD "b");
    lossy_is("\xf0\x9f\x98" "x\xf0\x9f\x98\x80", 8, FFFD "x\xf0\x9f\x98\x80");
    /* NUL is valid UTF-8 and kept. */
    json_t *j = json_string_lossy("a\0b", 3);
    assert_int_equal(json_string_length(j), 3);
    json_decref(j);
    /* Empty and NULL. */
    lossy_is("", 0, "");
    j = json_string_lossy(NULL, 5);
    assert_int_equal(json_string_length(j), 0);
    json_decref(j);
    /* The result serializes and parses back. */
    j = json_string_lossy("x\xfe\xffy", 4);
    char *text = json_dumps_compact(j);
    json_decref(j);
    assert_string_equal(text, "\"x" FFFD FFFD "y\"");
    json_t *back = parse_ok(text);
    assert_string_equal(json_string_value(back), "x" FFFD FFFD "y");
    json_decref(back);
    free(text);
}

static void test_dumps_compact(void **state)
{
    (void)state;
    json_t *j = json_pack("{s:[i,s],s:b}", "a", 1, "\xc3\xa9", "t", 1);
    char *s = json_dumps_compact(j);
    assert_non_null(s);
    assert_string_equal(s, "{\"a\":[1,\"\xc3\xa9\"],\"t\":true}");
    free(s);
    json_decref(j);
    /* Any type, including scalars. */
    j = json_integer(5);
    s = json_dumps_compact(j);
    assert_string_equal(s, "5");
    free(s);
    json_decref(j);
    assert_null(json_dumps_compact(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_invalid_utf8),
        cmocka_unit_test(test_parse_numbers),
        cmocka_unit_test(test_parse_depth),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_string_lossy),
        cmocka_unit_test(test_dumps_compact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
