/* test_jsonschema.c — JSON Schema → GBNF, checked by sampling on the tiny
 * model.
 *
 * For every supported feature:
 * - the grammar made from the schema parses in llama.cpp
 *   (model_grammar_check);
 * - sampling under it on the tiny model (random weights, so the grammar is
 *   all that shapes the text), greedy and at temperature 1 with two seeds,
 *   ends with an end-of-generation token within the budget and yields text
 *   that json_parse accepts and jsonschema_validate passes.
 * Also: unsupported or invalid schemas and limits give the right code and
 * a message naming the keyword; jsonschema_validate rejects wrong values and
 * says where; a grammar never sees prompt tokens; a dead end ends the
 * generation instead of aborting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/json.h"
#include "engine/jsonschema.h"
#include "engine/model.h"
#include "grammar_gen.h"

#define TINY KVCHAT_TEST_MODELS_DIR "/tiny.gguf"
#define BUDGET 400      /* tokens per generation of a bounded schema */
#define BUDGET_OPEN 120 /* of an unbounded one (any value, any string) */

static model_t *g_model;
static model_ctx_t *g_ctx;

static int setup(void **state)
{
    (void)state;
    model_backend_init(false);
    if (model_open(TINY, false, &g_model) != MODEL_OK)
        return -1;
    model_ctx_params_t p;
    model_ctx_params_default(&p);
    p.n_ctx = 2048;
    p.n_seq = 1;
    p.n_batch = 64;
    p.n_threads = 1; /* no OpenMP spinning on a busy machine */
    return model_ctx_new(g_model, &p, &g_ctx) == MODEL_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    model_ctx_free(g_ctx);
    model_close(g_model);
    return 0;
}

static json_t *parse(const char *text)
{
    json_t *j = NULL;
    json_err_t e;
    if (json_parse(text, strlen(text), &j, &e) != JSON_OK)
        fail_msg("bad test JSON: %s: %s", e.msg, text);
    return j;
}

/* Generate under `gbnf` from a short prompt; returns the malloc'd text, or
 * NULL if the budget ran out first. *dead tells about a dead end. */
static char *generate(const char *gbnf, float temperature, uint32_t seed, bool penalties,
                      int budget, bool *dead)
{
    const grammar_gen_t o = { "Reply with JSON:", temperature, seed, penalties, budget, false };
    return grammar_gen(g_model, g_ctx, gbnf, &o, dead);
}

/* The schema's grammar parses, and generation under it (three ways) ends
 * and matches the schema. An open schema (unbounded strings or nesting)
 * need not end within the budget: random weights seldom close a string. */
static void check_schema_budget(const char *schema_text, bool open)
{
    json_t *schema = parse(schema_text);
    char *gbnf = NULL;
    char err[256];
    int rc = jsonschema_to_gbnf(schema, &gbnf, err, sizeof err);
    if (rc != JSONSCHEMA_OK)
        fail_msg("%s: %s", schema_text, err);
    if (model_grammar_check(g_model, gbnf, err, sizeof err) != MODEL_OK)
        fail_msg("llama.cpp refuses the grammar of %s:\n%s", schema_text, gbnf);
    const struct {
        float temp;
        uint32_t seed;
        bool penalties;
    } runs[] = {{0.0f, 0, false}, {1.0f, 1, false}, {1.0f, 7, true}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        bool dead = true;
        char *text = generate(gbnf, runs[r].temp, runs[r].seed, runs[r].penalties,
                              open ? BUDGET_OPEN : BUDGET, &dead);
        if (!text && open)
            continue;
        if (!text)
            fail_msg("no end within %d tokens for %s (run %zu)\n%s", BUDGET, schema_text, r,
                     gbnf);
        assert_false(dead);
        json_t *value = NULL;
        json_err_t je;
        if (json_parse(text, strlen(text), &value, &je) != JSON_OK)
            fail_msg("not JSON (%s) for %s: '%s'", je.msg, schema_text, text);
        if (jsonschema_validate(schema, value, err, sizeof err) != JSONSCHEMA_OK)
            fail_msg("%s: '%s' does not match %s", err, text, schema_text);
        /* No whitespace around the value: it ends where the grammar ends. */
        assert_true(text[0] != ' ' && text[0] != '\n');
        assert_true(text[strlen(text) - 1] != ' ' && text[strlen(text) - 1] != '\n');
        print_message("    %s\n", text);
        json_decref(value);
        free(text);
    }
    free(gbnf);
    json_decref(schema);
}

