/* test_extract_text.c — kvchat-extract's text layer in-process: the
 * normalising sink (textout.h), byte decoding (text.h), code-point UTF-8
 * (codepoint.h) and the shared code/message tables (extract.h).
 *
 * - the sink: CRLF and CR, trailing blanks, NUL and control characters,
 *   tabs kept, blank-line runs capped at two, no leading blank lines, one
 *   final newline, NBSP/soft hyphen/BOM, ill-formed UTF-8 and surrogates,
 *   the output limit (sticky), whitespace-only input is "no text";
 * - decoding: UTF-8 (with and without BOM), UTF-16 LE/BE with surrogate
 *   pairs, unpaired surrogates and an odd last byte, Latin-1 with the
 *   Windows-1252 range, mostly-UTF-8 with stray bytes;
 * - maximal-subpart replacement for truncated, overlong, surrogate and
 *   out-of-range sequences;
 * - code names, exit statuses and messages round-trip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "extract/codepoint.h"
#include "extract/extract.h"
#include "extract/text.h"
#include "extract/textout.h"

/* Feed bytes as UTF-8 through a sink and finish it; returns the code and
 * the text (caller frees) through *text. */
static int sink_run(const char *in, size_t n, size_t max, char **text)
{
    textout_t t;
    textout_init(&t, max);
    textout_put_utf8(&t, in, n);
    size_t len, chars;
    int rc = textout_finish(&t, text, &len, &chars);
    if (rc == 0) {
        assert_int_equal(strlen(*text), len);
        assert_int_equal(codepoint_count(*text, len), chars);
    }
    textout_cleanup(&t);
    return rc;
}

static void expect_sink(const char *in, size_t n, const char *want)
{
    char *text = NULL;
    assert_int_equal(sink_run(in, n, 1 << 20, &text), 0);
    assert_string_equal(text, want);
    free(text);
}

#define EXPECT(lit, want) expect_sink(lit, sizeof(lit) - 1, want)

static void test_sink_lines(void **state)
{
    (void)state;
    EXPECT("a\r\nb\rc\n", "a\nb\nc\n");
    EXPECT("a\r\r\nb", "a\n\nb\n");
    EXPECT("trailing   \t\nx  ", "trailing\nx\n");
    EXPECT("\n\n\n  \nstart", "start\n");
    EXPECT("a\n\n\n\n\n\n\nb", "a\n\n\nb\n");
    EXPECT("a\n \n\t\n \n \nb", "a\n\n\nb\n");
    EXPECT("    indented\n\tcode", "    indented\n\tcode\n");
    EXPECT("end\n\n\n", "end\n");
    EXPECT("page\fbreak", "page\nbreak\n");
}

static void test_sink_controls(void **state)
{
    (void)state;
    EXPECT("a\0b\x01" "c\x1b" "d\x7f" "e", "abcde\n");
    EXPECT("C1\xc2\x85x\xc2\x9fy", "C1\nxy\n");           /* NEL breaks, APC goes */
    EXPECT("non\xc2\xa0" "breaking", "non breaking\n");
    EXPECT("soft\xc2\xadhyphen", "softhyphen\n");
    EXPECT("\xef\xbb\xbf" "bom", "bom\n");
    EXPECT("line\xe2\x80\xa8sep", "line\nsep\n");
    EXPECT("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n");
    EXPECT("bad\xff" "byte", "bad\xef\xbf\xbd" "byte\n");
}

static void test_sink_codepoints(void **state)
{
    (void)state;
    textout_t t;
    textout_init(&t, 1024);
    assert_int_equal(textout_putc(&t, 'x'), 0);
    assert_int_equal(textout_putc(&t, 0xD800), 0);     /* lone surrogate */
    assert_int_equal(textout_putc(&t, 0x110000), 0);   /* past Unicode */
    assert_true(!textout_at_line_start(&t));
    assert_int_equal(textout_newline(&t), 0);
    assert_true(textout_at_line_start(&t));
    assert_int_equal(textout_newline(&t), 0);          /* no second break */
    textout_putc(&t, 'y');
    assert_int_equal(textout_blank_line(&t), 0);
    assert_int_equal(textout_blank_line(&t), 0);       /* still one blank line */
    textout_putc(&t, 'z');
    char *text;
    size_t len, chars;
    assert_int_equal(textout_finish(&t, &text, &len, &chars), 0);
    assert_string_equal(text, "x\xef\xbf\xbd\xef\xbf\xbd\ny\n\nz\n");
    assert_int_equal(chars, 9);
    free(text);
    textout_cleanup(&t);
}

