/* extract.c — codes, type names and user messages shared by kvchat-extract
 * and its runner (see extract.h): constant tables, and the one writer and
 * the one reader of the structure marks' line format, so that both sides
 * of the pipe agree on it by construction. */
#include "extract/extract.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "extract/codepoint.h"

typedef struct {
    int code;
    const char *name;    /* status-line token; NULL for runner-only codes */
    const char *text;    /* extract_strerror() */
} code_info_t;

static const code_info_t code_table[] = {
    { EXTRACT_OK, NULL, "success" },
    { EXTRACT_EUSAGE, "usage", "bad command line" },
    { EXTRACT_EUNSUPPORTED, "unsupported", "unsupported file type" },
    { EXTRACT_ECORRUPT, "corrupt", "corrupt or unreadable file" },
    { EXTRACT_EENCRYPTED, "encrypted", "encrypted or password-protected file" },
    { EXTRACT_ENOTEXT, "notext", "file contains no text" },
    { EXTRACT_ETOOBIG, "toobig", "extracted text over the output limit" },
    { EXTRACT_EBOMB, "bomb", "archive expands past the unpack limits" },
    { EXTRACT_EMEMORY, "memory", "out of memory" },
    { EXTRACT_EINTERNAL, "internal", "internal error" },
    { EXTRACT_EOCRTIME, "ocrtime", "OCR over its time limit" },
    { EXTRACT_ECRASHED, NULL, "extractor crashed" },
    { EXTRACT_ETIMEOUT, NULL, "extractor timed out" },
    { EXTRACT_ECPU, NULL, "extractor over its CPU-time limit" },
    { EXTRACT_ESPAWN, NULL, "cannot start the extractor" },
    { EXTRACT_EPROTOCOL, NULL, "extractor broke the output contract" },
};

#define N_CODES (sizeof code_table / sizeof code_table[0])

static const code_info_t *code_find(int code)
{
    for (size_t i = 0; i < N_CODES; i++)
        if (code_table[i].code == code)
            return &code_table[i];
    return NULL;
}

const char *extract_strerror(int code)
{
    const code_info_t *c = code_find(code);
    return c ? c->text : "unknown error";
}

const char *extract_code_name(int code)
{
    const code_info_t *c = code_find(code);
    return c ? c->name : NULL;
}

int extract_code_parse(const char *name, size_t n)
{
    for (size_t i = 0; i < N_CODES; i++) {
        const char *s = code_table[i].name;
        if (s && strlen(s) == n && memcmp(s, name, n) == 0)
            return code_table[i].code;
    }
    return EXTRACT_OK;
}

int extract_exit_status(int code)
{
    const code_info_t *c = code_find(code);
    if (code == EXTRACT_OK)
        return 0;
    /* Only program codes are exit statuses; anything else is internal. */
    if (!c || !c->name)
        return -EXTRACT_EINTERNAL;
    return -code;
}

int extract_code_from_exit(int status)
{
    if (status <= 0 || status > 255)
        return EXTRACT_OK;
    const code_info_t *c = code_find(-status);
    return (c && c->name) ? -status : EXTRACT_OK;
}

static const char *const type_names[EXTRACT_TYPE_COUNT] = {
    [EXTRACT_TYPE_UNKNOWN] = "unknown",
    [EXTRACT_TYPE_TXT] = "txt",
    [EXTRACT_TYPE_MD] = "md",
    [EXTRACT_TYPE_PDF] = "pdf",
    [EXTRACT_TYPE_DOCX] = "docx",
    [EXTRACT_TYPE_ODT] = "odt",
    [EXTRACT_TYPE_HTML] = "html",
    [EXTRACT_TYPE_EPUB] = "epub",
    [EXTRACT_TYPE_PNG] = "png",
    [EXTRACT_TYPE_JPEG] = "jpeg",
    [EXTRACT_TYPE_TIFF] = "tiff",
    [EXTRACT_TYPE_WEBP] = "webp",
    [EXTRACT_TYPE_PPTX] = "pptx",
    [EXTRACT_TYPE_ODP] = "odp",
    [EXTRACT_TYPE_XLSX] = "xlsx",
    [EXTRACT_TYPE_ODS] = "ods",
    [EXTRACT_TYPE_CSV] = "csv",
};

