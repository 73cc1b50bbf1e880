/* llm_gemini.c — the Gemini backend (Google's Generative Language API).
 *
 * Chat: POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse
 * with the key in "x-goog-api-key". The request differs from OpenAI's:
 *   - roles are "user" and "model", and must alternate: consecutive
 *     messages of one role become one content with several parts;
 *   - system messages go to "systemInstruction" (one part each);
 *   - sampling goes in "generationConfig" (maxOutputTokens, temperature,
 *     topP, stopSequences); params->extra is merged into the top level.
 * The answer is an SSE stream of GenerateContentResponse objects:
 *   {"candidates":[{"content":{"parts":[{"text":"..."}],"role":"model"},
 *     "finishReason":"STOP"}],
 *    "usageMetadata":{"promptTokenCount","candidatesTokenCount",
 *                     "cachedContentTokenCount"}, "modelVersion":"..."}
 * with no "[DONE]": the answer is complete once a finishReason came.
 * A prompt refused outright comes back as promptFeedback.blockReason with
 * no candidates, which becomes LLM_EREFUSED. Errors are
 * {"error":{"code":400,"message":"...","status":"INVALID_ARGUMENT"}}
 * (llm.c maps them). "Thought" parts (thinking models) are not answer text.
 *
 * Token counts: POST .../models/{model}:countTokens → {"totalTokens": N}.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/llm/llm.h"
#include "app/llm/llm_int.h"

/* "{base}/v1beta/models/{model}:{method}" with the model percent-encoded
 * (a leading "models/" is dropped). A base URL that already names the API
 * version ("/v1beta", "/v1") is used as it is. malloc'd; NULL when out of
 * memory. */
static char *model_url(const llm_provider_t *p, const char *method, const char *query)
{
    const char *model = p->model;
    if (strncmp(model, "models/", 7) == 0)
        model += 7;
    size_t ml = strlen(model);
    char *enc = malloc(ml * 3 + 1);
    if (!enc)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < ml; i++) {
        unsigned char ch = (unsigned char)model[i];
        if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            enc[k++] = (char)ch;
        } else {
            snprintf(enc + k, 4, "%%%02X", ch);
            k += 3;
        }
    }
    enc[k] = '\0';
    size_t bl = strlen(p->base_url);
    bool versioned = (bl >= 7 && strcmp(p->base_url + bl - 7, "/v1beta") == 0) ||
                     (bl >= 3 && strcmp(p->base_url + bl - 3, "/v1") == 0);
    char *url = llm__strdupf("%s%s/models/%s:%s%s", p->base_url, versioned ? "" : "/v1beta", enc,
                             method, query ? query : "");
    free(enc);
    return url;
}

static int add_part(json_t *parts, const char *text)
{
    json_t *part = json_pack("{s:o}", "text", llm__json_text(text));
    return part && json_array_append_new(parts, part) == 0 ? 0 : -1;
}

/* contents (alternating user/model) and systemInstruction from msgs. */
static int build_contents(const llm_message_t *msgs, size_t n, json_t *body)
{
    json_t *contents = json_array();
    json_t *sys_parts = json_array();
    json_t *last = NULL;            /* borrowed: the last content */
    const char *last_role = NULL;
    int rc = -1;
    if (!contents || !sys_parts)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].role == LLM_ROLE_SYSTEM) {
            if (add_part(sys_parts, msgs[i].content) != 0)
                goto out;
            continue;
        }
        const char *role = msgs[i].role == LLM_ROLE_ASSISTANT ? "model" : "user";
        if (!last || strcmp(role, last_role) != 0) {
            last = json_pack("{s:s, s:[]}", "role", role, "parts");
            if (!last || json_array_append_new(contents, last) != 0)
                goto out;
            last_role = role;
        }
        if (add_part(json_object_get(last, "parts"), msgs[i].content) != 0)
            goto out;
    }
    if (json_array_size(contents) == 0) {
        /* Only system messages: Gemini needs contents, so they become the
         * user's turn. */
        json_t *c = json_pack("{s:s, s:O}", "role", "user", "parts", sys_parts);
        if (!c || json_array_append_new(contents, c) != 0)
            goto out;
    } else if (json_array_size(sys_parts) > 0) {
        if (json_object_set_new(body, "systemInstruction", json_pack("{s:O}", "parts", sys_parts)) !=
            0)
            goto out;
    }
    if (json_object_set(body, "contents", contents) != 0)
        goto out;
    rc = 0;
