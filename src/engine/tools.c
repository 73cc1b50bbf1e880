/* tools.c — see tools.h.
 *
 * Text is built in buf_t buffers with a hard maximum (TOOLS_MAX_TEXT, or
 * TOOLS_MAX_GBNF for grammars) behind a small sticky-error wrapper (tb_t),
 * so a chain of appends is checked once at the end. Model output is read
 * with a bracket scanner (json_span) that finds where one JSON value ends,
 * then json_parse() (depth-limited) parses exactly that span.
 */
#include "engine/tools.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/buf.h"
#include "engine/jsonschema.h"

/* Dumps like Python's json.dumps (the templates' tojson): ", " and ": ",
 * UTF-8 kept, keys in the given order; reals with 16 digits so 0.1 stays
 * "0.1". */
#define DUMP_FLAGS (JSON_ENCODE_ANY | JSON_REAL_PRECISION(16))
#define DUMP_COMPACT (JSON_COMPACT | DUMP_FLAGS)

static const char HERMES_OPEN[] = "<tool_call>";
static const char HERMES_CLOSE[] = "</tool_call>";
static const char LLAMA3_TAG[] = "<|python_tag|>";
static const char MISTRAL_OPEN[] = "[TOOL_CALLS]";

struct tool {
    char *name;
    json_t *function;   /* the request's function object, copied */
    json_t *parameters; /* its parameters, or the empty-object schema */
};

struct tools_req {
    size_t n;
    struct tool *tools;
    tools_choice_t choice;
    size_t named; /* index of the named tool (TOOLS_CHOICE_NAMED) */
    bool parallel;
};

const char *tools_strerror(int rc)
{
    switch (rc) {
    case TOOLS_OK: return "ok";
    case TOOLS_EINVAL: return "invalid tools request";
    case TOOLS_EFAMILY: return "this model's chat template has no tool calling";
    case TOOLS_EUNSUPPORTED: return "tool parameters schema not supported";
    case TOOLS_ETOOBIG: return "tools too large";
    case TOOLS_ENOMEM: return "out of memory";
    default: return "unknown tools error";
    }
}

const char *tools_family_name(tools_family_t f)
{
    switch (f) {
    case TOOLS_HERMES: return "hermes";
    case TOOLS_LLAMA3: return "llama3";
    case TOOLS_MISTRAL: return "mistral";
    default: return "none";
    }
}

tools_family_t tools_family(const char *t)
{
    if (!t)
        return TOOLS_HERMES; /* llama.cpp's default template is ChatML */
    if (strstr(t, "<|im_start|>"))
        return TOOLS_HERMES;
    if (strstr(t, "<|start_header_id|>"))
        return TOOLS_LLAMA3;
    if (strstr(t, "[INST]") && (strstr(t, "[TOOL_CALLS]") || strstr(t, "[AVAILABLE_TOOLS]")))
        return TOOLS_MISTRAL;
    return TOOLS_NONE;
}

const char *const *tools_family_markers(tools_family_t f)
{
    static const char *const llama3[] = { LLAMA3_TAG, NULL };
    static const char *const mistral[] = { "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                                           MISTRAL_OPEN, "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
                                           NULL };
    /* Qwen2.5's <tool_call> and the like are added tokens that plain text
     * already becomes. */
    static const char *const none[] = { NULL };
    return f == TOOLS_LLAMA3 ? llama3 : f == TOOLS_MISTRAL ? mistral : none;
}

