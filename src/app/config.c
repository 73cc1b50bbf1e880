/* config.c — see config.h. inih is included here only. */
#include "app/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

typedef enum { T_STR, T_INT, T_DOUBLE, T_BOOL } type_t;

typedef struct {
    const char *section, *key, *env;
    type_t type;
    size_t offset, size;     /* size: capacity for strings */
    const char *def;
    long lo, hi;             /* range for integers */
} setting_t;

#define S(sec, k, env, field, def) \
    { sec, k, env, T_STR, offsetof(config_t, field), sizeof(((config_t *)0)->field), def, 0, 0 }
#define I(sec, k, env, field, def, lo, hi) \
    { sec, k, env, T_INT, offsetof(config_t, field), sizeof(int), def, lo, hi }
#define D(sec, k, env, field, def) \
    { sec, k, env, T_DOUBLE, offsetof(config_t, field), sizeof(double), def, 0, 0 }
#define B(sec, k, env, field, def) \
    { sec, k, env, T_BOOL, offsetof(config_t, field), sizeof(bool), def, 0, 0 }

static const char default_template[] =
    "You are a helpful assistant. Answer the user's questions using the document below. "
    "If the answer is not in the document, say so.\n\n"
    "Document: {filename}\n\n{document}";

static const setting_t settings[] = {
    S("server", "host", "KVCHAT_HOST", host, "127.0.0.1"),
    I("server", "port", "KVCHAT_PORT", port, "8000", 0, 65535),
    S("server", "cors_origins", "KVCHAT_CORS_ORIGINS", cors_origins, ""),
    S("server", "api_key", "KVCHAT_API_KEY", api_key, ""),
    I("server", "max_upload_mb", "KVCHAT_MAX_UPLOAD_MB", max_upload_mb, "50", 1, 1 << 20),
    S("server", "allowed_hosts", "KVCHAT_ALLOWED_HOSTS", allowed_hosts, ""),
    I("server", "timeout", "KVCHAT_HTTP_TIMEOUT", http_timeout_s, "30", 1, 86400),
    I("server", "max_connections", "KVCHAT_MAX_CONNECTIONS", max_connections, "512", 16, 16384),
    I("server", "max_connections_per_ip", "KVCHAT_MAX_CONNECTIONS_PER_IP", max_conn_per_ip, "64", 1, 16384),
    S("data", "dir", "KVCHAT_DATA", data_dir, "./data"),
    S("data", "database", "KVCHAT_DATABASE", database, ""),
    I("session", "idle_timeout", "KVCHAT_SESSION_IDLE_TIMEOUT", session_idle_s, "3600", 1, 1 << 30),
    I("session", "sweep_interval", "KVCHAT_SESSION_SWEEP_INTERVAL", session_sweep_s, "60", 1, 86400),
    S("prompt", "system_template", "KVCHAT_SYSTEM_TEMPLATE", system_template, default_template),
    S("prompt", "system_no_document", "KVCHAT_SYSTEM_NO_DOCUMENT", system_no_doc,
      "You are a helpful assistant."),
    S("llm", "provider", "KVCHAT_PROVIDER", provider, "local"),
    S("llm", "base_url", "KVCHAT_LLM_BASE_URL", llm_base_url, ""),
    S("llm", "api_key", "KVCHAT_LLM_API_KEY", llm_api_key, ""),
    S("llm", "model", "KVCHAT_LLM_MODEL", llm_model, ""),
    I("llm", "context", "KVCHAT_LLM_CONTEXT", llm_context, "0", 0, 1 << 24),
    I("llm", "max_tokens", "KVCHAT_MAX_TOKENS", max_tokens, "512", 1, 1 << 20),
    D("llm", "temperature", "KVCHAT_TEMPERATURE", temperature, "0.7"),
    B("llm", "drafts", "KVCHAT_DRAFTS", drafts, "true"),
    I("llm", "first_byte_timeout", "KVCHAT_FIRST_BYTE_TIMEOUT", first_byte_timeout_s, "600", 1, 86400),
    S("engine", "exe", "KVCHAT_ENGINE_EXE", engine_exe, ""),
    S("engine", "api_key", "KVCHAT_ENGINE_API_KEY", engine_api_key, ""),
    S("engine", "model", "KVCHAT_MODEL", model_path, ""),
    S("engine", "models_dir", "KVCHAT_MODELS_DIR", models_dir, "./models"),
    I("engine", "port", "KVCHAT_ENGINE_PORT", engine_port, "13141", 0, 65535),
    I("engine", "ctx_size", "KVCHAT_CTX_SIZE", ctx_size, "0", 0, 1 << 24),
    I("engine", "parallel", "KVCHAT_PARALLEL", parallel, "2", 1, 64),
    I("engine", "threads", "KVCHAT_THREADS", threads, "0", 0, 1024),
    I("engine", "cache_ram_mb", "KVCHAT_CACHE_RAM_MB", cache_ram_mb, "2048", 0, 1 << 24),
    I("engine", "cache_disk_gb", "KVCHAT_CACHE_DISK_GB", cache_disk_gb, "10", 0, 1 << 20),
    S("engine", "cache_dir", "KVCHAT_CACHE_DIR", cache_dir, ""),
    B("engine", "restart_on_crash", "KVCHAT_RESTART_ON_CRASH", restart_on_crash, "true"),
    B("engine", "autostart", "KVCHAT_AUTOSTART", autostart, "true"),
    I("engine", "health_timeout", "KVCHAT_HEALTH_TIMEOUT", health_timeout_s, "300", 1, 86400),
    S("engine", "endpoints", "KVCHAT_ENGINE_ENDPOINTS", engine_endpoints, ""),
    S("engine", "cache_shared", "KVCHAT_CACHE_SHARED", cache_shared, ""),
    I("engine", "cache_shared_gb", "KVCHAT_CACHE_SHARED_GB", cache_shared_gb, "10", 1, 1 << 20),
    I("engine", "count", "KVCHAT_ENGINE_COUNT", engine_count, "1", 1, 16),
    D("engine", "load_factor", "KVCHAT_ENGINE_LOAD_FACTOR", engine_load_factor, "1.25"),
    S("extract", "exe", "KVCHAT_EXTRACT_EXE", extract_exe, ""),
    I("extract", "timeout", "KVCHAT_EXTRACT_TIMEOUT", extract_timeout_s, "60", 1, 86400),
    I("extract", "cpu_seconds", "KVCHAT_EXTRACT_CPU", extract_cpu_s, "30", 1, 86400),
    I("extract", "memory_mb", "KVCHAT_EXTRACT_MEMORY_MB", extract_mem_mb, "1024", 16, 1 << 20),
    I("extract", "concurrency", "KVCHAT_EXTRACT_CONCURRENCY", extract_concurrency, "0", 0, 1024),
    S("extract", "ocr_languages", "KVCHAT_OCR_LANGUAGES", ocr_languages, "eng"),
    I("extract", "ocr_page_seconds", "KVCHAT_OCR_PAGE_SECONDS", ocr_page_s, "60", 1, 86400),
    I("extract", "ocr_seconds", "KVCHAT_OCR_SECONDS", ocr_s, "600", 1, 86400),
    I("documents", "chunk_tokens", "KVCHAT_CHUNK_TOKENS", chunk_tokens, "256", 16, 8192),
    I("documents", "chunk_max_tokens", "KVCHAT_CHUNK_MAX_TOKENS", chunk_max_tokens, "512", 16,
      16384),
    I("documents", "conversation_reserve", "KVCHAT_CONVERSATION_RESERVE", conversation_reserve,
      "0", 0, 1 << 20),
    I("documents", "part_overlap_tokens", "KVCHAT_PART_OVERLAP_TOKENS", part_overlap_tokens, "0",
      0, 1 << 20),
    I("documents", "max_parts", "KVCHAT_MAX_PARTS", max_parts, "512", 1, 100000),
    S("auth", "mode", "KVCHAT_AUTH_MODE", auth_mode, "local"),
    I("auth", "session_idle", "KVCHAT_AUTH_SESSION_IDLE", auth_session_idle_s, "604800", 60,
      1 << 30),
    S("auth", "trusted_header", "KVCHAT_AUTH_TRUSTED_HEADER", auth_trusted_header, ""),
    S("auth", "trusted_proxies", "KVCHAT_AUTH_TRUSTED_PROXIES", auth_trusted_proxies, ""),
    I("auth", "login_lock_after", "KVCHAT_LOGIN_LOCK_AFTER", login_lock_after, "10", 1, 1000),
    I("auth", "login_lock_minutes", "KVCHAT_LOGIN_LOCK_MINUTES", login_lock_minutes, "15", 1,
      10080),
    I("auth", "audit_keep", "KVCHAT_AUDIT_KEEP", audit_keep, "100000", 0, 1 << 30),
    I("limits", "chats_per_minute", "KVCHAT_CHATS_PER_MINUTE", chats_per_minute, "30", 0,
      100000),
    I("limits", "chats_at_once", "KVCHAT_CHATS_AT_ONCE", chats_at_once, "4", 0, 1000),
    I("limits", "uploads_per_minute", "KVCHAT_UPLOADS_PER_MINUTE", uploads_per_minute, "20", 0,
      100000),
    I("limits", "uploads_at_once", "KVCHAT_UPLOADS_AT_ONCE", uploads_at_once, "2", 0, 1000),
    I("limits", "storage_mb", "KVCHAT_STORAGE_MB", storage_mb, "0", 0, 1 << 30),
    S("log", "level", "KVCHAT_LOG_LEVEL", log_level, "info"),
    S("log", "format", "KVCHAT_LOG_FORMAT", log_format, "text"),
    S("log", "dir", "KVCHAT_LOGS_DIR", logs_dir, ""),
};

