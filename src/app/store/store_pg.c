/* store_pg.c — the store on PostgreSQL (see store_pg.h for the design).
 *
 * The only file that includes libpq-fe.h. It holds the schema, the
 * connection pool with per-connection prepared statements, the
 * translation of SQLSTATEs into STORE_E* codes (pg_rc(), the one place),
 * the translation of full-text queries (pg_fts_query()) and one function
 * per store operation, each mirroring its SQLite twin in store_sqlite.c.
 *
 * Invariants:
 *  - a connection is used by one thread at a time (conn_get/conn_put) and
 *    goes back to the pool outside any transaction (conn_put rolls back
 *    what an error path left open, and closes a broken connection);
 *  - parameters are sent as text (numbers printed here), except pieces of
 *    text that are not NUL-terminated, sent as binary text of their
 *    length; results come back as text and are parsed here;
 *  - every statement is in stmt_sql[] and prepared by its name "kN" on
 *    first use per connection; schema and locks need no other SQL.
 */
#include "app/store/store_pg.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "app/store/store_sqlite.h"
#include "common/log.h"

_Static_assert(STORE_PG_SCHEMA_VERSION == STORE_SQLITE_SCHEMA_VERSION,
               "the PostgreSQL schema must move with the SQLite one: add a migration");

/* ---- Schema ----------------------------------------------------------------- */

/* Text search configurations (made by make_text_configs(), which knows
 * whether unaccent is there) come first; then the tables of schema
 * version 4, the first this backend has. A later version appends a
 * migration to pg_migrations[] and never edits this one. */
static const char *const schema_v4 =
    "CREATE TABLE users (\n"
    "    id            TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),\n"
    "    name          TEXT NOT NULL\n"
    "                  CHECK (length(name) BETWEEN 1 AND 64\n"
    "                         AND name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]*$'),\n"
    "    password_hash TEXT NOT NULL CHECK (length(password_hash) BETWEEN 1 AND 512),\n"
    "    role          TEXT NOT NULL CHECK (role IN ('user','admin')),\n"
    "    disabled      BOOLEAN NOT NULL DEFAULT false,\n"
    "    created_at    BIGINT NOT NULL,\n"
    "    updated_at    BIGINT NOT NULL\n"
    ");\n"
    "CREATE UNIQUE INDEX users_by_name ON users (lower(name));\n"
    "CREATE TABLE documents (\n"
    "    rid            BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,\n"
    "    id             TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),\n"
    "    owner_id       TEXT REFERENCES users (id) ON DELETE CASCADE,\n"
    "    shared         BOOLEAN NOT NULL DEFAULT false,\n"
    "    filename       TEXT NOT NULL CHECK (length(filename) >= 1),\n"
    "    stored_name    TEXT NOT NULL\n"
    "                   CHECK (length(stored_name) >= 1 AND strpos(stored_name, '/') = 0),\n"
    "    content_type   TEXT NOT NULL\n"
    "                   CHECK (content_type IN ('txt','md','pdf','docx','odt','html','epub')),\n"
    "    file_size      BIGINT NOT NULL CHECK (file_size >= 0),\n"
    "    sha256         TEXT NOT NULL CHECK (length(sha256) = 64 AND sha256 !~ '[^0-9a-f]'),\n"
    "    uploaded_at    BIGINT NOT NULL,\n"
    "    n_chars        BIGINT NOT NULL CHECK (n_chars >= 0),\n"
    "    n_tokens       BIGINT CHECK (n_tokens IS NULL OR n_tokens >= 0),\n"
    "    cache_status   TEXT NOT NULL DEFAULT 'none'\n"
    "                   CHECK (cache_status IN ('none','caching','cached','failed')),\n"
    "    cache_entry_id TEXT,\n"
    "    cache_tokens   BIGINT CHECK (cache_tokens IS NULL OR cache_tokens >= 0),\n"
    "    cache_bytes    BIGINT CHECK (cache_bytes IS NULL OR cache_bytes >= 0),\n"
    "    cache_tier     TEXT,\n"
    "    cache_ms       DOUBLE PRECISION CHECK (cache_ms IS NULL OR cache_ms >= 0),\n"
    "    cached_at      BIGINT,\n"
    "    cache_error    TEXT\n"
    ");\n"
    "CREATE INDEX documents_by_upload ON documents (uploaded_at);\n"
    "CREATE INDEX documents_by_owner ON documents (owner_id);\n"
    "CREATE INDEX documents_by_sha256 ON documents (sha256);\n"
    "CREATE INDEX documents_by_stored_name ON documents (stored_name);\n"
    "CREATE TABLE document_chunks (\n"
    "    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
    "    seq         BIGINT NOT NULL CHECK (seq >= 0),\n"
    "    text        TEXT NOT NULL,\n"
    "    tsv         tsvector GENERATED ALWAYS AS (to_tsvector('kvchat_words', text)) STORED,\n"
    "    PRIMARY KEY (document_id, seq)\n"
    ");\n"
    "CREATE INDEX document_chunks_fts ON document_chunks USING gin (tsv);\n"
    "CREATE TABLE sessions (\n"
    "    rid         BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,\n"
    "    id          TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),\n"
    "    owner_id    TEXT REFERENCES users (id) ON DELETE CASCADE,\n"
    "    client_id   TEXT NOT NULL CHECK (length(client_id) BETWEEN 1 AND 128),\n"
    "    created_at  BIGINT NOT NULL,\n"
    "    last_active BIGINT NOT NULL,\n"
    "    document_id TEXT REFERENCES documents (id) ON DELETE SET NULL,\n"
    "    title       TEXT\n"
    ");\n"
    "CREATE UNIQUE INDEX sessions_by_client ON sessions ((coalesce(owner_id, '')), client_id);\n"
    "CREATE INDEX sessions_by_owner ON sessions ((coalesce(owner_id, '')), last_active);\n"
    "CREATE INDEX sessions_by_activity ON sessions (last_active);\n"
    "CREATE INDEX sessions_by_document ON sessions (document_id);\n"
    "CREATE TABLE messages (\n"
    "    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
    "    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,\n"
    "    role       TEXT NOT NULL CHECK (role IN ('system','user','assistant')),\n"
    "    content    TEXT NOT NULL,\n"
    "    created_at BIGINT NOT NULL,\n"
    "    incomplete BOOLEAN NOT NULL DEFAULT false,\n"
    "    meta       TEXT CHECK (meta IS NULL OR meta::json IS NOT NULL)\n"
    ");\n"
    "CREATE INDEX messages_by_session ON messages (session_id, id);\n"
    "CREATE TABLE document_marks (\n"
    "    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
    "    seq         BIGINT NOT NULL CHECK (seq >= 0),\n"
    "    kind        TEXT NOT NULL CHECK (kind IN ('page','heading')),\n"
    "    pos         BIGINT NOT NULL CHECK (pos >= 0),\n"
    "    number      BIGINT NOT NULL,\n"
    "    label       TEXT NOT NULL,\n"
    "    PRIMARY KEY (document_id, seq)\n"
    ");\n"
    "CREATE TABLE chunks (\n"
    "    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
    "    seq         BIGINT NOT NULL CHECK (seq >= 0),\n"
    "    pos_start   BIGINT NOT NULL CHECK (pos_start >= 0),\n"
    "    pos_end     BIGINT NOT NULL CHECK (pos_end >= pos_start),\n"
    "    n_chars     BIGINT NOT NULL CHECK (n_chars >= 0),\n"
    "    est_tokens  BIGINT NOT NULL CHECK (est_tokens >= 0),\n"
    "    tokens      BIGINT CHECK (tokens IS NULL OR tokens >= 0),\n"
    "    tokens_key  TEXT,\n"
    "    page_first  BIGINT NOT NULL DEFAULT 0,\n"
    "    page_last   BIGINT NOT NULL DEFAULT 0,\n"
    "    label_first TEXT NOT NULL DEFAULT '',\n"
    "    label_last  TEXT NOT NULL DEFAULT '',\n"
    "    heading     TEXT NOT NULL DEFAULT '',\n"
    "    content     TEXT NOT NULL,\n"
    "    index_text  TEXT NOT NULL,\n"
    "    tsv         tsvector GENERATED ALWAYS AS (to_tsvector('kvchat_stem', index_text))\n"
    "                STORED,\n"
    "    PRIMARY KEY (document_id, seq)\n"
    ");\n"
    "CREATE INDEX chunks_fts ON chunks USING gin (tsv);\n"
    "CREATE TABLE document_parts (\n"
    "    document_id    TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
    "    plan_key       TEXT NOT NULL,\n"
    "    seq            BIGINT NOT NULL CHECK (seq >= 0),\n"
    "    chunk_first    BIGINT NOT NULL CHECK (chunk_first >= 0),\n"
    "    chunk_last     BIGINT NOT NULL CHECK (chunk_last >= chunk_first),\n"
    "    tokens         BIGINT CHECK (tokens IS NULL OR tokens >= 0),\n"
    "    content_length BIGINT NOT NULL CHECK (content_length >= 0),\n"
    "    cache_status   TEXT NOT NULL DEFAULT 'none'\n"
    "                   CHECK (cache_status IN ('none','caching','cached','failed')),\n"
    "    cache_entry_id TEXT,\n"
    "    cache_tokens   BIGINT CHECK (cache_tokens IS NULL OR cache_tokens >= 0),\n"
    "    cache_bytes    BIGINT CHECK (cache_bytes IS NULL OR cache_bytes >= 0),\n"
    "    cache_tier     TEXT,\n"
    "    cache_ms       DOUBLE PRECISION CHECK (cache_ms IS NULL OR cache_ms >= 0),\n"
    "    cached_at      BIGINT,\n"
    "    cache_error    TEXT,\n"
    "    PRIMARY KEY (document_id, plan_key, seq)\n"
    ");\n"
    "CREATE TABLE session_documents (\n"
    "    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,\n"
    "    pos         BIGINT NOT NULL CHECK (pos >= 0),\n"
    "    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
    "    PRIMARY KEY (session_id, pos),\n"
    "    UNIQUE (session_id, document_id)\n"
    ");\n"
    "CREATE INDEX session_documents_by_document ON session_documents (document_id);\n"
    "CREATE TABLE collections (\n"
    "    id         TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),\n"
    "    name       TEXT NOT NULL,\n"
    "    created_at BIGINT NOT NULL\n"
    ");\n"
    "CREATE TABLE collection_documents (\n"
    "    collection_id TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,\n"
    "    pos           BIGINT NOT NULL CHECK (pos >= 0),\n"
    "    document_id   TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
    "    PRIMARY KEY (collection_id, pos)\n"
    ");\n"
    "CREATE INDEX collection_documents_by_document ON collection_documents (document_id);\n"
    "CREATE TABLE logins (\n"
    "    id           TEXT NOT NULL PRIMARY KEY CHECK (length(id) = 64 AND id !~ '[^0-9a-f]'),\n"
    "    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,\n"
    "    created_at   BIGINT NOT NULL,\n"
    "    last_seen_at BIGINT NOT NULL,\n"
    "    idle_ms      BIGINT NOT NULL CHECK (idle_ms > 0),\n"
    "    expires_at   BIGINT NOT NULL,\n"
    "    client_addr  TEXT,\n"
    "    user_agent   TEXT\n"
    ");\n"
    "CREATE INDEX logins_by_user ON logins (user_id);\n"
    "CREATE INDEX logins_by_expiry ON logins (expires_at);\n"
    "CREATE TABLE api_tokens (\n"
    "    rid          BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,\n"
    "    id           TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),\n"
    "    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,\n"
    "    name         TEXT NOT NULL CHECK (length(name) >= 1),\n"
    "    token_hash   TEXT NOT NULL UNIQUE\n"
    "                 CHECK (length(token_hash) = 64 AND token_hash !~ '[^0-9a-f]'),\n"
    "    scope        TEXT NOT NULL CHECK (scope IN ('read','chat','admin')),\n"
    "    created_at   BIGINT NOT NULL,\n"
    "    expires_at   BIGINT,\n"
    "    last_used_at BIGINT\n"
    ");\n"
    "CREATE INDEX api_tokens_by_user ON api_tokens (user_id);\n"
    "CREATE TABLE audit_log (\n"
    "    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
    "    ts          BIGINT NOT NULL,\n"
    "    actor_id    TEXT,\n"
    "    actor_name  TEXT,\n"
    "    action      TEXT NOT NULL CHECK (length(action) >= 1),\n"
    "    target      TEXT,\n"
    "    client_addr TEXT,\n"
    "    detail      TEXT CHECK (detail IS NULL OR detail::json IS NOT NULL)\n"
    ");\n";

/* ---- Statements ----------------------------------------------------------- */

/* Columns of a document row, in the order row_doc() reads them. */
#define DOC_COLS                                                                        \
    "d.id, d.filename, d.stored_name, d.content_type, d.file_size, d.sha256, "         \
    "d.uploaded_at, d.n_chars, d.n_tokens, d.cache_status, d.cache_entry_id, "          \
    "d.cache_tokens, d.cache_bytes, d.cache_tier, d.cache_ms, d.cached_at, d.cache_error, " \
    "(SELECT coalesce(max(number), 0) FROM document_marks m "                            \
    " WHERE m.document_id = d.id AND m.kind = 'page'), "                                 \
    "(SELECT count(*) FROM chunks k WHERE k.document_id = d.id), d.owner_id, d.shared, "  \
    "d.ocr_pages, d.ocr_confidence"

/* Scopes are bound as parameters (p_scope()): "all" (true in local mode
 * and for admins), the acting user (NULL in local mode) and the owner key
 * of sessions ('' in local mode). Each statement names their numbers. */
#define DOC_READABLE(all, uid) "(" all "::boolean OR d.owner_id = " uid " OR d.shared)"
#define DOC_WRITABLE(all, uid) "(" all "::boolean OR d.owner_id = " uid ")"
/* A session of the scope ($1 its client's id, okey the owner key). */
#define SES_OF_SCOPE(okey) "coalesce(s.owner_id, '') = " okey " AND s.client_id = $1"

#define SESSION_SELECT                                                                  \
    "SELECT s.client_id, s.created_at, s.last_active, s.document_id, s.title, "        \
    "(SELECT count(*) FROM messages m WHERE m.session_id = s.id), d.filename, "        \
    "s.owner_id FROM sessions s LEFT JOIN documents d ON d.id = s.document_id "

#define CHUNK_COLS                                                                      \
    "c.document_id, c.seq, c.pos_start, c.pos_end, c.n_chars, c.est_tokens, c.tokens, " \
    "c.tokens_key, c.page_first, c.page_last, c.label_first, c.label_last, c.heading"

#define CACHE_COLS                                                                      \
    "cache_status, cache_entry_id, cache_tokens, cache_bytes, cache_tier, cache_ms, "   \
    "cached_at, cache_error"

#define PART_COLS                                                                       \
    "document_id, plan_key, seq, chunk_first, chunk_last, tokens, content_length, "     \
    CACHE_COLS

#define CACHE_NONE                                                                      \
    "cache_status = 'none', cache_entry_id = NULL, cache_tokens = NULL, "               \
    "cache_bytes = NULL, cache_tier = NULL, cache_ms = NULL, cached_at = NULL, "        \
    "cache_error = NULL"

#define USER_COLS_HASH "u.id, u.name, u.password_hash, u.role, u.disabled, u.created_at, " \
                       "u.updated_at"
#define USER_COLS "u.id, u.name, NULL, u.role, u.disabled, u.created_at, u.updated_at"
#define USER_NCOLS 7
#define LOGIN_COLS "l.id, l.user_id, l.created_at, l.last_seen_at, l.expires_at, l.idle_ms, " \
                   "l.client_addr, l.user_agent"
#define LOGIN_NCOLS 8
#define TOKEN_COLS_HASH "t.id, t.user_id, t.name, t.token_hash, t.scope, t.created_at, " \
                        "t.expires_at, t.last_used_at"
#define TOKEN_COLS "t.id, t.user_id, t.name, NULL, t.scope, t.created_at, t.expires_at, " \
                   "t.last_used_at"
#define TOKEN_NCOLS 8

/* A transaction-scoped advisory lock on a text key ($1). */
#define LOCK_SQL "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"

typedef enum {
    ST_LOCK,
    ST_DOC_INSERT,
    ST_CHUNK_INSERT,
    ST_DOC_SET_CHARS,
    ST_DOC_GET,
    ST_DOC_GET_W,
    ST_DOC_BY_SHA,
    ST_DOC_SHA_SOURCE,
    ST_DOC_NAME_CLASH,
    ST_DOC_TEXT,
    ST_DOC_LIST,
    ST_DOC_DELETE,
    ST_DOC_SET_TOKENS,
    ST_DOC_SET_OCR,
    ST_DOC_SET_CACHE,
    ST_DOC_RESET_CACHE,
    ST_DOC_RESET_CACHING,
    ST_DOC_SEARCH,
    ST_DOC_VISIBLE,
    ST_DOC_SET_SHARED,
    ST_DOC_UNSHARE_SETS,
    ST_DOC_UNSHARE_SESSIONS,
    ST_FILE_REFS,
    ST_COPY_DOC,
    ST_COPY_TEXT,
    ST_COPY_MARKS,
    ST_COPY_CHUNKS,
    ST_COPY_PARTS,
    ST_SES_INSERT,
    ST_SES_GET,
    ST_SES_TOUCH,
    ST_SES_TOUCH_KEY,
    ST_SES_SET_DOC,
    ST_SES_SET_TITLE,
    ST_SES_LIST,
    ST_SES_DELETE,
    ST_SES_DELETE_IDLE,
    ST_SES_KEY,
    ST_MSG_INSERT,
    ST_MSG_LIST,
    ST_MSG_COUNT,
    ST_DOC_EXISTS,
    ST_MARK_DELETE,
    ST_MARK_INSERT,
    ST_MARK_LIST,
    ST_CHUNK_DELETE,
    ST_CHUNK_ADD,
    ST_CHUNK_SET_TOKENS,
    ST_CHUNK_LIST,
    ST_CHUNK_COUNT,
    ST_CHUNK_GET,
    ST_CHUNK_SEARCH,
    ST_PARTS_DELETE_DOC,
    ST_PARTS_DELETE_KEY,
    ST_PART_INSERT,
    ST_PARTS_LIST,
    ST_PART_SET_CACHE,
    ST_PARTS_RESET_CACHE,
    ST_PARTS_RESET_CACHING,
    ST_SESDOC_DELETE,
    ST_SESDOC_INSERT,
    ST_SESDOC_LIST,
    ST_COLL_INSERT,
    ST_COLLDOC_INSERT,
    ST_COLL_GET,
    ST_COLLDOC_LIST,
    ST_USER_INSERT,
    ST_USER_GET,
    ST_USER_BY_NAME,
    ST_USER_LIST,
    ST_USER_STATE,
    ST_USER_COUNT,
    ST_USER_SET_ROLE,
    ST_USER_SET_DISABLED,
    ST_USER_SET_PASSWORD,
    ST_USER_DELETE,
    ST_USER_DOCS,
    ST_USER_LOCK_FILES,
    ST_USER_USAGE,
    ST_ADOPT_CLASH,
    ST_ADOPT_DOCS,
    ST_ADOPT_SESSIONS,
    ST_LOGIN_INSERT,
    ST_LOGIN_GET,
    ST_LOGIN_LOOKUP,
    ST_LOGIN_TOUCH,
    ST_LOGIN_LIST,
    ST_LOGIN_DELETE,
    ST_LOGIN_DELETE_USER,
    ST_LOGIN_SWEEP,
    ST_TOKEN_INSERT,
    ST_TOKEN_GET,
    ST_TOKEN_LIST,
    ST_TOKEN_LOOKUP,
    ST_TOKEN_TOUCH,
    ST_TOKEN_DELETE,
    ST_TOKEN_DELETE_USER,
    ST_TOKEN_DELETE_ADMIN,
    ST_AUDIT_INSERT,
    ST_AUDIT_TRIM,
    ST_AUDIT_PRUNE,
    ST_JOB_CLAIM,
    ST_TOKEN_ALL,
    ST_COLL_IDS,
    ST_SETTING_SET,
    ST_SETTING_GET,
    ST_AUDIT_LIST,
    ST_COUNT
} stmt_id_t;

