/* documents.c — see documents.h.
 *
 * Upload path: the multipart body streams through the upload callbacks into
 * a temporary file in data/uploads (never held in memory), hashed on the way
 * (SHA-256, OpenSSL's EVP, included here only). The file name is checked at
 * the start of its part (UTF-8, or 400) and the size limit is counted here
 * so the 413 says what the limit is. Then the upload waits for a slot of
 * the extraction queue (extractq.h: extract.concurrency at once, first come
 * first served) and kvchat-extract runs on the file in its sandbox (type by
 * content, CPU/memory/time limits). Its text streams into an unlinked
 * temporary file, checked on the way; the store takes it from there in
 * pieces, and the engine counts its tokens in pieces (after the slot is
 * given back), so an upload's memory does not grow with its size. The file
 * is renamed to a generated name. Identical content (same SHA-256) is
 * stored once. With "Accept: text/event-stream" the upload runs on a worker
 * thread and reports its place in line and its stage as it goes.
 *
 * Accounts (auth.mode = accounts): every handler acts in the caller's
 * store scope (auth_scope; NULL in local mode, which is everything, as
 * before accounts). A document the caller may not see answers exactly as
 * an unknown id does (404 "Document not found"), never 403, so an id
 * tells nothing about anyone else's documents. An upload is the caller's
 * document: identical content is one document per owner, and the same
 * bytes uploaded by two owners are two documents on one file (the store
 * says whose file; this module removes the file it wrote when it is not
 * the one kept, and a deleted document's file only when no document uses
 * it any more). limits.storage_mb bounds the bytes each user's documents
 * take (413 before extraction). The engine's cache entries of a document
 * are made under its cache salt (auth_cache_salt: its owner's, or none
 * when shared), so another user's identical text never finds them.
 *
 * Caching: the document's system message is rendered exactly as chat
 * renders it and sent to the engine's /v1/cache/prefill. With
 * "Accept: text/event-stream" the progress is streamed; the prefill then
 * runs on a worker thread that writes the events (a stream's data is sent
 * by the connection's own thread, which a blocked handler would hold).
 */
#include "app/docs/documents.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/auth/auth.h"
#include "app/chat/route.h"
#include "app/docs/extractq.h"
#include "app/docs/partcache.h"
#include "app/docs/parts.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/utf8.h"

const char documents_allowed_types[] =
    ".txt, .md, .pdf, .docx, .odt, .html, .htm, .epub, .pptx, .odp, .xlsx, .ods, .csv, .tsv, "
    ".png, .jpg, .jpeg, .tif, .tiff, .webp";

static const char *const allowed_ext[] = { "txt",  "md",   "markdown", "pdf", "docx", "odt",
                                           "html", "htm",  "epub",     "pptx", "odp", "xlsx",
                                           "ods",  "csv",  "tsv",      "png", "jpg",  "jpeg",
                                           "tif",  "tiff", "webp",     NULL };

/* ---- start-up ---- */

/* Names of the temporary files an upload writes into data/uploads while it
 * runs; renamed or removed when it ends. */
#define UPLOAD_TMP_PREFIX ".upload-"
#define STALE_UPLOAD_S 3600       /* a temporary upload file untouched this long is abandoned */
#define SEARCH_QUERY_MAX 2000   /* bytes of a ?q= search */

int documents_remove_stale(const app_t *a)
{
    DIR *d = opendir(a->uploads_dir);
    if (!d) {
        log_warn("uploads: cannot read %s: %s", a->uploads_dir, strerror(errno));
        return 0;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, UPLOAD_TMP_PREFIX, strlen(UPLOAD_TMP_PREFIX)) != 0)
            continue;
        /* another replica's upload, on a shared uploads directory, writes
         * its file at least every minute: only abandoned ones go */
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            time(NULL) - st.st_mtime < STALE_UPLOAD_S)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            n++;
        else if (errno != ENOENT)
            log_warn("uploads: cannot remove %s/%s: %s", a->uploads_dir, e->d_name,
                     strerror(errno));
    }
    closedir(d);
    if (n)
        log_info("uploads: removed %d temporary file(s) left by an earlier run", n);
    return n;
}

void documents_sha256_hex(const void *data, size_t n, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    hex[0] = '\0';
    if (!EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL))
        return;
    for (unsigned i = 0; i < 32 && i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* ---- rendering ---- */

char *documents_system_message(const app_t *a, const char *filename, const char *text)
{
    buf_t b;
    buf_init(&b, (size_t)STORE_TEXT_MAX + 65536);
    const char *t = a->cfg.system_template;
    while (*t) {
        if (strncmp(t, "{document}", 10) == 0) {
            if (buf_puts(&b, text) != BUF_OK)
                goto fail;
            t += 10;
        } else if (strncmp(t, "{filename}", 10) == 0) {
            if (buf_puts(&b, filename) != BUF_OK)
                goto fail;
            t += 10;
        } else {
            if (buf_append(&b, t, 1) != BUF_OK)
                goto fail;
            t++;
        }
    }
    return buf_steal(&b, NULL);
fail:
    buf_cleanup(&b);
    return NULL;
}

/* {"pages": [1, 2], "confidence": 91} for a document whose text was
 * (partly) recognised from images, null otherwise. */
static json_t *ocr_json(const store_doc_t *d)
{
    if (!d->ocr_pages || d->ocr_confidence < 0)
        return json_null();
    json_t *pages = json_array();
    for (const char *p = d->ocr_pages; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p)
            break;   /* the store checks the list; never here */
        json_array_append_new(pages, json_integer(v));
        p = *end == ',' ? end + 1 : end;
    }
    return json_pack("{s:o, s:i}", "pages", pages, "confidence", d->ocr_confidence);
}

json_t *documents_json(const store_doc_t *d)
{
    char up[STORE_TIME_BUFSZ], cached[STORE_TIME_BUFSZ] = "";
    store_format_time(d->uploaded_at, up);
    if (d->cache.cached_at > 0)
        store_format_time(d->cache.cached_at, cached);
    json_t *cache = json_pack("{s:s, s:I, s:I, s:s?, s:s?, s:f, s:s?, s:s?}", "status",
                              store_cache_status_name(d->cache.status), "tokens",
                              (json_int_t)d->cache.tokens, "bytes", (json_int_t)d->cache.bytes,
                              "tier", d->cache.tier, "entry_id", d->cache.entry_id, "prefill_ms",
                              d->cache.ms, "cached_at", cached[0] ? cached : NULL, "error",
                              d->cache.error);
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:s, s:I, s:o, s:s, s:o}", "doc_id", d->id,
                          "filename", d->filename, "file_size", (json_int_t)d->file_size,
                          "uploaded_at", up, "content_type", d->content_type, "n_chars",
                          (json_int_t)d->n_chars, "n_tokens",
                          d->n_tokens >= 0 ? json_integer(d->n_tokens) : json_null(),
                          "cache_status", store_cache_status_name(d->cache.status), "cache", cache);
    json_object_set_new(j, "total_pages", json_integer(d->n_pages));
    json_object_set_new(j, "total_chunks", json_integer(d->n_chunks));
    json_object_set_new(j, "owner", d->owner_id ? json_string(d->owner_id) : json_null());
    json_object_set_new(j, "shared", json_boolean(d->shared));
    json_object_set_new(j, "ocr", ocr_json(d));
    return j;
}

/* ---- the caller's scope, kept past the request ---- */

/* The caller's store scope: auth_scope, or NULL (everything, as in local
 * mode) for a caller who is nobody in particular (server.api_key in
 * accounts mode: an admin whose documents and sessions have no owner). */
static const store_scope_t *req_scope(httpd_req_t *req)
{
    const store_scope_t *s = auth_scope(req);
    return s && s->user_id ? s : NULL;
}

/* A copy of a request's store scope (auth_scope), for work that outlives
 * the handler (a streamed upload's worker thread). */
typedef struct {
    bool scoped;                        /* false: local mode (scope NULL) */
    bool has_user;                      /* user_id is set */
    char user_id[STORE_ID_MAX + 1];
    bool admin;
} owner_t;

static void owner_from(owner_t *o, const store_scope_t *scope)
{
    memset(o, 0, sizeof *o);
    if (!scope)
        return;
    o->scoped = true;
    o->admin = scope->admin;
    if (scope->user_id) {
        o->has_user = true;
        snprintf(o->user_id, sizeof o->user_id, "%s", scope->user_id);
    }
}

/* The scope o holds, built in *buf (which must outlive its use), or NULL
 * for local mode. */
static const store_scope_t *owner_scope(const owner_t *o, store_scope_t *buf)
{
    if (!o->scoped)
        return NULL;
    buf->user_id = o->has_user ? o->user_id : NULL;
    buf->admin = o->admin;
    return buf;
}

/* ---- upload ---- */

typedef struct {
    app_t *a;
    int fd;
    char tmp_path[1200];
    EVP_MD_CTX *sha;
    size_t bytes, limit;
    bool got_file, in_file;
    char filename[STORE_NAME_MAX];
    char ext[16];
    owner_t owner;      /* who uploads: the document will be theirs */
    char ticket[AUTH_TICKET_MAX];   /* a single upload's place in limits.uploads_at_once */
} upload_t;

static void upload_free(void *ctx)
{
    upload_t *u = ctx;
    if (!u)
        return;
    if (u->fd >= 0)
        close(u->fd);
    if (u->tmp_path[0])
        unlink(u->tmp_path);
    EVP_MD_CTX_free(u->sha);
    auth_busy_end(u->a, u->ticket);
    free(u);
}

/* The upload no longer counts in limits.uploads_at_once (u may be NULL):
 * called before its answer, since a client that has it may upload again
 * at once, before the request is freed. */
static void upload_over(upload_t *u)
{
    if (u)
        auth_busy_end(u->a, u->ticket);
}

static bool ext_allowed(const char *ext)
{
    for (int i = 0; allowed_ext[i]; i++)
        if (strcasecmp(ext, allowed_ext[i]) == 0)
            return true;
    return false;
}

/* The client's file name reduced to its last path component, with control
 * characters dropped (it is only displayed), cut between characters when
 * longer than cap - 1 bytes. Returns false, leaving out unspecified, when
 * the name is not valid UTF-8: the store keeps only UTF-8, and guessing
 * the client's encoding would show a name the user never typed. */
static bool clean_filename(const char *in, char *out, size_t cap)
{
    if (!utf8_valid(in, strlen(in)))
        return false;
    const char *base = in;
    for (const char *p = in; *p; p++)
        if (*p == '/' || *p == '\\')
            base = p + 1;
    size_t n = 0;
    for (const char *p = base; *p && n + 1 < cap; p++)
        if ((unsigned char)*p >= 0x20 && *p != 0x7f)
            out[n++] = *p;
    n = utf8_complete_len(out, n);
    out[n] = '\0';
    if (!n)
        snprintf(out, cap, "document");
    return true;
}

