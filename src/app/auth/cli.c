/* cli.c — `kvchat user add|passwd|list|delete` (see auth.h): the accounts
 * of a data directory from the command line, with the server's own
 * --config, --data and --set options. A password is read from standard
 * input (one line; without echo when it is a terminal), never from the
 * command line, where other users of the machine could see it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "app/auth/auth.h"
#include "app/auth/secret.h"
#include "common/fs.h"
#include "common/log.h"

static int usage(FILE *f)
{
    fprintf(f, "Usage: kvchat user add NAME [--role admin|user]   (password on standard input)\n"
               "       kvchat user passwd NAME                    (password on standard input)\n"
               "       kvchat user list\n"
               "       kvchat user delete NAME\n"
               "Options of the server apply: --config FILE, --data DIR, --set S.K=V.\n");
    return 2;
}

/* One line of standard input into buf, without its newline; no echo on a
 * terminal. Returns 0 or -1. */
static int read_password(const char *prompt, char *buf, size_t cap)
{
    bool tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fprintf(stderr, "%s", prompt);
        tcgetattr(STDIN_FILENO, &old);
        quiet = old;
        quiet.c_lflag &= (tcflag_t)~ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    bool ok = fgets(buf, (int)cap, stdin) != NULL;
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (!ok)
        return -1;
    size_t n = strlen(buf);
    if (n && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (n && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return 0;
}

int auth_cli(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    const char *cmd = argv[1], *name = NULL, *role = "user";
    /* the rest: NAME, --role, and the server's options for config_load */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0;
    rest[nrest++] = "kvchat";
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--role") && i + 1 < argc)
            role = argv[++i];
        else if (!strncmp(argv[i], "--role=", 7))
            role = argv[i] + 7;
        else if (argv[i][0] != '-' && !name && (i == 2 || argv[i - 1][0] != '-' ||
                                                 strchr(argv[i - 1], '=')))
            name = argv[i];
        else
            rest[nrest++] = argv[i];
    }
    static app_t app;
    app_t *a = &app;
    char err[512];
    int rc = config_load(&a->cfg, nrest, rest, err, sizeof err);
    free(rest);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "kvchat user: %s\n", err);
        return rc < 0 ? 2 : 0;
    }
    config_resolve(&a->cfg);
    log_set_level(LOG_WARN);
    bool needs_name = strcmp(cmd, "list") != 0;
    if ((needs_name && !name) ||
        (strcmp(cmd, "add") && strcmp(cmd, "passwd") && strcmp(cmd, "list") &&
         strcmp(cmd, "delete")))
        return usage(stderr);
    store_user_role_t r;
    if (store_user_role_parse(role, &r) != STORE_OK) {
        fprintf(stderr, "kvchat user: --role is admin or user\n");
        return 2;
    }
    if (secret_init() != 0 || fs_mkdirs(a->cfg.data_dir) != 0) {
        fprintf(stderr, "kvchat user: cannot prepare %s\n", a->cfg.data_dir);
        return 1;
    }
    snprintf(a->uploads_dir, sizeof a->uploads_dir, "%.1000s/uploads", a->cfg.data_dir);
    rc = store_open(a->cfg.database, &a->store);
    if (rc != STORE_OK) {
        fprintf(stderr, "kvchat user: cannot open %s: %s\n", a->cfg.database,
                store_strerror(rc));
        return 1;
    }
    int status = 0;
    char pw[SECRET_PASSWORD_MAX + 8], why[200] = "";
    store_user_t u;
    store_user_init(&u);
    if (!strcmp(cmd, "add") || !strcmp(cmd, "passwd")) {
        if (!strcmp(cmd, "passwd") && store_user_get_by_name(a->store, name, &u) != STORE_OK) {
            fprintf(stderr, "kvchat user: no user named %s\n", name);
            status = 1;
        } else if (read_password("Password: ", pw, sizeof pw) != 0) {
            fprintf(stderr, "kvchat user: no password on standard input\n");
            status = 2;
        } else if (!strcmp(cmd, "add")) {
            rc = auth_user_create(a, name, pw, r, &u, why, sizeof why);
            if (rc != STORE_OK) {
                fprintf(stderr, "kvchat user: %s\n", why);
                status = rc == STORE_ECONFLICT ? 1 : 2;
            } else {
                printf("user %s added (%s)\n", u.name, store_user_role_name(u.role));
            }
        } else if (!secret_password_ok(pw, strlen(pw), why, sizeof why)) {
            fprintf(stderr, "kvchat user: %s\n", why);
            status = 2;
        } else {
            char h[SECRET_PWHASH_MAX];
            rc = secret_password_hash(pw, strlen(pw), h) == 0
                     ? store_user_set_password(a->store, u.id, h)
                     : STORE_ENOMEM;
            if (rc == STORE_OK)
                rc = store_login_delete_user(a->store, u.id, NULL, NULL);
            if (rc != STORE_OK) {
                fprintf(stderr, "kvchat user: %s\n", store_strerror(rc));
                status = 1;
            } else {
                printf("password of %s changed; their logins ended\n", u.name);
            }
        }
        secret_wipe(pw, sizeof pw);
    } else if (!strcmp(cmd, "list")) {
        store_user_list_t l = { 0 };
        rc = store_user_list(a->store, &l);
        if (rc != STORE_OK) {
            fprintf(stderr, "kvchat user: %s\n", store_strerror(rc));
            status = 1;
        }
        for (size_t i = 0; i < l.n; i++) {
            char t[STORE_TIME_BUFSZ];
            store_format_time(l.items[i].created_at, t);
            printf("%-32s %-6s %-9s %s\n", l.items[i].name,
                   store_user_role_name(l.items[i].role),
                   l.items[i].disabled ? "disabled" : "enabled", t);
        }
        store_user_list_cleanup(&l);
    } else {
        store_doc_list_t docs = { 0 };
        store_id_list_t files = { 0 };
        rc = store_user_get_by_name(a->store, name, &u);
        if (rc == STORE_OK)
            rc = store_user_delete(a->store, u.id, &docs, &files);
        if (rc != STORE_OK) {
            fprintf(stderr, "kvchat user: %s\n",
                    rc == STORE_ENOTFOUND    ? "no such user"
                    : rc == STORE_ECONFLICT ? "that is the last enabled admin"
                                            : store_strerror(rc));
            status = 1;
        } else {
            for (size_t i = 0; i < files.n; i++) {
                char path[1300];
                snprintf(path, sizeof path, "%.1090s/%.200s", a->uploads_dir, files.ids[i]);
                if (unlink(path) != 0 && errno != ENOENT)
                    fprintf(stderr, "kvchat user: cannot remove %s: %s\n", path,
                            strerror(errno));
            }
            printf("user %s deleted with %zu document(s)\n", name, docs.n);
        }
        store_doc_list_cleanup(&docs);
        store_id_list_cleanup(&files);
    }
    store_user_cleanup(&u);
    store_close(a->store);
    return status;
}
