/* models.c — the /model and /logs endpoints: the supervised engine's
 * lifecycle, the models kvchat can serve (local GGUF files and configured
 * remote models), and the engine's log files.
 *
 * Start and stop requests may come at once (several tabs, several users,
 * the start at kvchat's own start-up): the supervisor carries out the
 * newest and answers the older ones it superseded at once, which these
 * handlers answer 200 with "superseded": true (see docs/api.md).
 *
 * Every command (start, start with an empty cache, stop, switch) is a line
 * of the audit log (auth_audit: "model.start", "model.reset",
 * "model.stop", "model.switch", with the model's name), written once the
 * request is valid, before it is carried out.
 */
#include "app/model/models.h"

#include <dirent.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/auth/auth.h"
#include "app/llm/engines.h"
#include "common/log.h"

static json_t *result_json(const supervisor_result_t *r)
{
    json_t *j = json_pack("{s:s, s:s, s:f, s:s, s:i, s:i, s:s?, s:s, s:b, "
                          "s:{s:b, s:i, s:i, s:s, s:i, s:i}}",
                          "status", r->status, "message", r->message, "timestamp", r->timestamp,
                          "model_name", r->model_name, "pid", r->pid, "port", r->port, "command",
                          r->command, "state", supervisor_state_name(r->state), "superseded",
                          r->superseded, "details", "reset", r->reset, "ready_ms",
                          (int)r->ready_ms, "stop_ms", (int)r->stop_ms, "log_session",
                          r->log_session, "exit_status", r->exit_status, "signal", r->signal);
    if (j && r->superseded_by)
        json_object_set_new(j, "superseded_by", json_string(r->superseded_by));
    return j;
}

static int status_of(int code)
{
    switch (code) {
    case SUPERVISOR_OK: return 200;
    case SUPERVISOR_ESUPERSEDED: return 200;   /* a later request took over */
    case SUPERVISOR_ECANCELED: return 503;     /* kvchat is shutting down */
    case SUPERVISOR_ETIMEOUT: return 504;
    case SUPERVISOR_EINVAL: return 400;
    default: return 500;
    }
}

static bool no_engine(app_t *a, httpd_req_t *req)
{
    if (a->sv)
        return false;
    if (a->cfg.engine_endpoints[0])
        httpd_reply_error(req, 409, "kvchat uses the engines of engine.endpoints: start, stop "
                                    "and reset them where they run");
    else
        httpd_reply_error(req, 503,
                          "No local model is configured: set engine.model or put a GGUF file "
                          "in %s",
                          a->cfg.models_dir);
    return true;
}

/* A local model by serving name: a *.gguf file name in models_dir, or the
 * configured model's file name. Fills path; false if unknown. */
