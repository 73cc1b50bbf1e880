/* jsonschema.c — JSON Schema → GBNF, and a validator for the same subset.
 *
 * The converter walks the schema once. Every subschema becomes a rule
 * ("s<N>"), built in a local buffer while its children append their own
 * rules to the output; rule order does not matter in GBNF. Shared pieces
 * (whitespace, strings, numbers, any-value, formats) are fixed rules,
 * appended at the end when used. A $ref gets one rule per target, made
 * before its body is walked, so a recursive reference just names it. A
 * reference back to a rule still being built with no '{' or '[' in between
 * would be left recursion (llama.cpp refuses it, and the value would be
 * infinite): that is refused here.
 *
 * The validator answers "does this value match" with the same reading of
 * each keyword, so a test can check what the grammar let the model write.
 */
#include "engine/jsonschema.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the fixed rules ---- */

#define R_WS "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n"
#define R_HEX "hex ::= [0-9a-fA-F]\n"
/* One code point: a raw character or an escape. \u escapes of NUL and of
 * surrogates are left out: jansson refuses both. */
#define R_CHAR                                                                               \
    "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" esc-u )\n"           \
    "esc-u ::= [1-9a-cA-C] hex hex hex | \"0\" ( [1-9a-fA-F] hex hex | \"0\" ( [1-9a-fA-F] hex " \
    "| \"0\" [1-9a-fA-F] ) ) | [eEfF] hex hex hex | [dD] [0-7] hex hex\n"
#define R_STRING "string ::= \"\\\"\" char* \"\\\"\"\n"
#define R_INTEGER "integer ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} )\n"
#define R_NUMBER "number ::= integer ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?\n"
#define R_BOOLEAN "boolean ::= \"true\" | \"false\"\n"
#define R_NULL "null ::= \"null\"\n"
#define R_VALUE "value ::= object | array | string | number | boolean | null\n"
#define R_OBJECT                                                                         \
    "object ::= \"{\" ws ( string ws \":\" ws value ws ( \",\" ws string ws \":\" ws value " \
    "ws )* )? \"}\"\n"
#define R_ARRAY "array ::= \"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\"\n"
#define R_DATE                                                                            \
    "date ::= [0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [12] [0-9] " \
    "| \"3\" [01] )\n"
#define R_TIME                                                                          \
    "time ::= ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" "   \
    "[0-9]{1,6} )? ( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )\n"
#define R_DATETIME "date-time ::= date \"T\" time\n"
#define R_UUID "uuid ::= hex{8} \"-\" hex{4} \"-\" hex{4} \"-\" hex{4} \"-\" hex{12}\n"
#define R_LABEL "label ::= [a-zA-Z0-9] [a-zA-Z0-9-]{0,62}\n"
#define R_EMAIL "email ::= [a-zA-Z0-9._%+-]{1,64} \"@\" label ( \".\" label ){1,4}\n"
#define R_HOSTNAME "hostname ::= label ( \".\" label ){0,8}\n"
#define R_IPV4                                                                            \
    "ipv4 ::= octet \".\" octet \".\" octet \".\" octet\n"                                \
    "octet ::= \"25\" [0-5] | \"2\" [0-4] [0-9] | \"1\" [0-9] [0-9] | [1-9] [0-9] | [0-9]\n"

enum {
    P_WS = 1u << 0, P_HEX = 1u << 1, P_CHAR = 1u << 2, P_STRING = 1u << 3,
    P_INTEGER = 1u << 4, P_NUMBER = 1u << 5, P_BOOLEAN = 1u << 6, P_NULL = 1u << 7,
    P_VALUE = 1u << 8, P_OBJECT = 1u << 9, P_ARRAY = 1u << 10, P_DATE = 1u << 11,
    P_TIME = 1u << 12, P_DATETIME = 1u << 13, P_UUID = 1u << 14, P_LABEL = 1u << 15,
    P_EMAIL = 1u << 16, P_HOSTNAME = 1u << 17, P_IPV4 = 1u << 18,
};

/* Each fixed rule: its bit, its text, the rules it uses. */
static const struct prim {
    unsigned bit;
    const char *text;
    unsigned needs;
} prims[] = {
    {P_WS, R_WS, 0},
    {P_HEX, R_HEX, 0},
    {P_CHAR, R_CHAR, P_HEX},
    {P_STRING, R_STRING, P_CHAR},
    {P_INTEGER, R_INTEGER, 0},
    {P_NUMBER, R_NUMBER, P_INTEGER},
    {P_BOOLEAN, R_BOOLEAN, 0},
    {P_NULL, R_NULL, 0},
    {P_VALUE, R_VALUE, P_OBJECT | P_ARRAY | P_STRING | P_NUMBER | P_BOOLEAN | P_NULL},
    {P_OBJECT, R_OBJECT, P_WS | P_STRING | P_VALUE},
    {P_ARRAY, R_ARRAY, P_WS | P_VALUE},
    {P_DATE, R_DATE, 0},
    {P_TIME, R_TIME, 0},
    {P_DATETIME, R_DATETIME, P_DATE | P_TIME},
    {P_UUID, R_UUID, P_HEX},
    {P_LABEL, R_LABEL, 0},
    {P_EMAIL, R_EMAIL, P_LABEL},
    {P_HOSTNAME, R_HOSTNAME, P_LABEL},
    {P_IPV4, R_IPV4, 0},
};

static const char object_gbnf[] = "root ::= object\n" R_OBJECT R_VALUE R_ARRAY R_STRING R_CHAR
    R_HEX R_NUMBER R_INTEGER R_BOOLEAN R_NULL R_WS;

const char *jsonschema_object_gbnf(void) { return object_gbnf; }

const char *jsonschema_strerror(int rc)
{
    switch (rc) {
    case JSONSCHEMA_OK: return "ok";
    case JSONSCHEMA_EUNSUPPORTED: return "schema feature not supported";
    case JSONSCHEMA_EINVAL: return "invalid schema";
    case JSONSCHEMA_ETOOBIG: return "schema too large";
    case JSONSCHEMA_ENOMEM: return "out of memory";
    case JSONSCHEMA_EMISMATCH: return "value does not match the schema";
    default: return "unknown jsonschema error";
    }
}

