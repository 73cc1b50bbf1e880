/* xmlquiet.c — see xmlquiet.h. */
#include "extract/xmlquiet.h"

#include <libxml/parser.h>
#include <libxml/xmlerror.h>

static void silent(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

static void silent_structured(void *ctx, xmlErrorPtr err)
{
    (void)ctx;
    (void)err;
}

void xml_quiet_init(void)
{
    xmlInitParser();
    xmlSetGenericErrorFunc(NULL, silent);
    xmlSetStructuredErrorFunc(NULL, silent_structured);
}