static bool local_model_path(app_t *a, const char *name, char *path, size_t cap)
{
    if (strchr(name, '/') || strstr(name, ".."))
        return false;
    if (strcmp(name, a->model_name) == 0) {
        snprintf(path, cap, "%s", a->model_path);
        return true;
    }
    snprintf(path, cap, "%s/%s", a->cfg.models_dir, name);
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static const config_remote_t *remote_model(app_t *a, const char *name)
{
    for (int i = 0; i < a->cfg.n_remotes; i++)
        if (strcmp(a->cfg.remotes[i].name, name) == 0)
            return &a->cfg.remotes[i];
    return NULL;
}

/* After a start: the model the engine runs now. A start superseded after
 * it had begun may have changed the model of the start that superseded it
 * (supervisor_start's model_override), so the name comes from the result. */
static void adopt_model(app_t *a, const supervisor_result_t *r)
{
    if (!r->model_name[0] || strcmp(r->model_name, a->model_name) == 0)
        return;
    char path[1100];
    if (!local_model_path(a, r->model_name, path, sizeof path))
        return;
    snprintf(a->model_path, sizeof a->model_path, "%.1023s", path);
    snprintf(a->model_name, sizeof a->model_name, "%.255s", r->model_name);
}

/* supervisor_start on every engine supervised here (engine.count), one
 * after another: *r is the first's result, or the first failure's. */
static int start_all(app_t *a, bool reset, const char *path, supervisor_result_t *r)
{
    int rc = supervisor_start(a->svs[0], reset, path, r);
    for (size_t i = 1; i < a->n_sv && rc == SUPERVISOR_OK; i++) {
        supervisor_result_t ri;
        rc = supervisor_start(a->svs[i], reset, path, &ri);
        if (rc != SUPERVISOR_OK) {
            supervisor_result_cleanup(r);
            *r = ri;
        } else {
            supervisor_result_cleanup(&ri);
        }
    }
    return rc;
}

/* supervisor_stop on every engine: *r as start_all's. */
static int stop_all(app_t *a, supervisor_result_t *r)
{
    int rc = supervisor_stop(a->svs[0], r);
    for (size_t i = 1; i < a->n_sv; i++) {
        supervisor_result_t ri;
        int k = supervisor_stop(a->svs[i], &ri);
        if (k != SUPERVISOR_OK && rc == SUPERVISOR_OK) {
            supervisor_result_cleanup(r);
            *r = ri;
            rc = k;
        } else {
            supervisor_result_cleanup(&ri);
        }
    }
    return rc;
}

/* Make the local engine the active provider again (after a remote one). */
/* The shared settings every replica follows: the active model, and the
 * last start, reset or stop, with the name of the replica that made it
 * ("REPLICA start NAME", "REPLICA reset NAME", "REPLICA stop"): a replica
 * never follows its own commands, which it has done already and which a
 * later one of its own may have overtaken. */
#define MODEL_SETTING "model.active"
#define COMMAND_SETTING "model.command"

/* Record a model command for the other replicas (models_follow). */
static void share_command(app_t *a, const char *cmd, const char *name)
{
    char v[400];
    snprintf(v, sizeof v, "%s %s%s%.300s", a->replica, cmd, name ? " " : "", name ? name : "");
    int rc = store_setting_set(a->store, COMMAND_SETTING, v);
    if (rc != STORE_OK)
        log_warn("cannot record the model command for the other replicas: %s",
                 store_strerror(rc));
}

static void use_local(app_t *a, const char *name)
{
    app_provider_t *p = app_local_acquire(a);
    if (!p)
        return;
    snprintf(p->serving_name, sizeof p->serving_name, "%.127s", name);
    app_provider_set(a, p);
}

static void start(httpd_req_t *req, app_t *a, bool reset)
{
    if (no_engine(a, req))
        return;
    json_t *body = NULL;
    const char *msg, *name = NULL;
    size_t blen = 0;
    httpd_req_body(req, &blen);
    if (blen && httpd_req_json(req, &body, &msg) != HTTPD_OK) {
        httpd_reply_error(req, 400, "%s", msg);
        return;
    }
    json_err_t err = { "" };
    if (body && json_get_string(body, "model_name", &name, &err) == JSON_ETYPE) {
        httpd_reply_error(req, 400, "%s", err.msg);
        json_decref(body);
        return;
    }
    char path[1100] = "";
    if (name && *name && !local_model_path(a, name, path, sizeof path)) {
        httpd_reply_error(req, 404, "Unknown local model '%s' (see GET /api/v1/model/list)", name);
        json_decref(body);
        return;
    }
    auth_audit(a, req, reset ? "model.reset" : "model.start",
               name && *name ? name : a->model_name, NULL);
    supervisor_result_t r;
    int rc = start_all(a, reset, path[0] ? path : NULL, &r);
    if (rc == SUPERVISOR_OK) {
        adopt_model(a, &r);
        use_local(a, a->model_name);
        if (reset) {
            /* the event callback does it too; doing it here makes it visible
             * to the caller's next request for certain */
            store_doc_reset_cache(a->store, false, NULL);
        }
        share_command(a, reset ? "reset" : "start", a->model_name);
    }
    httpd_reply_json(req, status_of(rc), result_json(&r));
    supervisor_result_cleanup(&r);
    json_decref(body);
}

void models_h_up_reset(httpd_req_t *req, void *user) { start(req, user, true); }
void models_h_up_resume(httpd_req_t *req, void *user) { start(req, user, false); }

void models_h_down(httpd_req_t *req, void *user)
{
    app_t *a = user;
    if (no_engine(a, req))
        return;
    auth_audit(a, req, "model.stop", a->model_name, NULL);
    supervisor_result_t r;
    int rc = stop_all(a, &r);
    if (rc == SUPERVISOR_OK)
        share_command(a, "stop", NULL);
    httpd_reply_json(req, status_of(rc), result_json(&r));
    supervisor_result_cleanup(&r);
}

void models_h_status(httpd_req_t *req, void *user)
{
    app_t *a = user;
    app_provider_t *p = app_provider_acquire(a);
    json_t *body;
    app_provider_t *lp0 = app_local_acquire(a);
    struct engines *g = lp0 ? lp0->engines : NULL;
    if (g && !a->sv) {
        /* engine.endpoints: engines run elsewhere; running while one answers */
        size_t up = engines_healthy_count(g), n = engines_count(g);
        char msg[160];
        snprintf(msg, sizeof msg, "%zu of %zu engines answering", up, n);
        body = json_pack("{s:s, s:s, s:n, s:n, s:i, s:f, s:n, s:f, s:s, s:o}", "status",
                         up ? "running" : "crashed", "message", msg, "pid", "port", "memory_usage",
                         0, "cpu_percent", 0.0, "create_time", "last_updated",
                         (double)store_now_ms() / 1000, "model_name", a->model_name, "engines",
                         engines_json(g));
    } else if (!a->sv) {
        body = json_pack("{s:s, s:s, s:n, s:n, s:i, s:f, s:n, s:f, s:s}", "status", "stopped",
                         "message", "no local model configured", "pid", "port", "memory_usage", 0,
                         "cpu_percent", 0.0, "create_time", "last_updated", (double)store_now_ms() / 1000,
                         "model_name", "");
    } else {
        supervisor_status_t st;
        supervisor_status(a->sv, &st);
        body = json_pack("{s:s, s:s, s:i, s:i, s:I, s:f, s:f, s:f, s:s, s:i}", "status", st.status,
                         "message", st.message, "pid", st.pid, "port", st.port, "memory_usage",
                         (json_int_t)st.memory_usage, "cpu_percent", st.cpu_percent, "create_time",
                         st.create_time, "last_updated", st.last_updated, "model_name", st.model_name,
                         "restarts", (int)st.restarts);
        json_t *cache = json_pack("{s:i, s:i, s:i}", "entries", 0, "bytes_ram", 0, "bytes_disk", 0);
        app_provider_t *lp = app_local_acquire(a);
        char err[256];
        llm_cache_stats_t cs;
        if (lp && st.state == SUPERVISOR_RUNNING &&
            llm_cache_stats(app_llm(lp), &cs, err, sizeof err) == LLM_OK) {
            json_object_set_new(cache, "entries", json_integer(cs.entries));
            json_object_set_new(cache, "bytes_ram", json_integer(cs.bytes_ram));
            json_object_set_new(cache, "bytes_disk", json_integer(cs.bytes_disk));
        }
        llm_model_info_t info;
        if (lp && st.state == SUPERVISOR_RUNNING && llm_models(app_llm(lp), &info, err, sizeof err) == LLM_OK) {
            json_object_set_new(body, "random_weights", json_boolean(info.random_weights));
            json_object_set_new(body, "n_ctx", json_integer(info.n_ctx_slot));
        }
        app_provider_release(lp);
        json_object_set_new(body, "cache", cache);
        if (g)   /* engine.count: the first's state above, all of them here */
            json_object_set_new(body, "engines", engines_json(g));
    }
    app_provider_release(lp0);
    json_object_set_new(body, "provider", json_string(llm_kind_name(llm_provider_kind(app_llm(p)))));
    json_object_set_new(body, "serving_name", json_string(p->serving_name));
    json_object_set_new(body, "drafts", json_boolean(a->cfg.drafts));
    app_provider_release(p);
    httpd_reply_json(req, 200, body);
}

void models_h_list(httpd_req_t *req, void *user)
{
    app_t *a = user;
    app_provider_t *p = app_provider_acquire(a);
    json_t *arr = json_array();
    /* the configured model first, then the models directory */
    if (a->model_path[0]) {
        struct stat st;
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:b}", "name", a->model_name,
                                             "kind", "local", "path", a->model_path, "size",
                                             (json_int_t)(stat(a->model_path, &st) == 0 ? st.st_size : 0),
                                             "active", p->local && !strcmp(p->serving_name, a->model_name)));
    }
    DIR *d = opendir(a->cfg.models_dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".gguf") != 0 || !strcmp(de->d_name, a->model_name))
            continue;
        char path[1300];
        snprintf(path, sizeof path, "%s/%s", a->cfg.models_dir, de->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I, s:b}", "name", de->d_name, "kind",
                                             "local", "path", path, "size", (json_int_t)st.st_size,
                                             "active", p->local && !strcmp(p->serving_name, de->d_name)));
    }
    if (d)
        closedir(d);
    for (int i = 0; i < a->cfg.n_remotes; i++) {
        const config_remote_t *r = &a->cfg.remotes[i];
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "name", r->name, "kind",
                                             "remote", "provider", r->provider, "model", r->model,
                                             "base_url", r->base_url, "active",
                                             !p->local && !strcmp(p->serving_name, r->name)));
    }
    json_t *body = json_pack("{s:o, s:s, s:s}", "models", arr, "current", p->serving_name,
                             "provider", llm_kind_name(llm_provider_kind(app_llm(p))));
    app_provider_release(p);
    httpd_reply_json(req, 200, body);
}

