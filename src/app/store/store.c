/* store.c — the store's front: argument checks, defaults and dispatch.
 *
 * Every public store_* function checks its arguments here (NULLs, ids,
 * UTF-8, limits, enum ranges, scopes, hashes, user names), fills the
 * defaults (new ids, "now", n_chars, shortened user agents), initializes
 * the caller's out-structs and then calls the
 * backend's function from its table (store_backend_ops_t). Backends thus
 * see valid input only, and the rules of store.h hold for every backend
 * alike. Backends are data: the table `backends` below maps URL schemes to
 * function tables; the first entry is the default for plain paths.
 *
 * Also here: the record helpers (init/cleanup of records and lists), the
 * clock, ISO 8601 formatting and UUID generation.
 */
#include "app/store/store.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "app/store/store_pg.h"
#include "app/store/store_sqlite.h"
#include "common/buf.h"
#include "common/utf8.h"

struct store {
    const store_backend_ops_t *ops;
    store_backend_t *b;
};

static const store_backend_ops_t *const backends[] = {
    &store_sqlite_ops,
    &store_pg_ops,
    &store_pg_ops_alias,
};

/* Longest full-text query accepted. */
#define STORE_QUERY_MAX 1024

/* ---- Errors --------------------------------------------------------------- */

const char *store_strerror(int rc)
{
    switch (rc) {
    case STORE_OK: return "success";
    case STORE_ENOMEM: return "out of memory";
    case STORE_EINVAL: return "invalid argument";
    case STORE_ENOTFOUND: return "not found";
    case STORE_ECONFLICT: return "already exists";
    case STORE_EIO: return "database I/O error";
    case STORE_ECORRUPT: return "database file is corrupt or not a database";
    case STORE_EBUSY: return "database is locked by another process";
    case STORE_ETOOBIG: return "value too large";
    case STORE_ESCHEMA: return "database belongs to a newer kvchat or another application";
    case STORE_EUNSUPPORTED: return "not supported by this database backend";
    default: return "unknown error";
    }
}

/* ---- Time and ids --------------------------------------------------------- */

int64_t store_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 9999-12-31T23:59:59.999Z */
#define STORE_TIME_LAST 253402300799999LL

/* Write v (0 <= v < 10^width) as exactly `width` decimal digits; returns
 * the position after them. */
static char *put_digits(char *p, int v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

int store_format_time(int64_t ms, char *buf)
{
    if (!buf)
        return STORE_EINVAL;
    buf[0] = '\0';
    if (ms < 0 || ms > STORE_TIME_LAST)
        return STORE_EINVAL;
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&sec, &tm))
        return STORE_EINVAL;
    /* The range check above bounds every field, so the text is exactly 24
     * bytes: written digit by digit, no format to second-guess. */
    char *p = buf;
    p = put_digits(p, tm.tm_year + 1900, 4);
    *p++ = '-';
    p = put_digits(p, tm.tm_mon + 1, 2);
    *p++ = '-';
    p = put_digits(p, tm.tm_mday, 2);
    *p++ = 'T';
    p = put_digits(p, tm.tm_hour, 2);
    *p++ = ':';
    p = put_digits(p, tm.tm_min, 2);
    *p++ = ':';
    p = put_digits(p, tm.tm_sec, 2);
    *p++ = '.';
    p = put_digits(p, (int)(ms % 1000), 3);
    *p++ = 'Z';
    *p = '\0';
    return STORE_OK;
}

int store_id_new(char *buf)
{
    if (!buf)
        return STORE_EINVAL;
    unsigned char r[16];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            buf[0] = '\0';
            return STORE_EIO;
        }
        got += (size_t)n;
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* variant 10 */
    static const char hex[] = "0123456789abcdef";
    char *p = buf;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[r[i] >> 4];
        *p++ = hex[r[i] & 15];
    }
    *p = '\0';
    return STORE_OK;
}

bool store_id_valid(const char *id)
{
    if (!id || !id[0])
        return false;
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        unsigned char c = (unsigned char)*p;
        if (n >= STORE_ID_MAX || c <= 0x20 || c >= 0x7f || strchr("/\\?#%", c))
            return false;
    }
    return true;
}

/* ---- Enums ---------------------------------------------------------------- */

static const char *const cache_status_names[] = {"none", "caching", "cached", "failed"};
static const char *const role_names[] = {"system", "user", "assistant"};
static const char *const content_types[] = {"txt",  "md",  "pdf",  "docx", "odt",
                                            "html", "epub", "pptx", "odp",  "xlsx",
                                            "ods",  "csv",  "png",  "jpeg", "tiff",
                                            "webp"};
