/* scheduler.h — continuous batching over N sequence slots, with KV reuse.
 *
 * One decode thread owns the inference context. Requests ("jobs") are
 * submitted from HTTP threads into a bounded queue; the thread admits them
 * into free slots, restores the longest cached prefix of each job's tokens
 * (from the slot itself, the RAM tier or the disk tier), and then, step by
 * step, builds ONE batch holding the next token of every generating slot
 * plus a chunk of pending prompt tokens, decodes it, samples per slot and
 * streams text out through the job's sink.
 *
 * Salts: a job runs in the namespace of its cache salt, or in that of no
 * salt (kvstore.h, "Salts"). It restores only entries of that namespace,
 * its snapshots go into it, and it reuses what an idle slot holds only
 * when that slot's last job ran in the same namespace (a slot remembers
 * the namespace of the KV it holds); otherwise the slot's KV is dropped,
 * never shared or counted as cached.
 *
 * Snapshots are taken at exact boundaries: at the end of a prefill job, and
 * at the end of every finished job (its prompt plus reply), so the next turn
 * of a conversation restores its whole history. A prefill job may send its
 * snapshot to the disk tier only (to_disk): the slot is then emptied, so
 * the prefix is held by neither RAM nor a slot, and the next such job finds
 * that slot free instead of taking one that holds another document.
 *
 * Ownership: a job is reference-counted between the submitter and the
 * scheduler. The sink's on_done is called exactly once per accepted job
 * (also when cancelled or failed) and is the last callback; after it the
 * scheduler holds no reference. sched_job_release() drops the submitter's.
 * Callbacks run on the decode thread and must not block.
 */
#ifndef KVCHAT_ENGINE_SCHEDULER_H
#define KVCHAT_ENGINE_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/kvstore.h"
#include "engine/model.h"
#include "engine/prompt.h"

enum {
    SCHED_OK = 0,
    SCHED_ENOMEM = -1,
    SCHED_EBUSY = -2,        /* queue full */
    SCHED_ETOOLONG = -3,     /* prompt does not fit a slot */
    SCHED_ESTOPPED = -4,     /* scheduler shutting down */
    SCHED_EINVAL = -5,
    SCHED_EDECODE = -6,      /* the model failed to decode */
    SCHED_ESTORE = -7,       /* a to_disk prefill's snapshot could not be stored */
};

const char *sched_strerror(int rc);

typedef struct sched sched_t;
typedef struct sched_job sched_job_t;

typedef enum { JOB_GENERATE, JOB_PREFILL } job_kind_t;

typedef enum {
    TIER_NONE = 0,
    TIER_SLOT,
    TIER_RAM,
    TIER_DISK,
    TIER_SHARED,                 /* the shared tier (kvstore.h, SHARED TIER) */
} cache_tier_t;

#define SCHED_N_TIERS 5

const char *sched_tier_name(cache_tier_t t);

#define SCHED_MAX_STOP 8

typedef struct {
    job_kind_t kind;
    model_token_t *tokens;       /* ownership moves to the job on submit */
    int n_tokens;
    int max_tokens;              /* generation limit (JOB_GENERATE) */
    model_sampling_t sampling;
    char *stop[SCHED_MAX_STOP];  /* owned by the job after submit */
    int n_stop;
    bool ignore_eos;
    bool use_cache;              /* false: neither restore nor snapshot */
    bool pin;                    /* pin the snapshot (JOB_PREFILL) */
    bool to_disk;                /* JOB_PREFILL: the snapshot goes to the disk
                                  * tier only (kvstore_insert_disk; its file is
                                  * queued, not yet durable, at on_done) and the
                                  * slot is emptied; failing that, the job fails
                                  * with SCHED_ESTORE */
    kvstore_salt_t salt;         /* the job's cache namespace (zeroed: no salt) */
} sched_job_params_t;

void sched_job_params_init(sched_job_params_t *p);
/* Frees what the params own (for callers that did not submit them). */
void sched_job_params_cleanup(sched_job_params_t *p);