/* Make `name` the active model: a configured remote one, or a local GGUF
 * (started when it is not what the engines run); with engine.endpoints,
 * the engines' model. Returns the HTTP status, with the answer in *out;
 * 404 for a name nobody knows. */
static int switch_to(app_t *a, const char *name, json_t **out)
{
    const config_remote_t *r = remote_model(a, name);
    char path[1100];
    app_provider_t *lp = app_local_acquire(a);
    bool engines = lp && lp->engines && strcmp(name, lp->serving_name) == 0;
    app_provider_release(lp);
    if (r) {
        char e[256];
        app_provider_t *p = app_provider_new(a, r->provider, r->base_url, r->api_key, r->model,
                                             r->name, false, r->context, e, sizeof e);
        if (!p) {
            *out = json_pack("{s:s}", "detail", "Cannot use the remote model");
            log_warn("cannot use remote model %s: %s", name, e);
            return 500;
        }
        app_provider_set(a, p);
        log_info("switched to remote model %s (%s)", name, r->provider);
        *out = json_pack("{s:s, s:s, s:s, s:s}", "status", "success", "message",
                         "Switched to the remote model", "serving_name", name, "provider",
                         r->provider);
        return 200;
    }
    if (engines) {
        use_local(a, name);
        *out = json_pack("{s:s, s:s, s:s, s:s}", "status", "success", "message",
                         "Switched to the local model (the engines')", "serving_name", name,
                         "provider", "local");
        return 200;
    }
    if (!a->sv || !local_model_path(a, name, path, sizeof path)) {
        *out = json_pack("{s:s}", "detail", "Unknown model (see GET /api/v1/model/list)");
        return 404;
    }
    bool same = strcmp(name, a->model_name) == 0;
    supervisor_status_t st;
    supervisor_status(a->sv, &st);
    if (same && st.state == SUPERVISOR_RUNNING) {
        use_local(a, name);
        *out = json_pack("{s:s, s:s, s:s, s:s}", "status", "success", "message",
                         "Switched to the local model (already running)", "serving_name", name,
                         "provider", "local");
        return 200;
    }
    supervisor_result_t res;
    int rc = start_all(a, false, path, &res);
    if (rc == SUPERVISOR_OK) {
        adopt_model(a, &res);
        use_local(a, a->model_name);
    }
    *out = result_json(&res);
    json_object_set_new(*out, "serving_name", json_string(name));
    json_object_set_new(*out, "provider", json_string("local"));
    supervisor_result_cleanup(&res);
    return status_of(rc);
}

