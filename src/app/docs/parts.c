/* parts.c — see parts.h.
 *
 * Cutting: the text streams from a file through the chunker; each chunk it
 * emits is copied into a small queue, from which the store's chunk reader
 * takes it with its index text (textindex_doc), so the store writes the
 * chunks in one transaction while memory holds a piece of text and the
 * chunks cut from it, never the document.
 *
 * Planning: token counts per chunk (the engine's tokenizer, one call per
 * chunk, kept in the store per tokenizer; the chunker's estimates for
 * other providers), then either the whole document — when its rendered
 * system message fits the budget — or parts packed greedily from the
 * counts and checked by counting each rendered part, shrunk a chunk at a
 * time until it fits. A part's count is taken with its header naming the
 * part as "part 99999 of 99999", an upper bound of the real header.
 */
#include "app/docs/parts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/docs/chunker.h"
#include "app/docs/documents.h"
#include "app/docs/textindex.h"
#include "app/llm/router.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/utf8.h"

/* Tokens kept free besides the budget: the chat template's role tokens
 * around the system message. */
#define TEMPLATE_MARGIN 16
/* Bytes read from the text at a time while cutting. */
#define READ_PIECE (64u * 1024)

#define FAIL(code, ...)                                 \
    do {                                                \
        if (err)                                        \
            snprintf(err, errcap, __VA_ARGS__);         \
        return (code);                                  \
    } while (0)

int parts_reserve(const app_t *a, int n_ctx)
{
    int r = a->cfg.conversation_reserve;
    if (r <= 0) {
        r = n_ctx / 4;
        if (r < 1024)
            r = 1024;
    }
    if (r > n_ctx / 2)
        r = n_ctx / 2;
    return r;
}

int parts_model(app_t *a, llm_provider_t *llm, parts_model_t *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    llm_model_info_t info;
    memset(&info, 0, sizeof info);
    char why[256] = "";
    int lrc = llm_models(llm, &info, why, sizeof why);
    if (lrc != LLM_OK)
        memset(&info, 0, sizeof info);
    int rc = PARTS_OK;
    if (lrc != LLM_OK && lrc != LLM_ENOTSUP) {
        rc = PARTS_ELLM;
        if (err)
            snprintf(err, errcap, "The model server cannot be asked which model it runs: %s",
                     why[0] ? why : llm_strerror(lrc));
    }
    out->exact = info.fingerprint[0] != '\0';
    if (out->exact)
        snprintf(out->tokens_key, sizeof out->tokens_key, "tok:%.100s", info.fingerprint);
    else
        snprintf(out->tokens_key, sizeof out->tokens_key, "estimate");
    /* what the server says, else what the provider's settings say */
    out->n_ctx = info.n_ctx_slot > 0 ? info.n_ctx_slot : llm_context_tokens(llm);
    out->budget = out->n_ctx ? out->n_ctx - parts_reserve(a, out->n_ctx) - TEMPLATE_MARGIN : 0;
    out->overlap = a->cfg.part_overlap_tokens > 0 ? a->cfg.part_overlap_tokens
                                                  : a->cfg.chunk_tokens;
    /* The plan depends on all of these and on the template's text. */
    char shape[STORE_KEY_MAX * 2];
    snprintf(shape, sizeof shape, "%s|%d|%d|%d|%d|%d|", out->tokens_key, out->n_ctx, out->budget,
             out->overlap, a->cfg.chunk_tokens, a->cfg.chunk_max_tokens);
    buf_t b;
    buf_init(&b, sizeof shape + sizeof a->cfg.system_template);
    char hex[65] = "";
    if (buf_puts(&b, shape) == BUF_OK && buf_puts(&b, a->cfg.system_template) == BUF_OK)
        documents_sha256_hex(b.data, b.len, hex);
    buf_cleanup(&b);
    snprintf(out->plan_key, sizeof out->plan_key, "plan:%.24s", hex);
    return rc;
}

int parts_model_of(app_t *a, app_provider_t *p, parts_model_t *out, char *err, size_t errcap)
{
    int rc = parts_model(a, app_llm(p), out, err, errcap);
    /* a failed call took its engine out (the down hook): the next answers */
    for (size_t tries = 1; rc == PARTS_ELLM && p->engines && tries < ROUTER_MAX &&
                           app_llm_healthy(p);
         tries++)
        rc = parts_model(a, app_llm(p), out, err, errcap);
    return rc;
}