static const char *const user_role_names[] = {"user", "admin"};
static const char *const token_scope_names[] = {"read", "chat", "admin"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int name_index(const char *const *names, size_t n, const char *name)
{
    if (!name)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return (int)i;
    return -1;
}

/* The name of an enum's value and the value of a name, from its table of
 * names in value order. */
#define NAMED_ENUM(type, name_fn, parse_fn, names)                            \
    const char *name_fn(type v)                                              \
    {                                                                        \
        return (unsigned)v < COUNT(names) ? names[v] : "";                   \
    }                                                                        \
    int parse_fn(const char *name, type *out)                                \
    {                                                                        \
        int i = name_index(names, COUNT(names), name);                       \
        if (i < 0 || !out)                                                   \
            return STORE_EINVAL;                                             \
        *out = (type)i;                                                      \
        return STORE_OK;                                                     \
    }

NAMED_ENUM(store_cache_status_t, store_cache_status_name, store_cache_status_parse,
           cache_status_names)
NAMED_ENUM(store_role_t, store_role_name, store_role_parse, role_names)
NAMED_ENUM(store_user_role_t, store_user_role_name, store_user_role_parse, user_role_names)
NAMED_ENUM(store_token_scope_t, store_token_scope_name, store_token_scope_parse,
           token_scope_names)

bool store_content_type_valid(const char *content_type)
{
    return name_index(content_types, COUNT(content_types), content_type) >= 0;
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool store_user_name_valid(const char *name)
{
    if (!name || !is_alnum(name[0]))
        return false;
    size_t n = 0;
    for (const char *p = name; *p; p++, n++)
        if (n >= STORE_USER_NAME_MAX || !(is_alnum(*p) || strchr("._@-", *p)))
            return false;
    return true;
}

/* ---- Records ---------------------------------------------------------------- */

static void cache_init(store_cache_t *c)
{
    memset(c, 0, sizeof *c);
    c->status = STORE_CACHE_NONE;
    c->tokens = -1;
    c->bytes = -1;
    c->ms = -1;
    c->cached_at = -1;
}

static void cache_cleanup(store_cache_t *c)
{
    free(c->entry_id);
    free(c->tier);
    free(c->error);
    cache_init(c);
}

void store_doc_init(store_doc_t *d)
{
    if (!d)
        return;
    memset(d, 0, sizeof *d);
    d->file_size = -1;
    d->uploaded_at = -1;
    d->n_chars = -1;
    d->n_tokens = -1;
    d->ocr_confidence = -1;
    cache_init(&d->cache);
}

void store_doc_cleanup(store_doc_t *d)
{
    if (!d)
        return;
    free(d->id);
    free(d->filename);
    free(d->stored_name);
    free(d->content_type);
    free(d->sha256);
    free(d->owner_id);
    free(d->ocr_pages);
    cache_cleanup(&d->cache);
    store_doc_init(d);
}

void store_session_init(store_session_t *ss)
{
    if (!ss)
        return;
    memset(ss, 0, sizeof *ss);
    ss->created_at = -1;
    ss->last_active = -1;
    ss->message_count = 0;
}

void store_session_cleanup(store_session_t *ss)
{
    if (!ss)
        return;
    free(ss->id);
    free(ss->document_id);
    free(ss->title);
    free(ss->document_filename);
    free(ss->owner_id);
    store_session_init(ss);
}

void store_msg_init(store_msg_t *m)
{
    if (!m)
        return;
    memset(m, 0, sizeof *m);
    m->id = -1;
    m->created_at = -1;
}

void store_msg_cleanup(store_msg_t *m)
{
    if (!m)
        return;
    free(m->session_id);
    free(m->content);
    free(m->meta);
    store_msg_init(m);
}

static void store_mark_init(store_mark_t *m)
{
    memset(m, 0, sizeof *m);
}

static void store_mark_cleanup(store_mark_t *m)
{
    free(m->label);
    store_mark_init(m);
}

void store_chunk_init(store_chunk_t *c)
{
    if (!c)
        return;
    memset(c, 0, sizeof *c);
    c->seq = -1;
    c->tokens = -1;
}

void store_chunk_cleanup(store_chunk_t *c)
{
    if (!c)
        return;
    free(c->doc_id);
    free(c->tokens_key);
    free(c->label_first);
    free(c->label_last);
    free(c->heading);
    free(c->content);
    store_chunk_init(c);
}

void store_part_init(store_part_t *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    p->seq = -1;
    p->tokens = -1;
    cache_init(&p->cache);
}

void store_part_cleanup(store_part_t *p)
{
    if (!p)
        return;
    free(p->doc_id);
    free(p->plan_key);
    cache_cleanup(&p->cache);
    store_part_init(p);
}

void store_user_init(store_user_t *u)
{
    if (!u)
        return;
    memset(u, 0, sizeof *u);
    u->role = STORE_USER_ROLE_USER;
    u->created_at = -1;
    u->updated_at = -1;
}

void store_user_cleanup(store_user_t *u)
{
    if (!u)
        return;
    free(u->id);
    free(u->name);
    free(u->password_hash);
    store_user_init(u);
}

void store_login_init(store_login_t *l)
{
    if (!l)
        return;
    memset(l, 0, sizeof *l);
    l->created_at = -1;
    l->last_seen_at = -1;
    l->expires_at = -1;
    l->idle_ms = -1;
}

void store_login_cleanup(store_login_t *l)
{
    if (!l)
        return;
    free(l->id);
    free(l->user_id);
    free(l->client_addr);
    free(l->user_agent);
    store_login_init(l);
}

void store_token_init(store_token_t *t)
{
    if (!t)
        return;
    memset(t, 0, sizeof *t);
    t->scope = STORE_TOKEN_READ;
    t->created_at = -1;
    t->expires_at = -1;
    t->last_used_at = -1;
}

void store_token_cleanup(store_token_t *t)
{
    if (!t)
        return;
    free(t->id);
    free(t->user_id);
    free(t->name);
    free(t->hash);
    store_token_init(t);
}

void store_audit_init(store_audit_t *e)
{
    if (!e)
        return;
    memset(e, 0, sizeof *e);
    e->id = -1;
    e->ts = -1;
}

void store_audit_cleanup(store_audit_t *e)
{
    if (!e)
        return;
    free(e->actor_id);
    free(e->actor_name);
    free(e->action);
    free(e->target);
    free(e->client_addr);
    free(e->detail);
    store_audit_init(e);
}

/* Grow an array of n elements of `size` bytes to room for n + 1, doubling
 * at powers of two (the capacity is implied by n). Returns the array, or
 * NULL with the old one still valid. */
static void *grow(void *items, size_t n, size_t size)
{
    if (n & (n - 1)) /* not a power of two (n >= 3): room remains */
        return items;
    size_t cap = n ? n * 2 : 1;
    if (cap > SIZE_MAX / size)
        return NULL;
    return realloc(items, cap * size);
}

/* A record list's cleanup (public) and push (for backends): push appends
 * *item, taking its strings (*item is re-initialized); on STORE_ENOMEM the
 * item is cleaned up and the list is unchanged. */
#define RECORD_LIST(name, rec_t, list_t)                          \
    void store_##name##_list_cleanup(list_t *l)                   \
    {                                                             \
        if (!l)                                                   \
            return;                                               \
        for (size_t i = 0; i < l->n; i++)                         \
            store_##name##_cleanup(&l->items[i]);                 \
        free(l->items);                                           \
        l->items = NULL;                                          \
        l->n = 0;                                                 \
    }                                                             \
    int store__##name##_list_push(list_t *l, rec_t *item)         \
    {                                                             \
        rec_t *items = grow(l->items, l->n, sizeof *items);       \
        if (!items) {                                             \
            store_##name##_cleanup(item);                         \
            return STORE_ENOMEM;                                  \
        }                                                         \
        l->items = items;                                         \
        l->items[l->n++] = *item;                                 \
        store_##name##_init(item);                                \
        return STORE_OK;                                          \
    }

RECORD_LIST(doc, store_doc_t, store_doc_list_t)
RECORD_LIST(session, store_session_t, store_session_list_t)
RECORD_LIST(msg, store_msg_t, store_msg_list_t)
RECORD_LIST(mark, store_mark_t, store_mark_list_t)
RECORD_LIST(chunk, store_chunk_t, store_chunk_list_t)
RECORD_LIST(part, store_part_t, store_part_list_t)
RECORD_LIST(user, store_user_t, store_user_list_t)
RECORD_LIST(login, store_login_t, store_login_list_t)
RECORD_LIST(token, store_token_t, store_token_list_t)
RECORD_LIST(audit, store_audit_t, store_audit_list_t)

int store__id_list_push(store_id_list_t *l, const char *id)
{
    /* Exact size, as the backends' lists of ids are built, so that both
     * may append to one list. */
    char *copy = strdup(id);
    char **ids = copy ? realloc(l->ids, (l->n + 1) * sizeof *ids) : NULL;
    if (!ids) {
        free(copy);
        return STORE_ENOMEM;
    }
    l->ids = ids;
    l->ids[l->n++] = copy;
    return STORE_OK;
}

/* ---- Argument checks ------------------------------------------------------ */

/* A text argument: valid UTF-8 of at most `max` bytes (NUL-terminated, so
 * no NUL inside). NULL is STORE_EINVAL unless `nullable`; "" is STORE_EINVAL
 * unless `empty_ok`. Returns STORE_OK, STORE_EINVAL or STORE_ETOOBIG. */
static int check_text(const char *s, size_t max, bool nullable, bool empty_ok)
{
    if (!s)
        return nullable ? STORE_OK : STORE_EINVAL;
    size_t n = strnlen(s, max + 1);
    if (n > max)
        return STORE_ETOOBIG;
    if (n == 0 && !empty_ok)
        return STORE_EINVAL;
    return utf8_valid(s, n) ? STORE_OK : STORE_EINVAL;
}

static int check_id(const char *id)
{
    return store_id_valid(id) ? STORE_OK : STORE_EINVAL;
}

static int check_nullable_id(const char *id)
{
    return !id || store_id_valid(id) ? STORE_OK : STORE_EINVAL;
}

/* NULL (local mode) or a scope with a valid user id. */
static int check_scope(const store_scope_t *scope)
{
    return !scope || store_id_valid(scope->user_id) ? STORE_OK : STORE_EINVAL;
}

/* Copy a sha256 in hex (either case) to out[65] in lowercase. */
static int normalize_sha256(const char *in, char *out)
{
    if (!in)
        return STORE_EINVAL;
    for (int i = 0; i < 64; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return STORE_EINVAL; /* also stops at a NUL before 64 */
        out[i] = c;
    }
    if (in[64] != '\0')
        return STORE_EINVAL;
    out[64] = '\0';
    return STORE_OK;
}

/* Code points in valid UTF-8: every byte that is not a continuation byte. */
static int64_t count_chars(const char *s, size_t n)
{
    int64_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += ((unsigned char)s[i] & 0xc0) != 0x80;
    return count;
}

#define CHECK(expr)                   \
    do {                              \
        int check_rc_ = (expr);       \
        if (check_rc_ != STORE_OK)    \
            return check_rc_;         \
    } while (0)

/* ---- Opening ---------------------------------------------------------------- */

/* "scheme://..." with a scheme of letters, digits, '+', '-', '.' */
static bool looks_like_url(const char *s)
{
    const char *p = s;
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
        return false;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '+' || *p == '-' || *p == '.')
        p++;
    return strncmp(p, "://", 3) == 0;
}

int store_open(const char *url_or_path, store_t **out)
{
    if (!out)
        return STORE_EINVAL;
    *out = NULL;
    if (!url_or_path || !url_or_path[0])
        return STORE_EINVAL;

    const store_backend_ops_t *ops = NULL;
    const char *target = url_or_path;
    for (size_t i = 0; i < COUNT(backends) && !ops; i++) {
        size_t n = strlen(backends[i]->scheme);
        if (strncmp(url_or_path, backends[i]->scheme, n) == 0 && url_or_path[n] == ':') {
            ops = backends[i];
            target = url_or_path + n + 1;
        }
    }
    if (!ops) {
        if (looks_like_url(url_or_path))
            return STORE_EUNSUPPORTED; /* a scheme no backend has */
        ops = backends[0];
    }

    store_t *s = calloc(1, sizeof *s);
    if (!s)
        return STORE_ENOMEM;
    s->ops = ops;
    int rc = ops->open(target, &s->b);
    if (rc != STORE_OK) {
        free(s);
        return rc;
    }
    *out = s;
    return STORE_OK;
}

void store_close(store_t *s)
{
    if (!s)
        return;
    s->ops->close(s->b);
    free(s);
}

const store_backend_ops_t *store__backend(store_t *s, store_backend_t **b)
{
    *b = s->b;
    return s->ops;
}

const char *store_backend_name(const store_t *s)
{
    return s ? s->ops->name : "";
}

int store_check(store_t *s)
{
    if (!s)
        return STORE_EINVAL;
    return s->ops->check ? s->ops->check(s->b) : STORE_EUNSUPPORTED;
}

/* ---- Documents ------------------------------------------------------------ */

/* ---- Texts in pieces ---- */

struct store_text_src {
    const store_text_reader_t *r;
    char buf[STORE_TEXT_CHUNK];
    size_t len;        /* bytes in buf */
    size_t taken;      /* bytes of buf handed out by the last call */
    size_t total;      /* bytes handed out in all */
    int64_t chars;
    bool eof;
};

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int store__text_next(store_text_src_t *t, const char **piece, size_t *len)
{
    *piece = NULL;
    *len = 0;
    if (t->taken) {
        memmove(t->buf, t->buf + t->taken, t->len - t->taken);
        t->len -= t->taken;
        t->taken = 0;
    }
    while (!t->eof && t->len < sizeof t->buf) {
        size_t got = 0;
        int rc = t->r->read(t->r->ud, t->buf + t->len, sizeof t->buf - t->len, &got);
        if (rc != STORE_OK)
            return rc;
        if (got > sizeof t->buf - t->len)
            return STORE_EINVAL;
        if (got == 0)
            t->eof = true;
        t->len += got;
    }
    if (t->len == 0)
        return STORE_OK;
    size_t cut = t->len;
    if (!t->eof) {
        /* After the last blank of the second half, so a word is never split
         * between two pieces (each is indexed on its own); else between
         * two characters. */
        size_t p = t->len;
        while (p > t->len / 2 && !is_blank(t->buf[p - 1]))
            p--;
        cut = p > t->len / 2 ? p : utf8_complete_len(t->buf, t->len);
    }
    if (cut == 0 || memchr(t->buf, '\0', cut) || !utf8_valid(t->buf, cut))
        return STORE_EINVAL;
    if (cut > STORE_TEXT_MAX - t->total)
        return STORE_ETOOBIG;
    t->total += cut;
    t->chars += count_chars(t->buf, cut);
    t->taken = cut;
    *piece = t->buf;
    *len = cut;
    return STORE_OK;
}

int64_t store__text_chars(const store_text_src_t *t) { return t->chars; }

typedef struct {
    const char *p;
    size_t left;
} mem_text_t;

static int mem_read(void *ud, char *buf, size_t cap, size_t *got)
{
    mem_text_t *m = ud;
    size_t n = m->left < cap ? m->left : cap;
    memcpy(buf, m->p, n);
    m->p += n;
    m->left -= n;
    *got = n;
    return STORE_OK;
}

int store_doc_insert(store_t *s, const store_doc_t *doc, const char *text, size_t text_len,
                     store_doc_t *out, bool *existed)
{
    return store_doc_insert_scoped(s, NULL, doc, text, text_len, out, existed);
}

int store_doc_insert_scoped(store_t *s, const store_scope_t *scope, const store_doc_t *doc,
                            const char *text, size_t text_len, store_doc_t *out, bool *existed)
{
    if (out)
        store_doc_init(out);
    if (existed)
        *existed = false;
    if (!s || !doc || !text || !out)
        return STORE_EINVAL;
    if (text_len > STORE_TEXT_MAX)
        return STORE_ETOOBIG;
    if (memchr(text, '\0', text_len) || !utf8_valid(text, text_len))
        return STORE_EINVAL;
    mem_text_t m = { text, text_len };
    store_text_reader_t r = { mem_read, &m };
    return store_doc_insert_from_scoped(s, scope, doc, &r, out, existed);
}

int store_doc_insert_from(store_t *s, const store_doc_t *doc, const store_text_reader_t *text,
                          store_doc_t *out, bool *existed)
{
    return store_doc_insert_from_scoped(s, NULL, doc, text, out, existed);
}

int store_doc_insert_from_scoped(store_t *s, const store_scope_t *scope, const store_doc_t *doc,
                                 const store_text_reader_t *text, store_doc_t *out,
                                 bool *existed)
{
    if (out)
        store_doc_init(out);
    if (existed)
        *existed = false;
    if (!s || !doc || !text || !text->read || !out)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_nullable_id(doc->id));
    CHECK(check_text(doc->filename, STORE_NAME_MAX, false, false));
    CHECK(check_text(doc->stored_name, STORE_NAME_MAX, false, false));
    if (strchr(doc->stored_name, '/') || strcmp(doc->stored_name, ".") == 0 ||
        strcmp(doc->stored_name, "..") == 0)
        return STORE_EINVAL;
    if (!store_content_type_valid(doc->content_type) || doc->file_size < 0 ||
        doc->n_tokens < -1)
        return STORE_EINVAL;
    char sha[65];
    CHECK(normalize_sha256(doc->sha256, sha));

    char idbuf[STORE_UUID_BUFSZ];
    store_doc_t d = *doc; /* shallow: borrowed strings, never freed here */
    if (!d.id) {
        CHECK(store_id_new(idbuf));
        d.id = idbuf;
    }
    d.sha256 = sha;
    if (d.uploaded_at <= 0)
        d.uploaded_at = store_now_ms();

    store_text_src_t *src = calloc(1, sizeof *src);   /* one piece's buffer */
    if (!src)
        return STORE_ENOMEM;
    src->r = text;
    bool ex = false;
    int rc = s->ops->doc_insert(s->b, scope, &d, src, out, &ex);
    free(src);
    if (rc != STORE_OK) {
        store_doc_cleanup(out);
        return rc;
    }
    if (existed)
        *existed = ex;
    return STORE_OK;
}

