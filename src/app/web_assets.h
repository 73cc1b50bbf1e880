/* web_assets.h — the embedded UI files (web_assets.c is generated at build
 * time from the UI's bundle by src/app/embed.cmake). */
#ifndef KVCHAT_APP_WEB_ASSETS_H
#define KVCHAT_APP_WEB_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *name;          /* path under /assets/, or "index.html" */
    const char *content_type;
    const unsigned char *data;
    size_t size;
    const char *etag;          /* quoted hash of the content */
} web_asset_t;

extern const web_asset_t web_assets[];
extern const size_t web_assets_count;

#endif
