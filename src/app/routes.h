/* routes.h — kvchat's route table, as data.
 *
 * Every endpoint is one row: method, path, handler, flags, and the summary
 * the OpenAPI description (openapi.c) prints. The table is the single
 * source of both the server's routing and /api/v1/openapi.json.
 */
#ifndef KVCHAT_APP_ROUTES_H
#define KVCHAT_APP_ROUTES_H

#include <stddef.h>

#include "common/httpd.h"

typedef struct {
    httpd_route_t route;
    const char *tag;          /* OpenAPI tag: Documents, Sessions, Model, Logs, System */
    const char *summary;
    const char *request;      /* body description ("multipart: file", "{message, document_id?}") or NULL */
} route_doc_t;

/* The table and its length. */
const route_doc_t *routes_table(size_t *n);

/* The OpenAPI 3 description of the table (new reference). */
json_t *openapi_document(const route_doc_t *routes, size_t n);

#endif