int store_doc_copy_content(store_t *s, const store_scope_t *scope, const char *sha256,
                           const char *filename, store_doc_t *out, bool *existed)
{
    store_doc_init(out);
    if (existed)
        *existed = false;
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    char sha[65];
    CHECK(normalize_sha256(sha256, sha));
    CHECK(check_text(filename, STORE_NAME_MAX, false, false));
    char id[STORE_UUID_BUFSZ];
    CHECK(store_id_new(id));
    bool ex = false;
    int rc = s->ops->doc_copy_content(s->b, scope, sha, filename, id, store_now_ms(), out, &ex);
    if (rc != STORE_OK)
        store_doc_cleanup(out);
    else if (existed)
        *existed = ex;
    return rc;
}

int store_doc_get(store_t *s, const char *id, store_doc_t *out)
{
    return store_doc_get_scoped(s, NULL, id, out);
}

int store_doc_get_scoped(store_t *s, const store_scope_t *scope, const char *id,
                         store_doc_t *out)
{
    store_doc_init(out);
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_id(id));
    int rc = s->ops->doc_get(s->b, scope, id, out);
    if (rc != STORE_OK)
        store_doc_cleanup(out);
    return rc;
}

int store_doc_find_sha256(store_t *s, const char *sha256, store_doc_t *out)
{
    return store_doc_find_sha256_scoped(s, NULL, sha256, out);
}

int store_doc_find_sha256_scoped(store_t *s, const store_scope_t *scope, const char *sha256,
                                 store_doc_t *out)
{
    store_doc_init(out);
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    char sha[65];
    CHECK(normalize_sha256(sha256, sha));
    int rc = s->ops->doc_find_sha256(s->b, scope, sha, out);
    if (rc != STORE_OK)
        store_doc_cleanup(out);
    return rc;
}

