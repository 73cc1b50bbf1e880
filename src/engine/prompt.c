/* prompt.c — see prompt.h.
 *
 * Segmenting: with R(k) the template's rendering of the first k messages,
 * message k's text is R(k+1) minus the prefix R(k). Within it the content is
 * located and the text split into opener | content | closer. Templates whose
 * rendering of k messages is not a prefix of the rendering of k+1 (none of
 * llama.cpp's common ones) fall back to tokenizing the whole text, logged
 * once.
 */
#include "engine/prompt.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

typedef struct {
    uint64_t hash;
    kvstore_salt_t salt;     /* the namespace it was produced in */
    char *text;
    size_t len;
    model_token_t *toks;
    int n;
    uint64_t used;           /* recency stamp */
} reply_t;

struct prompt {
    const model_t *m;
    pthread_mutex_t lock;
    reply_t *replies;
    int replies_max;
    uint64_t clock;
    bool warned_fallback;
    int user_opener;         /* -1 unknown, 0 no, 1 yes */
    char bos_text[64];
    /* Replies not remembered: stored snapshots, from one of these two
     * (source: for conversations without a salt only). */
    prompt_source_fn source;
    prompt_salted_source_fn salted_source;
    void *source_ud;
};

/* A token array with a hard maximum. */
typedef struct {
    model_token_t *v;
    int n, cap, max;
} toks_t;