static const char *const stmt_sql[ST_COUNT] = {
    [ST_LOCK] = LOCK_SQL,
    [ST_DOC_INSERT] =
        "INSERT INTO documents (id, filename, stored_name, content_type, file_size, sha256, "
        "uploaded_at, n_chars, n_tokens, owner_id, shared) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    [ST_CHUNK_INSERT] =
        "INSERT INTO document_chunks (document_id, seq, text) VALUES ($1, $2, $3)",
    [ST_DOC_SET_CHARS] = "UPDATE documents SET n_chars = $2 WHERE id = $1",
    /* $1 id, $2 all, $3 uid */
    [ST_DOC_GET] = "SELECT " DOC_COLS " FROM documents d WHERE d.id = $1 AND "
                   DOC_READABLE("$2", "$3"),
    [ST_DOC_GET_W] = "SELECT " DOC_COLS " FROM documents d WHERE d.id = $1 AND "
                     DOC_WRITABLE("$2", "$3") " FOR UPDATE OF d",
    /* $1 sha256, $2 uid: the scope's own; in local mode anyone's, the first */
    [ST_DOC_BY_SHA] = "SELECT " DOC_COLS " FROM documents d WHERE d.sha256 = $1 "
                      "AND ($2::text IS NULL OR d.owner_id = $2) ORDER BY d.rid LIMIT 1",
    [ST_DOC_SHA_SOURCE] = "SELECT id, stored_name FROM documents WHERE sha256 = $1 "
                          "ORDER BY rid LIMIT 1",
    [ST_DOC_NAME_CLASH] = "SELECT 1 FROM documents WHERE stored_name = $1 AND sha256 <> $2 "
                          "LIMIT 1",
    [ST_DOC_TEXT] = "SELECT c.text FROM documents d "
                    "LEFT JOIN document_chunks c ON c.document_id = d.id "
                    "WHERE d.id = $1 ORDER BY c.seq",
    [ST_DOC_LIST] = "SELECT " DOC_COLS " FROM documents d WHERE " DOC_READABLE("$1", "$2")
                    " ORDER BY d.uploaded_at DESC, d.rid DESC",
    [ST_DOC_DELETE] = "DELETE FROM documents WHERE id = $1",
    [ST_DOC_SET_TOKENS] = "UPDATE documents SET n_tokens = $2 WHERE id = $1",
    [ST_DOC_SET_OCR] = "UPDATE documents SET ocr_pages = $2, ocr_confidence = $3 WHERE id = $1",
    [ST_DOC_SET_CACHE] =
        "UPDATE documents SET cache_status = $2, cache_entry_id = $3, cache_tokens = $4, "
        "cache_bytes = $5, cache_tier = $6, cache_ms = $7, cached_at = $8, cache_error = $9 "
        "WHERE id = $1",
    [ST_DOC_RESET_CACHE] =
        "UPDATE documents SET " CACHE_NONE " "
        "WHERE cache_status <> 'none' OR cache_entry_id IS NOT NULL "
        "OR cache_tokens IS NOT NULL OR cache_bytes IS NOT NULL OR cache_tier IS NOT NULL "
        "OR cache_ms IS NOT NULL OR cached_at IS NOT NULL OR cache_error IS NOT NULL",
    [ST_DOC_RESET_CACHING] =
        "UPDATE documents SET " CACHE_NONE " WHERE cache_status = 'caching'",
    /* $1 the tsquery text, $2 limit, $3 all, $4 uid; a document ranks as
     * its best-matching piece */
    [ST_DOC_SEARCH] = "SELECT " DOC_COLS " FROM (SELECT c.document_id AS id, "
                      "max(ts_rank(c.tsv, q)) AS r FROM document_chunks c, "
                      "to_tsquery('kvchat_words', $1) q WHERE c.tsv @@ q "
                      "GROUP BY c.document_id) m JOIN documents d ON d.id = m.id "
                      "WHERE " DOC_READABLE("$3", "$4") " ORDER BY m.r DESC, d.rid LIMIT $2",
    [ST_DOC_VISIBLE] = "SELECT 1 FROM documents d WHERE d.id = $1 AND "
                       DOC_READABLE("$2", "$3"),
    [ST_DOC_SET_SHARED] = "UPDATE documents SET shared = $2 WHERE id = $1",
    [ST_DOC_UNSHARE_SETS] = "DELETE FROM session_documents WHERE document_id = $1 AND "
                            "session_id IN (SELECT id FROM sessions "
                            "WHERE owner_id IS DISTINCT FROM $2::text)",
    [ST_DOC_UNSHARE_SESSIONS] = "UPDATE sessions SET document_id = NULL "
                                "WHERE document_id = $1 AND owner_id IS DISTINCT FROM $2::text",
    [ST_FILE_REFS] = "SELECT count(*) FROM documents WHERE stored_name = $1",
    [ST_COPY_DOC] =
        "INSERT INTO documents (id, owner_id, shared, filename, stored_name, content_type, "
        "file_size, sha256, uploaded_at, n_chars, n_tokens) "
        "SELECT $1, $2, false, $3, stored_name, content_type, file_size, sha256, $4, n_chars, "
        "n_tokens FROM documents WHERE id = $5",
    [ST_COPY_TEXT] = "INSERT INTO document_chunks (document_id, seq, text) "
                     "SELECT $1, seq, text FROM document_chunks WHERE document_id = $2 "
                     "ORDER BY seq",
    [ST_COPY_MARKS] = "INSERT INTO document_marks (document_id, seq, kind, pos, number, label) "
                      "SELECT $1, seq, kind, pos, number, label FROM document_marks "
                      "WHERE document_id = $2",
    [ST_COPY_CHUNKS] =
        "INSERT INTO chunks (document_id, seq, pos_start, pos_end, n_chars, est_tokens, "
        "tokens, tokens_key, page_first, page_last, label_first, label_last, heading, "
        "content, index_text) "
        "SELECT $1, seq, pos_start, pos_end, n_chars, est_tokens, tokens, tokens_key, "
        "page_first, page_last, label_first, label_last, heading, content, index_text "
        "FROM chunks WHERE document_id = $2 ORDER BY seq",
    [ST_COPY_PARTS] =
        "INSERT INTO document_parts (document_id, plan_key, seq, chunk_first, chunk_last, "
        "tokens, content_length) SELECT $1, plan_key, seq, chunk_first, chunk_last, tokens, "
        "content_length FROM document_parts WHERE document_id = $2",
    /* $1 key, $2 owner, $3 client id, $4 now, $5 document, $6 title; a
     * session of this owner and client id that appeared meanwhile wins */
    [ST_SES_INSERT] = "INSERT INTO sessions (id, owner_id, client_id, created_at, last_active, "
                      "document_id, title) VALUES ($1, $2, $3, $4, $4, $5, $6) "
                      "ON CONFLICT ((coalesce(owner_id, '')), client_id) DO NOTHING",
    /* $1 client id, $2 okey */
    [ST_SES_GET] = SESSION_SELECT "WHERE " SES_OF_SCOPE("$2"),
    /* $1 client id, $2 now, $3 okey */
    [ST_SES_TOUCH] = "UPDATE sessions AS s SET last_active = greatest(last_active, $2) "
                     "WHERE " SES_OF_SCOPE("$3"),
    [ST_SES_TOUCH_KEY] = "UPDATE sessions SET last_active = greatest(last_active, $2) "
                         "WHERE id = $1",
    [ST_SES_SET_DOC] = "UPDATE sessions SET document_id = $2 WHERE id = $1",
    /* $1 client id, $2 title, $3 okey */
    [ST_SES_SET_TITLE] = "UPDATE sessions AS s SET title = $2 WHERE " SES_OF_SCOPE("$3"),
    /* $1 limit, $2 okey */
    [ST_SES_LIST] = SESSION_SELECT "WHERE coalesce(s.owner_id, '') = $2 "
                    "ORDER BY s.last_active DESC, s.rid DESC LIMIT $1",
    /* $1 client id, $2 okey */
    [ST_SES_DELETE] = "DELETE FROM sessions AS s WHERE " SES_OF_SCOPE("$2"),
    [ST_SES_DELETE_IDLE] = "DELETE FROM sessions WHERE last_active < $1",
    [ST_SES_KEY] = "SELECT s.id, s.document_id FROM sessions s WHERE " SES_OF_SCOPE("$2"),
    [ST_MSG_INSERT] = "INSERT INTO messages (session_id, role, content, created_at, incomplete, "
                      "meta) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    /* $1 client id, $2 limit (NULL all), $3 okey */
    [ST_MSG_LIST] = "SELECT id, $1::text, role, content, created_at, incomplete, meta FROM "
                    "(SELECT id, role, content, created_at, incomplete, meta FROM messages "
                    "WHERE session_id = (SELECT s.id FROM sessions s WHERE " SES_OF_SCOPE("$3")
                    ") ORDER BY id DESC LIMIT $2) m ORDER BY id",
    [ST_MSG_COUNT] = "SELECT (SELECT count(*) FROM messages m WHERE m.session_id = s.id) "
                     "FROM sessions s WHERE " SES_OF_SCOPE("$2"),
    [ST_DOC_EXISTS] = "SELECT 1 FROM documents WHERE id = $1",
    [ST_MARK_DELETE] = "DELETE FROM document_marks WHERE document_id = $1",
    [ST_MARK_INSERT] = "INSERT INTO document_marks (document_id, seq, kind, pos, number, label) "
                       "VALUES ($1, $2, $3, $4, $5, $6)",
    [ST_MARK_LIST] = "SELECT kind, pos, number, label FROM document_marks "
                     "WHERE document_id = $1 ORDER BY seq",
    [ST_CHUNK_DELETE] = "DELETE FROM chunks WHERE document_id = $1",
    [ST_CHUNK_ADD] =
        "INSERT INTO chunks (document_id, seq, pos_start, pos_end, n_chars, est_tokens, "
        "page_first, page_last, label_first, label_last, heading, content, index_text) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    [ST_CHUNK_SET_TOKENS] = "UPDATE chunks SET tokens = $3, tokens_key = $4 "
                            "WHERE document_id = $1 AND seq = $2",
    [ST_CHUNK_LIST] = "SELECT " CHUNK_COLS ", CASE WHEN $4::boolean THEN c.content END "
                      "FROM chunks c WHERE c.document_id = $1 AND c.seq >= $2 "
                      "ORDER BY c.seq LIMIT $3",
    [ST_CHUNK_COUNT] = "SELECT count(*) FROM chunks WHERE document_id = $1",
    [ST_CHUNK_GET] = "SELECT " CHUNK_COLS ", c.content FROM chunks c "
                     "WHERE c.document_id = $1 AND c.seq = $2",
    /* $1 the tsquery text, $2 an array of document ids, $3 limit */
    [ST_CHUNK_SEARCH] = "SELECT " CHUNK_COLS ", NULL, ts_rank(c.tsv, q) AS score "
                        "FROM chunks c, to_tsquery('kvchat_stem', $1) q "
                        "WHERE c.tsv @@ q AND c.document_id = ANY ($2::text[]) "
                        "ORDER BY score DESC, c.document_id, c.seq LIMIT $3",
    [ST_PARTS_DELETE_DOC] = "DELETE FROM document_parts WHERE document_id = $1",
    [ST_PARTS_DELETE_KEY] = "DELETE FROM document_parts WHERE document_id = $1 AND plan_key = $2",
    [ST_PART_INSERT] = "INSERT INTO document_parts (" PART_COLS ") VALUES "
                       "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    [ST_PARTS_LIST] = "SELECT " PART_COLS " FROM document_parts "
                      "WHERE document_id = $1 AND plan_key = $2 ORDER BY seq",
    [ST_PART_SET_CACHE] =
        "UPDATE document_parts SET cache_status = $4, cache_entry_id = $5, cache_tokens = $6, "
        "cache_bytes = $7, cache_tier = $8, cache_ms = $9, cached_at = $10, cache_error = $11 "
        "WHERE document_id = $1 AND plan_key = $2 AND seq = $3",
    [ST_PARTS_RESET_CACHE] =
        "UPDATE document_parts SET " CACHE_NONE " WHERE cache_status <> 'none'",
    [ST_PARTS_RESET_CACHING] =
        "UPDATE document_parts SET " CACHE_NONE " WHERE cache_status = 'caching'",
    [ST_SESDOC_DELETE] = "DELETE FROM session_documents WHERE session_id = $1",
    [ST_SESDOC_INSERT] = "INSERT INTO session_documents (session_id, pos, document_id) "
                         "VALUES ($1, $2, $3)",
    [ST_SESDOC_LIST] = "SELECT document_id FROM session_documents WHERE session_id = $1 "
                       "ORDER BY pos",
    [ST_COLL_INSERT] = "INSERT INTO collections (id, name, created_at) VALUES ($1, $2, $3)",
    [ST_COLLDOC_INSERT] = "INSERT INTO collection_documents (collection_id, pos, document_id) "
                          "VALUES ($1, $2, $3)",
    [ST_COLL_GET] = "SELECT name, created_at FROM collections WHERE id = $1",
    [ST_COLLDOC_LIST] = "SELECT document_id FROM collection_documents WHERE collection_id = $1 "
                        "ORDER BY pos",
    [ST_USER_INSERT] = "INSERT INTO users (id, name, password_hash, role, disabled, created_at, "
                       "updated_at) VALUES ($1, $2, $3, $4, false, $5, $5)",
    [ST_USER_GET] = "SELECT " USER_COLS_HASH " FROM users u WHERE u.id = $1",
    [ST_USER_BY_NAME] = "SELECT " USER_COLS_HASH " FROM users u WHERE lower(u.name) = lower($1)",
    [ST_USER_LIST] = "SELECT " USER_COLS " FROM users u "
                     "ORDER BY lower(u.name) COLLATE \"C\", u.id COLLATE \"C\"",
    /* role, disabled, the enabled admins; the row locked against changes */
    [ST_USER_STATE] = "SELECT role, disabled, (SELECT count(*) FROM users "
                      "WHERE role = 'admin' AND NOT disabled) FROM users WHERE id = $1 "
                      "FOR UPDATE",
    [ST_USER_COUNT] = "SELECT count(*), count(*) FILTER (WHERE role = 'admin' AND NOT disabled) "
                      "FROM users",
    [ST_USER_SET_ROLE] = "UPDATE users SET role = $2, updated_at = $3 WHERE id = $1",
    [ST_USER_SET_DISABLED] = "UPDATE users SET disabled = $2, updated_at = $3 WHERE id = $1",
    [ST_USER_SET_PASSWORD] = "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1",
    [ST_USER_DELETE] = "DELETE FROM users WHERE id = $1",
    [ST_USER_DOCS] = "SELECT " DOC_COLS " FROM documents d WHERE d.owner_id = $1 "
                     "ORDER BY d.uploaded_at DESC, d.rid DESC",
    /* the files of a user's documents, locked in one order (no deadlock
     * between two of these) */
    [ST_USER_LOCK_FILES] = "SELECT pg_advisory_xact_lock(hashtextextended('kvchat file ' || n, 0)) "
                           "FROM (SELECT DISTINCT stored_name COLLATE \"C\" AS n FROM documents "
                           "WHERE owner_id = $1 ORDER BY 1) f",
    [ST_USER_USAGE] = "SELECT coalesce(sum(file_size), 0), count(*), "
                      "EXISTS (SELECT 1 FROM users WHERE id = $1) "
                      "FROM documents WHERE owner_id = $1",
    [ST_ADOPT_CLASH] = "SELECT 1 FROM sessions a WHERE a.owner_id IS NULL AND EXISTS "
                       "(SELECT 1 FROM sessions s WHERE coalesce(s.owner_id, '') = $1 "
                       "AND s.client_id = a.client_id) LIMIT 1",
    [ST_ADOPT_DOCS] = "UPDATE documents SET owner_id = $1 WHERE owner_id IS NULL",
    [ST_ADOPT_SESSIONS] = "UPDATE sessions SET owner_id = $1 WHERE owner_id IS NULL",
    [ST_LOGIN_INSERT] = "INSERT INTO logins (id, user_id, created_at, last_seen_at, idle_ms, "
                        "expires_at, client_addr, user_agent) "
                        "SELECT $1, id, $3, $3, $4, $3::bigint + $4::bigint, $5, $6 FROM users "
                        "WHERE id = $2 AND NOT disabled FOR SHARE",
    [ST_LOGIN_GET] = "SELECT " LOGIN_COLS " FROM logins l WHERE l.id = $1",
    [ST_LOGIN_LOOKUP] = "SELECT " LOGIN_COLS ", " USER_COLS " FROM logins l "
                        "JOIN users u ON u.id = l.user_id "
                        "WHERE l.id = $1 AND l.expires_at > $2 AND NOT u.disabled",
    [ST_LOGIN_TOUCH] = "UPDATE logins SET last_seen_at = greatest(last_seen_at, $2), "
                       "expires_at = greatest(expires_at, $2 + idle_ms) "
                       "WHERE id = $1 AND expires_at > $2",
    [ST_LOGIN_LIST] = "SELECT " LOGIN_COLS " FROM logins l WHERE l.user_id = $1 "
                      "ORDER BY l.last_seen_at DESC, l.id COLLATE \"C\"",
    [ST_LOGIN_DELETE] = "DELETE FROM logins WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)",
    [ST_LOGIN_DELETE_USER] = "DELETE FROM logins WHERE user_id = $1 "
                             "AND id IS DISTINCT FROM $2::text",
    [ST_LOGIN_SWEEP] = "DELETE FROM logins WHERE expires_at <= $1",
    [ST_TOKEN_INSERT] = "INSERT INTO api_tokens (id, user_id, name, token_hash, scope, "
                        "created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    [ST_TOKEN_GET] = "SELECT " TOKEN_COLS_HASH " FROM api_tokens t WHERE t.id = $1",
    [ST_TOKEN_LIST] = "SELECT " TOKEN_COLS " FROM api_tokens t WHERE t.user_id = $1 "
                      "ORDER BY t.created_at DESC, t.rid DESC",
    [ST_TOKEN_ALL] = "SELECT " TOKEN_COLS_HASH " FROM api_tokens t ORDER BY t.created_at, t.rid",
    [ST_COLL_IDS] = "SELECT id FROM collections ORDER BY created_at, id",
    [ST_TOKEN_LOOKUP] = "SELECT " TOKEN_COLS_HASH ", " USER_COLS " FROM api_tokens t "
                        "JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1 "
                        "AND (t.expires_at IS NULL OR t.expires_at > $2) AND NOT u.disabled",
    [ST_TOKEN_TOUCH] = "UPDATE api_tokens SET last_used_at = greatest(coalesce(last_used_at, 0), "
                       "$2) WHERE id = $1",
    [ST_TOKEN_DELETE] = "DELETE FROM api_tokens WHERE id = $1 AND "
                        "($2::text IS NULL OR user_id = $2)",
    [ST_TOKEN_DELETE_USER] = "DELETE FROM api_tokens WHERE user_id = $1",
    [ST_TOKEN_DELETE_ADMIN] = "DELETE FROM api_tokens WHERE user_id = $1 AND scope = 'admin'",
    [ST_AUDIT_INSERT] = "INSERT INTO audit_log (ts, actor_id, actor_name, action, target, "
                        "client_addr, detail) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    [ST_AUDIT_TRIM] = "DELETE FROM audit_log WHERE id <= $1",
    [ST_AUDIT_PRUNE] = "DELETE FROM audit_log WHERE id <= (SELECT max(id) FROM audit_log) - $1",
    [ST_JOB_CLAIM] = "INSERT INTO jobs (name, last_run) VALUES ($1, $2) ON CONFLICT (name) "
                     "DO UPDATE SET last_run = EXCLUDED.last_run "
                     "WHERE jobs.last_run <= $2::bigint - $3::bigint",
    [ST_SETTING_SET] = "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) "
                       "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
                       "updated_at = GREATEST(EXCLUDED.updated_at, settings.updated_at + 1)",
    [ST_SETTING_GET] = "SELECT value, updated_at FROM settings WHERE key = $1",
    [ST_AUDIT_LIST] = "SELECT id, ts, actor_id, actor_name, action, target, client_addr, detail "
                      "FROM audit_log WHERE ($1::text IS NULL OR actor_id = $1 "
                      "OR lower(actor_name) = lower($1)) AND ($2::text IS NULL OR action = $2) "
                      "ORDER BY id DESC LIMIT $3 OFFSET $4",
};

