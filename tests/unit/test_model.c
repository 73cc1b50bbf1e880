/* test_model.c — the llama.cpp stack through model.h, on the tiny model.
 *
 * - greedy generation is deterministic (same 16 tokens twice);
 * - a sequence's state saved after a 200-token prompt and restored into
 *   another sequence gives next-token logits identical (bit for bit) to a
 *   recompute of the same prompt;
 * - models built on the llama-spm and llama-bpe vocabularies load, render
 *   their chat template and generate;
 * - the random-weights marker and the fingerprint are read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/model.h"

#define TINY KVCHAT_TEST_MODELS_DIR "/tiny.gguf"

static model_t *g_model;

static int setup(void **state)
{
    (void)state;
    model_backend_init(false);
    return model_open(TINY, false, &g_model) == MODEL_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    model_close(g_model);
    return 0;
}

static model_ctx_t *new_ctx(int n_seq)
{
    model_ctx_params_t p;
    model_ctx_params_default(&p);
    p.n_ctx = 1024 * n_seq;
    p.n_seq = n_seq;
    p.n_batch = 64;
    p.n_threads = 2;
    model_ctx_t *c = NULL;
    assert_int_equal(model_ctx_new(g_model, &p, &c), MODEL_OK);
    return c;
}

/* Decode toks[0..n) into seq in chunks of `chunk`; returns the batch index
 * of the last token's logits in the final decode. */
static int prefill(model_ctx_t *c, model_batch_t *b, const model_token_t *toks, int n, int seq,
                   int pos0, int chunk)
{
    int last = -1;
    for (int i = 0; i < n; i += chunk) {
        model_batch_clear(b);
        int end = i + chunk < n ? i + chunk : n;
        for (int k = i; k < end; k++)
            last = model_batch_add(b, toks[k], pos0 + k, seq, k == n - 1);
        assert_int_equal(model_decode(c, b), MODEL_OK);
    }
    return last;
}

static void greedy(model_ctx_t *c, const model_token_t *prompt, int n_prompt, int n_gen,
                   model_token_t *out)
{
    model_sampling_t sp;
    model_sampling_default(&sp);
    sp.temperature = 0.0f;
    model_sampler_t *s = NULL;
    assert_int_equal(model_sampler_new(g_model, &sp, &s), MODEL_OK);
    model_batch_t *b = model_batch_new(64);
    int idx = prefill(c, b, prompt, n_prompt, 0, 0, 64);
    for (int i = 0; i < n_gen; i++) {
        out[i] = model_sample(s, c, idx);
        model_batch_clear(b);
        idx = model_batch_add(b, out[i], n_prompt + i, 0, true);
        assert_int_equal(model_decode(c, b), MODEL_OK);
    }
    model_batch_free(b);
    model_sampler_free(s);
}

static void tokenize(const char *text, model_token_t **toks, int *n)
{
    assert_int_equal(model_tokenize(g_model, text, strlen(text), true, true, 100000, toks, n),
                     MODEL_OK);
}

static void test_info(void **state)
{
    (void)state;
    const model_info_t *in = model_info(g_model);
    assert_true(in->random_weights);
    assert_int_equal(in->n_layer, 2);
    assert_int_equal(in->n_embd, 128);
    assert_true(in->n_vocab > 100000);   /* the qwen2 vocabulary */
    assert_true(in->fingerprint != 0);
    /* The fingerprint is a function of the file: reopening gives the same,
     * whether the weights are read or mapped. */
    for (int map = 0; map <= 1; map++) {
        model_t *again = NULL;
        assert_int_equal(model_open(TINY, map, &again), MODEL_OK);
        assert_true(model_info(again)->fingerprint == in->fingerprint);
        assert_int_equal(model_info(again)->n_params, in->n_params);
        model_close(again);
    }
    model_t *again = NULL;
    assert_int_equal(model_open("/nonexistent/model.gguf", false, &again), MODEL_ELOAD);
}

static void test_greedy_deterministic(void **state)
{
    (void)state;
    model_ctx_t *c = new_ctx(1);
    model_token_t *prompt;
    int n;
    tokenize("The quick brown fox jumps over the lazy dog.", &prompt, &n);
    assert_true(n > 5);
    model_token_t a[16], b[16];
    greedy(c, prompt, n, 16, a);
    model_clear(c);
    greedy(c, prompt, n, 16, b);
    assert_memory_equal(a, b, sizeof a);
    /* Not degenerate: generation produced vocabulary tokens. */
    for (int i = 0; i < 16; i++)
        assert_true(a[i] >= 0 && a[i] < model_info(g_model)->n_vocab);
    free(prompt);
    model_ctx_free(c);
}

