/* store_sqlite.c — the store on SQLite (see store_sqlite.h for the design).
 *
 * The only file that includes sqlite3.h. It holds the schema and its
 * migrations, the connection pool with per-connection prepared statements,
 * the translation of SQLite result codes into STORE_E* codes (sqlite_rc(),
 * the one place), and one function per store operation.
 *
 * Invariants:
 *  - a connection is used by one thread at a time (taken from the pool by
 *    conn_get(), returned by conn_put()), so it is opened with
 *    SQLITE_OPEN_NOMUTEX and its error message belongs to the caller;
 *  - every write holds b->write_mu from BEGIN IMMEDIATE (or the single
 *    autocommit statement) to COMMIT/ROLLBACK; a thread takes a connection
 *    before the write mutex, never the other way round, so waiting for a
 *    connection never holds up a writer;
 *  - a cached statement is reset and its bindings cleared after each use
 *    (stmt_done()), so no statement keeps a read transaction open and no
 *    bound pointer outlives the call;
 *  - a connection goes back to the pool outside any transaction.
 *
 * Schema: see `migrations` below; version N of the schema is reached by
 * running migrations[0..N) in order, each in its own transaction that also
 * sets PRAGMA user_version. Never edit a migration that has shipped: append
 * a new one.
 */
#include "app/store/store_sqlite.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common/log.h"

/* ---- Schema ----------------------------------------------------------------- */

static const char *const migrations[] = {
    /* 0 → 1: documents with their texts and full-text index, sessions,
     * messages. */
    "CREATE TABLE documents (\n"
    "    id             TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),\n"
    "    filename       TEXT NOT NULL CHECK (length(filename) >= 1),\n"
    "    stored_name    TEXT NOT NULL UNIQUE\n"
    "                   CHECK (length(stored_name) >= 1 AND instr(stored_name, '/') = 0),\n"
    "    content_type   TEXT NOT NULL\n"
    "                   CHECK (content_type IN ('txt','md','pdf','docx','odt','html','epub')),\n"
    "    file_size      INTEGER NOT NULL CHECK (file_size >= 0),\n"
    "    sha256         TEXT NOT NULL UNIQUE\n"
    "                   CHECK (length(sha256) = 64 AND NOT sha256 GLOB '*[^0-9a-f]*'),\n"
    "    uploaded_at    INTEGER NOT NULL,\n"
    "    n_chars        INTEGER NOT NULL CHECK (n_chars >= 0),\n"
    "    n_tokens       INTEGER CHECK (n_tokens IS NULL OR n_tokens >= 0),\n"
    "    cache_status   TEXT NOT NULL DEFAULT 'none'\n"
    "                   CHECK (cache_status IN ('none','caching','cached','failed')),\n"
    "    cache_entry_id TEXT,\n"
    "    cache_tokens   INTEGER CHECK (cache_tokens IS NULL OR cache_tokens >= 0),\n"
    "    cache_bytes    INTEGER CHECK (cache_bytes IS NULL OR cache_bytes >= 0),\n"
    "    cache_tier     TEXT,\n"
    "    cache_ms       REAL CHECK (cache_ms IS NULL OR cache_ms >= 0),\n"
    "    cached_at      INTEGER,\n"
    "    cache_error    TEXT\n"
    ") STRICT;\n"
    "CREATE INDEX documents_by_upload ON documents (uploaded_at);\n"
    "\n"
    "CREATE TABLE document_texts (\n"
    "    document_id TEXT NOT NULL PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,\n"
    "    text        TEXT NOT NULL\n"
    ") STRICT;\n"
    "CREATE VIRTUAL TABLE document_fts USING fts5 (\n"
    "    text, content = 'document_texts', tokenize = 'unicode61 remove_diacritics 2'\n"
    ");\n"
    "CREATE TRIGGER document_texts_ai AFTER INSERT ON document_texts BEGIN\n"
    "    INSERT INTO document_fts (rowid, text) VALUES (new.rowid, new.text);\n"
    "END;\n"
    "CREATE TRIGGER document_texts_ad AFTER DELETE ON document_texts BEGIN\n"
    "    INSERT INTO document_fts (document_fts, rowid, text)\n"
    "        VALUES ('delete', old.rowid, old.text);\n"
    "END;\n"
    "CREATE TRIGGER document_texts_au AFTER UPDATE ON document_texts BEGIN\n"
    "    INSERT INTO document_fts (document_fts, rowid, text)\n"
    "        VALUES ('delete', old.rowid, old.text);\n"
    "    INSERT INTO document_fts (rowid, text) VALUES (new.rowid, new.text);\n"
    "END;\n"
    "\n"
    "CREATE TABLE sessions (\n"
    "    id          TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),\n"
    "    created_at  INTEGER NOT NULL,\n"
    "    last_active INTEGER NOT NULL,\n"
    "    document_id TEXT REFERENCES documents (id) ON DELETE SET NULL,\n"
    "    title       TEXT\n"
    ") STRICT;\n"
    "CREATE INDEX sessions_by_activity ON sessions (last_active);\n"
    "CREATE INDEX sessions_by_document ON sessions (document_id);\n"
    "\n"
    "CREATE TABLE messages (\n"
    "    id         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,\n"
    "    role       TEXT NOT NULL CHECK (role IN ('system','user','assistant')),\n"
    "    content    TEXT NOT NULL,\n"
    "    created_at INTEGER NOT NULL,\n"
    "    incomplete INTEGER NOT NULL DEFAULT 0 CHECK (incomplete IN (0, 1)),\n"
    "    meta       TEXT CHECK (meta IS NULL OR json_valid(meta))\n"
    ") STRICT;\n"
    "CREATE INDEX messages_by_session ON messages (session_id, id);\n",

    /* 1 → 2: a text in pieces (document_chunks, at most STORE_TEXT_CHUNK
     * bytes each, cut between words), each a row of the full-text index,
     * so storing, indexing and reading a text take memory bounded by a
     * piece, not by the text (a 50 MB text used to be one value, held
     * whole by SQLite and by FTS5's pending index). A text stored before
     * becomes one piece. */
    "CREATE TABLE document_chunks (\n"
    "    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
    "    seq         INTEGER NOT NULL CHECK (seq >= 0),\n"
    "    text        TEXT NOT NULL,\n"
    "    PRIMARY KEY (document_id, seq)\n"
    ") STRICT;\n"
    "INSERT INTO document_chunks (document_id, seq, text)\n"
    "    SELECT document_id, 0, text FROM document_texts WHERE text <> '';\n"
    "DROP TRIGGER document_texts_ai;\n"
    "DROP TRIGGER document_texts_ad;\n"
    "DROP TRIGGER document_texts_au;\n"
    "DROP TABLE document_fts;\n"
    "DROP TABLE document_texts;\n"
    "CREATE VIRTUAL TABLE document_fts USING fts5 (\n"
    "    text, content = 'document_chunks', tokenize = 'unicode61 remove_diacritics 2'\n"
    ");\n"
    "INSERT INTO document_fts (document_fts) VALUES ('rebuild');\n"
    "CREATE TRIGGER document_chunks_ai AFTER INSERT ON document_chunks BEGIN\n"
    "    INSERT INTO document_fts (rowid, text) VALUES (new.rowid, new.text);\n"
    "END;\n"
    "CREATE TRIGGER document_chunks_ad AFTER DELETE ON document_chunks BEGIN\n"
    "    INSERT INTO document_fts (document_fts, rowid, text)\n"
    "        VALUES ('delete', old.rowid, old.text);\n"
    "END;\n"
    "CREATE TRIGGER document_chunks_au AFTER UPDATE ON document_chunks BEGIN\n"
    "    INSERT INTO document_fts (document_fts, rowid, text)\n"
    "        VALUES ('delete', old.rowid, old.text);\n"
    "    INSERT INTO document_fts (rowid, text) VALUES (new.rowid, new.text);\n"
    "END;\n",

    /* 2 → 3: long documents. The structure of a text (where pages and
     * headings start), its chunks (cut at paragraph and heading
     * boundaries, each with the text a full-text index of its own holds:
     * chunk_fts, BM25 over stemmed English words and segmented CJK), and
     * plans of parts (runs of chunks that fit a model's context, keyed by
     * the caller's plan key) with a cache state per part; the documents of
     * a session that talks about several (in their order), and named
     * collections of documents. */
    "CREATE TABLE document_marks (\n"
    "    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
    "    seq         INTEGER NOT NULL CHECK (seq >= 0),\n"
    "    kind        TEXT NOT NULL CHECK (kind IN ('page','heading')),\n"
    "    pos         INTEGER NOT NULL CHECK (pos >= 0),\n"
    "    number      INTEGER NOT NULL,\n"
    "    label       TEXT NOT NULL,\n"
    "    PRIMARY KEY (document_id, seq)\n"
    ") STRICT;\n"
    "CREATE TABLE chunks (\n"
    "    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
    "    seq         INTEGER NOT NULL CHECK (seq >= 0),\n"
    "    pos_start   INTEGER NOT NULL CHECK (pos_start >= 0),\n"
    "    pos_end     INTEGER NOT NULL CHECK (pos_end >= pos_start),\n"
    "    n_chars     INTEGER NOT NULL CHECK (n_chars >= 0),\n"
    "    est_tokens  INTEGER NOT NULL CHECK (est_tokens >= 0),\n"
    "    tokens      INTEGER CHECK (tokens IS NULL OR tokens >= 0),\n"
    "    tokens_key  TEXT,\n"
    "    page_first  INTEGER NOT NULL DEFAULT 0,\n"
    "    page_last   INTEGER NOT NULL DEFAULT 0,\n"
    "    label_first TEXT NOT NULL DEFAULT '',\n"
    "    label_last  TEXT NOT NULL DEFAULT '',\n"
    "    heading     TEXT NOT NULL DEFAULT '',\n"
    "    content     TEXT NOT NULL,\n"
    "    index_text  TEXT NOT NULL,\n"
    "    PRIMARY KEY (document_id, seq)\n"
    ") STRICT;\n"
    "CREATE VIRTUAL TABLE chunk_fts USING fts5 (\n"
    "    index_text, content = 'chunks',\n"
    "    tokenize = 'porter unicode61 remove_diacritics 2'\n"
    ");\n"
    "CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN\n"
    "    INSERT INTO chunk_fts (rowid, index_text) VALUES (new.rowid, new.index_text);\n"
    "END;\n"
    "CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN\n"
    "    INSERT INTO chunk_fts (chunk_fts, rowid, index_text)\n"
    "        VALUES ('delete', old.rowid, old.index_text);\n"
    "END;\n"
    "CREATE TRIGGER chunks_au AFTER UPDATE OF index_text ON chunks BEGIN\n"
    "    INSERT INTO chunk_fts (chunk_fts, rowid, index_text)\n"
    "        VALUES ('delete', old.rowid, old.index_text);\n"
    "    INSERT INTO chunk_fts (rowid, index_text) VALUES (new.rowid, new.index_text);\n"
    "END;\n"
    "CREATE TABLE document_parts (\n"
    "    document_id    TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
    "    plan_key       TEXT NOT NULL,\n"
    "    seq            INTEGER NOT NULL CHECK (seq >= 0),\n"
    "    chunk_first    INTEGER NOT NULL CHECK (chunk_first >= 0),\n"
    "    chunk_last     INTEGER NOT NULL CHECK (chunk_last >= chunk_first),\n"
    "    tokens         INTEGER CHECK (tokens IS NULL OR tokens >= 0),\n"
    "    content_length INTEGER NOT NULL CHECK (content_length >= 0),\n"
    "    cache_status   TEXT NOT NULL DEFAULT 'none'\n"
    "                   CHECK (cache_status IN ('none','caching','cached','failed')),\n"
    "    cache_entry_id TEXT,\n"
    "    cache_tokens   INTEGER CHECK (cache_tokens IS NULL OR cache_tokens >= 0),\n"
    "    cache_bytes    INTEGER CHECK (cache_bytes IS NULL OR cache_bytes >= 0),\n"
    "    cache_tier     TEXT,\n"
    "    cache_ms       REAL CHECK (cache_ms IS NULL OR cache_ms >= 0),\n"
    "    cached_at      INTEGER,\n"
    "    cache_error    TEXT,\n"
    "    PRIMARY KEY (document_id, plan_key, seq)\n"
    ") STRICT;\n"
    "CREATE TABLE session_documents (\n"
    "    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,\n"
    "    pos         INTEGER NOT NULL CHECK (pos >= 0),\n"
    "    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
    "    PRIMARY KEY (session_id, pos),\n"
    "    UNIQUE (session_id, document_id)\n"
    ") STRICT;\n"
    "CREATE INDEX session_documents_by_document ON session_documents (document_id);\n"
    "CREATE TABLE collections (\n"
    "    id         TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),\n"
    "    name       TEXT NOT NULL,\n"
    "    created_at INTEGER NOT NULL\n"
    ") STRICT;\n"
    "CREATE TABLE collection_documents (\n"
    "    collection_id TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,\n"
    "    pos           INTEGER NOT NULL CHECK (pos >= 0),\n"
    "    document_id   TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,\n"
    "    PRIMARY KEY (collection_id, pos)\n"
    ") STRICT;\n"
    "CREATE INDEX collection_documents_by_document ON collection_documents (document_id);\n",
};