/* ---- keywords ---- */

/* Keywords that change nothing. */
static const char *const annotations[] = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "deprecated", "readOnly", "writeOnly", "strict", "$defs", "definitions", NULL,
};

/* Keywords with a meaning here. */
static const char *const structural[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "enum", "const", "anyOf", "$ref", "minLength", "maxLength", "format", NULL,
};

static bool in_list(const char *const *list, const char *k)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], k) == 0)
            return true;
    return false;
}

/* ---- growable text with a ceiling ---- */

typedef struct {
    char *p;
    size_t len, cap;
    int rc; /* sticky: JSONSCHEMA_ETOOBIG or _ENOMEM */
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (b->rc)
        return;
    if (b->len + n + 1 > JSONSCHEMA_MAX_GBNF) {
        b->rc = JSONSCHEMA_ETOOBIG;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->rc = JSONSCHEMA_ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)   /* s may be NULL then: an empty buffer's (schema true: no rules of its own) */
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf_t *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->rc = b->rc ? b->rc : JSONSCHEMA_ETOOBIG;
        return;
    }
    sb_put(b, tmp, (size_t)n);
}

/* A GBNF string literal of n bytes of UTF-8. */
static void sb_literal(sbuf_t *b, const char *s, size_t n)
{
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20 || c == 0x7F) {
            sb_printf(b, "\\x%02X", c);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* sym{min,max} (max < 0: unbounded), split so that no one repetition
 * passes llama.cpp's limit of 2000 expansions. */
static void sb_repeat(sbuf_t *b, const char *sym, long min, long max)
{
    const long chunk = 1000;
    if (max < 0) {
        while (min > chunk) {
            sb_printf(b, " %s{%ld}", sym, chunk);
            min -= chunk;
        }
        if (min == 0)
            sb_printf(b, " %s*", sym);
        else
            sb_printf(b, " %s{%ld,}", sym, min);
        return;
    }
    while (max > 0) {
        long hi = max < chunk ? max : chunk;
        long lo = min < hi ? min : hi;
        sb_printf(b, " %s{%ld,%ld}", sym, lo, hi);
        min -= lo;
        max -= hi;
    }
}

/* ---- the walk's state ---- */

#define NAME_CAP 24

typedef struct {
    char *ref;             /* the $ref text, owned */
    char name[NAME_CAP];   /* its rule */
    int struct_depth;      /* objects/arrays entered when it was started */
    bool done;
} ref_t;

typedef struct {
    const json_t *root;
    sbuf_t out;
    unsigned prims;
    int next_id;
    int nodes, depth, struct_depth;
    ref_t *refs;
    int n_refs, cap_refs;
    char path[512]; /* JSON pointer of the current subschema */
    size_t path_len;
    int rc;
    char *err;
    size_t errcap;
} gen_t;

static int fail(char *err, size_t errcap, int *rcp, const char *where, int rc, const char *fmt,
                ...) __attribute__((format(printf, 6, 7)));
static int fail(char *err, size_t errcap, int *rcp, const char *where, int rc, const char *fmt,
                ...)
{
    if (*rcp) /* keep the first error */
        return *rcp;
    *rcp = rc;
    if (err && errcap) {
        char msg[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(err, errcap, "%s (at %s)", msg, where[0] ? where : "#");
    }
    return rc;
}

#define GFAIL(g, code, ...) fail((g)->err, (g)->errcap, &(g)->rc, (g)->path, code, __VA_ARGS__)

/* Append "/seg" (JSON-pointer escaped, shortened if need be) to a path;
 * returns the old length for path_pop. */
static size_t path_push(char *path, size_t cap, size_t *len, const char *seg)
{
    size_t old = *len;
    size_t n = *len;
    if (n + 1 < cap)
        path[n++] = '/';
    for (const char *c = seg; *c && n + 3 < cap; c++) {
        if (*c == '~' || *c == '/') {
            path[n++] = '~';
            path[n++] = *c == '~' ? '0' : '1';
        } else {
            path[n++] = *c;
        }
    }
    path[n] = '\0';
    *len = n;
    return old;
}

static void path_pop(char *path, size_t *len, size_t old)
{
    *len = old;
    path[old] = '\0';
}

/* Walk a "#/a/b" pointer from the root. NULL if it leads nowhere. */
static const json_t *resolve_ref(const json_t *root, const char *ref)
{
    if (ref[0] != '#')
        return NULL;
    const json_t *cur = root;
    const char *p = ref + 1;
    while (*p) {
        if (*p != '/')
            return NULL;
        p++;
        char seg[256];
        size_t n = 0;
        while (*p && *p != '/') {
            char c = *p++;
            if (c == '~') {
                if (*p == '0')
                    c = '~';
                else if (*p == '1')
                    c = '/';
                else
                    return NULL;
                p++;
            }
            if (n + 1 >= sizeof seg)
                return NULL;
            seg[n++] = c;
        }
        seg[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, seg);
        } else if (json_is_array(cur)) {
            char *end;
            long i = strtol(seg, &end, 10);
            if (!seg[0] || *end || i < 0)
                return NULL;
            cur = json_array_get(cur, (size_t)i);
        } else {
            return NULL;
        }
        if (!cur)
            return NULL;
    }
    return cur;
}

/* Type names → bits. */
enum {
    T_NULL = 1, T_BOOLEAN = 2, T_INTEGER = 4, T_NUMBER = 8, T_STRING = 16, T_ARRAY = 32,
    T_OBJECT = 64, T_ANY = 127,
};

static const struct {
    const char *name;
    int bit;
} type_names[] = {
    {"null", T_NULL}, {"boolean", T_BOOLEAN}, {"integer", T_INTEGER}, {"number", T_NUMBER},
    {"string", T_STRING}, {"array", T_ARRAY}, {"object", T_OBJECT},
};

/* The set of types a schema object allows (from "type", else inferred).
 * Returns 0 and stores the set, or a message through fail. */
static int schema_types(const json_t *s, int *types, char *err, size_t errcap, int *rcp,
                        const char *where)
{
    const json_t *t = json_object_get(s, "type");
    if (!t) {
        if (json_object_get(s, "properties") || json_object_get(s, "additionalProperties") ||
            json_object_get(s, "required"))
            *types = T_OBJECT;
        else if (json_object_get(s, "items") || json_object_get(s, "minItems") ||
                 json_object_get(s, "maxItems"))
            *types = T_ARRAY;
        else if (json_object_get(s, "minLength") || json_object_get(s, "maxLength") ||
                 json_object_get(s, "format"))
            *types = T_STRING;
        else
            *types = T_ANY;
        return 0;
    }
    int set = 0;
    size_t n = json_is_array(t) ? json_array_size(t) : 1;
    if (!json_is_array(t) && !json_is_string(t))
        return fail(err, errcap, rcp, where, JSONSCHEMA_EINVAL,
                    "'type' must be a string or an array of strings");
    if (n == 0)
        return fail(err, errcap, rcp, where, JSONSCHEMA_EINVAL, "'type' is an empty array");
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_is_array(t) ? json_array_get(t, i) : t;
        if (!json_is_string(e))
            return fail(err, errcap, rcp, where, JSONSCHEMA_EINVAL,
                        "'type' must be a string or an array of strings");
        int bit = 0;
        for (size_t k = 0; k < sizeof type_names / sizeof type_names[0]; k++)
            if (strcmp(json_string_value(e), type_names[k].name) == 0)
                bit = type_names[k].bit;
        if (!bit)
            return fail(err, errcap, rcp, where, JSONSCHEMA_EINVAL, "unknown type '%.64s'",
                        json_string_value(e));
        set |= bit;
    }
    *types = set;
    return 0;
}

