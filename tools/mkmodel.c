/* mkmodel.c — kvchat-mkmodel: write a loadable GGUF model with random weights.
 *
 * No pretrained weights are needed to test or benchmark kvchat: compute and
 * memory cost depend only on a model's shape, so this tool writes a model of
 * a chosen shape (qwen2 or llama architecture) with reproducible random
 * weights, and a real tokenizer and chat template copied from a vocab-only
 * GGUF of the llama.cpp source (models/ggml-vocab-*.gguf).
 *
 * The file is written in constant memory: the metadata first (gguf.h builds
 * it from tensor descriptors that own no data), then each tensor's bytes,
 * generated row by row, padded to the file's alignment. It goes to a
 * temporary name and is renamed into place once complete.
 *
 * The model says what it is: general.description and kvchat.random_weights
 * mark the weights as random so kvchat can warn its user.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ggml.h"
#include "gguf.h"

#ifndef KVCHAT_VOCAB_DIR
#define KVCHAT_VOCAB_DIR "."
#endif

/* Where bare vocabulary names are looked up: $KVCHAT_VOCAB_DIR; else the
 * installed copies, ../share/kvchat/vocab from this program; else the
 * directory the build found them in. */
static const char *vocab_dir(void)
{
    static char dir[4096];
    if (dir[0])
        return dir;
    const char *env = getenv("KVCHAT_VOCAB_DIR");
    if (env && env[0]) {
        snprintf(dir, sizeof dir, "%s", env);
        return dir;
    }
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char probe[4096];
            snprintf(probe, sizeof probe, "%s/../share/kvchat/vocab/ggml-vocab-qwen2.gguf", exe);
            if (access(probe, R_OK) == 0) {
                snprintf(dir, sizeof dir, "%s/../share/kvchat/vocab", exe);
                return dir;
            }
        }
    }
    snprintf(dir, sizeof dir, "%s", KVCHAT_VOCAB_DIR);
    return dir;
}

typedef struct {
    const char *name;
    int n_layer, n_embd, n_head, n_head_kv, n_ff, n_ctx;
    float rope_base, norm_eps;
    enum ggml_type type;
} shape_t;

static const shape_t presets[] = {
    /* Loads and answers in well under a second: for tests. Head size 32,
     * so a q8_0 KV cache (blocks of 32) works. */
    { "tiny", 2, 128, 4, 2, 256, 4096, 1000000.0f, 1e-6f, GGML_TYPE_F16 },
    /* Qwen2.5-0.5B-Instruct's shape (tied embeddings): for benchmarks. */
    { "qwen2.5-0.5b", 24, 896, 14, 2, 4864, 32768, 1000000.0f, 1e-6f, GGML_TYPE_F16 },
};

typedef struct {
    shape_t shape;
    char arch[16];            /* "qwen2" or "llama"; "" = from the vocab */
    const char *vocab_path;
    const char *out_path;
    const char *template_path;
    uint64_t seed;
} options_t;

/* ---- reproducible random numbers ------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Each tensor's stream depends only on the seed and the tensor's name, so a
 * weight does not change when other tensors are added or reordered. */