#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

_Static_assert(N_MIGRATIONS == STORE_SQLITE_SCHEMA_VERSION,
               "STORE_SQLITE_SCHEMA_VERSION must match the migrations");

const char *store_sqlite_migration(int v)
{
    return v >= 0 && v < N_MIGRATIONS ? migrations[v] : NULL;
}

/* ---- Statements ----------------------------------------------------------- */

/* Columns of a document row, in the order row_doc() reads them. */
#define DOC_COLS                                                                        \
    "d.id, d.filename, d.stored_name, d.content_type, d.file_size, d.sha256, "         \
    "d.uploaded_at, d.n_chars, d.n_tokens, d.cache_status, d.cache_entry_id, "          \
    "d.cache_tokens, d.cache_bytes, d.cache_tier, d.cache_ms, d.cached_at, d.cache_error, "  \
    "(SELECT coalesce(max(number), 0) FROM document_marks m "                            \
    " WHERE m.document_id = d.id AND m.kind = 'page'), "                                 \
    "(SELECT count(*) FROM chunks k WHERE k.document_id = d.id)"

/* Columns of a session row, in the order row_session() reads them. */
#define SESSION_SELECT                                                                  \
    "SELECT s.id, s.created_at, s.last_active, s.document_id, s.title, "               \
    "(SELECT count(*) FROM messages m WHERE m.session_id = s.id), d.filename "         \
    "FROM sessions s LEFT JOIN documents d ON d.id = s.document_id "

#define MSG_COLS "id, session_id, role, content, created_at, incomplete, meta"

/* Columns of a chunk row, in the order row_chunk() reads them (content and
 * score follow in the statements that have them). */
#define CHUNK_COLS                                                                      \
    "c.document_id, c.seq, c.pos_start, c.pos_end, c.n_chars, c.est_tokens, c.tokens, " \
    "c.tokens_key, c.page_first, c.page_last, c.label_first, c.label_last, c.heading"

/* The cache columns of a document or part row, in bind_cache_at() order. */
#define CACHE_COLS                                                                      \
    "cache_status, cache_entry_id, cache_tokens, cache_bytes, cache_tier, cache_ms, "   \
    "cached_at, cache_error"

#define PART_COLS                                                                       \
    "document_id, plan_key, seq, chunk_first, chunk_last, tokens, content_length, "     \
    CACHE_COLS

typedef enum {
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_DOC_INSERT,
    ST_CHUNK_INSERT,
    ST_DOC_SET_CHARS,
    ST_DOC_GET,
    ST_DOC_BY_SHA,
    ST_DOC_TEXT,
    ST_DOC_LIST,
    ST_DOC_DELETE,
    ST_DOC_SET_TOKENS,
    ST_DOC_SET_CACHE,
    ST_DOC_RESET_CACHE,
    ST_DOC_RESET_CACHING,
    ST_DOC_SEARCH,
    ST_SES_INSERT,
    ST_SES_GET,
    ST_SES_TOUCH,
    ST_SES_SET_DOC,
    ST_SES_SET_TITLE,
    ST_SES_LIST,
    ST_SES_DELETE,
    ST_SES_DELETE_IDLE,
    ST_SES_EXISTS,
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
    ST_SES_DOC,
    ST_COLL_INSERT,
    ST_COLLDOC_INSERT,
    ST_COLL_GET,
    ST_COLLDOC_LIST,
    ST_COUNT
} stmt_id_t;

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_DOC_INSERT] =
        "INSERT INTO documents (id, filename, stored_name, content_type, file_size, sha256, "
        "uploaded_at, n_chars, n_tokens) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_CHUNK_INSERT] =
        "INSERT INTO document_chunks (document_id, seq, text) VALUES (?1, ?2, ?3)",
    [ST_DOC_SET_CHARS] = "UPDATE documents SET n_chars = ?2 WHERE id = ?1",
    [ST_DOC_GET] = "SELECT " DOC_COLS " FROM documents d WHERE d.id = ?1",
    [ST_DOC_BY_SHA] = "SELECT " DOC_COLS " FROM documents d WHERE d.sha256 = ?1",
    /* one row per piece; one row with NULL for an empty text; none for no
     * such document */
    [ST_DOC_TEXT] = "SELECT c.text FROM documents d "
                    "LEFT JOIN document_chunks c ON c.document_id = d.id "
                    "WHERE d.id = ?1 ORDER BY c.seq",
    [ST_DOC_LIST] = "SELECT " DOC_COLS " FROM documents d "
                    "ORDER BY d.uploaded_at DESC, d.rowid DESC",
    [ST_DOC_DELETE] = "DELETE FROM documents WHERE id = ?1",
    [ST_DOC_SET_TOKENS] = "UPDATE documents SET n_tokens = ?2 WHERE id = ?1",
    [ST_DOC_SET_CACHE] =
        "UPDATE documents SET cache_status = ?2, cache_entry_id = ?3, cache_tokens = ?4, "
        "cache_bytes = ?5, cache_tier = ?6, cache_ms = ?7, cached_at = ?8, cache_error = ?9 "
        "WHERE id = ?1",
    [ST_DOC_RESET_CACHE] =
        "UPDATE documents SET cache_status = 'none', cache_entry_id = NULL, "
        "cache_tokens = NULL, cache_bytes = NULL, cache_tier = NULL, cache_ms = NULL, "
        "cached_at = NULL, cache_error = NULL "
        "WHERE cache_status <> 'none' OR cache_entry_id IS NOT NULL "
        "OR cache_tokens IS NOT NULL OR cache_bytes IS NOT NULL OR cache_tier IS NOT NULL "
        "OR cache_ms IS NOT NULL OR cached_at IS NOT NULL OR cache_error IS NOT NULL",
    [ST_DOC_RESET_CACHING] =
        "UPDATE documents SET cache_status = 'none', cache_entry_id = NULL, "
        "cache_tokens = NULL, cache_bytes = NULL, cache_tier = NULL, cache_ms = NULL, "
        "cached_at = NULL, cache_error = NULL WHERE cache_status = 'caching'",
    /* a document ranks as its best-matching piece */
    [ST_DOC_SEARCH] = "SELECT " DOC_COLS " FROM (SELECT c.document_id AS id, min(f.rank) AS r "
                      "FROM document_fts f JOIN document_chunks c ON c.rowid = f.rowid "
                      "WHERE document_fts MATCH ?1 GROUP BY c.document_id) m "
                      "JOIN documents d ON d.id = m.id ORDER BY m.r LIMIT ?2",
    [ST_SES_INSERT] = "INSERT INTO sessions (id, created_at, last_active, document_id, title) "
                      "VALUES (?1, ?2, ?2, ?3, ?4)",
    [ST_SES_GET] = SESSION_SELECT "WHERE s.id = ?1",
    [ST_SES_TOUCH] = "UPDATE sessions SET last_active = max(last_active, ?2) WHERE id = ?1",
    [ST_SES_SET_DOC] = "UPDATE sessions SET document_id = ?2 WHERE id = ?1",
    [ST_SES_SET_TITLE] = "UPDATE sessions SET title = ?2 WHERE id = ?1",
    [ST_SES_LIST] = SESSION_SELECT "ORDER BY s.last_active DESC, s.rowid DESC LIMIT ?1",
    [ST_SES_DELETE] = "DELETE FROM sessions WHERE id = ?1",
    [ST_SES_DELETE_IDLE] = "DELETE FROM sessions WHERE last_active < ?1",
    [ST_SES_EXISTS] = "SELECT 1 FROM sessions WHERE id = ?1",
    [ST_MSG_INSERT] = "INSERT INTO messages (session_id, role, content, created_at, incomplete, "
                      "meta) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* The last ?2 messages (all for -1), oldest first. */
    [ST_MSG_LIST] = "SELECT " MSG_COLS " FROM (SELECT " MSG_COLS " FROM messages "
                    "WHERE session_id = ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id",
    [ST_MSG_COUNT] = "SELECT (SELECT count(*) FROM messages WHERE session_id = ?1), "
                     "EXISTS (SELECT 1 FROM sessions WHERE id = ?1)",
    [ST_DOC_EXISTS] = "SELECT 1 FROM documents WHERE id = ?1",
    [ST_MARK_DELETE] = "DELETE FROM document_marks WHERE document_id = ?1",
    [ST_MARK_INSERT] = "INSERT INTO document_marks (document_id, seq, kind, pos, number, label) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_MARK_LIST] = "SELECT kind, pos, number, label FROM document_marks "
                     "WHERE document_id = ?1 ORDER BY seq",
    [ST_CHUNK_DELETE] = "DELETE FROM chunks WHERE document_id = ?1",
    [ST_CHUNK_ADD] =
        "INSERT INTO chunks (document_id, seq, pos_start, pos_end, n_chars, est_tokens, "
        "page_first, page_last, label_first, label_last, heading, content, index_text) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [ST_CHUNK_SET_TOKENS] = "UPDATE chunks SET tokens = ?3, tokens_key = ?4 "
                            "WHERE document_id = ?1 AND seq = ?2",
    [ST_CHUNK_LIST] = "SELECT " CHUNK_COLS ", CASE WHEN ?4 THEN c.content END FROM chunks c "
                      "WHERE c.document_id = ?1 AND c.seq >= ?2 ORDER BY c.seq LIMIT ?3",
    [ST_CHUNK_COUNT] = "SELECT count(*) FROM chunks WHERE document_id = ?1",
    [ST_CHUNK_GET] = "SELECT " CHUNK_COLS ", c.content FROM chunks c "
                     "WHERE c.document_id = ?1 AND c.seq = ?2",
    /* ?2: a JSON array of document ids */
    [ST_CHUNK_SEARCH] = "SELECT " CHUNK_COLS ", NULL, -bm25(chunk_fts) FROM chunk_fts "
                        "JOIN chunks c ON c.rowid = chunk_fts.rowid "
                        "WHERE chunk_fts MATCH ?1 "
                        "AND c.document_id IN (SELECT value FROM json_each(?2)) "
                        "ORDER BY bm25(chunk_fts) LIMIT ?3",
    [ST_PARTS_DELETE_DOC] = "DELETE FROM document_parts WHERE document_id = ?1",
    [ST_PARTS_DELETE_KEY] = "DELETE FROM document_parts WHERE document_id = ?1 AND plan_key = ?2",
    [ST_PART_INSERT] = "INSERT INTO document_parts (" PART_COLS ") VALUES "
                       "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    [ST_PARTS_LIST] = "SELECT " PART_COLS " FROM document_parts "
                      "WHERE document_id = ?1 AND plan_key = ?2 ORDER BY seq",
    [ST_PART_SET_CACHE] =
        "UPDATE document_parts SET cache_status = ?4, cache_entry_id = ?5, cache_tokens = ?6, "
        "cache_bytes = ?7, cache_tier = ?8, cache_ms = ?9, cached_at = ?10, cache_error = ?11 "
        "WHERE document_id = ?1 AND plan_key = ?2 AND seq = ?3",
    [ST_PARTS_RESET_CACHE] =
        "UPDATE document_parts SET cache_status = 'none', cache_entry_id = NULL, "
        "cache_tokens = NULL, cache_bytes = NULL, cache_tier = NULL, cache_ms = NULL, "
        "cached_at = NULL, cache_error = NULL WHERE cache_status <> 'none'",
    [ST_PARTS_RESET_CACHING] =
        "UPDATE document_parts SET cache_status = 'none', cache_entry_id = NULL, "
        "cache_tokens = NULL, cache_bytes = NULL, cache_tier = NULL, cache_ms = NULL, "
        "cached_at = NULL, cache_error = NULL WHERE cache_status = 'caching'",
    [ST_SESDOC_DELETE] = "DELETE FROM session_documents WHERE session_id = ?1",
    [ST_SESDOC_INSERT] = "INSERT INTO session_documents (session_id, pos, document_id) "
                         "VALUES (?1, ?2, ?3)",
    [ST_SESDOC_LIST] = "SELECT document_id FROM session_documents WHERE session_id = ?1 "
                       "ORDER BY pos",
    [ST_SES_DOC] = "SELECT document_id FROM sessions WHERE id = ?1",
    [ST_COLL_INSERT] = "INSERT INTO collections (id, name, created_at) VALUES (?1, ?2, ?3)",
    [ST_COLLDOC_INSERT] = "INSERT INTO collection_documents (collection_id, pos, document_id) "
                          "VALUES (?1, ?2, ?3)",
    [ST_COLL_GET] = "SELECT name, created_at FROM collections WHERE id = ?1",
    [ST_COLLDOC_LIST] = "SELECT document_id FROM collection_documents WHERE collection_id = ?1 "
                        "ORDER BY pos",
};