out:
    json_decref(contents);
    json_decref(sys_parts);
    return rc;
}

static int gm_chat_request(const llm_provider_t *p, const llm_message_t *msgs, size_t n,
                           const llm_params_t *prm, char **url, char **body, char *err,
                           size_t errcap)
{
    *url = NULL;
    *body = NULL;
    int rc = LLM_ENOMEM;
    json_t *b = json_object();
    json_t *gc = json_object();
    if (!b || !gc || build_contents(msgs, n, b) != 0)
        goto out;
    if (prm->max_tokens > 0 &&
        json_object_set_new(gc, "maxOutputTokens", json_integer(prm->max_tokens)) != 0)
        goto out;
    if (prm->temperature >= 0 &&
        json_object_set_new(gc, "temperature", json_real(prm->temperature)) != 0)
        goto out;
    if (prm->top_p >= 0 && json_object_set_new(gc, "topP", json_real(prm->top_p)) != 0)
        goto out;
    if (prm->stop[0]) {
        json_t *stop = json_array();
        for (int i = 0; stop && i < LLM_MAX_STOP && prm->stop[i]; i++)
            json_array_append_new(stop, llm__json_text(prm->stop[i]));
        if (!stop || json_object_set_new(gc, "stopSequences", stop) != 0)
            goto out;
    }
    if (json_object_size(gc) > 0 && json_object_set(b, "generationConfig", gc) != 0)
        goto out;
    rc = llm__merge_extra(b, prm);
    if (rc == LLM_EINVAL) {
        snprintf(err, errcap, "The extra generation parameters must be a JSON object");
        goto out;
    }
    if (rc != LLM_OK)
        goto out;
    rc = LLM_ENOMEM;
    *body = json_dumps_compact(b);
    *url = model_url(p, "streamGenerateContent", "?alt=sse");
    if (*body && *url)
        rc = LLM_OK;
out:
    if (rc == LLM_ENOMEM)
        snprintf(err, errcap, "Out of memory");
    if (rc != LLM_OK) {
        free(*body);
        free(*url);
        *body = NULL;
        *url = NULL;
    }
    json_decref(gc);
    json_decref(b);
    return rc;
}

/* Gemini's finishReason in OpenAI's words, which the app stores. */
static void map_finish(const char *r, char *out, size_t cap)
{
    static const struct {
        const char *gemini, *ours;
    } map[] = {
        { "STOP", "stop" },
        { "MAX_TOKENS", "length" },
        { "SAFETY", "content_filter" },
        { "RECITATION", "content_filter" },
        { "BLOCKLIST", "content_filter" },
        { "PROHIBITED_CONTENT", "content_filter" },
        { "SPII", "content_filter" },
        { "IMAGE_SAFETY", "content_filter" },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(r, map[i].gemini) == 0) {
            snprintf(out, cap, "%s", map[i].ours);
            return;
        }
    }
    size_t k = 0;
    for (; r[k] && k + 1 < cap; k++)
        out[k] = (char)tolower((unsigned char)r[k]);
    out[k] = '\0';
}

