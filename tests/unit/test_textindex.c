/* test_textindex.c — the text index's language layer against real SQLite
 * FTS5.
 *
 * Each check builds an in-memory FTS5 table exactly as the store does
 * (tokenize = 'porter unicode61 remove_diacritics 2'), fills it with the
 * index texts of a handful of chunks (English prose, two API references
 * that differ by one identifier, Node.js, OpenSSL, a command line,
 * Simplified and Traditional Chinese, mixed English/Chinese, Japanese,
 * Korean) and asks questions ranked by bm25(). Covered:
 * - every identifier question ranks its chunk first (asn1_der_decoding vs
 *   asn1_der_coding, process.nextTick, nettle_sha256_digest,
 *   EVP_DigestInit, --max-output), camelCase parts, English stems;
 * - Simplified questions find Traditional text and the reverse (when
 *   OpenCC is there), mixed questions, Japanese and Korean;
 * - one-character questions: found through the indexed characters, and
 *   not found by bigrams alone (the measurement behind indexing both);
 * - the expression: stopword and punctuation questions give 0 terms,
 *   duplicates and the 64-term cap, every term quoted; hostile questions
 *   (FTS5 syntax, unbalanced quotes, 10 KB, random pieces) always give an
 *   expression FTS5 accepts; invalid UTF-8 and a too small buffer are
 *   errors that leave the output as it was; the index text stays within
 *   4 × the chunk's size;
 * - without OpenCC's data: one warning, no conversion, still searchable;
 * - 4 threads on one index give the single-threaded results.
 * The test includes sqlite3.h itself, as the store's test does, to see
 * exactly what FTS5 makes of the texts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/docs/textindex.h"
#include "common/log.h"
#include "common/utf8.h"

enum {
    C_PROSE = 1, C_DECODING, C_CODING, C_NODE, C_OPENSSL, C_CLI,
    C_SIMP, C_TRAD, C_MIXED, C_LOCK, C_JA, C_KO, C_AES, C_GCM,
};

static const struct {
    int id;
    const char *text;
} CHUNKS[] = {
    { C_PROSE, "Our gardening guide explains how young plants grow in "
               "spring. Watering schedules depend on the soil and on the "
               "weather of the week." },
    { C_DECODING, "int asn1_der_decoding(asn1_node *element, const void "
                  "*ider, int ider_len, char *errorDescription); Fill the "
                  "structure element with values of a DER encoding string. "
                  "Returns ASN1_SUCCESS when DER encoding is OK." },
    { C_CODING, "int asn1_der_coding(asn1_node element, const char *name, "
                "void *ider, int *len, char *ErrorDescription); Creates the "
                "DER encoding of the structure named name. Returns "
                "ASN1_SUCCESS when DER encoding is OK." },
    { C_NODE, "process.nextTick(callback[, ...args]) adds callback to the "
              "queue that runs after the current operation on the "
              "JavaScript stack completes, before the event loop goes on." },
    { C_OPENSSL, "EVP_DigestInit_ex() sets up digest context ctx to use a "
                 "digest type from ENGINE impl. The type will typically be "
                 "supplied by a function such as EVP_sha1()." },
    { C_CLI, "Run the exporter with --max-output 4096 to limit how many "
             "bytes it writes per file; the default is unlimited." },
    { C_SIMP, "数据库连接池的最大连接数可以在配置文件中设置，默认值为一百。" },
    { C_TRAD, "軟體更新後，請重新啟動電腦以完成安裝程序。" },
    { C_MIXED, "使用 nettle_sha256_digest 函数计算 SHA256 摘要，结果写入"
               "缓冲区。" },
    { C_LOCK, "在多线程程序中，访问共享变量之前必须先加锁，用完以后解锁。" },
    { C_JA, "設定を変更するには、管理画面でサーバーを再起動してください。" },
    { C_KO, "데이터베이스를 설정하는 방법은 관리자 문서에 있습니다." },
    { C_AES, "Function: void aes128_encrypt (const struct aes128_ctx *ctx, "
             "size_t length, uint8_t *dst, const uint8_t *src). Encryption "
             "function, the key schedule set up before." },
    { C_GCM, "Function: void gcm_aes128_encrypt (struct gcm_aes128_ctx "
             "*ctx, size_t length, uint8_t *dst, const uint8_t *src). "
             "Encrypts with AES128 in GCM mode; gcm_aes128_encrypt may be "
             "called many times, and gcm_aes128_digest ends the message." },
};
#define N_CHUNKS (sizeof CHUNKS / sizeof CHUNKS[0])

typedef struct {
    textindex_t *ti;
    sqlite3 *db;
} fx_t;

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, err ? err : "?");
}

static sqlite3 *db_new(void)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    exec(db, "CREATE VIRTUAL TABLE t USING fts5(body, tokenize = "
             "'porter unicode61 remove_diacritics 2')");
    return db;
}

static void db_put(sqlite3 *db, int id, const char *text, size_t n)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t(rowid, body) "
                                        "VALUES (?, ?)", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int(st, 1, id);
    sqlite3_bind_text(st, 2, text, (int)n, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* A table holding the index text of every chunk. */
