/* web.c — serves the web UI's files, embedded at build time (see
 * src/app/embed.cmake: every file of the UI's bundle becomes a byte array
 * in web_assets.c). No file is read from disk at run time, so the UI works
 * offline and wherever kvchat is copied.
 */
#include "app/web.h"

#include <stdio.h>
#include <string.h>

#include "app/web_assets.h"

static const web_asset_t *find(const char *name)
{
    for (size_t i = 0; i < web_assets_count; i++)
        if (strcmp(web_assets[i].name, name) == 0)
            return &web_assets[i];
    return NULL;
}

static void send_asset(httpd_req_t *req, const web_asset_t *a)
{
    httpd_reply_header(req, "X-Content-Type-Options", "nosniff");
    httpd_reply_header(req, "Content-Security-Policy",
                       "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'");
    httpd_reply_static(req, 200, a->content_type, a->data, a->size,
                       strcmp(a->name, "index.html") == 0 ? "no-cache" : "public, max-age=3600",
                       a->etag);
}

void web_h_index(httpd_req_t *req, void *user)
{
    (void)user;
    const web_asset_t *a = find("index.html");
    if (!a) {
        httpd_reply_error(req, 404, "This build has no web UI");
        return;
    }
    send_asset(req, a);
}

void web_h_asset(httpd_req_t *req, void *user)
{
    (void)user;
    const char *path = httpd_req_param(req, "path");
    const web_asset_t *a = path ? find(path) : NULL;
    if (!a) {
        httpd_reply_error(req, 404, "No such file");
        return;
    }
    send_asset(req, a);
}
