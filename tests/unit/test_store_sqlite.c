/* test_store_sqlite.c — the SQLite backend as a file on disk.
 *
 * Works on the database file itself (never through sqlite3.h; the header
 * fields are patched by offset, as the file format documents them):
 * - the URL forms that select the backend, and those refused;
 * - WAL mode (a -wal file while open, none after close);
 * - reopening keeps documents with their text and cache state, sessions,
 *   messages, and message ids keep growing;
 * - damaged files: random bytes, damaged pages after a valid header, a
 *   truncated file — store_open or the first read fails with
 *   STORE_ECORRUPT, never a crash; an empty file is a new database;
 * - a file from a newer kvchat (user_version) and one from another
 *   application (application_id) are refused with STORE_ESCHEMA and left
 *   unchanged;
 * - two stores on one file (as two processes would be) writing at once
 *   from 4 threads each (they meet in SQLite's file locks and busy
 *   timeout, not in a shared mutex): no error, every row there;
 * - "sqlite::memory:" works across calls and is private to its store;
 * - a database of schema version 1 (a text in one value) written as an
 *   older kvchat wrote it, through sqlite3.h (the one exception above), is
 *   migrated: its texts read back, are found and are deleted as before;
 * - a database of schema version 3 (before accounts) with documents,
 *   texts, marks, chunks, sessions, messages, session sets and a
 *   collection is migrated keeping every row and every reference: no
 *   owners, the same session ids, message ids and list orders; then
 *   adopted by a first admin, and two users may hold the same content;
 * - the store's own key of a session, read from the file, names no session
 *   for anyone;
 * - login and token lookups that are not due for a touch succeed while
 *   another process holds the write lock (they only read).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "app/store/store.h"
#include "app/store/store_sqlite.h"

typedef struct {
    char dir[64];
    char path[128];
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
    snprintf(f->dir, sizeof f->dir, "/tmp/kvchat-store-sqlite-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/kvchat.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    int rc = nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* Overwrite bytes [off, off + n) of the file with `fill` (or pseudo-random
 * bytes when fill < 0). */
static void scribble(const char *path, off_t off, size_t n, int fill)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    unsigned char *b = malloc(n);
    assert_non_null(b);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = fill >= 0 ? (unsigned char)fill : (unsigned char)x;
    }
    assert_int_equal(pwrite(fd, b, n, off), (ssize_t)n);
    free(b);
    close(fd);
}

/* Write a big-endian 32-bit header field at `off`. */
static void put_be32(const char *path, off_t off, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, b, 4, off), 4);
    close(fd);
}

static uint32_t get_be32(const char *path, off_t off)
{
    unsigned char b[4];
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, b, 4, off), 4);
    close(fd);
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Offsets in the SQLite file header. */
#define HDR_USER_VERSION 60
#define HDR_APPLICATION_ID 68

/* A database with a little of everything; returns after closing it. */
static void populate(const char *path, int n_docs)
{
    store_t *s;
    assert_int_equal(store_open(path, &s), STORE_OK);
    for (int i = 0; i < n_docs; i++) {
        char sha[65], stored[32], text[256];
        snprintf(sha, sizeof sha, "%064d", i);
        snprintf(stored, sizeof stored, "u%d.txt", i);
        snprintf(text, sizeof text, "document %d: some words to index, number %d", i, i * 7);
        store_doc_t in, out;
        store_doc_init(&in);
        in.filename = "f.txt";
        in.stored_name = stored;
        in.content_type = "txt";
        in.file_size = 10;
        in.sha256 = sha;
        assert_int_equal(store_doc_insert(s, &in, text, strlen(text), &out, NULL), STORE_OK);
        char sid[32];
        snprintf(sid, sizeof sid, "s%d", i);
        assert_int_equal(store_session_create(s, sid, out.id, NULL, NULL), STORE_OK);
        for (int k = 0; k < 5; k++)
            assert_int_equal(store_msg_append(s, sid, STORE_ROLE_USER, text, false, NULL, NULL),
                             STORE_OK);
        store_doc_cleanup(&out);
    }
    store_close(s);
}

/* ---- URLs --------------------------------------------------------------------- */

