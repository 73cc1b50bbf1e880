/* openapi.c — the OpenAPI 3.0 description, generated from the route table
 * (routes.c), so every route is described and nothing else is. */
#include <stdio.h>
#include <string.h>

#include "app/routes.h"

/* "/api/v1/session/{session_id}" has the parameter session_id; a last
 * "{path*}" segment is written "{path}" as OpenAPI wants. */
static json_t *path_params(const char *pattern, char *oapath, size_t cap)
{
    json_t *params = json_array();
    size_t o = 0;
    for (const char *p = pattern; *p && o + 1 < cap; p++) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            if (!end)
                break;
            size_t n = (size_t)(end - p - 1);
            if (n && p[n] == '*')
                n--;
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)n, p + 1);
            o += (size_t)snprintf(oapath + o, cap - o, "{%s}", name);
            json_array_append_new(params, json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", name, "in",
                                                    "path", "required", 1, "schema", "type", "string"));
            p = end;
            continue;
        }
        oapath[o++] = *p;
    }
    oapath[o < cap ? o : cap - 1] = '\0';
    return params;
}

json_t *openapi_document(const route_doc_t *routes, size_t n)
{
    json_t *paths = json_object();
    for (size_t i = 0; i < n; i++) {
        const route_doc_t *r = &routes[i];
        char path[512], method[16];
        json_t *params = path_params(r->route.pattern, path, sizeof path);
        size_t k = 0;
        for (; r->route.method[k] && k + 1 < sizeof method; k++)
            method[k] = (char)(r->route.method[k] | 0x20);
        method[k] = '\0';
        json_t *op = json_pack("{s:s, s:[s], s:o, s:{s:{s:s}, s:{s:s}}}", "summary", r->summary, "tags",
                               r->tag, "parameters", params, "responses", "200", "description", "OK",
                               "4XX", "description", "Error: {\"detail\": \"...\"}");
        if (r->request) {
            const char *ct = (r->route.flags & HTTPD_ROUTE_UPLOAD) ? "multipart/form-data" : "application/json";
            json_object_set_new(op, "requestBody",
                                json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", r->request,
                                          "content", ct, "schema", "type", "object"));
        }
        json_t *item = json_object_get(paths, path);
        if (!item) {
            item = json_object();
            json_object_set_new(paths, path, item);
        }
        json_object_set_new(item, method, op);
    }
    return json_pack("{s:s, s:{s:s, s:s, s:s}, s:o}", "openapi", "3.0.3", "info", "title", "kvchat API",
                     "version", "1.0.0", "description",
                     "Chat with your documents; each document's KV cache is kept and reused.", "paths",
                     paths);
}
