/* test_engine_openai.c — kvchat-engine speaks OpenAI's shapes, over real
 * HTTP with the tiny model: what a client sends is honoured or refused
 * with a 400 that says why, never silently ignored.
 *
 * Models (GET /v1/models/{id}, 404 model_not_found), system_fingerprint,
 * streamed usage only when asked (stream_options.include_usage: a last
 * chunk with no choices), context_length_exceeded with both numbers,
 * max_tokens 0 and malformed turn orders refused, completions of a string,
 * strings, token ids and arrays of token ids (one choice each), echo,
 * suffix refused; CORS only for the origins --cors-origins allows.
 * Structured outputs: with the tiny model's random weights, answers under
 * response_format json_schema, llama.cpp's grammar and json_object still
 * parse and match their schema (greedy, sampled, streamed), which is what
 * makes these tests mean something; bad formats are 400s with the reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/jsonschema.h"
#include "support.h"

#define MODEL KVCHAT_TEST_MODELS_DIR "/tiny.gguf"

static proc_t g_eng;
static proc_t g_cors;
static char g_dir[256];

static int setup(void **state)
{
    (void)state;
    tmpdir_make(g_dir, sizeof g_dir);
    char kv[300], log[300], kv2[300], log2[300];
    snprintf(kv, sizeof kv, "%s/kv", g_dir);
    snprintf(log, sizeof log, "%s/engine.log", g_dir);
    snprintf(kv2, sizeof kv2, "%s/kv2", g_dir);
    snprintf(log2, sizeof log2, "%s/engine-cors.log", g_dir);
    const char *argv[] = { "--model", MODEL, "--threads", "2", "--ctx-size", "2048", "--parallel",
                           "2", "--cache-dir", kv, NULL };
    proc_start(&g_eng, KVCHAT_ENGINE_EXE, argv, log, 60);
    const char *argv2[] = { "--model", MODEL, "--threads", "1", "--ctx-size", "1024", "--parallel",
                            "1", "--cache-dir", kv2, "--cors-origins",
                            "http://app.example,https://b.example", NULL };
    proc_start(&g_cors, KVCHAT_ENGINE_EXE, argv2, log2, 60);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    proc_stop(&g_eng);
    proc_stop(&g_cors);
    tmpdir_remove(g_dir);
    return 0;
}

/* Another engine, on another test model (in dir, which the caller removes
 * after stopping it). */
static void start_other(proc_t *eng, char dir[256], const char *model_file)
{
    char model[400], kv[300], log[300];
    tmpdir_make(dir, 256);
    snprintf(model, sizeof model, "%s/%s", KVCHAT_TEST_MODELS_DIR, model_file);
    snprintf(kv, sizeof kv, "%s/kv", dir);
    snprintf(log, sizeof log, "%s/engine.log", dir);
    const char *argv[] = { "--model", model, "--threads", "1", "--ctx-size", "1024",
                           "--parallel", "1", "--cache-dir", kv, NULL };
    proc_start(eng, KVCHAT_ENGINE_EXE, argv, log, 60);
}

static void post(const char *path, const char *body, long want, resp_t *r)
{
    http(g_eng.port, "POST", path, body, r);
    if (r->status != want)
        fail_msg("POST %s %s -> HTTP %ld (wanted %ld): %s", path, body, r->status, want, r->body);
}

static void expect_400(const char *path, const char *body, const char *needle)
{
    resp_t r;
    post(path, body, 400, &r);
    if (!strstr(jstr(r.json, "error.message"), needle))
        fail_msg("%s: message \"%s\" does not say \"%s\"", body, jstr(r.json, "error.message"),
                 needle);
    resp_free(&r);
}

static void test_models(void **state)
{
    (void)state;
    resp_t r;
    http(g_eng.port, "GET", "/v1/models", NULL, &r);
    assert_int_equal(r.status, 200);
    char id[256];
    snprintf(id, sizeof id, "%s", jstr(r.json, "data.0.id"));
    resp_free(&r);
    char path[400];
    snprintf(path, sizeof path, "/v1/models/%s", id);
    http(g_eng.port, "GET", path, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "id"), id);
    assert_string_equal(jstr(r.json, "object"), "model");
    resp_free(&r);
    http(g_eng.port, "GET", "/v1/models/gpt-4o", NULL, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(jstr(r.json, "error.code"), "model_not_found");
    resp_free(&r);
}

/* The fingerprint names what decides answers: the same for every answer
 * of this engine, and in streamed chunks too. */
static void test_fingerprint_and_usage(void **state)
{
    (void)state;
    resp_t a, b;
    post("/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":3}", 200, &a);
    post("/v1/completions", "{\"prompt\":\"Hello\",\"max_tokens\":3}", 200, &b);
    const char *fa = jstr(a.json, "system_fingerprint"), *fb = jstr(b.json, "system_fingerprint");
    assert_string_equal(fa, fb);
    assert_true(strncmp(fa, "fp_", 3) == 0 && strlen(fa) > 10);
    assert_int_equal(jint(a.json, "usage.completion_tokens"), 3);
    resp_free(&b);

    /* streamed: usage only when asked, in a last chunk without choices */
    for (int asked = 0; asked < 2; asked++) {
        struct {
            int chunks, usage_chunks, usage_elsewhere, fp_ok;
            long long completion;
        } s = { 0 };
        char body[256];
        snprintf(body, sizeof body,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":4,"
                 "\"stream\":true%s}",
                 asked ? ",\"stream_options\":{\"include_usage\":true}" : "");
        resp_t raw;
        http(g_eng.port, "POST", "/v1/chat/completions", body, &raw);
        assert_int_equal(raw.status, 200);
        for (char *line = strtok(raw.body, "\n"); line; line = strtok(NULL, "\n")) {
            if (strncmp(line, "data: {", 7) != 0)
                continue;
            json_t *j = json_loads(line + 6, 0, NULL);
            assert_non_null(j);
            s.chunks++;
            const char *fp = json_string_value(json_object_get(j, "system_fingerprint"));
            s.fp_ok += fp && strcmp(fp, fa) == 0;
            json_t *u = json_object_get(j, "usage");
            if (u && !json_is_null(u)) {
                if (json_array_size(json_object_get(j, "choices")) == 0) {
                    s.usage_chunks++;
                    s.completion = json_integer_value(json_object_get(u, "completion_tokens"));
                    /* llama-server's timings ride along */
                    assert_int_equal(jint(j, "timings.predicted_n"), s.completion);
                } else {
                    s.usage_elsewhere++;
                }
            }
            json_decref(j);
        }
        resp_free(&raw);
        assert_int_equal(s.fp_ok, s.chunks);
        assert_int_equal(s.usage_elsewhere, 0);
        assert_int_equal(s.usage_chunks, asked ? 1 : 0);
        if (asked)
            assert_int_equal(s.completion, 4);
    }
    resp_free(&a);
}

