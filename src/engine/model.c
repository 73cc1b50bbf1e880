/* model.c — llama.cpp behind model.h. The only file that includes llama.h.
 *
 * llama.cpp's return conventions (sizes, negative counts, bools, NULLs) are
 * translated into MODEL_E* codes here, once.
 */
#include "engine/model.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "llama.h"

struct model {
    struct llama_model *lm;
    const struct llama_vocab *vocab;
    const char *tmpl;          /* owned by lm; NULL: ChatML */
    model_info_t info;
    char *path;
};

struct model_ctx {
    model_t *m;
    struct llama_context *lc;
    model_ctx_params_t p;
    char layout[160];
};

struct model_batch {
    struct llama_batch b;
    int cap;
};

/* The grammar sampler is kept out of the chain: the chain also receives
 * prompt tokens (for penalties), which the grammar must not see. */
struct model_sampler {
    struct llama_sampler *chain;
    struct llama_sampler *grammar; /* NULL: none */
    const struct llama_vocab *vocab;
    llama_token_data *cur;         /* n_vocab candidates, with a grammar */
    int n_vocab;
    model_logit_bias_t *bias;      /* with a grammar: added in fill_candidates
                                    * (so the grammar's top chunk is chosen
                                    * on biased logits); else in the chain */
    int n_bias;
    bool dead_end;
};

const char *model_strerror(int rc)
{
    switch (rc) {
    case MODEL_OK: return "ok";
    case MODEL_ENOMEM: return "out of memory";
    case MODEL_ELOAD: return "cannot load model";
    case MODEL_ECONTEXT: return "cannot create inference context";
    case MODEL_EDECODE: return "decode failed";
    case MODEL_ENOSPACE: return "no space left in the KV cache";
    case MODEL_ETOOLONG: return "input too long";
    case MODEL_ESTATE: return "state does not fit this context";
    case MODEL_EINVAL: return "invalid argument";
    case MODEL_ETEMPLATE: return "chat template could not be applied";
    case MODEL_EABORTED: return "decode aborted";
    default: return "unknown model error";
    }
}

/* ---- logging ---- */

static void llama_log_cb(enum ggml_log_level level, const char *text, void *data)
{
    bool verbose = data != NULL;
    log_level_t l;
    switch (level) {
    case GGML_LOG_LEVEL_ERROR: l = LOG_ERROR; break;
    case GGML_LOG_LEVEL_WARN: l = LOG_WARN; break;
    case GGML_LOG_LEVEL_CONT: return;   /* progress dots */
    default:
        if (!verbose)
            return;
        l = LOG_DEBUG;
    }
    size_t n = strlen(text);
    while (n && text[n - 1] == '\n')
        n--;
    if (n)
        log_msg(l, "llama: %.*s", (int)n, text);
}

void model_backend_init(bool verbose)
{
    llama_log_set(llama_log_cb, verbose ? (void *)1 : NULL);
    llama_backend_init();
}

/* ---- model ---- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

/* See model_info_t.fingerprint: metadata, shape, file size and four 64 KiB
 * samples of the file (so two random models with equal metadata but other
 * weights differ). Cheap even for multi-GB files. */
static uint64_t fingerprint(const struct llama_model *lm, const char *path)
{
    uint64_t h = 1469598103934665603ULL;
    char key[256], val[256];
    int n = llama_model_meta_count(lm);
    for (int i = 0; i < n; i++) {
        if (llama_model_meta_key_by_index(lm, i, key, sizeof key) < 0)
            continue;
        if (llama_model_meta_val_str_by_index(lm, i, val, sizeof val) < 0)
            val[0] = '\0';
        h = fnv1a(h, key, strlen(key));
        h = fnv1a(h, val, strlen(val));
    }
    uint64_t np = llama_model_n_params(lm);
    h = fnv1a(h, &np, sizeof np);
    FILE *f = fopen(path, "rb");
    if (f) {
        struct stat st;
        if (fstat(fileno(f), &st) == 0) {
            uint64_t size = (uint64_t)st.st_size;
            h = fnv1a(h, &size, sizeof size);
            static const size_t sample = 64 * 1024;
            unsigned char *buf = malloc(sample);
            for (int k = 1; buf && k <= 4; k++) {
                uint64_t off = size > sample ? (size - sample) * (uint64_t)k / 4 : 0;
                if (fseeko(f, (off_t)off, SEEK_SET) != 0)
                    break;
                size_t r = fread(buf, 1, sample, f);
                h = fnv1a(h, buf, r);
            }
            free(buf);
        }
        fclose(f);
    }
    return h;
}

