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
 * - code names, exit statuses and messages round-trip;
 * - structure marks in the sink: offsets at the end of the text, moved back
 *   when blanks are dropped (at a line end, at the finish), labels and
 *   titles normalised (blanks, controls, ill-formed UTF-8, 256 bytes cut at
 *   a character), levels capped, empty titles ignored, nested headings,
 *   the count and byte limits dropping every mark but never the text;
 * - the mark line format: written and read back, and every way a line can
 *   be wrong refused;
 * - txt pages at form feeds and Markdown headings (ATX, setext, fences,
 *   front matter, lists, CRLF), with the text the same as the txt
 *   backend's.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ---- structure marks ------------------------------------------------------ */

/* The sink's marks as "K offset number label\n" lines, into buf. */
static const char *marks_str(const textout_t *t, char *buf, size_t n)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < textout_mark_count(t); i++) {
        extract_mark_t m;
        textout_mark_get(t, i, &m);
        int k = snprintf(buf + o, n - o, "%c %zu %d %s\n", (char)m.kind, m.offset, m.number,
                         m.label);
        assert_true(k > 0 && (size_t)k < n - o);
        o += (size_t)k;
    }
    return buf;
}

#define PUT(t, lit) textout_put_utf8(t, lit, sizeof(lit) - 1)

static void test_marks_offsets(void **state)
{
    (void)state;
    char buf[2048];
    textout_t t;
    textout_init(&t, 1 << 20);
    assert_int_equal(textout_last_page(&t), 0);
    textout_page(&t, 1, "i");                  /* at the very start */
    textout_heading(&t, 1, "Intro", 5);
    PUT(&t, "Intro\nSome text.");
    textout_blank_line(&t);
    assert_int_equal(textout_len(&t), 18);
    textout_page(&t, 2, NULL);
    assert_int_equal(textout_last_page(&t), 2);
    PUT(&t, "Words   \t");
    textout_page(&t, 3, "");                  /* before blanks the line end drops */
    textout_newline(&t);
    PUT(&t, "Next");
    textout_blank_line(&t);
    textout_heading(&t, 2, "Tail", 4);        /* in blanks the finish drops */
    textout_page(&t, 4, "iv");
    assert_string_equal(marks_str(&t, buf, sizeof buf),
                        "P 0 1 i\nH 0 1 Intro\nP 18 2 \nP 23 3 \nH 30 2 Tail\nP 30 4 iv\n");
    char *text;
    size_t len, chars;
    assert_int_equal(textout_finish(&t, &text, &len, &chars), 0);
    assert_string_equal(text, "Intro\nSome text.\n\nWords\nNext\n");
    assert_int_equal(len, 29);
    /* What the dropped blank lines held now starts at the end of the text. */
    assert_string_equal(marks_str(&t, buf, sizeof buf),
                        "P 0 1 i\nH 0 1 Intro\nP 18 2 \nP 23 3 \nH 29 2 Tail\nP 29 4 iv\n");
    assert_false(textout_marks_dropped(&t));
    free(text);
    textout_cleanup(&t);

    /* A mark right after the last character points at the end too. */
    textout_init(&t, 1024);
    PUT(&t, "abc");
    textout_page(&t, 1, NULL);
    assert_int_equal(textout_finish(&t, &text, &len, &chars), 0);
    assert_string_equal(marks_str(&t, buf, sizeof buf), "P 4 1 \n");
    free(text);
    textout_cleanup(&t);
}

static void test_marks_labels(void **state)
{
    (void)state;
    char buf[4096];
    textout_t t;
    textout_init(&t, 1 << 20);
    /* Blanks of every kind collapse; controls are blanks; soft hyphens and
     * BOMs go; ill-formed UTF-8 is U+FFFD. */
    static const char messy[] = "  A\t\ttitle\r\n with\xc2\xa0" "lines\x01\x7f"
                                "\xc2\x85" "and\xe2\x80\xa8" "so\xc2\xad" "ft \xef\xbb\xbf\xff  ";
    textout_heading(&t, 3, messy, sizeof messy - 1);
    textout_page(&t, 7, " \t xiv\n");
    textout_heading(&t, 9, "Deep", 4);                 /* level capped at 6 */
    textout_heading(&t, 0, "No level", 8);            /* ignored */
    textout_heading(&t, 2, " \t\n", 3);               /* empty title: ignored */
    textout_heading(&t, 2, NULL, 0);
    textout_page(&t, 0, "zero");                       /* ignored */
    assert_string_equal(marks_str(&t, buf, sizeof buf),
                        "H 0 3 A title with lines and soft \xef\xbf\xbd\nP 0 7 xiv\nH 0 6 Deep\n");
    textout_cleanup(&t);

    /* 256 bytes at most, cut before a character that does not fit. */
    char long_title[400];
    memset(long_title, 'x', 255);
    memcpy(long_title + 255, "\xc3\xa9tail", 6);
    textout_init(&t, 1 << 20);
    textout_heading(&t, 1, long_title, 261);
    extract_mark_t m;
    textout_mark_get(&t, 0, &m);
    assert_int_equal(strlen(m.label), 255);
    memset(long_title, 'y', 300);
    textout_page(&t, 1, (memset(long_title + 300, 0, 1), long_title));
    textout_mark_get(&t, 1, &m);
    assert_int_equal(strlen(m.label), EXTRACT_MARK_LABEL_MAX);
    textout_cleanup(&t);
}

