/* test_tools.c — OpenAI tool calls: family detection, request validation,
 * prompt rendering, reading calls back, streaming holdback, and grammars
 * checked by sampling on the tiny model.
 *
 * - tools_family on snippets of real templates (Qwen2.5, Hermes 2 Pro,
 *   Llama 3.1, Mistral Nemo, Llama 2, empty, NULL);
 * - tools_parse accepts the documented shapes and refuses the rest with a
 *   message naming the field;
 * - tools_render gives golden strings per family (tools, assistant calls
 *   after content, merged results, history without tools) and the same
 *   bytes twice;
 * - tools_parse_output reads single, parallel and embedded calls, keeps
 *   malformed ones as content, makes unique well-formed ids;
 * - tools_holdback / tools_in_call on partial markers;
 * - tools_grammar: llama.cpp accepts the grammars (model_grammar_check),
 *   and text sampled under them on the tiny model (random weights: the
 *   grammar is all that shapes it; greedy and one seed at temperature 1)
 *   parses into calls of the right tool whose arguments jsonschema_validate
 *   accepts. Sampling under a grammar on the tiny model's 128k vocabulary
 *   is slow (whitespace-heavy output), so runs are few and short.
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
#include "engine/tools.h"
#include "grammar_gen.h"

#define TINY KVCHAT_TEST_MODELS_DIR "/tiny.gguf"
#define BUDGET 500 /* tokens per generation */

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
    p.n_threads = 2;
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

/* ---- family ---- */

static void test_family(void **state)
{
    (void)state;
    static const char qwen[] =
        "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == "
        "'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are "
        "Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n    "
        "{{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user "
        "query.\" }}";
    static const char hermes2pro[] =
        "{%- macro json_to_python_type(json_spec) %}\n{%- set basic_type_map = {\n    \"string\": "
        "\"str\",\n}%}\n{{- bos_token }}\n{{- '<|im_start|>system\\n' }}\n{{- \"You are a "
        "function calling AI model. You are provided with function signatures within <tools></"
        "tools> XML tags. \" }}";
    static const char llama31[] =
        "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools "
        "%}\n{%- endif %}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{%- if "
        "builtin_tools is defined or tools is not none %}\n    {{- \"Environment: ipython\\n\" "
        "}}\n{%- endif %}";
    static const char nemo[] =
        "{%- for message in loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n        "
        "{%- if tools is not none and (message == user_messages[-1]) %}\n            {{- "
        "\"[AVAILABLE_TOOLS][\" }}\n {%- endif %}\n {{- \"[INST]\" + message[\"content\"] + "
        "\"[/INST]\" }}\n    {%- elif (message.tool_calls is defined and message.tool_calls is "
        "not none) %}\n        {{- \"[TOOL_CALLS][\" }}";
    static const char llama2[] =
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% endif "
        "%}{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ bos_token + "
        "'[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
        "' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
    assert_int_equal(tools_family(qwen), TOOLS_HERMES);
    assert_int_equal(tools_family(hermes2pro), TOOLS_HERMES);
    assert_int_equal(tools_family(llama31), TOOLS_LLAMA3);
    assert_int_equal(tools_family(nemo), TOOLS_MISTRAL);
    assert_int_equal(tools_family(llama2), TOOLS_NONE);
    assert_int_equal(tools_family(""), TOOLS_NONE);
    assert_int_equal(tools_family(NULL), TOOLS_HERMES);
    assert_string_equal(tools_family_name(TOOLS_LLAMA3), "llama3");
    assert_string_equal(tools_strerror(TOOLS_EFAMILY),
                        "this model's chat template has no tool calling");
}

/* ---- request ---- */

static const char WEATHER[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather "
    "now\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\","
    "\"maxLength\":12},\"unit\":{\"enum\":[\"c\",\"f\"]}},\"required\":[\"city\",\"unit\"],"
    "\"additionalProperties\":false}}}";
static const char ADD[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"add\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"}},\"required\":["
    "\"a\",\"b\"],\"additionalProperties\":false}}}";
static const char PING[] = "{\"type\":\"function\",\"function\":{\"name\":\"ping\"}}";

/* tools_parse on JSON texts (NULL = absent); returns rc, *req and err. */
static int req_of(const char *tools, const char *choice, const char *parallel, tools_req_t **req,
                  char *err, size_t errcap)
{
    json_t *t = tools ? parse(tools) : NULL, *c = choice ? parse(choice) : NULL,
           *p = parallel ? parse(parallel) : NULL;
    int rc = tools_parse(t, c, p, req, err, errcap);
    json_decref(t);
    json_decref(c);
    json_decref(p);
    return rc;
}

static void refused(const char *tools, const char *choice, const char *parallel,
                    const char *want)
{
    tools_req_t *req = (tools_req_t *)1;
    char err[256];
    assert_int_equal(req_of(tools, choice, parallel, &req, err, sizeof err), TOOLS_EINVAL);
    assert_null(req);
    if (strcmp(err, want) != 0)
        fail_msg("message '%s', want '%s'", err, want);
}