static upload_t *upload_new(app_t *a, httpd_req_t *req)
{
    upload_t *u = calloc(1, sizeof *u);
    if (u) {
        u->a = a;
        u->fd = -1;
        u->limit = (size_t)a->cfg.max_upload_mb << 20;
        owner_from(&u->owner, req_scope(req));
    }
    return u;
}

/* A file part begins: check its name and open its temporary file.
 * Answers the request itself and returns 1 on failure. */
static int upload_open(httpd_req_t *req, upload_t *u, const char *filename);

static int up_begin(httpd_req_t *req, const char *field, const char *filename, const char *ct)
{
    (void)ct;
    upload_t *u = httpd_req_ctx(req);
    app_t *a = httpd_req_user(req);
    if (!u) {
        u = upload_new(a, req);
        if (!u) {
            httpd_reply_error(req, 500, "out of memory");
            return 1;
        }
        httpd_req_set_ctx(req, u, upload_free);
        if (!auth_busy_begin(a, req, AUTH_BUSY_UPLOAD, u->ticket))
            return 1;
    }
    u->in_file = false;
    if (strcmp(field, "file") != 0 || !filename)
        return 0;   /* other fields are kept by httpd for httpd_req_form */
    if (u->got_file) {
        httpd_reply_error(req, 400, "Upload one file per request (field 'file')");
        return 1;
    }
    return upload_open(req, u, filename);
}

static int upload_open(httpd_req_t *req, upload_t *u, const char *filename)
{
    app_t *a = u->a;
    /* Decided here, before any of the body is stored or extracted. */
    if (!clean_filename(filename, u->filename, sizeof u->filename)) {
        httpd_reply_error(req, 400, "The file name is not valid UTF-8: rename the file and "
                                    "upload it again");
        return 1;
    }
    const char *dot = strrchr(u->filename, '.');
    snprintf(u->ext, sizeof u->ext, "%s", dot && dot[1] ? dot + 1 : "");
    if (!ext_allowed(u->ext)) {
        httpd_reply_error(req, 400, "Unsupported file type: .%s. Allowed types: %s",
                          u->ext[0] ? u->ext : "(none)", documents_allowed_types);
        return 1;
    }
    snprintf(u->tmp_path, sizeof u->tmp_path, "%s/" UPLOAD_TMP_PREFIX "XXXXXX", a->uploads_dir);
    u->fd = mkostemp(u->tmp_path, O_CLOEXEC);
    if (u->fd < 0) {
        u->tmp_path[0] = '\0';
        log_error("upload: cannot create a file in %s: %s", a->uploads_dir, strerror(errno));
        httpd_reply_error(req, 507, "The server cannot store the upload (%s)", strerror(errno));
        return 1;
    }
    u->sha = EVP_MD_CTX_new();
    if (!u->sha || EVP_DigestInit_ex(u->sha, EVP_sha256(), NULL) != 1) {
        httpd_reply_error(req, 500, "out of memory");
        return 1;
    }
    u->got_file = u->in_file = true;
    return 0;
}

/* Append a part's bytes to the file being uploaded. Answers the request
 * itself and returns 1 on failure. */
static int upload_write(httpd_req_t *req, upload_t *u, const char *data, size_t len)
{
    if (!u || !u->in_file)
        return 0;
    u->bytes += len;
    if (u->bytes > u->limit) {
        httpd_reply_error(req, 413, "File too large: the limit is %d MB", u->a->cfg.max_upload_mb);
        return 1;
    }
    EVP_DigestUpdate(u->sha, data, len);
    while (len) {
        ssize_t w = write(u->fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            log_error("upload: write failed: %s", strerror(e));
            httpd_reply_error(req, e == ENOSPC ? 507 : 500, "The server cannot store the upload (%s)",
                              strerror(e));
            return 1;
        }
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

static int up_data(httpd_req_t *req, const char *data, size_t len)
{
    return upload_write(req, httpd_req_ctx(req), data, len);
}

static int up_end(httpd_req_t *req)
{
    upload_t *u = httpd_req_ctx(req);
    if (u)
        u->in_file = false;
    return 0;
}

const httpd_upload_t documents_upload_callbacks = { up_begin, up_data, up_end };

/* ---- several files in one request (upload_collection) ---- */

/* Files of one collection upload: each within the upload limit, all of
 * them within COLLECTION_TOTAL_FACTOR times it. */
#define COLLECTION_TOTAL_FACTOR 8

typedef struct {
    app_t *a;
    upload_t *files[STORE_SET_MAX];
    size_t n;
    size_t total;
    char ticket[AUTH_TICKET_MAX];   /* the collection's place in limits.uploads_at_once */
} collection_up_t;

static void collection_free(void *ctx)
{
    collection_up_t *c = ctx;
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        upload_free(c->files[i]);
    auth_busy_end(c->a, c->ticket);
    free(c);
}

static int coll_begin(httpd_req_t *req, const char *field, const char *filename, const char *ct)
{
    (void)ct;
    collection_up_t *c = httpd_req_ctx(req);
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) {
            httpd_reply_error(req, 500, "out of memory");
            return 1;
        }
        c->a = httpd_req_user(req);
        httpd_req_set_ctx(req, c, collection_free);
        if (!auth_busy_begin(c->a, req, AUTH_BUSY_UPLOAD, c->ticket))
            return 1;
    }
    if (c->n)
        c->files[c->n - 1]->in_file = false;
    if ((strcmp(field, "files") != 0 && strcmp(field, "file") != 0) || !filename)
        return 0;   /* "name" and other plain fields: httpd_req_form */
    if (c->n == STORE_SET_MAX) {
        httpd_reply_error(req, 400, "At most %d files in one collection", STORE_SET_MAX);
        return 1;
    }
    upload_t *u = upload_new(httpd_req_user(req), req);
    if (!u) {
        httpd_reply_error(req, 500, "out of memory");
        return 1;
    }
    c->files[c->n++] = u;
    return upload_open(req, u, filename);
}

static int coll_data(httpd_req_t *req, const char *data, size_t len)
{
    collection_up_t *c = httpd_req_ctx(req);
    if (!c || !c->n)
        return 0;
    upload_t *u = c->files[c->n - 1];
    if (u->in_file) {
        c->total += len;
        if (c->total > u->limit * COLLECTION_TOTAL_FACTOR) {
            httpd_reply_error(req, 413, "The files are too large together: the limit is %d MB",
                              u->a->cfg.max_upload_mb * COLLECTION_TOTAL_FACTOR);
            return 1;
        }
    }
    return upload_write(req, u, data, len);
}

static int coll_end(httpd_req_t *req)
{
    collection_up_t *c = httpd_req_ctx(req);
    if (c && c->n)
        c->files[c->n - 1]->in_file = false;
    return 0;
}

const httpd_upload_t documents_collection_callbacks = { coll_begin, coll_data, coll_end };

/* ---- counting tokens in pieces ---- */

/* The engine counts tokens of one JSON string per request (and answers
 * with every token), so a long text is sent in pieces of at most
 * TOKENIZE_PIECE bytes, each ending after a line break that starts a new
 * line of text where there is one: a tokenizer's pre-split (GPT-2 and
 * Qwen style) never joins across that point, so the sum is the count of
 * the whole. Memory stays at one piece and its answer whatever the text's
 * size. */
#define TOKENIZE_PIECE ((size_t)256 << 10)

/* Texts longer than this are not counted at upload (n_tokens stays
 * unknown): far past any model's context, and the engine answers every
 * token (tens of seconds for 50 MB). It is also the most the engine took
 * in one request, so everything counted before still is. Caching counts
 * such a text only until it is known not to fit. */
#define TOKEN_COUNT_MAX ((size_t)32 << 20)

typedef struct {
    llm_provider_t *llm;
    char *buf;          /* TOKENIZE_PIECE bytes */
    size_t len;
    int64_t n;
    int64_t stop_above; /* > 0: stop once n passes it */
    bool failed, over;
} tokcount_t;

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Where to end a piece of buf[0..len) that more text follows. */
static size_t piece_end(const char *buf, size_t len)
{
    for (size_t p = len - 1; p > len / 2; p--)
        if (buf[p - 1] == '\n' && !is_blank(buf[p]))
            return p;
    for (size_t p = len; p > len / 2; p--)
        if (is_blank(buf[p - 1]))
            return p;
    return utf8_complete_len(buf, len);
}

static void tokcount_send(tokcount_t *t, size_t n)
{
    int64_t k = 0;
    char err[256];
    if (!t->failed && n &&
        llm_tokenize_count(t->llm, t->buf, n, &k, err, sizeof err) != LLM_OK) {
        log_debug("documents: token count: %s", err);
        t->failed = true;
    }
    t->n += k;
    if (t->stop_above > 0 && t->n > t->stop_above)
        t->over = true;
    memmove(t->buf, t->buf + n, t->len - n);
    t->len -= n;
}

/* Add text; full pieces are counted at once. */
static int tokcount_feed(void *ud, const char *p, size_t len)
{
    tokcount_t *t = ud;
    while (len && !t->failed && !t->over) {
        size_t k = TOKENIZE_PIECE - t->len < len ? TOKENIZE_PIECE - t->len : len;
        memcpy(t->buf + t->len, p, k);
        t->len += k;
        p += k;
        len -= k;
        if (t->len == TOKENIZE_PIECE)
            tokcount_send(t, piece_end(t->buf, t->len));
    }
    return t->failed || t->over ? 1 : 0;
}

/* The local engine's provider when it is running (with a reference), else
 * NULL. */
static app_provider_t *running_engine(app_t *a)
{
    supervisor_state_t state;
    if (!app_local_running(a, &state))
        return NULL;
    return app_local_acquire(a);
}

/* Record the tokens of document d, counted by llm from its text in the
 * file open on fd (read from its start); they stay unknown when that
 * fails. */
static void set_tokens_from_fd(app_t *a, llm_provider_t *llm, store_doc_t *d, int fd)
{
    tokcount_t t = { .llm = llm, .buf = malloc(TOKENIZE_PIECE) };
    char *block = malloc(TOKENIZE_PIECE);
    if (t.buf && block && lseek(fd, 0, SEEK_SET) == 0) {
        ssize_t k;
        while (!t.failed && (k = read(fd, block, TOKENIZE_PIECE)) != 0) {
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0) {
                t.failed = true;
                break;
            }
            tokcount_feed(&t, block, (size_t)k);
        }
        tokcount_send(&t, t.len);
        if (!t.failed) {
            store_doc_set_tokens(a->store, d->id, t.n);
            d->n_tokens = t.n;
        }
    }
    free(block);
    free(t.buf);
}

/* Tokens of text[0..len) with the engine of p, in pieces. Returns false
 * when they could not be counted. */
