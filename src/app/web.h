/* web.h — the web UI: files embedded in the kvchat binary at build time. */
#ifndef KVCHAT_APP_WEB_H
#define KVCHAT_APP_WEB_H

#include "common/httpd.h"

void web_h_index(httpd_req_t *req, void *user);
void web_h_asset(httpd_req_t *req, void *user);

#endif
