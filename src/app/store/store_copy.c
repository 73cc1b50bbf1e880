/* store_copy.c — copy one store into another, empty one (see store_copy.h).
 *
 * The source is read through store.h in local mode and in each user's
 * scope; the destination is written through its backend's table with the
 * source's ids and times (store.c's public functions would make new ones).
 * Order matters: users first (documents and sessions name them), then
 * documents (sessions name them), sessions with their messages, logins
 * (while every user is still enabled: a login is only made for an enabled
 * user), API tokens (the same), the users' final disabled flags and
 * change times, the audit log; collections after the documents.
 */
#include "app/store/store_copy.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* Chunks are read back a page at a time. */
#define COPY_PAGE 1000

/* ---- Documents ------------------------------------------------------------ */

/* A reader for store_doc_set_chunks() over the source's chunks of one
 * document, a page at a time, with index texts made by the caller's
 * function; it keeps each chunk's token count and key for afterwards. */
typedef struct {
    store_t *src;
    const char *id;
    store_copy_index_fn index;
    void *ud;
    store_chunk_list_t page;
    size_t at;
    int64_t next_seq, total;
    char *ix;
    int64_t *tokens;    /* per chunk, -1 unknown */
    char *key;          /* the first chunk's tokens key */
    bool one_key;       /* every known count has that key */
} chunk_feed_t;

static int feed_next(void *ud, const store_chunk_t **chunk, const char **index_text)
{
    chunk_feed_t *f = ud;
    *chunk = NULL;
    if (f->at == f->page.n) {
        store_chunk_list_cleanup(&f->page);
        f->at = 0;
        if (f->next_seq >= f->total)
            return STORE_OK;
        int rc = store_chunk_list(f->src, f->id, f->next_seq, COPY_PAGE, true, &f->page, NULL);
        if (rc != STORE_OK)
            return rc;
        if (f->page.n == 0)
            return STORE_OK;
    }
    const store_chunk_t *k = &f->page.items[f->at++];
    f->next_seq = k->seq + 1;
    free(f->ix);
    f->ix = NULL;
    int rc = f->index(f->ud, k->content, strlen(k->content), &f->ix);
    if (rc != STORE_OK)
        return rc;
    if (k->seq >= 0 && k->seq < f->total) {
        f->tokens[k->seq] = k->tokens;
        if (k->tokens >= 0) {
            if (!f->key && k->tokens_key && !(f->key = strdup(k->tokens_key)))
                return STORE_ENOMEM;
            if (!k->tokens_key || !f->key || strcmp(k->tokens_key, f->key) != 0)
                f->one_key = false;
        }
    }
    *chunk = k;
    *index_text = f->ix ? f->ix : "";
    return STORE_OK;
}

/* The chunks of document `id` with their token counts. Counts are kept
 * for the leading chunks that have one, under one key (how kvchat writes
 * them: one model's counts for the whole document). */
static int copy_chunks(store_t *src, store_t *dst, const char *id, int64_t n_chunks,
                       store_copy_index_fn index, void *ud, int64_t *n_out)
{
    *n_out = 0;
    if (n_chunks <= 0)
        return STORE_OK;
    chunk_feed_t f = { src, id, index, ud, {0}, 0, 0, n_chunks, NULL, NULL, NULL, true };
    f.tokens = malloc((size_t)n_chunks * sizeof *f.tokens);
    if (!f.tokens)
        return STORE_ENOMEM;
    for (int64_t i = 0; i < n_chunks; i++)
        f.tokens[i] = -1;
    store_chunk_reader_t r = { feed_next, &f };
    int rc = store_doc_set_chunks(dst, id, &r, n_out);
    size_t known = 0;
    while ((int64_t)known < n_chunks && f.tokens[known] >= 0)
        known++;
    if (rc == STORE_OK && known > 0 && f.key) {
        if (!f.one_key || (int64_t)known < n_chunks)
            log_warn("store: copy: document %s: token counts of %zu of %lld chunks copied",
                     id, known, (long long)n_chunks);
        rc = store_chunks_set_tokens(dst, id, f.key, f.tokens, known);
    }
    store_chunk_list_cleanup(&f.page);
    free(f.ix);
    free(f.tokens);
    free(f.key);
    return rc;
}