int store_doc_text_foreach(store_t *s, const char *id, store_text_fn fn, void *ud)
{
    if (!s || !fn)
        return STORE_EINVAL;
    CHECK(check_id(id));
    return s->ops->doc_text_foreach(s->b, id, fn, ud);
}

static int append_piece(void *ud, const char *piece, size_t len)
{
    return buf_append(ud, piece, len) == BUF_OK ? 0 : 1;
}

int store_doc_text(store_t *s, const char *id, char **text, size_t *len)
{
    if (text)
        *text = NULL;
    if (len)
        *len = 0;
    if (!s || !text)
        return STORE_EINVAL;
    CHECK(check_id(id));
    buf_t b;
    buf_init(&b, STORE_TEXT_MAX);
    int rc = s->ops->doc_text_foreach(s->b, id, append_piece, &b);
    if (rc > 0)
        rc = STORE_ENOMEM;   /* the one limit is STORE_TEXT_MAX, which the store keeps */
    if (rc == STORE_OK && !(*text = b.data ? buf_steal(&b, len) : calloc(1, 1)))
        rc = STORE_ENOMEM;
    buf_cleanup(&b);
    return rc;
}

int store_doc_list(store_t *s, store_doc_list_t *out)
{
    return store_doc_list_scoped(s, NULL, out);
}

int store_doc_list_scoped(store_t *s, const store_scope_t *scope, store_doc_list_t *out)
{
    if (out)
        *out = (store_doc_list_t){0};
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    int rc = s->ops->doc_list(s->b, scope, out);
    if (rc != STORE_OK)
        store_doc_list_cleanup(out);
    return rc;
}

int store_doc_delete(store_t *s, const char *id, store_doc_t *out)
{
    return store_doc_delete_scoped(s, NULL, id, out, NULL);
}

int store_doc_delete_scoped(store_t *s, const store_scope_t *scope, const char *id,
                            store_doc_t *out, bool *file_unused)
{
    store_doc_init(out);
    if (file_unused)
        *file_unused = false;
    if (!s)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_id(id));
    store_doc_t tmp;
    store_doc_init(&tmp);
    bool unused = false;
    int rc = s->ops->doc_delete(s->b, scope, id, out ? out : &tmp, &unused);
    if (rc != STORE_OK)
        store_doc_cleanup(out);
    else if (file_unused)
        *file_unused = unused;
    store_doc_cleanup(&tmp);
    return rc;
}

int store_doc_set_shared(store_t *s, const store_scope_t *scope, const char *id, bool shared)
{
    if (!s)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_id(id));
    return s->ops->doc_set_shared(s->b, scope, id, shared);
}

int store_file_refs(store_t *s, const char *stored_name, int64_t *n)
{
    if (n)
        *n = 0;
    if (!s || !n)
        return STORE_EINVAL;
    CHECK(check_text(stored_name, STORE_NAME_MAX, false, false));
    return s->ops->file_refs(s->b, stored_name, n);
}

int store_doc_set_tokens(store_t *s, const char *id, int64_t n_tokens)
{
    if (!s || n_tokens < -1)
        return STORE_EINVAL;
    CHECK(check_id(id));
    return s->ops->doc_set_tokens(s->b, id, n_tokens);
}

/* Copy `err` (any bytes) into *out as valid UTF-8 of at most `max` (> 3)
 * bytes: invalid sequences become U+FFFD and a longer text is cut at a
 * character boundary and ends with "...". For diagnostic text (a cache
 * error, a user agent). On success *out is a heap string (caller frees). */
static int shorten_text(const char *err, size_t max, char **out)
{
    *out = NULL;
    size_t n = strnlen(err, max + 1);
    bool cut = n > max;
    buf_t b;
    buf_init(&b, 3 * (max + 1) + 8);
    if (utf8_append_sanitized(&b, err, utf8_complete_len(err, n)) != BUF_OK) {
        buf_cleanup(&b);
        return STORE_ENOMEM;
    }
    if (cut || b.len > max) {
        b.len = utf8_complete_len(b.data, max - 3);
        b.data[b.len] = '\0';
        if (buf_append(&b, "...", 3) != BUF_OK) {
            buf_cleanup(&b);
            return STORE_ENOMEM;
        }
    }
    *out = buf_steal(&b, NULL); /* "" when err was "" */
    buf_cleanup(&b);
    return *out ? STORE_OK : STORE_ENOMEM;
}

/* Check a cache state and make its final values into *out (shallow: the
 * strings are borrowed, except *err, the shortened error, which the caller
 * frees). */
static int cache_final(const store_cache_t *cache, store_cache_t *out, char **err)
{
    *err = NULL;
    if (!cache || (unsigned)cache->status >= COUNT(cache_status_names) || cache->tokens < -1 ||
        cache->bytes < -1 || isnan(cache->ms) || isinf(cache->ms))
        return STORE_EINVAL;
    CHECK(check_text(cache->entry_id, STORE_SHORT_MAX, true, false));
    CHECK(check_text(cache->tier, STORE_SHORT_MAX, true, false));
    *out = *cache;
    if (out->ms < 0)
        out->ms = -1;
    if (out->cached_at < 0)
        out->cached_at = -1;
    if (out->status == STORE_CACHE_CACHED && out->cached_at <= 0)
        out->cached_at = store_now_ms();
    if (out->error) {
        CHECK(shorten_text(out->error, STORE_CACHE_ERROR_MAX, err));
        out->error = *err;
    }
    return STORE_OK;
}

int store_doc_set_cache(store_t *s, const char *id, const store_cache_t *cache)
{
    if (!s)
        return STORE_EINVAL;
    CHECK(check_id(id));
    store_cache_t c;
    char *err;
    CHECK(cache_final(cache, &c, &err));
    int rc = s->ops->doc_set_cache(s->b, id, &c);
    free(err);
    return rc;
}

int store_doc_reset_cache(store_t *s, bool only_caching, int64_t *n_changed)
{
    if (n_changed)
        *n_changed = 0;
    if (!s)
        return STORE_EINVAL;
    int64_t n = 0;
    int rc = s->ops->doc_reset_cache(s->b, only_caching, &n);
    if (rc == STORE_OK && n_changed)
        *n_changed = n;
    return rc;
}

int store_doc_search(store_t *s, const char *query, size_t limit, store_doc_list_t *out)
{
    return store_doc_search_scoped(s, NULL, query, limit, out);
}

int store_doc_search_scoped(store_t *s, const store_scope_t *scope, const char *query,
                            size_t limit, store_doc_list_t *out)
{
    if (out)
        *out = (store_doc_list_t){0};
    if (!s || !out || limit < 1 || limit > 1000)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_text(query, STORE_QUERY_MAX, false, false));
    if (!s->ops->doc_search)
        return STORE_EUNSUPPORTED;
    int rc = s->ops->doc_search(s->b, scope, query, limit, out);
    if (rc != STORE_OK)
        store_doc_list_cleanup(out);
    return rc;
}

/* ---- Long documents ------------------------------------------------------ */

static int check_key(const char *key)
{
    return check_text(key, STORE_KEY_MAX, false, false);
}

int store_doc_set_ocr(store_t *s, const char *id, const char *pages, int confidence)
{
    if (!s)
        return STORE_EINVAL;
    CHECK(check_id(id));
    if (pages && !*pages)
        pages = NULL;
    if ((pages == NULL) != (confidence == -1) || confidence < -1 || confidence > 100)
        return STORE_EINVAL;
    if (pages) {
        /* "1,2,5": numbers without leading zeros, one comma between. */
        size_t n = strlen(pages);
        if (n > STORE_OCR_PAGES_MAX)
            return STORE_EINVAL;
        for (size_t i = 0; i < n; i++) {
            bool start = i == 0 || pages[i - 1] == ',';
            if (pages[i] == ',' ? start || i + 1 == n
                                : pages[i] < '0' || pages[i] > '9' || (start && pages[i] == '0'))
                return STORE_EINVAL;
        }
    }
    return s->ops->doc_set_ocr(s->b, id, pages, confidence);
}