/* ---- Backend state -------------------------------------------------------- */

typedef struct conn {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];  /* prepared on first use, kept until close */
    struct conn *next;           /* in the free list */
} conn_t;

struct store_backend {
    char *path;
    int max_conns;               /* STORE_SQLITE_POOL, 1 for ":memory:" */
    pthread_mutex_t pool_mu;     /* guards free_list, n_conns */
    pthread_cond_t pool_cv;      /* a connection was returned or a slot freed */
    conn_t *free_list;
    int n_conns;                 /* open connections, in use or free */
    pthread_mutex_t write_mu;    /* held by the one writing connection */
    bool ready;                  /* opened and migrated: ours to write to */
};

/* ---- Result codes ----------------------------------------------------------- */

/* Translate a SQLite result code (extended codes on) into STORE_*. Errors
 * that mean damage or a failing disk are logged with SQLite's message
 * (`what` names the operation); the others are the caller's to report. */
static int sqlite_rc(sqlite3 *db, int rc, const char *what)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return STORE_OK;
    case SQLITE_NOMEM:
        return STORE_ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        log_warn("store: %s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        return STORE_EBUSY;
    case SQLITE_CONSTRAINT:
        switch (rc) {
        case SQLITE_CONSTRAINT_FOREIGNKEY:
            return STORE_ENOTFOUND;
        case SQLITE_CONSTRAINT_CHECK:
        case SQLITE_CONSTRAINT_NOTNULL:
        case SQLITE_CONSTRAINT_DATATYPE:
            return STORE_EINVAL;
        default: /* UNIQUE, PRIMARYKEY, ROWID, ... */
            return STORE_ECONFLICT;
        }
    case SQLITE_TOOBIG:
        return STORE_ETOOBIG;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_FORMAT:
        log_error("store: %s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        return STORE_ECORRUPT;
    default: /* IOERR, FULL, CANTOPEN, READONLY, PERM, PROTOCOL, ERROR, ... */
        log_error("store: %s: %s (%d)", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
                  rc);
        return STORE_EIO;
    }
}

/* ---- Statements on a connection -------------------------------------------- */

/* The cached statement `id` of connection c, prepared on first use. */
static int stmt_get(conn_t *c, stmt_id_t id, sqlite3_stmt **out)
{
    if (!c->st[id]) {
        int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->st[id], NULL);
        if (rc != SQLITE_OK) {
            c->st[id] = NULL;
            *out = NULL;
            return sqlite_rc(c->db, rc, "prepare");
        }
    }
    *out = c->st[id];
    return STORE_OK;
}

/* Reset a statement after use and drop its bindings (they point into the
 * caller's strings). Accepts NULL. */
static void stmt_done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* Step a statement that returns no rows (or whose rows are ignored) to the
 * end; reset it. Returns a STORE_* code. */
static int stmt_run(conn_t *c, sqlite3_stmt *st, const char *what)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    int out = sqlite_rc(c->db, rc, what);
    stmt_done(st);
    return out;
}

/* Run a cached statement without parameters (BEGIN, COMMIT, ROLLBACK). */
static int exec_cached(conn_t *c, stmt_id_t id)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, id, &st);
    return rc == STORE_OK ? stmt_run(c, st, stmt_sql[id]) : rc;
}

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* Negative numbers mean "unknown": NULL. */
static int bind_opt_int(sqlite3_stmt *st, int i, int64_t v)
{
    return v >= 0 ? sqlite3_bind_int64(st, i, v) : sqlite3_bind_null(st, i);
}

static int bind_opt_real(sqlite3_stmt *st, int i, double v)
{
    return v >= 0 ? sqlite3_bind_double(st, i, v) : sqlite3_bind_null(st, i);
}

/* A LIMIT value: 0 (all) and anything beyond int64 become -1 (no limit). */
static sqlite3_int64 sql_limit(size_t limit)
{
    return limit == 0 || (uint64_t)limit > (uint64_t)INT64_MAX ? -1 : (sqlite3_int64)limit;
}

/* Copy text column i into *out (NULL for SQL NULL). Returns 0, or -1 when
 * out of memory. */
static int col_dup(sqlite3_stmt *st, int i, char **out)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    if (!t) {
        *out = NULL;
        /* NULL text is also how SQLite reports ENOMEM while converting. */
        return sqlite3_column_type(st, i) == SQLITE_NULL ? 0 : -1;
    }
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    *out = malloc(n + 1);
    if (!*out)
        return -1;
    memcpy(*out, t, n);
    (*out)[n] = '\0';
    return 0;
}

static int64_t col_opt_int(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, i);
}

static double col_opt_real(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? -1 : sqlite3_column_double(st, i);
}

/* Fill *d (initialized by the caller) from a DOC_COLS row. On STORE_ENOMEM
 * *d is cleaned up. */
/* Fill *c (initialized) from the CACHE_COLS columns starting at i. Returns
 * 0, or -1 when out of memory (the caller cleans up). */
static int row_cache_at(sqlite3_stmt *st, int i, store_cache_t *c)
{
    char *status = NULL;
    if (col_dup(st, i, &status) || col_dup(st, i + 1, &c->entry_id) ||
        col_dup(st, i + 4, &c->tier) || col_dup(st, i + 7, &c->error)) {
        free(status);
        return -1;
    }
    /* The CHECK constraint admits only known names. */
    if (store_cache_status_parse(status, &c->status) != STORE_OK)
        c->status = STORE_CACHE_NONE;
    free(status);
    c->tokens = col_opt_int(st, i + 2);
    c->bytes = col_opt_int(st, i + 3);
    c->ms = col_opt_real(st, i + 5);
    c->cached_at = col_opt_int(st, i + 6);
    return 0;
}

