/* grammar_gen.h — for unit tests: text a model generates under a grammar.
 *
 * A short prompt is decoded, then tokens are sampled under the GBNF
 * grammar (model_sampler_new with sampling.grammar) until an end-of-
 * generation token or the budget, as the scheduler samples them: what
 * test_jsonschema.c and test_tools.c check against schemas and tools.
 */
#ifndef KVCHAT_TESTS_GRAMMAR_GEN_H
#define KVCHAT_TESTS_GRAMMAR_GEN_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/model.h"

typedef struct {
    const char *prompt;     /* tokenized with BOS, never special */
    float temperature;      /* 0: greedy; else the whole distribution
                             * (no top-k, top-p or min-p: varied output) */
    uint32_t seed;
    bool penalties;         /* a repeat penalty of 1.3 over the prompt too */
    int budget;             /* tokens at most */
    bool special;           /* control tokens appear in the text */
} grammar_gen_t;

/* The malloc'd text generated under gbnf (it must parse), or NULL when the
 * budget ran out first. *dead (may be NULL) tells whether the sampler met a
 * grammar dead end. Fails the running test on any error. */
char *grammar_gen(model_t *m, model_ctx_t *ctx, const char *gbnf, const grammar_gen_t *o,
                  bool *dead);

#endif