static uint64_t tensor_seed(uint64_t seed, const char *name)
{
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

/* Uniform in [-a, a). */
static float uniform(uint64_t *s, float a)
{
    double u = (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
    return (float)((2.0 * u - 1.0) * a);
}

/* ---- tokenizer copy ---------------------------------------------------- */

/* Copy every tokenizer.* key of src into dst. Returns the vocabulary size
 * (length of tokenizer.ggml.tokens), or -1 when src has none. */
static int64_t copy_tokenizer(struct gguf_context *dst, const struct gguf_context *src)
{
    int64_t n_vocab = -1;
    for (int64_t i = 0; i < gguf_get_n_kv(src); i++) {
        const char *key = gguf_get_key(src, i);
        if (strncmp(key, "tokenizer.", 10) != 0)
            continue;
        enum gguf_type t = gguf_get_kv_type(src, i);
        switch (t) {
        case GGUF_TYPE_UINT8:   gguf_set_val_u8(dst, key, gguf_get_val_u8(src, i)); break;
        case GGUF_TYPE_INT8:    gguf_set_val_i8(dst, key, gguf_get_val_i8(src, i)); break;
        case GGUF_TYPE_UINT16:  gguf_set_val_u16(dst, key, gguf_get_val_u16(src, i)); break;
        case GGUF_TYPE_INT16:   gguf_set_val_i16(dst, key, gguf_get_val_i16(src, i)); break;
        case GGUF_TYPE_UINT32:  gguf_set_val_u32(dst, key, gguf_get_val_u32(src, i)); break;
        case GGUF_TYPE_INT32:   gguf_set_val_i32(dst, key, gguf_get_val_i32(src, i)); break;
        case GGUF_TYPE_FLOAT32: gguf_set_val_f32(dst, key, gguf_get_val_f32(src, i)); break;
        case GGUF_TYPE_UINT64:  gguf_set_val_u64(dst, key, gguf_get_val_u64(src, i)); break;
        case GGUF_TYPE_INT64:   gguf_set_val_i64(dst, key, gguf_get_val_i64(src, i)); break;
        case GGUF_TYPE_FLOAT64: gguf_set_val_f64(dst, key, gguf_get_val_f64(src, i)); break;
        case GGUF_TYPE_BOOL:    gguf_set_val_bool(dst, key, gguf_get_val_bool(src, i)); break;
        case GGUF_TYPE_STRING:  gguf_set_val_str(dst, key, gguf_get_val_str(src, i)); break;
        case GGUF_TYPE_ARRAY: {
            enum gguf_type at = gguf_get_arr_type(src, i);
            size_t n = gguf_get_arr_n(src, i);
            if (at == GGUF_TYPE_STRING) {
                const char **strs = malloc((n ? n : 1) * sizeof *strs);
                if (!strs) {
                    fprintf(stderr, "kvchat-mkmodel: out of memory\n");
                    exit(1);
                }
                for (size_t k = 0; k < n; k++)
                    strs[k] = gguf_get_arr_str(src, i, k);
                gguf_set_arr_str(dst, key, strs, n);
                free(strs);
            } else {
                gguf_set_arr_data(dst, key, at, gguf_get_arr_data(src, i), n);
            }
            if (strcmp(key, "tokenizer.ggml.tokens") == 0)
                n_vocab = (int64_t)n;
            break;
        }
        default:
            fprintf(stderr, "kvchat-mkmodel: skipping %s (type %d)\n", key, (int)t);
        }
    }
    return n_vocab;
}

/* Chat templates for vocabularies that ship none. llama.cpp recognises the
 * format from the markers each contains (ChatML, Llama 2, Llama 3). */
static const char tmpl_chatml[] =
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
static const char tmpl_llama2[] =
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}"
    "{% endfor %}";
static const char tmpl_llama3[] =
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

static const char *default_template(const struct gguf_context *src)
{
    int64_t k = gguf_find_key(src, "tokenizer.ggml.model");
    const char *model = k >= 0 ? gguf_get_val_str(src, k) : "";
    k = gguf_find_key(src, "tokenizer.ggml.pre");
    const char *pre = k >= 0 ? gguf_get_val_str(src, k) : "";
    if (strcmp(model, "llama") == 0)
        return tmpl_llama2;
    if (strcmp(pre, "llama-bpe") == 0 || strncmp(pre, "llama3", 6) == 0)
        return tmpl_llama3;
    return tmpl_chatml;
}

/* Read a whole small text file; NULL on error (message printed). */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "kvchat-mkmodel: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *s = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (1u << 20)) {
                fprintf(stderr, "kvchat-mkmodel: %s: larger than 1 MiB\n", path);
                free(s);
                fclose(f);
                return NULL;
            }
            char *p = realloc(s, cap);
            if (!p) {
                free(s);
                fclose(f);
                return NULL;
            }
            s = p;
        }
        size_t r = fread(s + n, 1, 4096, f);
        n += r;
        if (r < 4096)
            break;
    }
    fclose(f);
    s[n] = '\0';
    return s;
}

/* ---- tensors ------------------------------------------------------------ */

typedef enum { INIT_WEIGHT, INIT_ONES, INIT_BIAS } init_t;

typedef struct {
    struct ggml_tensor *t;
    init_t init;
} tensor_plan_t;

#define MAX_TENSORS 4096

typedef struct {
    struct ggml_context *ctx;
    struct gguf_context *gguf;
    tensor_plan_t plan[MAX_TENSORS];
    int n;
} model_plan_t;