static sqlite3 *db_chunks(textindex_t *ti)
{
    sqlite3 *db = db_new();
    for (size_t i = 0; i < N_CHUNKS; i++) {
        buf_t b;
        buf_init(&b, 1 << 20);
        const char *s = CHUNKS[i].text;
        assert_int_equal(textindex_doc(ti, s, strlen(s), &b), TEXTINDEX_OK);
        assert_true(utf8_valid(b.data, b.len));
        db_put(db, CHUNKS[i].id, b.data, b.len);
        buf_cleanup(&b);
    }
    return db;
}

/* Run `expr` as MATCH ranked by bm25; FTS5 must accept it. Returns the
 * number of rows and the first row's id in *first (0 when none). */
static int db_match(sqlite3 *db, const char *expr, int *first)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT rowid FROM t WHERE t MATCH ? "
                                "ORDER BY bm25(t)", -1, &st, NULL);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_bind_text(st, 1, expr, -1, SQLITE_TRANSIENT);
    int rows = 0;
    *first = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (rows++ == 0)
            *first = sqlite3_column_int(st, 0);
    }
    if (rc != SQLITE_DONE)
        fail_msg("FTS5 rejects %s: %s", expr, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rows;
}

/* The expression of `q` (n bytes); *terms gets its count. Caller frees. */
static char *query_n(textindex_t *ti, const char *q, size_t n, int *terms)
{
    buf_t b;
    buf_init(&b, 1 << 16);
    assert_int_equal(textindex_query(ti, q, n, &b, terms), TEXTINDEX_OK);
    char *e = buf_steal(&b, NULL);
    assert_non_null(e);
    return e;
}

static char *query(textindex_t *ti, const char *q, int *terms)
{
    return query_n(ti, q, strlen(q), terms);
}

/* The chunk that question `q` ranks first (0 when it matches none). */
static int top(fx_t *fx, const char *q)
{
    int terms = 0, first = 0;
    char *e = query(fx->ti, q, &terms);
    if (terms > 0)
        db_match(fx->db, e, &first);
    free(e);
    return first;
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx || textindex_open(&fx->ti) != TEXTINDEX_OK)
        return -1;
    fx->db = db_chunks(fx->ti);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    sqlite3_close(fx->db);
    textindex_close(fx->ti);
    free(fx);
    return 0;
}

static void test_identifiers(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(top(fx, "What does asn1_der_decoding return?"),
                     C_DECODING);
    assert_int_equal(top(fx, "How is asn1_der_coding used?"), C_CODING);
    assert_int_equal(top(fx, "asn1_der_coding"), C_CODING);
    assert_int_equal(top(fx, "When does process.nextTick run its callback?"),
                     C_NODE);
    assert_int_equal(top(fx, "Which digest does EVP_DigestInit set up?"),
                     C_OPENSSL);
    assert_int_equal(top(fx, "What does --max-output do?"), C_CLI);
    assert_int_equal(top(fx, "nettle_sha256_digest"), C_MIXED);
    /* an identifier is a phrase, then its words: the phrase alone finds
     * only its chunk */
    int terms = 0;
    char *e = query(fx->ti, "asn1_der_decoding", &terms);
    assert_int_equal(terms, 5);
    assert_string_equal(e, "\"asn1 der decoding\" OR \"asn1derdecoding\" OR \"asn1\" OR "
                        "\"der\" OR \"decoding\"");
    int first = 0;
    assert_int_equal(db_match(fx->db, "\"asn1 der decoding\"", &first), 1);
    assert_int_equal(first, C_DECODING);
    free(e);
    /* camelCase parts: "next tick", "digest init" */
    assert_int_equal(top(fx, "how to init a digest context"), C_OPENSSL);
    e = query(fx->ti, "nextTick", &terms);
    assert_string_equal(e, "\"nexttick\"");
    free(e);
    /* the text FTS5 sees keeps the identifier and adds the parts */
    buf_t b;
    buf_init(&b, 4096);
    const char *doc = "call process.nextTick(cb) or HTTPServer";
    assert_int_equal(textindex_doc(fx->ti, doc, strlen(doc), &b), TEXTINDEX_OK);
    assert_non_null(strstr(b.data, "process.nextTick processnextTick  next Tick "));
    assert_non_null(strstr(b.data, "HTTPServer HTTP Server "));
    buf_cleanup(&b);
    /* the fused token: the phrase "aes128 encrypt" matches inside
     * gcm_aes128_encrypt too (three times there), the identifier itself
     * only where it stands */
    assert_int_equal(top(fx, "What does aes128_encrypt do?"), C_AES);
    assert_int_equal(top(fx, "gcm_aes128_encrypt"), C_GCM);
    assert_int_equal(db_match(fx->db, "\"aes128encrypt\"", &first), 1);
    assert_int_equal(first, C_AES);
}

