/* model.h — the engine's only door to llama.cpp.
 *
 * Wraps a loaded model (weights + vocabulary + chat template) and its
 * inference context (KV cache with n_seq sequence slots). Everything else in
 * the engine speaks in these types; only model.c includes llama.h.
 *
 * Threading: a model_ctx_t is used by one thread at a time (the scheduler's
 * decode thread). model_t's tokenizer functions are safe from any thread.
 *
 * Errors: functions return 0 or a negative MODEL_E* code; model_strerror()
 * names it. Out-parameters are untouched on failure unless stated.
 */
#ifndef KVCHAT_ENGINE_MODEL_H
#define KVCHAT_ENGINE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int32_t model_token_t;

enum {
    MODEL_OK = 0,
    MODEL_ENOMEM = -1,
    MODEL_ELOAD = -2,       /* file missing, unreadable or not a model */
    MODEL_ECONTEXT = -3,    /* context could not be created */
    MODEL_EDECODE = -4,     /* llama_decode failed */
    MODEL_ENOSPACE = -5,    /* no room in the KV cache for the batch */
    MODEL_ETOOLONG = -6,    /* input longer than a limit */
    MODEL_ESTATE = -7,      /* state blob does not fit this context */
    MODEL_EINVAL = -8,
    MODEL_ETEMPLATE = -9,   /* chat template could not be applied */
    MODEL_EABORTED = -10,   /* decode aborted by the abort callback */
};

const char *model_strerror(int rc);

typedef enum { MODEL_KV_F16 = 0, MODEL_KV_Q8_0 = 1, MODEL_KV_F32 = 2 } model_kv_type_t;

typedef struct model model_t;
typedef struct model_ctx model_ctx_t;

/* Context parameters; fill with model_ctx_params_default() first. */
typedef struct {
    int n_ctx;              /* total KV cells (all sequences); 0 = 4096 */
    int n_seq;              /* sequence slots */
    int n_batch;            /* most tokens per decode call */
    int n_threads;          /* 0 = number of cores */
    model_kv_type_t kv_type;
    bool flash_attn;        /* V stays untransposed: fast snapshots */
    bool kv_unified;        /* one KV buffer shared by all sequences */
    /* Called between graph computations; returning true aborts the decode
     * (MODEL_EABORTED). May be NULL. */
    bool (*abort_cb)(void *data);
    void *abort_data;
} model_ctx_params_t;

void model_ctx_params_default(model_ctx_params_t *p);

/* Route llama.cpp's own log lines to our log (warnings and errors only
 * unless verbose). Call once before model_open(). */
void model_backend_init(bool verbose);

/* Load a GGUF model. On success *out owns it (model_close()). The weights
 * are read into the process's memory, or with `map` mapped from the file
 * (less RAM when the page cache holds it anyway; decodes after an idle
 * spell measured slower on a mapping, see docs/engine.md). */
int model_open(const char *path, bool map, model_t **out);
void model_close(model_t *m);

/* Facts about the model. Strings live as long as the model. */
typedef struct {
    const char *path;
    char desc[128];           /* "qwen2 0.5B F16" */
    char name[128];           /* general.name, or the file name */
    bool random_weights;      /* written by kvchat-mkmodel */
    int n_ctx_train;
    int n_layer, n_embd, n_head, n_head_kv;
    int n_vocab;
    uint64_t n_params, size_bytes;
    /* Model fingerprint: hash of the file's size, architecture, shape and
     * a sample of its metadata; a cached state is only valid for the same. */
    uint64_t fingerprint;
    bool add_bos;
} model_info_t;

const model_info_t *model_info(const model_t *m);

/* Tokenize `len` bytes of text. `add_special` adds BOS where the model wants
 * it; `parse_special` turns "<|im_start|>" etc. into their tokens.
 * On success *toks is a malloc'd array (caller frees) of *n tokens.
 * Returns MODEL_ETOOLONG when more than `max` tokens would result. */
int model_tokenize(const model_t *m, const char *text, size_t len, bool add_special,
                   bool parse_special, int max, model_token_t **toks, int *n);

/* Append the text of one token to buf (cap bytes incl. NUL). Returns the
 * number of bytes written, or a negative MODEL_E* code. Special tokens are
 * rendered only when `special`. */
int model_token_piece(const model_t *m, model_token_t t, bool special, char *buf, size_t cap);

/* Detokenize a whole sequence. *out is malloc'd (caller frees). */
int model_detokenize(const model_t *m, const model_token_t *toks, int n, bool special,
                     char **out, size_t *len);

bool model_token_is_eog(const model_t *m, model_token_t t);

/* The model's chat template (the GGUF's tokenizer.chat_template), or NULL
 * when it has none (ChatML is used then). Valid while the model lives. */
const char *model_chat_template(const model_t *m);

/* Render a conversation with the model's chat template. roles[i] and
 * contents[i] for i < n; add_assistant appends the opening of the assistant
 * turn. *out is malloc'd and NUL-terminated (caller frees). */
int model_chat_render(const model_t *m, const char *const *roles, const char *const *contents,
                      int n, bool add_assistant, char **out, size_t *len);

/* Create an inference context. On success *out owns it (model_ctx_free()). */
int model_ctx_new(model_t *m, const model_ctx_params_t *p, model_ctx_t **out);
void model_ctx_free(model_ctx_t *c);

