/* partcache.c — see partcache.h.
 *
 * Salts: every part of a document is prefilled under the document's cache
 * salt (auth_cache_salt), and an entry the engine lists counts as the
 * part's only when it was made under that salt (its salt_hash), so a
 * document shared or unshared since its parts were cached has them made
 * anew rather than skipped.
 */
#include "app/docs/partcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/auth/auth.h"
#include "app/docs/documents.h"
#include "common/log.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_entry(const void *x, const void *y)
{
    return strcmp(((const llm_cache_entry_t *)x)->id, ((const llm_cache_entry_t *)y)->id);
}

/* Document d's cache salt into salt ("" for none) and its hex SHA-256 as
 * the engine lists it into hash ("" for none). */
static void doc_salt(app_t *a, const store_doc_t *d, char salt[LLM_CACHE_SALT_MAX + 1],
                     char hash[65])
{
    salt[0] = hash[0] = '\0';
    auth_cache_salt(a, d, salt, LLM_CACHE_SALT_MAX + 1);
    if (salt[0])
        documents_sha256_hex(salt, strlen(salt), hash);
}

/* The entry `id` of the engine's list if it was made under the salt whose
 * hash is salt_hash ("" for none), else NULL. */
static const llm_cache_entry_t *find_entry(const llm_cache_entry_t *live, size_t n,
                                           const char *id, const char *salt_hash)
{
    if (!live || !n || !id)
        return NULL;
    llm_cache_entry_t key;
    snprintf(key.id, sizeof key.id, "%s", id);
    const llm_cache_entry_t *e = bsearch(&key, live, n, sizeof *live, cmp_entry);
    return e && strcmp(e->salt_hash, salt_hash) == 0 ? e : NULL;
}

json_t *partcache_groups_json(app_t *a, const store_doc_t *d, const store_part_list_t *plan,
                              const llm_cache_entry_t *live, size_t n_live, bool asked)
{
    json_t *arr = json_array();
    char salt[LLM_CACHE_SALT_MAX + 1] = "", hash[65] = "";
    if (asked)
        doc_salt(a, d, salt, hash);
    for (size_t i = 0; i < plan->n; i++) {
        const store_part_t *p = &plan->items[i];
        /* a one-part plan is the document itself: its cache state is the
         * document's */
        const store_cache_t *c = plan->n == 1 ? &d->cache : &p->cache;
        bool stored = c->status == STORE_CACHE_CACHED && c->entry_id;
        const llm_cache_entry_t *e = stored && asked ? find_entry(live, n_live, c->entry_id, hash)
                                                     : NULL;
        bool cached = stored && (!asked || e);
        const char *status = cached ? "cached"
                             : stored ? "none"   /* the engine let it go */
                                      : store_cache_status_name(c->status);
        store_chunk_t first, last;
        int64_t pf = 0, pl = 0;
        if (store_chunk_get(a->store, d->id, p->chunk_first, &first) == STORE_OK) {
            pf = first.page_first;
            store_chunk_cleanup(&first);
        }
        if (store_chunk_get(a->store, d->id, p->chunk_last, &last) == STORE_OK) {
            pl = last.page_last;
            store_chunk_cleanup(&last);
        }
        char where[600] = "";
        if (plan->n > 1)
            parts_where(a, d->id, p->chunk_first, p->chunk_last, where, sizeof where);
        json_t *ids = json_array();
        for (int64_t k = p->chunk_first; k <= p->chunk_last && d->n_chunks > 0; k++)
            json_array_append_new(ids, json_integer(k));
        json_array_append_new(
            arr, json_pack("{s:I, s:o, s:I, s:I, s:o, s:I, s:o, s:s, s:b, s:s?, s:s, s:s?, s:o}",
                           "group_id", (json_int_t)i, "chunk_ids", ids, "first_chunk",
                           (json_int_t)p->chunk_first, "last_chunk", (json_int_t)p->chunk_last,
                           "total_tokens", p->tokens >= 0 ? json_integer(p->tokens) : json_null(),
                           "content_length", (json_int_t)p->content_length, "page_range",
                           pf > 0 ? json_pack("[I,I]", (json_int_t)pf, (json_int_t)pl)
                                  : json_null(),
                           "where", where, "cached", cached, "tier",
                           cached ? (e ? e->tier : c->tier) : NULL, "status", status, "error",
                           c->status == STORE_CACHE_FAILED ? c->error : NULL, "cached_tokens",
                           cached && c->tokens >= 0 ? json_integer(c->tokens) : json_null()));
    }
    return arr;
}

