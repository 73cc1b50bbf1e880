/* test_utf8.c — boundaries and repair of UTF-8 text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/utf8.h"

static void test_complete_len(void **state)
{
    (void)state;
    assert_int_equal(utf8_complete_len("abc", 3), 3);
    /* "é" = C3 A9 cut after its first byte */
    assert_int_equal(utf8_complete_len("a\xC3", 2), 1);
    assert_int_equal(utf8_complete_len("a\xC3\xA9", 3), 3);
    /* 4-byte emoji cut after 3 bytes */
    assert_int_equal(utf8_complete_len("\xF0\x9F\x98", 3), 0);
    /* an invalid byte is not "incomplete": it is kept for repair */
    assert_int_equal(utf8_complete_len("a\xFF", 2), 2);
    assert_int_equal(utf8_complete_len("a\xC3x", 3), 3);
}

static void test_valid(void **state)
{
    (void)state;
    const char *ok = "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80";
    assert_true(utf8_valid(ok, strlen(ok)));
    assert_false(utf8_valid("\xC0\xAF", 2));           /* overlong */
    assert_false(utf8_valid("\xED\xA0\x80", 3));       /* surrogate */
    assert_false(utf8_valid("\xF4\x90\x80\x80", 4));   /* > U+10FFFF */
    assert_false(utf8_valid("\xC3", 1));               /* truncated */
}

static void test_decode(void **state)
{
    (void)state;
    uint32_t cp = 0;
    assert_int_equal(utf8_decode("A", 1, &cp), 1);
    assert_int_equal(cp, 'A');
    assert_int_equal(utf8_decode("\xc3\xa9", 2, &cp), 2);      /* é */
    assert_int_equal(cp, 0xE9);
    assert_int_equal(utf8_decode("\xe7\xbc\x93x", 4, &cp), 3);  /* 缓 */
    assert_int_equal(cp, 0x7F13);
    assert_int_equal(utf8_decode("\xf0\x9f\x98\x80", 4, &cp), 4);
    assert_int_equal(cp, 0x1F600);
    assert_int_equal(utf8_decode("\xc0\x80", 2, &cp), 0);      /* overlong */
    assert_int_equal(utf8_decode("\xed\xa0\x80", 3, &cp), 0);  /* surrogate */
    assert_int_equal(utf8_decode("\xf4\x90\x80\x80", 4, &cp), 0); /* > U+10FFFF */
    assert_int_equal(utf8_decode("\x80", 1, &cp), 0);          /* a lone continuation */
    assert_int_equal(utf8_decode("\xe7\xbc", 2, &cp), -1);     /* cut short */
    assert_int_equal(utf8_decode("\xe7\x41", 2, &cp), 0);      /* broken */
}

static void check_sanitized(const char *in, size_t n, const char *want)
{
    buf_t b;
    buf_init(&b, 1024);
    assert_int_equal(utf8_append_sanitized(&b, in, n), BUF_OK);
    assert_string_equal(b.data, want);
    assert_true(utf8_valid(b.data, b.len));
    buf_cleanup(&b);
}

static void test_sanitize(void **state)
{
    (void)state;
    check_sanitized("plain", 5, "plain");
    check_sanitized("a\xFF" "b", 3, "a\xEF\xBF\xBD" "b");
    /* E2 82 followed by ASCII: one U+FFFD for the maximal subpart */
    check_sanitized("\xE2\x82x", 3, "\xEF\xBF\xBDx");
    /* truncated at the end */
    check_sanitized("ok\xF0\x9F", 4, "ok\xEF\xBF\xBD");
    buf_t small;
    buf_init(&small, 4);
    assert_int_equal(utf8_append_sanitized(&small, "\xFF\xFF", 2), BUF_ETOOBIG);
    buf_cleanup(&small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete_len),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_sanitize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
