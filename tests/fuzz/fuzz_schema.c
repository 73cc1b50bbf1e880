/* fuzz_schema.c — what clients send for structured outputs and tool calls
 * (src/engine/jsonschema.c, src/engine/tools.c), and what a model's reply
 * may hold.
 *
 * The input is parsed as JSON. As a schema it goes through
 * jsonschema_to_gbnf() and jsonschema_validate() (of the schema against
 * itself, and of a fixed value); as a request body its "tools",
 * "tool_choice", "parallel_tool_calls" and "messages" go through
 * tools_parse(), tools_render() and tools_grammar() for every family. The
 * raw bytes go through tools_parse_output(), tools_holdback() and
 * tools_in_call() for every family.
 *
 * Checked besides memory safety: a conversion either succeeds with a
 * grammar within JSONSCHEMA_MAX_GBNF bytes or fails with a message; the
 * rendered messages have string contents and roles system, user or
 * assistant only; parsed calls have an id, a name and arguments that are
 * JSON objects; holdback never exceeds the text.
 */
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "engine/jsonschema.h"
#include "engine/tools.h"
#include "fuzz_util.h"

static const tools_family_t families[] = { TOOLS_NONE, TOOLS_HERMES, TOOLS_LLAMA3, TOOLS_MISTRAL };

static void schema_paths(const json_t *v)
{
    char err[256];
    char *gbnf = NULL;
    int rc = jsonschema_to_gbnf(v, &gbnf, err, sizeof err);
    if (rc == JSONSCHEMA_OK) {
        FUZZ_CHECK(gbnf && strlen(gbnf) <= JSONSCHEMA_MAX_GBNF, "grammar too long or missing");
    } else {
        FUZZ_CHECK(!gbnf && err[0], "a failed conversion leaves a grammar or no message");
    }
    free(gbnf);
    jsonschema_validate(v, v, err, sizeof err);
    json_t *probe = json_pack("{s:s, s:i, s:[b]}", "city", "Paris", "temp", 21, "tags", 1);
    jsonschema_validate(v, probe, err, sizeof err);
    json_decref(probe);
}

static void tool_paths(const json_t *body)
{
    char err[320];
    tools_req_t *req = NULL;
    int rc = tools_parse(json_object_get(body, "tools"), json_object_get(body, "tool_choice"),
                         json_object_get(body, "parallel_tool_calls"), &req, err, sizeof err);
    if (rc != TOOLS_OK) {
        FUZZ_CHECK(!req, "a failed parse leaves a request");
        return;
    }
    const json_t *msgs = json_object_get(body, "messages");
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        if (json_is_array(msgs)) {
            json_t *out = NULL;
            if (tools_render(families[f], req, msgs, &out, err, sizeof err) == TOOLS_OK) {
                size_t i;
                json_t *m;
                json_array_foreach(out, i, m) {
                    const char *role = json_string_value(json_object_get(m, "role"));
                    FUZZ_CHECK(role && (!strcmp(role, "system") || !strcmp(role, "user") ||
                                        !strcmp(role, "assistant")),
                               "rendered role %s", role ? role : "(none)");
                    FUZZ_CHECK(json_is_string(json_object_get(m, "content")),
                               "rendered content is not a string");
                }
            }
            json_decref(out);
        }
        if (req) {
            char *gbnf = NULL;
            if (tools_grammar(families[f], req, &gbnf, err, sizeof err) == TOOLS_OK && gbnf)
                FUZZ_CHECK(strlen(gbnf) <= TOOLS_MAX_GBNF, "tool grammar too long");
            free(gbnf);
        }
    }
    tools_req_free(req);
}

static void output_paths(const char *text, size_t len)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        json_t *calls = NULL;
        char *content = NULL;
        if (tools_parse_output(families[f], text, len, &calls, &content) == TOOLS_OK) {
            size_t i;
            json_t *c;
            json_array_foreach(calls, i, c) {
                const char *args = json_string_value(json_object_get(json_object_get(c, "function"),
                                                                     "arguments"));
                FUZZ_CHECK(json_string_value(json_object_get(c, "id")), "a call without an id");
                FUZZ_CHECK(json_string_value(json_object_get(json_object_get(c, "function"), "name")),
                           "a call without a name");
                json_t *a = args ? json_loads(args, 0, NULL) : NULL;
                FUZZ_CHECK(json_is_object(a), "arguments are not a JSON object: %s",
                           args ? args : "(none)");
                json_decref(a);
            }
        }
        json_decref(calls);
        free(content);
        FUZZ_CHECK(tools_holdback(families[f], text, len) <= len, "holdback beyond the text");
        tools_in_call(families[f], text, len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 16))
        return 0;
    output_paths((const char *)data, size);
    json_t *v = NULL;
    if (json_parse((const char *)data, size, &v, NULL) != JSON_OK)
        return 0;
    schema_paths(v);
    if (json_is_object(v)) {
        schema_paths(json_object_get(v, "schema"));
        tool_paths(v);
    }
    json_decref(v);
    return 0;
}