static void test_english(void **state)
{
    fx_t *fx = *state;
    /* porter: grows/grow, watered/watering */
    assert_int_equal(top(fx, "When do the plants grows if watered?"), C_PROSE);
    /* decoded/decoding: the identifier's parts are stemmed like prose */
    assert_int_equal(top(fx, "decoded"), C_DECODING);
    /* diacritics and case: "Wéather" is weather */
    assert_int_equal(top(fx, "WÉATHER"), C_PROSE);
    /* contractions and stopwords do not become terms */
    int terms = 0;
    char *e = query(fx->ti, "Don't you know what it's about?", &terms);
    assert_int_equal(terms, 1);
    assert_string_equal(e, "\"know\"");
    free(e);
    e = query(fx->ti, "user's guide", &terms);
    assert_string_equal(e, "\"user\" OR \"guide\"");
    free(e);
}

static void test_chinese(void **state)
{
    fx_t *fx = *state;
    /* Simplified both ways */
    assert_int_equal(top(fx, "连接池的最大连接数是多少？"), C_SIMP);
    assert_int_equal(top(fx, "怎么加锁"), C_LOCK);
    if (textindex_converts(fx->ti)) {
        /* a Simplified question, a Traditional chunk */
        assert_int_equal(top(fx, "怎么重新启动电脑"), C_TRAD);
        assert_int_equal(top(fx, "启动电脑"), C_TRAD);
        /* a Traditional question, a Simplified chunk */
        assert_int_equal(top(fx, "數據庫連接池的最大連接數是多少"), C_SIMP);
        assert_int_equal(top(fx, "數據庫連接數"), C_SIMP);
        /* and each side's own script */
        assert_int_equal(top(fx, "軟體更新後要做什麼"), C_TRAD);
        int terms = 0;
        char *e = query(fx->ti, "請問這個數據庫", &terms);
        /* 請 這 個 dropped after conversion; 问 alone, 数据 据库 */
        assert_string_equal(e, "\"问\" OR \"数据\" OR \"据库\"");
        free(e);
    }
    /* function characters only */
    int terms = -1;
    char *e = query(fx->ti, "的了吗？", &terms);
    assert_int_equal(terms, 0);
    assert_string_equal(e, "");
    free(e);
}

static void test_mixed(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(top(fx, "如何用nettle_sha256_digest计算摘要？"), C_MIXED);
    assert_int_equal(top(fx, "SHA256 摘要写到哪里"), C_MIXED);
    int terms = 0;
    char *e = query(fx->ti, "使用nextTick函数", &terms);
    assert_string_equal(e, "\"使用\" OR \"nexttick\" OR \"函数\"");
    free(e);
    /* fullwidth ASCII is ASCII on both sides */
    assert_int_equal(top(fx, "ＳＨＡ２５６"), C_MIXED);
}

static void test_japanese_korean(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(top(fx, "サーバーを再起動するには？"), C_JA);
    assert_int_equal(top(fx, "設定の変更"), C_JA);
    assert_int_equal(top(fx, "데이터베이스 설정"), C_KO);
    /* short hiragana runs are particles */
    int terms = 0;
    char *e = query(fx->ti, "を は が です", &terms);
    assert_int_equal(terms, 0);
    free(e);
}

/* The characters of a CJK run are indexed besides its bigrams: a question
 * of one character finds it inside a longer run. Bigrams alone (the same
 * index text without its one-character tokens) find nothing. */
