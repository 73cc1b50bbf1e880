/* chat.c — see chat.h. */
#include "app/chat/chat.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/auth/auth.h"
#include "app/chat/route.h"
#include "app/docs/documents.h"
#include "app/docs/parts.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/utf8.h"

/* History sent with each turn: the last HISTORY_MAX messages. */
#define HISTORY_MAX 200

struct chat {
    app_t *a;
    app_provider_t *provider;
    char session_id[STORE_ID_MAX + 1];
    /* the caller, copied from the turn (a streamed answer is stored after
     * the request's handler returned) */
    bool scoped;
    store_scope_t scope;        /* user_id points into owner */
    char owner[STORE_ID_MAX + 1];
    char salt[LLM_CACHE_SALT_MAX + 1]; /* the engine's cache salt; "" none */
    llm_message_t *msgs;
    size_t n;
    char *system;               /* owned */
    store_msg_list_t history;   /* owns the history's strings */
    char *user;                 /* owned copy of the user's message */
    json_t *rag_info;           /* where the answer comes from, or NULL */
    json_t *sources;            /* the chunks it draws on, or NULL */
    const store_msg_t *replay;  /* the stored answer of a repeated
                                   idempotency key (in history), or NULL */
};

const char *chat_session_id(const chat_t *c) { return c->session_id; }

/* The caller's store scope, or NULL in local mode. */
static const store_scope_t *scope_of(const chat_t *c) { return c->scoped ? &c->scope : NULL; }

static void scope_copy(chat_t *c, const store_scope_t *from)
{
    c->scoped = from != NULL;
    if (!from)
        return;
    c->scope.admin = from->admin;
    c->scope.user_id = NULL;
    if (from->user_id) {
        snprintf(c->owner, sizeof c->owner, "%s", from->user_id);
        c->scope.user_id = c->owner;
    }
}

/* The cache salt of a chat without documents: the caller's own (that of a
 * private document of theirs), so their conversation is found by nobody
 * else's; none in local mode. */
static void caller_salt(chat_t *c)
{
    c->salt[0] = '\0';
    if (!c->scoped || !c->scope.user_id)
        return;
    store_doc_t mine;
    store_doc_init(&mine);
    mine.owner_id = c->owner;   /* borrowed: not cleaned up */
    auth_cache_salt(c->a, &mine, c->salt, sizeof c->salt);
}

/* The cache salt of a system message holding docs[0..n) whole: their one
 * salt when they all have the same, else one made from all of theirs (the
 * hex SHA-256 of the salts in order, one per line, after a tag), which
 * only a chat over these same documents uses: taking any one of theirs
 * would put the others' text (another user's, say, seen by an admin) in
 * that salt's namespace, for its owner to find by timing. */
static void docs_salt(chat_t *c, const store_doc_t *docs, size_t n)
{
    c->salt[0] = '\0';
    if (n == 0)
        return;
    auth_cache_salt(c->a, &docs[0], c->salt, sizeof c->salt);
    bool same = true;
    buf_t b;
    buf_init(&b, (size_t)STORE_SET_MAX * (LLM_CACHE_SALT_MAX + 1) + 64);
    buf_puts(&b, "kvchat-set\n");
    for (size_t i = 0; i < n; i++) {
        char s[LLM_CACHE_SALT_MAX + 1] = "";
        auth_cache_salt(c->a, &docs[i], s, sizeof s);
        same &= strcmp(s, c->salt) == 0;
        buf_puts(&b, s);
        buf_puts(&b, "\n");
    }
    if (!same) {
        char hex[65];
        documents_sha256_hex(b.data ? b.data : "", b.len, hex);
        snprintf(c->salt, sizeof c->salt, "set-%s", hex);
    }
    buf_cleanup(&b);
}

/* An untitled session is named after its first message: the first line,
 * at most TITLE_MAX bytes cut at a character boundary, with an ellipsis
 * when cut. Best effort: a failure leaves the session untitled. */
