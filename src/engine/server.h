/* server.h — kvchat-engine's HTTP API (OpenAI-compatible, plus the cache API).
 *
 * Routes (a table in server.c):
 *   GET  /health                     200 ready, 503 loading/failed
 *   GET  /metrics                    Prometheus text
 *   GET  /v1/models                  the served model (with kvchat facts)
 *   POST /v1/chat/completions        chat; stream true → SSE chunks + [DONE]
 *   POST /v1/completions             raw prompt completion
 *   POST /tokenize, /detokenize
 *   POST /v1/cache/prefill           prefill and snapshot a prefix
 *   GET  /v1/cache, /v1/cache/stats; DELETE /v1/cache/{id};
 *   POST /v1/cache/reset
 */
#ifndef KVCHAT_ENGINE_SERVER_H
#define KVCHAT_ENGINE_SERVER_H

#include "engine/engine.h"

/* Start listening on e->cfg.host:port with e as the handlers' state.
 * Returns 0 or a negative HTTPD_E* code. */
int server_open(engine_t *e);

/* The port bound (useful with --port 0). */
int server_port(const engine_t *e);

/* End every stream and stop listening. */
void server_close(engine_t *e);

const char *server_strerror(int rc);

#endif