static void test_parse_request(void **state)
{
    (void)state;
    char err[256], tools[4096];
    tools_req_t *req = NULL;
    snprintf(tools, sizeof tools, "[%s,%s,%s]", WEATHER, ADD, PING);

    assert_int_equal(req_of(tools, NULL, NULL, &req, err, sizeof err), TOOLS_OK);
    assert_non_null(req);
    assert_int_equal(tools_req_count(req), 3);
    assert_int_equal(tools_req_choice(req), TOOLS_CHOICE_AUTO);
    assert_true(tools_req_parallel(req));
    assert_null(tools_req_named(req));
    assert_string_equal(tools_req_name(req, 1), "add");
    /* Absent parameters: the empty object schema. */
    char *ps = json_dumps_compact(tools_req_parameters(req, 2));
    assert_string_equal(ps, "{\"type\":\"object\",\"properties\":{}}");
    free(ps);
    tools_req_free(req);

    assert_int_equal(req_of(tools, "\"required\"", "false", &req, err, sizeof err), TOOLS_OK);
    assert_int_equal(tools_req_choice(req), TOOLS_CHOICE_REQUIRED);
    assert_false(tools_req_parallel(req));
    tools_req_free(req);
    assert_int_equal(req_of(tools, "{\"type\":\"function\",\"function\":{\"name\":\"add\"}}",
                            NULL, &req, err, sizeof err),
                     TOOLS_OK);
    assert_int_equal(tools_req_choice(req), TOOLS_CHOICE_NAMED);
    assert_string_equal(tools_req_named(req), "add");
    tools_req_free(req);
    assert_int_equal(req_of(tools, "\"none\"", NULL, &req, err, sizeof err), TOOLS_OK);
    assert_int_equal(tools_req_choice(req), TOOLS_CHOICE_NONE);
    tools_req_free(req);
    /* No tools: no request, "none"/"auto" fine. */
    req = (tools_req_t *)1;
    assert_int_equal(req_of(NULL, NULL, NULL, &req, err, sizeof err), TOOLS_OK);
    assert_null(req);
    assert_int_equal(req_of("null", "\"auto\"", "true", &req, err, sizeof err), TOOLS_OK);
    assert_null(req);
    tools_req_free(NULL);

    /* 128 tools fine, 129 not. */
    char *many = malloc(130 * 80);
    assert_non_null(many);
    size_t n = 0, at128 = 0;
    for (int i = 0; i < 129; i++) {
        if (i == 128)
            at128 = n;
        n += (size_t)sprintf(many + n, "%s{\"type\":\"function\",\"function\":{\"name\":\"f%d\"}}",
                             i ? "," : "[", i);
    }
    strcpy(many + n, "]");
    refused(many, NULL, NULL, "tools must hold 1 to 128 tools (it has 129)");
    strcpy(many + at128, "]");
    assert_int_equal(req_of(many, NULL, NULL, &req, err, sizeof err), TOOLS_OK);
    assert_int_equal(tools_req_count(req), 128);
    tools_req_free(req);
    free(many);

    refused("[]", NULL, NULL, "tools must hold 1 to 128 tools (it has 0)");
    refused("{}", NULL, NULL, "tools must be an array");
    snprintf(tools, sizeof tools, "[%s,%s,{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]",
             WEATHER, ADD);
    refused(tools, NULL, NULL,
            "tools[2].function.name must be 1 to 64 letters, digits, '_' or '-'");
    refused("[{\"type\":\"function\",\"function\":{\"name\":\"a234567890123456789012345678901234"
            "5678901234567890123456789012345\"}}]",
            NULL, NULL, "tools[0].function.name must be 1 to 64 letters, digits, '_' or '-'");
    refused("[{\"type\":\"function\",\"function\":{\"name\":\"\"}}]", NULL, NULL,
            "tools[0].function.name must be 1 to 64 letters, digits, '_' or '-'");
    snprintf(tools, sizeof tools, "[%s,%s,%s]", WEATHER, ADD, WEATHER);
    refused(tools, NULL, NULL,
            "tools[2].function.name 'get_weather' is already the name of tools[0]");
    refused("[{\"type\":\"retrieval\",\"function\":{\"name\":\"a\"}}]", NULL, NULL,
            "tools[0].type must be \"function\"");
    refused("[{\"type\":\"function\"}]", NULL, NULL, "tools[0].function must be an object");
    refused("[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":[]}}]", NULL,
            NULL, "tools[0].function.parameters must be an object (a JSON Schema)");
    refused("[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"description\":1}}]", NULL,
            NULL, "tools[0].function.description must be a string");
    refused("[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"strict\":\"yes\"}}]", NULL,
            NULL, "tools[0].function.strict must be a boolean");
    refused("[1]", NULL, NULL, "tools[0] must be an object");
    snprintf(tools, sizeof tools, "[%s]", WEATHER);
    refused(tools, "{\"type\":\"function\",\"function\":{\"name\":\"nope\"}}", NULL,
            "tool_choice.function.name 'nope' is not one of the tools");
    refused(tools, "\"sometimes\"", NULL,
            "tool_choice must be \"none\", \"auto\", \"required\" or "
            "{\"type\":\"function\",\"function\":{\"name\":...}}");
    refused(tools, "{\"type\":\"function\"}", NULL,
            "tool_choice must be {\"type\":\"function\",\"function\":{\"name\":...}}");
    refused(tools, NULL, "1", "parallel_tool_calls must be a boolean");
    refused(NULL, "\"required\"", NULL, "tool_choice \"required\" needs tools");
    refused(NULL, "{\"type\":\"function\",\"function\":{\"name\":\"a\"}}", NULL,
            "tool_choice with a function needs tools");
}