static void test_single_characters(void **state)
{
    fx_t *fx = *state;
    const char *q = "锁是什么？";      /* "what is a lock": 锁 remains */
    int terms = 0;
    char *e = query(fx->ti, q, &terms);
    assert_string_equal(e, "\"锁\"");
    int first = 0;
    assert_int_equal(db_match(fx->db, e, &first), 1);
    assert_int_equal(first, C_LOCK);

    sqlite3 *bi = db_new();
    for (size_t i = 0; i < N_CHUNKS; i++) {
        buf_t b;
        buf_init(&b, 1 << 20);
        const char *s = CHUNKS[i].text;
        assert_int_equal(textindex_doc(fx->ti, s, strlen(s), &b), TEXTINDEX_OK);
        /* drop every token of one 3-byte character between spaces */
        char *w = b.data;
        for (char *r = b.data; *r;) {
            if (r[0] == ' ' && (unsigned char)r[1] >= 0xE0 &&
                (unsigned char)r[1] < 0xF0 && r[4] == ' ') {
                r += 4;
                continue;
            }
            *w++ = *r++;
        }
        *w = '\0';
        db_put(bi, CHUNKS[i].id, b.data, strlen(b.data));
        buf_cleanup(&b);
    }
    assert_int_equal(db_match(bi, e, &first), 0);
    /* two characters or more: the bigrams do the work on their own */
    free(e);
    e = query(fx->ti, "加锁", &terms);
    assert_int_equal(db_match(bi, e, &first), 1);
    assert_int_equal(first, C_LOCK);
    free(e);
    sqlite3_close(bi);
}

static void test_no_terms(void **state)
{
    fx_t *fx = *state;
    const char *empty[] = {
        "", "?", "the a of", "What is it?", "😀🎉👍🏽", "   \t\n", "...---",
        "AND OR NOT", "\"\"\"", "— « » ¿", "。，、？！",
    };
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        int terms = -1;
        char *e = query(fx->ti, empty[i], &terms);
        if (terms != 0)
            fail_msg("\"%s\" gave %d terms: %s", empty[i], terms, e);
        assert_string_equal(e, "");
        free(e);
    }
    /* NULL n_terms and an empty NULL input are fine */
    buf_t b;
    buf_init(&b, 64);
    assert_int_equal(textindex_query(fx->ti, NULL, 0, &b, NULL), TEXTINDEX_OK);
    assert_int_equal(textindex_doc(fx->ti, NULL, 0, &b), TEXTINDEX_OK);
    assert_int_equal(b.len, 0);
    buf_cleanup(&b);
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_terms(void **state)
{
    fx_t *fx = *state;
    int terms = 0;
    char *e = query(fx->ti, "decode Decode DECODE decode.", &terms);
    assert_int_equal(terms, 1);
    assert_string_equal(e, "\"decode\"");
    free(e);
    /* the first 64 distinct terms */
    char q[2048] = "";
    for (int i = 0; i < 100; i++) {
        char w[16];
        snprintf(w, sizeof w, "word%d ", i);
        strcat(q, w);
    }
    e = query(fx->ti, q, &terms);
    assert_int_equal(terms, TEXTINDEX_QUERY_TERMS_MAX);
    assert_int_equal(count(e, " OR "), TEXTINDEX_QUERY_TERMS_MAX - 1);
    assert_int_equal(count(e, "\""), 2 * TEXTINDEX_QUERY_TERMS_MAX);
    assert_non_null(strstr(e, "\"word63\""));
    assert_null(strstr(e, "\"word64\""));
    free(e);
    /* a word longer than TEXTINDEX_TERM_MAX is not searched */
    char lng[TEXTINDEX_TERM_MAX + 16];
    memset(lng, 'x', sizeof lng - 1);
    lng[sizeof lng - 1] = '\0';
    e = query(fx->ti, lng, &terms);
    assert_int_equal(terms, 0);
    free(e);
}

/* Every question gives an expression FTS5 accepts. */
static void check_hostile(fx_t *fx, const char *q, size_t n)
{
    int terms = -1;
    char *e = query_n(fx->ti, q, n, &terms);
    assert_true(terms >= 0 && terms <= TEXTINDEX_QUERY_TERMS_MAX);
    if (terms > 0) {
        int first;
        db_match(fx->db, e, &first);
        assert_int_equal(e[0], '"');
        assert_int_equal(e[strlen(e) - 1], '"');
    } else {
        assert_string_equal(e, "");
    }
    free(e);
}