/* ---- Backend state -------------------------------------------------------- */

typedef struct conn {
    PGconn *pg;
    bool prepared[ST_COUNT];     /* by name "k<N>" on this connection */
    bool in_txn;                 /* between BEGIN and COMMIT/ROLLBACK */
    struct conn *next;           /* in the free list */
} conn_t;

struct store_backend {
    char *url;                   /* as given to PQconnectdb */
    pthread_mutex_t pool_mu;     /* guards free_list, n_conns */
    pthread_cond_t pool_cv;      /* a connection was returned or a slot freed */
    conn_t *free_list;
    int n_conns;                 /* open connections, in use or free */
};

/* ---- Result codes ----------------------------------------------------------- */

/* Translate a failed result (or none: out of memory or connection lost)
 * into STORE_*, by SQLSTATE class. Constraint and data errors are the
 * caller's to report; the others are logged with the server's message. */
static int pg_rc(PGconn *pg, const PGresult *r, const char *what)
{
    if (!r) {
        if (pg && PQstatus(pg) == CONNECTION_OK)
            return STORE_ENOMEM;
        log_error("store: %s: %s", what, pg ? PQerrorMessage(pg) : "no connection");
        return STORE_EIO;
    }
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorMessage(r);
    if (!state)
        state = "";
    if (strcmp(state, "23505") == 0 || strcmp(state, "23P01") == 0)
        return STORE_ECONFLICT;           /* unique, exclusion */
    if (strcmp(state, "23503") == 0)
        return STORE_ENOTFOUND;           /* foreign key */
    if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0) {
        if (strcmp(state, "22001") == 0 || strcmp(state, "22003") == 0)
            return STORE_ETOOBIG;         /* string or number too long */
        log_debug("store: %s: %s", what, msg);
        return STORE_EINVAL;              /* check, not null, invalid text (JSON) */
    }
    if (strcmp(state, "54000") == 0 || strcmp(state, "54001") == 0) {
        log_warn("store: %s: %s", what, msg);
        return STORE_ETOOBIG;             /* program limit: a tsvector too big */
    }
    if (strcmp(state, "53100") == 0 || strcmp(state, "53200") == 0) {
        log_error("store: %s: %s", what, msg);
        return strcmp(state, "53200") == 0 ? STORE_ENOMEM : STORE_EIO;
    }
    if (strncmp(state, "40", 2) == 0 || strcmp(state, "55P03") == 0 ||
        strcmp(state, "57014") == 0) {
        log_warn("store: %s: %s", what, msg);
        return STORE_EBUSY;               /* deadlock, serialization, lock timeout */
    }
    if (strncmp(state, "XX", 2) == 0) {
        log_error("store: %s: %s", what, msg);
        return STORE_ECORRUPT;
    }
    log_error("store: %s: %s%s%s", what, msg, state[0] ? " SQLSTATE " : "", state);
    return STORE_EIO;
}

/* ---- Parameters --------------------------------------------------------------- */

#define PMAX 16

/* The parameters of one statement: text values (NULL for SQL NULL), numbers
 * printed into num[]; a piece of text with a length is sent in binary
 * format (the bytes of a text value). */
typedef struct {
    int n;
    const char *v[PMAX];
    int len[PMAX];
    int fmt[PMAX];
    char num[PMAX][32];
} params_t;

static void p_text(params_t *p, const char *s)
{
    p->v[p->n] = s;
    p->len[p->n] = 0;
    p->fmt[p->n] = 0;
    p->n++;
}

static void p_textn(params_t *p, const char *s, size_t len)
{
    p->v[p->n] = s;
    p->len[p->n] = (int)len;
    p->fmt[p->n] = 1;
    p->n++;
}

static void p_int(params_t *p, int64_t v)
{
    snprintf(p->num[p->n], sizeof p->num[0], "%" PRId64, v);
    p_text(p, p->num[p->n]);
}

/* Negative numbers mean "unknown": NULL. */
static void p_opt_int(params_t *p, int64_t v)
{
    if (v >= 0)
        p_int(p, v);
    else
        p_text(p, NULL);
}

static void p_opt_real(params_t *p, double v)
{
    if (v >= 0) {
        snprintf(p->num[p->n], sizeof p->num[0], "%.17g", v);
        p_text(p, p->num[p->n]);
    } else {
        p_text(p, NULL);
    }
}

static void p_bool(params_t *p, bool v)
{
    p_text(p, v ? "true" : "false");
}

/* A LIMIT: 0 (all) and anything beyond int64 are NULL (no limit). */
static void p_limit(params_t *p, size_t limit)
{
    if (limit == 0 || (uint64_t)limit > (uint64_t)INT64_MAX)
        p_text(p, NULL);
    else
        p_int(p, (int64_t)limit);
}

/* The scope's "all" and user (DOC_READABLE / DOC_WRITABLE). */
static void p_scope_doc(params_t *p, const store_scope_t *scope)
{
    p_bool(p, !scope || scope->admin);
    p_text(p, scope ? scope->user_id : NULL);
}

/* The scope's owner key of sessions ('' in local mode). */
static void p_okey(params_t *p, const store_scope_t *scope)
{
    p_text(p, scope ? scope->user_id : "");
}

static const char *scope_owner(const store_scope_t *scope)
{
    return scope ? scope->user_id : NULL;
}

/* ---- Results ------------------------------------------------------------------ */

/* Copy column `col` of row i into *out (NULL for SQL NULL). 0 or -1
 * (out of memory). */
static int col_dup(const PGresult *r, int i, int col, char **out)
{
    if (PQgetisnull(r, i, col)) {
        *out = NULL;
        return 0;
    }
    *out = strdup(PQgetvalue(r, i, col));
    return *out ? 0 : -1;
}

static int64_t col_int(const PGresult *r, int i, int col)
{
    return PQgetisnull(r, i, col) ? 0 : strtoll(PQgetvalue(r, i, col), NULL, 10);
}

static int64_t col_opt_int(const PGresult *r, int i, int col)
{
    return PQgetisnull(r, i, col) ? -1 : strtoll(PQgetvalue(r, i, col), NULL, 10);
}

static double col_opt_real(const PGresult *r, int i, int col)
{
    return PQgetisnull(r, i, col) ? -1 : strtod(PQgetvalue(r, i, col), NULL);
}

static bool col_bool(const PGresult *r, int i, int col)
{
    return !PQgetisnull(r, i, col) && PQgetvalue(r, i, col)[0] == 't';
}

static int row_cache_at(const PGresult *r, int i, int c0, store_cache_t *c)
{
    if (col_dup(r, i, c0 + 1, &c->entry_id) || col_dup(r, i, c0 + 4, &c->tier) ||
        col_dup(r, i, c0 + 7, &c->error))
        return -1;
    if (store_cache_status_parse(PQgetvalue(r, i, c0), &c->status) != STORE_OK)
        c->status = STORE_CACHE_NONE;   /* cannot happen: CHECK constraint */
    c->tokens = col_opt_int(r, i, c0 + 2);
    c->bytes = col_opt_int(r, i, c0 + 3);
    c->ms = col_opt_real(r, i, c0 + 5);
    c->cached_at = col_opt_int(r, i, c0 + 6);
    return 0;
}

/* Fill *d (initialized) from row i of a DOC_COLS result. On STORE_ENOMEM
 * *d is cleaned up. */
static int row_doc(const PGresult *r, int i, store_doc_t *d)
{
    if (col_dup(r, i, 0, &d->id) || col_dup(r, i, 1, &d->filename) ||
        col_dup(r, i, 2, &d->stored_name) || col_dup(r, i, 3, &d->content_type) ||
        col_dup(r, i, 5, &d->sha256) || row_cache_at(r, i, 9, &d->cache) ||
        col_dup(r, i, 19, &d->owner_id) || col_dup(r, i, 21, &d->ocr_pages)) {
        store_doc_cleanup(d);
        return STORE_ENOMEM;
    }
    d->file_size = col_int(r, i, 4);
    d->uploaded_at = col_int(r, i, 6);
    d->n_chars = col_int(r, i, 7);
    d->n_tokens = col_opt_int(r, i, 8);
    d->n_pages = col_int(r, i, 17);
    d->n_chunks = col_int(r, i, 18);
    d->shared = col_bool(r, i, 20);
    d->ocr_confidence = (int)col_opt_int(r, i, 22);
    return STORE_OK;
}

static int row_session(const PGresult *r, int i, store_session_t *ss)
{
    if (col_dup(r, i, 0, &ss->id) || col_dup(r, i, 3, &ss->document_id) ||
        col_dup(r, i, 4, &ss->title) || col_dup(r, i, 6, &ss->document_filename) ||
        col_dup(r, i, 7, &ss->owner_id)) {
        store_session_cleanup(ss);
        return STORE_ENOMEM;
    }
    ss->created_at = col_int(r, i, 1);
    ss->last_active = col_int(r, i, 2);
    ss->message_count = col_int(r, i, 5);
    return STORE_OK;
}

static int row_msg(const PGresult *r, int i, store_msg_t *m)
{
    if (col_dup(r, i, 1, &m->session_id) || col_dup(r, i, 3, &m->content) ||
        col_dup(r, i, 6, &m->meta)) {
        store_msg_cleanup(m);
        return STORE_ENOMEM;
    }
    m->id = col_int(r, i, 0);
    if (store_role_parse(PQgetvalue(r, i, 2), &m->role) != STORE_OK)
        m->role = STORE_ROLE_USER; /* cannot happen: CHECK constraint */
    m->created_at = col_int(r, i, 4);
    m->incomplete = col_bool(r, i, 5);
    return STORE_OK;
}

static int row_user(const PGresult *r, int i, int c0, store_user_t *u)
{
    if (col_dup(r, i, c0, &u->id) || col_dup(r, i, c0 + 1, &u->name) ||
        col_dup(r, i, c0 + 2, &u->password_hash)) {
        store_user_cleanup(u);
        return STORE_ENOMEM;
    }
    if (store_user_role_parse(PQgetvalue(r, i, c0 + 3), &u->role) != STORE_OK)
        u->role = STORE_USER_ROLE_USER; /* cannot happen: CHECK constraint */
    u->disabled = col_bool(r, i, c0 + 4);
    u->created_at = col_int(r, i, c0 + 5);
    u->updated_at = col_int(r, i, c0 + 6);
    return STORE_OK;
}

static int row_login(const PGresult *r, int i, store_login_t *l)
{
    if (col_dup(r, i, 0, &l->id) || col_dup(r, i, 1, &l->user_id) ||
        col_dup(r, i, 6, &l->client_addr) || col_dup(r, i, 7, &l->user_agent)) {
        store_login_cleanup(l);
        return STORE_ENOMEM;
    }
    l->created_at = col_int(r, i, 2);
    l->last_seen_at = col_int(r, i, 3);
    l->expires_at = col_int(r, i, 4);
    l->idle_ms = col_int(r, i, 5);
    return STORE_OK;
}

static int row_token(const PGresult *r, int i, store_token_t *t)
{
    if (col_dup(r, i, 0, &t->id) || col_dup(r, i, 1, &t->user_id) ||
        col_dup(r, i, 2, &t->name) || col_dup(r, i, 3, &t->hash)) {
        store_token_cleanup(t);
        return STORE_ENOMEM;
    }
    if (store_token_scope_parse(PQgetvalue(r, i, 4), &t->scope) != STORE_OK)
        t->scope = STORE_TOKEN_READ; /* cannot happen: CHECK constraint */
    t->created_at = col_int(r, i, 5);
    t->expires_at = col_opt_int(r, i, 6);
    t->last_used_at = col_opt_int(r, i, 7);
    return STORE_OK;
}

/* ---- Connections ---------------------------------------------------------- */

/* Server notices (an ignored word of a query, ...) are not errors. */
static void notice_quiet(void *arg, const char *message)
{
    (void)arg;
    log_debug("store: postgresql: %s", message);
}

static void conn_close(conn_t *c)
{
    if (!c)
        return;
    PQfinish(c->pg);
    free(c);
}

