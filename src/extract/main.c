/* main.c — kvchat-extract: one uploaded file in, UTF-8 text out.
 *
 *   kvchat-extract [--name ORIGINAL_FILENAME] [--max-output BYTES] [--detect]
 *                  [--limit-cpu SECONDS] [--limit-mem BYTES] [--sandbox]
 *                  [--structure-fd N] [--ocr-languages L] [--ocr-page-seconds S]
 *                  [--ocr-seconds S] [--progress-fd N] FILE
 *
 * The type is detected from the content (detect.h); --name only supplies
 * the extension hint that tells Markdown and HTML from plain text.
 * --max-output caps the text (default 64 MiB). --detect prints the type and
 * stops. The --limit-* options and --sandbox let the parent ask the program
 * to harden itself before it opens the file (setrlimit on CPU time and
 * address space; --sandbox: no files written, no core dumps, few
 * descriptors, no new privileges). The runner also applies the same limits
 * itself before exec, which is the enforcement that counts.
 * --structure-fd names an open descriptor (3 or above) that receives the
 * document's structure marks (pages, headings) after the text, in the line
 * format of extract.h; without it the marks are not written.
 *
 * Outcome (extract.h): exit 0, the text on stdout and "type=<t> chars=<n>"
 * on stderr; or exit extract_exit_status(code), nothing on stdout and
 * "error=<code> <message>" on stderr. The text is built in memory and
 * written only once it is complete, so a failure never leaves half a text
 * behind a success status. Messages come from extract_message() only and
 * never quote the file.
 *
 * --ocr-languages (default "eng"; "" turns OCR off) names the Tesseract
 * languages used to recognise scanned PDF pages and images (ocr.h);
 * --ocr-page-seconds and --ocr-seconds limit OCR per page and per
 * document; --progress-fd names a descriptor (3 or above) for the OCR
 * progress lines of extract.h. With OCR on, the CPU-time limit's hard
 * value leaves --ocr-seconds above the soft one, which the program lifts
 * only when it starts OCR.
 *
 * One backend per type, behind one table (a backend reads the file from the
 * descriptor and writes to the normalising sink, textout.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "extract/csv.h"
#include "extract/detect.h"
#include "extract/epub.h"
#include "extract/extract.h"
#include "extract/html.h"
#include "extract/image.h"
#include "extract/ocr.h"
#include "extract/odf.h"
#include "extract/ooxml.h"
#include "extract/pdf.h"
#include "extract/pptx.h"
#include "extract/text.h"
#include "extract/textout.h"
#include "extract/xlsx.h"

#define DEFAULT_MAX_OUTPUT ((size_t)64 << 20)
#define SANDBOX_NOFILE 32

typedef int (*backend_fn)(int fd, textout_t *out);

static const struct {
    extract_type_t type;
    backend_fn extract;
} backends[] = {
    { EXTRACT_TYPE_TXT, text_extract },   { EXTRACT_TYPE_MD, text_extract_md },
    { EXTRACT_TYPE_PDF, pdf_extract },    { EXTRACT_TYPE_DOCX, ooxml_extract },
    { EXTRACT_TYPE_ODT, odf_extract },    { EXTRACT_TYPE_HTML, html_extract },
    { EXTRACT_TYPE_EPUB, epub_extract },
    { EXTRACT_TYPE_PPTX, pptx_extract },  { EXTRACT_TYPE_ODP, odf_extract_slides },
    { EXTRACT_TYPE_XLSX, xlsx_extract },  { EXTRACT_TYPE_ODS, odf_extract_sheet },
    { EXTRACT_TYPE_CSV, csv_extract },
};

/* Backends that may recognise text in images (ocr may be NULL). */
typedef int (*ocr_backend_fn)(int fd, textout_t *out, ocr_t *ocr);

static const struct {
    extract_type_t type;
    ocr_backend_fn extract;
} ocr_backends[] = {
    { EXTRACT_TYPE_PDF, pdf_extract_ocr },   { EXTRACT_TYPE_PNG, image_extract },
    { EXTRACT_TYPE_JPEG, image_extract },    { EXTRACT_TYPE_TIFF, image_extract },
    { EXTRACT_TYPE_WEBP, image_extract },
};

#define OCR_LANGUAGES_MAX 128

/* The program's state, built from the command line. */
typedef struct {
    const char *path;
    const char *name;          /* client's filename, extension hint only */
    size_t max_output;
    bool detect_only;
    bool sandbox;
    unsigned long long cpu_seconds;   /* 0: leave as is */
    unsigned long long mem_bytes;     /* 0: leave as is */
    int structure_fd;                 /* -1: marks not wanted */
    ocr_options_t ocr;                /* languages "" = OCR off */
} options_t;

