/* test_uploads.c — the upload path under abuse: the real kvchat, the real
 * kvchat-extract and the real store over HTTP (engine with the tiny model
 * where a test needs one).
 *
 * - a file name that is not UTF-8 is refused with a 400 before the body is
 *   stored or extracted (it used to be extracted, then answered 500);
 * - a PDF whose page tree claims 2147483647 pages is refused as damaged
 *   within a 3 s CPU limit, a truncated PDF is damaged (not "scanned");
 * - extract.concurrency bounds the extractions running at once; the rest
 *   wait in line (first come, first served), a streamed upload is told its
 *   place as it moves, a client that leaves gives up its place, failures
 *   give their slot back; /metrics counts running and queued;
 * - the app's peak memory does not grow with an upload's size (one 45 MB
 *   text, three 20 MB texts at once), the preview and the "too long for
 *   the model" answer included;
 * - the temporary file of an upload cut short by kill -9 is removed when
 *   kvchat starts again, and a running extractor dies with kvchat;
 * Hostile documents are generated here as bytes; no binary file is
 * committed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

/* ---- uploads from threads ------------------------------------------------ */

/* One upload run on its own thread: plain (JSON answer) or streamed (every
 * SSE event kept). Transport errors are recorded, not fatal (a test may
 * kill the server under it). */
typedef struct {
    int port;
    const char *path;          /* API path */
    char file[512];
    char filename[128];
    bool sse;
    bool hang_up_when_queued;  /* close the connection at the first "queued" */
    pthread_t th;
    /* results */
    long status;
    json_t *events;            /* array of SSE events (sse) */
    json_t *json;              /* the answer (plain) */
    char *body;
    size_t len;
    int finished;              /* order of completion, from 1 */
} job_t;

static atomic_int g_finished;

static size_t job_write(char *p, size_t sz, size_t n, void *ud)
{
    job_t *j = ud;
    size_t add = sz * n;
    char *b = realloc(j->body, j->len + add + 1);
    if (!b)
        return 0;
    memcpy(b + j->len, p, add);
    j->body = b;
    j->len += add;
    b[j->len] = '\0';
    if (!j->sse)
        return add;
    /* parse complete events as they come */
    char *end;
    while ((end = strstr(j->body, "\n\n"))) {
        *end = '\0';
        if (strncmp(j->body, "data: ", 6) == 0) {
            json_t *ev = json_loads(j->body + 6, 0, NULL);
            if (ev) {
                json_array_append_new(j->events, ev);
                const char *stage = json_string_value(json_object_get(ev, "stage"));
                if (j->hang_up_when_queued && stage && strcmp(stage, "queued") == 0)
                    return 0;   /* aborts the transfer: the client hangs up */
            }
        }
        size_t used = (size_t)(end + 2 - j->body);
        memmove(j->body, end + 2, j->len - used + 1);
        j->len -= used;
    }
    return add;
}

static void *job_thread(void *arg)
{
    job_t *j = arg;
    CURL *c = curl_easy_init();
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", j->port, j->path);
    curl_mime *mime = curl_mime_init(c);
    curl_mimepart *part = curl_mime_addpart(mime);
    curl_mime_name(part, "file");
    curl_mime_filedata(part, j->file);
    curl_mime_filename(part, j->filename);
    struct curl_slist *h = NULL;
    if (j->sse)
        h = curl_slist_append(h, "Accept: text/event-stream");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, job_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &j->status);
    curl_mime_free(mime);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (!j->sse && j->body)
        j->json = json_loads(j->body, 0, NULL);
    j->finished = atomic_fetch_add(&g_finished, 1) + 1;
    return NULL;
}

static void job_start(job_t *j, int port, const char *path, const char *file, const char *filename,
                      bool sse)
{
    memset(j, 0, sizeof *j);
    j->port = port;
    j->path = path;
    snprintf(j->file, sizeof j->file, "%s", file);
    snprintf(j->filename, sizeof j->filename, "%s", filename);
    j->sse = sse;
    j->events = json_array();
    if (pthread_create(&j->th, NULL, job_thread, j) != 0)
        fail_msg("pthread_create failed");
}

