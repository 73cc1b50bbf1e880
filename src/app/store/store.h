/* store.h — the app server's persistent state: documents, sessions, messages,
 * and the accounts that own them (users, login sessions, API tokens, audit).
 *
 * This is the interface the rest of kvchat uses for everything it keeps
 * between restarts. The database behind it is chosen by store_open()'s
 * argument and reached through a table of backend functions (see "Backend
 * interface" at the end), so nothing here names a database library:
 *   "sqlite:/path/kvchat.db", "sqlite:///path/kvchat.db" or a plain path
 *   → the embedded SQLite backend (store_sqlite.c), the default;
 *   "postgres://..." / "postgresql://..." → the PostgreSQL backend
 *   (store_pg.c), for several processes sharing one database.
 *
 * Records.
 *  - A document is one uploaded file: its metadata, the sha256 of its bytes,
 *    its extracted text and the state of its KV cache in the engine. It may
 *    have an owner (a user; none in local mode) and may be shared with
 *    everyone. Identical content is one document per owner: uploading the
 *    same bytes again gives back the owner's existing document. Two owners
 *    with the same content have a document each (their own ids, names and
 *    cache states) that use ONE uploaded file: the file is kept while any
 *    document uses it (see store_doc_delete_scoped's file_unused).
 *    The extracted text is kept in the database, in a table of its own
 *    (read only by store_doc_text()), not in a file: it is then written
 *    and deleted atomically with its record (no orphan or missing text
 *    file after a crash), shared by every replica of a shared database,
 *    and indexed for full-text search (store_doc_search) without a second
 *    copy. A text is kept in pieces of at most
 *    STORE_TEXT_CHUNK bytes, cut between words where it can be, each
 *    indexed on its own: storing (store_doc_insert_from), indexing and
 *    reading (store_doc_text_foreach) a text of any size up to
 *    STORE_TEXT_MAX then take memory bounded by the piece size, not by the
 *    text.
 *    The uploaded file itself stays in data/uploads/ under stored_name; the
 *    store never touches files.
 *  - A session is one conversation of one owner (or of nobody, in local
 *    mode). Its id may be chosen by the client (the API creates the session
 *    on the first message, store_session_ensure) or by the store; it is
 *    unique per owner only: two users may each have a session "abc", and
 *    each reaches only their own. It may name a document (ON DELETE SET
 *    NULL: deleting the document leaves the session without one).
 *  - A message belongs to one session (deleting the session deletes its
 *    messages) and is ordered by its id, which only grows.
 *  - Accounts (see "Accounts" below): users, their login sessions (called
 *    logins here, so as not to be confused with chat sessions) and API
 *    tokens, and an audit log.
 *
 * Ownership and scopes. Functions named *_scoped take the acting user as a
 * store_scope_t: lists return what that user may see, and a record the user
 * may not see gives STORE_ENOTFOUND exactly as an unknown id does (an id of
 * another user's record reveals nothing). scope NULL is local mode, which is
 * also what every function without a scope does (the behaviour from before
 * accounts existed): every document, and the sessions that have no owner
 * (all of them until accounts exist). A user's scope sees:
 *   documents: their own (read and write) and the shared ones (read only);
 *              an admin every document (read and write);
 *   sessions and their messages: their own only, admins included (session
 *              ids are the clients' and mean something only within their
 *              owner).
 * New documents and sessions get the scope's user as owner (none in local
 * mode). The functions that take a document id and no scope (text, marks,
 * chunks, parts, cache state) act on any document: a request path checks
 * the document with store_doc_get_scoped() first.
 *
 * Ids. Document, session, user and token ids are strings of
 * 1..STORE_ID_MAX bytes of printable ASCII other than '/', '\\', '?', '#',
 * '%' and space (they appear in URLs); the store makes new ones as
 * lowercase UUID v4 text (store_id_new). Message and audit entry ids are
 * positive integers. Logins and tokens are found by the SHA-256 (64 hex
 * digits) of a secret only the client holds: the store never sees secrets
 * or passwords.
 *
 * Times are milliseconds since the Unix epoch (UTC), read from one clock
 * (store_now_ms); store_format_time() renders them as ISO 8601 for the API.
 *
 * Text. Every string given to the store must be valid UTF-8 without NUL
 * bytes (STORE_EINVAL otherwise), so every string read back is too and can
 * go into JSON as it is.
 *
 * Results and ownership. Records come back in caller-owned structs
 * (store_doc_t, store_session_t, store_msg_t) and lists (store_*_list_t)
 * whose strings are heap copies owned by the struct: release them with the
 * matching *_cleanup(), which accepts NULL and an already cleaned struct. A
 * function that fills an out-struct initializes it first, so after a
 * failure it holds no data and cleanup is harmless (and unnecessary).
 * Input pointers are only read during the call; the store keeps none.
 *
 * Errors. Every int-returning function returns STORE_OK (0) or a negative
 * STORE_E* code; store_strerror() names it. Database library codes are
 * translated once, in the backend. Unexpected database errors (I/O,
 * corruption) are also logged with the library's own message.
 *
 * Threading. A store_t may be used from any number of threads at once;
 * each call is one atomic unit (one transaction). See store_sqlite.h for how
 * the SQLite backend does it.
 */
#ifndef KVCHAT_APP_STORE_H
#define KVCHAT_APP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    STORE_OK = 0,
    STORE_ENOMEM = -1,
    STORE_EINVAL = -2,       /* bad argument: NULL, bad id, invalid UTF-8, a
                              * value a constraint refuses (bad JSON meta...) */
    STORE_ENOTFOUND = -3,    /* no such record (or a referenced one, such as
                              * the session of a new message, is missing) */
    STORE_ECONFLICT = -4,    /* a record with this id / stored_name / user
                              * name exists, or the change would leave no
                              * enabled admin */
    STORE_EIO = -5,          /* the database could not be read or written */
    STORE_ECORRUPT = -6,     /* the database file is damaged or not a database */
    STORE_EBUSY = -7,        /* the database stayed locked by another process */
    STORE_ETOOBIG = -8,      /* a text or value over its STORE_*_MAX limit */
    STORE_ESCHEMA = -9,      /* database from a newer kvchat, or not kvchat's */
    STORE_EUNSUPPORTED = -10 /* no backend for this URL scheme / operation */
};

/* Static English description of a STORE_* code ("unknown error" for others). */
const char *store_strerror(int rc);

/* Limits, in bytes. Longer input is refused with STORE_ETOOBIG, except a
 * cache error message, which is shortened (see store_doc_set_cache). */
#define STORE_ID_MAX 128                       /* document and session ids */
#define STORE_NAME_MAX 1024                    /* filename, stored_name, title */
#define STORE_TEXT_MAX (64u * 1024 * 1024)     /* a document's extracted text */
#define STORE_CONTENT_MAX (16u * 1024 * 1024)  /* a message's content */
#define STORE_META_MAX (1024u * 1024)          /* a message's meta JSON */
#define STORE_CACHE_ERROR_MAX 1024             /* cache_error, after shortening */
#define STORE_SHORT_MAX 64                     /* cache_entry_id, cache_tier */
#define STORE_TEXT_CHUNK (64u * 1024)          /* a piece of a text, as stored */
#define STORE_USER_NAME_MAX 64                 /* a user name (see store_user_name_valid) */
#define STORE_PASSWORD_HASH_MAX 512            /* a user's password hash, as encoded */
#define STORE_ADDR_MAX 64                      /* a client address */
#define STORE_USER_AGENT_MAX 256               /* a user agent, after shortening */
#define STORE_TOKEN_NAME_MAX 128               /* an API token's name */
#define STORE_ACTION_MAX 64                    /* an audit entry's action */
#define STORE_DETAIL_MAX (64u * 1024)          /* an audit entry's detail JSON */

typedef struct store store_t;

/* Who is acting, for the *_scoped functions (see "Ownership and scopes"):
 * user_id is a valid id (the user need not exist: a scope of an unknown
 * user sees nothing of anyone's and owns nothing); admin widens what it
 * sees of documents to all of them. The store does not check that admin
 * matches the user's role: the caller builds the scope from the user it
 * authenticated (store_login_lookup / store_token_lookup). Only read
 * during a call. A NULL scope pointer is local mode. */
typedef struct {
    const char *user_id;
    bool admin;
} store_scope_t;

/* ---- Opening ------------------------------------------------------------ */

/* Open the database named by `url_or_path` (see the top of this file). The
 * SQLite backend creates the file if missing (its directory must exist),
 * creates or migrates the schema, and refuses a file that is not a SQLite
 * database or is damaged (STORE_ECORRUPT), belongs to another application
 * or to a newer kvchat (STORE_ESCHEMA). "sqlite::memory:" opens a private
 * in-memory database (for tests of other modules).
 * On success *out owns the store (store_close()); on failure *out is NULL.
 * The string is copied. */
int store_open(const char *url_or_path, store_t **out);

/* Close the store and free it. No call may be running on it. Accepts NULL. */
void store_close(store_t *s);

/* Name of the backend in use ("sqlite"); static string. */
const char *store_backend_name(const store_t *s);

/* Verify the whole database: every page and index, and that the full-text
 * index matches the texts. Damage in pages no query has read yet is found
 * only this way. It reads everything (about a second per GB): for a
 * maintenance command or an admin endpoint, not for every request.
 * Returns STORE_OK, STORE_ECORRUPT (the problems found are logged), or
 * another error. */