#define N_SETTINGS (sizeof settings / sizeof settings[0])

static const setting_t *find(const char *section, const char *key)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strcmp(settings[i].section, section) == 0 && strcmp(settings[i].key, key) == 0)
            return &settings[i];
    return NULL;
}

static int set_value(config_t *c, const setting_t *s, const char *v)
{
    char *dst = (char *)c + s->offset;
    char *end;
    switch (s->type) {
    case T_STR:
        if (strlen(v) >= s->size)
            return -1;
        memcpy(dst, v, strlen(v) + 1);
        return 0;
    case T_INT: {
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < s->lo || x > s->hi)
            return -1;
        *(int *)dst = (int)x;
        return 0;
    }
    case T_DOUBLE: {
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end)
            return -1;
        *(double *)dst = x;
        return 0;
    }
    case T_BOOL:
        if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") || !strcmp(v, "1"))
            *(bool *)dst = true;
        else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") || !strcmp(v, "0"))
            *(bool *)dst = false;
        else
            return -1;
        return 0;
    }
    return -1;
}

static config_remote_t *remote_named(config_t *c, const char *name)
{
    for (int i = 0; i < c->n_remotes; i++)
        if (strcmp(c->remotes[i].name, name) == 0)
            return &c->remotes[i];
    if (c->n_remotes == CONFIG_MAX_REMOTES || strlen(name) >= sizeof c->remotes[0].name)
        return NULL;
    config_remote_t *r = &c->remotes[c->n_remotes++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->provider, sizeof r->provider, "openai");
    return r;
}