int store_doc_set_marks(store_t *s, const char *id, const store_mark_t *marks, size_t n)
{
    if (!s || (n && !marks))
        return STORE_EINVAL;
    CHECK(check_id(id));
    if (n > STORE_MARKS_MAX)
        return STORE_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        const store_mark_t *m = &marks[i];
        bool page = m->kind == STORE_MARK_PAGE;
        if ((!page && m->kind != STORE_MARK_HEADING) || m->offset < 0 ||
            (i && m->offset < marks[i - 1].offset) ||
            (page ? m->number < 1 : m->number < 1 || m->number > 6))
            return STORE_EINVAL;
        CHECK(check_text(m->label, STORE_LABEL_MAX, true, true));
    }
    return s->ops->doc_set_marks(s->b, id, marks, n);
}

int store_doc_marks(store_t *s, const char *id, store_mark_list_t *out)
{
    if (out)
        *out = (store_mark_list_t){0};
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_id(id));
    int rc = s->ops->doc_marks(s->b, id, out);
    if (rc != STORE_OK)
        store_mark_list_cleanup(out);
    return rc;
}

struct store_chunk_src {
    const store_chunk_reader_t *r;
};

int store__chunk_next(store_chunk_src_t *src, const store_chunk_t **chunk,
                      const char **index_text)
{
    *chunk = NULL;
    *index_text = NULL;
    const store_chunk_t *c = NULL;
    const char *ix = NULL;
    int rc = src->r->next(src->r->ud, &c, &ix);
    if (rc != STORE_OK || !c)
        return rc;
    if (c->start < 0 || c->end < c->start || c->n_chars < 0 || c->est_tokens < 0 ||
        c->page_first < 0 || c->page_last < c->page_first)
        return STORE_EINVAL;
    CHECK(check_text(c->content, STORE_CHUNK_MAX, false, false));
    CHECK(check_text(ix, STORE_CHUNK_MAX, false, true));
    CHECK(check_text(c->label_first, STORE_LABEL_MAX, true, true));
    CHECK(check_text(c->label_last, STORE_LABEL_MAX, true, true));
    CHECK(check_text(c->heading, STORE_HEADING_MAX, true, true));
    *chunk = c;
    *index_text = ix;
    return STORE_OK;
}

int store_doc_set_chunks(store_t *s, const char *id, const store_chunk_reader_t *r,
                         int64_t *n_out)
{
    if (n_out)
        *n_out = 0;
    if (!s || !r || !r->next)
        return STORE_EINVAL;
    CHECK(check_id(id));
    store_chunk_src_t src = { r };
    int64_t n = 0;
    int rc = s->ops->doc_set_chunks(s->b, id, &src, &n);
    if (rc == STORE_OK && n_out)
        *n_out = n;
    return rc;
}

int store_chunks_set_tokens(store_t *s, const char *id, const char *key, const int64_t *tokens,
                            size_t n)
{
    if (!s || (n && !tokens))
        return STORE_EINVAL;
    CHECK(check_id(id));
    CHECK(check_key(key));
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0)
            return STORE_EINVAL;
    return s->ops->chunks_set_tokens(s->b, id, key, tokens, n);
}

int store_chunk_list(store_t *s, const char *id, int64_t first, size_t limit, bool content,
                     store_chunk_list_t *out, int64_t *total)
{
    if (out)
        *out = (store_chunk_list_t){0};
    if (total)
        *total = 0;
    if (!s || !out || first < 0 || limit < 1 || limit > 10000)
        return STORE_EINVAL;
    CHECK(check_id(id));
    int64_t t = 0;
    int rc = s->ops->chunk_list(s->b, id, first, limit, content, out, &t);
    if (rc != STORE_OK)
        store_chunk_list_cleanup(out);
    else if (total)
        *total = t;
    return rc;
}

int store_chunk_get(store_t *s, const char *id, int64_t seq, store_chunk_t *out)
{
    store_chunk_init(out);
    if (!s || !out || seq < 0)
        return !s || !out ? STORE_EINVAL : STORE_ENOTFOUND;
    CHECK(check_id(id));
    int rc = s->ops->chunk_get(s->b, id, seq, out);
    if (rc != STORE_OK)
        store_chunk_cleanup(out);
    return rc;
}

int store_chunk_search(store_t *s, const char *const *doc_ids, size_t n_ids, const char *match,
                       size_t limit, store_chunk_list_t *out)
{
    if (out)
        *out = (store_chunk_list_t){0};
    if (!s || !out || !doc_ids || n_ids < 1 || n_ids > 64 || limit < 1 || limit > 1000)
        return STORE_EINVAL;
    for (size_t i = 0; i < n_ids; i++)
        CHECK(check_id(doc_ids[i]));
    CHECK(check_text(match, STORE_CHUNK_MAX, false, false));
    if (!s->ops->chunk_search)
        return STORE_EUNSUPPORTED;
    int rc = s->ops->chunk_search(s->b, doc_ids, n_ids, match, limit, out);
    if (rc != STORE_OK)
        store_chunk_list_cleanup(out);
    return rc;
}

int store_parts_set(store_t *s, const char *id, const char *key, const store_part_t *parts,
                    size_t n)
{
    if (!s || (n && !parts))
        return STORE_EINVAL;
    CHECK(check_id(id));
    CHECK(check_key(key));
    if (n > STORE_PARTS_MAX)
        return STORE_ETOOBIG;
    store_part_t *fin = n ? calloc(n, sizeof *fin) : NULL;
    char **errs = n ? calloc(n, sizeof *errs) : NULL;
    int rc = n && (!fin || !errs) ? STORE_ENOMEM : STORE_OK;
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        const store_part_t *p = &parts[i];
        if (p->chunk_first < 0 || p->chunk_last < p->chunk_first || p->tokens < -1 ||
            p->content_length < 0) {
            rc = STORE_EINVAL;
            break;
        }
        fin[i] = *p;   /* shallow */
        rc = cache_final(&p->cache, &fin[i].cache, &errs[i]);
    }
    if (rc == STORE_OK)
        rc = s->ops->parts_set(s->b, id, key, fin, n);
    for (size_t i = 0; errs && i < n; i++)
        free(errs[i]);
    free(errs);
    free(fin);
    return rc;
}

int store_parts_list(store_t *s, const char *id, const char *key, store_part_list_t *out)
{
    if (out)
        *out = (store_part_list_t){0};
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_id(id));
    CHECK(check_key(key));
    int rc = s->ops->parts_list(s->b, id, key, out);
    if (rc != STORE_OK)
        store_part_list_cleanup(out);
    return rc;
}

int store_part_set_cache(store_t *s, const char *id, const char *key, int64_t seq,
                         const store_cache_t *cache)
{
    if (!s || seq < 0)
        return !s ? STORE_EINVAL : STORE_ENOTFOUND;
    CHECK(check_id(id));
    CHECK(check_key(key));
    store_cache_t c;
    char *err;
    CHECK(cache_final(cache, &c, &err));
    int rc = s->ops->part_set_cache(s->b, id, key, seq, &c);
    free(err);
    return rc;
}

/* ---- Sessions --------------------------------------------------------------- */

int store_session_create(store_t *s, const char *id, const char *document_id, const char *title,
                         store_session_t *out)
{
    return store_session_create_scoped(s, NULL, id, document_id, title, out);
}

int store_session_create_scoped(store_t *s, const store_scope_t *scope, const char *id,
                                const char *document_id, const char *title,
                                store_session_t *out)
{
    store_session_init(out);
    if (!s)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_nullable_id(id));
    CHECK(check_nullable_id(document_id));
    CHECK(check_text(title, STORE_NAME_MAX, true, true));
    char idbuf[STORE_UUID_BUFSZ];
    if (!id) {
        CHECK(store_id_new(idbuf));
        id = idbuf;
    }
    store_session_t tmp;
    store_session_init(&tmp);
    int rc = s->ops->session_create(s->b, scope, id, document_id, title, store_now_ms(),
                                    out ? out : &tmp);
    if (rc != STORE_OK)
        store_session_cleanup(out);
    store_session_cleanup(&tmp);
    return rc;
}

int store_session_ensure(store_t *s, const char *id, const char *document_id,
                         store_session_t *out, bool *created)
{
    return store_session_ensure_scoped(s, NULL, id, document_id, out, created);
}

int store_session_ensure_scoped(store_t *s, const store_scope_t *scope, const char *id,
                                const char *document_id, store_session_t *out, bool *created)
{
    store_session_init(out);
    if (created)
        *created = false;
    if (!s)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_id(id));
    CHECK(check_nullable_id(document_id));
    store_session_t tmp;
    store_session_init(&tmp);
    bool cr = false;
    int rc = s->ops->session_ensure(s->b, scope, id, document_id, store_now_ms(),
                                    out ? out : &tmp, &cr);
    if (rc != STORE_OK)
        store_session_cleanup(out);
    else if (created)
        *created = cr;
    store_session_cleanup(&tmp);
    return rc;
}