int store_check(store_t *s);

/* ---- Time and ids --------------------------------------------------------- */

/* Current wall-clock time in ms since the epoch. */
int64_t store_now_ms(void);

/* Bytes needed by store_format_time(): "2026-11-25T04:15:10.373Z" + NUL. */
#define STORE_TIME_BUFSZ 25

/* Write `ms` as ISO 8601 UTC with milliseconds into buf (caller-owned, at
 * least STORE_TIME_BUFSZ bytes). Returns STORE_OK, or STORE_EINVAL for a
 * time outside years 1970..9999 (buf then holds ""). */
int store_format_time(int64_t ms, char *buf);

/* Bytes of a UUID in text form plus NUL. */
#define STORE_UUID_BUFSZ 37

/* Write a new random UUID v4 ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx",
 * lowercase) into buf (caller-owned, STORE_UUID_BUFSZ bytes). Callers that
 * need a document's id before inserting it (to name its upload file) use
 * this. Returns STORE_OK or STORE_EIO (no randomness available). */
int store_id_new(char *buf);

/* Whether `id` is acceptable as a document or session id (see "Ids"). */
bool store_id_valid(const char *id);

/* ---- Documents ------------------------------------------------------------ */

typedef enum {
    STORE_CACHE_NONE = 0,    /* not cached (or the engine was reset) */
    STORE_CACHE_CACHING = 1, /* a prefill is running */
    STORE_CACHE_CACHED = 2,  /* the engine holds the document's prefix */
    STORE_CACHE_FAILED = 3,  /* the last prefill failed (see error) */
} store_cache_status_t;

/* "none" | "caching" | "cached" | "failed"; "" for other values. Static. */
const char *store_cache_status_name(store_cache_status_t st);
/* The reverse; returns STORE_OK or STORE_EINVAL (*out untouched). */
int store_cache_status_parse(const char *name, store_cache_status_t *out);

/* A document's KV-cache state. Numbers are -1 when unknown (NULL in the
 * database); strings are NULL when unknown. */
typedef struct {
    store_cache_status_t status;
    char *entry_id;     /* the engine's cache entry id */
    int64_t tokens;     /* tokens in the cached prefix */
    int64_t bytes;      /* size of the KV state */
    char *tier;         /* where the engine keeps it: "slot"|"ram"|"disk"|... */
    double ms;          /* time the prefill (or restore) took, ms */
    int64_t cached_at;  /* when it became cached, epoch ms */
    char *error;        /* why it failed (status FAILED) */
} store_cache_t;

/* The content types documents may have (the extractor's detected types). */
bool store_content_type_valid(const char *content_type);

typedef struct {
    char *id;            /* UUID text, or any valid id the caller chose */
    char *filename;      /* the client's file name; for display only */
    char *stored_name;   /* generated file name under data/uploads/ (no '/');
                          * one content, one file: the documents of several
                          * owners with the same sha256 share it */
    char *content_type;  /* txt | md | pdf | docx | odt | html | epub | pptx | odp |
                          * xlsx | ods | csv | png | jpeg | tiff | webp */
    int64_t file_size;   /* bytes of the uploaded file */
    char *sha256;        /* 64 lowercase hex digits of the file's bytes */
    int64_t uploaded_at; /* epoch ms */
    int64_t n_chars;     /* Unicode code points of the extracted text */
    int64_t n_tokens;    /* tokens of the text, -1 until known */
    int64_t n_pages;     /* highest page number of its marks; 0 when none */
    int64_t n_chunks;    /* its chunks; 0 until chunked */
    store_cache_t cache;
    char *owner_id;      /* the owning user's id; NULL: nobody's (local mode) */
    bool shared;         /* readable by every user (written by its owner and
                          * admins only) */
    char *ocr_pages;     /* pages whose text was recognised from images (OCR),
                          * increasing, comma-separated ("1,2,5"); NULL: none */
    int ocr_confidence;  /* their mean OCR confidence 0..100; -1: no OCR */
} store_doc_t;

/* Set every field to "empty" (NULL strings, -1 numbers, status NONE,
 * not shared). */
void store_doc_init(store_doc_t *d);
/* Free the strings and re-initialize. Accepts NULL. */
void store_doc_cleanup(store_doc_t *d);

typedef struct {
    store_doc_t *items;  /* owned; n records */
    size_t n;
} store_doc_list_t;

/* Free every record and the array; the list becomes empty. Accepts NULL. */
void store_doc_list_cleanup(store_doc_list_t *l);

/* Insert a document with its extracted text text[0..text_len) (UTF-8, no
 * NUL, at most STORE_TEXT_MAX bytes; copied), in local mode (no owner).
 * The same as store_doc_insert_scoped(s, NULL, ...). `doc` (start from
 * store_doc_init()) is only read, never freed or kept; from it the store
 * takes: id (NULL → a new UUID), filename, stored_name (no '/', not "." or
 * ".."), content_type, file_size (>= 0), sha256 (64 hex digits, either
 * case), uploaded_at (<= 0 → now), n_tokens (-1 if unknown), shared. It
 * computes n_chars from the text; the cache state starts as
 * STORE_CACHE_NONE; the other fields of `doc` (owner_id included) are
 * ignored.
 * If a document with the same sha256 exists (in local mode: any document;
 * see store_doc_insert_scoped), nothing is written: *out
 * receives the EXISTING document and *existed is true (the caller then
 * removes the upload file it wrote). Otherwise *out receives the new record
 * and *existed is false. Checking and inserting are one transaction, so two
 * concurrent uploads of the same bytes give one document.
 * Returns STORE_OK; STORE_EINVAL for a missing or malformed field;
 * STORE_ECONFLICT when the id is taken, or the stored_name is the file of
 * documents with another sha256; STORE_ETOOBIG; or a database error.
 * Nothing is written on failure. out is caller-owned (store_doc_cleanup);
 * existed may be NULL. */
int store_doc_insert(store_t *s, const store_doc_t *doc, const char *text, size_t text_len,
                     store_doc_t *out, bool *existed);

/* As store_doc_insert(), for the acting user: the new document's owner is
 * scope->user_id (none when scope is NULL). The existing document that
 * makes *existed true is the user's own with this sha256 (in local mode:
 * any document with it). When only other owners have this content, a new
 * document is written for this user, but it uses their file: out->
 * stored_name is then theirs, not doc->stored_name, and the caller removes
 * the file it wrote (compare the two names). So one content is one file,
 * however many users upload it. */
int store_doc_insert_scoped(store_t *s, const store_scope_t *scope, const store_doc_t *doc,
                            const char *text, size_t text_len, store_doc_t *out, bool *existed);

/* A document's text given in pieces, for store_doc_insert_from(): read()
 * puts up to cap bytes of it into buf and their count into *got (0 at the
 * end; pieces may end inside a character) and returns STORE_OK, or a
 * STORE_E* code that ends the insert with that code. */
typedef struct {
    int (*read)(void *ud, char *buf, size_t cap, size_t *got);
    void *ud;
} store_text_reader_t;

/* As store_doc_insert(), with the text read from `text` piece by piece
 * while it is stored (in the same transaction), so that memory does not
 * grow with the text. The text is checked as it comes (UTF-8, no NUL, at
 * most STORE_TEXT_MAX bytes): a failure anywhere writes nothing. The
 * reader is not called at all when a document with the same sha256 exists.
 * Same returns as store_doc_insert(), plus the reader's own codes. */
int store_doc_insert_from(store_t *s, const store_doc_t *doc, const store_text_reader_t *text,
                          store_doc_t *out, bool *existed);

/* store_doc_insert_from() for the acting user (as store_doc_insert_scoped). */
int store_doc_insert_from_scoped(store_t *s, const store_scope_t *scope, const store_doc_t *doc,
                                 const store_text_reader_t *text, store_doc_t *out,
                                 bool *existed);

/* Give the acting user a document of content `sha256` (64 hex digits,
 * either case) that some document (anyone's) already has, without
 * extracting it again: a new record (new id, `filename` as given, uploaded
 * now, owner scope->user_id, not shared) that uses the same file
 * (stored_name, content_type, file_size) with a copy of its text (indexed),
 * marks, chunks and token counts, and its plans of parts with their cache
 * states reset (the engine's cache entries are per document). For an
 * upload whose bytes the caller has hashed: having the bytes is what
 * entitles the user to them. If the user already has a document with this
 * content, nothing is written and *existed is true (*out: that document).
 * In local mode (scope NULL) any document with the content is the existing
 * one. One transaction. *out is caller-owned; existed may be NULL.
 * Returns STORE_OK; STORE_ENOTFOUND when no document has this content (the
 * caller extracts and inserts it); STORE_EINVAL; or a database error. */
int store_doc_copy_content(store_t *s, const store_scope_t *scope, const char *sha256,
                           const char *filename, store_doc_t *out, bool *existed);

/* Fetch document `id` into *out (caller-owned). STORE_ENOTFOUND if none. */
int store_doc_get(store_t *s, const char *id, store_doc_t *out);

/* Fetch document `id` if the acting user may see it (their own, a shared
 * one, or any for an admin or local mode) into *out (caller-owned).
 * STORE_ENOTFOUND if there is none or it is another user's private one. */
int store_doc_get_scoped(store_t *s, const store_scope_t *scope, const char *id,
                         store_doc_t *out);

/* Fetch the document whose file has this sha256 (64 hex digits, either
 * case) into *out (caller-owned): in local mode any (the first stored);
 * the same as store_doc_find_sha256_scoped(s, NULL, ...).
 * STORE_ENOTFOUND if none. */