/* Cells per sequence (n_ctx / n_seq unless unified). */
int model_ctx_seq_capacity(const model_ctx_t *c);
const model_ctx_params_t *model_ctx_params(const model_ctx_t *c);

/* Describes the context's KV layout; a state blob restores only into a
 * context whose layout string is equal. Returns a static-lifetime string
 * owned by the context. */
const char *model_ctx_layout(const model_ctx_t *c);

/* ---- batches ---- */

typedef struct model_batch model_batch_t;

/* A batch of at most `cap` tokens. NULL on ENOMEM. */
model_batch_t *model_batch_new(int cap);
void model_batch_free(model_batch_t *b);
void model_batch_clear(model_batch_t *b);
int model_batch_size(const model_batch_t *b);

/* Add one token at position pos of sequence seq; `want_logits` requests its
 * output. Returns the token's index in the batch, or MODEL_ENOSPACE. */
int model_batch_add(model_batch_t *b, model_token_t t, int pos, int seq, bool want_logits);

/* Decode the batch. MODEL_ENOSPACE when the KV cache is full. */
int model_decode(model_ctx_t *c, model_batch_t *b);

/* Logits of the batch entry `idx` (an index returned by model_batch_add with
 * want_logits). Valid until the next decode. NULL if none. */
const float *model_logits(model_ctx_t *c, int idx);

/* ---- sequences and their state ---- */

/* Remove cells of seq in positions [p0, p1) (p1 < 0: to the end).
 * Returns 0, or MODEL_EINVAL when the memory cannot do a partial removal. */
int model_seq_rm(model_ctx_t *c, int seq, int p0, int p1);

/* Clear every sequence. */
void model_clear(model_ctx_t *c);

/* Highest position held by seq, or -1 when empty. */
int model_seq_pos_max(model_ctx_t *c, int seq);

/* Bytes needed to snapshot seq. */
size_t model_seq_state_size(model_ctx_t *c, int seq);

/* Copy the state of seq into buf (cap bytes). *written gets the size.
 * MODEL_ESTATE when cap is too small. */
int model_seq_state_get(model_ctx_t *c, int seq, void *buf, size_t cap, size_t *written);

/* Restore a blob made by model_seq_state_get into seq (which is cleared
 * first). MODEL_ESTATE when the blob does not fit this context; seq is left
 * empty then. */
int model_seq_state_set(model_ctx_t *c, int seq, const void *buf, size_t len);

/* ---- sampling ---- */

typedef struct {
    model_token_t token;
    float bias;
} model_logit_bias_t;

typedef struct {
    float temperature;       /* <= 0: greedy */
    float top_p, min_p;
    int top_k;
    float repeat_penalty, presence_penalty, frequency_penalty;
    int penalty_last_n;
    uint32_t seed;
    /* GBNF grammar (start rule "root") every sampled token must follow, or
     * NULL / "" for none. Borrowed: read only by model_sampler_new(), which
     * keeps its own parsed copy. Check it first with model_grammar_check():
     * model_sampler_new() answers MODEL_EINVAL for a grammar that does not
     * parse. */
    const char *grammar;
    /* Added to the logits of these tokens before anything else looks at
     * them (OpenAI's logit_bias; -INFINITY bans a token). Borrowed like
     * grammar; ids must be below the vocabulary size. */
    const model_logit_bias_t *logit_bias;
    int n_logit_bias;
} model_sampling_t;

void model_sampling_default(model_sampling_t *s);

typedef struct model_sampler model_sampler_t;

/* A sampler for one generation. On success *out owns it
 * (model_sampler_free()). MODEL_EINVAL when s->grammar does not parse,
 * MODEL_ENOMEM; *out untouched on failure. */
int model_sampler_new(const model_t *m, const model_sampling_t *s, model_sampler_t **out);
void model_sampler_free(model_sampler_t *s);

/* Sample from the logits of batch entry idx and record the token as
 * accepted (penalties, grammar).
 *
 * With a grammar, only tokens the grammar allows are drawn: end-of-
 * generation tokens only once the grammar is complete (and once it is
 * complete with nothing more allowed, an end-of-generation token is the only
 * choice). If no token at all is allowed (a dead end: the grammar needs text
 * no token spells), the sampler returns the vocabulary's end-of-generation
 * token without feeding it to the grammar, and model_sampler_dead_end()
 * turns true: the caller should end the generation (and may report it).
 * Never aborts. */
model_token_t model_sample(model_sampler_t *s, model_ctx_t *c, int idx);

/* True once model_sample() met a grammar dead end (see above). */
bool model_sampler_dead_end(const model_sampler_t *s);

/* Tell the sampler about a prompt token (penalties see it). Never fed to the
 * grammar, which constrains generated text only. */
void model_sampler_accept(model_sampler_t *s, model_token_t t);

/* Does llama.cpp accept `gbnf` (start rule "root") for this model's
 * vocabulary? Returns MODEL_OK, or MODEL_EINVAL with a message in err
 * (errcap bytes, NUL-terminated); llama.cpp itself prints the parser's
 * reason and the grammar text to stderr. */
int model_grammar_check(const model_t *m, const char *gbnf, char *err, size_t errcap);

#endif