void models_h_switch(httpd_req_t *req, void *user)
{
    app_t *a = user;
    json_t *body;
    const char *msg, *name;
    if (httpd_req_json(req, &body, &msg) != HTTPD_OK) {
        httpd_reply_error(req, 400, "%s", msg);
        return;
    }
    json_err_t err = { "" };
    if (json_get_string(body, "serving_name", &name, &err) != JSON_OK || !*name) {
        httpd_reply_error(req, 400, "%s", err.msg[0] ? err.msg : "Missing required field 'serving_name'");
        json_decref(body);
        return;
    }
    json_t *out = NULL;
    int status = switch_to(a, name, &out);
    if (status == 404) {
        json_decref(out);
        httpd_reply_error(req, 404, "Unknown model '%s' (see GET /api/v1/model/list)", name);
    } else {
        auth_audit(a, req, "model.switch", name, NULL);
        /* every replica on this database follows (models_follow) */
        int rc = status == 200 ? store_setting_set(a->store, MODEL_SETTING, name) : STORE_OK;
        if (rc != STORE_OK)
            log_warn("cannot record the active model for the other replicas: %s",
                     store_strerror(rc));
        httpd_reply_json(req, status, out);
    }
    json_decref(body);
}

/* A start, reset or stop made on another replica, done here too (the
 * engines this replica supervises); those from before this process
 * started are history. */