int store_doc_find_sha256(store_t *s, const char *sha256, store_doc_t *out);

/* The acting user's OWN document with this sha256 (for an upload's
 * "already uploaded"; shared documents of others and, for an admin, other
 * users' documents do not count: see store_doc_copy_content) into *out
 * (caller-owned). STORE_ENOTFOUND if none. */
int store_doc_find_sha256_scoped(store_t *s, const store_scope_t *scope, const char *sha256,
                                 store_doc_t *out);

/* The extracted text of document `id`: *text receives a NUL-terminated heap
 * copy (caller frees with free()) and *len its length in bytes (len may be
 * NULL). STORE_ENOTFOUND if there is no such document; on failure *text is
 * NULL. */
int store_doc_text(store_t *s, const char *id, char **text, size_t *len);

/* Called by store_doc_text_foreach() with each piece of a text, in order:
 * len bytes of valid UTF-8 without NUL (not NUL-terminated; valid only
 * during the call). Returns 0 to go on, or a positive value to stop. */
typedef int (*store_text_fn)(void *ud, const char *piece, size_t len);

/* Hand the text of document `id` to fn piece by piece (each at most
 * STORE_TEXT_CHUNK bytes for texts stored by this version; an empty text
 * gives no call), all from one consistent snapshot. fn runs while a
 * database connection is held: it must not call the store, and should not
 * take long. Returns STORE_OK after the last piece, fn's positive value if
 * it stopped, STORE_ENOTFOUND if there is no such document, or a database
 * error. */
int store_doc_text_foreach(store_t *s, const char *id, store_text_fn fn, void *ud);

/* Every document, newest upload first (ties: last inserted first), into
 * *out (caller-owned, store_doc_list_cleanup). */
int store_doc_list(store_t *s, store_doc_list_t *out);

/* The documents the acting user may see (their own and the shared ones;
 * all for an admin or local mode), in store_doc_list() order, into *out
 * (caller-owned). */
int store_doc_list_scoped(store_t *s, const store_scope_t *scope, store_doc_list_t *out);

/* Delete document `id` with its text, in local mode (any document). The
 * same as store_doc_delete_scoped(s, NULL, id, out, NULL): a caller that
 * removes the upload file must use that one and look at file_unused, since
 * another owner's document may use the same file. */
int store_doc_delete(store_t *s, const char *id, store_doc_t *out);

/* Delete document `id` with its text if the acting user may write it (their
 * own; any for an admin or local mode; a shared document of another user is
 * STORE_ENOTFOUND like an unknown id). Sessions that named it keep going
 * without a document. If out is not NULL it receives the deleted record
 * (caller-owned), so the caller can remove the engine's cache entry and
 * the file. *file_unused (may be NULL) is true when no document uses the
 * file out->stored_name any more: only then may the caller remove it; it
 * is false when another document (another owner's copy of the content)
 * still does. Decided in the delete's transaction, so a concurrent upload
 * of the same content either shares the file before (false) or does not
 * find it after (it writes its own). STORE_ENOTFOUND if there was no such
 * document. */
int store_doc_delete_scoped(store_t *s, const store_scope_t *scope, const char *id,
                            store_doc_t *out, bool *file_unused);

/* Share (true) or unshare (false) document `id`, if the acting user may
 * write it (see store_doc_delete_scoped). Unsharing also takes the document
 * out of every session whose owner is not the document's owner (their
 * session sets and their one document), so nobody keeps talking with it
 * through a session made while it was shared. STORE_ENOTFOUND as for a
 * delete. */
int store_doc_set_shared(store_t *s, const store_scope_t *scope, const char *id, bool shared);

/* How many documents use the uploaded file `stored_name` (0: none; the
 * file may go) into *n. For maintenance (files left behind by a crash);
 * deletes report it themselves. */
int store_file_refs(store_t *s, const char *stored_name, int64_t *n);

/* Record the token count of document `id` (>= 0; -1 makes it unknown
 * again). STORE_ENOTFOUND if there is no such document. */
int store_doc_set_tokens(store_t *s, const char *id, int64_t n_tokens);

/* Replace the whole cache state of document `id` with *cache (read only):
 * status and every related field in one update, so no stale entry id,
 * timing or error survives a state change. For STORE_CACHE_CACHED a
 * cached_at <= 0 becomes now; for other states cached_at is stored as
 * given (-1 = NULL). An error message longer than STORE_CACHE_ERROR_MAX is
 * cut there (at a character boundary) and ends with "..."; it is
 * diagnostic text. STORE_ENOTFOUND if there is no such document;
 * STORE_ETOOBIG if entry_id or tier exceed STORE_SHORT_MAX. */
int store_doc_set_cache(store_t *s, const char *id, const store_cache_t *cache);

/* Set every document's (and every part's) cache state to STORE_CACHE_NONE
 * with all related fields unknown (after the engine was restarted with --reset, or at start
 * for documents left 'caching' by a crash — pass only_caching = true for
 * that). If n_changed is not NULL it receives the number of documents
 * whose state changed. */
int store_doc_reset_cache(store_t *s, bool only_caching, int64_t *n_changed);

/* Full-text search over the documents' texts: the documents matching
 * `query` (FTS5 query syntax for SQLite: words, "phrases", AND/OR/NOT,
 * prefix*), best match first, at most `limit` (1..1000), into *out
 * (caller-owned). STORE_EINVAL for a malformed query; STORE_EUNSUPPORTED if
 * the backend has no text index. */
int store_doc_search(store_t *s, const char *query, size_t limit, store_doc_list_t *out);

/* store_doc_search() over the documents the acting user may see. */
int store_doc_search_scoped(store_t *s, const store_scope_t *scope, const char *query,
                            size_t limit, store_doc_list_t *out);

/* ---- Long documents: structure, chunks, parts ---------------------------- *
 *
 * A document's structure is the list of its marks: where pages and
 * headings start (byte offsets into its text, as kvchat-extract reported
 * them). Its chunks cut the text at paragraph and heading boundaries (the
 * chunker's output); each is indexed for full-text search by an *index
 * text* the caller makes (docs/textindex.h: CJK segmented, Traditional
 * Chinese folded to Simplified), searched with a MATCH expression the
 * caller makes too, ranked by BM25. Its parts (the prototype calls them
 * groups) are runs of consecutive chunks that fit a model's context, one
 * plan per plan key (the caller's name for a model, its context and the
 * settings that shaped the plan), each with a cache state of its own.
 * Marks, chunks and parts go with their document (ON DELETE CASCADE). The
 * storage pieces of a text (STORE_TEXT_CHUNK) are unrelated to chunks. */

#define STORE_MARKS_MAX 1000000        /* marks of one document */
#define STORE_LABEL_MAX 256            /* a page label or heading title */
#define STORE_HEADING_MAX 1024         /* a chunk's heading path */
#define STORE_CHUNK_MAX (1024u * 1024) /* a chunk's content, and its index text */
#define STORE_KEY_MAX 128              /* a plan key or tokens key */
#define STORE_PARTS_MAX 100000         /* parts of one plan */

typedef enum {
    STORE_MARK_PAGE = 1,      /* number: physical page (>= 1); label: printed label or "" */
    STORE_MARK_HEADING = 2,   /* number: level 1..6; label: the title */
} store_mark_kind_t;

typedef struct {
    store_mark_kind_t kind;
    int64_t offset;           /* byte offset in the text (>= 0) */
    int number;
    char *label;              /* never NULL in records read back */
} store_mark_t;

typedef struct {
    store_mark_t *items;      /* owned; n records, by offset */
    size_t n;
} store_mark_list_t;

void store_mark_list_cleanup(store_mark_list_t *l);

/* Replace the marks of document `id` with marks[0..n) (n <= STORE_MARKS_MAX,
 * offsets non-decreasing, labels UTF-8 of at most STORE_LABEL_MAX bytes,
 * NULL taken as ""), in one transaction. STORE_ENOTFOUND if there is no
 * such document; STORE_EINVAL for a bad mark (nothing written). */
int store_doc_set_marks(store_t *s, const char *id, const store_mark_t *marks, size_t n);

/* Longest OCR page list (store_doc_set_ocr). */
#define STORE_OCR_PAGES_MAX 16384

/* Record which pages of document `id` were recognised from images (OCR):
 * pages as in store_doc_t.ocr_pages (digits and commas, at most
 * STORE_OCR_PAGES_MAX bytes; NULL or "" with confidence -1: no OCR) and
 * their mean confidence 0..100. STORE_ENOTFOUND if there is no such
 * document; STORE_EINVAL for a malformed list or confidence. */
int store_doc_set_ocr(store_t *s, const char *id, const char *pages, int confidence);

/* The marks of document `id`, by offset, into *out (caller-owned).
 * STORE_ENOTFOUND if there is no such document (none: an empty list). */
int store_doc_marks(store_t *s, const char *id, store_mark_list_t *out);

typedef struct {
    char *doc_id;
    int64_t seq;              /* 0, 1, ... in the document (the API's chunk_id) */
    int64_t start, end;       /* byte range of the text */
    int64_t n_chars;          /* code points */
    int64_t est_tokens;       /* the chunker's estimate */
    int64_t tokens;           /* counted by tokens_key's tokenizer; -1 unknown */
    char *tokens_key;         /* whose tokenizer counted them; NULL unknown */
    int64_t page_first, page_last;   /* physical pages; 0 when the text has none */
    char *label_first, *label_last;  /* their printed labels, or "" */
    char *heading;            /* heading path at its start ("A > B"), or "" */
    char *content;            /* the chunk's text; NULL unless asked for */
    double score;             /* store_chunk_search: the match's BM25 score
                               * (higher is better); 0 otherwise */
} store_chunk_t;