/* Run SQL without parameters on c (BEGIN, COMMIT, locks, DDL). */
static int conn_exec(conn_t *c, const char *sql, const char *what)
{
    PGresult *r = PQexec(c->pg, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? STORE_OK : pg_rc(c->pg, r, what);
    PQclear(r);
    return rc;
}

/* The first value of a one-row query without parameters, copied into
 * buf (cap bytes); "" for NULL or no row. */
static int conn_value(conn_t *c, const char *sql, char *buf, size_t cap)
{
    PGresult *r = PQexec(c->pg, sql);
    int rc = r && PQresultStatus(r) == PGRES_TUPLES_OK ? STORE_OK : pg_rc(c->pg, r, sql);
    buf[0] = '\0';
    if (rc == STORE_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        snprintf(buf, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}

/* Connect to url: UTF-8 both ways, quiet notices. */
static int pg_connect(const char *url, PGconn **out)
{
    *out = NULL;
    PGconn *pg = PQconnectdb(url);
    if (!pg)
        return STORE_ENOMEM;
    if (PQstatus(pg) != CONNECTION_OK) {
        log_error("store: cannot connect to PostgreSQL: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return STORE_EIO;
    }
    PQsetNoticeProcessor(pg, notice_quiet, NULL);
    const char *enc = PQparameterStatus(pg, "server_encoding");
    if (!enc || strcmp(enc, "UTF8") != 0) {
        log_error("store: the PostgreSQL database uses encoding %s; kvchat needs UTF8",
                  enc ? enc : "(unknown)");
        PQfinish(pg);
        return STORE_EUNSUPPORTED;
    }
    if (PQsetClientEncoding(pg, "UTF8") != 0) {
        log_error("store: cannot set the client encoding: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return STORE_EIO;
    }
    *out = pg;
    return STORE_OK;
}

static int conn_open(struct store_backend *b, conn_t **out)
{
    *out = NULL;
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return STORE_ENOMEM;
    int rc = pg_connect(b->url, &c->pg);
    if (rc != STORE_OK) {
        free(c);
        return rc;
    }
    *out = c;
    return STORE_OK;
}

/* Reset a broken connection once: its prepared statements are gone. */
static bool conn_revive(conn_t *c)
{
    PQreset(c->pg);
    memset(c->prepared, 0, sizeof c->prepared);
    c->in_txn = false;
    if (PQstatus(c->pg) != CONNECTION_OK)
        return false;
    PQsetNoticeProcessor(c->pg, notice_quiet, NULL);
    return PQsetClientEncoding(c->pg, "UTF8") == 0;
}

/* Take a connection for this thread: a free one (reset once if found
 * broken), a new one while fewer than STORE_PG_POOL are open, else wait. */
static int conn_get(struct store_backend *b, conn_t **out)
{
    pthread_mutex_lock(&b->pool_mu);
    while (!b->free_list && b->n_conns >= STORE_PG_POOL)
        pthread_cond_wait(&b->pool_cv, &b->pool_mu);
    if (b->free_list) {
        conn_t *c = b->free_list;
        b->free_list = c->next;
        pthread_mutex_unlock(&b->pool_mu);
        if (PQstatus(c->pg) == CONNECTION_OK || conn_revive(c)) {
            *out = c;
            return STORE_OK;
        }
        log_warn("store: PostgreSQL connection lost: %s", PQerrorMessage(c->pg));
        conn_close(c);
        int rc = conn_open(b, out);
        if (rc != STORE_OK) {
            pthread_mutex_lock(&b->pool_mu);
            b->n_conns--;
            pthread_cond_signal(&b->pool_cv);
            pthread_mutex_unlock(&b->pool_mu);
        }
        return rc;
    }
    b->n_conns++; /* reserve the slot, open outside the lock */
    pthread_mutex_unlock(&b->pool_mu);
    int rc = conn_open(b, out);
    if (rc != STORE_OK) {
        pthread_mutex_lock(&b->pool_mu);
        b->n_conns--;
        pthread_cond_signal(&b->pool_cv);
        pthread_mutex_unlock(&b->pool_mu);
    }
    return rc;
}

/* Give c back, outside any transaction; a broken connection is closed and
 * its slot freed. */
static void conn_put(struct store_backend *b, conn_t *c)
{
    if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        conn_exec(c, "ROLLBACK", "rollback");
    c->in_txn = false;
    pthread_mutex_lock(&b->pool_mu);
    if (PQstatus(c->pg) == CONNECTION_OK) {
        c->next = b->free_list;
        b->free_list = c;
    } else {
        conn_close(c);
        b->n_conns--;
    }
    pthread_cond_signal(&b->pool_cv);
    pthread_mutex_unlock(&b->pool_mu);
}

static int txn_begin(conn_t *c, bool read_only)
{
    int rc = conn_exec(c, read_only ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                                    : "BEGIN", "begin");
    c->in_txn = rc == STORE_OK;
    return rc;
}

/* COMMIT if rc is STORE_OK (a failing COMMIT becomes the result), else
 * ROLLBACK. Returns the final code. */
static int txn_end(conn_t *c, int rc)
{
    if (rc == STORE_OK)
        rc = conn_exec(c, "COMMIT", "commit");
    if (rc != STORE_OK && PQstatus(c->pg) == CONNECTION_OK &&
        PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        conn_exec(c, "ROLLBACK", "rollback");
    c->in_txn = false;
    return rc;
}

/* The name statement `id` is prepared under: "k<id>". */
static void stmt_name(stmt_id_t id, char name[16])
{
    snprintf(name, 16, "k%d", (int)id);
}

/* Prepare statement `id` on c unless it is. Returns NULL when it is
 * ready, else the failed result (the caller clears it). */
static PGresult *stmt_prepare(conn_t *c, stmt_id_t id)
{
    if (c->prepared[id])
        return NULL;
    char name[16];
    stmt_name(id, name);
    PGresult *r = PQprepare(c->pg, name, stmt_sql[id], 0, NULL);
    if (r && PQresultStatus(r) == PGRES_COMMAND_OK) {
        c->prepared[id] = true;
        PQclear(r);
        return NULL;
    }
    return r ? r : PQmakeEmptyPGresult(c->pg, PGRES_FATAL_ERROR);
}

/* Run statement `id` with parameters p; on success *res (may be NULL: the
 * result is dropped) receives the result, which the caller PQclear()s.
 * Prepares the statement on first use. A statement that fails because
 * the connection broke outside a transaction is retried once. */
static int q_run(conn_t *c, stmt_id_t id, const params_t *p, PGresult **res)
{
    if (res)
        *res = NULL;
    char name[16];
    stmt_name(id, name);
    for (int attempt = 0;; attempt++) {
        PGresult *r = stmt_prepare(c, id);
        if (!r)
            r = PQexecPrepared(c->pg, name, p ? p->n : 0, p ? p->v : NULL,
                               p ? p->len : NULL, p ? p->fmt : NULL, 0);
        ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            if (res)
                *res = r;
            else
                PQclear(r);
            return STORE_OK;
        }
        if (attempt == 0 && !c->in_txn && PQstatus(c->pg) != CONNECTION_OK &&
            conn_revive(c)) {
            PQclear(r);
            continue;
        }
        int rc = pg_rc(c->pg, r, stmt_sql[id]);
        PQclear(r);
        return rc;
    }
}

/* Rows changed by a command's result. */
static int64_t changes(const PGresult *r)
{
    return strtoll(PQcmdTuples((PGresult *)r), NULL, 10);
}

/* Run a statement that changes rows; *n (may be NULL) receives how many. */
static int q_change(conn_t *c, stmt_id_t id, const params_t *p, int64_t *n)
{
    PGresult *r;
    int rc = q_run(c, id, p, &r);
    if (n)
        *n = rc == STORE_OK ? changes(r) : 0;
    PQclear(r);
    return rc;
}

/* Take the transaction-scoped advisory lock named `kind` + `key`. */
static int lock_key(conn_t *c, const char *kind, const char *key)
{
    char buf[STORE_NAME_MAX + 64];
    snprintf(buf, sizeof buf, "kvchat %s %s", kind, key);
    params_t p = {0};
    p_text(&p, buf);
    return q_run(c, ST_LOCK, &p, NULL);
}

/* One row of statement `id` into row(r, 0, out): STORE_ENOTFOUND for none. */
static int q_one(conn_t *c, stmt_id_t id, const params_t *p,
                 int (*row)(const PGresult *r, int i, void *out), void *out)
{
    PGresult *r;
    int rc = q_run(c, id, p, &r);
    if (rc == STORE_OK)
        rc = PQntuples(r) > 0 ? (row ? row(r, 0, out) : STORE_OK) : STORE_ENOTFOUND;
    PQclear(r);
    return rc;
}

/* Every row of statement `id` through row(r, i, ud). */
static int q_rows(conn_t *c, stmt_id_t id, const params_t *p,
                  int (*row)(const PGresult *r, int i, void *ud), void *ud)
{
    PGresult *r;
    int rc = q_run(c, id, p, &r);
    for (int i = 0; rc == STORE_OK && i < PQntuples(r); i++)
        rc = row(r, i, ud);
    PQclear(r);
    return rc;
}

static int row_doc_one(const PGresult *r, int i, void *out)
{
    return row_doc(r, i, out);
}

static int row_doc_item(const PGresult *r, int i, void *ud)
{
    store_doc_t d;
    store_doc_init(&d);
    int rc = row_doc(r, i, &d);
    return rc == STORE_OK ? store__doc_list_push(ud, &d) : rc;
}

static int row_session_one(const PGresult *r, int i, void *out)
{
    return row_session(r, i, out);
}

/* ---- Full-text queries ------------------------------------------------------ */

/* A growing output string of at most cap bytes. */
typedef struct {
    char *s;
    size_t n, cap;
    bool over;
} qbuf_t;

static void qb_put(qbuf_t *q, const char *s, size_t len)
{
    if (q->over || q->n + len + 1 > q->cap) {
        q->over = true;
        return;
    }
    memcpy(q->s + q->n, s, len);
    q->n += len;
    q->s[q->n] = '\0';
}

static void qb_str(qbuf_t *q, const char *s)
{
    qb_put(q, s, strlen(s));
}

typedef struct {
    const char *p;
    qbuf_t out;
    int depth;
} fts_t;

static void fts_space(fts_t *f)
{
    while (*f->p == ' ' || *f->p == '\t' || *f->p == '\n' || *f->p == '\r')
        f->p++;
}

/* An FTS5 bareword character: a letter or digit, '_', or any non-ASCII
 * byte. */
static bool fts_bare(char ch)
{
    unsigned char u = (unsigned char)ch;
    return u >= 0x80 || (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') ||
           (u >= 'A' && u <= 'Z') || u == '_';
}

/* Whether the next bareword is the operator `op`. */
static bool fts_is_op(const fts_t *f, const char *op)
{
    size_t n = strlen(op);
    return strncmp(f->p, op, n) == 0 && !fts_bare(f->p[n]);
}

static int fts_or(fts_t *f);

/* A term: "phrase" ("" inside is a quote) or bareword, then an optional
 * '*' (prefix), written as a quoted tsquery operand: its words are found
 * by the text search configuration, several words are a phrase. */
static int fts_term(fts_t *f)
{
    fts_space(f);
    if (*f->p == '(') {
        if (++f->depth > 32)
            return STORE_EINVAL;
        f->p++;
        qb_str(&f->out, "(");
        int rc = fts_or(f);
        fts_space(f);
        if (rc != STORE_OK || *f->p != ')')
            return STORE_EINVAL;
        f->p++;
        f->depth--;
        qb_str(&f->out, ")");
        return STORE_OK;
    }
    if (fts_is_op(f, "AND") || fts_is_op(f, "OR") || fts_is_op(f, "NOT") ||
        fts_is_op(f, "NEAR"))
        return STORE_EINVAL;
    qb_str(&f->out, "'");
    if (*f->p == '"') {
        f->p++;
        for (;;) {
            if (!*f->p)
                return STORE_EINVAL;   /* unterminated */
            if (*f->p == '"') {
                if (f->p[1] != '"')
                    break;
                f->p++;
            }
            if (*f->p == '\'' || *f->p == '\\')
                qb_str(&f->out, "\\");
            qb_put(&f->out, f->p, 1);
            f->p++;
        }
        f->p++;
    } else if (fts_bare(*f->p)) {
        while (fts_bare(*f->p))
            qb_put(&f->out, f->p++, 1);
    } else {
        return STORE_EINVAL;
    }
    qb_str(&f->out, "'");
    fts_space(f);
    if (*f->p == '*') {
        f->p++;
        qb_str(&f->out, ":*");
    }
    return STORE_OK;
}

/* t [NOT t]... : NOT binds tightest in FTS5. */
static int fts_not(fts_t *f)
{
    qb_str(&f->out, "(");
    int rc = fts_term(f);
    for (;;) {
        fts_space(f);
        if (rc != STORE_OK || !fts_is_op(f, "NOT"))
            break;
        f->p += 3;
        qb_str(&f->out, " & !");
        rc = fts_term(f);
    }
    qb_str(&f->out, ")");
    return rc;
}

/* n [AND] n ...: AND explicit or implied by adjacency. */
static int fts_and(fts_t *f)
{
    qb_str(&f->out, "(");
    int rc = fts_not(f);
    for (;;) {
        fts_space(f);
        if (rc != STORE_OK || !*f->p || *f->p == ')' || fts_is_op(f, "OR"))
            break;
        if (fts_is_op(f, "AND"))
            f->p += 3;
        qb_str(&f->out, " & ");
        rc = fts_not(f);
    }
    qb_str(&f->out, ")");
    return rc;
}

static int fts_or(fts_t *f)
{
    int rc = fts_and(f);
    for (;;) {
        fts_space(f);
        if (rc != STORE_OK || !fts_is_op(f, "OR"))
            break;
        f->p += 2;
        qb_str(&f->out, " | ");
        rc = fts_and(f);
    }
    return rc;
}

/* Translate an FTS5 query (see store.h) into tsquery text for
 * to_tsquery(): every term becomes one quoted operand (quotes and
 * backslashes escaped), so nothing typed is tsquery syntax; operators and
 * parentheses come only from this parser. *out is a heap string (caller
 * frees). STORE_EINVAL for a malformed query, STORE_ENOMEM. */
static int pg_fts_query(const char *query, char **out)
{
    *out = NULL;
    size_t cap = strlen(query) * 4 + 64;
    fts_t f = { query, { malloc(cap), 0, cap, false }, 0 };
    if (!f.out.s)
        return STORE_ENOMEM;
    f.out.s[0] = '\0';
    int rc = fts_or(&f);
    fts_space(&f);
    if (rc == STORE_OK && *f.p)
        rc = STORE_EINVAL;   /* a stray ')' */
    if (rc == STORE_OK && f.out.over)
        rc = STORE_ETOOBIG;
    if (rc != STORE_OK) {
        free(f.out.s);
        return rc;
    }
    *out = f.out.s;
    return STORE_OK;
}

/* ---- Schema migration ------------------------------------------------------- */

/* The text search configurations (see store_pg.h), with unaccent when it
 * is installed or can be. */
static int make_text_configs(conn_t *c)
{
    char schema[256];
    int rc = conn_exec(c, "SAVEPOINT unaccent", "savepoint");
    if (rc != STORE_OK)
        return rc;
    if (conn_exec(c, "CREATE EXTENSION IF NOT EXISTS unaccent", "create extension") != STORE_OK)
        rc = conn_exec(c, "ROLLBACK TO SAVEPOINT unaccent", "rollback to savepoint");
    if (rc == STORE_OK)
        rc = conn_value(c, "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
                        "ON n.oid = e.extnamespace WHERE e.extname = 'unaccent'",
                        schema, sizeof schema);
    if (rc != STORE_OK)
        return rc;
    char unaccent[600] = "";
    if (schema[0]) {
        char *q = PQescapeIdentifier(c->pg, schema, strlen(schema));
        if (!q)
            return STORE_ENOMEM;
        snprintf(unaccent, sizeof unaccent, "%s.unaccent, ", q);
        PQfreemem(q);
    } else {
        log_warn("store: the PostgreSQL extension unaccent is not available: "
                 "full-text search will not ignore accents");
    }
    char sql[2048];
    snprintf(sql, sizeof sql,
             "CREATE TEXT SEARCH DICTIONARY kvchat_english "
             "(TEMPLATE = snowball, Language = english);\n"
             "CREATE TEXT SEARCH CONFIGURATION kvchat_words (COPY = simple);\n"
             "ALTER TEXT SEARCH CONFIGURATION kvchat_words ALTER MAPPING FOR "
             "word, hword, hword_part, asciiword, asciihword, hword_asciipart "
             "WITH %ssimple;\n"
             "CREATE TEXT SEARCH CONFIGURATION kvchat_stem (COPY = simple);\n"
             "ALTER TEXT SEARCH CONFIGURATION kvchat_stem ALTER MAPPING FOR "
             "word, hword, hword_part, asciiword, asciihword, hword_asciipart "
             "WITH %skvchat_english;\n",
             unaccent, unaccent);
    return conn_exec(c, sql, "create text search configurations");
}

/* Migrations from version 4 on: pg_migrations[i] brings version 4 + i to
 * 5 + i (as store_sqlite.c's migrations do for SQLite). */
static const char *const pg_migrations[] = {
    /* 5: periodic jobs, claimed by one process of those sharing the store */
    "CREATE TABLE jobs (\n"
    "    name     TEXT NOT NULL PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),\n"
    "    last_run BIGINT NOT NULL\n"
    ");\n"
    /* and settings they all follow (the active model) */
    "CREATE TABLE settings (\n"
    "    key        TEXT NOT NULL PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 64),\n"
    "    value      TEXT NOT NULL CHECK (length(value) <= 4096),\n"
    "    updated_at BIGINT NOT NULL\n"
    ")",
    /* 6: the content types of the new extractors (slides, spreadsheets,
     * CSV, images), and which pages of a document were recognised from
     * images (OCR) with their mean confidence */
    "ALTER TABLE documents DROP CONSTRAINT IF EXISTS documents_content_type_check;\n"
    "ALTER TABLE documents ADD CONSTRAINT documents_content_type_check\n"
    "    CHECK (content_type IN ('txt','md','pdf','docx','odt','html','epub','pptx','odp',\n"
    "                            'xlsx','ods','csv','png','jpeg','tiff','webp'));\n"
    "ALTER TABLE documents ADD COLUMN ocr_pages TEXT\n"
    "    CHECK (ocr_pages IS NULL OR (length(ocr_pages) BETWEEN 1 AND 16384\n"
    "                                 AND ocr_pages !~ '[^0-9,]'));\n"
    "ALTER TABLE documents ADD COLUMN ocr_confidence INTEGER\n"
    "    CHECK (ocr_confidence IS NULL OR ocr_confidence BETWEEN 0 AND 100)",
    /* 7: nothing here. The SQLite backend's 7 indexes a document's chunks
     * in batches after writing them; here each chunk's tsvector is a
     * generated column, written with its row. */
    "SELECT 1",
};

_Static_assert(4 + (int)(sizeof pg_migrations / sizeof pg_migrations[0]) ==
                   STORE_PG_SCHEMA_VERSION,
               "STORE_PG_SCHEMA_VERSION must match the migrations");

/* Apply the migrations from version `from` on, and record the version. */
static int migrate_from(conn_t *c, int from)
{
    int rc = STORE_OK;
    for (int v = from; v < STORE_PG_SCHEMA_VERSION && rc == STORE_OK; v++)
        rc = conn_exec(c, pg_migrations[v - 4], "migrate schema");
    if (rc == STORE_OK && from < STORE_PG_SCHEMA_VERSION) {
        char sql[128];
        snprintf(sql, sizeof sql,
                 "UPDATE kvchat_meta SET value = '%d' WHERE key = 'schema_version'",
                 STORE_PG_SCHEMA_VERSION);
        rc = conn_exec(c, sql, "migrate schema");
        if (rc == STORE_OK)
            log_info("store: postgresql: migrated schema from version %d to %d", from,
                     STORE_PG_SCHEMA_VERSION);
    }
    return rc;
}

/* Bring the schema to STORE_PG_SCHEMA_VERSION under an advisory lock (one
 * process migrates, the others then find it done). */
static int migrate(conn_t *c)
{
    int rc = txn_begin(c, false);
    if (rc != STORE_OK)
        return rc;
    rc = conn_exec(c, "SELECT pg_advisory_xact_lock(hashtextextended('kvchat schema', 0))",
                   "lock schema");
    char has_meta[8], n_tables[32], app[64] = "", version[32] = "";
    if (rc == STORE_OK)
        rc = conn_value(c, "SELECT to_regclass('kvchat_meta') IS NOT NULL", has_meta,
                        sizeof has_meta);
    if (rc == STORE_OK)
        rc = conn_value(c, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
                        n_tables, sizeof n_tables);
    if (rc == STORE_OK && strcmp(has_meta, "t") == 0) {
        rc = conn_value(c, "SELECT value FROM kvchat_meta WHERE key = 'application'", app,
                        sizeof app);
        if (rc == STORE_OK)
            rc = conn_value(c, "SELECT value FROM kvchat_meta WHERE key = 'schema_version'",
                            version, sizeof version);
    }
    if (rc == STORE_OK) {
        bool meta = strcmp(has_meta, "t") == 0;
        if ((!meta && strcmp(n_tables, "0") != 0) || (meta && strcmp(app, "kvchat") != 0)) {
            log_error("store: the PostgreSQL schema holds tables that are not kvchat's "
                      "(%s tables, application '%s'); use an empty database or schema",
                      n_tables, app);
            rc = STORE_ESCHEMA;
        } else if (meta && atoi(version) > STORE_PG_SCHEMA_VERSION) {
            log_error("store: the PostgreSQL schema has version %s; this kvchat knows up to %d",
                      version, STORE_PG_SCHEMA_VERSION);
            rc = STORE_ESCHEMA;
        } else if (!meta) {
            rc = make_text_configs(c);
            if (rc == STORE_OK)
                rc = conn_exec(c, schema_v4, "create schema");
            if (rc == STORE_OK) {
                char sql[256];
                snprintf(sql, sizeof sql,
                         "CREATE TABLE kvchat_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                         "INSERT INTO kvchat_meta VALUES ('application', 'kvchat'), "
                         "('schema_version', '4')");
                rc = conn_exec(c, sql, "create schema");
            }
            if (rc == STORE_OK)
                rc = migrate_from(c, 4);
            if (rc == STORE_OK)
                log_info("store: postgresql: created schema version %d",
                         STORE_PG_SCHEMA_VERSION);
        } else if (atoi(version) < 4) {
            /* No older PostgreSQL schema exists: version 4 is the first. */
            log_error("store: the PostgreSQL schema has version %s, which no kvchat made",
                      version);
            rc = STORE_ESCHEMA;
        } else if (atoi(version) < STORE_PG_SCHEMA_VERSION) {
            rc = migrate_from(c, atoi(version));
        }
    }
    return txn_end(c, rc);
}

/* ---- Open and close --------------------------------------------------------- */

bool store_pg_url(const char *url)
{
    return url && (strncmp(url, "postgresql:", 11) == 0 || strncmp(url, "postgres:", 9) == 0);
}

int store_pg_exec(const char *url, const char *sql)
{
    PGconn *pg;
    int rc = pg_connect(url, &pg);
    if (rc != STORE_OK)
        return rc;
    conn_t c = { .pg = pg };
    rc = conn_exec(&c, sql, "exec");
    PQfinish(pg);
    return rc;
}

static void pg_close(store_backend_t *b)
{
    if (!b)
        return;
    conn_t *c = b->free_list;
    while (c) {
        conn_t *next = c->next;
        conn_close(c);
        c = next;
    }
    pthread_mutex_destroy(&b->pool_mu);
    pthread_cond_destroy(&b->pool_cv);
    free(b->url);
    free(b);
}

/* target: what follows "scheme:"; libpq gets the whole URL again. */
static int pg_open_url(const char *scheme, const char *target, store_backend_t **out)
{
    *out = NULL;
    if (!PQisthreadsafe()) {
        log_error("store: this libpq was built without thread support");
        return STORE_EUNSUPPORTED;
    }
    struct store_backend *b = calloc(1, sizeof *b);
    if (!b)
        return STORE_ENOMEM;
    size_t n = strlen(scheme) + 1 + strlen(target) + 1;
    b->url = malloc(n);
    if (!b->url) {
        free(b);
        return STORE_ENOMEM;
    }
    snprintf(b->url, n, "%s:%s", scheme, target);
    pthread_mutex_init(&b->pool_mu, NULL);
    pthread_cond_init(&b->pool_cv, NULL);
    conn_t *c = NULL;
    int rc = conn_get(b, &c);
    if (rc == STORE_OK) {
        rc = migrate(c);
        conn_put(b, c);
    }
    if (rc != STORE_OK) {
        log_error("store: cannot open the PostgreSQL store: %s", store_strerror(rc));
        pg_close(b);
        return rc;
    }
    *out = b;
    return STORE_OK;
}

static int pg_open(const char *target, store_backend_t **out)
{
    return pg_open_url("postgresql", target, out);
}

static int pg_open_alias(const char *target, store_backend_t **out)
{
    return pg_open_url("postgres", target, out);
}

/* The schema is kvchat's at our version, and every generated text index
 * value matches its text (they are the database's own, so a mismatch is
 * damage). */
static int pg_check(store_backend_t *b)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    char v[32];
    rc = conn_value(c, "SELECT value FROM kvchat_meta WHERE key = 'schema_version'", v,
                    sizeof v);
    if (rc == STORE_OK && atoi(v) != STORE_PG_SCHEMA_VERSION) {
        log_error("store: check: schema version %s", v);
        rc = STORE_ECORRUPT;
    }
    if (rc == STORE_OK)
        rc = conn_value(c, "SELECT (SELECT count(*) FROM document_chunks "
                        "WHERE tsv IS DISTINCT FROM to_tsvector('kvchat_words', text)) + "
                        "(SELECT count(*) FROM chunks "
                        "WHERE tsv IS DISTINCT FROM to_tsvector('kvchat_stem', index_text))",
                        v, sizeof v);
    if (rc == STORE_OK && strcmp(v, "0") != 0) {
        log_error("store: check: %s rows of the text index do not match their texts", v);
        rc = STORE_ECORRUPT;
    }
    conn_put(b, c);
    return rc;
}

/* ---- Documents ------------------------------------------------------------ */

static int insert_pieces(conn_t *c, const char *doc_id, store_text_src_t *text)
{
    int rc = STORE_OK;
    for (int64_t seq = 0; rc == STORE_OK; seq++) {
        const char *piece;
        size_t len;
        rc = store__text_next(text, &piece, &len);
        if (rc != STORE_OK || len == 0)
            break;
        params_t p = {0};
        p_text(&p, doc_id);
        p_int(&p, seq);
        p_textn(&p, piece, len);
        rc = q_run(c, ST_CHUNK_INSERT, &p, NULL);
    }
    return rc;
}

static int doc_by_sha(conn_t *c, const store_scope_t *scope, const char *sha256,
                      store_doc_t *out)
{
    params_t p = {0};
    p_text(&p, sha256);
    p_text(&p, scope ? scope->user_id : NULL);
    return q_one(c, ST_DOC_BY_SHA, &p, row_doc_one, out);
}

struct two_strs {
    char *a, *b;
};

static int row_two_strs(const PGresult *r, int i, void *out)
{
    struct two_strs *s = out;
    return col_dup(r, i, 0, &s->a) || col_dup(r, i, 1, &s->b) ? STORE_ENOMEM : STORE_OK;
}

/* Anyone's document of content sha256: its id and stored_name (heap
 * copies; NULL when there is none). */
static int doc_source(conn_t *c, const char *sha256, char **id, char **stored)
{
    struct two_strs s = { NULL, NULL };
    params_t p = {0};
    p_text(&p, sha256);
    int rc = q_one(c, ST_DOC_SHA_SOURCE, &p, row_two_strs, &s);
    if (rc == STORE_ENOTFOUND)
        rc = STORE_OK;
    if (rc != STORE_OK) {
        free(s.a);
        free(s.b);
        s.a = s.b = NULL;
    }
    *id = s.a;
    *stored = s.b;
    return rc;
}

static int doc_read_back(conn_t *c, const char *id, store_doc_t *out)
{
    params_t p = {0};
    p_text(&p, id);
    p_scope_doc(&p, NULL);
    int rc = q_one(c, ST_DOC_GET, &p, row_doc_one, out);
    return rc == STORE_ENOTFOUND ? STORE_EIO : rc;
}

static int pg_doc_insert(store_backend_t *b, const store_scope_t *scope, const store_doc_t *doc,
                         store_text_src_t *text, store_doc_t *out, bool *existed)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    char *src_id = NULL, *src_file = NULL;
    *existed = false;
    rc = txn_begin(c, false);
    if (rc == STORE_OK)
        rc = lock_key(c, "content", doc->sha256);
    if (rc == STORE_OK) {
        rc = doc_by_sha(c, scope, doc->sha256, out);
        if (rc == STORE_OK)
            *existed = true;
    }
    if (rc == STORE_ENOTFOUND)
        rc = doc_source(c, doc->sha256, &src_id, &src_file);
    const char *file = src_file ? src_file : doc->stored_name;
    if (rc == STORE_OK && !*existed)
        rc = lock_key(c, "file", file);
    if (rc == STORE_OK && !*existed && !src_file) {
        params_t p = {0};
        p_text(&p, doc->stored_name);
        p_text(&p, doc->sha256);
        rc = q_one(c, ST_DOC_NAME_CLASH, &p, NULL, NULL);
        rc = rc == STORE_OK ? STORE_ECONFLICT : rc == STORE_ENOTFOUND ? STORE_OK : rc;
    }
    if (rc == STORE_OK && !*existed) {
        params_t p = {0};
        p_text(&p, doc->id);
        p_text(&p, doc->filename);
        p_text(&p, file);
        p_text(&p, doc->content_type);
        p_int(&p, doc->file_size);
        p_text(&p, doc->sha256);
        p_int(&p, doc->uploaded_at);
        p_int(&p, 0);   /* counted while the pieces go in */
        p_opt_int(&p, doc->n_tokens);
        p_text(&p, scope_owner(scope));
        p_bool(&p, doc->shared);
        rc = q_run(c, ST_DOC_INSERT, &p, NULL);
        if (rc == STORE_OK)
            rc = insert_pieces(c, doc->id, text);
        if (rc == STORE_OK) {
            params_t q = {0};
            p_text(&q, doc->id);
            p_int(&q, store__text_chars(text));
            rc = q_run(c, ST_DOC_SET_CHARS, &q, NULL);
        }
        if (rc == STORE_OK)
            rc = doc_read_back(c, doc->id, out);
    }
    rc = txn_end(c, rc);
    if (rc != STORE_OK)
        *existed = false;
    conn_put(b, c);
    free(src_id);
    free(src_file);
    return rc;
}

static int copy_rows(conn_t *c, stmt_id_t sid, const char *new_id, const char *src_id)
{
    params_t p = {0};
    p_text(&p, new_id);
    p_text(&p, src_id);
    return q_run(c, sid, &p, NULL);
}

static int pg_doc_copy_content(store_backend_t *b, const store_scope_t *scope,
                               const char *sha256, const char *filename, const char *new_id,
                               int64_t now_ms, store_doc_t *out, bool *existed)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    char *src_id = NULL, *src_file = NULL;
    *existed = false;
    rc = txn_begin(c, false);
    if (rc == STORE_OK)
        rc = lock_key(c, "content", sha256);
    if (rc == STORE_OK) {
        rc = doc_by_sha(c, scope, sha256, out);
        if (rc == STORE_OK)
            *existed = true;
    }
    if (rc == STORE_ENOTFOUND) {
        rc = doc_source(c, sha256, &src_id, &src_file);
        if (rc == STORE_OK && !src_id)
            rc = STORE_ENOTFOUND;
        if (rc == STORE_OK)
            rc = lock_key(c, "file", src_file);
        if (rc == STORE_OK) {
            params_t p = {0};
            p_text(&p, new_id);
            p_text(&p, scope_owner(scope));
            p_text(&p, filename);
            p_int(&p, now_ms);
            p_text(&p, src_id);
            rc = q_run(c, ST_COPY_DOC, &p, NULL);
        }
        if (rc == STORE_OK)
            rc = copy_rows(c, ST_COPY_TEXT, new_id, src_id);
        if (rc == STORE_OK)
            rc = copy_rows(c, ST_COPY_MARKS, new_id, src_id);
        if (rc == STORE_OK)
            rc = copy_rows(c, ST_COPY_CHUNKS, new_id, src_id);
        if (rc == STORE_OK)
            rc = copy_rows(c, ST_COPY_PARTS, new_id, src_id);
        if (rc == STORE_OK)
            rc = doc_read_back(c, new_id, out);
    }
    rc = txn_end(c, rc);
    if (rc != STORE_OK)
        *existed = false;
    conn_put(b, c);
    free(src_id);
    free(src_file);
    return rc;
}

static int pg_doc_get(store_backend_t *b, const store_scope_t *scope, const char *id,
                      store_doc_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    params_t p = {0};
    p_text(&p, id);
    p_scope_doc(&p, scope);
    rc = q_one(c, ST_DOC_GET, &p, row_doc_one, out);
    conn_put(b, c);
    return rc;
}

static int pg_doc_find_sha256(store_backend_t *b, const store_scope_t *scope, const char *sha256,
                              store_doc_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = doc_by_sha(c, scope, sha256, out);
    conn_put(b, c);
    return rc;
}

/* Rows come one at a time (single-row mode), so memory stays bounded by
 * a piece; when fn stops, the rest is read and dropped. */
static int pg_doc_text_foreach(store_backend_t *b, const char *id, store_text_fn fn, void *ud)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    PGresult *r = stmt_prepare(c, ST_DOC_TEXT);
    if (r) {
        rc = pg_rc(c->pg, r, "prepare");
        PQclear(r);
    }
    char name[16];
    stmt_name(ST_DOC_TEXT, name);
    const char *v[1] = { id };
    if (rc == STORE_OK && (!PQsendQueryPrepared(c->pg, name, 1, v, NULL, NULL, 0) ||
                           !PQsetSingleRowMode(c->pg))) {
        log_error("store: read text: %s", PQerrorMessage(c->pg));
        rc = STORE_EIO;
    }
    bool found = false, stopped = false;
    while (rc >= STORE_OK && (r = PQgetResult(c->pg)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE) {
            found = true;
            if (!stopped && !PQgetisnull(r, 0, 0)) {
                int f = fn(ud, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
                if (f != 0) {
                    rc = f;
                    stopped = true;
                }
            }
        } else if (st != PGRES_TUPLES_OK && rc == STORE_OK) {
            rc = pg_rc(c->pg, r, "read text");
        }
        PQclear(r);
        if (rc < STORE_OK) {   /* drain what is left of the query */
            while ((r = PQgetResult(c->pg)) != NULL)
                PQclear(r);
        }
    }
    if (rc == STORE_OK && !found)
        rc = STORE_ENOTFOUND;
    conn_put(b, c);
    return rc;
}

static int pg_doc_list(store_backend_t *b, const store_scope_t *scope, store_doc_list_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    params_t p = {0};
    p_scope_doc(&p, scope);
    rc = q_rows(c, ST_DOC_LIST, &p, row_doc_item, out);
    conn_put(b, c);
    return rc;
}

static int pg_doc_search(store_backend_t *b, const store_scope_t *scope, const char *query,
                         size_t limit, store_doc_list_t *out)
{
    char *q;
    int rc = pg_fts_query(query, &q);
    if (rc != STORE_OK)
        return rc;
    conn_t *c;
    rc = conn_get(b, &c);
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, q);
        p_limit(&p, limit);
        p_scope_doc(&p, scope);
        rc = q_rows(c, ST_DOC_SEARCH, &p, row_doc_item, out);
        conn_put(b, c);
    }
    free(q);
    return rc;
}

static int row_count(const PGresult *r, int i, void *ud)
{
    *(int64_t *)ud = col_int(r, i, 0);
    return STORE_OK;
}

static int count_file_refs(conn_t *c, const char *stored_name, int64_t *n)
{
    params_t p = {0};
    p_text(&p, stored_name);
    int rc = q_one(c, ST_FILE_REFS, &p, row_count, n);
    return rc == STORE_ENOTFOUND ? STORE_EIO : rc;
}

static int pg_doc_delete(store_backend_t *b, const store_scope_t *scope, const char *id,
                         store_doc_t *out, bool *file_unused)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    *file_unused = false;
    rc = txn_begin(c, false);
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, id);
        p_scope_doc(&p, scope);
        rc = q_one(c, ST_DOC_GET_W, &p, row_doc_one, out);
    }
    if (rc == STORE_OK)
        rc = lock_key(c, "file", out->stored_name);
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, id);
        rc = q_run(c, ST_DOC_DELETE, &p, NULL);
    }
    int64_t refs = 0;
    if (rc == STORE_OK)
        rc = count_file_refs(c, out->stored_name, &refs);
    rc = txn_end(c, rc);
    *file_unused = rc == STORE_OK && refs == 0;
    conn_put(b, c);
    return rc;
}

