/* partcache.h — caching the parts of a long document in the engine.
 *
 * Each part's system message (parts_system_message) is prefilled by the
 * local engine onto its disk tier (LLM_PREFILL_DISK; an engine without a
 * disk tier keeps it in RAM), one part after another, and its cache state
 * kept in the store as soon as it is known, so what is done stays done:
 * a client that goes away does not stop the run, a restart keeps the
 * cached parts, and a part the engine still holds is skipped (caching is
 * incremental). A part that fails is recorded as failed with the reason
 * and the run goes on with the next one.
 *
 * Every part is prefilled under the document's cache salt
 * (auth_cache_salt: its owner's in accounts mode, none when shared or in
 * local mode), so another user's identical text never restores it; an
 * entry made under another salt (before the document was shared or
 * unshared) does not count as the part's.
 *
 * Events report the run as the prototype's client expects them: "init"
 * (the parts), "progress" per part and while a part prefills (with the
 * token-level percent of the whole run and an estimate of the time left),
 * and "complete" (counts of cached and failed parts).
 */
#ifndef KVCHAT_APP_DOCS_PARTCACHE_H
#define KVCHAT_APP_DOCS_PARTCACHE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "app/app.h"
#include "app/docs/parts.h"

/* Receives each event (a new reference, which it takes). May be NULL. */
typedef void (*partcache_event_fn)(void *ud, json_t *event);

typedef struct {
    size_t total, cached, failed, skipped;  /* parts */
    int64_t tokens, bytes;                  /* of the cached parts */
    double ms;                              /* prefill time spent in this run */
    char error[512];                        /* the first failure, "" if none */
    int http_status;                        /* of the first failure; 200 if none */
} partcache_result_t;

/* Cache every part of `plan` (document d, model m) with the engine of p.
 * Fills *out. Returns 0 when every part is cached, -1 otherwise (see
 * out->error and out->http_status). */
int partcache_run(app_t *a, app_provider_t *p, const store_doc_t *d, const parts_model_t *m,
                  const store_part_list_t *plan, partcache_event_fn on_event, void *ud,
                  partcache_result_t *out);

/* The API's view of a plan: [{group_id, chunk_ids, first_chunk,
 * last_chunk, total_tokens, content_length, page_range, where, cached,
 * tier, status, error, cached_tokens}]; a part counts as cached only when the engine
 * still holds its entry, made under the document's cache salt (live: the
 * engine's entry list, sorted by id, or NULL when it could not be asked:
 * then the stored state stands). New reference. */
json_t *partcache_groups_json(app_t *a, const store_doc_t *d, const store_part_list_t *plan,
                              const llm_cache_entry_t *live, size_t n_live, bool asked);

#endif