void store_chunk_init(store_chunk_t *c);
/* Free the strings and re-initialize. Accepts NULL. */
void store_chunk_cleanup(store_chunk_t *c);

typedef struct {
    store_chunk_t *items;     /* owned; n records */
    size_t n;
} store_chunk_list_t;

void store_chunk_list_cleanup(store_chunk_list_t *l);

/* The chunks of a document given one at a time, for store_doc_set_chunks():
 * next() points *chunk at the next one (its fields borrowed, valid until
 * the following call; seq, doc_id, tokens, tokens_key and score are
 * ignored: chunks are numbered in the order given) and *index_text at its
 * index text, and returns STORE_OK; *chunk = NULL at the end. A STORE_E*
 * code ends the write with that code. */
typedef struct {
    int (*next)(void *ud, const store_chunk_t **chunk, const char **index_text);
    void *ud;
} store_chunk_reader_t;

/* Replace the chunks of document `id` (and their index) with those `r`
 * gives, in one transaction, so a reader sees all the old chunks or all
 * the new ones; every plan of parts of the document goes too (it named the
 * old chunks). Their full-text index may follow in transactions of its own
 * (SQLite: a few hundred chunks each, so other writers wait for one batch,
 * not a book's index): a search while the call runs may miss some of the
 * new chunks; when it returns, all are indexed. Memory stays bounded by
 * one chunk. *n_out (may be NULL)
 * receives the count. Each chunk: content 1..STORE_CHUNK_MAX bytes of
 * UTF-8, index text at most STORE_CHUNK_MAX, 0 <= start <= end, labels at
 * most STORE_LABEL_MAX, heading at most STORE_HEADING_MAX; else
 * STORE_EINVAL / STORE_ETOOBIG and nothing is written. STORE_ENOTFOUND if
 * there is no such document. */
int store_doc_set_chunks(store_t *s, const char *id, const store_chunk_reader_t *r,
                         int64_t *n_out);

/* Record tokens[i] as the token count of chunk i (i < n; each >= 0) of
 * document `id`, counted by the tokenizer named `key`. Chunks past n keep
 * theirs. STORE_ENOTFOUND if there is no such document. */
int store_chunks_set_tokens(store_t *s, const char *id, const char *key, const int64_t *tokens,
                            size_t n);

/* Chunks first, first+1, ... of document `id` (at most `limit`, 1..10000),
 * with their content when `content`, into *out (caller-owned). *total
 * (may be NULL) receives the document's number of chunks.
 * STORE_ENOTFOUND if there is no such document. */
int store_chunk_list(store_t *s, const char *id, int64_t first, size_t limit, bool content,
                     store_chunk_list_t *out, int64_t *total);

/* Chunk `seq` of document `id`, with its content, into *out (caller-
 * owned). STORE_ENOTFOUND if there is no such document or chunk. */
int store_chunk_get(store_t *s, const char *id, int64_t seq, store_chunk_t *out);

/* Full-text search over the chunks of the documents doc_ids[0..n_ids)
 * (1..64 ids): the chunks matching `match` (an FTS5 expression, as
 * textindex_query() makes), best first (score set), at most `limit`
 * (1..1000), without content, into *out (caller-owned). STORE_EINVAL for a
 * malformed expression; STORE_EUNSUPPORTED if the backend has no index. */
int store_chunk_search(store_t *s, const char *const *doc_ids, size_t n_ids, const char *match,
                       size_t limit, store_chunk_list_t *out);

typedef struct {
    char *doc_id;
    char *plan_key;
    int64_t seq;              /* 0, 1, ... (the API's group_id) */
    int64_t chunk_first, chunk_last;  /* the chunks it holds, inclusive */
    int64_t tokens;           /* its rendered system message's tokens; -1 unknown */
    int64_t content_length;   /* bytes of its text */
    store_cache_t cache;      /* as for a document */
} store_part_t;

void store_part_init(store_part_t *p);
void store_part_cleanup(store_part_t *p);

typedef struct {
    store_part_t *items;      /* owned; n records, by seq */
    size_t n;
} store_part_list_t;

void store_part_list_cleanup(store_part_list_t *l);

/* Replace document `id`'s plan named `key` with parts[0..n) (n <=
 * STORE_PARTS_MAX; numbered 0..n-1 in the order given; their doc_id,
 * plan_key and seq are ignored; cache states as given), in one
 * transaction. n = 0 removes the plan. STORE_ENOTFOUND if there is no such
 * document. */
int store_parts_set(store_t *s, const char *id, const char *key, const store_part_t *parts,
                    size_t n);

/* The plan `key` of document `id`, by seq, into *out (caller-owned); an
 * empty list when there is none. STORE_ENOTFOUND if there is no such
 * document. */
int store_parts_list(store_t *s, const char *id, const char *key, store_part_list_t *out);

/* Replace the cache state of part `seq` of plan `key` of document `id`
 * (as store_doc_set_cache() does for a document). STORE_ENOTFOUND if
 * there is no such part. */
int store_part_set_cache(store_t *s, const char *id, const char *key, int64_t seq,
                         const store_cache_t *cache);

/* ---- Sessions --------------------------------------------------------------- *
 *
 * Every function here has a *_scoped form that acts in the acting user's
 * sessions (their own only, admins included); the plain form acts in local
 * mode, on the sessions without an owner (see "Ownership and scopes"). A
 * session id names a session within its owner: in another user's scope
 * the same id names that user's own session or none, so no id reaches
 * another user's session or its messages. */

typedef struct {
    char *id;                  /* the id the client knows (unique per owner) */
    int64_t created_at;        /* epoch ms */
    int64_t last_active;       /* epoch ms: creation, touch, new message */
    char *document_id;         /* NULL: no document */
    char *title;               /* NULL: untitled */
    int64_t message_count;     /* messages in the session */
    char *document_filename;   /* the document's filename; NULL when none */
    char *owner_id;            /* the owning user's id; NULL: nobody's */
} store_session_t;

void store_session_init(store_session_t *ss);
/* Free the strings and re-initialize. Accepts NULL. */
void store_session_cleanup(store_session_t *ss);

typedef struct {
    store_session_t *items;    /* owned; n records */
    size_t n;
} store_session_list_t;

void store_session_list_cleanup(store_session_list_t *l);

/* Create a session. id NULL → a new UUID; document_id and title may be
 * NULL. created_at = last_active = now. *out (may be NULL; caller-owned)
 * receives the new record. STORE_ECONFLICT if the id exists;
 * STORE_ENOTFOUND if document_id names no document; STORE_EINVAL for a
 * malformed id. */
int store_session_create(store_t *s, const char *id, const char *document_id,
                         const char *title, store_session_t *out);
/* The new session belongs to scope->user_id; document_id must name a
 * document the user may see (else STORE_ENOTFOUND); the id conflicts only
 * with the user's own sessions. */
int store_session_create_scoped(store_t *s, const store_scope_t *scope, const char *id,
                                const char *document_id, const char *title,
                                store_session_t *out);

/* Get-or-create, atomically: if session `id` exists its last_active becomes
 * now and *created is false; otherwise it is created with document_id
 * (may be NULL) and *created is true. Either way *out (may be NULL;
 * caller-owned) receives the record. Two threads ensuring the same new id
 * get one session. STORE_ENOTFOUND if a new session would name a missing
 * document. created may be NULL. */
int store_session_ensure(store_t *s, const char *id, const char *document_id,
                         store_session_t *out, bool *created);
/* Get-or-create among the acting user's sessions (a new one is theirs;
 * its document_id must be visible to them). */
int store_session_ensure_scoped(store_t *s, const store_scope_t *scope, const char *id,
                                const char *document_id, store_session_t *out, bool *created);

/* Fetch session `id` (with message_count and document_filename) into *out
 * (caller-owned). STORE_ENOTFOUND if none. */
int store_session_get(store_t *s, const char *id, store_session_t *out);
int store_session_get_scoped(store_t *s, const store_scope_t *scope, const char *id,
                             store_session_t *out);

/* Mark session `id` active now (last_active never moves backwards).
 * STORE_ENOTFOUND if none. */
int store_session_touch(store_t *s, const char *id);
int store_session_touch_scoped(store_t *s, const store_scope_t *scope, const char *id);

/* Set (document_id non-NULL) or clear (NULL) the document of session `id`.
 * STORE_ENOTFOUND if the session or the document does not exist. */
int store_session_set_document(store_t *s, const char *id, const char *document_id);
/* The document must be one the acting user may see (else STORE_ENOTFOUND). */
int store_session_set_document_scoped(store_t *s, const store_scope_t *scope, const char *id,
                                      const char *document_id);

/* ---- Several documents: a session's set, collections ---- */

#define STORE_SET_MAX 64   /* documents in a session's set or a collection */

typedef struct {
    char **ids;    /* owned; n strings */
    size_t n;
} store_id_list_t;

void store_id_list_cleanup(store_id_list_t *l);

