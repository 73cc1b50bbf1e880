/* test_store.c — store.h through its backends: records and rules.
 *
 * The tests run on SQLite: each gets a fresh database file in a temporary
 * directory (removed at the end). When KVCHAT_TEST_PG holds a libpq URI
 * (scripts/pgtmp sets it), they run again on PostgreSQL: each test gets a
 * fresh schema of that database (search_path given in the URI), dropped
 * at the end. Covered:
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
 *   second (plus document inserts) with no error and exact counts;
 * - users: ids, names unique in any case and their rules, password hashes
 *   returned only by the two gets, the list by name; never losing the last
 *   enabled admin (demote, disable, delete; two admins demoting each other
 *   from two threads at once); counts; disabling and deleting ending
 *   logins and tokens;
 * - logins: ids kept lowercase, user agents shortened, lookups with the
 *   user joined, touches only when due and never backwards, idle expiry to
 *   the millisecond, sweep, logout of one (own only) and of all but one;
 * - tokens: scopes (admin for admins only, dropped on demotion), expiry,
 *   last use, lists without hashes, deletes by the owner only or by id;
 * - ownership: another user's document or session is refused exactly as
 *   an unknown id through every function that takes it (get, list,
 *   search, delete, share, find, session and message functions); shared
 *   documents readable, not writable, by others and taken out of their
 *   sessions when unshared; two users with a session "abc" each; the same
 *   content uploaded by two users is two documents on one file, kept until
 *   the last document that uses it goes; a copy of a content (text,
 *   marks, chunks, plans without cache states) for another user; deleting
 *   a user with everything they own; adopting the unowned records; usage;
 * - the audit log: order, pages, filters, bounded size.
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
#include "app/store/store_pg.h"
#include "common/utf8.h"

typedef struct {
    char dir[64];
    char path[1024];
    char schema[64];  /* PostgreSQL: the test's schema; "" on SQLite */
    store_t *s;
} fx_t;

/* The PostgreSQL database of the second run (NULL during the SQLite run)
 * and a counter naming each test's schema. */
static const char *pg_base;
static int pg_schemas;

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
    if (pg_base) {
        char sql[128];
        snprintf(f->schema, sizeof f->schema, "kvchat_test_%d_%d", (int)getpid(), ++pg_schemas);
        snprintf(sql, sizeof sql, "CREATE SCHEMA %s", f->schema);
        if (store_pg_exec(pg_base, sql) != STORE_OK)
            return -1;
        snprintf(f->path, sizeof f->path, "%s%soptions=-csearch_path%%3D%s", pg_base,
                 strchr(pg_base, '?') ? "&" : "?", f->schema);
    }
    if (store_open(f->path, &f->s) != STORE_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    store_close(f->s);
    if (f->schema[0]) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", f->schema);
        if (store_pg_exec(pg_base, sql) != STORE_OK)
            return -1;
    }
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

static void test_doc_ocr(void **state)
{
    fx_t *f = *state;
    char id[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "scanned text", id);
    store_doc_t d;
    assert_int_equal(store_doc_get(f->s, id, &d), STORE_OK);
    assert_null(d.ocr_pages);
    assert_int_equal(d.ocr_confidence, -1);
    store_doc_cleanup(&d);
    assert_int_equal(store_doc_set_ocr(f->s, id, "1,3,12", 91), STORE_OK);
    assert_int_equal(store_doc_get(f->s, id, &d), STORE_OK);
    assert_string_equal(d.ocr_pages, "1,3,12");
    assert_int_equal(d.ocr_confidence, 91);
    store_doc_cleanup(&d);
    store_doc_list_t l;
    assert_int_equal(store_doc_list(f->s, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].ocr_pages, "1,3,12");
    store_doc_list_cleanup(&l);
    /* Malformed lists and confidences are refused; nothing changes. */
    static const char *const bad[] = { "1,,2", ",1", "1,", "01", "1;2", "a", "-1" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(store_doc_set_ocr(f->s, id, bad[i], 50), STORE_EINVAL);
    assert_int_equal(store_doc_set_ocr(f->s, id, "1", 101), STORE_EINVAL);
    assert_int_equal(store_doc_set_ocr(f->s, id, "1", -1), STORE_EINVAL);
    assert_int_equal(store_doc_set_ocr(f->s, id, NULL, 50), STORE_EINVAL);
    assert_int_equal(store_doc_get(f->s, id, &d), STORE_OK);
    assert_string_equal(d.ocr_pages, "1,3,12");
    store_doc_cleanup(&d);
    /* Cleared. */
    assert_int_equal(store_doc_set_ocr(f->s, id, NULL, -1), STORE_OK);
    assert_int_equal(store_doc_get(f->s, id, &d), STORE_OK);
    assert_null(d.ocr_pages);
    assert_int_equal(d.ocr_confidence, -1);
    store_doc_cleanup(&d);
    assert_int_equal(store_doc_set_ocr(f->s, "nope", "1", 50), STORE_ENOTFOUND);
    /* Image types are documents. */
    assert_true(store_content_type_valid("png") && store_content_type_valid("tiff") &&
                store_content_type_valid("jpeg") && store_content_type_valid("webp"));
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

/* ---- Accounts ----------------------------------------------------------------- */

/* An argon2id string as libsodium encodes one (the store never parses it). */
#define PW_HASH "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"

/* A user named `name` with `role`; its id into id_out (STORE_ID_MAX + 1). */
static void mk_user(store_t *s, const char *name, store_user_role_t role, char *id_out)
{
    store_user_t u;
    assert_int_equal(store_user_create(s, name, PW_HASH, role, &u), STORE_OK);
    snprintf(id_out, STORE_ID_MAX + 1, "%s", u.id);
    store_user_cleanup(&u);
}

/* A distinct 64-hex-digit secret hash for n, in hex[65]. */
static const char *hash_of(int n, char *hex)
{
    snprintf(hex, 65, "%064x", n);
    return hex;
}

/* A document of user `scope` (NULL: local mode) with distinct content n. */
static void insert_doc_as(store_t *s, const store_scope_t *scope, int n, const char *text,
                          char *id_out)
{
    store_doc_t in = doc_in(n);
    store_doc_t out;
    bool existed = true;
    assert_int_equal(store_doc_insert_scoped(s, scope, &in, text, strlen(text), &out, &existed),
                     STORE_OK);
    assert_false(existed);
    if (id_out)
        snprintf(id_out, STORE_ID_MAX + 1, "%s", out.id);
    store_doc_cleanup(&out);
}

static void test_user_create_get(void **state)
{
    fx_t *f = *state;
    store_user_t u, got;
    int64_t before = store_now_ms();
    assert_int_equal(store_user_create(f->s, "Alice", PW_HASH, STORE_USER_ROLE_ADMIN, &u),
                     STORE_OK);
    assert_true(store_id_valid(u.id));
    assert_int_equal(strlen(u.id), 36);
    assert_string_equal(u.name, "Alice");
    assert_string_equal(u.password_hash, PW_HASH);
    assert_int_equal(u.role, STORE_USER_ROLE_ADMIN);
    assert_false(u.disabled);
    assert_in_range(u.created_at, before, store_now_ms());
    assert_int_equal(u.updated_at, u.created_at);

    /* by id, and by name in any case (the name keeps its case) */
    assert_int_equal(store_user_get(f->s, u.id, &got), STORE_OK);
    assert_string_equal(got.name, "Alice");
    assert_string_equal(got.password_hash, PW_HASH);
    store_user_cleanup(&got);
    static const char *const spellings[] = { "alice", "ALICE", "aLiCe", "Alice" };
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(store_user_get_by_name(f->s, spellings[i], &got), STORE_OK);
        assert_string_equal(got.id, u.id);
        assert_string_equal(got.name, "Alice");
        assert_string_equal(got.password_hash, PW_HASH);
        store_user_cleanup(&got);
    }

    /* the name is taken in every case */
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(store_user_create(f->s, spellings[i], PW_HASH, STORE_USER_ROLE_USER,
                                           NULL), STORE_ECONFLICT);
    assert_int_equal(store_user_create(f->s, "bob", PW_HASH, STORE_USER_ROLE_USER, NULL),
                     STORE_OK);
    assert_int_equal(store_user_create(f->s, "carol.d_e-f@example.org", PW_HASH,
                                       STORE_USER_ROLE_USER, NULL), STORE_OK);

    /* names: 1..64 of [A-Za-z0-9._@-], starting with a letter or digit */
    char name64[66];
    memset(name64, 'n', 65);
    name64[64] = '\0';
    assert_true(store_user_name_valid(name64));
    assert_true(store_user_name_valid("7"));
    assert_int_equal(store_user_create(f->s, name64, PW_HASH, STORE_USER_ROLE_USER, NULL),
                     STORE_OK);
    name64[64] = 'n';
    name64[65] = '\0';
    static const char *const bad_names[] = {
        "", " bob", "bob ", "b o", ".bob", "-bob", "_bob", "@bob", "a/b", "a\\b", "a:b",
        "b\xc3\xb6" "b", "bob\n", "a%b", "a+b",
    };
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        assert_false(store_user_name_valid(bad_names[i]));
        assert_int_equal(store_user_create(f->s, bad_names[i], PW_HASH, STORE_USER_ROLE_USER,
                                           &got), STORE_EINVAL);
        assert_null(got.id);
        assert_int_equal(store_user_get_by_name(f->s, bad_names[i], &got), STORE_ENOTFOUND);
    }
    assert_false(store_user_name_valid(name64));
    assert_false(store_user_name_valid(NULL));
    assert_int_equal(store_user_create(f->s, name64, PW_HASH, STORE_USER_ROLE_USER, NULL),
                     STORE_EINVAL);

    /* password hashes: printable ASCII without spaces, bounded */
    char longhash[STORE_PASSWORD_HASH_MAX + 2];
    memset(longhash, 'h', sizeof longhash - 1);
    longhash[sizeof longhash - 1] = '\0';
    assert_int_equal(store_user_create(f->s, "dave", longhash, STORE_USER_ROLE_USER, NULL),
                     STORE_ETOOBIG);
    assert_int_equal(store_user_create(f->s, "dave", "", STORE_USER_ROLE_USER, NULL),
                     STORE_EINVAL);
    assert_int_equal(store_user_create(f->s, "dave", NULL, STORE_USER_ROLE_USER, NULL),
                     STORE_EINVAL);
    assert_int_equal(store_user_create(f->s, "dave", "has space", STORE_USER_ROLE_USER, NULL),
                     STORE_EINVAL);
    assert_int_equal(store_user_create(f->s, "dave", "h\xc3\xa9", STORE_USER_ROLE_USER, NULL),
                     STORE_EINVAL);
    assert_int_equal(store_user_create(f->s, "dave", PW_HASH, (store_user_role_t)2, NULL),
                     STORE_EINVAL);
    longhash[STORE_PASSWORD_HASH_MAX] = '\0';
    assert_int_equal(store_user_create(f->s, "dave", longhash, STORE_USER_ROLE_USER, NULL),
                     STORE_OK);

    /* unknown */
    assert_int_equal(store_user_get(f->s, "no-such-user", &got), STORE_ENOTFOUND);
    assert_null(got.id);
    assert_int_equal(store_user_get_by_name(f->s, "nobody", &got), STORE_ENOTFOUND);
    assert_int_equal(store_user_get(f->s, "bad id", &got), STORE_EINVAL);

    /* the list: by name in any case, no hashes */
    store_user_list_t l;
    assert_int_equal(store_user_list(f->s, &l), STORE_OK);
    assert_int_equal(l.n, 5);
    assert_string_equal(l.items[0].name, "Alice");
    assert_string_equal(l.items[1].name, "bob");
    assert_string_equal(l.items[2].name, "carol.d_e-f@example.org");
    assert_string_equal(l.items[3].name, "dave");
    for (size_t i = 0; i < l.n; i++)
        assert_null(l.items[i].password_hash);
    store_user_list_cleanup(&l);
    store_user_list_cleanup(&l);

    store_user_role_t r;
    assert_string_equal(store_user_role_name(STORE_USER_ROLE_ADMIN), "admin");
    assert_string_equal(store_user_role_name((store_user_role_t)7), "");
    assert_int_equal(store_user_role_parse("user", &r), STORE_OK);
    assert_int_equal(r, STORE_USER_ROLE_USER);
    assert_int_equal(store_user_role_parse("Admin", &r), STORE_EINVAL);
    store_user_cleanup(&u);
    store_user_cleanup(NULL);
}

