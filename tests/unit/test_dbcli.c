/* test_dbcli.c — `kvchat db copy` and store_copy(): a SQLite store with
 * users, documents (text, marks, chunks with token counts, cache state,
 * sharing), sessions of nobody and of a user with their messages and
 * document sets, a login and audit entries is copied into an empty store
 * and read back the same, searches included; a second copy into the now
 * full store is refused. The destination is another SQLite file, and a
 * fresh PostgreSQL schema too when KVCHAT_TEST_PG names a database
 * (scripts/pgtmp). Bad usage exits 2.
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
#include <unistd.h>

#include "app/dbcli.h"
#include "app/store/store.h"
#include "app/store/store_pg.h"

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static const char *const contents[] = {
    "The decoder reads tags of asn1 der values.",
    "Lighthouse keepers write logs every night.",
};

static int feed(void *ud, const store_chunk_t **chunk, const char **ix)
{
    size_t *at = ud;
    static store_chunk_t c;
    if (*at == 2) {
        *chunk = NULL;
        return STORE_OK;
    }
    store_chunk_init(&c);
    c.start = (int64_t)*at * 50;
    c.end = c.start + (int64_t)strlen(contents[*at]);
    c.n_chars = c.end - c.start;
    c.est_tokens = 9;
    c.page_first = c.page_last = (int64_t)*at + 1;
    c.label_first = c.label_last = "";
    c.heading = *at ? "Logs" : "Tags";
    c.content = (char *)contents[*at];
    *chunk = &c;
    *ix = contents[*at];
    (*at)++;
    return STORE_OK;
}

/* The source: every kind of record the copy keeps. */
static void fill(store_t *s, char *doc1, char *doc2, char *uid)
{
    store_user_t admin, u;
    assert_int_equal(store_user_create(s, "root", "hash-root", STORE_USER_ROLE_ADMIN, &admin),
                     STORE_OK);
    assert_int_equal(store_user_create(s, "bob", "hash-bob", STORE_USER_ROLE_USER, &u),
                     STORE_OK);
    strcpy(uid, u.id);
    store_user_t off;
    assert_int_equal(store_user_create(s, "Gone", "hash-gone", STORE_USER_ROLE_USER, &off),
                     STORE_OK);
    assert_int_equal(store_user_set_disabled(s, off.id, true), STORE_OK);
    store_user_cleanup(&off);
    store_user_cleanup(&admin);

    store_doc_t in, out;
    store_doc_init(&in);
    in.filename = "tags.txt";
    in.stored_name = "upload-1.txt";
    in.content_type = "txt";
    in.file_size = 11;
    in.sha256 = "1111111111111111111111111111111111111111111111111111111111111111";
    in.uploaded_at = 1000;
    in.n_tokens = 42;
    in.shared = true;   /* bob may put it in his session's set */
    assert_int_equal(store_doc_insert(s, &in, "caf\xc3\xa9 tags", 10, &out, NULL), STORE_OK);
    strcpy(doc1, out.id);
    store_doc_cleanup(&out);
    store_scope_t bob = { u.id, false };
    in.filename = "logs.md";
    in.stored_name = "upload-2.md";
    in.content_type = "md";
    in.sha256 = "2222222222222222222222222222222222222222222222222222222222222222";
    in.uploaded_at = 2000;
    in.n_tokens = -1;
    in.shared = false;
    assert_int_equal(store_doc_insert_scoped(s, &bob, &in, "lighthouse logs", 15, &out, NULL),
                     STORE_OK);
    strcpy(doc2, out.id);
    store_doc_cleanup(&out);

    store_mark_t m = { STORE_MARK_PAGE, 0, 1, (char *)"i" };
    assert_int_equal(store_doc_set_marks(s, doc1, &m, 1), STORE_OK);
    size_t at = 0;
    store_chunk_reader_t r = { feed, &at };
    assert_int_equal(store_doc_set_chunks(s, doc1, &r, NULL), STORE_OK);
    int64_t toks[] = { 12, 9 };
    assert_int_equal(store_chunks_set_tokens(s, doc1, "m1", toks, 2), STORE_OK);
    store_cache_t cache = { STORE_CACHE_CACHED, (char *)"e1", 100, 2048, (char *)"ram", 1.5,
                            1234, NULL };
    assert_int_equal(store_doc_set_cache(s, doc1, &cache), STORE_OK);

    store_session_t ss;
    assert_int_equal(store_session_create(s, "local-1", doc1, "Local", &ss), STORE_OK);
    store_session_cleanup(&ss);
    int64_t id;
    assert_int_equal(store_msg_append(s, "local-1", STORE_ROLE_USER, "hello", false, NULL, &id),
                     STORE_OK);
    assert_int_equal(store_msg_append(s, "local-1", STORE_ROLE_ASSISTANT, "", true,
                                      "{\"a\":1}", &id), STORE_OK);
    assert_int_equal(store_session_create_scoped(s, &bob, "abc", doc2, NULL, &ss), STORE_OK);
    store_session_cleanup(&ss);
    const char *set[] = { doc2, doc1 };
    assert_int_equal(store_session_set_documents_scoped(s, &bob, "abc", set, 2), STORE_OK);
    assert_int_equal(store_msg_append_scoped(s, &bob, "abc", STORE_ROLE_USER, "q", false, NULL,
                                             &id), STORE_OK);
    store_login_t l;
    assert_int_equal(store_login_create(s, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                        u.id, 3600, "10.0.0.1", "test", &l), STORE_OK);
    store_login_cleanup(&l);
    store_token_t t;
    store_token_init(&t);
    assert_int_equal(store_token_create(s, u.id, "script",
                                        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                                        STORE_TOKEN_READ, 0, &t), STORE_OK);
    store_token_cleanup(&t);
    const char *both[] = { doc1, doc2 };
    store_collection_t col = {0};
    assert_int_equal(store_collection_create(s, "manuals", both, 2, &col), STORE_OK);
    store_collection_cleanup(&col);
    store_audit_t e;
    store_audit_init(&e);
    e.action = "user.create";
    e.target = "bob";
    assert_int_equal(store_audit_append(s, &e, 0, NULL), STORE_OK);
    e.action = "login";
    e.detail = "{\"ok\":true}";
    assert_int_equal(store_audit_append(s, &e, 0, NULL), STORE_OK);
    store_user_cleanup(&u);
}