static int gm_chat_event(llm_chat_call_t *c, json_t *ev)
{
    llm_xfer_t *x = &c->x;
    llm_result_t *res = c->res;
    const char *who = x->p->name;

    json_t *mv = json_object_get(ev, "modelVersion");
    if (json_is_string(mv) && json_string_length(mv))
        llm__copy_str(res->model, sizeof res->model, ev, "modelVersion");

    json_t *um = json_object_get(ev, "usageMetadata");
    if (json_is_object(um)) {
        res->usage.prompt_tokens = llm__get_int(um, "promptTokenCount", res->usage.prompt_tokens);
        res->usage.completion_tokens =
            llm__get_int(um, "candidatesTokenCount", res->usage.completion_tokens);
        res->usage.cached_tokens =
            llm__get_int(um, "cachedContentTokenCount", res->usage.cached_tokens);
    }

    json_t *cands = json_object_get(ev, "candidates");
    if (cands && !json_is_array(cands))
        return llm__fail(x, LLM_EPROTO, "Malformed event from %s: 'candidates' is not an array",
                         who);
    json_t *cand = json_array_get(cands, 0);
    if (!cand) {
        json_t *pf = json_object_get(ev, "promptFeedback");
        const char *block = json_string_value(json_object_get(pf, "blockReason"));
        if (block)
            return llm__fail(x, LLM_EREFUSED, "%s refused to answer this prompt (%s)", who, block);
        return LLM_OK;
    }
    if (!json_is_object(cand))
        return llm__fail(x, LLM_EPROTO, "Malformed event from %s: a candidate is not an object",
                         who);
    json_t *content = json_object_get(cand, "content");
    json_t *parts = json_object_get(content, "parts");
    if (content && !json_is_object(content))
        return llm__fail(x, LLM_EPROTO, "Malformed event from %s: 'content' is not an object", who);
    if (parts && !json_is_array(parts))
        return llm__fail(x, LLM_EPROTO, "Malformed event from %s: 'parts' is not an array", who);
    size_t i;
    json_t *part;
    json_array_foreach(parts, i, part) {
        json_t *text = json_object_get(part, "text");
        if (!text || json_is_true(json_object_get(part, "thought")))
            continue; /* function calls, inline data, thinking: not answer text */
        if (!json_is_string(text))
            return llm__fail(x, LLM_EPROTO, "Malformed event from %s: a part's text is not a string",
                             who);
        if (llm__emit(c, json_string_value(text), json_string_length(text)) != LLM_OK)
            return x->rc;
    }
    const char *fr = json_string_value(json_object_get(cand, "finishReason"));
    if (fr && *fr && strcmp(fr, "FINISH_REASON_UNSPECIFIED") != 0) {
        char mapped[32];
        map_finish(fr, mapped, sizeof mapped);
        llm__finish(c, mapped);
    }
    return LLM_OK;
}

static int gm_tokenize_count(llm_provider_t *p, const char *text, size_t len, int64_t *n,
                             char *errmsg, size_t errcap)
{
    json_t *body = json_pack("{s:[{s:s, s:[{s:o}]}]}", "contents", "role", "user", "parts", "text",
                             json_string_lossy(text, len));
    char *url = model_url(p, "countTokens", NULL);
    char *btext = body ? json_dumps_compact(body) : NULL;
    json_decref(body);
    if (!url || !btext) {
        free(url);
        free(btext);
        return LLM_ENOMEM;
    }
    llm_xfer_t x;
    llm__xfer_init(&x, p, "POST", url);
    x.body = btext;
    x.body_len = strlen(btext);
    x.max_body = (size_t)64 << 10;
    int rc = llm__xfer_run(&x);
    if (rc == LLM_OK) {
        json_t *t = json_object_get(x.json, "totalTokens");
        if (json_is_integer(t))
            *n = (int64_t)json_integer_value(t);
        else
            rc = llm__fail(&x, LLM_EPROTO, "Malformed countTokens answer from %s", p->name);
    }
    if (rc != LLM_OK && errmsg)
        snprintf(errmsg, errcap, "%s", x.error);
    llm__xfer_cleanup(&x);
    free(url);
    free(btext);
    return rc;
}

const llm_backend_t llm__backend_gemini = {
    .auth_prefix = "x-goog-api-key: ",
    .chat_request = gm_chat_request,
    .chat_event = gm_chat_event,
    .prefill = NULL,
    .cache_delete = NULL,
    .models = NULL,
    .tokenize_count = gm_tokenize_count,
};
