/* sessions.h — the /session endpoints: session records, history, and the
 * chat turn (plain and streamed). */
#ifndef KVCHAT_APP_SESSIONS_H
#define KVCHAT_APP_SESSIONS_H

#include "app/app.h"
#include "common/httpd.h"

void sessions_h_create(httpd_req_t *req, void *user);
void sessions_h_list(httpd_req_t *req, void *user);
void sessions_h_get(httpd_req_t *req, void *user);
void sessions_h_delete(httpd_req_t *req, void *user);
void sessions_h_messages(httpd_req_t *req, void *user);
void sessions_h_post_message(httpd_req_t *req, void *user);
void sessions_h_stream(httpd_req_t *req, void *user);
/* POST /session/{id}/draft: a turn being typed, prefilled ahead (chat_draft). */
void sessions_h_draft(httpd_req_t *req, void *user);

#endif
