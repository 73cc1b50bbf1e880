/* jsonschema.h — JSON Schema to llama.cpp GBNF, for structured outputs.
 *
 * OpenAI's `response_format: {"type":"json_schema","json_schema":{"schema":
 * ...}}` asks that the reply be JSON matching a schema. This module turns the
 * schema into a GBNF grammar (the text llama_sampler_init_grammar() parses,
 * start symbol "root"), so sampling can only produce matching JSON, and checks
 * a finished value against the schema. `{"type":"json_object"}` has a fixed
 * grammar: any JSON object.
 *
 * Supported (the subset OpenAI's strict mode allows, and a bit more):
 *   type: object, string, number, integer, boolean, null, array, or an
 *         array of these (["string","null"]); no type = any JSON value
 *         (or inferred: "properties" → object, "items" → array);
 *   properties (emitted in declared order), required (optional properties
 *         may be absent), additionalProperties (false / true / absent; with
 *         properties only the declared ones are generated; without, true or
 *         absent means any object);
 *   items, minItems, maxItems (bounds up to JSONSCHEMA_MAX_ITEMS);
 *   enum, const (any JSON values, emitted in compact form);
 *   anyOf; $ref to "#", "#/$defs/...", "#/definitions/..." (any JSON pointer
 *         into the root), recursion included as long as it passes through an
 *         object or array;
 *   minLength, maxLength (up to JSONSCHEMA_MAX_LENGTH code points);
 *   format: date, time, date-time, uuid, email, ipv4, hostname (loosely:
 *         "2026-02-31" is a date here).
 * Ignored annotations: title, description, default, examples, $schema, $id,
 *   $comment, deprecated, readOnly, writeOnly, strict, $defs, definitions.
 * Refused with JSONSCHEMA_EUNSUPPORTED and a message naming the keyword:
 *   every other keyword, notably pattern, patternProperties, minimum,
 *   maximum, exclusiveMinimum, exclusiveMaximum, multipleOf, allOf, oneOf,
 *   not, prefixItems, uniqueItems, minProperties, maxProperties, an
 *   additionalProperties schema, formats not listed, and the schema `false`.
 *
 * Generated JSON: no whitespace before the value and none after it (the
 * grammar ends with the value, so once it is complete only an end-of-
 * generation token is allowed); between tokens optional whitespace, at most
 * one space, or a newline and up to 20 spaces/tabs (as llama.cpp's own
 * converter), so the model cannot loop on whitespace. Numbers have at most
 * 16 integral and 16 fractional digits and a two-digit exponent; strings
 * never contain \u0000 or lone surrogate escapes, so the output always
 * parses with common/json.h. Any-value and any-object parts nest without a
 * bound of their own: output nested beyond JSON_MAX_DEPTH would not parse.
 *
 * Error messages (err/errcap, always NUL-terminated when errcap > 0) name the
 * place in the schema as a JSON pointer, e.g. "keyword 'pattern' is not
 * supported (at #/properties/zip)"; they carry no prefix, the caller adds
 * its own ("response_format.json_schema: ").
 */
#ifndef KVCHAT_ENGINE_JSONSCHEMA_H
#define KVCHAT_ENGINE_JSONSCHEMA_H

#include <stddef.h>

#include "common/json.h"

/* Limits: deeper, larger or longer schemas are JSONSCHEMA_ETOOBIG. */
#define JSONSCHEMA_MAX_DEPTH 32          /* nested subschemas, across $refs */
#define JSONSCHEMA_MAX_NODES 1000        /* subschemas plus properties */
#define JSONSCHEMA_MAX_GBNF (256 * 1024) /* bytes of grammar text */
#define JSONSCHEMA_MAX_LENGTH 4096       /* minLength / maxLength */
#define JSONSCHEMA_MAX_ITEMS 256         /* minItems / maxItems */

enum {
    JSONSCHEMA_OK = 0,
    JSONSCHEMA_EUNSUPPORTED = -1, /* a keyword or value outside the subset */
    JSONSCHEMA_EINVAL = -2,       /* not a valid schema (wrong types, bad $ref) */
    JSONSCHEMA_ETOOBIG = -3,      /* over a JSONSCHEMA_MAX_* limit */
    JSONSCHEMA_ENOMEM = -4,
    JSONSCHEMA_EMISMATCH = -5,    /* jsonschema_validate: value does not match */
};

/* Static English name of a JSONSCHEMA_* code. */
const char *jsonschema_strerror(int rc);

/* Convert `schema` (borrowed, not modified) into GBNF with start rule
 * "root". On success returns JSONSCHEMA_OK and *gbnf is a malloc'd,
 * NUL-terminated grammar the caller frees. On failure returns a negative
 * JSONSCHEMA_E* code, *gbnf is NULL and err holds a message fit for a 400
 * answer. A grammar made here can still be refused by llama.cpp (it is
 * meant not to be): check it with model_grammar_check() before use. */
int jsonschema_to_gbnf(const json_t *schema, char **gbnf, char *err, size_t errcap);

/* The grammar for `{"type":"json_object"}`: any JSON object, same
 * whitespace rules. Static string, never freed. */
const char *jsonschema_object_gbnf(void);

/* Does `value` match `schema` (both borrowed)? Returns JSONSCHEMA_OK, or
 * JSONSCHEMA_EMISMATCH with err naming the place in the value
 * ("wrong type (at $.items[2])"), or the error jsonschema_to_gbnf would give
 * for a schema outside the subset (checked where the value leads). Each
 * keyword is read as the converter reads it, so every value the grammar
 * produces matches; the grammar produces only some of the matching values
 * (declared properties in declared order, enum/const values in compact
 * form, numbers of bounded digits). */
int jsonschema_validate(const json_t *schema, const json_t *value, char *err, size_t errcap);

#endif