static void check_schema(const char *schema_text) { check_schema_budget(schema_text, false); }

/* The schema converts and llama.cpp takes the grammar (no sampling). */
static void check_parses(const char *schema_text)
{
    json_t *schema = parse(schema_text);
    char *gbnf = NULL;
    char err[256];
    if (jsonschema_to_gbnf(schema, &gbnf, err, sizeof err) != JSONSCHEMA_OK)
        fail_msg("%s: %s", schema_text, err);
    if (model_grammar_check(g_model, gbnf, err, sizeof err) != MODEL_OK)
        fail_msg("llama.cpp refuses the grammar of %s", schema_text);
    free(gbnf);
    json_decref(schema);
}

static void test_primitives(void **state)
{
    (void)state;
    /* Long bounds are split under llama.cpp's 2000-repetition limit. */
    check_parses("{\"type\":\"string\",\"minLength\":1500,\"maxLength\":4096}");
    check_parses("{\"type\":\"string\",\"minLength\":4096}");
    check_parses("{\"type\":\"array\",\"minItems\":256,\"maxItems\":256}");
    check_schema("{\"type\":\"integer\"}");
    check_schema("{\"type\":\"number\"}");
    check_schema("{\"type\":\"boolean\"}");
    check_schema("{\"type\":\"null\"}");
    check_schema("{\"type\":\"string\",\"maxLength\":12}");
    check_schema("{\"type\":\"string\",\"minLength\":3,\"maxLength\":6}");
    check_schema("{\"type\":\"string\",\"minLength\":2,\"maxLength\":2}");
    check_schema("{\"type\":\"string\",\"maxLength\":0}");
}

static void test_objects(void **state)
{
    (void)state;
    /* Strict: all required, closed. */
    check_schema("{\"type\":\"object\",\"properties\":{"
                 "\"name\":{\"type\":\"string\",\"maxLength\":8},"
                 "\"age\":{\"type\":\"integer\"},"
                 "\"score\":{\"type\":\"number\"},"
                 "\"ok\":{\"type\":\"boolean\"},"
                 "\"nothing\":{\"type\":\"null\"}},"
                 "\"required\":[\"name\",\"age\",\"score\",\"ok\",\"nothing\"],"
                 "\"additionalProperties\":false}");
    /* Optional properties around a required one. */
    check_schema("{\"type\":\"object\",\"properties\":{"
                 "\"a\":{\"type\":\"integer\"},"
                 "\"b\":{\"type\":\"string\",\"maxLength\":5},"
                 "\"c\":{\"type\":\"boolean\"},"
                 "\"d\":{\"type\":\"null\"}},"
                 "\"required\":[\"b\"],\"additionalProperties\":false}");
    /* All optional. */
    check_schema("{\"type\":\"object\",\"properties\":{"
                 "\"x\":{\"type\":\"integer\"},\"y\":{\"type\":\"integer\"}},"
                 "\"additionalProperties\":false}");
    /* Keys that need escaping, and nesting. */
    check_schema("{\"type\":\"object\",\"properties\":{"
                 "\"we\\\"ird\\\\key\":{\"type\":\"boolean\"},"
                 "\"inner\":{\"type\":\"object\",\"properties\":{"
                 "\"deeper\":{\"type\":\"object\",\"properties\":{\"v\":{\"const\":1}},"
                 "\"required\":[\"v\"],\"additionalProperties\":false}},"
                 "\"required\":[\"deeper\"],\"additionalProperties\":false}},"
                 "\"required\":[\"we\\\"ird\\\\key\",\"inner\"],"
                 "\"additionalProperties\":false}");
    /* Closed and empty. */
    check_schema("{\"type\":\"object\",\"additionalProperties\":false}");
    /* Annotations are ignored. */
    check_schema("{\"title\":\"T\",\"description\":\"d\",\"type\":\"object\","
                 "\"properties\":{\"v\":{\"type\":\"boolean\",\"description\":\"x\","
                 "\"default\":true}},\"required\":[\"v\"],\"additionalProperties\":false}");
}

static void test_arrays(void **state)
{
    (void)state;
    check_schema("{\"type\":\"array\",\"items\":{\"type\":\"integer\"},"
                 "\"minItems\":1,\"maxItems\":3}");
    check_schema("{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]},\"maxItems\":4}");
    check_schema("{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},"
                 "\"minItems\":2,\"maxItems\":2}");
    check_schema("{\"type\":\"array\",\"maxItems\":0}");
    check_schema("{\"type\":\"object\",\"properties\":{\"tags\":{\"type\":\"array\","
                 "\"items\":{\"type\":\"string\",\"maxLength\":4},\"maxItems\":3}},"
                 "\"required\":[\"tags\"],\"additionalProperties\":false}");
}