static void test_refusals(void **state)
{
    (void)state;
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":0}",
               "max_tokens");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\","
               "\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}",
               "two assistant messages");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"echo\":true}", "echo");
    expect_400("/v1/completions", "{\"prompt\":\"def f(\",\"suffix\":\"return x\"}", "suffix");
    /* what this server cannot honour is refused, not ignored */
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"response_format\":"
               "{\"type\":\"sound\"}}", "response_format");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"response_format\":"
               "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":\"str\"}}}",
               "schema");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"response_format\":"
               "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":"
               "{\"type\":\"string\",\"pattern\":\"a+\"}}}}", "pattern");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"grammar\":"
               "\"root ::= undefined-rule\"}", "grammar");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"grammar\":"
               "\"root ::= \\\"a\\\"\",\"response_format\":{\"type\":\"json_object\"}}", "one of");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"modalities\":"
               "[\"text\",\"audio\"]}", "modalities");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"functions\":"
               "[{\"name\":\"f\"}]}", "functions");
    /* a library's defaults are no request: null, false, empty */
    resp_t ok;
    post("/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":1,"
         "\"logit_bias\":{},\"logprobs\":false,\"response_format\":{\"type\":"
         "\"text\"},\"modalities\":[\"text\"],\"user\":\"u1\",\"store\":false}", 200, &ok);
    resp_free(&ok);
    expect_400("/v1/completions", "{\"prompt\":[\"a\",\"b\"],\"stream\":true}", "several prompts");
    expect_400("/v1/completions", "{\"prompt\":[1,2,999999999]}", "token ids");
    expect_400("/v1/completions", "{\"prompt\":[[1,2],7]}", "prompt");
    expect_400("/v1/completions", "{\"prompt\":{}}", "prompt");
    expect_400("/v1/completions", "{\"prompt\":\"\"}", "empty");

    /* too long: OpenAI's code, and both numbers */
    size_t cap = 40000;
    char *text = malloc(cap);
    size_t len = 0;
    for (int i = 0; i < 3000; i++)
        len += (size_t)snprintf(text + len, cap - len, "word%d ", i % 10);
    char *body = json_take_dump(json_pack("{s:[{s:s, s:s}]}", "messages", "role", "user",
                                          "content", text));
    resp_t r;
    post("/v1/chat/completions", body, 400, &r);
    assert_string_equal(jstr(r.json, "error.code"), "context_length_exceeded");
    const char *msg = jstr(r.json, "error.message");
    long ctx = 0, n = 0;
    const char *at = strstr(msg, "context length is ");
    assert_non_null(at);
    ctx = strtol(at + 18, NULL, 10);
    at = strstr(msg, "prompt has ");
    assert_non_null(at);
    n = strtol(at + 11, NULL, 10);
    assert_int_equal(ctx, 1024);   /* 2048 cells, 2 slots */
    assert_true(n > 3000);         /* the whole prompt, counted */
    assert_int_equal(jint(r.json, "error.n_ctx"), ctx);   /* llama-server's fields too */
    assert_int_equal(jint(r.json, "error.n_prompt_tokens"), n);
    resp_free(&r);
    free(body);
    body = json_take_dump(json_pack("{s:s}", "prompt", text));
    post("/v1/completions", body, 400, &r);
    assert_string_equal(jstr(r.json, "error.code"), "context_length_exceeded");
    resp_free(&r);
    free(body);
    free(text);
}

static void test_completion_prompts(void **state)
{
    (void)state;
    resp_t r, one;
    /* several strings: one choice each, in order, each the answer its
     * prompt gets alone (greedy) */
    post("/v1/completions",
         "{\"prompt\":[\"The cat\",\"A dog\"],\"max_tokens\":4,\"temperature\":0}", 200, &r);
    assert_int_equal(json_array_size(jpath(r.json, "choices")), 2);
    assert_int_equal(jint(r.json, "choices.0.index"), 0);
    assert_int_equal(jint(r.json, "choices.1.index"), 1);
    assert_int_equal(jint(r.json, "usage.completion_tokens"), 8);
    post("/v1/completions", "{\"prompt\":\"A dog\",\"max_tokens\":4,\"temperature\":0}", 200, &one);
    assert_string_equal(jstr(r.json, "choices.1.text"), jstr(one.json, "choices.0.text"));
    resp_free(&one);
    resp_free(&r);

    /* token ids, and arrays of them: the same as the text they spell */
    resp_t tk;
    post("/tokenize", "{\"content\":\"A dog\"}", 200, &tk);
    char *ids = json_dumps(jpath(tk.json, "tokens"), JSON_COMPACT);
    resp_free(&tk);
    char body[512];
    snprintf(body, sizeof body, "{\"prompt\":%s,\"max_tokens\":4,\"temperature\":0}", ids);
    post("/v1/completions", body, 200, &r);
    post("/v1/completions", "{\"prompt\":\"A dog\",\"max_tokens\":4,\"temperature\":0}", 200, &one);
    assert_string_equal(jstr(r.json, "choices.0.text"), jstr(one.json, "choices.0.text"));
    resp_free(&r);
    snprintf(body, sizeof body, "{\"prompt\":[%s,%s],\"max_tokens\":4,\"temperature\":0}", ids, ids);
    post("/v1/completions", body, 200, &r);
    assert_int_equal(json_array_size(jpath(r.json, "choices")), 2);
    assert_string_equal(jstr(r.json, "choices.1.text"), jstr(one.json, "choices.0.text"));
    resp_free(&r);

    /* echo: the prompt's text, then the answer */
    post("/v1/completions",
         "{\"prompt\":\"A dog\",\"max_tokens\":4,\"temperature\":0,\"echo\":true}", 200, &r);
    char want[512];
    snprintf(want, sizeof want, "A dog%s", jstr(one.json, "choices.0.text"));
    assert_string_equal(jstr(r.json, "choices.0.text"), want);
    resp_free(&r);
    resp_free(&one);
    free(ids);
}