static void add_tensor(model_plan_t *m, const char *name, enum ggml_type type,
                       int64_t ne0, int64_t ne1, init_t init)
{
    if (m->n == MAX_TENSORS) {
        fprintf(stderr, "kvchat-mkmodel: too many tensors\n");
        exit(1);
    }
    struct ggml_tensor *t = ne1 > 0 ? ggml_new_tensor_2d(m->ctx, type, ne0, ne1)
                                    : ggml_new_tensor_1d(m->ctx, type, ne0);
    ggml_set_name(t, name);
    gguf_add_tensor(m->gguf, t);
    m->plan[m->n].t = t;
    m->plan[m->n].init = init;
    m->n++;
}

/* Generate and write one tensor's data, row by row. Returns 0 or -1. */
static int write_tensor(FILE *f, const tensor_plan_t *p, uint64_t seed, size_t alignment)
{
    const struct ggml_tensor *t = p->t;
    const int64_t ne0 = t->ne[0];
    const int64_t nrows = ggml_nrows(t);
    const size_t row_bytes = ggml_row_size(t->type, ne0);
    /* Scale like a trained model's init (std ~ 1/sqrt(fan-in)), so
     * activations stay in range through the layers. */
    const float a = (float)(sqrt(3.0) / sqrt((double)ne0));
    float *row = malloc((size_t)ne0 * sizeof *row);
    unsigned char *out = malloc(row_bytes);
    if (!row || !out) {
        free(row);
        free(out);
        return -1;
    }
    uint64_t s = tensor_seed(seed, ggml_get_name(t));
    int rc = 0;
    for (int64_t r = 0; r < nrows && rc == 0; r++) {
        for (int64_t i = 0; i < ne0; i++) {
            switch (p->init) {
            case INIT_ONES: row[i] = 1.0f; break;
            case INIT_BIAS: row[i] = uniform(&s, 0.02f); break;
            case INIT_WEIGHT: row[i] = uniform(&s, a); break;
            }
        }
        switch (t->type) {
        case GGML_TYPE_F32: memcpy(out, row, row_bytes); break;
        case GGML_TYPE_F16: ggml_fp32_to_fp16_row(row, (ggml_fp16_t *)out, ne0); break;
        default: ggml_quantize_chunk(t->type, row, out, 0, 1, ne0, NULL); break;
        }
        if (fwrite(out, 1, row_bytes, f) != row_bytes)
            rc = -1;
    }
    size_t nbytes = ggml_nbytes(t);
    size_t pad = (alignment - nbytes % alignment) % alignment;
    static const unsigned char zeros[64];
    if (rc == 0 && pad && fwrite(zeros, 1, pad, f) != pad)
        rc = -1;
    free(row);
    free(out);
    return rc;
}

static void set_hparams(struct gguf_context *g, const char *arch, const shape_t *s, int64_t n_vocab)
{
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    gguf_set_val_u32(g, KEY("block_count"), (uint32_t)s->n_layer);
    gguf_set_val_u32(g, KEY("context_length"), (uint32_t)s->n_ctx);
    gguf_set_val_u32(g, KEY("embedding_length"), (uint32_t)s->n_embd);
    gguf_set_val_u32(g, KEY("feed_forward_length"), (uint32_t)s->n_ff);
    gguf_set_val_u32(g, KEY("attention.head_count"), (uint32_t)s->n_head);
    gguf_set_val_u32(g, KEY("attention.head_count_kv"), (uint32_t)s->n_head_kv);
    gguf_set_val_f32(g, KEY("rope.freq_base"), s->rope_base);
    gguf_set_val_f32(g, KEY("attention.layer_norm_rms_epsilon"), s->norm_eps);
    if (strcmp(arch, "llama") == 0) {
        gguf_set_val_u32(g, KEY("vocab_size"), (uint32_t)n_vocab);
        gguf_set_val_u32(g, KEY("rope.dimension_count"), (uint32_t)(s->n_embd / s->n_head));
    }
#undef KEY
}