static int row_doc(sqlite3_stmt *st, store_doc_t *d)
{
    if (col_dup(st, 0, &d->id) || col_dup(st, 1, &d->filename) ||
        col_dup(st, 2, &d->stored_name) || col_dup(st, 3, &d->content_type) ||
        col_dup(st, 5, &d->sha256) || row_cache_at(st, 9, &d->cache)) {
        store_doc_cleanup(d);
        return STORE_ENOMEM;
    }
    d->file_size = sqlite3_column_int64(st, 4);
    d->uploaded_at = sqlite3_column_int64(st, 6);
    d->n_chars = sqlite3_column_int64(st, 7);
    d->n_tokens = col_opt_int(st, 8);
    d->n_pages = sqlite3_column_int64(st, 17);
    d->n_chunks = sqlite3_column_int64(st, 18);
    return STORE_OK;
}

/* Fill *ss (initialized) from a SESSION_SELECT row. On STORE_ENOMEM *ss is
 * cleaned up. */
static int row_session(sqlite3_stmt *st, store_session_t *ss)
{
    if (col_dup(st, 0, &ss->id) || col_dup(st, 3, &ss->document_id) ||
        col_dup(st, 4, &ss->title) || col_dup(st, 6, &ss->document_filename)) {
        store_session_cleanup(ss);
        return STORE_ENOMEM;
    }
    ss->created_at = sqlite3_column_int64(st, 1);
    ss->last_active = sqlite3_column_int64(st, 2);
    ss->message_count = sqlite3_column_int64(st, 5);
    return STORE_OK;
}

/* Fill *m (initialized) from a MSG_COLS row. On STORE_ENOMEM *m is cleaned
 * up. */
static int row_msg(sqlite3_stmt *st, store_msg_t *m)
{
    char *role = NULL;
    if (col_dup(st, 1, &m->session_id) || col_dup(st, 2, &role) ||
        col_dup(st, 3, &m->content) || col_dup(st, 6, &m->meta)) {
        free(role);
        store_msg_cleanup(m);
        return STORE_ENOMEM;
    }
    if (!m->content) { /* NOT NULL in the schema; "" read back as "" */
        m->content = strdup("");
        if (!m->content) {
            free(role);
            store_msg_cleanup(m);
            return STORE_ENOMEM;
        }
    }
    m->id = sqlite3_column_int64(st, 0);
    if (store_role_parse(role, &m->role) != STORE_OK)
        m->role = STORE_ROLE_USER; /* cannot happen: CHECK constraint */
    free(role);
    m->created_at = sqlite3_column_int64(st, 4);
    m->incomplete = sqlite3_column_int(st, 5) != 0;
    return STORE_OK;
}

/* Run a statement expected to return at most one DOC_COLS row into *d.
 * STORE_ENOTFOUND when it returns none. Resets the statement. */
static int query_doc(conn_t *c, sqlite3_stmt *st, store_doc_t *d, const char *what)
{
    int rc = sqlite3_step(st);
    int out;
    if (rc == SQLITE_ROW)
        out = row_doc(st, d);
    else if (rc == SQLITE_DONE)
        out = STORE_ENOTFOUND;
    else
        out = sqlite_rc(c->db, rc, what);
    stmt_done(st);
    return out;
}

static int query_session(conn_t *c, sqlite3_stmt *st, store_session_t *ss, const char *what)
{
    int rc = sqlite3_step(st);
    int out;
    if (rc == SQLITE_ROW)
        out = row_session(st, ss);
    else if (rc == SQLITE_DONE)
        out = STORE_ENOTFOUND;
    else
        out = sqlite_rc(c->db, rc, what);
    stmt_done(st);
    return out;
}

/* ---- Connections ---------------------------------------------------------- */

static void conn_close(conn_t *c)
{
    if (!c)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    free(c);
}

/* Run one pragma (or any SQL) on a fresh connection; if `want` is not NULL
 * the first column of the first row must equal it (case-insensitive). */
static int conn_pragma(sqlite3 *db, const char *sql, const char *want, const char *path)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int out;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        const char *got = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        out = STORE_OK;
        if (want && (!got || sqlite3_stricmp(got, want) != 0)) {
            log_warn("store: %s: '%s' gave '%s', expected '%s'", path, sql, got ? got : "",
                     want);
            out = STORE_EUNSUPPORTED;
        }
    } else {
        out = sqlite_rc(db, rc, path);
    }
    sqlite3_finalize(st);
    return out;
}

/* Open one connection to b->path and configure it. */
static int conn_open(struct store_backend *b, conn_t **out)
{
    *out = NULL;
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return STORE_ENOMEM;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(b->path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        int out_rc = c->db ? sqlite_rc(c->db, rc, b->path) : STORE_ENOMEM;
        conn_close(c);
        return out_rc;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, STORE_SQLITE_BUSY_MS);

    bool memory = b->max_conns == 1 && strcmp(b->path, ":memory:") == 0;
    /* The first statement reads the file header: a file that is not a
     * database fails here with SQLITE_NOTADB. */
    int src = conn_pragma(c->db, "PRAGMA journal_mode = WAL", memory ? "memory" : "wal",
                          b->path);
    if (src == STORE_OK)
        src = conn_pragma(c->db, "PRAGMA foreign_keys = ON", NULL, b->path);
    if (src == STORE_OK)
        src = conn_pragma(c->db, "PRAGMA foreign_keys", "1", b->path);
    if (src == STORE_OK)
        src = conn_pragma(c->db, "PRAGMA synchronous = NORMAL", NULL, b->path);
    if (src != STORE_OK) {
        conn_close(c);
        return src;
    }
    *out = c;
    return STORE_OK;
}

/* Take a connection for this thread: a free one, a new one while fewer
 * than max_conns are open, else wait for one. The caller returns it with
 * conn_put(). */
static int conn_get(struct store_backend *b, conn_t **out)
{
    pthread_mutex_lock(&b->pool_mu);
    while (!b->free_list && b->n_conns >= b->max_conns)
        pthread_cond_wait(&b->pool_cv, &b->pool_mu);
    if (b->free_list) {
        *out = b->free_list;
        b->free_list = (*out)->next;
        pthread_mutex_unlock(&b->pool_mu);
        return STORE_OK;
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

static void conn_put(struct store_backend *b, conn_t *c)
{
    if (!sqlite3_get_autocommit(c->db)) /* an error path left a transaction */
        exec_cached(c, ST_ROLLBACK);
    pthread_mutex_lock(&b->pool_mu);
    c->next = b->free_list;
    b->free_list = c;
    pthread_cond_signal(&b->pool_cv);
    pthread_mutex_unlock(&b->pool_mu);
}

/* Begin a write transaction: take the write mutex, BEGIN IMMEDIATE. On
 * failure the mutex is released. */
static int write_begin(struct store_backend *b, conn_t *c)
{
    pthread_mutex_lock(&b->write_mu);
    int rc = exec_cached(c, ST_BEGIN_IMMEDIATE);
    if (rc != STORE_OK)
        pthread_mutex_unlock(&b->write_mu);
    return rc;
}

/* End a write transaction begun by write_begin(): COMMIT if rc is STORE_OK
 * (a failing COMMIT rolls back and becomes the result), else ROLLBACK.
 * Releases the write mutex. Returns the final code. */
static int write_end(struct store_backend *b, conn_t *c, int rc)
{
    if (rc == STORE_OK)
        rc = exec_cached(c, ST_COMMIT);
    if (rc != STORE_OK && !sqlite3_get_autocommit(c->db))
        exec_cached(c, ST_ROLLBACK);
    pthread_mutex_unlock(&b->write_mu);
    return rc;
}

/* ---- Schema migration ------------------------------------------------------- */

static int read_int_pragma(conn_t *c, const char *sql, int *out, const char *path)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0);
    int out_rc = rc == SQLITE_ROW ? STORE_OK : sqlite_rc(c->db, rc, path);
    if (out_rc == STORE_OK && rc != SQLITE_ROW)
        out_rc = STORE_EIO;
    sqlite3_finalize(st);
    return out_rc;
}

/* Bring the schema to STORE_SQLITE_SCHEMA_VERSION, one migration per
 * transaction. Another process may migrate at the same time: the version is
 * read again inside each transaction. */
static int migrate(struct store_backend *b, conn_t *c)
{
    int version = 0, app_id = 0, n_objects = 0;
    int rc = read_int_pragma(c, "PRAGMA user_version", &version, b->path);
    if (rc == STORE_OK)
        rc = read_int_pragma(c, "PRAGMA application_id", &app_id, b->path);
    if (rc == STORE_OK)
        rc = read_int_pragma(c, "SELECT count(*) FROM sqlite_schema", &n_objects, b->path);
    if (rc != STORE_OK)
        return rc;
    if (app_id != STORE_SQLITE_APP_ID && (version != 0 || n_objects != 0 || app_id != 0)) {
        log_error("store: %s is not a kvchat database (application_id %d, %d objects)",
                  b->path, app_id, n_objects);
        return STORE_ESCHEMA;
    }
    if (version > N_MIGRATIONS) {
        log_error("store: %s has schema version %d; this kvchat knows up to %d", b->path,
                  version, N_MIGRATIONS);
        return STORE_ESCHEMA;
    }

    while (version < N_MIGRATIONS) {
        rc = write_begin(b, c);
        if (rc != STORE_OK)
            return rc;
        rc = read_int_pragma(c, "PRAGMA user_version", &version, b->path);
        if (rc == STORE_OK && version < N_MIGRATIONS) {
            char *err = NULL;
            char pragmas[96];
            snprintf(pragmas, sizeof pragmas, "PRAGMA user_version = %d; "
                     "PRAGMA application_id = %d;", version + 1, STORE_SQLITE_APP_ID);
            int src = sqlite3_exec(c->db, migrations[version], NULL, NULL, &err);
            if (src == SQLITE_OK)
                src = sqlite3_exec(c->db, pragmas, NULL, NULL, &err);
            if (src != SQLITE_OK) {
                log_error("store: %s: migration to schema version %d failed: %s", b->path,
                          version + 1, err ? err : sqlite3_errstr(src));
                rc = sqlite_rc(c->db, src, "migrate");
                if (rc == STORE_OK)
                    rc = STORE_EIO;
            } else {
                log_info("store: %s: %s schema version %d", b->path,
                         version ? "migrated to" : "created", version + 1);
                version++;
            }
            sqlite3_free(err);
        }
        rc = write_end(b, c, rc);
        if (rc != STORE_OK)
            return rc;
    }
    return STORE_OK;
}

/* ---- Open and close --------------------------------------------------------- */