/* A preflight and the headers of the answer, from `origin`. */
static long preflight(int port, const char *origin, char *allow, size_t cap)
{
    CURL *c = curl_easy_init();
    char url[128], oh[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", port);
    snprintf(oh, sizeof oh, "Origin: %s", origin);
    struct curl_slist *h = curl_slist_append(NULL, oh);
    h = curl_slist_append(h, "Access-Control-Request-Method: POST");
    h = curl_slist_append(h, "Access-Control-Request-Headers: content-type, authorization");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "OPTIONS");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    struct curl_header *hv = NULL;
    allow[0] = '\0';
    if (curl_easy_header(c, "Access-Control-Allow-Origin", 0, CURLH_HEADER, -1, &hv) ==
        CURLHE_OK)
        snprintf(allow, cap, "%s", hv->value);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static void test_cors(void **state)
{
    (void)state;
    char allow[256];
    assert_int_equal(preflight(g_cors.port, "http://app.example", allow, sizeof allow), 204);
    assert_string_equal(allow, "http://app.example");
    assert_int_equal(preflight(g_cors.port, "https://b.example", allow, sizeof allow), 204);
    assert_string_equal(allow, "https://b.example");
    /* an origin not listed, and an engine without --cors-origins: no CORS */
    preflight(g_cors.port, "http://evil.example", allow, sizeof allow);
    assert_string_equal(allow, "");
    preflight(g_eng.port, "http://app.example", allow, sizeof allow);
    assert_string_equal(allow, "");
}

static const char *const k_schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"city\":{\"type\":\"string\",\"maxLength\":12},"
    "\"temp\":{\"type\":\"integer\"},"
    "\"unit\":{\"enum\":[\"C\",\"F\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"maxItems\":3},"
    "\"where\":{\"type\":\"object\",\"properties\":{\"lat\":{\"type\":\"number\"},"
    "\"note\":{\"type\":[\"string\",\"null\"],\"maxLength\":8}},"
    "\"required\":[\"lat\",\"note\"],\"additionalProperties\":false}},"
    "\"required\":[\"city\",\"temp\",\"unit\",\"tags\",\"where\"],"
    "\"additionalProperties\":false}";

/* The answer's text parses and matches the schema. */
static void assert_matches(const char *text, const json_t *schema)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    if (!v)
        fail_msg("not JSON (%s): %s", je.text, text);
    char why[256];
    if (jsonschema_validate(schema, v, why, sizeof why) != JSONSCHEMA_OK)
        fail_msg("does not match the schema (%s): %s", why, text);
    json_decref(v);
}

static void test_structured_outputs(void **state)
{
    (void)state;
    json_t *schema = json_loads(k_schema, 0, NULL);
    assert_non_null(schema);
    /* greedy, and sampled with several seeds */
    for (int k = 0; k < 4; k++) {
        char body[2048];
        snprintf(body, sizeof body,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"The weather, as JSON.\"}],"
                 "\"max_tokens\":400,\"temperature\":%s,\"seed\":%d,\"response_format\":"
                 "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"weather\",\"strict\":"
                 "true,\"schema\":%s}}}",
                 k == 0 ? "0" : "0.9", k, k_schema);
        resp_t r;
        post("/v1/chat/completions", body, 200, &r);
        assert_string_equal(jstr(r.json, "choices.0.finish_reason"), "stop");
        assert_matches(jstr(r.json, "choices.0.message.content"), schema);
        resp_free(&r);
    }
    /* streamed: the deltas put together */
    char body[2048];
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Again.\"}],\"max_tokens\":400,"
             "\"temperature\":0.7,\"seed\":11,\"stream\":true,\"json_schema\":%s}", k_schema);
    resp_t raw;
    post("/v1/chat/completions", body, 200, &raw);
    char text[8192] = "";
    for (char *line = strtok(raw.body, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "data: {", 7) != 0)
            continue;
        json_t *j = json_loads(line + 6, 0, NULL);
        const char *c = json_string_value(jpath(j, "choices.0.delta.content"));
        if (c)
            strncat(text, c, sizeof text - strlen(text) - 1);
        json_decref(j);
    }
    resp_free(&raw);
    assert_matches(text, schema);
    json_decref(schema);

    /* llama.cpp's own grammar field */
    resp_t r;
    post("/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"Yes or no?\"}],\"max_tokens\":8,"
         "\"temperature\":0.9,\"seed\":5,\"grammar\":\"root ::= \\\"yes\\\" | \\\"no\\\"\"}",
         200, &r);
    const char *yn = jstr(r.json, "choices.0.message.content");
    assert_true(strcmp(yn, "yes") == 0 || strcmp(yn, "no") == 0);
    assert_string_equal(jstr(r.json, "choices.0.finish_reason"), "stop");
    resp_free(&r);

    /* json_object: an object, whenever the answer ends within its limit */
    int objects = 0;
    for (int seed = 0; seed < 4; seed++) {
        char b[512];
        snprintf(b, sizeof b,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"JSON please\"}],"
                 "\"max_tokens\":300,\"temperature\":0.9,\"seed\":%d,\"response_format\":"
                 "{\"type\":\"json_object\"}}", seed);
        post("/v1/chat/completions", b, 200, &r);
        const char *c = jstr(r.json, "choices.0.message.content");
        assert_true(c[0] == '{');
        if (strcmp(jstr(r.json, "choices.0.finish_reason"), "stop") == 0) {
            json_t *v = json_loads(c, 0, NULL);
            if (!json_is_object(v))
                fail_msg("json_object answer is not an object: %s", c);
            json_decref(v);
            objects++;
        }
        resp_free(&r);
    }
    print_message("json_object: %d of 4 sampled answers ended within 300 tokens\n", objects);

    /* a schema does not change what is cached: the prompt's prefix is the
     * same with and without it */
    post("/v1/chat/completions",
         "{\"messages\":[{\"role\":\"system\",\"content\":\"You answer in JSON about the "
         "harbour timetable of the island ferry, every day of the week.\"},{\"role\":\"user\","
         "\"content\":\"When?\"}],\"max_tokens\":2}", 200, &r);
    resp_free(&r);
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"system\",\"content\":\"You answer in JSON about the "
             "harbour timetable of the island ferry, every day of the week.\"},{\"role\":\"user\","
             "\"content\":\"Where?\"}],\"max_tokens\":400,\"json_schema\":%s}", k_schema);
    post("/v1/chat/completions", body, 200, &r);
    assert_true(jint(r.json, "usage.prompt_tokens_details.cached_tokens") > 10);
    resp_free(&r);
}