static void test_enum_const(void **state)
{
    (void)state;
    check_schema("{\"enum\":[\"red\",\"green\",1,null,{\"k\":[true]}]}");
    check_schema("{\"type\":\"string\",\"enum\":[\"x\",\"y\\\"z\",\"\\u00e9t\\u00e9\"]}");
    check_schema("{\"const\":\"fixed\"}");
    check_schema("{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"circle\"},"
                 "\"r\":{\"type\":\"integer\"}},\"required\":[\"kind\",\"r\"],"
                 "\"additionalProperties\":false}");
}

static void test_unions(void **state)
{
    (void)state;
    check_schema("{\"anyOf\":[{\"type\":\"string\",\"maxLength\":4},{\"type\":\"integer\"}]}");
    check_schema("{\"type\":[\"string\",\"null\"],\"maxLength\":3}");
    check_schema("{\"type\":[\"integer\",\"boolean\"]}");
    /* Pydantic's Optional[...]: anyOf with annotations beside it. */
    check_schema("{\"type\":\"object\",\"properties\":{\"v\":{\"anyOf\":["
                 "{\"type\":\"integer\"},{\"type\":\"null\"}],\"default\":null,"
                 "\"title\":\"V\"}},\"required\":[\"v\"],\"additionalProperties\":false}");
}

static void test_refs(void **state)
{
    (void)state;
    check_schema("{\"$defs\":{\"pt\":{\"type\":\"object\",\"properties\":{"
                 "\"x\":{\"type\":\"integer\"},\"y\":{\"type\":\"integer\"}},"
                 "\"required\":[\"x\",\"y\"],\"additionalProperties\":false}},"
                 "\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/pt\"},"
                 "\"b\":{\"$ref\":\"#/$defs/pt\"}},\"required\":[\"a\",\"b\"],"
                 "\"additionalProperties\":false}");
    check_schema("{\"definitions\":{\"c\":{\"enum\":[\"r\",\"g\"]}},"
                 "\"type\":\"array\",\"items\":{\"$ref\":\"#/definitions/c\"},\"maxItems\":3}");
    /* Recursive: a tree. */
    check_schema("{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{"
                 "\"v\":{\"type\":\"integer\"},\"kids\":{\"type\":\"array\","
                 "\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":2}},"
                 "\"required\":[\"v\"],\"additionalProperties\":false}},"
                 "\"$ref\":\"#/$defs/node\"}");
    /* Recursive through the root. */
    check_schema("{\"type\":\"object\",\"properties\":{\"next\":{\"anyOf\":["
                 "{\"$ref\":\"#\"},{\"type\":\"null\"}]}},\"required\":[\"next\"],"
                 "\"additionalProperties\":false}");
}

static void test_formats(void **state)
{
    (void)state;
    const char *f[] = {"date", "time", "date-time", "uuid", "email", "ipv4", "hostname"};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        char s[128];
        snprintf(s, sizeof s, "{\"type\":\"string\",\"format\":\"%s\"}", f[i]);
        check_schema(s);
    }
}

static void test_any(void **state)
{
    (void)state;
    check_schema_budget("{}", true);
    check_schema_budget("true", true);   /* the boolean schema: no rules of its own */
    check_schema_budget("{\"type\":\"object\"}", true);
    check_schema_budget("{\"type\":\"array\",\"maxItems\":3}", true);
    check_schema_budget("{\"type\":\"string\"}", true);
}

/* response_format json_object: any JSON object. */
static void test_object_grammar(void **state)
{
    (void)state;
    const char *gbnf = jsonschema_object_gbnf();
    assert_int_equal(model_grammar_check(g_model, gbnf, NULL, 0), MODEL_OK);
    for (uint32_t seed = 1; seed <= 3; seed++) {
        bool dead;
        char *text = generate(gbnf, seed == 1 ? 0.0f : 1.0f, seed, false, BUDGET_OPEN, &dead);
        if (!text)
            continue;
        json_t *v = NULL;
        if (json_parse(text, strlen(text), &v, NULL) != JSON_OK)
            fail_msg("not JSON: '%s'", text);
        assert_true(json_is_object(v));
        print_message("    %s\n", text);
        json_decref(v);
        free(text);
    }
}