static int fail(char *err, size_t errcap, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errcap, int rc, const char *fmt, ...)
{
    if (err && errcap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errcap, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ---- text buffers with a sticky error ---- */

typedef struct {
    buf_t b;
    int rc; /* first TOOLS_E* met; later appends do nothing */
} tb_t;

static void tb_init(tb_t *t, size_t max)
{
    buf_init(&t->b, max);
    t->rc = TOOLS_OK;
}

static void tb_put(tb_t *t, const char *s, size_t n)
{
    if (t->rc || n == 0)
        return;
    int r = buf_append(&t->b, s, n);
    if (r != BUF_OK)
        t->rc = r == BUF_ENOMEM ? TOOLS_ENOMEM : TOOLS_ETOOBIG;
}

static void tb_puts(tb_t *t, const char *s) { tb_put(t, s, strlen(s)); }

/* Append `v` serialized with jansson `flags`. */
static void tb_json(tb_t *t, const json_t *v, size_t flags)
{
    if (t->rc)
        return;
    char *s = json_dumps(v, flags);
    if (!s) {
        t->rc = TOOLS_ENOMEM;
        return;
    }
    tb_puts(t, s);
    free(s);
}

static const char *tb_text(const tb_t *t) { return t->b.data ? t->b.data : ""; }

/* ---- request ---- */

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > TOOLS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

void tools_req_free(tools_req_t *req)
{
    if (!req)
        return;
    for (size_t i = 0; i < req->n; i++) {
        free(req->tools[i].name);
        json_decref(req->tools[i].function);
        json_decref(req->tools[i].parameters);
    }
    free(req->tools);
    free(req);
}

size_t tools_req_count(const tools_req_t *req) { return req->n; }
tools_choice_t tools_req_choice(const tools_req_t *req) { return req->choice; }
bool tools_req_parallel(const tools_req_t *req) { return req->parallel; }

const char *tools_req_named(const tools_req_t *req)
{
    return req->choice == TOOLS_CHOICE_NAMED ? req->tools[req->named].name : NULL;
}

const char *tools_req_name(const tools_req_t *req, size_t i)
{
    return i < req->n ? req->tools[i].name : NULL;
}

const json_t *tools_req_parameters(const tools_req_t *req, size_t i)
{
    return i < req->n ? req->tools[i].parameters : NULL;
}

/* Validate tools[i] and fill *t. */
static int parse_tool(const json_t *tool, size_t i, struct tool *t, char *err, size_t errcap)
{
    if (!json_is_object(tool))
        return fail(err, errcap, TOOLS_EINVAL, "tools[%zu] must be an object", i);
    const json_t *type = json_object_get(tool, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0)
        return fail(err, errcap, TOOLS_EINVAL, "tools[%zu].type must be \"function\"", i);
    const json_t *fn = json_object_get(tool, "function");
    if (!json_is_object(fn))
        return fail(err, errcap, TOOLS_EINVAL, "tools[%zu].function must be an object", i);
    const json_t *name = json_object_get(fn, "name");
    if (!json_is_string(name) || !valid_name(json_string_value(name)))
        return fail(err, errcap, TOOLS_EINVAL,
                    "tools[%zu].function.name must be 1 to %d letters, digits, '_' or '-'", i,
                    TOOLS_NAME_MAX);
    const json_t *desc = json_object_get(fn, "description");
    if (desc && !json_is_string(desc) && !json_is_null(desc))
        return fail(err, errcap, TOOLS_EINVAL, "tools[%zu].function.description must be a string",
                    i);
    const json_t *params = json_object_get(fn, "parameters");
    if (params && !json_is_object(params) && !json_is_null(params))
        return fail(err, errcap, TOOLS_EINVAL,
                    "tools[%zu].function.parameters must be an object (a JSON Schema)", i);
    const json_t *strict = json_object_get(fn, "strict");
    if (strict && !json_is_boolean(strict) && !json_is_null(strict))
        return fail(err, errcap, TOOLS_EINVAL, "tools[%zu].function.strict must be a boolean",
                    i);
    t->name = strdup(json_string_value(name));
    t->function = json_deep_copy(fn);
    if (json_is_object(params))
        t->parameters = json_incref(json_object_get(t->function, "parameters"));
    else
        t->parameters = json_pack("{s:s,s:{}}", "type", "object", "properties");
    if (!t->name || !t->function || !t->parameters)
        return fail(err, errcap, TOOLS_ENOMEM, "out of memory");
    return TOOLS_OK;
}

int tools_parse(const json_t *tools, const json_t *tool_choice, const json_t *parallel,
                tools_req_t **out, char *err, size_t errcap)
{
    *out = NULL;
    if (err && errcap)
        err[0] = '\0';
    if (tools && json_is_null(tools))
        tools = NULL;
    if (tool_choice && json_is_null(tool_choice))
        tool_choice = NULL;
    if (parallel && json_is_null(parallel))
        parallel = NULL;
    if (parallel && !json_is_boolean(parallel))
        return fail(err, errcap, TOOLS_EINVAL, "parallel_tool_calls must be a boolean");

    /* tool_choice's shape first; whether a named tool exists once tools are read. */
    tools_choice_t choice = TOOLS_CHOICE_AUTO;
    const char *named = NULL;
    bool bad_choice = tool_choice && !json_is_string(tool_choice) && !json_is_object(tool_choice);
    if (json_is_string(tool_choice)) {
        const char *s = json_string_value(tool_choice);
        if (strcmp(s, "none") == 0)
            choice = TOOLS_CHOICE_NONE;
        else if (strcmp(s, "auto") == 0)
            choice = TOOLS_CHOICE_AUTO;
        else if (strcmp(s, "required") == 0)
            choice = TOOLS_CHOICE_REQUIRED;
        else
            bad_choice = true;
    } else if (json_is_object(tool_choice)) {
        const json_t *type = json_object_get(tool_choice, "type");
        const json_t *fn = json_object_get(tool_choice, "function");
        const json_t *name = json_is_object(fn) ? json_object_get(fn, "name") : NULL;
        if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0 ||
            !json_is_string(name))
            return fail(err, errcap, TOOLS_EINVAL,
                        "tool_choice must be {\"type\":\"function\",\"function\":{\"name\":...}}");
        choice = TOOLS_CHOICE_NAMED;
        named = json_string_value(name);
    }
    if (bad_choice)
        return fail(err, errcap, TOOLS_EINVAL,
                    "tool_choice must be \"none\", \"auto\", \"required\" or "
                    "{\"type\":\"function\",\"function\":{\"name\":...}}");

    if (!tools) {
        if (choice == TOOLS_CHOICE_REQUIRED || choice == TOOLS_CHOICE_NAMED)
            return fail(err, errcap, TOOLS_EINVAL, "tool_choice %s needs tools",
                        named ? "with a function" : "\"required\"");
        return TOOLS_OK;
    }
    if (!json_is_array(tools))
        return fail(err, errcap, TOOLS_EINVAL, "tools must be an array");
    size_t n = json_array_size(tools);
    if (n < 1 || n > TOOLS_MAX)
        return fail(err, errcap, TOOLS_EINVAL, "tools must hold 1 to %d tools (it has %zu)",
                    TOOLS_MAX, n);

    tools_req_t *req = calloc(1, sizeof *req);
    if (!req || !(req->tools = calloc(n, sizeof *req->tools))) {
        free(req);
        return fail(err, errcap, TOOLS_ENOMEM, "out of memory");
    }
    req->choice = choice;
    req->parallel = parallel ? json_is_true(parallel) : true;
    int rc = TOOLS_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = parse_tool(json_array_get(tools, i), i, &req->tools[i], err, errcap);
        req->n = i + 1; /* freed by tools_req_free even when half filled */
        for (size_t j = 0; j < i && !rc; j++)
            if (strcmp(req->tools[j].name, req->tools[i].name) == 0)
                rc = fail(err, errcap, TOOLS_EINVAL,
                          "tools[%zu].function.name '%s' is already the name of tools[%zu]", i,
                          req->tools[i].name, j);
    }
    if (!rc && named) {
        size_t k = 0;
        while (k < req->n && strcmp(req->tools[k].name, named) != 0)
            k++;
        if (k == req->n)
            rc = fail(err, errcap, TOOLS_EINVAL,
                      "tool_choice.function.name '%.64s' is not one of the tools", named);
        req->named = k;
    }
    if (rc) {
        tools_req_free(req);
        return rc;
    }
    *out = req;
    return TOOLS_OK;
}