static void test_marks_heading_at(void **state)
{
    (void)state;
    char buf[1024];
    textout_t t;
    textout_init(&t, 1 << 20);
    PUT(&t, "Before\n");
    size_t outer = textout_len(&t);
    PUT(&t, "Outer ");
    size_t inner = textout_len(&t);
    PUT(&t, "Inner words");
    textout_heading_at(&t, inner, 3, NULL, 0);        /* title: the text since */
    textout_heading_at(&t, outer, 2, NULL, 0);        /* held a heading: not one */
    textout_newline(&t);
    size_t at = textout_len(&t);
    PUT(&t, "## Explicit ##\n");
    textout_heading_at(&t, at, 2, "Explicit", 8);
    textout_page(&t, 1, NULL);
    textout_heading_at(&t, at, 1, "Before the page", 15);   /* a mark after it */
    textout_heading_at(&t, 100000, 1, "Clamped", 7);       /* past the end: at it */
    assert_string_equal(marks_str(&t, buf, sizeof buf),
                        "H 13 3 Inner words\nH 25 2 Explicit\nP 40 1 \nH 40 1 Clamped\n");
    textout_cleanup(&t);
}

static void test_marks_limits(void **state)
{
    (void)state;
    /* Bytes: a small text's marks may take 64 KiB on the wire. */
    textout_t t;
    textout_init(&t, 1000);
    char title[EXTRACT_MARK_LABEL_MAX];
    memset(title, 'h', sizeof title);
    int i = 0;
    while (!textout_marks_dropped(&t) && i < 1000) {
        assert_int_equal(textout_heading(&t, 1, title, sizeof title), 0);
        i++;
    }
    assert_true(textout_marks_dropped(&t));
    assert_true(i > 200 && i < 300);
    assert_int_equal(textout_mark_count(&t), 0);      /* all of them, not a prefix */
    textout_heading(&t, 1, "more", 4);                /* and no more */
    assert_int_equal(textout_mark_count(&t), 0);
    PUT(&t, "the text is fine");
    char *text;
    size_t len, chars;
    assert_int_equal(textout_finish(&t, &text, &len, &chars), 0);
    assert_string_equal(text, "the text is fine\n");
    free(text);
    textout_cleanup(&t);

    /* Count: EXTRACT_MARKS_MAX marks, then none (the shortest lines, with a
     * text limit whose marks may take 16 MiB). */
    textout_init(&t, 200000000);
    for (int k = 1; k <= EXTRACT_MARKS_MAX; k++)
        textout_heading(&t, 1, "x", 1);
    assert_int_equal(textout_mark_count(&t), EXTRACT_MARKS_MAX);
    assert_false(textout_marks_dropped(&t));
    textout_heading(&t, 1, "x", 1);
    assert_true(textout_marks_dropped(&t));
    assert_int_equal(textout_mark_count(&t), 0);
    textout_page(&t, 5, NULL);
    assert_int_equal(textout_last_page(&t), 5);      /* still counted */
    textout_cleanup(&t);

    assert_int_equal(extract_marks_limit(1000), 64 << 10);
    assert_int_equal(extract_marks_limit((size_t)64 << 20), 8 << 20);
    assert_int_equal(extract_marks_limit((size_t)1 << 40), 16 << 20);
}

/* Parse a line given as a literal (without its '\n'). */
static int parse_lit(const char *line, extract_mark_t *m, size_t *label_len)
{
    return extract_mark_parse(line, strlen(line), m, label_len);
}