/* Make ids[0..n) (n <= STORE_SET_MAX, no duplicates, order kept) the
 * documents of session `id`; its document_id becomes ids[0] (none when n
 * is 0). store_session_set_document(id, d) is the same with one id.
 * STORE_ENOTFOUND if the session or a document does not exist;
 * STORE_EINVAL for a duplicate. */
int store_session_set_documents(store_t *s, const char *id, const char *const *ids, size_t n);
/* Every document must be one the acting user may see (else STORE_ENOTFOUND,
 * nothing changed). */
int store_session_set_documents_scoped(store_t *s, const store_scope_t *scope, const char *id,
                                       const char *const *ids, size_t n);

/* The documents of session `id`, in order, into *out (caller-owned): its
 * set, or its one document, or none. STORE_ENOTFOUND if no such session. */
int store_session_documents(store_t *s, const char *id, store_id_list_t *out);
int store_session_documents_scoped(store_t *s, const store_scope_t *scope, const char *id,
                                   store_id_list_t *out);

typedef struct {
    char *id;
    char *name;
    int64_t created_at;
    store_id_list_t docs;   /* in order */
} store_collection_t;

void store_collection_cleanup(store_collection_t *c);

/* Collections have no owner: they are for local mode (an accounts-mode
 * caller checks each document with store_doc_get_scoped first).
 * A named collection of documents ids[0..n) (1..STORE_SET_MAX, no
 * duplicates; name 1..STORE_NAME_MAX bytes), with a new id, into *out
 * (may be NULL; caller-owned). STORE_ENOTFOUND if a document does not
 * exist. */
int store_collection_create(store_t *s, const char *name, const char *const *ids, size_t n,
                            store_collection_t *out);

/* Collection `id` into *out (caller-owned): documents deleted since are
 * no longer in it. STORE_ENOTFOUND if none. */
int store_collection_get(store_t *s, const char *id, store_collection_t *out);

/* Every collection's id, oldest first, into *out (caller-owned): for
 * copying a store (store_copy.c). */
int store_collection_ids(store_t *s, store_id_list_t *out);

/* Set (non-NULL) or clear (NULL) the title of session `id`.
 * STORE_ENOTFOUND if none. */
int store_session_set_title(store_t *s, const char *id, const char *title);
int store_session_set_title_scoped(store_t *s, const store_scope_t *scope, const char *id,
                                   const char *title);

/* Sessions (in local mode: those without an owner), most recently active
 * first, at most `limit` (0 = all), into *out (caller-owned). */
int store_session_list(store_t *s, size_t limit, store_session_list_t *out);
/* The acting user's sessions (their own only, admins included). */
int store_session_list_scoped(store_t *s, const store_scope_t *scope, size_t limit,
                              store_session_list_t *out);

/* Delete session `id` and its messages. STORE_ENOTFOUND if none. */
int store_session_delete(store_t *s, const char *id);
int store_session_delete_scoped(store_t *s, const store_scope_t *scope, const char *id);

/* Delete the sessions (with their messages) idle for more than max_idle_s
 * seconds at time now_ms: those with last_active < now_ms - max_idle_s*1000,
 * whoever owns them (maintenance: no scope).
 * now_ms <= 0 means store_now_ms() (a caller passes its own clock reading
 * to sweep with one time). max_idle_s must be >= 0. If n_deleted is not
 * NULL it receives how many sessions went. */
int store_session_delete_expired(store_t *s, int64_t max_idle_s, int64_t now_ms,
                                 int64_t *n_deleted);

/* ---- Messages --------------------------------------------------------------- */

typedef enum {
    STORE_ROLE_SYSTEM = 0,
    STORE_ROLE_USER = 1,
    STORE_ROLE_ASSISTANT = 2,
} store_role_t;

/* "system" | "user" | "assistant"; "" for other values. Static. */
const char *store_role_name(store_role_t role);
/* The reverse; returns STORE_OK or STORE_EINVAL (*out untouched). */
int store_role_parse(const char *name, store_role_t *out);

typedef struct {
    int64_t id;          /* grows with every message in the database */
    char *session_id;    /* the session's id as its client knows it */
    store_role_t role;
    char *content;
    int64_t created_at;  /* epoch ms */
    bool incomplete;     /* the answer was cut short (client gone, error) */
    char *meta;          /* JSON text (usage, timings), or NULL */
} store_msg_t;

void store_msg_init(store_msg_t *m);
/* Free the strings and re-initialize. Accepts NULL. */
void store_msg_cleanup(store_msg_t *m);

typedef struct {
    store_msg_t *items;  /* owned; n records, oldest first */
    size_t n;
} store_msg_list_t;

void store_msg_list_cleanup(store_msg_list_t *l);

/* Append a message to session `session_id` and mark the session active, in
 * one transaction. content: UTF-8, at most STORE_CONTENT_MAX bytes (may be
 * empty: an answer cut short before its first token). meta: NULL or one
 * JSON value as text (at most STORE_META_MAX bytes; STORE_EINVAL if it is
 * not valid JSON). *id_out (may be NULL) receives the message's id.
 * STORE_ENOTFOUND if the session does not exist. */
int store_msg_append(store_t *s, const char *session_id, store_role_t role, const char *content,
                     bool incomplete, const char *meta, int64_t *id_out);
/* Append to the acting user's session `session_id` (STORE_ENOTFOUND for an
 * unknown or another user's). */
int store_msg_append_scoped(store_t *s, const store_scope_t *scope, const char *session_id,
                            store_role_t role, const char *content, bool incomplete,
                            const char *meta, int64_t *id_out);

/* Messages of session `session_id` in order (by id). limit 0 = all; else
 * the LAST `limit` messages, still oldest first. *out is caller-owned.
 * STORE_ENOTFOUND if the session does not exist. */
int store_msg_list(store_t *s, const char *session_id, size_t limit, store_msg_list_t *out);
int store_msg_list_scoped(store_t *s, const store_scope_t *scope, const char *session_id,
                          size_t limit, store_msg_list_t *out);

/* Number of messages of session `session_id` into *n.
 * STORE_ENOTFOUND if the session does not exist. */
int store_msg_count(store_t *s, const char *session_id, int64_t *n);
int store_msg_count_scoped(store_t *s, const store_scope_t *scope, const char *session_id,
                           int64_t *n);

/* ---- Accounts --------------------------------------------------------------- *
 *
 * Users, their login sessions ("logins": a browser's cookie) and API
 * tokens, and an audit log. The app computes everything secret: a user's
 * password hash (an argon2id encoded string from libsodium; opaque here),
 * and the SHA-256 of each login's or token's random secret, which is what
 * the store keeps and looks up. A copy of the database thus holds no
 * secret a client could present as it is (and passwords only as slow
 * hashes).
 *
 * Rules the store keeps itself, in the same transaction as the change:
 *  - user names are unique without regard to case ("Bob" and "bob" are one
 *    name); the name keeps the case it was given;
 *  - disabling or deleting a user removes their logins and tokens (and
 *    deleting removes everything they own: documents, sessions, messages);
 *  - a change that would leave no enabled admin (demoting, disabling or
 *    deleting the last one) is refused with STORE_ECONFLICT, so two admins
 *    demoting each other at once cannot both succeed;
 *  - an admin-scoped token belongs to an admin: creating one for another
 *    user is STORE_EINVAL, and demoting a user deletes theirs;
 *  - logins and tokens of disabled users are not found by their lookups.
 * The app still decides who may do what (roles, token scopes, refusing to
 * act on oneself): the effective rights of a token are its scope AND its
 * user's role. */

typedef enum {
    STORE_USER_ROLE_USER = 0,
    STORE_USER_ROLE_ADMIN = 1,
} store_user_role_t;

/* "user" | "admin"; "" for other values. Static. */
const char *store_user_role_name(store_user_role_t role);
/* The reverse; returns STORE_OK or STORE_EINVAL (*out untouched). */
int store_user_role_parse(const char *name, store_user_role_t *out);

/* Whether `name` is acceptable as a user name: 1..STORE_USER_NAME_MAX
 * bytes of ASCII letters, digits and '.', '_', '-', '@', starting with a
 * letter or a digit. ASCII only, so that "the same name in another case"
 * is exact (no Unicode case folding to disagree about) and no two names
 * look alike; an e-mail address fits. */
bool store_user_name_valid(const char *name);

typedef struct {
    char *id;                /* UUID text */
    char *name;              /* as given at creation (case kept) */
    char *password_hash;     /* only from store_user_get / _get_by_name (for
                              * checking a password); NULL in every other
                              * record. Never send it to a client. */
    store_user_role_t role;
    bool disabled;
    int64_t created_at;      /* epoch ms */
    int64_t updated_at;      /* epoch ms: creation or last change */
} store_user_t;

void store_user_init(store_user_t *u);
/* Free the strings and re-initialize. Accepts NULL. */
void store_user_cleanup(store_user_t *u);

typedef struct {
    store_user_t *items;     /* owned; n records */
    size_t n;
} store_user_list_t;

void store_user_list_cleanup(store_user_list_t *l);

/* Create a user with a new id: `name` (store_user_name_valid, else
 * STORE_EINVAL), `password_hash` (1..STORE_PASSWORD_HASH_MAX bytes of
 * printable ASCII without spaces, as libsodium encodes it), `role`; not
 * disabled. *out (may be NULL; caller-owned) receives the record (with its
 * password_hash). STORE_ECONFLICT if the name is taken in any case. */
int store_user_create(store_t *s, const char *name, const char *password_hash,
                      store_user_role_t role, store_user_t *out);