static void job_join(job_t *j)
{
    pthread_join(j->th, NULL);
}

static void job_free(job_t *j)
{
    json_decref(j->events);
    json_decref(j->json);
    free(j->body);
}

/* The stages of a streamed upload's events, as "queued:2 queued:1
 * extracting storing indexing done". */
static void stages(const job_t *j, char *out, size_t cap)
{
    out[0] = '\0';
    size_t i;
    json_t *ev;
    json_array_foreach(j->events, i, ev) {
        const char *e = json_string_value(json_object_get(ev, "event"));
        const char *st = json_string_value(json_object_get(ev, "stage"));
        char one[64];
        if (st && strcmp(st, "queued") == 0)
            snprintf(one, sizeof one, "queued:%lld",
                     (long long)json_integer_value(json_object_get(ev, "position")));
        else
            snprintf(one, sizeof one, "%s", st ? st : e ? e : "?");
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s", n ? " " : "", one);
    }
}

/* A gauge of /metrics. */
static long metric(int port, const char *name)
{
    resp_t r;
    http(port, "GET", "/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(r.body, key);
    long v = p ? strtol(p + strlen(key), NULL, 10) : -1;
    resp_free(&r);
    return v;
}

static void wait_metric(int port, const char *name, long want)
{
    long v = -1;
    for (int i = 0; i < 400; i++) {
        v = metric(port, name);
        if (v == want)
            return;
        usleep(25 * 1000);
    }
    fail_msg("%s is %ld, expected %ld", name, v, want);
}

/* A stand-in for the extractor's program path: waits until dir/gate exists,
 * then runs the real kvchat-extract with the same arguments. The test
 * holds an extraction running for as long as it needs (no timing). */
static void write_gate_script(const char *dir, char *path, size_t cap)
{
    snprintf(path, cap, "%s/gate-extract.sh", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        fail_msg("cannot write %s", path);
    fprintf(f, "#!/bin/sh\nwhile [ ! -e '%s/gate' ]; do sleep 0.02; done\n"
               "exec '%s/kvchat-extract' \"$@\"\n", dir, KVCHAT_BIN_DIR);
    fclose(f);
    chmod(path, 0755);
}

static void open_gate(const char *dir)
{
    char path[300];
    snprintf(path, sizeof path, "%s/gate", dir);
    fclose(fopen(path, "w"));
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

/* ---- hostile PDFs ------------------------------------------------------------ */

/* A one-page PDF with `text`, whose page tree claims `count` pages, with a
 * correct xref; written to dir/name. Returns its length. */
static size_t write_pdf(const char *path, const char *count, const char *text)
{
    char content[256], objs[5][320], buf[4096];
    snprintf(content, sizeof content, "BT /F1 12 Tf 72 720 Td (%s) Tj ET", text);
    snprintf(objs[0], sizeof objs[0], "<< /Type /Catalog /Pages 2 0 R >>");
    snprintf(objs[1], sizeof objs[1], "<< /Type /Pages /Kids [3 0 R] /Count %s >>", count);
    snprintf(objs[2], sizeof objs[2], "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                                      "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>");
    snprintf(objs[3], sizeof objs[3], "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
    snprintf(objs[4], sizeof objs[4], "<< /Length %zu >>\nstream\n%s\nendstream", strlen(content),
             content);
    size_t n = (size_t)snprintf(buf, sizeof buf, "%%PDF-1.4\n");
    long off[5];
    for (int i = 0; i < 5; i++) {
        off[i] = (long)n;
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%d 0 obj\n%s\nendobj\n", i + 1, objs[i]);
    }
    long xref = (long)n;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "xref\n0 6\n0000000000 65535 f \n");
    for (int i = 0; i < 5; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%010ld 00000 n \n", off[i]);
    n += (size_t)snprintf(buf + n, sizeof buf - n,
                          "trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%ld\n%%%%EOF\n", xref);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, n, f) != n)
        fail_msg("cannot write %s", path);
    fclose(f);
    return n;
}

/* A 600-byte PDF whose page tree says /Count 2147483647 is damaged, and
 * says so at once, well within a 3 s CPU limit (it used to run into the
 * limit: 30 s of a core by default); a truncated PDF is damaged too, not
 * "a scanned document"; a good one still reads. */
static void test_hostile_pdfs(void **state)
{
    (void)state;
    char dir[256], path[300];
    tmpdir_make(dir, sizeof dir);
    const char *extra[] = { "--set", "extract.cpu_seconds=3", NULL };
    proc_t app;
    start_app(&app, dir, false, extra);
    snprintf(path, sizeof path, "%s/count.pdf", dir);
    assert_true(write_pdf(path, "2147483647", "Counted") < 700);
    resp_t r;
    http_upload(app.port, API "/documents/upload", path, "count.pdf", &r);
    if (r.status != 422)
        fail_msg("expected 422, got %ld: %s", r.status, r.body);
    assert_string_equal(jstr(r.json, "detail"), "The PDF is damaged or unreadable.");
    resp_free(&r);
    /* cut short right before the page's contents */
    snprintf(path, sizeof path, "%s/cut.pdf", dir);
    size_t n = write_pdf(path, "1", "Complete text");
    FILE *f = fopen(path, "rb");
    char *buf = malloc(n + 1);
    assert_int_equal(fread(buf, 1, n, f), n);
    fclose(f);
    buf[n] = '\0';
    const char *cut = strstr(buf, "4 0 obj");
    assert_non_null(cut);
    const char *p = fixture_raw(dir, "cut.pdf", buf, (size_t)(cut - buf));
    free(buf);
    http_upload(app.port, API "/documents/upload", p, "cut.pdf", &r);
    assert_int_equal(r.status, 422);
    assert_string_equal(jstr(r.json, "detail"), "The PDF is damaged or unreadable.");
    resp_free(&r);
    snprintf(path, sizeof path, "%s/good.pdf", dir);
    write_pdf(path, "1", "A good page");
    http_upload(app.port, API "/documents/upload", path, "good.pdf", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(r.json, "n_chars"), (long long)strlen("A good page\n"));
    resp_free(&r);
    assert_int_equal(metric(app.port, "kvchat_extractions_running"), 0);
    assert_int_equal(proc_stop(&app), 0);
    tmpdir_remove(dir);
}

/* ---- OCR ------------------------------------------------------------------ */

/* A scanned PDF (a text PDF from ghostscript rendered to 300 dpi images by
 * pdftoppm and put back by img2pdf) and a PNG of its first page: the
 * streamed upload reports OCR progress page by page, the text is the
 * known one, and the document's JSON (upload answer, list, one document)
 * names the OCR'd pages and their confidence. A blank scan still gets the
 * "scanned document" answer. */
static void test_ocr_upload(void **state)
{
    (void)state;
    char dir[256], path[300];
    tmpdir_make(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/t.ps", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("%!PS\n/Times-Roman findfont 14 scalefont setfont\n"
          "72 720 moveto (Lighthouses guard the northern coast at night.) show\nshowpage\n"
          "/Times-Roman findfont 14 scalefont setfont\n"
          "72 720 moveto (Fishermen return before the winter storms arrive.) show\nshowpage\n"
          "showpage\n",
          f);
    fclose(f);
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "cd %s && ps2pdf t.ps t.pdf && pdftoppm -r 300 -gray -png t.pdf pg && "
             "img2pdf pg-1.png pg-2.png -o scan.pdf && img2pdf pg-3.png -o blank.pdf && "
             "pdfseparate -f 1 -l 1 t.pdf t1.pdf",
             dir);
    assert_int_equal(system(cmd), 0);
    proc_t app;
    start_app(&app, dir, false, NULL);

    snprintf(path, sizeof path, "%s/scan.pdf", dir);
    job_t j;
    job_start(&j, app.port, API "/documents/upload", path, "scan.pdf", true);
    job_join(&j);
    assert_int_equal(j.status, 200);
    char st[512];
    stages(&j, st, sizeof st);
    if (!strstr(st, "extracting ocr ocr ocr storing"))
        fail_msg("stages: %s", st);
    /* 0/2, 1/2, 2/2 */
    int seen = 0;
    size_t i;
    json_t *ev, *done = NULL;
    json_array_foreach(j.events, i, ev) {
        const char *s = json_string_value(json_object_get(ev, "stage"));
        if (s && strcmp(s, "ocr") == 0) {
            assert_int_equal(json_integer_value(json_object_get(ev, "done")), seen);
            assert_int_equal(json_integer_value(json_object_get(ev, "total")), 2);
            seen++;
        }
        const char *e = json_string_value(json_object_get(ev, "event"));
        if (e && strcmp(e, "done") == 0)
            done = ev;
    }
    assert_int_equal(seen, 3);
    assert_non_null(done);
    const char *id = jstr(done, "doc_id");
    assert_non_null(id);
    assert_int_equal(jint(done, "ocr.pages.1"), 2);
    assert_in_range(jint(done, "ocr.confidence"), 70, 100);
    assert_int_equal(jint(done, "total_pages"), 2);

    char url[300];
    snprintf(url, sizeof url, API "/documents/%s?include_preview=true", id);
    resp_t r;
    http(app.port, "GET", url, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(jpath(r.json, "ocr.pages")), 2);
    assert_int_equal(jint(r.json, "ocr.pages.0"), 1);
    const char *preview = jstr(r.json, "content_preview");
    if (!preview || !strstr(preview, "Lighthouses guard the northern coast"))
        fail_msg("preview: %s", r.body);
    resp_free(&r);
    http(app.port, "GET", API "/documents/list", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(r.json, "0.ocr.confidence") >= 70, 1);
    resp_free(&r);
    job_free(&j);

    /* An image is a document too; a text PDF has "ocr": null. */
    snprintf(path, sizeof path, "%s/pg-2.png", dir);
    http_upload(app.port, API "/documents/upload", path, "page.png", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "content_type"), "png");
    assert_int_equal(jint(r.json, "ocr.pages.0"), 1);
    resp_free(&r);
    snprintf(path, sizeof path, "%s/t1.pdf", dir);
    http_upload(app.port, API "/documents/upload", path, "t1.pdf", &r);
    assert_int_equal(r.status, 200);
    assert_true(json_is_null(json_object_get(r.json, "ocr")));
    resp_free(&r);

    /* Nothing to recognise: the answer of old. */
    snprintf(path, sizeof path, "%s/blank.pdf", dir);
    http_upload(app.port, API "/documents/upload", path, "blank.pdf", &r);
    assert_int_equal(r.status, 422);
    assert_non_null(strstr(jstr(r.json, "detail"), "looks like a scanned document"));
    resp_free(&r);
    assert_int_equal(proc_stop(&app), 0);
    tmpdir_remove(dir);
}

/* ---- the extraction queue --------------------------------------------- */

/* extract.concurrency = 1 and an extraction held at a gate: the next
 * uploads wait in line, a streamed one is told its place as it moves, a
 * plain one simply waits, one whose client leaves gives up its place, the
 * server answers everything else meanwhile, and once the gate opens they
 * run one at a time in the order they came, each ending with the same
 * answer the plain request gives. */
static void test_queue(void **state)
{
    (void)state;
    char dir[256], gate[320], set_exe[400];
    tmpdir_make(dir, sizeof dir);
    write_gate_script(dir, gate, sizeof gate);
    snprintf(set_exe, sizeof set_exe, "extract.exe=%s", gate);
    const char *extra[] = { "--set", set_exe, "--set", "extract.concurrency=1", NULL };
    proc_t app;
    start_app(&app, dir, false, extra);
    assert_int_equal(metric(app.port, "kvchat_extractions_running"), 0);

    char files[5][512];
    for (int i = 0; i < 5; i++) {
        char line[64];
        snprintf(line, sizeof line, "Document number %d of the queue test.", i);
        const char *lines[] = { line };
        const char *p = fixture_write(dir, "txt", lines, 1);
        snprintf(files[i], sizeof files[i], "%s/q%d.txt", dir, i);
        rename(p, files[i]);
    }
    atomic_store(&g_finished, 0);
    job_t a, b, c, d, e;
    job_start(&a, app.port, API "/documents/upload", files[0], "a.txt", true);
    wait_metric(app.port, "kvchat_extractions_running", 1);
    job_start(&b, app.port, API "/documents/upload", files[1], "b.txt", true);
    wait_metric(app.port, "kvchat_extractions_queued", 1);
    job_start(&c, app.port, API "/documents/upload", files[2], "c.txt", true);
    wait_metric(app.port, "kvchat_extractions_queued", 2);
    job_start(&d, app.port, API "/documents/upload", files[3], "d.txt", false);
    wait_metric(app.port, "kvchat_extractions_queued", 3);
    /* a client that leaves while waiting gives up its place */
    job_start(&e, app.port, API "/documents/upload", files[4], "e.txt", true);
    e.hang_up_when_queued = true;
    job_join(&e);
    wait_metric(app.port, "kvchat_extractions_queued", 3);
    assert_int_equal(metric(app.port, "kvchat_extractions_running"), 1);
    /* the rest of the server is not held up by waiting uploads */
    resp_t r;
    http(app.port, "GET", API "/documents/list", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(r.json), 0);
    resp_free(&r);
    http(app.port, "POST", API "/session", "{}", &r);
    assert_true(r.status >= 200 && r.status < 300);
    resp_free(&r);

    open_gate(dir);
    job_join(&a);
    job_join(&b);
    job_join(&c);
    job_join(&d);
    char st[256];
    stages(&a, st, sizeof st);
    assert_string_equal(st, "extracting storing indexing done");
    stages(&b, st, sizeof st);
    assert_string_equal(st, "queued:1 extracting storing indexing done");
    /* c is told it moved up unless b's extraction (a short text) ended
     * before c's thread looked at the line again: then its next news is
     * its own extraction. Its places only ever go down. */
    stages(&c, st, sizeof st);
    if (strcmp(st, "queued:2 extracting storing indexing done") != 0)
        assert_string_equal(st, "queued:2 queued:1 extracting storing indexing done");
    stages(&e, st, sizeof st);
    assert_string_equal(st, "queued:4");
    /* first come, first served */
    assert_true(a.finished < b.finished);
    assert_true(b.finished < c.finished);
    assert_true(c.finished < d.finished);
    /* the last event is the plain answer, with "event":"done" */
    json_t *done = json_array_get(c.events, json_array_size(c.events) - 1);
    assert_string_equal(jstr(done, "filename"), "c.txt");
    assert_string_equal(jstr(done, "message"), "Document uploaded successfully");
    assert_true(json_is_false(jpath(done, "existed")));
    assert_int_equal(jint(done, "n_chars"), (long long)strlen("Document number 2 of the queue test.\n"));
    assert_int_equal(d.status, 200);
    assert_string_equal(jstr(d.json, "filename"), "d.txt");
    assert_string_equal(jstr(d.json, "message"), "Document uploaded successfully");
    assert_int_equal(json_object_size(d.json) + 1, json_object_size(done));
    /* four documents; the one given up is not among them, nor its file */
    assert_int_equal(n_documents(app.port), 4);
    assert_int_equal(count_files(dir, ".upload-"), 0);
    assert_int_equal(metric(app.port, "kvchat_extractions_running"), 0);
    assert_int_equal(metric(app.port, "kvchat_extractions_queued"), 0);
    job_t *all[] = { &a, &b, &c, &d, &e };
    for (int i = 0; i < 5; i++)
        job_free(all[i]);
    assert_int_equal(proc_stop(&app), 0);
    tmpdir_remove(dir);
}

/* A failed extraction gives its slot back, and the streamed answer carries
 * the same status and message as the plain one. */
static void test_queue_errors(void **state)
{
    (void)state;
    char dir[256];
    tmpdir_make(dir, sizeof dir);
    const char *extra[] = { "--set", "extract.concurrency=1", NULL };
    proc_t app;
    start_app(&app, dir, false, extra);
    const char *p = fixture_raw(dir, "empty.txt", "", 0);
    resp_t r;
    http_upload(app.port, API "/documents/upload", p, "empty.txt", &r);
    assert_int_equal(r.status, 422);
    char plain[512];
    snprintf(plain, sizeof plain, "%s", jstr(r.json, "detail"));
    resp_free(&r);
    job_t j;
    job_start(&j, app.port, API "/documents/upload", p, "empty.txt", true);
    job_join(&j);
    assert_int_equal(j.status, 200);
    json_t *last = json_array_get(j.events, json_array_size(j.events) - 1);
    assert_string_equal(jstr(last, "event"), "error");
    assert_int_equal(jint(last, "status"), 422);
    assert_string_equal(jstr(last, "detail"), plain);
    job_free(&j);
    /* the slot was given back each time */
    assert_int_equal(metric(app.port, "kvchat_extractions_running"), 0);
    static const char *const lines[] = { "After the failures." };
    p = fixture_write(dir, "txt", lines, 1);
    http_upload(app.port, API "/documents/upload", p, "after.txt", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(proc_stop(&app), 0);
    tmpdir_remove(dir);
}

/* ---- memory ---------------------------------------------------------------- */

/* Peak resident memory of a process (VmHWM), in KiB. */
static long vm_hwm_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    fclose(f);
    return v;
}

/* A text file of about `bytes` bytes whose lines differ (seeded). */
static void write_big_text(const char *path, size_t bytes, unsigned seed)
{
    static const char *const words[] = { "harbor", "ferry", "island", "lighthouse", "market",
                                         "storm", "museum", "tide", "cargo", "anchor",
                                         "\xc3\xa9t\xc3\xa9", "caf\xc3\xa9" };
    FILE *f = fopen(path, "w");
    if (!f)
        fail_msg("cannot write %s", path);
    fprintf(f, "Document %u begins here.\n", seed);
    size_t n = 0;
    unsigned x = seed * 2654435761u + 1;
    while (n < bytes) {
        for (int w = 0; w < 12; w++) {
            x = x * 1103515245u + 12345u;
            n += (size_t)fprintf(f, "%s%s", w ? " " : "", words[(x >> 16) % 12]);
        }
        n += (size_t)fprintf(f, ".\n");
    }
    fclose(f);
}

/* The app's memory does not grow with the size of an upload: the body
 * streams to a file, the text streams from the extractor to a file and
 * from there into the store in pieces, and a text far too long for the
 * model is refused for caching without being read into memory. (It used
 * to take about four times the text: 220 MB of peak for a 50 MB text.) */
static void test_upload_memory(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip();   /* ASan's quarantine keeps freed memory resident */
#endif
    char dir[256], path[300];
    tmpdir_make(dir, sizeof dir);
    proc_t app;
    start_app(&app, dir, true, NULL);
    snprintf(path, sizeof path, "%s/big.txt", dir);
    write_big_text(path, (size_t)45 << 20, 1);
    long before = vm_hwm_kib(app.pid);
    assert_true(before > 0);
    resp_t r;
    http_upload(app.port, API "/documents/upload", path, "big.txt", &r);
    if (r.status != 200)
        fail_msg("upload: %ld %s", r.status, r.body);
    char id[64];
    snprintf(id, sizeof id, "%s", jstr(r.json, "doc_id"));
    assert_true(jint(r.json, "n_chars") > (40 << 20));
    resp_free(&r);
    /* the preview is read piece by piece too */
    char url[256];
    snprintf(url, sizeof url, API "/documents/%s?include_preview=true", id);
    http(app.port, "GET", url, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(jstr(r.json, "content_preview"), "Document 1 begins here.\n"));
    assert_true(jint(r.json, "total_lines") > 400000);
    resp_free(&r);
    long after = vm_hwm_kib(app.pid);
    if (after - before > 32 * 1024)
        fail_msg("peak memory grew by %ld KiB for a 45 MB upload", after - before);
    /* far too long for the model: refused without reading it into memory */
    snprintf(url, sizeof url, API "/documents/cache/%s", id);
    http(app.port, "POST", url, NULL, &r);
    assert_int_equal(r.status, 422);
    assert_non_null(strstr(jstr(r.json, "detail"), "too long for the model"));
    resp_free(&r);
    after = vm_hwm_kib(app.pid);
    if (after - before > 32 * 1024)
        fail_msg("peak memory grew by %ld KiB to refuse caching it", after - before);
    /* three at once */
    job_t jobs[3];
    char paths[3][300];
    for (int i = 0; i < 3; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/par%d.txt", dir, i);
        write_big_text(paths[i], (size_t)20 << 20, 10 + (unsigned)i);
    }
    for (int i = 0; i < 3; i++)
        job_start(&jobs[i], app.port, API "/documents/upload", paths[i], "par.txt", false);
    for (int i = 0; i < 3; i++) {
        job_join(&jobs[i]);
        assert_int_equal(jobs[i].status, 200);
        assert_true(jint(jobs[i].json, "n_tokens") > 0);   /* counted, in pieces */
        job_free(&jobs[i]);
    }
    after = vm_hwm_kib(app.pid);
    if (after - before > 32 * 1024)
        fail_msg("peak memory grew by %ld KiB for three 20 MB uploads", after - before);
    assert_int_equal(count_files(dir, ".upload-"), 0);
    assert_int_equal(n_documents(app.port), 4);
    assert_int_equal(proc_stop(&app), 0);
    tmpdir_remove(dir);
}

/* ---- what a killed kvchat leaves behind ---------------------------------- */

/* The pid of a process whose command line contains `needle`, or 0. */
static int find_process(const char *needle)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[2048];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        buf[n] = '\0';
        if (strstr(buf, needle))
            found = atoi(e->d_name);
    }
    closedir(d);
    return found;
}