static int copy_document(store_t *src, store_t *dst, const store_doc_t *d,
                         store_copy_index_fn index, void *ud, store_copy_counts_t *n)
{
    char *text = NULL;
    size_t len = 0;
    int rc = store_doc_text(src, d->id, &text, &len);
    if (rc != STORE_OK)
        return rc;
    store_doc_t in;
    store_doc_init(&in);
    in.id = d->id;
    in.filename = d->filename;
    in.stored_name = d->stored_name;
    in.content_type = d->content_type;
    in.file_size = d->file_size;
    in.sha256 = d->sha256;
    in.uploaded_at = d->uploaded_at;
    in.n_tokens = d->n_tokens;
    in.shared = d->shared;
    store_scope_t scope = { d->owner_id, false };
    store_doc_t out;
    bool existed = false;
    rc = store_doc_insert_scoped(dst, d->owner_id ? &scope : NULL, &in, text, len, &out,
                                 &existed);
    free(text);
    if (rc == STORE_OK && existed)
        rc = STORE_ECONFLICT;
    store_doc_cleanup(&out);
    if (rc == STORE_OK && d->cache.status != STORE_CACHE_NONE)
        rc = store_doc_set_cache(dst, d->id, &d->cache);
    if (rc == STORE_OK && d->ocr_pages)
        rc = store_doc_set_ocr(dst, d->id, d->ocr_pages, d->ocr_confidence);
    store_mark_list_t marks = {0};
    if (rc == STORE_OK)
        rc = store_doc_marks(src, d->id, &marks);
    if (rc == STORE_OK && marks.n)
        rc = store_doc_set_marks(dst, d->id, marks.items, marks.n);
    store_mark_list_cleanup(&marks);
    int64_t chunks = 0;
    if (rc == STORE_OK)
        rc = copy_chunks(src, dst, d->id, d->n_chunks, index, ud, &chunks);
    if (rc == STORE_OK) {
        n->documents++;
        n->chunks += chunks;
    }
    return rc;
}

/* ---- Sessions --------------------------------------------------------------- */

static int copy_session(store_t *src, store_t *dst, const store_backend_ops_t *ops,
                        store_backend_t *b, const store_scope_t *scope,
                        const store_session_t *ss, store_copy_counts_t *n)
{
    store_session_t out;
    store_session_init(&out);
    int rc = ops->session_create(b, scope, ss->id, ss->document_id, ss->title, ss->created_at,
                                 &out);
    store_session_cleanup(&out);
    store_id_list_t docs = {0};
    if (rc == STORE_OK)
        rc = store_session_documents_scoped(src, scope, ss->id, &docs);
    if (rc == STORE_OK && docs.n > 1)
        rc = store_session_set_documents_scoped(dst, scope, ss->id,
                                                (const char *const *)docs.ids, docs.n);
    store_id_list_cleanup(&docs);
    store_msg_list_t msgs = {0};
    if (rc == STORE_OK)
        rc = store_msg_list_scoped(src, scope, ss->id, 0, &msgs);
    for (size_t i = 0; rc == STORE_OK && i < msgs.n; i++) {
        const store_msg_t *m = &msgs.items[i];
        int64_t id;
        rc = ops->msg_append(b, scope, ss->id, m->role, m->content, m->incomplete, m->meta,
                             m->created_at, &id);
        if (rc == STORE_OK)
            n->messages++;
    }
    store_msg_list_cleanup(&msgs);
    if (rc == STORE_OK)
        rc = ops->session_touch(b, scope, ss->id, ss->last_active);
    if (rc == STORE_OK)
        n->sessions++;
    return rc;
}

/* The sessions of one owner (scope NULL: nobody's), oldest activity first. */
static int copy_sessions(store_t *src, store_t *dst, const store_backend_ops_t *ops,
                         store_backend_t *b, const store_scope_t *scope,
                         store_copy_counts_t *n)
{
    store_session_list_t l = {0};
    int rc = store_session_list_scoped(src, scope, 0, &l);
    for (size_t i = l.n; rc == STORE_OK && i-- > 0;)
        rc = copy_session(src, dst, ops, b, scope, &l.items[i], n);
    store_session_list_cleanup(&l);
    return rc;
}