/* ---- rendering ---- */

/* Render `messages` with tools (JSON text or NULL); returns the compact
 * dump of the result, malloc'd. Also checks the result renders the same
 * twice and holds only system/user/assistant string messages. */
static char *render(tools_family_t f, const char *tools, const char *messages)
{
    tools_req_t *req = NULL;
    char err[256];
    if (tools)
        assert_int_equal(req_of(tools, NULL, NULL, &req, err, sizeof err), TOOLS_OK);
    json_t *in = parse(messages), *out = NULL, *again = NULL;
    int rc = tools_render(f, req, in, &out, err, sizeof err);
    if (rc != TOOLS_OK)
        fail_msg("tools_render: %s", err);
    assert_int_equal(tools_render(f, req, in, &again, err, sizeof err), TOOLS_OK);
    char *s = json_dumps_compact(out), *s2 = json_dumps_compact(again);
    assert_string_equal(s, s2);
    size_t i;
    json_t *m;
    json_array_foreach(out, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        assert_non_null(role);
        assert_true(strcmp(role, "system") == 0 || strcmp(role, "user") == 0 ||
                    strcmp(role, "assistant") == 0);
        assert_true(json_is_string(json_object_get(m, "content")));
        assert_int_equal(json_object_size(m), 2);
    }
    free(s2);
    json_decref(in);
    json_decref(out);
    json_decref(again);
    tools_req_free(req);
    return s;
}

/* The content of message i of a compact dump made by render(). */
static char *content_at(const char *dump, size_t i, const char *role)
{
    json_t *arr = parse(dump);
    json_t *m = json_array_get(arr, i);
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "role")), role);
    char *c = strdup(json_string_value(json_object_get(m, "content")));
    json_decref(arr);
    return c;
}

static void expect_content(const char *dump, size_t i, const char *role, const char *want)
{
    char *c = content_at(dump, i, role);
    if (strcmp(c, want) != 0)
        fail_msg("message %zu:\n---got---\n%s\n---want---\n%s\n", i, c, want);
    free(c);
}

static size_t count(const char *dump)
{
    json_t *arr = parse(dump);
    size_t n = json_array_size(arr);
    json_decref(arr);
    return n;
}

/* A conversation with a call and two results after it. */
static const char HISTORY[] =
    "[{\"role\":\"system\",\"content\":\"Be brief.\"},"
    "{\"role\":\"user\",\"content\":\"Weather in Paris and 2+3?\"},"
    "{\"role\":\"assistant\",\"content\":\"Checking.\",\"tool_calls\":["
    "{\"id\":\"call_abcdefghijklmnopqrstuvwx\",\"type\":\"function\",\"function\":{\"name\":"
    "\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\",\\\"unit\\\":\\\"c\\\"}\"}},"
    "{\"id\":\"call_123\",\"type\":\"function\",\"function\":{\"name\":\"add\",\"arguments\":"
    "\"{\\\"a\\\":2,\\\"b\\\":3}\"}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call_abcdefghijklmnopqrstuvwx\",\"content\":\"18C\"},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call_123\",\"content\":[{\"type\":\"text\",\"text\":"
    "\"5\"}]}]";

static const char HERMES_TOOLS_TEXT[] =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather "
    "now\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": "
    "\"string\", \"maxLength\": 12}, \"unit\": {\"enum\": [\"c\", \"f\"]}}, \"required\": "
    "[\"city\", \"unit\"], \"additionalProperties\": false}}}\n"
    "{\"type\": \"function\", \"function\": {\"name\": \"ping\"}}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call>";

static void test_render_hermes(void **state)
{
    (void)state;
    char tools[2048], want[4096];
    snprintf(tools, sizeof tools, "[%s,%s]", WEATHER, PING);

    /* Tools appended to the system message. */
    char *d = render(TOOLS_HERMES, tools,
                     "[{\"role\":\"developer\",\"content\":\"Be brief.\"},"
                     "{\"role\":\"user\",\"content\":\"Hi\"}]");
    snprintf(want, sizeof want, "Be brief.\n\n%s", HERMES_TOOLS_TEXT);
    expect_content(d, 0, "system", want);
    expect_content(d, 1, "user", "Hi");
    assert_int_equal(count(d), 2);
    free(d);

    /* No system message: one of their own. */
    d = render(TOOLS_HERMES, tools, "[{\"role\":\"user\",\"content\":\"Hi\"}]");
    expect_content(d, 0, "system", HERMES_TOOLS_TEXT);
    expect_content(d, 1, "user", "Hi");
    free(d);

    /* History: content then calls; two results merged into one user turn. */
    d = render(TOOLS_HERMES, tools, HISTORY);
    assert_int_equal(count(d), 4);
    expect_content(d, 1, "user", "Weather in Paris and 2+3?");
    expect_content(d, 2, "assistant",
                   "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                   "\"Paris\", \"unit\": \"c\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", "
                   "\"arguments\": {\"a\": 2, \"b\": 3}}\n</tool_call>");
    expect_content(d, 3, "user",
                   "<tool_response>\n18C\n</tool_response>\n<tool_response>\n5\n</tool_response>");
    free(d);

    /* The same history without tools: no tools text, same history. */
    d = render(TOOLS_HERMES, NULL, HISTORY);
    expect_content(d, 0, "system", "Be brief.");
    expect_content(d, 3, "user",
                   "<tool_response>\n18C\n</tool_response>\n<tool_response>\n5\n</tool_response>");
    free(d);

    /* A call without content; a result then a user message; null content. */
    d = render(TOOLS_HERMES, NULL,
               "[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":null,"
               "\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":"
               "\"ping\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":"
               "\"pong\"},{\"role\":\"user\",\"content\":\"y\"}]");
    assert_int_equal(count(d), 4);
    expect_content(d, 1, "assistant",
                   "<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>");
    expect_content(d, 2, "user", "<tool_response>\npong\n</tool_response>");
    expect_content(d, 3, "user", "y");
    free(d);
}