/* How a message names a file of each type. */
static const char *const type_nouns[EXTRACT_TYPE_COUNT] = {
    [EXTRACT_TYPE_UNKNOWN] = "file",
    [EXTRACT_TYPE_TXT] = "text file",
    [EXTRACT_TYPE_MD] = "Markdown file",
    [EXTRACT_TYPE_PDF] = "PDF",
    [EXTRACT_TYPE_DOCX] = "Word document",
    [EXTRACT_TYPE_ODT] = "OpenDocument text",
    [EXTRACT_TYPE_HTML] = "web page",
    [EXTRACT_TYPE_EPUB] = "e-book",
    [EXTRACT_TYPE_PNG] = "PNG image",
    [EXTRACT_TYPE_JPEG] = "JPEG image",
    [EXTRACT_TYPE_TIFF] = "TIFF image",
    [EXTRACT_TYPE_WEBP] = "WebP image",
    [EXTRACT_TYPE_PPTX] = "PowerPoint presentation",
    [EXTRACT_TYPE_ODP] = "OpenDocument presentation",
    [EXTRACT_TYPE_XLSX] = "Excel workbook",
    [EXTRACT_TYPE_ODS] = "OpenDocument spreadsheet",
    [EXTRACT_TYPE_CSV] = "CSV file",
};

const char *extract_type_name(extract_type_t type)
{
    if ((int)type < 0 || type >= EXTRACT_TYPE_COUNT)
        type = EXTRACT_TYPE_UNKNOWN;
    return type_names[type];
}

extract_type_t extract_type_parse(const char *name, size_t n)
{
    for (int t = EXTRACT_TYPE_TXT; t < EXTRACT_TYPE_COUNT; t++)
        if (strlen(type_names[t]) == n && memcmp(type_names[t], name, n) == 0)
            return (extract_type_t)t;
    return EXTRACT_TYPE_UNKNOWN;
}

void extract_message(int code, extract_type_t type, char *buf, size_t n)
{
    if (!buf || n == 0)
        return;
    if ((int)type < 0 || type >= EXTRACT_TYPE_COUNT)
        type = EXTRACT_TYPE_UNKNOWN;
    const char *noun = type_nouns[type];
    switch (code) {
    case EXTRACT_OK:
        snprintf(buf, n, "%s", "");
        break;
    case EXTRACT_EUNSUPPORTED:
        snprintf(buf, n, "kvchat cannot read this type of file. It reads plain text, Markdown, "
                         "PDF, Word, PowerPoint and Excel (.docx, .pptx, .xlsx), OpenDocument "
                         "(.odt, .odp, .ods), HTML, EPUB, CSV and images (PNG, JPEG, TIFF, "
                         "WebP).");
        break;
    case EXTRACT_ECORRUPT:
        snprintf(buf, n, "The %s is damaged or unreadable.", noun);
        break;
    case EXTRACT_EENCRYPTED:
        snprintf(buf, n, "The %s is password-protected; kvchat cannot read it.", noun);
        break;
    case EXTRACT_ENOTEXT:
        if (type == EXTRACT_TYPE_PDF)
            snprintf(buf, n, "The PDF looks like a scanned document: it contains no "
                             "text, and none was recognised in its images (OCR).");
        else if (extract_type_is_image(type))
            snprintf(buf, n, "No text was recognised in the %s (OCR).", noun);
        else if (type == EXTRACT_TYPE_UNKNOWN)
            snprintf(buf, n, "The file is empty or contains no text.");
        else
            snprintf(buf, n, "The %s contains no text.", noun);
        break;
    case EXTRACT_ETOOBIG:
        snprintf(buf, n, "The text of the %s is larger than kvchat accepts.", noun);
        break;
    case EXTRACT_EBOMB:
        if (extract_type_is_image(type)) {
            snprintf(buf, n, "The %s is too large (more pixels or pages than kvchat "
                             "accepts); it was not read.", noun);
            break;
        }
        snprintf(buf, n, "The %s unpacks to far more data than kvchat accepts "
                         "(possibly a zip bomb); it was not read.", noun);
        break;
    case EXTRACT_EMEMORY:
        snprintf(buf, n, "Reading the %s needs more memory than kvchat allows.", noun);
        break;
    case EXTRACT_ECRASHED:
        snprintf(buf, n, "The text extractor crashed on the %s.", noun);
        break;
    case EXTRACT_EOCRTIME:
        snprintf(buf, n, "Recognising the text of the %s (OCR) took longer than kvchat "
                         "allows.", noun);
        break;
    case EXTRACT_ETIMEOUT:
        snprintf(buf, n, "Extraction timed out.");
        break;
    case EXTRACT_ECPU:
        snprintf(buf, n, "Extraction used more CPU time than kvchat allows.");
        break;
    case EXTRACT_ESPAWN:
        snprintf(buf, n, "The text extractor could not be started.");
        break;
    case EXTRACT_EPROTOCOL:
        snprintf(buf, n, "The text extractor returned malformed output.");
        break;
    case EXTRACT_EUSAGE:
    case EXTRACT_EINTERNAL:
    default:
        snprintf(buf, n, "The text extractor failed with an internal error.");
        break;
    }
}