/* User `id`, or the user named `name` in any case, into *out (caller-owned),
 * password_hash included. STORE_ENOTFOUND if none (an invalid name is not
 * an error here: no user has it). */
int store_user_get(store_t *s, const char *id, store_user_t *out);
int store_user_get_by_name(store_t *s, const char *name, store_user_t *out);

/* Every user, by name (case-insensitively), without password hashes, into
 * *out (caller-owned). */
int store_user_list(store_t *s, store_user_list_t *out);

/* Change user `id`'s role. Demoting deletes the user's admin-scoped tokens.
 * STORE_ENOTFOUND if no such user; STORE_ECONFLICT if it would leave no
 * enabled admin (nothing changed). Setting the role the user has is a
 * success that changes nothing but updated_at. */
int store_user_set_role(store_t *s, const char *id, store_user_role_t role);

/* Disable (true) or enable (false) user `id`. Disabling deletes every login
 * and token of the user at once (they must log in again once enabled).
 * STORE_ENOTFOUND if no such user; STORE_ECONFLICT if it would leave no
 * enabled admin. */
int store_user_set_disabled(store_t *s, const char *id, bool disabled);

/* Replace user `id`'s password hash (checked as for store_user_create).
 * The user's logins stay: the app usually ends the others with
 * store_login_delete_user(s, id, current_login, NULL). STORE_ENOTFOUND if
 * no such user. */
int store_user_set_password(store_t *s, const char *id, const char *password_hash);

/* Delete user `id` with everything they own, in one transaction: their
 * documents (with texts, chunks, parts), sessions (with messages), logins
 * and tokens; shared documents of theirs leave other users' sessions.
 * Audit entries stay. *docs (may be NULL; caller-owned) receives the
 * deleted documents (for the engine's cache entries) and *unused_files (may
 * be NULL; caller-owned) the stored_names no document uses any more: the
 * files the caller removes (a file another user's copy still uses is not
 * in it). STORE_ENOTFOUND if no such user; STORE_ECONFLICT if it is the
 * last enabled admin (nothing deleted). */
int store_user_delete(store_t *s, const char *id, store_doc_list_t *docs,
                      store_id_list_t *unused_files);

/* Count the users into *n_users and the enabled admins into *n_admins
 * (either may be NULL): no users at all means the first admin is still to
 * be created. */
int store_user_count(store_t *s, int64_t *n_users, int64_t *n_admins);

/* Usage for quotas: the total file_size of the documents user `id` owns
 * into *bytes and their number into *n_docs (either may be NULL). A file
 * shared with another owner's copy counts for each owner (what a user
 * uploads is theirs, whoever uploaded it first). STORE_ENOTFOUND if no
 * such user. */
int store_user_usage(store_t *s, const char *id, int64_t *bytes, int64_t *n_docs);

/* Give every document and session that has no owner to user `user_id`, in
 * one transaction (an existing data directory becomes the first admin's
 * when accounts are turned on). *n_docs and *n_sessions (may be NULL)
 * receive how many changed hands. A document whose content the user
 * already has becomes a second document of theirs with that content
 * (harmless: uploads find the first). STORE_ENOTFOUND if no such user;
 * STORE_ECONFLICT if the user already has a session with the id of an
 * unowned one (nothing changed). */
int store_adopt_unowned(store_t *s, const char *user_id, int64_t *n_docs, int64_t *n_sessions);

/* ---- Logins (server-side login sessions) ---- *
 *
 * A login is found by its id, the SHA-256 hex of the random secret in the
 * browser's cookie. It expires when idle: expires_at = last_seen_at +
 * idle_ms, and each lookup that finds last_seen_at older than the caller's
 * touch interval moves both forward. A lookup per request therefore costs
 * one indexed read, and a write at most once per touch interval per login;
 * the price is that a login may expire up to one touch interval earlier
 * than exactly idle_ms after its last request. Expired logins are not
 * found; store_login_sweep() removes them. */

typedef struct {
    char *id;                /* SHA-256 hex (64 lowercase digits) of the secret */
    char *user_id;
    int64_t created_at;      /* epoch ms */
    int64_t last_seen_at;    /* epoch ms, as of the last touch */
    int64_t expires_at;      /* epoch ms: last_seen_at + idle_ms */
    int64_t idle_ms;         /* the idle lifetime it was created with */
    char *client_addr;       /* where it logged in from; NULL unknown */
    char *user_agent;        /* the browser's, shortened; NULL unknown */
} store_login_t;

void store_login_init(store_login_t *l);
void store_login_cleanup(store_login_t *l);

typedef struct {
    store_login_t *items;    /* owned; n records */
    size_t n;
} store_login_list_t;

void store_login_list_cleanup(store_login_list_t *l);

/* Create a login for user `user_id`: id = `hash` (64 hex digits, either
 * case; kept lowercase), idle lifetime idle_s seconds (1..10 years),
 * created now. client_addr: NULL or 1..STORE_ADDR_MAX bytes (else
 * STORE_ETOOBIG). user_agent: NULL or any text; it is diagnostic, so it is
 * shortened to STORE_USER_AGENT_MAX bytes (ending in "...") with invalid
 * UTF-8 replaced, never refused. *out (may be NULL; caller-owned)
 * receives the record. STORE_ENOTFOUND if there is no such user or the
 * user is disabled; STORE_ECONFLICT if the id exists. */
int store_login_create(store_t *s, const char *hash, const char *user_id, int64_t idle_s,
                       const char *client_addr, const char *user_agent, store_login_t *out);

/* The login whose id is `hash`, if it has not expired at now_ms (<= 0:
 * now) and its user is enabled: *user (caller-owned; password_hash NULL)
 * receives its user and *login (may be NULL; caller-owned) the login. If
 * its last_seen_at is touch_after_s seconds old or more (0: always), it is
 * touched (last_seen_at = now_ms, expires_at = now_ms + idle_ms) and *login
 * shows that. STORE_ENOTFOUND if there is no such live login (unknown,
 * expired, logged out, user disabled or deleted); STORE_EINVAL for a
 * malformed hash or touch_after_s < 0. */
int store_login_lookup(store_t *s, const char *hash, int64_t now_ms, int64_t touch_after_s,
                       store_login_t *login, store_user_t *user);

/* The logins of user `user_id` ("where you are logged in"), most recently
 * seen first, expired ones included until swept, into *out (caller-owned).
 * An unknown user has none. */
int store_login_list(store_t *s, const char *user_id, store_login_list_t *out);

/* Delete login `hash` (log out). user_id non-NULL: only if it is that
 * user's (a user ending one of their own logins); NULL: whoever's.
 * STORE_ENOTFOUND if there is no such login (of that user). */
int store_login_delete(store_t *s, const char *hash, const char *user_id);

/* Delete every login of user `user_id` ("log out everywhere"), except
 * `except_hash` when it is not NULL (the login making the request).
 * *n_deleted (may be NULL) receives the count. An unknown user has none. */
int store_login_delete_user(store_t *s, const char *user_id, const char *except_hash,
                            int64_t *n_deleted);

/* Delete the logins expired at now_ms (<= 0: now): expires_at <= now_ms.
 * *n_deleted (may be NULL) receives the count. */
int store_login_sweep(store_t *s, int64_t now_ms, int64_t *n_deleted);

/* ---- API tokens ---- */

/* Ordered: each scope allows what the ones before it allow. */
typedef enum {
    STORE_TOKEN_READ = 0,    /* read documents and sessions */
    STORE_TOKEN_CHAT = 1,    /* also chat, upload, change one's own records */
    STORE_TOKEN_ADMIN = 2,   /* also the admin paths (admins' tokens only) */
} store_token_scope_t;

/* "read" | "chat" | "admin"; "" for other values. Static. */
const char *store_token_scope_name(store_token_scope_t scope);
/* The reverse; returns STORE_OK or STORE_EINVAL (*out untouched). */
int store_token_scope_parse(const char *name, store_token_scope_t *out);

typedef struct {
    char *id;                /* UUID text: how the owner names it to delete it */
    char *user_id;
    char *name;              /* the owner's label for it */
    char *hash;              /* SHA-256 hex of the secret; NULL in lists */
    store_token_scope_t scope;
    int64_t created_at;      /* epoch ms */
    int64_t expires_at;      /* epoch ms; -1: never */
    int64_t last_used_at;    /* epoch ms, as of the last touch; -1: never used */
} store_token_t;

void store_token_init(store_token_t *t);
void store_token_cleanup(store_token_t *t);

typedef struct {
    store_token_t *items;    /* owned; n records */
    size_t n;
} store_token_list_t;

void store_token_list_cleanup(store_token_list_t *l);

/* Create a token of user `user_id` with a new id: `name` (1..
 * STORE_TOKEN_NAME_MAX bytes of UTF-8), `hash` (64 hex digits, either
 * case), `scope`, expiring at expires_at (epoch ms, in the future; <= 0:
 * never). *out (may be NULL; caller-owned) receives the record (hash
 * included). STORE_ENOTFOUND if there is no such user or it is disabled;
 * STORE_EINVAL for an admin scope on a user who is not an admin, or an
 * expiry in the past; STORE_ECONFLICT if the hash exists. */
int store_token_create(store_t *s, const char *user_id, const char *name, const char *hash,
                       store_token_scope_t scope, int64_t expires_at, store_token_t *out);

/* The tokens of user `user_id`, newest first, expired ones included,
 * without hashes, into *out (caller-owned). An unknown user has none. */
