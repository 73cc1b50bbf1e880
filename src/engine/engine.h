/* engine.h — the program state of kvchat-engine, built in main.c.
 *
 * One struct holds the configuration and every long-lived object (model,
 * context, KV store, prompt builder, scheduler, HTTP server). The HTTP
 * handlers in server.c receive it as their user data.
 */
#ifndef KVCHAT_ENGINE_ENGINE_H
#define KVCHAT_ENGINE_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "engine/kvstore.h"
#include "engine/model.h"
#include "engine/prompt.h"
#include "engine/scheduler.h"

typedef struct {
    const char *model_path;
    const char *alias;          /* model id served; default: file name */
    const char *host;
    int port;
    int ctx_size;               /* total KV cells; 0 = per-slot default x parallel */
    int parallel;
    int threads;
    int batch;
    int prompt_chunk;
    int queue;
    model_kv_type_t kv_type;
    bool flash_attn;
    bool kv_unified;            /* one KV buffer shared by all slots */
    bool mmap;                  /* map the weights instead of reading them */
    size_t cache_ram;           /* bytes */
    size_t cache_disk;          /* bytes; 0 = no disk tier */
    const char *cache_dir;
    const char *cache_shared;   /* shared tier directory (several engines);
                                   NULL = none. Needs the disk tier */
    size_t cache_shared_size;   /* bytes; the shared tier's budget */
    bool reset;                 /* else resume */
    bool no_cache;              /* neither restore nor snapshot */
    const char *api_key;        /* required as "Authorization: Bearer" (all routes
                                   but /health); NULL = none. From --api-key, or
                                   read from api_key_fd into engine_t.key */
    int api_key_fd;             /* --api-key-fd: a descriptor to read the key
                                   from, once, at start; -1 = none */
    const char *log_file;
    bool verbose;
    size_t max_body;
    int max_tokens_default;
    unsigned http_timeout_s;    /* idle connection timeout (httpd timeout_s) */
    unsigned max_connections;
    unsigned max_per_ip;        /* connections from one client address; 0 = no limit */
    const char *allowed_hosts;  /* NULL: "*" unless listening on loopback */
    const char *cors_origins;   /* --cors-origins; NULL = no CORS */
} engine_config_t;

typedef enum { ENGINE_LOADING = 0, ENGINE_READY = 1, ENGINE_FAILED = 2 } engine_state_t;

/* The longest API key accepted from --api-key-fd. */
#define ENGINE_KEY_MAX 512

struct httpd;

typedef struct {
    engine_config_t cfg;
    atomic_int state;           /* engine_state_t */
    char error[256];            /* why loading failed */
    char model_id[256];
    char key[ENGINE_KEY_MAX + 1]; /* the key read from api_key_fd (cfg.api_key
                                   points here then); wiped at exit */
    double started_at;          /* epoch seconds */
    model_t *model;
    model_ctx_t *ctx;
    kvstore_t *store;
    prompt_t *prompt;
    sched_t *sched;
    struct httpd *http;
} engine_t;

#endif