/* logprobs: one entry per generated token, the chosen token the most
 * likely one when greedy, the alternatives in order, probabilities that
 * add up to at most 1; streamed, the entries of all chunks together; the
 * completions API's older shape. */
static void test_logprobs(void **state)
{
    (void)state;
    resp_t r;
    post("/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":5,"
         "\"temperature\":0,\"logprobs\":true,\"top_logprobs\":3}", 200, &r);
    json_t *content = jpath(r.json, "choices.0.logprobs.content");
    assert_int_equal(json_array_size(content), jint(r.json, "usage.completion_tokens"));
    char text[1024] = "";
    size_t i;
    json_t *e;
    json_array_foreach(content, i, e) {
        double lp = json_number_value(json_object_get(e, "logprob"));
        json_t *top = json_object_get(e, "top_logprobs");
        assert_int_equal(json_array_size(top), 3);
        assert_string_equal(json_string_value(json_object_get(e, "token")),
                            json_string_value(json_object_get(json_array_get(top, 0), "token")));
        double sum = 0, prev = 0;
        size_t k;
        json_t *alt;
        json_array_foreach(top, k, alt) {
            double a = json_number_value(json_object_get(alt, "logprob"));
            assert_true(a <= 0 && (k == 0 || a <= prev));
            prev = a;
            sum += exp(a);
        }
        assert_true(lp <= 0 && sum <= 1.0001);
        strncat(text, json_string_value(json_object_get(e, "token")), sizeof text - strlen(text) - 1);
    }
    assert_string_equal(text, jstr(r.json, "choices.0.message.content"));
    resp_free(&r);

    /* streamed: the entries of every chunk */
    post("/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":5,"
         "\"temperature\":0,\"logprobs\":true,\"stream\":true}", 200, &r);
    size_t entries = 0;
    for (char *line = strtok(r.body, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "data: {", 7) != 0)
            continue;
        json_t *j = json_loads(line + 6, 0, NULL);
        entries += json_array_size(jpath(j, "choices.0.logprobs.content"));
        json_decref(j);
    }
    assert_int_equal(entries, 5);
    resp_free(&r);

    /* completions: tokens, token_logprobs, top_logprobs, text_offset */
    post("/v1/completions", "{\"prompt\":\"Hello\",\"max_tokens\":4,\"temperature\":0,\"logprobs\":2}",
         200, &r);
    json_t *lp = jpath(r.json, "choices.0.logprobs");
    assert_int_equal(json_array_size(json_object_get(lp, "tokens")), 4);
    assert_int_equal(json_array_size(json_object_get(lp, "token_logprobs")), 4);
    assert_int_equal(json_object_size(json_array_get(json_object_get(lp, "top_logprobs"), 0)), 2);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(lp, "text_offset"), 0)), 0);
    resp_free(&r);

    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"top_logprobs\":2}",
               "needs 'logprobs'");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logprobs\":true,"
               "\"top_logprobs\":21}", "top_logprobs");
    expect_400("/v1/completions", "{\"prompt\":\"hi\",\"logprobs\":-1}", "logprobs");
}

/* n choices: chat and completions (several prompts too), indexed in order,
 * usage counting each prompt once and every choice's tokens; the later
 * choices of a prompt restore it from the cache. */