/* ---- rendering ---- */

/* Message i's content appended to t: a string, text parts, or null/absent
 * (as ""; only where allow_empty). */
static int put_content(tb_t *t, const json_t *m, size_t i, bool allow_empty, char *err,
                       size_t errcap)
{
    const json_t *c = json_object_get(m, "content");
    if (json_is_string(c)) {
        tb_put(t, json_string_value(c), json_string_length(c));
        return TOOLS_OK;
    }
    if (json_is_array(c)) {
        size_t k;
        const json_t *part;
        json_array_foreach(c, k, part) {
            const json_t *type = json_object_get(part, "type");
            const json_t *text = json_object_get(part, "text");
            if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
                !json_is_string(text))
                return fail(err, errcap, TOOLS_EINVAL,
                            "messages[%zu].content: only text parts are supported", i);
            tb_put(t, json_string_value(text), json_string_length(text));
        }
        return TOOLS_OK;
    }
    if (!c || json_is_null(c)) {
        if (allow_empty)
            return TOOLS_OK;
        return fail(err, errcap, TOOLS_EINVAL, "messages[%zu].content must be a string", i);
    }
    return fail(err, errcap, TOOLS_EINVAL, "messages[%zu].content must be a string", i);
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Append s[0..n) without surrounding whitespace (Jinja's |trim). */
static void tb_put_trim(tb_t *t, const char *s, size_t n)
{
    while (n && is_ws(*s))
        s++, n--;
    while (n && is_ws(s[n - 1]))
        n--;
    tb_put(t, s, n);
}

/* A tool as the templates show it: {"type": "function", "function": {...}}
 * (Mistral's leaves out a "return" key). New reference or NULL. */
static json_t *tool_json(const struct tool *tl, bool drop_return)
{
    json_t *fn = tl->function;
    if (drop_return && json_object_get(fn, "return")) {
        fn = json_copy(fn);
        if (!fn)
            return NULL;
        json_object_del(fn, "return");
    } else {
        json_incref(fn);
    }
    json_t *o = json_object();
    if (!o || json_object_set_new(o, "type", json_string("function")) ||
        json_object_set_new(o, "function", fn)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The system text (HERMES: Qwen2.5's words), user text (LLAMA3, before the
 * first user message) or prefix (MISTRAL, before the last user message)
 * that shows the tools. */
static void put_tools(tb_t *t, tools_family_t f, const tools_req_t *req)
{
    switch (f) {
    case TOOLS_HERMES:
        tb_puts(t, "# Tools\n\nYou may call one or more functions to assist with the user "
                   "query.\n\nYou are provided with function signatures within <tools></tools> "
                   "XML tags:\n<tools>");
        for (size_t i = 0; i < req->n; i++) {
            json_t *tj = tool_json(&req->tools[i], false);
            if (!tj)
                t->rc = t->rc ? t->rc : TOOLS_ENOMEM;
            tb_puts(t, "\n");
            if (tj)
                tb_json(t, tj, DUMP_FLAGS);
            json_decref(tj);
        }
        tb_puts(t, "\n</tools>\n\nFor each function call, return a json object with function "
                   "name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                   "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
                   "</tool_call>");
        break;
    case TOOLS_LLAMA3:
        tb_puts(t, "Given the following functions, please respond with a JSON for a function "
                   "call with its proper arguments that best answers the given prompt.\n\n"
                   "Respond in the format {\"name\": function name, \"parameters\": dictionary "
                   "of argument name and its value}.Do not use variables.\n\n");
        for (size_t i = 0; i < req->n; i++) {
            json_t *tj = tool_json(&req->tools[i], false);
            if (!tj)
                t->rc = t->rc ? t->rc : TOOLS_ENOMEM;
            if (tj)
                tb_json(t, tj, DUMP_FLAGS | JSON_INDENT(4));
            json_decref(tj);
            tb_puts(t, "\n\n");
        }
        break;
    case TOOLS_MISTRAL: {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < req->n; i++)
            if (json_array_append_new(arr, tool_json(&req->tools[i], true))) {
                json_decref(arr);
                arr = NULL;
            }
        if (!arr)
            t->rc = t->rc ? t->rc : TOOLS_ENOMEM;
        tb_puts(t, "[AVAILABLE_TOOLS]");
        if (arr)
            tb_json(t, arr, DUMP_FLAGS);
        tb_puts(t, "[/AVAILABLE_TOOLS]");
        json_decref(arr);
        break;
    }
    default: break;
    }
}

/* What Llama 3.1's template puts at the top of the system turn when there
 * are tools (its date_string default included, for a stable prefix). */
static const char LLAMA3_SYSTEM[] =
    "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";

/* Mistral wants call ids of exactly 9 letters/digits: the last 9 of the
 * OpenAI id's letters and digits, left-padded with '0'. The same id gives
 * the same 9 on the call and on its result. */
static void mistral_id(const json_t *id, char out[10])
{
    const char *s = json_is_string(id) ? json_string_value(id) : "";
    char alnum[10];
    size_t n = 0;
    for (; *s; s++) {
        char c = *s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
            if (n == 9) {
                memmove(alnum, alnum + 1, 8);
                n = 8;
            }
            alnum[n++] = c;
        }
    }
    memset(out, '0', 9 - n);
    memcpy(out + 9 - n, alnum, n);
    out[9] = '\0';
}

/* The arguments of a call as the templates show them (tojson of the
 * object): OpenAI sends a string holding JSON; one that does not parse is
 * shown as it is. */
static void put_arguments(tb_t *t, const json_t *args)
{
    if (!args || json_is_null(args)) {
        tb_puts(t, "{}");
    } else if (json_is_string(args)) {
        json_t *v = NULL;
        if (json_parse(json_string_value(args), json_string_length(args), &v, NULL) == JSON_OK) {
            tb_json(t, v, DUMP_FLAGS);
            json_decref(v);
        } else {
            tb_put(t, json_string_value(args), json_string_length(args));
        }
    } else {
        tb_json(t, args, DUMP_FLAGS);
    }
}

/* Assistant message i's tool_calls appended to t as family f's call text. */
static int put_calls(tb_t *t, tools_family_t f, const json_t *calls, size_t i, bool had_content,
                     char *err, size_t errcap)
{
    if (!json_is_array(calls))
        return fail(err, errcap, TOOLS_EINVAL, "messages[%zu].tool_calls must be an array", i);
    size_t k;
    const json_t *call;
    if (f == TOOLS_MISTRAL)
        tb_puts(t, "[TOOL_CALLS][");
    else if (f == TOOLS_LLAMA3 && had_content)
        tb_puts(t, LLAMA3_TAG);
    json_array_foreach(calls, k, call) {
        const json_t *fn = json_object_get(call, "function");
        const json_t *name = json_object_get(fn, "name");
        if (!json_is_object(fn))
            return fail(err, errcap, TOOLS_EINVAL,
                        "messages[%zu].tool_calls[%zu].function must be an object", i, k);
        if (!json_is_string(name))
            return fail(err, errcap, TOOLS_EINVAL,
                        "messages[%zu].tool_calls[%zu].function.name must be a string", i, k);
        const json_t *args = json_object_get(fn, "arguments");
        if (args && !json_is_string(args) && !json_is_object(args) && !json_is_null(args))
            return fail(err, errcap, TOOLS_EINVAL,
                        "messages[%zu].tool_calls[%zu].function.arguments must be a string", i,
                        k);
        switch (f) {
        case TOOLS_HERMES:
            /* Qwen2.5: "\n" before every call that follows text. */
            tb_puts(t, k || had_content ? "\n<tool_call>\n{\"name\": \""
                                        : "<tool_call>\n{\"name\": \"");
            tb_puts(t, json_string_value(name));
            tb_puts(t, "\", \"arguments\": ");
            put_arguments(t, args);
            tb_puts(t, "}\n</tool_call>");
            break;
        case TOOLS_LLAMA3:
            if (k)
                tb_puts(t, "\n");
            tb_puts(t, "{\"name\": \"");
            tb_puts(t, json_string_value(name));
            tb_puts(t, "\", \"parameters\": ");
            put_arguments(t, args);
            tb_puts(t, "}");
            break;
        default: {
            char id[10];
            mistral_id(json_object_get(call, "id"), id);
            if (k)
                tb_puts(t, ", ");
            tb_puts(t, "{\"name\": \"");
            tb_puts(t, json_string_value(name));
            tb_puts(t, "\", \"arguments\": ");
            put_arguments(t, args);
            tb_puts(t, ", \"id\": \"");
            tb_puts(t, id);
            tb_puts(t, "\"}");
            break;
        }
        }
    }
    if (f == TOOLS_MISTRAL)
        tb_puts(t, "]");
    return TOOLS_OK;
}

/* Append {"role": role, "content": t's text} to out. */
static int push(json_t *out, const char *role, const tb_t *t)
{
    if (t->rc)
        return t->rc;
    json_t *m = json_object();
    if (!m || json_object_set_new(m, "role", json_string(role)) ||
        json_object_set_new(m, "content", json_stringn(tb_text(t), t->b.len)) ||
        json_array_append_new(out, m))
        return TOOLS_ENOMEM;
    return TOOLS_OK;
}

static int push_text(json_t *out, const char *role, const char *text)
{
    tb_t t;
    tb_init(&t, TOOLS_MAX_TEXT);
    tb_puts(&t, text);
    int rc = push(out, role, &t);
    buf_cleanup(&t.b);
    return rc;
}

/* Role of message i, developer read as system; NULL (and err) if invalid. */
static const char *role_of(const json_t *m, size_t i, char *err, size_t errcap)
{
    const json_t *r = json_object_get(m, "role");
    const char *s = json_is_string(r) ? json_string_value(r) : "";
    if (strcmp(s, "developer") == 0)
        return "system";
    if (strcmp(s, "system") == 0 || strcmp(s, "user") == 0 || strcmp(s, "assistant") == 0 ||
        strcmp(s, "tool") == 0)
        return s;
    if (!json_is_object(m))
        fail(err, errcap, TOOLS_EINVAL, "messages[%zu] must be an object", i);
    else
        fail(err, errcap, TOOLS_EINVAL,
             "messages[%zu].role must be system, user, assistant or tool", i);
    return NULL;
}

static bool has_calls(const json_t *m)
{
    const json_t *c = json_object_get(m, "tool_calls");
    return json_is_array(c) && json_array_size(c) > 0;
}

int tools_render(tools_family_t f, const tools_req_t *req, const json_t *in, json_t **messages_out,
                 char *err, size_t errcap)
{
    *messages_out = NULL;
    if (err && errcap)
        err[0] = '\0';
    if (!json_is_array(in))
        return fail(err, errcap, TOOLS_EINVAL, "messages must be an array");
    size_t n = json_array_size(in);
    bool tools = req && req->n > 0;
    bool history = false;
    size_t first_user = SIZE_MAX, last_user = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(in, i);
        const char *role = role_of(m, i, err, errcap);
        if (!role)
            return TOOLS_EINVAL;
        if (strcmp(role, "tool") == 0 || (strcmp(role, "assistant") == 0 && has_calls(m)))
            history = true;
        if (strcmp(role, "user") == 0) {
            if (first_user == SIZE_MAX)
                first_user = i;
            last_user = i;
        }
    }
    if (f == TOOLS_NONE && (tools || history))
        return fail(err, errcap, TOOLS_EFAMILY, "this model's chat template has no tool calling");
    bool sys0 = n > 0 && strcmp(role_of(json_array_get(in, 0), 0, NULL, 0), "system") == 0;
    /* Llama 3 puts the tools into the first message after the system one,
     * which should be the user's; if it is not, a user message of its own. */
    size_t llama_user = sys0 ? 1 : 0;
    bool llama_own_user = tools && f == TOOLS_LLAMA3 && (first_user != llama_user);

    json_t *out = json_array();
    if (!out)
        return fail(err, errcap, TOOLS_ENOMEM, "out of memory");
    tb_t t, results;
    tb_init(&t, TOOLS_MAX_TEXT);
    tb_init(&results, TOOLS_MAX_TEXT);
    bool pending = false; /* results holds merged tool results */
    int rc = TOOLS_OK;

    if (tools && !sys0 && f == TOOLS_HERMES) {
        put_tools(&t, f, req);
        rc = push(out, "system", &t);
    } else if (tools && !sys0 && f == TOOLS_LLAMA3) {
        rc = push_text(out, "system", "Environment: ipython\nCutting Knowledge Date: December "
                                      "2023\nToday Date: 26 Jul 2024");
    }
    for (size_t i = 0; i <= n && !rc; i++) {
        const json_t *m = i < n ? json_array_get(in, i) : NULL;
        const char *role = m ? role_of(m, i, NULL, 0) : "";
        bool is_tool = strcmp(role, "tool") == 0;
        if (pending && !is_tool) {
            rc = push(out, "user", &results);
            buf_reset(&results.b);
            pending = false;
            if (rc)
                break;
        }
        if (llama_own_user && i == llama_user) {
            buf_reset(&t.b);
            put_tools(&t, f, req);
            /* Jinja would leave the trailing blank line; the built-in
             * template trims it anyway. */
            while (t.b.len && t.b.data[t.b.len - 1] == '\n')
                t.b.data[--t.b.len] = '\0';
            if ((rc = push(out, "user", &t)))
                break;
        }
        if (i == n)
            break;
        buf_reset(&t.b);
        if (is_tool) {
            const json_t *id = json_object_get(m, "tool_call_id");
            switch (f) {
            case TOOLS_HERMES:
                tb_puts(&results, pending ? "\n<tool_response>\n" : "<tool_response>\n");
                rc = put_content(&results, m, i, true, err, errcap);
                tb_puts(&results, "\n</tool_response>");
                break;
            case TOOLS_LLAMA3:
                rc = put_content(&results, m, i, true, err, errcap);
                break;
            default: {
                char id9[10];
                mistral_id(id, id9);
                tb_puts(&results, "[TOOL_RESULTS]{\"content\": ");
                rc = put_content(&results, m, i, true, err, errcap);
                tb_puts(&results, ", \"call_id\": \"");
                tb_puts(&results, id9);
                tb_puts(&results, "\"}[/TOOL_RESULTS]");
                break;
            }
            }
            pending = true;
            if (!rc && f == TOOLS_LLAMA3) { /* one turn per result, as ipython turns */
                rc = push(out, "user", &results);
                buf_reset(&results.b);
                pending = false;
            }
            continue;
        }
        if (strcmp(role, "system") == 0) {
            if (i == 0 && tools && f == TOOLS_LLAMA3) {
                tb_puts(&t, LLAMA3_SYSTEM);
                tb_t c;
                tb_init(&c, TOOLS_MAX_TEXT);
                rc = put_content(&c, m, i, false, err, errcap);
                tb_put_trim(&t, tb_text(&c), c.b.len);
                t.rc = t.rc ? t.rc : c.rc;
                buf_cleanup(&c.b);
            } else {
                rc = put_content(&t, m, i, false, err, errcap);
                if (i == 0 && tools && f == TOOLS_HERMES) {
                    tb_puts(&t, "\n\n");
                    put_tools(&t, f, req);
                }
            }
        } else if (strcmp(role, "user") == 0) {
            if (tools && f == TOOLS_LLAMA3 && i == first_user && !llama_own_user) {
                put_tools(&t, f, req);
                tb_t c;
                tb_init(&c, TOOLS_MAX_TEXT);
                rc = put_content(&c, m, i, false, err, errcap);
                tb_put_trim(&t, tb_text(&c), c.b.len);
                t.rc = t.rc ? t.rc : c.rc;
                buf_cleanup(&c.b);
            } else {
                if (tools && f == TOOLS_MISTRAL && i == last_user)
                    put_tools(&t, f, req);
                rc = put_content(&t, m, i, false, err, errcap);
            }
        } else { /* assistant */
            bool calls = has_calls(m);
            rc = put_content(&t, m, i, calls, err, errcap);
            if (!rc && calls)
                rc = put_calls(&t, f, json_object_get(m, "tool_calls"), i, t.b.len > 0, err,
                               errcap);
        }
        if (!rc)
            rc = push(out, role, &t);
    }
    if (!rc)
        rc = t.rc ? t.rc : results.rc;
    buf_cleanup(&t.b);
    buf_cleanup(&results.b);
    if (rc) {
        json_decref(out);
        if (rc == TOOLS_ENOMEM)
            return fail(err, errcap, rc, "out of memory");
        if (rc == TOOLS_ETOOBIG)
            return fail(err, errcap, rc, "a rendered message is over %u bytes",
                        (unsigned)TOOLS_MAX_TEXT);
        return rc;
    }
    *messages_out = out;
    return TOOLS_OK;
}

