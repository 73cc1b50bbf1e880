/* test_store.c — store.h through its SQLite backend: records and rules.
 *
 * Each test gets a fresh database file in a temporary directory (removed
 * at the end). Covered:
 * - helpers: ISO 8601 formatting and its range, UUID v4 text, id rules,
 *   enum names both ways, content types;
 * - documents: insert with a generated or given id, every field read back,
 *   n_chars counted in code points, sha256 in either case; a duplicate
 *   sha256 returns the existing record with existed = true and writes
 *   nothing; id / stored_name conflicts; argument checks (bad UTF-8, NUL in
 *   text, '/' in stored_name, bad sha256, unknown type, size limit); list
 *   newest first with ties by insertion; delete returns the record and
 *   takes the text and the search index with it; token count; cache state
 *   set as a whole (no stale fields), cached_at filled, long error cut at a
 *   character boundary; reset of every state and of 'caching' only;
 *   full-text search, ranking limit and malformed queries;
 * - sessions: create with a given or new id, conflicts, missing document,
 *   ensure (get-or-create, also from 8 threads at once), touch never going
 *   backwards, document and title changes, list order / limit / counts /
 *   filename join, delete cascading to messages, ON DELETE SET NULL for the
 *   document, expiry by idle time;
 * - messages: append (ids grow, session touched), roles, incomplete flag,
 *   meta JSON checked by the database, list in order with "last N", count,
 *   missing sessions;
 * - 8 threads appending and reading in their own sessions for about a
 *   second (plus document inserts) with no error and exact counts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "app/store/store.h"
#include "common/utf8.h"

typedef struct {
    char dir[64];
    char path[128];
    store_t *s;
} fx_t;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/kvchat-store-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/kvchat.db", f->dir);
    if (store_open(f->path, &f->s) != STORE_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    store_close(f->s);
    int rc = nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A document input with a distinct sha256 and stored_name for `n`. The
 * strings live in static buffers of slot `n % 8`. */
static store_doc_t doc_in(int n)
{
    static char sha[8][65], stored[8][32];
    int k = n % 8;
    snprintf(sha[k], sizeof sha[k], "%064d", n);
    snprintf(stored[k], sizeof stored[k], "upload-%d.txt", n);
    store_doc_t d;
    store_doc_init(&d);
    d.filename = "notes.txt";
    d.stored_name = stored[k];
    d.content_type = "txt";
    d.file_size = 100 + n;
    d.sha256 = sha[k];
    return d;
}

/* Insert document n with `text`; its id into id_out (STORE_ID_MAX + 1). */
static void insert_doc(store_t *s, int n, const char *text, char *id_out)
{
    store_doc_t in = doc_in(n);
    store_doc_t out;
    bool existed = true;
    assert_int_equal(store_doc_insert(s, &in, text, strlen(text), &out, &existed), STORE_OK);
    assert_false(existed);
    if (id_out)
        snprintf(id_out, STORE_ID_MAX + 1, "%s", out.id);
    store_doc_cleanup(&out);
}

/* ---- Helpers ---------------------------------------------------------------- */

static void test_format_time(void **state)
{
    (void)state;
    char buf[STORE_TIME_BUFSZ];
    assert_int_equal(store_format_time(1795580110373LL, buf), STORE_OK);
    assert_string_equal(buf, "2026-11-25T04:15:10.373Z");
    assert_int_equal(store_format_time(0, buf), STORE_OK);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    assert_int_equal(store_format_time(951868799999LL, buf), STORE_OK);
    assert_string_equal(buf, "2000-02-29T23:59:59.999Z");
    assert_int_equal(store_format_time(253402300799999LL, buf), STORE_OK);
    assert_string_equal(buf, "9999-12-31T23:59:59.999Z");
    assert_int_equal(store_format_time(253402300800000LL, buf), STORE_EINVAL);
    assert_string_equal(buf, "");
    assert_int_equal(store_format_time(-1, buf), STORE_EINVAL);
    assert_int_equal(store_format_time(0, NULL), STORE_EINVAL);

    int64_t now = store_now_ms();
    assert_true(now > 1700000000000LL);
    assert_int_equal(store_format_time(now, buf), STORE_OK);
    assert_int_equal(strlen(buf), STORE_TIME_BUFSZ - 1);
}