static void plan_tensors(model_plan_t *m, const char *arch, const shape_t *s, int64_t n_vocab)
{
    const bool qwen2 = strcmp(arch, "qwen2") == 0;
    const int64_t head_dim = s->n_embd / s->n_head;
    const int64_t n_embd_kv = head_dim * s->n_head_kv;
    char name[GGML_MAX_NAME];

    add_tensor(m, "token_embd.weight", s->type, s->n_embd, n_vocab, INIT_WEIGHT);
    add_tensor(m, "output_norm.weight", GGML_TYPE_F32, s->n_embd, 0, INIT_ONES);
    if (!qwen2) /* llama: untied output; qwen2.5-0.5b ties it to the embeddings */
        add_tensor(m, "output.weight", s->type, s->n_embd, n_vocab, INIT_WEIGHT);
    for (int l = 0; l < s->n_layer; l++) {
#define T(suffix, type, ne0, ne1, init)                                   \
        do {                                                              \
            snprintf(name, sizeof name, "blk.%d.%s", l, suffix);          \
            add_tensor(m, name, type, ne0, ne1, init);                    \
        } while (0)
        T("attn_norm.weight", GGML_TYPE_F32, s->n_embd, 0, INIT_ONES);
        T("attn_q.weight", s->type, s->n_embd, s->n_embd, INIT_WEIGHT);
        T("attn_k.weight", s->type, s->n_embd, n_embd_kv, INIT_WEIGHT);
        T("attn_v.weight", s->type, s->n_embd, n_embd_kv, INIT_WEIGHT);
        if (qwen2) {
            T("attn_q.bias", GGML_TYPE_F32, s->n_embd, 0, INIT_BIAS);
            T("attn_k.bias", GGML_TYPE_F32, n_embd_kv, 0, INIT_BIAS);
            T("attn_v.bias", GGML_TYPE_F32, n_embd_kv, 0, INIT_BIAS);
        }
        T("attn_output.weight", s->type, s->n_embd, s->n_embd, INIT_WEIGHT);
        T("ffn_norm.weight", GGML_TYPE_F32, s->n_embd, 0, INIT_ONES);
        T("ffn_gate.weight", s->type, s->n_embd, s->n_ff, INIT_WEIGHT);
        T("ffn_up.weight", s->type, s->n_embd, s->n_ff, INIT_WEIGHT);
        T("ffn_down.weight", s->type, s->n_ff, s->n_embd, INIT_WEIGHT);
#undef T
    }
}

static int file_type_of(enum ggml_type t)
{
    switch (t) {
    case GGML_TYPE_F32: return 0;   /* LLAMA_FTYPE_ALL_F32 */
    case GGML_TYPE_F16: return 1;   /* LLAMA_FTYPE_MOSTLY_F16 */
    case GGML_TYPE_Q8_0: return 7;  /* LLAMA_FTYPE_MOSTLY_Q8_0 */
    default: return 0;
    }
}