/* ---- reading calls out of the output ---- */

/* Length of the JSON object or array that starts at s[0] ('{' or '['),
 * found by bracket counting outside strings; 0 if it does not end within n
 * bytes. Whether it is valid JSON is json_parse's call. */
static size_t json_span(const char *s, size_t n)
{
    size_t depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return 0;
            if (--depth == 0)
                return i + 1;
        }
    }
    return 0;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && is_ws(s[i]))
        i++;
    return i;
}

/* "call_" and 24 random letters and digits. */
static void new_id(char out[TOOLS_ID_LEN + 1])
{
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    memcpy(out, "call_", 5);
    size_t k = 5;
    unsigned char r[64];
    uint64_t x = 0;
    while (k < TOOLS_ID_LEN) {
        ssize_t got = getrandom(r, sizeof r, 0);
        if (got <= 0) { /* no entropy source: a clock-seeded xorshift */
            if (!x) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                x = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ (uintptr_t)out;
                x |= 1;
            }
            for (size_t j = 0; j < sizeof r; j++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                r[j] = (unsigned char)x;
            }
            got = sizeof r;
        }
        for (ssize_t j = 0; j < got && k < TOOLS_ID_LEN; j++)
            if (r[j] < 248) /* 4 * 62: no bias */
                out[k++] = set[r[j] % 62];
    }
    out[TOOLS_ID_LEN] = '\0';
}