static int toks_append(toks_t *t, const model_token_t *src, int n)
{
    if (t->n + n > t->max) {
        t->n += n;            /* report how far it would have reached */
        return MODEL_ETOOLONG;
    }
    if (t->n + n > t->cap) {
        int cap = t->cap ? t->cap : 256;
        while (cap < t->n + n)
            cap *= 2;
        model_token_t *v = realloc(t->v, (size_t)cap * sizeof *v);
        if (!v)
            return MODEL_ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    memcpy(t->v + t->n, src, (size_t)n * sizeof *src);
    t->n += n;
    return MODEL_OK;
}

/* Tokenize text[0..len) and append. */
static int toks_tokenize(const prompt_t *p, toks_t *t, const char *text, size_t len, bool bos,
                         bool special)
{
    if (len == 0 && !bos)
        return MODEL_OK;
    model_token_t *v = NULL;
    int n = 0;
    int room = t->max - t->n;
    int rc = model_tokenize(p->m, text, len, bos, special, room > 0 ? room : 1, &v, &n);
    if (rc == MODEL_ETOOLONG) {
        t->n = t->max + 1;
        return rc;
    }
    if (rc)
        return rc;
    rc = toks_append(t, v, n);
    free(v);
    return rc;
}

/* The control token marker `mk` stands for, or -1 when it is none (no such
 * token, or one ordinary text already becomes: then plain tokenizing keeps
 * it, with the merges around it that the template's own text gets). */
static model_token_t marker_token(const prompt_t *p, const char *mk)
{
    model_token_t *v = NULL, id = -1;
    int n = 0;
    if (model_tokenize(p->m, mk, strlen(mk), false, true, 4, &v, &n) == MODEL_OK && n == 1)
        id = v[0];
    free(v);
    if (id < 0)
        return -1;
    v = NULL;
    if (model_tokenize(p->m, mk, strlen(mk), false, false, 64, &v, &n) == MODEL_OK && n == 1)
        id = -1;
    free(v);
    return id;
}

/* Tokenize a message's content: never special tokens, but for the markers
 * the message names (prompt_msg_t.markers), which become their token. */
static int toks_tokenize_content(const prompt_t *p, toks_t *t, const char *text, size_t len,
                                 bool bos, const char *const *markers)
{
    while (markers && len > 0) {
        const char *first = NULL;
        size_t flen = 0;
        model_token_t ftok = -1;
        for (const char *const *mk = markers; *mk; mk++) {
            const char *at = memmem(text, len, *mk, strlen(*mk));
            if (at && (!first || at < first)) {
                model_token_t id = marker_token(p, *mk);
                if (id >= 0) {
                    first = at;
                    flen = strlen(*mk);
                    ftok = id;
                }
            }
        }
        if (!first)
            break;
        int rc = toks_tokenize(p, t, text, (size_t)(first - text), bos, false);
        if (!rc)
            rc = toks_append(t, &ftok, 1);
        if (rc)
            return rc;
        bos = false;
        len -= (size_t)(first - text) + flen;
        text = first + flen;
    }
    return toks_tokenize(p, t, text, len, bos, false);
}

static uint64_t hash_text(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

int prompt_new(const model_t *m, int replies_max, prompt_t **out)
{
    prompt_t *p = calloc(1, sizeof *p);
    if (!p)
        return MODEL_ENOMEM;
    p->m = m;
    p->replies_max = replies_max > 0 ? replies_max : 1;
    p->replies = calloc((size_t)p->replies_max, sizeof *p->replies);
    if (!p->replies) {
        free(p);
        return MODEL_ENOMEM;
    }
    pthread_mutex_init(&p->lock, NULL);
    p->user_opener = -1;
    /* The text of BOS, to avoid adding a second one when the template
     * already writes it. */
    model_token_t *bos = NULL;
    int n = 0;
    if (model_info(m)->add_bos && model_tokenize(m, "", 0, true, false, 4, &bos, &n) == 0 && n == 1)
        model_token_piece(m, bos[0], true, p->bos_text, sizeof p->bos_text);
    free(bos);
    *out = p;
    return MODEL_OK;
}

void prompt_free(prompt_t *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->replies_max; i++) {
        free(p->replies[i].text);
        free(p->replies[i].toks);
    }
    free(p->replies);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void prompt_remember_reply(prompt_t *p, const char *text, size_t len, const model_token_t *toks,
                           int n)
{
    prompt_remember_reply_salted(p, NULL, text, len, toks, n);
}

void prompt_remember_reply_salted(prompt_t *p, const kvstore_salt_t *salt, const char *text,
                                  size_t len, const model_token_t *toks, int n)
{
    if (n <= 0 || len == 0)
        return;
    char *t = malloc(len);
    model_token_t *v = malloc((size_t)n * sizeof *v);
    if (!t || !v) {
        free(t);
        free(v);
        return;
    }
    memcpy(t, text, len);
    memcpy(v, toks, (size_t)n * sizeof *v);
    uint64_t h = hash_text(text, len);
    pthread_mutex_lock(&p->lock);
    /* Replace the same text in the same namespace, else the least
     * recently used slot. */
    int victim = 0;
    for (int i = 0; i < p->replies_max; i++) {
        reply_t *r = &p->replies[i];
        if (r->text && r->hash == h && r->len == len && kvstore_salt_equal(&r->salt, salt) &&
            memcmp(r->text, text, len) == 0) {
            victim = i;
            break;
        }
        if (r->used < p->replies[victim].used)
            victim = i;
    }
    reply_t *r = &p->replies[victim];
    free(r->text);
    free(r->toks);
    r->hash = h;
    memset(&r->salt, 0, sizeof r->salt);
    if (salt && salt->salted)
        r->salt = *salt;
    r->text = t;
    r->len = len;
    r->toks = v;
    r->n = n;
    r->used = ++p->clock;
    pthread_mutex_unlock(&p->lock);
}

/* Append the remembered tokens of a reply with this text, remembered in
 * the namespace `salt`; false if none. */
static bool append_reply(prompt_t *p, const kvstore_salt_t *salt, toks_t *t, const char *text,
                         size_t len, int *rc)
{
    uint64_t h = hash_text(text, len);
    bool found = false;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->replies_max; i++) {
        reply_t *r = &p->replies[i];
        if (r->text && r->hash == h && r->len == len && kvstore_salt_equal(&r->salt, salt) &&
            memcmp(r->text, text, len) == 0) {
            r->used = ++p->clock;
            *rc = toks_append(t, r->toks, r->n);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return found;
}

void prompt_set_reply_source(prompt_t *p, prompt_source_fn source, void *src)
{
    p->source = source;
    p->salted_source = NULL;
    p->source_ud = src;
}

void prompt_set_reply_source_salted(prompt_t *p, prompt_salted_source_fn source, void *src)
{
    p->source = NULL;
    p->salted_source = source;
    p->source_ud = src;
}

/* Whether there is a source of stored replies for the namespace `salt`. */
static bool has_source(const prompt_t *p, const kvstore_salt_t *salt)
{
    return p->salted_source || (p->source && !(salt && salt->salted));
}

/* The search of stored snapshots for a reply's tokens: among the sequences
 * that continue the prompt so far, the longest run of tokens after it
 * whose pieces spell the start of the reply's text. */
enum { REPLY_VISITS_MAX = 256 };   /* sequences looked at, at most */

typedef struct {
    const prompt_t *p;
    int n_prefix;
    const char *text;
    size_t len;
    model_token_t *best;     /* malloc'd copy of the best run, or NULL */
    int best_n;
    size_t best_bytes;       /* text bytes that run spells */
    int visits;
    bool oom;
} reply_search_t;

static int visit_reply(const model_token_t *toks, int n, void *ud)
{
    reply_search_t *r = ud;
    size_t at = 0;
    int k = r->n_prefix;
    char piece[256];
    while (k < n && at < r->len) {
        int pl = model_token_piece(r->p->m, toks[k], false, piece, sizeof piece);
        if (pl < 0 || (size_t)pl > r->len - at || memcmp(piece, r->text + at, (size_t)pl) != 0)
            break;
        at += (size_t)pl;
        k++;
    }
    if (at > r->best_bytes) {
        model_token_t *v = realloc(r->best, (size_t)(k - r->n_prefix) * sizeof *v);
        if (!v) {
            r->oom = true;
            return 1;
        }
        memcpy(v, toks + r->n_prefix, (size_t)(k - r->n_prefix) * sizeof *v);
        r->best = v;
        r->best_n = k - r->n_prefix;
        r->best_bytes = at;
    }
    /* the whole text found, or enough looked at */
    return at == r->len || ++r->visits >= REPLY_VISITS_MAX;
}

/* Append the tokens of a snapshot stored in the namespace `salt` that
 * spell the start of the reply text[0..len) after the prompt so far;
 * *done gets the bytes they spell (0: none found). */
static int append_stored_reply(prompt_t *p, const kvstore_salt_t *salt, toks_t *t,
                               const char *text, size_t len, size_t *done)
{
    *done = 0;
    reply_search_t r = { .p = p, .n_prefix = t->n, .text = text, .len = len };
    if (p->salted_source)
        p->salted_source(p->source_ud, salt, t->v, t->n, visit_reply, &r);
    else
        p->source(p->source_ud, t->v, t->n, visit_reply, &r);
    int rc = r.oom ? MODEL_ENOMEM : MODEL_OK;
    if (!rc && r.best_n > 0) {
        rc = toks_append(t, r.best, r.best_n);
        *done = r.best_bytes;
    }
    free(r.best);
    return rc;
}

/* Render msgs[0..n) into *out (malloc'd). */
static int render(const prompt_t *p, const prompt_msg_t *msgs, int n, bool add_ass, char **out,
                  size_t *len)
{
    if (n == 0 && !add_ass) {
        *out = calloc(1, 1);
        *len = 0;
        return *out ? MODEL_OK : MODEL_ENOMEM;
    }
    const char **roles = malloc((size_t)(n + 1) * sizeof *roles);
    const char **contents = malloc((size_t)(n + 1) * sizeof *contents);
    int rc = MODEL_ENOMEM;
    if (roles && contents) {
        for (int i = 0; i < n; i++) {
            roles[i] = msgs[i].role;
            contents[i] = msgs[i].content;
        }
        rc = model_chat_render(p->m, roles, contents, n, add_ass, out, len);
    }
    free(roles);
    free(contents);
    return rc;
}

/* Tokenize one message's text seg[0..len) whose content is `content`, in
 * a conversation under the namespace `salt`. `first` marks the very first
 * piece of the prompt (BOS goes there); `open_end`: stop after the
 * content (a message still being typed has no closer yet). */
static int tokenize_message(prompt_t *p, const kvstore_salt_t *salt, toks_t *t, const char *seg,
                            size_t len, const prompt_msg_t *msg, bool first, bool open_end)
{
    bool bos = first && model_info(p->m)->add_bos &&
               !(p->bos_text[0] && strncmp(seg, p->bos_text, strlen(p->bos_text)) == 0);
    size_t clen = strlen(msg->content);
    const char *at = clen ? memmem(seg, len, msg->content, clen) : NULL;
    if (!at && clen) {
        /* Some templates trim the content. */
        const char *c = msg->content;
        while (*c == ' ' || *c == '\n' || *c == '\t' || *c == '\r')
            c++;
        size_t n = strlen(c);
        while (n && (c[n - 1] == ' ' || c[n - 1] == '\n' || c[n - 1] == '\t' || c[n - 1] == '\r'))
            n--;
        if (n) {
            at = memmem(seg, len, c, n);
            clen = n;
        } else {
            clen = 0;
        }
    }
    if (!at) {
        /* Empty content, or the template changed it beyond recognition:
         * the whole segment is template text. */
        return toks_tokenize(p, t, seg, len, bos, clen == 0);
    }
    size_t open_len = (size_t)(at - seg);
    int rc = toks_tokenize(p, t, seg, open_len, bos, true);
    if (rc)
        return rc;
    const bool reply = strcmp(msg->role, "assistant") == 0;
    if (!reply || !append_reply(p, salt, t, at, clen, &rc)) {
        /* Not remembered: its tokens may still be in a stored snapshot
         * (then remembered again, with the rest of its text tokenized). */
        int start = t->n;
        size_t done = 0;
        if (reply && has_source(p, salt) && t->n > 0)
            rc = append_stored_reply(p, salt, t, at, clen, &done);
        if (!rc)
            rc = toks_tokenize_content(p, t, at + done, clen - done,
                                       bos && open_len == 0 && done == 0, msg->markers);
        if (!rc && done > 0)
            prompt_remember_reply_salted(p, salt, at, clen, t->v + start, t->n - start);
    }
    if (rc || open_end)
        return rc;
    return toks_tokenize(p, t, at + clen, len - open_len - clen, false, true);
}

static int fallback_whole(prompt_t *p, toks_t *t, const prompt_msg_t *msgs, int n, bool add_ass)
{
    if (!p->warned_fallback) {
        log_warn("chat template renders messages inconsistently; tokenizing whole prompts "
                 "(cached prefixes may match less)");
        p->warned_fallback = true;
    }
    char *text;
    size_t len;
    int rc = render(p, msgs, n, add_ass, &text, &len);
    if (rc)
        return rc;
    t->n = 0;
    rc = toks_tokenize(p, t, text, len, model_info(p->m)->add_bos, true);
    free(text);
    return rc;
}

/* Text that opens a user turn after msgs (empty if the template does not
 * render it as a prefix). *out malloc'd. */
static int user_opener(prompt_t *p, const prompt_msg_t *msgs, int n, const char *rn, size_t rn_len,
                       char **out, size_t *len)
{
    static const char mark[] = "\x01kvchat-user-turn\x01";
    prompt_msg_t *ext = malloc((size_t)(n + 1) * sizeof *ext);
    if (!ext)
        return MODEL_ENOMEM;
    memcpy(ext, msgs, (size_t)n * sizeof *ext);
    ext[n].role = "user";
    ext[n].content = mark;
    ext[n].markers = NULL;
    char *r;
    size_t rl;
    int rc = render(p, ext, n + 1, false, &r, &rl);
    free(ext);
    if (rc)
        return rc;
    const char *at = memmem(r, rl, mark, sizeof mark - 1);
    if (!at || rl < rn_len || memcmp(r, rn, rn_len) != 0 || (size_t)(at - r) < rn_len) {
        *out = NULL;
        *len = 0;
        free(r);
        return MODEL_OK;
    }
    size_t ol = (size_t)(at - r) - rn_len;
    memmove(r, r + rn_len, ol);
    r[ol] = '\0';
    *out = r;
    *len = ol;
    return MODEL_OK;
}

int prompt_chat(prompt_t *p, const prompt_msg_t *msgs, int n_msgs, prompt_end_t end, int max,
                model_token_t **toks, int *n, char *err, size_t errcap)
{
    return prompt_chat_salted(p, NULL, msgs, n_msgs, end, max, toks, n, err, errcap);
}

int prompt_chat_salted(prompt_t *p, const kvstore_salt_t *salt, const prompt_msg_t *msgs,
                       int n_msgs, prompt_end_t end, int max, model_token_t **toks, int *n,
                       char *err, size_t errcap)
{
    toks_t t = { .max = max };
    char *prev = NULL, *cur = NULL, *tail = NULL;
    size_t prev_len = 0, cur_len = 0, tail_len = 0;
    bool consistent = true;
    int rc = render(p, msgs, 0, false, &prev, &prev_len);
    for (int k = 0; rc == 0 && k < n_msgs; k++) {
        rc = render(p, msgs, k + 1, false, &cur, &cur_len);
        if (rc)
            break;
        if (cur_len < prev_len || memcmp(cur, prev, prev_len) != 0) {
            consistent = false;
            break;
        }
        rc = tokenize_message(p, salt, &t, cur + prev_len, cur_len - prev_len, &msgs[k],
                              t.n == 0, end == PROMPT_DRAFT && k == n_msgs - 1);
        free(prev);
        prev = cur;
        prev_len = cur_len;
        cur = NULL;
    }
    if (rc == 0 && consistent) {
        if (end == PROMPT_GENERATE) {
            rc = render(p, msgs, n_msgs, true, &tail, &tail_len);
            if (rc == 0 && (tail_len < prev_len || memcmp(tail, prev, prev_len) != 0))
                consistent = false;
            else if (rc == 0)
                rc = toks_tokenize(p, &t, tail + prev_len, tail_len - prev_len,
                                   t.n == 0 && model_info(p->m)->add_bos, true);
        } else if (end == PROMPT_DRAFT) {
            /* nothing after the last message's content */
        } else if (n_msgs == 0 || strcmp(msgs[n_msgs - 1].role, "user") != 0) {
            rc = user_opener(p, msgs, n_msgs, prev, prev_len, &tail, &tail_len);
            p->user_opener = tail_len > 0;
            if (rc == 0 && tail_len)
                rc = toks_tokenize(p, &t, tail, tail_len, false, true);
        }
    }
    if (rc == 0 && !consistent)
        rc = fallback_whole(p, &t, msgs, n_msgs, end == PROMPT_GENERATE);
    free(prev);
    free(cur);
    free(tail);
    if (rc == MODEL_ETOOLONG) {
        snprintf(err, errcap, "the prompt is longer than %d tokens", max);
        *n = t.n;
    } else if (rc == MODEL_ETEMPLATE) {
        snprintf(err, errcap, "the model's chat template could not render these messages");
    } else if (rc) {
        snprintf(err, errcap, "tokenization failed: %s", model_strerror(rc));
    }
    if (rc) {
        free(t.v);
        return rc;
    }
    *toks = t.v;
    *n = t.n;
    return MODEL_OK;
}

int prompt_text(prompt_t *p, const char *text, size_t len, int max, model_token_t **toks, int *n)
{
    return model_tokenize(p->m, text, len, model_info(p->m)->add_bos, true, max, toks, n);
}

int prompt_has_user_opener(const prompt_t *p) { return p->user_opener; }