/* ---- cutting ---- */

/* A chunk the chunker emitted, copied (its strings owned). */
typedef struct {
    store_chunk_t c;
} queued_t;

typedef struct {
    app_t *a;
    int fd;
    chunker_t *ck;
    queued_t *q;          /* emitted, not yet handed to the store */
    size_t q_n, q_head, q_cap;
    store_chunk_t cur;    /* the chunk handed out last (owned) */
    buf_t index;          /* its index text */
    char *piece;          /* READ_PIECE bytes */
    bool eof;
    int rc;               /* first failure, as a STORE_E* code */
    char why[160];
} cutter_t;

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int on_chunk(void *ud, const chunker_chunk_t *k)
{
    cutter_t *c = ud;
    if (c->q_n == c->q_cap) {
        size_t cap = c->q_cap ? c->q_cap * 2 : 16;
        queued_t *q = realloc(c->q, cap * sizeof *q);
        if (!q)
            return 1;
        c->q = q;
        c->q_cap = cap;
    }
    store_chunk_t *s = &c->q[c->q_n].c;
    store_chunk_init(s);
    s->start = (int64_t)k->start;
    s->end = (int64_t)k->end;
    s->n_chars = (int64_t)k->n_chars;
    s->est_tokens = k->est_tokens;
    s->page_first = k->page_first;
    s->page_last = k->page_last;
    s->content = dup_n(k->text, k->len);
    s->label_first = strdup(k->page_label_first ? k->page_label_first : "");
    s->label_last = strdup(k->page_label_last ? k->page_label_last : "");
    s->heading = strdup(k->heading ? k->heading : "");
    if (!s->content || !s->label_first || !s->label_last || !s->heading) {
        store_chunk_cleanup(s);
        return 1;
    }
    /* The store's limits: a heading path may be cut (at a character). */
    if (strlen(s->heading) > STORE_HEADING_MAX)
        s->heading[utf8_complete_len(s->heading, STORE_HEADING_MAX)] = '\0';
    if (strlen(s->label_first) > STORE_LABEL_MAX)
        s->label_first[utf8_complete_len(s->label_first, STORE_LABEL_MAX)] = '\0';
    if (strlen(s->label_last) > STORE_LABEL_MAX)
        s->label_last[utf8_complete_len(s->label_last, STORE_LABEL_MAX)] = '\0';
    c->q_n++;
    return 0;
}

/* The store's chunk reader: the next chunk, reading and cutting more text
 * when the queue is empty. */
static int cutter_next(void *ud, const store_chunk_t **chunk, const char **index_text)
{
    cutter_t *c = ud;
    *chunk = NULL;
    store_chunk_cleanup(&c->cur);
    while (c->q_head == c->q_n && !c->eof) {
        c->q_head = c->q_n = 0;
        ssize_t k;
        do
            k = read(c->fd, c->piece, READ_PIECE);
        while (k < 0 && errno == EINTR);
        int crc;
        if (k < 0) {
            snprintf(c->why, sizeof c->why, "cannot read the text: %s", strerror(errno));
            return c->rc = STORE_EIO;
        }
        if (k == 0) {
            c->eof = true;
            crc = chunker_finish(c->ck);
        } else {
            crc = chunker_feed(c->ck, c->piece, (size_t)k);
        }
        if (crc != 0) {
            snprintf(c->why, sizeof c->why, "cannot cut the text: %s",
                     crc > 0 ? "out of memory" : chunker_strerror(crc));
            return c->rc = crc > 0 ? STORE_ENOMEM : STORE_EINVAL;
        }
    }
    if (c->q_head == c->q_n)
        return STORE_OK;   /* the end */
    c->cur = c->q[c->q_head++].c;
    buf_reset(&c->index);
    int irc = textindex_doc(c->a->textindex, c->cur.content, strlen(c->cur.content), &c->index);
    if (irc != TEXTINDEX_OK) {
        snprintf(c->why, sizeof c->why, "cannot index the text: %s", textindex_strerror(irc));
        return c->rc = irc == TEXTINDEX_ENOMEM ? STORE_ENOMEM : STORE_EINVAL;
    }
    *chunk = &c->cur;
    *index_text = c->index.data ? c->index.data : "";
    return STORE_OK;
}