static int pg_file_refs(store_backend_t *b, const char *stored_name, int64_t *n)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = count_file_refs(c, stored_name, n);
    conn_put(b, c);
    return rc;
}

static int pg_doc_set_shared(store_backend_t *b, const store_scope_t *scope, const char *id,
                             bool shared)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    store_doc_t d;
    store_doc_init(&d);
    rc = txn_begin(c, false);
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, id);
        p_scope_doc(&p, scope);
        rc = q_one(c, ST_DOC_GET_W, &p, row_doc_one, &d);
    }
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, id);
        p_bool(&p, shared);
        rc = q_run(c, ST_DOC_SET_SHARED, &p, NULL);
    }
    static const stmt_id_t unshare[] = { ST_DOC_UNSHARE_SETS, ST_DOC_UNSHARE_SESSIONS };
    for (size_t i = 0; rc == STORE_OK && !shared && i < 2; i++) {
        params_t p = {0};
        p_text(&p, id);
        p_text(&p, d.owner_id);
        rc = q_run(c, unshare[i], &p, NULL);
    }
    rc = txn_end(c, rc);
    conn_put(b, c);
    store_doc_cleanup(&d);
    return rc;
}

/* Run one statement (autocommit) on a pooled connection; *n (may be
 * NULL) receives the rows it changed. */
static int write_one(store_backend_t *b, stmt_id_t id, const params_t *p, int64_t *n)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = q_change(c, id, p, n);
    conn_put(b, c);
    return rc;
}

/* As write_one() for a statement that changes one row: STORE_ENOTFOUND
 * when it changed none. */
static int write_row(store_backend_t *b, stmt_id_t id, const params_t *p)
{
    int64_t n = 0;
    int rc = write_one(b, id, p, &n);
    return rc == STORE_OK && n == 0 ? STORE_ENOTFOUND : rc;
}

static int pg_doc_set_tokens(store_backend_t *b, const char *id, int64_t n_tokens)
{
    params_t p = {0};
    p_text(&p, id);
    p_opt_int(&p, n_tokens);
    return write_row(b, ST_DOC_SET_TOKENS, &p);
}

static int pg_doc_set_ocr(store_backend_t *b, const char *id, const char *pages, int confidence)
{
    params_t p = {0};
    p_text(&p, id);
    p_text(&p, pages);
    p_opt_int(&p, confidence);
    return write_row(b, ST_DOC_SET_OCR, &p);
}