/* If obj is a call ({"name": string, argkey or "arguments"/"parameters":
 * object or JSON-object string}), append it to calls in OpenAI's shape and
 * return 1; 0 if it is not a call; TOOLS_ENOMEM. */
static int add_call(json_t *calls, const json_t *obj)
{
    const json_t *name = json_object_get(obj, "name");
    if (!json_is_object(obj) || !json_is_string(name) || json_string_length(name) == 0)
        return 0;
    const json_t *args = json_object_get(obj, "arguments");
    if (!args)
        args = json_object_get(obj, "parameters");
    json_t *parsed = NULL;
    if (json_is_string(args)) {
        if (json_parse(json_string_value(args), json_string_length(args), &parsed, NULL) != JSON_OK)
            return 0;
        args = parsed;
    }
    if (args && !json_is_object(args)) {
        json_decref(parsed);
        return 0;
    }
    char *text = args ? json_dumps(args, DUMP_COMPACT) : strdup("{}");
    json_decref(parsed);
    char id[TOOLS_ID_LEN + 1];
    new_id(id);
    /* Mistral's own 9-letter id ends ours, so the call renders back the
     * same (mistral_id takes the last 9) and the cached prefix matches. */
    const json_t *own = json_object_get(obj, "id");
    if (json_is_string(own) && json_string_length(own) == 9) {
        const char *o = json_string_value(own);
        size_t k = 0;
        while (k < 9 && ((o[k] >= 'a' && o[k] <= 'z') || (o[k] >= 'A' && o[k] <= 'Z') ||
                         (o[k] >= '0' && o[k] <= '9')))
            k++;
        if (k == 9)
            memcpy(id + TOOLS_ID_LEN - 9, o, 9);
    }
    json_t *c = text ? json_pack("{s:s,s:s,s:{s:O,s:s}}", "id", id, "type", "function",
                                 "function", "name", name, "arguments", text)
                     : NULL;
    free(text);
    if (!c || json_array_append_new(calls, c))
        return TOOLS_ENOMEM;
    return 1;
}