static void test_mark_lines(void **state)
{
    (void)state;
    char line[EXTRACT_MARK_LINE_MAX];
    extract_mark_t m = { EXTRACT_MARK_PAGE, 1234, 7, (char *)"iv" };
    assert_int_equal(extract_mark_format(&m, line), 12);
    assert_string_equal(line, "P\t1234\t7\tiv\n");
    /* Written labels always read back: controls become spaces, ill-formed
     * UTF-8 U+FFFD, and the label is cut to fit. */
    char label[600];
    memset(label, 'a', sizeof label - 1);
    label[sizeof label - 1] = '\0';
    label[3] = '\t';
    label[4] = '\n';
    label[5] = '\xff';
    memcpy(label + 254, "\xe2\x82\xac", 3);   /* a character across byte 256 */
    m = (extract_mark_t){ EXTRACT_MARK_HEADING, 0, 6, label };
    size_t n = extract_mark_format(&m, line);
    assert_true(n > 0 && line[n - 1] == '\n');
    size_t label_len;
    extract_mark_t back;
    assert_int_equal(extract_mark_parse(line, n - 1, &back, &label_len), 0);
    assert_int_equal(back.kind, EXTRACT_MARK_HEADING);
    assert_int_equal(back.offset, 0);
    assert_int_equal(back.number, 6);
    assert_int_equal(label_len, EXTRACT_MARK_LABEL_MAX);   /* the euro did not fit */
    assert_memory_equal(back.label, "aaa  \xef\xbf\xbd" "aaa", 11);
    assert_int_equal(back.label[label_len - 1], 'a');
    m.label = NULL;
    assert_int_equal(extract_mark_format(&m, line), 7);
    assert_string_equal(line, "H\t0\t6\t\n");
    m.number = 7;
    assert_int_equal(extract_mark_format(&m, line), 0);   /* not a level */
    m = (extract_mark_t){ (extract_mark_kind_t)'X', 0, 1, NULL };
    assert_int_equal(extract_mark_format(&m, line), 0);

    assert_int_equal(parse_lit("P\t0\t1\t", &back, &label_len), 0);
    assert_int_equal(label_len, 0);
    assert_int_equal(parse_lit("P\t18446744073709551615\t2147483647\tx y", &back, &label_len), 0);
    assert_int_equal(back.offset, SIZE_MAX);
    assert_int_equal(back.number, INT_MAX);
    assert_int_equal(parse_lit("H\t5\t3\tt\xc3\xa9tle", &back, &label_len), 0);
    assert_int_equal(label_len, 6);
    char max_label[8 + EXTRACT_MARK_LABEL_MAX + 2] = "H\t5\t3\t";
    memset(max_label + 6, 'x', EXTRACT_MARK_LABEL_MAX);
    max_label[6 + EXTRACT_MARK_LABEL_MAX] = '\0';
    assert_int_equal(parse_lit(max_label, &back, &label_len), 0);
    max_label[6 + EXTRACT_MARK_LABEL_MAX] = 'x';      /* 257 bytes */
    max_label[7 + EXTRACT_MARK_LABEL_MAX] = '\0';
    assert_int_equal(parse_lit(max_label, &back, &label_len), EXTRACT_EPROTOCOL);

    static const char *const bad[] = {
        "", "P", "P\t0\t1", "X\t0\t1\t", "p\t0\t1\t", "PP\t0\t1\t", "P 0 1 x",
        "P\t\t1\t", "P\t01\t1\t", "P\t-1\t1\t", "P\t+1\t1\t", "P\t1x\t1\t",
        "P\t18446744073709551616\t1\t",                      /* past SIZE_MAX */
        "P\t0\t0\t", "P\t0\t2147483648\t", "P\t0\t01\t",
        "H\t0\t0\tt", "H\t0\t7\tt", "H\t0\t-1\tt",
        "H\t0\t1\ttab\there", "H\t0\t1\tbell\a", "H\t0\t1\tdel\x7f",
        "H\t0\t1\tc1\xc2\x85", "H\t0\t1\tbad\xff", "H\t0\t1\tcut\xe2\x82",
        "H\t0\t1\tsurrogate\xed\xa0\x80", "H\t0\t1\toverlong\xc0\xaf",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (parse_lit(bad[i], &back, &label_len) != EXTRACT_EPROTOCOL)
            fail_msg("accepted: \"%s\"", bad[i]);
    /* A NUL is a control character too. */
    assert_int_equal(extract_mark_parse("H\t0\t1\ta\0b", 9, &back, &label_len),
                     EXTRACT_EPROTOCOL);
}

/* Run a text backend on bytes; returns the text (caller frees) and the
 * marks as marks_str() writes them into marks. */
static char *run_text_backend(int (*backend)(int, textout_t *), const char *data, size_t n,
                              char *marks, size_t cap)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fflush(f), 0);
    textout_t t;
    textout_init(&t, 1 << 20);
    assert_int_equal(backend(fileno(f), &t), 0);
    fclose(f);
    char *text;
    size_t len, chars;
    assert_int_equal(textout_finish(&t, &text, &len, &chars), 0);
    marks_str(&t, marks, cap);
    /* Every offset on a character boundary, none past the end, in order. */
    size_t prev = 0;
    for (size_t i = 0; i < textout_mark_count(&t); i++) {
        extract_mark_t m;
        textout_mark_get(&t, i, &m);
        assert_true(m.offset >= prev && m.offset <= len);
        assert_true(m.offset == len || (text[m.offset] & 0xC0) != 0x80);
        prev = m.offset;
    }
    textout_cleanup(&t);
    return text;
}