static void test_choices(void **state)
{
    (void)state;
    resp_t one, r;
    post("/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"Three choices\"}],\"max_tokens\":3,"
         "\"seed\":7}", 200, &one);
    post("/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"Three choices\"}],\"max_tokens\":3,"
         "\"seed\":7,\"n\":3,\"logprobs\":true}", 200, &r);
    json_t *choices = jpath(r.json, "choices");
    assert_int_equal(json_array_size(choices), 3);
    long completion = 0;
    for (size_t k = 0; k < 3; k++) {
        json_t *c = json_array_get(choices, k);
        assert_int_equal(json_integer_value(json_object_get(c, "index")), (long long)k);
        assert_string_equal(jstr(c, "message.role"), "assistant");
        size_t n_lp = json_array_size(jpath(c, "logprobs.content"));
        assert_true(n_lp <= 3);   /* an end-of-generation token may come first */
        completion += (long)n_lp;
    }
    assert_int_equal(jint(r.json, "usage.prompt_tokens"), jint(one.json, "usage.prompt_tokens"));
    assert_int_equal(jint(r.json, "usage.completion_tokens"), completion);
    /* the prompt was cached by the first request */
    assert_int_equal(jint(r.json, "usage.prompt_tokens_details.cached_tokens"),
                     jint(r.json, "usage.prompt_tokens") - 1);
    resp_free(&one);
    resp_free(&r);

    post("/v1/completions", "{\"prompt\":[\"One\",\"Two\"],\"max_tokens\":2,\"n\":2}", 200, &r);
    choices = jpath(r.json, "choices");
    assert_int_equal(json_array_size(choices), 4);
    for (size_t k = 0; k < 4; k++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(choices, k), "index")),
                         (long long)k);
    resp_free(&r);

    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2,\"stream\":true}",
               "stream");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":17}", "'n'");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":0}", "'n'");
    expect_400("/v1/completions",
               "{\"prompt\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"],\"n\":2}",
               "choices");
}

static long prompt_tokens_of(const char *body)
{
    resp_t r;
    post("/v1/chat/completions", body, 200, &r);
    long n = jint(r.json, "usage.prompt_tokens");
    resp_free(&r);
    return n;
}

/* A final assistant message is continued (llama-server's default, vLLM's
 * continue_final_message): the prompt ends with its text, no closer and no
 * new turn; add_generation_prompt: true (or continue_final_message: false)
 * starts a new turn after it instead. */
static void test_continue_final_message(void **state)
{
    (void)state;
    const char *msgs_user = "[{\"role\":\"user\",\"content\":\"Hi\"}]";
    const char *msgs_pre = "[{\"role\":\"user\",\"content\":\"Hi\"},"
                           "{\"role\":\"assistant\",\"content\":\"The answer is\"}]";
    char body[512];
    snprintf(body, sizeof body, "{\"messages\":%s,\"max_tokens\":1}", msgs_user);
    long base = prompt_tokens_of(body);   /* ends with the assistant's opener */
    resp_t r;
    post("/tokenize", "{\"content\":\"The answer is\"}", 200, &r);
    long text = (long)json_array_size(jpath(r.json, "tokens"));
    resp_free(&r);
    snprintf(body, sizeof body, "{\"messages\":%s,\"max_tokens\":1}", msgs_pre);
    assert_int_equal(prompt_tokens_of(body), base + text);
    snprintf(body, sizeof body,
             "{\"messages\":%s,\"max_tokens\":1,\"continue_final_message\":true,"
             "\"add_generation_prompt\":false}", msgs_pre);
    assert_int_equal(prompt_tokens_of(body), base + text);
    snprintf(body, sizeof body, "{\"messages\":%s,\"max_tokens\":1,\"add_generation_prompt\":true}",
             msgs_pre);
    long new_turn = prompt_tokens_of(body);
    assert_true(new_turn > base + text + 2);   /* the closer and another opener */
    snprintf(body, sizeof body, "{\"messages\":%s,\"max_tokens\":1,\"continue_final_message\":false}",
             msgs_pre);
    assert_int_equal(prompt_tokens_of(body), new_turn);
    /* an empty final assistant message: the reply starts from nothing */
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\","
             "\"content\":\"\"}],\"max_tokens\":1}");
    assert_int_equal(prompt_tokens_of(body), base);
    snprintf(body, sizeof body,
             "{\"messages\":%s,\"continue_final_message\":true,\"add_generation_prompt\":true}",
             msgs_pre);
    expect_400("/v1/chat/completions", body, "cannot both be true");
    snprintf(body, sizeof body, "{\"messages\":%s,\"continue_final_message\":true}", msgs_user);
    expect_400("/v1/chat/completions", body, "final assistant message");
    snprintf(body, sizeof body, "{\"messages\":%s,\"add_generation_prompt\":false}", msgs_user);
    expect_400("/v1/chat/completions", body, "final assistant message");
}

/* return_progress (llama-server's): streamed chunks without choices
 * carrying prompt_progress, the first with what the cache gave, processed
 * rising to the prompt's total; a repeated prompt starts from the cache. */
static void test_return_progress(void **state)
{
    (void)state;
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"Progress, progress, "
                       "progress of a prompt long enough for several steps of a decode, "
                       "more than one chunk of it anyway, so keep on writing words here "
                       "and there until the prompt is long enough, which it is now\"}],"
                       "\"max_tokens\":2,\"stream\":true,\"return_progress\":true,"
                       "\"stream_options\":{\"include_usage\":true},\"cache_salt\":\"rp\"}";
    for (int round = 0; round < 2; round++) {
        resp_t r;
        post("/v1/chat/completions", body, 200, &r);
        long first_cache = -1, last = -1, total = -1, reports = 0, prompt_tokens = -1;
        for (char *line = strtok(r.body, "\n"); line; line = strtok(NULL, "\n")) {
            if (strncmp(line, "data: {", 7) != 0)
                continue;
            json_t *j = json_loads(line + 6, 0, NULL);
            assert_non_null(j);
            json_t *pp = json_object_get(j, "prompt_progress");
            if (pp) {
                assert_int_equal(json_array_size(json_object_get(j, "choices")), 0);
                long cache = jint(pp, "cache"), done = jint(pp, "processed");
                if (first_cache < 0) {
                    first_cache = cache;
                    assert_int_equal(done, cache);
                } else {
                    assert_int_equal(cache, first_cache);
                    assert_true(done > last);
                }
                total = jint(pp, "total");
                last = done;
                reports++;
            }
            if (json_is_object(json_object_get(j, "usage")))
                prompt_tokens = jint(j, "usage.prompt_tokens");
            json_decref(j);
        }
        assert_true(reports >= 2);
        assert_int_equal(last, total);
        assert_int_equal(total, prompt_tokens);
        if (round == 0)
            assert_int_equal(first_cache, 0);
        else
            assert_int_equal(first_cache, total - 1);   /* all but the last token */
        resp_free(&r);
    }
}

