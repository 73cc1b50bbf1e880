/* test_uploads.c — the upload path under abuse: the real kvchat, the real
 * kvchat-extract and the real store over HTTP (engine with the tiny model
 * where a test needs one).
 *
 * - a file name that is not UTF-8 is refused with a 400 before the body is
 *   stored or extracted (it used to be extracted, then answered 500);
 * - the temporary file of an upload cut short by kill -9 is removed when
 *   kvchat starts again;
 * Hostile documents are generated here as bytes; no binary file is
 * committed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixtures.h"
#include "support.h"

#define MODEL KVCHAT_TEST_MODELS_DIR "/tiny.gguf"
#define API "/api/v1"

/* ---- helpers ----------------------------------------------------------- */

/* Start kvchat on data in dir/data; extra: more arguments (NULL-terminated,
 * may be NULL). With engine false the engine is not started. */
static void start_app(proc_t *p, const char *dir, bool engine, const char *const *extra)
{
    char data[300], models[300], eport[64], log[300];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(models, sizeof models, "engine.models_dir=%s", dir);
    snprintf(log, sizeof log, "%s/kvchat.log", dir);
    snprintf(eport, sizeof eport, "engine.port=%d", free_port());
    const char *argv[48] = { "--data", data, "--model", MODEL, "--set", eport, "--set",
                             "engine.threads=1", "--set", "engine.ctx_size=2048", "--set",
                             models, "--set", engine ? "engine.autostart=true"
                                                     : "engine.autostart=false" };
    int n = 14;
    for (int i = 0; extra && extra[i] && n < 46; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    proc_start(p, KVCHAT_BIN_DIR "/kvchat", argv, log, 60);
    if (!engine)
        return;
    double t0 = now_ms();
    for (;;) {
        resp_t r;
        http(p->port, "GET", API "/model/status", NULL, &r);
        bool ok = r.json && strcmp(jstr(r.json, "status"), "running") == 0;
        resp_free(&r);
        if (ok)
            return;
        if (now_ms() - t0 > 60000)
            fail_msg("engine did not start");
        usleep(100 * 1000);
    }
}

/* Files in dir/data/uploads whose name starts with prefix. */
static int count_files(const char *dir, const char *prefix)
{
    char path[300];
    snprintf(path, sizeof path, "%s/data/uploads", dir);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static size_t n_documents(int port)
{
    resp_t r;
    http(port, "GET", API "/documents/list", NULL, &r);
    assert_int_equal(r.status, 200);
    size_t n = json_array_size(r.json);
    resp_free(&r);
    return n;
}

/* Begin an upload of `declared` bytes as `filename` on a raw socket and send
 * only its first `sent` bytes; the connection stays open. Returns the
 * socket. */
static int begin_partial_upload(int port, const char *filename, size_t declared, size_t sent)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail_msg("connect to %d failed", port);
    char part[512], head[512];
    int plen = snprintf(part, sizeof part,
                        "--BOUNDARYxyz\r\nContent-Disposition: form-data; name=\"file\"; "
                        "filename=\"%s\"\r\nContent-Type: text/plain\r\n\r\n", filename);
    int hlen = snprintf(head, sizeof head,
                        "POST " API "/documents/upload HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                        "Content-Type: multipart/form-data; boundary=BOUNDARYxyz\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        port, (size_t)plen + declared + 17);
    char *body = malloc(sent);
    memset(body, 'a', sent);
    if (send(fd, head, (size_t)hlen, 0) != hlen || send(fd, part, (size_t)plen, 0) != plen ||
        send(fd, body, sent, 0) != (ssize_t)sent)
        fail_msg("send failed");
    free(body);
    return fd;
}

/* ---- file names ----------------------------------------------------------- */

/* A name of bytes that are not UTF-8: refused at the start of the part,
 * with a message that says why (it used to be extracted whole, then fail
 * in the store with a 500). */
static void test_filename_not_utf8(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    proc_t app;
    start_app(&app, dir, false, NULL);
    static const char *const lines[] = { "Some text about a harbor." };
    const char *p = fixture_write(dir, "txt", lines, 1);
    resp_t r;
    http_upload(app.port, API "/documents/upload", p, "\xff\xfe\xc0\xaf.txt", &r);
    if (r.status != 400)
        fail_msg("expected 400, got %ld: %s", r.status, r.body);
    assert_non_null(strstr(jstr(r.json, "detail"), "not valid UTF-8"));
    resp_free(&r);
    assert_int_equal(n_documents(app.port), 0);
    assert_int_equal(count_files(dir, ".upload-"), 0);
    /* a UTF-8 name is kept as it was sent */
    http_upload(app.port, API "/documents/upload", p, "Hafen \xc3\xbc\xe2\x82\xac.txt", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "filename"), "Hafen \xc3\xbc\xe2\x82\xac.txt");
    resp_free(&r);
    assert_int_equal(proc_stop(&app), 0);
    tmpdir_remove(dir);
}

/* ---- what a killed kvchat leaves behind ---------------------------------- */

/* kill -9 during an upload leaves its temporary file; the next start
 * removes it. */
static void test_stale_temp_files(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    proc_t app;
    start_app(&app, dir, false, NULL);
    int fd = begin_partial_upload(app.port, "half.txt", 4 << 20, 256 << 10);
    for (int i = 0; i < 200 && count_files(dir, ".upload-") == 0; i++)
        usleep(50 * 1000);
    assert_int_equal(count_files(dir, ".upload-"), 1);
    kill(app.pid, SIGKILL);
    proc_stop(&app);   /* reaps it */
    close(fd);
    assert_int_equal(count_files(dir, ".upload-"), 1);
    start_app(&app, dir, false, NULL);
    assert_int_equal(count_files(dir, ".upload-"), 0);
    assert_true(log_contains(app.log_path, "removed 1 temporary file"));
    assert_int_equal(proc_stop(&app), 0);
    tmpdir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filename_not_utf8),
        cmocka_unit_test(test_stale_temp_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