static void test_render_llama3(void **state)
{
    (void)state;
    char tools[2048];
    snprintf(tools, sizeof tools, "[%s]", ADD);
    char *d = render(TOOLS_LLAMA3, tools, HISTORY);
    assert_int_equal(count(d), 5);
    expect_content(d, 0, "system",
                   "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 "
                   "Jul 2024\n\nBe brief.");
    expect_content(d, 1, "user",
                   "Given the following functions, please respond with a JSON for a function call "
                   "with its proper arguments that best answers the given prompt.\n\nRespond in "
                   "the format {\"name\": function name, \"parameters\": dictionary of argument "
                   "name and its value}.Do not use variables.\n\n{\n    \"type\": \"function\",\n"
                   "    \"function\": {\n        \"name\": \"add\",\n        \"parameters\": {\n"
                   "            \"type\": \"object\",\n            \"properties\": {\n"
                   "                \"a\": {\n                    \"type\": \"integer\"\n"
                   "                },\n                \"b\": {\n                    \"type\": "
                   "\"integer\"\n                }\n            },\n            \"required\": [\n"
                   "                \"a\",\n                \"b\"\n            ],\n"
                   "            \"additionalProperties\": false\n        }\n    }\n}\n\n"
                   "Weather in Paris and 2+3?");
    expect_content(d, 2, "assistant",
                   "Checking.<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": "
                   "\"Paris\", \"unit\": \"c\"}}\n{\"name\": \"add\", \"parameters\": {\"a\": 2, "
                   "\"b\": 3}}");
    expect_content(d, 3, "user", "18C");
    expect_content(d, 4, "user", "5");
    free(d);

    /* No system message: the ipython environment in one of our own. */
    d = render(TOOLS_LLAMA3, tools,
               "[{\"role\":\"user\",\"content\":\"2+3?\"},{\"role\":\"assistant\",\"content\":\"\","
               "\"tool_calls\":[{\"id\":\"x\",\"type\":\"function\",\"function\":{\"name\":\"add\","
               "\"arguments\":\"{\\\"a\\\": 2, \\\"b\\\": 3}\"}}]}]");
    expect_content(d, 0, "system",
                   "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 "
                   "Jul 2024");
    char *c = content_at(d, 1, "user");
    assert_non_null(strstr(c, "}\n\n2+3?"));
    free(c);
    expect_content(d, 2, "assistant", "{\"name\": \"add\", \"parameters\": {\"a\": 2, \"b\": 3}}");
    free(d);

    /* Only a system message: the tools still get a user turn. */
    d = render(TOOLS_LLAMA3, tools, "[{\"role\":\"system\",\"content\":\"S\"}]");
    assert_int_equal(count(d), 2);
    c = content_at(d, 1, "user");
    assert_memory_equal(c, "Given the following functions", 29);
    assert_int_equal(c[strlen(c) - 1], '}');
    free(c);
    free(d);
}

static void test_render_mistral(void **state)
{
    (void)state;
    char tools[2048];
    snprintf(tools, sizeof tools, "[%s]", PING);
    char *d = render(TOOLS_MISTRAL, tools,
                     "[{\"role\":\"user\",\"content\":\"one\"},{\"role\":\"assistant\","
                     "\"content\":\"ok\"},{\"role\":\"user\",\"content\":\"ping it\"}]");
    expect_content(d, 0, "user", "one");
    expect_content(d, 2, "user",
                   "[AVAILABLE_TOOLS][{\"type\": \"function\", \"function\": {\"name\": "
                   "\"ping\"}}][/AVAILABLE_TOOLS]ping it");
    free(d);

    snprintf(tools, sizeof tools, "[%s,%s]", WEATHER, ADD);
    d = render(TOOLS_MISTRAL, tools, HISTORY);
    assert_int_equal(count(d), 4);
    expect_content(d, 0, "system", "Be brief.");
    char *c = content_at(d, 1, "user");
    assert_true(strncmp(c, "[AVAILABLE_TOOLS][{\"type\": \"function\", \"function\": {\"name\": "
                           "\"get_weather\"",
                        60) == 0);
    assert_non_null(strstr(c, "}}][/AVAILABLE_TOOLS]Weather in Paris and 2+3?"));
    free(c);
    expect_content(d, 2, "assistant",
                   "Checking.[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                   "\"Paris\", \"unit\": \"c\"}, \"id\": \"pqrstuvwx\"}, {\"name\": \"add\", "
                   "\"arguments\": {\"a\": 2, \"b\": 3}, \"id\": \"00call123\"}]");
    expect_content(d, 3, "user",
                   "[TOOL_RESULTS]{\"content\": 18C, \"call_id\": \"pqrstuvwx\"}[/TOOL_RESULTS]"
                   "[TOOL_RESULTS]{\"content\": 5, \"call_id\": \"00call123\"}[/TOOL_RESULTS]");
    free(d);
}