/* A non-negative integer keyword, at most max; absent → def. */
static int get_bound(const json_t *s, const char *key, long max, long def, long *out,
                     char *err, size_t errcap, int *rcp, const char *where)
{
    const json_t *v = json_object_get(s, key);
    if (!v) {
        *out = def;
        return 0;
    }
    double d;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v))
        d = json_real_value(v);
    else
        return fail(err, errcap, rcp, where, JSONSCHEMA_EINVAL,
                    "'%s' must be a non-negative integer", key);
    if (d < 0)
        return fail(err, errcap, rcp, where, JSONSCHEMA_EINVAL,
                    "'%s' must be a non-negative integer", key);
    if (d > (double)max)
        return fail(err, errcap, rcp, where, JSONSCHEMA_ETOOBIG,
                    "'%s' over %ld is not supported", key, max);
    *out = (long)d;
    return 0;
}

static const struct {
    const char *name;
    unsigned prim;
} formats[] = {
    {"date", P_DATE}, {"time", P_TIME}, {"date-time", P_DATETIME}, {"uuid", P_UUID},
    {"email", P_EMAIL}, {"hostname", P_HOSTNAME}, {"ipv4", P_IPV4},
};

/* Every keyword known, no structural sibling of $ref/anyOf. Shared by the
 * converter and the validator. */
static int check_keywords(const json_t *s, char *err, size_t errcap, int *rcp, const char *where)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)s, k, v) {
        if (!in_list(annotations, k) && !in_list(structural, k))
            return fail(err, errcap, rcp, where, JSONSCHEMA_EUNSUPPORTED,
                        "keyword '%.64s' is not supported", k);
    }
    const char *alone[] = {"$ref", "anyOf"};
    for (int i = 0; i < 2; i++) {
        if (!json_object_get(s, alone[i]))
            continue;
        json_object_foreach((json_t *)s, k, v) {
            if (in_list(structural, k) && strcmp(k, alone[i]) != 0)
                return fail(err, errcap, rcp, where, JSONSCHEMA_EUNSUPPORTED,
                            "'%s' together with '%.64s' is not supported", alone[i], k);
        }
    }
    const json_t *ap = json_object_get(s, "additionalProperties");
    if (ap && !json_is_boolean(ap))
        return fail(err, errcap, rcp, where, JSONSCHEMA_EUNSUPPORTED,
                    "'additionalProperties' other than true or false is not supported");
    const json_t *f = json_object_get(s, "format");
    if (f) {
        if (!json_is_string(f))
            return fail(err, errcap, rcp, where, JSONSCHEMA_EINVAL, "'format' must be a string");
        bool known = false;
        for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
            known |= strcmp(formats[i].name, json_string_value(f)) == 0;
        if (!known)
            return fail(err, errcap, rcp, where, JSONSCHEMA_EUNSUPPORTED,
                        "format '%.64s' is not supported", json_string_value(f));
        if (json_object_get(s, "minLength") || json_object_get(s, "maxLength"))
            return fail(err, errcap, rcp, where, JSONSCHEMA_EUNSUPPORTED,
                        "'format' together with 'minLength'/'maxLength' is not supported");
    }
    return 0;
}

/* ---- the converter ---- */

static int gen(gen_t *g, const json_t *s, char name[NAME_CAP]);

static void new_name(gen_t *g, char name[NAME_CAP]) { snprintf(name, NAME_CAP, "s%d", g->next_id++); }

/* Append "name ::= body\n" to the output; takes over nothing. */
static int emit_rule(gen_t *g, const char *name, sbuf_t *body)
{
    if (body->rc)
        return GFAIL(g, body->rc, body->rc == JSONSCHEMA_ENOMEM ? "out of memory"
                                                              : "grammar over %d bytes",
                     JSONSCHEMA_MAX_GBNF);
    sb_puts(&g->out, name);
    sb_puts(&g->out, " ::= ");
    sb_put(&g->out, body->p ? body->p : "", body->len);
    sb_puts(&g->out, "\n");
    if (g->out.rc)
        return GFAIL(g, g->out.rc, g->out.rc == JSONSCHEMA_ENOMEM ? "out of memory"
                                                                : "grammar over %d bytes",
                     JSONSCHEMA_MAX_GBNF);
    return 0;
}