typedef struct {
    int rc;                      /* SCHED_OK or an error */
    char error[256];
    const char *finish_reason;   /* "stop" | "length" | "cancelled" | "error" */
    int prompt_n;                /* prompt tokens decoded */
    int cache_n;                 /* prompt tokens restored from cache */
    cache_tier_t cache_tier;
    double queue_ms;             /* waiting for a slot */
    double prompt_ms;            /* restore + prompt decode, to the first token */
    double predicted_ms;
    int predicted_n;
    double ttft_ms;              /* submit to first token */
    double restore_ms;           /* loading and restoring the cached prefix */
    const char *text;            /* whole generated text (valid UTF-8) */
    size_t text_len;
    const model_token_t *gen_tokens; /* the generated tokens (no end-of-generation) */
    int n_gen_tokens;
    /* JOB_PREFILL: the snapshot */
    char entry_id[KVSTORE_ID_LEN + 1];
    size_t entry_bytes;
    int entry_tokens;
    bool entry_existed;          /* the same tokens were already stored */
} sched_result_t;

typedef struct {
    /* A piece of generated text (valid UTF-8, never splits a character,
     * never contains the start of a stop string that may still complete). */
    void (*on_text)(void *ud, const char *text, size_t len);
    /* Prompt progress after each decode step that fed prompt tokens:
     * `done` of `total` prompt tokens are in the KV (cached ones included).
     * May be NULL. */
    void (*on_progress)(void *ud, int done, int total);
    /* Always called once at the end. The result is valid during the call. */
    void (*on_done)(void *ud, const sched_result_t *res);
} sched_sink_t;

typedef struct {
    int n_slots;
    int n_batch;                 /* tokens per decode */
    int prompt_chunk;            /* prompt tokens per step while others generate */
    int queue_max;               /* waiting jobs beyond the slots */
} sched_config_t;

void sched_config_default(sched_config_t *c);

/* Start the decode thread. The model, context, store and prompt must
 * outlive the scheduler. `store` may be NULL (no RAM/disk tiers). */
int sched_start(const sched_config_t *cfg, model_t *m, model_ctx_t *ctx, kvstore_t *store,
                prompt_t *prompt, sched_t **out);

/* Cancel every job (their on_done runs), stop the thread, free. */
void sched_stop(sched_t *s);

/* Submit a job. On success the params' pointers belong to the job and
 * *job (if job != NULL) holds a reference the caller must release.
 * On error nothing was taken and no callback will run:
 * SCHED_EBUSY (queue full), SCHED_ETOOLONG, SCHED_ESTOPPED. */
int sched_submit(sched_t *s, sched_job_params_t *p, const sched_sink_t *sink, void *ud,
                 sched_job_t **job);

/* Ask the scheduler to stop a job; safe from any thread, any number of
 * times, before or after it finished. Its on_done follows within a step. */
void sched_cancel(sched_job_t *job);
void sched_job_release(sched_job_t *job);

/* Forget what the slots hold (after a cache reset). */
void sched_forget_slots(sched_t *s);

/* Cells available to one sequence. */
int sched_slot_capacity(const sched_t *s);

typedef struct {
    uint64_t requests, requests_ok, requests_cancelled, requests_failed, rejected_busy;
    uint64_t prompt_tokens, cached_tokens, generated_tokens;
    uint64_t hits[SCHED_N_TIERS]; /* by cache_tier_t (TIER_NONE = misses) */
    uint64_t snapshots, snapshot_bytes;
    int slots_busy, queue_len;
    /* time-to-first-token histogram, buckets in seconds (cumulative) */
    uint64_t ttft_buckets[12];
    double ttft_sum;
    uint64_t ttft_count;
    double restore_ms_total;     /* load from the store + copy into the KV */
    double restore_copy_ms_total;  /* the copy into the KV alone */
    uint64_t restore_bytes_total;
} sched_stats_t;

extern const double sched_ttft_bounds[12];

void sched_get_stats(sched_t *s, sched_stats_t *out);

#endif