int config_set(config_t *c, const char *section, const char *key, const char *value)
{
    if (strncmp(section, "remote.", 7) == 0) {
        config_remote_t *r = remote_named(c, section + 7);
        if (!r || !section[7])
            return -1;
        struct {
            const char *k;
            char *dst;
            size_t cap;
        } f[] = {
            { "provider", r->provider, sizeof r->provider },
            { "base_url", r->base_url, sizeof r->base_url },
            { "api_key", r->api_key, sizeof r->api_key },
            { "model", r->model, sizeof r->model },
        };
        if (strcmp(key, "context") == 0) {
            char *end;
            errno = 0;
            long v = strtol(value, &end, 10);
            if (!*value || *end || errno || v < 0 || v > (1 << 24))
                return -1;
            r->context = (int)v;
            return 0;
        }
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
            if (strcmp(key, f[i].k) == 0) {
                if (strlen(value) >= f[i].cap)
                    return -1;
                memcpy(f[i].dst, value, strlen(value) + 1);
                if (strcmp(key, "provider") == 0 && strcmp(value, "openai") != 0 &&
                    strcmp(value, "gemini") != 0)
                    return -1;
                return 0;
            }
        }
        return -1;
    }
    const setting_t *s = find(section, key);
    if (!s)
        return -1;
    if (strcmp(section, "prompt") == 0) {
        /* templates are multi-line: \n and \t are written as escapes */
        char buf[4096];
        size_t o = 0;
        for (const char *p = value; *p && o + 1 < sizeof buf; p++) {
            if (p[0] == '\\' && (p[1] == 'n' || p[1] == 't' || p[1] == '\\')) {
                buf[o++] = p[1] == 'n' ? '\n' : p[1] == 't' ? '\t' : '\\';
                p++;
            } else {
                buf[o++] = *p;
            }
        }
        buf[o] = '\0';
        return set_value(c, s, buf);
    }
    return set_value(c, s, value);
}