/* Generate a subschema found under key `seg` (and `seg2`) of the current one. */
static int gen_child(gen_t *g, const json_t *s, const char *seg, const char *seg2,
                     char name[NAME_CAP])
{
    size_t old = path_push(g->path, sizeof g->path, &g->path_len, seg);
    if (seg2)
        path_push(g->path, sizeof g->path, &g->path_len, seg2);
    int rc = gen(g, s, name);
    path_pop(g->path, &g->path_len, old);
    return rc;
}

static int gen_ref(gen_t *g, const char *ref, char name[NAME_CAP])
{
    for (int i = 0; i < g->n_refs; i++) {
        if (strcmp(g->refs[i].ref, ref) != 0)
            continue;
        if (!g->refs[i].done && g->refs[i].struct_depth == g->struct_depth)
            return GFAIL(g, JSONSCHEMA_EUNSUPPORTED,
                         "$ref '%.128s' refers to itself without an object or array between",
                         ref);
        memcpy(name, g->refs[i].name, NAME_CAP);
        return 0;
    }
    const json_t *target = resolve_ref(g->root, ref);
    if (!target)
        return GFAIL(g, JSONSCHEMA_EINVAL, "$ref '%.128s' does not resolve", ref);
    if (g->n_refs == g->cap_refs) {
        int cap = g->cap_refs ? g->cap_refs * 2 : 8;
        ref_t *r = realloc(g->refs, (size_t)cap * sizeof *r);
        if (!r)
            return GFAIL(g, JSONSCHEMA_ENOMEM, "out of memory");
        g->refs = r;
        g->cap_refs = cap;
    }
    int idx = g->n_refs;
    ref_t *r = &g->refs[idx];
    r->ref = strdup(ref);
    if (!r->ref)
        return GFAIL(g, JSONSCHEMA_ENOMEM, "out of memory");
    new_name(g, r->name);
    r->struct_depth = g->struct_depth;
    r->done = false;
    g->n_refs++;

    /* The target's path replaces the current one in messages. */
    char saved[sizeof g->path];
    size_t saved_len = g->path_len;
    memcpy(saved, g->path, sizeof saved);
    snprintf(g->path, sizeof g->path, "%s", ref);
    g->path_len = strlen(g->path);
    char body_name[NAME_CAP];
    int rc = gen(g, target, body_name);
    memcpy(g->path, saved, sizeof saved);
    g->path_len = saved_len;
    if (rc)
        return rc;
    sbuf_t body = {0};
    sb_puts(&body, body_name);
    rc = emit_rule(g, g->refs[idx].name, &body);
    free(body.p);
    if (rc)
        return rc;
    g->refs[idx].done = true;
    memcpy(name, g->refs[idx].name, NAME_CAP);
    return 0;
}

/* The object part of a schema, appended to body. */
static int gen_object(gen_t *g, const json_t *s, sbuf_t *body)
{
    const json_t *props = json_object_get(s, "properties");
    const json_t *req = json_object_get(s, "required");
    const json_t *ap = json_object_get(s, "additionalProperties");
    bool closed = ap && json_is_false(ap);
    if (props && !json_is_object(props))
        return GFAIL(g, JSONSCHEMA_EINVAL, "'properties' must be an object");
    if (req && !json_is_array(req))
        return GFAIL(g, JSONSCHEMA_EINVAL, "'required' must be an array of strings");
    size_t n = props ? json_object_size(props) : 0;
    for (size_t i = 0; req && i < json_array_size(req); i++) {
        const json_t *k = json_array_get(req, i);
        if (!json_is_string(k))
            return GFAIL(g, JSONSCHEMA_EINVAL, "'required' must be an array of strings");
        if (!props || !json_object_get(props, json_string_value(k)))
            return GFAIL(g, closed ? JSONSCHEMA_EINVAL : JSONSCHEMA_EUNSUPPORTED,
                         "required property '%.64s' is not in 'properties'",
                         json_string_value(k));
    }
    if (n == 0) {
        if (closed) {
            sb_puts(body, "\"{\" ws \"}\"");
        } else {
            g->prims |= P_OBJECT;
            sb_puts(body, "object");
        }
        return 0;
    }

    /* kv[i]: the rule of "key" ws ":" ws value ws. */
    char(*kv)[NAME_CAP] = calloc(n, sizeof *kv);
    bool *required = calloc(n, sizeof *required);
    char(*rest)[NAME_CAP] = calloc(n + 1, sizeof *rest);
    int rc = 0;
    if (!kv || !required || !rest) {
        rc = GFAIL(g, JSONSCHEMA_ENOMEM, "out of memory");
        goto out;
    }
    const char *key;
    const json_t *sub;
    size_t i = 0;
    g->struct_depth++;
    json_object_foreach((json_t *)props, key, sub) {
        if (++g->nodes > JSONSCHEMA_MAX_NODES) {
            rc = GFAIL(g, JSONSCHEMA_ETOOBIG, "more than %d subschemas and properties",
                       JSONSCHEMA_MAX_NODES);
            break;
        }
        for (size_t k = 0; req && k < json_array_size(req); k++)
            if (strcmp(json_string_value(json_array_get(req, k)), key) == 0)
                required[i] = true;
        char vname[NAME_CAP];
        rc = gen_child(g, sub, "properties", key, vname);
        if (rc)
            break;
        sbuf_t b = {0};
        /* The key as JSON text, then as a GBNF literal. */
        json_t *js = json_string(key);
        char *jkey = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
        json_decref(js);
        if (!jkey) {
            rc = GFAIL(g, JSONSCHEMA_ENOMEM, "out of memory");
            break;
        }
        sb_literal(&b, jkey, strlen(jkey));
        free(jkey);
        sb_printf(&b, " ws \":\" ws %s ws", vname);
        new_name(g, kv[i]);
        rc = emit_rule(g, kv[i], &b);
        free(b.p);
        if (rc)
            break;
        i++;
    }
    g->struct_depth--;
    if (rc)
        goto out;

    /* rest[k]: properties k.. after one has been written (each present
     * one is preceded by a comma). rest[n] is empty. */
    for (size_t k = n; k-- > 1;) {
        sbuf_t b = {0};
        sb_printf(&b, required[k] ? "\",\" ws %s" : "( \",\" ws %s )?", kv[k]);
        if (rest[k + 1][0])
            sb_printf(&b, " %s", rest[k + 1]);
        new_name(g, rest[k]);
        rc = emit_rule(g, rest[k], &b);
        free(b.p);
        if (rc)
            goto out;
    }
    /* The first property written is k: every one before it is optional. */
    sb_puts(body, "\"{\" ws ( ");
    bool all_optional = true;
    for (size_t k = 0; k < n; k++) {
        if (k)
            sb_puts(body, " | ");
        sb_puts(body, kv[k]);
        if (rest[k + 1][0])
            sb_printf(body, " %s", rest[k + 1]);
        if (required[k]) {
            all_optional = false;
            break;
        }
    }
    sb_puts(body, all_optional ? " )? \"}\"" : " ) \"}\"");
out:
    free(kv);
    free(required);
    free(rest);
    return rc;
}