static bool count_tokens(llm_provider_t *llm, const char *text, size_t len, int64_t *n)
{
    tokcount_t t = { .llm = llm, .buf = malloc(TOKENIZE_PIECE) };
    if (!t.buf)
        return false;
    tokcount_feed(&t, text, len);
    tokcount_send(&t, t.len);
    free(t.buf);
    *n = t.n;
    return !t.failed;
}

/* Tokens of stored document `id`, read from the store piece by piece,
 * counted only until they pass stop_above (> 0). Returns false when they
 * could not be counted; *over tells that the count stopped early (*n is
 * then past stop_above, not the total). */
static bool count_stored_tokens(app_t *a, llm_provider_t *llm, const char *id,
                                int64_t stop_above, int64_t *n, bool *over)
{
    tokcount_t t = { .llm = llm, .buf = malloc(TOKENIZE_PIECE), .stop_above = stop_above };
    if (!t.buf)
        return false;
    int rc = store_doc_text_foreach(a->store, id, tokcount_feed, &t);
    if (rc == STORE_OK)
        tokcount_send(&t, t.len);
    free(t.buf);
    *n = t.n;
    *over = t.over;
    return (rc == STORE_OK || t.over) && !t.failed;
}

/* A text file read from its start, for store_doc_insert_from(). */
static int fd_read(void *ud, char *buf, size_t cap, size_t *got)
{
    int fd = *(int *)ud;
    ssize_t k;
    do
        k = read(fd, buf, cap);
    while (k < 0 && errno == EINTR);
    if (k < 0)
        return STORE_EIO;
    *got = (size_t)k;
    return STORE_OK;
}

/* ---- ingest: extraction and storing, in a slot of the queue ---- */

/* Where an upload's progress goes while it waits and runs: nowhere for a
 * plain request (whose client may still leave while it waits), as SSE
 * events for a streamed one. */
typedef struct {
    httpd_req_t *req;          /* plain request, or NULL */
    httpd_stream_t *stream;    /* streamed request, or NULL */
    const char *filename;      /* for the log */
    bool logged_wait;
} ingest_watch_t;

/* Why an upload failed: the HTTP status and the {"detail"} text. */
typedef struct {
    int status;
    char detail[1024];
} ingest_error_t;

static int ingest_fail(ingest_error_t *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int ingest_fail(ingest_error_t *err, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->detail, sizeof err->detail, fmt, ap);
    va_end(ap);
    err->status = status;
    return -1;
}

static void send_stage(ingest_watch_t *w, const char *stage)
{
    if (w->stream)
        httpd_stream_sse_json(w->stream,
                              json_pack("{s:s, s:s}", "event", "progress", "stage", stage));
}

static void on_queue_position(void *ud, unsigned position)
{
    ingest_watch_t *w = ud;
    if (!w->logged_wait) {
        w->logged_wait = true;
        log_info("upload '%s' waits for an extraction slot (position %u)", w->filename, position);
    }
    if (w->stream)
        httpd_stream_sse_json(w->stream, json_pack("{s:s, s:s, s:i}", "event", "progress", "stage",
                                                   "queued", "position", (int)position));
}

/* OCR progress of kvchat-extract (runner.h): pages done of total. */
static void on_ocr_progress(void *ud, int done, int total)
{
    ingest_watch_t *w = ud;
    if (done == 0)
        log_info("upload '%s': recognising the text of %d page%s (OCR)", w->filename, total,
                 total == 1 ? "" : "s");
    if (w->stream)
        httpd_stream_sse_json(w->stream, json_pack("{s:s, s:s, s:i, s:i}", "event", "progress",
                                                   "stage", "ocr", "done", done, "total", total));
}

/* Keep which pages were recognised from images (OCR) and how surely:
 * in the store and in *doc. A failure is logged only: the text is there. */
static void keep_ocr(app_t *a, store_doc_t *doc, const extract_result_t *ex)
{
    if (!ex->n_ocr_pages || ex->ocr_confidence < 0)
        return;
    buf_t b;
    buf_init(&b, STORE_OCR_PAGES_MAX);
    for (size_t i = 0; i < ex->n_ocr_pages; i++)
        buf_printf(&b, i ? ",%d" : "%d", ex->ocr_pages[i]);
    char *pages = buf_steal(&b, NULL);
    int rc = pages ? store_doc_set_ocr(a->store, doc->id, pages, ex->ocr_confidence)
                   : STORE_ETOOBIG;
    if (rc != STORE_OK) {
        log_warn("document %s: OCR pages not kept: %s", doc->id, store_strerror(rc));
        free(pages);
        return;
    }
    free(doc->ocr_pages);
    doc->ocr_pages = pages;
    doc->ocr_confidence = ex->ocr_confidence;
}

static bool queue_should_stop(void *ud)
{
    ingest_watch_t *w = ud;
    return w->stream ? httpd_stream_closed(w->stream) : httpd_req_gone(w->req);
}

/* ---- structure, chunks and parts of a new document ---- */

/* Keep the structure kvchat-extract reported and cut the text into chunks
 * (read from text_fd). A failure here leaves the document as it is: it is
 * cut again when first planned. */
static void structure_and_chunks(app_t *a, ingest_watch_t *w, store_doc_t *doc,
                                 const extract_result_t *ex, int text_fd)
{
    store_mark_t *marks = ex->n_marks ? calloc(ex->n_marks, sizeof *marks) : NULL;
    size_t n = 0;
    for (size_t i = 0; marks && i < ex->n_marks; i++) {
        const extract_mark_t *m = &ex->marks[i];
        if (m->offset > ex->len)
            continue;   /* the runner checks; the store would refuse it */
        marks[n++] = (store_mark_t){ m->kind == EXTRACT_MARK_PAGE ? STORE_MARK_PAGE
                                                                  : STORE_MARK_HEADING,
                                     (int64_t)m->offset, m->number, m->label };
    }
    if (n) {
        int rc = store_doc_set_marks(a->store, doc->id, marks, n);
        if (rc != STORE_OK) {
            log_warn("document %s: structure not kept: %s", doc->id, store_strerror(rc));
            n = 0;
        }
    }
    send_stage(w, "indexing");
    char err[256];
    int64_t chunks = 0;
    if (parts_chunk(a, doc->id, text_fd, marks, n, &chunks, err, sizeof err) != PARTS_OK)
        log_warn("document %s: not cut into chunks: %s", doc->id, err);
    else
        doc->n_chunks = chunks;
    doc->n_pages = 0;
    for (size_t i = 0; i < n; i++)
        if (marks[i].kind == STORE_MARK_PAGE && marks[i].number > doc->n_pages)
            doc->n_pages = marks[i].number;
    free(marks);
}

/* Plan the document's parts for the running engine now, so that the first
 * question does not wait for it. Failures are logged only. */
static void plan_for(app_t *a, app_provider_t *engine, const store_doc_t *doc)
{
    parts_model_t m;
    store_part_list_t plan = { 0 };
    char err[512];
    if (parts_model_of(a, engine, &m, err, sizeof err) != PARTS_OK ||
        parts_plan(a, app_llm(engine), &m, doc, &plan, err, sizeof err) != PARTS_OK)
        log_warn("document %s: parts not planned: %s", doc->id, err);
    store_part_list_cleanup(&plan);
}

/* The answer to a failed extraction. */
static int extract_failed(app_t *a, const upload_t *u, int code, const char *message,
                          ingest_error_t *err)
{
    int status = extract_error_is_unsupported(code) ? 400
                 : extract_error_is_internal(code)   ? 500
                                                     : 422;
    pthread_mutex_lock(&a->lock);
    a->stats.upload_rejected++;
    pthread_mutex_unlock(&a->lock);
    log_info("upload '%s' rejected: %s", u->filename, message);
    if (status == 400) {
        /* the extractor's sentence ends with its own period */
        char why[EXTRACT_MESSAGE_MAX];
        snprintf(why, sizeof why, "%s",
                 message[0] ? message : "the content is not a supported document");
        size_t wl = strlen(why);
        while (wl && (why[wl - 1] == '.' || why[wl - 1] == ' '))
            why[--wl] = '\0';
        return ingest_fail(err, 400, "Unsupported file type: %s. Allowed types: %s", why,
                           documents_allowed_types);
    }
    return ingest_fail(err, status, "%s", message[0] ? message : extract_strerror(code));
}