void config_defaults(config_t *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (set_value(c, &settings[i], settings[i].def) != 0)
            abort();   /* a default that does not parse is a bug here */
}

typedef struct {
    config_t *c;
    char *err;
    size_t errcap;
    int bad;
} ini_ctx_t;

static int on_ini(void *user, const char *section, const char *key, const char *value)
{
    ini_ctx_t *x = user;
    if (config_set(x->c, section, key, value) != 0) {
        if (!x->bad)
            snprintf(x->err, x->errcap, "unknown setting or bad value: [%s] %s = %s", section, key,
                     value);
        x->bad = 1;
        return 0;
    }
    return 1;
}

void config_usage(FILE *out)
{
    fprintf(out,
        "Usage: kvchat [options]\n"
        "The kvchat app server: documents, chat sessions, the local model server, web UI.\n\n"
        "  -c, --config FILE      INI config file (default ./kvchat.ini if present; $KVCHAT_CONFIG)\n"
        "      --host ADDR        listen address (default 127.0.0.1)\n"
        "  -p, --port N           listen port (default 8000)\n"
        "  -d, --data DIR         data directory (default ./data; $KVCHAT_DATA)\n"
        "  -m, --model PATH       GGUF model for the local engine\n"
        "      --provider NAME    local | openai | gemini\n"
        "      --no-autostart     do not start the engine at start-up\n"
        "      --insecure-no-auth serve without accounts on a non-loopback address\n"
        "      --log-level L      debug | info | warn | error\n"
        "      --set S.K=V        any setting, e.g. --set session.idle_timeout=600\n"
        "  -h, --help\n\n"
        "Settings (section.key, environment variable, default):\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const char *d = settings[i].def;
        fprintf(out, "  %s.%s  $%s  [%.40s%s]\n", settings[i].section, settings[i].key,
                settings[i].env, d, strlen(d) > 40 ? "..." : "");
    }
    fprintf(out, "  remote.NAME.{provider,base_url,api_key,model,context}  remote models (openai | gemini)\n");
}