int model_open(const char *path, bool map, model_t **out)
{
    if (access(path, R_OK) != 0) {
        log_error("model %s: %s", path, strerror(errno));
        return MODEL_ELOAD;
    }
    model_t *m = calloc(1, sizeof *m);
    if (!m)
        return MODEL_ENOMEM;
    m->path = strdup(path);
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.load_mode = map ? LLAMA_LOAD_MODE_MMAP : LLAMA_LOAD_MODE_NONE;
    m->lm = llama_model_load_from_file(path, mp);
    if (!m->lm || !m->path) {
        log_error("model %s: llama.cpp could not load it", path);
        model_close(m);
        return MODEL_ELOAD;
    }
    m->vocab = llama_model_get_vocab(m->lm);
    m->tmpl = llama_model_chat_template(m->lm, NULL);

    model_info_t *in = &m->info;
    in->path = m->path;
    llama_model_desc(m->lm, in->desc, sizeof in->desc);
    if (llama_model_meta_val_str(m->lm, "general.name", in->name, sizeof in->name) < 0) {
        const char *slash = strrchr(path, '/');
        snprintf(in->name, sizeof in->name, "%s", slash ? slash + 1 : path);
    }
    char val[16];
    in->random_weights =
        llama_model_meta_val_str(m->lm, "kvchat.random_weights", val, sizeof val) >= 0 &&
        strcmp(val, "true") == 0;
    in->n_ctx_train = llama_model_n_ctx_train(m->lm);
    in->n_layer = llama_model_n_layer(m->lm);
    in->n_embd = llama_model_n_embd(m->lm);
    in->n_head = llama_model_n_head(m->lm);
    in->n_head_kv = llama_model_n_head_kv(m->lm);
    in->n_vocab = llama_vocab_n_tokens(m->vocab);
    in->n_params = llama_model_n_params(m->lm);
    in->size_bytes = llama_model_size(m->lm);
    in->add_bos = llama_vocab_get_add_bos(m->vocab);
    in->fingerprint = fingerprint(m->lm, path);
    *out = m;
    return MODEL_OK;
}

void model_close(model_t *m)
{
    if (!m)
        return;
    if (m->lm)
        llama_model_free(m->lm);
    free(m->path);
    free(m);
}

const model_info_t *model_info(const model_t *m) { return &m->info; }

int model_tokenize(const model_t *m, const char *text, size_t len, bool add_special,
                   bool parse_special, int max, model_token_t **toks, int *n)
{
    if (len > INT32_MAX || max <= 0)
        return MODEL_ETOOLONG;
    /* One token per byte (+BOS/EOS) is an upper bound for every tokenizer
     * llama.cpp has; cap the first guess by max. */
    size_t guess = len + 2 < (size_t)max ? len + 2 : (size_t)max;
    model_token_t *t = malloc((guess ? guess : 1) * sizeof *t);
    if (!t)
        return MODEL_ENOMEM;
    int32_t r = llama_tokenize(m->vocab, text, (int32_t)len, t, (int32_t)guess, add_special,
                               parse_special);
    if (r < 0) {
        if (r == INT32_MIN || -r > max) {
            free(t);
            return MODEL_ETOOLONG;
        }
        model_token_t *t2 = realloc(t, (size_t)-r * sizeof *t);
        if (!t2) {
            free(t);
            return MODEL_ENOMEM;
        }
        t = t2;
        r = llama_tokenize(m->vocab, text, (int32_t)len, t, -r, add_special, parse_special);
        if (r < 0) {
            free(t);
            return MODEL_EINVAL;
        }
    }
    *toks = t;
    *n = r;
    return MODEL_OK;
}