static void same_doc(const store_doc_t *a, const store_doc_t *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->filename, b->filename);
    assert_string_equal(a->stored_name, b->stored_name);
    assert_string_equal(a->sha256, b->sha256);
    assert_int_equal(a->uploaded_at, b->uploaded_at);
    assert_int_equal(a->n_chars, b->n_chars);
    assert_int_equal(a->n_tokens, b->n_tokens);
    assert_int_equal(a->n_pages, b->n_pages);
    assert_int_equal(a->n_chunks, b->n_chunks);
    assert_int_equal(a->shared, b->shared);
    assert_int_equal(a->cache.status, b->cache.status);
    assert_int_equal(a->cache.cached_at, b->cache.cached_at);
    assert_true(a->cache.ms == b->cache.ms);
    assert_true((a->owner_id == NULL) == (b->owner_id == NULL));
    if (a->owner_id)
        assert_string_equal(a->owner_id, b->owner_id);
}

/* Everything read back from dst as it is in src. */
static void compare(store_t *src, store_t *dst, const char *doc1, const char *uid)
{
    store_doc_list_t a, b;
    assert_int_equal(store_doc_list(src, &a), STORE_OK);
    assert_int_equal(store_doc_list(dst, &b), STORE_OK);
    assert_int_equal(a.n, 2);
    assert_int_equal(b.n, a.n);
    for (size_t i = 0; i < a.n; i++)
        same_doc(&a.items[i], &b.items[i]);
    store_doc_list_cleanup(&a);
    store_doc_list_cleanup(&b);

    char *t;
    assert_int_equal(store_doc_text(dst, doc1, &t, NULL), STORE_OK);
    assert_string_equal(t, "caf\xc3\xa9 tags");
    free(t);
    store_chunk_list_t ca, cb;
    assert_int_equal(store_chunk_list(src, doc1, 0, 10, true, &ca, NULL), STORE_OK);
    assert_int_equal(store_chunk_list(dst, doc1, 0, 10, true, &cb, NULL), STORE_OK);
    assert_int_equal(cb.n, 2);
    for (size_t i = 0; i < ca.n; i++) {
        assert_string_equal(ca.items[i].content, cb.items[i].content);
        assert_string_equal(ca.items[i].heading, cb.items[i].heading);
        assert_int_equal(ca.items[i].tokens, cb.items[i].tokens);
        assert_string_equal(cb.items[i].tokens_key, "m1");
        assert_int_equal(ca.items[i].start, cb.items[i].start);
    }
    store_chunk_list_cleanup(&ca);
    store_chunk_list_cleanup(&cb);
    const char *ids[] = { doc1 };
    assert_int_equal(store_chunk_search(dst, ids, 1, "\"lighthouse\"", 10, &cb), STORE_OK);
    assert_int_equal(cb.n, 1);
    assert_int_equal(cb.items[0].seq, 1);
    store_chunk_list_cleanup(&cb);
    assert_int_equal(store_doc_search(dst, "cafe", 10, &a), STORE_OK);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.items[0].id, doc1);
    store_doc_list_cleanup(&a);

    store_scope_t bob = { uid, false };
    const store_scope_t *scopes[] = { NULL, &bob };
    for (size_t k = 0; k < 2; k++) {
        store_session_list_t sa, sb;
        assert_int_equal(store_session_list_scoped(src, scopes[k], 0, &sa), STORE_OK);
        assert_int_equal(store_session_list_scoped(dst, scopes[k], 0, &sb), STORE_OK);
        assert_int_equal(sa.n, 1);
        assert_int_equal(sb.n, sa.n);
        assert_string_equal(sa.items[0].id, sb.items[0].id);
        assert_int_equal(sa.items[0].created_at, sb.items[0].created_at);
        assert_int_equal(sa.items[0].last_active, sb.items[0].last_active);
        assert_int_equal(sa.items[0].message_count, sb.items[0].message_count);
        store_msg_list_t ma, mb;
        assert_int_equal(store_msg_list_scoped(src, scopes[k], sa.items[0].id, 0, &ma), STORE_OK);
        assert_int_equal(store_msg_list_scoped(dst, scopes[k], sa.items[0].id, 0, &mb), STORE_OK);
        assert_int_equal(mb.n, ma.n);
        for (size_t i = 0; i < ma.n; i++) {
            assert_string_equal(ma.items[i].content, mb.items[i].content);
            assert_int_equal(ma.items[i].role, mb.items[i].role);
            assert_int_equal(ma.items[i].incomplete, mb.items[i].incomplete);
            assert_int_equal(ma.items[i].created_at, mb.items[i].created_at);
            assert_true((ma.items[i].meta == NULL) == (mb.items[i].meta == NULL));
        }
        store_msg_list_cleanup(&ma);
        store_msg_list_cleanup(&mb);
        store_session_list_cleanup(&sa);
        store_session_list_cleanup(&sb);
    }
    store_id_list_t set;
    assert_int_equal(store_session_documents_scoped(dst, &bob, "abc", &set), STORE_OK);
    assert_int_equal(set.n, 2);
    assert_string_equal(set.ids[1], doc1);
    store_id_list_cleanup(&set);

    store_user_list_t ua, ub;
    assert_int_equal(store_user_list(src, &ua), STORE_OK);
    assert_int_equal(store_user_list(dst, &ub), STORE_OK);
    assert_int_equal(ub.n, 3);
    for (size_t i = 0; i < ua.n; i++) {
        assert_string_equal(ua.items[i].id, ub.items[i].id);
        assert_string_equal(ua.items[i].name, ub.items[i].name);
        assert_int_equal(ua.items[i].role, ub.items[i].role);
        assert_int_equal(ua.items[i].disabled, ub.items[i].disabled);
        assert_int_equal(ua.items[i].created_at, ub.items[i].created_at);
        assert_int_equal(ua.items[i].updated_at, ub.items[i].updated_at);
    }
    store_user_list_cleanup(&ua);
    store_user_list_cleanup(&ub);
    store_user_t u;
    assert_int_equal(store_user_get_by_name(dst, "BOB", &u), STORE_OK);
    assert_string_equal(u.password_hash, "hash-bob");
    store_user_cleanup(&u);
    store_login_list_t la;
    assert_int_equal(store_login_list(dst, uid, &la), STORE_OK);
    assert_int_equal(la.n, 1);
    assert_string_equal(la.items[0].client_addr, "10.0.0.1");
    store_login_list_cleanup(&la);
    store_audit_list_t au;
    store_audit_filter_t fl = { NULL, NULL, 0, 10 };
    assert_int_equal(store_audit_list(dst, &fl, &au), STORE_OK);
    assert_int_equal(au.n, 2);
    assert_string_equal(au.items[0].action, "login");   /* newest first */
    store_audit_list_cleanup(&au);
    /* the token still signs in: its hash came along */
    store_token_t tok;
    store_user_t tu;
    assert_int_equal(store_token_lookup(dst,
                                        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                                        0, 0, &tok, &tu), STORE_OK);
    assert_string_equal(tok.name, "script");
    assert_int_equal(tok.scope, STORE_TOKEN_READ);
    assert_string_equal(tu.id, uid);
    store_token_cleanup(&tok);
    store_user_cleanup(&tu);
    /* the collection, its id and documents in order */
    store_id_list_t cids = {0};
    assert_int_equal(store_collection_ids(src, &cids), STORE_OK);
    assert_int_equal(cids.n, 1);
    store_collection_t cola = {0}, colb = {0};
    assert_int_equal(store_collection_get(src, cids.ids[0], &cola), STORE_OK);
    assert_int_equal(store_collection_get(dst, cids.ids[0], &colb), STORE_OK);
    assert_string_equal(colb.name, "manuals");
    assert_int_equal(colb.created_at, cola.created_at);
    assert_int_equal(colb.docs.n, 2);
    assert_string_equal(colb.docs.ids[0], cola.docs.ids[0]);
    assert_string_equal(colb.docs.ids[1], cola.docs.ids[1]);
    store_collection_cleanup(&cola);
    store_collection_cleanup(&colb);
    store_id_list_cleanup(&cids);
}