static void expect_error(const char *schema_text, int want, const char *substr)
{
    json_t *schema = parse(schema_text);
    char *gbnf = (char *)"untouched";
    char err[256];
    int rc = jsonschema_to_gbnf(schema, &gbnf, err, sizeof err);
    if (rc != want || !strstr(err, substr))
        fail_msg("%s: got %d '%s', want %d '%s'", schema_text, rc, err, want, substr);
    assert_null(gbnf);
    json_decref(schema);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("{\"type\":\"string\",\"pattern\":\"^a\"}", JSONSCHEMA_EUNSUPPORTED,
                 "keyword 'pattern' is not supported");
    expect_error("{\"type\":\"object\",\"patternProperties\":{}}", JSONSCHEMA_EUNSUPPORTED,
                 "keyword 'patternProperties' is not supported (at #)");
    expect_error("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\","
                 "\"minimum\":0}}}",
                 JSONSCHEMA_EUNSUPPORTED, "keyword 'minimum' is not supported (at #/properties/n)");
    expect_error("{\"allOf\":[{}]}", JSONSCHEMA_EUNSUPPORTED, "'allOf'");
    expect_error("{\"oneOf\":[{}]}", JSONSCHEMA_EUNSUPPORTED, "'oneOf'");
    expect_error("{\"type\":\"array\",\"items\":[{}]}", JSONSCHEMA_EUNSUPPORTED, "'items'");
    expect_error("{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}}",
                 JSONSCHEMA_EUNSUPPORTED, "additionalProperties");
    expect_error("{\"type\":\"string\",\"format\":\"ipv6\"}", JSONSCHEMA_EUNSUPPORTED,
                 "format 'ipv6' is not supported");
    expect_error("{\"type\":\"string\",\"format\":\"date\",\"maxLength\":3}",
                 JSONSCHEMA_EUNSUPPORTED, "'format'");
    expect_error("{\"$ref\":\"#/$defs/a\",\"type\":\"string\",\"$defs\":{\"a\":{}}}",
                 JSONSCHEMA_EUNSUPPORTED, "'$ref' together with 'type'");
    expect_error("{\"type\":\"wat\"}", JSONSCHEMA_EINVAL, "unknown type 'wat'");
    expect_error("{\"type\":7}", JSONSCHEMA_EINVAL, "'type' must be");
    expect_error("42", JSONSCHEMA_EINVAL, "must be an object or a boolean");
    expect_error("false", JSONSCHEMA_EUNSUPPORTED, "'false'");
    expect_error("{\"$ref\":\"#/$defs/missing\"}", JSONSCHEMA_EINVAL, "does not resolve");
    expect_error("{\"$ref\":\"http://example.com/s.json\"}", JSONSCHEMA_EINVAL,
                 "does not resolve");
    expect_error("{\"enum\":[]}", JSONSCHEMA_EINVAL, "'enum'");
    expect_error("{\"type\":\"string\",\"enum\":[1,2]}", JSONSCHEMA_EINVAL, "enum");
    expect_error("{\"anyOf\":[]}", JSONSCHEMA_EINVAL, "'anyOf'");
    expect_error("{\"type\":\"string\",\"minLength\":5,\"maxLength\":2}", JSONSCHEMA_EINVAL,
                 "'minLength' is over 'maxLength'");
    expect_error("{\"type\":\"string\",\"maxLength\":-1}", JSONSCHEMA_EINVAL, "non-negative");
    expect_error("{\"type\":\"object\",\"properties\":{},\"required\":[\"a\"],"
                 "\"additionalProperties\":false}",
                 JSONSCHEMA_EINVAL, "required property 'a'");
    /* Left recursion: a value that would never end. */
    expect_error("{\"$defs\":{\"a\":{\"anyOf\":[{\"$ref\":\"#/$defs/a\"},{\"type\":\"null\"}]}},"
                 "\"$ref\":\"#/$defs/a\"}",
                 JSONSCHEMA_EUNSUPPORTED, "refers to itself");
    expect_error("{\"$ref\":\"#\"}", JSONSCHEMA_EUNSUPPORTED, "refers to itself");

    /* Limits. */
    expect_error("{\"type\":\"string\",\"maxLength\":100000}", JSONSCHEMA_ETOOBIG,
                 "'maxLength' over 4096");
    expect_error("{\"type\":\"array\",\"maxItems\":1000}", JSONSCHEMA_ETOOBIG, "'maxItems'");
    /* 40 nested arrays. */
    char deep[2048] = "";
    for (int i = 0; i < 40; i++)
        strcat(deep, "{\"type\":\"array\",\"items\":");
    strcat(deep, "{}");
    for (int i = 0; i < 40; i++)
        strcat(deep, "}");
    expect_error(deep, JSONSCHEMA_ETOOBIG, "deeper than 32");
    /* 1,001 properties. */
    json_t *props = json_object();
    for (int i = 0; i < 1001; i++) {
        char k[16];
        snprintf(k, sizeof k, "p%d", i);
        json_object_set_new(props, k, json_pack("{s:s}", "type", "integer"));
    }
    json_t *big = json_pack("{s:s, s:o}", "type", "object", "properties", props);
    char *gbnf = NULL;
    char err[256];
    assert_int_equal(jsonschema_to_gbnf(big, &gbnf, err, sizeof err), JSONSCHEMA_ETOOBIG);
    assert_non_null(strstr(err, "1000"));
    json_decref(big);
    /* A grammar over 256 KiB: an enum of long strings. */
    json_t *e = json_array();
    char longs[512];
    memset(longs, 'x', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    for (int i = 0; i < 600; i++)
        json_array_append_new(e, json_string(longs));
    big = json_pack("{s:o}", "enum", e);
    assert_int_equal(jsonschema_to_gbnf(big, &gbnf, err, sizeof err), JSONSCHEMA_ETOOBIG);
    assert_non_null(strstr(err, "grammar over"));
    assert_null(gbnf);
    /* A tiny error buffer is truncated, still terminated. */
    char small[8];
    assert_int_equal(jsonschema_to_gbnf(big, &gbnf, small, sizeof small), JSONSCHEMA_ETOOBIG);
    assert_true(strlen(small) == sizeof small - 1);
    json_decref(big);
    assert_int_equal(jsonschema_to_gbnf(NULL, &gbnf, NULL, 0), JSONSCHEMA_EINVAL);
}

static void expect_mismatch(const char *schema_text, const char *value_text, const char *substr)
{
    json_t *schema = parse(schema_text);
    json_t *value = parse(value_text);
    char err[256];
    int rc = jsonschema_validate(schema, value, err, sizeof err);
    if (rc != JSONSCHEMA_EMISMATCH || !strstr(err, substr))
        fail_msg("%s vs %s: got %d '%s', want mismatch '%s'", schema_text, value_text, rc, err,
                 substr);
    json_decref(schema);
    json_decref(value);
}

static void expect_match(const char *schema_text, const char *value_text)
{
    json_t *schema = parse(schema_text);
    json_t *value = parse(value_text);
    char err[256];
    if (jsonschema_validate(schema, value, err, sizeof err) != JSONSCHEMA_OK)
        fail_msg("%s vs %s: %s", schema_text, value_text, err);
    json_decref(schema);
    json_decref(value);
}

static void test_validate(void **state)
{
    (void)state;
    const char *obj = "{\"type\":\"object\",\"properties\":{"
                      "\"n\":{\"type\":\"integer\"},"
                      "\"s\":{\"type\":\"string\",\"maxLength\":3},"
                      "\"a\":{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},"
                      "\"maxItems\":2}},"
                      "\"required\":[\"n\"],\"additionalProperties\":false}";
    expect_match(obj, "{\"n\":1}");
    expect_match(obj, "{\"n\":2.0,\"s\":\"\\u00e9t\\u00e9\",\"a\":[true]}");
    expect_mismatch(obj, "{\"s\":\"x\"}", "missing required property 'n'");
    expect_mismatch(obj, "{\"n\":1.5}", "wrong type (at $.n)");
    expect_mismatch(obj, "{\"n\":1,\"zz\":1}", "property 'zz' is not allowed");
    expect_mismatch(obj, "{\"n\":1,\"s\":\"abcd\"}", "(at $.s)");
    expect_mismatch(obj, "{\"n\":1,\"a\":[true,1]}", "(at $.a[1])");
    expect_mismatch(obj, "{\"n\":1,\"a\":[true,true,true]}", "3 items");
    expect_mismatch(obj, "[1]", "wrong type (at $)");
    expect_mismatch("{\"enum\":[\"a\",1]}", "\"b\"", "'enum'");
    expect_mismatch("{\"const\":{\"k\":1}}", "{\"k\":2}", "'const'");
    expect_mismatch("{\"type\":[\"string\",\"null\"]}", "0", "wrong type");
    expect_mismatch("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}", "true",
                    "matches no 'anyOf' branch");
    expect_match("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}", "3");
    expect_mismatch("{\"type\":\"string\",\"minLength\":2}", "\"x\"", "outside 2..");
    expect_match("{\"type\":\"string\",\"format\":\"date-time\"}", "\"2026-12-06T02:53:00Z\"");
    expect_match("{\"type\":\"string\",\"format\":\"time\"}", "\"23:59:59.123+01:00\"");
    expect_mismatch("{\"type\":\"string\",\"format\":\"date\"}", "\"2026-13-01\"", "not a date");
    expect_mismatch("{\"type\":\"string\",\"format\":\"uuid\"}", "\"123\"", "not a uuid");
    expect_match("{\"type\":\"string\",\"format\":\"uuid\"}",
                 "\"123e4567-e89b-12d3-a456-426614174000\"");
    expect_match("{\"type\":\"string\",\"format\":\"email\"}", "\"a.b@example.com\"");
    expect_mismatch("{\"type\":\"string\",\"format\":\"email\"}", "\"a@b\"", "not a email");
    expect_mismatch("{\"type\":\"string\",\"format\":\"ipv4\"}", "\"256.1.1.1\"", "not a ipv4");
    expect_match("{\"type\":\"string\",\"format\":\"ipv4\"}", "\"10.0.0.255\"");
    const char *tree = "{\"$defs\":{\"t\":{\"type\":\"object\",\"properties\":{\"k\":{"
                       "\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/t\"}}},"
                       "\"additionalProperties\":false}},\"$ref\":\"#/$defs/t\"}";
    expect_match(tree, "{\"k\":[{\"k\":[]},{}]}");
    expect_mismatch(tree, "{\"k\":[{\"k\":[1]}]}", "(at $.k[0].k[0])");

    /* A schema outside the subset is its error, not a mismatch. */
    json_t *s = parse("{\"type\":\"string\",\"pattern\":\"a\"}");
    json_t *v = parse("\"a\"");
    char err[256];
    assert_int_equal(jsonschema_validate(s, v, err, sizeof err), JSONSCHEMA_EUNSUPPORTED);
    json_decref(s);
    /* Left recursion ends with an error, not a stack overflow. */
    s = parse("{\"$defs\":{\"a\":{\"anyOf\":[{\"$ref\":\"#/$defs/a\"}]}},\"$ref\":\"#/$defs/a\"}");
    assert_int_not_equal(jsonschema_validate(s, v, err, sizeof err), JSONSCHEMA_OK);
    json_decref(s);
    json_decref(v);
}

/* Bad grammars are refused at the door; a dead end ends the generation. */
static void test_sampler_guards(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(model_grammar_check(g_model, "root ::= (", err, sizeof err), MODEL_EINVAL);
    assert_true(strlen(err) > 0);
    assert_int_equal(model_grammar_check(g_model, "start ::= \"a\"", err, sizeof err),
                     MODEL_EINVAL);
    assert_int_equal(model_grammar_check(g_model, "root ::= root \"a\" | \"a\"", err, sizeof err),
                     MODEL_EINVAL);
    model_sampling_t sp;
    model_sampling_default(&sp);
    sp.grammar = "root ::= [";
    model_sampler_t *s = (model_sampler_t *)&sp; /* untouched on failure */
    assert_int_equal(model_sampler_new(g_model, &sp, &s), MODEL_EINVAL);
    assert_ptr_equal(s, (model_sampler_t *)&sp);

    /* No token spells U+0000 (a piece holding NUL is never allowed): the
     * grammar is stuck at its first step. */
    bool dead = false;
    char *text = generate("root ::= \"\\x00\"", 1.0f, 3, true, 10, &dead);
    assert_non_null(text);
    assert_true(dead);
    assert_string_equal(text, "");
    free(text);
    text = generate("root ::= \"\\x00\"", 0.0f, 3, false, 10, &dead);
    assert_non_null(text);
    assert_true(dead);
    free(text);

    /* A complete grammar leaves only end-of-generation. */
    text = generate("root ::= \"hi\"", 1.0f, 5, false, 10, &dead);
    assert_non_null(text);
    assert_false(dead);
    assert_string_equal(text, "hi");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_sampler_guards),
        cmocka_unit_test(test_primitives),
        cmocka_unit_test(test_objects),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_enum_const),
        cmocka_unit_test(test_unions),
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_any),
        cmocka_unit_test(test_object_grammar),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
