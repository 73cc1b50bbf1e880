/* parts.h — a document's chunks and parts: documents of any length.
 *
 * A document is cut into chunks once, when it is stored (parts_chunk: the
 * chunker over its text, the text index over each chunk, the store keeps
 * both). For the model in use it is then planned into parts (the
 * prototype's groups): a document whose rendered system message fits the
 * model's context minus the conversation's reserve is ONE part, rendered
 * exactly as a short document always was (same text, same cache entry); a
 * longer one becomes consecutive runs of whole chunks, each rendered as
 * the configured template around a line naming the document, the part
 * and its pages or sections, then the part's text, within that budget,
 * consecutive parts sharing at least a chunk (documents.part_overlap_tokens)
 * so that a passage near a boundary is whole in one of them.
 *
 * A plan belongs to a plan key: the model's tokenizer, its context, the
 * reserve, the overlap and the template, hashed. Another model (or other
 * settings) gets a plan of its own; the old one stays in the store with
 * its cache states, for when that model comes back.
 *
 * Rendering is one function (parts_system_message) used by caching and
 * chatting alike, so the prefix a question sends is the one that was
 * cached, byte for byte.
 *
 * Threading: any thread; two threads planning one document at once both
 * compute the same plan and the store keeps one.
 */
#ifndef KVCHAT_APP_DOCS_PARTS_H
#define KVCHAT_APP_DOCS_PARTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/app.h"

enum {
    PARTS_OK = 0,
    PARTS_ENOMEM = -1,
    PARTS_ESTORE = -2,     /* the store failed (message says how) */
    PARTS_ELLM = -3,       /* the model server could not count tokens */
    PARTS_ETOOSMALL = -4,  /* the context cannot hold even one chunk */
    PARTS_EIO = -5,        /* a temporary file could not be written or read */
    PARTS_ENOTEXT = -6,    /* the document has no text to cut */
    PARTS_ETOOLONG = -7,   /* it would need more than documents.max_parts parts */
};

/* The model a plan is made for. */
typedef struct {
    char tokens_key[STORE_KEY_MAX + 1]; /* whose tokenizer: "tok:<fingerprint>" or
                                           "estimate" */
    char plan_key[STORE_KEY_MAX + 1];   /* tokens_key + the shaping settings */
    int n_ctx;                          /* tokens one conversation may use; 0 = unknown
                                           (then every document is one part) */
    int budget;                         /* most tokens a part's system message takes */
    int overlap;                        /* tokens consecutive parts share, at least */
    bool exact;                         /* counts come from the model's tokenizer */
} parts_model_t;

/* The context a conversation keeps for itself out of n_ctx tokens:
 * documents.conversation_reserve, or a quarter of n_ctx and at least 1024
 * when that setting is 0 (never more than half of n_ctx). */
int parts_reserve(const app_t *a, int n_ctx);

/* Describe the model behind llm for planning. The local engine (and any
 * server that reports its context per request and its fingerprint) gives
 * exact counts; another provider gives estimates, and n_ctx 0 when it does
 * not say (then every document is one part). Returns PARTS_OK, or
 * PARTS_ELLM with the reason in err when the server cannot be asked (the
 * engine stopped, say): a plan made then would be for no model. *out is
 * filled either way (as for a model that says nothing). */
int parts_model(app_t *a, llm_provider_t *llm, parts_model_t *out, char *err, size_t errcap);
/* parts_model of provider p's model: with several engines, asked of the
 * first healthy one, and of the next when that one is found down. */
int parts_model_of(app_t *a, app_provider_t *p, parts_model_t *out, char *err, size_t errcap);

/* Cut document `doc_id`'s text into chunks and store them with their index
 * texts, replacing any chunks it had (and so its plans). The text is read
 * from text_fd from its start when text_fd >= 0, else from the store (via
 * a temporary file in the uploads directory); marks (may be NULL) give its
 * pages and headings. Memory stays bounded by a chunk, whatever the
 * text's length. *n_chunks (may be NULL) receives the count. Returns
 * PARTS_OK or a PARTS_E* code with a message in err. */
int parts_chunk(app_t *a, const char *doc_id, int text_fd, const store_mark_t *marks,
                size_t n_marks, int64_t *n_chunks, char *err, size_t errcap);

/* The plan of document d for model m into *out (caller-owned,
 * store_part_list_cleanup): the stored one when there is one, else one made
 * now (cutting the document first when it has no chunks yet, and counting
 * its chunks' tokens with llm when m->exact) and stored. A document with
 * no chunks at all (no searchable text) is one part. Returns PARTS_OK, or
 * a PARTS_E* code with a message in err (out then empty). */
int parts_plan(app_t *a, llm_provider_t *llm, const parts_model_t *m, const store_doc_t *d,
               store_part_list_t *out, char *err, size_t errcap);

/* The system message of part `i` of plan `plan` of document d: for a plan
 * of one part, documents_system_message() over the whole text (as ever);
 * else the template around the part's header line and text. *pages_out
 * (may be NULL) receives the header's description of where the part is
 * ("pages 20–23", "sections “Intro” to “Errors”", or ""), at most cap
 * bytes. Returns a malloc'd string (caller frees) or NULL (message in err). */
char *parts_system_message(app_t *a, const store_doc_t *d, const store_part_list_t *plan,
                           size_t i, char *where, size_t where_cap, char *err, size_t errcap);

/* The system message for several whole documents at once, in the order
 * given (so that the same set renders to the same prefix): the template
 * with {document} = each document's text under a line naming it
 * ("[Document 2 of 3: b.pdf]") and {filename} = their names joined by
 * ", ". Returns a malloc'd string (caller frees) or NULL (message in err). */
char *parts_combined_message(app_t *a, const store_doc_t *const *docs, size_t n, char *err,
                             size_t errcap);

/* Tokens of text s for model m (the model's tokenizer, or the estimate).
 * Returns PARTS_OK or PARTS_ELLM (message in err). */
int parts_count(llm_provider_t *llm, const parts_model_t *m, const char *s, int64_t *out,
                char *err, size_t errcap);

/* Where chunks first..last are, for people: "pages iv–3" (printed labels
 * where the document has them), "page 7", "“Heading”", or "" — into buf
 * (cap bytes). Reads the two chunks from the store. */
void parts_where(app_t *a, const char *doc_id, int64_t first, int64_t last, char *buf,
                 size_t cap);

#endif