static void test_hostile(void **state)
{
    fx_t *fx = *state;
    const char *qs[] = {
        "\"", "\"\"", "a\"b", "NEAR(", "NEAR(a b, 3)", "col:", "body:x",
        "{body}: x", "*", "x*", "^", "^start", "AND OR NOT", "a AND b",
        "NOT x", "\"unbalanced", "unbalanced\"", "(((", ")", "a + b",
        "-x", "x:y:z", "'", "''''", "a'b'c", "--", "- - -", "a.b.c.d.e",
        "\\", "C:\\Windows\\", "$x", "@@", "##", "~", "->", "::",
        "\xE2\x80\x99s", "\xEF\xBC\x82\xEF\xBC\x8A", /* fullwidth " * */
        "\xEF\xBC\x88" "NEAR" "\xEF\xBC\x89",        /* fullwidth ( ) */
        "数据\"库", "的\"", "𠀀𠀁", "\xE3\x80\x80", "\xC2\xA0x",
    };
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        check_hostile(fx, qs[i], strlen(qs[i]));
    /* NUL and controls inside */
    check_hostile(fx, "a\0b\x01\x7f c", 8);

    /* 10 KB: prose, a single word, Han with and without function
     * characters, and pieces of FTS5 syntax */
    static const char *const pieces[] = {
        "\"", "NEAR(", "col:", "*", "^", "AND", "OR", "NOT", "(", ")",
        "{", "}", "+", "-", ":", "数据", "的", "𠀀", "é", "\xE2\x80\x99",
        "'", "_", ".", " ", "a", "Z9", "\x01", "設定", "を", "데이",
        "😀", "x_y", "\xEF\xBC\xA1",
    };
    const size_t np = sizeof pieces / sizeof pieces[0];
    char *big = malloc(10240 + 16);
    assert_non_null(big);
    uint32_t seed = 12345;
    for (int round = 0; round < 300; round++) {
        size_t len = 0, want = round < 8 ? 10240 : 1 + (seed >> 20) % 200;
        while (len < want) {
            seed = seed * 1103515245u + 12345u;
            const char *p = round == 0 ? "word " : round == 1 ? "a"
                            : round == 2 ? "的" : round == 3 ? "数据库"
                            : pieces[(seed >> 16) % np];
            size_t k = strlen(p);
            memcpy(big + len, p, k);
            len += k;
        }
        assert_true(utf8_valid(big, len));
        check_hostile(fx, big, len);
        buf_t b;
        buf_init(&b, 1 << 20);
        assert_int_equal(textindex_doc(fx->ti, big, len, &b), TEXTINDEX_OK);
        assert_true(utf8_valid(b.data, b.len));
        assert_true(b.len <= 4 * len);
        buf_cleanup(&b);
    }
    free(big);
}

/* The index text's size bound (4 × n) on the texts that grow most. */
static void test_doc_size(void **state)
{
    fx_t *fx = *state;
    static const char *const units[] = {
        "数据库", "軟體更新", "𠀀𠀁𠀂", "中a", "aBCdEFgHIj", "1A", "aB_",
        "サーバー", "데이터", "ｱｲｳ",
    };
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        char text[4096];
        size_t len = 0, k = strlen(units[u]);
        while (len + k < sizeof text) {
            memcpy(text + len, units[u], k);
            len += k;
        }
        buf_t b;
        buf_init(&b, 4 * len);
        if (textindex_doc(fx->ti, text, len, &b) != TEXTINDEX_OK)
            fail_msg("%s: more than 4 x %zu bytes", units[u], len);
        buf_cleanup(&b);
    }
}

