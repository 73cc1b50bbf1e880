/* tools.h — OpenAI tool calls: the request's tools, the prompt text that
 * shows them to the model, the grammar that forces a call, and the calls
 * read back out of the generated text.
 *
 * The engine renders chat messages with llama.cpp's built-in templates,
 * which know nothing of tools. So tools, the assistant's earlier calls and
 * the tools' results are rendered here as plain text into ordinary
 * system/user/assistant messages, in the syntax of the model's family, the
 * way the family's own Jinja template would put them:
 *
 *   TOOLS_HERMES  (ChatML: Qwen2.5, Hermes 2 Pro): tools as JSON lines in
 *     "<tools></tools>" appended to the system message (Qwen2.5's wording);
 *     calls "<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>";
 *     results "<tool_response>\n...\n</tool_response>" in a user turn,
 *     consecutive results merged into one turn.
 *   TOOLS_LLAMA3  (Llama 3.1/3.2): "Environment: ipython" in the system
 *     message, tools as indented JSON in the first user message (the 3.1
 *     template's default, tools_in_user_message); calls as the whole reply
 *     {"name": ..., "parameters": {...}} (or after <|python_tag|>); results
 *     as user turns (llama.cpp's template would take role "ipython", which
 *     the server does not pass on).
 *   TOOLS_MISTRAL (Mistral Nemo and other v3 templates): "[AVAILABLE_TOOLS]
 *     [...][/AVAILABLE_TOOLS]" in front of the last user message's text;
 *     calls "[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": "<9>"}]";
 *     results "[TOOL_RESULTS]{"content": ..., "call_id": "<9>"}
 *     [/TOOL_RESULTS]" in a user turn.
 *
 * Determinism: the same request renders to the same bytes (keys in the
 * order given, Python json.dumps separators ", " and ": " as the real
 * templates' tojson, reals with 16 significant digits), so the KV cache
 * prefix of one turn matches the next.
 *
 * Everything here is a pure function of its arguments, safe from any thread;
 * only tools_parse_output draws random call ids. JSON values are jansson's
 * (common/json.h); arguments are borrowed and never modified.
 */
#ifndef KVCHAT_ENGINE_TOOLS_H
#define KVCHAT_ENGINE_TOOLS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/json.h"

#define TOOLS_MAX 128              /* tools in one request */
#define TOOLS_NAME_MAX 64          /* bytes of a tool name */
#define TOOLS_MAX_TEXT (64u << 20) /* bytes of one rendered message */
#define TOOLS_MAX_GBNF (4u << 20)  /* bytes of a tools_grammar() grammar */
#define TOOLS_ID_LEN 29            /* "call_" + 24 letters and digits */

enum {
    TOOLS_OK = 0,
    TOOLS_EINVAL = -1,       /* invalid request (message fit for a 400) */
    TOOLS_EFAMILY = -2,      /* the chat template has no tool calling */
    TOOLS_EUNSUPPORTED = -3, /* a parameters schema outside jsonschema.h's subset */
    TOOLS_ETOOBIG = -4,      /* over a TOOLS_MAX_* limit */
    TOOLS_ENOMEM = -5,
};

/* Static English name of a TOOLS_* code. */
const char *tools_strerror(int rc);

typedef enum {
    TOOLS_NONE = 0, /* no tool calling in this template */
    TOOLS_HERMES,
    TOOLS_LLAMA3,
    TOOLS_MISTRAL,
} tools_family_t;

/* Static lower-case name ("none", "hermes", "llama3", "mistral"). */
const char *tools_family_name(tools_family_t f);

/* The family of a chat template (the GGUF's tokenizer.chat_template, NULL
 * when the model has none: llama.cpp then uses ChatML, so TOOLS_HERMES).
 * "<|im_start|>" → HERMES; "<|start_header_id|>" → LLAMA3; "[INST]" with
 * "[TOOL_CALLS]" or "[AVAILABLE_TOOLS]" → MISTRAL; anything else (Llama 2's
 * "[INST]", "") → TOOLS_NONE: the server answers 400 "this model's chat
 * template has no tool calling" to a request with tools. */
tools_family_t tools_family(const char *chat_template);

/* The strings family f writes into messages (tools_render) that its own
 * template has as special tokens ("[TOOL_CALLS]", "<|python_tag|>"), NULL
 * terminated (prompt_msg_t.markers); an empty list for families whose
 * markers are ordinary text. */
const char *const *tools_family_markers(tools_family_t f);

typedef enum {
    TOOLS_CHOICE_NONE = 0, /* never call: output is content only */
    TOOLS_CHOICE_AUTO,     /* the model decides */
    TOOLS_CHOICE_REQUIRED, /* at least one call, to any tool (grammar) */
    TOOLS_CHOICE_NAMED,    /* one call to tools_req_named() (grammar) */
} tools_choice_t;

/* A validated `tools` / `tool_choice` / `parallel_tool_calls` triple. */
typedef struct tools_req tools_req_t;