/* The id of a text that is one token (POST /tokenize). */
static long one_token(const char *text)
{
    resp_t r;
    char *body = json_take_dump(json_pack("{s:s}", "content", text));
    post("/tokenize", body, 200, &r);
    assert_int_equal(json_array_size(jpath(r.json, "tokens")), 1);
    long id = (long)json_integer_value(json_array_get(jpath(r.json, "tokens"), 0));
    resp_free(&r);
    free(body);
    return id;
}

/* Generate with a bias (a JSON value) and compare the text with want. */
static void expect_biased(const char *path, const char *bias_json, const char *extra,
                          const char *want)
{
    char body[1024];
    const bool chat = strstr(path, "chat") != NULL;
    snprintf(body, sizeof body,
             "{%s,\"max_tokens\":4,\"temperature\":0.7,\"seed\":3,\"logit_bias\":%s%s}",
             chat ? "\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]"
                  : "\"prompt\":\"Hello\"",
             bias_json, extra);
    resp_t r;
    post(path, body, 200, &r);
    const char *text = jstr(r.json, chat ? "choices.0.message.content" : "choices.0.text");
    /* only what the grammar of a's and b's allows (which may end early) */
    const bool any_ab = !want;
    if (any_ab)
        want = text[0] && strspn(text, "ab") == strlen(text) ? text : "a's and b's";
    if (strcmp(text, want) != 0)
        fail_msg("%s: \"%s\", wanted \"%s\"", body, text, want);
    if (!any_ab)
        assert_int_equal(jint(r.json, "usage.completion_tokens"), 4);
    resp_free(&r);
}

/* logit_bias, OpenAI's map and llama.cpp's forms: +100 makes a token the
 * only choice (even when sampling), false bans one, and under a grammar the
 * bias still counts among the tokens the grammar allows. */
static void test_logit_bias(void **state)
{
    (void)state;
    long b = one_token("b"), x = one_token("X");
    one_token("hello");   /* one token: the text key biases just it */
    char bias[256];
    snprintf(bias, sizeof bias, "{\"%ld\":100}", b);
    expect_biased("/v1/completions", bias, "", "bbbb");
    expect_biased("/v1/chat/completions", bias, ",\"stream\":false", "bbbb");
    /* banned, though the other bias makes it the likeliest */
    snprintf(bias, sizeof bias, "[[%ld,false],[%ld,100],[%ld,99]]", b, b, x);
    expect_biased("/v1/chat/completions", bias, "", "XXXX");
    expect_biased("/v1/chat/completions", "{\"hello\":100}", "", "hellohellohellohello");
    /* the grammar allows a and b: the bias picks b among them */
    snprintf(bias, sizeof bias, "{\"%ld\":100}", b);
    expect_biased("/v1/chat/completions", bias, ",\"grammar\":\"root ::= (\\\"a\\\" | \\\"b\\\")+\"",
                  "bbbb");
    /* a bias never overrides the grammar */
    snprintf(bias, sizeof bias, "{\"%ld\":100}", x);
    expect_biased("/v1/chat/completions", bias, ",\"grammar\":\"root ::= (\\\"a\\\" | \\\"b\\\")+\"",
                  NULL);
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logit_bias\":"
               "{\"999999999\":1}}", "out of range");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logit_bias\":"
               "{\"99999999999999999999999\":1}}", "out of range");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logit_bias\":"
               "{\"65\":500}}", "-100 to 100");
    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logit_bias\":"
               "[[65]]}", "logit_bias entries");
    expect_400("/v1/completions", "{\"prompt\":\"hi\",\"logit_bias\":\"b\"}", "logit_bias");
}

static const char *const k_tools =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":"
    "\"The weather of a city\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"city\":{\"type\":\"string\",\"maxLength\":10},\"unit\":{\"enum\":[\"C\",\"F\"]}},"
    "\"required\":[\"city\",\"unit\"],\"additionalProperties\":false}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{"
    "\"type\":\"object\",\"properties\":{\"tz\":{\"type\":\"string\",\"maxLength\":6}},"
    "\"required\":[\"tz\"],\"additionalProperties\":false}}}]";

/* Each call is to a listed tool, with an id, and arguments that parse and
 * match that tool's parameters. Returns how many calls there were. */
static size_t assert_calls(json_t *calls, const char *only)
{
    json_t *tools = json_loads(k_tools, 0, NULL);
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        const char *id = json_string_value(json_object_get(c, "id"));
        assert_true(id && strncmp(id, "call_", 5) == 0);
        assert_string_equal(json_string_value(json_object_get(c, "type")), "function");
        const char *name = json_string_value(jpath(c, "function.name"));
        const char *args = json_string_value(jpath(c, "function.arguments"));
        assert_non_null(name);
        assert_non_null(args);
        if (only)
            assert_string_equal(name, only);
        const json_t *schema = NULL;
        size_t k;
        json_t *t;
        json_array_foreach(tools, k, t)
            if (strcmp(json_string_value(jpath(t, "function.name")), name) == 0)
                schema = jpath(t, "function.parameters");
        if (!schema)
            fail_msg("a call to an unknown tool: %s", name);
        json_t *v = json_loads(args, 0, NULL);
        char why[256];
        if (!v || jsonschema_validate(schema, v, why, sizeof why) != JSONSCHEMA_OK)
            fail_msg("arguments of %s do not match its parameters: %s", name, args);
        json_decref(v);
    }
    json_decref(tools);
    return json_array_size(calls);
}

/* Tool calls with the tiny model (a ChatML template: Qwen2.5's syntax): a
 * named tool_choice gives a call to that function with JSON arguments that
 * match its parameters, "required" a call to one of the tools, streamed as
 * tool_calls deltas; the conversation goes on with the results; "none"
 * gives text; bad tools are 400s. */