static void p_cache(params_t *p, const store_cache_t *cache)
{
    p_text(p, store_cache_status_name(cache->status));
    p_text(p, cache->entry_id);
    p_opt_int(p, cache->tokens);
    p_opt_int(p, cache->bytes);
    p_text(p, cache->tier);
    p_opt_real(p, cache->ms);
    p_opt_int(p, cache->cached_at);
    p_text(p, cache->error);
}

static int pg_doc_set_cache(store_backend_t *b, const char *id, const store_cache_t *cache)
{
    params_t p = {0};
    p_text(&p, id);
    p_cache(&p, cache);
    return write_row(b, ST_DOC_SET_CACHE, &p);
}

/* Run body(c, arg) in a write transaction on a pooled connection. */
static int in_write(store_backend_t *b, int (*body)(conn_t *c, void *arg), void *arg)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = txn_begin(c, false);
    if (rc == STORE_OK)
        rc = txn_end(c, body(c, arg));
    conn_put(b, c);
    return rc;
}

/* Run body(c, arg) in one read-only snapshot on a pooled connection. */
static int in_read(store_backend_t *b, int (*body)(conn_t *c, void *arg), void *arg)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = txn_begin(c, true);
    if (rc == STORE_OK)
        rc = txn_end(c, body(c, arg));
    conn_put(b, c);
    return rc;
}

/* Run statement `id` whose only parameter is `key`. */
static int run_key(conn_t *c, stmt_id_t id, const char *key, int64_t *n)
{
    params_t p = {0};
    p_text(&p, key);
    return q_change(c, id, &p, n);
}

static int doc_exists(conn_t *c, const char *id)
{
    params_t p = {0};
    p_text(&p, id);
    return q_one(c, ST_DOC_EXISTS, &p, NULL, NULL);
}

struct reset_args {
    bool only_caching;
    int64_t *n_changed;
};

static int reset_body(conn_t *c, void *arg)
{
    struct reset_args *a = arg;
    int rc = q_change(c, a->only_caching ? ST_DOC_RESET_CACHING : ST_DOC_RESET_CACHE, NULL,
                      a->n_changed);
    if (rc == STORE_OK)
        rc = q_run(c, a->only_caching ? ST_PARTS_RESET_CACHING : ST_PARTS_RESET_CACHE, NULL,
                   NULL);
    return rc;
}

static int pg_doc_reset_cache(store_backend_t *b, bool only_caching, int64_t *n_changed)
{
    struct reset_args a = { only_caching, n_changed };
    *n_changed = 0;
    int rc = in_write(b, reset_body, &a);
    if (rc != STORE_OK)
        *n_changed = 0;
    return rc;
}

/* ---- Long documents -------------------------------------------------------- */

struct marks_args {
    const char *id;
    const store_mark_t *marks;
    size_t n;
};

static int set_marks_body(conn_t *c, void *arg)
{
    struct marks_args *a = arg;
    int rc = doc_exists(c, a->id);
    if (rc == STORE_OK)
        rc = run_key(c, ST_MARK_DELETE, a->id, NULL);
    for (size_t i = 0; rc == STORE_OK && i < a->n; i++) {
        const store_mark_t *m = &a->marks[i];
        params_t p = {0};
        p_text(&p, a->id);
        p_int(&p, (int64_t)i);
        p_text(&p, m->kind == STORE_MARK_PAGE ? "page" : "heading");
        p_int(&p, m->offset);
        p_int(&p, m->number);
        p_text(&p, m->label ? m->label : "");
        rc = q_run(c, ST_MARK_INSERT, &p, NULL);
    }
    return rc;
}

static int pg_doc_set_marks(store_backend_t *b, const char *id, const store_mark_t *marks,
                            size_t n)
{
    struct marks_args a = { id, marks, n };
    return in_write(b, set_marks_body, &a);
}

/* A read of statement `id` in one snapshot with the existence of document
 * `doc` (NULL: no check): STORE_ENOTFOUND when it does not exist. */
struct rows_args {
    stmt_id_t id;
    const char *doc;
    const params_t *p;
    int (*row)(const PGresult *r, int i, void *ud);
    void *ud;
};

static int rows_body(conn_t *c, void *arg)
{
    struct rows_args *a = arg;
    int rc = a->doc ? doc_exists(c, a->doc) : STORE_OK;
    if (rc == STORE_OK)
        rc = q_rows(c, a->id, a->p, a->row, a->ud);
    return rc;
}

static int read_rows(store_backend_t *b, stmt_id_t id, const char *doc, const params_t *p,
                     int (*row)(const PGresult *r, int i, void *ud), void *ud)
{
    struct rows_args a = { id, doc, p, row, ud };
    if (!doc) {   /* one statement: its own snapshot */
        conn_t *c;
        int rc = conn_get(b, &c);
        if (rc != STORE_OK)
            return rc;
        rc = rows_body(c, &a);
        conn_put(b, c);
        return rc;
    }
    return in_read(b, rows_body, &a);
}

static int row_mark(const PGresult *r, int i, void *ud)
{
    store_mark_t m = { 0 };
    m.kind = strcmp(PQgetvalue(r, i, 0), "page") == 0 ? STORE_MARK_PAGE : STORE_MARK_HEADING;
    m.offset = col_int(r, i, 1);
    m.number = (int)col_int(r, i, 2);
    if (col_dup(r, i, 3, &m.label) || !m.label)
        return STORE_ENOMEM;
    return store__mark_list_push(ud, &m);
}

static int pg_doc_marks(store_backend_t *b, const char *id, store_mark_list_t *out)
{
    params_t p = {0};
    p_text(&p, id);
    return read_rows(b, ST_MARK_LIST, id, &p, row_mark, out);
}

struct chunks_args {
    const char *id;
    store_chunk_src_t *src;
    int64_t *n_out;
};

static int set_chunks_body(conn_t *c, void *arg)
{
    struct chunks_args *a = arg;
    int rc = doc_exists(c, a->id);
    if (rc == STORE_OK)
        rc = run_key(c, ST_PARTS_DELETE_DOC, a->id, NULL);
    if (rc == STORE_OK)
        rc = run_key(c, ST_CHUNK_DELETE, a->id, NULL);
    for (int64_t seq = 0; rc == STORE_OK; seq++) {
        const store_chunk_t *k;
        const char *ix;
        rc = store__chunk_next(a->src, &k, &ix);
        if (rc != STORE_OK || !k)
            break;
        params_t p = {0};
        p_text(&p, a->id);
        p_int(&p, seq);
        p_int(&p, k->start);
        p_int(&p, k->end);
        p_int(&p, k->n_chars);
        p_int(&p, k->est_tokens);
        p_int(&p, k->page_first);
        p_int(&p, k->page_last);
        p_text(&p, k->label_first ? k->label_first : "");
        p_text(&p, k->label_last ? k->label_last : "");
        p_text(&p, k->heading ? k->heading : "");
        p_text(&p, k->content);
        p_text(&p, ix);
        rc = q_run(c, ST_CHUNK_ADD, &p, NULL);
        if (rc == STORE_OK)
            *a->n_out = seq + 1;
    }
    return rc;
}

static int pg_doc_set_chunks(store_backend_t *b, const char *id, store_chunk_src_t *src,
                             int64_t *n_out)
{
    struct chunks_args a = { id, src, n_out };
    return in_write(b, set_chunks_body, &a);
}

struct tokens_args {
    const char *id, *key;
    const int64_t *tokens;
    size_t n;
};

static int set_tokens_body(conn_t *c, void *arg)
{
    struct tokens_args *a = arg;
    int rc = doc_exists(c, a->id);
    for (size_t i = 0; rc == STORE_OK && i < a->n; i++) {
        params_t p = {0};
        p_text(&p, a->id);
        p_int(&p, (int64_t)i);
        p_int(&p, a->tokens[i]);
        p_text(&p, a->key);
        rc = q_run(c, ST_CHUNK_SET_TOKENS, &p, NULL);
    }
    return rc;
}

static int pg_chunks_set_tokens(store_backend_t *b, const char *id, const char *key,
                                const int64_t *tokens, size_t n)
{
    struct tokens_args a = { id, key, tokens, n };
    return in_write(b, set_tokens_body, &a);
}

static int row_chunk_fill(const PGresult *r, int i, store_chunk_t *k, bool has_score)
{
    if (col_dup(r, i, 0, &k->doc_id) || col_dup(r, i, 7, &k->tokens_key) ||
        col_dup(r, i, 10, &k->label_first) || col_dup(r, i, 11, &k->label_last) ||
        col_dup(r, i, 12, &k->heading) || col_dup(r, i, 13, &k->content)) {
        store_chunk_cleanup(k);
        return STORE_ENOMEM;
    }
    k->seq = col_int(r, i, 1);
    k->start = col_int(r, i, 2);
    k->end = col_int(r, i, 3);
    k->n_chars = col_int(r, i, 4);
    k->est_tokens = col_int(r, i, 5);
    k->tokens = col_opt_int(r, i, 6);
    k->page_first = col_int(r, i, 8);
    k->page_last = col_int(r, i, 9);
    k->score = has_score ? strtod(PQgetvalue(r, i, 14), NULL) : 0;
    return STORE_OK;
}

static int row_chunk(const PGresult *r, int i, void *ud)
{
    store_chunk_t k;
    store_chunk_init(&k);
    int rc = row_chunk_fill(r, i, &k, false);
    return rc == STORE_OK ? store__chunk_list_push(ud, &k) : rc;
}

static int row_chunk_scored(const PGresult *r, int i, void *ud)
{
    store_chunk_t k;
    store_chunk_init(&k);
    int rc = row_chunk_fill(r, i, &k, true);
    return rc == STORE_OK ? store__chunk_list_push(ud, &k) : rc;
}

struct chunk_list_args {
    const char *id;
    int64_t first;
    size_t limit;
    bool content;
    store_chunk_list_t *out;
    int64_t *total;
};

static int chunk_list_body(conn_t *c, void *arg)
{
    struct chunk_list_args *a = arg;
    int rc = doc_exists(c, a->id);
    params_t p = {0};
    p_text(&p, a->id);
    if (rc == STORE_OK)
        rc = q_one(c, ST_CHUNK_COUNT, &p, row_count, a->total);
    p_int(&p, a->first);
    p_limit(&p, a->limit);
    p_bool(&p, a->content);
    if (rc == STORE_OK)
        rc = q_rows(c, ST_CHUNK_LIST, &p, row_chunk, a->out);
    return rc;
}

static int pg_chunk_list(store_backend_t *b, const char *id, int64_t first, size_t limit,
                         bool content, store_chunk_list_t *out, int64_t *total)
{
    struct chunk_list_args a = { id, first, limit, content, out, total };
    return in_read(b, chunk_list_body, &a);
}

static int pg_chunk_get(store_backend_t *b, const char *id, int64_t seq, store_chunk_t *out)
{
    store_chunk_list_t l = { 0 };
    params_t p = {0};
    p_text(&p, id);
    p_int(&p, seq);
    int rc = read_rows(b, ST_CHUNK_GET, id, &p, row_chunk, &l);
    if (rc == STORE_OK && l.n == 0)
        rc = STORE_ENOTFOUND;
    if (rc == STORE_OK) {
        *out = l.items[0];
        store_chunk_init(&l.items[0]);
    }
    store_chunk_list_cleanup(&l);
    return rc;
}

static int pg_chunk_search(store_backend_t *b, const char *const *doc_ids, size_t n_ids,
                           const char *match, size_t limit, store_chunk_list_t *out)
{
    /* Ids are printable ASCII without '"' or '\\' (store_id_valid), so
     * they go into an array literal quoted as they are. */
    size_t cap = 3;
    for (size_t i = 0; i < n_ids; i++)
        cap += strlen(doc_ids[i]) + 3;
    char *arr = malloc(cap), *w = arr;
    if (!arr)
        return STORE_ENOMEM;
    *w++ = '{';
    for (size_t i = 0; i < n_ids; i++)
        w += sprintf(w, "%s\"%s\"", i ? "," : "", doc_ids[i]);
    *w++ = '}';
    *w = '\0';
    char *q = NULL;
    int rc = pg_fts_query(match, &q);
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, q);
        p_text(&p, arr);
        p_limit(&p, limit);
        rc = read_rows(b, ST_CHUNK_SEARCH, NULL, &p, row_chunk_scored, out);
    }
    free(q);
    free(arr);
    return rc;
}

struct parts_args {
    const char *id, *key;
    const store_part_t *parts;
    size_t n;
};

static int set_parts_body(conn_t *c, void *arg)
{
    struct parts_args *a = arg;
    int rc = doc_exists(c, a->id);
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, a->id);
        p_text(&p, a->key);
        rc = q_run(c, ST_PARTS_DELETE_KEY, &p, NULL);
    }
    for (size_t i = 0; rc == STORE_OK && i < a->n; i++) {
        const store_part_t *pt = &a->parts[i];
        params_t p = {0};
        p_text(&p, a->id);
        p_text(&p, a->key);
        p_int(&p, (int64_t)i);
        p_int(&p, pt->chunk_first);
        p_int(&p, pt->chunk_last);
        p_opt_int(&p, pt->tokens);
        p_int(&p, pt->content_length);
        p_cache(&p, &pt->cache);
        rc = q_run(c, ST_PART_INSERT, &p, NULL);
    }
    return rc;
}

static int pg_parts_set(store_backend_t *b, const char *id, const char *key,
                        const store_part_t *parts, size_t n)
{
    struct parts_args a = { id, key, parts, n };
    return in_write(b, set_parts_body, &a);
}

static int row_part(const PGresult *r, int i, void *ud)
{
    store_part_t p;
    store_part_init(&p);
    if (col_dup(r, i, 0, &p.doc_id) || col_dup(r, i, 1, &p.plan_key) ||
        row_cache_at(r, i, 7, &p.cache)) {
        store_part_cleanup(&p);
        return STORE_ENOMEM;
    }
    p.seq = col_int(r, i, 2);
    p.chunk_first = col_int(r, i, 3);
    p.chunk_last = col_int(r, i, 4);
    p.tokens = col_opt_int(r, i, 5);
    p.content_length = col_int(r, i, 6);
    return store__part_list_push(ud, &p);
}

static int pg_parts_list(store_backend_t *b, const char *id, const char *key,
                         store_part_list_t *out)
{
    params_t p = {0};
    p_text(&p, id);
    p_text(&p, key);
    return read_rows(b, ST_PARTS_LIST, id, &p, row_part, out);
}

static int pg_part_set_cache(store_backend_t *b, const char *id, const char *key, int64_t seq,
                             const store_cache_t *cache)
{
    params_t p = {0};
    p_text(&p, id);
    p_text(&p, key);
    p_int(&p, seq);
    p_cache(&p, cache);
    return write_row(b, ST_PART_SET_CACHE, &p);
}

/* ---- Sessions --------------------------------------------------------------- *
 *
 * As in store_sqlite.c: sessions.id is the store's key, client_id the id
 * the client knows, unique per owner; every operation finds a session by
 * (owner of the scope, client_id). */

struct ses_key {
    char *key;
    char *doc;
};

static int row_ses_key(const PGresult *r, int i, void *out)
{
    struct ses_key *k = out;
    return col_dup(r, i, 0, &k->key) || col_dup(r, i, 1, &k->doc) ? STORE_ENOMEM : STORE_OK;
}

/* The key of the scope's session `id` into key[STORE_ID_MAX + 1] and,
 * when doc is not NULL, its one document (heap copy, NULL for none). */
static int session_key(conn_t *c, const store_scope_t *scope, const char *id,
                       char key[STORE_ID_MAX + 1], char **doc)
{
    if (doc)
        *doc = NULL;
    struct ses_key k = { NULL, NULL };
    params_t p = {0};
    p_text(&p, id);
    p_okey(&p, scope);
    int rc = q_one(c, ST_SES_KEY, &p, row_ses_key, &k);
    if (rc == STORE_OK) {
        snprintf(key, STORE_ID_MAX + 1, "%s", k.key ? k.key : "");
        if (doc) {
            *doc = k.doc;
            k.doc = NULL;
        }
    }
    free(k.key);
    free(k.doc);
    return rc;
}

static int session_read(conn_t *c, const store_scope_t *scope, const char *id,
                        store_session_t *out)
{
    params_t p = {0};
    p_text(&p, id);
    p_okey(&p, scope);
    return q_one(c, ST_SES_GET, &p, row_session_one, out);
}

static int docs_readable(conn_t *c, const store_scope_t *scope, const char *const *ids, size_t n)
{
    int rc = STORE_OK;
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        params_t p = {0};
        p_text(&p, ids[i]);
        p_scope_doc(&p, scope);
        rc = q_one(c, ST_DOC_VISIBLE, &p, NULL, NULL);
    }
    return rc;
}

/* A new session of the scope's owner with a new key; *inserted is false
 * when one with this client id appeared first (ON CONFLICT). */
static int session_insert(conn_t *c, const store_scope_t *scope, const char *id,
                          const char *document_id, const char *title, int64_t now_ms,
                          bool *inserted)
{
    char key[STORE_UUID_BUFSZ];
    *inserted = false;
    int rc = document_id ? docs_readable(c, scope, &document_id, 1) : STORE_OK;
    if (rc == STORE_OK)
        rc = store_id_new(key);
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, key);
        p_text(&p, scope_owner(scope));
        p_text(&p, id);
        p_int(&p, now_ms);
        p_text(&p, document_id);
        p_text(&p, title);
        int64_t n = 0;
        rc = q_change(c, ST_SES_INSERT, &p, &n);
        *inserted = n > 0;
    }
    return rc;
}

struct ses_args {
    const store_scope_t *scope;
    const char *id, *document_id, *title;
    int64_t now;
    store_session_t *out;
    bool *created;
};

static int session_create_body(conn_t *c, void *arg)
{
    struct ses_args *a = arg;
    bool inserted;
    int rc = session_insert(c, a->scope, a->id, a->document_id, a->title, a->now, &inserted);
    if (rc == STORE_OK && !inserted)
        rc = STORE_ECONFLICT;
    if (rc == STORE_OK)
        rc = session_read(c, a->scope, a->id, a->out);
    return rc;
}

static int pg_session_create(store_backend_t *b, const store_scope_t *scope, const char *id,
                             const char *document_id, const char *title, int64_t now_ms,
                             store_session_t *out)
{
    struct ses_args a = { scope, id, document_id, title, now_ms, out, NULL };
    return in_write(b, session_create_body, &a);
}