static void test_ids(void **state)
{
    (void)state;
    char a[STORE_UUID_BUFSZ], b[STORE_UUID_BUFSZ];
    assert_int_equal(store_id_new(a), STORE_OK);
    assert_int_equal(store_id_new(b), STORE_OK);
    assert_string_not_equal(a, b);
    assert_int_equal(strlen(a), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(a[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", a[i]));
    }
    assert_int_equal(a[14], '4');                 /* version 4 */
    assert_non_null(strchr("89ab", a[19]));       /* variant 10 */
    assert_true(store_id_valid(a));

    assert_true(store_id_valid("my-session_1.x"));
    assert_false(store_id_valid(NULL));
    assert_false(store_id_valid(""));
    assert_false(store_id_valid("a/b"));
    assert_false(store_id_valid("a b"));
    assert_false(store_id_valid("a?b"));
    assert_false(store_id_valid("a%20"));
    assert_false(store_id_valid("caf\xc3\xa9"));
    char longid[STORE_ID_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[STORE_ID_MAX + 1] = '\0';
    assert_false(store_id_valid(longid));
    longid[STORE_ID_MAX] = '\0';
    assert_true(store_id_valid(longid));
}

static void test_enums(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        store_cache_status_t st;
        assert_int_equal(store_cache_status_parse(store_cache_status_name((store_cache_status_t)i),
                                                  &st), STORE_OK);
        assert_int_equal(st, i);
    }
    assert_string_equal(store_cache_status_name(STORE_CACHE_CACHED), "cached");
    assert_string_equal(store_cache_status_name((store_cache_status_t)9), "");
    store_cache_status_t st = STORE_CACHE_FAILED;
    assert_int_equal(store_cache_status_parse("Cached", &st), STORE_EINVAL);
    assert_int_equal(st, STORE_CACHE_FAILED);

    for (int i = 0; i < 3; i++) {
        store_role_t r;
        assert_int_equal(store_role_parse(store_role_name((store_role_t)i), &r), STORE_OK);
        assert_int_equal(r, i);
    }
    assert_string_equal(store_role_name(STORE_ROLE_ASSISTANT), "assistant");
    store_role_t r;
    assert_int_equal(store_role_parse("tool", &r), STORE_EINVAL);
    assert_int_equal(store_role_parse(NULL, &r), STORE_EINVAL);

    assert_true(store_content_type_valid("epub"));
    assert_true(store_content_type_valid("docx"));
    assert_false(store_content_type_valid("doc"));
    assert_false(store_content_type_valid(NULL));

    assert_string_equal(store_strerror(STORE_ENOTFOUND), "not found");
    assert_string_equal(store_strerror(12345), "unknown error");
}

/* ---- Documents ------------------------------------------------------------ */

static void test_doc_insert_get(void **state)
{
    fx_t *f = *state;
    const char *text = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac \xf0\x9f\x98\x80"; /* 15 chars */
    store_doc_t in = doc_in(1);
    store_doc_t out, got;
    in.filename = "R\xc3\xa9sum\xc3\xa9.pdf";
    in.content_type = "pdf";
    char upper[65];
    for (int i = 0; i < 64; i++)
        upper[i] = "ABCDEF0123456789"[i % 16];
    upper[64] = '\0';
    in.sha256 = upper;
    int64_t before = store_now_ms();
    bool existed = true;
    assert_int_equal(store_doc_insert(f->s, &in, text, strlen(text), &out, &existed), STORE_OK);
    assert_false(existed);
    assert_true(store_id_valid(out.id));
    assert_int_equal(strlen(out.id), 36);
    assert_string_equal(out.filename, in.filename);
    assert_string_equal(out.stored_name, "upload-1.txt");
    assert_string_equal(out.content_type, "pdf");
    assert_int_equal(out.file_size, 101);
    for (int i = 0; i < 64; i++) /* stored in lowercase */
        assert_int_equal(out.sha256[i], "abcdef0123456789"[i % 16]);
    assert_in_range(out.uploaded_at, before, store_now_ms());
    assert_int_equal(out.n_chars, 15);
    assert_int_equal(out.n_tokens, -1);
    assert_int_equal(out.cache.status, STORE_CACHE_NONE);
    assert_null(out.cache.entry_id);
    assert_int_equal(out.cache.tokens, -1);
    assert_true(out.cache.ms < 0);

    assert_int_equal(store_doc_get(f->s, out.id, &got), STORE_OK);
    assert_string_equal(got.id, out.id);
    assert_string_equal(got.filename, out.filename);
    assert_string_equal(got.sha256, out.sha256);
    assert_int_equal(got.uploaded_at, out.uploaded_at);
    store_doc_cleanup(&got);

    assert_int_equal(store_doc_find_sha256(f->s, upper, &got), STORE_OK); /* either case */
    assert_string_equal(got.id, out.id);
    store_doc_cleanup(&got);

    char *t = NULL;
    size_t len = 0;
    assert_int_equal(store_doc_text(f->s, out.id, &t, &len), STORE_OK);
    assert_int_equal(len, strlen(text));
    assert_string_equal(t, text);
    free(t);

    /* A given id and time are kept; an empty text is a text. */
    store_doc_t in2 = doc_in(2);
    store_doc_t out2;
    in2.id = "doc-two";
    in2.uploaded_at = 1234;
    in2.n_tokens = 0;
    assert_int_equal(store_doc_insert(f->s, &in2, "", 0, &out2, NULL), STORE_OK);
    assert_string_equal(out2.id, "doc-two");
    assert_int_equal(out2.uploaded_at, 1234);
    assert_int_equal(out2.n_chars, 0);
    assert_int_equal(out2.n_tokens, 0);
    assert_int_equal(store_doc_text(f->s, "doc-two", &t, &len), STORE_OK);
    assert_string_equal(t, "");
    assert_int_equal(len, 0);
    free(t);
    store_doc_cleanup(&out2);

    assert_int_equal(store_doc_get(f->s, "nope", &got), STORE_ENOTFOUND);
    assert_null(got.id);
    assert_int_equal(store_doc_text(f->s, "nope", &t, &len), STORE_ENOTFOUND);
    assert_null(t);
    assert_int_equal(store_doc_find_sha256(f->s, in2.sha256 + 1, &got), STORE_EINVAL);
    char other[65];
    memset(other, 'f', 64);
    other[64] = '\0';
    assert_int_equal(store_doc_find_sha256(f->s, other, &got), STORE_ENOTFOUND);
    store_doc_cleanup(&out);
    store_doc_cleanup(NULL);
}

static void test_doc_duplicate_sha(void **state)
{
    fx_t *f = *state;
    store_doc_t in = doc_in(7);
    store_doc_t first, again;
    assert_int_equal(store_doc_insert(f->s, &in, "first text", 10, &first, NULL), STORE_OK);

    /* Same bytes uploaded again under another name and stored_name. */
    in.filename = "copy.txt";
    in.stored_name = "another-upload.txt";
    bool existed = false;
    assert_int_equal(store_doc_insert(f->s, &in, "other text", 10, &again, &existed), STORE_OK);
    assert_true(existed);
    assert_string_equal(again.id, first.id);
    assert_string_equal(again.filename, "notes.txt");
    assert_string_equal(again.stored_name, "upload-7.txt");

    store_doc_list_t l;
    assert_int_equal(store_doc_list(f->s, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    store_doc_list_cleanup(&l);
    char *t;
    assert_int_equal(store_doc_text(f->s, first.id, &t, NULL), STORE_OK);
    assert_string_equal(t, "first text");
    free(t);
    store_doc_cleanup(&first);
    store_doc_cleanup(&again);
}

static void test_doc_conflicts_and_checks(void **state)
{
    fx_t *f = *state;
    store_doc_t in = doc_in(1);
    store_doc_t out;
    in.id = "d1";
    assert_int_equal(store_doc_insert(f->s, &in, "x", 1, &out, NULL), STORE_OK);
    store_doc_cleanup(&out);

    store_doc_t in2 = doc_in(2);
    in2.id = "d1"; /* id taken */
    assert_int_equal(store_doc_insert(f->s, &in2, "y", 1, &out, NULL), STORE_ECONFLICT);
    assert_null(out.id);
    in2.id = NULL;
    in2.stored_name = "upload-1.txt"; /* stored_name taken */
    assert_int_equal(store_doc_insert(f->s, &in2, "y", 1, &out, NULL), STORE_ECONFLICT);

    /* Nothing of the failed inserts remains. */
    store_doc_list_t l;
    assert_int_equal(store_doc_list(f->s, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    store_doc_list_cleanup(&l);

    store_doc_t bad;
#define TRY_BAD(mutation, text, len, want)                                               \
    do {                                                                                  \
        bad = doc_in(3);                                                                  \
        mutation;                                                                         \
        assert_int_equal(store_doc_insert(f->s, &bad, text, len, &out, NULL), want);     \
    } while (0)
    TRY_BAD(bad.sha256 = "abc", "t", 1, STORE_EINVAL);
    TRY_BAD(bad.sha256 = NULL, "t", 1, STORE_EINVAL);
    TRY_BAD(bad.content_type = "exe", "t", 1, STORE_EINVAL);
    TRY_BAD(bad.filename = "bad\xff.txt", "t", 1, STORE_EINVAL);
    TRY_BAD(bad.filename = "", "t", 1, STORE_EINVAL);
    TRY_BAD(bad.stored_name = "../etc/passwd", "t", 1, STORE_EINVAL);
    TRY_BAD(bad.stored_name = "..", "t", 1, STORE_EINVAL);
    TRY_BAD(bad.id = "has space", "t", 1, STORE_EINVAL);
    TRY_BAD(bad.file_size = -1, "t", 1, STORE_EINVAL);
    TRY_BAD(bad.n_tokens = -2, "t", 1, STORE_EINVAL);
    TRY_BAD((void)0, "a\0b", 3, STORE_EINVAL);        /* NUL inside the text */
    TRY_BAD((void)0, "\xc3\x28", 2, STORE_EINVAL);    /* invalid UTF-8 */
    TRY_BAD((void)0, NULL, 0, STORE_EINVAL);
    char *huge = malloc((size_t)STORE_TEXT_MAX + 1); /* refused before it is read */
    assert_non_null(huge);
    TRY_BAD((void)0, huge, (size_t)STORE_TEXT_MAX + 1, STORE_ETOOBIG);
    free(huge);
    char longname[STORE_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    TRY_BAD(bad.filename = longname, "t", 1, STORE_ETOOBIG);
#undef TRY_BAD
    assert_int_equal(store_doc_insert(f->s, NULL, "t", 1, &out, NULL), STORE_EINVAL);
    assert_int_equal(store_doc_insert(NULL, &in, "t", 1, &out, NULL), STORE_EINVAL);

    assert_int_equal(store_doc_list(f->s, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    store_doc_list_cleanup(&l);
}

static void test_doc_list_order(void **state)
{
    fx_t *f = *state;
    const int64_t times[] = {1000, 3000, 2000, 3000};
    static char ids[][2] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        store_doc_t in = doc_in(i);
        store_doc_t out;
        in.id = ids[i];
        in.uploaded_at = times[i];
        assert_int_equal(store_doc_insert(f->s, &in, "t", 1, &out, NULL), STORE_OK);
        store_doc_cleanup(&out);
    }
    store_doc_list_t l;
    assert_int_equal(store_doc_list(f->s, &l), STORE_OK);
    assert_int_equal(l.n, 4);
    /* Newest first; equal times: last inserted first. */
    assert_string_equal(l.items[0].id, "d");
    assert_string_equal(l.items[1].id, "b");
    assert_string_equal(l.items[2].id, "c");
    assert_string_equal(l.items[3].id, "a");
    assert_int_equal(l.items[3].file_size, 100);
    store_doc_list_cleanup(&l);
    assert_null(l.items);
    assert_int_equal(l.n, 0);
    store_doc_list_cleanup(&l); /* twice is harmless */
}

static void test_doc_delete(void **state)
{
    fx_t *f = *state;
    char id[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "the quick brown fox", id);
    insert_doc(f->s, 2, "lazy dogs sleep", NULL);

    store_doc_list_t l;
    assert_int_equal(store_doc_search(f->s, "fox", 10, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    store_doc_list_cleanup(&l);

    store_doc_t gone;
    assert_int_equal(store_doc_delete(f->s, id, &gone), STORE_OK);
    assert_string_equal(gone.id, id);
    assert_string_equal(gone.stored_name, "upload-1.txt"); /* for the caller's unlink */
    store_doc_cleanup(&gone);

    store_doc_t got;
    assert_int_equal(store_doc_get(f->s, id, &got), STORE_ENOTFOUND);
    char *t;
    assert_int_equal(store_doc_text(f->s, id, &t, NULL), STORE_ENOTFOUND);
    assert_int_equal(store_doc_search(f->s, "fox", 10, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    store_doc_list_cleanup(&l);
    assert_int_equal(store_doc_delete(f->s, id, &gone), STORE_ENOTFOUND);
    assert_null(gone.id);
    assert_int_equal(store_doc_delete(f->s, id, NULL), STORE_ENOTFOUND);

    /* The same bytes may be uploaded again once deleted. */
    insert_doc(f->s, 1, "the quick brown fox", NULL);
    assert_int_equal(store_doc_list(f->s, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_int_equal(store_doc_delete(f->s, l.items[0].id, NULL), STORE_OK);
    store_doc_list_cleanup(&l);
    assert_int_equal(store_doc_list(f->s, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    store_doc_list_cleanup(&l);
    assert_int_equal(store_check(f->s), STORE_OK); /* text index matches the texts */
}

static void test_doc_tokens(void **state)
{
    fx_t *f = *state;
    char id[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "text", id);
    store_doc_t d;
    assert_int_equal(store_doc_set_tokens(f->s, id, 1234), STORE_OK);
    assert_int_equal(store_doc_get(f->s, id, &d), STORE_OK);
    assert_int_equal(d.n_tokens, 1234);
    store_doc_cleanup(&d);
    assert_int_equal(store_doc_set_tokens(f->s, id, -1), STORE_OK);
    assert_int_equal(store_doc_get(f->s, id, &d), STORE_OK);
    assert_int_equal(d.n_tokens, -1);
    store_doc_cleanup(&d);
    assert_int_equal(store_doc_set_tokens(f->s, id, -2), STORE_EINVAL);
    assert_int_equal(store_doc_set_tokens(f->s, "missing", 5), STORE_ENOTFOUND);
}

static void test_doc_cache_state(void **state)
{
    fx_t *f = *state;
    char id[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "text", id);
    store_doc_t d;

    store_cache_t c = {.status = STORE_CACHE_CACHING, .tokens = -1, .bytes = -1, .ms = -1,
                       .cached_at = -1};
    assert_int_equal(store_doc_set_cache(f->s, id, &c), STORE_OK);
    assert_int_equal(store_doc_get(f->s, id, &d), STORE_OK);
    assert_int_equal(d.cache.status, STORE_CACHE_CACHING);
    assert_int_equal(d.cache.cached_at, -1);
    store_doc_cleanup(&d);

    int64_t before = store_now_ms();
    c = (store_cache_t){.status = STORE_CACHE_CACHED, .entry_id = "0123456789abcdef",
                        .tokens = 4000, .bytes = 49152000, .tier = "ram", .ms = 2.5,
                        .cached_at = 0};
    assert_int_equal(store_doc_set_cache(f->s, id, &c), STORE_OK);
    assert_int_equal(store_doc_get(f->s, id, &d), STORE_OK);
    assert_int_equal(d.cache.status, STORE_CACHE_CACHED);
    assert_string_equal(d.cache.entry_id, "0123456789abcdef");
    assert_int_equal(d.cache.tokens, 4000);
    assert_int_equal(d.cache.bytes, 49152000);
    assert_string_equal(d.cache.tier, "ram");
    assert_true(d.cache.ms == 2.5);
    assert_in_range(d.cache.cached_at, before, store_now_ms());
    assert_null(d.cache.error);
    store_doc_cleanup(&d);

    /* A failure replaces everything: no stale entry id, tier or timing. The
     * long message is cut at a character boundary and marked. */
    size_t n = 3000;
    char *err = malloc(n + 1);
    assert_non_null(err);
    for (size_t i = 0; i < n; i += 2)
        memcpy(err + i, "\xc3\xa9", 2); /* é */
    err[n] = '\0';
    c = (store_cache_t){.status = STORE_CACHE_FAILED, .tokens = -1, .bytes = -1, .ms = -1,
                        .cached_at = -1, .error = err};
    assert_int_equal(store_doc_set_cache(f->s, id, &c), STORE_OK);
    free(err);
    assert_int_equal(store_doc_get(f->s, id, &d), STORE_OK);
    assert_int_equal(d.cache.status, STORE_CACHE_FAILED);
    assert_null(d.cache.entry_id);
    assert_null(d.cache.tier);
    assert_int_equal(d.cache.tokens, -1);
    assert_int_equal(d.cache.cached_at, -1);
    assert_true(d.cache.ms < 0);
    assert_non_null(d.cache.error);
    size_t elen = strlen(d.cache.error);
    assert_true(elen <= STORE_CACHE_ERROR_MAX);
    assert_true(elen > STORE_CACHE_ERROR_MAX - 8);
    assert_true(utf8_valid(d.cache.error, elen));
    assert_string_equal(d.cache.error + elen - 3, "...");
    store_doc_cleanup(&d);

    /* Invalid bytes in an error become U+FFFD rather than failing. */
    c.error = "engine said \xff";
    assert_int_equal(store_doc_set_cache(f->s, id, &c), STORE_OK);
    assert_int_equal(store_doc_get(f->s, id, &d), STORE_OK);
    assert_string_equal(d.cache.error, "engine said \xef\xbf\xbd");
    store_doc_cleanup(&d);

    c = (store_cache_t){.status = (store_cache_status_t)7, .tokens = -1, .bytes = -1};
    assert_int_equal(store_doc_set_cache(f->s, id, &c), STORE_EINVAL);
    c = (store_cache_t){.status = STORE_CACHE_NONE, .tokens = -5, .bytes = -1};
    assert_int_equal(store_doc_set_cache(f->s, id, &c), STORE_EINVAL);
    char longid[STORE_SHORT_MAX + 2];
    memset(longid, 'e', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    c = (store_cache_t){.status = STORE_CACHE_CACHED, .entry_id = longid, .tokens = -1,
                        .bytes = -1};
    assert_int_equal(store_doc_set_cache(f->s, id, &c), STORE_ETOOBIG);
    c = (store_cache_t){.status = STORE_CACHE_NONE, .tokens = -1, .bytes = -1};
    assert_int_equal(store_doc_set_cache(f->s, "missing", &c), STORE_ENOTFOUND);
    assert_int_equal(store_doc_set_cache(f->s, id, NULL), STORE_EINVAL);
}

static void set_status(store_t *s, const char *id, store_cache_status_t st)
{
    store_cache_t c = {.status = st, .entry_id = st == STORE_CACHE_CACHED ? "e1" : NULL,
                       .tokens = 10, .bytes = 20, .tier = "disk", .ms = 3, .cached_at = -1,
                       .error = st == STORE_CACHE_FAILED ? "boom" : NULL};
    assert_int_equal(store_doc_set_cache(s, id, &c), STORE_OK);
}

static void test_doc_reset_cache(void **state)
{
    fx_t *f = *state;
    char a[STORE_ID_MAX + 1], b[STORE_ID_MAX + 1], c[STORE_ID_MAX + 1], d[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "a", a);
    insert_doc(f->s, 2, "b", b);
    insert_doc(f->s, 3, "c", c);
    insert_doc(f->s, 4, "d", d);
    set_status(f->s, a, STORE_CACHE_CACHED);
    set_status(f->s, b, STORE_CACHE_FAILED);
    set_status(f->s, c, STORE_CACHE_CACHING);

    int64_t n = -1;
    assert_int_equal(store_doc_reset_cache(f->s, true, &n), STORE_OK);
    assert_int_equal(n, 1);
    store_doc_t doc;
    assert_int_equal(store_doc_get(f->s, c, &doc), STORE_OK);
    assert_int_equal(doc.cache.status, STORE_CACHE_NONE);
    assert_int_equal(doc.cache.tokens, -1);
    store_doc_cleanup(&doc);
    assert_int_equal(store_doc_get(f->s, a, &doc), STORE_OK);
    assert_int_equal(doc.cache.status, STORE_CACHE_CACHED); /* untouched */
    store_doc_cleanup(&doc);

    assert_int_equal(store_doc_reset_cache(f->s, false, &n), STORE_OK);
    assert_int_equal(n, 2);
    store_doc_list_t l;
    assert_int_equal(store_doc_list(f->s, &l), STORE_OK);
    assert_int_equal(l.n, 4);
    for (size_t i = 0; i < l.n; i++) {
        store_cache_t *k = &l.items[i].cache;
        assert_int_equal(k->status, STORE_CACHE_NONE);
        assert_null(k->entry_id);
        assert_null(k->tier);
        assert_null(k->error);
        assert_int_equal(k->tokens, -1);
        assert_int_equal(k->bytes, -1);
        assert_int_equal(k->cached_at, -1);
        assert_true(k->ms < 0);
    }
    store_doc_list_cleanup(&l);
    assert_int_equal(store_doc_reset_cache(f->s, false, &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_doc_reset_cache(f->s, false, NULL), STORE_OK);
}

static void test_doc_search(void **state)
{
    fx_t *f = *state;
    char a[STORE_ID_MAX + 1], b[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "Kernel scheduling and memory management in operating systems.", a);
    insert_doc(f->s, 2, "Memory palaces help memory: memory, memory, memory.", b);
    insert_doc(f->s, 3, "Caf\xc3\xa9 culture in Vienna.", NULL);

    store_doc_list_t l;
    assert_int_equal(store_doc_search(f->s, "memory", 10, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].id, b); /* more occurrences rank first */
    assert_string_equal(l.items[1].id, a);
    store_doc_list_cleanup(&l);

    assert_int_equal(store_doc_search(f->s, "memory", 1, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    store_doc_list_cleanup(&l);

    assert_int_equal(store_doc_search(f->s, "\"memory management\"", 10, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].id, a);
    store_doc_list_cleanup(&l);

    assert_int_equal(store_doc_search(f->s, "cafe", 10, &l), STORE_OK); /* diacritics */
    assert_int_equal(l.n, 1);
    store_doc_list_cleanup(&l);

    assert_int_equal(store_doc_search(f->s, "sched*", 10, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    store_doc_list_cleanup(&l);

    assert_int_equal(store_doc_search(f->s, "nothinglikethis", 10, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    store_doc_list_cleanup(&l);

    assert_int_equal(store_doc_search(f->s, "\"unterminated", 10, &l), STORE_EINVAL);
    assert_int_equal(l.n, 0);
    assert_int_equal(store_doc_search(f->s, "AND OR", 10, &l), STORE_EINVAL);
    assert_int_equal(store_doc_search(f->s, "", 10, &l), STORE_EINVAL);
    assert_int_equal(store_doc_search(f->s, "memory", 0, &l), STORE_EINVAL);

    /* The store still works after a refused query. */
    assert_int_equal(store_doc_search(f->s, "vienna", 10, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    store_doc_list_cleanup(&l);
}


/* ---- Several documents ---------------------------------------------------- */

static void test_session_document_sets(void **state)
{
    fx_t *f = *state;
    char a[STORE_ID_MAX + 1], b[STORE_ID_MAX + 1], c[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "alpha", a);
    insert_doc(f->s, 2, "beta", b);
    insert_doc(f->s, 3, "gamma", c);
    assert_int_equal(store_session_create(f->s, "set-1", a, NULL, NULL), STORE_OK);
    store_id_list_t l;
    assert_int_equal(store_session_documents(f->s, "set-1", &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.ids[0], a);
    store_id_list_cleanup(&l);

    const char *three[] = { c, a, b };
    assert_int_equal(store_session_set_documents(f->s, "set-1", three, 3), STORE_OK);
    assert_int_equal(store_session_documents(f->s, "set-1", &l), STORE_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.ids[0], c);   /* order kept */
    assert_string_equal(l.ids[2], b);
    store_id_list_cleanup(&l);
    store_session_t ss;
    assert_int_equal(store_session_get(f->s, "set-1", &ss), STORE_OK);
    assert_string_equal(ss.document_id, c);
    store_session_cleanup(&ss);

    /* refused whole: a duplicate, a missing document, a missing session */
    const char *dup[] = { a, a };
    const char *missing[] = { a, "no-such-doc" };
    assert_int_equal(store_session_set_documents(f->s, "set-1", dup, 2), STORE_EINVAL);
    assert_int_equal(store_session_set_documents(f->s, "set-1", missing, 2), STORE_ENOTFOUND);
    assert_int_equal(store_session_set_documents(f->s, "no-session", three, 2), STORE_ENOTFOUND);
    assert_int_equal(store_session_documents(f->s, "set-1", &l), STORE_OK);
    assert_int_equal(l.n, 3);
    store_id_list_cleanup(&l);
    assert_int_equal(store_session_documents(f->s, "no-session", &l), STORE_ENOTFOUND);

    /* a deleted document leaves the set */
    assert_int_equal(store_doc_delete(f->s, b, NULL), STORE_OK);
    assert_int_equal(store_session_documents(f->s, "set-1", &l), STORE_OK);
    assert_int_equal(l.n, 2);
    store_id_list_cleanup(&l);
    /* one document again: the set goes */
    assert_int_equal(store_session_set_document(f->s, "set-1", a), STORE_OK);
    assert_int_equal(store_session_documents(f->s, "set-1", &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.ids[0], a);
    store_id_list_cleanup(&l);
    assert_int_equal(store_session_set_document(f->s, "set-1", NULL), STORE_OK);
    assert_int_equal(store_session_documents(f->s, "set-1", &l), STORE_OK);
    assert_int_equal(l.n, 0);

    /* collections */
    store_collection_t col;
    const char *two[] = { c, a };
    assert_int_equal(store_collection_create(f->s, "Reports 2026", two, 2, &col), STORE_OK);
    assert_true(store_id_valid(col.id));
    assert_string_equal(col.name, "Reports 2026");
    assert_int_equal(col.docs.n, 2);
    assert_string_equal(col.docs.ids[0], c);
    char cid[STORE_ID_MAX + 1];
    snprintf(cid, sizeof cid, "%s", col.id);
    store_collection_cleanup(&col);
    assert_int_equal(store_collection_get(f->s, cid, &col), STORE_OK);
    assert_int_equal(col.docs.n, 2);
    assert_true(col.created_at > 0);
    store_collection_cleanup(&col);
    assert_int_equal(store_collection_get(f->s, "nope", &col), STORE_ENOTFOUND);
    assert_int_equal(store_collection_create(f->s, "x", missing, 2, &col), STORE_ENOTFOUND);
    assert_int_equal(store_collection_create(f->s, "", two, 2, &col), STORE_EINVAL);
    assert_int_equal(store_collection_create(f->s, "x", NULL, 0, &col), STORE_EINVAL);
}

/* ---- Long documents ------------------------------------------------------ */

static void test_doc_marks(void **state)
{
    fx_t *f = *state;
    char id[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "one\n\ntwo\n\nthree", id);
    store_mark_t m[] = {
        { STORE_MARK_PAGE, 0, 1, "i" },
        { STORE_MARK_HEADING, 0, 1, "Intro" },
        { STORE_MARK_PAGE, 5, 2, NULL },
        { STORE_MARK_HEADING, 5, 2, "Détails" },
    };
    assert_int_equal(store_doc_set_marks(f->s, id, m, 4), STORE_OK);
    store_mark_list_t l;
    assert_int_equal(store_doc_marks(f->s, id, &l), STORE_OK);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.items[1].kind, STORE_MARK_HEADING);
    assert_string_equal(l.items[1].label, "Intro");
    assert_string_equal(l.items[2].label, "");
    assert_int_equal(l.items[3].offset, 5);
    assert_int_equal(l.items[3].number, 2);
    assert_string_equal(l.items[3].label, "Détails");
    store_mark_list_cleanup(&l);
    store_doc_t d;
    assert_int_equal(store_doc_get(f->s, id, &d), STORE_OK);
    assert_int_equal(d.n_pages, 2);
    assert_int_equal(d.n_chunks, 0);
    store_doc_cleanup(&d);

    /* Refused whole: decreasing offsets, level 7, page 0, bad UTF-8. */
    store_mark_t bad1[] = { { STORE_MARK_PAGE, 5, 1, "" }, { STORE_MARK_PAGE, 4, 2, "" } };
    store_mark_t bad2[] = { { STORE_MARK_HEADING, 0, 7, "x" } };
    store_mark_t bad3[] = { { STORE_MARK_PAGE, 0, 0, "" } };
    store_mark_t bad4[] = { { STORE_MARK_HEADING, 0, 1, "\xff" } };
    assert_int_equal(store_doc_set_marks(f->s, id, bad1, 2), STORE_EINVAL);
    assert_int_equal(store_doc_set_marks(f->s, id, bad2, 1), STORE_EINVAL);
    assert_int_equal(store_doc_set_marks(f->s, id, bad3, 1), STORE_EINVAL);
    assert_int_equal(store_doc_set_marks(f->s, id, bad4, 1), STORE_EINVAL);
    assert_int_equal(store_doc_marks(f->s, id, &l), STORE_OK);
    assert_int_equal(l.n, 4);
    store_mark_list_cleanup(&l);
    /* Replaced; an empty set clears. */
    assert_int_equal(store_doc_set_marks(f->s, id, m + 1, 1), STORE_OK);
    assert_int_equal(store_doc_marks(f->s, id, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    store_mark_list_cleanup(&l);
    assert_int_equal(store_doc_set_marks(f->s, id, NULL, 0), STORE_OK);
    assert_int_equal(store_doc_marks(f->s, id, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    assert_int_equal(store_doc_set_marks(f->s, "nope", m, 1), STORE_ENOTFOUND);
    assert_int_equal(store_doc_marks(f->s, "nope", &l), STORE_ENOTFOUND);
}

/* A reader over an array of chunks and their index texts; fail_at >= 0
 * makes it fail there. */
typedef struct {
    const store_chunk_t *c;
    const char *const *ix;
    size_t n, at;
    long fail_at;
} chunk_feed_t;

static int feed_next(void *ud, const store_chunk_t **chunk, const char **index_text)
{
    chunk_feed_t *f = ud;
    if (f->fail_at >= 0 && f->at == (size_t)f->fail_at)
        return STORE_EIO;
    if (f->at == f->n) {
        *chunk = NULL;
        return STORE_OK;
    }
    *chunk = &f->c[f->at];
    *index_text = f->ix[f->at];
    f->at++;
    return STORE_OK;
}

static void chunk_at(store_chunk_t *c, int64_t start, int64_t end, const char *content,
                     int64_t page, const char *heading)
{
    store_chunk_init(c);
    c->start = start;
    c->end = end;
    c->n_chars = end - start;
    c->est_tokens = (end - start) / 4 + 1;
    c->page_first = c->page_last = page;
    c->label_first = c->label_last = "";
    c->heading = (char *)heading;
    c->content = (char *)content;
}

static const char *const three_texts[] = {
    "The decoder asn1 der decoding reads tags.",
    "Hashing with sha256 digest functions.",
    "文档 档的 的缓 缓存 about caching",
};

/* Chunks of three_texts (index text = content) for document `id`. */
static void put_three_chunks(store_t *s, const char *id)
{
    store_chunk_t c[3];
    chunk_at(&c[0], 0, 41, three_texts[0], 1, "Decoding");
    chunk_at(&c[1], 43, 80, three_texts[1], 2, "Hashing > SHA");
    chunk_at(&c[2], 82, 120, three_texts[2], 3, "");
    chunk_feed_t feed = { c, three_texts, 3, 0, -1 };
    store_chunk_reader_t r = { feed_next, &feed };
    int64_t n = 0;
    assert_int_equal(store_doc_set_chunks(s, id, &r, &n), STORE_OK);
    assert_int_equal(n, 3);
}

static void test_doc_chunks(void **state)
{
    fx_t *f = *state;
    char id[STORE_ID_MAX + 1], other[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "text one", id);
    insert_doc(f->s, 2, "text two", other);
    put_three_chunks(f->s, id);

    store_doc_t d;
    assert_int_equal(store_doc_get(f->s, id, &d), STORE_OK);
    assert_int_equal(d.n_chunks, 3);
    store_doc_cleanup(&d);

    store_chunk_list_t l;
    int64_t total = 0;
    assert_int_equal(store_chunk_list(f->s, id, 1, 10, false, &l, &total), STORE_OK);
    assert_int_equal(total, 3);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.items[0].seq, 1);
    assert_null(l.items[0].content);
    assert_string_equal(l.items[0].heading, "Hashing > SHA");
    assert_int_equal(l.items[0].page_first, 2);
    assert_int_equal(l.items[0].tokens, -1);
    store_chunk_list_cleanup(&l);
    assert_int_equal(store_chunk_list(f->s, id, 0, 2, true, &l, &total), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[1].content, three_texts[1]);
    store_chunk_list_cleanup(&l);

    store_chunk_t c;
    assert_int_equal(store_chunk_get(f->s, id, 2, &c), STORE_OK);
    assert_string_equal(c.content, three_texts[2]);
    assert_int_equal(c.start, 82);
    store_chunk_cleanup(&c);
    assert_int_equal(store_chunk_get(f->s, id, 3, &c), STORE_ENOTFOUND);
    assert_int_equal(store_chunk_get(f->s, id, -1, &c), STORE_ENOTFOUND);
    assert_int_equal(store_chunk_get(f->s, "nope", 0, &c), STORE_ENOTFOUND);

    int64_t toks[] = { 12, 9 };
    assert_int_equal(store_chunks_set_tokens(f->s, id, "m1", toks, 2), STORE_OK);
    assert_int_equal(store_chunk_list(f->s, id, 0, 10, false, &l, NULL), STORE_OK);
    assert_int_equal(l.items[0].tokens, 12);
    assert_string_equal(l.items[1].tokens_key, "m1");
    assert_int_equal(l.items[2].tokens, -1);
    store_chunk_list_cleanup(&l);

    /* Search: BM25, best first, only the documents asked for. */
    put_three_chunks(f->s, other);
    const char *ids[] = { id };
    assert_int_equal(store_chunk_search(f->s, ids, 1, "\"decode\" OR \"tags\"", 10, &l),
                     STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].doc_id, id);
    assert_int_equal(l.items[0].seq, 0);
    assert_true(l.items[0].score > 0);
    store_chunk_list_cleanup(&l);
    const char *both[] = { id, other };
    assert_int_equal(store_chunk_search(f->s, both, 2, "\"缓存\" OR \"sha256\"", 10, &l),
                     STORE_OK);
    assert_int_equal(l.n, 4);
    for (size_t i = 1; i < l.n; i++)
        assert_true(l.items[i - 1].score >= l.items[i].score);
    store_chunk_list_cleanup(&l);
    assert_int_equal(store_chunk_search(f->s, ids, 1, "\"unmatched\"", 10, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    assert_int_equal(store_chunk_search(f->s, ids, 1, "AND (", 10, &l), STORE_EINVAL);
    assert_int_equal(store_chunk_search(f->s, ids, 0, "x", 10, &l), STORE_EINVAL);

    /* A reader that fails half-way writes nothing: the old chunks stay. */
    store_chunk_t cc[2];
    chunk_at(&cc[0], 0, 4, "new!", 0, "");
    chunk_at(&cc[1], 5, 9, "new?", 0, "");
    const char *cix[] = { "new", "new" };
    chunk_feed_t feed = { cc, cix, 2, 0, 1 };
    store_chunk_reader_t r = { feed_next, &feed };
    assert_int_equal(store_doc_set_chunks(f->s, id, &r, NULL), STORE_EIO);
    assert_int_equal(store_chunk_list(f->s, id, 0, 10, true, &l, &total), STORE_OK);
    assert_int_equal(total, 3);
    assert_string_equal(l.items[0].content, three_texts[0]);
    store_chunk_list_cleanup(&l);
    /* Bad chunks are refused: end before start, empty content. */
    chunk_at(&cc[0], 5, 4, "x", 0, "");
    feed = (chunk_feed_t){ cc, cix, 1, 0, -1 };
    assert_int_equal(store_doc_set_chunks(f->s, id, &r, NULL), STORE_EINVAL);
    chunk_at(&cc[0], 0, 0, "", 0, "");
    feed = (chunk_feed_t){ cc, cix, 1, 0, -1 };
    assert_int_equal(store_doc_set_chunks(f->s, id, &r, NULL), STORE_EINVAL);

    /* Deleting the document takes its chunks and their index rows. */
    assert_int_equal(store_doc_delete(f->s, id, NULL), STORE_OK);
    assert_int_equal(store_chunk_list(f->s, id, 0, 10, false, &l, NULL), STORE_ENOTFOUND);
    assert_int_equal(store_chunk_search(f->s, both, 2, "\"decode\"", 10, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].doc_id, other);
    store_chunk_list_cleanup(&l);
    assert_int_equal(store_check(f->s), STORE_OK);
}

static void test_doc_parts(void **state)
{
    fx_t *f = *state;
    char id[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "text", id);
    put_three_chunks(f->s, id);
    store_part_t p[2];
    store_part_init(&p[0]);
    store_part_init(&p[1]);
    p[0].chunk_first = 0;
    p[0].chunk_last = 1;
    p[0].tokens = 500;
    p[0].content_length = 80;
    p[1].chunk_first = 1;
    p[1].chunk_last = 2;
    p[1].content_length = 77;
    assert_int_equal(store_parts_set(f->s, id, "k1", p, 2), STORE_OK);
    assert_int_equal(store_parts_set(f->s, id, "k2", p, 1), STORE_OK);
    store_part_list_t l;
    assert_int_equal(store_parts_list(f->s, id, "k1", &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.items[1].seq, 1);
    assert_int_equal(l.items[1].chunk_first, 1);
    assert_int_equal(l.items[1].tokens, -1);
    assert_int_equal(l.items[0].tokens, 500);
    assert_int_equal(l.items[0].cache.status, STORE_CACHE_NONE);
    store_part_list_cleanup(&l);

    store_cache_t c = { .status = STORE_CACHE_CACHED, .entry_id = "e1", .tokens = 500,
                        .bytes = 1000, .tier = "disk", .ms = 12.5 };
    assert_int_equal(store_part_set_cache(f->s, id, "k1", 1, &c), STORE_OK);
    assert_int_equal(store_part_set_cache(f->s, id, "k1", 2, &c), STORE_ENOTFOUND);
    assert_int_equal(store_part_set_cache(f->s, id, "k3", 0, &c), STORE_ENOTFOUND);
    assert_int_equal(store_parts_list(f->s, id, "k1", &l), STORE_OK);
    assert_int_equal(l.items[1].cache.status, STORE_CACHE_CACHED);
    assert_string_equal(l.items[1].cache.tier, "disk");
    assert_true(l.items[1].cache.cached_at > 0);
    assert_int_equal(l.items[0].cache.status, STORE_CACHE_NONE);
    store_part_list_cleanup(&l);

    /* The engine's reset clears parts too. */
    int64_t n = 0;
    assert_int_equal(store_doc_reset_cache(f->s, false, &n), STORE_OK);
    assert_int_equal(store_parts_list(f->s, id, "k1", &l), STORE_OK);
    assert_int_equal(l.items[1].cache.status, STORE_CACHE_NONE);
    assert_null(l.items[1].cache.entry_id);
    store_part_list_cleanup(&l);

    /* Unknown plan: empty; bad part: refused; new chunks drop every plan. */
    assert_int_equal(store_parts_list(f->s, id, "none", &l), STORE_OK);
    assert_int_equal(l.n, 0);
    p[0].chunk_last = -1;
    assert_int_equal(store_parts_set(f->s, id, "k1", p, 1), STORE_EINVAL);
    assert_int_equal(store_parts_set(f->s, "nope", "k1", p + 1, 1), STORE_ENOTFOUND);
    put_three_chunks(f->s, id);
    assert_int_equal(store_parts_list(f->s, id, "k2", &l), STORE_OK);
    assert_int_equal(l.n, 0);
    assert_int_equal(store_parts_list(f->s, "nope", "k2", &l), STORE_ENOTFOUND);
}

/* ---- Sessions --------------------------------------------------------------- */

static void test_session_create_get(void **state)
{
    fx_t *f = *state;
    char doc[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "text", doc);

    store_session_t ss;
    int64_t before = store_now_ms();
    assert_int_equal(store_session_create(f->s, NULL, NULL, NULL, &ss), STORE_OK);
    assert_int_equal(strlen(ss.id), 36);
    assert_in_range(ss.created_at, before, store_now_ms());
    assert_int_equal(ss.last_active, ss.created_at);
    assert_null(ss.document_id);
    assert_null(ss.title);
    assert_null(ss.document_filename);
    assert_int_equal(ss.message_count, 0);
    store_session_cleanup(&ss);

    assert_int_equal(store_session_create(f->s, "chosen-1", doc, "My chat", &ss), STORE_OK);
    assert_string_equal(ss.id, "chosen-1");
    assert_string_equal(ss.document_id, doc);
    assert_string_equal(ss.document_filename, "notes.txt");
    assert_string_equal(ss.title, "My chat");
    store_session_cleanup(&ss);

    assert_int_equal(store_session_create(f->s, "chosen-1", NULL, NULL, &ss), STORE_ECONFLICT);
    assert_null(ss.id);
    assert_int_equal(store_session_create(f->s, "chosen-2", "no-such-doc", NULL, NULL),
                     STORE_ENOTFOUND);
    assert_int_equal(store_session_get(f->s, "chosen-2", &ss), STORE_ENOTFOUND);
    assert_int_equal(store_session_create(f->s, "bad/id", NULL, NULL, NULL), STORE_EINVAL);
    assert_int_equal(store_session_create(f->s, "x", NULL, "bad \xff", NULL), STORE_EINVAL);
    assert_int_equal(store_session_create(f->s, "chosen-3", NULL, NULL, NULL), STORE_OK);

    assert_int_equal(store_session_get(f->s, "chosen-1", &ss), STORE_OK);
    assert_string_equal(ss.title, "My chat");
    assert_string_equal(ss.document_filename, "notes.txt");
    store_session_cleanup(&ss);
    store_session_cleanup(NULL);
}

static void test_session_ensure(void **state)
{
    fx_t *f = *state;
    store_session_t ss;
    bool created = false;
    assert_int_equal(store_session_ensure(f->s, "client-id", NULL, &ss, &created), STORE_OK);
    assert_true(created);
    assert_string_equal(ss.id, "client-id");
    int64_t first = ss.last_active;
    store_session_cleanup(&ss);
    assert_int_equal(store_msg_append(f->s, "client-id", STORE_ROLE_USER, "hi", false, NULL,
                                      NULL), STORE_OK);

    sleep_ms(3);
    assert_int_equal(store_session_ensure(f->s, "client-id", NULL, &ss, &created), STORE_OK);
    assert_false(created);
    assert_true(ss.last_active > first);
    assert_int_equal(ss.message_count, 1);
    store_session_cleanup(&ss);

    assert_int_equal(store_session_ensure(f->s, "other", "no-doc", &ss, &created),
                     STORE_ENOTFOUND);
    assert_false(created);
    assert_int_equal(store_session_ensure(f->s, NULL, NULL, &ss, &created), STORE_EINVAL);
    assert_int_equal(store_session_ensure(f->s, "third", NULL, NULL, NULL), STORE_OK);
}

struct ensure_arg {
    store_t *s;
    pthread_barrier_t *bar;
    int created;
    int rc;
};

static void *ensure_thread(void *p)
{
    struct ensure_arg *a = p;
    bool created = false;
    pthread_barrier_wait(a->bar);
    a->rc = store_session_ensure(a->s, "raced", NULL, NULL, &created);
    a->created = created;
    return NULL;
}

static void test_session_ensure_race(void **state)
{
    fx_t *f = *state;
    enum { N = 8 };
    pthread_t th[N];
    struct ensure_arg args[N];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, N);
    for (int i = 0; i < N; i++) {
        args[i] = (struct ensure_arg){.s = f->s, .bar = &bar};
        assert_int_equal(pthread_create(&th[i], NULL, ensure_thread, &args[i]), 0);
    }
    int created = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].rc, STORE_OK);
        created += args[i].created;
    }
    pthread_barrier_destroy(&bar);
    assert_int_equal(created, 1);
}

static void test_session_touch_and_setters(void **state)
{
    fx_t *f = *state;
    char doc[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "text", doc);
    store_session_t ss;
    assert_int_equal(store_session_create(f->s, "s1", NULL, NULL, &ss), STORE_OK);
    int64_t t0 = ss.last_active;
    store_session_cleanup(&ss);
    sleep_ms(3);
    assert_int_equal(store_session_touch(f->s, "s1"), STORE_OK);
    assert_int_equal(store_session_get(f->s, "s1", &ss), STORE_OK);
    assert_true(ss.last_active > t0);
    assert_int_equal(ss.created_at, t0);
    store_session_cleanup(&ss);
    assert_int_equal(store_session_touch(f->s, "nobody"), STORE_ENOTFOUND);

    assert_int_equal(store_session_set_document(f->s, "s1", doc), STORE_OK);
    assert_int_equal(store_session_set_title(f->s, "s1", "T\xc3\xaftle"), STORE_OK);
    assert_int_equal(store_session_get(f->s, "s1", &ss), STORE_OK);
    assert_string_equal(ss.document_id, doc);
    assert_string_equal(ss.document_filename, "notes.txt");
    assert_string_equal(ss.title, "T\xc3\xaftle");
    store_session_cleanup(&ss);

    assert_int_equal(store_session_set_document(f->s, "s1", "no-doc"), STORE_ENOTFOUND);
    assert_int_equal(store_session_set_document(f->s, "nobody", doc), STORE_ENOTFOUND);
    assert_int_equal(store_session_set_title(f->s, "nobody", "x"), STORE_ENOTFOUND);
    assert_int_equal(store_session_set_document(f->s, "s1", NULL), STORE_OK);
    assert_int_equal(store_session_set_title(f->s, "s1", NULL), STORE_OK);
    assert_int_equal(store_session_get(f->s, "s1", &ss), STORE_OK);
    assert_null(ss.document_id);
    assert_null(ss.document_filename);
    assert_null(ss.title);
    store_session_cleanup(&ss);
}

static void test_session_list(void **state)
{
    fx_t *f = *state;
    char doc[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "text", doc);
    assert_int_equal(store_session_create(f->s, "old", doc, NULL, NULL), STORE_OK);
    sleep_ms(3);
    assert_int_equal(store_session_create(f->s, "mid", NULL, NULL, NULL), STORE_OK);
    sleep_ms(3);
    assert_int_equal(store_session_create(f->s, "new", NULL, NULL, NULL), STORE_OK);
    sleep_ms(3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(store_msg_append(f->s, "mid", STORE_ROLE_USER, "m", false, NULL, NULL),
                         STORE_OK);

    store_session_list_t l;
    assert_int_equal(store_session_list(f->s, 0, &l), STORE_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[0].id, "mid"); /* appended to last */
    assert_int_equal(l.items[0].message_count, 3);
    assert_string_equal(l.items[1].id, "new");
    assert_int_equal(l.items[1].message_count, 0);
    assert_string_equal(l.items[2].id, "old");
    assert_string_equal(l.items[2].document_filename, "notes.txt");
    assert_null(l.items[1].document_filename);
    store_session_list_cleanup(&l);

    sleep_ms(3);
    assert_int_equal(store_session_touch(f->s, "old"), STORE_OK);
    assert_int_equal(store_session_list(f->s, 2, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].id, "old");
    assert_string_equal(l.items[1].id, "mid");
    store_session_list_cleanup(&l);
    store_session_list_cleanup(&l);
}

static void test_session_delete_cascades(void **state)
{
    fx_t *f = *state;
    assert_int_equal(store_session_create(f->s, "s1", NULL, NULL, NULL), STORE_OK);
    assert_int_equal(store_session_create(f->s, "s2", NULL, NULL, NULL), STORE_OK);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(store_msg_append(f->s, "s1", STORE_ROLE_USER, "q", false, NULL, NULL),
                         STORE_OK);
        assert_int_equal(store_msg_append(f->s, "s2", STORE_ROLE_USER, "q", false, NULL, NULL),
                         STORE_OK);
    }
    assert_int_equal(store_session_delete(f->s, "s1"), STORE_OK);
    int64_t n = -1;
    assert_int_equal(store_msg_count(f->s, "s1", &n), STORE_ENOTFOUND);
    store_msg_list_t l;
    assert_int_equal(store_msg_list(f->s, "s1", 0, &l), STORE_ENOTFOUND);
    assert_int_equal(l.n, 0);
    /* A new session under the same id starts empty: the rows are gone. */
    assert_int_equal(store_session_create(f->s, "s1", NULL, NULL, NULL), STORE_OK);
    assert_int_equal(store_msg_count(f->s, "s1", &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_msg_count(f->s, "s2", &n), STORE_OK);
    assert_int_equal(n, 5);
    assert_int_equal(store_session_delete(f->s, "nobody"), STORE_ENOTFOUND);
}

static void test_doc_delete_sets_session_null(void **state)
{
    fx_t *f = *state;
    char doc[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "text", doc);
    assert_int_equal(store_session_create(f->s, "s1", doc, NULL, NULL), STORE_OK);
    assert_int_equal(store_msg_append(f->s, "s1", STORE_ROLE_USER, "q", false, NULL, NULL),
                     STORE_OK);
    assert_int_equal(store_doc_delete(f->s, doc, NULL), STORE_OK);
    store_session_t ss;
    assert_int_equal(store_session_get(f->s, "s1", &ss), STORE_OK);
    assert_null(ss.document_id);
    assert_null(ss.document_filename);
    assert_int_equal(ss.message_count, 1);
    store_session_cleanup(&ss);
}

static void test_session_expiry(void **state)
{
    fx_t *f = *state;
    store_session_t a, b;
    assert_int_equal(store_session_create(f->s, "a", NULL, NULL, &a), STORE_OK);
    assert_int_equal(store_msg_append(f->s, "a", STORE_ROLE_USER, "q", false, NULL, NULL),
                     STORE_OK);
    sleep_ms(30);
    assert_int_equal(store_session_create(f->s, "b", NULL, NULL, &b), STORE_OK);
    store_session_cleanup(&a);
    assert_int_equal(store_session_get(f->s, "a", &a), STORE_OK); /* after the append */
    assert_true(b.last_active - a.last_active >= 20);

    int64_t n = -1;
    /* Nobody idle for an hour. */
    assert_int_equal(store_session_delete_expired(f->s, 3600, 0, &n), STORE_OK);
    assert_int_equal(n, 0);
    /* One second after a's last activity (plus 1 ms): only a is idle > 1 s. */
    assert_int_equal(store_session_delete_expired(f->s, 1, a.last_active + 1001, &n), STORE_OK);
    assert_int_equal(n, 1);
    store_session_t got;
    assert_int_equal(store_session_get(f->s, "a", &got), STORE_ENOTFOUND);
    int64_t count;
    assert_int_equal(store_msg_count(f->s, "a", &count), STORE_ENOTFOUND);
    assert_int_equal(store_session_get(f->s, "b", &got), STORE_OK);
    store_session_cleanup(&got);
    /* Exactly max_idle is not "longer than". */
    assert_int_equal(store_session_delete_expired(f->s, 1, b.last_active + 1000, &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_session_delete_expired(f->s, 0, b.last_active + 1, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(store_session_delete_expired(f->s, -1, 0, &n), STORE_EINVAL);
    store_session_cleanup(&a);
    store_session_cleanup(&b);
}

/* ---- Messages --------------------------------------------------------------- */

static void test_messages(void **state)
{
    fx_t *f = *state;
    store_session_t ss;
    assert_int_equal(store_session_create(f->s, "s", NULL, NULL, &ss), STORE_OK);
    int64_t created = ss.last_active;
    store_session_cleanup(&ss);
    sleep_ms(3);

    const char *meta = "{\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3},"
                       "\"timings\":{\"cache_tier\":\"ram\"}}";
    int64_t ids[5];
    assert_int_equal(store_msg_append(f->s, "s", STORE_ROLE_SYSTEM, "You help.", false, NULL,
                                      &ids[0]), STORE_OK);
    assert_int_equal(store_msg_append(f->s, "s", STORE_ROLE_USER, "Gr\xc3\xbc\xc3\x9f" "e?",
                                      false, NULL, &ids[1]), STORE_OK);
    assert_int_equal(store_msg_append(f->s, "s", STORE_ROLE_ASSISTANT, "Hallo", false, meta,
                                      &ids[2]), STORE_OK);
    assert_int_equal(store_msg_append(f->s, "s", STORE_ROLE_USER, "More", false, NULL, &ids[3]),
                     STORE_OK);
    assert_int_equal(store_msg_append(f->s, "s", STORE_ROLE_ASSISTANT, "", true, NULL, &ids[4]),
                     STORE_OK);
    for (int i = 1; i < 5; i++)
        assert_true(ids[i] > ids[i - 1]);

    assert_int_equal(store_session_get(f->s, "s", &ss), STORE_OK);
    assert_true(ss.last_active > created); /* appending touches the session */
    assert_int_equal(ss.message_count, 5);
    store_session_cleanup(&ss);

    store_msg_list_t l;
    assert_int_equal(store_msg_list(f->s, "s", 0, &l), STORE_OK);
    assert_int_equal(l.n, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(l.items[i].id, ids[i]);
        assert_string_equal(l.items[i].session_id, "s");
        assert_true(l.items[i].created_at >= created);
    }
    assert_int_equal(l.items[0].role, STORE_ROLE_SYSTEM);
    assert_int_equal(l.items[1].role, STORE_ROLE_USER);
    assert_string_equal(l.items[1].content, "Gr\xc3\xbc\xc3\x9f" "e?");
    assert_int_equal(l.items[2].role, STORE_ROLE_ASSISTANT);
    assert_string_equal(l.items[2].meta, meta);
    assert_false(l.items[2].incomplete);
    assert_null(l.items[3].meta);
    assert_true(l.items[4].incomplete);
    assert_string_equal(l.items[4].content, "");
    store_msg_list_cleanup(&l);

    /* The last two, oldest first. */
    assert_int_equal(store_msg_list(f->s, "s", 2, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.items[0].id, ids[3]);
    assert_int_equal(l.items[1].id, ids[4]);
    store_msg_list_cleanup(&l);
    assert_int_equal(store_msg_list(f->s, "s", 100, &l), STORE_OK);
    assert_int_equal(l.n, 5);
    store_msg_list_cleanup(&l);

    int64_t n = -1;
    assert_int_equal(store_msg_count(f->s, "s", &n), STORE_OK);
    assert_int_equal(n, 5);

    /* Refusals write nothing. */
    int64_t id = 0;
    assert_int_equal(store_msg_append(f->s, "s", STORE_ROLE_USER, "x", false, "{not json",
                                      &id), STORE_EINVAL);
    assert_int_equal(id, -1);
    assert_int_equal(store_msg_append(f->s, "s", (store_role_t)3, "x", false, NULL, NULL),
                     STORE_EINVAL);
    assert_int_equal(store_msg_append(f->s, "s", STORE_ROLE_USER, "\xed\xa0\x80", false, NULL,
                                      NULL), STORE_EINVAL); /* a surrogate */
    assert_int_equal(store_msg_append(f->s, "s", STORE_ROLE_USER, NULL, false, NULL, NULL),
                     STORE_EINVAL);
    assert_int_equal(store_msg_append(f->s, "nobody", STORE_ROLE_USER, "x", false, NULL, NULL),
                     STORE_ENOTFOUND);
    assert_int_equal(store_msg_count(f->s, "s", &n), STORE_OK);
    assert_int_equal(n, 5);

    assert_int_equal(store_session_create(f->s, "empty", NULL, NULL, NULL), STORE_OK);
    assert_int_equal(store_msg_list(f->s, "empty", 0, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    assert_int_equal(store_msg_count(f->s, "empty", &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_msg_list(f->s, "nobody", 0, &l), STORE_ENOTFOUND);
    assert_int_equal(store_msg_count(f->s, "nobody", &n), STORE_ENOTFOUND);
    store_msg_cleanup(NULL);
    store_msg_list_cleanup(NULL);
}

/* ---- Threads ---------------------------------------------------------------- */

struct worker {
    store_t *s;
    int index;
    int64_t deadline_ms;
    int appended;
    int errors;
    char first_error[160];
};

static void worker_fail(struct worker *w, const char *what, int rc)
{
    if (w->errors++ == 0)
        snprintf(w->first_error, sizeof w->first_error, "%s: %s", what, store_strerror(rc));
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    char sid[32];
    snprintf(sid, sizeof sid, "thread-%d", w->index);
    int rc = store_session_ensure(w->s, sid, NULL, NULL, NULL);
    if (rc != STORE_OK)
        worker_fail(w, "ensure", rc);
    int64_t last_id = 0;
    for (int i = 0; store_now_ms() < w->deadline_ms; i++) {
        char text[64];
        snprintf(text, sizeof text, "message %d of %s", i, sid);
        int64_t id;
        rc = store_msg_append(w->s, sid, i % 2 ? STORE_ROLE_ASSISTANT : STORE_ROLE_USER, text,
                              false, i % 2 ? "{\"n\":1}" : NULL, &id);
        if (rc != STORE_OK) {
            worker_fail(w, "append", rc);
            continue;
        }
        if (id <= last_id)
            worker_fail(w, "id order", STORE_EINVAL);
        last_id = id;
        w->appended++;

        if (i % 4 == 0) {
            store_msg_list_t l;
            rc = store_msg_list(w->s, sid, 0, &l);
            if (rc != STORE_OK)
                worker_fail(w, "list", rc);
            else if (l.n != (size_t)w->appended || l.items[l.n - 1].id != id)
                worker_fail(w, "list contents", STORE_EINVAL);
            store_msg_list_cleanup(&l);
        }
        if (i % 8 == 1) {
            store_session_list_t sl;
            rc = store_session_list(w->s, 0, &sl);
            if (rc != STORE_OK)
                worker_fail(w, "session list", rc);
            store_session_list_cleanup(&sl);
            store_doc_list_t dl;
            rc = store_doc_list(w->s, &dl);
            if (rc != STORE_OK)
                worker_fail(w, "doc list", rc);
            store_doc_list_cleanup(&dl);
        }
        if (w->index == 0 && i % 10 == 0) { /* one thread also uploads */
            store_doc_t in = doc_in(1000 + i);
            store_doc_t out;
            char sha[65], stored[40];
            snprintf(sha, sizeof sha, "%064d", 1000 + i);
            snprintf(stored, sizeof stored, "thread-upload-%d", i);
            in.sha256 = sha;
            in.stored_name = stored;
            rc = store_doc_insert(w->s, &in, text, strlen(text), &out, NULL);
            if (rc != STORE_OK)
                worker_fail(w, "doc insert", rc);
            store_doc_cleanup(&out);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    fx_t *f = *state;
    enum { N = 8 };
    pthread_t th[N];
    struct worker w[N];
    int64_t deadline = store_now_ms() + 1000;
    for (int i = 0; i < N; i++) {
        w[i] = (struct worker){.s = f->s, .index = i, .deadline_ms = deadline};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (w[i].errors)
            fail_msg("thread %d: %d errors, first: %s", i, w[i].errors, w[i].first_error);
        assert_true(w[i].appended > 0);
        total += w[i].appended;
        char sid[32];
        snprintf(sid, sizeof sid, "thread-%d", i);
        int64_t n = -1;
        assert_int_equal(store_msg_count(f->s, sid, &n), STORE_OK);
        assert_int_equal(n, w[i].appended);
    }
    print_message("8 threads: %d messages in ~1 s\n", total);
    store_session_list_t sl;
    assert_int_equal(store_session_list(f->s, 0, &sl), STORE_OK);
    assert_int_equal(sl.n, N);
    store_session_list_cleanup(&sl);
    assert_int_equal(store_check(f->s), STORE_OK);
}

/* ---- Texts in pieces ---------------------------------------------------------- */

/* A reader that hands out a text in reads of `step` bytes (cutting
 * characters in two), optionally failing at a given offset. */
typedef struct {
    const char *text;
    size_t len, pos, step;
    size_t fail_at;   /* SIZE_MAX: never */
    int calls;
} step_reader_t;

static int step_read(void *ud, char *buf, size_t cap, size_t *got)
{
    step_reader_t *r = ud;
    r->calls++;
    if (r->pos >= r->fail_at)
        return STORE_EIO;
    size_t n = r->len - r->pos;
    if (n > r->step)
        n = r->step;
    if (n > cap)
        n = cap;
    memcpy(buf, r->text + r->pos, n);
    r->pos += n;
    *got = n;
    return STORE_OK;
}

typedef struct {
    size_t pieces, bytes, max_piece;
    bool bad;           /* a piece that is not UTF-8 or splits a word */
    char *joined;
} pieces_t;

static int take_piece(void *ud, const char *p, size_t n)
{
    pieces_t *ps = ud;
    if (!utf8_valid(p, n) || n > STORE_TEXT_CHUNK)
        ps->bad = true;
    /* every piece but the last ends after a blank */
    if (ps->pieces && ps->joined[ps->bytes - 1] != ' ' && ps->joined[ps->bytes - 1] != '\n')
        ps->bad = true;
    memcpy(ps->joined + ps->bytes, p, n);
    ps->bytes += n;
    ps->pieces++;
    if (n > ps->max_piece)
        ps->max_piece = n;
    return 0;
}

static int stop_at_second(void *ud, const char *p, size_t n)
{
    (void)p;
    (void)n;
    int *count = ud;
    return ++*count == 2 ? 7 : 0;
}

/* A 1.5 MB text read 1000 bytes at a time (characters cut between reads)
 * is stored in pieces of at most STORE_TEXT_CHUNK bytes cut between words,
 * read back whole and piece by piece, counted, and found by words from its
 * start, middle and end. */
static void test_doc_text_in_pieces(void **state)
{
    fx_t *f = *state;
    static const char unit[] = "harbor \xc3\xa9t\xc3\xa9 \xe2\x82\xac" "42 \xf0\x9f\x98\x80 ferry\n";
    const size_t unit_chars = 23, reps = 50000;
    size_t len = reps * (sizeof unit - 1) + 64;
    char *text = malloc(len + 1);
    assert_non_null(text);
    size_t n = 0;
    n += (size_t)sprintf(text, "openingword ");
    for (size_t i = 0; i < reps; i++) {
        memcpy(text + n, unit, sizeof unit - 1);
        n += sizeof unit - 1;
        if (i == reps / 2)
            n += (size_t)sprintf(text + n, "middleword ");
    }
    n += (size_t)sprintf(text + n, "closingword");
    text[n] = '\0';
    size_t want_chars = 12 + reps * unit_chars + 11 + 11;
    step_reader_t r = { text, n, 0, 1000, SIZE_MAX, 0 };
    store_text_reader_t rd = { step_read, &r };
    store_doc_t in = doc_in(3), out;
    bool existed = true;
    assert_int_equal(store_doc_insert_from(f->s, &in, &rd, &out, &existed), STORE_OK);
    assert_false(existed);
    assert_int_equal(out.n_chars, (int64_t)want_chars);

    char *t = NULL;
    size_t tlen = 0;
    assert_int_equal(store_doc_text(f->s, out.id, &t, &tlen), STORE_OK);
    assert_int_equal(tlen, n);
    assert_memory_equal(t, text, n);
    free(t);

    pieces_t ps = { .joined = malloc(n + 1) };
    assert_int_equal(store_doc_text_foreach(f->s, out.id, take_piece, &ps), STORE_OK);
    assert_false(ps.bad);
    assert_int_equal(ps.bytes, n);
    assert_memory_equal(ps.joined, text, n);
    assert_true(ps.pieces >= n / STORE_TEXT_CHUNK + 1);
    assert_true(ps.max_piece <= STORE_TEXT_CHUNK);
    free(ps.joined);
    int count = 0;
    assert_int_equal(store_doc_text_foreach(f->s, out.id, stop_at_second, &count), 7);
    assert_int_equal(count, 2);
    assert_int_equal(store_doc_text_foreach(f->s, "nope", take_piece, &ps), STORE_ENOTFOUND);

    static const char *const words[] = { "openingword", "middleword", "closingword" };
    for (int i = 0; i < 3; i++) {
        store_doc_list_t l;
        assert_int_equal(store_doc_search(f->s, words[i], 10, &l), STORE_OK);
        assert_int_equal(l.n, 1);   /* one document, however many pieces match */
        assert_string_equal(l.items[0].id, out.id);
        store_doc_list_cleanup(&l);
    }
    store_doc_list_t l;
    assert_int_equal(store_doc_search(f->s, "ferry", 10, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    store_doc_list_cleanup(&l);

    /* the same bytes again: the existing document, the reader not called */
    step_reader_t r2 = { text, n, 0, 1000, SIZE_MAX, 0 };
    store_text_reader_t rd2 = { step_read, &r2 };
    store_doc_t again;
    assert_int_equal(store_doc_insert_from(f->s, &in, &rd2, &again, &existed), STORE_OK);
    assert_true(existed);
    assert_int_equal(r2.calls, 0);
    assert_string_equal(again.id, out.id);
    store_doc_cleanup(&again);

    /* deleting takes every piece and its index entries */
    assert_int_equal(store_doc_delete(f->s, out.id, NULL), STORE_OK);
    assert_int_equal(store_doc_search(f->s, "middleword", 10, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    store_doc_list_cleanup(&l);
    assert_int_equal(store_check(f->s), STORE_OK);
    store_doc_cleanup(&out);
    free(text);
}

/* A text that goes wrong half-way leaves nothing behind. */
static void test_doc_text_pieces_fail(void **state)
{
    fx_t *f = *state;
    size_t n = 300000;
    char *text = malloc(n);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++)
        text[i] = i % 7 == 6 ? ' ' : 'a';
    struct {
        size_t at;
        const char *bytes;
        size_t fail_at;
        int want;
    } cases[] = {
        { 200000, "\xff", SIZE_MAX, STORE_EINVAL },         /* not UTF-8 */
        { 200000, "\0", SIZE_MAX, STORE_EINVAL },           /* NUL */
        { n - 1, "\xc3", SIZE_MAX, STORE_EINVAL },          /* cut character at the end */
        { 0, "a", 150000, STORE_EIO },                      /* the reader fails */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char saved = text[cases[k].at];
        text[cases[k].at] = cases[k].bytes[0];
        step_reader_t r = { text, n, 0, 4096, cases[k].fail_at, 0 };
        store_text_reader_t rd = { step_read, &r };
        store_doc_t in = doc_in(4), out;
        assert_int_equal(store_doc_insert_from(f->s, &in, &rd, &out, NULL), cases[k].want);
        assert_null(out.id);
        text[cases[k].at] = saved;
    }
    store_doc_list_t l;
    assert_int_equal(store_doc_list(f->s, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    store_doc_list_cleanup(&l);
    assert_int_equal(store_doc_search(f->s, "aaaaaa", 10, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    store_doc_list_cleanup(&l);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_enums),
        cmocka_unit_test_setup_teardown(test_doc_insert_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_duplicate_sha, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_conflicts_and_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_list_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_cache_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_reset_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_text_in_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_text_pieces_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_marks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_parts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_document_sets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_create_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_ensure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_ensure_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_touch_and_setters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_delete_cascades, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_delete_sets_session_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