/* ---- Accounts ---------------------------------------------------------------- */

static int copy_logins(store_t *src, const store_backend_ops_t *ops, store_backend_t *b,
                       const char *user_id, store_copy_counts_t *n)
{
    store_login_list_t l = {0};
    int rc = store_login_list(src, user_id, &l);
    for (size_t i = 0; rc == STORE_OK && i < l.n; i++) {
        const store_login_t *x = &l.items[i];
        store_login_t a, c;
        store_user_t u;
        store_login_init(&a);
        store_login_init(&c);
        store_user_init(&u);
        rc = ops->login_create(b, x->id, user_id, x->idle_ms, x->client_addr, x->user_agent,
                               x->created_at, &a);
        /* its last use, as a lookup at that time leaves it */
        if (rc == STORE_OK && x->last_seen_at > x->created_at) {
            rc = ops->login_lookup(b, x->id, x->last_seen_at, 0, &c, &u);
            if (rc == STORE_ENOTFOUND)
                rc = STORE_OK;
        }
        if (rc == STORE_OK)
            n->logins++;
        store_login_cleanup(&a);
        store_login_cleanup(&c);
        store_user_cleanup(&u);
    }
    store_login_list_cleanup(&l);
    return rc;
}

static int copy_audit(store_t *src, const store_backend_ops_t *ops, store_backend_t *b,
                      store_copy_counts_t *n)
{
    store_audit_list_t all = {0};
    int rc = STORE_OK;
    for (size_t offset = 0; rc == STORE_OK;) {
        store_audit_filter_t f = { NULL, NULL, offset, 1000 };
        store_audit_list_t page = {0};
        rc = store_audit_list(src, &f, &page);
        for (size_t i = 0; rc == STORE_OK && i < page.n; i++)
            rc = store__audit_list_push(&all, &page.items[i]);
        size_t got = page.n;
        store_audit_list_cleanup(&page);
        if (got < 1000)
            break;
        offset += got;
    }
    for (size_t i = all.n; rc == STORE_OK && i-- > 0;) {   /* oldest first */
        int64_t id;
        rc = ops->audit_append(b, &all.items[i], 0, &id);
        if (rc == STORE_OK)
            n->audit++;
    }
    store_audit_list_cleanup(&all);
    return rc;
}

/* STORE_OK when dst holds no records, else STORE_ECONFLICT. */
static int check_empty(store_t *dst)
{
    int64_t users = 0, admins = 0;
    store_doc_list_t docs = {0};
    store_session_list_t ses = {0};
    store_audit_list_t audit = {0};
    store_audit_filter_t f = { NULL, NULL, 0, 1 };
    int rc = store_user_count(dst, &users, &admins);
    if (rc == STORE_OK)
        rc = store_doc_list(dst, &docs);
    if (rc == STORE_OK)
        rc = store_session_list(dst, 1, &ses);
    if (rc == STORE_OK)
        rc = store_audit_list(dst, &f, &audit);
    if (rc == STORE_OK && (users || docs.n || ses.n || audit.n)) {
        log_error("store: copy: the destination is not empty (%lld users, %zu documents)",
                  (long long)users, docs.n);
        rc = STORE_ECONFLICT;
    }
    store_doc_list_cleanup(&docs);
    store_session_list_cleanup(&ses);
    store_audit_list_cleanup(&audit);
    return rc;
}