int config_load(config_t *c, int argc, char **argv, char *err, size_t errcap)
{
    config_defaults(c);
    err[0] = '\0';
    /* The config file named on the command line, found first. */
    const char *file = getenv("KVCHAT_CONFIG");
    for (int i = 1; i < argc - 1; i++)
        if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c"))
            file = argv[i + 1];
    bool explicit_file = file != NULL;
    if (!file && access("kvchat.ini", R_OK) == 0)
        file = "kvchat.ini";
    if (file) {
        ini_ctx_t x = { c, err, errcap, 0 };
        int rc = ini_parse(file, on_ini, &x);
        if (rc < 0) {
            if (explicit_file || rc != -1) {
                snprintf(err, errcap, "cannot read config file %s", file);
                return -1;
            }
        } else if (rc > 0 || x.bad) {
            if (!x.bad)
                snprintf(err, errcap, "%s: syntax error on line %d", file, rc);
            else {
                char tmp[512];
                snprintf(tmp, sizeof tmp, "%s: %s", file, err);
                snprintf(err, errcap, "%s", tmp);
            }
            return -1;
        }
        snprintf(c->config_file, sizeof c->config_file, "%s", file);
    }
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const char *v = getenv(settings[i].env);
        if (v && set_value(c, &settings[i], v) != 0) {
            snprintf(err, errcap, "bad value for $%s: '%s'", settings[i].env, v);
            return -1;
        }
    }

    enum { O_HOST = 256, O_PROVIDER, O_NOAUTO, O_LOGLEVEL, O_SET, O_INSECURE };
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "host", required_argument, NULL, O_HOST },
        { "port", required_argument, NULL, 'p' },
        { "data", required_argument, NULL, 'd' },
        { "model", required_argument, NULL, 'm' },
        { "provider", required_argument, NULL, O_PROVIDER },
        { "no-autostart", no_argument, NULL, O_NOAUTO },
        { "log-level", required_argument, NULL, O_LOGLEVEL },
        { "set", required_argument, NULL, O_SET },
        { "insecure-no-auth", no_argument, NULL, O_INSECURE },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:p:d:m:h", opts, NULL)) != -1) {
        const char *sec = NULL, *key = NULL;
        switch (ch) {
        case 'c': continue;
        case O_HOST: sec = "server"; key = "host"; break;
        case 'p': sec = "server"; key = "port"; break;
        case 'd': sec = "data"; key = "dir"; break;
        case 'm': sec = "engine"; key = "model"; break;
        case O_PROVIDER: sec = "llm"; key = "provider"; break;
        case O_LOGLEVEL: sec = "log"; key = "level"; break;
        case O_NOAUTO: c->autostart = false; continue;
        case O_INSECURE: c->insecure_no_auth = true; continue;
        case 'h': config_usage(stdout); return 1;
        case O_SET: {
            char buf[2048];
            snprintf(buf, sizeof buf, "%s", optarg);
            char *eq = strchr(buf, '=');
            char *dot = eq ? memrchr(buf, '.', (size_t)(eq - buf)) : NULL;
            if (!eq || !dot) {
                snprintf(err, errcap, "--set wants section.key=value, got '%s'", optarg);
                return -1;
            }
            *eq = '\0';
            *dot = '\0';
            if (config_set(c, buf, dot + 1, eq + 1) != 0) {
                snprintf(err, errcap, "unknown setting or bad value: --set %s", optarg);
                return -1;
            }
            continue;
        }
        default:
            snprintf(err, errcap, "unknown option (see --help)");
            return -1;
        }
        if (config_set(c, sec, key, optarg) != 0) {
            snprintf(err, errcap, "bad value for --%s: '%s'", key, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        snprintf(err, errcap, "unexpected argument '%s'", argv[optind]);
        return -1;
    }
    if (strcmp(c->log_format, "text") != 0 && strcmp(c->log_format, "json") != 0) {
        snprintf(err, errcap, "log.format must be text or json (got '%s')", c->log_format);
        return -1;
    }
    if (strcmp(c->provider, "local") != 0 && strcmp(c->provider, "openai") != 0 &&
        strcmp(c->provider, "gemini") != 0) {
        snprintf(err, errcap, "llm.provider must be local, openai or gemini (got '%s')", c->provider);
        return -1;
    }
    if (strcmp(c->auth_mode, "local") != 0 && strcmp(c->auth_mode, "accounts") != 0) {
        snprintf(err, errcap, "auth.mode must be local or accounts (got '%s')", c->auth_mode);
        return -1;
    }
    /* Tesseract language names joined by '+' ("eng+deu"), or "" (no OCR):
     * kvchat-extract refuses anything else, so every upload would fail. */
    const char *l = c->ocr_languages;
    if (strspn(l, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+") !=
            strlen(l) ||
        l[0] == '+' || (l[0] && l[strlen(l) - 1] == '+') || strstr(l, "++")) {
        snprintf(err, errcap,
                 "extract.ocr_languages must be Tesseract languages joined by '+' "
                 "(eng, eng+deu) or empty (got '%s')", l);
        return -1;
    }
    return 0;
}

bool config_mode_allowed(const config_t *c, char *err, size_t errcap)
{
    if (strcmp(c->auth_mode, "local") != 0 || c->insecure_no_auth)
        return true;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE };
    struct addrinfo *res = NULL;
    bool loopback = getaddrinfo(c->host[0] ? c->host : NULL, "0", &hints, &res) == 0 && res;
    for (struct addrinfo *ai = res; loopback && ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)ai->ai_addr;
            loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
        } else if (ai->ai_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ai->ai_addr;
            loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
                       (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
        } else {
            loopback = false;
        }
    }
    if (res)
        freeaddrinfo(res);
    if (loopback)
        return true;
    snprintf(err, errcap,
             "kvchat would listen on %s without accounts: anyone who can reach it could read "
             "and delete every document and chat. Listen on 127.0.0.1 (behind a reverse proxy "
             "that checks who comes in), turn accounts on (--set auth.mode=accounts), or, on a "
             "network you trust alone, pass --insecure-no-auth",
             c->host[0] ? c->host : "every address");
    return false;
}

void config_resolve(config_t *c)
{
    char tmp[1100];
    if (!c->database[0])
        snprintf(c->database, sizeof c->database, "sqlite:%s/kvchat.db", c->data_dir);
    if (!c->cache_dir[0]) {
        snprintf(tmp, sizeof tmp, "%s/kvcache", c->data_dir);
        snprintf(c->cache_dir, sizeof c->cache_dir, "%.1023s", tmp);
    }
    if (!c->logs_dir[0]) {
        snprintf(tmp, sizeof tmp, "%s/logs", c->data_dir);
        snprintf(c->logs_dir, sizeof c->logs_dir, "%.1023s", tmp);
    }
}