/* Read one JSON value (object or array of calls) at s[i]; on success add
 * its calls and return the end offset, else 0 (nothing added). *rc gets
 * TOOLS_ENOMEM when out of memory. */
static size_t read_calls(const char *s, size_t n, size_t i, json_t *calls, int *rc)
{
    if (i >= n || (s[i] != '{' && s[i] != '['))
        return 0;
    size_t span = json_span(s + i, n - i);
    json_t *v = NULL;
    if (!span || json_parse(s + i, span, &v, NULL) != JSON_OK)
        return 0;
    size_t before = json_array_size(calls);
    int r = 1;
    if (json_is_array(v)) {
        size_t k;
        json_t *e;
        if (json_array_size(v) == 0)
            r = 0;
        json_array_foreach(v, k, e) {
            if ((r = add_call(calls, e)) <= 0)
                break;
        }
    } else {
        r = add_call(calls, v);
    }
    json_decref(v);
    if (r <= 0) { /* all or nothing */
        while (json_array_size(calls) > before)
            json_array_remove(calls, json_array_size(calls) - 1);
        if (r < 0)
            *rc = r;
        return 0;
    }
    return i + span;
}

static const void *find(const char *s, size_t n, size_t from, const char *needle)
{
    return from <= n ? memmem(s + from, n - from, needle, strlen(needle)) : NULL;
}

/* Calls after a marker at s[at] (just past the marker): family syntax.
 * Returns the end of the consumed text, or 0 if no calls are there. */