int store_token_list(store_t *s, const char *user_id, store_token_list_t *out);

/* Every user's tokens, oldest first, WITH their hashes, into *out
 * (caller-owned): for copying a store (store_copy.c), never for an
 * answer. */
int store_token_list_all(store_t *s, store_token_list_t *out);

/* The token whose hash is `hash`, if it has not expired at now_ms (<= 0:
 * now) and its user is enabled: *user (caller-owned; password_hash NULL)
 * receives its user and *token (may be NULL; caller-owned) the token. If
 * it was never used or last_used_at is touch_after_s seconds old or more
 * (0: always), last_used_at becomes now_ms. STORE_ENOTFOUND if there is no
 * such live token; STORE_EINVAL for a malformed hash or touch_after_s < 0. */
int store_token_lookup(store_t *s, const char *hash, int64_t now_ms, int64_t touch_after_s,
                       store_token_t *token, store_user_t *user);

/* Delete token `id` if it is user `user_id`'s (a user's own tokens page):
 * another user's token is STORE_ENOTFOUND like an unknown one. */
int store_token_delete(store_t *s, const char *user_id, const char *id);

/* Delete token `id` whoever's it is (admin paths). STORE_ENOTFOUND if none. */
int store_token_delete_any(store_t *s, const char *id);

/* ---- Audit log ---- *
 *
 * Who did what, newest first, bounded in size: entries are numbered in the
 * order they were written and the oldest go first. */

typedef struct {
    int64_t id;              /* grows with every entry */
    int64_t ts;              /* epoch ms */
    char *actor_id;          /* the acting user's id; NULL when none (a failed
                              * login, the system) */
    char *actor_name;        /* the actor's name as it was (a user name, the
                              * name a failed login tried, "system"); NULL */
    char *action;            /* what happened: "user.create", "login.fail"... */
    char *target;            /* what it happened to (an id, a name); NULL */
    char *client_addr;       /* NULL unknown */
    char *detail;            /* JSON text, or NULL */
} store_audit_t;

void store_audit_init(store_audit_t *e);
void store_audit_cleanup(store_audit_t *e);

typedef struct {
    store_audit_t *items;    /* owned; n records, newest first */
    size_t n;
} store_audit_list_t;

void store_audit_list_cleanup(store_audit_list_t *l);

/* Append *e (read only; id ignored; ts <= 0: now): action 1..
 * STORE_ACTION_MAX bytes; actor_id a valid id or NULL; actor_name and
 * target NULL or at most STORE_NAME_MAX bytes; client_addr NULL or at most
 * STORE_ADDR_MAX; detail NULL or one JSON value of at most STORE_DETAIL_MAX
 * bytes (STORE_EINVAL if it is not JSON). Text the app takes from a client
 * (a tried user name) is the app's to shorten first: too long is
 * STORE_ETOOBIG. If max_rows > 0, the oldest entries beyond the newest
 * max_rows go in the same transaction (cheap: by id range). *id_out (may
 * be NULL) receives the entry's id. */
int store_audit_append(store_t *s, const store_audit_t *e, int64_t max_rows, int64_t *id_out);

typedef struct {
    const char *actor;       /* NULL, or entries whose actor_id is this or
                              * whose actor_name is this in any case */
    const char *action;      /* NULL, or entries with exactly this action */
    size_t offset;           /* skip this many (of those that match) */
    size_t limit;            /* 1..1000 */
} store_audit_filter_t;

/* The entries matching *f (read only), newest first, into *out
 * (caller-owned). STORE_EINVAL for a limit out of range. */
int store_audit_list(store_t *s, const store_audit_filter_t *f, store_audit_list_t *out);

/* Delete all but the newest max_rows (>= 0) entries; *n_deleted (may be
 * NULL) receives the count. */
int store_audit_prune(store_t *s, int64_t max_rows, int64_t *n_deleted);

/* ---- Periodic jobs -------------------------------------------------------- */

/* A periodic job (the idle-session sweep, ...) runs once for every process
 * that shares the store (app replicas on one PostgreSQL), not once in
 * each: a process claims job `name` (1..STORE_JOB_NAME_MAX bytes) for a
 * run now when its last claimed run is at least interval_ms old, or it
 * never ran; *claimed says whether this caller got it. Atomic: of several
 * processes asking at once, at most one gets it. */
#define STORE_JOB_NAME_MAX 64
int store_job_claim(store_t *s, const char *name, int64_t interval_ms, bool *claimed);

/* ---- Shared settings -------------------------------------------------------- */

/* State every process sharing the store follows (the active model, ...):
 * key 1..STORE_JOB_NAME_MAX bytes, value UTF-8 of at most
 * STORE_SETTING_MAX bytes. store_setting_get gives the value (malloc'd,
 * caller frees) and when it was set; STORE_ENOTFOUND when never set. */
#define STORE_SETTING_MAX 4096
int store_setting_set(store_t *s, const char *key, const char *value);
int store_setting_get(store_t *s, const char *key, char **value, int64_t *updated_at);

/* ---- Backend interface ---------------------------------------------------- *
 * For store.c and the backends (store_<name>.c) only; the rest of kvchat
 * uses the functions above.
 *
 * store.c checks every argument (NULL, ids, UTF-8, limits, enum ranges),
 * fills the defaults (new ids, "now", n_chars), initializes out-structs and
 * then calls the backend, so a backend receives valid input only and
 * implements storage alone. A backend translates its library's codes to
 * STORE_E* once, and maps constraint failures as: unique / primary key →
 * STORE_ECONFLICT, foreign key → STORE_ENOTFOUND, check / not null →
 * STORE_EINVAL. Each function is one transaction and may be called from
 * any thread at any time. Ownership is as for the public function of the
 * same name. A NULL function pointer means "not supported"
 * (STORE_EUNSUPPORTED); only check, doc_search and chunk_search may be NULL.
 * `scope` is NULL (local mode) or has a valid user_id; its meaning is the
 * one "Ownership and scopes" describes, and the backend applies it in the
 * same statement or transaction as the operation. Hashes (sha256, login
 * and token hashes) arrive lowercase; "now" arrives resolved (> 0). */
typedef struct store_backend store_backend_t;   /* a backend's own state */
typedef struct store_text_src store_text_src_t; /* a text being inserted */
typedef struct store_chunk_src store_chunk_src_t; /* chunks being written */

/* The next chunk being written by store_doc_set_chunks(), checked (see
 * there): *chunk and *index_text borrowed until the next call; *chunk =
 * NULL at the end. Returns STORE_OK, STORE_EINVAL, STORE_ETOOBIG or the
 * reader's code. */
int store__chunk_next(store_chunk_src_t *src, const store_chunk_t **chunk,
                      const char **index_text);

/* The next piece of a text being inserted: *piece (valid until the next
 * call) and *len bytes, at most STORE_TEXT_CHUNK, valid UTF-8 without NUL,
 * cut after a blank where there is one in its second half; *len = 0 at the
 * end. Returns STORE_OK, STORE_EINVAL (ill-formed text), STORE_ETOOBIG, or
 * the reader's code. */
int store__text_next(store_text_src_t *t, const char **piece, size_t *len);
/* Code points of the pieces taken so far. */
int64_t store__text_chars(const store_text_src_t *t);