static int gen_array(gen_t *g, const json_t *s, sbuf_t *body)
{
    const json_t *items = json_object_get(s, "items");
    long min, max;
    if (items && json_is_array(items))
        return GFAIL(g, JSONSCHEMA_EUNSUPPORTED, "'items' as an array is not supported");
    if (get_bound(s, "minItems", JSONSCHEMA_MAX_ITEMS, 0, &min, g->err, g->errcap, &g->rc,
                  g->path) ||
        get_bound(s, "maxItems", JSONSCHEMA_MAX_ITEMS, -1, &max, g->err, g->errcap, &g->rc,
                  g->path))
        return g->rc;
    if (max >= 0 && min > max)
        return GFAIL(g, JSONSCHEMA_EINVAL, "'minItems' is over 'maxItems'");
    if (max == 0) {
        sb_puts(body, "\"[\" ws \"]\"");
        return 0;
    }
    char item[NAME_CAP];
    if (items) {
        g->struct_depth++;
        int rc = gen_child(g, items, "items", NULL, item);
        g->struct_depth--;
        if (rc)
            return rc;
    } else {
        g->prims |= P_VALUE;
        snprintf(item, sizeof item, "value");
    }
    /* list ::= item ws ( "," ws item ws ){lo,hi} */
    char more[NAME_CAP], list[NAME_CAP];
    sbuf_t b = {0};
    sb_printf(&b, "\",\" ws %s ws", item);
    new_name(g, more);
    int rc = emit_rule(g, more, &b);
    free(b.p);
    if (rc)
        return rc;
    b = (sbuf_t){0};
    sb_printf(&b, "%s ws", item);
    sb_repeat(&b, more, min > 0 ? min - 1 : 0, max > 0 ? max - 1 : -1);
    new_name(g, list);
    rc = emit_rule(g, list, &b);
    free(b.p);
    if (rc)
        return rc;
    sb_printf(body, "\"[\" ws %s%s \"]\"", list, min > 0 ? "" : "?");
    return 0;
}

static int gen_string(gen_t *g, const json_t *s, sbuf_t *body)
{
    const json_t *f = json_object_get(s, "format");
    if (f) {
        for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
            if (strcmp(formats[i].name, json_string_value(f)) == 0) {
                g->prims |= formats[i].prim;
                sb_printf(body, "\"\\\"\" %s \"\\\"\"", formats[i].name);
                return 0;
            }
        }
    }
    long min, max;
    if (get_bound(s, "minLength", JSONSCHEMA_MAX_LENGTH, 0, &min, g->err, g->errcap, &g->rc,
                  g->path) ||
        get_bound(s, "maxLength", JSONSCHEMA_MAX_LENGTH, -1, &max, g->err, g->errcap, &g->rc,
                  g->path))
        return g->rc;
    if (max >= 0 && min > max)
        return GFAIL(g, JSONSCHEMA_EINVAL, "'minLength' is over 'maxLength'");
    if (min == 0 && max < 0) {
        g->prims |= P_STRING;
        sb_puts(body, "string");
        return 0;
    }
    g->prims |= P_CHAR;
    /* Its own rule: the repetition must be the only one in its sequence. */
    char name[NAME_CAP];
    sbuf_t b = {0};
    sb_puts(&b, "\"\\\"\"");
    if (max != 0)
        sb_repeat(&b, "char", min, max);
    sb_puts(&b, " \"\\\"\"");
    new_name(g, name);
    int rc = emit_rule(g, name, &b);
    free(b.p);
    if (rc)
        return rc;
    sb_puts(body, name);
    return 0;
}

/* Does value have one of the types? ("integer" includes 2.0.) */
static bool has_type(const json_t *v, int types)
{
    switch (json_typeof(v)) {
    case JSON_NULL: return types & T_NULL;
    case JSON_TRUE:
    case JSON_FALSE: return types & T_BOOLEAN;
    case JSON_INTEGER: return types & (T_INTEGER | T_NUMBER);
    case JSON_REAL: {
        double d = json_real_value(v);
        bool integral = d >= -9.2e18 && d <= 9.2e18 && d == (double)(long long)d;
        return (types & T_NUMBER) || ((types & T_INTEGER) && integral);
    }
    case JSON_STRING: return types & T_STRING;
    case JSON_ARRAY: return types & T_ARRAY;
    case JSON_OBJECT: return types & T_OBJECT;
    }
    return false;
}