static void test_user_last_admin(void **state)
{
    fx_t *f = *state;
    int64_t users = -1, admins = -1;
    assert_int_equal(store_user_count(f->s, &users, &admins), STORE_OK);
    assert_int_equal(users, 0);   /* the first admin is still to be created */
    assert_int_equal(admins, 0);

    char a[STORE_ID_MAX + 1], b[STORE_ID_MAX + 1], c[STORE_ID_MAX + 1];
    mk_user(f->s, "a", STORE_USER_ROLE_ADMIN, a);
    mk_user(f->s, "b", STORE_USER_ROLE_USER, b);
    assert_int_equal(store_user_count(f->s, &users, &admins), STORE_OK);
    assert_int_equal(users, 2);
    assert_int_equal(admins, 1);

    /* the only admin can be neither demoted, nor disabled, nor deleted */
    assert_int_equal(store_user_set_role(f->s, a, STORE_USER_ROLE_USER), STORE_ECONFLICT);
    assert_int_equal(store_user_set_disabled(f->s, a, true), STORE_ECONFLICT);
    assert_int_equal(store_user_delete(f->s, a, NULL, NULL), STORE_ECONFLICT);
    store_user_t u;
    assert_int_equal(store_user_get(f->s, a, &u), STORE_OK);
    assert_int_equal(u.role, STORE_USER_ROLE_ADMIN);
    assert_false(u.disabled);
    store_user_cleanup(&u);
    /* changes that keep it an admin are fine */
    assert_int_equal(store_user_set_role(f->s, a, STORE_USER_ROLE_ADMIN), STORE_OK);
    assert_int_equal(store_user_set_disabled(f->s, a, false), STORE_OK);

    /* with a second admin, the first may go */
    int64_t t0 = store_now_ms();
    assert_int_equal(store_user_set_role(f->s, b, STORE_USER_ROLE_ADMIN), STORE_OK);
    assert_int_equal(store_user_get(f->s, b, &u), STORE_OK);
    assert_int_equal(u.role, STORE_USER_ROLE_ADMIN);
    assert_true(u.updated_at >= t0);
    assert_true(u.updated_at >= u.created_at);
    store_user_cleanup(&u);
    assert_int_equal(store_user_count(f->s, NULL, &admins), STORE_OK);
    assert_int_equal(admins, 2);
    assert_int_equal(store_user_set_role(f->s, a, STORE_USER_ROLE_USER), STORE_OK);
    assert_int_equal(store_user_set_role(f->s, b, STORE_USER_ROLE_USER), STORE_ECONFLICT);

    /* a disabled admin does not count */
    mk_user(f->s, "c", STORE_USER_ROLE_ADMIN, c);
    assert_int_equal(store_user_set_disabled(f->s, c, true), STORE_OK);
    assert_int_equal(store_user_count(f->s, &users, &admins), STORE_OK);
    assert_int_equal(users, 3);
    assert_int_equal(admins, 1);
    assert_int_equal(store_user_delete(f->s, b, NULL, NULL), STORE_ECONFLICT);
    assert_int_equal(store_user_set_disabled(f->s, c, false), STORE_OK);
    assert_int_equal(store_user_delete(f->s, b, NULL, NULL), STORE_OK);
    assert_int_equal(store_user_count(f->s, &users, &admins), STORE_OK);
    assert_int_equal(users, 2);
    assert_int_equal(admins, 1);
    /* a user who is not an admin may always go */
    assert_int_equal(store_user_delete(f->s, a, NULL, NULL), STORE_OK);

    assert_int_equal(store_user_set_role(f->s, "nobody", STORE_USER_ROLE_USER),
                     STORE_ENOTFOUND);
    assert_int_equal(store_user_set_disabled(f->s, "nobody", true), STORE_ENOTFOUND);
    assert_int_equal(store_user_delete(f->s, "nobody", NULL, NULL), STORE_ENOTFOUND);
    assert_int_equal(store_user_set_role(f->s, c, (store_user_role_t)-1), STORE_EINVAL);
    assert_int_equal(store_user_count(NULL, &users, &admins), STORE_EINVAL);
}

struct demoter {
    store_t *s;
    const char *id;
    pthread_barrier_t *go;
    int rc;
};

static void *demote_main(void *p)
{
    struct demoter *d = p;
    pthread_barrier_wait(d->go);
    d->rc = store_user_set_role(d->s, d->id, STORE_USER_ROLE_USER);
    return NULL;
}

/* Two admins demoting each other at the same moment: exactly one wins, so
 * an admin always remains. */