/* Collections, with their ids, names, times and documents in order. */
static int copy_collections(store_t *src, const store_backend_ops_t *ops, store_backend_t *b,
                            store_copy_counts_t *n)
{
    store_id_list_t ids = {0};
    int rc = store_collection_ids(src, &ids);
    for (size_t i = 0; rc == STORE_OK && i < ids.n; i++) {
        store_collection_t c = {0}, made = {0};
        rc = store_collection_get(src, ids.ids[i], &c);
        if (rc == STORE_OK && c.docs.n)   /* one whose documents all went: gone */
            rc = ops->collection_create(b, c.id, c.name, c.created_at,
                                        (const char *const *)c.docs.ids, c.docs.n, &made);
        if (rc == STORE_OK && c.docs.n)
            n->collections++;
        store_collection_cleanup(&c);
        store_collection_cleanup(&made);
    }
    store_id_list_cleanup(&ids);
    return rc;
}

/* API tokens with their hashes, names, scopes, times and expiries. */
static int copy_tokens(store_t *src, const store_backend_ops_t *ops, store_backend_t *b,
                       store_copy_counts_t *n)
{
    store_token_list_t all = {0};
    int rc = store_token_list_all(src, &all);
    for (size_t i = 0; rc == STORE_OK && i < all.n; i++) {
        const store_token_t *t = &all.items[i];
        store_token_t made;
        store_token_init(&made);
        rc = ops->token_create(b, t->id, t->user_id, t->name, t->hash, t->scope, t->expires_at,
                               t->created_at, &made);
        store_token_cleanup(&made);
        if (rc == STORE_OK)
            n->tokens++;
    }
    store_token_list_cleanup(&all);
    return rc;
}

int store_copy(store_t *src, store_t *dst, store_copy_index_fn index, void *ud,
               store_copy_counts_t *counts)
{
    store_copy_counts_t n = {0};
    if (counts)
        *counts = n;
    if (!src || !dst || !index || src == dst)
        return STORE_EINVAL;
    int rc = check_empty(dst);
    if (rc != STORE_OK)
        return rc;
    store_backend_t *b;
    const store_backend_ops_t *ops = store__backend(dst, &b);

    store_user_list_t users = {0};
    rc = store_user_list(src, &users);
    /* the users with their hashes (the list has none) */
    for (size_t i = 0; rc == STORE_OK && i < users.n; i++) {
        store_user_t full, out;
        store_user_init(&out);
        rc = store_user_get(src, users.items[i].id, &full);
        if (rc == STORE_OK) {
            rc = ops->user_create(b, full.id, full.name, full.password_hash, full.role,
                                  full.created_at, &out);
            free(users.items[i].password_hash);
            users.items[i].password_hash = full.password_hash;
            full.password_hash = NULL;
            store_user_cleanup(&full);
        }
        store_user_cleanup(&out);
        if (rc == STORE_OK)
            n.users++;
    }

    store_doc_list_t docs = {0};
    if (rc == STORE_OK)
        rc = store_doc_list(src, &docs);
    for (size_t i = docs.n; rc == STORE_OK && i-- > 0;)   /* oldest first */
        rc = copy_document(src, dst, &docs.items[i], index, ud, &n);
    store_doc_list_cleanup(&docs);
    if (rc == STORE_OK)
        rc = copy_collections(src, ops, b, &n);

    if (rc == STORE_OK)
        rc = copy_sessions(src, dst, ops, b, NULL, &n);
    for (size_t i = 0; rc == STORE_OK && i < users.n; i++) {
        const store_user_t *u = &users.items[i];
        store_scope_t scope = { u->id, u->role == STORE_USER_ROLE_ADMIN };
        rc = copy_sessions(src, dst, ops, b, &scope, &n);
        if (rc == STORE_OK)
            rc = copy_logins(src, ops, b, u->id, &n);
    }
    /* API tokens, with their hashes (they keep working), while every user
     * is still enabled */
    if (rc == STORE_OK)
        rc = copy_tokens(src, ops, b, &n);
    /* the final flags and change times */
    for (size_t i = 0; rc == STORE_OK && i < users.n; i++) {
        const store_user_t *u = &users.items[i];
        rc = u->disabled ? ops->user_set_disabled(b, u->id, true, u->updated_at)
                         : ops->user_set_password(b, u->id, u->password_hash, u->updated_at);
    }
    store_user_list_cleanup(&users);

    if (rc == STORE_OK)
        rc = copy_audit(src, ops, b, &n);
    if (counts)
        *counts = n;
    return rc;
}