/* MB with one decimal, for the quota's message. */
static double mb(int64_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

/* limits.storage_mb: a new document of `bytes` must not take its owner
 * (a user in accounts mode) past it. Returns 0, or -1 with the 413 (or a
 * 500 when the usage cannot be read) in *err. Two uploads checked at the
 * same moment may together go past the limit by the smaller of them. */
static int check_quota(app_t *a, const store_scope_t *scope, int64_t bytes, ingest_error_t *err)
{
    if (!scope || !scope->user_id || a->cfg.storage_mb <= 0)
        return 0;
    int64_t used = 0, limit = (int64_t)a->cfg.storage_mb << 20;
    int rc = store_user_usage(a->store, scope->user_id, &used, NULL);
    if (rc != STORE_OK && rc != STORE_ENOTFOUND)
        return ingest_fail(err, 500, "Cannot read your storage use: %s", store_strerror(rc));
    if (used + bytes <= limit)
        return 0;
    return ingest_fail(err, 413,
                       "Storage quota exceeded: this file is %.1f MB, and your documents "
                       "already take %.1f MB of your %d MB (%lld + %lld > %lld bytes); "
                       "delete documents to make room",
                       mb(bytes), mb(used), a->cfg.storage_mb, (long long)used,
                       (long long)bytes, (long long)limit);
}

/* Extract the upload's text and store the document as the uploader's,
 * holding one slot of the extraction queue (waiting for it in line
 * first). On success fills *doc and returns 0; otherwise returns -1 with
 * *err filled. Nothing is answered here: plain and streamed requests
 * answer differently. */
static int ingest(app_t *a, upload_t *u, ingest_watch_t *w, store_doc_t *doc, bool *existed,
                  ingest_error_t *err)
{
    if (!u || !u->got_file)
        return ingest_fail(err, 400, "No file uploaded: send it as the multipart field 'file'");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_DigestFinal_ex(u->sha, md, &mdlen);
    char sha[65];
    for (unsigned i = 0; i < 32 && i < mdlen; i++)
        snprintf(sha + 2 * i, 3, "%02x", md[i]);
    close(u->fd);
    u->fd = -1;
    store_scope_t sbuf;
    const store_scope_t *scope = owner_scope(&u->owner, &sbuf);

    /* Identical content: the uploader's existing document (in local mode,
     * anyone's). Another user's copy does not count: the content is
     * extracted and stored again for this one, never copied from theirs,
     * whose existence the time it takes would tell. */
    if (store_doc_find_sha256_scoped(a->store, scope, sha, doc) == STORE_OK) {
        *existed = true;
        return 0;
    }
    if (check_quota(a, scope, (int64_t)u->bytes, err) != 0) {
        log_info("upload '%s' refused: %s", u->filename, err->detail);
        return -1;
    }
    w->filename = u->filename;
    extractq_wait_t wait = { on_queue_position, queue_should_stop, w };
    int qrc = a->extractq ? extractq_acquire(a->extractq, &wait) : EXTRACTQ_OK;
    if (qrc != EXTRACTQ_OK) {
        log_info("upload '%s' given up while waiting for extraction: %s", u->filename,
                 extractq_strerror(qrc));
        return ingest_fail(err, 503, "The upload was given up while it waited for extraction");
    }
    send_stage(w, "extracting");
    int ret = -1, text_fd = -1;
    bool holding = true;   /* the extraction slot */
    extract_result_t ex;
    memset(&ex, 0, sizeof ex);
    /* The text streams into a file nobody else sees (unlinked at once, so
     * nothing is left behind either), never into memory: storing it and
     * counting its tokens read it back in pieces. */
    char text_path[1200];
    snprintf(text_path, sizeof text_path, "%s/" UPLOAD_TMP_PREFIX "text-XXXXXX", a->uploads_dir);
    text_fd = mkostemp(text_path, O_CLOEXEC);
    if (text_fd < 0) {
        log_error("upload: cannot create a file in %s: %s", a->uploads_dir, strerror(errno));
        ingest_fail(err, 507, "The server cannot store the upload (%s)", strerror(errno));
        goto done;
    }
    unlink(text_path);
    extract_watch_t ocr_watch = { on_ocr_progress, w };
    int rc = extract_run_watched(&a->extract, u->tmp_path, u->filename, text_fd, &ocr_watch, &ex);
    if (rc != 0 || ex.code != 0) {
        extract_failed(a, u, rc ? rc : ex.code, ex.message, err);
        goto done;
    }
    send_stage(w, "storing");
    char id[STORE_UUID_BUFSZ], stored[128];
    store_id_new(id);
    snprintf(stored, sizeof stored, "%s.%s", id, ex.type);
    char final[1300];
    snprintf(final, sizeof final, "%s/%s", a->uploads_dir, stored);
    if (rename(u->tmp_path, final) != 0) {
        ingest_fail(err, 500, "The server cannot store the upload (%s)", strerror(errno));
        goto done;
    }
    u->tmp_path[0] = '\0';
    store_doc_t d;
    store_doc_init(&d);
    d.id = id;
    d.filename = u->filename;
    d.stored_name = stored;
    d.content_type = (char *)ex.type;
    d.file_size = (int64_t)u->bytes;
    d.sha256 = sha;
    d.n_tokens = -1;
    store_text_reader_t reader = { fd_read, &text_fd };
    rc = lseek(text_fd, 0, SEEK_SET) == 0
             ? store_doc_insert_from_scoped(a->store, scope, &d, &reader, doc, existed)
             : STORE_EIO;
    if (rc != STORE_OK) {
        unlink(final);
        ingest_fail(err, rc == STORE_ETOOBIG ? 413 : 500, "Cannot store the document: %s",
                    store_strerror(rc));
        goto done;
    }
    /* Raced with an identical upload of the same user, or another owner
     * has this content: their file is the one kept. */
    if (*existed || !doc->stored_name || strcmp(doc->stored_name, stored) != 0)
        unlink(final);
    /* The extraction is over: its slot goes to the next upload before the
     * text is cut and the engine counts the tokens. */
    if (a->extractq)
        extractq_release(a->extractq);
    holding = false;
    if (!*existed) {
        keep_ocr(a, doc, &ex);
        structure_and_chunks(a, w, doc, &ex, text_fd);
    }
    app_provider_t *engine = !*existed && ex.len <= TOKEN_COUNT_MAX ? running_engine(a) : NULL;
    if (engine) {
        send_stage(w, "counting");
        set_tokens_from_fd(a, app_llm(engine), doc, text_fd);
        plan_for(a, engine, doc);
        app_provider_release(engine);
    }
    pthread_mutex_lock(&a->lock);
    a->stats.uploads++;
    pthread_mutex_unlock(&a->lock);
    log_info("document %s uploaded: '%s' (%s, %lld bytes, %lld chars)", doc->id, doc->filename,
             doc->content_type, (long long)doc->file_size, (long long)doc->n_chars);
    ret = 0;
done:
    extract_result_cleanup(&ex);
    if (text_fd >= 0)
        close(text_fd);
    if (holding && a->extractq)
        extractq_release(a->extractq);
    return ret;
}

static json_t *upload_json(const store_doc_t *d, bool existed)
{
    json_t *j = documents_json(d);
    json_object_set_new(j, "message", json_string(existed ? "Document already uploaded (identical content)"
                                                          : "Document uploaded successfully"));
    json_object_set_new(j, "existed", json_boolean(existed));
    return j;
}

static bool wants_sse(httpd_req_t *req);
static void upload_streamed(httpd_req_t *req, app_t *a, bool and_cache);

void documents_h_upload(httpd_req_t *req, void *user)
{
    app_t *a = user;
    if (wants_sse(req)) {
        upload_streamed(req, a, false);
        return;
    }
    store_doc_t d;
    store_doc_init(&d);
    bool existed = false;
    ingest_watch_t w = { .req = req };
    ingest_error_t err;
    int rc = ingest(a, httpd_req_ctx(req), &w, &d, &existed, &err);
    upload_over(httpd_req_ctx(req));
    if (rc == 0)
        httpd_reply_json(req, 200, upload_json(&d, existed));
    else
        httpd_reply_error(req, err.status, "%s", err.detail);
    store_doc_cleanup(&d);
}

/* ---- caching ---- */

typedef struct {
    httpd_stream_t *stream;
    int last_pct;
} progress_t;

static void on_progress(void *ud, int done, int total)
{
    progress_t *p = ud;
    if (!p || !p->stream || total <= 0)
        return;
    int pct = (int)((int64_t)done * 100 / total);
    if (pct == p->last_pct)
        return;
    p->last_pct = pct;
    httpd_stream_sse_json(p->stream, json_pack("{s:s, s:i, s:i, s:i}", "event", "progress", "done",
                                               done, "total", total, "percent", pct));
}

static bool progress_stop(void *ud)
{
    progress_t *p = ud;
    /* A cache request keeps going when its client leaves: the prefix is
     * worth having. */
    (void)p;
    return false;
}

static void on_part_event(void *ud, json_t *ev)
{
    progress_t *p = ud;
    if (p && p->stream)
        httpd_stream_sse_json(p->stream, ev);
    else
        json_decref(ev);
}

/* Cache every part of a long document (partcache_run). Returns the HTTP
 * status; *out gets the answer. */
static int cache_parts(app_t *a, app_provider_t *p, const store_doc_t *d, const parts_model_t *m,
                       const store_part_list_t *plan, progress_t *prog, json_t **out)
{
    partcache_result_t r;
    int rc = partcache_run(a, p, d, m, plan, on_part_event, prog, &r);
    pthread_mutex_lock(&a->lock);
    if (rc == 0)
        a->stats.caches++;
    else
        a->stats.cache_errors++;
    pthread_mutex_unlock(&a->lock);
    store_doc_t now;
    store_part_list_t fresh = { 0 };
    json_t *groups = NULL;
    if (store_doc_get(a->store, d->id, &now) == STORE_OK) {
        if (store_parts_list(a->store, d->id, m->plan_key, &fresh) == STORE_OK)
            groups = partcache_groups_json(a, &now, &fresh, NULL, 0, false);
        store_part_list_cleanup(&fresh);
        store_doc_cleanup(&now);
    }
    char msg[700];
    if (rc == 0)
        snprintf(msg, sizeof msg, "All %zu parts of the document are cached%s", r.total,
                 r.skipped == r.total ? " (they were already)" : "");
    else
        snprintf(msg, sizeof msg, "%zu of %zu parts cached; %zu failed (%s)", r.cached, r.total,
                 r.failed, r.error);
    *out = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:f, s:b, s:o}", "doc_id",
                     d->id, "status", rc == 0 ? "cached" : "failed", "message", msg,
                     "total_groups", (json_int_t)r.total, "cached_groups", (json_int_t)r.cached,
                     "failed_groups", (json_int_t)r.failed, "n_tokens", (json_int_t)r.tokens,
                     "bytes", (json_int_t)r.bytes, "tier", "disk", "prefill_ms", r.ms,
                     "already_cached", r.skipped == r.total, "groups",
                     groups ? groups : json_array());
    if (rc != 0)
        json_object_set_new(*out, "detail", json_string(msg));
    return rc == 0 ? 200 : r.http_status;
}

/* Cache a document's prefix, under the document's cache salt. The caller
 * has checked that its client may see the document. Returns the HTTP
 * status; *out gets the answer body (success or {"detail": ...}). */