static void sq_close(store_backend_t *b)
{
    if (!b)
        return;
    conn_t *c = b->free_list;
    if (c && b->ready) /* keep the query planner's statistics current (cheap) */
        sqlite3_exec(c->db, "PRAGMA optimize", NULL, NULL, NULL);
    while (c) {
        conn_t *next = c->next;
        conn_close(c);
        c = next;
    }
    pthread_mutex_destroy(&b->pool_mu);
    pthread_cond_destroy(&b->pool_cv);
    pthread_mutex_destroy(&b->write_mu);
    free(b->path);
    free(b);
}

static int sq_open(const char *target, store_backend_t **out)
{
    *out = NULL;
    if (strncmp(target, "//", 2) == 0) /* sqlite:///abs/path, sqlite://rel/path */
        target += 2;
    if (!target[0])
        return STORE_EINVAL;
    if (!sqlite3_threadsafe()) {
        log_error("store: this SQLite library was built without thread support");
        return STORE_EUNSUPPORTED;
    }
    struct store_backend *b = calloc(1, sizeof *b);
    if (!b)
        return STORE_ENOMEM;
    b->path = strdup(target);
    if (!b->path) {
        free(b);
        return STORE_ENOMEM;
    }
    b->max_conns = strcmp(target, ":memory:") == 0 ? 1 : STORE_SQLITE_POOL;
    pthread_mutex_init(&b->pool_mu, NULL);
    pthread_cond_init(&b->pool_cv, NULL);
    pthread_mutex_init(&b->write_mu, NULL);

    conn_t *c = NULL;
    int rc = conn_get(b, &c);
    if (rc == STORE_OK) {
        rc = migrate(b, c);
        conn_put(b, c);
    }
    if (rc != STORE_OK) {
        log_error("store: cannot open %s: %s", b->path, store_strerror(rc));
        sq_close(b);
        return rc;
    }
    b->ready = true;
    *out = b;
    return STORE_OK;
}

/* PRAGMA quick_check (every page, every index entry; not the slower
 * index-to-table cross-checks of integrity_check), then FTS5's own
 * integrity checks of the text index against document_chunks and of the
 * chunk index against chunks. */
static int sq_check(store_backend_t *b)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(c->db, "PRAGMA quick_check(20)", -1, &st, NULL);
    int problems = 0;
    while (src == SQLITE_OK || src == SQLITE_ROW) {
        src = sqlite3_step(st);
        if (src != SQLITE_ROW)
            break;
        const char *line = (const char *)sqlite3_column_text(st, 0);
        if (line && strcmp(line, "ok") != 0) {
            log_error("store: %s: check: %s", b->path, line);
            problems++;
        }
    }
    rc = src == SQLITE_DONE ? STORE_OK : sqlite_rc(c->db, src, "check");
    sqlite3_finalize(st);
    if (rc == STORE_OK && problems)
        rc = STORE_ECORRUPT;
    if (rc == STORE_OK) {
        /* Written as an INSERT, so it runs as a (read-only) write. */
        pthread_mutex_lock(&b->write_mu);
        src = sqlite3_exec(c->db,
                           "INSERT INTO document_fts (document_fts) VALUES ('integrity-check');"
                           "INSERT INTO chunk_fts (chunk_fts) VALUES ('integrity-check')",
                           NULL, NULL, NULL);
        pthread_mutex_unlock(&b->write_mu);
        if (src != SQLITE_OK) {
            log_error("store: %s: check of the text index: %s", b->path,
                      sqlite3_errmsg(c->db));
            rc = (src & 0xff) == SQLITE_CORRUPT ? STORE_ECORRUPT : sqlite_rc(c->db, src, "check");
        }
    }
    conn_put(b, c);
    return rc;
}

/* ---- Documents ------------------------------------------------------------ */

/* Insert the pieces of a text as rows 0, 1, ... of document_chunks. */
static int insert_chunks(conn_t *c, const char *doc_id, store_text_src_t *text)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_CHUNK_INSERT, &st);
    for (int64_t seq = 0; rc == STORE_OK; seq++) {
        const char *piece;
        size_t len;
        rc = store__text_next(text, &piece, &len);
        if (rc != STORE_OK || len == 0)
            break;
        bind_text(st, 1, doc_id);
        sqlite3_bind_int64(st, 2, seq);
        sqlite3_bind_text(st, 3, piece, (int)len, SQLITE_STATIC);
        rc = stmt_run(c, st, "insert document text");
    }
    return rc;
}

static int sq_doc_insert(store_backend_t *b, const store_doc_t *doc, store_text_src_t *text,
                         store_doc_t *out, bool *existed)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = write_begin(b, c);
    if (rc != STORE_OK) {
        conn_put(b, c);
        return rc;
    }
    sqlite3_stmt *st;
    *existed = false;
    rc = stmt_get(c, ST_DOC_BY_SHA, &st);
    if (rc == STORE_OK) {
        sqlite3_bind_text(st, 1, doc->sha256, -1, SQLITE_STATIC);
        rc = query_doc(c, st, out, "find document");
        if (rc == STORE_OK)
            *existed = true;
    }
    if (rc == STORE_ENOTFOUND) {
        rc = stmt_get(c, ST_DOC_INSERT, &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, doc->id);
            bind_text(st, 2, doc->filename);
            bind_text(st, 3, doc->stored_name);
            bind_text(st, 4, doc->content_type);
            sqlite3_bind_int64(st, 5, doc->file_size);
            bind_text(st, 6, doc->sha256);
            sqlite3_bind_int64(st, 7, doc->uploaded_at);
            sqlite3_bind_int64(st, 8, 0);   /* counted while the pieces go in */
            bind_opt_int(st, 9, doc->n_tokens);
            rc = stmt_run(c, st, "insert document");
        }
        if (rc == STORE_OK)
            rc = insert_chunks(c, doc->id, text);
        if (rc == STORE_OK)
            rc = stmt_get(c, ST_DOC_SET_CHARS, &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, doc->id);
            sqlite3_bind_int64(st, 2, store__text_chars(text));
            rc = stmt_run(c, st, "count document text");
        }
        if (rc == STORE_OK)
            rc = stmt_get(c, ST_DOC_GET, &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, doc->id);
            rc = query_doc(c, st, out, "read document");
            if (rc == STORE_ENOTFOUND)
                rc = STORE_EIO; /* just inserted in this transaction */
        }
    }
    rc = write_end(b, c, rc);
    conn_put(b, c);
    return rc;
}

/* A read of one document by a one-parameter statement. */
static int doc_read(store_backend_t *b, stmt_id_t id, const char *key, store_doc_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, id, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, key);
        rc = query_doc(c, st, out, "read document");
    }
    conn_put(b, c);
    return rc;
}

static int sq_doc_get(store_backend_t *b, const char *id, store_doc_t *out)
{
    return doc_read(b, ST_DOC_GET, id, out);
}

static int sq_doc_find_sha256(store_backend_t *b, const char *sha256, store_doc_t *out)
{
    return doc_read(b, ST_DOC_BY_SHA, sha256, out);
}

static int sq_doc_text_foreach(store_backend_t *b, const char *id, store_text_fn fn, void *ud)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, ST_DOC_TEXT, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        bool found = false;
        int src;
        while ((src = sqlite3_step(st)) == SQLITE_ROW) {
            found = true;
            if (sqlite3_column_type(st, 0) == SQLITE_NULL)
                continue;   /* an empty text: no piece */
            const char *t = (const char *)sqlite3_column_text(st, 0);
            if (!t) {
                rc = STORE_ENOMEM;
                break;
            }
            int r = fn(ud, t, (size_t)sqlite3_column_bytes(st, 0));
            if (r != 0) {
                rc = r;
                break;
            }
        }
        if (rc == STORE_OK && src != SQLITE_DONE)
            rc = sqlite_rc(c->db, src, "read text");
        if (rc == STORE_OK && !found)
            rc = STORE_ENOTFOUND;
        stmt_done(st);
    }
    conn_put(b, c);
    return rc;
}

/* Step a DOC_COLS statement to the end, appending every row to *out.
 * With `user_query`, SQLITE_ERROR means the caller's full-text query was
 * malformed (FTS5 reports syntax errors from the first step): that is
 * STORE_EINVAL, not a database failure. */
static int collect_docs(conn_t *c, sqlite3_stmt *st, store_doc_list_t *out, const char *what,
                        bool user_query)
{
    int rc = STORE_OK, src = SQLITE_DONE;
    while (rc == STORE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
        store_doc_t d;
        store_doc_init(&d);
        rc = row_doc(st, &d);
        if (rc == STORE_OK)
            rc = store__doc_list_push(out, &d);
    }
    if (rc == STORE_OK && src != SQLITE_DONE) {
        if (user_query && src == SQLITE_ERROR) {
            log_debug("store: %s: %s", what, sqlite3_errmsg(c->db));
            rc = STORE_EINVAL;
        } else {
            rc = sqlite_rc(c->db, src, what);
        }
    }
    stmt_done(st);
    return rc;
}

static int sq_doc_list(store_backend_t *b, store_doc_list_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, ST_DOC_LIST, &st);
    if (rc == STORE_OK)
        rc = collect_docs(c, st, out, "list documents", false);
    conn_put(b, c);
    return rc;
}

static int sq_doc_search(store_backend_t *b, const char *query, size_t limit,
                         store_doc_list_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, ST_DOC_SEARCH, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, query);
        sqlite3_bind_int64(st, 2, sql_limit(limit));
        rc = collect_docs(c, st, out, "search documents", true);
    }
    conn_put(b, c);
    return rc;
}

static int sq_doc_delete(store_backend_t *b, const char *id, store_doc_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = write_begin(b, c);
    if (rc != STORE_OK) {
        conn_put(b, c);
        return rc;
    }
    sqlite3_stmt *st;
    rc = stmt_get(c, ST_DOC_GET, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        rc = query_doc(c, st, out, "read document");
    }
    if (rc == STORE_OK)
        rc = stmt_get(c, ST_DOC_DELETE, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        rc = stmt_run(c, st, "delete document");
    }
    rc = write_end(b, c, rc);
    conn_put(b, c);
    return rc;
}

/* Run one UPDATE/DELETE statement under the write mutex (autocommit) after
 * `bind` filled its parameters; *changes receives the rows it changed. */
typedef void (*binder_fn)(sqlite3_stmt *st, const void *arg);

static int write_one(store_backend_t *b, stmt_id_t id, binder_fn bind, const void *arg,
                     int64_t *changes)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, id, &st);
    if (rc == STORE_OK) {
        bind(st, arg);
        pthread_mutex_lock(&b->write_mu);
        rc = stmt_run(c, st, stmt_sql[id]);
        *changes = rc == STORE_OK ? sqlite3_changes64(c->db) : 0;
        pthread_mutex_unlock(&b->write_mu);
    }
    conn_put(b, c);
    return rc;
}