static int session_touch(conn_t *c, const store_scope_t *scope, const char *id, int64_t now,
                         int64_t *n)
{
    params_t p = {0};
    p_text(&p, id);
    p_int(&p, now);
    p_okey(&p, scope);
    return q_change(c, ST_SES_TOUCH, &p, n);
}

static int session_ensure_body(conn_t *c, void *arg)
{
    struct ses_args *a = arg;
    int64_t n = 0;
    int rc = session_touch(c, a->scope, a->id, a->now, &n);
    if (rc == STORE_OK && n == 0) {
        rc = session_insert(c, a->scope, a->id, a->document_id, NULL, a->now, a->created);
        if (rc == STORE_OK && !*a->created)   /* another process made it meanwhile */
            rc = session_touch(c, a->scope, a->id, a->now, &n);
    }
    if (rc == STORE_OK)
        rc = session_read(c, a->scope, a->id, a->out);
    return rc;
}

static int pg_session_ensure(store_backend_t *b, const store_scope_t *scope, const char *id,
                             const char *document_id, int64_t now_ms, store_session_t *out,
                             bool *created)
{
    *created = false;
    struct ses_args a = { scope, id, document_id, NULL, now_ms, out, created };
    int rc = in_write(b, session_ensure_body, &a);
    if (rc != STORE_OK)
        *created = false;
    return rc;
}

static int pg_session_get(store_backend_t *b, const store_scope_t *scope, const char *id,
                          store_session_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = session_read(c, scope, id, out);
    conn_put(b, c);
    return rc;
}

static int pg_session_touch(store_backend_t *b, const store_scope_t *scope, const char *id,
                            int64_t now_ms)
{
    params_t p = {0};
    p_text(&p, id);
    p_int(&p, now_ms);
    p_okey(&p, scope);
    return write_row(b, ST_SES_TOUCH, &p);
}

/* Insert ids as rows (owner, pos, document) of statement `st_id`. */
static int insert_id_rows(conn_t *c, stmt_id_t st_id, const char *owner, const char *const *ids,
                          size_t n)
{
    int rc = STORE_OK;
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        params_t p = {0};
        p_text(&p, owner);
        p_int(&p, (int64_t)i);
        p_text(&p, ids[i]);
        rc = q_run(c, st_id, &p, NULL);
    }
    return rc;
}

struct set_docs_args {
    const store_scope_t *scope;
    const char *id;
    const char *const *ids;
    size_t n;
};

static int set_documents_body(conn_t *c, void *arg)
{
    struct set_docs_args *a = arg;
    char key[STORE_ID_MAX + 1];
    int rc = session_key(c, a->scope, a->id, key, NULL);
    if (rc == STORE_OK)
        rc = docs_readable(c, a->scope, a->ids, a->n);
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, key);
        p_text(&p, a->n ? a->ids[0] : NULL);
        rc = q_run(c, ST_SES_SET_DOC, &p, NULL);
    }
    if (rc == STORE_OK)
        rc = run_key(c, ST_SESDOC_DELETE, key, NULL);
    if (rc == STORE_OK && a->n > 1)
        rc = insert_id_rows(c, ST_SESDOC_INSERT, key, a->ids, a->n);
    return rc;
}

static int pg_session_set_documents(store_backend_t *b, const store_scope_t *scope,
                                    const char *id, const char *const *ids, size_t n)
{
    struct set_docs_args a = { scope, id, ids, n };
    return in_write(b, set_documents_body, &a);
}

static int row_id(const PGresult *r, int i, void *ud)
{
    store_id_list_t *l = ud;
    if (PQgetisnull(r, i, 0))
        return STORE_OK;
    return store__id_list_push(l, PQgetvalue(r, i, 0));
}

struct ses_docs_args {
    const store_scope_t *scope;
    const char *id;
    store_id_list_t *out;
    char *one;
};

static int session_documents_body(conn_t *c, void *arg)
{
    struct ses_docs_args *a = arg;
    char key[STORE_ID_MAX + 1];
    int rc = session_key(c, a->scope, a->id, key, &a->one);
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, key);
        rc = q_rows(c, ST_SESDOC_LIST, &p, row_id, a->out);
    }
    return rc;
}

static int pg_session_documents(store_backend_t *b, const store_scope_t *scope, const char *id,
                                store_id_list_t *out)
{
    struct ses_docs_args a = { scope, id, out, NULL };
    int rc = in_read(b, session_documents_body, &a);
    if (rc == STORE_OK && out->n == 0 && a.one)   /* no set: the one document */
        rc = store__id_list_push(out, a.one);
    free(a.one);
    return rc;
}

struct coll_args {
    const char *id, *name;
    int64_t now;
    const char *const *ids;
    size_t n;
};

static int collection_create_body(conn_t *c, void *arg)
{
    struct coll_args *a = arg;
    params_t p = {0};
    p_text(&p, a->id);
    p_text(&p, a->name);
    p_int(&p, a->now);
    int rc = q_run(c, ST_COLL_INSERT, &p, NULL);
    if (rc == STORE_OK)
        rc = insert_id_rows(c, ST_COLLDOC_INSERT, a->id, a->ids, a->n);
    return rc;
}

static int pg_collection_get(store_backend_t *b, const char *id, store_collection_t *out);

static int pg_collection_create(store_backend_t *b, const char *id, const char *name,
                                int64_t now_ms, const char *const *ids, size_t n,
                                store_collection_t *out)
{
    struct coll_args a = { id, name, now_ms, ids, n };
    int rc = in_write(b, collection_create_body, &a);
    return rc == STORE_OK ? pg_collection_get(b, id, out) : rc;
}

static int row_collection(const PGresult *r, int i, void *ud)
{
    store_collection_t *c = ud;
    if (col_dup(r, i, 0, &c->name))
        return STORE_ENOMEM;
    c->created_at = col_int(r, i, 1);
    return STORE_OK;
}

struct coll_get_args {
    const char *id;
    store_collection_t *out;
};

static int collection_get_body(conn_t *c, void *arg)
{
    struct coll_get_args *a = arg;
    params_t p = {0};
    p_text(&p, a->id);
    int rc = q_one(c, ST_COLL_GET, &p, row_collection, a->out);
    if (rc == STORE_OK)
        rc = q_rows(c, ST_COLLDOC_LIST, &p, row_id, &a->out->docs);
    return rc;
}

static int pg_collection_get(store_backend_t *b, const char *id, store_collection_t *out)
{
    struct coll_get_args a = { id, out };
    int rc = in_read(b, collection_get_body, &a);
    if (rc == STORE_OK && !(out->id = strdup(id)))
        rc = STORE_ENOMEM;
    return rc;
}

static int pg_session_set_title(store_backend_t *b, const store_scope_t *scope, const char *id,
                                const char *title)
{
    params_t p = {0};
    p_text(&p, id);
    p_text(&p, title);
    p_okey(&p, scope);
    return write_row(b, ST_SES_SET_TITLE, &p);
}

static int row_session_item(const PGresult *r, int i, void *ud)
{
    store_session_t ss;
    store_session_init(&ss);
    int rc = row_session(r, i, &ss);
    return rc == STORE_OK ? store__session_list_push(ud, &ss) : rc;
}

static int pg_session_list(store_backend_t *b, const store_scope_t *scope, size_t limit,
                           store_session_list_t *out)
{
    params_t p = {0};
    p_limit(&p, limit);
    p_okey(&p, scope);
    return read_rows(b, ST_SES_LIST, NULL, &p, row_session_item, out);
}

static int pg_session_delete(store_backend_t *b, const store_scope_t *scope, const char *id)
{
    params_t p = {0};
    p_text(&p, id);
    p_okey(&p, scope);
    return write_row(b, ST_SES_DELETE, &p);
}

static int pg_session_delete_idle(store_backend_t *b, int64_t before_ms, int64_t *n_deleted)
{
    params_t p = {0};
    p_int(&p, before_ms);
    *n_deleted = 0;
    return write_one(b, ST_SES_DELETE_IDLE, &p, n_deleted);
}

/* ---- Messages --------------------------------------------------------------- */

struct msg_args {
    const store_scope_t *scope;
    const char *session_id, *content, *meta;
    store_role_t role;
    bool incomplete;
    int64_t now;
    int64_t *id_out;
};

static int msg_append_body(conn_t *c, void *arg)
{
    struct msg_args *a = arg;
    char key[STORE_ID_MAX + 1];
    int rc = session_key(c, a->scope, a->session_id, key, NULL);
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, key);
        p_text(&p, store_role_name(a->role));
        p_text(&p, a->content);
        p_int(&p, a->now);
        p_bool(&p, a->incomplete);
        p_text(&p, a->meta);
        rc = q_one(c, ST_MSG_INSERT, &p, row_count, a->id_out);
    }
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, key);
        p_int(&p, a->now);
        rc = q_run(c, ST_SES_TOUCH_KEY, &p, NULL);
    }
    return rc;
}

static int pg_msg_append(store_backend_t *b, const store_scope_t *scope, const char *session_id,
                         store_role_t role, const char *content, bool incomplete,
                         const char *meta, int64_t now_ms, int64_t *id_out)
{
    struct msg_args a = { scope, session_id, content, meta, role, incomplete, now_ms, id_out };
    return in_write(b, msg_append_body, &a);
}

static int row_msg_item(const PGresult *r, int i, void *ud)
{
    store_msg_t m;
    store_msg_init(&m);
    int rc = row_msg(r, i, &m);
    return rc == STORE_OK ? store__msg_list_push(ud, &m) : rc;
}

struct msg_list_args {
    const store_scope_t *scope;
    const char *session_id;
    size_t limit;
    store_msg_list_t *out;
};

static int msg_list_body(conn_t *c, void *arg)
{
    struct msg_list_args *a = arg;
    params_t p = {0};
    p_text(&p, a->session_id);
    p_limit(&p, a->limit);
    p_okey(&p, a->scope);
    int rc = q_rows(c, ST_MSG_LIST, &p, row_msg_item, a->out);
    if (rc == STORE_OK && a->out->n == 0) {
        char key[STORE_ID_MAX + 1];
        rc = session_key(c, a->scope, a->session_id, key, NULL);
    }
    return rc;
}

static int pg_msg_list(store_backend_t *b, const store_scope_t *scope, const char *session_id,
                       size_t limit, store_msg_list_t *out)
{
    struct msg_list_args a = { scope, session_id, limit, out };
    return in_read(b, msg_list_body, &a);
}

static int pg_msg_count(store_backend_t *b, const store_scope_t *scope, const char *session_id,
                        int64_t *n)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    params_t p = {0};
    p_text(&p, session_id);
    p_okey(&p, scope);
    rc = q_one(c, ST_MSG_COUNT, &p, row_count, n);
    conn_put(b, c);
    return rc;
}

/* ---- Accounts ---------------------------------------------------------------- */

static int read_key(conn_t *c, stmt_id_t sid, const char *key,
                    int (*row)(const PGresult *r, int i, void *out), void *out)
{
    params_t p = {0};
    p_text(&p, key);
    return q_one(c, sid, &p, row, out);
}

static int row_user0(const PGresult *r, int i, void *out)
{
    return row_user(r, i, 0, out);
}

static int row_login0(const PGresult *r, int i, void *out)
{
    return row_login(r, i, out);
}

static int row_token0(const PGresult *r, int i, void *out)
{
    return row_token(r, i, out);
}

typedef struct {
    store_user_role_t role;
    bool disabled;
    int64_t enabled_admins;
} user_state_t;

static int row_state(const PGresult *r, int i, void *out)
{
    user_state_t *u = out;
    u->role = strcmp(PQgetvalue(r, i, 0), "admin") == 0 ? STORE_USER_ROLE_ADMIN
                                                        : STORE_USER_ROLE_USER;
    u->disabled = col_bool(r, i, 1);
    u->enabled_admins = col_int(r, i, 2);
    return STORE_OK;
}

/* The user's state, read under the lock that every change of the set of
 * enabled admins takes. */
static int admin_state(conn_t *c, const char *id, user_state_t *u)
{
    int rc = conn_exec(c, "SELECT pg_advisory_xact_lock(hashtextextended('kvchat admins', 0))",
                       "lock admins");
    return rc == STORE_OK ? read_key(c, ST_USER_STATE, id, row_state, u) : rc;
}

static int keep_an_admin(const user_state_t *u)
{
    bool last = u->role == STORE_USER_ROLE_ADMIN && !u->disabled && u->enabled_admins <= 1;
    return last ? STORE_ECONFLICT : STORE_OK;
}

struct user_args {
    const char *id, *name, *text;
    store_user_role_t role;
    bool flag;
    int64_t now;
    store_user_t *out;
};

static int user_create_body(conn_t *c, void *arg)
{
    struct user_args *a = arg;
    params_t p = {0};
    p_text(&p, a->id);
    p_text(&p, a->name);
    p_text(&p, a->text);
    p_text(&p, store_user_role_name(a->role));
    p_int(&p, a->now);
    int rc = q_run(c, ST_USER_INSERT, &p, NULL);
    if (rc == STORE_OK)
        rc = read_key(c, ST_USER_GET, a->id, row_user0, a->out);
    return rc;
}

static int pg_user_create(store_backend_t *b, const char *id, const char *name,
                          const char *password_hash, store_user_role_t role, int64_t now_ms,
                          store_user_t *out)
{
    struct user_args a = { id, name, password_hash, role, false, now_ms, out };
    return in_write(b, user_create_body, &a);
}

static int pg_user_get(store_backend_t *b, const char *key, bool by_name, store_user_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = read_key(c, by_name ? ST_USER_BY_NAME : ST_USER_GET, key, row_user0, out);
    conn_put(b, c);
    return rc;
}

static int row_user_item(const PGresult *r, int i, void *ud)
{
    store_user_t u;
    store_user_init(&u);
    int rc = row_user(r, i, 0, &u);
    return rc == STORE_OK ? store__user_list_push(ud, &u) : rc;
}

static int pg_user_list(store_backend_t *b, store_user_list_t *out)
{
    return read_rows(b, ST_USER_LIST, NULL, NULL, row_user_item, out);
}

/* Statement `sid` with $1 = id, $2 = text or flag, $3 = now. */
static int user_update(conn_t *c, stmt_id_t sid, const struct user_args *a, bool flag,
                       int64_t *n)
{
    params_t p = {0};
    p_text(&p, a->id);
    if (flag)
        p_bool(&p, a->flag);
    else
        p_text(&p, a->text);
    p_int(&p, a->now);
    return q_change(c, sid, &p, n);
}

static int set_role_body(conn_t *c, void *arg)
{
    struct user_args *a = arg;
    user_state_t u;
    int rc = admin_state(c, a->id, &u);
    if (rc == STORE_OK && a->role != STORE_USER_ROLE_ADMIN)
        rc = keep_an_admin(&u);
    if (rc == STORE_OK) {
        a->text = store_user_role_name(a->role);
        rc = user_update(c, ST_USER_SET_ROLE, a, false, NULL);
    }
    if (rc == STORE_OK && a->role != STORE_USER_ROLE_ADMIN)
        rc = run_key(c, ST_TOKEN_DELETE_ADMIN, a->id, NULL);
    return rc;
}

static int pg_user_set_role(store_backend_t *b, const char *id, store_user_role_t role,
                            int64_t now_ms)
{
    struct user_args a = { id, NULL, NULL, role, false, now_ms, NULL };
    return in_write(b, set_role_body, &a);
}

static int set_disabled_body(conn_t *c, void *arg)
{
    struct user_args *a = arg;
    user_state_t u;
    int rc = admin_state(c, a->id, &u);
    if (rc == STORE_OK && a->flag)
        rc = keep_an_admin(&u);
    if (rc == STORE_OK)
        rc = user_update(c, ST_USER_SET_DISABLED, a, true, NULL);
    if (rc == STORE_OK && a->flag) {
        params_t p = {0};
        p_text(&p, a->id);
        p_text(&p, NULL);
        rc = q_run(c, ST_LOGIN_DELETE_USER, &p, NULL);
    }
    if (rc == STORE_OK && a->flag)
        rc = run_key(c, ST_TOKEN_DELETE_USER, a->id, NULL);
    return rc;
}

static int pg_user_set_disabled(store_backend_t *b, const char *id, bool disabled,
                                int64_t now_ms)
{
    struct user_args a = { id, NULL, NULL, STORE_USER_ROLE_USER, disabled, now_ms, NULL };
    return in_write(b, set_disabled_body, &a);
}

static int pg_user_set_password(store_backend_t *b, const char *id, const char *password_hash,
                                int64_t now_ms)
{
    params_t p = {0};
    p_text(&p, id);
    p_text(&p, password_hash);
    p_int(&p, now_ms);
    return write_row(b, ST_USER_SET_PASSWORD, &p);
}

struct user_delete_args {
    const char *id;
    store_doc_list_t *docs;
    store_id_list_t *unused;
};

static int user_delete_body(conn_t *c, void *arg)
{
    struct user_delete_args *a = arg;
    user_state_t u;
    int rc = admin_state(c, a->id, &u);
    if (rc == STORE_OK)
        rc = keep_an_admin(&u);
    if (rc == STORE_OK)
        rc = run_key(c, ST_USER_LOCK_FILES, a->id, NULL);
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, a->id);
        rc = q_rows(c, ST_USER_DOCS, &p, row_doc_item, a->docs);
    }
    if (rc == STORE_OK)
        rc = run_key(c, ST_USER_DELETE, a->id, NULL);
    for (size_t i = 0; rc == STORE_OK && i < a->docs->n; i++) {
        const char *name = a->docs->items[i].stored_name;
        bool seen = false;
        for (size_t k = 0; k < a->unused->n && !seen; k++)
            seen = strcmp(a->unused->ids[k], name) == 0;
        int64_t refs = 0;
        if (!seen)
            rc = count_file_refs(c, name, &refs);
        if (rc == STORE_OK && !seen && refs == 0)
            rc = store__id_list_push(a->unused, name);
    }
    return rc;
}

static int pg_user_delete(store_backend_t *b, const char *id, store_doc_list_t *docs,
                          store_id_list_t *unused_files)
{
    struct user_delete_args a = { id, docs, unused_files };
    int rc = in_write(b, user_delete_body, &a);
    if (rc != STORE_OK) {
        store_doc_list_cleanup(docs);
        store_id_list_cleanup(unused_files);
    }
    return rc;
}

struct ints3 {
    int64_t *v[3];
};