static size_t after_marker(tools_family_t f, const char *s, size_t n, size_t at, json_t *calls,
                           int *rc)
{
    size_t i = skip_ws(s, n, at);
    if (f == TOOLS_HERMES) {
        size_t before = json_array_size(calls);
        size_t e = read_calls(s, n, i, calls, rc);
        if (!e)
            return 0;
        e = skip_ws(s, n, e);
        if (n - e >= sizeof HERMES_CLOSE - 1 &&
            memcmp(s + e, HERMES_CLOSE, sizeof HERMES_CLOSE - 1) == 0)
            return e + sizeof HERMES_CLOSE - 1;
        if (e == n) /* stopped before the closing tag */
            return e;
        while (json_array_size(calls) > before)
            json_array_remove(calls, json_array_size(calls) - 1);
        return 0;
    }
    /* LLAMA3 and MISTRAL: one or more values, separated by ';' or space. */
    size_t end = 0;
    for (;;) {
        size_t e = read_calls(s, n, i, calls, rc);
        if (!e)
            break;
        end = e;
        i = skip_ws(s, n, e);
        if (i < n && s[i] == ';')
            i = skip_ws(s, n, i + 1);
    }
    return end;
}

int tools_parse_output(tools_family_t f, const char *text, size_t len, json_t **tool_calls,
                       char **content)
{
    *tool_calls = NULL;
    *content = NULL;
    json_t *calls = json_array();
    tb_t c;
    tb_init(&c, len + 1);
    if (!calls) {
        buf_cleanup(&c.b);
        return TOOLS_ENOMEM;
    }
    int rc = TOOLS_OK;
    const char *marker = f == TOOLS_HERMES ? HERMES_OPEN
                         : f == TOOLS_LLAMA3 ? LLAMA3_TAG
                         : f == TOOLS_MISTRAL ? MISTRAL_OPEN
                                              : NULL;
    size_t copied = 0, from = 0;
    if (f == TOOLS_LLAMA3) { /* a reply that is a call, with no tag */
        size_t e = after_marker(f, text, len, 0, calls, &rc);
        if (e)
            copied = from = e;
    }
    while (marker && !rc) {
        const char *p = find(text, len, from, marker);
        if (!p)
            break;
        size_t at = (size_t)(p - text), past = at + strlen(marker);
        size_t e = after_marker(f, text, len, past, calls, &rc);
        if (e) {
            tb_put(&c, text + copied, at - copied);
            copied = from = e;
        } else {
            from = past; /* not a call: stays in the content */
        }
    }
    tb_put(&c, text + copied, len - copied);
    if (!rc)
        rc = c.rc;
    if (rc) {
        json_decref(calls);
        buf_cleanup(&c.b);
        return TOOLS_ENOMEM;
    }
    if (json_array_size(calls) == 0) {
        json_decref(calls);
        calls = NULL;
    }
    const char *s = tb_text(&c);
    size_t a = skip_ws(s, c.b.len, 0), b = c.b.len;
    while (b > a && is_ws(s[b - 1]))
        b--;
    if (b > a) {
        *content = strndup(s + a, b - a);
        if (!*content) {
            json_decref(calls);
            buf_cleanup(&c.b);
            return TOOLS_ENOMEM;
        }
    }
    buf_cleanup(&c.b);
    *tool_calls = calls;
    return TOOLS_OK;
}

/* Longest k < strlen(m) such that the text ends with the first k bytes of m. */
static size_t partial_suffix(const char *s, size_t n, const char *m)
{
    size_t ml = strlen(m);
    for (size_t k = ml - 1 < n ? ml - 1 : n; k > 0; k--)
        if (memcmp(s + n - k, m, k) == 0)
            return k;
    return 0;
}

/* LLAMA3: 1 if the reply so far starts a call ('{', space, '"name"' or
 * '"type"'), -1 if it could still become one, 0 if it cannot. */
static int llama3_start(const char *s, size_t n)
{
    size_t i = skip_ws(s, n, 0);
    if (i == n)
        return -1;
    if (s[i] != '{')
        return 0;
    i = skip_ws(s, n, i + 1);
    static const char *const keys[] = {"\"name\"", "\"type\""};
    int r = 0;
    for (size_t k = 0; k < 2; k++) {
        size_t kl = strlen(keys[k]), have = n - i < kl ? n - i : kl;
        if (memcmp(s + i, keys[k], have) == 0)
            r = have == kl ? 1 : (r ? r : -1);
        if (r == 1)
            break;
    }
    return r;
}

size_t tools_holdback(tools_family_t f, const char *text, size_t len)
{
    switch (f) {
    case TOOLS_HERMES: return partial_suffix(text, len, HERMES_OPEN);
    case TOOLS_MISTRAL: return partial_suffix(text, len, MISTRAL_OPEN);
    case TOOLS_LLAMA3:
        if (llama3_start(text, len) != 0)
            return len;
        return partial_suffix(text, len, LLAMA3_TAG);
    default: return 0;
    }
}

bool tools_in_call(tools_family_t f, const char *text, size_t len)
{
    switch (f) {
    case TOOLS_HERMES: return find(text, len, 0, HERMES_OPEN) != NULL;
    case TOOLS_MISTRAL: return find(text, len, 0, MISTRAL_OPEN) != NULL;
    case TOOLS_LLAMA3:
        return llama3_start(text, len) == 1 || find(text, len, 0, LLAMA3_TAG) != NULL;
    default: return false;
    }
}

/* ---- grammar ---- */