static int gen_enum(gen_t *g, const json_t *s, int types, sbuf_t *body)
{
    const json_t *c = json_object_get(s, "const");
    const json_t *e = json_object_get(s, "enum");
    if (e && (!json_is_array(e) || json_array_size(e) == 0))
        return GFAIL(g, JSONSCHEMA_EINVAL, "'enum' must be a non-empty array");
    size_t n = c ? 1 : json_array_size(e);
    int written = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = c ? c : json_array_get(e, i);
        if (c && e) {
            /* both: the const, if the enum has it */
            bool found = false;
            for (size_t k = 0; k < json_array_size(e); k++)
                found |= json_equal((json_t *)v, json_array_get(e, k));
            if (!found)
                continue;
        }
        if (!has_type(v, types))
            continue;
        char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!text)
            return GFAIL(g, JSONSCHEMA_ENOMEM, "out of memory");
        if (written++)
            sb_puts(body, " | ");
        sb_literal(body, text, strlen(text));
        free(text);
    }
    if (!written)
        return GFAIL(g, JSONSCHEMA_EINVAL, "no value of 'enum'/'const' matches the schema");
    return 0;
}

static int gen(gen_t *g, const json_t *s, char name[NAME_CAP])
{
    if (g->rc)
        return g->rc;
    if (++g->nodes > JSONSCHEMA_MAX_NODES)
        return GFAIL(g, JSONSCHEMA_ETOOBIG, "more than %d subschemas and properties",
                     JSONSCHEMA_MAX_NODES);
    if (json_is_true(s)) {
        g->prims |= P_VALUE;
        snprintf(name, NAME_CAP, "value");
        return 0;
    }
    if (json_is_false(s))
        return GFAIL(g, JSONSCHEMA_EUNSUPPORTED, "the schema 'false' is not supported");
    if (!json_is_object(s))
        return GFAIL(g, JSONSCHEMA_EINVAL, "a schema must be an object or a boolean");
    if (check_keywords(s, g->err, g->errcap, &g->rc, g->path))
        return g->rc;
    if (g->depth >= JSONSCHEMA_MAX_DEPTH)
        return GFAIL(g, JSONSCHEMA_ETOOBIG, "schema nested deeper than %d",
                     JSONSCHEMA_MAX_DEPTH);

    const json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        if (!json_is_string(ref))
            return GFAIL(g, JSONSCHEMA_EINVAL, "'$ref' must be a string");
        g->depth++;
        int rc = gen_ref(g, json_string_value(ref), name);
        g->depth--;
        return rc;
    }

    g->depth++;
    sbuf_t body = {0};
    int rc = 0;
    const json_t *any = json_object_get(s, "anyOf");
    int types = 0;
    if (any) {
        if (!json_is_array(any) || json_array_size(any) == 0) {
            rc = GFAIL(g, JSONSCHEMA_EINVAL, "'anyOf' must be a non-empty array");
            goto out;
        }
        for (size_t i = 0; i < json_array_size(any); i++) {
            char sub[NAME_CAP], idx[24];
            snprintf(idx, sizeof idx, "%zu", i);
            rc = gen_child(g, json_array_get(any, i), "anyOf", idx, sub);
            if (rc)
                goto out;
            sb_printf(&body, i ? " | %s" : "%s", sub);
        }
    } else if ((rc = schema_types(s, &types, g->err, g->errcap, &g->rc, g->path))) {
        goto out;
    } else if (json_object_get(s, "enum") || json_object_get(s, "const")) {
        rc = gen_enum(g, s, types, &body);
    } else if (types == T_ANY) {
        g->prims |= P_VALUE;
        sb_puts(&body, "value");
    } else {
        int written = 0;
        for (size_t k = 0; k < sizeof type_names / sizeof type_names[0] && !rc; k++) {
            int t = type_names[k].bit;
            if (!(types & t) || (t == T_INTEGER && (types & T_NUMBER)))
                continue;
            if (written++)
                sb_puts(&body, " | ");
            switch (t) {
            case T_NULL: g->prims |= P_NULL; sb_puts(&body, "null"); break;
            case T_BOOLEAN: g->prims |= P_BOOLEAN; sb_puts(&body, "boolean"); break;
            case T_INTEGER: g->prims |= P_INTEGER; sb_puts(&body, "integer"); break;
            case T_NUMBER: g->prims |= P_NUMBER; sb_puts(&body, "number"); break;
            case T_STRING: rc = gen_string(g, s, &body); break;
            case T_ARRAY: rc = gen_array(g, s, &body); break;
            case T_OBJECT: rc = gen_object(g, s, &body); break;
            }
        }
    }
    if (!rc) {
        new_name(g, name);
        rc = emit_rule(g, name, &body);
    }
out:
    g->depth--;
    free(body.p);
    return rc ? rc : g->rc;
}

int jsonschema_to_gbnf(const json_t *schema, char **gbnf, char *err, size_t errcap)
{
    *gbnf = NULL;
    if (err && errcap)
        err[0] = '\0';
    gen_t g = {.root = schema, .err = err, .errcap = errcap, .path = "#", .path_len = 1};
    char name[NAME_CAP];
    int rc = schema ? gen(&g, schema, name)
                    : fail(err, errcap, &g.rc, "", JSONSCHEMA_EINVAL, "no schema");
    if (!rc) {
        sbuf_t b = {0};
        sb_printf(&b, "root ::= %s\n", name);
        sb_put(&b, g.out.p, g.out.len);
        /* The fixed rules used, and the ones they use. */
        unsigned need = g.prims | P_WS;
        for (bool grew = true; grew;) {
            grew = false;
            for (size_t i = 0; i < sizeof prims / sizeof prims[0]; i++)
                if ((need & prims[i].bit) && (need | prims[i].needs) != need) {
                    need |= prims[i].needs;
                    grew = true;
                }
        }
        for (size_t i = 0; i < sizeof prims / sizeof prims[0]; i++)
            if (need & prims[i].bit)
                sb_puts(&b, prims[i].text);
        if (b.rc) {
            rc = fail(err, errcap, &g.rc, "", b.rc,
                      b.rc == JSONSCHEMA_ENOMEM ? "out of memory" : "grammar over %d bytes",
                      JSONSCHEMA_MAX_GBNF);
            free(b.p);
        } else {
            *gbnf = b.p;
        }
    }
    free(g.out.p);
    for (int i = 0; i < g.n_refs; i++)
        free(g.refs[i].ref);
    free(g.refs);
    return rc;
}