static void test_urls(void **state)
{
    fx_t *f = *state;
    store_t *s = (store_t *)1;
    char url[256];

    assert_int_equal(store_open(f->path, &s), STORE_OK); /* plain path */
    assert_string_equal(store_backend_name(s), "sqlite");
    assert_int_equal(store_session_create(s, "x", NULL, NULL, NULL), STORE_OK);
    store_close(s);

    snprintf(url, sizeof url, "sqlite:%s", f->path);
    assert_int_equal(store_open(url, &s), STORE_OK);
    store_session_t ss;
    assert_int_equal(store_session_get(s, "x", &ss), STORE_OK); /* the same file */
    store_session_cleanup(&ss);
    store_close(s);

    snprintf(url, sizeof url, "sqlite://%s", f->path); /* sqlite:///tmp/... */
    assert_int_equal(store_open(url, &s), STORE_OK);
    assert_int_equal(store_session_get(s, "x", &ss), STORE_OK);
    store_session_cleanup(&ss);
    store_close(s);

    s = (store_t *)1;
    assert_int_equal(store_open("mysql://kv@db/kvchat", &s), STORE_EUNSUPPORTED);
    assert_null(s);
    /* PostgreSQL URLs go to that backend: no server on this socket. */
    assert_int_equal(store_open("postgresql:///kvchat?host=/nonexistent", &s), STORE_EIO);
    assert_int_equal(store_open("postgres:///kvchat?host=/nonexistent", &s), STORE_EIO);
    assert_int_equal(store_open("", &s), STORE_EINVAL);
    assert_int_equal(store_open("sqlite:", &s), STORE_EINVAL);
    assert_int_equal(store_open(NULL, &s), STORE_EINVAL);
    assert_int_equal(store_open(f->path, NULL), STORE_EINVAL);

    /* A missing directory or a directory as the file: an I/O error. */
    snprintf(url, sizeof url, "%s/no/such/dir/db", f->dir);
    assert_int_equal(store_open(url, &s), STORE_EIO);
    assert_null(s);
    assert_int_equal(store_open(f->dir, &s), STORE_EIO);
    store_close(NULL);
}

static void test_wal_mode(void **state)
{
    fx_t *f = *state;
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    store_t *s;
    assert_int_equal(store_open(f->path, &s), STORE_OK);
    assert_int_equal(store_session_create(s, "x", NULL, NULL, NULL), STORE_OK);
    assert_true(file_exists(wal));
    store_close(s);
    assert_false(file_exists(wal)); /* checkpointed and removed at close */
    assert_int_equal(get_be32(f->path, HDR_APPLICATION_ID), STORE_SQLITE_APP_ID);
    assert_int_equal(get_be32(f->path, HDR_USER_VERSION), STORE_SQLITE_SCHEMA_VERSION);
}

/* ---- Persistence -------------------------------------------------------------- */