static void test_state_restore_matches_recompute(void **state)
{
    (void)state;
    model_ctx_t *c = new_ctx(2);
    const int n_prompt = 200;
    model_token_t toks[201];
    for (int i = 0; i < 201; i++)
        toks[i] = (model_token_t)(1000 + (i * 7919) % 50000);
    model_batch_t *b = model_batch_new(64);

    /* Prefill 200 tokens in seq 0 and snapshot it. */
    prefill(c, b, toks, n_prompt, 0, 0, 64);
    assert_int_equal(model_seq_pos_max(c, 0), n_prompt - 1);
    size_t size = model_seq_state_size(c, 0);
    assert_true(size > 0);
    void *blob = malloc(size);
    size_t written = 0;
    assert_int_equal(model_seq_state_get(c, 0, blob, size, &written), MODEL_OK);
    assert_true(written == size);
    assert_int_equal(model_seq_state_get(c, 0, blob, size / 2, &written), MODEL_ESTATE);

    /* Recompute: the next token decoded on top of the freshly built prefix. */
    int vocab = model_info(g_model)->n_vocab;
    model_batch_clear(b);
    int idx = model_batch_add(b, toks[n_prompt], n_prompt, 0, true);
    assert_int_equal(model_decode(c, b), MODEL_OK);
    float *ref = malloc((size_t)vocab * sizeof *ref);
    memcpy(ref, model_logits(c, idx), (size_t)vocab * sizeof *ref);

    /* Restore into seq 1 and decode the same next token there. */
    model_clear(c);
    assert_int_equal(model_seq_state_set(c, 1, blob, written), MODEL_OK);
    assert_int_equal(model_seq_pos_max(c, 1), n_prompt - 1);
    assert_int_equal(model_seq_pos_max(c, 0), -1);
    model_batch_clear(b);
    idx = model_batch_add(b, toks[n_prompt], n_prompt, 1, true);
    assert_int_equal(model_decode(c, b), MODEL_OK);
    assert_memory_equal(ref, model_logits(c, idx), (size_t)vocab * sizeof *ref);

    /* A damaged blob is refused and leaves the sequence empty. */
    assert_int_equal(model_seq_state_set(c, 0, blob, written / 3), MODEL_ESTATE);
    assert_int_equal(model_seq_pos_max(c, 0), -1);

    free(ref);
    free(blob);
    model_batch_free(b);
    model_ctx_free(c);
}

static void test_chat_render_prefix(void **state)
{
    (void)state;
    /* The tokens of a conversation's first k messages are a prefix of the
     * tokens of the whole conversation (the engine relies on it). */
    const char *roles[] = { "system", "user", "assistant", "user" };
    const char *contents[] = { "Document: apples are red.", "What colour?", "Red.", "Sure?" };
    char *one, *all;
    size_t n1, n2;
    assert_int_equal(model_chat_render(g_model, roles, contents, 1, false, &one, &n1), MODEL_OK);
    assert_int_equal(model_chat_render(g_model, roles, contents, 4, true, &all, &n2), MODEL_OK);
    assert_true(n1 < n2);
    assert_memory_equal(one, all, n1);
    assert_non_null(strstr(all, "<|im_start|>assistant"));
    free(one);
    free(all);
}

static void test_other_vocabularies(void **state)
{
    (void)state;
    static const char *const files[] = {
        KVCHAT_TEST_MODELS_DIR "/tiny-llama-spm.gguf",
        KVCHAT_TEST_MODELS_DIR "/tiny-llama-bpe.gguf",
    };
    static const char *const markers[] = { "[INST]", "<|start_header_id|>" };
    for (int f = 0; f < 2; f++) {
        model_t *m = NULL;
        assert_int_equal(model_open(files[f], false, &m), MODEL_OK);
        const char *roles[] = { "system", "user" };
        const char *contents[] = { "You answer briefly.", "Hello" };
        char *text;
        size_t len;
        assert_int_equal(model_chat_render(m, roles, contents, 2, true, &text, &len), MODEL_OK);
        assert_non_null(strstr(text, markers[f]));
        model_token_t *toks;
        int n;
        assert_int_equal(model_tokenize(m, text, len, true, true, 4096, &toks, &n), MODEL_OK);
        assert_true(n > 4);
        model_ctx_params_t p;
        model_ctx_params_default(&p);
        p.n_ctx = 512;
        p.n_threads = 2;
        model_ctx_t *c = NULL;
        assert_int_equal(model_ctx_new(m, &p, &c), MODEL_OK);
        model_batch_t *b = model_batch_new(512);
        for (int i = 0; i < n; i++)
            model_batch_add(b, toks[i], i, 0, i == n - 1);
        assert_int_equal(model_decode(c, b), MODEL_OK);
        assert_non_null(model_logits(c, n - 1));
        model_batch_free(b);
        model_ctx_free(c);
        free(toks);
        free(text);
        model_close(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_greedy_deterministic),
        cmocka_unit_test(test_state_restore_matches_recompute),
        cmocka_unit_test(test_chat_render_prefix),
        cmocka_unit_test(test_other_vocabularies),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