int model_token_piece(const model_t *m, model_token_t t, bool special, char *buf, size_t cap)
{
    if (cap == 0 || cap > INT32_MAX)
        return MODEL_EINVAL;
    int32_t r = llama_token_to_piece(m->vocab, t, buf, (int32_t)(cap - 1), 0, special);
    if (r < 0)
        return MODEL_ETOOLONG;
    buf[r] = '\0';
    return r;
}

int model_detokenize(const model_t *m, const model_token_t *toks, int n, bool special,
                     char **out, size_t *len)
{
    int32_t cap = n * 8 + 16;
    char *s = malloc((size_t)cap);
    if (!s)
        return MODEL_ENOMEM;
    int32_t r = llama_detokenize(m->vocab, toks, n, s, cap - 1, false, special);
    if (r < 0) {
        cap = -r + 1;
        char *s2 = realloc(s, (size_t)cap);
        if (!s2) {
            free(s);
            return MODEL_ENOMEM;
        }
        s = s2;
        r = llama_detokenize(m->vocab, toks, n, s, cap - 1, false, special);
        if (r < 0) {
            free(s);
            return MODEL_EINVAL;
        }
    }
    s[r] = '\0';
    *out = s;
    if (len)
        *len = (size_t)r;
    return MODEL_OK;
}

bool model_token_is_eog(const model_t *m, model_token_t t) { return llama_vocab_is_eog(m->vocab, t); }

const char *model_chat_template(const model_t *m) { return m->tmpl; }

int model_chat_render(const model_t *m, const char *const *roles, const char *const *contents,
                      int n, bool add_assistant, char **out, size_t *len)
{
    struct llama_chat_message *msgs = calloc((size_t)(n ? n : 1), sizeof *msgs);
    if (!msgs)
        return MODEL_ENOMEM;
    size_t total = 64;
    for (int i = 0; i < n; i++) {
        msgs[i].role = roles[i];
        msgs[i].content = contents[i];
        total += strlen(contents[i]) + strlen(roles[i]) + 32;
    }
    int rc = MODEL_OK;
    char *buf = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (total > INT32_MAX - 1) {
            rc = MODEL_ETOOLONG;
            break;
        }
        char *b2 = realloc(buf, total + 1);
        if (!b2) {
            rc = MODEL_ENOMEM;
            break;
        }
        buf = b2;
        int32_t r = llama_chat_apply_template(m->tmpl, msgs, (size_t)n, add_assistant, buf,
                                              (int32_t)total);
        if (r < 0) {
            rc = MODEL_ETEMPLATE;
            break;
        }
        if ((size_t)r <= total) {
            buf[r] = '\0';   /* llama.cpp does not always terminate it */
            *out = buf;
            if (len)
                *len = (size_t)r;
            buf = NULL;
            break;
        }
        total = (size_t)r;
        if (attempt == 1)
            rc = MODEL_ETEMPLATE;
    }
    free(buf);
    free(msgs);
    return rc;
}

/* ---- context ---- */

void model_ctx_params_default(model_ctx_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->n_ctx = 4096;
    p->n_seq = 1;
    p->n_batch = 512;
    p->n_threads = 0;
    p->kv_type = MODEL_KV_F16;
    p->flash_attn = true;
    p->kv_unified = false;
}

static enum ggml_type kv_ggml_type(model_kv_type_t t)
{
    switch (t) {
    case MODEL_KV_Q8_0: return GGML_TYPE_Q8_0;
    case MODEL_KV_F32: return GGML_TYPE_F32;
    default: return GGML_TYPE_F16;
    }
}