static void test_reopen_keeps_everything(void **state)
{
    fx_t *f = *state;
    store_t *s;
    assert_int_equal(store_open(f->path, &s), STORE_OK);
    const char *text = "Persistent text \xe2\x9c\x93 with a searchable word: zeppelin.";
    store_doc_t in, doc;
    store_doc_init(&in);
    in.filename = "book.epub";
    in.stored_name = "abc.epub";
    in.content_type = "epub";
    in.file_size = 4242;
    in.sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    in.n_tokens = 77;
    assert_int_equal(store_doc_insert(s, &in, text, strlen(text), &doc, NULL), STORE_OK);
    store_cache_t c = {.status = STORE_CACHE_CACHED, .entry_id = "e-1", .tokens = 77,
                       .bytes = 946176, .tier = "disk", .ms = 12.25, .cached_at = 1700000000123};
    assert_int_equal(store_doc_set_cache(s, doc.id, &c), STORE_OK);
    assert_int_equal(store_session_create(s, "kept", doc.id, "Title", NULL), STORE_OK);
    int64_t id1, id2;
    assert_int_equal(store_msg_append(s, "kept", STORE_ROLE_USER, "question", false, NULL,
                                      &id1), STORE_OK);
    assert_int_equal(store_msg_append(s, "kept", STORE_ROLE_ASSISTANT, "answer", true,
                                      "{\"usage\":{\"total_tokens\":3}}", &id2), STORE_OK);
    /* The highest message id goes with its session: ids are never reused. */
    assert_int_equal(store_session_create(s, "gone", NULL, NULL, NULL), STORE_OK);
    int64_t id3;
    assert_int_equal(store_msg_append(s, "gone", STORE_ROLE_USER, "bye", false, NULL, &id3),
                     STORE_OK);
    assert_int_equal(store_session_delete(s, "gone"), STORE_OK);
    store_close(s);

    assert_int_equal(store_open(f->path, &s), STORE_OK);
    assert_int_equal(store_check(s), STORE_OK);
    store_doc_t got;
    assert_int_equal(store_doc_get(s, doc.id, &got), STORE_OK);
    assert_string_equal(got.filename, "book.epub");
    assert_string_equal(got.content_type, "epub");
    assert_int_equal(got.file_size, 4242);
    assert_int_equal(got.n_tokens, 77);
    assert_int_equal(got.uploaded_at, doc.uploaded_at);
    assert_int_equal(got.cache.status, STORE_CACHE_CACHED);
    assert_string_equal(got.cache.entry_id, "e-1");
    assert_string_equal(got.cache.tier, "disk");
    assert_int_equal(got.cache.bytes, 946176);
    assert_true(got.cache.ms == 12.25);
    assert_int_equal(got.cache.cached_at, 1700000000123);
    store_doc_cleanup(&got);
    char *t;
    assert_int_equal(store_doc_text(s, doc.id, &t, NULL), STORE_OK);
    assert_string_equal(t, text);
    free(t);
    store_doc_list_t l;
    assert_int_equal(store_doc_search(s, "zeppelin", 5, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    store_doc_list_cleanup(&l);

    store_session_t ss;
    assert_int_equal(store_session_get(s, "kept", &ss), STORE_OK);
    assert_string_equal(ss.title, "Title");
    assert_string_equal(ss.document_filename, "book.epub");
    assert_int_equal(ss.message_count, 2);
    store_session_cleanup(&ss);
    assert_int_equal(store_session_get(s, "gone", &ss), STORE_ENOTFOUND);
    store_msg_list_t ml;
    assert_int_equal(store_msg_list(s, "kept", 0, &ml), STORE_OK);
    assert_int_equal(ml.n, 2);
    assert_int_equal(ml.items[0].id, id1);
    assert_int_equal(ml.items[1].id, id2);
    assert_true(ml.items[1].incomplete);
    assert_string_equal(ml.items[1].meta, "{\"usage\":{\"total_tokens\":3}}");
    store_msg_list_cleanup(&ml);
    int64_t id4;
    assert_int_equal(store_msg_append(s, "kept", STORE_ROLE_USER, "again", false, NULL, &id4),
                     STORE_OK);
    assert_true(id4 > id3);
    store_close(s);
    store_doc_cleanup(&doc);
}

/* ---- Damaged files -------------------------------------------------------------- */

/* Open `path`, read everything and check it; the damage must surface as
 * STORE_ECORRUPT from the open, the reads or store_check(). Returns the
 * count of ECORRUPT results; never crashes. */
static int corrupt_results(const char *path)
{
    store_t *s = NULL;
    int rc = store_open(path, &s);
    if (rc != STORE_OK) {
        assert_null(s);
        return rc == STORE_ECORRUPT;
    }
    int n = 0;
    store_doc_list_t dl;
    n += store_doc_list(s, &dl) == STORE_ECORRUPT;
    for (size_t i = 0; i < dl.n; i++) {
        char *t = NULL;
        n += store_doc_text(s, dl.items[i].id, &t, NULL) == STORE_ECORRUPT;
        free(t);
    }
    store_doc_list_cleanup(&dl);
    n += store_doc_search(s, "words", 100, &dl) == STORE_ECORRUPT;
    store_doc_list_cleanup(&dl);
    n += store_check(s) == STORE_ECORRUPT;
    store_session_list_t sl;
    n += store_session_list(s, 0, &sl) == STORE_ECORRUPT;
    store_session_list_cleanup(&sl);
    int64_t count;
    for (int i = 0; i < 20; i++) {
        char sid[32];
        snprintf(sid, sizeof sid, "s%d", i);
        n += store_msg_count(s, sid, &count) == STORE_ECORRUPT;
    }
    store_close(s);
    return n;
}

static void test_garbage_file(void **state)
{
    fx_t *f = *state;
    int fd = open(f->path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    scribble(f->path, 0, 64 * 1024, -1);
    store_t *s = (store_t *)1;
    assert_int_equal(store_open(f->path, &s), STORE_ECORRUPT);
    assert_null(s);
    assert_int_equal(file_size(f->path), 64 * 1024); /* left as it was */

    /* A text file is no better. */
    scribble(f->path, 0, 64 * 1024, 'A');
    assert_int_equal(store_open(f->path, &s), STORE_ECORRUPT);
}

static void test_damaged_pages(void **state)
{
    fx_t *f = *state;
    populate(f->path, 20);
    off_t size = file_size(f->path);
    assert_true(size > 8 * 4096);
    /* Keep the first page (header and the start of the schema), damage the
     * rest. */
    scribble(f->path, 4096, (size_t)(size - 4096), -1);
    assert_true(corrupt_results(f->path) > 0);
}

static void test_damaged_data_page(void **state)
{
    fx_t *f = *state;
    populate(f->path, 20);
    off_t size = file_size(f->path);
    /* Damage the last pages only (data, not schema). */
    scribble(f->path, size - 3 * 4096, 3 * 4096, -1);
    assert_true(corrupt_results(f->path) > 0);
}

static void test_truncated_file(void **state)
{
    fx_t *f = *state;
    populate(f->path, 20);
    off_t size = file_size(f->path);
    assert_int_equal(truncate(f->path, size / 2), 0);
    assert_true(corrupt_results(f->path) > 0);
}

static void test_empty_file(void **state)
{
    fx_t *f = *state;
    int fd = open(f->path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    store_t *s;
    assert_int_equal(store_open(f->path, &s), STORE_OK);
    assert_int_equal(store_session_create(s, "x", NULL, NULL, NULL), STORE_OK);
    store_close(s);
}

static void test_newer_schema(void **state)
{
    fx_t *f = *state;
    populate(f->path, 1);
    put_be32(f->path, HDR_USER_VERSION, STORE_SQLITE_SCHEMA_VERSION + 1);
    store_t *s = (store_t *)1;
    assert_int_equal(store_open(f->path, &s), STORE_ESCHEMA);
    assert_null(s);
    assert_int_equal(get_be32(f->path, HDR_USER_VERSION), STORE_SQLITE_SCHEMA_VERSION + 1);
    /* Back to our version: usable again, nothing lost. */
    put_be32(f->path, HDR_USER_VERSION, STORE_SQLITE_SCHEMA_VERSION);
    assert_int_equal(store_open(f->path, &s), STORE_OK);
    int64_t n;
    assert_int_equal(store_msg_count(s, "s0", &n), STORE_OK);
    assert_int_equal(n, 5);
    store_close(s);
}

static void test_foreign_database(void **state)
{
    fx_t *f = *state;
    populate(f->path, 1);
    off_t size = file_size(f->path);
    put_be32(f->path, HDR_APPLICATION_ID, 0x12345678);
    store_t *s = (store_t *)1;
    assert_int_equal(store_open(f->path, &s), STORE_ESCHEMA);
    assert_null(s);
    /* A database of no application but with tables: not ours either, and
     * nothing is written to it. */
    put_be32(f->path, HDR_APPLICATION_ID, 0);
    put_be32(f->path, HDR_USER_VERSION, 0);
    assert_int_equal(store_open(f->path, &s), STORE_ESCHEMA);
    assert_int_equal(get_be32(f->path, HDR_APPLICATION_ID), 0);
    assert_int_equal(get_be32(f->path, HDR_USER_VERSION), 0);
    assert_int_equal(file_size(f->path), size);
}

/* ---- Two stores on one file --------------------------------------------------- */

/* Messages each writer appends: a fixed amount of work, not a time, since
 * SQLite's lock between two stores is not fair (a waiting writer polls)
 * and a slow (sanitized) build may starve one writer for a while. */
#define WRITER_MESSAGES 60

struct writer {
    store_t *s;
    char sid[32];
    int appended;
    int errors;
    int first_rc;
};

static void *writer_main(void *p)
{
    struct writer *w = p;
    int rc = store_session_ensure(w->s, w->sid, NULL, NULL, NULL);
    if (rc != STORE_OK && w->errors++ == 0)
        w->first_rc = rc;
    for (int i = 0; i < WRITER_MESSAGES; i++) {
        rc = store_msg_append(w->s, w->sid, STORE_ROLE_USER, "hello", false, NULL, NULL);
        if (rc == STORE_OK)
            w->appended++;
        else if (w->errors++ == 0)
            w->first_rc = rc;
        store_msg_list_t l;
        rc = store_msg_list(w->s, w->sid, 10, &l);
        if (rc != STORE_OK && w->errors++ == 0)
            w->first_rc = rc;
        store_msg_list_cleanup(&l);
    }
    return NULL;
}

static void test_two_stores_one_file(void **state)
{
    fx_t *f = *state;
    store_t *a, *b;
    assert_int_equal(store_open(f->path, &a), STORE_OK);
    assert_int_equal(store_open(f->path, &b), STORE_OK);
    enum { N = 8 };
    pthread_t th[N];
    struct writer w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct writer){.s = i % 2 ? a : b};
        snprintf(w[i].sid, sizeof w[i].sid, "w%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (w[i].errors)
            fail_msg("writer %d: %d errors, first: %s", i, w[i].errors,
                     store_strerror(w[i].first_rc));
        assert_int_equal(w[i].appended, WRITER_MESSAGES);
        int64_t n;
        assert_int_equal(store_msg_count(i % 2 ? b : a, w[i].sid, &n), STORE_OK); /* other */
        assert_int_equal(n, w[i].appended);
    }
    assert_int_equal(store_check(a), STORE_OK);
    store_close(a);
    store_close(b);
}

/* ---- Memory ------------------------------------------------------------------- */

static void test_memory(void **state)
{
    (void)state;
    store_t *a, *b;
    assert_int_equal(store_open("sqlite::memory:", &a), STORE_OK);
    assert_int_equal(store_open("sqlite::memory:", &b), STORE_OK);
    assert_int_equal(store_session_create(a, "m", NULL, NULL, NULL), STORE_OK);
    assert_int_equal(store_msg_append(a, "m", STORE_ROLE_USER, "x", false, NULL, NULL),
                     STORE_OK);
    int64_t n;
    assert_int_equal(store_msg_count(a, "m", &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(store_msg_count(b, "m", &n), STORE_ENOTFOUND); /* private */
    store_close(a);
    store_close(b);
}

/* A database of schema version 1, as kvchat created it before texts were
 * kept in pieces (by the shipped migration 0 -> 1, which never changes). */
static void test_migrate_from_v1(void **state)
{
    fx_t *f = *state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    char *err = NULL;
    assert_null(store_sqlite_migration(-1));
    assert_null(store_sqlite_migration(STORE_SQLITE_SCHEMA_VERSION));
    int rc = sqlite3_exec(db, store_sqlite_migration(0), NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("v1 schema: %s", err);
    char sql[2048];
    snprintf(sql, sizeof sql,
             "INSERT INTO documents (id, filename, stored_name, content_type, file_size, sha256, "
             "uploaded_at, n_chars) VALUES ('old-doc', 'old.txt', 'old.txt', 'txt', 10, '%064d', "
             "1000, 26), ('empty-doc', 'e.txt', 'e.txt', 'txt', 0, '%064d', 1001, 0);"
             "INSERT INTO document_texts (document_id, text) VALUES "
             "('old-doc', 'An old lighthouse keeper.'), ('empty-doc', '');"
             "PRAGMA user_version = 1; PRAGMA application_id = %d;",
             1, 2, STORE_SQLITE_APP_ID);
    rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("v1 rows: %s", err);
    sqlite3_close(db);

    store_t *s;
    assert_int_equal(store_open(f->path, &s), STORE_OK);
    char *t = NULL;
    assert_int_equal(store_doc_text(s, "old-doc", &t, NULL), STORE_OK);
    assert_string_equal(t, "An old lighthouse keeper.");
    free(t);
    assert_int_equal(store_doc_text(s, "empty-doc", &t, NULL), STORE_OK);
    assert_string_equal(t, "");
    free(t);
    store_doc_list_t l;
    assert_int_equal(store_doc_search(s, "lighthouse", 10, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].id, "old-doc");
    store_doc_list_cleanup(&l);
    assert_int_equal(store_check(s), STORE_OK);
    assert_int_equal(store_doc_delete(s, "old-doc", NULL), STORE_OK);
    assert_int_equal(store_doc_search(s, "lighthouse", 10, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    store_doc_list_cleanup(&l);
    assert_int_equal(store_check(s), STORE_OK);
    store_close(s);
    assert_int_equal(get_be32(f->path, HDR_USER_VERSION), STORE_SQLITE_SCHEMA_VERSION);
}

/* Run `sql` on a database through sqlite3 directly; fail the test with
 * SQLite's message if it fails. */
static void raw_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
}

/* The first column of the first row of `sql` as an integer. */
static int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* A database of schema version 3 (the last before accounts), with a little
 * of everything, written as that kvchat wrote it (the shipped migrations
 * 0 -> 1 -> 2 -> 3, which never change), is migrated keeping every row:
 * documents and sessions get no owner, session ids stay what their clients
 * know, messages keep their ids and sessions, and everything refers to
 * everything as before. */
static void test_migrate_from_v3(void **state)
{
    fx_t *f = *state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    for (int v = 0; v < 3; v++)
        raw_exec(db, store_sqlite_migration(v));
    char sql[4096];
    snprintf(sql, sizeof sql,
             "INSERT INTO documents (id, filename, stored_name, content_type, file_size, sha256, "
             "uploaded_at, n_chars, n_tokens, cache_status, cache_entry_id) VALUES "
             "('doc-a', 'a.txt', 'a-stored.txt', 'txt', 25, '%064d', 1000, 25, 6, 'cached', "
             "'e-a'), "
             "('doc-b', 'b.txt', 'b-stored.txt', 'txt', 0, '%064d', 1000, 0, NULL, 'none', NULL);"
             "INSERT INTO document_chunks (document_id, seq, text) VALUES "
             "('doc-a', 0, 'An old lighthouse keeper.');"
             "INSERT INTO document_marks (document_id, seq, kind, pos, number, label) VALUES "
             "('doc-a', 0, 'page', 0, 1, 'i');"
             "INSERT INTO chunks (document_id, seq, pos_start, pos_end, n_chars, est_tokens, "
             "content, index_text) VALUES ('doc-a', 0, 0, 25, 25, 6, "
             "'An old lighthouse keeper.', 'an old lighthouse keeper');"
             "INSERT INTO sessions (id, created_at, last_active, document_id, title) VALUES "
             "('old-s1', 100, 300, 'doc-a', 'Lighthouses'), ('old-s2', 100, 200, NULL, NULL);"
             "INSERT INTO messages (session_id, role, content, created_at, meta) VALUES "
             "('old-s1', 'user', 'q1', 101, NULL), ('old-s1', 'assistant', 'a1', 102, '{}'), "
             "('old-s2', 'user', 'q2', 103, NULL), ('old-s1', 'user', 'q3', 104, NULL);"
             "INSERT INTO session_documents (session_id, pos, document_id) VALUES "
             "('old-s2', 0, 'doc-b'), ('old-s2', 1, 'doc-a');"
             "UPDATE sessions SET document_id = 'doc-b' WHERE id = 'old-s2';"
             "INSERT INTO collections (id, name, created_at) VALUES ('coll', 'C', 5);"
             "INSERT INTO collection_documents (collection_id, pos, document_id) VALUES "
             "('coll', 0, 'doc-a');"
             "PRAGMA user_version = 3; PRAGMA application_id = %d;",
             1, 2, STORE_SQLITE_APP_ID);
    raw_exec(db, sql);
    sqlite3_close(db);

    store_t *s;
    assert_int_equal(store_open(f->path, &s), STORE_OK);
    assert_int_equal(store_check(s), STORE_OK);

    /* documents: all there, nobody's, in the same order (equal times: the
     * later insert first, so rowids were kept) */
    store_doc_list_t l;
    assert_int_equal(store_doc_list(s, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].id, "doc-b");
    assert_string_equal(l.items[1].id, "doc-a");
    const store_doc_t *a = &l.items[1];
    assert_null(a->owner_id);
    assert_false(a->shared);
    assert_string_equal(a->stored_name, "a-stored.txt");
    assert_int_equal(a->n_tokens, 6);
    assert_int_equal(a->n_pages, 1);
    assert_int_equal(a->n_chunks, 1);
    assert_int_equal(a->cache.status, STORE_CACHE_CACHED);
    assert_string_equal(a->cache.entry_id, "e-a");
    store_doc_list_cleanup(&l);
    char *t = NULL;
    assert_int_equal(store_doc_text(s, "doc-a", &t, NULL), STORE_OK);
    assert_string_equal(t, "An old lighthouse keeper.");
    free(t);
    assert_int_equal(store_doc_search(s, "lighthouse", 10, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].id, "doc-a");
    store_doc_list_cleanup(&l);
    store_chunk_list_t cl;
    const char *ids[] = { "doc-a" };
    assert_int_equal(store_chunk_search(s, ids, 1, "lighthouse", 10, &cl), STORE_OK);
    assert_int_equal(cl.n, 1);
    store_chunk_list_cleanup(&cl);

    /* sessions: their ids as their clients know them, nobody's, with
     * their messages, documents and order */
    store_session_list_t sl;
    assert_int_equal(store_session_list(s, 0, &sl), STORE_OK);
    assert_int_equal(sl.n, 2);
    assert_string_equal(sl.items[0].id, "old-s1");
    assert_null(sl.items[0].owner_id);
    assert_string_equal(sl.items[0].title, "Lighthouses");
    assert_string_equal(sl.items[0].document_filename, "a.txt");
    assert_int_equal(sl.items[0].message_count, 3);
    assert_int_equal(sl.items[0].last_active, 300);
    assert_int_equal(sl.items[1].message_count, 1);
    store_session_list_cleanup(&sl);
    store_msg_list_t ml;
    assert_int_equal(store_msg_list(s, "old-s1", 0, &ml), STORE_OK);
    assert_int_equal(ml.n, 3);
    assert_int_equal(ml.items[0].id, 1);
    assert_int_equal(ml.items[1].id, 2);
    assert_int_equal(ml.items[2].id, 4);
    assert_string_equal(ml.items[2].content, "q3");
    assert_string_equal(ml.items[1].meta, "{}");
    assert_string_equal(ml.items[0].session_id, "old-s1");
    store_msg_list_cleanup(&ml);
    int64_t id = 0;
    assert_int_equal(store_msg_append(s, "old-s2", STORE_ROLE_USER, "new", false, NULL, &id),
                     STORE_OK);
    assert_int_equal(id, 5);   /* ids go on growing */
    store_id_list_t dl;
    assert_int_equal(store_session_documents(s, "old-s2", &dl), STORE_OK);
    assert_int_equal(dl.n, 2);
    assert_string_equal(dl.ids[0], "doc-b");
    assert_string_equal(dl.ids[1], "doc-a");
    store_id_list_cleanup(&dl);
    store_collection_t c;
    assert_int_equal(store_collection_get(s, "coll", &c), STORE_OK);
    assert_int_equal(c.docs.n, 1);
    store_collection_cleanup(&c);
    /* foreign keys still hold, both ways */
    assert_int_equal(store_session_create(s, "x", "no-such-doc", NULL, NULL), STORE_ENOTFOUND);
    assert_int_equal(store_session_create(s, "old-s1", NULL, NULL, NULL), STORE_ECONFLICT);

    /* accounts on: the first admin adopts it all */
    store_user_t u;
    assert_int_equal(store_user_create(s, "root", "$argon2id$x", STORE_USER_ROLE_ADMIN, &u),
                     STORE_OK);
    int64_t nd = 0, ns = 0;
    assert_int_equal(store_adopt_unowned(s, u.id, &nd, &ns), STORE_OK);
    assert_int_equal(nd, 2);
    assert_int_equal(ns, 2);
    store_scope_t root = { u.id, true };
    int64_t n = 0;
    assert_int_equal(store_msg_count_scoped(s, &root, "old-s1", &n), STORE_OK);
    assert_int_equal(n, 3);
    /* the old UNIQUE(sha256) is gone: another user's copy of doc-a */
    store_user_t b;
    assert_int_equal(store_user_create(s, "bob", "$argon2id$y", STORE_USER_ROLE_USER, &b),
                     STORE_OK);
    store_scope_t sb = { b.id, false };
    store_doc_t in, out;
    store_doc_init(&in);
    char sha[65];
    snprintf(sha, sizeof sha, "%064d", 1);
    in.filename = "mine.txt";
    in.stored_name = "bob.txt";
    in.content_type = "txt";
    in.file_size = 25;
    in.sha256 = sha;
    bool existed = true;
    assert_int_equal(store_doc_insert_scoped(s, &sb, &in, "An old lighthouse keeper.", 25, &out,
                                             &existed), STORE_OK);
    assert_false(existed);
    assert_string_equal(out.stored_name, "a-stored.txt");
    store_doc_cleanup(&out);
    /* deleting a migrated session still takes its messages */
    assert_int_equal(store_session_delete_scoped(s, &root, "old-s1"), STORE_OK);
    assert_int_equal(store_check(s), STORE_OK);
    store_close(s);
    store_user_cleanup(&u);
    store_user_cleanup(&b);
    assert_int_equal(get_be32(f->path, HDR_USER_VERSION), STORE_SQLITE_SCHEMA_VERSION);

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM messages WHERE session_id = 'old-s1'"), 0);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM messages"), 2);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
    sqlite3_close(db);
    /* opened again: nothing left to migrate */
    assert_int_equal(store_open(f->path, &s), STORE_OK);
    assert_int_equal(store_doc_list(s, &l), STORE_OK);
    assert_int_equal(l.n, 3);
    store_doc_list_cleanup(&l);
    store_close(s);
}

/* The store's own key of a session never reaches another user: even
 * knowing it (read here from the file), nobody can name the session by it. */
static void test_session_keys_stay_inside(void **state)
{
    fx_t *f = *state;
    store_t *s;
    assert_int_equal(store_open(f->path, &s), STORE_OK);
    store_user_t a, b;
    assert_int_equal(store_user_create(s, "alice", "$h$a", STORE_USER_ROLE_USER, &a), STORE_OK);
    assert_int_equal(store_user_create(s, "bob", "$h$b", STORE_USER_ROLE_USER, &b), STORE_OK);
    store_scope_t sa = { a.id, false }, sb = { b.id, false }, sadm = { b.id, true };
    assert_int_equal(store_session_create_scoped(s, &sa, "abc", NULL, NULL, NULL), STORE_OK);
    assert_int_equal(store_msg_append_scoped(s, &sa, "abc", STORE_ROLE_USER, "secret", false,
                                             NULL, NULL), STORE_OK);

    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT id FROM sessions WHERE client_id = 'abc'",
                                        -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char key[STORE_ID_MAX + 1];
    snprintf(key, sizeof key, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_string_not_equal(key, "abc");
    assert_true(store_id_valid(key));

    const store_scope_t *scopes[] = { &sa, &sb, &sadm, NULL };
    for (int i = 0; i < 4; i++) {
        store_session_t ss;
        store_msg_list_t ml;
        int64_t n;
        assert_int_equal(store_session_get_scoped(s, scopes[i], key, &ss), STORE_ENOTFOUND);
        assert_int_equal(store_msg_list_scoped(s, scopes[i], key, 0, &ml), STORE_ENOTFOUND);
        assert_int_equal(store_msg_count_scoped(s, scopes[i], key, &n), STORE_ENOTFOUND);
        assert_int_equal(store_msg_append_scoped(s, scopes[i], key, STORE_ROLE_USER, "x", false,
                                                 NULL, NULL), STORE_ENOTFOUND);
        assert_int_equal(store_session_delete_scoped(s, scopes[i], key), STORE_ENOTFOUND);
    }
    /* nor does it show anywhere: messages name the session as its client does */
    store_msg_list_t ml;
    assert_int_equal(store_msg_list_scoped(s, &sa, "abc", 0, &ml), STORE_OK);
    assert_int_equal(ml.n, 1);
    assert_string_equal(ml.items[0].session_id, "abc");
    store_msg_list_cleanup(&ml);
    store_session_list_t sl;
    assert_int_equal(store_session_list_scoped(s, &sa, 0, &sl), STORE_OK);
    assert_int_equal(sl.n, 1);
    assert_string_equal(sl.items[0].id, "abc");
    store_session_list_cleanup(&sl);
    store_user_cleanup(&a);
    store_user_cleanup(&b);
    store_close(s);
}

/* Chunks for test_chunk_index_batches: chunk i holds the word "wN" with
 * N = 1000 + i (content and index text). */
typedef struct {
    int n, at;
    char text[64];
    store_chunk_t c;
} word_feed_t;

static int word_next(void *ud, const store_chunk_t **chunk, const char **index_text)
{
    word_feed_t *f = ud;
    if (f->at == f->n) {
        *chunk = NULL;
        return STORE_OK;
    }
    snprintf(f->text, sizeof f->text, "chunk with w%d in it", 1000 + f->at);
    store_chunk_init(&f->c);
    f->c.start = (int64_t)f->at * 30;
    f->c.end = f->c.start + 20;
    f->c.n_chars = 20;
    f->c.est_tokens = 6;
    f->c.label_first = f->c.label_last = "";
    f->c.heading = "";
    f->c.content = f->text;
    *chunk = &f->c;
    *index_text = f->text;
    f->at++;
    return STORE_OK;
}

/* Whether a search for chunk i's word finds chunk i. */
static bool finds(store_t *s, const char *doc, int i)
{
    char word[16];
    snprintf(word, sizeof word, "w%d", 1000 + i);
    const char *ids[1] = { doc };
    store_chunk_list_t l;
    assert_int_equal(store_chunk_search(s, ids, 1, word, 5, &l), STORE_OK);
    bool found = l.n == 1 && l.items[0].seq == i;
    store_chunk_list_cleanup(&l);
    return found;
}

/* Document `id`'s chunks from `from` on taken out of the index and marked
 * pending, as a process stopped half way through the index leaves them. */
static void unindex_from(sqlite3 *db, const char *id, int from)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "BEGIN; INSERT INTO chunk_fts (chunk_fts, rowid, index_text) "
             "SELECT 'delete', rowid, index_text FROM chunks WHERE document_id = '%s' "
             "AND seq >= %d; INSERT INTO chunk_fts_pending VALUES ('%s', %d); COMMIT",
             id, from, id, from);
    raw_exec(db, sql);
}

/* A document's chunk index is written after its chunks, a batch per
 * transaction: complete when store_doc_set_chunks() returns; finished at
 * open when a process stopped half way (chunk_fts_pending); and a
 * document deleted while its index is half written leaves the index
 * sound (the delete trigger skips the chunks not yet indexed). */
static void test_chunk_index_batches(void **state)
{
    fx_t *f = *state;
    store_t *s;
    assert_int_equal(store_open(f->path, &s), STORE_OK);
    const char *text = "The text itself.";
    store_doc_t in, doc, gone;
    store_doc_init(&in);
    in.filename = "many.txt";
    in.stored_name = "many.txt";
    in.content_type = "txt";
    in.file_size = 16;
    in.sha256 = "1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_int_equal(store_doc_insert(s, &in, text, strlen(text), &doc, NULL), STORE_OK);
    in.stored_name = "other.txt";
    in.sha256 = "2123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_int_equal(store_doc_insert(s, &in, text, strlen(text), &gone, NULL), STORE_OK);
    const int n = 700;   /* several batches */
    word_feed_t feed = { .n = n };
    store_chunk_reader_t r = { word_next, &feed };
    int64_t got = 0;
    assert_int_equal(store_doc_set_chunks(s, doc.id, &r, &got), STORE_OK);
    assert_int_equal(got, n);
    feed.at = 0;
    assert_int_equal(store_doc_set_chunks(s, gone.id, &r, &got), STORE_OK);
    assert_true(finds(s, doc.id, 0) && finds(s, doc.id, 299) && finds(s, doc.id, n - 1));
    assert_int_equal(store_check(s), STORE_OK);
    store_close(s);

    /* as a process stopped after indexing 300 chunks would leave them */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM chunk_fts_pending"), 0);
    unindex_from(db, doc.id, 300);
    sqlite3_close(db);
    assert_int_equal(store_open(f->path, &s), STORE_OK);
    assert_true(finds(s, doc.id, 299) && finds(s, doc.id, 300) && finds(s, doc.id, n - 1));
    assert_int_equal(store_check(s), STORE_OK);

    /* deleted with its index half written (another process's connection) */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM chunk_fts_pending"), 0);
    unindex_from(db, gone.id, 100);
    store_doc_t out;
    assert_int_equal(store_doc_delete(s, gone.id, &out), STORE_OK);
    store_doc_cleanup(&out);
    assert_int_equal(store_check(s), STORE_OK);
    assert_true(finds(s, doc.id, 150));
    /* a word of every chunk of both: its entries are sound */
    const char *ids[1] = { doc.id };
    store_chunk_list_t l;
    assert_int_equal(store_chunk_search(s, ids, 1, "chunk", 1000, &l), STORE_OK);
    assert_int_equal(l.n, n);
    store_chunk_list_cleanup(&l);
    raw_exec(db, "INSERT INTO chunk_fts (chunk_fts, rank) VALUES ('integrity-check', 1)");
    store_close(s);
    /* its row is dropped by the next open's backfill */
    assert_int_equal(store_open(f->path, &s), STORE_OK);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM chunk_fts_pending"), 0);
    assert_int_equal(store_check(s), STORE_OK);
    sqlite3_close(db);
    store_doc_cleanup(&doc);
    store_doc_cleanup(&gone);
    store_close(s);
}

/* A login or token lookup that is not due for a touch only reads: it
 * succeeds, without waiting, while another process holds the write lock
 * (a write would wait STORE_SQLITE_BUSY_MS and fail). */
static void test_lookup_needs_no_write_lock(void **state)
{
    fx_t *f = *state;
    store_t *s;
    assert_int_equal(store_open(f->path, &s), STORE_OK);
    store_user_t u;
    assert_int_equal(store_user_create(s, "alice", "$h$a", STORE_USER_ROLE_USER, &u), STORE_OK);
    char lh[65], th[65];
    memset(lh, 'a', 64);
    lh[64] = '\0';
    memset(th, 'b', 64);
    th[64] = '\0';
    assert_int_equal(store_login_create(s, lh, u.id, 3600, NULL, NULL, NULL), STORE_OK);
    assert_int_equal(store_token_create(s, u.id, "t", th, STORE_TOKEN_READ, 0, NULL), STORE_OK);
    store_user_t got;
    assert_int_equal(store_token_lookup(s, th, 0, 60, NULL, &got), STORE_OK); /* first use */
    store_user_cleanup(&got);

    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    raw_exec(db, "BEGIN IMMEDIATE");
    int64_t t0 = store_now_ms();
    for (int i = 0; i < 100; i++) {
        assert_int_equal(store_login_lookup(s, lh, 0, 60, NULL, &got), STORE_OK);
        assert_string_equal(got.id, u.id);
        store_user_cleanup(&got);
        assert_int_equal(store_token_lookup(s, th, 0, 60, NULL, &got), STORE_OK);
        store_user_cleanup(&got);
    }
    assert_true(store_now_ms() - t0 < STORE_SQLITE_BUSY_MS);
    raw_exec(db, "ROLLBACK");
    sqlite3_close(db);
    store_user_cleanup(&u);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_data_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_stores_one_file, setup, teardown),
        cmocka_unit_test(test_memory),
        cmocka_unit_test_setup_teardown(test_migrate_from_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v3, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_keys_stay_inside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_needs_no_write_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunk_index_batches, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