static void test_render_refused(void **state)
{
    (void)state;
    json_t *in = parse(HISTORY), *out = (json_t *)1;
    char err[256];
    /* No tool calling in the template: tool history is refused. */
    assert_int_equal(tools_render(TOOLS_NONE, NULL, in, &out, err, sizeof err), TOOLS_EFAMILY);
    assert_null(out);
    assert_string_equal(err, "this model's chat template has no tool calling");
    json_decref(in);
    /* ...but plain chat passes through. */
    in = parse("[{\"role\":\"user\",\"content\":\"hi\"}]");
    assert_int_equal(tools_render(TOOLS_NONE, NULL, in, &out, err, sizeof err), TOOLS_OK);
    char *s = json_dumps_compact(out);
    assert_string_equal(s, "[{\"role\":\"user\",\"content\":\"hi\"}]");
    free(s);
    json_decref(out);
    json_decref(in);

    static const struct {
        const char *messages, *want;
    } bad[] = {
        {"[{\"role\":\"robot\",\"content\":\"x\"}]",
         "messages[0].role must be system, user, assistant or tool"},
        {"[{\"role\":\"user\",\"content\":1}]", "messages[0].content must be a string"},
        {"[{\"role\":\"user\"}]", "messages[0].content must be a string"},
        {"[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"arguments\":\"{}\"}}]}]",
         "messages[0].tool_calls[0].function.name must be a string"},
        {"[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"function\"}]}]",
         "messages[0].tool_calls[0].function must be an object"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]",
         "messages[0].content: only text parts are supported"},
        {"{}", "messages must be an array"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        in = parse(bad[i].messages);
        assert_int_equal(tools_render(TOOLS_HERMES, NULL, in, &out, err, sizeof err),
                         TOOLS_EINVAL);
        assert_null(out);
        assert_string_equal(err, bad[i].want);
        json_decref(in);
    }
}

/* ---- reading calls ---- */

/* Parse `text` as family f; checks ids; returns the calls as a compact dump
 * without ids ("[]" for none) and *content (NULL for none). */
static char *calls_of(tools_family_t f, const char *text, char **content)
{
    json_t *calls = (json_t *)1;
    *content = (char *)1;
    assert_int_equal(tools_parse_output(f, text, strlen(text), &calls, content), TOOLS_OK);
    json_t *arr = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        const char *id = json_string_value(json_object_get(c, "id"));
        assert_non_null(id);
        assert_int_equal(strlen(id), TOOLS_ID_LEN);
        assert_memory_equal(id, "call_", 5);
        for (size_t k = 5; k < TOOLS_ID_LEN; k++)
            assert_true((id[k] >= 'a' && id[k] <= 'z') || (id[k] >= 'A' && id[k] <= 'Z') ||
                        (id[k] >= '0' && id[k] <= '9'));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(id, json_string_value(json_object_get(
                                            json_array_get(calls, j), "id")));
        assert_string_equal(json_string_value(json_object_get(c, "type")), "function");
        json_array_append(arr, json_object_get(c, "function"));
    }
    if (calls)
        assert_true(json_array_size(calls) > 0);
    char *s = json_dumps_compact(arr);
    json_decref(arr);
    json_decref(calls);
    return s;
}

static void expect_calls(tools_family_t f, const char *text, const char *want_calls,
                         const char *want_content)
{
    char *content = NULL;
    char *calls = calls_of(f, text, &content);
    if (strcmp(calls, want_calls) != 0)
        fail_msg("calls of '%s':\n%s\nwant\n%s", text, calls, want_calls);
    if (want_content)
        assert_non_null(content);
    if (want_content && strcmp(content, want_content) != 0)
        fail_msg("content of '%s': '%s', want '%s'", text, content, want_content);
    if (!want_content && content)
        fail_msg("content of '%s': '%s', want none", text, content);
    free(calls);
    free(content);
}

#define W_CALL "{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}"
#define A_CALL "{\"name\":\"add\",\"arguments\":\"{\\\"a\\\":2,\\\"b\\\":0.1}\"}"