int store_session_get(store_t *s, const char *id, store_session_t *out)
{
    return store_session_get_scoped(s, NULL, id, out);
}

int store_session_get_scoped(store_t *s, const store_scope_t *scope, const char *id,
                             store_session_t *out)
{
    store_session_init(out);
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_id(id));
    int rc = s->ops->session_get(s->b, scope, id, out);
    if (rc != STORE_OK)
        store_session_cleanup(out);
    return rc;
}

int store_session_touch(store_t *s, const char *id)
{
    return store_session_touch_scoped(s, NULL, id);
}

int store_session_touch_scoped(store_t *s, const store_scope_t *scope, const char *id)
{
    if (!s)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_id(id));
    return s->ops->session_touch(s->b, scope, id, store_now_ms());
}

int store_session_set_document(store_t *s, const char *id, const char *document_id)
{
    return store_session_set_document_scoped(s, NULL, id, document_id);
}

int store_session_set_document_scoped(store_t *s, const store_scope_t *scope, const char *id,
                                      const char *document_id)
{
    return store_session_set_documents_scoped(s, scope, id, document_id ? &document_id : NULL,
                                              document_id ? 1 : 0);
}

/* ids[0..n): 0..STORE_SET_MAX valid, distinct ids (at least `min`). */
static int check_id_set(const char *const *ids, size_t n, size_t min)
{
    if (n < min || n > STORE_SET_MAX || (n && !ids))
        return STORE_EINVAL;
    for (size_t i = 0; i < n; i++) {
        CHECK(check_id(ids[i]));
        for (size_t k = 0; k < i; k++)
            if (strcmp(ids[k], ids[i]) == 0)
                return STORE_EINVAL;
    }
    return STORE_OK;
}

int store_session_set_documents(store_t *s, const char *id, const char *const *ids, size_t n)
{
    return store_session_set_documents_scoped(s, NULL, id, ids, n);
}

int store_session_set_documents_scoped(store_t *s, const store_scope_t *scope, const char *id,
                                       const char *const *ids, size_t n)
{
    if (!s)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_id(id));
    CHECK(check_id_set(ids, n, 0));
    return s->ops->session_set_documents(s->b, scope, id, ids, n);
}

void store_id_list_cleanup(store_id_list_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->ids[i]);
    free(l->ids);
    l->ids = NULL;
    l->n = 0;
}

int store_session_documents(store_t *s, const char *id, store_id_list_t *out)
{
    return store_session_documents_scoped(s, NULL, id, out);
}

int store_session_documents_scoped(store_t *s, const store_scope_t *scope, const char *id,
                                   store_id_list_t *out)
{
    if (out)
        *out = (store_id_list_t){ 0 };
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_id(id));
    int rc = s->ops->session_documents(s->b, scope, id, out);
    if (rc != STORE_OK)
        store_id_list_cleanup(out);
    return rc;
}

void store_collection_cleanup(store_collection_t *c)
{
    if (!c)
        return;
    free(c->id);
    free(c->name);
    store_id_list_cleanup(&c->docs);
    memset(c, 0, sizeof *c);
}

int store_collection_create(store_t *s, const char *name, const char *const *ids, size_t n,
                            store_collection_t *out)
{
    store_collection_t tmp;
    if (out)
        memset(out, 0, sizeof *out);
    if (!s)
        return STORE_EINVAL;
    CHECK(check_text(name, STORE_NAME_MAX, false, false));
    CHECK(check_id_set(ids, n, 1));
    char id[STORE_UUID_BUFSZ];
    CHECK(store_id_new(id));
    memset(&tmp, 0, sizeof tmp);
    int rc = s->ops->collection_create(s->b, id, name, store_now_ms(), ids, n, &tmp);
    if (rc == STORE_OK && out)
        *out = tmp;
    else
        store_collection_cleanup(&tmp);
    return rc;
}

int store_collection_get(store_t *s, const char *id, store_collection_t *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_id(id));
    int rc = s->ops->collection_get(s->b, id, out);
    if (rc != STORE_OK)
        store_collection_cleanup(out);
    return rc;
}

int store_session_set_title(store_t *s, const char *id, const char *title)
{
    return store_session_set_title_scoped(s, NULL, id, title);
}

int store_session_set_title_scoped(store_t *s, const store_scope_t *scope, const char *id,
                                   const char *title)
{
    if (!s)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_id(id));
    CHECK(check_text(title, STORE_NAME_MAX, true, true));
    return s->ops->session_set_title(s->b, scope, id, title);
}

int store_session_list(store_t *s, size_t limit, store_session_list_t *out)
{
    return store_session_list_scoped(s, NULL, limit, out);
}

int store_session_list_scoped(store_t *s, const store_scope_t *scope, size_t limit,
                              store_session_list_t *out)
{
    if (out)
        *out = (store_session_list_t){0};
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    int rc = s->ops->session_list(s->b, scope, limit, out);
    if (rc != STORE_OK)
        store_session_list_cleanup(out);
    return rc;
}

int store_session_delete(store_t *s, const char *id)
{
    return store_session_delete_scoped(s, NULL, id);
}

int store_session_delete_scoped(store_t *s, const store_scope_t *scope, const char *id)
{
    if (!s)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_id(id));
    return s->ops->session_delete(s->b, scope, id);
}

int store_session_delete_expired(store_t *s, int64_t max_idle_s, int64_t now_ms,
                                 int64_t *n_deleted)
{
    if (n_deleted)
        *n_deleted = 0;
    if (!s || max_idle_s < 0 || max_idle_s > INT64_MAX / 2000)
        return STORE_EINVAL;
    if (now_ms <= 0)
        now_ms = store_now_ms();
    if (now_ms > INT64_MAX / 2)
        return STORE_EINVAL;
    int64_t n = 0;
    int rc = s->ops->session_delete_idle(s->b, now_ms - max_idle_s * 1000, &n);
    if (rc == STORE_OK && n_deleted)
        *n_deleted = n;
    return rc;
}

/* ---- Messages --------------------------------------------------------------- */

int store_msg_append(store_t *s, const char *session_id, store_role_t role, const char *content,
                     bool incomplete, const char *meta, int64_t *id_out)
{
    return store_msg_append_scoped(s, NULL, session_id, role, content, incomplete, meta, id_out);
}

int store_msg_append_scoped(store_t *s, const store_scope_t *scope, const char *session_id,
                            store_role_t role, const char *content, bool incomplete,
                            const char *meta, int64_t *id_out)
{
    if (id_out)
        *id_out = -1;
    if (!s || (unsigned)role >= COUNT(role_names))
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_id(session_id));
    CHECK(check_text(content, STORE_CONTENT_MAX, false, true));
    CHECK(check_text(meta, STORE_META_MAX, true, false));
    int64_t id = -1;
    int rc = s->ops->msg_append(s->b, scope, session_id, role, content, incomplete, meta,
                                store_now_ms(), &id);
    if (rc == STORE_OK && id_out)
        *id_out = id;
    return rc;
}

int store_msg_list(store_t *s, const char *session_id, size_t limit, store_msg_list_t *out)
{
    return store_msg_list_scoped(s, NULL, session_id, limit, out);
}

int store_msg_list_scoped(store_t *s, const store_scope_t *scope, const char *session_id,
                          size_t limit, store_msg_list_t *out)
{
    if (out)
        *out = (store_msg_list_t){0};
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_id(session_id));
    int rc = s->ops->msg_list(s->b, scope, session_id, limit, out);
    if (rc != STORE_OK)
        store_msg_list_cleanup(out);
    return rc;
}

int store_msg_count(store_t *s, const char *session_id, int64_t *n)
{
    return store_msg_count_scoped(s, NULL, session_id, n);
}

int store_msg_count_scoped(store_t *s, const store_scope_t *scope, const char *session_id,
                           int64_t *n)
{
    if (n)
        *n = 0;
    if (!s || !n)
        return STORE_EINVAL;
    CHECK(check_scope(scope));
    CHECK(check_id(session_id));
    return s->ops->msg_count(s->b, scope, session_id, n);
}