/* As write_one() for a statement that changes one row named by its id:
 * STORE_ENOTFOUND when it changed none. */
static int write_row(store_backend_t *b, stmt_id_t id, binder_fn bind, const void *arg)
{
    int64_t n = 0;
    int rc = write_one(b, id, bind, arg, &n);
    return rc == STORE_OK && n == 0 ? STORE_ENOTFOUND : rc;
}

struct id_int {
    const char *id;
    int64_t v;
};

static void bind_id_opt_int(sqlite3_stmt *st, const void *arg)
{
    const struct id_int *a = arg;
    bind_text(st, 1, a->id);
    bind_opt_int(st, 2, a->v);
}

static int sq_doc_set_tokens(store_backend_t *b, const char *id, int64_t n_tokens)
{
    struct id_int a = {id, n_tokens};
    return write_row(b, ST_DOC_SET_TOKENS, bind_id_opt_int, &a);
}

struct id_cache {
    const char *id;
    const store_cache_t *cache;
};

/* Bind the CACHE_COLS values of *cache to parameters i, i+1, ... */
static void bind_cache_at(sqlite3_stmt *st, int i, const store_cache_t *cache)
{
    bind_text(st, i, store_cache_status_name(cache->status));
    bind_text(st, i + 1, cache->entry_id);
    bind_opt_int(st, i + 2, cache->tokens);
    bind_opt_int(st, i + 3, cache->bytes);
    bind_text(st, i + 4, cache->tier);
    bind_opt_real(st, i + 5, cache->ms);
    bind_opt_int(st, i + 6, cache->cached_at);
    bind_text(st, i + 7, cache->error);
}

static void bind_cache(sqlite3_stmt *st, const void *arg)
{
    const struct id_cache *a = arg;
    bind_text(st, 1, a->id);
    bind_cache_at(st, 2, a->cache);
}

static int sq_doc_set_cache(store_backend_t *b, const char *id, const store_cache_t *cache)
{
    struct id_cache a = {id, cache};
    return write_row(b, ST_DOC_SET_CACHE, bind_cache, &a);
}

/* Run body(c, arg) in a write transaction on a pooled connection. */
static int in_write(store_backend_t *b, int (*body)(conn_t *c, void *arg), void *arg)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = write_begin(b, c);
    if (rc == STORE_OK)
        rc = write_end(b, c, body(c, arg));
    conn_put(b, c);
    return rc;
}

/* Run the cached statement `id` with its first parameter bound to `doc`
 * and the rest by bind(st, arg) (may be NULL), to the end. */
static int run_doc_stmt(conn_t *c, stmt_id_t id, const char *doc,
                        void (*bind)(sqlite3_stmt *st, const void *arg), const void *arg)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, id, &st);
    if (rc != STORE_OK)
        return rc;
    bind_text(st, 1, doc);
    if (bind)
        bind(st, arg);
    return stmt_run(c, st, stmt_sql[id]);
}

/* STORE_OK when document `id` exists, STORE_ENOTFOUND when not. */
static int doc_exists(conn_t *c, const char *id)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_DOC_EXISTS, &st);
    if (rc != STORE_OK)
        return rc;
    bind_text(st, 1, id);
    int src = sqlite3_step(st);
    rc = src == SQLITE_ROW ? STORE_OK : src == SQLITE_DONE ? STORE_ENOTFOUND
                                                           : sqlite_rc(c->db, src, "find document");
    stmt_done(st);
    return rc;
}

struct reset_args {
    bool only_caching;
    int64_t *n_changed;
};

static int reset_body(conn_t *c, void *arg)
{
    struct reset_args *a = arg;
    sqlite3_stmt *st;
    int rc = stmt_get(c, a->only_caching ? ST_DOC_RESET_CACHING : ST_DOC_RESET_CACHE, &st);
    if (rc == STORE_OK)
        rc = stmt_run(c, st, "reset cache states");
    if (rc == STORE_OK)
        *a->n_changed = sqlite3_changes64(c->db);
    if (rc == STORE_OK)
        rc = stmt_get(c, a->only_caching ? ST_PARTS_RESET_CACHING : ST_PARTS_RESET_CACHE, &st);
    if (rc == STORE_OK)
        rc = stmt_run(c, st, "reset part cache states");
    return rc;
}

/* Documents and parts in one transaction; *n_changed counts documents. */
static int sq_doc_reset_cache(store_backend_t *b, bool only_caching, int64_t *n_changed)
{
    struct reset_args a = { only_caching, n_changed };
    *n_changed = 0;
    return in_write(b, reset_body, &a);
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
        rc = run_doc_stmt(c, ST_MARK_DELETE, a->id, NULL, NULL);
    sqlite3_stmt *st;
    if (rc == STORE_OK)
        rc = stmt_get(c, ST_MARK_INSERT, &st);
    for (size_t i = 0; rc == STORE_OK && i < a->n; i++) {
        const store_mark_t *m = &a->marks[i];
        bind_text(st, 1, a->id);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)i);
        bind_text(st, 3, m->kind == STORE_MARK_PAGE ? "page" : "heading");
        sqlite3_bind_int64(st, 4, m->offset);
        sqlite3_bind_int(st, 5, m->number);
        bind_text(st, 6, m->label ? m->label : "");
        rc = stmt_run(c, st, "insert mark");
    }
    return rc;
}

static int sq_doc_set_marks(store_backend_t *b, const char *id, const store_mark_t *marks,
                            size_t n)
{
    struct marks_args a = { id, marks, n };
    return in_write(b, set_marks_body, &a);
}

/* A read on a pooled connection of statement `id` whose first parameter
 * is a document id: per row, row(st, ud). STORE_ENOTFOUND when the
 * document does not exist. bind (may be NULL) binds the rest. */
static int read_doc_rows(store_backend_t *b, stmt_id_t id, const char *doc,
                         void (*bind)(sqlite3_stmt *st, const void *arg), const void *arg,
                         int (*row)(sqlite3_stmt *st, void *ud), void *ud, bool user_query)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    /* One snapshot for the existence check and the rows. */
    bool txn = sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    rc = doc ? doc_exists(c, doc) : STORE_OK;
    sqlite3_stmt *st;
    if (rc == STORE_OK)
        rc = stmt_get(c, id, &st);
    if (rc == STORE_OK) {
        if (doc)
            bind_text(st, 1, doc);
        if (bind)
            bind(st, arg);
        int src;
        while (rc == STORE_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
            rc = row(st, ud);
        if (rc == STORE_OK && src != SQLITE_DONE) {
            if (user_query && src == SQLITE_ERROR) {
                log_debug("store: %s: %s", stmt_sql[id], sqlite3_errmsg(c->db));
                rc = STORE_EINVAL;
            } else {
                rc = sqlite_rc(c->db, src, stmt_sql[id]);
            }
        }
        stmt_done(st);
    }
    if (txn)
        sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
    conn_put(b, c);
    return rc;
}

static int row_mark(sqlite3_stmt *st, void *ud)
{
    store_mark_t m = { 0 };
    const char *kind = (const char *)sqlite3_column_text(st, 0);
    m.kind = kind && strcmp(kind, "page") == 0 ? STORE_MARK_PAGE : STORE_MARK_HEADING;
    m.offset = sqlite3_column_int64(st, 1);
    m.number = sqlite3_column_int(st, 2);
    if (col_dup(st, 3, &m.label) || !m.label)
        return STORE_ENOMEM;   /* NOT NULL: a NULL here is a failed conversion */
    return store__mark_list_push(ud, &m);
}

static int sq_doc_marks(store_backend_t *b, const char *id, store_mark_list_t *out)
{
    return read_doc_rows(b, ST_MARK_LIST, id, NULL, NULL, row_mark, out, false);
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
        rc = run_doc_stmt(c, ST_PARTS_DELETE_DOC, a->id, NULL, NULL);
    if (rc == STORE_OK)
        rc = run_doc_stmt(c, ST_CHUNK_DELETE, a->id, NULL, NULL);
    sqlite3_stmt *st;
    if (rc == STORE_OK)
        rc = stmt_get(c, ST_CHUNK_ADD, &st);
    for (int64_t seq = 0; rc == STORE_OK; seq++) {
        const store_chunk_t *k;
        const char *ix;
        rc = store__chunk_next(a->src, &k, &ix);
        if (rc != STORE_OK || !k)
            break;
        bind_text(st, 1, a->id);
        sqlite3_bind_int64(st, 2, seq);
        sqlite3_bind_int64(st, 3, k->start);
        sqlite3_bind_int64(st, 4, k->end);
        sqlite3_bind_int64(st, 5, k->n_chars);
        sqlite3_bind_int64(st, 6, k->est_tokens);
        sqlite3_bind_int64(st, 7, k->page_first);
        sqlite3_bind_int64(st, 8, k->page_last);
        bind_text(st, 9, k->label_first ? k->label_first : "");
        bind_text(st, 10, k->label_last ? k->label_last : "");
        bind_text(st, 11, k->heading ? k->heading : "");
        bind_text(st, 12, k->content);
        bind_text(st, 13, ix);
        rc = stmt_run(c, st, "insert chunk");
        if (rc == STORE_OK)
            *a->n_out = seq + 1;
    }
    return rc;
}

static int sq_doc_set_chunks(store_backend_t *b, const char *id, store_chunk_src_t *src,
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
    sqlite3_stmt *st;
    if (rc == STORE_OK)
        rc = stmt_get(c, ST_CHUNK_SET_TOKENS, &st);
    for (size_t i = 0; rc == STORE_OK && i < a->n; i++) {
        bind_text(st, 1, a->id);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)i);
        sqlite3_bind_int64(st, 3, a->tokens[i]);
        bind_text(st, 4, a->key);
        rc = stmt_run(c, st, "set chunk tokens");
    }
    return rc;
}

static int sq_chunks_set_tokens(store_backend_t *b, const char *id, const char *key,
                                const int64_t *tokens, size_t n)
{
    struct tokens_args a = { id, key, tokens, n };
    return in_write(b, set_tokens_body, &a);
}

/* Fill *k (initialized) from a CHUNK_COLS row followed by content (13)
 * and score (14, when has_score). */
