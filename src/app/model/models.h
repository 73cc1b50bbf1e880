/* models.h — the /model and /logs endpoints. */
#ifndef KVCHAT_APP_MODELS_H
#define KVCHAT_APP_MODELS_H

#include "app/app.h"
#include "common/httpd.h"

void models_h_up_reset(httpd_req_t *req, void *user);
void models_h_up_resume(httpd_req_t *req, void *user);
void models_h_down(httpd_req_t *req, void *user);
void models_h_status(httpd_req_t *req, void *user);
void models_h_list(httpd_req_t *req, void *user);
void models_h_switch(httpd_req_t *req, void *user);

/* Follow a model switch made by another replica on this database (the
 * shared setting a switch records): switch here too when it is newer than
 * the last one seen and names another model. Call every few seconds. */
void models_follow(app_t *a);

void logs_h_current(httpd_req_t *req, void *user);
void logs_h_recent(httpd_req_t *req, void *user);
void logs_h_server(httpd_req_t *req, void *user);
void logs_h_sessions(httpd_req_t *req, void *user);

#endif