static bool abort_trampoline(void *data)
{
    model_ctx_t *c = data;
    return c->p.abort_cb ? c->p.abort_cb(c->p.abort_data) : false;
}

int model_ctx_new(model_t *m, const model_ctx_params_t *p, model_ctx_t **out)
{
    if (p->n_seq < 1 || p->n_batch < 1)
        return MODEL_EINVAL;
    if (p->kv_type == MODEL_KV_Q8_0 && !p->flash_attn) {
        log_error("a q8_0 KV cache needs flash attention");
        return MODEL_EINVAL;
    }
    model_ctx_t *c = calloc(1, sizeof *c);
    if (!c)
        return MODEL_ENOMEM;
    c->m = m;
    c->p = *p;
    if (c->p.n_ctx <= 0)
        c->p.n_ctx = 4096;
    if (c->p.n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->p.n_threads = n > 0 ? (int)n : 1;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)c->p.n_ctx;
    cp.n_batch = (uint32_t)c->p.n_batch;
    cp.n_ubatch = (uint32_t)c->p.n_batch;
    cp.n_seq_max = (uint32_t)c->p.n_seq;
    cp.n_threads = c->p.n_threads;
    cp.n_threads_batch = c->p.n_threads;
    cp.flash_attn_type = c->p.flash_attn ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                                         : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = kv_ggml_type(c->p.kv_type);
    cp.type_v = kv_ggml_type(c->p.kv_type);
    cp.kv_unified = c->p.kv_unified;
    cp.no_perf = true;
    cp.abort_callback = abort_trampoline;
    cp.abort_callback_data = c;
    c->lc = llama_init_from_model(m->lm, cp);
    if (!c->lc) {
        free(c);
        return MODEL_ECONTEXT;
    }
    /* Touch every page of the KV cache now (clearing writes zeros): else
     * the first restore into fresh cells pays a page fault per page and
     * runs at a fraction of memory bandwidth. */
    llama_memory_clear(llama_get_memory(c->lc), true);
    snprintf(c->layout, sizeof c->layout, "k=%s v=%s fa=%d unified=%d seqs=%d cells=%d",
             ggml_type_name(cp.type_k), ggml_type_name(cp.type_v), c->p.flash_attn ? 1 : 0,
             c->p.kv_unified ? 1 : 0, c->p.n_seq, model_ctx_seq_capacity(c));
    *out = c;
    return MODEL_OK;
}

void model_ctx_free(model_ctx_t *c)
{
    if (!c)
        return;
    if (c->lc)
        llama_free(c->lc);
    free(c);
}

int model_ctx_seq_capacity(const model_ctx_t *c)
{
    /* A shared KV buffer lets one sequence use all of it; positions past
     * the training context are not worth having. */
    int n = (int)llama_n_ctx_seq(c->lc);
    int train = c->m->info.n_ctx_train;
    return train > 0 && n > train ? train : n;
}

const model_ctx_params_t *model_ctx_params(const model_ctx_t *c) { return &c->p; }

const char *model_ctx_layout(const model_ctx_t *c) { return c->layout; }

/* ---- batches ---- */

model_batch_t *model_batch_new(int cap)
{
    if (cap < 1)
        return NULL;
    model_batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->b = llama_batch_init(cap, 0, 1);
    b->cap = cap;
    return b;
}

void model_batch_free(model_batch_t *b)
{
    if (!b)
        return;
    llama_batch_free(b->b);
    free(b);
}

void model_batch_clear(model_batch_t *b) { b->b.n_tokens = 0; }

int model_batch_size(const model_batch_t *b) { return b->b.n_tokens; }

int model_batch_add(model_batch_t *b, model_token_t t, int pos, int seq, bool want_logits)
{
    int i = b->b.n_tokens;
    if (i >= b->cap)
        return MODEL_ENOSPACE;
    b->b.token[i] = t;
    b->b.pos[i] = pos;
    b->b.n_seq_id[i] = 1;
    b->b.seq_id[i][0] = seq;
    b->b.logits[i] = want_logits;
    b->b.n_tokens = i + 1;
    return i;
}