static void test_user_last_admin_race(void **state)
{
    fx_t *f = *state;
    char prev[STORE_ID_MAX + 1] = "";
    for (int round = 0; round < 20; round++) {
        char a[STORE_ID_MAX + 1], b[STORE_ID_MAX + 1], na[16], nb[16];
        snprintf(na, sizeof na, "a%d", round);
        snprintf(nb, sizeof nb, "b%d", round);
        mk_user(f->s, na, STORE_USER_ROLE_ADMIN, a);
        mk_user(f->s, nb, STORE_USER_ROLE_ADMIN, b);
        if (prev[0])   /* a and b become the only two admins */
            assert_int_equal(store_user_set_role(f->s, prev, STORE_USER_ROLE_USER), STORE_OK);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        struct demoter da = { f->s, a, &go, 1 }, db = { f->s, b, &go, 1 };
        pthread_t ta, tb;
        assert_int_equal(pthread_create(&ta, NULL, demote_main, &da), 0);
        assert_int_equal(pthread_create(&tb, NULL, demote_main, &db), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        assert_true((da.rc == STORE_OK) != (db.rc == STORE_OK));
        assert_int_equal(da.rc == STORE_OK ? db.rc : da.rc, STORE_ECONFLICT);
        int64_t admins = 0;
        assert_int_equal(store_user_count(f->s, NULL, &admins), STORE_OK);
        assert_int_equal(admins, 1);
        snprintf(prev, sizeof prev, "%s", da.rc == STORE_OK ? b : a);
    }
    int64_t users = 0, admins = 0;
    assert_int_equal(store_user_count(f->s, &users, &admins), STORE_OK);
    assert_int_equal(users, 40);
    assert_int_equal(admins, 1);
}

static void test_user_password(void **state)
{
    fx_t *f = *state;
    char a[STORE_ID_MAX + 1], h[65];
    mk_user(f->s, "alice", STORE_USER_ROLE_USER, a);
    assert_int_equal(store_login_create(f->s, hash_of(1, h), a, 3600, NULL, NULL, NULL),
                     STORE_OK);
    const char *next = "$argon2id$v=19$m=65536,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA";
    assert_int_equal(store_user_set_password(f->s, a, next), STORE_OK);
    store_user_t u;
    assert_int_equal(store_user_get_by_name(f->s, "ALICE", &u), STORE_OK);
    assert_string_equal(u.password_hash, next);
    assert_true(u.updated_at >= u.created_at);
    store_user_cleanup(&u);
    /* logins stay; the app ends the others itself */
    assert_int_equal(store_login_lookup(f->s, h, 0, 60, NULL, &u), STORE_OK);
    store_user_cleanup(&u);
    assert_int_equal(store_user_set_password(f->s, a, "with space"), STORE_EINVAL);
    assert_int_equal(store_user_set_password(f->s, a, NULL), STORE_EINVAL);
    assert_int_equal(store_user_set_password(f->s, "nobody", next), STORE_ENOTFOUND);
}

static void test_login_lifecycle(void **state)
{
    fx_t *f = *state;
    char a[STORE_ID_MAX + 1], b[STORE_ID_MAX + 1], h1[65], h2[65], h3[65];
    mk_user(f->s, "alice", STORE_USER_ROLE_ADMIN, a);
    mk_user(f->s, "bob", STORE_USER_ROLE_USER, b);

    /* the id is kept lowercase; a long or ill-formed user agent is shortened */
    char upper[65];
    hash_of(0xabcdef, h1);
    for (int i = 0; i < 64; i++)
        upper[i] = (char)(h1[i] >= 'a' ? h1[i] - 'a' + 'A' : h1[i]);
    upper[64] = '\0';
    char ua[1000];
    memset(ua, 'u', sizeof ua - 1);
    ua[sizeof ua - 1] = '\0';
    ua[10] = '\xff';
    store_login_t l;
    int64_t before = store_now_ms();
    assert_int_equal(store_login_create(f->s, upper, a, 3600, "192.0.2.7", ua, &l), STORE_OK);
    assert_string_equal(l.id, h1);
    assert_string_equal(l.user_id, a);
    assert_in_range(l.created_at, before, store_now_ms());
    assert_int_equal(l.last_seen_at, l.created_at);
    assert_int_equal(l.idle_ms, 3600 * 1000);
    assert_int_equal(l.expires_at, l.created_at + 3600 * 1000);
    assert_string_equal(l.client_addr, "192.0.2.7");
    assert_true(strlen(l.user_agent) <= STORE_USER_AGENT_MAX);
    assert_true(utf8_valid(l.user_agent, strlen(l.user_agent)));
    assert_int_equal(memcmp(l.user_agent + strlen(l.user_agent) - 3, "...", 3), 0);
    int64_t t0 = l.created_at;
    store_login_cleanup(&l);

    /* lookups: the user joined, without the password hash */
    store_user_t u;
    assert_int_equal(store_login_lookup(f->s, h1, t0 + 1000, 60, &l, &u), STORE_OK);
    assert_string_equal(u.id, a);
    assert_string_equal(u.name, "alice");
    assert_int_equal(u.role, STORE_USER_ROLE_ADMIN);
    assert_null(u.password_hash);
    assert_int_equal(l.last_seen_at, t0);           /* not due for a touch yet */
    store_login_cleanup(&l);
    store_user_cleanup(&u);
    /* due: last_seen and the expiry move forward */
    assert_int_equal(store_login_lookup(f->s, upper, t0 + 61000, 60, &l, &u), STORE_OK);
    assert_int_equal(l.last_seen_at, t0 + 61000);
    assert_int_equal(l.expires_at, t0 + 61000 + 3600 * 1000);
    store_login_cleanup(&l);
    store_user_cleanup(&u);
    assert_int_equal(store_login_lookup(f->s, h1, t0 + 62000, 60, &l, &u), STORE_OK);
    assert_int_equal(l.last_seen_at, t0 + 61000);   /* read back as stored */
    assert_int_equal(l.expires_at, t0 + 61000 + 3600 * 1000);
    store_login_cleanup(&l);
    store_user_cleanup(&u);
    /* a touch never moves it backwards */
    assert_int_equal(store_login_lookup(f->s, h1, t0 + 30000, 0, &l, &u), STORE_OK);
    assert_int_equal(l.last_seen_at, t0 + 61000);
    store_login_cleanup(&l);
    store_user_cleanup(&u);
    /* idle expiry: alive until expires_at, then not found */
    int64_t exp = t0 + 61000 + 3600 * 1000;
    assert_int_equal(store_login_lookup(f->s, h1, exp - 1, 3600 * 2, NULL, &u), STORE_OK);
    store_user_cleanup(&u);
    assert_int_equal(store_login_lookup(f->s, h1, exp, 3600 * 2, &l, &u), STORE_ENOTFOUND);
    assert_null(u.id);
    assert_null(l.id);
    assert_int_equal(store_login_lookup(f->s, h1, exp + 1000, 0, NULL, &u), STORE_ENOTFOUND);

    /* more logins: list, delete one, delete the user's others */
    assert_int_equal(store_login_create(f->s, hash_of(2, h2), a, 60, NULL, NULL, NULL),
                     STORE_OK);
    assert_int_equal(store_login_create(f->s, hash_of(3, h3), a, 7200, "::1", "curl/8", NULL),
                     STORE_OK);
    assert_int_equal(store_login_create(f->s, h2, b, 60, NULL, NULL, NULL), STORE_ECONFLICT);
    char hb[65];
    assert_int_equal(store_login_create(f->s, hash_of(4, hb), b, 60, NULL, NULL, NULL),
                     STORE_OK);
    store_login_list_t ll;
    assert_int_equal(store_login_list(f->s, a, &ll), STORE_OK);
    assert_int_equal(ll.n, 3);      /* the expired one too, until swept */
    assert_string_equal(ll.items[0].id, h1);   /* seen last, at t0 + 61 s */
    store_login_list_cleanup(&ll);
    assert_int_equal(store_login_list(f->s, "nobody", &ll), STORE_OK);
    assert_int_equal(ll.n, 0);

    /* sweep at t0 + 61 min + 1 s: h1 (expired) and h2, h4 (60 s idle) go */
    int64_t n = -1;
    assert_int_equal(store_login_sweep(f->s, exp + 1000, &n), STORE_OK);
    assert_int_equal(n, 3);
    assert_int_equal(store_login_list(f->s, a, &ll), STORE_OK);
    assert_int_equal(ll.n, 1);
    assert_string_equal(ll.items[0].id, h3);
    assert_string_equal(ll.items[0].user_agent, "curl/8");
    store_login_list_cleanup(&ll);
    assert_int_equal(store_login_sweep(f->s, 0, &n), STORE_OK);
    assert_int_equal(n, 0);

    /* log out: only one's own when a user is given */
    assert_int_equal(store_login_delete(f->s, h3, b), STORE_ENOTFOUND);
    assert_int_equal(store_login_delete(f->s, h3, a), STORE_OK);
    assert_int_equal(store_login_delete(f->s, h3, NULL), STORE_ENOTFOUND);
    assert_int_equal(store_login_lookup(f->s, h3, 0, 0, NULL, &u), STORE_ENOTFOUND);

    /* log out everywhere, keeping the current one */
    for (int i = 10; i < 14; i++) {
        char h[65];
        assert_int_equal(store_login_create(f->s, hash_of(i, h), a, 600, NULL, NULL, NULL),
                         STORE_OK);
    }
    assert_int_equal(store_login_create(f->s, hash_of(20, hb), b, 600, NULL, NULL, NULL),
                     STORE_OK);
    char keep[65];
    assert_int_equal(store_login_delete_user(f->s, a, hash_of(12, keep), &n), STORE_OK);
    assert_int_equal(n, 3);
    assert_int_equal(store_login_list(f->s, a, &ll), STORE_OK);
    assert_int_equal(ll.n, 1);
    assert_string_equal(ll.items[0].id, keep);
    store_login_list_cleanup(&ll);
    assert_int_equal(store_login_delete_user(f->s, a, NULL, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(store_login_lookup(f->s, hb, 0, 0, NULL, &u), STORE_OK); /* bob's stays */
    store_user_cleanup(&u);

    /* refusals */
    assert_int_equal(store_login_create(f->s, hash_of(30, h1), "nobody", 60, NULL, NULL, NULL),
                     STORE_ENOTFOUND);
    assert_int_equal(store_login_create(f->s, h1, a, 0, NULL, NULL, NULL), STORE_EINVAL);
    assert_int_equal(store_login_create(f->s, "abc", a, 60, NULL, NULL, NULL), STORE_EINVAL);
    char addr[STORE_ADDR_MAX + 2];
    memset(addr, '1', sizeof addr - 1);
    addr[sizeof addr - 1] = '\0';
    assert_int_equal(store_login_create(f->s, h1, a, 60, addr, NULL, NULL), STORE_ETOOBIG);
    assert_int_equal(store_login_lookup(f->s, h1, 0, -1, NULL, &u), STORE_EINVAL);
    assert_int_equal(store_login_lookup(f->s, "zz", 0, 0, NULL, &u), STORE_EINVAL);
    assert_int_equal(store_login_lookup(f->s, h1, 0, 0, NULL, NULL), STORE_EINVAL);
    assert_int_equal(store_login_delete(f->s, "nothex", NULL), STORE_EINVAL);
}

/* Disabling a user ends their logins and tokens; deleting too. */
static void test_user_disable_ends_credentials(void **state)
{
    fx_t *f = *state;
    char a[STORE_ID_MAX + 1], b[STORE_ID_MAX + 1], h[65], t[65];
    mk_user(f->s, "admin", STORE_USER_ROLE_ADMIN, a);
    mk_user(f->s, "bob", STORE_USER_ROLE_USER, b);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(store_login_create(f->s, hash_of(100 + i, h), b, 600, NULL, NULL, NULL),
                         STORE_OK);
        assert_int_equal(store_token_create(f->s, b, "cli", hash_of(200 + i, t), STORE_TOKEN_CHAT,
                                            0, NULL), STORE_OK);
    }
    assert_int_equal(store_login_create(f->s, hash_of(300, h), a, 600, NULL, NULL, NULL),
                     STORE_OK);
    assert_int_equal(store_user_set_disabled(f->s, b, true), STORE_OK);
    store_user_t u;
    assert_int_equal(store_user_get(f->s, b, &u), STORE_OK);
    assert_true(u.disabled);
    store_user_cleanup(&u);
    assert_int_equal(store_login_lookup(f->s, hash_of(100, h), 0, 0, NULL, &u), STORE_ENOTFOUND);
    assert_int_equal(store_token_lookup(f->s, hash_of(201, t), 0, 0, NULL, &u), STORE_ENOTFOUND);
    store_login_list_t ll;
    assert_int_equal(store_login_list(f->s, b, &ll), STORE_OK);
    assert_int_equal(ll.n, 0);
    store_token_list_t tl;
    assert_int_equal(store_token_list(f->s, b, &tl), STORE_OK);
    assert_int_equal(tl.n, 0);
    /* a disabled user gets no new ones */
    assert_int_equal(store_login_create(f->s, hash_of(101, h), b, 600, NULL, NULL, NULL),
                     STORE_ENOTFOUND);
    assert_int_equal(store_token_create(f->s, b, "cli", hash_of(202, t), STORE_TOKEN_READ, 0,
                                        NULL), STORE_ENOTFOUND);
    /* enabled again: they log in afresh */
    assert_int_equal(store_user_set_disabled(f->s, b, false), STORE_OK);
    assert_int_equal(store_login_lookup(f->s, hash_of(100, h), 0, 0, NULL, &u), STORE_ENOTFOUND);
    assert_int_equal(store_login_create(f->s, hash_of(102, h), b, 600, NULL, NULL, NULL),
                     STORE_OK);
    assert_int_equal(store_login_lookup(f->s, h, 0, 0, NULL, &u), STORE_OK);
    store_user_cleanup(&u);
    /* the admin's login was never touched */
    assert_int_equal(store_login_lookup(f->s, hash_of(300, h), 0, 0, NULL, &u), STORE_OK);
    store_user_cleanup(&u);
    /* deleting takes them too */
    assert_int_equal(store_token_create(f->s, b, "cli", hash_of(203, t), STORE_TOKEN_READ, 0,
                                        NULL), STORE_OK);
    assert_int_equal(store_user_delete(f->s, b, NULL, NULL), STORE_OK);
    assert_int_equal(store_login_lookup(f->s, hash_of(102, h), 0, 0, NULL, &u), STORE_ENOTFOUND);
    assert_int_equal(store_token_lookup(f->s, hash_of(203, t), 0, 0, NULL, &u), STORE_ENOTFOUND);
}

static void test_token_lifecycle(void **state)
{
    fx_t *f = *state;
    char a[STORE_ID_MAX + 1], b[STORE_ID_MAX + 1], h[65];
    mk_user(f->s, "admin", STORE_USER_ROLE_ADMIN, a);
    mk_user(f->s, "bob", STORE_USER_ROLE_USER, b);

    store_token_t t, got;
    int64_t now = store_now_ms();
    assert_int_equal(store_token_create(f->s, b, "laptop \xe2\x9c\x93", hash_of(1, h),
                                        STORE_TOKEN_CHAT, 0, &t), STORE_OK);
    assert_true(store_id_valid(t.id));
    assert_string_equal(t.user_id, b);
    assert_string_equal(t.name, "laptop \xe2\x9c\x93");
    assert_string_equal(t.hash, h);
    assert_int_equal(t.scope, STORE_TOKEN_CHAT);
    assert_in_range(t.created_at, now, store_now_ms());
    assert_int_equal(t.expires_at, -1);
    assert_int_equal(t.last_used_at, -1);
    char t1[STORE_ID_MAX + 1];
    snprintf(t1, sizeof t1, "%s", t.id);
    store_token_cleanup(&t);

    /* an admin scope is for admins only */
    assert_int_equal(store_token_create(f->s, b, "x", hash_of(2, h), STORE_TOKEN_ADMIN, 0, &t),
                     STORE_EINVAL);
    assert_null(t.id);
    assert_int_equal(store_token_create(f->s, a, "ops", hash_of(3, h), STORE_TOKEN_ADMIN, 0,
                                        NULL), STORE_OK);
    /* expiring in a minute */
    assert_int_equal(store_token_create(f->s, b, "ci", hash_of(4, h), STORE_TOKEN_READ,
                                        now + 60000, &t), STORE_OK);
    assert_int_equal(t.expires_at, now + 60000);
    char t4[STORE_ID_MAX + 1];
    snprintf(t4, sizeof t4, "%s", t.id);
    store_token_cleanup(&t);

    /* lookups: user joined; expired ones not found; last_used touched */
    store_user_t u;
    assert_int_equal(store_token_lookup(f->s, hash_of(1, h), now + 1000, 300, &got, &u),
                     STORE_OK);
    assert_string_equal(got.id, t1);
    assert_string_equal(got.hash, h);
    assert_int_equal(got.scope, STORE_TOKEN_CHAT);
    assert_int_equal(got.last_used_at, now + 1000);   /* first use: touched */
    assert_string_equal(u.name, "bob");
    assert_null(u.password_hash);
    store_token_cleanup(&got);
    store_user_cleanup(&u);
    assert_int_equal(store_token_lookup(f->s, h, now + 2000, 300, &got, &u), STORE_OK);
    assert_int_equal(got.last_used_at, now + 1000);   /* not due yet */
    store_token_cleanup(&got);
    store_user_cleanup(&u);
    assert_int_equal(store_token_lookup(f->s, h, now + 302000, 300, &got, &u), STORE_OK);
    assert_int_equal(got.last_used_at, now + 302000);
    store_token_cleanup(&got);
    store_user_cleanup(&u);
    assert_int_equal(store_token_lookup(f->s, hash_of(4, h), now + 59999, 0, NULL, &u), STORE_OK);
    store_user_cleanup(&u);
    assert_int_equal(store_token_lookup(f->s, h, now + 60000, 0, &got, &u), STORE_ENOTFOUND);
    assert_null(got.id);
    assert_null(u.id);
    assert_int_equal(store_token_lookup(f->s, hash_of(99, h), 0, 0, NULL, &u), STORE_ENOTFOUND);

    /* lists: newest first, expired ones included, no hashes */
    store_token_list_t l;
    assert_int_equal(store_token_list(f->s, b, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].id, t4);
    assert_string_equal(l.items[1].id, t1);
    assert_int_equal(l.items[1].last_used_at, now + 302000);
    for (size_t i = 0; i < l.n; i++)
        assert_null(l.items[i].hash);
    store_token_list_cleanup(&l);

    /* deletes: a user's own only; admins' form: any */
    assert_int_equal(store_token_delete(f->s, a, t1), STORE_ENOTFOUND);
    assert_int_equal(store_token_delete(f->s, b, "no-such-token"), STORE_ENOTFOUND);
    assert_int_equal(store_token_delete(f->s, b, t1), STORE_OK);
    assert_int_equal(store_token_delete(f->s, b, t1), STORE_ENOTFOUND);
    assert_int_equal(store_token_lookup(f->s, hash_of(1, h), 0, 0, NULL, &u), STORE_ENOTFOUND);
    assert_int_equal(store_token_delete_any(f->s, t4), STORE_OK);
    assert_int_equal(store_token_delete_any(f->s, t4), STORE_ENOTFOUND);

    /* demoting an admin takes their admin-scoped tokens (and only those) */
    char c[STORE_ID_MAX + 1];
    mk_user(f->s, "carol", STORE_USER_ROLE_ADMIN, c);
    assert_int_equal(store_token_create(f->s, c, "ops", hash_of(10, h), STORE_TOKEN_ADMIN, 0,
                                        NULL), STORE_OK);
    assert_int_equal(store_token_create(f->s, c, "chat", hash_of(11, h), STORE_TOKEN_CHAT, 0,
                                        NULL), STORE_OK);
    assert_int_equal(store_user_set_role(f->s, c, STORE_USER_ROLE_USER), STORE_OK);
    assert_int_equal(store_token_lookup(f->s, hash_of(10, h), 0, 0, NULL, &u), STORE_ENOTFOUND);
    assert_int_equal(store_token_lookup(f->s, hash_of(11, h), 0, 0, NULL, &u), STORE_OK);
    store_user_cleanup(&u);
    assert_int_equal(store_token_lookup(f->s, hash_of(3, h), 0, 0, &got, &u), STORE_OK);
    assert_int_equal(got.scope, STORE_TOKEN_ADMIN);   /* the other admin's stays */
    store_token_cleanup(&got);
    store_user_cleanup(&u);

    /* refusals */
    assert_int_equal(store_token_create(f->s, b, "dup", hash_of(11, h), STORE_TOKEN_READ, 0,
                                        NULL), STORE_ECONFLICT);
    assert_int_equal(store_token_create(f->s, b, "old", hash_of(12, h), STORE_TOKEN_READ,
                                        now - 1000, NULL), STORE_EINVAL);
    assert_int_equal(store_token_create(f->s, b, "", hash_of(12, h), STORE_TOKEN_READ, 0, NULL),
                     STORE_EINVAL);
    assert_int_equal(store_token_create(f->s, b, "x", hash_of(12, h), (store_token_scope_t)3, 0,
                                        NULL), STORE_EINVAL);
    assert_int_equal(store_token_create(f->s, "nobody", "x", hash_of(12, h), STORE_TOKEN_READ,
                                        0, NULL), STORE_ENOTFOUND);
    char longname[STORE_TOKEN_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(store_token_create(f->s, b, longname, hash_of(12, h), STORE_TOKEN_READ, 0,
                                        NULL), STORE_ETOOBIG);

    store_token_scope_t sc;
    assert_string_equal(store_token_scope_name(STORE_TOKEN_READ), "read");
    assert_string_equal(store_token_scope_name(STORE_TOKEN_ADMIN), "admin");
    assert_string_equal(store_token_scope_name((store_token_scope_t)5), "");
    assert_int_equal(store_token_scope_parse("chat", &sc), STORE_OK);
    assert_int_equal(sc, STORE_TOKEN_CHAT);
    assert_int_equal(store_token_scope_parse("write", &sc), STORE_EINVAL);
    assert_true(STORE_TOKEN_READ < STORE_TOKEN_CHAT && STORE_TOKEN_CHAT < STORE_TOKEN_ADMIN);
}

/* ---- Ownership ----------------------------------------------------------------- */

/* Two users, a and b, and an admin, with their scopes. */
typedef struct {
    char a[STORE_ID_MAX + 1], b[STORE_ID_MAX + 1], adm[STORE_ID_MAX + 1];
    store_scope_t sa, sb, sadm;
} people_t;

static void mk_people(store_t *s, people_t *p)
{
    mk_user(s, "alice", STORE_USER_ROLE_USER, p->a);
    mk_user(s, "bob", STORE_USER_ROLE_USER, p->b);
    mk_user(s, "root", STORE_USER_ROLE_ADMIN, p->adm);
    p->sa = (store_scope_t){ p->a, false };
    p->sb = (store_scope_t){ p->b, false };
    p->sadm = (store_scope_t){ p->adm, true };
}

/* Whether the list holds a document with this id. */
static bool has_doc(const store_doc_list_t *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].id, id) == 0)
            return true;
    return false;
}