static void test_sink_limit(void **state)
{
    (void)state;
    char *text = NULL;
    assert_int_equal(sink_run("0123456789", 10, 10, &text), EXTRACT_ETOOBIG);  /* + '\n' */
    assert_null(text);
    assert_int_equal(sink_run("012345678", 9, 10, &text), 0);
    assert_string_equal(text, "012345678\n");
    free(text);

    textout_t t;
    textout_init(&t, 4);
    assert_int_equal(textout_put_utf8(&t, "abcdef", 6), EXTRACT_ETOOBIG);
    assert_int_equal(textout_putc(&t, 'g'), EXTRACT_ETOOBIG);   /* sticky */
    assert_int_equal(textout_newline(&t), EXTRACT_ETOOBIG);
    assert_int_equal(textout_error(&t), EXTRACT_ETOOBIG);
    textout_cleanup(&t);
}

static void test_sink_no_text(void **state)
{
    (void)state;
    char *text = (char *)"unchanged";
    assert_int_equal(sink_run("", 0, 100, &text), EXTRACT_ENOTEXT);
    assert_null(text);
    assert_int_equal(sink_run(" \n\t\r\n\0\x01", 7, 100, &text), EXTRACT_ENOTEXT);
    textout_cleanup(NULL);
}

static int collect(void *arg, uint32_t cp)
{
    textout_t *t = arg;
    return textout_putc(t, cp);
}

/* Decode bytes and return the sink's text (caller frees). */
static char *decode(const char *p, size_t n, text_encoding_t *enc)
{
    textout_t t;
    textout_init(&t, 1 << 20);
    assert_int_equal(text_decode((const unsigned char *)p, n, collect, &t, enc), 0);
    char *text = NULL;
    size_t len, chars;
    assert_int_equal(textout_finish(&t, &text, &len, &chars), 0);
    textout_cleanup(&t);
    return text;
}

#define DECODE(lit, enc) decode(lit, sizeof(lit) - 1, enc)

static void test_decode_encodings(void **state)
{
    (void)state;
    text_encoding_t enc;
    char *s;

    s = DECODE("plain ascii", &enc);
    assert_int_equal(enc, TEXT_ENC_UTF8);
    assert_string_equal(s, "plain ascii\n");
    free(s);

    s = DECODE("\xef\xbb\xbf" "Gr\xc3\xbc\xc3\x9f" "e", &enc);
    assert_int_equal(enc, TEXT_ENC_UTF8);
    assert_string_equal(s, "Gr\xc3\xbc\xc3\x9f" "e\n");
    free(s);

    /* UTF-16LE: "hé😀" then an unpaired high surrogate, then an odd byte. */
    s = DECODE("\xff\xfeh\x00\xe9\x00\x3d\xd8\x00\xde!\x00\x00\xd8x\x00y", &enc);
    assert_int_equal(enc, TEXT_ENC_UTF16LE);
    assert_string_equal(s, "h\xc3\xa9\xf0\x9f\x98\x80!\xef\xbf\xbdx\xef\xbf\xbd\n");
    free(s);

    s = DECODE("\xfe\xff\x00h\x00i\x20\xac", &enc);
    assert_int_equal(enc, TEXT_ENC_UTF16BE);
    assert_string_equal(s, "hi\xe2\x82\xac\n");
    free(s);

    /* Latin-1 / Windows-1252: é, €, “ ”, and undefined 0x81. */
    s = DECODE("caf\xe9 \x80 \x93q\x94 \x81", &enc);
    assert_int_equal(enc, TEXT_ENC_LATIN1);
    assert_string_equal(s, "caf\xc3\xa9 \xe2\x82\xac \xe2\x80\x9cq\xe2\x80\x9d \xef\xbf\xbd\n");
    free(s);

    /* Mostly UTF-8 with stray bytes: repaired, not re-read as Latin-1. */
    s = DECODE("Gr\xc3\xbc\xc3\x9f" "e \xff ok \xc3\xa9", &enc);
    assert_int_equal(enc, TEXT_ENC_UTF8_REPAIRED);
    assert_string_equal(s, "Gr\xc3\xbc\xc3\x9f" "e \xef\xbf\xbd ok \xc3\xa9\n");
    free(s);
}

static void test_text_to_utf8_limit(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b, 4);
    assert_int_equal(text_to_utf8((const unsigned char *)"\xe9\xe9\xe9", 3, &b), EXTRACT_ETOOBIG);
    buf_cleanup(&b);
    buf_init(&b, 64);
    assert_int_equal(text_to_utf8((const unsigned char *)"\xe9t\xe9", 3, &b), 0);
    assert_string_equal(b.data, "\xc3\xa9t\xc3\xa9");
    buf_cleanup(&b);
}

/* Decode a byte string with codepoint_decode into code points. */
static size_t decode_all(const char *p, size_t n, uint32_t *out, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < max;) {
        i += codepoint_decode((const unsigned char *)p + i, n - i, &out[k++], NULL);
    }
    return k;
}