int model_decode(model_ctx_t *c, model_batch_t *b)
{
    if (b->b.n_tokens == 0)
        return MODEL_OK;
    int32_t r = llama_decode(c->lc, b->b);
    switch (r) {
    case 0: return MODEL_OK;
    case 1: return MODEL_ENOSPACE;
    case 2: return MODEL_EABORTED;
    default: return MODEL_EDECODE;
    }
}

const float *model_logits(model_ctx_t *c, int idx) { return llama_get_logits_ith(c->lc, idx); }

/* ---- sequences ---- */

int model_seq_rm(model_ctx_t *c, int seq, int p0, int p1)
{
    return llama_memory_seq_rm(llama_get_memory(c->lc), seq, p0, p1) ? MODEL_OK : MODEL_EINVAL;
}

void model_clear(model_ctx_t *c) { llama_memory_clear(llama_get_memory(c->lc), true); }

int model_seq_pos_max(model_ctx_t *c, int seq)
{
    return llama_memory_seq_pos_max(llama_get_memory(c->lc), seq);
}

size_t model_seq_state_size(model_ctx_t *c, int seq) { return llama_state_seq_get_size(c->lc, seq); }

int model_seq_state_get(model_ctx_t *c, int seq, void *buf, size_t cap, size_t *written)
{
    size_t need = llama_state_seq_get_size(c->lc, seq);
    if (need > cap)
        return MODEL_ESTATE;
    size_t n = llama_state_seq_get_data(c->lc, buf, cap, seq);
    if (n == 0)
        return MODEL_ESTATE;
    *written = n;
    return MODEL_OK;
}

int model_seq_state_set(model_ctx_t *c, int seq, const void *buf, size_t len)
{
    /* llama_state_seq_set_data empties the sequence itself first. */
    size_t n = llama_state_seq_set_data(c->lc, buf, len, seq);
    if (n == 0) {
        llama_memory_seq_rm(llama_get_memory(c->lc), seq, -1, -1);
        return MODEL_ESTATE;
    }
    return MODEL_OK;
}

/* ---- sampling ---- */

void model_sampling_default(model_sampling_t *s)
{
    s->temperature = 0.8f;
    s->top_p = 0.95f;
    s->min_p = 0.05f;
    s->top_k = 40;
    s->repeat_penalty = 1.0f;
    s->presence_penalty = 0.0f;
    s->frequency_penalty = 0.0f;
    s->penalty_last_n = 64;
    s->seed = 0xFFFFFFFFu;   /* LLAMA_DEFAULT_SEED: random */
    s->grammar = NULL;
    s->logit_bias = NULL;
    s->n_logit_bias = 0;
}

_Static_assert(sizeof(model_logit_bias_t) == sizeof(llama_logit_bias) &&
                   offsetof(model_logit_bias_t, bias) == offsetof(llama_logit_bias, bias),
               "model_logit_bias_t mirrors llama_logit_bias");