/* Copy the store's text of doc_id into a new unlinked file; its
 * descriptor, or -1. */
static int text_to_file(app_t *a, const char *doc_id);

static int write_piece(void *ud, const char *p, size_t n)
{
    int fd = *(int *)ud;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return 1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int text_to_file(app_t *a, const char *doc_id)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/.upload-chunks-XXXXXX", a->uploads_dir);
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return -1;
    unlink(path);
    if (store_doc_text_foreach(a->store, doc_id, write_piece, &fd) != STORE_OK) {
        close(fd);
        return -1;
    }
    return fd;
}

int parts_chunk(app_t *a, const char *doc_id, int text_fd, const store_mark_t *marks,
                size_t n_marks, int64_t *n_chunks, char *err, size_t errcap)
{
    if (n_chunks)
        *n_chunks = 0;
    int own_fd = -1;
    if (text_fd < 0) {
        own_fd = text_fd = text_to_file(a, doc_id);
        if (text_fd < 0)
            FAIL(PARTS_EIO, "cannot copy the document's text to a temporary file");
    }
    if (lseek(text_fd, 0, SEEK_SET) != 0) {
        if (own_fd >= 0)
            close(own_fd);
        FAIL(PARTS_EIO, "cannot read the document's text");
    }
    chunker_mark_t *cm = n_marks ? calloc(n_marks, sizeof *cm) : NULL;
    if (n_marks && !cm) {
        if (own_fd >= 0)
            close(own_fd);
        FAIL(PARTS_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n_marks; i++) {
        cm[i].kind = marks[i].kind == STORE_MARK_PAGE ? CHUNKER_MARK_PAGE : CHUNKER_MARK_HEADING;
        cm[i].offset = (size_t)marks[i].offset;
        cm[i].number = marks[i].number;
        cm[i].label = marks[i].label ? marks[i].label : "";
    }
    cutter_t c = { .a = a, .fd = text_fd };
    store_chunk_init(&c.cur);
    buf_init(&c.index, STORE_CHUNK_MAX);
    c.piece = malloc(READ_PIECE);
    chunker_params_t p = chunker_params_default();
    p.target_tokens = a->cfg.chunk_tokens;
    p.max_tokens = a->cfg.chunk_max_tokens > p.target_tokens ? a->cfg.chunk_max_tokens
                                                             : p.target_tokens;
    int rc = PARTS_OK;
    if (!c.piece || chunker_new(&p, cm, n_marks, on_chunk, &c, &c.ck) != 0) {
        rc = PARTS_ENOMEM;
        snprintf(err, errcap, "out of memory");
    } else {
        store_chunk_reader_t r = { cutter_next, &c };
        int src = store_doc_set_chunks(a->store, doc_id, &r, n_chunks);
        if (src != STORE_OK) {
            rc = c.rc ? (c.rc == STORE_ENOMEM ? PARTS_ENOMEM : PARTS_EIO) : PARTS_ESTORE;
            snprintf(err, errcap, "%s", c.why[0] ? c.why : store_strerror(src));
        }
    }
    chunker_free(c.ck);
    for (size_t i = c.q_head; i < c.q_n; i++)
        store_chunk_cleanup(&c.q[i].c);
    free(c.q);
    store_chunk_cleanup(&c.cur);
    buf_cleanup(&c.index);
    free(c.piece);
    free(cm);
    if (own_fd >= 0)
        close(own_fd);
    return rc;
}

/* ---- planning ---- */

/* Chunk token counts of d for m: est_tokens, or the tokenizer's counts
 * (from the store, else counted now and stored). *tok (malloc'd, n
 * entries) is the caller's. */
static int chunk_tokens(app_t *a, llm_provider_t *llm, const parts_model_t *m,
                        const store_doc_t *d, int64_t **tok, size_t *n, char *err, size_t errcap)
{
    *tok = NULL;
    *n = 0;
    int64_t total = d->n_chunks;
    if (total <= 0)
        return PARTS_OK;
    int64_t *t = calloc((size_t)total, sizeof *t);
    if (!t)
        FAIL(PARTS_ENOMEM, "out of memory");
    bool need_count = false;
    int64_t est = 0;
    for (int64_t first = 0; first < total;) {
        store_chunk_list_t l;
        int rc = store_chunk_list(a->store, d->id, first, 1000, false, &l, NULL);
        if (rc != STORE_OK || l.n == 0) {
            store_chunk_list_cleanup(&l);
            free(t);
            FAIL(PARTS_ESTORE, "cannot read the document's chunks: %s",
                 rc ? store_strerror(rc) : "they changed");
        }
        for (size_t i = 0; i < l.n && first + (int64_t)i < total; i++) {
            const store_chunk_t *k = &l.items[i];
            bool have = m->exact && k->tokens >= 0 && k->tokens_key &&
                        strcmp(k->tokens_key, m->tokens_key) == 0;
            t[first + (int64_t)i] = have ? k->tokens : -1;
            if (!m->exact)
                t[first + (int64_t)i] = k->est_tokens;
            need_count |= m->exact && !have;
            est += k->est_tokens;
        }
        first += (int64_t)l.n;
        store_chunk_list_cleanup(&l);
    }
    /* Far too long: said before a token is counted (a 50 MB text would
     * take minutes to count and days to cache). The estimate is on the
     * high side, so this refuses no document that would fit. */
    int per_part = m->budget > 0 ? m->budget : 0;
    if (per_part > 0 && est / per_part > a->cfg.max_parts) {
        free(t);
        FAIL(PARTS_ETOOLONG,
             "The document is too long for the model even in parts: about %lld tokens, some "
             "%lld parts of %d tokens, and at most %d are kept (documents.max_parts)",
             (long long)est, (long long)(est / per_part), per_part, a->cfg.max_parts);
    }
    if (need_count) {
        for (int64_t i = 0; i < total; i++) {
            if (t[i] >= 0)
                continue;
            store_chunk_t k;
            int rc = store_chunk_get(a->store, d->id, i, &k);
            char why[256] = "";
            int lrc = rc == STORE_OK ? llm_tokenize_count(llm, k.content, strlen(k.content), &t[i],
                                                          why, sizeof why)
                                     : LLM_OK;
            store_chunk_cleanup(&k);
            if (rc != STORE_OK || lrc != LLM_OK) {
                free(t);
                if (rc != STORE_OK)
                    FAIL(PARTS_ESTORE, "cannot read chunk %lld: %s", (long long)i,
                         store_strerror(rc));
                FAIL(PARTS_ELLM, "cannot count the tokens of chunk %lld: %s", (long long)i, why);
            }
        }
        int rc = store_chunks_set_tokens(a->store, d->id, m->tokens_key, t, (size_t)total);
        if (rc != STORE_OK)
            log_warn("document %s: cannot keep its chunks' token counts: %s", d->id,
                     store_strerror(rc));
    }
    *tok = t;
    *n = (size_t)total;
    return PARTS_OK;
}

int parts_count(llm_provider_t *llm, const parts_model_t *m, const char *s, int64_t *out,
                char *err, size_t errcap)
{
    if (!m->exact) {
        *out = chunker_estimate_tokens(s, strlen(s));
        return PARTS_OK;
    }
    char why[256] = "";
    if (llm_tokenize_count(llm, s, strlen(s), out, why, sizeof why) != LLM_OK)
        FAIL(PARTS_ELLM, "cannot count tokens: %s", why);
    return PARTS_OK;
}

/* The text of chunks first..last joined by blank lines, into *b. */
static int join_chunks(app_t *a, const char *doc_id, int64_t first, int64_t last, buf_t *b)
{
    for (int64_t at = first; at <= last;) {
        store_chunk_list_t l;
        size_t want = (size_t)(last - at + 1) < 1000 ? (size_t)(last - at + 1) : 1000;
        int rc = store_chunk_list(a->store, doc_id, at, want, true, &l, NULL);
        if (rc == STORE_OK && l.n == 0)
            rc = STORE_ENOTFOUND;
        for (size_t i = 0; rc == STORE_OK && i < l.n; i++) {
            if ((b->len && buf_puts(b, "\n\n") != BUF_OK) ||
                buf_puts(b, l.items[i].content) != BUF_OK)
                rc = STORE_ENOMEM;
        }
        at += (int64_t)l.n;
        store_chunk_list_cleanup(&l);
        if (rc != STORE_OK)
            return rc;
    }
    return STORE_OK;
}

void parts_where(app_t *a, const char *doc_id, int64_t first, int64_t last, char *buf,
                 size_t cap)
{
    buf[0] = '\0';
    store_chunk_t f, l;
    if (store_chunk_get(a->store, doc_id, first, &f) != STORE_OK)
        return;
    if (store_chunk_get(a->store, doc_id, last, &l) != STORE_OK) {
        store_chunk_cleanup(&f);
        return;
    }
    if (f.page_first > 0) {
        bool labels = f.label_first[0] && l.label_last[0];
        char a1[STORE_LABEL_MAX + 24], a2[STORE_LABEL_MAX + 24];
        if (labels) {
            snprintf(a1, sizeof a1, "%s", f.label_first);
            snprintf(a2, sizeof a2, "%s", l.label_last);
        } else {
            snprintf(a1, sizeof a1, "%lld", (long long)f.page_first);
            snprintf(a2, sizeof a2, "%lld", (long long)l.page_last);
        }
        if (strcmp(a1, a2) == 0)
            snprintf(buf, cap, "page %s", a1);
        else
            snprintf(buf, cap, "pages %s\u2013%s", a1, a2);
    } else if (f.heading[0]) {
        /* the innermost heading of each end */
        const char *h1 = strrchr(f.heading, '>'), *h2 = strrchr(l.heading, '>');
        h1 = h1 ? h1 + 2 : f.heading;
        h2 = h2 ? h2 + 2 : l.heading;
        if (!l.heading[0] || strcmp(h1, h2) == 0)
            snprintf(buf, cap, "\u201c%.200s\u201d", h1);
        else
            snprintf(buf, cap, "\u201c%.200s\u201d to \u201c%.200s\u201d", h1, h2);
    }
    if (cap && strlen(buf) == cap - 1)
        buf[utf8_complete_len(buf, cap - 1)] = '\0';
    store_chunk_cleanup(&f);
    store_chunk_cleanup(&l);
}

/* The system message of chunks first..last as part `index` (0-based) of
 * `count`, into a malloc'd string; NULL when out of memory or the store
 * fails. */
static char *render_part(app_t *a, const store_doc_t *d, int64_t first, int64_t last,
                         long index, long count, char *where, size_t where_cap)
{
    char w[600];
    parts_where(a, d->id, first, last, w, sizeof w);
    if (where)
        snprintf(where, where_cap, "%s", w);
    buf_t b;
    buf_init(&b, STORE_TEXT_MAX);
    int rc = buf_printf(&b, "[%s \u2014 part %ld of %ld%s%s]\n\n", d->filename, index + 1, count,
                        w[0] ? ", " : "", w) == BUF_OK ? STORE_OK : STORE_ENOMEM;
    if (rc == STORE_OK)
        rc = join_chunks(a, d->id, first, last, &b);
    char *sys = rc == STORE_OK ? documents_system_message(a, d->filename, b.data) : NULL;
    buf_cleanup(&b);
    return sys;
}

/* The whole document as one part: today's rendering. */
static char *render_whole(app_t *a, const store_doc_t *d)
{
    char *text = NULL;
    if (store_doc_text(a->store, d->id, &text, NULL) != STORE_OK)
        return NULL;
    char *sys = documents_system_message(a, d->filename, text);
    free(text);
    return sys;
}

char *parts_system_message(app_t *a, const store_doc_t *d, const store_part_list_t *plan,
                           size_t i, char *where, size_t where_cap, char *err, size_t errcap)
{
    if (where && where_cap)
        where[0] = '\0';
    if (!plan || i >= plan->n) {
        snprintf(err, errcap, "no such part");
        return NULL;
    }
    char *sys = plan->n == 1 ? render_whole(a, d)
                             : render_part(a, d, plan->items[i].chunk_first,
                                           plan->items[i].chunk_last, (long)i, (long)plan->n,
                                           where, where_cap);
    if (!sys)
        snprintf(err, errcap, "cannot read the document's text");
    return sys;
}

/* Add a part to the list being built. */
static int push_part(store_part_list_t *l, int64_t first, int64_t last, int64_t tokens,
                     int64_t bytes)
{
    store_part_t p;
    store_part_init(&p);
    p.chunk_first = first;
    p.chunk_last = last;
    p.tokens = tokens;
    p.content_length = bytes;
    return store__part_list_push(l, &p);
}

/* Pack chunks 0..n-1 (tok[i] tokens each) into parts of at most m->budget
 * tokens rendered. */
static int pack(app_t *a, llm_provider_t *llm, const parts_model_t *m, const store_doc_t *d,
                const int64_t *tok, size_t n, store_part_list_t *out, char *err, size_t errcap)
{
    /* What the rendering adds to the chunks' own tokens: the template, the
     * header (counted with the widest numbers) and a blank line per chunk. */
    char *frame = render_part(a, d, 0, 0, 99998, 99999, NULL, 0);
    int64_t frame_tok = 0, first_tok = 0;
    if (!frame)
        FAIL(PARTS_ESTORE, "cannot read the document's chunks");
    int rc = parts_count(llm, m, frame, &frame_tok, err, errcap);
    free(frame);
    if (rc != PARTS_OK)
        return rc;
    first_tok = frame_tok - tok[0];   /* the frame alone */
    if (first_tok < 0)
        first_tok = 0;
    size_t start = 0;
    while (start < n) {
        size_t end = start;
        int64_t sum = first_tok + tok[start];
        while (end + 1 < n && sum + tok[end + 1] + 2 <= m->budget) {
            end++;
            sum += tok[end] + 2;
        }
        int64_t exact = 0;
        for (;;) {
            char *sys = render_part(a, d, (int64_t)start, (int64_t)end, 99998, 99999, NULL, 0);
            if (!sys)
                FAIL(PARTS_ESTORE, "cannot read the document's chunks");
            rc = parts_count(llm, m, sys, &exact, err, errcap);
            size_t bytes = strlen(sys);
            free(sys);
            if (rc != PARTS_OK)
                return rc;
            if (exact <= m->budget) {
                if (push_part(out, (int64_t)start, (int64_t)end, exact, (int64_t)bytes) !=
                    STORE_OK)
                    FAIL(PARTS_ENOMEM, "out of memory");
                break;
            }
            if (end == start)
                FAIL(PARTS_ETOOSMALL,
                     "The model's context (%d tokens, %d of them for the document) cannot "
                     "hold even one passage of the document (%lld tokens)",
                     m->n_ctx, m->budget, (long long)exact);
            end--;
        }
        if (out->n > STORE_PARTS_MAX)
            FAIL(PARTS_ETOOSMALL, "The document needs more than %d parts", STORE_PARTS_MAX);
        if (end + 1 >= n)
            break;
        /* The next part starts early enough to share m->overlap tokens of
         * whole chunks (at least one) and late enough to move on. */
        size_t next = end;
        int64_t shared = tok[end];
        while (next > start + 1 && shared < m->overlap) {
            next--;
            shared += tok[next];
        }
        start = next > start ? next : start + 1;
    }
    return PARTS_OK;
}

int parts_plan(app_t *a, llm_provider_t *llm, const parts_model_t *m, const store_doc_t *d,
               store_part_list_t *out, char *err, size_t errcap)
{
    *out = (store_part_list_t){ 0 };
    int rc = store_parts_list(a->store, d->id, m->plan_key, out);
    if (rc != STORE_OK)
        FAIL(PARTS_ESTORE, "cannot read the document's parts: %s", store_strerror(rc));
    if (out->n > 0)
        return PARTS_OK;

    store_doc_t doc;   /* d as it is now, chunked */
    store_doc_init(&doc);
    rc = store_doc_get(a->store, d->id, &doc);
    if (rc != STORE_OK)
        FAIL(PARTS_ESTORE, "cannot read the document: %s", store_strerror(rc));
    if (doc.n_chunks == 0) {
        store_mark_list_t marks;
        rc = store_doc_marks(a->store, doc.id, &marks);
        int crc = rc == STORE_OK ? parts_chunk(a, doc.id, -1, marks.items, marks.n, NULL, err,
                                               errcap)
                                 : PARTS_ESTORE;
        store_mark_list_cleanup(&marks);
        if (crc == PARTS_OK) {
            store_doc_cleanup(&doc);
            crc = store_doc_get(a->store, d->id, &doc) == STORE_OK ? PARTS_OK : PARTS_ESTORE;
        }
        if (crc != PARTS_OK) {
            store_doc_cleanup(&doc);
            if (rc != STORE_OK)
                FAIL(PARTS_ESTORE, "cannot read the document's structure");
            return crc;
        }
    }
    int64_t *tok = NULL;
    size_t n = 0;
    rc = chunk_tokens(a, llm, m, &doc, &tok, &n, err, errcap);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += tok[i] + 2;
    bool whole = rc == PARTS_OK && (n <= 1 || m->n_ctx <= 0 || m->budget <= 0);
    int64_t whole_tok = -1;
    size_t whole_bytes = 0;
    if (rc == PARTS_OK && !whole && total <= m->budget) {
        /* Probably fits: the rendered whole document settles it. */
        char *sys = render_whole(a, &doc);
        if (!sys) {
            rc = PARTS_ESTORE;
            snprintf(err, errcap, "cannot read the document's text");
        } else {
            rc = parts_count(llm, m, sys, &whole_tok, err, errcap);
            whole_bytes = strlen(sys);
            whole = rc == PARTS_OK && whole_tok <= m->budget;
            free(sys);
        }
    }
    if (rc == PARTS_OK && whole) {
        if (push_part(out, 0, n ? (int64_t)n - 1 : 0, whole_tok,
                      (int64_t)(whole_bytes ? whole_bytes : (size_t)doc.n_chars)) != STORE_OK)
            rc = PARTS_ENOMEM;
    } else if (rc == PARTS_OK) {
        rc = pack(a, llm, m, &doc, tok, n, out, err, errcap);
    }
    free(tok);
    if (rc == PARTS_OK) {
        int src = store_parts_set(a->store, doc.id, m->plan_key, out->items, out->n);
        if (src != STORE_OK) {
            rc = PARTS_ESTORE;
            snprintf(err, errcap, "cannot keep the document's parts: %s", store_strerror(src));
        } else {
            /* read back: numbered, with their stored cache states */
            store_part_list_cleanup(out);
            src = store_parts_list(a->store, doc.id, m->plan_key, out);
            if (src != STORE_OK) {
                rc = PARTS_ESTORE;
                snprintf(err, errcap, "cannot read the document's parts: %s",
                         store_strerror(src));
            } else {
                log_info("document %s: %zu part(s) for %s (%d-token context, %d for the "
                         "document)",
                         doc.id, out->n, m->tokens_key, m->n_ctx, m->budget);
            }
        }
    }
    if (rc != PARTS_OK)
        store_part_list_cleanup(out);
    store_doc_cleanup(&doc);
    return rc;
}

/* Append each document's text under its naming line, for
 * parts_combined_message(). */
static int append_text(void *ud, const char *piece, size_t len)
{
    return buf_append(ud, piece, len) == BUF_OK ? 0 : 1;
}

char *parts_combined_message(app_t *a, const store_doc_t *const *docs, size_t n, char *err,
                             size_t errcap)
{
    buf_t text, names;
    buf_init(&text, STORE_TEXT_MAX);
    buf_init(&names, (size_t)STORE_NAME_MAX * (n + 1));
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if ((i && buf_puts(&text, "\n\n") != BUF_OK) ||
            buf_printf(&text, "[Document %zu of %zu: %s]\n\n", i + 1, n, docs[i]->filename) !=
                BUF_OK ||
            (i && buf_puts(&names, ", ") != BUF_OK) || buf_puts(&names, docs[i]->filename) != BUF_OK)
            rc = 1;
        else if (store_doc_text_foreach(a->store, docs[i]->id, append_text, &text) != STORE_OK)
            rc = 1;
    }
    char *sys = rc == 0 ? documents_system_message(a, names.data ? names.data : "",
                                                   text.data ? text.data : "")
                        : NULL;
    if (!sys)
        snprintf(err, errcap, "cannot read the documents' texts (together they may be too long)");
    buf_cleanup(&text);
    buf_cleanup(&names);
    return sys;
}