static void test_tool_calls(void **state)
{
    (void)state;
    char body[4096];
    resp_t r;
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"}],"
             "\"max_tokens\":200,\"tools\":%s,\"parallel_tool_calls\":false,\"tool_choice\":"
             "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}}", k_tools);
    post("/v1/chat/completions", body, 200, &r);
    assert_string_equal(jstr(r.json, "choices.0.finish_reason"), "tool_calls");
    json_t *calls = jpath(r.json, "choices.0.message.tool_calls");
    assert_int_equal(assert_calls(calls, "get_weather"), 1);
    char call_id[64], args[512];
    snprintf(call_id, sizeof call_id, "%s", json_string_value(jpath(calls, "0.id")));
    snprintf(args, sizeof args, "%s", json_string_value(jpath(calls, "0.function.arguments")));
    resp_free(&r);

    /* required, sampled, streamed: tool_calls deltas with their index */
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Time in Tokyo?\"}],"
             "\"max_tokens\":300,\"temperature\":0.8,\"seed\":4,\"stream\":true,\"tools\":%s,"
             "\"parallel_tool_calls\":false,\"tool_choice\":\"required\"}", k_tools);
    post("/v1/chat/completions", body, 200, &r);
    json_t *streamed = json_array();
    const char *finish = NULL;
    char fin[32] = "";
    for (char *line = strtok(r.body, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "data: {", 7) != 0)
            continue;
        json_t *j = json_loads(line + 6, 0, NULL);
        size_t i;
        json_t *c;
        json_array_foreach(jpath(j, "choices.0.delta.tool_calls"), i, c) {
            assert_int_equal(json_integer_value(json_object_get(c, "index")),
                             (json_int_t)json_array_size(streamed));
            json_array_append(streamed, c);
        }
        finish = json_string_value(jpath(j, "choices.0.finish_reason"));
        if (finish)
            snprintf(fin, sizeof fin, "%s", finish);
        json_decref(j);
    }
    assert_string_equal(fin, "tool_calls");
    assert_int_equal(assert_calls(streamed, NULL), 1);
    json_decref(streamed);
    resp_free(&r);

    /* the call and its result come back: the conversation goes on */
    json_t *m = json_pack("[{s:s, s:s}, {s:s, s:n, s:[{s:s, s:s, s:{s:s, s:s}}]}, {s:s, s:s, s:s}]",
                          "role", "user", "content", "Weather in Paris?", "role", "assistant",
                          "content", "tool_calls", "id", call_id, "type", "function", "function",
                          "name", "get_weather", "arguments", args, "role", "tool",
                          "tool_call_id", call_id, "content", "21 C, sunny");
    json_t *tools = json_loads(k_tools, 0, NULL);
    char *b = json_take_dump(json_pack("{s:o, s:o, s:i, s:s}", "messages", m, "tools", tools,
                                       "max_tokens", 4, "tool_choice", "none"));
    post("/v1/chat/completions", b, 200, &r);
    free(b);
    assert_null(jpath(r.json, "choices.0.message.tool_calls"));
    assert_true(json_is_string(jpath(r.json, "choices.0.message.content")));
    assert_string_not_equal(jstr(r.json, "choices.0.finish_reason"), "tool_calls");
    resp_free(&r);

    expect_400("/v1/chat/completions",
               "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
               "\"function\",\"function\":{\"name\":\"bad name\"}}]}", "name");

    /* a model whose template has no tool calling (Llama 2's): a 400 that
     * says so, never text instead of a call */
    char dir[256];
    proc_t l2;
    start_other(&l2, dir, "tiny-llama-spm.gguf");
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":%s}", k_tools);
    http(l2.port, "POST", "/v1/chat/completions", body, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(jstr(r.json, "error.message"), "no tool calling"));
    resp_free(&r);
    proc_stop(&l2);
    tmpdir_remove(dir);
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":%s,"
             "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"nope\"}}}", k_tools);
    expect_400("/v1/chat/completions", body, "nope");
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":%s,"
             "\"tool_choice\":\"required\",\"response_format\":{\"type\":\"json_object\"}}",
             k_tools);
    expect_400("/v1/chat/completions", body, "tool_choice");
}

/* A generated control token reaches the tool-call parser (Mistral's
 * "[TOOL_CALLS]" and Llama 3.1's "<|python_tag|>" are control tokens, which
 * plain text leaves out). Shown with a Llama 3 vocabulary and one of its
 * reserved control tokens, made the only choice by logit_bias. (That the
 * markers in a prompt become their token: unit.prompt, test_markers.) */
static void test_control_tokens(void **state)
{
    (void)state;
    char dir[256], body[4096];
    proc_t l3;
    start_other(&l3, dir, "tiny-llama-bpe.gguf");
    const char *ctl = "<|reserved_special_token_5|>";
    resp_t r;
    snprintf(body, sizeof body, "{\"content\":\"%s\"}", ctl);
    http(l3.port, "POST", "/tokenize", body, &r);
    assert_int_equal(json_array_size(jpath(r.json, "tokens")), 1);
    long id = (long)json_integer_value(json_array_get(jpath(r.json, "tokens"), 0));
    resp_free(&r);
    for (int tools = 0; tools < 2; tools++) {
        snprintf(body, sizeof body,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1,"
                 "\"logit_bias\":{\"%ld\":100}%s%s}",
                 id, tools ? ",\"tools\":" : "", tools ? k_tools : "");
        http(l3.port, "POST", "/v1/chat/completions", body, &r);
        assert_int_equal(r.status, 200);
        /* with tools the parser sees it (no call in it: it stays content);
         * without, a control token is no text */
        assert_string_equal(jstr(r.json, "choices.0.message.content"), tools ? ctl : "");
        resp_free(&r);
    }
    proc_stop(&l3);
    tmpdir_remove(dir);
}