static void test_maximal_subpart(void **state)
{
    (void)state;
    uint32_t cp[8];
    const uint32_t R = CODEPOINT_REPLACEMENT;

    assert_int_equal(decode_all("\xe2\x82" "A", 3, cp, 8), 2);     /* truncated 3-byte */
    assert_int_equal(cp[0], R);
    assert_int_equal(cp[1], 'A');

    assert_int_equal(decode_all("\xc0\x80", 2, cp, 8), 2);          /* overlong NUL */
    assert_int_equal(cp[0], R);
    assert_int_equal(cp[1], R);

    assert_int_equal(decode_all("\xed\xa0\x80", 3, cp, 8), 3);      /* surrogate */
    assert_int_equal(cp[2], R);

    assert_int_equal(decode_all("\xf4\x90\x80\x80", 4, cp, 8), 4);  /* > U+10FFFF */

    assert_int_equal(decode_all("\xf0\x9f\x98", 3, cp, 8), 1);      /* cut emoji */
    assert_int_equal(cp[0], R);

    bool valid;
    assert_int_equal(codepoint_decode((const unsigned char *)"\xf4\x8f\xbf\xbf", 4, &cp[0],
                                      &valid), 4);
    assert_true(valid);
    assert_int_equal(cp[0], 0x10FFFF);

    char enc[4];
    assert_int_equal(codepoint_encode(0xDC00, enc), 3);            /* surrogate: U+FFFD */
    assert_memory_equal(enc, "\xef\xbf\xbd", 3);
    assert_int_equal(codepoint_encode(0x1F600, enc), 4);
    assert_memory_equal(enc, "\xf0\x9f\x98\x80", 4);
}

static void test_codes(void **state)
{
    (void)state;
    static const int program[] = {
        EXTRACT_EUSAGE, EXTRACT_EUNSUPPORTED, EXTRACT_ECORRUPT, EXTRACT_EENCRYPTED,
        EXTRACT_ENOTEXT, EXTRACT_ETOOBIG, EXTRACT_EBOMB, EXTRACT_EMEMORY, EXTRACT_EINTERNAL,
    };
    int seen[256] = { 0 };
    for (size_t i = 0; i < sizeof program / sizeof program[0]; i++) {
        int c = program[i];
        const char *name = extract_code_name(c);
        assert_non_null(name);
        assert_int_equal(extract_code_parse(name, strlen(name)), c);
        int st = extract_exit_status(c);
        assert_true(st > 1 && st < 126);
        assert_int_equal(seen[st]++, 0);                 /* distinct statuses */
        assert_int_equal(extract_code_from_exit(st), c);
    }
    assert_int_equal(extract_exit_status(EXTRACT_OK), 0);
    assert_int_equal(extract_code_from_exit(1), EXTRACT_OK);     /* not ours */
    assert_int_equal(extract_code_from_exit(127), EXTRACT_OK);
    assert_null(extract_code_name(EXTRACT_ETIMEOUT));           /* runner only */
    assert_int_equal(extract_exit_status(EXTRACT_ETIMEOUT), -EXTRACT_EINTERNAL);
    assert_string_equal(extract_strerror(12345), "unknown error");

    assert_true(extract_error_is_unsupported(EXTRACT_EUNSUPPORTED));
    assert_false(extract_error_is_unsupported(EXTRACT_ECORRUPT));
    assert_true(extract_error_is_internal(EXTRACT_ESPAWN));
    assert_false(extract_error_is_internal(EXTRACT_EENCRYPTED));

    for (int t = EXTRACT_TYPE_TXT; t < EXTRACT_TYPE_COUNT; t++) {
        const char *n = extract_type_name((extract_type_t)t);
        assert_int_equal(extract_type_parse(n, strlen(n)), t);
    }
    assert_int_equal(extract_type_parse("unknown", 7), EXTRACT_TYPE_UNKNOWN);
    assert_string_equal(extract_type_name((extract_type_t)99), "unknown");

    char msg[EXTRACT_MESSAGE_MAX];
    extract_message(EXTRACT_EENCRYPTED, EXTRACT_TYPE_PDF, msg, sizeof msg);
    assert_string_equal(msg, "The PDF is password-protected; kvchat cannot read it.");
    extract_message(EXTRACT_ENOTEXT, EXTRACT_TYPE_PDF, msg, sizeof msg);
    assert_non_null(strstr(msg, "scanned document"));
    extract_message(EXTRACT_ECORRUPT, EXTRACT_TYPE_DOCX, msg, sizeof msg);
    assert_string_equal(msg, "The Word document is damaged or unreadable.");
    extract_message(EXTRACT_EBOMB, EXTRACT_TYPE_DOCX, msg, 8);    /* truncates safely */
    assert_int_equal(strlen(msg), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sink_lines),
        cmocka_unit_test(test_sink_controls),
        cmocka_unit_test(test_sink_codepoints),
        cmocka_unit_test(test_sink_limit),
        cmocka_unit_test(test_sink_no_text),
        cmocka_unit_test(test_decode_encodings),
        cmocka_unit_test(test_text_to_utf8_limit),
        cmocka_unit_test(test_maximal_subpart),
        cmocka_unit_test(test_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