/* Validate the three request fields (each borrowed, NULL or json null when
 * absent). On success returns TOOLS_OK and *out is a new tools_req_t
 * (tools_req_free()), or NULL when no tools were given and tool_choice is
 * absent, "none" or "auto" (a request without tools). The request keeps
 * its own copies: the arguments may be freed afterwards.
 * Rules: tools is an array of 1 to TOOLS_MAX objects {"type":"function",
 * "function":{"name", "description"?, "parameters"?, "strict"?}}, names
 * match [A-Za-z0-9_-]{1,64} and are unique, description is a string,
 * parameters an object (a JSON Schema; absent means {"type":"object",
 * "properties":{}}; its keywords are checked only by tools_grammar()),
 * strict a boolean; tool_choice is "none", "auto" (the default), "required"
 * or {"type":"function","function":{"name": one of the tools}};
 * parallel_tool_calls is a boolean (default true).
 * On failure returns TOOLS_EINVAL (or TOOLS_ENOMEM), *out is NULL and err
 * (errcap bytes, always NUL-terminated when errcap > 0) holds a message
 * naming the field: "tools[2].function.name must be 1 to 64 letters,
 * digits, '_' or '-'". */
int tools_parse(const json_t *tools, const json_t *tool_choice, const json_t *parallel_tool_calls,
                tools_req_t **out, char *err, size_t errcap);

/* Frees a request; NULL is fine. */
void tools_req_free(tools_req_t *req);

/* Accessors; req must not be NULL. tools_req_named() is the tool of
 * TOOLS_CHOICE_NAMED (NULL otherwise), valid while req lives. */
size_t tools_req_count(const tools_req_t *req);
tools_choice_t tools_req_choice(const tools_req_t *req);
const char *tools_req_named(const tools_req_t *req);
bool tools_req_parallel(const tools_req_t *req);
/* Name and parameters schema of tool i < count (borrowed from req). */
const char *tools_req_name(const tools_req_t *req, size_t i);
const json_t *tools_req_parameters(const tools_req_t *req, size_t i);

/* Render an OpenAI messages array (borrowed; validated as the server does:
 * objects with role system/developer/user/assistant/tool and content a
 * string, an array of {"type":"text","text"} parts, or null/absent on an
 * assistant message with tool_calls) into a new array of {"role",
 * "content"} objects with string contents and roles system, user and
 * assistant only, ready for the family-less chat template: tools (req may
 * be NULL: no tools shown, but tool history in the messages still renders)
 * placed where family f puts them, assistant tool_calls rendered as call
 * text after the message's own content, "tool" messages as result text
 * (developer becomes system). Tools are shown for every tool_choice,
 * "none" included, so the prompt prefix does not depend on it.
 * On success returns TOOLS_OK and *messages_out is a new reference. On
 * failure returns TOOLS_EFAMILY (f is TOOLS_NONE and there are tools or
 * tool history), TOOLS_EINVAL (a malformed message or tool call: err names
 * it, "messages[3].tool_calls[0].function.name must be a string"),
 * TOOLS_ETOOBIG or TOOLS_ENOMEM; *messages_out is NULL. */
int tools_render(tools_family_t f, const tools_req_t *req, const json_t *messages_in,
                 json_t **messages_out, char *err, size_t errcap);

/* Read the calls out of a finished generation (`len` bytes of `text`, not
 * necessarily NUL-terminated; special tokens rendered as text). On success
 * returns TOOLS_OK with:
 *   *tool_calls: a new array [{"id":"call_<24 letters/digits>","type":
 *     "function","function":{"name":...,"arguments":"<compact JSON>"}}],
 *     or NULL when the text holds no well-formed call;
 *   *content: malloc'd text outside the calls, trimmed of surrounding
 *     whitespace, or NULL when that is empty.
 * A call is a JSON object with a string "name" and an object "arguments"
 * ("parameters" for Llama 3; a string holding a JSON object is accepted).
 * Text that starts like a call but is not one (bad JSON, missing name)
 * stays in the content, markers included. Returns TOOLS_ENOMEM (both
 * outputs NULL) when out of memory; TOOLS_NONE finds no calls. */
int tools_parse_output(tools_family_t f, const char *text, size_t len, json_t **tool_calls,
                       char **content);

/* Streaming: how many bytes at the end of the text so far could be the
 * beginning of a call marker ("<tool_c" for HERMES), so the server holds
 * them back instead of streaming them as content. For LLAMA3, whose calls
 * are the whole reply, a reply that so far is only whitespace and the
 * beginning of '{"name"' is held back entirely. 0 when nothing is pending. */
size_t tools_holdback(tools_family_t f, const char *text, size_t len);

/* Streaming: has the text so far entered a call (a complete marker, or for
 * LLAMA3 a reply starting '{"name"' or '{"type"')? From the marker on the
 * server streams no more content and reports the calls (or, if
 * tools_parse_output finds none, the rest as content) at the end. */
bool tools_in_call(tools_family_t f, const char *text, size_t len);

/* A GBNF grammar (start rule "root") that makes the whole output one call
 * (or with parallel_tool_calls one or more, for HERMES and MISTRAL; LLAMA3
 * takes one call per reply) in family f's syntax, with the canonical
 * spacing of the family's template, to the named tool (TOOLS_CHOICE_NAMED)
 * or any tool (TOOLS_CHOICE_REQUIRED), its arguments matching that tool's
 * parameters (jsonschema_to_gbnf(), rules renamed per tool so they never
 * collide). On success returns TOOLS_OK and *gbnf is malloc'd (caller
 * frees), or NULL when the choice needs no grammar (none, auto). On
 * failure *gbnf is NULL and returns TOOLS_EFAMILY, TOOLS_EUNSUPPORTED /
 * TOOLS_EINVAL (err: "tools[1].function.parameters: keyword 'pattern' is
 * not supported (at #/properties/zip)"), TOOLS_ETOOBIG or TOOLS_ENOMEM.
 * Check the result with model_grammar_check() before sampling with it. */
int tools_grammar(tools_family_t f, const tools_req_t *req, char **gbnf, char *err,
                  size_t errcap);

#endif