/* Tools described enough that the block a template shows is a few hundred
 * tokens, as an application's tool set is. */
static const char *const k_tools_doc =
    "[{\"type\":\"function\",\"function\":{\"name\":\"search_timetable\",\"description\":"
    "\"Search the ferry timetable for departures between two harbours on a given day\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"from\":{\"type\":\"string\",\"description\":\"Harbour of departure, as printed on the "
    "timetable\"},\"to\":{\"type\":\"string\",\"description\":\"Harbour of arrival\"},"
    "\"date\":{\"type\":\"string\",\"format\":\"date\",\"description\":\"Day of travel\"},"
    "\"after\":{\"type\":\"string\",\"format\":\"time\",\"description\":\"Earliest departure "
    "time, local time of the harbour\"}},\"required\":[\"from\",\"to\",\"date\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"book_ticket\",\"description\":"
    "\"Book seats on one departure; returns a booking reference or the reason it failed\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"departure_id\":{\"type\":\"string\",\"description\":\"Id of a departure found by "
    "search_timetable\"},\"passengers\":{\"type\":\"integer\",\"description\":\"Number of "
    "passengers, children included\"},\"vehicle\":{\"enum\":[\"none\",\"bicycle\",\"car\","
    "\"van\"],\"description\":\"Vehicle taken on board, if any\"},\"cabin\":{\"type\":"
    "\"boolean\",\"description\":\"Whether a cabin is wanted on night crossings\"}},"
    "\"required\":[\"departure_id\",\"passengers\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"cancel_booking\",\"description\":"
    "\"Cancel a booking and refund it according to the fare's conditions\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"reference\":{\"type\":\"string\",\"description\":\"Booking reference, six letters\"},"
    "\"reason\":{\"type\":\"string\",\"description\":\"Why the passenger cancels, in their "
    "words\"}},\"required\":[\"reference\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"harbour_weather\",\"description\":"
    "\"Wind, waves and visibility forecast for a harbour, which decides whether crossings "
    "run\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"harbour\":{\"type\":\"string\",\"description\":\"Name of the harbour\"},"
    "\"hours\":{\"type\":\"integer\",\"description\":\"How many hours ahead to forecast\"},"
    "\"unit\":{\"enum\":[\"knots\",\"beaufort\",\"m/s\"],\"description\":\"Unit of the wind "
    "speed\"}},\"required\":[\"harbour\"]}}}]";

/* One chat on the engine at port (a new conversation: the system message,
 * then question), with tools (a JSON array) or none; its prompt and cached
 * token counts. */
static void tools_chat(int port, const char *tools, const char *question, long *prompt,
                       long *cached)
{
    json_t *m = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content",
                          "You help passengers of the island ferry.", "role", "user",
                          "content", question);
    json_t *req = json_pack("{s:o, s:i, s:s}", "messages", m, "max_tokens", 1, "cache_salt",
                            "tools-prefix");
    if (tools)
        json_object_set_new(req, "tools", json_loads(tools, 0, NULL));
    char *body = json_take_dump(req);
    resp_t r;
    http(port, "POST", "/v1/chat/completions", body, &r);
    if (r.status != 200)
        fail_msg("POST %s -> HTTP %ld: %s", body, r.status, r.body);
    *prompt = (long)jint(r.json, "usage.prompt_tokens");
    *cached = (long)jint(r.json, "usage.prompt_tokens_details.cached_tokens");
    resp_free(&r);
    free(body);
}

/* Tool definitions are part of the prompt's prefix, cached like a
 * document: a new conversation with the same tools and another question
 * restores at least the whole tools block, where the same question without
 * tools gets only what comes before it. Hermes (tiny.gguf: tools at the end
 * of the system message) and Llama 3.1 (tiny-llama-bpe.gguf: tools at the
 * start of the first user message, before its text). Mistral puts them in
 * front of the last user message's text, so in a new conversation they
 * precede the question there too; no test model has its template. */
static void test_tools_cached_prefix(void **state)
{
    (void)state;
    char dir[256];
    proc_t l3;
    start_other(&l3, dir, "tiny-llama-bpe.gguf");
    const int ports[2] = { g_eng.port, l3.port };
    for (int k = 0; k < 2; k++) {
        long prompt, with, without, p_tools, p_plain, unused;
        tools_chat(ports[k], k_tools_doc, "When does the first ferry leave tomorrow?", &prompt,
                   &unused);
        tools_chat(ports[k], k_tools_doc, "Can I take my bicycle on board?", &prompt, &with);
        tools_chat(ports[k], NULL, "Can I take my bicycle on board?", &unused, &without);
        /* the tools block's size: the same short question with and without */
        tools_chat(ports[k], k_tools_doc, "?", &p_tools, &unused);
        tools_chat(ports[k], NULL, "?", &p_plain, &unused);
        long block = p_tools - p_plain;
        print_message("%s: prompt %ld, cached %ld with tools, %ld without; tools block %ld\n",
                      k ? "llama3" : "hermes", prompt, with, without, block);
        assert_true(block > 200);
        /* all of the block, give or take the tokens where it joins its
         * neighbours */
        assert_true(with >= without + block - 4);
        assert_true(with > without);
        assert_true(with < prompt);   /* the question itself was not */
    }
    proc_stop(&l3);
    tmpdir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_fingerprint_and_usage),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_completion_prompts),
        cmocka_unit_test(test_structured_outputs),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_logit_bias),
        cmocka_unit_test(test_choices),
        cmocka_unit_test(test_continue_final_message),
        cmocka_unit_test(test_return_progress),
        cmocka_unit_test(test_tool_calls),
        cmocka_unit_test(test_control_tokens),
        cmocka_unit_test(test_tools_cached_prefix),
        cmocka_unit_test(test_cors),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    proc_kill_all();
    return rc;
}