#define TITLE_MAX 60
static void title_from_message(chat_t *c, const char *session_id, const char *message)
{
    while (*message == ' ' || *message == '\t' || *message == '\n' || *message == '\r')
        message++;
    size_t len = strcspn(message, "\r\n");
    bool cut = len > TITLE_MAX || message[len] != '\0';
    if (len > TITLE_MAX)
        len = utf8_complete_len(message, TITLE_MAX);   /* do not split a character */
    while (len > 0 && message[len - 1] == ' ')
        len--;
    if (len == 0)
        return;
    buf_t b;
    buf_init(&b, 3 * len + 16);   /* room for U+FFFD per invalid byte */
    if (utf8_append_sanitized(&b, message, len) == BUF_OK && (!cut || buf_puts(&b, "…") == BUF_OK))
        store_session_set_title_scoped(c->a->store, scope_of(c), session_id, b.data);
    buf_cleanup(&b);
}

void chat_free(chat_t *c)
{
    if (!c)
        return;
    app_provider_release(c->provider);
    free(c->msgs);
    free(c->system);
    free(c->user);
    json_decref(c->rag_info);
    json_decref(c->sources);
    store_msg_list_cleanup(&c->history);
    free(c);
}

bool chat_idempotency_key_valid(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (n < 1 || n > CHAT_IDEMPOTENCY_MAX)
        return false;
    for (const char *p = key; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._:-", *p))
            return false;
    return true;
}

/* The history's user message sent with idempotency key `key` (its index),
 * or -1. */
static long find_keyed(const store_msg_list_t *h, const char *key)
{
    for (size_t i = h->n; i-- > 0;) {
        const store_msg_t *m = &h->items[i];
        if (m->role != STORE_ROLE_USER || !m->meta)
            continue;
        json_t *j = json_loads(m->meta, 0, NULL);
        const char *k = json_string_value(json_object_get(j, "idempotency_key"));
        bool same = k && strcmp(k, key) == 0;
        json_decref(j);
        if (same)
            return (long)i;
    }
    return -1;
}

/* The complete answer to history message `at`, or NULL (none yet, or only
 * answers cut short). */
static const store_msg_t *answer_to(const store_msg_list_t *h, size_t at)
{
    for (size_t i = at + 1; i < h->n && h->items[i].role != STORE_ROLE_USER; i++)
        if (h->items[i].role == STORE_ROLE_ASSISTANT && !h->items[i].incomplete)
            return &h->items[i];
    return NULL;
}

/* The previous turn's document and part (from the last answer's
 * rag_info: doc_id[cap], "" when unknown) and the previous user message,
 * from the history. */
static void previous_turn(const store_msg_list_t *h, char *doc_id, size_t cap, long *part,
                          const char **user)
{
    *part = -1;
    *user = NULL;
    doc_id[0] = '\0';
    bool seen_answer = false;
    for (size_t i = h->n; i-- > 0;) {
        const store_msg_t *m = &h->items[i];
        if (m->role == STORE_ROLE_USER && !*user) {
            *user = m->content;
            break;
        }
        if (m->role != STORE_ROLE_ASSISTANT || seen_answer || !m->meta)
            continue;
        seen_answer = true;
        json_t *meta = json_loads(m->meta, 0, NULL);
        json_t *ri = json_object_get(meta, "rag_info");
        const char *d = json_string_value(json_object_get(ri, "document_id"));
        json_t *g = json_object_get(ri, "group_id");
        if (d && json_is_integer(g)) {
            snprintf(doc_id, cap, "%s", d);
            *part = (long)json_integer_value(g);
        }
        json_decref(meta);
    }
}

/* The system message for the documents docs[0..n) and the turn's question:
 * the whole documents when they fit the model together (one document: its
 * one part, as ever), else the part among all of theirs that the question
 * is routed to. Sets c->system, c->rag_info, c->sources. */
static int prepare_documents(chat_t *c, const store_doc_t *docs, size_t n,
                             const chat_turn_t *turn, int *status, char *err, size_t errcap)
{
    app_t *a = c->a;
    parts_model_t m;
    char why0[512];
    if (parts_model_of(a, c->provider, &m, why0, sizeof why0) != PARTS_OK) {
        *status = 503;
        snprintf(err, errcap, "%s", why0);
        return -1;
    }
    store_part_list_t *plans = calloc(n, sizeof *plans);
    route_doc_t *rd = calloc(n, sizeof *rd);
    const store_doc_t **ptrs = calloc(n, sizeof *ptrs);
    route_t r;
    memset(&r, 0, sizeof r);
    char why[512] = "";
    int ret = -1;
    if (!plans || !rd || !ptrs) {
        *status = 500;
        snprintf(err, errcap, "out of memory");
        goto done;
    }
    bool all_whole = true;
    for (size_t i = 0; i < n; i++) {
        int rc = parts_plan(a, app_llm(c->provider), &m, &docs[i], &plans[i], why, sizeof why);
        if (rc != PARTS_OK) {
            *status = rc == PARTS_ELLM ? 503 : rc == PARTS_ETOOSMALL || rc == PARTS_ETOOLONG ? 422 : 500;
            snprintf(err, errcap, "%.200s: %s", docs[i].filename, why);
            goto done;
        }
        rd[i] = (route_doc_t){ &docs[i], &plans[i] };
        ptrs[i] = &docs[i];
        all_whole &= plans[i].n == 1;
    }
    int64_t together = -1;
    if (n == 1 && plans[0].n == 1) {
        c->system = parts_system_message(a, &docs[0], &plans[0], 0, NULL, 0, why, sizeof why);
        c->rag_info = route_rag_info_full(&docs[0]);
        docs_salt(c, docs, 1);
    } else if (all_whole) {
        /* Several short documents: together, in the set's order, when they
         * fit. */
        char *sys = parts_combined_message(a, ptrs, n, why, sizeof why);
        if (sys && m.n_ctx > 0 &&
            parts_count(app_llm(c->provider), &m, sys, &together, why, sizeof why) != PARTS_OK) {
            free(sys);
            *status = 503;
            snprintf(err, errcap, "%s", why);
            goto done;
        }
        if (sys && (m.n_ctx <= 0 || together <= m.budget)) {
            c->system = sys;
            c->rag_info = route_rag_info_full(&docs[0]);
            docs_salt(c, docs, n);
            json_t *ids = json_array(), *names = json_array();
            for (size_t i = 0; i < n; i++) {
                json_array_append_new(ids, json_string(docs[i].id));
                json_array_append_new(names, json_string(docs[i].filename));
            }
            json_object_set_new(c->rag_info, "document_ids", ids);
            json_object_set_new(c->rag_info, "filenames", names);
        } else {
            free(sys);
        }
    }
    if (!c->system && !turn->use_rag) {
        int64_t n_tok = together;
        for (size_t i = 0; n_tok < 0 && i < n; i++)
            n_tok = docs[i].n_tokens > n_tok ? docs[i].n_tokens : n_tok;
        *status = 422;
        snprintf(err, errcap,
                 "The whole %s does not fit the model: %s %s%lld tokens, and the model's "
                 "context holds %d tokens per conversation (%d of them for documents); ask "
                 "with use_rag to have each question answered from the part that matches it",
                 n > 1 ? "set of documents" : "document", n > 1 ? "they take" : "it takes",
                 together < 0 ? "more than " : "", (long long)n_tok, m.n_ctx, m.budget);
        goto done;
    }
    if (!c->system) {
        char prev_doc[STORE_ID_MAX + 1];
        long prev_part;
        const char *prev_user;
        previous_turn(&c->history, prev_doc, sizeof prev_doc, &prev_part, &prev_user);
        route_prev_t prev = { -1, prev_part };
        for (size_t i = 0; i < n; i++)
            if (strcmp(docs[i].id, prev_doc) == 0)
                prev.doc = (int)i;
        if (route_pick(a, rd, n, turn->message, prev_user, prev, &r, why, sizeof why)) {
            *status = 500;
            snprintf(err, errcap, "%s", why);
            goto done;
        }
        char where[600];
        c->system = parts_system_message(a, &docs[r.doc], &plans[r.doc], r.part, where,
                                         sizeof where, why, sizeof why);
        docs_salt(c, &docs[r.doc], 1);   /* the part's document: as it was cached */
        c->rag_info = route_rag_info(rd, &r, where);
        c->sources = route_sources(rd, &r);
        log_info("session %s: question routed to part %zu of %zu of document %s (score %.3f%s)",
                 c->session_id, r.part + 1, plans[r.doc].n, docs[r.doc].id, r.score,
                 r.matched ? "" : ", no match: kept");
    }
    if (!c->system) {
        *status = 500;
        snprintf(err, errcap, "%s", why[0] ? why : "cannot render the documents");
        goto done;
    }
    ret = 0;
done:
    route_cleanup(&r);
    for (size_t i = 0; plans && i < n; i++)
        store_part_list_cleanup(&plans[i]);
    free(plans);
    free(rd);
    free(ptrs);
    return ret;
}

/* The documents of the caller's session `id` (in its order) into
 * docs[0..*n) (at most STORE_SET_MAX; documents deleted meanwhile, or no
 * longer visible to the caller, are left out). */
static int session_docs(chat_t *c, const char *id, store_doc_t *docs, size_t *n)
{
    app_t *a = c->a;
    *n = 0;
    store_id_list_t ids;
    int rc = store_session_documents_scoped(a->store, scope_of(c), id, &ids);
    for (size_t i = 0; rc == STORE_OK && i < ids.n && *n < STORE_SET_MAX; i++) {
        store_doc_init(&docs[*n]);
        if (store_doc_get_scoped(a->store, scope_of(c), ids.ids[i], &docs[*n]) == STORE_OK)
            (*n)++;
    }
    store_id_list_cleanup(&ids);
    return rc;
}

/* A draft's documents, as the real turn would have them: the set it
 * names (set), or the one document it names (document_given: doc_id, NULL
 * for none), or the session's own (when it exists). */
static int draft_docs(chat_t *c, const store_id_list_t *set, bool document_given,
                      const char *doc_id, bool created, store_doc_t *docs, size_t *n)
{
    *n = 0;
    if (!set && !document_given)
        return created ? STORE_OK : session_docs(c, c->session_id, docs, n);
    const char *one[1] = { doc_id };
    const char *const *ids = set ? (const char *const *)set->ids : one;
    size_t count = set ? set->n : doc_id ? 1 : 0;
    for (size_t i = 0; i < count && *n < STORE_SET_MAX; i++) {
        store_doc_init(&docs[*n]);
        if (store_doc_get_scoped(c->a->store, scope_of(c), ids[i], &docs[*n]) == STORE_OK)
            (*n)++;
    }
    return STORE_OK;
}

/* The ids the turn names for the session's set (document_ids or a
 * collection's) into *ids (caller cleans up). Returns 0, or -1 with the
 * answer in *status/err. */
static int turn_set(app_t *a, const chat_turn_t *turn, store_id_list_t *ids, int *status,
                    char *err, size_t errcap)
{
    *ids = (store_id_list_t){ 0 };
    if (turn->collection_id) {
        store_collection_t col;
        int rc = store_collection_get(a->store, turn->collection_id, &col);
        if (rc == STORE_OK) {
            rc = documents_collection_visible(a, turn->scope, &col);
            if (rc != STORE_OK)
                store_collection_cleanup(&col);
        }
        if (rc != STORE_OK) {
            *status = rc == STORE_ENOTFOUND || rc == STORE_EINVAL ? 404 : 500;
            snprintf(err, errcap, "%s", *status == 404 ? "Collection not found"
                                                       : "Cannot read the collection");
            return -1;
        }
        *ids = col.docs;
        col.docs = (store_id_list_t){ 0 };
        store_collection_cleanup(&col);
        return 0;
    }
    if (turn->n_document_ids > STORE_SET_MAX) {
        *status = 400;
        snprintf(err, errcap, "At most %d documents in one chat", STORE_SET_MAX);
        return -1;
    }
    ids->ids = calloc(turn->n_document_ids + 1, sizeof *ids->ids);
    if (!ids->ids) {
        *status = 500;
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < turn->n_document_ids; i++) {
        store_doc_t d;
        int rc = store_doc_get_scoped(a->store, turn->scope, turn->document_ids[i], &d);
        store_doc_cleanup(&d);
        bool dup = false;
        for (size_t k = 0; k < ids->n; k++)
            dup |= strcmp(ids->ids[k], turn->document_ids[i]) == 0;
        if (rc != STORE_OK || dup) {
            *status = dup ? 400 : rc == STORE_ENOTFOUND || rc == STORE_EINVAL ? 404 : 500;
            if (dup)
                snprintf(err, errcap, "A document is named twice in document_ids");
            else
                snprintf(err, errcap, "Document not found: %.200s", turn->document_ids[i]);
            store_id_list_cleanup(ids);
            return -1;
        }
        if (!(ids->ids[ids->n] = strdup(turn->document_ids[i]))) {
            *status = 500;
            snprintf(err, errcap, "out of memory");
            store_id_list_cleanup(ids);
            return -1;
        }
        ids->n++;
    }
    return 0;
}

int chat_prepare(app_t *a, const chat_turn_t *turn, chat_t **out, int *status, char *err,
                 size_t errcap)
{
    const char *session_id = turn->session_id, *message = turn->message;
    const char *document_id = turn->document_id;
    bool document_given = turn->document_given;
    if (!store_id_valid(session_id)) {
        *status = 400;
        snprintf(err, errcap, "Invalid session id: use 1 to 128 letters, digits, '-', '_' or '.'");
        return -1;
    }
    if (!message || !*message) {
        *status = 400;
        snprintf(err, errcap, "The message must not be empty");
        return -1;
    }
    if (strlen(message) > STORE_CONTENT_MAX) {
        *status = 413;
        snprintf(err, errcap, "The message is too long");
        return -1;
    }
    store_doc_t doc;
    store_doc_init(&doc);
    bool have_doc = false;
    if (document_given && document_id && *document_id) {
        int rc = store_doc_get_scoped(a->store, turn->scope, document_id, &doc);
        if (rc) {
            *status = rc == STORE_ENOTFOUND || rc == STORE_EINVAL ? 404 : 500;
            snprintf(err, errcap, rc == STORE_ENOTFOUND || rc == STORE_EINVAL
                                      ? "Document not found" : "Cannot read the document");
            return -1;
        }
        have_doc = true;
    }
    /* Several documents named by the turn: the session's new set. */
    store_id_list_t set = { 0 };
    bool set_given = turn->ids_given || turn->collection_id;
    if (set_given && turn_set(a, turn, &set, status, err, errcap)) {
        store_doc_cleanup(&doc);
        return -1;
    }
    chat_t *c = calloc(1, sizeof *c);
    store_doc_t *docs = calloc(STORE_SET_MAX, sizeof *docs);
    size_t n_docs = 0;
    if (!c || !docs) {
        free(c);
        free(docs);
        store_id_list_cleanup(&set);
        store_doc_cleanup(&doc);
        *status = 500;
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    c->a = a;
    snprintf(c->session_id, sizeof c->session_id, "%s", session_id);
    scope_copy(c, turn->scope);
    c->provider = app_provider_acquire(a);
    store_session_t ss;
    store_session_init(&ss);
    bool created = false;
    const char *first_doc = set_given ? (set.n ? set.ids[0] : NULL) : have_doc ? doc.id : NULL;
    const store_scope_t *scope = scope_of(c);
    int rc;
    if (turn->draft) {
        /* a draft changes nothing: the session as it is (or none yet), and
         * the documents the turn would give it */
        rc = store_session_get_scoped(a->store, scope, session_id, &ss);
        if (rc == STORE_ENOTFOUND) {
            created = true;
            rc = STORE_OK;
        }
        if (rc == STORE_OK)
            rc = draft_docs(c, set_given ? &set : NULL, document_given,
                            have_doc ? doc.id : NULL, created, docs, &n_docs);
    } else {
        rc = store_session_ensure_scoped(a->store, scope, session_id, first_doc, &ss, &created);
        if (rc == STORE_OK && set_given)
            rc = store_session_set_documents_scoped(a->store, scope, session_id,
                                                    (const char *const *)set.ids, set.n);
        else if (rc == STORE_OK && document_given && !created)
            /* an explicit null/"" detaches the document; an id attaches it */
            rc = store_session_set_document_scoped(a->store, scope, session_id,
                                                   have_doc ? doc.id : NULL);
        /* The documents the session uses (given now or attached before). */
        if (rc == STORE_OK)
            rc = session_docs(c, session_id, docs, &n_docs);
    }
    if (rc != STORE_OK) {
        *status = rc == STORE_ENOTFOUND ? 404 : 500;
        snprintf(err, errcap, "Cannot open the session: %s", store_strerror(rc));
        goto fail;
    }
    rc = turn->draft && created ? STORE_OK
                                : store_msg_list_scoped(a->store, scope, session_id, 0,
                                                        &c->history);
    if (rc != STORE_OK) {
        *status = 500;
        snprintf(err, errcap, "Cannot read the session's history: %s", store_strerror(rc));
        goto fail;
    }
    if (n_docs) {
        if (prepare_documents(c, docs, n_docs, turn, status, err, errcap))
            goto fail;
    } else {
        if (a->cfg.system_no_doc[0])
            c->system = strdup(a->cfg.system_no_doc);
        caller_salt(c);
    }
    /* the same idempotency key again: the same turn */
    long keyed = turn->idempotency_key && !turn->draft
                     ? find_keyed(&c->history, turn->idempotency_key) : -1;
    if (keyed >= 0 && strcmp(c->history.items[keyed].content, message) != 0) {
        *status = 422;
        snprintf(err, errcap, "This Idempotency-Key was sent with another message");
        goto fail;
    }
    if (keyed >= 0)
        c->replay = answer_to(&c->history, (size_t)keyed);
    /* the history before the turn (before the keyed message when it is
     * answered again) */
    size_t upto = keyed >= 0 ? (size_t)keyed : c->history.n;
    if (!ss.title && c->history.n == 0 && !turn->draft)
        title_from_message(c, session_id, message);
    c->user = strdup(message);
    size_t first = upto > HISTORY_MAX ? upto - HISTORY_MAX : 0;
    c->msgs = calloc(upto - first + 2, sizeof *c->msgs);
    if (!c->user || !c->msgs) {
        *status = 500;
        snprintf(err, errcap, "out of memory");
        goto fail;
    }
    if (c->system)
        c->msgs[c->n++] = (llm_message_t){ LLM_ROLE_SYSTEM, c->system };
    for (size_t i = first; i < upto; i++) {
        const store_msg_t *m = &c->history.items[i];
        /* answers cut short are shown to the user but not sent back */
        if (m->incomplete || m->role == STORE_ROLE_SYSTEM)
            continue;
        c->msgs[c->n++] = (llm_message_t){ m->role == STORE_ROLE_USER ? LLM_ROLE_USER
                                                                       : LLM_ROLE_ASSISTANT,
                                           m->content };
    }
    c->msgs[c->n++] = (llm_message_t){ LLM_ROLE_USER, c->user };
    char *meta = NULL;
    if (turn->idempotency_key && keyed < 0) {
        json_t *k = json_pack("{s:s}", "idempotency_key", turn->idempotency_key);
        meta = json_dumps_compact(k);
        json_decref(k);
    }
    rc = keyed >= 0 || turn->draft
             ? STORE_OK
             : store_msg_append_scoped(a->store, scope, session_id, STORE_ROLE_USER, message,
                                       false, meta, NULL);
    free(meta);
    if (keyed >= 0)
        log_info("session %s: message with Idempotency-Key %s again: %s", session_id,
                 turn->idempotency_key, c->replay ? "its answer given again" : "answered anew");
    if (rc != STORE_OK) {
        *status = 500;
        snprintf(err, errcap, "Cannot store the message: %s", store_strerror(rc));
        goto fail;
    }
    *out = c;
    c = NULL;
fail:
    store_session_cleanup(&ss);
    store_doc_cleanup(&doc);
    for (size_t i = 0; i < n_docs; i++)
        store_doc_cleanup(&docs[i]);
    free(docs);
    store_id_list_cleanup(&set);
    if (!c)
        return 0;
    chat_free(c);
    return -1;
}

json_t *chat_rag_info(const chat_t *c) { return c->rag_info; }
json_t *chat_sources(const chat_t *c) { return c->sources; }

/* A repeated turn that has its answer: that answer, as if generated. */
static int replay(chat_t *c, const llm_callbacks_t *cb, void *ud, llm_result_t *res)
{
    llm_result_init(res);
    const store_msg_t *m = c->replay;
    json_t *meta = m->meta ? json_loads(m->meta, 0, NULL) : NULL;
    json_t *u = json_object_get(meta, "usage");
    res->usage.prompt_tokens = json_is_integer(json_object_get(u, "prompt_tokens"))
                                   ? json_integer_value(json_object_get(u, "prompt_tokens")) : -1;
    res->usage.completion_tokens =
        json_is_integer(json_object_get(u, "completion_tokens"))
            ? json_integer_value(json_object_get(u, "completion_tokens")) : -1;
    res->usage.cached_tokens = json_is_integer(json_object_get(u, "cached_tokens"))
                                   ? json_integer_value(json_object_get(u, "cached_tokens")) : -1;
    json_t *t = json_object_get(meta, "timings");
    res->timings = t ? json_incref(t) : NULL;
    snprintf(res->finish_reason, sizeof res->finish_reason, "%s",
             json_string_value(json_object_get(meta, "finish_reason"))
                 ? json_string_value(json_object_get(meta, "finish_reason")) : "stop");
    json_decref(meta);
    size_t len = strlen(m->content);
    res->text_len = len;
    res->ttft_ms = 0;
    if (cb && cb->on_delta && len && cb->on_delta(ud, m->content, len) != 0)
        return res->rc = LLM_ECANCELLED;
    return res->rc = LLM_OK;
}

int chat_run(chat_t *c, const llm_callbacks_t *cb, void *ud, llm_result_t *res)
{
    if (c->replay)
        return replay(c, cb, ud, res);
    llm_params_t params = llm_params_default();
    params.max_tokens = c->a->cfg.max_tokens;
    params.temperature = c->a->cfg.temperature;
    params.cache_salt = c->salt;   /* "" (none) without documents */
    pthread_mutex_lock(&c->a->lock);
    c->a->stats.chats++;
    c->a->active_chats++;
    pthread_mutex_unlock(&c->a->lock);
    /* a conversation without documents is its own key; with documents,
     * the system message (the part) is, as when it was cached */
    char key[APP_ROUTE_KEY_MAX];
    if (!c->rag_info)
        snprintf(key, sizeof key, "s%.*s", APP_ROUTE_KEY_MAX - 2, c->session_id);
    int rc = app_chat_stream(c->provider, c->rag_info ? NULL : key, c->msgs, c->n, &params, cb,
                             ud, res);
    pthread_mutex_lock(&c->a->lock);
    c->a->active_chats--;
    if (rc == LLM_ECANCELLED)
        c->a->stats.chat_cancelled++;
    else if (rc != LLM_OK)
        c->a->stats.chat_errors++;
    pthread_mutex_unlock(&c->a->lock);
    if (rc == LLM_OK)
        app_record_chat(c->a, res->ttft_ms, res->usage.prompt_tokens, res->usage.cached_tokens);
    else if (rc != LLM_ECANCELLED)
        log_warn("chat in session %s failed: %s", c->session_id, res->error);
    return rc;
}

int chat_draft(chat_t *c, bool *accepted, char *err, size_t errcap)
{
    *accepted = false;
    char key[APP_ROUTE_KEY_MAX];   /* the engine the real turn goes to (chat_run) */
    if (!c->rag_info)
        snprintf(key, sizeof key, "s%.*s", APP_ROUTE_KEY_MAX - 2, c->session_id);
    /* the conversation on the engine: its owner's, as session ids are */
    char dkey[APP_ROUTE_KEY_MAX];
    const store_scope_t *scope = scope_of(c);
    app_route_key(scope ? scope->user_id : NULL, c->session_id, strlen(c->session_id), dkey);
    int rc = app_draft(c->provider, c->rag_info ? NULL : key, c->msgs, c->n, c->salt, dkey,
                       accepted, err, errcap);
    if (rc == LLM_ENOTSUP)   /* remote providers take no drafts */
        return 0;
    return rc == LLM_OK ? 0 : -1;
}

json_t *chat_usage_json(const llm_result_t *res)
{
    json_t *u = json_object();
    if (res->usage.prompt_tokens >= 0)
        json_object_set_new(u, "prompt_tokens", json_integer(res->usage.prompt_tokens));
    if (res->usage.completion_tokens >= 0)
        json_object_set_new(u, "completion_tokens", json_integer(res->usage.completion_tokens));
    if (res->usage.cached_tokens >= 0)
        json_object_set_new(u, "cached_tokens", json_integer(res->usage.cached_tokens));
    return u;
}

int64_t chat_store_answer(chat_t *c, const char *text, size_t len, bool incomplete,
                          const llm_result_t *res)
{
    if (c->replay)   /* stored the first time */
        return c->replay->created_at;
    json_t *meta = json_pack("{s:o, s:O?, s:s, s:f, s:s, s:O?, s:O?}", "usage",
                             chat_usage_json(res), "timings", res->timings, "finish_reason",
                             res->finish_reason, "ttft_ms", res->ttft_ms, "model", res->model,
                             "rag_info", c->rag_info, "sources", c->sources);
    char *meta_s = json_dumps_compact(meta);
    json_decref(meta);
    char *t = strndup(text ? text : "", len);
    int64_t now = store_now_ms();
    int rc = store_msg_append_scoped(c->a->store, scope_of(c), c->session_id,
                                     STORE_ROLE_ASSISTANT, t ? t : "", incomplete, meta_s, NULL);
    if (rc != STORE_OK)
        log_error("session %s: cannot store the answer: %s", c->session_id, store_strerror(rc));
    free(t);
    free(meta_s);
    return now;
}