static int row_chunk_fill(sqlite3_stmt *st, store_chunk_t *k, bool has_score)
{
    if (col_dup(st, 0, &k->doc_id) || col_dup(st, 7, &k->tokens_key) ||
        col_dup(st, 10, &k->label_first) || col_dup(st, 11, &k->label_last) ||
        col_dup(st, 12, &k->heading) || col_dup(st, 13, &k->content)) {
        store_chunk_cleanup(k);
        return STORE_ENOMEM;
    }
    k->seq = sqlite3_column_int64(st, 1);
    k->start = sqlite3_column_int64(st, 2);
    k->end = sqlite3_column_int64(st, 3);
    k->n_chars = sqlite3_column_int64(st, 4);
    k->est_tokens = sqlite3_column_int64(st, 5);
    k->tokens = col_opt_int(st, 6);
    k->page_first = sqlite3_column_int64(st, 8);
    k->page_last = sqlite3_column_int64(st, 9);
    k->score = has_score ? sqlite3_column_double(st, 14) : 0;
    return STORE_OK;
}

static int row_chunk(sqlite3_stmt *st, void *ud)
{
    store_chunk_t k;
    store_chunk_init(&k);
    int rc = row_chunk_fill(st, &k, false);
    return rc == STORE_OK ? store__chunk_list_push(ud, &k) : rc;
}

static int row_chunk_scored(sqlite3_stmt *st, void *ud)
{
    store_chunk_t k;
    store_chunk_init(&k);
    int rc = row_chunk_fill(st, &k, true);
    return rc == STORE_OK ? store__chunk_list_push(ud, &k) : rc;
}

static int row_count(sqlite3_stmt *st, void *ud)
{
    *(int64_t *)ud = sqlite3_column_int64(st, 0);
    return STORE_OK;
}

struct list_args {
    int64_t first;
    size_t limit;
    bool content;
};

static void bind_list(sqlite3_stmt *st, const void *arg)
{
    const struct list_args *a = arg;
    sqlite3_bind_int64(st, 2, a->first);
    sqlite3_bind_int64(st, 3, sql_limit(a->limit));
    sqlite3_bind_int(st, 4, a->content);
}

static int sq_chunk_list(store_backend_t *b, const char *id, int64_t first, size_t limit,
                         bool content, store_chunk_list_t *out, int64_t *total)
{
    struct list_args a = { first, limit, content };
    int rc = read_doc_rows(b, ST_CHUNK_COUNT, id, NULL, NULL, row_count, total, false);
    if (rc == STORE_OK)
        rc = read_doc_rows(b, ST_CHUNK_LIST, id, bind_list, &a, row_chunk, out, false);
    return rc;
}

static void bind_id1(sqlite3_stmt *st, const void *arg)
{
    bind_text(st, 1, arg);
}

static void bind_seq2(sqlite3_stmt *st, const void *arg)
{
    sqlite3_bind_int64(st, 2, *(const int64_t *)arg);
}

static int sq_chunk_get(store_backend_t *b, const char *id, int64_t seq, store_chunk_t *out)
{
    store_chunk_list_t l = { 0 };
    int rc = read_doc_rows(b, ST_CHUNK_GET, id, bind_seq2, &seq, row_chunk, &l, false);
    if (rc == STORE_OK && l.n == 0)
        rc = STORE_ENOTFOUND;
    if (rc == STORE_OK) {
        *out = l.items[0];
        store_chunk_init(&l.items[0]);
    }
    store_chunk_list_cleanup(&l);
    return rc;
}

struct search_args {
    const char *match;
    const char *ids_json;
    size_t limit;
};

static void bind_search(sqlite3_stmt *st, const void *arg)
{
    const struct search_args *a = arg;
    bind_text(st, 1, a->match);
    bind_text(st, 2, a->ids_json);
    sqlite3_bind_int64(st, 3, sql_limit(a->limit));
}

static int sq_chunk_search(store_backend_t *b, const char *const *doc_ids, size_t n_ids,
                           const char *match, size_t limit, store_chunk_list_t *out)
{
    /* Ids are printable ASCII without '"' or '\\' (store_id_valid), so
     * they go into a JSON array as they are. */
    size_t cap = 3;
    for (size_t i = 0; i < n_ids; i++)
        cap += strlen(doc_ids[i]) + 3;
    char *json = malloc(cap), *p = json;
    if (!json)
        return STORE_ENOMEM;
    *p++ = '[';
    for (size_t i = 0; i < n_ids; i++)
        p += sprintf(p, "%s\"%s\"", i ? "," : "", doc_ids[i]);
    *p++ = ']';
    *p = '\0';
    struct search_args a = { match, json, limit };
    int rc = read_doc_rows(b, ST_CHUNK_SEARCH, NULL, bind_search, &a, row_chunk_scored, out,
                           true);
    free(json);
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
    sqlite3_stmt *st;
    if (rc == STORE_OK)
        rc = stmt_get(c, ST_PARTS_DELETE_KEY, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, a->id);
        bind_text(st, 2, a->key);
        rc = stmt_run(c, st, "delete parts");
    }
    if (rc == STORE_OK)
        rc = stmt_get(c, ST_PART_INSERT, &st);
    for (size_t i = 0; rc == STORE_OK && i < a->n; i++) {
        const store_part_t *p = &a->parts[i];
        bind_text(st, 1, a->id);
        bind_text(st, 2, a->key);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)i);
        sqlite3_bind_int64(st, 4, p->chunk_first);
        sqlite3_bind_int64(st, 5, p->chunk_last);
        bind_opt_int(st, 6, p->tokens);
        sqlite3_bind_int64(st, 7, p->content_length);
        bind_cache_at(st, 8, &p->cache);
        rc = stmt_run(c, st, "insert part");
    }
    return rc;
}

static int sq_parts_set(store_backend_t *b, const char *id, const char *key,
                        const store_part_t *parts, size_t n)
{
    struct parts_args a = { id, key, parts, n };
    return in_write(b, set_parts_body, &a);
}

static int row_part(sqlite3_stmt *st, void *ud)
{
    store_part_t p;
    store_part_init(&p);
    if (col_dup(st, 0, &p.doc_id) || col_dup(st, 1, &p.plan_key) ||
        row_cache_at(st, 7, &p.cache)) {
        store_part_cleanup(&p);
        return STORE_ENOMEM;
    }
    p.seq = sqlite3_column_int64(st, 2);
    p.chunk_first = sqlite3_column_int64(st, 3);
    p.chunk_last = sqlite3_column_int64(st, 4);
    p.tokens = col_opt_int(st, 5);
    p.content_length = sqlite3_column_int64(st, 6);
    return store__part_list_push(ud, &p);
}

static void bind_key2(sqlite3_stmt *st, const void *arg)
{
    bind_text(st, 2, arg);
}

static int sq_parts_list(store_backend_t *b, const char *id, const char *key,
                         store_part_list_t *out)
{
    return read_doc_rows(b, ST_PARTS_LIST, id, bind_key2, key, row_part, out, false);
}

struct part_cache_args {
    const char *key;
    int64_t seq;
    const store_cache_t *cache;
};

static void bind_part_cache(sqlite3_stmt *st, const void *arg)
{
    const struct part_cache_args *a = arg;
    bind_text(st, 2, a->key);
    sqlite3_bind_int64(st, 3, a->seq);
    bind_cache_at(st, 4, a->cache);
}

static int sq_part_set_cache(store_backend_t *b, const char *id, const char *key, int64_t seq,
                             const store_cache_t *cache)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    struct part_cache_args a = { key, seq, cache };
    pthread_mutex_lock(&b->write_mu);
    rc = run_doc_stmt(c, ST_PART_SET_CACHE, id, bind_part_cache, &a);
    if (rc == STORE_OK && sqlite3_changes64(c->db) == 0)
        rc = STORE_ENOTFOUND;
    pthread_mutex_unlock(&b->write_mu);
    conn_put(b, c);
    return rc;
}

/* ---- Sessions --------------------------------------------------------------- */

static int session_read(conn_t *c, const char *id, store_session_t *out)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_SES_GET, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        rc = query_session(c, st, out, "read session");
    }
    return rc;
}

static int session_insert(conn_t *c, const char *id, const char *document_id, const char *title,
                          int64_t now_ms)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_SES_INSERT, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        sqlite3_bind_int64(st, 2, now_ms);
        bind_text(st, 3, document_id);
        bind_text(st, 4, title);
        rc = stmt_run(c, st, "create session");
    }
    return rc;
}

static int sq_session_create(store_backend_t *b, const char *id, const char *document_id,
                             const char *title, int64_t now_ms, store_session_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = write_begin(b, c);
    if (rc == STORE_OK) {
        rc = session_insert(c, id, document_id, title, now_ms);
        if (rc == STORE_OK)
            rc = session_read(c, id, out);
        rc = write_end(b, c, rc);
    }
    conn_put(b, c);
    return rc;
}

static int sq_session_ensure(store_backend_t *b, const char *id, const char *document_id,
                             int64_t now_ms, store_session_t *out, bool *created)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    *created = false;
    rc = write_begin(b, c);
    if (rc == STORE_OK) {
        sqlite3_stmt *st;
        rc = stmt_get(c, ST_SES_TOUCH, &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, id);
            sqlite3_bind_int64(st, 2, now_ms);
            rc = stmt_run(c, st, "touch session");
        }
        if (rc == STORE_OK && sqlite3_changes64(c->db) == 0) {
            rc = session_insert(c, id, document_id, NULL, now_ms);
            *created = rc == STORE_OK;
        }
        if (rc == STORE_OK)
            rc = session_read(c, id, out);
        rc = write_end(b, c, rc);
        if (rc != STORE_OK)
            *created = false;
    }
    conn_put(b, c);
    return rc;
}

static int sq_session_get(store_backend_t *b, const char *id, store_session_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = session_read(c, id, out);
    conn_put(b, c);
    return rc;
}

static int sq_session_touch(store_backend_t *b, const char *id, int64_t now_ms)
{
    struct id_int a = {id, now_ms};
    return write_row(b, ST_SES_TOUCH, bind_id_opt_int, &a);
}

struct id_str {
    const char *id;
    const char *s;
};

static void bind_id_str(sqlite3_stmt *st, const void *arg)
{
    const struct id_str *a = arg;
    bind_text(st, 1, a->id);
    bind_text(st, 2, a->s);
}

struct set_args {
    const char *id;
    const char *const *ids;
    size_t n;
    const char *name;
    int64_t now;
};

/* Insert ids as rows (owner, pos, document) of statement `st_id`. */
static int insert_id_rows(conn_t *c, stmt_id_t st_id, const char *owner, const char *const *ids,
                          size_t n)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, st_id, &st);
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        bind_text(st, 1, owner);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)i);
        bind_text(st, 3, ids[i]);
        rc = stmt_run(c, st, stmt_sql[st_id]);
    }
    return rc;
}