int model_sampler_new(const model_t *m, const model_sampling_t *s, model_sampler_t **out)
{
    model_sampler_t *ms = calloc(1, sizeof *ms);
    if (!ms)
        return MODEL_ENOMEM;
    struct llama_sampler_chain_params cp = llama_sampler_chain_default_params();
    cp.no_perf = true;
    ms->chain = llama_sampler_chain_init(cp);
    if (!ms->chain) {
        free(ms);
        return MODEL_ENOMEM;
    }
    const bool penalties =
        s->repeat_penalty != 1.0f || s->presence_penalty != 0.0f || s->frequency_penalty != 0.0f;
    const bool has_grammar = s->grammar && s->grammar[0];
    if (s->n_logit_bias > 0 && !has_grammar)
        llama_sampler_chain_add(ms->chain,
                                llama_sampler_init_logit_bias(m->info.n_vocab, s->n_logit_bias,
                                                              (const llama_logit_bias *)s->logit_bias));
    struct llama_sampler *pen = NULL;
    if (penalties)
        pen = llama_sampler_init_penalties(m->info.n_vocab, s->penalty_last_n, s->repeat_penalty,
                                           s->frequency_penalty, s->presence_penalty);
    if (s->temperature <= 0.0f) {
        if (pen)
            llama_sampler_chain_add(ms->chain, pen);
        llama_sampler_chain_add(ms->chain, llama_sampler_init_greedy());
    } else {
        /* Penalties scan the candidates: apply them after top-k. */
        if (s->top_k > 0)
            llama_sampler_chain_add(ms->chain, llama_sampler_init_top_k(s->top_k));
        if (pen)
            llama_sampler_chain_add(ms->chain, pen);
        if (s->top_p < 1.0f)
            llama_sampler_chain_add(ms->chain, llama_sampler_init_top_p(s->top_p, 1));
        if (s->min_p > 0.0f)
            llama_sampler_chain_add(ms->chain, llama_sampler_init_min_p(s->min_p, 1));
        llama_sampler_chain_add(ms->chain, llama_sampler_init_temp(s->temperature));
        llama_sampler_chain_add(ms->chain, llama_sampler_init_dist(s->seed));
    }
    if (has_grammar) {
        if (s->n_logit_bias > 0) {
            ms->bias = malloc((size_t)s->n_logit_bias * sizeof *ms->bias);
            if (!ms->bias) {
                model_sampler_free(ms);
                return MODEL_ENOMEM;
            }
            memcpy(ms->bias, s->logit_bias, (size_t)s->n_logit_bias * sizeof *ms->bias);
            ms->n_bias = s->n_logit_bias;
        }
        ms->vocab = m->vocab;
        ms->n_vocab = m->info.n_vocab;
        ms->cur = malloc((size_t)ms->n_vocab * sizeof *ms->cur);
        if (!ms->cur) {
            model_sampler_free(ms);
            return MODEL_ENOMEM;
        }
        ms->grammar = llama_sampler_init_grammar(m->vocab, s->grammar, "root");
        if (!ms->grammar) {
            model_sampler_free(ms);
            return MODEL_EINVAL;
        }
    }
    *out = ms;
    return MODEL_OK;
}

void model_sampler_free(model_sampler_t *s)
{
    if (!s)
        return;
    llama_sampler_free(s->chain);
    if (s->grammar)
        llama_sampler_free(s->grammar);
    free(s->cur);
    free(s->bias);
    free(s);
}

/* The token to end with at a grammar dead end: not fed to the grammar
 * (llama.cpp aborts on an end-of-generation token the grammar does not
 * allow). */
static model_token_t dead_end(model_sampler_t *s)
{
    s->dead_end = true;
    llama_token t = llama_vocab_eos(s->vocab);
    if (t == LLAMA_TOKEN_NULL)
        t = llama_vocab_eot(s->vocab);
    return t == LLAMA_TOKEN_NULL ? 0 : t;
}

static void fill_candidates(model_sampler_t *s, const float *logits, llama_token_data_array *a)
{
    for (int i = 0; i < s->n_vocab; i++)
        s->cur[i] = (llama_token_data){i, logits[i], 0.0f};
    for (int i = 0; i < s->n_bias; i++)
        if (s->bias[i].token >= 0 && s->bias[i].token < s->n_vocab)
            s->cur[s->bias[i].token].logit += s->bias[i].bias;
    *a = (llama_token_data_array){s->cur, (size_t)s->n_vocab, -1, false};
}

#define GRAMMAR_CHUNK 1024

/* Move the k highest logits of a[0..n) to a[0..k), in no order
 * (quickselect with a three-way partition). */