/* Build and write the model. Returns 0, or 1 with a message printed. */
static int make_model(const options_t *o)
{
    struct gguf_init_params vp = { .no_alloc = true, .ctx = NULL };
    struct gguf_context *vocab = gguf_init_from_file(o->vocab_path, vp);
    if (!vocab) {
        fprintf(stderr, "kvchat-mkmodel: cannot read vocabulary GGUF %s\n", o->vocab_path);
        return 1;
    }
    char arch[16];
    snprintf(arch, sizeof arch, "%s", o->arch);
    if (!arch[0]) {
        int64_t k = gguf_find_key(vocab, "general.architecture");
        const char *va = k >= 0 ? gguf_get_val_str(vocab, k) : "";
        snprintf(arch, sizeof arch, "%s", strcmp(va, "llama") == 0 ? "llama" : "qwen2");
    }

    const shape_t *s = &o->shape;
    if (s->n_embd % s->n_head || s->n_head % s->n_head_kv) {
        fprintf(stderr, "kvchat-mkmodel: embd must divide by heads and heads by kv-heads\n");
        gguf_free(vocab);
        return 1;
    }
    const int64_t blck = ggml_blck_size(s->type);
    if (s->n_embd % blck || s->n_ff % blck) {
        fprintf(stderr, "kvchat-mkmodel: %s needs embd and ff to be multiples of %" PRId64 "\n",
                ggml_type_name(s->type), blck);
        gguf_free(vocab);
        return 1;
    }

    struct gguf_context *g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", arch);
    char text[512];
    snprintf(text, sizeof text, "kvchat random %s (%s)", s->name, arch);
    gguf_set_val_str(g, "general.name", text);
    snprintf(text, sizeof text,
             "Random weights written by kvchat-mkmodel (seed %" PRIu64 "): not a trained "
             "model; its answers are meaningless. For testing and benchmarking only.",
             o->seed);
    gguf_set_val_str(g, "general.description", text);
    gguf_set_val_u32(g, "general.file_type", (uint32_t)file_type_of(s->type));
    gguf_set_val_u32(g, "general.quantization_version", GGML_QNT_VERSION);
    gguf_set_val_bool(g, "kvchat.random_weights", true);
    gguf_set_val_u64(g, "kvchat.seed", o->seed);

    int64_t n_vocab = copy_tokenizer(g, vocab);
    if (n_vocab <= 0) {
        fprintf(stderr, "kvchat-mkmodel: %s has no tokenizer.ggml.tokens\n", o->vocab_path);
        gguf_free(g);
        gguf_free(vocab);
        return 1;
    }
    char *tmpl_file = NULL;
    if (o->template_path) {
        tmpl_file = read_text(o->template_path);
        if (!tmpl_file) {
            gguf_free(g);
            gguf_free(vocab);
            return 1;
        }
        gguf_set_val_str(g, "tokenizer.chat_template", tmpl_file);
    } else if (gguf_find_key(vocab, "tokenizer.chat_template") < 0) {
        gguf_set_val_str(g, "tokenizer.chat_template", default_template(vocab));
    }
    free(tmpl_file);
    gguf_free(vocab);
    set_hparams(g, arch, s, n_vocab);

    model_plan_t *m = calloc(1, sizeof *m);
    struct ggml_init_params ip = {
        .mem_size = ggml_tensor_overhead() * MAX_TENSORS,
        .mem_buffer = NULL,
        .no_alloc = true,
    };
    m->ctx = ggml_init(ip);
    m->gguf = g;
    plan_tensors(m, arch, s, n_vocab);

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", o->out_path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int rc = 1;
    if (!f) {
        fprintf(stderr, "kvchat-mkmodel: %s: %s\n", tmp, strerror(errno));
        goto out;
    }
    size_t meta_size = gguf_get_meta_size(g);
    void *meta = malloc(meta_size);
    if (!meta)
        goto out_file;
    gguf_get_meta_data(g, meta);
    size_t w = fwrite(meta, 1, meta_size, f);
    free(meta);
    if (w != meta_size)
        goto out_io;
    size_t alignment = gguf_get_alignment(g);
    for (int i = 0; i < m->n; i++)
        if (write_tensor(f, &m->plan[i], o->seed, alignment) != 0)
            goto out_io;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        goto out_io;
    if (fclose(f) != 0) {
        f = NULL;
        goto out_io;
    }
    f = NULL;
    if (rename(tmp, o->out_path) != 0) {
        fprintf(stderr, "kvchat-mkmodel: rename to %s: %s\n", o->out_path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    rc = 0;
    goto out;
out_io:
    fprintf(stderr, "kvchat-mkmodel: writing %s: %s\n", tmp, strerror(errno));
out_file:
    if (f)
        fclose(f);
    unlink(tmp);
out:
    ggml_free(m->ctx);
    free(m);
    gguf_free(g);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out,
        "Usage: kvchat-mkmodel [options] -o OUT.gguf\n"
        "Write a GGUF model with random weights (reproducible) and a real tokenizer.\n\n"
        "  -p, --preset NAME      tiny | qwen2.5-0.5b (default tiny)\n"
        "  -o, --out PATH         output file (required)\n"
        "  -v, --vocab PATH|NAME  vocab-only GGUF to take the tokenizer from; a bare\n"
        "                         NAME (qwen2, llama-spm, llama-bpe) means\n"
        "                         ggml-vocab-NAME.gguf in the vocabulary directory\n"
        "                         (default qwen2; $KVCHAT_VOCAB_DIR, else\n"
        "                         %s)\n"
        "  -a, --arch NAME        qwen2 | llama (default: from the vocabulary)\n"
        "  -t, --type TYPE        f32 | f16 | q8_0 weight type (default f16)\n"
        "  -s, --seed N           random seed (default 42)\n"
        "      --chat-template F  Jinja chat template to embed (default: the\n"
        "                         vocabulary's, else one matching its tokenizer)\n"
        "      --layers N --embd N --heads N --kv-heads N --ff N --ctx N\n"
        "                         override the preset's shape\n"
        "  -h, --help\n",
        vocab_dir());
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    options_t o = { .shape = presets[0], .seed = 42 };
    static char default_vocab[4096];
    snprintf(default_vocab, sizeof default_vocab, "%s/ggml-vocab-qwen2.gguf", vocab_dir());
    o.vocab_path = default_vocab;
    const char *type_name = NULL;

    enum { OPT_LAYERS = 256, OPT_EMBD, OPT_HEADS, OPT_KV, OPT_FF, OPT_CTX, OPT_TMPL };
    static const struct option longopts[] = {
        { "preset", required_argument, NULL, 'p' },
        { "out", required_argument, NULL, 'o' },
        { "vocab", required_argument, NULL, 'v' },
        { "arch", required_argument, NULL, 'a' },
        { "type", required_argument, NULL, 't' },
        { "seed", required_argument, NULL, 's' },
        { "chat-template", required_argument, NULL, OPT_TMPL },
        { "layers", required_argument, NULL, OPT_LAYERS },
        { "embd", required_argument, NULL, OPT_EMBD },
        { "heads", required_argument, NULL, OPT_HEADS },
        { "kv-heads", required_argument, NULL, OPT_KV },
        { "ff", required_argument, NULL, OPT_FF },
        { "ctx", required_argument, NULL, OPT_CTX },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    /* Shape overrides apply after the preset, whatever their order. */
    int over[6] = { 0 };
    int c;
    while ((c = getopt_long(argc, argv, "p:o:v:a:t:s:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': {
            size_t i;
            for (i = 0; i < sizeof presets / sizeof presets[0]; i++)
                if (strcmp(optarg, presets[i].name) == 0)
                    break;
            if (i == sizeof presets / sizeof presets[0]) {
                fprintf(stderr, "kvchat-mkmodel: unknown preset '%s' (tiny, qwen2.5-0.5b)\n", optarg);
                return 2;
            }
            o.shape = presets[i];
            break;
        }
        case 'o': o.out_path = optarg; break;
        case 'v':
            /* A bare name ("llama-spm") means the llama.cpp source's file. */
            if (!strchr(optarg, '/') && !strstr(optarg, ".gguf")) {
                snprintf(default_vocab, sizeof default_vocab, "%s/ggml-vocab-%s.gguf",
                         vocab_dir(), optarg);
                o.vocab_path = default_vocab;
            } else {
                o.vocab_path = optarg;
            }
            break;
        case 'a':
            if (strcmp(optarg, "qwen2") != 0 && strcmp(optarg, "llama") != 0) {
                fprintf(stderr, "kvchat-mkmodel: unknown arch '%s' (qwen2, llama)\n", optarg);
                return 2;
            }
            snprintf(o.arch, sizeof o.arch, "%s", optarg);
            break;
        case 't': type_name = optarg; break;
        case 's': {
            char *end;
            errno = 0;
            o.seed = strtoull(optarg, &end, 10);
            if (errno || *end) {
                fprintf(stderr, "kvchat-mkmodel: bad seed '%s'\n", optarg);
                return 2;
            }
            break;
        }
        case OPT_TMPL: o.template_path = optarg; break;
        case OPT_LAYERS: case OPT_EMBD: case OPT_HEADS: case OPT_KV: case OPT_FF: case OPT_CTX:
            if (parse_int(optarg, 1, 1 << 20, &over[c - OPT_LAYERS]) != 0) {
                fprintf(stderr, "kvchat-mkmodel: bad number '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || !o.out_path) {
        usage(stderr);
        return 2;
    }
    int *dims[6] = { &o.shape.n_layer, &o.shape.n_embd, &o.shape.n_head,
                     &o.shape.n_head_kv, &o.shape.n_ff, &o.shape.n_ctx };
    for (int i = 0; i < 6; i++)
        if (over[i])
            *dims[i] = over[i];
    if (type_name) {
        if (strcmp(type_name, "f32") == 0) o.shape.type = GGML_TYPE_F32;
        else if (strcmp(type_name, "f16") == 0) o.shape.type = GGML_TYPE_F16;
        else if (strcmp(type_name, "q8_0") == 0) o.shape.type = GGML_TYPE_Q8_0;
        else {
            fprintf(stderr, "kvchat-mkmodel: unknown type '%s' (f32, f16, q8_0)\n", type_name);
            return 2;
        }
    }
    return make_model(&o);
}