static int cache_doc(app_t *a, const char *doc_id, progress_t *prog, json_t **out)
{
    store_doc_t d;
    store_doc_init(&d);
    char *text = NULL, *sys = NULL;
    size_t text_len = 0;
    int status = 200;
    app_provider_t *p = NULL;
    int rc = store_doc_get(a->store, doc_id, &d);
    if (rc != STORE_OK) {
        *out = json_pack("{s:s}", "detail", rc == STORE_ENOTFOUND ? "Document not found" : store_strerror(rc));
        return rc == STORE_ENOTFOUND ? 404 : 500;
    }
    p = app_local_acquire(a);
    supervisor_state_t state;
    app_local_running(a, &state);
    if (!p || (!a->sv && !p->engines)) {
        *out = json_pack("{s:s}", "detail", "No local model is configured: caching needs the local model server");
        status = 503;
        goto done;
    }
    if (state != SUPERVISOR_RUNNING) {
        *out = json_pack("{s:s}", "detail",
                         state == SUPERVISOR_STARTING
                             ? "The model server is still starting; try again in a moment"
                             : "The model server is not running: start it first (Start button, or POST /api/v1/model/up/without_reset)");
        status = 503;
        goto done;
    }
    /* The plan for the model in use: one part (the document as ever), or
     * several, each cached on its own. */
    parts_model_t pm;
    char why[512];
    store_part_list_t plan = { 0 };
    int prc = parts_model_of(a, p, &pm, why, sizeof why);
    if (prc == PARTS_OK)
        prc = parts_plan(a, app_llm(p), &pm, &d, &plan, why, sizeof why);
    if (prc != PARTS_OK) {
        *out = json_pack("{s:s}", "detail", why);
        status = prc == PARTS_ELLM ? 503 : prc == PARTS_ETOOSMALL || prc == PARTS_ETOOLONG ? 422 : 500;
        goto done;
    }
    if (plan.n > 1) {
        status = cache_parts(a, p, &d, &pm, &plan, prog, out);
        store_part_list_cleanup(&plan);
        goto done;
    }
    store_part_list_cleanup(&plan);
    /* Too long for the model's context: say so with both numbers. The
     * document's own tokens (counted in pieces from the store when not
     * known yet) settle it for a text far too long before the whole text
     * is read into memory; the rendered system message settles the rest. */
    char err[512];
    llm_model_info_t info;
    bool have_info = llm_models(app_llm(p), &info, err, sizeof err) == LLM_OK && info.n_ctx_slot > 0;
    int64_t n_sys = 0;
    bool over = false;
    if (have_info && d.n_tokens < 0 &&
        count_stored_tokens(a, app_llm(p), doc_id, info.n_ctx_slot, &n_sys, &over) && !over) {
        store_doc_set_tokens(a->store, doc_id, n_sys);
        d.n_tokens = n_sys;
    }
    if (over || (have_info && d.n_tokens > info.n_ctx_slot))
        n_sys = over ? n_sys : d.n_tokens;
    else if (store_doc_text(a->store, doc_id, &text, &text_len) != STORE_OK ||
             !(sys = documents_system_message(a, d.filename, text))) {
        *out = json_pack("{s:s}", "detail", "Cannot read the document's text");
        status = 500;
        goto done;
    }
    if (have_info && (sys ? count_tokens(app_llm(p), sys, strlen(sys), &n_sys) : true) &&
        n_sys + 32 > info.n_ctx_slot) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "The document is too long for the model: it takes %s%lld tokens, and the "
                 "model's context holds %d tokens per conversation",
                 over ? "at least " : "", (long long)n_sys, info.n_ctx_slot);
        store_cache_t c = { .status = STORE_CACHE_FAILED, .error = msg };
        store_doc_set_cache(a->store, doc_id, &c);
        *out = json_pack("{s:s, s:I, s:i}", "detail", msg, "n_tokens", (json_int_t)n_sys,
                         "n_ctx", info.n_ctx_slot);
        status = 422;
        goto done;
    }
    store_cache_t caching = { .status = STORE_CACHE_CACHING };
    store_doc_set_cache(a->store, doc_id, &caching);
    llm_message_t m = { LLM_ROLE_SYSTEM, sys };
    llm_callbacks_t cb = { .on_progress = on_progress, .should_stop = progress_stop };
    llm_prefill_result_t pr;
    char salt[LLM_CACHE_SALT_MAX + 1];
    auth_cache_salt(a, &d, salt, sizeof salt);
    rc = app_prefill(p, &m, 1, 0, salt, &cb, prog, &pr);
    if (rc != LLM_OK) {
        store_cache_t c = { .status = STORE_CACHE_FAILED, .error = pr.error };
        store_doc_set_cache(a->store, doc_id, &c);
        *out = json_pack("{s:s}", "detail", pr.error[0] ? pr.error : llm_strerror(rc));
        status = llm_http_status(rc);
        pthread_mutex_lock(&a->lock);
        a->stats.cache_errors++;
        pthread_mutex_unlock(&a->lock);
        goto done;
    }
    store_cache_t c = { .status = STORE_CACHE_CACHED, .entry_id = pr.id, .tokens = pr.n_tokens,
                        .bytes = pr.bytes, .tier = pr.tier, .ms = pr.prefill_ms };
    store_doc_set_cache(a->store, doc_id, &c);
    int64_t n_doc = 0;
    if (d.n_tokens < 0 && count_tokens(app_llm(p), text, text_len, &n_doc))
        store_doc_set_tokens(a->store, doc_id, n_doc);
    pthread_mutex_lock(&a->lock);
    a->stats.caches++;
    pthread_mutex_unlock(&a->lock);
    log_info("document %s cached: %d tokens, %lld bytes, %.0f ms (%s)", doc_id, pr.n_tokens,
             (long long)pr.bytes, pr.prefill_ms, pr.cached ? "already cached" : "prefilled");
    *out = json_pack("{s:s, s:s, s:s, s:i, s:I, s:s, s:s, s:f, s:b}", "doc_id", doc_id, "status",
                     "cached", "message",
                     pr.cached ? "Document was already cached" : "Document cached successfully",
                     "n_tokens", pr.n_tokens, "bytes", (json_int_t)pr.bytes, "tier", pr.tier,
                     "cache_entry_id", pr.id, "prefill_ms", pr.prefill_ms, "already_cached",
                     pr.cached);
done:
    free(sys);
    free(text);
    app_provider_release(p);
    store_doc_cleanup(&d);
    return status;
}

static bool wants_sse(httpd_req_t *req)
{
    const char *acc = httpd_req_header(req, "Accept");
    return acc && strstr(acc, "text/event-stream");
}

typedef struct {
    app_t *a;
    char doc_id[STORE_ID_MAX + 1];
    progress_t prog;
    json_t *prefix;    /* upload_and_cache: the upload answer to merge */
} cache_job_t;

/* Prefill j->doc_id with its progress streamed, then send the final event
 * (merged into j->prefix when there is one; j->prefix is consumed). The
 * stream stays open. */
static void cache_stream(cache_job_t *j)
{
    json_t *body = NULL;
    int status = cache_doc(j->a, j->doc_id, &j->prog, &body);
    json_t *ev;
    if (status == 200) {
        ev = body;
        json_object_set_new(ev, "event", json_string("done"));
    } else {
        ev = json_pack("{s:s, s:i, s:O}", "event", "error", "status", status, "detail",
                       json_object_get(body, "detail"));
        json_decref(body);
    }
    if (j->prefix) {
        json_object_set_new(j->prefix, "cache", ev);
        json_object_set_new(j->prefix, "event", json_string(status == 200 ? "done" : "error"));
        ev = j->prefix;
        j->prefix = NULL;
    }
    httpd_stream_sse_json(j->prog.stream, ev);
}

static void *cache_worker(void *arg)
{
    cache_job_t *j = arg;
    cache_stream(j);
    httpd_stream_close(j->prog.stream);
    free(j);
    return NULL;
}

/* Start fn(arg) on a detached thread. Returns 0 or an errno value. */
static int start_detached(void *(*fn)(void *), void *arg)
{
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return rc;
}

/* Answer with the cache result, streamed when the client asked for it. */
static void answer_cache(httpd_req_t *req, app_t *a, const char *doc_id, json_t *prefix)
{
    if (wants_sse(req)) {
        cache_job_t *j = calloc(1, sizeof *j);
        if (!j) {
            json_decref(prefix);
            httpd_reply_error(req, 500, "out of memory");
            return;
        }
        j->a = a;
        j->prefix = prefix;
        j->prog.last_pct = -1;
        snprintf(j->doc_id, sizeof j->doc_id, "%s", doc_id);
        if (httpd_stream_open(req, "text/event-stream", &j->prog.stream) != HTTPD_OK) {
            json_decref(prefix);
            free(j);
            httpd_reply_error(req, 503, "the server is shutting down");
            return;
        }
        httpd_stream_sse_json(j->prog.stream, json_pack("{s:s, s:s}", "event", "start", "doc_id", doc_id));
        if (start_detached(cache_worker, j) != 0) {
            httpd_stream_sse_json(j->prog.stream, json_pack("{s:s, s:s}", "event", "error", "detail",
                                                            "cannot start the cache worker"));
            httpd_stream_close(j->prog.stream);
            json_decref(prefix);
            free(j);
        }
        return;
    }
    json_t *body = NULL;
    int status = cache_doc(a, doc_id, NULL, &body);
    if (prefix) {
        /* upload_and_cache: the upload succeeded; the cache result rides along */
        if (status != 200)
            json_object_set_new(body, "status", json_string("failed"));
        json_object_set_new(body, "http_status", json_integer(status));
        json_object_set_new(prefix, "cache", body);
        httpd_reply_json(req, 200, prefix);
    } else {
        httpd_reply_json(req, status, body);
    }
}

/* ---- streamed uploads ---- */

/* A streamed upload runs on a thread of its own: a stream's data is sent
 * by the connection's thread, which a handler waiting in the queue would
 * hold. The job owns the upload (its temporary file included). */
typedef struct {
    app_t *a;
    upload_t *u;
    httpd_stream_t *stream;
    bool and_cache;
} upload_job_t;

static void *upload_worker(void *arg)
{
    upload_job_t *j = arg;
    store_doc_t d;
    store_doc_init(&d);
    bool existed = false;
    ingest_watch_t w = { .stream = j->stream };
    ingest_error_t err;
    int rc = ingest(j->a, j->u, &w, &d, &existed, &err);
    upload_over(j->u);
    if (rc != 0) {
        httpd_stream_sse_json(j->stream, json_pack("{s:s, s:i, s:s}", "event", "error", "status",
                                                   err.status, "detail", err.detail));
    } else if (!j->and_cache) {
        json_t *ev = upload_json(&d, existed);
        json_object_set_new(ev, "event", json_string("done"));
        httpd_stream_sse_json(j->stream, ev);
    } else {
        cache_job_t cj = { .a = j->a, .prog = { .stream = j->stream, .last_pct = -1 },
                           .prefix = upload_json(&d, existed) };
        snprintf(cj.doc_id, sizeof cj.doc_id, "%s", d.id);
        httpd_stream_sse_json(j->stream,
                              json_pack("{s:s, s:s}", "event", "start", "doc_id", d.id));
        cache_stream(&cj);
    }
    httpd_stream_close(j->stream);
    upload_free(j->u);
    store_doc_cleanup(&d);
    free(j);
    return NULL;
}

/* Answer an upload with SSE: progress while it waits and runs, then the
 * plain request's answer as the last event ("done"), or {"event":"error",
 * "status", "detail"}. */
static void upload_streamed(httpd_req_t *req, app_t *a, bool and_cache)
{
    upload_t *u = httpd_req_ctx(req);
    if (!u || !u->got_file) {
        httpd_reply_error(req, 400, "No file uploaded: send it as the multipart field 'file'");
        return;
    }
    upload_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        httpd_reply_error(req, 500, "out of memory");
        return;
    }
    j->a = a;
    j->u = u;
    j->and_cache = and_cache;
    if (httpd_stream_open(req, "text/event-stream", &j->stream) != HTTPD_OK) {
        free(j);
        httpd_reply_error(req, 503, "the server is shutting down");
        return;
    }
    httpd_req_set_ctx(req, NULL, NULL);   /* the job owns the upload now */
    if (start_detached(upload_worker, j) != 0) {
        httpd_stream_sse_json(j->stream, json_pack("{s:s, s:i, s:s}", "event", "error", "status",
                                                   500, "detail", "cannot start the upload worker"));
        httpd_stream_close(j->stream);
        upload_free(u);
        free(j);
    }
}

