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
 * Drafts ("prefill while typing"): a draft binds an idle slot to a key (a
 * session) and feeds it the tokens of a prompt still being typed,
 * SCHED_DRAFT_CHUNK tokens at a time, only in steps where no job has
 * anything to decode (neither prompt tokens nor a generating slot), so a
 * job waits at most one chunk for it. When the store holds a longer prefix
 * of the draft than the slot, the draft restores it first, as a job would.
 * A draft is no job: it has no reply, no snapshot and no on_done. The next
 * draft of the same key keeps the tokens both share and drops the rest. The
 * slot stays IDLE the whole time, so a job takes it like any idle slot: a
 * job that carries on from the draft (same namespace) decodes only the
 * rest; any other job may take it over (a draft's KV goes before any job's
 * slot tier). A draft takes a slot as a job would (the one it carries on
 * from, else an empty one, else the idle one given up first, whose KV is
 * stored before the draft cuts it), never a running job's, and at most
 * max(1, n_slots - 1) slots hold drafts; it touches no store entry (pinned
 * or not).
 *
 * Snapshots off the critical path: a generation job's snapshot (prompt and
 * reply) is owed when it finishes, not taken: its answer ends with its last
 * token. The slot keeps the sequence, and the snapshot is taken in the next
 * step with nothing to decode, or before the slot's KV is dropped or
 * rewritten (another job takes the slot, room is made, a draft cuts it), or
 * at shutdown; a job that carries on from the whole sequence in the slot
 * (the session's next turn) takes it over, and its own snapshot covers it.
 * A snapshot is never taken while other slots have tokens to decode. Lost
 * only with the process (kill -9 before the next idle step) or with a
 * failed decode. Prefill jobs still snapshot before they finish (their
 * caller waits for the entry).
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

/* The most alternatives a token's log-probability comes with. */
#define SCHED_TOP_LOGPROBS 20

typedef struct {
    model_token_t id;
    float logprob;
} sched_alt_t;

/* A generated token's log-probability under the model (its distribution
 * before sampling: no temperature, penalties or grammar, as OpenAI
 * reports them), with the n_top most likely tokens, most likely first. */
typedef struct {
    model_token_t id;
    float logprob;
    int n_top;
    sched_alt_t top[SCHED_TOP_LOGPROBS];
} sched_logprob_t;

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
    int logprobs;                /* -1: none; else each generated token's
                                  * log-probability goes to sink.on_token with
                                  * this many alternatives (0..SCHED_TOP_LOGPROBS) */
    char *grammar;               /* GBNF every generated token follows (checked
                                  * with model_grammar_check), or NULL; owned,
                                  * moves to the job (sampling.grammar is set
                                  * from it) */
    model_logit_bias_t *logit_bias; /* added to these tokens' logits (ids
                                  * below the vocabulary size), or NULL;
                                  * owned, moves to the job like grammar */
    int n_logit_bias;
    bool render_special;         /* generated control tokens appear in the
                                  * text ("[TOOL_CALLS]" for a parser) */
} sched_job_params_t;

void sched_job_params_init(sched_job_params_t *p);
/* Frees what the params own (for callers that did not submit them). */
void sched_job_params_cleanup(sched_job_params_t *p);
/* A deep copy of src (tokens, stop strings, grammar, biases) into dst, for
 * another job from the same request. SCHED_OK, or SCHED_ENOMEM with dst
 * left empty (initialised). */
int sched_job_params_copy(sched_job_params_t *dst, const sched_job_params_t *src);

typedef struct {
    int rc;                      /* SCHED_OK or an error */
    char error[256];
    const char *finish_reason;   /* "stop" | "length" | "cancelled" | "error" */
    int prompt_n;                /* prompt tokens decoded */
    int cache_n;                 /* prompt tokens restored from cache */
    cache_tier_t cache_tier;
    double queue_ms;             /* waiting for a slot */
    int draft_steps_waited;      /* draft chunks decoded between its submission
                                  * and its admission (at most the one under
                                  * way when it came: drafts yield) */
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
    /* Prompt progress: once when the job takes a slot (`done` is then what
     * the cache gave), then after each decode step that fed prompt tokens:
     * `done` of `total` prompt tokens are in the KV (cached ones included).
     * May be NULL. */
    void (*on_progress)(void *ud, int done, int total);
    /* Always called once at the end. The result is valid during the call. */
    void (*on_done)(void *ud, const sched_result_t *res);
    /* With params.logprobs >= 0: each generated token (not an end-of-
     * generation one), before the text it adds is passed on. May be NULL. */
    void (*on_token)(void *ud, const sched_logprob_t *lp);
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

/* Longest draft key (bytes), and the tokens a draft decodes per step. */
#define SCHED_DRAFT_KEY_MAX 128
#define SCHED_DRAFT_CHUNK 64

/* Start or replace the draft of `key` (1 to SCHED_DRAFT_KEY_MAX bytes) in
 * the namespace `salt`: queued for the decode thread, which binds it to a
 * slot at its next step (a draft still queued for the same key is
 * replaced). Does not wait. `tokens` (malloc'd) belong to the scheduler in
 * every case. Returns SCHED_OK with *accepted true when queued, false when
 * real requests are waiting for a slot (then no draft is taken; one that
 * finds no slot at its step is dropped too, counted in drafts_dropped);
 * SCHED_EINVAL (bad key or no tokens), SCHED_ETOOLONG (no shorter than a
 * slot's context), SCHED_ESTOPPED or SCHED_ENOMEM otherwise. */
int sched_draft(sched_t *s, const char *key, const kvstore_salt_t *salt, model_token_t *tokens,
                int n_tokens, bool *accepted);

/* Forget what the slots hold (after a cache reset). */
void sched_forget_slots(sched_t *s);

/* Cells available to one sequence. */
int sched_slot_capacity(const sched_t *s);

typedef struct {
    uint64_t requests, requests_ok, requests_cancelled, requests_failed, rejected_busy;
    uint64_t prompt_tokens, cached_tokens, generated_tokens;
    uint64_t hits[SCHED_N_TIERS]; /* by cache_tier_t (TIER_NONE = misses) */
    uint64_t snapshots, snapshot_bytes;
    double snapshot_ms_total;    /* snapshots owed by answers, taken later */
    int slots_busy, queue_len;
    /* time-to-first-token histogram, buckets in seconds (cumulative) */
    uint64_t ttft_buckets[12];
    double ttft_sum;
    uint64_t ttft_count;
    uint64_t drafts, drafts_dropped; /* drafts bound to a slot / dropped */
    uint64_t draft_tokens;       /* tokens decoded by drafts */
    uint64_t draft_tokens_used;  /* of those, reused by a job that took the slot */
    int draft_slots;             /* slots bound to a draft now */
    double restore_ms_total;     /* load from the store + copy into the KV */
    double restore_copy_ms_total;  /* the copy into the KV alone */
    uint64_t restore_bytes_total;
} sched_stats_t;

extern const double sched_ttft_bounds[12];

void sched_get_stats(sched_t *s, sched_stats_t *out);

#endif