/* Copy a filled SQLite store of a temporary directory into `to` with the
 * command, compare, and copy again (refused). */
static void copy_to(const char *dir, const char *to)
{
    char path[256];
    snprintf(path, sizeof path, "%s/kvchat.db", dir);
    store_t *src;
    assert_int_equal(store_open(path, &src), STORE_OK);
    char doc1[STORE_ID_MAX + 1], doc2[STORE_ID_MAX + 1], uid[STORE_ID_MAX + 1];
    fill(src, doc1, doc2, uid);

    char *argv[] = { "db", "copy", "--data", (char *)dir, "--to", (char *)to, NULL };
    assert_int_equal(dbcli_main(6, argv), 0);
    store_t *dst;
    assert_int_equal(store_open(to, &dst), STORE_OK);
    compare(src, dst, doc1, uid);
    store_close(dst);
    assert_int_equal(dbcli_main(6, argv), 1);   /* not empty any more */
    store_close(src);
}

static void test_copy_sqlite(void **state)
{
    (void)state;
    char dir[64] = "/tmp/kvchat-dbcli-XXXXXX", to[128];
    assert_non_null(mkdtemp(dir));
    snprintf(to, sizeof to, "sqlite:%s/copy.db", dir);
    copy_to(dir, to);
    assert_int_equal(nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
}

static void test_copy_postgresql(void **state)
{
    (void)state;
    const char *base = getenv("KVCHAT_TEST_PG");
    if (!base || !base[0])
        skip();
    char dir[64] = "/tmp/kvchat-dbcli-XXXXXX", schema[64], sql[128], to[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(schema, sizeof schema, "kvchat_copy_%d", (int)getpid());
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", schema);
    assert_int_equal(store_pg_exec(base, sql), STORE_OK);
    snprintf(to, sizeof to, "%s%soptions=-csearch_path%%3D%s", base,
             strchr(base, '?') ? "&" : "?", schema);
    copy_to(dir, to);
    snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", schema);
    assert_int_equal(store_pg_exec(base, sql), STORE_OK);
    assert_int_equal(nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
}

static void test_usage(void **state)
{
    (void)state;
    char *none[] = { "db", NULL };
    assert_int_equal(dbcli_main(1, none), 2);
    char *no_to[] = { "db", "copy", "--data", "/tmp", NULL };
    assert_int_equal(dbcli_main(4, no_to), 2);
    char *both[] = { "db", "copy", "--data", "/tmp", "--from", "sqlite:/x", "--to", "y", NULL };
    assert_int_equal(dbcli_main(8, both), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_copy_sqlite),
        cmocka_unit_test(test_copy_postgresql),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