void documents_h_upload_and_cache(httpd_req_t *req, void *user)
{
    app_t *a = user;
    if (wants_sse(req)) {
        upload_streamed(req, a, true);
        return;
    }
    store_doc_t d;
    store_doc_init(&d);
    bool existed = false;
    ingest_watch_t w = { .req = req };
    ingest_error_t err;
    int rc = ingest(a, httpd_req_ctx(req), &w, &d, &existed, &err);
    upload_over(httpd_req_ctx(req));
    if (rc == 0)
        answer_cache(req, a, d.id, upload_json(&d, existed));
    else
        httpd_reply_error(req, err.status, "%s", err.detail);
    store_doc_cleanup(&d);
}

static int load_doc(httpd_req_t *req, app_t *a, const char *id, store_doc_t *d);

void documents_h_cache(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const char *id = httpd_req_param(req, "doc_id");
    if (req_scope(req)) {   /* a document the caller may not see: 404 */
        store_doc_t d;
        if (load_doc(req, a, id, &d) != 0)
            return;
        store_doc_cleanup(&d);
    }
    answer_cache(req, a, id, NULL);
}

/* ---- the cache as the engine holds it now ---- */

/* The store remembers a document's cache entry as it was when cached; the
 * engine may since have moved it to disk, evicted it, been reset, or
 * restarted with another model. Lists and status answers ask the running
 * engine for its entries (one bounded call) and report each document's
 * entry as it is now: cache.tier from the engine and cache.live true; an
 * entry the engine no longer has makes the document "none" again with
 * cache.evicted true (the store keeps its record: another engine, such as
 * the previous model's, may still hold it). When the engine cannot be
 * asked (stopped, loading, a remote provider, no answer in time) the
 * stored state stands and cache.live is false. */
typedef struct {
    llm_cache_entry_t *e;   /* sorted by id */
    size_t n;
    bool live;
} live_cache_t;

static int cmp_entry(const void *x, const void *y)
{
    return strcmp(((const llm_cache_entry_t *)x)->id, ((const llm_cache_entry_t *)y)->id);
}

static void live_cache_load(app_t *a, live_cache_t *lc)
{
    memset(lc, 0, sizeof *lc);
    app_provider_t *p = app_local_acquire(a);
    if (!p)
        return;
    char err[256];
    if (app_cache_entries(p, &lc->e, &lc->n, err, sizeof err) == LLM_OK) {
        lc->live = true;
        if (lc->n > 1)
            qsort(lc->e, lc->n, sizeof *lc->e, cmp_entry);
    } else {
        log_debug("documents: cache state as stored (the engine's entries: %s)", err);
    }
    app_provider_release(p);
}

static void live_cache_cleanup(live_cache_t *lc)
{
    free(lc->e);
    lc->e = NULL;
    lc->n = 0;
}

/* A document as the API shows it, its cache as of lc. Returns a new
 * reference (NULL on ENOMEM). */
static json_t *doc_json_live(const store_doc_t *d, const live_cache_t *lc)
{
    json_t *j = documents_json(d);
    json_t *c = json_object_get(j, "cache");
    if (!j || !c)
        return j;
    bool stored = d->cache.status == STORE_CACHE_CACHED && d->cache.entry_id && *d->cache.entry_id;
    json_object_set_new(c, "live", json_boolean(lc->live && stored));
    if (!lc->live || !stored)
        return j;
    llm_cache_entry_t key;
    snprintf(key.id, sizeof key.id, "%s", d->cache.entry_id);
    const llm_cache_entry_t *e = lc->n ? bsearch(&key, lc->e, lc->n, sizeof *lc->e, cmp_entry) : NULL;
    if (e) {
        json_object_set_new(c, "tier", json_string(e->tier));
    } else {
        const char *none = store_cache_status_name(STORE_CACHE_NONE);
        json_object_set_new(c, "status", json_string(none));
        json_object_set_new(c, "evicted", json_true());
        json_object_set_new(j, "cache_status", json_string(none));
    }
    return j;
}

static bool any_cached(const store_doc_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (d[i].cache.status == STORE_CACHE_CACHED)
            return true;
    return false;
}

/* One document as the API shows it, its cache asked of the engine now.
 * Returns a new reference (NULL on ENOMEM). */
static json_t *doc_json_now(app_t *a, const store_doc_t *d)
{
    live_cache_t lc = { 0 };
    if (any_cached(d, 1))
        live_cache_load(a, &lc);
    json_t *j = doc_json_live(d, &lc);
    live_cache_cleanup(&lc);
    return j;
}

/* ---- list, get, delete ---- */

/* The model the active provider serves, for the documents' part counts. */
static bool active_model(app_t *a, parts_model_t *m)
{
    app_provider_t *p = app_provider_acquire(a);
    bool ok = parts_model_of(a, p, m, NULL, 0) == PARTS_OK;
    app_provider_release(p);
    return ok;
}

/* Add total_groups to a document's JSON: its parts for model m as planned
 * (null until planned: caching or its first question plans it). */
static void add_total_groups(app_t *a, json_t *j, const char *doc_id, const parts_model_t *m)
{
    store_part_list_t plan = { 0 };
    bool have = m && store_parts_list(a->store, doc_id, m->plan_key, &plan) == STORE_OK && plan.n;
    json_object_set_new(j, "total_groups", have ? json_integer((json_int_t)plan.n) : json_null());
    store_part_list_cleanup(&plan);
}

void documents_h_list(httpd_req_t *req, void *user)
{
    app_t *a = user;
    store_doc_list_t l = { 0 };
    int rc = store_doc_list_scoped(a->store, req_scope(req), &l);
    if (rc) {
        httpd_reply_error(req, 500, "Cannot list documents: %s", store_strerror(rc));
        return;
    }
    live_cache_t lc = { 0 };
    if (any_cached(l.items, l.n))
        live_cache_load(a, &lc);
    parts_model_t m;
    bool known = active_model(a, &m);
    json_t *arr = json_array();
    for (size_t i = 0; i < l.n; i++) {
        json_t *j = doc_json_live(&l.items[i], &lc);
        add_total_groups(a, j, l.items[i].id, known ? &m : NULL);
        json_array_append_new(arr, j);
    }
    live_cache_cleanup(&lc);
    store_doc_list_cleanup(&l);
    httpd_reply_json(req, 200, arr);
}

void documents_h_limits(httpd_req_t *req, void *user)
{
    app_t *a = user;
    json_t *ext = json_array();
    for (int i = 0; allowed_ext[i]; i++)
        json_array_append_new(ext, json_string(allowed_ext[i]));
    httpd_reply_json(req, 200, json_pack("{s:I, s:i, s:o, s:s}", "max_upload_bytes",
                                         (json_int_t)a->cfg.max_upload_mb << 20, "max_upload_mb",
                                         a->cfg.max_upload_mb, "allowed_extensions", ext,
                                         "allowed_types", documents_allowed_types));
}

static void reply_store_error(httpd_req_t *req, int rc, const char *what)
{
    if (rc == STORE_ENOTFOUND)
        httpd_reply_error(req, 404, "%s not found", what);
    else if (rc == STORE_EINVAL)
        httpd_reply_error(req, 404, "%s not found (malformed id)", what);
    else
        httpd_reply_error(req, 500, "%s: %s", what, store_strerror(rc));
}

/* The document named in the path if the caller may see it, or an
 * answered 404/500 (returns -1): another user's private document is the
 * same 404 as an unknown id. */
static int load_doc(httpd_req_t *req, app_t *a, const char *id, store_doc_t *d)
{
    store_doc_init(d);
    int rc = store_doc_get_scoped(a->store, req_scope(req), id, d);
    if (rc) {
        reply_store_error(req, rc, "Document");
        return -1;
    }
    return 0;
}

#define PREVIEW_MAX 4096

/* The preview, taken from the text piece by piece: its first bytes, where
 * its tenth line ends, how many lines it has. */
typedef struct {
    char head[PREVIEW_MAX + 1];
    size_t head_len, total, newlines, cut;
    bool tenth_line;
    char last;
} preview_t;

static int preview_feed(void *ud, const char *p, size_t n)
{
    preview_t *pv = ud;
    size_t keep = sizeof pv->head - pv->head_len < n ? sizeof pv->head - pv->head_len : n;
    memcpy(pv->head + pv->head_len, p, keep);
    pv->head_len += keep;
    for (const char *q = p, *end = p + n; (q = memchr(q, '\n', (size_t)(end - q))); q++) {
        if (++pv->newlines == 10 && !pv->tenth_line) {
            pv->tenth_line = true;
            pv->cut = pv->total + (size_t)(q - p);
        }
    }
    pv->total += n;
    if (n)
        pv->last = p[n - 1];
    return 0;
}

void documents_h_get(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const char *id = httpd_req_param(req, "doc_id");
    store_doc_t d;
    if (load_doc(req, a, id, &d) != 0)
        return;
    json_t *j = doc_json_now(a, &d);
    parts_model_t m;
    bool known = active_model(a, &m);
    add_total_groups(a, j, d.id, known ? &m : NULL);
    const char *prev = httpd_req_query(req, "include_preview");
    if (prev && (strcmp(prev, "true") == 0 || strcmp(prev, "1") == 0 || !*prev)) {
        preview_t pv = { 0 };
        if (store_doc_text_foreach(a->store, id, preview_feed, &pv) == STORE_OK) {
            size_t cut = pv.tenth_line ? pv.cut : pv.total;
            size_t lines = pv.newlines + (pv.total && pv.last != '\n');
            /* ten lines, but no more than PREVIEW_MAX bytes of them (a
             * document may be one long line), cut between characters */
            bool capped = cut > PREVIEW_MAX;
            if (capped)
                cut = utf8_complete_len(pv.head, PREVIEW_MAX);
            json_object_set_new(j, "content_preview", json_string_lossy(pv.head, cut));
            json_object_set_new(j, "preview_truncated", json_boolean(capped));
            json_object_set_new(j, "total_lines", json_integer((json_int_t)lines));
        }
    }
    store_doc_cleanup(&d);
    httpd_reply_json(req, 200, j);
}

void documents_h_delete(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const char *id = httpd_req_param(req, "doc_id");
    const store_scope_t *scope = req_scope(req);
    store_doc_t d;
    store_doc_init(&d);
    bool file_unused = false;
    int rc = store_doc_delete_scoped(a->store, scope, id, &d, &file_unused);
    if (rc == STORE_ENOTFOUND && scope && store_doc_get_scoped(a->store, scope, id, &d) == STORE_OK) {
        /* shared with the caller, who sees it anyway: say why it stays */
        store_doc_cleanup(&d);
        httpd_reply_error(req, 403, "This document is shared with you: only its owner or an "
                                    "admin can delete it");
        return;
    }
    if (rc) {
        reply_store_error(req, rc, "Document");
        return;
    }
    auth_audit(a, req, "document.delete", id,
               json_pack("{s:s, s:s?, s:b}", "filename", d.filename, "owner", d.owner_id,
                         "shared", d.shared));
    /* the file goes with the last document that has its content */
    char path[1300];
    snprintf(path, sizeof path, "%s/%s", a->uploads_dir, d.stored_name);
    if (file_unused && unlink(path) != 0 && errno != ENOENT)
        log_warn("document %s: cannot remove %s: %s", id, path, strerror(errno));
    if (d.cache.entry_id && d.cache.entry_id[0]) {
        app_provider_t *p = app_local_acquire(a);
        char err[256];
        if (p && app_cache_delete(p, d.cache.entry_id, err, sizeof err) != LLM_OK)
            log_info("document %s: engine cache entry %s not deleted: %s", id, d.cache.entry_id, err);
        app_provider_release(p);
    }
    log_info("document %s deleted ('%s')", id, d.filename);
    store_doc_cleanup(&d);
    httpd_reply_json(req, 200, json_pack("{s:s, s:s}", "message", "Document deleted successfully",
                                         "doc_id", id));
}