/* ---- Accounts --------------------------------------------------------------- */

/* A password hash as libsodium encodes it: printable ASCII without spaces. */
static int check_password_hash(const char *h)
{
    if (!h || !h[0])
        return STORE_EINVAL;
    size_t n = strnlen(h, STORE_PASSWORD_HASH_MAX + 1);
    if (n > STORE_PASSWORD_HASH_MAX)
        return STORE_ETOOBIG;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)h[i] <= 0x20 || (unsigned char)h[i] >= 0x7f)
            return STORE_EINVAL;
    return STORE_OK;
}

static int check_user_role(store_user_role_t role)
{
    return (unsigned)role < COUNT(user_role_names) ? STORE_OK : STORE_EINVAL;
}

/* A "now" argument: <= 0 means the clock; beyond year 9999 is refused so
 * that now + an interval cannot overflow. */
static int resolve_now(int64_t *now_ms)
{
    if (*now_ms <= 0)
        *now_ms = store_now_ms();
    return *now_ms <= STORE_TIME_LAST ? STORE_OK : STORE_EINVAL;
}

/* A touch interval in seconds (0..10 years) as ms into *ms. */
static int touch_interval(int64_t touch_after_s, int64_t *ms)
{
    if (touch_after_s < 0 || touch_after_s > 10 * 366 * 86400LL)
        return STORE_EINVAL;
    *ms = touch_after_s * 1000;
    return STORE_OK;
}

int store_user_create(store_t *s, const char *name, const char *password_hash,
                      store_user_role_t role, store_user_t *out)
{
    store_user_init(out);
    if (!s || !store_user_name_valid(name))
        return STORE_EINVAL;
    CHECK(check_password_hash(password_hash));
    CHECK(check_user_role(role));
    char id[STORE_UUID_BUFSZ];
    CHECK(store_id_new(id));
    store_user_t tmp;
    store_user_init(&tmp);
    int rc = s->ops->user_create(s->b, id, name, password_hash, role, store_now_ms(),
                                 out ? out : &tmp);
    if (rc != STORE_OK)
        store_user_cleanup(out);
    store_user_cleanup(&tmp);
    return rc;
}

int store_user_get(store_t *s, const char *id, store_user_t *out)
{
    store_user_init(out);
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_id(id));
    int rc = s->ops->user_get(s->b, id, false, out);
    if (rc != STORE_OK)
        store_user_cleanup(out);
    return rc;
}

int store_user_get_by_name(store_t *s, const char *name, store_user_t *out)
{
    store_user_init(out);
    if (!s || !out || !name)
        return STORE_EINVAL;
    if (!store_user_name_valid(name))
        return STORE_ENOTFOUND;
    int rc = s->ops->user_get(s->b, name, true, out);
    if (rc != STORE_OK)
        store_user_cleanup(out);
    return rc;
}

int store_user_list(store_t *s, store_user_list_t *out)
{
    if (out)
        *out = (store_user_list_t){0};
    if (!s || !out)
        return STORE_EINVAL;
    int rc = s->ops->user_list(s->b, out);
    if (rc != STORE_OK)
        store_user_list_cleanup(out);
    return rc;
}

int store_user_set_role(store_t *s, const char *id, store_user_role_t role)
{
    if (!s)
        return STORE_EINVAL;
    CHECK(check_id(id));
    CHECK(check_user_role(role));
    return s->ops->user_set_role(s->b, id, role, store_now_ms());
}

int store_user_set_disabled(store_t *s, const char *id, bool disabled)
{
    if (!s)
        return STORE_EINVAL;
    CHECK(check_id(id));
    return s->ops->user_set_disabled(s->b, id, disabled, store_now_ms());
}

int store_user_set_password(store_t *s, const char *id, const char *password_hash)
{
    if (!s)
        return STORE_EINVAL;
    CHECK(check_id(id));
    CHECK(check_password_hash(password_hash));
    return s->ops->user_set_password(s->b, id, password_hash, store_now_ms());
}

int store_user_delete(store_t *s, const char *id, store_doc_list_t *docs,
                      store_id_list_t *unused_files)
{
    if (docs)
        *docs = (store_doc_list_t){0};
    if (unused_files)
        *unused_files = (store_id_list_t){0};
    if (!s)
        return STORE_EINVAL;
    CHECK(check_id(id));
    store_doc_list_t d = {0};
    store_id_list_t f = {0};
    int rc = s->ops->user_delete(s->b, id, &d, &f);
    if (rc == STORE_OK && docs) {
        *docs = d;
        d = (store_doc_list_t){0};
    }
    if (rc == STORE_OK && unused_files) {
        *unused_files = f;
        f = (store_id_list_t){0};
    }
    store_doc_list_cleanup(&d);
    store_id_list_cleanup(&f);
    return rc;
}

/* *pa = a and *pb = b, for the ones given (not NULL). */
static void put2(int64_t *pa, int64_t a, int64_t *pb, int64_t b)
{
    if (pa)
        *pa = a;
    if (pb)
        *pb = b;
}

int store_user_count(store_t *s, int64_t *n_users, int64_t *n_admins)
{
    put2(n_users, 0, n_admins, 0);
    if (!s)
        return STORE_EINVAL;
    int64_t u = 0, a = 0;
    int rc = s->ops->user_count(s->b, &u, &a);
    if (rc == STORE_OK)
        put2(n_users, u, n_admins, a);
    return rc;
}

int store_user_usage(store_t *s, const char *id, int64_t *bytes, int64_t *n_docs)
{
    put2(bytes, 0, n_docs, 0);
    if (!s)
        return STORE_EINVAL;
    CHECK(check_id(id));
    int64_t b = 0, n = 0;
    int rc = s->ops->user_usage(s->b, id, &b, &n);
    if (rc == STORE_OK)
        put2(bytes, b, n_docs, n);
    return rc;
}

int store_adopt_unowned(store_t *s, const char *user_id, int64_t *n_docs, int64_t *n_sessions)
{
    put2(n_docs, 0, n_sessions, 0);
    if (!s)
        return STORE_EINVAL;
    CHECK(check_id(user_id));
    int64_t d = 0, ss = 0;
    int rc = s->ops->adopt_unowned(s->b, user_id, &d, &ss);
    if (rc == STORE_OK)
        put2(n_docs, d, n_sessions, ss);
    return rc;
}

/* ---- Logins ---- */

int store_login_create(store_t *s, const char *hash, const char *user_id, int64_t idle_s,
                       const char *client_addr, const char *user_agent, store_login_t *out)
{
    store_login_init(out);
    if (!s || idle_s < 1 || idle_s > 10 * 366 * 86400LL)
        return STORE_EINVAL;
    char h[65];
    CHECK(normalize_sha256(hash, h));
    CHECK(check_id(user_id));
    CHECK(check_text(client_addr, STORE_ADDR_MAX, true, false));
    char *ua = NULL;
    if (user_agent)
        CHECK(shorten_text(user_agent, STORE_USER_AGENT_MAX, &ua));
    store_login_t tmp;
    store_login_init(&tmp);
    int rc = s->ops->login_create(s->b, h, user_id, idle_s * 1000, client_addr, ua,
                                  store_now_ms(), out ? out : &tmp);
    if (rc != STORE_OK)
        store_login_cleanup(out);
    store_login_cleanup(&tmp);
    free(ua);
    return rc;
}

int store_login_lookup(store_t *s, const char *hash, int64_t now_ms, int64_t touch_after_s,
                       store_login_t *login, store_user_t *user)
{
    store_login_init(login);
    store_user_init(user);
    if (!s || !user)
        return STORE_EINVAL;
    char h[65];
    int64_t touch_ms;
    CHECK(normalize_sha256(hash, h));
    CHECK(touch_interval(touch_after_s, &touch_ms));
    CHECK(resolve_now(&now_ms));
    store_login_t tmp;
    store_login_init(&tmp);
    int rc = s->ops->login_lookup(s->b, h, now_ms, touch_ms, login ? login : &tmp, user);
    if (rc != STORE_OK) {
        store_login_cleanup(login);
        store_user_cleanup(user);
    }
    store_login_cleanup(&tmp);
    return rc;
}

int store_login_list(store_t *s, const char *user_id, store_login_list_t *out)
{
    if (out)
        *out = (store_login_list_t){0};
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_id(user_id));
    int rc = s->ops->login_list(s->b, user_id, out);
    if (rc != STORE_OK)
        store_login_list_cleanup(out);
    return rc;
}

