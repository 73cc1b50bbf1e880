/* engines.h — several model servers behind one kvchat: each document's
 * questions go to the engine that holds its cache.
 *
 * engine.endpoints lists kvchat-engines (on other hosts, or several on
 * this one). Each has its own provider (llm.h, kind local) and a place in
 * a router (router.h): a key (a document part's, or a conversation's)
 * ranks the engines by rendezvous hashing, its home is the first healthy
 * one, and a request goes there unless that engine is past the load bound.
 * Every app replica computes the same homes without talking to the others.
 *
 * Health: a thread asks every engine for its model (GET /v1/models,
 * bounded by LLM_STATUS_TIMEOUT_MS) every check_ms; an engine that does not
 * answer is skipped from then on (its keys move to the next engine of
 * their rankings) until it answers again. A call that finds an engine down
 * (engines_down) takes it out at once, without waiting for the next round.
 *
 * Thread safe.
 */
#ifndef KVCHAT_APP_LLM_ENGINES_H
#define KVCHAT_APP_LLM_ENGINES_H

#include <stdbool.h>
#include <stddef.h>

#include "app/llm/llm.h"
#include "app/llm/router.h"
#include "common/json.h"

typedef struct engines engines_t;

typedef struct {
    const char *list;        /* engine.endpoints: URLs separated by commas
                                and/or spaces ("http://10.0.0.5:13141");
                                "/v1" is added when a URL lacks it. A URL
                                after "openai:" is an OpenAI-compatible
                                server (vLLM, SGLang, llama-server): chats
                                go to it alike, and caching a document
                                there warms its own prefix cache */
    const char *api_key;     /* every engine's key (engine.api_key); NULL/"" none */
    unsigned first_byte_timeout_ms;   /* as llm_config_t's; 0 = its default */
    double load_factor;      /* router.h */
    int min_load;            /* router.h: each engine's sequence slots */
    unsigned check_ms;       /* between health checks; 0 = no checker thread */
} engines_config_t;

/* Parse the list and make a provider per engine; starts the checker.
 * Returns 0, or -1 with a sentence in err (an empty list, a URL that is
 * not http(s)://, more than ROUTER_MAX, a duplicate). */
int engines_new(const engines_config_t *cfg, engines_t **out, char *err, size_t errcap);
/* Stops the checker and frees everything. No call may be running. */
void engines_free(engines_t *g);

size_t engines_count(const engines_t *g);
/* Engine i's provider and base URL (borrowed; valid while g lives). */
llm_provider_t *engines_llm(engines_t *g, int i);
const char *engines_url(const engines_t *g, int i);

/* The engine for key's next request, counted as in flight until
 * engines_done; -1 when none is healthy. */
int engines_pick(engines_t *g, const char *key, int *rank);
void engines_done(engines_t *g, int i);
/* key's home: the first healthy engine of its ranking (where its cache
 * belongs), whatever the load; -1 when none is healthy. */
int engines_home(engines_t *g, const char *key);
/* The first healthy engine (for calls any engine answers alike:
 * tokenizing, the model's facts); -1 when none is. */
int engines_any(engines_t *g);

/* A call found engine i down (refused, reset, timed out): skip it until
 * a health check finds it answering. why is logged. */
void engines_down(engines_t *g, int i, const char *why);
bool engines_healthy(engines_t *g, int i);
size_t engines_healthy_count(engines_t *g);

/* One round of health checks now, in the calling thread. Returns how many
 * engines are healthy. */
size_t engines_check(engines_t *g);

/* [{url, healthy, inflight, error}] for the status page (new reference). */
json_t *engines_json(engines_t *g);

#endif