/* ---- sharing ---- */

static const store_cache_t no_cache = { .status = STORE_CACHE_NONE, .tokens = -1, .bytes = -1,
                                        .ms = -1, .cached_at = -1 };

/* Sharing changes a document's cache salt (its owner's, or none when
 * shared: auth_cache_salt), so the entries made under the old one would
 * never be found again: delete them from the engine, and mark the
 * document and its parts (for the engine's model) not cached, for the
 * next cache request to make them anew. Best effort (logged): the parts'
 * cache run also checks each entry's salt before it skips one. */
static void forget_cache(app_t *a, const store_doc_t *d)
{
    app_provider_t *p = app_local_acquire(a);
    char err[256];
    if (p && d->cache.entry_id && d->cache.entry_id[0] &&
        app_cache_delete(p, d->cache.entry_id, err, sizeof err) != LLM_OK)
        log_info("document %s: engine cache entry %s not deleted: %s", d->id, d->cache.entry_id,
                 err);
    store_doc_set_cache(a->store, d->id, &no_cache);
    parts_model_t m;
    store_part_list_t plan = { 0 };
    if (p && parts_model_of(a, p, &m, NULL, 0) == PARTS_OK &&
        store_parts_list(a->store, d->id, m.plan_key, &plan) == STORE_OK && plan.n > 1) {
        for (size_t i = 0; i < plan.n; i++) {
            const store_cache_t *c = &plan.items[i].cache;
            if (c->status == STORE_CACHE_NONE)
                continue;
            if (c->entry_id && c->entry_id[0] &&
                app_cache_delete(p, c->entry_id, err, sizeof err) != LLM_OK)
                log_info("document %s: part %zu's cache entry not deleted: %s", d->id, i, err);
            store_part_set_cache(a->store, d->id, m.plan_key, (int64_t)i, &no_cache);
        }
    }
    store_part_list_cleanup(&plan);
    app_provider_release(p);
}

void documents_h_share(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const char *id = httpd_req_param(req, "doc_id");
    if (!auth_accounts(a)) {
        httpd_reply_error(req, 400, "Sharing needs accounts (auth.mode = accounts)");
        return;
    }
    const auth_t *who = auth_get(req);
    if (!who || !who->admin) {
        httpd_reply_error(req, 403, "Only an admin can share or unshare documents");
        return;
    }
    json_t *body;
    const char *msg;
    if (httpd_req_json(req, &body, &msg) != HTTPD_OK) {
        httpd_reply_error(req, 400, "%s", msg);
        return;
    }
    json_t *ev = json_object_get(body, "everyone");
    if (!json_is_boolean(ev)) {
        httpd_reply_error(req, 400, "Field 'everyone' must be true (share the document with "
                                    "every user) or false (its owner's alone again)");
        json_decref(body);
        return;
    }
    bool everyone = json_is_true(ev);
    json_decref(body);
    store_doc_t d;
    if (load_doc(req, a, id, &d) != 0)
        return;
    bool changed = d.shared != everyone;
    int rc = store_doc_set_shared(a->store, req_scope(req), id, everyone);
    if (rc) {
        store_doc_cleanup(&d);
        reply_store_error(req, rc, "Document");
        return;
    }
    auth_audit(a, req, everyone ? "document.share" : "document.unshare", id,
               json_pack("{s:s, s:s?, s:b}", "filename", d.filename, "owner", d.owner_id,
                         "changed", changed));
    if (changed)
        forget_cache(a, &d);
    store_doc_cleanup(&d);
    if (load_doc(req, a, id, &d) != 0)   /* deleted meanwhile */
        return;
    log_info("document %s %s by %s", id, everyone ? "shared with everyone" : "unshared",
             who->name[0] ? who->name : "the API key");
    json_t *j = doc_json_now(a, &d);
    json_object_set_new(j, "message",
                        json_string(everyone ? "The document is shared with every user"
                                             : "The document is its owner's alone again"));
    store_doc_cleanup(&d);
    httpd_reply_json(req, 200, j);
}

void documents_h_cache_status(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const char *id = httpd_req_param(req, "doc_id");
    store_doc_t d;
    if (load_doc(req, a, id, &d) != 0)
        return;
    json_t *j = doc_json_now(a, &d);
    json_t *c = json_incref(json_object_get(j, "cache"));
    json_object_set_new(c, "doc_id", json_string(d.id));
    json_object_set_new(c, "cache_status", json_incref(json_object_get(j, "cache_status")));
    json_object_set_new(c, "n_tokens", d.n_tokens >= 0 ? json_integer(d.n_tokens) : json_null());
    json_decref(j);
    /* A long document: its parts for the engine's model, as planned (a
     * status call does not plan). */
    store_part_list_t plan = { 0 };
    app_provider_t *p = app_local_acquire(a);
    if (p) {
        parts_model_t m;
        if (parts_model_of(a, p, &m, NULL, 0) == PARTS_OK)
            store_parts_list(a->store, d.id, m.plan_key, &plan);
        app_provider_release(p);
    }
    if (plan.n > 1) {
        live_cache_t lc = { 0 };
        live_cache_load(a, &lc);
        bool asked = lc.live;
        json_t *groups = partcache_groups_json(a, &d, &plan, lc.e, lc.n, asked);
        size_t cached = 0;
        for (size_t i = 0; i < json_array_size(groups); i++)
            cached += json_is_true(json_object_get(json_array_get(groups, i), "cached"));
        json_object_set_new(c, "total_groups", json_integer((json_int_t)plan.n));
        json_object_set_new(c, "cached_groups", json_integer((json_int_t)cached));
        json_object_set_new(c, "groups", groups);
        live_cache_cleanup(&lc);
    }
    store_part_list_cleanup(&plan);
    store_doc_cleanup(&d);
    httpd_reply_json(req, 200, c);
}

/* ---- collections ---- */

void documents_h_upload_collection(httpd_req_t *req, void *user)
{
    app_t *a = user;
    collection_up_t *c = httpd_req_ctx(req);
    const char *name = httpd_req_form(req, "name");
    if (!c || !c->n) {
        httpd_reply_error(req, 400, "No files uploaded: send them as multipart fields 'files'");
        return;
    }
    if (!name || !*name || strlen(name) > STORE_NAME_MAX || !utf8_valid(name, strlen(name))) {
        httpd_reply_error(req, 400, "The collection needs a 'name' (1 to %d bytes of UTF-8)",
                          STORE_NAME_MAX);
        return;
    }
    json_t *docs = json_array(), *errors = json_array();
    const char *ids[STORE_SET_MAX];
    store_doc_t got[STORE_SET_MAX];
    size_t n_ok = 0;
    int first_status = 0;
    char first_detail[1024] = "";
    for (size_t i = 0; i < c->n; i++) {
        store_doc_init(&got[n_ok]);
        bool existed = false;
        ingest_watch_t w = { .req = req };
        ingest_error_t err;
        char fname[STORE_NAME_MAX];
        snprintf(fname, sizeof fname, "%s", c->files[i]->filename);
        if (ingest(a, c->files[i], &w, &got[n_ok], &existed, &err) != 0) {
            json_array_append_new(errors, json_pack("{s:s, s:i, s:s}", "filename", fname,
                                                    "status", err.status, "detail", err.detail));
            if (!first_status) {
                first_status = err.status;
                snprintf(first_detail, sizeof first_detail, "%.200s: %.800s", fname, err.detail);
            }
            continue;
        }
        bool dup = false;   /* the same content twice is one document */
        for (size_t k = 0; k < n_ok; k++)
            dup |= strcmp(ids[k], got[n_ok].id) == 0;
        json_array_append_new(docs, upload_json(&got[n_ok], existed));
        if (dup) {
            store_doc_cleanup(&got[n_ok]);
            continue;
        }
        ids[n_ok] = got[n_ok].id;
        n_ok++;
    }
    auth_busy_end(a, c->ticket);   /* before the answer: the client may upload again at once */
    if (!n_ok) {
        httpd_reply_error(req, first_status ? first_status : 400, "%s", first_detail);
        json_decref(docs);
        json_decref(errors);
        return;
    }
    store_collection_t col;
    int rc = store_collection_create(a->store, name, ids, n_ok, &col);
    if (rc != STORE_OK) {
        httpd_reply_error(req, 500, "Cannot keep the collection: %s", store_strerror(rc));
        json_decref(docs);
        json_decref(errors);
    } else {
        json_t *idarr = json_array();
        for (size_t i = 0; i < col.docs.n; i++)
            json_array_append_new(idarr, json_string(col.docs.ids[i]));
        log_info("collection %s '%s': %zu document(s), %zu failed", col.id, col.name, n_ok,
                 json_array_size(errors));
        httpd_reply_json(req, 200,
                         json_pack("{s:s, s:s, s:o, s:o, s:o, s:s}", "collection_id", col.id,
                                   "name", col.name, "document_ids", idarr, "documents", docs,
                                   "errors", errors, "message",
                                   json_array_size(errors) ? "Some files could not be read"
                                                           : "Collection uploaded"));
        store_collection_cleanup(&col);
    }
    for (size_t i = 0; i < n_ok; i++)
        store_doc_cleanup(&got[i]);
}

int documents_collection_visible(app_t *a, const store_scope_t *scope,
                                 const store_collection_t *col)
{
    if (!scope || scope->admin)
        return STORE_OK;
    if (col->docs.n == 0)
        return STORE_ENOTFOUND;   /* nothing left in it to tell whose it was */
    for (size_t i = 0; i < col->docs.n; i++) {
        store_doc_t d;
        int rc = store_doc_get_scoped(a->store, scope, col->docs.ids[i], &d);
        store_doc_cleanup(&d);
        if (rc != STORE_OK)
            return rc;
    }
    return STORE_OK;
}