/* The md backend on a literal: its marks must be `want`, and its text the
 * txt backend's, which must have no marks (no form feed in these). */
static void expect_md(const char *md, const char *want)
{
    char marks[4096], none[64];
    char *text = run_text_backend(text_extract_md, md, strlen(md), marks, sizeof marks);
    char *plain = run_text_backend(text_extract, md, strlen(md), none, sizeof none);
    if (strcmp(marks, want) != 0)
        fail_msg("marks of\n%s\ngot:\n%swant:\n%s", md, marks, want);
    assert_string_equal(text, plain);
    if (!strchr(md, '\f'))
        assert_string_equal(none, "");
    free(text);
    free(plain);
}

static void test_txt_pages(void **state)
{
    (void)state;
    char marks[1024];
    char *text = run_text_backend(text_extract, "one\ftwo  \n\fthree\f", 17, marks, sizeof marks);
    assert_string_equal(text, "one\ntwo\n\nthree\n");
    assert_string_equal(marks, "P 0 1 \nP 4 2 \nP 9 3 \nP 15 4 \n");   /* the last one empty */
    free(text);
    /* UTF-16 too, and a text without form feeds has no pages. */
    static const char u16[] = "\xff\xfe" "a\0\f\0b\0";
    text = run_text_backend(text_extract, u16, sizeof u16 - 1, marks, sizeof marks);
    assert_string_equal(text, "a\nb\n");
    assert_string_equal(marks, "P 0 1 \nP 2 2 \n");
    free(text);
    text = run_text_backend(text_extract, "no pages\n", 9, marks, sizeof marks);
    assert_string_equal(marks, "");
    free(text);
}

static void test_md_headings(void **state)
{
    (void)state;
    /* ATX: levels, closing runs, indent, what is not one. */
    expect_md("# One\n\ntext\n## Two ##\n   ### Three # x\n####### seven\n#no space\n"
              "    # code\n#\tTabbed   #\n#\n##### Five\\#\n",
              "H 0 1 One\nH 12 2 Two\nH 22 3 Three # x\nH 74 1 Tabbed\nH 89 5 Five\\#\n");
    /* Setext: the whole paragraph is the title; '---' after a blank line is
     * a thematic break, after a list item too. */
    expect_md("Title\n=====\n\nTwo line\nsubtitle\n---\n\n---\n- item\n---\ntext\n  -  \n",
              "H 0 1 Title\nH 13 2 Two line subtitle\nH 51 2 text\n");
    /* Fenced code hides headings until a fence as long closes it. */
    expect_md("```c\n# not\n``\n# still not\n```\n# yes\n~~~~\n# no\n~~~\n# no\n~~~~~\n"
              "text\n===\n",
              "H 30 1 yes\nH 61 1 text\n");
    /* Front matter is not a heading, but a heading follows it. */
    expect_md("---\ntitle: x\n---\n# Real\n", "H 17 1 Real\n");
    expect_md("---\ntitle: x\n...\nPara\n---\n", "H 17 2 Para\n");
    /* CRLF and CR line ends; quotes and ordered lists start no paragraph. */
    expect_md("Win\r\n===\r\n\r\n> quote\r\n---\r\n1. item\r\n---\r\n# Mac\r## end\r",
              "H 0 1 Win\nH 33 1 Mac\nH 39 2 end\n");
    /* Indented code after a blank line is no paragraph; a heading's
     * mark is at its line's start, indent included. */
    expect_md("    code\n===\n  ## Indented\n", "H 13 2 Indented\n");
    /* Form feeds: pages, as in txt. */
    char marks[1024];
    char *text = run_text_backend(text_extract_md, "# A\fPara\n--\n", 12, marks, sizeof marks);
    assert_string_equal(text, "# A\nPara\n--\n");
    assert_string_equal(marks, "P 0 1 \nH 0 1 A\nP 4 2 \nH 4 2 Para\n");
    free(text);
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
        cmocka_unit_test(test_marks_offsets),
        cmocka_unit_test(test_marks_labels),
        cmocka_unit_test(test_marks_heading_at),
        cmocka_unit_test(test_marks_limits),
        cmocka_unit_test(test_mark_lines),
        cmocka_unit_test(test_txt_pages),
        cmocka_unit_test(test_md_headings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