/* A GBNF string literal of s. */
static void put_literal(tb_t *t, const char *s)
{
    tb_puts(t, "\"");
    for (; *s; s++) {
        switch (*s) {
        case '"': tb_puts(t, "\\\""); break;
        case '\\': tb_puts(t, "\\\\"); break;
        case '\n': tb_puts(t, "\\n"); break;
        case '\r': tb_puts(t, "\\r"); break;
        case '\t': tb_puts(t, "\\t"); break;
        default: tb_put(t, s, 1);
        }
    }
    tb_puts(t, "\"");
}

static bool word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* Append grammar g with every rule name prefixed: names are the word runs
 * outside "literals", [classes], {counts} and # comments. */
static void put_prefixed(tb_t *t, const char *g, const char *prefix)
{
    size_t n = strlen(g), i = 0;
    while (i < n) {
        char c = g[i];
        size_t j = i + 1;
        if (c == '"' || c == '[') {
            char close = c == '"' ? '"' : ']';
            while (j < n && g[j] != close)
                j += g[j] == '\\' ? 2 : 1;
            j = j < n ? j + 1 : n;
        } else if (c == '{') {
            while (j < n && g[j] != '}')
                j++;
            j = j < n ? j + 1 : n;
        } else if (c == '#') {
            while (j < n && g[j] != '\n')
                j++;
        } else if (word_char(c)) {
            while (j < n && word_char(g[j]))
                j++;
            tb_puts(t, prefix);
        }
        tb_put(t, g + i, j - i);
        i = j;
    }
}

int tools_grammar(tools_family_t f, const tools_req_t *req, char **gbnf, char *err,
                  size_t errcap)
{
    *gbnf = NULL;
    if (err && errcap)
        err[0] = '\0';
    if (!req || (req->choice != TOOLS_CHOICE_REQUIRED && req->choice != TOOLS_CHOICE_NAMED))
        return TOOLS_OK;
    if (f == TOOLS_NONE)
        return fail(err, errcap, TOOLS_EFAMILY, "this model's chat template has no tool calling");
    bool many = req->parallel && f != TOOLS_LLAMA3;
    const char *argkey = f == TOOLS_LLAMA3 ? "parameters" : "arguments";

    tb_t t;
    tb_init(&t, TOOLS_MAX_GBNF);
    switch (f) {
    case TOOLS_HERMES:
        tb_puts(&t, many ? "root ::= tc-one ( \"\\n\" tc-one )*\n" : "root ::= tc-one\n");
        tb_puts(&t, "tc-one ::= \"<tool_call>\\n\" tc-call \"\\n</tool_call>\"\n");
        break;
    case TOOLS_LLAMA3: tb_puts(&t, "root ::= tc-call\n"); break;
    default:
        tb_puts(&t, many ? "root ::= \"[TOOL_CALLS][\" tc-call ( \", \" tc-call )* \"]\"\n"
                         : "root ::= \"[TOOL_CALLS][\" tc-call \"]\"\n");
        break;
    }
    size_t lo = req->choice == TOOLS_CHOICE_NAMED ? req->named : 0;
    size_t hi = req->choice == TOOLS_CHOICE_NAMED ? req->named + 1 : req->n;
    tb_puts(&t, "tc-call ::=");
    for (size_t i = lo; i < hi; i++) {
        char rule[32];
        snprintf(rule, sizeof rule, "%s tc-c%zu", i > lo ? " |" : "", i);
        tb_puts(&t, rule);
    }
    tb_puts(&t, "\n");
    int rc = TOOLS_OK;
    for (size_t i = lo; i < hi && !rc && !t.rc; i++) {
        char *g = NULL, jerr[256];
        int jr = jsonschema_to_gbnf(req->tools[i].parameters, &g, jerr, sizeof jerr);
        if (jr != JSONSCHEMA_OK) {
            rc = jr == JSONSCHEMA_EUNSUPPORTED ? TOOLS_EUNSUPPORTED
                 : jr == JSONSCHEMA_ETOOBIG    ? TOOLS_ETOOBIG
                 : jr == JSONSCHEMA_ENOMEM     ? TOOLS_ENOMEM
                                               : TOOLS_EINVAL;
            fail(err, errcap, rc, "tools[%zu].function.parameters: %s", i, jerr);
            break;
        }
        /* {"name": "X", "arguments": ARGS}: the spacing the templates show. */
        char head[TOOLS_NAME_MAX + 64], prefix[32];
        snprintf(head, sizeof head, "{\"name\": \"%s\", \"%s\": ", req->tools[i].name, argkey);
        snprintf(prefix, sizeof prefix, "t%zu-", i);
        char rule[64];
        snprintf(rule, sizeof rule, "tc-c%zu ::= ", i);
        tb_puts(&t, rule);
        put_literal(&t, head);
        tb_puts(&t, " ");
        tb_puts(&t, prefix);
        /* Mistral's calls carry their 9-letter id. */
        tb_puts(&t, f == TOOLS_MISTRAL ? "root \", \\\"id\\\": \\\"\" [a-zA-Z0-9]{9} \"\\\"}\"\n"
                                       : "root \"}\"\n");
        put_prefixed(&t, g, prefix);
        free(g);
    }
    if (!rc && t.rc)
        rc = fail(err, errcap, t.rc, t.rc == TOOLS_ENOMEM ? "out of memory"
                                                          : "the tools' grammar is over %u bytes",
                  (unsigned)TOOLS_MAX_GBNF);
    if (rc) {
        buf_cleanup(&t.b);
        return rc;
    }
    *gbnf = buf_steal(&t.b, NULL);
    return *gbnf ? TOOLS_OK : fail(err, errcap, TOOLS_ENOMEM, "out of memory");
}
