/* store_copy.h — copy every record of one store into another, empty one.
 *
 * Backend-neutral: it reads the source through store.h and writes the
 * destination through its backend's function table (store__backend), so
 * that ids and times are kept as they are: users (with their password
 * hashes, roles, disabled flags, creation and change times), documents
 * (ids, owners, sharing, upload times, texts, cache states, marks, chunks
 * with their token counts, their index texts made again by the caller's
 * index function), sessions of every owner (client ids, creation and
 * activity times, titles, their documents), their messages (in order, with
 * their times; new ids, in the same order), logins and the audit log
 * (times kept, new ids in the same order). Not copied: API tokens (the
 * store can only find a token by its secret's hash, never list it, so
 * users make new ones), collections and plans of parts (there is no list of
 * them; parts are planned again on demand).
 *
 * Each record is its own transaction: a failure leaves the destination
 * partly written (it was empty: drop it and copy again).
 */
#ifndef KVCHAT_APP_STORE_COPY_H
#define KVCHAT_APP_STORE_COPY_H

#include <stdint.h>

#include "app/store/store.h"

typedef struct {
    int64_t users, documents, chunks, sessions, messages, logins, audit, tokens, collections;
} store_copy_counts_t;

/* Make the index text of a chunk's content[0..n) into *out (a heap
 * string the copy frees). Returns STORE_OK or a STORE_E* code. */
typedef int (*store_copy_index_fn)(void *ud, const char *content, size_t n, char **out);

/* Copy every record of `src` into `dst` (see above). dst must hold no
 * users, documents, sessions or audit entries: STORE_ECONFLICT otherwise,
 * with nothing written. index(ud, ...) makes the chunks' index texts.
 * *counts (may be NULL) receives what was copied, also after a failure.
 * Returns STORE_OK or the first error. */
int store_copy(store_t *src, store_t *dst, store_copy_index_fn index, void *ud,
               store_copy_counts_t *counts);

#endif
