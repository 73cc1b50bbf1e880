/* config.h — kvchat's settings: defaults < config file < environment < flags.
 *
 * Every setting has one row in a table (config.c): its INI section and key,
 * its environment variable, its type and default. The config file is INI
 * (parsed by inih): `kvchat.ini` in the working directory, or the file named
 * by --config / KVCHAT_CONFIG. Any setting can be given on the command line
 * as --set section.key=value; the common ones also have their own flags.
 * Remote models are sections named [remote.NAME].
 */
#ifndef KVCHAT_APP_CONFIG_H
#define KVCHAT_APP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CONFIG_MAX_REMOTES 16

typedef struct {
    char name[64];            /* the NAME of [remote.NAME]; the serving name */
    char provider[16];        /* openai | gemini */
    char base_url[512];
    char api_key[512];
    char model[128];
    int context;              /* tokens per request, when the server does not say;
                                 0 = unknown (then a document is never cut into parts) */
} config_remote_t;

typedef struct {
    /* [server] */
    char host[128];
    int port;
    char cors_origins[1024];
    char api_key[256];
    int max_upload_mb;
    char allowed_hosts[1024]; /* Host names answered besides the listen address,
                                 localhost and loopback addresses (comma-separated;
                                 "*" = any) */
    int http_timeout_s;       /* a connection idle this long (headers, body,
                                 keep-alive) is closed */
    int max_connections;      /* simultaneous connections */
    int max_conn_per_ip;      /* simultaneous connections from one client address */
    /* [data] */
    char data_dir[1024];
    char database[1100];      /* "" = sqlite:<data_dir>/kvchat.db */
    /* [session] */
    int session_idle_s;
    int session_sweep_s;
    /* [prompt] */
    char system_template[4096];   /* {document} and {filename} are replaced */
    char system_no_doc[1024];     /* system message when no document is selected ("" = none) */
    /* [llm] */
    char provider[16];        /* local | openai | gemini */
    char llm_base_url[512];
    char llm_api_key[512];
    char llm_model[128];
    int llm_context;          /* [llm] context: as config_remote_t's */
    int max_tokens;
    bool drafts;              /* take drafts (a question read ahead while typed) */
    double temperature;
    int first_byte_timeout_s;
    /* [engine] */
    char engine_exe[1024];    /* "" = kvchat-engine next to kvchat */
    char engine_api_key[513]; /* "" = a new random key at every engine start */
    char model_path[1024];    /* "" = the demo model, or the first GGUF in models_dir */
    char models_dir[1024];
    int engine_port;
    int ctx_size;
    int parallel;
    int threads;
    int cache_ram_mb;
    int cache_disk_gb;
    char cache_dir[1024];     /* "" = <data_dir>/kvcache */
    bool restart_on_crash;
    bool autostart;           /* start the engine (with --resume) at start-up */
    int health_timeout_s;
    char engine_endpoints[2048]; /* "" = one engine, supervised here; else the
                                    URLs of kvchat-engines to route over */
    char cache_shared[1024];     /* "" = none; else the directory the engines
                                    supervised here share a cache tier in */
    int cache_shared_gb;
    int engine_count;            /* engines supervised here for the local model,
                                    each its own port, cache and logs */
    double engine_load_factor;   /* an engine past this times the mean load
                                    is skipped for a key's next (llm/router.h) */
    /* [extract] */
    char extract_exe[1024];   /* "" = kvchat-extract next to kvchat */
    int extract_timeout_s;
    int extract_cpu_s;
    int extract_mem_mb;
    int extract_concurrency;  /* extractions running at once; 0 = number of cores */
    char ocr_languages[128];  /* Tesseract languages ("eng", "eng+deu"); "" = no OCR */
    int ocr_page_s;           /* OCR time limit per page */
    int ocr_s;                /* OCR time limit per document, on top of timeout
                                 and cpu_seconds once OCR starts */
    /* [documents] long documents: chunks and parts */
    int chunk_tokens;         /* a chunk's target size (estimated tokens) */
    int chunk_max_tokens;     /* a chunk's largest size */
    int conversation_reserve; /* tokens of the context kept for the conversation;
                                 0 = a quarter of the context, at least 1024 */
    int part_overlap_tokens;  /* consecutive parts share at least this many tokens
                                 of whole chunks (at least one chunk); 0 = chunk_tokens */
    int max_parts;            /* a document needing more parts for the model in use
                                 is refused (422) before any is counted or cached */
    /* [auth] accounts */
    char auth_mode[16];       /* local (no login; loopback addresses only) | accounts */
    int auth_session_idle_s;  /* a login session unused this long ends */
    char auth_trusted_header[128];  /* "" = none; else the header a trusted proxy
                                       names the signed-in user with */
    char auth_trusted_proxies[1024];/* addresses allowed to set it (comma-separated) */
    int login_lock_after;     /* failed logins (per account, per address) that lock */
    int login_lock_minutes;
    int audit_keep;           /* audit log entries kept (the newest); 0 = all */
    bool insecure_no_auth;    /* --insecure-no-auth: local mode on any address */
    /* [limits] per user, accounts mode */
    int chats_per_minute;     /* 0 = none */
    int chats_at_once;        /* 0 = none */
    int uploads_per_minute;   /* 0 = none */
    int uploads_at_once;      /* 0 = none */
    int storage_mb;           /* documents' bytes per user; 0 = none */
    /* [log] */
    char log_level[16];
    char log_format[16];      /* text | json */
    char logs_dir[1024];      /* "" = <data_dir>/logs */
    /* [remote.*] */
    config_remote_t remotes[CONFIG_MAX_REMOTES];
    int n_remotes;
    /* where the values came from, for the start-up log */
    char config_file[1024];
} config_t;

/* Fill with the defaults. */
void config_defaults(config_t *c);

/* Load: defaults, then the config file, then KVCHAT_* environment
 * variables, then the command line. Returns 0, 1 for --help (usage printed
 * to stdout), or -1 with a message in err (bad flag, unreadable file, bad
 * value with its line number). */
int config_load(config_t *c, int argc, char **argv, char *err, size_t errcap);

/* Derived paths (data_dir based defaults filled in). Call after loading. */
void config_resolve(config_t *c);

/* Whether local mode may serve on the configured address: true when
 * auth.mode is accounts, when --insecure-no-auth was given, or when every
 * address server.host resolves to is a loopback one (127.0.0.0/8, ::1).
 * Otherwise false with the message to print in err. */
bool config_mode_allowed(const config_t *c, char *err, size_t errcap);

/* Set one value by "section.key" (as --set does). Returns 0 or -1. */
int config_set(config_t *c, const char *section, const char *key, const char *value);

void config_usage(FILE *out);

#endif