static void usage(FILE *f)
{
    fputs("Usage: kvchat-extract [options] FILE\n"
          "Writes the text of FILE (txt, md, pdf, docx, odt, html, epub, pptx, odp,\n"
          "xlsx, ods, csv; detected from\n"
          "the content) as UTF-8 to stdout and a status line to stderr:\n"
          "'type=<type> chars=<n>' or 'error=<code> <message>'.\n\n"
          "      --name NAME         the file's original name (for messages)\n"
          "      --max-output BYTES  most text written (default 64 MiB)\n"
          "      --detect            print the detected type only\n"
          "      --limit-cpu SECONDS lower the CPU time limit (RLIMIT_CPU)\n"
          "      --limit-mem BYTES   lower the address space limit (RLIMIT_AS)\n"
          "      --sandbox           no files written, no core, few descriptors,\n"
          "                          no new privileges\n"
          "      --structure-fd N    pages and headings to descriptor N, one per line:\n"
          "                          'P<tab>offset<tab>page<tab>label' or\n"
          "                          'H<tab>offset<tab>level<tab>title'\n"
          "      --ocr-languages L   Tesseract languages for scanned pages and images\n"
          "                          (default eng; '' turns OCR off)\n"
          "      --ocr-page-seconds S  OCR time limit per page (default none)\n"
          "      --ocr-seconds S     OCR time limit per document (default none)\n"
          "      --progress-fd N     OCR progress to descriptor N: 'ocr <pages>', then\n"
          "                          'page <page> <confidence>' per page\n"
          "      --help\n",
          f);
}

/* Report a failure on stderr; returns the exit status for it. */
static int fail(int code, extract_type_t type)
{
    char msg[EXTRACT_MESSAGE_MAX];
    extract_message(code, type, msg, sizeof msg);
    const char *name = extract_code_name(code);
    fprintf(stderr, "error=%s %s\n", name ? name : "internal", msg);
    return extract_exit_status(code);
}