static void partition_top(llama_token_data *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        float pivot = a[lo + (hi - lo) / 2].logit;
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            llama_token_data t = a[i];
            if (t.logit > pivot) {
                a[i++] = a[lt];
                a[lt++] = t;
            } else if (t.logit < pivot) {
                a[i] = a[--gt];
                a[gt] = t;
            } else {
                i++;
            }
        }
        /* [lo,lt) > pivot, [lt,gt) == pivot, [gt,hi) < pivot */
        if (k < lt)
            hi = lt;
        else if (k <= gt)
            return;
        else
            lo = gt;
    }
}

static bool any_allowed(const llama_token_data_array *a)
{
    for (size_t i = 0; i < a->size; i++)
        if (isfinite(a->data[i].logit))
            return true;
    return false;
}

model_token_t model_sample(model_sampler_t *s, model_ctx_t *c, int idx)
{
    if (!s->grammar) {
        /* llama_sampler_sample also accepts the token into the chain. */
        return llama_sampler_sample(s->chain, c->lc, idx);
    }
    if (s->dead_end)
        return dead_end(s);
    const float *logits = llama_get_logits_ith(c->lc, idx);
    if (!logits)
        return dead_end(s);
    /* As llama.cpp's common sampler: draw without the grammar first and
     * keep the token if the grammar allows it (a check of one candidate);
     * only otherwise filter the whole vocabulary, then draw again. */
    llama_token_data_array a;
    fill_candidates(s, logits, &a);
    llama_sampler_apply(s->chain, &a);
    if (a.selected >= 0 && a.selected < (int64_t)a.size) {
        llama_token_data one = {a.data[a.selected].id, 1.0f, 0.0f};
        llama_token_data_array a1 = {&one, 1, -1, false};
        llama_sampler_apply(s->grammar, &a1);
        if (isfinite(one.logit)) {
            llama_sampler_accept(s->grammar, one.id);
            llama_sampler_accept(s->chain, one.id);
            return one.id;
        }
    }
    /* The grammar is costly per candidate (a 150k vocabulary takes tens
     * of ms): filter the GRAMMAR_CHUNK highest logits first, and the rest
     * only when none of those is allowed. Exact for greedy; for sampling,
     * candidates beyond the chunk are dropped when the chunk has allowed
     * ones (as a top-k of GRAMMAR_CHUNK before the grammar would). */
    fill_candidates(s, logits, &a);
    size_t k = a.size < GRAMMAR_CHUNK ? a.size : GRAMMAR_CHUNK;
    partition_top(a.data, a.size, k);
    llama_token_data_array top = {a.data, k, -1, false};
    llama_sampler_apply(s->grammar, &top);
    if (any_allowed(&top)) {
        a = top;
    } else {
        llama_token_data_array rest = {a.data + k, a.size - k, -1, false};
        llama_sampler_apply(s->grammar, &rest);
        if (!any_allowed(&rest))
            return dead_end(s);
        a = rest;
    }
    llama_sampler_apply(s->chain, &a);
    if (a.selected < 0 || a.selected >= (int64_t)a.size || !isfinite(a.data[a.selected].logit))
        return dead_end(s);
    llama_token t = a.data[a.selected].id;
    /* Allowed, so accepting cannot empty the grammar's stacks (which would
     * throw through this C code and abort). */
    llama_sampler_accept(s->grammar, t);
    llama_sampler_accept(s->chain, t);
    return t;
}

bool model_sampler_dead_end(const model_sampler_t *s) { return s->dead_end; }

void model_sampler_accept(model_sampler_t *s, model_token_t t) { llama_sampler_accept(s->chain, t); }

int model_grammar_check(const model_t *m, const char *gbnf, char *err, size_t errcap)
{
    struct llama_sampler *g = gbnf ? llama_sampler_init_grammar(m->vocab, gbnf, "root") : NULL;
    if (!g) {
        if (err && errcap)
            snprintf(err, errcap, "the grammar does not parse (or has no rule 'root', or is "
                                  "left-recursive)");
        return MODEL_EINVAL;
    }
    llama_sampler_free(g);
    return MODEL_OK;
}