void documents_h_collection(httpd_req_t *req, void *user)
{
    app_t *a = user;
    store_collection_t col;
    int rc = store_collection_get(a->store, httpd_req_param(req, "collection_id"), &col);
    if (rc == STORE_OK) {
        rc = documents_collection_visible(a, req_scope(req), &col);
        if (rc != STORE_OK)
            store_collection_cleanup(&col);
    }
    if (rc != STORE_OK) {
        if (rc == STORE_ENOTFOUND || rc == STORE_EINVAL)
            httpd_reply_error(req, 404, "Collection not found");
        else
            httpd_reply_error(req, 500, "Cannot read the collection: %s", store_strerror(rc));
        return;
    }
    json_t *docs = json_array(), *ids = json_array();
    for (size_t i = 0; i < col.docs.n; i++) {
        store_doc_t d;
        json_array_append_new(ids, json_string(col.docs.ids[i]));
        if (store_doc_get_scoped(a->store, req_scope(req), col.docs.ids[i], &d) == STORE_OK)
            json_array_append_new(docs, documents_json(&d));
        store_doc_cleanup(&d);
    }
    char t[STORE_TIME_BUFSZ];
    store_format_time(col.created_at, t);
    httpd_reply_json(req, 200, json_pack("{s:s, s:s, s:s, s:o, s:o}", "collection_id", col.id,
                                         "name", col.name, "created_at", t, "document_ids", ids,
                                         "documents", docs));
    store_collection_cleanup(&col);
}

/* ---- chunks and parts ---- */

/* An integer query parameter in [lo, hi], or `def` when absent. Answers
 * 400 itself and returns false when malformed. */
static bool query_int(httpd_req_t *req, const char *name, long long lo, long long hi,
                      long long def, long long *out)
{
    const char *q = httpd_req_query(req, name);
    *out = def;
    if (!q)
        return true;
    char *end;
    errno = 0;
    long long v = strtoll(q, &end, 10);
    if (!*q || *end || errno || v < lo || v > hi) {
        httpd_reply_error(req, 400, "'%s' must be a number from %lld to %lld", name, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

/* A chunk as the API shows it (content when it has it). */
static json_t *chunk_json(const store_chunk_t *k, const store_part_list_t *plan)
{
    json_t *groups = json_array();
    for (size_t i = 0; plan && i < plan->n; i++)
        if (k->seq >= plan->items[i].chunk_first && k->seq <= plan->items[i].chunk_last)
            json_array_append_new(groups, json_integer((json_int_t)i));
    json_t *j = json_pack("{s:I, s:o, s:[s,s], s:s, s:I, s:o, s:I, s:I, s:I, s:o}", "chunk_id",
                          (json_int_t)k->seq, "page_numbers",
                          route_page_numbers(k->page_first, k->page_last), "page_labels",
                          k->label_first ? k->label_first : "", k->label_last ? k->label_last : "",
                          "heading", k->heading ? k->heading : "", "char_count",
                          (json_int_t)k->n_chars, "token_count",
                          json_integer(k->tokens >= 0 ? k->tokens : k->est_tokens),
                          "est_tokens", (json_int_t)k->est_tokens, "start", (json_int_t)k->start,
                          "end", (json_int_t)k->end, "group_ids", groups);
    if (k->content)
        json_object_set_new(j, "content", json_string(k->content));
    return j;
}

/* The plan of document d for the active provider's model: the stored one,
 * else made now. Returns PARTS_OK, or a PARTS_E* code with the reason in
 * err (*plan is then empty). */
static int current_plan(app_t *a, const store_doc_t *d, store_part_list_t *plan,
                        parts_model_t *m, char *err, size_t errcap)
{
    *plan = (store_part_list_t){ 0 };
    app_provider_t *p = app_provider_acquire(a);
    int rc = parts_model_of(a, p, m, err, errcap);
    if (rc == PARTS_OK)
        rc = parts_plan(a, app_llm(p), m, d, plan, err, errcap);
    if (rc != PARTS_OK)
        log_info("document %s: no parts: %s", d->id, err);
    app_provider_release(p);
    return rc;
}

void documents_h_chunks(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const char *id = httpd_req_param(req, "doc_id");
    long long offset, limit;
    if (!query_int(req, "offset", 0, INT64_MAX, 0, &offset) ||
        !query_int(req, "limit", 1, 1000, 100, &limit))
        return;
    store_doc_t d;
    if (load_doc(req, a, id, &d) != 0)
        return;
    if (d.n_chunks == 0) {   /* uploaded before chunking existed: cut it now */
        char err[256];
        store_mark_list_t marks;
        if (store_doc_marks(a->store, id, &marks) == STORE_OK &&
            parts_chunk(a, id, -1, marks.items, marks.n, &d.n_chunks, err, sizeof err) !=
                PARTS_OK)
            log_warn("document %s: not cut into chunks: %s", id, err);
        store_mark_list_cleanup(&marks);
    }
    store_part_list_t plan = { 0 };
    parts_model_t m;
    char why[512];
    if (httpd_req_query(req, "with_groups") == NULL ||
        strcmp(httpd_req_query(req, "with_groups"), "false") != 0)
        current_plan(a, &d, &plan, &m, why, sizeof why);
    store_chunk_list_t l;
    int64_t total = 0;
    int rc = store_chunk_list(a->store, id, offset, (size_t)limit, false, &l, &total);
    if (rc != STORE_OK) {
        store_part_list_cleanup(&plan);
        store_doc_cleanup(&d);
        reply_store_error(req, rc, "Document");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < l.n; i++)
        json_array_append_new(arr, chunk_json(&l.items[i], &plan));
    httpd_reply_json(req, 200, json_pack("{s:s, s:I, s:I, s:I, s:o}", "doc_id", id,
                                         "total_chunks", (json_int_t)total, "offset",
                                         (json_int_t)offset, "limit", (json_int_t)limit,
                                         "chunks", arr));
    store_chunk_list_cleanup(&l);
    store_part_list_cleanup(&plan);
    store_doc_cleanup(&d);
}

void documents_h_chunk(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const char *id = httpd_req_param(req, "doc_id");
    const char *cs = httpd_req_param(req, "chunk_id");
    char *end;
    errno = 0;
    long long seq = strtoll(cs, &end, 10);
    if (!*cs || *end || errno || seq < 0) {
        httpd_reply_error(req, 400, "The chunk id must be a number from 0");
        return;
    }
    store_doc_t d;
    if (load_doc(req, a, id, &d) != 0)
        return;
    store_chunk_t k;
    int rc = store_chunk_get(a->store, id, seq, &k);
    if (rc == STORE_ENOTFOUND) {
        httpd_reply_error(req, 404, "Chunk %lld not found: the document has %lld chunks", seq,
                          (long long)d.n_chunks);
    } else if (rc != STORE_OK) {
        reply_store_error(req, rc, "Chunk");
    } else {
        store_part_list_t plan = { 0 };
        parts_model_t m;
        char why[512];
        current_plan(a, &d, &plan, &m, why, sizeof why);
        httpd_reply_json(req, 200, json_pack("{s:s, s:o}", "doc_id", id, "chunk",
                                             chunk_json(&k, &plan)));
        store_part_list_cleanup(&plan);
        store_chunk_cleanup(&k);
    }
    store_doc_cleanup(&d);
}

void documents_h_search(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const char *id = httpd_req_param(req, "doc_id");
    const char *q = httpd_req_query(req, "q");
    long long limit;
    if (!query_int(req, "limit", 1, 50, 10, &limit))
        return;
    if (!q || !*q) {
        httpd_reply_error(req, 400, "Say what to search for: ?q=...");
        return;
    }
    if (strlen(q) > SEARCH_QUERY_MAX) {
        httpd_reply_error(req, 400, "The search is too long: at most %d bytes", SEARCH_QUERY_MAX);
        return;
    }
    store_doc_t d;
    if (load_doc(req, a, id, &d) != 0)
        return;
    store_part_list_t plan = { 0 };
    parts_model_t m;
    char why[512] = "";
    int prc = current_plan(a, &d, &plan, &m, why, sizeof why);
    route_doc_t rd = { &d, &plan };
    store_chunk_list_t l;
    if (route_search(a, &rd, 1, q, (size_t)limit, &l, why, sizeof why) != 0) {
        store_part_list_cleanup(&plan);
        store_doc_cleanup(&d);
        httpd_reply_error(req, 500, "%s", why);
        return;
    }
    json_t *results = json_array();
    for (size_t i = 0; i < l.n; i++) {
        json_t *c = chunk_json(&l.items[i], prc == PARTS_OK ? &plan : NULL);
        json_object_del(c, "content");
        json_object_set_new(c, "score", json_real(round(l.items[i].score * 1000) / 1000));
        json_object_set_new(c, "snippet", route_snippet(l.items[i].content));
        json_array_append_new(results, c);
    }
    store_chunk_list_cleanup(&l);
    /* the part a question with these words would be answered from */
    json_t *where_to = json_null();
    route_t r;
    if (prc == PARTS_OK && plan.n > 0 &&
        route_pick(a, &rd, 1, q, NULL, (route_prev_t){ -1, -1 }, &r, why, sizeof why) == 0) {
        char where[600] = "";
        const store_part_t *p = &plan.items[r.part];
        parts_where(a, d.id, p->chunk_first, p->chunk_last, where, sizeof where);
        where_to = json_pack("{s:I, s:I, s:s, s:f, s:b}", "group_id", (json_int_t)r.part,
                             "total_groups", (json_int_t)plan.n, "where", where, "score",
                             round(r.score * 1000) / 1000, "matched", r.matched);
        route_cleanup(&r);
    }
    json_t *out = json_pack("{s:s, s:s, s:I, s:o, s:o}", "doc_id", id, "query", q,
                            "total_chunks", (json_int_t)d.n_chunks, "results", results, "route",
                            where_to);
    if (prc != PARTS_OK)
        json_object_set_new(out, "route_error", json_string(why));
    httpd_reply_json(req, 200, out);
    store_part_list_cleanup(&plan);
    store_doc_cleanup(&d);
}

void documents_h_groups(httpd_req_t *req, void *user)
{
    app_t *a = user;
    const char *id = httpd_req_param(req, "doc_id");
    store_doc_t d;
    if (load_doc(req, a, id, &d) != 0)
        return;
    store_part_list_t plan;
    parts_model_t m;
    char why[512];
    int rc = current_plan(a, &d, &plan, &m, why, sizeof why);
    if (rc != PARTS_OK) {
        httpd_reply_error(req, rc == PARTS_ELLM ? 503 : rc == PARTS_ETOOLONG ? 422 : 500, "%s",
                          why);
        store_doc_cleanup(&d);
        return;
    }
    live_cache_t lc = { 0 };
    live_cache_load(a, &lc);
    bool asked = lc.live;
    httpd_reply_json(req, 200, partcache_groups_json(a, &d, &plan, lc.e, lc.n, asked));
    live_cache_cleanup(&lc);
    store_part_list_cleanup(&plan);
    store_doc_cleanup(&d);
}
