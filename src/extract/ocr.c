/* ocr.c — see ocr.h. Tesseract through its C API (capi.h), LSTM engine,
 * automatic page segmentation. Tesseract's own messages go to /dev/null:
 * kvchat-extract's stderr carries its status line. */
#include "extract/ocr.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <tesseract/capi.h>

struct ocr {
    const ocr_options_t *opt;
    TessBaseAPI *api;        /* NULL until ocr_begin() */
    uint64_t start_ms;       /* when ocr_begin() was called */
    int pages, done;
    long conf_sum;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ocr_options_default(ocr_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->progress_fd = -1;
}

ocr_t *ocr_new(const ocr_options_t *opt)
{
    ocr_t *o = calloc(1, sizeof *o);
    if (o)
        o->opt = opt;
    return o;
}

void ocr_free(ocr_t *o)
{
    if (!o)
        return;
    if (o->api) {
        TessBaseAPIEnd(o->api);
        TessBaseAPIDelete(o->api);
    }
    free(o);
}

bool ocr_enabled(const ocr_t *o)
{
    return o && o->opt && o->opt->languages && o->opt->languages[0];
}

/* One progress line; a reader that went away does not stop the work. */
static void progress(const ocr_t *o, const char *line, size_t n)
{
    if (o->opt->progress_fd < 0)
        return;
    while (n > 0) {
        ssize_t k = write(o->opt->progress_fd, line, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        line += k;
        n -= (size_t)k;
    }
}

int ocr_begin(ocr_t *o, int pages)
{
    if (!ocr_enabled(o) || pages < 1 || o->api)
        return EXTRACT_EINTERNAL;
    o->start_ms = now_ms();
    o->pages = pages;
    /* OCR may use the CPU time the runner set aside for it (ocr.h). */
    struct rlimit cpu;
    if (getrlimit(RLIMIT_CPU, &cpu) == 0 && cpu.rlim_cur != cpu.rlim_max) {
        cpu.rlim_cur = cpu.rlim_max;
        setrlimit(RLIMIT_CPU, &cpu);
    }
    o->api = TessBaseAPICreate();
    if (!o->api)
        return EXTRACT_EMEMORY;
    /* Set before Init so that loading the data is quiet too. */
    TessBaseAPISetVariable(o->api, "debug_file", "/dev/null");
    if (TessBaseAPIInit3(o->api, o->opt->datapath, o->opt->languages) != 0)
        return EXTRACT_EINTERNAL;
    TessBaseAPISetPageSegMode(o->api, PSM_AUTO);
    char line[32];
    int n = snprintf(line, sizeof line, "ocr %d\n", pages);
    progress(o, line, (size_t)n);
    return 0;
}

int ocr_page(ocr_t *o, int page, const unsigned char *gray, int width, int height, int stride,
             int dpi, textout_t *out)
{
    if (!o || !o->api || !gray || width < 1 || height < 1 || stride < width)
        return EXTRACT_EINTERNAL;
    int rc = textout_error(out);
    if (rc)
        return rc;
    /* This page's deadline: its own limit, or what is left of the
     * document's, whichever comes first. */
    uint64_t used = now_ms() - o->start_ms;
    uint64_t total = (uint64_t)o->opt->total_seconds * 1000u;
    if (total && used >= total)
        return EXTRACT_EOCRTIME;
    uint64_t budget = o->opt->page_seconds ? (uint64_t)o->opt->page_seconds * 1000u : 0;
    if (total && (!budget || total - used < budget))
        budget = total - used;

    TessBaseAPISetImage(o->api, gray, width, height, 1, stride);
    TessBaseAPISetSourceResolution(o->api, dpi > 0 ? dpi : OCR_DPI);
    ETEXT_DESC *monitor = TessMonitorCreate();
    if (!monitor)
        return EXTRACT_EMEMORY;
    if (budget)
        TessMonitorSetDeadlineMSecs(monitor, budget > INT32_MAX ? INT32_MAX : (int)budget);
    int rec = TessBaseAPIRecognize(o->api, monitor);
    TessMonitorDelete(monitor);
    if (total && now_ms() - o->start_ms >= total) {
        TessBaseAPIClear(o->api);
        return EXTRACT_EOCRTIME;
    }
    /* A page cut off by its own deadline keeps what was recognised. */
    char *text = rec == 0 || budget ? TessBaseAPIGetUTF8Text(o->api) : NULL;
    int conf = text ? TessBaseAPIMeanTextConf(o->api) : 0;
    if (conf < 0)
        conf = 0;
    if (conf > 100)
        conf = 100;
    if (text) {
        textout_blank_line(out);
        textout_put_utf8(out, text, strlen(text));
        textout_blank_line(out);
        TessDeleteText(text);
    }
    TessBaseAPIClear(o->api);
    o->done++;
    o->conf_sum += conf;
    char line[48];
    int n = snprintf(line, sizeof line, "page %d %d\n", page, conf);
    progress(o, line, (size_t)n);
    return textout_error(out);
}

int ocr_pages_done(const ocr_t *o) { return o ? o->done : 0; }

int ocr_mean_confidence(const ocr_t *o)
{
    return o && o->done ? (int)(o->conf_sum / o->done) : -1;
}