static bool parse_u64(const char *s, unsigned long long *out)
{
    if (!s || !*s || *s == '-')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static int parse_options(int argc, char **argv, options_t *o)
{
    enum { OPT_NAME = 1, OPT_MAX, OPT_DETECT, OPT_CPU, OPT_MEM, OPT_SANDBOX, OPT_STRUCTURE,
           OPT_HELP, OPT_OCR_LANG, OPT_OCR_PAGE, OPT_OCR_TOTAL, OPT_PROGRESS };
    static const struct option longopts[] = {
        { "name", required_argument, NULL, OPT_NAME },
        { "max-output", required_argument, NULL, OPT_MAX },
        { "detect", no_argument, NULL, OPT_DETECT },
        { "limit-cpu", required_argument, NULL, OPT_CPU },
        { "limit-mem", required_argument, NULL, OPT_MEM },
        { "sandbox", no_argument, NULL, OPT_SANDBOX },
        { "structure-fd", required_argument, NULL, OPT_STRUCTURE },
        { "help", no_argument, NULL, OPT_HELP },
        { "ocr-languages", required_argument, NULL, OPT_OCR_LANG },
        { "ocr-page-seconds", required_argument, NULL, OPT_OCR_PAGE },
        { "ocr-seconds", required_argument, NULL, OPT_OCR_TOTAL },
        { "progress-fd", required_argument, NULL, OPT_PROGRESS },
        { NULL, 0, NULL, 0 },
    };
    memset(o, 0, sizeof *o);
    o->max_output = DEFAULT_MAX_OUTPUT;
    o->structure_fd = -1;
    ocr_options_default(&o->ocr);
    o->ocr.languages = "eng";
    opterr = 0;
    int c;
    unsigned long long v;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_NAME:
            o->name = optarg;
            break;
        case OPT_MAX:
            if (!parse_u64(optarg, &v) || v == 0 || v > SIZE_MAX / 2)
                return EXTRACT_EUSAGE;
            o->max_output = (size_t)v;
            break;
        case OPT_DETECT:
            o->detect_only = true;
            break;
        case OPT_CPU:
            if (!parse_u64(optarg, &o->cpu_seconds))
                return EXTRACT_EUSAGE;
            break;
        case OPT_MEM:
            if (!parse_u64(optarg, &o->mem_bytes))
                return EXTRACT_EUSAGE;
            break;
        case OPT_SANDBOX:
            o->sandbox = true;
            break;
        case OPT_STRUCTURE:
            /* Not 0..2 (the text and the status line have those), and open. */
            if (!parse_u64(optarg, &v) || v < 3 || v > INT_MAX ||
                fcntl((int)v, F_GETFD) < 0)
                return EXTRACT_EUSAGE;
            o->structure_fd = (int)v;
            break;
        case OPT_OCR_LANG:
            /* Names of traineddata files: no path may sneak in. */
            if (strlen(optarg) > OCR_LANGUAGES_MAX ||
                strspn(optarg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789_+") != strlen(optarg))
                return EXTRACT_EUSAGE;
            o->ocr.languages = optarg;
            break;
        case OPT_OCR_PAGE:
        case OPT_OCR_TOTAL:
            if (!parse_u64(optarg, &v) || v > 86400)
                return EXTRACT_EUSAGE;
            if (c == OPT_OCR_PAGE)
                o->ocr.page_seconds = (unsigned)v;
            else
                o->ocr.total_seconds = (unsigned)v;
            break;
        case OPT_PROGRESS:
            if (!parse_u64(optarg, &v) || v < 3 || v > INT_MAX || fcntl((int)v, F_GETFD) < 0)
                return EXTRACT_EUSAGE;
            o->ocr.progress_fd = (int)v;
            break;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        default:
            return EXTRACT_EUSAGE;
        }
    }
    if (optind != argc - 1)
        return EXTRACT_EUSAGE;
    o->path = argv[optind];
    return 0;
}

/* Lower one limit (never raise it: an unprivileged process cannot). */
static int lower_limit(int resource, rlim_t soft, rlim_t hard)
{
    struct rlimit cur;
    if (getrlimit(resource, &cur) != 0)
        return -1;
    if (cur.rlim_max != RLIM_INFINITY && hard > cur.rlim_max)
        hard = cur.rlim_max;
    if (soft > hard)
        soft = hard;
    struct rlimit lim = { .rlim_cur = soft, .rlim_max = hard };
    return setrlimit(resource, &lim);
}

static int harden(const options_t *o)
{
    int bad = 0;
    if (o->cpu_seconds) {
        /* Room above the soft limit for OCR, taken only when it starts. */
        unsigned long long extra = o->ocr.languages[0] ? o->ocr.total_seconds : 0;
        bad |= lower_limit(RLIMIT_CPU, o->cpu_seconds, o->cpu_seconds + extra + 1);
    }
    if (o->mem_bytes)
        bad |= lower_limit(RLIMIT_AS, o->mem_bytes, o->mem_bytes);
    if (o->sandbox) {
        bad |= lower_limit(RLIMIT_FSIZE, 0, 0);
        bad |= lower_limit(RLIMIT_CORE, 0, 0);
        bad |= lower_limit(RLIMIT_NOFILE, SANDBOX_NOFILE, SANDBOX_NOFILE);
        bad |= prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        bad |= prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    return bad ? EXTRACT_EINTERNAL : 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Write the sink's marks to fd in the format of extract.h, in pieces of
 * about 64 KiB. Returns 0, or -1 when writing fails. */
static int write_marks(int fd, const textout_t *out)
{
    char chunk[65536 + EXTRACT_MARK_LINE_MAX];
    size_t n = 0;
    for (size_t i = 0; i < textout_mark_count(out); i++) {
        extract_mark_t m;
        textout_mark_get(out, i, &m);
        n += extract_mark_format(&m, chunk + n);
        if (n >= 65536) {
            if (write_all(fd, chunk, n) != 0)
                return -1;
            n = 0;
        }
    }
    return write_all(fd, chunk, n);
}

static ocr_backend_fn ocr_backend_for(extract_type_t type)
{
    for (size_t i = 0; i < sizeof ocr_backends / sizeof ocr_backends[0]; i++)
        if (ocr_backends[i].type == type)
            return ocr_backends[i].extract;
    return NULL;
}

static backend_fn backend_for(extract_type_t type)
{
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (backends[i].type == type)
            return backends[i].extract;
    return NULL;
}

int main(int argc, char **argv)
{
    options_t o;
    int rc = parse_options(argc, argv, &o);
    if (rc) {
        usage(stderr);
        return fail(rc, EXTRACT_TYPE_UNKNOWN);
    }
    rc = harden(&o);
    if (rc)
        return fail(rc, EXTRACT_TYPE_UNKNOWN);

    extract_type_t type = detect_from_name(o.name);
    int fd = open(o.path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return fail(EXTRACT_ECORRUPT, type);
    rc = detect_type(fd, o.name, &type);
    if (rc) {
        close(fd);
        return fail(rc, type);
    }
    if (o.detect_only) {
        close(fd);
        printf("%s\n", extract_type_name(type));
        return fflush(stdout) == 0 ? 0 : fail(EXTRACT_EINTERNAL, type);
    }

    backend_fn extract = backend_for(type);
    textout_t out;
    textout_init(&out, o.max_output);
    char *text = NULL;
    size_t len = 0, chars = 0;
    ocr_backend_fn extract_ocr = ocr_backend_for(type);
    ocr_t *ocr = NULL;
    if (extract_ocr && o.ocr.languages[0] && !(ocr = ocr_new(&o.ocr)))
        rc = EXTRACT_EMEMORY;
    else if (extract_ocr)
        rc = extract_ocr(fd, &out, ocr);
    else
        rc = extract ? extract(fd, &out) : EXTRACT_EUNSUPPORTED;
    ocr_free(ocr);
    close(fd);
    if (!rc)
        rc = textout_finish(&out, &text, &len, &chars);
    if (rc) {
        textout_cleanup(&out);
        return fail(rc, type);
    }
    /* The text first, then its marks: the reader takes both, or neither
     * when the status line says it failed. */
    bool written = write_all(STDOUT_FILENO, text, len) == 0 &&
                   (o.structure_fd < 0 || write_marks(o.structure_fd, &out) == 0);
    free(text);
    textout_cleanup(&out);
    if (!written)
        return fail(EXTRACT_EINTERNAL, type);
    fprintf(stderr, "type=%s chars=%zu\n", extract_type_name(type), chars);
    return 0;
}
