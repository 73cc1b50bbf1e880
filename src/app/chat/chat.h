/* chat.h — one turn of a chat session: prompt assembly, the provider call,
 * and what is stored.
 *
 * The prompt is [system: the document's template] + history + [user]: the
 * document comes first and is rendered exactly as the cache endpoint renders
 * it, so the engine's cached prefix matches. A document too long for the
 * model's context is planned into parts (docs/parts.h) and the turn is
 * routed to one of them (chat/route.h): its system message replaces the
 * whole document's, and the answer carries where it came from (rag_info,
 * sources). The user turn is stored before the call; the assistant turn
 * after it, marked incomplete when the call was cut short (client gone,
 * error), with rag_info and sources in its meta.
 *
 * Accounts: a turn acts for its caller (chat_turn_t.scope): the session
 * is the caller's own of that id (made on the first message), and the
 * documents must be ones the caller may see (else 404 "Document not
 * found", as for an unknown id). The call goes to the local engine under
 * the documents' cache salt (auth_cache_salt), so it restores what was
 * cached of them and nothing of another user's: the salt of the document
 * whose text the system message holds (a routed part's document), or for
 * several documents sent whole together, their one salt when they share
 * it, else a salt made from all of theirs (no user could make it without
 * seeing every one of those documents); a turn without documents, the
 * caller's own. (A shared document's salt is everyone's, so the
 * conversation that follows it is in the namespace everyone uses: that is
 * the price of sharing its cache.)
 */
#ifndef KVCHAT_APP_CHAT_H
#define KVCHAT_APP_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "app/app.h"

typedef struct chat chat_t;

/* A turn as the client asked for it. */
typedef struct {
    const char *session_id;
    const char *message;
    const char *document_id;   /* NULL or "": none (with document_given: detach) */
    bool document_given;       /* the request named document_id (even null) */
    bool use_rag;              /* route a long document to one part (default);
                                  false: the whole document or a 422 */
    const char *const *document_ids;  /* several documents (with ids_given) */
    size_t n_document_ids;
    bool ids_given;            /* the request named document_ids */
    const char *collection_id; /* or a collection's documents; NULL: none */
    const store_scope_t *scope; /* the caller (auth_scope); NULL: local mode.
                                   Copied by chat_prepare. */
    const char *idempotency_key; /* NULL: none. The same key again in the
                                   session (a client resending after its
                                   stream broke, maybe to another replica)
                                   is the same turn: its stored answer is
                                   given again, or, when it has none, it is
                                   answered without a second user message */
    bool draft;                 /* a draft of the turn being typed (chat_draft):
                                   the same prompt, but no session is made,
                                   nothing attached and nothing stored */
} chat_turn_t;

/* An idempotency key: 1..CHAT_IDEMPOTENCY_MAX of [A-Za-z0-9._:-]. */
#define CHAT_IDEMPOTENCY_MAX 128
bool chat_idempotency_key_valid(const char *key);

/* Validate and prepare a turn: the session is created if new (ids are
 * 1..128 characters of [A-Za-z0-9_-.]), the document (if given; "" or NULL
 * keeps the session's) or documents (document_ids, a collection: the
 * session keeps the set) attached, the part chosen (several documents that
 * fit together go whole into one system message, in the set's order;
 * otherwise the best part among all of theirs), the user message
 * stored, the messages built. On failure returns -1 with *status (400,
 * 404, 422, 500, 503...) and a message in err; nothing is stored then. */
int chat_prepare(app_t *a, const chat_turn_t *turn, chat_t **out, int *status, char *err,
                 size_t errcap);

/* Send a prepared draft turn (chat_turn_t.draft) to the engine its real
 * turn will go to: the engine prefills the prompt so far into a slot kept
 * for the session, when it has nothing else to do, and the real turn then
 * decodes only what follows. Returns 0 with *accepted (false: the engine
 * had no room, or the provider takes no drafts: remote providers), or -1
 * with a message in err (the engine could not be asked). */
int chat_draft(chat_t *c, bool *accepted, char *err, size_t errcap);

/* Where the answer comes from: the prototype's rag_info, or NULL for a
 * turn without a document. Borrowed; valid until chat_free(). */
json_t *chat_rag_info(const chat_t *c);

/* The chunks the answer draws on (route_sources), or NULL. Borrowed. */
json_t *chat_sources(const chat_t *c);

/* Run the provider call (blocking); deltas go to cb. Fills *res. */
int chat_run(chat_t *c, const llm_callbacks_t *cb, void *ud, llm_result_t *res);

/* Store the assistant's answer (text[0..len)) with the usage and timings
 * of res; incomplete when it was cut short. Returns the stored message's
 * time (epoch ms). */
int64_t chat_store_answer(chat_t *c, const char *text, size_t len, bool incomplete,
                          const llm_result_t *res);

const char *chat_session_id(const chat_t *c);

/* usage/timings of a result as JSON for the API (new reference). */
json_t *chat_usage_json(const llm_result_t *res);

void chat_free(chat_t *c);

#endif
