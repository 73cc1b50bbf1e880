/* documents.h — the /documents endpoints: upload (streamed to disk),
 * extraction in a sandboxed process, listing, preview, deletion, sharing,
 * and caching a document's prefix in the engine.
 *
 * Accounts (auth.mode = accounts). Every handler acts for its caller
 * (auth_scope): lists show the caller's own documents and the shared
 * ones (an admin's, every document); any other document id answers 404
 * "Document not found", the same answer as an unknown id (never 403: an
 * id must not tell that it exists). A shared document is read-only to
 * users other than its owner: they read, search, cache and chat with it;
 * deleting it is 403 (they can see it, so that says nothing new). An
 * upload becomes the caller's document, within limits.storage_mb (413).
 * Collections have no owner in the store: a collection is visible to a
 * caller who may see every document still in it (an admin: any), else
 * it is the same 404 as an unknown collection id; one whose documents
 * are all gone is visible to admins only. In local mode (auth_scope
 * NULL) everything is as before accounts.
 *
 * Documents in answers carry "owner" (the owning user's id, or null) and
 * "shared" (bool).
 */
#ifndef KVCHAT_APP_DOCUMENTS_H
#define KVCHAT_APP_DOCUMENTS_H

#include "app/app.h"
#include "common/httpd.h"

extern const httpd_upload_t documents_upload_callbacks;
/* For POST /documents/upload_collection: files in fields 'files'. */
extern const httpd_upload_t documents_collection_callbacks;

/* Remove the temporary files of uploads that never finished (data/uploads/
 * .upload-*, left by a kvchat that was killed or crashed) once nothing has
 * written to them for an hour: replicas may share the uploads directory,
 * and an upload under way writes at least every minute. Called at
 * start-up. Returns how many went; failures are logged. */
int documents_remove_stale(const app_t *a);

void documents_h_upload(httpd_req_t *req, void *user);
void documents_h_upload_and_cache(httpd_req_t *req, void *user);
/* POST /documents/upload_collection: several files (fields 'files') and a
 * 'name': each stored as a document (as an upload), together a collection
 * a chat can name (collection_id). */
void documents_h_upload_collection(httpd_req_t *req, void *user);
/* GET /documents/collections/{collection_id}. */
void documents_h_collection(httpd_req_t *req, void *user);
/* Whether the caller of scope (NULL: local mode) may use collection col
 * (see the top of this file): STORE_OK, STORE_ENOTFOUND, or a store error. */
int documents_collection_visible(app_t *a, const store_scope_t *scope,
                                 const store_collection_t *col);
void documents_h_list(httpd_req_t *req, void *user);
/* GET /documents/limits: the upload limit and the accepted file types. */
void documents_h_limits(httpd_req_t *req, void *user);
void documents_h_get(httpd_req_t *req, void *user);
/* DELETE /documents/{doc_id}: the caller's own (an admin's: any); the
 * file goes with the last document that uses it. Audited
 * ("document.delete"). */
void documents_h_delete(httpd_req_t *req, void *user);
/* POST /documents/{doc_id}/share {"everyone": true|false}: share a
 * document with every user, or make it its owner's alone again (which
 * also takes it out of other users' sessions). Admins only (403); 400 in
 * local mode, which has no users to share with. The document's cache
 * entries, made under its old cache salt, are deleted and its cache state
 * reset. Audited ("document.share" / "document.unshare"). Answers the
 * document. */
void documents_h_share(httpd_req_t *req, void *user);
void documents_h_cache(httpd_req_t *req, void *user);
void documents_h_cache_status(httpd_req_t *req, void *user);
/* GET /documents/{doc_id}/chunks?offset=&limit=: a page of the document's
 * chunks (metadata, with the parts of the current plan holding each). */
void documents_h_chunks(httpd_req_t *req, void *user);
/* GET /documents/{doc_id}/chunks/{chunk_id}: one chunk with its content. */
void documents_h_chunk(httpd_req_t *req, void *user);
/* GET /documents/{doc_id}/search?q=&limit=: the chunks that best match q
 * (as routing weighs them), and the part a question with these words
 * would be answered from. */
void documents_h_search(httpd_req_t *req, void *user);
/* GET /documents/{doc_id}/groups: the parts of the current plan and their
 * cache states. */
void documents_h_groups(httpd_req_t *req, void *user);

/* The system message for a document, exactly as chat renders it (so the
 * cached prefix matches): the configured template with {document} and
 * {filename} replaced. Returns malloc'd text (caller frees), NULL on ENOMEM. */
char *documents_system_message(const app_t *a, const char *filename, const char *text);

/* The SHA-256 of data[0..n) as 64 lowercase hex digits and a NUL into
 * hex[65]. */
void documents_sha256_hex(const void *data, size_t n, char hex[65]);

/* A document as the API shows it. */
json_t *documents_json(const store_doc_t *d);

/* The Allowed-types sentence of the 400 answer. */
extern const char documents_allowed_types[];

#endif
