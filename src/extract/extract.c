/* extract.c — codes, type names and user messages shared by kvchat-extract
 * and its runner (see extract.h). Everything here is a constant table. */
#include "extract/extract.h"

#include <stdio.h>
#include <string.h>

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
        snprintf(buf, n, "kvchat cannot read this type of file. Supported: plain text, "
                         "Markdown, PDF, Word (.docx), OpenDocument text (.odt), HTML "
                         "and EPUB.");
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
                             "text (kvchat does not do OCR).");
        else if (type == EXTRACT_TYPE_UNKNOWN)
            snprintf(buf, n, "The file is empty or contains no text.");
        else
            snprintf(buf, n, "The %s contains no text.", noun);
        break;
    case EXTRACT_ETOOBIG:
        snprintf(buf, n, "The text of the %s is larger than kvchat accepts.", noun);
        break;
    case EXTRACT_EBOMB:
        snprintf(buf, n, "The %s unpacks to far more data than kvchat accepts "
                         "(possibly a zip bomb); it was not read.", noun);
        break;
    case EXTRACT_EMEMORY:
        snprintf(buf, n, "Reading the %s needs more memory than kvchat allows.", noun);
        break;
    case EXTRACT_ECRASHED:
        snprintf(buf, n, "The text extractor crashed on the %s.", noun);
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

bool extract_error_is_internal(int code)
{
    return code == EXTRACT_EUSAGE || code == EXTRACT_EINTERNAL || code == EXTRACT_ESPAWN ||
           code == EXTRACT_EPROTOCOL;
}