/* ---- the run ---- */

typedef struct {
    partcache_event_fn on_event;
    void *ud;
    size_t group, total_groups, cached_count;
    int64_t tokens_before, tokens_all;   /* estimated tokens of the parts */
    int64_t part_tokens;
    double t0;                           /* when prefilling began */
    int64_t tokens_done;                 /* prefilled in this run, for the rate */
    int last_pct;
} run_t;

static void emit(run_t *r, json_t *ev)
{
    if (r->on_event && ev)
        r->on_event(r->ud, ev);
    else
        json_decref(ev);
}

/* Percent of the whole run's tokens and seconds left at this run's rate; a failed part
 * carries the error its groups entry stores, so a client shows the same text from both. */
static void progress_ex(run_t *r, const char *status, int64_t done_in_part, const char *error)
{
    int64_t done = r->tokens_before + done_in_part;
    int pct = r->tokens_all > 0 ? (int)(done * 100 / r->tokens_all) : 100;
    if (pct > 100)
        pct = 100;
    if (!strcmp(status, "caching") && pct == r->last_pct)
        return;
    r->last_pct = pct;
    double elapsed = now_ms() - r->t0;
    int64_t rate_done = r->tokens_done + done_in_part;
    json_t *eta = rate_done > 0 && elapsed > 0
                      ? json_real((double)(r->tokens_all - done) * elapsed / (double)rate_done /
                                  1000.0)
                      : json_null();
    json_t *ev = json_pack("{s:s, s:I, s:s, s:I, s:I, s:i, s:I, s:I, s:o}", "event", "progress",
                           "group_id", (json_int_t)r->group, "status", status, "cached_count",
                           (json_int_t)r->cached_count, "total_groups",
                           (json_int_t)r->total_groups, "percent", pct, "done", (json_int_t)done,
                           "total", (json_int_t)r->tokens_all, "eta_s", eta);
    if (ev && error)
        json_object_set_new(ev, "error", json_string(error));
    emit(r, ev);
}

static void progress(run_t *r, const char *status, int64_t done_in_part)
{
    progress_ex(r, status, done_in_part, NULL);
}

static void on_prefill_progress(void *ud, int done, int total)
{
    run_t *r = ud;
    (void)total;
    progress(r, "caching", done);
}

/* A cache run keeps going when its client leaves: the parts are worth
 * having. */
static bool never_stop(void *ud)
{
    (void)ud;
    return false;
}