/* ---- the validator ---- */

typedef struct {
    const json_t *root;
    int steps;          /* subschemas visited: bounds anyOf blow-ups */
    int depth;          /* of val() calls: bounds left-recursive $refs */
    char path[512];     /* of the value: $.a[3] */
    size_t path_len;
    int rc;
    char *err;
    size_t errcap;
} val_t;

#define VFAIL(v, code, ...) fail((v)->err, (v)->errcap, &(v)->rc, (v)->path, code, __VA_ARGS__)

static size_t utf8_count(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static bool digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int num2(const char *s) { return (s[0] - '0') * 10 + (s[1] - '0'); }

static bool is_date(const char *s, size_t n)
{
    if (n != 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2))
        return false;
    int mo = num2(s + 5), d = num2(s + 8);
    return mo >= 1 && mo <= 12 && d >= 1 && d <= 31;
}

static bool is_time(const char *s, size_t n)
{
    if (n < 9 || !digits(s, 2) || s[2] != ':' || !digits(s + 3, 2) || s[5] != ':' ||
        !digits(s + 6, 2) || num2(s) > 23 || num2(s + 3) > 59 || num2(s + 6) > 59)
        return false;
    size_t i = 8;
    if (s[i] == '.') {
        size_t k = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == k || i - k > 6)
            return false;
    }
    if (i < n && s[i] == 'Z')
        return i + 1 == n;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        return n - i == 6 && digits(s + i + 1, 2) && s[i + 3] == ':' && digits(s + i + 4, 2) &&
               num2(s + i + 1) <= 23 && num2(s + i + 4) <= 59;
    return false;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_uuid(const char *s, size_t n)
{
    if (n != 36)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-' : !is_hex(s[i]))
            return false;
    return true;
}

static bool is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* label ( "." label ){min_dots - 1 .. max_dots}, labels [a-zA-Z0-9][a-zA-Z0-9-]{0,62} */
static bool is_labels(const char *s, size_t n, int min_dots, int max_dots)
{
    int dots = 0;
    size_t i = 0;
    for (;;) {
        size_t k = i;
        if (i >= n || !is_alnum(s[i]))
            return false;
        while (i < n && (is_alnum(s[i]) || s[i] == '-'))
            i++;
        if (i - k > 63)
            return false;
        if (i == n)
            return dots >= min_dots && dots <= max_dots;
        if (s[i] != '.')
            return false;
        i++;
        dots++;
    }
}

static bool is_email(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (is_alnum(s[i]) || strchr("._%+-", s[i])) && s[i])
        i++;
    if (i == 0 || i > 64 || i >= n || s[i] != '@')
        return false;
    return is_labels(s + i + 1, n - i - 1, 1, 4);
}

static bool is_ipv4(const char *s, size_t n)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        size_t k = i;
        int val = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && i - k < 3)
            val = val * 10 + (s[i++] - '0');
        if (i == k || val > 255 || (i - k > 1 && s[k] == '0'))
            return false;
        if (part < 3) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
    }
    return i == n;
}

static bool format_ok(const char *f, const char *s, size_t n)
{
    if (strcmp(f, "date") == 0)
        return is_date(s, n);
    if (strcmp(f, "time") == 0)
        return is_time(s, n);
    if (strcmp(f, "date-time") == 0)
        return n > 11 && s[10] == 'T' && is_date(s, 10) && is_time(s + 11, n - 11);
    if (strcmp(f, "uuid") == 0)
        return is_uuid(s, n);
    if (strcmp(f, "email") == 0)
        return is_email(s, n);
    if (strcmp(f, "hostname") == 0)
        return is_labels(s, n, 0, 8);
    if (strcmp(f, "ipv4") == 0)
        return is_ipv4(s, n);
    return false;
}

static int val(val_t *v, const json_t *s, const json_t *x);
static int val_node(val_t *v, const json_t *s, const json_t *x);

static int val_child(val_t *v, const json_t *s, const json_t *x, const char *key, long idx)
{
    size_t old = v->path_len;
    int n = key ? snprintf(v->path + old, sizeof v->path - old, ".%s", key)
                : snprintf(v->path + old, sizeof v->path - old, "[%ld]", idx);
    if (n > 0)
        v->path_len = old + (size_t)n < sizeof v->path ? old + (size_t)n : sizeof v->path - 1;
    int rc = val(v, s, x);
    v->path_len = old;
    v->path[old] = '\0';
    return rc;
}

static int val_object(val_t *v, const json_t *s, const json_t *x)
{
    const json_t *props = json_object_get(s, "properties");
    const json_t *req = json_object_get(s, "required");
    const json_t *ap = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props))
        return VFAIL(v, JSONSCHEMA_EINVAL, "'properties' must be an object");
    if (req && !json_is_array(req))
        return VFAIL(v, JSONSCHEMA_EINVAL, "'required' must be an array of strings");
    for (size_t i = 0; req && i < json_array_size(req); i++) {
        const json_t *k = json_array_get(req, i);
        if (!json_is_string(k))
            return VFAIL(v, JSONSCHEMA_EINVAL, "'required' must be an array of strings");
        if (!json_object_get(x, json_string_value(k)))
            return VFAIL(v, JSONSCHEMA_EMISMATCH, "missing required property '%.64s'",
                         json_string_value(k));
    }
    const char *key;
    const json_t *val_x;
    json_object_foreach((json_t *)x, key, val_x) {
        const json_t *sub = props ? json_object_get(props, key) : NULL;
        if (sub) {
            if (val_child(v, sub, val_x, key, 0))
                return v->rc;
        } else if (ap && json_is_false(ap)) {
            return VFAIL(v, JSONSCHEMA_EMISMATCH, "property '%.64s' is not allowed", key);
        }
    }
    return 0;
}