static void follow_command(app_t *a)
{
    char *cmd = NULL;
    int64_t at = 0;
    int src = a->sv ? store_setting_get(a->store, COMMAND_SETTING, &cmd, &at) : STORE_EINVAL;
    if (src == STORE_ENOTFOUND) {   /* none yet: the next one is news */
        pthread_mutex_lock(&a->lock);
        a->command_seen = true;
        pthread_mutex_unlock(&a->lock);
    }
    if (src != STORE_OK)
        return;
    pthread_mutex_lock(&a->lock);
    bool act = a->command_seen && at > a->command_at;
    a->command_seen = true;
    if (at > a->command_at)
        a->command_at = at;
    pthread_mutex_unlock(&a->lock);
    /* "REPLICA command": this replica's own, or one from before replicas
     * were named, are not followed */
    size_t rl = strlen(a->replica);
    const char *space = strchr(cmd, ' ');
    if (!space || (size_t)(space - cmd) != rl || strncmp(cmd, a->replica, rl) == 0)
        act = false;
    if (!act) {
        free(cmd);
        return;
    }
    const char *what = space + 1;
    supervisor_result_t r;
    int rc;
    char path[1100] = "";
    bool reset = strncmp(what, "reset ", 6) == 0;
    if (strcmp(what, "stop") == 0) {
        rc = stop_all(a, &r);
    } else if (reset || strncmp(what, "start ", 6) == 0) {
        const char *name = what + 6;
        if (strcmp(name, a->model_name) != 0 && !local_model_path(a, name, path, sizeof path)) {
            log_warn("another replica started model %s, which this one does not have", name);
            free(cmd);
            return;
        }
        rc = start_all(a, reset, path[0] ? path : NULL, &r);
        if (rc == SUPERVISOR_OK) {
            adopt_model(a, &r);
            use_local(a, a->model_name);
        }
    } else {
        free(cmd);
        return;
    }
    log_info("another replica's model command \"%s\": %s", what, r.message);
    supervisor_result_cleanup(&r);
    free(cmd);
}