static void test_errors(void **state)
{
    fx_t *fx = *state;
    const char *bad[] = { "\xFF", "ab\xC3", "\xC0\xAF", "\xED\xA0\x80 x",
                          "x \xF4\x90\x80\x80", "数\xE6\x8D" };
    buf_t b;
    buf_init(&b, 1 << 16);
    assert_int_equal(buf_puts(&b, "kept"), BUF_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int terms = 7;
        assert_int_equal(textindex_query(fx->ti, bad[i], strlen(bad[i]), &b,
                                         &terms), TEXTINDEX_EUTF8);
        assert_int_equal(terms, 0);
        assert_int_equal(textindex_doc(fx->ti, bad[i], strlen(bad[i]), &b),
                         TEXTINDEX_EUTF8);
        assert_string_equal(b.data, "kept");
    }
    buf_cleanup(&b);
    /* too small: ETOOBIG, the buffer as it was */
    buf_init(&b, 20);
    assert_int_equal(buf_puts(&b, "kept"), BUF_OK);
    const char *s = CHUNKS[6].text;
    assert_int_equal(textindex_doc(fx->ti, s, strlen(s), &b), TEXTINDEX_ETOOBIG);
    assert_string_equal(b.data, "kept");
    int terms = 7;
    assert_int_equal(textindex_query(fx->ti, s, strlen(s), &b, &terms),
                     TEXTINDEX_ETOOBIG);
    assert_int_equal(terms, 0);
    assert_string_equal(b.data, "kept");
    buf_cleanup(&b);
    assert_int_equal(textindex_doc(NULL, "x", 1, &b), TEXTINDEX_EINVAL);
    assert_int_equal(textindex_query(fx->ti, "x", 1, NULL, NULL),
                     TEXTINDEX_EINVAL);
    assert_string_equal(textindex_strerror(TEXTINDEX_EUTF8),
                        "text is not valid UTF-8");
    textindex_close(NULL);
}

/* Without OpenCC's data: one warning, no conversion, still an index. */
static void test_without_opencc(void **state)
{
    (void)state;
    char path[] = "/tmp/test_textindex_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(log_open(path), 0);
    textindex_t *ti = NULL;
    assert_int_equal(textindex_open_config("/nonexistent/t2s.json", &ti),
                     TEXTINDEX_OK);
    log_close();
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    int lines = 0, warned = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        if (strstr(line, "WARN") && strstr(line, "OpenCC"))
            warned++;
    }
    fclose(f);
    unlink(path);
    assert_int_equal(lines, 1);
    assert_int_equal(warned, 1);
    assert_false(textindex_converts(ti));

    fx_t fx = { ti, db_chunks(ti) };
    assert_int_equal(top(&fx, "连接池的最大连接数"), C_SIMP);
    assert_int_equal(top(&fx, "asn1_der_decoding"), C_DECODING);
    /* Traditional stays Traditional: 軟體 finds 軟體, 软件 nothing */
    assert_int_equal(top(&fx, "軟體"), C_TRAD);
    assert_int_equal(top(&fx, "软件"), 0);
    /* the questions that meet the other script when converting */
    assert_int_equal(top(&fx, "启动电脑"), 0);
    assert_int_equal(top(&fx, "數據庫連接數"), 0);
    sqlite3_close(fx.db);
    textindex_close(ti);
}

/* ---- threads --------------------------------------------------------- */

#define N_THREADS 4

typedef struct {
    textindex_t *ti;
    char *want_doc[N_CHUNKS];
    char *want_query[N_CHUNKS];
    int bad;
} shared_t;

static void *worker(void *arg)
{
    shared_t *sh = arg;
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < N_CHUNKS; i++) {
            const char *s = CHUNKS[i].text;
            buf_t b;
            buf_init(&b, 1 << 16);
            if (textindex_doc(sh->ti, s, strlen(s), &b) != TEXTINDEX_OK ||
                strcmp(b.data, sh->want_doc[i]) != 0)
                __atomic_add_fetch(&sh->bad, 1, __ATOMIC_RELAXED);
            buf_reset(&b);
            int terms;
            if (textindex_query(sh->ti, s, strlen(s), &b, &terms) !=
                    TEXTINDEX_OK ||
                strcmp(b.data ? b.data : "", sh->want_query[i]) != 0)
                __atomic_add_fetch(&sh->bad, 1, __ATOMIC_RELAXED);
            buf_cleanup(&b);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    fx_t *fx = *state;
    shared_t sh = { .ti = fx->ti };
    for (size_t i = 0; i < N_CHUNKS; i++) {
        const char *s = CHUNKS[i].text;
        buf_t b;
        buf_init(&b, 1 << 16);
        assert_int_equal(textindex_doc(fx->ti, s, strlen(s), &b), TEXTINDEX_OK);
        sh.want_doc[i] = buf_steal(&b, NULL);
        int terms;
        sh.want_query[i] = query(fx->ti, s, &terms);
    }
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, &sh), 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(sh.bad, 0);
    for (size_t i = 0; i < N_CHUNKS; i++) {
        free(sh.want_doc[i]);
        free(sh.want_query[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identifiers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_english, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chinese, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mixed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_japanese_korean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_characters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_terms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_terms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test(test_without_opencc),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