static void test_parse_output(void **state)
{
    (void)state;
    /* Hermes. */
    expect_calls(TOOLS_HERMES,
                 "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
                 "</tool_call>",
                 "[" W_CALL "]", NULL);
    expect_calls(TOOLS_HERMES,
                 "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
                 "</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": "
                 "0.1}}\n</tool_call>",
                 "[" W_CALL "," A_CALL "]", NULL);
    expect_calls(TOOLS_HERMES,
                 "Let me check.\n<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":"
                 "\"Paris\"}}</tool_call>\nDone.",
                 "[" W_CALL "]", "Let me check.\n\nDone.");
    /* No closing tag at the very end: still a call. */
    expect_calls(TOOLS_HERMES,
                 "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n",
                 "[" W_CALL "]", NULL);
    /* Arguments as a JSON string; a missing arguments is {}. */
    expect_calls(TOOLS_HERMES,
                 "<tool_call>{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": "
                 "\\\"Paris\\\"}\"}</tool_call><tool_call>{\"name\": \"ping\"}</tool_call>",
                 "[" W_CALL ",{\"name\":\"ping\",\"arguments\":\"{}\"}]", NULL);
    /* Malformed: kept as content, markers and all. */
    static const char bad1[] = "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": }}\n"
                               "</tool_call>";
    expect_calls(TOOLS_HERMES, bad1, "[]", bad1);
    static const char bad2[] = "<tool_call>\n{\"arguments\": {}}\n</tool_call>";
    expect_calls(TOOLS_HERMES, bad2, "[]", bad2);
    static const char bad3[] = "<tool_call>\n{\"name\": \"add\", \"arguments\": {}} trailing\n"
                               "</tool_call>";
    expect_calls(TOOLS_HERMES, bad3, "[]", bad3);
    static const char bad4[] = "see <tool_call> {\"name\": \"add\"";
    expect_calls(TOOLS_HERMES, bad4, "[]", bad4);
    /* A bad one then a good one. */
    expect_calls(TOOLS_HERMES,
                 "<tool_call>oops</tool_call> <tool_call>{\"name\": \"get_weather\", "
                 "\"arguments\": {\"city\": \"Paris\"}}</tool_call>",
                 "[" W_CALL "]", "<tool_call>oops</tool_call>");
    expect_calls(TOOLS_HERMES, "  Just text.\n", "[]", "Just text.");
    expect_calls(TOOLS_HERMES, "", "[]", NULL);
    /* Braces inside strings do not confuse the span. */
    expect_calls(TOOLS_HERMES,
                 "<tool_call>{\"name\": \"say\", \"arguments\": {\"t\": \"}]\\\"{\"}}</tool_call>",
                 "[{\"name\":\"say\",\"arguments\":\"{\\\"t\\\":\\\"}]\\\\\\\"{\\\"}\"}]", NULL);

    /* Llama 3. */
    expect_calls(TOOLS_LLAMA3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
                 "[" W_CALL "]", NULL);
    expect_calls(TOOLS_LLAMA3,
                 " {\"type\": \"function\", \"name\": \"get_weather\", \"parameters\": {\"city\": "
                 "\"Paris\"}}; {\"name\": \"add\", \"parameters\": {\"a\": 2, \"b\": 0.1}}",
                 "[" W_CALL "," A_CALL "]", NULL);
    expect_calls(TOOLS_LLAMA3,
                 "Sure.<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": "
                 "\"Paris\"}}",
                 "[" W_CALL "]", "Sure.");
    expect_calls(TOOLS_LLAMA3, "{\"answer\": 42}", "[]", "{\"answer\": 42}");
    expect_calls(TOOLS_LLAMA3, "Hello there", "[]", "Hello there");

    /* Mistral. */
    expect_calls(TOOLS_MISTRAL,
                 "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, "
                 "\"id\": \"abcdefghi\"}, {\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": "
                 "0.1}}]",
                 "[" W_CALL "," A_CALL "]", NULL);
    expect_calls(TOOLS_MISTRAL,
                 "Hmm.[TOOL_CALLS] {\"name\": \"get_weather\", \"arguments\": {\"city\": "
                 "\"Paris\"}}",
                 "[" W_CALL "]", "Hmm.");
    static const char mbad[] = "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {}}, {\"x\": 1}]";
    expect_calls(TOOLS_MISTRAL, mbad, "[]", mbad);

    /* No family: everything is content. */
    static const char none[] = "<tool_call>{\"name\": \"add\", \"arguments\": {}}</tool_call>";
    expect_calls(TOOLS_NONE, none, "[]", none);

    /* Mistral's own id ends the OpenAI id, so the call renders back alike. */
    static const char mid[] = "[TOOL_CALLS][{\"name\": \"ping\", \"arguments\": {}, \"id\": "
                              "\"abcDEF123\"}]";
    json_t *mc = NULL;
    char *mt = NULL;
    assert_int_equal(tools_parse_output(TOOLS_MISTRAL, mid, strlen(mid), &mc, &mt), TOOLS_OK);
    const char *id = json_string_value(json_object_get(json_array_get(mc, 0), "id"));
    assert_int_equal(strlen(id), TOOLS_ID_LEN);
    assert_string_equal(id + TOOLS_ID_LEN - 9, "abcDEF123");
    json_t *hist = json_pack("[{s:s,s:s},{s:s,s:n,s:O}]", "role", "user", "content", "p",
                             "role", "assistant", "content", "tool_calls", mc);
    json_t *r = NULL;
    char err[256];
    assert_int_equal(tools_render(TOOLS_MISTRAL, NULL, hist, &r, err, sizeof err), TOOLS_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 1), "content")),
                        mid);
    json_decref(r);
    json_decref(hist);
    json_decref(mc);

    /* Ids differ between calls of separate outputs too. */
    json_t *c1 = NULL, *c2 = NULL;
    char *t1 = NULL, *t2 = NULL;
    static const char one[] = "<tool_call>{\"name\": \"ping\", \"arguments\": {}}</tool_call>";
    assert_int_equal(tools_parse_output(TOOLS_HERMES, one, strlen(one), &c1, &t1), TOOLS_OK);
    assert_int_equal(tools_parse_output(TOOLS_HERMES, one, strlen(one), &c2, &t2), TOOLS_OK);
    assert_string_not_equal(json_string_value(json_object_get(json_array_get(c1, 0), "id")),
                            json_string_value(json_object_get(json_array_get(c2, 0), "id")));
    assert_null(t1);
    json_decref(c1);
    json_decref(c2);
}