/* Alive and not a zombie. */
static bool process_alive(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

/* kill -9 of kvchat while an extraction runs: the extractor goes with it. */
static void test_extractor_dies_with_app(void **state)
{
    (void)state;
    char dir[256], gate[320], set_exe[400];
    tmpdir_make(dir, sizeof dir);
    write_gate_script(dir, gate, sizeof gate);
    snprintf(set_exe, sizeof set_exe, "extract.exe=%s", gate);
    const char *extra[] = { "--set", set_exe, NULL };
    proc_t app;
    start_app(&app, dir, false, extra);
    static const char *const lines[] = { "Held at the gate." };
    const char *p = fixture_write(dir, "txt", lines, 1);
    job_t j;
    job_start(&j, app.port, API "/documents/upload", p, "held.txt", false);
    wait_metric(app.port, "kvchat_extractions_running", 1);
    /* the extractor's command line, not kvchat's (which names the script
     * in its --set) */
    char needle[400];
    snprintf(needle, sizeof needle, "%s --sandbox", gate);
    int extractor = 0;
    for (int i = 0; i < 200 && !extractor; i++) {
        extractor = find_process(needle);
        if (!extractor)
            usleep(25 * 1000);
    }
    assert_true(extractor > 0);
    assert_true(process_alive(extractor));
    kill(app.pid, SIGKILL);
    proc_stop(&app);   /* reaps it */
    job_join(&j);
    bool alive = true;
    for (int i = 0; i < 200 && (alive = process_alive(extractor)); i++)
        usleep(25 * 1000);
    open_gate(dir);   /* lets a survivor end (it fails: nobody reads it) */
    assert_false(alive);
    job_free(&j);
    tmpdir_remove(dir);
}


/* Set the modification time of every file of dir's uploads named with
 * prefix to `age` seconds ago. */
static void age_files(const char *dir, const char *prefix, int age)
{
    char path[300];
    snprintf(path, sizeof path, "%s/data/uploads", dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *e;
    struct timespec t[2] = { { .tv_sec = time(NULL) - age }, { .tv_sec = time(NULL) - age } };
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            assert_int_equal(utimensat(dirfd(d), e->d_name, t, 0), 0);
    closedir(d);
}

/* kill -9 during an upload leaves its temporary file; a start removes it
 * once it is abandoned (untouched for an hour), not while it may be
 * another replica's upload on a shared uploads directory. */
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
    start_app(&app, dir, false, NULL);   /* fresh: maybe another's */
    assert_int_equal(count_files(dir, ".upload-"), 1);
    assert_int_equal(proc_stop(&app), 0);
    age_files(dir, ".upload-", 7200);
    start_app(&app, dir, false, NULL);
    assert_int_equal(count_files(dir, ".upload-"), 0);
    assert_true(log_contains(app.log_path, "removed 1 temporary file"));
    assert_int_equal(proc_stop(&app), 0);
    tmpdir_remove(dir);
}

/* ---- tables, slides and spreadsheets -------------------------------------- */

/* One upload of path named name: its status and the document's preview
 * (the caller frees; NULL unless 200). */
static char *upload_preview(int port, const char *path, const char *name, long want,
                            const char *want_type)
{
    resp_t r;
    http_upload(port, API "/documents/upload", path, name, &r);
    if (r.status != want)
        fail_msg("%s: expected %ld, got %ld: %s", name, want, r.status, r.body);
    if (want != 200) {
        resp_free(&r);
        return NULL;
    }
    assert_string_equal(jstr(r.json, "content_type"), want_type);
    char url[256];
    snprintf(url, sizeof url, API "/documents/%s?include_preview=true", jstr(r.json, "doc_id"));
    resp_free(&r);
    http(port, "GET", url, NULL, &r);
    assert_int_equal(r.status, 200);
    char *preview = strdup(jstr(r.json, "content_preview"));
    resp_free(&r);
    return preview;
}

static void want_in(const char *text, const char *what, const char *name)
{
    if (!strstr(text, what))
        fail_msg("%s: \"%s\" not in:\n%s", name, what, text);
}

/* The files users have, made by the tools they come from (pandoc,
 * openpyxl; extract_fixtures.py), uploaded through the app: tables come
 * back as Markdown tables (slides and sheets too), a semicolon CSV in
 * Latin-1 as a table in UTF-8; a zip bomb and a cut workbook are 422s with
 * a sentence, and the server goes on. */
static void test_table_formats(void **state)
{
    (void)state;
    char dir[256], cmd[700], path[400];
    tmpdir_make(dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/unit/extract_fixtures.py' '%s'",
             KVCHAT_SOURCE_DIR, dir);
    assert_int_equal(system(cmd), 0);
    proc_t app;
    start_app(&app, dir, false, NULL);
    static const struct {
        const char *file, *type, *want;
    } ok[] = {
        { "pandoc.docx", "docx", "| Tea | 3 | hot \\| cold |" },
        { "pandoc.odt", "odt", "| Cake | 4.5 | sweet |" },
        { "pandoc.html", "html", "| Name | Price | Note |" },
        { "pandoc.epub", "epub", "| Cake | 4.5 | sweet |" },
        { "pandoc.pptx", "pptx", "| Cake | 4.5 | sweet |" },
        { "book.xlsx", "xlsx", "| Apple | 3 | TRUE |" },
        { "latin1.csv", "csv", "| Crème; brûlée | Paris | 4,50 |" },
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, ok[i].file);
        char *text = upload_preview(app.port, path, ok[i].file, 200, ok[i].type);
        want_in(text, ok[i].want, ok[i].file);
        free(text);
    }
    snprintf(path, sizeof path, "%s/bomb.xlsx", dir);
    resp_t r;
    http_upload(app.port, API "/documents/upload", path, "bomb.xlsx", &r);
    assert_int_equal(r.status, 422);
    assert_non_null(jstr(r.json, "detail"));
    resp_free(&r);
    snprintf(path, sizeof path, "%s/truncated.xlsx", dir);
    http_upload(app.port, API "/documents/upload", path, "truncated.xlsx", &r);
    assert_int_equal(r.status, 422);
    assert_string_equal(jstr(r.json, "detail"), "The Excel workbook is damaged or unreadable.");
    resp_free(&r);
    http(app.port, "GET", API "/documents/limits", NULL, &r);
    assert_int_equal(r.status, 200);
    want_in(r.body, "xlsx", "limits");
    want_in(r.body, "png", "limits");
    resp_free(&r);
    assert_int_equal(metric(app.port, "kvchat_extractions_running"), 0);
    assert_int_equal(proc_stop(&app), 0);
    tmpdir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filename_not_utf8),
        cmocka_unit_test(test_hostile_pdfs),
        cmocka_unit_test(test_ocr_upload),
        cmocka_unit_test(test_table_formats),
        cmocka_unit_test(test_queue),
        cmocka_unit_test(test_queue_errors),
        cmocka_unit_test(test_upload_memory),
        cmocka_unit_test(test_stale_temp_files),
        cmocka_unit_test(test_extractor_dies_with_app),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