int partcache_run(app_t *a, app_provider_t *p, const store_doc_t *d, const parts_model_t *m,
                  const store_part_list_t *plan, partcache_event_fn on_event, void *ud,
                  partcache_result_t *out)
{
    memset(out, 0, sizeof *out);
    out->total = plan->n;
    out->http_status = 200;
    run_t r = { .on_event = on_event, .ud = ud, .total_groups = plan->n, .last_pct = -1,
                .t0 = now_ms() };
    for (size_t i = 0; i < plan->n; i++)
        r.tokens_all += plan->items[i].tokens > 0 ? plan->items[i].tokens : 0;

    llm_cache_entry_t *live = NULL;
    size_t n_live = 0;
    char err[512], salt[LLM_CACHE_SALT_MAX + 1], hash[65];
    doc_salt(a, d, salt, hash);
    bool asked = app_cache_entries(p, &live, &n_live, err, sizeof err) == LLM_OK;
    if (asked && n_live > 1)
        qsort(live, n_live, sizeof *live, cmp_entry);
    emit(&r, json_pack("{s:s, s:s, s:I, s:o}", "event", "init", "doc_id", d->id, "total_groups",
                       (json_int_t)plan->n,
                       "groups", partcache_groups_json(a, d, plan, live, n_live, asked)));

    store_cache_t caching = { .status = STORE_CACHE_CACHING };
    store_doc_set_cache(a->store, d->id, &caching);
    for (size_t i = 0; i < plan->n; i++) {
        const store_part_t *part = &plan->items[i];
        r.group = i;
        r.part_tokens = part->tokens > 0 ? part->tokens : 0;
        bool have = part->cache.status == STORE_CACHE_CACHED && part->cache.entry_id &&
                    (!asked || find_entry(live, n_live, part->cache.entry_id, hash));
        if (have) {
            out->cached++;
            out->skipped++;
            out->tokens += part->cache.tokens > 0 ? part->cache.tokens : 0;
            out->bytes += part->cache.bytes > 0 ? part->cache.bytes : 0;
            r.cached_count++;
            r.tokens_before += r.part_tokens;
            progress(&r, "cached", 0);
            continue;
        }
        store_part_set_cache(a->store, d->id, m->plan_key, (int64_t)i, &caching);
        char why[256];
        char *sys = parts_system_message(a, d, plan, i, NULL, 0, why, sizeof why);
        llm_prefill_result_t pr;
        memset(&pr, 0, sizeof pr);
        int rc = LLM_ENOMEM;
        if (sys) {
            llm_message_t msg = { LLM_ROLE_SYSTEM, sys };
            llm_callbacks_t cb = { .on_progress = on_prefill_progress, .should_stop = never_stop };
            rc = app_prefill(p, &msg, 1, LLM_PREFILL_DISK, salt, &cb, &r, &pr);
            if (rc == LLM_EREFUSED || rc == LLM_EUPSTREAM)   /* no disk tier, or it is full */
                rc = app_prefill(p, &msg, 1, 0, salt, &cb, &r, &pr);
        } else {
            snprintf(pr.error, sizeof pr.error, "%s", why);
        }
        free(sys);
        if (rc != LLM_OK) {
            if (!pr.error[0])
                snprintf(pr.error, sizeof pr.error, "%s", llm_strerror(rc));
            char *why_failed = pr.error;
            store_cache_t c = { .status = STORE_CACHE_FAILED, .error = why_failed };
            store_part_set_cache(a->store, d->id, m->plan_key, (int64_t)i, &c);
            out->failed++;
            if (!out->error[0]) {
                snprintf(out->error, sizeof out->error, "part %zu of %zu: %.400s", i + 1, plan->n,
                         why_failed);
                out->http_status = llm_http_status(rc);
            }
            log_warn("document %s: part %zu of %zu not cached: %s", d->id, i + 1, plan->n,
                     why_failed);
            r.tokens_before += r.part_tokens;
            progress_ex(&r, "failed", 0, why_failed);
            continue;
        }
        store_cache_t c = { .status = STORE_CACHE_CACHED, .entry_id = pr.id,
                            .tokens = pr.n_tokens, .bytes = pr.bytes, .tier = pr.tier,
                            .ms = pr.prefill_ms };
        store_part_set_cache(a->store, d->id, m->plan_key, (int64_t)i, &c);
        out->cached++;
        out->tokens += pr.n_tokens;
        out->bytes += pr.bytes;
        out->ms += pr.prefill_ms;
        r.cached_count++;
        r.tokens_before += r.part_tokens;
        r.tokens_done += r.part_tokens;
        progress(&r, "cached", 0);
    }
    free(live);
    /* The document is cached when every part is. */
    store_cache_t dc = { .status = out->failed ? STORE_CACHE_FAILED : STORE_CACHE_CACHED,
                         .tokens = out->tokens, .bytes = out->bytes, .tier = "disk",
                         .ms = out->ms, .error = out->failed ? out->error : NULL,
                         .cached_at = -1 };
    if (out->failed)
        dc.tier = NULL;
    store_doc_set_cache(a->store, d->id, &dc);
    emit(&r, json_pack("{s:s, s:s, s:I, s:I, s:I}", "event", "complete", "doc_id", d->id,
                       "cached_groups", (json_int_t)out->cached, "total_groups",
                       (json_int_t)plan->n, "failed_groups", (json_int_t)out->failed));
    log_info("document %s: %zu of %zu parts cached (%zu already), %zu failed, %lld tokens, "
             "%lld bytes, %.0f ms",
             d->id, out->cached, plan->n, out->skipped, out->failed, (long long)out->tokens,
             (long long)out->bytes, out->ms);
    return out->failed ? -1 : 0;
}