/* ---- streaming ---- */

static size_t hold(tools_family_t f, const char *s) { return tools_holdback(f, s, strlen(s)); }
static bool in_call(tools_family_t f, const char *s) { return tools_in_call(f, s, strlen(s)); }

static void test_streaming(void **state)
{
    (void)state;
    assert_int_equal(hold(TOOLS_HERMES, "Hello"), 0);
    assert_int_equal(hold(TOOLS_HERMES, "Hello <"), 1);
    assert_int_equal(hold(TOOLS_HERMES, "Hello <tool_c"), 7);
    assert_int_equal(hold(TOOLS_HERMES, "Hello <tool_cx"), 0);
    assert_int_equal(hold(TOOLS_HERMES, "<tool_call"), 10);
    assert_int_equal(hold(TOOLS_HERMES, ""), 0);
    assert_false(in_call(TOOLS_HERMES, "Hello <tool_c"));
    assert_true(in_call(TOOLS_HERMES, "Hello <tool_call>"));
    assert_true(in_call(TOOLS_HERMES, "Hello <tool_call>\n{\"na"));

    assert_int_equal(hold(TOOLS_MISTRAL, "ok [TOOL"), 5);
    assert_int_equal(hold(TOOLS_MISTRAL, "ok [1]"), 0);
    assert_true(in_call(TOOLS_MISTRAL, "[TOOL_CALLS]["));
    assert_false(in_call(TOOLS_MISTRAL, "[TOOL_CALL"));

    assert_int_equal(hold(TOOLS_LLAMA3, ""), 0);
    assert_int_equal(hold(TOOLS_LLAMA3, "  "), 2);
    assert_int_equal(hold(TOOLS_LLAMA3, " {"), 2);
    assert_int_equal(hold(TOOLS_LLAMA3, "{ \"na"), 5);
    assert_int_equal(hold(TOOLS_LLAMA3, "{\"ty"), 4);
    assert_int_equal(hold(TOOLS_LLAMA3, "{\"x\": 1}"), 0);
    assert_int_equal(hold(TOOLS_LLAMA3, "Hello"), 0);
    assert_int_equal(hold(TOOLS_LLAMA3, "Hello <|python"), 8);
    assert_false(in_call(TOOLS_LLAMA3, "{\"na"));
    assert_true(in_call(TOOLS_LLAMA3, "{\"name\""));
    assert_true(in_call(TOOLS_LLAMA3, "\n{ \"type\": \"function\""));
    assert_true(in_call(TOOLS_LLAMA3, "Sure.<|python_tag|>"));
    assert_false(in_call(TOOLS_LLAMA3, "The {\"name\" key"));

    assert_int_equal(hold(TOOLS_NONE, "<tool_c"), 0);
    assert_false(in_call(TOOLS_NONE, "<tool_call>"));
}

/* ---- grammar ---- */

/* Generate under `gbnf` from a short prompt (control tokens as text, as
 * the server shows them to the parser); returns the malloc'd text, or NULL
 * if the budget ran out first. Never at a dead end. */
static char *generate(const char *gbnf, float temperature, uint32_t seed, int budget)
{
    const grammar_gen_t o = { "Call a tool:", temperature, seed, false, budget, true };
    bool dead = true;
    char *text = grammar_gen(g_model, g_ctx, gbnf, &o, &dead);
    assert_false(dead);
    return text;
}

/* The grammar of (family, choice, parallel) parses in llama.cpp, and what
 * the tiny model samples under it parses into calls to allowed tools with
 * valid arguments. */
