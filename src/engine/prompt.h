/* prompt.h — chat messages to tokens, cut at message boundaries.
 *
 * The KV-cache store only helps when a request's tokens START WITH the
 * tokens of something cached. Tokenizing a whole rendered conversation does
 * not guarantee that (BPE merges across boundaries), so a conversation is
 * rendered with the model's chat template and tokenized piece by piece:
 * for each message its opener (role header, parsed for special tokens), its
 * content (never parsed for special tokens, so a document cannot inject
 * "<|im_start|>"), and its closer. The tokens of the first k messages are
 * then always a prefix of the tokens of the first k+1.
 *
 * Two endings: PROMPT_GENERATE appends the assistant opener (ready to
 * generate); PROMPT_PREFIX appends the opener of the next user turn when the
 * template allows, so a cached document prefix already holds the fixed
 * tokens every question starts with.
 *
 * Generated replies come back as assistant messages in the next turn. Their
 * text would not re-tokenize to the tokens that were generated, so the
 * engine remembers the tokens of recent replies (prompt_remember_reply) and
 * uses them again for the same text: a session's next turn then starts with
 * exactly the tokens of the snapshot taken after its previous turn. Replies
 * it does not remember (an engine restarted since, or more replies than it
 * keeps) are looked for in the cache itself (prompt_set_reply_source): a
 * stored snapshot that continues the conversation up to the reply holds the
 * reply's tokens, and those whose text is the reply's are used again.
 *
 * Salts: a reply remembered, or found in the cache, under one cache_salt
 * (kvstore.h, "Salts") is used again only for a conversation under the
 * same salt, and one remembered or found without a salt only for one
 * without: which tokens a reply's text becomes would otherwise tell a
 * request (by its prompt_tokens, or its timing) that another namespace
 * had that reply in its cache.
 *
 * Thread-safe: a prompt_t may be used from any thread.
 */
#ifndef KVCHAT_ENGINE_PROMPT_H
#define KVCHAT_ENGINE_PROMPT_H

#include <stddef.h>

#include "engine/kvstore.h"
#include "engine/model.h"

typedef struct {
    const char *role;       /* "system" | "user" | "assistant" */
    const char *content;
    /* NULL, or a NULL-terminated list of marker strings (a tool-calling
     * family's, tools_family_markers()) that, where they occur in content,
     * become their special token, as the family's own template would put
     * them. Only markers that are one control token are read so; the rest
     * of the content never is (see test_content_not_special). */
    const char *const *markers;
} prompt_msg_t;

typedef enum {
    PROMPT_GENERATE,        /* end with the assistant opener */
    PROMPT_PREFIX,          /* end with the next user turn's opener, if any */
    PROMPT_DRAFT,           /* end after the last message's content: a turn
                             * still being typed (its tokens are a prefix of
                             * the PROMPT_GENERATE tokens of the finished
                             * turn when the text so far ends a word) */
} prompt_end_t;

typedef struct prompt prompt_t;

/* The model must outlive the prompt_t. `replies_max` bounds the remembered
 * replies (oldest forgotten first). Returns 0 or MODEL_ENOMEM. */
int prompt_new(const model_t *m, int replies_max, prompt_t **out);
void prompt_free(prompt_t *p);

/* Tokens for a conversation. At most `max` tokens (else MODEL_ETOOLONG with
 * *n set to the count that was reached). On success *toks is malloc'd
 * (caller frees). On error, a message for the client goes to err. */
int prompt_chat(prompt_t *p, const prompt_msg_t *msgs, int n_msgs, prompt_end_t end, int max,
                model_token_t **toks, int *n, char *err, size_t errcap);

/* prompt_chat() for a conversation under the cache salt `salt` (NULL: none,
 * which is what prompt_chat() does): replies are looked up among those
 * remembered or stored in that namespace only. */
int prompt_chat_salted(prompt_t *p, const kvstore_salt_t *salt, const prompt_msg_t *msgs,
                       int n_msgs, prompt_end_t end, int max, model_token_t **toks, int *n,
                       char *err, size_t errcap);

/* Tokens for a raw prompt (completions API): BOS where the model wants it,
 * special tokens parsed, as llama-server does. */
int prompt_text(prompt_t *p, const char *text, size_t len, int max, model_token_t **toks, int *n);

/* Where replies not remembered are looked for: source(src, prefix, n,
 * visit, vud) calls visit(tokens, n_tokens, vud) for stored token sequences
 * that start with prefix[0..n) until visit returns non-zero (the engine
 * passes its KV store's entries). Set it before the prompt_t is shared;
 * NULL (the default) turns the lookup off. */
typedef int (*prompt_visit_fn)(const model_token_t *tokens, int n, void *vud);
typedef int (*prompt_source_fn)(void *src, const model_token_t *prefix, int n,
                                prompt_visit_fn visit, void *vud);
void prompt_set_reply_source(prompt_t *p, prompt_source_fn source, void *src);

/* As prompt_set_reply_source(), with a source that is told the namespace
 * to search (NULL: no salt) and must visit only the sequences stored in
 * it. A source set by prompt_set_reply_source() is asked for conversations
 * without a salt only. The last one set replaces the other. */
typedef int (*prompt_salted_source_fn)(void *src, const kvstore_salt_t *salt,
                                       const model_token_t *prefix, int n, prompt_visit_fn visit,
                                       void *vud);
void prompt_set_reply_source_salted(prompt_t *p, prompt_salted_source_fn source, void *src);

/* Remember that `text` was produced as the tokens toks[0..n), without a
 * salt. Copies both. */
void prompt_remember_reply(prompt_t *p, const char *text, size_t len, const model_token_t *toks,
                           int n);

/* prompt_remember_reply() in the namespace `salt` (NULL: none; copied):
 * used again only by prompt_chat_salted() with the same salt. */
void prompt_remember_reply_salted(prompt_t *p, const kvstore_salt_t *salt, const char *text,
                                  size_t len, const model_token_t *toks, int n);

/* Whether the template puts the next user turn's opener in a prefix
 * (PROMPT_PREFIX has an effect). */
int prompt_has_user_opener(const prompt_t *p);

#endif
