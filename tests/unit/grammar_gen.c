/* grammar_gen.c — see grammar_gen.h. */
#include "grammar_gen.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

char *grammar_gen(model_t *m, model_ctx_t *ctx, const char *gbnf, const grammar_gen_t *o,
                  bool *dead)
{
    model_token_t *toks = NULL;
    int n = 0;
    assert_int_equal(model_tokenize(m, o->prompt, strlen(o->prompt), true, false, 64, &toks, &n),
                     MODEL_OK);
    model_clear(ctx);
    model_batch_t *b = model_batch_new(64);
    assert_non_null(b);
    int idx = -1;
    for (int i = 0; i < n; i++)
        idx = model_batch_add(b, toks[i], i, 0, i == n - 1);
    assert_int_equal(model_decode(ctx, b), MODEL_OK);

    model_sampling_t sp;
    model_sampling_default(&sp);
    sp.temperature = o->temperature;
    sp.seed = o->seed;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    if (o->penalties)
        sp.repeat_penalty = 1.3f;
    sp.grammar = gbnf;
    model_sampler_t *s = NULL;
    assert_int_equal(model_sampler_new(m, &sp, &s), MODEL_OK);
    /* Prompt tokens go to the penalties, never to the grammar (the prompt
     * does not match it: llama.cpp would abort). */
    for (int i = 0; i < n; i++)
        model_sampler_accept(s, toks[i]);

    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    out[0] = '\0';
    bool done = false;
    for (int i = 0; i < o->budget; i++) {
        model_token_t t = model_sample(s, ctx, idx);
        if (model_token_is_eog(m, t)) {
            done = true;
            break;
        }
        int w = model_token_piece(m, t, o->special, out + len, cap - len);
        assert_true(w >= 0);
        len += (size_t)w;
        assert_true(len + 256 < cap);
        model_batch_clear(b);
        idx = model_batch_add(b, t, n + i, 0, true);
        assert_int_equal(model_decode(ctx, b), MODEL_OK);
    }
    if (dead)
        *dead = model_sampler_dead_end(s);
    model_sampler_free(s);
    model_batch_free(b);
    free(toks);
    if (!done) {
        free(out);
        return NULL;
    }
    return out;
}