typedef struct {
    const char *name;      /* "sqlite" */
    const char *scheme;    /* URL scheme that selects it: "sqlite" */
    /* target: what follows "scheme:" (for SQLite, a path or ":memory:"). */
    int (*open)(const char *target, store_backend_t **out);
    void (*close)(store_backend_t *b);
    int (*check)(store_backend_t *b);

    /* doc: complete (id and uploaded_at set, sha256 lowercase); doc's own
     * n_chars and cache are ignored. The text comes from store__text_next()
     * (checked pieces, cut between words); its n_chars from
     * store__text_chars() once the last piece was taken. */
    int (*doc_insert)(store_backend_t *b, const store_scope_t *scope, const store_doc_t *doc,
                      store_text_src_t *text, store_doc_t *out, bool *existed);
    /* new_id fresh, now_ms the upload time; out never NULL */
    int (*doc_copy_content)(store_backend_t *b, const store_scope_t *scope, const char *sha256,
                            const char *filename, const char *new_id, int64_t now_ms,
                            store_doc_t *out, bool *existed);
    int (*doc_get)(store_backend_t *b, const store_scope_t *scope, const char *id,
                   store_doc_t *out);
    int (*doc_find_sha256)(store_backend_t *b, const store_scope_t *scope, const char *sha256,
                           store_doc_t *out);
    int (*doc_text_foreach)(store_backend_t *b, const char *id, store_text_fn fn, void *ud);
    int (*doc_list)(store_backend_t *b, const store_scope_t *scope, store_doc_list_t *out);
    /* out and file_unused never NULL here. */
    int (*doc_delete)(store_backend_t *b, const store_scope_t *scope, const char *id,
                      store_doc_t *out, bool *file_unused);
    int (*doc_set_shared)(store_backend_t *b, const store_scope_t *scope, const char *id,
                          bool shared);
    int (*file_refs)(store_backend_t *b, const char *stored_name, int64_t *n);
    int (*doc_set_tokens)(store_backend_t *b, const char *id, int64_t n_tokens);
    /* cache: final values (cached_at resolved, error shortened). */
    int (*doc_set_cache)(store_backend_t *b, const char *id, const store_cache_t *cache);
    int (*doc_reset_cache)(store_backend_t *b, bool only_caching, int64_t *n_changed);
    int (*doc_search)(store_backend_t *b, const store_scope_t *scope, const char *query,
                      size_t limit, store_doc_list_t *out);
    int (*doc_set_marks)(store_backend_t *b, const char *id, const store_mark_t *marks,
                         size_t n);
    int (*doc_marks)(store_backend_t *b, const char *id, store_mark_list_t *out);
    /* pages NULL with confidence -1, or checked as store_doc_set_ocr() says. */
    int (*doc_set_ocr)(store_backend_t *b, const char *id, const char *pages, int confidence);
    /* Chunks come checked through store__chunk_next(). */
    int (*doc_set_chunks)(store_backend_t *b, const char *id, store_chunk_src_t *src,
                          int64_t *n_out);
    int (*chunks_set_tokens)(store_backend_t *b, const char *id, const char *key,
                             const int64_t *tokens, size_t n);
    int (*chunk_list)(store_backend_t *b, const char *id, int64_t first, size_t limit,
                      bool content, store_chunk_list_t *out, int64_t *total);
    int (*chunk_get)(store_backend_t *b, const char *id, int64_t seq, store_chunk_t *out);
    int (*chunk_search)(store_backend_t *b, const char *const *doc_ids, size_t n_ids,
                        const char *match, size_t limit, store_chunk_list_t *out);
    /* parts: checked, cache states final as for doc_set_cache */
    int (*parts_set)(store_backend_t *b, const char *id, const char *key,
                     const store_part_t *parts, size_t n);
    int (*parts_list)(store_backend_t *b, const char *id, const char *key,
                      store_part_list_t *out);
    int (*part_set_cache)(store_backend_t *b, const char *id, const char *key, int64_t seq,
                          const store_cache_t *cache);

    /* Sessions: `id` is the client's id within the scope's owner. out never
     * NULL here; now_ms is the creation time. */
    int (*session_create)(store_backend_t *b, const store_scope_t *scope, const char *id,
                          const char *document_id, const char *title, int64_t now_ms,
                          store_session_t *out);
    int (*session_ensure)(store_backend_t *b, const store_scope_t *scope, const char *id,
                          const char *document_id, int64_t now_ms, store_session_t *out,
                          bool *created);
    int (*session_get)(store_backend_t *b, const store_scope_t *scope, const char *id,
                       store_session_t *out);
    int (*session_touch)(store_backend_t *b, const store_scope_t *scope, const char *id,
                         int64_t now_ms);
    /* ids checked: valid, distinct, n <= STORE_SET_MAX */
    int (*session_set_documents)(store_backend_t *b, const store_scope_t *scope, const char *id,
                                 const char *const *ids, size_t n);
    int (*session_documents)(store_backend_t *b, const store_scope_t *scope, const char *id,
                             store_id_list_t *out);
    /* id new, name checked, now_ms the creation time; out never NULL */
    int (*collection_create)(store_backend_t *b, const char *id, const char *name,
                             int64_t now_ms, const char *const *ids, size_t n,
                             store_collection_t *out);
    int (*collection_get)(store_backend_t *b, const char *id, store_collection_t *out);
    int (*collection_ids)(store_backend_t *b, store_id_list_t *out);
    int (*session_set_title)(store_backend_t *b, const store_scope_t *scope, const char *id,
                             const char *title);
    /* limit 0 = all */
    int (*session_list)(store_backend_t *b, const store_scope_t *scope, size_t limit,
                        store_session_list_t *out);
    int (*session_delete)(store_backend_t *b, const store_scope_t *scope, const char *id);
    /* delete sessions with last_active < before_ms; *n_deleted always set */
    int (*session_delete_idle)(store_backend_t *b, int64_t before_ms, int64_t *n_deleted);

    int (*msg_append)(store_backend_t *b, const store_scope_t *scope, const char *session_id,
                      store_role_t role, const char *content, bool incomplete,
                      const char *meta, int64_t now_ms, int64_t *id_out);
    int (*msg_list)(store_backend_t *b, const store_scope_t *scope, const char *session_id,
                    size_t limit, store_msg_list_t *out);
    int (*msg_count)(store_backend_t *b, const store_scope_t *scope, const char *session_id,
                     int64_t *n);

    /* Accounts. Checked input; new ids made by store.c; out never NULL
     * unless said; counts (n_*) never NULL. */
    int (*user_create)(store_backend_t *b, const char *id, const char *name,
                       const char *password_hash, store_user_role_t role, int64_t now_ms,
                       store_user_t *out);
    /* by_name: `key` is a name (any case), else an id */
    int (*user_get)(store_backend_t *b, const char *key, bool by_name, store_user_t *out);
    int (*user_list)(store_backend_t *b, store_user_list_t *out);
    int (*user_set_role)(store_backend_t *b, const char *id, store_user_role_t role,
                         int64_t now_ms);
    int (*user_set_disabled)(store_backend_t *b, const char *id, bool disabled, int64_t now_ms);
    int (*user_set_password)(store_backend_t *b, const char *id, const char *password_hash,
                             int64_t now_ms);
    /* docs and unused_files never NULL */
    int (*user_delete)(store_backend_t *b, const char *id, store_doc_list_t *docs,
                       store_id_list_t *unused_files);
    int (*user_count)(store_backend_t *b, int64_t *n_users, int64_t *n_admins);
    int (*user_usage)(store_backend_t *b, const char *id, int64_t *bytes, int64_t *n_docs);
    int (*adopt_unowned)(store_backend_t *b, const char *user_id, int64_t *n_docs,
                         int64_t *n_sessions);

    /* user_agent already shortened; idle_ms > 0 */
    int (*login_create)(store_backend_t *b, const char *hash, const char *user_id,
                        int64_t idle_ms, const char *client_addr, const char *user_agent,
                        int64_t now_ms, store_login_t *out);
    /* touch when last_seen_at <= now_ms - touch_after_ms */
    int (*login_lookup)(store_backend_t *b, const char *hash, int64_t now_ms,
                        int64_t touch_after_ms, store_login_t *login, store_user_t *user);
    int (*login_list)(store_backend_t *b, const char *user_id, store_login_list_t *out);
    /* user_id may be NULL (whoever's) */
    int (*login_delete)(store_backend_t *b, const char *hash, const char *user_id);
    /* except_hash may be NULL */
    int (*login_delete_user)(store_backend_t *b, const char *user_id, const char *except_hash,
                             int64_t *n_deleted);
    int (*login_sweep)(store_backend_t *b, int64_t now_ms, int64_t *n_deleted);

    /* expires_at: -1 never */
    int (*token_create)(store_backend_t *b, const char *id, const char *user_id,
                        const char *name, const char *hash, store_token_scope_t scope,
                        int64_t expires_at, int64_t now_ms, store_token_t *out);
    int (*token_list)(store_backend_t *b, const char *user_id, store_token_list_t *out);
    int (*token_list_all)(store_backend_t *b, store_token_list_t *out);
    int (*token_lookup)(store_backend_t *b, const char *hash, int64_t now_ms,
                        int64_t touch_after_ms, store_token_t *token, store_user_t *user);
    /* user_id NULL: whoever's */
    int (*token_delete)(store_backend_t *b, const char *user_id, const char *id);

    /* e checked, ts resolved; max_rows 0 = keep all */
    int (*audit_append)(store_backend_t *b, const store_audit_t *e, int64_t max_rows,
                        int64_t *id_out);
    int (*audit_list)(store_backend_t *b, const store_audit_filter_t *f,
                      store_audit_list_t *out);
    int (*audit_prune)(store_backend_t *b, int64_t max_rows, int64_t *n_deleted);

    /* name checked; now: store_now_ms() */
    int (*job_claim)(store_backend_t *b, const char *name, int64_t now, int64_t interval_ms,
                     bool *claimed);
    /* key and value checked */
    int (*setting_set)(store_backend_t *b, const char *key, const char *value, int64_t now);
    int (*setting_get)(store_backend_t *b, const char *key, char **value, int64_t *updated_at);
} store_backend_ops_t;

/* The backend of s and its function table (*b receives its state), for
 * backend-neutral tools that write records as they are, ids and times
 * included (store_copy.c). The table and state stay s's. */
const store_backend_ops_t *store__backend(store_t *s, store_backend_t **b);

/* Helpers for building result lists (backends, and callers that build
 * lists of records themselves): append *item to the list,
 * taking ownership of its strings (*item is re-initialized). On
 * STORE_ENOMEM the item is cleaned up (its strings freed) and the list is
 * unchanged. */
int store__doc_list_push(store_doc_list_t *l, store_doc_t *item);
int store__session_list_push(store_session_list_t *l, store_session_t *item);
int store__msg_list_push(store_msg_list_t *l, store_msg_t *item);
int store__mark_list_push(store_mark_list_t *l, store_mark_t *item);
int store__chunk_list_push(store_chunk_list_t *l, store_chunk_t *item);
int store__part_list_push(store_part_list_t *l, store_part_t *item);
int store__user_list_push(store_user_list_t *l, store_user_t *item);
int store__login_list_push(store_login_list_t *l, store_login_t *item);
int store__token_list_push(store_token_list_t *l, store_token_t *item);
int store__audit_list_push(store_audit_list_t *l, store_audit_t *item);
/* Append a heap copy of `id` to *l. STORE_OK or STORE_ENOMEM (l unchanged). */
int store__id_list_push(store_id_list_t *l, const char *id);

#endif