int store_login_delete(store_t *s, const char *hash, const char *user_id)
{
    if (!s)
        return STORE_EINVAL;
    char h[65];
    CHECK(normalize_sha256(hash, h));
    CHECK(check_nullable_id(user_id));
    return s->ops->login_delete(s->b, h, user_id);
}

int store_login_delete_user(store_t *s, const char *user_id, const char *except_hash,
                            int64_t *n_deleted)
{
    if (n_deleted)
        *n_deleted = 0;
    if (!s)
        return STORE_EINVAL;
    CHECK(check_id(user_id));
    char h[65];
    if (except_hash)
        CHECK(normalize_sha256(except_hash, h));
    int64_t n = 0;
    int rc = s->ops->login_delete_user(s->b, user_id, except_hash ? h : NULL, &n);
    if (rc == STORE_OK && n_deleted)
        *n_deleted = n;
    return rc;
}

int store_login_sweep(store_t *s, int64_t now_ms, int64_t *n_deleted)
{
    if (n_deleted)
        *n_deleted = 0;
    if (!s)
        return STORE_EINVAL;
    CHECK(resolve_now(&now_ms));
    int64_t n = 0;
    int rc = s->ops->login_sweep(s->b, now_ms, &n);
    if (rc == STORE_OK && n_deleted)
        *n_deleted = n;
    return rc;
}

/* ---- API tokens ---- */

int store_token_create(store_t *s, const char *user_id, const char *name, const char *hash,
                       store_token_scope_t scope, int64_t expires_at, store_token_t *out)
{
    store_token_init(out);
    if (!s || (unsigned)scope >= COUNT(token_scope_names))
        return STORE_EINVAL;
    CHECK(check_id(user_id));
    CHECK(check_text(name, STORE_TOKEN_NAME_MAX, false, false));
    char h[65];
    CHECK(normalize_sha256(hash, h));
    int64_t now = store_now_ms();
    if (expires_at <= 0)
        expires_at = -1;
    else if (expires_at <= now || expires_at > STORE_TIME_LAST)
        return STORE_EINVAL;
    char id[STORE_UUID_BUFSZ];
    CHECK(store_id_new(id));
    store_token_t tmp;
    store_token_init(&tmp);
    int rc = s->ops->token_create(s->b, id, user_id, name, h, scope, expires_at, now,
                                  out ? out : &tmp);
    if (rc != STORE_OK)
        store_token_cleanup(out);
    store_token_cleanup(&tmp);
    return rc;
}

int store_token_list(store_t *s, const char *user_id, store_token_list_t *out)
{
    if (out)
        *out = (store_token_list_t){0};
    if (!s || !out)
        return STORE_EINVAL;
    CHECK(check_id(user_id));
    int rc = s->ops->token_list(s->b, user_id, out);
    if (rc != STORE_OK)
        store_token_list_cleanup(out);
    return rc;
}

int store_token_list_all(store_t *s, store_token_list_t *out)
{
    if (out)
        *out = (store_token_list_t){0};
    if (!s || !out)
        return STORE_EINVAL;
    int rc = s->ops->token_list_all(s->b, out);
    if (rc != STORE_OK)
        store_token_list_cleanup(out);
    return rc;
}

int store_collection_ids(store_t *s, store_id_list_t *out)
{
    if (out)
        *out = (store_id_list_t){0};
    if (!s || !out)
        return STORE_EINVAL;
    int rc = s->ops->collection_ids(s->b, out);
    if (rc != STORE_OK)
        store_id_list_cleanup(out);
    return rc;
}

int store_token_lookup(store_t *s, const char *hash, int64_t now_ms, int64_t touch_after_s,
                       store_token_t *token, store_user_t *user)
{
    store_token_init(token);
    store_user_init(user);
    if (!s || !user)
        return STORE_EINVAL;
    char h[65];
    int64_t touch_ms;
    CHECK(normalize_sha256(hash, h));
    CHECK(touch_interval(touch_after_s, &touch_ms));
    CHECK(resolve_now(&now_ms));
    store_token_t tmp;
    store_token_init(&tmp);
    int rc = s->ops->token_lookup(s->b, h, now_ms, touch_ms, token ? token : &tmp, user);
    if (rc != STORE_OK) {
        store_token_cleanup(token);
        store_user_cleanup(user);
    }
    store_token_cleanup(&tmp);
    return rc;
}

int store_token_delete(store_t *s, const char *user_id, const char *id)
{
    if (!s)
        return STORE_EINVAL;
    CHECK(check_id(user_id));
    CHECK(check_id(id));
    return s->ops->token_delete(s->b, user_id, id);
}

int store_token_delete_any(store_t *s, const char *id)
{
    if (!s)
        return STORE_EINVAL;
    CHECK(check_id(id));
    return s->ops->token_delete(s->b, NULL, id);
}

/* ---- Audit log ---- */

int store_audit_append(store_t *s, const store_audit_t *e, int64_t max_rows, int64_t *id_out)
{
    if (id_out)
        *id_out = -1;
    if (!s || !e || max_rows < 0)
        return STORE_EINVAL;
    CHECK(check_text(e->action, STORE_ACTION_MAX, false, false));
    CHECK(check_nullable_id(e->actor_id));
    CHECK(check_text(e->actor_name, STORE_NAME_MAX, true, false));
    CHECK(check_text(e->target, STORE_NAME_MAX, true, true));
    CHECK(check_text(e->client_addr, STORE_ADDR_MAX, true, false));
    CHECK(check_text(e->detail, STORE_DETAIL_MAX, true, false));
    store_audit_t a = *e;   /* shallow: borrowed strings */
    CHECK(resolve_now(&a.ts));
    int64_t id = -1;
    int rc = s->ops->audit_append(s->b, &a, max_rows, &id);
    if (rc == STORE_OK && id_out)
        *id_out = id;
    return rc;
}

int store_audit_list(store_t *s, const store_audit_filter_t *f, store_audit_list_t *out)
{
    if (out)
        *out = (store_audit_list_t){0};
    if (!s || !f || !out || f->limit < 1 || f->limit > 1000 ||
        (uint64_t)f->offset > (uint64_t)INT64_MAX)
        return STORE_EINVAL;
    CHECK(check_text(f->actor, STORE_NAME_MAX, true, false));
    CHECK(check_text(f->action, STORE_ACTION_MAX, true, false));
    int rc = s->ops->audit_list(s->b, f, out);
    if (rc != STORE_OK)
        store_audit_list_cleanup(out);
    return rc;
}

int store_audit_prune(store_t *s, int64_t max_rows, int64_t *n_deleted)
{
    if (n_deleted)
        *n_deleted = 0;
    if (!s || max_rows < 0)
        return STORE_EINVAL;
    int64_t n = 0;
    int rc = s->ops->audit_prune(s->b, max_rows, &n);
    if (rc == STORE_OK && n_deleted)
        *n_deleted = n;
    return rc;
}

/* ---- Periodic jobs ------------------------------------------------------------ */

int store_job_claim(store_t *s, const char *name, int64_t interval_ms, bool *claimed)
{
    if (claimed)
        *claimed = false;
    if (!s || !name || !claimed || interval_ms < 0)
        return STORE_EINVAL;
    size_t n = strlen(name);
    if (n < 1 || n > STORE_JOB_NAME_MAX || !utf8_valid(name, n))
        return STORE_EINVAL;
    return s->ops->job_claim(s->b, name, store_now_ms(), interval_ms, claimed);
}

static bool setting_key_ok(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    return n >= 1 && n <= STORE_JOB_NAME_MAX && utf8_valid(key, n);
}

int store_setting_set(store_t *s, const char *key, const char *value)
{
    if (!s || !setting_key_ok(key) || !value || strlen(value) > STORE_SETTING_MAX ||
        !utf8_valid(value, strlen(value)))
        return STORE_EINVAL;
    return s->ops->setting_set(s->b, key, value, store_now_ms());
}

int store_setting_get(store_t *s, const char *key, char **value, int64_t *updated_at)
{
    if (value)
        *value = NULL;
    if (!s || !setting_key_ok(key) || !value || !updated_at)
        return STORE_EINVAL;
    return s->ops->setting_get(s->b, key, value, updated_at);
}