static size_t n_docs_seen(store_t *s, const store_scope_t *scope)
{
    store_doc_list_t l;
    assert_int_equal(store_doc_list_scoped(s, scope, &l), STORE_OK);
    size_t n = l.n;
    store_doc_list_cleanup(&l);
    return n;
}

static void test_doc_isolation(void **state)
{
    fx_t *f = *state;
    people_t p;
    mk_people(f->s, &p);
    char da[STORE_ID_MAX + 1], db[STORE_ID_MAX + 1];
    insert_doc_as(f->s, &p.sa, 1, "alice writes about zeppelins", da);
    insert_doc_as(f->s, &p.sb, 2, "bob writes about submarines", db);

    store_doc_t d;
    assert_int_equal(store_doc_get_scoped(f->s, &p.sa, da, &d), STORE_OK);
    assert_string_equal(d.owner_id, p.a);
    assert_false(d.shared);
    store_doc_cleanup(&d);

    /* bob: alice's document is exactly as absent as one that never was */
    int unknown = store_doc_get_scoped(f->s, &p.sb, "never-was", &d);
    assert_int_equal(unknown, STORE_ENOTFOUND);
    assert_int_equal(store_doc_get_scoped(f->s, &p.sb, da, &d), unknown);
    assert_null(d.id);
    assert_int_equal(store_doc_delete_scoped(f->s, &p.sb, da, &d, NULL), unknown);
    assert_int_equal(store_doc_delete_scoped(f->s, &p.sb, "never-was", NULL, NULL), unknown);
    assert_int_equal(store_doc_set_shared(f->s, &p.sb, da, true), unknown);
    assert_int_equal(store_doc_set_shared(f->s, &p.sb, "never-was", true), unknown);
    store_doc_t in = doc_in(1);
    assert_int_equal(store_doc_find_sha256_scoped(f->s, &p.sb, in.sha256, &d), unknown);
    store_doc_list_t l;
    assert_int_equal(store_doc_list_scoped(f->s, &p.sb, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].id, db);
    store_doc_list_cleanup(&l);
    assert_int_equal(store_doc_search_scoped(f->s, &p.sb, "zeppelins", 10, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    store_doc_list_cleanup(&l);
    assert_int_equal(store_doc_search_scoped(f->s, &p.sb, "writes", 10, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].id, db);
    store_doc_list_cleanup(&l);
    /* a user who does not exist (a stale scope) sees nothing at all */
    store_scope_t ghost = { "ghost", false };
    assert_int_equal(n_docs_seen(f->s, &ghost), 0);
    assert_int_equal(store_doc_get_scoped(f->s, &ghost, da, &d), STORE_ENOTFOUND);

    /* alice's own view */
    assert_int_equal(store_doc_find_sha256_scoped(f->s, &p.sa, in.sha256, &d), STORE_OK);
    assert_string_equal(d.id, da);
    store_doc_cleanup(&d);
    assert_int_equal(n_docs_seen(f->s, &p.sa), 1);

    /* an admin sees and may delete everyone's; local mode sees all */
    assert_int_equal(n_docs_seen(f->s, &p.sadm), 2);
    assert_int_equal(n_docs_seen(f->s, NULL), 2);
    assert_int_equal(store_doc_get_scoped(f->s, &p.sadm, da, &d), STORE_OK);
    store_doc_cleanup(&d);
    assert_int_equal(store_doc_search_scoped(f->s, &p.sadm, "writes", 10, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    store_doc_list_cleanup(&l);
    /* but its own upload dedupe is its own */
    assert_int_equal(store_doc_find_sha256_scoped(f->s, &p.sadm, in.sha256, &d),
                     STORE_ENOTFOUND);
    bool unused = false;
    assert_int_equal(store_doc_delete_scoped(f->s, &p.sadm, db, &d, &unused), STORE_OK);
    assert_string_equal(d.id, db);
    assert_true(unused);
    store_doc_cleanup(&d);
    assert_int_equal(store_doc_delete_scoped(f->s, &p.sa, da, NULL, &unused), STORE_OK);
    assert_true(unused);
    assert_int_equal(n_docs_seen(f->s, NULL), 0);

    /* scopes are checked */
    store_scope_t bad = { "bad id", false }, none = { NULL, true };
    assert_int_equal(store_doc_list_scoped(f->s, &bad, &l), STORE_EINVAL);
    assert_int_equal(store_doc_get_scoped(f->s, &none, da, &d), STORE_EINVAL);
    assert_int_equal(store_session_list_scoped(f->s, &none, 0, NULL), STORE_EINVAL);
}

static void test_shared_documents(void **state)
{
    fx_t *f = *state;
    people_t p;
    mk_people(f->s, &p);
    char da[STORE_ID_MAX + 1], priv[STORE_ID_MAX + 1];
    insert_doc_as(f->s, &p.sa, 1, "the shared handbook", da);
    insert_doc_as(f->s, &p.sa, 2, "alice's private diary", priv);
    assert_int_equal(store_doc_set_shared(f->s, &p.sa, da, true), STORE_OK);

    /* bob reads it: get, list, search */
    store_doc_t d;
    assert_int_equal(store_doc_get_scoped(f->s, &p.sb, da, &d), STORE_OK);
    assert_true(d.shared);
    assert_string_equal(d.owner_id, p.a);
    store_doc_cleanup(&d);
    store_doc_list_t l;
    assert_int_equal(store_doc_list_scoped(f->s, &p.sb, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_true(has_doc(&l, da));
    store_doc_list_cleanup(&l);
    assert_int_equal(store_doc_search_scoped(f->s, &p.sb, "handbook", 10, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    store_doc_list_cleanup(&l);
    /* but may not change it */
    assert_int_equal(store_doc_delete_scoped(f->s, &p.sb, da, NULL, NULL), STORE_ENOTFOUND);
    assert_int_equal(store_doc_set_shared(f->s, &p.sb, da, false), STORE_ENOTFOUND);
    assert_int_equal(store_doc_get_scoped(f->s, &p.sb, da, &d), STORE_OK);
    assert_true(d.shared);
    store_doc_cleanup(&d);

    /* bob talks with it; not with the private one */
    assert_int_equal(store_session_create_scoped(f->s, &p.sb, "bs", da, NULL, NULL), STORE_OK);
    assert_int_equal(store_session_create_scoped(f->s, &p.sb, "bs2", priv, NULL, NULL),
                     STORE_ENOTFOUND);
    assert_int_equal(store_session_ensure_scoped(f->s, &p.sb, "bs3", priv, NULL, NULL),
                     STORE_ENOTFOUND);
    const char *both[] = { da, priv };
    assert_int_equal(store_session_set_documents_scoped(f->s, &p.sb, "bs", both, 2),
                     STORE_ENOTFOUND);
    assert_int_equal(store_session_set_document_scoped(f->s, &p.sb, "bs", priv),
                     STORE_ENOTFOUND);
    store_id_list_t ids;
    assert_int_equal(store_session_documents_scoped(f->s, &p.sb, "bs", &ids), STORE_OK);
    assert_int_equal(ids.n, 1);   /* the refused changes changed nothing */
    assert_string_equal(ids.ids[0], da);
    store_id_list_cleanup(&ids);
    /* a set with it, and alice's own session with both */
    char db[STORE_ID_MAX + 1];
    insert_doc_as(f->s, &p.sb, 3, "bob's notes", db);
    const char *set[] = { db, da };
    assert_int_equal(store_session_set_documents_scoped(f->s, &p.sb, "bs", set, 2), STORE_OK);
    assert_int_equal(store_session_create_scoped(f->s, &p.sb, "bs4", da, NULL, NULL), STORE_OK);
    assert_int_equal(store_session_create_scoped(f->s, &p.sa, "as", da, NULL, NULL), STORE_OK);

    /* unsharing takes it out of bob's sessions, not alice's */
    assert_int_equal(store_doc_set_shared(f->s, &p.sa, da, false), STORE_OK);
    assert_int_equal(store_doc_get_scoped(f->s, &p.sb, da, &d), STORE_ENOTFOUND);
    assert_int_equal(n_docs_seen(f->s, &p.sb), 1);
    assert_int_equal(store_session_documents_scoped(f->s, &p.sb, "bs", &ids), STORE_OK);
    assert_int_equal(ids.n, 1);
    assert_string_equal(ids.ids[0], db);
    store_id_list_cleanup(&ids);
    store_session_t ss;
    assert_int_equal(store_session_get_scoped(f->s, &p.sb, "bs4", &ss), STORE_OK);
    assert_null(ss.document_id);
    store_session_cleanup(&ss);
    assert_int_equal(store_session_get_scoped(f->s, &p.sa, "as", &ss), STORE_OK);
    assert_string_equal(ss.document_id, da);
    store_session_cleanup(&ss);

    /* an admin may share and unshare anyone's */
    assert_int_equal(store_doc_set_shared(f->s, &p.sadm, priv, true), STORE_OK);
    assert_int_equal(n_docs_seen(f->s, &p.sb), 2);
    assert_int_equal(store_doc_set_shared(f->s, &p.sadm, priv, false), STORE_OK);
    assert_int_equal(n_docs_seen(f->s, &p.sb), 1);
    assert_int_equal(store_check(f->s), STORE_OK);
}

/* The same bytes uploaded by two users: two documents, one file. */
static void test_same_content_two_users(void **state)
{
    fx_t *f = *state;
    people_t p;
    mk_people(f->s, &p);
    store_doc_t in = doc_in(5), da, db, again;
    in.stored_name = "alice-upload.txt";
    bool existed = true;
    assert_int_equal(store_doc_insert_scoped(f->s, &p.sa, &in, "same words", 10, &da, &existed),
                     STORE_OK);
    assert_false(existed);
    assert_string_equal(da.stored_name, "alice-upload.txt");

    /* bob's upload of the same bytes: his own document, alice's file */
    in.stored_name = "bob-upload.txt";
    in.filename = "mine.txt";
    assert_int_equal(store_doc_insert_scoped(f->s, &p.sb, &in, "same words", 10, &db, &existed),
                     STORE_OK);
    assert_false(existed);
    assert_string_not_equal(db.id, da.id);
    assert_string_equal(db.owner_id, p.b);
    assert_string_equal(db.filename, "mine.txt");
    assert_string_equal(db.stored_name, "alice-upload.txt");   /* bob's own file: unused */
    assert_string_equal(db.sha256, da.sha256);
    int64_t refs = 0;
    assert_int_equal(store_file_refs(f->s, "alice-upload.txt", &refs), STORE_OK);
    assert_int_equal(refs, 2);
    assert_int_equal(store_file_refs(f->s, "bob-upload.txt", &refs), STORE_OK);
    assert_int_equal(refs, 0);

    /* each one's own again: the existing one */
    assert_int_equal(store_doc_insert_scoped(f->s, &p.sb, &in, "same words", 10, &again,
                                             &existed), STORE_OK);
    assert_true(existed);
    assert_string_equal(again.id, db.id);
    store_doc_cleanup(&again);
    assert_int_equal(store_doc_insert_scoped(f->s, &p.sa, &in, "same words", 10, &again,
                                             &existed), STORE_OK);
    assert_true(existed);
    assert_string_equal(again.id, da.id);
    store_doc_cleanup(&again);
    /* a file name is one content's: another content may not take it */
    store_doc_t other = doc_in(6);
    other.stored_name = "alice-upload.txt";
    assert_int_equal(store_doc_insert_scoped(f->s, &p.sb, &other, "x", 1, &again, NULL),
                     STORE_ECONFLICT);

    /* quotas count it for each */
    int64_t bytes = 0, n = 0;
    assert_int_equal(store_user_usage(f->s, p.a, &bytes, &n), STORE_OK);
    assert_int_equal(bytes, 105);
    assert_int_equal(n, 1);
    assert_int_equal(store_user_usage(f->s, p.b, &bytes, &n), STORE_OK);
    assert_int_equal(bytes, 105);
    assert_int_equal(n, 1);

    /* bob deletes his: alice's document and the file stay */
    store_doc_t gone;
    bool unused = true;
    assert_int_equal(store_doc_delete_scoped(f->s, &p.sb, db.id, &gone, &unused), STORE_OK);
    assert_false(unused);
    assert_string_equal(gone.stored_name, "alice-upload.txt");
    store_doc_cleanup(&gone);
    store_doc_t still;
    assert_int_equal(store_doc_get_scoped(f->s, &p.sa, da.id, &still), STORE_OK);
    store_doc_cleanup(&still);
    char *t = NULL;
    assert_int_equal(store_doc_text(f->s, da.id, &t, NULL), STORE_OK);
    assert_string_equal(t, "same words");
    free(t);
    assert_int_equal(store_file_refs(f->s, "alice-upload.txt", &refs), STORE_OK);
    assert_int_equal(refs, 1);
    /* and the last one takes the file with it */
    assert_int_equal(store_doc_delete_scoped(f->s, &p.sa, da.id, NULL, &unused), STORE_OK);
    assert_true(unused);
    assert_int_equal(store_file_refs(f->s, "alice-upload.txt", &refs), STORE_OK);
    assert_int_equal(refs, 0);
    /* local mode keeps one document per content, as before accounts */
    in.stored_name = "local.txt";
    assert_int_equal(store_doc_insert(f->s, &in, "same words", 10, &again, &existed), STORE_OK);
    assert_false(existed);
    store_doc_cleanup(&again);
    in.stored_name = "local2.txt";
    assert_int_equal(store_doc_insert(f->s, &in, "same words", 10, &again, &existed), STORE_OK);
    assert_true(existed);
    assert_string_equal(again.stored_name, "local.txt");
    store_doc_cleanup(&again);
    assert_int_equal(store_file_refs(f->s, "a/b", &refs), STORE_OK);
    assert_int_equal(store_file_refs(f->s, NULL, &refs), STORE_EINVAL);
    store_doc_cleanup(&da);
    store_doc_cleanup(&db);
    assert_int_equal(store_check(f->s), STORE_OK);
}

/* The same content for another user without extracting it again. */
static void test_doc_copy_content(void **state)
{
    fx_t *f = *state;
    people_t p;
    mk_people(f->s, &p);
    char da[STORE_ID_MAX + 1];
    insert_doc_as(f->s, &p.sa, 7, "a lighthouse keeper's log", da);
    store_mark_t m[] = { { STORE_MARK_PAGE, 0, 1, "i" }, { STORE_MARK_PAGE, 10, 2, "ii" } };
    assert_int_equal(store_doc_set_marks(f->s, da, m, 2), STORE_OK);
    put_three_chunks(f->s, da);
    int64_t tk[3] = { 11, 12, 13 };
    assert_int_equal(store_chunks_set_tokens(f->s, da, "tok", tk, 3), STORE_OK);
    assert_int_equal(store_doc_set_tokens(f->s, da, 36), STORE_OK);
    store_part_t part;
    store_part_init(&part);
    part.chunk_first = 0;
    part.chunk_last = 2;
    part.tokens = 40;
    part.content_length = 120;
    part.cache.status = STORE_CACHE_CACHED;
    part.cache.entry_id = "alice-entry";
    assert_int_equal(store_parts_set(f->s, da, "plan", &part, 1), STORE_OK);
    store_cache_t c = { .status = STORE_CACHE_CACHED, .entry_id = "e-a", .tokens = 36,
                        .bytes = 1000, .tier = "ram", .ms = 1, .cached_at = 0 };
    assert_int_equal(store_doc_set_cache(f->s, da, &c), STORE_OK);

    store_doc_t in = doc_in(7), db;
    bool existed = true;
    assert_int_equal(store_doc_copy_content(f->s, &p.sb, in.sha256, "bobs-copy.txt", &db,
                                            &existed), STORE_OK);
    assert_false(existed);
    assert_string_not_equal(db.id, da);
    assert_string_equal(db.owner_id, p.b);
    assert_false(db.shared);
    assert_string_equal(db.filename, "bobs-copy.txt");
    assert_string_equal(db.stored_name, "upload-7.txt");
    assert_int_equal(db.file_size, 107);
    assert_int_equal(db.n_chars, 25);
    assert_int_equal(db.n_tokens, 36);
    assert_int_equal(db.n_pages, 2);
    assert_int_equal(db.n_chunks, 3);
    assert_int_equal(db.cache.status, STORE_CACHE_NONE);   /* its own cache state */
    assert_null(db.cache.entry_id);
    char *t = NULL;
    assert_int_equal(store_doc_text(f->s, db.id, &t, NULL), STORE_OK);
    assert_string_equal(t, "a lighthouse keeper's log");
    free(t);
    store_chunk_t ch;
    assert_int_equal(store_chunk_get(f->s, db.id, 1, &ch), STORE_OK);
    assert_string_equal(ch.content, three_texts[1]);
    assert_int_equal(ch.tokens, 12);
    assert_string_equal(ch.tokens_key, "tok");
    store_chunk_cleanup(&ch);
    store_part_list_t pl;
    assert_int_equal(store_parts_list(f->s, db.id, "plan", &pl), STORE_OK);
    assert_int_equal(pl.n, 1);
    assert_int_equal(pl.items[0].chunk_last, 2);
    assert_int_equal(pl.items[0].tokens, 40);
    assert_int_equal(pl.items[0].cache.status, STORE_CACHE_NONE);
    assert_null(pl.items[0].cache.entry_id);
    store_part_list_cleanup(&pl);
    /* bob finds his copy in his searches, by text and by chunk */
    store_doc_list_t l;
    assert_int_equal(store_doc_search_scoped(f->s, &p.sb, "lighthouse", 10, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].id, db.id);
    store_doc_list_cleanup(&l);
    store_chunk_list_t cl;
    const char *ids[] = { db.id };
    assert_int_equal(store_chunk_search(f->s, ids, 1, "digest", 10, &cl), STORE_OK);
    assert_true(cl.n >= 1);
    assert_string_equal(cl.items[0].doc_id, db.id);
    store_chunk_list_cleanup(&cl);
    int64_t refs = 0;
    assert_int_equal(store_file_refs(f->s, "upload-7.txt", &refs), STORE_OK);
    assert_int_equal(refs, 2);

    /* again: his existing copy; unknown content: ENOTFOUND (extract it) */
    store_doc_t again;
    assert_int_equal(store_doc_copy_content(f->s, &p.sb, in.sha256, "x.txt", &again, &existed),
                     STORE_OK);
    assert_true(existed);
    assert_string_equal(again.id, db.id);
    store_doc_cleanup(&again);
    char none[65];
    memset(none, 'e', 64);
    none[64] = '\0';
    assert_int_equal(store_doc_copy_content(f->s, &p.sb, none, "x.txt", &again, &existed),
                     STORE_ENOTFOUND);
    assert_null(again.id);
    assert_false(existed);
    assert_int_equal(store_doc_copy_content(f->s, &p.sb, "abc", "x.txt", &again, NULL),
                     STORE_EINVAL);
    assert_int_equal(store_doc_copy_content(f->s, &p.sb, none, "", &again, NULL), STORE_EINVAL);
    /* in local mode the content exists already */
    assert_int_equal(store_doc_copy_content(f->s, NULL, in.sha256, "x.txt", &again, &existed),
                     STORE_OK);
    assert_true(existed);
    store_doc_cleanup(&again);

    /* the original goes: the copy stays whole, and keeps the file */
    bool unused = true;
    assert_int_equal(store_doc_delete_scoped(f->s, &p.sa, da, NULL, &unused), STORE_OK);
    assert_false(unused);
    assert_int_equal(store_doc_text(f->s, db.id, &t, NULL), STORE_OK);
    free(t);
    assert_int_equal(store_doc_delete_scoped(f->s, &p.sb, db.id, NULL, &unused), STORE_OK);
    assert_true(unused);
    store_doc_cleanup(&db);
    assert_int_equal(store_check(f->s), STORE_OK);
}


/* Periodic jobs: one claim per interval, whoever asks; two stores on one
 * database (two app processes) never both get a run, even at once. */
struct claim_args {
    const char *url;
    pthread_barrier_t *bar;
    int got;
};

static void *claim_thread(void *arg)
{
    struct claim_args *c = arg;
    store_t *s = NULL;
    if (store_open(c->url, &s) != STORE_OK)
        return NULL;
    pthread_barrier_wait(c->bar);
    for (int i = 0; i < 20; i++) {
        bool got = false;
        if (store_job_claim(s, "race", 3600 * 1000, &got) == STORE_OK && got)
            c->got++;
    }
    store_close(s);
    return NULL;
}

static void test_job_claim(void **state)
{
    fx_t *f = *state;
    bool got = true;
    assert_int_equal(store_job_claim(f->s, "", 1000, &got), STORE_EINVAL);
    assert_false(got);
    char long_name[STORE_JOB_NAME_MAX + 2];
    memset(long_name, 'j', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(store_job_claim(f->s, long_name, 1000, &got), STORE_EINVAL);
    assert_int_equal(store_job_claim(f->s, "sweep", -1, &got), STORE_EINVAL);
    /* the first claim gets it; again within the interval, nobody */
    assert_int_equal(store_job_claim(f->s, "sweep", 3600 * 1000, &got), STORE_OK);
    assert_true(got);
    assert_int_equal(store_job_claim(f->s, "sweep", 3600 * 1000, &got), STORE_OK);
    assert_false(got);
    /* another job is its own; an interval of 0 is always due */
    assert_int_equal(store_job_claim(f->s, "prune", 3600 * 1000, &got), STORE_OK);
    assert_true(got);
    assert_int_equal(store_job_claim(f->s, "sweep", 0, &got), STORE_OK);
    assert_true(got);
    /* a short interval passes */
    assert_int_equal(store_job_claim(f->s, "tick", 50, &got), STORE_OK);
    assert_true(got);
    usleep(80 * 1000);
    assert_int_equal(store_job_claim(f->s, "tick", 50, &got), STORE_OK);
    assert_true(got);
    /* four processes' worth of stores on one database, at once: one run */
    enum { N = 4 };
    pthread_t th[N];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, N);
    struct claim_args args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (struct claim_args){ f->path, &bar, 0 };
        assert_int_equal(pthread_create(&th[i], NULL, claim_thread, &args[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        total += args[i].got;
    }
    pthread_barrier_destroy(&bar);
    assert_int_equal(total, 1);
}


/* Shared settings: set, read back, replaced with a later time, never
 * found before being set; bad keys and values refused. */
static void test_settings(void **state)
{
    fx_t *f = *state;
    char *v = (char *)1;
    int64_t at = 0, at2 = 0;
    assert_int_equal(store_setting_get(f->s, "model.active", &v, &at), STORE_ENOTFOUND);
    assert_null(v);
    assert_int_equal(store_setting_set(f->s, "model.active", "tiny.gguf"), STORE_OK);
    assert_int_equal(store_setting_get(f->s, "model.active", &v, &at), STORE_OK);
    assert_string_equal(v, "tiny.gguf");
    free(v);
    assert_true(at > 0);
    /* set again at once: a later time all the same, so followers see it */
    assert_int_equal(store_setting_set(f->s, "model.active", "remote-a"), STORE_OK);
    assert_int_equal(store_setting_get(f->s, "model.active", &v, &at2), STORE_OK);
    assert_string_equal(v, "remote-a");
    free(v);
    assert_true(at2 > at);
    assert_int_equal(store_setting_set(f->s, "", "x"), STORE_EINVAL);
    assert_int_equal(store_setting_set(f->s, "k", NULL), STORE_EINVAL);
    char *big = malloc(STORE_SETTING_MAX + 2);
    memset(big, 'v', STORE_SETTING_MAX + 1);
    big[STORE_SETTING_MAX + 1] = '\0';
    assert_int_equal(store_setting_set(f->s, "k", big), STORE_EINVAL);
    free(big);
    assert_int_equal(store_setting_set(f->s, "k", "\xff"), STORE_EINVAL);
    assert_int_equal(store_setting_get(f->s, "k", &v, &at), STORE_ENOTFOUND);
}

/* Two users, each with a session "abc", and one user trying every door of
 * the other's. */
static void test_session_isolation(void **state)
{
    fx_t *f = *state;
    people_t p;
    mk_people(f->s, &p);
    store_session_t ss;
    assert_int_equal(store_session_create_scoped(f->s, &p.sa, "abc", NULL, "alice's", &ss),
                     STORE_OK);
    assert_string_equal(ss.id, "abc");
    assert_string_equal(ss.owner_id, p.a);
    store_session_cleanup(&ss);
    assert_int_equal(store_session_create_scoped(f->s, &p.sb, "abc", NULL, "bob's", NULL),
                     STORE_OK);
    assert_int_equal(store_session_create_scoped(f->s, &p.sa, "abc", NULL, NULL, NULL),
                     STORE_ECONFLICT);
    bool created = true;
    assert_int_equal(store_session_ensure_scoped(f->s, &p.sa, "only-a", NULL, NULL, &created),
                     STORE_OK);
    assert_true(created);
    int64_t m1, m2, m3;
    assert_int_equal(store_msg_append_scoped(f->s, &p.sa, "abc", STORE_ROLE_USER, "a1", false,
                                             NULL, &m1), STORE_OK);
    assert_int_equal(store_msg_append_scoped(f->s, &p.sa, "abc", STORE_ROLE_ASSISTANT, "a2",
                                             false, NULL, &m2), STORE_OK);
    assert_int_equal(store_msg_append_scoped(f->s, &p.sb, "abc", STORE_ROLE_USER, "b1", false,
                                             NULL, &m3), STORE_OK);
    assert_int_equal(store_msg_append_scoped(f->s, &p.sa, "only-a", STORE_ROLE_USER, "secret",
                                             false, NULL, NULL), STORE_OK);

    /* each "abc" is its owner's */
    assert_int_equal(store_session_get_scoped(f->s, &p.sa, "abc", &ss), STORE_OK);
    assert_string_equal(ss.title, "alice's");
    assert_int_equal(ss.message_count, 2);
    store_session_cleanup(&ss);
    assert_int_equal(store_session_get_scoped(f->s, &p.sb, "abc", &ss), STORE_OK);
    assert_string_equal(ss.title, "bob's");
    assert_int_equal(ss.message_count, 1);
    store_session_cleanup(&ss);
    store_msg_list_t ml;
    assert_int_equal(store_msg_list_scoped(f->s, &p.sb, "abc", 0, &ml), STORE_OK);
    assert_int_equal(ml.n, 1);
    assert_string_equal(ml.items[0].content, "b1");
    assert_string_equal(ml.items[0].session_id, "abc");   /* the client's id */
    assert_int_equal(ml.items[0].id, m3);
    store_msg_list_cleanup(&ml);
    assert_int_equal(store_msg_list_scoped(f->s, &p.sa, "abc", 1, &ml), STORE_OK);
    assert_int_equal(ml.n, 1);
    assert_int_equal(ml.items[0].id, m2);
    store_msg_list_cleanup(&ml);
    (void)m1;

    /* every door of alice's "only-a", from bob: as if it never was */
    const char *ids[] = { "only-a", "never-was" };
    for (int i = 0; i < 2; i++) {
        const char *id = ids[i];
        int64_t n = 7;
        assert_int_equal(store_session_get_scoped(f->s, &p.sb, id, &ss), STORE_ENOTFOUND);
        assert_null(ss.id);
        assert_int_equal(store_session_touch_scoped(f->s, &p.sb, id), STORE_ENOTFOUND);
        assert_int_equal(store_session_set_title_scoped(f->s, &p.sb, id, "mine"),
                         STORE_ENOTFOUND);
        assert_int_equal(store_session_set_document_scoped(f->s, &p.sb, id, NULL),
                         STORE_ENOTFOUND);
        store_id_list_t dl;
        assert_int_equal(store_session_documents_scoped(f->s, &p.sb, id, &dl), STORE_ENOTFOUND);
        assert_int_equal(store_msg_list_scoped(f->s, &p.sb, id, 0, &ml), STORE_ENOTFOUND);
        assert_int_equal(ml.n, 0);
        assert_int_equal(store_msg_count_scoped(f->s, &p.sb, id, &n), STORE_ENOTFOUND);
        assert_int_equal(n, 0);
        assert_int_equal(store_msg_append_scoped(f->s, &p.sb, id, STORE_ROLE_USER, "hi", false,
                                                 NULL, NULL), STORE_ENOTFOUND);
        assert_int_equal(store_session_delete_scoped(f->s, &p.sb, id), STORE_ENOTFOUND);
        /* an admin acts in its own sessions only, too */
        assert_int_equal(store_session_get_scoped(f->s, &p.sadm, id, &ss), STORE_ENOTFOUND);
        assert_int_equal(store_msg_list_scoped(f->s, &p.sadm, id, 0, &ml), STORE_ENOTFOUND);
        /* and local mode sees only sessions without an owner */
        assert_int_equal(store_session_get(f->s, id, &ss), STORE_ENOTFOUND);
        assert_int_equal(store_msg_count(f->s, id, &n), STORE_ENOTFOUND);
    }
    /* ensure by bob makes bob's own, leaving alice's alone */
    assert_int_equal(store_session_ensure_scoped(f->s, &p.sb, "only-a", NULL, &ss, &created),
                     STORE_OK);
    assert_true(created);
    assert_int_equal(ss.message_count, 0);
    assert_string_equal(ss.owner_id, p.b);
    store_session_cleanup(&ss);
    int64_t n = 0;
    assert_int_equal(store_msg_count_scoped(f->s, &p.sa, "only-a", &n), STORE_OK);
    assert_int_equal(n, 1);

    /* lists: one's own only */
    store_session_list_t sl;
    assert_int_equal(store_session_list_scoped(f->s, &p.sa, 0, &sl), STORE_OK);
    assert_int_equal(sl.n, 2);
    for (size_t i = 0; i < sl.n; i++)
        assert_string_equal(sl.items[i].owner_id, p.a);
    store_session_list_cleanup(&sl);
    assert_int_equal(store_session_list_scoped(f->s, &p.sadm, 0, &sl), STORE_OK);
    assert_int_equal(sl.n, 0);
    store_session_list_cleanup(&sl);
    assert_int_equal(store_session_list(f->s, 0, &sl), STORE_OK);
    assert_int_equal(sl.n, 0);
    store_session_list_cleanup(&sl);

    /* local mode has its own "abc" too */
    assert_int_equal(store_session_create(f->s, "abc", NULL, "local", &ss), STORE_OK);
    assert_null(ss.owner_id);
    store_session_cleanup(&ss);
    assert_int_equal(store_msg_append(f->s, "abc", STORE_ROLE_USER, "l1", false, NULL, NULL),
                     STORE_OK);
    assert_int_equal(store_msg_count(f->s, "abc", &n), STORE_OK);
    assert_int_equal(n, 1);

    /* alice deletes her "abc": bob's and the local one stay with theirs */
    assert_int_equal(store_session_delete_scoped(f->s, &p.sa, "abc"), STORE_OK);
    assert_int_equal(store_msg_count_scoped(f->s, &p.sb, "abc", &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(store_msg_count(f->s, "abc", &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(store_msg_count_scoped(f->s, &p.sa, "abc", &n), STORE_ENOTFOUND);
    /* and may use the id again */
    assert_int_equal(store_session_create_scoped(f->s, &p.sa, "abc", NULL, NULL, NULL),
                     STORE_OK);

    /* idle expiry is for everyone's (maintenance, no scope) */
    int64_t gone = 0;
    assert_int_equal(store_session_delete_expired(f->s, 0, store_now_ms() + 1000, &gone),
                     STORE_OK);
    assert_int_equal(gone, 5);
}

static void test_user_delete_everything(void **state)
{
    fx_t *f = *state;
    people_t p;
    mk_people(f->s, &p);
    char own[STORE_ID_MAX + 1], shared[STORE_ID_MAX + 1], h[65];
    insert_doc_as(f->s, &p.sb, 1, "only bob has this", own);
    insert_doc_as(f->s, &p.sb, 2, "bob shares this", shared);
    assert_int_equal(store_doc_set_shared(f->s, &p.sb, shared, true), STORE_OK);
    /* alice has content 2 too, so its file stays */
    store_doc_t in = doc_in(2), da;
    in.stored_name = "alice-2.txt";
    assert_int_equal(store_doc_insert_scoped(f->s, &p.sa, &in, "bob shares this", 15, &da, NULL),
                     STORE_OK);
    assert_string_equal(da.stored_name, "upload-2.txt");
    assert_int_equal(store_session_create_scoped(f->s, &p.sb, "s", own, NULL, NULL), STORE_OK);
    assert_int_equal(store_msg_append_scoped(f->s, &p.sb, "s", STORE_ROLE_USER, "x", false, NULL,
                                             NULL), STORE_OK);
    assert_int_equal(store_session_create_scoped(f->s, &p.sa, "s", shared, NULL, NULL),
                     STORE_OK);
    assert_int_equal(store_login_create(f->s, hash_of(1, h), p.b, 600, NULL, NULL, NULL),
                     STORE_OK);
    assert_int_equal(store_token_create(f->s, p.b, "t", hash_of(2, h), STORE_TOKEN_READ, 0,
                                        NULL), STORE_OK);
    store_audit_t e;
    store_audit_init(&e);
    e.actor_id = p.b;
    e.actor_name = "bob";
    e.action = "document.share";
    e.target = shared;
    assert_int_equal(store_audit_append(f->s, &e, 0, NULL), STORE_OK);

    store_doc_list_t docs;
    store_id_list_t files;
    assert_int_equal(store_user_delete(f->s, p.b, &docs, &files), STORE_OK);
    assert_int_equal(docs.n, 2);
    assert_true(has_doc(&docs, own));
    assert_true(has_doc(&docs, shared));
    assert_int_equal(files.n, 1);   /* upload-2.txt is alice's file too */
    assert_string_equal(files.ids[0], "upload-1.txt");
    store_doc_list_cleanup(&docs);
    store_id_list_cleanup(&files);

    store_user_t u;
    assert_int_equal(store_user_get(f->s, p.b, &u), STORE_ENOTFOUND);
    assert_int_equal(store_login_lookup(f->s, hash_of(1, h), 0, 0, NULL, &u), STORE_ENOTFOUND);
    assert_int_equal(store_token_lookup(f->s, hash_of(2, h), 0, 0, NULL, &u), STORE_ENOTFOUND);
    assert_int_equal(store_session_get_scoped(f->s, &p.sb, "s", NULL), STORE_EINVAL);
    store_session_t ss;
    assert_int_equal(store_session_get_scoped(f->s, &p.sb, "s", &ss), STORE_ENOTFOUND);
    store_doc_t d;
    assert_int_equal(store_doc_get(f->s, own, &d), STORE_ENOTFOUND);
    assert_int_equal(store_doc_get(f->s, shared, &d), STORE_ENOTFOUND);
    /* alice's session lost the shared document, her own copy is whole */
    assert_int_equal(store_session_get_scoped(f->s, &p.sa, "s", &ss), STORE_OK);
    assert_null(ss.document_id);
    store_session_cleanup(&ss);
    char *t = NULL;
    assert_int_equal(store_doc_text(f->s, da.id, &t, NULL), STORE_OK);
    assert_string_equal(t, "bob shares this");
    free(t);
    /* nothing of bob's is left in the text index; the audit entry stays */
    store_doc_list_t l;
    assert_int_equal(store_doc_search(f->s, "only", 10, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    store_doc_list_cleanup(&l);
    store_audit_list_t al;
    store_audit_filter_t af = { .actor = p.b, .limit = 10 };
    assert_int_equal(store_audit_list(f->s, &af, &al), STORE_OK);
    assert_int_equal(al.n, 1);
    store_audit_list_cleanup(&al);
    int64_t bytes;
    assert_int_equal(store_user_usage(f->s, p.b, &bytes, NULL), STORE_ENOTFOUND);
    assert_int_equal(store_check(f->s), STORE_OK);
    store_doc_cleanup(&da);
}

static void test_adopt_unowned(void **state)
{
    fx_t *f = *state;
    /* a data directory used in local mode */
    char d1[STORE_ID_MAX + 1], d2[STORE_ID_MAX + 1];
    insert_doc(f->s, 1, "local one", d1);
    insert_doc(f->s, 2, "local two", d2);
    assert_int_equal(store_session_create(f->s, "s1", d1, NULL, NULL), STORE_OK);
    assert_int_equal(store_session_create(f->s, "s2", NULL, NULL, NULL), STORE_OK);
    assert_int_equal(store_msg_append(f->s, "s1", STORE_ROLE_USER, "q", false, NULL, NULL),
                     STORE_OK);
    /* accounts turned on: the first admin adopts it all */
    char adm[STORE_ID_MAX + 1], other[STORE_ID_MAX + 1];
    mk_user(f->s, "root", STORE_USER_ROLE_ADMIN, adm);
    mk_user(f->s, "bob", STORE_USER_ROLE_USER, other);
    store_scope_t sa = { adm, true }, sb = { other, false };
    insert_doc_as(f->s, &sb, 3, "bob's own", NULL);
    int64_t nd = -1, ns = -1;
    assert_int_equal(store_adopt_unowned(f->s, adm, &nd, &ns), STORE_OK);
    assert_int_equal(nd, 2);
    assert_int_equal(ns, 2);
    store_doc_t d;
    assert_int_equal(store_doc_get(f->s, d1, &d), STORE_OK);
    assert_string_equal(d.owner_id, adm);
    store_doc_cleanup(&d);
    assert_int_equal(store_doc_get_scoped(f->s, &sb, d1, &d), STORE_ENOTFOUND);
    int64_t n = 0;
    assert_int_equal(store_msg_count_scoped(f->s, &sa, "s1", &n), STORE_OK);
    assert_int_equal(n, 1);
    store_session_t ss;
    assert_int_equal(store_session_get_scoped(f->s, &sa, "s1", &ss), STORE_OK);
    assert_string_equal(ss.document_id, d1);
    assert_string_equal(ss.owner_id, adm);
    store_session_cleanup(&ss);
    assert_int_equal(store_session_get(f->s, "s1", &ss), STORE_ENOTFOUND); /* not unowned now */
    assert_int_equal(store_adopt_unowned(f->s, adm, &nd, &ns), STORE_OK);
    assert_int_equal(nd, 0);
    assert_int_equal(ns, 0);

    /* an unowned session whose id the user has already: refused whole */
    insert_doc(f->s, 4, "local again", NULL);
    assert_int_equal(store_session_create(f->s, "s1", NULL, NULL, NULL), STORE_OK);
    assert_int_equal(store_session_create(f->s, "s9", NULL, NULL, NULL), STORE_OK);
    assert_int_equal(store_adopt_unowned(f->s, adm, &nd, &ns), STORE_ECONFLICT);
    assert_int_equal(nd, 0);
    assert_int_equal(ns, 0);
    assert_int_equal(store_session_get(f->s, "s9", &ss), STORE_OK);   /* nothing moved */
    assert_null(ss.owner_id);
    store_session_cleanup(&ss);
    store_doc_list_t l;
    assert_int_equal(store_doc_list_scoped(f->s, &sb, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    store_doc_list_cleanup(&l);
    assert_int_equal(store_doc_list_scoped(f->s, &(store_scope_t){ adm, false }, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    store_doc_list_cleanup(&l);
    /* another user may take them */
    assert_int_equal(store_adopt_unowned(f->s, other, &nd, &ns), STORE_OK);
    assert_int_equal(nd, 1);
    assert_int_equal(ns, 2);
    assert_int_equal(store_adopt_unowned(f->s, "nobody", &nd, &ns), STORE_ENOTFOUND);
    assert_int_equal(store_adopt_unowned(f->s, "bad id", &nd, &ns), STORE_EINVAL);
}

static void test_user_usage(void **state)
{
    fx_t *f = *state;
    people_t p;
    mk_people(f->s, &p);
    int64_t bytes = -1, n = -1;
    assert_int_equal(store_user_usage(f->s, p.a, &bytes, &n), STORE_OK);
    assert_int_equal(bytes, 0);
    assert_int_equal(n, 0);
    insert_doc_as(f->s, &p.sa, 1, "one", NULL);
    insert_doc_as(f->s, &p.sa, 20, "twenty", NULL);
    insert_doc_as(f->s, &p.sb, 3, "three", NULL);
    insert_doc(f->s, 4, "nobody's", NULL);
    assert_int_equal(store_user_usage(f->s, p.a, &bytes, &n), STORE_OK);
    assert_int_equal(bytes, 101 + 120);
    assert_int_equal(n, 2);
    assert_int_equal(store_user_usage(f->s, p.b, &bytes, NULL), STORE_OK);
    assert_int_equal(bytes, 103);
    assert_int_equal(store_user_usage(f->s, "nobody", &bytes, &n), STORE_ENOTFOUND);
    assert_int_equal(bytes, 0);
}

static void test_audit_log(void **state)
{
    fx_t *f = *state;
    char a[STORE_ID_MAX + 1];
    mk_user(f->s, "alice", STORE_USER_ROLE_ADMIN, a);
    static const char *const actions[] = { "login.ok", "login.fail", "user.create" };
    int64_t before = store_now_ms(), last = 0;
    for (int i = 0; i < 9; i++) {
        store_audit_t e;
        store_audit_init(&e);
        char target[16];
        snprintf(target, sizeof target, "t%d", i);
        e.action = (char *)actions[i % 3];
        e.target = target;
        e.client_addr = "198.51.100.4";
        if (i % 3 == 1) {
            e.actor_name = "Mallory";   /* a failed login: a name, no id */
        } else {
            e.actor_id = a;
            e.actor_name = "alice";
        }
        e.detail = i == 2 ? "{\"role\":\"user\"}" : NULL;
        int64_t id = -1;
        assert_int_equal(store_audit_append(f->s, &e, 0, &id), STORE_OK);
        assert_true(id > last);
        last = id;
    }
    store_audit_list_t l;
    store_audit_filter_t fl = { .limit = 100 };
    assert_int_equal(store_audit_list(f->s, &fl, &l), STORE_OK);
    assert_int_equal(l.n, 9);
    assert_string_equal(l.items[0].target, "t8");   /* newest first */
    assert_int_equal(l.items[0].id, last);
    assert_in_range(l.items[0].ts, before, store_now_ms());
    assert_string_equal(l.items[6].detail, "{\"role\":\"user\"}");
    assert_string_equal(l.items[6].actor_id, a);
    assert_string_equal(l.items[7].actor_name, "Mallory");
    assert_null(l.items[7].actor_id);
    assert_null(l.items[7].detail);
    assert_string_equal(l.items[8].client_addr, "198.51.100.4");
    store_audit_list_cleanup(&l);

    /* pages */
    fl = (store_audit_filter_t){ .offset = 2, .limit = 3 };
    assert_int_equal(store_audit_list(f->s, &fl, &l), STORE_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[0].target, "t6");
    assert_string_equal(l.items[2].target, "t4");
    store_audit_list_cleanup(&l);
    fl = (store_audit_filter_t){ .offset = 9, .limit = 3 };
    assert_int_equal(store_audit_list(f->s, &fl, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    store_audit_list_cleanup(&l);
    /* filters: an actor by id or by name (any case), an action, both */
    fl = (store_audit_filter_t){ .actor = a, .limit = 100 };
    assert_int_equal(store_audit_list(f->s, &fl, &l), STORE_OK);
    assert_int_equal(l.n, 6);
    store_audit_list_cleanup(&l);
    fl = (store_audit_filter_t){ .actor = "mallory", .limit = 100 };
    assert_int_equal(store_audit_list(f->s, &fl, &l), STORE_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[0].target, "t7");
    store_audit_list_cleanup(&l);
    fl = (store_audit_filter_t){ .action = "user.create", .limit = 100 };
    assert_int_equal(store_audit_list(f->s, &fl, &l), STORE_OK);
    assert_int_equal(l.n, 3);
    store_audit_list_cleanup(&l);
    fl = (store_audit_filter_t){ .actor = "ALICE", .action = "login.ok", .offset = 1,
                                 .limit = 100 };
    assert_int_equal(store_audit_list(f->s, &fl, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].target, "t3");
    store_audit_list_cleanup(&l);
    fl = (store_audit_filter_t){ .action = "login", .limit = 100 };   /* exact, not prefix */
    assert_int_equal(store_audit_list(f->s, &fl, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    store_audit_list_cleanup(&l);

    /* bounded: append with max_rows keeps the newest max_rows */
    store_audit_t e;
    store_audit_init(&e);
    e.action = "tick";
    e.ts = 1234;
    for (int i = 0; i < 5; i++)
        assert_int_equal(store_audit_append(f->s, &e, 4, NULL), STORE_OK);
    fl = (store_audit_filter_t){ .limit = 100 };
    assert_int_equal(store_audit_list(f->s, &fl, &l), STORE_OK);
    assert_int_equal(l.n, 4);
    for (size_t i = 0; i < l.n; i++) {
        assert_string_equal(l.items[i].action, "tick");
        assert_int_equal(l.items[i].ts, 1234);
    }
    store_audit_list_cleanup(&l);
    int64_t n = -1;
    assert_int_equal(store_audit_prune(f->s, 2, &n), STORE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(store_audit_prune(f->s, 2, &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_audit_prune(f->s, 0, &n), STORE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(store_audit_list(f->s, &fl, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    store_audit_list_cleanup(&l);
    assert_int_equal(store_audit_append(f->s, &e, 0, NULL), STORE_OK);   /* still appends */

    /* refusals */
    store_audit_t bad;
    store_audit_init(&bad);
    assert_int_equal(store_audit_append(f->s, &bad, 0, NULL), STORE_EINVAL);   /* no action */
    bad.action = "x";
    bad.detail = "{not json";
    assert_int_equal(store_audit_append(f->s, &bad, 0, NULL), STORE_EINVAL);
    bad.detail = NULL;
    bad.actor_id = "bad id";
    assert_int_equal(store_audit_append(f->s, &bad, 0, NULL), STORE_EINVAL);
    bad.actor_id = NULL;
    char longaction[STORE_ACTION_MAX + 2];
    memset(longaction, 'a', sizeof longaction - 1);
    longaction[sizeof longaction - 1] = '\0';
    bad.action = longaction;
    assert_int_equal(store_audit_append(f->s, &bad, 0, NULL), STORE_ETOOBIG);
    bad.action = "x";
    assert_int_equal(store_audit_append(f->s, &bad, -1, NULL), STORE_EINVAL);
    fl = (store_audit_filter_t){ .limit = 0 };
    assert_int_equal(store_audit_list(f->s, &fl, &l), STORE_EINVAL);
    fl.limit = 1001;
    assert_int_equal(store_audit_list(f->s, &fl, &l), STORE_EINVAL);
    assert_int_equal(store_audit_prune(f->s, -1, &n), STORE_EINVAL);
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
        cmocka_unit_test_setup_teardown(test_doc_ocr, setup, teardown),
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
        cmocka_unit_test_setup_teardown(test_user_create_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_last_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_last_admin_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_disable_ends_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_documents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_content_two_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_copy_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_delete_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_unowned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_claim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("store on SQLite", tests, NULL, NULL);
    pg_base = getenv("KVCHAT_TEST_PG");
    if (pg_base && pg_base[0])
        failed += cmocka_run_group_tests_name("store on PostgreSQL", tests, NULL, NULL);
    return failed;
}