bool extract_error_is_unsupported(int code) { return code == EXTRACT_EUNSUPPORTED; }

bool extract_type_is_image(extract_type_t type)
{
    return type == EXTRACT_TYPE_PNG || type == EXTRACT_TYPE_JPEG || type == EXTRACT_TYPE_TIFF ||
           type == EXTRACT_TYPE_WEBP;
}

bool extract_error_is_internal(int code)
{
    return code == EXTRACT_EUSAGE || code == EXTRACT_EINTERNAL || code == EXTRACT_ESPAWN ||
           code == EXTRACT_EPROTOCOL;
}

/* ---- structure marks ------------------------------------------------------ */

#define MARKS_LIMIT_MIN ((size_t)64 << 10)
#define MARKS_LIMIT_MAX ((size_t)16 << 20)

size_t extract_marks_limit(size_t max_output)
{
    size_t n = max_output / 8;
    if (n < MARKS_LIMIT_MIN)
        n = MARKS_LIMIT_MIN;
    return n > MARKS_LIMIT_MAX ? MARKS_LIMIT_MAX : n;
}

/* A control character: C0, DEL, C1. */
static bool is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

static bool number_ok(extract_mark_kind_t kind, long long v)
{
    if (kind == EXTRACT_MARK_PAGE)
        return v >= 1 && v <= INT_MAX;
    if (kind == EXTRACT_MARK_HEADING)
        return v >= 1 && v <= EXTRACT_HEADING_LEVEL_MAX;
    return false;
}

size_t extract_mark_format(const extract_mark_t *m, char *buf)
{
    if (!number_ok(m->kind, m->number))
        return 0;
    int k = snprintf(buf, EXTRACT_MARK_LINE_MAX, "%c\t%zu\t%d\t", (char)m->kind, m->offset,
                     m->number);
    if (k < 0 || k >= EXTRACT_MARK_LINE_MAX)
        return 0;
    size_t n = (size_t)k, used = 0;
    const unsigned char *p = (const unsigned char *)(m->label ? m->label : "");
    size_t len = strlen((const char *)p);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t step = codepoint_decode(p + i, len - i, &cp, NULL);
        if (is_control(cp))
            cp = ' ';
        char enc[4];
        size_t e = codepoint_encode(cp, enc);
        if (used + e > EXTRACT_MARK_LABEL_MAX)
            break;
        memcpy(buf + n, enc, e);
        n += e;
        used += e;
        i += step;
    }
    buf[n++] = '\n';
    buf[n] = '\0';
    return n;
}

/* A decimal without sign or leading zeros, at most `max`. Returns false
 * when p[0..n) is not one. */
static bool parse_decimal(const char *p, size_t n, unsigned long long max,
                          unsigned long long *out)
{
    if (n == 0 || n > 20 || (n > 1 && p[0] == '0'))
        return false;
    unsigned long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

int extract_mark_parse(const char *line, size_t n, extract_mark_t *m, size_t *label_len)
{
    /* kind, tab, offset, tab, number, tab, label */
    if (n < 6 || (line[0] != EXTRACT_MARK_PAGE && line[0] != EXTRACT_MARK_HEADING) ||
        line[1] != '\t')
        return EXTRACT_EPROTOCOL;
    m->kind = (extract_mark_kind_t)line[0];
    const char *end = line + n, *p = line + 2;
    const char *tab = memchr(p, '\t', (size_t)(end - p));
    unsigned long long v;
    if (!tab || !parse_decimal(p, (size_t)(tab - p), SIZE_MAX, &v))
        return EXTRACT_EPROTOCOL;
    m->offset = (size_t)v;
    p = tab + 1;
    tab = memchr(p, '\t', (size_t)(end - p));
    if (!tab || !parse_decimal(p, (size_t)(tab - p), INT_MAX, &v) ||
        !number_ok(m->kind, (long long)v))
        return EXTRACT_EPROTOCOL;
    m->number = (int)v;
    p = tab + 1;
    size_t len = (size_t)(end - p);
    if (len > EXTRACT_MARK_LABEL_MAX)
        return EXTRACT_EPROTOCOL;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        bool ok;
        i += codepoint_decode((const unsigned char *)p + i, len - i, &cp, &ok);
        if (!ok || is_control(cp))
            return EXTRACT_EPROTOCOL;
    }
    m->label = (char *)p;
    *label_len = len;
    return 0;
}