static int set_documents_body(conn_t *c, void *arg)
{
    struct set_args *a = arg;
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_SES_SET_DOC, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, a->id);
        bind_text(st, 2, a->n ? a->ids[0] : NULL);
        rc = stmt_run(c, st, "set session document");
    }
    if (rc == STORE_OK && sqlite3_changes64(c->db) == 0)
        rc = STORE_ENOTFOUND;
    if (rc == STORE_OK)
        rc = run_doc_stmt(c, ST_SESDOC_DELETE, a->id, NULL, NULL);
    if (rc == STORE_OK && a->n > 1)
        rc = insert_id_rows(c, ST_SESDOC_INSERT, a->id, a->ids, a->n);
    return rc;
}

static int sq_session_set_documents(store_backend_t *b, const char *id, const char *const *ids,
                                    size_t n)
{
    struct set_args a = { id, ids, n, NULL, 0 };
    return in_write(b, set_documents_body, &a);
}

static int row_id(sqlite3_stmt *st, void *ud)
{
    store_id_list_t *l = ud;
    char *id = NULL;
    if (col_dup(st, 0, &id))
        return STORE_ENOMEM;
    if (!id)
        return STORE_OK;   /* a session without a document */
    char **ids = realloc(l->ids, (l->n + 1) * sizeof *ids);
    if (!ids) {
        free(id);
        return STORE_ENOMEM;
    }
    l->ids = ids;
    l->ids[l->n++] = id;
    return STORE_OK;
}

static int sq_session_documents(store_backend_t *b, const char *id, store_id_list_t *out)
{
    /* The session's one document first: it also says whether it exists. */
    store_id_list_t one = { 0 };
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    bool txn = sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    sqlite3_stmt *st;
    bool found = false;
    rc = stmt_get(c, ST_SES_DOC, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW) {
            found = true;
            rc = row_id(st, &one);
        } else if (src != SQLITE_DONE) {
            rc = sqlite_rc(c->db, src, "read session");
        }
        stmt_done(st);
    }
    if (rc == STORE_OK && !found)
        rc = STORE_ENOTFOUND;
    if (rc == STORE_OK)
        rc = stmt_get(c, ST_SESDOC_LIST, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        int src;
        while (rc == STORE_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
            rc = row_id(st, out);
        if (rc == STORE_OK && src != SQLITE_DONE)
            rc = sqlite_rc(c->db, src, "read session documents");
        stmt_done(st);
    }
    if (txn)
        sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
    conn_put(b, c);
    if (rc == STORE_OK && out->n == 0) {
        *out = one;   /* no set: the one document, or none */
        one = (store_id_list_t){ 0 };
    }
    store_id_list_cleanup(&one);
    return rc;
}

static int collection_create_body(conn_t *c, void *arg)
{
    struct set_args *a = arg;
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_COLL_INSERT, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, a->id);
        bind_text(st, 2, a->name);
        sqlite3_bind_int64(st, 3, a->now);
        rc = stmt_run(c, st, "insert collection");
    }
    if (rc == STORE_OK)
        rc = insert_id_rows(c, ST_COLLDOC_INSERT, a->id, a->ids, a->n);
    return rc;
}

static int sq_collection_get(store_backend_t *b, const char *id, store_collection_t *out);

static int sq_collection_create(store_backend_t *b, const char *id, const char *name,
                                int64_t now_ms, const char *const *ids, size_t n,
                                store_collection_t *out)
{
    struct set_args a = { id, ids, n, name, now_ms };
    int rc = in_write(b, collection_create_body, &a);
    return rc == STORE_OK ? sq_collection_get(b, id, out) : rc;
}

static int row_collection(sqlite3_stmt *st, void *ud)
{
    store_collection_t *c = ud;
    if (col_dup(st, 0, &c->name))
        return STORE_ENOMEM;
    c->created_at = sqlite3_column_int64(st, 1);
    return STORE_OK;
}

static int sq_collection_get(store_backend_t *b, const char *id, store_collection_t *out)
{
    int rc = read_doc_rows(b, ST_COLL_GET, NULL, bind_id1, id, row_collection, out, false);
    if (rc == STORE_OK && !out->name)
        rc = STORE_ENOTFOUND;
    if (rc == STORE_OK)
        rc = read_doc_rows(b, ST_COLLDOC_LIST, NULL, bind_id1, id, row_id, &out->docs, false);
    if (rc == STORE_OK && !(out->id = strdup(id)))
        rc = STORE_ENOMEM;
    return rc;
}

static int sq_session_set_title(store_backend_t *b, const char *id, const char *title)
{
    struct id_str a = {id, title};
    return write_row(b, ST_SES_SET_TITLE, bind_id_str, &a);
}

static int sq_session_list(store_backend_t *b, size_t limit, store_session_list_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, ST_SES_LIST, &st);
    if (rc == STORE_OK) {
        sqlite3_bind_int64(st, 1, sql_limit(limit));
        int src;
        while (rc == STORE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
            store_session_t ss;
            store_session_init(&ss);
            rc = row_session(st, &ss);
            if (rc == STORE_OK)
                rc = store__session_list_push(out, &ss);
        }
        if (rc == STORE_OK && src != SQLITE_DONE)
            rc = sqlite_rc(c->db, src, "list sessions");
        stmt_done(st);
    }
    conn_put(b, c);
    return rc;
}

static void bind_id(sqlite3_stmt *st, const void *arg)
{
    bind_text(st, 1, arg);
}

static int sq_session_delete(store_backend_t *b, const char *id)
{
    return write_row(b, ST_SES_DELETE, bind_id, id);
}

static void bind_int(sqlite3_stmt *st, const void *arg)
{
    sqlite3_bind_int64(st, 1, *(const int64_t *)arg);
}

static int sq_session_delete_idle(store_backend_t *b, int64_t before_ms, int64_t *n_deleted)
{
    return write_one(b, ST_SES_DELETE_IDLE, bind_int, &before_ms, n_deleted);
}

/* ---- Messages --------------------------------------------------------------- */

static int sq_msg_append(store_backend_t *b, const char *session_id, store_role_t role,
                         const char *content, bool incomplete, const char *meta,
                         int64_t now_ms, int64_t *id_out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = write_begin(b, c);
    if (rc == STORE_OK) {
        sqlite3_stmt *st;
        rc = stmt_get(c, ST_MSG_INSERT, &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, session_id);
            bind_text(st, 2, store_role_name(role));
            bind_text(st, 3, content);
            sqlite3_bind_int64(st, 4, now_ms);
            sqlite3_bind_int(st, 5, incomplete ? 1 : 0);
            bind_text(st, 6, meta);
            rc = stmt_run(c, st, "append message");
        }
        if (rc == STORE_OK)
            *id_out = sqlite3_last_insert_rowid(c->db);
        if (rc == STORE_OK)
            rc = stmt_get(c, ST_SES_TOUCH, &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, session_id);
            sqlite3_bind_int64(st, 2, now_ms);
            rc = stmt_run(c, st, "touch session");
        }
        rc = write_end(b, c, rc);
    }
    conn_put(b, c);
    return rc;
}

/* Whether session `id` exists: STORE_OK or STORE_ENOTFOUND. */
static int session_exists(conn_t *c, const char *id)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_SES_EXISTS, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        int src = sqlite3_step(st);
        rc = src == SQLITE_ROW    ? STORE_OK
             : src == SQLITE_DONE ? STORE_ENOTFOUND
                                  : sqlite_rc(c->db, src, "read session");
        stmt_done(st);
    }
    return rc;
}

static int sq_msg_list(store_backend_t *b, const char *session_id, size_t limit,
                       store_msg_list_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, ST_MSG_LIST, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, session_id);
        sqlite3_bind_int64(st, 2, sql_limit(limit));
        int src;
        while (rc == STORE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
            store_msg_t m;
            store_msg_init(&m);
            rc = row_msg(st, &m);
            if (rc == STORE_OK)
                rc = store__msg_list_push(out, &m);
        }
        if (rc == STORE_OK && src != SQLITE_DONE)
            rc = sqlite_rc(c->db, src, "list messages");
        stmt_done(st);
    }
    /* No rows: an empty session, or none at all. */
    if (rc == STORE_OK && out->n == 0)
        rc = session_exists(c, session_id);
    conn_put(b, c);
    return rc;
}

static int sq_msg_count(store_backend_t *b, const char *session_id, int64_t *n)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, ST_MSG_COUNT, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, session_id);
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW) {
            *n = sqlite3_column_int64(st, 0);
            rc = sqlite3_column_int(st, 1) ? STORE_OK : STORE_ENOTFOUND;
        } else {
            rc = sqlite_rc(c->db, src, "count messages");
            if (rc == STORE_OK)
                rc = STORE_EIO; /* an aggregate always gives a row */
        }
        stmt_done(st);
    }
    conn_put(b, c);
    return rc;
}

/* ---- The table ---------------------------------------------------------------- */

const store_backend_ops_t store_sqlite_ops = {
    .name = "sqlite",
    .scheme = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .check = sq_check,
    .doc_insert = sq_doc_insert,
    .doc_get = sq_doc_get,
    .doc_find_sha256 = sq_doc_find_sha256,
    .doc_text_foreach = sq_doc_text_foreach,
    .doc_list = sq_doc_list,
    .doc_delete = sq_doc_delete,
    .doc_set_tokens = sq_doc_set_tokens,
    .doc_set_cache = sq_doc_set_cache,
    .doc_reset_cache = sq_doc_reset_cache,
    .doc_search = sq_doc_search,
    .doc_set_marks = sq_doc_set_marks,
    .doc_marks = sq_doc_marks,
    .doc_set_chunks = sq_doc_set_chunks,
    .chunks_set_tokens = sq_chunks_set_tokens,
    .chunk_list = sq_chunk_list,
    .chunk_get = sq_chunk_get,
    .chunk_search = sq_chunk_search,
    .parts_set = sq_parts_set,
    .parts_list = sq_parts_list,
    .part_set_cache = sq_part_set_cache,
    .session_create = sq_session_create,
    .session_ensure = sq_session_ensure,
    .session_get = sq_session_get,
    .session_touch = sq_session_touch,
    .session_set_documents = sq_session_set_documents,
    .session_documents = sq_session_documents,
    .collection_create = sq_collection_create,
    .collection_get = sq_collection_get,
    .session_set_title = sq_session_set_title,
    .session_list = sq_session_list,
    .session_delete = sq_session_delete,
    .session_delete_idle = sq_session_delete_idle,
    .msg_append = sq_msg_append,
    .msg_list = sq_msg_list,
    .msg_count = sq_msg_count,
};