static int val_array(val_t *v, const json_t *s, const json_t *x)
{
    long min, max;
    if (get_bound(s, "minItems", JSONSCHEMA_MAX_ITEMS, 0, &min, v->err, v->errcap, &v->rc,
                  v->path) ||
        get_bound(s, "maxItems", JSONSCHEMA_MAX_ITEMS, -1, &max, v->err, v->errcap, &v->rc,
                  v->path))
        return v->rc;
    const json_t *items = json_object_get(s, "items");
    if (items && json_is_array(items))
        return VFAIL(v, JSONSCHEMA_EUNSUPPORTED, "'items' as an array is not supported");
    size_t n = json_array_size(x);
    if ((long)n < min || (max >= 0 && (long)n > max))
        return VFAIL(v, JSONSCHEMA_EMISMATCH, "%zu items, outside %ld..%ld", n, min, max);
    for (size_t i = 0; items && i < n; i++)
        if (val_child(v, items, json_array_get(x, i), NULL, (long)i))
            return v->rc;
    return 0;
}

static int val_string(val_t *v, const json_t *s, const json_t *x)
{
    const char *str = json_string_value(x);
    size_t len = json_string_length(x);
    const json_t *f = json_object_get(s, "format");
    if (f) {
        if (!format_ok(json_string_value(f), str, len))
            return VFAIL(v, JSONSCHEMA_EMISMATCH, "not a %s", json_string_value(f));
        return 0;
    }
    long min, max;
    if (get_bound(s, "minLength", JSONSCHEMA_MAX_LENGTH, 0, &min, v->err, v->errcap, &v->rc,
                  v->path) ||
        get_bound(s, "maxLength", JSONSCHEMA_MAX_LENGTH, -1, &max, v->err, v->errcap, &v->rc,
                  v->path))
        return v->rc;
    long n = (long)utf8_count(str, len);
    if (n < min || (max >= 0 && n > max))
        return VFAIL(v, JSONSCHEMA_EMISMATCH, "string of %ld characters, outside %ld..%ld", n,
                     min, max);
    return 0;
}

static int val(val_t *v, const json_t *s, const json_t *x)
{
    if (v->rc)
        return v->rc;
    if (++v->steps > 1000000)
        return VFAIL(v, JSONSCHEMA_ETOOBIG, "schema too costly to check");
    if (v->depth >= 4 * JSON_MAX_DEPTH)
        return VFAIL(v, JSONSCHEMA_ETOOBIG, "schema recursion too deep");
    v->depth++;
    int rc = val_node(v, s, x);
    v->depth--;
    return rc;
}

static int val_node(val_t *v, const json_t *s, const json_t *x)
{
    if (json_is_true(s))
        return 0;
    if (json_is_false(s))
        return VFAIL(v, JSONSCHEMA_EUNSUPPORTED, "the schema 'false' is not supported");
    if (!json_is_object(s))
        return VFAIL(v, JSONSCHEMA_EINVAL, "a schema must be an object or a boolean");
    if (check_keywords(s, v->err, v->errcap, &v->rc, v->path))
        return v->rc;
    const json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        const json_t *t = json_is_string(ref) ? resolve_ref(v->root, json_string_value(ref))
                                              : NULL;
        if (!t)
            return VFAIL(v, JSONSCHEMA_EINVAL, "$ref does not resolve");
        return val(v, t, x);
    }
    const json_t *any = json_object_get(s, "anyOf");
    if (any) {
        if (!json_is_array(any) || json_array_size(any) == 0)
            return VFAIL(v, JSONSCHEMA_EINVAL, "'anyOf' must be a non-empty array");
        for (size_t i = 0; i < json_array_size(any); i++) {
            /* A branch's mismatch is no error of the whole: try quietly. */
            char *err = v->err;
            size_t errcap = v->errcap;
            v->err = NULL;
            v->errcap = 0;
            int rc = val(v, json_array_get(any, i), x);
            v->err = err;
            v->errcap = errcap;
            if (rc == 0)
                return 0;
            v->rc = 0;
            if (rc != JSONSCHEMA_EMISMATCH)
                return VFAIL(v, rc, "%s in 'anyOf' branch %zu", jsonschema_strerror(rc), i);
        }
        return VFAIL(v, JSONSCHEMA_EMISMATCH, "matches no 'anyOf' branch");
    }
    int types;
    if (schema_types(s, &types, v->err, v->errcap, &v->rc, v->path))
        return v->rc;
    if (!has_type(x, types))
        return VFAIL(v, JSONSCHEMA_EMISMATCH, "wrong type");
    const json_t *c = json_object_get(s, "const");
    if (c && !json_equal((json_t *)c, (json_t *)x))
        return VFAIL(v, JSONSCHEMA_EMISMATCH, "not the 'const' value");
    const json_t *e = json_object_get(s, "enum");
    if (e) {
        bool found = false;
        for (size_t i = 0; json_is_array(e) && i < json_array_size(e); i++)
            found |= json_equal(json_array_get(e, i), (json_t *)x);
        if (!found)
            return VFAIL(v, JSONSCHEMA_EMISMATCH, "not one of the 'enum' values");
    }
    if (json_is_object(x))
        return val_object(v, s, x);
    if (json_is_array(x))
        return val_array(v, s, x);
    if (json_is_string(x))
        return val_string(v, s, x);
    return 0;
}

int jsonschema_validate(const json_t *schema, const json_t *value, char *err, size_t errcap)
{
    if (err && errcap)
        err[0] = '\0';
    val_t v = {.root = schema, .err = err, .errcap = errcap, .path = "$", .path_len = 1};
    if (!schema || !value)
        return fail(err, errcap, &v.rc, "", JSONSCHEMA_EINVAL, "no schema or value");
    return val(&v, schema, value);
}
