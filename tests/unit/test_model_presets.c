/* test_model_presets.c — the qwen2.5-0.5b preset (q8_0, the demo model) has
 * Qwen2.5-0.5B's shape, loads in llama.cpp and generates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/model.h"

static void test_qwen05_shape_and_generate(void **state)
{
    (void)state;
    model_backend_init(false);
    model_t *m = NULL;
    assert_int_equal(model_open(KVCHAT_TEST_MODELS_DIR "/qwen2.5-0.5b-q8_0.gguf", false, &m), MODEL_OK);
    const model_info_t *in = model_info(m);
    assert_int_equal(in->n_layer, 24);
    assert_int_equal(in->n_embd, 896);
    assert_int_equal(in->n_head, 14);
    assert_int_equal(in->n_head_kv, 2);
    assert_int_equal(in->n_vocab, 151936);
    assert_true(in->random_weights);
    /* ~494M parameters, as the real model (tied embeddings). */
    assert_true(in->n_params > 480000000ULL && in->n_params < 510000000ULL);

    model_ctx_params_t p;
    model_ctx_params_default(&p);
    p.n_ctx = 256;
    p.n_threads = 2;
    model_ctx_t *c = NULL;
    assert_int_equal(model_ctx_new(m, &p, &c), MODEL_OK);
    model_token_t *toks;
    int n;
    const char *text = "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n";
    assert_int_equal(model_tokenize(m, text, strlen(text), true, true, 256, &toks, &n), MODEL_OK);
    model_batch_t *b = model_batch_new(256);
    for (int i = 0; i < n; i++)
        model_batch_add(b, toks[i], i, 0, i == n - 1);
    assert_int_equal(model_decode(c, b), MODEL_OK);
    model_sampling_t sp;
    model_sampling_default(&sp);
    sp.temperature = 0;
    model_sampler_t *s = NULL;
    assert_int_equal(model_sampler_new(m, &sp, &s), MODEL_OK);
    int idx = n - 1;
    for (int i = 0; i < 4; i++) {
        model_token_t t = model_sample(s, c, idx);
        assert_true(t >= 0 && t < in->n_vocab);
        model_batch_clear(b);
        idx = model_batch_add(b, t, n + i, 0, true);
        assert_int_equal(model_decode(c, b), MODEL_OK);
    }
    /* KV per token: 24 layers x 2 (K,V) x 2 heads x 64 dims x 2 bytes. */
    size_t per_token = model_seq_state_size(c, 0) / (size_t)(n + 4);
    assert_true(per_token >= 12288 && per_token < 12288 + 512);
    model_sampler_free(s);
    model_batch_free(b);
    free(toks);
    model_ctx_free(c);
    model_close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_qwen05_shape_and_generate) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