static void check_grammar(tools_family_t f, const char *choice, bool parallel)
{
    char tools[4096], err[256];
    snprintf(tools, sizeof tools, "[%s,%s,%s]", WEATHER, ADD, PING);
    tools_req_t *req = NULL;
    assert_int_equal(req_of(tools, choice, parallel ? "true" : "false", &req, err, sizeof err),
                     TOOLS_OK);
    char *gbnf = NULL;
    if (tools_grammar(f, req, &gbnf, err, sizeof err) != TOOLS_OK)
        fail_msg("tools_grammar: %s", err);
    assert_non_null(gbnf);
    /* One start rule: the converter's "root"s are renamed. */
    assert_memory_equal(gbnf, "root ::= ", 9);
    assert_null(strstr(gbnf, "\nroot ::="));
    if (model_grammar_check(g_model, gbnf, err, sizeof err) != MODEL_OK)
        fail_msg("llama.cpp refuses the %s grammar:\n%s", tools_family_name(f), gbnf);
    const char *named = tools_req_named(req);
    /* With random weights, parallel calls may go on until the budget: one
     * short run, checked if it ends. */
    int ended = 0, budget = parallel ? 200 : BUDGET;
    for (uint32_t seed = parallel ? 2 : 1; seed <= 2; seed++) {
        char *text = generate(gbnf, seed == 1 ? 0.0f : 1.0f, seed, budget);
        if (!text) {
            print_message("    (%s seed %u: no end within %d tokens)\n", tools_family_name(f),
                          seed, budget);
            if (parallel)
                break;
            continue;
        }
        ended++;
        json_t *calls = NULL;
        char *content = NULL;
        assert_int_equal(tools_parse_output(f, text, strlen(text), &calls, &content), TOOLS_OK);
        if (!calls || content)
            fail_msg("%s: not only calls: '%s'", tools_family_name(f), text);
        if (!parallel || f == TOOLS_LLAMA3)
            assert_int_equal(json_array_size(calls), 1);
        size_t i;
        json_t *c;
        json_array_foreach(calls, i, c) {
            const json_t *fn = json_object_get(c, "function");
            const char *name = json_string_value(json_object_get(fn, "name"));
            size_t k = 0;
            while (k < tools_req_count(req) && strcmp(tools_req_name(req, k), name) != 0)
                k++;
            assert_true(k < tools_req_count(req));
            if (named)
                assert_string_equal(name, named);
            const char *args = json_string_value(json_object_get(fn, "arguments"));
            json_t *v = parse(args);
            if (jsonschema_validate(tools_req_parameters(req, k), v, err, sizeof err) !=
                JSONSCHEMA_OK)
                fail_msg("%s: arguments %s of %s: %s", tools_family_name(f), args, name, err);
            json_decref(v);
        }
        print_message("    %s\n", text);
        json_decref(calls);
        free(text);
        if (parallel)
            break;
    }
    /* Greedy or sampled, a single-call run ends: a grammar that never lets
     * the output end would fail here. */
    if (!parallel)
        assert_true(ended >= 1);
    free(gbnf);
    tools_req_free(req);
}

static void test_grammar_hermes(void **state)
{
    (void)state;
    check_grammar(TOOLS_HERMES, "\"required\"", false);
    check_grammar(TOOLS_HERMES, "\"required\"", true);
    check_grammar(TOOLS_HERMES, "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}",
                  false);
}

static void test_grammar_llama3(void **state)
{
    (void)state;
    check_grammar(TOOLS_LLAMA3, "\"required\"", true);
    check_grammar(TOOLS_LLAMA3, "{\"type\":\"function\",\"function\":{\"name\":\"add\"}}", false);
}

static void test_grammar_mistral(void **state)
{
    (void)state;
    check_grammar(TOOLS_MISTRAL, "\"required\"", false);
    check_grammar(TOOLS_MISTRAL, "\"required\"", true);
    check_grammar(TOOLS_MISTRAL, "{\"type\":\"function\",\"function\":{\"name\":\"ping\"}}",
                  false);
}

static void test_grammar_other(void **state)
{
    (void)state;
    char err[256], *gbnf = (char *)1;
    tools_req_t *req = NULL;
    /* auto and none need no grammar. */
    assert_int_equal(req_of("[{\"type\":\"function\",\"function\":{\"name\":\"a\"}}]", NULL, NULL,
                            &req, err, sizeof err),
                     TOOLS_OK);
    assert_int_equal(tools_grammar(TOOLS_HERMES, req, &gbnf, err, sizeof err), TOOLS_OK);
    assert_null(gbnf);
    tools_req_free(req);
    gbnf = (char *)1;
    assert_int_equal(tools_grammar(TOOLS_HERMES, NULL, &gbnf, err, sizeof err), TOOLS_OK);
    assert_null(gbnf);
    /* A schema outside the converter's subset: named in the message. */
    assert_int_equal(req_of("[{\"type\":\"function\",\"function\":{\"name\":\"a\"}},{\"type\":"
                            "\"function\",\"function\":{\"name\":\"b\",\"parameters\":{\"type\":"
                            "\"object\",\"properties\":{\"zip\":{\"type\":\"string\",\"pattern\":"
                            "\"^[0-9]+$\"}}}}}]",
                            "\"required\"", NULL, &req, err, sizeof err),
                     TOOLS_OK);
    gbnf = (char *)1;
    assert_int_equal(tools_grammar(TOOLS_HERMES, req, &gbnf, err, sizeof err),
                     TOOLS_EUNSUPPORTED);
    assert_null(gbnf);
    assert_non_null(strstr(err, "tools[1].function.parameters: "));
    assert_non_null(strstr(err, "pattern"));
    /* No tool calling in the template. */
    assert_int_equal(tools_grammar(TOOLS_NONE, req, &gbnf, err, sizeof err), TOOLS_EFAMILY);
    tools_req_free(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family),
        cmocka_unit_test(test_parse_request),
        cmocka_unit_test(test_render_hermes),
        cmocka_unit_test(test_render_llama3),
        cmocka_unit_test(test_render_mistral),
        cmocka_unit_test(test_render_refused),
        cmocka_unit_test(test_parse_output),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_grammar_hermes),
        cmocka_unit_test(test_grammar_llama3),
        cmocka_unit_test(test_grammar_mistral),
        cmocka_unit_test(test_grammar_other),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