static int row_ints(const PGresult *r, int i, void *out)
{
    struct ints3 *x = out;
    for (int k = 0; k < 3; k++)
        if (x->v[k])
            *x->v[k] = PQgetvalue(r, i, k)[0] == 't' ? 1 : col_int(r, i, k);
    return STORE_OK;
}

static int read_ints(store_backend_t *b, stmt_id_t sid, const char *key, int64_t *v0,
                     int64_t *v1, int64_t *v2)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    params_t p = {0};
    if (key)
        p_text(&p, key);
    struct ints3 x = { { v0, v1, v2 } };
    rc = q_one(c, sid, &p, row_ints, &x);
    if (rc == STORE_ENOTFOUND)
        rc = STORE_EIO;   /* aggregates always give a row */
    conn_put(b, c);
    return rc;
}

static int pg_user_count(store_backend_t *b, int64_t *n_users, int64_t *n_admins)
{
    return read_ints(b, ST_USER_COUNT, NULL, n_users, n_admins, NULL);
}

static int pg_user_usage(store_backend_t *b, const char *id, int64_t *bytes, int64_t *n_docs)
{
    int64_t exists = 0;
    int rc = read_ints(b, ST_USER_USAGE, id, bytes, n_docs, &exists);
    return rc == STORE_OK && !exists ? STORE_ENOTFOUND : rc;
}

struct adopt_args {
    const char *user_id;
    int64_t *n_docs, *n_sessions;
};

static int adopt_body(conn_t *c, void *arg)
{
    struct adopt_args *a = arg;
    user_state_t u;
    int rc = read_key(c, ST_USER_STATE, a->user_id, row_state, &u);
    if (rc == STORE_OK) {
        rc = read_key(c, ST_ADOPT_CLASH, a->user_id, NULL, NULL);
        rc = rc == STORE_OK ? STORE_ECONFLICT : rc == STORE_ENOTFOUND ? STORE_OK : rc;
    }
    if (rc == STORE_OK)
        rc = run_key(c, ST_ADOPT_DOCS, a->user_id, a->n_docs);
    if (rc == STORE_OK)
        rc = run_key(c, ST_ADOPT_SESSIONS, a->user_id, a->n_sessions);
    return rc;
}

static int pg_adopt_unowned(store_backend_t *b, const char *user_id, int64_t *n_docs,
                            int64_t *n_sessions)
{
    struct adopt_args a = { user_id, n_docs, n_sessions };
    int rc = in_write(b, adopt_body, &a);
    if (rc != STORE_OK)
        *n_docs = *n_sessions = 0;
    return rc;
}

/* ---- Logins ---- */

struct login_args {
    const char *hash, *user_id, *client_addr, *user_agent;
    int64_t idle_ms, now;
    store_login_t *out;
};

static int login_create_body(conn_t *c, void *arg)
{
    struct login_args *a = arg;
    params_t p = {0};
    p_text(&p, a->hash);
    p_text(&p, a->user_id);
    p_int(&p, a->now);
    p_int(&p, a->idle_ms);
    p_text(&p, a->client_addr);
    p_text(&p, a->user_agent);
    int64_t n = 0;
    int rc = q_change(c, ST_LOGIN_INSERT, &p, &n);
    if (rc == STORE_OK && n == 0)
        rc = STORE_ENOTFOUND;   /* no such user, or disabled */
    if (rc == STORE_OK)
        rc = read_key(c, ST_LOGIN_GET, a->hash, row_login0, a->out);
    return rc;
}

static int pg_login_create(store_backend_t *b, const char *hash, const char *user_id,
                           int64_t idle_ms, const char *client_addr, const char *user_agent,
                           int64_t now_ms, store_login_t *out)
{
    struct login_args a = { hash, user_id, client_addr, user_agent, idle_ms, now_ms, out };
    return in_write(b, login_create_body, &a);
}

/* One read of the record joined with its user; a write only when the
 * record is due for a touch (a record deleted between the two is then
 * not found). */
static int auth_lookup(store_backend_t *b, stmt_id_t lookup, stmt_id_t touch, const char *hash,
                       int64_t now_ms, int64_t touch_after_ms, void *rec,
                       int (*row)(const PGresult *r, int i, void *rec), int user_col,
                       bool (*due)(const void *rec, int64_t before),
                       const char *(*key_of)(const void *rec), store_user_t *user)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    params_t p = {0};
    p_text(&p, hash);
    p_int(&p, now_ms);
    PGresult *r;
    rc = q_run(c, lookup, &p, &r);
    if (rc == STORE_OK && PQntuples(r) == 0)
        rc = STORE_ENOTFOUND;
    if (rc == STORE_OK)
        rc = row(r, 0, rec);
    if (rc == STORE_OK)
        rc = row_user(r, 0, user_col, user);
    PQclear(r);
    if (rc == STORE_OK && due(rec, now_ms - touch_after_ms)) {
        params_t t = {0};
        p_text(&t, key_of(rec));
        p_int(&t, now_ms);
        int64_t n = 0;
        rc = q_change(c, touch, &t, &n);
        if (rc == STORE_OK && n == 0)
            rc = STORE_ENOTFOUND;
    }
    conn_put(b, c);
    return rc;
}

static bool login_due(const void *rec, int64_t before)
{
    return ((const store_login_t *)rec)->last_seen_at <= before;
}

static const char *login_key(const void *rec)
{
    return ((const store_login_t *)rec)->id;
}

static int pg_login_lookup(store_backend_t *b, const char *hash, int64_t now_ms,
                           int64_t touch_after_ms, store_login_t *login, store_user_t *user)
{
    int rc = auth_lookup(b, ST_LOGIN_LOOKUP, ST_LOGIN_TOUCH, hash, now_ms, touch_after_ms, login,
                         row_login0, LOGIN_NCOLS, login_due, login_key, user);
    if (rc == STORE_OK && login_due(login, now_ms - touch_after_ms)) {
        if (login->last_seen_at < now_ms)
            login->last_seen_at = now_ms;
        if (login->expires_at < now_ms + login->idle_ms)
            login->expires_at = now_ms + login->idle_ms;
    }
    return rc;
}

static int row_login_item(const PGresult *r, int i, void *ud)
{
    store_login_t l;
    store_login_init(&l);
    int rc = row_login(r, i, &l);
    return rc == STORE_OK ? store__login_list_push(ud, &l) : rc;
}

static int pg_login_list(store_backend_t *b, const char *user_id, store_login_list_t *out)
{
    params_t p = {0};
    p_text(&p, user_id);
    return read_rows(b, ST_LOGIN_LIST, NULL, &p, row_login_item, out);
}

static int pg_login_delete(store_backend_t *b, const char *hash, const char *user_id)
{
    params_t p = {0};
    p_text(&p, hash);
    p_text(&p, user_id);
    return write_row(b, ST_LOGIN_DELETE, &p);
}

static int pg_login_delete_user(store_backend_t *b, const char *user_id, const char *except_hash,
                                int64_t *n_deleted)
{
    params_t p = {0};
    p_text(&p, user_id);
    p_text(&p, except_hash);
    *n_deleted = 0;
    return write_one(b, ST_LOGIN_DELETE_USER, &p, n_deleted);
}

static int pg_login_sweep(store_backend_t *b, int64_t now_ms, int64_t *n_deleted)
{
    params_t p = {0};
    p_int(&p, now_ms);
    *n_deleted = 0;
    return write_one(b, ST_LOGIN_SWEEP, &p, n_deleted);
}

/* ---- API tokens ---- */

struct token_args {
    const char *id, *user_id, *name, *hash;
    store_token_scope_t scope;
    int64_t expires_at, now;
    store_token_t *out;
};

static int token_create_body(conn_t *c, void *arg)
{
    struct token_args *a = arg;
    user_state_t u;
    int rc = read_key(c, ST_USER_STATE, a->user_id, row_state, &u);
    if (rc == STORE_OK && u.disabled)
        rc = STORE_ENOTFOUND;
    if (rc == STORE_OK && a->scope == STORE_TOKEN_ADMIN && u.role != STORE_USER_ROLE_ADMIN)
        rc = STORE_EINVAL;
    if (rc == STORE_OK) {
        params_t p = {0};
        p_text(&p, a->id);
        p_text(&p, a->user_id);
        p_text(&p, a->name);
        p_text(&p, a->hash);
        p_text(&p, store_token_scope_name(a->scope));
        p_int(&p, a->now);
        p_opt_int(&p, a->expires_at);
        rc = q_run(c, ST_TOKEN_INSERT, &p, NULL);
    }
    if (rc == STORE_OK)
        rc = read_key(c, ST_TOKEN_GET, a->id, row_token0, a->out);
    return rc;
}

static int pg_token_create(store_backend_t *b, const char *id, const char *user_id,
                           const char *name, const char *hash, store_token_scope_t scope,
                           int64_t expires_at, int64_t now_ms, store_token_t *out)
{
    struct token_args a = { id, user_id, name, hash, scope, expires_at, now_ms, out };
    return in_write(b, token_create_body, &a);
}

static int row_token_item(const PGresult *r, int i, void *ud)
{
    store_token_t t;
    store_token_init(&t);
    int rc = row_token(r, i, &t);
    return rc == STORE_OK ? store__token_list_push(ud, &t) : rc;
}

static int pg_token_list(store_backend_t *b, const char *user_id, store_token_list_t *out)
{
    params_t p = {0};
    p_text(&p, user_id);
    return read_rows(b, ST_TOKEN_LIST, NULL, &p, row_token_item, out);
}

static int pg_token_list_all(store_backend_t *b, store_token_list_t *out)
{
    params_t p = {0};
    return read_rows(b, ST_TOKEN_ALL, NULL, &p, row_token_item, out);
}

static int pg_collection_ids(store_backend_t *b, store_id_list_t *out)
{
    params_t p = {0};
    return read_rows(b, ST_COLL_IDS, NULL, &p, row_id, out);
}

static bool token_due(const void *rec, int64_t before)
{
    const store_token_t *t = rec;
    return t->last_used_at < 0 || t->last_used_at <= before;
}

static const char *token_key(const void *rec)
{
    return ((const store_token_t *)rec)->id;
}

static int pg_token_lookup(store_backend_t *b, const char *hash, int64_t now_ms,
                           int64_t touch_after_ms, store_token_t *token, store_user_t *user)
{
    int rc = auth_lookup(b, ST_TOKEN_LOOKUP, ST_TOKEN_TOUCH, hash, now_ms, touch_after_ms, token,
                         row_token0, TOKEN_NCOLS, token_due, token_key, user);
    if (rc == STORE_OK && token_due(token, now_ms - touch_after_ms) &&
        token->last_used_at < now_ms)
        token->last_used_at = now_ms;
    return rc;
}

static int pg_token_delete(store_backend_t *b, const char *user_id, const char *id)
{
    params_t p = {0};
    p_text(&p, id);
    p_text(&p, user_id);
    return write_row(b, ST_TOKEN_DELETE, &p);
}

/* ---- Audit log ---- */

struct audit_args {
    const store_audit_t *e;
    int64_t max_rows;
    int64_t *id_out;
};

static int audit_append_body(conn_t *c, void *arg)
{
    struct audit_args *a = arg;
    const store_audit_t *e = a->e;
    params_t p = {0};
    p_int(&p, e->ts);
    p_text(&p, e->actor_id);
    p_text(&p, e->actor_name);
    p_text(&p, e->action);
    p_text(&p, e->target);
    p_text(&p, e->client_addr);
    p_text(&p, e->detail);
    int rc = q_one(c, ST_AUDIT_INSERT, &p, row_count, a->id_out);
    if (rc == STORE_OK && a->max_rows > 0 && *a->id_out > a->max_rows) {
        params_t t = {0};
        p_int(&t, *a->id_out - a->max_rows);
        rc = q_run(c, ST_AUDIT_TRIM, &t, NULL);
    }
    return rc;
}

static int pg_audit_append(store_backend_t *b, const store_audit_t *e, int64_t max_rows,
                           int64_t *id_out)
{
    struct audit_args a = { e, max_rows, id_out };
    return in_write(b, audit_append_body, &a);
}

static int row_audit(const PGresult *r, int i, void *ud)
{
    store_audit_t e;
    store_audit_init(&e);
    if (col_dup(r, i, 2, &e.actor_id) || col_dup(r, i, 3, &e.actor_name) ||
        col_dup(r, i, 4, &e.action) || col_dup(r, i, 5, &e.target) ||
        col_dup(r, i, 6, &e.client_addr) || col_dup(r, i, 7, &e.detail)) {
        store_audit_cleanup(&e);
        return STORE_ENOMEM;
    }
    e.id = col_int(r, i, 0);
    e.ts = col_int(r, i, 1);
    return store__audit_list_push(ud, &e);
}

static int pg_audit_list(store_backend_t *b, const store_audit_filter_t *f,
                         store_audit_list_t *out)
{
    params_t p = {0};
    p_text(&p, f->actor);
    p_text(&p, f->action);
    p_int(&p, (int64_t)f->limit);
    p_int(&p, (int64_t)f->offset);
    return read_rows(b, ST_AUDIT_LIST, NULL, &p, row_audit, out);
}

static int pg_audit_prune(store_backend_t *b, int64_t max_rows, int64_t *n_deleted)
{
    params_t p = {0};
    p_int(&p, max_rows);
    *n_deleted = 0;
    return write_one(b, ST_AUDIT_PRUNE, &p, n_deleted);
}

/* ---- Periodic jobs ------------------------------------------------------------ */

static int pg_job_claim(store_backend_t *b, const char *name, int64_t now, int64_t interval_ms,
                        bool *claimed)
{
    params_t p = {0};
    p_text(&p, name);
    p_int(&p, now);
    p_int(&p, interval_ms);
    int64_t n = 0;
    int rc = write_one(b, ST_JOB_CLAIM, &p, &n);
    *claimed = rc == STORE_OK && n == 1;
    return rc;
}

static int pg_setting_set(store_backend_t *b, const char *key, const char *value, int64_t now)
{
    params_t p = {0};
    p_text(&p, key);
    p_text(&p, value);
    p_int(&p, now);
    int64_t n = 0;
    return write_one(b, ST_SETTING_SET, &p, &n);
}

struct setting_out {
    char **value;
    int64_t *updated_at;
};

static int row_setting(const PGresult *r, int i, void *out)
{
    struct setting_out *o = out;
    if (col_dup(r, i, 0, o->value) != 0 || !*o->value)
        return STORE_ENOMEM;
    *o->updated_at = col_int(r, i, 1);
    return STORE_OK;
}

static int pg_setting_get(store_backend_t *b, const char *key, char **value, int64_t *updated_at)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    params_t p = {0};
    p_text(&p, key);
    struct setting_out o = { value, updated_at };
    rc = q_one(c, ST_SETTING_GET, &p, row_setting, &o);
    conn_put(b, c);
    return rc;
}

/* ---- The tables --------------------------------------------------------------- */

#define PG_OPS                                        \
    .name = "postgresql",                             \
    .close = pg_close,                                \
    .check = pg_check,                                \
    .doc_insert = pg_doc_insert,                      \
    .doc_get = pg_doc_get,                            \
    .doc_find_sha256 = pg_doc_find_sha256,            \
    .doc_text_foreach = pg_doc_text_foreach,          \
    .doc_list = pg_doc_list,                          \
    .doc_delete = pg_doc_delete,                      \
    .doc_set_tokens = pg_doc_set_tokens,              \
    .doc_set_cache = pg_doc_set_cache,                \
    .doc_reset_cache = pg_doc_reset_cache,            \
    .doc_search = pg_doc_search,                      \
    .doc_set_marks = pg_doc_set_marks,                \
    .doc_set_ocr = pg_doc_set_ocr,                    \
    .doc_marks = pg_doc_marks,                        \
    .doc_set_chunks = pg_doc_set_chunks,              \
    .chunks_set_tokens = pg_chunks_set_tokens,        \
    .chunk_list = pg_chunk_list,                      \
    .chunk_get = pg_chunk_get,                        \
    .chunk_search = pg_chunk_search,                  \
    .parts_set = pg_parts_set,                        \
    .parts_list = pg_parts_list,                      \
    .part_set_cache = pg_part_set_cache,              \
    .session_create = pg_session_create,              \
    .session_ensure = pg_session_ensure,              \
    .session_get = pg_session_get,                    \
    .session_touch = pg_session_touch,                \
    .session_set_documents = pg_session_set_documents, \
    .session_documents = pg_session_documents,        \
    .collection_create = pg_collection_create,        \
    .collection_get = pg_collection_get,              \
    .session_set_title = pg_session_set_title,        \
    .session_list = pg_session_list,                  \
    .session_delete = pg_session_delete,              \
    .session_delete_idle = pg_session_delete_idle,    \
    .msg_append = pg_msg_append,                      \
    .msg_list = pg_msg_list,                          \
    .msg_count = pg_msg_count,                        \
    .doc_copy_content = pg_doc_copy_content,          \
    .doc_set_shared = pg_doc_set_shared,              \
    .file_refs = pg_file_refs,                        \
    .user_create = pg_user_create,                    \
    .user_get = pg_user_get,                          \
    .user_list = pg_user_list,                        \
    .user_set_role = pg_user_set_role,                \
    .user_set_disabled = pg_user_set_disabled,        \
    .user_set_password = pg_user_set_password,        \
    .user_delete = pg_user_delete,                    \
    .user_count = pg_user_count,                      \
    .user_usage = pg_user_usage,                      \
    .adopt_unowned = pg_adopt_unowned,                \
    .login_create = pg_login_create,                  \
    .login_lookup = pg_login_lookup,                  \
    .login_list = pg_login_list,                      \
    .login_delete = pg_login_delete,                  \
    .login_delete_user = pg_login_delete_user,        \
    .login_sweep = pg_login_sweep,                    \
    .token_create = pg_token_create,                  \
    .token_list = pg_token_list,                      \
    .token_lookup = pg_token_lookup,                  \
    .token_delete = pg_token_delete,                  \
    .audit_append = pg_audit_append,                  \
    .audit_list = pg_audit_list,                      \
    .audit_prune = pg_audit_prune,                    \
    .job_claim = pg_job_claim,                        \
    .token_list_all = pg_token_list_all,              \
    .collection_ids = pg_collection_ids,              \
    .setting_set = pg_setting_set,                    \
    .setting_get = pg_setting_get

const store_backend_ops_t store_pg_ops = {
    .scheme = "postgresql",
    .open = pg_open,
    PG_OPS,
};

const store_backend_ops_t store_pg_ops_alias = {
    .scheme = "postgres",
    .open = pg_open_alias,
    PG_OPS,
};