void models_follow(app_t *a)
{
    follow_command(a);
    char *name = NULL;
    int64_t at = 0;
    if (store_setting_get(a->store, MODEL_SETTING, &name, &at) != STORE_OK)
        return;   /* no switch made yet */
    pthread_mutex_lock(&a->lock);
    bool seen = at <= a->model_setting_at;
    a->model_setting_at = at;
    pthread_mutex_unlock(&a->lock);
    app_provider_t *p = app_provider_acquire(a);
    bool same = strcmp(p->serving_name, name) == 0;
    app_provider_release(p);
    if (!seen && !same) {
        json_t *out = NULL;
        int status = switch_to(a, name, &out);
        log_info("another replica switched the model to %s: %s", name,
                 status == 200 ? "switched here too" : "cannot switch here");
        json_decref(out);
    }
    free(name);
}

/* ---- logs ---- */

static logbook_t *logbook_of(app_t *a) { return a->sv ? supervisor_logbook(a->sv) : NULL; }

void logs_h_current(httpd_req_t *req, void *user)
{
    app_t *a = user;
    logbook_t *lb = logbook_of(a);
    logbook_current_t cur;
    if (!lb || logbook_current(lb, &cur) != LOGBOOK_OK) {
        httpd_reply_error(req, 404, "No active log session");
        return;
    }
    httpd_reply_json(req, 200, json_pack("{s:s, s:s, s:f}", "session_id", cur.session_id,
                                         "log_file_path", cur.path, "start_time",
                                         cur.start_time));
}

static void recent(httpd_req_t *req, app_t *a, bool all)
{
    logbook_t *lb = logbook_of(a);
    logbook_current_t cur;
    if (!lb || logbook_current(lb, &cur) != LOGBOOK_OK) {
        httpd_reply_error(req, 404, "No active log session");
        return;
    }
    long lines = all ? 1000 : 100;
    const char *q = httpd_req_query(req, "lines");
    if (q) {
        char *end;
        lines = strtol(q, &end, 10);
        if (*end || lines < 1 || lines > 1000) {
            httpd_reply_error(req, 400, "'lines' must be a number from 1 to 1000");
            return;
        }
    }
    const char *pattern = httpd_req_query(req, "pattern");
    if (pattern && !*pattern)
        pattern = NULL;
    logbook_lines_t out;
    int rc = logbook_recent(lb, (size_t)lines, pattern, false, &out);
    if (rc == LOGBOOK_EREGEX) {
        httpd_reply_error(req, 400, "%s", out.error);   /* "Invalid pattern: ..." and the like */
        logbook_lines_cleanup(&out);
        return;
    }
    if (rc != LOGBOOK_OK) {
        httpd_reply_error(req, rc == LOGBOOK_ENONE ? 404 : 500, "%s",
                          rc == LOGBOOK_ENONE ? "No active log session" : logbook_strerror(rc));
        logbook_lines_cleanup(&out);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < out.count; i++)
        json_array_append_new(arr, json_string_lossy(out.lines[i], strlen(out.lines[i])));
    json_t *body = json_pack("{s:s, s:i, s:s?, s:o, s:b}", "session_id", out.session_id,
                             "lines_count", (int)out.count, "pattern", pattern, "logs", arr,
                             "complete", out.complete);
    logbook_lines_cleanup(&out);
    httpd_reply_json(req, 200, body);
}

void logs_h_recent(httpd_req_t *req, void *user) { recent(req, user, false); }
void logs_h_server(httpd_req_t *req, void *user) { recent(req, user, true); }

void logs_h_sessions(httpd_req_t *req, void *user)
{
    app_t *a = user;
    logbook_t *lb = logbook_of(a);
    json_t *arr = json_array();
    logbook_sessions_t s;
    if (lb && logbook_sessions(lb, &s) == LOGBOOK_OK) {
        for (size_t i = 0; i < s.count; i++) {
            char created[STORE_TIME_BUFSZ], modified[STORE_TIME_BUFSZ];
            store_format_time(s.items[i].created * 1000, created);
            store_format_time(s.items[i].modified * 1000, modified);
            json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:s, s:s, s:b}", "filename",
                                                 s.items[i].filename, "path", s.items[i].path, "size",
                                                 (json_int_t)s.items[i].size, "created", created,
                                                 "modified", modified, "active", s.items[i].active));
        }
        logbook_sessions_cleanup(&s);
    }
    httpd_reply_json(req, 200, arr);
}
